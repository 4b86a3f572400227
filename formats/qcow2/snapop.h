/*
 * qcow2 internal snapshots: create, delete and apply, after QEMU 7.2's
 * qcow2_snapshot_create / qcow2_snapshot_delete / qcow2_snapshot_goto and
 * qcow2_write_snapshots (block/qcow2-snapshot.c) and
 * qcow2_update_snapshot_refcount (block/qcow2-refcount.c), in their write
 * order, so that a crash at any write leaves an image that
 * "qemu-img check -r all" repairs without losing the active layer's data.
 *
 * Pure code: the caller supplies I/O and memory (struct qcow2_snapop_io).
 * Clusters come from the shared allocator (alloc.h); its cached refcount
 * blocks are written before every other metadata write, so raised
 * refcounts reach the file before anything refers to their clusters.
 */
#ifndef QCOW2_SNAPOP_H
#define QCOW2_SNAPOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot.h"

/* Linux errno values, negated on return. */
#define QCOW2_SNAPOP_ENOENT  2
#define QCOW2_SNAPOP_EIO     5
#define QCOW2_SNAPOP_EBUSY   16
#define QCOW2_SNAPOP_ENOMEM  12
#define QCOW2_SNAPOP_EINVAL  22
#define QCOW2_SNAPOP_EFBIG   27
#define QCOW2_SNAPOP_ENOTSUP 95

/*
 * Where an operation failed, for the message qemu-img prints after
 * "Could not delete snapshot 'NAME': " (error_setg_errno texts) or before
 * "Could not apply snapshot" (error_report_err of the table check).
 */
enum qcow2_snapop_stage {
    QCOW2_SNAPOP_STAGE_NONE = 0,
    QCOW2_SNAPOP_STAGE_L1_TOO_LARGE = 1, /* "Snapshot L1 table too large" */
    QCOW2_SNAPOP_STAGE_L1_OFFSET = 2,    /* "Snapshot L1 table offset invalid" */
    QCOW2_SNAPOP_STAGE_REMOVE = 3,       /* "Failed to remove snapshot from snapshot list" */
    QCOW2_SNAPOP_STAGE_FREE = 4,         /* "Failed to free the cluster and L1 table" */
    QCOW2_SNAPOP_STAGE_UPDATE = 5,       /* "Failed to update snapshot status in disk" */
    QCOW2_SNAPOP_STAGE_SIZE_ALIGN = 6,   /* apply: "The new size must be a multiple of 512" */
    QCOW2_SNAPOP_STAGE_RESIZE = 7,       /* apply: the truncation to the snapshot's size */
    QCOW2_SNAPOP_STAGE_BITMAPS = 8,      /* apply: "Device has active dirty bitmaps" (EBUSY) */
};

/*
 * What the planner refuses before any write, each with its message
 * (QCOW2_RESIZE_MSG_* kinds of resize.h: 0 plain, 2 "Could not open
 * '<file>': <text>").  Codes 3200..3299.
 */
#define QCOW2_SNAPOP_ERRORS(X)                                                                     \
    X(QCOW2_SNAPOP_ERR_CORRUPT_RW, 3200, 2, "qcow2: Image is corrupt; cannot be opened read/write")

enum qcow2_snapop_err {
#define QCOW2_SNAPOP_ENUM(name, code, kind, msg) name = code,
    QCOW2_SNAPOP_ERRORS(QCOW2_SNAPOP_ENUM)
#undef QCOW2_SNAPOP_ENUM
};

struct qcow2_snapop_io {
    void *opaque;
    /* pread - len bytes at off (zeros past the end).  0 or -errno. */
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    /* pwrite - len bytes at off (may extend the file).  0 or -errno. */
    int (*pwrite)(void *opaque, uint64_t off, const void *buf, size_t len);
    /* flush - make the writes so far durable.  0 or -errno. */
    int (*flush)(void *opaque);
    /* mem - realloc() as struct qcow2_alloc_ops.mem. */
    void *(*mem)(void *opaque, void *p, size_t size);
    /* discard - freed clusters [off, off + len), punched as qemu's file driver does. */
    void (*discard)(void *opaque, uint64_t off, uint64_t len);
};

