/*
 * The host side of check: INSTAR_HC_REPORT batch validation and printing,
 * INSTAR_OP_CHECK result validation, and the human/JSON renderers, whose
 * expected text comes from running the oracle (qemu-img 7.2) on images it
 * makes itself.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgcheck.h"
#include "instar/abi.h"
#include "qcow2/check_err.h"
#include "result.h"
#include "vmm.h"

/* --- Report batches --- */

static size_t put_rec(uint8_t *b, size_t off, int32_t code, uint16_t flags, uint64_t a0,
                      uint64_t a1, uint64_t a2, const char *s)
{
    struct instar_report_rec r;
    size_t slen = s ? strlen(s) : 0, need = sizeof(r) + ((slen + 7) & ~(size_t)7);

    memset(&r, 0, sizeof(r));
    r.code = code;
    r.flags = flags;
    r.slen = (uint16_t)slen;
    r.args[0] = a0;
    r.args[1] = a1;
    r.args[2] = a2;
    memset(b + off, 0, need);
    memcpy(b + off, &r, sizeof(r));
    if (slen)
        memcpy(b + off + sizeof(r), s, slen);
    return off + need;
}

static char *print_batch(const void *b, size_t len, int *rc)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);

    cr_assert_not_null(f);
    *rc = check_print_batch(f, b, len);
    fclose(f);
    return buf;
}

Test(check_report, valid_batch_prints_in_order)
{
    static uint8_t b[512] __attribute__((aligned(8)));
    size_t len = 0;
    char *out;
    int rc;

    len = put_rec(b, len, QCOW2_MSG_LEAKED, 0, 5, 1, 0, NULL);
    len = put_rec(b, len, QCOW2_MSG_REFCOUNT_ERROR, INSTAR_REC_PREFIX, 6, 0, 1, "ignored");
    cr_assert_eq(result_report_validate(b, len), RESULT_OK);
    out = print_batch(b, len, &rc);
    cr_assert_eq(rc, 0);
    /* The lines qemu-img prints (qemu-img-7.2-notes.md, "check"). */
    cr_assert_str_eq(out, "Leaked cluster 5 refcount=1 reference=0\n"
                          "qemu-img: ERROR cluster 6 refcount=0 reference=1\n");
    free(out);
}

Test(check_report, empty_batch_is_valid)
{
    cr_assert_eq(result_report_validate(NULL, 0), RESULT_OK);
}

Test(check_report, malformed_batches_print_nothing)
{
    static uint8_t b[1024] __attribute__((aligned(8)));
    struct instar_report_rec r;
    size_t len;
    char *out;
    int rc;

    /* A code outside 2000..2499, or inside but unknown. */
    len = put_rec(b, 0, 1001, 0, 0, 0, 0, NULL);
    cr_expect_eq(result_report_validate(b, len), RESULT_BAD_VALUE);
    len = put_rec(b, 0, 2499, 0, 0, 0, 0, NULL);
    cr_expect_eq(result_report_validate(b, len), RESULT_BAD_VALUE);
    len = put_rec(b, 0, -2000, 0, 0, 0, 0, NULL);
    cr_expect_eq(result_report_validate(b, len), RESULT_BAD_VALUE);
    /* Unknown flags. */
    len = put_rec(b, 0, QCOW2_MSG_LEAKED, 0x8000, 0, 0, 0, NULL);
    cr_expect_eq(result_report_validate(b, len), RESULT_BAD_VALUE);
    /* A string running past the batch. */
    len = put_rec(b, 0, QCOW2_MSG_LEAKED, 0, 0, 0, 0, "abcdefgh");
    cr_expect_eq(result_report_validate(b, len - 8), RESULT_BAD_STR);
    memcpy(&r, b, sizeof(r));
    r.slen = 60000;
    memcpy(b, &r, sizeof(r));
    cr_expect_eq(result_report_validate(b, len), RESULT_BAD_STR);
    /* Non-zero padding after the string. */
    len = put_rec(b, 0, QCOW2_MSG_LEAKED, 0, 0, 0, 0, "abc");
    b[sizeof(r) + 5] = 'x';
    cr_expect_eq(result_report_validate(b, len), RESULT_BAD_VALUE);
    /* A truncated record header, alone or after a good record. */
    cr_expect_eq(result_report_validate(b, sizeof(r) - 1), RESULT_BAD_SHORT);
    len = put_rec(b, 0, QCOW2_MSG_LEAKED, 0, 0, 0, 0, NULL);
    cr_expect_eq(result_report_validate(b, len + 8), RESULT_BAD_SHORT);
    /* Longer than the ABI allows. */
    cr_expect_eq(result_report_validate(b, INSTAR_REPORT_MAX + 8), RESULT_BAD_SIZE);

    /* A bad record after a good one: nothing at all is printed. */
    len = put_rec(b, 0, QCOW2_MSG_LEAKED, 0, 1, 1, 0, NULL);
    len = put_rec(b, len, 7, 0, 0, 0, 0, NULL);
    out = print_batch(b, len, &rc);
    cr_expect_eq(rc, -1);
    cr_expect_str_eq(out, "");
    free(out);
}

