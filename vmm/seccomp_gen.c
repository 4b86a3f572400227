/*
 * The host's seccomp allowlist, built with libseccomp at build time
 * (after Solo5's hvt_seccomp_linux.c: one line, one reason).  This program
 * runs during the build and writes the compiled BPF program as a C header
 * (instar_seccomp_bpf.h), which vmm/seccomp.c loads at run time: the
 * filter costs no compilation per command (libseccomp took ~0.7 ms of
 * each instar run) and instar needs no libseccomp at run time.
 *
 * Usage: seccomp-gen > instar_seccomp_bpf.h
 *
 * The one value known only at run time, the tender's descriptor that
 * execveat may execute, is compiled as SECCOMP_TENDER_FD_SLOT, and
 * vmm/seccomp.c patches the single instruction that compares with it.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <termios.h>
#include <unistd.h>

#include "seccomp_slot.h"
#include "tender/tender.h"

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
    ALLOW(read),            /* stdin (never), the channel */
    ALLOW(write),           /* stdout, stderr, the tender memfd */
    ALLOW(pread64),         /* BLKREAD */
    ALLOW(pwrite64),        /* BLKWRITE, create/resize of raw files */
    ALLOW(lseek),           /* stdio; SEEK (SEEK_DATA/SEEK_HOLE) */
    ALLOW(copy_file_range), /* COPY: device to device without guest RAM */
    ALLOW(close),           /* every descriptor we open */
    ALLOW(fstat),           /* policy checks, stdio buffering */
    ALLOW(newfstatat),      /* glibc's fstat(), stat() for realpath */
    ALLOW(faccessat),       /* the policy asks whether a file could be opened, without opening it */
    ALLOW(faccessat2),      /* likewise, on newer glibc */
    ALLOW(statx),           /* likewise on newer glibc */
    ALLOW(openat),          /* backing chains, data files, outputs: path policy decides */
    ALLOW(unlink),          /* create removes what it made when it fails, as qemu-img does */
    ALLOW(unlinkat),        /* likewise */
    ALLOW(readlink),        /* the allowlist check resolves /proc/self/fd/N */
    ALLOW(readlinkat),      /* likewise */
    ALLOW(getcwd),          /* realpath() of relative allowlist entries */
    ALLOW(fcntl),           /* OFD locks, F_GETFL/SETFL, F_DUPFD, seals */
    ALLOW(ftruncate),       /* TRUNCATE, raw resize */
    ALLOW(fallocate),       /* falloc preallocation */
    ALLOW(fstatfs),   /* glibc's posix_fallocate() emulation, where fallocate is unsupported */
    ALLOW(fdatasync), /* FLUSH */
    ALLOW(fsync),     /* likewise */
    ALLOW(brk),       /* malloc */
    ALLOW(munmap),    /* malloc, guest RAM */
    ALLOW(mremap),    /* realloc */
    ALLOW(madvise),   /* MADV_DONTDUMP on guest RAM; free() */
    /* mmap/mprotect without PROT_EXEC, except the child's guest text (from guest RAM's fd). */
    ALLOW_IF(mmap, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)),
    ALLOW_IF2(mmap, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_EXEC),
              SCMP_A4(SCMP_CMP_EQ, TENDER_FD_MEM)),
    ALLOW_IF(mprotect, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)),
    ALLOW(rt_sigaction),    /* watchdog tick, SIGCHLD default, the tender's handlers */
    ALLOW(rt_sigprocmask),  /* blocking the tick; spawning with signals blocked */
    ALLOW(rt_sigreturn),    /* leaving a handler */
    ALLOW(rt_sigtimedwait), /* eating a pending tick */
    ALLOW(sigaltstack),     /* the tender's handler stack */
    ALLOW(clock_gettime),   /* watchdog, CPU budget, child CPU clock */
    ALLOW(clock_getres),    /* clock_getcpuclockid() checks the child's clock with it */
    ALLOW(timer_create),    /* the KVM watchdog tick */
    ALLOW(timer_settime),   /* likewise */
    ALLOW(timer_delete),    /* likewise */
    ALLOW(gettid),          /* aiming the tick at this thread */
    ALLOW(getpid),          /* raise() */
    ALLOW(exit),            /* a thread's end; the tender's exit */
    ALLOW(exit_group),      /* the end */
    ALLOW(getrandom),       /* glibc's own (temporary names, malloc); reveals nothing */
    ALLOW(getrusage),       /* what is left of a caller's RLIMIT_CPU */
    ALLOW_IF(prlimit64, SCMP_A0(SCMP_CMP_EQ, 0)), /* our own limits only: getrlimit(), the tender */
    ALLOW(poll),         /* is the sandbox process still alive (its pidfd)? */
    ALLOW(futex),        /* the sandbox's mailbox; glibc's locks */
    ALLOW(getppid),      /* the tender checks its parent is still there */
    ALLOW(memfd_create), /* guest RAM */
    ALLOW(vfork),        /* the sandbox process */
    ALLOW(dup2),         /* fds 0 and 1 of the child */
    ALLOW(close_range),  /* nothing else reaches the child */
    ALLOW(wait4),        /* reaping it */
    ALLOW(pidfd_open),   /* waiting for it */
    ALLOW_IF(pidfd_send_signal, SCMP_A1(SCMP_CMP_EQ, SIGKILL)), /* ending a sandbox process */
    ALLOW_IF(kill, SCMP_A1(SCMP_CMP_EQ, SIGKILL)),              /* ending it without a pidfd */
    /* raise(): dying of the caller's RLIMIT_CPU as qemu-img would; glibc's abort(). */
    ALLOW_IF(tgkill, SCMP_A2(SCMP_CMP_EQ, SIGKILL)),
    ALLOW_IF(tgkill, SCMP_A2(SCMP_CMP_EQ, SIGXCPU)),
    ALLOW_IF(tgkill, SCMP_A2(SCMP_CMP_EQ, SIGABRT)),
    /* The tender before its own filter: dumpable, no_new_privs, then the filter. */
    ALLOW_IF2(prctl, SCMP_A0(SCMP_CMP_EQ, PR_SET_DUMPABLE), SCMP_A1(SCMP_CMP_EQ, 0)),
    ALLOW_IF(prctl, SCMP_A0(SCMP_CMP_EQ, PR_SET_PDEATHSIG)),
    ALLOW_IF(prctl, SCMP_A0(SCMP_CMP_EQ, PR_SET_NO_NEW_PRIVS)),
    ALLOW_IF(prctl, SCMP_A0(SCMP_CMP_EQ, PR_GET_SECCOMP)),
    ALLOW_IF2(seccomp, SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER), SCMP_A1(SCMP_CMP_EQ, 0)),
    ALLOW(capset), /* the tender drops every capability (instar run as root) */
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

