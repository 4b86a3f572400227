/* A NULL dereference: page 0 is unmapped, so #PF reaches the IDT. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    uint64_t v;

    idt_install();
    /* Through asm so the compiler cannot reason the access away. */
    __asm__ volatile("mov 8, %0" : "=r"(v) : : "memory");
    (void)v;
    hc_exit(3);
}
