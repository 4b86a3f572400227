/*
 * The Bochs growing ("redolog") image as qemu 7.2's block/bochs.c reads
 * it: a 512-byte little-endian header (magic, type "Redolog", subtype
 * "Growing", version 1 or 2, header size, catalog entries, bitmap and
 * extent sizes, disk size), the catalog (one 32-bit extent number per
 * extent of the disk, 0xffffffff: not allocated) at the header size, then
 * the extents, each its sector bitmap followed by its data.
 *
 * Pure code: no I/O, no allocation.  The caller reads the file through
 * struct bochs_reader (bytes past the end of the file read as zeros, as
 * QEMU's file driver returns them) and owns the catalog's memory.
 */
#ifndef BOCHS_BOCHS_H
#define BOCHS_BOCHS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bochs_err.h"

#define BOCHS_HEADER_SIZE 512
#define BOCHS_CATALOG_MAX 0x100000u /* entries: qemu's limit (bximage's ~8 TB) */
#define BOCHS_EXTENT_MAX  0x800000u
#define BOCHS_UNALLOCATED 0xffffffffu
/* BDRV_MAX_LENGTH: a file offset qemu's block layer accepts ends below it. */
#define BOCHS_MAX_LENGTH (0x7fffffffffffffffull & ~((1ull << 30) - 1))

/* reader - read [off, off + len) of the image file; 0 or a negative code. */
struct bochs_reader {
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    void *opaque;
};

struct bochs_image {
    uint64_t total_sectors; /* the virtual size in 512-byte sectors */
    uint32_t header_size;   /* where the catalog is */
    uint32_t catalog_size;  /* entries */
    uint32_t data_offset;   /* header size + catalog bytes, as QEMU's uint32_t */
    uint32_t bitmap_blocks; /* sectors of bitmap before each extent's data */
    uint32_t extent_blocks; /* sectors of data per extent */
    uint32_t extent_size;   /* bytes: a power of two in 512..8 MiB */
    uint32_t err_arg;       /* the argument of the last error */
};

/*
 * bochs_open - bochs_open()'s checks of the header, in QEMU's order.  On
 * success img->catalog_size entries of catalog (at img->header_size) are
 * to be read with bochs_read_catalog().  Returns 0 or a negated
 * BOCHS_ERR_* (reader errors passed on).
 */
int bochs_open(const struct bochs_reader *r, struct bochs_image *img);

/*
 * bochs_read_catalog - read the catalog into cat (img->catalog_size
 * entries, host order).  Returns 0 or a reader error.
 */
int bochs_read_catalog(const struct bochs_reader *r, const struct bochs_image *img, uint32_t *cat);

/*
 * bochs_locate - seek_to_sector() for sector (< total_sectors): returns
 * false when the catalog says the extent is not allocated; else true
 * with *bitmap the file offset of the bitmap byte that holds the sector's
 * bit (*bit its index), and *data the file offset of the sector's data,
 * computed with QEMU's 64-bit wrapping arithmetic.  The caller reads the
 * byte and the data, each of which fails (EIO) when it does not end below
 * BOCHS_MAX_LENGTH.
 */
bool bochs_locate(const struct bochs_image *img, const uint32_t *cat, uint64_t sector,
                  uint64_t *bitmap, unsigned *bit, uint64_t *data);

#endif /* BOCHS_BOCHS_H */
