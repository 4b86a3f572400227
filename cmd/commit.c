/*
 * qemu-img commit: the host opens the top image read-write with its
 * backing chain under its path policy (img_open), finds the base as
 * img_commit() does (-b: bdrv_find_backing_image(), else the immediate
 * backing file), reopens the base read-write, grows it when the top is
 * longer (mirror_run's truncate, done by resize's code), and lets the
 * guest run the commit job and empty the top (guest/plan_commit.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "cmds.h"
#include "datarun.h"
#include "imgcheck.h"
#include "lock.h"
#include "object.h"
#include "open.h"
#include "opts.h"
#include "policy.h"
#include "progress.h"
#include "report.h"
#include "size.h"

enum {
    OPTION_OBJECT = 257,
    OPTION_IMAGE_OPTS = 258,
};

/* Guest RAM: the job's 16 MiB buffer, the dirty bitmap and the qcow2 tables. */
#define COMMIT_GUEST_MEM (256ULL << 20)

/* The directory part of name, "." when it has none (path_combine's base). */
static char *dir_of(const char *name)
{
    const char *s = strrchr(name, '/');

    if (!s)
        return strdup(".");
    return strndup(name, s == name ? 1 : (size_t)(s - name));
}

/*
 * bdrv_find_backing_image(): the image of oc below the one whose backing
 * file name matches base.  With a protocol on either side the names are
 * compared as they stand (the stored name, then the full one); else base
 * is made absolute against the overlay's directory and both are compared
 * canonical (realpath).  Returns the index in oc, or 0 when not found.
 */
static unsigned find_backing_image(const struct open_chain *oc, const char *base)
{
    bool proto = policy_has_protocol(base);

    for (unsigned i = 0; i + 1 < oc->n; i++) {
        const struct image_info *ii = oc->img[i].info;
        char want[PATH_MAX], have[PATH_MAX];
        char *dir, *joined;

        if (!ii->backing_filename)
            break;
        if (proto || policy_has_protocol(ii->backing_filename)) {
            if (!strcmp(base, ii->backing_filename) ||
                (ii->full_backing_filename && !strcmp(base, ii->full_backing_filename)))
                return i + 1;
            continue;
        }
        if (base[0] == '/') {
            joined = strdup(base);
        } else {
            dir = dir_of(oc->img[i].name);
            joined = dir ? malloc(strlen(dir) + strlen(base) + 2) : NULL;
            if (joined)
                sprintf(joined, "%s/%s", dir, base);
            free(dir);
        }
        if (!joined)
            continue;
        if (!realpath(joined, want)) {
            free(joined);
            continue;
        }
        free(joined);
        if (!ii->full_backing_filename || !realpath(ii->full_backing_filename, have))
            continue;
        if (!strcmp(want, have))
            return i + 1;
    }
    return 0;
}

/*
 * A descriptor of the same file opened again read-write (through
 * /proc/self/fd), replacing *fd; the read-only open's locks go with the
 * old descriptor.  Returns 0, or -1 with errno set.
 */
static int reopen_fd_rw(int *fd)
{
    char path[64];
    int nfd;

    snprintf(path, sizeof(path), "/proc/self/fd/%d", *fd);
    nfd = open(path, O_RDWR | O_CLOEXEC);
    if (nfd < 0)
        return -1;
    close(*fd);
    *fd = nfd;
    return 0;
}

/*
 * The base read-write (bdrv_reopen_set_read_only(base, false)): its file
 * and its external data file opened again read-write, the image with the
 * write permission locked.  Returns 0, or -1 after reporting.
 */
