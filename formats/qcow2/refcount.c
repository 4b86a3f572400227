/*
 * Refcount block entry access, widths 1..64 bits (qcow2.txt, "Host cluster
 * management": refcount_bits = 1 << refcount_order).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "refcount.h"

uint64_t qcow2_refcount_max(unsigned order)
{
    unsigned bits = 1u << order;

    return bits >= 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
}

bool qcow2_refcount_fits(uint64_t value, unsigned order)
{
    return value <= qcow2_refcount_max(order);
}

uint64_t qcow2_refcount_block_entries(unsigned cluster_bits, unsigned order)
{
    return UINT64_C(1) << (cluster_bits + 3 - order);
}

uint64_t qcow2_refcount_get(const uint8_t *block, uint64_t index, unsigned order)
{
    unsigned bits = 1u << order;
    uint64_t v = 0;

    if (bits < 8) {
        /* Sub-byte: LSB-first packing within each byte. */
        unsigned per_byte = 8 / bits;
        unsigned shift = (unsigned)(index % per_byte) * bits;
        return (block[index / per_byte] >> shift) & ((1u << bits) - 1);
    }
    /* Whole bytes, big-endian. */
    const uint8_t *p = block + index * (bits / 8);
    for (unsigned i = 0; i < bits / 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

void qcow2_refcount_set(uint8_t *block, uint64_t index, unsigned order, uint64_t value)
{
    unsigned bits = 1u << order;

    value &= qcow2_refcount_max(order);
    if (bits < 8) {
        unsigned per_byte = 8 / bits;
        unsigned shift = (unsigned)(index % per_byte) * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
        uint8_t *b = &block[index / per_byte];
        *b = (uint8_t)((*b & ~mask) | ((unsigned)value << shift));
        return;
    }
    uint8_t *p = block + index * (bits / 8);
    for (unsigned i = bits / 8; i-- > 0;) {
        p[i] = (uint8_t)value;
        value >>= 8;
    }
}
