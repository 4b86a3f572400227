/*
 * The map planner: qemu-img map's get_block_status() loop over the top
 * node, each step streamed to the host as a struct instar_map_rec (the
 * host merges and prints them as img_map() does).  qemu-img measure uses
 * the same walk with qcow2_measure()'s steps (measure_bits, abi.h).
 */
#include "bdrv.h"

#define MAP_BATCH (INSTAR_REPORT_MAX / sizeof(struct instar_map_rec))

static struct instar_map_rec batch[MAP_BATCH];
static size_t nbatch;

static void emit(const struct instar_map_rec *r)
{
    batch[nbatch++] = *r;
    if (nbatch == MAP_BATCH) {
        if (hc_report(batch, sizeof(batch)) < 0)
            hc_exit(-1);
        nbatch = 0;
    }
}

void plan_map(void)
{
    struct instar_map_args a = boot->args.map;
    struct gbs *top;
    uint64_t off, end;

    gbs_open_or_fail(INSTAR_OP_MAP, &a.g);
    top = gbs_node(a.top);
    if (!top || (a.measure_bits && (a.measure_bits < INSTAR_MAP_MEASURE_BITS_MIN ||
                                    a.measure_bits > INSTAR_MAP_MEASURE_BITS_MAX)))
        result_error(INSTAR_OP_MAP, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    end = a.end < top->total ? a.end : top->total;
    for (off = a.start; off < end;) {
        struct instar_map_rec r = {.start = off};
        struct gbs *bs = top;
        uint64_t bytes = end - off, map = 0;
        uint32_t dev = INSTAR_NO_NODE;
        int ret;

        for (;;) {
            ret = gbs_block_status(bs, true, off, bytes, &bytes, &map, &dev);
            if (ret < 0) {
                if (nbatch && hc_report(batch, nbatch * sizeof(batch[0])) < 0)
                    hc_exit(-1);
                nbatch = 0;
                gbs_send(INSTAR_OP_MAP, INSTAR_DATA_EMETA, (uint32_t)-ret, off, 0, 0);
            }
            if (ret & (INSTAR_BS_ZERO | INSTAR_BS_DATA))
                break;
            bs = bs->backing;
            if (!bs) {
                ret = 0;
                break;
            }
            r.depth++;
        }
        r.length = bytes;
        r.status = (uint32_t)ret;
        if (ret & INSTAR_BS_OFFSET_VALID) {
            r.offset = map;
            r.dev = dev;
        } else {
            r.dev = INSTAR_NO_NODE;
        }
        emit(&r);
        off += bytes;
        /*
         * qcow2_measure() counts a data extent to the end of its last
         * cluster and asks next at that boundary (or stops at the end).
         */
        if (a.measure_bits && (ret & INSTAR_BS_DATA) && (ret & INSTAR_BS_ALLOCATED) &&
            !(ret & INSTAR_BS_ZERO)) {
            uint64_t rest = -off & (((uint64_t)1 << a.measure_bits) - 1);

            off = rest >= end - off ? end : off + rest;
        }
    }
    if (nbatch && hc_report(batch, nbatch * sizeof(batch[0])) < 0)
        hc_exit(-1);
    nbatch = 0;
    gbs_send(INSTAR_OP_MAP, INSTAR_DATA_OK, 0, 0, 0, 0);
}
