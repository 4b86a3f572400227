/*
 * The host side of qemu-img's img_open(): which files are opened, in
 * which order, with which locks, and what qemu-img says when one fails.
 *
 * Order, as block.c opens a chain: the image (probe, then the format
 * driver attaches its file, which takes the locks, then parses); inside
 * the qcow2 open its external data file; after the image is open, its
 * backing file (bdrv_open_backing_file), recursively.  A backing file's
 * failure is prefixed by "Could not open backing file: " at each level.
 *
 * Locks follow the permissions block.c computes (bdrv_default_perms_for_
 * storage / _for_cow, verified against qemu-img 7.2 byte by byte): a
 * format node's file uses "consistent read" (unless BDRV_O_NO_IO) and
 * shares neither write nor resize; a read-write one also uses write and
 * resize; raw passes its parent's permissions through and shares all; an
 * external data file uses what its image uses and does not share resize;
 * force-share shares everything.
 *
 * Every name the guest found inside an image is decided by cmd/policy.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmds.h"
#include "lock.h"
#include "object.h"
#include "open.h"
#include "bochs/bochs_err.h"
#include "cloop/cloop_err.h"
#include "dmg/dmg.h"
#include "vhdx/vhdx_err.h"
#include "vmdk/vmdk_err.h"
#include "vpc/vpc_err.h"
#include "parallels/parallels_err.h"
#include "report.h"
#include "result.h"
#include "size.h"
#include "spec.h"
#include "vmm.h"

#define PERM_CR LOCK_PERM_CONSISTENT_READ
#define PERM_W  LOCK_PERM_WRITE
#define PERM_R  LOCK_PERM_RESIZE

static char *msgf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *msgf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* Printable ASCII only: vmm details may quote guest-supplied strings. */
static void sanitize(char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n && s[i]; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            s[i] = '?';
    if (n)
        s[n - 1] = '\0';
}

/*
 * raw (or the file protocol driver named as a format, "-f file"),
 * answered by the host: QEMU's raw driver over the file driver, like the
 * file driver itself, reports the file length rounded up to whole
 * 512-byte sectors (bdrv_getlength), no cluster size, and a clean dirty
 * flag.
 */
static void image_info_raw(struct image_info *ii, const struct stat *st, const char *fmt)
{
    uint64_t size = (uint64_t)st->st_size;

    if (size > (uint64_t)INT64_MAX - 511)
        size = (uint64_t)INT64_MAX - 511;
    snprintf(ii->format, sizeof(ii->format), "%s", fmt);
    ii->virtual_size = (int64_t)((size + 511) & ~(uint64_t)511);
    ii->has_dirty_flag = true;
}

/*
 * The permissions the node over this file uses and shares (see the
 * header comment).  Returns false when no lock is taken at all.
 */
static bool image_perms(bool raw, unsigned flags, unsigned *perm, unsigned *shared)
{
    if (flags & OPEN_METADATA) {
        /* info: NO_IO; raw passes its parent's (nothing) through. */
        if (raw || (flags & OPEN_FORCE_SHARE))
            return false;
        *perm = 0;
        *shared = LOCK_PERM_ALL & ~(PERM_W | PERM_R);
        return true;
    }
    if (raw) {
        *perm = PERM_CR;
        if (flags & OPEN_RDWR)
            *perm |= PERM_W | ((flags & OPEN_RESIZE) ? PERM_R : 0);
        *shared = LOCK_PERM_ALL;
        return true;
    }
    *perm = PERM_CR | ((flags & OPEN_RDWR) ? PERM_W | PERM_R : 0);
    *shared = (flags & OPEN_FORCE_SHARE) ? LOCK_PERM_ALL : LOCK_PERM_ALL & ~(PERM_W | PERM_R);
    return true;
}

static int image_lock(int fd, const char *name, bool raw, unsigned flags, char **msg)
{
    unsigned perm, shared;
    char lmsg[512];

    if (!image_perms(raw, flags, &perm, &shared))
        return 0;
    if (lock_perms(fd, perm, shared, name, lmsg, sizeof(lmsg)) < 0) {
        *msg = msgf("%s", lmsg);
        return -1;
    }
    return 0;
}

/*
 * A vmdk extent file: a child the format opens as its storage
 * (bdrv_default_perms_for_storage()).  A sparse extent holds metadata and
 * is locked as the descriptor is; a flat one is data only: the parent's
 * permissions passed through (consistent read unless NO_IO, write and so
 * resize when read-write), everything shared but resize (-U: everything).
 */
static int extent_lock(int fd, const char *name, bool flat, unsigned flags, char **msg)
{
    unsigned perm, shared;
    char lmsg[512];

    if (!flat)
        return image_lock(fd, name, false, flags, msg);
    perm = ((flags & OPEN_METADATA) ? 0 : PERM_CR) | ((flags & OPEN_RDWR) ? PERM_W | PERM_R : 0);
    shared = (flags & OPEN_FORCE_SHARE) ? LOCK_PERM_ALL : LOCK_PERM_ALL & ~PERM_R;
    if (perm == 0 && shared == LOCK_PERM_ALL)
        return 0;
    if (lock_perms(fd, perm, shared, name, lmsg, sizeof(lmsg)) < 0) {
        *msg = msgf("%s", lmsg);
        return -1;
    }
    return 0;
}

