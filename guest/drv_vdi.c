/*
 * The vdi driver of the guest block layer: open as vdi_open() does
 * (formats/vdi/vdi.h), block status as vdi_co_block_status() answers it
 * (block by block: an allocated block is data in the file, RECURSE for a
 * static image; an unallocated or discarded one reads as zeros), reads
 * as vdi_co_preadv(), and writes as vdi_co_pwritev(): a write into an
 * unallocated block allocates the next block of the data area
 * (blocks_allocated) and writes it whole, the request's data padded with
 * zeros; after the request's data, if it allocated, the header (with the
 * new blocks_allocated) and then the block map sectors it changed.  qemu
 * does not flush between them.
 */
#include "bdrv.h"
#include "vdi/vdi.h"

struct gvdi {
    struct vdi_image img;
    uint32_t *bmap; /* img.bmap_held entries, host order */
    uint8_t *block; /* a block buffer for allocating writes */
};

static struct gvdi vdis[INSTAR_NODE_MAX];

/*
 * Open device dev as vdi into s.  Returns 0 or a negative error code,
 * with its arguments in s->img.err_args.
 */
static int gvdi_open(struct gvdi *s, uint32_t dev)
{
    uint8_t h[VDI_HEADER_SIZE];
    int ret;

    memset(s, 0, sizeof(*s));
    if (gblk_pread(dev, 0, h, sizeof(h)) < 0)
        return -INSTAR_ERR_IO;
    ret = vdi_open_header(h, gblk_size(dev), &s->img);
    if (ret < 0)
        return ret;
    if (s->img.bmap_held == 0)
        return 0;
    s->bmap = malloc((size_t)s->img.bmap_held * 4);
    if (!s->bmap)
        return -VDI_ERR_NOMEM;
    if (gblk_pread_direct(dev, s->img.offset_bmap, s->bmap, (size_t)s->img.bmap_held * 4) < 0)
        return -INSTAR_ERR_IO;
    vdi_bmap_load(s->bmap, s->img.bmap_held);
    return 0;
}

static __attribute__((noreturn)) void gvdi_fail(uint32_t op, int ret, const struct gvdi *s)
{
    uint64_t args[4] = {s->img.err_args[0], s->img.err_args[1], 0, 0};

    result_error(op, -ret, args, NULL, 0);
}

void gbs_vdi_describe(uint32_t op, uint32_t dev, uint64_t *size, uint32_t *cluster_size)
{
    static struct gvdi s;
    int ret = gvdi_open(&s, dev);

    if (ret < 0)
        gvdi_fail(op, ret, &s);
    *size = s.img.disk_size;
    /* vdi_get_info(): the block size is the cluster size. */
    *cluster_size = VDI_BLOCK_SIZE;
    free(s.bmap);
}

static void check_report(void *opaque, int32_t code, uint64_t a0, uint64_t a1)
{
    uint64_t args[4] = {a0, a1, 0, 0};

    (void)opaque;
    greport(code, 0, args, NULL, 0);
}

int gbs_vdi_check(uint32_t op, uint32_t dev, uint64_t *corruptions, uint64_t *check_errors)
{
    static struct gvdi s;
    uint64_t *used;
    int ret = gvdi_open(&s, dev);

    if (ret < 0)
        gvdi_fail(op, ret, &s);
    *corruptions = 0;
    *check_errors = 0;
    used = malloc(((size_t)s.img.blocks_in_image + 63) / 64 * 8 + 8);
    if (!used) {
        /* vdi_co_check(): check_errors++, -ENOMEM. */
        *check_errors = 1;
        free(s.bmap);
        return -GBS_ENOMEM;
    }
    *corruptions = vdi_check(&s.img, s.bmap, used, check_report, NULL);
    free(used);
    free(s.bmap);
    return 0;
}

static struct gvdi *V(struct gbs *bs)
{
    return bs->opaque;
}

static int vdi_drv_open(struct gbs *bs)
{
    struct gvdi *s = &vdis[bs->node];
    int ret;

    bs->opaque = s;
    ret = gvdi_open(s, bs->file);
    /* The host described the image first: a failure here is qemu's open message too. */
    if (ret < 0)
        gvdi_fail(boot->op, ret, s);
    bs->total = s->img.disk_size;
    bs->supports_backing = false;
    return 0;
}

