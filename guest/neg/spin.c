/* Runs forever without a hypercall: the watchdog must stop it. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    idt_install();
    for (;;)
        __asm__ volatile("pause");
}
