/*
 * The vhdx driver of the guest block layer: open as vhdx_open() does
 * (formats/vhdx/vhdx.h), and reads as vhdx_co_readv() does them (a fully
 * present payload block from the file; not present, undefined, zero and
 * unmapped blocks as zeros; a partially present block, or an unknown
 * state, fails with EIO).  vhdx has no block status hook in qemu 7.2, so
 * the generic layer calls the whole image allocated data, without an
 * offset; so does this driver.  A log that needs replay refuses a
 * read-only open; a read-write open (check -r) replays it first.
 */
#include "bdrv.h"
#include "vhdx/vhdx.h"

struct gvhdx {
    struct vhdx_image img;
    uint64_t *bat; /* vhdx_bat_used() entries, host order */
};

static struct gvhdx *vhdxs[INSTAR_NODE_MAX];

static int dev_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return gblk_pread(*(const uint32_t *)opaque, off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

static int dev_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    uint32_t dev = *(const uint32_t *)opaque;

    /* bdrv_pwrite_sync() */
    return gdev_pwrite(dev, off, buf, len) < 0 || gdev_flush(dev) < 0 ? -1 : 0;
}

static int dev_truncate(void *opaque, uint64_t size)
{
    return gdev_truncate(*(const uint32_t *)opaque, size, INSTAR_TRUNC_OFF) < 0 ? -1 : 0;
}

/*
 * vhdx_check_bat() over the whole BAT, read in pieces (an empty disk's
 * BAT is counted as millions of entries that reads never use).
 */
