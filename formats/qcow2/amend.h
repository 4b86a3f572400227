/*
 * Amending a qcow2 image's options the way qemu-img 7.2's
 * qcow2_amend_options() does (block/qcow2.c), for the changes instar
 * makes: the lazy refcounts bit (the truncation is qcow2_resize(),
 * resize.h).
 *
 * Pure code: all I/O goes through the caller's callbacks.
 */
#ifndef QCOW2_AMEND_H
#define QCOW2_AMEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Failures of an amend, each with its text (qemu-img's, or instar's
 * refusal).  QCOW2_AMEND_MSG_ERRNO codes are printed "<text>: <strerror>".
 * Codes 3100..3199 (3000..3099 are resize.h's).
 */
#define QCOW2_AMEND_MSG_PLAIN 0
#define QCOW2_AMEND_MSG_ERRNO 1

#define QCOW2_AMEND_ERRORS(X)                                                                      \
    X(QCOW2_AMEND_ERR_LAZY_V2, 3100, QCOW2_AMEND_MSG_PLAIN,                                        \
      "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or "   \
      "greater)")                                                                                  \
    X(QCOW2_AMEND_ERR_UPDATE_HEADER, 3101, QCOW2_AMEND_MSG_ERRNO,                                  \
      "Failed to update the image header")                                                         \
    X(QCOW2_AMEND_ERR_SIZE_ALIGN, 3102, QCOW2_AMEND_MSG_PLAIN,                                     \
      "The new size must be a multiple of 512")                                                    \
    X(QCOW2_AMEND_ERR_NOTSUP_BITMAPS, 3103, QCOW2_AMEND_MSG_PLAIN,                                 \
      "Amending qcow2 images with persistent bitmaps is not supported by instar yet")              \
    X(QCOW2_AMEND_ERR_SIZE_RANGE, 3104, QCOW2_AMEND_MSG_PLAIN,                                     \
      "The new size is out of range") /* the host prints bdrv_co_truncate()'s text */              \
    X(QCOW2_AMEND_ERR_NOTSUP_REFCOUNT_BITS, 3105, QCOW2_AMEND_MSG_PLAIN,                           \
      "Changing refcount_bits is not supported by instar yet")                                     \
    X(QCOW2_AMEND_ERR_NOTSUP_UPGRADE, 3106, QCOW2_AMEND_MSG_PLAIN,                                 \
      "Upgrading this qcow2 image (unknown header extensions, or snapshots without their v3 "      \
      "data) is not supported by instar yet")                                                      \
    X(QCOW2_AMEND_ERR_DOWNGRADE_REFCOUNT, 3107, QCOW2_AMEND_MSG_PLAIN,                             \
      "compat=0.10 requires refcount_bits=16")                                                     \
    X(QCOW2_AMEND_ERR_DOWNGRADE_SNAPSHOTS, 3108, QCOW2_AMEND_MSG_PLAIN,                            \
      "Internal snapshots prevent downgrade of image")                                             \
    X(QCOW2_AMEND_ERR_DOWNGRADE_INCOMPAT, 3109, QCOW2_AMEND_MSG_PLAIN,                             \
      "Cannot downgrade an image with incompatible features") /* the host adds the bits */         \
    X(QCOW2_AMEND_ERR_NOTSUP_DOWNGRADE, 3110, QCOW2_AMEND_MSG_PLAIN,                               \
      "Downgrading a qcow2 image (compat=0.10) is not supported by instar yet")

enum qcow2_amend_err {
#define QCOW2_AMEND_ERR_ENUM(name, code, kind, msg) name = code,
    QCOW2_AMEND_ERRORS(QCOW2_AMEND_ERR_ENUM)
#undef QCOW2_AMEND_ERR_ENUM
};

/* The header's compatible-features field and its lazy refcounts bit. */
#define QCOW2_AMEND_COMPAT_OFFSET 80
#define QCOW2_AMEND_COMPAT_LAZY   UINT64_C(1)

/* Write len bytes at off of the image file; 0 or a negated Linux errno. */
typedef int (*qcow2_amend_pwrite_fn)(void *opaque, uint64_t off, const void *buf, size_t len);

/*
 * qcow2_amend_lazy - the lazy refcounts branch of qcow2_amend_options() on
 * an open, clean image: nothing when the bit already has the value;
 * version 2 cannot have it set; else the compatible-features field is
 * rewritten with the bit set or cleared (qemu rewrites the whole header
 * with qcow2_update_header(): the same bytes for an image whose header
 * qemu wrote).
 * @version, @compat_features: the open header's fields
 * @errnum: on failure, the errno of an MSG_ERRNO code
 * Returns 0 or a negated QCOW2_AMEND_ERR_* code.
 */
int qcow2_amend_lazy(uint32_t version, uint64_t compat_features, bool on,
                     qcow2_amend_pwrite_fn pwrite, void *opaque, int *errnum);

/* What qcow2_update_header() writes for a version 2 image made version 3. */
struct qcow2_amend_upgrade {
    uint32_t cluster_bits; /* 9..21 */
    uint32_t refcount_order;
    uint64_t size;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    const char *backing_file; /* NULL: none */
    const char *backing_fmt;  /* NULL: none */
};

/*
 * qcow2_amend_known_exts - whether every header extension of the first
 * cluster (len bytes, extensions from header_length on) is one
 * qcow2_update_header() writes again from what it parsed (backing format,
 * feature table, bitmaps, encryption, data file): an upgrade that rewrote
 * the header would otherwise have to carry the others over.
 */
bool qcow2_amend_known_exts(const uint8_t *first, size_t len, uint32_t header_length);

/*
 * qcow2_amend_upgrade - qcow2_upgrade() of a version 2 image whose
 * snapshots already carry the v3 extra data: the header cluster written
 * as qcow2_update_header() writes it for version 3.
 * @buf: a scratch cluster (1 << cluster_bits bytes)
 * Returns 0 or a negated QCOW2_AMEND_ERR_* code.
 */
int qcow2_amend_upgrade(const struct qcow2_amend_upgrade *u, uint8_t *buf,
                        qcow2_amend_pwrite_fn pwrite, void *opaque, int *errnum);

#endif /* QCOW2_AMEND_H */
