/*
 * qemu-img convert's zero detection (-S): which leading sectors of a
 * buffer to write and which to leave as zeros, exactly as qemu-img.c's
 * is_allocated_sectors() and is_allocated_sectors_min() decide, so that a
 * converted image has qemu-img's holes.  Shared by the host (which runs it
 * on bytes it copies for the guest, INSTAR_HC_COPY) and the guest (on
 * bytes it has decoded); pure, freestanding.
 */
#ifndef INSTAR_SPARSE_H
#define INSTAR_SPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPARSE_SECTOR 512

/*
 * 64 bytes at a time, stopping at the first that are not all zero (as
 * qemu's buffer_is_zero() does): a data sector usually shows in its first
 * words, and reading the whole of every one was a fifth of a convert's
 * CPU (perf, vpc to raw).
 */
static inline bool sparse_sector_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;

    for (size_t i = 0; i < SPARSE_SECTOR / 8; i += 8)
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
            return false;
    return true;
}

static inline bool sparse_buffer_is_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i + SPARSE_SECTOR <= len; i += SPARSE_SECTOR)
        if (!sparse_sector_is_zero(p + i))
            return false;
    return true;
}

/* is_allocated_sectors(): n >= 1 sectors at buf, the first at sector_num. */
static inline int sparse_allocated(const uint8_t *buf, int n, int *pnum, int64_t sector_num,
                                   int alignment)
{
    bool is_zero;
    int i, tail;

    if (n <= 0) {
        *pnum = 0;
        return 0;
    }
    is_zero = sparse_sector_is_zero(buf);
    for (i = 1; i < n; i++) {
        buf += SPARSE_SECTOR;
        if (is_zero != sparse_sector_is_zero(buf))
            break;
    }
    if (i == n) {
        *pnum = i;
        return !is_zero;
    }
    tail = (int)((sector_num + i) & (alignment - 1));
    if (tail) {
        if (is_zero && i <= tail)
            is_zero = false;
        if (!is_zero) {
            i += alignment - tail;
            i = i < n ? i : n;
        } else {
            i -= tail;
        }
    }
    *pnum = i;
    return !is_zero;
}

/* is_allocated_sectors_min(): small zero runs inside data count as data. */
static inline int sparse_allocated_min(const uint8_t *buf, int n, int *pnum, int min,
                                       int64_t sector_num, int alignment)
{
    int ret, num_checked, num_used;

    if (n < min)
        min = n;
    ret = sparse_allocated(buf, n, pnum, sector_num, alignment);
    if (!ret)
        return ret;
    num_used = *pnum;
    buf += SPARSE_SECTOR * *pnum;
    n -= *pnum;
    sector_num += *pnum;
    num_checked = num_used;
    while (n > 0) {
        ret = sparse_allocated(buf, n, pnum, sector_num, alignment);
        buf += SPARSE_SECTOR * *pnum;
        n -= *pnum;
        sector_num += *pnum;
        num_checked += *pnum;
        if (ret)
            num_used = num_checked;
        else if (*pnum >= min)
            break;
    }
    *pnum = num_used;
    return 1;
}

#endif /* INSTAR_SPARSE_H */
