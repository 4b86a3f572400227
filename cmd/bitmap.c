/*
 * instar bitmap: qemu-img 7.2's img_bitmap().
 *
 * The options are read and checked as img_bitmap() reads them; the image
 * is opened read-write without its backing chain (and the -b image
 * read-only, also without), then the guest's bitmap planner
 * (guest/plan_bitmap.c) applies the actions in command-line order to the
 * qcow2 image's persistent bitmaps and closes it, which stores them
 * (formats/qcow2/bitmap_store.c).  A raw image has no bitmaps: its first
 * action fails on the host as it fails in qemu, without a guest run.
 * Messages come from here, worded as qemu-img words each failure
 * ("Operation ACT on bitmap NAME failed: ...").
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cmds.h"
#include "datarun.h"
#include "graph.h"
#include "imgcheck.h"
#include "info.h"
#include "object.h"
#include "open.h"
#include "report.h"
#include "size.h"
#include "vmm.h"

enum {
    OPTION_OBJECT = 256,
    OPTION_IMAGE_OPTS,
    OPTION_ADD,
    OPTION_REMOVE,
    OPTION_CLEAR,
    OPTION_ENABLE,
    OPTION_DISABLE,
    OPTION_MERGE,
};

#define BITMAP_GUEST_MEM_BASE (256ULL << 20)
#define BITMAP_GUEST_MEM_MAX  (4ULL << 30)

struct bitmap_action {
    uint8_t act;     /* enum instar_bitmap_act */
    const char *src; /* --merge SOURCE */
};

static const char *act_name(uint8_t act)
{
    switch (act) {
    case INSTAR_BITMAP_ADD:
        return "add";
    case INSTAR_BITMAP_REMOVE:
        return "remove";
    case INSTAR_BITMAP_CLEAR:
        return "clear";
    case INSTAR_BITMAP_ENABLE:
        return "enable";
    case INSTAR_BITMAP_DISABLE:
        return "disable";
    default:
        return "merge";
    }
}

/*
 * The node name qemu's messages use: the image's node is the first one
 * qemu-img creates, "#block1" and two random digits (id_generate()).
 */
static void node_name(char out[16])
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    snprintf(out, 16, "#block1%02d", (int)(tv.tv_usec % 100));
}

/*
 * error_reportf_err(err, "Operation %s on bitmap %s failed: ", ...) for
 * the failure code of action a.  dst_size/src_size: the images' sizes.
 */
static void report_failure(const struct bitmap_action *a, const char *bitmap, uint32_t code,
                           uint32_t errnum, int64_t dst_size, int64_t src_size)
{
    const char *name =
        code == INSTAR_BITMAP_ESRC_NOT_FOUND || code == INSTAR_BITMAP_ESRC_INCONSISTENT ? a->src
                                                                                        : bitmap;
    char node[16];
    const char *why = NULL;

    fprintf(stderr, "%s: Operation %s on bitmap %s failed: ", report_progname(), act_name(a->act),
            bitmap);
    switch (code) {
    case INSTAR_BITMAP_ENOT_FOUND:
    case INSTAR_BITMAP_ESRC_NOT_FOUND:
        fprintf(stderr, "Dirty bitmap '%s' not found\n", name);
        return;
    case INSTAR_BITMAP_EEXISTS:
        fprintf(stderr, "Bitmap already exists: %s\n", bitmap);
        return;
    case INSTAR_BITMAP_EINCONSISTENT:
    case INSTAR_BITMAP_ESRC_INCONSISTENT:
        fprintf(stderr,
                "Bitmap '%s' is inconsistent and cannot be used\n"
                "Try block-dirty-bitmap-remove to delete this bitmap from disk\n",
                name);
        return;
    case INSTAR_BITMAP_EEMPTY_NAME:
        fputs("Bitmap name cannot be empty\n", stderr);
        return;
    case INSTAR_BITMAP_EGRANULARITY:
        fputs("Granularity must be power of 2 and at least 512\n", stderr);
        return;
    case INSTAR_BITMAP_ESIZES:
        fprintf(stderr,
                "Bitmaps are of different sizes (destination size is %" PRId64
                ", source size is %" PRId64 ") and can't be merged\n",
                dst_size, src_size);
        return;
    case INSTAR_BITMAP_EREMOVE:
        fprintf(stderr, "Failed to update bitmap extension: %s\n", strerror((int)errnum));
        return;
    case INSTAR_BITMAP_EV2:
        why = "Cannot store dirty bitmaps in qcow2 v2 files";
        break;
    case INSTAR_BITMAP_ETOO_BIG:
        why = "Too much space will be occupied by the bitmap. Use larger granularity";
        break;
    case INSTAR_BITMAP_ENAME_TOO_LONG:
        why = "Name length exceeds maximum (1023 characters)";
        break;
    case INSTAR_BITMAP_ETOO_MANY:
        why = "Maximum number of persistent bitmaps is already reached";
        break;
    default:
        why = "Not enough space in the bitmap directory";
        break;
    }
    /* qcow2_co_can_store_new_dirty_bitmap()'s error_prepend(). */
    node_name(node);
    fprintf(stderr, "Can't make bitmap '%s' persistent in '%s': %s\n", bitmap, node, why);
}

