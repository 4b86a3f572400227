/*
 * Stands in for zstd's lib/common/cpu.h: CMake force-includes it (-include)
 * before every zstd source file, guest and host builds alike, so that
 * cpu.h's include guard is taken and its ZSTD_cpuid() never compiled.
 *
 * zstd runs CPUID once per context, to choose BMI2 code at run time.  We
 * build it with DYNAMIC_BMI2=0 and ZSTD_DISABLE_ASM, so that choice is
 * never consulted; but the probe itself would still run, and the guest
 * must not execute CPUID: the KVM backend sets no CPUID table
 * (vmm/x86_64.c), and what the instruction answers would then depend on
 * the backend.  Reporting no features is what the build already assumes.
 * Only the members zstd 1.5.4 uses are defined; a newer zstd that uses
 * more fails to compile here, which is the point.
 */
#ifndef ZSTD_COMMON_CPU_H
#define ZSTD_COMMON_CPU_H

typedef struct {
    unsigned int f1c;
    unsigned int f1d;
    unsigned int f7b;
    unsigned int f7c;
} ZSTD_cpuid_t;

static inline ZSTD_cpuid_t ZSTD_cpuid(void)
{
    ZSTD_cpuid_t none = {0, 0, 0, 0};

    return none;
}

static inline int ZSTD_cpuid_bmi1(ZSTD_cpuid_t const cpuid)
{
    return (cpuid.f7b & (1U << 3)) != 0;
}

static inline int ZSTD_cpuid_bmi2(ZSTD_cpuid_t const cpuid)
{
    return (cpuid.f7b & (1U << 8)) != 0;
}

#endif /* ZSTD_COMMON_CPU_H */
