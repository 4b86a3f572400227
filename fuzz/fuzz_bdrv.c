/*
 * Fuzz target: the read side of the guest block layer (guest/bdrv.c and
 * its qcow2 driver guest/drv_qcow2.c, compressed clusters through
 * guest/codec.c with the real zlib and zstd), which map, compare,
 * convert, measure, dd and bench run over untrusted images; and
 * guest/plan_map.c's walk.  The guest code runs on the host over
 * fuzz/fake_guest.c (boot info, hypercalls, a capped heap).
 *
 * Input: a qcow2 image (device 0).  If it holds FUZZ_BDRV_SPLIT, the bytes
 * after it are a second device: the external data file when the top's
 * header has the data-file feature bit, else its backing image (qcow2 if
 * it starts with the qcow2 magic, raw otherwise).  Devices are sparse
 * files whose all-zero 4 KiB blocks are holes (SEEK_DATA/SEEK_HOLE and
 * the allocated size, so metadata-preallocation detection runs for real).
 *
 * Per input: open the graph; walk gbs_block_status over each node and
 * gbs_block_status_above over the top, the whole virtual size (at most
 * WALK_STEPS steps a walk); read extents with gbs_pread in CHUNK pieces
 * (a zero extent: its first and last chunks; READ_BUDGET bytes in all); again with the L1 table of
 * each of the first two internal snapshots; then plan_map over the graph.  Invariants (a violation
 * aborts, as a crash):
 *  - every failure is a clean negative return (or, for an open, an error
 *    result), never a crash, a read outside a device or a write;
 *  - pnum > 0 and within the request; EOF exactly when the extent ends at
 *    the node's size; no RAW or RECURSE bit out of the generic layer;
 *    DATA implies ALLOCATED; OFFSET_VALID names a device;
 *  - what block status says, reads give: a ZERO extent (and one
 *    gbs_is_zero_fast calls zero) reads as zeros, a DATA extent with a
 *    valid offset reads as the device's bytes there; reads fill the
 *    whole buffer and give zeros past the end;
 *  - plan_map's records tile [0, min(end, size)) when it succeeds.
 *
 * AFL++ persistent mode by default; with -DFUZZ_STANDALONE it replays the
 * files named on the command line.
 */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bdrv.h"
#include "fake_guest.h"

#define MAX_INPUT (4u << 20)

#define FUZZ_BDRV_SPLIT "FUZZ-BDRV-NEXT!!"
#define SPLIT_LEN       16
#define WALK_STEPS      4096
#define READ_BUDGET     (4u << 20)
#define CHUNK           (48u * 1024 + 512) /* not a cluster multiple: reads start mid-cluster */
#define MAP_END         (16ull << 20)
#define MAP_RECS_MAX    65536

static uint8_t rbuf_[CHUNK], ref[CHUNK];
static uint64_t budget;

/* What the runs covered, printed per input by the standalone driver. */
static struct {
    unsigned opens, open_failures, steps, errors, map_recs;
    uint64_t zero_bytes, data_bytes, other_bytes;
} st;

__attribute__((noreturn, format(printf, 1, 2))) static void bug(const char *fmt, ...);

