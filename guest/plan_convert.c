/*
 * The convert planner: qemu-img convert's copy loop (convert_do_copy,
 * convert_iteration_sectors, convert_co_write) over the block layer,
 * run in order (the result is that of qemu-img's in-order writes).
 *
 * Where a chunk of data is a plain range of a source file (raw, or an
 * uncompressed qcow2 run) and the target is raw, the guest only plans:
 * the host copies the range itself (INSTAR_HC_COPY), applying -S the way
 * convert_co_write() does.  Everything else (decoded clusters, data from
 * several layers) goes through guest RAM.  A qcow2 target is a writable
 * node of the graph (with its backing chain, for -B): its driver maps,
 * allocates and copies on write, and only the data of a plain source
 * range is put into the mapped clusters by the host (INSTAR_HC_COPY).
 */
#include "bdrv.h"
#include "codec.h"
#include "instar/sparse.h"

#include "open.h"
#include "qcow2/bitmap_store.h"

#define SECTOR 512

enum blk_status {
    BLK_DATA,
    BLK_ZERO,
    BLK_BACKING_FILE
};

#define WB_SIZE   (4u << 20) /* held-back writes to a raw target, joined (wb_add()) */
#define WB_PIECES 256

struct cv {
    const struct instar_convert_args *a;
    struct gbs *src[INSTAR_CONVERT_SRC_MAX];
    int64_t src_sectors[INSTAR_CONVERT_SRC_MAX];
    int64_t src_alignment[INSTAR_CONVERT_SRC_MAX];
    int64_t total_sectors;
    int64_t sector_next_status;
    enum blk_status status;
    /* Where the data of the current status extent lies, when it is one file range. */
    bool st_direct;
    bool st_offset_valid; /* the extent's data has a host offset (not compressed) */
    uint32_t st_dev;
    uint64_t st_map;  /* the file offset of st_start */
    int64_t st_start; /* sector the status extent starts at */
    bool has_zero_init, target_has_backing, min_sparse_on;
    int min_sparse, alignment, buf_sectors;
    uint32_t t;     /* the target device (a qcow2 target's image file) */
    struct gbs *tn; /* a qcow2 target's node, else NULL */
    bool t_crypt;   /* tn is encrypted: its data goes through guest RAM and gbs_pwrite */
    struct gbs *gn; /* another format's target node (parallels): written through gbs_pwrite */
    uint8_t *buf;
    bool salvage;
    /* -c: compressed clusters (qcow2 target) */
    bool compressed;
    bool copy_range;         /* -C, until a copy offload fails */
    bool c_data_file;        /* the target has an external data file: -ENOTSUP */
    int64_t cluster_sectors; /* of the target */
    unsigned ctype;          /* its compression_type */
    uint8_t *cbuf;           /* a padded cluster, then the compressed one */
    uint8_t *ra;             /* read ahead of a plain source range (see read_ahead()) */
    uint32_t ra_dev;
    uint64_t ra_off, ra_len;
    /* progress */
    bool progress;
    int64_t allocated_sectors, allocated_done;
    /* Writes to a raw target held back and joined (see wb_add()). */
    uint8_t *wb;
    uint64_t wb_off, wb_len;
    uint32_t wb_n;
    uint64_t chunk_off;              /* the guest offset of the chunk being written */
    uint64_t wb_piece[WB_PIECES][3]; /* each held write: offset, length, its chunk's offset */
    /* Host copies held back and made in one exit (see copy_direct()); never with wb_n. */
    uint32_t cq_n;
};

static struct instar_hc_copy cq[INSTAR_COPYV_MAX];

static struct cv S;

static int wb_flush(struct cv *s);

static __attribute__((noreturn)) void fail(uint32_t status, int err, uint64_t offset)
{
    /* The writes held back came first: one of them failing is the error. */
    wb_flush(&S);
    gbs_send(INSTAR_OP_CONVERT, status, (uint32_t)(err < 0 ? -err : err), offset, 0, 0);
}

/*
 * --salvage: one of qemu-img's warn_report() lines, streamed to the host,
 * after the corruption event that led to it if that is not out yet.
 */
static void salvage_warn(int32_t kind, int err, uint64_t offset)
{
    uint64_t args[4] = {offset, (uint64_t)(err < 0 ? -err : err), 0, 0};

    if (gbs_first_corruption.code) {
        greport(gbs_first_corruption.code, 0, gbs_first_corruption.args, NULL, 0);
        gbs_first_corruption.code = 0;
    }
    greport(kind, 0, args, NULL, 0);
}

static void select_part(struct cv *s, int64_t sector_num, int *cur, int64_t *cur_off)
{
    int64_t off = 0;
    int i;

    for (i = 0; i < (int)s->a->nsrc - 1; i++) {
        if (sector_num < off + s->src_sectors[i])
            break;
        off += s->src_sectors[i];
    }
    *cur = i;
    *cur_off = off;
}

