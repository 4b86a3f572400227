/* A port outside the hypercall range. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    idt_install();
    neg_hc(0x3f8, 0);
    hc_exit(3);
}
