/*
 * Image header, guest entries, the INT3 gate for hypercalls, and CPU
 * exception stubs.
 *
 * KVM backend: the host starts the vCPU in 64-bit long mode, ring 0,
 * paging on, SSE enabled, interrupts off, RIP at _start (vmm/x86_64.c).
 * Ring 0 only drops to ring 3, where all C code runs (see vmm/x86_64.c for
 * why).  Everything that runs in ring 0 is in this file, in plain
 * general-purpose instructions: no C, no SSE.
 *
 * Process backend: the tender (vmm/tender/) jumps to _start_user in ring 3
 * with every register cleared; the ring-0 code here never runs.
 *
 * Hypercall from ring 3: RAX = guest-physical address of the argument
 * struct, RDX = port; INT3 enters hc_entry through a DPL-3 gate, which
 * does the OUT that the ABI defines (include/instar/abi.h) and IRETQs back.
 */
#define USER_CS    (0x28 | 3)
#define USER_SS    (0x20 | 3)

#include "instar/abi.h"

    /* struct instar_image_hdr, at the load address (guest/guest.ld). */
    .section .text.head, "a"
    .long   INSTAR_IMAGE_MAGIC
    .long   INSTAR_ABI_VERSION
    .quad   _start
    .quad   _start_user
    .quad   _etext
    .quad   _end

    .section .text.boot, "ax"
    .globl _start
_start:
    /* To ring 3: IRETQ with a user frame (Intel SDM vol. 3A, 6.14.3). */
    lea     guest_stack_top(%rip), %rax
    mov     %rax, %rsp
    pushq   $USER_SS
    pushq   %rax
    pushq   $0x2
    pushq   $USER_CS
    lea     user_start(%rip), %rax
    pushq   %rax
    iretq

    .globl _start_user
_start_user:
    lea     guest_stack_top(%rip), %rsp
user_start:
    xor     %ebp, %ebp
    call    guest_main
    ud2

    .globl hc_entry
hc_entry:
    outl    %eax, %dx
    iretq

/*
 * Exception stubs: each pushes a dummy error code where the CPU does not
 * (Intel SDM vol. 3A, 6.13) and the vector, then joins trap_common.
 */
.macro TRAP_NOERR vec
trap_stub_\vec:
    pushq   $0
    pushq   $\vec
    jmp     trap_common
.endm

.macro TRAP_ERR vec
trap_stub_\vec:
    pushq   $\vec
    jmp     trap_common
.endm

TRAP_NOERR 0
TRAP_NOERR 1
TRAP_NOERR 2
TRAP_NOERR 3
TRAP_NOERR 4
TRAP_NOERR 5
TRAP_NOERR 6
TRAP_NOERR 7
TRAP_ERR   8
TRAP_NOERR 9
TRAP_ERR   10
TRAP_ERR   11
TRAP_ERR   12
TRAP_ERR   13
TRAP_ERR   14
TRAP_NOERR 15
TRAP_NOERR 16
TRAP_ERR   17
TRAP_NOERR 18
TRAP_NOERR 19
TRAP_NOERR 20
TRAP_ERR   21
TRAP_NOERR 22
TRAP_NOERR 23
TRAP_NOERR 24
TRAP_NOERR 25
TRAP_NOERR 26
TRAP_NOERR 27
TRAP_NOERR 28
TRAP_ERR   29
TRAP_ERR   30
TRAP_NOERR 31

/*
 * Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS.  Build a
 * struct instar_hc_trap {vector, error_code, rip, cr2, rsp} below it and
 * report it; the host ends the run.
 */
trap_common:
    mov     %rsp, %rsi
    sub     $48, %rsp
    and     $-16, %rsp
    mov     0(%rsi), %rax
    mov     %rax, 0(%rsp)   /* vector */
    mov     8(%rsi), %rax
    mov     %rax, 8(%rsp)   /* error code */
    mov     16(%rsi), %rax
    mov     %rax, 16(%rsp)  /* rip */
    mov     %cr2, %rax
    mov     %rax, 24(%rsp)  /* cr2 */
    mov     40(%rsi), %rax
    mov     %rax, 32(%rsp)  /* rsp */
    mov     %rsp, %rax
    mov     $(0x500 + 7), %edx /* INSTAR_HC_PIO_BASE + INSTAR_HC_TRAP */
1:  outl    %eax, %dx
    jmp     1b

    .section .rodata
    .globl trap_stubs
    .balign 8
trap_stubs:
    .irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad trap_stub_\vec
    .endr

    .section .bss
    .balign 16
guest_stack:
    .skip 256 * 1024
    .globl guest_stack_top
guest_stack_top:

    .section .note.GNU-stack, "", @progbits