/* --- Check results --- */

static struct instar_check_result good_result(void)
{
    struct instar_check_result r;

    memset(&r, 0, sizeof(r));
    r.hdr.magic = INSTAR_RESULT_MAGIC;
    r.hdr.abi_version = INSTAR_ABI_VERSION;
    r.hdr.op = INSTAR_OP_CHECK;
    r.hdr.size = sizeof(r);
    strcpy(r.format, "qcow2");
    r.image_end_offset = 393216;
    r.total_clusters = 256;
    r.allocated_clusters = 1;
    return r;
}

Test(check_result, valid_and_invalid)
{
    struct instar_check_result r = good_result();
    struct result_check v;

    cr_assert_eq(result_check_parse(&r, sizeof(r), &v), RESULT_OK);
    cr_assert_eq(v.check.total_clusters, 256);

    r.leaks = -1;
    cr_expect_eq(result_check_parse(&r, sizeof(r), &v), RESULT_BAD_VALUE);
    r = good_result();
    r.fragmented_clusters = INT64_MIN;
    cr_expect_eq(result_check_parse(&r, sizeof(r), &v), RESULT_BAD_VALUE);
    r = good_result();
    r.ret = 5;
    cr_expect_eq(result_check_parse(&r, sizeof(r), &v), RESULT_BAD_VALUE);
    r.ret = -5000;
    cr_expect_eq(result_check_parse(&r, sizeof(r), &v), RESULT_BAD_VALUE);
    r.ret = -5; /* EIO */
    cr_expect_eq(result_check_parse(&r, sizeof(r), &v), RESULT_OK);
    r = good_result();
    r.flags = 2; /* INSTAR_CHECK_RECHECKED */
    cr_expect_eq(result_check_parse(&r, sizeof(r), &v), RESULT_OK);
    r.flags = 4;
    cr_expect_eq(result_check_parse(&r, sizeof(r), &v), RESULT_BAD_VALUE);
    r = good_result();
    memset(r.format, 'q', sizeof(r.format)); /* no NUL */
    cr_expect_eq(result_check_parse(&r, sizeof(r), &v), RESULT_BAD_VALUE);
    r = good_result();
    r.hdr.op = INSTAR_OP_INFO;
    cr_expect_eq(result_check_parse(&r, sizeof(r), &v), RESULT_BAD_OP);
    r = good_result();
    r.hdr.size = sizeof(r.hdr);
    cr_expect_eq(result_check_parse(&r, sizeof(r.hdr), &v), RESULT_BAD_SHORT);
    /* An error result may be just the header. */
    r.hdr.error = 1;
    cr_expect_eq(result_check_parse(&r, sizeof(r.hdr), &v), RESULT_OK);
    cr_expect_eq(v.check.total_clusters, 0);
}

/* --- Rendering, against the oracle --- */

static char dir[] = "/tmp/instar-check-XXXXXX";

static char *run(const char *cmd)
{
    char *buf = NULL, full[1024];
    size_t n = 0, got;
    FILE *out = open_memstream(&buf, &n), *p;
    char chunk[4096];

    snprintf(full, sizeof(full), "cd %s && TZ=UTC LC_ALL=C %s", dir, cmd);
    p = popen(full, "r");
    cr_assert_not_null(p);
    while ((got = fread(chunk, 1, sizeof(chunk), p)) > 0)
        fwrite(chunk, 1, got, out);
    pclose(p);
    fclose(out);
    return buf;
}

