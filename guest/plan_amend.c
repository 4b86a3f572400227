/*
 * The amend planner: qcow2_amend_options() after qemu-img's read-write
 * open.  Device 0 is opened as qcow2 (gq_open, a dirty image repaired as
 * qcow2_do_open() does), then the lazy refcounts bit changes
 * (formats/qcow2/amend.c) and the image is truncated to the new size
 * (formats/qcow2/resize.c), in qemu's order.  The host has parsed the
 * options and refused what instar does not amend.
 */
#include "guest.h"
#include "open.h"
#include "qcow2/amend.h"
#include "qcow2/prealloc.h"
#include "qcow2/resize.h"

/* The largest size bdrv_co_truncate() accepts (BDRV_MAX_LENGTH). */
#define AMEND_MAX_LENGTH UINT64_C(0x7fffffffc0000000)

static int am_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    return gdev_pread(GOPEN_DEV, off, buf, len) < 0 ? -QCOW2_RESIZE_EIO : 0;
}

static int am_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    (void)opaque;
    return gdev_pwrite(GOPEN_DEV, off, buf, len) < 0 ? -QCOW2_RESIZE_EIO : 0;
}

static int am_flush(void *opaque)
{
    (void)opaque;
    return gdev_flush(GOPEN_DEV) < 0 ? -QCOW2_RESIZE_EIO : 0;
}

static int am_truncate(void *opaque, uint64_t size)
{
    (void)opaque;
    return gdev_truncate(GOPEN_DEV, size, INSTAR_TRUNC_OFF) < 0 ? -QCOW2_RESIZE_EIO : 0;
}

