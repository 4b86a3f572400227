/*
 * Overwrites the process tender's writable memory (its signal stack, its
 * set-up copy) and then issues garbage hypercalls.  boot->args.raw holds
 * the range to wipe (start, length), which the test reads from the
 * tender's ELF headers.  Under KVM that range is not guest RAM: #PF.
 */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    uint64_t r[2];
    volatile uint8_t *p;

    idt_install();
    memcpy(r, boot->args.raw, sizeof(r));
    p = (volatile uint8_t *)(uintptr_t)r[0];
    for (uint64_t i = 0; i < r[1]; i++)
        p[i] = 0xa5;
    for (uint32_t i = 0;; i++)
        neg_hc(INSTAR_HC_PIO_BASE + 1 + (i % INSTAR_HC_MAX), 0xdead0000u + i * 64);
}
