/*
 * instar create: qemu-img 7.2's img_create() and bdrv_img_create() for the
 * qcow2, raw and file formats.
 *
 * The host parses the options as QemuOpts does, opens the backing file
 * (unless -u) through cmd/open.c under the path policy to check it and
 * take its size, prints the "Formatting" line (before validating, as
 * qemu-img does), creates the file (and the data file), validates the
 * qcow2 options in qemu's order with its messages, and lets the guest lay
 * the image out (INSTAR_OP_CREATE, guest/plan_create.c).  raw has no
 * metadata: the host sizes and preallocates the file as file-posix does.
 * On any failure after the file was created, the file is deleted, as
 * qemu-img's bdrv_co_delete_file_noerr() does (even a file that existed
 * before: qcow2_co_create_opts() creates the file before it validates).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmds.h"
#include "lock.h"
#include "object.h"
#include "open.h"
#include "opts.h"
#include "policy.h"
#include "report.h"
#include "result.h"
#include "size.h"
#include "vmm.h"
#include "instar/abi.h"
#include "instar/errors.h"
#include "qcow2/create.h"
#include "luksopt.h"
#include "vhdx/create.h"
#include "vdi/vdi.h"
#include "vpc/create.h"
#include "vmdk/create.h"
#include "parallels/parallels.h"

#define MSG_MAX 4096

static const struct opt_desc qcow2_descs[] = {
    {"encryption", OPT_BOOL,
     "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", NULL},
    {"encrypt.format", OPT_STRING, "Encrypt the image, format choices: 'aes', 'luks'", NULL},
    {"encrypt.key-secret", OPT_STRING, "ID of secret providing qcow AES key or LUKS passphrase",
     NULL},
    {"encrypt.cipher-alg", OPT_STRING, "Name of encryption cipher algorithm", NULL},
    {"encrypt.cipher-mode", OPT_STRING, "Name of encryption cipher mode", NULL},
    {"encrypt.ivgen-alg", OPT_STRING, "Name of IV generator algorithm", NULL},
    {"encrypt.ivgen-hash-alg", OPT_STRING, "Name of IV generator hash algorithm", NULL},
    {"encrypt.hash-alg", OPT_STRING, "Name of encryption hash algorithm", NULL},
    {"encrypt.iter-time", OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL},
    {"cluster_size", OPT_SIZE, "qcow2 cluster size", "65536"},
    {"extended_l2", OPT_BOOL, "Extended L2 tables", "off"},
    {"preallocation", OPT_STRING,
     "Preallocation mode (allowed values: off, metadata, falloc, full)", NULL},
    {"compression_type", OPT_STRING, "Compression method used for image cluster compression",
     "zlib"},
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {"compat", OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])", NULL},
    {"backing_file", OPT_STRING, "File name of a base image", NULL},
    {"backing_fmt", OPT_STRING, "Image format of the base image", NULL},
    {"data_file", OPT_STRING, "File name of an external data file", NULL},
    {"data_file_raw", OPT_BOOL, "The external data file must stay valid as a raw image", NULL},
    {"lazy_refcounts", OPT_BOOL, "Postpone refcount updates", "off"},
    {"refcount_bits", OPT_NUMBER, "Width of a reference count entry in bits", "16"},
    {NULL, 0, NULL, NULL},
};

static const struct opt_desc raw_descs[] = {
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {NULL, 0, NULL, NULL},
};

static const struct opt_desc vpc_descs[] = {
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {"subformat", OPT_STRING,
     "Type of virtual hard disk format. Supported formats are {dynamic (default) | fixed} ", NULL},
    {"force_size", OPT_BOOL,
     "Force disk size calculation to use the actual size specified, rather than using the "
     "nearest CHS-based calculation",
     NULL},
    {NULL, 0, NULL, NULL},
};

static const struct opt_desc qed_descs[] = {
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {"backing_file", OPT_STRING, "File name of a base image", NULL},
    {"backing_fmt", OPT_STRING, "Image format of the base image", NULL},
    {"cluster_size", OPT_SIZE, "Cluster size (in bytes)", "65536"},
    {"table_size", OPT_SIZE, "L1/L2 table size (in clusters)", NULL},
    {NULL, 0, NULL, NULL},
};

static const struct opt_desc qcow_descs[] = {
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {"backing_file", OPT_STRING, "File name of a base image", NULL},
    {"backing_fmt", OPT_STRING, "Format of the backing image", NULL},
    {"encryption", OPT_BOOL,
     "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", NULL},
    {"encrypt.format", OPT_STRING, "Encrypt the image, format choices: 'aes'", NULL},
    {"encrypt.key-secret", OPT_STRING, "ID of secret providing qcow AES key or LUKS passphrase",
     NULL},
    {NULL, 0, NULL, NULL},
};

static const struct opt_desc parallels_descs[] = {
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {"cluster_size", OPT_SIZE, "Parallels image cluster size", "1048576"},
    {NULL, 0, NULL, NULL},
};

static const struct opt_desc vhdx_descs[] = {
    {"size", OPT_SIZE, "Virtual disk size; max of 64TB.", NULL},
    {"log_size", OPT_SIZE, "Log size; min 1MB.", "1048576"},
    {"block_size", OPT_SIZE,
     "Block Size; min 1MB, max 256MB. 0 means auto-calculate based on image size.", "0"},
    {"subformat", OPT_STRING,
     "VHDX format type, can be either 'dynamic' or 'fixed'. Default is 'dynamic'.", NULL},
    {"block_state_zero", OPT_BOOL,
     "Force use of payload blocks of type 'ZERO'. Non-standard, but default.  Do not set to "
     "'off' when using 'qemu-img convert' with subformat=dynamic.",
     NULL},
    {NULL, 0, NULL, NULL},
};

static const struct opt_desc vdi_descs[] = {
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {"static", OPT_BOOL, "VDI static (pre-allocated) image", "off"},
    {NULL, 0, NULL, NULL},
};

/* vmdk_create_opts, in its order (help sorts them). */
static const struct opt_desc vmdk_descs[] = {
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {"adapter_type", OPT_STRING,
     "Virtual adapter type, can be one of ide (default), lsilogic, buslogic or legacyESX", NULL},
    {"backing_file", OPT_STRING, "File name of a base image", NULL},
    {"backing_fmt", OPT_STRING, "Must be 'vmdk' if present", NULL},
    {"compat6", OPT_BOOL, "VMDK version 6 image", "off"},
    {"hwversion", OPT_STRING, "VMDK hardware version", "undefined"},
    {"toolsversion", OPT_STRING, "VMware guest tools version", NULL},
    {"subformat", OPT_STRING,
     "VMDK flat extent format, can be one of {monolithicSparse (default) | monolithicFlat | "
     "twoGbMaxExtentSparse | twoGbMaxExtentFlat | streamOptimized} ",
     NULL},
    {"zeroed_grain", OPT_BOOL, "Enable efficient zero writes using the zeroed-grain GTE feature",
     NULL},
    {NULL, 0, NULL, NULL},
};

static const struct opt_desc luks_descs[] = {
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {"key-secret", OPT_STRING, "ID of the secret that provides the keyslot passphrase", NULL},
    {"cipher-alg", OPT_STRING, "Name of encryption cipher algorithm", NULL},
    {"cipher-mode", OPT_STRING, "Name of encryption cipher mode", NULL},
    {"ivgen-alg", OPT_STRING, "Name of IV generator algorithm", NULL},
    {"ivgen-hash-alg", OPT_STRING, "Name of IV generator hash algorithm", NULL},
    {"hash-alg", OPT_STRING, "Name of encryption hash algorithm", NULL},
    {"iter-time", OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL},
    {NULL, 0, NULL, NULL},
};

static const struct opt_desc file_descs[] = {
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {"nocow", OPT_BOOL, "Turn off copy-on-write (valid only on btrfs)", NULL},
    {"preallocation", OPT_STRING, "Preallocation mode (allowed values: off, falloc, full)", NULL},
    {"extent_size_hint", OPT_SIZE, "Extent size hint for the image file, 0 to disable", NULL},
    {NULL, 0, NULL, NULL},
};

#define OPTION_OBJECT 256

static const struct option create_long[] = {
    {"help", no_argument, 0, 'h'},
    {"object", required_argument, 0, OPTION_OBJECT},
    {0, 0, 0, 0},
};

