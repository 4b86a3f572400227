/* A write and a flush on a read-only device must be refused. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    static uint8_t junk[512] = {0xde, 0xad};
    int64_t v[2];

    idt_install();
    v[0] = hc_blk_write(0, 0, junk, sizeof(junk));
    v[1] = hc_flush(0);
    neg_report(v, 2);
}
