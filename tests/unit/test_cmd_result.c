/*
 * cmd/result.c: result blobs are untrusted guest output.  Each test breaks
 * one rule of include/instar/result.h and expects the matching rejection.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "instar/abi.h"
#include "qcow2_err.h"
#include "result.h"

static union {
    uint8_t buf[1 << 18]; /* more than struct instar_info_result */
    uint64_t align;
} U;
static size_t len;

static struct instar_info_result *R(void)
{
    return (struct instar_info_result *)U.buf;
}

static struct instar_str put_str(const char *s)
{
    struct instar_str r = {(uint32_t)len, (uint32_t)strlen(s)};

    memcpy(U.buf + len, s, strlen(s));
    len += strlen(s) ? strlen(s) : 1;
    return r;
}

static void good(void)
{
    memset(&U, 0, sizeof(U));
    len = sizeof(struct instar_info_result);
    strcpy(R()->format, "qcow2");
    R()->virtual_size = 1 << 20;
    R()->cluster_size = 65536;
    R()->flags = INSTAR_INFO_QCOW2;
    R()->qcow2_version = 3;
    R()->refcount_bits = 16;
    R()->backing_file = put_str("base.qcow2");
}

static enum result_bad parse(void)
{
    struct result_info v;

    R()->hdr.magic = INSTAR_RESULT_MAGIC;
    R()->hdr.abi_version = INSTAR_ABI_VERSION;
    R()->hdr.op = INSTAR_OP_INFO;
    if (!R()->hdr.size)
        R()->hdr.size = (uint32_t)len;
    return result_info_parse(U.buf, len, &v);
}

TestSuite(cmd_result, .init = good);

Test(cmd_result, good_blob)
{
    struct result_info v;
    char *s;

    cr_assert_eq(parse(), RESULT_OK);
    cr_assert_eq(result_info_parse(U.buf, len, &v), RESULT_OK);
    s = result_str(&v, v.info.backing_file);
    cr_expect_str_eq(s, "base.qcow2");
    free(s);
}

Test(cmd_result, short_blob)
{
    struct result_info v;

    cr_expect_eq(result_info_parse(U.buf, 8, &v), RESULT_BAD_SHORT);
    cr_expect_eq(result_info_parse(NULL, 0, &v), RESULT_BAD_SHORT);
    /* A success header without the fixed info struct. */
    len = sizeof(struct instar_result_hdr);
    cr_expect_eq(parse(), RESULT_BAD_SHORT);
}

Test(cmd_result, bad_magic_abi_op)
{
    struct result_info v;

    parse();
    R()->hdr.magic ^= 1;
    cr_expect_eq(result_info_parse(U.buf, len, &v), RESULT_BAD_MAGIC);
    R()->hdr.magic ^= 1;
    R()->hdr.abi_version++;
    cr_expect_eq(result_info_parse(U.buf, len, &v), RESULT_BAD_ABI);
    R()->hdr.abi_version--;
    R()->hdr.op = INSTAR_OP_NONE;
    cr_expect_eq(result_info_parse(U.buf, len, &v), RESULT_BAD_OP);
}

Test(cmd_result, size_mismatch)
{
    R()->hdr.size = (uint32_t)len + 1;
    cr_expect_eq(parse(), RESULT_BAD_SIZE);
    R()->hdr.size = (uint32_t)len - 1;
    cr_expect_eq(parse(), RESULT_BAD_SIZE);
}

Test(cmd_result, string_out_of_range)
{
    R()->backing_file.len = (uint32_t)(len - R()->backing_file.off + 1);
    cr_expect_eq(parse(), RESULT_BAD_STR);
}

Test(cmd_result, string_offset_overflow)
{
    R()->backing_file.off = UINT32_MAX;
    R()->backing_file.len = 2; /* off + len wraps in 32 bits */
    cr_expect_eq(parse(), RESULT_BAD_STR);
}

Test(cmd_result, string_too_long)
{
    R()->backing_fmt.off = 8;
    R()->backing_fmt.len = INSTAR_STR_MAX + 1;
    cr_expect_eq(parse(), RESULT_BAD_STR);
}

Test(cmd_result, absent_string_with_length)
{
    R()->backing_fmt.off = 0;
    R()->backing_fmt.len = 4;
    cr_expect_eq(parse(), RESULT_BAD_STR);
}

Test(cmd_result, error_string_checked)
{
    struct result_info v;

    memset(&U, 0, sizeof(U));
    len = sizeof(struct instar_result_hdr);
    R()->hdr.error = 1000;
    R()->hdr.err_str.off = (uint32_t)len;
    R()->hdr.err_str.len = 10; /* past the end */
    cr_expect_eq(parse(), RESULT_BAD_STR);
    R()->hdr.err_str.len = 0;
    R()->hdr.err_str.off = 0;
    cr_expect_eq(parse(), RESULT_OK);
    cr_expect_eq(result_info_parse(U.buf, len, &v), RESULT_OK);
    cr_expect_eq(v.hdr.error, 1000);
}