/* convert_iteration_sectors() */
static int64_t iteration(struct cv *s, int64_t sector_num)
{
    int64_t src_cur_offset, n;
    bool post_backing_zero = false;
    int src_cur;

    select_part(s, sector_num, &src_cur, &src_cur_offset);
    n = s->total_sectors - sector_num;
    if (n > (int64_t)(0x7fffffff / SECTOR))
        n = 0x7fffffff / SECTOR; /* BDRV_REQUEST_MAX_SECTORS */
    if (s->a->target_backing_sectors >= 0) {
        if (sector_num >= s->a->target_backing_sectors)
            post_backing_zero = true;
        else if (sector_num + n > s->a->target_backing_sectors)
            n = s->a->target_backing_sectors - sector_num;
    }
    if (s->sector_next_status <= sector_num) {
        uint64_t offset = (uint64_t)(sector_num - src_cur_offset) * SECTOR, count, map = 0;
        uint32_t dev = INSTAR_NO_NODE;
        struct gbs *bs = s->src[src_cur];
        int64_t tail;
        int ret;

        for (;;) {
            if (s->target_has_backing)
                ret = gbs_block_status(bs, true, offset, (uint64_t)n * SECTOR, &count, &map, &dev);
            else
                ret = gbs_block_status_above(bs, offset, (uint64_t)n * SECTOR, &count, &map, &dev,
                                             NULL);
            if (ret >= 0)
                break;
            if (!s->salvage)
                fail(INSTAR_DATA_EBSTAT, ret, offset);
            if (n > 1) {
                n = (n + 3) / 4; /* retry on a shorter range */
                continue;
            }
            /* Just try to read the data, then. */
            salvage_warn(INSTAR_CONVERT_REC_BSTAT, ret, offset);
            ret = INSTAR_BS_DATA;
            count = SECTOR;
            dev = INSTAR_NO_NODE;
            break;
        }
        n = (int64_t)((count + SECTOR - 1) / SECTOR);
        tail = (sector_num - src_cur_offset + n) % s->src_alignment[src_cur];
        if (n > tail)
            n -= tail;
        if (ret & INSTAR_BS_ZERO)
            s->status = post_backing_zero ? BLK_BACKING_FILE : BLK_ZERO;
        else if (ret & INSTAR_BS_DATA)
            s->status = BLK_DATA;
        else
            s->status = s->target_has_backing ? BLK_BACKING_FILE : BLK_DATA;
        s->st_direct = (ret & (INSTAR_BS_DATA | INSTAR_BS_ZERO | INSTAR_BS_OFFSET_VALID)) ==
                           (INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID) &&
                       dev != INSTAR_NO_NODE;
        s->st_offset_valid = ret & INSTAR_BS_OFFSET_VALID;
        s->st_dev = dev;
        s->st_map = map;
        s->st_start = sector_num;
        s->sector_next_status = sector_num + n;
    }
    if (n > s->sector_next_status - sector_num)
        n = s->sector_next_status - sector_num;
    if (s->status == BLK_DATA && n > s->buf_sectors)
        n = s->buf_sectors;
    /* Compressed clusters are written whole: a shorter extent counts as data. */
    if (s->compressed) {
        if (n < s->cluster_sectors) {
            n = s->total_sectors - sector_num;
            if (n > s->cluster_sectors)
                n = s->cluster_sectors;
            s->status = BLK_DATA;
        } else {
            n -= n % s->cluster_sectors;
        }
    }
    return n;
}

/*
 * convert_co_read(): n sectors of the joined sources into buf.  With
 * --salvage a failed read is retried sector by sector, and a sector that
 * cannot be read is warned about and reads as zeros.
 */
static int read_sectors(struct cv *s, int64_t sector_num, int64_t nb, uint8_t *buf)
{
    uint64_t single_read_until = 0;

    while (nb > 0) {
        int64_t off, bs_sectors, n;
        uint64_t offset;
        int cur, ret;

        select_part(s, sector_num, &cur, &off);
        bs_sectors = s->src_sectors[cur];
        offset = (uint64_t)(sector_num - off) * SECTOR;
        n = nb < bs_sectors - (sector_num - off) ? nb : bs_sectors - (sector_num - off);
        if (single_read_until > offset)
            n = 1;
        ret = gbs_pread(s->src[cur], offset, buf, (size_t)n * SECTOR);
        if (ret < 0 && !s->salvage)
            return ret;
        if (ret < 0 && n > 1) {
            single_read_until = offset + (uint64_t)n * SECTOR;
            continue;
        }
        if (ret < 0) {
            salvage_warn(INSTAR_CONVERT_REC_READ, ret, offset);
            memset(buf, 0, SECTOR);
        }
        sector_num += n;
        nb -= n;
        buf += n * SECTOR;
    }
    return 0;
}

/*
 * -c reads one cluster at a time.  Where the status extent is one range
 * of a source file (the data a plain read of the node returns, as
 * copy_direct() relies on), read up to RA_MAX of it in one call and
 * serve the clusters from there: a round trip per 2 MiB, not per
 * cluster.  Returns 1 when buf holds the n sectors, 0 to read them the
 * ordinary way.
 */
#define RA_MAX (2u << 20)

static int read_ahead(struct cv *s, int64_t sector_num, int64_t n, uint8_t *buf)
{
    uint64_t off, len = (uint64_t)n * SECTOR, end, want;

    /* -c widens a short extent to a whole cluster: only a chunk inside the extent. */
    if (!s->ra || !s->st_direct || s->status != BLK_DATA || s->salvage || len > RA_MAX ||
        sector_num + n > s->sector_next_status)
        return 0;
    off = s->st_map + (uint64_t)(sector_num - s->st_start) * SECTOR;
    if (__builtin_add_overflow(off, len, &end) || end > gblk_size(s->st_dev))
        return 0; /* a file cut short: its tail reads as zeros, through the node */
    if (!(s->ra_len && s->ra_dev == s->st_dev && off >= s->ra_off &&
          end <= s->ra_off + s->ra_len)) {
        want = (uint64_t)(s->sector_next_status - sector_num) * SECTOR;
        if (want > RA_MAX)
            want = RA_MAX;
        if (want < len || want > gblk_size(s->st_dev) - off)
            want = len;
        s->ra_len = 0;
        if (gblk_pread_direct(s->st_dev, off, s->ra, (size_t)want) < 0)
            return 0; /* the ordinary read reports it */
        s->ra_dev = s->st_dev;
        s->ra_off = off;
        s->ra_len = want;
    }
    memcpy(buf, s->ra + (off - s->ra_off), (size_t)len);
    return 1;
}

/* --- the target --- */

/*
 * A raw target's writes from guest RAM are held back and joined into one
 * host write of up to WB_SIZE bytes while each starts where the last ended
 * (qemu-img writes a chunk at a time: a vmdk grain, a qcow2 cluster run):
 * the same bytes land in the same places, in far fewer exits.  Any other
 * write to the target, a failure and the end of the copy flush them
 * first.  Only without -p (whose lines follow each chunk's write) and
 * without -C.
 */
static bool wb_on(const struct cv *s)
{
    return s->wb && !s->tn && !s->gn;
}

