/*
 * qcow (version 1) reading as qemu 7.2's qcow_open() and
 * get_cluster_offset() do it (see qcow.h).  Checks run in QEMU's order,
 * so the first failure is the one qemu-img reports.
 */
#include "qcow.h"

#include <string.h>

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t qcow_be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void qcow_put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

int qcow_probe(const uint8_t *buf, size_t len)
{
    return len >= QCOW_HEADER_SIZE && be32(buf) == QCOW_MAGIC && be32(buf + 4) == QCOW_VERSION ? 100
                                                                                               : 0;
}

bool qcow_io_ok(uint64_t off, uint64_t len)
{
    return len <= QCOW_IO_MAX && off <= QCOW_IO_MAX - len;
}

int qcow_open_header(const uint8_t hdr[QCOW_HEADER_SIZE], bool need_key, struct qcow_image *img)
{
    uint32_t shift;

    memset(img, 0, sizeof(*img));
    img->version = be32(hdr + 4);
    img->backing_file_offset = qcow_be64(hdr + 8);
    img->backing_file_size = be32(hdr + 16);
    img->mtime = be32(hdr + 20);
    img->size = qcow_be64(hdr + 24);
    img->cluster_bits = hdr[32];
    img->l2_bits = hdr[33];
    img->crypt_method = be32(hdr + 36);
    img->l1_table_offset = qcow_be64(hdr + 40);

    if (be32(hdr) != QCOW_MAGIC)
        return -QCOW_ERR_MAGIC;
    if (img->version != QCOW_VERSION)
        return img->version == 2 || img->version == 3 ? -QCOW_ERR_VERSION_HINT : -QCOW_ERR_VERSION;
    if (img->size <= 1)
        return -QCOW_ERR_SIZE_SMALL;
    if (img->cluster_bits < 9 || img->cluster_bits > 16)
        return -QCOW_ERR_CLUSTER_BITS;
    if (img->l2_bits < 9 - 3 || img->l2_bits > 16 - 3)
        return -QCOW_ERR_L2_BITS;
    if (img->crypt_method != QCOW_CRYPT_NONE && img->crypt_method != QCOW_CRYPT_AES)
        return -QCOW_ERR_CRYPT_METHOD;
    /* qcrypto_block_open() of "qcow" with I/O and no encrypt.key-secret. */
    if (img->crypt_method == QCOW_CRYPT_AES && need_key)
        return -QCOW_ERR_KEY_SECRET;
    img->cluster_size = 1u << img->cluster_bits;
    img->l2_size = 1u << img->l2_bits;
    img->cluster_offset_mask = (1ull << (63 - img->cluster_bits)) - 1;
    shift = img->cluster_bits + img->l2_bits;
    if (img->size > UINT64_MAX - (1ull << shift))
        return -QCOW_ERR_TOO_LARGE;
    img->l1_size = (img->size + (1ull << shift) - 1) >> shift;
    if (img->l1_size > 0x7fffffffu / 8)
        return -QCOW_ERR_TOO_LARGE;
    return 0;
}

int qcow_check_backing(const struct qcow_image *img)
{
    if (img->backing_file_offset != 0 && img->backing_file_size > QCOW_BACKING_NAME_MAX)
        return -QCOW_ERR_BACKING_TOO_LONG;
    return 0;
}

uint64_t qcow_l1_in_file(const struct qcow_image *img, uint64_t file_size)
{
    uint64_t n;

    if (img->l1_table_offset >= file_size)
        return 0;
    n = (file_size - img->l1_table_offset + 7) / 8;
    return n < img->l1_size ? n : img->l1_size;
}

uint64_t qcow_l1_index(const struct qcow_image *img, uint64_t pos)
{
    return pos >> (img->l2_bits + img->cluster_bits);
}

uint32_t qcow_l2_index(const struct qcow_image *img, uint64_t pos)
{
    return (uint32_t)((pos >> img->cluster_bits) & (img->l2_size - 1));
}

void qcow_compressed(const struct qcow_image *img, uint64_t entry, uint64_t *off, uint32_t *len)
{
    *off = entry & img->cluster_offset_mask;
    *len = (uint32_t)((entry >> (63 - img->cluster_bits)) & (img->cluster_size - 1));
}

void qcow_header_write(const struct qcow_image *img, uint8_t out[QCOW_HEADER_SIZE])
{
    memset(out, 0, QCOW_HEADER_SIZE);
    put_be32(out, QCOW_MAGIC);
    put_be32(out + 4, QCOW_VERSION);
    qcow_put_be64(out + 8, img->backing_file_offset);
    put_be32(out + 16, img->backing_file_size);
    put_be32(out + 20, img->mtime);
    qcow_put_be64(out + 24, img->size);
    out[32] = (uint8_t)img->cluster_bits;
    out[33] = (uint8_t)img->l2_bits;
    put_be32(out + 36, img->crypt_method);
    qcow_put_be64(out + 40, img->l1_table_offset);
}
