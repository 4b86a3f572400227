/*
 * Measuring a qcow2 image before it exists, as QEMU 7.2's qcow2_measure()
 * (block/qcow2.c) does for `qemu-img measure -O qcow2`: the option checks
 * in its order, the data clusters a source needs (its loop over
 * bdrv_block_status_above), the metadata of a fully allocated image
 * (qcow2_calc_prealloc_size), the LUKS header and the persistent bitmaps
 * (qcow2_get_persistent_dirty_bitmap_size).
 *
 * Pure arithmetic: no image bytes, no I/O, no malloc.  The host feeds it
 * the options it parsed and, for a source image, the block status extents
 * a guest reported; every input is treated as untrusted (no division by a
 * value it was given without a check, no overflow that QEMU does not also
 * wrap).
 */
#ifndef QCOW2_MEASURE_H
#define QCOW2_MEASURE_H

#include <stdbool.h>
#include <stdint.h>

/* Failures, in the order qcow2_measure() checks; each has qemu's text. */
enum qcow2_measure_err {
    QCOW2_MEASURE_OK = 0,
    /* "Cluster size must be a power of two between 512 and 2048k" */
    QCOW2_MEASURE_ECLUSTER_SIZE,
    /* "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes" */
    QCOW2_MEASURE_EEXTL2_CLUSTER,
    /* "Invalid compatibility level: '<compat>'" */
    QCOW2_MEASURE_ECOMPAT,
    /* "Refcount width must be a power of two and may not exceed 64 bits" */
    QCOW2_MEASURE_EREFCOUNT_BITS,
    /* "Different refcount widths than 16 bits require compatibility level 1.1 or above
     * (use compat=1.1 or greater)" */
    QCOW2_MEASURE_EREFCOUNT_V2,
    /* "invalid parameter value: <preallocation>" */
    QCOW2_MEASURE_EPREALLOC,
    /* "The image size is too large (try using a larger cluster size)" */
    QCOW2_MEASURE_ETOO_LARGE,
};

/* Preallocation modes (qemu's PreallocMode; QCOW2_PREALLOC_* in prealloc.h). */
#define QCOW2_MEASURE_PREALLOC_INVALID (-1)

/* The create options qcow2_measure() reads, as the host parsed them. */
struct qcow2_measure_opts {
    uint64_t cluster_size;  /* cluster_size=, default 65536 */
    bool extended_l2;       /* extended_l2= */
    int version;            /* 2 (compat=0.10), 3 (1.1 or absent), 0: any other string */
    uint64_t refcount_bits; /* refcount_bits=, default 16 */
    int prealloc;           /* QCOW2_PREALLOC_*, or QCOW2_MEASURE_PREALLOC_INVALID */
    bool backing_file;      /* backing_file= was given */
};

/*
 * qcow2_measure_check_opts - qcow2_measure()'s option checks up to the
 * preallocation mode, in its order (extended_l2, cluster size, compat,
 * refcount width, preallocation).  The caller then deals with the
 * encryption options and calls qcow2_measure_check_size().
 * Returns QCOW2_MEASURE_OK or the first failure.
 */
enum qcow2_measure_err qcow2_measure_check_opts(const struct qcow2_measure_opts *o);

/*
 * qcow2_measure_check_size - the virtual size check: size (the size
 * option, 0 if none) rounded up to the cluster size (wrapping as QEMU's
 * uint64_t does) must need no more L2 tables than an L1 table of
 * QCOW_MAX_L1_SIZE (32 MiB) holds.  o has passed the option checks.
 * Returns QCOW2_MEASURE_OK or QCOW2_MEASURE_ETOO_LARGE.
 */
enum qcow2_measure_err qcow2_measure_check_size(const struct qcow2_measure_opts *o, uint64_t size);

