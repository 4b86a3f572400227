/*
 * The guest block layer: a format-neutral view of an image's guest-visible
 * data, in the shape of QEMU's BlockDriver and bdrv_co_block_status().
 *
 * The host hands the guest a graph of nodes (struct instar_graph in
 * include/instar/abi.h): each is one image file in one format, with its
 * external data file and its backing node.  gbs_open_graph() opens every
 * node with its driver; the data path (map, compare, convert, dd, bench)
 * then asks for block status, reads and writes through struct gbs, never
 * through a format.  A node is writable when the host made its file a
 * writable device.
 *
 * A driver is one file (guest/drv_<format>.c) filling struct gbs_driver;
 * adding a format adds a driver and one line in gbs_open_graph().
 */
#ifndef GUEST_BDRV_H
#define GUEST_BDRV_H

#include "guest.h"

/* Linux errno values, so that the host can print strerror() of them. */
#define GBS_EIO     5
#define GBS_ENOMEM  12
#define GBS_EACCES  13
#define GBS_EINVAL  22
#define GBS_ENOSPC  28
#define GBS_ENOTSUP 95 /* EOPNOTSUPP */

/* gbs_pwrite_zeroes() flags */
#define GBS_ZERO_MAY_UNMAP (1u << 0) /* BDRV_REQ_MAY_UNMAP */

struct gbs;

struct gbs_driver {
    const char *name;
    /*
     * open - read and validate the image on bs->file; set bs->total (the
     * virtual size) and bs->supports_backing.  Returns 0 or a negative
     * error code for the result (INSTAR_ERR_* or QCOW2_ERR_*); the
     * caller sends it.
     */
    int (*open)(struct gbs *bs);
    /*
     * block_status - QEMU's bdrv_co_block_status driver hook for
     * [off, off + bytes) of this node alone: INSTAR_BS_* bits, *pnum
     * bytes of the same status from off (>= 1, <= bytes), and with
     * INSTAR_BS_OFFSET_VALID the device and offset holding the data.
     * Returns the bits, or -errno (EIO for a corrupt image).
     */
    int (*block_status)(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                        uint64_t *pnum, uint64_t *map, uint32_t *dev);
    /*
     * pread - the guest-visible bytes [off, off + len) of this node, the
     * backing chain included (off + len <= bs->total).  Returns 0 or
     * -errno.
     */
    int (*pread)(struct gbs *bs, uint64_t off, void *buf, size_t len);
    /*
     * pwrite - write [off, off + len) of this node's guest data (off + len
     * <= bs->total) the way the format's write path does, allocating as
     * it must.  Called only for a writable node.  Returns 0 or -errno.
     */
    int (*pwrite)(struct gbs *bs, uint64_t off, const void *buf, size_t len);
    /*
     * pwrite_zeroes - bdrv_co_pwrite_zeroes for [off, off + bytes) of a
     * writable node (GBS_ZERO_* flags): requests not aligned to
     * bs->zero_align cover at most one aligned block.  Returns 0,
     * -GBS_ENOTSUP for the generic layer to write zeros instead, or
     * -errno.  NULL: always write zeros.
     */
    int (*pwrite_zeroes)(struct gbs *bs, uint64_t off, uint64_t bytes, uint32_t flags);
    /*
     * flush - write what the driver holds back (cached metadata) and make
     * the node's file durable (bdrv_co_flush).  Returns 0 or -errno.
     */
    int (*flush)(struct gbs *bs);
    /*
     * close - what the driver writes when the image is closed, after the
     * last flush (qcow2: its persistent bitmaps).  NULL: nothing.
     * Returns 0 or -errno.
     */
    int (*close)(struct gbs *bs);
    /*
     * snapshot_load_tmp - qemu's bdrv_snapshot_load_tmp hook: read through
     * the L1 table of internal snapshot index (the table's order) from now
     * on.  NULL: the format has no snapshots.  Returns 0 or a negative
     * error code for the result (QCOW2_ERR_SNAP_L1_*, INSTAR_ERR_*).
     */
    int (*snapshot_load_tmp)(struct gbs *bs, uint32_t index);
    /*
     * data_range - for a format whose block status gives no offset
     * (vhdx, as in qemu 7.2), where a read of [off, off + bytes) finds
     * its bytes: 1 when the first *pnum of them (>= 1, <= bytes) are the
     * bytes at *map of device *dev, 0 when they are not one plain range
     * of a file (*pnum of them, >= 1), or -errno.  NULL: never.  Only the
     * convert planner asks (to let the host copy such a range); block
     * status and map stay the format's.
     */
    int (*data_range)(struct gbs *bs, uint64_t off, uint64_t bytes, uint64_t *pnum, uint64_t *map,
                      uint32_t *dev);
};

