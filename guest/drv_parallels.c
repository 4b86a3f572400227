/*
 * The parallels driver of the guest block layer, after qemu 7.2's
 * block/parallels.c: open as parallels_open() does (formats/parallels:
 * the header checks, the catalog read as one buffer of header_size bytes,
 * the inuse flag, the format extension of a read-only open), block
 * status as parallels_co_block_status() answers it (runs of clusters
 * contiguous in the file are one extent, unallocated clusters read as
 * zeros or from the backing node), reads as parallels_co_readv(), and
 * writes as parallels_co_writev(): allocate_clusters() puts new clusters
 * at data_end, first growing the file by prealloc-size (128 MiB) of
 * allocated zeros when they would pass its end, and the catalog reaches
 * the file at the next flush (parallels_co_flush_to_os(), the dirty
 * 16 KiB blocks of the buffer).  A writable node is marked in use at open
 * and clean at close, where the file is cut at data_end
 * (parallels_close()); a crash in between leaves the inuse flag set,
 * which check reports and check -r all clears.
 *
 * check (gbs_parallels_check) is parallels_co_check() with its repairs
 * and img_check()'s second check on the same open image.
 */
#include "bdrv.h"
#include "parallels/parallels.h"

#include <nettle/md5.h>

#define OPT_RDWR  PRL_OPEN_RDWR
#define OPT_CHECK PRL_OPEN_CHECK

struct gprl {
    struct prl_image img;
    uint8_t *buf; /* the first len bytes of QEMU's header buffer */
    size_t len;
    uint32_t dev;
    bool rdwr;
    uint8_t *dirty; /* a bit per PRL_DIRTY_BLOCK of the buffer */
    size_t ndirty;
};

static struct gprl prls[INSTAR_NODE_MAX];

