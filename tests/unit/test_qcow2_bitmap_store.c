/*
 * formats/qcow2/bitmap_store.c over an in-memory file, checked byte for
 * byte against the files qemu-img makes from the same start:
 *  - `qemu-img bitmap --add` on a fresh image (one new, empty bitmap:
 *    its table, directory and header, for several cluster sizes, a
 *    backing file, an external data file);
 *  - `qemu-img convert --bitmaps` (the bits of a source's bitmaps, set by
 *    qemu-io writes, stored into the output of a plain convert: data
 *    clusters, tables, directory);
 *  - a second `qemu-img bitmap --add` on an image with a bitmap holding
 *    bits (qemu's read-write open marks the loaded bitmap in use in place,
 *    its close stores it anew, then the new one, and frees the old
 *    directory and table, punching the old data clusters);
 *  - `qemu-img bitmap --remove` / `--clear` / `--merge` / `--disable`
 *    the same way.
 * The list operations alone (names, granularities, limits, bit ranges)
 * are checked at the end.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "bitmap.h"
#include "bitmap_store.h"
#include "header.h"
#include "qcow2_test_util.h"
#include "test_sh.h"

static const struct qcow2_alloc_ops mops = {memfile_read, memfile_write, memfile_mem,
                                            memfile_discard, NULL};

/* An image opened for writing: its parse, allocator and bitmap list. */
struct wimg {
    struct memfile f;
    struct qcow2_header h;
    struct qcow2_exts x;
    uint8_t *first; /* a copy of the first cluster, as opened */
    struct qcow2_bitmap *bms;
    struct qcow2_alloc a;
    struct qcow2_bm_list l;
};

static int on_bm(void *o, uint32_t i, const struct qcow2_bitmap *bm)
{
    ((struct qcow2_bitmap *)o)[i] = *bm;
    return 0;
}

static void wimg_open(struct wimg *w, struct img im)
{
    struct qcow2_err_info ei;

    memset(w, 0, sizeof(*w));
    memfile_copy(&w->f, im.p, im.len);
    cr_assert_eq(qcow2_header_parse(w->f.p, w->f.len, &w->h, &ei), 0);
    w->first = malloc(w->h.cluster_size);
    memfile_read(&w->f, 0, w->first, w->h.cluster_size);
    cr_assert_eq(qcow2_ext_parse(w->first, w->h.cluster_size, &w->h, NULL, NULL, &w->x, &ei), 0);
    cr_assert_eq(qcow2_alloc_init(&w->a, &mops, &w->f, w->h.cluster_bits, w->h.refcount_order,
                                  w->h.refcount_table_offset, w->h.refcount_table_clusters),
                 0);
    qcow2_bm_list_init(&w->l, w->h.disk_size, w->h.cluster_bits, memfile_mem, NULL);
    if (w->x.nb_bitmaps) {
        w->bms = calloc(w->x.nb_bitmaps, sizeof(*w->bms));
        cr_assert_eq(qcow2_bitmap_dir_parse(w->f.p + w->x.bitmap_dir_offset, w->x.bitmap_dir_size,
                                            w->x.nb_bitmaps, &w->h, on_bm, w->bms, &ei),
                     0);
        cr_assert_eq(qcow2_bm_list_load(&w->l, w->bms, w->x.nb_bitmaps), 0);
    }
}

static void load_all_bits(struct wimg *w)
{
    struct qcow2_reader rd = {memfile_read, &w->f};
    uint32_t i;

    for (i = 0; i < w->l.n; i++)
        cr_assert_eq(qcow2_bm_load_bits(&w->l, i, &rd), 0);
}

/*
 * What qemu's read-write open does to loaded bitmaps: IN_USE written into
 * the directory in place (the header writes around it end as they began).
 */
static void mark_in_use(struct wimg *w)
{
    load_all_bits(w);
    qcow2_bm_mark_in_use(&w->l, w->f.p + w->x.bitmap_dir_offset, w->x.bitmap_dir_size);
}

