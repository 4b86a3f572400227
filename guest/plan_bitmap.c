/*
 * The bitmap planner (qemu-img bitmap): img_bitmap()'s actions in
 * command-line order on the persistent bitmap A.name of node 0, each as
 * the QMP command qemu-img calls runs it (block/monitor/bitmap-qmp-cmds.c,
 * block/dirty-bitmap.c, block/qcow2-bitmap.c), until one fails; then the
 * image is closed as blk_unref() closes it, which stores the bitmaps
 * (also after a failure: what the earlier actions did is kept).
 *
 * Node 0's read-write open (guest/drv_qcow2.c) loaded its bitmaps and
 * marked them in use; an inconsistent bitmap (in use before the open) is
 * in the list without bits and never stored (struct qcow2_bm.dirty
 * false).  --remove changes the image at once, as qemu does; everything
 * else changes the list, which the close stores
 * (formats/qcow2/bitmap_store.c, the one writer of qcow2 bitmaps).
 */
#include "bdrv.h"
#include "open.h"
#include "qcow2/bitmap_store.h"

static struct instar_bitmap_args A;

/* The -b image's bitmaps, loaded as a read-only open loads them (bits on demand). */
static struct qcow2_bm_list src_list;
static bool src_loaded;
static struct gbs *src_bs;

