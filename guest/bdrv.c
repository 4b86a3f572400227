/*
 * The guest block layer (see bdrv.h): nodes, QEMU's generic block status
 * rules (block/io.c: bdrv_co_block_status and
 * bdrv_co_common_block_status_above) and reads through a chain.
 */
#include "bdrv.h"

#include "instar/ovf.h"

static struct gbs nodes[INSTAR_NODE_MAX];

/*
 * find_allocation() answers kept per device: see seek_cached().  One slot
 * for each of the first SEEK_CACHE_SLOTS devices; beyond them (the extent
 * files of a large vmdk image) devices share slots, dev % SEEK_CACHE_SLOTS.
 */
#define SEEK_CACHE_EXTS  256
#define SEEK_CACHE_SLOTS 64

static struct seek_cache {
    uint32_t dev; /* whose answers these are */
    uint32_t n;
    struct instar_seek_ext e[SEEK_CACHE_EXTS];
} seek_cache[SEEK_CACHE_SLOTS];
static uint32_t nnodes;

struct gbs_corruption gbs_first_corruption;

struct gbs *gbs_node(uint32_t i)
{
    return i < nnodes ? &nodes[i] : NULL;
}

uint64_t gbs_dev_length(uint32_t dev)
{
    uint64_t s = gblk_size(dev);

    return s > UINT64_MAX - 511 ? s & ~511ull : (s + 511) & ~511ull;
}

void gbs_signal_corruption(struct gbs *bs, int32_t code, uint64_t a0, uint64_t a1, uint64_t a2)
{
    if (bs->corrupt_signalled)
        return;
    bs->corrupt_signalled = true;
    if (gbs_first_corruption.code)
        return;
    gbs_first_corruption.code = code;
    gbs_first_corruption.args[0] = a0;
    gbs_first_corruption.args[1] = a1;
    gbs_first_corruption.args[2] = a2;
}

static bool dev_ok(uint32_t dev)
{
    return dev < boot->ndevices && dev < INSTAR_DEV_MAX;
}

/* vmdk's extent files: the n devices after file (instar_node.driver's options). */
static bool ext_devs_ok(uint32_t file, uint32_t n)
{
    for (uint32_t k = 1; k <= n; k++)
        if (!dev_ok(file + k))
            return false;
    return true;
}

/* gbs_open_graph_ro(): every node read-only, whatever its device allows. */
static bool open_readonly;
/* gbs_open_graph_meta(): every node for its metadata alone. */
static bool open_meta_only;

int gbs_open_graph_ro(const struct instar_graph *g, uint32_t *failed)
{
    int ret;

    open_readonly = true;
    ret = gbs_open_graph(g, failed);
    open_readonly = false;
    return ret;
}

int gbs_open_graph_meta(const struct instar_graph *g, uint32_t *failed)
{
    int ret;

    open_meta_only = true;
    ret = gbs_open_graph(g, failed);
    open_meta_only = false;
    return ret;
}

