/*
 * The qcow (version 1) driver of the guest block layer: open as
 * qcow_open() does (formats/qcow/qcow.h), block status as
 * qcow_co_block_status() answers it (one cluster at a time: a data
 * cluster is DATA at its file offset, a compressed one DATA alone, an
 * unallocated one unallocated, so the backing file shows through), and
 * reads as qcow_co_preadv() does them (compressed clusters inflated with
 * the guest's zlib into one cluster, as decompress_cluster() does; a data
 * cluster at an offset that is not a multiple of 512 is an I/O error).
 * Writes as qcow_co_pwritev() does them: a new cluster (and a new L2
 * table) at the end of the file, the L2 and L1 entries written at once;
 * with AES, the data encrypted (IVs: guest sectors) and a new cluster's
 * other sectors filled with encrypted zeros.
 */
#include "bdrv.h"
#include "codec.h"
#include "luks/unlock.h"
#include "qcow/qcow.h"

struct gqcow {
    struct qcow_image img;
    uint64_t *l1; /* the L1 entries inside the file (l1_held), host order */
    uint64_t l1_held;
    uint64_t *l2;           /* the cached L2 table, host order */
    uint64_t l2_off;        /* its offset, 0: none */
    uint8_t *cluster_cache; /* the last decompressed cluster */
    uint8_t *cluster_data;
    uint8_t *enc_data;             /* AES: a write's data, encrypted */
    uint64_t cluster_cache_offset; /* UINT64_MAX: none */
    char backing[QCOW_BACKING_NAME_MAX + 1];
    bool encrypted;         /* AES, opened with a key */
    struct luks_volume aes; /* its key: AES-128-CBC, plain64 IVs of guest sectors */
};

static struct gqcow qcows[INSTAR_NODE_MAX];

/*
 * Open device dev as qcow into s (need_key: an open with I/O and no
 * secret).  Returns 0 or a negative error code (QCOW_ERR_*, INSTAR_ERR_*),
 * with the version in s->img.version.
 */
static int gqcow_open(struct gqcow *s, uint32_t dev, bool need_key)
{
    uint8_t hdr[QCOW_HEADER_SIZE];
    uint64_t i, n, fsize = gblk_size(dev);
    uint8_t *p;
    int ret;

    free(s->l1);
    free(s->l2);
    free(s->cluster_cache);
    free(s->cluster_data);
    free(s->enc_data);
    memset(s, 0, sizeof(*s));
    s->cluster_cache_offset = UINT64_MAX;
    if (gblk_pread(dev, 0, hdr, sizeof(hdr)) < 0)
        return -QCOW_ERR_IO;
    ret = qcow_open_header(hdr, need_key, &s->img);
    if (ret < 0)
        return ret;
    /* The L1 table: QEMU refuses a read past BDRV_MAX_LENGTH; zeros past the file. */
    if (!qcow_io_ok(s->img.l1_table_offset, s->img.l1_size * 8))
        return -QCOW_ERR_IO;
    n = qcow_l1_in_file(&s->img, fsize);
    s->l1 = malloc((size_t)n * 8 + 8);
    if (!s->l1)
        return -QCOW_ERR_L1_NOMEM;
    s->l1_held = n;
    p = (uint8_t *)s->l1;
    if (n && gblk_pread_direct(dev, s->img.l1_table_offset, p, (size_t)n * 8) < 0)
        return -QCOW_ERR_IO;
    for (i = 0; i < n; i++)
        s->l1[i] = qcow_be64(p + i * 8);
    ret = qcow_check_backing(&s->img);
    if (ret < 0)
        return ret;
    if (s->img.backing_file_offset) {
        uint32_t len = s->img.backing_file_size;

        if (!qcow_io_ok(s->img.backing_file_offset, len) ||
            gblk_pread(dev, s->img.backing_file_offset, s->backing, len) < 0)
            return -QCOW_ERR_IO;
        s->backing[len] = '\0';
    }
    return 0;
}

static __attribute__((noreturn)) void gqcow_fail(uint32_t op, int ret, const struct gqcow *s)
{
    uint64_t args[4] = {s->img.version, 0, 0, 0};

    result_error(op, -ret, args, NULL, 0);
}

