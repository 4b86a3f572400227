/*
 * The vpc (VHD) driver of the guest block layer: open as vpc_open() does
 * (formats/vpc/vpc.h), block status as vpc_co_block_status() answers it
 * (a fixed image is its file; a dynamic one is data block by block, an
 * unallocated run of blocks reads as zeros), and reads as
 * vpc_co_preadv() does them (the sector bitmaps are not consulted: QEMU
 * reads an allocated block whole), and writes as vpc_co_pwritev() does
 * them (a fixed image writes its file; a dynamic one sets a block's
 * bitmap to all ones before it writes into it, and allocates a block
 * at the end of the file: its bitmap, the footer moved after it, then
 * its BAT entry, each written and flushed, as alloc_block() does).
 */
#include "bdrv.h"
#include "vpc/vpc.h"

struct gvpc {
    struct vpc_image img;
    uint32_t *bat; /* max_table_entries entries, host order; NULL when fixed */
    /* Writes: the bitmap last set to all ones (UINT64_MAX: none), and the ones. */
    uint64_t last_bitmap_offset;
    uint8_t *ones;
};

static struct gvpc vpcs[INSTAR_NODE_MAX];

static int dev_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return gblk_pread(*(const uint32_t *)opaque, off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

/*
 * Open device dev as vpc into s.  Returns 0 or a negative error code,
 * with its argument in s->img.err_arg.
 */
static int gvpc_open(struct gvpc *s, uint32_t dev, enum vpc_size_calc calc)
{
    static uint8_t scratch[65536];
    struct vpc_reader r = {dev_pread, &dev};
    int ret;

    memset(s, 0, sizeof(*s));
    ret = vpc_open_footer(&r, gblk_size(dev), calc, &s->img);
    if (ret < 0 || s->img.fixed)
        return ret;
    ret = vpc_open_dynamic(&r, &s->img);
    if (ret < 0)
        return ret;
    /* The BAT lies inside the file (vpc_open_dynamic): at most a quarter of it. */
    s->bat = malloc((size_t)s->img.max_table_entries * 4 + 4);
    if (!s->bat)
        return -VPC_ERR_BAT_NOMEM;
    return vpc_open_bat(&r, &s->img, s->bat, scratch, sizeof(scratch));
}

static __attribute__((noreturn)) void gvpc_fail(uint32_t op, int ret, const struct gvpc *s)
{
    uint64_t args[4] = {s->img.err_arg, 0, 0, 0};

    result_error(op, -ret, args, NULL, 0);
}

void gbs_vpc_describe(uint32_t op, uint32_t dev, uint32_t calc, uint64_t *size,
                      uint32_t *cluster_size)
{
    static struct gvpc s;
    int ret = gvpc_open(&s, dev, (enum vpc_size_calc)calc);

    if (ret < 0)
        gvpc_fail(op, ret, &s);
    *size = s.img.total_sectors * 512;
    /* vpc_get_info(): a dynamic image's block size is its cluster size. */
    *cluster_size = s.img.fixed ? 0 : s.img.block_size;
    free(s.bat);
}

static struct gvpc *V(struct gbs *bs)
{
    return bs->opaque;
}

static int vpc_drv_open(struct gbs *bs)
{
    struct gvpc *s = &vpcs[bs->node];
    int ret;

    bs->opaque = s;
    ret = gvpc_open(s, bs->file, (enum vpc_size_calc)bs->drv_opts);
    /* The host described the image first: a failure here is qemu's open message too. */
    if (ret < 0)
        gvpc_fail(boot->op, ret, s);
    bs->total = s->img.total_sectors * 512;
    bs->supports_backing = false;
    s->last_bitmap_offset = UINT64_MAX;
    return 0;
}

static int vpc_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                            uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    const struct gvpc *s = V(bs);
    uint64_t host, run;

    (void)want_zero;
    *dev = bs->file;
    if (s->img.fixed) {
        *pnum = bytes;
        *map = off;
        return INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID | INSTAR_BS_RECURSE;
    }
    /* An allocated block is one extent: its bitmap separates it from the next. */
    if (vpc_map(&s->img, s->bat, off, &host, &run)) {
        *pnum = run < bytes ? run : bytes;
        *map = host;
        return INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID;
    }
    *pnum = 0;
    for (;;) {
        if (run >= bytes) {
            *pnum += bytes;
            break;
        }
        *pnum += run;
        off += run;
        bytes -= run;
        if (vpc_map(&s->img, s->bat, off, &host, &run))
            break;
    }
    return INSTAR_BS_ZERO;
}

