/*
 * formats/qcow2/measure.c against qemu-img measure itself: the sizes it
 * prints for --size over cluster sizes, refcount widths, extended L2
 * entries and preallocation modes; the data a source needs, fed with the
 * extents `qemu-img map --output=json` reports for images made by qemu-io;
 * the bitmaps size of an image with persistent bitmaps.  The walk's
 * independence of how extents are split, and the option checks' order,
 * are checked by hand.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "measure.h"
#include "prealloc.h"
#include "test_sh.h"

/* A directory per test (criterion runs tests in parallel processes). */
static char DIR[64];

/* The two (or three) numbers of `qemu-img measure` human output. */
struct qm {
    uint64_t required, fully, bitmaps;
    bool has_bitmaps;
};

static struct qm qemu_measure(const char *args)
{
    struct qm m = {0};
    char *out = sh_out("cd %s && qemu-img measure %s 2>&1", DIR, args);
    const char *b;

    cr_assert(sscanf(out, "required size: %" SCNu64 "\nfully allocated size: %" SCNu64, &m.required,
                     &m.fully) == 2,
              "qemu-img measure %s: %s", args, out);
    b = strstr(out, "bitmaps size: ");
    if (b) {
        m.has_bitmaps = true;
        cr_assert(sscanf(b, "bitmaps size: %" SCNu64, &m.bitmaps) == 1);
    }
    free(out);
    return m;
}

static void setup(void)
{
    strcpy(DIR, "/tmp/instar-test-measure-XXXXXX");
    cr_assert_not_null(mkdtemp(DIR));
}

static void teardown(void)
{
    sh("rm -rf %s", DIR);
}

static uint64_t round_up(uint64_t n, uint64_t d)
{
    return (n + d - 1) / d * d;
}

/* What cmd/measure.c computes for --size (no source). */
static void ours(uint64_t size, uint64_t cs, uint64_t rb, bool extl2, int prealloc, uint64_t *req,
                 uint64_t *fully)
{
    uint64_t vs = round_up(size, cs);

    *fully = qcow2_measure_prealloc_size(vs, cs, rb, extl2);
    *req = *fully - vs +
           (prealloc == QCOW2_PREALLOC_FULL || prealloc == QCOW2_PREALLOC_FALLOC ? vs : 0);
}

Test(measure, size_grid, .init = setup, .fini = teardown)
{
    static const uint64_t sizes[] = {0, 1000, 1 << 20, 3ull << 30, 1ull << 40};
    static const char *const pa[] = {"off", "metadata", "falloc", "full"};

    for (unsigned cb = 9; cb <= 21; cb++) {
        for (int x = 0; x < 2; x++) {
            uint64_t cs = 1ull << cb;

            if (x && cs < 16384)
                continue;
            for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                struct qcow2_measure_opts o = {cs, x, 3, 16, 0, false};
                char args[256];
                uint64_t req, fully;
                int p = (cb + i) % 4;

                if (qcow2_measure_check_size(&o, sizes[i]) != QCOW2_MEASURE_OK)
                    continue;
                snprintf(args, sizeof(args),
                         "-O qcow2 -o cluster_size=%" PRIu64 ",extended_l2=%s,preallocation=%s "
                         "--size %" PRIu64,
                         cs, x ? "on" : "off", pa[p], sizes[i]);
                struct qm m = qemu_measure(args);
                ours(sizes[i], cs, 16, x, p, &req, &fully);
                cr_expect_eq(fully, m.fully, "%s: fully %" PRIu64 " != %" PRIu64, args, fully,
                             m.fully);
                cr_expect_eq(req, m.required, "%s: required %" PRIu64 " != %" PRIu64, args, req,
                             m.required);
            }
        }
    }
}

