/*
 * VHDX creation (see create.h): qemu 7.2's vhdx_co_create() and its
 * helpers vhdx_create_new_headers(), vhdx_create_new_region_table(),
 * vhdx_create_bat() and vhdx_create_new_metadata().
 */
#include "create.h"

#include <string.h>

#include "crc32c.h"
#include "vhdx.h"

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t round_mib(uint64_t v)
{
    return (v + VHDX_MiB - 1) / VHDX_MiB * VHDX_MiB;
}

int vhdx_create_layout(struct vhdx_create *c)
{
    uint32_t data_blocks, bitmaps;
    unsigned bits = 0;

    if (c->size > VHDX_CREATE_MAX_SIZE || c->size % 512 || c->log_size < VHDX_MiB ||
        c->log_size % VHDX_MiB)
        return -1;
    if (c->block_size == 0)
        c->block_size = c->size > (32ull << 40)    ? 64u << 20
                        : c->size > (100ull << 30) ? 32u << 20
                        : c->size > (1ull << 30)   ? 16u << 20
                                                   : 8u << 20;
    if (c->block_size < VHDX_MiB || c->block_size % VHDX_MiB ||
        (c->block_size & (c->block_size - 1)) || c->block_size > VHDX_BLOCK_SIZE_MAX)
        return -1;
    while ((((1ull << 23) * 512 / c->block_size) >> bits) > 1)
        bits++;
    c->chunk_ratio_bits = bits;
    /* vhdx_calc_bat_entries() in 32 bits: at most 2^26 blocks here, and 0 wraps as in qemu. */
    data_blocks = (uint32_t)((c->size + c->block_size - 1) / c->block_size);
    bitmaps = (uint32_t)(data_blocks - 1) >> bits;
    c->bat_entries = data_blocks + bitmaps;
    c->bat_length = (uint32_t)round_mib((uint64_t)c->bat_entries * 8);
    c->bat_offset = round_mib(VHDX_MiB + (uint64_t)c->log_size);
    c->meta_offset = round_mib(c->bat_offset + c->bat_length);
    c->data_offset = c->bat_offset + c->bat_length + 5ull * VHDX_MiB;
    return 0;
}

void vhdx_create_header(const struct vhdx_create *c, uint64_t seq, const uint8_t file_guid[16],
                        const uint8_t data_guid[16], uint8_t buf[4096])
{
    memset(buf, 0, 4096);
    memcpy(buf, "head", 4);
    le(buf + 8, seq, 8);
    memcpy(buf + 16, file_guid, 16);
    memcpy(buf + 32, data_guid, 16);
    le(buf + 66, 1, 2);
    le(buf + 68, c->log_size, 4);
    le(buf + 72, VHDX_MiB, 8);
    le(buf + 4, vhdx_crc32c(0xffffffffu, buf, 4096) ^ 0xffffffffu, 4);
}

void vhdx_create_region(const struct vhdx_create *c, uint8_t buf[65536])
{
    static const uint8_t bat_guid[16] = {0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                                         0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08};
    static const uint8_t meta_guid[16] = {0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
                                          0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e};

    memset(buf, 0, 65536);
    memcpy(buf, "regi", 4);
    le(buf + 8, 2, 4);
    memcpy(buf + 16, bat_guid, 16);
    le(buf + 32, c->bat_offset, 8);
    le(buf + 40, c->bat_length, 4);
    memcpy(buf + 48, meta_guid, 16);
    le(buf + 64, c->meta_offset, 8);
    le(buf + 72, VHDX_MiB, 4);
    le(buf + 4, vhdx_crc32c(0xffffffffu, buf, 65536) ^ 0xffffffffu, 4);
}

void vhdx_create_metadata(const struct vhdx_create *c, const uint8_t page83[16],
                          uint8_t table[65536], uint8_t items[40])
{
    static const uint8_t guids[5][16] = {
        {0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7,
         0x6b},
        {0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4,
         0xb8},
        {0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45, 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7,
         0x46},
        {0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab,
         0x5f},
        {0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5,
         0x56},
    };
    static const uint32_t len[5] = {8, 8, 16, 4, 4};
    uint32_t off = 65536;

    memset(table, 0, 65536);
    memcpy(table, "metadata", 8);
    le(table + 10, 5, 2);
    for (int i = 0; i < 5; i++) {
        uint8_t *e = table + 32 + 32 * i;

        memcpy(e, guids[i], 16);
        le(e + 16, off, 4);
        le(e + 20, len[i], 4);
        /* required; the virtual disk's own items besides the file parameters */
        le(e + 24, i == 0 ? 4 : 6, 4);
        off += len[i];
    }
    memset(items, 0, 40);
    le(items, c->block_size, 4);
    le(items + 4, c->fixed ? 1 : 0, 4);
    le(items + 8, c->size, 8);
    memcpy(items + 16, page83, 16);
    le(items + 32, 512, 4);
    le(items + 36, 512, 4);
}

bool vhdx_create_bat_written(const struct vhdx_create *c)
{
    /* A dynamic image's file reads zeros where it was grown (has_zero_init). */
    return c->fixed || c->zero_blocks;
}

uint64_t vhdx_create_bat_entry(const struct vhdx_create *c, uint64_t i)
{
    uint64_t chunk = 1ull << c->chunk_ratio_bits, block, off;

    /* Every (chunk + 1)-th entry is a sector bitmap block: left zero. */
    if (i % (chunk + 1) == chunk)
        return 0;
    block = i - i / (chunk + 1);
    if (block * c->block_size >= c->size)
        return 0;
    if (c->zero_blocks)
        return VHDX_PAYLOAD_ZERO;
    if (!c->fixed)
        return VHDX_PAYLOAD_NOT_PRESENT;
    off = round_mib(c->data_offset + block * c->block_size);
    return off | VHDX_PAYLOAD_FULLY_PRESENT;
}
