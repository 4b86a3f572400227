/*
 * The tender: the program a process-backend child runs (after Solo5's spt
 * tender, tenders/spt/).  A static, freestanding ELF of a few KiB, embedded
 * in instar and executed fresh for each run, so the child's memory holds
 * nothing of the host's: this code, its stack, and guest RAM.
 *
 * It maps guest RAM at virtual == guest-physical addresses, turns the
 * guest's INT3 hypercalls (SIGTRAP) into {port, address} messages on its
 * one channel and CPU exceptions (SIGSEGV, SIGILL, ...) into exception
 * messages, confines itself, and jumps to the guest's ring-3 entry.  Where
 * Solo5's spt lets the unikernel make a few system calls on its own
 * descriptors, this child holds no file but the channel: every request is
 * served by the host's one checked dispatcher (vmm/hc.c).
 *
 * After the jump, everything here is guest-writable memory: the host
 * trusts nothing this process sends, and the seccomp filter is what holds.
 */
#include <stddef.h>
#include <stdint.h>

#include <asm/sigcontext.h>
#include <asm/unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/mman.h>
#include <linux/prctl.h>
#include <linux/resource.h>
#include <linux/seccomp.h>
#include <linux/signal.h>

#include "tender.h"

#define PAGE        4096ULL
#define ALTSTACK_SZ (64 * 1024)
#define AS_SLACK    (64ULL << 20) /* the tender's own mappings, beside guest RAM */

/* Linux's x86-64 rt_sigaction argument, and the ucontext a handler gets. */
struct k_sigaction {
    void (*handler)(int, void *, void *);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

struct k_ucontext {
    unsigned long uc_flags;
    void *uc_link;
    struct {
        void *ss_sp;
        int ss_flags;
        unsigned long ss_size;
    } uc_stack;
    struct sigcontext uc_mcontext;
    uint64_t uc_sigmask;
};

struct k_stack {
    void *ss_sp;
    int ss_flags;
    unsigned long ss_size;
};

struct k_rlimit {
    uint64_t cur, max;
};

/* start.S; hidden, so that -fpie code reaches them directly, without a GOT. */
#define HIDDEN __attribute__((visibility("hidden")))
HIDDEN void tender_main(void);
HIDDEN void tender_restorer(void); /* rt_sigreturn */
HIDDEN __attribute__((noreturn)) void tender_enter(uint64_t entry);

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;

    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

#define sys3(nr, a, b, c) sys6(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)

static __attribute__((noreturn)) void die(int status)
{
    /* exit, not exit_group: the only call the filter lets end the process. */
    for (;;)
        sys3(__NR_exit, status, 0, 0);
}

static int send_msg(const struct tender_msg *m)
{
    return sys3(__NR_write, TENDER_FD_CHANNEL, m, sizeof(*m)) == (long)sizeof(*m) ? 0 : -1;
}

static uint8_t altstack[ALTSTACK_SZ] __attribute__((aligned(16)));

/*
 * SIGTRAP from the guest's INT3 (trap number 3) is a hypercall: forward
 * RDX and RAX, wait for the host, return into the guest.  Any other trap
 * is a CPU exception: report it and leave.
 */
static void on_signal(int sig, void *info, void *ctx)
{
    struct sigcontext *mc = &((struct k_ucontext *)ctx)->uc_mcontext;
    struct tender_msg m = {0};
    uint64_t resume;

    (void)info;
    if (sig == SIGTRAP && mc->trapno == 3) {
        m.kind = TENDER_MSG_HC;
        m.a[0] = mc->rdx;
        m.a[1] = mc->rax;
        if (send_msg(&m) < 0)
            die(TENDER_EXIT_CHANNEL);
        if (sys3(__NR_read, TENDER_FD_CHANNEL, &resume, sizeof(resume)) != sizeof(resume) ||
            resume != TENDER_RESUME)
            die(TENDER_EXIT_CHANNEL);
        return;
    }
    m.kind = TENDER_MSG_EXC;
    m.a[0] = mc->trapno;
    m.a[1] = mc->err;
    m.a[2] = mc->rip;
    m.a[3] = mc->cr2;
    m.a[4] = mc->rsp;
    send_msg(&m);
    die(0);
}

static int map_guest(uint64_t addr, uint64_t len, int prot)
{
    long r;

    if (!len)
        return 0;
    r = sys6(__NR_mmap, (long)addr, (long)len, prot, MAP_SHARED | MAP_FIXED_NOREPLACE,
             TENDER_FD_MEM, (long)addr);
    return r == (long)addr ? 0 : -1;
}

static int setup_signals(void)
{
    static const int sigs[] = {SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE};
    struct k_stack ss = {altstack, 0, sizeof(altstack)};
    struct k_sigaction sa = {
        .handler = on_signal,
        .flags = SA_SIGINFO | SA_ONSTACK | SA_RESTORER,
        .restorer = tender_restorer,
        .mask = ~0ULL, /* nothing else runs inside a handler */
    };
    uint64_t none = 0;

    if (sys3(__NR_sigaltstack, &ss, 0, 0) < 0)
        return -1;
    for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sys6(__NR_rt_sigaction, sigs[i], (long)&sa, 0, 8, 0, 0) < 0)
            return -1;
    /* The host spawned us with every signal blocked. */
    return sys6(__NR_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, 8, 0, 0) < 0 ? -1 : 0;
}

