/*
 * The Bochs growing image (bochs.h): bochs_open()'s checks and
 * seek_to_sector()'s arithmetic as QEMU 7.2 does them.
 */
#include <string.h>

#include "bochs.h"

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p + 4) << 32 | le32(p);
}

/* strcmp(field, lit) == 0 for a field of len bytes: lit and its NUL inside it. */
static bool field_is(const uint8_t *p, size_t len, const char *lit)
{
    size_t n = strlen(lit) + 1;

    return n <= len && memcmp(p, lit, n) == 0;
}

int bochs_open(const struct bochs_reader *r, struct bochs_image *img)
{
    uint8_t h[BOCHS_HEADER_SIZE];
    uint32_t version, bitmap, per_extent;
    uint64_t need;
    int ret;

    memset(img, 0, sizeof(*img));
    ret = r->pread(r->opaque, 0, h, sizeof(h));
    if (ret < 0)
        return ret;
    /*
     * QEMU compares the NUL-terminated strings of the packed struct: magic
     * (32 bytes), type and subtype (16 each).  A field without a NUL runs
     * on into the next one, which then cannot match the literal either.
     */
    version = le32(h + 64);
    if (!field_is(h, 32, "Bochs Virtual HD Image") || !field_is(h + 32, 16, "Redolog") ||
        !field_is(h + 48, 16, "Growing") || (version != 0x00020000u && version != 0x00010000u))
        return -BOCHS_ERR_FORMAT;
    /* Version 1 keeps the disk size where version 2 has a reserved word. */
    img->total_sectors = (version == 0x00010000u ? le64(h + 84) : le64(h + 88)) / 512;

    img->catalog_size = le32(h + 72);
    if (img->catalog_size > BOCHS_CATALOG_MAX)
        return -BOCHS_ERR_CATALOG_LARGE;
    img->header_size = le32(h + 68);
    /* uint32_t arithmetic, as QEMU's (the sum may wrap). */
    img->data_offset = img->header_size + img->catalog_size * 4;
    bitmap = le32(h + 76);
    img->bitmap_blocks = 1 + (bitmap - 1) / 512;
    img->extent_size = le32(h + 80);
    img->extent_blocks = 1 + (img->extent_size - 1) / 512;

    img->err_arg = img->extent_size;
    if (img->extent_size < 512)
        return -BOCHS_ERR_EXTENT_SMALL;
    if (img->extent_size & (img->extent_size - 1))
        return -BOCHS_ERR_EXTENT_POW2;
    if (img->extent_size > BOCHS_EXTENT_MAX)
        return -BOCHS_ERR_EXTENT_LARGE;
    img->err_arg = 0;
    per_extent = img->extent_size / 512;
    /* DIV_ROUND_UP(total_sectors, per_extent): total_sectors < 2^55, no overflow. */
    need = (img->total_sectors + per_extent - 1) / per_extent;
    if (img->catalog_size < need)
        return -BOCHS_ERR_CATALOG_SMALL;
    return 0;
}

int bochs_read_catalog(const struct bochs_reader *r, const struct bochs_image *img, uint32_t *cat)
{
    uint8_t buf[4096];
    uint32_t i = 0;
    int ret;

    while (i < img->catalog_size) {
        uint32_t n = img->catalog_size - i;

        if (n > sizeof(buf) / 4)
            n = sizeof(buf) / 4;
        /* The catalog's offset is a uint32_t and its length at most 4 MiB: no overflow. */
        ret = r->pread(r->opaque, (uint64_t)img->header_size + (uint64_t)i * 4, buf, (size_t)n * 4);
        if (ret < 0)
            return ret;
        for (uint32_t j = 0; j < n; j++)
            cat[i + j] = le32(buf + 4 * j);
        i += n;
    }
    return 0;
}

bool bochs_locate(const struct bochs_image *img, const uint32_t *cat, uint64_t sector,
                  uint64_t *bitmap, unsigned *bit, uint64_t *data)
{
    uint64_t offset = sector * 512;
    uint64_t index = offset / img->extent_size;
    uint64_t in_extent = (offset % img->extent_size) / 512;
    uint64_t base;

    if (cat[index] == BOCHS_UNALLOCATED)
        return false;
    /* QEMU's uint64_t expression: wraps modulo 2^64 for hostile entries. */
    base = img->data_offset + 512ull * (uint64_t)cat[index] *
                                  ((uint64_t)(uint32_t)(img->extent_blocks + img->bitmap_blocks));
    *bitmap = base + in_extent / 8;
    *bit = (unsigned)(in_extent % 8);
    *data = base + 512 * ((uint64_t)img->bitmap_blocks + in_extent);
    return true;
}
