/*
 * qcow2 resize, after QEMU 7.2's qcow2_co_truncate() with preallocation
 * off (block/qcow2.c), qcow2_grow_l1_table / qcow2_shrink_l1_table /
 * qcow2_cluster_discard (block/qcow2-cluster.c), qcow2_shrink_reftable and
 * qcow2_get_last_cluster (block/qcow2-refcount.c).  See resize.h for the
 * contract.  Clusters come from and go back to the shared allocator
 * (alloc.h); its refcount-block cache is written back before every other
 * metadata write, so raised refcounts reach the file before anything
 * refers to their clusters, and lowered ones after the reference is gone.
 */
#include "resize.h"

#include <string.h>

#include "instar/ovf.h"
#include "alloc.h"
#include "l2.h"
#include "prealloc.h"
#include "refcount.h"

#define RS_MAX_L1_BYTES (UINT64_C(32) << 20) /* QCOW_MAX_L1_SIZE */
#define RS_INT_MAX      UINT64_C(0x7fffffff)

#define HDR_SIZE_OFF    24 /* offsetof(QCowHeader, size) */
#define HDR_L1_SIZE_OFF 36 /* l1_size, then l1_table_offset */

struct rs {
    const struct qcow2_resize_io *io;
    struct qcow2_alloc a;
    bool a_init;
    unsigned cb;      /* cluster bits */
    uint64_t cs;      /* cluster size */
    bool extl2;       /* 16-byte L2 entries */
    bool data_file;   /* data clusters in the external data file (not refcounted) */
    unsigned l2_bits; /* entries per L2 table = 1 << l2_bits */
    uint64_t file_len;

    uint64_t *l1; /* host-endian */
    uint64_t l1_size;
    uint64_t l1_off;

    uint8_t *l2;  /* one L2 table */
    uint8_t *old; /* the entries an L2 update replaced */
    uint8_t *rb;  /* one refcount block, for shrink_reftable */
    uint8_t buf[16];

    /* Freed clusters not yet punched out of the file (QEMU's s->discards). */
    uint64_t doff, dlen;
};

/* --- Small helpers --- */

static void st_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void st_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t ld_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint64_t size_to_clusters(const struct rs *s, uint64_t size)
{
    return (size >> s->cb) + ((size & (s->cs - 1)) != 0);
}

uint64_t qcow2_resize_l1_entries(uint64_t size, unsigned cluster_bits, bool extended_l2)
{
    unsigned shift = cluster_bits + cluster_bits - (extended_l2 ? 4 : 3);

    return (size >> shift) + ((size & ((UINT64_C(1) << shift) - 1)) != 0);
}

static void *rs_mem(struct rs *s, size_t size)
{
    void *p = s->io->mem(s->io->opaque, NULL, size ? size : 1);

    if (p)
        memset(p, 0, size ? size : 1);
    return p;
}

static void rs_free(struct rs *s, void *p)
{
    if (p)
        (void)s->io->mem(s->io->opaque, p, 0);
}

/* --- File I/O (the allocator's callbacks too) --- */

static int rs_read(void *opaque, uint64_t off, void *buf, size_t len)
{
    struct rs *s = opaque;

    return s->io->pread(s->io->opaque, off, buf, len);
}

static int rs_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    struct rs *s = opaque;
    int ret = s->io->pwrite(s->io->opaque, off, buf, len);

    if (ret == 0 && off + len > s->file_len)
        s->file_len = off + len;
    return ret;
}

static void *rs_alloc_mem(void *opaque, void *p, size_t size)
{
    struct rs *s = opaque;

    return s->io->mem(s->io->opaque, p, size);
}

/*
 * qcow2_process_discards(): the queued clusters are punched out of the
 * file (qemu opens an image's file with discard=unmap); after a failure
 * (ok false) they are dropped, as QEMU drops them.
 */
static void discard_flush(struct rs *s, bool ok)
{
    if (ok && s->dlen && s->io->discard)
        s->io->discard(s->io->opaque, s->doff, s->dlen);
    s->dlen = 0;
}

/*
 * update_refcount_discard(): a cluster freed with discard joins the queue.
 * Only the holes left in the end matter, so the queue is one range, sent
 * when a cluster does not touch it.
 */
static void rs_discard(void *opaque, uint64_t off, uint64_t len)
{
    struct rs *s = opaque;

    if (s->dlen && s->doff + s->dlen == off) {
        s->dlen += len;
    } else if (s->dlen && off + len == s->doff) {
        s->doff = off;
        s->dlen += len;
    } else {
        discard_flush(s, true);
        s->doff = off;
        s->dlen = len;
    }
}

static const struct qcow2_alloc_ops rs_alloc_ops = {rs_read, rs_write, rs_alloc_mem, rs_discard,
                                                    NULL};

/*
 * Write metadata other than a refcount block: the allocator's dirty
 * refcount blocks go first, so every raised refcount is on disk before
 * the reference (QEMU's cache dependency between the two caches).
 */
static int meta_write(struct rs *s, uint64_t off, const void *buf, size_t len, bool sync)
{
    int ret = qcow2_alloc_flush(&s->a);

    if (ret == 0)
        ret = rs_write(s, off, buf, len);
    if (ret == 0 && sync)
        ret = s->io->flush(s->io->opaque);
    return ret;
}

/*
 * qcow2_free_clusters(): QEMU only prints a failure and goes on (a leak at
 * worst).  discard: QCOW2_DISCARD_ALWAYS, the clusters that reach refcount
 * 0 are punched out of the file; else QCOW2_DISCARD_OTHER, whose
 * passthrough is off by default.
 */
static void free_clusters(struct rs *s, uint64_t off, uint64_t size, bool discard)
{
    (void)qcow2_alloc_free(&s->a, off, size, discard);
}

static int alloc_clusters(struct rs *s, uint64_t size, uint64_t *out)
{
    int64_t off;

    /* alloc_clusters_noref(): no cluster is reused while it is queued for discard. */
    discard_flush(s, true);
    off = qcow2_alloc_clusters(&s->a, size);

    if (off < 0)
        return (int)off;
    *out = (uint64_t)off;
    return 0;
}

/* --- L1 and L2 (block/qcow2-cluster.c) --- */