static int vdi_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                            uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    const struct gvdi *s = V(bs);
    uint64_t host, run;

    (void)want_zero;
    *dev = bs->file;
    /* One block at most per answer, as qemu's. */
    if (!vdi_map(&s->img, s->bmap, off, &host, &run)) {
        *pnum = run < bytes ? run : bytes;
        return INSTAR_BS_ZERO;
    }
    *pnum = run < bytes ? run : bytes;
    *map = host;
    return INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID |
           (s->img.image_type == VDI_TYPE_STATIC ? INSTAR_BS_RECURSE : 0);
}

static int vdi_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    const struct gvdi *s = V(bs);
    uint8_t *p = buf;

    while (len) {
        uint64_t host, run;
        size_t n;
        bool mapped = vdi_map(&s->img, s->bmap, off, &host, &run);

        n = run < len ? (size_t)run : len;
        if (!mapped)
            memset(p, 0, n);
        else if (gblk_pread_direct(bs->file, host, p, n) < 0)
            return -GBS_EIO;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* The header, then the block map sectors holding entries first..last. */
static int write_metadata(struct gbs *bs, uint32_t first, uint32_t last)
{
    struct gvdi *s = V(bs);
    uint8_t h[VDI_HEADER_SIZE];
    uint32_t sfirst = first / 128, slast = last / 128, i;
    uint8_t *p;
    size_t n;
    int ret;

    vdi_header_store(&s->img, h);
    if (gdev_pwrite(bs->file, 0, h, sizeof(h)) < 0)
        return -GBS_EIO;
    /* The entries written are held (allocating needs an unallocated entry). */
    n = (size_t)(slast - sfirst + 1) * 512;
    p = malloc(n);
    if (!p)
        return -GBS_ENOMEM;
    for (i = 0; i < (slast - sfirst + 1) * 128; i++) {
        uint32_t e = s->bmap[sfirst * 128 + i];

        p[i * 4] = (uint8_t)e;
        p[i * 4 + 1] = (uint8_t)(e >> 8);
        p[i * 4 + 2] = (uint8_t)(e >> 16);
        p[i * 4 + 3] = (uint8_t)(e >> 24);
    }
    ret =
        gdev_pwrite(bs->file, s->img.offset_bmap + (uint64_t)sfirst * 512, p, n) < 0 ? -GBS_EIO : 0;
    free(p);
    return ret;
}

static int vdi_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    struct gvdi *s = V(bs);
    const uint8_t *p = buf;
    uint32_t first = VDI_UNALLOCATED, last = 0;

    while (len) {
        uint32_t index = (uint32_t)(off / VDI_BLOCK_SIZE), in = (uint32_t)(off % VDI_BLOCK_SIZE);
        uint64_t host, run;
        size_t n;

        if (vdi_map(&s->img, s->bmap, off, &host, &run)) {
            n = run < len ? (size_t)run : len;
            if (gdev_pwrite(bs->file, host, p, n) < 0)
                return -GBS_EIO;
        } else {
            uint32_t e = s->img.blocks_allocated;

            n = run < len ? (size_t)run : len;
            /* An unallocated entry is held; a block number past the map's range cannot be. */
            if (index >= s->img.bmap_held || !vdi_is_allocated(e))
                return -GBS_EIO;
            if (!s->block) {
                s->block = malloc(VDI_BLOCK_SIZE);
                if (!s->block)
                    return -GBS_ENOMEM;
            }
            s->bmap[index] = e;
            s->img.blocks_allocated++;
            if (first == VDI_UNALLOCATED)
                first = index;
            last = index;
            memset(s->block, 0, VDI_BLOCK_SIZE);
            memcpy(s->block + in, p, n);
            if (gdev_pwrite(bs->file, s->img.offset_data + (uint64_t)e * VDI_BLOCK_SIZE, s->block,
                            VDI_BLOCK_SIZE) < 0)
                return -GBS_EIO;
        }
        p += n;
        off += n;
        len -= n;
    }
    if (first == VDI_UNALLOCATED)
        return 0;
    return write_metadata(bs, first, last);
}

static int vdi_flush(struct gbs *bs)
{
    if (!bs->writable)
        return 0;
    return gdev_flush(bs->file) < 0 ? -GBS_EIO : 0;
}

const struct gbs_driver gbs_drv_vdi = {
    .name = "vdi",
    .open = vdi_drv_open,
    .block_status = vdi_block_status,
    .pread = vdi_pread,
    .pwrite = vdi_pwrite,
    .flush = vdi_flush,
};
