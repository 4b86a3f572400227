/*
 * The qcow2 host cluster allocator: refcount table, refcount blocks and
 * free-cluster search, placing every cluster exactly where QEMU 7.2's
 * block/qcow2-refcount.c places it (qcow2.txt, "Host cluster management").
 *
 * Pure code: no I/O, no malloc, no printing.  The caller supplies I/O and
 * memory through struct qcow2_alloc_ops.  Refcount entries of every width
 * (1..64 bits) go through formats/qcow2/refcount.h.
 *
 * What it reproduces, and in which order (so that placement matches):
 *  - qcow2_alloc_clusters(): the scan for a run of free clusters starting
 *    at free_cluster_index (alloc_clusters_noref), then update_refcount();
 *    restarted when a new refcount block was placed (QEMU's -EAGAIN).
 *  - alloc_refcount_block(): a missing refcount block is allocated with
 *    the same scan; it describes itself when it falls into its own range,
 *    else its refcount is set through a (recursive) update; a full refcount
 *    table is grown with qcow2_refcount_area() at the end of the covered
 *    area, the old table freed (not discarded).
 *  - update_refcount(): per cluster, width-aware, overflow checked
 *    (-EINVAL, then the already updated part is undone), lowering
 *    free_cluster_index when a refcount drops to zero.
 *
 * Refcount blocks are cached write-back (QCOW2_ALLOC_CACHE entries):
 * after the last call the caller must qcow2_alloc_flush().  The refcount
 * table and the header's refcount table fields are written through at
 * once.  Nothing else in the file is read or written.
 *
 * Return codes: 0 (or an offset / count, >= 0) on success, else a negated
 * Linux errno value (QCOW2_ALLOC_E*), so that callers can print
 * strerror() text the way qemu-img does.  -QCOW2_ALLOC_EIO after a
 * corruption check leaves the reason in a->corrupt (QCOW2_ALLOC_CORRUPT_*)
 * with its arguments in a->corrupt_args: QEMU's qcow2_signal_corruption().
 */
#ifndef QCOW2_ALLOC_H
#define QCOW2_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Linux errno values, negated on return. */
#define QCOW2_ALLOC_EIO    5
#define QCOW2_ALLOC_EAGAIN 11 /* internal: never returned to callers */
#define QCOW2_ALLOC_ENOMEM 12
#define QCOW2_ALLOC_EINVAL 22
#define QCOW2_ALLOC_EFBIG  27

/* Limits from QEMU's block/qcow2.h. */
#define QCOW2_MAX_CLUSTER_OFFSET ((1ull << 56) - 1)
#define QCOW2_MAX_REFTABLE_SIZE  (8ull << 20) /* entries, in refcount_area */
#define QCOW2_REFT_OFFSET_MASK   0xfffffffffffffe00ull

/* Header byte offsets the allocator writes when the table moves. */
#define QCOW2_HDR_REFTABLE_OFFSET 48 /* be64 offset, then be32 clusters */

/* Why a->corrupt was set (the image would be marked corrupt by QEMU). */
enum qcow2_alloc_corrupt {
    QCOW2_ALLOC_CORRUPT_NONE = 0,
    /* "Refblock offset %#x unaligned (reftable index: %#x)": args offset, index */
    QCOW2_ALLOC_CORRUPT_REFBLOCK_UNALIGNED,
    /* "Preventing invalid allocation of refcount block at offset 0" */
    QCOW2_ALLOC_CORRUPT_REFBLOCK_AT_ZERO,
    /* "Preventing invalid allocation of compressed cluster at offset 0" */
    QCOW2_ALLOC_CORRUPT_COMPRESSED_AT_ZERO,
};

struct qcow2_alloc_ops {
    /*
     * read - len bytes of the image file at off into buf; bytes past the
     * end of the file read as zeros.  Returns 0 or a negated errno.
     */
    int (*read)(void *opaque, uint64_t off, void *buf, size_t len);
    /* write - len bytes from buf at off (may extend the file).  0 or -errno. */
    int (*write)(void *opaque, uint64_t off, const void *buf, size_t len);
    /*
     * mem - realloc(): resize p (NULL: a new block) to size bytes, keeping
     * its contents; size 0 frees p and returns NULL.  NULL on failure (p is
     * then untouched).  The allocator keeps its refcount table and its
     * cached refcount blocks in such memory.
     */
    void *(*mem)(void *opaque, void *p, size_t size);
    /*
     * discard - optional (may be NULL): the clusters [off, off + len) were
     * freed by a qcow2_alloc_free(..., discard = true); QEMU would punch
     * them out of the file.  Its result is ignored, as QEMU ignores it.
     */
    void (*discard)(void *opaque, uint64_t off, uint64_t len);
    /*
     * flush - make the writes so far durable (fdatasync), or NULL.  Called
     * where QEMU flushes for ordering: a new refcount block reaches the
     * file before the refcount table points at it.  0 or -errno.
     */
    int (*flush)(void *opaque);
};

