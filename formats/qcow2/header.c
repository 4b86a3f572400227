/*
 * qcow2 header and header extension checks, in the order qemu-img 7.2's
 * qcow2_do_open() and qcow2_read_extensions() run them for a read-only,
 * no-I/O open ("qemu-img info").  Field layout: docs/interop/qcow2.txt,
 * "Header" and "Header extensions".
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "instar/ovf.h"
#include "header.h"

#define INT64_MAX_U ((uint64_t)INT64_MAX)
#define INT_MAX_U   0x7fffffffull

/* Table limits of qcow2.h (QCOW_MAX_REFTABLE_SIZE, QCOW_MAX_L1_SIZE). */
#define QCOW2_MAX_REFTABLE_BYTES (8ull << 20)
#define QCOW2_MAX_L1_BYTES       (32ull << 20)

/* A feature name table entry (qcow2.txt "Feature name table"). */
#define QCOW2_FEATURE_ENTRY_LEN 48
#define QCOW2_FEATURE_NAME_LEN  46
#define QCOW2_FEAT_INCOMPATIBLE 0

uint8_t qcow2_u8(const uint8_t *buf, size_t len, uint64_t off)
{
    return off < len ? buf[off] : 0;
}

uint16_t qcow2_be16(const uint8_t *buf, size_t len, uint64_t off)
{
    return (uint16_t)(qcow2_u8(buf, len, off) << 8 | qcow2_u8(buf, len, off + 1));
}

uint32_t qcow2_be32(const uint8_t *buf, size_t len, uint64_t off)
{
    return (uint32_t)qcow2_be16(buf, len, off) << 16 | qcow2_be16(buf, len, off + 2);
}

uint64_t qcow2_be64(const uint8_t *buf, size_t len, uint64_t off)
{
    return (uint64_t)qcow2_be32(buf, len, off) << 32 | qcow2_be32(buf, len, off + 4);
}

/*
 * The C string QEMU gets when it reads n bytes at off and NUL-terminates
 * them: it ends at the first NUL, or at the end of the buffer (zeros lie
 * beyond).  Returns its length and sets *p.
 */
static size_t cstr_at(const uint8_t *buf, size_t len, uint64_t off, uint64_t n, const uint8_t **p)
{
    const uint8_t *nul;
    uint64_t avail;

    *p = buf;
    if (off >= len)
        return 0;
    avail = len - off;
    if (n > avail)
        n = avail;
    *p = buf + off;
    nul = memchr(buf + off, 0, n);
    return nul ? (size_t)(nul - (buf + off)) : (size_t)n;
}

static void err_clear(struct qcow2_err_info *ei)
{
    ei->args[0] = ei->args[1] = ei->args[2] = ei->args[3] = 0;
    ei->s = NULL;
    ei->slen = 0;
}

static int err1(struct qcow2_err_info *ei, int code, uint64_t a0)
{
    ei->args[0] = a0;
    return -code;
}

bool qcow2_header_probe(const uint8_t *buf, size_t len)
{
    return len >= QCOW2_HEADER_READ_LEN && qcow2_be32(buf, len, 0) == QCOW2_MAGIC &&
           qcow2_be32(buf, len, 4) >= 2;
}

static void header_decode(const uint8_t *b, size_t n, struct qcow2_header *h)
{
    memset(h, 0, sizeof(*h));
    h->magic = qcow2_be32(b, n, 0);
    h->version = qcow2_be32(b, n, 4);
    h->backing_file_offset = qcow2_be64(b, n, 8);
    h->backing_file_size = qcow2_be32(b, n, 16);
    h->cluster_bits = qcow2_be32(b, n, 20);
    h->size = qcow2_be64(b, n, 24);
    h->crypt_method = qcow2_be32(b, n, 32);
    h->l1_size = qcow2_be32(b, n, 36);
    h->l1_table_offset = qcow2_be64(b, n, 40);
    h->refcount_table_offset = qcow2_be64(b, n, 48);
    h->refcount_table_clusters = qcow2_be32(b, n, 56);
    h->nb_snapshots = qcow2_be32(b, n, 60);
    h->snapshots_offset = qcow2_be64(b, n, 64);
    h->incompatible_features = qcow2_be64(b, n, 72);
    h->compatible_features = qcow2_be64(b, n, 80);
    h->autoclear_features = qcow2_be64(b, n, 88);
    h->refcount_order = qcow2_be32(b, n, 96);
    h->header_length = qcow2_be32(b, n, 100);
    h->compression_type = qcow2_u8(b, n, 104);
}

