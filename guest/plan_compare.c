/*
 * The compare planner: img_compare()'s walk over two images' block
 * status, reading and comparing where either holds data, and the check of
 * a longer image's tail.  The result names what qemu-img prints; the
 * host prints it and the progress the guest reports.
 */
#include "bdrv.h"

#define IO_BUF (2u << 20)
#define SECTOR 512

static uint8_t *buf1, *buf2;

static __attribute__((noreturn)) void done(uint32_t status, uint32_t err, uint64_t off,
                                           uint32_t image)
{
    gbs_send(INSTAR_OP_COMPARE, status, err, off, image, 0);
}

static bool zero_bytes(const uint8_t *p, uint64_t n)
{
    uint64_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t w;

        __builtin_memcpy(&w, p + i, 8);
        if (w)
            return false;
    }
    for (; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* find_nonzero(): the offset of the first sector (or tail) that is not zero, or -1. */
static int64_t find_nonzero(const uint8_t *buf, uint64_t n)
{
    uint64_t i, end = n & ~(uint64_t)(SECTOR - 1);

    for (i = 0; i < end; i += SECTOR)
        if (!zero_bytes(buf + i, SECTOR))
            return (int64_t)i;
    if (i < n && !zero_bytes(buf + i, n - end))
        return (int64_t)i;
    return -1;
}

/* check_empty_sectors() of image img (1 or 2); tail: in the longer image's tail. */
static void check_empty(struct gbs *bs, uint64_t off, uint64_t bytes, uint32_t img, bool tail)
{
    int64_t idx;
    int ret = gbs_pread(bs, off, buf1, (size_t)bytes);

    if (ret < 0)
        done(INSTAR_DATA_EREAD, (uint32_t)-ret, off, img);
    idx = find_nonzero(buf1, bytes);
    if (idx >= 0)
        done(tail ? INSTAR_DATA_NOT_EMPTY : INSTAR_DATA_MISMATCH, 0, off + (uint64_t)idx, img);
}

/* compare_buffers(): whether the first sector differs; *pnum its run. */
static bool compare_buffers(const uint8_t *a, const uint8_t *b, uint64_t bytes, uint64_t *pnum)
{
    uint64_t i = bytes < SECTOR ? bytes : SECTOR;
    bool res = memcmp(a, b, (size_t)i) != 0;

    while (i < bytes) {
        uint64_t len = bytes - i < SECTOR ? bytes - i : SECTOR;

        if ((memcmp(a + i, b + i, (size_t)len) != 0) != res)
            break;
        i += len;
    }
    *pnum = i;
    return res;
}

/* Plain data of one file, wholly inside it: the host can compare it. */
static bool direct(int st, uint64_t map, uint32_t dev, uint64_t len)
{
    uint64_t end;

    return (st & (INSTAR_BS_DATA | INSTAR_BS_ZERO | INSTAR_BS_OFFSET_VALID)) ==
               (INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID) &&
           dev != INSTAR_NO_NODE && !__builtin_add_overflow(map, len, &end) &&
           end <= gblk_size(dev);
}

/*
 * qemu_progress_print(chunk * 100 / base): with -p every step, as qemu-img
 * prints from each; else only for SIGUSR1, whose moment is the host's, so
 * steps are batched up to 1/10000 of the total (a step per L2 table of an
 * empty image would otherwise cost one call each).
 */
static uint64_t pending;

static void progress_add(uint32_t flags, uint64_t chunk, uint64_t base)
{
    pending += chunk;
    if ((flags & INSTAR_COMPARE_PROGRESS) || pending >= base / 10000) {
        hc_progress(INSTAR_PROGRESS_ADD, pending, base);
        pending = 0;
    }
}

/*
 * "Warning: Image size mismatch!": qemu-img prints it between the last
 * update of the common part and the first of the tail, so the host gets
 * it now, after any progress still batched.
 */
static void size_warning(uint64_t base)
{
    if (pending)
        hc_progress(INSTAR_PROGRESS_ADD, pending, base);
    pending = 0;
    greport(INSTAR_COMPARE_REC_SIZE_MISMATCH, 0, NULL, NULL, 0);
    greport_flush();
}

void plan_compare(void)
{
    static struct instar_compare_args a;
    struct gbs *bs1, *bs2;
    uint64_t total1, total2, total, base, off = 0, pnum1, pnum2, chunk, map1, map2;
    uint32_t dev1, dev2;
    int st1, st2, ret;

    a = boot->args.compare;
    gbs_open_or_fail(INSTAR_OP_COMPARE, &a.g);
    bs1 = gbs_node(a.top1);
    bs2 = gbs_node(a.top2);
    buf1 = malloc(IO_BUF);
    buf2 = malloc(IO_BUF);
    if (!bs1 || !bs2 || !buf1 || !buf2)
        result_error(INSTAR_OP_COMPARE, !bs1 || !bs2 ? INSTAR_ERR_BAD_ARGS : INSTAR_ERR_NOMEM, NULL,
                     NULL, 0);
    total1 = bs1->total;
    total2 = bs2->total;
    total = total1 < total2 ? total1 : total2;
    base = total1 > total2 ? total1 : total2;

    if ((a.flags & INSTAR_COMPARE_STRICT) && total1 != total2)
        done(INSTAR_DATA_STRICT_SIZE, 0, 0, 0);

    while (off < total) {
        st1 = gbs_block_status_above(bs1, off, total1 - off, &pnum1, &map1, &dev1, NULL);
        if (st1 < 0)
            done(INSTAR_DATA_EALLOC, 0, off, 1);
        st2 = gbs_block_status_above(bs2, off, total2 - off, &pnum2, &map2, &dev2, NULL);
        if (st2 < 0)
            done(INSTAR_DATA_EALLOC, 0, off, 2);
        chunk = pnum1 < pnum2 ? pnum1 : pnum2;
        if ((a.flags & INSTAR_COMPARE_STRICT) && st1 != st2)
            done(INSTAR_DATA_STRICT_STATUS, 0, off, 0);
        if ((st1 & INSTAR_BS_ZERO) && (st2 & INSTAR_BS_ZERO)) {
            /* nothing to do */
        } else if ((st1 & INSTAR_BS_ALLOCATED) == (st2 & INSTAR_BS_ALLOCATED)) {
            if (st1 & INSTAR_BS_ALLOCATED) {
                uint64_t pnum;

                if (chunk > IO_BUF)
                    chunk = IO_BUF;
                if (direct(st1, map1, dev1, chunk) && direct(st2, map2, dev2, chunk)) {
                    bool differ;

                    if (hc_cmp(dev1, map1, dev2, map2, chunk, &differ, &pnum) < 0)
                        done(INSTAR_DATA_EREAD, GBS_EIO, off, 1);
                    if (differ || pnum != chunk)
                        done(INSTAR_DATA_MISMATCH, 0, off + (differ ? 0 : pnum), 0);
                    goto next;
                }
                ret = gbs_pread(bs1, off, buf1, (size_t)chunk);
                if (ret < 0)
                    done(INSTAR_DATA_EREAD, (uint32_t)-ret, off, 1);
                ret = gbs_pread(bs2, off, buf2, (size_t)chunk);
                if (ret < 0)
                    done(INSTAR_DATA_EREAD, (uint32_t)-ret, off, 2);
                bool differ = compare_buffers(buf1, buf2, chunk, &pnum);

                if (differ || pnum != chunk)
                    done(INSTAR_DATA_MISMATCH, 0, off + (differ ? 0 : pnum), 0);
            }
        } else {
            if (chunk > IO_BUF)
                chunk = IO_BUF;
            if (st1 & INSTAR_BS_ALLOCATED)
                check_empty(bs1, off, chunk, 1, false);
            else
                check_empty(bs2, off, chunk, 2, false);
        }
    next:
        off += chunk;
        progress_add(a.flags, chunk, base);
    }

    if (total1 != total2) {
        struct gbs *over = total1 > total2 ? bs1 : bs2;
        uint32_t img = total1 > total2 ? 1 : 2;

        size_warning(base);
        while (off < base) {
            int st = gbs_block_status_above(over, off, base - off, &chunk, NULL, NULL, NULL);

            if (st < 0)
                done(INSTAR_DATA_EALLOC, 0, off, img);
            if ((st & INSTAR_BS_ALLOCATED) && !(st & INSTAR_BS_ZERO)) {
                if (chunk > IO_BUF)
                    chunk = IO_BUF;
                check_empty(over, off, chunk, img, true);
            }
            off += chunk;
            progress_add(a.flags, chunk, base);
        }
    }
    done(INSTAR_DATA_IDENTICAL, 0, 0, 0);
}
