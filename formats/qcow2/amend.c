/*
 * qcow2_amend_options()'s lazy refcounts change and version upgrade (see
 * amend.h).
 */
#include "qcow2/amend.h"
#include "qcow2/create.h"

int qcow2_amend_lazy(uint32_t version, uint64_t compat_features, bool on,
                     qcow2_amend_pwrite_fn pwrite, void *opaque, int *errnum)
{
    uint64_t v =
        on ? compat_features | QCOW2_AMEND_COMPAT_LAZY : compat_features & ~QCOW2_AMEND_COMPAT_LAZY;
    uint8_t be[8];
    int r, i;

    *errnum = 0;
    if (((compat_features & QCOW2_AMEND_COMPAT_LAZY) != 0) == on)
        return 0;
    /* A version 2 header has no such field: only "on" can get here. */
    if (version < 3)
        return -QCOW2_AMEND_ERR_LAZY_V2;
    for (i = 0; i < 8; i++)
        be[i] = (uint8_t)(v >> (56 - 8 * i));
    r = pwrite(opaque, QCOW2_AMEND_COMPAT_OFFSET, be, sizeof(be));
    if (r < 0) {
        *errnum = -r;
        return -QCOW2_AMEND_ERR_UPDATE_HEADER;
    }
    return 0;
}

static uint32_t be32_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void st32_at(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void st64_at(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

bool qcow2_amend_known_exts(const uint8_t *first, size_t len, uint32_t header_length)
{
    size_t pos = header_length;

    while (pos + 8 <= len) {
        uint32_t type = be32_at(first + pos), elen = be32_at(first + pos + 4);

        switch (type) {
        case 0:
            return true;
        case 0xe2792acaU: /* backing format */
        case 0x6803f857U: /* feature name table */
        case 0x23852875U: /* bitmaps */
        case 0x0537be77U: /* full disk encryption header pointer */
        case 0x44415441U: /* external data file */
            break;
        default:
            return false;
        }
        if (elen > len - pos - 8)
            return false;
        pos += 8 + (((size_t)elen + 7) & ~(size_t)7);
    }
    return false;
}

int qcow2_amend_upgrade(const struct qcow2_amend_upgrade *u, uint8_t *buf,
                        qcow2_amend_pwrite_fn pwrite, void *opaque, int *errnum)
{
    struct qcow2_create_opts o;
    int r;

    *errnum = 0;
    o.size = u->size;
    o.cluster_bits = u->cluster_bits;
    o.version = 3;
    o.refcount_order = u->refcount_order;
    o.compression_type = 0;
    o.prealloc = 0;
    o.lazy_refcounts = false;
    o.extended_l2 = false;
    o.data_file_raw = false;
    o.data_file = NULL;
    o.backing_file = u->backing_file;
    o.backing_fmt = u->backing_fmt;
    r = qcow2_create_header(&o, buf, u->size, u->l1_size, u->l1_table_offset,
                            u->refcount_table_offset, u->refcount_table_clusters, true);
    if (r < 0)
        return -QCOW2_AMEND_ERR_NOTSUP_UPGRADE;
    st32_at(buf + 60, u->nb_snapshots);
    st64_at(buf + 64, u->snapshots_offset);
    r = pwrite(opaque, 0, buf, (size_t)1 << u->cluster_bits);
    if (r < 0) {
        *errnum = -r;
        return -QCOW2_AMEND_ERR_UPDATE_HEADER;
    }
    return 0;
}
