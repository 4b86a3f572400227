/*
 * The cloop (compressed loop) image as qemu 7.2's block/cloop.c reads it:
 * a 128-byte shell script preamble, the block size and the block count
 * (big-endian 32-bit, at 128 and 132), then n_blocks + 1 big-endian
 * 64-bit file offsets (at 136): block i is the zlib stream between
 * offsets i and i + 1, and decodes to exactly block_size bytes.
 *
 * Pure code: no I/O, no allocation.  The caller reads the file through
 * struct cloop_reader (bytes past the end of the file read as zeros, as
 * QEMU's file driver returns them).  The offsets table (up to 512 MiB in
 * QEMU's memory) is checked as a stream at open and read again entry by
 * entry when a block is wanted, so the caller needs no memory for it.
 */
#ifndef CLOOP_CLOOP_H
#define CLOOP_CLOOP_H

#include <stddef.h>
#include <stdint.h>

#include "cloop_err.h"

#define CLOOP_MAX_BLOCK_SIZE  (64u * 1024 * 1024)
#define CLOOP_OFFSETS_AT      136u
#define CLOOP_MAX_OFFSETS_LEN (512u * 1024 * 1024)

/* reader - read [off, off + len) of the image file; 0 or a negative code. */
struct cloop_reader {
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    void *opaque;
};

struct cloop_image {
    uint32_t block_size;     /* a multiple of 512 in 512..64 MiB */
    uint32_t n_blocks;       /* entries of the offsets table, less one */
    uint64_t total_sectors;  /* n_blocks * sectors per block, as QEMU's uint32_t product */
    uint32_t max_compressed; /* the largest block's compressed size (at least 1) */
    uint32_t err_arg;        /* the argument of the last error */
};

/*
 * cloop_open - cloop_open()'s checks in QEMU's order: the block size, the
 * block count, the size of the offsets table, then every offset (not
 * decreasing, no block over 128 MiB).  buf (len >= 8, a multiple of 8) is
 * scratch for reading the table.  Returns 0 or a negated CLOOP_ERR_*
 * (reader errors passed on).
 */
int cloop_open(const struct cloop_reader *r, struct cloop_image *img, uint8_t *buf, size_t len);

/*
 * cloop_block - where block i (< n_blocks) of an opened image is: its
 * offsets read again (and checked again: a file that changed since the
 * open fails the read).  *off and *len: the compressed stream.  Returns 0,
 * -1 for a table that no longer holds, or a reader error.
 */
int cloop_block(const struct cloop_reader *r, const struct cloop_image *img, uint32_t i,
                uint64_t *off, uint32_t *len);

#endif /* CLOOP_CLOOP_H */
