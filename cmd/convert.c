/*
 * qemu-img convert: the host opens the sources (chains included) under
 * its path policy, creates the target as img_convert() does, opens it
 * read-write, decides the copy parameters, and lets the guest run the
 * copy loop (guest/plan_convert.c) over the graph.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "datarun.h"
#include "opts.h"
#include "policy.h"
#include "progress.h"
#include "report.h"
#include "size.h"

enum {
    OPTION_OBJECT = 257,
    OPTION_IMAGE_OPTS = 258,
    OPTION_TARGET_IMAGE_OPTS = 263,
    OPTION_SALVAGE = 264,
    OPTION_TARGET_IS_ZERO = 265,
    OPTION_BITMAPS = 266,
    OPTION_SKIP_BROKEN = 267,
};

#define IO_BUF_SECTORS  4096  /* IO_BUF_SIZE: 2 MiB */
#define MAX_BUF_SECTORS 32768 /* 16 MiB */
#define MAX_COROUTINES  16

/* Guest RAM for a convert: the copy buffer and a qcow2 target's tables. */
#define CONVERT_GUEST_MEM (256ULL << 20)

static int accumulate(char **options, const char *arg)
{
    char *n;

    if (!opts_valid_list(arg)) {
        report_error("Invalid option list: %s", arg);
        return -1;
    }
    if (!*options) {
        *options = strdup(arg);
        return *options ? 0 : -1;
    }
    if (asprintf(&n, "%s,%s", *options, arg) < 0)
        return -1;
    free(*options);
    *options = n;
    return 0;
}

/* The bigger of a qcow2 target's metadata and its data: no convert writes more. */
static uint64_t target_write_limit(const char *fmt, uint64_t total)
{
    uint64_t lim;

    if (strcmp(fmt, "qcow2"))
        return total;
    lim = total + total / 8;
    if (lim < total || lim + (256ULL << 20) < lim)
        return UINT64_MAX;
    return lim + (256ULL << 20);
}

/* block_driver_can_compress(): the drivers with compressed writes. */
static bool can_compress(const char *fmt)
{
    return !strcmp(fmt, "qcow2") || !strcmp(fmt, "qcow") || !strcmp(fmt, "vmdk");
}

/*
 * img_convert()'s checks of -c for a new target: the -o options parsed
 * against the format's create options (their errors come first), then
 * the format, encryption and preallocation.  A format instar cannot
 * create is left to the refusal that follows.  Returns 0, or -1 after
 * reporting.
 */
static int compress_refused(const char *out_fmt, const char *options)
{
    char msg[512], hint[512];
    const struct opt_val *enc, *prealloc;
    struct opt_list l;
    int ret = -1;

    memset(&l, 0, sizeof(l));
    if (!create_opts_for(&l, out_fmt)) {
        if (can_compress(out_fmt))
            return 0;
        report_error("Compression not supported for this file format");
        return -1;
    }
    if (options && opts_parse(&l, options, msg, hint, sizeof(msg)) < 0) {
        report_error("%s", msg);
        if (hint[0])
            fputs(hint, stderr);
        goto out;
    }
    enc = opts_find(&l, "encryption");
    prealloc = opts_find(&l, "preallocation");
    if (!can_compress(out_fmt))
        report_error("Compression not supported for this file format");
    else if ((enc && enc->value) || opts_find(&l, "encrypt.format"))
        report_error("Compression and encryption not supported at the same time");
    else if (prealloc && strcmp(prealloc->str, "off"))
        report_error("Compression and preallocation not supported at the same time");
    else
        ret = 0;
out:
    opts_free(&l);
    return ret;
}

/* Copy s into a fixed field; false if it does not fit. */
static bool put_str(char *dst, size_t n, const char *s)
{
    if (strlen(s) >= n)
        return false;
    strcpy(dst, s);
    return true;
}

/*
 * -l: the snapshot to read src[0] at, as img_convert() parses it
 * (snapshot.id=/snapshot.name= options, or a plain id or name), looked up
 * in the snapshot list the guest's describe run returned, so that a
 * missing snapshot fails before the target is created, as in qemu-img.
 * Returns 0 with args' snapshot fields set, or -1 after reporting.
 */
