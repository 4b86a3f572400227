/*
 * Resizing a qcow2 image the way qemu-img 7.2's qcow2_co_truncate() does
 * (block/qcow2.c): grow the L1 table (relocating it, and growing the
 * refcount table when a new refcount block needs a slot past its end),
 * then preallocate the new range or zero-fill it over a longer backing
 * file (prealloc.h), or discard the clusters past the new end, drop the
 * L2 tables and refcount blocks that became unused and truncate the file
 * after its last used cluster.  Clusters are allocated and freed through
 * the shared allocator (alloc.h), so they land exactly where QEMU puts
 * them, at every refcount width.
 *
 * Pure code: all I/O goes through the caller's callbacks, memory comes
 * from the caller's allocator.
 *
 * Write order (crash safety, as QEMU orders its flushes): refcounts are
 * raised and written before anything refers to the cluster; a table or
 * header entry is cleared and written before the refcount it held is
 * lowered; the new L1 table is written before the header points at it;
 * on grow the header size is written last; on shrink, discard first, then
 * the L1 entries, the refcount table, the file truncation and the size.
 */
#ifndef QCOW2_RESIZE_H
#define QCOW2_RESIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Linux errno values the messages name (the guest has no errno.h). */
#define QCOW2_RESIZE_EIO     5
#define QCOW2_RESIZE_ENOMEM  12
#define QCOW2_RESIZE_EINVAL  22
#define QCOW2_RESIZE_EFBIG   27
#define QCOW2_RESIZE_ENOTSUP 95

/*
 * Failures of a resize, each with qemu-img's text.  A code whose flag is
 * QCOW2_RESIZE_MSG_ERRNO is printed as "<text>: <strerror(errno)>" (QEMU's
 * error_setg_errno); QCOW2_RESIZE_MSG_OPEN ones as "Could not open
 * '<file>': <text>"; QCOW2_RESIZE_MSG_NAME ones are a format whose %s
 * is the name the result carries (a bitmap's).  Codes 3000..3099.
 */
#define QCOW2_RESIZE_MSG_PLAIN 0
#define QCOW2_RESIZE_MSG_ERRNO 1
#define QCOW2_RESIZE_MSG_OPEN  2
#define QCOW2_RESIZE_MSG_NAME  3

