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
#include "resize_io.h"
#include "qcow2/amend.h"
#include "qcow2/prealloc.h"
#include "qcow2/resize.h"

/* The largest size bdrv_co_truncate() accepts (BDRV_MAX_LENGTH). */
#define AMEND_MAX_LENGTH UINT64_C(0x7fffffffc0000000)

static __attribute__((noreturn)) void fail(int code, uint64_t errnum)
{
    uint64_t args[4] = {errnum, 0, 0, 0};

    result_error(INSTAR_OP_AMEND, code, args, NULL, 0);
}

static __attribute__((noreturn)) void done(int wcode, int werrno)
{
    gresize_send(INSTAR_OP_AMEND, wcode, werrno);
}

/* The end of an amend whose downgrade fails with code (0: none). */
static __attribute__((noreturn)) void finish(int code, uint64_t arg)
{
    if (code)
        fail(code, arg);
    done(0, 0);
}

void plan_amend(void)
{
    static uint8_t first[GOPEN_FIRST];
    static struct gq_image img;
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
        ret = qcow2_amend_upgrade(&u, buf, gresize_io.pwrite, NULL, &errnum);
        free(buf);
        if (ret < 0)
            fail(-ret, (uint64_t)errnum);
        version = 3;
    }
    if (a->flags & INSTAR_AMEND_LAZY) {
        ret = qcow2_amend_lazy(version, version == 3 ? h->compatible_features : 0,
                               (a->flags & INSTAR_AMEND_LAZY_ON) != 0, gresize_io.pwrite, NULL,
                               &errnum);
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
    gresize_image(&ri, h);
    ri.version = version;
    ri.prealloc = QCOW2_PREALLOC_OFF;
    ri.zero_write = (a->flags & INSTAR_AMEND_ZERO_WRITE) != 0;
    ri.backing_head = (a->flags & INSTAR_AMEND_BACKING_HEAD) != 0;
    ret = qcow2_resize(&ri, &gresize_io, a->size, &errnum, &wcode, &werrno);
    if (ret < 0)
        fail(-ret, (uint64_t)errnum);
    if (downgrade_err)
        finish(downgrade_err,
               h->incompatible_features & ~(QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_DIRTY));
    done(wcode, werrno);
}
