/*
 * The checked guest-memory accessor (after Solo5's hvt_checked_gpa_p),
 * by copy through guest RAM's descriptor: see mem.h for why.
 */
#include <errno.h>
#include <unistd.h>

#include "mem.h"

bool vmm_mem_check(const struct vmm_mem *m, uint64_t gpa, uint64_t len)
{
    uint64_t end;

    return !__builtin_add_overflow(gpa, len, &end) && gpa <= m->size && end <= m->size;
}

bool vmm_mem_check_write(const struct vmm_mem *m, uint64_t gpa, uint64_t len)
{
    if (!vmm_mem_check(m, gpa, len))
        return false;
    return len == 0 || gpa + len <= m->ro_start || gpa >= m->ro_end;
}

/* Copy between guest RAM and a host buffer, in either direction. */
static int mem_copy(const struct vmm_mem *m, uint64_t gpa, void *buf, uint64_t len, bool write)
{
    uint64_t done = 0;

    if (!(write ? vmm_mem_check_write(m, gpa, len) : vmm_mem_check(m, gpa, len)))
        return -1;
    while (done < len) {
        off_t off = (off_t)(gpa + done);
        ssize_t n = write ? pwrite(m->fd, (const char *)buf + done, len - done, off)
                          : pread(m->fd, (char *)buf + done, len - done, off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (uint64_t)n;
    }
    return 0;
}

int vmm_mem_read(const struct vmm_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
    return mem_copy(m, gpa, dst, len, false);
}

int vmm_mem_write(const struct vmm_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
    return mem_copy(m, gpa, (void *)src, len, true);
}

int vmm_mem_strdup(const struct vmm_mem *m, uint64_t gpa, char *dst, size_t dstlen)
{
    uint64_t n;
    size_t i;

    if (dstlen == 0)
        return -1;
    dst[0] = '\0';
    if (gpa >= m->size)
        return -1;
    n = m->size - gpa < dstlen - 1 ? m->size - gpa : dstlen - 1;
    if (vmm_mem_read(m, gpa, dst, n) < 0)
        return -1;
    for (i = 0; i < n && dst[i]; i++) {
        unsigned char c = (unsigned char)dst[i];

        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[i] = '\0';
    return 0;
}
