/*
 * Snapshot table (qcow2_snapshots_parse) and bitmap directory/table
 * (qcow2_bitmap_*) checks on qemu-img-made images with patched fields.
 * Every expectation was checked against "qemu-img info" (7.2) on the same
 * bytes.
 */
#include "qcow2_test_util.h"

#include "qcow2/bitmap.h"
#include "qcow2/header.h"
#include "qcow2/snapshot.h"

static struct qcow2_err_info ei;
static struct qcow2_header h;
static struct qcow2_exts x;
static uint8_t scratch[QCOW2_SNAPSHOT_SCRATCH];
static struct img cur;

static int mem_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    memset(buf, 0, len);
    if (off < cur.len)
        memcpy(buf, cur.p + off, cur.len - off < len ? cur.len - off : len);
    return 0;
}

static const struct qcow2_reader rd = {mem_pread, NULL};

static struct qcow2_snapshot seen[4];
static uint32_t nseen;

static int keep(void *opaque, uint32_t i, const struct qcow2_snapshot *sn)
{
    (void)opaque;
    if (i < 4)
        seen[i] = *sn;
    nseen++;
    return 0;
}

static int snaps(struct img im)
{
    cur = im;
    nseen = 0;
    cr_assert_eq(qcow2_header_parse(im.p, im.len, &h, &ei), 0);
    return qcow2_snapshots_parse(&h, &rd, scratch, keep, NULL, &ei);
}

static struct img snap_img(void)
{
    return img_make("qemu-img create -f qcow2 i 64M && qemu-img snapshot -c s1 i", "i");
}

Test(qcow2_snapshot, clean)
{
    struct img im = snap_img();

    cr_assert_eq(snaps(im), 0);
    cr_assert_eq(nseen, 1);
    cr_assert_eq(seen[0].id_len, 1);
    cr_assert_eq(seen[0].name_len, 2);
    cr_assert_eq(memcmp(seen[0].name, "s1", 2), 0);
    cr_assert_eq(seen[0].extra_data_size, 24);
    cr_assert_eq(seen[0].vm_state_size, 0);
}

Test(qcow2_snapshot, zeros_past_eof)
{
    struct img im = snap_img();

    PUT32(im, 60, 2); /* the second entry lies past EOF: all zeros */
    cr_assert_eq(snaps(im), 0);
    cr_assert_eq(nseen, 2);
    cr_assert_eq(seen[1].id_len, 0);
    cr_assert_eq(seen[1].icount, UINT64_MAX);
}

Test(qcow2_snapshot, extra_too_big)
{
    struct img im = snap_img();
    uint64_t so = get_be(im.p, 64, 8);

    PUT32(im, so + 36, 1025);
    cr_assert_eq(snaps(im), -QCOW2_ERR_SNAP_EXTRA_TOO_BIG);
    cr_assert_eq(ei.args[0], 0);
}

Test(qcow2_snapshot, read_refused)
{
    struct img im = snap_img();

    PUT64(im, 64, 0x7fffffffffff0000ull);
    cr_assert_eq(snaps(im), -QCOW2_ERR_SNAP_READ);
}

Test(qcow2_snapshot, table_too_big)
{
    /* 1100 entries with 65535-byte names pass 64 MiB at entry 1023. */
    static uint8_t big[80u << 20];
    struct img im = snap_img();
    uint64_t off = 1u << 20;
    uint32_t i;

    memcpy(big, im.p, im.len);
    im.p = big;
    im.len = sizeof(big);
    PUT32(im, 60, 1100);
    PUT64(im, 64, off);
    for (i = 0; i < 1100 && off + 40 <= sizeof(big); i++) {
        memset(big + off, 0, 40);
        PUT16(im, off + 14, 65535);
        off = (off + 40 + 65535 + 7) & ~7ull;
    }
    cr_assert_eq(snaps(im), -QCOW2_ERR_SNAP_TABLE_TOO_BIG);
    cr_assert_eq(ei.args[0], 77);
}

/* --- bitmaps --- */

static struct qcow2_bitmap bms[8];
static uint64_t e0, e1, bext;

static int keep_bm(void *opaque, uint32_t i, const struct qcow2_bitmap *bm)
{
    (void)opaque;
    if (i < 8)
        bms[i] = *bm;
    return 0;
}

static struct img bm_img(void)
{
    struct img im = img_make("qemu-img create -f qcow2 i 64M && qemu-img bitmap --add i b0 && "
                             "qemu-img bitmap --add i b1",
                             "i");
    uint64_t o = get_be(im.p, 100, 4);

    while (get_be(im.p, o, 4) != QCOW2_EXT_BITMAPS)
        o += 8 + ((get_be(im.p, o + 4, 4) + 7) & ~7ull);
    bext = o + 8;
    e0 = get_be(im.p, bext + 16, 8);
    e1 = e0 + ((24 + get_be(im.p, e0 + 18, 2) + 7) & ~7ull);
    return im;
}

