/*
 * Writing qcow2 persistent dirty bitmaps (docs/interop/qcow2.txt,
 * "Bitmaps extension", "Bitmap directory", "Bitmap table") as QEMU 7.2
 * stores them when it closes an image (block/qcow2-bitmap.c:
 * qcow2_store_persistent_dirty_bitmaps(), store_bitmap(),
 * store_bitmap_data(), bitmap_list_store(), update_ext_header_and_dir()),
 * every cluster placed by formats/qcow2/alloc.c in QEMU's order, so that
 * the file comes out as qemu lays it out.
 *
 * The model is QEMU's: an image's bitmaps are a list in directory order
 * (struct qcow2_bm_list), each with a name, a granularity, its flags and,
 * when its bits changed since it was stored ("dirty": QEMU's bitmaps that
 * are not read-only), the bits to store.  The bits are the serialised
 * form (util/hbitmap.c's hbitmap_serialize_part(): 64-bit little-endian
 * words, bit n of the stream = granule n): held in memory (bm->bits), or
 * produced on demand by the caller's fill callback (for bitmaps too big to
 * hold, e.g. streamed from another image).
 *
 * Storing, in QEMU's order (qcow2_bm_store, then the caller's header
 * write, then qcow2_bm_store_finish):
 *  1. per dirty bitmap, in list order: one data cluster per cluster of
 *     serialised bits that has a bit set (allocated and written one by
 *     one; all-zero clusters are table entry 0 -- QEMU 7.2 never writes
 *     the all-ones entry 1, it writes such a cluster out), then its table;
 *  2. the directory, in new clusters;
 *  3. (caller) flush the refcount caches and the file, write the header
 *     with the new extension (qcow2_header_rewrite), flush;
 *  4. free the old directory, then the clusters of every replaced or
 *     removed bitmap (qcow2_bm_store_finish).
 * A crash before 3 leaves the old bitmaps in place and leaked clusters;
 * after it, leaked clusters only: qemu-img check -r all recovers both.
 *
 * Pure code: no I/O but through callbacks, memory through mem.
 */
#ifndef QCOW2_BITMAP_STORE_H
#define QCOW2_BITMAP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "bitmap.h"
#include "header.h"

#define QCOW2_BM_NAME_MAX      1023 /* BDRV_BITMAP_MAX_NAME_SIZE */
#define QCOW2_BM_MIN_GRAN_BITS 9
#define QCOW2_BM_MAX_GRAN_BITS 31
#define QCOW2_BM_MAX_PHYS      0x20000000ull /* BME_MAX_PHYS_SIZE */

/* Error codes of the list operations (negated), besides QCOW2_ALLOC_E*. */
#define QCOW2_BM_EEXIST     17  /* a bitmap of that name exists */
#define QCOW2_BM_ENOENT     2   /* no bitmap of that name */
#define QCOW2_BM_ENAME      200 /* name empty or longer than QCOW2_BM_NAME_MAX */
#define QCOW2_BM_EGRAN      201 /* granularity not a power of two in 512..2^31 */
#define QCOW2_BM_ETOO_MANY  202 /* more than QCOW2_MAX_BITMAPS bitmaps */
#define QCOW2_BM_EDIR_SIZE  203 /* the directory would pass QCOW2_MAX_BITMAP_DIR_SIZE */
#define QCOW2_BM_ETOO_BIG   204 /* "Bitmap '%s' is too big" (store_bitmap_data) */
#define QCOW2_BM_EINCONSIST 205 /* an in-use (inconsistent) bitmap cannot be changed */

struct qcow2_bm {
    char *name;      /* NUL-terminated, from the list's mem */
    size_t name_len; /* 1..QCOW2_BM_NAME_MAX */
    uint32_t granularity_bits;
    uint32_t flags;        /* QCOW2_BITMAP_AUTO (enabled), QCOW2_BITMAP_IN_USE */
    uint64_t table_offset; /* its stored table, 0: none yet */
    uint32_t table_size;   /* entries */
    /*
     * dirty - store writes this bitmap anew (new clusters; the old ones
     * are freed after the header points at the new directory).  An
     * in-use bitmap that is not dirty is kept as it is (QEMU skips
     * inconsistent bitmaps when it stores).
     */
    bool dirty;
    uint8_t *bits; /* serialised bits (qcow2_bm_ser_size bytes), or NULL: fill */
};

/* A stored table whose clusters are freed by qcow2_bm_store_finish(). */
struct qcow2_bm_table {
    uint64_t offset;
    uint32_t size;
};

struct qcow2_bm_list {
    struct qcow2_bm *bm; /* n entries, in directory order */
    uint32_t n, cap;
    struct qcow2_bm_table *drop; /* ndrop tables to free after the header update */
    uint32_t ndrop, drop_cap;
    uint64_t disk_size;    /* the bitmaps' size: the image's virtual size */
    uint32_t cluster_bits; /* of the image */
    /* realloc() semantics as struct qcow2_alloc_ops.mem */
    void *(*mem)(void *opaque, void *p, size_t size);
    void *opaque;
};

