/*
 * Open-time errors of formats/parallels: codes 5600..5699 (qcow2 owns
 * 1000..3099, vpc 5000..5099).
 *
 * Each message is what qemu-img 7.2 prints after "Could not open 'FILE': ",
 * copied verbatim from block/parallels.c (parallels_open) and
 * block/parallels-ext.c (the format extension and its dirty bitmaps).
 * QEMU prints the bitmap size, a uint64_t, with PRId64: the twin
 * PRL_ERR_BM_SIZE_NEG carries the minus sign and 2^64 - value.
 *
 * 5650.. are instar's own: the cases where qemu-img 7.2 reads outside the
 * extension cluster it loaded or fails an assertion (docs/differences.md).
 */
#ifndef PARALLELS_ERR_H
#define PARALLELS_ERR_H

#define PARALLELS_ERRORS(X)                                                                        \
    X(PRL_ERR_FORMAT, 5600, "Image not in Parallels format")                                       \
    X(PRL_ERR_ZERO_TRACKS, 5601, "Invalid image: Zero sectors per track")                          \
    X(PRL_ERR_BIG_CLUSTER, 5602, "Invalid image: Too big cluster")                                 \
    X(PRL_ERR_CATALOG, 5603, "Catalog too large")                                                  \
    X(PRL_ERR_EIO, 5604, "Could not open '{s}': Input/output error")                               \
    X(PRL_ERR_UNCLEAN, 5605,                                                                       \
      "parallels: Image was not closed correctly; cannot be opened read/write")                    \
    X(PRL_ERR_TOTAL_SECTORS, 5606, "Could not refresh total sector count: File too large")         \
    X(PRL_ERR_EXT_READ, 5610, "Failed to read Format Extension cluster: Input/output error")       \
    X(PRL_ERR_EXT_MAGIC, 5611,                                                                     \
      "Wrong parallels Format Extension magic: 0x{x0}, expected: 0xab234cef23dcea87")              \
    X(PRL_ERR_EXT_CHECKSUM, 5612,                                                                  \
      "Wrong checksum in Format Extension header. Format extension is corrupted.")                 \
    X(PRL_ERR_EXT_SHORT, 5613,                                                                     \
      "Can not read feature header, as remaining bytes ({0}) in Format Extension is less than "    \
      "Feature header size (24)")                                                                  \
    X(PRL_ERR_EXT_FLAGS, 5614, "Flags for extension feature are unsupported")                      \
    X(PRL_ERR_EXT_DATA_SIZE, 5615, "Feature data_size exceedes Format Extension cluster")          \
    X(PRL_ERR_EXT_UNKNOWN, 5616, "Unknown feature: 0x{x0}")                                        \
    X(PRL_ERR_BM_SMALL, 5617,                                                                      \
      "Too small Bitmap Feature area in Parallels Format Extension: {0} bytes, expected at "       \
      "least 32 bytes")                                                                            \
    X(PRL_ERR_BM_SIZE, 5618, "Bitmap size (in sectors) {0} differs from disk size in sectors {1}") \
    X(PRL_ERR_BM_SIZE_NEG, 5619,                                                                   \
      "Bitmap size (in sectors) -{0} differs from disk size in sectors {1}")                       \
    X(PRL_ERR_BM_L1, 5620, "Bitmaps feature corrupted: l1 table exceeds extension data_size")      \
    X(PRL_ERR_BM_EXISTS, 5621, "Bitmap already exists: {s}")                                       \
    X(PRL_ERR_BM_TABLE, 5622,                                                                      \
      "Bitmap table size {0} does not correspond to bitmap size and cluster size. Expected {1}")   \
    X(PRL_ERR_BM_READ, 5623, "Failed to read bitmap data cluster: Input/output error")             \
    X(PRL_ERR_SIZE, 5650, "Image size of {0} sectors is too large")                                \
    X(PRL_ERR_EXT_OFFSET, 5651, "Format Extension offset {0} is out of range")                     \
    X(PRL_ERR_EXT_OUTSIDE, 5652,                                                                   \
      "Format Extension feature data at offset {0} lies outside the Format Extension cluster")     \
    X(PRL_ERR_BM_GRANULARITY, 5653,                                                                \
      "Bitmap granularity {0} is not a power of two of at least 512 bytes")                        \
    X(PRL_ERR_BM_TOO_LARGE, 5654, "Bitmap of {0} bytes at granularity {1} is too large")           \
    X(PRL_ERR_BM_RANGE, 5655, "Bitmap table entry {0} lies outside the bitmap")                    \
    X(PRL_ERR_BM_COUNT, 5656, "More than 1024 dirty bitmaps in the Format Extension")

/*
 * The lines parallels_co_check() prints on stderr (5680..5699), streamed
 * by the guest as report records; the host renders them.
 */
#define PARALLELS_CHECK_MSGS(X)                                                                    \
    X(PRL_MSG_UNCLEAN, 5680, "ERROR image was not closed correctly")                               \
    X(PRL_MSG_UNCLEAN_FIX, 5681, "Repairing image was not closed correctly")                       \
    X(PRL_MSG_OUTSIDE, 5682, "ERROR cluster {0} is outside image")                                 \
    X(PRL_MSG_OUTSIDE_FIX, 5683, "Repairing cluster {0} is outside image")                         \
    X(PRL_MSG_LEAKED, 5684, "ERROR space leaked at the end of the image {0}")                      \
    X(PRL_MSG_LEAKED_FIX, 5685, "Repairing space leaked at the end of the image {0}")

enum parallels_err {
#define PRL_ERR_ENUM(name, code, msg) name = code,
    PARALLELS_ERRORS(PRL_ERR_ENUM) PARALLELS_CHECK_MSGS(PRL_ERR_ENUM)
#undef PRL_ERR_ENUM
};

#endif /* PARALLELS_ERR_H */
