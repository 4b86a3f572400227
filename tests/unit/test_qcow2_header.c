/*
 * qcow2_header_parse / qcow2_ext_parse: one test per error code, each on a
 * qemu-img-made image with fields patched.  Every expectation below was
 * checked against "qemu-img info" (7.2) on the same bytes.
 */
#include "qcow2_test_util.h"

#include "qcow2/header.h"

static struct qcow2_err_info ei;
static struct qcow2_header h;
static struct qcow2_exts x;

static struct img v3(void)
{
    return img_make("qemu-img create -f qcow2 i 64M", "i");
}

static int parse(struct img im)
{
    int ret = qcow2_header_parse(im.p, im.len, &h, &ei);
    if (ret == 0)
        ret = qcow2_ext_parse(im.p, im.len, &h, NULL, NULL, &x, &ei);
    return ret;
}

#define EXPECT(im, code) cr_assert_eq(parse(im), -(code), "got %d", parse(im))

Test(qcow2_header, clean_v3)
{
    struct img im = v3();

    cr_assert_eq(parse(im), 0);
    cr_assert_eq(h.version, 3);
    cr_assert_eq(h.cluster_size, 65536);
    cr_assert_eq(h.refcount_bits, 16);
    cr_assert_eq(h.disk_size, 64u << 20);
    cr_assert_eq(h.compression_type, 0);
    cr_assert(!x.has_backing_file);
}

Test(qcow2_header, clean_v2_with_backing)
{
    struct img im = img_make("qemu-img create -f qcow2 b 64M && qemu-img create -f qcow2 -o "
                             "compat=0.10 -b b -F qcow2 i 32M",
                             "i");

    cr_assert_eq(parse(im), 0);
    cr_assert_eq(h.version, 2);
    cr_assert_eq(h.header_length, 72);
    cr_assert(x.has_backing_file);
    cr_assert_eq(x.backing_file_len, 1);
    cr_assert_eq(x.backing_file[0], 'b');
    cr_assert(x.has_backing_fmt);
    cr_assert_eq(x.backing_fmt_len, 5);
    cr_assert_eq(memcmp(x.backing_fmt, "qcow2", 5), 0);
}

Test(qcow2_header, truncated_header_reads_zeros)
{
    struct img im = v3();

    im.len = 8; /* magic + version 3, then zeros: cluster_bits 0 */
    EXPECT(im, QCOW2_ERR_CLUSTER_BITS);
    cr_assert_eq(ei.args[0], 0);
}

Test(qcow2_header, not_qcow2)
{
    struct img im = v3();
    PUT32(im, 0, 0x12345678);
    EXPECT(im, QCOW2_ERR_NOT_QCOW2);
}

Test(qcow2_header, version)
{
    struct img im = v3();
    PUT32(im, 4, 4);
    EXPECT(im, QCOW2_ERR_VERSION);
    cr_assert_eq(ei.args[0], 4);
}

Test(qcow2_header, cluster_bits)
{
    struct img im = v3();
    PUT32(im, 20, 8);
    EXPECT(im, QCOW2_ERR_CLUSTER_BITS);
    cr_assert_eq(ei.args[0], 8);
    PUT32(im, 20, 22);
    EXPECT(im, QCOW2_ERR_CLUSTER_BITS);
    cr_assert_eq(ei.args[0], 22);
}

Test(qcow2_header, header_too_short)
{
    struct img im = v3();
    PUT32(im, 100, 100);
    EXPECT(im, QCOW2_ERR_HEADER_TOO_SHORT);
}

Test(qcow2_header, header_exceeds_cluster)
{
    struct img im = v3();
    PUT32(im, 20, 9);
    PUT32(im, 100, 1024);
    EXPECT(im, QCOW2_ERR_HEADER_EXCEEDS_CLUSTER);
}

Test(qcow2_header, backing_offset)
{
    struct img im = v3();
    PUT64(im, 8, 65537);
    EXPECT(im, QCOW2_ERR_BACKING_OFFSET);
}

Test(qcow2_header, compression)
{
    struct img im = v3();
    PUT8(im, 104, 5);
    EXPECT(im, QCOW2_ERR_COMPRESSION_TYPE);
    cr_assert_eq(ei.args[0], 5);
    PUT8(im, 104, 0);
    PUT64(im, 72, 8);
    EXPECT(im, QCOW2_ERR_COMPRESSION_BIT_SET);
    PUT64(im, 72, 0);
    PUT8(im, 104, 1);
    EXPECT(im, QCOW2_ERR_COMPRESSION_BIT_UNSET);
}

