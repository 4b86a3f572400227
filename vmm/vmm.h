/*
 * vmm: the host monitor.  The only host code that touches /dev/kvm or the
 * sandboxed guest process, and the only code that moves bytes between
 * image file descriptors and guest RAM.  It never interprets those bytes.
 *
 * One contract, two ways to run the guest (docs/sandbox.md): a KVM VM
 * (kvm.c) and a seccomp-confined child process (proc.c + tender/).  Both
 * serve hypercalls through the same checked dispatcher (hc.c).
 */
#ifndef VMM_H
#define VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "instar/abi.h"

/* One block device handed to the guest; the caller owns fd. */
struct vmm_dev {
    int fd;
    uint64_t size;        /* bytes; the guest sees this in boot info */
    uint64_t write_limit; /* writes may extend the file up to here */
    uint32_t flags;       /* INSTAR_DEV_READ / INSTAR_DEV_WRITE */
    /*
     * The host only (the guest does not see it): INSTAR_HC_FLUSH does not
     * sync this device, as qemu's BDRV_O_NO_FLUSH (cache=unsafe, convert's
     * default) makes a flush stop short of the disk.
     */
    bool no_flush;
};

/*
 * Receives a batch of INSTAR_HC_REPORT records, still unvalidated (the
 * bytes are in guest RAM; copy what you keep).  Returns 0, or -1 to end
 * the run as a protocol violation.
 */
typedef int (*vmm_report_fn)(void *opaque, const void *recs, size_t len);

/* Receives INSTAR_HC_PROGRESS calls, validated (mode known, 0 < den, num <= den). */
typedef void (*vmm_progress_fn)(void *opaque, uint32_t mode, uint64_t num, uint64_t den);

/* Which way the guest runs. */
enum vmm_backend {
    VMM_BACKEND_AUTO = 0, /* INSTAR_SANDBOX, else KVM when a VM can be created, else process */
    VMM_BACKEND_KVM,      /* a KVM VM: /dev/kvm */
    VMM_BACKEND_PROCESS,  /* a child process under seccomp */
};

/* Environment variable choosing the backend: auto, kvm or process. */
#define VMM_SANDBOX_ENV "INSTAR_SANDBOX"

struct vmm_config {
    uint64_t mem_size;    /* guest RAM bytes; 0 = default */
    unsigned watchdog_ms; /* no-hypercall limit; 0 = default */
    vmm_report_fn report; /* NULL: INSTAR_HC_REPORT is a protocol error */
    void *report_opaque;
    vmm_progress_fn progress; /* NULL: progress calls are ignored */
    void *progress_opaque;
    enum vmm_backend backend; /* AUTO: as VMM_SANDBOX_ENV says */
};

/*
 * Test-only fault injection: with INSTAR_FAULT_WRITES=N in the environment
 * the run stops with VMM_FAULT_INJECTED when the guest asks for the
 * process's (N+1)-th block write or truncate, counted over all its runs,
 * which is not performed.  Crash tests sweep N over every write of a
 * mutating operation.
 */
#define VMM_FAULT_ENV "INSTAR_FAULT_WRITES"

/*
 * Test-only: with INSTAR_CLOCK_SCALE=K the clock the guest reads runs K
 * times faster (at most 10^6), so that the PBKDF2 benchmark of a LUKS
 * create ends after its first run and sets the minimum iteration counts.
 * Crash sweeps of LUKS writes use it: what they prove is the order of the
 * writes, and each of their many runs would otherwise time PBKDF2 for a
 * second.
 */
#define VMM_CLOCK_SCALE_ENV "INSTAR_CLOCK_SCALE"

/* How a run ended.  Only VMM_OK carries a result blob. */
enum vmm_status {
    VMM_OK = 0,
    VMM_ERR_SANDBOX,    /* the host could not set up the sandbox (no KVM, ...) */
    VMM_ERR_NOMEM,      /* could not allocate guest RAM */
    VMM_GUEST_PANIC,    /* the guest asserted: detail has expr/file/line */
    VMM_GUEST_TRAP,     /* CPU exception caught by the guest IDT */
    VMM_GUEST_SHUTDOWN, /* triple fault or other unrecoverable CPU state */
    VMM_GUEST_PROTOCOL, /* bad hypercall: unknown nr, bad address, ... */
    VMM_GUEST_WATCHDOG, /* no hypercall within watchdog_ms */
    VMM_GUEST_NORESULT, /* exited without (or with a failed) result */
    VMM_GUEST_EXIT,     /* called EXIT with a non-zero status */
    VMM_FAULT_INJECTED, /* stopped by VMM_FAULT_ENV (tests only) */
    VMM_GUEST_BUDGET,   /* used up its CPU time or diagnostics budget */
    VMM_GUEST_KILLED,   /* the guest process died: forbidden system call, ... */
};

