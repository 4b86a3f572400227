/*
 * Big-endian loads from a byte buffer (qcow2 and LUKS store every integer
 * big-endian).  The caller has checked that the bytes are there.
 */
#ifndef QCOW2_BE_H
#define QCOW2_BE_H

#include <stdint.h>

static inline uint16_t be_ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t be_ld32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t be_ld64(const uint8_t *p)
{
    return (uint64_t)be_ld32(p) << 32 | be_ld32(p + 4);
}

#endif /* QCOW2_BE_H */