/*
 * A vmdk extent file name the guest proposed: qemu opens it as
 * bdrv_dirname(descriptor) + name, or as given when absolute
 * (vmdk_parse_extents()).  instar takes names beside the descriptor only:
 * an absolute name, or one with a ".." component, is refused unless the
 * allowlist (INSTAR_BACKING_ALLOW) is set and decides (CVE-2022-47951: a
 * descriptor naming a host file copies it into convert's output).
 * Protocols, devices and FIFOs are refused by policy_open() as for
 * backing files.  Returns 0 with *fd, *st and *full, or -1 with *msg.
 */
static int open_extent(const char *image, const char *name, bool rdwr, int *fd, struct stat *st,
                       char **full, char **msg)
{
    const char *p, *path;
    bool dotdot = false;

    for (p = name; *p; p = strchr(p, '/') ? strchr(p, '/') + 1 : p + strlen(p))
        if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0'))
            dotdot = true;
    if (!getenv(POLICY_ALLOW_ENV) && (name[0] == '/' || dotdot)) {
        *msg = msgf("Could not open '%s': instar opens VMDK extent files only beside their "
                    "descriptor (set %s to allow others)",
                    name, POLICY_ALLOW_ENV);
        return -1;
    }
    *full = policy_full_backing(image, name);
    if (!*full)
        return -1;
    if (policy_host_path(*full, &path, msg) < 0)
        return -1;
    if (policy_open(path, POLICY_BACKING, rdwr, fd, st, msg) < 0)
        return -1;
    return 0;
}

/*
 * Ask the guest about the image open on fd, then lock it.  On failure
 * returns -1 with *msg; on success fills ii from the result.  A vmdk
 * descriptor's extent files are opened on the guest's word and the image
 * described again with them (img->ext_fd).
 */
