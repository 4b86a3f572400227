/*
 * QED reading and checking as qemu 7.2's block/qed.c, qed-cluster.c and
 * qed-check.c do it (see qed.h).  Checks run in QEMU's order, so the
 * first failure is the one qemu-img reports.
 */
#include "qed.h"

#include <string.h>

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t qed_le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void qed_put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

int qed_probe(const uint8_t *buf, size_t len)
{
    return len >= QED_HEADER_SIZE && le32(buf) == QED_MAGIC ? 100 : 0;
}

bool qed_cluster_size_valid(uint32_t cluster_size)
{
    return cluster_size >= QED_MIN_CLUSTER_SIZE && cluster_size <= QED_MAX_CLUSTER_SIZE &&
           !(cluster_size & (cluster_size - 1));
}

bool qed_table_size_valid(uint32_t table_size)
{
    return table_size >= QED_MIN_TABLE_SIZE && table_size <= QED_MAX_TABLE_SIZE &&
           !(table_size & (table_size - 1));
}

/* QEMU computes table_size * cluster_size in 32 bits (at most 1 GiB) and the rest modulo 2^64. */
uint64_t qed_max_image_size(uint32_t cluster_size, uint32_t table_size)
{
    uint64_t entries = (uint32_t)(table_size * cluster_size) / 8u;

    return entries * cluster_size * entries;
}

bool qed_image_size_valid(uint64_t size, uint32_t cluster_size, uint32_t table_size)
{
    return size % 512 == 0 && size <= qed_max_image_size(cluster_size, table_size);
}

uint64_t qed_table_bytes(const struct qed_image *img)
{
    return (uint64_t)img->cluster_size * img->table_size;
}

bool qed_check_cluster_offset(const struct qed_image *img, uint64_t offset)
{
    uint64_t header_size = (uint64_t)img->header_size * img->cluster_size;

    if (offset & (img->cluster_size - 1))
        return false;
    return offset >= header_size && offset < img->file_size;
}

bool qed_check_table_offset(const struct qed_image *img, uint64_t offset)
{
    /* QEMU's end offset wraps; a table of one cluster "overflows" too. */
    uint64_t end = offset + (uint64_t)(img->table_size - 1) * img->cluster_size;

    if (end <= offset)
        return false;
    return qed_check_cluster_offset(img, offset) && qed_check_cluster_offset(img, end);
}

static uint32_t ctz32(uint32_t v)
{
    return (uint32_t)__builtin_ctz(v);
}

int qed_open_header(const uint8_t hdr[QED_HEADER_SIZE], uint64_t file_length, struct qed_image *img)
{
    memset(img, 0, sizeof(*img));
    img->cluster_size = le32(hdr + 4);
    img->table_size = le32(hdr + 8);
    img->header_size = le32(hdr + 12);
    img->features = qed_le64(hdr + 16);
    img->compat_features = qed_le64(hdr + 24);
    img->autoclear_features = qed_le64(hdr + 32);
    img->l1_table_offset = qed_le64(hdr + 40);
    img->image_size = qed_le64(hdr + 48);
    img->backing_filename_offset = le32(hdr + 56);
    img->backing_filename_size = le32(hdr + 60);

    if (le32(hdr) != QED_MAGIC)
        return -QED_ERR_MAGIC;
    if (img->features & ~QED_FEATURE_MASK) {
        img->err_arg = img->features & ~QED_FEATURE_MASK;
        return -QED_ERR_FEATURES;
    }
    if (!qed_cluster_size_valid(img->cluster_size))
        return -QED_ERR_CLUSTER_SIZE;
    /* bdrv_getlength(): the file length in whole sectors, rounded down to a cluster. */
    if (file_length > UINT64_MAX - 511)
        file_length = UINT64_MAX - 511;
    file_length = (file_length + 511) & ~511ull;
    img->file_size = file_length & ~((uint64_t)img->cluster_size - 1);
    if (!qed_table_size_valid(img->table_size))
        return -QED_ERR_TABLE_SIZE;
    if (!qed_image_size_valid(img->image_size, img->cluster_size, img->table_size))
        return -QED_ERR_IMAGE_SIZE;
    if (!qed_check_table_offset(img, img->l1_table_offset))
        return -QED_ERR_TABLE_OFFSET;
    img->table_nelems = (uint32_t)(qed_table_bytes(img) / 8);
    img->l1_shift = ctz32(img->cluster_size) + ctz32(img->table_nelems);
    if (img->header_size > UINT32_MAX / img->cluster_size)
        return -QED_ERR_HEADER_SIZE;
    if (img->features & QED_F_BACKING_FILE) {
        if ((uint64_t)img->backing_filename_offset + img->backing_filename_size >
            (uint64_t)img->cluster_size * img->header_size)
            return -QED_ERR_BACKING_OFFSET;
        if (img->backing_filename_size >= QED_BACKING_NAME_BUF)
            return -QED_ERR_BACKING_READ;
    }
    return 0;
}