static int vpc_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    const struct gvpc *s = V(bs);
    uint8_t *p = buf;

    if (s->img.fixed)
        return gblk_pread_direct(bs->file, off, buf, len) < 0 ? -GBS_EIO : 0;
    while (len) {
        uint64_t host, run;
        size_t n;

        if (vpc_map(&s->img, s->bat, off, &host, &run)) {
            n = run < len ? (size_t)run : len;
            if (gblk_pread_direct(bs->file, host, p, n) < 0)
                return -GBS_EIO;
        } else {
            n = run < len ? (size_t)run : len;
            memset(p, 0, n);
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* bdrv_pwrite_sync(): write, then flush the file. */
static int write_sync(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    if (gdev_pwrite(bs->file, off, buf, len) < 0 || gdev_flush(bs->file) < 0)
        return -GBS_EIO;
    return 0;
}

/* alloc_block(): the block holding off, at the end of the data. */
static int alloc_block(struct gbs *bs, uint64_t off)
{
    struct gvpc *s = V(bs);
    uint64_t index = off / s->img.block_size, step;
    uint8_t be[4];
    uint32_t e;
    int ret;

    /* The footer follows the data: a BAT entry holds a sector number. */
    if (index >= s->img.max_table_entries || s->img.free_data_block_offset / 512 > 0xfffffffeu)
        return -GBS_EIO;
    e = (uint32_t)(s->img.free_data_block_offset / 512);
    s->bat[index] = e;
    ret = write_sync(bs, s->img.free_data_block_offset, s->ones, s->img.bitmap_size);
    if (ret < 0)
        return ret;
    step = (uint64_t)s->img.block_size + s->img.bitmap_size;
    s->img.free_data_block_offset += step;
    ret = write_sync(bs, s->img.free_data_block_offset, s->img.footer, VPC_FOOTER_SIZE);
    if (ret == 0) {
        be[0] = (uint8_t)(e >> 24);
        be[1] = (uint8_t)(e >> 16);
        be[2] = (uint8_t)(e >> 8);
        be[3] = (uint8_t)e;
        ret = write_sync(bs, s->img.bat_offset + index * 4, be, 4);
    }
    if (ret < 0)
        s->img.free_data_block_offset -= step;
    return ret;
}

static int vpc_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    struct gvpc *s = V(bs);
    const uint8_t *p = buf;
    int ret;

    if (s->img.fixed)
        return gdev_pwrite(bs->file, off, buf, len) < 0 ? -GBS_EIO : 0;
    if (!s->ones) {
        s->ones = malloc(s->img.bitmap_size);
        if (!s->ones)
            return -GBS_ENOMEM;
        memset(s->ones, 0xff, s->img.bitmap_size);
    }
    while (len) {
        uint64_t host, run;
        size_t n;

        if (vpc_map(&s->img, s->bat, off, &host, &run)) {
            /* get_image_offset(write): the block's bitmap all ones, once in a row. */
            uint64_t bitmap = 512ull * s->bat[off / s->img.block_size];

            if (s->last_bitmap_offset != bitmap) {
                s->last_bitmap_offset = bitmap;
                ret = write_sync(bs, bitmap, s->ones, s->img.bitmap_size);
                if (ret < 0)
                    return ret;
            }
        } else {
            ret = alloc_block(bs, off);
            if (ret < 0)
                return ret;
            if (!vpc_map(&s->img, s->bat, off, &host, &run))
                return -GBS_EIO;
        }
        n = run < len ? (size_t)run : len;
        if (gdev_pwrite(bs->file, host, p, n) < 0)
            return -GBS_EIO;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int vpc_flush(struct gbs *bs)
{
    if (!bs->writable)
        return 0;
    return gdev_flush(bs->file) < 0 ? -GBS_EIO : 0;
}

const struct gbs_driver gbs_drv_vpc = {
    .name = "vpc",
    .open = vpc_drv_open,
    .block_status = vpc_block_status,
    .pread = vpc_pread,
    .pwrite = vpc_pwrite,
    .flush = vpc_flush,
};
