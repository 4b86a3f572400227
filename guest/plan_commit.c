/*
 * The commit planner: qemu-img commit runs an active commit job
 * (commit_active_start, block/mirror.c) from the top image into a base
 * of its backing chain, then, unless the top is to be dropped, empties
 * the top (bdrv_make_empty).
 *
 * The job as mirror_run() does it, its requests run one at a time:
 * mirror_dirty_init() marks every granularity chunk (the base's cluster
 * size, 4 KiB..64 KiB; 64 KiB for raw and parallels) that is allocated anywhere from
 * the top down to the node above the base (bdrv_is_allocated_above with
 * include_base); mirror_iteration() takes the consecutive dirty chunks
 * from the first one (up to the 16 MiB buffer), asks the block status of
 * the whole chain from there, and copies data (at most 1 MiB a request),
 * or, where the range reads as zeros and covers whole base clusters,
 * writes zeros with MAY_UNMAP; then the base is flushed.  qemu runs up to
 * 16 requests at once, so the order in which they reach the base is a
 * race there; instar runs each window of requests in the order qemu's
 * usually complete (docs/differences.md).
 */
#include "bdrv.h"

#define MIRROR_BUF_SIZE (16ULL << 20) /* DEFAULT_MIRROR_BUF_SIZE */
#define MAX_IO_BYTES    (1ULL << 20)  /* MAX(buf_size / MAX_IN_FLIGHT, MAX_IO_BYTES) */
#define MAX_IN_FLIGHT   16

static struct instar_commit_args a;

static uint8_t *dirty;
static uint64_t nchunks, ndirty;

static bool is_dirty(uint64_t c)
{
    return c < nchunks && (dirty[c / 8] >> (c % 8)) & 1;
}

static void set_dirty(uint64_t c, bool on)
{
    if (c >= nchunks || is_dirty(c) == on)
        return;
    dirty[c / 8] ^= (uint8_t)(1u << (c % 8));
    ndirty += on ? 1 : (uint64_t)-1;
}

__attribute__((noreturn)) static void fail(uint32_t status, int err, uint64_t off, uint32_t flags)
{
    gbs_send(INSTAR_OP_COMMIT, status, (uint32_t)(err < 0 ? -err : err), off, 0, flags);
}

/*
 * bdrv_is_allocated_above(top, overlay, include_base = true): whether
 * [off, off + bytes) is allocated in a node from top down to overlay; a
 * node shorter than the range counts as allocated (zeros) past its end.
 */
static int allocated_above(struct gbs *top, struct gbs *overlay, uint64_t off, uint64_t bytes,
                           uint64_t *pnum)
{
    struct gbs *p = top;

    for (;;) {
        uint64_t map = 0;
        uint32_t dev = 0;
        int ret = gbs_block_status(p, false, off, bytes, pnum, &map, &dev);

        if (ret < 0)
            return ret;
        if (*pnum == 0) {
            *pnum = bytes;
            return p != top;
        }
        if (ret & INSTAR_BS_ALLOCATED)
            return 1;
        bytes = *pnum;
        if (p == overlay || !p->backing)
            return 0;
        p = p->backing;
    }
}

/* One request of the job: a copy, or a zero write. */
struct op {
    uint64_t off, bytes;
    bool zero;
};

/* mirror_iteration()'s state between requests. */
static struct {
    uint64_t c;    /* the next chunk to look at */
    uint64_t off;  /* the next request's offset in the current run */
    uint64_t nb;   /* chunks of the current run still to cover */
    uint64_t left; /* bytes of dirty chunks not yet taken */
    bool pending;  /* next holds a request planned but not yet issued */
    struct op next;
} it;

static uint64_t total_planned;

static bool op_before(const struct op *x, const struct op *y)
{
    if (x->zero != y->zero)
        return x->zero;
    return !x->zero && x->bytes < y->bytes;
}

/*
 * The next request, as mirror_iteration() plans them: from the first dirty
 * chunk, the run of consecutive dirty ones (up to the buffer's size),
 * then the block status of the whole chain from there: data is copied at
 * most MAX_IO_BYTES at a time; a range that reads as zeros and covers
 * whole base clusters is a zero write; anything shorter than a chunk is
 * copied a chunk at a time.  Returns false when nothing is dirty.
 */