struct vmm_outcome {
    enum vmm_status status;
    char detail[256];         /* human-readable, for the error message */
    void *result;             /* malloc'd copy of the result blob (VMM_OK) */
    size_t result_len;        /* its length */
    uint64_t nexits;          /* hypercalls served, for benchmarks */
    uint64_t nwrites;         /* block writes and truncates performed */
    enum vmm_backend backend; /* the backend that ran (or was to run) the guest */
};

/*
 * vmm_run - boot the embedded guest, let it plan op over devs, and wait for
 * it to finish.
 * @cfg: RAM and watchdog limits, backend (NULL for defaults; env
 *       INSTAR_GUEST_MEM_MB, INSTAR_WATCHDOG_MS, INSTAR_CPU_BUDGET_S,
 *       INSTAR_REPORT_BUDGET_MB and VMM_SANDBOX_ENV override the defaults)
 * @op, @args, @args_len: copied into boot info (args_len <= INSTAR_ARGS_MAX)
 * @devs, @ndevs: block devices, at most INSTAR_DEV_MAX
 * @out: filled in all cases; release with vmm_outcome_release()
 * Returns 0 when out->status == VMM_OK, else -1.  Never exits the process.
 */
int vmm_run(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
            const struct vmm_dev *devs, unsigned ndevs, struct vmm_outcome *out);

/*
 * vmm_run_image - as vmm_run, but boot the given flat guest image (which
 * starts with a struct instar_image_hdr) instead of the embedded one.
 * Used by the negative-guest tests.
 */
int vmm_run_image(const void *image, size_t image_len, const struct vmm_config *cfg, uint32_t op,
                  const void *args, size_t args_len, const struct vmm_dev *devs, unsigned ndevs,
                  struct vmm_outcome *out);

void vmm_outcome_release(struct vmm_outcome *out);

/*
 * vmm_cpu_features - the INSTAR_CPU_* bits every run passes the guest
 * (boot_info.cpu_features): what this CPU offers, by the host's own CPUID,
 * narrowed by INSTAR_CPU_FEATURES (a decimal mask) when that is set.
 */
uint32_t vmm_cpu_features(void);

/*
 * vmm_allocate_first_block - what QEMU's file driver does after growing an
 * empty file with preallocation off or falloc (file-posix.c
 * allocate_first_block(), "to optimize future alignment probing"): write
 * zeros over its first 512 bytes, or 4096 if the new size is at least
 * that, so the file occupies a host block as after qemu-img.  For every
 * truncate of a local file from length 0: the guest's TRUNCATE, and the
 * host's own (raw create and resize, a new target of convert or dd).
 * @fd: open read-write; @new_size: the size just set (> 0)
 * Failures are ignored, as QEMU ignores them.
 */
void vmm_allocate_first_block(int fd, uint64_t new_size);

/* True if a KVM VM can actually be created (probed once, then cached). */
int vmm_kvm_usable(void);

/* "kvm" or "process" ("auto" for VMM_BACKEND_AUTO). */
const char *vmm_backend_name(enum vmm_backend b);

/*
 * vmm_backend_from_env - the backend VMM_SANDBOX_ENV asks for: AUTO when
 * unset or "auto", -1 when it names no backend.
 */
int vmm_backend_from_env(void);

/*
 * vmm_confine_host - confine the calling process for good: no core dumps,
 * PR_SET_NO_NEW_PRIVS, and a default-kill seccomp allowlist (seccomp.c)
 * of the system calls the host needs from now on.  Returns 0 or -errno.
 */
int vmm_confine_host(void);

/*
 * vmm_confine_before_first_run - have the first vmm_run() call
 * vmm_confine_host() before it boots a guest, so the process is confined
 * before any byte of an image is read, however a command is structured.
 * A failure to confine ends that run with VMM_ERR_SANDBOX.
 */
void vmm_confine_before_first_run(void);

#endif /* VMM_H */
