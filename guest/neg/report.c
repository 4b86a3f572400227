/*
 * Streams one well-formed diagnostic record, then one batch that is too
 * long.  Without a report callback the first call already ends the run.
 */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    static uint8_t batch[sizeof(struct instar_report_rec) + 8];
    struct instar_report_rec r = {.code = 2000, .slen = 3, .args = {7, 1, 0, 0}};
    int64_t v[1];

    idt_install();
    memcpy(batch, &r, sizeof(r));
    memcpy(batch + sizeof(r), "abc", 3);
    v[0] = hc_report(batch, sizeof(batch));
    /* Longer than INSTAR_REPORT_MAX: a protocol violation. */
    hc_report(batch, INSTAR_REPORT_MAX + 8);
    neg_report(v, 1);
}
