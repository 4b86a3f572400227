/*
 * formats/qcow2/alloc.c over an in-memory file, checked against what QEMU
 * itself does to the same image.  Each test starts from an image made by
 * the oracle (qemu-img create), replays through the allocator the sequence
 * of allocations QEMU's write path makes for a qemu-io command list, and
 * compares: the offsets chosen with the L1/L2 entries of the file qemu-io
 * produced from the same start, the refcount table placement with its
 * header, and the refcount of every host cluster with the refcounts read
 * back from qemu-io's file (through a second allocator).  Compressed
 * clusters (qcow2_alloc_bytes, and prealloc.c's
 * qcow2_prealloc_write_compressed on top of it) replay qemu-io's `write -c`
 * with the sizes our zlib/zstd give, and must leave qemu-io's file byte for
 * byte.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "codec.h"
#include "prealloc.h"
#include "qcow2_test_util.h"
#include "test_sh.h"

static const struct qcow2_alloc_ops mops = {memfile_read, memfile_write, memfile_mem,
                                            memfile_discard, NULL};

/* The working copy of an image: the bytes, and an allocator over them. */
struct wimg {
    struct memfile f;
    struct qcow2_alloc a;
    uint32_t cb;
};

static void wimg_open(struct wimg *w, const uint8_t *bytes, size_t len)
{
    memset(w, 0, sizeof(*w));
    memfile_copy(&w->f, bytes, len);
    w->cb = (uint32_t)get_be(bytes, 20, 4);
    /* Version 2 headers end before refcount_order: 16-bit refcounts. */
    cr_assert_eq(qcow2_alloc_init(&w->a, &mops, &w->f, w->cb,
                                  get_be(bytes, 4, 4) >= 3 ? (uint32_t)get_be(bytes, 96, 4) : 4,
                                  get_be(bytes, 48, 8), get_be(bytes, 56, 4)),
                 0);
}

static void wimg_close(struct wimg *w)
{
    qcow2_alloc_release(&w->a);
    free(w->f.p);
}

/* Make an image with qemu-img (and optionally change it with qemu-io). */
static struct img oracle(const char *opts, const char *size, const char *io)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 -o %s x.qcow2 %s%s%s", opts, size,
             io ? " && qemu-io " : "", io ? io : "");
    if (io)
        strncat(cmd, " x.qcow2", sizeof(cmd) - strlen(cmd) - 1);
    struct img im = img_make(cmd, "x.qcow2");
    /* img_make frees the previous image on its next call: keep a copy. */
    uint8_t *copy = malloc(im.len);
    cr_assert_not_null(copy);
    memcpy(copy, im.p, im.len);
    im.p = copy;
    return im;
}

/* The host offset qemu-io's file maps guest_offset to (0: unallocated). */
static uint64_t mapped(const struct img *im, uint64_t guest_offset)
{
    uint32_t cb = (uint32_t)get_be(im->p, 20, 4);
    uint64_t l2_entries = (1ull << cb) / 8, mask = 0x00fffffffffffe00ull;
    uint64_t l1 = get_be(im->p, 40, 8), l1i = (guest_offset >> cb) / l2_entries;
    uint64_t l2 = get_be(im->p, l1 + l1i * 8, 8) & mask;

    if (!l2)
        return 0;
    return get_be(im->p, l2 + ((guest_offset >> cb) % l2_entries) * 8, 8) & mask;
}

static uint64_t l2_of(const struct img *im, uint64_t guest_offset)
{
    uint32_t cb = (uint32_t)get_be(im->p, 20, 4);
    uint64_t l1i = (guest_offset >> cb) / ((1ull << cb) / 8);

    return get_be(im->p, get_be(im->p, 40, 8) + l1i * 8, 8) & 0x00fffffffffffe00ull;
}

/*
 * Every host cluster's refcount, the refcount table's place and the bytes
 * of the table and of every refcount block: ours vs qemu's file.
 */
