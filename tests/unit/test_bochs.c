/*
 * formats/bochs: bochs_open()'s checks in qemu 7.2's order (block/bochs.c)
 * and seek_to_sector()'s arithmetic, 32-bit data offset and 64-bit wrap
 * included.  Expected values are worked out from block/bochs.c by hand.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "bochs/bochs.h"

static uint8_t file[8192];
static size_t file_len;

static int rd(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    memset(buf, 0, len);
    if (off < file_len)
        memcpy(buf, file + off, file_len - off < len ? (size_t)(file_len - off) : len);
    return 0;
}

static const struct bochs_reader R = {rd, NULL};

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static void header(uint32_t version, uint32_t hdr, uint32_t catalog, uint32_t bitmap,
                   uint32_t extent, uint64_t disk)
{
    memset(file, 0, sizeof(file));
    memcpy(file, "Bochs Virtual HD Image", 23);
    memcpy(file + 32, "Redolog", 8);
    memcpy(file + 48, "Growing", 8);
    le(file + 64, version, 4);
    le(file + 68, hdr, 4);
    le(file + 72, catalog, 4);
    le(file + 76, bitmap, 4);
    le(file + 80, extent, 4);
    le(file + (version == 0x10000 ? 84 : 88), disk, 8);
    file_len = 512;
}

static int open_err(struct bochs_image *img)
{
    return -bochs_open(&R, img);
}

Test(bochs, good_v2_and_v1)
{
    struct bochs_image img;

    header(0x20000, 512, 256, 512, 4096, 1 << 20);
    cr_assert_eq(bochs_open(&R, &img), 0);
    cr_assert_eq(img.total_sectors, 2048);
    cr_assert_eq(img.data_offset, 512 + 1024);
    cr_assert_eq(img.bitmap_blocks, 1);
    cr_assert_eq(img.extent_blocks, 8);
    /* Version 1: the disk size 4 bytes earlier (where version 2 is reserved). */
    header(0x10000, 512, 2, 512, 4096, 8192 + 511);
    cr_assert_eq(bochs_open(&R, &img), 0);
    cr_assert_eq(img.total_sectors, 16);
}

Test(bochs, errors_in_order)
{
    struct bochs_image img;

    header(0x30000, 512, 256, 512, 4096, 1 << 20);
    cr_assert_eq(open_err(&img), BOCHS_ERR_FORMAT);
    header(0x20000, 512, 256, 512, 4096, 1 << 20);
    memcpy(file + 48, "Undoable", 9);
    cr_assert_eq(open_err(&img), BOCHS_ERR_FORMAT);
    /* A magic without its NUL runs into "Redolog": not the magic. */
    header(0x20000, 512, 256, 512, 4096, 1 << 20);
    memset(file + 22, 'x', 10);
    cr_assert_eq(open_err(&img), BOCHS_ERR_FORMAT);
    /* The catalog limit comes before the extent checks. */
    header(0x20000, 512, 0x100001, 512, 3, 1 << 20);
    cr_assert_eq(open_err(&img), BOCHS_ERR_CATALOG_LARGE);
    header(0x20000, 512, 256, 512, 511, 1 << 20);
    cr_assert_eq(open_err(&img), BOCHS_ERR_EXTENT_SMALL);
    header(0x20000, 512, 256, 512, 3000, 1 << 20);
    cr_assert_eq(open_err(&img), BOCHS_ERR_EXTENT_POW2);
    cr_assert_eq(img.err_arg, 3000);
    header(0x20000, 512, 256, 512, 16u << 20, 1 << 20);
    cr_assert_eq(open_err(&img), BOCHS_ERR_EXTENT_LARGE);
    header(0x20000, 512, 255, 512, 4096, 1 << 20);
    cr_assert_eq(open_err(&img), BOCHS_ERR_CATALOG_SMALL);
    /* 2^62 bytes need 2^39 extents of 8 MiB: more than any catalog. */
    header(0x20000, 512, 0x100000, 512, 8u << 20, 1ull << 62);
    cr_assert_eq(open_err(&img), BOCHS_ERR_CATALOG_SMALL);
}

Test(bochs, locate)
{
    static const uint32_t cat[4] = {BOCHS_UNALLOCATED, 2, 0, 0xfffffffe};
    struct bochs_image img;
    uint64_t bitmap, data;
    unsigned bit;

    header(0x20000, 512, 4, 512, 4096, 16384);
    cr_assert_eq(bochs_open(&R, &img), 0);
    cr_assert_not(bochs_locate(&img, cat, 3, &bitmap, &bit, &data));
    /* Sector 8 + 5: extent 1 (catalog 2), sector 5 in it; 9 sectors per extent. */
    cr_assert(bochs_locate(&img, cat, 13, &bitmap, &bit, &data));
    cr_assert_eq(bitmap, 528 + 2 * 9 * 512);
    cr_assert_eq(bit, 5);
    cr_assert_eq(data, 528 + 2 * 9 * 512 + 512 * (1 + 5));
    /* 512 * 0xfffffffe * 9 does not wrap; it is the offset qemu asks for. */
    cr_assert(bochs_locate(&img, cat, 31, &bitmap, &bit, &data));
    cr_assert_eq(bitmap, 528 + 512ull * 0xfffffffe * 9);
    /* bitmap 0: 0x800000 bitmap sectors; the product wraps 64 bits as in qemu. */
    header(0x20000, 512, 4, 0, 8u << 20, 8u << 20);
    cr_assert_eq(bochs_open(&R, &img), 0);
    cr_assert_eq(img.bitmap_blocks, 0x800000);
    cr_assert(bochs_locate(&img, cat, 0, &bitmap, &bit, &data) == false);
}

Test(bochs, data_offset_wraps_32)
{
    struct bochs_image img;

    header(0x20000, 0xfffffff0, 16, 512, 4096, 8192);
    cr_assert_eq(bochs_open(&R, &img), 0);
    cr_assert_eq(img.data_offset, (uint32_t)(0xfffffff0u + 64));
}