uint32_t qed_l1_index(const struct qed_image *img, uint64_t pos)
{
    return (uint32_t)(pos >> img->l1_shift);
}

uint32_t qed_l2_index(const struct qed_image *img, uint64_t pos)
{
    return (uint32_t)((pos >> ctz32(img->cluster_size)) & (img->table_nelems - 1));
}

uint64_t qed_l2_boundary(const struct qed_image *img, uint64_t pos, uint64_t len)
{
    uint64_t end = ((pos >> img->l1_shift) + 1) << img->l1_shift;

    return end - pos < len ? end - pos : len;
}

uint64_t qed_bytes_to_clusters(const struct qed_image *img, uint64_t bytes)
{
    uint64_t cs = img->cluster_size;

    return ((bytes + (cs - 1)) & ~(cs - 1)) / (cs - 1);
}

static bool is_unalloc(uint64_t e)
{
    return e == 0;
}

static bool is_zero(uint64_t e)
{
    return e == 1;
}

/* qed_count_contiguous_clusters() */
static uint64_t count_contiguous(const struct qed_image *img, const uint64_t *t, uint32_t index,
                                 uint64_t n)
{
    uint64_t end = index + n < img->table_nelems ? index + n : img->table_nelems;
    uint64_t last = t[index], i;

    for (i = index + 1; i < end; i++) {
        if (is_unalloc(last)) {
            if (!is_unalloc(t[i]))
                break;
        } else if (is_zero(last)) {
            if (!is_zero(t[i]))
                break;
        } else {
            if (t[i] != last + img->cluster_size)
                break;
            last = t[i];
        }
    }
    return i - index;
}

int qed_find_l2(const struct qed_image *img, const uint64_t *l2, uint64_t pos, uint64_t *len,
                uint64_t *offset)
{
    uint32_t index = qed_l2_index(img, pos);
    uint64_t into = pos & (img->cluster_size - 1);
    uint64_t n = qed_bytes_to_clusters(img, into + *len);
    uint32_t span;
    int ret;

    n = count_contiguous(img, l2, index, n);
    *offset = l2[index];
    if (is_unalloc(*offset))
        ret = QED_CLUSTER_L2;
    else if (is_zero(*offset))
        ret = QED_CLUSTER_ZERO;
    else if (qed_check_cluster_offset(img, *offset))
        ret = QED_CLUSTER_FOUND;
    else
        return -1;
    /* QEMU multiplies the count by the cluster size in 32 bits. */
    span = (uint32_t)(n * img->cluster_size);
    if ((uint64_t)span <= into)
        return -1;
    if (span - into < *len)
        *len = span - into;
    return ret;
}

/* --- qed_check() --- */

uint64_t qed_check_nclusters(const struct qed_image *img)
{
    return qed_bytes_to_clusters(img, img->file_size);
}

struct check {
    const struct qed_image *img;
    struct qed_check_result *r;
    uint32_t *used;
    uint64_t nclusters;
    bool fix;
};