/*
 * qcow2_validate_table(): at most max_bytes of entry_len-byte entries, at
 * a cluster-aligned offset whose end stays below INT64_MAX.
 */
static int validate_table(const struct qcow2_header *h, uint64_t offset, uint64_t entries,
                          uint64_t entry_len, uint64_t max_bytes, int too_large, int bad_offset)
{
    if (entries > max_bytes / entry_len)
        return -too_large;
    /* entries * entry_len <= max_bytes here, so nothing overflows. */
    if (INT64_MAX_U - entries * entry_len < offset || (offset & (h->cluster_size - 1)) != 0)
        return -bad_offset;
    return 0;
}

/* State of one qcow2_read_extensions() call. */
struct ext_walk {
    bool feature_pass; /* the first call, made only to find feature names */
    const uint8_t *ftable;
    uint64_t ftable_off, ftable_len;
};

/*
 * Walk the extensions from header_length to ext_end.  In the feature pass
 * QEMU's state has no crypt method yet and errors are dropped, so the
 * walk merely stops where an error would be.
 */
static int ext_walk(const uint8_t *buf, size_t len, const struct qcow2_header *h,
                    struct ext_walk *w, qcow2_crypto_fn crypto, void *opaque, struct qcow2_exts *x,
                    struct qcow2_err_info *ei)
{
    uint64_t off = h->header_length;
    uint64_t end = h->ext_end;
    uint32_t crypt_method = w->feature_pass ? 0 : h->crypt_method;

