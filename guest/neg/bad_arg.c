/* An argument struct outside guest RAM ends the run as a protocol error. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    idt_install();
    neg_hc(INSTAR_HC_PIO_BASE + INSTAR_HC_BLKREAD, 0xfffffff0u);
    hc_exit(3); /* not reached: the host ends the run */
}
