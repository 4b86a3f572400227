/*
 * formats/vpc: vpc_open()'s checks in qemu 7.2's order, its size rules
 * (CHS geometry or current_size by creator application), the BAT map,
 * and creation (calculate_geometry, the rounded sizes, the footer).
 * Expected values come from the VHD specification and qemu's block/vpc.c,
 * and the sizes from qemu-img create -f vpc (noted per case).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "instar/errors.h"
#include "qcow2/check_err.h"
#include "qcow2/qcow2_err.h"
#include "vpc/create.h"
#include "vpc/vpc.h"

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

static const struct vpc_reader R = {rd, NULL};

static void be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* A footer at off: size, CHS, creator app, type; checksummed. */
static void footer(size_t off, uint64_t size, uint16_t c, uint8_t h, uint8_t s, const char *app,
                   uint32_t type)
{
    uint8_t *f = file + off;

    memset(f, 0, 512);
    memcpy(f, "conectix", 8);
    be(f + 16, type == VPC_TYPE_FIXED ? UINT64_MAX : 512, 8);
    memcpy(f + 28, app, 4);
    be(f + 40, size, 8);
    be(f + 48, size, 8);
    be(f + 56, c, 2);
    f[58] = h;
    f[59] = s;
    be(f + 60, type, 4);
    be(f + 64, vpc_checksum(f, 512), 4);
}

static void dynhdr(uint32_t entries, uint32_t block_size)
{
    uint8_t *h = file + 512;

    memset(h, 0, 1024);
    memcpy(h, "cxsparse", 8);
    be(h + 8, UINT64_MAX, 8);
    be(h + 16, 1536, 8);
    be(h + 28, entries, 4);
    be(h + 32, block_size, 4);
    memset(file + 1536, 0xff, 512);
    file_len = 2048;
}

static struct vpc_image img;

Test(vpc, checksum_is_ones_complement_of_byte_sum)
{
    uint8_t b[4] = {1, 2, 3, 250};

    cr_assert_eq(vpc_checksum(b, 4), ~256u);
}

Test(vpc, chs_size_for_qemu_creator)
{
    /* 2 x 16 x 63 sectors, though current_size says 1 MiB */
    footer(0, 1 << 20, 2, 16, 63, "qemu", VPC_TYPE_DYNAMIC);
    dynhdr(1, 2 << 20);
    cr_assert_eq(vpc_open_footer(&R, file_len, VPC_SIZE_AUTO, &img), 0);
    cr_assert_eq(img.total_sectors, 2 * 16 * 63);
    cr_assert_eq(vpc_open_footer(&R, file_len, VPC_SIZE_CURRENT, &img), 0);
    cr_assert_eq(img.total_sectors, 2048);
}

Test(vpc, current_size_for_hyperv_and_max_geometry)
{
    footer(0, 1 << 20, 2, 16, 63, "win ", VPC_TYPE_DYNAMIC);
    file_len = 2048;
    cr_assert_eq(vpc_open_footer(&R, 2048, VPC_SIZE_AUTO, &img), 0);
    cr_assert_eq(img.total_sectors, 2048);
    cr_assert_eq(vpc_open_footer(&R, 2048, VPC_SIZE_CHS, &img), 0);
    cr_assert_eq(img.total_sectors, 2 * 16 * 63);
    footer(0, 1 << 20, 65535, 16, 255, "vpc ", VPC_TYPE_DYNAMIC);
    cr_assert_eq(vpc_open_footer(&R, 2048, VPC_SIZE_CHS, &img), 0);
    cr_assert_eq(img.total_sectors, 2048);
}

Test(vpc, footer_errors_in_order)
{
    memset(file, 0, 4096);
    cr_assert_eq(vpc_open_footer(&R, 100, VPC_SIZE_AUTO, &img), -VPC_ERR_INVALID);
    cr_assert_eq(vpc_open_footer(&R, 0, VPC_SIZE_AUTO, &img), -VPC_ERR_TOO_SMALL);
    /* a fixed footer is looked for in the last sector of the rounded length */
    footer(512, 4096, 1, 1, 1, "qemu", VPC_TYPE_FIXED);
    file_len = 1024;
    cr_assert_eq(vpc_open_footer(&R, 700, VPC_SIZE_AUTO, &img), 0);
    cr_assert(img.fixed);
    footer(512, 4096, 1, 1, 1, "qemu", VPC_TYPE_DYNAMIC);
    cr_assert_eq(vpc_open_footer(&R, 1024, VPC_SIZE_AUTO, &img), -VPC_ERR_INVALID);
    footer(0, 1 << 20, 2, 16, 63, "qemu", VPC_TYPE_DYNAMIC);
    file_len = 2048;
    file[100] ^= 1;
    cr_assert_eq(vpc_open_footer(&R, 2048, VPC_SIZE_AUTO, &img), -VPC_ERR_CHECKSUM);
    footer(0, 0xff000001ull * 512, 2, 16, 63, "win ", VPC_TYPE_DYNAMIC);
    cr_assert_eq(vpc_open_footer(&R, 2048, VPC_SIZE_AUTO, &img), -VPC_ERR_TOO_LARGE);
}

