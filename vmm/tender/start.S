/*
 * The tender's entry, its signal restorer, and the jump into the guest.
 */
    .text
    .globl _start
_start:
    xor     %ebp, %ebp
    and     $-16, %rsp
    call    tender_main
    ud2

/* sa_restorer: leave a signal handler (the filter allows this call). */
    .globl tender_restorer
tender_restorer:
    mov     $15, %eax           /* __NR_rt_sigreturn */
    syscall
    ud2

/*
 * tender_enter(entry): to the guest's ring-3 entry with every other
 * register cleared, so nothing of the tender's leaks in (the entry sets
 * its own stack).
 */
    .globl tender_enter
tender_enter:
    mov     %rdi, %rax
    xor     %ebx, %ebx
    xor     %ecx, %ecx
    xor     %edx, %edx
    xor     %esi, %esi
    xor     %edi, %edi
    xor     %ebp, %ebp
    xor     %esp, %esp
    xor     %r8d, %r8d
    xor     %r9d, %r9d
    xor     %r10d, %r10d
    xor     %r11d, %r11d
    xor     %r12d, %r12d
    xor     %r13d, %r13d
    xor     %r14d, %r14d
    xor     %r15d, %r15d
    jmp     *%rax

    .section .note.GNU-stack, "", @progbits
