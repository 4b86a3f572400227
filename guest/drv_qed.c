/*
 * The qed driver of the guest block layer: open as bdrv_qed_do_open()
 * does (formats/qed/qed.h), block status as bdrv_qed_co_block_status()
 * answers it (a run of data clusters is DATA at its file offset, zero
 * clusters ZERO, unallocated ones unallocated: the backing file shows
 * through), reads as qed_aio_read_data() does them, and writes as
 * qed_aio_write_data() does them: in place into an allocated cluster, or
 * new clusters at the end of the file (data, the copy-on-write regions
 * from the backing file or zeros, a new L2 table after them, then the
 * L2 entries and the L1 entry), with the need-check flag set in the
 * header before the first allocating write of an image without backing
 * file and cleared when it is closed.
 */
#include "bdrv.h"
#include "qed/qed.h"

struct gqed {
    struct qed_image img;
    uint64_t *l1;    /* table_nelems entries, host order */
    uint64_t *l2;    /* the cached L2 table (host order), or NULL */
    uint64_t l2_off; /* its file offset (0: none cached) */
    char backing[QED_BACKING_NAME_BUF];
    uint8_t *buf; /* a cluster of scratch for writes */
};

static struct gqed qeds[INSTAR_NODE_MAX];

/* qed_read_table(): a table of the image, entries in host order. */
static int read_table(uint32_t dev, const struct qed_image *img, uint64_t off, uint64_t *t)
{
    uint64_t n = qed_table_bytes(img), i;
    uint8_t *p = (uint8_t *)t;

    if (gblk_pread_direct(dev, off, t, (size_t)n) < 0)
        return -GBS_EIO;
    for (i = 0; i < n / 8; i++)
        t[i] = qed_le64(p + i * 8);
    return 0;
}

/*
 * Open device dev as qed into s: the header's checks, the backing file
 * name and the L1 table.  Returns 0 or a negative error code (QED_ERR_*,
 * INSTAR_ERR_NOMEM), with its argument in s->img.err_arg.
 */
static int gqed_open(struct gqed *s, uint32_t dev)
{
    uint8_t hdr[QED_HEADER_SIZE];
    int ret;

    free(s->l1);
    free(s->l2);
    free(s->buf);
    memset(s, 0, sizeof(*s));
    if (gblk_pread(dev, 0, hdr, sizeof(hdr)) < 0)
        return -QED_ERR_READ_HEADER;
    ret = qed_open_header(hdr, gblk_size(dev), &s->img);
    if (ret < 0)
        return ret;
    if (s->img.features & QED_F_BACKING_FILE) {
        uint32_t n = s->img.backing_filename_size;

        if (gblk_pread(dev, s->img.backing_filename_offset, s->backing, n) < 0)
            return -QED_ERR_BACKING_READ;
        s->backing[n] = '\0';
    }
    /* The table lies inside the file (qed_check_table_offset): at most 1 GiB. */
    s->l1 = malloc((size_t)qed_table_bytes(&s->img));
    if (!s->l1)
        return -INSTAR_ERR_NOMEM;
    if (read_table(dev, &s->img, s->img.l1_table_offset, s->l1) < 0)
        return -QED_ERR_L1_READ;
    return 0;
}

static __attribute__((noreturn)) void gqed_fail(uint32_t op, int ret, const struct gqed *s)
{
    uint64_t args[4] = {s->img.err_arg, 0, 0, 0};

    result_error(op, -ret, args, NULL, 0);
}

void gbs_qed_describe(uint32_t op, uint32_t dev, struct gbs_qed_desc *d)
{
    static struct gqed s;
    int ret = gqed_open(&s, dev);

    if (ret < 0)
        gqed_fail(op, ret, &s);
    memset(d, 0, sizeof(*d));
    d->size = s.img.image_size;
    d->cluster_size = s.img.cluster_size;
    d->need_check = (s.img.features & QED_F_NEED_CHECK) != 0;
    /* bdrv_qed_do_open(): an empty name leaves the backing file unset. */
    if ((s.img.features & QED_F_BACKING_FILE) && s.backing[0]) {
        d->has_backing = true;
        memcpy(d->backing, s.backing, sizeof(d->backing));
        d->backing_raw = (s.img.features & QED_F_BACKING_FORMAT_NO_PROBE) != 0;
    }
}

/* --- the check --- */

struct check_io {
    uint32_t dev;
    const struct qed_image *img;
};

static int io_read_table(void *opaque, uint64_t off, uint64_t *t)
{
    const struct check_io *c = opaque;

    return read_table(c->dev, c->img, off, t);
}

