/*
 * Open-time errors of formats/qcow2 (header, header extensions, snapshot
 * table, bitmap directory): codes 1000..1499.
 *
 * Each message is what qemu-img 7.2 prints after "Could not open 'FILE': ",
 * copied verbatim from block/qcow2.c, block/qcow2-snapshot.c,
 * block/qcow2-bitmap.c and block/dirty-bitmap.c.  A message with a hint
 * (error_append_hint) carries it after a '\n', as qemu-img prints it.
 * QEMU prints a few uint32_t fields with "%d"; such messages have a twin
 * whose template carries the minus sign and whose argument is 2^32 - value.
 */
#ifndef QCOW2_HEADER_ERR_H
#define QCOW2_HEADER_ERR_H

#define QCOW2_HEADER_ERRORS(X)                                                                     \
    X(QCOW2_ERR_NOT_QCOW2, 1000, "Image is not in qcow2 format")                                   \
    X(QCOW2_ERR_VERSION, 1001, "Unsupported qcow2 version {0}")                                    \
    X(QCOW2_ERR_CLUSTER_BITS, 1002, "Unsupported cluster size: 2^{0}")                             \
    X(QCOW2_ERR_HEADER_TOO_SHORT, 1003, "qcow2 header too short")                                  \
    X(QCOW2_ERR_HEADER_EXCEEDS_CLUSTER, 1004, "qcow2 header exceeds cluster size")                 \
    X(QCOW2_ERR_BACKING_OFFSET, 1005, "Invalid backing file offset")                               \
    X(QCOW2_ERR_COMPRESSION_TYPE, 1006, "qcow2: unknown compression type: {0}")                    \
    X(QCOW2_ERR_COMPRESSION_BIT_SET, 1007,                                                         \
      "qcow2: Compression type incompatible feature bit must not be set")                          \
    X(QCOW2_ERR_COMPRESSION_BIT_UNSET, 1008,                                                       \
      "qcow2: Compression type incompatible feature bit must be set")                              \
    X(QCOW2_ERR_UNSUPPORTED_FEATURE, 1009, "Unsupported qcow2 feature(s): {s}")                    \
    X(QCOW2_ERR_SUBCLUSTER_SIZE, 1010, "Unsupported subcluster size: {0}")                         \
    X(QCOW2_ERR_REFCOUNT_ORDER, 1011,                                                              \
      "Reference count entry width too large; may not exceed 64 bits")                             \
    X(QCOW2_ERR_NO_REFTABLE, 1012, "Image does not contain a reference count table")               \
    X(QCOW2_ERR_REFTABLE_TOO_LARGE, 1013, "Reference count table too large")                       \
    X(QCOW2_ERR_REFTABLE_OFFSET, 1014, "Reference count table offset invalid")                     \
    X(QCOW2_ERR_SNAPTABLE_TOO_LARGE, 1015, "Snapshot table too large")                             \
    X(QCOW2_ERR_SNAPTABLE_OFFSET, 1016, "Snapshot table offset invalid")                           \
    X(QCOW2_ERR_L1_TOO_LARGE, 1017, "Active L1 table too large")                                   \
    X(QCOW2_ERR_L1_OFFSET, 1018, "Active L1 table offset invalid")                                 \
    X(QCOW2_ERR_IMAGE_TOO_BIG, 1019, "Image is too big")                                           \
    X(QCOW2_ERR_L1_TOO_SMALL, 1020, "L1 table is too small")                                       \
    X(QCOW2_ERR_ENCRYPT_METHOD, 1021, "Unsupported encryption method {0}")                         \
    X(QCOW2_ERR_ENCRYPT_METHOD_NEG, 1022, "Unsupported encryption method -{0}")                    \
    X(QCOW2_ERR_L1_READ, 1023, "Could not read L1 table: Input/output error")                      \
    X(QCOW2_ERR_REFTABLE_READ, 1024, "Could not initialize refcount handling: Input/output error") \
    X(QCOW2_ERR_SIZE_TOO_LARGE, 1025, "Could not refresh total sector count: File too large")      \
    X(QCOW2_ERR_EXT_TOO_LARGE, 1030, "Header extension too large")                                 \
    X(QCOW2_ERR_EXT_BACKING_FMT_LEN, 1031, "ERROR: ext_backing_format: len={0} too large (>=16)")  \
    X(QCOW2_ERR_EXT_CRYPTO_UNEXPECTED, 1032,                                                       \
      "CRYPTO header extension only expected with LUKS encryption method")                         \
    X(QCOW2_ERR_EXT_CRYPTO_SIZE, 1033, "CRYPTO header extension size {0}, but expected size 16")   \
    X(QCOW2_ERR_EXT_CRYPTO_OFFSET, 1034,                                                           \
      "Encryption header offset '{0}' is not a multiple of cluster size '{1}'")                    \
    X(QCOW2_ERR_EXT_BITMAPS_LEN, 1035, "bitmaps_ext: Invalid extension length")                    \
    X(QCOW2_ERR_EXT_BITMAPS_RESERVED, 1036, "bitmaps_ext: Reserved field is not zero")             \
    X(QCOW2_ERR_EXT_BITMAPS_TOO_MANY, 1037,                                                        \
      "bitmaps_ext: Image has {0} bitmaps, exceeding the QEMU supported maximum of 65535")         \
    X(QCOW2_ERR_EXT_BITMAPS_ZERO, 1038, "found bitmaps extension with zero bitmaps")               \
    X(QCOW2_ERR_EXT_BITMAPS_DIR_OFFSET, 1039, "bitmaps_ext: invalid bitmap directory offset")      \
    X(QCOW2_ERR_EXT_BITMAPS_DIR_SIZE, 1040,                                                        \
      "bitmaps_ext: bitmap directory size ({0}) exceeds the maximum supported size (67107840)")    \
    X(QCOW2_ERR_BACKING_NAME_TOO_LONG, 1041, "Backing file name too long")                         \
    X(QCOW2_ERR_CRYPTO_HDR_READ, 1042, "Could not read encryption header: Input/output error")     \
    X(QCOW2_ERR_SNAP_EXTRA_TOO_BIG, 1050,                                                          \
      "Too much extra metadata in snapshot table entry {0}\n"                                      \
      "You can force-remove this extra metadata with qemu-img check -r all")                       \
    X(QCOW2_ERR_SNAP_TABLE_TOO_BIG, 1051,                                                          \
      "Snapshot table is too big\n"                                                                \
      "You can force-remove all {0} overhanging snapshots with qemu-img check -r all")             \
    X(QCOW2_ERR_SNAP_READ, 1052, "Failed to read snapshot table: Input/output error")              \
    X(QCOW2_ERR_BITMAP_DIR_SIZE_ZERO, 1060, "Requested bitmap directory size is zero")             \
    X(QCOW2_ERR_BITMAP_TOO_MANY, 1061, "More bitmaps found than specified in header extension")    \
    X(QCOW2_ERR_BITMAP_EXTRA_DATA, 1062, "Bitmap extra data is not supported")                     \
    X(QCOW2_ERR_BITMAP_CONSTRAINTS, 1063, "Bitmap '{s}' doesn't satisfy the constraints")          \
    X(QCOW2_ERR_BITMAP_TOO_FEW, 1064, "Less bitmaps found than specified in header extension")     \
    X(QCOW2_ERR_BITMAP_DIR_BROKEN, 1065, "Broken bitmap directory")                                \
    X(QCOW2_ERR_BITMAP_EXISTS, 1066, "Bitmap already exists: {s}")                                 \
    X(QCOW2_ERR_BITMAP_TABLE_INVALID, 1067,                                                        \
      "Could not read bitmap_table table from image for bitmap '{s}': Invalid argument")           \
    X(QCOW2_ERR_BITMAP_DATA_INVALID, 1068,                                                         \
      "Could not read bitmap '{s}' from image: Invalid argument")                                  \
    X(QCOW2_ERR_BITMAP_DIR_READ, 1069, "Failed to read bitmap directory: Input/output error")      \
    X(QCOW2_ERR_BITMAP_TABLE_IO, 1070,                                                             \
      "Could not read bitmap_table table from image for bitmap '{s}': Input/output error")         \
    X(QCOW2_ERR_BITMAP_DATA_IO, 1071,                                                              \
      "Could not read bitmap '{s}' from image: Input/output error")                                \
    X(QCOW2_ERR_CORRUPT_RDWR, 1072, "qcow2: Image is corrupt; cannot be opened read/write")        \
    X(QCOW2_ERR_SNAP_L1_TOO_LARGE, 1073, "Snapshot L1 table too large")                            \
    X(QCOW2_ERR_SNAP_L1_OFFSET, 1074, "Snapshot L1 table offset invalid")

/*
 * Failures of qcow2_snapshot_load_tmp() (-l): qemu-img prints them after
 * "Failed to load snapshot: ", not as open errors.
 */
#define QCOW2_ERR_IS_SNAPSHOT_LOAD(code)                                                           \
    ((code) == QCOW2_ERR_SNAP_L1_TOO_LARGE || (code) == QCOW2_ERR_SNAP_L1_OFFSET)

#endif /* QCOW2_HEADER_ERR_H */
