/*
 * VMDK as qemu 7.2's block/vmdk.c reads it: the hosted sparse extent
 * header (VMDK4, "KDMV", with the streamOptimized footer), the text
 * descriptor (embedded in a sparse file at sector 1, or a file of its own
 * naming extent files), the grain directory and grain tables, the grain
 * markers of compressed grains, and the older VMDK3 ("COWD", vmfsSparse)
 * and ESXi seSparse extents as vmdk_open_vmfs_sparse() and
 * vmdk_open_se_sparse() read them (seSparse is undocumented: QEMU's strict
 * checks are the reference).  Reference: VMware's "Virtual Disk
 * Format 5.0" (sections "Hosted Sparse Extent Header", "The Descriptor
 * File", "Grain Directories and Grain Tables", "Stream-Optimized
 * Compressed Sparse Extents").
 *
 * Pure code: no I/O, no allocation.  The caller reads files through
 * struct vmdk_reader (bytes past the end of a file read as zeros, as
 * QEMU's file driver returns them) and owns every table's memory.
 */
#ifndef VMDK_VMDK_H
#define VMDK_VMDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmdk_err.h"

#define VMDK4_MAGIC_BE 0x4b444d56u /* "KDMV" */
#define VMDK3_MAGIC_BE 0x434f5744u /* "COWD" */

/* vmdk_read_desc() reads at most this much of a file (1 MiB - 1). */
#define VMDK_DESC_READ_MAX ((1u << 20) - 1)
/* What vmdk_read_cid() and vmdk_parent_open() read: 20 sectors. */
#define VMDK_DESC_SIZE (20 * 512)
/* The descriptor offset of a sparse file, whatever its header says. */
#define VMDK_SPARSE_DESC_OFFSET 0x200
/* The grain table entry of a zeroed grain (VMDK4_FLAG_ZERO_GRAIN). */
#define VMDK_GTE_ZEROED 1u
/*
 * The most extents instar opens for a node (a limit of ours, not QEMU's:
 * a 4 TiB twoGbMaxExtent image; include/instar/result.h's
 * INSTAR_VMDK_EXTENTS_MAX is the same number).
 */
#define VMDK_MAX_EXTENTS 2048
/* The most entries a grain table has (VMDK3 and seSparse: 4096), and its most bytes. */
#define VMDK_L2_MAX       4096u
#define VMDK_L2_MAX_BYTES (VMDK_L2_MAX * 8u)
/* bs->auto_backing_file is char[PATH_MAX]. */
#define VMDK_PARENT_MAX 4095

/* reader - read [off, off + len) of a file; 0 or a negative code. */
struct vmdk_reader {
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    void *opaque;
};

/* One extent, as QEMU's VmdkExtent (the read side's fields). */
struct vmdk_extent {
    uint32_t file; /* 0: the image file; i >= 1: the descriptor's i-th extent file */
    bool flat;
    bool compressed;
    bool has_marker;
    bool has_zero_grain;
    bool sesparse;       /* 64-bit directory and table entries, QEMU's seSparse encoding */
    uint32_t entry_size; /* bytes per directory and table entry: 4, or 8 (seSparse) */
    uint32_t version;
    uint64_t sectors;           /* the extent's length in sectors */
    uint64_t end_sector;        /* where it ends in the image, in sectors */
    uint64_t flat_start_offset; /* flat: where its data starts in its file, bytes */
    uint64_t l1_table_offset;   /* bytes */
    uint64_t l1_backup_offset;  /* bytes, 0: none */
    uint32_t l1_size;           /* grain directory entries */
    uint32_t l1_entry_sectors;  /* sectors one grain table covers */
    uint32_t l2_size;           /* entries per grain table (<= VMDK_L2_MAX) */
    uint64_t cluster_sectors;   /* grain size in sectors (flat: the extent's length) */
    uint64_t se_l2_offset;      /* seSparse: where grain tables start, sectors */
    uint64_t se_grains_offset;  /* seSparse: where grains start, sectors */
    char type[11];              /* the descriptor's extent type, "" for none */
};

/*
 * vmdk_open_vmdk4 - vmdk_open_vmdk4() for the sparse file r (file_size
 * bytes; its first 4 bytes are the VMDK4 magic): the header (or the
 * footer of a streamOptimized image) checked in QEMU's order, and e
 * filled (e->file, end_sector and type are the caller's).  rdwr: a
 * read-write open (version 3 refused).  A header with capacity 0 and a
 * descriptor offset names a descriptor file inside this one: returns 1
 * with *desc_offset its byte offset, and e is not filled.  Returns 0, 1
 * or a negated VMDK_ERR_* with *err_arg its argument.
 */
int vmdk_open_vmdk4(const struct vmdk_reader *r, uint64_t file_size, bool rdwr,
                    struct vmdk_extent *e, uint64_t *desc_offset, uint64_t *err_arg);

/*
 * vmdk_open_vmfs - vmdk_open_vmfs_sparse() for the VMDK3 file r (its first
 * 4 bytes are "COWD"): e filled from the header (4096-entry grain tables,
 * 4-byte entries; e->file, end_sector and type are the caller's).  A grain
 * size whose tables cover 0 sectors (0, or 2^20 sectors and up) opens, as
 * in QEMU, whose lookups then divide by zero: vmdk_cluster() answers
 * VMDK_CLUSTER_ERROR instead.  Returns 0 or a negated VMDK_ERR_*.
 */
