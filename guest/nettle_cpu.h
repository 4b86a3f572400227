/*
 * Which of nettle's implementations the guest's crypto runs: the portable
 * C, nettle's x86-64 assembly, or its AES-NI and SHA-NI assembly, chosen
 * from the CPU features the host found (boot_info.cpu_features), as
 * nettle's fat build (fat-x86_64.c) chooses from CPUID, which the guest
 * never runs.  Built into the nettle library for the guest and for the
 * host's unit tests (CMakeLists.txt, "crypto").
 */
#ifndef INSTAR_GUEST_NETTLE_CPU_H
#define INSTAR_GUEST_NETTLE_CPU_H

#include <stdint.h>

/*
 * gnettle_cpu_select(): points nettle's AES, SHA-1, SHA-256, SHA-512 and
 * memxor entry points at the fastest code the INSTAR_CPU_* bits in
 * features allow (0: the portable C, which is also what runs before any
 * call).  Returns the bits it used.  Call it before any crypto, not while
 * another thread does crypto.
 */
uint32_t gnettle_cpu_select(uint32_t features);

#endif /* INSTAR_GUEST_NETTLE_CPU_H */
