/*
 * The amend planner: qcow2_amend_options() after qemu-img's read-write
 * open.  Device 0 is opened as qcow2 (gq_open, a dirty image repaired as
 * qcow2_do_open() does), then the lazy refcounts bit changes
 * (formats/qcow2/amend.c) and the image is truncated to the new size
 * (formats/qcow2/resize.c), in qemu's order.  The host has parsed the
 * options and refused what instar does not amend.  With
 * INSTAR_AMEND_LUKS, a LUKS header's key slots change instead
 * (gbs_luks_amend()): a raw volume's, or an encrypted qcow2 image's after
 * its open.
 */
#include "bdrv.h"
#include "guest.h"
#include "open.h"
#include "resize_io.h"
#include "qcow2/alloc.h"
#include "qcow2/amend.h"
#include "qcow2/be.h"
#include "qcow2/bitmap_store.h"
#include "qcow2/prealloc.h"
#include "qcow2/resize.h"
#include "qcow2/snapop.h"

/* The largest size bdrv_co_truncate() accepts (BDRV_MAX_LENGTH). */
#define AMEND_MAX_LENGTH UINT64_C(0x7fffffffc0000000)

/*
 * An image with persistent bitmaps is also open as a node of the block
 * layer, as qemu-img amend's read-write open opens it: its bitmaps are
 * loaded and marked in use (guest/drv_qcow2.c) before the amend writes
 * the file underneath, and stored anew when it is closed, after a
 * failure too (blk_unref()).  am_free_index: where qemu's allocator is
 * left for that store.
 */
static struct gbs *am_bs;
static uint64_t am_free_index;

/*
 * The header rewrites of qcow2_update_header() that qemu makes while the
 * bitmaps are loaded (a new data file name, the raw bit dropped, the
 * version 2 header of a downgrade): the node's close writes the header
 * from its open's view when it stores the bitmaps, so with a node open
 * they come after that close, from the header it wrote (the same last
 * header as qemu's, whose close rewrites its own).
 */
#define AM_HDR_DATA_FILE 1u
#define AM_HDR_DOWNGRADE 2u
static unsigned am_post;

/*
 * The first cluster as the open read it, before the node's open
 * rewrote it: qemu keeps the unknown header fields and extensions it
 * read there (its list of extensions reversed once, at every header
 * write), so every rewrite takes them from these bytes.
 */
static uint8_t *am_first0;
static size_t am_first0_len;
static struct qcow2_header am_h0;

static void am_header(unsigned what);

static int am_close(void)
{
    struct gbs *bs = am_bs;
    unsigned post = am_post;
    int ret = 0;

    am_bs = NULL;
    am_post = 0;
    if (bs) {
        ret = gbs_qcow2_resized(bs, am_free_index);
        if (ret == 0)
            ret = gbs_close(bs);
    }
    if (ret == 0 && post)
        am_header(post);
    return ret;
}

static __attribute__((noreturn)) void fail(int code, uint64_t errnum)
{
    uint64_t args[4] = {errnum, 0, 0, 0};

    (void)am_close();
    result_error(INSTAR_OP_AMEND, code, args, NULL, 0);
}

/* fail() with the message qemu prints before it (a QCOW2_ERR_* of header_err.h). */
static __attribute__((noreturn)) void fail_after(int code, uint64_t errnum, int first)
{
    uint64_t args[4] = {errnum, (uint64_t)first, 0, 0};

    (void)am_close();
    result_error(INSTAR_OP_AMEND, code, args, NULL, 0);
}

static __attribute__((noreturn)) void done(int wcode, int werrno)
{
    int ret = am_close();

    if (ret < 0)
        fail(QCOW2_RESIZE_ERR_STORE_BITMAPS, (uint64_t)-ret);
    gresize_send(INSTAR_OP_AMEND, wcode, werrno);
}

/* The backing file name and format of img, NUL-terminated, into u. */
/* The refcount change's callbacks over device 0 (reads see its writes). */
static int am_read(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    return gdev_pread(GOPEN_DEV, off, buf, len) < 0 ? -QCOW2_ALLOC_EIO : 0;
}