int main(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    struct sock_filter ins;
    FILE *tmp = tmpfile();
    unsigned count = 0, slots = 0;
    int r = ctx && tmp ? 0 : -1;

    for (size_t i = 0; i < sizeof(host_rules) / sizeof(host_rules[0]) && r == 0; i++)
        r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, host_rules[i].nr, host_rules[i].nargs,
                                   host_rules[i].arg);
    /* The child is a fresh exec of the tender, and of nothing else. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(execveat), 2,
                             SCMP_A0(SCMP_CMP_EQ, SECCOMP_TENDER_FD_SLOT),
                             SCMP_A4(SCMP_CMP_EQ, AT_EMPTY_PATH));
    if (r == 0)
        r = seccomp_export_bpf(ctx, fileno(tmp));
    if (r != 0) {
        fprintf(stderr, "seccomp-gen: libseccomp failed: %d\n", r);
        return 1;
    }
    rewind(tmp);
    printf("/* Generated by vmm/seccomp_gen.c at build time: do not edit. */\n"
           "static const struct sock_filter host_filter[] = {\n");
    while (fread(&ins, sizeof(ins), 1, tmp) == 1) {
        printf("    {0x%04x, %u, %u, 0x%08x},\n", ins.code, ins.jt, ins.jf, ins.k);
        count++;
        slots += BPF_CLASS(ins.code) == BPF_JMP && BPF_SRC(ins.code) == BPF_K &&
                 ins.k == SECCOMP_TENDER_FD_SLOT;
    }
    printf("};\n");
    /* vmm/seccomp.c patches exactly one comparison; anything else is a build error. */
    if (!count || slots != 1) {
        fprintf(stderr, "seccomp-gen: %u instructions, %u tender-descriptor slots\n", count, slots);
        return 1;
    }
    seccomp_release(ctx);
    return 0;
}
