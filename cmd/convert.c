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
#include "graph.h"
#include "open.h"
#include "object.h"
#include "opts.h"
#include "policy.h"
#include "progress.h"
#include "qcow2_err.h"
#include "imgcheck.h"
#include "report.h"
#include "size.h"
#include "snaparg.h"
#include "spec.h"

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

/* The bigger of a qcow2 target's metadata and its data: no convert writes more. */
static uint64_t target_write_limit(const char *fmt, uint64_t total, const char *options)
{
    uint64_t lim;

    /* vdi: whole 1 MiB blocks, and its header and block map (in the file already). */
    if (!strcmp(fmt, "vdi"))
        return total > UINT64_MAX - (1ULL << 20) ? UINT64_MAX : total + (1ULL << 20);
    if (!strcmp(fmt, "parallels")) {
        /* The data, the catalog, and allocate_clusters()' growth step (128 MiB, or a cluster). */
        const char *cs = options ? strstr(options, "cluster_size=") : NULL;
        uint64_t cl = 1 << 20;

        if (cs && size_parse(cs + 13, NULL, &cl) < 0)
            cl = 1 << 20;
        if (cl > (1ULL << 32))
            cl = 1ULL << 32;
        lim = total + total / 8;
        if (lim < total || lim + (256ULL << 20) + 4 * cl < lim)
            return UINT64_MAX;
        return lim + (256ULL << 20) + 4 * cl;
    }
    /*
     * vpc: a dynamic image's blocks, each after its sector bitmap (512
     * bytes a block; an existing target's blocks, with -n, may be as small
     * as one sector), and the footer moved past each new block.
     */
    if (!strcmp(fmt, "vpc"))
        return total > (UINT64_MAX >> 2) ? UINT64_MAX : 2 * total + (4ULL << 20);
    /*
     * vhdx: blocks at the end of the file, each rounded up to 1 MiB (a
     * fixed image with block_state_zero allocates them past its data too);
     * blocks of up to 256 MiB.
     */
    if (!strcmp(fmt, "vhdx"))
        return total > (UINT64_MAX >> 2) ? UINT64_MAX : 2 * total + (520ULL << 20);
    /* luks: the payload, after a header and key material of at most 2 MiB (written by create). */
    if (!strcmp(fmt, "luks"))
        return total > UINT64_MAX - (4ULL << 20) ? UINT64_MAX : total + (4ULL << 20);
    /*
     * qed and qcow: as qcow2, clusters and their L2 tables (qcow's compressed
     * clusters each start on a sector of their own); vmdk: grains, in tables
     * made at create.
     */
    if (strcmp(fmt, "qcow2") && strcmp(fmt, "qed") && strcmp(fmt, "qcow") && strcmp(fmt, "vmdk"))
        return total;
    lim = total + total / 8;
    if (lim < total || lim + (256ULL << 20) < lim)
        return UINT64_MAX;
    return lim + (256ULL << 20);
}

/*
 * A qcow2 target as img_convert() opens it: read-write with its backing
 * chain, under the write lock (open_chain).  -t none: qemu opens it with
 * O_DIRECT, which fails on a file system without it; instar's writes
 * come out the same without, so only the open is tried.
 * Returns 0, or -1 after reporting.
 */
static int open_node_target(struct open_chain *tgt, const char *filename, const char *fmt,
                            bool direct)
{
    if (direct && !policy_has_protocol(filename)) {
        int fd = open(filename, O_RDWR | O_CLOEXEC | O_DIRECT);

        if (fd < 0 && errno == EINVAL) {
            report_error("Could not open '%s': Could not open '%s': Invalid argument", filename,
                         filename);
            return -1;
        }
        if (fd >= 0)
            close(fd);
    }
    return open_chain(tgt, filename, fmt, OPEN_RDWR);
}