static void assert_same_refcounts(struct wimg *w, const struct img *q)
{
    struct wimg qw;
    uint64_t cs = 1ull << w->cb, n = (q->len + cs - 1) / cs + 64;

    cr_assert_eq(qcow2_alloc_flush(&w->a), 0);
    cr_assert_eq(get_be(w->f.p, 48, 8), get_be(q->p, 48, 8), "refcount table offset");
    cr_assert_eq(get_be(w->f.p, 56, 4), get_be(q->p, 56, 4), "refcount table clusters");
    wimg_open(&qw, q->p, q->len);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t mine, theirs;

        cr_assert_eq(qcow2_alloc_get_refcount(&w->a, i, &mine), 0);
        cr_assert_eq(qcow2_alloc_get_refcount(&qw.a, i, &theirs), 0);
        cr_assert_eq(mine, theirs, "cluster %llu: refcount %llu, qemu %llu", (unsigned long long)i,
                     (unsigned long long)mine, (unsigned long long)theirs);
    }
    cr_assert_eq(w->a.reftable_size, qw.a.reftable_size);
    for (uint64_t i = 0; i < qw.a.reftable_size; i++) {
        uint64_t rb = qw.a.reftable[i];

        cr_assert_eq(w->a.reftable[i], rb, "reftable[%llu]", (unsigned long long)i);
        if (rb)
            cr_assert_eq(memcmp(w->f.p + rb, q->p + rb, cs), 0, "refcount block at %llu",
                         (unsigned long long)rb);
    }
    cr_assert_eq(
        memcmp(w->f.p + w->a.reftable_offset, q->p + qw.a.reftable_offset, qw.a.reftable_size * 8),
        0, "refcount table bytes");
    wimg_close(&qw);
}

/*
 * QEMU's allocation order for a cluster-aligned write of len bytes at 0
 * into an empty image: per L2 slice, the L2 table (l2_allocate), then the
 * slice's data clusters in one qcow2_alloc_clusters().  Checks each offset
 * against qemu-io's result.
 */
static void replay_write(struct wimg *w, const struct img *q, uint64_t len)
{
    uint64_t cs = 1ull << w->cb, per_l2 = cs / 8 * cs;

    for (uint64_t g = 0; g < len; g += per_l2) {
        uint64_t n = len - g < per_l2 ? len - g : per_l2;
        int64_t l2 = qcow2_alloc_clusters(&w->a, cs);
        int64_t data = qcow2_alloc_clusters(&w->a, n);

        cr_assert_eq((uint64_t)l2, l2_of(q, g), "L2 for guest %llu: %lld, qemu %llu",
                     (unsigned long long)g, (long long)l2, (unsigned long long)l2_of(q, g));
        cr_assert_eq((uint64_t)data, mapped(q, g), "data for guest %llu: %lld, qemu %llu",
                     (unsigned long long)g, (long long)data, (unsigned long long)mapped(q, g));
    }
}

static void growth_case(const char *bits, const char *write_len, uint64_t len, bool grows)
{
    char opts[128], io[128];
    struct img base, after;
    struct wimg w;

    snprintf(opts, sizeof(opts), "cluster_size=512,refcount_bits=%s", bits);
    snprintf(io, sizeof(io), "-c 'write 0 %s'", write_len);
    base = oracle(opts, "8M", NULL);
    after = oracle(opts, "8M", io);
    wimg_open(&w, base.p, base.len);
    replay_write(&w, &after, len);
    assert_same_refcounts(&w, &after);
    /* The table moved iff qemu moved it. */
    cr_assert_eq(get_be(after.p, 48, 8) != get_be(base.p, 48, 8), grows);
    wimg_close(&w);
    free(base.p);
    free(after.p);
}

/* One refcount block covers 2 MiB: the second one describes itself. */
Test(qcow2_alloc, self_describing_refblock_1bit)
{
    growth_case("1", "3M", 3 << 20, false);
}

/* 64 blocks of 64 entries cover 2 MiB: the table grows past them. */
Test(qcow2_alloc, reftable_growth_64bit)
{
    growth_case("64", "3M", 3 << 20, true);
}

