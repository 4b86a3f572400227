/*
 * Refcount block entries of every width qcow2 allows.
 *
 * A refcount block is one cluster of 2^refcount_order-bit entries
 * (qcow2.txt, "Host cluster management"), refcount_order 0..6, i.e. 1 to 64
 * bits.  Entries of 8 bits and more are big-endian integers.  Narrower
 * entries are packed least-significant bits first: entry i of width w sits
 * in byte i*w/8 at bit shift (i*w) % 8, as QEMU stores them.
 */
#ifndef QCOW2_REFCOUNT_H
#define QCOW2_REFCOUNT_H

#include <stdbool.h>
#include <stdint.h>

#define QCOW2_REFCOUNT_ORDER_MAX 6

/*
 * qcow2_refcount_max - the largest refcount an entry of 2^order bits holds
 * (1 for order 0, UINT64_MAX for order 6).  order must be <= 6.
 */
uint64_t qcow2_refcount_max(unsigned order);

/*
 * qcow2_refcount_block_entries - entries in one refcount block of
 * 2^cluster_bits bytes: 2^(cluster_bits + 3 - order).  The caller has
 * validated cluster_bits (9..21) and order (0..6).
 */
uint64_t qcow2_refcount_block_entries(unsigned cluster_bits, unsigned order);

/*
 * qcow2_refcount_get - entry index of the refcount block at block, whose
 * entries are 2^order bits wide.  The caller guarantees
 * index < qcow2_refcount_block_entries() for the block's size, and
 * order <= 6; the block's contents are untrusted and any value is valid.
 */
uint64_t qcow2_refcount_get(const uint8_t *block, uint64_t index, unsigned order);

/*
 * qcow2_refcount_set - store value in entry index, leaving every other
 * entry's bits untouched.  Same preconditions as qcow2_refcount_get; value
 * must be <= qcow2_refcount_max(order) (use qcow2_refcount_fits() on
 * computed values): excess high bits are dropped, never spilled into a
 * neighbour.
 */
void qcow2_refcount_set(uint8_t *block, uint64_t index, unsigned order, uint64_t value);

/* qcow2_refcount_fits - value can be stored in a 2^order-bit entry. */
bool qcow2_refcount_fits(uint64_t value, unsigned order);

#endif /* QCOW2_REFCOUNT_H */
