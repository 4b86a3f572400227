/*
 * The Parallels format extension as qemu 7.2's block/parallels-ext.c
 * reads it at a read-only open (docs/interop/parallels.txt, "Format
 * Extension"): one cluster at ext_off sectors holding a 24-byte header
 * (magic, MD5 of the rest of the cluster) and features, each a 24-byte
 * header (magic, flags, data_size) and its data padded to 8 bytes, until
 * the end-of-features magic 0.  The one feature QEMU knows is a dirty
 * bitmap: size, UUID, granularity, and an L1 table of data cluster
 * offsets (0: all zeros, 1: all ones).
 *
 * QEMU 7.2 counts only the feature headers against the cluster
 * ("remaining" is not lowered by the data it skips), so a feature's data
 * or the next header can lie past the cluster it loaded: there QEMU reads
 * out of bounds.  Its checks are kept as they are (the same images open,
 * the same messages come out); every actual access is also checked
 * against the cluster, and one that QEMU would make out of bounds is
 * PRL_ERR_EXT_OUTSIDE.  Likewise the assertions QEMU's dirty bitmap code
 * would fail are instar's own errors.
 */
#include "parallels.h"

#include <string.h>

#define EXT_MAGIC     0xab234cef23dcea87ull
#define EXT_END       0x0ull
#define EXT_BITMAP    0x20385fae252cb34aull
#define EXT_HDR_SIZE  24
#define FEAT_HDR_SIZE 24
#define BM_HDR_SIZE   32
#define BM_MAX        1024
/* HBITMAP_LOG_MAX_SIZE on a 64-bit host. */
#define HBITMAP_MAX_BITS (1ull << 41)

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* qemu_uuid_unparse(): the 16 bytes in order, lower case, 8-4-4-4-12. */
static void uuid_str(const uint8_t id[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t i, o = 0;

    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[id[i] >> 4];
        out[o++] = hex[id[i] & 15];
    }
    out[o] = '\0';
}

static int ctz64(uint64_t v)
{
    int n = 0;

    while (!(v & 1)) {
        v >>= 1;
        n++;
    }
    return n;
}

struct ext_ctx {
    const struct prl_reader *r;
    struct prl_image *img;
    uint64_t base; /* the cluster's file offset */
    uint64_t size; /* the cluster's length */
    uint8_t ids[BM_MAX][16];
};

/* Read [pos, pos + len) of the cluster, which must hold it. */
static int ext_read(struct ext_ctx *c, uint64_t pos, void *buf, size_t len)
{
    if (pos > c->size || len > c->size - pos) {
        c->img->err_arg[0] = pos;
        return -PRL_ERR_EXT_OUTSIDE;
    }
    return c->r->pread(c->r->opaque, c->base + pos, buf, len);
}

/*
 * parallels_load_bitmap() and parallels_load_bitmap_data() for the
 * feature data at pos (data_size bytes, as the feature header says).
 */
