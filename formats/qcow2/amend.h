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
    X(QCOW2_AMEND_ERR_UPDATE_SNAPSHOTS, 3103, QCOW2_AMEND_MSG_ERRNO,                               \
      "Failed to update the snapshot table")                                                       \
    X(QCOW2_AMEND_ERR_SIZE_RANGE, 3104, QCOW2_AMEND_MSG_PLAIN,                                     \
      "The new size is out of range") /* the host prints bdrv_co_truncate()'s text */              \
    X(QCOW2_AMEND_ERR_DOWNGRADE_REFCOUNT, 3107, QCOW2_AMEND_MSG_PLAIN,                             \
      "compat=0.10 requires refcount_bits=16")                                                     \
    X(QCOW2_AMEND_ERR_DOWNGRADE_SNAPSHOTS, 3108, QCOW2_AMEND_MSG_PLAIN,                            \
      "Internal snapshots prevent downgrade of image")                                             \
    X(QCOW2_AMEND_ERR_DOWNGRADE_INCOMPAT, 3109, QCOW2_AMEND_MSG_PLAIN,                             \
      "Cannot downgrade an image with incompatible features") /* the host adds the bits */         \
    X(QCOW2_AMEND_ERR_REFCOUNT_V2, 3111, QCOW2_AMEND_MSG_PLAIN,                                    \
      "Refcount widths other than 16 bits require compatibility level 1.1 or above (use "          \
      "compat=1.1 or greater)")                                                                    \
    X(QCOW2_AMEND_ERR_REFCOUNT_DECREASE, 3112, QCOW2_AMEND_MSG_PLAIN,                              \
      "Cannot decrease refcount entry width") /* the host adds bits, offset and refcount */        \
    X(QCOW2_AMEND_ERR_REFTABLE_TOO_BIG, 3113, QCOW2_AMEND_MSG_PLAIN,                               \
      "This operation would make the refcount table grow beyond the maximum size supported by "    \
      "QEMU, aborting")                                                                            \
    X(QCOW2_AMEND_ERR_REFTABLE_NOMEM, 3114, QCOW2_AMEND_MSG_PLAIN,                                 \
      "Failed to increase reftable buffer size")                                                   \
    X(QCOW2_AMEND_ERR_ALLOC_REFBLOCK, 3115, QCOW2_AMEND_MSG_ERRNO, "Failed to allocate refblock")  \
    X(QCOW2_AMEND_ERR_ALLOC_REFTABLE, 3116, QCOW2_AMEND_MSG_ERRNO,                                 \
      "Failed to allocate the new reftable")                                                       \
    X(QCOW2_AMEND_ERR_WRITE_REFBLOCK, 3117, QCOW2_AMEND_MSG_ERRNO, "Failed to write refblock")     \
    X(QCOW2_AMEND_ERR_WRITE_REFTABLE, 3118, QCOW2_AMEND_MSG_ERRNO,                                 \
      "Failed to write the new reftable")                                                          \
    X(QCOW2_AMEND_ERR_FLUSH_REFBLOCKS, 3119, QCOW2_AMEND_MSG_ERRNO,                                \
      "Failed to flush the refblock cache")                                                        \
    X(QCOW2_AMEND_ERR_UPDATE_QCOW2_HEADER, 3120, QCOW2_AMEND_MSG_ERRNO,                            \
      "Failed to update the qcow2 header")                                                         \
    X(QCOW2_AMEND_ERR_RETRIEVE_REFBLOCK, 3121, QCOW2_AMEND_MSG_ERRNO,                              \
      "Failed to retrieve refblock")                                                               \
    X(QCOW2_AMEND_ERR_REFBLOCK_UNALIGNED, 3122, QCOW2_AMEND_MSG_PLAIN,                             \
      "Image is corrupt (unaligned refblock offset)")                                              \
    X(QCOW2_AMEND_ERR_EXPAND_ZERO, 3123, QCOW2_AMEND_MSG_ERRNO,                                    \
      "Failed to turn zero into data clusters")                                                    \
    X(QCOW2_AMEND_ERR_DOWNGRADE_ZSTD, 3124, QCOW2_AMEND_MSG_PLAIN,                                 \
      "Cannot downgrade an image with zstd compression type and existing compressed clusters")     \
    X(QCOW2_AMEND_ERR_DOWNGRADE_DATA_FILE, 3125, QCOW2_AMEND_MSG_PLAIN,                            \
      "Cannot downgrade an image with a data file")

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
    uint32_t version;         /* 0: 3 (an upgrade); 2: qcow2_downgrade()'s header */
    /* An encrypted image: the header's method, and its LUKS header's place (length 0: none). */
    uint32_t crypt_method;
    uint64_t crypto_offset, crypto_length;
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

