/*
 * Messages of the qcow2 data path (reads and block status): 3000..3099.
 *
 * QEMU prints a corruption it finds while reading as "qcow2: Image is
 * corrupt: <message>; further non-fatal corruption events will be
 * suppressed" (qcow2_signal_corruption() on a read-only node); these are
 * the <message> parts, with the spacing QEMU 7.2 has.
 */
#ifndef QCOW2_DATA_ERR_H
#define QCOW2_DATA_ERR_H

#define QCOW2_DATA_ERRORS(X)                                                                       \
    X(QCOW2_CORRUPT_L2_UNALIGNED, 3000, "L2 table offset {#x0} unaligned (L1 index: {#x1})")       \
    X(QCOW2_CORRUPT_ZERO_V2, 3001,                                                                 \
      "Zero cluster entry found in pre-v3 image (L2 offset: {#x0}, L2 index: {#x1})")              \
    X(QCOW2_CORRUPT_COMPRESSED_DATA_FILE, 3002,                                                    \
      "Compressed cluster entry found in image with external data file (L2 offset: {#x0}, L2 "     \
      "index: {#x1})")                                                                             \
    X(QCOW2_CORRUPT_CLUSTER_UNALIGNED, 3003,                                                       \
      "Cluster allocation offset {#x0} unaligned (L2 offset: {#x1}, L2 index: {#x2})")             \
    X(QCOW2_CORRUPT_DATA_FILE_OFFSET, 3004,                                                        \
      "External data file host cluster offset {#x0} does not match guest cluster offset: {#x1}, "  \
      "L2 index: {#x2})")                                                                          \
    X(QCOW2_CORRUPT_INVALID_ENTRY, 3005,                                                           \
      "Invalid cluster entry found  (L2 offset: {#x0}, L2 index: {#x1})")

#endif /* QCOW2_DATA_ERR_H */
