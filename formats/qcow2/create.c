/*
 * A new qcow2 image, laid out as QEMU 7.2's qcow2_co_create() lays it out
 * (see create.h).  Layout facts come from qcow2.txt ("Header", "Header
 * extensions", "Host cluster management", "Cluster mapping"); the order of
 * the steps, which decides where each cluster lands, from QEMU's
 * block/qcow2.c and block/qcow2-cluster.c.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "create.h"

#define HDR_LEN_V2       72
#define HDR_LEN_V3       112 /* sizeof(QCowHeader) in QEMU 7.2 */
#define MAX_L1_BYTES     (32ull << 20)
#define INT_MAX_U        0x7fffffffull
#define EXT_BACKING_FMT  0xe2792acau
#define EXT_FEATURES     0x6803f857u
#define EXT_DATA_FILE    0x44415441u
#define EXT_CRYPTO       0x0537be77u
#define FEATURE_NAME_LEN 46

static void st32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void st64(uint8_t *p, uint64_t v)
{
    st32(p, (uint32_t)(v >> 32));
    st32(p + 4, (uint32_t)v);
}

/* --- The header (qcow2_update_header) --- */

/* header_ext_add(): magic, length, data padded to 8; -ENOSPC when it does not fit. */
static int ext_add(uint8_t *buf, size_t buflen, uint32_t magic, const void *data, size_t len)
{
    size_t ext_len = 8 + ((len + 7) & ~(size_t)7);

    if (buflen < ext_len) {
        return -QCOW2_CREATE_ENOSPC;
    }
    st32(buf, magic);
    st32(buf + 4, (uint32_t)len);
    if (len) {
        memcpy(buf + 8, data, len);
    }
    return (int)ext_len;
}

static const struct {
    uint8_t type, bit;
    const char *name;
} features[] = {
    {0, 0, "dirty bit"},        {0, 1, "corrupt bit"},         {0, 2, "external data file"},
    {0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
    {2, 0, "bitmaps"},          {2, 1, "raw external data"},
};

static void header_fields(const struct qcow2_create_opts *o, uint8_t *h)
{
    uint64_t incompat = 0, compat = 0, autoclear = 0;

    if (o->data_file) {
        incompat |= 1ull << 2;
    }
    if (o->compression_type != 0) {
        incompat |= 1ull << 3;
    }
    if (o->extended_l2) {
        incompat |= 1ull << 4;
    }
    if (o->lazy_refcounts) {
        compat |= 1ull << 0;
    }
    if (o->data_file_raw) {
        autoclear |= 1ull << 1;
    }
    st32(h + 0, 0x514649fbu);
    st32(h + 4, o->version);
    st32(h + 32, o->crypt_method); /* 1 QCOW_CRYPT_AES, 2 QCOW_CRYPT_LUKS */
    st32(h + 20, o->cluster_bits);
    st64(h + 72, incompat);
    st64(h + 80, compat);
    st64(h + 88, autoclear);
    st32(h + 96, o->refcount_order);
    st32(h + 100, HDR_LEN_V3);
    h[104] = (uint8_t)o->compression_type;
}

int qcow2_create_header(const struct qcow2_create_opts *o, uint8_t *buf, uint64_t size,
                        uint32_t l1_size, uint64_t l1_offset, uint64_t reftable_offset,
                        uint32_t reftable_clusters, bool with_backing)
{
    size_t cs = (size_t)1 << o->cluster_bits;
    size_t pos, hlen = o->version == 2 ? HDR_LEN_V2 : HDR_LEN_V3;
    int ret;

    memset(buf, 0, cs);
    header_fields(o, buf);
    st64(buf + 24, size);
    st32(buf + 36, l1_size);
    st64(buf + 40, l1_offset);
    st64(buf + 48, reftable_offset);
    st32(buf + 56, reftable_clusters);
    if (o->version == 2) {
        memset(buf + HDR_LEN_V2, 0, HDR_LEN_V3 - HDR_LEN_V2);
    }
    pos = hlen;

    /* (create refuses a format without a file; amend's upgrade keeps one) */
    if (with_backing && o->backing_fmt) {
        ret = ext_add(buf + pos, cs - pos, EXT_BACKING_FMT, o->backing_fmt, strlen(o->backing_fmt));
        if (ret < 0) {
            return ret;
        }
        pos += (size_t)ret;
    }
    if (o->data_file) {
        ret = ext_add(buf + pos, cs - pos, EXT_DATA_FILE, o->data_file, strlen(o->data_file));
        if (ret < 0) {
            return ret;
        }
        pos += (size_t)ret;
    }
    if (o->crypto_length) {
        /* Full disk encryption header pointer: offset and length, big-endian. */
        uint8_t ext[16];
        st64(ext, o->crypto_offset);
        st64(ext + 8, o->crypto_length);
        ret = ext_add(buf + pos, cs - pos, EXT_CRYPTO, ext, sizeof(ext));
        if (ret < 0) {
            return ret;
        }
        pos += (size_t)ret;
    }
    if (o->version >= 3 && cs > 4096) {
        uint8_t table[sizeof(features) / sizeof(features[0]) * 48];
        memset(table, 0, sizeof(table));
        for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
            table[i * 48] = features[i].type;
            table[i * 48 + 1] = features[i].bit;
            memcpy(table + i * 48 + 2, features[i].name, strlen(features[i].name));
        }
        ret = ext_add(buf + pos, cs - pos, EXT_FEATURES, table, sizeof(table));
        if (ret < 0) {
            return ret;
        }
        pos += (size_t)ret;
    }
    ret = ext_add(buf + pos, cs - pos, 0, NULL, 0);
    if (ret < 0) {
        return ret;
    }
    pos += (size_t)ret;

    if (with_backing && o->backing_file) {
        size_t blen = strlen(o->backing_file);
        if (cs - pos < blen) {
            return -QCOW2_CREATE_ENOSPC;
        }
        memcpy(buf + pos, o->backing_file, blen);
        st64(buf + 8, pos);
        st32(buf + 16, (uint32_t)blen);
    }
    return 0;
}

