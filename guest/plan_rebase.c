/*
 * The rebase planner: img_rebase() over the block layer.
 *
 * Safe mode walks node top in steps of at most IO_BUF_SIZE as qemu-img
 * does: a range top allocates is skipped; otherwise the old backing chain
 * and the new one are read (zeros past the end of each, and for no new
 * backing), compared sector by sector as compare_buffers() does, and each
 * differing run is written into top (blk_pwrite through the qcow2 write
 * path, or blk_pwrite_zeroes where the old chain ends), so that top reads
 * the same over either chain.  Then the header names the new backing file.
 *
 * Order for crash safety: the data, then a flush of top's cached L2 and
 * refcount blocks and of the file, and only then the header (one write of
 * the first cluster).  qemu-img writes the header before its cached
 * metadata reaches the file at close; the bytes that result are the same,
 * and a crash at any write leaves an image that reads as before over the
 * old chain, or over the new one once the header names it.
 */
#include "bdrv.h"

#define IO_BUF_SIZE (2u << 20)
#define SECTOR      512u

static struct instar_rebase_args a;

/* qemu's compare_buffers(): whether the first sector differs; *pnum sectors alike in that. */
static bool compare_buffers(const uint8_t *b1, const uint8_t *b2, uint64_t bytes, uint64_t *pnum)
{
    uint64_t i = bytes < SECTOR ? bytes : SECTOR;
    bool res = memcmp(b1, b2, (size_t)i) != 0;

    while (i < bytes) {
        uint64_t len = bytes - i < SECTOR ? bytes - i : SECTOR;

        if ((memcmp(b1 + i, b2 + i, (size_t)len) != 0) != res)
            break;
        i += len;
    }
    *pnum = i;
    return res;
}

/*
 * bdrv_is_allocated_above(bs, base, include_base = false): 1 when a node
 * from bs down to (not including) base allocates [off, off + *pnum),
 * 0 when none does; *pnum 0 at the end of bs.  Or -errno.
 */
static int allocated_above(struct gbs *bs, struct gbs *base, uint64_t off, uint64_t bytes,
                           uint64_t *pnum)
{
    struct gbs *p;
    int ret;

    if (bs == base) {
        *pnum = bytes;
        return 0;
    }
    ret = gbs_block_status(bs, false, off, bytes, pnum, NULL, NULL);
    if (ret < 0)
        return ret;
    if (*pnum == 0 || (ret & INSTAR_BS_ALLOCATED))
        return (ret & INSTAR_BS_ALLOCATED) ? 1 : 0;
    bytes = *pnum;
    for (p = bs->backing; p && p != base; p = p->backing) {
        ret = gbs_block_status(p, false, off, bytes, pnum, NULL, NULL);
        if (ret < 0)
            return ret;
        if (*pnum == 0) {
            /* Past the end of a short layer: zeros, allocated there. */
            *pnum = bytes;
            return 1;
        }
        if (ret & INSTAR_BS_ALLOCATED)
            return 1;
        bytes = *pnum;
    }
    return 0;
}

/*
 * [off, off + n) where the old chain reads as zeros (block status says
 * so): each run of it where the new chain reads as zeros too is alike;
 * where the new chain's data is one plain range of a file, the host finds
 * the sectors that are not zero (INSTAR_HC_SCAN with -S 1: the runs
 * compare_buffers() finds against zeros), and the old chain's zeros are
 * written there (into a qcow2 top's clusters by the host,
 * INSTAR_ZERO_DATA), without the new data or the zeros entering guest
 * RAM.  A differing run cannot span a run that is alike, so the
 * writes are those of the loop's.  Returns 1 when the range is done, 0
 * to read and compare it the ordinary way (nothing written then), or
 * ends the run on a failure.
 */
/* gbs_qcow2_pwrite_from()'s data: the old chain's zeros, written as data. */
static int zero_data(void *opaque, uint64_t host, uint64_t done, uint64_t bytes)
{
    const struct gbs *top = opaque;

    (void)done;
    return hc_zero(top->data, host, bytes, INSTAR_ZERO_DATA) < 0 ? -GBS_EIO : 0;
}

__attribute__((noreturn)) static void finish(struct gbs *top, uint32_t status, int err,
                                             uint64_t off, uint32_t image);