int vmdk_open_vmfs(const struct vmdk_reader *r, struct vmdk_extent *e);

/*
 * vmdk_open_sesparse - vmdk_open_se_sparse() for the seSparse file r: the
 * const header (sector 0) and the volatile header it points to, checked in
 * QEMU's order with err_args[0..3] the message's numbers, and e filled
 * (8-byte entries, 4096-entry tables, 4 KiB grains).  rdwr: a read-write
 * open, refused (QEMU writes no seSparse).  Returns 0 or a negated
 * VMDK_ERR_* (VMDK_ERR_SE_VOL_READ / VMDK_ERR_L1_READ_EIO for a header
 * offset QEMU cannot read at).
 */
int vmdk_open_sesparse(const struct vmdk_reader *r, bool rdwr, struct vmdk_extent *e,
                       uint64_t err_args[4]);

/*
 * vmdk_add_extent_check - vmdk_add_extent()'s limits on a sparse extent:
 * 0 or -VMDK_ERR_GRANULARITY / -VMDK_ERR_L1_SIZE.
 */
int vmdk_add_extent_check(uint64_t cluster_sectors, uint32_t l1_size);

/*
 * vmdk_desc_value - vmdk_parse_description(): the value of `name="..."`
 * in the NUL-terminated desc (first occurrence of name, the two bytes
 * after it skipped), copied NUL-terminated into buf.  0, or -1 when
 * absent, unterminated or longer than buf_size - 1.
 */
int vmdk_desc_value(const char *desc, const char *name, char *buf, size_t buf_size);

/*
 * vmdk_desc_cid - vmdk_read_cid() over the NUL-terminated desc (QEMU
 * reads VMDK_DESC_SIZE bytes and cuts the last): the hex number after
 * the first "CID" (parent false) or "parentCID" (parent true) and one
 * byte.  0, or -1 (QEMU's -EINVAL).
 */
int vmdk_desc_cid(const char *desc, bool parent, uint32_t *cid);

/*
 * vmdk_desc_parent - vmdk_parent_open(): the parentFileNameHint of the
 * NUL-terminated desc into buf (VMDK_PARENT_MAX + 1 bytes).  Returns 1
 * with the name, 0 when there is none, -1 for QEMU's -EINVAL (no closing
 * quote, or a name longer than VMDK_PARENT_MAX).
 */
int vmdk_desc_parent(const char *desc, char *buf);

/* One extent line of a descriptor, as vmdk_parse_extents() scans it. */
struct vmdk_extent_line {
    char type[11];
    int64_t sectors;
    int64_t flat_offset; /* sectors; 0 for VMFS */
    char fname[512];
};

/*
 * vmdk_desc_next_extent - the next extent line of the NUL-terminated
 * descriptor from *p on (lines QEMU skips are skipped).  Returns 1 with
 * *l filled and *p moved past the line; 0 at the end; -VMDK_ERR_EXTENT_LINE
 * with *bad and *bad_len the line QEMU quotes in "Invalid extent line".
 * Types other than FLAT, SPARSE, VMFS, VMFSSPARSE and SESPARSE are
 * skipped, as QEMU skips them.
 */
int vmdk_desc_next_extent(const char **p, struct vmdk_extent_line *l, const char **bad,
                          size_t *bad_len);

/* Results of vmdk_cluster(), QEMU's VMDK_* codes of get_cluster_offset(). */
enum vmdk_cluster_ret {
    VMDK_CLUSTER_OK = 0,
    VMDK_CLUSTER_ERROR = -1,
    VMDK_CLUSTER_UNALLOC = -2,
    VMDK_CLUSTER_ZEROED = -3,
};

/*
 * load_l2 - the grain table at sector l2_sector of the extent's file:
 * l2_size little-endian entries of entry_size bytes in *l2 (valid until
 * the next call), or a negative code.
 */
typedef int (*vmdk_load_l2_fn)(void *opaque, uint32_t l2_sector, const uint8_t **l2);

/*
 * vmdk_cluster - get_cluster_offset() without allocation for offset
 * (bytes from the start of the image, inside extent e): *cluster_offset
 * the grain's byte offset in e's file (a flat extent: its start).
 * l1: the grain directory, host order (uint32_t entries, or uint64_t for
 * seSparse).  Returns an enum vmdk_cluster_ret.
 */
int vmdk_cluster(const struct vmdk_extent *e, const void *l1, uint64_t offset,
                 vmdk_load_l2_fn load_l2, void *opaque, uint64_t *cluster_offset);

/* vmdk_find_offset_in_cluster(): where offset lies in its grain (bytes). */
uint64_t vmdk_offset_in_cluster(const struct vmdk_extent *e, uint64_t offset);

/*
 * vmdk_grain_data - the compressed bytes of a grain read as QEMU reads it
 * (buf: 2 grains from its offset): with a marker, after the 12-byte
 * marker, as long as it says; without, the whole first grain.  A stored
 * size of 0 or over the buffer fails as in QEMU; one that runs past the
 * buffer only by the marker's 12 bytes (QEMU reads past its heap buffer
 * there) is cut to the buffer.  Returns 0 with *data and *len, or -1.
 */
int vmdk_grain_data(const struct vmdk_extent *e, const uint8_t *buf, size_t buf_len,
                    const uint8_t **data, size_t *len);

#endif /* VMDK_VMDK_H */
