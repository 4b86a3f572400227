/*
 * Test-only LD_PRELOAD shim for the oracle: getrusage(RUSAGE_THREAD) with
 * the user time multiplied by $INSTAR_ORACLE_CLOCK_SCALE.
 *
 * qemu-img 7.2 reads that clock in one place, the PBKDF2 benchmark of a
 * LUKS create or new key slot (crypto/pbkdf.c), which hashes until it has
 * used 500 ms of CPU whatever the iter-time: a second or more per volume,
 * most of the suites' LUKS time.  On a clock 1000 times fast the benchmark
 * ends after its first round and the iteration counts fall to LUKS's
 * minimum, as instar's do under INSTAR_CLOCK_SCALE (vmm/vmm.h); the suites
 * run both tools so (tests/instar_testlib.py, clock_env()), except the
 * cases marked real_pbkdf2, which time the real work.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>

int getrusage(int who, struct rusage *ru)
{
    static int (*real)(int, struct rusage *);
    static uint64_t scale;
    uint64_t us;
    int r;

    if (!real) {
        const char *s = getenv("INSTAR_ORACLE_CLOCK_SCALE");

        real = (int (*)(int, struct rusage *))dlsym(RTLD_NEXT, "getrusage");
        scale = s ? strtoull(s, NULL, 10) : 1;
        if (scale == 0 || scale > 1000000)
            scale = 1;
    }
    r = real(who, ru);
    if (r == 0 && who == RUSAGE_THREAD) {
        us = (uint64_t)ru->ru_utime.tv_sec * 1000000 + (uint64_t)ru->ru_utime.tv_usec;
        us *= scale;
        ru->ru_utime.tv_sec = (time_t)(us / 1000000);
        ru->ru_utime.tv_usec = (suseconds_t)(us % 1000000);
    }
    return r;
}