static int grow_l1(struct rs *s, uint64_t min_size)
{
    uint64_t new_size, off = 0, old_off, old_size, i;
    uint64_t *nl1;
    uint8_t *raw;
    int ret;

    if (min_size <= s->l1_size)
        return 0;
    if (min_size > RS_INT_MAX / 8)
        return -QCOW2_RESIZE_EFBIG;
    new_size = min_size;
    if (new_size > RS_MAX_L1_BYTES / 8)
        return -QCOW2_RESIZE_EFBIG;

    nl1 = rs_mem(s, new_size * 8);
    raw = rs_mem(s, new_size * 8);
    if (!nl1 || !raw) {
        ret = -QCOW2_RESIZE_ENOMEM;
        goto out;
    }
    memcpy(nl1, s->l1, s->l1_size * 8);
    ret = alloc_clusters(s, new_size * 8, &off);
    if (ret < 0)
        goto out;
    for (i = 0; i < new_size; i++)
        st_be64(raw + i * 8, nl1[i]);
    ret = meta_write(s, off, raw, new_size * 8, true);
    if (ret == 0) {
        st_be32(s->buf, (uint32_t)new_size);
        st_be64(s->buf + 4, off);
        ret = meta_write(s, HDR_L1_SIZE_OFF, s->buf, 12, true);
    }
    if (ret < 0) {
        free_clusters(s, off, new_size * 8, false);
        goto out;
    }
    old_off = s->l1_off;
    old_size = s->l1_size;
    rs_free(s, s->l1);
    s->l1 = nl1;
    nl1 = NULL;
    s->l1_off = off;
    s->l1_size = new_size;
    free_clusters(s, old_off, old_size * 8, false);
out:
    if (nl1)
        rs_free(s, nl1);
    if (raw)
        rs_free(s, raw);
    return ret;
}

/* qcow2_write_l1_entry() with a byte-granular file: just the entry. */
static int write_l1_entry(struct rs *s, uint64_t index)
{
    st_be64(s->buf, s->l1[index]);
    return meta_write(s, s->l1_off + index * 8, s->buf, 8, true);
}

/*
 * l2_allocate(): give L1 entry index a table of its own (refcount 1,
 * COPIED): a copy of the shared one, or zeros.  s->l2 holds it after.
 */
static int l2_allocate(struct rs *s, uint64_t index)
{
    uint64_t old = s->l1[index], off = 0;
    int ret;

    ret = alloc_clusters(s, s->cs, &off);
    if (ret < 0)
        return ret;
    if (off == 0) {
        ret = -QCOW2_RESIZE_EIO;
        goto fail;
    }
    if (old & QCOW2_L1E_OFFSET_MASK)
        ret = s->io->pread(s->io->opaque, old & QCOW2_L1E_OFFSET_MASK, s->l2, s->cs);
    else
        memset(s->l2, 0, s->cs);
    if (ret == 0)
        ret = meta_write(s, off, s->l2, s->cs, false);
    if (ret < 0)
        goto fail;
    s->l1[index] = off | QCOW2_OFLAG_COPIED;
    ret = write_l1_entry(s, index);
    if (ret < 0)
        goto fail;
    return 0;
fail:
    s->l1[index] = old;
    free_clusters(s, off, s->cs, false);
    return ret;
}

/* qcow2_free_any_cluster(): drop the reference an L2 entry held. */
static void free_l2_entry(struct rs *s, uint64_t raw, uint64_t bitmap)
{
    struct qcow2_l2_geom g = {
        .cluster_bits = s->cb, .extended_l2 = s->extl2, .data_file = s->data_file};
    struct qcow2_l2_entry e;

    qcow2_l2_decode(raw, bitmap, &g, &e);
    switch (e.type) {
    case QCOW2_L2_COMPRESSED:
        free_clusters(s, e.host_offset, e.csize, true);
        break;
    case QCOW2_L2_NORMAL:
    case QCOW2_L2_ZERO_ALLOC:
        /*
         * QEMU refuses to free an unaligned cluster (and flags corruption).
         * A data file's cluster has no refcount (qemu discards it there;
         * the shrink then cuts the data file at the new end).
         */
        if (!(e.host_offset & (s->cs - 1)) && !s->data_file)
            free_clusters(s, e.host_offset, s->cs, true);
        break;
    default:
        break;
    }
}

/*
 * qcow2_cluster_discard(..., full_discard): every entry of
 * [off, off + nb clusters) becomes 0 (reads fall through to the backing
 * file), one L2 table at a time: the table is written, then the
 * refcounts its entries held are lowered.
 */
static int discard(struct rs *s, uint64_t off, uint64_t nb)
{
    unsigned esz = s->extl2 ? 16 : 8;
    uint64_t l2n = UINT64_C(1) << s->l2_bits;
    int ret;

    while (nb > 0) {
        uint64_t l1i = off >> (s->cb + s->l2_bits), l2off, l2i, n, i;
        bool changed = false;

        if (l1i >= s->l1_size)
            return -QCOW2_RESIZE_EIO; /* open guarantees l1_size covers the image */
        l2off = s->l1[l1i] & QCOW2_L1E_OFFSET_MASK;
        if (l2off & (s->cs - 1))
            return -QCOW2_RESIZE_EIO;
        if (!(s->l1[l1i] & QCOW2_OFLAG_COPIED)) {
            ret = l2_allocate(s, l1i);
            if (ret < 0)
                return ret;
            if (l2off)
                free_clusters(s, l2off, s->cs, false);
            l2off = s->l1[l1i] & QCOW2_L1E_OFFSET_MASK;
        } else {
            ret = s->io->pread(s->io->opaque, l2off, s->l2, s->cs);
            if (ret < 0)
                return ret;
        }
        l2i = (off >> s->cb) & (l2n - 1);
        n = nb < l2n - l2i ? nb : l2n - l2i;
        for (i = l2i; i < l2i + n; i++) {
            uint8_t *p = s->l2 + i * esz;
            uint8_t zero[16] = {0};

            if (memcmp(p, zero, esz))
                changed = true;
        }
        if (changed) {
            /* Keep the old entries to free them after the table is written. */
            memcpy(s->old, s->l2 + l2i * esz, n * esz);
            memset(s->l2 + l2i * esz, 0, n * esz);
            ret = meta_write(s, l2off, s->l2, s->cs, false);
            if (ret < 0)
                return ret;
            for (i = 0; i < n; i++)
                free_l2_entry(s, ld_be64(s->old + i * esz),
                              s->extl2 ? ld_be64(s->old + i * esz + 8) : 0);
        }
        nb -= n;
        off += n << s->cb;
    }
    return 0;
}

static int shrink_l1(struct rs *s, uint64_t new_size)
{
    uint8_t *zero;
    uint64_t i;
    int ret;

    if (new_size >= s->l1_size)
        return 0;
    zero = rs_mem(s, (s->l1_size - new_size) * 8);
    if (!zero)
        return -QCOW2_RESIZE_ENOMEM;
    ret = meta_write(s, s->l1_off + new_size * 8, zero, (s->l1_size - new_size) * 8, true);
    rs_free(s, zero);
    if (ret < 0) {
        memset(s->l1 + new_size, 0, (s->l1_size - new_size) * 8);
        return ret;
    }
    for (i = s->l1_size; i-- > new_size;) {
        if (!(s->l1[i] & QCOW2_L1E_OFFSET_MASK))
            continue;
        free_clusters(s, s->l1[i] & QCOW2_L1E_OFFSET_MASK, s->cs, true);
        s->l1[i] = 0;
    }
    return 0;
}