Test(cmd_result, array_overflow)
{
    R()->nsnapshots = 3;
    R()->snapshots_off = UINT32_MAX - 8;
    cr_expect_eq(parse(), RESULT_BAD_ARRAY);
    R()->snapshots_off = (uint32_t)len;
    cr_expect_eq(parse(), RESULT_BAD_ARRAY); /* n * elem past the end */
    R()->nsnapshots = RESULT_MAX_SNAPSHOTS + 1;
    cr_expect_eq(parse(), RESULT_BAD_ARRAY);
    R()->nsnapshots = 1;
    R()->snapshots_off = 0; /* present but at offset 0 */
    cr_expect_eq(parse(), RESULT_BAD_ARRAY);
}

Test(cmd_result, bitmap_count_bounded)
{
    R()->nbitmaps = UINT32_MAX;
    R()->bitmaps_off = 8;
    cr_expect_eq(parse(), RESULT_BAD_ARRAY);
}

Test(cmd_result, element_strings_checked)
{
    struct instar_info_snapshot *sn;
    uint32_t off;

    len = (len + 7) & ~(size_t)7;
    off = (uint32_t)len;
    len += sizeof(*sn);
    R()->nsnapshots = 1;
    R()->snapshots_off = off;
    sn = (struct instar_info_snapshot *)(U.buf + off);
    sn->id = put_str("1");
    sn->name.off = (uint32_t)len;
    sn->name.len = 1; /* one byte past the end */
    cr_expect_eq(parse(), RESULT_BAD_STR);
    sn->name.len = 0;
    cr_expect_eq(parse(), RESULT_OK);
}

Test(cmd_result, enums_and_format)
{
    R()->refcount_bits = 3;
    cr_expect_eq(parse(), RESULT_BAD_VALUE);
    R()->refcount_bits = 128;
    cr_expect_eq(parse(), RESULT_BAD_VALUE);
    R()->refcount_bits = 64;
    R()->qcow2_version = 4;
    cr_expect_eq(parse(), RESULT_BAD_VALUE);
    R()->qcow2_version = 2;
    R()->encrypt_format = 7;
    cr_expect_eq(parse(), RESULT_BAD_VALUE);
    R()->encrypt_format = 0;
    R()->compression_type = 2;
    cr_expect_eq(parse(), RESULT_BAD_VALUE);
    R()->compression_type = 0;
    cr_expect_eq(parse(), RESULT_OK);
    memset(R()->format, 'a', sizeof(R()->format)); /* no NUL */
    cr_expect_eq(parse(), RESULT_BAD_VALUE);
    strcpy(R()->format, "qc\033ow2");
    cr_expect_eq(parse(), RESULT_BAD_VALUE);
    R()->format[0] = '\0';
    cr_expect_eq(parse(), RESULT_BAD_VALUE);
}

Test(cmd_result, sizes_fit_int64)
{
    R()->virtual_size = (uint64_t)INT64_MAX + 1;
    cr_expect_eq(parse(), RESULT_BAD_VALUE);
}

/* qcow2_do_open() accepts cluster_bits 9..21 only; the host divides by the size. */
Test(cmd_result, qcow2_cluster_size)
{
    static const uint64_t bad[] = {0, 1, 7, 256, 1536, 4 << 20, UINT64_C(1) << 35};
    static const uint64_t ok[] = {512, 4096, 65536, 2 << 20};
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        R()->cluster_size = bad[i];
        cr_expect_eq(parse(), RESULT_BAD_VALUE, "cluster size %llu", (unsigned long long)bad[i]);
    }
    /* Without the qcow2 block, the format name still says what it must be. */
    R()->flags = 0;
    R()->cluster_size = 0;
    cr_expect_eq(parse(), RESULT_BAD_VALUE);
    strcpy(R()->format, "raw");
    cr_expect_eq(parse(), RESULT_OK);
    strcpy(R()->format, "qcow2");
    R()->flags = INSTAR_INFO_QCOW2;
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        R()->cluster_size = ok[i];
        cr_expect_eq(parse(), RESULT_OK, "cluster size %llu", (unsigned long long)ok[i]);
    }
}

Test(cmd_result, luks_strings_checked)
{
    R()->encrypt_format = INSTAR_ENCRYPT_LUKS;
    R()->luks.uuid.off = (uint32_t)len;
    R()->luks.uuid.len = 40;
    cr_expect_eq(parse(), RESULT_BAD_STR);
}

Test(cmd_result, str_cut_at_nul)
{
    struct result_info v;
    char *s;

    R()->backing_file = put_str("ab");
    U.buf[R()->backing_file.off + 1] = '\0';
    cr_assert_eq(parse(), RESULT_OK);
    cr_assert_eq(result_info_parse(U.buf, len, &v), RESULT_OK);
    s = result_str(&v, v.info.backing_file);
    cr_expect_str_eq(s, "a");
    free(s);
}