Test(measure, refcount_widths, .init = setup, .fini = teardown)
{
    for (uint64_t rb = 1; rb <= 64; rb *= 2) {
        for (unsigned cb = 9; cb <= 21; cb += 4) {
            uint64_t cs = 1ull << cb, req, fully, size = 5ull << 30;
            char args[256];

            snprintf(args, sizeof(args),
                     "-O qcow2 -o cluster_size=%" PRIu64 ",refcount_bits=%" PRIu64
                     " --size %" PRIu64,
                     cs, rb, size);
            struct qm m = qemu_measure(args);
            ours(size, cs, rb, false, 0, &req, &fully);
            cr_expect_eq(fully, m.fully, "%s", args);
            cr_expect_eq(req, m.required, "%s", args);
        }
    }
}

Test(measure, too_large)
{
    struct qcow2_measure_opts o = {65536, false, 3, 16, 0, false};

    /* 32 MiB of L1 entries, 8192 L2 entries each: 2^22 * 2^13 * 2^16 bytes. */
    cr_expect_eq(qcow2_measure_check_size(&o, 1ull << 51), QCOW2_MEASURE_OK);
    cr_expect_eq(qcow2_measure_check_size(&o, (1ull << 51) + 1), QCOW2_MEASURE_ETOO_LARGE);
    o.extended_l2 = true;
    cr_expect_eq(qcow2_measure_check_size(&o, 1ull << 51), QCOW2_MEASURE_ETOO_LARGE);
    cr_expect_eq(qcow2_measure_check_size(&o, 1ull << 50), QCOW2_MEASURE_OK);
    /* Rounding up to the cluster size wraps, as QEMU's uint64_t does. */
    o.extended_l2 = false;
    cr_expect_eq(qcow2_measure_check_size(&o, UINT64_MAX), QCOW2_MEASURE_OK);
    cr_expect_eq(qcow2_measure_check_size(&o, INT64_MAX), QCOW2_MEASURE_ETOO_LARGE);
}

Test(measure, option_order)
{
    struct qcow2_measure_opts o = {3000, true, 0, 3, -1, false};

    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_ECLUSTER_SIZE);
    o.cluster_size = 4096;
    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_EEXTL2_CLUSTER);
    o.cluster_size = 16384;
    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_ECOMPAT);
    o.version = 2;
    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_EREFCOUNT_BITS);
    o.refcount_bits = 0;
    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_EREFCOUNT_BITS);
    o.refcount_bits = 128;
    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_EREFCOUNT_BITS);
    o.refcount_bits = 8;
    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_EREFCOUNT_V2);
    o.refcount_bits = 16;
    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_EPREALLOC);
    o.prealloc = QCOW2_PREALLOC_FULL;
    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_OK);
    o.cluster_size = 1ull << 32 | 512; /* not a power of two once QEMU truncates it either */
    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_ECLUSTER_SIZE);
    o.cluster_size = 4u << 20;
    cr_expect_eq(qcow2_measure_check_opts(&o), QCOW2_MEASURE_ECLUSTER_SIZE);
}

Test(measure, luks_header)
{
    /* aes-256-xts (64-byte master key), qemu-img's default: 2 MiB less 28 KiB. */
    cr_expect_eq(qcow2_measure_luks_header(64), 2068480);
    /* aes-128-xts: key material of 32 x 4000 bytes = 250 sectors, 256 once aligned. */
    cr_expect_eq(qcow2_measure_luks_header(32), (8 + 8 * 256) * 512);
}

/* One extent list in, the count out; extents: {start, len, zero, data}. */
struct ext {
    uint64_t start, len;
    bool zero, data;
};

static uint64_t walk(const struct ext *e, unsigned n, uint64_t cs)
{
    struct qcow2_measure_walk w;

    qcow2_measure_walk_init(&w, cs);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(qcow2_measure_walk_extent(&w, e[i].start, e[i].len, e[i].zero, e[i].data), 0);
    return w.required;
}

