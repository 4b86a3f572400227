/*
 * Truncates and writes device 0: refused on a read-only device, bounded by
 * the write limit on a writable one, and stopped part-way by the host's
 * fault injection (INSTAR_FAULT_WRITES).
 */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    static uint8_t a[512], b[512], c[512];
    int64_t v[5];

    idt_install();
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    memset(c, 'c', sizeof(c));
    v[0] = hc_truncate(0, 8192, INSTAR_TRUNC_OFF);
    v[1] = hc_truncate(0, 1ull << 40, INSTAR_TRUNC_OFF);
    v[2] = hc_blk_write(0, 0, a, sizeof(a));
    v[3] = hc_blk_write(0, 512, b, sizeof(b));
    v[4] = hc_blk_write(0, 1024, c, sizeof(c));
    neg_report(v, 5);
}
