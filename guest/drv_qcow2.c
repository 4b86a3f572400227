/*
 * The qcow2 driver of the guest block layer: open (guest/open.c's
 * qcow2_do_open checks, then the active L1 table), block status as
 * qcow2_co_block_status() / qcow2_get_host_offset() answer it, reads
 * as qcow2_co_preadv_part() does them (zeros, the backing node, the data
 * file, or a compressed cluster decoded with the real zlib/zstd), and
 * writes as qcow2_co_pwritev_part() does them (formats/qcow2/prealloc.h
 * maps and allocates; the copy-on-write reads this node itself).
 */
#include "bdrv.h"
#include "codec.h"
#include "crypt.h"
#include "open.h"
#include "qcow2/alloc.h"
#include "qcow2/bitmap_store.h"
#include "qcow2/l2.h"
#include "qcow2/prealloc.h"
#include "qcow2/rebase.h"
#include "qcow2/refcount.h"

#define Q2_ENOTSUP GBS_ENOTSUP

/* The write side of a writable node, set up on its first write. */
struct q2w {
    struct qcow2_alloc al;
    struct qcow2_prealloc pa;
    uint8_t *cow; /* one cluster: a copy-on-write region */
};

struct q2 {
    struct gq_image img;
    uint64_t *l1; /* the active L1 table, host order */
    uint32_t l1_size;
    struct qcow2_l2_geom geom;
    unsigned cluster_bits;
    uint64_t cluster_size;
    unsigned l2_bits;   /* log2 of the entries per L2 table */
    unsigned entry_len; /* 8, or 16 with extended L2 entries */
    unsigned sc_bits;   /* log2 of the subcluster size */
    unsigned sc_per_cluster;
    /* The last decompressed cluster, and the buffer its input went through. */
    uint8_t *cbuf, *dbuf;
    uint64_t dbuf_entry; /* the L2 entry dbuf holds (0: none) */
    /* Entries of the L2 slice last read. */
    uint8_t *l2buf;
    /* qcow2_detect_metadata_preallocation(), done at the first block status. */
    bool prealloc_checked, metadata_prealloc;
    struct q2w *w; /* NULL until the first write */
    /*
     * The persistent bitmaps of a writable node (NULL: none): loaded and
     * marked in use at open, written bits recorded in the enabled ones,
     * stored at close (q2_close).
     */
    struct qcow2_bm_list *bml;
    /* Where the writer's allocator starts (after a resize: gbs_qcow2_resized). */
    uint64_t free_cluster_index;
    /*
     * An encrypted image's cipher, or NULL: the unlocked LUKS volume
     * (encrypt.format=luks), or AES-128-CBC keyed with the passphrase
     * (the old method, encrypt.format=aes).
     */
    struct luks_volume *vol;
    /* The IVs count guest sectors (aes), not host sectors (luks: crypt_physical_offset). */
    bool crypt_guest;
    /* Encrypted but opened without its cipher (bs->meta_only): no guest data read or written. */
    bool nocipher;
};

/* QCOW_MAX_CRYPT_CLUSTERS: an encrypted write goes in pieces of at most this many clusters. */
#define Q2_MAX_CRYPT_CLUSTERS 32

static struct q2 q2s[INSTAR_NODE_MAX];

static struct q2 *Q(struct gbs *bs)
{
    return bs->opaque;
}

/* --- persistent bitmaps of a writable node (block/qcow2-bitmap.c) --- */

void *gbs_bm_mem(void *opaque, void *p, size_t size)
{
    (void)opaque;
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

int gbs_bm_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return gblk_pread(((struct gbs *)opaque)->file, off, buf, len) < 0 ? -GBS_EIO : 0;
}

/* update_header_sync(): the header of the image's state, written and flushed. */
static int q2_header_sync(struct gbs *bs, uint64_t autoclear, const struct qcow2_bm_dir *dir)
{
    struct q2 *q = Q(bs);
    const struct qcow2_header *h = &q->img.h;
    struct qcow2_header_state st;
    uint8_t *hdr = malloc((size_t)q->cluster_size);
    int ret;

    if (!hdr)
        return -GBS_ENOMEM;
    memset(&st, 0, sizeof(st));
    if (q->w) {
        st.l1_offset = q->w->pa.l1_offset;
        st.l1_size = (uint32_t)q->w->pa.l1_size;
        st.reftable_offset = q->w->al.reftable_offset;
        st.reftable_clusters = (uint32_t)((q->w->al.reftable_size * 8) >> q->cluster_bits);
    } else {
        st.l1_offset = h->l1_table_offset;
        st.l1_size = h->l1_size;
        st.reftable_offset = h->refcount_table_offset;
        st.reftable_clusters = h->refcount_table_clusters;
    }
    st.incompatible = h->incompatible_features;
    st.compatible = h->compatible_features;
    st.autoclear = autoclear;
    st.bitmaps = *dir;
    ret = qcow2_header_rewrite(q->img.first, q->img.first_len, h, &q->img.x, &st, hdr);
    if (ret == 0 &&
        (gdev_pwrite(bs->file, 0, hdr, (size_t)q->cluster_size) < 0 || gdev_flush(bs->file) < 0))
        ret = -GBS_EIO;
    free(hdr);
    return ret;
}

/*
 * qcow2_load_dirty_bitmaps() of a read-write open: every bitmap loaded
 * (an in-use one stays as it is: inconsistent, never stored), and the
 * others marked in use in the directory in place
 * (update_ext_header_and_dir_in_place(): the autoclear bit dropped, the
 * directory, the header, the bit back), before the first write.
 */
static int q2_bitmaps_open(struct gbs *bs)
{
    struct q2 *q = Q(bs);
    const struct qcow2_exts *x = &q->img.x;
    struct qcow2_reader rd = {gbs_bm_pread, bs};
    struct qcow2_bm_dir dir = {x->nb_bitmaps, x->bitmap_dir_offset, x->bitmap_dir_size};
    uint64_t autoclear =
        q->img.h.autoclear_features & (QCOW2_AUTOCLEAR_BITMAPS | QCOW2_AUTOCLEAR_DATA_FILE_RAW);
    uint32_t i;
    int ret;

    q->bml = calloc(1, sizeof(*q->bml));
    if (!q->bml)
        return -INSTAR_ERR_NOMEM;
    qcow2_bm_list_init(q->bml, q->img.h.disk_size, q->cluster_bits, gbs_bm_mem, NULL);
    ret = qcow2_bm_list_load(q->bml, q->img.bitmaps, q->img.nbitmaps);
    for (i = 0; ret == 0 && i < q->bml->n; i++)
        if (!(q->bml->bm[i].flags & QCOW2_BITMAP_IN_USE))
            ret = qcow2_bm_load_bits(q->bml, i, &rd);
    if (ret < 0)
        return ret == -QCOW2_ALLOC_ENOMEM ? -INSTAR_ERR_NOMEM : -INSTAR_ERR_IO;
    if (qcow2_bm_mark_in_use(q->bml, q->img.bitmap_dir, x->bitmap_dir_size) == 0)
        return 0;
    ret = q2_header_sync(bs, autoclear & ~QCOW2_AUTOCLEAR_BITMAPS, &dir);
    if (ret == 0 && gdev_pwrite(bs->file, x->bitmap_dir_offset, q->img.bitmap_dir,
                                (size_t)x->bitmap_dir_size) < 0)
        ret = -GBS_EIO;
    if (ret == 0)
        ret = q2_header_sync(bs, autoclear & ~QCOW2_AUTOCLEAR_BITMAPS, &dir);
    if (ret == 0)
        ret = q2_header_sync(bs, autoclear, &dir);
    return ret < 0 ? -INSTAR_ERR_IO : 0;
}

/* bdrv_set_dirty(): a written range recorded in every enabled bitmap. */
static void q2_set_dirty(struct gbs *bs, uint64_t off, uint64_t bytes)
{
    struct q2 *q = Q(bs);
    uint32_t i;

    if (!q->bml)
        return;
    for (i = 0; i < q->bml->n; i++) {
        const struct qcow2_bm *b = &q->bml->bm[i];

        /* An inconsistent (in use at open) bitmap is disabled and not loaded. */
        if (b->bits && (b->flags & QCOW2_BITMAP_AUTO) && b->dirty)
            (void)qcow2_bm_set_range(q->bml, i, off, bytes);
    }
}

