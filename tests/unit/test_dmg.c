/*
 * formats/dmg: the koly trailer's checks, the resource fork walk, the mish
 * block reader (chunk limits, skipped types and their warnings), glib's
 * base64 rules and qemu 7.2's binary search (block/dmg.c).  Expected
 * values are worked out from block/dmg.c and glib's g_base64_decode_step.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "dmg/dmg.h"

static uint8_t file[1 << 14];
static size_t file_len;

static int rd(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    memset(buf, 0, len);
    if (off < file_len)
        memcpy(buf, file + off, file_len - off < len ? (size_t)(file_len - off) : len);
    return 0;
}

static const struct dmg_reader R = {rd, NULL};

static void be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static struct dmg_chunk got[64];

static int keep(void *opaque, uint32_t i, const struct dmg_chunk *c)
{
    (void)opaque;
    if (i >= 64)
        return -DMG_ERR_NOMEM;
    got[i] = *c;
    return 0;
}

/* A mish block at p with n entries {type, sector, count, offset, length}; returns its size. */
static size_t mish(uint8_t *p, const uint64_t (*e)[5], int n, uint64_t first, uint64_t data_off)
{
    memset(p, 0, 204 + 40 * (size_t)n);
    memcpy(p, "mish", 4);
    be(p + 8, first, 8);
    be(p + 0x18, data_off, 8);
    for (int i = 0; i < n; i++) {
        uint8_t *q = p + 204 + 40 * i;

        be(q, e[i][0], 4);
        be(q + 8, e[i][1], 8);
        be(q + 0x10, e[i][2], 8);
        be(q + 0x18, e[i][3], 8);
        be(q + 0x20, e[i][4], 8);
    }
    return 204 + 40 * (size_t)n;
}

/* Data fork of 4096 bytes, the resource fork after it, the trailer last. */
static void rsrc_image(const uint64_t (*e)[5], int n, uint64_t sectors)
{
    size_t m, fork;

    memset(file, 0, sizeof(file));
    m = mish(file + 4096 + 256 + 4, e, n, 0, 0);
    be(file + 4096 + 256, m, 4);
    be(file + 4096, 256, 4);
    be(file + 4096 + 8, m + 4, 4);
    fork = 256 + 4 + m;
    memcpy(file + 4096 + fork, "koly", 4);
    be(file + 4096 + fork + 0x28, 4096, 8);
    be(file + 4096 + fork + 0x30, fork, 8);
    be(file + 4096 + fork + 0x1ec, sectors, 8);
    file_len = 4096 + fork + 512;
}

static int open_rsrc(struct dmg_image *img)
{
    int ret = dmg_open_trailer(&R, file_len, img);

    if (ret == 0)
        ret = img->rsrc_length ? dmg_read_rsrc(&R, img, keep, NULL) : -1;
    return ret;
}

Test(dmg, trailer)
{
    struct dmg_image img;

    file_len = 0;
    cr_assert_eq(dmg_open_trailer(&R, 0, &img), -DMG_ERR_TOO_SMALL);
    /* A 1-byte file is one sector long for bdrv_getlength(). */
    memset(file, 0, sizeof(file));
    file_len = 1;
    cr_assert_eq(dmg_open_trailer(&R, 1, &img), -DMG_ERR_NO_TRAILER);
    memcpy(file + 3000, "koly", 4);
    file_len = 4000;
    /* The search covers the last 515 bytes of the rounded length (4096). */
    cr_assert_eq(dmg_open_trailer(&R, 4000, &img), -DMG_ERR_NO_TRAILER);
    memcpy(file + 3100, "koly", 4);
    cr_assert_eq(dmg_open_trailer(&R, 4000, &img), -DMG_ERR_INVALID); /* no forks */
    cr_assert_eq(img.koly, 3100);
    be(file + 3100 + 0xd8, 10, 8);
    be(file + 3100 + 0xe0, 3090, 8);
    be(file + 3100 + 0x1ec, 1ull << 63, 8);
    cr_assert_eq(dmg_open_trailer(&R, 4000, &img), -DMG_ERR_INVALID); /* negative size */
    be(file + 3100 + 0x1ec, 8, 8);
    cr_assert_eq(dmg_open_trailer(&R, 4000, &img), 0);
    be(file + 3100 + 0xe0, 3091, 8);
    cr_assert_eq(dmg_open_trailer(&R, 4000, &img), -DMG_ERR_INVALID);
}