    /* Each turn advances off by at least 8, and off < end <= 2 MiB. */
    while (off < end) {
        uint32_t magic = qcow2_be32(buf, len, off);
        uint32_t elen = qcow2_be32(buf, len, off + 4);
        int ret;

        off += 8;
        if (off > end || elen > end - off)
            return -QCOW2_ERR_EXT_TOO_LARGE;

        switch (magic) {
        case QCOW2_EXT_END:
            return 0;

        case QCOW2_EXT_BACKING_FMT:
            if (elen >= QCOW2_BACKING_FMT_MAX)
                return err1(ei, QCOW2_ERR_EXT_BACKING_FMT_LEN, elen);
            x->has_backing_fmt = true;
            x->backing_fmt_len = cstr_at(buf, len, off, elen, &x->backing_fmt);
            break;

        case QCOW2_EXT_FEATURES:
            /* The last table wins; QEMU keeps only the latest read. */
            w->ftable = buf;
            w->ftable_off = off;
            w->ftable_len = elen;
            break;

        case QCOW2_EXT_CRYPTO:
            if (crypt_method != QCOW2_CRYPT_LUKS)
                return -QCOW2_ERR_EXT_CRYPTO_UNEXPECTED;
            if (elen != 16)
                return err1(ei, QCOW2_ERR_EXT_CRYPTO_SIZE, elen);
            x->has_crypto = true;
            x->crypto_offset = qcow2_be64(buf, len, off);
            x->crypto_length = qcow2_be64(buf, len, off + 8);
            if (x->crypto_offset % h->cluster_size != 0) {
                ei->args[0] = x->crypto_offset;
                ei->args[1] = h->cluster_size;
                return -QCOW2_ERR_EXT_CRYPTO_OFFSET;
            }
            if (crypto && !w->feature_pass) {
                ret = crypto(opaque, x->crypto_offset, x->crypto_length, ei);
                if (ret < 0)
                    return ret;
            }
            break;

        case QCOW2_EXT_BITMAPS: {
            uint32_t nb;
            uint64_t dsize, doff;

            if (elen != 24)
                return -QCOW2_ERR_EXT_BITMAPS_LEN;
            if (!(h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
                /* Only a warning; the extension is then ignored. */
                x->warn_bitmaps++;
                break;
            }
            nb = qcow2_be32(buf, len, off);
            if (qcow2_be32(buf, len, off + 4) != 0)
                return -QCOW2_ERR_EXT_BITMAPS_RESERVED;
            dsize = qcow2_be64(buf, len, off + 8);
            doff = qcow2_be64(buf, len, off + 16);
            if (nb > QCOW2_MAX_BITMAPS)
                return err1(ei, QCOW2_ERR_EXT_BITMAPS_TOO_MANY, nb);
            if (nb == 0)
                return -QCOW2_ERR_EXT_BITMAPS_ZERO;
            if ((doff & (h->cluster_size - 1)) != 0)
                return -QCOW2_ERR_EXT_BITMAPS_DIR_OFFSET;
            if (dsize > QCOW2_MAX_BITMAP_DIR_SIZE)
                return err1(ei, QCOW2_ERR_EXT_BITMAPS_DIR_SIZE, dsize);
            x->nb_bitmaps = nb;
            x->bitmap_dir_offset = doff;
            x->bitmap_dir_size = dsize;
            break;
        }

        case QCOW2_EXT_DATA_FILE:
            x->has_data_file = true;
            x->data_file_len = cstr_at(buf, len, off, elen, &x->data_file);
            break;

        default:
            /* Unknown extensions are kept by QEMU, and mean nothing here. */
            break;
        }

        /* elen <= end - off <= 2 MiB, so this neither wraps nor overflows. */
        off += ((uint64_t)elen + 7) & ~7ull;
    }
    return 0;
}

/* Append at most n bytes of s to ei->sbuf (always room: see callers). */
static void sbuf_put(struct qcow2_err_info *ei, const void *s, size_t n)
{
    size_t room = sizeof(ei->sbuf) - ei->slen;

    if (n > room)
        n = room;
    memcpy(ei->sbuf + ei->slen, s, n);
    ei->slen += n;
}

/*
 * report_unsupported_feature(): names of the unknown incompatible bits
 * found in the feature name table, in table order, then the bits left.
 * QEMU walks its copy of the table until an entry with an empty name; the
 * copy is zero-padded with two extra entries, so the walk always ends.
 */
static int report_unsupported(const uint8_t *buf, size_t len, const struct ext_walk *w,
                              uint64_t mask, struct qcow2_err_info *ei)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t i, nent = 0;
    char num[16];
    int n;

    ei->slen = 0;
    if (w->ftable)
        nent = (w->ftable_len + QCOW2_FEATURE_ENTRY_LEN - 1) / QCOW2_FEATURE_ENTRY_LEN;
    for (i = 0; i < nent; i++) {
        uint64_t e = w->ftable_off + i * QCOW2_FEATURE_ENTRY_LEN;
        uint64_t room = w->ftable_len - i * QCOW2_FEATURE_ENTRY_LEN;
        uint8_t type = room > 0 ? qcow2_u8(buf, len, e) : 0;
        uint8_t bit = room > 1 ? qcow2_u8(buf, len, e + 1) : 0;
        char name[QCOW2_FEATURE_NAME_LEN];
        size_t nlen = 0;
        uint64_t b;

        /* Bytes past the extension's length are the zeroed padding. */
        while (nlen < QCOW2_FEATURE_NAME_LEN && 2 + nlen < room) {
            uint8_t c = qcow2_u8(buf, len, e + 2 + nlen);
            if (c == 0)
                break;
            name[nlen++] = (char)c;
        }
        if (nlen == 0)
            break;
        if (type != QCOW2_FEAT_INCOMPATIBLE)
            continue;
        /* x86 masks the shift count: 1ULL << bit is 1ULL << (bit & 63). */
        b = 1ull << (bit & 63);
        if (mask & b) {
            if (ei->slen > 0)
                sbuf_put(ei, ", ", 2);
            sbuf_put(ei, name, nlen);
            mask &= ~b;
        }
    }
    if (mask) {
        static const char unk[] = "Unknown incompatible feature: ";
        if (ei->slen > 0)
            sbuf_put(ei, ", ", 2);
        sbuf_put(ei, unk, sizeof(unk) - 1);
        for (n = 0; mask; mask >>= 4)
            num[n++] = hex[mask & 15];
        while (n > 0)
            sbuf_put(ei, &num[--n], 1);
    }
    ei->s = ei->sbuf;
    return -QCOW2_ERR_UNSUPPORTED_FEATURE;
}