/*
 * Write what is held back.  When the joined write fails, the writes are
 * made again one by one as qemu-img made them, and the first that fails
 * is the convert's error, at the offset of its chunk.  Returns 0.
 */
static int wb_flush(struct cv *s)
{
    uint64_t done = 0;
    uint32_t i, n = s->wb_n;

    if (s->cq_n) {
        n = s->cq_n;
        s->cq_n = 0;
        /* Each copy is one chunk: a failed one is the convert's error, at its chunk. */
        if (hc_copyv(cq, n, &i, NULL) < 0)
            gbs_send(INSTAR_OP_CONVERT, INSTAR_DATA_EWRITE_AT, GBS_EIO,
                     i < n ? cq[i].sector * SECTOR : 0, 0, 0);
        return 0;
    }
    if (!n)
        return 0;
    s->wb_n = 0;
    if (gdev_pwrite(s->t, s->wb_off, s->wb, (size_t)s->wb_len) >= 0)
        return 0;
    for (i = 0; i < n; i++) {
        uint64_t off = s->wb_piece[i][0], len = s->wb_piece[i][1];

        if (gdev_pwrite(s->t, off, s->wb + done, (size_t)len) < 0)
            gbs_send(INSTAR_OP_CONVERT, INSTAR_DATA_EWRITE_AT, GBS_EIO, s->wb_piece[i][2], 0, 0);
        done += len;
    }
    return 0;
}

/* Hold back a write of len bytes at off from buf, flushing first where it does not join. */
static int wb_add(struct cv *s, uint64_t off, const uint8_t *buf, uint64_t len)
{
    if (s->cq_n)
        wb_flush(s);
    if (len > WB_SIZE / 2) {
        wb_flush(s);
        return gdev_pwrite(s->t, off, buf, (size_t)len) < 0 ? -GBS_EIO : 0;
    }
    if (s->wb_n &&
        (s->wb_n == WB_PIECES || off != s->wb_off + s->wb_len || s->wb_len + len > WB_SIZE))
        wb_flush(s);
    if (!s->wb_n) {
        s->wb_off = off;
        s->wb_len = 0;
    }
    memcpy(s->wb + s->wb_len, buf, (size_t)len);
    s->wb_piece[s->wb_n][0] = off;
    s->wb_piece[s->wb_n][1] = len;
    s->wb_piece[s->wb_n][2] = s->chunk_off;
    s->wb_n++;
    s->wb_len += len;
    return 0;
}

/*
 * Write n sectors at sector_num of the target: from buf, or (buf NULL)
 * copied by the host from device src_dev at src_off.
 */
struct t_wctx {
    struct cv *s;
    const uint8_t *buf;
    uint32_t src_dev;
    uint64_t src_off;
};

static int t_w_data(void *o, uint64_t host, uint64_t done, uint64_t bytes)
{
    struct t_wctx *c = o;

    /* A qcow2 target's data lies in its data file (the image file, or an external one). */
    uint32_t dev = c->s->tn ? c->s->tn->data : c->s->t;

    if (c->buf && wb_on(c->s))
        return wb_add(c->s, host, c->buf + done, bytes);
    if (c->buf)
        return gdev_pwrite(dev, host, c->buf + done, (size_t)bytes) < 0 ? -GBS_EIO : 0;
    wb_flush(c->s);
    return hc_copy(c->src_dev, c->src_off + done, dev, host, bytes, 0, 0, 0, 0, NULL) < 0 ? -GBS_EIO
                                                                                          : 0;
}

/* Guest data [sector_num, + n) from buf, or else from src_dev at src_off, to the target. */
static int t_write_from(struct cv *s, int64_t sector_num, int64_t n, const uint8_t *buf,
                        uint32_t src_dev, uint64_t src_off)
{
    uint64_t off = (uint64_t)sector_num * SECTOR, len = (uint64_t)n * SECTOR;
    struct t_wctx c = {s, buf, src_dev, src_off};

    if (s->tn && s->t_crypt)
        return buf ? gbs_pwrite(s->tn, off, buf, (size_t)len) : -GBS_EIO;
    if (s->tn)
        return gbs_qcow2_pwrite_from(s->tn, off, len, t_w_data, &c,
                                     s->copy_range && s->status == BLK_DATA);
    if (s->gn)
        return buf ? gbs_pwrite(s->gn, off, buf, (size_t)len) : -GBS_EIO;
    return t_w_data(&c, off, 0, len);
}

static int t_write(struct cv *s, int64_t sector_num, int64_t n, const uint8_t *buf)
{
    return t_write_from(s, sector_num, n, buf, 0, 0);
}

static int t_zero(struct cv *s, int64_t sector_num, int64_t n)
{
    if (s->tn || s->gn)
        return gbs_pwrite_zeroes(s->tn ? s->tn : s->gn, (uint64_t)sector_num * SECTOR,
                                 (uint64_t)n * SECTOR, GBS_ZERO_MAY_UNMAP);
    wb_flush(s);
    return hc_zero(s->t, (uint64_t)sector_num * SECTOR, (uint64_t)n * SECTOR, 0) < 0 ? -GBS_EIO : 0;
}

static int write_buf_compressed(struct cv *s, int64_t sector_num, int64_t nb, const uint8_t *buf,
                                enum blk_status status);

/* convert_co_write() over bytes in guest RAM. */
static int write_buf(struct cv *s, int64_t sector_num, int64_t nb, const uint8_t *buf,
                     enum blk_status status)
{
    if (s->compressed)
        return write_buf_compressed(s, sector_num, nb, buf, status);
    while (nb > 0) {
        int n = (int)nb;
        int ret;

        if (status == BLK_BACKING_FILE) {
            /* leave it to the target's backing file */
        } else if (status == BLK_DATA &&
                   (!s->min_sparse_on ||
                    sparse_allocated_min(buf, n, &n, s->min_sparse, sector_num, s->alignment))) {
            ret = t_write(s, sector_num, n, buf);
            if (ret < 0)
                return ret;
        } else if (!s->has_zero_init) {
            ret = t_zero(s, sector_num, n);
            if (ret < 0)
                return ret;
        }
        sector_num += n;
        nb -= n;
        buf += (size_t)n * SECTOR;
    }
    return 0;
}

