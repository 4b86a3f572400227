/*
 * qcow2 persistent dirty bitmaps (docs/interop/qcow2.txt, "Bitmaps
 * extension", "Bitmap directory", "Bitmap table"), checked the way
 * qemu-img 7.2 loads them when it opens an image for "info":
 * bitmap_list_load() and check_dir_entry(), then per bitmap, in directory
 * order, bdrv_create_dirty_bitmap()'s duplicate check, bitmap_table_load()
 * and load_bitmap_data()'s size check (qcow2_load_dirty_bitmaps()).
 *
 * Pure code: the directory is a buffer the caller read; tables are read
 * through struct qcow2_reader.
 */
#ifndef QCOW2_BITMAP_H
#define QCOW2_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "header.h"
#include "snapshot.h" /* struct qcow2_reader */

#define QCOW2_BITMAP_IN_USE         (1u << 0)
#define QCOW2_BITMAP_AUTO           (1u << 1)
#define QCOW2_BITMAP_RESERVED_FLAGS 0xfffffffcu
#define QCOW2_BITMAP_ENTRY_LEN      24
#define QCOW2_BITMAP_MAX_TABLE      0x8000000u

/* One directory entry; name points into the directory buffer. */
struct qcow2_bitmap {
    uint64_t table_offset;
    uint32_t table_size; /* entries */
    uint32_t flags;
    uint8_t type;
    uint8_t granularity_bits;
    const uint8_t *name;
    size_t name_len; /* up to the first NUL, as QEMU's strings end */
};

/*
 * qcow2_bitmap_dir_precheck - the checks bitmap_list_load() makes before
 * it parses: a zero size, and a read QEMU's block layer would refuse.
 * x: extensions with x->nb_bitmaps != 0.  Returns 0 or a negated code.
 */
int qcow2_bitmap_dir_precheck(const struct qcow2_exts *x);

/* Called per directory entry, in order; returns 0 or a negated code. */
typedef int (*qcow2_bitmap_fn)(void *opaque, uint32_t index, const struct qcow2_bitmap *bm);

/*
 * qcow2_bitmap_dir_parse - bitmap_list_load() over the directory bytes.
 *
 * dir/size: the directory as read (size = x->bitmap_dir_size).
 * nb_bitmaps: from the extension.  h: the accepted header (cluster size,
 * disk size).  visit: called per entry after its checks (may be NULL).
 * Returns 0 or a negated code (QCOW2_ERR_BITMAP_*, or from visit).
 */
int qcow2_bitmap_dir_parse(const uint8_t *dir, size_t size, uint32_t nb_bitmaps,
                           const struct qcow2_header *h, qcow2_bitmap_fn visit, void *opaque,
                           struct qcow2_err_info *ei);

/*
 * qcow2_bitmap_mark_dups - dup[i] = 1 when bm[i]'s name equals the name of
 * an earlier entry (strcmp semantics), else 0.  idx: scratch of n entries.
 * O(n log n) comparisons (heap sort), whatever the names.
 */
void qcow2_bitmap_mark_dups(const struct qcow2_bitmap *bm, uint32_t n, uint32_t *idx, uint8_t *dup);

/*
 * qcow2_bitmap_load_check - what loading one bitmap that is not in use can
 * reject: its table (bitmap_table_load, check_table_entry) and the table's
 * size against the image size (load_bitmap_data).
 *
 * buf/buflen: scratch for table reads, at least 8 bytes (bigger is faster).
 * Returns 0 or a negated code; ei->s names the bitmap.
 */
int qcow2_bitmap_load_check(const struct qcow2_bitmap *bm, const struct qcow2_header *h,
                            const struct qcow2_reader *rd, uint8_t *buf, size_t buflen,
                            struct qcow2_err_info *ei);

#endif /* QCOW2_BITMAP_H */