/* The node being unlocked, for its key material reads. */
static struct gbs *q2_crypt_bs;
static uint64_t q2_crypt_args[2];

/* qcow2_crypto_hdr_read_func(): key material inside the encryption header extension. */
static int q2_crypt_read(void *opaque, uint64_t off, uint8_t *buf, size_t len)
{
    struct q2 *q = opaque;

    if (off > q->img.luks_len || len > q->img.luks_len - off)
        return -QCOW2_ERR_LUKS_OUTSIDE_EXT;
    return gblk_pread_direct(q2_crypt_bs->file, q->img.luks_off + off, buf, len) < 0
               ? -INSTAR_ERR_IO
               : 0;
}

/*
 * qcrypto_block_qcow_init(): the old method's key is the passphrase's
 * first 16 bytes (up to its NUL), zero-padded: AES-128 in CBC mode, the
 * plain64 IV of each 512-byte sector.
 */
static int q2_aes_open(struct gbs *bs, struct q2 *q)
{
    static const struct qcow2_luks_info aes = {
        .cipher_alg = "aes-128", .cipher_mode = "cbc", .ivgen_alg = "plain64"};
    uint8_t key[16];
    size_t n = 0;

    memset(key, 0, sizeof(key));
    while (n < sizeof(key) && n < bs->key->len && bs->key->data[n]) {
        key[n] = bs->key->data[n];
        n++;
    }
    q->vol = malloc(sizeof(*q->vol));
    if (!q->vol)
        return -INSTAR_ERR_NOMEM;
    if (luks_volume_init(q->vol, &aes, sizeof(key), key) < 0) {
        memset(key, 0, sizeof(key));
        return -INSTAR_ERR_BAD_ARGS;
    }
    memset(key, 0, sizeof(key));
    q->crypt_guest = true;
    return 0;
}

static int q2_open(struct gbs *bs)
{
    static uint8_t first[GOPEN_FIRST];
    struct q2 *q = &q2s[bs->node];
    const struct qcow2_header *h;
    uint8_t *raw;
    uint32_t i;
    int ret;

    memset(q, 0, sizeof(*q));
    bs->opaque = q;
    gopen_dev = bs->file;
    ret = gblk_pread(bs->file, 0, first, GOPEN_FIRST);
    if (ret < 0)
        return ret;
    /* Any failure here ends the run with qemu's open message. */
    gq_open_flags(&q->img, boot->op, bs->writable ? QCOW2_OPEN_RDWR : 0, first);
    /*
     * qcow2_do_open() repairs a dirty image it opens read-write, printing
     * check -r's lines.  It loads the persistent bitmaps first, marking
     * them in use (qcow2_load_dirty_bitmaps()), as here for every
     * command, an encrypted image's too (its unlock came before: the
     * host's earlier run checked the key).
     */
    if (bs->writable && (q->img.h.incompatible_features & QCOW2_INCOMPAT_DIRTY)) {
        if (q->img.x.nb_bitmaps) {
            q->cluster_bits = q->img.h.cluster_bits;
            q->cluster_size = (uint64_t)1 << q->cluster_bits;
            ret = q2_bitmaps_open(bs);
            if (ret < 0) {
                gopen_dev = 0;
                return ret;
            }
        }
        if ((!q->img.x.nb_bitmaps || q->bml) &&
            gq_repair_dirty(&q->img, boot->op, QCOW2_OPEN_RDWR) < 0) {
            gopen_dev = 0;
            return -INSTAR_ERR_REPAIR_DIRTY;
        }
        /*
         * qcow2_mark_clean() ends the repair with qcow2_update_header():
         * the whole header cluster written from the repaired state (the
         * same bytes as the repair's own field write, the zero tail of
         * the cluster allocated as qemu's write allocates it).
         */
        if (q->bml) {
            const struct qcow2_exts *x = &q->img.x;
            struct qcow2_bm_dir dir = {x->nb_bitmaps, x->bitmap_dir_offset, x->bitmap_dir_size};

            ret = q2_header_sync(bs,
                                 q->img.h.autoclear_features &
                                     (QCOW2_AUTOCLEAR_BITMAPS | QCOW2_AUTOCLEAR_DATA_FILE_RAW),
                                 &dir);
            if (ret < 0) {
                gopen_dev = 0;
                return -INSTAR_ERR_IO;
            }
        }
    }
    gopen_dev = 0;
    h = &q->img.h;
    if (h->crypt_method != 0) {
        /* qcow2_do_open(): qcrypto_block_open() of the LUKS header, unlocked. */
        if (bs->meta_only) {
            q->nocipher = true;
            ret = 0;
        } else if (h->crypt_method == QCOW2_CRYPT_AES && bs->key) {
            ret = q2_aes_open(bs, q);
        } else if (h->crypt_method != QCOW2_CRYPT_LUKS || !q->img.has_luks) {
            return -INSTAR_ERR_ENCRYPTED_DATA;
        } else {
            q2_crypt_bs = bs;
            ret = gcrypt_unlock(bs, q->img.luks_hdr, &q->img.luks, q2_crypt_read, q, &q->vol,
                                q2_crypt_args);
        }
        if (ret < 0)
            return ret;
        /*
         * Written by convert (its target), commit (the base's copies; the
         * top is emptied without data writes), resize and rebase (the
         * grow's or the copy's data through the cipher) and, for their
         * metadata, snapshot, amend and bitmap; bench: not built.
         */
        if (bs->writable && boot->op != INSTAR_OP_CONVERT && boot->op != INSTAR_OP_COMMIT &&
            boot->op != INSTAR_OP_RESIZE && boot->op != INSTAR_OP_REBASE &&
            boot->op != INSTAR_OP_SNAPSHOT && boot->op != INSTAR_OP_AMEND &&
            boot->op != INSTAR_OP_BITMAP)
            return -INSTAR_ERR_ENCRYPTED_WRITE;
    }

    q->cluster_bits = h->cluster_bits;
    q->cluster_size = (uint64_t)1 << h->cluster_bits;
    q->geom.cluster_bits = h->cluster_bits;
    q->geom.extended_l2 = h->subclusters_per_cluster > 1;
    q->geom.data_file = bs->data != bs->file;
    q->entry_len = q->geom.extended_l2 ? 16 : 8;
    q->l2_bits = h->cluster_bits - (q->geom.extended_l2 ? 4 : 3);
    q->sc_per_cluster = h->subclusters_per_cluster;
    q->sc_bits = h->cluster_bits - (q->geom.extended_l2 ? 5 : 0);
    bs->total = h->disk_size;
    bs->supports_backing = true;
    bs->zero_align = (uint64_t)1 << q->sc_bits; /* qcow2_refresh_limits() */

    q->l1_size = h->l1_size;
    if (q->l1_size) {
        raw = malloc((size_t)q->l1_size * 8);
        q->l1 = malloc((size_t)q->l1_size * 8);
        if (!raw || !q->l1)
            return -INSTAR_ERR_NOMEM;
        ret = gblk_pread_direct(bs->file, h->l1_table_offset, raw, (size_t)q->l1_size * 8);
        if (ret < 0)
            return ret;
        for (i = 0; i < q->l1_size; i++)
            q->l1[i] = qcow2_l1_load(raw, i);
        free(raw);
    }
    q->l2buf = malloc((size_t)1 << h->cluster_bits);
    if (!q->l2buf)
        return -INSTAR_ERR_NOMEM;
    if (bs->writable && q->img.nbitmaps && !q->bml &&
        !(h->incompatible_features & QCOW2_INCOMPAT_DIRTY))
        return q2_bitmaps_open(bs);
    return 0;
}

/* Subclusters of the same type as sc_from, from sc_from to the cluster's end or a change. */
static int sc_range(struct q2 *q, const struct qcow2_l2_entry *e, unsigned sc_from,
                    enum qcow2_subcluster_type *type)
{
    unsigned n;

