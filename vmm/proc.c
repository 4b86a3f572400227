/*
 * The process backend: the guest runs in a child process confined by
 * seccomp, for hosts without a usable KVM (docs/sandbox.md).
 *
 * Per run, the child is a fresh exec of the tender (vmm/tender/), an ELF
 * embedded in instar and kept in a sealed memfd: its memory holds nothing
 * of this process.  It starts with two descriptors, guest RAM and a
 * one-page mailbox shared with this process; it maps both (guest text
 * read+exec there, never here), closes both, drops to a filter that allows
 * futex wait/wake, rt_sigreturn and exit, and jumps into the guest.  Each
 * INT3 arrives here as a {port, address} request in the mailbox and goes
 * to the same checked dispatcher as a KVM port write; the child never
 * holds an image descriptor, or any descriptor.
 *
 * The child runs while this process works, so guest RAM and the mailbox
 * can change at any moment: each request is copied once, and the
 * dispatcher reads guest RAM only by copy (mem.h).  A child that scribbles
 * on the mailbox, floods it, makes a forbidden system call or dies ends
 * the run with an outcome; nothing it does ends this process, except the
 * caller's own RLIMIT_CPU, which ends it the way it would have ended
 * qemu-img.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tender/tender.h"
#include "vmm_int.h"

#define PROC_TICK_MS 50 /* watchdog, budget and child checks */
/*
 * Polls of the mailbox before sleeping on it, here and in the child: with
 * a CPU each, a round trip by polling costs ~11 us against ~33 us by futex
 * wake-ups (measured with build/bench-vmm).  On one CPU, polling would
 * only keep the other side off it: no polling there.
 */
#define PROC_SPIN_HOST    20000
#define PROC_SPIN_CHILD   50000
#define PROC_CPU_BACKSTOP 5 /* s past the budget before the kernel's own limit */
#define PROC_AS_SLACK     (64ULL << 20)

extern const uint8_t instar_tender_image[];
extern const uint8_t instar_tender_image_end[];

/* Linux 6.3's memfd_create flag; glibc 2.36's headers lack it. */
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

/*
 * The tender, written once per process into a sealed, executable memfd,
 * and what the preparation found; both settle at the first call, before
 * the host is confined, so later calls make no system call.
 */
static int tender_fd = -1;
static int prepare_errno = -1; /* -1: not tried yet */
static bool spin_ok;           /* more than one CPU to run on */

static int tender_load(void)
{
    size_t len = (size_t)(instar_tender_image_end - instar_tender_image), done = 0;
    int fd;

    /* MFD_EXEC: kernels with vm.memfd_noexec would otherwise seal it non-executable. */
    fd = memfd_create("instar-tender", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL) /* kernels before 6.3 know no MFD_EXEC */
        fd = memfd_create("instar-tender", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    while (done < len) {
        ssize_t n = write(fd, instar_tender_image + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;

            close(fd);
            return -e;
        }
        done += (size_t)n;
    }
    if (fchmod(fd, 0500) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        int e = errno;

        close(fd);
        return -e;
    }
    tender_fd = fd;
    return 0;
}

int vmm_proc_prepare(void)
{
    struct sigaction sa;
    cpu_set_t cpus;

    if (prepare_errno >= 0) {
        errno = prepare_errno;
        return prepare_errno ? -1 : tender_fd;
    }
    /*
     * A caller that left SIGCHLD ignored (or SA_NOCLDWAIT) would have our
     * children reaped by the kernel, and their exit status lost.
     */
    if (sigaction(SIGCHLD, NULL, &sa) == 0 &&
        (sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT))) {
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        sigaction(SIGCHLD, &sa, NULL);
    }
    if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0)
        spin_ok = CPU_COUNT(&cpus) > 1;
    prepare_errno = -tender_load();
    errno = prepare_errno;
    return prepare_errno ? -1 : tender_fd;
}

/*
 * The child's RLIMIT_CPU.  Under KVM the guest's CPU time is this
 * process's, so a caller's `prlimit --cpu` ends the run as it would end
 * qemu-img; a child has a clock of its own, so it gets what is left of the
 * caller's limit after what this process and its earlier children used.
 * Without a caller's limit it gets the run's budget plus a margin, as a
 * backstop behind vmm_tick().  *caller says which of the two binds.
 */