int qcow2_header_parse(const uint8_t *buf, size_t len, struct qcow2_header *h,
                       struct qcow2_err_info *ei)
{
    return qcow2_header_parse_flags(buf, len, 0, h, ei);
}

int qcow2_header_parse_flags(const uint8_t *buf, size_t len, unsigned flags, struct qcow2_header *h,
                             struct qcow2_err_info *ei)
{
    uint64_t l2_bits, shift, l1_index;
    int ret;

    err_clear(ei);
    header_decode(buf, len, h);

    if (h->magic != QCOW2_MAGIC)
        return -QCOW2_ERR_NOT_QCOW2;
    if (h->version < 2 || h->version > 3)
        return err1(ei, QCOW2_ERR_VERSION, h->version);
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return err1(ei, QCOW2_ERR_CLUSTER_BITS, h->cluster_bits);
    h->cluster_size = 1u << h->cluster_bits;

    if (h->version == 2) {
        h->incompatible_features = 0;
        h->compatible_features = 0;
        h->autoclear_features = 0;
        h->refcount_order = 4;
        h->header_length = QCOW2_HEADER_V2_LEN;
    } else if (h->header_length < QCOW2_HEADER_V3_LEN) {
        return -QCOW2_ERR_HEADER_TOO_SHORT;
    }
    if (h->header_length > h->cluster_size)
        return -QCOW2_ERR_HEADER_EXCEEDS_CLUSTER;
    if (h->backing_file_offset > h->cluster_size)
        return -QCOW2_ERR_BACKING_OFFSET;
    h->ext_end = h->backing_file_offset ? h->backing_file_offset : h->cluster_size;

    /* validate_compression_type(); the field exists past byte 104 only. */
    if (h->header_length <= QCOW2_HEADER_V3_LEN)
        h->compression_type = QCOW2_COMPRESSION_ZLIB;
    if (h->compression_type != QCOW2_COMPRESSION_ZLIB &&
        h->compression_type != QCOW2_COMPRESSION_ZSTD)
        return err1(ei, QCOW2_ERR_COMPRESSION_TYPE, h->compression_type);
    if (h->compression_type == QCOW2_COMPRESSION_ZLIB) {
        if (h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION)
            return -QCOW2_ERR_COMPRESSION_BIT_SET;
    } else if (!(h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION)) {
        return -QCOW2_ERR_COMPRESSION_BIT_UNSET;
    }

    if (h->incompatible_features & ~QCOW2_INCOMPAT_MASK) {
        struct ext_walk w = {.feature_pass = true};
        struct qcow2_exts x;
        struct qcow2_err_info scratch;

        memset(&x, 0, sizeof(x));
        (void)ext_walk(buf, len, h, &w, NULL, NULL, &x, &scratch);
        h->warn_bitmaps = x.warn_bitmaps;
        return report_unsupported(buf, len, &w, h->incompatible_features & ~QCOW2_INCOMPAT_MASK,
                                  ei);
    }

    /* A corrupt image opens read-only without complaint, or for repair. */
    if ((h->incompatible_features & QCOW2_INCOMPAT_CORRUPT) && (flags & QCOW2_OPEN_RDWR) &&
        !(flags & QCOW2_OPEN_CHECK))
        return -QCOW2_ERR_CORRUPT_RDWR;
    h->subclusters_per_cluster = (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) ? 32 : 1;
    if (h->cluster_size / h->subclusters_per_cluster < (1u << QCOW2_MIN_CLUSTER_BITS))
        return err1(ei, QCOW2_ERR_SUBCLUSTER_SIZE, h->cluster_size / h->subclusters_per_cluster);

    if (h->refcount_order > 6)
        return -QCOW2_ERR_REFCOUNT_ORDER;
    h->refcount_bits = 1u << h->refcount_order;