static int describe(struct image_info *ii, struct open_image *img, const char *name,
                    const char *fmt, int fd, const struct stat *st, unsigned flags, char **msg,
                    int32_t *gerr)
{
    struct instar_info_args args;
    struct vmm_dev dev[1 + INSTAR_VMDK_EXTENTS_MAX];
    struct vmm_outcome out;
    struct result_info v;
    enum result_bad why;
    unsigned ndev = 1, k;
    char *missing = NULL; /* the message of the extent file that could not be opened */
    int ret = -1;

    memset(&args, 0, sizeof(args));
    if (fmt)
        snprintf(args.format, sizeof(args.format), "%s", fmt);
    if (strlen(name) > 4 && !strcmp(name + strlen(name) - 4, ".dmg"))
        args.flags |= INSTAR_INFO_NAME_DMG;
    /* The guest applies the open's own rules (BDRV_O_CHECK is inherited by backing files). */
    if (flags & OPEN_CHECK)
        args.flags |= INSTAR_INFO_OPEN_CHECK;
    if (flags & OPEN_RDWR)
        args.flags |= INSTAR_INFO_OPEN_RDWR;
    if (flags & OPEN_VPC_SIZE_CHS)
        args.flags |= INSTAR_INFO_VPC_SIZE_CHS;
    if (flags & OPEN_VPC_SIZE_CURRENT)
        args.flags |= INSTAR_INFO_VPC_SIZE_CURRENT;
    if (flags & OPEN_HAS_KEY)
        args.flags |= INSTAR_INFO_HAS_KEY;
    memset(dev, 0, sizeof(dev));
    dev[0].fd = fd;
    dev[0].size = (uint64_t)st->st_size;
    dev[0].write_limit = 0;
    dev[0].flags = INSTAR_DEV_READ;
    memset(&out, 0, sizeof(out));

again:
    if (vmm_run(NULL, INSTAR_OP_INFO, &args, sizeof(args), dev, ndev, &out) != 0) {
        sanitize(out.detail, sizeof(out.detail));
        *msg = msgf("sandbox failure: %s", out.detail[0] ? out.detail : "unknown error");
        goto out;
    }
    why = result_info_parse(out.result, out.result_len, &v);
    if (why != RESULT_OK) {
        *msg = msgf("sandbox failure: invalid result (%s)", result_bad_str(why));
        goto out;
    }
    if (v.hdr.error == 0 && (v.info.flags & INSTAR_INFO_VMDK_NEED_FILES) && missing) {
        /* The extents before the missing file opened: qemu fails on the missing one. */
        *msg = missing;
        missing = NULL;
        goto out;
    }
    if (v.hdr.error == 0 && (v.info.flags & INSTAR_INFO_VMDK_NEED_FILES)) {
        /*
         * Asked again only for more names (the extents of a SPARSE extent
         * that is a descriptor again): every round opens at least one more
         * file, of at most INSTAR_VMDK_EXTENTS_MAX.  Anything else is a
         * protocol error.
         */
        if (!img || v.info.vmdk.nextents <= img->next) {
            *msg = msgf("sandbox failure: invalid result (%s)", result_bad_str(RESULT_BAD_VALUE));
            goto out;
        }
        /* The descriptor file is the vmdk node's file, locked before its text is read. */
        if (image_lock(fd, name, false, flags, msg) < 0)
            goto out;
        {
            int *fds = realloc(img->ext_fd, v.info.vmdk.nextents * sizeof(*img->ext_fd));
            struct stat *sts;

            if (fds)
                img->ext_fd = fds;
            sts = fds ? realloc(img->ext_st, v.info.vmdk.nextents * sizeof(*img->ext_st)) : NULL;
            if (!sts) {
                *msg = NULL;
                goto out;
            }
            img->ext_st = sts;
        }
        /* The names before img->next are those opened in the rounds before. */
        for (k = img->next; k < v.info.vmdk.nextents; k++) {
            char *ename = result_str(&v, v.info.vmdk.names[k]), *full = NULL, *emsg = NULL;
            int r;

            if (!ename) {
                *msg = NULL;
                goto out;
            }
            /* A read-write image's extents are read-write too (a vmdk target's flat extents). */
            r = open_extent(ii->filename, ename, (flags & OPEN_RDWR) != 0, &img->ext_fd[k],
                            &img->ext_st[k], &full, &emsg);
            free(ename);
            /* Locked when it is opened, before the next line is read. */
            if (r == 0 && extent_lock(img->ext_fd[k], full,
                                      v.info.vmdk.extents[k].flags & INSTAR_VMDK_EXT_FLAT, flags,
                                      &emsg) < 0) {
                close(img->ext_fd[k]);
                r = -1;
            }
            if (r < 0) {
                free(full);
                if (k == 0 || !emsg) {
                    *msg = emsg;
                    goto out;
                }
                /*
                 * QEMU opens and parses each extent before the next line: the
                 * extents before this one are described first, and their
                 * errors come before this one's.
                 */
                missing = emsg;
                args.flags |= INSTAR_INFO_VMDK_PARTIAL;
                break;
            }
            img->next = k + 1;
            ii->extent_files[k] = full;
            ii->nextent_files = k + 1;
            dev[1 + k].fd = img->ext_fd[k];
            dev[1 + k].size = (uint64_t)img->ext_st[k].st_size;
            dev[1 + k].flags = INSTAR_DEV_READ;
        }
        ndev = 1 + img->next;
        vmm_outcome_release(&out);
        memset(&out, 0, sizeof(out));
        goto again;
    }
    /*
     * The format driver attaches its file, taking the locks, before it
     * parses: format errors come after lock errors.  Probe-level errors
     * (below 1000) come before any format driver.
     */
    if (v.hdr.error == 0 ||
        (v.hdr.error >= 1000 && v.hdr.error != BOCHS_ERR_READ_ONLY &&
         v.hdr.error != CLOOP_ERR_READ_ONLY && v.hdr.error != DMG_ERR_READ_ONLY)) {
        bool raw = v.hdr.error == 0 && !strncmp(v.info.format, "raw", sizeof(v.info.format));

        if (image_lock(fd, name, raw, flags, msg) < 0)
            goto out;
    }
    /*
     * Debian's dmg_open() loads the dmg-bz2 and dmg-lzfse modules first,
     * which its qemu-img lacks: util/module.c says so on every open.
     */
    if ((v.hdr.error == 0 && !strncmp(v.info.format, "dmg", sizeof(v.info.format))) ||
        (v.hdr.error >= DMG_ERR_FIRST && v.hdr.error <= DMG_ERR_LAST)) {
        fflush(stdout);
        fprintf(stderr, "qemu: module block-block-dmg-bz2 not found, do you want to install "
                        "qemu-block-extra package?\n"
                        "qemu: module block-block-dmg-lzfse not found, do you want to install "
                        "qemu-block-extra package?\n");
    }
    report_guest_warning(v.hdr.warn_code, v.hdr.warn_count, v.hdr.err_args[2]);
    if (v.hdr.error != 0) {
        const char *s = v.hdr.err_str.off ? (const char *)v.blob + v.hdr.err_str.off : NULL;
        uint32_t slen = v.hdr.err_str.len;

        /* bdrv_open_common() names the file when a driver sets no message. */
        if (v.hdr.error == VPC_ERR_TOO_LARGE || v.hdr.error == PRL_ERR_EIO ||
            (v.hdr.error >= DMG_ERR_INVALID && v.hdr.error <= DMG_ERR_NOMEM) ||
            vhdx_err_names_file(v.hdr.error) || v.hdr.error == VMDK_ERR_EINVAL) {
            s = ii->filename;
            slen = (uint32_t)strlen(s);
        }
        /* A seSparse extent's read errors name its file: err_args[1] is its index. */
        if ((v.hdr.error == VMDK_ERR_SE_VOL_READ || v.hdr.error == VMDK_ERR_L1_READ_EIO) &&
            v.hdr.err_args[1] >= 1 && v.hdr.err_args[1] <= ii->nextent_files) {
            s = ii->extent_files[v.hdr.err_args[1] - 1];
            slen = (uint32_t)strlen(s);
        }
        /* dmg_read_mish_block()'s error_report() comes before the open's message. */
        if (v.hdr.error == DMG_ERR_SECTORCOUNT)
            report_error("sector count %" PRIu64 " for chunk %" PRIu32 " is larger than max (%u)",
                         v.hdr.err_args[0], (uint32_t)v.hdr.err_args[1], DMG_SECTORCOUNTS_MAX);
        if (v.hdr.error == DMG_ERR_LENGTH)
            report_error("length %" PRIu64 " for chunk %" PRIu32 " is larger than max (%u)",
                         v.hdr.err_args[0], (uint32_t)v.hdr.err_args[1], DMG_LENGTHS_MAX);
        open_vhdx_preface(v.hdr.error, v.hdr.err_args);
        *msg = report_code_render(v.hdr.error, v.hdr.err_args, s, slen);
        *gerr = v.hdr.error;
        goto out;
    }
    if (info_from_result(ii, &v) < 0) {
        *msg = NULL; /* OOM */
        goto out;
    }
    /*
     * vmdk_get_allocated_file_size(): each extent's file counts too (not a
     * SPARSE extent file that only held a descriptor naming others).
     */
    if (img && (v.info.flags & INSTAR_INFO_VMDK))
        for (k = 0; k < v.info.vmdk.nextents; k++)
            if (v.info.vmdk.extents[k].file >= 1 && v.info.vmdk.extents[k].file <= img->next)
                ii->actual_size +=
                    (int64_t)img->ext_st[v.info.vmdk.extents[k].file - 1].st_blocks * 512;
    ret = 0;
out:
    free(missing);
    vmm_outcome_release(&out);
    return ret;
}

