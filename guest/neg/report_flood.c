/*
 * Streams well-formed diagnostics forever, a full batch at a time: the
 * diagnostics budget must end the run.
 */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    static uint8_t batch[INSTAR_REPORT_MAX];
    struct instar_report_rec r = {.code = 2000, .slen = 0, .args = {7, 1, 0, 0}};

    idt_install();
    for (size_t off = 0; off + sizeof(r) <= sizeof(batch); off += sizeof(r))
        memcpy(batch + off, &r, sizeof(r));
    for (;;)
        hc_report(batch, sizeof(batch));
}
