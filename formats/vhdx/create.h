/*
 * VHDX creation as qemu 7.2's vhdx_co_create() lays an image out: the file
 * identifier with qemu's creator string, two headers (sequence numbers n
 * and n + 1, the log after the 1 MiB header section), the region table
 * (BAT, then metadata, each rounded up to 1 MiB), the BAT (written only
 * when its entries are not all zero) and the five metadata items.  Pure
 * code: the caller writes the buffers, in qemu's order.
 */
#ifndef VHDX_CREATE_H
#define VHDX_CREATE_H

#include <stdbool.h>
#include <stdint.h>

#define VHDX_CREATE_MAX_SIZE (64ull << 40) /* "Image size too large; max of 64TB" */
/* The creator field: "QEMU v" QEMU_VERSION of the qemu-img instar follows. */
#define VHDX_CREATOR "QEMU v7.2.22"

struct vhdx_create {
    uint64_t size;        /* the virtual size, a multiple of 512 */
    uint32_t log_size;    /* a multiple of 1 MiB */
    uint32_t block_size;  /* a power of two, 1 MiB .. 256 MiB */
    bool fixed;           /* subformat=fixed */
    bool zero_blocks;     /* block_state_zero */
    uint32_t bat_entries; /* vhdx_calc_bat_entries() */
    uint32_t chunk_ratio_bits;
    uint64_t bat_offset, meta_offset, data_offset;
    uint32_t bat_length;
};

/*
 * vhdx_create_layout - c->size, log_size, block_size, fixed and
 * zero_blocks set: compute the rest.  block_size 0 means qemu's automatic
 * choice by size.  Returns 0, or -1 when the values are not ones
 * vhdx_co_create() accepts.
 */
int vhdx_create_layout(struct vhdx_create *c);

/*
 * vhdx_create_header - the 4 KiB header (only its first 80 bytes are
 * written) with sequence number seq and the two GUIDs, checksummed.
 */
void vhdx_create_header(const struct vhdx_create *c, uint64_t seq, const uint8_t file_guid[16],
                        const uint8_t data_guid[16], uint8_t buf[4096]);

/* vhdx_create_region - the 64 KiB region table. */
void vhdx_create_region(const struct vhdx_create *c, uint8_t buf[65536]);

/*
 * vhdx_create_metadata - the 64 KiB metadata table in table, and the 40
 * bytes of items (written at 64 KiB into the region) in items.
 */
void vhdx_create_metadata(const struct vhdx_create *c, const uint8_t page83[16],
                          uint8_t table[65536], uint8_t items[40]);

/* vhdx_create_bat_written - whether qemu writes the BAT (else it is zeros). */
bool vhdx_create_bat_written(const struct vhdx_create *c);

/* vhdx_create_bat_entry - BAT entry i (host order) of the created image. */
uint64_t vhdx_create_bat_entry(const struct vhdx_create *c, uint64_t i);

#endif /* VHDX_CREATE_H */
