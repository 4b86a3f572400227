/*
 * The cloop image (cloop.h): cloop_open()'s checks as QEMU 7.2 does them.
 */
#include "cloop.h"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

int cloop_open(const struct cloop_reader *r, struct cloop_image *img, uint8_t *buf, size_t len)
{
    uint8_t h[8];
    uint64_t prev = 0;
    uint32_t count, i = 0;
    int ret;

    *img = (struct cloop_image){0};
    ret = r->pread(r->opaque, 128, h, sizeof(h));
    if (ret < 0)
        return ret;
    img->block_size = be32(h);
    img->err_arg = img->block_size;
    if (img->block_size % 512)
        return -CLOOP_ERR_BLOCK_SIZE_ALIGN;
    if (img->block_size == 0)
        return -CLOOP_ERR_BLOCK_SIZE_ZERO;
    if (img->block_size > CLOOP_MAX_BLOCK_SIZE)
        return -CLOOP_ERR_BLOCK_SIZE_LARGE;

    img->n_blocks = be32(h + 4);
    img->err_arg = img->n_blocks;
    /* (UINT32_MAX - 1) / 8: QEMU's guard against a uint32_t overflow. */
    if (img->n_blocks > 536870911u)
        return -CLOOP_ERR_N_BLOCKS;
    if (((uint64_t)img->n_blocks + 1) * 8 > CLOOP_MAX_OFFSETS_LEN)
        return -CLOOP_ERR_TOO_MANY_OFFSETS;

    /* n_blocks + 1 offsets, at most 64 Mi of them: a bounded loop. */
    len &= ~(size_t)7;
    if (len == 0)
        return -CLOOP_ERR_TOO_MANY_OFFSETS;
    img->max_compressed = 1;
    count = img->n_blocks + 1;
    while (i < count) {
        uint32_t n = count - i;

        if (n > len / 8)
            n = (uint32_t)(len / 8);
        ret = r->pread(r->opaque, CLOOP_OFFSETS_AT + (uint64_t)i * 8, buf, (size_t)n * 8);
        if (ret < 0)
            return ret;
        for (uint32_t j = 0; j < n; j++, i++) {
            uint64_t o = be64(buf + 8 * j), size;

            if (i > 0) {
                img->err_arg = i;
                if (o < prev)
                    return -CLOOP_ERR_NOT_MONOTONIC;
                size = o - prev;
                /* Twice the largest block: poor compression, not an absurd buffer. */
                if (size > 2ull * CLOOP_MAX_BLOCK_SIZE)
                    return -CLOOP_ERR_BLOCK_LARGE;
                if (size > img->max_compressed)
                    img->max_compressed = (uint32_t)size;
            }
            prev = o;
        }
    }
    img->err_arg = 0;
    /* QEMU multiplies two uint32_t: the product wraps modulo 2^32. */
    img->total_sectors = (uint32_t)(img->n_blocks * (img->block_size / 512));
    return 0;
}

int cloop_block(const struct cloop_reader *r, const struct cloop_image *img, uint32_t i,
                uint64_t *off, uint32_t *len)
{
    uint8_t b[16];
    uint64_t end;
    int ret;

    if (i >= img->n_blocks)
        return -1;
    ret = r->pread(r->opaque, CLOOP_OFFSETS_AT + (uint64_t)i * 8, b, sizeof(b));
    if (ret < 0)
        return ret;
    *off = be64(b);
    end = be64(b + 8);
    if (end < *off || end - *off > 2ull * CLOOP_MAX_BLOCK_SIZE)
        return -1;
    *len = (uint32_t)(end - *off);
    return 0;
}
