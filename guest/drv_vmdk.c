/*
 * The vmdk driver of the guest block layer: open as vmdk_open() does
 * (formats/vmdk/vmdk.h), block status as vmdk_co_block_status() answers
 * it (a grain at a time: allocated, zeroed, unallocated; a compressed
 * grain is data without an offset), and reads as vmdk_co_preadv() does
 * them (compressed grains inflated through the real zlib, guest/codec.c,
 * into a buffer of one grain; unallocated grains from the backing image,
 * once its CID matches the parentCID).
 *
 * Hosted sparse files (monolithicSparse, streamOptimized, and VMDK4
 * extents) open; a descriptor file naming extent files does not yet
 * (VMDK_ERR_DESCRIPTOR_UNSUPPORTED, after QEMU's checks of the
 * descriptor, so that its messages come first).
 */
#include "bdrv.h"
#include "codec.h"
#include "vmdk/vmdk.h"

#define GVMDK_L2_CACHE 16

struct gvmdk_l2 {
    uint32_t ext;
    uint32_t sector; /* 0: empty */
    uint8_t *table;
};

struct gvmdk {
    uint32_t dev;  /* the image file */
    uint32_t ndev; /* extent files: devices dev + 1 .. dev + ndev (0: none given) */
    /* ndev == 0: the extent files the descriptor names (VMDK_ERR_NEED_FILES) */
    uint32_t nnames;
    char names[VMDK_MAX_EXTENTS][512];
    uint32_t nextents;
    struct vmdk_extent ext[VMDK_MAX_EXTENTS];
    uint32_t ext_dev[VMDK_MAX_EXTENTS];
    uint32_t *l1[VMDK_MAX_EXTENTS];
    uint64_t desc_offset;
    uint32_t cid, parent_cid;
    char create_type[128];
    bool has_parent;
    char parent[VMDK_PARENT_MAX + 1];
    bool cid_checked;
    /* L2 tables, replaced round robin. */
    struct gvmdk_l2 l2[GVMDK_L2_CACHE];
    uint32_t l2_next;
    /* Compressed grains: two grains read, one inflated (the last one kept). */
    uint8_t *zbuf, *grain;
    uint64_t grain_len, grain_at;
    uint32_t grain_ext;
    /* The argument of the last error. */
    uint64_t err_arg;
    const char *err_s;
    size_t err_slen;
    uint32_t load_ext;
};

static struct gvmdk vmdks[INSTAR_NODE_MAX];

struct gvmdk_rd {
    uint32_t dev;
};

