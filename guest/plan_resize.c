/*
 * The resize planner: open device 0 as qcow2 the way qemu-img opens it
 * (gq_open), refuse what instar does not resize, then run
 * formats/qcow2/resize.c over device 0 and truncate it as QEMU's file
 * driver would.
 *
 * Reads go straight to the host and see the planner's own writes, past
 * the length those writes left (gdev_* in guest/blk.c).
 */
#include "guest.h"
#include "open.h"
#include "qcow2/prealloc.h"
#include "qcow2/resize.h"
#include "resize_io.h"

/* Reads go straight to the host (guest/blk.c's written-device calls). */
static int rs_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    return gdev_pread(GOPEN_DEV, off, buf, len) < 0 ? -QCOW2_RESIZE_EIO : 0;
}

static int rs_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    (void)opaque;
    return gdev_pwrite(GOPEN_DEV, off, buf, len) < 0 ? -QCOW2_RESIZE_EIO : 0;
}

static int rs_flush(void *opaque)
{
    (void)opaque;
    return gdev_flush(GOPEN_DEV) < 0 ? -QCOW2_RESIZE_EIO : 0;
}

static int rs_truncate_mode(void *opaque, uint64_t size, int mode)
{
    uint32_t m = mode == QCOW2_PREALLOC_FALLOC ? INSTAR_TRUNC_FALLOC
                 : mode == QCOW2_PREALLOC_FULL ? INSTAR_TRUNC_FULL
                                               : INSTAR_TRUNC_OFF;
    int r;

    (void)opaque;
    r = gdev_truncate(GOPEN_DEV, size, m);
    if (r < 0)
        return r == INSTAR_HC_ERANGE ? -QCOW2_RESIZE_EFBIG : -QCOW2_RESIZE_EIO;
    return 0;
}

static int rs_truncate(void *opaque, uint64_t size)
{
    (void)opaque;
    return gdev_truncate(GOPEN_DEV, size, INSTAR_TRUNC_OFF) < 0 ? -QCOW2_RESIZE_EIO : 0;
}

/* A discard: a hole in the file, within its length (KEEP_SIZE). */
static void rs_discard(void *opaque, uint64_t off, uint64_t len)
{
    (void)opaque;
    (void)gdev_discard(GOPEN_DEV, off, len);
}

static void *rs_mem(void *opaque, void *p, size_t size)
{
    (void)opaque;
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

const struct qcow2_resize_io gresize_io = {NULL,        rs_pread, rs_pwrite,        rs_flush,
                                           rs_truncate, rs_mem,   rs_truncate_mode, rs_discard};

void gresize_image(struct qcow2_resize_image *ri, const struct qcow2_header *h)
{
    memset(ri, 0, sizeof(*ri));
    ri->version = h->version;
    ri->cluster_bits = h->cluster_bits;
    ri->refcount_order = h->refcount_order;
    ri->extended_l2 = (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
    ri->size = h->disk_size;
    ri->l1_size = h->l1_size;
    ri->l1_table_offset = h->l1_table_offset;
    ri->refcount_table_offset = h->refcount_table_offset;
    ri->refcount_table_clusters = h->refcount_table_clusters;
    ri->nb_snapshots = h->nb_snapshots;
    ri->file_size = gblk_size(GOPEN_DEV);
}

static __attribute__((noreturn)) void fail(int code, uint64_t errnum)
{
    uint64_t args[4] = {errnum, 0, 0, 0};

    result_error(INSTAR_OP_RESIZE, code, args, NULL, 0);
}

void gresize_send(uint32_t op, int wcode, int werrno)
{
    struct rbuf rb;

    if (rbuf_init(&rb, sizeof(struct instar_resize_result)) < 0)
        result_error(op, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    if (wcode) {
        /* The tail truncation failed: qemu-img warns and still succeeds. */
        struct instar_resize_result *r = rbuf_at(&rb, 0);

        r->hdr.err_args[0] = (uint64_t)wcode;
        r->hdr.err_args[1] = (uint64_t)werrno;
    }
    rbuf_send(&rb, op, 0);
}

void plan_resize(void)
{
    static uint8_t first[GOPEN_FIRST];
    static struct gq_image img;
    const struct instar_resize_args *a = &boot->args.resize;
    const struct qcow2_header *h = &img.h;
    struct qcow2_resize_image ri;
    int errnum = 0, wcode = 0, werrno = 0, ret;

    if (a->size % 512 || a->prealloc > QCOW2_PREALLOC_FULL)
        fail(INSTAR_ERR_BAD_ARGS, 0);
    (void)gopen_probe(INSTAR_OP_RESIZE, "qcow2", false, first);
    gq_open(&img, INSTAR_OP_RESIZE, first);

    /* qcow2_do_open() refuses these read-write. */
    if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        fail(QCOW2_RESIZE_ERR_CORRUPT_RW, 0);
    if (h->crypt_method != QCOW2_CRYPT_NONE)
        fail(QCOW2_RESIZE_ERR_NOTSUP_CRYPT, 0);
    if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
        fail(QCOW2_RESIZE_ERR_NOTSUP_DATA_FILE, 0);
    if ((h->incompatible_features & QCOW2_INCOMPAT_DIRTY) &&
        gq_repair_dirty(&img, INSTAR_OP_RESIZE, 0) < 0)
        fail(QCOW2_RESIZE_ERR_REPAIR_DIRTY, 0);
    if (img.x.nb_bitmaps > 0)
        fail(QCOW2_RESIZE_ERR_NOTSUP_BITMAPS, 0);
    if (a->size < h->disk_size && !(a->flags & INSTAR_RESIZE_SHRINK))
        fail(INSTAR_ERR_BAD_ARGS, 0);
    if (a->prealloc != QCOW2_PREALLOC_OFF && a->size <= (h->disk_size & ~UINT64_C(511)))
        fail(INSTAR_ERR_BAD_ARGS, 0);

    gresize_image(&ri, h);
    ri.prealloc = (int)a->prealloc;
    ri.zero_write = (a->flags & INSTAR_RESIZE_ZERO_WRITE) != 0;
    ri.backing_head = (a->flags & INSTAR_RESIZE_BACKING_HEAD) != 0;

    ret = qcow2_resize(&ri, &gresize_io, a->size, &errnum, &wcode, &werrno);
    if (ret < 0)
        fail(-ret, (uint64_t)errnum);
    gresize_send(INSTAR_OP_RESIZE, wcode, werrno);
}