/* qed_write_table(): the whole sectors holding entries [index, index + n). */
static int write_table(uint32_t dev, uint64_t off, const uint64_t *t, uint32_t index, uint32_t n)
{
    uint32_t start = index & ~63u, end = (index + n + 63) & ~63u, i;
    uint8_t *buf = malloc((size_t)(end - start) * 8);
    int ret = 0;

    if (!buf)
        return -GBS_ENOMEM;
    for (i = start; i < end; i++)
        qed_put_le64(buf + (size_t)(i - start) * 8, t[i]);
    if (gdev_pwrite(dev, off + (uint64_t)start * 8, buf, (size_t)(end - start) * 8) < 0)
        ret = -GBS_EIO;
    free(buf);
    return ret;
}

static int io_write_table(void *opaque, uint64_t off, const uint64_t *t, uint32_t index, uint32_t n)
{
    const struct check_io *c = opaque;

    return write_table(c->dev, off, t, index, n);
}

/* qed_write_header(): the first sector read, the header fields replaced, written back. */
static int write_header(uint32_t dev, const struct qed_image *img)
{
    uint8_t sec[512];

    if (gblk_pread(dev, 0, sec, sizeof(sec)) < 0)
        return -GBS_EIO;
    qed_header_write(img, sec);
    return gdev_pwrite(dev, 0, sec, sizeof(sec)) < 0 ? -GBS_EIO : 0;
}

/*
 * qed_check() on s (fix: repair in place), then with fix
 * qed_check_mark_clean().  Returns 0 or -errno.
 */
static int gqed_check(struct gqed *s, uint32_t dev, bool fix, struct qed_check_result *r)
{
    struct check_io c = {dev, &s->img};
    const struct qed_check_io io = {io_read_table, io_write_table, &c};
    uint64_t n = qed_check_nclusters(&s->img);
    uint64_t *l2 = malloc((size_t)qed_table_bytes(&s->img));
    uint32_t *used = calloc((size_t)((n + 31) / 32) + 1, 4);
    int ret;

    if (!l2 || !used) {
        free(l2);
        free(used);
        return -GBS_ENOMEM;
    }
    ret = qed_check(&s->img, s->l1, l2, used, fix, &io, r);
    free(l2);
    free(used);
    /* Tables may have changed: forget the cached one. */
    s->l2_off = 0;
    if (ret == 0 && fix && r->corruptions == 0 && r->check_errors == 0 &&
        (s->img.features & QED_F_NEED_CHECK)) {
        if (gdev_flush(dev) < 0)
            return -GBS_EIO;
        s->img.features &= ~QED_F_NEED_CHECK;
        (void)write_header(dev, &s->img);
    }
    return ret;
}

int gbs_qed_check(uint32_t op, uint32_t dev, bool fix, struct qed_check_result *r)
{
    static struct gqed s;
    int ret = gqed_open(&s, dev);

    if (ret < 0)
        gqed_fail(op, ret, &s);
    /* A read-write open knocks out unknown autoclear bits first. */
    if (fix && s.img.autoclear_features) {
        s.img.autoclear_features = 0;
        if (write_header(dev, &s.img) < 0)
            gqed_fail(op, -QED_ERR_UPDATE_HEADER, &s);
        (void)gdev_flush(dev);
    }
    memset(r, 0, sizeof(*r));
    ret = gqed_check(&s, dev, fix, r);
    /* bdrv_qed_close() of an image opened read-write: clean shutdown. */
    if (fix && (s.img.features & QED_F_NEED_CHECK)) {
        (void)gdev_flush(dev);
        s.img.features &= ~QED_F_NEED_CHECK;
        (void)write_header(dev, &s.img);
    }
    return ret;
}

/* --- resize --- */

int gbs_qed_truncate(struct gbs *bs, uint64_t size, uint32_t prealloc)
{
    struct gqed *s = bs->opaque;
    uint64_t old;

    if (prealloc != 0)
        return -GBS_QED_TRUNC_PREALLOC;
    if (!qed_image_size_valid(size, s->img.cluster_size, s->img.table_size))
        return -GBS_QED_TRUNC_SIZE;
    if (size < s->img.image_size)
        return -GBS_QED_TRUNC_SHRINK;
    /* qed_write_header_sync(): one sector, the only write. */
    old = s->img.image_size;
    s->img.image_size = size;
    if (write_header(bs->file, &s->img) < 0) {
        s->img.image_size = old;
        return -GBS_QED_TRUNC_EIO;
    }
    bs->total = size;
    return 0;
}

