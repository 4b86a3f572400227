/*
 * qemu-img rebase's header rewrite (see rebase.h).  The layout is
 * qcow2.txt's "Header" and "Header extensions"; which extensions survive
 * and in which order is QEMU 7.2's qcow2_update_header() over the state
 * qcow2_do_open() and qcow2_read_extensions() leave.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "be.h"
#include "rebase.h"

#define HDR_LEN_V3_FULL 112 /* sizeof(QCowHeader) in QEMU 7.2 */
#define AUTOCLEAR_MASK  (QCOW2_AUTOCLEAR_BITMAPS | QCOW2_AUTOCLEAR_DATA_FILE_RAW)

static void st32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void st64(uint8_t *p, uint64_t v)
{
    st32(p, (uint32_t)(v >> 32));
    st32(p + 4, (uint32_t)v);
}

/* A byte of the image's first bytes: zero past first_len, as QEMU reads past EOF. */
static uint8_t at(const uint8_t *first, size_t first_len, uint64_t off)
{
    return off < first_len ? first[off] : 0;
}

static uint32_t ld32(const uint8_t *first, size_t first_len, uint64_t off)
{
    return (uint32_t)at(first, first_len, off) << 24 |
           (uint32_t)at(first, first_len, off + 1) << 16 |
           (uint32_t)at(first, first_len, off + 2) << 8 | at(first, first_len, off + 3);
}

/* header_ext_add(): magic, length, data padded to 8.  The bytes added, or -ENOSPC. */
static int ext_put(uint8_t *out, size_t *pos, size_t end, uint32_t magic, const uint8_t *first,
                   size_t first_len, uint64_t src, size_t len)
{
    size_t ext_len = 8 + ((len + 7) & ~(size_t)7);

    if (end - *pos < ext_len)
        return -QCOW2_REBASE_ENOSPC;
    st32(out + *pos, magic);
    st32(out + *pos + 4, (uint32_t)len);
    for (size_t i = 0; i < len; i++)
        out[*pos + 8 + i] = at(first, first_len, src + i);
    *pos += ext_len;
    return 0;
}

/* Like ext_put, with the data from a buffer of ours. */
static int ext_put_buf(uint8_t *out, size_t *pos, size_t end, uint32_t magic, const void *data,
                       size_t len)
{
    return ext_put(out, pos, end, magic, data, len, 0, len);
}

