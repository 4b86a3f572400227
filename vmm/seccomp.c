/*
 * The host's own confinement (after Solo5's hvt_seccomp_linux.c): before
 * the first byte of an image is read, instar gives up core dumps, sets
 * PR_SET_NO_NEW_PRIVS and installs a default-kill allowlist of the system
 * calls it still needs.  If a hostile image ever did reach code execution
 * in this process, it could not exec, open a socket, ptrace, or map new
 * executable memory.
 *
 * Files are still opened after a guest has run (a backing chain is
 * opened as the guests name it, create makes its output after describing
 * a backing file), so openat stays allowed: there the path policy
 * (cmd/policy.c) is the control.  docs/sandbox.md says what this leaves.
 *
 * The process backend's child inherits this filter, so it also admits the
 * few calls the tender (vmm/tender/) makes before it installs its own,
 * tighter one.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include "vmm_int.h"

/* An allowed call, and an optional condition on its arguments. */
struct rule {
    int nr;
    unsigned nargs;
    struct scmp_arg_cmp arg[2];
};

#define ALLOW(n)                                                                                   \
    {                                                                                              \
        .nr = SCMP_SYS(n)                                                                          \
    }
#define ALLOW_IF(n, a)                                                                             \
    {                                                                                              \
        .nr = SCMP_SYS(n), .nargs = 1, .arg = { a }                                                \
    }
#define ALLOW_IF2(n, a, b)                                                                         \
    {                                                                                              \
        .nr = SCMP_SYS(n), .nargs = 2, .arg = { a, b }                                             \
    }

/* Everything the host does once confined; one line, one reason. */
static const struct rule host_rules[] = {
    ALLOW(read),       /* stdin (never), the channel */
    ALLOW(write),      /* stdout, stderr, the tender memfd */
    ALLOW(pread64),    /* BLKREAD */
    ALLOW(pwrite64),   /* BLKWRITE, create/resize of raw files */
    ALLOW(lseek),      /* stdio */
    ALLOW(close),      /* every descriptor we open */
    ALLOW(fstat),      /* policy checks, stdio buffering */
    ALLOW(newfstatat), /* glibc's fstat(), stat() for realpath */
    ALLOW(faccessat),  /* the policy asks whether a file could be opened, without opening it */
    ALLOW(faccessat2), /* likewise, on newer glibc */
    ALLOW(statx),      /* likewise on newer glibc */
    ALLOW(openat),     /* backing chains, data files, outputs: path policy decides */
    ALLOW(unlink),     /* create removes what it made when it fails, as qemu-img does */
    ALLOW(unlinkat),   /* likewise */
    ALLOW(readlink),   /* the allowlist check resolves /proc/self/fd/N */
    ALLOW(readlinkat), /* likewise */
    ALLOW(getcwd),     /* realpath() of relative allowlist entries */
    ALLOW(fcntl),      /* OFD locks, F_GETFL/SETFL, F_DUPFD, seals */
    ALLOW(ftruncate),  /* TRUNCATE, raw resize */
    ALLOW(fallocate),  /* falloc preallocation */
    ALLOW(fdatasync),  /* FLUSH */
    ALLOW(fsync),      /* likewise */
    ALLOW(brk),        /* malloc */
    ALLOW(munmap),     /* malloc, guest RAM */
    ALLOW(mremap),     /* realloc */
    ALLOW(madvise),    /* MADV_DONTDUMP on guest RAM; free() */
    /* mmap/mprotect without PROT_EXEC, except the child's guest text (from fd 1). */
    ALLOW_IF(mmap, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)),
    ALLOW_IF2(mmap, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_EXEC),
              SCMP_A4(SCMP_CMP_EQ, 1)),
    ALLOW_IF(mprotect, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)),
    ALLOW(rt_sigaction),      /* watchdog tick, SIGCHLD default, the tender's handlers */
    ALLOW(rt_sigprocmask),    /* blocking the tick; spawning with signals blocked */
    ALLOW(rt_sigreturn),      /* leaving a handler */
    ALLOW(rt_sigtimedwait),   /* eating a pending tick */
    ALLOW(sigaltstack),       /* the tender's handler stack */
    ALLOW(clock_gettime),     /* watchdog, CPU budget, child CPU clock */
    ALLOW(clock_getres),      /* clock_getcpuclockid() checks the child's clock with it */
    ALLOW(clock_nanosleep),   /* nothing yet; glibc's sleep paths */
    ALLOW(timer_create),      /* the KVM watchdog tick */
    ALLOW(timer_settime),     /* likewise */
    ALLOW(timer_delete),      /* likewise */
    ALLOW(gettid),            /* aiming the tick at this thread */
    ALLOW(getpid),            /* raise() */
    ALLOW(exit),              /* a thread's end; the tender's exit */
    ALLOW(exit_group),        /* the end */
    ALLOW(getrandom),         /* glibc's own (temporary names, malloc); reveals nothing */
    ALLOW(getrusage),         /* what is left of a caller's RLIMIT_CPU */
    ALLOW(prlimit64),         /* getrlimit(); the tender lowers its own limits */
    ALLOW(poll),              /* the process backend's loop */
    ALLOW(ppoll),             /* likewise */
    ALLOW(recvfrom),          /* the channel */
    ALLOW(sendto),            /* likewise */
    ALLOW(memfd_create),      /* guest RAM */
    ALLOW(socketpair),        /* the channel (AF_UNIX, a pair: no address is reachable) */
    ALLOW(vfork),             /* the sandbox process */
    ALLOW(dup2),              /* fds 0 and 1 of the child */
    ALLOW(close_range),       /* nothing else reaches the child */
    ALLOW(wait4),             /* reaping it */
    ALLOW(pidfd_open),        /* waiting for it */
    ALLOW(pidfd_send_signal), /* ending it */
    ALLOW_IF(kill, SCMP_A1(SCMP_CMP_EQ, SIGKILL)), /* ending it without a pidfd */
    ALLOW(tgkill), /* raise(): dying of the caller's RLIMIT_CPU as qemu-img would */
    /* The tender before its own filter: dumpable, no_new_privs, then the filter. */
    ALLOW_IF(prctl, SCMP_A0(SCMP_CMP_EQ, PR_SET_DUMPABLE)),
    ALLOW_IF(prctl, SCMP_A0(SCMP_CMP_EQ, PR_SET_NO_NEW_PRIVS)),
    ALLOW_IF(prctl, SCMP_A0(SCMP_CMP_EQ, PR_GET_SECCOMP)),
    ALLOW_IF(seccomp, SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER)),
    /* stdio asks whether a descriptor is a terminal. */
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, TCGETS)),
    /* KVM: only the requests vmm/kvm.c and vmm/x86_64.c make. */
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_GET_API_VERSION)),
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_CREATE_VM)),
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_GET_VCPU_MMAP_SIZE)),
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_SET_USER_MEMORY_REGION)),
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_CREATE_VCPU)),
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_GET_SREGS)),
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_SET_SREGS)),
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_GET_REGS)),
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_SET_REGS)),
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_SET_SIGNAL_MASK)),
    ALLOW_IF(ioctl, SCMP_A1(SCMP_CMP_EQ, KVM_RUN)),
};

