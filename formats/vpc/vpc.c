/*
 * VHD reading as qemu 7.2's vpc_open() does it (see vpc.h).  Checks run
 * in QEMU's order, so the first failure is the one qemu-img reports.
 */
#include "vpc.h"

#include <string.h>

/* BDRV_MAX_LENGTH: INT64_MAX aligned down to 1 GiB; requests end below it. */
#define VPC_IO_MAX 0x7fffffffc0000000ull

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* bdrv_check_request(): QEMU refuses a read it cannot address. */
static bool io_ok(uint64_t off, uint64_t len)
{
    return len <= VPC_IO_MAX && off <= VPC_IO_MAX - len;
}

uint32_t vpc_checksum(const uint8_t *buf, size_t len)
{
    uint32_t sum = 0;
    size_t i;

    for (i = 0; i < len; i++)
        sum += buf[i];
    return ~sum;
}

/* Creator applications whose images are sized by current_size (vpc_open's table). */
static bool sized_by_current(const uint8_t app[4])
{
    return !memcmp(app, "win ", 4) || !memcmp(app, "qem2", 4) || !memcmp(app, "d2v ", 4) ||
           !memcmp(app, "CTXS", 4) || !memcmp(app, "tap", 4);
}

int vpc_open_footer(const struct vpc_reader *r, uint64_t file_length, enum vpc_size_calc calc,
                    struct vpc_image *img)
{
    uint8_t *f = img->footer;
    uint8_t copy[VPC_FOOTER_SIZE];
    bool use_chs;
    int ret;

    memset(img, 0, sizeof(*img));
    img->file_length =
        file_length > UINT64_MAX - 511 ? file_length & ~511ull : (file_length + 511) & ~511ull;
    ret = r->pread(r->opaque, 0, f, VPC_FOOTER_SIZE);
    if (ret < 0)
        return ret;
    if (memcmp(f, "conectix", 8)) {
        /* A fixed image has its footer only in the last sector. */
        if (img->file_length < VPC_FOOTER_SIZE)
            return -VPC_ERR_TOO_SMALL;
        ret = r->pread(r->opaque, img->file_length - VPC_FOOTER_SIZE, f, VPC_FOOTER_SIZE);
        if (ret < 0)
            return ret;
        if (memcmp(f, "conectix", 8) || be32(f + 60) != VPC_TYPE_FIXED)
            return -VPC_ERR_INVALID;
        img->fixed = true;
    }

    /* Footer checksum: computed with its own field zeroed. */
    memcpy(copy, f, sizeof(copy));
    memset(copy + 64, 0, 4);
    if (vpc_checksum(copy, sizeof(copy)) != be32(f + 64))
        return -VPC_ERR_CHECKSUM;

    /*
     * Virtual PC sizes an image by its CHS geometry, Hyper-V and others by
     * current_size; the maximum geometry means current_size whatever the
     * creator.
     */
    img->total_sectors = (uint64_t)be16(f + 56) * f[58] * f[59];
    use_chs = !sized_by_current(f + 28) || calc == VPC_SIZE_CHS;
    if (!use_chs || img->total_sectors == VPC_MAX_GEOMETRY || calc == VPC_SIZE_CURRENT)
        img->total_sectors = be64(f + 48) / 512;
    if (img->total_sectors > VPC_MAX_SECTORS)
        return -VPC_ERR_TOO_LARGE;
    return 0;
}