/*
 * qcow2_discard_refcount_block(): the block at off has left the table;
 * its own refcount (exactly 1) drops to 0.  The allocator drops the block
 * from its cache unwritten, as QEMU does.
 */
static int discard_refblock(struct rs *s, uint64_t off)
{
    uint64_t ti = off >> (s->a.rb_bits + s->cb), rc;
    int ret;

    if (ti >= s->a.reftable_size || !(s->a.reftable[ti] & QCOW2_REFT_OFFSET_MASK))
        return -QCOW2_RESIZE_EIO;
    ret = qcow2_alloc_get_refcount(&s->a, off >> s->cb, &rc);
    if (ret < 0)
        return ret;
    if (rc != 1)
        return -QCOW2_RESIZE_EINVAL;
    return qcow2_alloc_free(&s->a, off, s->cs, true);
}

/* Whether the refcount block in s->rb is all zeros, its own entry aside. */
static bool rb_unused(struct rs *s, bool self, uint64_t own_ci)
{
    uint64_t idx = own_ci & ((UINT64_C(1) << s->a.rb_bits) - 1);

    if (self)
        qcow2_refcount_set(s->rb, idx, s->a.refcount_order, 0);
    for (uint64_t i = 0; i < s->cs; i++)
        if (s->rb[i])
            return false;
    return true;
}

/*
 * qcow2_shrink_reftable(): every refcount block that counts nothing but
 * itself leaves the table (written at once), then its own refcount goes.
 */
static int shrink_reftable(struct rs *s)
{
    uint64_t n = s->a.reftable_size, i;
    uint8_t *raw;
    int ret;

    ret = qcow2_alloc_flush(&s->a);
    if (ret < 0)
        return ret;
    raw = rs_mem(s, n * 8);
    if (!raw)
        return -QCOW2_RESIZE_ENOMEM;
    for (i = 0; i < n; i++) {
        uint64_t off = s->a.reftable[i] & QCOW2_REFT_OFFSET_MASK;

        if (!off)
            continue;
        if (off & (s->cs - 1)) {
            ret = -QCOW2_RESIZE_EIO;
            goto out;
        }
        /* The allocator's cache was just written back: the file is current. */
        ret = s->io->pread(s->io->opaque, off, s->rb, s->cs);
        if (ret < 0)
            goto out;
        if (!rb_unused(s, i == off >> (s->a.rb_bits + s->cb), off >> s->cb))
            st_be64(raw + i * 8, s->a.reftable[i]);
    }
    ret = meta_write(s, s->a.reftable_offset, raw, n * 8, true);
    for (i = 0; i < n; i++) {
        if (s->a.reftable[i] && ld_be64(raw + i * 8) == 0) {
            if (ret == 0 && (s->a.reftable[i] & QCOW2_REFT_OFFSET_MASK))
                ret = discard_refblock(s, s->a.reftable[i] & QCOW2_REFT_OFFSET_MASK);
            s->a.reftable[i] = 0;
        }
    }
out:
    rs_free(s, raw);
    return ret;
}

/* qcow2_get_last_cluster(): the last cluster below size with a refcount. */
static int last_cluster(struct rs *s, uint64_t size, uint64_t *out)
{
    uint64_t i = size_to_clusters(s, size), rc;
    int ret;

    while (i-- > 0) {
        ret = qcow2_alloc_get_refcount(&s->a, i, &rc);
        if (ret < 0)
            return ret;
        if (rc > 0) {
            *out = i;
            return 0;
        }
    }
    return -QCOW2_RESIZE_EIO;
}

/* --- Setup and the operation --- */

static int rs_load(struct rs *s, const struct qcow2_resize_image *img)
{
    uint64_t l1b, i;
    uint8_t *raw;
    int ret;

    s->cb = img->cluster_bits;
    s->cs = UINT64_C(1) << s->cb;
    s->extl2 = img->extended_l2;
    s->data_file = img->data_file;
    s->l2_bits = s->cb - (s->extl2 ? 4 : 3);
    s->file_len = img->file_size;
    s->l1_size = img->l1_size;
    s->l1_off = img->l1_table_offset;

    ret = qcow2_alloc_init(&s->a, &rs_alloc_ops, s, img->cluster_bits, img->refcount_order,
                           img->refcount_table_offset, img->refcount_table_clusters);
    if (ret < 0)
        return ret;
    s->a_init = true;

    l1b = s->l1_size * 8;
    s->l2 = rs_mem(s, s->cs);
    s->old = rs_mem(s, s->cs);
    s->rb = rs_mem(s, s->cs);
    s->l1 = rs_mem(s, l1b);
    raw = rs_mem(s, l1b);
    if (!s->l2 || !s->old || !s->rb || !s->l1 || !raw) {
        rs_free(s, raw);
        return -QCOW2_RESIZE_ENOMEM;
    }
    ret = s->io->pread(s->io->opaque, s->l1_off, raw, l1b);
    for (i = 0; ret == 0 && i < s->l1_size; i++)
        s->l1[i] = ld_be64(raw + i * 8);
    rs_free(s, raw);
    return ret;
}

static void rs_release(struct rs *s)
{
    rs_free(s, s->l2);
    rs_free(s, s->old);
    rs_free(s, s->rb);
    rs_free(s, s->l1);
    if (s->a_init)
        qcow2_alloc_release(&s->a);
}

static int rs_write_size(struct rs *s, uint64_t size)
{
    st_be64(s->buf, size);
    return meta_write(s, HDR_SIZE_OFF, s->buf, 8, true);
}