Test(qcow2_alloc, reftable_growth_32bit)
{
    growth_case("32", "5M", 5 << 20, true);
}

Test(qcow2_alloc, reftable_growth_4bit)
{
    growth_case("4", "1M", 1 << 20, false);
}

/* A free lowers free_cluster_index: the next data cluster reuses the hole. */
Test(qcow2_alloc, free_lowers_scan_start)
{
    struct img base = oracle("cluster_size=64k", "4M", NULL);
    struct img after = oracle("cluster_size=64k", "4M",
                              "-c 'write 0 64k' -c 'write 64k 64k' -c 'discard 0 64k' "
                              "-c 'write 1M 64k'");
    struct wimg w;
    int64_t l2, d0, d1, d2;

    wimg_open(&w, base.p, base.len);
    l2 = qcow2_alloc_clusters(&w.a, 65536);
    d0 = qcow2_alloc_clusters(&w.a, 65536);
    d1 = qcow2_alloc_clusters(&w.a, 65536);
    cr_assert_eq((uint64_t)l2, l2_of(&after, 0));
    cr_assert_eq((uint64_t)d1, mapped(&after, 65536));
    cr_assert_eq(qcow2_alloc_free(&w.a, (uint64_t)d0, 65536, true), 0);
    cr_assert_eq(w.f.discards, 1, "the freed cluster is discarded");
    cr_assert_eq(w.a.free_cluster_index, (uint64_t)d0 >> 16);
    d2 = qcow2_alloc_clusters(&w.a, 65536);
    cr_assert_eq(d2, d0);
    cr_assert_eq((uint64_t)d2, mapped(&after, 1 << 20));
    assert_same_refcounts(&w, &after);
    wimg_close(&w);
    free(base.p);
    free(after.p);
}

/*
 * At 1-bit width a second reference overflows: the update fails with
 * -EINVAL and the clusters already raised are lowered again, so the
 * refcounts are qemu's file's unchanged; the undo also lowers the scan
 * start, so the next allocation takes the hole as qemu-io's next write did.
 */
Test(qcow2_alloc, overflow_undo_1bit)
{
    const char *o = "refcount_bits=1";
    struct img holed = oracle(o, "4M", "-c 'write 0 64k' -c 'write 64k 64k' -c 'discard 0 64k'");
    struct img after =
        oracle(o, "4M", "-c 'write 0 64k' -c 'write 64k 64k' -c 'discard 0 64k' -c 'write 1M 64k'");
    uint64_t hole = mapped(&after, 1 << 20), used = mapped(&holed, 65536), rc;
    struct wimg w;

    cr_assert_eq(used, hole + 65536, "qemu left a hole just before a used cluster");
    wimg_open(&w, holed.p, holed.len);
    w.a.free_cluster_index = (used >> 16) + 1;
    cr_assert_eq(qcow2_alloc_update(&w.a, hole, 2 * 65536, 1, false), -QCOW2_ALLOC_EINVAL);
    cr_assert_eq(qcow2_alloc_get_refcount(&w.a, hole >> 16, &rc), 0);
    cr_assert_eq(rc, 0, "the raised cluster was lowered again");
    cr_assert_eq(qcow2_alloc_get_refcount(&w.a, used >> 16, &rc), 0);
    cr_assert_eq(rc, 1);
    /* Underflow of a free cluster fails too, changing nothing. */
    cr_assert_eq(qcow2_alloc_update(&w.a, hole, 65536, 1, true), -QCOW2_ALLOC_EINVAL);
    cr_assert_eq(w.a.free_cluster_index, hole >> 16);
    cr_assert_eq(qcow2_alloc_flush(&w.a), 0);
    cr_assert_eq(w.f.len, holed.len);
    cr_assert_eq(memcmp(w.f.p, holed.p, holed.len), 0, "the file is qemu's, unchanged");
    cr_assert_eq((uint64_t)qcow2_alloc_clusters(&w.a, 65536), hole);
    assert_same_refcounts(&w, &after);
    wimg_close(&w);
    free(holed.p);
    free(after.p);
}