    *type = qcow2_l2_subcluster_type(e, &q->geom, sc_from);
    if (*type == QCOW2_SC_INVALID)
        return -1;
    if (!q->geom.extended_l2 || *type == QCOW2_SC_COMPRESSED)
        return (int)(q->sc_per_cluster - sc_from);
    for (n = sc_from + 1; n < q->sc_per_cluster; n++)
        if (qcow2_l2_subcluster_type(e, &q->geom, n) != *type)
            break;
    return (int)(n - sc_from);
}

static void entry_at(struct q2 *q, const uint8_t *slice, unsigned i, struct qcow2_l2_entry *e)
{
    uint64_t raw, bitmap;

    qcow2_l2_load(slice, i, q->geom.extended_l2, &raw, &bitmap);
    qcow2_l2_decode(raw, bitmap, &q->geom, e);
}

/*
 * n entries of the L2 table at l2_offset from l2_index into q->l2buf: from
 * the writer's cached table when it holds that one (its entries are newer
 * than the file's), else from the file.
 */
static int q2_l2_read(struct gbs *bs, uint64_t l2_offset, uint64_t l2_index, uint64_t n)
{
    struct q2 *q = Q(bs);
    const uint8_t *c = q->w ? qcow2_prealloc_l2_cached(&q->w->pa, l2_offset) : NULL;

    if (c) {
        memcpy(q->l2buf, c + l2_index * q->entry_len, (size_t)(n * q->entry_len));
        return 0;
    }
    return gblk_pread(bs->file, l2_offset + l2_index * q->entry_len, q->l2buf,
                      (size_t)(n * q->entry_len)) < 0
               ? -GBS_EIO
               : 0;
}

/*
 * qcow2_get_host_offset(): the type of the subcluster at off, the host
 * offset of off (allocated types; the compressed descriptor's offset for
 * COMPRESSED), and in *bytes how far from off the same answer holds.
 */
static int q2_host_offset(struct gbs *bs, uint64_t off, uint64_t *bytes, uint64_t *host,
                          enum qcow2_subcluster_type *type, struct qcow2_l2_entry *first)
{
    struct q2 *q = Q(bs);
    uint64_t cs = q->cluster_size, oic = off & (cs - 1);
    uint64_t slice = (uint64_t)1 << q->l2_bits;
    uint64_t l2_index = (off >> q->cluster_bits) & (slice - 1);
    uint64_t needed = *bytes + oic, avail = (slice - l2_index) << q->cluster_bits;
    uint64_t l1_index = off >> (q->cluster_bits + q->l2_bits), l2_offset, nb, i;
    unsigned sc_index = (unsigned)((off >> q->sc_bits) & (q->sc_per_cluster - 1));
    struct qcow2_l2_entry e;
    enum qcow2_subcluster_type t;
    uint64_t count = 0, expected = 0;
    bool check_offset;
    int r;

    if (needed > avail)
        needed = avail;
    *host = 0;
    memset(first, 0, sizeof(*first));
    if (l1_index >= q->l1_size || !(l2_offset = q->l1[l1_index] & QCOW2_L1E_OFFSET_MASK)) {
        *type = QCOW2_SC_UNALLOCATED_PLAIN;
        avail = needed;
        goto out;
    }
    if (l2_offset & (cs - 1)) {
        gbs_signal_corruption(bs, QCOW2_CORRUPT_L2_UNALIGNED, l2_offset, l1_index, 0);
        return -GBS_EIO;
    }
    nb = (needed + cs - 1) >> q->cluster_bits;
    r = q2_l2_read(bs, l2_offset, l2_index, nb);
    if (r < 0)
        return r;
    entry_at(q, q->l2buf, 0, &e);
    *first = e;
    t = qcow2_l2_subcluster_type(&e, &q->geom, sc_index);
    if (q->img.h.version < 3 && (t == QCOW2_SC_ZERO_PLAIN || t == QCOW2_SC_ZERO_ALLOC)) {
        gbs_signal_corruption(bs, QCOW2_CORRUPT_ZERO_V2, l2_offset, l2_index, 0);
        return -GBS_EIO;
    }
    switch (t) {
    case QCOW2_SC_COMPRESSED:
        if (q->geom.data_file) {
            gbs_signal_corruption(bs, QCOW2_CORRUPT_COMPRESSED_DATA_FILE, l2_offset, l2_index, 0);
            return -GBS_EIO;
        }
        *host = e.host_offset;
        break;
    case QCOW2_SC_ZERO_ALLOC:
    case QCOW2_SC_NORMAL:
    case QCOW2_SC_UNALLOCATED_ALLOC: {
        uint64_t hc = e.raw & QCOW2_L2E_OFFSET_MASK;

        *host = hc + oic;
        if (hc & (cs - 1)) {
            gbs_signal_corruption(bs, QCOW2_CORRUPT_CLUSTER_UNALIGNED, hc, l2_offset, l2_index);
            return -GBS_EIO;
        }
        if (q->geom.data_file && *host != off) {
            gbs_signal_corruption(bs, QCOW2_CORRUPT_DATA_FILE_OFFSET, hc, off - oic, l2_index);
            return -GBS_EIO;
        }
        break;
    }
    default:
        break;
    }

    /* count_contiguous_subclusters() */
    check_offset = false;
    for (i = 0; i < nb; i++) {
        unsigned first_sc = i == 0 ? sc_index : 0;
        enum qcow2_subcluster_type ti;
        int n;

        if (i)
            entry_at(q, q->l2buf, (unsigned)i, &e);
        n = sc_range(q, &e, first_sc, &ti);
        if (n < 0) {
            gbs_signal_corruption(bs, QCOW2_CORRUPT_INVALID_ENTRY, l2_offset, l2_index + i, 0);
            return -GBS_EIO;
        }
        if (i == 0) {
            if (ti == QCOW2_SC_COMPRESSED) {
                count = (uint64_t)n;
                break;
            }
            expected = e.raw & QCOW2_L2E_OFFSET_MASK;
            check_offset = ti == QCOW2_SC_NORMAL || ti == QCOW2_SC_ZERO_ALLOC ||
                           ti == QCOW2_SC_UNALLOCATED_ALLOC;
        } else if (ti != t) {
            break;
        } else if (check_offset) {
            expected += cs;
            if (expected != (e.raw & QCOW2_L2E_OFFSET_MASK))
                break;
        }
        count += (uint64_t)n;
        if (first_sc + (unsigned)n < q->sc_per_cluster)
            break;
    }
    avail = (count + sc_index) << q->sc_bits;
    *type = t;
out:
    if (avail > needed)
        avail = needed;
    *bytes = avail - oic;
    return 0;
}

static int pa_read(void *opaque, uint64_t off, void *buf, size_t len)
{
    struct gbs *bs = opaque;

    return gblk_pread(bs->file, off, buf, len) < 0 ? -GBS_EIO : 0;
}

static int pa_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    (void)opaque, (void)off, (void)buf, (void)len;
    return -GBS_EIO; /* never called: the allocator is only asked for refcounts */
}