/*
 * Where the n sectors of the data chunk at sector_num lie, when they are
 * one range of one source file: the status extent's offset, or for a
 * format whose block status has none (vhdx) its driver's data_range.
 * Returns true with *dev and *off.
 */
static bool chunk_source(struct cv *s, int64_t sector_num, int64_t n, uint32_t *dev, uint64_t *off)
{
    uint64_t pnum, map;
    int64_t cur_off;
    int cur;

    if (s->status != BLK_DATA)
        return false;
    if (s->st_direct) {
        *dev = s->st_dev;
        *off = s->st_map + (uint64_t)(sector_num - s->st_start) * SECTOR;
        return true;
    }
    if (s->st_offset_valid)
        return false; /* data from several places (a raw or qcow2 chain): read it */
    select_part(s, sector_num, &cur, &cur_off);
    if (gbs_data_range(s->src[cur], (uint64_t)(sector_num - cur_off) * SECTOR, (uint64_t)n * SECTOR,
                       &pnum, &map, dev) != 1 ||
        pnum != (uint64_t)n * SECTOR)
        return false;
    *off = map;
    return true;
}

/*
 * A chunk of data that is one range of one source file, to a raw target:
 * the host copies it.  Returns 1 when done that way, 0 when the chunk
 * must go through guest RAM, or -errno.
 */
static int copy_direct(struct cv *s, int64_t sector_num, int64_t n)
{
    uint64_t src_off, len = (uint64_t)n * SECTOR, end;
    uint32_t flags = 0, src_dev;
    int64_t written;

    if (s->tn || s->gn || !chunk_source(s, sector_num, n, &src_dev, &src_off))
        return 0;
    if (__builtin_add_overflow(src_off, len, &end) || end > gblk_size(src_dev))
        return 0; /* a file cut short: its tail reads as zeros, through RAM */
    if (s->min_sparse_on && !s->copy_range)
        flags = s->has_zero_init ? INSTAR_COPY_SPARSE : INSTAR_COPY_PUNCH;
    if (wb_on(s) && (!flags || len <= INSTAR_COPY_SPARSE_MAX) && len <= INSTAR_COPY_MAX) {
        /*
         * Held back with the chunks after it (a vmdk grain each, or a vpc
         * block): the host makes them one by one, as this call would, in
         * one exit.
         */
        if (s->wb_n || s->cq_n == INSTAR_COPYV_MAX)
            wb_flush(s);
        cq[s->cq_n++] = (struct instar_hc_copy){.src = src_dev,
                                                .dst = s->t,
                                                .src_off = src_off,
                                                .dst_off = (uint64_t)sector_num * SECTOR,
                                                .len = len,
                                                .flags = flags,
                                                .sparse_sectors = (uint32_t)s->min_sparse,
                                                .alignment = (uint32_t)s->alignment,
                                                .sector = (uint64_t)sector_num};
        return 1;
    }
    wb_flush(s);
    if (hc_copy(src_dev, src_off, s->t, (uint64_t)sector_num * SECTOR, len, flags,
                (uint32_t)s->min_sparse, (uint32_t)s->alignment, (uint64_t)sector_num,
                &written) < 0)
        return -GBS_EIO;
    return 1;
}

/*
 * A chunk of plain source data to a qcow2 target: the host finds the -S
 * runs (INSTAR_HC_SCAN) and copies the allocated ones into the clusters
 * allocated here.  Returns 1 when done that way, 0 to go through guest
 * RAM, or -errno.
 */
static int scan_direct(struct cv *s, int64_t sector_num, int64_t n)
{
    static uint32_t runs[INSTAR_COPY_SPARSE_MAX / SECTOR];
    uint64_t src_off, len = (uint64_t)n * SECTOR, end, nruns, i;
    uint32_t src_dev;
    int ret;

    if (!s->tn || s->t_crypt || s->compressed || !s->min_sparse_on ||
        len > INSTAR_COPY_SPARSE_MAX || !chunk_source(s, sector_num, n, &src_dev, &src_off))
        return 0;
    if (__builtin_add_overflow(src_off, len, &end) || end > gblk_size(src_dev))
        return 0;
    if (hc_scan(src_dev, src_off, len, (uint32_t)s->min_sparse, (uint32_t)s->alignment,
                (uint64_t)sector_num, runs, sizeof(runs) / sizeof(runs[0]), &nruns) < 0 ||
        nruns > sizeof(runs) / sizeof(runs[0]))
        return -GBS_EIO;
    for (i = 0; i < nruns; i++) {
        int64_t run = (int64_t)(runs[i] >> 1);

        if (run <= 0 || run > n)
            return -GBS_EIO;
        if (runs[i] & 1) {
            ret = t_write_from(s, sector_num, run, NULL, src_dev, src_off);
            if (ret < 0)
                return ret;
        } else if (!s->has_zero_init) {
            ret = t_zero(s, sector_num, run);
            if (ret < 0)
                return ret;
        }
        sector_num += run;
        src_off += (uint64_t)run * SECTOR;
        n -= run;
    }
    return n == 0 ? 1 : -GBS_EIO;
}

/*
 * Whether qemu-img's coroutine yields on a chunk: with in-order writes
 * (instar's, qemu-img's without -W) every chunk does, waiting for its I/O
 * or for the chunks before it to be written.
 */
static bool chunk_waits(void)
{
    return true;
}

/*
 * A read or write failed in the chunk that was the waits-th to yield.  In
 * qemu-img, num_coroutines coroutines take chunks in turn, each printing
 * its progress before it yields: by the time the failure is seen the
 * first num_coroutines chunks that yield have been taken.  Print their
 * progress, then stop.
 */
