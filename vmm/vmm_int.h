/*
 * vmm internals shared by kvm.c, x86_64.c and hc_*.c.
 */
#ifndef VMM_INT_H
#define VMM_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "mem.h"
#include "vmm.h"

struct vmm_devstate {
    int fd;
    uint64_t size; /* current size: grows with writes up to write_limit */
    uint64_t write_limit;
    uint32_t flags;
};

struct vmm {
    int kvm_fd, vm_fd, vcpu_fd;
    struct kvm_run *run;
    size_t run_size;
    struct vmm_mem mem;
    struct vmm_devstate devs[INSTAR_DEV_MAX];
    unsigned ndevs;
    bool debug;           /* INSTAR_DEBUG set: print guest LOG calls */
    bool done;            /* the guest ended the run */
    struct timespec last; /* time of the last hypercall */
    struct vmm_outcome *out;
    vmm_report_fn report;
    void *report_opaque;
    bool fault_on;       /* VMM_FAULT_ENV set */
    uint64_t fault_left; /* writes still allowed */
};

/* x86_64.c: page tables, GDT, long-mode registers. */
int vmm_x86_setup_memory(struct vmm_mem *mem);
int vmm_x86_setup_vcpu(int kvm_fd, int vcpu_fd, uint64_t entry);

/* hc.c: serve one hypercall; sets v->done when the run is over. */
void vmm_hc_dispatch(struct vmm *v, unsigned nr, uint32_t gpa);

/* Record how the run ended (first call wins). */
void vmm_fail(struct vmm *v, enum vmm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* VMM_INT_H */
