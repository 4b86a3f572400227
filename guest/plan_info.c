/*
 * The guest's "info" planner: probe or take the -f format, open the image
 * the way qemu-img 7.2 opens it for info (read-only, no backing, no I/O on
 * data), and hand the host a struct instar_info_result to render.
 *
 * The checks run in qcow2_do_open()'s order, so the first failure is the
 * one qemu-img reports: header, extensions (with the LUKS header where the
 * extension sits), backing file name, snapshot table, then the persistent
 * bitmaps (directory, duplicates, tables), in directory order.
 */
#include "guest.h"
#include "instar/ovf.h"
#include "probe.h"
#include "qcow2/bitmap.h"
#include "qcow2/header.h"
#include "qcow2/luks.h"
#include "qcow2/snapshot.h"

#define DEV_IMAGE 0

/* Big scratch lives in .bss, not on the guest's small stack. */
/* The bitmaps-extension warning qemu prints while opening (header.h). */
static void warn_bitmaps(const struct qcow2_header *h, uint32_t count)
{
    if (count)
        result_warn(h->version == 2 ? INSTAR_WARN_BITMAPS_V2 : INSTAR_WARN_BITMAPS_V3,
                    count > 0xffff ? 0xffff : (uint16_t)count);
}

static struct qcow2_err_info ei;
static struct qcow2_luks_info luks;
static uint8_t snap_scratch[QCOW2_SNAPSHOT_SCRATCH];
static uint8_t table_buf[65536];

static __attribute__((noreturn)) void fail(int code, const struct qcow2_err_info *e)
{
    static const uint64_t none[4];

    if (e)
        result_error(INSTAR_OP_INFO, code, e->args, e->s, e->slen);
    result_error(INSTAR_OP_INFO, code, none, NULL, 0);
}

static __attribute__((noreturn)) void fail_str(int code, const char *s)
{
    static const uint64_t none[4];

    result_error(INSTAR_OP_INFO, code, none, s, strlen(s));
}

static int dev_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    return gblk_pread(DEV_IMAGE, off, buf, len);
}

static const struct qcow2_reader reader = {dev_pread, NULL};

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
        fail(INSTAR_ERR_NOMEM, NULL);
    memcpy(res(&rb)->format, "raw", 4);
    res(&rb)->flags = INSTAR_INFO_DIRTY_VALID; /* JSON shows "dirty-flag": false */
    /* QEMU counts whole sectors: the size is rounded up to 512. */
    res(&rb)->virtual_size =
        size > UINT64_MAX - 511 ? UINT64_MAX & ~511ull : (size + 511) & ~511ull;
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

/* --- qcow2 --- */

/* qcow2_crypto_hdr_read_func() + qcrypto_block_open(luks, NO_IO). */
static int on_crypto(void *opaque, uint64_t offset, uint64_t length, struct qcow2_err_info *e)
{
    static uint8_t hdr[QCOW2_LUKS_HDR_SIZE];
    size_t n = QCOW2_LUKS_HDR_SIZE;
    int ret, i;

    (void)opaque;
    if (length < n) {
        n = (size_t)length; /* the LUKS parser then fails as QEMU does */
    } else {
        if (!qcow2_read_ok(offset, QCOW2_LUKS_HDR_SIZE))
            return -QCOW2_ERR_CRYPTO_HDR_READ;
        ret = gblk_pread(DEV_IMAGE, offset, hdr, QCOW2_LUKS_HDR_SIZE);
        if (ret < 0)
            return ret;
    }
    ret = qcow2_luks_parse(hdr, n, &luks);
    if (ret < 0) {
        for (i = 0; i < 4; i++)
            e->args[i] = luks.err_args[i];
        e->s = (const uint8_t *)luks.err_str;
        e->slen = luks.err_str ? luks.err_str_len : 0;
    }
    return ret;
}

struct snap_ctx {
    struct rbuf *rb;
    uint32_t off;
};