static void progress_in_flight(struct cv *s, int64_t sector_num, uint32_t waits)
{
    while (sector_num < s->total_sectors && waits < s->a->num_coroutines) {
        int64_t n = iteration(s, sector_num);
        enum blk_status status = s->status;

        if (!s->min_sparse_on && status == BLK_ZERO && n > s->buf_sectors)
            n = s->buf_sectors;
        if (status == BLK_DATA || (!s->min_sparse_on && status == BLK_ZERO)) {
            s->allocated_done += n;
            hc_progress(INSTAR_PROGRESS_ABS, (uint64_t)s->allocated_done,
                        (uint64_t)s->allocated_sectors);
        }
        waits += chunk_waits();
        sector_num += n;
    }
}

/* --- -c: compressed clusters (qcow2_co_pwritev_compressed_part) --- */

/*
 * qcow2_co_pwritev_compressed_task() for the guest cluster at sector_num
 * (n sectors: a whole cluster, or the image's short last one, which is
 * compressed padded with zeros): compressed into at most cluster_size - 1
 * bytes, packed into the file by qcow2_prealloc_write_compressed(); data
 * that does not compress that far is written as a plain cluster.
 */
static int t_write_compressed(struct cv *s, int64_t sector_num, int64_t n, const uint8_t *buf)
{
    size_t cs = (size_t)s->cluster_sectors * SECTOR, bytes = (size_t)n * SECTOR;
    const uint8_t *in = buf;
    long out_len;

    /* vmdk_co_pwritev_compressed(): the driver compresses (or, sparse, writes) the grain as given.
     */
    if (s->gn && s->gn->drv == &gbs_drv_vmdk)
        return gbs_pwrite(s->gn, (uint64_t)sector_num * SECTOR, buf, bytes);

    if (bytes < cs) {
        memcpy(s->cbuf, buf, bytes);
        memset(s->cbuf + bytes, 0, cs - bytes);
        in = s->cbuf;
    }
    out_len = gcodec_compress(s->ctype, in, cs, s->cbuf + cs, cs - 1);
    if (out_len == -GCODEC_ENOSPC)
        return t_write(s, sector_num, n, buf);
    if (out_len == -GCODEC_ENOMEM)
        return -GBS_ENOMEM; /* guest RAM, not the data: qemu-img would not fail */
    if (out_len <= 0)
        return -GBS_EINVAL;
    if (s->gn)
        return gbs_qcow_write_compressed(s->gn, (uint64_t)sector_num * SECTOR, s->cbuf + cs,
                                         (uint64_t)out_len);
    return gbs_qcow2_write_compressed(s->tn, (uint64_t)sector_num * SECTOR, s->cbuf + cs,
                                      (uint64_t)out_len);
}

/*
 * convert_co_write() with BDRV_REQ_WRITE_COMPRESSED: the chunk (at most
 * a cluster, see iteration()) is written whole unless it is all zeros.
 */
static int write_buf_compressed(struct cv *s, int64_t sector_num, int64_t nb, const uint8_t *buf,
                                enum blk_status status)
{
    int64_t i, n;
    int ret;

    if (status == BLK_BACKING_FILE)
        return 0;
    if (status == BLK_DATA &&
        (!s->min_sparse_on || !sparse_buffer_is_zero(buf, (size_t)nb * SECTOR))) {
        if (s->c_data_file)
            return -GBS_ENOTSUP;
        if (sector_num % s->cluster_sectors ||
            (nb % s->cluster_sectors && sector_num + nb != s->total_sectors))
            return -GBS_EINVAL;
        for (i = 0; i < nb; i += n) {
            n = nb - i < s->cluster_sectors ? nb - i : s->cluster_sectors;
            ret = t_write_compressed(s, sector_num + i, n, buf + (size_t)i * SECTOR);
            if (ret < 0)
                return ret;
        }
        return 0;
    }
    return s->has_zero_init ? 0 : t_zero(s, sector_num, nb);
}

/*
 * The end of a compressed convert: blk_pwrite_compressed() of nothing,
 * which rounds the file up to whole 512-byte sectors (-ENOTSUP with a
 * data file; qemu-img then exits 1 without a message).
 */
static void compressed_eof(struct cv *s)
{
    uint64_t len, aligned;

    /*
     * qcow_co_pwritev_compressed() takes only a whole cluster or the
     * image's last one: nothing is -EINVAL, and qemu-img exits 1 without
     * a message after every cluster is written.
     */
    if (s->gn && s->gn->drv == &gbs_drv_qcow)
        gbs_send(INSTAR_OP_CONVERT, INSTAR_DATA_ESILENT, GBS_EINVAL, 0, 0, 0);
    if (s->c_data_file)
        gbs_send(INSTAR_OP_CONVERT, INSTAR_DATA_ESILENT, GBS_ENOTSUP, 0, 0, 0);
    wb_flush(s);
    if (s->gn) {
        if (gbs_vmdk_compressed_eof(s->gn) < 0)
            gbs_send(INSTAR_OP_CONVERT, INSTAR_DATA_ESILENT, GBS_EIO, 0, 0, 0);
        return;
    }
    len = gdev_length(s->t);
    aligned = (len + SECTOR - 1) / SECTOR * SECTOR;
    if (aligned != len && gdev_truncate(s->t, aligned, INSTAR_TRUNC_OFF) < 0)
        gbs_send(INSTAR_OP_CONVERT, INSTAR_DATA_ESILENT, GBS_EIO, 0, 0, 0);
}

/*
 * -C: convert_co_copy_range(), a data chunk copied by the block layer's
 * copy offloading (copy_file_range() between the files): the whole chunk
 * lands as data, zero blocks included (no -S detection), and a qcow2
 * target copies its copy-on-write regions (qcow2_co_copy_range_to).
 * Returns 0 or -errno (after a read error, reported here).
 */
static int copy_range(struct cv *s, int64_t sector_num, int64_t n, uint32_t waits)
{
    int ret = copy_direct(s, sector_num, n);

    if (ret == 0 && s->tn && !s->t_crypt && s->st_direct) {
        uint64_t src_off = s->st_map + (uint64_t)(sector_num - s->st_start) * SECTOR, end;

        if (!__builtin_add_overflow(src_off, (uint64_t)n * SECTOR, &end) &&
            end <= gblk_size(s->st_dev))
            return t_write_from(s, sector_num, n, NULL, s->st_dev, src_off);
    }
    if (ret != 0)
        return ret < 0 ? ret : 0;
    ret = read_sectors(s, sector_num, n, s->buf);
    if (ret < 0) {
        if (s->progress)
            progress_in_flight(s, sector_num + n, waits);
        fail(INSTAR_DATA_EREAD_AT, ret, (uint64_t)sector_num * SECTOR);
    }
    return t_write(s, sector_num, n, s->buf);
}