Test(measure, walk_by_hand)
{
    /* Data in the middle of a cluster counts the whole cluster, once. */
    const struct ext a[] = {
        {0, 100, true, false},     {100, 100, false, true},
        {200, 100, true, false},   {300, 100, false, true},
        {400, 65136, true, false}, {65536, 65536, false, false}, /* neither: counts nothing */
        {131072, 1, false, true},
    };
    cr_expect_eq(walk(a, 7, 65536), 2 * 65536);
    /* With 512-byte clusters each piece is its own cluster. */
    cr_expect_eq(walk(a, 7, 512), 512 + 512);
    /* A zero extent wins over data: skipped. */
    const struct ext b[] = {{0, 4096, true, true}};
    cr_expect_eq(walk(b, 1, 512), 0);
}

Test(measure, walk_split_invariant)
{
    /* Splitting extents anywhere gives the same count. */
    const struct ext whole[] = {
        {0, 70000, false, true},         {70000, 60000, true, false}, {130000, 3000, false, true},
        {133000, 1000000, false, false}, {1133000, 5, false, true},
    };
    uint64_t want = walk(whole, 5, 65536);

    for (uint64_t step = 1000; step < 200000; step += 7777) {
        struct qcow2_measure_walk w;

        qcow2_measure_walk_init(&w, 65536);
        for (unsigned i = 0; i < 5; i++) {
            for (uint64_t o = 0; o < whole[i].len; o += step) {
                uint64_t n = whole[i].len - o < step ? whole[i].len - o : step;

                cr_assert_eq(qcow2_measure_walk_extent(&w, whole[i].start + o, n, whole[i].zero,
                                                       whole[i].data),
                             0);
            }
        }
        cr_expect_eq(w.required, want, "step %" PRIu64, step);
    }
    /* Clusters 0 and 1, 2 (from 131072: 130000 lies in cluster 1, counted), 17. */
    cr_expect_eq(want, 4 * 65536);
}

Test(measure, walk_rejects)
{
    struct qcow2_measure_walk w;

    qcow2_measure_walk_init(&w, 512);
    cr_expect_eq(qcow2_measure_walk_extent(&w, 1, 1, false, true), -1); /* a gap */
    cr_expect_eq(qcow2_measure_walk_extent(&w, 0, 0, false, true), -1); /* empty */
    cr_expect_eq(qcow2_measure_walk_extent(&w, 0, UINT64_MAX, false, false), 0);
    cr_expect_eq(qcow2_measure_walk_extent(&w, UINT64_MAX, 1, false, true), -1); /* wraps */
    cr_expect_eq(w.required, 0);

    /* A reporter stepping as QEMU does resumes at the cluster boundary, not elsewhere. */
    qcow2_measure_walk_init(&w, 65536);
    cr_expect_eq(qcow2_measure_walk_extent(&w, 0, 100, false, true), 0);
    cr_expect_eq(qcow2_measure_walk_extent(&w, 200, 100, false, true), -1);
    cr_expect_eq(qcow2_measure_walk_extent(&w, 65536, 100, true, false), 0);
    cr_expect_eq(qcow2_measure_walk_extent(&w, 70000, 100, true, false), -1);
    cr_expect_eq(qcow2_measure_walk_extent(&w, 65636, 100, false, true), 0);
    cr_expect_eq(w.required, 2 * 65536);
}

/*
 * Feed the walk with `qemu-img map --output=json` of img: its entries are
 * the per-layer block status qemu-img measure walks (zero, or data and
 * present).  Returns the data bytes counted for a target cluster size cs.
 */