#define QCOW2_RESIZE_ERRORS(X)                                                                     \
    X(QCOW2_RESIZE_ERR_V2_SNAPSHOTS, 3000, QCOW2_RESIZE_MSG_PLAIN,                                 \
      "Can't resize a v2 image which has snapshots")                                               \
    X(QCOW2_RESIZE_ERR_GROW_L1, 3001, QCOW2_RESIZE_MSG_ERRNO, "Failed to grow the L1 table")       \
    X(QCOW2_RESIZE_ERR_DISCARD, 3002, QCOW2_RESIZE_MSG_ERRNO,                                      \
      "Failed to discard cropped clusters")                                                        \
    X(QCOW2_RESIZE_ERR_SHRINK_L1, 3003, QCOW2_RESIZE_MSG_ERRNO,                                    \
      "Failed to reduce the number of L2 tables")                                                  \
    X(QCOW2_RESIZE_ERR_SHRINK_REFTABLE, 3004, QCOW2_RESIZE_MSG_ERRNO,                              \
      "Failed to discard unused refblocks")                                                        \
    X(QCOW2_RESIZE_ERR_LAST_CLUSTER, 3005, QCOW2_RESIZE_MSG_ERRNO,                                 \
      "Failed to find the last cluster")                                                           \
    X(QCOW2_RESIZE_ERR_UPDATE_SIZE, 3006, QCOW2_RESIZE_MSG_ERRNO,                                  \
      "Failed to update the image size")                                                           \
    X(QCOW2_RESIZE_ERR_CORRUPT_RW, 3007, QCOW2_RESIZE_MSG_OPEN,                                    \
      "qcow2: Image is corrupt; cannot be opened read/write")                                      \
    X(QCOW2_RESIZE_ERR_REPAIR_DIRTY, 3009, QCOW2_RESIZE_MSG_OPEN,                                  \
      "Could not repair dirty image: Input/output error")                                          \
    X(QCOW2_RESIZE_ERR_NOTSUP_CRYPT, 3010, QCOW2_RESIZE_MSG_PLAIN,                                 \
      "Growing this encrypted qcow2 image would write encrypted data, which instar does not do")   \
    X(QCOW2_RESIZE_ERR_NOTSUP_DATA_FILE, 3011, QCOW2_RESIZE_MSG_PLAIN,                             \
      "Resizing qcow2 images with an external data file is not supported by instar")               \
    X(QCOW2_RESIZE_ERR_TRUNCATE_TAIL, 3014, QCOW2_RESIZE_MSG_ERRNO,                                \
      "Failed to truncate the tail of the image")                                                  \
    X(QCOW2_RESIZE_ERR_PREALLOC_ALLOC, 3015, QCOW2_RESIZE_MSG_ERRNO, "Allocating clusters failed") \
    X(QCOW2_RESIZE_ERR_REFCOUNT_AREA, 3016, QCOW2_RESIZE_MSG_ERRNO,                                \
      "Failed to resize refcount structures")                                                      \
    X(QCOW2_RESIZE_ERR_DATA_ALLOC, 3017, QCOW2_RESIZE_MSG_ERRNO,                                   \
      "Failed to allocate data clusters")                                                          \
    X(QCOW2_RESIZE_ERR_UNDERLYING, 3018, QCOW2_RESIZE_MSG_ERRNO,                                   \
      "Failed to resize underlying file: Could not resize file")                                   \
    X(QCOW2_RESIZE_ERR_UPDATE_L2, 3019, QCOW2_RESIZE_MSG_ERRNO, "Failed to update L2 tables")      \
    X(QCOW2_RESIZE_ERR_ZERO_CLUSTERS, 3020, QCOW2_RESIZE_MSG_ERRNO,                                \
      "Failed to zero out new clusters")                                                           \
    X(QCOW2_RESIZE_ERR_ZERO_AREA, 3021, QCOW2_RESIZE_MSG_ERRNO, "Failed to zero out the new area") \
    X(QCOW2_RESIZE_ERR_FLUSH_PREALLOC, 3022, QCOW2_RESIZE_MSG_ERRNO,                               \
      "Failed to flush the preallocated area to disk")                                             \
    X(QCOW2_RESIZE_ERR_NOTSUP_HEAD, 3023, QCOW2_RESIZE_MSG_PLAIN,                                  \
      "Growing this qcow2 image would copy data into its partial last cluster, which instar "      \
      "does not do")                                                                               \
    X(QCOW2_RESIZE_ERR_BITMAP_INCONSISTENT, 3024, QCOW2_RESIZE_MSG_NAME,                           \
      "Bitmap '%s' is inconsistent and cannot be used\n"                                           \
      "Try block-dirty-bitmap-remove to delete this bitmap from disk")                             \
    X(QCOW2_RESIZE_ERR_STORE_BITMAPS, 3025, QCOW2_RESIZE_MSG_ERRNO,                                \
      "Failed to store the persistent bitmaps")                                                    \
    X(QCOW2_RESIZE_ERR_DATA_FILE, 3026, QCOW2_RESIZE_MSG_ERRNO, "Could not resize file")           \
    /* bdrv_qed_co_truncate()'s (the host names the preallocation mode; a failed header write is   \
     * UPDATE_SIZE). */                                                                            \
    X(QCOW2_RESIZE_ERR_QED_PREALLOC, 3027, QCOW2_RESIZE_MSG_PLAIN,                                 \
      "Unsupported preallocation mode")                                                            \
    X(QCOW2_RESIZE_ERR_QED_SIZE, 3028, QCOW2_RESIZE_MSG_PLAIN, "Invalid image size specified")     \
    X(QCOW2_RESIZE_ERR_QED_SHRINK, 3029, QCOW2_RESIZE_MSG_PLAIN,                                   \
      "Shrinking images is currently not supported")                                               \
    X(QCOW2_RESIZE_ERR_QED_FLAGS, 3030, QCOW2_RESIZE_MSG_PLAIN,                                    \
      "Block driver does not support requested flags")

enum qcow2_resize_err {
#define QCOW2_RESIZE_ERR_ENUM(name, code, kind, msg) name = code,
    QCOW2_RESIZE_ERRORS(QCOW2_RESIZE_ERR_ENUM)
#undef QCOW2_RESIZE_ERR_ENUM
};

