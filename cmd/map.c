/*
 * qemu-img map: the guest walks the block status of the image's chain
 * (guest/plan_map.c) and streams one record per step; the host merges
 * them and prints the extents as img_map() does (dump_map_entry,
 * entry_mergeable).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "datarun.h"
#include "object.h"
#include "report.h"
#include "size.h"

enum {
    OPTION_OUTPUT = 256,
    OPTION_OBJECT = 257,
    OPTION_IMAGE_OPTS = 258,
};

/*
 * Guest RAM for a walk (sparse: untouched pages cost nothing): an L1
 * table of up to 32 MiB with its byte copy, and the L2 buffers of a chain.
 */
#define MAP_GUEST_MEM (256ULL << 20)

struct map_entry {
    uint64_t start, length, offset;
    uint32_t depth;
    bool data, zero, present, has_offset;
    const char *filename; /* NULL: none */
};

struct map_state {
    const struct graph *gr;
    bool json;
    uint64_t next; /* where the next record must start */
    uint64_t end;  /* the end of the walk */
    struct map_entry curr;
    bool failed;  /* human output met a compressed cluster: print nothing more */
    bool bad;     /* the guest sent an impossible record */
    bool started; /* the header (or '[') is out */
};

/* img_map() prints its header once the image is open: here, at the first record. */
static void map_start(struct map_state *m)
{
    if (m->started)
        return;
    m->started = true;
    if (m->json)
        putchar('[');
    else
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
}

/* dump_map_entry() */
static int dump_entry(struct map_state *m, const struct map_entry *e, struct map_entry *next)
{
    if (!m->json) {
        if (e->data && !e->has_offset) {
            report_error("File contains external, encrypted or compressed clusters.");
            return -1;
        }
        if (e->data && !e->zero)
            printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
                   e->has_offset ? e->offset : 0, e->filename ? e->filename : "");
        if (next && (!next->data || next->zero)) {
            next->data = false;
            next->zero = true;
        }
        return 0;
    }
    printf("{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %" PRIu32
           ", \"present\": %s, \"zero\": %s, \"data\": %s",
           e->start, e->length, e->depth, e->present ? "true" : "false", e->zero ? "true" : "false",
           e->data ? "true" : "false");
    if (e->has_offset)
        printf(", \"offset\": %" PRIu64, e->offset);
    putchar('}');
    if (next)
        puts(",");
    return 0;
}

/* entry_mergeable() */
static bool mergeable(const struct map_entry *c, const struct map_entry *n)
{
    if (c->length == 0)
        return false;
    if (c->zero != n->zero || c->data != n->data || c->depth != n->depth ||
        c->present != n->present || !c->filename != !n->filename || c->has_offset != n->has_offset)
        return false;
    if (c->filename && strcmp(c->filename, n->filename))
        return false;
    if (c->has_offset && c->offset + c->length != n->offset)
        return false;
    return true;
}

static void map_step(struct map_state *m, const struct instar_map_rec *r)
{
    struct map_entry next;
    uint64_t end;

    if (r->start != m->next || r->length == 0 ||
        __builtin_add_overflow(r->start, r->length, &end) || end > m->end ||
        r->depth >= INSTAR_NODE_MAX ||
        ((r->status & INSTAR_BS_OFFSET_VALID) && r->dev != INSTAR_NO_NODE &&
         r->dev >= m->gr->ndevs)) {
        m->bad = true;
        return;
    }
    m->next = end;
    if (m->failed)
        return;
    map_start(m);
    memset(&next, 0, sizeof(next));
    next.start = r->start;
    next.length = r->length;
    next.data = r->status & INSTAR_BS_DATA;
    next.zero = r->status & INSTAR_BS_ZERO;
    next.has_offset = r->status & INSTAR_BS_OFFSET_VALID;
    next.offset = next.has_offset ? r->offset : 0;
    next.depth = r->depth;
    next.present = r->status & INSTAR_BS_ALLOCATED;
    if (next.has_offset && r->dev != INSTAR_NO_NODE)
        next.filename = m->gr->dev_names[r->dev];

    if (mergeable(&m->curr, &next)) {
        m->curr.length += next.length;
        return;
    }
    if (m->curr.length > 0 && dump_entry(m, &m->curr, &next) < 0) {
        m->failed = true;
        return;
    }
    m->curr = next;
}

