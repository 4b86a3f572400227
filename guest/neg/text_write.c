/*
 * Asks the host to write into the guest's own text: a block read into a
 * function, or a call whose argument struct (and so its answer) lies in
 * read-only data.  The host never writes there (vmm/mem.h), so planting
 * code through a hypercall is refused; boot->args.raw[0] picks the case.
 */
#include "neg.h"

static const struct instar_hc_flush in_rodata = {.handle = 0};

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    uint64_t what;
    int64_t v[1];

    idt_install();
    memcpy(&what, boot->args.raw, sizeof(what));
    if (what == 1) {
        v[0] = hc_blk_read(0, 0, (void *)(uintptr_t)guest_main, 16);
        neg_report(v, 1);
    }
    neg_hc(INSTAR_HC_PIO_BASE + INSTAR_HC_FLUSH, (uint32_t)(uintptr_t)&in_rodata);
    hc_exit(3);
}