static const struct {
    uint8_t type, bit;
    const char *name;
} features[] = {
    {0, 0, "dirty bit"},        {0, 1, "corrupt bit"},         {0, 2, "external data file"},
    {0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
    {2, 0, "bitmaps"},          {2, 1, "raw external data"},
};

static bool known_ext(uint32_t magic)
{
    return magic == QCOW2_EXT_END || magic == QCOW2_EXT_BACKING_FMT ||
           magic == QCOW2_EXT_FEATURES || magic == QCOW2_EXT_CRYPTO || magic == QCOW2_EXT_BITMAPS ||
           magic == QCOW2_EXT_DATA_FILE;
}

/*
 * The extensions qcow2_read_extensions() keeps as unknown, walked in file
 * order from the end of the header to the end marker or h->ext_end.
 * Returns the bytes they take once written back (8 + data padded to 8
 * each); with dst, writes them there in reverse order, the first one
 * read last (dst holds total bytes).
 */
static uint64_t unknown_exts(const struct qcow2_header *h, const uint8_t *first, size_t first_len,
                             uint8_t *dst, uint64_t total)
{
    uint64_t off = h->version == 2 ? QCOW2_HEADER_V2_LEN : h->header_length, done = 0;

    while (off < h->ext_end) {
        uint32_t magic = ld32(first, first_len, off), len = ld32(first, first_len, off + 4);
        uint64_t padded = ((uint64_t)len + 7) & ~7ull;

        off += 8;
        /* The open refused the former; the end marker ends the walk. */
        if (off > h->ext_end || len > h->ext_end - off || magic == QCOW2_EXT_END)
            break;
        if (!known_ext(magic)) {
            done += 8 + padded;
            if (dst) {
                size_t at_pos = (size_t)(total - done);

                (void)ext_put(dst, &at_pos, (size_t)total, magic, first, first_len, off, len);
            }
        }
        off += padded;
    }
    return done;
}

int qcow2_rebase_header(const struct qcow2_header *h, const struct qcow2_exts *x,
                        const uint8_t *first, size_t first_len, const char *backing,
                        const char *backing_fmt, uint8_t *out)
{
    size_t cs = h->cluster_size, pos, unknown = 0;
    uint64_t unk_total = 0;

    /* bdrv_change_backing_file(), then qcow2_change_backing_file(). */
    if (backing_fmt && !backing)
        return -QCOW2_REBASE_EINVAL;
    if (backing && (h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW))
        return -QCOW2_REBASE_EINVAL;
    if (backing && strlen(backing) > QCOW2_REBASE_NAME_MAX)
        return -QCOW2_REBASE_EINVAL;
    if (h->version != 2 && h->version != 3)
        return -QCOW2_REBASE_EINVAL;
    if (cs < HDR_LEN_V3_FULL)
        return -QCOW2_REBASE_ENOSPC;

    unk_total = unknown_exts(h, first, first_len, NULL, 0);
    memset(out, 0, cs);
    st32(out + 0, QCOW2_MAGIC);
    st32(out + 4, h->version);
    st32(out + 20, h->cluster_bits);
    st64(out + 24, h->disk_size); /* bs->total_sectors * 512 */
    st32(out + 32, h->crypt_method);
    st32(out + 36, h->l1_size);
    st64(out + 40, h->l1_table_offset);
    st64(out + 48, h->refcount_table_offset);
    st32(out + 56, h->refcount_table_clusters);
    st32(out + 60, h->nb_snapshots);
    st64(out + 64, h->snapshots_offset);
    if (h->version == 3) {
        if (h->header_length > HDR_LEN_V3_FULL)
            unknown = h->header_length - HDR_LEN_V3_FULL;
        st64(out + 72, h->incompatible_features);
        st64(out + 80, h->compatible_features);
        st64(out + 88, h->autoclear_features & AUTOCLEAR_MASK);
        st32(out + 96, h->refcount_order);
        st32(out + 100, (uint32_t)(HDR_LEN_V3_FULL + unknown));
        out[104] = h->compression_type;
        pos = HDR_LEN_V3_FULL;
    } else {
        pos = QCOW2_HEADER_V2_LEN;
    }

    /* Unknown header fields, kept as read. */
    if (unknown) {
        if (cs - pos < unknown)
            return -QCOW2_REBASE_ENOSPC;
        for (size_t i = 0; i < unknown; i++)
            out[pos + i] = at(first, first_len, HDR_LEN_V3_FULL + i);
        pos += unknown;
    }

    if (backing_fmt &&
        ext_put_buf(out, &pos, cs, QCOW2_EXT_BACKING_FMT, backing_fmt, strlen(backing_fmt)) < 0)
        return -QCOW2_REBASE_ENOSPC;
    if ((h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) && x->has_data_file &&
        ext_put(out, &pos, cs, QCOW2_EXT_DATA_FILE, first, first_len,
                (uint64_t)(x->data_file - first), x->data_file_len) < 0)
        return -QCOW2_REBASE_ENOSPC;
    if (x->has_crypto && x->crypto_offset != 0) {
        uint8_t c[16];

        st64(c, x->crypto_offset);
        st64(c + 8, x->crypto_length);
        if (ext_put_buf(out, &pos, cs, QCOW2_EXT_CRYPTO, c, sizeof(c)) < 0)
            return -QCOW2_REBASE_ENOSPC;
    }
    if (h->version >= 3 && cs > 4096) {
        uint8_t table[sizeof(features) / sizeof(features[0]) * 48];

        memset(table, 0, sizeof(table));
        for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
            table[i * 48] = features[i].type;
            table[i * 48 + 1] = features[i].bit;
            memcpy(table + i * 48 + 2, features[i].name, strlen(features[i].name));
        }
        if (ext_put_buf(out, &pos, cs, QCOW2_EXT_FEATURES, table, sizeof(table)) < 0)
            return -QCOW2_REBASE_ENOSPC;
    }
    if (x->nb_bitmaps > 0) {
        uint8_t b[24];

        memset(b, 0, sizeof(b));
        st32(b, x->nb_bitmaps);
        st64(b + 8, x->bitmap_dir_size);
        st64(b + 16, x->bitmap_dir_offset);
        if (ext_put_buf(out, &pos, cs, QCOW2_EXT_BITMAPS, b, sizeof(b)) < 0)
            return -QCOW2_REBASE_ENOSPC;
    }
    /* QLIST_INSERT_HEAD collected them: the last one read comes first. */
    if (cs - pos < unk_total)
        return -QCOW2_REBASE_ENOSPC;
    unknown_exts(h, first, first_len, out + pos, unk_total);
    pos += unk_total;
    if (ext_put_buf(out, &pos, cs, QCOW2_EXT_END, NULL, 0) < 0)
        return -QCOW2_REBASE_ENOSPC;

    if (backing) {
        size_t blen = strlen(backing);

        if (cs - pos < blen)
            return -QCOW2_REBASE_ENOSPC;
        memcpy(out + pos, backing, blen);
        st64(out + 8, pos);
        st32(out + 16, (uint32_t)blen);
    }
    return 0;
}
