/*
 * The cloop driver of the guest block layer: open as cloop_open() does
 * (formats/cloop/cloop.h), reads as cloop_co_preadv() does them: the
 * block holding each sector decoded whole with the guest's zlib
 * (gcodec_inflate_read: exactly block_size bytes, or the read fails with
 * EIO, so a compression bomb costs one block of output), the last block
 * decoded kept.  QEMU's driver has no block status hook: the generic
 * answer is DATA for the whole range, without an offset.
 */
#include "bdrv.h"
#include "cloop/cloop.h"
#include "codec.h"

struct gcloop {
    struct cloop_image img;
    uint8_t *block;   /* block_size bytes, allocated at the first read */
    uint32_t current; /* the block in it (n_blocks: none) */
};

static struct gcloop cloops[INSTAR_NODE_MAX];

static int dev_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return gblk_pread(*(const uint32_t *)opaque, off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

/* Open device dev into s; fails op's result on error. */
static void gcloop_open(uint32_t op, struct gcloop *s, uint32_t dev)
{
    static uint8_t scratch[65536];
    struct cloop_reader r = {dev_pread, &dev};
    int ret;

    memset(s, 0, sizeof(*s));
    ret = cloop_open(&r, &s->img, scratch, sizeof(scratch));
    if (ret < 0) {
        uint64_t args[4] = {s->img.err_arg, 0, 0, 0};

        result_error(op, -ret, args, NULL, 0);
    }
    s->current = s->img.n_blocks;
}

void gbs_cloop_describe(uint32_t op, uint32_t dev, uint64_t *size)
{
    static struct gcloop s;

    gcloop_open(op, &s, dev);
    *size = s.img.total_sectors * 512;
}

static int cloop_drv_open(struct gbs *bs)
{
    struct gcloop *s = &cloops[bs->node];

    bs->opaque = s;
    gcloop_open(boot->op, s, bs->file);
    bs->total = s->img.total_sectors * 512;
    bs->supports_backing = false;
    return 0;
}

static int cloop_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                              uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    (void)want_zero;
    (void)off;
    *pnum = bytes;
    *map = 0;
    *dev = bs->file;
    return INSTAR_BS_DATA;
}

/* BDRV_MAX_LENGTH: qemu's block layer fails a read that does not end below it. */
#define CLOOP_MAX_LENGTH (0x7fffffffffffffffull & ~((1ull << 30) - 1))

/* The compressed stream: its reads as bdrv_pread() makes them (zeros past the end of the file). */
static int stream_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return gblk_pread_direct(*(const uint32_t *)opaque, off, buf, len) < 0 ? -1 : 0;
}

/* cloop_read_block(): block i decoded into s->block. */
static int read_block(struct gbs *bs, uint32_t i)
{
    struct gcloop *s = bs->opaque;
    struct cloop_reader r = {dev_pread, &bs->file};
    uint64_t off;
    uint32_t len;
    int ret;

    if (s->current == i)
        return 0;
    if (!s->block) {
        s->block = malloc(s->img.block_size);
        if (!s->block)
            return -GBS_ENOMEM;
    }
    s->current = s->img.n_blocks;
    if (cloop_block(&r, &s->img, i, &off, &len) < 0)
        return -GBS_EIO;
    if (off > CLOOP_MAX_LENGTH || len > CLOOP_MAX_LENGTH - off)
        return -GBS_EIO;
    ret = gcodec_inflate_read(stream_pread, &bs->file, off, len, s->block, s->img.block_size);
    if (ret == -GCODEC_ENOMEM)
        return -GBS_ENOMEM;
    if (ret < 0)
        return -GBS_EIO;
    s->current = i;
    return 0;
}

static int cloop_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    struct gcloop *s = bs->opaque;
    uint8_t *p = buf;
    int ret;

    /* Within bs->total (< 2^41): the block index fits a uint32_t. */
    while (len) {
        uint32_t i = (uint32_t)(off / s->img.block_size);
        uint64_t in = off % s->img.block_size;
        size_t n = s->img.block_size - in < len ? (size_t)(s->img.block_size - in) : len;

        ret = read_block(bs, i);
        if (ret < 0)
            return ret;
        memcpy(p, s->block + in, n);
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

const struct gbs_driver gbs_drv_cloop = {
    .name = "cloop",
    .open = cloop_drv_open,
    .block_status = cloop_block_status,
    .pread = cloop_pread,
};
