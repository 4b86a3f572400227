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
#include "qcow2/luks.h"
#include "vpc/vpc.h"

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
    if (!strcmp(drv, "luks"))
        info_luks();
    if (gopen_known_driver(drv))
        fail_str(INSTAR_ERR_UNSUPPORTED_FMT, drv);
    fail_str(INSTAR_ERR_UNKNOWN_FMT, drv);
}