int gbs_open_graph(const struct instar_graph *g, uint32_t *failed)
{
    uint32_t i, n = g->nnodes;
    int ret;

    *failed = 0;
    for (i = 0; i < SEEK_CACHE_SLOTS; i++)
        seek_cache[i].n = 0;
    if (n == 0 || n > INSTAR_NODE_MAX)
        return -INSTAR_ERR_BAD_ARGS;
    for (i = 0; i < n; i++) {
        const struct instar_node *in = &g->nodes[i];
        struct gbs *bs = &nodes[i];

        *failed = i;
        memset(bs, 0, sizeof(*bs));
        bs->node = i;
        bs->file = in->file;
        bs->data = in->data == INSTAR_NO_NODE ? in->file : in->data;
        if (!dev_ok(bs->file) || !dev_ok(bs->data))
            return -INSTAR_ERR_BAD_ARGS;
        bs->writable = !open_readonly && (boot->devices[bs->file].flags & INSTAR_DEV_WRITE);
        bs->meta_only = open_meta_only;
        if (g->node_key[i] > INSTAR_KEY_MAX ||
            (g->node_key[i] && g->keys[g->node_key[i] - 1].len > INSTAR_KEY_BYTES))
            return -INSTAR_ERR_BAD_ARGS;
        bs->key = g->node_key[i] ? &g->keys[g->node_key[i] - 1] : NULL;
        bs->seed = g->seed;
        /* A backing node comes after its overlay: no loops by construction. */
        if (in->backing != INSTAR_NO_NODE && (in->backing <= i || in->backing >= n))
            return -INSTAR_ERR_BAD_ARGS;
        bs->drv_opts = in->driver >> INSTAR_DRV_OPT_SHIFT;
        /* A window (raw's offset/size) is a raw node's alone; a zeroed one is the whole file. */
        bs->window = g->window[i];
        if (in->driver != INSTAR_DRV_RAW && (bs->window.offset || bs->window.has_size))
            return -INSTAR_ERR_BAD_ARGS;
        if (bs->window.has_size > 1)
            return -INSTAR_ERR_BAD_ARGS;
        if (in->driver == INSTAR_DRV_RAW)
            bs->drv = &gbs_drv_raw;
        else if (in->driver == INSTAR_DRV_QCOW2)
            bs->drv = &gbs_drv_qcow2;
        else if ((in->driver & INSTAR_DRV_MASK) == INSTAR_DRV_VPC && bs->drv_opts <= 2)
            bs->drv = &gbs_drv_vpc;
        else if (in->driver == INSTAR_DRV_VDI)
            bs->drv = &gbs_drv_vdi;
        else if (in->driver == INSTAR_DRV_VHDX)
            bs->drv = &gbs_drv_vhdx;
        else if (in->driver == INSTAR_DRV_QED)
            bs->drv = &gbs_drv_qed;
        else if (in->driver == INSTAR_DRV_QCOW)
            bs->drv = &gbs_drv_qcow;
        else if (in->driver == INSTAR_DRV_BOCHS)
            bs->drv = &gbs_drv_bochs;
        else if (in->driver == INSTAR_DRV_CLOOP)
            bs->drv = &gbs_drv_cloop;
        else if (in->driver == INSTAR_DRV_DMG)
            bs->drv = &gbs_drv_dmg;
        else if ((in->driver & INSTAR_DRV_MASK) == INSTAR_DRV_PARALLELS && bs->drv_opts <= 1)
            bs->drv = &gbs_drv_parallels;
        else if ((in->driver & INSTAR_DRV_MASK) == INSTAR_DRV_VMDK &&
                 bs->drv_opts <= VMDK_MAX_EXTENTS && ext_devs_ok(bs->file, bs->drv_opts))
            bs->drv = &gbs_drv_vmdk;
        else if (in->driver == INSTAR_DRV_LUKS)
            bs->drv = &gbs_drv_luks;
        else
            return -INSTAR_ERR_BAD_ARGS;
    }
    nnodes = n;
    for (i = 0; i < n; i++) {
        uint32_t b = g->nodes[i].backing;

        nodes[i].backing = b == INSTAR_NO_NODE ? NULL : &nodes[b];
    }
    /* Open bottom-up, as a chain is usable only when its base is. */
    for (i = n; i-- > 0;) {
        *failed = i;
        ret = nodes[i].drv->open(&nodes[i]);
        if (ret < 0)
            return ret;
        if (!nodes[i].supports_backing)
            nodes[i].backing = NULL;
    }
    if (g->snapshot) {
        /* The host asks only for a format that has snapshots. */
        *failed = 0;
        if (!nodes[0].drv->snapshot_load_tmp)
            return -INSTAR_ERR_BAD_ARGS;
        return nodes[0].drv->snapshot_load_tmp(&nodes[0], g->snapshot - 1);
    }
    return 0;
}

/* --- file-posix: the protocol layer --- */

/*
 * find_allocation() answers for a device this run cannot write (a
 * source: the host refuses the guest's writes to it, and holds it under
 * qemu-img's locks), kept as the contiguous regions one SEEK call
 * described from where it was asked: one call answers a walk over up to
 * SEEK_CACHE_EXTS regions, and convert's second walk asks again only
 * past them.  An answer for an offset inside a kept region is the one
 * lseek would give there (data: data = off, the same hole; a hole: the
 * same data, hole = off; after the last data: NXIO).  qemu keeps the last
 * data region likewise (bdrv_bsc_fill); a writable device is asked
 * every time.
 */

/* Where the region of a consistent answer e ends, or 0 if e is none to keep. */
static uint64_t seek_region_end(const struct instar_seek_ext *e)
{
    if (e->status == INSTAR_SEEK_NXIO)
        return UINT64_MAX;
    if (e->status != INSTAR_SEEK_OK || e->data < e->offset)
        return 0;
    if (e->data == e->offset)
        return e->hole > e->offset ? e->hole : 0;
    return e->hole == e->offset ? e->data : 0;
}