/* The caller's I/O and memory.  Every callback returns 0 or a negated Linux errno. */
struct qcow2_resize_io {
    void *opaque;
    /* Read len bytes at off; bytes past the end of the file read as zeros. */
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    int (*pwrite)(void *opaque, uint64_t off, const void *buf, size_t len);
    int (*flush)(void *opaque);
    /* Set the file length (shrink only). */
    int (*truncate)(void *opaque, uint64_t size);
    /* realloc(): size 0 frees p and returns NULL; NULL on failure. */
    void *(*mem)(void *opaque, void *p, size_t size);
    /*
     * Set the file length growing it with a QCOW2_PREALLOC_* mode (OFF,
     * FALLOC, FULL), as QEMU's file driver does; needed (non-NULL) only
     * for preallocation.  0 or a negated errno.
     */
    int (*truncate_mode)(void *opaque, uint64_t size, int mode);
    /*
     * Punch [off, off + len) (freed clusters) out of the file, as qemu's
     * file driver discards (fallocate PUNCH_HOLE, keeping the size; a
     * range past the end of the file is not there to punch).  Advisory:
     * no result, as QEMU ignores it.  May be NULL (nothing is punched).
     */
    void (*discard)(void *opaque, uint64_t off, uint64_t len);
    /*
     * The external data file (an image with data_file only): set its
     * length with a QCOW2_PREALLOC_* mode as truncate_mode does, and
     * report it.  0 or a negated errno.
     */
    int (*data_truncate)(void *opaque, uint64_t size, int mode);
    int (*data_length)(void *opaque, uint64_t *len);
    /*
     * Optional: write len bytes at off of the external data file (the
     * zero-fill's explicit zeros of a partial head cluster).  Without it
     * that grow is refused (QCOW2_RESIZE_ERR_NOTSUP_DATA_FILE).
     */
    int (*data_pwrite)(void *opaque, uint64_t off, const void *buf, size_t len);
};

/* What the caller's open established (header fields, validated). */
struct qcow2_resize_image {
    uint32_t version;
    uint32_t cluster_bits;   /* 9..21 */
    uint32_t refcount_order; /* 0..6 */
    bool extended_l2;
    uint64_t size; /* current virtual size (rounded down to 512) */
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t file_size; /* length of the image file */
    /* The request beyond the size. */
    int prealloc;      /* QCOW2_PREALLOC_* (prealloc.h); not OFF only for a grow */
    bool zero_write;   /* INSTAR_RESIZE_ZERO_WRITE (abi.h) */
    bool backing_head; /* INSTAR_RESIZE_BACKING_HEAD (abi.h) */
    /* An external data file (its clusters mapped 1:1, not refcounted), data_file_raw. */
    bool data_file;
    bool data_file_raw;
    /*
     * An encrypted image: the guest data a copy-on-write or an explicit
     * zero write puts in the file goes through the caller's cipher,
     * encrypt (prealloc.h's callback of that name: the sectors of buf at
     * host offset host, guest offset guest, encrypted in place; 0 or
     * -errno), with encrypt_opaque.  A data cluster's old bytes are read
     * only through head_data.  A grow that would write encrypted data
     * without encrypt, the zero-fill's explicit zeros into an external
     * data file (or any data there without data_pwrite), or copy a
     * partial head cluster without head_data (QCOW2_RESIZE_ERR_NOTSUP_CRYPT)
     * is refused before the first write.
     */
    bool encrypted;
    int (*encrypt)(void *opaque, uint64_t host, uint64_t guest, uint8_t *buf, size_t len);
    void *encrypt_opaque;
    /*
     * OUT (may be NULL): where the allocator's next free-cluster scan
     * would start after the resize (QEMU's free_cluster_index, which the
     * same open carries on into the close, e.g. storing bitmaps).
     */
    uint64_t *free_cluster_index;
    /*
     * Optional: the guest-visible data of the partial cluster at the old
     * end, [ALIGN_DOWN(size, cluster), size) (head_len bytes), read through
     * the block layer (backing chain, compressed clusters) before the
     * resize.  With it a grow copies that cluster into a new one where
     * QEMU does (prealloc.h's head_data); without it those cases are
     * refused (QCOW2_RESIZE_ERR_NOTSUP_HEAD).
     */
    const uint8_t *head_data;
    uint64_t head_len;
    /*
     * Optional, with head_data: head_data holds the whole cluster, and
     * [head_len, cluster size) is its guest data past the old end as
     * QEMU's perform_cow() reads it there (the driver read directly: the
     * backing file's data, zeros past its end).
     */
    bool head_tail;
};

/*
 * qcow2_resize - resize img to new_size bytes (a multiple of 512; the
 * caller has checked that a shrink was asked for).
 * @io: callbacks; the image is written through them
 * @warn_code/@warn_errno: set when the operation succeeded but qemu-img
 *     would print a warning (QCOW2_RESIZE_ERR_TRUNCATE_TAIL); 0 otherwise
 * @errnum: on failure, the errno of an MSG_ERRNO code
 * Returns 0 or a negated QCOW2_RESIZE_ERR_* code.
 */
int qcow2_resize(const struct qcow2_resize_image *img, const struct qcow2_resize_io *io,
                 uint64_t new_size, int *errnum, int *warn_code, int *warn_errno);

/*
 * qcow2_resize_l1_entries - QEMU's size_to_l1(): L1 entries that cover
 * size bytes of guest data.  cluster_bits 9..21.
 */
uint64_t qcow2_resize_l1_entries(uint64_t size, unsigned cluster_bits, bool extended_l2);

#endif /* QCOW2_RESIZE_H */
