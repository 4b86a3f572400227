/*
 * The vmdk driver of the guest block layer: open as vmdk_open() does
 * (formats/vmdk/vmdk.h), block status as vmdk_co_block_status() answers
 * it (a grain at a time: allocated, zeroed, unallocated; a compressed
 * grain is data without an offset), and reads as vmdk_co_preadv() does
 * them (compressed grains inflated through the real zlib, guest/codec.c,
 * into a buffer of one grain; unallocated grains from the backing image,
 * once its CID matches the parentCID).
 *
 * Hosted sparse files (monolithicSparse, streamOptimized), descriptor
 * files and their extents (FLAT/VMFS, SPARSE/VMFSSPARSE over a VMDK4 or
 * VMDK3 file, SESPARSE) open; the extent files are the devices after the
 * image's, which the host opened for the names the guest gave it.
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

/* How deep instar follows SPARSE extents that are descriptors again (QEMU: no bound). */
#define GVMDK_NEST_MAX 8

struct gvmdk {
    uint32_t dev;  /* the image file */
    uint32_t ndev; /* extent files: devices dev + 1 .. dev + ndev (0: none given) */
    /* ndev == 0: the extent files the descriptor names (VMDK_ERR_NEED_FILES) */
    uint32_t nnames, names_cap;
    char **names;
    bool *names_flat; /* a FLAT or VMFS line: data only, no metadata (the host's locks) */
    /* Only the first ndev extent files were opened (INSTAR_INFO_VMDK_PARTIAL). */
    bool partial;
    /* How many SPARSE extents that are descriptors the open is inside (GVMDK_NEST_MAX). */
    uint32_t depth;
    /*
     * The extents, in arrays of cap entries that grow with the descriptor
     * (ext_reserve(), at most VMDK_MAX_EXTENTS).
     */
    uint32_t nextents, cap;
    struct vmdk_extent *ext;
    uint32_t *ext_dev;
    void **l1; /* uint32_t entries, uint64_t for seSparse */
    /* Writes: the redundant directory (host order, NULL: none), where the next grain goes. */
    uint32_t **l1b;
    uint64_t *next_sector;
    bool cid_updated;
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
    /* The arguments of the last error (err_more: seSparse's reserved words). */
    uint64_t err_arg, err_more[3];
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