/* --- The image being created --- */

struct cctx {
    const struct qcow2_create_opts *o;
    struct qcow2_create_opts eo; /* o with the crypto header's place */
    int *stage;
    const struct qcow2_create_io *io;
    void *op;
    struct qcow2_alloc a;
    uint32_t cb;
    uint64_t cs;
    struct qcow2_prealloc p; /* the L1 table, the L2 cache, the mapping (prealloc.h) */
};

static int wr(struct cctx *c, uint64_t off, const void *buf, size_t len)
{
    return c->io->alloc.write(c->op, off, buf, len);
}

/* qcow2_grow_l1_table(exact): a new, zeroed L1 of min_size entries. */
static int grow_l1(struct cctx *c, uint64_t min_size)
{
    int64_t off;
    uint64_t bytes;
    uint8_t hdr[12];
    int ret;

    if (min_size <= c->p.l1_size) {
        return 0;
    }
    if (min_size > INT_MAX_U / 8 || min_size > MAX_L1_BYTES / 8) {
        return -QCOW2_ALLOC_EFBIG;
    }
    bytes = min_size * 8;
    c->p.l1 = c->io->alloc.mem(c->op, NULL, bytes);
    if (!c->p.l1) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    memset(c->p.l1, 0, bytes);
    off = qcow2_alloc_clusters(&c->a, bytes);
    if (off < 0) {
        return (int)off;
    }
    c->p.l1_size = (uint32_t)min_size;
    c->p.l1_offset = (uint64_t)off;
    ret = qcow2_prealloc_write_l1(&c->p);
    if (ret < 0) {
        return ret;
    }
    st32(hdr, (uint32_t)c->p.l1_size);
    st64(hdr + 4, c->p.l1_offset);
    return wr(c, 36, hdr, sizeof(hdr));
}