void open_vhdx_preface(int32_t code, const uint64_t args[4])
{
    /* The error_report() lines vhdx_open() prints before it fails. */
    if (code == VHDX_ERR_OVERLAP)
        /* QEMU's format has "%." PRIu64 for the last number: precision 0. */
        report_error("VHDX region %" PRIu64 "-%" PRIu64 " overlaps with region %" PRIu64
                     "-%.0" PRIu64,
                     args[0], args[1], args[2], args[3]);
    else if (code == VHDX_ERR_BAT_OVERFLOW)
        report_error("VHDX BAT entry %" PRIu64 " offset overflow.", args[0]);
    else if (code == VHDX_ERR_BAT_START || code == VHDX_ERR_BAT_END)
        report_error("VHDX BAT entry %" PRIu64 " %s offset %" PRIu64
                     " points after end of file (%" PRId64 "). Image has probably been truncated.",
                     args[0], code == VHDX_ERR_BAT_START ? "start" : "end", args[1],
                     (int64_t)args[2]);
}

void open_image_release(struct open_image *img)
{
    if (img->fd >= 0)
        close(img->fd);
    if (img->data_fd >= 0)
        close(img->data_fd);
    for (unsigned k = 0; k < img->next; k++)
        close(img->ext_fd[k]);
    free(img->ext_fd);
    free(img->ext_st);
    free(img->name);
    free(img->data_name);
    image_info_free(img->info);
    memset(img, 0, sizeof(*img));
    img->fd = img->data_fd = -1;
}

