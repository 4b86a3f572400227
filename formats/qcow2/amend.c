/*
 * qcow2_amend_options()'s lazy refcounts change, version upgrade and
 * refcount width change (see amend.h).
 */
#include <string.h>

#include "qcow2/alloc.h"
#include "qcow2/amend.h"
#include "qcow2/be.h"
#include "qcow2/create.h"
#include "qcow2/header.h"
#include "qcow2/refcount.h"

#define AMEND_MAX_L1_BYTES (32ull << 20) /* QCOW_MAX_L1_SIZE */

int qcow2_amend_lazy(uint32_t version, uint64_t compat_features, bool on,
                     qcow2_amend_pwrite_fn pwrite, void *opaque, int *errnum)
{
    uint64_t v =
        on ? compat_features | QCOW2_AMEND_COMPAT_LAZY : compat_features & ~QCOW2_AMEND_COMPAT_LAZY;
    uint8_t be[8];
    int r, i;

    *errnum = 0;
    if (((compat_features & QCOW2_AMEND_COMPAT_LAZY) != 0) == on)
        return 0;
    /* A version 2 header has no such field: only "on" can get here. */
    if (version < 3)
        return -QCOW2_AMEND_ERR_LAZY_V2;
    for (i = 0; i < 8; i++)
        be[i] = (uint8_t)(v >> (56 - 8 * i));
    r = pwrite(opaque, QCOW2_AMEND_COMPAT_OFFSET, be, sizeof(be));
    if (r < 0) {
        *errnum = -r;
        return -QCOW2_AMEND_ERR_UPDATE_HEADER;
    }
    return 0;
}

