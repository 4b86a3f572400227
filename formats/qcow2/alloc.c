/*
 * The qcow2 host cluster allocator (see alloc.h for the contract).
 *
 * The order of every scan and every placement below follows QEMU 7.2's
 * block/qcow2-refcount.c, because the byte layout of the resulting file
 * depends on it: where a refcount block lands decides where the next data
 * cluster lands.  Refcount block writes go through a small write-back
 * cache; the final bytes do not depend on the write order as long as every
 * dirty block is written (qcow2_alloc_flush).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "refcount.h"

#define REFTABLE_ENTRY_SIZE 8

/* The largest in-memory table we accept from a header (64 MiB of entries). */
#define ALLOC_REFTABLE_BYTES_MAX (QCOW2_MAX_REFTABLE_SIZE * REFTABLE_ENTRY_SIZE)

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

/* --- Refcount block cache --- */

static struct qcow2_alloc_rb *rb_find(struct qcow2_alloc *a, uint64_t offset)
{
    for (int i = 0; i < QCOW2_ALLOC_CACHE; i++) {
        if (a->cache[i].offset == offset && a->cache[i].data) {
            return &a->cache[i];
        }
    }
    return NULL;
}

static int rb_write(struct qcow2_alloc *a, struct qcow2_alloc_rb *rb)
{
    int ret;

    if (!rb->dirty) {
        return 0;
    }
    ret = a->ops->write(a->opaque, rb->offset, rb->data, a->cluster_size);
    if (ret < 0) {
        return ret;
    }
    rb->dirty = false;
    return 0;
}

/* A slot for offset: the least recently used one, written back first. */
static int rb_slot(struct qcow2_alloc *a, uint64_t offset, struct qcow2_alloc_rb **out)
{
    struct qcow2_alloc_rb *victim = NULL;
    int ret;

    for (int i = 0; i < QCOW2_ALLOC_CACHE; i++) {
        struct qcow2_alloc_rb *rb = &a->cache[i];
        if (rb->offset == 0 || !rb->data) {
            victim = rb;
            break;
        }
        if (!victim || rb->used < victim->used) {
            victim = rb;
        }
    }
    ret = rb_write(a, victim);
    if (ret < 0) {
        return ret;
    }
    if (!victim->data) {
        victim->data = a->ops->mem(a->opaque, NULL, a->cluster_size);
        if (!victim->data) {
            return -QCOW2_ALLOC_ENOMEM;
        }
    }
    victim->offset = offset;
    victim->dirty = false;
    victim->used = ++a->clock;
    *out = victim;
    return 0;
}

/* QEMU's qcow2_cache_get() for the refcount block at offset. */
static int rb_get(struct qcow2_alloc *a, uint64_t offset, struct qcow2_alloc_rb **out)
{
    struct qcow2_alloc_rb *rb = rb_find(a, offset);
    int ret;

    if (rb) {
        rb->used = ++a->clock;
        *out = rb;
        return 0;
    }
    ret = rb_slot(a, offset, &rb);
    if (ret < 0) {
        return ret;
    }
    ret = a->ops->read(a->opaque, offset, rb->data, a->cluster_size);
    if (ret < 0) {
        rb->offset = 0;
        return ret;
    }
    *out = rb;
    return 0;
}

/* QEMU's qcow2_cache_get_empty(): a zeroed, dirty block at offset. */
static int rb_get_empty(struct qcow2_alloc *a, uint64_t offset, struct qcow2_alloc_rb **out)
{
    struct qcow2_alloc_rb *rb = rb_find(a, offset);
    int ret;

    if (!rb) {
        ret = rb_slot(a, offset, &rb);
        if (ret < 0) {
            return ret;
        }
    }
    rb->used = ++a->clock;
    memset(rb->data, 0, a->cluster_size);
    rb->dirty = true;
    *out = rb;
    return 0;
}