/*
 * qemu's close (dir_only false: store, flush, header, free the old,
 * flush), or an immediate directory update (dir_only).
 */
static void wimg_commit(struct wimg *w, bool dir_only)
{
    struct qcow2_header_state st;
    struct qcow2_bm_dir dir;
    uint8_t *buf = malloc(w->h.cluster_size), *hdr = malloc(w->h.cluster_size);

    if (dir_only)
        cr_assert_eq(qcow2_bm_store_dir(&w->l, &w->a, &dir), 0);
    else
        cr_assert_eq(qcow2_bm_store(&w->l, &w->a, buf, NULL, NULL, &dir), 0);
    cr_assert_eq(qcow2_alloc_flush(&w->a), 0);
    memset(&st, 0, sizeof(st));
    st.l1_offset = w->h.l1_table_offset;
    st.l1_size = w->h.l1_size;
    st.reftable_offset = w->a.reftable_offset;
    st.reftable_clusters = (uint32_t)((w->a.reftable_size * 8) >> w->h.cluster_bits);
    st.incompatible = w->h.incompatible_features;
    st.compatible = w->h.compatible_features;
    st.autoclear = (w->h.autoclear_features & ~QCOW2_AUTOCLEAR_BITMAPS) |
                   (dir.nb_bitmaps ? QCOW2_AUTOCLEAR_BITMAPS : 0);
    st.bitmaps = dir;
    cr_assert_eq(qcow2_header_rewrite(w->first, w->h.cluster_size, &w->h, &w->x, &st, hdr), 0);
    cr_assert_eq(memfile_write(&w->f, 0, hdr, w->h.cluster_size), 0);
    qcow2_bm_store_finish(&w->l, &w->a, buf, w->x.bitmap_dir_offset,
                          w->x.nb_bitmaps ? w->x.bitmap_dir_size : 0);
    cr_assert_eq(qcow2_alloc_flush(&w->a), 0);
    w->x.nb_bitmaps = dir.nb_bitmaps;
    w->x.bitmap_dir_offset = dir.offset;
    w->x.bitmap_dir_size = dir.size;
    free(buf);
    free(hdr);
}

static void wimg_store(struct wimg *w)
{
    wimg_commit(w, false);
}

static void wimg_close(struct wimg *w)
{
    qcow2_bm_list_release(&w->l);
    qcow2_alloc_release(&w->a);
    free(w->bms);
    free(w->first);
    free(w->f.p);
}

static void assert_same(const struct wimg *w, struct img want)
{
    size_t i;

    for (i = 0; i < w->f.len && i < want.len; i++)
        if (w->f.p[i] != want.p[i])
            cr_assert_fail("first difference at byte %zu: %#x, qemu %#x", i, w->f.p[i], want.p[i]);
    cr_assert_eq(w->f.len, want.len, "length %zu, qemu %zu", w->f.len, want.len);
}

static struct img copy(struct img im)
{
    struct img c = {malloc(im.len), im.len};

    memcpy(c.p, im.p, im.len);
    return c;
}

/* --- a new bitmap on a fresh image (qemu-img bitmap --add) --- */

static void add_case(const char *create, const char *add_opts, const char *name, uint32_t gbits,
                     bool enabled)
{
    char cmd[1024];
    struct img base, want;
    struct wimg w;

    base = copy(img_make(create, "t.qcow2"));
    snprintf(cmd, sizeof(cmd), "%s && qemu-img bitmap --add %s t.qcow2 '%s'", create, add_opts,
             name);
    want = img_make(cmd, "t.qcow2");
    wimg_open(&w, base);
    cr_assert_geq(qcow2_bm_add(&w.l, name, strlen(name), gbits, enabled, true), 0);
    wimg_store(&w);
    assert_same(&w, want);
    wimg_close(&w);
    free(base.p);
}

Test(bitmap_store, add_default)
{
    add_case("qemu-img create -q -f qcow2 t.qcow2 64M", "", "b0", 16, true);
}