struct gbs {
    const struct gbs_driver *drv;
    uint32_t node;         /* index in the graph */
    uint32_t file;         /* the device holding the image */
    uint32_t data;         /* the device holding its data (file, or the external data file) */
    uint64_t total;        /* bdrv_getlength(): the virtual size, in bytes */
    bool supports_backing; /* the format can have a backing file */
    bool writable;         /* its file is a writable device (the host opened it read-write) */
    uint64_t zero_align;   /* bl.pwrite_zeroes_alignment (0: 1) */
    uint32_t drv_opts;     /* the driver's open options (instar_node.driver's high half) */
    struct gbs *backing;   /* NULL: none */
    void *opaque;          /* the driver's state */
    /* The secret its key-secret names (encrypted images), or NULL. */
    const struct instar_key *key;
    /* The host's random seed (instar_graph.seed): a vhdx writer's GUIDs, a vmdk writer's CID. */
    const uint8_t *seed;
    /* The first corruption this node signalled (qcow2_signal_corruption). */
    bool corrupt_signalled;
    /* raw's offset and size options (instar_graph.window): the node's bytes in its file. */
    struct instar_window window;
    /*
     * Opened for its metadata alone (gbs_open_graph_meta()): an encrypted
     * image is not unlocked, and its data is neither read nor written.
     */
    bool meta_only;
};

/*
 * gbs_open_graph - open every node of g (the host's boot arguments) with
 * its driver, backing links included, then load node 0's internal
 * snapshot if g->snapshot asks for one.  Returns 0, or a negative error
 * code with *failed the node that failed.
 */
int gbs_open_graph(const struct instar_graph *g, uint32_t *failed);

/*
 * gbs_open_graph_ro - gbs_open_graph() with every node read-only (nothing
 * is written at the open or the close, e.g. before a planner writes the
 * file itself).
 */
int gbs_open_graph_ro(const struct instar_graph *g, uint32_t *failed);

/*
 * gbs_open_graph_meta - gbs_open_graph() for a node whose metadata alone
 * is read and written (a writable qcow2 node storing persistent bitmaps):
 * an encrypted image is opened without its key, which the host checked
 * in an earlier run (graph_unlock_chain()), so no second PBKDF2; reading
 * or writing its guest data then fails.
 */
int gbs_open_graph_meta(const struct instar_graph *g, uint32_t *failed);

/* The node with index i of the opened graph (NULL if out of range). */
struct gbs *gbs_node(uint32_t i);

/*
 * gbs_block_status - bdrv_co_block_status(): the driver's answer for
 * [off, off + bytes) of bs with QEMU's generic rules applied (clipped
 * to the node's length, raw recursion into the file, ALLOCATED, ZERO for
 * unallocated ranges without a backing node or past its end, RECURSE
 * into the file for metadata-preallocated images, EOF).
 * Returns INSTAR_BS_* bits or -errno; *pnum as for the driver hook.
 */
int gbs_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes, uint64_t *pnum,
                     uint64_t *map, uint32_t *dev);

/*
 * gbs_block_status_above - bdrv_block_status_above(bs, NULL, ...): the
 * status of [off, off + bytes) through the whole backing chain of bs;
 * *depth (may be NULL) counts the nodes asked, 1 = bs itself.
 */
int gbs_block_status_above(struct gbs *bs, uint64_t off, uint64_t bytes, uint64_t *pnum,
                           uint64_t *map, uint32_t *dev, unsigned *depth);

/*
 * gbs_data_range - the driver's data_range hook for [off, off + bytes)
 * of bs (within bs->total): 1 with *pnum, *map and *dev as there, 0
 * when the driver has none or the bytes are no plain file range, or
 * -errno.
 */