/* Lower a limit (never raise one: a caller's limits stay in force). */
static int lower_rlimit(int res, uint64_t cur, uint64_t max)
{
    struct k_rlimit old, lim;

    if (sys6(__NR_prlimit64, 0, res, 0, (long)&old, 0, 0) < 0)
        return -1;
    lim.max = max < old.max ? max : old.max;
    lim.cur = cur < old.cur ? cur : old.cur;
    if (lim.cur > lim.max)
        lim.cur = lim.max;
    return sys6(__NR_prlimit64, 0, res, (long)&lim, 0, 0, 0) < 0 ? -1 : 0;
}

static int setup_rlimits(const struct tender_setup *s)
{
    static const int zero[] = {RLIMIT_CORE,    RLIMIT_FSIZE,    RLIMIT_NOFILE, RLIMIT_NPROC,
                               RLIMIT_MEMLOCK, RLIMIT_MSGQUEUE, RLIMIT_LOCKS};

    for (unsigned i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
        if (lower_rlimit(zero[i], 0, 0) < 0)
            return -1;
    if (lower_rlimit(RLIMIT_AS, s->as_limit, s->as_limit) < 0)
        return -1;
    return lower_rlimit(RLIMIT_CPU, s->cpu_cur, s->cpu_max);
}

/*
 * The child's whole allowance: read and write on the channel, rt_sigreturn
 * to leave a handler, exit.  Anything else kills the process (SIGSYS).
 */
static int setup_seccomp(void)
{
#define ARG0_LO offsetof(struct seccomp_data, args[0])
#define ARG0_HI (offsetof(struct seccomp_data, args[0]) + 4)
    static struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigreturn, 9, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit, 8, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_read, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_write, 0, 5),
        /* read/write: on the channel only (fd 0, all 64 bits of it). */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_LO),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TENDER_FD_CHANNEL, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_HI),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

    return sys3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0 ? -1 : 0;
#undef ARG0_LO
#undef ARG0_HI
}

void tender_main(void)
{
    struct tender_setup s;
    struct tender_msg ready = {.kind = TENDER_MSG_READY};

    if (sys3(__NR_read, TENDER_FD_CHANNEL, &s, sizeof(s)) != sizeof(s) || s.magic != TENDER_MAGIC ||
        s.version != TENDER_VERSION)
        die(TENDER_EXIT_SETUP);
    if (s.low % PAGE || s.text_start % PAGE || s.text_end % PAGE || s.mem_size % PAGE ||
        s.low > s.text_start || s.text_start >= s.text_end || s.text_end > s.mem_size ||
        s.mem_size > (4ULL << 30) || s.entry < s.text_start || s.entry >= s.text_end)
        die(TENDER_EXIT_SETUP);

    /* Guest text is executable here and only here: the host maps it read-write. */
    if (map_guest(s.low, s.text_start - s.low, PROT_READ | PROT_WRITE) < 0 ||
        map_guest(s.text_start, s.text_end - s.text_start, PROT_READ | PROT_EXEC) < 0 ||
        map_guest(s.text_end, s.mem_size - s.text_end, PROT_READ | PROT_WRITE) < 0)
        die(TENDER_EXIT_MAP);
    if (sys3(__NR_close, TENDER_FD_MEM, 0, 0) < 0)
        die(TENDER_EXIT_MAP);
    if (setup_signals() < 0)
        die(TENDER_EXIT_SIGNALS);
    if (setup_rlimits(&s) < 0)
        die(TENDER_EXIT_RLIMIT);
    if (sys6(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0, 0) < 0 ||
        sys6(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0) < 0)
        die(TENDER_EXIT_PRCTL);
    if (setup_seccomp() < 0)
        die(TENDER_EXIT_SECCOMP);
    if (send_msg(&ready) < 0)
        die(TENDER_EXIT_CHANNEL);
    tender_enter(s.entry);
}
