/*
 * The qcow (version 1) format as qemu 7.2's block/qcow.c reads it: the
 * header (checked in qcow_open()'s order), the backing file name, the L1
 * table (entries past the end of the file read as zeros, as QEMU reads
 * them, so only the part inside the file is held) and L2 tables of
 * 2^l2_bits big-endian entries: 0 unallocated, bit 63 a compressed
 * cluster (its size in the bits above the offset), else the file offset
 * of a data cluster.
 *
 * Pure code: no I/O, no allocation.
 */
#ifndef QCOW_QCOW_H
#define QCOW_QCOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow_err.h"

#define QCOW_MAGIC       0x514649fbu /* "QFI\xfb" */
#define QCOW_VERSION     1
#define QCOW_HEADER_SIZE 48

#define QCOW_CRYPT_NONE 0
#define QCOW_CRYPT_AES  1

#define QCOW_OFLAG_COMPRESSED (1ull << 63)

/* The longest backing file name qcow_open() reads. */
#define QCOW_BACKING_NAME_MAX 1023u

/* BDRV_MAX_LENGTH: QEMU refuses a request that ends past it (-EIO). */
#define QCOW_IO_MAX 0x7fffffffc0000000ull

struct qcow_image {
    uint64_t backing_file_offset; /* 0: no backing file */
    uint32_t backing_file_size;
    uint32_t mtime;
    uint64_t size; /* the header's size; the virtual size is size / 512 sectors */
    uint32_t cluster_bits;
    uint32_t l2_bits;
    uint32_t crypt_method;
    uint64_t l1_table_offset;
    uint32_t cluster_size;
    uint32_t l2_size;             /* entries per L2 table */
    uint64_t l1_size;             /* L1 entries (at most INT_MAX / 8) */
    uint64_t cluster_offset_mask; /* of a compressed entry */
    uint32_t version;             /* the argument of QCOW_ERR_VERSION */
};

/* qcow_probe - qcow_probe(): 100 for magic and version 1 in buf, else 0. */
int qcow_probe(const uint8_t *buf, size_t len);

/*
 * qcow_open_header - qcow_open() up to the L1 table: parse the
 * QCOW_HEADER_SIZE bytes of hdr (zeros past the end of the file) and
 * check them in QEMU's order.  An AES-encrypted image fails with
 * QCOW_ERR_KEY_SECRET where QEMU's crypto open does if need_key (an open
 * with I/O and no secret); otherwise crypt_method is QCOW_CRYPT_NONE or
 * QCOW_CRYPT_AES on success.  Returns
 * 0 or a negated QCOW_ERR_* (the version in img->version).
 */
int qcow_open_header(const uint8_t hdr[QCOW_HEADER_SIZE], bool need_key, struct qcow_image *img);

/*
 * qcow_check_backing - after the L1 table is read: the backing file name's
 * length check.  Returns 0 or -QCOW_ERR_BACKING_TOO_LONG.
 */
int qcow_check_backing(const struct qcow_image *img);

/* qcow_io_ok - QEMU's request check: [off, off + len) ends before BDRV_MAX_LENGTH. */
bool qcow_io_ok(uint64_t off, uint64_t len);

/*
 * qcow_l1_in_file - how many L1 entries lie (at least partly) inside a
 * file of file_size bytes: the rest read as zeros.
 */
uint64_t qcow_l1_in_file(const struct qcow_image *img, uint64_t file_size);

/* qcow_l1_index, qcow_l2_index - the table indices of guest offset pos. */
uint64_t qcow_l1_index(const struct qcow_image *img, uint64_t pos);
uint32_t qcow_l2_index(const struct qcow_image *img, uint64_t pos);

/* qcow_compressed - a compressed entry's file offset and byte count. */
void qcow_compressed(const struct qcow_image *img, uint64_t entry, uint64_t *off, uint32_t *len);

/* qcow_header_write - the QCOW_HEADER_SIZE bytes of a header with img's fields. */
void qcow_header_write(const struct qcow_image *img, uint8_t out[QCOW_HEADER_SIZE]);

uint64_t qcow_be64(const uint8_t *p);
void qcow_put_be64(uint8_t *p, uint64_t v);

#endif /* QCOW_QCOW_H */