static void *pa_mem(void *opaque, void *p, size_t size)
{
    (void)opaque;
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

/*
 * qcow2_detect_metadata_preallocation(): the image counts as preallocated
 * when clearly more clusters have a refcount than the file system has
 * allocated (its allocated size comes from the host's fstat at boot).
 * Returns 1, 0, or -errno.
 */
static int detect_metadata_prealloc(struct gbs *bs)
{
    static const struct qcow2_alloc_ops ops = {pa_read, pa_write, pa_mem, NULL, NULL};
    struct q2 *q = Q(bs);
    const struct qcow2_header *h = &q->img.h;
    uint64_t file_length = gbs_dev_length(bs->file);
    uint64_t real_clusters = boot->devices[bs->file].allocated / q->cluster_size;
    uint64_t threshold = real_clusters * 10 / 9, end, i, count = 0, rc;
    struct qcow2_alloc a;
    int ret;

    if (threshold < real_clusters + 2)
        threshold = real_clusters + 2;
    end = (file_length + q->cluster_size - 1) >> q->cluster_bits;
    ret = qcow2_alloc_init(&a, &ops, bs, h->cluster_bits, h->refcount_order,
                           h->refcount_table_offset, h->refcount_table_clusters);
    if (ret < 0)
        return ret;
    for (i = 0; i < end && count < threshold; i++) {
        ret = qcow2_alloc_get_refcount(&a, i, &rc);
        if (ret < 0)
            break;
        count += rc != 0;
    }
    qcow2_alloc_release(&a);
    if (ret < 0)
        return ret;
    return count >= threshold;
}

static int q2_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                           uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    enum qcow2_subcluster_type t;
    struct qcow2_l2_entry e;
    uint64_t host, n = bytes > 0x7fffffffu ? 0x7fffffffu : bytes;
    int ret, status = 0;

    (void)want_zero;
    if (!Q(bs)->prealloc_checked) {
        ret = detect_metadata_prealloc(bs);
        Q(bs)->metadata_prealloc = ret == 1;
        Q(bs)->prealloc_checked = true;
    }
    ret = q2_host_offset(bs, off, &n, &host, &t, &e);
    if (ret < 0)
        return ret;
    *pnum = n;
    /* qcow2_co_block_status(): no offset for an encrypted image. */
    if ((t == QCOW2_SC_NORMAL || t == QCOW2_SC_ZERO_ALLOC || t == QCOW2_SC_UNALLOCATED_ALLOC) &&
        !Q(bs)->vol) {
        *map = host;
        *dev = bs->data;
        status |= INSTAR_BS_OFFSET_VALID;
    }
    if (t == QCOW2_SC_ZERO_PLAIN || t == QCOW2_SC_ZERO_ALLOC)
        status |= INSTAR_BS_ZERO;
    else if (t != QCOW2_SC_UNALLOCATED_PLAIN && t != QCOW2_SC_UNALLOCATED_ALLOC)
        status |= INSTAR_BS_DATA;
    if (Q(bs)->metadata_prealloc && (status & INSTAR_BS_DATA) && (status & INSTAR_BS_OFFSET_VALID))
        status |= INSTAR_BS_RECURSE;
    return status;
}

/* qcow2_co_preadv_compressed(): one whole cluster, decoded into q->dbuf. */
static int q2_read_compressed(struct gbs *bs, const struct qcow2_l2_entry *e)
{
    struct q2 *q = Q(bs);
    int r;

    if (q->dbuf && q->dbuf_entry == e->raw)
        return 0;
    if (!q->dbuf) {
        q->dbuf = malloc((size_t)q->cluster_size);
        q->cbuf = malloc((size_t)q->cluster_size * 2 + 512);
        if (!q->dbuf || !q->cbuf)
            return -GBS_ENOMEM;
    }
    q->dbuf_entry = 0;
    if (e->csize > q->cluster_size * 2 + 512)
        return -GBS_EIO;
    r = gblk_pread_direct(bs->file, e->host_offset, q->cbuf, e->csize);
    if (r < 0)
        return -GBS_EIO;
    r = gcodec_decompress(q->img.h.compression_type, q->cbuf, e->csize, q->dbuf,
                          (size_t)q->cluster_size);
    if (r < 0)
        return -GBS_EIO;
    q->dbuf_entry = e->raw;
    return 0;
}