int open_image(struct open_image *img, const char *name, const char *fmt, unsigned depth,
               unsigned flags, struct policy_chain *pc, char **msg)
{
    struct image_info *ii = NULL;
    char *path = NULL;
    int32_t gerr = 0;
    int r;

    *msg = NULL;
    memset(img, 0, sizeof(*img));
    img->fd = img->data_fd = -1;
    if ((flags & OPEN_RDWR) && (flags & OPEN_FORCE_SHARE)) {
        *msg = msgf("force-share=on can only be used with read-only images");
        return -1;
    }
    if (flags & OPEN_LITERAL)
        path = strdup(name);
    else if (policy_host_path_dup(name, &path, msg) < 0)
        return -1;
    if (!path)
        return -1;
    /* QEMU looks the driver up before it touches the file. */
    if (fmt && !cmd_driver_known(fmt)) {
        *msg = msgf("Unknown driver '%s'", fmt);
        free(path);
        return -1;
    }
    /* Backing files are held to the allowlist before they are opened at all. */
    if (policy_open(path, depth > 0 ? POLICY_BACKING : POLICY_IMAGE, (flags & OPEN_RDWR) != 0,
                    &img->fd, &img->st, msg) < 0) {
        free(path);
        return -1;
    }
    r = policy_chain_add(pc, &img->st);
    if (r == -1) {
        *msg = msgf("Backing file '%s' creates an infinite loop.", name);
        r = -2;
        goto fail;
    }
    if (r == -2) {
        *msg = msgf("backing chain longer than %d images", POLICY_CHAIN_MAX);
        r = -1;
        goto fail;
    }
    r = -1;
    ii = calloc(1, sizeof(*ii));
    img->name = strdup(name);
    if (!ii || !img->name || !(ii->filename = strdup(path)))
        goto fail;
    /* file-posix: allocated size is st_blocks * 512 (the data file is not counted). */
    ii->has_actual_size = true;
    ii->actual_size = (int64_t)img->st.st_blocks * 512;

    if (fmt && (!strcmp(fmt, "raw") || !strcmp(fmt, "file"))) {
        image_info_raw(ii, &img->st, fmt);
        if (image_lock(img->fd, name, true, flags, msg) < 0)
            goto fail;
    } else if (describe(ii, img, name, fmt, img->fd, &img->st,
                        depth > 0 ? flags & ~OPEN_HAS_KEY : flags, msg, &gerr) < 0) {
        /*
         * BDRV_O_CHECK opens tolerate some qcow2 damage the plain open
         * refuses (an oversized snapshot table): the check planner opens
         * the image again with check semantics and reports what qemu
         * reports, so keep it open (and locked) as a qcow2 image.
         */
        if (!(flags & OPEN_CHECK) || depth > 0 || gerr < 1000 || gerr > 1999)
            goto fail;
        free(*msg);
        *msg = NULL;
        strcpy(ii->format, "qcow2");
    } else if (!fmt && (flags & OPEN_RDWR) && !strcmp(ii->format, "raw")) {
        /* raw_open() for a probed raw image opened read-write. */
        fprintf(stderr,
                "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
                "         Automatically detecting the format is dangerous for raw images, "
                "write operations on block 0 will be restricted.\n"
                "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                path);
    }
    img->info = ii;
    free(path);
    return 0;
fail:
    free(path);
    image_info_free(ii);
    open_image_release(img);
    return r;
}

/*
 * The top image's data-file.filename option (open_chain_spec()), for
 * open_data_file() while open_chain_spec() opens the chain, else NULL.
 */
static const char *data_file_option;

/*
 * Open img's external data file: the name stored in the image (or the
 * data-file.filename option of the top image), opened relative to the
 * current directory (qemu's bdrv_open_child of that name as a
 * protocol-level file, verified), locked as a data child.
 */
static int open_data_file(struct open_image *img, unsigned flags, bool top, char **msg)
{
    const struct image_info *ii = img->info;
    const char *name = top && data_file_option ? data_file_option : ii->data_file;
    unsigned perm, shared;
    char *path = NULL;
    struct stat st;
    char lmsg[512];
    int r;

    /* qcow2_do_open() (Debian 7.2) leaves the data file alone with BDRV_O_NO_IO. */
    if (flags & OPEN_METADATA)
        return 0;
    /* Another format refuses the option once the chain is open (open_chain_spec()). */
    if (top && data_file_option && strcmp(ii->format, "qcow2"))
        return 0;
    if (top && data_file_option && !ii->has_external_data) {
        *msg = msgf("'data-file' can only be set for images with an external data file");
        return -1;
    }
    if (!name || !ii->has_external_data)
        return 0;
    img->data_name = strdup(name);
    if (!img->data_name)
        return -1;
    if (policy_host_path_dup(img->data_name, &path, msg) < 0)
        return -1;
    /* check -r: decided by the allowlist before anything opens it, read-write or not. */
    r = policy_open(path, POLICY_DATA_FILE, (flags & OPEN_RDWR) != 0, &img->data_fd, &st, msg);
    free(path);
    if (r < 0)
        return -1;
    perm = PERM_CR | ((flags & OPEN_RDWR) ? PERM_W | PERM_R : 0);
    shared = (flags & OPEN_FORCE_SHARE) ? LOCK_PERM_ALL : LOCK_PERM_ALL & ~PERM_R;
    if (lock_perms(img->data_fd, perm, shared, img->data_name, lmsg, sizeof(lmsg)) < 0) {
        *msg = msgf("%s", lmsg);
        return -1;
    }
    return 0;
}

/* msg behind "Could not open backing file: " repeated depth times. */
static char *nested(unsigned depth, char *msg)
{
    size_t pre = depth * strlen("Could not open backing file: ");
    char *s;
    unsigned i;

    if (!msg || !depth)
        return msg;
    s = malloc(pre + strlen(msg) + 1);
    if (s) {
        s[0] = '\0';
        for (i = 0; i < depth; i++)
            strcat(s, "Could not open backing file: ");
        strcat(s, msg);
    }
    free(msg);
    return s;
}

int open_chain_msg(struct open_chain *oc, const char *filename, const char *fmt, unsigned flags,
                   char **msg)
{
    struct policy_chain pc;
    const char *name = filename;
    unsigned i;
    int r;

    *msg = NULL;
    memset(oc, 0, sizeof(*oc));
    for (i = 0; i <= POLICY_CHAIN_MAX; i++)
        oc->img[i].fd = oc->img[i].data_fd = -1;
    oc->data_fd = -1;
    policy_chain_init(&pc);

    for (;;) {
        struct open_image *img = &oc->img[oc->n];
        unsigned f = oc->n == 0 ? flags
                                : flags & ~(OPEN_RDWR | OPEN_RESIZE | OPEN_LITERAL |
                                            OPEN_VPC_SIZE_CHS | OPEN_VPC_SIZE_CURRENT);

        if (oc->n > POLICY_CHAIN_MAX - 1) {
            *msg = nested(oc->n, msgf("backing chain longer than %d images", POLICY_CHAIN_MAX));
            r = -1;
            goto fail;
        }
        r = open_image(img, name, fmt, oc->n, f, &pc, msg);
        if (r == -2)
            goto fail;
        if (r < 0) {
            *msg = nested(oc->n, *msg);
            goto fail;
        }
        oc->n++;
        if (open_data_file(img, f, oc->n == 1, msg) < 0) {
            *msg = nested(oc->n - 1, *msg);
            r = -1;
            goto fail;
        }
        if (flags & OPEN_NO_BACKING)
            break;
        if (!img->info->backing_filename)
            break;
        name = img->info->full_backing_filename;
        fmt = img->info->backing_filename_format;
    }
    oc->data_fd = oc->img[0].data_fd;
    oc->data_name = oc->img[0].data_name;
    return 0;
fail:
    open_chain_close(oc);
    return r;
}

/* open_chain_msg, reporting failures quoted with display. */
static int open_chain_report(struct open_chain *oc, const char *display, const char *filename,
                             const char *fmt, unsigned flags)
{
    char *msg = NULL;
    int r = open_chain_msg(oc, filename, fmt, flags, &msg);

    if (r == -2)
        report_error("%s", msg ? msg : strerror(ENOMEM));
    else if (r < 0)
        report_error("Could not open '%s': %s", display, msg ? msg : strerror(ENOMEM));
    free(msg);
    return r < 0 ? -1 : 0;
}

int open_chain(struct open_chain *oc, const char *filename, const char *fmt, unsigned flags)
{
    return open_chain_report(oc, filename, filename, fmt, flags);
}

/*
 * p as qobject/json-writer.c quoted_str() writes a string (without the
 * quotes): the usual escapes, \uXXXX for control characters and anything
 * past ASCII (a surrogate pair past the BMP, U+FFFD for bytes that are no
 * UTF-8).  NULL when out of memory.
 */
static char *json_escape(const char *p, bool *oom)
{
    size_t n = strlen(p), o = 0, len;
    char *esc = malloc(12 * n + 1);

    *oom = !esc;
    if (!esc)
        return NULL;
    while (*p) {
        int cp = spec_utf8_codepoint((const unsigned char *)p, &len);
        char c = 0;

        p += len;
        switch (cp) {
        case '"':
            c = '"';
            break;
        case '\\':
            c = '\\';
            break;
        case '\b':
            c = 'b';
            break;
        case '\f':
            c = 'f';
            break;
        case '\n':
            c = 'n';
            break;
        case '\r':
            c = 'r';
            break;
        case '\t':
            c = 't';
            break;
        default:
            break;
        }
        if (c) {
            esc[o++] = '\\';
            esc[o++] = c;
            continue;
        }
        if (cp < 0)
            cp = 0xfffd;
        if (cp > 0xffff)
            o += (size_t)sprintf(esc + o, "\\u%04X\\u%04X", 0xd800 + ((cp - 0x10000) >> 10),
                                 0xdc00 + ((cp - 0x10000) & 0x3ff));
        else if (cp < 0x20 || cp >= 0x7f)
            o += (size_t)sprintf(esc + o, "\\u%04X", cp);
        else
            esc[o++] = (char)cp;
    }
    esc[o] = '\0';
    return esc;
}

int open_vpc_json_filename(struct image_info *ii, unsigned calc)
{
    bool oom;
    char *esc = json_escape(ii->filename, &oom), *s;

    if (!esc)
        return oom ? -1 : 0;
    s = msgf("json:{\"force_size_calc\": \"%s\", \"driver\": \"vpc\", \"file\": {\"driver\": "
             "\"file\", \"filename\": \"%s\"}}",
             calc == 1 ? "chs" : "current_size", esc);
    free(esc);
    if (!s)
        return -1;
    free(ii->filename);
    ii->filename = s;
    return 0;
}

/*
 * ii->filename as qemu names an image opened with a secret: json:{...}
 * with the file name and the secret id escaped, for a luks volume
 * (key-secret) or a qcow/qcow2 image (encrypt.key-secret).
 */
static int json_secret_filename(struct image_info *ii, const char *secret, bool luks)
{
    bool oom, oom2;
    char *esc = json_escape(ii->filename, &oom), *sec = json_escape(secret, &oom2), *s;

    if (!esc || !sec) {
        free(esc);
        free(sec);
        return oom || oom2 ? -1 : 0;
    }
    if (luks)
        s = msgf("json:{\"driver\": \"luks\", \"file\": {\"driver\": \"file\", \"filename\": "
                 "\"%s\"}, \"key-secret\": \"%s\"}",
                 esc, sec);
    else
        s = msgf("json:{\"encrypt.key-secret\": \"%s\", \"driver\": \"%s\", \"file\": "
                 "{\"driver\": \"file\", \"filename\": \"%s\"}}",
                 sec, ii->format, esc);
    free(esc);
    free(sec);
    if (!s)
        return -1;
    free(ii->filename);
    ii->filename = s;
    return 0;
}

int open_luks_json_filename(struct image_info *ii, const char *secret)
{
    return json_secret_filename(ii, secret, true);
}

int open_encrypt_json_filename(struct image_info *ii, const char *secret)
{
    return json_secret_filename(ii, secret, false);
}

/*
 * bdrv_open_backing_file(): backing.* options open the backing file with
 * them in place of what the image names.  instar takes them only where
 * they name what it opened anyway (the same file, in the same format), so
 * all they add is the backing file's key.  Returns 0, or -1 after
 * reporting.
 */
static int backing_options(struct open_chain *oc, const struct img_spec *spec, unsigned flags)
{
    const struct open_image *b = &oc->img[1];
    struct stat st;

    if ((flags & OPEN_NO_BACKING) || oc->n < 2 ||
        (spec->backing_path && (stat(spec->backing_path, &st) < 0 || st.st_dev != b->st.st_dev ||
                                st.st_ino != b->st.st_ino)) ||
        (spec->backing_fmt && strcmp(spec->backing_fmt, b->info->format)) ||
        (spec->backing_key_secret && spec->backing_key_luks != !strcmp(b->info->format, "luks"))) {
        report_error("Could not open '%s': Option 'backing' is not supported by instar",
                     spec->display);
        return -1;
    }
    if (spec->backing_key_secret) {
        const char *fmt = NULL;

        oc->backing_key = object_secret_lookup(spec->backing_key_secret, &fmt);
        if (!oc->backing_key && b->info->encrypted) {
            char msg[512];

            snprintf(msg, sizeof(msg), fmt, spec->backing_key_secret);
            report_error("Could not open '%s': Could not open backing file: %s", spec->display,
                         msg);
            return -1;
        }
    }
    return 0;
}

/*
 * raw_read_options(): one of raw's size options as typed, into *v, with
 * qemu's message after "Could not open 'DISPLAY': " on failure.
 */
static int raw_size_option(const struct img_spec *spec, const char *name, const char *val,
                           uint64_t *v)
{
    int err = size_parse(val, NULL, v);

    if (err == -ERANGE) {
        report_error("Could not open '%s': Value '%s' is out of range for parameter '%s'",
                     spec->display, val, name);
        return -1;
    }
    if (err) {
        report_error("Could not open '%s': Parameter '%s' expects a non-negative number below "
                     "2^64",
                     spec->display, name);
        fputs("Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
              "and exabytes, respectively.\n",
              stderr);
        return -1;
    }
    return 0;
}

int open_raw_window(struct image_info *ii, uint64_t len, const struct img_spec *spec,
                    struct instar_window *w)
{
    /* A JSON null names the option without giving it. */
    const char *o_val =
        spec->raw_offset_num && spec->raw_offset && !strcmp(spec->raw_offset, "null")
            ? NULL
            : spec->raw_offset;
    const char *s_val = spec->raw_size_num && spec->raw_size && !strcmp(spec->raw_size, "null")
                            ? NULL
                            : spec->raw_size;
    uint64_t off = 0, size = 0, vs;
    bool oom, oomo = false, ooms = false;
    char *esc, *eo = NULL, *es = NULL, *name;

    if (!spec->raw_offset && !spec->raw_size)
        return 0;
    /* bdrv_getlength() of the file node: whole sectors. */
    len = len > (uint64_t)INT64_MAX - 511 ? (uint64_t)INT64_MAX - 511 : (len + 511) & ~511ull;
    if (strcmp(ii->format, "raw")) {
        report_error("Could not open '%s': Block format '%s' does not support the option '%s'",
                     spec->display, ii->format, spec->raw_offset ? "offset" : "size");
        return -1;
    }
    if (o_val && raw_size_option(spec, "offset", o_val, &off) < 0)
        return -1;
    if (s_val && raw_size_option(spec, "size", s_val, &size) < 0)
        return -1;
    if (off > len) {
        report_error("Could not open '%s': Offset (%" PRIu64 ") cannot be greater than size of "
                     "the containing file (%" PRIu64 ")",
                     spec->display, off, len);
        return -1;
    }
    if (s_val && len - off < size) {
        /* (sic: two spaces before "actual") */
        report_error("Could not open '%s': The sum of offset (%" PRIu64 ") and size (%" PRIu64
                     ") has to be smaller or equal to the  actual size of the containing file "
                     "(%" PRIu64 ")",
                     spec->display, off, size, len);
        return -1;
    }
    if (s_val && size % 512) {
        report_error("Could not open '%s': Specified size is not multiple of 512", spec->display);
        return -1;
    }
    w->offset = off;
    w->size = s_val ? size : 0;
    w->has_size = s_val ? 1 : 0;
    vs = s_val ? size : len - off;
    ii->virtual_size = (int64_t)(vs > (uint64_t)INT64_MAX - 511 ? (uint64_t)INT64_MAX - 511
                                                                : (vs + 511) & ~(uint64_t)511);

    esc = json_escape(ii->filename, &oom);
    if (spec->raw_offset)
        eo = json_escape(spec->raw_offset, &oomo);
    if (spec->raw_size)
        es = json_escape(spec->raw_size, &ooms);
    name = NULL;
    if (esc && (eo || !spec->raw_offset) && (es || !spec->raw_size)) {
        const char *q_o = spec->raw_offset_num ? "" : "\"", *q_s = spec->raw_size_num ? "" : "\"";

        name = msgf("json:{%s%s%s%s%s\"driver\": \"raw\", %s%s%s%s%s\"file\": {\"driver\": "
                    "\"file\", \"filename\": \"%s\"}}",
                    eo ? "\"offset\": " : "", eo ? q_o : "", eo ? eo : "", eo ? q_o : "",
                    eo ? ", " : "", es ? "\"size\": " : "", es ? q_s : "", es ? es : "",
                    es ? q_s : "", es ? ", " : "", esc);
    }
    free(esc);
    free(eo);
    free(es);
    if (!name) {
        /* json_escape() answers NULL without oom for a name qemu cannot print: keep it. */
        if (oom || oomo || ooms) {
            report_error("Cannot allocate memory");
            return -1;
        }
        return 0;
    }
    free(ii->filename);
    ii->filename = name;
    return 0;
}

int open_chain_spec(struct open_chain *oc, const struct img_spec *spec, unsigned flags)
{
    if (spec->force_share)
        flags |= OPEN_FORCE_SHARE;
    if (spec->vpc_size_calc == 1)
        flags |= OPEN_VPC_SIZE_CHS;
    else if (spec->vpc_size_calc == 2)
        flags |= OPEN_VPC_SIZE_CURRENT;
    int r;

    /*
     * cache.direct=on: qemu opens the file with O_DIRECT, which a file
     * system without it (tmpfs) refuses; instar reads through the page
     * cache (the same bytes), so only the open is tried.
     */
    if (spec->direct && spec->path && !policy_has_protocol(spec->path)) {
        int fd = open(spec->path, ((flags & OPEN_RDWR) ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_DIRECT);

        if (fd < 0 && errno == EINVAL) {
            report_error("Could not open '%s': Could not open '%s': filesystem does not support "
                         "O_DIRECT",
                         spec->display, spec->path);
            return -1;
        }
        if (fd >= 0)
            close(fd);
    }
    if (spec->key_secret)
        flags |= OPEN_HAS_KEY;
    data_file_option = spec->data_file;
    if (!spec->path)
        r = open_chain_report(oc, spec->display, spec->display, spec->fmt, flags);
    else
        r = open_chain_report(oc, spec->display, spec->path, spec->fmt, flags | OPEN_LITERAL);
    data_file_option = NULL;
    /* A probed format that has no data file child leaves the option unused. */
    if (r == 0 && spec->data_file && strcmp(oc->img[0].info->format, "qcow2")) {
        report_error("Could not open '%s': Block format '%s' does not support the option "
                     "'data-file.filename'",
                     spec->display, oc->img[0].info->format);
        open_chain_close(oc);
        return -1;
    }
    if (r == 0) {
        oc->direct = spec->direct;
        oc->vpc_size_calc = spec->vpc_size_calc;
        oc->prl_truncate = spec->prl_truncate;
        if (open_raw_window(oc->img[0].info, (uint64_t)oc->img[0].st.st_size, spec, &oc->window) <
            0) {
            open_chain_close(oc);
            return -1;
        }
        if (spec->vpc_size_calc &&
            open_vpc_json_filename(oc->img[0].info, spec->vpc_size_calc) < 0) {
            open_chain_close(oc);
            report_error("Cannot allocate memory");
            return -1;
        }
    }
    /* qcrypto_block_luks_open(): the secret is looked up once the header is read. */
    /*
     * (An image check's describe run may leave a bad crypto header to the
     * check run, which then unlocks or reports it: the key goes along.)
     */
    if (r == 0 && spec->backing_opts && backing_options(oc, spec, flags) < 0) {
        open_chain_close(oc);
        return -1;
    }
    if (r == 0 && spec->key_secret) {
        const char *fmt = NULL;

        oc->key = object_secret_lookup(spec->key_secret, &fmt);
        oc->key_id = strdup(spec->key_secret);
        if (!oc->key_id) {
            report_error("Cannot allocate memory");
            open_chain_close(oc);
            return -1;
        }
        if (!oc->key && oc->img[0].info->encrypted) {
            char msg[512];

            snprintf(msg, sizeof(msg), fmt, spec->key_secret);
            report_error("Could not open '%s': %s", spec->display, msg);
            open_chain_close(oc);
            return -1;
        }
    }
    return r;
}

int open_chain_arg(struct open_chain *oc, const char *arg, bool image_opts, const char *fmt,
                   bool force_share, unsigned flags)
{
    struct img_spec spec;
    int r;

    if (image_opts && fmt) {
        report_error("--image-opts and --format are mutually exclusive");
        return -1;
    }
    if (spec_parse(&spec, arg, image_opts, fmt, force_share) < 0)
        return -1;
    r = open_chain_spec(oc, &spec, flags | (force_share ? OPEN_FORCE_SHARE : 0));
    spec_release(&spec);
    return r;
}

void open_chain_close(struct open_chain *oc)
{
    unsigned i;

    for (i = 0; i <= POLICY_CHAIN_MAX; i++)
        if (oc->img[i].fd >= 0 || oc->img[i].info || oc->img[i].name)
            open_image_release(&oc->img[i]);
    oc->n = 0;
    oc->data_fd = -1;
    oc->data_name = NULL;
    free(oc->key_id);
    oc->key_id = NULL;
}

int open_run_planner(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
                     const struct vmm_dev *devs, unsigned ndevs, struct vmm_outcome *out,
                     struct instar_result_hdr *hdr, const char *what, const char *name)
{
    if (vmm_run(cfg, op, args, args_len, devs, ndevs, out) != 0) {
        if (out->status == VMM_FAULT_INJECTED)
            report_error("%s '%s': stopped by fault injection", what, name);
        else
            report_error("%s '%s': sandbox failure: %s", what, name,
                         out->detail[0] ? out->detail : "unknown error");
        return -1;
    }
    if (result_hdr_parse(out->result, out->result_len, op, hdr) != RESULT_OK) {
        report_error("%s '%s': sandbox failure: invalid result", what, name);
        return -1;
    }
    return 0;
}