/* "<prog>: FILE: msg" then qemu's hint lines (error_reportf_err). */
static void fail_file(const char *filename, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * What convert and dd put between FILE and the message ("FILE: error
 * while converting FMT: msg", "FILE: error while creating output image:
 * msg"); NULL for create's own "FILE: msg".
 */
static const char *fail_infix;

static void fail_file(const char *filename, const char *hint, const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "%s: %s: ", report_progname(), filename);
    if (fail_infix)
        fprintf(stderr, "%s: ", fail_infix);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (hint && *hint) {
        fputs(hint, stderr);
    }
}

static const struct opt_desc *format_descs(const char *fmt)
{
    if (!strcmp(fmt, "qcow2")) {
        return qcow2_descs;
    }
    if (!strcmp(fmt, "raw")) {
        return raw_descs;
    }
    if (!strcmp(fmt, "vpc")) {
        return vpc_descs;
    }
    if (!strcmp(fmt, "luks")) {
        return luks_descs;
    }
    if (!strcmp(fmt, "parallels")) {
        return parallels_descs;
    }
    if (!strcmp(fmt, "vhdx")) {
        return vhdx_descs;
    }
    if (!strcmp(fmt, "vdi")) {
        return vdi_descs;
    }
    if (!strcmp(fmt, "file")) {
        return file_descs;
    }
    if (!strcmp(fmt, "qed")) {
        return qed_descs;
    }
    if (!strcmp(fmt, "qcow")) {
        return qcow_descs;
    }
    if (!strcmp(fmt, "vmdk")) {
        return vmdk_descs;
    }
    return NULL;
}

bool create_opts_for(struct opt_list *l, const char *fmt)
{
    const struct opt_desc *d = format_descs(fmt);

    if (!d)
        return false;
    opts_append(l, d);
    opts_append(l, file_descs);
    return true;
}

bool create_format_opts_for(struct opt_list *l, const char *fmt)
{
    const struct opt_desc *d = format_descs(fmt);

    if (!d)
        return false;
    opts_append(l, d);
    return true;
}

/* print_block_option_help() */
static int option_help(const char *filename, const char *fmt)
{
    struct opt_list l;
    const struct opt_desc *d;

    if (!cmd_driver_known(fmt)) {
        report_error("Unknown file format '%s'", fmt);
        return 1;
    }
    d = format_descs(fmt);
    if (!cmd_driver_creates(fmt)) {
        report_error("Format driver '%s' does not support image creation", fmt);
        return 1;
    }
    if (!d) {
        report_error("Format '%s' is not supported by instar create", fmt);
        return 1;
    }
    memset(&l, 0, sizeof(l));
    opts_append(&l, d);
    if (filename) {
        opts_append(&l, file_descs);
        printf("Supported options:\n");
    } else {
        printf("Supported %s options:\n", fmt);
    }
    opts_print_help(&l);
    if (!filename) {
        printf("\nThe protocol level may support further options.\n"
               "Specify the target filename to include those options.\n");
    }
    return 0;
}

static bool str_in(const char *s, const char *const *set)
{
    for (; *set; set++) {
        if (!strcmp(s, *set)) {
            return true;
        }
    }
    return false;
}

static const char *opt_str(const struct opt_list *l, const char *name)
{
    const struct opt_val *v = opts_find(l, name);
    return v ? v->str : NULL;
}

/*
 * qcow_co_create_opts() / qcow2_co_create_opts(): encryption=X (as typed,
 * but off, which is dropped) is renamed to encrypt.format, which must not
 * be given as well (qdict_rename_keys()).  Returns -1 after reporting.
 */
static int encryption_alias_check(const char *name, const struct opt_list *l)
{
    const char *e = opt_str(l, "encryption");

    if (e && strcmp(e, "off") && opt_str(l, "encrypt.format")) {
        fail_file(name, NULL,
                  "'encrypt.format' and its alias 'encryption' can't be used at the "
                  "same time");
        return -1;
    }
    return 0;
}

static bool opt_bool(const struct opt_list *l, const char *name)
{
    const struct opt_val *v = opts_find(l, name);
    return v && v->value;
}

static int prealloc_mode(const char *s)
{
    static const char *const names[] = {"off", "metadata", "falloc", "full"};

    if (!s) {
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        if (!strcmp(s, names[i])) {
            return i;
        }
    }
    return -1;
}

/* raw_co_create()'s open: create or truncate, mode 0644. */
static int create_file(const char *filename, const char *name, int *fd, bool check_locks)
{
    struct stat st;

    *fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
    if (*fd < 0) {
        fail_file(name, NULL, "Could not create '%s': %s", filename, strerror(errno));
        return -1;
    }
    /* qemu-img would hand a device to its host_device driver: instar never writes one. */
    if (fstat(*fd, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
        fail_file(name, NULL, "'%s' is a device; instar opens regular files only", filename);
        close(*fd);
        *fd = -1;
        return -1;
    }
    /*
     * raw_co_create(): take the write and resize permissions, and fail if
     * anyone else holds a conflicting lock, before the file is emptied:
     * an image in use (by a VM, or as the source of this very convert)
     * is left alone.
     */
    {
        char lmsg[512], hint[600] = "", *nl;

        /*
         * Not for an external data file: create makes it while the image
         * is open, and its own messages follow (qemu's data-file open).
         */
        if (check_locks &&
            lock_perms(*fd, LOCK_PERM_WRITE | LOCK_PERM_RESIZE, LOCK_PERM_ALL & ~LOCK_PERM_RESIZE,
                       filename, lmsg, sizeof(lmsg)) < 0) {
            nl = strchr(lmsg, '\n');
            if (nl) {
                *nl++ = '\0';
                snprintf(hint, sizeof(hint), "%s%s", nl,
                         nl[0] && nl[strlen(nl) - 1] != '\n' ? "\n" : "");
            }
            fail_file(name, hint, "%s", lmsg);
            close(*fd);
            *fd = -1;
            return -1;
        }
    }
    if (ftruncate(*fd, 0) < 0) {
        fail_file(name, NULL, "Could not resize file: %s", strerror(errno));
        close(*fd);
        *fd = -1;
        return -1;
    }
    return 0;
}

/* raw_regular_truncate() from an empty file. */
static int file_prealloc(int fd, uint64_t size, int mode, const char *name, const char *fmt)
{
    int e;

    if (mode == 2) {
        e = size ? posix_fallocate(fd, 0, (off_t)size) : 0;
        if (e == EFBIG) {
            fail_file(name, NULL, "The image size is too large for file format '%s'", fmt);
            return -1;
        }
        if (e) {
            fail_file(name, NULL, "Could not preallocate new data: %s", strerror(e));
            return -1;
        }
        if (size)
            vmm_allocate_first_block(fd, size);
        return 0;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        if (errno == EFBIG) {
            /* bdrv_img_create()'s text for -EFBIG (raw sets no cluster size). */
            fail_file(name, NULL, "The image size is too large for file format '%s'", fmt);
        } else {
            fail_file(name, NULL, "Could not resize file: %s", strerror(errno));
        }
        return -1;
    }
    if (mode == 3) {
        static const char zeros[65536];
        uint64_t off = 0;
        while (off < size) {
            size_t n = size - off > sizeof(zeros) ? sizeof(zeros) : (size_t)(size - off);
            ssize_t w = pwrite(fd, zeros, n, (off_t)off);
            if (w <= 0) {
                fail_file(name, NULL, "Could not write zeros for preallocation: %s",
                          strerror(errno));
                return -1;
            }
            off += (uint64_t)w;
        }
    } else if (size) {
        vmm_allocate_first_block(fd, size);
    }
    return 0;
}

/*
 * file-posix's raw_co_create() checks its extent size hint before it
 * creates anything (the hint itself is only a hint: instar sets none).
 */
static int check_extent_hint(const char *filename, const struct opt_list *l)
{
    const struct opt_val *v = opts_find(l, "extent_size_hint");

    if (v && v->value > UINT32_MAX) {
        fail_file(filename, NULL, "Extent size hint is too large");
        return -1;
    }
    return 0;
}

/*
 * raw (and file) format: the protocol layer's create.  name is FILE as
 * given (for messages), path the host path.
 */
static int create_raw(const char *name, const char *path, const char *fmt, const struct opt_list *l,
                      uint64_t size)
{
    const char *pa = opt_str(l, "preallocation");
    int mode = prealloc_mode(pa);
    int fd, ret = -1;

    if (mode < 0) {
        fail_file(name, NULL, "Parameter 'preallocation' does not accept value '%s'", pa);
        return -1;
    }
    if (check_extent_hint(name, l) < 0) {
        return -1;
    }
    if (create_file(path, name, &fd, true) < 0) {
        return -1;
    }
    if (mode == 1) {
        fail_file(name, NULL, "Unsupported preallocation mode: metadata");
        goto out;
    }
    /* raw_co_create_opts() rounds the size up to whole sectors. */
    ret = file_prealloc(fd, (size + 511) & ~511ull, mode, name, fmt);
out:
    close(fd);
    return ret;
}

static const char *err_text(uint64_t e);

/* pwrite all of buf at off, or fail with create's message. */
static int write_all(int fd, const char *name, uint64_t off, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);

        if (n <= 0) {
            fail_file(name, NULL, "Could not write image: %s", n < 0 ? strerror(errno) : "EOF");
            return -1;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* qed_is_cluster_size_valid() / qed_is_table_size_valid() */
static bool qed_pow2_in(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v >= lo && v <= hi && !(v & (v - 1));
}

/*
 * qed: bdrv_qed_co_create_opts().  The file is made first (a failure
 * later leaves it empty, as qemu does); the size is rounded up to whole
 * sectors, the options checked, then the header (the backing file name
 * after it) and a zeroed L1 table at the first cluster are written: the
 * layout comes from the command line alone, nothing is read back.
 */
static int create_qed(const char *name, const char *path, const struct opt_list *l, uint64_t size)
{
    const struct opt_val *cv = opts_find(l, "cluster_size"), *tv = opts_find(l, "table_size");
    const char *backing = opt_str(l, "backing_file"), *bfmt = opt_str(l, "backing_fmt");
    const char *pa = opt_str(l, "preallocation");
    uint64_t cs = cv ? cv->value : 65536, ts = tv ? tv->value : 4, entries, max;
    uint8_t hdr[64];
    uint8_t *zeros;
    int fd, ret = -1;

    if (prealloc_mode(pa) < 0) {
        fail_file(name, NULL, "Parameter 'preallocation' does not accept value '%s'", pa);
        return -1;
    }
    if (check_extent_hint(name, l) < 0 || create_file(path, name, &fd, true) < 0)
        return -1;
    size = (size + 511) & ~511ull;
    if (!qed_pow2_in(cs, 4096, 64u << 20)) {
        fail_file(name, NULL,
                  "QED cluster size must be within range [4096, 67108864] and power of 2");
        goto out;
    }
    if (!qed_pow2_in(ts, 1, 16)) {
        fail_file(name, NULL, "QED table size must be within range [1, 16] and power of 2");
        goto out;
    }
    /* qed_max_image_size(): 32-bit table bytes, the rest modulo 2^64. */
    entries = (uint32_t)(cs * ts) / 8u;
    max = entries * cs * entries;
    if (size % 512 || size > max) {
        fail_file(
            name, NULL,
            "QED image size must be a non-zero multiple of cluster size and less than %" PRIu64
            " bytes",
            max);
        goto out;
    }
    memset(hdr, 0, sizeof(hdr));
    put_le(hdr, 0x00444551u, 4);
    put_le(hdr + 4, cs, 4);
    put_le(hdr + 8, ts, 4);
    put_le(hdr + 12, 1, 4);
    put_le(hdr + 16, backing ? 1u | (bfmt && !strcmp(bfmt, "raw") ? 4u : 0u) : 0u, 8);
    put_le(hdr + 40, cs, 8);
    put_le(hdr + 48, size, 8);
    if (backing) {
        put_le(hdr + 56, sizeof(hdr), 4);
        put_le(hdr + 60, strlen(backing), 4);
    }
    zeros = calloc(1, (size_t)(cs * ts));
    if (!zeros) {
        fail_file(name, NULL, "%s", strerror(ENOMEM));
        goto out;
    }
    if (write_all(fd, name, 0, hdr, sizeof(hdr)) == 0 &&
        (!backing || write_all(fd, name, sizeof(hdr), backing, strlen(backing)) == 0) &&
        write_all(fd, name, cs, zeros, (size_t)(cs * ts)) == 0)
        ret = 0;
    free(zeros);
out:
    close(fd);
    return ret;
}

/*
 * qcow (version 1): qcow_co_create_opts().  The file is made first; the
 * size is rounded up to whole sectors and must not be zero; encryption
 * needs a secret (refused, as qemu refuses it without one); then the
 * header, the backing file name and the zeroed L1 table sector by sector.
 */
static int create_qcow(const char *name, const char *path, const struct opt_list *l, uint64_t size)
{
    const char *backing = opt_str(l, "backing_file"), *bfmt = opt_str(l, "backing_fmt");
    const char *ef = opt_str(l, "encrypt.format"), *pa = opt_str(l, "preallocation");
    uint64_t hsize = 48, blen = 0, shift, l1_size, i;
    uint8_t hdr[48], sec[512];
    const char *sfmt = NULL;
    bool aes = false;
    int fd, ret = -1;

    if (bfmt && !cmd_driver_known(bfmt)) {
        fail_file(name, NULL, "unrecognized backing format '%s'", bfmt);
        return -1;
    }
    if (encryption_alias_check(name, l) < 0)
        return -1;
    if (prealloc_mode(pa) < 0) {
        fail_file(name, NULL, "Parameter 'preallocation' does not accept value '%s'", pa);
        return -1;
    }
    if (check_extent_hint(name, l) < 0 || create_file(path, name, &fd, true) < 0)
        return -1;
    size = (size + 511) & ~511ull;
    if (size == 0) {
        fail_file(name, NULL, "Image size is too small, cannot be zero length");
        goto out;
    }
    if (opt_bool(l, "encryption") || (ef && strcmp(ef, "off"))) {
        if (ef && strcmp(ef, "aes"))
            fail_file(name, NULL, "Unsupported encryption format");
        else if (!opt_str(l, "encrypt.key-secret"))
            fail_file(name, NULL, "Parameter 'encrypt.key-secret' is required for cipher");
        else if (!object_secret_lookup(opt_str(l, "encrypt.key-secret"), &sfmt)) {
            char m[512];

            snprintf(m, sizeof(m), sfmt, opt_str(l, "encrypt.key-secret"));
            fail_file(name, NULL, "%s", m);
        } else
            aes = true;
        /*
         * qcrypto_block_qcow_create() only checks the secret: the key is
         * the secret itself, and nothing of it goes in the file.
         */
        if (!aes)
            goto out;
    }
    memset(hdr, 0, sizeof(hdr));
    if (aes)
        put_be(hdr + 36, 1, 4); /* QCOW_CRYPT_AES */
    put_be(hdr, 0x514649fbu, 4);
    put_be(hdr + 4, 1, 4);
    put_be(hdr + 24, size, 8);
    if (backing && strcmp(backing, "fat:")) {
        blen = strlen(backing);
        put_be(hdr + 8, 48, 8);
        put_be(hdr + 16, blen, 4);
        hsize += blen;
    } else {
        backing = NULL;
    }
    hdr[32] = opt_str(l, "backing_file") ? 9 : 12;
    hdr[33] = opt_str(l, "backing_file") ? 12 : 9;
    hsize = (hsize + 7) & ~7ull;
    shift = (uint64_t)hdr[32] + hdr[33];
    l1_size = (size + (1ull << shift) - 1) >> shift;
    put_be(hdr + 40, hsize, 8);
    if (write_all(fd, name, 0, hdr, sizeof(hdr)) < 0 ||
        (backing && write_all(fd, name, 48, backing, (size_t)blen) < 0))
        goto out;
    memset(sec, 0, sizeof(sec));
    for (i = 0; i < (l1_size * 8 + 511) / 512; i++)
        if (write_all(fd, name, hsize + 512 * i, sec, sizeof(sec)) < 0)
            goto out;
    ret = 0;
out:
    close(fd);
    return ret;
}

/* A version 4 UUID from the system's random source (qemu_uuid_generate()). */
static int random_uuid(uint8_t uuid[16])
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, uuid, 16);

    if (fd >= 0)
        close(fd);
    if (n != 16)
        return -1;
    uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
    return 0;
}

/* PBKDF2 makes no hypercall: a create's key derivation gets the unlock watchdog. */
#define CREATE_LUKS_WATCHDOG_MS 300000u

/*
 * Run the guest's create with a, device 0 the file fd (write limit
 * limit), under watchdog_ms (0: the default).  Returns 0; -1 after
 * printing a sandbox failure; or 1 with the guest's error in *hdr.
 */
static int create_run_devs(const char *name, const struct vmm_dev *devs, unsigned ndevs,
                           const struct instar_create_args *a, uint32_t watchdog_ms,
                           struct instar_result_hdr *hdr);

static int create_run(const char *name, int fd, uint64_t limit, const struct instar_create_args *a,
                      uint32_t watchdog_ms, struct instar_result_hdr *hdr)
{
    struct vmm_dev dev = {fd, 0, limit, INSTAR_DEV_READ | INSTAR_DEV_WRITE, false};

    return create_run_devs(name, &dev, 1, a, watchdog_ms, hdr);
}

/* create_run with ndevs devices (vmdk: the image or descriptor, then its extent files). */
static int create_run_devs(const char *name, const struct vmm_dev *devs, unsigned ndevs,
                           const struct instar_create_args *a, uint32_t watchdog_ms,
                           struct instar_result_hdr *hdr)
{
    struct vmm_config cfg;
    struct vmm_outcome out;

    memset(&cfg, 0, sizeof(cfg));
    memset(&out, 0, sizeof(out));
    cfg.watchdog_ms = watchdog_ms;
    if (vmm_run(&cfg, INSTAR_OP_CREATE, a, sizeof(*a), devs, ndevs, &out) != 0) {
        fail_file(name, NULL, "sandbox failure: %s", out.detail[0] ? out.detail : "unknown error");
        vmm_outcome_release(&out);
        return -1;
    }
    if (result_hdr_parse(out.result, out.result_len, INSTAR_OP_CREATE, hdr) != RESULT_OK) {
        fail_file(name, NULL, "sandbox failure: invalid result");
        vmm_outcome_release(&out);
        return -1;
    }
    vmm_outcome_release(&out);
    return hdr->error ? 1 : 0;
}

/*
 * vdi: vdi_co_create_opts().  The file is made as the protocol layer
 * makes it without a size (the vdi options are taken out of the list
 * first: its preallocation checked, nothing preallocated), then the size
 * (rounded up to 512) is checked, and a failure leaves the file, as qemu
 * does; the guest writes the header and the block map, and grows a
 * static image to its data area's end.
 */
static int create_vdi(const char *name, const char *path, const struct opt_list *l, uint64_t size)
{
    const char *pa = opt_str(l, "preallocation");
    int mode = prealloc_mode(pa);
    bool is_static = opt_bool(l, "static");
    struct instar_create_args a;
    struct vmm_dev dev;
    struct instar_result_hdr hdr;
    uint64_t blocks, limit;
    int fd, ret = -1, r;

    if (mode < 0) {
        /* file-posix's own parse (the vdi options pass it on): qapi's wording. */
        fail_file(name, NULL, "invalid parameter value: %s", pa);
        return -1;
    }
    if (check_extent_hint(name, l) < 0 || create_file(path, name, &fd, true) < 0)
        return -1;
    if (mode == 1) {
        fail_file(name, NULL, "Unsupported preallocation mode: metadata");
        goto out;
    }
    /* "Silently round up size" (to a sector), then vdi_co_do_create()'s limit. */
    size = size > UINT64_MAX - 511 ? UINT64_MAX : (size + 511) & ~511ull;
    if (size > VDI_DISK_SIZE_MAX) {
        fail_file(name, NULL,
                  "Unsupported VDI image size (size is 0x%" PRIx64 ", max supported is 0x%" PRIx64
                  ")",
                  size, (uint64_t)VDI_DISK_SIZE_MAX);
        goto out;
    }
    memset(&a, 0, sizeof(a));
    a.size = size;
    a.flags = INSTAR_CREATE_VDI | (is_static ? INSTAR_CREATE_VDI_STATIC : 0);
    if (random_uuid(a.vdi_uuids) < 0 || random_uuid(a.vdi_uuids + 16) < 0) {
        fail_file(name, NULL, "Could not read /dev/urandom");
        goto out;
    }
    /* The header, the block map and (static) the data area. */
    blocks = vdi_create_blocks(size);
    limit = 512 + ((blocks * 4 + 511) & ~511ull) + (is_static ? blocks * VDI_BLOCK_SIZE : 0);
    dev = (struct vmm_dev){fd, 0, limit, INSTAR_DEV_READ | INSTAR_DEV_WRITE, false};
    r = create_run(name, fd, dev.write_limit, &a, 0, &hdr);
    if (r < 0)
        goto out;
    if (r > 0) {
        fail_file(name, NULL, "Error writing header: %s", err_text(hdr.err_args[0]));
        goto out;
    }
    ret = 0;
out:
    close(fd);
    return ret;
}

/*
 * vpc: vpc_co_create_opts().  The file is made as the protocol layer makes
 * it without a size (its preallocation checked, nothing preallocated),
 * then the options are checked, and a failure leaves the file, as qemu
 * does; the guest writes the footer, header and BAT.
 */
static int create_vpc(const char *name, const char *path, const struct opt_list *l, uint64_t size)
{
    const char *pa = opt_str(l, "preallocation"), *sub = opt_str(l, "subformat");
    int mode = prealloc_mode(pa);
    struct instar_create_args a;
    struct vpc_create c;
    struct vmm_dev dev;
    struct instar_result_hdr hdr;
    bool fixed;
    int fd, ret = -1, r;

    if (mode < 0) {
        fail_file(name, NULL, "Parameter 'preallocation' does not accept value '%s'", pa);
        return -1;
    }
    if (check_extent_hint(name, l) < 0 || create_file(path, name, &fd, true) < 0)
        return -1;
    if (mode == 1) {
        fail_file(name, NULL, "Unsupported preallocation mode: metadata");
        goto out;
    }
    if (sub && strcmp(sub, "dynamic") && strcmp(sub, "fixed")) {
        fail_file(name, NULL, "Parameter 'subformat' does not accept value '%s'", sub);
        goto out;
    }
    fixed = sub && !strcmp(sub, "fixed");
    if (vpc_create_size(size, opt_bool(l, "force_size"), fixed, &c) < 0) {
        fail_file(name, NULL, "The image size is too large for file format 'vpc'");
        goto out;
    }
    memset(&a, 0, sizeof(a));
    a.size = c.size;
    a.flags = INSTAR_CREATE_VPC | (fixed ? INSTAR_CREATE_VPC_FIXED : 0) |
              (c.force_size ? INSTAR_CREATE_VPC_FORCE_SIZE : 0);
    a.vpc_timestamp = (uint32_t)((uint64_t)time(NULL) - VPC_TIMESTAMP_BASE);
    if (random_uuid(a.vpc_uuid) < 0) {
        fail_file(name, NULL, "Could not read /dev/urandom");
        goto out;
    }
    /* The footer (twice), the header and the BAT: at most 4 MiB and a few sectors. */
    dev = (struct vmm_dev){fd, 0, fixed ? c.size + 512 : (8ull << 20),
                           INSTAR_DEV_READ | INSTAR_DEV_WRITE, false};
    r = create_run(name, fd, dev.write_limit, &a, 0, &hdr);
    if (r < 0)
        goto out;
    if (r > 0) {
        fail_file(name, NULL, "Unable to create or write VHD header: %s",
                  err_text(hdr.err_args[0]));
        goto out;
    }
    ret = 0;
out:
    close(fd);
    return ret;
}

/*
 * qemu's filename_decompose(): dir (through the last '/', else '\\',
 * else ':'), prefix (up to the last '.' after it) and postfix (from that
 * '.'), each malloc'd; and the stem, the start of the basename of
 * dir + prefix + ... (the descriptor's extent names: stem + infix +
 * postfix), malloc'd too.  Returns 0, or -1 out of memory.
 */
static int vmdk_decompose(const char *filename, char **dir, char **prefix, char **postfix,
                          char **stem)
{
    const char *p = strrchr(filename, '/'), *q;
    char *d;

    if (!p)
        p = strrchr(filename, '\\');
    if (!p)
        p = strrchr(filename, ':');
    p = p ? p + 1 : filename;
    q = strrchr(p, '.');
    *dir = strndup(filename, (size_t)(p - filename));
    *prefix = strndup(p, q ? (size_t)(q - p) : strlen(p));
    *postfix = strdup(q ? q : "");
    if (!*dir || !*prefix || !*postfix)
        return -1;
    /* g_path_get_basename() splits at '/' only. */
    d = strrchr(*dir, '/');
    if (asprintf(stem, "%s%s", d ? d + 1 : *dir, *prefix) < 0) {
        *stem = NULL;
        return -1;
    }
    return 0;
}

/*
 * The parent's CID for a vmdk with a backing file (vmdk_co_do_create()):
 * the backing file opened as qemu opens it (probed, no backing chain),
 * through the path policy, its CID as the guest read it.  Returns 0; or
 * -1 with *msg qemu's message (malloc'd; NULL out of memory).
 */
static int vmdk_parent_cid(const char *filename, const char *backing, uint32_t *cid, char **msg)
{
    struct open_chain oc;
    char *full = policy_full_backing(filename, backing);
    int r;

    *msg = NULL;
    if (!full)
        return -1;
    /* Its failure message is qemu's whole message ("Could not open 'X': ..."). */
    r = open_chain_msg(&oc, full, NULL, OPEN_NO_BACKING | OPEN_METADATA, msg);
    if (r < 0) {
        free(full);
        return -1;
    }
    free(full);
    if (strcmp(oc.img[0].info->format, "vmdk")) {
        if (asprintf(msg, "Invalid backing file format: %s. Must be vmdk", oc.img[0].info->format) <
            0)
            *msg = NULL;
        open_chain_close(&oc);
        return -1;
    }
    *cid = oc.img[0].info->vmdk_cid;
    open_chain_close(&oc);
    return 0;
}

/* A NUL-terminated copy of s into a fixed field of cap bytes; -1 when it does not fit. */
static int put_field(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);

    if (n >= cap)
        return -1;
    memcpy(dst, s, n + 1);
    return 0;
}