static int load_bitmap(struct ext_ctx *c, uint64_t pos, uint64_t data_size)
{
    struct prl_image *img = c->img;
    uint8_t bf[BM_HDR_SIZE], e[8];
    uint64_t bm_size, gran, nbits, ser, tab_size, limit, align, i;
    uint32_t l1_size;
    int g, ret;
    char uuid[37];

    if (data_size < BM_HDR_SIZE) {
        img->err_arg[0] = data_size;
        return -PRL_ERR_BM_SMALL;
    }
    ret = ext_read(c, pos, bf, sizeof(bf));
    if (ret < 0)
        return ret;
    gran = (uint32_t)(le32(bf + 24) << 9);
    l1_size = le32(bf + 28);
    if (le64(bf) != img->total_sectors) {
        uint64_t sz = le64(bf);

        img->err_arg[1] = img->total_sectors;
        if (sz >> 63) {
            img->err_arg[0] = (uint64_t)0 - sz;
            return -PRL_ERR_BM_SIZE_NEG;
        }
        img->err_arg[0] = sz;
        return -PRL_ERR_BM_SIZE;
    }
    if ((uint64_t)l1_size * 8 > data_size - BM_HDR_SIZE)
        return -PRL_ERR_BM_L1;

    /* bdrv_create_dirty_bitmap(): QEMU asserts the granularity. */
    if (gran < 512 || (gran & (gran - 1))) {
        img->err_arg[0] = gran;
        return -PRL_ERR_BM_GRANULARITY;
    }
    uuid_str(bf + 8, uuid);
    for (i = 0; i < img->nbitmaps; i++) {
        if (!memcmp(c->ids[i], bf + 8, 16)) {
            memcpy(img->err_str, uuid, sizeof(uuid));
            return -PRL_ERR_BM_EXISTS;
        }
    }
    if (img->nbitmaps >= BM_MAX)
        return -PRL_ERR_BM_COUNT;
    bm_size = img->total_sectors * 512; /* fits: prl_open_header */
    g = ctz64(gran);
    nbits = (bm_size + gran - 1) >> g;
    if (nbits > HBITMAP_MAX_BITS) {
        img->err_arg[0] = bm_size;
        img->err_arg[1] = gran;
        return -PRL_ERR_BM_TOO_LARGE;
    }

    /* QEMU copies the whole L1 table out of the cluster first. */
    if (pos + BM_HDR_SIZE > c->size || (uint64_t)l1_size * 8 > c->size - pos - BM_HDR_SIZE) {
        img->err_arg[0] = pos + BM_HDR_SIZE;
        return -PRL_ERR_EXT_OUTSIDE;
    }
    /* The table covers the serialised bitmap (64-bit words), a cluster per entry. */
    ser = bm_size ? 8 * ((((bm_size - 1) >> g) >> 6) + 1) : 0;
    tab_size = (ser + img->cluster_size - 1) / img->cluster_size;
    if (tab_size != l1_size) {
        img->err_arg[0] = l1_size;
        img->err_arg[1] = tab_size;
        return -PRL_ERR_BM_TABLE;
    }
    /* bdrv_dirty_bitmap_serialization_coverage(): an int shifted, as QEMU has it. */
    limit = gran * (uint64_t)(int64_t)(int32_t)(img->cluster_size << 3);
    align = 64ull << g;
    for (i = 0; i < tab_size; i++) {
        uint64_t entry, offset = i * limit, count = bm_size - offset, last, off;

        if (count > limit)
            count = limit;
        ret = ext_read(c, pos + BM_HDR_SIZE + 8 * i, e, sizeof(e));
        if (ret < 0)
            return ret;
        entry = le64(e);
        if (entry == 0 || count == 0)
            continue;
        /* serialization_chunk()'s assertions */
        last = offset + count - 1;
        if ((last >> g) >= nbits || ((last & (align - 1)) != align - 1 && last + 1 != bm_size)) {
            img->err_arg[0] = i;
            return -PRL_ERR_BM_RANGE;
        }
        if (entry == 1)
            continue;
        /* bdrv_pread() of a cluster: the offset must be addressable (the bits are not kept). */
        off = entry << 9;
        if ((int64_t)off < 0 || off > PRL_IO_MAX - img->cluster_size)
            return -PRL_ERR_BM_READ;
    }
    memcpy(c->ids[img->nbitmaps++], bf + 8, 16);
    return 0;
}

int prl_read_extension(const struct prl_reader *r, struct prl_image *img)
{
    static struct ext_ctx c;
    uint8_t eh[EXT_HDR_SIZE], fh[FEAT_HDR_SIZE], digest[16];
    uint64_t pos, magic, flags, data_size;
    int64_t remaining;
    int ret;

    memset(&c, 0, sizeof(c));
    c.r = r;
    c.img = img;
    c.base = img->ext_off << 9;
    c.size = img->cluster_size;
    img->nbitmaps = 0;
    /* QEMU asserts the offset is positive. */
    if ((int64_t)c.base <= 0) {
        img->err_arg[0] = img->ext_off;
        return -PRL_ERR_EXT_OFFSET;
    }
    if (c.base > PRL_IO_MAX - c.size)
        return -PRL_ERR_EXT_READ;
    ret = r->pread(r->opaque, c.base, eh, sizeof(eh));
    if (ret < 0)
        return ret;
    magic = le64(eh);
    if (magic != EXT_MAGIC) {
        img->err_arg[0] = magic;
        return -PRL_ERR_EXT_MAGIC;
    }
    ret = r->md5(r->opaque, c.base + EXT_HDR_SIZE, c.size - EXT_HDR_SIZE, digest);
    if (ret < 0)
        return ret;
    if (memcmp(digest, eh + 8, 16))
        return -PRL_ERR_EXT_CHECKSUM;

    pos = EXT_HDR_SIZE;
    remaining = (int64_t)c.size - EXT_HDR_SIZE;
    /* Each feature takes 24 bytes of "remaining": at most size / 24 rounds. */
    for (;;) {
        if (remaining < FEAT_HDR_SIZE) {
            img->err_arg[0] = (uint64_t)remaining;
            return -PRL_ERR_EXT_SHORT;
        }
        ret = ext_read(&c, pos, fh, sizeof(fh));
        if (ret < 0)
            return ret;
        pos += FEAT_HDR_SIZE;
        remaining -= FEAT_HDR_SIZE;
        magic = le64(fh);
        flags = le64(fh + 8);
        data_size = le32(fh + 16);
        if (flags)
            return -PRL_ERR_EXT_FLAGS;
        if (data_size > (uint64_t)remaining)
            return -PRL_ERR_EXT_DATA_SIZE;
        if (magic == EXT_END)
            return 0;
        if (magic != EXT_BITMAP) {
            img->err_arg[0] = magic;
            return -PRL_ERR_EXT_UNKNOWN;
        }
        ret = load_bitmap(&c, pos, data_size);
        if (ret < 0)
            return ret;
        /* QEMU skips the data without counting it against "remaining". */
        pos = (pos + data_size + 7) & ~7ull;
    }
}
