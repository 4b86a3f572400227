/*
 * The vhdx driver of the guest block layer: open as vhdx_open() does
 * (formats/vhdx/vhdx.h), and reads as vhdx_co_readv() does them (a fully
 * present payload block from the file; not present, undefined, zero and
 * unmapped blocks as zeros; a partially present block, or an unknown
 * state, fails with EIO).  vhdx has no block status hook in qemu 7.2, so
 * the generic layer calls the whole image allocated data, without an
 * offset; so does this driver.  A log that needs replay refuses a
 * read-only open; a read-write open (check -r, a write target) replays it
 * first.  Writes are vhdx_co_writev()'s: the headers get new data write
 * GUIDs before the first, a block not present is allocated at the end of
 * the file (rounded up to 1 MiB, the file grown past it), the data
 * written, and its BAT entry goes through the log (vhdx_log_write_and_flush()).
 */
#include "bdrv.h"
#include "vhdx/vhdx.h"

struct gvhdx {
    struct vhdx_image img;
    uint64_t *bat; /* vhdx_bat_used() entries, host order */
    /* A writer's state (BDRVVHDXState): */
    bool first_visible_write;
    uint8_t session[16]; /* the file write GUID of this open */
    uint64_t rng[2];     /* the GUIDs' generator, from the host's seed */
    struct vhdx_log_pos log;
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

static int dev_flush(void *opaque)
{
    return gdev_flush(*(const uint32_t *)opaque) < 0 ? -1 : 0;
}

/* splitmix64 over the host's seed: GUIDs need to be unique, not secret. */
static uint64_t rng_next(struct gvhdx *s)
{
    uint64_t z = (s->rng[0] += 0x9e3779b97f4a7c15ull) ^ s->rng[1];

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* vhdx_guid_generate(): a version 4 UUID's bytes, as qemu_uuid_generate() makes them. */
static void guid_generate(struct gvhdx *s, uint8_t g[16])
{
    uint64_t a = rng_next(s), b = rng_next(s);

    memcpy(g, &a, 8);
    memcpy(g + 8, &b, 8);
    g[6] = (uint8_t)((g[6] & 0x0f) | 0x40);
    g[8] = (uint8_t)((g[8] & 0x3f) | 0x80);
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
        struct vhdx_writer w = {dev_pwrite, dev_truncate, &dev, dev_flush};

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
    if (bs->writable) {
        uint8_t guids[3][16];
        uint64_t seed[4], rng[2];
        bool replayed;

        /* vhdx_open(): the session GUID first, then a replay's data GUIDs. */
        memcpy(seed, bs->seed, sizeof(seed));
        s->rng[0] = seed[0] ^ seed[2];
        s->rng[1] = seed[1] ^ seed[3] ^ bs->node;
        guid_generate(s, guids[0]);
        guid_generate(s, guids[1]);
        guid_generate(s, guids[2]);
        memcpy(rng, s->rng, sizeof(rng));
        ret = gvhdx_open(s, bs->file, true, false, (const uint8_t(*)[16])guids, &replayed);
        memcpy(s->rng, rng, sizeof(rng));
        memcpy(s->session, guids[0], 16);
        /* A replay did vhdx_user_visible_write(); its log numbers go on. */
        s->first_visible_write = !replayed;
        s->log.write = 0;
        s->log.tail = 0;
        s->log.sequence = replayed ? s->img.log.sequence + 1 : 0;
    } else {
        ret = gvhdx_open(s, bs->file, false, false, NULL, NULL);
    }
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

/*
 * A fully present block is plain data in the file, and the blocks after
 * it often follow it there (qemu allocates them in order at the end of
 * the file): one range as far as that goes.
 */
static int vhdx_data_range(struct gbs *bs, uint64_t off, uint64_t bytes, uint64_t *pnum,
                           uint64_t *map, uint32_t *dev)
{
    const struct gvhdx *s = V(bs);
    uint64_t host, run, next, nrun, want;

    if (vhdx_map(&s->img, s->bat, off, &host, &run) != VHDX_PAYLOAD_FULLY_PRESENT) {
        *pnum = run < bytes ? run : bytes;
        return 0;
    }
    *pnum = run;
    while (*pnum < bytes &&
           vhdx_map(&s->img, s->bat, off + *pnum, &next, &nrun) == VHDX_PAYLOAD_FULLY_PRESENT &&
           !__builtin_add_overflow(host, *pnum, &want) && next == want)
        *pnum += nrun;
    if (*pnum > bytes)
        *pnum = bytes;
    *map = host;
    *dev = bs->file;
    return 1;
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

/*
 * The aligned core of vhdx_co_writev(): [off, off + len) in whole
 * logical sectors of 512 bytes.
 */
static int vhdx_write_sectors(struct gbs *bs, uint64_t off, const uint8_t *p, size_t len)
{
    static uint8_t scratch[8192];
    struct gvhdx *s = V(bs);
    uint32_t dev = bs->file;
    struct vhdx_reader r = {dev_pread, &dev};
    struct vhdx_writer w = {dev_pwrite, dev_truncate, &dev, dev_flush};
    int ret;

    /* vhdx_user_visible_write(): both headers, a new data write GUID each. */
    if (s->first_visible_write) {
        uint8_t g[16];

        s->first_visible_write = false;
        guid_generate(s, g);
        ret = vhdx_header_update(&r, &w, &s->img, s->session, g, NULL, scratch);
        if (ret == 0) {
            guid_generate(s, g);
            ret = vhdx_header_update(&r, &w, &s->img, s->session, g, NULL, scratch);
        }
        if (ret < 0)
            return -GBS_EIO;
    }
    while (len) {
        uint64_t block = off / s->img.block_size, in = off % s->img.block_size;
        uint64_t idx = block + (block >> s->img.chunk_ratio_bits), host, run, prior;
        unsigned state = vhdx_map(&s->img, s->bat, off, &host, &run);
        size_t n = run < len ? (size_t)run : len;
        bool bat_update = false;

        switch (state) {
        case VHDX_PAYLOAD_ZERO:
        case VHDX_PAYLOAD_NOT_PRESENT:
        case VHDX_PAYLOAD_UNMAPPED:
        case VHDX_PAYLOAD_UNMAPPED_V095:
        case VHDX_PAYLOAD_UNDEFINED: {
            /*
             * vhdx_allocate_block(): at the end of the file rounded up to
             * 1 MiB, the file grown past the block (a grown file reads as
             * zeros, so a ZERO block needs no zeros written around the data).
             */
            uint64_t at = (gdev_length(dev) + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB;

            if (at > (1ull << 62) ||
                gdev_truncate(dev, at + s->img.block_size, INSTAR_TRUNC_OFF) < 0)
                return -GBS_EIO;
            prior = s->bat[idx];
            s->bat[idx] = at | VHDX_PAYLOAD_FULLY_PRESENT;
            host = at + in;
            bat_update = true;
        }
            /* fall through */
        case VHDX_PAYLOAD_FULLY_PRESENT:
            /* An offset in the header section is a problem (EFAULT). */
            if (host < VHDX_MiB || gdev_pwrite(dev, host, p, n) < 0) {
                if (bat_update)
                    s->bat[idx] = prior;
                return -GBS_EIO;
            }
            break;
        default:
            return -GBS_EIO;
        }
        if (bat_update) {
            uint8_t lg[16];

            /* vhdx_log_write_and_flush(): the data stable first. */
            if (gdev_flush(dev) < 0)
                return -GBS_EIO;
            guid_generate(s, lg);
            ret = vhdx_log_write_entry(&r, &w, &s->img, &s->log, s->session, lg, s->bat[idx],
                                       s->img.bat_offset + idx * 8, gdev_length(dev), scratch);
            if (ret < 0)
                return -GBS_EIO;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/*
 * vhdx_co_writev() is sector based: the block layer pads an unaligned
 * request to whole sectors with what they read (bdrv_co_do_pwritev()).
 */
static int vhdx_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    uint64_t lo = off / 512 * 512, hi = (off + len + 511) / 512 * 512;
    uint8_t *pad;
    int ret;

    if (lo == off && hi == off + len)
        return vhdx_write_sectors(bs, off, buf, len);
    pad = malloc((size_t)(hi - lo));
    if (!pad)
        return -GBS_ENOMEM;
    ret = vhdx_pread(bs, lo, pad, 512);
    if (ret == 0 && hi - lo > 512)
        ret = vhdx_pread(bs, hi - 512, pad + (hi - lo - 512), 512);
    if (ret == 0) {
        memcpy(pad + (off - lo), buf, len);
        ret = vhdx_write_sectors(bs, lo, pad, (size_t)(hi - lo));
    }
    free(pad);
    return ret;
}

static int vhdx_flush(struct gbs *bs)
{
    if (!bs->writable)
        return 0;
    return gdev_flush(bs->file) < 0 ? -GBS_EIO : 0;
}

const struct gbs_driver gbs_drv_vhdx = {
    .name = "vhdx",
    .open = vhdx_drv_open,
    .block_status = vhdx_block_status,
    .data_range = vhdx_data_range,
    .pread = vhdx_pread,
    .pwrite = vhdx_pwrite,
    .flush = vhdx_flush,
};
