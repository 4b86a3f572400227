/*
 * Opening images the way qemu-img 7.2 does (see open.h).  The qcow2 part
 * follows qcow2_do_open(): header, extensions (the LUKS header is read
 * where its extension points), snapshot table, persistent bitmaps
 * (directory, duplicates, tables, in directory order), then the size
 * checks.  The first failure is the one qemu-img reports.
 */
#include "open.h"
#include "probe.h"

uint32_t gopen_dev;

static struct qcow2_err_info ei;
static uint8_t snap_scratch[QCOW2_SNAPSHOT_SCRATCH];
static uint8_t table_buf[65536];

void gopen_fail(uint32_t op, int code, const struct qcow2_err_info *e)
{
    static const uint64_t none[4];

    if (e)
        result_error(op, code, e->args, e->s, e->slen);
    result_error(op, code, none, NULL, 0);
}

static int dev_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    return gblk_pread(GOPEN_DEV, off, buf, len);
}

const struct qcow2_reader gopen_reader = {dev_pread, NULL};

const char *gopen_probe(uint32_t op, const char *fmt, bool name_dmg, uint8_t first[GOPEN_FIRST])
{
    int ret = gblk_pread(GOPEN_DEV, 0, first, GOPEN_FIRST);

    if (ret < 0)
        gopen_fail(op, -ret, NULL);
    if (fmt[0] != '\0')
        return fmt;
    /* qemu's dmg probe looks only at the name; the host tells us. */
    return probe_format(first, GOPEN_FIRST, gblk_size(GOPEN_DEV), name_dmg ? "x.dmg" : NULL);
}

bool gopen_known_driver(const char *drv)
{
    static const char *const names[] = {"vmdk",      "qcow", "qed",   "vdi",   "vpc", "vhdx",
                                        "parallels", "dmg",  "bochs", "cloop", "luks"};
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(drv, names[i]))
            return true;
    return false;
}

/* The bitmaps-extension warning qemu prints while opening (header.h). */
static void warn_bitmaps(struct gq_image *img, uint32_t count)
{
    img->warn_bitmaps = count;
    if (count)
        result_warn(img->h.version == 2 ? INSTAR_WARN_BITMAPS_V2 : INSTAR_WARN_BITMAPS_V3,
                    count > 0xffff ? 0xffff : (uint16_t)count);
}

/* qcow2_crypto_hdr_read_func() + qcrypto_block_open(luks, NO_IO). */
static int on_crypto(void *opaque, uint64_t offset, uint64_t length, struct qcow2_err_info *e)
{
    static uint8_t hdr[QCOW2_LUKS_HDR_SIZE];
    struct gq_image *img = opaque;
    size_t n = QCOW2_LUKS_HDR_SIZE;
    int ret, i;

    if (length < n) {
        n = (size_t)length; /* the LUKS parser then fails as QEMU does */
    } else {
        if (!qcow2_read_ok(offset, QCOW2_LUKS_HDR_SIZE))
            return -QCOW2_ERR_CRYPTO_HDR_READ;
        ret = gblk_pread(GOPEN_DEV, offset, hdr, QCOW2_LUKS_HDR_SIZE);
        if (ret < 0)
            return ret;
    }
    ret = qcow2_luks_parse(hdr, n, &img->luks);
    if (ret < 0) {
        for (i = 0; i < 4; i++)
            e->args[i] = img->luks.err_args[i];
        e->s = (const uint8_t *)img->luks.err_str;
        e->slen = img->luks.err_str ? img->luks.err_str_len : 0;
        return ret;
    }
    img->has_luks = true;
    img->luks_off = offset;
    img->luks_len = length;
    memcpy(img->luks_hdr, hdr, QCOW2_LUKS_HDR_SIZE);
    return 0;
}