static void do_copy(struct cv *s)
{
    uint32_t waits = 0;
    int64_t sector_num = 0, n;
    int ret;

    /*
     * convert_do_copy() always walks the block status once before it
     * copies (counting for progress): a block status error fails the
     * convert there, before anything is written, and --salvage warns
     * about it in both walks.
     */
    while (sector_num < s->total_sectors) {
        n = iteration(s, sector_num);
        if (s->status == BLK_DATA || (!s->min_sparse_on && s->status == BLK_ZERO))
            s->allocated_sectors += n;
        sector_num += n;
    }
    s->sector_next_status = 0;
    sector_num = 0;
    while (sector_num < s->total_sectors) {
        enum blk_status status;

        n = iteration(s, sector_num);
        status = s->status;
        s->chunk_off = (uint64_t)sector_num * SECTOR;
        if (!s->min_sparse_on && status == BLK_ZERO && n > s->buf_sectors)
            n = s->buf_sectors;
        if (s->progress && (status == BLK_DATA || (!s->min_sparse_on && status == BLK_ZERO))) {
            s->allocated_done += n;
            hc_progress(INSTAR_PROGRESS_ABS, (uint64_t)s->allocated_done,
                        (uint64_t)s->allocated_sectors);
        }
        if (waits < UINT32_MAX)
            waits += chunk_waits();
        /*
         * qcow2_co_copy_range_from() refuses compressed clusters (they
         * have no host offset): -ENOTSUP turns -C off for the rest of the
         * convert, and the chunk is copied the ordinary way.
         */
        if (status == BLK_DATA && s->copy_range && !s->st_offset_valid)
            s->copy_range = false;
        if (status == BLK_DATA && s->copy_range) {
            ret = copy_range(s, sector_num, n, waits);
        } else if (status == BLK_DATA) {
            ret = copy_direct(s, sector_num, n);
            if (ret == 0)
                ret = scan_direct(s, sector_num, n);
            if (ret < 0)
                fail(INSTAR_DATA_EWRITE_AT, ret, (uint64_t)sector_num * SECTOR);
            if (ret == 0 && !read_ahead(s, sector_num, n, s->buf)) {
                ret = read_sectors(s, sector_num, n, s->buf);
                if (ret < 0) {
                    if (s->progress)
                        progress_in_flight(s, sector_num + n, waits);
                    fail(INSTAR_DATA_EREAD_AT, ret, (uint64_t)sector_num * SECTOR);
                }
            }
            if (ret == 0)
                ret = write_buf(s, sector_num, n, s->buf, status);
        } else if (!s->min_sparse_on && status == BLK_ZERO) {
            memset(s->buf, 0, (size_t)n * SECTOR);
            ret = write_buf(s, sector_num, n, s->buf, BLK_DATA);
        } else {
            ret = write_buf(s, sector_num, n, s->buf, status);
        }
        if (ret < 0) {
            /* The other coroutines have taken their chunks, as for a read error. */
            if (s->progress)
                progress_in_flight(s, sector_num + n, waits);
            fail(INSTAR_DATA_EWRITE_AT, ret, (uint64_t)sector_num * SECTOR);
        }
        sector_num += n;
    }
}