    for (i = 0; i < s->cap; i++) {
        free(s->l1[i]);
        free(s->l1b[i]);
    }
    free(s->ext);
    free(s->ext_dev);
    free(s->l1);
    free(s->l1b);
    free(s->next_sector);
    for (i = 0; i < s->nnames; i++)
        free(s->names[i]);
    free(s->names);
    free(s->names_flat);
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

/* One grain directory of extent i at off, host order, into *out (entry_size bytes each). */
static int read_gd(struct gvmdk *s, uint32_t i, uint64_t off, void **out)
{
    const struct vmdk_extent *e = &s->ext[i];
    size_t len = (size_t)e->l1_size * e->entry_size;
    uint8_t *raw = malloc(len ? len : 8);
    uint32_t *l1 = (uint32_t *)raw;
    uint64_t *l1se = (uint64_t *)raw;
    size_t k;

    if (!raw)
        return -VMDK_ERR_NOMEM;
    *out = raw;
    if (gblk_pread(s->ext_dev[i], off, raw, len) < 0)
        return -INSTAR_ERR_IO;
    /* In place, front to back: each entry is read before it is overwritten. */
    for (k = 0; k < e->l1_size; k++) {
        uint32_t lo = (uint32_t)raw[e->entry_size * k] | (uint32_t)raw[e->entry_size * k + 1] << 8 |
                      (uint32_t)raw[e->entry_size * k + 2] << 16 |
                      (uint32_t)raw[e->entry_size * k + 3] << 24;

        if (e->entry_size == 8) {
            const uint8_t *h = raw + 8 * k + 4;

            l1se[k] = (uint64_t)lo | (uint64_t)((uint32_t)h[0] | (uint32_t)h[1] << 8 |
                                                (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24)
                                         << 32;
        } else {
            l1[k] = lo;
        }
    }
    return 0;
}

/*
 * vmdk_init_tables(): the grain directory, host order, and for a
 * read-write open the redundant one (instar reads it only to write);
 * where new grains go (vmdk_add_extent(): the file's end, rounded up to
 * a grain).
 */
static int init_tables(struct gvmdk *s, uint32_t i, bool rdwr)
{
    const struct vmdk_extent *e = &s->ext[i];
    uint64_t sectors = (gblk_size(s->ext_dev[i]) + 511) / 512;
    int ret = read_gd(s, i, e->l1_table_offset, &s->l1[i]);
    void *l1b = NULL;

    /* Only VMDK4 has a redundant directory (4-byte entries). */
    if (ret == 0 && rdwr && e->l1_backup_offset) {
        ret = read_gd(s, i, e->l1_backup_offset, &l1b);
        s->l1b[i] = l1b;
    }
    if (e->cluster_sectors)
        s->next_sector[i] =
            (sectors + e->cluster_sectors - 1) / e->cluster_sectors * e->cluster_sectors;
    return ret;
}

/* vmdk_open_sparse() of a VMDK4 file: one extent, or its embedded descriptor. */
static int open_desc_file(struct gvmdk *s, const char *buf, bool rdwr);

/* grow - *p, of *cap entries of size bytes, to n entries, the new ones zero; 0 or -1. */
static int grow(void *p, uint32_t cap, uint32_t n, size_t size)
{
    uint8_t *q = realloc(*(void **)p, (size_t)n * size);

    if (!q)
        return -1;
    memset(q + (size_t)cap * size, 0, (size_t)(n - cap) * size);
    *(void **)p = q;
    return 0;
}

/*
 * Room for extent s->nextents: the arrays double, up to VMDK_MAX_EXTENTS
 * (a limit of ours: QEMU has none).
 */
static int ext_reserve(struct gvmdk *s)
{
    uint32_t n;

    if (s->nextents < s->cap)
        return 0;
    if (s->nextents >= VMDK_MAX_EXTENTS) {
        s->err_arg = VMDK_MAX_EXTENTS;
        return -VMDK_ERR_TOO_MANY_EXTENTS;
    }
    n = s->cap ? s->cap * 2 : 4;
    if (n > VMDK_MAX_EXTENTS)
        n = VMDK_MAX_EXTENTS;
    if (grow(&s->ext, s->cap, n, sizeof(*s->ext)) < 0 ||
        grow(&s->ext_dev, s->cap, n, sizeof(*s->ext_dev)) < 0 ||
        grow(&s->l1, s->cap, n, sizeof(*s->l1)) < 0 ||
        grow(&s->l1b, s->cap, n, sizeof(*s->l1b)) < 0 ||
        grow(&s->next_sector, s->cap, n, sizeof(*s->next_sector)) < 0)
        return -VMDK_ERR_NOMEM; /* the arrays that grew keep their entries: cap stays */
    s->cap = n;
    return 0;
}

/* The descriptor's k-th extent file name (k == s->nnames), kept for the host. */
static int add_name(struct gvmdk *s, uint32_t k, const char *name, bool flat)
{
    size_t len = strlen(name);

    if (k >= VMDK_MAX_EXTENTS) {
        s->err_arg = VMDK_MAX_EXTENTS;
        return -VMDK_ERR_TOO_MANY_EXTENTS;
    }
    if (k == s->names_cap) {
        uint32_t n = s->names_cap ? s->names_cap * 2 : 4;

        if (n > VMDK_MAX_EXTENTS)
            n = VMDK_MAX_EXTENTS;
        if (grow(&s->names, s->names_cap, n, sizeof(*s->names)) < 0 ||
            grow(&s->names_flat, s->names_cap, n, sizeof(*s->names_flat)) < 0)
            return -VMDK_ERR_NOMEM; /* names_cap stays: the grown array keeps its entries */
        s->names_cap = n;
    }
    s->names_flat[k] = flat;
    s->names[k] = malloc(len + 1);
    if (!s->names[k])
        return -VMDK_ERR_NOMEM;
    memcpy(s->names[k], name, len + 1);
    s->nnames = k + 1;
    return 0;
}

/* vmdk_add_extent() and vmdk_init_tables() of the sparse extent e in device dev. */
static int add_sparse(struct gvmdk *s, struct vmdk_extent *e, uint32_t dev, uint32_t file,
                      bool rdwr)
{
    uint32_t i = s->nextents;
    int ret;

    ret = ext_reserve(s);
    if (ret < 0)
        return ret;
    e->file = file;
    e->end_sector = e->sectors;
    if (i > 0 && __builtin_add_overflow(s->ext[i - 1].end_sector, e->sectors, &e->end_sector))
        return -VMDK_ERR_TOO_LARGE;
    if (e->end_sector > (uint64_t)INT64_MAX / 512)
        return -VMDK_ERR_TOO_LARGE;
    s->ext[i] = *e;
    s->ext_dev[i] = dev;
    s->nextents++;
    ret = init_tables(s, i, rdwr);
    if (ret < 0) {
        free(s->l1[i]);
        s->l1[i] = NULL;
        free(s->l1b[i]);
        s->l1b[i] = NULL;
        s->nextents--;
    }
    return ret;
}

/* vmdk_open_vmfs_sparse(): a VMDK3 ("COWD") file, one extent. */
static int open_vmfs(struct gvmdk *s, uint32_t dev, uint32_t file, bool rdwr)
{
    struct gvmdk_rd rd = {dev};
    struct vmdk_reader r = {dev_pread, &rd};
    struct vmdk_extent e;
    int ret = vmdk_open_vmfs(&r, &e);

    return ret < 0 ? ret : add_sparse(s, &e, dev, file, rdwr);
}

/* vmdk_open_se_sparse(): a seSparse file, one extent (read-only). */
static int open_se(struct gvmdk *s, uint32_t dev, uint32_t file, bool rdwr)
{
    struct gvmdk_rd rd = {dev};
    struct vmdk_reader r = {dev_pread, &rd};
    struct vmdk_extent e;
    uint64_t a[4];
    int ret = vmdk_open_sesparse(&r, rdwr, &e, a);

    s->err_arg = a[0];
    memcpy(s->err_more, a + 1, sizeof(s->err_more));
    /* The read errors name the extent's file: the host knows its name by index. */
    if (ret == -VMDK_ERR_SE_VOL_READ || ret == -VMDK_ERR_L1_READ_EIO)
        s->err_more[0] = file;
    return ret < 0 ? ret : add_sparse(s, &e, dev, file, rdwr);
}

static int open_sparse(struct gvmdk *s, uint32_t dev, uint32_t file, bool rdwr)
{
    struct gvmdk_rd rd = {dev};
    struct vmdk_reader r = {dev_pread, &rd};
    struct vmdk_extent e;
    uint64_t desc_offset = 0;
    int ret;

    ret = vmdk_open_vmdk4(&r, gblk_size(dev), rdwr, &e, &desc_offset, &s->err_arg);
    if (ret < 0)
        return ret;
    if (ret == 1) {
        char *buf = NULL;

        /*
         * An extent that is a descriptor again (capacity 0): QEMU opens the
         * extents it names as more extents of the image, and recurses
         * without a bound (a descriptor naming itself overflows its stack).
         */
        if (file != 0 && s->depth >= GVMDK_NEST_MAX) {
            s->err_arg = GVMDK_NEST_MAX;
            return -VMDK_ERR_NESTED;
        }
        ret = read_desc(dev, desc_offset, &buf);
        if (ret == 0) {
            s->depth += file != 0;
            ret = open_desc_file(s, buf, rdwr);
            s->depth -= file != 0;
        }
        free(buf);
        return ret;
    }
    if (!s->create_type[0])
        memcpy(s->create_type, "monolithicSparse", 17);
    if (e.compressed)
        memcpy(s->create_type, "streamOptimized", 16);
    return add_sparse(s, &e, dev, file, rdwr);
}

/* One extent line (vmdk_parse_extents()): file is its index, its device dev + file. */
static int open_extent(struct gvmdk *s, const struct vmdk_extent_line *l, uint32_t file, bool rdwr)
{
    uint32_t dev = s->dev + file, i = s->nextents;
    struct vmdk_extent *e;
    char *buf = NULL;
    int ret;

    if (!strcmp(l->type, "FLAT") || !strcmp(l->type, "VMFS")) {
        ret = ext_reserve(s);
        if (ret < 0)
            return ret;
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
        if (magic == VMDK4_MAGIC_BE)
            ret = open_sparse(s, dev, file, rdwr);
        else if (magic == VMDK3_MAGIC_BE)
            ret = open_vmfs(s, dev, file, rdwr);
        else
            ret = -VMDK_ERR_NOT_VMDK;
        if (ret < 0)
            return ret;
    } else {
        /* vmdk_desc_next_extent() passes no other type. */
        ret = open_se(s, dev, file, rdwr);
        if (ret < 0)
            return ret;
    }
    /* (a nested descriptor's last extent takes this line's type, as in QEMU) */
    if (s->nextents == 0)
        return -VMDK_ERR_NO_EXTENTS; /* a nested descriptor of no extent: QEMU reads extents[-1] */
    memcpy(s->ext[s->nextents - 1].type, l->type, sizeof(l->type));
    return 0;
}

/*
 * vmdk_open_desc_file(): the descriptor's checks, then its extents.  Its
 * lines' file names are listed first (after those listed before: a
 * nested descriptor's follow all of its parent's), so that every run
 * numbers the files alike; the host opens them in that order and gives
 * name i as device dev + 1 + i.  A name without a device ends the open
 * with VMDK_ERR_NEED_FILES: the host opens the names it has not opened
 * yet (a nested descriptor's) and runs again, or (a partial open) reports
 * the file it could not open.
 */
static int open_desc_file(struct gvmdk *s, const char *buf, bool rdwr)
{
    static const char *const types[] = {"monolithicFlat",       "vmfs",
                                        "vmfsSparse",           "seSparse",
                                        "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"};
    static char ct[128];
    struct vmdk_extent_line *l = malloc(sizeof(*l));
    const char *p = buf, *bad;
    uint32_t k, n, base = s->nnames;
    size_t i, bad_len;
    int ret;

    if (!l)
        return -VMDK_ERR_NOMEM;
    ret = -VMDK_ERR_DESC;
    if (vmdk_desc_value(buf, "createType", ct, sizeof(ct)) < 0)
        goto out;
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(ct, types[i]))
            break;
    if (i == sizeof(types) / sizeof(types[0])) {
        s->err_s = ct;
        s->err_slen = strlen(ct);
        ret = -VMDK_ERR_TYPE;
        goto out;
    }
    memcpy(s->create_type, ct, sizeof(ct));
    s->desc_offset = 0;
    /* The names, up to the first invalid line (its error comes when the open reaches it). */
    for (n = 0;; n++) {
        ret = vmdk_desc_next_extent(&p, l, &bad, &bad_len);
        if (ret < 0 && s->ndev == 0 && n == 0) {
            s->err_s = bad;
            s->err_slen = bad_len;
            goto out;
        }
        if (ret <= 0)
            break;
        ret = add_name(s, base + n, l->fname, !strcmp(l->type, "FLAT") || !strcmp(l->type, "VMFS"));
        if (ret < 0)
            goto out;
    }
    ret = 0;
    if (s->ndev == 0) {
        if (n > 0)
            ret = -VMDK_ERR_NEED_FILES;
        goto out;
    }
    for (p = buf, k = 0;; k++) {
        ret = vmdk_desc_next_extent(&p, l, &s->err_s, &s->err_slen);
        if (ret <= 0)
            break;
        /* A partial open stops at the file the host could not open, as QEMU's open fails there. */
        if (base + k >= s->ndev) {
            ret = -VMDK_ERR_NEED_FILES;
            goto out;
        }
        ret = open_extent(s, l, base + k + 1, rdwr);
        if (ret < 0)
            goto out;
    }
    if (ret == 0 && s->depth == 0 && s->nnames != s->ndev)
        ret = -INSTAR_ERR_BAD_ARGS;
out:
    free(l);
    return ret;
}

/* vmdk_open(): the extents, the parent's name, the CIDs. */
static int gvmdk_open(struct gvmdk *s, uint32_t dev, uint32_t ndev, bool rdwr, bool partial)
{
    static char desc[VMDK_DESC_SIZE + 1];
    char *buf = NULL;
    uint8_t *m;
    int ret;

    gvmdk_release(s); /* a static one's arrays from an earlier open */
    s->dev = dev;
    s->ndev = ndev;
    s->partial = partial && ndev > 0;
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
        /* vmdk_open(): a VMDK3 file names no createType; its "descriptor" is at 0x200 too. */
        ret = open_vmfs(s, dev, 0, rdwr);
        s->desc_offset = VMDK_SPARSE_DESC_OFFSET;
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
    uint64_t args[4] = {s->err_arg, s->err_more[0], s->err_more[1], s->err_more[2]};

    if (ret == -VMDK_ERR_EXTENT_LINE || ret == -VMDK_ERR_TYPE ||
        ret == -VMDK_ERR_DESCRIPTOR_UNSUPPORTED || ret == -VMDK_ERR_EXTENT_UNSUPPORTED)
        result_error(op, -ret, args, s->err_s, s->err_slen);
    result_error(op, -ret, args, NULL, 0);
}

void gbs_vmdk_describe(uint32_t op, uint32_t dev, uint32_t ndev, bool rdwr, bool partial,
                       struct gbs_vmdk_info *info)
{
    static struct gvmdk s;
    int ret = gvmdk_open(&s, dev, ndev, rdwr, partial);