int gbs_qed_change_backing(struct gbs *bs, const char *name, const char *fmt)
{
    struct gqed *s = bs->opaque;
    struct qed_image n = s->img;
    size_t len = name ? strlen(name) : 0;
    uint8_t *buf;
    int ret;

    /* The layout after the header of an unknown compat feature is unknown. */
    if (name && s->img.compat_features)
        return -GBS_ENOTSUP;
    n.features &= ~(QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE);
    if (name) {
        n.features |= QED_F_BACKING_FILE;
        if (fmt && !strcmp(fmt, "raw"))
            n.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }
    n.backing_filename_offset = QED_HEADER_SIZE;
    n.backing_filename_size = (uint32_t)len;
    if (QED_HEADER_SIZE + (uint64_t)len > (uint64_t)n.header_size * n.cluster_size)
        return -GBS_ENOSPC;
    buf = malloc(QED_HEADER_SIZE + len);
    if (!buf)
        return -GBS_ENOMEM;
    qed_header_write(&n, buf);
    if (len)
        memcpy(buf + QED_HEADER_SIZE, name, len);
    /* bdrv_pwrite_sync(): the header and the name in one write, flushed. */
    ret = gdev_pwrite(bs->file, 0, buf, QED_HEADER_SIZE + len) < 0 ? -GBS_EIO : 0;
    free(buf);
    if (ret == 0 && gdev_flush(bs->file) < 0)
        ret = -GBS_EIO;
    if (ret == 0)
        s->img = n;
    return ret;
}

/* --- the block driver --- */

static struct gqed *Q(struct gbs *bs)
{
    return bs->opaque;
}

static int qed_drv_open(struct gbs *bs)
{
    struct gqed *s = &qeds[bs->node];
    int ret;

    bs->opaque = s;
    ret = gqed_open(s, bs->file);
    /* The host described the image first: a failure here is qemu's open message too. */
    if (ret < 0)
        gqed_fail(boot->op, ret, s);
    bs->total = s->img.image_size;
    bs->supports_backing = true;
    bs->zero_align = s->img.cluster_size;
    if (!bs->writable)
        return 0;
    s->buf = malloc(s->img.cluster_size);
    if (!s->buf)
        return -INSTAR_ERR_NOMEM;
    /* Unknown autoclear bits are knocked out by a read-write open. */
    if (s->img.autoclear_features) {
        s->img.autoclear_features = 0;
        if (write_header(bs->file, &s->img) < 0)
            gqed_fail(boot->op, -QED_ERR_UPDATE_HEADER, s);
        (void)gdev_flush(bs->file);
    }
    /* Not closed cleanly: check and repair before use. */
    if (s->img.features & QED_F_NEED_CHECK) {
        struct qed_check_result r;

        memset(&r, 0, sizeof(r));
        if (gqed_check(s, bs->file, true, &r) < 0)
            gqed_fail(boot->op, -QED_ERR_CORRUPTED, s);
    }
    return 0;
}

/* The L2 table at off, read once and kept (qed_read_l2_table()). */
static int load_l2(struct gbs *bs, uint64_t off)
{
    struct gqed *s = Q(bs);

    if (s->l2 && s->l2_off == off)
        return 0;
    if (!s->l2) {
        s->l2 = malloc((size_t)qed_table_bytes(&s->img));
        if (!s->l2)
            return -GBS_ENOMEM;
    }
    s->l2_off = 0;
    if (read_table(bs->file, &s->img, off, s->l2) < 0)
        return -GBS_EIO;
    s->l2_off = off;
    return 0;
}

/*
 * qed_find_cluster(): the run from pos of at most *len bytes; returns a
 * QED_CLUSTER_* with *len shortened and *offset the file offset of pos's
 * cluster for FOUND, or -errno.
 */
static int find_cluster(struct gbs *bs, uint64_t pos, uint64_t *len, uint64_t *offset)
{
    struct gqed *s = Q(bs);
    uint64_t l2;
    int ret;

    *len = qed_l2_boundary(&s->img, pos, *len);
    *offset = 0;
    l2 = s->l1[qed_l1_index(&s->img, pos)];
    if (l2 == 0)
        return QED_CLUSTER_L1;
    if (!qed_check_table_offset(&s->img, l2))
        return -GBS_EINVAL;
    ret = load_l2(bs, l2);
    if (ret < 0)
        return ret;
    ret = qed_find_l2(&s->img, s->l2, pos, len, offset);
    return ret < 0 ? -GBS_EINVAL : ret;
}