static uint64_t walk_map(const char *img, uint64_t cs)
{
    char *out = sh_out("cd %s && qemu-img map --output=json %s", DIR, img);
    struct qcow2_measure_walk w;
    const char *p = out;

    qcow2_measure_walk_init(&w, cs);
    while ((p = strstr(p, "{ \"start\": ")) != NULL) {
        uint64_t start, len;
        char present[8], zero[8], data[8];
        unsigned depth;

        cr_assert(sscanf(p,
                         "{ \"start\": %" SCNu64 ", \"length\": %" SCNu64 ", \"depth\": %u"
                         ", \"present\": %7[a-z], \"zero\": %7[a-z], \"data\": %7[a-z]",
                         &start, &len, &depth, present, zero, data) == 6,
                  "%s", p);
        cr_assert_eq(qcow2_measure_walk_extent(&w, start, len, !strcmp(zero, "true"),
                                               !strcmp(data, "true") && !strcmp(present, "true")),
                     0);
        p++;
    }
    free(out);
    return w.required;
}

Test(measure, walk_vs_qemu, .init = setup, .fini = teardown)
{
    cr_assert(sh("cd %s && qemu-img create -q -f qcow2 -o cluster_size=4k b.qcow2 8M && "
                 "qemu-io -f qcow2 -c 'write -P 1 0 5k' -c 'write -P 2 100k 1k' "
                 "-c 'write -z 200k 64k' -c 'write -P 3 1M 300k' -c 'write -c -P 4 3M 64k' "
                 "b.qcow2 >/dev/null && "
                 "qemu-img create -q -f qcow2 -o cluster_size=512 -b b.qcow2 -F qcow2 t.qcow2 && "
                 "qemu-io -f qcow2 -c 'write -P 5 5k 1536' -c 'write -z 1100k 4k' "
                 "-c 'write -P 6 7M 512' t.qcow2 >/dev/null",
                 DIR) == 0);
    for (unsigned cb = 9; cb <= 21; cb += 2) {
        uint64_t cs = 1ull << cb, fully, vs = round_up(8 << 20, cs);
        char args[128];

        snprintf(args, sizeof(args), "-O qcow2 -o cluster_size=%" PRIu64 " t.qcow2", cs);
        struct qm m = qemu_measure(args);
        fully = qcow2_measure_prealloc_size(vs, cs, 16, false);
        cr_expect_eq(m.fully, fully, "%s", args);
        cr_expect_eq(m.required, fully - vs + walk_map("t.qcow2", cs), "%s", args);
    }
}

Test(measure, bitmaps_vs_qemu, .init = setup, .fini = teardown)
{
    static const struct {
        const char *name;
        uint64_t gran;
    } bm[] = {{"b0", 65536}, {"a-longer-name-for-the-directory", 512}, {"m", 1 << 20}};
    uint64_t size = 100000256;

    cr_assert(sh("cd %s && qemu-img create -q -f qcow2 s.qcow2 %" PRIu64, DIR, size) == 0);
    for (unsigned i = 0; i < 3; i++)
        cr_assert(sh("cd %s && qemu-img bitmap --add -g %" PRIu64 " s.qcow2 %s", DIR, bm[i].gran,
                     bm[i].name) == 0);
    for (unsigned cb = 9; cb <= 21; cb += 3) {
        struct qcow2_measure_bitmaps b;
        char args[128];

        qcow2_measure_bitmaps_init(&b, 1ull << cb);
        for (unsigned i = 0; i < 3; i++)
            cr_assert_eq(qcow2_measure_bitmaps_add(&b, size, bm[i].gran, strlen(bm[i].name)), 0);
        snprintf(args, sizeof(args), "-O qcow2 -o cluster_size=%llu s.qcow2", 1ull << cb);
        struct qm m = qemu_measure(args);
        cr_assert(m.has_bitmaps, "%s", args);
        cr_expect_eq(qcow2_measure_bitmaps_total(&b), m.bitmaps, "%s", args);
    }
    struct qcow2_measure_bitmaps b;
    qcow2_measure_bitmaps_init(&b, 512);
    cr_expect_eq(qcow2_measure_bitmaps_add(&b, size, 0, 1), -1);
    cr_expect_eq(qcow2_measure_bitmaps_total(&b), 0);
}