#define QCOW2_ALLOC_CACHE 4

struct qcow2_alloc_rb {
    uint64_t offset; /* 0: the slot is empty */
    uint8_t *data;   /* cluster_size bytes, from ops->mem */
    bool dirty;
    uint64_t used; /* LRU stamp */
};

struct qcow2_alloc {
    const struct qcow2_alloc_ops *ops;
    void *opaque;

    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t refcount_order;
    uint32_t rb_bits;      /* log2(entries per refcount block) */
    uint64_t refcount_max; /* largest storable refcount */

    uint64_t *reftable; /* host-endian, reftable_size entries (ops->mem) */
    uint64_t reftable_size;
    uint64_t reftable_offset;
    uint64_t max_reftable_index; /* last used entry (0 when none) */

    /* Where the next free-cluster scan starts (QEMU's free_cluster_index). */
    uint64_t free_cluster_index;
    /*
     * Where the next compressed cluster may go (QEMU's free_byte_offset):
     * inside a host cluster qcow2_alloc_bytes() started, 0 when none.
     */
    uint64_t free_byte_offset;

    struct qcow2_alloc_rb cache[QCOW2_ALLOC_CACHE];
    uint64_t clock;

    int corrupt; /* enum qcow2_alloc_corrupt */
    uint64_t corrupt_args[2];
};

/*
 * qcow2_alloc_init - load the refcount table of an open image.
 * @a: filled; release it with qcow2_alloc_release()
 * @ops, @opaque: I/O and memory callbacks (ops must outlive a)
 * @cluster_bits: 9..21; @refcount_order: 0..6 (validated by the caller's
 *     header parse; anything else returns -QCOW2_ALLOC_EINVAL)
 * @reftable_offset, @reftable_clusters: from the header; the table is read
 *     as QEMU's qcow2_refcount_init() reads it (entries host-endian, the
 *     last used one remembered).  The caller validated the extent
 *     (qcow2_do_open's checks); the size is re-checked against
 *     QCOW2_MAX_REFTABLE_SIZE-bounded arithmetic here.
 * free_cluster_index starts at 0, as after QEMU opens an image.
 * Returns 0 or a negated errno (nothing to release then).
 */
int qcow2_alloc_init(struct qcow2_alloc *a, const struct qcow2_alloc_ops *ops, void *opaque,
                     uint32_t cluster_bits, uint32_t refcount_order, uint64_t reftable_offset,
                     uint64_t reftable_clusters);

/*
 * qcow2_alloc_release - free the table and the cache memory.  Does not
 * write anything: call qcow2_alloc_flush() first to keep the changes.
 */
void qcow2_alloc_release(struct qcow2_alloc *a);

/*
 * qcow2_alloc_flush - write every dirty cached refcount block.
 * Returns 0 or a negated errno.
 */
int qcow2_alloc_flush(struct qcow2_alloc *a);

/*
 * qcow2_alloc_get_refcount - QEMU's qcow2_get_refcount(): the refcount of
 * host cluster index (0 beyond the table or for an absent block).
 * Returns 0 or a negated errno (-EIO for an unaligned refblock offset,
 * with a->corrupt set).
 */
int qcow2_alloc_get_refcount(struct qcow2_alloc *a, uint64_t cluster_index, uint64_t *refcount);

/*
 * qcow2_alloc_clusters - QEMU's qcow2_alloc_clusters(): find size bytes
 * (rounded up to clusters, size > 0) of consecutive free clusters from
 * free_cluster_index on and take a reference to each.
 * Returns the byte offset of the first cluster, or a negated errno
 * (-EFBIG past QCOW2_MAX_CLUSTER_OFFSET).
 */
int64_t qcow2_alloc_clusters(struct qcow2_alloc *a, uint64_t size);

