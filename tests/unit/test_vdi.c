/*
 * formats/vdi: vdi_open()'s checks in qemu 7.2's order (each failure with
 * the arguments qemu's message prints), the block map held in memory,
 * vdi_co_check()'s lines and counts, and creation.  Expected values come
 * from qemu's block/vdi.c and qemu-img 7.2 (noted per case).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "instar/errors.h"
#include "qcow2/check_err.h"
#include "qcow2/qcow2_err.h"
#include "vdi/vdi.h"
#include "vpc/vpc_err.h"

static uint8_t h[VDI_HEADER_SIZE];
static struct vdi_image img;

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

/* A valid dynamic header: size bytes, blocks blocks, map at 512. */
static void header(uint64_t size, uint32_t blocks)
{
    memset(h, 0, sizeof(h));
    le(h + VDI_OFF_SIGNATURE, VDI_SIGNATURE, 4);
    le(h + VDI_OFF_VERSION, VDI_VERSION_1_1, 4);
    le(h + VDI_OFF_IMAGE_TYPE, VDI_TYPE_DYNAMIC, 4);
    le(h + VDI_OFF_OFFSET_BMAP, 512, 4);
    le(h + VDI_OFF_OFFSET_DATA, 1024, 4);
    le(h + VDI_OFF_SECTOR_SIZE, 512, 4);
    le(h + VDI_OFF_DISK_SIZE, size, 8);
    le(h + VDI_OFF_BLOCK_SIZE, VDI_BLOCK_SIZE, 4);
    le(h + VDI_OFF_BLOCKS_IN_IMAGE, blocks, 4);
}

Test(vdi, checks_in_qemu_order)
{
    /* The size limit is checked before the signature. */
    header(1ull << 60, 1);
    le(h + VDI_OFF_SIGNATURE, 0, 4);
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_SIZE_MAX);
    cr_assert_eq(img.err_args[0], 1ull << 60);
    cr_assert_eq(img.err_args[1],
                 0x1fffff8000000ull); /* qemu-img: max supported is 0x1fffff8000000 */
    header(4 << 20, 4);
    le(h + VDI_OFF_SIGNATURE, 0x12345, 4);
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_SIGNATURE);
    cr_assert_eq(img.err_args[0], 0x12345);
    header(4 << 20, 4);
    le(h + VDI_OFF_VERSION, 0x20003, 4);
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_VERSION);
    cr_assert_eq(img.err_args[0], 2);
    cr_assert_eq(img.err_args[1], 3);
    header(4 << 20, 4);
    le(h + VDI_OFF_OFFSET_BMAP, 513, 4);
    le(h + VDI_OFF_OFFSET_DATA, 1000, 4);
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_BMAP_ALIGN);
    le(h + VDI_OFF_OFFSET_BMAP, 512, 4);
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_DATA_ALIGN);
    header(4 << 20, 4);
    le(h + VDI_OFF_SECTOR_SIZE, 4096, 4);
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_SECTOR_SIZE);
    header(4 << 20, 4);
    le(h + VDI_OFF_BLOCK_SIZE, 4096, 4);
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_BLOCK_SIZE);
    /* An odd size is rounded up before the room check (qemu: disk size 4194816). */
    header((4 << 20) + 1, 4);
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_DISK_SIZE);
    cr_assert_eq(img.err_args[0], (4 << 20) + 512);
    cr_assert_eq(img.err_args[1], 4 << 20);
    header(4 << 20, 4);
    h[VDI_OFF_UUID_LINK + 15] = 1;
    h[VDI_OFF_UUID_PARENT] = 1;
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_LINK_UUID);
    h[VDI_OFF_UUID_LINK + 15] = 0;
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_PARENT_UUID);
    /* qemu-img: too many blocks 536870912, max is 536870784 */
    header(0, 0x20000000);
    cr_assert_eq(vdi_open_header(h, 1024, &img), -VDI_ERR_TOO_MANY_BLOCKS);
    cr_assert_eq(img.err_args[1], 536870784);
    header(0, VDI_BLOCKS_MAX);
    cr_assert_eq(vdi_open_header(h, 1024, &img), 0);
}

Test(vdi, map_held_only_in_the_file)
{
    /* 300 blocks: 3 sectors of map; a file ending 100 bytes into the map holds one. */
    header(300 << 20, 300);
    cr_assert_eq(vdi_open_header(h, 612, &img), 0);
    cr_assert_eq(img.bmap_sectors, 3);
    cr_assert_eq(img.bmap_held, 128);
    cr_assert_eq(vdi_open_header(h, 512, &img), 0);
    cr_assert_eq(img.bmap_held, 0);
    cr_assert_eq(vdi_open_header(h, 1 << 20, &img), 0);
    cr_assert_eq(img.bmap_held, 384);
}