/*
 * vmdk: vmdk_co_create_opts() and vmdk_co_do_create().  The options are
 * checked in qemu's order before anything is made; then the image (or
 * descriptor) file is created, the backing file read for its CID (a
 * failure there leaves the first file laid out, as qemu leaves it), the
 * extent files created (named as qemu names them), and the guest lays
 * out every file and writes the descriptor.  Nothing is deleted on
 * failure, as qemu deletes nothing.
 */
static int create_vmdk(const char *name, const char *path, const struct opt_list *l, uint64_t size)
{
    static const char *const subs[] = {"monolithicSparse",     "monolithicFlat",
                                       "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
                                       "streamOptimized",      NULL};
    static const char *const adapters[] = {"ide", "buslogic", "lsilogic", "legacyESX", NULL};
    const char *bfmt = opt_str(l, "backing_fmt"), *backing = opt_str(l, "backing_file");
    const char *at = opt_str(l, "adapter_type"), *sub = opt_str(l, "subformat");
    const char *hw = opt_str(l, "hwversion"), *tools = opt_str(l, "toolsversion");
    const char *pa = opt_str(l, "preallocation");
    bool compat6 = opt_bool(l, "compat6"), zeroed = opt_bool(l, "zeroed_grain");
    char *dir = NULL, *prefix = NULL, *postfix = NULL, *stem = NULL, *msg = NULL;
    struct vmm_dev devs[INSTAR_DEV_MAX];
    struct instar_create_args *a = NULL;
    struct instar_result_hdr hdr;
    unsigned adapter = 0, subformat = 0, ndevs = 0, i;
    uint64_t next, done = 0;
    bool flat, split, compress, parent_failed = false;
    int mode = prealloc_mode(pa), ret = -1, r;

    if (bfmt && strcmp(bfmt, "vmdk")) {
        fail_file(name, NULL, "backing_file must be a vmdk image");
        return -1;
    }
    if (vmdk_decompose(path, &dir, &prefix, &postfix, &stem) < 0) {
        fail_file(name, NULL, "%s", strerror(ENOMEM));
        goto out;
    }
    size = size > UINT64_MAX - 511 ? UINT64_MAX : (size + 511) & ~511ull;
    if (hw && !strcmp(hw, "undefined"))
        hw = NULL;
    if (at) {
        for (adapter = 0; adapters[adapter] && strcmp(adapters[adapter], at); adapter++)
            ;
        if (!adapters[adapter]) {
            fail_file(name, NULL, "invalid parameter value: %s", at);
            goto out;
        }
    }
    if (sub) {
        for (subformat = 0; subs[subformat] && strcmp(subs[subformat], sub); subformat++)
            ;
        if (!subs[subformat]) {
            fail_file(name, NULL, "invalid parameter value: %s", sub);
            goto out;
        }
    }
    if (compat6) {
        if (hw) {
            fail_file(name, NULL, "compat6 cannot be enabled with hwversion set");
            goto out;
        }
        hw = "6";
    }
    split = subformat == 2 || subformat == 3;
    flat = subformat == 1 || subformat == 3;
    compress = subformat == 4;
    if (flat && backing) {
        fail_file(name, NULL, "Flat image can't have backing file");
        goto out;
    }
    if (flat && zeroed) {
        fail_file(name, NULL, "Flat image can't enable zeroed grain");
        goto out;
    }
    /* bdrv_create_file(): file-posix's own checks of its options. */
    if (mode < 0) {
        fail_file(name, NULL, "invalid parameter value: %s", pa);
        goto out;
    }
    if (check_extent_hint(name, l) < 0)
        goto out;
    a = calloc(1, sizeof(*a));
    if (!a) {
        fail_file(name, NULL, "%s", strerror(ENOMEM));
        goto out;
    }
    next = vmdk_create_extents(size, flat, split);
    /* As many as instar opens (a descriptor naming more is refused at open). */
    if (size > INT64_MAX || next > INSTAR_VMDK_EXTENTS_MAX) {
        fail_file(name, NULL, "instar creates at most %u vmdk extent files",
                  INSTAR_VMDK_EXTENTS_MAX);
        goto out;
    }
    if (put_field(a->vmdk_hwversion, sizeof(a->vmdk_hwversion), hw ? hw : "4") < 0 ||
        put_field(a->vmdk_toolsversion, sizeof(a->vmdk_toolsversion),
                  tools ? tools : "2147483647") < 0 ||
        put_field(a->vmdk_stem, sizeof(a->vmdk_stem), stem) < 0 ||
        put_field(a->vmdk_suffix, sizeof(a->vmdk_suffix), postfix) < 0 ||
        (backing && put_field(a->backing_file, sizeof(a->backing_file), backing) < 0)) {
        fail_file(name, NULL, "instar's vmdk descriptor fields are at most %u bytes",
                  INSTAR_VMDK_STR_MAX - 1);
        goto out;
    }
    a->size = size;
    a->flags = INSTAR_CREATE_VMDK | (flat ? INSTAR_CREATE_VMDK_FLAT : 0) |
               (split ? INSTAR_CREATE_VMDK_SPLIT : 0) | (compress ? INSTAR_CREATE_VMDK_STREAM : 0) |
               (zeroed ? INSTAR_CREATE_VMDK_ZEROED : 0);
    a->vmdk_adapter = adapter;
    a->vmdk_parent_cid = 0xffffffffu;
    {
        int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        ssize_t n = ufd < 0 ? -1 : read(ufd, &a->vmdk_cid, sizeof(a->vmdk_cid));

        if (ufd >= 0)
            close(ufd);
        if (n != (ssize_t)sizeof(a->vmdk_cid)) {
            fail_file(name, NULL, "Could not read /dev/urandom");
            goto out;
        }
    }
    /* The image (or descriptor) file, made without a size. */
    if (create_file(path, name, &devs[0].fd, true) < 0)
        goto out;
    ndevs = 1;
    if (mode == 1) {
        fail_file(name, NULL, "Unsupported preallocation mode: metadata");
        goto out;
    }
    {
        struct vmdk_create_layout lay;

        vmdk_create_layout(split || flat ? 0 : size, &lay);
        devs[0] = (struct vmm_dev){devs[0].fd, 0, lay.grain_offset * 512 + (256u << 10),
                                   INSTAR_DEV_READ | INSTAR_DEV_WRITE, false};
    }
    if (backing && vmdk_parent_cid(name, backing, &a->vmdk_parent_cid, &msg) < 0) {
        parent_failed = true;
        a->vmdk_first_only = 1;
    }
    for (i = 1; !parent_failed && i <= next; i++) {
        uint64_t cur = split && size - done > VMDK_SPLIT_SIZE ? VMDK_SPLIT_SIZE : size - done;
        struct vmdk_create_layout lay;
        char *ext;
        int fd;

        if (!split)
            r = asprintf(&ext, "%s%s-flat%s", dir, prefix, postfix);
        else
            r = asprintf(&ext, "%s%s-%c%03u%s", dir, prefix, flat ? 'f' : 's', i, postfix);
        if (r < 0) {
            fail_file(name, NULL, "%s", strerror(ENOMEM));
            goto out;
        }
        r = create_file(ext, name, &fd, true);
        free(ext);
        if (r < 0)
            goto out;
        vmdk_create_layout(cur, &lay);
        devs[ndevs++] = (struct vmm_dev){fd, 0, flat ? cur : lay.grain_offset * 512,
                                         INSTAR_DEV_READ | INSTAR_DEV_WRITE, false};
        done += cur;
    }
    r = create_run_devs(name, devs, ndevs, a, 0, &hdr);
    if (r < 0)
        goto out;
    if (r > 0) {
        if (hdr.err_args[1] == 1)
            fail_file(name, NULL, "Could not write description: %s", err_text(hdr.err_args[0]));
        else if (hdr.err_args[1] == 2)
            fail_file(name, NULL, "Could not resize file: %s", err_text(hdr.err_args[0]));
        else
            fail_file(name, NULL, "An IO error has occurred");
        goto out;
    }
    if (parent_failed) {
        fail_file(name, NULL, "%s", msg ? msg : strerror(ENOMEM));
        goto out;
    }
    ret = 0;
out:
    for (i = 0; i < ndevs; i++)
        close(devs[i].fd);
    free(a);
    free(msg);
    free(dir);
    free(prefix);
    free(postfix);
    free(stem);
    return ret;
}