int gbs_data_range(struct gbs *bs, uint64_t off, uint64_t bytes, uint64_t *pnum, uint64_t *map,
                   uint32_t *dev);

/*
 * gbs_pread - the guest-visible bytes of bs: zeros past bs->total.
 * Returns 0 or -errno.
 */
int gbs_pread(struct gbs *bs, uint64_t off, void *buf, size_t len);

/*
 * gbs_pread_cow - the driver's read of bs without the clamp at bs->total,
 * as QEMU's perform_cow() reads a cluster's tail past the end of an image
 * (do_perform_cow_read() calls the driver directly).  For the cluster that
 * holds the old end only.  Returns 0 or -errno.
 */
int gbs_pread_cow(struct gbs *bs, uint64_t off, void *buf, size_t len);

/*
 * gbs_is_zero_fast - bdrv_co_is_zero_fast(): 1 when block status through
 * the chain (without asking the file where holes are) says all of
 * [off, off + bytes) reads as zeros, else 0 (also when the range runs
 * past the end of bs), or -errno.  1 for bytes == 0.
 */
int gbs_is_zero_fast(struct gbs *bs, uint64_t off, uint64_t bytes);

/*
 * gbs_pwrite - blk_pwrite() on a writable node: [off, off + len) within
 * bs->total (else -EIO, as blk_check_byte_request), through the driver.
 * Returns 0 or -errno (-EACCES for a node opened read-only).
 */
int gbs_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len);

/*
 * gbs_qcow2_write - qcow2_co_pwritev_part() over the mapping pa of a qcow2
 * image whose data lies in device file (the image file, or its external
 * data file): [off, off + len) of guest data is mapped run by
 * run (qcow2_prealloc_write_map); a copy-on-write that ops->is_zero says
 * reads as zeros becomes allocated zeros in the file (handle_alloc_space),
 * ops->data writes the run's bytes (done: bytes of the call written
 * before), ops->cow copies the other regions (guest offset to host
 * offset), and the run is linked.  Returns 0 or -errno.
 */
struct qcow2_prealloc;
struct gbs_q2_write_ops {
    int (*is_zero)(void *opaque, uint64_t off, uint64_t bytes);
    int (*cow)(void *opaque, uint64_t guest, uint64_t host, uint64_t bytes);
    int (*data)(void *opaque, uint64_t host, uint64_t done, uint64_t bytes);
};
int gbs_qcow2_write(struct qcow2_prealloc *pa, uint32_t file, uint64_t off, uint64_t len,
                    const struct gbs_q2_write_ops *ops, void *opaque);

/*
 * gbs_pwrite_zeroes - blk_pwrite_zeroes() on a writable node: make
 * [off, off + bytes) read as zeros (within bs->total rounded up to 512)
 * the way bdrv_co_do_pwrite_zeroes() does.  Returns 0 or -errno.
 */
int gbs_pwrite_zeroes(struct gbs *bs, uint64_t off, uint64_t bytes, uint32_t flags);

/*
 * gbs_qcow2_pwrite_from - gbs_pwrite() on a writable qcow2 node whose
 * data the caller writes: data(opaque, host, done, bytes) puts the
 * bytes [done, done + bytes) of the request at offset host of bs->data
 * (e.g. copied there by the host); mapping, copy-on-write and linking are
 * the node's.  copy_range: qcow2_co_copy_range_to(), whose copy-on-write
 * is always copied (no handle_alloc_space()).  Returns 0 or -errno
 * (-EACCES for another node, or an encrypted one: gbs_pwrite() encrypts).
 */
int gbs_qcow2_pwrite_from(struct gbs *bs, uint64_t off, uint64_t len,
                          int (*data)(void *opaque, uint64_t host, uint64_t done, uint64_t bytes),
                          void *opaque, bool copy_range);

/* gbs_qcow2_encrypted - whether qcow2 node bs is encrypted (opened with its key). */
bool gbs_qcow2_encrypted(struct gbs *bs);
/*
 * gbs_qcow2_encrypt - encrypt in place len bytes (whole 512-byte sectors)
 * of guest data that go to host offset host, guest offset guest, of the
 * encrypted qcow2 node bs (qcow2_co_encrypt(): the IVs count host sectors
 * for LUKS, guest sectors for the old AES method).  0 or -GBS_EIO
 * (misaligned, or bs not an encrypted qcow2 node).
 */