/*
 * A raw (or vdi) image (no bitmaps, no way to store one): the first action fails,
 * as the QMP commands fail on it.
 */
static int bitmap_raw(const struct bitmap_action *a, const char *bitmap, bool has_gran,
                      uint32_t gran)
{
    char node[16];

    if (a->act != INSTAR_BITMAP_ADD) {
        report_failure(a, bitmap, INSTAR_BITMAP_ENOT_FOUND, 0, 0, 0);
        return 1;
    }
    if (!bitmap[0]) {
        report_failure(a, bitmap, INSTAR_BITMAP_EEMPTY_NAME, 0, 0, 0);
        return 1;
    }
    if (has_gran && (gran < 512 || (gran & (gran - 1)))) {
        report_failure(a, bitmap, INSTAR_BITMAP_EGRANULARITY, 0, 0, 0);
        return 1;
    }
    /* bdrv_can_store_new_dirty_bitmap() without a driver hook. */
    node_name(node);
    report_error("Operation add on bitmap %s failed: Can't store persistent bitmaps to %s: %s",
                 bitmap, node, strerror(ENOTSUP));
    return 1;
}

/*
 * qcow2_inactivate()'s message when an empty image's bitmaps could not be
 * stored (the exit code stays the actions').
 */
static void lost_if_empty(const struct instar_data_result *v)
{
    char node[16];

    if (v->image != 1)
        return;
    node_name(node);
    report_error("Lost persistent bitmaps during inactivation of node '%s': No memory", node);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/*
 * Run the planner on the qcow2 image oc (and the -b image src, or NULL).
 * Returns the exit code, after reporting.
 */
static int bitmap_run(struct open_chain *oc, const char *filename, struct open_chain *src,
                      const char *src_filename, const struct bitmap_action *acts, uint32_t nact,
                      const char *bitmap, bool has_gran, uint32_t gran)
{
    static struct instar_bitmap_args args;
    const struct image_info *ii = oc->img[0].info;
    uint64_t vsize = ii->virtual_size > 0 ? (uint64_t)ii->virtual_size : 0;
    uint64_t bits, mem, srcpos = 0;
    struct instar_data_result v;
    struct vmm_config cfg;
    struct vmm_dev *d;
    struct graph gr;
    uint32_t top, k, idx, code;
    size_t blen = strlen(bitmap);

    memset(&args, 0, sizeof(args));
    args.nact = nact;
    args.name_len = blen > UINT32_MAX ? UINT32_MAX : (uint32_t)blen;
    if (blen < INSTAR_BITMAP_NAME_MAX)
        memcpy(args.name, bitmap, blen + 1);
    if (has_gran) {
        args.flags |= INSTAR_BITMAP_GRANULARITY;
        args.granularity = gran;
    }
    for (k = 0; k < nact; k++) {
        args.act[k] = acts[k].act;
        if (acts[k].act != INSTAR_BITMAP_MERGE)
            continue;
        size_t n = strlen(acts[k].src);
        uint64_t j;

        if (n > 1023) {
            args.src_off[k] = INSTAR_BITMAP_NO_NAME;
            continue;
        }
        /* The same source twice: one copy. */
        for (j = 0; j < srcpos; j += strlen(args.srcnames + j) + 1)
            if (!strcmp(args.srcnames + j, acts[k].src))
                break;
        if (j == srcpos) {
            if (srcpos + n + 1 > INSTAR_BITMAP_SRC_BYTES) {
                report_error("Too many --merge sources for instar (their names exceed %u bytes)",
                             INSTAR_BITMAP_SRC_BYTES);
                return 1;
            }
            memcpy(args.srcnames + srcpos, acts[k].src, n + 1);
            srcpos += n + 1;
        }
        args.src_off[k] = (uint16_t)j;
    }

    graph_init(&gr);
    if (graph_add_chain(&gr, oc, filename, &top) < 0)
        return 1;
    if (src) {
        if (graph_add_chain(&gr, src, src_filename, &args.source) < 0)
            return 1;
        args.flags |= INSTAR_BITMAP_SOURCE;
    }
    /*
     * The close stores every bitmap anew, and an --add one more (at most
     * 512 MiB of bits: BME_MAX_PHYS_SIZE), each in clusters of at most
     * 2 MiB with its table and refcount blocks.
     */
    bits = vsize / 4096 + 8;
    if (bits > (512ULL << 20))
        bits = 512ULL << 20;
    bits = add_sat(add_sat(bits, bits / 64), 6ULL << 20);
    bits = add_sat(bits, info_bitmaps_bytes(ii, vsize));
    d = &gr.devs[gr.g.nodes[top].file];
    d->flags |= INSTAR_DEV_WRITE;
    d->write_limit = add_sat(add_sat(d->size, bits), add_sat(bits / 32, 64ULL << 20));
    /* Guest RAM: every bitmap's bits in memory (and the source's), twice over. */
    mem = bits;
    if (src && src->img[0].info->virtual_size > 0)
        mem = add_sat(
            mem, info_bitmaps_bytes(src->img[0].info, (uint64_t)src->img[0].info->virtual_size));
    mem = add_sat(BITMAP_GUEST_MEM_BASE, add_sat(mem, mem));
    if (mem > BITMAP_GUEST_MEM_MAX)
        mem = BITMAP_GUEST_MEM_MAX;
    args.g = gr.g;

    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = mem;
    cfg.report = check_report_cb; /* a dirty image's repair at open, as check -r prints it */
    cfg.report_opaque = stderr;
    if (datarun(&cfg, INSTAR_OP_BITMAP, &args, sizeof(args), &gr, filename, &v) < 0)
        return 1;
    if (v.status == INSTAR_DATA_OK) {
        lost_if_empty(&v);
        return 0;
    }
    idx = (uint32_t)(v.offset >> 8);
    code = (uint32_t)(v.offset & 0xff);
    if (v.status != INSTAR_DATA_EBITMAP || (v.offset >> 8) > nact || code == 0 ||
        code > INSTAR_BITMAP_ERR_MAX ||
        (code == INSTAR_BITMAP_ESTORE ? idx != nact : idx >= nact)) {
        report_error("Could not write '%s': sandbox failure: unexpected result", filename);
        return 1;
    }
    if (code == INSTAR_BITMAP_ESTORE) {
        char node[16];

        node_name(node);
        report_error("Lost persistent bitmaps during inactivation of node '%s': %s", node,
                     strerror((int)v.errnum));
        return 1;
    }
    report_failure(&acts[idx], bitmap, code, v.errnum, ii->virtual_size,
                   src ? src->img[0].info->virtual_size : ii->virtual_size);
    lost_if_empty(&v);
    return 1;
}

/*
 * bitmap (--merge SOURCE | --add | --remove | --clear | --enable |
 * --disable)... [-b source_file [-F source_fmt]] [-g granularity]
 * [--object objectdef] [--image-opts | -f fmt] filename bitmap
 */
int cmd_bitmap(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"add", no_argument, 0, OPTION_ADD},
        {"remove", no_argument, 0, OPTION_REMOVE},
        {"clear", no_argument, 0, OPTION_CLEAR},
        {"enable", no_argument, 0, OPTION_ENABLE},
        {"disable", no_argument, 0, OPTION_DISABLE},
        {"merge", required_argument, 0, OPTION_MERGE},
        {"granularity", required_argument, 0, 'g'},
        {"source-file", required_argument, 0, 'b'},
        {"source-format", required_argument, 0, 'F'},
        {0, 0, 0, 0},
    };
    struct bitmap_action acts[INSTAR_BITMAP_ACT_MAX];
    const char *fmt = NULL, *src_fmt = NULL, *src_filename = NULL, *filename, *bitmap;
    bool image_opts = false, add = false, merge = false, too_many = false;
    int64_t granularity = 0;
    uint32_t nact = 0;
    struct open_chain oc, soc;
    const char *f;
    int c, ret = 1;

    for (;;) {
        uint8_t act = 0;

        c = cmd_getopt(argc, argv, ":b:f:F:g:h", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'b':
            src_filename = optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'F':
            src_fmt = optarg;
            break;
        case 'g':
            granularity = size_cvtnum("granularity", optarg, 0, INT64_MAX);
            if (granularity < 0)
                return 1;
            break;
        case OPTION_ADD:
            act = INSTAR_BITMAP_ADD;
            add = true;
            break;
        case OPTION_REMOVE:
            act = INSTAR_BITMAP_REMOVE;
            break;
        case OPTION_CLEAR:
            act = INSTAR_BITMAP_CLEAR;
            break;
        case OPTION_ENABLE:
            act = INSTAR_BITMAP_ENABLE;
            break;
        case OPTION_DISABLE:
            act = INSTAR_BITMAP_DISABLE;
            break;
        case OPTION_MERGE:
            act = INSTAR_BITMAP_MERGE;
            merge = true;
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
        }
        if (act) {
            if (nact == INSTAR_BITMAP_ACT_MAX) {
                too_many = true;
                continue;
            }
            acts[nact].act = act;
            acts[nact].src = act == INSTAR_BITMAP_MERGE ? optarg : NULL;
            nact++;
        }
    }

    if (nact == 0) {
        report_error("Need at least one of --add, --remove, --clear, --enable, --disable, or "
                     "--merge");
        return 1;
    }
    if (granularity && !add) {
        report_error("granularity only supported with --add");
        return 1;
    }
    if (src_fmt && !src_filename) {
        report_error("-F only supported with -b");
        return 1;
    }
    if (src_filename && !merge) {
        report_error("Merge bitmap source file only supported with --merge");
        return 1;
    }
    if (optind != argc - 2) {
        report_error("Expecting filename and bitmap name");
        return 1;
    }
    if (too_many) {
        report_error("More than %u actions are not supported by instar", INSTAR_BITMAP_ACT_MAX);
        return 1;
    }
    filename = argv[optind];
    bitmap = argv[optind + 1];

    /* No backing chain: the bitmaps are changed without reference to the data. */
    if (open_chain_arg(&oc, filename, image_opts, fmt, false, OPEN_RDWR | OPEN_NO_BACKING) < 0)
        return 1;
    if (src_filename &&
        open_chain_arg(&soc, src_filename, false, src_fmt, false, OPEN_NO_BACKING) < 0) {
        /* blk_unref() of the image opened read-write: its bitmaps are stored anew. */
        if (!strcmp(oc.img[0].info->format, "qcow2"))
            (void)bitmap_run(&oc, filename, NULL, NULL, acts, 0, bitmap, false, 0);
        open_chain_close(&oc);
        return 1;
    }
    f = oc.img[0].info->format;
    if (!strcmp(f, "qcow2"))
        ret = bitmap_run(&oc, filename, src_filename ? &soc : NULL, src_filename, acts, nact,
                         bitmap, granularity != 0, (uint32_t)granularity);
    else if (!strcmp(f, "raw") || !strcmp(f, "file") || !strcmp(f, "vdi") || !strcmp(f, "qed") ||
             !strcmp(f, "vpc") || !strcmp(f, "vmdk") || !strcmp(f, "parallels") ||
             !strcmp(f, "qcow") || !strcmp(f, "vhdx") || !strcmp(f, "luks"))
        /* No driver but qcow2 stores persistent bitmaps. */
        ret = bitmap_raw(&acts[0], bitmap, granularity != 0, (uint32_t)granularity);
    else {
        report_error("Image format '%s' is not supported by instar", f);
        ret = 1;
    }
    if (src_filename)
        open_chain_close(&soc);
    open_chain_close(&oc);
    return ret;
}
