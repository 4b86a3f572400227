/*
 * The host-side fake of the guest runtime (fake_guest.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_guest.h"

/*
 * guest/blk.c, built here with the fake heap so that fake_guest_end()
 * can reach its block cache (static) and drop it with the heap.
 */
#define malloc  fake_malloc
#define calloc  fake_calloc
#define realloc fake_realloc
#define free    fake_free
#include "../guest/blk.c"
#undef malloc
#undef calloc
#undef realloc
#undef free

static struct instar_boot_info boot_info;
const struct instar_boot_info *boot = &boot_info;

struct fake_result fake_result;
jmp_buf fake_exit;
int64_t fake_exit_status;
int64_t (*fake_on_report)(const void *recs, uint64_t len);

static struct fake_dev devs[INSTAR_DEV_MAX];
static unsigned ndevs;
/* Per device: which FAKE_HOLE_SIZE blocks are holes (all zeros). */
static uint8_t *holes[INSTAR_DEV_MAX];

__attribute__((noreturn, format(printf, 1, 2))) static void fake_bug(const char *fmt, ...);

static void fake_bug(const char *fmt, ...)
{
    va_list ap;

    fputs("fake_guest: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* --- the guest heap: libc blocks on one list, FAKE_MEM_CAP live bytes --- */

struct fake_blk {
    struct fake_blk *prev, *next;
    size_t size;
    size_t pad; /* keeps the payload 16-byte aligned, as guest/alloc.c does */
};

static struct fake_blk heap = {&heap, &heap, 0, 0};
static size_t heap_live;

void *fake_malloc(size_t size);
void *fake_calloc(size_t n, size_t size);
void *fake_realloc(void *p, size_t size);
void fake_free(void *p);

void *fake_malloc(size_t size)
{
    struct fake_blk *b;

    if (size > FAKE_MEM_CAP - heap_live)
        return NULL;
    b = malloc(sizeof(*b) + size);
    if (!b)
        return NULL;
    b->size = size;
    b->prev = heap.prev;
    b->next = &heap;
    heap.prev->next = b;
    heap.prev = b;
    heap_live += size;
    return b + 1;
}

void fake_free(void *p)
{
    struct fake_blk *b;

    if (!p)
        return;
    b = (struct fake_blk *)p - 1;
    b->prev->next = b->next;
    b->next->prev = b->prev;
    heap_live -= b->size;
    free(b);
}

void *fake_calloc(size_t n, size_t size)
{
    void *p;

    if (size && n > SIZE_MAX / size)
        return NULL;
    p = fake_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

/* guest/alloc.c's realloc: a block never shrinks. */
void *fake_realloc(void *p, size_t size)
{
    size_t have;
    void *q;

    if (!p)
        return fake_malloc(size);
    have = ((struct fake_blk *)p - 1)->size;
    if (size <= have)
        return p;
    q = fake_malloc(size);
    if (!q)
        return NULL;
    memcpy(q, p, have);
    fake_free(p);
    return q;
}

size_t fake_heap_live(void)
{
    return heap_live;
}

/* --- runs --- */

static bool block_is_hole(const struct fake_dev *d, uint64_t b)
{
    static const uint8_t zeros[FAKE_HOLE_SIZE];
    size_t start = (size_t)b * FAKE_HOLE_SIZE, n = d->len - start;

    if (n > FAKE_HOLE_SIZE)
        n = FAKE_HOLE_SIZE;
    return !memcmp(d->p + start, zeros, n);
}

void fake_guest_start(uint32_t op, const struct fake_dev *d, unsigned n)
{
    unsigned i;

    if (n > INSTAR_DEV_MAX)
        fake_bug("%u devices", n);
    memset(&boot_info, 0, sizeof(boot_info));
    boot_info.magic = INSTAR_BOOT_MAGIC;
    boot_info.abi_version = INSTAR_ABI_VERSION;
    boot_info.mem_size = FAKE_MEM_CAP;
    boot_info.op = op;
    boot_info.ndevices = n;
    memset(&fake_result, 0, sizeof(fake_result));
    fake_exit_status = 0;
    ndevs = n;
    for (i = 0; i < n; i++) {
        uint64_t nb = (d[i].len + FAKE_HOLE_SIZE - 1) / FAKE_HOLE_SIZE, b, data = 0;

        devs[i] = d[i];
        holes[i] = malloc(nb ? nb : 1);
        if (!holes[i])
            fake_bug("out of memory");
        for (b = 0; b < nb; b++) {
            holes[i][b] = block_is_hole(&d[i], b);
            data += !holes[i][b];
        }
        boot_info.devices[i].size = d[i].len;
        boot_info.devices[i].flags = INSTAR_DEV_READ;
        boot_info.devices[i].allocated = data * FAKE_HOLE_SIZE;
    }
}

struct instar_boot_info *fake_boot(void)
{
    return &boot_info;
}

void fake_guest_end(void)
{
    unsigned i;

    while (heap.next != &heap)
        fake_free(heap.next + 1);
    /* guest/blk.c's state: its cache blocks were on the heap. */
    memset(cache, 0, sizeof(cache));
    cache_clock = 0;
    memset(dev_written, 0, sizeof(dev_written));
    memset(dev_len, 0, sizeof(dev_len));
    for (i = 0; i < ndevs; i++) {
        free(holes[i]);
        holes[i] = NULL;
    }
    ndevs = 0;
}

void fake_read(unsigned dev, uint64_t off, void *buf, size_t len)
{
    const struct fake_dev *d = &devs[dev];
    size_t n = 0;

    if (dev >= ndevs)
        fake_bug("fake_read of device %u", dev);
    if (off < d->len)
        n = d->len - off < len ? (size_t)(d->len - off) : len;
    memcpy(buf, d->p + off, n);
    memset((uint8_t *)buf + n, 0, len - n);
}

/* --- hypercalls --- */

static const struct fake_dev *dev_of(uint32_t handle, const char *call)
{
    if (handle >= ndevs)
        fake_bug("%s on device %u of %u", call, handle, ndevs);
    return &devs[handle];
}

int64_t hc_blk_read(uint32_t handle, uint64_t offset, void *buf, uint64_t len)
{
    const struct fake_dev *d = dev_of(handle, "read");

    /* guest/blk.c clips every read to the device: anything else is a guest bug. */
    if (len > INSTAR_BLK_XFER_MAX || offset > d->len || len > d->len - offset)
        fake_bug("read of [%llu, +%llu) from device %u of %zu bytes", (unsigned long long)offset,
                 (unsigned long long)len, handle, d->len);
    memcpy(buf, d->p + offset, (size_t)len);
    return (int64_t)len;
}

int64_t hc_seek(uint32_t handle, uint64_t offset, uint64_t *data, uint64_t *hole, uint32_t *status)
{
    const struct fake_dev *d = dev_of(handle, "seek");
    uint64_t nb = (d->len + FAKE_HOLE_SIZE - 1) / FAKE_HOLE_SIZE, b;

    *data = *hole = 0;
    *status = INSTAR_SEEK_OK;
    if (offset >= d->len)
        return INSTAR_HC_ERANGE; /* as vmm/hc.c answers */
    /* lseek(SEEK_DATA), then SEEK_HOLE from there (EOF is a hole). */
    for (b = offset / FAKE_HOLE_SIZE; b < nb && holes[handle][b]; b++)
        ;
    if (b == nb) {
        *status = INSTAR_SEEK_NXIO;
        return 0;
    }
    *data = b * FAKE_HOLE_SIZE > offset ? b * FAKE_HOLE_SIZE : offset;
    if (*data != offset) {
        *hole = offset;
        return 0;
    }
    for (; b < nb && !holes[handle][b]; b++)
        ;
    *hole = b == nb ? d->len : b * FAKE_HOLE_SIZE;
    return 0;
}

/* As vmm/hc.c: the answers that follow the first one's region, up to max. */
int64_t hc_seek_ext(uint32_t handle, uint64_t offset, uint64_t *data, uint64_t *hole,
                    uint32_t *status, struct instar_seek_ext *exts, uint32_t max, uint32_t *n)
{
    const struct fake_dev *d = dev_of(handle, "seek");
    int64_t ret = hc_seek(handle, offset, data, hole, status);
    struct instar_seek_ext e = {.offset = offset, .data = *data, .hole = *hole, .status = *status};

    *n = 0;
    if (ret < 0)
        return ret;
    if (max > INSTAR_SEEK_EXT_MAX)
        fake_bug("seek with %u answers", max);
    while (*n < max && e.status == INSTAR_SEEK_OK) {
        uint64_t next = e.data == e.offset ? e.hole : e.data;

        if (next <= e.offset || next >= d->len)
            break;
        e.offset = next;
        hc_seek(handle, next, &e.data, &e.hole, &e.status);
        exts[(*n)++] = e;
    }
    return 0;
}

int64_t hc_result(const void *blob, uint64_t len)
{
    struct instar_result_hdr h;

    if (fake_result.got)
        fake_bug("a second result");
    if (len < sizeof(h) || len > INSTAR_RESULT_MAX)
        fake_bug("a result of %llu bytes", (unsigned long long)len);
    memcpy(&h, blob, sizeof(h));
    if (h.magic != INSTAR_RESULT_MAGIC || h.size != len || h.op != boot_info.op)
        fake_bug("a malformed result header");
    memcpy(&fake_result.r, blob, len < sizeof(fake_result.r) ? (size_t)len : sizeof(fake_result.r));
    fake_result.got = 1;
    return 0;
}

int64_t hc_report(const void *recs, uint64_t len)
{
    return fake_on_report ? fake_on_report(recs, len) : 0;
}

void hc_log(const char *msg, size_t len)
{
    (void)msg;
    (void)len;
}

void hc_exit(int64_t status)
{
    fake_exit_status = status;
    longjmp(fake_exit, 1);
}

void hc_panic(const char *expr, const char *file, unsigned line)
{
    fake_bug("guest assertion %s failed at %s:%u", expr, file, line);
}

/* The read side writes nothing: any of these is a bug. */
int64_t hc_blk_write(uint32_t handle, uint64_t offset, const void *buf, uint64_t len)
{
    (void)buf;
    fake_bug("write of [%llu, +%llu) to device %u", (unsigned long long)offset,
             (unsigned long long)len, handle);
}

int64_t hc_flush(uint32_t handle)
{
    fake_bug("flush of device %u", handle);
}

/* No write is made, so none has failed. */
int64_t hc_last_write_error(void)
{
    return 0;
}

/* No LUKS volume is created here: a clock that never moves would fail its benchmark. */
uint64_t hc_clock_ns(void)
{
    fake_bug("hc_clock_ns: no create in the read-side harness");
    return 0;
}

int64_t hc_truncate(uint32_t handle, uint64_t size, uint32_t mode)
{
    (void)mode;
    fake_bug("truncate of device %u to %llu", handle, (unsigned long long)size);
}

int64_t hc_zero(uint32_t handle, uint64_t offset, uint64_t len, uint32_t flags)
{
    (void)flags;
    fake_bug("zero of [%llu, +%llu) on device %u", (unsigned long long)offset,
             (unsigned long long)len, handle);
}

/* The harness opens no node writable, so no dirty image is ever repaired at open. */
struct gq_image;
int gq_repair_dirty(struct gq_image *img, uint32_t op, unsigned flags);
int gq_repair_dirty(struct gq_image *img, uint32_t op, unsigned flags)
{
    (void)img;
    (void)flags;
    fake_bug("repair of a dirty image at a writable open (op %u)", op);
}