static bool confined;

int vmm_confine_host(void)
{
    const struct rlimit no_core = {0, 0};
    scmp_filter_ctx ctx;
    int tfd, r = 0;

    if (confined)
        return 0;
    /* A crash must never write guest RAM (image data) to disk. */
    if (setrlimit(RLIMIT_CORE, &no_core) < 0 || prctl(PR_SET_DUMPABLE, 0) < 0)
        return -errno;
    /*
     * Prepare now what cannot be prepared once confined: /dev/kvm and a
     * spare VM (unless the process backend was asked for), and the
     * tender's memfd, so either backend can still run.
     */
    if (vmm_backend_from_env() != VMM_BACKEND_PROCESS)
        (void)vmm_kvm_usable();
    tfd = vmm_proc_prepare();

    ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx)
        return -ENOMEM;
    /* libseccomp sets PR_SET_NO_NEW_PRIVS itself when it loads (SCMP_FLTATR_CTL_NNP). */
    for (size_t i = 0; i < sizeof(host_rules) / sizeof(host_rules[0]) && r == 0; i++)
        r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, host_rules[i].nr, host_rules[i].nargs,
                                   host_rules[i].arg);
    /* The child is a fresh exec of the tender, and of nothing else. */
    if (r == 0 && tfd >= 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(execveat), 2,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)tfd),
                             SCMP_A4(SCMP_CMP_EQ, AT_EMPTY_PATH));
    if (r == 0)
        r = seccomp_load(ctx);
    seccomp_release(ctx);
    if (r == 0)
        confined = true;
    return r;
}