    if (h->refcount_table_clusters == 0 && !(flags & QCOW2_OPEN_CHECK))
        return -QCOW2_ERR_NO_REFTABLE;
    ret = validate_table(h, h->refcount_table_offset, h->refcount_table_clusters, h->cluster_size,
                         QCOW2_MAX_REFTABLE_BYTES, QCOW2_ERR_REFTABLE_TOO_LARGE,
                         QCOW2_ERR_REFTABLE_OFFSET);
    if (ret < 0)
        return ret;
    /* Check mode reads the snapshot table itself, tolerating a broken one. */
    if (!(flags & QCOW2_OPEN_CHECK)) {
        ret = validate_table(h, h->snapshots_offset, h->nb_snapshots, QCOW2_SNAPSHOT_HDR_LEN,
                             (uint64_t)QCOW2_SNAPSHOT_HDR_LEN * QCOW2_MAX_SNAPSHOTS,
                             QCOW2_ERR_SNAPTABLE_TOO_LARGE, QCOW2_ERR_SNAPTABLE_OFFSET);
        if (ret < 0)
            return ret;
    }
    ret = validate_table(h, h->l1_table_offset, h->l1_size, 8, QCOW2_MAX_L1_BYTES,
                         QCOW2_ERR_L1_TOO_LARGE, QCOW2_ERR_L1_OFFSET);
    if (ret < 0)
        return ret;

    /*
     * size_to_l1(): QEMU adds in unsigned 64-bit arithmetic, so a size near
     * 2^64 wraps to a small index; reproduce the wrap on purpose.
     */
    l2_bits = h->cluster_bits - ((h->incompatible_features & QCOW2_INCOMPAT_EXTL2) ? 4 : 3);
    shift = h->cluster_bits + l2_bits;
    l1_index = (h->size + ((1ull << shift) - 1)) >> shift;
    if (l1_index > INT_MAX_U)
        return -QCOW2_ERR_IMAGE_TOO_BIG;
    if (h->l1_size < l1_index)
        return -QCOW2_ERR_L1_TOO_SMALL;
    /* QEMU then reads the L1 table; only a refused read can fail it. */
    if (h->l1_size > 0 && !qcow2_read_ok(h->l1_table_offset, (uint64_t)h->l1_size * 8))
        return -QCOW2_ERR_L1_READ;

    /* qcow2_update_options_prepare(): QEMU prints the method with %d. */
    if (h->crypt_method > QCOW2_CRYPT_LUKS) {
        if (h->crypt_method > INT_MAX_U)
            return err1(ei, QCOW2_ERR_ENCRYPT_METHOD_NEG, (1ull << 32) - h->crypt_method);
        return err1(ei, QCOW2_ERR_ENCRYPT_METHOD, h->crypt_method);
    }

    /* qcow2_refcount_init() reads the whole refcount table. */
    if (!qcow2_read_ok(h->refcount_table_offset,
                       (uint64_t)h->refcount_table_clusters << h->cluster_bits))
        return -QCOW2_ERR_REFTABLE_READ;

    /* bs->total_sectors * BDRV_SECTOR_SIZE */
    h->disk_size = h->size & ~511ull;
    return 0;
}

int qcow2_ext_parse(const uint8_t *buf, size_t len, const struct qcow2_header *h,
                    qcow2_crypto_fn crypto, void *opaque, struct qcow2_exts *x,
                    struct qcow2_err_info *ei)
{
    struct ext_walk w = {.feature_pass = false};
    uint64_t blen, max;
    int ret;

    err_clear(ei);
    memset(x, 0, sizeof(*x));
    ret = ext_walk(buf, len, h, &w, crypto, opaque, x, ei);
    if (ret < 0)
        return ret;

    if (h->backing_file_offset != 0) {
        blen = h->backing_file_size;
        max = h->cluster_size - h->backing_file_offset;
        if (max > 1023)
            max = 1023;
        /* len >= sizeof(bs->backing_file) (PATH_MAX) is implied by 1023. */
        if (blen > max)
            return -QCOW2_ERR_BACKING_NAME_TOO_LONG;
        x->backing_file_len = cstr_at(buf, len, h->backing_file_offset, blen, &x->backing_file);
        /* An empty name leaves bs->backing_file empty: no backing file. */
        x->has_backing_file = x->backing_file_len > 0;
    }
    return 0;
}
