/*
 * L1 and L2 table entries (qcow2.txt, "Cluster mapping", "Extended L2
 * Entries"), decoded the way QEMU 7.2 classifies them.
 *
 * Decoding never fails: every 64-bit pattern maps to a type, and anything
 * the spec forbids or `qemu-img check` reports is flagged in `problems`
 * for the caller (a check planner, a reader) to act on.  Entries are read
 * from table bytes in big-endian order by the *_load helpers.
 */
#ifndef QCOW2_L2_H
#define QCOW2_L2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_OFLAG_COPIED     (UINT64_C(1) << 63)
#define QCOW2_OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define QCOW2_OFLAG_ZERO       (UINT64_C(1) << 0)

#define QCOW2_L1E_OFFSET_MASK       UINT64_C(0x00fffffffffffe00)
#define QCOW2_L1E_RESERVED_MASK     UINT64_C(0x7f000000000001ff)
#define QCOW2_L2E_OFFSET_MASK       UINT64_C(0x00fffffffffffe00)
#define QCOW2_L2E_STD_RESERVED_MASK UINT64_C(0x3f000000000001fe)

#define QCOW2_SUBCLUSTERS       32 /* per cluster, with extended L2 entries */
#define QCOW2_BITMAP_ALL_ALLOC  UINT64_C(0x00000000ffffffff)
#define QCOW2_BITMAP_ALL_ZEROES UINT64_C(0xffffffff00000000)

#define QCOW2_COMPRESSED_SECTOR_SIZE 512

/* What the caller knows about the image; cluster_bits already validated (9..21). */
struct qcow2_l2_geom {
    unsigned cluster_bits;
    bool extended_l2; /* incompatible feature bit 4: 16-byte entries */
    bool data_file;   /* external data file: offset 0 + COPIED is allocated */
};

/* --- L1 --- */

#define QCOW2_L1_BAD_RESERVED  (1u << 0) /* bits 0-8 or 56-62 set */
#define QCOW2_L1_BAD_UNALIGNED (1u << 1) /* L2 offset not cluster aligned */

struct qcow2_l1_entry {
    uint64_t raw;
    uint64_t l2_offset; /* 0: no L2 table */
    bool copied;        /* refcount exactly 1 (active L1 only) */
    unsigned problems;  /* QCOW2_L1_BAD_* */
};

/*
 * qcow2_l1_decode - split an L1 entry.  cluster_bits: validated 9..21.
 * Problems mirror `qemu-img check` ("ERROR found L1 entry with reserved
 * bits set", "Table is not cluster aligned; L1 entry corrupted").
 */
void qcow2_l1_decode(uint64_t raw, unsigned cluster_bits, struct qcow2_l1_entry *out);

/* qcow2_l1_load - the big-endian L1 entry index of table. */
uint64_t qcow2_l1_load(const uint8_t *table, uint64_t index);

/* --- L2 --- */

/*
 * Cluster types, as QEMU's qcow2_get_cluster_type().  With extended L2
 * entries the zero flag has no meaning, so only UNALLOCATED, NORMAL and
 * COMPRESSED occur; per-subcluster state is in the bitmap (see
 * qcow2_l2_subcluster_type()).
 */
enum qcow2_l2_type {
    QCOW2_L2_UNALLOCATED, /* read the backing file, or zeros */
    QCOW2_L2_ZERO_PLAIN,  /* reads as zeros, no host cluster */
    QCOW2_L2_ZERO_ALLOC,  /* reads as zeros, host cluster preallocated */
    QCOW2_L2_NORMAL,      /* data in the host cluster at host_offset */
    QCOW2_L2_COMPRESSED,  /* compressed data in [host_offset, +csize) */
};

/*
 * Problems `qemu-img check` reports for an L2 entry (check_refcounts_l2):
 *   BAD_RESERVED             not compressed, and bits 1-8 or 56-61 set
 *   BAD_UNALIGNED            NORMAL/ZERO_ALLOC offset not cluster aligned
 *   BAD_COMPRESSED_COPIED    COPIED set on a compressed entry
 *   BAD_COMPRESSED_DATA_FILE compressed entry in an image with a data file
 *   BAD_COMPRESSED_BITMAP    extended: compressed entry with a non-zero bitmap
 *   BAD_BITMAP_CONFLICT      extended, allocated: a subcluster is marked both
 *                            allocated and zero
 *   BAD_UNALLOC_BITMAP       extended, unallocated: allocation bits set
 * And two the spec forbids but QEMU 7.2 neither checks nor acts on (flagged
 * for completeness, not for parity):
 *   SPEC_COMPRESSED_HIGH     compressed host offset has bits above 55 set
 *                            (possible only with cluster_bits < 14)
 *   SPEC_EXTENDED_ZERO       extended: bit 0 (no meaning there) set
 */
