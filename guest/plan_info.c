/*
 * The guest's "info" planner: probe or take the -f format, open the image
 * the way qemu-img 7.2 opens it for info (read-only, no backing, no I/O on
 * data), and hand the host a struct instar_info_result to render.
 *
 * The qcow2 checks (guest/open.c) run in qcow2_do_open()'s order, so the first failure is the
 * one qemu-img reports: header, extensions (with the LUKS header where the
 * extension sits), backing file name, snapshot table, then the persistent
 * bitmaps (directory, duplicates, tables), in directory order.
 */
#include "bdrv.h"
#include "open.h"
#include "bochs/bochs_err.h"
#include "cloop/cloop_err.h"
#include "dmg/dmg_err.h"
#include "qcow2/luks.h"
#include "vpc/vpc.h"
#include "vdi/vdi.h"

#define DEV_IMAGE GOPEN_DEV

static __attribute__((noreturn)) void fail(int code)
{
    gopen_fail(INSTAR_OP_INFO, code, NULL);
}

static __attribute__((noreturn)) void fail_str(int code, const char *s)
{
    static const uint64_t none[4];

    result_error(INSTAR_OP_INFO, code, none, s, strlen(s));
}

static struct instar_info_result *res(struct rbuf *rb)
{
    return rbuf_at(rb, 0);
}

/* --- raw --- */

