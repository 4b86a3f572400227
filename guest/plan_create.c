/*
 * The guest's "create" planner: lay out a new qcow2 image on device 0 (and
 * size the external data file, device 1) through formats/qcow2/create.c,
 * exactly as qemu-img 7.2's qcow2_co_create() would.
 *
 * The host has validated every option with qemu-img's messages; the guest
 * re-checks what it depends on.  A failure is sent as an error result with
 * code INSTAR_ERR_IO and err_args = { errno, enum qcow2_create_stage }:
 * the host turns that into qemu-img's message for that step.
 *
 * Writes and reads go straight to the host through guest/blk.c's gdev_*
 * calls, which track each device's length (bytes past it read as zeros),
 * since everything the planner reads it wrote.
 */
#include "bdrv.h"
#include "guest.h"
#include "qcow2/create.h"
#include "vhdx/create.h"
#include "vhdx/vhdx.h"
#include "parallels/parallels.h"
#include "vpc/create.h"
#include "vpc/vpc.h"
#include "vdi/vdi.h"
#include "vmdk/create.h"

#define DEV_DATA 1

struct gc_state {
    bool has_data;
};

static int gc_err(int hc)
{
    return hc == INSTAR_HC_ERANGE ? -QCOW2_ALLOC_EFBIG : -QCOW2_ALLOC_EIO;
}

static int gc_read(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    return gdev_pread(0, off, buf, len) < 0 ? -QCOW2_ALLOC_EIO : 0;
}

static int gc_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    int r;

    (void)opaque;
    r = gdev_pwrite(0, off, buf, len);
    return r < 0 ? gc_err(r) : 0;
}

