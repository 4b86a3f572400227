/*
 * Block reads with QEMU's semantics, through a small metadata cache.
 *
 * QEMU's file driver returns zeros for bytes past the end of the file, and
 * qcow2's open path relies on it (a truncated header reads as zeros); we
 * do the same so that validation sees what qemu-img sees.
 *
 * The cache holds BLK_CACHE_BLOCKS aligned blocks of BLK_CACHE_SIZE bytes
 * per device, replaced least-recently-used.  A table walk that reads one
 * 8-byte entry at a time therefore exits to the host once per 64 KiB.
 */
#include "guest.h"
#include "instar/ovf.h"

#define BLK_CACHE_SHIFT  16
#define BLK_CACHE_SIZE   (1u << BLK_CACHE_SHIFT)
#define BLK_CACHE_BLOCKS 64

struct cache_block {
    uint32_t handle;
    uint32_t valid;
    uint64_t offset; /* aligned to BLK_CACHE_SIZE */
    uint64_t stamp;
    uint8_t *data;
};

static struct cache_block cache[BLK_CACHE_BLOCKS];
static uint64_t cache_clock;

uint64_t gblk_size(uint32_t handle)
{
    if (handle >= boot->ndevices || handle >= INSTAR_DEV_MAX)
        return 0;
    return boot->devices[handle].size;
}

uint32_t gblk_flags(uint32_t handle)
{
    if (handle >= boot->ndevices || handle >= INSTAR_DEV_MAX)
        return 0;
    return boot->devices[handle].flags;
}

/* Read [offset, offset+len) straight from the host; zero what lies past EOF. */
int gblk_pread_direct(uint32_t handle, uint64_t offset, void *dst, size_t len)
{
    uint8_t *buf = dst;

    /* A device the planner writes has the length its writes gave it. */
    if (gdev_written(handle))
        return gdev_pread(handle, offset, dst, len) < 0 ? -INSTAR_ERR_IO : 0;
    while (len) {
        uint64_t n = len < INSTAR_BLK_XFER_MAX ? len : INSTAR_BLK_XFER_MAX;
        uint64_t size = gblk_size(handle);
        int64_t got = 0;

        if (offset < size) {
            uint64_t avail = size - offset;

            got = hc_blk_read(handle, offset, buf, n < avail ? n : avail);
            if (got < 0)
                return -INSTAR_ERR_IO;
        }
        if ((uint64_t)got < n)
            memset(buf + got, 0, n - got);
        buf += n;
        len -= n;
        if (ovf_add_u64(offset, n, &offset))
            return len ? -INSTAR_ERR_IO : 0;
    }
    return 0;
}

static struct cache_block *cache_get(uint32_t handle, uint64_t aligned)
{
    struct cache_block *victim = NULL;

    for (int i = 0; i < BLK_CACHE_BLOCKS; i++) {
        struct cache_block *c = &cache[i];

        if (c->valid && c->handle == handle && c->offset == aligned) {
            c->stamp = ++cache_clock;
            return c;
        }
        if (!victim || !c->valid || (victim->valid && c->stamp < victim->stamp))
            victim = c;
    }
    if (!victim->data) {
        victim->data = malloc(BLK_CACHE_SIZE);
        if (!victim->data)
            return NULL;
    }
    victim->valid = 0;
    if (gblk_pread_direct(handle, aligned, victim->data, BLK_CACHE_SIZE) < 0)
        return NULL;
    victim->handle = handle;
    victim->offset = aligned;
    victim->valid = 1;
    victim->stamp = ++cache_clock;
    return victim;
}

/* --- Read-ahead windows (gblk_pread_ahead) --- */

#define AHEAD_WINDOWS 2

struct ahead_window {
    uint32_t handle;
    uint32_t valid;
    uint64_t offset, len, stamp;
    uint8_t *data; /* GBLK_AHEAD bytes */
};

static struct ahead_window ahead[AHEAD_WINDOWS];
static uint64_t ahead_clock;

int gblk_pread_ahead(uint32_t handle, uint64_t offset, void *buf, size_t len)
{
    struct ahead_window *w = NULL;
    uint64_t end;

    if (handle >= boot->ndevices || ovf_add_u64(offset, len, &end))
        return -INSTAR_ERR_IO;
    if (gdev_written(handle) || len > GBLK_AHEAD / 2)
        return gblk_pread_direct(handle, offset, buf, len);
    for (int i = 0; i < AHEAD_WINDOWS; i++) {
        struct ahead_window *c = &ahead[i];

        if (c->valid && c->handle == handle && offset >= c->offset && end <= c->offset + c->len) {
            c->stamp = ++ahead_clock;
            memcpy(buf, c->data + (offset - c->offset), len);
            return 0;
        }
        if (!w || !c->valid || (w->valid && c->stamp < w->stamp))
            w = c;
    }
    if (!w->data) {
        w->data = malloc(GBLK_AHEAD);
        if (!w->data)
            return gblk_pread_direct(handle, offset, buf, len);
    }
    /* The window reaches no further past the end than the read itself. */
    w->len = GBLK_AHEAD;
    if (offset < gblk_size(handle) && gblk_size(handle) - offset < w->len)
        w->len = gblk_size(handle) - offset;
    if (w->len < len)
        w->len = len;
    w->valid = 0;
    if (ovf_add_u64(offset, w->len, &end) || gblk_pread_direct(handle, offset, w->data, w->len) < 0)
        return -INSTAR_ERR_IO;
    w->handle = handle;
    w->offset = offset;
    w->valid = 1;
    w->stamp = ++ahead_clock;
    memcpy(buf, w->data, len);
    return 0;
}

