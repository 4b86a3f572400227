/*
 * instar resize: qemu-img 7.2's img_resize().
 *
 * The size is the last argument, taken off argv before getopt sees it (so
 * "-8M" is not an option), parsed like QEMU's size option, made absolute
 * against the virtual size the guest described, and checked the way
 * img_resize() and bdrv_co_truncate() check it.  raw files are resized
 * here, as QEMU's file driver does (ftruncate, posix_fallocate, zeros);
 * qcow2 images are resized by the guest (guest/plan_resize.c,
 * formats/qcow2/resize.c), which is the only code that reads their
 * metadata.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmds.h"
#include "graph.h"
#include "instar/ovf.h"
#include "object.h"
#include "open.h"
#include "qcow2/resize.h"
#include "imgcheck.h"
#include "info.h"
#include "report.h"
#include "spec.h"
#include "result.h"
#include "size.h"
#include "vmm.h"

enum {
    OPTION_OBJECT = 258,
    OPTION_IMAGE_OPTS = 259,
    OPTION_PREALLOCATION = 260,
    OPTION_SHRINK = 261,
};

/* QEMU's BDRV_MAX_LENGTH: INT64_MAX rounded down to a GiB (block/io.c). */
#define RESIZE_MAX_LENGTH INT64_C(0x7fffffffc0000000)

static const char *const prealloc_names[] = {"off", "metadata", "falloc", "full"};

/* The message text of a resize code, and how it is printed (cmds.h). */
const char *resize_msg(int code, int *kind)
{
    switch (code) {
#define RESIZE_MSG_CASE(name, c, k, msg)                                                           \
    case c:                                                                                        \
        *kind = k;                                                                                 \
        return msg;
        QCOW2_RESIZE_ERRORS(RESIZE_MSG_CASE)
#undef RESIZE_MSG_CASE
    }
    return NULL;
}

/*
 * Print a resize code as qemu-img would (error_setg / error_setg_errno);
 * arg (arg_len bytes, not NUL-terminated) is the name a
 * QCOW2_RESIZE_MSG_NAME message carries.
 */
static void report_resize_code(const char *name, int code, uint64_t errnum, bool warning,
                               const char *arg, size_t arg_len)
{
    int kind = QCOW2_RESIZE_MSG_PLAIN;
    const char *msg = resize_msg(code, &kind);

    if (!msg) {
        report_error("Unknown error %d from the sandbox", code);
        return;
    }
    if (kind == QCOW2_RESIZE_MSG_NAME) {
        const char *pct = strstr(msg, "%s");

        if (!pct || !arg) {
            report_error("Failed to resize '%s': sandbox failure: invalid result", name);
            return;
        }
        report_error("%.*s%.*s%s", (int)(pct - msg), msg, (int)arg_len, arg, pct + 2);
    } else if (kind == QCOW2_RESIZE_MSG_OPEN)
        report_error("Could not open '%s': %s", name, msg);
    else if (kind == QCOW2_RESIZE_MSG_ERRNO && warning)
        report_warning("%s: %s", msg, strerror(errnum < 4096 ? (int)errnum : EIO));
    else if (kind == QCOW2_RESIZE_MSG_ERRNO)
        report_error("%s: %s", msg, strerror(errnum < 4096 ? (int)errnum : EIO));
    else
        report_error("%s", msg);
}

/* The largest qcow2 cluster: any allocation may round up to one. */
#define RESIZE_MAX_CLUSTER (2ULL << 20)
/* QEMU's QCOW_MAX_L1_SIZE: no image it opens has a larger L1 table. */
#define RESIZE_MAX_L1_BYTES (32ULL << 20)
/*
 * A shrink to an absolute size: the L2 tables the discard may allocate
 * when the old size is unknown to the host, i.e. one 512-byte table for
 * each entry of the largest L1 table (4 Mi entries).
 */
