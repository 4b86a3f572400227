/*
 * The Apple disk image (UDIF, ".dmg") as qemu 7.2's block/dmg.c reads
 * it: the 512-byte "koly" trailer near the end of the file (big-endian:
 * data fork offset at 0x18, resource fork offset and length at 0x28 and
 * 0x30, XML property list offset and length at 0xd8 and 0xe0, the sector
 * count at 0x1ec), and the "mish" block tables found either in the
 * resource fork or base64-encoded in the plist's <data> elements.  Each
 * mish block lists chunks (40 bytes each from byte 204): type, first
 * sector, sector count, offset and length in the data fork.
 *
 * QEMU's dmg-bz2 and dmg-lzfse modules are not in Debian's qemu-img 7.2:
 * their chunks are left out of the table (with a warning, once), as are
 * comments, the last-entry marker and unknown types, so reading their
 * sectors fails.
 *
 * Pure code: no I/O, no allocation.  The caller reads the file through
 * struct dmg_reader (bytes past the end read as zeros) and receives the
 * chunks through a callback.
 */
#ifndef DMG_DMG_H
#define DMG_DMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmg_err.h"

/* Chunk types (block/dmg.c's enum). */
#define DMG_UDZE 0x00000000u /* zeros */
#define DMG_UDRW 0x00000001u /* raw */
#define DMG_UDIG 0x00000002u /* ignore: zeros */
#define DMG_UDZO 0x80000005u /* zlib */
#define DMG_UDBZ 0x80000006u /* bzip2 */
#define DMG_ULFO 0x80000007u /* lzfse */
#define DMG_UDCM 0x7ffffffeu /* comment */
#define DMG_UDLE 0xffffffffu /* last entry */

#define DMG_LENGTHS_MAX      (64u * 1024 * 1024)
#define DMG_SECTORCOUNTS_MAX (DMG_LENGTHS_MAX / 512)
#define DMG_PLIST_MAX        (16u * 1024 * 1024)

/* Warnings dmg_read_mish_block() gives once each: bits of dmg_image.warn_seen. */
enum dmg_warn {
    DMG_WARN_BZ2 = 1,
    DMG_WARN_LZFSE = 2,
    DMG_WARN_UNKNOWN = 3,
};

/* reader - read [off, off + len) of the image file; 0 or a negative code. */
struct dmg_reader {
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    void *opaque;
};

struct dmg_chunk {
    uint32_t type;
    uint64_t sector;      /* first sector (mish base added, wrapping) */
    uint64_t sectorcount; /* at most DMG_SECTORCOUNTS_MAX unless zeros */
    uint64_t offset;      /* in the file (data fork and mish base added, wrapping) */
    uint64_t length;      /* at most DMG_LENGTHS_MAX */
};

/*
 * chunk_fn - called for each chunk kept, index counting from 0.  Returns
 * 0, or a negative code that ends the open with it.
 */
typedef int (*dmg_chunk_fn)(void *opaque, uint32_t index, const struct dmg_chunk *c);

struct dmg_image {
    uint64_t koly; /* the trailer's offset */
    uint64_t data_fork_offset;
    uint64_t rsrc_offset, rsrc_length;
    uint64_t plist_offset, plist_length;
    uint64_t total_sectors; /* below 2^63 */
    uint32_t n_chunks;
    uint32_t max_compressed; /* bytes, at least 1 */
    uint32_t max_sectors;    /* sectors per chunk, at least 1 */
    /* Warnings in the order first given: up to three enum dmg_warn, 2 bits each from bit 0. */
    uint32_t warn_order;
    uint32_t unknown_type; /* the first unknown chunk type met */
    uint64_t err_args[2];  /* the chunk limits' message: value, chunk index */
};

/*
 * dmg_open_trailer - dmg_open() up to the tables: find the trailer in
 * the last 515 bytes of the file (file_length rounded up to 512 as
 * bdrv_getlength()), and check the forks and the sector count.  Returns 0
 * or a negated DMG_ERR_*; then exactly one of rsrc_length and
 * plist_length says where the tables are (the resource fork if it has a
 * length).
 */
int dmg_open_trailer(const struct dmg_reader *r, uint64_t file_length, struct dmg_image *img);

/*
 * dmg_read_rsrc - dmg_read_resource_fork(): walk the resources of the
 * resource fork and read each mish block, the chunks passed to fn.
 * Returns 0 or a negated DMG_ERR_* (or fn's code).
 */
int dmg_read_rsrc(const struct dmg_reader *r, struct dmg_image *img, dmg_chunk_fn fn, void *opaque);

/*
 * dmg_read_plist - dmg_read_plist_xml() over the plist's bytes, read by
 * the caller into buf (img->plist_length bytes, at most DMG_PLIST_MAX,
 * then a NUL: len + 1 bytes in all); each <data> element is decoded in
 * place as g_base64_decode() does and read as a mish block.  Returns 0 or
 * a negated DMG_ERR_* (or fn's code).
 */
int dmg_read_plist(uint8_t *buf, size_t len, struct dmg_image *img, dmg_chunk_fn fn, void *opaque);

/*
 * dmg_search - where sector is, as dmg_read_chunk() finds it: current
 * (the chunk last read, n for none) if it holds the sector, else
 * search_chunk()'s binary search (over a table that may be unsorted).
 * Returns the chunk index, or n when none is found.
 */
uint32_t dmg_search(const struct dmg_chunk *c, uint32_t n, uint32_t current, uint64_t sector);

/* Base64 as glib's g_base64_decode_step() (in place: out may equal in).  Returns bytes out. */
size_t dmg_base64_decode(const char *in, size_t len, uint8_t *out);

#endif /* DMG_DMG_H */