/* qcow2_alloc_clusters_at takes free clusters up to the first used one. */
Test(qcow2_alloc, alloc_at_stops_at_used)
{
    struct img holed =
        oracle("cluster_size=64k", "4M", "-c 'write 0 64k' -c 'write 64k 64k' -c 'discard 0 64k'");
    uint64_t used = mapped(&holed, 65536), hole = used - 65536, rc;
    struct wimg w;

    wimg_open(&w, holed.p, holed.len);
    cr_assert_eq(qcow2_alloc_clusters_at(&w.a, used, 2), 0);
    cr_assert_eq(qcow2_alloc_clusters_at(&w.a, hole, 4), 1);
    cr_assert_eq(qcow2_alloc_get_refcount(&w.a, hole >> 16, &rc), 0);
    cr_assert_eq(rc, 1);
    cr_assert_eq(qcow2_alloc_clusters_at(&w.a, used + 65536, 3), 3);
    wimg_close(&w);
    free(holed.p);
}

/* A failed write is returned, not ignored. */
Test(qcow2_alloc, write_error_propagates)
{
    struct img base = oracle("cluster_size=512,refcount_bits=1", "8M", NULL);
    struct wimg w;
    int64_t r = 0;

    wimg_open(&w, base.p, base.len);
    w.f.fail_at = 0;
    /* Enough clusters to need a second refcount block (written at once). */
    for (int i = 0; i < 5000 && r >= 0; i++)
        r = qcow2_alloc_clusters(&w.a, 512);
    if (r >= 0)
        r = qcow2_alloc_flush(&w.a);
    cr_assert_eq(r, -5);
    wimg_close(&w);
    free(base.p);
}

/*
 * An unaligned refcount block offset is corruption: -EIO with the offset
 * and table index that qemu-io prints when it marks the image corrupt.
 */
Test(qcow2_alloc, unaligned_refblock_is_corrupt)
{
    struct img base = oracle("cluster_size=64k", "4M", NULL);
    uint64_t rt = get_be(base.p, 48, 8), rb = get_be(base.p, rt, 8);
    char expect[160], *out;
    struct wimg w;
    uint64_t rc;

    PUT64(base, rt, rb + 512);
    {
        char dir[] = "/tmp/instar-ut-XXXXXX";
        char path[64];
        FILE *f;

        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/c.qcow2", dir);
        f = fopen(path, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(base.p, 1, base.len, f), base.len);
        fclose(f);
        out = sh_out("qemu-io -c 'write 0 64k' %s 2>&1; rm -rf %s", path, dir);
    }
    wimg_open(&w, base.p, base.len);
    cr_assert_eq(qcow2_alloc_get_refcount(&w.a, 0, &rc), -QCOW2_ALLOC_EIO);
    cr_assert_eq(w.a.corrupt, QCOW2_ALLOC_CORRUPT_REFBLOCK_UNALIGNED);
    snprintf(expect, sizeof(expect), "Refblock offset %#llx unaligned (reftable index: %#llx)",
             (unsigned long long)w.a.corrupt_args[0], (unsigned long long)w.a.corrupt_args[1]);
    cr_assert_not_null(strstr(out, expect), "qemu-io said: %s\nexpected: %s", out, expect);
    cr_assert_lt(qcow2_alloc_clusters(&w.a, 65536), 0);
    free(out);
    wimg_close(&w);
    free(base.p);
}

/* Geometry the header parse would have refused is refused here too. */
Test(qcow2_alloc, init_rejects_bad_geometry)
{
    struct qcow2_alloc a;

    cr_assert_eq(qcow2_alloc_init(&a, &mops, NULL, 8, 4, 0, 1), -QCOW2_ALLOC_EINVAL);
    cr_assert_eq(qcow2_alloc_init(&a, &mops, NULL, 22, 4, 0, 1), -QCOW2_ALLOC_EINVAL);
    cr_assert_eq(qcow2_alloc_init(&a, &mops, NULL, 16, 7, 0, 1), -QCOW2_ALLOC_EINVAL);
    cr_assert_eq(qcow2_alloc_init(&a, &mops, NULL, 9, 4, 0, 1ull << 40), -QCOW2_ALLOC_EFBIG);
}