/* The create stage of a failed qcow2_prealloc_file() step. */
static int file_stage(int step)
{
    switch (step) {
    case QCOW2_PREALLOC_STEP_REFCOUNT_AREA:
        return QCOW2_CREATE_STAGE_REFCOUNT_AREA;
    case QCOW2_PREALLOC_STEP_DATA_ALLOC:
        return QCOW2_CREATE_STAGE_DATA_ALLOC;
    case QCOW2_PREALLOC_STEP_TRUNCATE:
        return QCOW2_CREATE_STAGE_TRUNCATE;
    default:
        return QCOW2_CREATE_STAGE_L2;
    }
}

/* qcow2_co_truncate() from size 0 to o->size. */
static int truncate_to(struct cctx *c, int *stage)
{
    const struct qcow2_create_opts *o = c->o;
    uint64_t shift = c->cb + c->p.l2_bits;
    uint64_t new_l1 = (o->size + (1ull << shift) - 1) >> shift;
    int prealloc = (int)o->prealloc;
    uint8_t be[8];
    int ret;

    *stage = QCOW2_CREATE_STAGE_GROW_L1;
    ret = grow_l1(c, new_l1);
    if (ret < 0) {
        return ret;
    }
    if (o->data_file_raw && prealloc == QCOW2_PREALLOC_OFF) {
        prealloc = QCOW2_PREALLOC_METADATA;
    }
    switch (prealloc) {
    case QCOW2_PREALLOC_OFF:
        if (o->data_file) {
            *stage = QCOW2_CREATE_STAGE_TRUNCATE;
            ret = c->io->truncate(c->op, QCOW2_CREATE_DEV_DATA, o->size, QCOW2_PREALLOC_OFF);
        }
        break;
    case QCOW2_PREALLOC_METADATA:
        *stage = QCOW2_CREATE_STAGE_PREALLOC;
        ret = qcow2_prealloc_map(&c->p, 0, o->size, prealloc);
        break;
    case QCOW2_PREALLOC_FALLOC:
    case QCOW2_PREALLOC_FULL:
        if (o->data_file) {
            *stage = QCOW2_CREATE_STAGE_PREALLOC;
            ret = qcow2_prealloc_map(&c->p, 0, o->size, prealloc);
        } else {
            int step = 0;

            ret = qcow2_prealloc_file(&c->p, 0, o->size, prealloc, false, &step);
            if (ret < 0) {
                *stage = file_stage(step);
            }
        }
        break;
    default:
        ret = -QCOW2_ALLOC_EINVAL;
    }
    if (ret < 0) {
        return ret;
    }

    /* qcow2_write_caches(), then the new size in the header. */
    *stage = QCOW2_CREATE_STAGE_SIZE;
    ret = qcow2_prealloc_flush(&c->p);
    if (ret == 0) {
        ret = qcow2_alloc_flush(&c->a);
    }
    if (ret < 0) {
        return ret;
    }
    st64(be, o->size);
    return wr(c, 24, be, 8);
}

static int opts_ok(const struct qcow2_create_opts *o)
{
    if (o->cluster_bits < 9 || o->cluster_bits > 21 || o->refcount_order > 6 ||
        (o->version != 2 && o->version != 3) || o->compression_type > 1 || o->prealloc > 3 ||
        (o->size & 511) || o->size > (1ull << 62)) {
        return 0;
    }
    if (o->extended_l2 && o->cluster_bits < 14) {
        return 0;
    }
    return 1;
}

