/*
 * A guest that works the process backend's mailbox itself, around the
 * tender, as a compromised guest could.  boot->args.raw holds the abuse,
 * the mailbox's address and the offsets of its fields (the test reads
 * them from vmm/tender/tender.h).  Under KVM that address is not guest
 * memory (#PF), and SYSCALL raises #UD.
 */
#include "neg.h"

enum {
    MB_GARBAGE = 1, /* a request of an unknown kind */
    MB_FLOOD,       /* requests posted without ever waiting for the answers */
    MB_SILENT_WAIT, /* sleeps on the answer to a request never posted */
    MB_CLOSE,       /* closes a descriptor (it has none: a forbidden call anyway) */
    MB_READY_AGAIN, /* a second READY, after the guest has run */
    MB_TIMED_WAIT,  /* sleeps with a timeout (to outlast the watchdog idle) */
};

struct mb_args {
    uint64_t what;
    uint64_t mailbox;
    uint64_t off_req_seq, off_resp_seq, off_kind, off_a;
};

#define NR_CLOSE 3
#define NR_FUTEX 202

static int64_t sys4(uint64_t nr, uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    register uint64_t r10 __asm__("r10") = d;
    int64_t ret;

    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    static const char empty[1];
    struct mb_args a;
    volatile uint8_t *mb;
    volatile uint32_t *req_seq, *resp_seq, *kind;
    volatile uint64_t *arg;
    uint32_t n;

    idt_install();
    memcpy(&a, boot->args.raw, sizeof(a));
    mb = (volatile uint8_t *)(uintptr_t)a.mailbox;
    req_seq = (volatile uint32_t *)(mb + a.off_req_seq);
    resp_seq = (volatile uint32_t *)(mb + a.off_resp_seq);
    kind = (volatile uint32_t *)(mb + a.off_kind);
    arg = (volatile uint64_t *)(mb + a.off_a);
    n = *req_seq;
    switch (a.what) {
    case MB_GARBAGE:
        *kind = 0x77;
        *req_seq = n + 1;
        sys4(NR_FUTEX, (uintptr_t)req_seq, 1 /* FUTEX_WAKE */, 1, 0);
        break;
    case MB_FLOOD: {
        struct instar_hc_log log = {.data = (uintptr_t)empty, .len = 0};

        /* Valid, harmless LOG requests, as fast as it can, never waiting. */
        *kind = 2; /* TENDER_MSG_HC */
        arg[0] = INSTAR_HC_PIO_BASE + INSTAR_HC_LOG;
        arg[1] = (uintptr_t)&log;
        for (;;) {
            *req_seq = ++n;
            sys4(NR_FUTEX, (uintptr_t)req_seq, 1 /* FUTEX_WAKE */, 1, 0);
        }
    }
    case MB_SILENT_WAIT:
        for (;;)
            sys4(NR_FUTEX, (uintptr_t)resp_seq, 0 /* FUTEX_WAIT */, *resp_seq, 0);
    case MB_CLOSE:
        sys4(NR_CLOSE, 0, 0, 0, 0);
        break;
    case MB_TIMED_WAIT: {
        static const uint64_t ts[2] = {0, 200000000}; /* 200 ms */

        for (;;)
            sys4(NR_FUTEX, (uintptr_t)resp_seq, 0 /* FUTEX_WAIT */, *resp_seq, (uintptr_t)ts);
    }
    case MB_READY_AGAIN:
        *kind = 1; /* TENDER_MSG_READY */
        *req_seq = n + 1;
        sys4(NR_FUTEX, (uintptr_t)req_seq, 1 /* FUTEX_WAKE */, 1, 0);
        break;
    }
    for (;;)
        __asm__ volatile("pause");
}