static void bug(const char *fmt, ...)
{
    va_list ap;

    fputs("fuzz_bdrv: invariant broken: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* An errno the block layer may return. */
static void check_errno(int ret, const char *what, uint64_t off)
{
    if (ret != -GBS_EIO && ret != -GBS_ENOMEM && ret != -GBS_EINVAL)
        bug("%s at %llu returned %d", what, (unsigned long long)off, ret);
}

/* memcmp against zeros: libc's loop, not an instrumented one per byte. */
static bool all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zeros[CHUNK];

    return n <= CHUNK ? !memcmp(p, zeros, n)
                      : !memcmp(p, zeros, CHUNK) && !memcmp(p, p + CHUNK, n - CHUNK);
}

/*
 * Read [off, off + n) of bs in chunks: zeros if zero, else the bytes of
 * device dev at map if dev is set (dev == INSTAR_NO_NODE: only that the
 * read fills its buffer or fails cleanly).  Stops at the first failure.
 */
static void check_reads(struct gbs *bs, uint64_t off, uint64_t n, bool zero, uint32_t dev,
                        uint64_t map, const char *what)
{
    /* A long zero extent: its first and last chunks (a long data extent is read whole). */
    if (zero && n > 2 * CHUNK) {
        check_reads(bs, off, CHUNK, zero, dev, map, what);
        off += n - CHUNK;
        n = CHUNK;
    }
    while (n && budget) {
        size_t c = n < CHUNK ? (size_t)n : CHUNK;
        int ret;

        if (c > budget)
            c = (size_t)budget;
        memset(rbuf_, 0xa5, c);
        ret = gbs_pread(bs, off, rbuf_, c);
        if (ret < 0) {
            check_errno(ret, "gbs_pread", off);
            return;
        }
        if (zero)
            st.zero_bytes += c;
        else if (dev != INSTAR_NO_NODE)
            st.data_bytes += c;
        else
            st.other_bytes += c;
        if (zero && !all_zero(rbuf_, c))
            bug("%s: node %u says [%llu, +%zu) reads as zeros, it does not", what, bs->node,
                (unsigned long long)off, c);
        if (!zero && dev != INSTAR_NO_NODE) {
            fake_read(dev, map, ref, c);
            if (memcmp(rbuf_, ref, c))
                bug("%s: node %u [%llu, +%zu) is not device %u at %llu", what, bs->node,
                    (unsigned long long)off, c, dev, (unsigned long long)map);
            map += c;
        }
        budget -= c;
        off += c;
        n -= c;
    }
}

/* The generic checks of one block status answer for [off, off + bytes) of bs. */
static void check_status(struct gbs *bs, uint64_t off, uint64_t bytes, int ret, uint64_t pnum,
                         uint32_t dev, bool above, const char *what)
{
    if (pnum == 0 || pnum > bytes)
        bug("%s: node %u at %llu: pnum %llu for %llu bytes", what, bs->node,
            (unsigned long long)off, (unsigned long long)pnum, (unsigned long long)bytes);
    if (ret & (INSTAR_BS_RAW | INSTAR_BS_RECURSE))
        bug("%s: node %u at %llu: status %#x", what, bs->node, (unsigned long long)off, ret);
    if ((ret & INSTAR_BS_EOF) && off + pnum != bs->total)
        bug("%s: node %u: EOF at %llu + %llu, size %llu", what, bs->node, (unsigned long long)off,
            (unsigned long long)pnum, (unsigned long long)bs->total);
    if (!above && !(ret & INSTAR_BS_EOF) && off + pnum == bs->total)
        bug("%s: node %u: no EOF at the end", what, bs->node);
    if ((ret & INSTAR_BS_DATA) && !(ret & INSTAR_BS_ALLOCATED))
        bug("%s: node %u at %llu: DATA without ALLOCATED (%#x)", what, bs->node,
            (unsigned long long)off, ret);
    if ((ret & INSTAR_BS_OFFSET_VALID) && dev >= fake_boot()->ndevices)
        bug("%s: node %u at %llu: offset in device %u", what, bs->node, (unsigned long long)off,
            dev);
}

/*
 * Walk [0, bs->total) with gbs_block_status (above: through the chain),
 * checking each answer and reading what it describes.
 */
static void walk(struct gbs *bs, bool above, unsigned nnodes)
{
    const char *what = above ? "gbs_block_status_above" : "gbs_block_status";
    uint64_t off = 0;
    unsigned steps;

    for (steps = 0; off < bs->total && steps < WALK_STEPS; steps++) {
        uint64_t bytes = bs->total - off, pnum = 0, map = 0;
        uint32_t dev = INSTAR_NO_NODE;
        unsigned depth = 0;
        int ret, z;

        if (above) {
            ret = gbs_block_status_above(bs, off, bytes, &pnum, &map, &dev, &depth);
            if (ret >= 0 && (depth < 1 || depth > nnodes))
                bug("%s: depth %u of %u nodes", what, depth, nnodes);
        } else {
            ret = gbs_block_status(bs, true, off, bytes, &pnum, &map, &dev);
        }
        st.steps++;
        if (ret < 0) {
            check_errno(ret, what, off);
            st.errors++;
            return;
        }
        check_status(bs, off, bytes, ret, pnum, dev, above, what);
        if (ret & INSTAR_BS_ZERO)
            check_reads(bs, off, pnum, true, 0, 0, what);
        else if ((ret & INSTAR_BS_DATA) && (ret & INSTAR_BS_OFFSET_VALID))
            check_reads(bs, off, pnum, false, dev, map, what);
        else
            check_reads(bs, off, pnum, false, INSTAR_NO_NODE, 0, what);
        if (above) {
            z = gbs_is_zero_fast(bs, off, pnum);
            if (z < 0)
                check_errno(z, "gbs_is_zero_fast", off);
            else if (z > 1)
                bug("gbs_is_zero_fast returned %d", z);
            else if (z)
                check_reads(bs, off, pnum, true, 0, 0, "gbs_is_zero_fast");
        }
        off += pnum;
    }
}

/* Reads across the end of bs give zeros past it. */
static void check_tail(struct gbs *bs)
{
    uint64_t off = bs->total > 512 ? bs->total - 512 : 0;
    size_t in = (size_t)(bs->total - off);
    int ret;

    memset(rbuf_, 0xa5, 1024);
    ret = gbs_pread(bs, off, rbuf_, 1024);
    if (ret < 0)
        check_errno(ret, "gbs_pread", off);
    else if (!all_zero(rbuf_ + in, 1024 - in))
        bug("gbs_pread: node %u: data past its end", bs->node);
}

/* The graph of the input: node 0 over device 0, then its backing or data file. */
static void graph_of(struct instar_graph *g, const struct fake_dev *d, unsigned ndev)
{
    const uint8_t *h = d[0].p;
    uint64_t incompat = 0;
    int i;

    memset(g, 0, sizeof(*g));
    g->nnodes = 1;
    g->nodes[0] = (struct instar_node){INSTAR_DRV_QCOW2, 0, INSTAR_NO_NODE, INSTAR_NO_NODE};
    if (ndev < 2)
        return;
    if (d[0].len >= 80 && h[4] == 0 && h[5] == 0 && h[6] == 0 && h[7] >= 3)
        for (i = 0; i < 8; i++)
            incompat = incompat << 8 | h[72 + i];
    if (incompat & (1u << 2)) { /* QCOW2_INCOMPAT_DATA_FILE */
        g->nodes[0].data = 1;
        return;
    }
    g->nnodes = 2;
    g->nodes[0].backing = 1;
    g->nodes[1] = (struct instar_node){
        d[1].len >= 4 && !memcmp(d[1].p, "QFI\xfb", 4) ? INSTAR_DRV_QCOW2 : INSTAR_DRV_RAW, 1,
        INSTAR_NO_NODE, INSTAR_NO_NODE};
}

/* Open g (g->snapshot: 0, or an internal snapshot's L1) and walk it; 1 when the open failed. */
static int run_graph(const struct fake_dev *d, unsigned ndev, struct instar_graph *g)
{
    volatile int failed_open = 0;
    uint32_t failed;
    unsigned i;
    int ret;

    fake_guest_start(INSTAR_OP_MAP, d, ndev);
    memset(&gbs_first_corruption, 0, sizeof(gbs_first_corruption));
    if (!setjmp(fake_exit)) {
        ret = gbs_open_graph(g, &failed);
        st.opens++;
        if (ret < 0) {
            st.open_failures++;
            if (failed >= g->nnodes)
                bug("gbs_open_graph failed at node %u of %u", failed, g->nnodes);
            failed_open = 1;
        } else {
            for (i = 0; i < g->nnodes; i++)
                walk(gbs_node(i), false, g->nnodes);
            walk(gbs_node(0), true, g->nnodes);
            check_tail(gbs_node(0));
        }
    } else if (!fake_result.got || fake_result.r.hdr.error <= 0) {
        /* Only a result ends a run: an open failure is an error result. */
        bug("the run ended (%lld) without an error result", (long long)fake_exit_status);
    } else {
        st.opens++;
        st.open_failures++;
        failed_open = 1;
    }
    fake_guest_end();
    return failed_open;
}

/* plan_map's records, in order. */
static uint64_t map_next, map_recs;
static uint32_t map_nnodes;

static int64_t map_report(const void *recs, uint64_t len)
{
    const uint8_t *p = recs;
    struct instar_map_rec r;

    if (len % sizeof(r))
        bug("plan_map: a report of %llu bytes", (unsigned long long)len);
    for (; len; len -= sizeof(r), p += sizeof(r)) {
        memcpy(&r, p, sizeof(r));
        if (r.length == 0 || r.start < map_next || r.start + r.length < r.start ||
            (!fake_boot()->args.map.measure_bits && r.start != map_next))
            bug("plan_map: record [%llu, +%llu) after %llu", (unsigned long long)r.start,
                (unsigned long long)r.length, (unsigned long long)map_next);
        if (r.depth >= map_nnodes || (r.status & (INSTAR_BS_RAW | INSTAR_BS_RECURSE)))
            bug("plan_map: record at %llu: depth %u, status %#x", (unsigned long long)r.start,
                r.depth, r.status);
        if (++map_recs > MAP_RECS_MAX)
            return INSTAR_HC_ETOOBIG; /* the planner must stop cleanly */
        map_next = r.start + r.length;
    }
    return 0;
}

static void run_map(const struct fake_dev *d, unsigned ndev, const struct instar_graph *g,
                    uint32_t measure_bits)
{
    struct instar_map_args *a;
    struct gbs *top;

    fake_guest_start(INSTAR_OP_MAP, d, ndev);
    memset(&gbs_first_corruption, 0, sizeof(gbs_first_corruption));
    a = &fake_boot()->args.map;
    a->g = *g;
    a->top = 0;
    a->measure_bits = measure_bits;
    a->start = 0;
    a->end = MAP_END;
    map_next = map_recs = 0;
    map_nnodes = g->nnodes;
    fake_on_report = map_report;
    if (!setjmp(fake_exit))
        plan_map(); /* ends the run with a result */
    fake_on_report = NULL;
    st.map_recs += (unsigned)map_recs;
    if (!fake_result.got) {
        if (map_recs <= MAP_RECS_MAX)
            bug("plan_map ended (%lld) without a result", (long long)fake_exit_status);
    } else if (fake_result.r.hdr.error == 0 && fake_result.r.status == INSTAR_DATA_OK) {
        top = gbs_node(0);
        if (map_next < (top->total < MAP_END ? top->total : MAP_END) && !measure_bits)
            bug("plan_map: records end at %llu, the image at %llu", (unsigned long long)map_next,
                (unsigned long long)top->total);
    }
    fake_guest_end();
}

static int run(const uint8_t *data, size_t len)
{
    struct fake_dev d[2] = {{data, len}, {NULL, 0}};
    struct instar_graph g;
    const uint8_t *s = memmem(data, len, FUZZ_BDRV_SPLIT, SPLIT_LEN);
    unsigned ndev = 1, n;

    if (s) {
        d[0].len = (size_t)(s - data);
        d[1].p = s + SPLIT_LEN;
        d[1].len = len - d[0].len - SPLIT_LEN;
        ndev = 2;
    }
    budget = READ_BUDGET;
    memset(&st, 0, sizeof(st));
    graph_of(&g, d, ndev);
    /* The first two internal snapshots, while there are (a missing one fails the open). */
    for (n = 0; n <= 2; n++) {
        g.snapshot = n;
        if (run_graph(d, ndev, &g))
            break;
    }
    g.snapshot = 0;
    /* map's walk, or measure's (cluster sizes 2^9..2^21) for odd lengths. */
    run_map(d, ndev, &g, len & 1 ? 9 + (uint32_t)(len >> 1) % 13 : 0);
#ifdef FUZZ_STANDALONE
    printf("opens %u (%u failed), %u steps (%u failed), read %llu zero, %llu device, %llu other, "
           "%u map records\n",
           st.opens, st.open_failures, st.steps, st.errors, (unsigned long long)st.zero_bytes,
           (unsigned long long)st.data_bytes, (unsigned long long)st.other_bytes, st.map_recs);
#endif
    return 0;
}

#include "fuzz_main.h"