/* One table entry as QEMU keeps it in memory. */
struct qcow2_snapop_entry {
    struct qcow2_snapshot sn; /* id/name/lengths cut at the first NUL */
    const uint8_t *unknown;   /* sn.extra_data_size - 24 bytes when more than 24, else NULL */
};

/* The open image: header facts (validated by the open) and its snapshot table. */
struct qcow2_snapop_image {
    unsigned cluster_bits;
    unsigned refcount_order;
    bool extended_l2;
    uint64_t disk_size; /* the header's size */
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint64_t snapshots_offset;
    uint64_t snapshots_size; /* bytes the table took at open (0 without snapshots) */
    uint32_t nb_snapshots;
    struct qcow2_snapop_entry *snapshots; /* nb_snapshots entries */
    /*
     * OUT (NULL: not wanted): where the operation's cluster allocator
     * stopped (its free_cluster_index), for a caller that allocates next
     * as qemu's same allocator would (the bitmaps stored at close).
     */
    uint64_t *free_cluster_index;
};

/*
 * qcow2_snapop_apply_check - what qcow2_snapshot_goto() checks before its
 * first write, for a caller that truncates the image to the snapshot's
 * size before qcow2_snapop_apply(): the snapshot's L1 table (its size and
 * offset).  l1_after (the active table's length after that truncation) is
 * no longer checked: qcow2_snapop_apply() grows the active table to a
 * longer snapshot table, as qcow2_grow_l1_table() does.  Returns 0 or a
 * negated errno with *stage set.
 */
int qcow2_snapop_apply_check(const struct qcow2_snapop_image *img, uint32_t index,
                             uint32_t l1_after, int *stage);

/*
 * qcow2_snapop_create - qcow2_snapshot_create() for qemu-img snapshot -c:
 * a new entry named name (name_len bytes, no NUL) with the next free
 * numeric id, the given date, VM clock 0, VM state 0, icount 0.
 * Returns 0 or a negated errno.
 */
int qcow2_snapop_create(const struct qcow2_snapop_image *img, const struct qcow2_snapop_io *io,
                        const uint8_t *name, size_t name_len, uint32_t date_sec,
                        uint32_t date_nsec);

/*
 * qcow2_snapop_delete - qcow2_snapshot_delete() of entry index (the
 * caller found it as bdrv_snapshot_find does).  *stage says where a
 * failure happened.  Returns 0 or a negated errno.
 */
int qcow2_snapop_delete(const struct qcow2_snapop_image *img, const struct qcow2_snapop_io *io,
                        uint32_t index, int *stage);

/*
 * qcow2_snapop_apply - qcow2_snapshot_goto() of entry index.  *stage says
 * where a failure happened.  Returns 0 or a negated errno.
 */
int qcow2_snapop_apply(const struct qcow2_snapop_image *img, const struct qcow2_snapop_io *io,
                       uint32_t index, int *stage);

/*
 * qcow2_snapop_rewrite - qcow2_write_snapshots() of the table as it is
 * (qcow2_upgrade(): entries without the version 3 extra data get it):
 * new clusters, the header's snapshot fields, the old table freed.
 * Returns 0 or a negated errno.
 */
int qcow2_snapop_rewrite(const struct qcow2_snapop_image *img, const struct qcow2_snapop_io *io);

/*
 * qcow2_snapop_find - the entry index whose name equals name
 * (bdrv_snapshot_find: the first), or with by_id first the first whose id
 * equals it (find_snapshot_by_id_or_name).  -1 when none.
 */
int64_t qcow2_snapop_find(const struct qcow2_snapop_image *img, const uint8_t *name,
                          size_t name_len, bool by_id);

#endif /* QCOW2_SNAPOP_H */