#define RESIZE_SHRINK_L2_MAX ((RESIZE_MAX_L1_BYTES / 8) * 512)
/* Rounding of every allocation of one resize to whole 2 MiB clusters. */
#define RESIZE_SLACK (32 * RESIZE_MAX_CLUSTER)
/* Guest RAM: the heap, and the old and new L1 tables twice over at their largest. */
#define RESIZE_GUEST_MEM ((256ULL << 20) + 4 * RESIZE_MAX_L1_BYTES)

/* a + b, saturating at UINT64_MAX. */
static uint64_t sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;

    return ovf_add_u64(a, b, &r) ? UINT64_MAX : r;
}

/*
 * How far the guest may extend the file.  Only facts the host knows
 * itself count: the file's length and the user's request (relative: the
 * sign and amount n; absolute: the new size).  The image's own size and
 * cluster size come from the guest, which could steer them, so the bound
 * is the worst case over every legal qcow2 geometry, which is 512-byte
 * clusters for each term below (an L2 table of 512 B maps 32 KiB, an L1
 * entry 32 KiB):
 *   - a grow by g (n, or at most the absolute size): with preallocation
 *     its data, g; L2 tables over it (preallocation, or zero clusters over
 *     a longer backing file), g / 64;
 *   - the new L1 table of a grow: that of the absolute size, or the
 *     largest QEMU opens (32 MiB) for a relative one;
 *   - with --shrink, the L2 table the discard gives every L1 entry past
 *     the new end before freeing them (qcow2_cluster_discard): n / 64, or
 *     for an absolute size RESIZE_SHRINK_L2_MAX (an absolute shrink of a
 *     sparse image that needs more, e.g. by over 16 TiB at 64 KiB
 *     clusters, fails with an I/O error);
 *   - refcount blocks for all that (64-bit refcounts: 8 B per 512 B) and a
 *     new refcount table with QEMU's 50 % headroom next to the old one:
 *     less than 1/32 of the file they describe;
 *   - RESIZE_SLACK for the rounding of each allocation to a cluster.
 * Saturates at INT64_MAX (the monitor's bound on any file offset).
 */
static uint64_t resize_write_limit(uint64_t file_size, int relative, uint64_t n, bool shrink,
                                   int prealloc)
{
    uint64_t grow = relative < 0 ? 0 : n, add, limit;

    add = sat_add(prealloc != INSTAR_PREALLOC_OFF ? grow : 0, grow / 64);
    if (relative > 0)
        add = sat_add(add, RESIZE_MAX_L1_BYTES);
    else if (!relative)
        add = sat_add(add, n / 4096 < RESIZE_MAX_L1_BYTES ? n / 4096 : RESIZE_MAX_L1_BYTES);
    if (shrink && relative < 0)
        add = sat_add(add, n / 64);
    else if (shrink && !relative)
        add = sat_add(add, RESIZE_SHRINK_L2_MAX);
    limit = sat_add(file_size, add);
    limit = sat_add(sat_add(limit, limit / 32), RESIZE_SLACK);
    return limit > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : limit;
}

/*
 * raw: file-posix's raw_regular_truncate(): the file gets exactly
 * new_size bytes, the grown part allocated (falloc) or written with
 * zeros (full).  Returns 0 or -1 after reporting.
 */