static void *gc_mem(void *opaque, void *p, size_t size)
{
    (void)opaque;
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

static int gc_truncate(void *opaque, int dev, uint64_t size, int mode)
{
    struct gc_state *st = opaque;
    uint32_t m = mode == QCOW2_PREALLOC_FALLOC ? INSTAR_TRUNC_FALLOC
                 : mode == QCOW2_PREALLOC_FULL ? INSTAR_TRUNC_FULL
                                               : INSTAR_TRUNC_OFF;
    int r;

    if (dev != 0 && !(dev == DEV_DATA && st->has_data)) {
        return -QCOW2_ALLOC_EINVAL;
    }
    r = gdev_truncate((uint32_t)dev, size, m);
    return r < 0 ? gc_err(r) : 0;
}

static int gc_length(void *opaque, int dev, uint64_t *len)
{
    (void)opaque;
    if (dev < 0 || dev > 1) {
        return -QCOW2_ALLOC_EINVAL;
    }
    *len = gdev_length((uint32_t)dev);
    return 0;
}

/* qcrypto_block_create() inside qcow2_set_up_encryption(). */
static int gc_luks(void *opaque, int (*init)(void *ctx, uint64_t hdrlen),
                   int (*write)(void *ctx, uint64_t off, const void *buf, size_t len), void *ctx)
{
    struct gluks_format_io io = {init, write, ctx};
    uint64_t payload;

    (void)opaque;
    return gbs_luks_format(&boot->args.create.luks, &io, &payload);
}

static const struct qcow2_create_io gc_io = {
    .alloc = {.read = gc_read, .write = gc_write, .mem = gc_mem, .discard = NULL},
    .truncate = gc_truncate,
    .length = gc_length,
    .luks = gc_luks,
};

/* A NUL-terminated copy of a fixed-size name field, or NULL when empty. */
static const char *name_arg(char *dst, const char *src, size_t cap)
{
    size_t n = strnlen(src, cap);

    if (n == 0 || n == cap) {
        return NULL;
    }
    memcpy(dst, src, n);
    dst[n] = 0;
    return dst;
}

static __attribute__((noreturn)) void fail(int64_t err, int stage)
{
    uint64_t args[4] = {(uint64_t)err, (uint64_t)stage, 0, 0};

    result_error(INSTAR_OP_CREATE, INSTAR_ERR_IO, args, NULL, 0);
}

/*
 * vpc_co_create(): a fixed image is its data and the footer after it; a
 * dynamic one the footer, the dynamic disk header, the BAT (all blocks
 * unallocated) and the footer again, in qemu's write order.
 */
static void plan_create_vpc(const struct instar_create_args *a)
{
    static uint8_t footer[512], hdr[1024], bat[512];
    bool fixed = a->flags & INSTAR_CREATE_VPC_FIXED;
    struct vpc_create c;
    struct rbuf rb;
    uint64_t off, bat_bytes;
    int r = 0;

    if (vpc_create_size(a->size, a->flags & INSTAR_CREATE_VPC_FORCE_SIZE, fixed, &c) < 0 ||
        c.size != a->size)
        fail(QCOW2_ALLOC_EINVAL, 0);
    vpc_create_footer(&c, a->vpc_timestamp, a->vpc_uuid, footer);
    if (fixed) {
        r = gdev_truncate(0, c.size + 512, INSTAR_TRUNC_OFF);
        if (r == 0)
            r = gdev_pwrite(0, c.size, footer, sizeof(footer));
    } else {
        bat_bytes = ((uint64_t)vpc_create_bat_entries(&c) * 4 + 511) & ~511ull;
        r = gdev_pwrite(0, 0, footer, sizeof(footer));
        if (r == 0)
            r = gdev_pwrite(0, 1536 + bat_bytes, footer, sizeof(footer));
        memset(bat, 0xff, sizeof(bat));
        for (off = 0; r == 0 && off < bat_bytes; off += sizeof(bat))
            r = gdev_pwrite(0, 1536 + off, bat, sizeof(bat));
        vpc_create_dyn_header(&c, hdr);
        if (r == 0)
            r = gdev_pwrite(0, 512, hdr, sizeof(hdr));
    }
    if (r < 0)
        fail(-gc_err(r), 0);
    if (rbuf_init(&rb, sizeof(struct instar_create_result)) < 0)
        fail(QCOW2_ALLOC_ENOMEM, 0);
    rbuf_send(&rb, INSTAR_OP_CREATE, 0);
}

/*
 * parallels_co_create(): the header sector, then the rest of the catalog's
 * clusters as zeros (blk_co_pwrite_zeroes without MAY_UNMAP: allocated).
 */
static void plan_create_parallels(const struct instar_create_args *a)
{
    static uint8_t sector[512];
    struct prl_create c;
    struct rbuf rb;
    int r;

    if (prl_create_layout(a->size, a->cluster_size, &c) < 0)
        fail(QCOW2_ALLOC_EINVAL, 0);
    prl_create_header(&c, sector);
    r = gdev_pwrite(0, 0, sector, sizeof(sector));
    if (r == 0 && c.bat_sectors > 1)
        r = gdev_zero(0, 512, ((uint64_t)c.bat_sectors - 1) * 512, INSTAR_ZERO_ALLOCATE);
    if (r < 0)
        fail(-gc_err(r), 0);
    if (rbuf_init(&rb, sizeof(struct instar_create_result)) < 0)
        fail(QCOW2_ALLOC_ENOMEM, 0);
    rbuf_send(&rb, INSTAR_OP_CREATE, 0);
}

/*
 * vhdx_co_create(): identifier and creator, the two headers, the file
 * grown past the BAT (and the data of a fixed image), the BAT when its
 * entries are not all zero, both region tables, the metadata, in qemu's
 * order.
 */
static void plan_create_vhdx(const struct instar_create_args *a)
{
    static uint8_t buf[65536], items[40];
    static const char creator[] = VHDX_CREATOR;
    struct vhdx_create c;
    struct rbuf rb;
    uint64_t off, i;
    size_t k;
    int r;

    memset(&c, 0, sizeof(c));
    c.size = a->size;
    c.log_size = a->vhdx_log_size;
    c.block_size = a->vhdx_block_size;
    c.fixed = a->flags & INSTAR_CREATE_VHDX_FIXED;
    c.zero_blocks = a->flags & INSTAR_CREATE_VHDX_ZERO;
    if (vhdx_create_layout(&c) < 0)
        fail(QCOW2_ALLOC_EINVAL, 0);
    memcpy(buf, "vhdxfile", 8);
    for (k = 0; k < sizeof(creator) - 1; k++) {
        buf[8 + 2 * k] = (uint8_t)creator[k];
        buf[9 + 2 * k] = 0;
    }
    r = gdev_pwrite(0, 0, buf, 8);
    if (r == 0)
        r = gdev_pwrite(0, 8, buf + 8, 2 * (sizeof(creator) - 1));
    for (i = 0; r == 0 && i < 2; i++) {
        vhdx_create_header(&c, (uint64_t)a->vhdx_seq + i, a->vhdx_guids[0], a->vhdx_guids[1], buf);
        r = gdev_pwrite(0, i ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET, buf, 80);
        if (r == 0)
            r = gdev_flush(0);
    }
    if (r == 0)
        r = gdev_truncate(0, c.data_offset + (c.fixed ? c.size : 0), INSTAR_TRUNC_OFF);
    for (off = 0; r == 0 && vhdx_create_bat_written(&c) && off < c.bat_length; off += sizeof(buf)) {
        size_t n = c.bat_length - off < sizeof(buf) ? (size_t)(c.bat_length - off) : sizeof(buf);

        for (k = 0; k < n; k += 8) {
            uint64_t e = vhdx_create_bat_entry(&c, (off + k) / 8);

            for (int b = 0; b < 8; b++)
                buf[k + b] = (uint8_t)(e >> (8 * b));
        }
        r = gdev_pwrite(0, c.bat_offset + off, buf, n);
    }
    vhdx_create_region(&c, buf);
    if (r == 0)
        r = gdev_pwrite(0, VHDX_REGION_OFFSET, buf, sizeof(buf));
    if (r == 0)
        r = gdev_pwrite(0, VHDX_REGION2_OFFSET, buf, sizeof(buf));
    vhdx_create_metadata(&c, a->vhdx_guids[2], buf, items);
    if (r == 0)
        r = gdev_pwrite(0, c.meta_offset, buf, sizeof(buf));
    if (r == 0)
        r = gdev_pwrite(0, c.meta_offset + 65536, items, sizeof(items));
    if (r < 0)
        fail(-gc_err(r), 0);
    if (rbuf_init(&rb, sizeof(struct instar_create_result)) < 0)
        fail(QCOW2_ALLOC_ENOMEM, 0);
    rbuf_send(&rb, INSTAR_OP_CREATE, 0);
}

/*
 * vdi_co_do_create(): the header, the block map (every entry unallocated,
 * or for a static image block i at i), and for a static image the file
 * grown to its data area's end (a hole).
 */
static void plan_create_vdi(const struct instar_create_args *a)
{
    static uint8_t hdr[VDI_HEADER_SIZE], buf[65536];
    bool is_static = a->flags & INSTAR_CREATE_VDI_STATIC;
    uint32_t blocks = vdi_create_blocks(a->size), i = 0;
    uint64_t bmap_bytes = ((uint64_t)blocks * 4 + 511) & ~511ull, off = 0;
    struct rbuf rb;
    int r;

    if (a->size % 512 || a->size > VDI_DISK_SIZE_MAX)
        fail(QCOW2_ALLOC_EINVAL, 0);
    vdi_create_header(a->size, is_static, a->vdi_uuids, a->vdi_uuids + 16, hdr);
    r = gdev_pwrite(0, 0, hdr, sizeof(hdr));
    while (r == 0 && off < bmap_bytes) {
        size_t n = bmap_bytes - off < sizeof(buf) ? (size_t)(bmap_bytes - off) : sizeof(buf);
        size_t j;

        for (j = 0; j < n; j += 4, i++) {
            uint32_t e = i >= blocks ? 0 : is_static ? i : VDI_UNALLOCATED;

            buf[j] = (uint8_t)e;
            buf[j + 1] = (uint8_t)(e >> 8);
            buf[j + 2] = (uint8_t)(e >> 16);
            buf[j + 3] = (uint8_t)(e >> 24);
        }
        r = gdev_pwrite(0, 512 + off, buf, n);
        off += n;
    }
    if (r == 0 && is_static)
        r = gdev_truncate(0, 512 + bmap_bytes + (uint64_t)blocks * VDI_BLOCK_SIZE,
                          INSTAR_TRUNC_OFF);
    if (r < 0)
        fail(-gc_err(r), 0);
    if (rbuf_init(&rb, sizeof(struct instar_create_result)) < 0)
        fail(QCOW2_ALLOC_ENOMEM, 0);
    rbuf_send(&rb, INSTAR_OP_CREATE, 0);
}

/*
 * vmdk_init_extent() on device dev: a flat extent is the file truncated
 * to its size; a sparse one the magic, the header, the file grown to the
 * first grain, the redundant grain directory, then the primary one.
 */
static int vmdk_init_extent(uint32_t dev, uint64_t filesize, bool flat, bool compress, bool zeroed)
{
    static uint8_t hdr[VMDK_CREATE_HEADER_LEN], buf[65536];
    struct vmdk_create_layout l;
    uint64_t gd_bytes, off;
    int r, k;

    if (flat)
        return gdev_truncate(dev, filesize, INSTAR_TRUNC_OFF);
    vmdk_create_layout(filesize, &l);
    vmdk_create_header(&l, compress, zeroed, hdr);
    r = gdev_pwrite(dev, 0, hdr, 4);
    if (r == 0)
        r = gdev_pwrite(dev, 4, hdr + 4, sizeof(hdr) - 4);
    if (r == 0)
        r = gdev_truncate(dev, l.grain_offset * 512, INSTAR_TRUNC_OFF);
    gd_bytes = (uint64_t)l.gd_sectors * 512;
    for (k = 0; r == 0 && k < 2; k++) {
        uint64_t at = (k == 0 ? l.rgd_offset : l.gd_offset) * 512;

        for (off = 0; r == 0 && off < gd_bytes; off += sizeof(buf)) {
            size_t n = gd_bytes - off < sizeof(buf) ? (size_t)(gd_bytes - off) : sizeof(buf);
            size_t j;

            for (j = 0; j < n; j += 4) {
                uint64_t i = (off + j) / 4;
                uint32_t e = i < l.gt_count ? vmdk_create_gd_entry(&l, k == 0, (uint32_t)i) : 0;

                buf[j] = (uint8_t)e;
                buf[j + 1] = (uint8_t)(e >> 8);
                buf[j + 2] = (uint8_t)(e >> 16);
                buf[j + 3] = (uint8_t)(e >> 24);
            }
            r = gdev_pwrite(dev, at + off, buf, n);
        }
    }
    return r;
}

/*
 * vmdk_co_do_create(): device 0 (the image, or the descriptor file: a
 * split sparse one is first laid out as an empty sparse extent, as qemu
 * does, then overwritten), then each extent file, then the descriptor
 * (at sector 1 of a monolithic sparse image; else at 0 and the file cut
 * to it).
 */
static void plan_create_vmdk(const struct instar_create_args *a)
{
    static char hw[INSTAR_VMDK_STR_MAX], tools[INSTAR_VMDK_STR_MAX], stem[INSTAR_NAME_MAX],
        suffix[INSTAR_NAME_MAX], hint[INSTAR_NAME_MAX];
    static const char *const types[] = {"monolithicSparse", "monolithicFlat",
                                        "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
                                        "streamOptimized"};
    static const char *const adapters[] = {"ide", "buslogic", "lsilogic", "legacyESX"};
    bool flat = a->flags & INSTAR_CREATE_VMDK_FLAT, split = a->flags & INSTAR_CREATE_VMDK_SPLIT;
    bool compress = a->flags & INSTAR_CREATE_VMDK_STREAM,
         zeroed = a->flags & INSTAR_CREATE_VMDK_ZEROED;
    uint64_t n = vmdk_create_extents(a->size, flat, split), done = 0, i;
    struct vmdk_create_desc d;
    struct rbuf rb;
    size_t cap;
    char *desc;
    long len;
    int r;

    if (a->size % 512 || a->size > INT64_MAX || a->vmdk_adapter > INSTAR_VMDK_LEGACYESX ||
        (compress && (flat || split)) || (flat && zeroed) ||
        (!a->vmdk_first_only && n + 1 != boot->ndevices) ||
        (a->vmdk_first_only && boot->ndevices != 1))
        fail(QCOW2_ALLOC_EINVAL, 0);
    memset(&d, 0, sizeof(d));
    d.cid = a->vmdk_cid;
    d.parent_cid = a->vmdk_parent_cid;
    d.create_type = types[flat ? (split ? 3 : 1) : split ? 2 : compress ? 4 : 0];
    d.parent_hint = name_arg(hint, a->backing_file, sizeof(a->backing_file));
    d.hwversion = name_arg(hw, a->vmdk_hwversion, sizeof(a->vmdk_hwversion));
    d.toolsversion = name_arg(tools, a->vmdk_toolsversion, sizeof(a->vmdk_toolsversion));
    d.adapter = adapters[a->vmdk_adapter];
    d.size = a->size;
    d.flat = flat;
    d.split = split;
    d.stem = name_arg(stem, a->vmdk_stem, sizeof(a->vmdk_stem));
    d.suffix = name_arg(suffix, a->vmdk_suffix, sizeof(a->vmdk_suffix));
    /* name_arg() gives NULL for "": hwversion= and toolsversion= are empty strings. */
    if (!d.hwversion)
        d.hwversion = "";
    if (!d.toolsversion)
        d.toolsversion = "";
    if (!d.stem)
        d.stem = "";
    if (!d.suffix)
        d.suffix = "";
    /* The text: its fixed lines, the fields, and a line per extent (n <= 4096 from the host). */
    cap = 4096 + (d.parent_hint ? strlen(d.parent_hint) : 0) + strlen(d.hwversion) +
          strlen(d.toolsversion) + (size_t)(n + 1) * (strlen(d.stem) + strlen(d.suffix) + 64);
    desc = malloc(cap);
    if (!desc)
        fail(QCOW2_ALLOC_ENOMEM, 0);
    len = vmdk_create_desc_text(&d, desc, cap);
    if (len < 0)
        fail(QCOW2_ALLOC_EINVAL, 0);
    r = vmdk_init_extent(0, split || flat ? 0 : a->size, flat, compress, zeroed);
    for (i = 1; r == 0 && !a->vmdk_first_only && i <= n; i++) {
        uint64_t cur = split && a->size - done > VMDK_SPLIT_SIZE ? VMDK_SPLIT_SIZE : a->size - done;

        r = vmdk_init_extent((uint32_t)i, cur, flat, compress, zeroed);
        done += cur;
    }
    if (r < 0)
        fail(-gc_err(r), 0);
    if (!a->vmdk_first_only) {
        r = gdev_pwrite(0, split || flat ? 0 : 0x200, desc, (size_t)len);
        if (r < 0)
            fail(-gc_err(r), 1);
        if (split || flat)
            r = gdev_truncate(0, (uint64_t)len, INSTAR_TRUNC_OFF);
        if (r < 0)
            fail(-gc_err(r), 2);
    }
    if (rbuf_init(&rb, sizeof(struct instar_create_result)) < 0)
        fail(QCOW2_ALLOC_ENOMEM, 0);
    rbuf_send(&rb, INSTAR_OP_CREATE, 0);
}

/* block_crypto_create_init_func(): the file sized for header and payload. */
static int lc_init(void *opaque, uint64_t hdrlen)
{
    const struct instar_create_args *a = opaque;
    uint32_t m = a->prealloc == INSTAR_PREALLOC_FALLOC ? INSTAR_TRUNC_FALLOC
                 : a->prealloc == INSTAR_PREALLOC_FULL ? INSTAR_TRUNC_FULL
                                                       : INSTAR_TRUNC_OFF;
    int r;

    if (a->size > INT64_MAX || hdrlen > INT64_MAX - a->size)
        return -QCOW2_ALLOC_EFBIG;
    r = gdev_truncate(0, a->size + hdrlen, m);
    return r < 0 ? gc_err(r) : 0;
}

static int lc_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    return gc_write(opaque, off, buf, len);
}