static bool next_op(struct gbs *top, uint64_t len, uint64_t gran, uint64_t tcs, struct op *o)
{
    uint64_t io = 0, map = 0;
    uint32_t dev = 0;
    int ret;

    if (it.nb == 0 || it.off >= len) {
        while (it.c < nchunks && !is_dirty(it.c))
            it.c++;
        if (it.c >= nchunks)
            return false;
        it.off = it.c * gran;
        it.nb = 1;
        while (it.nb * gran < MIRROR_BUF_SIZE && it.off + it.nb * gran < len &&
               is_dirty(it.c + it.nb))
            it.nb++;
        for (uint64_t i = 0; i < it.nb; i++)
            set_dirty(it.c + i, false);
        it.c += it.nb;
        it.left = ndirty * gran;
    }
    o->zero = false;
    ret = gbs_block_status_above(top, it.off, it.nb * gran, &io, &map, &dev, NULL);
    if (ret < 0 || (ret & INSTAR_BS_DATA)) {
        if (ret < 0)
            io = it.nb * gran;
        if (io > MAX_IO_BYTES)
            io = MAX_IO_BYTES;
    }
    io -= io % gran;
    if (io < gran) {
        io = gran;
    } else if (ret >= 0 && !(ret & INSTAR_BS_DATA)) {
        /* bdrv_round_to_clusters() of the base leaves the range as it is. */
        o->zero = !tcs || ((it.off | io) & (tcs - 1)) == 0;
    }
    if (io > len - it.off)
        io = len - it.off; /* mirror_clip_bytes() */
    if (!o->zero && io > MIRROR_BUF_SIZE)
        io = MIRROR_BUF_SIZE;
    o->off = it.off;
    o->bytes = io;
    total_planned += io;
    it.off += io;
    it.nb -= (io + gran - 1) / gran < it.nb ? (io + gran - 1) / gran : it.nb;
    return true;
}

/* copy_direct()'s source, and its data hook: the host copies the bytes into the base's file. */
struct direct {
    uint32_t src, dst;
    uint64_t map;
};

static int direct_data(void *opaque, uint64_t host, uint64_t done, uint64_t bytes)
{
    const struct direct *d = opaque;

    return hc_copy(d->src, d->map + done, d->dst, host, bytes, 0, 0, 0, 0, NULL) < 0 ? -GBS_EIO : 0;
}

/*
 * A copy request whose bytes are one plain range of one file (block
 * status through the top's chain: data at an offset, not zeros), into a
 * qcow2 base: the base maps, allocates and links its clusters as for
 * gbs_pwrite(), and the host copies the data itself, which then never
 * passes through guest RAM.  Returns 1 when done, 0 when the request
 * must be read and written here, or -errno from the write.
 */
static int copy_direct(struct gbs *top, struct gbs *base, const struct op *o)
{
    struct direct d;
    uint64_t pnum = 0, end;
    int ret;

    if (base->drv != &gbs_drv_qcow2 || gbs_qcow2_encrypted(base))
        return 0;
    ret = gbs_block_status_above(top, o->off, o->bytes, &pnum, &d.map, &d.src, NULL);
    if (ret < 0 ||
        (ret & (INSTAR_BS_DATA | INSTAR_BS_ZERO | INSTAR_BS_OFFSET_VALID)) !=
            (INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID) ||
        d.src == INSTAR_NO_NODE || pnum < o->bytes)
        return 0;
    if (__builtin_add_overflow(d.map, o->bytes, &end) || end > gblk_size(d.src))
        return 0; /* a file cut short: its tail reads as zeros, through RAM */
    d.dst = base->data;
    ret = gbs_qcow2_pwrite_from(base, o->off, o->bytes, direct_data, &d, false);
    return ret < 0 ? ret : 1;
}

/* The first failed write of a window (werr: 0 or its -errno, at werr_off). */
static int werr;
static uint64_t werr_off;

/*
 * A write to the base failed.  qemu's other requests in flight still
 * complete before the job ends with the error (mirror_run() waits for
 * them); instar lets the rest of the window run where the failure wrote
 * nothing: a streamOptimized vmdk base's refusal of an allocated grain
 * (vmdk_pwritev(), "Could not write to allocated cluster for
 * streamOptimized"), the others' grains still appended.  Any other
 * failure ends the run at once.
 */
