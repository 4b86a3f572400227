/*
 * formats/vhdx: CRC-32C (the check value of the Castagnoli polynomial,
 * RFC 3720 appendix B.4), the header choice of vhdx_parse_header() (valid
 * checksum, signature and version; the higher sequence number; identical
 * headers with equal numbers), the log's offset checks of vhdx_parse_log(),
 * and the block map of vhdx_block_translate().
 */
#include <criterion/criterion.h>
#include <string.h>

#include "vhdx/crc32c.h"
#include "vhdx/vhdx.h"

static uint8_t file[1 << 18];
static size_t file_len;

static int rd(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    memset(buf, 0, len);
    if (off < file_len)
        memcpy(buf, file + off, file_len - off < len ? (size_t)(file_len - off) : len);
    return 0;
}

static const struct vhdx_reader R = {rd, NULL};
static uint8_t scratch[65536];
static struct vhdx_image img;

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

/* A header at off: sequence number, log offset; checksummed (bad: off by one). */
static void header(size_t off, uint64_t seq, uint64_t log_off, int bad)
{
    uint8_t *h = file + off;
    uint32_t crc;

    memset(h, 0, 4096);
    memcpy(h, "head", 4);
    le(h + 8, seq, 8);
    le(h + 66, 1, 2);       /* version */
    le(h + 68, 1 << 20, 4); /* log length */
    le(h + 72, log_off, 8); /* log offset */
    crc = vhdx_crc32c(0xffffffffu, h, 4096) ^ 0xffffffffu;
    le(h + 4, crc + (uint32_t)bad, 4);
}

static void setup(void)
{
    memset(file, 0, sizeof(file));
    memcpy(file, "vhdxfile", 8);
    file_len = sizeof(file);
}

Test(vhdx, crc32c_check_value)
{
    cr_assert_eq(vhdx_crc32c(0xffffffffu, "123456789", 9) ^ 0xffffffffu, 0xe3069283u);
    /* Continuing over pieces is the CRC of the whole. */
    cr_assert_eq(vhdx_crc32c(vhdx_crc32c(0xffffffffu, "1234", 4), "56789", 5) ^ 0xffffffffu,
                 0xe3069283u);
}

Test(vhdx, identifier, .init = setup)
{
    file[7] = 'x';
    cr_assert_eq(vhdx_open_headers(&R, &img, scratch), -VHDX_ERR_EINVAL);
}

Test(vhdx, no_valid_header, .init = setup)
{
    header(VHDX_HEADER1_OFFSET, 1, 1 << 20, 1);
    header(VHDX_HEADER2_OFFSET, 2, 1 << 20, 1);
    cr_assert_eq(vhdx_open_headers(&R, &img, scratch), -VHDX_ERR_NO_HEADER);
}

Test(vhdx, higher_sequence_wins, .init = setup)
{
    header(VHDX_HEADER1_OFFSET, 9, 1 << 20, 0);
    header(VHDX_HEADER2_OFFSET, 3, 1 << 20, 0);
    cr_assert_eq(vhdx_open_headers(&R, &img, scratch), 0);
    cr_assert_eq(img.curr, 0);
    header(VHDX_HEADER1_OFFSET, 9, 1 << 20, 1); /* the higher one invalid */
    cr_assert_eq(vhdx_open_headers(&R, &img, scratch), 0);
    cr_assert_eq(img.curr, 1);
}

Test(vhdx, equal_sequence, .init = setup)
{
    header(VHDX_HEADER1_OFFSET, 4, 1 << 20, 0);
    header(VHDX_HEADER2_OFFSET, 4, 1 << 20, 0);
    cr_assert_eq(vhdx_open_headers(&R, &img, scratch), 0); /* identical: Disk2VHD */
    header(VHDX_HEADER2_OFFSET, 4, 2 << 20, 0);
    cr_assert_eq(vhdx_open_headers(&R, &img, scratch), -VHDX_ERR_NO_HEADER);
}

Test(vhdx, log_offset, .init = setup)
{
    header(VHDX_HEADER1_OFFSET, 1, 0, 0);
    header(VHDX_HEADER2_OFFSET, 2, (1 << 20) + 4096, 0);
    cr_assert_eq(vhdx_open_headers(&R, &img, scratch), -VHDX_ERR_EINVAL);
    header(VHDX_HEADER2_OFFSET, 2, 3 << 20, 0);
    cr_assert_eq(vhdx_open_headers(&R, &img, scratch), 0);
    cr_assert_eq(img.log_offset, 3 << 20);
    cr_assert(!img.log.valid); /* a zero log GUID: no log */
}

Test(vhdx, map_skips_bitmap_entries)
{
    static struct vhdx_image m;
    uint64_t bat[4100] = {0}, host, run;

    /* 1 MiB blocks: 4096 payload blocks per sector bitmap block. */
    m.block_size = 1 << 20;
    m.chunk_ratio = 4096;
    m.chunk_ratio_bits = 12;
    bat[4097] = (5ull << 20) | VHDX_PAYLOAD_FULLY_PRESENT; /* block 4096 */
    bat[4096] = (9ull << 20) | VHDX_PAYLOAD_FULLY_PRESENT; /* the bitmap block */
    cr_assert_eq(vhdx_map(&m, bat, (4096ull << 20) + 512, &host, &run), VHDX_PAYLOAD_FULLY_PRESENT);
    cr_assert_eq(host, (5ull << 20) + 512);
    cr_assert_eq(run, (1 << 20) - 512);
    cr_assert_eq(vhdx_map(&m, bat, 100, &host, &run), VHDX_PAYLOAD_NOT_PRESENT);
}
