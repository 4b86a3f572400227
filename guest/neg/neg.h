/*
 * Negative guests: tiny guest images that break the hypercall ABI on
 * purpose (tests/unit/test_vmm_negative.c runs them).  Each file defines
 * guest_main() and links with the guest runtime only.
 */
#ifndef NEG_H
#define NEG_H

#include "guest.h"

void idt_install(void);

/* Raw hypercall with an arbitrary argument address. */
static inline void neg_hc(unsigned port, uint32_t gpa)
{
    uint64_t a = gpa, d = port;

    __asm__ volatile("int3" : "+a"(a), "+d"(d) : : "memory");
}

/* Report up to 8 values to the host as the result blob, then exit. */
static inline __attribute__((noreturn)) void neg_report(const int64_t *v, unsigned n)
{
    static int64_t blob[8];

    for (unsigned i = 0; i < n && i < 8; i++)
        blob[i] = v[i];
    hc_result(blob, sizeof(blob));
    hc_exit(0);
}

#endif
