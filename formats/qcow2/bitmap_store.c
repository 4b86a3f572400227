/*
 * Storing qcow2 persistent dirty bitmaps in QEMU 7.2's order (see
 * bitmap_store.h).  Layouts: qcow2.txt "Bitmap directory" (24-byte entry,
 * name, padding to 8) and "Bitmap table" (entry: offset, bit 0 all ones).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "be.h"
#include "bitmap_store.h"

#define BME_TYPE_DIRTY_TRACKING 1
#define BME_TABLE_OFFSET_MASK   0x00fffffffffffe00ull
#define BME_TABLE_ALL_ONES      1ull

static void st32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void st64(uint8_t *p, uint64_t v)
{
    st32(p, (uint32_t)(v >> 32));
    st32(p + 4, (uint32_t)v);
}

/* Bits of the bitmap: one per granule, the last one partial. */
static uint64_t nbits(uint64_t disk_size, uint32_t gbits)
{
    if (disk_size == 0)
        return 0;
    return ((disk_size - 1) >> gbits) + 1;
}

uint64_t qcow2_bm_ser_size(uint64_t disk_size, uint32_t granularity_bits)
{
    return (nbits(disk_size, granularity_bits) + 63) / 64 * 8;
}

uint64_t qcow2_bm_table_size(uint64_t disk_size, uint32_t granularity_bits, uint32_t cluster_bits)
{
    uint64_t ser = qcow2_bm_ser_size(disk_size, granularity_bits);

    return (ser + ((uint64_t)1 << cluster_bits) - 1) >> cluster_bits;
}

void qcow2_bm_list_init(struct qcow2_bm_list *l, uint64_t disk_size, uint32_t cluster_bits,
                        void *(*mem)(void *opaque, void *p, size_t size), void *opaque)
{
    memset(l, 0, sizeof(*l));
    l->disk_size = disk_size;
    l->cluster_bits = cluster_bits;
    l->mem = mem;
    l->opaque = opaque;
}

static void bm_free(struct qcow2_bm_list *l, struct qcow2_bm *b)
{
    if (b->name)
        l->mem(l->opaque, b->name, 0);
    if (b->bits)
        l->mem(l->opaque, b->bits, 0);
    b->name = NULL;
    b->bits = NULL;
}

void qcow2_bm_list_release(struct qcow2_bm_list *l)
{
    uint32_t i;

    for (i = 0; i < l->n; i++)
        bm_free(l, &l->bm[i]);
    if (l->bm)
        l->mem(l->opaque, l->bm, 0);
    if (l->drop)
        l->mem(l->opaque, l->drop, 0);
    l->bm = NULL;
    l->drop = NULL;
    l->n = l->cap = l->ndrop = l->drop_cap = 0;
}

/* Room for one more entry (n < 65536, so no overflow in the sizes). */
static int grow(struct qcow2_bm_list *l)
{
    struct qcow2_bm *p;
    uint32_t cap;

    if (l->n < l->cap)
        return 0;
    cap = l->cap ? l->cap * 2 : 8;
    p = l->mem(l->opaque, l->bm, (size_t)cap * sizeof(*p));
    if (!p)
        return -QCOW2_ALLOC_ENOMEM;
    l->bm = p;
    l->cap = cap;
    return 0;
}

static int drop_add(struct qcow2_bm_list *l, uint64_t offset, uint32_t size)
{
    if (offset == 0)
        return 0;
    if (l->ndrop == l->drop_cap) {
        uint32_t cap = l->drop_cap ? l->drop_cap * 2 : 8;
        struct qcow2_bm_table *p = l->mem(l->opaque, l->drop, (size_t)cap * sizeof(*p));

        if (!p)
            return -QCOW2_ALLOC_ENOMEM;
        l->drop = p;
        l->drop_cap = cap;
    }
    l->drop[l->ndrop].offset = offset;
    l->drop[l->ndrop].size = size;
    l->ndrop++;
    return 0;
}

static char *name_dup(struct qcow2_bm_list *l, const char *name, size_t len)
{
    char *p = l->mem(l->opaque, NULL, len + 1);

    if (p) {
        memcpy(p, name, len);
        p[len] = 0;
    }
    return p;
}

