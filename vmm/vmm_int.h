/*
 * vmm internals: the backend-neutral run state shared by run.c (set-up,
 * selection, budgets), hc.c (the one checked hypercall dispatcher) and the
 * two ways of running the guest, kvm.c and proc.c.
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
    bool no_flush; /* FLUSH does not sync (struct vmm_dev) */
};

struct vmm {
    struct vmm_mem mem;            /* guest RAM, shared by both backends */
    struct instar_image_hdr image; /* the loaded image's header (host copy) */
    struct vmm_devstate devs[INSTAR_DEV_MAX];
    unsigned ndevs;
    unsigned watchdog_ms;   /* stop a guest silent for this long */
    uint64_t cpu_budget_ms; /* CPU time a run may use in all */
    uint64_t clock_scale;   /* VMM_CLOCK_SCALE_ENV, tests only: 1 otherwise */
    uint64_t report_budget; /* bytes of diagnostics a run may stream */
    uint64_t report_bytes;  /* streamed so far */
    bool debug;             /* INSTAR_DEBUG set: print guest LOG calls */
    bool done;              /* the run is over (see out->status) */
    struct timespec last;   /* when the last hypercall was answered */
    struct timespec cpu0;   /* the host thread's CPU clock at the start */
    int child_pid;          /* proc.c: the tender running the guest (0 with KVM) */
    /*
     * The silence watchdog (run.c, vmm_tick()): the first tick after the
     * last hypercall, and the run's CPU time then; marked says they are set.
     */
    bool marked;
    struct timespec mark_wall;
    uint64_t mark_cpu_ns;
    struct vmm_outcome *out;
    vmm_report_fn report;
    void *report_opaque;
    vmm_progress_fn progress;
    void *progress_opaque;
    bool fault_on;       /* VMM_FAULT_ENV set */
    uint64_t fault_left; /* writes still allowed */
    /*
     * The range of a device the run cannot write that the last SCAN read
     * (into hc.c's scan buffer): a COPY of bytes inside it writes them
     * from there instead of reading them again.
     */
    bool scan_kept;
    uint32_t scan_dev;
    uint64_t scan_off, scan_len;
    /* Hypercalls served, and the host's time serving them, by number (INSTAR_DEBUG prints them). */
    uint64_t hc_count[INSTAR_HC_MAX];
    uint64_t hc_ns[INSTAR_HC_MAX];
};

/*
 * The CPU-side view of a guest exception, as the KVM guest's IDT stub or
 * the process tender's signal handler saw it.
 */
struct vmm_trap {
    uint64_t vector, error_code, rip, cr2, rsp;
};

/* kvm.c: run the loaded guest on a KVM vCPU until v->done. */
void vmm_kvm_run(struct vmm *v);

/* proc.c: run the loaded guest in a confined child process until v->done. */
void vmm_proc_run(struct vmm *v);

/*
 * proc.c: what the process backend needs before the host confines itself:
 * the tender in its memfd, SIGCHLD at its default.  Returns the tender's
 * descriptor (the only thing the host may execute), or -1.
 */
int vmm_proc_prepare(void);

/* x86_64.c: page tables, GDT, long-mode registers (KVM only). */
int vmm_x86_setup_memory(uint8_t *base, uint64_t size);
int vmm_x86_setup_vcpu(int kvm_fd, int vcpu_fd, uint64_t entry);

/*
 * hc.c: serve one hypercall (nr = port - INSTAR_HC_PIO_BASE, gpa its
 * argument address), whichever backend caught it; sets v->done when the
 * run is over.
 */
void vmm_hc_dispatch(struct vmm *v, unsigned nr, uint32_t gpa);

/* hc.c: end the run with the guest's CPU exception, as one message for both backends. */
void vmm_guest_trap(struct vmm *v, const struct vmm_trap *t);

/*
 * run.c: called by a backend after each answered hypercall and at each
 * watchdog tick: restarts the silence watchdog (progress) and ends the run
 * when the watchdog or the CPU budget has run out.  child_cpu_ns is the
 * CPU time used by a guest process, 0 under KVM (where the guest's time
 * is this thread's).
 */
void vmm_progress(struct vmm *v);
void vmm_tick(struct vmm *v, uint64_t child_cpu_ns);

/* Milliseconds, microseconds from t to now (CLOCK_MONOTONIC). */
int64_t vmm_ms_since(const struct timespec *t);
int64_t vmm_us_since(const struct timespec *t);

/* Record how the run ended (first call wins). */
void vmm_fail(struct vmm *v, enum vmm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* VMM_INT_H */