static int reopen_base_rw(struct open_image *im)
{
    char msg[512];

    if (reopen_fd_rw(&im->fd) < 0 || (im->data_fd >= 0 && reopen_fd_rw(&im->data_fd) < 0)) {
        report_error("Could not reopen file: %s", strerror(errno));
        return -1;
    }
    if (lock_perms(im->fd, LOCK_PERM_CONSISTENT_READ | LOCK_PERM_WRITE | LOCK_PERM_RESIZE,
                   LOCK_PERM_ALL & ~LOCK_PERM_RESIZE, im->name, msg, sizeof(msg)) < 0) {
        report_error("%s", msg);
        return -1;
    }
    /* A vmdk base's extent files are its children: reopened read-write with it. */
    for (unsigned k = 0; k < im->next; k++) {
        const char *en = im->info->extent_files[k] ? im->info->extent_files[k] : im->name;

        if (reopen_fd_rw(&im->ext_fd[k]) < 0) {
            report_error("Could not reopen file: %s", strerror(errno));
            return -1;
        }
        if (lock_perms(im->ext_fd[k], LOCK_PERM_CONSISTENT_READ | LOCK_PERM_WRITE,
                       LOCK_PERM_ALL & ~LOCK_PERM_RESIZE, en, msg, sizeof(msg)) < 0) {
            report_error("%s", msg);
            return -1;
        }
    }
    return 0;
}

/* A bound for what emptying the top may write: L2 tables and refcounts for it all. */
static uint64_t top_write_limit(uint64_t file_size, uint64_t vsize)
{
    uint64_t add = vsize / 16 + vsize / 512 + (64ULL << 20), lim;

    lim = file_size + add;
    if (lim < file_size)
        return (uint64_t)INT64_MAX;
    lim += lim / 32;
    return lim > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : lim;
}

/*
 * The bases instar commits into: every format whose driver writes
 * (guest/plan_commit.c takes the job's granularity from the base's
 * cluster size as bdrv_get_default_bitmap_granularity() does).
 */
static bool commit_base_ok(const char *fmt)
{
    static const char *const ok[] = {"qcow2", "raw",  "qed",  "vdi",      "vpc",
                                     "vhdx",  "vmdk", "qcow", "parallels"};

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!strcmp(fmt, ok[i]))
            return true;
    return false;
}

/* Whether opening oc's top read-write writes to it: a dirty qcow2 image, or persistent bitmaps. */
static bool top_open_writes(const struct open_chain *oc)
{
    const struct image_info *ii = oc->img[0].info;

    return !strcmp(ii->format, "qcow2") && (ii->nbitmaps || (ii->has_dirty_flag && ii->dirty_flag));
}

/* Make the top's file writable in gr, within what a repair and the bitmaps' store can need. */
static void top_writable(struct graph *gr, uint32_t top, const struct open_chain *oc)
{
    struct vmm_dev *d = &gr->devs[gr->g.nodes[top].file];

    d->flags |= INSTAR_DEV_WRITE;
    d->write_limit = top_write_limit(d->size, (uint64_t)oc->img[0].info->virtual_size);
}

/*
 * What qemu-img's read-write open of the top and its close write before
 * a check of img_commit() fails (no backing file, -b not found): a dirty
 * top repaired (check -r's lines), its persistent bitmaps marked in use
 * and stored again.  Nothing for other images.  Returns 0 (a failed
 * store reported as qemu-img reports it, the command's error to follow),
 * or -1 after reporting a failed run.
 */
static int open_only(struct open_chain *oc, const char *filename)
{
    struct instar_commit_args args;
    struct instar_data_result v;
    struct vmm_config cfg;
    struct graph gr;
    uint32_t top;
    char node[16];
    struct timeval tv;

    if (!top_open_writes(oc))
        return 0;
    graph_init(&gr);
    if (graph_add_chain(&gr, oc, filename, &top) < 0)
        return -1;
    top_writable(&gr, top, oc);
    memset(&args, 0, sizeof(args));
    args.top = args.base = args.base_overlay = top;
    args.flags = INSTAR_COMMIT_OPEN_ONLY | INSTAR_COMMIT_DROP;
    args.g = gr.g;
    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = COMMIT_GUEST_MEM;
    cfg.report = check_report_cb; /* a dirty top's repair at open, as check -r prints it */
    cfg.report_opaque = stderr;
    if (datarun(&cfg, INSTAR_OP_COMMIT, &args, sizeof(args), &gr, filename, &v) < 0)
        return -1;
    if (v.status == INSTAR_DATA_OK)
        return 0;
    /* qcow2_inactivate()'s message; the node named as qemu-img names it (#block1, two digits). */
    gettimeofday(&tv, NULL);
    snprintf(node, sizeof(node), "#block1%02d", (int)(tv.tv_usec % 100));
    report_error("Lost persistent bitmaps during inactivation of node '%s': %s", node,
                 strerror(v.status == INSTAR_DATA_EWRITE_AT ? (int)v.errnum : EIO));
    return 0;
}