/* --- qcow2_alloc_bytes(): compressed clusters, packed as qemu-io write -c packs them --- */

/*
 * Cluster k's data: a pseudo-random head of varying length, then zeros (so
 * sizes vary); period 0: a head of 3/5 of the cluster in every cluster, so
 * that nearly every compressed cluster runs on into the next host cluster.
 */
static void comp_fill(uint8_t *buf, uint64_t cs, unsigned k, unsigned period)
{
    uint64_t head = period ? (k % period) * cs / period + (k % 3 == 2 ? cs : 16) : cs * 3 / 5;
    uint32_t x = 2463534242u + k;

    if (head > cs)
        head = cs; /* every third cluster of some periods: incompressible */
    memset(buf, 0, cs);
    for (uint64_t i = 0; i < head; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
}

/*
 * nclusters compressed writes, one per guest cluster, through qemu-io
 * (qcow2_co_pwritev_compressed_task), replayed here: the L2 table when
 * the slice has none (qcow2_alloc_clusters), then qcow2_alloc_bytes() of
 * the zlib size, or a plain cluster when the data does not compress.
 * Every entry's offset and sector count, and every refcount, must match.
 */
static void compressed_case(const char *opts, unsigned nclusters, unsigned period)
{
    char dir[] = "/tmp/instar-ut-comp-XXXXXX", path[256], io[512];
    struct img base, after;
    struct wimg w;
    uint64_t cs, l2_entries;
    uint8_t *buf, *out;
    FILE *cmds;

    cr_assert_not_null(mkdtemp(dir));
    base = oracle(opts, "64M", NULL);
    cs = 1ull << get_be(base.p, 20, 4);
    l2_entries = cs / 8;
    buf = malloc(cs);
    out = malloc(cs);
    cr_assert(buf && out);
    snprintf(path, sizeof(path), "%s/cmds", dir);
    cmds = fopen(path, "w");
    cr_assert_not_null(cmds);
    for (unsigned k = 0; k < nclusters; k++) {
        FILE *f;

        snprintf(path, sizeof(path), "%s/c%u", dir, k);
        f = fopen(path, "wb");
        cr_assert_not_null(f);
        comp_fill(buf, cs, k, period);
        cr_assert_eq(fwrite(buf, 1, cs, f), cs);
        fclose(f);
        fprintf(cmds, "write -c -s %s %llu %llu\n", path, (unsigned long long)(k * cs),
                (unsigned long long)cs);
    }
    fclose(cmds);
    snprintf(io, sizeof(io), "< %s/cmds", dir);
    after = oracle(opts, "64M", io);

    wimg_open(&w, base.p, base.len);
    for (unsigned k = 0; k < nclusters; k++) {
        uint64_t g = k * cs, l1 = get_be(after.p, 40, 8);
        uint64_t l2 = get_be(after.p, l1 + (g / cs / l2_entries) * 8, 8) & 0x00fffffffffffe00ull;
        uint64_t e = get_be(after.p, l2 + (g / cs % l2_entries) * 8, 8);
        long csize;

        if (k % l2_entries == 0)
            cr_assert_eq((uint64_t)qcow2_alloc_clusters(&w.a, cs), l2, "L2 table of cluster %u", k);
        comp_fill(buf, cs, k, period);
        csize = gcodec_compress(GCODEC_ZLIB, buf, cs, out, cs - 1);
        if (csize == -GCODEC_ENOSPC) {
            cr_assert_eq(e & (1ull << 62), 0, "cluster %u: qemu compressed it", k);
            cr_assert_eq((uint64_t)qcow2_alloc_clusters(&w.a, cs), e & 0x00fffffffffffe00ull,
                         "plain cluster %u", k);
            continue;
        }
        cr_assert_gt(csize, 0);
        {
            unsigned shift = 62 - ((unsigned)w.cb - 8);
            int64_t off = qcow2_alloc_bytes(&w.a, (uint64_t)csize);
            uint64_t nb = ((uint64_t)off + (uint64_t)csize - 1) / 512 - (uint64_t)off / 512;

            cr_assert_neq(e & (1ull << 62), 0, "cluster %u: qemu did not compress it", k);
            cr_assert_eq((uint64_t)off, e & ((1ull << shift) - 1), "cluster %u: %lld, qemu %llu", k,
                         (long long)off, (unsigned long long)(e & ((1ull << shift) - 1)));
            cr_assert_eq(nb, (e >> shift) & ((1ull << (w.cb - 8)) - 1), "cluster %u sectors", k);
        }
    }
    assert_same_refcounts(&w, &after);
    wimg_close(&w);
    sh("rm -rf %s", dir);
    free(buf);
    free(out);
    free(base.p);
    free(after.p);
}

/* Sizes from 16 bytes to most of a cluster: packed, running on into the next cluster. */
Test(qcow2_alloc, alloc_bytes_packs)
{
    compressed_case("cluster_size=65536", 40, 7);
}

/* Plain clusters between compressed ones: the packing jumps over them. */
Test(qcow2_alloc, alloc_bytes_around_plain_clusters)
{
    compressed_case("cluster_size=4096", 60, 4);
}

/* 1-bit refcounts: a cluster at refcount_max takes no more compressed data. */
Test(qcow2_alloc, alloc_bytes_refcount_max)
{
    compressed_case("cluster_size=4096,refcount_bits=1", 30, 5);
}

/* 512-byte clusters: new refcount blocks (qemu's -EAGAIN restart) while packing. */
Test(qcow2_alloc, alloc_bytes_new_refblocks)
{
    compressed_case("cluster_size=512,refcount_bits=16", 700, 6);
}

/*
 * Compressed clusters that run on into the next host cluster, across the
 * first cluster of a new refcount block: the update fails with -EAGAIN
 * after the first cluster's reference, which is undone, and the bytes go
 * to a fresh cluster (QEMU resets offset), not where they were packed.
 */
Test(qcow2_alloc, alloc_bytes_run_on_into_new_refblock)
{
    compressed_case("cluster_size=512,refcount_bits=16", 600, 0);
}

Test(qcow2_alloc, alloc_bytes_rejects_bad_sizes)
{
    struct img base = oracle("cluster_size=4096", "1M", NULL);
    struct wimg w;

    wimg_open(&w, base.p, base.len);
    cr_assert_eq(qcow2_alloc_bytes(&w.a, 0), -QCOW2_ALLOC_EINVAL);
    cr_assert_eq(qcow2_alloc_bytes(&w.a, 4097), -QCOW2_ALLOC_EINVAL);
    wimg_close(&w);
    free(base.p);
}

/* --- qcow2_prealloc_write_compressed(): the whole file, as qemu-io write -c leaves it --- */

/*
 * Compressed writes of nclusters clusters (comp_fill's data, every
 * compressible one) into a new image: the L2 tables, their compressed
 * descriptors (offset, sectors - 1; a zero bitmap with extended L2), the
 * refcounts and the packed data must be qemu-io's, byte for byte.
 */
static void prealloc_compressed_case(const char *opts, unsigned nclusters, unsigned period)
{
    char dir[] = "/tmp/instar-ut-pc-XXXXXX", path[256], io[512];
    struct img base, after;
    struct qcow2_prealloc pa;
    struct wimg w;
    uint64_t cs, l1_size;
    uint8_t *buf, *out;
    unsigned ctype = strstr(opts, "zstd") ? GCODEC_ZSTD : GCODEC_ZLIB;
    FILE *cmds;

    cr_assert_not_null(mkdtemp(dir));
    base = oracle(opts, "64M", NULL);
    cs = 1ull << get_be(base.p, 20, 4);
    buf = malloc(cs);
    out = malloc(cs);
    cr_assert(buf && out);
    snprintf(path, sizeof(path), "%s/cmds", dir);
    cmds = fopen(path, "w");
    cr_assert_not_null(cmds);
    for (unsigned k = 0; k < nclusters; k++) {
        FILE *f;

        comp_fill(buf, cs, k, period);
        if (gcodec_compress(ctype, buf, cs, out, cs - 1) < 0)
            continue; /* only compressed clusters here */
        snprintf(path, sizeof(path), "%s/c%u", dir, k);
        f = fopen(path, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(buf, 1, cs, f), cs);
        fclose(f);
        fprintf(cmds, "write -c -s %s %llu %llu\n", path, (unsigned long long)(k * cs),
                (unsigned long long)cs);
    }
    fclose(cmds);
    snprintf(io, sizeof(io), "< %s/cmds", dir);
    after = oracle(opts, "64M", io);
    sh("rm -rf %s", dir);

    wimg_open(&w, base.p, base.len);
    memset(&pa, 0, sizeof(pa));
    pa.a = &w.a;
    pa.ops = &mops;
    pa.truncate = memfile_prealloc_truncate;
    pa.length = memfile_prealloc_length;
    pa.opaque = &w.f;
    pa.cluster_bits = w.cb;
    pa.extended_l2 = get_be(base.p, 4, 4) >= 3 && (get_be(base.p, 72, 8) & (1ull << 4));
    pa.ordered = true;
    pa.write = true;
    l1_size = get_be(base.p, 36, 4);
    pa.l1 = calloc(l1_size, 8);
    cr_assert_not_null(pa.l1);
    pa.l1_size = l1_size;
    pa.l1_offset = get_be(base.p, 40, 8);
    for (uint64_t i = 0; i < l1_size; i++)
        pa.l1[i] = get_be(base.p, pa.l1_offset + i * 8, 8);
    cr_assert_eq(qcow2_prealloc_init(&pa), 0);
    for (unsigned k = 0; k < nclusters; k++) {
        uint64_t host;
        long csize;

        comp_fill(buf, cs, k, period);
        csize = gcodec_compress(ctype, buf, cs, out, cs - 1);
        if (csize < 0)
            continue;
        int r = qcow2_prealloc_write_compressed(&pa, k * cs, (uint64_t)csize, &host);
        cr_assert_eq(r, 0, "cluster %u: %d", k, r);
        cr_assert_eq(memfile_write(&w.f, host, out, (size_t)csize), 0);
    }
    /* Compression never overwrites: a second write to a cluster is refused. */
    {
        uint64_t host;

        comp_fill(buf, cs, 0, period);
        if (gcodec_compress(ctype, buf, cs, out, cs - 1) > 0)
            cr_assert_eq(qcow2_prealloc_write_compressed(&pa, 0, 100, &host), -QCOW2_ALLOC_EIO);
    }
    cr_assert_eq(qcow2_prealloc_flush(&pa), 0);
    cr_assert_eq(qcow2_alloc_flush(&w.a), 0);
    cr_assert_eq(w.f.len, after.len, "file length %zu, qemu %zu", w.f.len, after.len);
    for (size_t i = 0; i < after.len; i++)
        cr_assert_eq(w.f.p[i], after.p[i], "byte %zu: %#x, qemu %#x", i, w.f.p[i], after.p[i]);
    qcow2_prealloc_release(&pa);
    free(pa.l1);
    wimg_close(&w);
    free(buf);
    free(out);
    free(base.p);
    free(after.p);
}

Test(qcow2_prealloc, compressed_64k)
{
    prealloc_compressed_case("cluster_size=65536", 12, 5);
}

Test(qcow2_prealloc, compressed_extended_l2)
{
    prealloc_compressed_case("cluster_size=65536,extended_l2=on", 12, 5);
}

Test(qcow2_prealloc, compressed_v2_4k)
{
    prealloc_compressed_case("compat=0.10,cluster_size=4096", 20, 4);
}

Test(qcow2_prealloc, compressed_zstd_512)
{
    prealloc_compressed_case("cluster_size=512,compression_type=zstd", 40, 3);
}
