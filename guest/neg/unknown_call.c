/* Hypercall number 0 is inside the port range but not a call. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    static uint64_t arg;

    idt_install();
    neg_hc(INSTAR_HC_PIO_BASE + 0, (uint32_t)(uintptr_t)&arg);
    hc_exit(3);
}