/*
 * qcow2_bm_ser_size - bytes of a bitmap's serialised form for an image of
 * disk_size bytes at 2^granularity_bits bytes per bit: whole 64-bit
 * words (hbitmap_serialization_size() of the whole bitmap).
 */
uint64_t qcow2_bm_ser_size(uint64_t disk_size, uint32_t granularity_bits);

/* qcow2_bm_table_size - clusters (table entries) of that serialised form. */
uint64_t qcow2_bm_table_size(uint64_t disk_size, uint32_t granularity_bits, uint32_t cluster_bits);

/* qcow2_bm_list_init - an empty list for an image; release with _release. */
void qcow2_bm_list_init(struct qcow2_bm_list *l, uint64_t disk_size, uint32_t cluster_bits,
                        void *(*mem)(void *opaque, void *p, size_t size), void *opaque);

/* qcow2_bm_list_release - free names, bits and arrays (nothing is written). */
void qcow2_bm_list_release(struct qcow2_bm_list *l);

/*
 * qcow2_bm_list_load - append the entries of a directory that
 * qcow2_bitmap_dir_parse() accepted (bm, n entries, e.g. gq_image's),
 * stored and not dirty, their bits not loaded.  0 or -errno.
 */
int qcow2_bm_list_load(struct qcow2_bm_list *l, const struct qcow2_bitmap *bm, uint32_t n);

/*
 * qcow2_bm_load_bits - read bitmap i's stored bits into memory (bm->bits)
 * as load_bitmap_data() does: entry 0 reads as zeros, entry 1 (all ones)
 * sets whole words of its range, a data cluster is copied.  The table was
 * checked by qcow2_bitmap_load_check().  0 or -errno.
 */
int qcow2_bm_load_bits(struct qcow2_bm_list *l, uint32_t i, const struct qcow2_reader *rd);

/* qcow2_bm_find - the index of the bitmap named name (len bytes), or -1. */
int64_t qcow2_bm_find(const struct qcow2_bm_list *l, const char *name, size_t len);

/*
 * qcow2_bm_add - append a new, empty, dirty bitmap (QEMU's
 * block-dirty-bitmap-add with persistent=on): granularity_bits 9..31,
 * enabled sets QCOW2_BITMAP_AUTO.  with_bits: hold its bits in memory
 * (zeroed), else the store asks the fill callback.  An empty name
 * (ENAME) or a granularity out of range (EGRAN) is refused first, then
 * the checks of qcow2_co_can_store_new_dirty_bitmap() come in its order:
 * the name exists (EEXIST), the bits need more than BME_MAX_PHYS_SIZE
 * bytes or table entries (ETOO_BIG), the name is longer than
 * QCOW2_BM_NAME_MAX (ENAME), the count (ETOO_MANY), the directory size
 * (EDIR_SIZE).  Returns the new index, or a negated code.
 */
/*
 * qcow2_bm_too_big - check_constraints_on_bitmap()'s size check for a new
 * bitmap of l at 2^granularity_bits bytes per bit: its bits, in whole
 * bytes, pass BME_MAX_PHYS_SIZE or BME_MAX_TABLE_SIZE clusters.
 */
bool qcow2_bm_too_big(const struct qcow2_bm_list *l, uint32_t granularity_bits);

int64_t qcow2_bm_add(struct qcow2_bm_list *l, const char *name, size_t len,
                     uint32_t granularity_bits, bool enabled, bool with_bits);

/*
 * qcow2_bm_remove - take bitmap i out of the list; its stored clusters
 * are freed by qcow2_bm_store_finish().  0 or -errno.
 */
int qcow2_bm_remove(struct qcow2_bm_list *l, uint32_t i);

/* qcow2_bm_set_enabled - enable (AUTO) or disable bitmap i; it becomes dirty. */
int qcow2_bm_set_enabled(struct qcow2_bm_list *l, uint32_t i, bool enabled);

/*
 * qcow2_bm_set_range / qcow2_bm_clear - set the bits covering guest bytes
 * [off, off + bytes) (a write recorded in an enabled bitmap), or clear
 * every bit.  The bitmap's bits must be in memory.  0 or -errno.
 */
int qcow2_bm_set_range(struct qcow2_bm_list *l, uint32_t i, uint64_t off, uint64_t bytes);
int qcow2_bm_clear(struct qcow2_bm_list *l, uint32_t i);

/*
 * qcow2_bm_list_truncate - the image was resized to disk_size bytes
 * (bdrv_dirty_bitmap_truncate() -> hbitmap_truncate()): every bitmap
 * whose bits are in memory gets the serialised size of the new length,
 * the bits of granules past the new end cleared and those a growth adds
 * zero; l->disk_size becomes disk_size.  Bitmaps without bits (in use
 * at open) keep their stored table.  0 or -QCOW2_ALLOC_ENOMEM (the list
 * is then unchanged but for the bitmaps already done).
 */
int qcow2_bm_list_truncate(struct qcow2_bm_list *l, uint64_t disk_size);