/*
 * qcow2_alloc_bytes - QEMU's qcow2_alloc_bytes(): room for size bytes
 * (0 < size <= cluster size) of compressed data, packed byte by byte
 * after the previous call's bytes (free_byte_offset) while they fit in
 * that host cluster or run on into the next free cluster when it is the
 * adjacent one; otherwise at the start of a new cluster from the
 * free-cluster scan.  A cluster whose refcount reached refcount_max is
 * not packed further.  Each host cluster the bytes touch gains a
 * reference (a cluster shared by several compressed clusters counts each).
 * Returns the byte offset, or a negated errno (-EFBIG past the largest
 * offset a compressed L2 entry holds; -EIO with a->corrupt set for a
 * cluster at offset 0).
 */
int64_t qcow2_alloc_bytes(struct qcow2_alloc *a, uint64_t size);

/*
 * qcow2_alloc_clusters_at - QEMU's qcow2_alloc_clusters_at(): take a
 * reference to as many of the nb_clusters clusters at offset (cluster
 * aligned) as are free in a row.
 * Returns how many were allocated (0 if the first one is in use), or a
 * negated errno.
 */
int64_t qcow2_alloc_clusters_at(struct qcow2_alloc *a, uint64_t offset, uint64_t nb_clusters);

/*
 * qcow2_alloc_update - QEMU's update_refcount(): add (decrease false) or
 * subtract addend to/from the refcount of every cluster that
 * [offset, offset + length) touches, allocating refcount blocks as needed.
 * On overflow/underflow returns -EINVAL after undoing the clusters already
 * updated, as QEMU does.  length 0 does nothing.
 * Returns 0 or a negated errno (never -EAGAIN: see qcow2_alloc_clusters).
 * Note: like QEMU, a new refcount block placed during an increase may land
 * on a cluster in the range when those clusters were not allocated first;
 * callers that update unallocated ranges should allocate instead.
 */
int qcow2_alloc_update(struct qcow2_alloc *a, uint64_t offset, uint64_t length, uint64_t addend,
                       bool decrease);

/*
 * qcow2_alloc_update_discard - QEMU's update_refcount() as
 * qcow2_update_cluster_refcount() calls it: qcow2_alloc_update() without
 * the retry, so a refcount block it had to place fails the update with
 * -EAGAIN (after the undo), as in QEMU.  With discard, ops->discard is
 * called for each cluster whose refcount reaches 0 (a discard type that
 * passes through, e.g. QCOW2_DISCARD_SNAPSHOT).
 * Returns 0 or a negated errno (QCOW2_ALLOC_EAGAIN included).
 */
int qcow2_alloc_update_discard(struct qcow2_alloc *a, uint64_t offset, uint64_t length,
                               uint64_t addend, bool decrease, bool discard);

/*
 * qcow2_alloc_free - QEMU's qcow2_free_clusters(): drop one reference to
 * every cluster [offset, offset + size) touches.  discard: call
 * ops->discard for the clusters that reach zero (QEMU's discard
 * passthrough for the request's type).  A cached refcount block at offset
 * that reaches zero is dropped from the cache unwritten, as QEMU does.
 * Returns 0 or a negated errno (QEMU only prints "qcow2_free_clusters
 * failed: %s" and goes on; the caller decides).
 */
int qcow2_alloc_free(struct qcow2_alloc *a, uint64_t offset, uint64_t size, bool discard);

/*
 * qcow2_alloc_refcount_area - QEMU's qcow2_refcount_area(): create a new
 * refcount table and refcount blocks at start_offset (cluster aligned,
 * only free space beyond it) that cover themselves and
 * additional_clusters more; exact_size false adds 50 % to the table.
 * new_refblock_offset (0: none) is entered at new_refblock_index.  Writes
 * the blocks, the table and the header fields, switches to the new table
 * and frees the old one (no discard).
 * Returns the offset just past the new structures, or a negated errno.
 */
int64_t qcow2_alloc_refcount_area(struct qcow2_alloc *a, uint64_t start_offset,
                                  uint64_t additional_clusters, bool exact_size,
                                  uint64_t new_refblock_index, uint64_t new_refblock_offset);

/*
 * qcow2_refcount_metadata_size - QEMU's function of that name: the bytes
 * of refcount blocks and table needed to count clusters clusters plus
 * themselves (generous: room for a 50 % larger table).  *refblock_count
 * (may be NULL) receives the number of blocks.  Pure arithmetic; the
 * caller keeps clusters below 2^56.
 */
uint64_t qcow2_refcount_metadata_size(uint64_t clusters, uint64_t cluster_size,
                                      uint32_t refcount_order, bool generous,
                                      uint64_t *refblock_count);

#endif /* QCOW2_ALLOC_H */
