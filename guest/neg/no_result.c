/* An oversized result is refused; exiting without one is an error. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    idt_install();
    if (hc_result((void *)0x200000, INSTAR_RESULT_MAX + 1) != INSTAR_HC_EINVAL)
        hc_exit(4);
    hc_exit(0);
}
