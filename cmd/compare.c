/*
 * qemu-img compare: both images (chains included) go to one guest run
 * (guest/plan_compare.c), which walks them as img_compare() does; the host
 * prints the progress it reports, the size warning when it sends it, and
 * the line its result names.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "datarun.h"
#include "object.h"
#include "progress.h"
#include "opts.h"
#include "report.h"

enum {
    OPTION_OBJECT = 257,
    OPTION_IMAGE_OPTS = 258,
};

#define COMPARE_GUEST_MEM (128ULL << 20)

/*
 * The guest's one streamed record (INSTAR_COMPARE_REC_SIZE_MISMATCH):
 * qemu-img's size warning, printed when it comes, so that it stands where
 * qemu-img prints it among the progress updates.  Anything else, or a
 * second one, ends the run.
 */
static int size_warning_cb(void *opaque, const void *recs, size_t len)
{
    bool *warned = opaque;
    struct instar_report_rec r;

    if (len != sizeof(r) || *warned)
        return -1;
    memcpy(&r, recs, sizeof(r));
    if (r.code != INSTAR_COMPARE_REC_SIZE_MISMATCH || r.slen || r.flags || r.args[0] || r.args[1] ||
        r.args[2] || r.args[3])
        return -1;
    *warned = true;
    report_qprintf("Warning: Image size mismatch!\n");
    return 0;
}

/*
 * qemu-img compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache]
 *                  [-p] [-q] [-s] [-U] filename1 filename2
 * Exit codes (img_compare):
 *   0  the images are identical
 *   1  they differ (content, or size / block status in strict mode)
 *   2  an image could not be opened, or a usage error
 *   3  a block status query failed ("Sector allocation test failed for FILE")
 *   4  a read failed ("Error while reading offset N of FILE: ...")
 */
int cmd_compare(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *fmt1 = NULL, *fmt2 = NULL, *cache = "writeback", *filename1, *filename2;
    bool progress = false, quiet = false, strict = false, image_opts = false, force_share = false;
    bool warned = false;
    struct instar_compare_args args;
    struct instar_data_result v;
    struct open_chain oc1, oc2;
    struct vmm_config cfg;
    struct graph gr;
    const char *names[3];
    int c, ret = 2;

    for (;;) {
        c = cmd_getopt(argc, argv, ":hf:F:T:pqsU", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'f':
            fmt1 = optarg;
            break;
        case 'F':
            fmt2 = optarg;
            break;
        case 'T':
            cache = optarg;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case 's':
            strict = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_OBJECT:
            /* user_creatable_add_from_str(): help ends qemu-img, a bad definition with exit 2. */
            c = object_add(optarg);
            if (c != 0)
                return c > 0 ? 0 : 2;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }
    if (quiet)
        progress = false;
    if (optind != argc - 2) {
        report_usage("Expecting two image file names");
        return 1;
    }
    filename1 = argv[optind];
    filename2 = argv[optind + 1];
    report_set_quiet(quiet);
    progress_init(progress, 2.0);
    if (cmd_cache_mode(cache, &(bool){0}, &(bool){0}) < 0) {
        report_error("Invalid source cache option: %s", cache);
        goto out3;
    }
    if (open_chain_arg(&oc1, filename1, image_opts, fmt1, force_share, 0) < 0)
        goto out3;
    if (open_chain_arg(&oc2, filename2, image_opts, fmt2, force_share, 0) < 0)
        goto out2;

    graph_init(&gr);
    memset(&args, 0, sizeof(args));
    if (graph_add_chain(&gr, &oc1, filename1, &args.top1) < 0 ||
        graph_add_chain(&gr, &oc2, filename2, &args.top2) < 0)
        goto out;
    args.g = gr.g;
    args.flags = (strict ? INSTAR_COMPARE_STRICT : 0) | (progress ? INSTAR_COMPARE_PROGRESS : 0);
    progress_print(0, 100);

    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = COMPARE_GUEST_MEM;
    cfg.progress = progress_from_guest;
    cfg.report = size_warning_cb;
    cfg.report_opaque = &warned;
    if (datarun(&cfg, INSTAR_OP_COMPARE, &args, sizeof(args), &gr, filename1, &v) < 0)
        goto out;
    names[0] = filename1;
    names[1] = filename1;
    names[2] = filename2;
    switch (v.status) {
    case INSTAR_DATA_IDENTICAL:
        report_qprintf("Images are identical.\n");
        ret = 0;
        break;
    case INSTAR_DATA_MISMATCH:
    case INSTAR_DATA_NOT_EMPTY:
        report_qprintf("Content mismatch at offset %" PRIu64 "!\n", v.offset);
        ret = 1;
        break;
    case INSTAR_DATA_STRICT_SIZE:
        report_qprintf("Strict mode: Image size mismatch!\n");
        ret = 1;
        break;
    case INSTAR_DATA_STRICT_STATUS:
        report_qprintf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", v.offset);
        ret = 1;
        break;
    case INSTAR_DATA_EALLOC:
        report_error("Sector allocation test failed for %s", names[v.image]);
        ret = 3;
        break;
    case INSTAR_DATA_EREAD:
        report_error("Error while reading offset %" PRIu64 " of %s: %s", v.offset, names[v.image],
                     strerror((int)v.errnum));
        ret = 4;
        break;
    default:
        report_error("Could not compare: sandbox failure: unexpected result");
        ret = 2;
        break;
    }
out:
    open_chain_close(&oc2);
out2:
    open_chain_close(&oc1);
out3:
    progress_end();
    return ret;
}