/* qed_set_used_clusters(): false when a cluster was already in use. */
static bool set_used(struct check *c, uint64_t offset, uint32_t n)
{
    uint64_t cluster = qed_bytes_to_clusters(c->img, offset);
    uint64_t corruptions = 0;

    while (n-- != 0) {
        /* Callers pass clusters inside the file: the bitmap covers them. */
        if (cluster < c->nclusters) {
            uint32_t bit = 1u << (cluster % 32);

            if (c->used[cluster / 32] & bit)
                corruptions++;
            c->used[cluster / 32] |= bit;
        }
        cluster++;
    }
    c->r->corruptions += corruptions;
    return corruptions == 0;
}

static uint32_t check_l2(struct check *c, uint64_t *t)
{
    const struct qed_image *img = c->img;
    uint64_t last = 0;
    uint32_t i, invalid = 0;

    for (i = 0; i < img->table_nelems; i++) {
        uint64_t off = t[i];

        if (is_unalloc(off) || is_zero(off))
            continue;
        c->r->allocated_clusters++;
        if (last && last + img->cluster_size != off)
            c->r->fragmented_clusters++;
        last = off;
        if (!qed_check_cluster_offset(img, off)) {
            if (c->fix) {
                t[i] = 0;
                c->r->corruptions_fixed++;
            } else {
                c->r->corruptions++;
            }
            invalid++;
            continue;
        }
        set_used(c, off, 1);
    }
    return invalid;
}

int qed_check(const struct qed_image *img, uint64_t *l1, uint64_t *l2buf, uint32_t *used, bool fix,
              const struct qed_check_io *io, struct qed_check_result *r)
{
    struct check c = {img, r, used, qed_check_nclusters(img), fix};
    uint32_t i, invalid_l1 = 0;
    int ret, last_error = 0;

    r->total_clusters =
        img->image_size / img->cluster_size + (img->image_size % img->cluster_size ? 1 : 0);
    set_used(&c, img->l1_table_offset, img->table_size);
    for (i = 0; i < img->table_nelems; i++) {
        uint64_t off = l1[i];

        if (is_unalloc(off))
            continue;
        if (!qed_check_table_offset(img, off)) {
            if (fix) {
                l1[i] = 0;
                r->corruptions_fixed++;
            } else {
                r->corruptions++;
            }
            invalid_l1++;
            continue;
        }
        if (!set_used(&c, off, img->table_size))
            continue; /* skip an invalid table */
        ret = io->read_table(io->opaque, off, l2buf);
        if (ret < 0) {
            r->check_errors++;
            last_error = ret;
            continue;
        }
        if (check_l2(&c, l2buf) > 0 && fix) {
            ret = io->write_table(io->opaque, off, l2buf, 0, img->table_nelems);
            if (ret < 0) {
                r->check_errors++;
                last_error = ret;
                continue;
            }
        }
    }
    if (invalid_l1 > 0 && fix) {
        ret = io->write_table(io->opaque, img->l1_table_offset, l1, 0, img->table_nelems);
        if (ret < 0) {
            r->check_errors++;
            last_error = ret;
        }
    }
    if (last_error)
        return last_error;
    for (uint64_t k = img->header_size; k < c.nclusters; k++)
        if (!(used[k / 32] & (1u << (k % 32))))
            r->leaks++;
    return 0;
}

void qed_header_write(const struct qed_image *img, uint8_t out[QED_HEADER_SIZE])
{
    put_le32(out, QED_MAGIC);
    put_le32(out + 4, img->cluster_size);
    put_le32(out + 8, img->table_size);
    put_le32(out + 12, img->header_size);
    qed_put_le64(out + 16, img->features);
    qed_put_le64(out + 24, img->compat_features);
    qed_put_le64(out + 32, img->autoclear_features);
    qed_put_le64(out + 40, img->l1_table_offset);
    qed_put_le64(out + 48, img->image_size);
    put_le32(out + 56, img->backing_filename_offset);
    put_le32(out + 60, img->backing_filename_size);
}
