/*
 * Block requests whose buffer lies outside guest RAM, wraps around, or
 * exceeds the per-call limit; a read past the end of the device.  The host
 * must refuse each with an error code and carry on.
 */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    int64_t v[6];

    idt_install();
    v[0] = hc_blk_read(0, 0, (void *)(uintptr_t)boot->mem_size, 16);       /* past RAM */
    v[1] = hc_blk_read(0, 0, (void *)(uintptr_t)(boot->mem_size - 8), 16); /* straddles */
    v[2] = hc_blk_read(0, 0, (void *)0x200000, UINT64_MAX - 0x1000);       /* wraps */
    v[3] = hc_blk_read(0, UINT64_MAX - 4, (void *)0x200000, 16);           /* offset wraps */
    v[4] = hc_blk_read(0, boot->devices[0].size, (void *)0x200000, 1);     /* past device */
    v[5] = hc_blk_read(7, 0, (void *)0x200000, 16);                        /* bad handle */
    neg_report(v, 6);
}