void gbs_qcow_describe(uint32_t op, uint32_t dev, bool io, struct gbs_qcow_desc *d)
{
    static struct gqcow s;
    int ret = gqcow_open(&s, dev, io);

    if (ret < 0)
        gqcow_fail(op, ret, &s);
    memset(d, 0, sizeof(*d));
    d->size = s.img.size / 512 * 512;
    d->cluster_size = s.img.cluster_size;
    d->encrypted = s.img.crypt_method != QCOW_CRYPT_NONE;
    if (s.img.backing_file_offset && s.backing[0]) {
        d->has_backing = true;
        memcpy(d->backing, s.backing, sizeof(s.backing));
    }
}

static struct gqcow *C(struct gbs *bs)
{
    return bs->opaque;
}

static int qcow_drv_open(struct gbs *bs)
{
    struct gqcow *s = &qcows[bs->node];
    int ret;

    bs->opaque = s;
    ret = gqcow_open(s, bs->file, bs->key == NULL);
    if (ret == 0 && s->img.crypt_method != QCOW_CRYPT_NONE) {
        /*
         * qcrypto_block_qcow_init(): the secret up to its first NUL, cut to
         * 16 bytes and padded with zeros, is the AES-128 key itself.
         */
        static const struct qcow2_luks_info aes = {
            .cipher_alg = "aes-128", .cipher_mode = "cbc", .ivgen_alg = "plain64"};
        uint8_t key[16];
        uint32_t i, len = bs->key->len < INSTAR_KEY_BYTES ? bs->key->len : INSTAR_KEY_BYTES;

        memset(key, 0, sizeof(key));
        for (i = 0; i < len && i < 16 && bs->key->data[i]; i++)
            key[i] = bs->key->data[i];
        if (luks_volume_init(&s->aes, &aes, 16, key) < 0)
            ret = -QCOW_ERR_AES_INIT; /* (nettle's setup of a valid key: never) */
        s->encrypted = true;
    }
    if (ret < 0)
        gqcow_fail(boot->op, ret, s);
    bs->total = s->img.size / 512 * 512;
    bs->supports_backing = true;
    s->cluster_cache = malloc(s->img.cluster_size);
    s->cluster_data = malloc(s->img.cluster_size);
    s->l2 = malloc((size_t)s->img.l2_size * 8);
    if (s->encrypted)
        s->enc_data = malloc(s->img.cluster_size);
    if (!s->cluster_cache || !s->cluster_data || !s->l2 || (s->encrypted && !s->enc_data))
        return -INSTAR_ERR_NOMEM;
    return 0;
}

static uint64_t l1_entry(const struct gqcow *s, uint64_t index)
{
    return index < s->l1_held ? s->l1[index] : 0;
}

/* get_cluster_offset(allocate = 0): the L2 entry of pos (0: unallocated), or -errno. */
static int cluster_entry(struct gbs *bs, uint64_t pos, uint64_t *entry)
{
    struct gqcow *s = C(bs);
    uint64_t l2 = l1_entry(s, qcow_l1_index(&s->img, pos));
    uint32_t i, n = s->img.l2_size;

    *entry = 0;
    if (!l2)
        return 0;
    if (s->l2_off != l2) {
        uint8_t *p = (uint8_t *)s->l2;

        s->l2_off = 0;
        if (!qcow_io_ok(l2, (uint64_t)n * 8) || gblk_pread(bs->file, l2, p, (size_t)n * 8) < 0)
            return -GBS_EIO;
        for (i = 0; i < n; i++)
            s->l2[i] = qcow_be64(p + (size_t)i * 8);
        s->l2_off = l2;
    }
    *entry = s->l2[qcow_l2_index(&s->img, pos)];
    return 0;
}

