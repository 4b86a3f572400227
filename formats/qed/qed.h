/*
 * The QED format as qemu 7.2's block/qed.c reads it: the header (checked
 * in bdrv_qed_do_open()'s order), the backing file name, the two-level
 * table (L1 and L2 tables of table_size clusters each, entries in
 * little-endian: 0 unallocated, 1 a zero cluster, else the file offset of
 * a data cluster), qed_find_cluster()'s lookup and qed_check()'s
 * consistency check.  Reference: docs/interop/qed_spec.txt in QEMU.
 *
 * Pure code: no I/O, no allocation.  Tables are passed in host order;
 * the caller reads and writes them through struct qed_check_io.
 */
#ifndef QED_QED_H
#define QED_QED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qed_err.h"

#define QED_MAGIC       0x00444551u /* "QED\0" little-endian */
#define QED_HEADER_SIZE 64

#define QED_F_BACKING_FILE            0x01ull
#define QED_F_NEED_CHECK              0x02ull
#define QED_F_BACKING_FORMAT_NO_PROBE 0x04ull
#define QED_FEATURE_MASK              0x07ull

#define QED_MIN_CLUSTER_SIZE     4096u
#define QED_MAX_CLUSTER_SIZE     (64u << 20)
#define QED_DEFAULT_CLUSTER_SIZE 65536u
#define QED_MIN_TABLE_SIZE       1u
#define QED_MAX_TABLE_SIZE       16u
#define QED_DEFAULT_TABLE_SIZE   4u

/* sizeof(bs->backing_file): qed_read_string() refuses a name of this length or more. */
#define QED_BACKING_NAME_BUF 4096u

/* qed_find() results (QED_CLUSTER_* in qed.h of QEMU). */
enum qed_cluster {
    QED_CLUSTER_FOUND = 0, /* data at *offset in the file */
    QED_CLUSTER_ZERO = 1,  /* zero clusters */
    QED_CLUSTER_L2 = 2,    /* unallocated in an L2 table */
    QED_CLUSTER_L1 = 3,    /* no L2 table */
};

struct qed_image {
    uint32_t cluster_size; /* a power of two in [4 KiB, 64 MiB] */
    uint32_t table_size;   /* clusters per table: a power of two in [1, 16] */
    uint32_t header_size;  /* in clusters */
    uint64_t features;
    uint64_t compat_features;
    uint64_t autoclear_features;
    uint64_t l1_table_offset;
    uint64_t image_size; /* the virtual size */
    uint32_t backing_filename_offset;
    uint32_t backing_filename_size;
    uint64_t file_size;    /* the file length rounded down to a cluster */
    uint32_t table_nelems; /* entries per table */
    uint32_t l1_shift;     /* bits of guest offset below an L1 index */
    uint64_t err_arg;      /* the argument of the last error */
};

/* qed_probe - bdrv_qed_probe(): 100 for the magic in buf[0..3], else 0. */
int qed_probe(const uint8_t *buf, size_t len);

/*
 * qed_open_header - bdrv_qed_do_open() up to the backing file name: parse
 * the QED_HEADER_SIZE bytes of hdr (the file's first bytes, zeros past its
 * end) for a file of file_length bytes and check them in QEMU's order.
 * Returns 0 or a negated QED_ERR_* (the unsupported features in
 * img->err_arg).  With QED_F_BACKING_FILE the name is
 * img->backing_filename_size bytes at img->backing_filename_offset, up
 * to its first NUL.
 */
int qed_open_header(const uint8_t hdr[QED_HEADER_SIZE], uint64_t file_length,
                    struct qed_image *img);

/* qed_table_bytes - the bytes of one table (cluster_size * table_size, at most 1 GiB). */
uint64_t qed_table_bytes(const struct qed_image *img);

/* qed_check_cluster_offset - a data cluster inside the file, after the header. */
bool qed_check_cluster_offset(const struct qed_image *img, uint64_t offset);

/* qed_check_table_offset - a table whose first and last clusters pass the check above. */
bool qed_check_table_offset(const struct qed_image *img, uint64_t offset);

/* qed_max_image_size - qed_max_image_size() with QEMU's wrap-around arithmetic. */
uint64_t qed_max_image_size(uint32_t cluster_size, uint32_t table_size);

/* qed_image_size_valid - qed_is_image_size_valid(). */
bool qed_image_size_valid(uint64_t size, uint32_t cluster_size, uint32_t table_size);

/* qed_cluster_size_valid, qed_table_size_valid - the header's and create's rules. */
bool qed_cluster_size_valid(uint32_t cluster_size);
bool qed_table_size_valid(uint32_t table_size);

/* qed_l1_index, qed_l2_index - the table indices of guest offset pos. */
uint32_t qed_l1_index(const struct qed_image *img, uint64_t pos);
uint32_t qed_l2_index(const struct qed_image *img, uint64_t pos);

/* qed_l2_boundary - *len shortened to end at the L2 table boundary after pos. */
uint64_t qed_l2_boundary(const struct qed_image *img, uint64_t pos, uint64_t len);

/*
 * qed_find_l2 - the second half of qed_find_cluster(): in L2 table l2
 * (table_nelems entries, host order), the run of clusters of one kind
 * from pos for at most *len bytes (already shortened to the L2
 * boundary): returns a qed_cluster with *len shortened to the run and
 * *offset the first entry (for FOUND the file offset of pos's cluster),
 * or -1 for a data cluster outside the file (QEMU's -EINVAL).
 */
int qed_find_l2(const struct qed_image *img, const uint64_t *l2, uint64_t pos, uint64_t *len,
                uint64_t *offset);

/* qed_bytes_to_clusters - QEMU's qed_bytes_to_clusters(), its divisor included. */
uint64_t qed_bytes_to_clusters(const struct qed_image *img, uint64_t bytes);

/* --- qed_check() --- */

struct qed_check_io {
    /* Read the table at file offset off into tbl (table_nelems entries, host order). */
    int (*read_table)(void *opaque, uint64_t off, uint64_t *tbl);
    /*
     * Write entries [index, index + n) of tbl to the table at off as
     * qed_write_table() does (whole sectors).  Only with fix.
     */
    int (*write_table)(void *opaque, uint64_t off, const uint64_t *tbl, uint32_t index, uint32_t n);
    void *opaque;
};

struct qed_check_result {
    uint64_t corruptions, corruptions_fixed, leaks, check_errors;
    uint64_t total_clusters, allocated_clusters, fragmented_clusters;
};

/* qed_check_nclusters - the clusters the check's bitmap covers (its bits). */
uint64_t qed_check_nclusters(const struct qed_image *img);

/*
 * qed_check - qed_check(): walk the L1 table l1 (host order; fixed in
 * place with fix) and its L2 tables (read into l2buf, one table), mark
 * the clusters used in the zeroed bitmap used (qed_check_nclusters()
 * bits, rounded up to 32), count corruptions, allocation and leaks into
 * r (added to).  Returns 0 or the last negative error of io (then the
 * leaks are not counted), as QEMU's.
 */
int qed_check(const struct qed_image *img, uint64_t *l1, uint64_t *l2buf, uint32_t *used, bool fix,
              const struct qed_check_io *io, struct qed_check_result *r);

/* --- writing --- */

/* qed_header_write - the QED_HEADER_SIZE bytes of img's header fields. */
void qed_header_write(const struct qed_image *img, uint8_t out[QED_HEADER_SIZE]);

/* Little-endian helpers shared with the driver. */
uint64_t qed_le64(const uint8_t *p);
void qed_put_le64(uint8_t *p, uint64_t v);

#endif /* QED_QED_H */
