/*
 * The vCPU loop: create a VM on raw /dev/kvm ioctls, load the guest, run it
 * until it ends the run, faults, breaks the protocol or goes quiet.
 *
 * Nothing here exits the process: every failure, host- or guest-side,
 * becomes a struct vmm_outcome for cmd/ to report.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmm_int.h"

#define VMM_MEM_DEFAULT   (64ULL << 20)
#define VMM_WATCHDOG_DEF  10000 /* ms without a hypercall */
#define VMM_WATCHDOG_TICK 50    /* ms between checks */

void vmm_fail(struct vmm *v, enum vmm_status st, const char *fmt, ...)
{
    va_list ap;

    if (v->done)
        return;
    v->done = true;
    v->out->status = st;
    va_start(ap, fmt);
    vsnprintf(v->out->detail, sizeof(v->out->detail), fmt, ap);
    va_end(ap);
}

int vmm_available(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *s = getenv(name);
    char *end;
    unsigned long long v;

    if (!s || !*s)
        return def;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return def;
    return v;
}

static int64_t ms_since(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void watchdog_signal(int sig)
{
    (void)sig; /* only here to make KVM_RUN return EINTR */
}

/* A periodic timer that interrupts KVM_RUN on this thread. */
static int watchdog_start(timer_t *timer)
{
    struct sigaction sa;
    struct sigevent sev;
    struct itimerspec its = {
        .it_interval = {0, VMM_WATCHDOG_TICK * 1000000L},
        .it_value = {0, VMM_WATCHDOG_TICK * 1000000L},
    };

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = watchdog_signal; /* no SA_RESTART: KVM_RUN must return */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGRTMIN, &sa, NULL) < 0)
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

static void vmm_release(struct vmm *v)
{
    if (v->run)
        munmap(v->run, v->run_size);
    if (v->mem.base)
        munmap(v->mem.base, v->mem.size);
    if (v->vcpu_fd >= 0)
        close(v->vcpu_fd);
    if (v->vm_fd >= 0)
        close(v->vm_fd);
    if (v->kvm_fd >= 0)
        close(v->kvm_fd);
}