static void cpu_limits(const struct vmm *v, struct tender_setup *s, bool *caller)
{
    uint64_t backstop = v->cpu_budget_ms / 1000 + PROC_CPU_BACKSTOP, used;
    struct rusage self, kids;
    struct rlimit rl;

    s->cpu_cur = s->cpu_max = backstop;
    *caller = false;
    if (getrlimit(RLIMIT_CPU, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    used = (uint64_t)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec +
                      kids.ru_stime.tv_sec);
    if ((uint64_t)rl.rlim_cur > used + backstop)
        return;
    *caller = true;
    s->cpu_cur = (uint64_t)rl.rlim_cur > used ? (uint64_t)rl.rlim_cur - used : 1;
    if (rl.rlim_max == RLIM_INFINITY)
        s->cpu_max = s->cpu_cur + PROC_CPU_BACKSTOP;
    else
        s->cpu_max = (uint64_t)rl.rlim_max > used ? (uint64_t)rl.rlim_max - used : 1;
    if (s->cpu_max < s->cpu_cur)
        s->cpu_cur = s->cpu_max;
}

/*
 * vfork and exec the tender with guest RAM as fd 0 and the mailbox as
 * fd 1, an empty environment, and every signal blocked until the tender
 * has its handlers (the parent's would otherwise run in the shared
 * memory of a vfork child).  Returns the pid, or -errno.
 */
static pid_t spawn_tender(int memfd, int mbfd)
{
    static char *const argv[] = {"instar-sandbox", NULL};
    static char *const envp[] = {NULL};
    sigset_t all, old;
    pid_t pid;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = vfork();
    if (pid == 0) {
        /* Only system calls from here: this is the parent's memory. */
        int m = fcntl(memfd, F_DUPFD, 3), b = fcntl(mbfd, F_DUPFD, 3);

        if (m < 0 || b < 0 || dup2(m, TENDER_FD_MEM) < 0 || dup2(b, TENDER_FD_MAILBOX) < 0 ||
            syscall(SYS_close_range, 2U, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
            _exit(127);
        syscall(SYS_execveat, tender_fd, "", argv, envp, AT_EMPTY_PATH);
        _exit(127);
    }
    if (pid < 0)
        pid = -errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pid;
}

struct proc_child {
    pid_t pid;
    int pidfd;
    volatile struct tender_mailbox *mb; /* shared with the child: hostile */
    uint32_t served;                    /* the last request sequence number served */
    bool ready;                         /* TENDER_MSG_READY seen: guest code may have run since */
    bool reaped;
    bool caller_cpu;  /* the child's RLIMIT_CPU is what is left of the caller's */
    uint64_t cpu_max; /* its hard RLIMIT_CPU, seconds */
    int status;       /* from wait4 once reaped */
    struct rusage ru; /* likewise */
};

static uint64_t child_cpu_ns(const struct proc_child *c)
{
    clockid_t cid;
    struct timespec t;

    if (c->reaped || clock_getcpuclockid(c->pid, &cid) != 0 || clock_gettime(cid, &t) != 0)
        return 0;
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void reap(struct proc_child *c)
{
    if (c->reaped)
        return;
    if (!c->ready || c->pidfd < 0)
        kill(c->pid, SIGKILL);
    else
        syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
    while (wait4(c->pid, &c->status, 0, NULL) < 0 && errno == EINTR)
        ;
    c->reaped = true;
}

/*
 * Children killed at the end of a run whose exit status nobody needs.
 * Tearing down a process takes ~0.8 ms here, so the host does not wait
 * for it: the next run, or the kernel's init once instar has exited,
 * reaps them.
 */
static pid_t dying[16];
static unsigned ndying;

static void reap_dying(bool all)
{
    unsigned i = 0;

    while (i < ndying) {
        pid_t r = waitpid(dying[i], NULL, all ? 0 : WNOHANG);

        if (r == 0 || (r < 0 && errno == EINTR)) {
            i++;
            continue;
        }
        dying[i] = dying[--ndying];
    }
}

static void end_child(struct proc_child *c)
{
    if (c->reaped)
        return;
    syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
    if (ndying == sizeof(dying) / sizeof(dying[0]))
        reap_dying(true);
    dying[ndying++] = c->pid;
    c->reaped = true;
}

static const char *setup_step(int status)
{
    switch (status) {
    case TENDER_EXIT_SETUP:
        return "bad set-up message";
    case TENDER_EXIT_MAP:
        return "cannot map guest memory or its mailbox";
    case TENDER_EXIT_SIGNALS:
        return "cannot install signal handlers";
    case TENDER_EXIT_RLIMIT:
        return "cannot set resource limits";
    case TENDER_EXIT_PRCTL:
        return "cannot set its death signal or no_new_privs";
    case TENDER_EXIT_SECCOMP:
        return "the kernel refused its seccomp filter";
    case 127:
        return "cannot execute the tender (is memfd execution forbidden here?)";
    default:
        return "unknown failure";
    }
}

/*
 * End this process as the caller's CPU limit would have ended qemu-img:
 * the kernel killed the child with the signal RLIMIT_CPU sends (SIGXCPU at
 * the soft limit, SIGKILL at the hard one) once its share ran out, so
 * this process, whose own time plus its children's is now over the
 * caller's limit, takes the same signal.
 */
static void die_like_qemu_img(int sig)
{
    struct sigaction sa;
    sigset_t set;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, NULL);
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
}

/* The child is gone: say why, unless the run had already ended. */
static void child_died(struct vmm *v, struct proc_child *c)
{
    uint64_t cpu_ns = child_cpu_ns(c); /* read before it is reaped */

    reap(c);
    if (v->done)
        return;
    if (!c->ready) {
        vmm_fail(v, VMM_ERR_SANDBOX, "the process sandbox could not start its child: %s",
                 WIFEXITED(c->status) ? setup_step(WEXITSTATUS(c->status))
                                      : "killed during set-up");
        return;
    }
    if (WIFSIGNALED(c->status)) {
        int sig = WTERMSIG(c->status);

        /*
         * RLIMIT_CPU sends SIGXCPU at the soft limit and SIGKILL at the
         * hard one.  The kernel counts in ticks, and our clocks read less
         * than it did (0.78 s against its 1.00 s, measured), so a SIGKILL
         * is taken as the limit once the child has used half of it; an
         * earlier SIGKILL (the OOM killer, say) is reported as such.
         */
        bool at_limit = sig == SIGXCPU || (sig == SIGKILL && cpu_ns >= c->cpu_max * 500000000ULL);

        if (at_limit && c->caller_cpu)
            die_like_qemu_img(sig);
        if (at_limit) {
            vmm_fail(v, VMM_GUEST_BUDGET,
                     "the sandbox used more than %llu s of CPU time and was stopped "
                     "(INSTAR_CPU_BUDGET_S)",
                     (unsigned long long)(v->cpu_budget_ms / 1000));
            return;
        }
        if (sig == SIGSYS) {
            vmm_fail(v, VMM_GUEST_KILLED,
                     "the sandbox guest made a forbidden system call and was killed");
            return;
        }
        vmm_fail(v, VMM_GUEST_KILLED, "the sandbox process was killed by signal %d (%s)", sig,
                 strsignal(sig));
        return;
    }
    vmm_fail(v, VMM_GUEST_KILLED, "the sandbox process exited (status %d) before the run was over",
             WEXITSTATUS(c->status));
}

/*
 * An exception the child's tender caught.  The CPU would have delivered
 * it through the guest's IDT, so do what a vCPU does: a gate the guest
 * filled reports the trap, a missing one escalates to a triple fault.
 */
static void child_exception(struct vmm *v, const struct tender_msg *m)
{
    struct vmm_trap t = {m->a[0], m->a[1], m->a[2], m->a[3], m->a[4]};
    uint8_t gate[16];

    if (t.vector >= 32 || vmm_mem_read(&v->mem, INSTAR_IDT_GPA + t.vector * 16, gate, 16) < 0 ||
        !(gate[5] & 0x80)) {
        vmm_fail(v, VMM_GUEST_SHUTDOWN, "the sandbox guest crashed (triple fault)");
        return;
    }
    vmm_guest_trap(v, &t);
}

static void answer(struct proc_child *c, uint32_t n)
{
    __atomic_store_n(&c->mb->resp_seq, n, __ATOMIC_RELEASE);
    syscall(SYS_futex, &c->mb->resp_seq, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Serve the request numbered n, copied once out of the mailbox. */
static void serve(struct vmm *v, struct proc_child *c, uint32_t n)
{
    struct tender_msg m;
    unsigned port;

    memcpy(&m, (const void *)&c->mb->req, sizeof(m));
    c->served = n;
    if (!c->ready) {
        if (m.kind != TENDER_MSG_READY) {
            vmm_fail(v, VMM_ERR_SANDBOX, "the process sandbox's child did not confine itself");
            return;
        }
        c->ready = true;
        answer(c, n);
        vmm_progress(v);
        return;
    }
    switch (m.kind) {
    case TENDER_MSG_HC:
        /* What a KVM exit shows: OUT DX, EAX writes a 16-bit port and 32 bits. */
        port = (unsigned)(m.a[0] & 0xffff);
        if (port < INSTAR_HC_PIO_BASE || port >= INSTAR_HC_PIO_BASE + INSTAR_HC_MAX) {
            vmm_fail(v, VMM_GUEST_PROTOCOL, "guest used I/O port 0x%x outside the ABI", port);
            return;
        }
        v->out->nexits++;
        vmm_hc_dispatch(v, port - INSTAR_HC_PIO_BASE, (uint32_t)m.a[1]);
        if (v->done)
            return;
        answer(c, n);
        vmm_progress(v);
        return;
    case TENDER_MSG_EXC:
        child_exception(v, &m);
        return;
    default:
        vmm_fail(v, VMM_GUEST_PROTOCOL, "the sandbox process sent an unknown request %u", m.kind);
        return;
    }
}

/* True if the child has exited (its pidfd is readable). */
static bool child_gone(const struct proc_child *c)
{
    struct pollfd p = {.fd = c->pidfd, .events = POLLIN};

    return poll(&p, 1, 0) > 0;
}

/*
 * Wait for requests on the mailbox: a short spin (a request often follows
 * an answer closely), then a futex sleep bounded by the tick, at which the
 * watchdog, the budgets and the child's life are checked.
 */
static void proc_loop(struct vmm *v, struct proc_child *c)
{
    static const struct timespec tick = {0, PROC_TICK_MS * 1000000L};
    struct timespec last_tick;

    clock_gettime(CLOCK_MONOTONIC, &last_tick);
    while (!v->done) {
        uint32_t n = __atomic_load_n(&c->mb->req_seq, __ATOMIC_ACQUIRE);

        for (int i = 0; n == c->served && spin_ok && i < PROC_SPIN_HOST; i++)
            n = __atomic_load_n(&c->mb->req_seq, __ATOMIC_ACQUIRE);
        if (n == c->served) {
            syscall(SYS_futex, &c->mb->req_seq, FUTEX_WAIT, n, &tick, NULL, 0);
            n = __atomic_load_n(&c->mb->req_seq, __ATOMIC_ACQUIRE);
        }
        if (n != c->served)
            serve(v, c, n);
        /* By the clock, not only on silence: a busy or flooding child is never silent. */
        if (!v->done && vmm_ms_since(&last_tick) >= PROC_TICK_MS) {
            clock_gettime(CLOCK_MONOTONIC, &last_tick);
            if (child_gone(c)) {
                /* Its last request (an exception) may have come with its death. */
                n = __atomic_load_n(&c->mb->req_seq, __ATOMIC_ACQUIRE);
                if (n != c->served)
                    serve(v, c, n);
                child_died(v, c);
                break;
            }
            vmm_tick(v, child_cpu_ns(c));
        }
    }
}

/* A sealed one-page memfd for the mailbox, mapped here. */
static int mailbox_create(struct proc_child *c)
{
    int fd = memfd_create("instar-mailbox", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    void *p;

    if (fd < 0)
        return -1;
    if (ftruncate(fd, 4096) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0 ||
        (p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        close(fd);
        return -1;
    }
    c->mb = p;
    return fd;
}

void vmm_proc_run(struct vmm *v)
{
    struct proc_child c = {.pid = -1, .pidfd = -1};
    struct tender_setup s;
    struct rlimit as;
    int mbfd;

    reap_dying(false);
    if (vmm_proc_prepare() < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "cannot load the process sandbox: %s", strerror(errno));
        return;
    }
    mbfd = mailbox_create(&c);
    if (mbfd < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "cannot create the sandbox's mailbox: %s", strerror(errno));
        return;
    }

    memset(&s, 0, sizeof(s));
    s.magic = TENDER_MAGIC;
    s.version = TENDER_VERSION;
    s.low = INSTAR_PROC_LOW_GPA;
    s.mem_size = v->mem.size;
    s.text_start = INSTAR_GUEST_LOAD_GPA;
    s.text_end = v->image.text_end;
    s.entry = v->image.entry_user;
    cpu_limits(v, &s, &c.caller_cpu);
    c.cpu_max = s.cpu_max;
    s.as_limit = v->mem.size + PROC_AS_SLACK;
    if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY &&
        (uint64_t)as.rlim_cur < s.as_limit)
        s.as_limit = as.rlim_cur;
    s.host_pid = (uint64_t)getpid();
    s.spin = spin_ok ? PROC_SPIN_CHILD : 0;
    memcpy((void *)&c.mb->setup, &s, sizeof(s));

    c.pid = spawn_tender(v->mem.fd, mbfd);
    close(mbfd);
    if (c.pid < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "cannot start the sandbox process: %s", strerror(-c.pid));
        goto out;
    }
    v->child_pid = c.pid;
    c.pidfd = (int)syscall(SYS_pidfd_open, c.pid, 0);
    if (c.pidfd < 0) {
        vmm_fail(v, VMM_ERR_SANDBOX, "pidfd_open: %s", strerror(errno));
        goto out;
    }
    proc_loop(v, &c);
out:
    if (c.pid > 0 && c.pidfd >= 0 && c.ready)
        end_child(&c);
    else if (c.pid > 0)
        reap(&c);
    if (c.pidfd >= 0)
        close(c.pidfd);
    munmap((void *)c.mb, 4096);
}
