/*
 * Loops on hypercalls that fail (a read from a device that does not
 * exist): never silent, so the watchdog never fires; the CPU budget must.
 */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    static uint8_t buf[16];

    idt_install();
    for (;;)
        hc_blk_read(7, 0, buf, sizeof(buf));
}