Test(bitmap_store, add_disabled_small_granularity)
{
    add_case("qemu-img create -q -f qcow2 t.qcow2 1G", "-g 512 --disable", "fine", 9, false);
}

Test(bitmap_store, add_cluster_sizes)
{
    add_case("qemu-img create -q -f qcow2 -o cluster_size=512 t.qcow2 100M", "-g 4k", "c512", 12,
             true);
    add_case("qemu-img create -q -f qcow2 -o cluster_size=2M t.qcow2 3G", "", "c2M", 16, true);
    add_case("qemu-img create -q -f qcow2 -o refcount_bits=1,cluster_size=4k t.qcow2 7M", "-g 1M",
             "r1", 20, true);
}

Test(bitmap_store, add_backing_and_data_file)
{
    add_case("qemu-img create -q -f qcow2 b.qcow2 8M && qemu-img create -q -f qcow2 -b b.qcow2 "
             "-F qcow2 t.qcow2",
             "", "over", 16, true);
    add_case("qemu-img create -q -f qcow2 -o data_file=t.data t.qcow2 8M", "", "df", 16, true);
    add_case("qemu-img create -q -f qcow2 -o extended_l2=on t.qcow2 8M", "-g 2M", "x", 21, true);
}

/* --- convert --bitmaps: the source's bits into a plain convert's output --- */

static void convert_case(const char *make_src, const char *opts)
{
    char cmd[2048];
    struct img plain, want, src;
    struct wimg s, w;
    uint32_t i;

    src = copy(img_make(make_src, "s.qcow2"));
    snprintf(cmd, sizeof(cmd), "%s && qemu-img convert -O qcow2 %s s.qcow2 t.qcow2", make_src,
             opts);
    plain = copy(img_make(cmd, "t.qcow2"));
    snprintf(cmd, sizeof(cmd), "%s && qemu-img convert --bitmaps -O qcow2 %s s.qcow2 t.qcow2",
             make_src, opts);
    want = img_make(cmd, "t.qcow2");

    wimg_open(&s, src);
    load_all_bits(&s);
    wimg_open(&w, plain);
    for (i = 0; i < s.l.n; i++) {
        const struct qcow2_bm *b = &s.l.bm[i];
        int64_t k = qcow2_bm_add(&w.l, b->name, b->name_len, b->granularity_bits,
                                 b->flags & QCOW2_BITMAP_AUTO, true);

        cr_assert_geq(k, 0);
        cr_assert_eq(qcow2_bm_merge(&w.l, (uint32_t)k, b->bits, b->granularity_bits), 0);
    }
    wimg_store(&w);
    assert_same(&w, want);
    wimg_close(&w);
    wimg_close(&s);
    free(plain.p);
    free(src.p);
}

#define SRC_BITS                                                                                   \
    "qemu-img create -q -f qcow2 s.qcow2 64M && qemu-img bitmap --add s.qcow2 a && "               \
    "qemu-img bitmap --add -g 512 s.qcow2 b && qemu-img bitmap --add -g 4k s.qcow2 c && "          \
    "qemu-io -c 'write -P 1 0 1M' -c 'write 10M 64k' -c 'write 63M 1M' s.qcow2 && "                \
    "qemu-img bitmap --disable s.qcow2 c && qemu-io -c 'write 40M 4k' s.qcow2"

Test(bitmap_store, convert_bits)
{
    convert_case(SRC_BITS, "");
}

Test(bitmap_store, convert_bits_small_clusters)
{
    convert_case(SRC_BITS, "-o cluster_size=512");
}

Test(bitmap_store, convert_bits_big_clusters_compressed)
{
    convert_case(SRC_BITS, "-c -o cluster_size=2M");
}

/* --- a read-write open and close of an image with bitmaps --- */