static int dev_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return gblk_pread(*(const uint32_t *)opaque, off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

static int dev_md5(void *opaque, uint64_t off, uint64_t len, uint8_t digest[16])
{
    static uint8_t chunk[65536];
    struct md5_ctx ctx;

    md5_init(&ctx);
    while (len) {
        size_t n = len < sizeof(chunk) ? (size_t)len : sizeof(chunk);

        if (gblk_pread_direct(*(const uint32_t *)opaque, off, chunk, n) < 0)
            return -INSTAR_ERR_IO;
        md5_update(&ctx, n, chunk);
        off += n;
        len -= n;
    }
    md5_digest(&ctx, 16, digest);
    return 0;
}

/* bdrv_getlength() of the file as the writes left it: whole sectors. */
static uint64_t file_len(uint32_t dev)
{
    uint64_t n = gdev_length(dev);

    return n > UINT64_MAX - 511 ? n & ~511ull : (n + 511) & ~511ull;
}

/* parallels_update_header(): the first page of the buffer (at most header_size), synced. */
static int update_header(struct gprl *s)
{
    uint64_t n = s->img.header_size < PRL_MEM_ALIGN ? s->img.header_size : PRL_MEM_ALIGN;

    if (n > s->len || gdev_pwrite(s->dev, 0, s->buf, (size_t)n) < 0 || gdev_flush(s->dev) < 0)
        return -GBS_EIO;
    return 0;
}

/*
 * Open device dev as parallels into s (flags: PRL_OPEN_*).  Returns 0 or
 * a negative error code, with its arguments in s->img.  *ext_rw is set
 * when a read-write open ignores a format extension (QEMU's warning).
 */
static int gprl_open(struct gprl *s, uint32_t dev, unsigned flags, bool *ext_rw)
{
    uint8_t hdr[PRL_HEADER_SIZE];
    uint64_t file = gblk_size(dev), want;
    int ret;

    memset(s, 0, sizeof(*s));
    s->dev = dev;
    s->rdwr = flags & OPT_RDWR;
    if (gblk_pread(dev, 0, hdr, sizeof(hdr)) < 0)
        return -INSTAR_ERR_IO;
    ret = prl_open_header(hdr, &s->img);
    if (ret < 0)
        return ret;
    /*
     * The buffer: the whole of it for a node that writes it back; for a
     * reader only the part inside the file (the rest reads as zeros).
     */
    want = s->img.header_size;
    if (!s->rdwr && want > file)
        want = file < PRL_HEADER_SIZE ? PRL_HEADER_SIZE : file;
    s->len = (size_t)want;
    s->buf = malloc(s->len);
    if (!s->buf)
        return -INSTAR_ERR_NOMEM;
    if (gblk_pread(dev, 0, s->buf, s->len) < 0)
        return -INSTAR_ERR_IO;
    ret = prl_open_bat(&s->img, s->buf, s->len, flags);
    if (ret < 0)
        return ret;
    if (s->img.ext_off) {
        if (s->rdwr) {
            *ext_rw = true;
        } else {
            struct prl_reader r = {dev_pread, dev_md5, &s->dev};

            ret = prl_read_extension(&r, &s->img);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

static __attribute__((noreturn)) void gprl_fail(uint32_t op, int ret, const struct gprl *s)
{
    uint64_t args[4] = {s->img.err_arg[0], s->img.err_arg[1], 0, 0};
    size_t slen = strlen(s->img.err_str);

    result_error(op, -ret, args, slen ? s->img.err_str : NULL, slen);
}

void gbs_parallels_describe(uint32_t op, uint32_t dev, uint32_t info_flags, uint64_t *size)
{
    static struct gprl s;
    unsigned flags = 0;
    bool ext_rw = false;
    int ret;

    if (info_flags & INSTAR_INFO_OPEN_RDWR)
        flags |= OPT_RDWR;
    if (info_flags & INSTAR_INFO_OPEN_CHECK)
        flags |= OPT_CHECK;
    ret = gprl_open(&s, dev, flags, &ext_rw);
    if (ret < 0)
        gprl_fail(op, ret, &s);
    if (ext_rw)
        result_warn(INSTAR_WARN_PARALLELS_EXT_RW, 1);
    *size = s.img.total_sectors * 512;
    free(s.buf);
}

/* --- check --- */

static void check_report(void *opaque, int code, uint64_t arg)
{
    uint64_t args[4] = {arg, 0, 0, 0};

    (void)opaque;
    greport(code, 0, args, NULL, 0);
}

static void quiet_report(void *opaque, int code, uint64_t arg)
{
    (void)opaque;
    (void)code;
    (void)arg;
}

/* parallels_close() of a read-write open: clean header, file cut at data_end. */
static void close_rw(struct gprl *s)
{
    s->buf[PRL_INUSE_OFFSET] = s->buf[PRL_INUSE_OFFSET + 1] = 0;
    s->buf[PRL_INUSE_OFFSET + 2] = s->buf[PRL_INUSE_OFFSET + 3] = 0;
    /* Errors are ignored, as QEMU ignores them. */
    (void)update_header(s);
    (void)gdev_truncate(s->dev, (uint64_t)s->img.data_end << 9, INSTAR_TRUNC_OFF);
}

__attribute__((noreturn)) void gbs_parallels_check(uint32_t op, uint32_t dev, unsigned fix)
{
    static struct gprl s;
    struct prl_check_result r, r2;
    struct instar_check_result *o;
    struct rbuf rb;
    bool ext_rw = false;
    int32_t ret = 0;
    int err;

    err = gprl_open(&s, dev, OPT_CHECK | (fix ? OPT_RDWR : 0), &ext_rw);
    if (err < 0)
        gprl_fail(op, err, &s);
    if (rbuf_init(&rb, sizeof(struct instar_check_result)) < 0)
        result_error(op, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    o = rbuf_at(&rb, 0);
    memcpy(o->format, "parallels", 10);
    if (fix) {
        /* parallels_open() read-write: the image is in use until closed. */
        s.buf[PRL_INUSE_OFFSET] = 0x59;
        s.buf[PRL_INUSE_OFFSET + 1] = 0x6e;
        s.buf[PRL_INUSE_OFFSET + 2] = 0x6f;
        s.buf[PRL_INUSE_OFFSET + 3] = 0x74;
        if (update_header(&s) < 0)
            result_error(op, INSTAR_ERR_IO, NULL, NULL, 0);
    }
    prl_check(&s.img, s.buf, s.len, file_len(dev), fix, check_report, NULL, &r);
    if (r.flush_bat && (gdev_pwrite(dev, 0, s.buf, s.len) < 0 || gdev_flush(dev) < 0)) {
        ret = -GBS_EIO;
        r.flush_bat = false;
    } else if (r.truncate) {
        if (gdev_truncate(dev, (uint64_t)r.image_end_offset, INSTAR_TRUNC_OFF) < 0)
            ret = -GBS_EIO;
    }
    if (ret == 0 && (r.corruptions_fixed || r.leaks_fixed)) {
        /* img_check(): the second check, on the same open image, reports as any check. */
        prl_check(&s.img, s.buf, s.len, file_len(dev), 0, check_report, NULL, &r2);
        o->flags |= INSTAR_CHECK_RECHECKED;
        r2.corruptions_fixed = r.corruptions_fixed;
        r2.leaks_fixed = r.leaks_fixed;
        r = r2;
    }
    (void)quiet_report;
    if (fix) {
        /* bdrv_close(): bdrv_flush() (nothing dirty), then parallels_close(). */
        (void)gdev_flush(dev);
        close_rw(&s);
    }
    o->ret = ret;
    o->corruptions = r.corruptions;
    o->leaks = r.leaks;
    o->check_errors = ret < 0 ? 1 : 0;
    o->corruptions_fixed = r.corruptions_fixed;
    o->leaks_fixed = r.leaks_fixed;
    o->image_end_offset = r.image_end_offset;
    o->total_clusters = r.total_clusters;
    o->allocated_clusters = r.allocated_clusters;
    o->fragmented_clusters = r.fragmented_clusters;
    rbuf_send(&rb, op, 0);
}

/* --- the block driver --- */

static struct gprl *P(struct gbs *bs)
{
    return bs->opaque;
}

static int prl_drv_open(struct gbs *bs)
{
    struct gprl *s = &prls[bs->node];
    bool ext_rw = false;
    int ret;

    bs->opaque = s;
    ret = gprl_open(s, bs->file, bs->writable ? OPT_RDWR : 0, &ext_rw);
    /* The host described the image first: a failure here is qemu's open message too. */
    if (ret < 0)
        gprl_fail(boot->op, ret, s);
    bs->total = s->img.total_sectors * 512;
    bs->supports_backing = true;
    if (bs->writable) {
        s->ndirty = (size_t)((s->img.header_size + PRL_DIRTY_BLOCK - 1) / PRL_DIRTY_BLOCK);
        s->dirty = calloc(1, (s->ndirty + 7) / 8);
        if (!s->dirty)
            return -INSTAR_ERR_NOMEM;
        s->buf[PRL_INUSE_OFFSET] = 0x59;
        s->buf[PRL_INUSE_OFFSET + 1] = 0x6e;
        s->buf[PRL_INUSE_OFFSET + 2] = 0x6f;
        s->buf[PRL_INUSE_OFFSET + 3] = 0x74;
        if (update_header(s) < 0)
            return -INSTAR_ERR_IO;
    }
    return 0;
}

/* The sectors one call of QEMU's hooks covers: its nb_sectors is an int. */
static uint64_t clamp_sectors(uint64_t bytes)
{
    uint64_t n = bytes >> 9;

    return n > 0x7fffffffu ? 0x7fffffffu : n;
}

static int prl_block_status_hook(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                                 uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    const struct gprl *s = P(bs);
    uint64_t n;
    int64_t pos;

    (void)want_zero;
    pos = prl_block_status(&s->img, s->buf, s->len, off >> 9, clamp_sectors(bytes), &n);
    *pnum = n << 9;
    if (pos < 0)
        return 0;
    *map = (uint64_t)pos << 9;
    *dev = bs->file;
    return INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID;
}

static int prl_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    const struct gprl *s = P(bs);
    uint8_t *p = buf;

    /* The block layer reads whole sectors: the image size is one. */
    while (len) {
        uint64_t sector = off >> 9, head = off & 511, n;
        int64_t pos =
            prl_block_status(&s->img, s->buf, s->len, sector, clamp_sectors(head + len + 511), &n);
        size_t bytes = (size_t)((n << 9) - head);

        if (bytes > len)
            bytes = len;
        if (pos < 0) {
            if (bs->backing) {
                if (gbs_pread(bs->backing, off, p, bytes) < 0)
                    return -GBS_EIO;
            } else {
                memset(p, 0, bytes);
            }
        } else if (gblk_pread_direct(bs->file, ((uint64_t)pos << 9) + head, p, bytes) < 0) {
            return -GBS_EIO;
        }
        p += bytes;
        off += bytes;
        len -= bytes;
    }
    return 0;
}

static void mark_dirty(struct gprl *s, uint32_t idx)
{
    uint64_t b = (PRL_HEADER_SIZE + 4ull * idx) / PRL_DIRTY_BLOCK;

    if (b < s->ndirty)
        s->dirty[b / 8] |= (uint8_t)(1u << (b % 8));
}

/*
 * allocate_clusters(): the host sector for sector, allocating the
 * clusters [sector, sector + *pnum) needs (nb sectors asked).
 */
static int64_t allocate(struct gbs *bs, uint64_t sector, uint64_t nb, uint64_t *pnum)
{
    struct gprl *s = P(bs);
    uint64_t idx, to_allocate, space, len, i;
    int64_t pos = prl_block_status(&s->img, s->buf, s->len, sector, nb, pnum);

    if (pos > 0)
        return pos;
    idx = sector / s->img.tracks;
    to_allocate = (sector + *pnum + s->img.tracks - 1) / s->img.tracks - idx;
    if (idx + to_allocate > s->img.bat_size)
        return -GBS_EIO;
    space = to_allocate * s->img.tracks;
    len = file_len(bs->file);
    if ((uint64_t)s->img.data_end + space > (len >> 9)) {
        /*
         * prealloc-mode=falloc: bdrv_co_pwrite_zeroes() on the file;
         * truncate: the file grown (sparse) to the new end.
         */
        space += s->img.tracks > PRL_PREALLOC_SECTORS ? s->img.tracks : PRL_PREALLOC_SECTORS;
        if (bs->drv_opts & 1) {
            if (gdev_truncate(bs->file, ((uint64_t)s->img.data_end + space) << 9,
                              INSTAR_TRUNC_OFF) < 0)
                return -GBS_EIO;
        } else if (gdev_zero(bs->file, (uint64_t)s->img.data_end << 9, space << 9,
                             INSTAR_ZERO_ALLOCATE) < 0) {
            return -GBS_EIO;
        }
    }
    if (bs->backing) {
        /* Copy the backing data of the clusters before the write lands in them. */
        uint64_t n = to_allocate * s->img.tracks << 9;
        uint8_t *cow = malloc((size_t)n);
        int ret;

        if (!cow)
            return -GBS_ENOMEM;
        ret = gbs_pread(bs->backing, idx * s->img.tracks << 9, cow, (size_t)n);
        if (ret == 0 && gdev_pwrite(bs->file, (uint64_t)s->img.data_end << 9, cow, (size_t)n) < 0)
            ret = -GBS_EIO;
        free(cow);
        if (ret < 0)
            return ret;
    }
    for (i = 0; i < to_allocate; i++) {
        prl_bat_set(s->buf, s->len, (uint32_t)(idx + i),
                    (uint32_t)((uint64_t)s->img.data_end / s->img.off_multiplier));
        s->img.data_end += s->img.tracks;
        mark_dirty(s, (uint32_t)(idx + i));
    }
    return (int64_t)((uint64_t)prl_bat_get(s->buf, s->len, (uint32_t)idx) * s->img.off_multiplier +
                     sector % s->img.tracks);
}

/*
 * parallels_co_writev() over whole sectors [start, end): the bytes come
 * from buf (at off) except in the head and tail sectors, which the block
 * layer's read-modify-write pads with what the image read before.
 */
static int write_sectors(struct gbs *bs, uint64_t start, uint64_t end, uint64_t off,
                         const uint8_t *buf, const uint8_t *head, const uint8_t *tail)
{
    while (start < end) {
        uint64_t n, done = 0, bytes;
        int64_t pos = allocate(bs, start >> 9, clamp_sectors(end - start), &n);

        if (pos < 0)
            return (int)pos;
        bytes = n << 9;
        while (done < bytes) {
            uint64_t at = start + done, host = ((uint64_t)pos << 9) + done, k;
            const uint8_t *src;

            if (head && at == (off & ~511ull)) {
                src = head;
                k = 512;
            } else if (tail && at == end - 512) {
                src = tail;
                k = 512;
            } else {
                src = buf + (at - off);
                k = bytes - done;
                if (tail && at + k > end - 512)
                    k = end - 512 - at;
            }
            if (gdev_pwrite(bs->file, host, src, (size_t)k) < 0)
                return -GBS_EIO;
            done += k;
        }
        start += bytes;
    }
    return 0;
}

static int prl_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    uint64_t start = off & ~511ull, end = (off + len + 511) & ~511ull;
    uint8_t head[512], tail[512];
    bool has_head = off != start, has_tail = ((off + len) & 511) != 0;

    if (len == 0)
        return 0;
    /* One partial sector: head and tail are the same one. */
    if (end - start == 512 && (has_head || has_tail)) {
        if (prl_pread(bs, start, head, 512) < 0)
            return -GBS_EIO;
        memcpy(head + (off - start), buf, len);
        return write_sectors(bs, start, end, off, buf, head, NULL);
    }
    if (has_head) {
        if (prl_pread(bs, start, head, 512) < 0)
            return -GBS_EIO;
        memcpy(head + (off - start), buf, 512 - (off - start));
    }
    if (has_tail) {
        uint64_t t = end - 512;

        if (prl_pread(bs, t, tail, 512) < 0)
            return -GBS_EIO;
        memcpy(tail, (const uint8_t *)buf + (t - off), (size_t)(off + len - t));
    }
    return write_sectors(bs, start, end, off, buf, has_head ? head : NULL, has_tail ? tail : NULL);
}

/* parallels_co_flush_to_os(): the dirty blocks of the buffer, then the file. */
static int prl_flush(struct gbs *bs)
{
    struct gprl *s = P(bs);
    size_t b;

    if (!bs->writable)
        return 0;
    for (b = 0; b < s->ndirty; b++) {
        uint64_t off = (uint64_t)b * PRL_DIRTY_BLOCK, n = PRL_DIRTY_BLOCK;

        if (!(s->dirty[b / 8] & (1u << (b % 8))))
            continue;
        if (off + n > s->img.header_size)
            n = s->img.header_size - off;
        if (gdev_pwrite(bs->file, off, s->buf + off, (size_t)n) < 0)
            return -GBS_EIO;
    }
    memset(s->dirty, 0, (s->ndirty + 7) / 8);
    return gdev_flush(bs->file) < 0 ? -GBS_EIO : 0;
}

static int prl_close(struct gbs *bs)
{
    close_rw(P(bs));
    return 0;
}

const struct gbs_driver gbs_drv_parallels = {
    .name = "parallels",
    .open = prl_drv_open,
    .block_status = prl_block_status_hook,
    .pread = prl_pread,
    .pwrite = prl_pwrite,
    .flush = prl_flush,
    .close = prl_close,
};