int qcow2_bm_list_load(struct qcow2_bm_list *l, const struct qcow2_bitmap *bm, uint32_t n)
{
    uint32_t i;
    int ret;

    for (i = 0; i < n; i++) {
        struct qcow2_bm *b;

        ret = grow(l);
        if (ret < 0)
            return ret;
        b = &l->bm[l->n];
        memset(b, 0, sizeof(*b));
        b->name = name_dup(l, (const char *)bm[i].name, bm[i].name_len);
        if (!b->name)
            return -QCOW2_ALLOC_ENOMEM;
        b->name_len = bm[i].name_len;
        b->granularity_bits = bm[i].granularity_bits;
        b->flags = bm[i].flags;
        b->table_offset = bm[i].table_offset;
        b->table_size = bm[i].table_size;
        l->n++;
    }
    return 0;
}

static int alloc_bits(struct qcow2_bm_list *l, struct qcow2_bm *b)
{
    uint64_t ser = qcow2_bm_ser_size(l->disk_size, b->granularity_bits);

    if (b->bits)
        return 0;
    if (ser > QCOW2_BM_MAX_PHYS || ser > SIZE_MAX - 1)
        return -QCOW2_ALLOC_ENOMEM;
    b->bits = l->mem(l->opaque, NULL, (size_t)ser + 1);
    if (!b->bits)
        return -QCOW2_ALLOC_ENOMEM;
    memset(b->bits, 0, (size_t)ser + 1);
    return 0;
}

/* Set bits [first, last] of a serialised bitmap (little-endian words). */
static void set_bits(uint8_t *bits, uint64_t first, uint64_t last)
{
    while (first <= last && (first & 7)) {
        bits[first >> 3] |= (uint8_t)(1u << (first & 7));
        first++;
    }
    if (first > last)
        return;
    if (last - first + 1 >= 8) {
        uint64_t bytes = (last - first + 1) >> 3;
        memset(bits + (first >> 3), 0xff, (size_t)bytes);
        first += bytes << 3;
    }
    while (first <= last) {
        bits[first >> 3] |= (uint8_t)(1u << (first & 7));
        first++;
    }
}

int qcow2_bm_load_bits(struct qcow2_bm_list *l, uint32_t i, const struct qcow2_reader *rd)
{
    struct qcow2_bm *b;
    uint64_t cs = (uint64_t)1 << l->cluster_bits, ser, k;
    uint8_t raw[8];
    int ret;

    if (i >= l->n)
        return -QCOW2_ALLOC_EINVAL;
    b = &l->bm[i];
    ret = alloc_bits(l, b);
    if (ret < 0)
        return ret;
    ser = qcow2_bm_ser_size(l->disk_size, b->granularity_bits);
    if (qcow2_bm_table_size(l->disk_size, b->granularity_bits, l->cluster_bits) != b->table_size)
        return -QCOW2_ALLOC_EINVAL;
    for (k = 0; k < b->table_size; k++) {
        uint64_t start = k * cs, len = ser - start < cs ? ser - start : cs;
        uint64_t entry, off;

        ret = rd->pread(rd->opaque, b->table_offset + k * 8, raw, 8);
        if (ret < 0)
            return ret;
        entry = be_ld64(raw);
        off = entry & BME_TABLE_OFFSET_MASK;
        if (off) {
            ret = rd->pread(rd->opaque, off, b->bits + start, (size_t)len);
            if (ret < 0)
                return ret;
        } else if (entry & BME_TABLE_ALL_ONES) {
            /* hbitmap_deserialize_ones(): whole words, past the last bit too. */
            memset(b->bits + start, 0xff, (size_t)len);
        }
    }
    return 0;
}

int64_t qcow2_bm_find(const struct qcow2_bm_list *l, const char *name, size_t len)
{
    uint32_t i;

    for (i = 0; i < l->n; i++)
        if (l->bm[i].name_len == len && memcmp(l->bm[i].name, name, len) == 0)
            return i;
    return -1;
}

/* calc_dir_entry_size() for an entry without extra data. */
static uint64_t entry_size(size_t name_len)
{
    return (QCOW2_BITMAP_ENTRY_LEN + name_len + 7) & ~(uint64_t)7;
}

uint64_t qcow2_bm_dir_size(const struct qcow2_bm_list *l)
{
    uint64_t s = 0;
    uint32_t i;

    for (i = 0; i < l->n; i++)
        s += entry_size(l->bm[i].name_len);
    return s;
}

