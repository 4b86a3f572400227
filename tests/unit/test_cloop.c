/*
 * formats/cloop: cloop_open()'s checks in qemu 7.2's order (block/cloop.c),
 * the uint32_t sector product, cloop_block(), and the guest's zlib block
 * decoder (gcodec_inflate_read) on streams made here with the host's
 * zlib-compatible library (the guest's own deflate at level 6).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "cloop/cloop.h"
#include "codec.h"

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

static const struct cloop_reader R = {rd, NULL};

static void be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void image(uint32_t block_size, uint32_t n_blocks, const uint64_t *offs, int noffs)
{
    memset(file, 0, sizeof(file));
    be(file + 128, block_size, 4);
    be(file + 132, n_blocks, 4);
    for (int i = 0; i < noffs; i++)
        be(file + 136 + 8 * i, offs[i], 8);
    file_len = 136 + 8 * (size_t)noffs;
}

static int open_err(struct cloop_image *img)
{
    static uint8_t buf[64];

    return -cloop_open(&R, img, buf, sizeof(buf));
}

Test(cloop, errors_in_order)
{
    static const uint64_t bad[3] = {200, 100, 300};
    static const uint64_t big[2] = {0, 128ull * 1024 * 1024 + 1};
    struct cloop_image img;

    image(1000, 1, NULL, 0);
    cr_assert_eq(open_err(&img), CLOOP_ERR_BLOCK_SIZE_ALIGN);
    image(0, 1, NULL, 0);
    cr_assert_eq(open_err(&img), CLOOP_ERR_BLOCK_SIZE_ZERO);
    image(128u << 20, 1, NULL, 0);
    cr_assert_eq(open_err(&img), CLOOP_ERR_BLOCK_SIZE_LARGE);
    image(4096, 536870912, NULL, 0);
    cr_assert_eq(open_err(&img), CLOOP_ERR_N_BLOCKS);
    /* (n + 1) * 8 > 512 MiB */
    image(4096, 67108864, NULL, 0);
    cr_assert_eq(open_err(&img), CLOOP_ERR_TOO_MANY_OFFSETS);
    image(4096, 2, bad, 3);
    cr_assert_eq(open_err(&img), CLOOP_ERR_NOT_MONOTONIC);
    cr_assert_eq(img.err_arg, 1);
    image(4096, 1, big, 2);
    cr_assert_eq(open_err(&img), CLOOP_ERR_BLOCK_LARGE);
}

Test(cloop, sizes_and_blocks)
{
    static const uint64_t offs[4] = {160, 200, 200, 1000};
    struct cloop_image img;
    uint64_t off;
    uint32_t len;

    image(4096, 3, offs, 4);
    cr_assert_eq(open_err(&img), 0);
    cr_assert_eq(img.total_sectors, 24);
    cr_assert_eq(img.max_compressed, 800);
    cr_assert_eq(cloop_block(&R, &img, 2, &off, &len), 0);
    cr_assert_eq(off, 200);
    cr_assert_eq(len, 800);
    cr_assert_eq(cloop_block(&R, &img, 3, &off, &len), -1);
    /* 32769 blocks of 131072 sectors: 2^32 + 131072, kept modulo 2^32. */
    image(64u << 20, 32769, NULL, 0);
    cr_assert_eq(open_err(&img), 0);
    cr_assert_eq(img.total_sectors, 131072);
}

/* zlib streams written by hand: stored blocks (RFC 1950/1951), Adler-32. */
static size_t stored_stream(uint8_t *out, const uint8_t *data, uint16_t n, bool good_adler)
{
    uint32_t a = 1, b = 0;
    size_t k = 0;

    out[k++] = 0x78;
    out[k++] = 0x01;
    out[k++] = 0x01; /* final stored block */
    out[k++] = (uint8_t)n;
    out[k++] = (uint8_t)(n >> 8);
    out[k++] = (uint8_t)~n;
    out[k++] = (uint8_t)(~n >> 8);
    memcpy(out + k, data, n);
    k += n;
    for (uint16_t i = 0; i < n; i++) {
        a = (a + data[i]) % 65521;
        b = (b + a) % 65521;
    }
    if (!good_adler)
        a ^= 1;
    be(out + k, (uint64_t)b << 16 | a, 4);
    return k + 4;
}

static int mem_rd(void *opaque, uint64_t off, void *buf, size_t len)
{
    return rd(opaque, off, buf, len);
}

Test(cloop, inflate_exact_block)
{
    static uint8_t data[512], out[1024];
    size_t n;

    for (int i = 0; i < 512; i++)
        data[i] = (uint8_t)(i * 7);
    memset(file, 0, sizeof(file));
    n = stored_stream(file + 100, data, 512, true);
    file_len = 100 + n + 4;
    cr_assert_eq(gcodec_inflate_read(mem_rd, NULL, 100, n, out, 512), 0);
    cr_assert_eq(memcmp(out, data, 512), 0);
    /* Trailing bytes after the stream are ignored. */
    cr_assert_eq(gcodec_inflate_read(mem_rd, NULL, 100, n + 4, out, 512), 0);
    /* Output of another size than the block: a short stream, or one going on past it. */
    cr_assert_eq(gcodec_inflate_read(mem_rd, NULL, 100, n, out, 1024), -GCODEC_EIO);
    cr_assert_eq(gcodec_inflate_read(mem_rd, NULL, 100, n, out, 511), -GCODEC_EIO);
    /* The input ends before the stream does. */
    cr_assert_eq(gcodec_inflate_read(mem_rd, NULL, 100, n - 1, out, 512), -GCODEC_EIO);
    cr_assert_eq(gcodec_inflate_read(mem_rd, NULL, 100, 0, out, 512), -GCODEC_EIO);
    /* A bad checksum. */
    n = stored_stream(file + 100, data, 512, false);
    cr_assert_eq(gcodec_inflate_read(mem_rd, NULL, 100, n, out, 512), -GCODEC_EIO);
}