int gbs_qcow2_encrypt(struct gbs *bs, uint64_t host, uint64_t guest, uint8_t *buf, size_t len);

/*
 * gbs_qcow2_target_info - a qcow2 node's cluster size, compression type
 * and whether it has an external data file.  -EINVAL for another driver.
 */
int gbs_qcow2_target_info(struct gbs *bs, uint64_t *cluster_size, unsigned *ctype, bool *data_file);

/*
 * gbs_qcow2_write_compressed - write the guest cluster at off (cluster
 * aligned, unallocated) as len bytes of compressed data (len <
 * cluster size).  Returns 0 or -errno.
 */
int gbs_qcow2_write_compressed(struct gbs *bs, uint64_t off, const void *data, uint64_t len);

/*
 * gbs_qcow2_store_bitmaps - store the persistent bitmaps of list l into
 * the writable qcow2 node bs as qemu does when it closes the image
 * (formats/qcow2/bitmap_store.h; fill as there), the header rewritten
 * with the new bitmaps extension.  Call after the node's last write and
 * flush.  Returns 0 or -errno (a negated QCOW2_BM_* code for the list).
 */
struct qcow2_bm_list;
typedef int (*qcow2_bm_fill_fn)(void *opaque, uint32_t index, uint64_t off, uint8_t *buf,
                                size_t len);
int gbs_qcow2_store_bitmaps(struct gbs *bs, struct qcow2_bm_list *l, qcow2_bm_fill_fn fill,
                            void *opaque);

/*
 * gbs_qcow2_bitmaps - the persistent bitmaps a writable qcow2 node loaded
 * at open (stored by gbs_close()), or NULL when it has none.  Bitmaps
 * added to it with their bits in memory are stored with them.
 */
struct qcow2_bm_list *gbs_qcow2_bitmaps(struct gbs *bs);

/*
 * The callbacks formats/qcow2/bitmap_store.c and bitmap.c take for a
 * qcow2 node's bitmaps: gbs_bm_mem, the guest heap (struct qcow2_bm_list's
 * allocator; size 0 frees); gbs_bm_pread, a qcow2_reader over the file of
 * the struct gbs passed as opaque (-GBS_EIO on a failed read).
 */
void *gbs_bm_mem(void *opaque, void *p, size_t size);
int gbs_bm_pread(void *opaque, uint64_t off, void *buf, size_t len);

/*
 * gbs_qcow2_bitmap_list - gbs_qcow2_bitmaps(), or for a writable version 3
 * qcow2 node without bitmaps a new empty list (stored by gbs_close() once
 * a bitmap is added).  NULL: not a writable qcow2 v3 node, bitmaps not
 * loaded (the dirty bit), or no memory.
 */
struct qcow2_bm_list *gbs_qcow2_bitmap_list(struct gbs *bs);

/*
 * gbs_qcow2_store_bitmap_dir - write the node's bitmap list as a new
 * directory at once, each entry with the table it has on disk, then the
 * header, then free the old directory and the tables of removed bitmaps
 * (qcow2_co_remove_persistent_dirty_bitmap(): update_ext_header_and_dir()
 * and free_bitmap_clusters()).  Every entry must have been stored.
 * Returns 0 or -errno.
 */
int gbs_qcow2_store_bitmap_dir(struct gbs *bs);

/*
 * gbs_qcow2_resized - a writable qcow2 node not written through gbs, whose
 * image formats/qcow2/resize.c has just resized on its file,
 * formats/qcow2/amend.c amended or formats/qcow2/snapop.c changed (the
 * L1, refcount and snapshot tables possibly moved, the size, the
 * refcount width and the compatible features changed): its header
 * fields and L1 table are read again, and its
 * persistent bitmaps truncated to
 * the new size as bdrv_dirty_bitmap_truncate() does, so that gbs_close()
 * stores them as qemu does after qcow2_co_truncate(); its allocator
 * starts at free_cluster_index, where the resize's left off.  0 or -errno.
 */
int gbs_qcow2_resized(struct gbs *bs, uint64_t free_cluster_index);

/*
 * gbs_close - the driver's close of a writable node (after its last
 * gbs_flush; nothing for others): 0 or -errno.
 */
int gbs_close(struct gbs *bs);

