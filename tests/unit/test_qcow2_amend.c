/*
 * formats/qcow2/amend.c: the lazy refcounts field and the extension scan
 * the upgrade relies on.  (The bytes an amend writes are compared with
 * qemu-img's in parity/test_amend_parity.py.)
 */
#include <criterion/criterion.h>
#include <string.h>

#include "qcow2/amend.h"

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