static int dev_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    return gblk_pread(((struct gvmdk_rd *)opaque)->dev, off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

static void gvmdk_release(struct gvmdk *s)
{
    uint32_t i;

    for (i = 0; i < VMDK_MAX_EXTENTS; i++)
        free(s->l1[i]);
    for (i = 0; i < GVMDK_L2_CACHE; i++)
        free(s->l2[i].table);
    free(s->zbuf);
    free(s->grain);
    memset(s, 0, sizeof(*s));
}

/* vmdk_read_desc(): up to 1 MiB - 1 bytes of dev from off, NUL-terminated, in *out. */
static int read_desc(uint32_t dev, uint64_t off, char **out)
{
    uint64_t size = gbs_dev_length(dev); /* bdrv_getlength(): whole sectors */
    size_t n;
    char *buf;

    if (size < 4)
        return -VMDK_ERR_TOO_SMALL;
    n = size > VMDK_DESC_READ_MAX ? VMDK_DESC_READ_MAX : (size_t)size;
    if (off > 0x7fffffffc0000000ull - n)
        return -VMDK_ERR_DESC_READ;
    buf = malloc(n + 1);
    if (!buf)
        return -VMDK_ERR_NOMEM;
    if (gblk_pread(dev, off, buf, n) < 0) {
        free(buf);
        return -INSTAR_ERR_IO;
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

/* vmdk_init_tables(): the grain directory, host order. */
static int init_tables(struct gvmdk *s, uint32_t i)
{
    const struct vmdk_extent *e = &s->ext[i];
    size_t len = (size_t)e->l1_size * 4;
    uint32_t *l1 = malloc(len ? len : 4);
    uint8_t *raw = (uint8_t *)l1;
    size_t k;

    if (!l1)
        return -VMDK_ERR_NOMEM;
    s->l1[i] = l1;
    if (gblk_pread(s->ext_dev[i], e->l1_table_offset, l1, len) < 0)
        return -INSTAR_ERR_IO;
    for (k = 0; k < e->l1_size; k++)
        l1[k] = (uint32_t)raw[4 * k] | (uint32_t)raw[4 * k + 1] << 8 |
                (uint32_t)raw[4 * k + 2] << 16 | (uint32_t)raw[4 * k + 3] << 24;
    return 0;
}

/* vmdk_open_sparse() of a VMDK4 file: one extent, or its embedded descriptor. */
static int open_desc_file(struct gvmdk *s, const char *buf, bool rdwr);

static int open_sparse(struct gvmdk *s, uint32_t dev, uint32_t file, bool rdwr)
{
    struct gvmdk_rd rd = {dev};
    struct vmdk_reader r = {dev_pread, &rd};
    struct vmdk_extent e;
    uint64_t desc_offset = 0;
    uint32_t i;
    int ret;

    ret = vmdk_open_vmdk4(&r, gblk_size(dev), rdwr, &e, &desc_offset, &s->err_arg);
    if (ret < 0)
        return ret;
    if (ret == 1) {
        char *buf = NULL;

        if (file != 0) {
            /* An extent that is a descriptor again: QEMU recurses, instar does not. */
            static char nested[] = "SPARSE (a descriptor)";

            s->err_s = nested;
            s->err_slen = sizeof(nested) - 1;
            return -VMDK_ERR_EXTENT_UNSUPPORTED;
        }
        ret = read_desc(dev, desc_offset, &buf);
        if (ret == 0)
            ret = open_desc_file(s, buf, rdwr);
        free(buf);
        return ret;
    }
    if (!s->create_type[0])
        memcpy(s->create_type, "monolithicSparse", 17);
    if (s->nextents == VMDK_MAX_EXTENTS) {
        s->err_arg = VMDK_MAX_EXTENTS;
        return -VMDK_ERR_TOO_MANY_EXTENTS;
    }
    i = s->nextents;
    e.file = file;
    e.end_sector = e.sectors;
    if (i > 0 && __builtin_add_overflow(s->ext[i - 1].end_sector, e.sectors, &e.end_sector))
        return -VMDK_ERR_TOO_LARGE;
    if (e.end_sector > (uint64_t)INT64_MAX / 512)
        return -VMDK_ERR_TOO_LARGE;
    s->ext[i] = e;
    s->ext_dev[i] = dev;
    s->nextents++;
    if (e.compressed)
        memcpy(s->create_type, "streamOptimized", 16);
    ret = init_tables(s, i);
    if (ret < 0) {
        free(s->l1[i]);
        s->l1[i] = NULL;
        s->nextents--;
    }
    return ret;
}

/* One extent line (vmdk_parse_extents()): file is its index, its device dev + file. */
static int open_extent(struct gvmdk *s, const struct vmdk_extent_line *l, uint32_t file, bool rdwr)
{
    uint32_t dev = s->dev + file, i = s->nextents;
    struct vmdk_extent *e;
    char *buf = NULL;
    int ret;

    if (!strcmp(l->type, "FLAT") || !strcmp(l->type, "VMFS")) {
        if (i == VMDK_MAX_EXTENTS) {
            s->err_arg = VMDK_MAX_EXTENTS;
            return -VMDK_ERR_TOO_MANY_EXTENTS;
        }
        e = &s->ext[i];
        memset(e, 0, sizeof(*e));
        e->file = file;
        e->flat = true;
        e->sectors = (uint64_t)l->sectors;
        e->cluster_sectors = e->sectors;
        /* QEMU shifts the int64 as it is: a huge offset reads nothing but errors. */
        e->flat_start_offset = (uint64_t)l->flat_offset << 9;
        e->end_sector = e->sectors;
        if ((i > 0 &&
             __builtin_add_overflow(s->ext[i - 1].end_sector, e->sectors, &e->end_sector)) ||
            e->end_sector > (uint64_t)INT64_MAX / 512)
            return -VMDK_ERR_TOO_LARGE;
        s->ext_dev[i] = dev;
        s->nextents++;
    } else if (!strcmp(l->type, "SPARSE") || !strcmp(l->type, "VMFSSPARSE")) {
        const uint8_t *m;
        uint32_t magic;

        ret = read_desc(dev, 0, &buf);
        if (ret < 0)
            return ret;
        m = (const uint8_t *)buf;
        magic = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
        free(buf);
        if (magic == VMDK4_MAGIC_BE) {
            ret = open_sparse(s, dev, file, rdwr);
        } else if (magic == VMDK3_MAGIC_BE) {
            static char cowd[] = "COWD";

            s->err_s = cowd;
            s->err_slen = 4;
            ret = -VMDK_ERR_EXTENT_UNSUPPORTED;
        } else {
            ret = -VMDK_ERR_NOT_VMDK;
        }
        if (ret < 0)
            return ret;
    } else {
        static char se[] = "SESPARSE";

        s->err_s = se;
        s->err_slen = sizeof(se) - 1;
        return -VMDK_ERR_EXTENT_UNSUPPORTED;
    }
    memcpy(s->ext[s->nextents - 1].type, l->type, sizeof(l->type));
    return 0;
}

/* vmdk_open_desc_file(): the descriptor's checks, then its extents. */
static int open_desc_file(struct gvmdk *s, const char *buf, bool rdwr)
{
    static const char *const types[] = {"monolithicFlat",       "vmfs",
                                        "vmfsSparse",           "seSparse",
                                        "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"};
    static char ct[128];
    static struct vmdk_extent_line l;
    const char *p = buf;
    uint32_t k;
    size_t i;
    int ret;
    if (vmdk_desc_value(buf, "createType", ct, sizeof(ct)) < 0)
        return -VMDK_ERR_DESC;
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(ct, types[i]))
            break;
    if (i == sizeof(types) / sizeof(types[0])) {
        s->err_s = ct;
        s->err_slen = strlen(ct);
        return -VMDK_ERR_TYPE;
    }
    memcpy(s->create_type, ct, sizeof(ct));
    s->desc_offset = 0;
    for (k = 0;; k++) {
        ret = vmdk_desc_next_extent(&p, &l, &s->err_s, &s->err_slen);
        if (ret < 0 && s->ndev == 0 && k > 0)
            break; /* the files before the bad line first, as QEMU opens them */
        if (ret < 0)
            return ret;
        if (ret == 0)
            break;
        if (k == VMDK_MAX_EXTENTS) {
            s->err_arg = VMDK_MAX_EXTENTS;
            return -VMDK_ERR_TOO_MANY_EXTENTS;
        }
        if (s->ndev == 0) {
            memcpy(s->names[k], l.fname, sizeof(l.fname));
            s->nnames = k + 1;
            continue;
        }
        if (k >= s->ndev)
            return -INSTAR_ERR_BAD_ARGS;
        ret = open_extent(s, &l, k + 1, rdwr);
        if (ret < 0)
            return ret;
    }
    if (s->ndev == 0 && k > 0)
        return -VMDK_ERR_NEED_FILES;
    if (k != s->ndev)
        return -INSTAR_ERR_BAD_ARGS;
    return 0;
}

/* vmdk_open(): the extents, the parent's name, the CIDs. */
static int gvmdk_open(struct gvmdk *s, uint32_t dev, uint32_t ndev, bool rdwr)
{
    static char desc[VMDK_DESC_SIZE + 1];
    char *buf = NULL;
    uint8_t *m;
    int ret;

    memset(s, 0, sizeof(*s));
    s->dev = dev;
    s->ndev = ndev;
    ret = read_desc(dev, 0, &buf);
    if (ret < 0)
        return ret;
    m = (uint8_t *)buf;
    if (((uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3]) ==
        VMDK4_MAGIC_BE) {
        ret = open_sparse(s, dev, 0, rdwr);
        s->desc_offset = VMDK_SPARSE_DESC_OFFSET;
    } else if (((uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3]) ==
               VMDK3_MAGIC_BE) {
        static char cowd[] = "COWD";

        s->err_s = cowd;
        s->err_slen = 4;
        ret = -VMDK_ERR_EXTENT_UNSUPPORTED;
    } else {
        ret = open_desc_file(s, buf, rdwr);
    }
    free(buf);
    if (ret < 0)
        return ret;
    /* vmdk_parent_open() and vmdk_read_cid() read 20 sectors of the descriptor. */
    memset(desc, 0, sizeof(desc));
    if (s->desc_offset > 0x7fffffffc0000000ull - VMDK_DESC_SIZE ||
        gblk_pread(dev, s->desc_offset, desc, VMDK_DESC_SIZE) < 0)
        return -INSTAR_ERR_IO;
    ret = vmdk_desc_parent(desc, s->parent);
    if (ret < 0)
        return -VMDK_ERR_EINVAL;
    s->has_parent = ret == 1 && s->parent[0];
    desc[VMDK_DESC_SIZE - 1] = '\0';
    if (vmdk_desc_cid(desc, false, &s->cid) < 0 || vmdk_desc_cid(desc, true, &s->parent_cid) < 0)
        return -VMDK_ERR_EINVAL;
    /* qemu-img info asserts num_extents (docs/differences.md): a clean error for all. */
    if (s->nextents == 0)
        return -VMDK_ERR_NO_EXTENTS;
    return 0;
}

static __attribute__((noreturn)) void gvmdk_fail(uint32_t op, int ret, const struct gvmdk *s)
{
    uint64_t args[4] = {s->err_arg, 0, 0, 0};

    if (ret == -VMDK_ERR_EXTENT_LINE || ret == -VMDK_ERR_TYPE ||
        ret == -VMDK_ERR_DESCRIPTOR_UNSUPPORTED || ret == -VMDK_ERR_EXTENT_UNSUPPORTED)
        result_error(op, -ret, args, s->err_s, s->err_slen);
    result_error(op, -ret, args, NULL, 0);
}

void gbs_vmdk_describe(uint32_t op, uint32_t dev, uint32_t ndev, bool rdwr,
                       struct gbs_vmdk_info *info)
{
    static struct gvmdk s;
    int ret = gvmdk_open(&s, dev, ndev, rdwr);
    uint32_t i;

    memset(info, 0, sizeof(*info));
    if (ret == -VMDK_ERR_NEED_FILES) {
        info->need_files = s.nnames;
        memcpy(info->names, s.names, sizeof(s.names));
        gvmdk_release(&s);
        return;
    }
    if (ret < 0)
        gvmdk_fail(op, ret, &s);
    info->size = s.ext[s.nextents - 1].end_sector * 512;
    info->cid = s.cid;
    info->parent_cid = s.parent_cid;
    memcpy(info->create_type, s.create_type, sizeof(info->create_type));
    if (s.has_parent)
        memcpy(info->parent, s.parent, sizeof(info->parent));
    info->nextents = s.nextents;
    for (i = 0; i < s.nextents; i++)
        info->ext[i] = s.ext[i];
    gvmdk_release(&s);
}

static int cluster(struct gvmdk *s, uint32_t i, uint64_t off, uint64_t *co);
static int find_extent(const struct gvmdk *s, uint64_t off);

int32_t gbs_vmdk_check(uint32_t op, uint32_t dev, uint32_t ndev)
{
    static struct gvmdk s;
    uint64_t sector = 0, total, co, args[4] = {0, 0, 0, 0};
    int ret = gvmdk_open(&s, dev, ndev, false), i;

    if (ret == -VMDK_ERR_NEED_FILES)
        ret = -INSTAR_ERR_BAD_ARGS;
    if (ret < 0)
        gvmdk_fail(op, ret, &s);
    total = s.ext[s.nextents - 1].end_sector;
    /* vmdk_co_check(): every grain, until the first error. */
    for (;;) {
        if (sector >= total) {
            ret = 0;
            break;
        }
        args[0] = sector;
        i = find_extent(&s, sector * 512);
        if (i < 0) {
            greport(VMDK_MSG_NO_EXTENT, 0, args, NULL, 0);
            ret = -GBS_EINVAL;
            break;
        }
        ret = cluster(&s, (uint32_t)i, sector * 512, &co);
        if (ret == VMDK_CLUSTER_ERROR) {
            greport(VMDK_MSG_CLUSTER, 0, args, NULL, 0);
            break; /* bdrv_check() passes VMDK_ERROR (-1) on: EPERM */
        }
        if (ret == VMDK_CLUSTER_OK && co >= gbs_dev_length(s.ext_dev[i])) {
            greport(VMDK_MSG_EOF, 0, args, NULL, 0);
            ret = -GBS_EINVAL;
            break;
        }
        sector += s.ext[i].cluster_sectors;
    }
    gvmdk_release(&s);
    return ret;
}

static int load_l2(void *opaque, uint32_t sector, const uint8_t **l2)
{
    struct gvmdk *s = opaque;
    const struct vmdk_extent *e = &s->ext[s->load_ext];
    size_t len = (size_t)e->l2_size * 4;
    struct gvmdk_l2 *c;
    uint32_t i;

    for (i = 0; i < GVMDK_L2_CACHE; i++) {
        if (s->l2[i].sector == sector && s->l2[i].ext == s->load_ext && s->l2[i].table) {
            *l2 = s->l2[i].table;
            return 0;
        }
    }
    c = &s->l2[s->l2_next];
    s->l2_next = (s->l2_next + 1) % GVMDK_L2_CACHE;
    if (!c->table) {
        c->table = malloc(512 * 4);
        if (!c->table)
            return -1;
    }
    c->sector = 0;
    if (gblk_pread(s->ext_dev[s->load_ext], (uint64_t)sector * 512, c->table, len) < 0)
        return -1;
    c->sector = sector;
    c->ext = s->load_ext;
    *l2 = c->table;
    return 0;
}

/* find_extent(): the extent holding byte off (NULL past the last). */
static int find_extent(const struct gvmdk *s, uint64_t off)
{
    uint32_t i;

    for (i = 0; i < s->nextents; i++)
        if ((off >> 9) < s->ext[i].end_sector)
            return (int)i;
    return -1;
}

static int cluster(struct gvmdk *s, uint32_t i, uint64_t off, uint64_t *co)
{
    s->load_ext = i;
    return vmdk_cluster(&s->ext[i], s->l1[i], off, load_l2, s, co);
}

static struct gvmdk *V(struct gbs *bs)
{
    return bs->opaque;
}

static int vmdk_drv_open(struct gbs *bs)
{
    struct gvmdk *s = &vmdks[bs->node];
    int ret;

    bs->opaque = s;
    /* The host gives the extent files as the devices after the image's (cmd/graph.c). */
    ret = gvmdk_open(s, bs->file, bs->drv_opts, bs->writable);
    if (ret == -VMDK_ERR_NEED_FILES)
        ret = -INSTAR_ERR_BAD_ARGS;
    /* The host described the image first: a failure here is qemu's open message too. */
    if (ret < 0)
        gvmdk_fail(boot->op, ret, s);
    bs->total = s->ext[s->nextents - 1].end_sector * 512;
    bs->supports_backing = true;
    return 0;
}

static int vmdk_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                             uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    struct gvmdk *s = V(bs);
    int i = find_extent(s, off), ret;
    const struct vmdk_extent *e;
    uint64_t co = 0, in, n;

    (void)want_zero;
    if (i < 0)
        return -GBS_EIO;
    e = &s->ext[i];
    ret = cluster(s, (uint32_t)i, off, &co);
    in = vmdk_offset_in_cluster(e, off);
    switch (ret) {
    case VMDK_CLUSTER_UNALLOC:
        ret = 0;
        break;
    case VMDK_CLUSTER_ZEROED:
        ret = INSTAR_BS_ZERO;
        break;
    case VMDK_CLUSTER_OK:
        ret = INSTAR_BS_DATA;
        if (!e->compressed) {
            ret |= INSTAR_BS_OFFSET_VALID;
            *map = co + in;
            if (e->flat)
                ret |= INSTAR_BS_RECURSE;
        }
        *dev = s->ext_dev[i];
        break;
    default:
        return -GBS_EIO;
    }
    n = e->cluster_sectors * 512 - in;
    *pnum = n < bytes ? n : bytes;
    return ret;
}

/* vmdk_is_cid_valid(): the backing image is a vmdk whose CID is our parentCID. */
static bool cid_valid(struct gbs *bs)
{
    struct gvmdk *s = V(bs);

    if (!s->cid_checked && bs->backing) {
        if (bs->backing->drv != &gbs_drv_vmdk || V(bs->backing)->cid != s->parent_cid)
            return false;
    }
    s->cid_checked = true;
    return true;
}

/* vmdk_read_extent() of a compressed grain: inflated whole, the last one kept. */
static int read_compressed(struct gvmdk *s, uint32_t i, uint64_t co, uint64_t in, void *buf,
                           size_t len)
{
    const struct vmdk_extent *e = &s->ext[i];
    uint64_t cbytes = e->cluster_sectors * 512;
    const uint8_t *data;
    size_t dlen, out;

    if (!s->grain || s->grain_ext != i || s->grain_at != co) {
        if (!s->grain) {
            /* Grains are at most 1 GiB: the heap says whether three fit. */
            s->zbuf = malloc((size_t)cbytes * 2);
            s->grain = malloc((size_t)cbytes);
            if (!s->zbuf || !s->grain) {
                free(s->zbuf);
                free(s->grain);
                s->zbuf = s->grain = NULL;
                return -GBS_ENOMEM;
            }
        }
        s->grain_at = UINT64_MAX;
        if (co > 0x7fffffffc0000000ull - cbytes * 2 ||
            gblk_pread_ahead(s->ext_dev[i], co, s->zbuf, (size_t)cbytes * 2) < 0)
            return -GBS_EIO;
        if (vmdk_grain_data(e, s->zbuf, (size_t)cbytes * 2, &data, &dlen) < 0)
            return -GBS_EINVAL;
        out = (size_t)cbytes;
        if (gcodec_zlib_uncompress(data, dlen, s->grain, &out) < 0)
            return -GBS_EINVAL;
        s->grain_len = out;
        s->grain_ext = i;
        s->grain_at = co;
    }
    if (in + len > s->grain_len)
        return -GBS_EINVAL;
    memcpy(buf, s->grain + in, len);
    return 0;
}

static int vmdk_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    struct gvmdk *s = V(bs);
    uint8_t *p = buf;
    int ret;

    while (len) {
        int i = find_extent(s, off);
        const struct vmdk_extent *e;
        uint64_t co = 0, in, n;

        if (i < 0)
            return -GBS_EIO;
        e = &s->ext[i];
        ret = cluster(s, (uint32_t)i, off, &co);
        in = vmdk_offset_in_cluster(e, off);
        n = e->cluster_sectors * 512 - in;
        if (n > len)
            n = len;
        if (ret == VMDK_CLUSTER_OK) {
            if (e->compressed)
                ret = read_compressed(s, (uint32_t)i, co, in, p, (size_t)n);
            else if (co + in > 0x7fffffffc0000000ull - n)
                ret = -GBS_EIO;
            else
                ret = gblk_pread_direct(s->ext_dev[i], co + in, p, (size_t)n) < 0 ? -GBS_EIO : 0;
            if (ret < 0)
                return ret;
        } else {
            /* Unallocated, zeroed, or get_cluster_offset()'s VMDK_ERROR, read as QEMU does. */
            if (bs->backing && ret != VMDK_CLUSTER_ZEROED) {
                if (!cid_valid(bs))
                    return -GBS_EINVAL;
                ret = gbs_pread(bs->backing, off, p, (size_t)n);
                if (ret < 0)
                    return ret;
            } else {
                memset(p, 0, (size_t)n);
            }
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

static int vmdk_flush(struct gbs *bs)
{
    (void)bs;
    return 0;
}

const struct gbs_driver gbs_drv_vmdk = {
    .name = "vmdk",
    .open = vmdk_drv_open,
    .block_status = vmdk_block_status,
    .pread = vmdk_pread,
    .flush = vmdk_flush,
};