bool qcow2_bm_too_big(const struct qcow2_bm_list *l, uint32_t granularity_bits)
{
    /* get_bitmap_bytes_needed(): the bits in whole bytes, not clusters. */
    uint64_t bytes = (nbits(l->disk_size, granularity_bits) + 7) / 8;

    return bytes > QCOW2_BM_MAX_PHYS ||
           bytes > ((uint64_t)QCOW2_BITMAP_MAX_TABLE << l->cluster_bits);
}

int64_t qcow2_bm_add(struct qcow2_bm_list *l, const char *name, size_t len,
                     uint32_t granularity_bits, bool enabled, bool with_bits)
{
    struct qcow2_bm *b;
    int ret;

    if (len == 0 || memchr(name, 0, len))
        return -QCOW2_BM_ENAME;
    if (granularity_bits < QCOW2_BM_MIN_GRAN_BITS || granularity_bits > QCOW2_BM_MAX_GRAN_BITS)
        return -QCOW2_BM_EGRAN;
    /* qcow2_co_can_store_new_dirty_bitmap()'s order. */
    if (qcow2_bm_find(l, name, len) >= 0)
        return -QCOW2_BM_EEXIST;
    if (qcow2_bm_too_big(l, granularity_bits))
        return -QCOW2_BM_ETOO_BIG;
    if (len > QCOW2_BM_NAME_MAX)
        return -QCOW2_BM_ENAME;
    if (l->n + 1 > QCOW2_MAX_BITMAPS)
        return -QCOW2_BM_ETOO_MANY;
    if (qcow2_bm_dir_size(l) + entry_size(len) > QCOW2_MAX_BITMAP_DIR_SIZE)
        return -QCOW2_BM_EDIR_SIZE;
    ret = grow(l);
    if (ret < 0)
        return ret;
    b = &l->bm[l->n];
    memset(b, 0, sizeof(*b));
    b->name = name_dup(l, name, len);
    if (!b->name)
        return -QCOW2_ALLOC_ENOMEM;
    b->name_len = len;
    b->granularity_bits = granularity_bits;
    b->flags = enabled ? QCOW2_BITMAP_AUTO : 0;
    b->dirty = true;
    if (with_bits) {
        ret = alloc_bits(l, b);
        if (ret < 0) {
            bm_free(l, b);
            return ret;
        }
    }
    return l->n++;
}

int qcow2_bm_remove(struct qcow2_bm_list *l, uint32_t i)
{
    int ret;

    if (i >= l->n)
        return -QCOW2_BM_ENOENT;
    ret = drop_add(l, l->bm[i].table_offset, l->bm[i].table_size);
    if (ret < 0)
        return ret;
    bm_free(l, &l->bm[i]);
    memmove(&l->bm[i], &l->bm[i + 1], (size_t)(l->n - i - 1) * sizeof(l->bm[0]));
    l->n--;
    return 0;
}

int qcow2_bm_set_enabled(struct qcow2_bm_list *l, uint32_t i, bool enabled)
{
    if (i >= l->n)
        return -QCOW2_BM_ENOENT;
    if (l->bm[i].flags & QCOW2_BITMAP_IN_USE && !l->bm[i].dirty)
        return -QCOW2_BM_EINCONSIST;
    l->bm[i].flags = (l->bm[i].flags & ~QCOW2_BITMAP_AUTO) | (enabled ? QCOW2_BITMAP_AUTO : 0);
    l->bm[i].dirty = true;
    return 0;
}

int qcow2_bm_set_range(struct qcow2_bm_list *l, uint32_t i, uint64_t off, uint64_t bytes)
{
    struct qcow2_bm *b;
    uint64_t end;

    if (i >= l->n)
        return -QCOW2_BM_ENOENT;
    b = &l->bm[i];
    if (!b->bits)
        return -QCOW2_ALLOC_EINVAL;
    if (bytes == 0 || off >= l->disk_size)
        return 0;
    end = bytes > l->disk_size - off ? l->disk_size : off + bytes;
    set_bits(b->bits, off >> b->granularity_bits, (end - 1) >> b->granularity_bits);
    b->dirty = true;
    return 0;
}

int qcow2_bm_clear(struct qcow2_bm_list *l, uint32_t i)
{
    struct qcow2_bm *b;

    if (i >= l->n)
        return -QCOW2_BM_ENOENT;
    b = &l->bm[i];
    if (!b->bits)
        return -QCOW2_ALLOC_EINVAL;
    memset(b->bits, 0, (size_t)qcow2_bm_ser_size(l->disk_size, b->granularity_bits));
    b->dirty = true;
    return 0;
}