static void *am_mem(void *opaque, void *p, size_t size)
{
    (void)opaque;
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

static __attribute__((noreturn)) void fail(int code, uint64_t errnum)
{
    uint64_t args[4] = {errnum, 0, 0, 0};

    result_error(INSTAR_OP_AMEND, code, args, NULL, 0);
}

static __attribute__((noreturn)) void done(int wcode, int werrno)
{
    struct rbuf rb;

    if (rbuf_init(&rb, sizeof(struct instar_resize_result)) < 0)
        fail(INSTAR_ERR_NOMEM, 0);
    if (wcode) {
        /* The tail truncation failed: qemu-img warns and still succeeds. */
        struct instar_resize_result *r = rbuf_at(&rb, 0);

        r->hdr.err_args[0] = (uint64_t)wcode;
        r->hdr.err_args[1] = (uint64_t)werrno;
    }
    rbuf_send(&rb, INSTAR_OP_AMEND, 0);
}

/* The end of an amend whose downgrade fails with code (0: none). */
static __attribute__((noreturn)) void finish(int code, uint64_t arg)
{
    if (code)
        fail(code, arg);
    done(0, 0);
}

/* Clusters a shrink frees, discarded as qemu's resize discards them. */
static void am_discard(void *opaque, uint64_t off, uint64_t len)
{
    (void)opaque;
    (void)gdev_discard(GOPEN_DEV, off, len);
}

void plan_amend(void)
{
    static uint8_t first[GOPEN_FIRST];
    static struct gq_image img;
    static const struct qcow2_resize_io io = {NULL,        am_pread, am_pwrite, am_flush,
                                              am_truncate, am_mem,   NULL,      am_discard};
    const struct instar_amend_args *a = &boot->args.amend;
    const struct qcow2_header *h = &img.h;
    struct qcow2_resize_image ri;
    int errnum = 0, wcode = 0, werrno = 0, ret;
    uint32_t version;
    int downgrade_err = 0;

    (void)gopen_probe(INSTAR_OP_AMEND, "qcow2", false, first);
    gq_open(&img, INSTAR_OP_AMEND, first);

    /* qcow2_do_open() refuses these read-write. */
    if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        fail(QCOW2_RESIZE_ERR_CORRUPT_RW, 0);
    if (h->crypt_method != QCOW2_CRYPT_NONE)
        fail(QCOW2_RESIZE_ERR_NOTSUP_CRYPT, 0);
    if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
        fail(QCOW2_RESIZE_ERR_NOTSUP_DATA_FILE, 0);
    if ((h->incompatible_features & QCOW2_INCOMPAT_DIRTY) &&
        gq_repair_dirty(&img, INSTAR_OP_AMEND, 0) < 0)
        fail(QCOW2_RESIZE_ERR_REPAIR_DIRTY, 0);
    /* A read-write open marks them in use, and the close stores them again. */
    if (img.x.nb_bitmaps > 0)
        fail(QCOW2_AMEND_ERR_NOTSUP_BITMAPS, 0);
    if (a->flags & INSTAR_AMEND_OPEN_ONLY)
        done(0, 0);
    /* qcow2_change_refcount_order() comes before the other changes. */
    if (a->refcount_bits && a->refcount_bits != (1u << h->refcount_order))
        fail(QCOW2_AMEND_ERR_NOTSUP_REFCOUNT_BITS, 0);

    version = h->version;
    /*
     * qcow2_downgrade() comes last.  instar makes only its refusals: an
     * image it would downgrade is refused before anything is written.
     */
    /* Lazy refcounts need version 3: qemu fails before the header changes. */
    if ((a->flags & INSTAR_AMEND_DOWNGRADE) && (a->flags & INSTAR_AMEND_LAZY_ON) &&
        !(h->compatible_features & QCOW2_AMEND_COMPAT_LAZY))
        fail(QCOW2_AMEND_ERR_LAZY_V2, 0);
    if ((a->flags & INSTAR_AMEND_DOWNGRADE) && version == 3) {
        uint64_t final_size = (a->flags & INSTAR_AMEND_SIZE) ? a->size : h->disk_size;
        uint32_t i;

        downgrade_err = 0;
        if (h->refcount_order != 4)
            downgrade_err = QCOW2_AMEND_ERR_DOWNGRADE_REFCOUNT;
        for (i = 0; !downgrade_err && i < img.nsnapshots; i++)
            if (img.snapshots[i].sn.vm_state_size > UINT32_MAX ||
                img.snapshots[i].sn.disk_size != final_size)
                downgrade_err = QCOW2_AMEND_ERR_DOWNGRADE_SNAPSHOTS;
        /* The dirty bit is clear (repaired at the open); compression is handled by qemu. */
        if (!downgrade_err &&
            (h->incompatible_features & ~(QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_DIRTY)))
            downgrade_err = QCOW2_AMEND_ERR_DOWNGRADE_INCOMPAT;
        if (!downgrade_err)
            fail(QCOW2_AMEND_ERR_NOTSUP_DOWNGRADE, 0);
    }
    /* Upgrade first: the other changes may need version 3. */
    if ((a->flags & INSTAR_AMEND_UPGRADE) && version == 2) {
        static char bfile[INSTAR_NAME_MAX], bfmt[INSTAR_FMT_NAME_MAX];
        struct qcow2_amend_upgrade u;
        uint8_t *buf;
        uint32_t i;

        if (!qcow2_amend_known_exts(img.first, img.first_len, h->header_length) ||
            (img.x.has_backing_fmt && !img.x.has_backing_file) ||
            img.x.backing_file_len >= sizeof(bfile) || img.x.backing_fmt_len >= sizeof(bfmt))
            fail(QCOW2_AMEND_ERR_NOTSUP_UPGRADE, 0);
        /* qcow2_write_snapshots() would rewrite a table without the v3 extra data. */
        for (i = 0; i < img.nsnapshots; i++)
            if (img.snapshots[i].sn.extra_data_size < 16)
                fail(QCOW2_AMEND_ERR_NOTSUP_UPGRADE, 0);
        memset(&u, 0, sizeof(u));
        u.cluster_bits = h->cluster_bits;
        u.refcount_order = h->refcount_order;
        u.size = h->disk_size;
        u.l1_size = h->l1_size;
        u.l1_table_offset = h->l1_table_offset;
        u.refcount_table_offset = h->refcount_table_offset;
        u.refcount_table_clusters = h->refcount_table_clusters;
        u.nb_snapshots = h->nb_snapshots;
        u.snapshots_offset = h->snapshots_offset;
        if (img.x.has_backing_file) {
            memcpy(bfile, img.x.backing_file, img.x.backing_file_len);
            bfile[img.x.backing_file_len] = 0;
            u.backing_file = bfile;
        }
        if (img.x.has_backing_fmt) {
            memcpy(bfmt, img.x.backing_fmt, img.x.backing_fmt_len);
            bfmt[img.x.backing_fmt_len] = 0;
            u.backing_fmt = bfmt;
        }
        buf = malloc((size_t)1 << h->cluster_bits);
        if (!buf)
            fail(INSTAR_ERR_NOMEM, 0);
        ret = qcow2_amend_upgrade(&u, buf, am_pwrite, NULL, &errnum);
        free(buf);
        if (ret < 0)
            fail(-ret, (uint64_t)errnum);
        version = 3;
    }
    if (a->flags & INSTAR_AMEND_LAZY) {
        ret = qcow2_amend_lazy(version, version == 3 ? h->compatible_features : 0,
                               (a->flags & INSTAR_AMEND_LAZY_ON) != 0, am_pwrite, NULL, &errnum);
        if (ret < 0)
            fail(-ret, (uint64_t)errnum);
    }
    if (!(a->flags & INSTAR_AMEND_SIZE))
        finish(downgrade_err,
               h->incompatible_features & ~(QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_DIRTY));

    /* bdrv_co_truncate(), then qcow2_co_truncate()'s first check. */
    if (a->size > AMEND_MAX_LENGTH)
        fail(QCOW2_AMEND_ERR_SIZE_RANGE, 0);
    if (a->size % 512)
        fail(QCOW2_AMEND_ERR_SIZE_ALIGN, 0);
    memset(&ri, 0, sizeof(ri));
    ri.version = version;
    ri.cluster_bits = h->cluster_bits;
    ri.refcount_order = h->refcount_order;
    ri.extended_l2 = (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
    ri.size = h->disk_size;
    ri.l1_size = h->l1_size;
    ri.l1_table_offset = h->l1_table_offset;
    ri.refcount_table_offset = h->refcount_table_offset;
    ri.refcount_table_clusters = h->refcount_table_clusters;
    ri.nb_snapshots = h->nb_snapshots;
    ri.file_size = gblk_size(GOPEN_DEV);
    ri.prealloc = QCOW2_PREALLOC_OFF;
    ri.zero_write = (a->flags & INSTAR_AMEND_ZERO_WRITE) != 0;
    ri.backing_head = (a->flags & INSTAR_AMEND_BACKING_HEAD) != 0;
    ret = qcow2_resize(&ri, &io, a->size, &errnum, &wcode, &werrno);
    if (ret < 0)
        fail(-ret, (uint64_t)errnum);
    if (downgrade_err)
        finish(downgrade_err,
               h->incompatible_features & ~(QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_DIRTY));
    done(wcode, werrno);
}