static int rs_shrink(struct rs *s, uint64_t old_len, uint64_t new_size, int *code, int *warn_code,
                     int *warn_errno)
{
    uint64_t start = (new_size + s->cs - 1) & ~(s->cs - 1), last = 0, keep;
    int ret = 0;

    *code = QCOW2_RESIZE_ERR_DISCARD;
    if (start < old_len)
        ret = discard(s, start, size_to_clusters(s, old_len - start));
    discard_flush(s, ret == 0);
    if (ret == 0) {
        *code = QCOW2_RESIZE_ERR_SHRINK_L1;
        ret = shrink_l1(s, qcow2_resize_l1_entries(new_size, s->cb, s->extl2));
        discard_flush(s, true); /* each free was its own update_refcount() */
    }
    if (ret == 0) {
        *code = QCOW2_RESIZE_ERR_SHRINK_REFTABLE;
        ret = shrink_reftable(s);
        discard_flush(s, ret == 0);
    }
    if (ret == 0) {
        *code = QCOW2_RESIZE_ERR_LAST_CLUSTER;
        ret = last_cluster(s, s->file_len, &last);
    }
    if (ret == 0)
        ret = qcow2_alloc_flush(&s->a);
    if (ret < 0)
        return ret;
    keep = (last + 1) << s->cb;
    if (keep < s->file_len) {
        int t = s->io->truncate(s->io->opaque, keep);

        if (t < 0) {
            *warn_code = QCOW2_RESIZE_ERR_TRUNCATE_TAIL;
            *warn_errno = -t;
        } else {
            s->file_len = keep;
        }
    }
    /* The data file is cut at the new size (bdrv_co_truncate(exact)). */
    if (s->data_file) {
        *code = QCOW2_RESIZE_ERR_DATA_FILE;
        return s->io->data_truncate(s->io->opaque, new_size, QCOW2_PREALLOC_OFF);
    }
    return 0;
}

/* --- Grow with preallocation or zero-fill (prealloc.c) --- */

static int pa_truncate(void *opaque, int dev, uint64_t size, int mode)
{
    struct rs *s = opaque;
    int ret;

    if (dev == QCOW2_PREALLOC_DEV_DATA && s->data_file && s->io->data_truncate)
        return s->io->data_truncate(s->io->opaque, size, mode);
    if (dev != QCOW2_PREALLOC_DEV_IMAGE || !s->io->truncate_mode)
        return -QCOW2_RESIZE_EINVAL;
    ret = s->io->truncate_mode(s->io->opaque, size, mode);
    if (ret == 0)
        s->file_len = size;
    return ret;
}

static int pa_data_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    struct rs *s = opaque;

    return s->io->data_pwrite(s->io->opaque, off, buf, len);
}

static int pa_length(void *opaque, int dev, uint64_t *len)
{
    struct rs *s = opaque;

    if (dev == QCOW2_PREALLOC_DEV_DATA && s->data_file && s->io->data_length)
        return s->io->data_length(s->io->opaque, len);
    if (dev != QCOW2_PREALLOC_DEV_IMAGE)
        return -QCOW2_RESIZE_EINVAL;
    *len = s->file_len;
    return 0;
}

/* The L2 entry (and bitmap) of the cluster holding guest offset off, from the file. */
static int head_entry(struct rs *s, uint64_t off, uint64_t *entry, uint64_t *bitmap)
{
    uint64_t l1i = off >> (s->cb + s->l2_bits), l2off, l2i;
    uint8_t e[16];
    int ret;

    *entry = 0;
    *bitmap = 0;
    if (l1i >= s->l1_size)
        return 0;
    l2off = s->l1[l1i] & QCOW2_L1E_OFFSET_MASK;
    if (!l2off)
        return 0;
    if (l2off & (s->cs - 1))
        return -QCOW2_RESIZE_EIO;
    l2i = (off >> s->cb) & ((UINT64_C(1) << s->l2_bits) - 1);
    ret = s->io->pread(s->io->opaque, l2off + l2i * (s->extl2 ? 16 : 8), e, s->extl2 ? 16 : 8);
    if (ret < 0)
        return ret;
    *entry = ld_be64(e);
    *bitmap = s->extl2 ? ld_be64(e + 8) : 0;
    return 0;
}

/* Whether subclusters [from, to) of the cluster (entry, bitmap) are all plain data. */
static bool head_normal(struct rs *s, uint64_t entry, uint64_t bitmap, uint64_t from, uint64_t to)
{
    struct qcow2_l2_geom g = {.cluster_bits = s->cb, .extended_l2 = s->extl2, .data_file = false};
    uint64_t scs = s->extl2 ? s->cs / QCOW2_SUBCLUSTERS : s->cs;
    struct qcow2_l2_entry e;

    qcow2_l2_decode(entry, bitmap, &g, &e);
    if (e.type != QCOW2_L2_NORMAL || !e.copied || (e.host_offset & (s->cs - 1)))
        return false;
    if (s->extl2) {
        for (uint64_t sc = from / scs; sc <= (to - 1) / scs; sc++)
            if (!((bitmap >> sc) & 1) || ((bitmap >> (32 + sc)) & 1))
                return false;
    }
    return true;
}

/* Whether a copy of [from, to) of the cluster (entry, bitmap) would need the backing file. */
static bool head_cow_unsupported(struct rs *s, const struct qcow2_resize_image *img, uint64_t entry,
                                 uint64_t bitmap, uint64_t from, uint64_t to)
{
    struct qcow2_l2_geom g = {.cluster_bits = s->cb, .extended_l2 = s->extl2, .data_file = false};
    uint64_t scs = s->extl2 ? s->cs / QCOW2_SUBCLUSTERS : s->cs;
    struct qcow2_l2_entry e;

    if (from >= to)
        return false;
    /*
     * The block layer read the cluster's guest data beforehand: anything
     * copies (into a data file: an unallocated cluster, mapped 1:1).
     */
    if (img->head_data && !s->data_file)
        return false;
    if (img->head_data && img->head_len == to && entry == 0 && s->io->data_pwrite)
        return false;
    qcow2_l2_decode(entry, bitmap, &g, &e);
    if (e.type == QCOW2_L2_COMPRESSED)
        return true;
    if (e.type == QCOW2_L2_ZERO_PLAIN || e.type == QCOW2_L2_ZERO_ALLOC)
        return false;
    if ((e.host_offset & (s->cs - 1)) || !img->backing_head)
        return e.type == QCOW2_L2_NORMAL && (e.host_offset & (s->cs - 1));
    for (uint64_t sc = from / scs; sc <= (to - 1) / scs; sc++) {
        bool alloc = e.type == QCOW2_L2_NORMAL && (!s->extl2 || ((bitmap >> sc) & 1));
        bool zero = s->extl2 && ((bitmap >> (32 + sc)) & 1);

        if (!alloc && !zero)
            return true;
    }
    return false;
}

/*
 * A head cluster a write copies into a new one (handle_alloc): shared
 * data, or a plain zero cluster; with its guest data read beforehand
 * (have_head), a compressed one too.
 */
static bool head_cow_ok(struct rs *s, uint64_t entry, uint64_t bitmap, bool have_head)
{
    struct qcow2_l2_geom g = {.cluster_bits = s->cb, .extended_l2 = s->extl2, .data_file = false};
    struct qcow2_l2_entry e;

    qcow2_l2_decode(entry, bitmap, &g, &e);
    return (e.type == QCOW2_L2_NORMAL && !e.copied) || e.type == QCOW2_L2_ZERO_PLAIN ||
           (have_head && e.type == QCOW2_L2_COMPRESSED);
}