/*
 * gbs_qcow2_change_backing - qcow2_change_backing_file() on a writable
 * qcow2 node: its first cluster rewritten (formats/qcow2/rebase.h) to
 * name the backing file name in format fmt (NULL: none), with the
 * refcount and L1 tables where this run's writes left them.  Call
 * gbs_flush() first, so that the data the new backing file relies on is
 * in the file before the header names it.  Returns 0 or -errno (ENOTSUP
 * for another driver, EINVAL and ENOSPC as qemu refuses the change).
 */
int gbs_qcow2_change_backing(struct gbs *bs, const char *name, const char *fmt);

/*
 * gbs_qcow2_make_empty - qcow2_make_empty() on a writable qcow2 node:
 * make_completely_empty() for a version 3 image without snapshots,
 * bitmaps or data file whose L1 table fits (the image reset to a header,
 * a refcount table and block and an empty L1 table), else every cluster
 * discarded (qcow2_cluster_discard with full_discard).  Returns 0 or
 * -errno (-GBS_ENOTSUP for another driver, as bdrv_make_empty).
 */
int gbs_qcow2_make_empty(struct gbs *bs);

/* gbs_flush - bdrv_flush() of a writable node (nothing for others): 0 or -errno. */
int gbs_flush(struct gbs *bs);

/*
 * gbs_file_status - file-posix's block status for [off, off + bytes) of
 * device dev (SEEK_DATA/SEEK_HOLE on the host): DATA or ZERO, with
 * OFFSET_VALID and map = off.
 */
int gbs_file_status(uint32_t dev, bool want_zero, uint64_t off, uint64_t bytes, uint64_t *pnum,
                    uint64_t *map);

/* bdrv_getlength() of a device: its size rounded up to 512. */
uint64_t gbs_dev_length(uint32_t dev);

/*
 * Corruption events (qcow2_signal_corruption in a read-only open): the
 * first one of a run, for the host to print "qcow2: Image is corrupt:
 * ...; further non-fatal corruption events will be suppressed".
 */
struct gbs_corruption {
    int32_t code; /* 0, or a QCOW2_ERR_* message code with args */
    uint64_t args[4];
};

extern struct gbs_corruption gbs_first_corruption;

/* Record a corruption event of bs (only its first counts, as in QEMU). */
void gbs_signal_corruption(struct gbs *bs, int32_t code, uint64_t a0, uint64_t a1, uint64_t a2);

/*
 * gbs_send - send a struct instar_data_result for op (after any queued
 * records) with the first corruption event, and end the run.
 */
__attribute__((noreturn)) void gbs_send(uint32_t op, uint32_t status, uint32_t errnum,
                                        uint64_t offset, uint32_t image, uint32_t flags);

/*
 * gbs_open_or_fail - gbs_open_graph(), sending op's error result on
 * failure.
 */
void gbs_open_or_fail(uint32_t op, const struct instar_graph *g);

extern const struct gbs_driver gbs_drv_raw;
extern const struct gbs_driver gbs_drv_vdi;
extern const struct gbs_driver gbs_drv_vhdx;
extern const struct gbs_driver gbs_drv_qcow2;
extern const struct gbs_driver gbs_drv_vpc;
extern const struct gbs_driver gbs_drv_qed;
extern const struct gbs_driver gbs_drv_qcow;
extern const struct gbs_driver gbs_drv_parallels;
extern const struct gbs_driver gbs_drv_vmdk;
extern const struct gbs_driver gbs_drv_luks;

/*
 * gbs_vpc_describe - open device dev as vpc_open() does (calc: enum
 * vpc_size_calc) for info and check: *size the virtual size, and
 * *cluster_size the block size of a dynamic image (0 for a fixed one).
 * On failure sends op's error result (qemu's open message) and does not
 * return.
 */
void gbs_vpc_describe(uint32_t op, uint32_t dev, uint32_t calc, uint64_t *size,
                      uint32_t *cluster_size);

/* What info and check need of a qed image (gbs_qed_describe). */
struct gbs_qed_desc {
    uint64_t size;         /* the virtual size */
    uint32_t cluster_size; /* bdrv_qed_get_info() */
    bool need_check;       /* QED_F_NEED_CHECK: "dirty-flag" */
    bool has_backing;      /* a non-empty backing file name */
    bool backing_raw;      /* QED_F_BACKING_FORMAT_NO_PROBE: its format is raw */
    char backing[4096];    /* NUL-terminated */
};