/*
 * parallels: parallels_co_create_opts().  The file is made as the
 * protocol layer makes it without a size (the format took the size), the
 * sizes are rounded up to sectors and checked, and a failure leaves the
 * file, as qemu does; the guest writes the header sector and the zeroed
 * catalog.
 */
static int create_parallels(const char *name, const char *path, const struct opt_list *l,
                            uint64_t size)
{
    const char *pa = opt_str(l, "preallocation");
    const struct opt_val *cs = opts_find(l, "cluster_size");
    int mode = prealloc_mode(pa);
    uint64_t cl = cs ? cs->value : PRL_DEFAULT_CLUSTER;
    struct instar_create_args a;
    struct prl_create c;
    struct vmm_dev dev;
    struct instar_result_hdr hdr;
    int fd, ret = -1, r;

    if (mode < 0) {
        /* raw_co_create_opts()'s qapi_enum_parse(), the format having none. */
        fail_file(name, NULL, "invalid parameter value: %s", pa);
        return -1;
    }
    if (check_extent_hint(name, l) < 0 || create_file(path, name, &fd, true) < 0)
        return -1;
    if (mode == 1) {
        fail_file(name, NULL, "Unsupported preallocation mode: metadata");
        goto out;
    }
    /* "Silently round up sizes" (ROUND_UP in uint64_t arithmetic). */
    size = (size + 511) & ~511ull;
    cl = (cl + 511) & ~511ull;
    r = prl_create_layout(size, cl, &c);
    if (r == -1) {
        fail_file(name, NULL, "Cluster size is too large");
        goto out;
    }
    if (r == -2) {
        fail_file(name, NULL, "Image size is too large for this cluster size");
        goto out;
    }
    if (r < 0) {
        fail_file(name, NULL, "Image size must be a multiple of 512 bytes");
        goto out;
    }
    memset(&a, 0, sizeof(a));
    a.size = c.size;
    a.cluster_size = c.cluster_size;
    a.flags = INSTAR_CREATE_PARALLELS;
    /* The header sector and the catalog's clusters. */
    dev = (struct vmm_dev){fd, 0, (uint64_t)c.bat_sectors * 512 + 512,
                           INSTAR_DEV_READ | INSTAR_DEV_WRITE, false};
    r = create_run(name, fd, dev.write_limit, &a, 0, &hdr);
    if (r < 0)
        goto out;
    if (r > 0) {
        fail_file(name, NULL, "Failed to create Parallels image: %s", err_text(hdr.err_args[0]));
        goto out;
    }
    ret = 0;
out:
    close(fd);
    return ret;
}

