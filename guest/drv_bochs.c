/*
 * The bochs driver of the guest block layer: open as bochs_open() does
 * (formats/bochs/bochs.h), reads as bochs_co_preadv() does them (sector
 * by sector: the catalog names the extent, the extent's bitmap says
 * whether the sector is there, else it reads as zeros).  QEMU's driver
 * has no block status hook: the generic answer is DATA for the whole
 * range, without an offset.
 */
#include "bdrv.h"
#include "bochs/bochs.h"

struct gbochs {
    struct bochs_image img;
    uint32_t *cat; /* catalog_size entries, host order */
};

static struct gbochs bochses[INSTAR_NODE_MAX];

static int dev_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return gblk_pread(*(const uint32_t *)opaque, off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

static __attribute__((noreturn)) void gbochs_fail(uint32_t op, int ret, const struct gbochs *s)
{
    uint64_t args[4] = {s->img.err_arg, 0, 0, 0};

    result_error(op, -ret, args, NULL, 0);
}

/* Open device dev into s, the catalog read too when want_cat; fails op's result on error. */
static void gbochs_open(uint32_t op, struct gbochs *s, uint32_t dev, bool want_cat)
{
    struct bochs_reader r = {dev_pread, &dev};
    int ret;

    memset(s, 0, sizeof(*s));
    ret = bochs_open(&r, &s->img);
    if (ret < 0)
        gbochs_fail(op, ret, s);
    if (!want_cat)
        return;
    /* At most BOCHS_CATALOG_MAX entries: 4 MiB. */
    s->cat = malloc((size_t)s->img.catalog_size * 4 + 4);
    if (!s->cat)
        gbochs_fail(op, -BOCHS_ERR_CATALOG_NOMEM, s);
    ret = bochs_read_catalog(&r, &s->img, s->cat);
    if (ret < 0)
        gbochs_fail(op, ret, s);
}

void gbs_bochs_describe(uint32_t op, uint32_t dev, uint64_t *size)
{
    static struct gbochs s;

    gbochs_open(op, &s, dev, false);
    *size = s.img.total_sectors * 512;
}

static int bochs_drv_open(struct gbs *bs)
{
    struct gbochs *s = &bochses[bs->node];

    bs->opaque = s;
    gbochs_open(boot->op, s, bs->file, true);
    bs->total = s->img.total_sectors * 512;
    bs->supports_backing = false;
    return 0;
}

static int bochs_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                              uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    (void)want_zero;
    (void)off;
    *pnum = bytes;
    *map = 0;
    *dev = bs->file;
    return INSTAR_BS_DATA;
}

/* A read qemu's block layer lets through: it ends below BDRV_MAX_LENGTH. */
static bool request_ok(uint64_t off, uint64_t len)
{
    return off <= BOCHS_MAX_LENGTH && len <= BOCHS_MAX_LENGTH - off;
}

/* Whole sectors: off and len multiples of 512. */
static int read_sectors(struct gbs *bs, uint64_t off, uint8_t *p, size_t len)
{
    const struct gbochs *s = bs->opaque;
    /* A run of sectors that lie back to back in the file, read at once. */
    uint64_t run_host = 0, run_len = 0;
    uint8_t *run_buf = NULL;

    for (; len; off += 512, p += 512, len -= 512) {
        uint64_t bitmap, data;
        unsigned bit;
        uint8_t byte;

        if (!bochs_locate(&s->img, s->cat, off / 512, &bitmap, &bit, &data)) {
            memset(p, 0, 512);
            continue;
        }
        if (!request_ok(bitmap, 1) || gblk_pread(bs->file, bitmap, &byte, 1) < 0)
            return -GBS_EIO;
        if (!((byte >> bit) & 1)) {
            memset(p, 0, 512);
            continue;
        }
        /* seek_to_sector() returns an int64_t: one past INT64_MAX is an error. */
        if (!request_ok(data, 512))
            return -GBS_EIO;
        if (run_len && run_host + run_len == data && run_buf + run_len == p) {
            run_len += 512;
            continue;
        }
        if (run_len && gblk_pread_direct(bs->file, run_host, run_buf, run_len) < 0)
            return -GBS_EIO;
        run_host = data;
        run_buf = p;
        run_len = 512;
    }
    if (run_len && gblk_pread_direct(bs->file, run_host, run_buf, run_len) < 0)
        return -GBS_EIO;
    return 0;
}

/* The block layer widens a request to whole sectors (bochs_refresh_limits). */
static int bochs_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    uint8_t sector[512], *p = buf;
    int ret;

    while (len) {
        uint64_t head = off % 512;
        size_t n;

        if (head == 0 && len >= 512) {
            n = len & ~(size_t)511;
            ret = read_sectors(bs, off, p, n);
        } else {
            n = 512 - head < len ? (size_t)(512 - head) : len;
            ret = read_sectors(bs, off - head, sector, 512);
            if (ret == 0)
                memcpy(p, sector + head, n);
        }
        if (ret < 0)
            return ret;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

const struct gbs_driver gbs_drv_bochs = {
    .name = "bochs",
    .open = bochs_drv_open,
    .block_status = bochs_block_status,
    .pread = bochs_pread,
};