/* qcow2_crypto_hdr_init_func(): clusters for the header, zero-filled whole. */
static int crypto_init(void *ctx, uint64_t hdrlen)
{
    struct cctx *c = ctx;
    uint64_t clen;
    int64_t off;
    uint8_t *zero;
    int ret = 0;

    *c->stage = QCOW2_CREATE_STAGE_CRYPTO_ALLOC;
    if (hdrlen == 0 || hdrlen > (64ull << 20) || c->eo.crypto_length) {
        return -QCOW2_ALLOC_EINVAL;
    }
    off = qcow2_alloc_clusters(&c->a, hdrlen);
    if (off < 0) {
        return (int)off;
    }
    c->eo.crypto_offset = (uint64_t)off;
    c->eo.crypto_length = hdrlen;
    *c->stage = QCOW2_CREATE_STAGE_CRYPTO_ZERO;
    clen = (hdrlen + c->cs - 1) / c->cs * c->cs;
    zero = c->io->alloc.mem(c->op, NULL, (size_t)c->cs);
    if (!zero) {
        return -QCOW2_ALLOC_ENOMEM;
    }
    memset(zero, 0, (size_t)c->cs);
    for (uint64_t done = 0; ret == 0 && done < clen; done += c->cs) {
        ret = wr(c, (uint64_t)off + done, zero, (size_t)c->cs);
    }
    c->io->alloc.mem(c->op, zero, 0);
    *c->stage = QCOW2_CREATE_STAGE_CRYPTO_WRITE;
    return ret;
}

/* qcow2_crypto_hdr_write_func(): within the header's clusters only. */
static int crypto_write(void *ctx, uint64_t off, const void *buf, size_t len)
{
    struct cctx *c = ctx;

    if (off > c->eo.crypto_length || len > c->eo.crypto_length - off) {
        return -QCOW2_ALLOC_EINVAL;
    }
    return wr(c, c->eo.crypto_offset + off, buf, len);
}

