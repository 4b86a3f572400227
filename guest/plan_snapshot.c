/*
 * The snapshot planner (qemu-img snapshot -c, -d, -a): open device 0 as
 * qcow2 read-write the way qemu-img opens it (gq_open_flags), refuse what
 * instar does not handle, then run formats/qcow2/snapop.c over it.
 * Reads go straight to the host and see the planner's own writes.
 */
#include "bdrv.h"
#include "guest.h"
#include "open.h"
#include "qcow2/prealloc.h"
#include "qcow2/resize.h"
#include "qcow2/snapop.h"
#include "resize_io.h"

static int sp_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    return gdev_pread(GOPEN_DEV, off, buf, len) < 0 ? -QCOW2_SNAPOP_EIO : 0;
}

static int sp_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    (void)opaque;
    return gdev_pwrite(GOPEN_DEV, off, buf, len) < 0 ? -QCOW2_SNAPOP_EIO : 0;
}

static int sp_flush(void *opaque)
{
    (void)opaque;
    return gdev_flush(GOPEN_DEV) < 0 ? -QCOW2_SNAPOP_EIO : 0;
}

static void *sp_mem(void *opaque, void *p, size_t size)
{
    (void)opaque;
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

/* QCOW2_DISCARD_SNAPSHOT passes through: the host punches the clusters (its result ignored). */
static void sp_discard(void *opaque, uint64_t off, uint64_t len)
{
    (void)opaque;
    (void)gdev_discard(GOPEN_DEV, off, len);
}

const struct qcow2_snapop_io gsnap_io = {NULL, sp_pread, sp_pwrite, sp_flush, sp_mem, sp_discard};

int gsnap_image(const struct gq_image *img, struct qcow2_snapop_image *si)
{
    const struct qcow2_header *h = &img->h;
    uint32_t i;

    memset(si, 0, sizeof(*si));
    si->cluster_bits = h->cluster_bits;
    si->refcount_order = h->refcount_order;
    si->extended_l2 = (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
    si->disk_size = h->disk_size;
    si->l1_size = h->l1_size;
    si->l1_table_offset = h->l1_table_offset;
    si->refcount_table_offset = h->refcount_table_offset;
    si->refcount_table_clusters = h->refcount_table_clusters;
    si->snapshots_offset = h->snapshots_offset;
    si->nb_snapshots = img->nsnapshots;
    if (img->nsnapshots) {
        si->snapshots = calloc(img->nsnapshots, sizeof(*si->snapshots));
        if (!si->snapshots)
            return -INSTAR_ERR_NOMEM;
        si->snapshots_size =
            img->snapshots[img->nsnapshots - 1].sn.end_offset - h->snapshots_offset;
    }
    for (i = 0; i < img->nsnapshots; i++) {
        struct qcow2_snapop_entry *e = &si->snapshots[i];

        e->sn = img->snapshots[i].sn;
        if (e->sn.extra_data_size > QCOW2_SNAPSHOT_KNOWN_EXTRA) {
            size_t n = e->sn.extra_data_size - QCOW2_SNAPSHOT_KNOWN_EXTRA;
            uint8_t *u = malloc(n);

            if (!u)
                return -INSTAR_ERR_NOMEM;
            if (gdev_pread(GOPEN_DEV, e->sn.unknown_offset, u, n) < 0)
                return -QCOW2_SNAPOP_EIO;
            e->unknown = u;
        }
    }
    return 0;
}

static __attribute__((noreturn)) void fail(int code)
{
    result_error(INSTAR_OP_SNAPSHOT, code, NULL, NULL, 0);
}

/*
 * An image with persistent bitmaps: its node, opened read-write as
 * qemu-img opens it (the bitmaps loaded and marked in use, a dirty image
 * repaired after that: guest/drv_qcow2.c), and where the operation's
 * allocator stopped; done_code() closes it, storing the bitmaps again as
 * qcow2_close() does, whether the operation succeeded or not.
 */
static struct gbs *bm_node;
static uint64_t bm_free_index;

/* The result; resize_code: the resize's failure (QCOW2_RESIZE_ERR_*) at QCOW2_SNAPOP_STAGE_RESIZE.
 */
static __attribute__((noreturn)) void done_code(int ret, int stage, bool not_found, int resize_code)
{
    struct instar_snapshot_result *r;
    struct rbuf rb;

    if (bm_node) {
        /* The header as the operation left it, then the bitmaps stored from there. */
        int cret = gbs_qcow2_resized(bm_node, bm_free_index);

        if (cret == 0)
            cret = gbs_close(bm_node);
        if (cret < 0 && ret == 0) {
            ret = -QCOW2_SNAPOP_EIO;
            stage = QCOW2_SNAPOP_STAGE_NONE;
        }
        bm_node = NULL;
    }

    if (rbuf_init(&rb, sizeof(*r)) < 0)
        fail(INSTAR_ERR_NOMEM);
    r = rbuf_at(&rb, 0);
    r->hdr.err_args[0] = ret < 0 ? (uint64_t)-ret : 0;
    r->hdr.err_args[1] = (uint64_t)stage;
    r->hdr.err_args[2] = not_found;
    r->hdr.err_args[3] = (uint64_t)resize_code;
    rbuf_send(&rb, INSTAR_OP_SNAPSHOT, 0);
}

static __attribute__((noreturn)) void done(int ret, int stage, bool not_found)
{
    done_code(ret, stage, not_found, 0);
}

static uint64_t ld_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * qcow2_snapshot_goto() of a snapshot of another size: blk_truncate() to
 * the snapshot's size first (qcow2_co_truncate, exact, no preallocation:
 * formats/qcow2/resize.c), after the checks goto makes before any write.
 * si then describes the truncated image.  Ends the run on a failure.
 */
static void apply_resize(const struct qcow2_header *h, bool has_backing,
                         struct qcow2_snapop_image *si, uint32_t idx)
{
    const struct instar_snapshot_args *a = &boot->args.snapshot;
    const struct qcow2_snapshot *sn = &si->snapshots[idx].sn;
    uint64_t size = sn->disk_size, cur = h->disk_size & ~UINT64_C(511);
    uint32_t l1_after = h->l1_size;
    struct qcow2_resize_image ri;
    int errnum = 0, wcode = 0, werrno = 0, stage = 0, ret;
    uint8_t hdr[64];

    if (size > cur) {
        uint64_t n = qcow2_resize_l1_entries(
            size, h->cluster_bits, (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0);

        if (n > l1_after)
            l1_after = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    }
    ret = qcow2_snapop_apply_check(si, idx, l1_after, &stage);
    if (ret < 0)
        done(ret, stage, false);
    /*
     * A backing file longer than the image makes the growth zero the new
     * range (bdrv_co_truncate's BDRV_REQ_ZERO_WRITE): the host tells its
     * length, as it tells resize (INSTAR_RESIZE_ZERO_WRITE/_BACKING_HEAD).
     */
    /* The host opens a backing file with a name and sends its length: anything else is its bug. */
    if (size > cur && has_backing && !(a->flags & INSTAR_SNAPSHOT_BACKING))
        fail(INSTAR_ERR_BAD_ARGS);
    if (size % 512) /* qcow2_co_truncate() */
        done(-QCOW2_SNAPOP_EINVAL, QCOW2_SNAPOP_STAGE_SIZE_ALIGN, false);
    gresize_image(&ri, h);
    ri.prealloc = QCOW2_PREALLOC_OFF;
    if (has_backing && (a->flags & INSTAR_SNAPSHOT_BACKING)) {
        uint64_t cs = UINT64_C(1) << h->cluster_bits;

        ri.zero_write = size > h->disk_size && a->backing_len > h->disk_size;
        ri.backing_head = a->backing_len > (h->disk_size & ~(cs - 1));
    }
    /* The partial last cluster's data, for a copy-on-write of it (as resize). */
    gresize_read_head(INSTAR_OP_SNAPSHOT, &ri,
                      (a->flags & INSTAR_SNAPSHOT_CHAIN) ? &a->chain : NULL, size);
    ret = qcow2_resize(&ri, &gresize_io, size, &errnum, &wcode, &werrno);
    if (ret < 0)
        done_code(errnum ? -errnum : -QCOW2_SNAPOP_ENOTSUP, QCOW2_SNAPOP_STAGE_RESIZE, false, -ret);
    /* The header fields the truncation wrote. */
    if (gdev_pread(GOPEN_DEV, 0, hdr, sizeof(hdr)) < 0)
        done(-QCOW2_SNAPOP_EIO, 0, false);
    si->disk_size = ld_be(hdr + 24, 8);
    si->l1_size = (uint32_t)ld_be(hdr + 36, 4);
    si->l1_table_offset = ld_be(hdr + 40, 8);
    si->refcount_table_offset = ld_be(hdr + 48, 8);
    si->refcount_table_clusters = (uint32_t)ld_be(hdr + 56, 4);
}

void plan_snapshot(void)
{
    static uint8_t first[GOPEN_FIRST];
    static struct gq_image img;
    const struct qcow2_snapop_io *io = &gsnap_io;
    const struct instar_snapshot_args *a = &boot->args.snapshot;
    const struct qcow2_header *h = &img.h;
    struct qcow2_snapop_image si;
    size_t name_len;
    int64_t idx;
    int stage = 0, ret;

    name_len = strnlen(a->name, sizeof(a->name));
    if (name_len == sizeof(a->name) || a->action < INSTAR_SNAPSHOT_CREATE ||
        a->action > INSTAR_SNAPSHOT_APPLY)
        fail(INSTAR_ERR_BAD_ARGS);
    (void)gopen_probe(INSTAR_OP_SNAPSHOT, "qcow2", false, first);
    gq_open(&img, INSTAR_OP_SNAPSHOT, first);

    /* qcow2_do_open() refuses these read-write; instar leaves the rest to qemu. */
    if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        fail(QCOW2_SNAPOP_ERR_CORRUPT_RW);
    if (img.x.nb_bitmaps > 0) {
        bool data_file = (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;

        /* The node's external data file: device 1, which the host opened read-write. */
        if (data_file && (boot->ndevices < 2 || !(boot->devices[1].flags & INSTAR_DEV_WRITE)))
            fail(INSTAR_ERR_BAD_ARGS);
        /*
         * qcow2_do_open(): the bitmaps loaded and marked in use, then a
         * dirty image repaired; the image is read again as they left it.
         * The node writes metadata alone: an encrypted image is not
         * unlocked again (the host's earlier run checked its key).
         */
        bm_node = gresize_open_node(INSTAR_OP_SNAPSHOT, data_file);
        if (gdev_pread(GOPEN_DEV, 0, first, GOPEN_FIRST) < 0)
            done(-QCOW2_SNAPOP_EIO, 0, false);
        gq_open(&img, INSTAR_OP_SNAPSHOT, first);
    } else if ((h->incompatible_features & QCOW2_INCOMPAT_DIRTY) &&
               gq_repair_dirty(&img, INSTAR_OP_SNAPSHOT, 0) < 0) {
        /* A dirty image is repaired as the read-write open repairs it. */
        fail(INSTAR_ERR_REPAIR_DIRTY);
    }

    ret = gsnap_image(&img, &si);
    if (ret == -INSTAR_ERR_NOMEM)
        fail(INSTAR_ERR_NOMEM);
    if (ret < 0)
        done(ret, 0, false);
    si.free_cluster_index = &bm_free_index;

    /*
     * An external data file: qcow2's snapshot functions answer -ENOTSUP,
     * its list none; bdrv_snapshot_goto() refuses bitmaps before that.
     * The close stores the bitmaps in every case.
     */
    if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) {
        if (a->action == INSTAR_SNAPSHOT_DELETE)
            done(0, 0, true);
        if (a->action == INSTAR_SNAPSHOT_APPLY && bm_node)
            done(-QCOW2_SNAPOP_EBUSY, QCOW2_SNAPOP_STAGE_BITMAPS, false);
        done(-QCOW2_SNAPOP_ENOTSUP, 0, false);
    }
    switch (a->action) {
    case INSTAR_SNAPSHOT_CREATE:
        ret = qcow2_snapop_create(&si, io, (const uint8_t *)a->name, name_len, a->date_sec,
                                  a->date_nsec);
        done(ret, 0, false);
    case INSTAR_SNAPSHOT_DELETE:
        idx = qcow2_snapop_find(&si, (const uint8_t *)a->name, name_len, false);
        if (idx < 0)
            done(0, 0, true);
        ret = qcow2_snapop_delete(&si, io, (uint32_t)idx, &stage);
        done(ret, stage, false);
    default:
        /* bdrv_snapshot_goto() refuses any named bitmap before it looks for the snapshot. */
        if (bm_node)
            done(-QCOW2_SNAPOP_EBUSY, QCOW2_SNAPOP_STAGE_BITMAPS, false);
        idx = qcow2_snapop_find(&si, (const uint8_t *)a->name, name_len, true);
        if (idx < 0)
            done(-QCOW2_SNAPOP_ENOENT, 0, true);
        if (si.snapshots[idx].sn.disk_size != (h->disk_size & ~UINT64_C(511)))
            apply_resize(h, img.x.has_backing_file, &si, (uint32_t)idx);
        ret = qcow2_snapop_apply(&si, io, (uint32_t)idx, &stage);
        done(ret, stage, false);
    }
}
