/*
 * Guest-to-host mapping for a growing qcow2 image (see prealloc.h): the
 * steps of QEMU 7.2's preallocate_co(), the falloc/full branch of
 * qcow2_co_truncate() and qcow2_subcluster_zeroize(), in QEMU's order, so
 * that every cluster lands where QEMU puts it.  Layout facts from
 * qcow2.txt ("Cluster mapping", "Extended L2 Entries").
 */
#include "prealloc.h"

#include <string.h>

#include "l2.h"

#define INT_MAX_U   UINT64_C(0x7fffffff)
#define REQUEST_MAX UINT64_C(0x7ffffe00) /* BDRV_REQUEST_MAX_BYTES */
#define INV_OFFSET  UINT64_MAX

static void st64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static int wr(struct qcow2_prealloc *p, uint64_t off, const void *buf, size_t len)
{
    return p->ops->write(p->opaque, off, buf, len);
}

/* Metadata other than refcount blocks: in ordered mode, refcounts first. */
static int meta_wr(struct qcow2_prealloc *p, uint64_t off, const void *buf, size_t len)
{
    if (p->ordered) {
        int ret = qcow2_alloc_flush(p->a);

        if (ret < 0) {
            return ret;
        }
    }
    return wr(p, off, buf, len);
}

static uint64_t l2_entry(const struct qcow2_prealloc *p, uint64_t i)
{
    return ld64(p->l2 + i * p->l2e_size);
}

static uint64_t l2_bitmap(const struct qcow2_prealloc *p, uint64_t i)
{
    return p->extended_l2 ? ld64(p->l2 + i * p->l2e_size + 8) : 0;
}

static void l2_set(struct qcow2_prealloc *p, uint64_t i, uint64_t entry, uint64_t bitmap)
{
    st64(p->l2 + i * p->l2e_size, entry);
    if (p->extended_l2) {
        st64(p->l2 + i * p->l2e_size + 8, bitmap);
    }
    p->l2_dirty = true;
}

static void decode(const struct qcow2_prealloc *p, uint64_t entry, uint64_t bitmap,
                   struct qcow2_l2_entry *e)
{
    struct qcow2_l2_geom g = {
        .cluster_bits = p->cluster_bits, .extended_l2 = p->extended_l2, .data_file = p->data_file};

    qcow2_l2_decode(entry, bitmap, &g, e);
}

int qcow2_prealloc_init(struct qcow2_prealloc *p)
{
    p->cs = UINT64_C(1) << p->cluster_bits;
    p->l2e_size = p->extended_l2 ? 16 : 8;
    p->l2_bits = p->cluster_bits - (p->extended_l2 ? 4 : 3);
    p->l2_off = 0;
    p->l2_dirty = false;
    p->map_end = 0;
    p->data_cow_end = 0;
    p->l2 = p->ops->mem(p->opaque, NULL, (size_t)p->cs);
    if (!p->l2) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    memset(p->l2, 0, (size_t)p->cs);
    return 0;
}

void qcow2_prealloc_release(struct qcow2_prealloc *p)
{
    if (p->l2) {
        p->ops->mem(p->opaque, p->l2, 0);
        p->l2 = NULL;
    }
}

static int l2_flush(struct qcow2_prealloc *p)
{
    uint64_t len;
    int ret;

    if (p->l2_off && p->l2_dirty) {
        /*
         * Ordered: the file covers every cluster a table on disk maps
         * (QEMU writes its L2 cache only after preallocate_co's truncate).
         */
        if (p->ordered && p->map_end && !p->data_file) {
            ret = p->length(p->opaque, QCOW2_PREALLOC_DEV_IMAGE, &len);
            if (ret == 0 && p->map_end > len) {
                ret = p->truncate(p->opaque, QCOW2_PREALLOC_DEV_IMAGE, p->map_end,
                                  QCOW2_PREALLOC_OFF);
            }
            if (ret < 0) {
                return ret;
            }
        }
        ret = meta_wr(p, p->l2_off, p->l2, (size_t)p->cs);
        if (ret < 0) {
            return ret;
        }
        p->l2_dirty = false;
    }
    return 0;
}

int qcow2_prealloc_write_l1(struct qcow2_prealloc *p)
{
    size_t bytes = (size_t)p->l1_size * 8;
    uint8_t *be;
    int ret;

    if (!p->l1_size) {
        return 0;
    }
    be = p->ops->mem(p->opaque, NULL, bytes);
    if (!be) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    for (uint64_t i = 0; i < p->l1_size; i++) {
        st64(be + i * 8, p->l1[i]);
    }
    ret = meta_wr(p, p->l1_offset, be, bytes);
    p->ops->mem(p->opaque, be, 0);
    return ret;
}

int qcow2_prealloc_flush(struct qcow2_prealloc *p)
{
    int ret = l2_flush(p);

    if (ret == 0 && !p->ordered) {
        ret = qcow2_prealloc_write_l1(p);
    }
    return ret;
}

/*
 * get_cluster_table(): the L2 table for guest_offset in the cache; an
 * L1 entry without a table of its own gets one (l2_allocate: a copy of
 * the shared table, or zeros), whose old table then loses a reference.
 */
static int get_l2(struct qcow2_prealloc *p, uint64_t guest_offset, uint64_t *l2_index)
{
    uint64_t l1_index = guest_offset >> (p->cluster_bits + p->l2_bits);
    uint64_t l1e, l2_off;
    int64_t off;
    uint8_t be[8];
    int ret;

    *l2_index = (guest_offset >> p->cluster_bits) & ((UINT64_C(1) << p->l2_bits) - 1);
    if (l1_index >= p->l1_size) {
        return -QCOW2_ALLOC_EIO;
    }
    l1e = p->l1[l1_index];
    l2_off = l1e & QCOW2_L1E_OFFSET_MASK;
    if (l2_off & (p->cs - 1)) {
        return -QCOW2_ALLOC_EIO;
    }
    if (l2_off && (l1e & QCOW2_OFLAG_COPIED)) {
        if (p->l2_off == l2_off) {
            return 0;
        }
        ret = l2_flush(p);
        if (ret < 0) {
            return ret;
        }
        p->l2_off = 0;
        ret = p->ops->read(p->opaque, l2_off, p->l2, (size_t)p->cs);
        if (ret < 0) {
            return ret;
        }
        p->l2_off = l2_off;
        return 0;
    }
    if (l2_off && !p->ordered) {
        return -QCOW2_ALLOC_EIO; /* never in a new image */
    }
    off = qcow2_alloc_clusters(p->a, p->cs);
    if (off < 0) {
        return (int)off;
    }
    if (off == 0) {
        return -QCOW2_ALLOC_EIO;
    }
    ret = l2_flush(p);
    if (ret < 0) {
        return ret;
    }
    p->l2_off = 0;
    if (l2_off) {
        ret = p->ops->read(p->opaque, l2_off, p->l2, (size_t)p->cs);
        if (ret < 0) {
            return ret;
        }
    } else {
        memset(p->l2, 0, (size_t)p->cs);
    }
    p->l2_off = (uint64_t)off;
    p->l2_dirty = true;
    p->l1[l1_index] = (uint64_t)off | QCOW2_OFLAG_COPIED;
    if (!p->ordered) {
        return 0;
    }
    /* l2_allocate(): the table, then the L1 entry; then the old table's reference. */
    ret = l2_flush(p);
    if (ret == 0) {
        st64(be, p->l1[l1_index]);
        ret = meta_wr(p, p->l1_offset + l1_index * 8, be, 8);
    }
    if (ret < 0) {
        return ret;
    }
    if (l2_off) {
        (void)qcow2_alloc_free(p->a, l2_off, p->cs, false);
    }
    return 0;
}

/* qcow2_free_any_cluster() for an entry a link replaced. */
static void free_entry(struct qcow2_prealloc *p, uint64_t entry, uint64_t bitmap)
{
    struct qcow2_l2_entry e;

    decode(p, entry, bitmap, &e);
    if (e.type == QCOW2_L2_COMPRESSED) {
        (void)qcow2_alloc_free(p->a, e.host_offset, e.csize, false);
    } else if ((e.type == QCOW2_L2_NORMAL || e.type == QCOW2_L2_ZERO_ALLOC) && !p->data_file &&
               !(e.host_offset & (p->cs - 1))) {
        (void)qcow2_alloc_free(p->a, e.host_offset, p->cs, false);
    }
}