static int qcow_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                             uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    struct gqcow *s = C(bs);
    uint64_t entry, in = off & (s->img.cluster_size - 1);
    int ret;

    (void)want_zero;
    ret = cluster_entry(bs, off, &entry);
    if (ret < 0)
        return ret;
    *pnum = s->img.cluster_size - in < bytes ? s->img.cluster_size - in : bytes;
    if (!entry)
        return 0;
    if ((entry & QCOW_OFLAG_COMPRESSED) || s->encrypted)
        return INSTAR_BS_DATA;
    *map = entry | in;
    /*
     * A cluster not at a multiple of 512 is reported where QEMU reports it,
     * but reading it fails (qcow_co_preadv): no device, so that no planner
     * copies its bytes from the file directly instead of reading it.
     */
    *dev = (entry & 511) ? INSTAR_NO_NODE : bs->file;
    return INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID;
}

/* decompress_cluster(): the cluster of entry into s->cluster_cache. */
static int decompress_cluster(struct gbs *bs, uint64_t entry)
{
    struct gqcow *s = C(bs);
    uint64_t coff;
    uint32_t csize;

    qcow_compressed(&s->img, entry, &coff, &csize);
    if (s->cluster_cache_offset == coff)
        return 0;
    if (!qcow_io_ok(coff, csize) || gblk_pread_direct(bs->file, coff, s->cluster_data, csize) < 0)
        return -GBS_EIO;
    if (gcodec_decompress(GCODEC_ZLIB, s->cluster_data, csize, s->cluster_cache,
                          s->img.cluster_size) < 0)
        return -GBS_EIO;
    s->cluster_cache_offset = coff;
    return 0;
}

