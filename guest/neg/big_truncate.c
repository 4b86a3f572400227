/*
 * Truncates that would make the host allocate or zero-fill more than
 * INSTAR_TRUNC_FILL_MAX in one call are refused (ETOOBIG), so no single
 * hypercall keeps the host busy for long; a plain (sparse) truncate is
 * not a fill and stays allowed.
 */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    uint64_t big = boot->devices[0].size + INSTAR_TRUNC_FILL_MAX + 4096;
    int64_t v[4];

    idt_install();
    v[0] = hc_truncate(0, big, INSTAR_TRUNC_FULL);
    v[1] = hc_truncate(0, big, INSTAR_TRUNC_FALLOC);
    v[2] = hc_truncate(0, boot->devices[0].size + 8192, INSTAR_TRUNC_FULL);
    v[3] = hc_truncate(0, big, INSTAR_TRUNC_OFF);
    neg_report(v, 4);
}