static int resize_raw(struct open_image *im, int64_t new_size, int prealloc)
{
    int64_t cur = (int64_t)im->st.st_size;
    struct stat st;
    int e;

    if (fstat(im->fd, &st) == 0)
        cur = (int64_t)st.st_size;
    if (prealloc != INSTAR_PREALLOC_OFF && cur > new_size) {
        report_error("Cannot use preallocation for shrinking files");
        return -1;
    }
    switch (prealloc) {
    case INSTAR_PREALLOC_FALLOC:
        if (new_size != cur) {
            e = posix_fallocate(im->fd, cur, new_size - cur);
            if (e) {
                report_error("Could not preallocate new data: %s", strerror(e));
                return -1;
            }
            if (cur == 0)
                vmm_allocate_first_block(im->fd, (uint64_t)new_size);
        }
        return 0;
    case INSTAR_PREALLOC_FULL: {
        static const char zeros[65536];
        int64_t off = cur;

        if (ftruncate(im->fd, new_size) != 0) {
            report_error("Could not resize file: %s", strerror(errno));
            return -1;
        }
        while (off < new_size) {
            size_t n =
                new_size - off < (int64_t)sizeof(zeros) ? (size_t)(new_size - off) : sizeof(zeros);
            ssize_t w = pwrite(im->fd, zeros, n, off);

            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                report_error("Could not write zeros for preallocation: %s",
                             strerror(w < 0 ? errno : EIO));
                return -1;
            }
            off += w;
        }
        if (fsync(im->fd) != 0) {
            report_error("Could not flush file to disk: %s", strerror(errno));
            return -1;
        }
        return 0;
    }
    case INSTAR_PREALLOC_OFF:
        if (ftruncate(im->fd, new_size) != 0) {
            report_error("Could not resize file: %s", strerror(errno));
            return -1;
        }
        if (cur == 0 && new_size > 0)
            vmm_allocate_first_block(im->fd, (uint64_t)new_size);
        return 0;
    default:
        report_error("Unsupported preallocation mode: %s", prealloc_names[prealloc]);
        return -1;
    }
}

/*
 * qcow2: the guest plans and writes, within limits resize_write_limit()
 * derives from the request (relative, n, shrink, prealloc as the user
 * gave them).  open_only: the guest opens and closes the image and
 * resizes nothing (INSTAR_RESIZE_OPEN_ONLY).  Returns 0 or -1 after
 * reporting.
 */