/*
 * vhdx: vhdx_co_create_opts().  The file is made as for vpc; then the
 * options are checked in qemu's order (subformat by the QAPI visitor, the
 * sizes rounded up, then vhdx_co_create()'s limits), a failure leaving
 * the empty file; the guest writes the layout with the host's random
 * sequence number and GUIDs.
 */
static int create_vhdx(const char *name, const char *path, const struct opt_list *l, uint64_t size)
{
    const char *pa = opt_str(l, "preallocation"), *sub = opt_str(l, "subformat");
    const struct opt_val *lv = opts_find(l, "log_size"), *bv = opts_find(l, "block_size"),
                         *zv = opts_find(l, "block_state_zero");
    int mode = prealloc_mode(pa);
    uint64_t log_size = lv ? lv->value : (1u << 20), block_size = bv ? bv->value : 0;
    struct instar_create_args a;
    struct vhdx_create c;
    struct vmm_dev dev;
    struct instar_result_hdr hdr;
    uint8_t seq[16];
    bool fixed;
    int fd, ret = -1, r;

    if (mode < 0) {
        fail_file(name, NULL, "Parameter 'preallocation' does not accept value '%s'", pa);
        return -1;
    }
    if (check_extent_hint(name, l) < 0 || create_file(path, name, &fd, true) < 0)
        return -1;
    if (mode == 1) {
        fail_file(name, NULL, "Unsupported preallocation mode: metadata");
        goto out;
    }
    if (sub && strcmp(sub, "dynamic") && strcmp(sub, "fixed")) {
        fail_file(name, NULL, "Parameter 'subformat' does not accept value '%s'", sub);
        goto out;
    }
    fixed = sub && !strcmp(sub, "fixed");
    /* vhdx_co_create_opts(): sizes rounded up (block sizes to at most 256 MiB). */
    size = size > UINT64_MAX - 511 ? UINT64_MAX : (size + 511) / 512 * 512;
    log_size = log_size > UINT64_MAX - ((1u << 20) - 1) ? UINT64_MAX
                                                        : (log_size + (1u << 20) - 1) >> 20 << 20;
    block_size = block_size > UINT64_MAX - ((1u << 20) - 1)
                     ? UINT64_MAX
                     : (block_size + (1u << 20) - 1) >> 20 << 20;
    if (block_size > (256u << 20))
        block_size = 256u << 20;
    if (size > VHDX_CREATE_MAX_SIZE) {
        fail_file(name, NULL, "Image size too large; max of 64TB");
        goto out;
    }
    if (log_size > UINT32_MAX) {
        fail_file(name, NULL, "Log size must be smaller than 4 GB");
        goto out;
    }
    if (log_size < (1u << 20)) {
        fail_file(name, NULL, "Log size must be a multiple of 1 MB");
        goto out;
    }
    if (block_size & (block_size - 1)) {
        fail_file(name, NULL, "Block size must be a power of two");
        goto out;
    }
    memset(&c, 0, sizeof(c));
    c.size = size;
    c.log_size = (uint32_t)log_size;
    c.block_size = (uint32_t)block_size;
    c.fixed = fixed;
    c.zero_blocks = zv ? zv->value != 0 : true;
    if (vhdx_create_layout(&c) < 0) {
        fail_file(name, NULL, "Invalid argument");
        goto out;
    }
    memset(&a, 0, sizeof(a));
    a.size = size;
    a.flags = INSTAR_CREATE_VHDX | (fixed ? INSTAR_CREATE_VHDX_FIXED : 0) |
              (c.zero_blocks ? INSTAR_CREATE_VHDX_ZERO : 0);
    a.vhdx_log_size = c.log_size;
    a.vhdx_block_size = (uint32_t)block_size;
    if (random_uuid(seq) < 0 || random_uuid(a.vhdx_guids[0]) < 0 ||
        random_uuid(a.vhdx_guids[1]) < 0 || random_uuid(a.vhdx_guids[2]) < 0) {
        fail_file(name, NULL, "Could not read /dev/urandom");
        goto out;
    }
    /* g_random_int(): a 32-bit sequence number. */
    memcpy(&a.vhdx_seq, seq, sizeof(a.vhdx_seq));
    dev = (struct vmm_dev){fd, 0, c.data_offset + (fixed ? size : 0),
                           INSTAR_DEV_READ | INSTAR_DEV_WRITE, false};
    r = create_run(name, fd, dev.write_limit, &a, 0, &hdr);
    if (r < 0)
        goto out;
    if (r > 0) {
        fail_file(name, NULL, "Failed to write image headers: %s", err_text(hdr.err_args[0]));
        goto out;
    }
    ret = 0;
out:
    close(fd);
    return ret;
}

/*
 * luks: block_crypto_co_create_opts_luks().  The options as the QAPI
 * visitor checks them, the file created empty, then
 * qcrypto_block_luks_create()'s checks, and the guest lays out the
 * volume; a failure after the file exists deletes it, as qemu does.
 */
static int create_luks(const char *name, const char *path, const struct opt_list *l, uint64_t size)
{
    const char *pa = opt_str(l, "preallocation");
    int mode = prealloc_mode(pa);
    struct instar_create_args *a;
    struct instar_result_hdr hdr;
    char msg[MSG_MAX];
    int fd, r, ret = -1;

    if (mode < 0) {
        fail_file(name, NULL, "invalid parameter value: %s", pa);
        return -1;
    }
    if (luksopt_check(l, "", msg, sizeof(msg)) < 0) {
        fail_file(name, NULL, "%s", msg);
        return -1;
    }
    if (check_extent_hint(name, l) < 0 || create_file(path, name, &fd, true) < 0)
        return -1;
    a = calloc(1, sizeof(*a));
    if (!a) {
        fail_file(name, NULL, "%s", strerror(ENOMEM));
        goto fail;
    }
    if (luksopt_build(l, "", &a->luks, msg, sizeof(msg)) < 0) {
        fail_file(name, NULL, "%s", msg);
        goto fail;
    }
    a->size = size;
    a->flags = INSTAR_CREATE_LUKS;
    /* file-posix preallocates falloc and full; metadata means nothing below a format. */
    a->prealloc = mode == 1 ? INSTAR_PREALLOC_OFF : (uint32_t)mode;
    r = create_run(name, fd, size > UINT64_MAX - (64ull << 20) ? UINT64_MAX : size + (64ull << 20),
                   a, CREATE_LUKS_WATCHDOG_MS, &hdr);
    if (r < 0)
        goto fail;
    if (r > 0) {
        if (hdr.error == INSTAR_ERR_IO && hdr.err_args[1] == 0 && hdr.err_args[0] == 27) {
            fail_file(name, NULL, "The requested file size is too large");
        } else if (hdr.error == INSTAR_ERR_IO) {
            fail_file(name, NULL, "Could not write encryption header: %s",
                      err_text(hdr.err_args[0]));
        } else {
            char *m = report_code_render(hdr.error, hdr.err_args, NULL, 0);

            fail_file(name, NULL, "%s", m ? m : "error");
            free(m);
        }
        goto fail;
    }
    ret = 0;
    goto out;
fail:
    /* bdrv_co_delete_file_noerr(): the file goes, whatever it held before. */
    unlink(path);
out:
    if (a) {
        memset(&a->luks, 0, sizeof(a->luks));
        free(a);
    }
    close(fd);
    return ret;
}

