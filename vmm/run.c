/*
 * vmm_run(): the backend-neutral part of a run.  Reads the limits, picks a
 * backend, allocates guest RAM, loads the image and the boot info, hands
 * the run to kvm.c or proc.c, and turns whatever happened into a struct
 * vmm_outcome.  The watchdog and the budgets live here too, so both
 * backends stop a guest for the same reasons with the same words.
 *
 * Nothing here exits the process: every failure, host- or guest-side,
 * becomes an outcome for cmd/ to report.
 */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm_int.h"

#define VMM_MEM_DEFAULT      (64ULL << 20)
#define VMM_WATCHDOG_DEF     10000 /* ms without a hypercall */
#define VMM_CPU_BUDGET_DEF   600   /* s of CPU time per run */
#define VMM_REPORT_BUDGET_MB 4096  /* MiB of diagnostics per run */

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

/*
 * The guest runs on this CPU, as a process or as a vCPU, which executes
 * these SSE-encoded instructions natively whatever CPUID table it has; so
 * this process's CPUID answers for it.  The SHA code also uses SSSE3's
 * pshufb and palignr.  INSTAR_CPU_FEATURES lets tests and benchmarks run
 * each of nettle's code paths.
 */
uint32_t vmm_cpu_features(void)
{
    unsigned a, b, c, d;
    uint32_t f = INSTAR_CPU_X86_64;

    if (__get_cpuid(1, &a, &b, &c, &d)) {
        bool ssse3 = c & bit_SSSE3;

        if (c & bit_AES)
            f |= INSTAR_CPU_AESNI;
        if (ssse3 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA))
            f |= INSTAR_CPU_SHANI;
    }
    return f & (uint32_t)env_u64("INSTAR_CPU_FEATURES", INSTAR_CPU_ALL);
}

int64_t vmm_us_since(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000000 + (now.tv_nsec - t->tv_nsec) / 1000;
}

int64_t vmm_ms_since(const struct timespec *t)
{
    return vmm_us_since(t) / 1000;
}

static uint64_t ts_ns(const struct timespec *t)
{
    return (uint64_t)t->tv_sec * 1000000000ULL + (uint64_t)t->tv_nsec;
}

void vmm_progress(struct vmm *v)
{
    clock_gettime(CLOCK_MONOTONIC, &v->last);
    v->marked = false;
}

/*
 * The silence watchdog: has the guest been silent (no hypercall) for
 * watchdog_ms?  Wall time alone would stop a guest that only waits for a
 * CPU: at a load of 16 on two cores a guest gets an eighth of one, and a
 * PBKDF2 loop of 1.5 s of CPU is 12 s of silence.  So a silent guest is
 * stopped after watchdog_ms of wall time only if it also used watchdog_ms
 * of CPU in it (a guest spinning), or almost none (under 1% of the time
 * since the silence's first tick: a guest blocked, waiting without asking,
 * which more time would not help), and after 30 times watchdog_ms of wall
 * time in any case.  used_ns: the run's CPU time now (under KVM the
 * guest's is this thread's; a guest process's is its own clock).
 */
static bool silent_too_long(struct vmm *v, uint64_t used_ns)
{
    int64_t wall_ms = vmm_ms_since(&v->last), since_mark_ms;
    uint64_t cpu_ms;

    if (!v->marked) {
        clock_gettime(CLOCK_MONOTONIC, &v->mark_wall);
        v->mark_cpu_ns = used_ns;
        v->marked = true;
    }
    if (wall_ms < (int64_t)v->watchdog_ms)
        return false;
    cpu_ms = (used_ns - v->mark_cpu_ns) / 1000000;
    since_mark_ms = vmm_ms_since(&v->mark_wall);
    return cpu_ms >= v->watchdog_ms || (int64_t)cpu_ms * 100 < since_mark_ms ||
           wall_ms >= 30 * (int64_t)v->watchdog_ms;
}