/* The kept answer whose region holds off, or NULL. */
static const struct instar_seek_ext *seek_lookup(const struct seek_cache *c, uint64_t off)
{
    uint32_t lo = 0, hi = c->n;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (c->e[mid].offset <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || off >= seek_region_end(&c->e[lo - 1]))
        return NULL;
    return &c->e[lo - 1];
}

static int64_t seek_cached(uint32_t dev, uint64_t off, uint64_t *data, uint64_t *hole, uint32_t *st)
{
    struct seek_cache *c = &seek_cache[dev % SEEK_CACHE_SLOTS];
    const struct instar_seek_ext *e;
    uint32_t n, i;
    int64_t ret;

    if (boot->devices[dev].flags & INSTAR_DEV_WRITE)
        return hc_seek(dev, off, data, hole, st);
    if (c->dev != dev) {
        c->dev = dev;
        c->n = 0;
    }
    e = seek_lookup(c, off);
    if (!e) {
        c->n = 0;
        ret = hc_seek_ext(dev, off, data, hole, st, c->e + 1, SEEK_CACHE_EXTS - 1, &n);
        if (ret < 0)
            return ret;
        c->e[0] =
            (struct instar_seek_ext){.offset = off, .data = *data, .hole = *hole, .status = *st};
        if (n > SEEK_CACHE_EXTS - 1)
            n = 0;
        /* Keep the answers that are consistent and each start where the one before ends. */
        for (i = 0; i <= n; i++) {
            uint64_t end = seek_region_end(&c->e[i]);

            if (!end)
                break;
            c->n = i + 1;
            if (i < n && c->e[i + 1].offset != end)
                break;
        }
        return ret;
    }
    *st = e->status;
    if (e->status == INSTAR_SEEK_NXIO) {
        *data = *hole = 0;
    } else if (e->data == e->offset) {
        *data = off;
        *hole = e->hole;
    } else {
        *data = e->data;
        *hole = off;
    }
    return 0;
}

int gbs_file_status(uint32_t dev, bool want_zero, uint64_t off, uint64_t bytes, uint64_t *pnum,
                    uint64_t *map)
{
    uint64_t data, hole;
    uint32_t st;
    int ret;

    *map = off;
    if (!want_zero) {
        *pnum = bytes;
        return INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID;
    }
    if (off >= gblk_size(dev)) {
        /* lseek(SEEK_DATA) past EOF: ENXIO, a trailing hole. */
        *pnum = bytes;
        return INSTAR_BS_ZERO | INSTAR_BS_OFFSET_VALID;
    }
    if (seek_cached(dev, off, &data, &hole, &st) < 0)
        st = INSTAR_SEEK_UNKNOWN;
    if (st == INSTAR_SEEK_NXIO) {
        *pnum = bytes;
        ret = INSTAR_BS_ZERO;
    } else if (st != INSTAR_SEEK_OK || (data != off && hole != off) || data < off || hole < off) {
        /* No information (or a host answer find_allocation rejects). */
        *pnum = bytes;
        ret = INSTAR_BS_DATA;
    } else if (data == off) {
        /*
         * A file opened without O_DIRECT has a request alignment of 1: no
         * rounding.  With O_DIRECT (at least 512) data ending inside a
         * sector (only at the end of the file) reaches the end of it,
         * which the caller's bytes (up to the length in sectors) cap.
         */
        uint64_t n = hole - off;

        if ((gblk_flags(dev) & INSTAR_DEV_DIRECT) && (n & 511))
            n = n > UINT64_MAX - 511 ? bytes : (n + 511) & ~(uint64_t)511;
        *pnum = n < bytes ? n : bytes;
        if (*pnum == 0)
            *pnum = bytes;
        ret = INSTAR_BS_DATA;
    } else {
        *pnum = data - off < bytes ? data - off : bytes;
        ret = INSTAR_BS_ZERO;
    }
    return ret | INSTAR_BS_OFFSET_VALID;
}

