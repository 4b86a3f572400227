/*
 * Mapping guest ranges of a qcow2 image to host clusters the way QEMU
 * 7.2's qcow2_co_truncate() does when it grows an image: preallocate_co()
 * (qcow2_alloc_host_offset + qcow2_handle_l2meta with prealloc set), the
 * falloc/full branch (qcow2_refcount_area, qcow2_alloc_clusters_at, the
 * file truncate, qcow2_alloc_cluster_link_l2) and the zero-fill of the new
 * area over a longer backing file (qcow2_subcluster_zeroize).  Shared by
 * create.c (a new image: old length 0) and resize.c (an existing image).
 *
 * Pure code: no I/O, no malloc, no printing; I/O, file lengths and memory
 * through the caller's callbacks, clusters through the caller's allocator
 * (alloc.h), so every cluster lands where QEMU puts it.
 *
 * One L2 table is cached.  In "ordered" mode (existing images) a new L2
 * table is written and its L1 entry written through at once (QEMU's
 * l2_allocate), the allocator's dirty refcount blocks are written before
 * any L2 table, and a lowered refcount only after the L2 table that
 * dropped the reference; otherwise (a new image) the L1 table is written
 * whole by qcow2_prealloc_flush().
 */
#ifndef QCOW2_PREALLOC_H
#define QCOW2_PREALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"

/* Preallocation modes: enum instar_prealloc's values (qemu's PreallocMode). */
#define QCOW2_PREALLOC_OFF      0
#define QCOW2_PREALLOC_METADATA 1
#define QCOW2_PREALLOC_FALLOC   2
#define QCOW2_PREALLOC_FULL     3

#define QCOW2_PREALLOC_ENOTSUP 95 /* a case instar does not map (see qcow2_prealloc_map) */

/* Devices the truncate/length callbacks address. */
#define QCOW2_PREALLOC_DEV_IMAGE 0
#define QCOW2_PREALLOC_DEV_DATA  1

/* Which step of qcow2_prealloc_file() failed (create.h's stage values). */
enum qcow2_prealloc_step {
    QCOW2_PREALLOC_STEP_REFCOUNT_AREA = 1, /* "Failed to resize refcount structures" */
    QCOW2_PREALLOC_STEP_DATA_ALLOC,        /* "Failed to allocate data clusters" */
    QCOW2_PREALLOC_STEP_TRUNCATE,          /* "Failed to resize underlying file: ..." */
    QCOW2_PREALLOC_STEP_L2,                /* "Failed to update L2 tables" */
};

struct qcow2_prealloc {
    /* Set by the caller before qcow2_prealloc_init(). */
    struct qcow2_alloc *a;             /* the image's allocator (initialised) */
    const struct qcow2_alloc_ops *ops; /* read/write/mem of the image file */
    /*
     * truncate - set the length of dev (QCOW2_PREALLOC_DEV_*) to size; mode
     * is QCOW2_PREALLOC_OFF, FALLOC or FULL (create.h's values), applied
     * to the grown range as QEMU's file driver does.  0 or -errno.
     */
    int (*truncate)(void *opaque, int dev, uint64_t size, int mode);
    /* length - the current length of dev in bytes.  0 or -errno. */
    int (*length)(void *opaque, int dev, uint64_t *len);
    void *opaque;
    uint32_t cluster_bits; /* 9..21 */
    bool extended_l2;
    bool data_file; /* external data file: host offset = guest offset */
    bool ordered;   /* an existing image: see above */
    /*
     * The mapping is for a data write (convert), not a preallocation:
     * with extended L2 entries the subclusters become allocated.
     */
    bool write;
    /*
     * discard_data - optional: discard [off, off + len) of the external
     * data file (a cluster freed with QCOW2_ZEROIZE_DISCARD: qemu's
     * qcow2_free_any_cluster passes the discard down to the data file).
     */
    void (*discard_data)(void *opaque, uint64_t off, uint64_t len);
    /* The backing file's length (0: none): a copy-on-write reading it is refused. */
    uint64_t backing_len;
    /*
     * Optional: the guest-visible data of [head_off, head_off + head_len)
     * (the partial cluster at the old end of an image, head_off cluster
     * aligned), read through the block layer before anything was written
     * (backing chain and compressed clusters included).  A copy-on-write
     * of that cluster takes its old data from here, as perform_cow() reads
     * it through the image.
     */
    const uint8_t *head_data;
    uint64_t head_off;
    uint64_t head_len;
    /*
     * head_data holds the whole cluster: [head_len, cluster size) is its
     * guest data past the old end, which a copy-on-write's tail in that
     * cluster writes (perform_cow() reads it there: the backing file's
     * data, a compressed cluster's); else that tail gets zeros.
     */
    bool head_tail;
    /*
     * encrypt - optional: the image is encrypted (QEMU's bs->encrypted).
     * The guest data the mapping writes (perform_cow()'s copies and
     * zeros) is encrypted in place first, as qcow2_co_encrypt() does:
     * buf holds the 512-byte sectors at host offset host, guest offset
     * guest (both sector aligned).  0 or -errno.  A data cluster's old
     * bytes are then never copied raw: a copy-on-write that would read
     * one other than through head_data is -QCOW2_PREALLOC_ENOTSUP.
     */
    int (*encrypt)(void *opaque, uint64_t host, uint64_t guest, uint8_t *buf, size_t len);
    void *encrypt_opaque;
    /* The active L1 table (host-endian), owned by the caller. */
    uint64_t *l1;
    uint64_t l1_size;
    uint64_t l1_offset;

