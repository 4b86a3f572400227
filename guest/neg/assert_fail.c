/* A failed GUEST_ASSERT travels to the host with expression, file, line. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    idt_install();
    GUEST_ASSERT(boot->magic == 0);
    hc_exit(3);
}