static int qed_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                            uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    uint64_t len = bytes, offset;
    int ret;

    (void)want_zero;
    ret = find_cluster(bs, off, &len, &offset);
    if (ret < 0)
        return ret;
    *pnum = len;
    *dev = bs->file;
    switch (ret) {
    case QED_CLUSTER_FOUND:
        *map = offset | (off & (Q(bs)->img.cluster_size - 1));
        return INSTAR_BS_DATA | INSTAR_BS_OFFSET_VALID;
    case QED_CLUSTER_ZERO:
        return INSTAR_BS_ZERO;
    default:
        return 0;
    }
}

/* qed_read_backing_file(): the backing file's bytes, or zeros without one. */
static int read_backing(struct gbs *bs, uint64_t pos, void *buf, size_t len)
{
    if (bs->backing)
        return gbs_pread(bs->backing, pos, buf, len);
    memset(buf, 0, len);
    return 0;
}

static int qed_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        uint64_t n = len, offset;
        int ret = find_cluster(bs, off, &n, &offset);

        if (ret < 0)
            return ret;
        if (ret == QED_CLUSTER_ZERO) {
            memset(p, 0, n);
        } else if (ret != QED_CLUSTER_FOUND) {
            ret = read_backing(bs, off, p, n);
            if (ret < 0)
                return ret;
        } else if (gblk_pread_direct(bs->file, offset + (off & (Q(bs)->img.cluster_size - 1)), p,
                                     n) < 0) {
            return -GBS_EIO;
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

/* --- writes --- */

/* qed_copy_from_backing_file(): [pos, pos + len) of the backing file (or zeros) at offset. */
static int copy_from_backing(struct gbs *bs, uint64_t pos, uint64_t len, uint64_t offset)
{
    uint8_t *buf;
    int ret;

    if (len == 0)
        return 0;
    buf = malloc((size_t)len);
    if (!buf)
        return -GBS_ENOMEM;
    ret = read_backing(bs, pos, buf, (size_t)len);
    if (ret == 0 && gdev_pwrite(bs->file, offset, buf, (size_t)len) < 0)
        ret = -GBS_EIO;
    free(buf);
    return ret;
}

/*
 * qed_aio_write_alloc() for [pos, pos + len) (one run of one L2 table):
 * data == NULL is a zero write (zero clusters, no data written).
 */
static int write_alloc(struct gbs *bs, int found, uint64_t pos, uint64_t len, const uint8_t *data)
{
    struct gqed *s = Q(bs);
    uint64_t cs = s->img.cluster_size, into = pos & (cs - 1);
    uint64_t n = qed_bytes_to_clusters(&s->img, into + len), cluster, l2_off, i, c;
    uint32_t index = qed_l2_index(&s->img, pos);
    int ret;

    if (!data) {
        if (found == QED_CLUSTER_ZERO)
            return 0;
        cluster = 1;
    } else {
        cluster = s->img.file_size;
        if (n > (UINT64_MAX - cluster) / cs)
            return -GBS_EIO;
        s->img.file_size += n * cs;
    }
    if (!bs->backing && !(s->img.features & QED_F_NEED_CHECK)) {
        s->img.features |= QED_F_NEED_CHECK;
        ret = write_header(bs->file, &s->img);
        if (ret < 0)
            return ret;
    }
    if (data) {
        uint64_t start = pos + len;

        ret = copy_from_backing(bs, pos - into, into, cluster);
        if (ret == 0)
            ret = copy_from_backing(bs, start, ((start + cs - 1) & ~(cs - 1)) - start,
                                    cluster + into + len);
        if (ret == 0 && gdev_pwrite(bs->file, cluster + into, data, (size_t)len) < 0)
            ret = -GBS_EIO;
        /* The data is durable before the L2 table names it. */
        if (ret == 0 && bs->backing && gdev_flush(bs->file) < 0)
            ret = -GBS_EIO;
        if (ret < 0)
            return ret;
    }
    if (found == QED_CLUSTER_L1) {
        /* qed_new_l2_table(): after the data, zeroed. */
        if (s->img.file_size > UINT64_MAX - qed_table_bytes(&s->img))
            return -GBS_EIO;
        if (!s->l2) {
            s->l2 = malloc((size_t)qed_table_bytes(&s->img));
            if (!s->l2)
                return -GBS_ENOMEM;
        }
        l2_off = s->img.file_size;
        s->img.file_size += qed_table_bytes(&s->img);
        memset(s->l2, 0, (size_t)qed_table_bytes(&s->img));
        s->l2_off = l2_off;
    } else {
        l2_off = s->l2_off;
    }
    c = cluster;
    for (i = index; i < index + n && i < s->img.table_nelems; i++) {
        s->l2[i] = c;
        if (c != 0 && c != 1)
            c += cs;
    }
    if (found == QED_CLUSTER_L1) {
        ret = write_table(bs->file, l2_off, s->l2, 0, s->img.table_nelems);
        if (ret == 0 && gdev_flush(bs->file) < 0)
            ret = -GBS_EIO;
        if (ret < 0) {
            s->l2_off = 0;
            return ret;
        }
        i = qed_l1_index(&s->img, pos);
        s->l1[i] = l2_off;
        return write_table(bs->file, s->img.l1_table_offset, s->l1, (uint32_t)i, 1);
    }
    if (index + n > s->img.table_nelems)
        n = s->img.table_nelems - index;
    return write_table(bs->file, l2_off, s->l2, index, (uint32_t)n);
}

/* qed_aio_next_io() for a write of sector-aligned [off, off + len); data NULL: zeros. */
static int write_aligned(struct gbs *bs, uint64_t off, uint64_t len, const uint8_t *data)
{
    while (len) {
        uint64_t n = len, offset;
        int ret = find_cluster(bs, off, &n, &offset);

        if (ret < 0)
            return ret;
        if (ret == QED_CLUSTER_FOUND) {
            uint64_t host = offset + (off & (Q(bs)->img.cluster_size - 1));

            if (data) {
                if (gdev_pwrite(bs->file, host, data, (size_t)n) < 0)
                    return -GBS_EIO;
            } else {
                uint8_t *z = calloc(1, (size_t)n);

                if (!z)
                    return -GBS_ENOMEM;
                ret = gdev_pwrite(bs->file, host, z, (size_t)n) < 0 ? -GBS_EIO : 0;
                free(z);
                if (ret < 0)
                    return ret;
            }
        } else {
            ret = write_alloc(bs, ret, off, n, data);
            if (ret < 0)
                return ret;
        }
        if (data)
            data += n;
        off += n;
        len -= n;
    }
    return 0;
}

/*
 * bdrv_co_pwritev() of a driver with a 512-byte request alignment: an
 * unaligned head or tail is read through the node, merged and written
 * with the request.
 */
static int qed_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    uint64_t start = off & ~511ull, end = (off + len + 511) & ~511ull;
    uint8_t *tmp;
    int ret;

    if (start == off && end == off + len)
        return write_aligned(bs, off, len, buf);
    tmp = malloc((size_t)(end - start));
    if (!tmp)
        return -GBS_ENOMEM;
    ret = qed_pread(bs, start, tmp, 512);
    if (ret == 0 && end - start > 512)
        ret = qed_pread(bs, end - 512, tmp + (end - start) - 512, 512);
    if (ret == 0) {
        memcpy(tmp + (off - start), buf, len);
        ret = write_aligned(bs, start, end - start, tmp);
    }
    free(tmp);
    return ret;
}