/* What qemu_load_dirty_bitmaps checks, in its order. */
static int bitmaps(struct img im)
{
    static uint8_t tbuf[4096];
    uint32_t idx[8], i;
    uint8_t dup[8];
    int ret;

    cur = im;
    cr_assert_eq(qcow2_header_parse(im.p, im.len, &h, &ei), 0);
    cr_assert_eq(qcow2_ext_parse(im.p, im.len, &h, NULL, NULL, &x, &ei), 0);
    ret = qcow2_bitmap_dir_precheck(&x);
    if (ret < 0)
        return ret;
    if (x.bitmap_dir_offset + x.bitmap_dir_size > im.len || x.nb_bitmaps > 8)
        return 1;
    ret = qcow2_bitmap_dir_parse(im.p + x.bitmap_dir_offset, x.bitmap_dir_size, x.nb_bitmaps, &h,
                                 keep_bm, NULL, &ei);
    if (ret < 0)
        return ret;
    qcow2_bitmap_mark_dups(bms, x.nb_bitmaps, idx, dup);
    for (i = 0; i < x.nb_bitmaps; i++) {
        if (bms[i].flags & QCOW2_BITMAP_IN_USE)
            continue;
        if (dup[i])
            return -QCOW2_ERR_BITMAP_EXISTS;
        ret = qcow2_bitmap_load_check(&bms[i], &h, &rd, tbuf, sizeof(tbuf), &ei);
        if (ret < 0)
            return ret;
    }
    return 0;
}

#define NAME_IS(lit) (ei.slen == strlen(lit) && memcmp(ei.s, lit, ei.slen) == 0)

Test(qcow2_bitmap, clean)
{
    struct img im = bm_img();

    cr_assert_eq(bitmaps(im), 0);
    cr_assert_eq(x.nb_bitmaps, 2);
    cr_assert_eq(bms[1].name_len, 2);
    cr_assert_eq(memcmp(bms[1].name, "b1", 2), 0);
    cr_assert_eq(bms[0].granularity_bits, 16);
    cr_assert_eq(bms[0].flags, QCOW2_BITMAP_AUTO);
}

Test(qcow2_bitmap, dir_precheck)
{
    struct img im = bm_img();

    PUT64(im, bext + 8, 0);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_DIR_SIZE_ZERO);
    PUT64(im, bext + 8, 24);
    PUT64(im, bext + 16, 0x7fffffffc0000000ull);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_DIR_READ);
}

Test(qcow2_bitmap, count_mismatch)
{
    struct img im = bm_img();

    PUT32(im, bext, 1);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_TOO_MANY);
    PUT32(im, bext, 3);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_TOO_FEW);
}

Test(qcow2_bitmap, broken)
{
    struct img im = bm_img();
    uint64_t dsz = get_be(im.p, bext + 8, 8);

    PUT64(im, bext + 8, dsz - 8);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_DIR_BROKEN);
    PUT64(im, bext + 8, 16);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_DIR_BROKEN);
}

Test(qcow2_bitmap, extra_data)
{
    struct img im = bm_img();

    PUT32(im, e0 + 20, 8);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_EXTRA_DATA);
    PUT32(im, e0 + 20, 0x7ffffff0);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_EXTRA_DATA);
}

Test(qcow2_bitmap, constraints)
{
    struct img im = bm_img();

    PUT8(im, e1 + 16, 2); /* type */
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_CONSTRAINTS);
    cr_assert(NAME_IS("b1"));
    PUT8(im, e1 + 16, 1);
    PUT8(im, e0 + 17, 8); /* granularity */
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_CONSTRAINTS);
    cr_assert(NAME_IS("b0"));
    PUT8(im, e0 + 17, 16);
    PUT64(im, 24, 64ull << 30); /* table too small for the disk */
    PUT32(im, 36, 128);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_CONSTRAINTS);
}

Test(qcow2_bitmap, duplicates)
{
    struct img im = bm_img();

    memcpy(im.p + e1 + 24, "b0", 2);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_EXISTS);
    PUT32(im, e1 + 12, 3); /* the in-use duplicate is skipped */
    cr_assert_eq(bitmaps(im), 0);
}

Test(qcow2_bitmap, table_entries)
{
    struct img im = bm_img();
    uint64_t tb = get_be(im.p, e1, 8);

    PUT64(im, tb, 1ull << 60);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_TABLE_INVALID);
    cr_assert(NAME_IS("b1"));
    PUT64(im, tb, 0x10001);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_TABLE_INVALID);
    PUT64(im, tb, 0x10200);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_TABLE_INVALID);
    PUT64(im, tb, 0);
    PUT64(im, e0, 0x7fffffffc0000000ull);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_TABLE_IO);
    cr_assert(NAME_IS("b0"));
}

Test(qcow2_bitmap, table_size)
{
    struct img im = bm_img();

    PUT32(im, e0 + 8, 2);
    cr_assert_eq(bitmaps(im), -QCOW2_ERR_BITMAP_DATA_INVALID);
    cr_assert(NAME_IS("b0"));
    PUT32(im, e0 + 12, 1); /* in use: not loaded, so not checked */
    cr_assert_eq(bitmaps(im), 0);
}

Test(qcow2_bitmap, mark_dups_order)
{
    struct qcow2_bitmap b[5];
    const char *names[5] = {"a", "b", "a", "", "b"};
    uint32_t idx[5];
    uint8_t dup[5];
    int i;

    for (i = 0; i < 5; i++) {
        b[i].name = (const uint8_t *)names[i];
        b[i].name_len = strlen(names[i]);
    }
    qcow2_bitmap_mark_dups(b, 5, idx, dup);
    cr_assert_eq(dup[0], 0);
    cr_assert_eq(dup[1], 0);
    cr_assert_eq(dup[2], 1);
    cr_assert_eq(dup[3], 0);
    cr_assert_eq(dup[4], 1);
}