int vpc_open_dynamic(const struct vpc_reader *r, struct vpc_image *img)
{
    uint8_t h[VPC_DYN_HDR_SIZE];
    uint64_t data_offset = be64(img->footer + 16), computed, table_bytes, end;
    int32_t mte;
    int ret;

    if (!io_ok(data_offset, sizeof(h)))
        return -VPC_ERR_DYN_READ;
    ret = r->pread(r->opaque, data_offset, h, sizeof(h));
    if (ret < 0)
        return ret;
    if (memcmp(h, "cxsparse", 8))
        return -VPC_ERR_MAGIC;

    img->block_size = be32(h + 32);
    if (img->block_size < 512 || (img->block_size & (img->block_size - 1))) {
        img->err_arg = img->block_size;
        return -VPC_ERR_BLOCK_SIZE;
    }
    img->bitmap_size = ((img->block_size / (8 * 512)) + 511) & ~511u;

    /* QEMU keeps max_table_entries in an int. */
    img->max_table_entries = be32(h + 28);
    mte = (int32_t)img->max_table_entries;
    if (img->total_sectors * 512 / img->block_size > 0xffffffffull)
        return -VPC_ERR_TOO_MANY_BLOCKS;
    /* (uint64_t) of the int, multiplied modulo 2^64, as QEMU computes it. */
    computed = (uint64_t)(int64_t)mte * img->block_size;
    if (computed < img->total_sectors * 512)
        return -VPC_ERR_TABLE_TOO_SMALL;
    if (mte < 0) {
        img->err_arg = (uint32_t)(0x100000000ull - img->max_table_entries);
        return -VPC_ERR_MTE_TOO_LARGE_NEG;
    }
    if (mte > 0x7fffffff / 4) {
        img->err_arg = img->max_table_entries;
        return -VPC_ERR_MTE_TOO_LARGE;
    }

    table_bytes = (uint64_t)mte * 4;
    img->bat_offset = be64(h + 16);
    if (!io_ok(img->bat_offset, table_bytes))
        return -VPC_ERR_BAT_READ;
    /*
     * The BAT ends before the first free block: a table running past the
     * end of the file fails the truncation check, whatever it holds, so
     * it is refused before it is read.
     */
    end = (img->bat_offset + table_bytes + 511) & ~511ull;
    img->free_data_block_offset = end;
    if (end > img->file_length)
        return -VPC_ERR_TRUNCATED;
    return 0;
}

int vpc_open_bat(const struct vpc_reader *r, struct vpc_image *img, uint32_t *bat, uint8_t *buf,
                 size_t len)
{
    uint32_t i = 0, n = img->max_table_entries, j, chunk;
    int ret;

    len &= ~(size_t)3;
    if (len == 0)
        return -VPC_ERR_BAT_NOMEM;
    while (i < n) {
        chunk = n - i < len / 4 ? n - i : (uint32_t)(len / 4);
        ret = r->pread(r->opaque, img->bat_offset + (uint64_t)i * 4, buf, (size_t)chunk * 4);
        if (ret < 0)
            return ret;
        for (j = 0; j < chunk; j++) {
            uint32_t e = be32(buf + (size_t)j * 4);

            bat[i + j] = e;
            if (e != VPC_BAT_UNUSED) {
                /* At most 2^41 + 2^31 + 2^20: no overflow. */
                uint64_t next = 512ull * e + img->bitmap_size + img->block_size;

                if (next > img->free_data_block_offset)
                    img->free_data_block_offset = next;
            }
        }
        i += chunk;
    }
    if (img->free_data_block_offset > img->file_length)
        return -VPC_ERR_TRUNCATED;
    return 0;
}

bool vpc_map(const struct vpc_image *img, const uint32_t *bat, uint64_t off, uint64_t *host,
             uint64_t *run)
{
    uint64_t index = off / img->block_size;
    uint32_t in = (uint32_t)(off % img->block_size);

    *run = img->block_size - in;
    if (index >= img->max_table_entries || bat[index] == VPC_BAT_UNUSED)
        return false;
    *host = 512ull * bat[index] + img->bitmap_size + in;
    return true;
}

void vpc_geometry(uint64_t total_sectors, uint16_t *cyls, uint8_t *heads, uint8_t *secs)
{
    uint32_t cth;

    if (total_sectors > VPC_MAX_GEOMETRY)
        total_sectors = VPC_MAX_GEOMETRY;
    if (total_sectors >= 65535ull * 16 * 63) {
        *secs = 255;
        *heads = 16;
        cth = (uint32_t)(total_sectors / 255);
    } else {
        uint32_t h;

        /* QEMU keeps the heads in a uint8_t: the quotient is truncated. */
        *secs = 17;
        cth = (uint32_t)(total_sectors / 17);
        h = (uint8_t)((cth + 1023) / 1024);
        if (h < 4)
            h = 4;
        if (cth >= h * 1024 || h > 16) {
            *secs = 31;
            h = 16;
            cth = (uint32_t)(total_sectors / 31);
        }
        if (cth >= h * 1024) {
            *secs = 63;
            h = 16;
            cth = (uint32_t)(total_sectors / 63);
        }
        *heads = (uint8_t)h;
    }
    *cyls = (uint16_t)(cth / *heads);
}