static int am_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    (void)opaque;
    return gdev_pwrite(GOPEN_DEV, off, buf, len) < 0 ? -QCOW2_ALLOC_EIO : 0;
}

static int am_flush(void *opaque)
{
    (void)opaque;
    return gdev_flush(GOPEN_DEV) < 0 ? -QCOW2_ALLOC_EIO : 0;
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

static const struct qcow2_alloc_ops am_alloc_ops = {am_read, am_write, am_mem, NULL, am_flush};

static void am_progress(void *opaque, uint64_t num, uint64_t den)
{
    (void)opaque;
    hc_progress(INSTAR_PROGRESS_ABS, num, den);
}

/*
 * The backing file name and format qcow2_update_header() writes again:
 * image_backing_file is set by any backing file offset (an empty name
 * included), image_backing_format by the extension alone, with or
 * without a name.  The header parse bounds both (1023 and 15 bytes).
 */
static bool amend_backing(const struct gq_image *img, struct qcow2_amend_upgrade *u)
{
    static char bfile[INSTAR_NAME_MAX], bfmt[INSTAR_FMT_NAME_MAX];

    if (img->x.backing_file_len >= sizeof(bfile) || img->x.backing_fmt_len >= sizeof(bfmt))
        return false;
    if (img->h.backing_file_offset != 0) {
        if (img->x.backing_file_len)
            memcpy(bfile, img->x.backing_file, img->x.backing_file_len);
        bfile[img->x.backing_file_len] = 0;
        u->backing_file = bfile;
    }
    if (img->x.has_backing_fmt) {
        memcpy(bfmt, img->x.backing_fmt, img->x.backing_fmt_len);
        bfmt[img->x.backing_fmt_len] = 0;
        u->backing_fmt = bfmt;
    }
    return true;
}

static int am_zero(void *opaque, uint64_t off, uint64_t len)
{
    (void)opaque;
    return gdev_zero(GOPEN_DEV, off, len, INSTAR_ZERO_ALLOCATE) < 0 ? -QCOW2_ALLOC_EIO : 0;
}

/*
 * qcow2_downgrade() once its checks passed: the zero clusters expanded
 * in every L1 table, then the header cluster rewritten as version 2.
 * The header fields are read again: the truncation may have moved the
 * L1 and refcount tables.
 */
static void amend_downgrade(const struct gq_image *img, struct qcow2_amend_progress *pr)
{
    const struct qcow2_header *h = &img->h;
    struct qcow2_amend_expand ex;
    struct qcow2_amend_l1 *l1;
    uint8_t hd[72];
    uint32_t i;
    int ret;

    if (gdev_pread(GOPEN_DEV, 0, hd, sizeof(hd)) < 0)
        fail(QCOW2_AMEND_ERR_EXPAND_ZERO, 5);
    l1 = malloc(((size_t)img->nsnapshots + 1) * sizeof(*l1));
    if (!l1)
        fail(INSTAR_ERR_NOMEM, 0);
    l1[0].offset = be_ld64(hd + 40);
    l1[0].size = be_ld32(hd + 36);
    for (i = 0; i < img->nsnapshots; i++) {
        l1[i + 1].offset = img->snapshots[i].sn.l1_table_offset;
        l1[i + 1].size = img->snapshots[i].sn.l1_size;
    }
    memset(&ex, 0, sizeof(ex));
    ex.ops = &am_alloc_ops;
    ex.cluster_bits = h->cluster_bits;
    ex.refcount_order = 4;
    ex.reftable_offset = be_ld64(hd + 48);
    ex.reftable_clusters = be_ld32(hd + 56);
    ex.l1 = l1;
    ex.nl1 = img->nsnapshots + 1;
    ex.backed = img->x.has_backing_file;
    ex.zero = am_zero;
    ex.progress = pr;
    pr->cur_op = QCOW2_AMEND_OP_DOWNGRADE;
    ret = qcow2_amend_expand_zero(&ex);
    if (ret < 0)
        fail_after(-ret, (uint64_t)ex.errnum, ex.table_err);
    /* qcow2_has_compressed_clusters(): a zstd image may go without them. */
    if ((h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) && ex.compressed)
        fail(QCOW2_AMEND_ERR_DOWNGRADE_ZSTD, 0);
    free(l1);
    if (am_bs)
        am_post |= AM_HDR_DOWNGRADE;
    else
        am_header(AM_HDR_DOWNGRADE);
}

/* The external data file: device 1. */
#define AM_DATA_DEV 1

/*
 * qcow2_update_header() after data_file= / data_file_raw=off (the new
 * name, none for "", the raw bit dropped) and after qcow2_downgrade()
 * (version 2: no feature bits, refcount order 4; the unknown header
 * fields and extensions, and the bitmaps extension, carried over as qemu
 * carries them): the header cluster rewritten from the file's as it now
 * is (the refcount and L1 fields as the earlier changes left them).
 */
static void am_header(unsigned what)
{
    static uint8_t cur_first[GOPEN_FIRST];
    static struct gq_image cur;
    const struct instar_amend_args *a = &boot->args.amend;
    struct qcow2_header h;
    struct qcow2_exts x;
    struct qcow2_header_state st;
    uint8_t *buf;

    if (gdev_pread(GOPEN_DEV, 0, cur_first, GOPEN_FIRST) < 0)
        fail(QCOW2_AMEND_ERR_UPDATE_HEADER, 5 /* EIO */);
    gq_open(&cur, INSTAR_OP_AMEND, cur_first);
    h = cur.h;
    x = cur.x;
    if (am_first0) {
        h.header_length = am_h0.header_length;
        h.ext_end = am_h0.ext_end;
    }
    buf = malloc((size_t)1 << h.cluster_bits);
    if (!buf)
        fail(INSTAR_ERR_NOMEM, 0);
    memset(&st, 0, sizeof(st));
    st.l1_offset = h.l1_table_offset;
    st.l1_size = h.l1_size;
    st.reftable_offset = h.refcount_table_offset;
    st.reftable_clusters = h.refcount_table_clusters;
    st.incompatible = h.incompatible_features;
    st.compatible = h.compatible_features;
    st.autoclear = h.autoclear_features;
    st.bitmaps.nb_bitmaps = x.nb_bitmaps;
    st.bitmaps.offset = x.bitmap_dir_offset;
    st.bitmaps.size = x.bitmap_dir_size;
    if ((what & AM_HDR_DATA_FILE) && (a->flags & INSTAR_AMEND_DATA_FILE)) {
        size_t n = strnlen(a->data_file, sizeof(a->data_file) - 1);

        x.has_data_file = n > 0;
        x.data_file = (const uint8_t *)a->data_file;
        x.data_file_len = n;
    }
    if ((what & AM_HDR_DATA_FILE) && (a->flags & INSTAR_AMEND_RAW_OFF))
        st.autoclear &= ~QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    if (what & AM_HDR_DOWNGRADE) {
        st.version = 2;
        st.incompatible = st.compatible = st.autoclear = 0;
    }
    if (qcow2_header_rewrite(am_first0 ? am_first0 : cur.first,
                             am_first0 ? am_first0_len : cur.first_len, &h, &x, &st, buf) < 0)
        fail(QCOW2_AMEND_ERR_UPDATE_HEADER, 28 /* ENOSPC */);
    if (gdev_pwrite(GOPEN_DEV, 0, buf, (size_t)1 << h.cluster_bits) < 0)
        fail(QCOW2_AMEND_ERR_UPDATE_HEADER, 5 /* EIO */);
    free(buf);
}

/*
 * qcow2_upgrade() of a version 2 image with header extensions qemu does
 * not know: qcow2_update_header() as version 3 carries them over (after
 * the ones it writes itself, in its list's order), so the header cluster
 * is rewritten from the image's own, as a version 3 header of 112 bytes
 * (refcount order 4, no feature bits), with qemu's progress calls.
 */
static void amend_upgrade_unknown(const struct gq_image *img)
{
    struct qcow2_header h = img->h;
    struct qcow2_header_state st;
    uint8_t *buf = malloc((size_t)1 << h.cluster_bits);

    if (!buf)
        fail(INSTAR_ERR_NOMEM, 0);
    h.version = 3;
    /* Where the extensions of the version 2 header start (qcow2_header_rewrite() reads them there).
     */
    h.header_length = 72;
    h.refcount_order = 4;
    h.compression_type = 0;
    memset(&st, 0, sizeof(st));
    st.l1_offset = h.l1_table_offset;
    st.l1_size = h.l1_size;
    st.reftable_offset = h.refcount_table_offset;
    st.reftable_clusters = h.refcount_table_clusters;
    if (qcow2_header_rewrite(img->first, img->first_len, &h, &img->x, &st, buf) < 0)
        fail(QCOW2_AMEND_ERR_UPDATE_HEADER, 28 /* ENOSPC */);
    if (gdev_pwrite(GOPEN_DEV, 0, buf, (size_t)1 << h.cluster_bits) < 0)
        fail(QCOW2_AMEND_ERR_UPDATE_HEADER, 5 /* EIO */);
    free(buf);
}

/*
 * qcow2_upgrade()'s first step: a table with entries that lack the
 * version 3 extra data (VM state size, disk size) is written again by
 * qcow2_write_snapshots() (each entry with its 24 bytes of known extra
 * data), the header's snapshot fields switched to it, the old table
 * freed; img is read again after it.
 */
static void amend_upgrade_snapshots(struct gq_image *img, uint8_t *first)
{
    struct qcow2_snapop_image si;
    uint32_t i;
    int ret;

    for (i = 0; i < img->nsnapshots; i++)
        if (img->snapshots[i].sn.extra_data_size < 16)
            break;
    if (i == img->nsnapshots)
        return;
    ret = gsnap_image(img, &si);
    if (ret == -INSTAR_ERR_NOMEM)
        fail(INSTAR_ERR_NOMEM, 0);
    if (ret == 0)
        ret = qcow2_snapop_rewrite(&si, &gsnap_io);
    if (ret < 0)
        fail(QCOW2_AMEND_ERR_UPDATE_SNAPSHOTS, (uint64_t)-ret);
    if (gdev_pread(GOPEN_DEV, 0, first, GOPEN_FIRST) < 0)
        fail(QCOW2_AMEND_ERR_UPDATE_HEADER, 5 /* EIO */);
    gq_open(img, INSTAR_OP_AMEND, first);
}

/* The end of an amend: qcow2_downgrade() last, failing with code (0: none). */
static __attribute__((noreturn)) void finish(const struct gq_image *img,
                                             struct qcow2_amend_progress *pr, bool downgrade,
                                             int code, uint64_t arg, int wcode, int werrno)
{
    if (code)
        fail(code, arg);
    if (downgrade)
        amend_downgrade(img, pr);
    done(wcode, werrno);
}

/*
 * A raw LUKS volume's key slots (block_crypto_amend_options_luks()): the
 * header at offset 0 of device 0, no bound on its extent.
 */
static __attribute__((noreturn)) void amend_luks_volume(const struct instar_amend_luks *l)
{
    const struct gluks_amend_io io = {GOPEN_DEV, 0, UINT64_MAX};
    uint64_t args[4];
    int ret = gbs_luks_amend(l, &io, args);

    if (ret < 0)
        result_error(INSTAR_OP_AMEND, -ret, args, NULL, 0);
    if (gdev_flush(GOPEN_DEV) < 0)
        fail(INSTAR_ERR_IO, 0);
    gresize_send(INSTAR_OP_AMEND, 0, 0);
}

/*
 * The LUKS key slots of a qcow2 image with encrypt.format=luks
 * (qcow2_amend_options() with encrypt.* options alone): the LUKS header
 * in the clusters its crypto header extension names, no access past the
 * extension's length (qcow2_crypto_hdr_read_func()).  qemu then rewrites
 * the qcow2 header unchanged.
 */
static __attribute__((noreturn)) void amend_luks_qcow2(const struct gq_image *img,
                                                       const struct instar_amend_luks *l)
{
    struct gluks_amend_io io = {GOPEN_DEV, img->x.crypto_offset, img->x.crypto_length};
    uint64_t args[4];
    int ret;

    if (img->h.crypt_method != QCOW2_CRYPT_LUKS || !img->x.has_crypto)
        fail(INSTAR_ERR_BAD_ARGS, 0); /* the host saw a LUKS image */
    ret = gbs_luks_amend(l, &io, args);
    if (ret < 0) {
        (void)am_close();
        result_error(INSTAR_OP_AMEND, -ret, args, NULL, 0);
    }
    if (gdev_flush(GOPEN_DEV) < 0)
        fail(INSTAR_ERR_IO, 0);
    done(0, 0);
}

void plan_amend(void)
{
    static uint8_t first[GOPEN_FIRST];
    static struct gq_image img;
    const struct instar_amend_args *a = &boot->args.amend;
    const struct qcow2_header *h = &img.h;
    struct qcow2_resize_image ri;
    struct qcow2_amend_progress pr;
    int errnum = 0, wcode = 0, werrno = 0, ret;
    uint32_t version, new_version, refcount_order, new_order;
    uint64_t reftable_offset, reftable_clusters;
    int downgrade_err = 0;
    bool downgrade = false, data_file;

    if ((a->flags & INSTAR_AMEND_LUKS) && (a->luks.flags & INSTAR_AMEND_LUKS_VOLUME))
        amend_luks_volume(&a->luks);
    (void)gopen_probe(INSTAR_OP_AMEND, "qcow2", false, first);
    gq_open(&img, INSTAR_OP_AMEND, first);

    /* qcow2_do_open() refuses these read-write. */
    if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        fail(QCOW2_RESIZE_ERR_CORRUPT_RW, 0);
    /* The host opens a data file read-write as device 1. */
    data_file = (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;
    if (data_file && (boot->ndevices < 2 || !(boot->devices[AM_DATA_DEV].flags & INSTAR_DEV_WRITE)))
        fail(QCOW2_RESIZE_ERR_NOTSUP_DATA_FILE, 0);
    if (img.x.nb_bitmaps > 0) {
        /*
         * qcow2_do_open(): the bitmaps loaded and marked in use, then a
         * dirty image repaired (the node's open); the image is read
         * again as they left it.
         */
        am_first0 = malloc(img.first_len);
        if (!am_first0)
            fail(INSTAR_ERR_NOMEM, 0);
        memcpy(am_first0, img.first, img.first_len);
        am_first0_len = img.first_len;
        am_h0 = img.h;
        am_bs = gresize_open_node(INSTAR_OP_AMEND, data_file);
        if (gdev_pread(GOPEN_DEV, 0, first, GOPEN_FIRST) < 0)
            fail(QCOW2_RESIZE_ERR_REPAIR_DIRTY, 0);
        gq_open(&img, INSTAR_OP_AMEND, first);
    } else if ((h->incompatible_features & QCOW2_INCOMPAT_DIRTY) &&
               gq_repair_dirty(&img, INSTAR_OP_AMEND, 0) < 0) {
        fail(QCOW2_RESIZE_ERR_REPAIR_DIRTY, 0);
    }
    if (a->flags & INSTAR_AMEND_OPEN_ONLY)
        done(0, 0);
    if (a->flags & INSTAR_AMEND_LUKS)
        amend_luks_qcow2(&img, &a->luks);
    version = h->version;
    refcount_order = h->refcount_order;
    reftable_offset = h->refcount_table_offset;
    reftable_clusters = h->refcount_table_clusters;
    new_version = (a->flags & INSTAR_AMEND_UPGRADE)     ? 3
                  : (a->flags & INSTAR_AMEND_DOWNGRADE) ? 2
                                                        : version;
    new_order = refcount_order;
    if (a->refcount_bits && a->refcount_bits != (1u << refcount_order)) {
        if (a->refcount_bits > 64 || (a->refcount_bits & (a->refcount_bits - 1)))
            fail(INSTAR_ERR_BAD_ARGS, 0);
        new_order = 0;
        while ((1u << new_order) != a->refcount_bits)
            new_order++;
    }
    memset(&pr, 0, sizeof(pr));
    pr.total_ops = (new_version != version) + (new_order != refcount_order);
    pr.print = (a->flags & INSTAR_AMEND_PROGRESS) ? am_progress : NULL;
    /*
     * qcow2_downgrade() comes last (finish()); its checks are made here,
     * and what instar does not downgrade refused before anything is written.
     */
    /* Lazy refcounts need version 3: qemu fails before the header changes. */
    if ((a->flags & INSTAR_AMEND_DOWNGRADE) && (a->flags & INSTAR_AMEND_LAZY_ON) &&
        !(h->compatible_features & QCOW2_AMEND_COMPAT_LAZY))
        fail(QCOW2_AMEND_ERR_LAZY_V2, 0);
    if ((a->flags & INSTAR_AMEND_DOWNGRADE) && version == 3) {
        uint64_t final_size = (a->flags & INSTAR_AMEND_SIZE) ? a->size : h->disk_size;
        uint32_t i;

        downgrade_err = 0;
        if (new_order != 4)
            downgrade_err = QCOW2_AMEND_ERR_DOWNGRADE_REFCOUNT;
        else if (data_file)
            downgrade_err = QCOW2_AMEND_ERR_DOWNGRADE_DATA_FILE;
        for (i = 0; !downgrade_err && i < img.nsnapshots; i++)
            if (img.snapshots[i].sn.vm_state_size > UINT32_MAX ||
                img.snapshots[i].sn.disk_size != final_size)
                downgrade_err = QCOW2_AMEND_ERR_DOWNGRADE_SNAPSHOTS;
        /* The dirty bit is clear (repaired at the open); compression is handled by qemu. */
        if (!downgrade_err &&
            (h->incompatible_features & ~(QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_DIRTY)))
            downgrade_err = QCOW2_AMEND_ERR_DOWNGRADE_INCOMPAT;
        downgrade = !downgrade_err;
    }
    /* Upgrade first: the other changes may need version 3. */
    if ((a->flags & INSTAR_AMEND_UPGRADE) && version == 2) {
        struct qcow2_amend_upgrade u;
        uint8_t *buf;

        memset(&u, 0, sizeof(u));
        if (!amend_backing(&img, &u))
            fail(QCOW2_AMEND_ERR_UPDATE_HEADER, 28 /* ENOSPC; the parse bounds them */);
        /* qcow2_upgrade()'s status: its start, the snapshot table, the header. */
        pr.cur_op = QCOW2_AMEND_OP_UPGRADE;
        qcow2_amend_progress_report(&pr, 0, 2);
        amend_upgrade_snapshots(&img, first);
        qcow2_amend_progress_report(&pr, 1, 2);
        reftable_offset = h->refcount_table_offset;
        reftable_clusters = h->refcount_table_clusters;
        if (!qcow2_amend_known_exts(img.first, img.first_len, h->header_length)) {
            amend_upgrade_unknown(&img);
            qcow2_amend_progress_report(&pr, 2, 2);
            version = 3;
            goto upgraded;
        }
        u.cluster_bits = h->cluster_bits;
        u.refcount_order = h->refcount_order;
        u.size = h->disk_size;
        u.l1_size = h->l1_size;
        u.l1_table_offset = h->l1_table_offset;
        u.refcount_table_offset = h->refcount_table_offset;
        u.refcount_table_clusters = h->refcount_table_clusters;
        u.nb_snapshots = h->nb_snapshots;
        u.snapshots_offset = h->snapshots_offset;
        u.crypt_method = h->crypt_method;
        if (img.x.has_crypto) {
            u.crypto_offset = img.x.crypto_offset;
            u.crypto_length = img.x.crypto_length;
        }
        buf = malloc((size_t)1 << h->cluster_bits);
        if (!buf)
            fail(INSTAR_ERR_NOMEM, 0);
        ret = qcow2_amend_upgrade(&u, buf, gresize_io.pwrite, NULL, &errnum);
        free(buf);
        if (ret < 0)
            fail(-ret, (uint64_t)errnum);
        qcow2_amend_progress_report(&pr, 2, 2);
        version = 3;
    }
upgraded:
    /* qcow2_change_refcount_order(), after the upgrade. */
    if (new_order != refcount_order) {
        struct qcow2_amend_reforder ro;

        if (new_version < 3 && a->refcount_bits != 16)
            fail(QCOW2_AMEND_ERR_REFCOUNT_V2, 0);
        memset(&ro, 0, sizeof(ro));
        ro.ops = &am_alloc_ops;
        ro.cluster_bits = h->cluster_bits;
        ro.old_order = refcount_order;
        ro.new_order = new_order;
        ro.reftable_offset = reftable_offset;
        ro.reftable_clusters = reftable_clusters;
        ro.progress = &pr;
        pr.cur_op = QCOW2_AMEND_OP_REFCOUNT;
        ret = qcow2_amend_refcount_order(&ro);
        if (ret == -QCOW2_AMEND_ERR_REFCOUNT_DECREASE) {
            uint64_t args[4] = {ro.bad_offset, ro.bad_refcount, 1u << new_order, 0};

            result_error(INSTAR_OP_AMEND, QCOW2_AMEND_ERR_REFCOUNT_DECREASE, args, NULL, 0);
        }
        if (ret < 0)
            fail(-ret, (uint64_t)ro.errnum);
        refcount_order = new_order;
        am_free_index = ro.free_cluster_index;
        reftable_offset = ro.new_reftable_offset;
        reftable_clusters = ro.new_reftable_clusters;
    }
    /* The data file's name and raw bit, in qcow2_update_header()'s rewrite. */
    if (a->flags & (INSTAR_AMEND_DATA_FILE | INSTAR_AMEND_RAW_OFF)) {
        if (am_bs)
            am_post |= AM_HDR_DATA_FILE;
        else
            am_header(AM_HDR_DATA_FILE);
    }
    if (a->flags & INSTAR_AMEND_LAZY) {
        ret = qcow2_amend_lazy(version, version == 3 ? h->compatible_features : 0,
                               (a->flags & INSTAR_AMEND_LAZY_ON) != 0, gresize_io.pwrite, NULL,
                               &errnum);
        if (ret < 0)
            fail(-ret, (uint64_t)errnum);
    }
    if (!(a->flags & INSTAR_AMEND_SIZE))
        finish(&img, &pr, downgrade, downgrade_err,
               h->incompatible_features & ~(QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_DIRTY), 0,
               0);

    /* bdrv_co_truncate(), then qcow2_co_truncate()'s first check. */
    if (a->size > AMEND_MAX_LENGTH)
        fail(QCOW2_AMEND_ERR_SIZE_RANGE, 0);
    if (a->size % 512)
        fail(QCOW2_AMEND_ERR_SIZE_ALIGN, 0);
    gresize_image(&ri, h);
    ri.version = version;
    ri.refcount_order = refcount_order;
    ri.refcount_table_offset = reftable_offset;
    ri.refcount_table_clusters = (uint32_t)reftable_clusters;
    ri.prealloc = QCOW2_PREALLOC_OFF;
    ri.zero_write = (a->flags & INSTAR_AMEND_ZERO_WRITE) != 0;
    ri.backing_head = (a->flags & INSTAR_AMEND_BACKING_HEAD) != 0;
    if (am_bs) {
        static char name[QCOW2_BM_NAME_MAX + 1];
        size_t n;

        /* qcow2_truncate_bitmaps_check() */
        if (gresize_bad_bitmap(am_bs, name, &n)) {
            (void)am_close();
            result_error(INSTAR_OP_AMEND, QCOW2_RESIZE_ERR_BITMAP_INCONSISTENT, NULL, name, n);
        }
        ri.free_cluster_index = &am_free_index;
    } else {
        /* The partial last cluster's data, for a copy-on-write of it (as resize). */
        gresize_read_head(INSTAR_OP_AMEND, &ri, (a->flags & INSTAR_AMEND_CHAIN) ? &a->chain : NULL,
                          a->size);
    }
    ret = qcow2_resize(&ri, ri.data_file ? &gresize_io_data : &gresize_io, a->size, &errnum, &wcode,
                       &werrno);
    if (ret < 0)
        fail(-ret, (uint64_t)errnum);
    finish(&img, &pr, downgrade, downgrade_err,
           h->incompatible_features & ~(QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_DIRTY), wcode,
           werrno);
}
