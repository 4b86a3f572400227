/*
 * The bench planner: img_bench()'s requests over the block layer.
 *
 * qemu-img keeps up to depth requests in flight and bench_cb() submits
 * more (or a flush) as each one completes.  Here a request runs when it
 * is submitted and they complete in submission order, so the requests
 * and flushes come in an order qemu can produce too (with depth 1, the
 * only one), and every write leaves what qemu's leaves: the pattern, with
 * qcow2 clusters allocated by its write path (guest/drv_qcow2.c).
 */
#include "bdrv.h"

/* A request larger than this goes through guest RAM in pieces (aligned: no extra COW). */
#define BENCH_CHUNK (16u << 20)

struct bench {
    const struct instar_bench_args *a;
    struct gbs *bs;
    uint64_t size; /* blk_getlength() */
    uint8_t *buf;
    int64_t n;         /* requests not yet completed */
    int64_t in_flight; /* submitted, not completed */
    bool in_flush;     /* a drained flush is pending */
    uint64_t offset;   /* of the next request */
};

static __attribute__((noreturn)) void fail(uint32_t status, int err, uint64_t offset)
{
    gbs_send(INSTAR_OP_BENCH, status, (uint32_t)(err < 0 ? -err : err), offset, 0, 0);
}

/* blk_aio_preadv/pwritev of bufsize bytes at off (blk_check_byte_request first). */
static int request(struct bench *b, uint64_t off)
{
    uint64_t len = b->a->bufsize, done = 0;

    if (off > b->size || b->size - off < len)
        return -GBS_EIO;
    while (done < len) {
        uint64_t pos = off + done;
        uint64_t n = BENCH_CHUNK - pos % BENCH_CHUNK;
        int ret;

        if (n > len - done)
            n = len - done;
        if (b->a->flags & INSTAR_BENCH_WRITE)
            ret = gbs_pwrite(b->bs, pos, b->buf, (size_t)n);
        else
            ret = gbs_pread(b->bs, pos, b->buf, (size_t)n);
        if (ret < 0)
            return ret;
        done += n;
    }
    return 0;
}

/* The submitting half of bench_cb(). */
static void submit(struct bench *b)
{
    while (b->n > b->in_flight && b->in_flight < (int64_t)b->a->depth) {
        uint64_t off = b->offset;
        int ret;

        b->in_flight++;
        b->offset = (b->offset + b->a->step) % b->size;
        ret = request(b, off);
        if (ret < 0)
            fail(INSTAR_DATA_EREQUEST, ret, off);
    }
}

/* bench_cb() for the completion of the oldest request in flight. */
static void complete(struct bench *b)
{
    const struct instar_bench_args *a = b->a;
    int64_t remaining = b->n - b->in_flight;
    bool drain = !(a->flags & INSTAR_BENCH_NO_DRAIN);

    b->n--;
    b->in_flight--;
    if (a->flush_interval && remaining % a->flush_interval == 0) {
        if (!b->in_flight || !drain) {
            int ret = gbs_flush(b->bs);

            if (ret < 0)
                fail(drain ? INSTAR_DATA_EREQUEST : INSTAR_DATA_EFLUSH, ret, 0);
            if (drain)
                b->in_flush = true;
        }
        if (drain)
            return;
    }
    submit(b);
}

void plan_bench(void)
{
    static struct instar_bench_args a;
    static struct bench b;
    size_t chunk;

    a = boot->args.bench;
    if (a.count > 0x7fffffffu || a.depth == 0 || a.depth > 0x7fffffffu || a.bufsize > 0x7fffffffu ||
        a.step > 0x7fffffffu || a.flush_interval > 0x7fffffffu ||
        (a.flush_interval && a.flush_interval < a.depth) || a.pattern > 0xff ||
        a.offset > (uint64_t)INT64_MAX || (a.flags & ~(INSTAR_BENCH_WRITE | INSTAR_BENCH_NO_DRAIN)))
        result_error(INSTAR_OP_BENCH, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    gbs_open_or_fail(INSTAR_OP_BENCH, &a.g);
    memset(&b, 0, sizeof(b));
    b.a = &a;
    b.bs = gbs_node(a.top);
    if (!b.bs || ((a.flags & INSTAR_BENCH_WRITE) && !b.bs->writable) || b.bs->total == 0)
        result_error(INSTAR_OP_BENCH, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    b.size = b.bs->total;
    chunk = a.bufsize < BENCH_CHUNK ? a.bufsize : BENCH_CHUNK;
    b.buf = malloc(chunk ? chunk : 1);
    if (!b.buf)
        result_error(INSTAR_OP_BENCH, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    memset(b.buf, (int)a.pattern, chunk);
    b.n = a.count;
    b.offset = a.offset;

    /* bench_cb(&data, 0), then the main loop until every request completed. */
    submit(&b);
    while (b.n > 0) {
        if (b.in_flush) {
            b.in_flush = false;
            submit(&b);
        } else {
            complete(&b);
        }
    }
    /* blk_unref(): what a write left in the driver's caches reaches the file. */
    if (a.flags & INSTAR_BENCH_WRITE) {
        int ret = gbs_flush(b.bs);

        if (ret == 0)
            ret = gbs_close(b.bs);
        if (ret < 0)
            fail(INSTAR_DATA_EREQUEST, ret, 0);
    }
    gbs_send(INSTAR_OP_BENCH, INSTAR_DATA_OK, 0, 0, 0, 0);
}
