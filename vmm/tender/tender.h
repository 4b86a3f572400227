/*
 * The process backend's private protocol between the host (vmm/proc.c)
 * and the tender (vmm/tender/tender.c), the small static program that
 * becomes the guest process.  Host-internal: the guest never sees it, and
 * the guest-facing ABI stays include/instar/abi.h.
 *
 * The child starts with exactly two descriptors: TENDER_FD_CHANNEL, one
 * end of a SOCK_SEQPACKET socketpair, and TENDER_FD_MEM, the guest-RAM
 * memfd, which it maps and closes before any guest instruction runs.
 * Every message is one fixed-size packet.
 */
#ifndef VMM_TENDER_H
#define VMM_TENDER_H

#include <stdint.h>

#define TENDER_FD_CHANNEL 0
#define TENDER_FD_MEM     1

/* Where the tender is linked (CMakeLists.txt): far above any guest RAM. */
#define TENDER_LINK_ADDR 0x10000000000ULL

#define TENDER_MAGIC   0x52444e54 /* "TNDR" */
#define TENDER_VERSION 1

/* Host -> tender, once, first thing on the channel. */
struct tender_setup {
    uint32_t magic;   /* TENDER_MAGIC */
    uint32_t version; /* TENDER_VERSION */
    uint64_t low;     /* guest RAM [low, mem_size) is mapped at the same address */
    uint64_t mem_size;
    uint64_t text_start; /* [text_start, text_end) is mapped read+exec, the rest read+write */
    uint64_t text_end;
    uint64_t entry;    /* the image's ring-3 entry (instar_image_hdr.entry_user) */
    uint64_t cpu_cur;  /* RLIMIT_CPU for the child, seconds; UINT64_MAX: keep */
    uint64_t cpu_max;  /* likewise, the hard limit */
    uint64_t as_limit; /* RLIMIT_AS for the child, bytes */
};

/* Tender -> host messages. */
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

/* Host -> tender: the hypercall is served, resume the guest. */
#define TENDER_RESUME 0x454d55534552ULL /* "RESUME" */

/*
 * Exit statuses of a tender whose set-up failed, before TENDER_MSG_READY
 * (so before any guest instruction ran: the host may believe them).
 */
enum tender_exit {
    TENDER_EXIT_SETUP = 100, /* no valid struct tender_setup */
    TENDER_EXIT_MAP,         /* mapping guest RAM failed */
    TENDER_EXIT_SIGNALS,     /* sigaltstack/rt_sigaction/rt_sigprocmask failed */
    TENDER_EXIT_RLIMIT,      /* prlimit64 failed */
    TENDER_EXIT_PRCTL,       /* PR_SET_DUMPABLE / PR_SET_NO_NEW_PRIVS failed */
    TENDER_EXIT_SECCOMP,     /* the seccomp filter was refused */
    TENDER_EXIT_CHANNEL,     /* the channel failed (the host went away) */
};

#endif /* VMM_TENDER_H */
