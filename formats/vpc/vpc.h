/*
 * The VHD ("vpc") format as qemu 7.2's block/vpc.c reads it: the footer
 * (at offset 0 for a dynamic image, in the last sector for a fixed one),
 * the dynamic disk header, the block allocation table (BAT), and the
 * size rules (CHS geometry or current_size, by creator application).
 * Reference: Microsoft's "Virtual Hard Disk Image Format Specification"
 * 1.0, sections "Hard Disk Footer Format" and "Dynamic Disk Header".
 *
 * Pure code: no I/O, no allocation.  The caller reads the file through
 * struct vpc_reader (bytes past the end of the file read as zeros, as
 * QEMU's file driver returns them) and owns the BAT's memory.
 */
#ifndef VPC_VPC_H
#define VPC_VPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpc_err.h"

#define VPC_FOOTER_SIZE  512
#define VPC_DYN_HDR_SIZE 1024
#define VPC_BAT_UNUSED   0xffffffffu

#define VPC_TYPE_FIXED   2
#define VPC_TYPE_DYNAMIC 3

/* The largest image: 0xff000000 sectors (2040 GiB). */
#define VPC_MAX_SECTORS 0xff000000ull
/* 65535 x 16 x 255: "the size is current_size". */
#define VPC_MAX_GEOMETRY (65535ull * 16 * 255)

/* vpc_open_footer() size_calc: qemu's force_size_calc option. */
enum vpc_size_calc {
    VPC_SIZE_AUTO = 0,    /* by creator application */
    VPC_SIZE_CHS = 1,     /* force_size_calc=chs */
    VPC_SIZE_CURRENT = 2, /* force_size_calc=current_size */
};

/* reader - read [off, off + len) of the image file; 0 or a negative code. */
struct vpc_reader {
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    void *opaque;
};

struct vpc_image {
    uint8_t footer[VPC_FOOTER_SIZE]; /* as read (the checksum kept) */
    bool fixed;                      /* the footer was found only at the end */
    uint64_t total_sectors;          /* the virtual size in 512-byte sectors */
    /* dynamic images only: */
    uint32_t block_size;             /* a power of two >= 512 */
    uint32_t bitmap_size;            /* bytes of sector bitmap before each block */
    uint32_t max_table_entries;      /* BAT entries (validated as QEMU's int) */
    uint64_t bat_offset;             /* where the BAT is */
    uint64_t free_data_block_offset; /* where the next block goes */
    uint64_t file_length;            /* the file length, rounded up to 512 */
    uint32_t err_arg;                /* the argument of the last error */
};

/*
 * vpc_open_footer - the first half of vpc_open(): find and check the
 * footer, and compute the virtual size.  file_length is the file size in
 * bytes (rounded up to 512 here, as bdrv_getlength()).  Returns 0 or a
 * negated VPC_ERR_* (reader errors passed on).
 */
int vpc_open_footer(const struct vpc_reader *r, uint64_t file_length, enum vpc_size_calc calc,
                    struct vpc_image *img);

/*
 * vpc_open_dynamic - for an image that is not fixed: read and check the
 * dynamic disk header.  On success img->max_table_entries entries of BAT
 * must be provided to vpc_open_bat().  Returns 0 or a negated VPC_ERR_*.
 */
int vpc_open_dynamic(const struct vpc_reader *r, struct vpc_image *img);

/*
 * vpc_open_bat - read the BAT into bat (img->max_table_entries entries,
 * host order) through the scratch buffer buf (len >= 4, a multiple of 4),
 * and check that the blocks it names end inside the file.  Returns 0 or a
 * negated VPC_ERR_*.
 */
int vpc_open_bat(const struct vpc_reader *r, struct vpc_image *img, uint32_t *bat, uint8_t *buf,
                 size_t len);

/*
 * vpc_map - where guest offset off (< the virtual size) of a dynamic image
 * is: returns true with *host the file offset (the block's data, after
 * its bitmap) if its block is allocated; *run the bytes from off to the
 * end of the block.
 */
bool vpc_map(const struct vpc_image *img, const uint32_t *bat, uint64_t off, uint64_t *host,
             uint64_t *run);

/* vpc_checksum - the one's complement of the byte sum of buf. */
uint32_t vpc_checksum(const uint8_t *buf, size_t len);

/*
 * vpc_geometry - calculate_geometry() of the VHD specification (Appendix:
 * CHS calculation), with QEMU's extension to 255 sectors per track.
 */
void vpc_geometry(uint64_t total_sectors, uint16_t *cyls, uint8_t *heads, uint8_t *secs);

#endif /* VPC_VPC_H */
