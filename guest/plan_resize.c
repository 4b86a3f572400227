/*
 * The resize planner: open device 0 as qcow2 the way qemu-img opens it
 * (gq_open), refuse what instar does not resize, then run
 * formats/qcow2/resize.c over device 0 and truncate it as QEMU's file
 * driver would.
 *
 * Reads go straight to the host and see the planner's own writes, past
 * the length those writes left (gdev_* in guest/blk.c).
 */
#include "bdrv.h"
#include "guest.h"
#include "open.h"
#include "qcow2/bitmap_store.h"
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

/* The external data file: device 1 (the host opened it read-write). */
#define RS_DATA_DEV 1

static int rs_data_truncate(void *opaque, uint64_t size, int mode)
{
    uint32_t m = mode == QCOW2_PREALLOC_FALLOC ? INSTAR_TRUNC_FALLOC
                 : mode == QCOW2_PREALLOC_FULL ? INSTAR_TRUNC_FULL
                                               : INSTAR_TRUNC_OFF;
    int r;

    (void)opaque;
    r = gdev_truncate(RS_DATA_DEV, size, m);
    if (r < 0)
        return r == INSTAR_HC_ERANGE ? -QCOW2_RESIZE_EFBIG : -QCOW2_RESIZE_EIO;
    return 0;
}

static int rs_data_length(void *opaque, uint64_t *len)
{
    (void)opaque;
    *len = gdev_length(RS_DATA_DEV);
    return 0;
}

static int rs_data_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    (void)opaque;
    return gdev_pwrite(RS_DATA_DEV, off, buf, len) < 0 ? -QCOW2_RESIZE_EIO : 0;
}

const struct qcow2_resize_io gresize_io = {
    NULL,       rs_pread, rs_pwrite, rs_flush, rs_truncate, rs_mem, rs_truncate_mode,
    rs_discard, NULL,     NULL,      NULL};

