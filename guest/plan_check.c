/*
 * The guest's "check" planner: open device 0 the way qemu-img 7.2's
 * img_open() does for check (BDRV_O_CHECK, read-only, with I/O), run the
 * qcow2 consistency check (formats/qcow2/check.h) with its lines streamed
 * to the host (greport), and hand back a struct instar_check_result.
 *
 * Formats: raw (probed or -f raw) has no check: INSTAR_CHECK_NOTSUP, the
 * host prints "This image format does not support checks" and exits 63.
 * Other drivers qemu-img has fail as in plan_info.
 *
 * Repair (INSTAR_CHECK_FIX_*, device 0 writable): qcow2_repair() writes
 * through guest/blk.c's gdev_* calls, bounded by the device's
 * write_limit; after the first write, reads bypass the block cache and
 * see the file as the writes left it.  When the repair leaves
 * no corruption, the repaired file is checked again here, silently, from
 * a freshly read header; only if that comes back clean are the dirty bit
 * and (for "all") the corrupt bit cleared (docs/repair.md).
 */
#include "guest.h"
#include "bdrv.h"
#include "luks/unlock.h"
#include "open.h"
#include "parallels/parallels.h"
#include "qcow2/check.h"
#include "qed/qed.h"

#define OP INSTAR_OP_CHECK

static struct qcow2_err_info ei;

static struct instar_check_result *res(struct rbuf *rb)
{
    return rbuf_at(rb, 0);
}

/* Reads see the repair's own writes: gblk_pread bypasses its cache once the device is written. */
static int env_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    return gblk_pread(GOPEN_DEV, off, buf, len);
}