static int snapshot_load(const struct open_chain *oc, unsigned nsrc, const char *arg,
                         struct instar_convert_args *args)
{
    const struct image_info *ii = oc->img[0].info;
    const char *id = NULL, *name = NULL;
    char *copy = NULL, *p, *q;
    bool found = false;
    uint32_t i;
    int ret = -1;

    if (!strncmp(arg, "snapshot.", 9)) {
        /* QemuOpts: key=value, ",," a literal comma. */
        copy = strdup(arg);
        if (!copy)
            return -1;
        for (p = copy; *p;) {
            char *key = p, *val, *w;

            val = strchr(p, '=');
            if (!val) {
                report_error("Invalid parameter '%s'", key);
                report_error("Failed in parsing snapshot param '%s'", arg);
                goto out;
            }
            *val++ = '\0';
            for (q = w = val; *q; q++) {
                if (*q == ',' && q[1] == ',') {
                    *w++ = ',';
                    q++;
                } else if (*q == ',') {
                    break;
                } else {
                    *w++ = *q;
                }
            }
            p = *q ? q + 1 : q;
            *w = '\0';
            if (!strcmp(key, "snapshot.id")) {
                id = val;
            } else if (!strcmp(key, "snapshot.name")) {
                name = val;
            } else {
                report_error("Invalid parameter '%s'", key);
                report_error("Failed in parsing snapshot param '%s'", arg);
                goto out;
            }
        }
        args->snapshot_mode = INSTAR_SNAP_ID_AND_NAME;
    } else {
        if (nsrc > 1) {
            report_error("No support for concatenating multiple snapshot");
            goto out;
        }
        id = arg;
        args->snapshot_mode = INSTAR_SNAP_ID_OR_NAME;
    }
    if (!id && !name) {
        report_error("Failed to load snapshot: snapshot_id and name are both NULL");
        goto out;
    }
    if (strcmp(ii->format, "qcow2")) {
        report_error("Failed to load snapshot: Block format '%s' used by device '' does not "
                     "support temporarily loading internal snapshots",
                     ii->format);
        goto out;
    }
    for (i = 0; i < ii->nsnapshots && !found; i++) {
        const struct info_snapshot *sn = &ii->snapshots[i];

        if (args->snapshot_mode == INSTAR_SNAP_ID_OR_NAME)
            found = !strcmp(sn->id, id) || !strcmp(sn->name, id);
        else if (id && name)
            found = !strcmp(sn->id, id) && !strcmp(sn->name, name);
        else
            found = id ? !strcmp(sn->id, id) : !strcmp(sn->name, name);
    }
    if (!found || (id && !put_str(args->snapshot_id, sizeof(args->snapshot_id), id)) ||
        (name && !put_str(args->snapshot_name, sizeof(args->snapshot_name), name))) {
        report_error("Failed to load snapshot: Can't find snapshot");
        goto out;
    }
    ret = 0;
out:
    free(copy);
    return ret;
}

/*
 * qemu-img convert [--object objectdef] [--image-opts] [--target-image-opts]
 *     [--target-is-zero] [--bitmaps [--skip-broken-bitmaps]] [-U] [-C] [-c] [-p] [-q] [-n]
 *     [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]]
 *     [-o options] [-l snapshot_param] [-S sparse_size] [-r rate_limit] [-m num_coroutines]
 *     [-W] [--salvage] filename [filename2 [...]] output_filename
 */
