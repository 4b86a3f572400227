/*
 * The guest image, embedded in the host binary so that instar is one file.
 * The build puts instar-guest.bin in the assembler's include path.
 */
    .section .rodata
    .balign 4096
    .globl instar_guest_image
instar_guest_image:
    .incbin "instar-guest.bin"
    .globl instar_guest_image_end
instar_guest_image_end:

    .section .note.GNU-stack, "", @progbits