static int io_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    (void)opaque;
    return gdev_pwrite(GOPEN_DEV, off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

static int io_flush(void *opaque)
{
    (void)opaque;
    return gdev_flush(GOPEN_DEV) < 0 ? -INSTAR_ERR_IO : 0;
}

static int io_truncate(void *opaque, uint64_t size)
{
    (void)opaque;
    return gdev_truncate(GOPEN_DEV, size, INSTAR_TRUNC_OFF) < 0 ? -INSTAR_ERR_IO : 0;
}

static int io_discard(void *opaque, uint64_t off, uint64_t len)
{
    (void)opaque;
    return gdev_discard(GOPEN_DEV, off, len) < 0 ? -INSTAR_ERR_IO : 0;
}

static void quiet_report(void *opaque, int32_t code, uint16_t flags, const uint64_t args[4],
                         const char *s, size_t slen)
{
    (void)opaque;
    (void)code;
    (void)flags;
    (void)args;
    (void)s;
    (void)slen;
}

static void env_report(void *opaque, int32_t code, uint16_t flags, const uint64_t args[4],
                       const char *s, size_t slen)
{
    (void)opaque;
    greport(code, (flags & QCOW2_CHECK_REC_PREFIX) ? INSTAR_REC_PREFIX : 0, args, s, slen);
}

static void *env_realloc(void *opaque, void *p, size_t size)
{
    (void)opaque;
    return realloc(p, size);
}

static void env_free(void *opaque, void *p)
{
    (void)opaque;
    free(p);
}

/* warn_arg: the argument of the open's warning (err_args[2], INSTAR_WARN_DMG_CHUNKS). */
static __attribute__((noreturn)) void send_notsup_arg(const char *fmt, uint64_t warn_arg)
{
    struct rbuf rb;
    size_t n = strlen(fmt);

    if (rbuf_init(&rb, sizeof(struct instar_check_result)) < 0)
        gopen_fail(OP, INSTAR_ERR_NOMEM, NULL);
    if (n >= sizeof(res(&rb)->format))
        n = sizeof(res(&rb)->format) - 1;
    memcpy(res(&rb)->format, fmt, n);
    res(&rb)->flags = INSTAR_CHECK_NOTSUP;
    res(&rb)->hdr.err_args[2] = warn_arg;
    rbuf_send(&rb, OP, 0);
}

static __attribute__((noreturn)) void send_notsup(const char *fmt)
{
    send_notsup_arg(fmt, 0);
}

/*
 * vdi_co_check(): with a repair asked for it answers -ENOTSUP (exit 63)
 * before anything; else the block map's lines and counts.
 */
static __attribute__((noreturn)) void check_vdi(unsigned fix)
{
    struct rbuf rb;
    uint64_t corruptions, check_errors;
    int ret;

    if (fix) {
        uint64_t size;
        uint32_t cluster_size;

        gbs_vdi_describe(OP, GOPEN_DEV, &size, &cluster_size);
        send_notsup("vdi");
    }
    ret = gbs_vdi_check(OP, GOPEN_DEV, &corruptions, &check_errors);
    if (rbuf_init(&rb, sizeof(struct instar_check_result)) < 0)
        gopen_fail(OP, INSTAR_ERR_NOMEM, NULL);
    memcpy(res(&rb)->format, "vdi", 4);
    res(&rb)->ret = ret;
    res(&rb)->corruptions = (int64_t)corruptions;
    res(&rb)->check_errors = (int64_t)check_errors;
    rbuf_send(&rb, OP, 0);
}

/* The crypto extension, where qemu opens LUKS with I/O: a key is needed. */
static int need_key(void *opaque, uint64_t offset, uint64_t length, struct qcow2_err_info *e)
{
    (void)opaque;
    (void)offset;
    (void)length;
    (void)e;
    return -QCOW2_CHECK_ERR_KEY_SECRET;
}

/* The LUKS region (the crypto extension) key material is read from. */
static uint64_t luks_off, luks_len;
static uint64_t luks_args[2];

static int luks_read(void *opaque, uint64_t off, uint8_t *buf, size_t len)
{
    (void)opaque;
    if (off > luks_len || len > luks_len - off)
        return -QCOW2_ERR_LUKS_OUTSIDE_EXT;
    return gblk_pread_direct(GOPEN_DEV, luks_off + off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

/*
 * The crypto extension with the key check's args carry: the LUKS header
 * unlocked there, as qcrypto_block_open() does when qemu opens the image
 * with I/O.  A header that does not parse is left to gq_open, which
 * reports it at the same place.
 */
static int unlock_key(void *opaque, uint64_t offset, uint64_t length, struct qcow2_err_info *e)
{
    const struct instar_check_args *a = &boot->args.check;
    static uint8_t hdr[QCOW2_LUKS_HDR_SIZE];
    static struct luks_volume vol;
    struct qcow2_luks_info info;
    uint8_t *work;
    size_t pwlen = 0;
    int r;

    (void)opaque;
    (void)e;
    if (length < QCOW2_LUKS_HDR_SIZE || !qcow2_read_ok(offset, QCOW2_LUKS_HDR_SIZE) ||
        gblk_pread(GOPEN_DEV, offset, hdr, sizeof(hdr)) < 0 ||
        qcow2_luks_parse(hdr, sizeof(hdr), &info) < 0)
        return 0;
    if (a->key.len > INSTAR_KEY_BYTES)
        return -INSTAR_ERR_BAD_ARGS;
    while (pwlen < a->key.len && a->key.data[pwlen])
        pwlen++;
    work = malloc(LUKS_WORK_SIZE);
    if (!work)
        return -INSTAR_ERR_NOMEM;
    luks_off = offset;
    luks_len = length;
    r = luks_unlock(hdr, &info, a->key.data, pwlen, luks_read, NULL, work, &vol, luks_args);
    free(work);
    memset(&vol, 0, sizeof(vol));
    return gbs_luks_unlock_code(r);
}

/*
 * What opening with I/O adds for encrypted images: qemu-img check has no
 * --object secret here, so qcrypto_block_open() fails where the LUKS
 * header is opened (its extension) or, for AES and for LUKS without the
 * extension, right after the extensions, before the backing file name
 * is checked.  Errors that come earlier are left to gq_open, which
 * reports them in its own order.
 */
static void check_crypto(const uint8_t *buf, size_t len)
{
    struct qcow2_header h;
    struct qcow2_exts x;
    static const uint64_t none[4];
    uint64_t args[4] = {0, 0, 0, 0};
    int ret;

    if (qcow2_header_parse_flags(buf, len, QCOW2_OPEN_CHECK, &h, &ei) < 0 ||
        h.crypt_method == QCOW2_CRYPT_NONE)
        return;
    if (boot->args.check.has_key && h.crypt_method == QCOW2_CRYPT_LUKS) {
        ret = qcow2_ext_parse(buf, len, &h, unlock_key, NULL, &x, &ei);
        if (ret == -INSTAR_ERR_LUKS_WORK) {
            args[0] = luks_args[0];
            args[1] = luks_args[1];
            result_error(OP, INSTAR_ERR_LUKS_WORK, args, NULL, 0);
        }
        if (ret == -INSTAR_ERR_LUKS_PASSWORD || ret == -INSTAR_ERR_LUKS_UNSUPPORTED ||
            ret == -INSTAR_ERR_IO || ret == -INSTAR_ERR_NOMEM || ret == -INSTAR_ERR_BAD_ARGS ||
            ret == -QCOW2_ERR_LUKS_OUTSIDE_EXT)
            result_error(OP, -ret, none, NULL, 0);
    } else {
        ret = qcow2_ext_parse(buf, len, &h, need_key, NULL, &x, &ei);
    }
    if (ret == -QCOW2_CHECK_ERR_KEY_SECRET)
        result_error(OP, QCOW2_CHECK_ERR_KEY_SECRET, none, NULL, 0);
    if (ret < 0 && ret != -QCOW2_ERR_BACKING_NAME_TOO_LONG)
        return;
    /* The old AES method has no header: with its key the check reads metadata only. */
    if (h.crypt_method == QCOW2_CRYPT_AES && !boot->args.check.has_key)
        result_error(OP, QCOW2_CHECK_ERR_KEY_SECRET, none, NULL, 0);
    if (h.crypt_method == QCOW2_CRYPT_LUKS && !x.has_crypto) {
        args[0] = h.crypt_method;
        result_error(OP, QCOW2_CHECK_ERR_NO_CRYPTO_HDR, args, NULL, 0);
    }
}

/*
 * Repair, then what qemu-img does when it is done with the image: when
 * the repair left no corruption, re-validate the repaired file from its
 * header and (only if that is clean) clear the corrupt bit
 * (qcow2_mark_consistent, or instar's own from qcow2_repair); and clear the dirty bit as QEMU's
 * close does for every image it opened for repair (unless qcow2_repair says QEMU's would not,
 * QCOW2_REPAIR_KEEP_DIRTY).  Returns qcow2_repair's value.
 */
static int repair_qcow2(const struct qcow2_check_image *ci, const struct qcow2_check_env *env,
                        unsigned fix, struct qcow2_check_result *r)
{
    const struct qcow2_check_env quiet = {env_pread, quiet_report, env_realloc, env_free, NULL};
    struct qcow2_repair_io io = {
        .pwrite = io_pwrite, .flush = io_flush, .truncate = io_truncate, .discard = io_discard};
    struct qcow2_check_image ci2;
    struct qcow2_check_result r2;
    struct qcow2_header h2;
    uint8_t *buf;
    size_t len = (size_t)1 << ci->h->cluster_bits;
    unsigned clear = 0;
    bool first_clean;
    int ret;

    io.write_limit = boot->devices[GOPEN_DEV].write_limit;
    ret = qcow2_repair(ci, env, &io, fix, r);
    if (!(r->repair_flags & QCOW2_REPAIR_RAN))
        return ret;
    if (!(r->repair_flags & QCOW2_REPAIR_KEEP_DIRTY))
        clear |= QCOW2_CHECK_CLEAR_DIRTY;
    first_clean = ret == 0 && !r->check_errors && !r->corruptions;

    /* The header as it is now, then (if the repair was clean) a silent walk. */
    buf = malloc(len);
    if (!buf)
        return ret;
    if (env_pread(NULL, 0, buf, len) == 0 &&
        qcow2_header_parse_flags(buf, len, QCOW2_OPEN_CHECK, &h2, &ei) == 0) {
        ci2 = *ci;
        ci2.h = &h2;
        ci2.file_size = gdev_length(GOPEN_DEV);
        /*
         * qemu-img clears the bit when its repair came out clean; a bit
         * only instar set (before its first write) goes when the
         * repaired file checks clean.
         */
        if ((first_clean || !(ci->h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)) &&
            qcow2_check(&ci2, &quiet, 0, &r2) == 0 && !r2.check_errors && !r2.corruptions)
            clear |= QCOW2_CHECK_CLEAR_CORRUPT;
        if (clear)
            qcow2_check_finish(&h2, env, &io, clear);
    }
    free(buf);
    return ret;
}

/*
 * gq_repair_dirty - what qcow2_do_open() does with a dirty image it opens
 * read-write: qcow2_co_check_locked(BDRV_FIX_ERRORS | BDRV_FIX_LEAKS), its
 * lines streamed as check -r streams them, and the dirty and corrupt bits
 * cleared when the repair came out clean.  img is opened again from the
 * file afterwards (a rebuild moves the refcount table).  Returns 0, or -1
 * when the image could not be repaired (qemu's "Could not repair dirty
 * image").  flags: the QCOW2_OPEN_* of the first open, for the second.
 */
int gq_repair_dirty(struct gq_image *img, uint32_t op, unsigned flags)
{
    static uint8_t first[GOPEN_FIRST];
    const struct qcow2_check_env env = {env_pread, env_report, env_realloc, env_free, NULL};
    struct qcow2_check_image ci;
    struct qcow2_check_result r;
    int ret;

    memset(&ci, 0, sizeof(ci));
    ci.h = &img->h;
    ci.x = &img->x;
    ci.file_size = img->file_size;
    ret = repair_qcow2(&ci, &env, QCOW2_CHECK_FIX_ERRORS | QCOW2_CHECK_FIX_LEAKS, &r);
    if (ret < 0 || r.check_errors || r.corruptions)
        return -1;
    if (gblk_pread(GOPEN_DEV, 0, first, GOPEN_FIRST) < 0)
        return -1;
    gq_open_flags(img, op, flags, first);
    return 0;
}

static __attribute__((noreturn)) void check_qcow2(const uint8_t first[GOPEN_FIRST], unsigned fix)
{
    static struct gq_image img;
    const struct qcow2_check_env env = {env_pread, env_report, env_realloc, env_free, NULL};
    struct qcow2_check_image ci;
    struct qcow2_check_result r;
    struct instar_check_result *o;
    struct rbuf rb;
    uint64_t dev = gblk_size(GOPEN_DEV);
    uint32_t cbits = qcow2_be32(first, GOPEN_FIRST, 20);
    int ret;

    /* The crypto checks need the first cluster, as gq_open reads it. */
    if (cbits >= QCOW2_MIN_CLUSTER_BITS && cbits <= QCOW2_MAX_CLUSTER_BITS) {
        size_t len = (size_t)1 << cbits;
        uint8_t *buf;

        if (len > dev)
            len = (size_t)dev;
        if (len < GOPEN_FIRST)
            len = GOPEN_FIRST;
        buf = malloc(len);
        if (!buf)
            gopen_fail(OP, INSTAR_ERR_NOMEM, NULL);
        memcpy(buf, first, GOPEN_FIRST);
        if (len > GOPEN_FIRST && gblk_pread(GOPEN_DEV, 0, buf, len) < 0)
            gopen_fail(OP, INSTAR_ERR_IO, NULL);
        check_crypto(buf, len);
        free(buf);
    }

    gq_open_flags(&img, OP, QCOW2_OPEN_CHECK, first);
    if (rbuf_init(&rb, sizeof(struct instar_check_result)) < 0)
        gopen_fail(OP, INSTAR_ERR_NOMEM, NULL);

    ci.h = &img.h;
    ci.x = &img.x;
    ci.file_size = img.file_size;
    if (fix)
        ret = repair_qcow2(&ci, &env, fix, &r);
    else
        ret = qcow2_check(&ci, &env, 0, &r);

    o = res(&rb);
    memcpy(o->format, "qcow2", 6);
    o->ret = ret;
    o->corruptions = r.corruptions;
    o->leaks = r.leaks;
    o->check_errors = r.check_errors;
    o->corruptions_fixed = r.corruptions_fixed;
    o->leaks_fixed = r.leaks_fixed;
    o->image_end_offset = r.image_end_offset;
    o->total_clusters = r.total_clusters;
    o->allocated_clusters = r.allocated_clusters;
    o->fragmented_clusters = r.fragmented_clusters;
    o->compressed_clusters = r.compressed_clusters;
    rbuf_send(&rb, OP, 0);
}

/* bdrv_qed_co_check(): qed_check(), repairing with -r (leaks are never repaired). */
static __attribute__((noreturn)) void check_qed(bool fix)
{
    struct qed_check_result r;
    struct instar_check_result *o;
    struct rbuf rb;
    int ret = gbs_qed_check(OP, GOPEN_DEV, fix, &r);

    if (rbuf_init(&rb, sizeof(struct instar_check_result)) < 0)
        gopen_fail(OP, INSTAR_ERR_NOMEM, NULL);
    o = res(&rb);
    memcpy(o->format, "qed", 4);
    o->ret = ret;
    o->corruptions = (int64_t)r.corruptions;
    o->leaks = (int64_t)r.leaks;
    o->check_errors = (int64_t)r.check_errors;
    o->corruptions_fixed = (int64_t)r.corruptions_fixed;
    o->total_clusters = (int64_t)r.total_clusters;
    o->allocated_clusters = (int64_t)r.allocated_clusters;
    o->fragmented_clusters = (int64_t)r.fragmented_clusters;
    rbuf_send(&rb, OP, 0);
}

/* vhdx_co_check(): the open replays a log when read-write; the BAT is checked. */
static __attribute__((noreturn)) void check_vhdx(const struct instar_check_args *a, bool rw)
{
    struct rbuf rb;
    struct instar_check_result *o;
    int64_t corruptions, fixed;

    gbs_vhdx_check(OP, GOPEN_DEV, rw, a->vhdx_guids, &corruptions, &fixed);
    if (rbuf_init(&rb, sizeof(struct instar_check_result)) < 0)
        gopen_fail(OP, INSTAR_ERR_NOMEM, NULL);
    o = res(&rb);
    memcpy(o->format, "vhdx", 5);
    o->corruptions = corruptions;
    o->corruptions_fixed = fixed;
    rbuf_send(&rb, OP, 0);
}

/* vmdk_co_check(): grains that no extent, table or file holds; no repair (63). */
static __attribute__((noreturn)) void check_vmdk(unsigned fix)
{
    struct instar_check_result *o;
    static struct gbs_vmdk_info info;
    struct rbuf rb;
    int32_t ret;

    if (fix) {
        gbs_vmdk_describe(OP, GOPEN_DEV, boot->ndevices - 1, true, false, &info);
        send_notsup("vmdk");
    }
    ret = gbs_vmdk_check(OP, GOPEN_DEV, boot->ndevices - 1);
    if (rbuf_init(&rb, sizeof(struct instar_check_result)) < 0)
        gopen_fail(OP, INSTAR_ERR_NOMEM, NULL);
    o = res(&rb);
    memcpy(o->format, "vmdk", 5);
    o->ret = ret;
    o->corruptions = ret != 0;
    rbuf_send(&rb, OP, 0);
}

void plan_check(void)
{
    static uint8_t first[GOPEN_FIRST];
    const struct instar_check_args *a = &boot->args.check;
    char fmt[INSTAR_FMT_NAME_MAX];
    const char *drv;
    unsigned fix = 0;

    /* The format name must be a C string within its field. */
    memcpy(fmt, a->format, sizeof(fmt));
    if (fmt[sizeof(fmt) - 1] != '\0')
        result_error(OP, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
    /* Repair needs device 0 writable; "all" includes the leaks. */
    if (a->flags & INSTAR_CHECK_FIX_LEAKS)
        fix |= QCOW2_CHECK_FIX_LEAKS;
    if (a->flags & INSTAR_CHECK_FIX_ERRORS)
        fix |= QCOW2_CHECK_FIX_ERRORS | QCOW2_CHECK_FIX_LEAKS;
    if (fix && (boot->ndevices < 1 || !(boot->devices[GOPEN_DEV].flags & INSTAR_DEV_WRITE)))
        result_error(OP, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);

    drv = gopen_probe(OP, fmt, (a->flags & INSTAR_CHECK_NAME_DMG) != 0, first);
    if (!strcmp(drv, "raw"))
        send_notsup("raw");
    if (!strcmp(drv, "vpc")) {
        uint64_t size;
        uint32_t cluster_size;

        /* qemu-img check opens the image before it asks for the check. */
        gbs_vpc_describe(OP, GOPEN_DEV, 0, &size, &cluster_size);
        send_notsup("vpc");
    }
    if (!strcmp(drv, "vhdx"))
        check_vhdx(a, fix != 0);
    if (!strcmp(drv, "vdi"))
        check_vdi(fix);
    if (!strcmp(drv, "qed"))
        check_qed(fix != 0);
    if (!strcmp(drv, "qcow")) {
        static struct gbs_qcow_desc d;

        /*
         * qemu-img check opens the image (with I/O) before it asks for the
         * check: an AES image needs its key (any key: a wrong one shows only
         * in the data).
         */
        gbs_qcow_describe(OP, GOPEN_DEV, !a->has_key, &d);
        send_notsup("qcow");
    }
    if (!strcmp(drv, "bochs")) {
        uint64_t size;

        gbs_bochs_describe(OP, GOPEN_DEV, &size);
        send_notsup("bochs");
    }
    if (!strcmp(drv, "cloop")) {
        uint64_t size;

        gbs_cloop_describe(OP, GOPEN_DEV, &size);
        send_notsup("cloop");
    }
    if (!strcmp(drv, "dmg")) {
        uint64_t size;
        uint32_t unknown_type;

        gbs_dmg_describe(OP, GOPEN_DEV, &size, &unknown_type);
        send_notsup_arg("dmg", unknown_type);
    }
    if (!strcmp(drv, "parallels"))
        gbs_parallels_check(OP, GOPEN_DEV,
                            (a->flags & INSTAR_CHECK_FIX_LEAKS ? PRL_FIX_LEAKS : 0) |
                                (a->flags & INSTAR_CHECK_FIX_ERRORS ? PRL_FIX_ERRORS : 0));
    if (!strcmp(drv, "qcow2"))
        check_qcow2(first, fix);
    if (!strcmp(drv, "vmdk"))
        check_vmdk(fix);
    if (!strcmp(drv, "luks")) {
        if (a->has_key && a->key.len > INSTAR_KEY_BYTES)
            result_error(OP, INSTAR_ERR_BAD_ARGS, NULL, NULL, 0);
        gbs_luks_unlock(OP, GOPEN_DEV, a->has_key ? &a->key : NULL);
        send_notsup("luks");
    }
    if (gopen_known_driver(drv))
        result_error(OP, INSTAR_ERR_UNSUPPORTED_FMT, NULL, drv, strlen(drv));
    result_error(OP, INSTAR_ERR_UNKNOWN_FMT, NULL, drv, strlen(drv));
}