int qcow2_alloc_flush(struct qcow2_alloc *a)
{
    for (int i = 0; i < QCOW2_ALLOC_CACHE; i++) {
        if (a->cache[i].offset && a->cache[i].data) {
            int ret = rb_write(a, &a->cache[i]);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

/* --- Setup --- */

static void update_max_index(struct qcow2_alloc *a)
{
    uint64_t i;

    if (a->reftable_size == 0) {
        return;
    }
    i = a->reftable_size - 1;
    while (i > 0 && (a->reftable[i] & QCOW2_REFT_OFFSET_MASK) == 0) {
        i--;
    }
    a->max_reftable_index = i;
}

int qcow2_alloc_init(struct qcow2_alloc *a, const struct qcow2_alloc_ops *ops, void *opaque,
                     uint32_t cluster_bits, uint32_t refcount_order, uint64_t reftable_offset,
                     uint64_t reftable_clusters)
{
    uint64_t bytes;
    int ret;

    memset(a, 0, sizeof(*a));
    if (cluster_bits < 9 || cluster_bits > 21 || refcount_order > QCOW2_REFCOUNT_ORDER_MAX) {
        return -QCOW2_ALLOC_EINVAL;
    }
    if (reftable_clusters > (ALLOC_REFTABLE_BYTES_MAX >> cluster_bits)) {
        return -QCOW2_ALLOC_EFBIG;
    }
    a->ops = ops;
    a->opaque = opaque;
    a->cluster_bits = cluster_bits;
    a->cluster_size = UINT64_C(1) << cluster_bits;
    a->refcount_order = refcount_order;
    a->rb_bits = cluster_bits + 3 - refcount_order;
    a->refcount_max = qcow2_refcount_max(refcount_order);
    a->reftable_offset = reftable_offset;

    bytes = reftable_clusters << cluster_bits;
    a->reftable_size = bytes / REFTABLE_ENTRY_SIZE;
    if (bytes == 0) {
        return 0;
    }
    a->reftable = ops->mem(opaque, NULL, bytes);
    if (!a->reftable) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    ret = ops->read(opaque, reftable_offset, a->reftable, bytes);
    if (ret < 0) {
        ops->mem(opaque, a->reftable, 0);
        a->reftable = NULL;
        return ret;
    }
    for (uint64_t i = 0; i < a->reftable_size; i++) {
        a->reftable[i] = get_be64((const uint8_t *)&a->reftable[i]);
    }
    update_max_index(a);
    return 0;
}

void qcow2_alloc_release(struct qcow2_alloc *a)
{
    if (!a->ops) {
        return;
    }
    for (int i = 0; i < QCOW2_ALLOC_CACHE; i++) {
        if (a->cache[i].data) {
            a->ops->mem(a->opaque, a->cache[i].data, 0);
            a->cache[i].data = NULL;
        }
        a->cache[i].offset = 0;
    }
    if (a->reftable) {
        a->ops->mem(a->opaque, a->reftable, 0);
        a->reftable = NULL;
    }
    a->reftable_size = 0;
}

/* --- Refcounts --- */

static int set_corrupt(struct qcow2_alloc *a, int why, uint64_t a0, uint64_t a1)
{
    a->corrupt = why;
    a->corrupt_args[0] = a0;
    a->corrupt_args[1] = a1;
    return -QCOW2_ALLOC_EIO;
}

int qcow2_alloc_get_refcount(struct qcow2_alloc *a, uint64_t cluster_index, uint64_t *refcount)
{
    uint64_t ti = cluster_index >> a->rb_bits;
    uint64_t rb_off;
    struct qcow2_alloc_rb *rb;
    int ret;

    *refcount = 0;
    if (ti >= a->reftable_size) {
        return 0;
    }
    rb_off = a->reftable[ti] & QCOW2_REFT_OFFSET_MASK;
    if (!rb_off) {
        return 0;
    }
    if (rb_off & (a->cluster_size - 1)) {
        return set_corrupt(a, QCOW2_ALLOC_CORRUPT_REFBLOCK_UNALIGNED, rb_off, ti);
    }
    ret = rb_get(a, rb_off, &rb);
    if (ret < 0) {
        return ret;
    }
    *refcount = qcow2_refcount_get(rb->data, cluster_index & ((UINT64_C(1) << a->rb_bits) - 1),
                                   a->refcount_order);
    return 0;
}

/* alloc_clusters_noref(): the scan, without taking references. */
static int64_t alloc_noref(struct qcow2_alloc *a, uint64_t size, uint64_t max)
{
    uint64_t nb = (size + a->cluster_size - 1) >> a->cluster_bits;
    uint64_t rc;
    int ret;

retry:
    for (uint64_t i = 0; i < nb; i++) {
        uint64_t next = a->free_cluster_index++;
        ret = qcow2_alloc_get_refcount(a, next, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc != 0) {
            goto retry;
        }
    }
    if (a->free_cluster_index > 0 && a->free_cluster_index - 1 > (max >> a->cluster_bits)) {
        return -QCOW2_ALLOC_EFBIG;
    }
    return (int64_t)((a->free_cluster_index - nb) << a->cluster_bits);
}

static int update_refcount(struct qcow2_alloc *a, uint64_t offset, uint64_t length, uint64_t addend,
                           bool decrease, bool discard);

/* qcow2_cache_flush(): every dirty refcount block written, then a flush. */
static int alloc_sync(struct qcow2_alloc *a)
{
    int ret = qcow2_alloc_flush(a);

    if (ret == 0 && a->ops->flush)
        ret = a->ops->flush(a->opaque);
    return ret;
}

static int same_rb(const struct qcow2_alloc *a, uint64_t off_a, uint64_t off_b)
{
    unsigned shift = a->cluster_bits + a->rb_bits;
    return (off_a >> shift) == (off_b >> shift);
}

/*
 * alloc_refcount_block(): the refcount block for cluster_index, allocated
 * (and the table grown) if missing.  -EAGAIN after placing a new block:
 * the caller restarts its search.
 */
static int alloc_refcount_block(struct qcow2_alloc *a, uint64_t cluster_index,
                                struct qcow2_alloc_rb **out)
{
    uint64_t ti = cluster_index >> a->rb_bits;
    struct qcow2_alloc_rb *rb;
    int64_t new_block;
    int64_t end;
    int ret;

    *out = NULL;
    if (ti < a->reftable_size) {
        uint64_t rb_off = a->reftable[ti] & QCOW2_REFT_OFFSET_MASK;
        if (rb_off) {
            if (rb_off & (a->cluster_size - 1)) {
                return set_corrupt(a, QCOW2_ALLOC_CORRUPT_REFBLOCK_UNALIGNED, rb_off, ti);
            }
            return rb_get(a, rb_off, out);
        }
    }

    new_block = alloc_noref(a, a->cluster_size, INT64_MAX);
    if (new_block < 0) {
        return (int)new_block;
    }
    if (new_block == 0) {
        return set_corrupt(a, QCOW2_ALLOC_CORRUPT_REFBLOCK_AT_ZERO, 0, 0);
    }

    if (same_rb(a, (uint64_t)new_block, cluster_index << a->cluster_bits)) {
        /* The block describes itself. */
        ret = rb_get_empty(a, (uint64_t)new_block, &rb);
        if (ret < 0) {
            return ret;
        }
        qcow2_refcount_set(
            rb->data, ((uint64_t)new_block >> a->cluster_bits) & ((UINT64_C(1) << a->rb_bits) - 1),
            a->refcount_order, 1);
    } else {
        /* Described by another block: at most two levels of recursion. */
        ret = update_refcount(a, (uint64_t)new_block, a->cluster_size, 1, false, false);
        if (ret < 0) {
            return ret;
        }
        ret = alloc_sync(a);
        if (ret < 0) {
            return ret;
        }
        ret = rb_get_empty(a, (uint64_t)new_block, &rb);
        if (ret < 0) {
            return ret;
        }
    }

    /* The new block reaches the file before anything points at it. */
    ret = alloc_sync(a);
    if (ret < 0) {
        return ret;
    }
    if (ti < a->reftable_size) {
        uint8_t be[8];
        put_be64(be, (uint64_t)new_block);
        ret = a->ops->write(a->opaque, a->reftable_offset + ti * REFTABLE_ENTRY_SIZE, be, 8);
        if (ret == 0 && a->ops->flush)
            ret = a->ops->flush(a->opaque);
        if (ret < 0) {
            return ret;
        }
        a->reftable[ti] = (uint64_t)new_block;
        if (ti > a->max_reftable_index) {
            a->max_reftable_index = ti;
        }
        /* The new block may sit where the caller meant to put its data. */
        return -QCOW2_ALLOC_EAGAIN;
    }

    /*
     * The table is full: new self-describing blocks and a new table go
     * right after the area the existing blocks (and new_block) cover.
     */
    uint64_t rb_entries = UINT64_C(1) << a->rb_bits;
    uint64_t used = cluster_index + 1;
    if (((uint64_t)new_block >> a->cluster_bits) + 1 > used) {
        used = ((uint64_t)new_block >> a->cluster_bits) + 1;
    }
    uint64_t blocks_used = (used + rb_entries - 1) / rb_entries;
    uint64_t meta_offset = (blocks_used * rb_entries) << a->cluster_bits;

    end = qcow2_alloc_refcount_area(a, meta_offset, 0, false, ti, (uint64_t)new_block);
    if (end < 0) {
        return (int)end;
    }
    ret = rb_get(a, (uint64_t)new_block, out);
    if (ret < 0) {
        return ret;
    }
    return -QCOW2_ALLOC_EAGAIN;
}

static int update_refcount(struct qcow2_alloc *a, uint64_t offset, uint64_t length, uint64_t addend,
                           bool decrease, bool discard)
{
    struct qcow2_alloc_rb *rb = NULL;
    uint64_t start, last, cluster_offset;
    uint64_t old_ti = UINT64_MAX;
    uint64_t mask = a->cluster_size - 1;
    int ret = 0;

    if (length == 0) {
        return 0;
    }
    if (offset + length < offset) {
        return -QCOW2_ALLOC_EINVAL;
    }
    start = offset & ~mask;
    last = (offset + length - 1) & ~mask;
    for (cluster_offset = start; cluster_offset <= last; cluster_offset += a->cluster_size) {
        uint64_t ci = cluster_offset >> a->cluster_bits;
        uint64_t ti = ci >> a->rb_bits;
        uint64_t bi, rc;

        if (ti != old_ti || !rb) {
            ret = alloc_refcount_block(a, ci, &rb);
            if (ret == -QCOW2_ALLOC_EAGAIN && a->free_cluster_index > (start >> a->cluster_bits)) {
                a->free_cluster_index = start >> a->cluster_bits;
            }
            if (ret < 0) {
                goto fail;
            }
        }
        old_ti = ti;
        rb->dirty = true;
        rb->used = ++a->clock;

        bi = ci & ((UINT64_C(1) << a->rb_bits) - 1);
        rc = qcow2_refcount_get(rb->data, bi, a->refcount_order);
        if (decrease ? (rc - addend > rc) : (rc + addend < rc || rc + addend > a->refcount_max)) {
            ret = -QCOW2_ALLOC_EINVAL;
            goto fail;
        }
        rc = decrease ? rc - addend : rc + addend;
        if (rc == 0 && ci < a->free_cluster_index) {
            a->free_cluster_index = ci;
        }
        qcow2_refcount_set(rb->data, bi, a->refcount_order, rc);

        if (rc == 0) {
            /* A freed refcount block at the range start leaves the cache unwritten. */
            struct qcow2_alloc_rb *gone = rb_find(a, offset);
            if (gone) {
                gone->offset = 0;
                gone->dirty = false;
                rb = NULL;
                old_ti = UINT64_MAX;
            }
            if (discard && a->ops->discard) {
                a->ops->discard(a->opaque, cluster_offset, a->cluster_size);
            }
        }
        if (cluster_offset + a->cluster_size < cluster_offset) {
            break;
        }
    }
    return 0;

fail:
    /* Undo what was done, as QEMU tries to. */
    if (cluster_offset > offset) {
        (void)update_refcount(a, offset, cluster_offset - offset, addend, !decrease, false);
    }
    return ret;
}

int qcow2_alloc_update(struct qcow2_alloc *a, uint64_t offset, uint64_t length, uint64_t addend,
                       bool decrease)
{
    int ret;

    do {
        ret = update_refcount(a, offset, length, addend, decrease, false);
    } while (ret == -QCOW2_ALLOC_EAGAIN);
    return ret;
}

int qcow2_alloc_update_discard(struct qcow2_alloc *a, uint64_t offset, uint64_t length,
                               uint64_t addend, bool decrease, bool discard)
{
    return update_refcount(a, offset, length, addend, decrease, discard);
}

int qcow2_alloc_free(struct qcow2_alloc *a, uint64_t offset, uint64_t size, bool discard)
{
    int ret;

    do {
        ret = update_refcount(a, offset, size, 1, true, discard);
    } while (ret == -QCOW2_ALLOC_EAGAIN);
    return ret;
}

int64_t qcow2_alloc_clusters(struct qcow2_alloc *a, uint64_t size)
{
    int64_t offset;
    int ret;

    if (size == 0) {
        return -QCOW2_ALLOC_EINVAL;
    }
    do {
        offset = alloc_noref(a, size, QCOW2_MAX_CLUSTER_OFFSET);
        if (offset < 0) {
            return offset;
        }
        ret = update_refcount(a, (uint64_t)offset, size, 1, false, false);
    } while (ret == -QCOW2_ALLOC_EAGAIN);
    if (ret < 0) {
        return ret;
    }
    return offset;
}

int64_t qcow2_alloc_bytes(struct qcow2_alloc *a, uint64_t size)
{
    uint64_t mask = a->cluster_size - 1;
    /* The offset field of a compressed L2 entry: bits 0 .. 62 - (cluster_bits - 8) - 1. */
    uint64_t field = (UINT64_C(1) << (62 - (a->cluster_bits - 8))) - 1;
    uint64_t max = field < QCOW2_MAX_CLUSTER_OFFSET ? field : QCOW2_MAX_CLUSTER_OFFSET;
    uint64_t offset = a->free_byte_offset, free_in_cluster, rc;
    int ret;

    if (size == 0 || size > a->cluster_size) {
        return -QCOW2_ALLOC_EINVAL;
    }
    if (offset) {
        ret = qcow2_alloc_get_refcount(a, offset >> a->cluster_bits, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc == a->refcount_max) {
            offset = 0;
        }
    }
    free_in_cluster = a->cluster_size - (offset & mask);
    do {
        if (!offset || free_in_cluster < size) {
            int64_t new_cluster = alloc_noref(a, a->cluster_size, max);

            if (new_cluster < 0) {
                return new_cluster;
            }
            if (new_cluster == 0) {
                return set_corrupt(a, QCOW2_ALLOC_CORRUPT_COMPRESSED_AT_ZERO, 0, 0);
            }
            /* Run on into the next cluster only when it is the adjacent one. */
            if (!offset || ((offset + mask) & ~mask) != (uint64_t)new_cluster) {
                offset = (uint64_t)new_cluster;
                free_in_cluster = a->cluster_size;
            } else {
                free_in_cluster += a->cluster_size;
            }
        }
        ret = update_refcount(a, offset, size, 1, false, false);
        if (ret < 0) {
            /* After a new refcount block (-EAGAIN) the search starts afresh. */
            offset = 0;
        }
    } while (ret == -QCOW2_ALLOC_EAGAIN);
    if (ret < 0) {
        return ret;
    }
    a->free_byte_offset = (offset + size) & mask ? offset + size : 0;
    return (int64_t)offset;
}

int64_t qcow2_alloc_clusters_at(struct qcow2_alloc *a, uint64_t offset, uint64_t nb_clusters)
{
    uint64_t i, rc;
    int ret;

    if (nb_clusters == 0) {
        return 0;
    }
    if (nb_clusters > (QCOW2_MAX_CLUSTER_OFFSET >> a->cluster_bits)) {
        return -QCOW2_ALLOC_EINVAL;
    }
    do {
        uint64_t ci = offset >> a->cluster_bits;
        for (i = 0; i < nb_clusters; i++) {
            ret = qcow2_alloc_get_refcount(a, ci++, &rc);
            if (ret < 0) {
                return ret;
            }
            if (rc != 0) {
                break;
            }
        }
        ret = update_refcount(a, offset, i << a->cluster_bits, 1, false, false);
    } while (ret == -QCOW2_ALLOC_EAGAIN);
    if (ret < 0) {
        return ret;
    }
    return (int64_t)i;
}

uint64_t qcow2_refcount_metadata_size(uint64_t clusters, uint64_t cluster_size,
                                      uint32_t refcount_order, bool generous,
                                      uint64_t *refblock_count)
{
    uint64_t per_table_cluster = cluster_size / REFTABLE_ENTRY_SIZE;
    uint64_t per_block = cluster_size * 8 / (UINT64_C(1) << refcount_order);
    uint64_t table = 0, blocks = 0, last, n = 0;

    do {
        last = n;
        blocks = (clusters + table + blocks + per_block - 1) / per_block;
        table = (blocks + per_table_cluster - 1) / per_table_cluster;
        n = clusters + blocks + table;
        if (n == last && generous) {
            clusters += (table + 1) / 2;
            n = 0;
            generous = false;
        }
    } while (n != last);

    if (refblock_count) {
        *refblock_count = blocks;
    }
    return (blocks + table) * cluster_size;
}

int64_t qcow2_alloc_refcount_area(struct qcow2_alloc *a, uint64_t start_offset,
                                  uint64_t additional_clusters, bool exact_size,
                                  uint64_t new_refblock_index, uint64_t new_refblock_offset)
{
    uint64_t total, table_size, table_clusters, area_index, extra = 0;
    uint64_t table_offset, block_offset, end_offset;
    uint64_t per_table_cluster = a->cluster_size / REFTABLE_ENTRY_SIZE;
    uint64_t rb_entries = UINT64_C(1) << a->rb_bits;
    uint64_t *nt;
    uint8_t *be = NULL;
    int ret;

    if (start_offset & (a->cluster_size - 1)) {
        return -QCOW2_ALLOC_EINVAL;
    }
    if ((start_offset >> a->cluster_bits) > QCOW2_MAX_CLUSTER_OFFSET ||
        additional_clusters > QCOW2_MAX_CLUSTER_OFFSET) {
        return -QCOW2_ALLOC_EFBIG;
    }
    qcow2_refcount_metadata_size((start_offset >> a->cluster_bits) + additional_clusters,
                                 a->cluster_size, a->refcount_order, !exact_size, &total);
    if (total > QCOW2_MAX_REFTABLE_SIZE) {
        return -QCOW2_ALLOC_EFBIG;
    }
    area_index = (start_offset >> a->cluster_bits) / rb_entries;

    table_size = exact_size ? total : total + (total + 1) / 2;
    table_size = (table_size + per_table_cluster - 1) / per_table_cluster * per_table_cluster;
    table_clusters = table_size * REFTABLE_ENTRY_SIZE / a->cluster_size;
    if (table_size > QCOW2_MAX_REFTABLE_SIZE) {
        return -QCOW2_ALLOC_EFBIG;
    }

    nt = a->ops->mem(a->opaque, NULL, table_size * REFTABLE_ENTRY_SIZE);
    if (!nt) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    memset(nt, 0, table_size * REFTABLE_ENTRY_SIZE);
    {
        uint64_t ncopy =
            table_size > a->max_reftable_index ? a->max_reftable_index + 1 : table_size;
        if (ncopy > a->reftable_size) {
            ncopy = a->reftable_size;
        }
        if (ncopy) {
            memcpy(nt, a->reftable, ncopy * REFTABLE_ENTRY_SIZE);
        }
    }
    if (new_refblock_offset) {
        if (new_refblock_index >= total) {
            ret = -QCOW2_ALLOC_EINVAL;
            goto fail;
        }
        nt[new_refblock_index] = new_refblock_offset;
    }

    for (uint64_t i = area_index; i < total; i++) {
        if (!nt[i]) {
            extra++;
        }
    }
    table_offset = start_offset + extra * a->cluster_size;
    end_offset = table_offset + table_clusters * a->cluster_size;

    block_offset = start_offset;
    for (uint64_t i = area_index; i < total; i++) {
        struct qcow2_alloc_rb *rb;
        uint64_t first_covered;

        if (nt[i]) {
            ret = rb_get(a, nt[i], &rb);
        } else {
            ret = rb_get_empty(a, block_offset, &rb);
            if (ret == 0) {
                nt[i] = block_offset;
                block_offset += a->cluster_size;
            }
        }
        if (ret < 0) {
            goto fail;
        }
        first_covered = (i * rb_entries) << a->cluster_bits;
        if (first_covered < end_offset) {
            uint64_t j = 0, end_index;
            if (first_covered < start_offset) {
                j = (start_offset - first_covered) >> a->cluster_bits;
            }
            end_index = (end_offset - first_covered) >> a->cluster_bits;
            if (end_index > rb_entries) {
                end_index = rb_entries;
            }
            for (; j < end_index; j++) {
                qcow2_refcount_set(rb->data, j, a->refcount_order, 1);
            }
            rb->dirty = true;
        }
    }

    ret = qcow2_alloc_flush(a);
    if (ret < 0) {
        goto fail;
    }

    /* The table, big-endian, then the header fields that point at it. */
    be = a->ops->mem(a->opaque, NULL, table_size * REFTABLE_ENTRY_SIZE);
    if (!be) {
        ret = -QCOW2_ALLOC_ENOMEM;
        goto fail;
    }
    for (uint64_t i = 0; i < table_size; i++) {
        put_be64(be + i * REFTABLE_ENTRY_SIZE, nt[i]);
    }
    ret = a->ops->write(a->opaque, table_offset, be, table_size * REFTABLE_ENTRY_SIZE);
    a->ops->mem(a->opaque, be, 0);
    if (ret < 0) {
        goto fail;
    }
    {
        uint8_t hdr[12];
        put_be64(hdr, table_offset);
        hdr[8] = (uint8_t)(table_clusters >> 24);
        hdr[9] = (uint8_t)(table_clusters >> 16);
        hdr[10] = (uint8_t)(table_clusters >> 8);
        hdr[11] = (uint8_t)table_clusters;
        ret = a->ops->write(a->opaque, QCOW2_HDR_REFTABLE_OFFSET, hdr, sizeof(hdr));
        if (ret < 0) {
            goto fail;
        }
    }

    uint64_t old_offset = a->reftable_offset;
    uint64_t old_size = a->reftable_size;
    if (a->reftable) {
        a->ops->mem(a->opaque, a->reftable, 0);
    }
    a->reftable = nt;
    a->reftable_size = table_size;
    a->reftable_offset = table_offset;
    update_max_index(a);

    /* QEMU ignores a failure here (it only prints it). */
    (void)qcow2_alloc_free(a, old_offset, old_size * REFTABLE_ENTRY_SIZE, false);
    return (int64_t)end_offset;

fail:
    a->ops->mem(a->opaque, nt, 0);
    return ret;
}