/* bdrv_co_block_status() of a file node: the file's own length and EOF. */
static int file_block_status(uint32_t dev, bool want_zero, uint64_t off, uint64_t bytes,
                             uint64_t *pnum, uint64_t *map)
{
    uint64_t total = gbs_dev_length(dev);
    int ret;

    *map = off;
    if (off >= total) {
        *pnum = 0;
        return INSTAR_BS_EOF;
    }
    if (bytes == 0) {
        *pnum = 0;
        return 0;
    }
    if (total - off < bytes)
        bytes = total - off;
    ret = gbs_file_status(dev, want_zero, off, bytes, pnum, map);
    if (ret & (INSTAR_BS_DATA | INSTAR_BS_ZERO))
        ret |= INSTAR_BS_ALLOCATED;
    if (off + *pnum == total)
        ret |= INSTAR_BS_EOF;
    return ret;
}

/* --- bdrv_co_block_status --- */

int gbs_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes, uint64_t *pnum,
                     uint64_t *map, uint32_t *dev)
{
    uint64_t total = bs->total, lmap = 0;
    uint32_t ldev = INSTAR_NO_NODE;
    int ret;

    *pnum = 0;
    if (off >= total) {
        ret = INSTAR_BS_EOF;
        goto out;
    }
    if (bytes == 0) {
        ret = 0;
        goto out;
    }
    if (total - off < bytes)
        bytes = total - off;

    ret = bs->drv->block_status(bs, want_zero, off, bytes, pnum, &lmap, &ldev);
    if (ret < 0)
        return ret;
    if (*pnum == 0 || *pnum > bytes)
        *pnum = bytes; /* a driver bug; never loop on it */

    if (ret & INSTAR_BS_RAW) {
        /* A raw node defers to its file. */
        uint64_t n = *pnum;

        ret = file_block_status(ldev, want_zero, lmap, n, pnum, &lmap);
        if (*pnum == 0 || *pnum > n)
            *pnum = n;
        goto out_eof;
    }

    if (ret & (INSTAR_BS_DATA | INSTAR_BS_ZERO)) {
        ret |= INSTAR_BS_ALLOCATED;
    } else if (bs->supports_backing) {
        if (!bs->backing)
            ret |= INSTAR_BS_ZERO;
        else if (want_zero && off >= bs->backing->total)
            ret |= INSTAR_BS_ZERO;
    }

    if (want_zero && (ret & INSTAR_BS_RECURSE) && (ret & INSTAR_BS_DATA) &&
        !(ret & INSTAR_BS_ZERO) && (ret & INSTAR_BS_OFFSET_VALID)) {
        uint64_t fpnum, fmap;
        int ret2 = file_block_status(ldev, want_zero, lmap, *pnum, &fpnum, &fmap);

        if (ret2 >= 0) {
            if ((ret2 & INSTAR_BS_EOF) && (!fpnum || (ret2 & INSTAR_BS_ZERO))) {
                ret |= INSTAR_BS_ZERO;
            } else {
                *pnum = fpnum;
                ret |= ret2 & INSTAR_BS_ZERO;
            }
        }
        ret &= ~INSTAR_BS_RECURSE;
    }

out_eof:
    if (off + *pnum == total)
        ret |= INSTAR_BS_EOF;
out:
    if (map)
        *map = lmap;
    if (dev)
        *dev = ldev;
    return ret;
}

/* bdrv_co_common_block_status_above(bs, NULL, ...) */
static int block_status_above(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                              uint64_t *pnum, uint64_t *map, uint32_t *dev, unsigned *depth)
{
    struct gbs *p;
    uint64_t eof = 0;
    unsigned d = 0;
    int ret;

    ret = gbs_block_status(bs, want_zero, off, bytes, pnum, map, dev);
    d++;
    if (ret < 0 || *pnum == 0 || (ret & INSTAR_BS_ALLOCATED) || !bs->backing)
        goto done;
    if (ret & INSTAR_BS_EOF)
        eof = off + *pnum;
    bytes = *pnum;
    for (p = bs->backing; p; p = p->backing) {
        ret = gbs_block_status(p, want_zero, off, bytes, pnum, map, dev);
        d++;
        if (ret < 0)
            goto done;
        if (*pnum == 0) {
            /* Past the end of a shorter backing node: zeros, allocated here. */
            *pnum = bytes;
            if (dev)
                *dev = INSTAR_NO_NODE;
            ret = INSTAR_BS_ZERO | INSTAR_BS_ALLOCATED;
            break;
        }
        if (ret & INSTAR_BS_ALLOCATED) {
            ret &= ~INSTAR_BS_EOF;
            break;
        }
        bytes = *pnum;
    }
    if (off + *pnum == eof)
        ret |= INSTAR_BS_EOF;
done:
    if (depth)
        *depth = d;
    return ret;
}