    /* Internal. */
    uint64_t cs;
    uint32_t l2_bits;
    uint32_t l2e_size;
    uint64_t l2_off; /* the cached L2 table (0: none) */
    uint8_t *l2;
    bool l2_dirty;
    uint64_t map_end; /* ordered: the end of the clusters mapped so far (0: none) */
    /*
     * data_file: the end of the last cluster (or subcluster) perform_cow()
     * filled with zeros in the data file past a mapped range (QEMU writes
     * that copy-on-write there; past the file's end it only extends it).
     * Only with data_cow set by the caller (resize; create's host bounds
     * the data file at the image size).
     */
    bool data_cow;
    uint64_t data_cow_end;
    /*
     * Optional, with data_cow: writes to the data file.  With it (and
     * head_data), an unallocated head cluster mapped 1:1 gets its
     * copy-on-write written there as perform_cow() writes it: the old
     * guest data before the range (and head_tail's after it).
     */
    int (*data_write)(void *opaque, uint64_t off, const void *buf, size_t len);
};

/*
 * qcow2_prealloc_init - derive the geometry and allocate the L2 buffer.
 * Returns 0 or -QCOW2_ALLOC_ENOMEM (nothing to release then).
 */
int qcow2_prealloc_init(struct qcow2_prealloc *p);

/* qcow2_prealloc_release - free the L2 buffer (nothing is written). */
void qcow2_prealloc_release(struct qcow2_prealloc *p);

/*
 * qcow2_prealloc_flush - write the cached L2 table if dirty and, when not
 * ordered, the whole L1 table (QEMU's qcow2_write_caches, minus the
 * allocator, which the caller flushes).  0 or -errno.
 */
int qcow2_prealloc_flush(struct qcow2_prealloc *p);

/* qcow2_prealloc_write_l1 - write the whole L1 table.  0 or -errno. */
int qcow2_prealloc_write_l1(struct qcow2_prealloc *p);

/*
 * qcow2_prealloc_map - QEMU's preallocate_co(): map every cluster of
 * [offset, new_length) (new clusters at the allocator's placement, kept
 * ones where they are, metadata only) and extend the file that holds them
 * (the data file when there is one) to the last mapped byte, with mode
 * (METADATA extends as OFF).
 * Returns 0 or -errno; -QCOW2_PREALLOC_ENOTSUP for a partial head cluster
 * instar does not map (compressed, zero, shared with a snapshot, or
 * unallocated over a backing file: QEMU would copy its data).
 */
int qcow2_prealloc_map(struct qcow2_prealloc *p, uint64_t offset, uint64_t new_length, int mode);

/*
 * qcow2_prealloc_link - qcow2_alloc_cluster_link_l2() for one cluster
 * after its data was written: the entry of the cluster at guest_offset
 * points at host (COPIED, no zero flag, the extended L2 bitmap kept), the
 * table written, the entry's old cluster dropped (ordered mode).
 * Returns 0 or -errno.
 */
