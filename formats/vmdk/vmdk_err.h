/*
 * Open-time errors of formats/vmdk: codes 4000..4099 (qcow2 owns
 * 1000..3099, vpc 5000..5099).
 *
 * Each message is what qemu-img 7.2 prints after "Could not open 'FILE': ",
 * copied verbatim from block/vmdk.c (vmdk_open and the functions it
 * calls).  VMDK_ERR_EINVAL is a driver failure without a message of its
 * own: bdrv_open_common() words it, naming the file ({s}, filled in by the
 * host).  The codes from 4050 on are instar's own clean errors where
 * qemu-img crashes or where instar refuses what qemu-img does
 * (docs/differences.md).  seSparse's header checks (4019..4031) take
 * their hex arguments as QEMU prints them (%016 PRIx64).
 */
#ifndef VMDK_ERR_H
#define VMDK_ERR_H

#define VMDK_ERRORS(X)                                                                             \
    X(VMDK_ERR_TOO_SMALL, 4000, "File is too small, not a valid image")                            \
    X(VMDK_ERR_FOOTER, 4001, "Invalid footer")                                                     \
    X(VMDK_ERR_VERSION, 4002, "Unsupported VMDK version {0}")                                      \
    X(VMDK_ERR_V3_RO, 4003, "VMDK version 3 must be read only")                                    \
    X(VMDK_ERR_L2_SIZE, 4004, "L2 table size too big")                                             \
    X(VMDK_ERR_L1_ENTRY, 4005, "L1 entry size is invalid")                                         \
    X(VMDK_ERR_TRUNCATED, 4006, "File truncated, expecting at least {0} bytes")                    \
    X(VMDK_ERR_GRANULARITY, 4007, "Invalid granularity, image may be corrupt")                     \
    X(VMDK_ERR_L1_SIZE, 4008, "L1 size too big")                                                   \
    X(VMDK_ERR_NOT_VMDK, 4009, "Image not in VMDK format")                                         \
    X(VMDK_ERR_DESC, 4010, "invalid VMDK image descriptor")                                        \
    X(VMDK_ERR_TYPE, 4011, "Unsupported image type '{s}'")                                         \
    X(VMDK_ERR_EXTENT_LINE, 4012, "Invalid extent line: {s}")                                      \
    X(VMDK_ERR_EINVAL, 4013, "Could not open '{s}': Invalid argument")                             \
    X(VMDK_ERR_L1_READ, 4014, "Could not read l1 table from extent '{s}': Invalid argument")       \
    X(VMDK_ERR_NOMEM, 4015, "Cannot allocate memory")                                              \
    X(VMDK_ERR_FOOTER_READ, 4016, "Failed to read footer: Input/output error")                     \
    X(VMDK_ERR_TRUNCATED_NEG, 4017, "File truncated, expecting at least -{0} bytes")               \
    X(VMDK_ERR_DESC_READ, 4018, "Could not read from file: Input/output error")                    \
    X(VMDK_ERR_SE_MAGIC, 4019, "Bad const header magic: 0x{016x0}")                                \
    X(VMDK_ERR_SE_VERSION, 4020, "Unsupported version: 0x{016x0}")                                 \
    X(VMDK_ERR_SE_GRAIN, 4021, "Unsupported grain size: {0}")                                      \
    X(VMDK_ERR_SE_GT, 4022, "Unsupported grain table size: {0}")                                   \
    X(VMDK_ERR_SE_FLAGS, 4023, "Unsupported flags: 0x{016x0}")                                     \
    X(VMDK_ERR_SE_RESERVED, 4024,                                                                  \
      "Unsupported reserved bits: 0x{016x0} 0x{016x1} 0x{016x2} 0x{016x3}")                        \
    X(VMDK_ERR_SE_PAD, 4025, "Unsupported non-zero const header padding")                          \
    X(VMDK_ERR_SE_VMAGIC, 4026, "Bad volatile header magic: 0x{016x0}")                            \
    X(VMDK_ERR_SE_DIRTY, 4027, "Image is dirty, Replaying journal not supported")                  \
    X(VMDK_ERR_SE_VPAD, 4028, "Unsupported non-zero volatile header padding")                      \
    X(VMDK_ERR_SE_RDWR, 4029, "No write support for seSparse images available")                    \
    /* 4030, 4031: {s} the extent file's name (the host fills it in from err_args[1]) */           \
    X(VMDK_ERR_SE_VOL_READ, 4030,                                                                  \
      "Could not read volatile header from file '{s}': Input/output error")                        \
    X(VMDK_ERR_L1_READ_EIO, 4031, "Could not read l1 table from extent '{s}': Input/output error") \
    X(VMDK_MSG_NO_EXTENT, 4040, "ERROR: could not find extent for sector {0}")                     \
    X(VMDK_MSG_CLUSTER, 4041, "ERROR: could not get cluster_offset for sector {0}")                \
    X(VMDK_MSG_EOF, 4042, "ERROR: cluster offset for sector {0} points after EOF")                 \
    X(VMDK_MSG_STREAM_ALLOCATED, 4043, "Could not write to allocated cluster for streamOptimized") \
    X(VMDK_ERR_NO_EXTENTS, 4050, "VMDK descriptor names no extent (qemu-img 7.2 aborts on it)")    \
    X(VMDK_ERR_EXTENT_UNSUPPORTED, 4051, "VMDK extent type '{s}' is not supported by instar")      \
    X(VMDK_ERR_DESCRIPTOR_UNSUPPORTED, 4052,                                                       \
      "VMDK descriptor files (createType '{s}') are not supported by instar yet")                  \
    X(VMDK_ERR_TOO_MANY_EXTENTS, 4053, "VMDK descriptor names more than {0} extents")              \
    X(VMDK_ERR_BAD_GEOMETRY, 4054,                                                                 \
      "VMDK extent has a grain size of 0 sectors or grain tables covering 2^32 sectors "           \
      "(qemu-img 7.2 divides by zero on it)")                                                      \
    X(VMDK_ERR_TOO_LARGE, 4055, "VMDK extents add up to more than 2^63 bytes")                     \
    X(VMDK_ERR_NESTED, 4056,                                                                       \
      "VMDK extent files that are descriptors again nest more than {0} deep (qemu-img 7.2 "        \
      "recurses without a bound)")                                                                 \
    X(VMDK_ERR_NEED_FILES, 4099, "VMDK extent files needed") /* internal: never printed */

enum vmdk_err {
#define VMDK_ERR_ENUM(name, code, msg) name = code,
    VMDK_ERRORS(VMDK_ERR_ENUM)
#undef VMDK_ERR_ENUM
};

#endif /* VMDK_ERR_H */
