/*
 * qemu-img rebase: the host reads the options as img_rebase() does, opens
 * the image read-write (with its backing chain unless -u), and in safe
 * mode opens the new backing file (named relative to the image, as
 * bdrv_get_full_backing_filename_from_filename() resolves it, under the
 * path policy like every other name) or finds it in the old chain (qemu's
 * prefix_chain_bs).  The guest (guest/plan_rebase.c) copies what differs
 * between the two chains into the image and rewrites its header
 * (formats/qcow2/rebase.c); the host prints what the result names.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "datarun.h"
#include "object.h"
#include "open.h"
#include "opts.h"
#include "policy.h"
#include "progress.h"
#include "imgcheck.h"
#include "info.h"
#include "report.h"

enum {
    OPTION_OBJECT = 257,
    OPTION_IMAGE_OPTS = 258,
};

/* Guest RAM: the two 2 MiB buffers, the images' tables and caches. */
#define REBASE_GUEST_MEM (256ULL << 20)

/* The most a safe rebase writes: every cluster of data, and its metadata. */
static uint64_t rebase_write_limit(uint64_t file_size, uint64_t virtual_size, bool safe)
{
    uint64_t lim = virtual_size + virtual_size / 8 + (256ULL << 20);

    if (!safe)
        return file_size > (2ULL << 20) ? file_size : (2ULL << 20); /* the first cluster */
    if (virtual_size > (UINT64_MAX >> 2) || lim > UINT64_MAX - file_size)
        return UINT64_MAX;
    return file_size + lim;
}

/* The node of oc's image k (k >= 1) whose file is the one at path, or 0. */
static unsigned chain_find(const struct open_chain *oc, const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return 0;
    for (unsigned k = 1; k < oc->n; k++)
        if (oc->img[k].st.st_dev == st.st_dev && oc->img[k].st.st_ino == st.st_ino)
            return k;
    return 0;
}

/*
 * img_rebase()'s last messages: the failed change of the backing file.
 * name is -b's value (NULL without one, printed as glibc prints it).
 */
static void report_change_failure(const char *name, const char *fmt, uint32_t err)
{
    const char *shown = name ? name : "(null)";

    if (err == ENOSPC)
        report_error("Could not change the backing file to '%s': No space left in the file header",
                     shown);
    else if (err == EINVAL && name && !fmt)
        report_error("Could not change the backing file to '%s': backing format must be specified",
                     shown);
    else
        report_error("Could not change the backing file to '%s': %s", shown, strerror((int)err));
}

/*
 * qemu-img rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt]
 *                 [-t cache] [-T src_cache] [-p] [-u] -b backing_file
 *                 [-F backing_fmt] filename
 */