static int open_dyn(void)
{
    int ret = vpc_open_footer(&R, file_len, VPC_SIZE_AUTO, &img);

    return ret ? ret : vpc_open_dynamic(&R, &img);
}

Test(vpc, dynamic_header_limits)
{
    footer(0, 1 << 20, 2, 16, 63, "qemu", VPC_TYPE_DYNAMIC);
    dynhdr(1, 1000);
    cr_assert_eq(open_dyn(), -VPC_ERR_BLOCK_SIZE);
    cr_assert_eq(img.err_arg, 1000);
    dynhdr(0, 2 << 20);
    cr_assert_eq(open_dyn(), -VPC_ERR_TABLE_TOO_SMALL);
    dynhdr(0x20000000, 512);
    cr_assert_eq(open_dyn(), -VPC_ERR_MTE_TOO_LARGE);
    /* qemu's int: 0xffffffff is -1, and the table check wraps past it */
    dynhdr(0xffffffffu, 512);
    cr_assert_eq(open_dyn(), -VPC_ERR_MTE_TOO_LARGE_NEG);
    cr_assert_eq(img.err_arg, 1);
    dynhdr(4096, 512); /* 16 KiB of BAT in a 2 KiB file */
    cr_assert_eq(open_dyn(), -VPC_ERR_TRUNCATED);
    dynhdr(1, 2 << 20);
    be(file + 512 + 16, 1ull << 63, 8);
    cr_assert_eq(open_dyn(), -VPC_ERR_BAT_READ);
    dynhdr(1, 2 << 20);
    memcpy(file + 512, "cxsparsX", 8);
    cr_assert_eq(open_dyn(), -VPC_ERR_MAGIC);
}

Test(vpc, bat_map_and_truncation)
{
    uint32_t bat[1];
    uint8_t buf[8];
    uint64_t host, run;

    footer(0, 1 << 20, 2, 16, 63, "qemu", VPC_TYPE_DYNAMIC);
    dynhdr(1, 2 << 20);
    be(file + 1536, 4, 4); /* block 0 at sector 4: bitmap 512 bytes, then data */
    cr_assert_eq(open_dyn(), 0);
    cr_assert_eq(vpc_open_bat(&R, &img, bat, buf, sizeof(buf)), -VPC_ERR_TRUNCATED);
    file_len = 2048 + 512 + (2 << 20);
    cr_assert_eq(open_dyn(), 0);
    cr_assert_eq(vpc_open_bat(&R, &img, bat, buf, sizeof(buf)), 0);
    cr_assert(vpc_map(&img, bat, 1000, &host, &run));
    cr_assert_eq(host, 2048 + 512 + 1000);
    cr_assert_eq(run, (2 << 20) - 1000);
}

Test(vpc, create_sizes_as_qemu_img)
{
    struct vpc_create c;

    /* qemu-img create -f vpc: 100M -> 104865792, 1000001 -> 1009664 (a fixed file of 1010176) */
    cr_assert_eq(vpc_create_size(100 << 20, false, false, &c), 0);
    cr_assert_eq(c.size, 104865792);
    cr_assert_eq(vpc_create_size(1000001, false, false, &c), 0);
    cr_assert_eq(c.size, 1009664);
    cr_assert_eq(vpc_create_size(1000001, true, false, &c), 0);
    cr_assert_eq(c.size, 1000448);
    cr_assert_eq(vpc_create_size(3ull << 40, false, false, &c), -1);
    cr_assert_eq(vpc_create_size(2040ull << 30, true, false, &c), 0);
    cr_assert_eq(vpc_create_size(2041ull << 30, true, false, &c), -1);
}

Test(vpc, created_image_opens)
{
    struct vpc_create c;
    uint8_t uuid[16] = {0};
    uint32_t bat[8];
    uint8_t buf[512];

    cr_assert_eq(vpc_create_size(5 << 20, false, false, &c), 0);
    memset(file, 0, sizeof(file));
    vpc_create_footer(&c, 1, uuid, file);
    vpc_create_dyn_header(&c, file + 512);
    memset(file + 1536, 0xff, 512);
    memcpy(file + 2048, file, 512);
    file_len = 2560;
    cr_assert_eq(open_dyn(), 0);
    cr_assert_eq(img.total_sectors * 512, c.size);
    cr_assert_eq(img.max_table_entries, vpc_create_bat_entries(&c));
    cr_assert_eq(vpc_open_bat(&R, &img, bat, buf, sizeof(buf)), 0);
}

/* No other table of codes the host renders claims a vpc code. */
Test(vpc, error_codes_are_unique_in_the_host_table)
{
#define CODE(name, code, ...) code,
    static const int vpc[] = {VPC_ERRORS(CODE)};
    static const int other[] = {INSTAR_ERRORS(CODE) QCOW2_ERRORS(CODE) QCOW2_CHECK_MSGS(CODE)};
#undef CODE

    for (size_t i = 0; i < sizeof(vpc) / sizeof(vpc[0]); i++)
        for (size_t j = 0; j < sizeof(other) / sizeof(other[0]); j++)
            cr_assert_neq(vpc[i], other[j], "code %d", vpc[i]);
}