int qcow2_create(const struct qcow2_create_opts *o, const struct qcow2_create_io *io, void *opaque,
                 int *stage)
{
    struct cctx c;
    uint8_t *buf = NULL;
    int64_t first;
    int ret;

    *stage = QCOW2_CREATE_STAGE_NONE;
    if (!opts_ok(o)) {
        return -QCOW2_ALLOC_EINVAL;
    }
    memset(&c, 0, sizeof(c));
    c.o = o;
    c.io = io;
    c.op = opaque;
    c.cb = o->cluster_bits;
    c.cs = 1ull << c.cb;
    c.eo = *o;
    c.eo.crypto_offset = c.eo.crypto_length = 0;
    c.eo.crypt_method = 0;
    c.stage = stage;

    buf = io->alloc.mem(opaque, NULL, 2 * c.cs);
    if (!buf) {
        return -QCOW2_ALLOC_ENOMEM;
    }

    /* The minimal header: no L1 table, the refcount table in cluster 1. */
    *stage = QCOW2_CREATE_STAGE_HEADER;
    memset(buf, 0, c.cs);
    header_fields(o, buf);
    st64(buf + 48, c.cs);
    st32(buf + 56, 1);
    ret = wr(&c, 0, buf, c.cs);
    if (ret < 0) {
        goto out;
    }

    /* The refcount table pointing at one empty refcount block in cluster 2. */
    *stage = QCOW2_CREATE_STAGE_REFTABLE;
    memset(buf, 0, 2 * c.cs);
    st64(buf, 2 * c.cs);
    ret = wr(&c, c.cs, buf, 2 * c.cs);
    if (ret < 0) {
        goto out;
    }

    *stage = QCOW2_CREATE_STAGE_FIRST_ALLOC;
    ret = qcow2_alloc_init(&c.a, &io->alloc, opaque, c.cb, o->refcount_order, c.cs, 1);
    if (ret < 0) {
        goto out;
    }
    first = qcow2_alloc_clusters(&c.a, 3 * c.cs);
    if (first < 0) {
        ret = (int)first;
        goto out;
    }
    if (first != 0) {
        ret = -QCOW2_ALLOC_EIO;
        goto out;
    }

    *stage = QCOW2_CREATE_STAGE_UPDATE_HDR;
    ret = qcow2_create_header(o, buf, 0, 0, 0, c.a.reftable_offset,
                              (uint32_t)(c.a.reftable_size >> (c.cb - 3)), false);
    if (ret == 0) {
        ret = wr(&c, 0, buf, c.cs);
    }
    if (ret < 0) {
        goto out;
    }

    c.p.a = &c.a;
    c.p.ops = &io->alloc;
    c.p.truncate = io->truncate;
    c.p.length = io->length;
    c.p.opaque = opaque;
    c.p.cluster_bits = c.cb;
    c.p.extended_l2 = o->extended_l2;
    c.p.data_file = o->data_file != NULL;
    ret = qcow2_prealloc_init(&c.p);
    if (ret < 0) {
        goto out;
    }
    ret = truncate_to(&c, stage);
    if (ret < 0) {
        goto out;
    }

    if (o->backing_file) {
        *stage = QCOW2_CREATE_STAGE_BACKING;
        if (o->data_file_raw || strlen(o->backing_file) > 1023) {
            ret = -QCOW2_ALLOC_EINVAL;
            goto out;
        }
        ret = qcow2_create_header(o, buf, o->size, (uint32_t)c.p.l1_size, c.p.l1_offset,
                                  c.a.reftable_offset, (uint32_t)(c.a.reftable_size >> (c.cb - 3)),
                                  true);
        if (ret == 0) {
            ret = wr(&c, 0, buf, c.cs);
        }
        if (ret < 0) {
            goto out;
        }
    }
    if (o->encrypt_luks || o->encrypt_aes) {
        /*
         * qcow2_set_up_encryption(): the LUKS header, then the qcow2 header
         * naming it; AES has no header of its own.
         */
        if (o->encrypt_luks && !io->luks) {
            ret = -QCOW2_ALLOC_EINVAL;
            goto out;
        }
        if (o->encrypt_luks) {
            *stage = QCOW2_CREATE_STAGE_CRYPTO_ALLOC;
            ret = io->luks(opaque, crypto_init, crypto_write, &c);
            if (ret < 0) {
                goto out;
            }
        }
        c.eo.crypt_method = o->encrypt_luks ? 2 : 1;
        *stage = QCOW2_CREATE_STAGE_CRYPTO_HDR;
        ret = qcow2_alloc_flush(&c.a);
        if (ret == 0) {
            ret = qcow2_create_header(&c.eo, buf, o->size, (uint32_t)c.p.l1_size, c.p.l1_offset,
                                      c.a.reftable_offset,
                                      (uint32_t)(c.a.reftable_size >> (c.cb - 3)), true);
        }
        if (ret == 0) {
            ret = wr(&c, 0, buf, c.cs);
        }
        if (ret < 0) {
            goto out;
        }
    }
    ret = qcow2_alloc_flush(&c.a);
    if (ret == 0) {
        *stage = QCOW2_CREATE_STAGE_NONE;
    }

out:
    qcow2_alloc_release(&c.a);
    qcow2_prealloc_release(&c.p);
    if (c.p.l1) {
        io->alloc.mem(opaque, c.p.l1, 0);
    }
    io->alloc.mem(opaque, buf, 0);
    return ret;
}

uint64_t qcow2_create_max_file_size(const struct qcow2_create_opts *o)
{
    uint64_t cs = 1ull << o->cluster_bits;
    uint64_t l2e = o->extended_l2 ? 16 : 8;
    uint64_t data, nl2, l1, meta, total;

    if (o->cluster_bits < 9 || o->cluster_bits > 21 || o->refcount_order > 6 ||
        o->size > (1ull << 62)) {
        return 0;
    }
    data = (o->size + cs - 1) / cs;
    nl2 = (data * l2e + cs - 1) / cs + 2;
    l1 = (nl2 * 8 + cs - 1) / cs + 1;
    meta = data + nl2 + l1 + 8;
    meta += qcow2_refcount_metadata_size(meta, cs, o->refcount_order, true, NULL) / cs * 2;
    total = meta * cs;
    return total / cs == meta ? total : UINT64_MAX;
}