static int vmm_create(struct vmm *v, const void *image, size_t image_len, uint64_t mem_size)
{
    struct kvm_userspace_memory_region region;
    int r, mmap_size;

    v->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (v->kvm_fd < 0) {
        vmm_fail(v, VMM_ERR_KVM, "cannot open /dev/kvm: %s", strerror(errno));
        return -1;
    }
    r = ioctl(v->kvm_fd, KVM_GET_API_VERSION, 0);
    if (r != KVM_API_VERSION) {
        vmm_fail(v, VMM_ERR_KVM, "unexpected KVM API version %d", r);
        return -1;
    }
    v->vm_fd = ioctl(v->kvm_fd, KVM_CREATE_VM, 0);
    if (v->vm_fd < 0) {
        vmm_fail(v, VMM_ERR_KVM, "KVM_CREATE_VM: %s", strerror(errno));
        return -1;
    }

    /* Guest RAM is data to the host: never PROT_EXEC. */
    v->mem.size = mem_size;
    v->mem.base = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (v->mem.base == MAP_FAILED) {
        v->mem.base = NULL;
        vmm_fail(v, VMM_ERR_NOMEM, "cannot allocate %llu MiB of guest memory: %s",
                 (unsigned long long)(mem_size >> 20), strerror(errno));
        return -1;
    }
    if (vmm_x86_setup_memory(&v->mem) < 0) {
        vmm_fail(v, VMM_ERR_KVM, "invalid guest memory size %llu", (unsigned long long)mem_size);
        return -1;
    }
    if (image_len > mem_size / 2 || INSTAR_GUEST_LOAD_GPA + image_len > mem_size) {
        vmm_fail(v, VMM_ERR_NOMEM, "guest image does not fit in guest memory");
        return -1;
    }
    memcpy(v->mem.base + INSTAR_GUEST_LOAD_GPA, image, image_len);

    region = (struct kvm_userspace_memory_region){
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = mem_size,
        .userspace_addr = (uintptr_t)v->mem.base,
    };
    if (ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        vmm_fail(v, VMM_ERR_KVM, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
        return -1;
    }
    v->vcpu_fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, 0);
    if (v->vcpu_fd < 0) {
        vmm_fail(v, VMM_ERR_KVM, "KVM_CREATE_VCPU: %s", strerror(errno));
        return -1;
    }
    mmap_size = ioctl(v->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < (int)sizeof(struct kvm_run)) {
        vmm_fail(v, VMM_ERR_KVM, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
        return -1;
    }
    v->run_size = mmap_size;
    v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu_fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        vmm_fail(v, VMM_ERR_KVM, "mmap of kvm_run: %s", strerror(errno));
        return -1;
    }
    r = vmm_x86_setup_vcpu(v->kvm_fd, v->vcpu_fd, INSTAR_GUEST_LOAD_GPA);
    if (r < 0) {
        vmm_fail(v, VMM_ERR_KVM, "vCPU setup: %s", strerror(-r));
        return -1;
    }
    return 0;
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

static void vmm_loop(struct vmm *v, unsigned watchdog_ms)
{
    struct kvm_run *run = v->run;

    clock_gettime(CLOCK_MONOTONIC, &v->last);
    while (!v->done) {
        if (ioctl(v->vcpu_fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                if (ms_since(&v->last) >= watchdog_ms)
                    vmm_fail(v, VMM_GUEST_WATCHDOG,
                             "the sandbox made no progress for %u ms and was stopped", watchdog_ms);
                continue;
            }
            vmm_fail(v, VMM_ERR_KVM, "KVM_RUN: %s", strerror(errno));
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
                clock_gettime(CLOCK_MONOTONIC, &v->last);
                v->out->nexits++;
                vmm_hc_dispatch(v, run->io.port - INSTAR_HC_PIO_BASE, gpa);
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

            if (ioctl(v->vcpu_fd, KVM_GET_REGS, &regs) < 0)
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

int vmm_run_image(const void *image, size_t image_len, const struct vmm_config *cfg, uint32_t op,
                  const void *args, size_t args_len, const struct vmm_dev *devs, unsigned ndevs,
                  struct vmm_outcome *out)
{
    struct vmm v;
    struct instar_boot_info *bi;
    uint64_t mem_size = cfg && cfg->mem_size ? cfg->mem_size : VMM_MEM_DEFAULT;
    unsigned watchdog_ms = cfg && cfg->watchdog_ms ? cfg->watchdog_ms : VMM_WATCHDOG_DEF;
    timer_t timer;
    bool timer_on = false;
    sigset_t block, old;

    memset(out, 0, sizeof(*out));
    memset(&v, 0, sizeof(v));
    v.kvm_fd = v.vm_fd = v.vcpu_fd = -1;
    v.out = out;
    v.debug = getenv("INSTAR_DEBUG") != NULL;
    if (cfg) {
        v.report = cfg->report;
        v.report_opaque = cfg->report_opaque;
    }
    if (getenv(VMM_FAULT_ENV)) {
        v.fault_on = true;
        v.fault_left = env_u64(VMM_FAULT_ENV, 0);
    }

    mem_size = env_u64("INSTAR_GUEST_MEM_MB", mem_size >> 20) << 20;
    watchdog_ms = (unsigned)env_u64("INSTAR_WATCHDOG_MS", watchdog_ms);
    mem_size = (mem_size + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
    if (mem_size < INSTAR_GUEST_MEM_MIN)
        mem_size = INSTAR_GUEST_MEM_MIN;
    if (mem_size > INSTAR_GUEST_MEM_MAX)
        mem_size = INSTAR_GUEST_MEM_MAX;

    if (ndevs > INSTAR_DEV_MAX || args_len > sizeof(bi->args)) {
        vmm_fail(&v, VMM_ERR_KVM, "too many devices or arguments for the sandbox");
        return -1;
    }
    if (vmm_create(&v, image, image_len, mem_size) < 0)
        goto out_release;

    bi = (struct instar_boot_info *)(v.mem.base + INSTAR_BOOT_INFO_GPA);
    bi->magic = INSTAR_BOOT_MAGIC;
    bi->abi_version = INSTAR_ABI_VERSION;
    bi->mem_size = mem_size;
    bi->op = op;
    bi->ndevices = ndevs;
    for (unsigned i = 0; i < ndevs; i++) {
        v.devs[i] =
            (struct vmm_devstate){devs[i].fd, devs[i].size, devs[i].write_limit, devs[i].flags};
        if (v.devs[i].write_limit < v.devs[i].size)
            v.devs[i].write_limit = v.devs[i].size;
        bi->devices[i] = (struct instar_dev){
            .size = devs[i].size, .write_limit = v.devs[i].write_limit, .flags = devs[i].flags};
    }
    v.ndevs = ndevs;
    if (args_len)
        memcpy(&bi->args, args, args_len);

    /* The watchdog tick must reach this thread to interrupt KVM_RUN. */
    if (watchdog_start(&timer) == 0)
        timer_on = true;
    sigemptyset(&block);
    sigaddset(&block, SIGRTMIN);
    pthread_sigmask(SIG_UNBLOCK, &block, &old);

    vmm_loop(&v, watchdog_ms);

    if (timer_on)
        timer_delete(timer);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

out_release:
    vmm_release(&v);
    if (out->status != VMM_OK) {
        free(out->result);
        out->result = NULL;
        out->result_len = 0;
        return -1;
    }
    return 0;
}

void vmm_outcome_release(struct vmm_outcome *out)
{
    free(out->result);
    out->result = NULL;
    out->result_len = 0;
}