/*
 * qcow2_alloc_cluster_link_l2(): nb entries from guest_offset point at
 * host (COPIED).  alloc_bits: QEMU's !prealloc, the subclusters become
 * allocated (extended L2).  Entries that held a cluster lose it after the
 * table is written (ordered mode).
 */
static int link_l2(struct qcow2_prealloc *p, uint64_t guest_offset, uint64_t host, uint64_t nb,
                   bool alloc_bits, uint64_t w_start, uint64_t w_end)
{
    uint64_t l2_index, old_entry[2] = {0, 0}, old_bitmap[2] = {0, 0}, nold = 0;
    int ret = get_l2(p, guest_offset, &l2_index);

    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = 0; i < nb; i++) {
        uint64_t e = l2_entry(p, l2_index + i), b = l2_bitmap(p, l2_index + i);

        if (e != 0) {
            if (nold == 2 || !p->ordered) {
                return -QCOW2_ALLOC_EIO; /* only the head cluster of a grow can be mapped */
            }
            old_entry[nold] = e;
            old_bitmap[nold++] = b;
        }
        if (alloc_bits) {
            /*
             * A data write allocates the subclusters it covers (its
             * copy-on-write reaches to their edges): QCOW_OFLAG_SUB_ALLOC_RANGE.
             */
            uint64_t base = guest_offset + (i << p->cluster_bits), scs = p->cs / QCOW2_SUBCLUSTERS;
            uint64_t a = w_start > base ? w_start - base : 0;
            uint64_t z = w_end < base + p->cs ? w_end - base : p->cs;
            uint64_t sa = a / scs, sz = (z + scs - 1) / scs;
            uint64_t bits = (sz >= 32 ? UINT64_C(0xffffffff) : (UINT64_C(1) << sz) - 1) &
                            ~((UINT64_C(1) << sa) - 1);

            b = (b | bits) & ~(bits << 32);
        }
        l2_set(p, l2_index + i, (host + (i << p->cluster_bits)) | QCOW2_OFLAG_COPIED, b);
    }
    if (nold) {
        ret = l2_flush(p);
        if (ret < 0) {
            return ret;
        }
        for (uint64_t i = 0; i < nold; i++) {
            free_entry(p, old_entry[i], old_bitmap[i]);
        }
    }
    return 0;
}

int qcow2_prealloc_link(struct qcow2_prealloc *p, uint64_t guest_offset, uint64_t host)
{
    int ret = link_l2(p, guest_offset & ~(p->cs - 1), host, 1, false, 0, 0);

    return ret < 0 ? ret : l2_flush(p);
}

/*
 * Guest data of [guest, guest + len) written at host offset off: through
 * the cipher first for an encrypted image (do_perform_cow_encrypt()).
 */
static int data_wr(struct qcow2_prealloc *p, uint64_t off, uint64_t guest, uint8_t *buf, size_t len)
{
    if (p->encrypt) {
        int ret;

        if ((off | guest | len) & 511) {
            return -QCOW2_ALLOC_EIO;
        }
        ret = p->encrypt(p->encrypt_opaque, off, guest, buf, len);
        if (ret < 0) {
            return ret;
        }
    }
    return wr(p, off, buf, len);
}

/* Zeros over [off, off + len) of the image file (len below one cluster), guest offset guest. */
static int write_zeros(struct qcow2_prealloc *p, uint64_t off, uint64_t guest, uint64_t len)
{
    uint8_t *z;
    int ret;

    if (!len) {
        return 0;
    }
    z = p->ops->mem(p->opaque, NULL, (size_t)len);
    if (!z) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    memset(z, 0, (size_t)len);
    ret = data_wr(p, off, guest, z, (size_t)len);
    p->ops->mem(p->opaque, z, 0);
    return ret;
}

/* Zeros over [off, off + len) of the external data file (len below one cluster). */
static int data_zeros(struct qcow2_prealloc *p, uint64_t off, uint64_t len)
{
    uint8_t *z;
    int ret;

    if (!len) {
        return 0;
    }
    if (!p->data_write) {
        return -QCOW2_PREALLOC_ENOTSUP;
    }
    z = p->ops->mem(p->opaque, NULL, (size_t)len);
    if (!z) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    memset(z, 0, (size_t)len);
    ret = p->data_write(p->opaque, off, z, (size_t)len);
    p->ops->mem(p->opaque, z, 0);
    return ret;
}

/* data_wr() of a copy of src: the cipher encrypts its buffer in place. */
static int data_wr_copy(struct qcow2_prealloc *p, uint64_t off, uint64_t guest, const uint8_t *src,
                        size_t len)
{
    uint8_t *c;
    int ret;

    if (!p->encrypt) {
        return wr(p, off, src, len);
    }
    c = p->ops->mem(p->opaque, NULL, len);
    if (!c) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    memcpy(c, src, len);
    ret = data_wr(p, off, guest, c, len);
    p->ops->mem(p->opaque, c, 0);
    return ret;
}

/*
 * [len bytes of src, or zeros when src is NULL) at data file offset off
 * (= its guest offset): through the cipher first for an encrypted image,
 * as perform_cow() encrypts what it writes there.
 */
static int data_file_wr(struct qcow2_prealloc *p, uint64_t off, const uint8_t *src, size_t len)
{
    uint8_t *c;
    int ret;

    if (!p->encrypt && src) {
        return p->data_write(p->opaque, off, src, len);
    }
    if ((off | len) & 511) {
        return -QCOW2_ALLOC_EIO;
    }
    c = p->ops->mem(p->opaque, NULL, len);
    if (!c) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    if (src) {
        memcpy(c, src, len);
    } else {
        memset(c, 0, len);
    }
    ret = p->encrypt ? p->encrypt(p->encrypt_opaque, off, off, c, len) : 0;
    if (ret == 0) {
        ret = p->data_write(p->opaque, off, c, len);
    }
    p->ops->mem(p->opaque, c, 0);
    return ret;
}

/*
 * The guest data of [0, len) of the cluster whose entry is (entry,
 * bitmap), as perform_cow() reads it, into buf.  Backing file data and
 * compressed clusters are not read: -QCOW2_PREALLOC_ENOTSUP, unless the
 * caller read the cluster's guest data beforehand (p->head_data).
 * backing_covers: the backing file has data in this cluster.
 */
static int cow_read(struct qcow2_prealloc *p, uint64_t guest, uint64_t entry, uint64_t bitmap,
                    bool backing_covers, uint8_t *buf, uint64_t len)
{
    struct qcow2_l2_entry e;
    uint64_t scs = p->extended_l2 ? p->cs / QCOW2_SUBCLUSTERS : p->cs;
    int ret;

    if (p->head_data && guest == p->head_off && len <= p->head_len) {
        memcpy(buf, p->head_data, (size_t)len);
        return 0;
    }
    decode(p, entry, bitmap, &e);
    memset(buf, 0, (size_t)len);
    switch (e.type) {
    case QCOW2_L2_COMPRESSED:
        return -QCOW2_PREALLOC_ENOTSUP;
    case QCOW2_L2_ZERO_PLAIN:
    case QCOW2_L2_ZERO_ALLOC:
        return 0;
    case QCOW2_L2_UNALLOCATED:
    case QCOW2_L2_NORMAL:
        break;
    }
    if (e.host_offset & (p->cs - 1)) {
        return -QCOW2_ALLOC_EIO;
    }
    for (uint64_t off = 0; off < len; off += scs) {
        uint64_t n = len - off < scs ? len - off : scs, sc = off / scs;
        bool alloc, zero = false;

        if (p->extended_l2) {
            alloc = e.type == QCOW2_L2_NORMAL && (bitmap >> sc & 1);
            zero = (bitmap >> (32 + sc)) & 1;
        } else {
            alloc = e.type == QCOW2_L2_NORMAL;
        }
        if (alloc && p->encrypt) {
            return -QCOW2_PREALLOC_ENOTSUP; /* ciphertext: read through the image beforehand */
        }
        if (alloc) {
            ret = p->ops->read(p->opaque, e.host_offset + off, buf + off, (size_t)n);
            if (ret < 0) {
                return ret;
            }
        } else if (!zero && backing_covers) {
            return -QCOW2_PREALLOC_ENOTSUP;
        }
    }
    return 0;
}