static int zero_old_range(struct gbs *top, struct gbs *nw, uint64_t off, uint64_t n,
                          const uint8_t *zeros)
{
    static uint32_t runs[IO_BUF_SIZE / SECTOR];
    uint64_t o, pnum, map, end, nruns, i;
    uint32_t dev;
    int ret;

    /* First only look: the range is taken over only when all of it can be. */
    for (o = off; o < off + n; o += pnum) {
        ret = gbs_block_status_above(nw, o, off + n - o, &pnum, &map, &dev, NULL);
        if (ret < 0 || pnum == 0)
            return 0;
        if (ret & INSTAR_BS_ZERO)
            continue;
        if ((ret & (INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID)) !=
                (INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID) ||
            dev == INSTAR_NO_NODE || pnum % SECTOR || __builtin_add_overflow(map, pnum, &end) ||
            end > gblk_size(dev))
            return 0;
    }
    for (o = off; o < off + n; o += pnum) {
        uint64_t at;

        ret = gbs_block_status_above(nw, o, off + n - o, &pnum, &map, &dev, NULL);
        if (ret < 0)
            finish(top, INSTAR_DATA_EREAD, ret, o, 2);
        if (ret & INSTAR_BS_ZERO)
            continue;
        if (hc_scan(dev, map, pnum, 1, 1, o / SECTOR, runs, sizeof(runs) / sizeof(runs[0]),
                    &nruns) < 0 ||
            nruns > sizeof(runs) / sizeof(runs[0]))
            finish(top, INSTAR_DATA_EREAD, -GBS_EIO, o, 2);
        for (i = 0, at = o; i < nruns; i++) {
            uint64_t len = (uint64_t)(runs[i] >> 1) * SECTOR;

            if (len == 0 || len > o + pnum - at)
                finish(top, INSTAR_DATA_EREAD, -GBS_EIO, o, 2);
            if (runs[i] & 1) {
                /* A qcow2 top's clusters get zero bytes from the host, not from guest RAM. */
                ret = gbs_qcow2_pwrite_from(top, at, len, zero_data, top, false);
                if (ret == -GBS_EACCES)
                    ret = gbs_pwrite(top, at, zeros, (size_t)len);
                if (ret < 0)
                    finish(top, INSTAR_DATA_EWRITE_AT, ret, at, 0);
            }
            at += len;
        }
        if (at != o + pnum)
            finish(top, INSTAR_DATA_EREAD, -GBS_EIO, o, 2);
    }
    return 1;
}

/* Whether gbs_close(top) ran (change_backing closes before the header). */
static bool closed;

/* blk_unref() of top: its cached metadata and bitmaps reach the file, then the result. */
__attribute__((noreturn)) static void finish(struct gbs *top, uint32_t status, int err,
                                             uint64_t off, uint32_t image)
{
    int r = gbs_flush(top);

    if (r == 0 && !closed)
        r = gbs_close(top); /* persistent bitmaps stored again, as at qemu's close */
    if (r < 0 && status == INSTAR_DATA_OK) {
        status = INSTAR_DATA_EWRITE_AT;
        err = r;
    }
    gbs_send(INSTAR_OP_REBASE, status, (uint32_t)(err < 0 ? -err : err), off, image, 0);
}