Test(qcow2_header, unsupported_feature_unnamed)
{
    struct img im = v3();
    PUT64(im, 72, 1ull << 20);
    EXPECT(im, QCOW2_ERR_UNSUPPORTED_FEATURE);
    cr_assert_eq(ei.slen, strlen("Unknown incompatible feature: 100000"));
    cr_assert_eq(memcmp(ei.s, "Unknown incompatible feature: 100000", ei.slen), 0);
}

Test(qcow2_header, unsupported_feature_named)
{
    struct img im = v3();
    static const char want[] = "fancy, xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx, "
                               "Unknown incompatible feature: 20000000000";
    uint8_t ft[3 * 48] = {0};
    size_t i;

    /* (type, bit, name): incompatible 5, compatible 0, incompatible 40 */
    ft[0] = 0, ft[1] = 5, memcpy(ft + 2, "fancy", 5);
    ft[48] = 1, ft[49] = 0, memcpy(ft + 50, "lazy", 4);
    ft[96] = 0, ft[97] = 40;
    for (i = 0; i < 46; i++)
        ft[98 + i] = 'x';
    PUT64(im, 72, (1ull << 5) | (1ull << 40) | (1ull << 41));
    PUT32(im, 112, QCOW2_EXT_FEATURES);
    PUT32(im, 116, sizeof(ft));
    memcpy(im.p + 120, ft, sizeof(ft));
    EXPECT(im, QCOW2_ERR_UNSUPPORTED_FEATURE);
    cr_assert_eq(ei.slen, strlen(want));
    cr_assert_eq(memcmp(ei.s, want, ei.slen), 0);
}

Test(qcow2_header, subcluster_size)
{
    struct img im = v3();
    PUT64(im, 72, QCOW2_INCOMPAT_EXTL2);
    PUT32(im, 20, 13);
    EXPECT(im, QCOW2_ERR_SUBCLUSTER_SIZE);
    cr_assert_eq(ei.args[0], 256);
}

Test(qcow2_header, refcount_order)
{
    struct img im = v3();
    PUT32(im, 96, 7);
    EXPECT(im, QCOW2_ERR_REFCOUNT_ORDER);
}

Test(qcow2_header, reftable)
{
    struct img im = v3();
    PUT32(im, 56, 0);
    EXPECT(im, QCOW2_ERR_NO_REFTABLE);
    PUT32(im, 56, 129);
    EXPECT(im, QCOW2_ERR_REFTABLE_TOO_LARGE);
    PUT32(im, 56, 1);
    PUT64(im, 48, 512);
    EXPECT(im, QCOW2_ERR_REFTABLE_OFFSET);
    PUT64(im, 48, 0x7fffffffc0000000ull);
    EXPECT(im, QCOW2_ERR_REFTABLE_READ);
}

Test(qcow2_header, snapshot_table)
{
    struct img im = v3();
    PUT32(im, 60, 65537);
    EXPECT(im, QCOW2_ERR_SNAPTABLE_TOO_LARGE);
    PUT32(im, 60, 0);
    PUT64(im, 64, 100);
    EXPECT(im, QCOW2_ERR_SNAPTABLE_OFFSET);
}

Test(qcow2_header, l1_table)
{
    struct img im = v3();
    PUT32(im, 36, 4 * 1024 * 1024 + 1);
    EXPECT(im, QCOW2_ERR_L1_TOO_LARGE);
    PUT32(im, 36, 1);
    PUT64(im, 40, 512);
    EXPECT(im, QCOW2_ERR_L1_OFFSET);
    PUT32(im, 36, 4 * 1024 * 1024);
    PUT64(im, 40, 0x7fffffffffff0000ull);
    EXPECT(im, QCOW2_ERR_L1_OFFSET);
    PUT32(im, 36, 1);
    PUT64(im, 40, 0x7fffffffc0000000ull);
    EXPECT(im, QCOW2_ERR_L1_READ);
}

Test(qcow2_header, image_size)
{
    struct img im = v3();
    PUT64(im, 24, 1ull << 62);
    EXPECT(im, QCOW2_ERR_IMAGE_TOO_BIG);
    PUT64(im, 24, 1ull << 40);
    EXPECT(im, QCOW2_ERR_L1_TOO_SMALL);
}

Test(qcow2_header, size_wraps_l1_index)
{
    struct img im = v3();

    /* size + 2^29 - 1 wraps: the L1 check passes, the block layer fails. */
    PUT64(im, 24, UINT64_MAX - 511);
    cr_assert_eq(parse(im), 0);
    cr_assert_eq(h.disk_size, UINT64_MAX - 511);
    cr_assert_eq(qcow2_size_check(&h), -QCOW2_ERR_SIZE_TOO_LARGE);
}

