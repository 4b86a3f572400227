/*
 * The checked guest-memory accessor (after Solo5's hvt_checked_gpa_p).
 */
#include <stddef.h>

#include "mem.h"

void *vmm_mem_ptr(const struct vmm_mem *m, uint64_t gpa, uint64_t len)
{
    uint64_t end;

    if (__builtin_add_overflow(gpa, len, &end))
        return NULL;
    if (gpa > m->size || end > m->size)
        return NULL;
    return m->base + gpa;
}

int vmm_mem_strdup(const struct vmm_mem *m, uint64_t gpa, char *dst, size_t dstlen)
{
    size_t i;

    if (dstlen == 0)
        return -1;
    dst[0] = '\0';
    if (gpa >= m->size)
        return -1;
    for (i = 0; i + 1 < dstlen && gpa + i < m->size; i++) {
        unsigned char c = m->base[gpa + i];

        if (!c)
            break;
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[i] = '\0';
    return 0;
}