/* qemu's strerror for the errno a guest step returned. */
static const char *err_text(uint64_t e)
{
    return strerror(e > 200 ? EIO : (int)e);
}

static void report_stage(const char *filename, int stage, uint64_t e, const char *bfile,
                         const char *bfmt)
{
    switch (stage) {
    case QCOW2_CREATE_STAGE_HEADER:
        fail_file(filename, NULL, "Could not write qcow2 header: %s", err_text(e));
        break;
    case QCOW2_CREATE_STAGE_REFTABLE:
        fail_file(filename, NULL, "Could not write refcount table: %s", err_text(e));
        break;
    case QCOW2_CREATE_STAGE_FIRST_ALLOC:
        fail_file(filename, NULL,
                  "Could not allocate clusters for qcow2 header and refcount table: %s",
                  err_text(e));
        break;
    case QCOW2_CREATE_STAGE_UPDATE_HDR:
        fail_file(filename, NULL, "Could not update qcow2 header: %s", err_text(e));
        break;
    case QCOW2_CREATE_STAGE_GROW_L1:
        fail_file(filename, NULL, "Could not resize image: Failed to grow the L1 table: %s",
                  err_text(e));
        break;
    case QCOW2_CREATE_STAGE_PREALLOC:
        fail_file(filename, NULL, "Could not resize image: Allocating clusters failed: %s",
                  err_text(e));
        break;
    case QCOW2_CREATE_STAGE_REFCOUNT_AREA:
        fail_file(filename, NULL,
                  "Could not resize image: Failed to resize refcount structures: %s", err_text(e));
        break;
    case QCOW2_CREATE_STAGE_DATA_ALLOC:
        fail_file(filename, NULL, "Could not resize image: Failed to allocate data clusters: %s",
                  err_text(e));
        break;
    case QCOW2_CREATE_STAGE_L2:
        fail_file(filename, NULL, "Could not resize image: Failed to update L2 tables: %s",
                  err_text(e));
        break;
    case QCOW2_CREATE_STAGE_BACKING:
        fail_file(filename, NULL, "Could not assign backing file '%s' with format '%s': %s",
                  bfile ? bfile : "", bfmt ? bfmt : "(null)", err_text(e));
        break;
    case QCOW2_CREATE_STAGE_CRYPTO_ALLOC:
        fail_file(filename, NULL, "Cannot allocate cluster for LUKS header: %s", err_text(e));
        break;
    case QCOW2_CREATE_STAGE_CRYPTO_ZERO:
        fail_file(filename, NULL, "Could not zero fill encryption header: %s", err_text(e));
        break;
    case QCOW2_CREATE_STAGE_CRYPTO_WRITE:
        /* qcow2_crypto_hdr_write_func()'s wording for a failed write. */
        fail_file(filename, NULL, "Could not read encryption header: %s", err_text(e));
        break;
    case QCOW2_CREATE_STAGE_CRYPTO_HDR:
        fail_file(filename, NULL, "Could not write encryption header: %s", err_text(e));
        break;
    default:
        fail_file(filename, NULL, "Could not resize image: %s", err_text(e));
        break;
    }
}

struct qcow2_params {
    struct instar_create_args a;
    const char *data_file;
    const char *backing_file;
    const char *backing_fmt;
    uint64_t cluster_size;
    bool backing_too_long;
};

/*
 * The QAPI visitor's and qcow2_co_create()'s checks, in their order.
 * Returns 0 or -1 after reporting.
 */
static int qcow2_validate(const char *filename, const struct opt_list *l, uint64_t size,
                          struct qcow2_params *p)
{
    static const char *const versions[] = {"v2", "v3", "0.10", "1.1", NULL};
    static const char *const ctypes[] = {"zlib", "zstd", NULL};
    static const char *const encfmts[] = {"qcow", "aes", "luks", NULL};
    const char *compat = opt_str(l, "compat"), *pa = opt_str(l, "preallocation");
    const char *ct = opt_str(l, "compression_type"), *enc = opt_str(l, "encrypt.format");
    const struct opt_val *v;
    uint64_t rb = 16;
    int mode;

    memset(p, 0, sizeof(*p));
    if (encryption_alias_check(filename, l) < 0)
        return -1;
    p->backing_file = opt_str(l, "backing_file");
    p->backing_fmt = opt_str(l, "backing_fmt");
    p->data_file = opt_str(l, "data_file");

    /* The visitor, in BlockdevCreateOptionsQcow2's member order. */
    if (compat && !str_in(compat, versions)) {
        fail_file(filename, NULL, "Parameter 'version' does not accept value '%s'", compat);
        return -1;
    }
    if (p->backing_fmt && !cmd_driver_known(p->backing_fmt)) {
        fail_file(filename, NULL, "Parameter 'backing-fmt' does not accept value '%s'",
                  p->backing_fmt);
        return -1;
    }
    if (opt_bool(l, "encryption") && !enc) {
        enc = "qcow";
    }
    if (enc && !str_in(enc, encfmts)) {
        fail_file(filename, NULL, "Parameter 'encrypt.format' does not accept value '%s'", enc);
        return -1;
    }
    if (enc && !strcmp(enc, "luks")) {
        char msg[MSG_MAX];

        if (luksopt_check(l, "encrypt.", msg, sizeof(msg)) < 0) {
            fail_file(filename, NULL, "%s", msg);
            return -1;
        }
    }
    mode = prealloc_mode(pa);
    if (mode < 0) {
        fail_file(filename, NULL, "Parameter 'preallocation' does not accept value '%s'", pa);
        return -1;
    }
    if (ct && !str_in(ct, ctypes)) {
        fail_file(filename, NULL, "Parameter 'compression-type' does not accept value '%s'", ct);
        return -1;
    }

    /* qcow2_co_create() */
    p->a.size = (size + 511) & ~511ull;
    p->a.version = compat && (!strcmp(compat, "v2") || !strcmp(compat, "0.10")) ? 2 : 3;
    v = opts_find(l, "cluster_size");
    p->cluster_size = v ? v->value : 65536;
    bool extl2 = opt_bool(l, "extended_l2");
    if (extl2 && p->a.version < 3) {
        fail_file(filename, NULL,
                  "Extended L2 entries are only supported with compatibility level 1.1 and "
                  "above (use version=v3 or greater)");
        return -1;
    }
    uint64_t cs = p->cluster_size;
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
        fail_file(filename, NULL, "Cluster size must be a power of two between 512 and 2048k");
        return -1;
    }
    if (extl2 && cs < 16384) {
        fail_file(filename, NULL,
                  "Extended L2 entries are only supported with cluster sizes of at least 16384 "
                  "bytes");
        return -1;
    }
    if (p->backing_file && mode != 0 && !extl2) {
        fail_file(filename, NULL,
                  "Backing file and preallocation can only be used at the same time if "
                  "extended_l2 is on");
        return -1;
    }
    if (p->backing_fmt && !p->backing_file) {
        fail_file(filename, NULL, "Backing format cannot be used without backing file");
        return -1;
    }
    bool lazy = opt_bool(l, "lazy_refcounts");
    if (p->a.version < 3 && lazy) {
        fail_file(filename, NULL,
                  "Lazy refcounts only supported with compatibility level 1.1 and above (use "
                  "version=v3 or greater)");
        return -1;
    }
    v = opts_find(l, "refcount_bits");
    if (v) {
        rb = v->value;
    }
    if (rb > 64 || rb == 0 || (rb & (rb - 1))) {
        fail_file(filename, NULL,
                  "Refcount width must be a power of two and may not exceed 64 bits");
        return -1;
    }
    if (p->a.version < 3 && rb != 16) {
        fail_file(filename, NULL,
                  "Different refcount widths than 16 bits require compatibility level 1.1 or "
                  "above (use version=v3 or greater)");
        return -1;
    }
    bool dfraw = opt_bool(l, "data_file_raw");
    if (dfraw && !p->data_file) {
        fail_file(filename, NULL, "data-file-raw requires data-file");
        return -1;
    }
    if (dfraw && p->backing_file) {
        fail_file(filename, NULL, "Backing file and data-file-raw cannot be used at the same time");
        return -1;
    }
    if (dfraw && mode == 0) {
        mode = 1;
    }
    if (p->data_file && p->a.version < 3) {
        fail_file(filename, NULL,
                  "External data files are only supported with compatibility level 1.1 and "
                  "above (use version=v3 or greater)");
        return -1;
    }
    if (ct && strcmp(ct, "zlib") && p->a.version < 3) {
        fail_file(filename, NULL,
                  "Non-zlib compression type is only supported with compatibility level 1.1 "
                  "and above (use version=v3 or greater)");
        return -1;
    }
    p->a.cluster_size = cs;
    p->a.refcount_bits = (uint32_t)rb;
    p->a.flags = (lazy ? INSTAR_CREATE_LAZY_REFCOUNTS : 0) |
                 (extl2 ? INSTAR_CREATE_EXTENDED_L2 : 0) |
                 (dfraw ? INSTAR_CREATE_DATA_FILE_RAW : 0);
    p->a.prealloc = (uint32_t)mode;
    p->a.compression_type = ct && !strcmp(ct, "zstd") ? 1 : 0;
    if (p->data_file && strlen(p->data_file) >= INSTAR_NAME_MAX) {
        fail_file(filename, NULL, "File name too long");
        return -1;
    }
    /*
     * qcow2_change_backing_file() takes at most 1023 bytes; a longer name
     * fails after the image is laid out (create_qcow2 reports it).
     */
    p->backing_too_long = p->backing_file && strlen(p->backing_file) >= INSTAR_NAME_MAX;
    if (p->backing_file && !p->backing_too_long) {
        snprintf(p->a.backing_file, sizeof(p->a.backing_file), "%s", p->backing_file);
    }
    if (p->backing_fmt) {
        snprintf(p->a.backing_fmt, sizeof(p->a.backing_fmt), "%s", p->backing_fmt);
    }
    if (p->data_file) {
        snprintf(p->a.data_file, sizeof(p->a.data_file), "%s", p->data_file);
    }
    return 0;
}

/*
 * A generous bound of the file length a create can reach: data, L2 and L1
 * tables, refcount blocks at the narrowest entries per cluster, and slack
 * for the table moves (the guest's writes are held to it).  a holds the
 * options and SIZE the host validated; only without SIZE is the size a
 * guest's word, the backing file's virtual size, which qemu-img takes from
 * that image too (an image can claim any size: the guest adds nothing).
 */
