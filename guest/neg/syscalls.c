/*
 * Raw system calls from guest code.  In the process backend the child's
 * seccomp filter kills it (SIGSYS) for anything but read/write on the
 * channel, rt_sigreturn and exit; under KVM, SYSCALL is not enabled
 * (EFER.SCE = 0) and raises #UD.  Either way the run ends and the host
 * lives.  boot->args.raw holds the call: number, then six arguments.
 */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    uint64_t a[7];
    register uint64_t r10 __asm__("r10");
    register uint64_t r8 __asm__("r8");
    register uint64_t r9 __asm__("r9");
    uint64_t ret;

    idt_install();
    memcpy(a, boot->args.raw, sizeof(a));
    r10 = a[4];
    r8 = a[5];
    r9 = a[6];
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(a[0]), "D"(a[1]), "S"(a[2]), "d"(a[3]), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    /* Allowed (a read or write on the channel): report what it returned. */
    neg_report((const int64_t *)&ret, 1);
}
