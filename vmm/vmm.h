/*
 * vmm: the host monitor.  The only host code that touches /dev/kvm and the
 * only code that moves bytes between image file descriptors and guest RAM.
 * It never interprets those bytes.
 */
#ifndef VMM_H
#define VMM_H

#include <stddef.h>
#include <stdint.h>

#include "instar/abi.h"

/* One block device handed to the guest; the caller owns fd. */
struct vmm_dev {
    int fd;
    uint64_t size;        /* bytes; the guest sees this in boot info */
    uint64_t write_limit; /* writes may extend the file up to here */
    uint32_t flags;       /* INSTAR_DEV_READ / INSTAR_DEV_WRITE */
};

/*
 * Receives a batch of INSTAR_HC_REPORT records, still unvalidated (the
 * bytes are in guest RAM; copy what you keep).  Returns 0, or -1 to end
 * the run as a protocol violation.
 */
typedef int (*vmm_report_fn)(void *opaque, const void *recs, size_t len);

struct vmm_config {
    uint64_t mem_size;    /* guest RAM bytes; 0 = default */
    unsigned watchdog_ms; /* no-hypercall limit; 0 = default */
    vmm_report_fn report; /* NULL: INSTAR_HC_REPORT is a protocol error */
    void *report_opaque;
};

/*
 * Test-only fault injection: with INSTAR_FAULT_WRITES=N in the environment
 * the run stops with VMM_FAULT_INJECTED when the guest asks for its
 * (N+1)-th block write or truncate, which is not performed.  Crash tests
 * sweep N over every write of a mutating operation.
 */
#define VMM_FAULT_ENV "INSTAR_FAULT_WRITES"

/* How a run ended.  Only VMM_OK carries a result blob. */
enum vmm_status {
    VMM_OK = 0,
    VMM_ERR_KVM,        /* /dev/kvm missing or an ioctl failed (host side) */
    VMM_ERR_NOMEM,      /* could not allocate guest RAM */
    VMM_GUEST_PANIC,    /* the guest asserted: detail has expr/file/line */
    VMM_GUEST_TRAP,     /* CPU exception caught by the guest IDT */
    VMM_GUEST_SHUTDOWN, /* triple fault or other unrecoverable CPU state */
    VMM_GUEST_PROTOCOL, /* bad hypercall: unknown nr, bad address, ... */
    VMM_GUEST_WATCHDOG, /* no hypercall within watchdog_ms */
    VMM_GUEST_NORESULT, /* exited without (or with a failed) result */
    VMM_GUEST_EXIT,     /* called EXIT with a non-zero status */
    VMM_FAULT_INJECTED, /* stopped by VMM_FAULT_ENV (tests only) */
};

struct vmm_outcome {
    enum vmm_status status;
    char detail[256];  /* human-readable, for the error message */
    void *result;      /* malloc'd copy of the result blob (VMM_OK) */
    size_t result_len; /* its length */
    uint64_t nexits;   /* hypercalls served, for benchmarks */
    uint64_t nwrites;  /* block writes and truncates performed */
};

/*
 * vmm_run - boot the embedded guest, let it plan op over devs, and wait for
 * it to finish.
 * @cfg: RAM and watchdog limits (NULL for defaults; env INSTAR_GUEST_MEM_MB
 *       and INSTAR_WATCHDOG_MS override the defaults)
 * @op, @args, @args_len: copied into boot info (args_len <= INSTAR_ARGS_MAX)
 * @devs, @ndevs: block devices, at most INSTAR_DEV_MAX
 * @out: filled in all cases; release with vmm_outcome_release()
 * Returns 0 when out->status == VMM_OK, else -1.  Never exits the process.
 */
int vmm_run(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
            const struct vmm_dev *devs, unsigned ndevs, struct vmm_outcome *out);

/*
 * vmm_run_image - as vmm_run, but boot the given flat guest image instead
 * of the embedded one.  Used by the negative-guest tests.
 */
int vmm_run_image(const void *image, size_t image_len, const struct vmm_config *cfg, uint32_t op,
                  const void *args, size_t args_len, const struct vmm_dev *devs, unsigned ndevs,
                  struct vmm_outcome *out);

void vmm_outcome_release(struct vmm_outcome *out);

/* True if /dev/kvm can be opened read-write. */
int vmm_available(void);

#endif /* VMM_H */
