/*
 * Bitmap directory and table checks of QEMU 7.2's block/qcow2-bitmap.c,
 * as run when "qemu-img info" opens an image.  Entry layout: qcow2.txt,
 * "Bitmap directory"; table entries: "Bitmap table".
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "be.h"
#include "instar/ovf.h"
#include "bitmap.h"

#define BME_MAX_PHYS_SIZE        0x20000000ull
#define BME_MIN_GRANULARITY_BITS 9
#define BME_MAX_GRANULARITY_BITS 31
#define BME_MAX_NAME_SIZE        1023
#define BME_TYPE_DIRTY_TRACKING  1
#define BME_TABLE_RESERVED_MASK  0xff000000000001feull
#define BME_TABLE_OFFSET_MASK    0x00fffffffffffe00ull
#define BME_TABLE_FLAG_ALL_ONES  1ull

static void err_clear(struct qcow2_err_info *ei)
{
    memset(ei->args, 0, sizeof(ei->args));
    ei->s = NULL;
    ei->slen = 0;
}

/* bdrv_getlength() of the qcow2 node: fails (EFBIG) past INT64_MAX. */
static bool disk_len(const struct qcow2_header *h, uint64_t *len)
{
    *len = h->disk_size;
    return h->disk_size <= (uint64_t)INT64_MAX;
}

int qcow2_bitmap_dir_precheck(const struct qcow2_exts *x)
{
    if (x->bitmap_dir_size == 0)
        return -QCOW2_ERR_BITMAP_DIR_SIZE_ZERO;
    /* The extension already bounds the size by QCOW2_MAX_BITMAP_DIR_SIZE. */
    if (!qcow2_read_ok(x->bitmap_dir_offset, x->bitmap_dir_size))
        return -QCOW2_ERR_BITMAP_DIR_READ;
    return 0;
}

/*
 * calc_dir_entry_size(): QEMU sums in size_t, stores the sum in an int and
 * rounds up to 8 in int arithmetic; with a huge extra_data_size the result
 * wraps, possibly negative.  Reproduce that in 64-bit arithmetic.
 */
static int64_t dir_entry_size(uint32_t name_size, uint32_t extra_size)
{
    uint64_t sum = (uint64_t)QCOW2_BITMAP_ENTRY_LEN + name_size + extra_size;
    int64_t v = (int32_t)(uint32_t)sum;

    v = (int32_t)(uint32_t)(v + 7);
    return v & ~(int64_t)7;
}

/* check_dir_entry() */
static bool dir_entry_ok(const struct qcow2_bitmap *bm, uint32_t name_size,
                         const struct qcow2_header *h)
{
    uint64_t phys, len;

    if (bm->table_size == 0 || bm->table_offset == 0 ||
        (bm->table_offset & (h->cluster_size - 1)) != 0 ||
        bm->table_size > QCOW2_BITMAP_MAX_TABLE ||
        bm->granularity_bits > BME_MAX_GRANULARITY_BITS ||
        bm->granularity_bits < BME_MIN_GRANULARITY_BITS ||
        (bm->flags & QCOW2_BITMAP_RESERVED_FLAGS) || name_size > BME_MAX_NAME_SIZE ||
        bm->type != BME_TYPE_DIRTY_TRACKING)
        return false;
    /* table_size <= 2^27 and cluster_size <= 2^21: no overflow. */
    phys = (uint64_t)bm->table_size * h->cluster_size;
    if (!disk_len(h, &len))
        return false;
    if (phys > BME_MAX_PHYS_SIZE)
        return false;
    /* phys * 8 <= 2^32, shifted by at most 31: fits. */
    if (!(bm->flags & QCOW2_BITMAP_IN_USE) && len > ((phys * 8) << bm->granularity_bits))
        return false;
    return true;
}

int qcow2_bitmap_dir_parse(const uint8_t *dir, size_t size, uint32_t nb_bitmaps,
                           const struct qcow2_header *h, qcow2_bitmap_fn visit, void *opaque,
                           struct qcow2_err_info *ei)
{
    size_t e = 0;
    uint32_t n = 0;
    int ret;

    err_clear(ei);
    if (size == 0)
        return -QCOW2_ERR_BITMAP_DIR_SIZE_ZERO;