/*
 * qemu-img commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base]
 *     [-r rate_limit] [-d] [-p] filename
 */
int cmd_commit(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *cache = "writeback", *base = NULL, *filename;
    bool progress = false, quiet = false, drop = false, image_opts = false;
    bool direct = false, flush = false, oc_open = false;
    struct instar_commit_args args;
    struct instar_data_result v;
    struct vmm_config cfg;
    struct open_chain oc;
    struct graph gr;
    char *err = NULL;
    unsigned bi;
    uint32_t top;
    int c, ret = 1;

    for (;;) {
        c = cmd_getopt(argc, argv, ":f:ht:b:dpqr:", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'f':
            fmt = optarg;
            break;
        case 't':
            cache = optarg;
            break;
        case 'b':
            base = optarg;
            drop = true; /* -b implies -d */
            break;
        case 'd':
            drop = true;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 'r':
            /* The rate limit: instar does not throttle (docs/differences.md). */
            if (size_cvtnum("rate limit", optarg, 0, INT64_MAX) < 0)
                return 1;
            break;
        case OPTION_OBJECT:
            c = object_add(optarg);
            if (c != 0)
                return c > 0 ? 0 : 1;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }
    if (quiet)
        progress = false;
    report_set_quiet(quiet);
    if (optind != argc - 1)
        return report_usage("Expecting one image file name");
    filename = argv[optind];
    if (cmd_cache_mode(cache, &direct, &flush) < 0) {
        report_error("Invalid cache option: %s", cache);
        return 1;
    }
    if (open_chain_arg(&oc, filename, image_opts, fmt, false, OPEN_RDWR) < 0)
        return 1;
    oc_open = true;
    /* img_open() opens the chain with I/O: encrypted images need their keys. */
    if (graph_check_keys(&oc, filename) < 0)
        goto out_quiet;

    progress_init(progress, 1.f);
    progress_print(0.f, 100);

    if (base) {
        bi = find_backing_image(&oc, base);
        if (!bi) {
            if (open_only(&oc, filename) < 0)
                goto out_quiet;
            if (asprintf(&err, "Did not find '%s' in the backing chain of '%s'", base, filename) <
                0)
                err = NULL;
            goto done;
        }
    } else {
        if (oc.n < 2) {
            if (open_only(&oc, filename) < 0)
                goto out_quiet;
            err = strdup("Image does not have a backing file");
            goto done;
        }
        bi = 1;
    }
    /*
     * commit_active_start() reopens the base read-write, and with it the
     * images below it: a format without bdrv_reopen_prepare (parallels,
     * and the read-only bochs, cloop and dmg) fails that, so the job never
     * starts.  The node is named as qemu names it: "#block", the count of
     * nodes opened before it (each image above it, its file and its data
     * file, and its own file), and two random digits.
     */
    for (unsigned k = bi; k < oc.n; k++) {
        static const char *const no_reopen[] = {"parallels", "bochs", "cloop", "dmg"};
        const char *f = oc.img[k].info->format;
        struct timeval tv;
        unsigned counter = 1, j;

        for (j = 0; j < sizeof(no_reopen) / sizeof(no_reopen[0]) && strcmp(f, no_reopen[j]); j++)
            ;
        if (j == sizeof(no_reopen) / sizeof(no_reopen[0]))
            continue;
        for (j = 0; j < k; j++)
            counter += 2 + (oc.img[j].data_fd >= 0);
        if (open_only(&oc, filename) < 0)
            goto out_quiet;
        gettimeofday(&tv, NULL);
        if (asprintf(&err,
                     "Block format '%s' used by node '#block%u%02d' does not support reopening "
                     "files",
                     f, counter, (int)(tv.tv_usec % 100)) < 0)
            err = NULL;
        goto done;
    }
    /*
     * A qcow2 or qcow top is emptied afterwards; vmdk and qed have no
     * bdrv_make_empty (left as they are).
     */
    if ((strcmp(oc.img[0].info->format, "qcow2") && strcmp(oc.img[0].info->format, "qcow") &&
         strcmp(oc.img[0].info->format, "vmdk") && strcmp(oc.img[0].info->format, "qed")) ||
        !commit_base_ok(oc.img[bi].info->format)) {
        if (asprintf(&err,
                     "instar commits only qcow2, qcow, qed or vmdk images into qcow2, raw, qed, "
                     "vdi, vpc, vhdx, vmdk, qcow or parallels bases") < 0)
            err = NULL;
        goto done;
    }
    /*
     * qemu-img opens the base read-only with the chain and reopens it
     * read-write for the job: a dirty base is not repaired, its stale
     * refcounts are trusted by the job's allocations, and the reopen
     * read-only at the end clears the bit (leaks or worse left behind).
     * instar refuses it before anything is written (docs/differences.md).
     */
    {
        const struct image_info *ii = oc.img[bi].info;

        if (ii->has_dirty_flag && ii->dirty_flag) {
            if (asprintf(&err,
                         "Could not open '%s': instar does not commit into an image with the "
                         "dirty bit set",
                         oc.img[bi].name) < 0)
                err = NULL;
            goto done;
        }
    }
    /* mirror_run() grows a shorter base: only qcow2, raw and qed have a truncate. */
    {
        const char *bf = oc.img[bi].info->format;
        uint64_t tl = ((uint64_t)oc.img[0].info->virtual_size + 511) / 512 * 512;
        uint64_t bl = ((uint64_t)oc.img[bi].info->virtual_size + 511) / 512 * 512;

        if (tl > bl && strcmp(bf, "qcow2") && strcmp(bf, "raw") && strcmp(bf, "qed")) {
            if (asprintf(&err, "Block job failed: %s", strerror(ENOTSUP)) < 0)
                err = NULL;
            goto done;
        }
    }
    if (reopen_base_rw(&oc.img[bi]) < 0)
        goto out_quiet;

    /* mirror_run(): a base shorter than the top is grown to its length first. */
    {
        uint64_t tl = ((uint64_t)oc.img[0].info->virtual_size + 511) / 512 * 512;
        uint64_t bl = ((uint64_t)oc.img[bi].info->virtual_size + 511) / 512 * 512;
        struct open_chain sub;
        struct stat st;

        if (tl > bl) {
            memset(&sub, 0, sizeof(sub));
            sub.n = oc.n - bi;
            memcpy(sub.img, &oc.img[bi], sizeof(sub.img[0]) * sub.n);
            if (resize_chain_grow(&sub, (int64_t)tl) < 0)
                goto out_quiet;
        }
        if (fstat(oc.img[bi].fd, &st) == 0)
            oc.img[bi].st = st;
    }

    graph_init(&gr);
    if (graph_add_chain(&gr, &oc, filename, &top) < 0)
        goto out_quiet;
    memset(&args, 0, sizeof(args));
    args.top = top;
    args.base = top + bi;
    args.base_overlay = top + bi - 1;
    {
        struct instar_node *bn = &gr.g.nodes[args.base];
        struct vmm_dev *d = &gr.devs[bn->file];
        uint64_t vs = (uint64_t)oc.img[0].info->virtual_size, lim;

        d->flags |= INSTAR_DEV_WRITE;
        if (bn->driver == INSTAR_DRV_RAW) {
            lim = (vs + 511) / 512 * 512;
            d->write_limit = lim > d->size ? lim : d->size;
        } else {
            lim = vs + vs / 8 + (256ULL << 20);
            d->write_limit = lim < vs || lim > UINT64_MAX - d->size ? UINT64_MAX : d->size + lim;
        }
        /*
         * A vmdk base's extent files (the devices after its own): sparse
         * ones grow by the grains written, flat ones are written in place.
         */
        for (unsigned k = 0; k < oc.img[bi].next; k++) {
            struct vmm_dev *e = &gr.devs[bn->file + 1 + k];

            e->flags |= INSTAR_DEV_WRITE;
            lim = vs + vs / 8 + (256ULL << 20);
            e->write_limit = lim < vs || lim > UINT64_MAX - e->size ? UINT64_MAX : e->size + lim;
        }
        if (bn->data != INSTAR_NO_NODE) {
            struct vmm_dev *dd = &gr.devs[bn->data];

            dd->flags |= INSTAR_DEV_WRITE;
            dd->write_limit = vs + (2ULL << 20) > dd->size ? vs + (2ULL << 20) : dd->size;
        }
    }
    /* qemu-img opens the top read-write, also with -d. */
    top_writable(&gr, top, &oc);
    if (!drop) {
        /* Emptying discards the clusters of an external data file: never past its end. */
        if (gr.g.nodes[top].data != INSTAR_NO_NODE) {
            struct vmm_dev *dd = &gr.devs[gr.g.nodes[top].data];

            dd->flags |= INSTAR_DEV_WRITE;
            dd->write_limit = dd->size;
        }
    } else {
        args.flags |= INSTAR_COMMIT_DROP;
    }
    if (progress)
        args.flags |= INSTAR_COMMIT_PROGRESS;
    args.g = gr.g;

    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = COMMIT_GUEST_MEM;
    cfg.report = check_report_cb; /* a dirty top's repair at open, as check -r prints it */
    cfg.report_opaque = stderr;
    cfg.progress = progress_from_guest;
    if (datarun(&cfg, INSTAR_OP_COMMIT, &args, sizeof(args), &gr, filename, &v) < 0)
        goto out_quiet;
    switch (v.status) {
    case INSTAR_DATA_OK:
        progress_print(100.f, 0);
        break;
    case INSTAR_DATA_EBSTAT:
    case INSTAR_DATA_EREAD_AT:
    case INSTAR_DATA_EWRITE_AT:
        if (v.flags & INSTAR_DATA_COMMIT_CLOSE) {
            struct timeval tv;

            /* qcow2_inactivate()'s message, after the job's output (exit code as it was). */
            progress_print(100.f, 0);
            progress_end();
            gettimeofday(&tv, NULL);
            report_error("Lost persistent bitmaps during inactivation of node '#block1%02d': %s",
                         (int)(tv.tv_usec % 100), strerror((int)v.errnum));
            open_chain_close(&oc);
            if (!quiet)
                printf("Image committed.\n");
            return 0;
        }
        if (v.flags & INSTAR_DATA_COMMIT_EMPTY) {
            progress_print(100.f, 0);
            if (v.errnum == EOPNOTSUPP || v.errnum == EINVAL)
                ret = asprintf(&err,
                               "Failed to empty %s: instar cannot empty this image "
                               "(persistent bitmaps, or marked dirty)",
                               oc.img[0].name);
            else
                ret = asprintf(&err, "Failed to empty %s: %s", oc.img[0].name,
                               strerror((int)v.errnum));
        } else {
            ret = asprintf(&err, "Block job failed: %s", strerror((int)v.errnum));
        }
        if (ret < 0)
            err = NULL;
        ret = 1;
        goto done;
    default:
        err = strdup("sandbox failure: unexpected result");
        goto done;
    }
    ret = 0;
    goto done;

out_quiet:
    /* Reported already. */
    progress_end();
    open_chain_close(&oc);
    return 1;
done:
    progress_end();
    if (oc_open)
        open_chain_close(&oc);
    if (ret != 0) {
        report_error("%s", err ? err : strerror(ENOMEM));
        free(err);
        return 1;
    }
    free(err);
    if (!quiet)
        printf("Image committed.\n");
    return 0;
}