#define ONE_BITMAP                                                                                 \
    "qemu-img create -q -f qcow2 t.qcow2 64M && qemu-img bitmap --add -g 4k t.qcow2 first && "     \
    "qemu-img bitmap --add -g 1M t.qcow2 other && "                                                \
    "qemu-io -c 'write 0 1M' -c 'write 30M 64k' t.qcow2"

/* The image made by before, then `qemu-img bitmap` with args on it by qemu; op on ours. */
static void reopen_case(const char *args, void (*op)(struct wimg *w))
{
    char cmd[2048];
    struct img base, want;
    struct wimg w;

    base = copy(img_make(ONE_BITMAP, "t.qcow2"));
    snprintf(cmd, sizeof(cmd), "%s && qemu-img bitmap %s", ONE_BITMAP, args);
    want = img_make(cmd, "t.qcow2");
    wimg_open(&w, base);
    mark_in_use(&w);
    op(&w);
    wimg_store(&w);
    assert_same(&w, want);
    wimg_close(&w);
    free(base.p);
}

static void op_add(struct wimg *w)
{
    cr_assert_eq(qcow2_bm_add(&w->l, "second", 6, 16, true, true), 2);
}

/* qemu removes at once: a new directory, then the bitmap's clusters freed. */
static void op_remove(struct wimg *w)
{
    cr_assert_eq(qcow2_bm_remove(&w->l, (uint32_t)qcow2_bm_find(&w->l, "first", 5)), 0);
    wimg_commit(w, true);
}

static void op_clear(struct wimg *w)
{
    cr_assert_eq(qcow2_bm_clear(&w->l, (uint32_t)qcow2_bm_find(&w->l, "first", 5)), 0);
}

static void op_disable(struct wimg *w)
{
    cr_assert_eq(qcow2_bm_set_enabled(&w->l, (uint32_t)qcow2_bm_find(&w->l, "other", 5), false), 0);
}

static void op_merge(struct wimg *w)
{
    /* other (1M granularity) into first (4k): by ranges. */
    cr_assert_eq(qcow2_bm_merge(&w->l, 0, w->l.bm[1].bits, w->l.bm[1].granularity_bits), 0);
}

Test(bitmap_store, reopen_add)
{
    reopen_case("--add t.qcow2 second", op_add);
}

Test(bitmap_store, reopen_remove)
{
    reopen_case("--remove t.qcow2 first", op_remove);
}

Test(bitmap_store, reopen_clear)
{
    reopen_case("--clear t.qcow2 first", op_clear);
}

Test(bitmap_store, reopen_disable)
{
    reopen_case("--disable t.qcow2 other", op_disable);
}

Test(bitmap_store, reopen_merge)
{
    reopen_case("--merge other t.qcow2 first", op_merge);
}

/* --- the list alone --- */

