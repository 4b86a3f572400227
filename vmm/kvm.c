/*
 * The KVM backend: create a VM on raw /dev/kvm ioctls over the guest RAM
 * run.c prepared, run its one vCPU until the run is over, and serve each
 * port write through the shared dispatcher (hc.c).
 *
 * The watchdog needs KVM_RUN to return now and then, which only a signal
 * does.  The tick signal is blocked in this thread at all times, and
 * KVM_SET_SIGNAL_MASK unblocks it only while the vCPU runs: host work
 * (pread, write(2) of diagnostics, fdatasync) is never interrupted, and a
 * tick that lands during it stays pending until the next KVM_RUN, which
 * then returns at once (as QEMU does with its SIG_IPI).
 *
 * Nothing here exits the process: every failure becomes a struct
 * vmm_outcome for cmd/ to report.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmm_int.h"

#define VMM_WATCHDOG_TICK 50 /* ms between checks */

/*
 * /dev/kvm, opened once per process, and a VM the probe created: the
 * first run takes it instead of creating another (KVM_CREATE_VM is the
 * most expensive step of a run).
 */
static int kvm_fd = -1;
static int spare_vm_fd = -1;
static pid_t spare_vm_pid; /* a VM serves only the process that created it */
static int kvm_probe_errno;
static const char *kvm_probe_what = "";

int vmm_kvm_usable(void)
{
    static int usable = -1;
    int fd, r;

    if (usable >= 0)
        return usable;
    usable = 0;
    fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        kvm_probe_errno = errno;
        kvm_probe_what = "cannot open /dev/kvm";
        return 0;
    }
    r = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (r != KVM_API_VERSION) {
        kvm_probe_errno = r < 0 ? errno : EPROTO;
        kvm_probe_what = "unexpected KVM API version";
        close(fd);
        return 0;
    }
    r = ioctl(fd, KVM_CREATE_VM, 0);
    if (r < 0) {
        kvm_probe_errno = errno;
        kvm_probe_what = "KVM_CREATE_VM";
        close(fd);
        return 0;
    }
    kvm_fd = fd;
    spare_vm_fd = r;
    spare_vm_pid = getpid();
    usable = 1;
    return 1;
}

struct kvm_vcpu_state {
    int vm_fd, vcpu_fd;
    struct kvm_run *run;
    size_t run_size;
    uint8_t *ram; /* guest RAM mapped for the memory slot; never executable here */
};

static void kvm_release(struct kvm_vcpu_state *k, uint64_t ram_size)
{
    if (k->run)
        munmap(k->run, k->run_size);
    if (k->ram)
        munmap(k->ram, ram_size);
    if (k->vcpu_fd >= 0)
        close(k->vcpu_fd);
    if (k->vm_fd >= 0)
        close(k->vm_fd);
}

static int kvm_create(struct vmm *v, struct kvm_vcpu_state *k)
{
    struct kvm_userspace_memory_region region;
    int r, mmap_size;

    if (!vmm_kvm_usable()) {
        vmm_fail(v, VMM_ERR_SANDBOX, "KVM is not usable here: %s: %s", kvm_probe_what,
                 strerror(kvm_probe_errno));
        return -1;
    }
    if (spare_vm_fd >= 0 && spare_vm_pid != getpid()) {
        close(spare_vm_fd); /* inherited across fork: KVM would answer EIO */
        spare_vm_fd = -1;
    }
    if (spare_vm_fd >= 0) {
        k->vm_fd = spare_vm_fd;
        spare_vm_fd = -1;
    } else {
        k->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
        if (k->vm_fd < 0) {
            vmm_fail(v, VMM_ERR_SANDBOX, "KVM_CREATE_VM: %s", strerror(errno));
            return -1;
        }
    }
    k->ram =
        mmap(NULL, v->mem.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, v->mem.fd, 0);
    if (k->ram == MAP_FAILED) {
        k->ram = NULL;
        vmm_fail(v, VMM_ERR_NOMEM, "cannot map guest memory: %s", strerror(errno));
        return -1;
    }
    (void)madvise(k->ram, v->mem.size, MADV_DONTDUMP); /* image data: never in a core file */
    if (vmm_x86_setup_memory(k->ram, v->mem.size) < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "invalid guest memory size %llu",
                 (unsigned long long)v->mem.size);
        return -1;
    }
    region = (struct kvm_userspace_memory_region){
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = v->mem.size,
        .userspace_addr = (uintptr_t)k->ram,
    };
    if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
        return -1;
    }
    k->vcpu_fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, 0);
    if (k->vcpu_fd < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "KVM_CREATE_VCPU: %s", strerror(errno));
        return -1;
    }
    mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < (int)sizeof(struct kvm_run)) {
        vmm_fail(v, VMM_ERR_SANDBOX, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        return -1;
    }
    k->run_size = mmap_size;
    k->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, k->vcpu_fd, 0);
    if (k->run == MAP_FAILED) {
        k->run = NULL;
        vmm_fail(v, VMM_ERR_SANDBOX, "mmap of kvm_run: %s", strerror(errno));
        return -1;
    }
    r = vmm_x86_setup_vcpu(kvm_fd, k->vcpu_fd, v->image.entry_kvm);
    if (r < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "vCPU setup: %s", strerror(-r));
        return -1;
    }
    return 0;
}