void vmm_tick(struct vmm *v, uint64_t child_cpu_ns)
{
    struct timespec now;
    uint64_t used;

    if (v->done)
        return;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    used = ts_ns(&now) - ts_ns(&v->cpu0) + child_cpu_ns;
    if (silent_too_long(v, used)) {
        vmm_fail(v, VMM_GUEST_WATCHDOG, "the sandbox made no progress for %u ms and was stopped",
                 v->watchdog_ms);
        return;
    }
    /*
     * The silence watchdog resets on every hypercall, so a guest looping
     * on calls that fail would run forever: the CPU budget bounds the
     * whole run, guest and host work together.
     */
    if (used / 1000000 > v->cpu_budget_ms)
        vmm_fail(v, VMM_GUEST_BUDGET,
                 "the sandbox used more than %llu s of CPU time and was stopped "
                 "(INSTAR_CPU_BUDGET_S)",
                 (unsigned long long)(v->cpu_budget_ms / 1000));
}

const char *vmm_backend_name(enum vmm_backend b)
{
    switch (b) {
    case VMM_BACKEND_KVM:
        return "kvm";
    case VMM_BACKEND_PROCESS:
        return "process";
    default:
        return "auto";
    }
}

int vmm_backend_from_env(void)
{
    const char *s = getenv(VMM_SANDBOX_ENV);

    if (!s || !*s || !strcmp(s, "auto"))
        return VMM_BACKEND_AUTO;
    if (!strcmp(s, "kvm"))
        return VMM_BACKEND_KVM;
    if (!strcmp(s, "process"))
        return VMM_BACKEND_PROCESS;
    return -1;
}

/*
 * The image header, from the host's own copy of the image: the entries
 * must lie in the text, the text in the image, and the image (with bss)
 * in guest RAM, all page-aligned where the process backend maps them.
 */
static int image_check(struct vmm *v, const void *image, size_t len)
{
    struct instar_image_hdr h;
    uint64_t load = INSTAR_GUEST_LOAD_GPA;

    if (len < sizeof(h)) {
        vmm_fail(v, VMM_ERR_SANDBOX, "guest image too short");
        return -1;
    }
    memcpy(&h, image, sizeof(h));
    if (h.magic != INSTAR_IMAGE_MAGIC || h.abi_version != INSTAR_ABI_VERSION) {
        vmm_fail(v, VMM_ERR_SANDBOX, "guest image has no valid header (ABI %u, want %u)",
                 h.abi_version, INSTAR_ABI_VERSION);
        return -1;
    }
    if (h.text_end <= load || h.text_end % 4096 || h.image_end % 4096 || h.image_end < h.text_end ||
        h.text_end - load > len || len > h.image_end - load || h.entry_kvm < load ||
        h.entry_kvm >= h.text_end || h.entry_user < load || h.entry_user >= h.text_end) {
        vmm_fail(v, VMM_ERR_SANDBOX, "guest image header is inconsistent");
        return -1;
    }
    if (h.image_end > v->mem.size / 2) {
        vmm_fail(v, VMM_ERR_NOMEM, "guest image does not fit in guest memory");
        return -1;
    }
    v->image = h;
    return 0;
}

/*
 * Guest RAM: a sealed memfd (it can neither shrink nor grow), never mapped
 * here (mem.h); the KVM backend maps it for its memory slot, the process
 * backend's child maps it, guest text executable there only.
 */
static int mem_alloc(struct vmm *v, uint64_t size)
{
    int fd = memfd_create("instar-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        vmm_fail(v, VMM_ERR_NOMEM, "cannot allocate %llu MiB of guest memory: %s",
                 (unsigned long long)(size >> 20), strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    v->mem.size = size;
    v->mem.fd = fd;
    return 0;
}

static void mem_release(struct vmm *v)
{
    if (v->mem.fd >= 0)
        close(v->mem.fd);
    v->mem.fd = -1;
}

static bool confine_armed;

void vmm_confine_before_first_run(void)
{
    confine_armed = true;
}

/* Pick the backend: the caller's, else the environment's, else the best usable. */
static int pick_backend(struct vmm *v, const struct vmm_config *cfg)
{
    int b = cfg ? (int)cfg->backend : VMM_BACKEND_AUTO;

    if (b == VMM_BACKEND_AUTO)
        b = vmm_backend_from_env();
    if (b < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "%s must be auto, kvm or process, not '%s'", VMM_SANDBOX_ENV,
                 getenv(VMM_SANDBOX_ENV));
        return -1;
    }
    if (b == VMM_BACKEND_AUTO)
        b = vmm_kvm_usable() ? VMM_BACKEND_KVM : VMM_BACKEND_PROCESS;
    v->out->backend = (enum vmm_backend)b;
    return 0;
}