static int q2_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    struct q2 *q = Q(bs);
    uint8_t *p = buf;

    while (len) {
        enum qcow2_subcluster_type t;
        struct qcow2_l2_entry e;
        uint64_t host, n = len > 0x7fffffffu ? 0x7fffffffu : len;
        int r = q2_host_offset(bs, off, &n, &host, &t, &e);

        if (r < 0)
            return r;
        switch (t) {
        case QCOW2_SC_ZERO_PLAIN:
        case QCOW2_SC_ZERO_ALLOC:
            memset(p, 0, n);
            break;
        case QCOW2_SC_UNALLOCATED_PLAIN:
        case QCOW2_SC_UNALLOCATED_ALLOC:
            if (bs->backing)
                r = gbs_pread(bs->backing, off, p, n);
            else
                memset(p, 0, n);
            break;
        case QCOW2_SC_COMPRESSED:
            r = q2_read_compressed(bs, &e);
            if (r == 0)
                memcpy(p, q->dbuf + (off & (q->cluster_size - 1)), n);
            break;
        case QCOW2_SC_NORMAL:
            /*
             * qcow2_co_preadv_encrypted(): LUKS in qcow2 takes its IVs from
             * host offsets (crypt_physical_offset; guest offsets are only
             * for the old AES method).
             */
            if (q->vol)
                r = gcrypt_pread(q->vol, bs->data, host, q->crypt_guest ? off : host, p, n);
            else if (q->nocipher)
                r = -GBS_EIO;
            else
                r = gblk_pread_direct(bs->data, host, p, n) < 0 ? -GBS_EIO : 0;
            break;
        default:
            r = -GBS_EIO;
            break;
        }
        if (r < 0)
            return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* --- writes (qcow2_co_pwritev_part, qcow2_co_pwritev_task) --- */

static int w_read(void *o, uint64_t off, void *buf, size_t len)
{
    return gdev_pread(((struct gbs *)o)->file, off, buf, len) < 0 ? -GBS_EIO : 0;
}

static int w_write(void *o, uint64_t off, const void *buf, size_t len)
{
    return gdev_pwrite(((struct gbs *)o)->file, off, buf, len) < 0 ? -GBS_EIO : 0;
}

static void *w_mem(void *o, void *p, size_t size)
{
    (void)o;
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

static int w_truncate(void *o, int dev, uint64_t size, int mode)
{
    (void)mode;
    if (dev != QCOW2_PREALLOC_DEV_IMAGE)
        return -GBS_EIO;
    return gdev_truncate(((struct gbs *)o)->file, size, INSTAR_TRUNC_OFF) < 0 ? -GBS_EIO : 0;
}

static int w_length(void *o, int dev, uint64_t *len)
{
    if (dev != QCOW2_PREALLOC_DEV_IMAGE)
        return -GBS_EIO;
    *len = gdev_length(((struct gbs *)o)->file);
    return 0;
}

/* A freed cluster's discard (qcow2_process_discards): a hole in the file. */
static void w_discard(void *o, uint64_t off, uint64_t len)
{
    (void)gdev_discard(((struct gbs *)o)->file, off, len);
}

/* The same for a cluster of an external data file (qcow2_free_any_cluster). */
static void w_discard_data(void *o, uint64_t off, uint64_t len)
{
    (void)gdev_discard(((struct gbs *)o)->data, off, len);
}

static const struct qcow2_alloc_ops w_ops = {w_read, w_write, w_mem, w_discard, NULL};

/* The writer of bs: its allocator and the mapping over the shared L1 table. */
static int q2_writer(struct gbs *bs, struct q2w **out)
{
    struct q2 *q = Q(bs);
    const struct qcow2_header *h = &q->img.h;
    struct q2w *w;
    int ret;

    if (q->w) {
        *out = q->w;
        return 0;
    }
    /*
     * Not written (Operation not supported): a dirty bit q2_open did not
     * repair.
     */
    if (!q->l1 || (h->incompatible_features & QCOW2_INCOMPAT_DIRTY))
        return -Q2_ENOTSUP;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -GBS_ENOMEM;
    w->cow = malloc((size_t)q->cluster_size);
    if (!w->cow)
        return -GBS_ENOMEM;
    ret = qcow2_alloc_init(&w->al, &w_ops, bs, h->cluster_bits, h->refcount_order,
                           h->refcount_table_offset, h->refcount_table_clusters);
    if (ret < 0)
        return ret;
    w->al.free_cluster_index = q->free_cluster_index;
    w->pa.a = &w->al;
    w->pa.ops = &w_ops;
    w->pa.truncate = w_truncate;
    w->pa.length = w_length;
    w->pa.discard_data = w_discard_data;
    w->pa.opaque = bs;
    w->pa.cluster_bits = h->cluster_bits;
    w->pa.extended_l2 = q->geom.extended_l2;
    w->pa.data_file = q->geom.data_file;
    w->pa.ordered = true;
    w->pa.write = true;
    w->pa.l1 = q->l1; /* shared: block status and reads see new L2 tables at once */
    w->pa.l1_size = q->l1_size;
    w->pa.l1_offset = h->l1_table_offset;
    if (qcow2_prealloc_init(&w->pa) < 0)
        return -GBS_ENOMEM;
    q->w = w;
    *out = w;
    return 0;
}

/*
 * handle_alloc_space(): a copy-on-write whose regions read as zeros
 * becomes one range of allocated zeros in the file (write_zeroes with
 * BDRV_REQ_NO_FALLBACK) and is skipped.
 */
static int q2_alloc_space(uint32_t file, struct qcow2_l2meta *m, unsigned nm,
                          const struct gbs_q2_write_ops *ops, void *opaque)
{
    for (unsigned i = 0; i < nm; i++) {
        const struct qcow2_cow_region *a = &m[i].cow_start, *b = &m[i].cow_end;
        int z;

        if (!a->bytes && !b->bytes)
            continue;
        z = ops->is_zero(opaque, m[i].offset + a->offset, a->bytes);
        if (z > 0)
            z = ops->is_zero(opaque, m[i].offset + b->offset, b->bytes);
        if (z < 0)
            return z;
        if (!z)
            continue;
        if (gdev_zero(file, m[i].alloc_offset + a->offset, b->offset + b->bytes - a->offset,
                      INSTAR_ZERO_ALLOCATE) < 0)
            return -GBS_EIO;
        m[i].skip_cow = true;
    }
    return 0;
}

int gbs_qcow2_write(struct qcow2_prealloc *pa, uint32_t file, uint64_t off, uint64_t len,
                    const struct gbs_q2_write_ops *ops, void *opaque)
{
    struct qcow2_l2meta m[QCOW2_WRITE_META_MAX];
    uint64_t done = 0;
    int ret;

    while (len) {
        uint64_t cur = len > 0x7fffffffu ? 0x7fffffffu : len, host;
        unsigned nm = 0, i = 0;

        ret = qcow2_prealloc_write_map(pa, off, &cur, &host, m, &nm);
        if (ret == 0 && cur == 0)
            ret = -GBS_EIO;
        if (ret == 0)
            ret = q2_alloc_space(file, m, nm, ops, opaque);
        if (ret == 0)
            ret = ops->data(opaque, host, done, cur);
        /* qcow2_handle_l2meta(): each meta is copied and linked, or given back. */
        while (ret == 0 && i < nm) {
            const struct qcow2_cow_region *r[2] = {&m[i].cow_start, &m[i].cow_end};

            for (int k = 0; ret == 0 && k < 2 && !m[i].skip_cow; k++)
                if (r[k]->bytes)
                    ret = ops->cow(opaque, m[i].offset + r[k]->offset,
                                   m[i].alloc_offset + r[k]->offset, r[k]->bytes);
            if (ret == 0)
                ret = qcow2_prealloc_write_link(pa, &m[i]);
            if (ret == 0)
                i++;
        }
        if (ret < 0) {
            for (; i < nm; i++)
                qcow2_prealloc_write_abort(pa, &m[i]);
            return ret;
        }
        done += cur;
        off += cur;
        len -= cur;
    }
    return 0;
}

struct q2_wctx {
    struct gbs *bs;
    struct q2w *w;
    const uint8_t *buf;
    /* gbs_qcow2_pwrite_from(): the caller writes the data */
    int (*data)(void *opaque, uint64_t host, uint64_t done, uint64_t bytes);
    void *data_opaque;
    bool no_alloc_space; /* a copy_range write: no zero copy-on-write shortcut */
};

static int q2_w_is_zero(void *o, uint64_t off, uint64_t bytes)
{
    if (((struct q2_wctx *)o)->no_alloc_space)
        return 0;
    return gbs_is_zero_fast(((struct q2_wctx *)o)->bs, off, bytes);
}

/* perform_cow(): the old guest data of a region, read through this node, written anew. */
static int q2_w_cow(void *o, uint64_t guest, uint64_t host, uint64_t bytes)
{
    struct q2_wctx *c = o;
    int ret = q2_pread(c->bs, guest, c->w->cow, (size_t)bytes);

    if (ret < 0)
        return ret;
    return gdev_pwrite(c->bs->data, host, c->w->cow, (size_t)bytes) < 0 ? -GBS_EIO : 0;
}

static int q2_w_data(void *o, uint64_t host, uint64_t done, uint64_t bytes)
{
    struct q2_wctx *c = o;

    return gdev_pwrite(c->bs->data, host, c->buf + done, (size_t)bytes) < 0 ? -GBS_EIO : 0;
}

static const struct gbs_q2_write_ops q2_w_ops = {q2_w_is_zero, q2_w_cow, q2_w_data};

/*
 * An encrypted image's writes (qcow2_co_pwritev_task() with bs->encrypted):
 * no zero copy-on-write shortcut (handle_alloc_space() leaves encrypted
 * images alone: zeros in the file would not decrypt to zeros), and every
 * sector encrypted before it is written, the guest data and the
 * copy-on-write regions alike (do_perform_cow_encrypt()), its IV the
 * sector of its host offset (LUKS: crypt_physical_offset).
 */
struct q2_ectx {
    struct q2_wctx c;
    uint8_t *tmp;   /* the piece's data, encrypted */
    uint64_t guest; /* the piece's guest offset */
};

/* qcow2_co_encdec(): the IV's sector, of the host offset (luks) or the guest offset (aes). */
static uint64_t q2_iv(const struct q2 *q, uint64_t host, uint64_t guest)
{
    return (q->crypt_guest ? guest : host) / LUKS_SECTOR;
}

static int q2_e_is_zero(void *o, uint64_t off, uint64_t bytes)
{
    (void)o;
    (void)off;
    (void)bytes;
    return 0;
}

static int q2_e_cow(void *o, uint64_t guest, uint64_t host, uint64_t bytes)
{
    struct q2_wctx *c = o;
    int ret = q2_pread(c->bs, guest, c->w->cow, (size_t)bytes);

    if (ret < 0)
        return ret;
    if ((host | bytes) & (LUKS_SECTOR - 1) ||
        luks_encrypt(Q(c->bs)->vol, q2_iv(Q(c->bs), host, guest), c->w->cow, (size_t)bytes) < 0)
        return -GBS_EIO;
    return gdev_pwrite(c->bs->data, host, c->w->cow, (size_t)bytes) < 0 ? -GBS_EIO : 0;
}

static int q2_e_data(void *o, uint64_t host, uint64_t done, uint64_t bytes)
{
    struct q2_ectx *e = o;

    memcpy(e->tmp + done, e->c.buf + done, (size_t)bytes);
    if ((host | bytes) & (LUKS_SECTOR - 1) ||
        luks_encrypt(Q(e->c.bs)->vol, q2_iv(Q(e->c.bs), host, e->guest + done), e->tmp + done,
                     (size_t)bytes) < 0)
        return -GBS_EIO;
    return gdev_pwrite(e->c.bs->data, host, e->tmp + done, (size_t)bytes) < 0 ? -GBS_EIO : 0;
}

static const struct gbs_q2_write_ops q2_e_ops = {q2_e_is_zero, q2_e_cow, q2_e_data};

/* Whole sectors [off, off + len) of an encrypted image, in pieces of at most 32 clusters. */
static int q2_pwrite_encrypted(struct gbs *bs, struct q2w *w, uint64_t off, const uint8_t *buf,
                               uint64_t len)
{
    struct q2 *q = Q(bs);
    uint64_t max = Q2_MAX_CRYPT_CLUSTERS * q->cluster_size;
    struct q2_ectx e = {{bs, w, NULL, NULL, NULL, false}, NULL, 0};
    int ret = 0;

    e.tmp = malloc((size_t)(len < max ? len : max));
    if (!e.tmp)
        return -GBS_ENOMEM;
    while (len && ret == 0) {
        uint64_t n = max - (off & (q->cluster_size - 1));

        if (n > len)
            n = len;
        e.c.buf = buf;
        e.guest = off;
        ret = gbs_qcow2_write(&w->pa, bs->data, off, n, &q2_e_ops, &e);
        off += n;
        buf += n;
        len -= n;
    }
    free(e.tmp);
    return ret;
}

/*
 * The block layer's request alignment for an encrypted image (512, the
 * cipher's sector: qcow2_refresh_limits()): a partial head or tail
 * sector is read, merged and written whole.
 */
static int q2_pwrite_crypt(struct gbs *bs, struct q2w *w, uint64_t off, const uint8_t *buf,
                           uint64_t len)
{
    uint8_t sec[LUKS_SECTOR];
    int ret = 0;

    while (len && ret == 0) {
        uint64_t head = off & (LUKS_SECTOR - 1), n;

        if (head || len < LUKS_SECTOR) {
            n = LUKS_SECTOR - head < len ? LUKS_SECTOR - head : len;
            ret = q2_pread(bs, off - head, sec, LUKS_SECTOR);
            if (ret == 0) {
                memcpy(sec + head, buf, (size_t)n);
                ret = q2_pwrite_encrypted(bs, w, off - head, sec, LUKS_SECTOR);
            }
        } else {
            n = len & ~(uint64_t)(LUKS_SECTOR - 1);
            ret = q2_pwrite_encrypted(bs, w, off, buf, n);
        }
        off += n;
        buf += n;
        len -= n;
    }
    return ret;
}

static int q2_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    struct q2_wctx c = {bs, NULL, buf, NULL, NULL, false};
    int ret = q2_writer(bs, &c.w);

    if (ret < 0)
        return ret;
    if (Q(bs)->nocipher)
        return -GBS_EIO;
    q2_set_dirty(bs, off, len);
    if (Q(bs)->vol)
        return q2_pwrite_crypt(bs, c.w, off, buf, len);
    return gbs_qcow2_write(&c.w->pa, bs->data, off, len, &q2_w_ops, &c);
}

static int q2_w_data_from(void *o, uint64_t host, uint64_t done, uint64_t bytes)
{
    struct q2_wctx *c = o;

    return c->data(c->data_opaque, host, done, bytes);
}

static const struct gbs_q2_write_ops q2_w_from_ops = {q2_w_is_zero, q2_w_cow, q2_w_data_from};

int gbs_qcow2_pwrite_from(struct gbs *bs, uint64_t off, uint64_t len,
                          int (*data)(void *opaque, uint64_t host, uint64_t done, uint64_t bytes),
                          void *opaque, bool copy_range)
{
    struct q2_wctx c = {bs, NULL, NULL, data, opaque, copy_range};
    int ret;

    /* An encrypted image's data goes through q2_pwrite(), encrypted in guest RAM. */
    if (bs->drv != &gbs_drv_qcow2 || !bs->writable || Q(bs)->vol || Q(bs)->nocipher)
        return -GBS_EACCES;
    if (off > bs->total || len > bs->total - off)
        return -GBS_EIO;
    ret = q2_writer(bs, &c.w);
    if (ret < 0)
        return ret;
    q2_set_dirty(bs, off, len);
    return gbs_qcow2_write(&c.w->pa, bs->data, off, len, &q2_w_from_ops, &c);
}

/*
 * qcow2.c's is_zero(): block status through the chain (the file asked
 * where its holes are) says [off, off + bytes), clipped to the image,
 * reads as zeros.
 */
static int q2_is_zero(struct gbs *bs, uint64_t off, uint64_t bytes)
{
    uint64_t end = (bs->total + 511) / 512 * 512, pnum, map;
    uint32_t dev;
    int ret;

    if (off >= end)
        return 1;
    if (bytes > end - off)
        bytes = end - off;
    while (bytes) {
        ret = gbs_block_status_above(bs, off, bytes, &pnum, &map, &dev, NULL);
        if (ret < 0)
            return ret;
        if (!(ret & INSTAR_BS_ZERO) || pnum == 0)
            return 0;
        if (pnum > bytes)
            pnum = bytes;
        off += pnum;
        bytes -= pnum;
    }
    return 1;
}

/*
 * qcow2_co_pwrite_zeroes(): a request that does not cover whole
 * subclusters is widened to its subcluster when the rest of it reads as
 * zeros and the subcluster holds no data (else -ENOTSUP: the block layer
 * writes zeros); then qcow2_subcluster_zeroize().
 */
static int q2_pwrite_zeroes(struct gbs *bs, uint64_t off, uint64_t bytes, uint32_t flags)
{
    struct q2 *q = Q(bs);
    uint64_t scs = (uint64_t)1 << q->sc_bits, end = (bs->total + 511) / 512 * 512;
    uint64_t head = off & (scs - 1), tail = ((off + bytes + scs - 1) & ~(scs - 1)) - (off + bytes);
    unsigned zflags = 0;
    struct q2w *w;
    int ret = q2_writer(bs, &w);

    if (ret < 0)
        return ret;
    q2_set_dirty(bs, off, bytes);
    if (off + bytes == end)
        tail = 0;
    if (head || tail) {
        enum qcow2_subcluster_type t;
        struct qcow2_l2_entry e;
        uint64_t n = scs, host;
        int z;

        if (head + bytes + tail > scs)
            return -GBS_EIO;
        z = q2_is_zero(bs, off - head, head);
        if (z > 0)
            z = q2_is_zero(bs, off + bytes, tail);
        if (z <= 0)
            return z < 0 ? z : -Q2_ENOTSUP;
        off -= head;
        bytes = scs;
        ret = q2_host_offset(bs, off, &n, &host, &t, &e);
        if (ret < 0)
            return ret;
        if (t != QCOW2_SC_UNALLOCATED_PLAIN && t != QCOW2_SC_UNALLOCATED_ALLOC &&
            t != QCOW2_SC_ZERO_PLAIN && t != QCOW2_SC_ZERO_ALLOC)
            return -Q2_ENOTSUP;
    }
    /* Only convert writes zeros, to a target it opened with BDRV_O_UNMAP. */
    if (flags & GBS_ZERO_MAY_UNMAP)
        zflags |= QCOW2_ZEROIZE_UNMAP | QCOW2_ZEROIZE_DISCARD;
    if (!bs->backing)
        zflags |= QCOW2_ZEROIZE_NO_BACKING;
    /* data_file_raw: the data file stays in sync, zeroed first. */
    if (q->img.h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) {
        uint64_t zb = off + bytes > end ? end - off : bytes;

        if (gdev_zero(bs->data, off, zb, (flags & GBS_ZERO_MAY_UNMAP) ? 0 : INSTAR_ZERO_ALLOCATE) <
            0)
            return -GBS_EIO;
    }
    ret = qcow2_prealloc_zeroize_flags(&w->pa, q->img.h.version, off, bytes, end, zflags);
    return ret == -QCOW2_PREALLOC_ENOTSUP ? -Q2_ENOTSUP : ret;
}

bool gbs_qcow2_encrypted(struct gbs *bs)
{
    return bs->drv == &gbs_drv_qcow2 && Q(bs)->vol != NULL;
}

int gbs_qcow2_encrypt(struct gbs *bs, uint64_t host, uint64_t guest, uint8_t *buf, size_t len)
{
    if (!gbs_qcow2_encrypted(bs) || ((host | guest | len) & (LUKS_SECTOR - 1)) ||
        luks_encrypt(Q(bs)->vol, q2_iv(Q(bs), host, guest), buf, len) < 0)
        return -GBS_EIO;
    return 0;
}

int gbs_qcow2_target_info(struct gbs *bs, uint64_t *cluster_size, unsigned *ctype, bool *data_file)
{
    struct q2 *q;

    if (bs->drv != &gbs_drv_qcow2)
        return -GBS_EINVAL;
    q = Q(bs);
    *cluster_size = q->cluster_size;
    *ctype = q->img.h.compression_type;
    *data_file = q->geom.data_file;
    return 0;
}

/*
 * qcow2_co_pwritev_compressed_task() once the data is compressed: the
 * bytes packed into the file (qcow2_alloc_compressed_cluster_offset), the
 * L2 entry pointing at them.
 */
int gbs_qcow2_write_compressed(struct gbs *bs, uint64_t off, const void *data, uint64_t len)
{
    uint64_t host;
    struct q2w *w;
    int ret;

    if (!bs->writable)
        return -GBS_EACCES;
    /* qemu-img refuses compression with encryption before it writes. */
    if (Q(bs)->vol || Q(bs)->nocipher)
        return -GBS_ENOTSUP;
    ret = q2_writer(bs, &w);
    if (ret < 0)
        return ret;
    q2_set_dirty(bs, off, Q(bs)->cluster_size);
    ret = qcow2_prealloc_write_compressed(&w->pa, off, len, &host);
    if (ret < 0)
        return ret;
    return gdev_pwrite(bs->file, host, data, (size_t)len) < 0 ? -GBS_EIO : 0;
}

/* qcow2_co_flush_to_os() (the L2 table, then refcount blocks first), then the file. */
static int q2_flush(struct gbs *bs)
{
    struct q2 *q = Q(bs);
    int ret = 0;

    if (q->w) {
        ret = qcow2_prealloc_flush(&q->w->pa);
        if (ret == 0)
            ret = qcow2_alloc_flush(&q->w->al);
        if (ret < 0)
            return ret;
    }
    return gdev_flush(bs->file) < 0 ? -GBS_EIO : 0;
}

/*
 * qcow2_store_persistent_dirty_bitmaps() at close: data and tables of
 * the changed bitmaps of l, the directory, qcow2_flush_caches(), the
 * header (update_header_sync()), then the old directory and replaced
 * tables freed and the refcounts written.
 */
static int q2_store(struct gbs *bs, struct qcow2_bm_list *l, qcow2_bm_fill_fn fill, void *opaque,
                    bool dir_only)
{
    struct q2 *q = Q(bs);
    const struct qcow2_header *h = &q->img.h;
    struct qcow2_bm_dir dir;
    uint64_t autoclear;
    struct q2w *w;
    uint8_t *buf;
    int ret;

    if (h->version < 3)
        return -Q2_ENOTSUP;
    ret = q2_writer(bs, &w);
    if (ret < 0)
        return ret;
    buf = malloc((size_t)q->cluster_size);
    if (!buf)
        return -GBS_ENOMEM;
    /* dir_only: update_ext_header_and_dir() of an immediate change (--remove). */
    ret = dir_only ? qcow2_bm_store_dir(l, &w->al, &dir)
                   : qcow2_bm_store(l, &w->al, buf, fill, opaque, &dir);
    if (ret < 0)
        goto out;
    /* qcow2_flush_caches(): L2 tables, refcount blocks, then the file. */
    ret = qcow2_prealloc_flush(&w->pa);
    if (ret == 0)
        ret = qcow2_alloc_flush(&w->al);
    if (ret == 0 && gdev_flush(bs->file) < 0)
        ret = -GBS_EIO;
    if (ret < 0)
        goto out;
    autoclear = h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    if (dir.nb_bitmaps)
        autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    ret = q2_header_sync(bs, autoclear, &dir);
    if (ret < 0)
        goto out;
    qcow2_bm_store_finish(l, &w->al, buf, q->img.x.bitmap_dir_offset,
                          q->img.x.nb_bitmaps ? q->img.x.bitmap_dir_size : 0);
    q->img.x.nb_bitmaps = dir.nb_bitmaps;
    q->img.x.bitmap_dir_offset = dir.offset;
    q->img.x.bitmap_dir_size = dir.size;
    ret = qcow2_alloc_flush(&w->al);
out:
    free(buf);
    return ret;
}

int gbs_qcow2_store_bitmaps(struct gbs *bs, struct qcow2_bm_list *l, qcow2_bm_fill_fn fill,
                            void *opaque)
{
    if (bs->drv != &gbs_drv_qcow2 || !bs->writable)
        return -GBS_EINVAL;
    return q2_store(bs, l, fill, opaque, false);
}

struct qcow2_bm_list *gbs_qcow2_bitmaps(struct gbs *bs)
{
    return bs->drv == &gbs_drv_qcow2 && bs->writable ? Q(bs)->bml : NULL;
}

struct qcow2_bm_list *gbs_qcow2_bitmap_list(struct gbs *bs)
{
    struct q2 *q;

    if (bs->drv != &gbs_drv_qcow2 || !bs->writable)
        return NULL;
    q = Q(bs);
    if (q->bml)
        return q->bml;
    /* Bitmaps not loaded (dirty image) must not be overwritten by a new list. */
    if (q->img.x.nb_bitmaps || q->img.h.version < 3)
        return NULL;
    q->bml = calloc(1, sizeof(*q->bml));
    if (!q->bml)
        return NULL;
    qcow2_bm_list_init(q->bml, q->img.h.disk_size, q->cluster_bits, gbs_bm_mem, NULL);
    return q->bml;
}

int gbs_qcow2_store_bitmap_dir(struct gbs *bs)
{
    struct q2 *q;

    if (bs->drv != &gbs_drv_qcow2 || !bs->writable || !Q(bs)->bml)
        return -GBS_EINVAL;
    q = Q(bs);
    return q2_store(bs, q->bml, NULL, NULL, true);
}

static uint64_t rd_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int gbs_qcow2_resized(struct gbs *bs, uint64_t free_cluster_index)
{
    struct q2 *q = Q(bs);
    struct qcow2_header *h = &q->img.h;
    uint8_t hdr[104], *raw = NULL;
    uint64_t size, l1_off, rt_off, sn_off, *l1 = NULL, compat = h->compatible_features;
    uint32_t l1_size, rt_clusters, nb_sn, order = h->refcount_order;
    int ret;

    if (bs->drv != &gbs_drv_qcow2 || !bs->writable || q->w)
        return -GBS_EINVAL;
    /* The fields resize.c and amend.c write (offsets of QCowHeader), as they wrote them. */
    if (gdev_pread(bs->file, 0, hdr, h->version >= 3 ? 104 : 72) < 0)
        return -GBS_EIO;
    size = rd_be(hdr + 24, 8);
    l1_size = (uint32_t)rd_be(hdr + 36, 4);
    l1_off = rd_be(hdr + 40, 8);
    rt_off = rd_be(hdr + 48, 8);
    rt_clusters = (uint32_t)rd_be(hdr + 56, 4);
    nb_sn = (uint32_t)rd_be(hdr + 60, 4);
    sn_off = rd_be(hdr + 64, 8);
    if (h->version >= 3) {
        compat = rd_be(hdr + 80, 8);
        order = (uint32_t)rd_be(hdr + 96, 4);
    }
    if (l1_size > (32u << 20) / 8 || (l1_off & (q->cluster_size - 1)) ||
        (rt_off & (q->cluster_size - 1)) || l1_size < q->l1_size || order > 6)
        return -GBS_EIO;
    if (l1_size) {
        raw = malloc((size_t)l1_size * 8);
        l1 = malloc((size_t)l1_size * 8);
        if (!raw || !l1) {
            ret = -GBS_ENOMEM;
            goto out;
        }
        if (gdev_pread(bs->file, l1_off, raw, (size_t)l1_size * 8) < 0) {
            ret = -GBS_EIO;
            goto out;
        }
        for (uint32_t i = 0; i < l1_size; i++)
            l1[i] = qcow2_l1_load(raw, i);
    }
    if (q->bml) {
        ret = qcow2_bm_list_truncate(q->bml, size);
        if (ret < 0) {
            ret = -GBS_ENOMEM;
            goto out;
        }
    }
    free(q->l1);
    q->l1 = l1;
    l1 = NULL;
    q->l1_size = l1_size;
    h->disk_size = size;
    h->l1_size = l1_size;
    h->l1_table_offset = l1_off;
    h->refcount_table_offset = rt_off;
    h->refcount_table_clusters = rt_clusters;
    h->nb_snapshots = nb_sn;
    h->snapshots_offset = sn_off;
    h->compatible_features = compat;
    h->refcount_order = order;
    bs->total = size;
    q->free_cluster_index = free_cluster_index;
    ret = 0;
out:
    free(raw);
    free(l1);
    return ret;
}

/* qcow2_close() -> qcow2_inactivate(): the bitmaps loaded at open, stored when any changed. */
static int q2_close(struct gbs *bs)
{
    struct q2 *q = Q(bs);
    uint32_t i;
    bool need_write = false;
    int ret;

    if (!q->bml)
        return 0;
    for (i = 0; i < q->bml->n; i++)
        need_write |= q->bml->bm[i].dirty;
    ret = need_write ? q2_store(bs, q->bml, NULL, NULL, false) : 0;
    qcow2_bm_list_release(q->bml);
    free(q->bml);
    q->bml = NULL;
    return ret;
}

/*
 * qcow2_snapshot_load_tmp(): the snapshot's L1 table, checked as
 * qcow2_validate_table() checks it, replaces the active one (the virtual
 * size stays the image's; entries past the table read as unallocated).
 */
static int q2_snapshot_load_tmp(struct gbs *bs, uint32_t index)
{
    struct q2 *q = Q(bs);
    const struct qcow2_snapshot *sn;
    uint64_t off, n, *l1 = NULL;
    uint8_t *raw = NULL;

    if (index >= q->img.nsnapshots)
        return -INSTAR_ERR_BAD_ARGS;
    sn = &q->img.snapshots[index].sn;
    off = sn->l1_table_offset;
    n = sn->l1_size;
    /* QCOW_MAX_L1_SIZE bytes; offsets treated as int64_t, cluster aligned. */
    if (n > (32u << 20) / 8)
        return -QCOW2_ERR_SNAP_L1_TOO_LARGE;
    if ((uint64_t)INT64_MAX - n * 8 < off || (off & (q->cluster_size - 1)))
        return -QCOW2_ERR_SNAP_L1_OFFSET;
    if (n) {
        raw = malloc((size_t)n * 8);
        l1 = malloc((size_t)n * 8);
        if (!raw || !l1) {
            free(raw);
            free(l1);
            return -INSTAR_ERR_NOMEM;
        }
        /* Past the end of the file the table reads as zeros, as in QEMU. */
        if (gblk_pread_direct(bs->file, off, raw, (size_t)n * 8) < 0) {
            free(raw);
            free(l1);
            return -INSTAR_ERR_IO;
        }
        for (uint64_t i = 0; i < n; i++)
            l1[i] = qcow2_l1_load(raw, i);
        free(raw);
    }
    free(q->l1);
    q->l1 = l1;
    q->l1_size = (uint32_t)n;
    return 0;
}

/* --- qcow2_make_empty() --- */

static void st_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static int e_write_sync(uint32_t file, uint64_t off, const void *buf, size_t len)
{
    if (gdev_pwrite(file, off, buf, len) < 0 || gdev_flush(file) < 0)
        return -GBS_EIO;
    return 0;
}

/*
 * make_completely_empty(): with the dirty bit set first (the refcounts are
 * broken until the end), the L1 table and the clusters after the header
 * are zeroed, the header points at a one-cluster refcount table (cluster
 * 1), its first refcount block (cluster 2) and an empty L1 table (cluster
 * 3), the clusters up to the end of the L1 table get their references,
 * the header is rewritten clean (qcow2_mark_clean's qcow2_update_header:
 * the cluster as it is, with the new fields) and the file cut after the
 * L1 table.
 */
static int make_completely_empty(struct gbs *bs, uint64_t l1c)
{
    struct q2 *q = Q(bs);
    const struct qcow2_header *h = &q->img.h;
    uint64_t cs = q->cluster_size, i;
    uint8_t be[20], *buf;
    int ret = -GBS_EIO;

    st_be64(be, h->incompatible_features | QCOW2_INCOMPAT_DIRTY);
    if (e_write_sync(bs->file, 72, be, 8) < 0)
        return -GBS_EIO;
    if (l1c && gdev_zero(bs->file, h->l1_table_offset, l1c * cs, INSTAR_ZERO_ALLOCATE) < 0)
        return -GBS_EIO;
    if (gdev_zero(bs->file, cs, (2 + l1c) * cs, INSTAR_ZERO_ALLOCATE) < 0)
        return -GBS_EIO;
    st_be64(be, 3 * cs);
    st_be64(be + 8, cs);
    be[16] = 0, be[17] = 0, be[18] = 0, be[19] = 1;
    if (e_write_sync(bs->file, 40, be, 20) < 0)
        return -GBS_EIO;
    st_be64(be, 2 * cs);
    if (e_write_sync(bs->file, cs, be, 8) < 0)
        return -GBS_EIO;
    buf = calloc(1, (size_t)cs);
    if (!buf)
        return -GBS_ENOMEM;
    for (i = 0; i < 3 + l1c; i++)
        qcow2_refcount_set(buf, i, h->refcount_order, 1);
    if (e_write_sync(bs->file, 2 * cs, buf, (size_t)cs) < 0)
        goto out;
    if (gdev_pread(bs->file, 0, buf, (size_t)cs) < 0)
        goto out;
    st_be64(buf + 72, h->incompatible_features & ~(uint64_t)QCOW2_INCOMPAT_DIRTY);
    if (gdev_pwrite(bs->file, 0, buf, (size_t)cs) < 0)
        goto out;
    if (gdev_truncate(bs->file, (3 + l1c) * cs, INSTAR_TRUNC_OFF) < 0)
        goto out;
    memset(q->l1, 0, (size_t)q->l1_size * 8);
    ret = 0;
out:
    free(buf);
    return ret;
}

int gbs_qcow2_make_empty(struct gbs *bs)
{
    struct q2 *q;
    const struct qcow2_header *h;
    uint64_t cs, l1c, end, off, step;
    struct q2w *w;
    int ret;

    if (bs->drv != &gbs_drv_qcow2)
        return -GBS_ENOTSUP;
    if (!bs->writable)
        return -GBS_EACCES;
    q = Q(bs);
    h = &q->img.h;
    cs = q->cluster_size;
    if (h->incompatible_features & QCOW2_INCOMPAT_DIRTY)
        return -GBS_EINVAL; /* qemu would repair it at open: not done by instar */
    l1c = ((uint64_t)q->l1_size * 8 + cs - 1) / cs;
    if (h->version >= 3 && !h->nb_snapshots && !q->img.x.nb_bitmaps &&
        3 + l1c <= qcow2_refcount_block_entries(q->cluster_bits, h->refcount_order) &&
        h->crypt_method != QCOW2_CRYPT_LUKS && !q->geom.data_file)
        return make_completely_empty(bs, l1c); /* (it would drop a LUKS header's clusters) */
    /* Every active cluster discarded (QCOW2_DISCARD_SNAPSHOT, passed down). */
    ret = q2_writer(bs, &w);
    if (ret < 0)
        return ret;
    end = (bs->total + 511) / 512 * 512;
    step = (0x7fffffffULL / cs) * cs;
    for (off = 0; off < end; off += step) {
        ret = qcow2_prealloc_zeroize_flags(&w->pa, h->version, off,
                                           end - off < step ? end - off : step, end,
                                           QCOW2_ZEROIZE_FULL_DISCARD | QCOW2_ZEROIZE_DISCARD);
        if (ret < 0)
            return ret == -QCOW2_PREALLOC_ENOTSUP ? -Q2_ENOTSUP : ret;
    }
    return q2_flush(bs);
}

const struct gbs_driver gbs_drv_qcow2 = {
    .name = "qcow2",
    .open = q2_open,
    .block_status = q2_block_status,
    .pread = q2_pread,
    .pwrite = q2_pwrite,
    .pwrite_zeroes = q2_pwrite_zeroes,
    .flush = q2_flush,
    .close = q2_close,
    .snapshot_load_tmp = q2_snapshot_load_tmp,
};

int gbs_qcow2_change_backing(struct gbs *bs, const char *name, const char *fmt)
{
    struct q2 *q;
    struct qcow2_header h;
    uint8_t *buf;
    int ret;

    if (bs->drv != &gbs_drv_qcow2)
        return -GBS_ENOTSUP;
    if (!bs->writable)
        return -GBS_EACCES;
    q = Q(bs);
    /* The header as qemu holds it: the tables where the writes left them. */
    h = q->img.h;
    if (q->w) {
        h.refcount_table_offset = q->w->al.reftable_offset;
        h.refcount_table_clusters = (uint32_t)(q->w->al.reftable_size >> (h.cluster_bits - 3));
        h.l1_table_offset = q->w->pa.l1_offset;
        h.l1_size = (uint32_t)q->w->pa.l1_size;
    }
    buf = malloc((size_t)q->cluster_size);
    if (!buf)
        return -GBS_ENOMEM;
    ret = qcow2_rebase_header(&h, &q->img.x, q->img.first, q->img.first_len, name, fmt, buf);
    if (ret == 0 && gdev_pwrite(bs->file, 0, buf, (size_t)q->cluster_size) < 0)
        ret = -GBS_EIO;
    free(buf);
    return ret;
}
