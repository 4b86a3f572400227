/*
 * formats/parallels: parallels_open()'s checks in qemu 7.2's order and
 * units (header_size, data_end), block status runs, parallels_co_check()'s
 * counts and repairs, the format extension's checks and bounds, and
 * creation.  Expected values come from block/parallels.c and
 * block/parallels-ext.c, and from images qemu-img 7.2 made (noted per case).
 */
#include <criterion/criterion.h>
#include <string.h>

#include <nettle/md5.h>

#include "parallels/parallels.h"

static uint8_t file[1 << 16];
static size_t file_len;

static int rd(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    memset(buf, 0, len);
    if (off < file_len)
        memcpy(buf, file + off, file_len - off < len ? (size_t)(file_len - off) : len);
    return 0;
}

static int md5(void *opaque, uint64_t off, uint64_t len, uint8_t digest[16])
{
    static uint8_t tmp[1 << 16];
    struct md5_ctx c;

    cr_assert(len <= sizeof(tmp));
    rd(opaque, off, tmp, (size_t)len);
    md5_init(&c);
    md5_update(&c, (size_t)len, tmp);
    md5_digest(&c, 16, digest);
    return 0;
}

static const struct prl_reader R = {rd, md5, NULL};

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

/* The header at 0: the new magic, version 2, tracks, catalog, size, inuse, data_off, ext_off. */
static void hdr(uint32_t tracks, uint32_t bat, uint64_t nb, uint32_t inuse, uint32_t data_off,
                uint64_t ext_off)
{
    memset(file, 0, sizeof(file));
    memcpy(file, "WithouFreSpacExt", 16);
    le(file + 16, 2, 4);
    le(file + 28, tracks, 4);
    le(file + 32, bat, 4);
    le(file + 36, nb, 8);
    le(file + 44, inuse, 4);
    le(file + 48, data_off, 4);
    le(file + 56, ext_off, 8);
    file_len = 512;
}

static int open_hdr(struct prl_image *img)
{
    return prl_open_header(file, img);
}

Test(parallels, header_checks_in_order)
{
    struct prl_image img;

    hdr(8, 4, 32, 0, 1, 0);
    le(file + 16, 3, 4);
    cr_assert_eq(open_hdr(&img), -PRL_ERR_FORMAT);
    hdr(8, 4, 32, 0, 1, 0);
    file[15] = 'x';
    cr_assert_eq(open_hdr(&img), -PRL_ERR_FORMAT);
    hdr(0, 0x20000000, 32, 0, 1, 0); /* tracks before the catalog */
    cr_assert_eq(open_hdr(&img), -PRL_ERR_ZERO_TRACKS);
    hdr(0x7fffffff / 513 + 1, 4, 32, 0, 1, 0);
    cr_assert_eq(open_hdr(&img), -PRL_ERR_BIG_CLUSTER);
    hdr(0x7fffffff / 513, 4, 32, 0, 1, 0);
    cr_assert_eq(open_hdr(&img), 0);
    hdr(8, 0x20000000, 32, 0, 1, 0);
    cr_assert_eq(open_hdr(&img), -PRL_ERR_CATALOG);
    /* 64 + 4 * 0x1fffffff bytes: more than one request (qemu: EIO) */
    hdr(8, 0x1fffffff, 32, 0, 1, 0);
    cr_assert_eq(open_hdr(&img), -PRL_ERR_EIO);
    /* (2^54 - 1) * 512 wraps to below 2^63 but past BDRV_MAX_LENGTH */
    hdr(8, 4, (1ull << 54) - 1, 0, 1, 0);
    cr_assert_eq(open_hdr(&img), -PRL_ERR_TOTAL_SECTORS);
    /* 2^62 * 512 wraps to 0: qemu opens it; bdrv_getlength() fails later */
    hdr(8, 4, 1ull << 62, 0, 1, 0);
    cr_assert_eq(open_hdr(&img), -PRL_ERR_SIZE);
}

Test(parallels, old_magic_masks_size_and_counts_sectors)
{
    struct prl_image img;

    hdr(8, 4, (1ull << 33) + 8, 0, 1, 0);
    memcpy(file, "WithoutFreeSpace", 16);
    cr_assert_eq(open_hdr(&img), 0);
    cr_assert_eq(img.total_sectors, 8);
    cr_assert_eq(img.off_multiplier, 1);
}

