/* hlt with interrupts off: the run must end, not hang. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    idt_install();
    for (;;)
        __asm__ volatile("cli; hlt");
}