/* INSTAR_DEBUG: the hypercalls of the run by number, and the host's time serving them. */
static void print_hc_counts(const struct vmm *v)
{
    static const char *const names[INSTAR_HC_MAX] = {
        [INSTAR_HC_BLKREAD] = "blkread", [INSTAR_HC_BLKWRITE] = "blkwrite",
        [INSTAR_HC_FLUSH] = "flush",     [INSTAR_HC_RESULT] = "result",
        [INSTAR_HC_LOG] = "log",         [INSTAR_HC_PANIC] = "panic",
        [INSTAR_HC_TRAP] = "trap",       [INSTAR_HC_EXIT] = "exit",
        [INSTAR_HC_REPORT] = "report",   [INSTAR_HC_TRUNCATE] = "truncate",
        [INSTAR_HC_COPY] = "copy",       [INSTAR_HC_ZERO] = "zero",
        [INSTAR_HC_SEEK] = "seek",       [INSTAR_HC_PROGRESS] = "progress",
        [INSTAR_HC_CMP] = "cmp",         [INSTAR_HC_SCAN] = "scan",
        [INSTAR_HC_CLOCK] = "clock",     [INSTAR_HC_COPYV] = "copyv",
    };

    fprintf(stderr, "instar: sandbox: hypercalls by type (count, ms in the host):");
    for (unsigned i = 0; i < INSTAR_HC_MAX; i++)
        if (v->hc_count[i])
            fprintf(stderr, " %s %llu %.3f", names[i] ? names[i] : "?",
                    (unsigned long long)v->hc_count[i], (double)v->hc_ns[i] / 1e6);
    fprintf(stderr, "\n");
}

/*
 * What is left of VMM_FAULT_ENV's allowance, over every run of the process:
 * a command made of several runs (a target created in one, written in the
 * next; a dirty image repaired before the operation) is cut at its N-th
 * write counted from the first run's first, so a sweep of N reaches every
 * write of every run.  Runs are one at a time.
 */
static bool fault_read;
static uint64_t fault_budget;

int vmm_run_image(const void *image, size_t image_len, const struct vmm_config *cfg, uint32_t op,
                  const void *args, size_t args_len, const struct vmm_dev *devs, unsigned ndevs,
                  struct vmm_outcome *out)
{
    static struct instar_boot_info boot; /* too big for the stack of a small thread */
    struct vmm v;
    struct instar_boot_info *bi;
    uint64_t mem_size = cfg && cfg->mem_size ? cfg->mem_size : VMM_MEM_DEFAULT;
    unsigned watchdog_ms = cfg && cfg->watchdog_ms ? cfg->watchdog_ms : VMM_WATCHDOG_DEF;
    struct timespec t0;

    memset(out, 0, sizeof(*out));
    memset(&v, 0, sizeof(v));
    v.mem.fd = -1;
    v.out = out;
    v.debug = getenv("INSTAR_DEBUG") != NULL;
    if (cfg) {
        v.report = cfg->report;
        v.report_opaque = cfg->report_opaque;
        v.progress = cfg->progress;
        v.progress_opaque = cfg->progress_opaque;
    }
    if (getenv(VMM_FAULT_ENV)) {
        if (!fault_read)
            fault_budget = env_u64(VMM_FAULT_ENV, 0);
        fault_read = true;
        v.fault_on = true;
        v.fault_left = fault_budget;
    }
    if (pick_backend(&v, cfg) < 0)
        return -1;
    if (confine_armed) {
        int r = vmm_confine_host();

        if (r < 0) {
            vmm_fail(&v, VMM_ERR_SANDBOX, "cannot confine the host process: %s", strerror(-r));
            return -1;
        }
        confine_armed = false;
    }

