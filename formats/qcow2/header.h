/*
 * qcow2 image header and header extensions (docs/interop/qcow2.txt,
 * "Header" and "Header extensions"), decoded and validated the way
 * qemu-img 7.2 opens an image for "info" (read-only, BDRV_O_NO_IO).
 *
 * Pure code: no I/O, no allocation.  Callers hand in the bytes of the
 * start of the image.  Every byte past the end of a buffer reads as zero,
 * which is what QEMU's file driver returns past the end of the file, so a
 * truncated image is seen exactly as QEMU sees it.
 */
#ifndef QCOW2_HEADER_H
#define QCOW2_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2_err.h"

#define QCOW2_MAGIC           0x514649fbu /* "QFI\xfb" */
#define QCOW2_HEADER_V2_LEN   72
#define QCOW2_HEADER_V3_LEN   104 /* minimum header_length of a v3 image */
#define QCOW2_HEADER_READ_LEN 112 /* sizeof(QCowHeader) in QEMU 7.2 */

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21

#define QCOW2_INCOMPAT_DIRTY       (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2       (1ull << 4)
#define QCOW2_INCOMPAT_MASK        0x1full

#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

#define QCOW2_AUTOCLEAR_BITMAPS       (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ull << 1)

#define QCOW2_CRYPT_NONE 0
#define QCOW2_CRYPT_AES  1
#define QCOW2_CRYPT_LUKS 2

#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

#define QCOW2_EXT_END         0x00000000u
#define QCOW2_EXT_BACKING_FMT 0xe2792acau
#define QCOW2_EXT_FEATURES    0x6803f857u
#define QCOW2_EXT_CRYPTO      0x0537be77u
#define QCOW2_EXT_BITMAPS     0x23852875u
#define QCOW2_EXT_DATA_FILE   0x44415441u

#define QCOW2_MAX_SNAPSHOTS       65536
#define QCOW2_SNAPSHOT_HDR_LEN    40
#define QCOW2_MAX_BITMAPS         65535
#define QCOW2_MAX_BITMAP_DIR_SIZE (1024ull * QCOW2_MAX_BITMAPS)
#define QCOW2_BACKING_FMT_MAX     16 /* sizeof(bs->backing_format) */
#define QCOW2_ERR_STR_MAX         4096

/*
 * The arguments of a failed check's message template (qcow2_err.h): args
 * fill {0}..{3}; s/slen fill {s}.  s points into the caller's buffer or at
 * sbuf, never anywhere else.
 */
struct qcow2_err_info {
    uint64_t args[4];
    const uint8_t *s;
    size_t slen;
    uint8_t sbuf[QCOW2_ERR_STR_MAX];
};

/*
 * The header, every field host-endian, plus what QEMU derives from it.
 * Fields of a v2 header that v2 does not have hold QEMU's defaults.
 */
struct qcow2_header {
    uint32_t magic;
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size; /* virtual size as stored */
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type; /* zlib unless header_length covers it */

    /* Derived by qcow2_header_parse. */
    uint32_t cluster_size;
    uint32_t refcount_bits;
    uint32_t subclusters_per_cluster;
    uint64_t ext_end;      /* extensions end here (backing name or cluster) */
    uint64_t disk_size;    /* bytes QEMU reports: size rounded down to 512 */
    uint32_t warn_bitmaps; /* bitmap warnings printed by the feature pass */
};

/* Header extensions, as the second qcow2_read_extensions pass leaves them. */
struct qcow2_exts {
    /* backing format: the last extension wins; C string semantics */
    bool has_backing_fmt;
    const uint8_t *backing_fmt;
    size_t backing_fmt_len;
    /* external data file name: the last extension wins */
    bool has_data_file;
    const uint8_t *data_file;
    size_t data_file_len;
    /* full disk encryption header pointer (LUKS) */
    bool has_crypto;
    uint64_t crypto_offset;
    uint64_t crypto_length;
    /* bitmaps extension, only when valid and the autoclear bit is set */
    uint32_t nb_bitmaps; /* 0: none */
    uint64_t bitmap_dir_offset;
    uint64_t bitmap_dir_size;
    /*
     * How many times QEMU warned about a bitmaps extension without the
     * autoclear bit: "qemu-img: warning: <text>" then, without newline,
     * "Some clusters may be leaked, run 'qemu-img check -r' on the image
     * file to fix."; v2 images get the v2 text (see QCOW2_WARN_*).
     */
    uint32_t warn_bitmaps;
    /* backing file name from the header, C string semantics */
    bool has_backing_file;
    const uint8_t *backing_file;
    size_t backing_file_len;
};

#define QCOW2_WARN_BITMAPS_V2                                                                      \
    "This qcow2 v2 image contains bitmaps, but they may have been modified by a program "          \
    "without persistent bitmap support; so now they must all be considered inconsistent"