int cmd_rebase(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *filename, *fmt = NULL, *cache = "writeback", *src_cache = "writeback";
    const char *out_basefmt = NULL, *out_baseimg = NULL;
    bool unsafe = false, progress = false, quiet = false, image_opts = false, force_share = false;
    bool top_open = false, new_open = false, direct = false;
    struct open_chain oc, nc;
    struct instar_rebase_args args;
    struct instar_data_result v;
    struct vmm_config cfg;
    struct graph gr;
    int c, ret = 1, name_fd = -1;

    for (;;) {
        c = cmd_getopt(argc, argv, ":hf:F:b:upt:T:qU", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'f':
            fmt = optarg;
            break;
        case 'F':
            out_basefmt = optarg;
            break;
        case 'b':
            out_baseimg = optarg;
            break;
        case 'u':
            unsafe = true;
            break;
        case 'p':
            progress = true;
            break;
        case 't':
            cache = optarg;
            break;
        case 'T':
            src_cache = optarg;
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
        case 'U':
            force_share = true;
            break;
        }
    }
    ret = 1;
    if (quiet)
        progress = false;
    if (optind != argc - 1)
        return report_usage("Expecting one image file name");
    if (!unsafe && !out_baseimg)
        return report_usage("Must specify backing file (-b) or use unsafe mode (-u)");
    filename = argv[optind];
    report_set_quiet(quiet);

    progress_init(progress, 2.0);
    progress_print(0, 100);

    if (cmd_cache_mode(cache, &direct, &(bool){0}) < 0) {
        report_error("Invalid cache option: %s", cache);
        goto out;
    }
    if (cmd_cache_mode(src_cache, &(bool){0}, &(bool){0}) < 0) {
        report_error("Invalid source cache option: %s", src_cache);
        goto out;
    }

    /*
     * -t none/directsync: qemu opens the image with O_DIRECT, which fails on
     * a file system without it; instar's writes come out the same without,
     * so only the open is tried (as convert does for its target).
     */
    if (direct && !image_opts && !policy_has_protocol(filename)) {
        int fd = open(filename, O_RDWR | O_CLOEXEC | O_DIRECT);

        if (fd < 0 && errno == EINVAL) {
            report_error("Could not open '%s': Could not open '%s': Invalid argument", filename,
                         filename);
            goto out;
        }
        if (fd >= 0)
            close(fd);
    }

    /*
     * img_open() without -U (which applies to the new backing file only);
     * -u ignores the old backing file (it may have been moved).
     */
    if (open_chain_arg(&oc, filename, image_opts, fmt, false,
                       OPEN_RDWR | (unsafe ? OPEN_NO_BACKING : 0)) < 0)
        goto out;
    top_open = true;

    if (out_basefmt && !cmd_driver_known(out_basefmt)) {
        report_error("Invalid format name: '%s'", out_basefmt);
        goto out;
    }

    graph_init(&gr);
    memset(&args, 0, sizeof(args));
    if (graph_add_chain(&gr, &oc, filename, &args.top) < 0)
        goto out;
    args.old = oc.n > 1 ? args.top + 1 : INSTAR_NO_NODE;
    args.new_ = INSTAR_NO_NODE;

    if (!unsafe) {
        args.flags |= INSTAR_REBASE_SAFE;
        /*
         * bdrv_get_full_backing_filename_from_filename(): an image opened
         * with encrypt.key-secret is named "json:{...}" by its options
         * (bdrv_refresh_filename()), and a relative name cannot be
         * resolved against that.
         */
        if (out_baseimg[0] && oc.key_id && out_baseimg[0] != '/' &&
            !policy_has_protocol(out_baseimg) &&
            (!strcmp(oc.img[0].info->format, "qcow2") || !strcmp(oc.img[0].info->format, "qcow"))) {
            if (open_encrypt_json_filename(oc.img[0].info, oc.key_id) < 0)
                report_error("%s", strerror(ENOMEM));
            else
                report_error("Could not resolve backing filename: Cannot use relative backing "
                             "file names for '%s'",
                             oc.img[0].info->filename);
            goto out;
        }
        if (out_baseimg[0]) {
            char *real = policy_full_backing(oc.img[0].info->filename, out_baseimg);
            unsigned k;

            if (!real) {
                report_error("%s", strerror(ENOMEM));
                goto out;
            }
            /* bdrv_find_backing_image(): the new backing file may be in the old chain. */
            k = chain_find(&oc, real);
            if (k) {
                args.new_ = args.top + k;
                args.flags |= INSTAR_REBASE_PREFIX;
            } else {
                char *msg = NULL;
                int r = open_chain_msg(&nc, real, out_basefmt, force_share ? OPEN_FORCE_SHARE : 0,
                                       &msg);

                /* blk_new_open()'s error, without img_open()'s "Could not open" around it. */
                if (r < 0)
                    report_error("Could not open new backing file '%s': %s", out_baseimg,
                                 msg ? msg : strerror(ENOMEM));
                free(msg);
                if (r < 0) {
                    free(real);
                    goto out;
                }
                new_open = true;
                if (graph_add_chain(&gr, &nc, out_baseimg, &args.new_) < 0) {
                    free(real);
                    goto out;
                }
            }
            free(real);
        }
    }

    /* The image's file (and external data file) is what the guest writes. */
    {
        const struct instar_node *n = &gr.g.nodes[args.top];
        struct vmm_dev *d = &gr.devs[n->file];
        uint64_t vsize = (uint64_t)oc.img[0].info->virtual_size;

        d->flags |= INSTAR_DEV_WRITE;
        d->write_limit = rebase_write_limit(d->size, vsize, !unsafe);
        /* The close stores persistent bitmaps anew, past the file's end. */
        if (oc.img[0].info->nbitmaps) {
            uint64_t b = info_bitmaps_bytes(oc.img[0].info, vsize);

            d->write_limit = d->write_limit > UINT64_MAX - b ? UINT64_MAX : d->write_limit + b;
        }
        if (n->data != INSTAR_NO_NODE) {
            d = &gr.devs[n->data];
            d->flags |= INSTAR_DEV_WRITE;
            d->write_limit = vsize + (2ULL << 20) > d->size ? vsize + (2ULL << 20) : d->size;
        }
    }

    if (out_baseimg && out_baseimg[0]) {
        args.flags |= INSTAR_REBASE_NAME;
        if (strlen(out_baseimg) >= INSTAR_REBASE_NAME_MAX) {
            /* Too long for the arguments: a qed top reads it from a memory file. */
            size_t len = strlen(out_baseimg);
            int h;

            args.flags |= INSTAR_REBASE_NAME_LONG;
            name_fd = memfd_create("instar-backing-name", MFD_CLOEXEC);
            if (name_fd < 0 || write(name_fd, out_baseimg, len) != (ssize_t)len ||
                (h = graph_add_dev(&gr, name_fd, len, INSTAR_DEV_READ, 0, out_baseimg)) < 0) {
                report_error("Could not change the backing file to '%s': %s", out_baseimg,
                             strerror(name_fd < 0 || errno ? errno : ENOMEM));
                goto out;
            }
            args.flags |= INSTAR_REBASE_NAME_DEV;
            args.name_dev = (uint32_t)h;
        } else
            memcpy(args.name, out_baseimg, strlen(out_baseimg) + 1);
        if (out_basefmt) {
            args.flags |= INSTAR_REBASE_FMT;
            snprintf(args.fmt, sizeof(args.fmt), "%s", out_basefmt);
        }
    }
    /* Every step's figure: printed with -p, else on SIGUSR1 (util/qemu-progress.c). */
    args.flags |= INSTAR_REBASE_PROGRESS;
    args.g = gr.g;

    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = REBASE_GUEST_MEM;
    cfg.report = check_report_cb; /* a dirty image's repair at open, as check -r prints it */
    cfg.report_opaque = stderr;
    cfg.progress = progress_from_guest;
    if (datarun(&cfg, INSTAR_OP_REBASE, &args, sizeof(args), &gr, filename, &v) < 0)
        goto out;
    switch (v.status) {
    case INSTAR_DATA_OK:
        ret = 0;
        progress_print(100, 0);
        break;
    case INSTAR_DATA_EBACKING:
        report_change_failure(out_baseimg, out_basefmt, v.errnum);
        progress_print(100, 0);
        break;
    case INSTAR_DATA_EMETA:
        report_error("error while reading image metadata: %s", strerror((int)v.errnum));
        break;
    case INSTAR_DATA_EREAD:
        report_error("error while reading from %s backing file", v.image == 2 ? "new" : "old");
        break;
    case INSTAR_DATA_EWRITE_AT:
        report_error("Error while writing to COW image: %s", strerror((int)v.errnum));
        break;
    default:
        report_error("Could not rebase '%s': sandbox failure: unexpected result", filename);
        break;
    }
out:
    progress_end();
    if (name_fd >= 0)
        close(name_fd);
    if (new_open)
        open_chain_close(&nc);
    if (top_open)
        open_chain_close(&oc);
    return ret;
}