/*
 * perform_cow() for the head of a new cluster at host: [from, to) of the
 * cluster gets the old guest data (entry/bitmap: the entry it replaces).
 */
static int cow_head(struct qcow2_prealloc *p, uint64_t guest, uint64_t entry, uint64_t bitmap,
                    bool backing_covers, uint64_t host, uint64_t from, uint64_t to)
{
    uint8_t *buf;
    int ret;

    if (to <= from) {
        return 0;
    }
    buf = p->ops->mem(p->opaque, NULL, (size_t)to);
    if (!buf) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    ret = cow_read(p, guest, entry, bitmap, backing_covers, buf, to);
    if (ret == 0) {
        ret = data_wr(p, host + from, guest + from, buf + from, (size_t)(to - from));
    }
    p->ops->mem(p->opaque, buf, 0);
    return ret;
}

/*
 * handle_copied() for the entry at l2_index: the run of clusters that can
 * be kept, with the subclusters to be written all allocated (QEMU then
 * skips the copy-on-write: calculate_l2_meta's skip_cow).  Returns the
 * run length (0: the entry needs a new cluster) or -errno.
 */
static int64_t keep_run(struct qcow2_prealloc *p, uint64_t l2_index, uint64_t in_cluster,
                        uint64_t bytes, uint64_t want_host, uint64_t *host)
{
    uint64_t nb = (in_cluster + bytes + p->cs - 1) >> p->cluster_bits, n, scs, i;
    uint64_t l2n = UINT64_C(1) << p->l2_bits;
    struct qcow2_l2_entry e;

    if (nb > l2n - l2_index) {
        nb = l2n - l2_index;
    }
    if (nb > (REQUEST_MAX >> p->cluster_bits)) {
        nb = REQUEST_MAX >> p->cluster_bits;
    }
    decode(p, l2_entry(p, l2_index), l2_bitmap(p, l2_index), &e);
    if (!((e.type == QCOW2_L2_NORMAL || e.type == QCOW2_L2_ZERO_ALLOC) && e.copied)) {
        return 0;
    }
    if (e.host_offset & (p->cs - 1)) {
        return -QCOW2_ALLOC_EIO;
    }
    if (want_host != INV_OFFSET && e.host_offset != want_host) {
        *host = INV_OFFSET;
        return 0;
    }
    *host = e.host_offset;
    /*
     * A preallocated zero cluster of its own, the run's first: kept and
     * rewritten in place (keep_zero_alloc), alone (extended L2 entries:
     * not built).
     */
    if (e.type == QCOW2_L2_ZERO_ALLOC && !p->extended_l2 && (!p->data_file || p->data_write) &&
        p->ordered && want_host == INV_OFFSET) {
        return 1;
    }
    for (n = 1; n < nb; n++) {
        struct qcow2_l2_entry f;

        decode(p, l2_entry(p, l2_index + n), l2_bitmap(p, l2_index + n), &f);
        if (f.type != e.type || !f.copied ||
            f.host_offset != e.host_offset + (n << p->cluster_bits)) {
            break;
        }
    }
    /* Every subcluster written must be a normal one, or QEMU would copy. */
    scs = p->extended_l2 ? p->cs / QCOW2_SUBCLUSTERS : p->cs;
    for (i = 0; i < n; i++) {
        uint64_t from = i ? 0 : in_cluster, to = p->cs;
        uint64_t b = l2_bitmap(p, l2_index + i);

        if ((i << p->cluster_bits) + to > in_cluster + bytes) {
            to = in_cluster + bytes - (i << p->cluster_bits);
        }
        if (from >= to) {
            break;
        }
        if (e.type == QCOW2_L2_ZERO_ALLOC) {
            return -QCOW2_PREALLOC_ENOTSUP;
        }
        if (p->extended_l2) {
            for (uint64_t sc = from / scs; sc <= (to - 1) / scs; sc++) {
                /* A mapping of one kept cluster copies its edges (keep_extl2_edges). */
                if ((!((b >> sc) & 1) || ((b >> (32 + sc)) & 1)) && (p->write || n != 1)) {
                    return -QCOW2_PREALLOC_ENOTSUP;
                }
            }
        }
    }
    return (int64_t)n;
}

/*
 * A preallocated zero cluster of its own that a mapping of [in_cluster,
 * in_cluster + cur) keeps (handle_copied(), calculate_l2_meta() with
 * keep_old): perform_cow() writes what the cluster reads, zeros, over
 * [0, in_cluster) and from the end of the range to the end of the
 * cluster, in place, then qcow2_alloc_cluster_link_l2() points the entry
 * at the same cluster without the zero flag (its reference kept).
 */
static int keep_zero_alloc(struct qcow2_prealloc *p, uint64_t l2_index, uint64_t cstart,
                           uint64_t entry, uint64_t bitmap, uint64_t host, uint64_t in_cluster,
                           uint64_t cur)
{
    int ret;

    /* An external data file's cluster (mapped 1:1): the zeros go there. */
    if (p->data_file) {
        ret = data_zeros(p, host, in_cluster);
        if (ret == 0 && in_cluster + cur < p->cs) {
            ret = data_zeros(p, host + in_cluster + cur, p->cs - in_cluster - cur);
        }
        if (ret < 0) {
            return ret;
        }
        l2_set(p, l2_index, host | QCOW2_OFLAG_COPIED, bitmap);
        return l2_flush(p);
    }
    ret = cow_head(p, cstart, entry, bitmap, false, host, 0, in_cluster);

    if (ret == 0 && in_cluster + cur < p->cs) {
        ret = write_zeros(p, host + in_cluster + cur, cstart + in_cluster + cur,
                          p->cs - in_cluster - cur);
    }
    if (ret < 0) {
        return ret;
    }
    l2_set(p, l2_index, host | QCOW2_OFLAG_COPIED, bitmap);
    return l2_flush(p);
}

/* Whether subcluster sc of an extended L2 bitmap is plain data (QCOW2_SUBCLUSTER_NORMAL). */
static bool sc_normal(uint64_t bitmap, uint64_t sc)
{
    return ((bitmap >> sc) & 1) && !((bitmap >> (32 + sc)) & 1);
}

/*
 * A kept cluster with extended L2 entries mapped over [in_cluster,
 * in_cluster + cur) without data (metadata preallocation):
 * calculate_l2_meta() with keep_old copies, when the subcluster at either
 * edge is not plain data, its part outside the range (perform_cow(): the
 * head from the subcluster's start, its old guest data; the tail to the
 * subcluster's end, zeros past the old end), and
 * qcow2_alloc_cluster_link_l2() leaves the bitmap as it was (prealloc).
 * A tail over the backing file's data is not built.
 */
