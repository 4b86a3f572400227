/*
 * The process backend's tender (vmm/tender/), embedded so that instar
 * stays one file.  The build puts instar-tender.bin (a stripped static
 * ELF) in the assembler's include path.
 */
    .section .rodata
    .balign 16
    .globl instar_tender_image
instar_tender_image:
    .incbin "instar-tender.bin"
    .globl instar_tender_image_end
instar_tender_image_end:

    .section .note.GNU-stack, "", @progbits