/*
 * qcow2_bm_merge - OR the bits of src (serialised, for granularity
 * src_bits over the same disk size) into bitmap dst (bits in memory),
 * as bdrv_merge_dirty_bitmap() does: word by word when the
 * granularities match, else by the byte ranges src's set bits cover.
 * 0 or -errno.
 */
int qcow2_bm_merge(struct qcow2_bm_list *l, uint32_t dst, const uint8_t *src, uint32_t src_bits);

/*
 * Fills buf with the serialised bytes [off, off + len) of bitmap index (a
 * dirty bitmap whose bits are not in memory).  0 or -errno.
 */
typedef int (*qcow2_bm_fill_fn)(void *opaque, uint32_t index, uint64_t off, uint8_t *buf,
                                size_t len);

/* Where the new directory went: for the header (qcow2_header_rewrite). */
struct qcow2_bm_dir {
    uint32_t nb_bitmaps; /* 0: no bitmaps left, no extension */
    uint64_t offset;
    uint64_t size;
};

/*
 * qcow2_bm_store - steps 1 and 2 above: the dirty bitmaps' data and
 * tables, then the directory of the whole list, allocated with a and
 * written with a->ops->write.  buf: one cluster of scratch.  fill: for
 * dirty bitmaps without bits in memory (may be NULL otherwise).
 * Nothing dirty and the list unchanged is the caller's shortcut (QEMU
 * then writes nothing).  The dirty bitmaps' old tables join l->drop.
 * On failure the clusters this call allocated are freed again (QEMU's
 * fail path).  Returns 0 or a negated code; *out receives the directory.
 */
int qcow2_bm_store(struct qcow2_bm_list *l, struct qcow2_alloc *a, uint8_t *buf,
                   qcow2_bm_fill_fn fill, void *opaque, struct qcow2_bm_dir *out);

/*
 * qcow2_bm_store_dir - step 2 alone (bitmap_list_store()): a new directory
 * of the list as it is (entries keep their tables and flags), for changes
 * QEMU writes at once rather than at close (qemu-img bitmap --remove:
 * qcow2_co_remove_persistent_dirty_bitmap()).  nb_bitmaps 0 when the list
 * is empty (the extension goes).  Returns 0 or a negated code.
 */
int qcow2_bm_store_dir(struct qcow2_bm_list *l, struct qcow2_alloc *a, struct qcow2_bm_dir *out);

/*
 * qcow2_bm_store_finish - step 4: free the old directory (old_dir_size 0:
 * none) and every table in l->drop with its data clusters (read through
 * a->ops->read; buf: one cluster of scratch), as
 * update_ext_header_and_dir() and free_bitmap_clusters() do.  Failures
 * are ignored as QEMU ignores them (leaks for qemu-img check).
 */
void qcow2_bm_store_finish(struct qcow2_bm_list *l, struct qcow2_alloc *a, uint8_t *buf,
                           uint64_t old_dir_offset, uint64_t old_dir_size);

/*
 * qcow2_bm_dir_build - the directory bytes of the list (bitmap_list_store):
 * entries with name and padding to 8.  dir: qcow2_bm_dir_size() bytes.
 */
uint64_t qcow2_bm_dir_size(const struct qcow2_bm_list *l);
void qcow2_bm_dir_build(const struct qcow2_bm_list *l, uint8_t *dir);

/*
 * qcow2_bm_mark_in_use - what QEMU's read-write open does to the loaded
 * bitmaps (qcow2_reopen_bitmaps_rw): every stored bitmap that is not in
 * use gets IN_USE in the directory dir (size bytes, the bytes the list was
 * loaded from, updated in place) and becomes dirty.  Returns how many
 * were marked.
 */
uint32_t qcow2_bm_mark_in_use(struct qcow2_bm_list *l, uint8_t *dir, uint64_t size);

/* The header fields and extension a rewrite sets (QEMU's BDRVQcow2State). */
struct qcow2_header_state {
    uint64_t l1_offset;
    uint32_t l1_size;
    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint64_t incompatible, compatible, autoclear;
    struct qcow2_bm_dir bitmaps;
    /*
     * 0: h->version; 2: a version 3 image written as version 2
     * (qcow2_downgrade(): the 72-byte header, its unknown header fields
     * and extensions carried over after it, no feature table).
     */
    uint32_t version;
};

/*
 * qcow2_header_rewrite - the first cluster as qcow2_update_header() writes
 * it for an image opened from old (old_len bytes of its first cluster,
 * zeros past them; h and x its accepted parse), with the fields of st:
 * the header, unknown header fields kept, the backing format, data file,
 * crypto header, feature table (v3, clusters over 4 KiB), bitmaps
 * extensions, the unknown extensions (in reverse order, as QEMU's list
 * holds them), the end marker and the backing file name.
 * out: h->cluster_size bytes.  Returns 0 or -QCOW2_ALLOC_EINVAL (does not
 * fit, QEMU's -ENOSPC).
 */
int qcow2_header_rewrite(const uint8_t *old, size_t old_len, const struct qcow2_header *h,
                         const struct qcow2_exts *x, const struct qcow2_header_state *st,
                         uint8_t *out);

#endif /* QCOW2_BITMAP_STORE_H */
