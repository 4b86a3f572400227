/*
 * The tender: the program a process-backend child runs (after Solo5's spt
 * tender, tenders/spt/).  A static, freestanding ELF of a few KiB, embedded
 * in instar and executed fresh for each run, so the child's memory holds
 * nothing of the host's: this code, its stack, and guest RAM.
 *
 * It maps guest RAM at virtual == guest-physical addresses and its mailbox
 * page, closes both descriptors, turns the guest's INT3 hypercalls
 * (SIGTRAP) into {port, address} requests in the mailbox and CPU
 * exceptions (SIGSEGV, SIGILL, ...) into exception requests, confines
 * itself, and jumps to the guest's ring-3 entry.  Where Solo5's spt lets
 * the unikernel make a few system calls on its own descriptors, this child
 * holds no descriptor at all: every request is served by the host's one
 * checked dispatcher (vmm/hc.c).
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
#include <linux/futex.h>
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

#define MAILBOX ((volatile struct tender_mailbox *)TENDER_MAILBOX_ADDR)

static uint32_t seq;
static uint64_t spin; /* from the set-up */

/* Post a request; with wait, sleep until the host has served it. */
static void post(uint32_t kind, const uint64_t a[5], int wait)
{
    volatile struct tender_mailbox *mb = MAILBOX;
    uint32_t r;

    mb->req.kind = kind;
    for (int i = 0; i < 5; i++)
        mb->req.a[i] = a[i];
    seq++;
    __atomic_store_n(&mb->req_seq, seq, __ATOMIC_RELEASE);
    sys3(__NR_futex, &mb->req_seq, FUTEX_WAKE, 1);
    if (!wait)
        return;
    for (uint64_t i = 0; i < spin; i++)
        if (__atomic_load_n(&mb->resp_seq, __ATOMIC_ACQUIRE) == seq)
            return;
    while ((r = __atomic_load_n(&mb->resp_seq, __ATOMIC_ACQUIRE)) != seq)
        sys6(__NR_futex, (long)&mb->resp_seq, FUTEX_WAIT, r, 0, 0, 0);
}

static uint8_t altstack[ALTSTACK_SZ] __attribute__((aligned(16)));

/*
 * SIGTRAP from the guest's INT3 (trap number 3) is a hypercall: post RDX
 * and RAX, wait for the host, return into the guest.  Any other trap is a
 * CPU exception: post it and leave.
 */
static void on_signal(int sig, void *info, void *ctx)
{
    struct sigcontext *mc = &((struct k_ucontext *)ctx)->uc_mcontext;
    uint64_t a[5] = {0};

    (void)info;
    if (sig == SIGTRAP && mc->trapno == 3) {
        a[0] = mc->rdx;
        a[1] = mc->rax;
        post(TENDER_MSG_HC, a, 1);
        return;
    }
    a[0] = mc->trapno;
    a[1] = mc->err;
    a[2] = mc->rip;
    a[3] = mc->cr2;
    a[4] = mc->rsp;
    post(TENDER_MSG_EXC, a, 0);
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
 * The child's whole allowance: futex wake, and futex wait without a
 * timeout (shared, on the mailbox; a guest must not sleep on a timer, or
 * it could keep a run alive idle between hypercalls), rt_sigreturn to
 * leave a handler, exit.  Anything else kills the process (SIGSYS).
 */
static int setup_seccomp(void)
{
#define ARG_LO(n) offsetof(struct seccomp_data, args[n])
#define ARG_HI(n) (offsetof(struct seccomp_data, args[n]) + 4)
    static struct sock_filter f[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        /* 2 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        /* 3 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigreturn, 11, 0),
        /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit, 10, 0),
        /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_futex, 0, 10),
        /* 7: futex: the operation's upper half is 0 ... */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_HI(1)),
        /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 8),
        /* 9: ... and it is FUTEX_WAKE, or FUTEX_WAIT ... */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(1)),
        /* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FUTEX_WAKE, 5, 0),
        /* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FUTEX_WAIT, 0, 5),
        /* 12: ... with no timeout (all 64 bits of the pointer 0). */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(3)),
        /* 13 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),
        /* 14 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_HI(3)),
        /* 15 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
        /* 16 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* 17 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

    return sys3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0 ? -1 : 0;
#undef ARG_LO
#undef ARG_HI
}

/* No capability survives into the guest (instar may run as root). */
static int drop_capabilities(void)
{
    struct {
        uint32_t version;
        int pid;
    } hdr = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
    struct {
        uint32_t effective, permitted, inheritable;
    } data[2] = {{0, 0, 0}, {0, 0, 0}};

    return sys3(__NR_capset, &hdr, data, 0) < 0 ? -1 : 0;
}

void tender_main(void)
{
    struct tender_setup s;
    static const uint64_t none[5];

    if (sys6(__NR_mmap, (long)TENDER_MAILBOX_ADDR, PAGE, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_FIXED_NOREPLACE, TENDER_FD_MAILBOX, 0) != (long)TENDER_MAILBOX_ADDR)
        die(TENDER_EXIT_MAP);
    s = *(const struct tender_setup *)&MAILBOX->setup;
    if (s.magic != TENDER_MAGIC || s.version != TENDER_VERSION)
        die(TENDER_EXIT_SETUP);
    spin = s.spin;
    if (s.low % PAGE || s.text_start % PAGE || s.text_end % PAGE || s.mem_size % PAGE ||
        s.low > s.text_start || s.text_start >= s.text_end || s.text_end > s.mem_size ||
        s.mem_size > (4ULL << 30) || s.entry < s.text_start || s.entry >= s.text_end)
        die(TENDER_EXIT_SETUP);

    /* Guest text is executable here and only here: the host never maps it. */
    if (map_guest(s.low, s.text_start - s.low, PROT_READ | PROT_WRITE) < 0 ||
        map_guest(s.text_start, s.text_end - s.text_start, PROT_READ | PROT_EXEC) < 0 ||
        map_guest(s.text_end, s.mem_size - s.text_end, PROT_READ | PROT_WRITE) < 0)
        die(TENDER_EXIT_MAP);
    if (sys3(__NR_close, TENDER_FD_MEM, 0, 0) < 0 || sys3(__NR_close, TENDER_FD_MAILBOX, 0, 0) < 0)
        die(TENDER_EXIT_MAP);
    if (setup_signals() < 0)
        die(TENDER_EXIT_SIGNALS);
    if (setup_rlimits(&s) < 0)
        die(TENDER_EXIT_RLIMIT);
    /* Die with the host: nothing else would wake a child asleep on its mailbox. */
    if (sys6(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0) < 0 ||
        sys6(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0, 0) < 0 ||
        sys6(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0) < 0)
        die(TENDER_EXIT_PRCTL);
    if (sys3(__NR_getppid, 0, 0, 0) != (long)s.host_pid)
        die(TENDER_EXIT_PRCTL); /* the host died before PR_SET_PDEATHSIG took hold */
    if (drop_capabilities() < 0)
        die(TENDER_EXIT_PRCTL);
    if (setup_seccomp() < 0)
        die(TENDER_EXIT_SECCOMP);
    post(TENDER_MSG_READY, none, 1);
    tender_enter(s.entry);
}