int gbs_block_status_above(struct gbs *bs, uint64_t off, uint64_t bytes, uint64_t *pnum,
                           uint64_t *map, uint32_t *dev, unsigned *depth)
{
    return block_status_above(bs, true, off, bytes, pnum, map, dev, depth);
}

int gbs_is_zero_fast(struct gbs *bs, uint64_t off, uint64_t bytes)
{
    uint64_t pnum = 0;
    int ret;

    if (!bytes)
        return 1;
    ret = block_status_above(bs, false, off, bytes, &pnum, NULL, NULL, NULL);
    if (ret < 0)
        return ret;
    return pnum == bytes && (ret & INSTAR_BS_ZERO);
}

/* --- reads --- */

int gbs_data_range(struct gbs *bs, uint64_t off, uint64_t bytes, uint64_t *pnum, uint64_t *map,
                   uint32_t *dev)
{
    uint64_t end;
    int ret;

    if (!bs->drv->data_range || bytes == 0 || __builtin_add_overflow(off, bytes, &end) ||
        end > bs->total)
        return 0;
    ret = bs->drv->data_range(bs, off, bytes, pnum, map, dev);
    if (ret == 1 && (*pnum == 0 || *pnum > bytes))
        return 0;
    return ret;
}

int gbs_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    uint8_t *p = buf;
    uint64_t end;

    if (ovf_add_u64(off, len, &end))
        return -GBS_EINVAL;
    if (off >= bs->total) {
        memset(p, 0, len);
        return 0;
    }
    if (end > bs->total) {
        size_t in = (size_t)(bs->total - off);

        memset(p + in, 0, len - in);
        len = in;
    }
    return len ? bs->drv->pread(bs, off, p, len) : 0;
}

int gbs_pread_cow(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    uint64_t end;

    if (ovf_add_u64(off, len, &end))
        return -GBS_EINVAL;
    return len ? bs->drv->pread(bs, off, buf, len) : 0;
}

/* --- writes --- */

int gbs_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    uint64_t end;

    if (!bs->writable || !bs->drv->pwrite)
        return -GBS_EACCES;
    if (ovf_add_u64(off, len, &end) || end > bs->total)
        return -GBS_EIO;
    return len ? bs->drv->pwrite(bs, off, buf, len) : 0;
}

/*
 * bdrv_co_do_pwrite_zeroes(): the request split at the driver's zero
 * alignment (an unaligned head alone, then the aligned bulk, then the
 * tail), each part through the driver's hook, and where that answers
 * -ENOTSUP, zeros written through the driver (at most 16 MiB at a time,
 * MAX_BOUNCE_BUFFER).
 */
int gbs_pwrite_zeroes(struct gbs *bs, uint64_t off, uint64_t bytes, uint32_t flags)
{
    uint64_t align = bs->zero_align ? bs->zero_align : 1, head, tail, end;
    const uint64_t max_transfer = 16u << 20;
    uint8_t *zeros = NULL;
    int ret = 0;

    if (!bs->writable || !bs->drv->pwrite)
        return -GBS_EACCES;
    if (ovf_add_u64(off, bytes, &end) || end > (bs->total + 511) / 512 * 512)
        return -GBS_EIO;
    head = off % align;
    tail = end % align;
    while (bytes > 0 && ret == 0) {
        uint64_t num = bytes;

        if (head) {
            num = align - head;
            if (num > bytes)
                num = bytes;
            if (num > max_transfer)
                num = max_transfer;
            head = (head + num) % align;
        } else if (tail && num > align) {
            num -= tail;
        }
        ret = bs->drv->pwrite_zeroes ? bs->drv->pwrite_zeroes(bs, off, num, flags) : -GBS_ENOTSUP;
        if (ret == -GBS_ENOTSUP) {
            if (num > max_transfer)
                num = max_transfer;
            if (!zeros) {
                zeros = calloc(1, (size_t)max_transfer);
                if (!zeros)
                    return -GBS_ENOMEM;
            }
            ret = bs->drv->pwrite(bs, off, zeros, (size_t)num);
        }
        off += num;
        bytes -= num;
    }
    free(zeros);
    return ret;
}

int gbs_flush(struct gbs *bs)
{
    return bs->writable && bs->drv->flush ? bs->drv->flush(bs) : 0;
}

int gbs_close(struct gbs *bs)
{
    return bs->writable && bs->drv->close ? bs->drv->close(bs) : 0;
}

/* --- raw --- */