#define QCOW2_L2_BAD_RESERVED             (1u << 0)
#define QCOW2_L2_BAD_UNALIGNED            (1u << 1)
#define QCOW2_L2_BAD_COMPRESSED_COPIED    (1u << 2)
#define QCOW2_L2_BAD_COMPRESSED_DATA_FILE (1u << 3)
#define QCOW2_L2_BAD_COMPRESSED_BITMAP    (1u << 4)
#define QCOW2_L2_BAD_BITMAP_CONFLICT      (1u << 5)
#define QCOW2_L2_BAD_UNALLOC_BITMAP       (1u << 6)
#define QCOW2_L2_SPEC_COMPRESSED_HIGH     (1u << 7)
#define QCOW2_L2_SPEC_EXTENDED_ZERO       (1u << 8)

/* Mask of the problems `qemu-img check` counts as corruptions. */
#define QCOW2_L2_BAD_QEMU_MASK 0x7fu

struct qcow2_l2_entry {
    uint64_t raw;    /* first 64 bits */
    uint64_t bitmap; /* extended L2: the subcluster bitmap; else 0 */
    enum qcow2_l2_type type;
    bool copied; /* bit 63 */
    /*
     * NORMAL, ZERO_ALLOC: host cluster offset (bits 9-55; may be unaligned,
     * see problems).  COMPRESSED: byte offset of the compressed data.
     * Otherwise 0.
     */
    uint64_t host_offset;
    /* COMPRESSED only: 512-byte sectors the data spans, counted from the
     * one holding host_offset, and csize, the bytes QEMU reads and
     * refcounts: [host_offset, host_offset + csize). */
    uint32_t nb_csectors;
    uint32_t csize;
    unsigned problems; /* QCOW2_L2_BAD_* | QCOW2_L2_SPEC_* */
};

/*
 * qcow2_l2_decode - classify one L2 entry.
 * raw: the entry's first (or only) 64 bits; bitmap: the second 64 bits of
 * an extended entry, ignored (treated as 0) otherwise.  geom: validated.
 */
void qcow2_l2_decode(uint64_t raw, uint64_t bitmap, const struct qcow2_l2_geom *geom,
                     struct qcow2_l2_entry *out);

/*
 * qcow2_l2_load - read L2 entry index of table (big-endian): 8-byte
 * entries, or 16-byte entries (entry, bitmap) when extended.  *bitmap is
 * set to 0 for standard entries.  The caller bounds index by the table size
 * (cluster_size / 8 or / 16 entries).
 */
void qcow2_l2_load(const uint8_t *table, uint64_t index, bool extended, uint64_t *raw,
                   uint64_t *bitmap);

/*
 * Subcluster types, as QEMU's qcow2_get_subcluster_type().  Without
 * extended L2 entries there is one subcluster per cluster (index 0).
 */
enum qcow2_subcluster_type {
    QCOW2_SC_UNALLOCATED_PLAIN,
    QCOW2_SC_UNALLOCATED_ALLOC, /* host cluster allocated, this subcluster not */
    QCOW2_SC_ZERO_PLAIN,
    QCOW2_SC_ZERO_ALLOC,
    QCOW2_SC_NORMAL,
    QCOW2_SC_COMPRESSED,
    QCOW2_SC_INVALID, /* the bitmap contradicts the entry (whole entry, not just sc) */
};

/*
 * qcow2_l2_subcluster_type - the state of subcluster sc (0..31 when
 * extended, else 0) of a decoded entry; e was decoded with geom.
 */
enum qcow2_subcluster_type qcow2_l2_subcluster_type(const struct qcow2_l2_entry *e,
                                                    const struct qcow2_l2_geom *geom, unsigned sc);

/*
 * qcow2_l2_holds_data - for an allocated (NORMAL/ZERO_ALLOC) entry, whether
 * any of it reads from the host cluster: check uses it to word its message
 * about an unaligned offset ("Data cluster" vs "Preallocated cluster").
 */
bool qcow2_l2_holds_data(const struct qcow2_l2_entry *e, const struct qcow2_l2_geom *geom);

#endif /* QCOW2_L2_H */