int qcow2_bm_list_truncate(struct qcow2_bm_list *l, uint64_t disk_size)
{
    for (uint32_t i = 0; i < l->n; i++) {
        struct qcow2_bm *b = &l->bm[i];
        uint64_t olds = qcow2_bm_ser_size(l->disk_size, b->granularity_bits);
        uint64_t news = qcow2_bm_ser_size(disk_size, b->granularity_bits);
        uint64_t keep = nbits(disk_size, b->granularity_bits), n;
        uint8_t *p;

        if (!b->bits)
            continue;
        p = l->mem(l->opaque, NULL, news ? (size_t)news : 1);
        if (!p)
            return -QCOW2_ALLOC_ENOMEM;
        memset(p, 0, news ? (size_t)news : 1);
        memcpy(p, b->bits, (size_t)(olds < news ? olds : news));
        /* hbitmap_truncate(): the granules from the new end on are reset. */
        for (n = keep; n % 8 && n < news * 8; n++)
            p[n / 8] &= (uint8_t) ~(1u << (n % 8));
        if (n < news * 8)
            memset(p + n / 8, 0, (size_t)(news - n / 8));
        l->mem(l->opaque, b->bits, 0);
        b->bits = p;
        b->dirty = true;
    }
    l->disk_size = disk_size;
    return 0;
}

static bool bit_at(const uint8_t *bits, uint64_t n)
{
    return bits[n >> 3] >> (n & 7) & 1;
}

int qcow2_bm_merge(struct qcow2_bm_list *l, uint32_t dst, const uint8_t *src, uint32_t src_bits)
{
    struct qcow2_bm *b;
    uint64_t n, k, ser;

    if (dst >= l->n)
        return -QCOW2_BM_ENOENT;
    b = &l->bm[dst];
    if (!b->bits || src_bits < QCOW2_BM_MIN_GRAN_BITS || src_bits > QCOW2_BM_MAX_GRAN_BITS)
        return -QCOW2_ALLOC_EINVAL;
    if (src_bits == b->granularity_bits) {
        /* hbitmap_merge() of equal sizes: whole words OR-ed. */
        ser = qcow2_bm_ser_size(l->disk_size, src_bits);
        for (k = 0; k < ser; k++)
            b->bits[k] |= src[k];
    } else {
        /* The byte ranges of src's set bits, set in dst. */
        n = nbits(l->disk_size, src_bits);
        for (k = 0; k < n; k++) {
            uint64_t off, end;

            if (!bit_at(src, k))
                continue;
            off = k << src_bits;
            end = off + ((uint64_t)1 << src_bits);
            if (end > l->disk_size)
                end = l->disk_size;
            set_bits(b->bits, off >> b->granularity_bits, (end - 1) >> b->granularity_bits);
        }
    }
    b->dirty = true;
    return 0;
}

void qcow2_bm_dir_build(const struct qcow2_bm_list *l, uint8_t *dir)
{
    uint64_t pos = 0;
    uint32_t i;

    for (i = 0; i < l->n; i++) {
        const struct qcow2_bm *b = &l->bm[i];
        uint8_t *e = dir + pos;
        uint64_t es = entry_size(b->name_len);

        memset(e, 0, (size_t)es);
        st64(e, b->table_offset);
        st32(e + 8, b->table_size);
        st32(e + 12, b->flags);
        e[16] = BME_TYPE_DIRTY_TRACKING;
        e[17] = (uint8_t)b->granularity_bits;
        e[18] = (uint8_t)(b->name_len >> 8);
        e[19] = (uint8_t)b->name_len;
        /* extra_data_size stays 0 */
        memcpy(e + QCOW2_BITMAP_ENTRY_LEN, b->name, b->name_len);
        pos += es;
    }
}

/* clear_bitmap_table(): free the data clusters of a table held in memory. */
static void free_data(struct qcow2_alloc *a, const uint64_t *tb, uint64_t n)
{
    uint64_t k;

    for (k = 0; k < n; k++)
        if (tb[k] & BME_TABLE_OFFSET_MASK)
            (void)qcow2_alloc_free(a, tb[k] & BME_TABLE_OFFSET_MASK, a->cluster_size, true);
}