/*
 * qemu's Qcow2AmendHelperCBInfo and qcow2_amend_helper_cb(): the status of
 * each operation of an amend turned into one figure over all of them.
 * Set total_ops (upgrade, refcount change, downgrade: one each) and print
 * (NULL: nothing is computed); the rest starts at zero.
 */
#define QCOW2_AMEND_OP_NONE      0
#define QCOW2_AMEND_OP_UPGRADE   1
#define QCOW2_AMEND_OP_REFCOUNT  2
#define QCOW2_AMEND_OP_DOWNGRADE 3

struct qcow2_amend_progress {
    uint32_t total_ops;
    /* print - qemu-img's amend_status_cb(): 100.f * num / den. */
    void (*print)(void *opaque, uint64_t num, uint64_t den);
    void *opaque;
    uint32_t cur_op; /* set by the caller before each operation */
    uint32_t last_op, ops_done;
    int64_t offset_done, last_work;
};

/* qcow2_amend_helper_cb(): operation p->cur_op is at offset of work_size. */
void qcow2_amend_progress_report(struct qcow2_amend_progress *p, int64_t offset, int64_t work_size);

struct qcow2_alloc_ops;

/*
 * qcow2_change_refcount_order()'s request and outcome: the refcount
 * structures of an open, clean version 3 image rebuilt for entries of
 * 2^new_order bits.
 */
struct qcow2_amend_reforder {
    /* IN */
    const struct qcow2_alloc_ops *ops; /* read, write, mem (flush optional) */
    void *opaque;
    uint32_t cluster_bits; /* 9..21 */
    uint32_t old_order, new_order;
    uint64_t reftable_offset;
    uint64_t reftable_clusters;
    struct qcow2_amend_progress *progress; /* NULL: none */
    /* OUT */
    uint64_t new_reftable_offset;
    uint64_t new_reftable_clusters;
    uint64_t bad_offset, bad_refcount; /* QCOW2_AMEND_ERR_REFCOUNT_DECREASE */
    uint64_t free_cluster_index; /* where QEMU's allocator is left (the old structures freed) */
    int errnum;                  /* the errno of an MSG_ERRNO code */
};

/*
 * qcow2_amend_refcount_order - qemu's qcow2_change_refcount_order(): the
 * new refcount blocks and table are allocated (through the old
 * structures, where QEMU's allocator places them, until the allocation is
 * stable), written, the header's refcount_table_offset,
 * refcount_table_clusters and refcount_order fields switched over in one
 * write, then the old blocks and table freed in the new structures.  A
 * crash at any write leaves either structure consistent, with leaked
 * clusters at most.  An entry too wide for the new width is refused
 * before anything is written.
 * Returns 0 or a negated QCOW2_AMEND_ERR_* code.
 */
int qcow2_amend_refcount_order(struct qcow2_amend_reforder *r);

/* An L1 table: the active one, or a snapshot's. */
struct qcow2_amend_l1 {
    uint64_t offset;
    uint32_t size; /* entries */
};

/* qcow2_expand_zero_clusters()'s request. */
struct qcow2_amend_expand {
    /* IN */
    const struct qcow2_alloc_ops *ops; /* read, write, mem, flush */
    void *opaque;
    uint32_t cluster_bits; /* 9..21 */
    uint32_t refcount_order;
    uint64_t reftable_offset, reftable_clusters;
    const struct qcow2_amend_l1 *l1; /* the active table first, then the snapshots' */
    uint32_t nl1;
    bool backed; /* the image has a backing file */
    /* zero - bdrv_pwrite_zeroes() without unmapping, or NULL (zeros written). */
    int (*zero)(void *opaque, uint64_t off, uint64_t len);
    struct qcow2_amend_progress *progress; /* NULL: none */
    /* OUT */
    int errnum;      /* QCOW2_AMEND_ERR_EXPAND_ZERO's errno */
    int table_err;   /* 0, or the QCOW2_ERR_SNAP_L1_* qemu prints before it */
    bool compressed; /* the active L1 table reaches a compressed cluster */
};

/*
 * qcow2_amend_expand_zero - qemu's qcow2_expand_zero_clusters() for an
 * image without subclusters: every zero cluster of every L2 table the L1
 * tables reach becomes a data cluster of zeros (its own cluster written
 * with zeros; a backed image's unallocated ones get a new cluster), or,
 * unallocated in an image without a backing file, unallocated.  Each L2
 * table is written after the data and refcounts it refers to.
 * Returns 0 or -QCOW2_AMEND_ERR_EXPAND_ZERO (errnum set).
 */
int qcow2_amend_expand_zero(struct qcow2_amend_expand *e);

#endif /* QCOW2_AMEND_H */