/* -c: the target's cluster size and compression type, and one cluster's buffers. */
static void compressed_setup(struct cv *s)
{
    uint64_t cluster_size;

    /* A qcow target compresses with zlib, as qcow2's default; vmdk compresses in its driver. */
    if (s->gn ? (s->gn->drv == &gbs_drv_vmdk
                     ? gbs_vmdk_cluster_size(s->gn, &cluster_size) < 0 || cluster_size == 0
                     : gbs_qcow_target_info(s->gn, &cluster_size) < 0)
              : gbs_qcow2_target_info(s->tn, &cluster_size, &s->ctype, &s->c_data_file) < 0)
        result_error(INSTAR_OP_CONVERT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    if (s->gn)
        s->ctype = GCODEC_ZLIB;
    s->cluster_sectors = (int64_t)(cluster_size / SECTOR);
    /* qemu-img copies one cluster at a time. */
    if (s->cluster_sectors > s->buf_sectors)
        result_error(INSTAR_OP_CONVERT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    s->buf_sectors = (int)s->cluster_sectors;
    s->cbuf = malloc(2 * (size_t)cluster_size);
    s->ra = malloc(RA_MAX); /* only an optimisation: without it, cluster by cluster */
    if (!s->cbuf)
        result_error(INSTAR_OP_CONVERT, INSTAR_ERR_NOMEM, NULL, NULL, 0);
}

/* --- --bitmaps (convert_copy_bitmaps) --- */

/* One source bitmap being copied: its table, read once. */
struct bm_src {
    const struct qcow2_bitmap *bm;
    uint64_t *table; /* host order, bm->table_size entries */
};

struct bm_copy {
    struct gbs *src;
    uint32_t dev;     /* the source's image file */
    uint64_t cs;      /* its cluster size */
    uint64_t size;    /* the bitmaps' size: source and target are as long */
    struct bm_src *b; /* per target bitmap */
};

/*
 * The serialised bytes [off, off + len) of source bitmap index, as
 * load_bitmap_data() reads them into qemu's bitmap: a zero entry reads as
 * zeros, the all-ones entry sets whole words, a data cluster is copied
 * (whole words, as hbitmap_deserialize_part()).
 */
static int bm_fill(void *opaque, uint32_t index, uint64_t off, uint8_t *buf, size_t len)
{
    struct bm_copy *c = opaque;
    const struct bm_src *b = &c->b[index];
    uint64_t done = 0;

    while (done < len) {
        uint64_t pos = off + done, k = pos / c->cs, in = pos % c->cs;
        uint64_t n = c->cs - in < len - done ? c->cs - in : len - done;
        uint64_t entry, doff;

        if (k >= b->bm->table_size)
            return -GBS_EIO;
        entry = b->table[k];
        doff = entry & 0x00fffffffffffe00ull;
        if (doff) {
            if (gblk_pread(c->dev, doff + in, buf + done, (size_t)n) < 0)
                return -GBS_EIO;
        } else if (entry & 1) {
            /* hbitmap_deserialize_ones(): whole words, past the last bit too. */
            memset(buf + done, 0xff, (size_t)n);
        } else {
            memset(buf + done, 0, (size_t)n);
        }
        done += n;
    }
    return 0;
}

/*
 * convert_copy_bitmaps() and the target's close: every persistent bitmap
 * of the source's top image, in directory order (the order qemu's
 * target list ends up in), skipping in-use ones (the host refused them
 * unless --skip-broken-bitmaps, and prints the warnings), added to the
 * target with its name, granularity and enabled state, its bits merged
 * from the source, then stored.  The bits stream from the source image
 * cluster by cluster: no bitmap is held whole.
 */
static void copy_bitmaps(struct cv *s)
{
    const struct gq_image *img;
    struct qcow2_bm_list l, *tl;
    struct bm_copy c;
    uint32_t i, j;
    int64_t idx;
    int ret;

    if (s->a->nsrc != 1 || !s->tn || s->src[0]->drv != &gbs_drv_qcow2 ||
        s->tn->total != s->src[0]->total || s->tn->total == 0)
        result_error(INSTAR_OP_CONVERT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    img = s->src[0]->opaque;
    memset(&c, 0, sizeof(c));
    c.src = s->src[0];
    c.dev = s->src[0]->file;
    c.cs = img->h.cluster_size;
    c.size = s->tn->total;
    c.b = calloc(img->nbitmaps ? img->nbitmaps : 1, sizeof(*c.b));
    if (!c.b)
        result_error(INSTAR_OP_CONVERT, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    qcow2_bm_list_init(&l, s->tn->total, 0, gbs_bm_mem, NULL);
    {
        uint64_t tcs;
        unsigned ct;
        bool df;

        if (gbs_qcow2_target_info(s->tn, &tcs, &ct, &df) < 0)
            result_error(INSTAR_OP_CONVERT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
        while (((uint64_t)1 << l.cluster_bits) < tcs)
            l.cluster_bits++;
    }
    /* Those before bitmaps_from: qemu-img stopped at one of them (the host reports it). */
    for (i = s->a->bitmaps_from, j = 0; i < img->nbitmaps; i++) {
        const struct qcow2_bitmap *bm = &img->bitmaps[i];
        uint8_t *raw;
        uint32_t k;

        if (bm->flags & QCOW2_BITMAP_IN_USE) {
            if (!(s->a->flags & INSTAR_CONVERT_SKIP_BROKEN))
                result_error(INSTAR_OP_CONVERT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
            continue;
        }
        idx = qcow2_bm_add(&l, (const char *)bm->name, bm->name_len, bm->granularity_bits,
                           bm->flags & QCOW2_BITMAP_AUTO, false);
        if (idx < 0)
            fail(INSTAR_DATA_EWRITE_AT, idx == -QCOW2_ALLOC_ENOMEM ? GBS_ENOMEM : GBS_EINVAL, 0);
        /* The open checked the table: offset, entries, size for the image. */
        c.b[j].bm = bm;
        c.b[j].table = malloc((size_t)bm->table_size * 8);
        raw = malloc((size_t)bm->table_size * 8);
        if (!c.b[j].table || !raw)
            result_error(INSTAR_OP_CONVERT, INSTAR_ERR_NOMEM, NULL, NULL, 0);
        if (gblk_pread(c.dev, bm->table_offset, raw, (size_t)bm->table_size * 8) < 0)
            fail(INSTAR_DATA_EREAD_AT, GBS_EIO, 0);
        for (k = 0; k < bm->table_size; k++)
            c.b[j].table[k] = (uint64_t)raw[k * 8] << 56 | (uint64_t)raw[k * 8 + 1] << 48 |
                              (uint64_t)raw[k * 8 + 2] << 40 | (uint64_t)raw[k * 8 + 3] << 32 |
                              (uint64_t)raw[k * 8 + 4] << 24 | (uint64_t)raw[k * 8 + 5] << 16 |
                              (uint64_t)raw[k * 8 + 6] << 8 | raw[k * 8 + 7];
        free(raw);
        j++;
    }
    if (l.n == 0) {
        qcow2_bm_list_release(&l);
        return;
    }
    /*
     * A target with bitmaps of its own (-n): the copies join them, after
     * them in the directory, their bits in memory, and the target's close
     * stores them all.
     */
    tl = gbs_qcow2_bitmaps(s->tn);
    if (tl) {
        for (i = 0; i < l.n; i++) {
            const struct qcow2_bm *b = &l.bm[i];

            idx = qcow2_bm_add(tl, b->name, b->name_len, b->granularity_bits,
                               b->flags & QCOW2_BITMAP_AUTO, true);
            if (idx < 0)
                fail(INSTAR_DATA_EWRITE_AT, idx == -QCOW2_ALLOC_ENOMEM ? GBS_ENOMEM : GBS_EINVAL,
                     0);
            ret = bm_fill(&c, i, 0, tl->bm[idx].bits,
                          (size_t)qcow2_bm_ser_size(tl->disk_size, b->granularity_bits));
            if (ret < 0)
                fail(INSTAR_DATA_EREAD_AT, ret, 0);
        }
        qcow2_bm_list_release(&l);
        return;
    }
    ret = gbs_qcow2_store_bitmaps(s->tn, &l, bm_fill, &c);
    if (ret < 0)
        fail(INSTAR_DATA_EWRITE_AT, ret, 0);
    qcow2_bm_list_release(&l);
}

void plan_convert(void)
{
    static struct instar_convert_args a;
    struct cv *s = &S;
    uint32_t i;
    int ret;

    a = boot->args.convert;
    memset(s, 0, sizeof(*s));
    s->a = &a;
    if (a.nsrc == 0 || a.nsrc > INSTAR_CONVERT_SRC_MAX || a.buf_sectors == 0 ||
        a.buf_sectors > 32768 || a.alignment == 0 || (a.alignment & (a.alignment - 1)) ||
        a.min_sparse > 32768 || a.target >= boot->ndevices ||
        !(boot->devices[a.target].flags & INSTAR_DEV_WRITE) ||
        (a.target_driver != INSTAR_DRV_RAW && a.target_driver != INSTAR_DRV_QCOW2 &&
         a.target_driver != INSTAR_DRV_PARALLELS && a.target_driver != INSTAR_DRV_VDI &&
         a.target_driver != INSTAR_DRV_VPC && a.target_driver != INSTAR_DRV_QED &&
         a.target_driver != INSTAR_DRV_VHDX && a.target_driver != INSTAR_DRV_LUKS &&
         a.target_driver != INSTAR_DRV_VMDK && a.target_driver != INSTAR_DRV_QCOW) ||
        ((a.flags & INSTAR_CONVERT_COMPRESSED) && a.target_driver != INSTAR_DRV_QCOW2 &&
         a.target_driver != INSTAR_DRV_VMDK && a.target_driver != INSTAR_DRV_QCOW))
        result_error(INSTAR_OP_CONVERT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    gbs_open_or_fail(INSTAR_OP_CONVERT, &a.g);
    if (a.target_driver == INSTAR_DRV_QCOW2) {
        /* The target node: qcow2, writable, its image file the target device. */
        s->tn = gbs_node(a.target_node);
        if (!s->tn || s->tn->drv != &gbs_drv_qcow2 || !s->tn->writable || s->tn->file != a.target)
            result_error(INSTAR_OP_CONVERT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
        s->t_crypt = gbs_qcow2_encrypted(s->tn);
    }
    /* A parallels, vdi, vpc, qed, vhdx, luks, vmdk or qcow target node, written through its driver.
     */
    if (a.target_driver == INSTAR_DRV_PARALLELS || a.target_driver == INSTAR_DRV_VDI ||
        a.target_driver == INSTAR_DRV_VPC || a.target_driver == INSTAR_DRV_QED ||
        a.target_driver == INSTAR_DRV_VHDX || a.target_driver == INSTAR_DRV_LUKS ||
        a.target_driver == INSTAR_DRV_VMDK || a.target_driver == INSTAR_DRV_QCOW) {
        const struct gbs_driver *want = a.target_driver == INSTAR_DRV_VDI    ? &gbs_drv_vdi
                                        : a.target_driver == INSTAR_DRV_VPC  ? &gbs_drv_vpc
                                        : a.target_driver == INSTAR_DRV_QED  ? &gbs_drv_qed
                                        : a.target_driver == INSTAR_DRV_VHDX ? &gbs_drv_vhdx
                                        : a.target_driver == INSTAR_DRV_LUKS ? &gbs_drv_luks
                                        : a.target_driver == INSTAR_DRV_VMDK ? &gbs_drv_vmdk
                                        : a.target_driver == INSTAR_DRV_QCOW ? &gbs_drv_qcow
                                                                             : &gbs_drv_parallels;

        s->gn = gbs_node(a.target_node);
        if (!s->gn || s->gn->drv != want || !s->gn->writable || s->gn->file != a.target ||
            (a.flags & INSTAR_CONVERT_BITMAPS))
            result_error(INSTAR_OP_CONVERT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    }
    for (i = 0; i < a.nsrc; i++) {
        struct gbs *bs = gbs_node(a.src[i]);

        if (!bs)
            result_error(INSTAR_OP_CONVERT, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
        s->src[i] = bs;
        s->src_sectors[i] = (int64_t)(bs->total / SECTOR);
        s->src_alignment[i] = 1;
        if (bs->drv == &gbs_drv_qcow2)
            s->src_alignment[i] =
                (int64_t)(((struct gq_image *)bs->opaque)->h.cluster_size / SECTOR);
        s->total_sectors += s->src_sectors[i];
    }
    s->t = a.target;
    s->has_zero_init = a.flags & INSTAR_CONVERT_ZERO_INIT;
    s->target_has_backing = a.flags & INSTAR_CONVERT_TARGET_BACKING;
    s->min_sparse = (int)a.min_sparse;
    s->min_sparse_on = a.min_sparse != 0;
    s->alignment = (int)a.alignment;
    s->buf_sectors = (int)a.buf_sectors;
    s->progress = a.flags & INSTAR_CONVERT_PROGRESS;
    s->salvage = a.flags & INSTAR_CONVERT_SALVAGE;
    s->buf = malloc((size_t)s->buf_sectors * SECTOR);
    if (!s->buf)
        result_error(INSTAR_OP_CONVERT, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    s->compressed = a.flags & INSTAR_CONVERT_COMPRESSED;
    s->copy_range = a.flags & INSTAR_CONVERT_COPY_RANGE;
    if (s->compressed)
        compressed_setup(s);

    /* Held-back writes (wb_add()): a raw target, without -p or -C. */
    if (!s->tn && !s->gn && !s->progress && !s->copy_range)
        s->wb = malloc(WB_SIZE); /* NULL: write as qemu-img does, a chunk at a time */
    do_copy(s);
    wb_flush(s);

    if (s->tn || s->gn) {
        ret = gbs_flush(s->tn ? s->tn : s->gn);
        if (ret < 0)
            fail(INSTAR_DATA_EWRITE_AT, ret, 0);
    }
    if (s->compressed)
        compressed_eof(s);
    if (a.flags & INSTAR_CONVERT_BITMAPS)
        copy_bitmaps(s);
    if (s->tn || s->gn) {
        ret = gbs_close(s->tn ? s->tn : s->gn);
        if (ret < 0)
            fail(INSTAR_DATA_EWRITE_AT, ret, 0);
    }
    gbs_send(INSTAR_OP_CONVERT, INSTAR_DATA_OK, 0, 0, 0, 0);
}