/* Whether the serialised bytes [start, start + len) have a bit below nb set. */
static bool any_set(const uint8_t *buf, uint64_t start, uint64_t len, uint64_t nb)
{
    uint64_t k;

    for (k = 0; k < len; k++) {
        uint64_t bit = (start + k) * 8;
        uint8_t v = buf[k];

        if (!v || bit >= nb)
            continue;
        if (nb - bit < 8)
            v &= (uint8_t)((1u << (nb - bit)) - 1);
        if (v)
            return true;
    }
    return false;
}

/* store_bitmap_data() then store_bitmap(): data clusters, then the table. */
static int store_one(struct qcow2_bm_list *l, uint32_t i, struct qcow2_alloc *a, uint8_t *buf,
                     qcow2_bm_fill_fn fill, void *opaque)
{
    struct qcow2_bm *b = &l->bm[i];
    uint64_t cs = a->cluster_size, ser, nb, tb_size, k, tb_bytes;
    uint64_t *tb;
    int64_t off, tb_off = 0;
    int ret = 0;

    ser = qcow2_bm_ser_size(l->disk_size, b->granularity_bits);
    nb = nbits(l->disk_size, b->granularity_bits);
    tb_size = qcow2_bm_table_size(l->disk_size, b->granularity_bits, l->cluster_bits);
    if (tb_size > QCOW2_BITMAP_MAX_TABLE || tb_size * cs > QCOW2_BM_MAX_PHYS)
        return -QCOW2_BM_ETOO_BIG;
    if (!b->bits && !fill)
        return -QCOW2_ALLOC_EINVAL;
    /* tb_size >= 1: a zero-length image still has one word. */
    tb_bytes = (tb_size ? tb_size : 1) * 8;
    tb = a->ops->mem(a->opaque, NULL, (size_t)tb_bytes);
    if (!tb)
        return -QCOW2_ALLOC_ENOMEM;
    memset(tb, 0, (size_t)tb_bytes);

    for (k = 0; k < tb_size; k++) {
        uint64_t start = k * cs, len = ser - start < cs ? ser - start : cs;

        if (b->bits)
            memcpy(buf, b->bits + start, (size_t)len);
        else if ((ret = fill(opaque, i, start, buf, (size_t)len)) < 0)
            goto fail;
        if (!any_set(buf, start, len, nb))
            continue;
        off = qcow2_alloc_clusters(a, cs);
        if (off < 0) {
            ret = (int)off;
            goto fail;
        }
        tb[k] = (uint64_t)off;
        memset(buf + len, 0, (size_t)(cs - len));
        ret = a->ops->write(a->opaque, (uint64_t)off, buf, (size_t)cs);
        if (ret < 0)
            goto fail;
    }

    tb_off = qcow2_alloc_clusters(a, tb_size * 8);
    if (tb_off < 0) {
        ret = (int)tb_off;
        tb_off = 0;
        goto fail;
    }
    for (k = 0; k < tb_size; k++)
        st64((uint8_t *)&tb[k], tb[k]);
    ret = a->ops->write(a->opaque, (uint64_t)tb_off, tb, (size_t)(tb_size * 8));
    for (k = 0; k < tb_size; k++)
        tb[k] = be_ld64((const uint8_t *)&tb[k]);
    if (ret < 0)
        goto fail;
    a->ops->mem(a->opaque, tb, 0);
    b->table_offset = (uint64_t)tb_off;
    b->table_size = (uint32_t)tb_size;
    return 0;

fail:
    free_data(a, tb, tb_size);
    if (tb_off > 0)
        (void)qcow2_alloc_free(a, (uint64_t)tb_off, tb_size * 8, false);
    a->ops->mem(a->opaque, tb, 0);
    return ret;
}

/* free_bitmap_clusters(): the data clusters of a stored table, then the table. */
static void free_table(struct qcow2_alloc *a, uint8_t *buf, uint64_t offset, uint32_t size)
{
    uint64_t cs = a->cluster_size, done = 0, bytes = (uint64_t)size * 8;

    while (done < bytes) {
        uint64_t n = bytes - done < cs ? bytes - done : cs, k;

        if (a->ops->read(a->opaque, offset + done, buf, (size_t)n) < 0)
            return;
        for (k = 0; k < n; k += 8) {
            uint64_t off = be_ld64(buf + k) & BME_TABLE_OFFSET_MASK;
            if (off)
                (void)qcow2_alloc_free(a, off, cs, true);
        }
        done += n;
    }
    (void)qcow2_alloc_free(a, offset, bytes, false);
}

