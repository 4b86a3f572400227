/*
 * Guest RAM as the host sees it, and the ONE checked accessor through which
 * every guest-supplied (address, length) pair passes.
 */
#ifndef VMM_MEM_H
#define VMM_MEM_H

#include <stdint.h>

struct vmm_mem {
    uint8_t *base; /* host mapping, PROT_READ|PROT_WRITE, never PROT_EXEC */
    uint64_t size; /* bytes */
    int fd;        /* the sealed memfd behind base (vmm/run.c) */
};

/*
 * vmm_mem_ptr - host pointer for guest range [gpa, gpa + len).
 * Returns NULL unless gpa + len does not overflow and lies within guest
 * RAM.  len == 0 is valid for any gpa <= size (the pointer must then not
 * be dereferenced).  The guest's own checks are never relied upon.
 */
void *vmm_mem_ptr(const struct vmm_mem *m, uint64_t gpa, uint64_t len);

/*
 * vmm_mem_strdup - copy a NUL-terminated guest string at gpa into dst
 * (dstlen bytes, always NUL-terminated), reading at most dstlen - 1 bytes
 * and never past the end of guest RAM; bytes outside printable ASCII are
 * replaced by '?'.  Returns 0, or -1 if gpa is outside guest RAM.
 */
int vmm_mem_strdup(const struct vmm_mem *m, uint64_t gpa, char *dst, size_t dstlen);

#endif /* VMM_MEM_H */
