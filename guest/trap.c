/*
 * CPU exceptions: an IDT whose 32 vectors report vector, error code, RIP
 * and CR2 to the host with INSTAR_HC_TRAP, which ends the run as a
 * structured guest fault (vmm/hc.c).  Shared by every guest image.
 */
#include "guest.h"

/* 64-bit interrupt gate (Intel SDM vol. 3A, 6.14.1). */
struct idt_gate {
    uint16_t off_lo;
    uint16_t sel;
    uint8_t ist;
    uint8_t type;
    uint16_t off_mid;
    uint32_t off_hi;
    uint32_t zero;
} __attribute__((packed));

#define GUEST_CODE_SEL 0x08 /* vmm/x86_64.c puts the code segment there */

extern const uint64_t trap_stubs[32];
extern const char hc_entry[];

#define HC_VECTOR 3 /* #BP: INT3 is the hypercall gate (guest/boot.S) */

/*
 * The guest runs in ring 3 (vmm/x86_64.c says why); the host points IDTR at
 * INSTAR_IDT_GPA and the TSS's RSP0 at a ring-0 stack, so all we do is fill
 * the gates.  Exceptions switch to ring 0 and land in trap_common.
 */
static struct idt_gate gate(uint64_t a, uint8_t type)
{
    return (struct idt_gate){
        .off_lo = a & 0xffff,
        .sel = GUEST_CODE_SEL,
        .type = type,
        .off_mid = (a >> 16) & 0xffff,
        .off_hi = a >> 32,
    };
}

void idt_install(void);
void idt_install(void)
{
    struct idt_gate *idt = (struct idt_gate *)INSTAR_IDT_GPA;

    for (int i = 0; i < 32; i++)
        idt[i] = gate(trap_stubs[i], 0x8e); /* present, DPL 0, interrupt gate */
    /* Replaces trap_stub_3: the guest never uses INT3 as a breakpoint. */
    idt[HC_VECTOR] = gate((uintptr_t)hc_entry, 0xee); /* DPL 3: INT from ring 3 */
}