/*
 * gbs_qed_describe - open device dev as bdrv_qed_do_open() does
 * (read-only) and describe it into d.  On failure sends op's error
 * result (qemu's open message) and does not return.
 */
void gbs_qed_describe(uint32_t op, uint32_t dev, struct gbs_qed_desc *d);

/*
 * gbs_qed_check - bdrv_qed_co_check() on device dev (fix: repair in place,
 * dev writable, then the clean shutdown of bdrv_qed_close()).  Open
 * failures send op's error result.  Returns qed_check()'s 0 or -errno.
 */
/*
 * gbs_qed_truncate - bdrv_qed_co_truncate() on the writable qed node bs:
 * preallocation refused, the size checked (qed_is_image_size_valid()),
 * a shrink refused, then the header rewritten with the new image size.
 * Returns 0, or GBS_QED_TRUNC_* (negated).
 */
enum {
    GBS_QED_TRUNC_PREALLOC = 1,
    GBS_QED_TRUNC_SIZE = 2,
    GBS_QED_TRUNC_SHRINK = 3,
    GBS_QED_TRUNC_EIO = 4,
};
int gbs_qed_truncate(struct gbs *bs, uint64_t size, uint32_t prealloc);

/*
 * gbs_qed_change_backing - bdrv_qed_change_backing_file() on a writable
 * qed node (closed by gbs_close() first, its data flushed): the header
 * rewritten to name the backing file name (NULL: none), its format probed
 * unless fmt is raw, the name right after the header.  Returns 0 or
 * -errno (ENOTSUP: unknown compat features; ENOSPC: the name does not fit
 * the header clusters).
 */
int gbs_qed_change_backing(struct gbs *bs, const char *name, const char *fmt);

struct qed_check_result;
int gbs_qed_check(uint32_t op, uint32_t dev, bool fix, struct qed_check_result *r);

/* What info and check need of a qcow (version 1) image (gbs_qcow_describe). */
struct gbs_qcow_desc {
    uint64_t size;         /* the virtual size */
    uint32_t cluster_size; /* qcow_get_info() */
    bool encrypted;        /* AES */
    bool has_backing;      /* a non-empty backing file name */
    char backing[1024];    /* NUL-terminated */
};

/*
 * gbs_qcow_describe - open device dev as qcow_open() does (io: an open
 * with I/O, which needs a secret for an encrypted image) and describe it
 * into d.  On failure sends op's error result and does not return.
 */
void gbs_qcow_describe(uint32_t op, uint32_t dev, bool io, struct gbs_qcow_desc *d);

/*
 * gbs_qcow_make_empty - qcow_make_empty() on a writable qcow node: the
 * whole L1 table written as zeros, then the file cut where the table
 * ends.  Returns 0 or -errno (-GBS_ENOTSUP for another driver).
 */
int gbs_qcow_make_empty(struct gbs *bs);

/* gbs_qcow_target_info - a qcow node's cluster size.  -EINVAL for another driver. */
int gbs_qcow_target_info(struct gbs *bs, uint64_t *cluster_size);

/*
 * gbs_qcow_write_compressed - qcow_co_pwritev_compressed()'s allocation
 * and write: the guest cluster at off (cluster aligned) of the writable
 * qcow node bs as len bytes of compressed data (0 < len < cluster size),
 * packed where the file ends.  Returns 0 or -errno.
 */
int gbs_qcow_write_compressed(struct gbs *bs, uint64_t off, const void *data, uint64_t len);
extern const struct gbs_driver gbs_drv_bochs;
/*
 * gbs_bochs_describe - open device dev as bochs_open() does, for info and
 * check: *size the virtual size.  On failure sends op's error result
 * (qemu's open message) and does not return.
 */
void gbs_bochs_describe(uint32_t op, uint32_t dev, uint64_t *size);

extern const struct gbs_driver gbs_drv_cloop;
/* gbs_cloop_describe - as gbs_bochs_describe(), for cloop_open(). */
void gbs_cloop_describe(uint32_t op, uint32_t dev, uint64_t *size);