static bool head_zero_data_file(struct rs *s, uint64_t entry, uint64_t cstart);

/*
 * Before anything is written: whether the partial cluster at the old end
 * can be handled (QEMU would copy backing file or compressed data into a
 * new cluster, or rewrite a preallocated zero cluster: instar refuses).
 */
static int head_check(struct rs *s, const struct qcow2_resize_image *img, uint64_t old_len,
                      uint64_t new_size, bool zero_write)
{
    uint64_t in = old_len & (s->cs - 1), scs = s->extl2 ? s->cs / QCOW2_SUBCLUSTERS : s->cs;
    uint64_t entry, bitmap, wend = in + (new_size - old_len);
    int ret;

    if (old_len % scs == 0 && in == 0)
        return 0;
    if (wend > s->cs)
        wend = s->cs;
    ret = head_entry(s, old_len, &entry, &bitmap);
    if (ret < 0)
        return ret;
    switch (img->prealloc) {
    case QCOW2_PREALLOC_FALLOC:
    case QCOW2_PREALLOC_FULL:
        /* The whole head cluster moves to a new one: [0, in) is copied. */
        return head_cow_unsupported(s, img, entry, bitmap, 0, in) ? -QCOW2_PREALLOC_ENOTSUP : 0;
    case QCOW2_PREALLOC_METADATA:
        if (entry == 0) {
            uint64_t from = s->extl2 ? in / scs * scs : 0;

            if (head_cow_unsupported(s, img, entry, bitmap, from, in))
                return -QCOW2_PREALLOC_ENOTSUP;
            /* A new cluster's subclusters stay unallocated: a zero write would copy. */
            if (zero_write && old_len % scs && s->extl2)
                return -QCOW2_PREALLOC_ENOTSUP;
            return 0;
        }
        if (head_normal(s, entry, bitmap, in, wend))
            return 0;
        /*
         * A partly allocated cluster of its own with extended L2 entries:
         * kept, its edge subclusters copied (prealloc.c's
         * keep_extl2_edges: the head's old data read beforehand, a tail
         * over the backing file not built; the zero-fill would copy again).
         */
        if (s->extl2 && !s->data_file && !zero_write && !(entry & QCOW2_OFLAG_COMPRESSED) &&
            (entry & QCOW2_OFLAG_COPIED) && (entry & QCOW2_L2E_OFFSET_MASK) &&
            !((entry & QCOW2_L2E_OFFSET_MASK) & (s->cs - 1))) {
            uint64_t sc = (wend - 1) / scs;
            bool tail_normal = ((bitmap >> sc) & 1) && !((bitmap >> (32 + sc)) & 1);

            if (head_cow_unsupported(s, img, entry, bitmap, in / scs * scs, in))
                return -QCOW2_PREALLOC_ENOTSUP;
            if (wend % scs && !tail_normal && !((bitmap >> (32 + sc)) & 1) && img->backing_head)
                return -QCOW2_PREALLOC_ENOTSUP;
            return 0;
        }
        /*
         * Copied into a new cluster: a data cluster shared with a snapshot,
         * or a zero cluster without one; or a preallocated zero cluster
         * rewritten in place (prealloc.c's keep_zero_alloc; shared with a
         * snapshot, copied as a data cluster is).
         */
        if (!s->extl2 && !s->data_file && (entry & QCOW2_OFLAG_ZERO) &&
            (entry & QCOW2_L2E_OFFSET_MASK))
            return 0;
        /* A data file image's zero cluster: zeros copied into the data file (prealloc.c). */
        if (s->data_file && s->io->data_pwrite && head_zero_data_file(s, entry, old_len - in))
            return 0;
        return !s->extl2 && !s->data_file && head_cow_ok(s, entry, bitmap, img->head_data) &&
                       !head_cow_unsupported(s, img, entry, bitmap, 0, in)
                   ? 0
                   : -QCOW2_PREALLOC_ENOTSUP;
    default:
        if (!zero_write || old_len % scs == 0 || head_normal(s, entry, bitmap, in, in + 1))
            return 0;
        /* A data file image's head: zero_head_data_file_check() made sure. */
        if (s->data_file)
            return 0;
        /*
         * The explicit zeros of the head go through a write that copies the
         * cluster into a new one (zero_head_cow): with its guest data read
         * beforehand, and the write reaching the cluster's end or the
         * cluster's tail past the new end read too (head_tail: the backing
         * file's data there, as perform_cow() reads it).
         */
        if (img->head_data && img->head_len == in && !s->extl2 && !s->data_file &&
            (new_size >= old_len - in + s->cs || img->head_tail) &&
            (entry == 0 || head_cow_ok(s, entry, bitmap, true)))
            return 0;
        return -QCOW2_PREALLOC_ENOTSUP;
    }
}

/* Whether the head cluster is not plain data the zeros can be written into in place. */
static bool zero_head_needs_cow(struct rs *s, uint64_t old_len)
{
    uint64_t entry, bitmap, in = old_len & (s->cs - 1);

    if (head_entry(s, old_len, &entry, &bitmap) < 0)
        return false; /* zero_head() reports it */
    return !head_normal(s, entry, bitmap, in, in + 1);
}

/*
 * The explicit zeros of [guest, guest + len) written at host: through the
 * cipher of an encrypted image (p->encrypt), as qcow2_co_pwritev_task()
 * encrypts a write's data.
 */
static int zeros_write(struct rs *s, const struct qcow2_prealloc *p, uint64_t host, uint64_t guest,
                       uint8_t *z, uint64_t len)
{
    if (p->encrypt) {
        int ret;

        if ((host | guest | len) & 511)
            return -QCOW2_RESIZE_EIO;
        ret = p->encrypt(p->encrypt_opaque, host, guest, z, (size_t)len);
        if (ret < 0)
            return ret;
    }
    return rs_write(s, host, z, len);
}

/* The explicit zeros over [old_len, end) of the head cluster, written in place. */
static int zero_head(struct rs *s, const struct qcow2_prealloc *p, uint64_t old_len, uint64_t end)
{
    uint64_t entry, bitmap;
    uint8_t *z;
    int ret = head_entry(s, old_len, &entry, &bitmap);

    if (ret < 0)
        return ret;
    if (!head_normal(s, entry, bitmap, old_len & (s->cs - 1), (end - 1) % s->cs + 1))
        return -QCOW2_RESIZE_EIO; /* head_check made sure it is */
    z = rs_mem(s, end - old_len);
    if (!z)
        return -QCOW2_RESIZE_ENOMEM;
    ret = zeros_write(s, p, (entry & QCOW2_L2E_OFFSET_MASK) + (old_len & (s->cs - 1)), old_len, z,
                      end - old_len);
    rs_free(s, z);
    return ret;
}