    mem_size = env_u64("INSTAR_GUEST_MEM_MB", mem_size >> 20) << 20;
    mem_size = (mem_size + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
    if (mem_size < INSTAR_GUEST_MEM_MIN)
        mem_size = INSTAR_GUEST_MEM_MIN;
    if (mem_size > INSTAR_GUEST_MEM_MAX)
        mem_size = INSTAR_GUEST_MEM_MAX;
    v.watchdog_ms = (unsigned)env_u64("INSTAR_WATCHDOG_MS", watchdog_ms);
    if (v.watchdog_ms == 0)
        v.watchdog_ms = VMM_WATCHDOG_DEF;
    v.cpu_budget_ms = env_u64("INSTAR_CPU_BUDGET_S", VMM_CPU_BUDGET_DEF) * 1000;
    v.clock_scale = env_u64(VMM_CLOCK_SCALE_ENV, 1);
    if (v.clock_scale == 0 || v.clock_scale > 1000000)
        v.clock_scale = 1;
    v.report_budget = env_u64("INSTAR_REPORT_BUDGET_MB", VMM_REPORT_BUDGET_MB) << 20;

    if (ndevs > INSTAR_DEV_MAX || args_len > sizeof(bi->args)) {
        vmm_fail(&v, VMM_ERR_SANDBOX, "too many devices or arguments for the sandbox");
        return -1;
    }
    if (mem_alloc(&v, mem_size) < 0)
        goto out_release;
    if (image_check(&v, image, image_len) < 0)
        goto out_release;
    bi = &boot;
    memset(bi, 0, sizeof(*bi));
    bi->magic = INSTAR_BOOT_MAGIC;
    bi->abi_version = INSTAR_ABI_VERSION;
    bi->mem_size = mem_size;
    bi->op = op;
    bi->ndevices = ndevs;
    bi->cpu_features = vmm_cpu_features();
    for (unsigned i = 0; i < ndevs; i++) {
        v.devs[i] = (struct vmm_devstate){devs[i].fd, devs[i].size, devs[i].write_limit,
                                          devs[i].flags, devs[i].no_flush};
        if (v.devs[i].write_limit < v.devs[i].size)
            v.devs[i].write_limit = v.devs[i].size;
        bi->devices[i] = (struct instar_dev){
            .size = devs[i].size, .write_limit = v.devs[i].write_limit, .flags = devs[i].flags};
        /* What the file system allocated (bdrv_get_allocated_file_size): file metadata. */
        struct stat st;

        if (fstat(devs[i].fd, &st) == 0 && st.st_blocks > 0)
            bi->devices[i].allocated = (uint64_t)st.st_blocks * 512;
    }
    v.ndevs = ndevs;
    if (args_len)
        memcpy(&bi->args, args, args_len);
    if (vmm_mem_write(&v.mem, INSTAR_GUEST_LOAD_GPA, image, image_len) < 0 ||
        vmm_mem_write(&v.mem, INSTAR_BOOT_INFO_GPA, bi, sizeof(*bi)) < 0) {
        vmm_fail(&v, VMM_ERR_NOMEM, "cannot load the guest: %s", strerror(errno));
        goto out_release;
    }
    v.mem.ro_start = INSTAR_GUEST_LOAD_GPA;
    v.mem.ro_end = v.image.text_end;

    if (v.debug)
        fprintf(stderr, "instar: sandbox: %s backend, %llu MiB guest RAM\n",
                vmm_backend_name(out->backend), (unsigned long long)(mem_size >> 20));
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &v.cpu0);
    vmm_progress(&v);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (out->backend == VMM_BACKEND_KVM)
        vmm_kvm_run(&v);
    else
        vmm_proc_run(&v);
    if (v.debug) {
        fprintf(stderr, "instar: sandbox: run ended after %llu hypercalls in %.3f ms: %s\n",
                (unsigned long long)out->nexits, (double)vmm_us_since(&t0) / 1000,
                out->status == VMM_OK ? "ok" : out->detail);
        print_hc_counts(&v);
    }

out_release:
    mem_release(&v);
    if (v.fault_on)
        fault_budget = v.fault_left;
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
