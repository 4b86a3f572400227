/*
 * The VDI format (VirtualBox) as qemu 7.2's block/vdi.c reads and writes
 * it: a 512-byte header (version 1.1, little endian), a block map of
 * 32-bit entries (a block's index in the data area, or 0xffffffff
 * unallocated, 0xfffffffe discarded: both read as zeros), and the data
 * area of 1 MiB blocks at offset_data.
 *
 * Pure code: no I/O, no allocation.  The caller reads the header and
 * the block map and owns the map's memory.
 */
#ifndef VDI_VDI_H
#define VDI_VDI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vdi_err.h"

#define VDI_HEADER_SIZE  512
#define VDI_SIGNATURE    0xbeda107fu
#define VDI_VERSION_1_1  0x00010001u
#define VDI_TYPE_DYNAMIC 1
#define VDI_TYPE_STATIC  2
#define VDI_BLOCK_SIZE   1048576u /* qemu's DEFAULT_CLUSTER_SIZE, the only one it opens */
#define VDI_UNALLOCATED  0xffffffffu
#define VDI_DISCARDED    0xfffffffeu
/* The block map must fit in INT_MAX bytes rounded to sectors. */
#define VDI_BLOCKS_MAX    ((0x80000000u - 512u) / 4u)
#define VDI_DISK_SIZE_MAX ((uint64_t)VDI_BLOCKS_MAX * VDI_BLOCK_SIZE)

/* Field offsets in the header. */
#define VDI_OFF_SIGNATURE        64
#define VDI_OFF_VERSION          68
#define VDI_OFF_HEADER_SIZE      72
#define VDI_OFF_IMAGE_TYPE       76
#define VDI_OFF_OFFSET_BMAP      340
#define VDI_OFF_OFFSET_DATA      344
#define VDI_OFF_SECTOR_SIZE      360
#define VDI_OFF_DISK_SIZE        368
#define VDI_OFF_BLOCK_SIZE       376
#define VDI_OFF_BLOCKS_IN_IMAGE  384
#define VDI_OFF_BLOCKS_ALLOCATED 388
#define VDI_OFF_UUID_IMAGE       392
#define VDI_OFF_UUID_LAST_SNAP   408
#define VDI_OFF_UUID_LINK        424
#define VDI_OFF_UUID_PARENT      440

static inline bool vdi_is_allocated(uint32_t entry)
{
    return entry < VDI_DISCARDED;
}

struct vdi_image {
    /* The header as qemu keeps it: as read, disk_size rounded up to 512. */
    uint8_t header[VDI_HEADER_SIZE];
    uint32_t image_type;
    uint32_t offset_bmap;
    uint32_t offset_data;
    uint32_t blocks_in_image;
    uint32_t blocks_allocated;
    uint64_t disk_size; /* rounded up to 512: the virtual size */
    /*
     * The block map entries held in memory: whole sectors from offset_bmap
     * up to the end of the file (the rest of the map lies past it and
     * reads as zeros, entry 0).  At most bmap_sectors * 128.
     */
    uint64_t bmap_sectors; /* sectors of block map qemu reads */
    uint32_t bmap_held;    /* entries held (a multiple of 128) */
    uint64_t err_args[2];  /* the arguments of the last error */
};

/*
 * vdi_open_header - vdi_open()'s checks of header h (512 bytes, as read
 * with zeros past the end of the file), in qemu's order, and the block
 * map extent.  file_length is the file size in bytes.  Returns 0 or a
 * negated VDI_ERR_* with its arguments in img->err_args.
 */
int vdi_open_header(const uint8_t h[VDI_HEADER_SIZE], uint64_t file_length, struct vdi_image *img);

/* vdi_bmap_load - host-order entries from n little-endian ones (in place). */
void vdi_bmap_load(uint32_t *bmap, uint32_t n);

/* vdi_entry - block map entry index (< blocks_in_image) of bmap (bmap_held entries). */
static inline uint32_t vdi_entry(const struct vdi_image *img, const uint32_t *bmap, uint32_t index)
{
    return index < img->bmap_held ? bmap[index] : 0;
}

/*
 * vdi_map - where guest offset off (< disk_size) is: true with *host the
 * file offset if its block is allocated; *run the bytes from off to the
 * end of its block.
 */
bool vdi_map(const struct vdi_image *img, const uint32_t *bmap, uint64_t off, uint64_t *host,
             uint64_t *run);

/*
 * vdi_check - vdi_co_check(): report(opaque, code, a0, a1) for each
 * problem line (VDI_MSG_*), in qemu's order.  used is scratch of
 * (blocks_in_image + 63) / 64 words.  Returns the number of corruptions.
 */
uint64_t vdi_check(const struct vdi_image *img, const uint32_t *bmap, uint64_t *used,
                   void (*report)(void *opaque, int32_t code, uint64_t a0, uint64_t a1),
                   void *opaque);

/*
 * vdi_header_store - img's header as qemu writes it back after an
 * allocation (vdi_header_to_le of its copy): blocks_allocated updated,
 * disk_size rounded.
 */
void vdi_header_store(const struct vdi_image *img, uint8_t out[VDI_HEADER_SIZE]);

/*
 * vdi_create_header - vdi_co_do_create()'s header for size bytes (a
 * multiple of 512, <= VDI_DISK_SIZE_MAX), static or dynamic, with the
 * two UUIDs (16 bytes each, in RFC 4122 byte order).
 */
void vdi_create_header(uint64_t size, bool is_static, const uint8_t uuid_image[16],
                       const uint8_t uuid_last_snap[16], uint8_t out[VDI_HEADER_SIZE]);

/* vdi_create_blocks - the blocks of an image of size bytes (rounded up). */
static inline uint32_t vdi_create_blocks(uint64_t size)
{
    return (uint32_t)((size + VDI_BLOCK_SIZE - 1) / VDI_BLOCK_SIZE);
}

#endif /* VDI_VDI_H */