static int on_snapshot(void *opaque, uint32_t i, const struct qcow2_snapshot *sn)
{
    struct snap_ctx *c = opaque;
    struct instar_str id = rbuf_str(c->rb, sn->id, sn->id_len);
    struct instar_str name = rbuf_str(c->rb, sn->name, sn->name_len);
    struct instar_info_snapshot *o;

    if (c->rb->oom)
        return -INSTAR_ERR_NOMEM;
    o = (struct instar_info_snapshot *)rbuf_at(c->rb, c->off) + i;
    o->id = id;
    o->name = name;
    o->vm_state_size = sn->vm_state_size;
    o->vm_clock_nsec = sn->vm_clock_nsec;
    o->icount = sn->icount;
    o->date_sec = sn->date_sec;
    o->date_nsec = sn->date_nsec;
    return 0;
}

struct bm_ctx {
    struct qcow2_bitmap *bm;
};

static int on_bitmap(void *opaque, uint32_t i, const struct qcow2_bitmap *bm)
{
    struct bm_ctx *c = opaque;

    c->bm[i] = *bm;
    return 0;
}

/* qcow2_load_dirty_bitmaps(), then the list for the result. */
static void load_bitmaps(struct rbuf *rb, const struct qcow2_header *h, const struct qcow2_exts *x)
{
    struct bm_ctx c;
    uint8_t *dir, *dup;
    uint32_t *idx, i, off;
    int ret;

    ret = qcow2_bitmap_dir_precheck(x);
    if (ret < 0)
        fail(-ret, NULL);
    dir = malloc((size_t)x->bitmap_dir_size);
    c.bm = calloc(x->nb_bitmaps, sizeof(*c.bm));
    idx = calloc(x->nb_bitmaps, sizeof(*idx));
    dup = calloc(x->nb_bitmaps, 1);
    if (!dir || !c.bm || !idx || !dup)
        fail(INSTAR_ERR_NOMEM, NULL);
    ret = gblk_pread(DEV_IMAGE, x->bitmap_dir_offset, dir, (size_t)x->bitmap_dir_size);
    if (ret < 0)
        fail(-ret, NULL);
    ret = qcow2_bitmap_dir_parse(dir, (size_t)x->bitmap_dir_size, x->nb_bitmaps, h, on_bitmap, &c,
                                 &ei);
    if (ret < 0)
        fail(-ret, &ei);

    /* The directory parsed, so it holds exactly nb_bitmaps entries. */
    qcow2_bitmap_mark_dups(c.bm, x->nb_bitmaps, idx, dup);
    for (i = 0; i < x->nb_bitmaps; i++) {
        const struct qcow2_bitmap *b = &c.bm[i];

        if (dup[i]) {
            /* An in-use duplicate is skipped; any other is an error. */
            if (b->flags & QCOW2_BITMAP_IN_USE)
                continue;
            memset(&ei, 0, sizeof(ei.args));
            ei.s = b->name;
            ei.slen = b->name_len;
            fail(QCOW2_ERR_BITMAP_EXISTS, &ei);
        }
        if (b->flags & QCOW2_BITMAP_IN_USE)
            continue;
        ret = qcow2_bitmap_load_check(b, h, &reader, table_buf, sizeof(table_buf), &ei);
        if (ret < 0)
            fail(-ret, &ei);
    }

    off = rbuf_array(rb, sizeof(struct instar_info_bitmap), x->nb_bitmaps);
    if (rb->oom)
        fail(INSTAR_ERR_NOMEM, NULL);
    res(rb)->nbitmaps = x->nb_bitmaps;
    res(rb)->bitmaps_off = off;
    for (i = 0; i < x->nb_bitmaps; i++) {
        struct instar_str name = rbuf_str(rb, c.bm[i].name, c.bm[i].name_len);
        struct instar_info_bitmap *o;

        if (rb->oom)
            fail(INSTAR_ERR_NOMEM, NULL);
        o = (struct instar_info_bitmap *)rbuf_at(rb, off) + i;
        o->name = name;
        o->granularity = 1ull << c.bm[i].granularity_bits;
        o->flags = c.bm[i].flags;
    }
    free(idx);
    free(dup);
    free(c.bm);
    free(dir);
}