/* bdrv_qed_co_pwrite_zeroes(): whole clusters become zero clusters. */
static int qed_pwrite_zeroes(struct gbs *bs, uint64_t off, uint64_t bytes, uint32_t flags)
{
    uint64_t cs = Q(bs)->img.cluster_size;

    (void)flags;
    if ((off & (cs - 1)) || (bytes & (cs - 1)))
        return -GBS_ENOTSUP;
    return write_aligned(bs, off, bytes, NULL);
}

static int qed_flush(struct gbs *bs)
{
    if (!bs->writable)
        return 0;
    return gdev_flush(bs->file) < 0 ? -GBS_EIO : 0;
}

/* bdrv_qed_close(): flush, then a clean header. */
static int qed_close(struct gbs *bs)
{
    struct gqed *s = Q(bs);

    if (gdev_flush(bs->file) < 0)
        return -GBS_EIO;
    if (s->img.features & QED_F_NEED_CHECK) {
        s->img.features &= ~QED_F_NEED_CHECK;
        if (write_header(bs->file, &s->img) < 0)
            return -GBS_EIO;
    }
    return 0;
}

const struct gbs_driver gbs_drv_qed = {
    .name = "qed",
    .open = qed_drv_open,
    .block_status = qed_block_status,
    .pread = qed_pread,
    .pwrite = qed_pwrite,
    .pwrite_zeroes = qed_pwrite_zeroes,
    .flush = qed_flush,
    .close = qed_close,
};