Test(bitmap_store, list_ops)
{
    struct qcow2_bm_list l;
    char longname[QCOW2_BM_NAME_MAX + 2];

    qcow2_bm_list_init(&l, (64 << 20) + 1536, 16, memfile_mem, NULL);
    cr_assert_eq(qcow2_bm_ser_size((64 << 20) + 1536, 16), 136);
    cr_assert_eq(qcow2_bm_ser_size((64 << 20) + 1536, 10), 8200);
    cr_assert_eq(qcow2_bm_table_size(1ull << 40, 9, 9), (1ull << 40) / 512 / 8 / 512);
    cr_assert_eq(qcow2_bm_add(&l, "", 0, 16, true, true), -QCOW2_BM_ENAME);
    memset(longname, 'n', sizeof(longname));
    cr_assert_eq(qcow2_bm_add(&l, longname, QCOW2_BM_NAME_MAX + 1, 16, true, true),
                 -QCOW2_BM_ENAME);
    cr_assert_eq(qcow2_bm_add(&l, longname, QCOW2_BM_NAME_MAX, 16, true, true), 0);
    cr_assert_eq(qcow2_bm_add(&l, "g", 1, 8, true, true), -QCOW2_BM_EGRAN);
    cr_assert_eq(qcow2_bm_add(&l, "g", 1, 32, true, true), -QCOW2_BM_EGRAN);
    cr_assert_eq(qcow2_bm_add(&l, "g", 1, 10, true, true), 1);
    cr_assert_eq(qcow2_bm_add(&l, "g", 1, 12, true, true), -QCOW2_BM_EEXIST);
    cr_assert_eq(qcow2_bm_find(&l, "g", 1), 1);
    cr_assert_eq(qcow2_bm_find(&l, "h", 1), -1);
    /* A write of 1 byte at the last byte sets the last granule's bit only. */
    cr_assert_eq(qcow2_bm_set_range(&l, 1, (64 << 20) + 1535, 1), 0);
    cr_assert_eq(l.bm[1].bits[8192], 0x02);
    cr_assert_eq(qcow2_bm_set_range(&l, 1, 1023, 2), 0);
    cr_assert_eq(l.bm[1].bits[0], 0x03);
    /* Past the end: clipped. */
    cr_assert_eq(qcow2_bm_set_range(&l, 1, 0, ~0ull), 0);
    cr_assert_eq(l.bm[1].bits[8192], 0x03);
    cr_assert_eq(l.bm[1].bits[8193], 0);
    cr_assert_eq(qcow2_bm_clear(&l, 1), 0);
    cr_assert_eq(l.bm[1].bits[0], 0);
    cr_assert_eq(qcow2_bm_dir_size(&l), ((24 + 1023 + 7) & ~7u) + 32);
    cr_assert_eq(qcow2_bm_remove(&l, 0), 0);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(qcow2_bm_find(&l, "g", 1), 0);
    cr_assert_eq(qcow2_bm_remove(&l, 5), -QCOW2_BM_ENOENT);
    qcow2_bm_list_release(&l);
}

/*
 * qemu-img bitmap --add's limits in qcow2_co_can_store_new_dirty_bitmap()'s
 * order: an existing name, then the size of the bits (get_bitmap_bytes_needed:
 * whole bytes, BME_MAX_PHYS_SIZE = 512 MiB), then the name's length, the
 * count (65535) and the directory's size (1024 * 65535 bytes).  The lists are built
 * directly: making 65535 bitmaps with qemu-img takes hours.
 */