static void watchdog_signal(int sig)
{
    (void)sig; /* only here so the tick can make KVM_RUN return */
}

/*
 * The periodic tick, aimed at this thread.  Its signal stays blocked
 * here; KVM_SET_SIGNAL_MASK lets it through during KVM_RUN only.
 */
static int watchdog_start(struct kvm_vcpu_state *k, timer_t *timer)
{
    struct sigaction sa;
    struct sigevent sev;
    struct itimerspec its = {
        .it_interval = {0, VMM_WATCHDOG_TICK * 1000000L},
        .it_value = {0, VMM_WATCHDOG_TICK * 1000000L},
    };
    /* struct kvm_signal_mask is {u32 len; u8 sigset[]}: the set follows len directly. */
    uint8_t buf[sizeof(struct kvm_signal_mask) + 8] __attribute__((aligned(8)));
    struct kvm_signal_mask *mask = (struct kvm_signal_mask *)buf;
    sigset_t cur;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = watchdog_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGRTMIN, &sa, NULL) < 0)
        return -errno;

    /* The mask KVM_RUN runs with: this thread's, less the tick. */
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    sigdelset(&cur, SIGRTMIN);
    mask->len = 8; /* the kernel's sigset_t on x86_64 */
    memcpy(mask->sigset, &cur, 8);
    if (ioctl(k->vcpu_fd, KVM_SET_SIGNAL_MASK, mask) < 0)
        return -errno;

    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGRTMIN;
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    if (timer_create(CLOCK_MONOTONIC, &sev, timer) < 0)
        return -errno;
    if (timer_settime(*timer, 0, &its, NULL) < 0) {
        timer_delete(*timer);
        return -errno;
    }
    return 0;
}

/* Take a pending tick off this thread, so the next KVM_RUN does not return at once for it. */
static void eat_tick(void)
{
    static const struct timespec zero;
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    while (sigtimedwait(&set, NULL, &zero) >= 0)
        ;
}

static const char *exit_name(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_HLT:
        return "halt";
    case KVM_EXIT_MMIO:
        return "access outside guest memory";
    case KVM_EXIT_FAIL_ENTRY:
        return "VM entry failure";
    case KVM_EXIT_INTERNAL_ERROR:
        return "KVM internal error";
    default:
        return "unexpected exit";
    }
}

static void kvm_loop(struct vmm *v, struct kvm_vcpu_state *k)
{
    struct kvm_run *run = k->run;

    while (!v->done) {
        if (ioctl(k->vcpu_fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                eat_tick();
                vmm_tick(v, 0);
                continue;
            }
            vmm_fail(v, VMM_ERR_SANDBOX, "KVM_RUN: %s", strerror(errno));
            break;
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 || run->io.count != 1 ||
                run->io.port < INSTAR_HC_PIO_BASE ||
                run->io.port >= INSTAR_HC_PIO_BASE + INSTAR_HC_MAX) {
                vmm_fail(v, VMM_GUEST_PROTOCOL, "guest used I/O port 0x%x outside the ABI",
                         run->io.port);
                break;
            }
            {
                uint32_t gpa;

                memcpy(&gpa, (uint8_t *)run + run->io.data_offset, sizeof(gpa));
                v->out->nexits++;
                vmm_hc_dispatch(v, run->io.port - INSTAR_HC_PIO_BASE, gpa);
                vmm_progress(v);
            }
            break;
        case KVM_EXIT_SHUTDOWN:
            vmm_fail(v, VMM_GUEST_SHUTDOWN, "the sandbox guest crashed (triple fault)");
            break;
        case KVM_EXIT_MMIO:
            vmm_fail(v, VMM_GUEST_PROTOCOL, "guest accessed address 0x%llx outside its memory",
                     (unsigned long long)run->mmio.phys_addr);
            break;
        case KVM_EXIT_INTERNAL_ERROR: {
            struct kvm_regs regs;

            if (ioctl(k->vcpu_fd, KVM_GET_REGS, &regs) < 0)
                memset(&regs, 0, sizeof(regs));
            vmm_fail(v, VMM_GUEST_SHUTDOWN,
                     "the sandbox guest stopped: KVM internal error %u at rip 0x%llx",
                     run->internal.suberror, (unsigned long long)regs.rip);
            break;
        }
        default:
            vmm_fail(v, VMM_GUEST_SHUTDOWN, "the sandbox guest stopped: %s (exit reason %u)",
                     exit_name(run->exit_reason), run->exit_reason);
            break;
        }
    }
}

void vmm_kvm_run(struct vmm *v)
{
    struct kvm_vcpu_state k = {.vm_fd = -1, .vcpu_fd = -1};
    timer_t timer;
    sigset_t tick, old;
    int r;

    sigemptyset(&tick);
    sigaddset(&tick, SIGRTMIN);
    pthread_sigmask(SIG_BLOCK, &tick, &old);
    if (kvm_create(v, &k) < 0)
        goto out;
    r = watchdog_start(&k, &timer);
    if (r < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "watchdog: %s", strerror(-r));
        goto out;
    }
    kvm_loop(v, &k);
    timer_delete(timer);
    eat_tick();
out:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    kvm_release(&k, v->mem.size);
}