const struct qcow2_resize_io gresize_io_data = {
    NULL,          rs_pread,         rs_pwrite,  rs_flush,         rs_truncate,
    rs_mem,        rs_truncate_mode, rs_discard, rs_data_truncate, rs_data_length,
    rs_data_pwrite};

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
    ri->file_size = gdev_length(GOPEN_DEV); /* after a repair, the length it left */
    ri->data_file = (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;
    ri->data_file_raw = ri->data_file && (h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW);
    ri->encrypted = h->crypt_method != QCOW2_CRYPT_NONE;
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

struct gbs *gresize_open_node(uint32_t op, bool data_file)
{
    struct instar_graph g;
    uint32_t failed;
    int ret;

    memset(&g, 0, sizeof(g));
    g.nnodes = 1;
    g.nodes[0].driver = INSTAR_DRV_QCOW2;
    g.nodes[0].file = GOPEN_DEV;
    g.nodes[0].data = data_file ? RS_DATA_DEV : INSTAR_NO_NODE;
    g.nodes[0].backing = INSTAR_NO_NODE;
    /* Its metadata alone: an encrypted image's key was checked by the host's earlier run. */
    ret = gbs_open_graph_meta(&g, &failed);
    if (ret < 0)
        result_error(op, -ret, NULL, NULL, 0);
    return gbs_node(0);
}

int gresize_bad_bitmap(struct gbs *bs, char *name, size_t *len)
{
    struct qcow2_bm_list *l = gbs_qcow2_bitmaps(bs);

    /* In use at open: loaded without bits and never stored (inconsistent). */
    for (uint32_t i = 0; l && i < l->n; i++)
        if (!l->bm[i].bits && !l->bm[i].dirty) {
            *len = l->bm[i].name_len;
            memcpy(name, l->bm[i].name, *len);
            return 1;
        }
    return 0;
}

/*
 * An image with persistent bitmaps, as qemu-img resize runs over it:
 * the read-write open loads them and marks them in use (the node's
 * open, guest/drv_qcow2.c), qcow2_truncate_bitmaps_check() refuses an
 * inconsistent one, the resize runs over the file, the bitmaps follow
 * the new size in memory, and the close stores them all anew (also
 * after a failure, as qemu-img's blk_unref() does).  Every write of the
 * resize comes after the bitmaps are in use, so a crash leaves bitmaps
 * qemu reads as inconsistent, never ones of the wrong size.  open_only:
 * the open and the close alone (INSTAR_RESIZE_OPEN_ONLY; only
 * ri->data_file used).  bs: the node when a dirty image's open already
 * made it (loaded the bitmaps, then repaired the image), else NULL.
 */
static __attribute__((noreturn)) void resize_with_bitmaps(const struct qcow2_resize_image *ri,
                                                          uint64_t size, bool open_only,
                                                          struct gbs *bs)
{
    static char name[QCOW2_BM_NAME_MAX + 1];
    struct qcow2_resize_image r;
    uint64_t free_index = 0;
    int errnum = 0, wcode = 0, werrno = 0, ret, cret;
    size_t n;

    if (!bs)
        bs = gresize_open_node(INSTAR_OP_RESIZE, ri->data_file);
    if (open_only) {
        if (gbs_close(bs) < 0)
            fail(QCOW2_RESIZE_ERR_STORE_BITMAPS, GBS_EIO);
        gresize_send(INSTAR_OP_RESIZE, 0, 0);
    }
    if (gresize_bad_bitmap(bs, name, &n)) {
        (void)gbs_close(bs);
        result_error(INSTAR_OP_RESIZE, QCOW2_RESIZE_ERR_BITMAP_INCONSISTENT, NULL, name, n);
    }
    r = *ri;
    r.free_cluster_index = &free_index;
    ret = qcow2_resize(&r, r.data_file ? &gresize_io_data : &gresize_io, size, &errnum, &wcode,
                       &werrno);
    /* The header is where the resize left it, whether it ended well or not. */
    cret = gbs_qcow2_resized(bs, free_index);
    if (cret == 0)
        cret = gbs_close(bs);
    if (ret < 0)
        fail(-ret, (uint64_t)errnum);
    if (cret < 0)
        fail(QCOW2_RESIZE_ERR_STORE_BITMAPS, (uint64_t)-cret);
    gresize_send(INSTAR_OP_RESIZE, wcode, werrno);
}

/*
 * After the repair of a dirty image the reads see the repaired file
 * (guest/blk.c reads a written device directly), as QEMU's copy-on-write,
 * which comes after its repair, does; so do the reads after an amend's
 * earlier changes.
 */
/* struct qcow2_resize_image's encrypt: the cipher of the qcow2 node opaque. */
static int gresize_encrypt(void *opaque, uint64_t host, uint64_t guest, uint8_t *buf, size_t len)
{
    return gbs_qcow2_encrypt(opaque, host, guest, buf, len) < 0 ? -GBS_EIO : 0;
}

/* A chain as the host sends it: node 0 the image on device 0 (and 1 with a data file). */
static bool chain_ok(const struct instar_graph *g, bool data_file)
{
    return g->nnodes > 0 && g->nnodes <= INSTAR_NODE_MAX && !g->snapshot &&
           g->nodes[0].driver == INSTAR_DRV_QCOW2 && g->nodes[0].file == GOPEN_DEV &&
           g->nodes[0].data == (data_file ? RS_DATA_DEV : INSTAR_NO_NODE);
}

/*
 * The head cluster's guest data read through bs (node 0, open over the
 * backing chain): [0, in) as the image reads it, then the rest of the
 * cluster as perform_cow() reads it past the end (head_tail; without it
 * when that read fails).  Nothing for an aligned end or a shrink, nothing
 * on a failed read (the cases that need it are then refused).
 */
static void read_head_node(uint32_t op, struct qcow2_resize_image *ri, struct gbs *bs,
                           uint64_t new_size)
{
    uint64_t cs = UINT64_C(1) << ri->cluster_bits, in = ri->size & ~UINT64_C(511) & (cs - 1);
    uint64_t cstart = (ri->size & ~UINT64_C(511)) - in;
    uint8_t *buf;

    if (in == 0 || new_size <= ri->size)
        return;
    buf = malloc(cs);
    if (!buf)
        result_error(op, INSTAR_ERR_NOMEM, NULL, NULL, 0);
    if (gbs_pread(bs, cstart, buf, in) < 0) {
        free(buf);
        return;
    }
    ri->head_data = buf;
    ri->head_len = in;
    ri->head_tail = gbs_pread_cow(bs, cstart + in, buf + in, cs - in) == 0;
}

void gresize_read_head(uint32_t op, struct qcow2_resize_image *ri, const struct instar_graph *chain,
                       uint64_t new_size)
{
    static struct instar_graph g;
    uint64_t cs = UINT64_C(1) << ri->cluster_bits, in = ri->size & ~UINT64_C(511) & (cs - 1);
    uint32_t failed;

    if (!chain || (in == 0 && !ri->encrypted) || new_size <= ri->size)
        return;
    g = *chain;
    if (!chain_ok(&g, ri->data_file))
        result_error(op, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    /* qemu-img opened the chain before the resize: a failure fails the same open. */
    if (gbs_open_graph_ro(&g, &failed) < 0)
        return;
    /* The key unlocked node 0: the resize's data writes go through its cipher. */
    if (ri->encrypted && gbs_qcow2_encrypted(gbs_node(0))) {
        ri->encrypt = gresize_encrypt;
        ri->encrypt_opaque = gbs_node(0);
    }
    read_head_node(op, ri, gbs_node(0), new_size);
}

/* INSTAR_RESIZE_QED: the open, bdrv_qed_co_truncate() and the close. */
static __attribute__((noreturn)) void resize_qed(const struct instar_resize_args *a)
{
    static const int codes[] = {0, QCOW2_RESIZE_ERR_QED_PREALLOC, QCOW2_RESIZE_ERR_QED_SIZE,
                                QCOW2_RESIZE_ERR_QED_SHRINK, QCOW2_RESIZE_ERR_UPDATE_SIZE};
    struct instar_graph g;
    struct gbs *bs;
    int ret, cret;

    memset(&g, 0, sizeof(g));
    g.nnodes = 1;
    g.nodes[0].driver = INSTAR_DRV_QED;
    g.nodes[0].file = GOPEN_DEV;
    g.nodes[0].data = INSTAR_NO_NODE;
    g.nodes[0].backing = INSTAR_NO_NODE;
    gbs_open_or_fail(INSTAR_OP_RESIZE, &g);
    bs = gbs_node(0);
    /* bdrv_co_truncate(): qed's truncate takes no BDRV_REQ_ZERO_WRITE. */
    if (a->flags & INSTAR_RESIZE_ZERO_WRITE) {
        (void)gbs_close(bs);
        fail(QCOW2_RESIZE_ERR_QED_FLAGS, 0);
    }
    ret = gbs_qed_truncate(bs, a->size, a->prealloc);
    cret = gbs_close(bs);
    if (ret < 0)
        fail(codes[-ret], ret == -GBS_QED_TRUNC_EIO ? GBS_EIO : 0);
    if (cret < 0)
        fail(QCOW2_RESIZE_ERR_UPDATE_SIZE, GBS_EIO);
    gresize_send(INSTAR_OP_RESIZE, 0, 0);
}

void plan_resize(void)
{
    static uint8_t first[GOPEN_FIRST];
    static struct gq_image img;
    const struct instar_resize_args *a = &boot->args.resize;
    const struct qcow2_header *h = &img.h;
    struct qcow2_resize_image ri;
    struct gbs *bs = NULL;
    bool open_only = (a->flags & INSTAR_RESIZE_OPEN_ONLY) != 0, chained = false;
    int errnum = 0, wcode = 0, werrno = 0, ret;

    if (a->flags & INSTAR_RESIZE_QED)
        resize_qed(a);
    if ((!open_only && a->size % 512) || a->prealloc > QCOW2_PREALLOC_FULL)
        fail(INSTAR_ERR_BAD_ARGS, 0);
    (void)gopen_probe(INSTAR_OP_RESIZE, "qcow2", false, first);
    gq_open(&img, INSTAR_OP_RESIZE, first);

    /* qcow2_do_open() refuses these read-write. */
    if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        fail(QCOW2_RESIZE_ERR_CORRUPT_RW, 0);
    /* The host opens a data file read-write as device 1. */
    if ((h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) &&
        (boot->ndevices < 2 || !(boot->devices[RS_DATA_DEV].flags & INSTAR_DEV_WRITE)))
        fail(QCOW2_RESIZE_ERR_NOTSUP_DATA_FILE, 0);
    if (img.x.nb_bitmaps > 0 &&
        ((h->incompatible_features & QCOW2_INCOMPAT_DIRTY) ||
         (h->crypt_method != QCOW2_CRYPT_NONE && (a->flags & INSTAR_RESIZE_CHAIN)))) {
        /*
         * qcow2_do_open(): the bitmaps loaded and marked in use, then the
         * image repaired (the node's open, guest/drv_qcow2.c); the image
         * is read again as they left it.
         */
        bool data_file = (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;

        /*
         * With the chain (a head the grow may copy, an encrypted image's
         * key for the grow's data), over it: the head is then read, and
         * the data encrypted, through the node that holds the bitmaps
         * (and repaired the image).
         */
        if (a->flags & INSTAR_RESIZE_CHAIN) {
            static struct instar_graph g;

            g = a->chain;
            if (!chain_ok(&g, data_file))
                fail(INSTAR_ERR_BAD_ARGS, 0);
            gbs_open_or_fail(INSTAR_OP_RESIZE, &g);
            bs = gbs_node(0);
            chained = true;
        } else {
            bs = gresize_open_node(INSTAR_OP_RESIZE, data_file);
        }
        if (gdev_pread(GOPEN_DEV, 0, first, GOPEN_FIRST) < 0) {
            (void)gbs_close(bs);
            fail(QCOW2_RESIZE_ERR_REPAIR_DIRTY, 0);
        }
        gq_open(&img, INSTAR_OP_RESIZE, first);
    } else if ((h->incompatible_features & QCOW2_INCOMPAT_DIRTY) &&
               gq_repair_dirty(&img, INSTAR_OP_RESIZE, 0) < 0) {
        fail(QCOW2_RESIZE_ERR_REPAIR_DIRTY, 0);
    }
    /* Nothing but the open and the close (bitmaps stored); no other open writes. */
    gresize_image(&ri, h);
    if (open_only) {
        if (img.x.nb_bitmaps > 0)
            resize_with_bitmaps(&ri, 0, true, bs);
        gresize_send(INSTAR_OP_RESIZE, 0, 0);
    }
    if (a->size < h->disk_size && !(a->flags & INSTAR_RESIZE_SHRINK))
        fail(INSTAR_ERR_BAD_ARGS, 0);
    if (a->prealloc != QCOW2_PREALLOC_OFF && a->size <= (h->disk_size & ~UINT64_C(511)))
        fail(INSTAR_ERR_BAD_ARGS, 0);

    ri.prealloc = (int)a->prealloc;
    ri.zero_write = (a->flags & INSTAR_RESIZE_ZERO_WRITE) != 0;
    ri.backing_head = (a->flags & INSTAR_RESIZE_BACKING_HEAD) != 0;
    /* (A dirty image's bitmaps node holds node 0: the head is read through it.) */
    if (!bs)
        gresize_read_head(INSTAR_OP_RESIZE, &ri,
                          (a->flags & INSTAR_RESIZE_CHAIN) ? &a->chain : NULL, a->size);
    else if (chained) {
        read_head_node(INSTAR_OP_RESIZE, &ri, bs, a->size);
        if (ri.encrypted && gbs_qcow2_encrypted(bs)) {
            ri.encrypt = gresize_encrypt;
            ri.encrypt_opaque = bs;
        }
    }
    if (img.x.nb_bitmaps > 0)
        resize_with_bitmaps(&ri, a->size, false, bs);

    ret = qcow2_resize(&ri, ri.data_file ? &gresize_io_data : &gresize_io, a->size, &errnum, &wcode,
                       &werrno);
    if (ret < 0)
        fail(-ret, (uint64_t)errnum);
    gresize_send(INSTAR_OP_RESIZE, wcode, werrno);
}
