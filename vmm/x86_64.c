/*
 * Long-mode boot state: identity page tables, a flat GDT and the control
 * registers for a 64-bit guest that starts at its entry point with paging
 * on (Intel SDM vol. 3A, 4.5 "4-level paging" and 9.8.5 "Initializing
 * IA-32e mode").  No BIOS, no real mode.
 *
 * The guest starts in ring 0 only to drop to ring 3 for good (guest/boot.S).  Why: on hosts whose
 * KVM runs guests by paravirtual paging (kvm_pvm, as on our CI machines), guest ring-0 code is
 * emulated instruction by instruction, which is slow and cannot run SSE,
 * while ring-3 code runs natively.  Page tables therefore carry the U bit;
 * exceptions switch to ring 0 through the TSS's RSP0.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "instar/abi.h"
#include "vmm_int.h"

#define PTE_P  (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_US (1ULL << 2)
#define PTE_PS (1ULL << 7)

#define CR0_PE (1ULL << 0)
#define CR0_MP (1ULL << 1)
#define CR0_ET (1ULL << 4)
#define CR0_NE (1ULL << 5)
#define CR0_WP (1ULL << 16)
#define CR0_PG (1ULL << 31)

#define CR4_PAE        (1ULL << 5)
#define CR4_OSFXSR     (1ULL << 9)
#define CR4_OSXMMEXCPT (1ULL << 10)

#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define GDT_CODE_SEL    0x08
#define GDT_DATA_SEL    0x10
#define GDT_UCODE32_SEL 0x18 /* unused; keeps the SYSRET layout possible */
#define GDT_UDATA_SEL   0x20
#define GDT_UCODE_SEL   0x28
#define GDT_TSS_SEL     0x30

static void put64(uint8_t *base, uint64_t gpa, uint64_t val)
{
    memcpy(base + gpa, &val, sizeof(val));
}

int vmm_x86_setup_memory(uint8_t *base, uint64_t size)
{
    uint64_t npd = (size + (1ULL << 30) - 1) >> 30;

    if (size < INSTAR_GUEST_MEM_MIN || size > INSTAR_GUEST_MEM_MAX || size % (2ULL << 20))
        return -EINVAL;

    /* GDT: null, 64-bit code (L=1), data. */
    put64(base, INSTAR_GDT_GPA + 0, 0);
    put64(base, INSTAR_GDT_GPA + GDT_CODE_SEL, 0x00af9b000000ffffULL);
    put64(base, INSTAR_GDT_GPA + GDT_DATA_SEL, 0x00cf93000000ffffULL);
    put64(base, INSTAR_GDT_GPA + GDT_UCODE32_SEL, 0x00cffb000000ffffULL);
    put64(base, INSTAR_GDT_GPA + GDT_UCODE_SEL, 0x00affb000000ffffULL);
    put64(base, INSTAR_GDT_GPA + GDT_UDATA_SEL, 0x00cff3000000ffffULL);
    /* TSS: only RSP0 matters, the stack for exceptions taken in ring 3. */
    put64(base, INSTAR_TSS_GPA + 4, INSTAR_TRAP_STACK_TOP);

    put64(base, INSTAR_PML4_GPA, INSTAR_PDPT_GPA | PTE_P | PTE_RW | PTE_US);
    for (uint64_t g = 0; g < npd; g++) {
        uint64_t pd = INSTAR_PD_GPA + g * 4096;

        put64(base, INSTAR_PDPT_GPA + g * 8, pd | PTE_P | PTE_RW | PTE_US);
        for (uint64_t i = 0; i < 512; i++) {
            uint64_t pa = (g << 30) | (i << 21);

            if (pa >= size)
                break;
            if (pa == 0)
                put64(base, pd, INSTAR_PT0_GPA | PTE_P | PTE_RW | PTE_US);
            else
                put64(base, pd + i * 8, pa | PTE_P | PTE_RW | PTE_US | PTE_PS);
        }
    }
    /* First 2 MiB in 4 KiB pages, page 0 left out so NULL faults. */
    for (uint64_t i = 1; i < 512; i++)
        put64(base, INSTAR_PT0_GPA + i * 8, (i << 12) | PTE_P | PTE_RW | PTE_US);
    return 0;
}

int vmm_x86_setup_vcpu(int kvm_fd, int vcpu_fd, uint64_t entry)
{
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    struct kvm_segment code = {
        .base = 0,
        .limit = 0xffffffff,
        .selector = GDT_CODE_SEL,
        .type = 11, /* execute/read, accessed */
        .present = 1,
        .dpl = 0,
        .db = 0,
        .s = 1,
        .l = 1,
        .g = 1,
    };
    struct kvm_segment data = code;
    /*
     * No KVM_SET_CPUID2: the guest never executes CPUID, and fetching the
     * supported table costs ~0.8 ms per run, a sixth of qemu-img info.
     */
    (void)kvm_fd;
    if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;

    data.type = 3; /* read/write, accessed */
    data.l = 0;
    data.db = 1;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;

    /* VM entry wants a usable TR even though we never switch tasks. */
    sregs.tr = (struct kvm_segment){
        .base = INSTAR_TSS_GPA, .limit = 0x67, .selector = GDT_TSS_SEL, .type = 11, .present = 1};
    sregs.ldt = (struct kvm_segment){.selector = 0, .type = 2, .present = 1, .unusable = 1};

    sregs.gdt.base = INSTAR_GDT_GPA;
    sregs.gdt.limit = 8 * 8 - 1;
    sregs.idt.base = INSTAR_IDT_GPA;
    sregs.idt.limit = 256 * 16 - 1; /* the guest fills the gates first thing */

    sregs.cr3 = INSTAR_PML4_GPA;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA;
    if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
        return -errno;

    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2; /* bit 1 is reserved-set; IF stays clear */
    regs.rip = entry;
    if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
        return -errno;
    return 0;
}