extern const struct gbs_driver gbs_drv_dmg;
/*
 * gbs_dmg_describe - as gbs_bochs_describe(), for dmg_open(); the open's
 * warnings (INSTAR_WARN_DMG_CHUNKS) go with op's result, *unknown_type
 * the first unknown chunk type they name (to be sent in err_args[2]).
 */
void gbs_dmg_describe(uint32_t op, uint32_t dev, uint64_t *size, uint32_t *unknown_type);
/*
 * gbs_parallels_describe - open device dev as parallels_open() does for
 * info and the host's describe (info_flags: INSTAR_INFO_OPEN_*): *size
 * the virtual size.  On failure sends op's error result (qemu's open
 * message) and does not return.
 */
void gbs_parallels_describe(uint32_t op, uint32_t dev, uint32_t info_flags, uint64_t *size);

/*
 * gbs_parallels_check - qemu-img check of the parallels image on dev:
 * open (read-write when fix, marking it in use), parallels_co_check()
 * with fix (PRL_FIX_*), the second check img_check() runs after a
 * repair, the close; sends op's check result and does not return.
 */
__attribute__((noreturn)) void gbs_parallels_check(uint32_t op, uint32_t dev, unsigned fix);

/*
 * gbs_vhdx_describe - open device dev as vhdx_open() does, for info and
 * the host's description of an image (rw: a read-write open, whose log
 * the check replays, so one is no error here; check: BDRV_O_CHECK, the
 * BAT entries unchecked): *size the virtual size, *cluster_size the block
 * size.  On failure sends op's error result (qemu's open message) and
 * does not return.
 */
void gbs_vhdx_describe(uint32_t op, uint32_t dev, bool rw, bool check, uint64_t *size,
                       uint32_t *cluster_size);

/*
 * gbs_vhdx_check - vhdx_co_check() on device dev, opened as check opens
 * it (rw: read-write, a log replayed with guids[0..2]: the session's file
 * write GUID and two data write GUIDs): the BAT lines streamed, their
 * count in *corruptions, *corruptions_fixed 1 when a log was replayed.
 * On an open failure sends op's error result and does not return.
 */
void gbs_vhdx_check(uint32_t op, uint32_t dev, bool rw, const uint8_t (*guids)[16],
                    int64_t *corruptions, int64_t *corruptions_fixed);

/*
 * gbs_vdi_describe - open device dev as vdi_open() does, for info:
 * *size the virtual size, *cluster_size the block size.  On failure
 * sends op's error result (qemu's open message) and does not return.
 */
void gbs_vdi_describe(uint32_t op, uint32_t dev, uint64_t *size, uint32_t *cluster_size);

/*
 * gbs_vdi_check - open device dev as vdi_open() does (its failure sent
 * as for gbs_vdi_describe) and run vdi_co_check(), its lines streamed
 * with greport().  Returns 0 or -GBS_ENOMEM (with *check_errors 1).
 */
int gbs_vdi_check(uint32_t op, uint32_t dev, uint64_t *corruptions, uint64_t *check_errors);

/* What gbs_vmdk_describe() tells info and check. */
#include "vmdk/vmdk.h"
struct gbs_vmdk_info {
    uint64_t size; /* the virtual size, bytes */
    uint32_t cid, parent_cid;
    char create_type[128];
    char parent[VMDK_PARENT_MAX + 1]; /* parentFileNameHint, "" for none */
    uint32_t nextents;
    const struct vmdk_extent *ext; /* the driver's, valid until its next describe */
    /* Not 0: a descriptor names this many extent files the run was not given (names). */
    uint32_t need_files;
    const char *const *names;
    const bool *names_flat; /* each name's line: FLAT or VMFS */
};

/*
 * gbs_vmdk_cluster_size - bdi.cluster_size of a vmdk node: its first
 * extent's grain size (0 or -GBS_EINVAL for a flat one).
 */
int gbs_vmdk_cluster_size(struct gbs *bs, uint64_t *cluster_size);

/*
 * gbs_vmdk_stream - whether bs is a vmdk node whose extents take
 * compressed grains only (streamOptimized: needs_compressed_writes).
 */
bool gbs_vmdk_stream(struct gbs *bs);