static struct instar_str put_str(struct rbuf *rb, const char *s)
{
    return s ? rbuf_str(rb, s, strlen(s)) : (struct instar_str){0, 0};
}

static void put_luks(struct rbuf *rb)
{
    struct instar_str ca = put_str(rb, luks.cipher_alg), cm = put_str(rb, luks.cipher_mode),
                      ia = put_str(rb, luks.ivgen_alg), ih = put_str(rb, luks.ivgen_hash_alg),
                      ha = put_str(rb, luks.hash_alg), uu = put_str(rb, luks.uuid);
    struct instar_info_luks *l = &res(rb)->luks;
    int i;

    l->cipher_alg = ca;
    l->cipher_mode = cm;
    l->ivgen_alg = ia;
    l->ivgen_hash_alg = ih;
    l->hash_alg = ha;
    l->uuid = uu;
    l->payload_offset = luks.payload_offset;
    l->master_key_iters = luks.master_key_iters;
    for (i = 0; i < INSTAR_LUKS_SLOTS; i++) {
        l->slots[i].active = luks.slots[i].active;
        l->slots[i].stripes = luks.slots[i].stripes;
        l->slots[i].iters = luks.slots[i].iters;
        l->slots[i].key_offset = luks.slots[i].key_offset;
    }
}