/*
 * block_crypto_co_create_generic(): a raw LUKS volume, its header and
 * key material before the payload (the file sized first, as the initfunc
 * truncates it), slot 0's key material written before the header.
 */
static void plan_create_luks(const struct instar_create_args *a)
{
    struct gluks_format_io io = {lc_init, lc_write, (void *)a};
    struct rbuf rb;
    uint64_t payload;
    int r;

    r = gbs_luks_format(&a->luks, &io, &payload);
    if (r < 0)
        fail(-r, 0);
    if (gdev_flush(0) < 0)
        fail(QCOW2_ALLOC_EIO, 0);
    if (rbuf_init(&rb, sizeof(struct instar_create_result)) < 0)
        fail(QCOW2_ALLOC_ENOMEM, 0);
    rbuf_send(&rb, INSTAR_OP_CREATE, 0);
}

void plan_create(void)
{
    static char backing[INSTAR_NAME_MAX], fmt[INSTAR_FMT_NAME_MAX], data[INSTAR_NAME_MAX];
    const struct instar_create_args *a = &boot->args.create;
    struct qcow2_create_opts o;
    struct gc_state st;
    struct rbuf rb;
    int stage = 0;
    int ret;

    if (a->flags & INSTAR_CREATE_VPC)
        plan_create_vpc(a);
    if (a->flags & INSTAR_CREATE_VDI)
        plan_create_vdi(a);
    if (a->flags & INSTAR_CREATE_VHDX)
        plan_create_vhdx(a);
    if (a->flags & INSTAR_CREATE_PARALLELS)
        plan_create_parallels(a);
    if (a->flags & INSTAR_CREATE_LUKS)
        plan_create_luks(a);
    if (a->flags & INSTAR_CREATE_VMDK)
        plan_create_vmdk(a);
    memset(&o, 0, sizeof(o));
    memset(&st, 0, sizeof(st));
    if (a->cluster_size < 512 || a->cluster_size > (2u << 20) ||
        (a->cluster_size & (a->cluster_size - 1)) || a->refcount_bits == 0 ||
        a->refcount_bits > 64 || (a->refcount_bits & (a->refcount_bits - 1))) {
        fail(QCOW2_ALLOC_EINVAL, 0);
    }
    o.size = a->size;
    o.cluster_bits = (uint32_t)__builtin_ctzll(a->cluster_size);
    o.version = a->version;
    o.refcount_order = (uint32_t)__builtin_ctz(a->refcount_bits);
    o.compression_type = a->compression_type;
    o.prealloc = a->prealloc;
    o.lazy_refcounts = a->flags & INSTAR_CREATE_LAZY_REFCOUNTS;
    o.extended_l2 = a->flags & INSTAR_CREATE_EXTENDED_L2;
    o.data_file_raw = a->flags & INSTAR_CREATE_DATA_FILE_RAW;
    o.backing_file = name_arg(backing, a->backing_file, sizeof(a->backing_file));
    o.backing_fmt = name_arg(fmt, a->backing_fmt, sizeof(a->backing_fmt));
    o.data_file = name_arg(data, a->data_file, sizeof(a->data_file));
    o.encrypt_luks = (a->flags & INSTAR_CREATE_ENCRYPT) != 0;
    o.encrypt_aes = (a->flags & INSTAR_CREATE_ENCRYPT_AES) != 0;
    if (o.data_file) {
        if (boot->ndevices < 2) {
            fail(QCOW2_ALLOC_EINVAL, 0);
        }
        st.has_data = true;
    }

    ret = qcow2_create(&o, &gc_io, &st, &stage);
    if (ret < 0) {
        fail(-ret, stage);
    }
    if (rbuf_init(&rb, sizeof(struct instar_create_result)) < 0) {
        fail(QCOW2_ALLOC_ENOMEM, 0);
    }
    rbuf_send(&rb, INSTAR_OP_CREATE, 0);
}