static int keep_extl2_edges(struct qcow2_prealloc *p, uint64_t cstart, uint64_t entry,
                            uint64_t bitmap, uint64_t host, uint64_t in_cluster, uint64_t cur)
{
    uint64_t scs = p->cs / QCOW2_SUBCLUSTERS, end = in_cluster + cur, sc;
    int ret;

    sc = in_cluster / scs;
    if (in_cluster % scs && !sc_normal(bitmap, sc)) {
        ret =
            cow_head(p, cstart, entry, bitmap, p->backing_len > cstart, host, sc * scs, in_cluster);
        if (ret < 0) {
            return ret;
        }
    }
    sc = (end - 1) / scs;
    if (end % scs && !sc_normal(bitmap, sc)) {
        if (!((bitmap >> (32 + sc)) & 1) && p->backing_len > cstart + end) {
            return -QCOW2_PREALLOC_ENOTSUP;
        }
        ret = write_zeros(p, host + end, cstart + end, (sc + 1) * scs - end);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/*
 * qcow2_alloc_host_offset() over a range at the end of the image, each
 * allocation linked as qcow2_handle_l2meta() then does (prealloc set).
 * *bytes shrinks to what was mapped; *host_offset is its start.
 */
int qcow2_prealloc_alloc(struct qcow2_prealloc *p, uint64_t offset, uint64_t *bytes,
                         uint64_t *host_offset)
{
    uint64_t start = offset, remaining = *bytes, cur = 0;
    uint64_t cluster_offset = INV_OFFSET;
    int ret;

    *host_offset = INV_OFFSET;
    for (;;) {
        if (*host_offset == INV_OFFSET && cluster_offset != INV_OFFSET) {
            *host_offset = cluster_offset;
        }
        start += cur;
        remaining -= cur;
        if (cluster_offset != INV_OFFSET) {
            cluster_offset += cur;
        }
        if (remaining == 0) {
            break;
        }
        cur = remaining;

        uint64_t in_cluster = start & (p->cs - 1);
        uint64_t cstart = start - in_cluster;
        uint64_t l2_entries = UINT64_C(1) << p->l2_bits;
        uint64_t l2_index, kept_host = 0;
        int64_t keep;

        /* handle_copied(): loads (allocates) the L2 table, keeps COPIED clusters. */
        ret = get_l2(p, start, &l2_index);
        if (ret < 0) {
            return ret;
        }
        uint64_t old_e = l2_entry(p, l2_index), old_b = l2_bitmap(p, l2_index);

        if (old_e != 0) {
            if (!p->ordered) {
                return -QCOW2_ALLOC_EIO;
            }
            keep =
                keep_run(p, l2_index, in_cluster, cur,
                         cluster_offset == INV_OFFSET ? INV_OFFSET : cluster_offset & ~(p->cs - 1),
                         &kept_host);
            if (keep < 0) {
                return (int)keep;
            }
            if (keep > 0) {
                uint64_t avail = ((uint64_t)keep << p->cluster_bits) - in_cluster;

                if (cur > avail) {
                    cur = avail;
                }
                cluster_offset = kept_host + in_cluster;
                if (p->extended_l2 && !p->write && keep == 1) {
                    ret = keep_extl2_edges(p, cstart, old_e, old_b, kept_host, in_cluster, cur);
                    if (ret < 0) {
                        return ret;
                    }
                }
                if ((old_e & QCOW2_OFLAG_ZERO) && !p->extended_l2) {
                    ret = keep_zero_alloc(p, l2_index, cstart, old_e, old_b, kept_host, in_cluster,
                                          cur);
                    if (ret < 0) {
                        return ret;
                    }
                }
                continue;
            }
            if (kept_host == INV_OFFSET) {
                break; /* a kept cluster, but not the contiguous one */
            }
            /*
             * A cluster that needs copy-on-write into a new one (shared
             * with a snapshot, or zero): handle_alloc() below, its old
             * data copied (cow_read refuses what it cannot read), the old
             * reference dropped by link_l2.  Only as a run's first cluster.
             */
            if (*host_offset != INV_OFFSET || !p->ordered) {
                return -QCOW2_PREALLOC_ENOTSUP;
            }
        }

        /* handle_alloc(): a run of unallocated entries. */
        uint64_t nb = (in_cluster + cur + p->cs - 1) >> p->cluster_bits;
        if (nb > l2_entries - l2_index) {
            nb = l2_entries - l2_index;
        }
        if (nb > (REQUEST_MAX >> p->cluster_bits)) {
            nb = REQUEST_MAX >> p->cluster_bits;
        }
        for (uint64_t i = 1; i < nb; i++) {
            if (l2_entry(p, l2_index + i) != 0) {
                nb = i;
                break;
            }
        }
        uint64_t alloc_off;
        if (p->data_file) {
            alloc_off = cstart;
        } else if (cluster_offset == INV_OFFSET) {
            int64_t r = qcow2_alloc_clusters(p->a, nb << p->cluster_bits);
            if (r < 0) {
                return (int)r;
            }
            alloc_off = (uint64_t)r;
        } else {
            alloc_off = cluster_offset & ~(p->cs - 1);
            int64_t r = qcow2_alloc_clusters_at(p->a, alloc_off, nb);
            if (r < 0) {
                return (int)r;
            }
            nb = (uint64_t)r;
            if (nb == 0) {
                break;
            }
        }
        uint64_t avail = nb << p->cluster_bits;
        uint64_t req = cur + in_cluster;
        uint64_t nb_bytes = req < avail ? req : avail;
        if (cur > nb_bytes - in_cluster) {
            cur = nb_bytes - in_cluster;
        }
        cluster_offset = alloc_off + in_cluster;
        if (alloc_off + in_cluster + cur > p->map_end) {
            p->map_end = alloc_off + in_cluster + cur;
        }

        /*
         * perform_cow(): the part of the first cluster before the range
         * gets the old data (zeros here) and a range ending inside a
         * cluster gets the rest of that cluster written (zeros: nothing is
         * below the end of the image).
         */
        bool data_head = p->data_file && p->data_cow && p->data_write && p->head_data &&
                         old_e == 0 && cstart == p->head_off && in_cluster == p->head_len;
        /* A zero cluster (unmapped) of a data file image: its copy-on-write is zeros. */
        bool data_zero = p->data_file && p->data_cow && p->data_write && !p->extended_l2 &&
                         old_e != 0 && (old_e & QCOW2_OFLAG_ZERO);
        if (in_cluster && !p->data_file) {
            uint64_t scs = p->extended_l2 ? p->cs / QCOW2_SUBCLUSTERS : p->cs;
            uint64_t from = p->extended_l2 ? in_cluster / scs * scs : 0;

            ret = cow_head(p, cstart, old_e, old_b, p->backing_len > cstart, alloc_off, from,
                           in_cluster);
            if (ret < 0) {
                return ret;
            }
        } else if (in_cluster && data_zero) {
            ret = data_zeros(p, alloc_off, in_cluster);
            if (ret < 0) {
                return ret;
            }
        } else if (in_cluster && data_head) {
            /* The data file's copy of the unallocated head, read beforehand. */
            uint64_t scs = p->extended_l2 ? p->cs / QCOW2_SUBCLUSTERS : p->cs;
            uint64_t from = p->extended_l2 ? in_cluster / scs * scs : 0;

            if (in_cluster > from) {
                ret = data_file_wr(p, alloc_off + from, p->head_data + from,
                                   (size_t)(in_cluster - from));
                if (ret < 0) {
                    return ret;
                }
            }
        }
        ret = link_l2(p, cstart, alloc_off, nb, p->write, start, start + cur);
        if (ret < 0) {
            return ret;
        }
        /* cow_end: to the end of the cluster, or of the subcluster (extended L2). */
        uint64_t mapped_end = in_cluster + cur, alloc_end = nb << p->cluster_bits;
        if (p->extended_l2) {
            uint64_t scs = p->cs / QCOW2_SUBCLUSTERS;

            alloc_end = (mapped_end + scs - 1) / scs * scs;
        }
        if (mapped_end < alloc_end && !p->data_file && p->head_data && p->head_tail &&
            cstart == p->head_off && alloc_end <= p->cs) {
            ret = data_wr_copy(p, alloc_off + mapped_end, cstart + mapped_end,
                               p->head_data + mapped_end, (size_t)(alloc_end - mapped_end));
            if (ret < 0) {
                return ret;
            }
        } else if (mapped_end < alloc_end && !p->data_file) {
            ret =
                write_zeros(p, alloc_off + mapped_end, cstart + mapped_end, alloc_end - mapped_end);
            if (ret < 0) {
                return ret;
            }
        } else if (mapped_end < alloc_end && data_zero && alloc_end <= p->cs) {
            ret = data_zeros(p, alloc_off + mapped_end, alloc_end - mapped_end);
            if (ret < 0) {
                return ret;
            }
        } else if (mapped_end < alloc_end && data_head && p->head_tail && alloc_end <= p->cs) {
            ret = data_file_wr(p, alloc_off + mapped_end, p->head_data + mapped_end,
                               (size_t)(alloc_end - mapped_end));
            if (ret < 0) {
                return ret;
            }
        } else if (mapped_end < alloc_end && p->data_file && p->encrypt && p->data_write) {
            /* An encrypted image's zeros are not zeros in the file: written, encrypted. */
            ret = data_file_wr(p, alloc_off + mapped_end, NULL, (size_t)(alloc_end - mapped_end));
            if (ret < 0) {
                return ret;
            }
        } else if (mapped_end < alloc_end && alloc_off + alloc_end > p->data_cow_end) {
            p->data_cow_end = alloc_off + alloc_end;
        }
    }
    *bytes -= remaining;
    return 0;
}

int qcow2_prealloc_map(struct qcow2_prealloc *p, uint64_t offset, uint64_t new_length, int mode)
{
    uint64_t bytes = new_length - offset, host_offset = 0, cur = 0, len;
    uint64_t chunk = INT_MAX_U & ~(p->cs - 1);
    int dev = p->data_file ? QCOW2_PREALLOC_DEV_DATA : QCOW2_PREALLOC_DEV_IMAGE;
    int ret;

    while (bytes) {
        cur = bytes < chunk ? bytes : chunk;
        ret = qcow2_prealloc_alloc(p, offset, &cur, &host_offset);
        if (ret < 0) {
            return ret;
        }
        bytes -= cur;
        offset += cur;
    }
    ret = p->length(p->opaque, dev, &len);
    if (ret < 0) {
        return ret;
    }
    /* The zeros perform_cow() wrote past the data file's end extended it first. */
    if (p->data_file && p->data_cow && p->data_cow_end > len) {
        ret = p->truncate(p->opaque, dev, p->data_cow_end, QCOW2_PREALLOC_OFF);
        if (ret < 0) {
            return ret;
        }
        len = p->data_cow_end;
    }
    if (host_offset + cur > len) {
        ret = p->truncate(p->opaque, dev, host_offset + cur,
                          mode == QCOW2_PREALLOC_METADATA ? QCOW2_PREALLOC_OFF : mode);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* qcow2_get_last_cluster(): the last cluster with a reference, before size. */
static int64_t last_cluster(struct qcow2_prealloc *p, uint64_t size)
{
    uint64_t rc;

    for (uint64_t i = (size + p->cs - 1) >> p->cluster_bits; i-- > 0;) {
        int ret = qcow2_alloc_get_refcount(p->a, i, &rc);
        if (ret < 0) {
            return ret;
        }
        if (rc > 0) {
            return (int64_t)i;
        }
    }
    return -QCOW2_ALLOC_EIO;
}

int qcow2_prealloc_file(struct qcow2_prealloc *p, uint64_t old_length, uint64_t size, int mode,
                        bool zero_write, int *step)
{
    uint64_t file_size, nb_data, nb_l2, guest, host, old_start, l2n;
    uint64_t head_e = 0, head_b = 0, head_l2i;
    int64_t last, start, got;
    int ret;

    ret = p->length(p->opaque, QCOW2_PREALLOC_DEV_IMAGE, &file_size);
    if (ret < 0) {
        return ret;
    }
    last = last_cluster(p, file_size);
    if (last >= 0) {
        file_size = ((uint64_t)last + 1) << p->cluster_bits;
    } else {
        file_size = (file_size + p->cs - 1) & ~(p->cs - 1);
    }
    old_start = old_length & ~(p->cs - 1);
    nb_data = (((size + p->cs - 1) & ~(p->cs - 1)) - old_start) >> p->cluster_bits;
    l2n = UINT64_C(1) << p->l2_bits;
    nb_l2 = (nb_data + l2n - 1) >> p->l2_bits;
    nb_l2++;

    *step = QCOW2_PREALLOC_STEP_REFCOUNT_AREA;
    start = qcow2_alloc_refcount_area(p->a, file_size, nb_data + nb_l2, true, 0, 0);
    if (start < 0) {
        return (int)start;
    }
    *step = QCOW2_PREALLOC_STEP_DATA_ALLOC;
    got = qcow2_alloc_clusters_at(p->a, (uint64_t)start, nb_data);
    if (got < 0) {
        return (int)got;
    }
    if ((uint64_t)got != nb_data) {
        return -QCOW2_ALLOC_EIO;
    }
    ret = qcow2_alloc_flush(p->a);
    if (ret < 0) {
        return ret;
    }
    *step = QCOW2_PREALLOC_STEP_TRUNCATE;
    ret = p->truncate(p->opaque, QCOW2_PREALLOC_DEV_IMAGE,
                      (uint64_t)start + (nb_data << p->cluster_bits), mode);
    if (ret < 0) {
        return ret;
    }
    *step = QCOW2_PREALLOC_STEP_L2;
    host = (uint64_t)start;
    guest = old_start;
    if (old_length & (p->cs - 1)) {
        /* The partial head cluster: its old data is copied (perform_cow). */
        ret = get_l2(p, guest, &head_l2i);
        if (ret < 0) {
            return ret;
        }
        head_e = l2_entry(p, head_l2i);
        head_b = l2_bitmap(p, head_l2i);
        ret = cow_head(p, old_start, head_e, head_b, p->backing_len > old_start, host, 0,
                       old_length & (p->cs - 1));
        if (ret < 0) {
            return ret;
        }
    }
    while (nb_data) {
        uint64_t l2_index = (guest >> p->cluster_bits) & (l2n - 1);
        uint64_t nb = l2n - l2_index;
        if (nb > nb_data) {
            nb = nb_data;
        }
        ret = link_l2(p, guest, host, nb, zero_write, 0, UINT64_MAX);
        if (ret < 0) {
            return ret;
        }
        guest += nb << p->cluster_bits;
        host += nb << p->cluster_bits;
        nb_data -= nb;
    }
    return 0;
}

/*
 * zero_in_l2_slice() (flags QCOW2_ZEROIZE_*): whole clusters from offset,
 * one table.  An entry that loses its cluster (compressed, or with UNMAP
 * an allocated one) is written out before the cluster's reference drops.
 */
static int64_t zero_in_l2(struct qcow2_prealloc *p, uint64_t offset, uint64_t nb, unsigned flags)
{
    uint64_t l2_index, l2n = UINT64_C(1) << p->l2_bits;
    int ret = get_l2(p, offset, &l2_index);

    if (ret < 0) {
        return ret;
    }
    if (nb > l2n - l2_index) {
        nb = l2n - l2_index;
    }
    for (uint64_t i = 0; i < nb; i++) {
        uint64_t e = l2_entry(p, l2_index + i), b = l2_bitmap(p, l2_index + i);
        struct qcow2_l2_entry d;
        uint64_t ne, nbm = b;
        bool allocated, unmap;

        decode(p, e, b, &d);
        allocated = d.type == QCOW2_L2_NORMAL || d.type == QCOW2_L2_ZERO_ALLOC;
        unmap = d.type == QCOW2_L2_COMPRESSED ||
                ((flags & (QCOW2_ZEROIZE_UNMAP | QCOW2_ZEROIZE_V2_DISCARD)) && allocated);
        ne = unmap ? 0 : e;
        if (flags & QCOW2_ZEROIZE_V2_DISCARD) {
            ne = 0; /* discard_in_l2_slice() on version 2: no zero flag */
            if (flags & QCOW2_ZEROIZE_FULL_DISCARD) {
                nbm = 0;
            }
        } else if (p->extended_l2) {
            nbm = QCOW2_BITMAP_ALL_ZEROES;
        } else {
            ne |= QCOW2_OFLAG_ZERO;
        }
        if (ne == e && nbm == b) {
            continue;
        }
        l2_set(p, l2_index + i, ne, nbm);
        if (unmap) {
            ret = l2_flush(p);
            if (ret < 0) {
                return ret;
            }
            /* qcow2_free_any_cluster(): a compressed cluster's bytes, else the cluster. */
            if (d.type == QCOW2_L2_COMPRESSED) {
                (void)qcow2_alloc_free(p->a, d.host_offset, d.csize,
                                       (flags & QCOW2_ZEROIZE_DISCARD) != 0);
            } else if (!p->data_file && !(d.host_offset & (p->cs - 1))) {
                (void)qcow2_alloc_free(p->a, d.host_offset, p->cs,
                                       (flags & QCOW2_ZEROIZE_DISCARD) != 0);
            } else if (p->data_file && p->discard_data && (flags & QCOW2_ZEROIZE_DISCARD) &&
                       !(d.host_offset & (p->cs - 1))) {
                p->discard_data(p->opaque, d.host_offset, p->cs);
            }
        }
    }
    return (int64_t)nb;
}

int qcow2_prealloc_zeroize(struct qcow2_prealloc *p, uint32_t version, uint64_t offset,
                           uint64_t bytes)
{
    return qcow2_prealloc_zeroize_flags(p, version, offset, bytes, offset + bytes, 0);
}

/* zero_l2_subclusters(): n subclusters from offset, within one cluster. */
static int zero_subclusters(struct qcow2_prealloc *p, uint64_t offset, uint64_t n)
{
    uint64_t scs = p->extended_l2 ? p->cs / QCOW2_SUBCLUSTERS : p->cs;
    uint64_t l2_index, sc = (offset & (p->cs - 1)) / scs, b, range;
    struct qcow2_l2_entry d;
    int ret = get_l2(p, offset, &l2_index);

    if (ret < 0) {
        return ret;
    }
    decode(p, l2_entry(p, l2_index), l2_bitmap(p, l2_index), &d);
    if (d.type == QCOW2_L2_COMPRESSED) {
        return -QCOW2_PREALLOC_ENOTSUP;
    }
    b = l2_bitmap(p, l2_index);
    range = ((UINT64_C(1) << n) - 1) << sc;
    if (((b | range << 32) & ~range) != b) {
        l2_set(p, l2_index, l2_entry(p, l2_index), (b | range << 32) & ~range);
    }
    return 0;
}

int qcow2_prealloc_zeroize_flags(struct qcow2_prealloc *p, uint32_t version, uint64_t offset,
                                 uint64_t bytes, uint64_t size, unsigned flags)
{
    uint64_t end = offset + bytes, head, tail, nb, cstart;
    uint64_t scs = p->extended_l2 ? p->cs / QCOW2_SUBCLUSTERS : p->cs;
    int ret;

    if (flags & QCOW2_ZEROIZE_FULL_DISCARD) {
        flags |= QCOW2_ZEROIZE_V2_DISCARD;
    } else if (version < 3) {
        /* Without a backing file qemu discards instead (qcow2_cluster_discard). */
        if (!(flags & QCOW2_ZEROIZE_NO_BACKING)) {
            return -QCOW2_PREALLOC_ENOTSUP;
        }
        flags |= QCOW2_ZEROIZE_V2_DISCARD;
    }
    head = ((offset + p->cs - 1) & ~(p->cs - 1)) - offset;
    if (head > bytes) {
        head = bytes;
    }
    offset += head;
    cstart = end & ~(p->cs - 1);
    tail = end >= size ? 0 : end - (offset > cstart ? offset : cstart);
    end -= tail;
    if ((head || tail) && (flags & QCOW2_ZEROIZE_V2_DISCARD)) {
        return -QCOW2_PREALLOC_ENOTSUP; /* the caller passes whole clusters */
    }
    if (head) {
        ret = zero_subclusters(p, offset - head, (head + scs - 1) / scs);
        if (ret < 0) {
            return ret;
        }
    }
    nb = end > offset ? (end - offset + p->cs - 1) >> p->cluster_bits : 0;
    while (nb > 0) {
        int64_t done = zero_in_l2(p, offset, nb, flags);

        if (done < 0) {
            return (int)done;
        }
        nb -= (uint64_t)done;
        offset += (uint64_t)done << p->cluster_bits;
    }
    if (tail) {
        ret = zero_subclusters(p, end, (tail + scs - 1) / scs);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/*
 * --- Guest writes: qcow2_alloc_host_offset() and qcow2_alloc_cluster_link_l2()
 * (block/qcow2-cluster.c), for an existing image in ordered mode ---
 */

/* qcow2_get_cluster_type() (no data file). */
enum wr_type {
    WR_UNALLOCATED,
    WR_ZERO_PLAIN,
    WR_ZERO_ALLOC,
    WR_NORMAL,
    WR_COMPRESSED,
};

static enum wr_type wr_cluster_type(const struct qcow2_prealloc *p, uint64_t e)
{
    if (e & QCOW2_OFLAG_COMPRESSED) {
        return WR_COMPRESSED;
    }
    if ((e & QCOW2_OFLAG_ZERO) && !p->extended_l2) {
        return (e & QCOW2_L2E_OFFSET_MASK) ? WR_ZERO_ALLOC : WR_ZERO_PLAIN;
    }
    return (e & QCOW2_L2E_OFFSET_MASK) ? WR_NORMAL : WR_UNALLOCATED;
}

/* cluster_needs_new_alloc(): anything but a COPIED normal or preallocated zero cluster. */
static bool wr_needs_new_alloc(const struct qcow2_prealloc *p, uint64_t e)
{
    enum wr_type t = wr_cluster_type(p, e);

    return !((t == WR_NORMAL || t == WR_ZERO_ALLOC) && (e & QCOW2_OFLAG_COPIED));
}

/* count_single_write_clusters() */
static uint64_t wr_count(const struct qcow2_prealloc *p, uint64_t nb, uint64_t l2_index,
                         bool new_alloc)
{
    uint64_t expected = l2_entry(p, l2_index) & QCOW2_L2E_OFFSET_MASK, i;

    for (i = 0; i < nb; i++) {
        uint64_t e = l2_entry(p, l2_index + i);

        if (wr_needs_new_alloc(p, e) != new_alloc) {
            break;
        }
        if (!new_alloc) {
            if (expected != (e & QCOW2_L2E_OFFSET_MASK)) {
                break;
            }
            expected += p->cs;
        }
    }
    return i;
}

static unsigned wr_sc_bits(const struct qcow2_prealloc *p)
{
    return p->cluster_bits - (p->extended_l2 ? 5 : 0);
}

static unsigned wr_sc_per_cluster(const struct qcow2_prealloc *p)
{
    return p->extended_l2 ? QCOW2_SUBCLUSTERS : 1;
}

/* offset_to_sc_index() */
static unsigned wr_sc_index(const struct qcow2_prealloc *p, uint64_t off)
{
    return (unsigned)((off >> wr_sc_bits(p)) & (wr_sc_per_cluster(p) - 1));
}

/* qcow2_get_subcluster_type() of entry l2_index. */
static enum qcow2_subcluster_type wr_sc_type(const struct qcow2_prealloc *p, uint64_t l2_index,
                                             unsigned sc)
{
    struct qcow2_l2_geom g = {
        .cluster_bits = p->cluster_bits, .extended_l2 = p->extended_l2, .data_file = p->data_file};
    struct qcow2_l2_entry e;

    decode(p, l2_entry(p, l2_index), l2_bitmap(p, l2_index), &e);
    return qcow2_l2_subcluster_type(&e, &g, sc);
}

/* qcow2_get_subcluster_range_type(): subclusters from sc_from of its type; -1 if invalid. */
static int wr_sc_range(const struct qcow2_prealloc *p, uint64_t l2_index, unsigned sc_from,
                       enum qcow2_subcluster_type *type)
{
    unsigned spc = wr_sc_per_cluster(p), n;

    *type = wr_sc_type(p, l2_index, sc_from);
    if (*type == QCOW2_SC_INVALID) {
        return -1;
    }
    if (!p->extended_l2 || *type == QCOW2_SC_COMPRESSED) {
        return (int)(spc - sc_from);
    }
    for (n = sc_from + 1; n < spc; n++) {
        if (wr_sc_type(p, l2_index, n) != *type) {
            break;
        }
    }
    return (int)(n - sc_from);
}

/* ctz32() and clz32() of QEMU's cutils: 32 for 0. */
static unsigned wr_ctz32(uint32_t v)
{
    return v ? (unsigned)__builtin_ctz(v) : 32;
}

static unsigned wr_clz32(uint32_t v)
{
    return v ? (unsigned)__builtin_clz(v) : 32;
}

/*
 * calculate_l2_meta(): the meta of [guest_offset, + bytes) mapped to the
 * clusters at host_cluster (entries from l2_index of the cached table),
 * appended to m[*nm] unless a kept run needs no copy-on-write.
 */
static int wr_meta(struct qcow2_prealloc *p, uint64_t host_cluster, uint64_t guest_offset,
                   uint64_t bytes, uint64_t l2_index, bool keep_old, struct qcow2_l2meta *m,
                   unsigned *nm)
{
    unsigned sc_bits = wr_sc_bits(p), spc = wr_sc_per_cluster(p), sc_index;
    uint64_t scs = UINT64_C(1) << sc_bits;
    uint64_t cow_start_to = guest_offset & (p->cs - 1);
    uint64_t cow_end_from = cow_start_to + bytes;
    uint64_t nb = (cow_end_from + p->cs - 1) >> p->cluster_bits;
    uint64_t cow_start_from = 0, cow_end_to = 0, last = l2_index + nb - 1;
    enum qcow2_subcluster_type type = QCOW2_SC_INVALID;
    bool skip_cow = keep_old;
    uint32_t alloc_bitmap;

    for (uint64_t i = 0; i < nb; i++) {
        if (skip_cow) {
            uint64_t from =
                cow_start_to > (i << p->cluster_bits) ? cow_start_to : i << p->cluster_bits;
            uint64_t to = cow_end_from < ((i + 1) << p->cluster_bits) ? cow_end_from
                                                                      : (i + 1) << p->cluster_bits;
            unsigned first_sc = wr_sc_index(p, from), last_sc = wr_sc_index(p, to - 1);
            int cnt = wr_sc_range(p, l2_index + i, first_sc, &type);

            if (type != QCOW2_SC_NORMAL || cnt < 0 || first_sc + (unsigned)cnt <= last_sc) {
                skip_cow = false;
            }
        } else {
            type = wr_sc_type(p, l2_index + i, 0);
        }
        if (type == QCOW2_SC_INVALID) {
            return -QCOW2_ALLOC_EIO; /* qcow2_signal_corruption: "Invalid cluster entry" */
        }
    }
    if (skip_cow) {
        return 0;
    }

    sc_index = wr_sc_index(p, guest_offset);
    type = wr_sc_type(p, l2_index, sc_index);
    alloc_bitmap = (uint32_t)(l2_bitmap(p, l2_index) & QCOW2_BITMAP_ALL_ALLOC);
    switch (type) {
    case QCOW2_SC_COMPRESSED:
        if (keep_old) {
            return -QCOW2_ALLOC_EIO;
        }
        cow_start_from = 0;
        break;
    case QCOW2_SC_NORMAL:
        if (keep_old) {
            cow_start_from = cow_start_to;
            break;
        }
        /* fallthrough */
    case QCOW2_SC_ZERO_ALLOC:
    case QCOW2_SC_UNALLOCATED_ALLOC:
        if (keep_old) {
            cow_start_from = (uint64_t)sc_index << sc_bits;
        } else if (p->extended_l2) {
            /* Skip the leading zero and unallocated subclusters. */
            unsigned first = wr_ctz32(alloc_bitmap);

            cow_start_from = (uint64_t)(sc_index < first ? sc_index : first) << sc_bits;
        } else {
            cow_start_from = 0;
        }
        break;
    case QCOW2_SC_ZERO_PLAIN:
    case QCOW2_SC_UNALLOCATED_PLAIN:
        if (keep_old) {
            return -QCOW2_ALLOC_EIO;
        }
        cow_start_from = (uint64_t)sc_index << sc_bits;
        break;
    default:
        return -QCOW2_ALLOC_EIO;
    }

    sc_index = wr_sc_index(p, guest_offset + bytes - 1);
    type = wr_sc_type(p, last, sc_index);
    alloc_bitmap = (uint32_t)(l2_bitmap(p, last) & QCOW2_BITMAP_ALL_ALLOC);
    switch (type) {
    case QCOW2_SC_COMPRESSED:
        if (keep_old) {
            return -QCOW2_ALLOC_EIO;
        }
        cow_end_to = (cow_end_from + p->cs - 1) & ~(p->cs - 1);
        break;
    case QCOW2_SC_NORMAL:
        if (keep_old) {
            cow_end_to = cow_end_from;
            break;
        }
        /* fallthrough */
    case QCOW2_SC_ZERO_ALLOC:
    case QCOW2_SC_UNALLOCATED_ALLOC:
        if (keep_old) {
            cow_end_to = (cow_end_from + scs - 1) & ~(scs - 1);
        } else {
            cow_end_to = (cow_end_from + p->cs - 1) & ~(p->cs - 1);
            if (p->extended_l2) {
                /* Skip the trailing zero and unallocated subclusters. */
                unsigned tail = wr_clz32(alloc_bitmap), room = spc - sc_index - 1;

                cow_end_to -= (uint64_t)(room < tail ? room : tail) << sc_bits;
            }
        }
        break;
    case QCOW2_SC_ZERO_PLAIN:
    case QCOW2_SC_UNALLOCATED_PLAIN:
        if (keep_old) {
            return -QCOW2_ALLOC_EIO;
        }
        cow_end_to = (cow_end_from + scs - 1) & ~(scs - 1);
        break;
    default:
        return -QCOW2_ALLOC_EIO;
    }

    m[*nm] = (struct qcow2_l2meta){
        .offset = guest_offset & ~(p->cs - 1),
        .alloc_offset = host_cluster,
        .nb_clusters = nb,
        .keep_old = keep_old,
        .cow_start = {cow_start_from, cow_start_to - cow_start_from},
        .cow_end = {cow_end_from, cow_end_to - cow_end_from},
    };
    (*nm)++;
    return 0;
}

/* How many clusters from guest_offset a step may look at: its L2 table, BDRV_REQUEST_MAX_BYTES. */
static uint64_t wr_span(const struct qcow2_prealloc *p, uint64_t guest_offset, uint64_t bytes)
{
    uint64_t l2n = UINT64_C(1) << p->l2_bits;
    uint64_t nb = ((guest_offset & (p->cs - 1)) + bytes + p->cs - 1) >> p->cluster_bits;
    uint64_t room = l2n - ((guest_offset >> p->cluster_bits) & (l2n - 1));

    if (nb > room) {
        nb = room;
    }
    if (nb > (REQUEST_MAX >> p->cluster_bits)) {
        nb = REQUEST_MAX >> p->cluster_bits;
    }
    return nb;
}

/* handle_copied(): 1 with a kept run, 0 when the cluster needs a new one (or *bytes = 0). */
static int wr_copied(struct qcow2_prealloc *p, uint64_t guest_offset, uint64_t *host_offset,
                     uint64_t *bytes, struct qcow2_l2meta *m, unsigned *nm)
{
    uint64_t oic = guest_offset & (p->cs - 1), nb = wr_span(p, guest_offset, *bytes);
    uint64_t l2_index, e, cluster_offset, keep;
    int ret = get_l2(p, guest_offset, &l2_index);

    if (ret < 0) {
        return ret;
    }
    e = l2_entry(p, l2_index);
    if (wr_needs_new_alloc(p, e)) {
        return 0;
    }
    cluster_offset = e & QCOW2_L2E_OFFSET_MASK;
    if (cluster_offset & (p->cs - 1)) {
        return -QCOW2_ALLOC_EIO; /* "Data cluster offset ... unaligned" */
    }
    if (*host_offset != INV_OFFSET && cluster_offset != *host_offset) {
        *bytes = 0;
        return 0;
    }
    keep = wr_count(p, nb, l2_index, false);
    if (*bytes > (keep << p->cluster_bits) - oic) {
        *bytes = (keep << p->cluster_bits) - oic;
    }
    ret = wr_meta(p, cluster_offset, guest_offset, *bytes, l2_index, true, m, nm);
    if (ret < 0) {
        return ret;
    }
    *host_offset = cluster_offset + oic;
    return 1;
}

/* handle_alloc() with do_alloc_cluster_offset(): 1 with new clusters, 0 when none fit. */
static int wr_alloc(struct qcow2_prealloc *p, uint64_t guest_offset, uint64_t *host_offset,
                    uint64_t *bytes, struct qcow2_l2meta *m, unsigned *nm)
{
    uint64_t oic = guest_offset & (p->cs - 1), nb = wr_span(p, guest_offset, *bytes);
    uint64_t l2_index, alloc, nb_bytes;
    int ret = get_l2(p, guest_offset, &l2_index);
    int64_t r;

    if (ret < 0) {
        return ret;
    }
    nb = wr_count(p, nb, l2_index, true);
    if (nb == 0) {
        return -QCOW2_ALLOC_EIO;
    }
    if (p->data_file) {
        /* do_alloc_cluster_offset(): a data file's clusters lie at their guest offset. */
        alloc = guest_offset & ~(p->cs - 1);
        if (*host_offset != INV_OFFSET && *host_offset != alloc) {
            return -QCOW2_ALLOC_EIO;
        }
    } else if (*host_offset == INV_OFFSET) {
        r = qcow2_alloc_clusters(p->a, nb << p->cluster_bits);
        if (r < 0) {
            return (int)r;
        }
        alloc = (uint64_t)r;
    } else {
        alloc = *host_offset & ~(p->cs - 1);
        r = qcow2_alloc_clusters_at(p->a, alloc, nb);
        if (r < 0) {
            return (int)r;
        }
        nb = (uint64_t)r;
    }
    if (nb == 0) {
        *bytes = 0;
        return 0;
    }
    nb_bytes = *bytes + oic < (nb << p->cluster_bits) ? *bytes + oic : nb << p->cluster_bits;
    if (*bytes > nb_bytes - oic) {
        *bytes = nb_bytes - oic;
    }
    ret = wr_meta(p, alloc, guest_offset, *bytes, l2_index, false, m, nm);
    if (ret < 0) {
        if (!p->data_file) {
            (void)qcow2_alloc_free(p->a, alloc, nb << p->cluster_bits, false);
        }
        return ret;
    }
    *host_offset = alloc + oic;
    return 1;
}

int qcow2_prealloc_write_map(struct qcow2_prealloc *p, uint64_t offset, uint64_t *bytes,
                             uint64_t *host_offset, struct qcow2_l2meta *m, unsigned *nmeta)
{
    uint64_t start = offset, remaining = *bytes, cluster_offset = INV_OFFSET, cur = 0;
    int ret = 0;

    *host_offset = INV_OFFSET;
    *nmeta = 0;
    if (!p->ordered) {
        return -QCOW2_PREALLOC_ENOTSUP;
    }
    for (;;) {
        if (*host_offset == INV_OFFSET && cluster_offset != INV_OFFSET) {
            *host_offset = cluster_offset;
        }
        start += cur;
        remaining -= cur;
        if (cluster_offset != INV_OFFSET) {
            cluster_offset += cur;
        }
        /* Every step may add a meta: stop gathering while there is room for one more. */
        if (remaining == 0 || *nmeta == QCOW2_WRITE_META_MAX) {
            break;
        }
        cur = remaining;
        ret = wr_copied(p, start, &cluster_offset, &cur, m, nmeta);
        if (ret < 0) {
            goto fail;
        }
        if (ret) {
            continue;
        }
        if (cur == 0) {
            break;
        }
        ret = wr_alloc(p, start, &cluster_offset, &cur, m, nmeta);
        if (ret < 0) {
            goto fail;
        }
        if (!ret) {
            break;
        }
    }
    *bytes -= remaining;
    return 0;
fail:
    for (unsigned i = 0; i < *nmeta; i++) {
        qcow2_prealloc_write_abort(p, &m[i]);
    }
    *nmeta = 0;
    return ret;
}

int qcow2_prealloc_write_link(struct qcow2_prealloc *p, const struct qcow2_l2meta *m)
{
    uint64_t l2_index, *old = NULL, nold = 0;
    int ret = get_l2(p, m->offset, &l2_index);

    if (ret < 0) {
        return ret;
    }
    if (l2_index + m->nb_clusters > (UINT64_C(1) << p->l2_bits)) {
        return -QCOW2_ALLOC_EIO;
    }
    if (!m->keep_old) {
        old = p->ops->mem(p->opaque, NULL, (size_t)m->nb_clusters * 16);
        if (!old) {
            return -QCOW2_ALLOC_ENOMEM;
        }
    }
    for (uint64_t i = 0; i < m->nb_clusters; i++) {
        uint64_t e = l2_entry(p, l2_index + i), b = l2_bitmap(p, l2_index + i);

        if (e != 0 && old) {
            old[2 * nold] = e;
            old[2 * nold++ + 1] = b;
        }
        if (p->extended_l2) {
            /* The subclusters written (data and copy-on-write) are allocated now. */
            uint64_t from = m->cow_start.offset, to = m->cow_end.offset + m->cow_end.bytes;
            unsigned first_sc, last_sc;
            uint64_t range;

            if (from < (i << p->cluster_bits)) {
                from = i << p->cluster_bits;
            }
            if (to > ((i + 1) << p->cluster_bits)) {
                to = (i + 1) << p->cluster_bits;
            }
            first_sc = wr_sc_index(p, from);
            last_sc = wr_sc_index(p, to - 1);
            range = ((UINT64_C(1) << (last_sc + 1 - first_sc)) - 1) << first_sc;
            b = (b | range) & ~(range << 32);
        }
        l2_set(p, l2_index + i, (m->alloc_offset + (i << p->cluster_bits)) | QCOW2_OFLAG_COPIED, b);
    }
    if (nold) {
        /* The table first, then the references it no longer holds. */
        ret = l2_flush(p);
        for (uint64_t i = 0; ret == 0 && i < nold; i++) {
            free_entry(p, old[2 * i], old[2 * i + 1]);
        }
    }
    if (old) {
        p->ops->mem(p->opaque, old, 0);
    }
    return ret;
}

void qcow2_prealloc_write_abort(struct qcow2_prealloc *p, const struct qcow2_l2meta *m)
{
    if (!m->keep_old && !p->data_file) {
        (void)qcow2_alloc_free(p->a, m->alloc_offset, m->nb_clusters << p->cluster_bits, false);
    }
}

int qcow2_prealloc_write_compressed(struct qcow2_prealloc *p, uint64_t offset, uint64_t csize,
                                    uint64_t *host_offset)
{
    /* qcow2.txt: x = 62 - (cluster_bits - 8); the sector count sits in bits x..61. */
    unsigned csize_shift = 62 - (p->cluster_bits - 8);
    uint64_t csize_mask = (UINT64_C(1) << (p->cluster_bits - 8)) - 1;
    uint64_t l2_index, nb_csectors;
    int64_t host;
    int ret;

    if (!p->ordered || p->data_file) {
        return -QCOW2_PREALLOC_ENOTSUP;
    }
    if (csize == 0 || csize >= p->cs || (offset & (p->cs - 1))) {
        return -QCOW2_ALLOC_EINVAL;
    }
    ret = get_l2(p, offset, &l2_index);
    if (ret < 0) {
        return ret;
    }
    if (l2_entry(p, l2_index) & QCOW2_L2E_OFFSET_MASK) {
        return -QCOW2_ALLOC_EIO;
    }
    host = qcow2_alloc_bytes(p->a, csize);
    if (host < 0) {
        return (int)host;
    }
    nb_csectors = ((uint64_t)host + csize - 1) / QCOW2_COMPRESSED_SECTOR_SIZE -
                  (uint64_t)host / QCOW2_COMPRESSED_SECTOR_SIZE;
    if (nb_csectors > csize_mask) {
        return -QCOW2_ALLOC_EIO; /* not reached: csize < cluster size */
    }
    /* Compressed clusters never carry COPIED, nor a subcluster bitmap. */
    l2_set(p, l2_index, (uint64_t)host | QCOW2_OFLAG_COMPRESSED | (nb_csectors << csize_shift), 0);
    *host_offset = (uint64_t)host;
    return 0;
}

const uint8_t *qcow2_prealloc_l2_cached(const struct qcow2_prealloc *p, uint64_t l2_offset)
{
    return p->l2 && p->l2_off && p->l2_off == l2_offset ? p->l2 : NULL;
}