int qcow2_bm_store_dir(struct qcow2_bm_list *l, struct qcow2_alloc *a, struct qcow2_bm_dir *out)
{
    uint64_t dir_size;
    uint8_t *dir;
    int64_t dir_off;
    int ret;

    memset(out, 0, sizeof(*out));
    if (l->n == 0)
        return 0;
    dir_size = qcow2_bm_dir_size(l);
    if (dir_size > QCOW2_MAX_BITMAP_DIR_SIZE || l->n > QCOW2_MAX_BITMAPS)
        return -QCOW2_ALLOC_EINVAL;
    dir = l->mem(l->opaque, NULL, (size_t)dir_size);
    if (!dir)
        return -QCOW2_ALLOC_ENOMEM;
    qcow2_bm_dir_build(l, dir);
    dir_off = qcow2_alloc_clusters(a, dir_size);
    if (dir_off < 0) {
        ret = (int)dir_off;
        goto out;
    }
    ret = a->ops->write(a->opaque, (uint64_t)dir_off, dir, (size_t)dir_size);
    if (ret < 0) {
        (void)qcow2_alloc_free(a, (uint64_t)dir_off, dir_size, false);
        goto out;
    }
    out->nb_bitmaps = l->n;
    out->offset = (uint64_t)dir_off;
    out->size = dir_size;
out:
    l->mem(l->opaque, dir, 0);
    return ret;
}

int qcow2_bm_store(struct qcow2_bm_list *l, struct qcow2_alloc *a, uint8_t *buf,
                   qcow2_bm_fill_fn fill, void *opaque, struct qcow2_bm_dir *out)
{
    struct qcow2_bm_table *old;
    uint32_t i, stored = 0;
    int ret;

    memset(out, 0, sizeof(*out));
    if (l->cluster_bits != a->cluster_bits)
        return -QCOW2_ALLOC_EINVAL;
    /* Remember the old tables first: a failure must leave them in place. */
    old = l->mem(l->opaque, NULL, (size_t)(l->n ? l->n : 1) * sizeof(*old));
    if (!old)
        return -QCOW2_ALLOC_ENOMEM;
    for (i = 0; i < l->n; i++) {
        old[i].offset = l->bm[i].table_offset;
        old[i].size = l->bm[i].table_size;
    }

    for (i = 0; i < l->n; i++) {
        struct qcow2_bm *b = &l->bm[i];

        if (!b->dirty)
            continue;
        /* A stored bitmap is written anew, enabled or not, never in use. */
        b->flags &= QCOW2_BITMAP_AUTO;
        ret = store_one(l, i, a, buf, fill, opaque);
        if (ret < 0)
            goto fail;
        stored = i + 1;
    }

    ret = qcow2_bm_store_dir(l, a, out);
    if (ret < 0)
        goto fail;

    /* The replaced tables are freed once the header points at the new directory. */
    for (i = 0; i < l->n; i++) {
        if (l->bm[i].dirty && old[i].offset && old[i].offset != l->bm[i].table_offset) {
            int r = drop_add(l, old[i].offset, old[i].size);
            if (r < 0 && ret == 0)
                ret = r;
        }
        l->bm[i].dirty = false;
    }
    l->mem(l->opaque, old, 0);
    return ret;

fail:
    /* QEMU's fail path: free what this store wrote, keep the old tables. */
    for (i = 0; i < stored; i++) {
        struct qcow2_bm *b = &l->bm[i];

        if (!b->dirty || b->table_offset == old[i].offset)
            continue;
        free_table(a, buf, b->table_offset, b->table_size);
        b->table_offset = old[i].offset;
        b->table_size = old[i].size;
    }
    l->mem(l->opaque, old, 0);
    return ret;
}

void qcow2_bm_store_finish(struct qcow2_bm_list *l, struct qcow2_alloc *a, uint8_t *buf,
                           uint64_t old_dir_offset, uint64_t old_dir_size)
{
    uint32_t i;

    if (old_dir_size > 0)
        (void)qcow2_alloc_free(a, old_dir_offset, old_dir_size, false);
    for (i = 0; i < l->ndrop; i++)
        free_table(a, buf, l->drop[i].offset, l->drop[i].size);
    l->ndrop = 0;
}