static int resize_qcow2(struct open_chain *oc, int64_t new_size, int relative, uint64_t n,
                        bool shrink, int prealloc, bool open_only)
{
    struct open_image *im = &oc->img[0];
    struct instar_resize_args args;
    struct instar_result_hdr hdr;
    struct vmm_config cfg;
    struct vmm_outcome out;
    struct vmm_dev dev, devs[2];
    struct graph *gr = NULL;
    unsigned ndev = 1;
    struct stat st;
    int ret = -1;

    /* The backing-file facts below mask with it: refuse one no qcow2 image has. */
    if (!result_qcow2_cluster_size_ok((uint64_t)im->info->cluster_size)) {
        report_error("Failed to resize '%s': sandbox failure: invalid result", im->name);
        return -1;
    }
    memset(&args, 0, sizeof(args));
    args.size = (uint64_t)new_size;
    args.prealloc = (uint32_t)prealloc;
    args.flags = shrink ? INSTAR_RESIZE_SHRINK : 0;
    if (open_only)
        args.flags |= INSTAR_RESIZE_OPEN_ONLY;
    /*
     * bdrv_co_truncate(): a backing file longer than the image would show
     * through the new area, so QEMU zero-fills it (BDRV_REQ_ZERO_WRITE).
     * The guest does not open the backing file: it gets the two facts it
     * needs.
     */
    if (oc->n > 1 && oc->img[1].info) {
        uint64_t blen = (uint64_t)oc->img[1].info->virtual_size;
        uint64_t cur = (uint64_t)im->info->virtual_size, cs = (uint64_t)im->info->cluster_size;

        if (new_size > (int64_t)cur && blen > cur)
            args.flags |= INSTAR_RESIZE_ZERO_WRITE;
        if (cs && blen > (cur & ~(cs - 1)))
            args.flags |= INSTAR_RESIZE_BACKING_HEAD;
    }

    if (fstat(im->fd, &st) != 0)
        st = im->st;
    memset(&dev, 0, sizeof(dev));
    dev.fd = im->fd;
    dev.size = (uint64_t)st.st_size;
    dev.write_limit = resize_write_limit(dev.size, relative, n, shrink, prealloc);
    /* Persistent bitmaps are stored anew at the close, at the larger size. */
    if (im->info->nbitmaps) {
        uint64_t cur = (uint64_t)im->info->virtual_size;

        dev.write_limit = sat_add(
            dev.write_limit,
            info_bitmaps_bytes(im->info, (uint64_t)new_size > cur ? (uint64_t)new_size : cur));
        if (dev.write_limit > (uint64_t)INT64_MAX)
            dev.write_limit = (uint64_t)INT64_MAX;
    }
    dev.flags = INSTAR_DEV_READ | INSTAR_DEV_WRITE;
    devs[0] = dev;
    /*
     * An external data file (opened read-write under the path policy):
     * device 1.  The guest sets its length to the new size (with
     * preallocation, zeros up to it): the new size, or the file's own
     * length when that is larger, bounds it.
     */
    if (im->data_fd >= 0) {
        struct stat ds;

        if (fstat(im->data_fd, &ds) != 0) {
            report_error("Could not get the size of '%s': %s", im->data_name ? im->data_name : "",
                         strerror(errno));
            return -1;
        }
        memset(&devs[1], 0, sizeof(devs[1]));
        devs[1].fd = im->data_fd;
        devs[1].size = (uint64_t)ds.st_size;
        devs[1].write_limit =
            (uint64_t)ds.st_size > (uint64_t)new_size ? (uint64_t)ds.st_size : (uint64_t)new_size;
        devs[1].write_limit = sat_add(devs[1].write_limit, RESIZE_SLACK);
        devs[1].flags = INSTAR_DEV_READ | INSTAR_DEV_WRITE;
        ndev = 2;
    }
    /*
     * A grow from a size inside a cluster may copy that cluster into a new
     * one, its old data read through the image and its backing chain (by
     * the guest, read-only): the chain as graph nodes, the image's devices
     * 0 and 1 as above, the backing images' read-only after them.
     */
    {
        uint64_t cur = (uint64_t)im->info->virtual_size & ~UINT64_C(511);
        uint64_t cs = (uint64_t)im->info->cluster_size;
        /*
         * An encrypted image (opened with its key): the guest unlocks it
         * again where the grow writes guest data, which goes through its
         * cipher (a partial cluster at either end of a metadata
         * preallocation, the head cluster falloc/full move, the explicit
         * zeros over a longer backing file).
         */
        bool crypt_writes = im->info->encrypted && oc->key && cs &&
                            (((cur & (cs - 1)) && (prealloc != INSTAR_PREALLOC_OFF ||
                                                   (args.flags & INSTAR_RESIZE_ZERO_WRITE))) ||
                             (prealloc == INSTAR_PREALLOC_METADATA && (new_size & (cs - 1))));

        if (!open_only && (uint64_t)new_size > cur && cs &&
            (im->info->encrypted ? crypt_writes : (cur & (cs - 1)) != 0)) {
            gr = malloc(sizeof(*gr));
            if (!gr) {
                report_error("Failed to resize '%s': Cannot allocate memory", im->name);
                return -1;
            }
            if (graph_for_planner(gr, oc, im->name, devs, ndev, "Failed to resize") < 0)
                goto out_gr;
            args.chain = gr->g;
            args.flags |= INSTAR_RESIZE_CHAIN;
        }
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = RESIZE_GUEST_MEM;
    /*
     * The bits of every bitmap are held at the larger size (as in QEMU's
     * hbitmap), twice while one is truncated: one bit per granule.
     */
    for (uint32_t i = 0; i < im->info->nbitmaps; i++) {
        uint64_t cur = (uint64_t)im->info->virtual_size, g = im->info->bitmaps[i].granularity;
        uint64_t len = (uint64_t)new_size > cur ? (uint64_t)new_size : cur;

        if (g >= 512 && !(g & (g - 1)))
            cfg.mem_size = sat_add(cfg.mem_size, 2 * (len / g / 8 + 8));
    }
    cfg.mem_size = (cfg.mem_size + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
    if (cfg.mem_size > INSTAR_GUEST_MEM_MAX)
        cfg.mem_size = INSTAR_GUEST_MEM_MAX;
    cfg.report = check_report_cb; /* the repair of a dirty image, as check -r prints it */
    cfg.report_opaque = stderr;
    memset(&out, 0, sizeof(out));

    if (open_run_planner(&cfg, INSTAR_OP_RESIZE, &args, sizeof(args), gr ? gr->devs : devs,
                         gr ? gr->ndevs : ndev, &out, &hdr, "Failed to resize", im->name) < 0)
        goto out;
    if (hdr.error >= 3000 && hdr.error < 3100) {
        const char *s = hdr.err_str.off ? (const char *)out.result + hdr.err_str.off : NULL;

        report_resize_code(im->name, hdr.error, hdr.err_args[0], false, s, hdr.err_str.len);
        goto out;
    }
    if (hdr.error != 0) {
        const char *s = hdr.err_str.off ? (const char *)out.result + hdr.err_str.off : NULL;

        fprintf(stderr, "%s: Could not open '%s': ", report_progname(), im->name);
        report_code_render_to(stderr, hdr.error, hdr.err_args, s, hdr.err_str.len);
        fputc('\n', stderr);
        goto out;
    }
    if (hdr.err_args[0] >= 3000 && hdr.err_args[0] < 3100)
        report_resize_code(im->name, (int)hdr.err_args[0], hdr.err_args[1], true, NULL, 0);
    ret = 0;
out:
    vmm_outcome_release(&out);
out_gr:
    free(gr);
    return ret;
}

/*
 * A qed image: the guest opens it read-write (repairing a need-check
 * image) and rewrites its header's image size (bdrv_qed_co_truncate());
 * nothing is written past the file's end.
 */
static int resize_qed(struct open_chain *oc, int64_t new_size, int prealloc)
{
    struct open_image *im = &oc->img[0];
    struct instar_resize_args args;
    struct instar_result_hdr hdr;
    struct vmm_config cfg;
    struct vmm_outcome out;
    struct vmm_dev dev;
    struct stat st;
    int ret = -1;

    memset(&args, 0, sizeof(args));
    args.size = (uint64_t)new_size;
    args.prealloc = (uint32_t)prealloc;
    args.flags = INSTAR_RESIZE_QED;
    /* bdrv_co_truncate(): a grow over a longer backing file asks for zeros. */
    if (oc->n > 1 && oc->img[1].info && new_size > im->info->virtual_size &&
        oc->img[1].info->virtual_size > im->info->virtual_size)
        args.flags |= INSTAR_RESIZE_ZERO_WRITE;
    if (fstat(im->fd, &st) != 0)
        st = im->st;
    memset(&dev, 0, sizeof(dev));
    dev.fd = im->fd;
    dev.size = (uint64_t)st.st_size;
    dev.write_limit = dev.size;
    dev.flags = INSTAR_DEV_READ | INSTAR_DEV_WRITE;
    memset(&cfg, 0, sizeof(cfg));
    /* The L1 table and one L2 table of the repair at their largest (1 GiB each). */
    cfg.mem_size = RESIZE_GUEST_MEM;
    cfg.report = check_report_cb; /* a need-check image's repair, as check -r prints it */
    cfg.report_opaque = stderr;
    memset(&out, 0, sizeof(out));
    if (open_run_planner(&cfg, INSTAR_OP_RESIZE, &args, sizeof(args), &dev, 1, &out, &hdr,
                         "Failed to resize", im->name) < 0)
        goto out;
    if (hdr.error == QCOW2_RESIZE_ERR_QED_PREALLOC) {
        report_error("Unsupported preallocation mode '%s'", prealloc_names[prealloc]);
        goto out;
    }
    if (hdr.error >= 3000 && hdr.error < 3100) {
        report_resize_code(im->name, hdr.error, hdr.err_args[0], false, NULL, 0);
        goto out;
    }
    if (hdr.error != 0) {
        const char *s = hdr.err_str.off ? (const char *)out.result + hdr.err_str.off : NULL;

        fprintf(stderr, "%s: Could not open '%s': ", report_progname(), im->name);
        report_code_render_to(stderr, hdr.error, hdr.err_args, s, hdr.err_str.len);
        fputc('\n', stderr);
        goto out;
    }
    ret = 0;
out:
    vmm_outcome_release(&out);
    return ret;
}

/*
 * img_resize() opened the image read-write before its size checks: a
 * qcow2 image's persistent bitmaps were marked in use and stored again by
 * the close, and a dirty image repaired, whatever the check said after.
 */
static void open_before_refusal(struct open_chain *oc)
{
    struct open_image *im = &oc->img[0];

    if (!strcmp(im->info->format, "qcow2") && (im->info->nbitmaps || im->info->dirty_flag))
        (void)resize_qcow2(oc, im->info->virtual_size, 0, 0, false, INSTAR_PREALLOC_OFF, true);
}

int resize_chain_grow(struct open_chain *oc, int64_t new_size)
{
    if (!strcmp(oc->img[0].info->format, "qcow2"))
        return resize_qcow2(oc, new_size, 0, (uint64_t)new_size, false, INSTAR_PREALLOC_OFF, false);
    if (!strcmp(oc->img[0].info->format, "qed"))
        return resize_qed(oc, new_size, INSTAR_PREALLOC_OFF);
    if (strcmp(oc->img[0].info->format, "raw") && strcmp(oc->img[0].info->format, "file")) {
        report_error("Image format driver does not support resize");
        return -1;
    }
    return resize_raw(&oc->img[0], new_size, INSTAR_PREALLOC_OFF);
}

int cmd_resize(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"preallocation", required_argument, 0, OPTION_PREALLOCATION},
        {"shrink", no_argument, 0, OPTION_SHRINK},
        {0, 0, 0, 0},
    };
    const char *filename, *fmt = NULL, *size;
    bool quiet = false, image_opts = false, shrink = false, oc_open = false;
    int c, relative = 0, prealloc = INSTAR_PREALLOC_OFF, ret = 1;
    int64_t cur, total;
    uint64_t n;
    struct open_chain oc;
    struct open_image *im;

    if (argc < 3)
        return report_usage("Not enough arguments");
    /* The size goes first, so that a negative one is not taken for an option. */
    size = argv[--argc];

    for (;;) {
        c = cmd_getopt(argc, argv, ":f:hq", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'f':
            fmt = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case OPTION_OBJECT:
            /* user_creatable_process_cmdline(): help or a bad definition ends qemu-img. */
            c = object_add(optarg);
            if (c != 0)
                return c > 0 ? 0 : 1;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_PREALLOCATION: {
            unsigned i;

            for (i = 0; i < 4; i++)
                if (!strcmp(optarg, prealloc_names[i]))
                    break;
            if (i == 4) {
                report_error("Invalid preallocation mode '%s'", optarg);
                return 1;
            }
            prealloc = (int)i;
            break;
        }
        case OPTION_SHRINK:
            shrink = true;
            break;
        }
    }
    if (optind != argc - 1)
        return report_usage("Expecting image file name and size");
    filename = argv[optind];
    report_set_quiet(quiet);

    if (size[0] == '+') {
        relative = 1;
        size++;
    } else if (size[0] == '-') {
        relative = -1;
        size++;
    }
    {
        int e = size_parse(size, NULL, &n);

        if (e == -ERANGE) {
            report_error("Value '%s' is out of range for parameter 'size'", size);
            return 1;
        }
        if (e < 0) {
            report_error("Parameter 'size' expects a non-negative number below 2^64");
            fprintf(stderr, "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
                            "tera-, peta-\nand exabytes, respectively.\n");
            return 1;
        }
    }
    if (open_chain_arg(&oc, filename, image_opts, fmt, false, OPEN_RDWR | OPEN_RESIZE) < 0)
        return 1;
    oc_open = true;
    im = &oc.img[0];
    cur = im->info->virtual_size;
    /*
     * block/crypto.c's open, and qcow2_do_open() for an encrypted image,
     * unlock the volume: no key, or a wrong one, fails it.
     */
    if ((!strcmp(im->info->format, "luks") || !strcmp(im->info->format, "qcow2")) &&
        (graph_check_keys(&oc, filename) < 0 || graph_unlock_chain(&oc, filename) < 0))
        goto out;

    /* img_resize() computes in int64_t: a huge size wraps negative. */
    if (relative)
        total = (int64_t)((uint64_t)cur + (uint64_t)relative * n);
    else
        total = (int64_t)n;
    if (total <= 0) {
        open_before_refusal(&oc);
        report_error("New image size must be positive");
        goto out;
    }
    if (total <= cur && prealloc != INSTAR_PREALLOC_OFF) {
        open_before_refusal(&oc);
        report_error("Preallocation can only be used for growing images");
        goto out;
    }
    if (total < cur && !shrink) {
        open_before_refusal(&oc);
        report_error("Use the --shrink option to perform a shrink operation.");
        report_warning("Shrinking an image will delete all data beyond the shrunken image's "
                       "end. Before performing such an operation, make sure there is no "
                       "important data there.");
        goto out;
    }
    /* bdrv_co_truncate(): bdrv_check_request(). */
    if (total > RESIZE_MAX_LENGTH) {
        open_before_refusal(&oc);
        report_error("offset(%" PRId64 ") exceeds maximum(%" PRId64 ")", total,
                     (int64_t)RESIZE_MAX_LENGTH);
        goto out;
    }

    if (!strcmp(im->info->format, "raw") || !strcmp(im->info->format, "file")) {
        /* raw_co_truncate(): a size option fixes the size; an offset moves the file's end. */
        uint64_t wo = oc.window.offset;

        if (oc.window.has_size) {
            report_error("Cannot resize fixed-size raw disks");
            goto out;
        }
        if (wo > (uint64_t)(INT64_MAX - total)) {
            report_error("Disk size too large for the chosen offset");
            goto out;
        }
        if (wo && total + (int64_t)wo > RESIZE_MAX_LENGTH) {
            report_error("offset(%" PRId64 ") exceeds maximum(%" PRId64 ")", total + (int64_t)wo,
                         (int64_t)RESIZE_MAX_LENGTH);
            goto out;
        }
        if (resize_raw(im, total + (int64_t)wo, prealloc) < 0)
            goto out;
    } else if (!strcmp(im->info->format, "qcow2")) {
        /* qcow2_co_truncate() checks the alignment first. */
        if (total % 512) {
            open_before_refusal(&oc);
            report_error("The new size must be a multiple of 512");
            goto out;
        }
        if (resize_qcow2(&oc, total, relative, n, shrink, prealloc, false) < 0)
            goto out;
    } else if (!strcmp(im->info->format, "luks")) {
        /*
         * block_crypto_co_truncate(): the file takes the payload offset
         * (from the guest's description) plus the new size.
         */
        uint64_t po = im->info->luks_payload_offset;

        if (po > (uint64_t)im->st.st_size || po > (uint64_t)(INT64_MAX - total)) {
            report_error("The new size is too large");
            goto out;
        }
        /* bdrv_co_truncate() of the file node checks its own offset. */
        if (total + (int64_t)po > RESIZE_MAX_LENGTH) {
            report_error("offset(%" PRId64 ") exceeds maximum(%" PRId64 ")", total + (int64_t)po,
                         (int64_t)RESIZE_MAX_LENGTH);
            goto out;
        }
        if (resize_raw(im, total + (int64_t)po, prealloc) < 0)
            goto out;
    } else if (!strcmp(im->info->format, "qed")) {
        if (resize_qed(&oc, total, prealloc) < 0)
            goto out;
    } else if (!strcmp(im->info->format, "vpc") || !strcmp(im->info->format, "parallels") ||
               !strcmp(im->info->format, "vhdx") || !strcmp(im->info->format, "vdi") ||
               !strcmp(im->info->format, "vmdk") || !strcmp(im->info->format, "qcow")) {
        /* vpc, parallels, vhdx, vdi, vmdk and qcow have no bdrv_co_truncate. */
        report_error("Image format driver does not support resize");
        goto out;
    } else {
        report_error("Image format '%s' is not supported by instar", im->info->format);
        goto out;
    }
    report_qprintf("Image resized.\n");
    ret = 0;
out:
    if (oc_open)
        open_chain_close(&oc);
    return ret;
}
