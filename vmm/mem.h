/*
 * Guest RAM as the host sees it, and the ONE checked accessor through which
 * every guest-supplied (address, length) pair passes.
 *
 * Guest RAM is a sealed memfd.  The host never reads or writes it through
 * a pointer: every access is a copy through the descriptor (pread/pwrite),
 * so each guest value the host uses is read once into a host buffer, which
 * a guest running alongside (the process backend) cannot change
 * afterwards.  It also keeps the host's page tables out of guest RAM: on
 * machines where the first touch of a page costs a hypervisor exit, a
 * copy through the kernel is several times cheaper (docs/benchmarks.md).
 * Only the KVM backend maps it, for its memory slot (vmm/kvm.c).
 */
#ifndef VMM_MEM_H
#define VMM_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vmm_mem {
    int fd;        /* the sealed memfd holding guest RAM */
    uint64_t size; /* bytes */
    /*
     * [ro_start, ro_end): the guest's text, which the host never writes
     * once the image is loaded (so no hypercall can plant code there;
     * the process backend maps it read+exec only).  Empty when 0, 0.
     */
    uint64_t ro_start, ro_end;
};

/*
 * vmm_mem_check - true if [gpa, gpa + len) does not overflow and lies in
 * guest RAM.  len == 0 is valid for any gpa <= size.  The guest's own
 * checks are never relied upon.
 */
bool vmm_mem_check(const struct vmm_mem *m, uint64_t gpa, uint64_t len);

/*
 * vmm_mem_check_write - as vmm_mem_check, and the range does not touch
 * [ro_start, ro_end).
 */
bool vmm_mem_check_write(const struct vmm_mem *m, uint64_t gpa, uint64_t len);

/*
 * vmm_mem_read / vmm_mem_write - copy guest [gpa, gpa + len) into dst, or
 * src into it.  Returns 0, or -1 if the range fails vmm_mem_check() (for a
 * write, vmm_mem_check_write()) or the copy fails.
 */
int vmm_mem_read(const struct vmm_mem *m, uint64_t gpa, void *dst, uint64_t len);
int vmm_mem_write(const struct vmm_mem *m, uint64_t gpa, const void *src, uint64_t len);

/*
 * vmm_mem_strdup - copy a NUL-terminated guest string at gpa into dst
 * (dstlen bytes, always NUL-terminated), reading at most dstlen - 1 bytes
 * and never past the end of guest RAM; bytes outside printable ASCII are
 * replaced by '?'.  Returns 0, or -1 if gpa is outside guest RAM.
 */
int vmm_mem_strdup(const struct vmm_mem *m, uint64_t gpa, char *dst, size_t dstlen);

#endif /* VMM_MEM_H */
