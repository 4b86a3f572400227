/*
 * The dmg driver of the guest block layer: open as dmg_open() does
 * (formats/dmg/dmg.h: the chunks of every mish block in one table),
 * reads as dmg_co_preadv() does them: each sector's chunk found as
 * dmg_read_chunk() finds it (the chunk last read, else a binary search),
 * zeros for zero and ignored chunks, raw chunks read from the file, zlib
 * chunks decoded whole with the guest's zlib (exactly 512 * sector count
 * bytes, or the read fails with EIO: a compression bomb costs one chunk
 * of output), the last one kept.  A sector no chunk holds (bzip2, lzfse
 * and unknown chunks are not in the table) fails the read.  QEMU's driver
 * has no block status hook: the generic answer is DATA for the whole
 * range, without an offset.
 */
#include "bdrv.h"
#include "codec.h"
#include "dmg/dmg.h"

struct gdmg {
    struct dmg_image img;
    struct dmg_chunk *chunks; /* img.n_chunks of them */
    uint32_t cap;             /* chunks allocated */
    uint32_t current;         /* the chunk last read (n_chunks: none) */
    uint8_t *buf;             /* a zlib chunk decoded: 512 * max_sectors bytes */
};

static struct gdmg dmgs[INSTAR_NODE_MAX];

/* BDRV_MAX_LENGTH: qemu's block layer fails a read that does not end below it. */
#define DMG_MAX_LENGTH (0x7fffffffffffffffull & ~((1ull << 30) - 1))

static int dev_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return gblk_pread(*(const uint32_t *)opaque, off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

static int count_chunk(void *opaque, uint32_t index, const struct dmg_chunk *c)
{
    (void)opaque;
    (void)index;
    (void)c;
    return 0;
}

static int keep_chunk(void *opaque, uint32_t index, const struct dmg_chunk *c)
{
    struct gdmg *s = opaque;

    if (index >= s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 1024;
        struct dmg_chunk *n;

        if (cap <= s->cap || cap > (64u << 20) / sizeof(*n))
            return -DMG_ERR_NOMEM;
        n = realloc(s->chunks, (size_t)cap * sizeof(*n));
        if (!n)
            return -DMG_ERR_NOMEM;
        s->chunks = n;
        s->cap = cap;
    }
    s->chunks[index] = *c;
    return 0;
}

/*
 * Open device dev into s (the chunks kept when keep); fails op's result on
 * error, with the warnings the open gave before it.
 */
static void gdmg_open(uint32_t op, struct gdmg *s, uint32_t dev, bool keep)
{
    struct dmg_reader r = {dev_pread, &dev};
    int ret;

    memset(s, 0, sizeof(*s));
    ret = dmg_open_trailer(&r, gblk_size(dev), &s->img);
    if (ret == 0 && s->img.rsrc_length) {
        ret = dmg_read_rsrc(&r, &s->img, keep ? keep_chunk : count_chunk, s);
    } else if (ret == 0) {
        /* At most DMG_PLIST_MAX + 1 bytes. */
        uint8_t *xml = malloc((size_t)s->img.plist_length + 1);

        if (!xml)
            ret = -DMG_ERR_NOMEM;
        else if (gblk_pread(dev, s->img.plist_offset, xml, (size_t)s->img.plist_length) < 0)
            ret = -DMG_ERR_INVALID;
        else
            ret = dmg_read_plist(xml, (size_t)s->img.plist_length, &s->img,
                                 keep ? keep_chunk : count_chunk, s);
        free(xml);
    }
    /*
     * bdrv_refresh_total_sectors() after the open: a size past
     * BDRV_MAX_LENGTH.  QEMU's int64_t product may wrap and let a larger
     * count through, to fail later in each command its own way; instar
     * refuses those here too (docs/differences.md).
     */
    if (ret == 0 && s->img.total_sectors > DMG_MAX_LENGTH / 512)
        ret = -DMG_ERR_SIZE;
    /* warn_report_once(): the host prints each once per run of qemu-img. */
    if (s->img.warn_order)
        result_warn(INSTAR_WARN_DMG_CHUNKS, (uint16_t)s->img.warn_order);
    if (ret < 0) {
        uint64_t args[4] = {s->img.err_args[0], s->img.err_args[1], s->img.unknown_type, 0};

        if (ret == -INSTAR_ERR_IO)
            ret = -DMG_ERR_INVALID;
        result_error(op, -ret, args, NULL, 0);
    }
    s->current = s->img.n_chunks;
}

void gbs_dmg_describe(uint32_t op, uint32_t dev, uint64_t *size, uint32_t *unknown_type)
{
    static struct gdmg s;

    gdmg_open(op, &s, dev, false);
    *size = s.img.total_sectors * 512;
    *unknown_type = s.img.unknown_type;
}

static int dmg_drv_open(struct gbs *bs)
{
    struct gdmg *s = &dmgs[bs->node];

    bs->opaque = s;
    gdmg_open(boot->op, s, bs->file, true);
    /* The describe run has given the warnings. */
    result_warn(0, 0);
    bs->total = s->img.total_sectors * 512;
    bs->supports_backing = false;
    return 0;
}

static int dmg_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                            uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    (void)want_zero;
    (void)off;
    *pnum = bytes;
    *map = 0;
    *dev = bs->file;
    return INSTAR_BS_DATA;
}

