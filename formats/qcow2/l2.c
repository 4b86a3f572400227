/*
 * L1/L2 entry decoding (qcow2.txt, "Cluster mapping" and "Extended L2
 * Entries"), classified as QEMU 7.2's qcow2_get_cluster_type() and
 * qcow2_get_subcluster_type() do, with the checks of check_refcounts_l1/l2
 * (block/qcow2-refcount.c) reported as problem flags.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "be.h"
#include "l2.h"

uint64_t qcow2_l1_load(const uint8_t *table, uint64_t index)
{
    return be_ld64(table + index * 8);
}

void qcow2_l2_load(const uint8_t *table, uint64_t index, bool extended, uint64_t *raw,
                   uint64_t *bitmap)
{
    if (extended) {
        *raw = be_ld64(table + index * 16);
        *bitmap = be_ld64(table + index * 16 + 8);
    } else {
        *raw = be_ld64(table + index * 8);
        *bitmap = 0;
    }
}

void qcow2_l1_decode(uint64_t raw, unsigned cluster_bits, struct qcow2_l1_entry *out)
{
    uint64_t cluster_mask = (UINT64_C(1) << cluster_bits) - 1;

    out->raw = raw;
    out->l2_offset = raw & QCOW2_L1E_OFFSET_MASK;
    out->copied = (raw & QCOW2_OFLAG_COPIED) != 0;
    out->problems = 0;
    if (raw & QCOW2_L1E_RESERVED_MASK) {
        out->problems |= QCOW2_L1_BAD_RESERVED;
    }
    if (out->l2_offset & cluster_mask) {
        out->problems |= QCOW2_L1_BAD_UNALIGNED;
    }
}

/*
 * Compressed Clusters Descriptor, x = 62 - (cluster_bits - 8): bits 0..x-1
 * are the byte offset of the data, bits x..61 the number of 512-byte
 * sectors it spans beyond the first.  QEMU refcounts (and reads) from the
 * offset to the end of the last sector.
 */
static void decode_compressed(uint64_t raw, unsigned cluster_bits, struct qcow2_l2_entry *out)
{
    unsigned shift = 62 - (cluster_bits - 8);
    uint64_t size_mask = (UINT64_C(1) << (cluster_bits - 8)) - 1;
    uint64_t offset = raw & ((UINT64_C(1) << shift) - 1);
    uint64_t sectors = ((raw >> shift) & size_mask) + 1;

    out->host_offset = offset;
    /* At most 2^13 sectors (cluster_bits <= 21): the sizes fit 32 bits. */
    out->nb_csectors = (uint32_t)sectors;
    out->csize = (uint32_t)(sectors * QCOW2_COMPRESSED_SECTOR_SIZE -
                            (offset & (QCOW2_COMPRESSED_SECTOR_SIZE - 1)));
    if (offset >> 56) {
        out->problems |= QCOW2_L2_SPEC_COMPRESSED_HIGH;
    }
}

void qcow2_l2_decode(uint64_t raw, uint64_t bitmap, const struct qcow2_l2_geom *geom,
                     struct qcow2_l2_entry *out)
{
    uint64_t offset = raw & QCOW2_L2E_OFFSET_MASK;
    uint64_t cluster_mask = (UINT64_C(1) << geom->cluster_bits) - 1;

    if (!geom->extended_l2) {
        bitmap = 0;
    }
    out->raw = raw;
    out->bitmap = bitmap;
    out->copied = (raw & QCOW2_OFLAG_COPIED) != 0;
    out->host_offset = 0;
    out->nb_csectors = 0;
    out->csize = 0;
    out->problems = 0;

    /* Same precedence as qcow2_get_cluster_type(). */
    if (raw & QCOW2_OFLAG_COMPRESSED) {
        out->type = QCOW2_L2_COMPRESSED;
    } else if ((raw & QCOW2_OFLAG_ZERO) && !geom->extended_l2) {
        out->type = offset ? QCOW2_L2_ZERO_ALLOC : QCOW2_L2_ZERO_PLAIN;
    } else if (!offset) {
        /* Offset 0 is a real host offset only in an external data file,
         * where every allocated cluster carries COPIED. */
        out->type = geom->data_file && out->copied ? QCOW2_L2_NORMAL : QCOW2_L2_UNALLOCATED;
    } else {
        out->type = QCOW2_L2_NORMAL;
    }