int qcow2_prealloc_link(struct qcow2_prealloc *p, uint64_t guest_offset, uint64_t host);

/*
 * qcow2_prealloc_alloc - qcow2_alloc_host_offset() for a write of
 * [offset, offset + *bytes): allocate (or keep, when ordered) the
 * clusters, link them, and write the copy-on-write head and tail zeros.
 * *bytes shrinks to the contiguous run mapped; *host_offset is where
 * offset lies in the file.  Returns 0 or -errno.
 */
int qcow2_prealloc_alloc(struct qcow2_prealloc *p, uint64_t offset, uint64_t *bytes,
                         uint64_t *host_offset);

/*
 * qcow2_prealloc_file - qcow2_co_truncate()'s falloc/full branch for an
 * image without a data file, growing from old_length to size: a refcount
 * area after the last used cluster, the data clusters behind it, the file
 * truncated with mode, then the L2 entries.  zero_write: QEMU's
 * BDRV_REQ_ZERO_WRITE was honoured by the file (extended L2 entries get
 * their allocation bits).  *step receives the failing step.
 * Returns 0 or -errno (-QCOW2_PREALLOC_ENOTSUP as for qcow2_prealloc_map).
 */
int qcow2_prealloc_file(struct qcow2_prealloc *p, uint64_t old_length, uint64_t size, int mode,
                        bool zero_write, int *step);

/*
 * qcow2_prealloc_zeroize - qcow2_subcluster_zeroize() without
 * BDRV_REQ_MAY_UNMAP for [offset, offset + bytes) at the end of an image
 * of the given version (offset subcluster aligned): entries get the zero
 * flag (or an all-zero subcluster bitmap); compressed ones are dropped.
 * Returns 0 or -errno (-QCOW2_PREALLOC_ENOTSUP for version 2, as QEMU).
 */
int qcow2_prealloc_zeroize(struct qcow2_prealloc *p, uint32_t version, uint64_t offset,
                           uint64_t bytes);

/* qcow2_prealloc_zeroize_flags() flags. */
#define QCOW2_ZEROIZE_UNMAP      (1u << 0) /* BDRV_REQ_MAY_UNMAP: allocated clusters are freed */
#define QCOW2_ZEROIZE_NO_BACKING (1u << 1) /* the image has no backing file */
#define QCOW2_ZEROIZE_V2_DISCARD (1u << 2) /* internal */
/* The image is open with discard=unmap (BDRV_O_UNMAP): freed clusters are discarded. */
#define QCOW2_ZEROIZE_DISCARD (1u << 3)
/*
 * qcow2_cluster_discard() with full_discard (qcow2_make_empty()'s
 * fallback), at any version: every entry is cleared (bitmap included),
 * so the range falls through to the backing file; whole clusters only.
 */
#define QCOW2_ZEROIZE_FULL_DISCARD (1u << 4)

/*
 * qcow2_prealloc_zeroize_flags - qcow2_subcluster_zeroize() for
 * [offset, offset + bytes) of an existing image in ordered mode whose
 * virtual size rounded up to 512 is size (offset subcluster aligned, the
 * end too unless it is at or past size): entries get
 * the zero flag (or an all-zero subcluster bitmap); compressed clusters
 * are dropped, and with QCOW2_ZEROIZE_UNMAP allocated ones too; with
 * QCOW2_ZEROIZE_DISCARD the clusters whose refcount reaches zero are
 * discarded (ops->discard).  On version 2 an image without a backing file
 * (QCOW2_ZEROIZE_NO_BACKING) has its entries cleared as
 * qcow2_cluster_discard() does (offset cluster aligned); with one, QEMU
 * falls back to writing zeros: -QCOW2_PREALLOC_ENOTSUP.  Also ENOTSUP for
 * a partial compressed cluster.  Returns 0 or -errno.
 */
int qcow2_prealloc_zeroize_flags(struct qcow2_prealloc *p, uint32_t version, uint64_t offset,
                                 uint64_t bytes, uint64_t size, unsigned flags);

