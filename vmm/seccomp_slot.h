/*
 * The placeholder compiled into the host's seccomp filter where the
 * tender's descriptor goes (vmm/seccomp_gen.c); vmm/seccomp.c puts the
 * real descriptor there before loading it.  No descriptor has this
 * number: RLIMIT_NOFILE cannot reach it.
 */
#ifndef VMM_SECCOMP_SLOT_H
#define VMM_SECCOMP_SLOT_H

#define SECCOMP_TENDER_FD_SLOT 0x7ffffa11u

#endif
