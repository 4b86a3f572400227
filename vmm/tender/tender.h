/*
 * The process backend's private protocol between the host (vmm/proc.c)
 * and the tender (vmm/tender/tender.c), the small static program that
 * becomes the guest process.  Host-internal: the guest never sees it, and
 * the guest-facing ABI stays include/instar/abi.h.
 *
 * The child starts with exactly two descriptors, which it maps and closes
 * before any guest instruction runs: TENDER_FD_MEM, the guest-RAM memfd,
 * and TENDER_FD_MAILBOX, a one-page memfd shared with the host.  Its one
 * channel to the host is that page: a request slot, two sequence numbers
 * and futex wake-ups (a round trip costs ~13 us here, against ~30 us for a
 * pair of socket messages).  After the jump into the guest the page is
 * guest-writable: the host copies a request once and trusts nothing in it.
 */
#ifndef VMM_TENDER_H
#define VMM_TENDER_H

#include <stdint.h>

#define TENDER_FD_MEM     0
#define TENDER_FD_MAILBOX 1

/* Where the tender is linked (CMakeLists.txt), and maps the mailbox: far above any guest RAM. */
#define TENDER_LINK_ADDR    0x10000000000ULL
#define TENDER_MAILBOX_ADDR 0x20000000000ULL

#define TENDER_MAGIC   0x52444e54 /* "TNDR" */
#define TENDER_VERSION 2

/* Host -> tender, in the mailbox before the exec. */
struct tender_setup {
    uint32_t magic;   /* TENDER_MAGIC */
    uint32_t version; /* TENDER_VERSION */
    uint64_t low;     /* guest RAM [low, mem_size) is mapped at the same address */
    uint64_t mem_size;
    uint64_t text_start; /* [text_start, text_end) is mapped read+exec, the rest read+write */
    uint64_t text_end;
    uint64_t entry;    /* the image's ring-3 entry (instar_image_hdr.entry_user) */
    uint64_t cpu_cur;  /* RLIMIT_CPU for the child, seconds */
    uint64_t cpu_max;  /* likewise, the hard limit */
    uint64_t as_limit; /* RLIMIT_AS for the child, bytes */
    uint64_t host_pid; /* the parent, to catch a host that died before PR_SET_PDEATHSIG */
    uint64_t spin;     /* polls of an answer before sleeping on it (0 on one CPU) */
};

/* Tender -> host requests. */
enum tender_msg_kind {
    TENDER_MSG_READY = 1, /* confined; the next instruction is the guest's */
    TENDER_MSG_HC = 2,    /* a[0] = RDX (port), a[1] = RAX (argument address) at the INT3 */
    TENDER_MSG_EXC = 3,   /* a[0..4] = trapno, error code, RIP, CR2, RSP; the child then exits */
};

struct tender_msg {
    uint32_t kind; /* enum tender_msg_kind */
    uint32_t pad;
    uint64_t a[5];
};

/*
 * The shared page.  A request: the tender fills req, then stores
 * req_seq + 1 into req_seq and wakes it; the host, which waits on req_seq,
 * copies req once, serves it, stores that sequence number into resp_seq
 * and wakes it, which resumes the guest (READY and HC wait for it; EXC
 * does not).  The two counters sit in cache lines of their own.
 */
struct tender_mailbox {
    uint32_t req_seq;
    uint32_t pad0[15];
    uint32_t resp_seq;
    uint32_t pad1[15];
    struct tender_msg req;
    struct tender_setup setup;
};

/*
 * Exit statuses of a tender whose set-up failed, before TENDER_MSG_READY
 * was answered (so before any guest instruction ran: the host may believe
 * them).
 */
enum tender_exit {
    TENDER_EXIT_SETUP = 100, /* no valid struct tender_setup */
    TENDER_EXIT_MAP,         /* mapping guest RAM or the mailbox failed */
    TENDER_EXIT_SIGNALS,     /* sigaltstack/rt_sigaction/rt_sigprocmask failed */
    TENDER_EXIT_RLIMIT,      /* prlimit64 failed */
    TENDER_EXIT_PRCTL,       /* PR_SET_DUMPABLE / PR_SET_NO_NEW_PRIVS failed */
    TENDER_EXIT_SECCOMP,     /* the seccomp filter was refused */
};

#endif /* VMM_TENDER_H */