int cmd_convert(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"force-share", no_argument, 0, 'U'},
        {"target-image-opts", no_argument, 0, OPTION_TARGET_IMAGE_OPTS},
        {"salvage", no_argument, 0, OPTION_SALVAGE},
        {"target-is-zero", no_argument, 0, OPTION_TARGET_IS_ZERO},
        {"bitmaps", no_argument, 0, OPTION_BITMAPS},
        {"skip-broken-bitmaps", no_argument, 0, OPTION_SKIP_BROKEN},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *out_fmt = NULL, *cache = "unsafe", *src_cache = "writeback";
    const char *out_baseimg = NULL, *backing_fmt = NULL, *snapshot = NULL, *out_filename;
    char *options = NULL;
    bool compressed = false, copy_range = false, progress = false, quiet = false;
    bool skip_create = false, force_share = false, image_opts = false, tgt_image_opts = false;
    bool salvage = false, has_zero_init = false, bitmaps = false, skip_broken = false;
    bool explicit_min_sparse = false, direct = false, flush = false, src_direct, src_flush;
    int64_t min_sparse = 8, rate_limit = 0;
    long num_coroutines = 8;
    struct open_chain src[INSTAR_CONVERT_SRC_MAX];
    unsigned nsrc = 0, i;
    struct instar_convert_args args;
    struct instar_data_result v;
    struct vmm_config cfg;
    struct graph gr;
    uint64_t total = 0;
    int c, ret = 1, out_fd = -1, tdev;
    bool progress_started = false;

    for (;;) {
        c = getopt_long(argc, argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:", long_options, NULL);
        if (c == -1)
            break;
        switch (c) {
        case ':':
            ret = report_usage("missing argument for option '%s'", argv[optind - 1]);
            goto fail_getopt;
        case '?':
            ret = report_usage("unrecognized option '%s'", argv[optind - 1]);
            goto fail_getopt;
        case 'h':
            cmd_print_help();
            ret = 0;
            goto fail_getopt;
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'B':
            out_baseimg = optarg;
            break;
        case 'C':
            copy_range = true;
            break;
        case 'c':
            compressed = true;
            break;
        case 'F':
            backing_fmt = optarg;
            break;
        case 'o':
            if (accumulate(&options, optarg) < 0)
                goto fail_getopt;
            break;
        case 'l':
            snapshot = optarg;
            break;
        case 'S':
            min_sparse = size_cvtnum("buffer size for sparse output", optarg, 0, INT64_MAX);
            if (min_sparse < 0)
                goto fail_getopt;
            if (min_sparse % 512 || min_sparse / 512 > MAX_BUF_SECTORS) {
                report_error("Invalid buffer size for sparse output specified. Valid sizes are "
                             "multiples of 512 up to 16777216. Select 0 to disable sparse "
                             "detection (fully allocates output).");
                goto fail_getopt;
            }
            min_sparse /= 512;
            explicit_min_sparse = true;
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
        case 'n':
            skip_create = true;
            break;
        case 'm': {
            char *end;

            errno = 0;
            num_coroutines = strtol(optarg, &end, 0);
            if (errno || end == optarg || *end || num_coroutines < 1 ||
                num_coroutines > MAX_COROUTINES) {
                report_error("Invalid number of coroutines. Allowed number of coroutines is "
                             "between 1 and %d",
                             MAX_COROUTINES);
                goto fail_getopt;
            }
            break;
        }
        case 'W':
            break; /* out-of-order writes: instar writes in order, with the same result */
        case 'U':
            force_share = true;
            break;
        case 'r':
            rate_limit = size_cvtnum("rate limit", optarg, 0, INT64_MAX);
            if (rate_limit < 0)
                goto fail_getopt;
            break;
        case OPTION_OBJECT:
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_SALVAGE:
            salvage = true;
            break;
        case OPTION_TARGET_IMAGE_OPTS:
            tgt_image_opts = true;
            break;
        case OPTION_TARGET_IS_ZERO:
            has_zero_init = true;
            break;
        case OPTION_BITMAPS:
            bitmaps = true;
            break;
        case OPTION_SKIP_BROKEN:
            skip_broken = true;
            break;
        }
    }
    if (!out_fmt && !tgt_image_opts)
        out_fmt = "raw";
    if (skip_broken && !bitmaps) {
        report_error("Use of --skip-broken-bitmaps requires --bitmaps");
        goto fail_getopt;
    }
    if (compressed && copy_range) {
        report_error("Cannot enable copy offloading when -c is used");
        goto fail_getopt;
    }
    if (explicit_min_sparse && copy_range) {
        report_error("Cannot enable copy offloading when -S is used");
        goto fail_getopt;
    }
    if (copy_range && salvage) {
        report_error("Cannot use copy offloading in salvaging mode");
        goto fail_getopt;
    }
    if (tgt_image_opts && !skip_create) {
        report_error("--target-image-opts requires use of -n flag");
        goto fail_getopt;
    }
    if (skip_create && options) {
        report_error("-o has no effect when skipping image creation");
        goto fail_getopt;
    }
    if (has_zero_init && !skip_create) {
        report_error("--target-is-zero requires use of -n flag");
        goto fail_getopt;
    }
    nsrc = argc - optind - 1 > 0 ? (unsigned)(argc - optind - 1) : 0;
    out_filename = argc - optind >= 2 ? argv[argc - 1] : NULL;
    if (options && opts_has_help(options)) {
        if (out_fmt)
            ret = create_option_help(out_filename, out_fmt);
        else
            report_error("Option help requires a format be specified");
        goto fail_getopt;
    }
    if (argc - optind < 2) {
        report_error("Must specify image file name");
        goto fail_getopt;
    }
    if (cmd_cache_mode(src_cache, &src_direct, &src_flush) < 0) {
        report_error("Invalid source cache option: %s", src_cache);
        goto fail_getopt;
    }
    if (image_opts || tgt_image_opts) {
        report_error("--image-opts is not supported by instar");
        goto fail_getopt;
    }
    if (nsrc > INSTAR_CONVERT_SRC_MAX) {
        report_error("instar converts at most %d images at once", INSTAR_CONVERT_SRC_MAX);
        goto fail_getopt;
    }

    if (quiet)
        progress = false;
    progress_init(progress, 1.0);
    progress_print(0, 100);
    progress_started = true;

    graph_init(&gr);
    memset(&args, 0, sizeof(args));
    for (i = 0; i < nsrc; i++) {
        if (open_chain(&src[i], argv[optind + i], fmt, force_share ? OPEN_FORCE_SHARE : 0) < 0) {
            nsrc = i;
            goto out;
        }
        total += ((uint64_t)src[i].img[0].info->virtual_size + 511) / 512 * 512;
    }
    if (snapshot && snapshot_load(&src[0], nsrc, snapshot, &args) < 0)
        goto out;
    if (!skip_create && !cmd_driver_known(out_fmt)) {
        report_error("Unknown file format '%s'", out_fmt);
        goto out;
    }
    if (out_baseimg || (options && strstr(options, "backing_file"))) {
        report_error("Converting to an image with a backing file (-B) is not supported by "
                     "instar yet");
        goto out;
    }
    if (compressed && !skip_create && compress_refused(out_fmt, options) < 0)
        goto out;
    if (bitmaps) {
        if (nsrc > 1) {
            report_error("Copying bitmaps only possible with single source");
            goto out;
        }
        report_error("Copying bitmaps (--bitmaps) is not supported by instar yet");
        goto out;
    }
    if (strcmp(out_fmt, "raw") && strcmp(out_fmt, "qcow2")) {
        report_error("Format '%s' is not supported by instar convert", out_fmt);
        goto out;
    }
    if (skip_create && strcmp(out_fmt, "raw")) {
        report_error("Converting into an existing %s image (-n) is not supported by instar yet",
                     out_fmt);
        goto out;
    }
    if (!skip_create && create_for_convert(out_filename, out_fmt, options, total) < 0)
        goto out;
    if (cmd_cache_mode(cache, &direct, &flush) < 0) {
        report_error("Invalid cache option: %s", cache);
        goto out;
    }

    /* Open the target read-write (O_DIRECT for -t none). */
    {
        const char *path = out_filename;
        char *pmsg = NULL;
        struct stat st;

        if (policy_has_protocol(out_filename) && policy_host_path(out_filename, &path, &pmsg) < 0) {
            report_error("Could not open '%s': %s", out_filename, pmsg ? pmsg : "unknown");
            free(pmsg);
            goto out;
        }
        out_fd = open(path, O_RDWR | O_CLOEXEC | (direct ? O_DIRECT : 0));
        if (out_fd < 0 && direct && errno == EINVAL) {
            report_error("Could not open '%s': Could not open '%s': Invalid argument", out_filename,
                         path);
            goto out;
        }
        if (out_fd < 0) {
            report_error("Could not open '%s': Could not open '%s': %s", out_filename, path,
                         strerror(errno));
            goto out;
        }
        if (fstat(out_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            report_error("Could not open '%s': not a regular file", out_filename);
            goto out;
        }
        if (compressed && skip_create && !can_compress(out_fmt)) {
            report_error("Compression not supported for this file format");
            goto out;
        }
        if (skip_create && (uint64_t)st.st_size < total) {
            report_error("output file is smaller than input file");
            goto out;
        }
        for (i = 0; i < nsrc; i++) {
            if (graph_add_chain(&gr, &src[i], argv[optind + i], &args.src[i]) < 0)
                goto out;
        }
        tdev = graph_add_dev(
            &gr, out_fd, (uint64_t)st.st_size, INSTAR_DEV_READ | INSTAR_DEV_WRITE,
            skip_create ? (uint64_t)st.st_size : target_write_limit(out_fmt, total), out_filename);
        if (tdev < 0) {
            report_error("Could not open '%s': too many files", out_filename);
            goto out;
        }
    }

    args.g = gr.g;
    args.nsrc = nsrc;
    args.target = (uint32_t)tdev;
    args.target_driver = strcmp(out_fmt, "qcow2") ? INSTAR_DRV_RAW : INSTAR_DRV_QCOW2;
    /* A new raw file or qcow2 image reads as zeros (bdrv_has_zero_init). */
    if (has_zero_init || (!skip_create && min_sparse))
        args.flags |= INSTAR_CONVERT_ZERO_INIT;
    if (!skip_create)
        args.flags |= INSTAR_CONVERT_TARGET_NEW;
    if (progress)
        args.flags |= INSTAR_CONVERT_PROGRESS;
    if (compressed)
        args.flags |= INSTAR_CONVERT_COMPRESSED;
    args.min_sparse = (uint32_t)min_sparse;
    args.buf_sectors = IO_BUF_SECTORS;
    if (args.target_driver == INSTAR_DRV_QCOW2) {
        const char *cs = options ? strstr(options, "cluster_size=") : NULL;
        uint64_t v = 65536;

        if (cs && size_parse(cs + 13, NULL, &v) < 0)
            v = 65536;
        if (v / 512 > args.buf_sectors)
            args.buf_sectors = (uint32_t)(v / 512 < MAX_BUF_SECTORS ? v / 512 : MAX_BUF_SECTORS);
    }
    /* s.alignment: pow2floor(min_sparse), or the O_DIRECT block. */
    args.alignment = 1;
    while ((int64_t)args.alignment * 2 <= min_sparse)
        args.alignment *= 2;
    if (direct && args.alignment < 8)
        args.alignment = 8;
    args.target_backing_sectors = -1;
    (void)rate_limit;
    (void)backing_fmt;

    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = CONVERT_GUEST_MEM;
    cfg.progress = progress_from_guest;
    if (datarun(&cfg, INSTAR_OP_CONVERT, &args, sizeof(args), &gr, argv[optind], &v) < 0)
        goto out;
    switch (v.status) {
    case INSTAR_DATA_OK:
        break;
    case INSTAR_DATA_EBSTAT:
        report_error("error while reading block status at offset %" PRIu64 ": %s", v.offset,
                     strerror((int)v.errnum));
        goto out;
    case INSTAR_DATA_EREAD_AT:
        report_error("error while reading at byte %" PRIu64 ": %s", v.offset,
                     strerror((int)v.errnum));
        goto out;
    case INSTAR_DATA_ESNAP: {
        static const char *const why[] = {
            "",
            "Can't find snapshot",
            "Block format 'raw' used by device '' does not support temporarily loading internal "
            "snapshots",
            "Snapshot L1 table too large",
            "Snapshot L1 table offset invalid",
            "Failed to read l1 table for snapshot"};

        report_error("Failed to load snapshot: %s",
                     v.errnum < sizeof(why) / sizeof(why[0]) ? why[v.errnum] : "unknown error");
        goto out;
    }
    case INSTAR_DATA_EWRITE_AT:
        report_error("error while writing at byte %" PRIu64 ": %s", v.offset,
                     strerror((int)v.errnum));
        goto out;
    case INSTAR_DATA_ESILENT:
        goto out;
    default:
        report_error("Could not convert '%s': sandbox failure: unexpected result", argv[optind]);
        goto out;
    }
    if (flush && fdatasync(out_fd) < 0) {
        report_error("error while writing: %s", strerror(errno));
        goto out;
    }
    ret = 0;
out:
    if (progress_started) {
        if (ret == 0)
            progress_print(100, 0);
        progress_end();
    }
    if (out_fd >= 0)
        close(out_fd);
    for (i = 0; i < nsrc; i++)
        open_chain_close(&src[i]);
fail_getopt:
    free(options);
    return ret;
}
