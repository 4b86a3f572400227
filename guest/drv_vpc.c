/*
 * The vpc (VHD) driver of the guest block layer: open as vpc_open() does
 * (formats/vpc/vpc.h), block status as vpc_co_block_status() answers it
 * (a fixed image is its file; a dynamic one is data block by block, an
 * unallocated run of blocks reads as zeros), and reads as
 * vpc_co_preadv() does them (the sector bitmaps are not consulted: QEMU
 * reads an allocated block whole).  Read-only: the host opens no vpc
 * image writable.
 */
#include "bdrv.h"
#include "vpc/vpc.h"

struct gvpc {
    struct vpc_image img;
    uint32_t *bat; /* max_table_entries entries, host order; NULL when fixed */
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

static int vpc_flush(struct gbs *bs)
{
    (void)bs;
    return 0;
}

const struct gbs_driver gbs_drv_vpc = {
    .name = "vpc",
    .open = vpc_drv_open,
    .block_status = vpc_block_status,
    .pread = vpc_pread,
    .flush = vpc_flush,
};