/* --- Written devices --- */

static bool dev_written[INSTAR_DEV_MAX];
static uint64_t dev_len[INSTAR_DEV_MAX];

static bool dev_ok(uint32_t handle)
{
    return handle < boot->ndevices && handle < INSTAR_DEV_MAX;
}

static void dev_touch(uint32_t handle)
{
    if (!dev_written[handle]) {
        dev_written[handle] = true;
        dev_len[handle] = gblk_size(handle);
    }
}

bool gdev_written(uint32_t handle)
{
    return dev_ok(handle) && dev_written[handle];
}

uint64_t gdev_length(uint32_t handle)
{
    if (!dev_ok(handle))
        return 0;
    return dev_written[handle] ? dev_len[handle] : gblk_size(handle);
}

int gdev_pread(uint32_t handle, uint64_t offset, void *buf, size_t len)
{
    uint64_t size = gdev_length(handle);
    uint8_t *p = buf;

    if (!dev_ok(handle))
        return INSTAR_HC_EINVAL;
    while (len) {
        uint64_t n = len < INSTAR_BLK_XFER_MAX ? len : INSTAR_BLK_XFER_MAX;
        int64_t got = 0;

        if (offset < size) {
            uint64_t avail = size - offset;

            got = hc_blk_read(handle, offset, p, n < avail ? n : avail);
            if (got < 0)
                return (int)got;
        }
        if ((uint64_t)got < n)
            memset(p + got, 0, n - got);
        p += n;
        len -= n;
        if (ovf_add_u64(offset, n, &offset))
            return len ? INSTAR_HC_ERANGE : 0;
    }
    return 0;
}

int gdev_pwrite(uint32_t handle, uint64_t offset, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    if (!dev_ok(handle))
        return INSTAR_HC_EINVAL;
    dev_touch(handle);
    while (len) {
        uint64_t n = len < INSTAR_BLK_XFER_MAX ? len : INSTAR_BLK_XFER_MAX;
        int64_t put = hc_blk_write(handle, offset, p, n);

        if (put < 0)
            return (int)put;
        if ((uint64_t)put != n)
            return INSTAR_HC_EIO;
        p += n;
        len -= n;
        offset += n; /* the host checked offset + n against the write limit */
        if (offset > dev_len[handle])
            dev_len[handle] = offset;
    }
    return 0;
}

int gdev_truncate(uint32_t handle, uint64_t size, uint32_t mode)
{
    int64_t r;

    if (!dev_ok(handle))
        return INSTAR_HC_EINVAL;
    dev_touch(handle);
    /* Allocating modes grow in steps the host accepts (INSTAR_TRUNC_FILL_MAX). */
    while (mode != INSTAR_TRUNC_OFF && size > dev_len[handle] &&
           size - dev_len[handle] > INSTAR_TRUNC_FILL_MAX) {
        uint64_t step = dev_len[handle] + INSTAR_TRUNC_FILL_MAX;

        r = hc_truncate(handle, step, mode);
        if (r < 0)
            return (int)r;
        dev_len[handle] = step;
    }
    r = hc_truncate(handle, size, mode);
    if (r < 0)
        return (int)r;
    dev_len[handle] = size;
    return 0;
}

int gdev_zero(uint32_t handle, uint64_t offset, uint64_t len, uint32_t flags)
{
    uint64_t end;
    int64_t r;

    if (!dev_ok(handle) || ovf_add_u64(offset, len, &end))
        return INSTAR_HC_EINVAL;
    dev_touch(handle);
    while (len) {
        uint64_t n = len < INSTAR_ZERO_MAX ? len : INSTAR_ZERO_MAX;

        r = hc_zero(handle, offset, n, flags);
        if (r < 0)
            return (int)r;
        offset += n;
        len -= n;
    }
    if (end > dev_len[handle] && !(flags & INSTAR_ZERO_DISCARD))
        dev_len[handle] = end;
    return 0;
}

int gdev_discard(uint32_t handle, uint64_t offset, uint64_t len)
{
    return gdev_zero(handle, offset, len, INSTAR_ZERO_DISCARD);
}

int gdev_flush(uint32_t handle)
{
    int64_t r = hc_flush(handle);

    return r < 0 ? (int)r : 0;
}

/* --- Cached reads --- */

int gblk_pread(uint32_t handle, uint64_t offset, void *buf, size_t len)
{
    uint8_t *p = buf;
    uint64_t end;

    if (handle >= boot->ndevices || ovf_add_u64(offset, len, &end))
        return -INSTAR_ERR_IO;
    /* The cache does not see the planner's own writes. */
    if (gdev_written(handle))
        return gdev_pread(handle, offset, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
    if (len >= BLK_CACHE_SIZE)
        return gblk_pread_direct(handle, offset, p, len);

    while (len) {
        uint64_t aligned = offset & ~(uint64_t)(BLK_CACHE_SIZE - 1);
        uint64_t in = offset - aligned;
        size_t n = BLK_CACHE_SIZE - in;
        struct cache_block *c;

        if (n > len)
            n = len;
        c = cache_get(handle, aligned);
        if (!c)
            return -INSTAR_ERR_IO;
        memcpy(p, c->data + in, n);
        p += n;
        offset += n;
        len -= n;
    }
    return 0;
}