static int qcow_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    struct gqcow *s = C(bs);
    uint64_t cs = s->img.cluster_size;
    uint8_t *p = buf;

    while (len) {
        uint64_t entry, in = off & (cs - 1), n = cs - in < len ? cs - in : len;
        int ret = cluster_entry(bs, off, &entry);

        if (ret < 0)
            return ret;
        if (!entry) {
            if (bs->backing) {
                ret = gbs_pread(bs->backing, off, p, (size_t)n);
                if (ret < 0)
                    return ret;
            } else {
                memset(p, 0, (size_t)n);
            }
        } else if (entry & QCOW_OFLAG_COMPRESSED) {
            ret = decompress_cluster(bs, entry);
            if (ret < 0)
                return ret;
            memcpy(p, s->cluster_cache + in, (size_t)n);
        } else if (s->encrypted) {
            /* The whole sectors around the request, decrypted (IVs: guest sectors). */
            uint64_t a = in & ~511ull, b = (in + n + 511) & ~511ull;

            if (entry & 511)
                return -GBS_EIO;
            if (!qcow_io_ok(entry + a, b - a) ||
                gblk_pread_direct(bs->file, entry + a, s->cluster_data, (size_t)(b - a)) < 0 ||
                luks_decrypt(&s->aes, (off - in + a) / 512, s->cluster_data, (size_t)(b - a)) < 0)
                return -GBS_EIO;
            memcpy(p, s->cluster_data + (in - a), (size_t)n);
        } else {
            /* A run of clusters that follow each other in the file: one read. */
            uint64_t host = entry + in, next = entry;

            if (entry & 511)
                return -GBS_EIO;
            while (n < len) {
                uint64_t e2, m = cs < len - n ? cs : len - n;

                if (next > UINT64_MAX - cs || cluster_entry(bs, off + n, &e2) < 0 ||
                    e2 != next + cs)
                    break;
                next = e2;
                n += m;
            }
            if (!qcow_io_ok(host, n) || gblk_pread_direct(bs->file, host, p, (size_t)n) < 0)
                return -GBS_EIO;
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

/* --- writes (qcow_co_pwritev, qcow_co_pwritev_compressed) --- */

/* bdrv_co_pwrite_sync(): write, then flush the file. */
static int write_sync(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    if (!qcow_io_ok(off, len) || gdev_pwrite(bs->file, off, buf, len) < 0 ||
        gdev_flush(bs->file) < 0)
        return -GBS_EIO;
    return 0;
}

/* bdrv_getlength() of the image file as the writes left it: rounded up to 512. */
static uint64_t file_length(struct gbs *bs)
{
    uint64_t len = gdev_length(bs->file);

    return len > UINT64_MAX - 511 ? len & ~511ull : (len + 511) & ~511ull;
}

/* QEMU_ALIGN_UP(v, cluster size), 0 on overflow (no offset QEMU can use). */
static uint64_t align_cluster(const struct gqcow *s, uint64_t v)
{
    uint64_t m = s->img.cluster_size - 1;

    return v > UINT64_MAX - m ? 0 : (v + m) & ~m;
}

/*
 * qemu holds the whole L1 table; instar reads only the part inside the
 * file (the rest is zeros): a write may link any entry, so it is held whole.
 */
static int hold_l1(struct gqcow *s)
{
    uint64_t *n;

    if (s->l1_held == s->img.l1_size)
        return 0;
    n = realloc(s->l1, (size_t)s->img.l1_size * 8 + 8);
    if (!n)
        return -GBS_ENOMEM;
    memset(n + s->l1_held, 0, (size_t)(s->img.l1_size - s->l1_held) * 8);
    s->l1 = n;
    s->l1_held = s->img.l1_size;
    return 0;
}

/*
 * [a, b) of the new cluster at host offset host, guest offset guest: zeros
 * encrypted with their guest sectors' IVs (s->cluster_data the buffer).
 */
static int fill_encrypted_zeros(struct gbs *bs, uint64_t guest, uint64_t host, uint32_t a,
                                uint32_t b)
{
    struct gqcow *s = C(bs);

    if (a >= b)
        return 0;
    memset(s->cluster_data, 0, b - a);
    if (luks_encrypt(&s->aes, (guest + a) / 512, s->cluster_data, b - a) < 0 ||
        !qcow_io_ok(host + a, b - a) || gdev_pwrite(bs->file, host + a, s->cluster_data, b - a) < 0)
        return -GBS_EIO;
    return 0;
}

/*
 * get_cluster_offset() with allocate 1 (a plain cluster, [n_start, n_end)
 * of it about to be written) or 2 (a compressed cluster of csize bytes),
 * in qemu's order: a missing L2 table at the end of the file (rounded up
 * to a cluster), the L1 entry written, then the zeroed table; a missing
 * cluster (or, for allocate 1, a compressed one) at the end of the file:
 * a plain one rounded up to a cluster and the file grown over it (a
 * compressed one rewritten there whole first, unless it is overwritten
 * whole), a compressed one where the file ends (rounded up to 512); then
 * the L2 entry.  *result the entry (0 only on failure).
 *
 * enc (AES, allocate 1): the write's data for [n_start, n_end), encrypted.
 * A new plain cluster gets it before the L2 entry links the cluster, where
 * qemu writes it after (the same bytes; a cut between the two then leaves
 * the cluster unlinked rather than linked over zeros that decrypt to
 * garbage); *written tells.  Returns 0 or -errno.
 */
static int alloc_cluster(struct gbs *bs, uint64_t pos, int allocate, uint32_t csize,
                         uint32_t n_start, uint32_t n_end, const uint8_t *enc, bool *written,
                         uint64_t *result)
{
    struct gqcow *s = C(bs);
    uint64_t idx = qcow_l1_index(&s->img, pos), l2, entry, off;
    uint32_t i = qcow_l2_index(&s->img, pos), cs = s->img.cluster_size;
    uint8_t be[8];
    int ret;

    *result = 0;
    if (idx >= s->l1_held)
        return -GBS_EIO;
    l2 = s->l1[idx];
    if (!l2) {
        l2 = align_cluster(s, file_length(bs));
        if (!l2)
            return -GBS_EIO;
        s->l1[idx] = l2;
        qcow_put_be64(be, l2);
        ret = write_sync(bs, s->img.l1_table_offset + idx * 8, be, 8);
        if (ret < 0)
            return ret;
        /* The new table: zeros, in the cache and in the file. */
        s->l2_off = 0;
        memset(s->l2, 0, (size_t)s->img.l2_size * 8);
        ret = write_sync(bs, l2, s->l2, (size_t)s->img.l2_size * 8);
        if (ret < 0)
            return ret;
        s->l2_off = l2;
    }
    ret = cluster_entry(bs, pos, &entry);
    if (ret < 0)
        return ret;
    if (entry && !((entry & QCOW_OFLAG_COMPRESSED) && allocate == 1)) {
        *result = entry;
        return 0;
    }
    if ((entry & QCOW_OFLAG_COMPRESSED) && n_end - n_start < cs) {
        /* Decompressed and written whole at the end of the file before the write over it. */
        if (decompress_cluster(bs, entry) < 0)
            return -GBS_EIO;
        off = align_cluster(s, file_length(bs));
        if (!off || !qcow_io_ok(off, cs) || gdev_pwrite(bs->file, off, s->cluster_cache, cs) < 0)
            return -GBS_EIO;
    } else if (allocate == 1) {
        off = align_cluster(s, file_length(bs));
        if (!off || off + cs > (uint64_t)INT64_MAX)
            return -7; /* E2BIG */
        if (gdev_truncate(bs->file, off + cs, INSTAR_TRUNC_OFF) < 0)
            return -GBS_EIO;
        /*
         * An encrypted image's new cluster: the sectors the write leaves
         * are zeros, encrypted (IVs: their guest sectors), whatever the
         * backing file holds there.  qemu writes them a sector at a time;
         * one write per run gives the same bytes.
         */
        if (s->encrypted && n_end - n_start < cs) {
            ret = fill_encrypted_zeros(bs, pos & ~(uint64_t)(cs - 1), off, 0, n_start);
            if (ret == 0)
                ret = fill_encrypted_zeros(bs, pos & ~(uint64_t)(cs - 1), off, n_end, cs);
            if (ret < 0)
                return ret;
        }
        if (enc) {
            if (!qcow_io_ok(off + n_start, n_end - n_start) ||
                gdev_pwrite(bs->file, off + n_start, enc, n_end - n_start) < 0)
                return -GBS_EIO;
            *written = true;
        }
    } else {
        off =
            file_length(bs) | QCOW_OFLAG_COMPRESSED | (uint64_t)csize << (63 - s->img.cluster_bits);
    }
    /* The cached table follows the file (it is the one holding pos). */
    s->l2[i] = off;
    qcow_put_be64(be, off);
    ret = write_sync(bs, l2 + (uint64_t)i * 8, be, 8);
    if (ret < 0)
        return ret;
    *result = off;
    return 0;
}

/* qcow_co_pwritev() of a request aligned to 512 bytes: cluster by cluster. */
static int write_aligned(struct gbs *bs, uint64_t off, const uint8_t *p, size_t len)
{
    struct gqcow *s = C(bs);
    uint64_t cs = s->img.cluster_size;

    while (len) {
        uint64_t co, in = off & (cs - 1), n = cs - in < len ? cs - in : len;
        const uint8_t *data = p;
        bool written = false;
        int ret;

        if (s->encrypted) {
            /* qcrypto_block_encrypt() of a copy: IVs count guest sectors. */
            memcpy(s->enc_data, p, (size_t)n);
            if (luks_encrypt(&s->aes, off / 512, s->enc_data, (size_t)n) < 0)
                return -GBS_EIO;
            data = s->enc_data;
        }
        ret = alloc_cluster(bs, off, 1, 0, (uint32_t)in, (uint32_t)(in + n),
                            s->encrypted ? data : NULL, &written, &co);
        if (ret < 0)
            return ret;
        if (!co || (co & 511))
            return -GBS_EIO;
        if (!written && (co > UINT64_MAX - in || !qcow_io_ok(co + in, n) ||
                         gdev_pwrite(bs->file, co + in, data, (size_t)n) < 0))
            return -GBS_EIO;
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * bdrv_co_pwritev() over qcow's request alignment of 512 (the node's size
 * is whole sectors): an unaligned head or tail sector is read through the
 * node first (both before anything is written, as bdrv_padding_rmw_read()
 * does) and written whole with its part of the request.
 */
static int qcow_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    struct gqcow *s = C(bs);
    uint64_t end = off + len, head_off = off & ~511ull, tail_off = (end - 1) & ~511ull;
    uint8_t head[512], tail[512];
    const uint8_t *p = buf;
    bool h = off & 511, t = end & 511;
    size_t n;
    int ret;

    s->cluster_cache_offset = UINT64_MAX; /* qemu drops the decompressed cluster */
    ret = hold_l1(s);
    if (ret < 0)
        return ret;
    if (h && t && head_off == tail_off) {
        ret = qcow_pread(bs, head_off, head, 512);
        if (ret < 0)
            return ret;
        memcpy(head + (off & 511), p, len);
        return write_aligned(bs, head_off, head, 512);
    }
    if ((h && (ret = qcow_pread(bs, head_off, head, 512)) < 0) ||
        (t && (ret = qcow_pread(bs, tail_off, tail, 512)) < 0))
        return ret;
    if (h) {
        n = 512 - (size_t)(off & 511);
        memcpy(head + (off & 511), p, n);
        ret = write_aligned(bs, head_off, head, 512);
        if (ret < 0)
            return ret;
        p += n;
        off += n;
        len -= n;
    }
    n = t ? len - (size_t)(end & 511) : len;
    if (n && (ret = write_aligned(bs, off, p, n)) < 0)
        return ret;
    if (t) {
        memcpy(tail, p + n, (size_t)(end & 511));
        return write_aligned(bs, tail_off, tail, 512);
    }
    return 0;
}

int gbs_qcow_make_empty(struct gbs *bs)
{
    struct gqcow *s;
    uint64_t len;
    int ret;

    if (bs->drv != &gbs_drv_qcow)
        return -GBS_ENOTSUP;
    if (!bs->writable)
        return -GBS_EACCES;
    s = C(bs);
    ret = hold_l1(s);
    if (ret < 0)
        return ret;
    len = s->img.l1_size * 8;
    memset(s->l1, 0, (size_t)len);
    s->l2_off = 0;
    s->cluster_cache_offset = UINT64_MAX;
    /* The table's end: at most 2^32 entries past an offset qcow_open() bounded. */
    if (s->img.l1_table_offset > UINT64_MAX - len)
        return -GBS_EIO;
    ret = write_sync(bs, s->img.l1_table_offset, s->l1, (size_t)len);
    if (ret < 0)
        return ret;
    return gdev_truncate(bs->file, s->img.l1_table_offset + len, INSTAR_TRUNC_OFF) < 0 ? -GBS_EIO
                                                                                       : 0;
}

int gbs_qcow_target_info(struct gbs *bs, uint64_t *cluster_size)
{
    if (bs->drv != &gbs_drv_qcow)
        return -GBS_EINVAL;
    *cluster_size = C(bs)->img.cluster_size;
    return 0;
}

int gbs_qcow_write_compressed(struct gbs *bs, uint64_t off, const void *data, uint64_t len)
{
    struct gqcow *s = C(bs);
    uint64_t co;
    int ret;

    if (bs->drv != &gbs_drv_qcow || !bs->writable || !len || len >= s->img.cluster_size ||
        s->encrypted)
        return -GBS_EINVAL;
    ret = hold_l1(s);
    if (ret == 0)
        ret = alloc_cluster(bs, off, 2, (uint32_t)len, 0, 0, NULL, NULL, &co);
    if (ret < 0)
        return ret;
    if (!co)
        return -GBS_EIO;
    /* An entry already there (convert -n) is written over at its offset, as in qemu. */
    co &= s->img.cluster_offset_mask;
    if (!qcow_io_ok(co, len) || gdev_pwrite(bs->file, co, data, (size_t)len) < 0)
        return -GBS_EIO;
    return 0;
}

static int qcow_flush(struct gbs *bs)
{
    if (!bs->writable)
        return 0;
    return gdev_flush(bs->file) < 0 ? -GBS_EIO : 0;
}

const struct gbs_driver gbs_drv_qcow = {
    .name = "qcow",
    .open = qcow_drv_open,
    .block_status = qcow_block_status,
    .pread = qcow_pread,
    .pwrite = qcow_pwrite,
    .flush = qcow_flush,
};