static __attribute__((noreturn)) void bad_args(void)
{
    result_error(INSTAR_OP_BITMAP, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
}

/*
 * blk_unref(): the close stores the bitmaps.  code 0: every action
 * succeeded; else action idx failed with code (errnum for its message).
 */
static __attribute__((noreturn)) void finish(struct gbs *bs, uint32_t idx, uint32_t code,
                                             int errnum)
{
    struct qcow2_bm_list *l = bs ? gbs_qcow2_bitmaps(bs) : NULL;
    uint32_t i, empty = 0;
    int r;

    /*
     * An empty image: qemu's store_bitmap() asks g_try_new0() for a table
     * of 0 entries, gets NULL and gives up before writing ("No memory").
     */
    for (i = 0; l && bs->total == 0 && i < l->n; i++)
        empty |= l->bm[i].dirty;
    r = bs && !empty ? gbs_close(bs) : 0;

    if (r < 0 && code == 0) {
        code = INSTAR_BITMAP_ESTORE;
        idx = A.nact;
        errnum = -r;
    }
    if (code == 0)
        gbs_send(INSTAR_OP_BITMAP, INSTAR_DATA_OK, 0, 0, empty, 0);
    gbs_send(INSTAR_OP_BITMAP, INSTAR_DATA_EBITMAP, (uint32_t)errnum, (uint64_t)idx << 8 | code,
             empty, 0);
}

/* bdrv_find_dirty_bitmap(): a name longer than any bitmap's matches none. */
static int64_t find(const struct qcow2_bm_list *l, const char *name, size_t len)
{
    if (!l || len == 0 || len > QCOW2_BM_NAME_MAX)
        return -1;
    return qcow2_bm_find(l, name, len);
}

/* bdrv_get_default_bitmap_granularity(): the cluster size, within 4 KiB..64 KiB. */
static uint32_t default_granularity_bits(const struct gq_image *img)
{
    uint32_t b = img->h.cluster_bits;

    return b < 12 ? 12 : b > 16 ? 16 : b;
}

/*
 * qmp_block_dirty_bitmap_add() with persistent=on: 0 or the code of its
 * first failing check, in qemu's order (qcow2_co_can_store_new_dirty_bitmap()
 * and check_constraints_on_bitmap()).
 */
static uint32_t do_add(struct qcow2_bm_list *l, const struct gq_image *img)
{
    uint32_t g, gbits = 0;
    int64_t r;

    if (A.name_len == 0)
        return INSTAR_BITMAP_EEMPTY_NAME;
    if (A.flags & INSTAR_BITMAP_GRANULARITY) {
        g = A.granularity;
        if (g < 512 || (g & (g - 1)))
            return INSTAR_BITMAP_EGRANULARITY;
        while (((uint32_t)1 << gbits) != g)
            gbits++;
    } else {
        gbits = default_granularity_bits(img);
    }
    if (find(l, A.name, A.name_len) >= 0)
        return INSTAR_BITMAP_EEXISTS;
    if (img->h.version < 3 || !l)
        return INSTAR_BITMAP_EV2;
    /* A name too long to be sent: only the size check comes before its own. */
    if (A.name_len > QCOW2_BM_NAME_MAX)
        return qcow2_bm_too_big(l, gbits) ? INSTAR_BITMAP_ETOO_BIG : INSTAR_BITMAP_ENAME_TOO_LONG;
    r = qcow2_bm_add(l, A.name, A.name_len, gbits, true, true);
    switch (r) {
    case -QCOW2_BM_ETOO_BIG:
        return INSTAR_BITMAP_ETOO_BIG;
    case -QCOW2_BM_ENAME:
        return INSTAR_BITMAP_ENAME_TOO_LONG;
    case -QCOW2_BM_ETOO_MANY:
        return INSTAR_BITMAP_ETOO_MANY;
    case -QCOW2_BM_EDIR_SIZE:
        return INSTAR_BITMAP_EDIR_FULL;
    case -QCOW2_ALLOC_ENOMEM:
        result_error(INSTAR_OP_BITMAP, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    }
    if (r < 0)
        bad_args();
    return 0;
}

/*
 * The merge source: a bitmap of the image itself or of the -b image.
 * *bits its serialised bits (NULL: inconsistent), *gbits its granularity,
 * *size the size of its image.  Returns 0, or the error code.
 */
static uint32_t merge_source(struct qcow2_bm_list *l, struct gbs *bs, uint32_t k,
                             const uint8_t **bits, uint32_t *gbits, uint64_t *size)
{
    const char *name;
    size_t len, room;
    int64_t j;

    if (A.src_off[k] == INSTAR_BITMAP_NO_NAME)
        return INSTAR_BITMAP_ESRC_NOT_FOUND;
    if (A.src_off[k] >= INSTAR_BITMAP_SRC_BYTES)
        bad_args();
    name = A.srcnames + A.src_off[k];
    room = (size_t)INSTAR_BITMAP_SRC_BYTES - A.src_off[k];
    len = strnlen(name, room);
    if (len == room)
        bad_args();
    if (!(A.flags & INSTAR_BITMAP_SOURCE)) {
        j = find(l, name, len);
        if (j < 0)
            return INSTAR_BITMAP_ESRC_NOT_FOUND;
        *bits = l->bm[j].dirty ? l->bm[j].bits : NULL;
        *gbits = l->bm[j].granularity_bits;
        *size = bs->total;
        return 0;
    }
    if (!src_loaded) {
        src_loaded = true;
        qcow2_bm_list_init(&src_list, src_bs->total, 0, gbs_bm_mem, NULL);
        if (src_bs->drv == &gbs_drv_qcow2) {
            const struct gq_image *si = src_bs->opaque;

            src_list.cluster_bits = si->h.cluster_bits;
            if (qcow2_bm_list_load(&src_list, si->bitmaps, si->nbitmaps) < 0)
                result_error(INSTAR_OP_BITMAP, INSTAR_ERR_NOMEM, NULL, NULL, 0);
        }
    }
    j = find(&src_list, name, len);
    if (j < 0)
        return INSTAR_BITMAP_ESRC_NOT_FOUND;
    *gbits = src_list.bm[j].granularity_bits;
    *size = src_bs->total;
    *bits = NULL;
    if (!(src_list.bm[j].flags & QCOW2_BITMAP_IN_USE)) {
        struct qcow2_reader rd = {gbs_bm_pread, src_bs};

        if (!src_list.bm[j].bits && qcow2_bm_load_bits(&src_list, (uint32_t)j, &rd) < 0)
            result_error(INSTAR_OP_BITMAP, INSTAR_ERR_IO, NULL, NULL, 0);
        *bits = src_list.bm[j].bits;
    }
    return 0;
}

void plan_bitmap(void)
{
    struct qcow2_bm_list *l;
    const struct gq_image *img;
    struct gbs *bs;
    uint32_t k;

    A = boot->args.bitmap;
    /* A name that fits is NUL-terminated; a longer one matches no bitmap and is not sent. */
    if (A.nact > INSTAR_BITMAP_ACT_MAX ||
        (A.name_len < INSTAR_BITMAP_NAME_MAX && A.name[A.name_len] != 0))
        bad_args();
    gbs_open_or_fail(INSTAR_OP_BITMAP, &A.g);
    bs = gbs_node(0);
    if (!bs || bs->drv != &gbs_drv_qcow2 || !bs->writable)
        bad_args();
    if (A.flags & INSTAR_BITMAP_SOURCE) {
        src_bs = gbs_node(A.source);
        if (!src_bs || src_bs == bs)
            bad_args();
    }
    img = bs->opaque;
    l = gbs_qcow2_bitmap_list(bs);
    /* The open loaded the bitmaps (a dirty image's before its repair); none: no memory. */
    if (!l && img->h.version >= 3)
        result_error(INSTAR_OP_BITMAP, INSTAR_ERR_NOMEM, NULL, NULL, 0);

    for (k = 0; k < A.nact; k++) {
        int64_t i = find(l, A.name, A.name_len);
        uint32_t code = 0;
        int ret;

        switch (A.act[k]) {
        case INSTAR_BITMAP_ADD:
            code = do_add(l, img);
            break;
        case INSTAR_BITMAP_REMOVE:
            if (i < 0) {
                code = INSTAR_BITMAP_ENOT_FOUND;
                break;
            }
            /* A stored bitmap leaves the image at once; a new one only the list. */
            if (l->bm[i].table_offset == 0) {
                if (qcow2_bm_remove(l, (uint32_t)i) < 0)
                    result_error(INSTAR_OP_BITMAP, INSTAR_ERR_NOMEM, NULL, NULL, 0);
                break;
            }
            if (qcow2_bm_remove(l, (uint32_t)i) < 0)
                result_error(INSTAR_OP_BITMAP, INSTAR_ERR_NOMEM, NULL, NULL, 0);
            ret = gbs_qcow2_store_bitmap_dir(bs);
            if (ret < 0)
                finish(bs, k, INSTAR_BITMAP_EREMOVE, ret < -4095 ? GBS_EIO : -ret);
            break;
        case INSTAR_BITMAP_CLEAR:
        case INSTAR_BITMAP_ENABLE:
        case INSTAR_BITMAP_DISABLE:
            if (i < 0) {
                code = INSTAR_BITMAP_ENOT_FOUND;
                break;
            }
            if (!l->bm[i].dirty) {
                code = INSTAR_BITMAP_EINCONSISTENT;
                break;
            }
            ret = A.act[k] == INSTAR_BITMAP_CLEAR
                      ? qcow2_bm_clear(l, (uint32_t)i)
                      : qcow2_bm_set_enabled(l, (uint32_t)i, A.act[k] == INSTAR_BITMAP_ENABLE);
            if (ret < 0)
                bad_args();
            break;
        case INSTAR_BITMAP_MERGE: {
            const uint8_t *bits = NULL;
            uint32_t gbits = 0;
            uint64_t size = 0;

            if (i < 0) {
                code = INSTAR_BITMAP_ENOT_FOUND;
                break;
            }
            code = merge_source(l, bs, k, &bits, &gbits, &size);
            if (code)
                break;
            if (!l->bm[i].dirty) {
                code = INSTAR_BITMAP_EINCONSISTENT;
                break;
            }
            if (!bits) {
                code = INSTAR_BITMAP_ESRC_INCONSISTENT;
                break;
            }
            if (size != bs->total) {
                code = INSTAR_BITMAP_ESIZES;
                break;
            }
            if (qcow2_bm_merge(l, (uint32_t)i, bits, gbits) < 0)
                bad_args();
            break;
        }
        default:
            bad_args();
        }
        if (code)
            finish(bs, k, code, 0);
    }
    finish(bs, 0, 0, 0);
}