/*
 * The explicit zeros over [old_len, end) (end: the head cluster's end) when
 * the head cluster is not plain data of its own: qcow2_co_pwritev_part()
 * allocates a new cluster (handle_alloc), copies the old guest data of
 * [0, old_len) into it (p->head_data), links it (the old reference
 * dropped), and the zeros are written there.
 */
static int zero_head_cow(struct rs *s, struct qcow2_prealloc *p, uint64_t old_len, uint64_t end)
{
    uint64_t bytes = end - old_len, host = 0;
    uint8_t *z;
    int ret;

    p->write = true;
    ret = qcow2_prealloc_alloc(p, old_len, &bytes, &host);
    p->write = false;
    if (ret < 0)
        return ret;
    if (bytes != end - old_len)
        return -QCOW2_RESIZE_EIO;
    z = rs_mem(s, bytes);
    if (!z)
        return -QCOW2_RESIZE_ENOMEM;
    ret = zeros_write(s, p, host, old_len, z, bytes);
    rs_free(s, z);
    return ret;
}

/*
 * A data file image's zero head cluster (without extended L2 entries):
 * unmapped, or mapped 1:1 of its own.  The zero-fill's write of it copies
 * zeros over the whole cluster (calculate_l2_meta(): a zero cluster's
 * copy-on-write reaches both of its ends), in place, then links it.
 */
static bool head_zero_data_file(struct rs *s, uint64_t entry, uint64_t cstart)
{
    struct qcow2_l2_geom g = {.cluster_bits = s->cb, .extended_l2 = false, .data_file = false};
    struct qcow2_l2_entry e;

    if (s->extl2)
        return false;
    qcow2_l2_decode(entry, 0, &g, &e);
    return e.type == QCOW2_L2_ZERO_PLAIN ||
           (e.type == QCOW2_L2_ZERO_ALLOC && e.copied && e.host_offset == cstart);
}

/*
 * A data file image's head cluster the zero-fill's explicit zeros can be
 * written to: plain data of its own (in place), a zero cluster (zeros over
 * it, in place), or unallocated with its old guest data read beforehand
 * (a new mapping, 1:1 in the data file).  0 or -QCOW2_RESIZE_ENOTSUP.
 */
static int zero_head_data_file_check(struct rs *s, const struct qcow2_resize_image *img,
                                     uint64_t old_len, uint64_t new_size)
{
    uint64_t entry, bitmap, in = old_len & (s->cs - 1);
    uint64_t scs = s->extl2 ? s->cs / QCOW2_SUBCLUSTERS : s->cs;

    if (!s->io->data_pwrite || head_entry(s, old_len, &entry, &bitmap) < 0)
        return -QCOW2_RESIZE_ENOTSUP;
    if (head_normal(s, entry, bitmap, in, in + 1) &&
        (entry & QCOW2_L2E_OFFSET_MASK) == (old_len & ~(s->cs - 1)))
        return 0;
    if (head_zero_data_file(s, entry, old_len & ~(s->cs - 1)))
        return 0;
    /*
     * Unallocated: a copy whose tail reaches past the new end reads the
     * backing file there (head_tail).
     */
    if (entry == 0 && ((img->head_data && img->head_len == in) || !img->backing_head) &&
        (new_size >= (old_len + scs - 1) / scs * scs || !img->backing_head ||
         (img->head_data && img->head_tail)))
        return 0;
    /*
     * Zero or unallocated subclusters of a kept cluster (extended L2
     * entries): the write's copy-on-write (zero_head_data_file_cow) takes
     * the cluster's guest data, read beforehand, whole.  (A compressed
     * cluster in a data file image is corruption to qemu, which marks the
     * image corrupt on the write: not done, refused.)
     */
    if (entry != 0 && !(entry & QCOW2_OFLAG_COMPRESSED) && img->head_data && img->head_len == in &&
        img->head_tail)
        return 0;
    return -QCOW2_RESIZE_ENOTSUP;
}

/* len bytes of buf at data file offset off: encrypted in place first for an encrypted image. */
static int data_file_write(struct rs *s, const struct qcow2_prealloc *p, uint64_t off, uint8_t *buf,
                           uint64_t len)
{
    if (p->encrypt) {
        int ret;

        if ((off | len) & 511)
            return -QCOW2_RESIZE_EIO;
        ret = p->encrypt(p->encrypt_opaque, off, off, buf, (size_t)len);
        if (ret < 0)
            return ret;
    }
    return s->io->data_pwrite(s->io->opaque, off, buf, (size_t)len);
}

/*
 * The explicit zeros over [old_len, end) of a data file image's head
 * cluster mapped otherwise, as qcow2_co_pwritev_part() writes them:
 * qcow2_alloc_host_offset() keeps the cluster (its zero or unallocated
 * subclusters at the write filled: the copy-on-write reaches the
 * subclusters' ends) or maps it 1:1 anew; the old guest data of the
 * copy-on-write regions (img->head_data, the whole cluster) and the
 * zeros go to the data file, then the L2 entry is linked.
 */
static int zero_head_data_file_cow(struct rs *s, struct qcow2_prealloc *p,
                                   const struct qcow2_resize_image *img, uint64_t old_len,
                                   uint64_t end)
{
    struct qcow2_l2meta m[QCOW2_WRITE_META_MAX];
    uint64_t bytes = end - old_len, host = 0, cstart = old_len & ~(s->cs - 1);
    uint64_t from = old_len - cstart, to = end - cstart;
    unsigned nm = 0;
    uint8_t *buf;
    int ret;

    ret = qcow2_prealloc_write_map(p, old_len, &bytes, &host, m, &nm);
    if (ret < 0)
        return ret;
    if (bytes != end - old_len || nm > 1 || host != old_len ||
        (nm && (m[0].offset != cstart || m[0].nb_clusters != 1 ||
                m[0].cow_start.offset + m[0].cow_start.bytes != from || m[0].cow_end.offset != to ||
                m[0].cow_end.offset + m[0].cow_end.bytes > s->cs))) {
        for (unsigned i = 0; i < nm; i++)
            qcow2_prealloc_write_abort(p, &m[i]);
        return -QCOW2_RESIZE_EIO;
    }
    if (nm) {
        from = m[0].cow_start.offset;
        to = m[0].cow_end.offset + m[0].cow_end.bytes;
    }
    buf = rs_mem(s, to - from);
    if (!buf) {
        for (unsigned i = 0; i < nm; i++)
            qcow2_prealloc_write_abort(p, &m[i]);
        return -QCOW2_RESIZE_ENOMEM;
    }
    memset(buf, 0, (size_t)(to - from));
    memcpy(buf, img->head_data + from, (size_t)(old_len - cstart - from));
    memcpy(buf + (end - cstart - from), img->head_data + (end - cstart),
           (size_t)(to - (end - cstart)));
    /* perform_cow(): the regions and the data in one write, as the data file receives them. */
    ret = s->io->data_pwrite(s->io->opaque, cstart + from, buf, (size_t)(to - from));
    rs_free(s, buf);
    if (ret == 0 && nm)
        ret = qcow2_prealloc_write_link(p, &m[0]);
    else if (nm)
        qcow2_prealloc_write_abort(p, &m[0]);
    return ret;
}

