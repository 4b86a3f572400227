/*
 * A guest that talks to the process backend's channel (fd 0) itself,
 * around the tender, as a compromised guest could: boot->args.raw[0]
 * picks the abuse.  Under KVM these are SYSCALLs, which raise #UD.
 */
#include "neg.h"

enum {
    CHAN_PARTIAL = 1, /* a request shorter than a packet */
    CHAN_OVERSIZED,   /* a request longer than a packet */
    CHAN_GARBAGE,     /* a packet of an unknown kind */
    CHAN_FLOOD,       /* requests without ever reading the answers */
    CHAN_SILENT_READ, /* blocks reading an answer to a request never sent */
    CHAN_CLOSE,       /* closes the channel (a forbidden call) */
};

static int64_t sys3(uint64_t nr, uint64_t a, uint64_t b, uint64_t c)
{
    int64_t ret;

    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}

#define NR_READ  0
#define NR_WRITE 1
#define NR_CLOSE 3

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    static uint64_t pkt[32];
    static uint64_t arg[8];
    uint64_t what;

    idt_install();
    memcpy(&what, boot->args.raw, sizeof(what));
    switch (what) {
    case CHAN_PARTIAL:
        pkt[0] = 2;
        sys3(NR_WRITE, 0, (uintptr_t)pkt, 12);
        break;
    case CHAN_OVERSIZED:
        pkt[0] = 2;
        sys3(NR_WRITE, 0, (uintptr_t)pkt, sizeof(pkt));
        break;
    case CHAN_GARBAGE:
        pkt[0] = 0x77;
        sys3(NR_WRITE, 0, (uintptr_t)pkt, 48);
        break;
    case CHAN_FLOOD:
        /* Valid FLUSH-less LOG requests (harmless to serve), never read back. */
        pkt[0] = 2;                                  /* TENDER_MSG_HC */
        pkt[1] = INSTAR_HC_PIO_BASE + INSTAR_HC_LOG; /* port */
        pkt[2] = (uintptr_t)arg;                     /* an empty log message */
        for (;;)
            if (sys3(NR_WRITE, 0, (uintptr_t)pkt, 48) < 0)
                break;
        break;
    case CHAN_SILENT_READ:
        sys3(NR_READ, 0, (uintptr_t)pkt, 8);
        break;
    case CHAN_CLOSE:
        sys3(NR_CLOSE, 0, 0, 0);
        break;
    }
    for (;;)
        __asm__ volatile("pause");
}