    if (out->type != QCOW2_L2_COMPRESSED && (raw & QCOW2_L2E_STD_RESERVED_MASK)) {
        out->problems |= QCOW2_L2_BAD_RESERVED;
    }
    if (geom->extended_l2 && out->type != QCOW2_L2_COMPRESSED && (raw & QCOW2_OFLAG_ZERO)) {
        out->problems |= QCOW2_L2_SPEC_EXTENDED_ZERO;
    }

    switch (out->type) {
    case QCOW2_L2_COMPRESSED:
        decode_compressed(raw, geom->cluster_bits, out);
        if (out->copied) {
            out->problems |= QCOW2_L2_BAD_COMPRESSED_COPIED;
        }
        if (geom->data_file) {
            out->problems |= QCOW2_L2_BAD_COMPRESSED_DATA_FILE;
        }
        if (bitmap) {
            out->problems |= QCOW2_L2_BAD_COMPRESSED_BITMAP;
        }
        break;
    case QCOW2_L2_ZERO_ALLOC:
    case QCOW2_L2_NORMAL:
        out->host_offset = offset;
        if ((bitmap >> 32) & bitmap) {
            out->problems |= QCOW2_L2_BAD_BITMAP_CONFLICT;
        }
        if (offset & cluster_mask) {
            out->problems |= QCOW2_L2_BAD_UNALIGNED;
        }
        break;
    case QCOW2_L2_UNALLOCATED:
        if (bitmap & QCOW2_BITMAP_ALL_ALLOC) {
            out->problems |= QCOW2_L2_BAD_UNALLOC_BITMAP;
        }
        break;
    case QCOW2_L2_ZERO_PLAIN:
        break;
    }
}

enum qcow2_subcluster_type qcow2_l2_subcluster_type(const struct qcow2_l2_entry *e,
                                                    const struct qcow2_l2_geom *geom, unsigned sc)
{
    uint64_t alloc_bit, zero_bit;

    if (!geom->extended_l2) {
        switch (e->type) {
        case QCOW2_L2_COMPRESSED:
            return QCOW2_SC_COMPRESSED;
        case QCOW2_L2_ZERO_PLAIN:
            return QCOW2_SC_ZERO_PLAIN;
        case QCOW2_L2_ZERO_ALLOC:
            return QCOW2_SC_ZERO_ALLOC;
        case QCOW2_L2_NORMAL:
            return QCOW2_SC_NORMAL;
        case QCOW2_L2_UNALLOCATED:
            break;
        }
        return QCOW2_SC_UNALLOCATED_PLAIN;
    }

    alloc_bit = UINT64_C(1) << (sc % QCOW2_SUBCLUSTERS);
    zero_bit = alloc_bit << 32;
    switch (e->type) {
    case QCOW2_L2_COMPRESSED:
        return QCOW2_SC_COMPRESSED;
    case QCOW2_L2_NORMAL:
        if ((e->bitmap >> 32) & e->bitmap) {
            return QCOW2_SC_INVALID;
        }
        if (e->bitmap & zero_bit) {
            return QCOW2_SC_ZERO_ALLOC;
        }
        return (e->bitmap & alloc_bit) ? QCOW2_SC_NORMAL : QCOW2_SC_UNALLOCATED_ALLOC;
    case QCOW2_L2_UNALLOCATED:
        if (e->bitmap & QCOW2_BITMAP_ALL_ALLOC) {
            return QCOW2_SC_INVALID;
        }
        return (e->bitmap & zero_bit) ? QCOW2_SC_ZERO_PLAIN : QCOW2_SC_UNALLOCATED_PLAIN;
    case QCOW2_L2_ZERO_PLAIN:
    case QCOW2_L2_ZERO_ALLOC:
        /* Not produced by qcow2_l2_decode() for extended entries. */
        break;
    }
    return QCOW2_SC_INVALID;
}

bool qcow2_l2_holds_data(const struct qcow2_l2_entry *e, const struct qcow2_l2_geom *geom)
{
    if (geom->extended_l2) {
        return (e->bitmap & QCOW2_BITMAP_ALL_ALLOC) != 0;
    }
    return !(e->raw & QCOW2_OFLAG_ZERO);
}