static int check_bat(struct gvhdx *s, uint32_t dev, uint64_t file_size, vhdx_report_fn report,
                     int64_t *errcnt)
{
    static uint64_t piece[4096];
    struct vhdx_reader r = {dev_pread, &dev};
    uint64_t first, payblocks = 0;
    int ret;

    for (first = 0; first < s->img.bat_entries; first += 4096) {
        uint64_t n = s->img.bat_entries - first < 4096 ? s->img.bat_entries - first : 4096;

        ret = vhdx_read_bat(&r, &s->img, first, n, piece);
        if (ret == 0)
            ret = vhdx_check_bat(&s->img, piece, first, n, &payblocks, file_size, report, NULL,
                                 errcnt);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/*
 * Open device dev as vhdx into s.  rw: the device is writable (a log is
 * replayed, with guids: session and two data write GUIDs); check: a check's
 * open (BDRV_O_CHECK: the BAT entries are not checked).  *replayed says
 * whether a log was replayed.  Returns 0 or a negated VHDX_ERR_*, with
 * its arguments in s->img.err_args.
 */
static int gvhdx_open(struct gvhdx *s, uint32_t dev, bool rw, bool check,
                      const uint8_t (*guids)[16], bool *replayed)
{
    static uint8_t scratch[65536];
    struct vhdx_reader r = {dev_pread, &dev};
    uint64_t file_size = gblk_size(dev);
    int ret;

    memset(s, 0, sizeof(*s));
    if (replayed)
        *replayed = false;
    ret = vhdx_open_headers(&r, &s->img, scratch);
    if (ret < 0)
        return ret;
    if (s->img.log.valid) {
        struct vhdx_writer w = {dev_pwrite, dev_truncate, &dev};

        if (!rw)
            return -VHDX_ERR_LOG_READONLY;
        /* The host's description of a read-write open: the check replays. */
        if (!guids)
            goto regions;
        ret = vhdx_log_replay(&r, &w, &s->img, file_size, guids, scratch);
        if (ret < 0)
            return ret;
        if (gdev_flush(dev) < 0)
            return -VHDX_ERR_EIO;
        if (replayed)
            *replayed = true;
        file_size = gdev_length(dev);
    }
regions:
    ret = vhdx_open_regions(&r, &s->img, scratch);
    if (ret < 0)
        return ret;
    /* The entries reads use (at most the region's, vhdx_open_regions()). */
    s->bat = malloc((size_t)vhdx_bat_used(&s->img) * 8 + 8);
    if (!s->bat)
        return -VHDX_ERR_ENOMEM;
    ret = vhdx_read_bat(&r, &s->img, 0, vhdx_bat_used(&s->img), s->bat);
    if (ret == 0 && !check)
        ret = check_bat(s, dev, file_size, NULL, NULL);
    return ret;
}

static void gvhdx_release(struct gvhdx *s)
{
    free(s->bat);
    s->bat = NULL;
}

static __attribute__((noreturn)) void gvhdx_fail(uint32_t op, int ret, const struct gvhdx *s)
{
    result_error(op, -ret, s->img.err_args, NULL, 0);
}

void gbs_vhdx_describe(uint32_t op, uint32_t dev, bool rw, bool check, uint64_t *size,
                       uint32_t *cluster_size)
{
    static struct gvhdx s;
    int ret = gvhdx_open(&s, dev, rw, check, NULL, NULL);

    if (ret < 0)
        gvhdx_fail(op, ret, &s);
    *size = s.img.total_sectors * 512;
    /* vhdx_get_info(): the block size is the cluster size. */
    *cluster_size = s.img.block_size;
    gvhdx_release(&s);
}

static void check_line(void *opaque, int code, const uint64_t args[4])
{
    (void)opaque;
    greport(code, INSTAR_REC_PREFIX, args, NULL, 0);
}

void gbs_vhdx_check(uint32_t op, uint32_t dev, bool rw, const uint8_t (*guids)[16],
                    int64_t *corruptions, int64_t *corruptions_fixed)
{
    static struct gvhdx s;
    bool replayed;
    int ret = gvhdx_open(&s, dev, rw, true, guids, &replayed);

    if (ret < 0)
        gvhdx_fail(op, ret, &s);
    /* vhdx_co_check(): a replayed log counts as a fixed corruption. */
    *corruptions_fixed = replayed ? 1 : 0;
    *corruptions = 0;
    ret = check_bat(&s, dev, gdev_length(dev), check_line, corruptions);
    if (ret < 0)
        gvhdx_fail(op, ret, &s);
    greport_flush();
    gvhdx_release(&s);
}

static struct gvhdx *V(struct gbs *bs)
{
    return bs->opaque;
}

static int vhdx_drv_open(struct gbs *bs)
{
    struct gvhdx *s = vhdxs[bs->node];
    int ret;

    if (!s) {
        s = malloc(sizeof(*s));
        if (!s)
            result_error(boot->op, VHDX_ERR_ENOMEM, NULL, NULL, 0);
        vhdxs[bs->node] = s;
    }
    bs->opaque = s;
    /* Writing vhdx is not built yet (bench -w, commit, rebase, convert -n refuse it). */
    if (bs->writable)
        result_error(boot->op, VHDX_ERR_NO_WRITE, NULL, NULL, 0);
    ret = gvhdx_open(s, bs->file, false, false, NULL, NULL);
    /* The host described the image first: a failure here is qemu's open message too. */
    if (ret < 0)
        gvhdx_fail(boot->op, ret, s);
    bs->total = s->img.total_sectors * 512;
    bs->supports_backing = false;
    return 0;
}

static int vhdx_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                             uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    /* No bdrv_co_block_status in qemu 7.2's vhdx: all allocated data. */
    (void)want_zero;
    (void)off;
    *pnum = bytes;
    *map = 0;
    *dev = bs->file;
    return INSTAR_BS_DATA;
}

static int vhdx_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    const struct gvhdx *s = V(bs);
    uint8_t *p = buf;

    while (len) {
        uint64_t host, run;
        unsigned state = vhdx_map(&s->img, s->bat, off, &host, &run);
        size_t n = run < len ? (size_t)run : len;

        switch (state) {
        case VHDX_PAYLOAD_NOT_PRESENT:
        case VHDX_PAYLOAD_UNDEFINED:
        case VHDX_PAYLOAD_UNMAPPED:
        case VHDX_PAYLOAD_UNMAPPED_V095:
        case VHDX_PAYLOAD_ZERO:
            memset(p, 0, n);
            break;
        case VHDX_PAYLOAD_FULLY_PRESENT:
            if (gblk_pread_direct(bs->file, host, p, n) < 0)
                return -GBS_EIO;
            break;
        default:
            return -GBS_EIO;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

const struct gbs_driver gbs_drv_vhdx = {
    .name = "vhdx",
    .open = vhdx_drv_open,
    .block_status = vhdx_block_status,
    .pread = vhdx_pread,
};