static uint64_t write_limit(const struct instar_create_args *a)
{
    uint64_t cs = a->cluster_size, l2e = (a->flags & INSTAR_CREATE_EXTENDED_L2) ? 16 : 8;
    uint64_t data = a->size / cs + 1, meta = data * l2e / cs + 64;
    uint64_t per_rb = cs * 8 / a->refcount_bits;
    uint64_t n = data + meta;

    n += 2 * (n / per_rb) + 2 * (n / (cs / 8)) + 64;
    return n > (uint64_t)INT64_MAX / cs ? (uint64_t)INT64_MAX : n * cs;
}

/* BDRV_MAX_LENGTH: the largest length the block layer accepts. */
#define BDRV_MAX_LENGTH UINT64_C(9223372035781033984)

/*
 * The whole qcow2 create after the Formatting line; -1 after reporting.
 * As qcow2_co_create_opts() does, the file (and the data file) is created
 * first and every option checked after, so that a failed create leaves
 * no file behind, not even one that existed before.
 */
static int create_qcow2(const char *filename, const char *path, const struct opt_list *l,
                        uint64_t size)
{
    struct qcow2_params p;
    struct vmm_dev devs[2];
    struct vmm_config cfg;
    struct vmm_outcome out;
    struct instar_result_hdr hdr;
    const char *data_file = opt_str(l, "data_file");
    int fd = -1, dfd = -1, ret = -1;
    bool made = false, dmade = false;

    if (check_extent_hint(filename, l) < 0) {
        return -1;
    }
    if (create_file(path, filename, &fd, true) < 0) {
        return -1;
    }
    made = true;
    if (data_file) {
        struct stat a, b;

        if (create_file(data_file, filename, &dfd, false) < 0) {
            goto out;
        }
        if (fstat(fd, &a) == 0 && fstat(dfd, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            /* The data file is the image: qemu's lock check refuses it. */
            fflush(stdout);
            fprintf(stderr, "%s: %s is not a regular file: No such file or directory\n",
                    report_progname(), data_file);
            fail_file(filename, NULL, "Failed to get shared \"resize\" lock");
            fprintf(stderr, "Is another process using the image [%s]?\n", data_file);
            close(dfd);
            dfd = -1;
            goto out;
        }
        dmade = true;
    }
    if (qcow2_validate(filename, l, size, &p) < 0) {
        goto out;
    }
    /* bdrv_co_truncate()'s checks of the rounded size. */
    if (p.a.size > (uint64_t)INT64_MAX) {
        fail_file(filename, NULL, "Could not resize image: Image size cannot be negative");
        goto out;
    }
    if (p.a.size > BDRV_MAX_LENGTH) {
        fail_file(filename, NULL,
                  "Could not resize image: offset(%" PRIu64 ") exceeds maximum(%" PRIu64 ")",
                  p.a.size, BDRV_MAX_LENGTH);
        goto out;
    }

    /*
     * encrypt.format=luks: qcrypto_block_luks_create()'s checks, the key
     * and the random bytes (the guest builds the header after the image).
     * The old AES method: the secret required and looked up, crypt_method 1.
     */
    const char *enc = opt_str(l, "encrypt.format");
    /* convert then writes through the encryption (dd has no -o for a secret). */
    if (enc && !strcmp(enc, "luks")) {
        char msg[MSG_MAX];

        if (luksopt_build(l, "encrypt.", &p.a.luks, msg, sizeof(msg)) < 0) {
            fail_file(filename, NULL, "%s", msg);
            goto out;
        }
        p.a.flags |= INSTAR_CREATE_ENCRYPT;
    } else if (enc || opt_bool(l, "encryption")) {
        /* qcrypto_block_qcow_create(): the secret required and read, nothing written. */
        const char *sec = opt_str(l, "encrypt.key-secret");

        if (!sec) {
            fail_file(filename, NULL, "Parameter 'encrypt.key-secret' is required for cipher");
            goto out;
        }
        {
            const char *f = NULL;

            if (!object_secret_lookup(sec, &f)) {
                char m[512];

                snprintf(m, sizeof(m), f, sec);
                fail_file(filename, NULL, "%s", m);
                goto out;
            }
        }
        p.a.flags |= INSTAR_CREATE_ENCRYPT_AES;
    }

    uint64_t limit = write_limit(&p.a);
    /* The LUKS header's clusters: at most 2 MiB of header and key material. */
    if ((p.a.flags & INSTAR_CREATE_ENCRYPT) && limit < (uint64_t)INT64_MAX - (8ull << 20))
        limit += (4ull << 20) + 2 * p.a.cluster_size;

    memset(devs, 0, sizeof(devs));
    devs[0] = (struct vmm_dev){fd, 0, limit, INSTAR_DEV_READ | INSTAR_DEV_WRITE, false};
    devs[1] = (struct vmm_dev){dfd, 0, p.a.size, INSTAR_DEV_READ | INSTAR_DEV_WRITE, false};
    memset(&cfg, 0, sizeof(cfg));
    /* Room for an L1 table of up to 32 MiB, its byte copy and the caches (a constant). */
    cfg.mem_size = 256ull << 20;
    if (p.a.flags & INSTAR_CREATE_ENCRYPT)
        cfg.watchdog_ms = CREATE_LUKS_WATCHDOG_MS;
    memset(&out, 0, sizeof(out));
    if (vmm_run(&cfg, INSTAR_OP_CREATE, &p.a, sizeof(p.a), devs, p.data_file ? 2 : 1, &out) != 0) {
        fail_file(filename, NULL, "sandbox failure: %s",
                  out.detail[0] ? out.detail : "unknown error");
        vmm_outcome_release(&out);
        goto out;
    }
    if (result_hdr_parse(out.result, out.result_len, INSTAR_OP_CREATE, &hdr) != RESULT_OK) {
        fail_file(filename, NULL, "sandbox failure: invalid result");
        vmm_outcome_release(&out);
        goto out;
    }
    vmm_outcome_release(&out);
    memset(&p.a.luks, 0, sizeof(p.a.luks));
    if (hdr.error && hdr.error != INSTAR_ERR_IO) {
        /* The LUKS steps' own failures (the benchmark, the iteration counts). */
        char *m = report_code_render(hdr.error, hdr.err_args, NULL, 0);

        fail_file(filename, NULL, "%s", m ? m : "error");
        free(m);
        goto out;
    }
    if (hdr.error) {
        uint64_t e = hdr.err_args[0];
        if (e == EFBIG) {
            /* bdrv_img_create(): cluster_size always has a value for qcow2. */
            fail_file(filename, NULL,
                      "The image size is too large for file format 'qcow2' (try using a larger "
                      "cluster size)");
        } else {
            report_stage(filename, (int)hdr.err_args[1], e, p.backing_file, p.backing_fmt);
        }
        goto out;
    }
    if (p.backing_too_long) {
        report_stage(filename, QCOW2_CREATE_STAGE_BACKING, EINVAL, p.backing_file, p.backing_fmt);
        goto out;
    }
    ret = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    if (dfd >= 0) {
        close(dfd);
    }
    if (ret < 0) {
        if (made) {
            unlink(path);
        }
        if (dmade) {
            unlink(data_file);
        }
    }
    return ret;
}

/*
 * The backing file check of bdrv_img_create(): open it as qemu does
 * (format fmt or probed, read-only, force-share, no I/O: its own backing
 * chain is opened, no external data file is), through the path policy;
 * fill *size from it when SIZE was not given.  Failures are worded as
 * bdrv_open() words them, after "FILE: ", with qemu's hint.
 * Returns 0, or -1 after reporting.
 */
static int check_backing(const char *filename, const char *backing, const char *fmt, int64_t *size)
{
    struct open_chain oc;
    char *full = policy_full_backing(filename, backing);
    char *msg = NULL;
    int r, ret = -1;

    if (!full) {
        fail_file(filename, NULL, "%s", strerror(ENOMEM));
        return -1;
    }
    fflush(stdout);
    /* The protocol driver named as a format reads the file as raw does. */
    r = open_chain_msg(&oc, full, fmt && !strcmp(fmt, "file") ? "raw" : fmt,
                       OPEN_FORCE_SHARE | OPEN_METADATA, &msg);
    if (r < 0) {
        fail_file(filename, "Could not open backing image.\n", "%s", msg ? msg : strerror(ENOMEM));
        goto out;
    }
    if (!fmt) {
        fail_file(filename, NULL, "Backing file specified without backing format");
        fprintf(stderr, "Detected format of %s.", oc.img[0].info->format);
        open_chain_close(&oc);
        goto out;
    }
    if (*size == -1) {
        *size = oc.img[0].info->virtual_size;
    }
    open_chain_close(&oc);
    ret = 0;
out:
    free(msg);
    free(full);
    return ret;
}

int cmd_create(int argc, char **argv)
{
    const char *fmt = "raw", *base_fmt = NULL, *base_filename = NULL, *filename, *path;
    char *options = NULL, *proto_refusal = NULL;
    bool quiet = false, no_backing = false;
    int64_t img_size = -1;
    struct opt_list l;
    char msg[MSG_MAX], hint[MSG_MAX];
    int c, ret = 1;

    memset(&l, 0, sizeof(l));
    optind = 0;
    opterr = 0;
    while ((c = cmd_getopt(argc, argv, ":F:b:f:ho:qu", create_long, &ret)) != -1) {
        switch (c) {
        case CMD_GETOPT_DONE:
            goto out;
        case 'F':
            base_fmt = optarg;
            break;
        case 'b':
            base_filename = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'o':
            if (cmd_add_options(&options, optarg) < 0)
                goto out;
            break;
        case 'q':
            quiet = true;
            break;
        case 'u':
            no_backing = true;
            break;
        case OPTION_OBJECT:
            /* user_creatable_process_cmdline(): help or a bad definition ends qemu-img. */
            c = object_add(optarg);
            if (c != 0) {
                ret = c > 0 ? 0 : 1;
                goto out;
            }
            break;
        }
    }

    filename = optind < argc ? argv[optind] : NULL;
    if (options && opts_has_help(options)) {
        ret = option_help(filename, fmt);
        goto out;
    }
    if (optind >= argc) {
        ret = report_usage("Expecting image file name");
        goto out;
    }
    optind++;
    if (optind < argc) {
        img_size = size_cvtnum("image size", argv[optind++], 0, INT64_MAX);
        if (img_size < 0) {
            goto out;
        }
    }
    if (optind != argc) {
        ret = report_usage("Unexpected argument: %s", argv[optind]);
        goto out;
    }

    /* bdrv_img_create() */
    path = filename;
    if (!cmd_driver_known(fmt)) {
        fail_file(filename, NULL, "Unknown file format '%s'", fmt);
        goto out;
    }
    /* bdrv_find_protocol(): "file:" is stripped, other prefixes refused. */
    if (policy_has_protocol(filename)) {
        char *pmsg = NULL;
        if (policy_host_path(filename, &path, &pmsg) < 0) {
            if (!strncmp(filename, "json:", 5) || (pmsg && !strncmp(pmsg, "Unknown", 7))) {
                fail_file(filename, NULL, "Unknown protocol '%.*s'", (int)strcspn(filename, ":"),
                          filename);
                free(pmsg);
                goto out;
            }
            proto_refusal = pmsg; /* a protocol qemu knows: refused after the Formatting line */
        }
    }
    if (!cmd_driver_creates(fmt)) {
        fail_file(filename, NULL, "Format driver '%s' does not support image creation", fmt);
        goto out;
    }
    if (!format_descs(fmt)) {
        fail_file(filename, NULL, "Format '%s' is not supported by instar create", fmt);
        goto out;
    }
    opts_append(&l, format_descs(fmt));
    opts_append(&l, file_descs);
    if (options && opts_parse(&l, options, msg, hint, sizeof(msg)) < 0) {
        fail_file(filename, hint, "%s", msg);
        goto out;
    }
    if (!opts_find(&l, "size")) {
        char num[32];
        snprintf(num, sizeof(num), "%" PRId64, img_size);
        opts_set(&l, "size", num, (uint64_t)img_size);
    } else if (img_size != -1) {
        fail_file(filename, NULL, "The image size must be specified only once");
        goto out;
    }
    if (base_filename) {
        if (strcmp(fmt, "qcow2") && strcmp(fmt, "qed") && strcmp(fmt, "qcow") &&
            strcmp(fmt, "vmdk")) {
            fail_file(filename, NULL, "Backing file not supported for file format '%s'", fmt);
            goto out;
        }
        opts_set(&l, "backing_file", base_filename, 0);
    }
    if (base_fmt) {
        if (strcmp(fmt, "qcow2") && strcmp(fmt, "qed") && strcmp(fmt, "qcow") &&
            strcmp(fmt, "vmdk")) {
            fail_file(filename, NULL, "Backing file format not supported for file format '%s'",
                      fmt);
            goto out;
        }
        opts_set(&l, "backing_fmt", base_fmt, 0);
    }
    const char *backing = opt_str(&l, "backing_file");
    if (backing) {
        if (!strcmp(filename, backing)) {
            fail_file(filename, NULL,
                      "Error: Trying to create an image with the same filename as the backing "
                      "file");
            goto out;
        }
        if (!backing[0]) {
            fail_file(filename, NULL, "Expected backing file name, got empty string");
            goto out;
        }
    }
    const char *bfmt = opt_str(&l, "backing_fmt");
    int64_t size = (int64_t)opts_find(&l, "size")->value;
    if (backing && !no_backing) {
        if (check_backing(filename, backing, bfmt, &size) < 0) {
            goto out;
        }
        char num[32];
        snprintf(num, sizeof(num), "%" PRId64, size);
        opts_set(&l, "size", num, (uint64_t)size);
    } else if (backing && !bfmt) {
        fail_file(filename, NULL, "Backing file specified without backing format");
        goto out;
    }
    if (size == -1) {
        fail_file(filename, NULL, "Image creation needs a size parameter");
        goto out;
    }
    if (!quiet) {
        printf("Formatting '%s', fmt=%s ", filename, fmt);
        opts_print(&l);
        puts("");
        fflush(stdout);
    }
    if (proto_refusal) {
        fail_file(filename, NULL, "%s", proto_refusal);
        goto out;
    }
    if (!strcmp(fmt, "qcow2")) {
        ret = create_qcow2(filename, path, &l, (uint64_t)size) < 0 ? 1 : 0;
    } else if (!strcmp(fmt, "vpc")) {
        ret = create_vpc(filename, path, &l, (uint64_t)size) < 0 ? 1 : 0;
    } else if (!strcmp(fmt, "luks")) {
        ret = create_luks(filename, path, &l, (uint64_t)size) < 0 ? 1 : 0;
    } else if (!strcmp(fmt, "vdi")) {
        ret = create_vdi(filename, path, &l, (uint64_t)size) < 0 ? 1 : 0;
    } else if (!strcmp(fmt, "vhdx")) {
        ret = create_vhdx(filename, path, &l, (uint64_t)size) < 0 ? 1 : 0;
    } else if (!strcmp(fmt, "qed")) {
        ret = create_qed(filename, path, &l, (uint64_t)size) < 0 ? 1 : 0;
    } else if (!strcmp(fmt, "qcow")) {
        ret = create_qcow(filename, path, &l, (uint64_t)size) < 0 ? 1 : 0;
    } else if (!strcmp(fmt, "parallels")) {
        ret = create_parallels(filename, path, &l, (uint64_t)size) < 0 ? 1 : 0;
    } else if (!strcmp(fmt, "vmdk")) {
        ret = create_vmdk(filename, path, &l, (uint64_t)size) < 0 ? 1 : 0;
    } else {
        ret = create_raw(filename, path, fmt, &l, (uint64_t)size) < 0 ? 1 : 0;
    }
out:
    free(proto_refusal);
    opts_free(&l);
    free(options);
    return ret;
}

/*
 * bdrv_create() for convert and dd: infix as fail_infix, cmd the command
 * refusing a format; backing/backing_fmt (may be NULL) set after the
 * options as add_old_style_options() sets -B and -F.
 */
static int create_for(const char *filename, const char *fmt, const char *options, uint64_t size,
                      const char *backing, const char *backing_fmt, const char *infix,
                      const char *cmd)
{
    const char *path = filename;
    char msg[MSG_MAX], hint[MSG_MAX], num[32];
    struct opt_list l;
    int ret = -1;

    memset(&l, 0, sizeof(l));
    if (!cmd_driver_known(fmt)) {
        report_error("Unknown file format '%s'", fmt);
        return -1;
    }
    if (!format_descs(fmt)) {
        report_error("Format '%s' is not supported by instar %s", fmt, cmd);
        return -1;
    }
    if (policy_has_protocol(filename)) {
        char *pmsg = NULL;

        if (policy_host_path(filename, &path, &pmsg) < 0) {
            report_error("%s", pmsg ? pmsg : "Unknown protocol");
            free(pmsg);
            return -1;
        }
    }
    opts_append(&l, format_descs(fmt));
    opts_append(&l, file_descs);
    if (options && opts_parse(&l, options, msg, hint, sizeof(msg)) < 0) {
        report_error("%s", msg);
        if (hint[0])
            fputs(hint, stderr);
        goto out;
    }
    snprintf(num, sizeof(num), "%" PRIu64, size);
    opts_set(&l, "size", num, size);
    if (backing)
        opts_set(&l, "backing_file", backing, 0);
    if (backing_fmt)
        opts_set(&l, "backing_fmt", backing_fmt, 0);
    fail_infix = infix;
    if (!strcmp(fmt, "qcow2"))
        ret = create_qcow2(filename, path, &l, size);
    else if (!strcmp(fmt, "vpc"))
        ret = create_vpc(filename, path, &l, size);
    else if (!strcmp(fmt, "luks"))
        ret = create_luks(filename, path, &l, size);
    else if (!strcmp(fmt, "vdi"))
        ret = create_vdi(filename, path, &l, size);
    else if (!strcmp(fmt, "parallels"))
        ret = create_parallels(filename, path, &l, size);
    else if (!strcmp(fmt, "qed"))
        ret = create_qed(filename, path, &l, size);
    else if (!strcmp(fmt, "vhdx"))
        ret = create_vhdx(filename, path, &l, size);
    else if (!strcmp(fmt, "vmdk"))
        ret = create_vmdk(filename, path, &l, size);
    else if (!strcmp(fmt, "qcow"))
        ret = create_qcow(filename, path, &l, size);
    else
        ret = create_raw(filename, path, fmt, &l, size);
    fail_infix = NULL;
out:
    opts_free(&l);
    return ret;
}

/* The option list l knows name (qemu_opt_set() fails otherwise). */
static bool opts_known(const struct opt_list *l, const char *name)
{
    for (unsigned i = 0; i < l->ndescs; i++)
        if (!strcmp(l->descs[i]->name, name))
            return true;
    return false;
}

int create_convert_backing(const char *fmt, const char *options, const char *backing,
                           const char *backing_fmt, char **out_backing, char **out_backing_fmt)
{
    char msg[MSG_MAX], hint[MSG_MAX];
    const char *v;
    struct opt_list l;
    int ret = -1;

    *out_backing = *out_backing_fmt = NULL;
    if (!format_descs(fmt))
        return 0; /* refused later, by create_for_convert */
    memset(&l, 0, sizeof(l));
    opts_append(&l, format_descs(fmt));
    opts_append(&l, file_descs);
    if (options && opts_parse(&l, options, msg, hint, sizeof(msg)) < 0) {
        report_error("%s", msg);
        if (hint[0])
            fputs(hint, stderr);
        goto out;
    }
    if (backing && !opts_known(&l, "backing_file")) {
        report_error("Backing file not supported for file format '%s'", fmt);
        goto out;
    }
    if (backing_fmt && !opts_known(&l, "backing_fmt")) {
        report_error("Backing file format not supported for file format '%s'", fmt);
        goto out;
    }
    v = backing ? backing : opt_str(&l, "backing_file");
    if (v && !(*out_backing = strdup(v)))
        goto out;
    v = backing_fmt ? backing_fmt : opt_str(&l, "backing_fmt");
    if (v && !(*out_backing_fmt = strdup(v)))
        goto out;
    ret = 0;
out:
    if (ret < 0) {
        free(*out_backing);
        free(*out_backing_fmt);
        *out_backing = *out_backing_fmt = NULL;
    }
    opts_free(&l);
    return ret;
}

int create_for_convert(const char *filename, const char *fmt, const char *options, uint64_t size,
                       const char *backing, const char *backing_fmt)
{
    char infix[128];

    snprintf(infix, sizeof(infix), "error while converting %s", fmt);
    return create_for(filename, fmt, options, size, backing, backing_fmt, infix, "convert");
}

int create_for_dd(const char *filename, const char *fmt, uint64_t size)
{
    return create_for(filename, fmt, NULL, size, NULL, NULL, "error while creating output image",
                      "dd");
}

int create_option_help(const char *filename, const char *fmt)
{
    return option_help(filename, fmt);
}