static uint32_t be32_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void st32_at(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void st64_at(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

bool qcow2_amend_known_exts(const uint8_t *first, size_t len, uint32_t header_length)
{
    size_t pos = header_length;

    while (pos + 8 <= len) {
        uint32_t type = be32_at(first + pos), elen = be32_at(first + pos + 4);

        switch (type) {
        case 0:
            return true;
        case 0xe2792acaU: /* backing format */
        case 0x6803f857U: /* feature name table */
        case 0x23852875U: /* bitmaps */
        case 0x0537be77U: /* full disk encryption header pointer */
        case 0x44415441U: /* external data file */
            break;
        default:
            return false;
        }
        if (elen > len - pos - 8)
            return false;
        pos += 8 + (((size_t)elen + 7) & ~(size_t)7);
    }
    return false;
}

int qcow2_amend_upgrade(const struct qcow2_amend_upgrade *u, uint8_t *buf,
                        qcow2_amend_pwrite_fn pwrite, void *opaque, int *errnum)
{
    struct qcow2_create_opts o;
    int r;

    *errnum = 0;
    o.size = u->size;
    o.cluster_bits = u->cluster_bits;
    o.version = u->version ? u->version : 3;
    o.refcount_order = u->refcount_order;
    o.compression_type = 0;
    o.prealloc = 0;
    o.lazy_refcounts = false;
    o.extended_l2 = false;
    o.data_file_raw = false;
    o.data_file = NULL;
    o.backing_file = u->backing_file;
    o.backing_fmt = u->backing_fmt;
    o.encrypt_luks = o.encrypt_aes = false;
    o.crypt_method = u->crypt_method;
    o.crypto_offset = u->crypto_offset;
    o.crypto_length = u->crypto_length;
    r = qcow2_create_header(&o, buf, u->size, u->l1_size, u->l1_table_offset,
                            u->refcount_table_offset, u->refcount_table_clusters, true);
    if (r < 0) {
        /* qcow2_update_header(): the header and its names do not fit a cluster. */
        *errnum = 28; /* ENOSPC */
        return -QCOW2_AMEND_ERR_UPDATE_HEADER;
    }
    st32_at(buf + 60, u->nb_snapshots);
    st64_at(buf + 64, u->snapshots_offset);
    r = pwrite(opaque, 0, buf, (size_t)1 << u->cluster_bits);
    if (r < 0) {
        *errnum = -r;
        return -QCOW2_AMEND_ERR_UPDATE_HEADER;
    }
    return 0;
}

void qcow2_amend_progress_report(struct qcow2_amend_progress *p, int64_t offset, int64_t work_size)
{
    int64_t cur, projected;

    if (!p || !p->print || p->total_ops == 0)
        return;
    if (p->cur_op != p->last_op) {
        if (p->last_op != QCOW2_AMEND_OP_NONE) {
            p->offset_done += p->last_work;
            p->ops_done++;
        }
        p->last_op = p->cur_op;
    }
    if (p->ops_done >= p->total_ops)
        return;
    p->last_work = work_size;
    cur = p->offset_done + work_size;
    projected = cur * (int64_t)(p->total_ops - p->ops_done - 1) / (int64_t)(p->ops_done + 1);
    if (cur + projected <= 0)
        return;
    p->print(p->opaque, (uint64_t)(p->offset_done + offset), (uint64_t)(cur + projected));
}

/* The state of one qcow2_amend_refcount_order() run. */
struct reforder {
    struct qcow2_amend_reforder *r;
    struct qcow2_alloc a; /* the old structures */
    uint32_t old_bits;    /* log2(entries per old refcount block) */
    uint32_t new_bits;    /* log2(entries per new refcount block) */
    uint64_t *new_rt;     /* host-endian, new_rt_size entries */
    uint64_t new_rt_size; /* a multiple of the entries per cluster */
    uint8_t *block;       /* one new refcount block */
    int walk_index, walk_total;
};

/* An allocator error as the amend code code (errno kept). */
static int ro_err(struct reforder *s, int code, int ret)
{
    if (ret == -QCOW2_ALLOC_EIO && s->a.corrupt == QCOW2_ALLOC_CORRUPT_REFBLOCK_UNALIGNED)
        return -QCOW2_AMEND_ERR_REFBLOCK_UNALIGNED;
    s->r->errnum = -ret;
    return -code;
}

/* walk_over_reftable()'s status calls for the old table entries from ti on. */
static void ro_status(struct reforder *s, uint64_t ti)
{
    struct qcow2_amend_progress *p = s->r->progress;
    uint64_t rt = s->a.reftable_size;

    if (!p || !p->print)
        return;
    qcow2_amend_progress_report(p, (int64_t)((uint64_t)s->walk_index * rt + ti),
                                (int64_t)((uint64_t)s->walk_total * rt));
}

/*
 * Whether any cluster of [lo, hi) has a refcount, and with block (not
 * NULL) the new block filled with them from entry 0 on.
 */
static int ro_scan(struct reforder *s, uint64_t lo, uint64_t hi, bool *nonempty, uint8_t *block)
{
    uint64_t i = lo, rc;
    int ret;

    *nonempty = false;
    while (i < hi) {
        uint64_t ti = i >> s->old_bits, end = (ti + 1) << s->old_bits;

        if (end > hi)
            end = hi;
        if (ti >= s->a.reftable_size || !(s->a.reftable[ti] & QCOW2_REFT_OFFSET_MASK)) {
            i = end;
            continue;
        }
        for (; i < end; i++) {
            ret = qcow2_alloc_get_refcount(&s->a, i, &rc);
            if (ret < 0)
                return ro_err(s, QCOW2_AMEND_ERR_RETRIEVE_REFBLOCK, ret);
            if (rc) {
                *nonempty = true;
                if (block)
                    qcow2_refcount_set(block, i - lo, s->r->new_order, rc);
                else
                    i = end - 1; /* the answer is known for this old block */
            }
        }
        if (*nonempty && !block)
            return 0;
    }
    return 0;
}

/* alloc_refblock(): a table entry for new block k, which is not empty. */
static int ro_alloc_block(struct reforder *s, uint64_t k, bool *allocated)
{
    const struct qcow2_alloc_ops *ops = s->r->ops;
    uint64_t per = s->a.cluster_size / 8;
    int64_t off;

    if (k >= s->new_rt_size) {
        uint64_t n = (k + 1 + per - 1) / per * per;
        uint64_t *t;

        if (n > QCOW2_MAX_REFTABLE_SIZE / 8)
            return -QCOW2_AMEND_ERR_REFTABLE_TOO_BIG;
        t = ops->mem(s->r->opaque, s->new_rt, (size_t)(n * 8));
        if (!t)
            return -QCOW2_AMEND_ERR_REFTABLE_NOMEM;
        memset(t + s->new_rt_size, 0, (size_t)((n - s->new_rt_size) * 8));
        s->new_rt = t;
        s->new_rt_size = n;
    }
    if (s->new_rt[k])
        return 0;
    off = qcow2_alloc_clusters(&s->a, s->a.cluster_size);
    if (off < 0)
        return ro_err(s, QCOW2_AMEND_ERR_ALLOC_REFBLOCK, (int)off);
    s->new_rt[k] = (uint64_t)off;
    *allocated = true;
    return 0;
}

/* flush_refblock(): new block k written where its table entry says. */
static int ro_write_block(struct reforder *s, uint64_t k, uint64_t lo, uint64_t hi)
{
    bool nonempty;
    int ret;

    if (k >= s->new_rt_size || !s->new_rt[k])
        return 0; /* empty, as the allocating walks found it */
    memset(s->block, 0, (size_t)s->a.cluster_size);
    ret = ro_scan(s, lo, hi, &nonempty, s->block);
    if (ret < 0)
        return ret;
    ret = s->r->ops->write(s->r->opaque, s->new_rt[k], s->block, (size_t)s->a.cluster_size);
    if (ret < 0) {
        s->r->errnum = -ret;
        return -QCOW2_AMEND_ERR_WRITE_REFBLOCK;
    }
    return 0;
}

/*
 * walk_over_reftable(): the clusters the old table covers, in blocks of
 * the new width.  Allocating (flush false): *allocated tells whether a
 * new block got a cluster.  A block that ends where the old table ends
 * when it is scanned is the walk's last, even if its allocation grew the
 * old table (QEMU completes it after its loop).
 */
static int ro_walk(struct reforder *s, bool flush, bool *allocated)
{
    uint64_t k = 0, next_ti = 0;
    int ret;

    for (;;) {
        uint64_t total = s->a.reftable_size << s->old_bits;
        uint64_t lo = k << s->new_bits, hi = lo + (UINT64_C(1) << s->new_bits);
        bool nonempty, last;

        if (lo >= total)
            break;
        if (hi >= total)
            hi = total;
        last = hi == total;
        for (; s->r->progress && (next_ti << s->old_bits) < hi; next_ti++)
            ro_status(s, next_ti);
        if (flush) {
            ret = ro_write_block(s, k, lo, hi);
        } else {
            ret = ro_scan(s, lo, hi, &nonempty, NULL);
            if (ret == 0 && nonempty)
                ret = ro_alloc_block(s, k, allocated);
        }
        if (ret < 0)
            return ret;
        k++;
        if (last)
            break;
    }
    ro_status(s, s->a.reftable_size);
    return 0;
}

/* The first cluster whose refcount does not fit the new width (pre-check). */
static int ro_check_width(struct reforder *s)
{
    uint64_t ti, i, rc;
    int ret;

    if (s->r->new_order >= 6)
        return 0;
    for (ti = 0; ti < s->a.reftable_size; ti++) {
        if (!(s->a.reftable[ti] & QCOW2_REFT_OFFSET_MASK))
            continue;
        for (i = ti << s->old_bits; i < (ti + 1) << s->old_bits; i++) {
            ret = qcow2_alloc_get_refcount(&s->a, i, &rc);
            if (ret < 0)
                return ro_err(s, QCOW2_AMEND_ERR_RETRIEVE_REFBLOCK, ret);
            if (rc >> (1u << s->r->new_order)) {
                uint64_t t;

                /* The first walk's status calls up to the entry qemu fails at. */
                s->walk_total = 3;
                for (t = 0; s->r->progress && t <= ti; t++)
                    ro_status(s, t);
                s->r->bad_offset = i << s->a.cluster_bits;
                s->r->bad_refcount = rc;
                return -QCOW2_AMEND_ERR_REFCOUNT_DECREASE;
            }
        }
    }
    return 0;
}

/* The header's refcount table fields and refcount_order, in one write. */
static int ro_switch_header(struct reforder *s, uint64_t rt_off, uint64_t rt_clusters)
{
    const struct qcow2_alloc_ops *ops = s->r->ops;
    uint8_t h[52]; /* header bytes 48..99 */
    int ret;

    ret = ops->read(s->r->opaque, 48, h, sizeof(h));
    if (ret == 0) {
        st64_at(h, rt_off);
        st32_at(h + 8, (uint32_t)rt_clusters);
        st32_at(h + 48, s->r->new_order);
        ret = ops->write(s->r->opaque, 48, h, sizeof(h));
    }
    if (ret < 0) {
        s->r->errnum = -ret;
        return -QCOW2_AMEND_ERR_UPDATE_QCOW2_HEADER;
    }
    return 0;
}

/* The old structures' blocks and table freed in the new ones (QEMU's "done:"). */
static void ro_free_old(struct reforder *s, uint64_t rt_off, uint64_t rt_clusters)
{
    struct qcow2_alloc b;
    uint64_t i;

    if (qcow2_alloc_init(&b, s->r->ops, s->r->opaque, s->r->cluster_bits, s->r->new_order, rt_off,
                         rt_clusters) < 0)
        return; /* leaked clusters: what check -r repairs */
    b.free_cluster_index = s->a.free_cluster_index;
    for (i = 0; i < s->a.reftable_size; i++)
        if (s->a.reftable[i] & QCOW2_REFT_OFFSET_MASK)
            (void)qcow2_alloc_free(&b, s->a.reftable[i] & QCOW2_REFT_OFFSET_MASK, s->a.cluster_size,
                                   false);
    (void)qcow2_alloc_free(&b, s->a.reftable_offset, s->a.reftable_size * 8, false);
    (void)qcow2_alloc_flush(&b);
    s->r->free_cluster_index = b.free_cluster_index;
    qcow2_alloc_release(&b);
}

int qcow2_amend_refcount_order(struct qcow2_amend_reforder *r)
{
    const struct qcow2_alloc_ops *ops = r->ops;
    struct reforder s;
    uint64_t new_rt_off = 0, allocated_rt = 0, i;
    bool allocated;
    int ret;

    memset(&s, 0, sizeof(s));
    s.r = r;
    r->errnum = 0;
    if (r->new_order > 6 || r->old_order > 6)
        return -QCOW2_AMEND_ERR_REFTABLE_NOMEM;
    ret = qcow2_alloc_init(&s.a, ops, r->opaque, r->cluster_bits, r->old_order, r->reftable_offset,
                           r->reftable_clusters);
    if (ret < 0) {
        r->errnum = -ret;
        return -QCOW2_AMEND_ERR_RETRIEVE_REFBLOCK;
    }
    s.old_bits = s.a.rb_bits;
    s.new_bits = r->cluster_bits + 3 - r->new_order;
    s.block = ops->mem(r->opaque, NULL, (size_t)s.a.cluster_size);
    if (!s.block) {
        ret = -QCOW2_AMEND_ERR_REFTABLE_NOMEM;
        goto out;
    }
    ret = ro_check_width(&s);
    if (ret < 0)
        goto out;

    /* Allocate until a walk allocates nothing more; a grown table moves. */
    do {
        allocated = false;
        s.walk_total = s.walk_index + 2 > 3 ? s.walk_index + 2 : 3;
        ret = ro_walk(&s, false, &allocated);
        s.walk_index++;
        if (ret < 0)
            goto undo;
        if (allocated) {
            int64_t off;

            if (new_rt_off)
                (void)qcow2_alloc_free(&s.a, new_rt_off, allocated_rt * 8, false);
            off = qcow2_alloc_clusters(&s.a, s.new_rt_size * 8);
            if (off < 0) {
                new_rt_off = 0;
                ret = ro_err(&s, QCOW2_AMEND_ERR_ALLOC_REFTABLE, (int)off);
                goto undo;
            }
            new_rt_off = (uint64_t)off;
            allocated_rt = s.new_rt_size;
        }
    } while (allocated);

    s.walk_total = s.walk_index + 1;
    ret = ro_walk(&s, true, &allocated);
    if (ret < 0)
        goto undo;

    for (i = 0; i < s.new_rt_size; i++)
        st64_at((uint8_t *)&s.new_rt[i], s.new_rt[i]);
    ret = ops->write(r->opaque, new_rt_off, s.new_rt, (size_t)(s.new_rt_size * 8));
    for (i = 0; i < s.new_rt_size; i++)
        s.new_rt[i] = be_ld64((const uint8_t *)&s.new_rt[i]);
    if (ret < 0) {
        r->errnum = -ret;
        ret = -QCOW2_AMEND_ERR_WRITE_REFTABLE;
        goto undo;
    }
    ret = qcow2_alloc_flush(&s.a);
    if (ret < 0) {
        r->errnum = -ret;
        ret = -QCOW2_AMEND_ERR_FLUSH_REFBLOCKS;
        goto undo;
    }
    ret = ro_switch_header(&s, new_rt_off, (s.new_rt_size * 8) >> r->cluster_bits);
    if (ret < 0)
        goto undo;
    r->new_reftable_offset = new_rt_off;
    r->new_reftable_clusters = (s.new_rt_size * 8) >> r->cluster_bits;
    ro_free_old(&s, new_rt_off, r->new_reftable_clusters);
    goto out;

undo:
    /* The new structures' clusters given back to the old ones. */
    for (i = 0; i < s.new_rt_size; i++)
        if (s.new_rt[i])
            (void)qcow2_alloc_free(&s.a, s.new_rt[i], s.a.cluster_size, false);
    if (new_rt_off)
        (void)qcow2_alloc_free(&s.a, new_rt_off, allocated_rt * 8, false);
    (void)qcow2_alloc_flush(&s.a);
out:
    if (s.new_rt)
        ops->mem(r->opaque, s.new_rt, 0);
    if (s.block)
        ops->mem(r->opaque, s.block, 0);
    qcow2_alloc_release(&s.a);
    return ret;
}

#define AMEND_L1E_OFFSET_MASK  UINT64_C(0x00fffffffffffe00)
#define AMEND_L2E_OFFSET_MASK  UINT64_C(0x00fffffffffffe00)
#define AMEND_OFLAG_COPIED     (UINT64_C(1) << 63)
#define AMEND_OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define AMEND_OFLAG_ZERO       UINT64_C(1)

/* expand_zero_clusters_in_l1() for one L2 table at l2_off, in l2 (a cluster). */
static int ez_table(struct qcow2_amend_expand *e, struct qcow2_alloc *a, uint64_t l2_off,
                    uint8_t *l2, uint8_t *zero, bool active)
{
    const struct qcow2_alloc_ops *ops = e->ops;
    uint64_t cs = UINT64_C(1) << e->cluster_bits, l2_ref, n = cs / 8, j;
    bool dirty = false;
    int ret;

    ret = qcow2_alloc_get_refcount(a, l2_off >> e->cluster_bits, &l2_ref);
    if (ret < 0)
        return ret;
    ret = ops->read(e->opaque, l2_off, l2, (size_t)cs);
    if (ret < 0)
        return ret;
    for (j = 0; j < n; j++) {
        uint64_t ent = be_ld64(l2 + 8 * j), off = ent & AMEND_L2E_OFFSET_MASK;

        if (ent & AMEND_OFLAG_COMPRESSED) {
            e->compressed |= active;
            continue;
        }
        if (!(ent & AMEND_OFLAG_ZERO))
            continue;
        if (!off) {
            int64_t o;

            if (!e->backed) {
                st64_at(l2 + 8 * j, 0);
                dirty = true;
                continue;
            }
            o = qcow2_alloc_clusters(a, cs);
            if (o < 0)
                return (int)o;
            off = (uint64_t)o;
            /* A shared L2 table: the new cluster is shared as much. */
            if (l2_ref > 1) {
                ret = qcow2_alloc_update(a, off, cs, l2_ref - 1, false);
                if (ret < 0)
                    return ret;
            }
        }
        if (off & (cs - 1))
            return -QCOW2_ALLOC_EIO;
        ret = e->zero ? e->zero(e->opaque, off, cs) : ops->write(e->opaque, off, zero, (size_t)cs);
        if (ret < 0)
            return ret;
        st64_at(l2 + 8 * j, off | (l2_ref == 1 ? AMEND_OFLAG_COPIED : 0));
        dirty = true;
    }
    if (!dirty)
        return 0;
    /* The refcounts of new clusters reach the file before the entries. */
    ret = qcow2_alloc_flush(a);
    if (ret == 0 && ops->flush)
        ret = ops->flush(e->opaque);
    if (ret == 0)
        ret = ops->write(e->opaque, l2_off, l2, (size_t)cs);
    return ret;
}

int qcow2_amend_expand_zero(struct qcow2_amend_expand *e)
{
    const struct qcow2_alloc_ops *ops = e->ops;
    uint64_t cs = UINT64_C(1) << e->cluster_bits, total = 0, visited = 0;
    struct qcow2_alloc a;
    uint8_t *l1 = NULL, *l2 = NULL, *zero = NULL;
    uint32_t t, i;
    int ret;

    e->errnum = 0;
    e->table_err = 0;
    e->compressed = false;
    for (t = 0; t < e->nl1; t++)
        total += e->l1[t].size;
    ret = qcow2_alloc_init(&a, ops, e->opaque, e->cluster_bits, e->refcount_order,
                           e->reftable_offset, e->reftable_clusters);
    if (ret < 0) {
        e->errnum = -ret;
        return -QCOW2_AMEND_ERR_EXPAND_ZERO;
    }
    l2 = ops->mem(e->opaque, NULL, (size_t)cs);
    zero = ops->mem(e->opaque, NULL, (size_t)cs);
    if (!l2 || !zero) {
        ret = -QCOW2_ALLOC_ENOMEM;
        goto out;
    }
    memset(zero, 0, (size_t)cs);
    for (t = 0; t < e->nl1; t++) {
        uint8_t *p;

        /* qcow2_validate_table() of a snapshot's L1 table (QCOW_MAX_L1_SIZE). */
        if (t > 0 && e->l1[t].size > AMEND_MAX_L1_BYTES / 8) {
            e->table_err = QCOW2_ERR_SNAP_L1_TOO_LARGE;
            ret = -QCOW2_ALLOC_EFBIG;
            goto out;
        }
        if (t > 0 && (e->l1[t].offset > (uint64_t)INT64_MAX - (uint64_t)e->l1[t].size * 8 ||
                      (e->l1[t].offset & (cs - 1)))) {
            e->table_err = QCOW2_ERR_SNAP_L1_OFFSET;
            ret = -QCOW2_ALLOC_EINVAL;
            goto out;
        }
        p = ops->mem(e->opaque, l1, (size_t)e->l1[t].size * 8 + 8);
        if (!p) {
            ret = -QCOW2_ALLOC_ENOMEM;
            goto out;
        }
        l1 = p;
        ret = ops->read(e->opaque, e->l1[t].offset, l1, (size_t)e->l1[t].size * 8);
        if (ret < 0)
            goto out;
        for (i = 0; i < e->l1[t].size; i++) {
            uint64_t l2_off = be_ld64(l1 + 8 * i) & AMEND_L1E_OFFSET_MASK;

            if (l2_off & (cs - 1)) {
                ret = -QCOW2_ALLOC_EIO;
                goto out;
            }
            if (l2_off) {
                ret = ez_table(e, &a, l2_off, l2, zero, t == 0);
                if (ret < 0)
                    goto out;
            }
            visited++;
            qcow2_amend_progress_report(e->progress, (int64_t)visited, (int64_t)total);
        }
    }
    ret = qcow2_alloc_flush(&a);
out:
    if (l1)
        ops->mem(e->opaque, l1, 0);
    if (l2)
        ops->mem(e->opaque, l2, 0);
    if (zero)
        ops->mem(e->opaque, zero, 0);
    if (ret < 0) {
        (void)qcow2_alloc_flush(&a);
        e->errnum = -ret;
        ret = -QCOW2_AMEND_ERR_EXPAND_ZERO;
    }
    qcow2_alloc_release(&a);
    return ret;
}