static int map_report_cb(void *opaque, const void *recs, size_t len)
{
    struct map_state *m = opaque;
    const uint8_t *p = recs;
    size_t i;

    if (len % sizeof(struct instar_map_rec))
        return -1;
    for (i = 0; i < len; i += sizeof(struct instar_map_rec)) {
        struct instar_map_rec r;

        memcpy(&r, p + i, sizeof(r));
        map_step(m, &r);
        if (m->bad)
            return -1;
    }
    return 0;
}

/*
 * qemu-img map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset]
 *              [--max-length=len] [--output=ofmt] [-U] filename
 */
int cmd_map(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"format", required_argument, 0, 'f'},
        {"output", required_argument, 0, OPTION_OUTPUT},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"force-share", no_argument, 0, 'U'},
        {"start-offset", required_argument, 0, 's'},
        {"max-length", required_argument, 0, 'l'},
        {0, 0, 0, 0},
    };
    const char *filename, *fmt = NULL, *output = NULL;
    bool json = false, image_opts = false, force_share = false;
    int64_t start = 0, max_length = -1;
    struct instar_map_args args;
    struct instar_data_result v;
    struct vmm_config cfg;
    struct map_state m;
    struct open_chain oc;
    struct graph gr;
    uint64_t length;
    int c, ret = 1;

    for (;;) {
        c = cmd_getopt(argc, argv, ":f:s:l:hU", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_OUTPUT:
            output = optarg;
            break;
        case 's':
            start = size_cvtnum("start offset", optarg, 0, INT64_MAX);
            if (start < 0)
                return 1;
            break;
        case 'l':
            max_length = size_cvtnum("max length", optarg, 0, INT64_MAX);
            if (max_length < 0)
                return 1;
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
    }
    if (optind != argc - 1)
        return report_usage("Expecting one image file name");
    filename = argv[optind];
    if (cmd_output_json(output, &json) < 0)
        return 1;
    if (open_chain_arg(&oc, filename, image_opts, fmt, force_share, 0) < 0)
        return 1;
    graph_init(&gr);
    memset(&args, 0, sizeof(args));
    if (graph_add_chain(&gr, &oc, filename, &args.top) < 0)
        goto out;
    args.g = gr.g;

    length = (uint64_t)oc.img[0].info->virtual_size;
    if (max_length != -1 && (uint64_t)start + (uint64_t)max_length < length)
        length = (uint64_t)start + (uint64_t)max_length;
    args.start = (uint64_t)start;
    args.end = length;

    memset(&m, 0, sizeof(m));
    m.gr = &gr;
    m.json = json;
    m.next = (uint64_t)start;
    m.end = length;
    m.curr.start = (uint64_t)start;
    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = MAP_GUEST_MEM;
    cfg.report = map_report_cb;
    cfg.report_opaque = &m;
    if (datarun(&cfg, INSTAR_OP_MAP, &args, sizeof(args), &gr, filename, &v) < 0)
        goto out;
    map_start(&m);
    if (m.failed)
        goto out;
    if (v.status == INSTAR_DATA_EMETA) {
        report_error("Could not read file metadata: %s", strerror((int)v.errnum));
        goto out;
    }
    if (v.status != INSTAR_DATA_OK || ((uint64_t)start < length && m.next != length)) {
        report_error("Could not read '%s': sandbox failure: incomplete map", filename);
        goto out;
    }
    if (dump_entry(&m, &m.curr, NULL) < 0)
        goto out;
    if (json)
        puts("]");
    ret = 0;
out:
    open_chain_close(&oc);
    return ret;
}