Test(parallels, header_size_and_data_end_units)
{
    struct prl_image img;

    /* data_off 1 sector < 4096 bytes: header_size is the catalog's exact end */
    hdr(8, 4, 32, 0, 1, 0);
    cr_assert_eq(open_hdr(&img), 0);
    cr_assert_eq(img.header_size, 80);
    cr_assert_eq(img.data_end, 1);
    /* data_off 0: the catalog's end in bytes, rounded to 512, taken as sectors */
    hdr(8, 4, 32, 0, 0, 0);
    cr_assert_eq(open_hdr(&img), 0);
    cr_assert_eq(img.data_end, 512);
    cr_assert_eq(img.header_size, 80);
    /* qemu-img create 10M: data_off 2048 sectors < 4096: header_size = 104 */
    hdr(2048, 10, 20480, 0, 2048, 0);
    cr_assert_eq(open_hdr(&img), 0);
    cr_assert_eq(img.header_size, 104);
    /* data_off 8192 sectors >= 4096 bytes: the page-rounded size stays */
    hdr(2048, 10, 20480, 0, 8192, 0);
    cr_assert_eq(open_hdr(&img), 0);
    cr_assert_eq(img.header_size, 4096);
}

Test(parallels, open_bat_raises_data_end_and_refuses_unclean_rw)
{
    struct prl_image img;

    hdr(8, 4, 32, 0x746f6e59, 1, 0);
    le(file + 64, 1, 4);
    le(file + 72, 5, 4);
    cr_assert_eq(open_hdr(&img), 0);
    cr_assert(img.unclean);
    cr_assert_eq(prl_open_bat(&img, file, 80, 0), 0);
    cr_assert_eq(img.data_end, 48); /* cluster 2 at sector 40, + 8 */
    cr_assert_eq(prl_open_bat(&img, file, 80, PRL_OPEN_RDWR), -PRL_ERR_UNCLEAN);
    cr_assert_eq(prl_open_bat(&img, file, 80, PRL_OPEN_RDWR | PRL_OPEN_CHECK), 0);
}

Test(parallels, block_status_runs)
{
    struct prl_image img;
    uint64_t n;

    /* 512-byte clusters at sectors 1 and 3 (qemu-img map: 0 -> 512, 1024 -> 1536) */
    hdr(1, 4, 4, 0, 1, 0);
    le(file + 64, 1, 4);
    le(file + 72, 3, 4);
    cr_assert_eq(open_hdr(&img), 0);
    cr_assert_eq(prl_open_bat(&img, file, 80, 0), 0);
    cr_assert_eq(prl_block_status(&img, file, 80, 0, 4, &n), 1);
    cr_assert_eq(n, 1);
    cr_assert_eq(prl_block_status(&img, file, 80, 1, 3, &n), -1);
    cr_assert_eq(n, 1);
    cr_assert_eq(prl_block_status(&img, file, 80, 2, 2, &n), 3);
    cr_assert_eq(n, 1);
    /* contiguous clusters are one run */
    le(file + 68, 2, 4);
    cr_assert_eq(prl_block_status(&img, file, 80, 0, 4, &n), 1);
    cr_assert_eq(n, 3);
    /* past the catalog: unallocated to the end of the request */
    cr_assert_eq(prl_block_status(&img, file, 80, 4, 1000, &n), -1);
    cr_assert_eq(n, 1000);
}

static int lines[8], nlines;

static void rep(void *opaque, int code, uint64_t arg)
{
    (void)opaque;
    (void)arg;
    lines[nlines++ & 7] = code;
}

Test(parallels, check_counts_and_repairs)
{
    struct prl_image img;
    struct prl_check_result r;
    uint8_t buf[80];

    /* qemu-img check: 2/4 allocated, image end 2048, leak of 2048 bytes = 4 clusters */
    hdr(1, 4, 4, 0, 1, 0);
    le(file + 64, 1, 4);
    le(file + 72, 3, 4);
    cr_assert_eq(open_hdr(&img), 0);
    memcpy(buf, file, sizeof(buf));
    nlines = 0;
    prl_check(&img, buf, sizeof(buf), 4096, 0, rep, NULL, &r);
    cr_assert_eq(r.allocated_clusters, 2);
    cr_assert_eq(r.total_clusters, 4);
    cr_assert_eq(r.image_end_offset, 2048);
    cr_assert_eq(r.leaks, 4);
    cr_assert_eq(lines[0], PRL_MSG_LEAKED);
    /* a cluster past the file (and the unclean flag): corruptions, repaired */
    le(file + 44, 0x746f6e59, 4);
    le(file + 76, 100, 4);
    cr_assert_eq(open_hdr(&img), 0);
    memcpy(buf, file, sizeof(buf));
    nlines = 0;
    prl_check(&img, buf, sizeof(buf), 2048, PRL_FIX_ERRORS | PRL_FIX_LEAKS, rep, NULL, &r);
    cr_assert_eq(r.corruptions, 2);
    cr_assert_eq(r.corruptions_fixed, 2);
    cr_assert(r.flush_bat);
    cr_assert_eq(prl_bat_get(buf, sizeof(buf), 3), 0);
    cr_assert(!img.unclean);
    cr_assert_eq(lines[0], PRL_MSG_UNCLEAN_FIX);
    cr_assert_eq(lines[1], PRL_MSG_OUTSIDE_FIX);
}