/*
 * The zero-fill's explicit zeros over [old_len, end) of a data file
 * image's head cluster (end: the (sub)cluster's end or the new size), as
 * qcow2_co_pwritev_part() writes them: in place when the cluster is
 * mapped; otherwise handle_alloc() maps it 1:1 and perform_cow() writes
 * its old guest data from the (sub)cluster's start before the zeros,
 * which go to the data file first, then the L2 entry links them.
 */
static int zero_head_data_file(struct rs *s, struct qcow2_prealloc *p,
                               const struct qcow2_resize_image *img, uint64_t old_len, uint64_t end)
{
    uint64_t entry, bitmap, in = old_len & (s->cs - 1), cstart = old_len - in;
    uint64_t scs = s->extl2 ? s->cs / QCOW2_SUBCLUSTERS : s->cs, from, wend, bytes, host = 0;
    uint8_t *buf;
    int ret = head_entry(s, old_len, &entry, &bitmap);

    if (ret < 0)
        return ret;
    if (entry != 0 && !head_zero_data_file(s, entry, cstart) &&
        !(head_normal(s, entry, bitmap, in, in + 1) && (entry & QCOW2_L2E_OFFSET_MASK) == cstart))
        return zero_head_data_file_cow(s, p, img, old_len, end);
    if (head_zero_data_file(s, entry, cstart)) {
        buf = rs_mem(s, s->cs);
        if (!buf)
            return -QCOW2_RESIZE_ENOMEM;
        memset(buf, 0, (size_t)s->cs);
        ret = data_file_write(s, p, cstart, buf, s->cs);
        rs_free(s, buf);
        return ret < 0 ? ret : qcow2_prealloc_link(p, cstart, cstart);
    }
    from = entry ? in : in / scs * scs;
    /* Unallocated: the copy-on-write's tail to the subcluster's end, past the new end. */
    wend = entry ? end - cstart : ((end - cstart) + scs - 1) / scs * scs;
    buf = rs_mem(s, wend - from);
    if (!buf)
        return -QCOW2_RESIZE_ENOMEM;
    memset(buf, 0, (size_t)(wend - from));
    if (!entry && img->head_data && img->head_len == in) {
        memcpy(buf, img->head_data + from, (size_t)(in - from));
        if (img->head_tail && wend > end - cstart)
            memcpy(buf + (end - cstart - from), img->head_data + (end - cstart),
                   (size_t)(wend - (end - cstart)));
    }
    ret = data_file_write(s, p, cstart + from, buf, wend - from);
    rs_free(s, buf);
    if (ret < 0 || entry)
        return ret;
    bytes = end - old_len;
    p->write = true;
    ret = qcow2_prealloc_alloc(p, old_len, &bytes, &host);
    p->write = false;
    if (ret == 0 && (bytes != end - old_len || host != old_len))
        ret = -QCOW2_RESIZE_EIO;
    return ret;
}

static int prealloc_code(int step)
{
    switch (step) {
    case QCOW2_PREALLOC_STEP_REFCOUNT_AREA:
        return QCOW2_RESIZE_ERR_REFCOUNT_AREA;
    case QCOW2_PREALLOC_STEP_DATA_ALLOC:
        return QCOW2_RESIZE_ERR_DATA_ALLOC;
    case QCOW2_PREALLOC_STEP_TRUNCATE:
        return QCOW2_RESIZE_ERR_UNDERLYING;
    default:
        return QCOW2_RESIZE_ERR_UPDATE_L2;
    }
}

/*
 * The grow: qcow2_grow_l1_table(exact), then the preallocation of the new
 * range, then the zero-fill over a longer backing file, then the caches.
 */