    /* Each turn moves e forward by at least 24 bytes or returns. */
    while (e < size) {
        const uint8_t *p = dir + e;
        struct qcow2_bitmap bm;
        uint32_t name_size, extra_size;
        const uint8_t *nul;
        int64_t esize;

        if (size - e < QCOW2_BITMAP_ENTRY_LEN)
            return -QCOW2_ERR_BITMAP_DIR_BROKEN;
        if (++n > nb_bitmaps)
            return -QCOW2_ERR_BITMAP_TOO_MANY;

        memset(&bm, 0, sizeof(bm));
        bm.table_offset = be_ld64(p);
        bm.table_size = be_ld32(p + 8);
        bm.flags = be_ld32(p + 12);
        bm.type = p[16];
        bm.granularity_bits = p[17];
        name_size = (uint32_t)p[18] << 8 | p[19];
        extra_size = be_ld32(p + 20);

        esize = dir_entry_size(name_size, extra_size);
        if (esize > 0 && (uint64_t)esize > size - e)
            return -QCOW2_ERR_BITMAP_DIR_BROKEN;
        if (extra_size != 0)
            return -QCOW2_ERR_BITMAP_EXTRA_DATA;

        /* extra_size == 0: esize = roundup(24 + name_size, 8) fits the dir. */
        bm.name = p + QCOW2_BITMAP_ENTRY_LEN;
        nul = memchr(bm.name, 0, name_size);
        bm.name_len = nul ? (size_t)(nul - bm.name) : name_size;

        if (!dir_entry_ok(&bm, name_size, h)) {
            /* "%.*s" of the name field: up to name_size bytes or a NUL. */
            ei->s = bm.name;
            ei->slen = bm.name_len;
            return -QCOW2_ERR_BITMAP_CONSTRAINTS;
        }
        if (visit) {
            ret = visit(opaque, n - 1, &bm);
            if (ret < 0)
                return ret;
        }
        e += (size_t)esize;
    }
    if (n != nb_bitmaps)
        return -QCOW2_ERR_BITMAP_TOO_FEW;
    /* The loop ends exactly at size: every entry was checked to fit. */
    return 0;
}

/* strcmp() of two C strings given with their lengths, then by index. */
static int name_cmp(const struct qcow2_bitmap *bm, uint32_t a, uint32_t b)
{
    size_t la = bm[a].name_len, lb = bm[b].name_len;
    int c = memcmp(bm[a].name, bm[b].name, la < lb ? la : lb);

    if (c == 0 && la != lb)
        c = la < lb ? -1 : 1;
    if (c == 0)
        c = a < b ? -1 : (a > b ? 1 : 0);
    return c;
}

static void sift_down(const struct qcow2_bitmap *bm, uint32_t *idx, uint32_t root, uint32_t n)
{
    for (;;) {
        uint64_t child = 2ull * root + 1;
        uint32_t t;

        if (child >= n)
            return;
        if (child + 1 < n && name_cmp(bm, idx[child], idx[child + 1]) < 0)
            child++;
        if (name_cmp(bm, idx[root], idx[child]) >= 0)
            return;
        t = idx[root];
        idx[root] = idx[child];
        idx[child] = t;
        root = (uint32_t)child;
    }
}

void qcow2_bitmap_mark_dups(const struct qcow2_bitmap *bm, uint32_t n, uint32_t *idx, uint8_t *dup)
{
    uint32_t i, t;

    for (i = 0; i < n; i++) {
        idx[i] = i;
        dup[i] = 0;
    }
    for (i = n / 2; i-- > 0;)
        sift_down(bm, idx, i, n);
    for (i = n; i-- > 1;) {
        t = idx[0];
        idx[0] = idx[i];
        idx[i] = t;
        sift_down(bm, idx, 0, i);
    }
    /* Sorted by (name, index): in a run of equal names all but the first
     * come after an earlier entry of the same name. */
    for (i = 1; i < n; i++) {
        const struct qcow2_bitmap *a = &bm[idx[i - 1]], *b = &bm[idx[i]];
        if (a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0)
            dup[idx[i]] = 1;
    }
}

int qcow2_bitmap_load_check(const struct qcow2_bitmap *bm, const struct qcow2_header *h,
                            const struct qcow2_reader *rd, uint8_t *buf, size_t buflen,
                            struct qcow2_err_info *ei)
{
    uint64_t bytes = (uint64_t)bm->table_size * 8;
    uint64_t done = 0, len, tab_size, ser;
    size_t chunk = buflen & ~(size_t)7;
    int ret;

    err_clear(ei);
    ei->s = bm->name;
    ei->slen = bm->name_len;

    /* bitmap_table_load(): read the table, check every entry. */
    if (!qcow2_read_ok(bm->table_offset, bytes))
        return -QCOW2_ERR_BITMAP_TABLE_IO;
    while (done < bytes) {
        size_t n = bytes - done < chunk ? (size_t)(bytes - done) : chunk;
        size_t i;

        ret = rd->pread(rd->opaque, bm->table_offset + done, buf, n);
        if (ret < 0)
            return ret;
        for (i = 0; i < n; i += 8) {
            uint64_t entry = be_ld64(buf + i);
            uint64_t off = entry & BME_TABLE_OFFSET_MASK;

            if (entry & BME_TABLE_RESERVED_MASK)
                return -QCOW2_ERR_BITMAP_TABLE_INVALID;
            if (off != 0 &&
                ((entry & BME_TABLE_FLAG_ALL_ONES) || (off & (h->cluster_size - 1)) != 0))
                return -QCOW2_ERR_BITMAP_TABLE_INVALID;
        }
        done += n;
    }

    /*
     * load_bitmap_data(): the table must have exactly as many clusters as
     * the serialized bitmap of the image (64-bit words of one bit per
     * granule).  Data cluster offsets are below 2^56: their reads succeed.
     */
    len = h->disk_size;
    if (len == 0) {
        ser = 0;
    } else {
        uint64_t words = (((len - 1) >> bm->granularity_bits) >> 6) + 1;
        ser = words * 8;
    }
    tab_size = (ser + h->cluster_size - 1) / h->cluster_size;
    if (tab_size != bm->table_size || tab_size > QCOW2_BITMAP_MAX_TABLE)
        return -QCOW2_ERR_BITMAP_DATA_INVALID;
    return 0;
}