/*
 * raw_open() and raw_getlength(): the file's length past the window's
 * offset (none when the offset lies past the end), at most its size.
 * The host checked the options against the file as raw_apply_options()
 * does; these bounds hold whatever it sent.
 */
static int raw_open(struct gbs *bs)
{
    uint64_t len = gbs_dev_length(bs->file), off = bs->window.offset, n;

    n = len > off ? len - off : 0;
    if (bs->window.has_size && bs->window.size < n)
        n = bs->window.size;
    /* bdrv_getlength(): whole sectors (the file's are; an odd offset leaves a part). */
    bs->total = n > UINT64_MAX - 511 ? n & ~511ull : (n + 511) & ~511ull;
    bs->supports_backing = false;
    return 0;
}

/*
 * raw_adjust_offset(): a node offset (inside bs->total, which the
 * generic layer checked) moved into the file, or -GBS_EINVAL.
 */
static int raw_file_offset(const struct gbs *bs, uint64_t off, uint64_t *file_off)
{
    return ovf_add_u64(off, bs->window.offset, file_off) ? -GBS_EINVAL : 0;
}

static int raw_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                            uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    (void)want_zero;
    if (raw_file_offset(bs, off, map) < 0)
        return -GBS_EINVAL;
    *pnum = bytes;
    *dev = bs->file;
    return INSTAR_BS_RAW | INSTAR_BS_OFFSET_VALID;
}

static int raw_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    uint64_t fo;

    if (raw_file_offset(bs, off, &fo) < 0)
        return -GBS_EINVAL;
    return gblk_pread_direct(bs->file, fo, buf, len) < 0 ? -GBS_EIO : 0;
}

static int raw_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    uint64_t fo;

    if (raw_file_offset(bs, off, &fo) < 0)
        return -GBS_EINVAL;
    return gdev_pwrite(bs->file, fo, buf, len) < 0 ? -GBS_EIO : 0;
}

static int raw_flush(struct gbs *bs)
{
    return gdev_flush(bs->file) < 0 ? -GBS_EIO : 0;
}

/*
 * file-posix's write_zeroes under raw: with MAY_UNMAP a hole where the
 * file system punches one (else zeros), without it allocated zeros.
 */
static int raw_pwrite_zeroes(struct gbs *bs, uint64_t off, uint64_t bytes, uint32_t flags)
{
    if (raw_file_offset(bs, off, &off) < 0)
        return -GBS_EINVAL;
    return gdev_zero(bs->file, off, bytes,
                     (flags & GBS_ZERO_MAY_UNMAP) ? 0 : INSTAR_ZERO_ALLOCATE) < 0
               ? -GBS_EIO
               : 0;
}

const struct gbs_driver gbs_drv_raw = {
    .name = "raw",
    .open = raw_open,
    .block_status = raw_block_status,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .flush = raw_flush,
};

void gbs_send(uint32_t op, uint32_t status, uint32_t errnum, uint64_t offset, uint32_t image,
              uint32_t flags)
{
    struct instar_data_result *r;
    struct rbuf rb;

    greport_flush();
    if (rbuf_init(&rb, sizeof(*r)) < 0)
        result_error(op, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    r = rbuf_at(&rb, 0);
    r->status = status;
    /*
     * The layers above the host calls report a failed write as EIO; when
     * the host's file system was full, qemu-img names that instead.
     */
    if (status == INSTAR_DATA_EWRITE_AT && errnum == GBS_EIO &&
        hc_last_write_error() == INSTAR_HC_ENOSPC)
        errnum = GBS_ENOSPC;
    r->errnum = errnum;
    r->offset = offset;
    r->image = image;
    r->flags = flags;
    r->corrupt_code = gbs_first_corruption.code;
    memcpy(r->corrupt_args, gbs_first_corruption.args, sizeof(r->corrupt_args));
    rbuf_send(&rb, op, 0);
}

void gbs_open_or_fail(uint32_t op, const struct instar_graph *g)
{
    uint32_t failed;
    int ret = gbs_open_graph(g, &failed);

    /*
     * A key that unlocks no key slot: err_args[3] names the node, so the
     * host can say "Could not open backing file: " for a backing file's.
     */
    if (ret == -INSTAR_ERR_LUKS_PASSWORD) {
        uint64_t args[4] = {0, 0, 0, failed};

        result_error(op, -ret, args, NULL, 0);
    }
    if (ret < 0)
        result_error(op, -ret, NULL, NULL, 0);
}