static void setup(void)
{
    char *o;

    if (system("command -v qemu-img >/dev/null && command -v qemu-io >/dev/null") != 0)
        cr_skip_test("qemu-img/qemu-io (the oracle) not installed");
    cr_assert_not_null(mkdtemp(dir));
    /* clean.qcow2: one 64 KiB cluster written. */
    o = run("qemu-img create -q -f qcow2 clean.qcow2 16M && "
            "qemu-io -c 'write 0 64k' clean.qcow2 >/dev/null");
    free(o);
    /* lazy.qcow2: lazy refcounts, writes, then abort: refcounts never written. */
    o = run("qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 16M && "
            "(qemu-io -c 'write 0 64k' -c 'write 1M 64k' -c abort lazy.qcow2 >/dev/null 2>&1; "
            "true)");
    free(o);
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
}

static char *render(const struct check_report *c, bool json)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);

    if (json)
        cr_assert_eq(check_dump_json(f, c), 0);
    else
        check_dump_human(f, c);
    fclose(f);
    return buf;
}

static void expect_like_oracle(const char *image, const struct instar_check_result *r)
{
    struct check_report c;
    char cmd[256], *want, *got;

    check_report_from_result(&c, image, r);
    snprintf(cmd, sizeof(cmd), "qemu-img check %s 2>/dev/null", image);
    want = run(cmd);
    got = render(&c, false);
    cr_expect_str_eq(got, want, "human, %s", image);
    free(want);
    free(got);
    snprintf(cmd, sizeof(cmd), "qemu-img check --output=json %s 2>/dev/null", image);
    want = run(cmd);
    got = render(&c, true);
    cr_expect_str_eq(got, want, "json, %s", image);
    free(want);
    free(got);
}

TestSuite(check_render, .init = setup, .fini = teardown, .timeout = 60);

Test(check_render, clean_image)
{
    struct instar_check_result r = good_result();

    expect_like_oracle("clean.qcow2", &r);
}

Test(check_render, corruptions_key_and_summary)
{
    struct instar_check_result r = good_result();

    /* What qemu's check finds in lazy.qcow2: 2 refcount errors + 2 OFLAG_COPIED. */
    r.corruptions = 4;
    r.allocated_clusters = 2;
    r.image_end_offset = 458752;
    expect_like_oracle("lazy.qcow2", &r);
}

Test(check_render, every_optional_key_in_qdict_order)
{
    struct check_report c;
    struct instar_check_result r = good_result();
    char *got;

    r.corruptions = 1;
    r.leaks = 2;
    r.check_errors = 3;
    r.corruptions_fixed = 4;
    r.leaks_fixed = 5;
    r.fragmented_clusters = 6;
    r.compressed_clusters = 7;
    check_report_from_result(&c, "x", &r);
    got = render(&c, true);
    /*
     * The order the oracle printed for the keys it showed (notes, "check"):
     * image-end-offset, total-clusters, corruptions, check-errors, leaks,
     * allocated-clusters, filename, format, fragmented-clusters; every key
     * appears exactly once.
     */
    {
        static const char *const order[] = {
            "\"image-end-offset\"", "\"total-clusters\"", "\"corruptions\"",
            "\"check-errors\"",     "\"leaks\"",          "\"allocated-clusters\"",
            "\"filename\"",         "\"format\"",         "\"fragmented-clusters\"",
        };
        const char *prev = got;

        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
            const char *p = strstr(got, order[i]);

            cr_assert_not_null(p, "%s missing in %s", order[i], got);
            cr_expect_geq(p, prev, "%s out of order in %s", order[i], got);
            prev = p;
        }
        cr_expect_not_null(strstr(got, "\"leaks-fixed\": 5"));
        cr_expect_not_null(strstr(got, "\"corruptions-fixed\": 4"));
        cr_expect_not_null(strstr(got, "\"compressed-clusters\": 7"));
    }
    free(got);
}

/* check.c and open.c boot guests; these tests never do (no embedded guest here). */
int vmm_run(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
            const struct vmm_dev *devs, unsigned ndevs, struct vmm_outcome *out)
{
    (void)cfg, (void)op, (void)args, (void)args_len, (void)devs, (void)ndevs;
    memset(out, 0, sizeof(*out));
    out->status = VMM_ERR_SANDBOX;
    return -1;
}