/*
 * gbs_vmdk_compressed_eof - vmdk_co_pwritev_compressed() with no bytes,
 * convert's end of a compressed copy: each extent file rounded up to
 * whole sectors.  Returns 0 or -errno.
 */
int gbs_vmdk_compressed_eof(struct gbs *bs);

/*
 * gbs_vmdk_describe - open device dev as vmdk_open() does (rdwr: a
 * read-write open) for info and check, into *info; a descriptor's extent
 * files are devices dev + 1 .. dev + ndev, and with ndev 0 the names
 * it gives are returned in info (need_files) instead; partial: the ndev
 * devices are only the first extent files (INSTAR_INFO_VMDK_PARTIAL), and
 * once they open the names are returned again.  On failure sends op's
 * error result (qemu's open message) and does not return.
 */
void gbs_vmdk_describe(uint32_t op, uint32_t dev, uint32_t ndev, bool rdwr, bool partial,
                       struct gbs_vmdk_info *info);

/*
 * gbs_vmdk_check - vmdk_co_check() of device dev (opened as above, a
 * failure sent as op's error result): each grain's lines streamed with
 * greport(); returns 0 or the negated errno bdrv_check() returns (1 for
 * QEMU's VMDK_ERROR, EPERM).  A non-zero return is one corruption.
 */
int32_t gbs_vmdk_check(uint32_t op, uint32_t dev, uint32_t ndev);

struct qcow2_luks_info;
/*
 * gbs_luks_describe - open device dev as a raw LUKS volume without a key
 * (QCRYPTO_BLOCK_OPEN_NO_IO, as qemu-img info opens it): *info its header,
 * *size the virtual size.  On failure sends op's error result (qemu's
 * open message) and does not return.
 */
void gbs_luks_describe(uint32_t op, uint32_t dev, struct qcow2_luks_info *info, uint64_t *size);

/*
 * gbs_luks_unlock - open device dev as a raw LUKS volume with I/O (as
 * qemu-img check opens it): its header checked, then unlocked with key
 * (NULL: qemu's "Parameter 'key-secret' is required").  Returns on
 * success; on failure sends op's error result and does not return.
 */
void gbs_luks_unlock(uint32_t op, uint32_t dev, const struct instar_key *key);

/* A luks_unlock()/luks_slot_load() failure (-LUKS_ERR_*) as an open's -INSTAR_ERR_* code. */
int gbs_luks_unlock_code(int r);

/* Where a new LUKS header goes: a raw volume's file, or qcow2's clusters. */
struct gluks_format_io {
    /* initfunc: make room for hdrlen bytes of header and key material. */
    int (*init)(void *opaque, uint64_t hdrlen);
    /* write len bytes at off from the start of the header. */
    int (*write)(void *opaque, uint64_t off, const void *buf, size_t len);
    void *opaque;
};

/*
 * gbs_luks_format - qcrypto_block_luks_create() with the host's choices
 * and random bytes l: the header built, the PBKDF2 iterations timed,
 * io->init called with the header's length (*payload_offset), then slot
 * 0's key material and the header written through io->write.  Returns 0
 * or io's negative code; a failure of its own (the benchmark, the
 * iteration counts, bad arguments) sends the create's error result.
 */
int gbs_luks_format(const struct instar_create_luks *l, const struct gluks_format_io *io,
                    uint64_t *payload_offset);

/* Where a LUKS header being amended lies: device dev from base, len bytes at most. */
struct gluks_amend_io {
    uint32_t dev;
    uint64_t base; /* the header's offset in dev: 0, or qcow2's crypto header */
    uint64_t len;  /* qcow2's crypto header length; UINT64_MAX: no bound (a raw volume) */
};

/*
 * gbs_luks_amend - qcrypto_block_luks_amend_options() with a's choices on
 * the LUKS header io names: the header read and checked again, then a key
 * slot added (the master key unlocked with a->key, the slot's material
 * written, then the header) or the slots a names erased (each: the
 * header, then its material overwritten 40 times), with qemu's refusals
 * on the way.  Returns 0, or a negative INSTAR_ERR_* / QCOW2_ERR_* code,
 * its message's arguments in args[0..3].
 */
int gbs_luks_amend(const struct instar_amend_luks *a, const struct gluks_amend_io *io,
                   uint64_t args[4]);

#endif /* GUEST_BDRV_H */