static __attribute__((noreturn)) void info_raw(void)
{
    struct rbuf rb;
    uint64_t size = gblk_size(DEV_IMAGE);

    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    memcpy(res(&rb)->format, "raw", 4);
    res(&rb)->flags = INSTAR_INFO_DIRTY_VALID; /* JSON shows "dirty-flag": false */
    /* QEMU counts whole sectors: the size is rounded up to 512. */
    res(&rb)->virtual_size =
        size > UINT64_MAX - 511 ? UINT64_MAX & ~511ull : (size + 511) & ~511ull;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

/* --- vpc: the generic fields, and the block size as cluster size --- */

static __attribute__((noreturn)) void info_vpc(uint32_t flags)
{
    uint32_t calc = (flags & INSTAR_INFO_VPC_SIZE_CHS)       ? VPC_SIZE_CHS
                    : (flags & INSTAR_INFO_VPC_SIZE_CURRENT) ? VPC_SIZE_CURRENT
                                                             : VPC_SIZE_AUTO;
    struct rbuf rb;
    uint64_t size;
    uint32_t cluster_size;

    gbs_vpc_describe(INSTAR_OP_INFO, DEV_IMAGE, calc, &size, &cluster_size);
    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    memcpy(res(&rb)->format, "vpc", 4);
    res(&rb)->flags = INSTAR_INFO_DIRTY_VALID; /* JSON shows "dirty-flag": false */
    res(&rb)->virtual_size = size;
    res(&rb)->cluster_size = cluster_size;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

/* --- qed: the generic fields and the backing file --- */

static __attribute__((noreturn)) void info_qed(void)
{
    static struct gbs_qed_desc d;
    struct rbuf rb;
    struct instar_str bf = {0, 0}, bfmt = {0, 0};

    gbs_qed_describe(INSTAR_OP_INFO, DEV_IMAGE, &d);
    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    if (d.has_backing) {
        bf = rbuf_str(&rb, d.backing, strlen(d.backing));
        if (d.backing_raw)
            bfmt = rbuf_str(&rb, "raw", 3);
    }
    if (rb.oom)
        fail(INSTAR_ERR_NOMEM);
    memcpy(res(&rb)->format, "qed", 4);
    /*
     * Not the need-check flag: qemu's open starts the need-check timer,
     * whose drain handler clears the flag in memory (the header write
     * fails on a read-only file) before bdrv_qed_get_info() reads it.
     */
    res(&rb)->flags = INSTAR_INFO_DIRTY_VALID;
    res(&rb)->virtual_size = d.size;
    res(&rb)->cluster_size = d.cluster_size;
    res(&rb)->backing_file = bf;
    res(&rb)->backing_fmt = bfmt;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

/* --- qcow (version 1): the generic fields, encryption and the backing file --- */

static __attribute__((noreturn)) void info_qcow(uint32_t flags)
{
    static struct gbs_qcow_desc d;
    struct rbuf rb;
    struct instar_str bf = {0, 0};

    /* info opens without I/O; a chain's or check's open has I/O: an AES key is needed. */
    gbs_qcow_describe(INSTAR_OP_INFO, DEV_IMAGE,
                      (flags & INSTAR_INFO_OPEN_CHECK) && !(flags & INSTAR_INFO_HAS_KEY), &d);
    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    if (d.has_backing)
        bf = rbuf_str(&rb, d.backing, strlen(d.backing));
    if (rb.oom)
        fail(INSTAR_ERR_NOMEM);
    memcpy(res(&rb)->format, "qcow", 5);
    res(&rb)->flags = INSTAR_INFO_DIRTY_VALID | (d.encrypted ? INSTAR_INFO_ENCRYPTED : 0);
    res(&rb)->virtual_size = d.size;
    res(&rb)->cluster_size = d.cluster_size;
    res(&rb)->backing_file = bf;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}
/* --- formats with only a virtual size: no bdrv_get_info, so no dirty flag --- */

static __attribute__((noreturn)) void info_plain(const char *fmt, uint64_t size, uint64_t warn_arg)
{
    struct rbuf rb;

    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    memcpy(res(&rb)->format, fmt, strlen(fmt) + 1);
    res(&rb)->virtual_size = size;
    res(&rb)->hdr.err_args[2] = warn_arg;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

static __attribute__((noreturn)) void info_bochs(void)
{
    uint64_t size;

    /* bdrv_apply_auto_read_only(): the driver has no write support. */
    if (boot->args.info.flags & INSTAR_INFO_OPEN_RDWR)
        fail(BOCHS_ERR_READ_ONLY);
    gbs_bochs_describe(INSTAR_OP_INFO, DEV_IMAGE, &size);
    info_plain("bochs", size, 0);
}

static __attribute__((noreturn)) void info_cloop(void)
{
    uint64_t size;

    if (boot->args.info.flags & INSTAR_INFO_OPEN_RDWR)
        fail(CLOOP_ERR_READ_ONLY);
    gbs_cloop_describe(INSTAR_OP_INFO, DEV_IMAGE, &size);
    info_plain("cloop", size, 0);
}

static __attribute__((noreturn)) void info_dmg(void)
{
    uint64_t size;
    uint32_t unknown_type;

    if (boot->args.info.flags & INSTAR_INFO_OPEN_RDWR)
        fail(DMG_ERR_READ_ONLY);
    gbs_dmg_describe(INSTAR_OP_INFO, DEV_IMAGE, &size, &unknown_type);
    info_plain("dmg", size, unknown_type);
}

/* --- parallels: the generic fields only (no bdrv_get_info, no format-specific block) --- */

static __attribute__((noreturn)) void info_parallels(uint32_t flags)
{
    struct rbuf rb;
    uint64_t size;

    gbs_parallels_describe(INSTAR_OP_INFO, DEV_IMAGE, flags, &size);
    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    memcpy(res(&rb)->format, "parallels", 10);
    res(&rb)->virtual_size = size;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

/* --- vhdx: the generic fields, and the block size as cluster size --- */

static __attribute__((noreturn)) void info_vhdx(uint32_t flags)
{
    struct rbuf rb;
    uint64_t size;
    uint32_t cluster_size;

    gbs_vhdx_describe(INSTAR_OP_INFO, DEV_IMAGE, flags & INSTAR_INFO_OPEN_RDWR,
                      flags & INSTAR_INFO_OPEN_CHECK, &size, &cluster_size);
    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    memcpy(res(&rb)->format, "vhdx", 5);
    res(&rb)->flags = INSTAR_INFO_DIRTY_VALID; /* JSON shows "dirty-flag": false */
    res(&rb)->virtual_size = size;
    res(&rb)->cluster_size = cluster_size;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

/* --- vdi: the generic fields, and the block size as cluster size --- */

static __attribute__((noreturn)) void info_vdi(void)
{
    struct rbuf rb;
    uint64_t size;
    uint32_t cluster_size;

    gbs_vdi_describe(INSTAR_OP_INFO, DEV_IMAGE, &size, &cluster_size);
    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    memcpy(res(&rb)->format, "vdi", 4);
    res(&rb)->flags = INSTAR_INFO_DIRTY_VALID; /* JSON shows "dirty-flag": false */
    res(&rb)->virtual_size = size;
    res(&rb)->cluster_size = cluster_size;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

/* --- vmdk: the generic fields, the parent, and ImageInfoSpecificVmdk --- */

static __attribute__((noreturn)) void info_vmdk(uint32_t flags)
{
    static struct gbs_vmdk_info v;
    struct instar_info_result *r;
    struct instar_str bf = {0, 0}, bfmt = {0, 0};
    struct rbuf rb;
    uint32_t i;

    gbs_vmdk_describe(INSTAR_OP_INFO, DEV_IMAGE, boot->ndevices - 1, flags & INSTAR_INFO_OPEN_RDWR,
                      flags & INSTAR_INFO_VMDK_PARTIAL, &v);
    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    if (v.need_files) {
        static struct instar_str names[INSTAR_VMDK_EXTENTS_MAX];

        _Static_assert(VMDK_MAX_EXTENTS <= INSTAR_VMDK_EXTENTS_MAX, "the names fit the result");
        for (i = 0; i < v.need_files; i++)
            names[i] = rbuf_str(&rb, v.names[i], strlen(v.names[i]));
        if (rb.oom)
            fail(INSTAR_ERR_NOMEM);
        r = res(&rb);
        memcpy(r->format, "vmdk", 5);
        r->flags = INSTAR_INFO_VMDK | INSTAR_INFO_VMDK_NEED_FILES;
        r->vmdk.nextents = v.need_files;
        memcpy(r->vmdk.names, names, sizeof(names));
        /* What the host locks each file as: a flat extent is data only. */
        for (i = 0; i < v.need_files; i++)
            r->vmdk.extents[i].flags = v.names_flat[i] ? INSTAR_VMDK_EXT_FLAT : 0;
        rbuf_send(&rb, INSTAR_OP_INFO, 0);
    }
    if (v.parent[0]) {
        bf = rbuf_str(&rb, v.parent, strlen(v.parent));
        bfmt = rbuf_str(&rb, "vmdk", 4);
    }
    if (rb.oom)
        fail(INSTAR_ERR_NOMEM);
    r = res(&rb);
    memcpy(r->format, "vmdk", 5);
    r->flags = INSTAR_INFO_DIRTY_VALID | INSTAR_INFO_VMDK;
    r->virtual_size = v.size;
    /* vmdk_get_info(): the first extent's grain size, when every extent is of its kind. */
    r->cluster_size = v.ext[0].flat ? 0 : v.ext[0].cluster_sectors * 512;
    /* Extents of different kinds: -ENOTSUP, and qemu shows neither cluster size nor dirty flag. */
    for (i = 1; i < v.nextents; i++)
        if (v.ext[i].flat != v.ext[0].flat || v.ext[i].compressed != v.ext[0].compressed ||
            (!v.ext[0].flat && v.ext[i].cluster_sectors != v.ext[0].cluster_sectors)) {
            r->cluster_size = 0;
            r->flags &= ~INSTAR_INFO_DIRTY_VALID;
        }
    r->backing_file = bf;
    r->backing_fmt = bfmt;
    r->vmdk.cid = v.cid;
    r->vmdk.parent_cid = v.parent_cid;
    memcpy(r->vmdk.create_type, v.create_type, sizeof(r->vmdk.create_type));
    r->vmdk.nextents = v.nextents;
    for (i = 0; i < v.nextents; i++) {
        struct instar_info_vmdk_extent *o = &r->vmdk.extents[i];

        o->virtual_size = v.ext[i].sectors * 512;
        o->cluster_size = v.ext[i].cluster_sectors * 512;
        o->flags = (v.ext[i].flat ? INSTAR_VMDK_EXT_FLAT : 0) |
                   (v.ext[i].compressed ? INSTAR_VMDK_EXT_COMPRESSED : 0);
        o->file = v.ext[i].file;
        memcpy(o->type, v.ext[i].type, sizeof(v.ext[i].type));
    }
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

/* --- qcow2 --- */

static struct instar_str put_str(struct rbuf *rb, const char *s)
{
    return s ? rbuf_str(rb, s, strlen(s)) : (struct instar_str){0, 0};
}

static void put_luks(struct rbuf *rb, const struct qcow2_luks_info *luks)
{
    struct instar_str ca = put_str(rb, luks->cipher_alg), cm = put_str(rb, luks->cipher_mode),
                      ia = put_str(rb, luks->ivgen_alg), ih = put_str(rb, luks->ivgen_hash_alg),
                      ha = put_str(rb, luks->hash_alg), uu = put_str(rb, luks->uuid);
    struct instar_info_luks *l = &res(rb)->luks;
    int i;

    l->cipher_alg = ca;
    l->cipher_mode = cm;
    l->ivgen_alg = ia;
    l->ivgen_hash_alg = ih;
    l->hash_alg = ha;
    l->uuid = uu;
    l->payload_offset = luks->payload_offset;
    l->master_key_iters = luks->master_key_iters;
    for (i = 0; i < INSTAR_LUKS_SLOTS; i++) {
        l->slots[i].active = luks->slots[i].active;
        l->slots[i].stripes = luks->slots[i].stripes;
        l->slots[i].iters = luks->slots[i].iters;
        l->slots[i].key_offset = luks->slots[i].key_offset;
    }
}

static void put_snapshots(struct rbuf *rb, const struct gq_image *img)
{
    uint32_t off, i;

    if (img->nsnapshots == 0)
        return;
    off = rbuf_array(rb, sizeof(struct instar_info_snapshot), img->nsnapshots);
    for (i = 0; i < img->nsnapshots && !rb->oom; i++) {
        const struct qcow2_snapshot *sn = &img->snapshots[i].sn;
        struct instar_str id = rbuf_str(rb, sn->id, sn->id_len);
        struct instar_str name = rbuf_str(rb, sn->name, sn->name_len);
        struct instar_info_snapshot *o;

        if (rb->oom)
            break;
        o = (struct instar_info_snapshot *)rbuf_at(rb, off) + i;
        o->id = id;
        o->name = name;
        o->vm_state_size = sn->vm_state_size;
        o->vm_clock_nsec = sn->vm_clock_nsec;
        o->icount = sn->icount;
        o->date_sec = sn->date_sec;
        o->date_nsec = sn->date_nsec;
    }
    if (rb->oom)
        fail(INSTAR_ERR_NOMEM);
    res(rb)->nsnapshots = img->nsnapshots;
    res(rb)->snapshots_off = off;
}

static void put_bitmaps(struct rbuf *rb, const struct gq_image *img)
{
    uint32_t off, i;

    if (img->nbitmaps == 0)
        return;
    off = rbuf_array(rb, sizeof(struct instar_info_bitmap), img->nbitmaps);
    for (i = 0; i < img->nbitmaps && !rb->oom; i++) {
        const struct qcow2_bitmap *b = &img->bitmaps[i];
        struct instar_str name = rbuf_str(rb, b->name, b->name_len);
        struct instar_info_bitmap *o;

        if (rb->oom)
            break;
        o = (struct instar_info_bitmap *)rbuf_at(rb, off) + i;
        o->name = name;
        o->granularity = 1ull << b->granularity_bits;
        o->flags = b->flags;
    }
    if (rb->oom)
        fail(INSTAR_ERR_NOMEM);
    res(rb)->nbitmaps = img->nbitmaps;
    res(rb)->bitmaps_off = off;
}

static __attribute__((noreturn)) void info_qcow2(const uint8_t *first, uint32_t flags)
{
    static struct gq_image img;
    const struct qcow2_header *h = &img.h;
    const struct qcow2_exts *x = &img.x;
    struct instar_str bf = {0, 0}, bfmt = {0, 0}, df = {0, 0};
    struct instar_info_result *r;
    struct rbuf rb;
    unsigned oflags = 0;

    if (flags & INSTAR_INFO_OPEN_CHECK)
        oflags |= QCOW2_OPEN_CHECK;
    if (flags & INSTAR_INFO_OPEN_RDWR)
        oflags |= QCOW2_OPEN_RDWR;
    gq_open_flags(&img, INSTAR_OP_INFO, oflags, first);

    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    put_snapshots(&rb, &img);
    put_bitmaps(&rb, &img);
    if (x->has_backing_file) {
        bf = rbuf_str(&rb, x->backing_file, x->backing_file_len);
        if (x->has_backing_fmt && x->backing_fmt_len > 0)
            bfmt = rbuf_str(&rb, x->backing_fmt, x->backing_fmt_len);
    }
    if (x->has_data_file)
        df = rbuf_str(&rb, x->data_file, x->data_file_len);
    if (x->has_crypto && h->crypt_method == QCOW2_CRYPT_LUKS)
        put_luks(&rb, &img.luks);
    if (rb.oom)
        fail(INSTAR_ERR_NOMEM);

    r = res(&rb);
    memcpy(r->format, "qcow2", 6);
    r->virtual_size = h->disk_size;
    r->cluster_size = h->cluster_size;
    r->flags = INSTAR_INFO_QCOW2 | INSTAR_INFO_DIRTY_VALID;
    if (h->incompatible_features & QCOW2_INCOMPAT_DIRTY)
        r->flags |= INSTAR_INFO_DIRTY;
    if (h->crypt_method != QCOW2_CRYPT_NONE)
        r->flags |= INSTAR_INFO_ENCRYPTED;
    r->backing_file = bf;
    r->backing_fmt = bfmt;
    r->qcow2_version = h->version;
    r->refcount_bits = h->refcount_bits;
    r->compression_type = h->compression_type;
    r->data_file = df;
    if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
        r->qcow2_flags |= INSTAR_QCOW2_HAS_DATA_FILE;
    if (h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW)
        r->qcow2_flags |= INSTAR_QCOW2_DATA_FILE_RAW;
    if (x->nb_bitmaps > 0)
        r->qcow2_flags |= INSTAR_QCOW2_HAS_BITMAPS;
    if (h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS)
        r->qcow2_flags |= INSTAR_QCOW2_LAZY_REFS;
    if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        r->qcow2_flags |= INSTAR_QCOW2_CORRUPT;
    if (h->incompatible_features & QCOW2_INCOMPAT_EXTL2)
        r->qcow2_flags |= INSTAR_QCOW2_EXTENDED_L2;
    if (h->crypt_method == QCOW2_CRYPT_AES)
        r->encrypt_format = INSTAR_ENCRYPT_AES;
    else if (h->crypt_method == QCOW2_CRYPT_LUKS && x->has_crypto)
        r->encrypt_format = INSTAR_ENCRYPT_LUKS;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

/* --- luks: the header's facts as the format-specific block --- */

static __attribute__((noreturn)) void info_luks(void)
{
    static struct qcow2_luks_info luks;
    struct rbuf rb;
    uint64_t size;

    gbs_luks_describe(INSTAR_OP_INFO, DEV_IMAGE, &luks, &size);
    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM);
    put_luks(&rb, &luks);
    if (rb.oom)
        fail(INSTAR_ERR_NOMEM);
    memcpy(res(&rb)->format, "luks", 5);
    res(&rb)->flags = INSTAR_INFO_LUKS | INSTAR_INFO_ENCRYPTED | INSTAR_INFO_DIRTY_VALID;
    res(&rb)->virtual_size = size;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

void plan_info(void)
{
    static uint8_t first[GOPEN_FIRST];
    char fmt[INSTAR_FMT_NAME_MAX + 1];
    const char *drv;

    memcpy(fmt, boot->args.info.format, INSTAR_FMT_NAME_MAX);
    fmt[INSTAR_FMT_NAME_MAX] = '\0';
    drv = gopen_probe(INSTAR_OP_INFO, fmt, boot->args.info.flags & INSTAR_INFO_NAME_DMG, first);

    if (!strcmp(drv, "qcow2"))
        info_qcow2(first, boot->args.info.flags);
    if (!strcmp(drv, "raw"))
        info_raw();
    if (!strcmp(drv, "vpc"))
        info_vpc(boot->args.info.flags);
    if (!strcmp(drv, "vdi"))
        info_vdi();
    if (!strcmp(drv, "vhdx"))
        info_vhdx(boot->args.info.flags);
    if (!strcmp(drv, "qed"))
        info_qed();
    if (!strcmp(drv, "qcow"))
        info_qcow(boot->args.info.flags);
    if (!strcmp(drv, "bochs"))
        info_bochs();
    if (!strcmp(drv, "cloop"))
        info_cloop();
    if (!strcmp(drv, "dmg"))
        info_dmg();
    if (!strcmp(drv, "parallels"))
        info_parallels(boot->args.info.flags);
    if (!strcmp(drv, "vmdk"))
        info_vmdk(boot->args.info.flags);
    if (!strcmp(drv, "luks"))
        info_luks();
    if (gopen_known_driver(drv))
        fail_str(INSTAR_ERR_UNSUPPORTED_FMT, drv);
    fail_str(INSTAR_ERR_UNKNOWN_FMT, drv);
}
