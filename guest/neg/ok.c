/* Positive control: read the first 16 bytes of device 0 and return them. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    static uint8_t buf[16];
    int64_t r;

    idt_install();
    r = hc_blk_read(0, 0, buf, sizeof(buf));
    if (r != sizeof(buf))
        hc_exit(2);
    hc_result(buf, sizeof(buf));
    hc_exit(0);
}