/* A valid result's strings are laid out once: together no longer than the blob. */
Test(cmd_result, strings_within_blob)
{
    struct instar_info_snapshot *sn;
    struct instar_str big;
    uint32_t off, i, n = 8;

    len = (len + 7) & ~(size_t)7;
    off = (uint32_t)len;
    len += n * sizeof(*sn);
    R()->nsnapshots = n;
    R()->snapshots_off = off;
    sn = (struct instar_info_snapshot *)(U.buf + off);
    big = put_str("snapshot");
    len = big.off + 16384; /* a 16 KiB name, 16 times: longer than the blob */
    big.len = 16384;
    for (i = 0; i < n; i++)
        sn[i].id = sn[i].name = big;
    cr_expect_eq(parse(), RESULT_BAD_STR_TOTAL);
    /* Sharing is fine while the total stays within the blob. */
    big.len = 4;
    for (i = 0; i < n; i++)
        sn[i].id = sn[i].name = big;
    cr_expect_eq(parse(), RESULT_OK);
    cr_expect_str_eq(result_bad_str(RESULT_BAD_STR_TOTAL), "result strings longer than the result");
}

Test(cmd_result, strn_cuts_before_copy)
{
    struct result_info v;
    char *s;

    R()->backing_file = put_str("abcdef");
    cr_assert_eq(parse(), RESULT_OK);
    cr_assert_eq(result_info_parse(U.buf, len, &v), RESULT_OK);
    s = result_strn(&v, v.info.backing_file, 3);
    cr_expect_str_eq(s, "abc");
    free(s);
    s = result_strn(&v, v.info.backing_file, 0);
    cr_expect_str_eq(s, "");
    free(s);
    U.buf[R()->backing_file.off + 1] = '\0';
    cr_assert_eq(result_info_parse(U.buf, len, &v), RESULT_OK);
    s = result_strn(&v, v.info.backing_file, 3);
    cr_expect_str_eq(s, "a");
    free(s);
}

Test(cmd_result, oversized_blob)
{
    struct result_info v;

    cr_expect_eq(result_info_parse(U.buf, INSTAR_RESULT_MAX + 1, &v), RESULT_BAD_SIZE);
}

/* --- convert --salvage batches (result_salvage_validate) --- */

static struct instar_report_rec SR[4];

static void salvage_good(void)
{
    memset(SR, 0, sizeof(SR));
    SR[0].code = QCOW2_CORRUPT_L2_UNALIGNED;
    SR[0].args[0] = 0x40200;
    SR[1].code = INSTAR_CONVERT_REC_BSTAT;
    SR[1].args[0] = 3145728;
    SR[1].args[1] = 5; /* EIO */
    SR[2].code = INSTAR_CONVERT_REC_READ;
    SR[2].args[0] = 3145728;
    SR[2].args[1] = 5;
    SR[3].code = INSTAR_CONVERT_REC_READ;
    SR[3].args[0] = INT64_MAX;
    SR[3].args[1] = 4095;
}

Test(cmd_result, salvage_batch_good)
{
    salvage_good();
    cr_expect_eq(result_salvage_validate(SR, sizeof(SR)), RESULT_OK);
    cr_expect_eq(result_salvage_validate(SR, 0), RESULT_OK);
}

Test(cmd_result, salvage_batch_partial_record)
{
    salvage_good();
    cr_expect_eq(result_salvage_validate(SR, sizeof(SR) - 8), RESULT_BAD_SIZE);
    cr_expect_eq(result_salvage_validate(SR, 1), RESULT_BAD_SIZE);
}

Test(cmd_result, salvage_batch_bad_records)
{
    static const struct {
        int rec;
        int32_t code;
        uint16_t slen, flags;
        uint64_t a0, a1;
    } bad[] = {
        {1, INSTAR_CONVERT_REC_BSTAT, 0, 0, 0, 0},                      /* errno 0 */
        {2, INSTAR_CONVERT_REC_READ, 0, 0, 0, 4096},                    /* errno too large */
        {2, INSTAR_CONVERT_REC_READ, 0, 0, (uint64_t)INT64_MAX + 1, 5}, /* offset */
        {1, INSTAR_CONVERT_REC_BSTAT, 4, 0, 0, 5},                      /* a string */
        {1, INSTAR_CONVERT_REC_BSTAT, 0, 1, 0, 5},                      /* flags */
        {0, 0, 0, 0, 0, 0},                                             /* no code */
        {0, 3, 0, 0, 0, 0},                                             /* unknown kind */
        {0, QCOW2_CORRUPT_L2_UNALIGNED - 1, 0, 0, 0, 0},                /* not a corruption */
        {0, QCOW2_CORRUPT_INVALID_ENTRY + 1, 0, 0, 0, 0},
        {0, 2000, 0, 0, 0, 0}, /* a check message */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        salvage_good();
        SR[bad[i].rec].code = bad[i].code;
        SR[bad[i].rec].slen = bad[i].slen;
        SR[bad[i].rec].flags = bad[i].flags;
        SR[bad[i].rec].args[0] = bad[i].a0;
        SR[bad[i].rec].args[1] = bad[i].a1;
        cr_expect_eq(result_salvage_validate(SR, sizeof(SR)), RESULT_BAD_VALUE, "case %zu", i);
    }
}