static char *copy_str(const uint8_t *s, size_t len)
{
    char *p = malloc(len + 1);

    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

static int on_snapshot(void *opaque, uint32_t i, const struct qcow2_snapshot *sn)
{
    struct gq_snapshot *o = (struct gq_snapshot *)opaque + i;

    o->sn = *sn;
    o->id = copy_str(sn->id, sn->id_len);
    o->name = copy_str(sn->name, sn->name_len);
    if (!o->id || !o->name)
        return -INSTAR_ERR_NOMEM;
    o->sn.id = (const uint8_t *)o->id;
    o->sn.name = (const uint8_t *)o->name;
    return 0;
}

static int on_bitmap(void *opaque, uint32_t i, const struct qcow2_bitmap *bm)
{
    struct qcow2_bitmap *out = opaque;

    out[i] = *bm;
    return 0;
}

/* qcow2_load_dirty_bitmaps(): directory, duplicates, each table. */
static void load_bitmaps(struct gq_image *img, uint32_t op)
{
    const struct qcow2_exts *x = &img->x;
    uint8_t *dup;
    uint32_t *idx, i;
    int ret;

    ret = qcow2_bitmap_dir_precheck(x);
    if (ret < 0)
        gopen_fail(op, -ret, NULL);
    img->bitmap_dir = malloc((size_t)x->bitmap_dir_size);
    img->bitmaps = calloc(x->nb_bitmaps, sizeof(*img->bitmaps));
    idx = calloc(x->nb_bitmaps, sizeof(*idx));
    dup = calloc(x->nb_bitmaps, 1);
    if (!img->bitmap_dir || !img->bitmaps || !idx || !dup)
        gopen_fail(op, INSTAR_ERR_NOMEM, NULL);
    ret = gblk_pread(GOPEN_DEV, x->bitmap_dir_offset, img->bitmap_dir, (size_t)x->bitmap_dir_size);
    if (ret < 0)
        gopen_fail(op, -ret, NULL);
    ret = qcow2_bitmap_dir_parse(img->bitmap_dir, (size_t)x->bitmap_dir_size, x->nb_bitmaps,
                                 &img->h, on_bitmap, img->bitmaps, &ei);
    if (ret < 0)
        gopen_fail(op, -ret, &ei);

    /* The directory parsed, so it holds exactly nb_bitmaps entries. */
    qcow2_bitmap_mark_dups(img->bitmaps, x->nb_bitmaps, idx, dup);
    for (i = 0; i < x->nb_bitmaps; i++) {
        const struct qcow2_bitmap *b = &img->bitmaps[i];

        if (dup[i]) {
            /* An in-use duplicate is skipped; any other is an error. */
            if (b->flags & QCOW2_BITMAP_IN_USE)
                continue;
            memset(&ei, 0, sizeof(ei.args));
            ei.s = b->name;
            ei.slen = b->name_len;
            gopen_fail(op, QCOW2_ERR_BITMAP_EXISTS, &ei);
        }
        if (b->flags & QCOW2_BITMAP_IN_USE)
            continue;
        ret = qcow2_bitmap_load_check(b, &img->h, &gopen_reader, table_buf, sizeof(table_buf), &ei);
        if (ret < 0)
            gopen_fail(op, -ret, &ei);
    }
    img->nbitmaps = x->nb_bitmaps;
    free(idx);
    free(dup);
}

void gq_open(struct gq_image *img, uint32_t op, const uint8_t first[GOPEN_FIRST])
{
    gq_open_flags(img, op, 0, first);
}

void gq_open_flags(struct gq_image *img, uint32_t op, unsigned flags,
                   const uint8_t first[GOPEN_FIRST])
{
    uint64_t dev = gblk_size(GOPEN_DEV);
    uint32_t cbits = qcow2_be32(first, GOPEN_FIRST, 20);
    size_t len = GOPEN_FIRST;
    int ret;

    memset(img, 0, sizeof(*img));
    img->file_size = dev;

    /* The checks read the first cluster (extensions, backing name). */
    if (cbits >= QCOW2_MIN_CLUSTER_BITS && cbits <= QCOW2_MAX_CLUSTER_BITS) {
        len = (size_t)1 << cbits;
        if (len > dev)
            len = (size_t)dev; /* past EOF reads as zeros anyway */
        if (len < GOPEN_FIRST)
            len = GOPEN_FIRST;
    }
    img->first = malloc(len);
    if (!img->first)
        gopen_fail(op, INSTAR_ERR_NOMEM, NULL);
    memcpy(img->first, first, GOPEN_FIRST);
    if (len > GOPEN_FIRST) {
        ret = gblk_pread(GOPEN_DEV, 0, img->first, len);
        if (ret < 0)
            gopen_fail(op, -ret, NULL);
    }
    img->first_len = len;

    ret = qcow2_header_parse_flags(img->first, len, flags, &img->h, &ei);
    warn_bitmaps(img, img->h.warn_bitmaps);
    if (ret < 0)
        gopen_fail(op, -ret, &ei);
    ret = qcow2_ext_parse(img->first, len, &img->h, on_crypto, img, &img->x, &ei);
    warn_bitmaps(img, img->h.warn_bitmaps + img->x.warn_bitmaps);
    if (ret < 0)
        gopen_fail(op, -ret, &ei);

    /* qcow2_do_open skips the snapshot table in check mode. */
    if (img->h.nb_snapshots > 0 && !(flags & QCOW2_OPEN_CHECK)) {
        img->snapshots = calloc(img->h.nb_snapshots, sizeof(*img->snapshots));
        if (!img->snapshots)
            gopen_fail(op, INSTAR_ERR_NOMEM, NULL);
        ret = qcow2_snapshots_parse(&img->h, &gopen_reader, snap_scratch, on_snapshot,
                                    img->snapshots, &ei);
        if (ret < 0)
            gopen_fail(op, -ret, &ei);
        img->nsnapshots = img->h.nb_snapshots;
    }

    if (img->x.nb_bitmaps > 0)
        load_bitmaps(img, op);
    ret = qcow2_size_check(&img->h);
    if (ret < 0)
        gopen_fail(op, -ret, NULL);
}