/*
 * img_add_key_secrets(): a new target is opened with the secrets its -o
 * named (key-secret for luks, encrypt.key-secret for qcow2), which unlock
 * it.  Returns the passphrase (the object store's: not freed), or NULL
 * when the options name none (the create has checked that it exists).
 */
static const char *target_key(const char *out_fmt, const char *options)
{
    char msg[512], hint[512];
    const struct opt_val *v;
    const char *key = NULL, *f = NULL;
    struct opt_list l;

    memset(&l, 0, sizeof(l));
    if (!options || !create_opts_for(&l, out_fmt))
        return NULL;
    if (opts_parse(&l, options, msg, hint, sizeof(msg)) == 0) {
        v = opts_find(&l, !strcmp(out_fmt, "luks") ? "key-secret" : "encrypt.key-secret");
        if (v && v->str)
            key = object_secret_lookup(v->str, &f);
    }
    opts_free(&l);
    return key;
}

/* A qcow2 target created encrypted and preallocated (-o preallocation other than off). */
static bool encrypted_prealloc(const char *out_fmt, const char *options)
{
    char msg[512], hint[512];
    const struct opt_val *e, *ef, *pa;
    struct opt_list l;
    bool ret = false;

    memset(&l, 0, sizeof(l));
    if (!options || strcmp(out_fmt, "qcow2") || !create_opts_for(&l, out_fmt))
        return false;
    if (opts_parse(&l, options, msg, hint, sizeof(msg)) == 0) {
        e = opts_find(&l, "encryption");
        ef = opts_find(&l, "encrypt.format");
        pa = opts_find(&l, "preallocation");
        ret = ((e && e->value) || (ef && strcmp(ef->str, "off"))) && pa && strcmp(pa->str, "off");
    }
    opts_free(&l);
    return ret;
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

/*
 * convert_check_bitmaps(): a single source whose top image can hold
 * persistent bitmaps (qcow2 v3), none of them in use unless skip_broken.
 * qemu walks the bitmaps as it loaded them, each added at the head of the
 * list: the last in directory order comes first.  Returns 0, or -1 after
 * reporting.
 */
static int convert_check_bitmaps(const struct open_chain *src, unsigned nsrc, bool skip_broken)
{
    const struct image_info *ii = src[0].img[0].info;
    uint32_t i;

    if (nsrc > 1) {
        report_error("Copying bitmaps only possible with single source");
        return -1;
    }
    if (strcmp(ii->format, "qcow2") || ii->qcow2_version < 3) {
        report_error("Source lacks bitmap support");
        return -1;
    }
    for (i = ii->nbitmaps; i-- > 0 && !skip_broken;) {
        if (ii->bitmaps[i].in_use) {
            report_error("Cannot copy inconsistent bitmap '%s'", ii->bitmaps[i].name);
            fputs("Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it\n",
                  stderr);
            return -1;
        }
    }
    return 0;
}

/*
 * Where convert_copy_bitmaps() stops: it walks the source's bitmaps from
 * the last in directory order, skips in-use ones with skip_broken, and
 * fails at the first whose name the target has (*why 1: "Failed to
 * create") or, when the sizes differ, at the first it adds (*why 2:
 * "Failed to populate").  Returns that directory index, or -1.
 */
static int64_t bitmaps_stop(const struct image_info *si, const struct image_info *ti,
                            bool skip_broken, bool size_differs, int *why)
{
    uint32_t i, k;

    for (i = si->nbitmaps; i-- > 0;) {
        if (si->bitmaps[i].in_use && skip_broken)
            continue;
        for (k = 0; k < ti->nbitmaps; k++) {
            if (!strcmp(ti->bitmaps[k].name, si->bitmaps[i].name)) {
                *why = 1;
                return i;
            }
        }
        if (size_differs) {
            *why = 2;
            return i;
        }
    }
    return -1;
}

/* Whether src's top image has a bitmap --bitmaps would copy (not skipped). */
static bool bitmaps_to_copy(const struct open_chain *src, bool skip_broken)
{
    const struct image_info *ii = src->img[0].info;
    uint32_t i;

    for (i = 0; i < ii->nbitmaps; i++) {
        if (!skip_broken || !ii->bitmaps[i].in_use)
            return true;
    }
    return false;
}

/*
 * --salvage's warnings as the guest streams them (INSTAR_CONVERT_REC_*,
 * include/instar/abi.h): each record is copied, checked (kind, errno,
 * corruption code) and printed as qemu-img's warn_report() prints it
 * (not with -q); a corruption record is the qcow2 line of the event that
 * caused the warnings after it.  The whole batch is validated
 * (result_salvage_validate) before any of it is printed; a bad one ends
 * the run.
 */
static int salvage_report_cb(void *opaque, const void *recs, size_t len)
{
    const bool *quiet = opaque;
    const uint8_t *p = recs;

    if (result_salvage_validate(recs, len) != RESULT_OK)
        return -1;
    for (size_t i = 0; i < len; i += sizeof(struct instar_report_rec)) {
        struct instar_report_rec r;

        memcpy(&r, p + i, sizeof(r));
        if (r.code == INSTAR_CONVERT_REC_BSTAT || r.code == INSTAR_CONVERT_REC_READ) {
            if (!*quiet)
                report_warning("error while reading %s%" PRIu64 ": %s",
                               r.code == INSTAR_CONVERT_REC_BSTAT ? "block status at offset "
                                                                  : "offset ",
                               r.args[0], strerror((int)r.args[1]));
        } else {
            fputs("qcow2: Image is corrupt: ", stderr);
            report_code_render_to(stderr, r.code, r.args, NULL, 0);
            fputs("; further non-fatal corruption events will be suppressed\n", stderr);
        }
    }
    return 0;
}

/*
 * -n --target-image-opts: img_open() of the target (no -O with it), read
 * by spec_parse(); the target is then opened at spec->path in the format
 * the options name (the file protocol is raw).  An unnamed format would be
 * probed by qemu: instar refuses it rather than probe a file it writes.
 * Returns 0 with *out_fmt set, or -1 after reporting.
 */
static int target_spec(const char *arg, const char **out_fmt, struct img_spec *spec)
{
    if (*out_fmt) {
        report_error("--image-opts and --format are mutually exclusive");
        return -1;
    }
    if (spec_parse(spec, arg, true, NULL, false) < 0)
        return -1;
    if (spec_refuse_backing(spec) < 0)
        return -1;
    if (!spec->fmt) {
        report_error("Could not open '%s': instar does not probe the format of a "
                     "--target-image-opts target: name its driver",
                     arg);
        return -1;
    }
    /* raw's offset/size on the target: its writes would need the window too. */
    if (spec->raw_offset || spec->raw_size) {
        report_error("Could not open '%s': Option '%s' is not supported by instar", arg,
                     spec->raw_offset ? "offset" : "size");
        return -1;
    }
    *out_fmt = strcmp(spec->fmt, "file") ? spec->fmt : "raw";
    return 0;
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
    const char *out_baseimg = NULL, *backing_fmt = NULL, *out_filename;
    char *options = NULL, *new_backing = NULL, *new_backing_fmt = NULL;
    bool compressed = false, copy_range = false, progress = false, quiet = false;
    bool skip_create = false, force_share = false, image_opts = false, tgt_image_opts = false;
    bool salvage = false, has_zero_init = false, bitmaps = false, skip_broken = false;
    bool explicit_min_sparse = false, direct = false, flush = false, src_direct, src_flush;
    int64_t min_sparse = 8, rate_limit = 0;
    long num_coroutines = 8;
    struct open_chain src[INSTAR_CONVERT_SRC_MAX], tgt;
    unsigned nsrc = 0, i;
    bool tgt_open = false, target_has_backing = false;
    int64_t target_backing_sectors = -1;
    uint64_t target_size = 0;
    int64_t bm_stop = -1;
    int bm_why = 0;
    uint32_t tnode = INSTAR_NO_NODE;
    struct instar_convert_args args;
    struct instar_data_result v;
    struct vmm_config cfg;
    struct graph gr;
    struct img_spec tspec = {0};
    struct snap_arg sa = {0};
    int snap_index = -1;
    const char *tpath;
    uint64_t total = 0;
    int c, ret = 1, out_fd = -1, tdev;
    bool progress_started = false;

    for (;;) {
        c = cmd_getopt(argc, argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
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
            if (cmd_add_options(&options, optarg) < 0)
                goto fail_getopt;
            break;
        case 'l':
            if (snap_arg_parse(&sa, optarg) < 0)
                goto fail_getopt;
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
            /* user_creatable_process_cmdline(): help or a bad definition ends qemu-img. */
            c = object_add(optarg);
            if (c != 0) {
                ret = c > 0 ? 0 : 1;
                goto fail_getopt;
            }
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
        if (open_chain_arg(&src[i], argv[optind + i], image_opts, fmt, force_share, 0) < 0) {
            nsrc = i;
            goto out;
        }
        /* img_convert() opens the sources with their crypto layer, before the target. */
        if (graph_check_keys(&src[i], argv[optind + i]) < 0 ||
            graph_unlock_chain(&src[i], argv[optind + i]) < 0) {
            nsrc = i + 1;
            goto out;
        }
        total += ((uint64_t)src[i].img[0].info->virtual_size + 511) / 512 * 512;
    }
    /* bdrv_snapshot_load_tmp[_by_id_or_name]() of the first source. */
    if (snap_arg_by_name(&sa) && nsrc > 1) {
        report_error("No support for concatenating multiple snapshot");
        goto out;
    }
    if (snap_arg_given(&sa)) {
        snap_index = snap_arg_select(&sa, &src[0], argv[optind], CONVERT_GUEST_MEM);
        if (snap_index < 0)
            goto out;
    }
    if (tgt_image_opts && target_spec(out_filename, &out_fmt, &tspec) < 0)
        goto out;
    if (!skip_create && !cmd_driver_known(out_fmt)) {
        report_error("Unknown file format '%s'", out_fmt);
        goto out;
    }
    if (!skip_create && !cmd_driver_creates(out_fmt)) {
        report_error("Format driver '%s' does not support image creation", out_fmt);
        goto out;
    }
    /*
     * The target's backing file: -B (or -o backing_file) for a new image,
     * -B alone with -n (img_convert() parses no options then).
     */
    if (!skip_create) {
        if (create_convert_backing(out_fmt, options, out_baseimg, backing_fmt, &new_backing,
                                   &new_backing_fmt) < 0)
            goto out;
        if (new_backing)
            out_baseimg = new_backing;
    }
    target_has_backing = out_baseimg != NULL;
    if (has_zero_init && target_has_backing) {
        /* img_convert() leaves with ret still 0 here. */
        report_error("Cannot use --target-is-zero when the destination image has a backing file");
        ret = 0;
        goto out;
    }
    if (nsrc > 1 && out_baseimg) {
        report_error("Having a backing file for the target makes no sense when concatenating "
                     "multiple input images");
        goto out;
    }
    if (new_backing && !new_backing_fmt) {
        report_error("Use of backing file requires explicit backing format");
        goto out;
    }
    if (compressed && !skip_create && compress_refused(out_fmt, options) < 0)
        goto out;
    if (bitmaps && convert_check_bitmaps(&src[0], nsrc, skip_broken) < 0)
        goto out;
    if (strcmp(out_fmt, "raw") && strcmp(out_fmt, "qcow2") && strcmp(out_fmt, "parallels") &&
        strcmp(out_fmt, "vdi") && strcmp(out_fmt, "vpc") && strcmp(out_fmt, "qed") &&
        strcmp(out_fmt, "vhdx") && strcmp(out_fmt, "luks") && strcmp(out_fmt, "vmdk") &&
        strcmp(out_fmt, "qcow")) {
        report_error("Format '%s' is not supported by instar convert", out_fmt);
        goto out;
    }
    if (!skip_create &&
        create_for_convert(out_filename, out_fmt, options, total, out_baseimg, backing_fmt) < 0)
        goto out;
    if (cmd_cache_mode(cache, &direct, &flush) < 0) {
        report_error("Invalid cache option: %s", cache);
        goto out;
    }

    for (i = 0; i < nsrc; i++) {
        if (graph_add_chain(&gr, &src[i], argv[optind + i], &args.src[i]) < 0)
            goto out;
    }
    tpath = tspec.path ? tspec.path : out_filename;
    if (!strcmp(out_fmt, "qcow2") || !strcmp(out_fmt, "parallels") || !strcmp(out_fmt, "vdi") ||
        !strcmp(out_fmt, "vpc") || !strcmp(out_fmt, "qed") || !strcmp(out_fmt, "vhdx") ||
        !strcmp(out_fmt, "luks") || !strcmp(out_fmt, "vmdk") || !strcmp(out_fmt, "qcow")) {
        uint64_t lim;

        /* A qcow2, parallels, vdi, vpc, qed, vhdx, luks, vmdk or qcow target: a writable node. */
        if (open_node_target(&tgt, tpath, out_fmt, direct) < 0)
            goto out;
        tgt_open = true;
        /* An encrypted new target is written through its cipher, with the key from -o. */
        if (!skip_create) {
            tgt.key = target_key(out_fmt, options);
        } else if (tspec.key_secret) {
            /* -n --target-image-opts with (encrypt.)key-secret: the existing target unlocked. */
            const char *f = NULL;

            tgt.key = object_secret_lookup(tspec.key_secret, &f);
            if (!tgt.key && tgt.img[0].info->encrypted) {
                char m[512];

                snprintf(m, sizeof(m), f, tspec.key_secret);
                report_error("Could not open '%s': %s", out_filename, m);
                goto out;
            }
            /* A wrong password fails the open, before the size is compared. */
            if (graph_unlock_chain(&tgt, out_filename) < 0)
                goto out;
        }
        /* bdrv_open() of an encrypted target without its secret fails first. */
        if (graph_check_keys(&tgt, out_filename) < 0)
            goto out;
        if (bitmaps && (strcmp(out_fmt, "qcow2") || tgt.img[0].info->qcow2_version < 3)) {
            report_error("Format driver '%s' does not support bitmaps", out_fmt);
            goto out;
        }
        target_size = (uint64_t)tgt.img[0].info->virtual_size;
        /* bdi.needs_compressed_writes: a streamOptimized target takes compressed grains only. */
        if (!strcmp(out_fmt, "vmdk") && tgt.img[0].info->vmdk_stream)
            compressed = true;
        if (bitmaps)
            bm_stop = bitmaps_stop(src[0].img[0].info, tgt.img[0].info, skip_broken,
                                   target_size != total, &bm_why);
        if (skip_create && ((uint64_t)tgt.img[0].info->virtual_size + 511) / 512 * 512 < total) {
            report_error("output file is smaller than input file");
            goto out;
        }
        /* bdrv_nb_sectors() of the new target's backing file. */
        if (target_has_backing && !skip_create && tgt.n > 1)
            target_backing_sectors = (tgt.img[1].info->virtual_size + 511) / 512;
        if (graph_add_chain(&gr, &tgt, tpath, &tnode) < 0)
            goto out;
        tdev = (int)gr.g.nodes[tnode].file;
        gr.devs[tdev].flags |= INSTAR_DEV_WRITE;
        lim = target_write_limit(out_fmt, total, options);
        /* The copied bitmaps, and the target's own, stored anew at close. */
        {
            uint64_t more = info_bitmaps_bytes(tgt.img[0].info, target_size);

            if (bitmaps && bitmaps_to_copy(&src[0], skip_broken)) {
                uint64_t b = info_bitmaps_bytes(src[0].img[0].info, total);
                more = more > UINT64_MAX - b ? UINT64_MAX : more + b;
            }
            lim = lim > UINT64_MAX - more ? UINT64_MAX : lim + more;
        }
        gr.devs[tdev].write_limit =
            lim > UINT64_MAX - gr.devs[tdev].size ? UINT64_MAX : gr.devs[tdev].size + lim;
        /*
         * A vmdk descriptor's extent files, the devices after its own: each
         * written within its share (a flat one within its length), and the
         * descriptor rewritten whole (20 sectors) with the new CID.
         */
        if (!strcmp(out_fmt, "vmdk") && tgt.img[0].next) {
            for (unsigned k = 1; k <= tgt.img[0].next; k++) {
                struct vmm_dev *d = &gr.devs[tdev + (int)k];

                d->flags |= INSTAR_DEV_WRITE;
                d->write_limit = d->size + lim;
            }
            if (gr.devs[tdev].write_limit < 20 * 512)
                gr.devs[tdev].write_limit = 20 * 512;
        }
        if (gr.g.nodes[tnode].data != INSTAR_NO_NODE) {
            /*
             * An external data file: guest data at its guest offset, up to
             * the end of the last cluster (at most 2 MiB past the image).
             */
            struct vmm_dev *d = &gr.devs[gr.g.nodes[tnode].data];

            d->flags |= INSTAR_DEV_WRITE;
            d->write_limit = total + (2ULL << 20) > d->size ? total + (2ULL << 20) : d->size;
        }
    } else {
        /* A raw target: the file itself, read-write (O_DIRECT for -t none). */
        const char *path = tpath;
        char *pmsg = NULL;
        struct stat st;

        if (!tspec.path && policy_has_protocol(out_filename) &&
            policy_host_path(out_filename, &path, &pmsg) < 0) {
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
        if (bitmaps) {
            report_error("Format driver 'raw' does not support bitmaps");
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
        tdev = graph_add_dev(&gr, out_fd, (uint64_t)st.st_size, INSTAR_DEV_READ | INSTAR_DEV_WRITE,
                             skip_create ? (uint64_t)st.st_size : total, out_filename);
        if (tdev < 0) {
            report_error("Could not open '%s': too many files", out_filename);
            goto out;
        }
    }

    /*
     * -t unsafe (convert's default) sets BDRV_O_NO_FLUSH: the target's
     * flushes write its cached metadata but do not sync the files.  Other
     * modes sync once more at the end, below.
     */
    if (!flush) {
        for (i = 0; i < gr.ndevs; i++)
            if (gr.devs[i].flags & INSTAR_DEV_WRITE)
                gr.devs[i].no_flush = true;
    }
    args.g = gr.g;
    args.g.snapshot = snap_index >= 0 ? (uint32_t)snap_index + 1 : 0;
    args.nsrc = nsrc;
    args.target = (uint32_t)tdev;
    args.target_node = tnode;
    args.target_driver = tnode == INSTAR_NO_NODE         ? INSTAR_DRV_RAW
                         : !strcmp(out_fmt, "parallels") ? INSTAR_DRV_PARALLELS
                         : !strcmp(out_fmt, "vdi")       ? INSTAR_DRV_VDI
                         : !strcmp(out_fmt, "vpc")       ? INSTAR_DRV_VPC
                         : !strcmp(out_fmt, "qed")       ? INSTAR_DRV_QED
                         : !strcmp(out_fmt, "vhdx")      ? INSTAR_DRV_VHDX
                         : !strcmp(out_fmt, "luks")      ? INSTAR_DRV_LUKS
                         : !strcmp(out_fmt, "vmdk")      ? INSTAR_DRV_VMDK
                         : !strcmp(out_fmt, "qcow")      ? INSTAR_DRV_QCOW
                                                         : INSTAR_DRV_QCOW2;
    /*
     * A new raw file or qcow2 image without a backing file reads as zeros
     * (bdrv_has_zero_init); a luks volume does not (block/crypto.c has no
     * such hook: its zeros are written, encrypted), nor an encrypted qcow2
     * image with preallocated clusters (qcow2_has_zero_init()).
     */
    if (has_zero_init || (!skip_create && min_sparse && !target_has_backing &&
                          strcmp(out_fmt, "luks") && !encrypted_prealloc(out_fmt, options)))
        args.flags |= INSTAR_CONVERT_ZERO_INIT;
    if (target_has_backing)
        args.flags |= INSTAR_CONVERT_TARGET_BACKING;
    if (!skip_create)
        args.flags |= INSTAR_CONVERT_TARGET_NEW;
    if (progress)
        args.flags |= INSTAR_CONVERT_PROGRESS;
    if (salvage)
        args.flags |= INSTAR_CONVERT_SALVAGE;
    if (compressed)
        args.flags |= INSTAR_CONVERT_COMPRESSED;
    if (copy_range)
        args.flags |= INSTAR_CONVERT_COPY_RANGE;
    if (bitmaps && tnode != INSTAR_NO_NODE) {
        const struct image_info *ii = src[0].img[0].info;

        /* Those after the stop that are not in use (skipped: the host refused the others). */
        for (i = (uint32_t)(bm_stop + 1); i < ii->nbitmaps; i++)
            if (!ii->bitmaps[i].in_use)
                args.flags |= INSTAR_CONVERT_BITMAPS;
        args.bitmaps_from = (uint32_t)(bm_stop + 1);
    }
    if (skip_broken)
        args.flags |= INSTAR_CONVERT_SKIP_BROKEN;
    args.min_sparse = (uint32_t)min_sparse;
    args.num_coroutines = (uint32_t)num_coroutines;
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
    args.target_backing_sectors = target_backing_sectors;
    (void)rate_limit;

    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = CONVERT_GUEST_MEM;
    cfg.report = check_report_cb; /* a dirty image's repair at open, as check -r prints it */
    cfg.report_opaque = stderr;
    cfg.progress = progress_from_guest;
    if (salvage) {
        cfg.report = salvage_report_cb;
        cfg.report_opaque = &quiet;
    }
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
    /*
     * convert_copy_bitmaps(): the guest copied those after bm_stop; the
     * warnings and the error of qemu-img's walk (the last bitmap first).
     */
    if (bitmaps) {
        const struct image_info *ii = src[0].img[0].info;

        for (i = ii->nbitmaps; i-- > 0 && (int64_t)i > bm_stop;)
            if (ii->bitmaps[i].in_use && skip_broken)
                report_warning("Skipping inconsistent bitmap '%s'", ii->bitmaps[i].name);
        if (bm_stop >= 0 && bm_why == 1) {
            report_error("Failed to create bitmap %s: Bitmap already exists: %s",
                         ii->bitmaps[bm_stop].name, ii->bitmaps[bm_stop].name);
            goto out;
        }
        if (bm_stop >= 0) {
            /* block-dirty-bitmap-merge of bitmaps of different lengths. */
            report_error("Failed to populate bitmap %s: Bitmaps are of different sizes "
                         "(destination size is %" PRIu64 ", source size is %" PRIu64
                         ") and can't be merged",
                         ii->bitmaps[bm_stop].name, target_size, total);
            goto out;
        }
    }
    if (flush && fdatasync(tgt_open ? tgt.img[0].fd : out_fd) < 0) {
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
    if (tgt_open)
        open_chain_close(&tgt);
    for (i = 0; i < nsrc; i++)
        open_chain_close(&src[i]);
    free(new_backing);
    free(new_backing_fmt);
    spec_release(&tspec);
fail_getopt:
    snap_arg_release(&sa);
    free(options);
    return ret;
}