static __attribute__((noreturn)) void info_qcow2(const uint8_t *first, size_t first_len)
{
    struct qcow2_header h;
    struct qcow2_exts x;
    struct snap_ctx sc;
    struct rbuf rb;
    uint8_t *buf;
    size_t len;
    uint64_t dev = gblk_size(DEV_IMAGE);
    uint32_t cbits = qcow2_be32(first, first_len, 20);
    int ret;

    /* The checks read the first cluster (extensions, backing name). */
    len = first_len;
    buf = (uint8_t *)first;
    if (cbits >= QCOW2_MIN_CLUSTER_BITS && cbits <= QCOW2_MAX_CLUSTER_BITS) {
        len = (size_t)1 << cbits;
        if (len > dev)
            len = (size_t)dev; /* past EOF reads as zeros anyway */
        if (len > first_len) {
            buf = malloc(len);
            if (!buf)
                fail(INSTAR_ERR_NOMEM, NULL);
            ret = gblk_pread(DEV_IMAGE, 0, buf, len);
            if (ret < 0)
                fail(-ret, NULL);
        } else {
            len = first_len;
        }
    }

    ret = qcow2_header_parse(buf, len, &h, &ei);
    warn_bitmaps(&h, h.warn_bitmaps);
    if (ret < 0)
        fail(-ret, &ei);
    ret = qcow2_ext_parse(buf, len, &h, on_crypto, NULL, &x, &ei);
    warn_bitmaps(&h, h.warn_bitmaps + x.warn_bitmaps);
    if (ret < 0)
        fail(-ret, &ei);

    if (rbuf_init(&rb, sizeof(struct instar_info_result)) < 0)
        fail(INSTAR_ERR_NOMEM, NULL);

    /* Snapshots: an array sized up front, filled in table order. */
    if (h.nb_snapshots > 0) {
        sc.rb = &rb;
        sc.off = rbuf_array(&rb, sizeof(struct instar_info_snapshot), h.nb_snapshots);
        if (rb.oom)
            fail(INSTAR_ERR_NOMEM, NULL);
        ret = qcow2_snapshots_parse(&h, &reader, snap_scratch, on_snapshot, &sc, &ei);
        if (ret < 0)
            fail(-ret, &ei);
        res(&rb)->nsnapshots = h.nb_snapshots;
        res(&rb)->snapshots_off = sc.off;
    }

    if (x.nb_bitmaps > 0)
        load_bitmaps(&rb, &h, &x);
    ret = qcow2_size_check(&h);
    if (ret < 0)
        fail(-ret, NULL);

    {
        struct instar_str bf = {0, 0}, bfmt = {0, 0}, df = {0, 0};
        struct instar_info_result *r;

        if (x.has_backing_file) {
            bf = rbuf_str(&rb, x.backing_file, x.backing_file_len);
            if (x.has_backing_fmt && x.backing_fmt_len > 0)
                bfmt = rbuf_str(&rb, x.backing_fmt, x.backing_fmt_len);
        }
        if (x.has_data_file)
            df = rbuf_str(&rb, x.data_file, x.data_file_len);
        if (x.has_crypto && h.crypt_method == QCOW2_CRYPT_LUKS)
            put_luks(&rb);
        if (rb.oom)
            fail(INSTAR_ERR_NOMEM, NULL);

        r = res(&rb);
        memcpy(r->format, "qcow2", 6);
        r->virtual_size = h.disk_size;
        r->cluster_size = h.cluster_size;
        r->flags = INSTAR_INFO_QCOW2 | INSTAR_INFO_DIRTY_VALID;
        if (h.incompatible_features & QCOW2_INCOMPAT_DIRTY)
            r->flags |= INSTAR_INFO_DIRTY;
        if (h.crypt_method != QCOW2_CRYPT_NONE)
            r->flags |= INSTAR_INFO_ENCRYPTED;
        r->backing_file = bf;
        r->backing_fmt = bfmt;
        r->qcow2_version = h.version;
        r->refcount_bits = h.refcount_bits;
        r->compression_type = h.compression_type;
        r->data_file = df;
        if (h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
            r->qcow2_flags |= INSTAR_QCOW2_HAS_DATA_FILE;
        if (h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW)
            r->qcow2_flags |= INSTAR_QCOW2_DATA_FILE_RAW;
        if (x.nb_bitmaps > 0)
            r->qcow2_flags |= INSTAR_QCOW2_HAS_BITMAPS;
        if (h.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS)
            r->qcow2_flags |= INSTAR_QCOW2_LAZY_REFS;
        if (h.incompatible_features & QCOW2_INCOMPAT_CORRUPT)
            r->qcow2_flags |= INSTAR_QCOW2_CORRUPT;
        if (h.incompatible_features & QCOW2_INCOMPAT_EXTL2)
            r->qcow2_flags |= INSTAR_QCOW2_EXTENDED_L2;
        if (h.crypt_method == QCOW2_CRYPT_AES)
            r->encrypt_format = INSTAR_ENCRYPT_AES;
        else if (h.crypt_method == QCOW2_CRYPT_LUKS && x.has_crypto)
            r->encrypt_format = INSTAR_ENCRYPT_LUKS;
    }
    rbuf_send(&rb, INSTAR_OP_INFO, 0);
}

/* Drivers qemu-img knows but instar does not open (yet). */
static bool known_driver(const char *f)
{
    static const char *const names[] = {"vmdk",      "qcow", "qed",   "vdi",   "vpc", "vhdx",
                                        "parallels", "dmg",  "bochs", "cloop", "luks"};
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(f, names[i]))
            return true;
    return false;
}

void plan_info(void)
{
    static uint8_t first[512];
    char fmt[INSTAR_FMT_NAME_MAX + 1];
    const char *drv;
    uint64_t dev = gblk_size(DEV_IMAGE);
    int ret;

    memcpy(fmt, boot->args.info.format, INSTAR_FMT_NAME_MAX);
    fmt[INSTAR_FMT_NAME_MAX] = '\0';

    ret = gblk_pread(DEV_IMAGE, 0, first, sizeof(first));
    if (ret < 0)
        fail(-ret, NULL);

    if (fmt[0] == '\0') {
        /* qemu's dmg probe looks only at the name; the host tells us. */
        drv = probe_format(first, sizeof(first), dev,
                           boot->args.info.flags & INSTAR_INFO_NAME_DMG ? "x.dmg" : NULL);
    } else {
        drv = fmt;
    }

    if (!strcmp(drv, "qcow2"))
        info_qcow2(first, sizeof(first));
    if (!strcmp(drv, "raw"))
        info_raw();
    if (known_driver(drv))
        fail_str(INSTAR_ERR_UNSUPPORTED_FMT, drv);
    fail_str(INSTAR_ERR_UNKNOWN_FMT, drv);
}