Test(vdi, map_entries)
{
    uint32_t bmap[128];
    uint64_t host, run;

    header(6 << 20, 6);
    cr_assert_eq(vdi_open_header(h, 1 << 20, &img), 0);
    memset(bmap, 0xff, sizeof(bmap));
    bmap[0] = 1;
    bmap[1] = VDI_DISCARDED;
    cr_assert(vdi_map(&img, bmap, 100, &host, &run));
    cr_assert_eq(host, 1024 + (1 << 20) + 100);
    cr_assert_eq(run, (1 << 20) - 100);
    cr_assert_not(vdi_map(&img, bmap, 1 << 20, &host, &run));
    cr_assert_not(vdi_map(&img, bmap, 5 << 20, &host, &run));
    cr_assert_eq(run, 1 << 20);
    /* Entries past the held part read as 0: block 0. */
    img.bmap_held = 0;
    cr_assert(vdi_map(&img, bmap, 5 << 20, &host, &run));
    cr_assert_eq(host, 1024);
}

static int lines[16][3], nlines;

static void rec(void *opaque, int32_t code, uint64_t a0, uint64_t a1)
{
    (void)opaque;
    lines[nlines][0] = code;
    lines[nlines][1] = (int)a0;
    lines[nlines][2] = (int)a1;
    nlines++;
}

/* qemu-img check on the parity suite's "entries" image: 0, 0, 9, discarded, 1; count 7. */
Test(vdi, check_as_qemu)
{
    uint32_t bmap[128];
    uint64_t used[1];

    header(6 << 20, 6);
    le(h + VDI_OFF_BLOCKS_ALLOCATED, 7, 4);
    cr_assert_eq(vdi_open_header(h, 1 << 20, &img), 0);
    memset(bmap, 0xff, sizeof(bmap));
    bmap[0] = 0;
    bmap[1] = 0;
    bmap[2] = 9;
    bmap[3] = VDI_DISCARDED;
    bmap[4] = 1;
    nlines = 0;
    cr_assert_eq(vdi_check(&img, bmap, used, rec, NULL), 3);
    cr_assert_eq(nlines, 3);
    /* ERROR: block index 0 also used by 0 */
    cr_assert(lines[0][0] == VDI_MSG_ALSO_USED && lines[0][1] == 0 && lines[0][2] == 0);
    /* ERROR: block index 2 too large, is 9 */
    cr_assert(lines[1][0] == VDI_MSG_TOO_LARGE && lines[1][1] == 2 && lines[1][2] == 9);
    /* ERROR: allocated blocks mismatch, is 3, should be 7 */
    cr_assert(lines[2][0] == VDI_MSG_MISMATCH && lines[2][1] == 3 && lines[2][2] == 7);
}

Test(vdi, created_header_opens)
{
    uint8_t u1[16], u2[16];

    for (int i = 0; i < 16; i++) {
        u1[i] = (uint8_t)i;
        u2[i] = (uint8_t)(16 + i);
    }
    /* qemu-img create -f vdi -o static=on 5000000: 5 blocks, data at 1024. */
    vdi_create_header(5000192, true, u1, u2, h);
    cr_assert_eq(vdi_open_header(h, 1024, &img), 0);
    cr_assert_eq(img.disk_size, 5000192);
    cr_assert_eq(img.blocks_in_image, 5);
    cr_assert_eq(img.blocks_allocated, 5);
    cr_assert_eq(img.offset_data, 1024);
    cr_assert_eq(img.image_type, VDI_TYPE_STATIC);
    cr_assert_eq(memcmp(h, "<<< QEMU VM Virtual Disk Image >>>\n", 35), 0);
    /* qemu_uuid_bswap: the first three fields little endian. */
    cr_assert_eq(h[VDI_OFF_UUID_IMAGE], 3);
    cr_assert_eq(h[VDI_OFF_UUID_IMAGE + 4], 5);
    cr_assert_eq(h[VDI_OFF_UUID_IMAGE + 8], 8);
    cr_assert_eq(h[VDI_OFF_UUID_LAST_SNAP], 19);
    le(h + VDI_OFF_BLOCKS_ALLOCATED, 0, 4);
    vdi_create_header(0, false, u1, u2, h);
    cr_assert_eq(vdi_open_header(h, 512, &img), 0);
    cr_assert_eq(img.offset_data, 512);
}

/* No other table of codes the host renders claims a vdi code. */
Test(vdi, error_codes_are_unique_in_the_host_table)
{
#define CODE(name, code, ...) code,
    static const int vdi[] = {VDI_ERRORS(CODE)};
    static const int other[] = {INSTAR_ERRORS(CODE) QCOW2_ERRORS(CODE) QCOW2_CHECK_MSGS(CODE)
                                    VPC_ERRORS(CODE)};
#undef CODE

    for (size_t i = 0; i < sizeof(vdi) / sizeof(vdi[0]); i++)
        for (size_t j = 0; j < sizeof(other) / sizeof(other[0]); j++)
            cr_assert_neq(vdi[i], other[j], "code %d", vdi[i]);
}