/* An extension cluster of 4 KiB at sector 40 with the given features, checksummed. */
static void ext(const uint8_t *feat, size_t n)
{
    struct md5_ctx c;

    hdr(8, 4, 32, 0, 1, 40);
    file_len = 40 * 512 + 4096;
    le(file + 40 * 512, 0xab234cef23dcea87ull, 8);
    memcpy(file + 40 * 512 + 24, feat, n);
    md5_init(&c);
    md5_update(&c, 4096 - 24, file + 40 * 512 + 24);
    md5_digest(&c, 16, file + 40 * 512 + 8);
}

static size_t bitmap(uint8_t *p, uint64_t size, uint32_t gran, uint32_t l1, uint64_t e0)
{
    le(p, 0x20385fae252cb34aull, 8);
    le(p + 8, 0, 8);
    le(p + 16, 40, 4);
    le(p + 24, size, 8);
    memset(p + 32, 0x11, 16);
    le(p + 48, gran, 4);
    le(p + 52, l1, 4);
    le(p + 56, e0, 8);
    return 64;
}

static int open_ext(struct prl_image *img)
{
    int ret = open_hdr(img);

    return ret ? ret : prl_read_extension(&R, img);
}

Test(parallels, extension)
{
    struct prl_image img;
    uint8_t f[512];
    size_t n;

    memset(f, 0, sizeof(f));
    n = bitmap(f, 32, 8, 1, 1);
    ext(f, n + 24);
    cr_assert_eq(open_ext(&img), 0);
    cr_assert_eq(img.nbitmaps, 1);
    /* the checksum covers the whole cluster after the header */
    file[40 * 512 + 4000] ^= 1;
    cr_assert_eq(open_ext(&img), -PRL_ERR_EXT_CHECKSUM);
    /* two bitmaps with one UUID */
    memset(f, 0, sizeof(f));
    n = bitmap(f, 32, 8, 1, 1);
    n += bitmap(f + n, 32, 8, 1, 0);
    ext(f, n + 24);
    cr_assert_eq(open_ext(&img), -PRL_ERR_BM_EXISTS);
    cr_assert_str_eq(img.err_str, "11111111-1111-1111-1111-111111111111");
    /* a size other than the disk's; a table of the wrong size */
    bitmap(f, 33, 8, 1, 1);
    ext(f, 88);
    cr_assert_eq(open_ext(&img), -PRL_ERR_BM_SIZE);
    bitmap(f, 32, 8, 2, 1);
    le(f + 16, 48, 4);
    ext(f, 96);
    cr_assert_eq(open_ext(&img), -PRL_ERR_BM_TABLE);
    cr_assert_eq(img.err_arg[1], 1);
    /* granularity 3 sectors: qemu asserts */
    bitmap(f, 32, 3, 1, 1);
    ext(f, 88);
    cr_assert_eq(open_ext(&img), -PRL_ERR_BM_GRANULARITY);
    /* ext_off of 2^54 sectors: 2^63 bytes, negative (qemu asserts) */
    hdr(8, 4, 32, 0, 1, 1ull << 54);
    cr_assert_eq(open_ext(&img), -PRL_ERR_EXT_OFFSET);
}

Test(parallels, extension_walk_past_the_cluster)
{
    struct prl_image img;
    uint8_t f[4096];
    size_t n = 0;

    /* A data_size that passes qemu's stale "remaining" but ends past the cluster. */
    memset(f, 0, sizeof(f));
    n = bitmap(f, 32, 8, 1, 1);
    le(f + 16, 4040, 4); /* 4040 <= 4048 "remaining": the next header would start at 4088 */
    ext(f, n);
    cr_assert_eq(open_ext(&img), -PRL_ERR_EXT_OUTSIDE);
}

Test(parallels, create_layout_as_qemu_img)
{
    struct prl_create c;
    uint8_t s[512];

    /* qemu-img create -f parallels a.img 10M: tracks 2048, 10 entries, data_off 2048 */
    cr_assert_eq(prl_create_layout(10 << 20, 1 << 20, &c), 0);
    prl_create_header(&c, s);
    cr_assert_eq(memcmp(s, "WithouFreSpacExt", 16), 0);
    cr_assert_eq(s[24], 0x28); /* cylinders: 20480 / 16 / 32 */
    cr_assert_eq(s[29], 0x08); /* tracks 0x800 */
    cr_assert_eq(s[32], 10);
    cr_assert_eq(s[37], 0x50); /* 0x5000 sectors */
    cr_assert_eq(s[49], 0x08); /* data_off 0x800 */
    cr_assert_eq(prl_create_layout(1 << 20, 0, &c), -2);
    cr_assert_eq(prl_create_layout(1 << 20, 0x7fffffffull, &c), -1);
    cr_assert_eq(prl_create_layout(2ull << 40, 512, &c), -2);
}