Test(bitmap_store, add_limits_in_qemu_order)
{
    static char name1023[QCOW2_BM_NAME_MAX + 1], name1024[QCOW2_BM_NAME_MAX + 2];
    struct qcow2_bm_list l;
    uint32_t i;

    memset(name1023, 'n', QCOW2_BM_NAME_MAX);
    memset(name1024, 'n', QCOW2_BM_NAME_MAX + 1);
    /* 4 TiB at 512 bytes per bit: exactly 1 GiB of bits; at 1 KiB: 512 MiB, the limit. */
    qcow2_bm_list_init(&l, 4ull << 40, 16, memfile_mem, NULL);
    cr_assert(qcow2_bm_too_big(&l, 9));
    cr_assert(!qcow2_bm_too_big(&l, 10));
    cr_assert_eq(qcow2_bm_add(&l, name1024, QCOW2_BM_NAME_MAX + 1, 9, true, false),
                 -QCOW2_BM_ETOO_BIG);
    cr_assert_eq(qcow2_bm_add(&l, name1024, QCOW2_BM_NAME_MAX + 1, 10, true, false),
                 -QCOW2_BM_ENAME);
    cr_assert_eq(qcow2_bm_add(&l, "a", 1, 10, true, false), 0);
    /* One byte more than 512 MiB of bits. */
    l.disk_size = (4ull << 40) + 1;
    cr_assert(qcow2_bm_too_big(&l, 10));
    cr_assert_eq(qcow2_bm_add(&l, "a", 1, 10, true, false), -QCOW2_BM_EEXIST);
    cr_assert_eq(qcow2_bm_add(&l, "b", 1, 10, true, false), -QCOW2_BM_ETOO_BIG);
    qcow2_bm_list_release(&l);

    /* 65535 bitmaps (32-byte entries, 2 MiB of directory): the count. */
    qcow2_bm_list_init(&l, 1 << 20, 16, memfile_mem, NULL);
    l.bm = calloc(QCOW2_MAX_BITMAPS, sizeof(*l.bm));
    l.cap = QCOW2_MAX_BITMAPS;
    for (i = 0; i < QCOW2_MAX_BITMAPS; i++) {
        l.bm[i].name = strdup("same");
        l.bm[i].name_len = 4;
        l.bm[i].granularity_bits = 16;
    }
    l.n = QCOW2_MAX_BITMAPS;
    cr_assert_eq(qcow2_bm_add(&l, "same", 4, 16, true, false), -QCOW2_BM_EEXIST);
    cr_assert_eq(qcow2_bm_add(&l, name1024, QCOW2_BM_NAME_MAX + 1, 16, true, false),
                 -QCOW2_BM_ENAME);
    cr_assert_eq(qcow2_bm_add(&l, "new", 3, 16, true, false), -QCOW2_BM_ETOO_MANY);
    /* 64034 entries of 1048 bytes: 208 bytes short of the largest directory. */
    for (i = 64034; i < QCOW2_MAX_BITMAPS; i++)
        free(l.bm[i].name);
    l.n = 64034;
    for (i = 0; i < l.n; i++) {
        free(l.bm[i].name);
        l.bm[i].name = strdup(name1023);
        l.bm[i].name_len = QCOW2_BM_NAME_MAX;
    }
    cr_assert_eq(qcow2_bm_dir_size(&l), 64034ull * 1048);
    {
        char n200[200];

        memset(n200, 'x', sizeof(n200));
        cr_assert_eq(qcow2_bm_add(&l, n200, 185, 16, true, false), -QCOW2_BM_EDIR_SIZE);
        /* 24 + 184 bytes: the directory at its largest. */
        cr_assert_eq(qcow2_bm_add(&l, n200, 184, 16, true, false), 64034);
    }
    qcow2_bm_list_release(&l);
}

/* hbitmap_truncate(): bits of granules past a new end go, a growth adds zeros. */
Test(bitmap_store, list_truncate)
{
    struct qcow2_bm_list l;

    qcow2_bm_list_init(&l, 1 << 20, 16, memfile_mem, NULL);
    cr_assert_eq(qcow2_bm_add(&l, "k", 1, 10, true, true), 0);  /* 1024 granules, 128 bytes */
    cr_assert_eq(qcow2_bm_add(&l, "u", 1, 10, true, false), 1); /* bits not in memory */
    cr_assert_eq(qcow2_bm_set_range(&l, 0, 0, 1 << 20), 0);
    l.bm[0].dirty = false;
    /* To 100.5 KiB: 101 granules kept (the partial last one too), the rest of the word clear. */
    cr_assert_eq(qcow2_bm_list_truncate(&l, 102912), 0);
    cr_assert_eq(l.disk_size, 102912);
    cr_assert(l.bm[0].dirty);
    cr_assert_eq(l.bm[0].bits[11], 0xff);
    cr_assert_eq(l.bm[0].bits[12], 0x1f);
    for (int i = 13; i < 16; i++)
        cr_assert_eq(l.bm[0].bits[i], 0, "byte %d", i);
    cr_assert_null(l.bm[1].bits);
    /* Back to 2 MiB: the kept bits stay, the 1947 new granules are zero. */
    cr_assert_eq(qcow2_bm_list_truncate(&l, 2 << 20), 0);
    cr_assert_eq(l.bm[0].bits[11], 0xff);
    cr_assert_eq(l.bm[0].bits[12], 0x1f);
    for (int i = 13; i < 256; i++)
        cr_assert_eq(l.bm[0].bits[i], 0, "byte %d", i);
    qcow2_bm_list_release(&l);
}
