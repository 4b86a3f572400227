/*
 * Diagnostic lines of the qcow2 check and repair (2000..2499), each the
 * exact text qemu-img 7.2 prints on stderr (block/qcow2-refcount.c,
 * block/qcow2.c, block/qcow2-bitmap.c), without the trailing newline.
 * The guest streams them as struct instar_report_rec (INSTAR_HC_REPORT);
 * the host renders them with cmd/report.c.
 *
 * Templates follow include/instar/errors.h, plus {#x0}..{#x3}: C's "%#x"
 * (a "0x" prefix, except that zero prints as "0").  Arguments are
 * unsigned; a value qemu prints with a signed conversion never goes
 * negative here.  Where qemu prints two strings (snapshot id and name),
 * the guest passes the whole fragment as {s}.
 *
 * 2058..2060 and 2069 are instar's own lines (repair refusals, docs/repair.md;
 * 2059 is no longer emitted: the snapshot table is rewritten now);
 * qemu-img has no such line.
 *
 * 2400..2499 are not lines but open failures that only check's open with
 * I/O has (the text after "Could not open 'FILE': "), sent as a result
 * error by guest/plan_check.c.
 */
#ifndef QCOW2_CHECK_ERR_H
#define QCOW2_CHECK_ERR_H

#define QCOW2_CHECK_MSGS(X)                                                                        \
    X(QCOW2_MSG_LEAKED, 2000, "Leaked cluster {0} refcount={1} reference={2}")                     \
    X(QCOW2_MSG_REFCOUNT_ERROR, 2001, "ERROR cluster {0} refcount={1} reference={2}")              \
    X(QCOW2_MSG_REFCOUNT_REPAIRING, 2002, "Repairing cluster {0} refcount={1} reference={2}")      \
    X(QCOW2_MSG_REGION_PAST_EOF, 2003,                                                             \
      "ERROR: counting reference for region exceeding the end of the file by one cluster or "      \
      "more: offset 0x{x0} size 0x{x1}")                                                           \
    X(QCOW2_MSG_REFCOUNT_OVERFLOW, 2004, "ERROR: overflow cluster offset=0x{x0}")                  \
    X(QCOW2_MSG_REFCOUNT_OVERFLOW_HINT, 2005,                                                      \
      "Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a "   \
      "clean copy if the image cannot be opened for writing")                                      \
    X(QCOW2_MSG_L2_RESERVED, 2006, "ERROR found l2 entry with reserved bits set: {x0}")            \
    X(QCOW2_MSG_COMPRESSED_COPIED, 2007,                                                           \
      "ERROR: coffset=0x{x0}: copied flag must never be set for compressed clusters")              \
    X(QCOW2_MSG_COMPRESSED_DATA_FILE, 2008,                                                        \
      "ERROR compressed cluster {0} with data file, entry=0x{x1}")                                 \
    X(QCOW2_MSG_COMPRESSED_BITMAP, 2009,                                                           \
      "ERROR compressed cluster {0} with non-zero subcluster allocation bitmap, entry=0x{x1}")     \
    X(QCOW2_MSG_ALLOC_BITMAP_CORRUPT, 2010,                                                        \
      "ERROR offset={x0}: Allocated cluster has corrupted subcluster allocation bitmap")           \
    X(QCOW2_MSG_PREALLOC_UNALIGNED, 2011,                                                          \
      "ERROR offset={x0}: Preallocated cluster is not properly aligned; L2 entry corrupted.")      \
    X(QCOW2_MSG_PREALLOC_UNALIGNED_REPAIRING, 2012,                                                \
      "Repairing offset={x0}: Preallocated cluster is not properly aligned; L2 entry corrupted.")  \
    X(QCOW2_MSG_DATA_UNALIGNED, 2013,                                                              \
      "ERROR offset={x0}: Data cluster is not properly aligned; L2 entry corrupted.")              \
    X(QCOW2_MSG_UNALLOC_BITMAP, 2014,                                                              \
      "ERROR: Unallocated cluster has non-zero subcluster allocation map")                         \
    X(QCOW2_MSG_L2_IO, 2015, "ERROR: I/O error in check_refcounts_l2")                             \
    X(QCOW2_MSG_L1_RESERVED, 2016, "ERROR found L1 entry with reserved bits set: {x0}")            \
    X(QCOW2_MSG_L2_UNALIGNED, 2017,                                                                \
      "ERROR l2_offset={x0}: Table is not cluster aligned; L1 entry corrupted")                    \
    X(QCOW2_MSG_L1_IO, 2018, "ERROR: I/O error in check_refcounts_l1")                             \
    X(QCOW2_MSG_COPIED_L2, 2019,                                                                   \
      "ERROR OFLAG_COPIED L2 cluster: l1_index={0} l1_entry={x1} refcount={2}")                    \
    X(QCOW2_MSG_COPIED_L2_REPAIRING, 2020,                                                         \
      "Repairing OFLAG_COPIED L2 cluster: l1_index={0} l1_entry={x1} refcount={2}")                \
    X(QCOW2_MSG_COPIED_DATA, 2021, "ERROR OFLAG_COPIED data cluster: l2_entry={x0} refcount={1}")  \
    X(QCOW2_MSG_COPIED_DATA_REPAIRING, 2022,                                                       \
      "Repairing OFLAG_COPIED data cluster: l2_entry={x0} refcount={1}")                           \
    X(QCOW2_MSG_L2_READ, 2023, "ERROR: Could not read L2 table: {s}")                              \
    X(QCOW2_MSG_REFT_RESERVED, 2024, "ERROR refcount table entry {0} has reserved bits set")       \
    X(QCOW2_MSG_REFBLOCK_UNALIGNED, 2025,                                                          \
      "ERROR refcount block {0} is not cluster aligned; refcount table entry corrupted")           \
    X(QCOW2_MSG_REFBLOCK_OUTSIDE, 2026, "ERROR refcount block {0} is outside image")               \
    X(QCOW2_MSG_REFBLOCK_OUTSIDE_REPAIRING, 2027, "Repairing refcount block {0} is outside image") \
    X(QCOW2_MSG_REFBLOCK_REFCOUNT, 2028, "ERROR refcount block {0} refcount={1}")                  \
    X(QCOW2_MSG_SNAPSHOTS_DATA_FILE, 2029, "ERROR {0} snapshots in image with data file")          \
    X(QCOW2_MSG_SNAPSHOT_L1_UNALIGNED, 2030,                                                       \
      "ERROR snapshot {s} l1_offset={#x0}: L1 table is not cluster aligned; snapshot table "       \
      "entry corrupted")                                                                           \
    X(QCOW2_MSG_SNAPSHOT_L1_TOO_LARGE, 2031,                                                       \
      "ERROR snapshot {s} l1_size={#x0}: L1 table is too large; snapshot table entry corrupted")   \
    X(QCOW2_MSG_CANT_GET_REFCOUNT, 2032, "Can't get refcount for cluster {0}: {s}")                \
    X(QCOW2_MSG_CORRUPT_REFBLOCK_UNALIGNED, 2033,                                                  \
      "qcow2: Image is corrupt: Refblock offset {#x0} unaligned (reftable index: {#x1}); "         \
      "further non-fatal corruption events will be suppressed")                                    \
    X(QCOW2_MSG_SNAPTABLE_PTR_READ, 2034,                                                          \
      "ERROR failed to read the snapshot table pointer from the image header: {s}")                \
    X(QCOW2_MSG_SNAPTABLE_TOO_LARGE, 2035, "ERROR snapshot table too large")                       \
    X(QCOW2_MSG_SNAPTABLE_OFFSET, 2036, "ERROR snapshot table offset invalid")                     \
    X(QCOW2_MSG_SNAPTABLE_OVERHANG_HINT, 2037,                                                     \
      "You can force-remove all {0} overhanging snapshots with qemu-img check -r all")             \
    X(QCOW2_MSG_SNAPTABLE_EXTRA, 2038,                                                             \
      "ERROR failed to read the snapshot table: Too much extra metadata in snapshot table "        \
      "entry {0}")                                                                                 \
    X(QCOW2_MSG_SNAPTABLE_EXTRA_HINT, 2039,                                                        \
      "You can force-remove this extra metadata with qemu-img check -r all")                       \
    X(QCOW2_MSG_SNAPTABLE_TOO_BIG, 2040,                                                           \
      "ERROR failed to read the snapshot table: Snapshot table is too big")                        \
    X(QCOW2_MSG_SNAPTABLE_READ, 2041,                                                              \
      "ERROR failed to read the snapshot table: Failed to read snapshot table: {s}")               \
    X(QCOW2_MSG_SNAPSHOT_INCOMPLETE, 2042, "ERROR snapshot table entry {0} is incomplete")         \
    X(QCOW2_MSG_SNAPSHOT_INCOMPLETE_REPAIRING, 2043,                                               \
      "Repairing snapshot table entry {0} is incomplete")                                          \
    X(QCOW2_MSG_REBUILDING, 2044, "Rebuilding refcount structure")                                 \
    X(QCOW2_MSG_NEED_REBUILD, 2045, "ERROR need to rebuild refcount structures")                   \
    X(QCOW2_MSG_REBUILT_STILL_BROKEN, 2046, "ERROR rebuilt refcount structure is still broken")    \
    X(QCOW2_MSG_RESIZE_FAILED, 2047, "ERROR could not resize image: {s}")                          \
    X(QCOW2_MSG_L2_OVERWRITE_FAILED, 2048, "ERROR: Failed to overwrite L2 table entry: {s}")       \
    X(QCOW2_MSG_OVERLAP_FAILED, 2049, "ERROR: Overlap check failed")                               \
    X(QCOW2_MSG_L2_WRITE_OVERLAP, 2050,                                                            \
      "ERROR: Could not write L2 table; metadata overlap check failed: {s}")                       \
    X(QCOW2_MSG_L2_WRITE_FAILED, 2051, "ERROR: Could not write L2 table: {s}")                     \
    X(QCOW2_MSG_REBUILD_ALLOC_REFBLOCK, 2052, "ERROR allocating refblock: {s}")                    \
    X(QCOW2_MSG_REBUILD_WRITE_REFBLOCK, 2053, "ERROR writing refblock: {s}")                       \
    X(QCOW2_MSG_REBUILD_ALLOC_REFTABLE, 2054, "ERROR allocating reftable: {s}")                    \
    X(QCOW2_MSG_REBUILD_WRITE_REFTABLE, 2055, "ERROR writing reftable: {s}")                       \
    X(QCOW2_MSG_REBUILD_SET_REFTABLE, 2056, "ERROR setting reftable: {s}")                         \
    X(QCOW2_MSG_REBUILD_REFTABLE_MEM, 2057, "ERROR allocating reftable memory")                    \
    X(QCOW2_MSG_REPAIR_REFUSED_UNCOUNTED, 2058,                                                    \
      "ERROR refusing to repair: some references could not be counted (corrupt metadata), so "     \
      "the computed refcounts may be too low; the image was not changed")                          \
    X(QCOW2_MSG_REPAIR_REFUSED_SNAPSHOTS, 2059,                                                    \
      "ERROR refusing to repair: the snapshot table would have to be rewritten, which instar "     \
      "does not do; the image was not changed")                                                    \
    X(QCOW2_MSG_REPAIR_WRITE_LIMIT, 2060,                                                          \
      "ERROR refusing to grow the image to {0} bytes (limit {1}) for a refcount block at "         \
      "offset {#x2}")                                                                              \
    X(QCOW2_MSG_MARK_CORRUPT_REFBLOCK_UNALIGNED, 2061,                                             \
      "qcow2: Marking image as corrupt: Refblock offset {#x0} unaligned (reftable index: {#x1}); " \
      "further corruption events will be suppressed")                                              \
    X(QCOW2_MSG_SNAP_DISCARD_COUNT, 2062, "Discarding {0} overhanging snapshots")                  \
    X(QCOW2_MSG_SNAP_DISCARD_EXTRA, 2063,                                                          \
      "Discarding too much extra metadata in snapshot table entry {0} ({1} > 1024)")               \
    X(QCOW2_MSG_SNAP_DISCARD_TOO_BIG, 2064,                                                        \
      "Discarding {0} overhanging snapshots (snapshot table is too big)")                          \
    X(QCOW2_MSG_SNAP_COUNT_UPDATE_FAILED, 2065,                                                    \
      "ERROR failed to update the snapshot count in the image header: {s}")                        \
    X(QCOW2_MSG_SNAP_TABLE_UPDATE_FAILED, 2066, "ERROR failed to update snapshot table: {s}")      \
    X(QCOW2_MSG_FREE_CLUSTERS_FAILED, 2067, "qcow2_free_clusters failed: {s}")                     \
    X(QCOW2_MSG_MARK_CORRUPT_OVERLAP, 2068,                                                        \
      "qcow2: Marking image as corrupt: Preventing invalid write on metadata (overlaps with "      \
      "{s}); "                                                                                     \
      "further corruption events will be suppressed")                                              \
    X(QCOW2_MSG_REPAIR_REFUSED_AUTOCLEAR, 2069,                                                    \
      "ERROR refusing to repair: clearing the unknown autoclear feature bits would drop every "    \
      "internal snapshot from the header (as qemu-img 7.2 does); the image was not changed")       \
    X(QCOW2_CHECK_ERR_KEY_SECRET, 2400, "Parameter 'encrypt.key-secret' is required for cipher")   \
    X(QCOW2_CHECK_ERR_NO_CRYPTO_HDR, 2401, "Missing CRYPTO header for crypt method {0}")

enum qcow2_check_msg {
#define QCOW2_CHECK_ENUM(name, code, msg) name = code,
    QCOW2_CHECK_MSGS(QCOW2_CHECK_ENUM)
#undef QCOW2_CHECK_ENUM
};

#endif /* QCOW2_CHECK_ERR_H */
