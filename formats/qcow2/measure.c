/*
 * qemu-img measure's qcow2 arithmetic (see measure.h), after QEMU 7.2's
 * qcow2_measure(), qcow2_calc_prealloc_size() (block/qcow2.c),
 * qcow2_get_persistent_dirty_bitmap_size() (block/qcow2-bitmap.c) and
 * qcrypto_block_luks_create() (crypto/block-luks.c).
 */
#include "measure.h"

#include "alloc.h"
#include "prealloc.h"

#define MEASURE_MAX_L1_BYTES (32u << 20) /* QCOW_MAX_L1_SIZE */
#define MEASURE_L1E_SIZE     8u
#define MEASURE_BME_SIZE     8u  /* a bitmap table entry */
#define MEASURE_BM_DIR_ENTRY 24u /* Qcow2BitmapDirEntry without name and extra data */

/* QEMU's ROUND_UP for a power-of-two d, in uint64_t: it wraps past 2^64 - d. */
static uint64_t round_up(uint64_t n, uint64_t d)
{
    return (n + d - 1) & ~(d - 1);
}

static uint64_t div_round_up(uint64_t n, uint64_t d)
{
    return n / d + (n % d != 0);
}

static bool pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static unsigned ctz64(uint64_t v)
{
    return (unsigned)__builtin_ctzll(v);
}

enum qcow2_measure_err qcow2_measure_check_opts(const struct qcow2_measure_opts *o)
{
    /* validate_cluster_size(): 2^9..2^21. */
    if (!pow2(o->cluster_size) || o->cluster_size < 512 || o->cluster_size > (2u << 20))
        return QCOW2_MEASURE_ECLUSTER_SIZE;
    /* 32 subclusters of at least 512 bytes. */
    if (o->extended_l2 && o->cluster_size < 512 * 32)
        return QCOW2_MEASURE_EEXTL2_CLUSTER;
    if (o->version != 2 && o->version != 3)
        return QCOW2_MEASURE_ECOMPAT;
    if (o->refcount_bits > 64 || !pow2(o->refcount_bits))
        return QCOW2_MEASURE_EREFCOUNT_BITS;
    if (o->version < 3 && o->refcount_bits != 16)
        return QCOW2_MEASURE_EREFCOUNT_V2;
    if (o->prealloc < QCOW2_PREALLOC_OFF || o->prealloc > QCOW2_PREALLOC_FULL)
        return QCOW2_MEASURE_EPREALLOC;
    return QCOW2_MEASURE_OK;
}

enum qcow2_measure_err qcow2_measure_check_size(const struct qcow2_measure_opts *o, uint64_t size)
{
    uint64_t cs = o->cluster_size, l2e = o->extended_l2 ? 16 : 8;
    uint64_t l2_tables = div_round_up(round_up(size, cs) / cs, cs / l2e);

    /* l2_tables <= 2^55 / 64: the product cannot wrap. */
    if (l2_tables * MEASURE_L1E_SIZE > MEASURE_MAX_L1_BYTES)
        return QCOW2_MEASURE_ETOO_LARGE;
    return QCOW2_MEASURE_OK;
}

uint64_t qcow2_measure_prealloc_size(uint64_t size, uint64_t cluster_size, uint64_t refcount_bits,
                                     bool extended_l2)
{
    uint64_t cs = cluster_size, l2e = extended_l2 ? 16 : 8;
    uint64_t aligned = round_up(size, cs), meta = cs; /* the header cluster */
    uint64_t nl2e, nl1e;

    /* L2 tables: an entry per cluster, whole tables. */
    nl2e = round_up(aligned / cs, cs / l2e);
    meta += nl2e * l2e;
    /* L1 table: an entry per L2 table, whole clusters. */
    nl1e = round_up(nl2e * l2e / cs, cs / MEASURE_L1E_SIZE);
    meta += nl1e * MEASURE_L1E_SIZE;
    /* Refcounts for all of it; (meta + aligned) / cs < 2^55. */
    meta += qcow2_refcount_metadata_size((meta + aligned) / cs, cs, ctz64(refcount_bits), false, 0);
    return meta + aligned;
}

uint64_t qcow2_measure_luks_header(uint32_t key_len)
{
    /* QCRYPTO_BLOCK_LUKS_*: 512-byte sectors, key slots from 4096 bytes, 4000 stripes. */
    uint64_t header_sectors = 4096 / 512;
    uint64_t split = round_up(div_round_up((uint64_t)key_len * 4000, 512), header_sectors);

    return (header_sectors + 8 * split) * 512;
}

void qcow2_measure_walk_init(struct qcow2_measure_walk *w, uint64_t cluster_size)
{
    w->cluster_size = cluster_size;
    w->pos = 0;
    w->next = 0;
    w->required = 0;
}

int qcow2_measure_walk_extent(struct qcow2_measure_walk *w, uint64_t start, uint64_t len, bool zero,
                              bool data)
{
    uint64_t cs = w->cluster_size, end, off, cend;

    /* Contiguous, or resuming where QEMU's loop asks next (a reporter may skip). */
    if ((start != w->pos && !(start > w->pos && start == w->next)) || len == 0 ||
        __builtin_add_overflow(start, len, &end))
        return -1;
    w->pos = end;
    /* QEMU's loop asked at w->next, beyond this extent: it never saw it. */
    if (end <= w->next)
        return 0;
    off = start > w->next ? start : w->next;
    if (zero || !data) {
        /* Zero regions are skipped (safe without a backing file); others count nothing. */
        w->next = end;
        return 0;
    }
    /* To the end of the cluster; the bytes of the cluster before off count too. */
    cend = round_up(end, cs);
    w->required += off % cs + (cend - off);
    w->next = cend;
    return 0;
}

void qcow2_measure_bitmaps_init(struct qcow2_measure_bitmaps *b, uint64_t cluster_size)
{
    b->cluster_size = cluster_size;
    b->size = 0;
    b->dir_size = 0;
}

int qcow2_measure_bitmaps_add(struct qcow2_measure_bitmaps *b, uint64_t disk_size,
                              uint64_t granularity, uint64_t name_len)
{
    uint64_t cs = b->cluster_size, bytes, clusters;

    if (granularity == 0)
        return -1;
    /* get_bitmap_bytes_needed(): a bit per granule, whole bytes. */
    bytes = div_round_up(div_round_up(disk_size, granularity), 8);
    clusters = div_round_up(bytes, cs);
    /* The whole bitmap allocated, and its table. */
    b->size += clusters * cs;
    b->size += round_up(clusters * MEASURE_BME_SIZE, cs);
    /* calc_dir_entry_size(): the entry and its name, 8-byte aligned. */
    b->dir_size += round_up(MEASURE_BM_DIR_ENTRY + name_len, 8);
    return 0;
}

uint64_t qcow2_measure_bitmaps_total(const struct qcow2_measure_bitmaps *b)
{
    return b->size + round_up(b->dir_size, b->cluster_size);
}