/* img_rebase()'s loop: top reads the same over the new chain as over the old. */
static void copy_differences(struct gbs *top, struct gbs *old, struct gbs *nw)
{
    uint64_t size = top->total, old_size = old ? old->total : 0, new_size = nw ? nw->total : 0;
    uint64_t off, n, steps;
    uint8_t *buf_old = malloc(IO_BUF_SIZE), *buf_new = malloc(IO_BUF_SIZE), *zeros = NULL;
    int ret;

    if (!buf_old || !buf_new)
        result_error(INSTAR_OP_REBASE, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    steps = size ? size / (size < IO_BUF_SIZE ? size : IO_BUF_SIZE) : 1;

    for (off = 0; off < size; off += n) {
        bool old_is_zero = false;
        uint64_t written = 0, pnum;

        n = size - off < IO_BUF_SIZE ? size - off : IO_BUF_SIZE;
        ret = gbs_block_status(top, false, off, n, &pnum, NULL, NULL);
        if (ret < 0)
            finish(top, INSTAR_DATA_EMETA, ret, off, 0);
        n = pnum;
        if (ret & INSTAR_BS_ALLOCATED)
            continue;

        if (a.flags & INSTAR_REBASE_PREFIX) {
            uint64_t bytes = n;

            /* Unchanged since the new backing file (a node of the old chain): alike. */
            ret = allocated_above(old, nw, off, n, &n);
            if (ret < 0)
                finish(top, INSTAR_DATA_EMETA, ret, off, 0);
            if (!ret && n)
                continue;
            /* Past the end of the old chain: zeros now, kept as zeros. */
            if (!n)
                n = bytes;
        }

        /* The old chain reads as zeros there (rebasing onto a backing file that has data). */
        if (nw && off + n <= old_size && off + n <= new_size &&
            gbs_is_zero_fast(old, off, n) == 1) {
            if (!zeros) {
                zeros = malloc(IO_BUF_SIZE);
                if (zeros)
                    memset(zeros, 0, IO_BUF_SIZE);
            }
            if (zeros && zero_old_range(top, nw, off, n, zeros)) {
                if (a.flags & INSTAR_REBASE_PROGRESS)
                    hc_progress(INSTAR_PROGRESS_RECIP, 100, steps);
                continue;
            }
        }
        if (off >= old_size) {
            memset(buf_old, 0, (size_t)n);
            old_is_zero = true;
        } else {
            if (off + n > old_size)
                n = old_size - off;
            ret = gbs_pread(old, off, buf_old, (size_t)n);
            if (ret < 0)
                finish(top, INSTAR_DATA_EREAD, ret, off, 1);
        }
        if (!nw || off >= new_size) {
            memset(buf_new, 0, (size_t)n);
        } else {
            if (off + n > new_size)
                n = new_size - off;
            ret = gbs_pread(nw, off, buf_new, (size_t)n);
            if (ret < 0)
                finish(top, INSTAR_DATA_EREAD, ret, off, 2);
        }

        while (written < n) {
            if (compare_buffers(buf_old + written, buf_new + written, n - written, &pnum)) {
                if (old_is_zero)
                    ret = gbs_pwrite_zeroes(top, off + written, pnum, 0);
                else
                    ret = gbs_pwrite(top, off + written, buf_old + written, (size_t)pnum);
                if (ret < 0)
                    finish(top, INSTAR_DATA_EWRITE_AT, ret, off + written, 0);
            }
            written += pnum;
        }
        if (a.flags & INSTAR_REBASE_PROGRESS)
            hc_progress(INSTAR_PROGRESS_RECIP, 100, steps);
    }
    free(buf_old);
    free(buf_new);
    free(zeros);
}

/*
 * bdrv_change_backing_file(top, name, fmt, require = name given): the
 * block layer's checks, then qcow2's.  Returns 0 or -errno.
 */
static int change_backing(struct gbs *top)
{
    const char *name = (a.flags & INSTAR_REBASE_NAME) ? a.name : NULL;
    const char *fmt = (a.flags & INSTAR_REBASE_FMT) ? a.fmt : NULL;
    bool too_long = a.flags & INSTAR_REBASE_NAME_LONG;
    int ret;

    if (too_long)
        name = "";
    if (fmt && !name)
        return -GBS_EINVAL;
    if (name && !fmt)
        return -GBS_EINVAL;
    if (top->drv != &gbs_drv_qcow2 && top->drv != &gbs_drv_qed)
        return -GBS_ENOTSUP;
    if (too_long && (top->drv != &gbs_drv_qed || !(a.flags & INSTAR_REBASE_NAME_DEV)))
        return -GBS_EINVAL;
    if (too_long) {
        /* qed takes a name as long as its header clusters hold: read it whole. */
        uint64_t len = gblk_size(a.name_dev);
        char *long_name;

        if (len == 0 || len > INSTAR_REBASE_LONG_NAME_MAX)
            result_error(INSTAR_OP_REBASE, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
        long_name = malloc(len + 1);
        if (!long_name)
            return -GBS_ENOMEM;
        if (gdev_pread(a.name_dev, 0, long_name, len) < 0)
            return -GBS_EIO;
        long_name[len] = 0;
        if (strlen(long_name) != len)
            result_error(INSTAR_OP_REBASE, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
        name = long_name;
    }
    /*
     * The data the new chain relies on reaches the file before the header
     * names it.  The persistent bitmaps are stored first too (qemu stores
     * them at close, after its header update, rewriting the header once
     * more with the new name): the same header and clusters in the end.
     */
    ret = gbs_flush(top);
    if (ret == 0)
        ret = gbs_close(top);
    closed = true;
    if (ret < 0)
        return ret;
    if (top->drv == &gbs_drv_qed)
        return gbs_qed_change_backing(top, name, fmt);
    return gbs_qcow2_change_backing(top, name, fmt);
}

void plan_rebase(void)
{
    struct gbs *top, *old = NULL, *nw = NULL;
    int ret;

    a = boot->args.rebase;
    a.name[INSTAR_REBASE_NAME_MAX - 1] = 0;
    a.fmt[INSTAR_REBASE_FMT_MAX - 1] = 0;
    if (!(a.flags & INSTAR_REBASE_NAME) &&
        (a.flags & (INSTAR_REBASE_FMT | INSTAR_REBASE_NAME_LONG)))
        result_error(INSTAR_OP_REBASE, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    gbs_open_or_fail(INSTAR_OP_REBASE, &a.g);
    top = gbs_node(a.top);
    if (!top || !top->writable)
        result_error(INSTAR_OP_REBASE, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    if (a.old != INSTAR_NO_NODE) {
        old = gbs_node(a.old);
        if (!old || top->backing != old)
            result_error(INSTAR_OP_REBASE, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    } else if (top->backing && (a.flags & INSTAR_REBASE_SAFE)) {
        result_error(INSTAR_OP_REBASE, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    }
    if (a.new_ != INSTAR_NO_NODE) {
        nw = gbs_node(a.new_);
        if (!nw || nw == top)
            result_error(INSTAR_OP_REBASE, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    }
    if (a.flags & INSTAR_REBASE_PREFIX) {
        struct gbs *p = old;

        while (p && p != nw)
            p = p->backing;
        if (!p || !nw)
            result_error(INSTAR_OP_REBASE, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    }

    if (a.flags & INSTAR_REBASE_SAFE)
        copy_differences(top, old, nw);
    ret = change_backing(top);
    if (ret < 0)
        finish(top, INSTAR_DATA_EBACKING, ret, 0, 0);
    finish(top, INSTAR_DATA_OK, 0, 0, 0);
}
