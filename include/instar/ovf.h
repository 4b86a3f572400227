/*
 * Overflow-checked arithmetic for untrusted values.  Every sum or product
 * that involves a number read from an image or from the guest goes through
 * these.  Each returns true when the result overflowed (and *r is then
 * unspecified), false when *r holds the exact result.
 */
#ifndef INSTAR_OVF_H
#define INSTAR_OVF_H

#include <stdbool.h>
#include <stdint.h>

static inline bool ovf_add_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_add_overflow(a, b, r);
}

static inline bool ovf_mul_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_mul_overflow(a, b, r);
}

/* a + b <= limit, without overflow. */
static inline bool ovf_range_ok(uint64_t a, uint64_t b, uint64_t limit)
{
    uint64_t end;
    return !ovf_add_u64(a, b, &end) && end <= limit;
}

#endif /* INSTAR_OVF_H */