static int rs_grow(struct rs *s, const struct qcow2_resize_image *img, uint64_t old_len,
                   uint64_t new_size, int *code)
{
    struct qcow2_prealloc p;
    bool zero_write = img->zero_write && new_size > old_len;
    uint64_t scs = s->extl2 ? s->cs / QCOW2_SUBCLUSTERS : s->cs, zero_start;
    int ret, step = 0, prealloc = img->prealloc;

    *code = QCOW2_RESIZE_ERR_GROW_L1;
    /*
     * data_file_raw: the mapping must cover the whole data file, so a grow
     * preallocates the metadata at least.
     */
    if (s->data_file && img->data_file_raw && prealloc == QCOW2_PREALLOC_OFF)
        prealloc = QCOW2_PREALLOC_METADATA;
    /*
     * The zero-fill over a longer backing file of a data file image: the
     * explicit zeros of an unaligned head go to the data file, in place
     * or with a copy-on-write of the cluster there (zero_head_data_file);
     * what that does not cover is refused.
     */
    if (s->data_file && zero_write && old_len % scs) {
        ret = zero_head_data_file_check(s, img, old_len, new_size);
        if (ret < 0) {
            *code = QCOW2_RESIZE_ERR_NOTSUP_DATA_FILE;
            return ret;
        }
    }
    /*
     * An encrypted image: QEMU encrypts what perform_cow() copies or
     * zeroes (a partial cluster at either end of a metadata
     * preallocation, the head cluster moved by falloc/full) and the
     * explicit zeros of an unaligned head under the zero-fill; whole
     * clusters are mapped without a data write.
     */
    if (img->encrypted &&
        (((prealloc == QCOW2_PREALLOC_METADATA) && ((old_len | new_size) & (s->cs - 1))) ||
         ((prealloc == QCOW2_PREALLOC_FALLOC || prealloc == QCOW2_PREALLOC_FULL) &&
          (old_len & (s->cs - 1))) ||
         (zero_write && old_len % scs)) &&
        (!img->encrypt || (s->data_file && !s->io->data_pwrite) ||
         /* a data file's tail copy-on-write of the backing file's data: not built */
         (s->data_file && img->backing_head && prealloc != QCOW2_PREALLOC_OFF &&
          (new_size & (s->cs - 1))) ||
         ((old_len & (s->cs - 1)) &&
          (!img->head_data || img->head_len != (old_len & (s->cs - 1)))))) {
        *code = QCOW2_RESIZE_ERR_NOTSUP_CRYPT;
        return -QCOW2_RESIZE_ENOTSUP;
    }
    if (prealloc != QCOW2_PREALLOC_OFF || zero_write) {
        struct qcow2_resize_image hc = *img;

        hc.prealloc = prealloc;
        ret = head_check(s, &hc, old_len, new_size, zero_write);
        if (ret == -QCOW2_PREALLOC_ENOTSUP)
            *code = QCOW2_RESIZE_ERR_NOTSUP_HEAD;
        if (ret < 0)
            return ret;
    }
    ret = grow_l1(s, qcow2_resize_l1_entries(new_size, s->cb, s->extl2));
    if (ret < 0)
        return ret;
    if (prealloc == QCOW2_PREALLOC_OFF) {
        /* The data file follows the image's size exactly (bdrv_co_truncate(exact)). */
        if (s->data_file) {
            *code = QCOW2_RESIZE_ERR_DATA_FILE;
            ret = s->io->data_truncate(s->io->opaque, new_size, QCOW2_PREALLOC_OFF);
        }
        /* Then the zero-fill over a longer backing file, below. */
        if (ret < 0 || !zero_write)
            return ret;
    }

    memset(&p, 0, sizeof(p));
    p.a = &s->a;
    p.ops = &rs_alloc_ops;
    p.truncate = pa_truncate;
    p.length = pa_length;
    p.opaque = s;
    p.cluster_bits = s->cb;
    p.extended_l2 = s->extl2;
    p.data_file = s->data_file;
    p.data_cow = true;
    if (s->data_file && s->io->data_pwrite)
        p.data_write = pa_data_write;
    p.ordered = true;
    p.backing_len = img->backing_head ? UINT64_MAX : 0;
    if (img->head_data && (old_len & (s->cs - 1)) == img->head_len) {
        p.head_data = img->head_data;
        p.head_off = old_len & ~(s->cs - 1);
        p.head_len = img->head_len;
        p.head_tail = img->head_tail;
    }
    if (img->encrypted) {
        p.encrypt = img->encrypt;
        p.encrypt_opaque = img->encrypt_opaque;
    }
    p.l1 = s->l1;
    p.l1_size = s->l1_size;
    p.l1_offset = s->l1_off;
    ret = qcow2_prealloc_init(&p);
    if (ret < 0)
        return ret;

    switch (prealloc) {
    case QCOW2_PREALLOC_METADATA:
        *code = QCOW2_RESIZE_ERR_PREALLOC_ALLOC;
        ret = qcow2_prealloc_map(&p, old_len, new_size, QCOW2_PREALLOC_METADATA);
        break;
    case QCOW2_PREALLOC_FALLOC:
    case QCOW2_PREALLOC_FULL:
        if (s->data_file) {
            /* The metadata, and the data file grown with the mode (preallocate_co). */
            *code = QCOW2_RESIZE_ERR_PREALLOC_ALLOC;
            ret = qcow2_prealloc_map(&p, old_len, new_size, prealloc);
            break;
        }
        ret = qcow2_prealloc_file(&p, old_len, new_size, img->prealloc, zero_write, &step);
        *code = prealloc_code(step);
        /* The file driver honoured BDRV_REQ_ZERO_WRITE: nothing more to zero. */
        zero_write = false;
        break;
    default:
        break;
    }
    if (ret == 0 && zero_write) {
        zero_start = (old_len + scs - 1) / scs * scs;
        if (new_size > zero_start) {
            *code = QCOW2_RESIZE_ERR_ZERO_CLUSTERS;
            ret = qcow2_prealloc_zeroize(&p, img->version, zero_start, new_size - zero_start);
        }
        if (ret == 0 && zero_start > old_len) {
            *code = QCOW2_RESIZE_ERR_ZERO_AREA;
            ret = qcow2_prealloc_flush(&p);
            if (ret == 0 && s->data_file)
                ret = zero_head_data_file(s, &p, img, old_len,
                                          zero_start < new_size ? zero_start : new_size);
            else if (ret == 0)
                ret =
                    zero_head_needs_cow(s, old_len)
                        ? zero_head_cow(s, &p, old_len,
                                        zero_start < new_size ? zero_start : new_size)
                        : zero_head(s, &p, old_len, zero_start < new_size ? zero_start : new_size);
        }
    }
    if (ret == 0) {
        if (prealloc != QCOW2_PREALLOC_OFF)
            *code = QCOW2_RESIZE_ERR_FLUSH_PREALLOC;
        ret = qcow2_prealloc_flush(&p);
        if (ret == 0)
            ret = qcow2_alloc_flush(&s->a);
    } else {
        /* QEMU's close still writes its caches back (the size stays old). */
        if (qcow2_prealloc_flush(&p) == 0)
            (void)qcow2_alloc_flush(&s->a);
    }
    qcow2_prealloc_release(&p);
    return ret;
}

int qcow2_resize(const struct qcow2_resize_image *img, const struct qcow2_resize_io *io,
                 uint64_t new_size, int *errnum, int *warn_code, int *warn_errno)
{
    struct rs s;
    uint64_t old_len = img->size & ~UINT64_C(511);
    int code = 0, ret;

    *errnum = 0;
    *warn_code = 0;
    *warn_errno = 0;
    if (img->nb_snapshots && img->version < 3)
        return -QCOW2_RESIZE_ERR_V2_SNAPSHOTS;
    if (img->data_file && (!io->data_truncate || !io->data_length))
        return -QCOW2_RESIZE_ERR_NOTSUP_DATA_FILE;

    memset(&s, 0, sizeof(s));
    s.io = io;
    code = new_size < old_len ? QCOW2_RESIZE_ERR_DISCARD : QCOW2_RESIZE_ERR_GROW_L1;
    ret = rs_load(&s, img);
    if (ret < 0)
        goto out;

    if (new_size < old_len)
        ret = rs_shrink(&s, old_len, new_size, &code, warn_code, warn_errno);
    else
        ret = rs_grow(&s, img, old_len, new_size, &code);
    if (ret == 0) {
        code = QCOW2_RESIZE_ERR_UPDATE_SIZE;
        ret = rs_write_size(&s, new_size);
    }
    /* The refcounts lowered after the last write (old L1 table). */
    if (ret == 0)
        ret = qcow2_alloc_flush(&s.a);
out:
    if (img->free_cluster_index && s.a_init)
        *img->free_cluster_index = s.a.free_cluster_index;
    rs_release(&s);
    if (ret < 0) {
        *errnum = -ret;
        return -code;
    }
    return 0;
}