uint32_t qcow2_bm_mark_in_use(struct qcow2_bm_list *l, uint8_t *dir, uint64_t size)
{
    uint64_t pos = 0;
    uint32_t i, marked = 0;

    for (i = 0; i < l->n && pos + QCOW2_BITMAP_ENTRY_LEN <= size; i++) {
        struct qcow2_bm *b = &l->bm[i];

        if (!(b->flags & QCOW2_BITMAP_IN_USE)) {
            b->flags |= QCOW2_BITMAP_IN_USE;
            b->dirty = true;
            st32(dir + pos + 12, b->flags);
            marked++;
        }
        pos += entry_size(b->name_len);
    }
    return marked;
}

/* --- the header (qcow2_update_header) --- */

#define HDR_LEN_V2      72
#define HDR_LEN_V3      112
#define EXT_FEATURE_LEN 48

static const struct {
    uint8_t type, bit;
    const char *name;
} features[] = {
    {0, 0, "dirty bit"},        {0, 1, "corrupt bit"},         {0, 2, "external data file"},
    {0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
    {2, 0, "bitmaps"},          {2, 1, "raw external data"},
};

/* header_ext_add(): magic, length, data padded to 8.  -1: does not fit. */
static int64_t ext_put(uint8_t *out, uint64_t pos, uint64_t cs, uint32_t magic, const uint8_t *data,
                       uint64_t len)
{
    uint64_t ext_len = 8 + ((len + 7) & ~(uint64_t)7);

    if (cs - pos < ext_len)
        return -1;
    st32(out + pos, magic);
    st32(out + pos + 4, (uint32_t)len);
    if (len)
        memcpy(out + pos + 8, data, (size_t)len);
    return (int64_t)(pos + ext_len);
}

/*
 * The unknown extensions of old, found the way qcow2_read_extensions()
 * walks them; visit(i-th from the end) so that QEMU's reversed list comes
 * out.  Returns how many there are.
 */
static uint32_t unknown_exts(const uint8_t *old, size_t old_len, const struct qcow2_header *h,
                             uint64_t *offs, uint32_t max)
{
    uint64_t off = h->version == 2 ? HDR_LEN_V2 : h->header_length, end = h->ext_end;
    uint32_t n = 0;

    while (off < end && end - off >= 8) {
        uint32_t magic = qcow2_be32(old, old_len, off);
        uint32_t len = qcow2_be32(old, old_len, off + 4);

        if (magic == QCOW2_EXT_END || len > end - off - 8)
            break;
        switch (magic) {
        case QCOW2_EXT_BACKING_FMT:
        case QCOW2_EXT_FEATURES:
        case QCOW2_EXT_CRYPTO:
        case QCOW2_EXT_BITMAPS:
        case QCOW2_EXT_DATA_FILE:
            break;
        default:
            if (n < max)
                offs[n] = off;
            n++;
        }
        off += 8 + (((uint64_t)len + 7) & ~(uint64_t)7);
    }
    return n;
}

/* Copy len bytes of old at off (zeros past old_len). */
static void copy_old(uint8_t *dst, const uint8_t *old, size_t old_len, uint64_t off, uint64_t len)
{
    uint64_t k;

    for (k = 0; k < len; k++)
        dst[k] = off + k < old_len ? old[off + k] : 0;
}

int qcow2_header_rewrite(const uint8_t *old, size_t old_len, const struct qcow2_header *h,
                         const struct qcow2_exts *x, const struct qcow2_header_state *st,
                         uint8_t *out)
{
    uint64_t cs = h->cluster_size, pos, unknown_fields = 0;
    uint64_t offs[64];
    uint32_t nunk, i, version = st->version ? st->version : h->version;
    int64_t r;

    if (h->version >= 3 && h->header_length > HDR_LEN_V3)
        unknown_fields = h->header_length - HDR_LEN_V3;
    memset(out, 0, (size_t)cs);
    st32(out + 0, QCOW2_MAGIC);
    st32(out + 4, version);
    st32(out + 20, h->cluster_bits);
    st64(out + 24, h->disk_size);
    st32(out + 32, h->crypt_method);
    st32(out + 36, st->l1_size);
    st64(out + 40, st->l1_offset);
    st64(out + 48, st->reftable_offset);
    st32(out + 56, st->reftable_clusters);
    st32(out + 60, h->nb_snapshots);
    st64(out + 64, h->snapshots_offset);
    if (version == 2) {
        pos = HDR_LEN_V2;
    } else {
        st64(out + 72, st->incompatible);
        st64(out + 80, st->compatible);
        st64(out + 88, st->autoclear);
        st32(out + 96, h->refcount_order);
        st32(out + 100, (uint32_t)(HDR_LEN_V3 + unknown_fields));
        out[104] = h->compression_type;
        pos = HDR_LEN_V3;
    }
    /* The unknown header fields follow the header qemu writes, also a version 2 one. */
    if (unknown_fields > cs - pos)
        return -QCOW2_ALLOC_EINVAL;
    copy_old(out + pos, old, old_len, HDR_LEN_V3, unknown_fields);
    pos += unknown_fields;

    if (x->has_backing_fmt) {
        r = ext_put(out, pos, cs, QCOW2_EXT_BACKING_FMT, x->backing_fmt, x->backing_fmt_len);
        if (r < 0)
            return -QCOW2_ALLOC_EINVAL;
        pos = (uint64_t)r;
    }
    if (x->has_data_file) {
        r = ext_put(out, pos, cs, QCOW2_EXT_DATA_FILE, x->data_file, x->data_file_len);
        if (r < 0)
            return -QCOW2_ALLOC_EINVAL;
        pos = (uint64_t)r;
    }
    if (x->has_crypto && x->crypto_offset) {
        uint8_t c[16];

        st64(c, x->crypto_offset);
        st64(c + 8, x->crypto_length);
        r = ext_put(out, pos, cs, QCOW2_EXT_CRYPTO, c, sizeof(c));
        if (r < 0)
            return -QCOW2_ALLOC_EINVAL;
        pos = (uint64_t)r;
    }
    if (version >= 3 && cs > 4096) {
        uint8_t table[sizeof(features) / sizeof(features[0]) * EXT_FEATURE_LEN];

        memset(table, 0, sizeof(table));
        for (i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
            table[i * EXT_FEATURE_LEN] = features[i].type;
            table[i * EXT_FEATURE_LEN + 1] = features[i].bit;
            memcpy(table + i * EXT_FEATURE_LEN + 2, features[i].name, strlen(features[i].name));
        }
        r = ext_put(out, pos, cs, QCOW2_EXT_FEATURES, table, sizeof(table));
        if (r < 0)
            return -QCOW2_ALLOC_EINVAL;
        pos = (uint64_t)r;
    }
    if (st->bitmaps.nb_bitmaps > 0) {
        uint8_t b[24];

        st32(b, st->bitmaps.nb_bitmaps);
        st32(b + 4, 0);
        st64(b + 8, st->bitmaps.size);
        st64(b + 16, st->bitmaps.offset);
        r = ext_put(out, pos, cs, QCOW2_EXT_BITMAPS, b, sizeof(b));
        if (r < 0)
            return -QCOW2_ALLOC_EINVAL;
        pos = (uint64_t)r;
    }
    nunk = unknown_exts(old, old_len, h, offs, sizeof(offs) / sizeof(offs[0]));
    if (nunk > sizeof(offs) / sizeof(offs[0]))
        return -QCOW2_ALLOC_EINVAL; /* more than instar keeps: refuse, not lose them */
    for (i = nunk; i-- > 0;) {
        uint32_t len = qcow2_be32(old, old_len, offs[i] + 4);
        uint64_t ext_len = 8 + (((uint64_t)len + 7) & ~(uint64_t)7);

        if (cs - pos < ext_len)
            return -QCOW2_ALLOC_EINVAL;
        st32(out + pos, qcow2_be32(old, old_len, offs[i]));
        st32(out + pos + 4, len);
        copy_old(out + pos + 8, old, old_len, offs[i] + 8, len);
        pos += ext_len;
    }
    r = ext_put(out, pos, cs, QCOW2_EXT_END, NULL, 0);
    if (r < 0)
        return -QCOW2_ALLOC_EINVAL;
    pos = (uint64_t)r;
    if (x->has_backing_file) {
        if (cs - pos < x->backing_file_len)
            return -QCOW2_ALLOC_EINVAL;
        memcpy(out + pos, x->backing_file, x->backing_file_len);
        st64(out + 8, pos);
        st32(out + 16, (uint32_t)x->backing_file_len);
    }
    return 0;
}