Test(qcow2_header, size_rounds_down)
{
    struct img im = v3();

    PUT64(im, 24, (64u << 20) + 1000);
    cr_assert_eq(parse(im), 0);
    cr_assert_eq(h.disk_size, 67109376); /* qemu-img: 67109376 bytes */
    cr_assert_eq(qcow2_size_check(&h), 0);
}

Test(qcow2_header, encryption_method)
{
    struct img im = v3();
    PUT32(im, 32, 3);
    EXPECT(im, QCOW2_ERR_ENCRYPT_METHOD);
    cr_assert_eq(ei.args[0], 3);
    PUT32(im, 32, 0xfffffffe);
    EXPECT(im, QCOW2_ERR_ENCRYPT_METHOD_NEG);
    cr_assert_eq(ei.args[0], 2);
}

static void ext(struct img im, uint32_t magic, uint32_t len)
{
    PUT32(im, 112, magic);
    PUT32(im, 116, len);
}

Test(qcow2_ext, too_large)
{
    struct img im = v3();
    ext(im, QCOW2_EXT_BACKING_FMT, 70000);
    EXPECT(im, QCOW2_ERR_EXT_TOO_LARGE);
}

Test(qcow2_ext, backing_fmt_len)
{
    struct img im = v3();
    ext(im, QCOW2_EXT_BACKING_FMT, 16);
    EXPECT(im, QCOW2_ERR_EXT_BACKING_FMT_LEN);
    cr_assert_eq(ei.args[0], 16);
}

Test(qcow2_ext, crypto)
{
    struct img im = v3();
    ext(im, QCOW2_EXT_CRYPTO, 16);
    EXPECT(im, QCOW2_ERR_EXT_CRYPTO_UNEXPECTED);
    PUT32(im, 32, 2);
    ext(im, QCOW2_EXT_CRYPTO, 8);
    EXPECT(im, QCOW2_ERR_EXT_CRYPTO_SIZE);
    cr_assert_eq(ei.args[0], 8);
    ext(im, QCOW2_EXT_CRYPTO, 16);
    PUT64(im, 120, 100);
    EXPECT(im, QCOW2_ERR_EXT_CRYPTO_OFFSET);
    cr_assert_eq(ei.args[0], 100);
    cr_assert_eq(ei.args[1], 65536);
}

Test(qcow2_ext, bitmaps)
{
    struct img im = v3();
    ext(im, QCOW2_EXT_BITMAPS, 8);
    EXPECT(im, QCOW2_ERR_EXT_BITMAPS_LEN);
    ext(im, QCOW2_EXT_BITMAPS, 24);
    cr_assert_eq(parse(im), 0); /* no autoclear bit: a warning only */
    cr_assert_eq(x.warn_bitmaps, 1);
    cr_assert_eq(x.nb_bitmaps, 0);
    PUT64(im, 88, QCOW2_AUTOCLEAR_BITMAPS);
    PUT32(im, 124, 1);
    EXPECT(im, QCOW2_ERR_EXT_BITMAPS_RESERVED);
    PUT32(im, 124, 0);
    PUT32(im, 120, 65536);
    EXPECT(im, QCOW2_ERR_EXT_BITMAPS_TOO_MANY);
    cr_assert_eq(ei.args[0], 65536);
    PUT32(im, 120, 0);
    EXPECT(im, QCOW2_ERR_EXT_BITMAPS_ZERO);
    PUT32(im, 120, 1);
    PUT64(im, 136, 5);
    EXPECT(im, QCOW2_ERR_EXT_BITMAPS_DIR_OFFSET);
    PUT64(im, 136, 0);
    PUT64(im, 128, 1ull << 30);
    EXPECT(im, QCOW2_ERR_EXT_BITMAPS_DIR_SIZE);
    cr_assert_eq(ei.args[0], 1ull << 30);
}

Test(qcow2_ext, backing_name_too_long)
{
    struct img im = img_make("qemu-img create -f qcow2 b 64M && qemu-img create -f qcow2 -b b "
                             "-F qcow2 i 64M",
                             "i");
    PUT32(im, 16, 1024);
    EXPECT(im, QCOW2_ERR_BACKING_NAME_TOO_LONG);
}

Test(qcow2_ext, data_file)
{
    struct img im = img_make("qemu-img create -f qcow2 -o data_file=d,data_file_raw=on i 64M", "i");

    cr_assert_eq(parse(im), 0);
    cr_assert(x.has_data_file);
    cr_assert_eq(x.data_file_len, 1);
    cr_assert(h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE);
    cr_assert(h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW);
}

Test(qcow2_header, probe)
{
    struct img im = v3();

    cr_assert(qcow2_header_probe(im.p, im.len));
    PUT32(im, 4, 1);
    cr_assert(!qcow2_header_probe(im.p, im.len));
}