/*
 * qcow2_measure_prealloc_size - qcow2_calc_prealloc_size(): the bytes of
 * an image of size bytes (virtual) with every cluster allocated: header,
 * L2 and L1 tables, refcount table and blocks, and the data.  QEMU's
 * arithmetic here is unsigned 64-bit (its int64_t operands meet size_t
 * ones), and so is this, wrapping where QEMU's wraps.
 * @size: the virtual size (rounded up to the cluster size here)
 * @cluster_size: a power of two, 512..2 MiB
 * @refcount_bits: a power of two, 1..64
 */
uint64_t qcow2_measure_prealloc_size(uint64_t size, uint64_t cluster_size, uint64_t refcount_bits,
                                     bool extended_l2);

/*
 * qcow2_measure_luks_header - the bytes qemu's LUKS header takes (its
 * payload offset: 4096 bytes of header, then 8 key slots of
 * key_len x 4000 anti-forensic stripes, each rounded up to whole 4096-byte
 * units: qcrypto_block_luks_create()).
 * @key_len: the master key length in bytes (twice the cipher's for XTS),
 *           at most 64
 */
uint64_t qcow2_measure_luks_header(uint32_t key_len);

/*
 * The data a source image needs (qcow2_measure's loop over
 * bdrv_block_status_above in cluster-sized steps), fed with the source's
 * block status extents in order.  QEMU queries the status at offset,
 * counts a data extent up to the end of its last cluster and queries
 * next at that cluster boundary; an extent (or the part of it) QEMU's
 * loop steps over is skipped here too, so the count does not depend on
 * how the reporter split its extents.
 */
struct qcow2_measure_walk {
    uint64_t cluster_size; /* the target's */
    uint64_t pos;          /* the end of the extents fed so far */
    uint64_t next;         /* where QEMU's loop asks next (>= pos after a data extent) */
    uint64_t required;     /* bytes of data clusters counted */
};

/* qcow2_measure_walk_init - start a walk at offset 0 (cluster_size: a power of two). */
void qcow2_measure_walk_init(struct qcow2_measure_walk *w, uint64_t cluster_size);

/*
 * qcow2_measure_walk_extent - one block status extent [start, start + len)
 * of the source: zero (BDRV_BLOCK_ZERO) or data (BDRV_BLOCK_DATA and
 * BDRV_BLOCK_ALLOCATED); anything else counts nothing.  Extents come in
 * order from offset 0, each starting where the last one ended or, when
 * the reporter steps as QEMU's loop does, where that loop asks next (the
 * rest of a counted cluster left out); len > 0.
 * Returns 0, or -1 if the extent does not continue the walk or overflows
 * (nothing is counted then).
 */
int qcow2_measure_walk_extent(struct qcow2_measure_walk *w, uint64_t start, uint64_t len, bool zero,
                              bool data);

/*
 * The persistent bitmaps a qcow2 target would carry over
 * (qcow2_get_persistent_dirty_bitmap_size), for a target cluster size.
 */
struct qcow2_measure_bitmaps {
    uint64_t cluster_size;
    uint64_t size;     /* bitmap clusters and bitmap tables so far */
    uint64_t dir_size; /* bitmap directory bytes so far */
};

void qcow2_measure_bitmaps_init(struct qcow2_measure_bitmaps *b, uint64_t cluster_size);

/*
 * qcow2_measure_bitmaps_add - one persistent bitmap of a source of
 * disk_size bytes (its bdrv_getlength) with granularity bytes per bit
 * and a name of name_len bytes.
 * Returns 0, or -1 for a granularity of 0 (nothing is counted).
 */
int qcow2_measure_bitmaps_add(struct qcow2_measure_bitmaps *b, uint64_t disk_size,
                              uint64_t granularity, uint64_t name_len);

/* qcow2_measure_bitmaps_total - the bitmaps size: tables and data plus the directory. */
uint64_t qcow2_measure_bitmaps_total(const struct qcow2_measure_bitmaps *b);

#endif /* QCOW2_MEASURE_H */
