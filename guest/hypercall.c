/*
 * Hypercall stubs: write the guest-physical address of the argument struct
 * to the call's port (include/instar/abi.h), by way of the ring-0 gate.  Guest RAM is
 * identity-mapped below 4 GiB, so a pointer is its guest-physical address.
 */
#include "guest.h"

const struct instar_boot_info *boot = (const struct instar_boot_info *)INSTAR_BOOT_INFO_GPA;

static inline void hc_out(unsigned nr, const volatile void *arg)
{
    uint64_t gpa = (uint32_t)(uintptr_t)arg;
    uint64_t port = INSTAR_HC_PIO_BASE + nr;

    /* INT3 to hc_entry (guest/boot.S), which does the OUT in ring 0. */
    __asm__ volatile("int3" : "+a"(gpa), "+d"(port) : : "memory");
}

/* The code of the last write-class call that failed (0: none has). */
static int64_t last_write_err;

static void note_write(int64_t ret)
{
    if (ret < 0)
        last_write_err = ret;
}

int64_t hc_last_write_error(void)
{
    return last_write_err;
}

int64_t hc_blk_read(uint32_t handle, uint64_t offset, void *buf, uint64_t len)
{
    struct instar_hc_blk a = {
        .handle = handle, .offset = offset, .data = (uintptr_t)buf, .len = len, .ret = -1};

    hc_out(INSTAR_HC_BLKREAD, &a);
    return a.ret;
}

int64_t hc_blk_write(uint32_t handle, uint64_t offset, const void *buf, uint64_t len)
{
    struct instar_hc_blk a = {
        .handle = handle, .offset = offset, .data = (uintptr_t)buf, .len = len, .ret = -1};

    hc_out(INSTAR_HC_BLKWRITE, &a);
    note_write(a.ret);
    return a.ret;
}

int64_t hc_flush(uint32_t handle)
{
    struct instar_hc_flush a = {.handle = handle, .ret = -1};

    hc_out(INSTAR_HC_FLUSH, &a);
    note_write(a.ret);
    return a.ret;
}

int64_t hc_result(const void *blob, uint64_t len)
{
    struct instar_hc_result a = {.data = (uintptr_t)blob, .len = len, .ret = -1};

    hc_out(INSTAR_HC_RESULT, &a);
    return a.ret;
}

void hc_log(const char *msg, size_t len)
{
    struct instar_hc_log a = {.data = (uintptr_t)msg, .len = len};

    hc_out(INSTAR_HC_LOG, &a);
}

void hc_exit(int64_t status)
{
    struct instar_hc_exit a = {.status = status};

    for (;;)
        hc_out(INSTAR_HC_EXIT, &a);
}

void hc_panic(const char *expr, const char *file, unsigned line)
{
    struct instar_hc_panic a = {.expr = (uintptr_t)expr, .file = (uintptr_t)file, .line = line};

    for (;;)
        hc_out(INSTAR_HC_PANIC, &a);
}

int64_t hc_report(const void *recs, uint64_t len)
{
    struct instar_hc_report a = {.data = (uintptr_t)recs, .len = len, .ret = -1};

    hc_out(INSTAR_HC_REPORT, &a);
    return a.ret;
}

int64_t hc_truncate(uint32_t handle, uint64_t size, uint32_t mode)
{
    struct instar_hc_truncate a = {.handle = handle, .mode = mode, .size = size, .ret = -1};

    hc_out(INSTAR_HC_TRUNCATE, &a);
    note_write(a.ret);
    return a.ret;
}

int64_t hc_copy(uint32_t src, uint64_t src_off, uint32_t dst, uint64_t dst_off, uint64_t len,
                uint32_t flags, uint32_t sparse_sectors, uint32_t alignment, uint64_t sector,
                int64_t *written)
{
    struct instar_hc_copy a = {.src = src,
                               .dst = dst,
                               .src_off = src_off,
                               .dst_off = dst_off,
                               .len = len,
                               .flags = flags,
                               .sparse_sectors = sparse_sectors,
                               .alignment = alignment,
                               .sector = sector,
                               .written = 0,
                               .ret = -1};

    hc_out(INSTAR_HC_COPY, &a);
    note_write(a.ret);
    if (written)
        *written = a.written;
    return a.ret;
}

int64_t hc_copyv(const struct instar_hc_copy *vec, uint32_t n, uint32_t *done, int64_t *written)
{
    struct instar_hc_copyv a = {.vec = (uintptr_t)vec, .n = n, .done = 0, .written = 0, .ret = -1};

    hc_out(INSTAR_HC_COPYV, &a);
    note_write(a.ret);
    *done = a.done;
    if (written)
        *written = a.written;
    return a.ret;
}

int64_t hc_zero(uint32_t handle, uint64_t offset, uint64_t len, uint32_t flags)
{
    struct instar_hc_zero a = {
        .handle = handle, .flags = flags, .offset = offset, .len = len, .ret = -1};

    hc_out(INSTAR_HC_ZERO, &a);
    note_write(a.ret);
    return a.ret;
}

int64_t hc_seek(uint32_t handle, uint64_t offset, uint64_t *data, uint64_t *hole, uint32_t *status)
{
    uint32_t n;

    return hc_seek_ext(handle, offset, data, hole, status, NULL, 0, &n);
}

int64_t hc_seek_ext(uint32_t handle, uint64_t offset, uint64_t *data, uint64_t *hole,
                    uint32_t *status, struct instar_seek_ext *exts, uint32_t max, uint32_t *n)
{
    struct instar_hc_seek a = {
        .handle = handle, .max_exts = max, .offset = offset, .exts = (uintptr_t)exts, .ret = -1};

    hc_out(INSTAR_HC_SEEK, &a);
    *data = a.data;
    *hole = a.hole;
    *status = a.status;
    *n = a.nexts;
    return a.ret;
}

uint64_t hc_clock_ns(void)
{
    struct instar_hc_clock a = {0};

    hc_out(INSTAR_HC_CLOCK, &a);
    return a.ns;
}

void hc_progress(uint32_t mode, uint64_t num, uint64_t den)
{
    struct instar_hc_progress a = {.mode = mode, .num = num, .den = den};

    hc_out(INSTAR_HC_PROGRESS, &a);
}

int64_t hc_cmp(uint32_t a, uint64_t a_off, uint32_t b, uint64_t b_off, uint64_t len, bool *differ,
               uint64_t *same_len)
{
    struct instar_hc_cmp c = {
        .a = a, .b = b, .a_off = a_off, .b_off = b_off, .len = len, .ret = -1};

    hc_out(INSTAR_HC_CMP, &c);
    *differ = c.differ != 0;
    *same_len = c.same_len;
    return c.ret;
}

int64_t hc_scan(uint32_t dev, uint64_t off, uint64_t len, uint32_t min_sparse, uint32_t alignment,
                uint64_t sector, uint32_t *runs, uint32_t max_runs, uint64_t *nruns)
{
    struct instar_hc_scan a = {.dev = dev,
                               .min_sparse = min_sparse,
                               .off = off,
                               .len = len,
                               .sector = sector,
                               .alignment = alignment,
                               .max_runs = max_runs,
                               .runs = (uintptr_t)runs,
                               .ret = -1};

    hc_out(INSTAR_HC_SCAN, &a);
    *nruns = a.nruns;
    return a.ret;
}