static bool request_ok(uint64_t off, uint64_t len)
{
    return off <= DMG_MAX_LENGTH && len <= DMG_MAX_LENGTH - off;
}

static int stream_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return gblk_pread_direct(*(const uint32_t *)opaque, off, buf, len) < 0 ? -1 : 0;
}

/* dmg_read_chunk(): make the chunk holding sector current.  Returns it, or -errno. */
static int64_t load_chunk(struct gbs *bs, uint64_t sector)
{
    struct gdmg *s = bs->opaque;
    uint32_t i = dmg_search(s->chunks, s->img.n_chunks, s->current, sector);
    const struct dmg_chunk *c;
    int ret;

    if (i >= s->img.n_chunks)
        return -GBS_EIO;
    if (i == s->current)
        return i;
    c = &s->chunks[i];
    s->current = s->img.n_chunks;
    if ((c->type == DMG_UDZO || c->type == DMG_UDRW) && !request_ok(c->offset, c->length))
        return -GBS_EIO;
    if (c->type == DMG_UDZO) {
        if (!s->buf) {
            s->buf = malloc((size_t)s->img.max_sectors * 512);
            if (!s->buf)
                return -GBS_ENOMEM;
        }
        /* sectorcount <= max_sectors <= DMG_SECTORCOUNTS_MAX: the buffer holds it. */
        ret = gcodec_inflate_read(stream_pread, &bs->file, c->offset, c->length, s->buf,
                                  (size_t)c->sectorcount * 512);
        if (ret == -GCODEC_ENOMEM)
            return -GBS_ENOMEM;
        if (ret < 0)
            return -GBS_EIO;
    }
    s->current = i;
    return i;
}

static int dmg_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    struct gdmg *s = bs->opaque;
    uint8_t *p = buf;

    while (len) {
        uint64_t sector = off / 512, in_sector = off % 512, in_chunk, run;
        int64_t i = load_chunk(bs, sector);
        const struct dmg_chunk *c;
        size_t n;

        if (i < 0)
            return (int)i;
        c = &s->chunks[i];
        /* The sector's place in its chunk: below its count (at most 2^17 unless zeros). */
        in_chunk = (sector - c->sector) * 512 + in_sector;
        run = c->sectorcount - (sector - c->sector); /* sectors left: at least 1 */
        run = run > UINT64_MAX / 512 ? UINT64_MAX : run * 512 - in_sector;
        n = run < len ? (size_t)run : len;
        if (c->type == DMG_UDZO) {
            memcpy(p, s->buf + in_chunk, n);
        } else if (c->type == DMG_UDRW) {
            /* Past the chunk's stored length: zeros (QEMU reads stale or foreign memory). */
            size_t have = in_chunk < c->length ? (size_t)(c->length - in_chunk) : 0;

            if (have > n)
                have = n;
            if (have && gblk_pread_direct(bs->file, c->offset + in_chunk, p, have) < 0)
                return -GBS_EIO;
            memset(p + have, 0, n - have);
        } else {
            memset(p, 0, n);
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

const struct gbs_driver gbs_drv_dmg = {
    .name = "dmg",
    .open = dmg_drv_open,
    .block_status = dmg_block_status,
    .pread = dmg_pread,
};