Test(dmg, mish_chunks)
{
    static const uint64_t e[6][5] = {{DMG_UDRW, 0, 8, 0, 4096}, {DMG_UDBZ, 8, 8, 0, 10},
                                     {0x1234, 16, 8, 0, 0},     {DMG_UDZO, 24, 16, 100, 50},
                                     {DMG_UDLE, 40, 0, 0, 0},   {DMG_UDZE, 40, 1ull << 40, 0, 0}};
    struct dmg_image img;

    rsrc_image(e, 6, 48);
    cr_assert_eq(open_rsrc(&img), 0);
    cr_assert_eq(img.n_chunks, 3);
    cr_assert_eq(got[1].type, DMG_UDZO);
    cr_assert_eq(got[1].sector, 24);
    cr_assert_eq(img.max_compressed, 50);
    cr_assert_eq(img.max_sectors, 16);
    /* bzip2 first, then the unknown type. */
    cr_assert_eq(img.warn_order, DMG_WARN_BZ2 | DMG_WARN_UNKNOWN << 2);
    cr_assert_eq(img.unknown_type, 0x1234);
}

Test(dmg, chunk_limits)
{
    static const uint64_t sc[2][5] = {{DMG_UDBZ, 0, 8, 0, 0}, {DMG_UDZO, 8, 131073, 0, 10}};
    static const uint64_t ln[1][5] = {{DMG_UDZE, 0, 8, 0, (64u << 20) + 1}};
    struct dmg_image img;

    rsrc_image(sc, 2, 48);
    cr_assert_eq(open_rsrc(&img), -DMG_ERR_SECTORCOUNT);
    /* The index counts kept chunks only: the skipped bzip2 one is not chunk 0. */
    cr_assert_eq(img.err_args[0], 131073);
    cr_assert_eq(img.err_args[1], 0);
    rsrc_image(ln, 1, 8);
    cr_assert_eq(open_rsrc(&img), -DMG_ERR_LENGTH);
}

Test(dmg, base64_as_glib)
{
    char s[64];
    uint8_t out[64];

    strcpy(s, "aGVs bG8=");
    cr_assert_eq(dmg_base64_decode(s, strlen(s), out), 5);
    cr_assert_eq(memcmp(out, "hello", 5), 0);
    /* Characters outside the alphabet are skipped; '=' counts as a zero. */
    strcpy(s, "a!G*V\nz");
    cr_assert_eq(dmg_base64_decode(s, strlen(s), out), 3);
    cr_assert_eq(memcmp(out, "hes", 3), 0);
    strcpy(s, "====");
    cr_assert_eq(dmg_base64_decode(s, strlen(s), out), 1);
    /* In place. */
    strcpy(s, "aGVsbG8gd29ybGQ=");
    cr_assert_eq(dmg_base64_decode(s, strlen(s), (uint8_t *)s), 11);
    cr_assert_eq(memcmp(s, "hello world", 11), 0);
}

Test(dmg, search_as_qemu)
{
    /* Unsorted: qemu's binary search misses the chunk at index 0 for sector 3. */
    static const struct dmg_chunk c[3] = {
        {DMG_UDRW, 0, 8, 0, 4096}, {DMG_UDZE, 16, 8, 0, 0}, {DMG_UDZE, 8, 8, 0, 0}};

    cr_assert_eq(dmg_search(c, 3, 3, 20), 1);
    cr_assert_eq(dmg_search(c, 3, 3, 3), 0);
    cr_assert_eq(dmg_search(c, 3, 3, 9), 3); /* mid 1 (16 > 9), then 0 (0 + 8 <= 9): miss */
    cr_assert_eq(dmg_search(c, 3, 2, 9), 2); /* the current chunk is asked first */
    cr_assert_eq(dmg_search(c, 3, 3, 100), 3);
    cr_assert_eq(dmg_search(c, 0, 0, 0), 0);
}