static void write_failed(int ret, uint64_t off, bool stream)
{
    if (!stream)
        fail(INSTAR_DATA_EWRITE_AT, ret, off, 0);
    if (werr == 0) {
        werr = ret;
        werr_off = off;
    }
}

void plan_commit(void)
{
    struct gbs *top, *base, *overlay, *p;
    uint64_t len, gran, tcs = 0, off, done = 0, c;
    unsigned ctype;
    bool data_file, stream;
    uint8_t *buf;
    int ret;

    a = boot->args.commit;
    gbs_open_or_fail(INSTAR_OP_COMMIT, &a.g);
    top = gbs_node(a.top);
    if (a.flags & INSTAR_COMMIT_OPEN_ONLY) {
        /* The open repaired a dirty top and marked its bitmaps in use: the close stores them. */
        if (!top || !top->writable)
            result_error(INSTAR_OP_COMMIT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
        ret = gbs_flush(top);
        if (ret == 0)
            ret = gbs_close(top);
        if (ret < 0)
            fail(INSTAR_DATA_EWRITE_AT, ret, 0, INSTAR_DATA_COMMIT_CLOSE);
        gbs_send(INSTAR_OP_COMMIT, INSTAR_DATA_OK, 0, 0, 0, 0);
    }
    base = gbs_node(a.base);
    overlay = gbs_node(a.base_overlay);
    if (!top || !base || !overlay || !base->writable || !top->writable)
        result_error(INSTAR_OP_COMMIT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    /* base must be in top's chain, right below overlay. */
    for (p = top; p && p != overlay; p = p->backing)
        ;
    if (!p || overlay->backing != base)
        result_error(INSTAR_OP_COMMIT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);

    /* bdrv_getlength(): whole sectors.  The host grew a shorter base. */
    len = (top->total + 511) / 512 * 512;
    if ((base->total + 511) / 512 * 512 < len)
        result_error(INSTAR_OP_COMMIT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    stream = gbs_vmdk_stream(base);
    /* bdrv_get_default_bitmap_granularity() of the base. */
    gran = 65536;
    /*
     * bdrv_get_info()'s cluster size: qcow2's and qcow's clusters, a
     * sparse vmdk's grains; the other bases report none (parallels has no
     * bdrv_get_info in 7.2) and take any zero write that covers chunks.
     */
    if (gbs_qcow2_target_info(base, &tcs, &ctype, &data_file) == 0 ||
        gbs_qcow_target_info(base, &tcs) == 0 || gbs_vmdk_cluster_size(base, &tcs) == 0) {
        gran = tcs < 4096 ? 4096 : tcs;
        if (gran > 65536)
            gran = 65536;
        if (!tcs)
            gran = 65536;
    }

    /* mirror_dirty_init() */
    nchunks = (len + gran - 1) / gran;
    dirty = calloc((size_t)(nchunks / 8 + 1), 1);
    buf = malloc((size_t)MIRROR_BUF_SIZE);
    if (!dirty || !buf)
        result_error(INSTAR_OP_COMMIT, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    for (off = 0; off < len;) {
        uint64_t bytes = len - off, count = 0;

        if (bytes > 0x7fffffffULL / gran * gran)
            bytes = 0x7fffffffULL / gran * gran;
        ret = allocated_above(top, overlay, off, bytes, &count);
        if (ret < 0)
            fail(INSTAR_DATA_EBSTAT, ret, off, 0);
        if (count == 0)
            fail(INSTAR_DATA_EBSTAT, -GBS_EIO, off, 0);
        if (ret > 0)
            for (c = off / gran; c <= (off + count - 1) / gran; c++)
                set_dirty(c, true);
        off += count;
    }
    if (a.flags & INSTAR_COMMIT_PROGRESS)
        hc_progress(INSTAR_PROGRESS_ABS, 0, 1);

    /*
     * mirror_run()'s loop over mirror_iteration(): requests are planned in
     * its order and issued in windows of what qemu has in flight at once
     * (MAX_IN_FLIGHT requests, the copies within the 16 MiB buffer), and
     * the requests of a window are run in the order qemu's typically
     * reach the base: zero writes first (they read nothing), then copies
     * by size (a shorter read completes first), in issue order for equal
     * sizes.  A qcow2 base then allocates its clusters (and reuses those
     * a zero write freed) where qemu-img's usually puts them.
     */
    it.c = 0;
    it.nb = 0;
    for (;;) {
        struct op win[MAX_IN_FLIGHT];
        unsigned n = 0, i, j;
        uint64_t bufc = 0;

        while (n < MAX_IN_FLIGHT) {
            struct op o;
            uint64_t need;

            if (!it.pending && !next_op(top, len, gran, tcs, &it.next))
                break;
            it.pending = true;
            o = it.next;
            need = o.zero ? 0 : (o.bytes + gran - 1) / gran;
            if (n && bufc + need > MIRROR_BUF_SIZE / gran)
                break;
            bufc += need;
            win[n++] = o;
            it.pending = false;
        }
        if (n == 0)
            break;
        /* Insertion sort: stable, zero writes first, then copies by size. */
        for (i = 1; i < n; i++) {
            struct op o = win[i];

            for (j = i; j > 0 && op_before(&o, &win[j - 1]); j--)
                win[j] = win[j - 1];
            win[j] = o;
        }
        for (i = 0; i < n; i++) {
            const struct op *o = &win[i];

            if (o->zero) {
                /* MIRROR_METHOD_ZERO (DISCARD never arises: see docs/differences.md) */
                ret = gbs_pwrite_zeroes(base, o->off, o->bytes, GBS_ZERO_MAY_UNMAP);
                if (ret < 0)
                    write_failed(ret, o->off, stream);
            } else if ((ret = copy_direct(top, base, o)) != 0) {
                if (ret < 0)
                    write_failed(ret, o->off, stream);
            } else {
                ret = gbs_pread(top, o->off, buf, (size_t)o->bytes);
                if (ret < 0)
                    fail(INSTAR_DATA_EREAD_AT, ret, o->off, 0);
                ret = gbs_pwrite(base, o->off, buf, (size_t)o->bytes);
                if (ret < 0)
                    write_failed(ret, o->off, stream);
            }
            if (ret < 0)
                continue;
            done += o->bytes;
            if (a.flags & INSTAR_COMMIT_PROGRESS)
                hc_progress(INSTAR_PROGRESS_ABS, done, done + it.left + (total_planned - done));
        }
        /* The window's requests all ended: the job ends with the first one's failure. */
        if (werr < 0)
            fail(INSTAR_DATA_EWRITE_AT, werr, werr_off, 0);
    }
    /* mirror_flush(): the base is stable before the top is touched. */
    ret = gbs_flush(base);
    if (ret < 0)
        fail(INSTAR_DATA_EWRITE_AT, ret, 0, 0);
    /*
     * mirror_exit_common(): the base is reopened read-only, which stores
     * its persistent bitmaps (the job's writes recorded in the enabled
     * ones) before the top is touched.
     */
    ret = gbs_close(base);
    if (ret < 0)
        fail(INSTAR_DATA_EWRITE_AT, ret, 0, 0);

    /* img_commit(): blk_make_empty() of the top, -ENOTSUP ignored. */
    if (!(a.flags & INSTAR_COMMIT_DROP)) {
        ret = top->drv == &gbs_drv_qcow ? gbs_qcow_make_empty(top) : gbs_qcow2_make_empty(top);
        if (ret < 0 &&
            !(ret == -GBS_ENOTSUP && top->drv != &gbs_drv_qcow2 && top->drv != &gbs_drv_qcow)) {
            (void)gbs_flush(top);
            (void)gbs_close(top);
            fail(INSTAR_DATA_EWRITE_AT, ret, 0, INSTAR_DATA_COMMIT_EMPTY);
        }
    }
    /* blk_unref() of the top: its bitmaps stored again. */
    ret = gbs_flush(top);
    if (ret == 0)
        ret = gbs_close(top);
    if (ret < 0)
        fail(INSTAR_DATA_EWRITE_AT, ret, 0, INSTAR_DATA_COMMIT_CLOSE);
    gbs_send(INSTAR_OP_COMMIT, INSTAR_DATA_OK, 0, 0, 0, 0);
}