    memset(info, 0, sizeof(*info));
    /* info points into s, kept until the next open (gvmdk_open() releases it). */
    if (ret == -VMDK_ERR_NEED_FILES) {
        info->need_files = s.nnames;
        info->names = (const char *const *)s.names;
        info->names_flat = s.names_flat;
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
    info->ext = s.ext;
}

static int cluster(struct gvmdk *s, uint32_t i, uint64_t off, uint64_t *co);
static int find_extent(const struct gvmdk *s, uint64_t off);

int32_t gbs_vmdk_check(uint32_t op, uint32_t dev, uint32_t ndev)
{
    static struct gvmdk s;
    uint64_t sector = 0, total, co, args[4] = {0, 0, 0, 0};
    int ret = gvmdk_open(&s, dev, ndev, false, false), i;

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
    size_t len = (size_t)e->l2_size * e->entry_size;
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
        c->table = malloc(VMDK_L2_MAX_BYTES);
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
    uint32_t lo = 0, hi = s->nextents, mid;

    /* end_sector grows with i: the first extent ending after off's sector. */
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if ((off >> 9) < s->ext[mid].end_sector)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo < s->nextents ? (int)lo : -1;
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
    uint32_t i;
    int ret;

    bs->opaque = s;
    /* The host gives the extent files as the devices after the image's (cmd/graph.c). */
    ret = gvmdk_open(s, bs->file, bs->drv_opts, bs->writable, false);
    if (ret == -VMDK_ERR_NEED_FILES)
        ret = -INSTAR_ERR_BAD_ARGS;
    /* The host described the image first: a failure here is qemu's open message too. */
    if (ret < 0)
        gvmdk_fail(boot->op, ret, s);
    bs->total = s->ext[s->nextents - 1].end_sector * 512;
    bs->supports_backing = true;
    /* vmdk_refresh_limits(): zeros in whole grains of the largest sparse extent's size. */
    for (i = 0; i < s->nextents; i++)
        if (!s->ext[i].flat && s->ext[i].cluster_sectors * 512 > bs->zero_align)
            bs->zero_align = s->ext[i].cluster_sectors * 512;
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
    if (i < 0 || s->ext[i].cluster_sectors == 0)
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

        /* A VMDK3 grain of 0 sectors: QEMU divides by zero; an error here. */
        if (i < 0 || s->ext[i].cluster_sectors == 0)
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

/* ---- writes: vmdk_pwritev() ---------------------------------------------------------------- */

#define GVMDK_MAX_SECTORS (1ull << 32) /* VMDK_EXTENT_MAX_SECTORS */

/* get_cluster_offset()'s VmdkMetaData: where a grain's table entry lives. */
struct gvmdk_meta {
    uint32_t l1_index, l2_index, l2_sector;
    bool new_allocation;
};

/*
 * get_cluster_offset() of a sparse extent i for offset: VMDK_CLUSTER_*,
 * *m filled when the grain table exists.  allocate: an unallocated or
 * zeroed grain gets the next grain of the file, its bytes outside
 * [skip_start, skip_end) first written (copied from the backing file,
 * else zeros: get_whole_cluster()).
 */
static int locate(struct gbs *bs, uint32_t i, uint64_t off, bool allocate, uint64_t skip_start,
                  uint64_t skip_end, uint64_t *co, struct gvmdk_meta *m);

/* bdrv_co_pread() of the backing node, bytes past its end as zeros. */
static int backing_read(struct gbs *bs, uint64_t off, uint8_t *buf, uint64_t len)
{
    uint64_t total = bs->backing->total, n = off >= total        ? 0
                                             : total - off < len ? total - off
                                                                 : len;

    memset(buf + n, 0, (size_t)(len - n));
    return n ? gbs_pread(bs->backing, off, buf, (size_t)n) : 0;
}

/* get_whole_cluster(): the new grain at co around the caller's [skip_start, skip_end). */
static int whole_grain(struct gbs *bs, uint32_t i, uint64_t co, uint64_t off, uint64_t skip_start,
                       uint64_t skip_end, bool zeroed)
{
    struct gvmdk *s = V(bs);
    uint64_t cb = s->ext[i].cluster_sectors * 512;
    bool copy = bs->backing && !zeroed;
    uint8_t *g;
    int ret = 0;

    off -= off % cb;
    g = malloc((size_t)cb);
    if (!g)
        return -GBS_ENOMEM;
    if (!copy)
        memset(g, 0, (size_t)cb);
    if (bs->backing && !cid_valid(bs)) {
        ret = VMDK_CLUSTER_ERROR;
        goto out;
    }
    if (skip_start > 0) {
        if (copy && backing_read(bs, off, g, skip_start) < 0)
            ret = VMDK_CLUSTER_ERROR;
        else if (gdev_pwrite(s->ext_dev[i], co, g, (size_t)skip_start) < 0)
            ret = VMDK_CLUSTER_ERROR;
        if (ret)
            goto out;
    }
    if (skip_end < cb) {
        if (copy && backing_read(bs, off + skip_end, g + skip_end, cb - skip_end) < 0)
            ret = VMDK_CLUSTER_ERROR;
        else if (gdev_pwrite(s->ext_dev[i], co + skip_end, g + skip_end, (size_t)(cb - skip_end)) <
                 0)
            ret = VMDK_CLUSTER_ERROR;
    }
out:
    free(g);
    return ret;
}

static int locate(struct gbs *bs, uint32_t i, uint64_t off, bool allocate, uint64_t skip_start,
                  uint64_t skip_end, uint64_t *co, struct gvmdk_meta *m)
{
    struct gvmdk *s = V(bs);
    const struct vmdk_extent *e = &s->ext[i];
    uint64_t rel = off - (e->end_sector - e->sectors) * 512, sector;
    const uint8_t *l2;
    bool zeroed;
    int ret;

    m->new_allocation = false;
    if (e->flat) {
        *co = e->flat_start_offset;
        return VMDK_CLUSTER_OK;
    }
    m->l1_index = (uint32_t)((rel >> 9) / e->l1_entry_sectors);
    if (m->l1_index >= e->l1_size)
        return VMDK_CLUSTER_ERROR;
    /* Writes never reach a seSparse extent (opened read-only): 4-byte entries. */
    m->l2_sector = ((const uint32_t *)s->l1[i])[m->l1_index];
    if (!m->l2_sector)
        return VMDK_CLUSTER_UNALLOC;
    s->load_ext = i;
    if (load_l2(s, m->l2_sector, &l2) < 0)
        return VMDK_CLUSTER_ERROR;
    m->l2_index = (uint32_t)(((rel >> 9) / e->cluster_sectors) % e->l2_size);
    sector = (uint32_t)l2[4 * m->l2_index] | (uint32_t)l2[4 * m->l2_index + 1] << 8 |
             (uint32_t)l2[4 * m->l2_index + 2] << 16 | (uint32_t)l2[4 * m->l2_index + 3] << 24;
    zeroed = e->has_zero_grain && sector == VMDK_GTE_ZEROED;
    if (!sector || zeroed) {
        if (!allocate)
            return zeroed ? VMDK_CLUSTER_ZEROED : VMDK_CLUSTER_UNALLOC;
        if (s->next_sector[i] >= GVMDK_MAX_SECTORS)
            return VMDK_CLUSTER_ERROR;
        sector = s->next_sector[i];
        s->next_sector[i] += e->cluster_sectors;
        /* The grain first, then its table entry: a cut leaves it unreferenced. */
        ret = whole_grain(bs, i, sector * 512, off, skip_start, skip_end, zeroed);
        if (ret)
            return ret;
        m->new_allocation = true;
    }
    *co = sector << 9;
    return VMDK_CLUSTER_OK;
}

/* vmdk_L2update(): the entry in the grain table, then in the redundant one, then a flush. */
static int l2_update(struct gvmdk *s, uint32_t i, const struct gvmdk_meta *m, uint32_t v)
{
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    uint32_t dev = s->ext_dev[i], k;

    if (gdev_pwrite(dev, (uint64_t)m->l2_sector * 512 + (uint64_t)m->l2_index * 4, le, 4) < 0)
        return -GBS_EIO;
    if (s->ext[i].l1_backup_offset && s->l1b[i] &&
        gdev_pwrite(dev, (uint64_t)s->l1b[i][m->l1_index] * 512 + (uint64_t)m->l2_index * 4, le,
                    4) < 0)
        return -GBS_EIO;
    if (gdev_flush(dev) < 0)
        return -GBS_EIO;
    for (k = 0; k < GVMDK_L2_CACHE; k++)
        if (s->l2[k].table && s->l2[k].ext == i && s->l2[k].sector == m->l2_sector)
            memcpy(s->l2[k].table + 4 * m->l2_index, le, 4);
    return 0;
}

/* strstr() (the guest's libc has none). */
static char *find_str(char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay; hay++)
        if (!strncmp(hay, needle, n))
            return hay;
    return NULL;
}

/*
 * vmdk_write_cid(): the descriptor's CID replaced (the rest of its line
 * on from "parentCID" appended again, the old bytes past the new end
 * left), the 20 sectors written back and flushed.
 */
static int write_cid(struct gvmdk *s, uint32_t cid)
{
    static char desc[VMDK_DESC_SIZE], tmp[VMDK_DESC_SIZE];
    char hex[12], *p, *t;
    size_t room, n, k, len;
    uint64_t end;

    if (s->desc_offset > 0x7fffffffc0000000ull - VMDK_DESC_SIZE ||
        gblk_pread(s->dev, s->desc_offset, desc, sizeof(desc)) < 0)
        return -GBS_EIO;
    desc[sizeof(desc) - 1] = '\0';
    t = find_str(desc, "parentCID");
    if (!t)
        return -GBS_EINVAL;
    memcpy(tmp, t, strlen(t) + 1);
    p = find_str(desc, "CID");
    if (p) {
        p += 4;
        room = sizeof(desc) - (size_t)(p - desc);
        for (n = 0, k = 28;; k -= 4) {
            if (n || (cid >> k) & 0xf || k == 0)
                hex[n++] = "0123456789abcdef"[(cid >> k) & 0xf];
            if (k == 0)
                break;
        }
        hex[n++] = '\n';
        /* snprintf(p, room, "%x\n", cid) */
        if (room) {
            n = n < room - 1 ? n : room - 1;
            memcpy(p, hex, n);
            p[n] = '\0';
        }
        /* pstrcat(desc, sizeof(desc), tmp) */
        len = strlen(desc);
        n = strlen(tmp);
        if (n > sizeof(desc) - 1 - len)
            n = sizeof(desc) - 1 - len;
        memcpy(desc + len, tmp, n);
        desc[len + n] = '\0';
    }
    /*
     * qemu-img's write stops at the file's end rounded up to a sector (a
     * descriptor file of 341 bytes becomes 512 long, not 20 sectors):
     * observed with qemu-img 7.2, the same for every length tried.
     */
    end = (gdev_length(s->dev) + 511) / 512 * 512;
    n = end > s->desc_offset
            ? (end - s->desc_offset < sizeof(desc) ? (size_t)(end - s->desc_offset) : sizeof(desc))
            : 0;
    if ((n && gdev_pwrite(s->dev, s->desc_offset, desc, n) < 0) || gdev_flush(s->dev) < 0)
        return -GBS_EIO;
    return 0;
}

/*
 * vmdk_write_extent() of a compressed extent: only a whole grain (or the
 * extent's short last one) at its start, zlib's compress() into at most
 * two grains, after the grain marker (the sector, the length); the next
 * grain goes right after it (so the zeros written past it are
 * overwritten by the next grain).
 */
static int write_compressed(struct gvmdk *s, uint32_t i, uint64_t co, uint64_t off,
                            const uint8_t *buf, uint64_t n)
{
    const struct vmdk_extent *e = &s->ext[i];
    uint64_t cb = e->cluster_sectors * 512;
    uint8_t *out;
    long len;
    int ret = 0;

    if (vmdk_offset_in_cluster(e, off) || n > cb || (n < cb && off + n != e->end_sector * 512) ||
        !e->has_marker)
        return -GBS_EINVAL;
    out = malloc((size_t)cb * 2 + 12);
    if (!out)
        return -GBS_ENOMEM;
    len = gcodec_zlib_compress(buf, (size_t)n, out + 12, (size_t)cb * 2);
    if (len == -GCODEC_ENOMEM) {
        ret = -GBS_ENOMEM;
    } else if (len <= 0) {
        ret = -GBS_EINVAL;
    } else {
        uint64_t lba = off >> 9;
        int k;

        for (k = 0; k < 8; k++)
            out[k] = (uint8_t)(lba >> (8 * k));
        for (k = 0; k < 4; k++)
            out[8 + k] = (uint8_t)((uint64_t)len >> (8 * k));
        if (gdev_pwrite(s->ext_dev[i], co, out, (size_t)len + 12) < 0)
            ret = -GBS_EIO;
        s->next_sector[i] = (co + (uint64_t)len + 12 + 511) / 512;
    }
    free(out);
    return ret;
}

int gbs_vmdk_compressed_eof(struct gbs *bs)
{
    struct gvmdk *s = V(bs);
    uint32_t i;

    /* vmdk_co_pwritev_compressed() of nothing: every extent file rounded up to whole sectors. */
    for (i = 0; i < s->nextents; i++) {
        uint64_t len = gdev_length(s->ext_dev[i]), aligned = (len + 511) / 512 * 512;

        if (aligned != len && gdev_truncate(s->ext_dev[i], aligned, INSTAR_TRUNC_OFF) < 0)
            return -GBS_EIO;
    }
    return 0;
}

int gbs_vmdk_cluster_size(struct gbs *bs, uint64_t *cluster_size)
{
    struct gvmdk *s = V(bs);

    if (bs->drv != &gbs_drv_vmdk || s->nextents == 0 || s->ext[0].flat)
        return -GBS_EINVAL;
    *cluster_size = s->ext[0].cluster_sectors * 512;
    return 0;
}

bool gbs_vmdk_stream(struct gbs *bs)
{
    struct gvmdk *s = V(bs);

    if (bs->drv != &gbs_drv_vmdk)
        return false;
    for (uint32_t i = 0; i < s->nextents; i++)
        if (s->ext[i].compressed)
            return true;
    return false;
}

/*
 * vmdk_pwritev() for data (zeroed false) or zeros (zeroed true, dry: the
 * dry run of vmdk_co_pwrite_zeroes() that only checks).
 */
static int vmdk_do_write(struct gbs *bs, uint64_t off, const uint8_t *buf, uint64_t bytes,
                         bool zeroed, bool dry)
{
    struct gvmdk *s = V(bs);
    uint64_t done = 0;
    int ret;

    if ((off + 511) / 512 > bs->total / 512)
        return -GBS_EIO;
    while (bytes > 0) {
        int i = find_extent(s, off);
        const struct vmdk_extent *e;
        struct gvmdk_meta m;
        uint64_t in, n, co = 0, cb;

        if (i < 0 || (!s->ext[i].flat &&
                      (s->ext[i].cluster_sectors == 0 || s->ext[i].l1_entry_sectors == 0)))
            return -GBS_EIO;
        e = &s->ext[i];
        cb = e->cluster_sectors * 512;
        in = vmdk_offset_in_cluster(e, off);
        n = cb - in < bytes ? cb - in : bytes;
        ret = locate(bs, (uint32_t)i, off, !(e->compressed || zeroed), in, in + n, &co, &m);
        if (e->compressed) {
            /* qemu refuses, with error_report()'s line, then the write error. */
            if (ret == VMDK_CLUSTER_OK) {
                greport(VMDK_MSG_STREAM_ALLOCATED, INSTAR_REC_PREFIX, NULL, NULL, 0);
                return -GBS_EIO;
            }
            if (!zeroed && ret != VMDK_CLUSTER_ERROR)
                ret = locate(bs, (uint32_t)i, off, true, 0, 0, &co, &m);
        }
        if (ret == VMDK_CLUSTER_ERROR)
            return -GBS_EINVAL;
        if (ret < 0 && ret != VMDK_CLUSTER_UNALLOC && ret != VMDK_CLUSTER_ZEROED)
            return ret;
        if (zeroed) {
            if (!e->has_zero_grain || in != 0 || n < cb)
                return -GBS_ENOTSUP;
            if (!dry && ret != VMDK_CLUSTER_ZEROED &&
                l2_update(s, (uint32_t)i, &m, VMDK_GTE_ZEROED) < 0)
                return -GBS_EIO;
        } else {
            uint64_t end;

            /* A grain table qemu has none for: it would write at an offset it never set. */
            if (ret != VMDK_CLUSTER_OK || co + in > 0x7fffffffc0000000ull - 2 * cb - 12)
                return -GBS_EIO;
            if (e->compressed) {
                ret = write_compressed(s, (uint32_t)i, co, off, buf + done, n);
                if (ret < 0)
                    return ret;
            } else {
                if (gdev_pwrite(s->ext_dev[i], co + in, buf + done, (size_t)n) < 0)
                    return -GBS_EIO;
                end = (co + in + n + 511) / 512;
                if (end > s->next_sector[i])
                    s->next_sector[i] = end;
            }
            if (m.new_allocation && l2_update(s, (uint32_t)i, &m, (uint32_t)(co >> 9)) < 0)
                return -GBS_EIO;
        }
        bytes -= n;
        off += n;
        done += n;
        /* The CID changes on the first write after each open. */
        if (!s->cid_updated) {
            ret = write_cid(s, (uint32_t)bs->seed[0] | (uint32_t)bs->seed[1] << 8 |
                                   (uint32_t)bs->seed[2] << 16 | (uint32_t)bs->seed[3] << 24);
            if (ret < 0)
                return ret;
            s->cid_updated = true;
        }
    }
    return 0;
}

static int vmdk_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    return vmdk_do_write(bs, off, buf, len, false, false);
}

/* vmdk_co_pwrite_zeroes(): zeroed grain entries, or -ENOTSUP (zeros written instead). */
static int vmdk_pwrite_zeroes(struct gbs *bs, uint64_t off, uint64_t bytes, uint32_t flags)
{
    int ret;

    (void)flags;
    ret = vmdk_do_write(bs, off, NULL, bytes, true, true);
    if (ret == 0)
        ret = vmdk_do_write(bs, off, NULL, bytes, true, false);
    return ret;
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
    .pwrite = vmdk_pwrite,
    .pwrite_zeroes = vmdk_pwrite_zeroes,
    .flush = vmdk_flush,
};
