/*
 * formats/qcow2/amend.c: the lazy refcounts field, the extension scan
 * the upgrade relies on, the progress arithmetic, and the refcount width
 * change over an in-memory copy of an oracle image, byte for byte against
 * qemu-img's own amend of it.  (The bytes an amend writes are compared with
 * qemu-img's in parity/test_amend_parity.py.)
 */
#include <criterion/criterion.h>
#include <string.h>

#include "qcow2/alloc.h"
#include "qcow2/amend.h"
#include "qcow2_test_util.h"

struct rec {
    uint8_t file[128];
    int writes;
    uint64_t off;
    size_t len;
    int fail; /* negated errno to return, or 0 */
};

static int rec_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    struct rec *r = opaque;

    r->writes++;
    r->off = off;
    r->len = len;
    if (r->fail)
        return r->fail;
    memcpy(r->file + off, buf, len);
    return 0;
}

Test(qcow2_amend, lazy_on_sets_bit_0_of_the_compatible_features)
{
    struct rec r = {0};
    int e;

    cr_assert_eq(qcow2_amend_lazy(3, UINT64_C(0x8000000000000002), true, rec_pwrite, &r, &e), 0);
    cr_assert_eq(r.writes, 1);
    cr_assert_eq(r.off, 80);
    cr_assert_eq(r.len, 8);
    cr_assert_eq(r.file[80], 0x80);
    cr_assert_eq(r.file[87], 0x03);
}

Test(qcow2_amend, lazy_off_clears_only_bit_0)
{
    struct rec r = {0};
    int e;

    cr_assert_eq(qcow2_amend_lazy(3, 3, false, rec_pwrite, &r, &e), 0);
    cr_assert_eq(r.writes, 1);
    cr_assert_eq(r.file[87], 0x02);
}

Test(qcow2_amend, unchanged_bit_writes_nothing)
{
    struct rec r = {0};
    int e;

    cr_assert_eq(qcow2_amend_lazy(3, 1, true, rec_pwrite, &r, &e), 0);
    cr_assert_eq(qcow2_amend_lazy(2, 0, false, rec_pwrite, &r, &e), 0);
    cr_assert_eq(r.writes, 0);
}

Test(qcow2_amend, lazy_on_a_v2_image_fails)
{
    struct rec r = {0};
    int e;

    cr_assert_eq(qcow2_amend_lazy(2, 0, true, rec_pwrite, &r, &e), -QCOW2_AMEND_ERR_LAZY_V2);
    cr_assert_eq(r.writes, 0);
}

Test(qcow2_amend, write_failure_is_reported_with_its_errno)
{
    struct rec r = {.fail = -5};
    int e;

    cr_assert_eq(qcow2_amend_lazy(3, 0, true, rec_pwrite, &r, &e), -QCOW2_AMEND_ERR_UPDATE_HEADER);
    cr_assert_eq(e, 5);
}

static void ext(uint8_t *p, uint32_t type, uint32_t len)
{
    p[0] = (uint8_t)(type >> 24);
    p[1] = (uint8_t)(type >> 16);
    p[2] = (uint8_t)(type >> 8);
    p[3] = (uint8_t)type;
    p[4] = (uint8_t)(len >> 24);
    p[5] = (uint8_t)(len >> 16);
    p[6] = (uint8_t)(len >> 8);
    p[7] = (uint8_t)len;
}

Test(qcow2_amend, known_extensions)
{
    uint8_t b[256] = {0};

    ext(b + 72, 0xe2792aca, 5); /* backing format "qcow2", padded to 8 */
    memcpy(b + 80, "qcow2", 5);
    ext(b + 88, 0, 0);
    cr_assert(qcow2_amend_known_exts(b, sizeof(b), 72));
    ext(b + 88, 0x12345678, 0);
    ext(b + 96, 0, 0);
    cr_assert_not(qcow2_amend_known_exts(b, sizeof(b), 72));
}

Test(qcow2_amend, truncated_extension_area_is_not_known)
{
    uint8_t b[96] = {0};

    ext(b + 72, 0xe2792aca, 100);
    cr_assert_not(qcow2_amend_known_exts(b, sizeof(b), 72));
    memset(b, 0, sizeof(b));
    ext(b + 72, 0xe2792aca, 8);
    ext(b + 88, 0xe2792aca, 0); /* no terminator before the end */
    cr_assert_not(qcow2_amend_known_exts(b, sizeof(b), 72));
}

/* What qemu-img's amend_status_cb() gets: num / den per call. */
struct prog {
    uint64_t num[16], den[16];
    int n;
};

static void prog_print(void *opaque, uint64_t num, uint64_t den)
{
    struct prog *p = opaque;

    cr_assert_lt(p->n, 16);
    p->num[p->n] = num;
    p->den[p->n++] = den;
}

/*
 * qcow2_amend_helper_cb() with two operations, worked by hand from its
 * formula: the upgrade (work 2) projects the same again for the refcount
 * change (den 4); then the refcount change (work 30) adds to the 2 done.
 */
