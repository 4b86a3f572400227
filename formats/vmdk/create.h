/*
 * vmdk_co_do_create() and vmdk_init_extent() of qemu 7.2's block/vmdk.c
 * as numbers and bytes: a hosted sparse extent's header and grain
 * directories, and the descriptor text.  Pure code: no I/O, no
 * allocation; the caller writes what these fill, in qemu's order.
 */
#ifndef VMDK_CREATE_H
#define VMDK_CREATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* twoGbMaxExtent*: every extent but the last is this long. */
#define VMDK_SPLIT_SIZE 0x80000000ull
/* The magic and the packed VMDK4Header after it. */
#define VMDK_CREATE_HEADER_LEN 79

/*
 * A new sparse extent (vmdk_init_extent()): 128-sector grains, 512
 * entries a grain table, the descriptor at sector 1 (20 sectors), the
 * redundant directory at sector 21 with its tables after it, then the
 * directory and its tables, the first grain at the next 64 KiB.  Sector
 * numbers; qemu's 32-bit arithmetic kept (grains and the table count wrap
 * as its uint32_t do).
 */
struct vmdk_create_layout {
    uint64_t capacity; /* sectors */
    uint32_t grains, gt_size, gt_count, gd_sectors;
    uint64_t rgd_offset, gd_offset, grain_offset;
};

/* vmdk_create_layout - the layout of a sparse extent of filesize bytes. */
void vmdk_create_layout(uint64_t filesize, struct vmdk_create_layout *l);

/*
 * vmdk_create_header - the magic (bytes 0..3) and the header (4..78) of a
 * new sparse extent: version 3 compressed (streamOptimized, with markers),
 * 2 with zeroed grains, else 1.
 */
void vmdk_create_header(const struct vmdk_create_layout *l, bool compress, bool zeroed,
                        uint8_t out[VMDK_CREATE_HEADER_LEN]);

/*
 * vmdk_create_gd_entry - entry i of the redundant (redundant true) or
 * primary grain directory: the sector of grain table i.
 */
uint32_t vmdk_create_gd_entry(const struct vmdk_create_layout *l, bool redundant, uint32_t i);

/* What the descriptor says; strings NUL-terminated. */
struct vmdk_create_desc {
    uint32_t cid, parent_cid;
    const char *create_type; /* the subformat's name */
    const char *parent_hint; /* parentFileNameHint, or NULL */
    const char *hwversion, *toolsversion, *adapter;
    uint64_t size; /* bytes, a multiple of 512 */
    bool flat;     /* FLAT extent lines (with their offset 0), else SPARSE */
    bool split;    /* 2 GiB extents named stem-f001 / stem-s001 ..., else one */
    const char *stem, *suffix;
};

/*
 * vmdk_create_desc_text - the descriptor vmdk_co_do_create() prints into
 * buf (cap bytes): a monolithic sparse image's one extent is the image
 * itself (stem + suffix), monolithicFlat's stem-flat + suffix.  Returns
 * its length (a NUL follows it in buf), or -1 when it does not fit.
 */
long vmdk_create_desc_text(const struct vmdk_create_desc *d, char *buf, size_t cap);

/* vmdk_create_extents - how many extent files a create makes (0: the image is the extent). */
uint64_t vmdk_create_extents(uint64_t size, bool flat, bool split);

#endif /* VMDK_CREATE_H */