/*
 * --- Guest writes to an existing image (QEMU's qcow2_co_pwritev_part) ---
 *
 * qcow2_prealloc_write_map() is qcow2_alloc_host_offset() (handle_copied,
 * handle_alloc, calculate_l2_meta): it maps the start of a write to one
 * contiguous host range, keeping clusters that can be written in place
 * and allocating the others, and describes each allocation (and each
 * kept cluster whose zero or unallocated subclusters need filling) as a
 * struct qcow2_l2meta.  The caller then does what qcow2_co_pwritev_task()
 * does: handle_alloc_space() (a zero copy-on-write becomes a zeroed
 * range: skip_cow), the data write at *host_offset, perform_cow() (the
 * old guest data of the cow_start and cow_end regions, read through the
 * image itself, written to alloc_offset + region offset), and for each
 * meta qcow2_prealloc_write_link().  Needs ordered mode.  With an
 * external data file (data_file) nothing is allocated: a cluster's host
 * offset is its guest offset in the data file, and the data and
 * copy-on-write go there, the metadata to the image file.
 */

/* A copy-on-write region, relative to the meta's first cluster. */
struct qcow2_cow_region {
    uint64_t offset;
    uint64_t bytes;
};

/* QEMU's QCowL2Meta. */
struct qcow2_l2meta {
    uint64_t offset;       /* guest offset of the first cluster */
    uint64_t alloc_offset; /* host offset of the first cluster */
    uint64_t nb_clusters;
    bool keep_old; /* the clusters are kept (only subclusters are filled) */
    bool skip_cow; /* set by the caller when it zeroed the range instead */
    struct qcow2_cow_region cow_start, cow_end;
};

/* Metas one qcow2_prealloc_write_map() call produces at most (it maps less). */
#define QCOW2_WRITE_META_MAX 16

/*
 * qcow2_prealloc_write_map - map [offset, offset + *bytes) for a write.
 * *bytes shrinks to the contiguous run mapped (> 0 on success);
 * *host_offset is where offset lies in the file; m[0..*nmeta) the metas.
 * Returns 0, or -errno (-QCOW2_ALLOC_EIO for a corrupt entry;
 * -QCOW2_PREALLOC_ENOTSUP without ordered mode).
 * On failure, clusters already allocated for the metas are freed.
 */
int qcow2_prealloc_write_map(struct qcow2_prealloc *p, uint64_t offset, uint64_t *bytes,
                             uint64_t *host_offset, struct qcow2_l2meta *m, unsigned *nmeta);

/*
 * qcow2_prealloc_write_link - qcow2_alloc_cluster_link_l2() once the data
 * and the copy-on-write are written: the entries of m's clusters point at
 * the new clusters (COPIED; with extended L2 entries the written
 * subclusters become allocated), then the clusters they replaced lose a
 * reference.  Returns 0 or -errno.
 */
int qcow2_prealloc_write_link(struct qcow2_prealloc *p, const struct qcow2_l2meta *m);

/* qcow2_alloc_cluster_abort - a meta that will not be linked gives its clusters back. */
void qcow2_prealloc_write_abort(struct qcow2_prealloc *p, const struct qcow2_l2meta *m);

/*
 * qcow2_prealloc_write_compressed - qcow2_alloc_compressed_cluster_offset():
 * room for csize bytes (0 < csize < cluster size) of compressed data for
 * the guest cluster at offset (cluster aligned), packed by
 * qcow2_alloc_bytes(), and its L2 entry: the compressed flag, the host
 * offset and the number of 512-byte sectors the data reaches into beyond
 * the first (qcow2.txt, "Compressed Clusters Descriptor"); with extended
 * L2 entries a zero bitmap.  The caller then writes the data at
 * *host_offset.  Needs ordered mode and no external data file.
 * Returns 0 or -errno: -QCOW2_ALLOC_EIO when the cluster is already
 * allocated (compression never overwrites), -QCOW2_PREALLOC_ENOTSUP
 * without ordered mode or with a data file.
 */
int qcow2_prealloc_write_compressed(struct qcow2_prealloc *p, uint64_t offset, uint64_t csize,
                                    uint64_t *host_offset);

/*
 * qcow2_prealloc_l2_cached - the cached L2 table at l2_offset (its
 * entries as the image will have them), or NULL when another one is
 * cached: a reader of the image looks here before it reads the file.
 */
const uint8_t *qcow2_prealloc_l2_cached(const struct qcow2_prealloc *p, uint64_t l2_offset);

#endif /* QCOW2_PREALLOC_H */