Test(qcow2_amend, progress_over_two_operations)
{
    struct prog out = {0};
    struct qcow2_amend_progress p = {.total_ops = 2, .print = prog_print, .opaque = &out};
    static const uint64_t num[] = {0, 1, 2, 2, 17, 32}, den[] = {4, 4, 4, 32, 32, 32};

    p.cur_op = QCOW2_AMEND_OP_UPGRADE;
    qcow2_amend_progress_report(&p, 0, 2);
    qcow2_amend_progress_report(&p, 1, 2);
    qcow2_amend_progress_report(&p, 2, 2);
    p.cur_op = QCOW2_AMEND_OP_REFCOUNT;
    qcow2_amend_progress_report(&p, 0, 30);
    qcow2_amend_progress_report(&p, 15, 30);
    qcow2_amend_progress_report(&p, 30, 30);
    cr_assert_eq(out.n, 6);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(out.num[i], num[i], "call %d: num %llu", i, (unsigned long long)out.num[i]);
        cr_assert_eq(out.den[i], den[i], "call %d: den %llu", i, (unsigned long long)out.den[i]);
    }
}

Test(qcow2_amend, progress_without_print_prints_nothing)
{
    struct qcow2_amend_progress p = {.total_ops = 1};

    p.cur_op = QCOW2_AMEND_OP_DOWNGRADE;
    qcow2_amend_progress_report(&p, 1, 2); /* must not crash */
    qcow2_amend_progress_report(NULL, 1, 2);
}

static const struct qcow2_alloc_ops amops = {memfile_read, memfile_write, memfile_mem,
                                             memfile_discard, memfile_flush};

/*
 * src.qcow2 and qemu-img's amend of a copy, made twice: deterministic (no
 * snapshot times, no compressed writes, whose clusters qemu places in the
 * order its threads finish).
 */
#define RO_CMDS(create, bits)                                                                      \
    "qemu-img create -q -f qcow2 -o " create " src.qcow2 64M && "                                  \
    "qemu-io -f qcow2 -c 'write -P 7 0 1M' -c 'write -P 3 8M 256k' -c 'write -P 9 30M 3M' "        \
    "src.qcow2 && cp src.qcow2 dst.qcow2 && qemu-img amend -o refcount_bits=" bits " dst.qcow2"

static void reforder_same_as_qemu(const char *cmds, uint32_t new_order)
{
    struct img im = img_make(cmds, "src.qcow2");
    struct qcow2_amend_reforder r;
    struct memfile f;

    memfile_copy(&f, im.p, im.len);
    memset(&r, 0, sizeof(r));
    r.ops = &amops;
    r.opaque = &f;
    r.cluster_bits = (uint32_t)get_be(im.p, 20, 4);
    r.old_order = (uint32_t)get_be(im.p, 96, 4);
    r.new_order = new_order;
    r.reftable_offset = get_be(im.p, 48, 8);
    r.reftable_clusters = get_be(im.p, 56, 4);
    cr_assert_eq(qcow2_amend_refcount_order(&r), 0);
    im = img_make(cmds, "dst.qcow2");
    cr_assert_eq(f.len, im.len, "length %zu, qemu %zu", (size_t)f.len, im.len);
    for (size_t i = 0; i < im.len; i++)
        cr_assert_eq(f.p[i], im.p[i], "byte %zu differs from qemu-img's", i);
    free(f.p);
}

Test(qcow2_amend, refcount_order_16_to_64_as_qemu)
{
    reforder_same_as_qemu(RO_CMDS("cluster_size=65536", "64"), 6);
}

Test(qcow2_amend, refcount_order_1_to_8_small_clusters_as_qemu)
{
    reforder_same_as_qemu(RO_CMDS("cluster_size=512,refcount_bits=1", "8"), 3);
}

Test(qcow2_amend, refcount_order_64_to_8_as_qemu)
{
    reforder_same_as_qemu(RO_CMDS("cluster_size=4096,refcount_bits=64", "8"), 3);
}

Test(qcow2_amend, refcount_too_wide_is_refused_before_any_write)
{
    struct img im = img_make("qemu-img create -q -f qcow2 src.qcow2 64M && "
                             "qemu-io -f qcow2 -c 'write -c -P 3 8M 256k' src.qcow2",
                             "src.qcow2");
    struct qcow2_amend_reforder r;
    struct memfile f;

    memfile_copy(&f, im.p, im.len);
    memset(&r, 0, sizeof(r));
    r.ops = &amops;
    r.opaque = &f;
    r.cluster_bits = 16;
    r.old_order = 4;
    r.new_order = 1; /* the compressed write shares a cluster four times */
    r.reftable_offset = get_be(im.p, 48, 8);
    r.reftable_clusters = get_be(im.p, 56, 4);
    cr_assert_eq(qcow2_amend_refcount_order(&r), -QCOW2_AMEND_ERR_REFCOUNT_DECREASE);
    cr_assert_gt(r.bad_refcount, 3);
    cr_assert_eq(f.len, im.len);
    cr_assert(memcmp(f.p, im.p, im.len) == 0, "written although refused");
    free(f.p);
}