#define QCOW2_WARN_BITMAPS_V3                                                                      \
    "a program lacking bitmap support modified this file, so all bitmaps are now considered "      \
    "inconsistent"
#define QCOW2_WARN_BITMAPS_TAIL                                                                    \
    "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix."

/*
 * qcow2_header_probe - qcow2_probe(): true when buf (len bytes, zeros
 * beyond) starts with the qcow2 magic and a version >= 2.
 */
bool qcow2_header_probe(const uint8_t *buf, size_t len);

/*
 * qcow2_header_parse - decode and validate the header in qcow2_do_open's
 * order, up to and including the check of the encryption method (what
 * QEMU checks before it reads the header extensions for real).
 *
 * buf/len: the start of the image; bytes past len read as zero.  To get
 *     QEMU's message for unknown incompatible features, buf must cover the
 *     feature name table extension, i.e. the first cluster (ext_end).
 * h:  filled (decoded fields as soon as they are read, derived ones as
 *     validated); meaningful only on success.
 * ei: the failed message's arguments.
 * Returns 0 or a negated QCOW2_ERR_* code.
 */
int qcow2_header_parse(const uint8_t *buf, size_t len, struct qcow2_header *h,
                       struct qcow2_err_info *ei);

/* How the image is being opened (qemu's BDRV_O_RDWR and BDRV_O_CHECK). */
#define QCOW2_OPEN_RDWR  (1u << 0)
#define QCOW2_OPEN_CHECK (1u << 1)

/*
 * qcow2_header_parse_flags - qcow2_header_parse for an open with flags
 * (QCOW2_OPEN_*): read-write refuses a corrupt image unless checking;
 * check mode accepts an image without a refcount table and leaves the
 * snapshot table's extent unchecked (the check reports on it instead).
 */
int qcow2_header_parse_flags(const uint8_t *buf, size_t len, unsigned flags, struct qcow2_header *h,
                             struct qcow2_err_info *ei);

/*
 * Called by qcow2_ext_parse at a full disk encryption header extension,
 * after its own checks, where QEMU opens the LUKS header.  Returns 0 to go
 * on, or a negated error code (filling ei) to stop the walk with it.
 */
typedef int (*qcow2_crypto_fn)(void *opaque, uint64_t offset, uint64_t length,
                               struct qcow2_err_info *ei);

/*
 * qcow2_ext_parse - walk the header extensions as the second
 * qcow2_read_extensions call does, then check and locate the backing file
 * name as qcow2_do_open does right after.
 *
 * buf/len: the start of the image (as for qcow2_header_parse); x's
 *     pointers point into it.
 * h: a header qcow2_header_parse accepted.
 * crypto/opaque: called at a valid crypto extension (may be NULL).
 * Returns 0 or a negated code (QCOW2_ERR_*, or what crypto returned).
 */
int qcow2_ext_parse(const uint8_t *buf, size_t len, const struct qcow2_header *h,
                    qcow2_crypto_fn crypto, void *opaque, struct qcow2_exts *x,
                    struct qcow2_err_info *ei);

/*
 * qcow2_read_ok - whether QEMU's block layer accepts a read of bytes at
 * off (bdrv_check_qiov_request: the end may not pass BDRV_MAX_LENGTH,
 * INT64_MAX rounded down to 1 GiB).  A refused read fails with EIO.
 */
#define QCOW2_BDRV_MAX_LENGTH 0x7fffffffc0000000ull
static inline bool qcow2_read_ok(uint64_t off, uint64_t bytes)
{
    return off <= QCOW2_BDRV_MAX_LENGTH && bytes <= QCOW2_BDRV_MAX_LENGTH - off;
}

/*
 * qcow2_size_check - the block layer's check once the driver has opened
 * the image (refresh_total_sectors): a size past BDRV_MAX_LENGTH.  Only
 * sizes whose L1 index wrapped to a small value get this far.  Call it
 * after the snapshot and bitmap checks.  Returns 0 or
 * -QCOW2_ERR_SIZE_TOO_LARGE.
 */
static inline int qcow2_size_check(const struct qcow2_header *h)
{
    return h->disk_size > QCOW2_BDRV_MAX_LENGTH ? -QCOW2_ERR_SIZE_TOO_LARGE : 0;
}

/* Big-endian loads from a buffer whose bytes past len read as zero. */
uint64_t qcow2_be64(const uint8_t *buf, size_t len, uint64_t off);
uint32_t qcow2_be32(const uint8_t *buf, size_t len, uint64_t off);
uint16_t qcow2_be16(const uint8_t *buf, size_t len, uint64_t off);
uint8_t qcow2_u8(const uint8_t *buf, size_t len, uint64_t off);

#endif /* QCOW2_HEADER_H */
