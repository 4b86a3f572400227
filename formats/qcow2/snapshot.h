/*
 * qcow2 internal snapshot table (docs/interop/qcow2.txt, "Snapshots"),
 * read with the checks of qemu-img 7.2's qcow2_read_snapshots().
 *
 * Pure code: the caller supplies the reads through struct qcow2_reader,
 * whose pread must zero-fill past the end of the image as QEMU does.
 */
#ifndef QCOW2_SNAPSHOT_H
#define QCOW2_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "header.h"

/*
 * Reads for table walkers: pread fills len bytes at off (zeros past the
 * end of the image) and returns 0, or a negated error code that the walker
 * passes back unchanged (an I/O failure of the host).
 */
struct qcow2_reader {
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    void *opaque;
};

#define QCOW2_SNAPSHOT_MAX_EXTRA 1024
#define QCOW2_SNAPSHOT_MAX_TABLE (1024ull * QCOW2_MAX_SNAPSHOTS)

/* One table entry as QEMU keeps it; id and name point into scratch. */
struct qcow2_snapshot {
    uint64_t l1_table_offset;
    uint32_t l1_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint32_t extra_data_size;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size; /* 64-bit extra field when present */
    uint64_t disk_size;     /* the image's size when absent */
    uint64_t icount;        /* UINT64_MAX when absent */
    /* Where the walk found it: the unknown extra data (extra_data_size > 24), the entry's end. */
    uint64_t unknown_offset;
    uint64_t end_offset;
    /* C strings as QEMU prints them: up to the first NUL */
    const uint8_t *id;
    size_t id_len;
    const uint8_t *name;
    size_t name_len;
};

/* Bytes of scratch qcow2_snapshots_parse needs: two 16-bit-sized strings. */
#define QCOW2_SNAPSHOT_SCRATCH (2u * 65536u)

/*
 * Called once per entry, in table order.  Returns 0 to go on or a negated
 * code to stop the walk with (e.g. out of memory).  sn is valid only
 * during the call.
 */
typedef int (*qcow2_snapshot_fn)(void *opaque, uint32_t index, const struct qcow2_snapshot *sn);

/*
 * qcow2_snapshots_parse - walk h->nb_snapshots entries from
 * h->snapshots_offset (h as accepted by qcow2_header_parse).
 *
 * rd: reads.  scratch: QCOW2_SNAPSHOT_SCRATCH bytes for id and name.
 * visit/opaque: called per entry (may be NULL).  The walk stops at the
 * first failure; entries already visited must then be discarded, since
 * QEMU fails the whole open.
 * Work is bounded: at most 65536 entries, and the table may not pass
 * 64 MiB (QCOW2_SNAPSHOT_MAX_TABLE).
 * Returns 0 or a negated code (QCOW2_ERR_SNAP_*, or from rd or visit).
 */
int qcow2_snapshots_parse(const struct qcow2_header *h, const struct qcow2_reader *rd,
                          uint8_t *scratch, qcow2_snapshot_fn visit, void *opaque,
                          struct qcow2_err_info *ei);

/* Bytes of the known extra data qemu 7.2 writes (vm_state_size_large, disk_size, icount). */
#define QCOW2_SNAPSHOT_KNOWN_EXTRA 24

/*
 * qcow2_snapshot_entry_len - bytes the entry sn takes in a snapshot table
 * written the way qemu 7.2's qcow2_write_snapshots() writes it: the
 * 40-byte header, max(24, sn->extra_data_size) bytes of extra data,
 * sn->id_len and sn->name_len bytes of strings (no alignment padding;
 * entries start 8-byte aligned).  sn->extra_data_size must be at most
 * QCOW2_SNAPSHOT_MAX_EXTRA and the string lengths at most 65535 (what a
 * table read by qcow2_snapshots_parse or the check can hold).
 */
uint64_t qcow2_snapshot_entry_len(const struct qcow2_snapshot *sn);

/*
 * qcow2_snapshot_write_entry - serialize sn into buf (at least
 * qcow2_snapshot_entry_len(sn) bytes), as qcow2_write_snapshots() does:
 * the 32-bit vm_state_size only when it fits (else 0), the known extra
 * data always (vm_state_size, disk_size, icount), then the
 * sn->extra_data_size - 24 bytes of unknown extra data from unknown (may
 * be NULL when there are none), the id and the name.  Pure; nothing is
 * retained.  Returns the number of bytes written.
 */
size_t qcow2_snapshot_write_entry(const struct qcow2_snapshot *sn, const uint8_t *unknown,
                                  uint8_t *buf);

#endif /* QCOW2_SNAPSHOT_H */
