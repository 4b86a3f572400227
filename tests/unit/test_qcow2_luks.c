/*
 * qcow2_luks_parse() against qemu-img 7.2.
 *
 * Every test makes a real LUKS-encrypted qcow2 with qemu-img, optionally
 * patches bytes of its LUKS header, then compares our parse with what
 * `qemu-img info` reports for the same file: the field values for a good
 * header (via `--output=json` and jq), the exact error line for a bad one.
 * Expected values therefore come from qemu-img, never from this module.
 * Tests skip when qemu-img or jq is missing.
 */
#include <criterion/criterion.h>
#include "test_sh.h"
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luks.h"
#include "qcow2_err.h"

#define HDR_SIZE QCOW2_LUKS_HDR_SIZE

static char tmpdir[64];
static char img[128];

/* Runs a shell command and returns its stdout (malloc'd, NUL-terminated). */

static void setup(void)
{
    if (sh("qemu-img --version >/dev/null 2>&1") != 0 || sh("jq --version >/dev/null 2>&1") != 0) {
        cr_skip_test("qemu-img or jq not installed");
    }
    strcpy(tmpdir, "/tmp/instar-luks-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(img, sizeof(img), "%s/t.qcow2", tmpdir);
}

static void teardown(void)
{
    if (tmpdir[0]) {
        sh("rm -rf '%s'", tmpdir);
    }
}

TestSuite(qcow2_luks, .init = setup, .fini = teardown);

/*
 * Creates img with extra encrypt.* options ("" for the defaults).
 *
 * qemu-img spends at least half a CPU second calibrating PBKDF2 per image,
 * and that calibration fails now and then with "Unable to get accurate CPU
 * usage" when the hash runs faster than the rusage clock ticks.  So each
 * option set is made once into a cache shared by the test processes
 * (published with rename, so parallel tests never see half a file), with
 * retries, and every test works on its own copy.
 */
static void make_image(const char *opts)
{
    char cache[256];
    unsigned long h = 5381;
    int rc = 1;

    for (const char *p = opts; *p; p++) {
        h = h * 33 + (unsigned char)*p;
    }
    snprintf(cache, sizeof(cache), "/tmp/instar-luks-cache-%d-%lx.qcow2", (int)getuid(), h);
    for (int tries = 0; tries < 20 && access(cache, R_OK) != 0; tries++) {
        rc = sh("qemu-img create -q -f qcow2 --object secret,id=sec0,data=abc "
                "-o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10%s "
                "'%s.%d' 1M >/dev/null 2>&1 && mv -f '%s.%d' '%s'",
                opts, cache, (int)getpid(), cache, (int)getpid(), cache);
    }
    cr_assert_eq(access(cache, R_OK), 0, "qemu-img create failed for '%s' (%d)", opts, rc);
    cr_assert_eq(sh("cp '%s' '%s'", cache, img), 0);
}

static uint8_t *slurp(size_t *len)
{
    FILE *f = fopen(img, "rb");
    uint8_t *buf;
    long n;

    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* The LUKS header: qemu-img puts it in its own cluster; find its magic. */
static size_t luks_offset(void)
{
    size_t len, off;
    uint8_t *buf = slurp(&len);
    const uint8_t magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};

    for (off = 0; off + sizeof(magic) <= len; off += 512) {
        if (memcmp(buf + off, magic, sizeof(magic)) == 0) {
            free(buf);
            return off;
        }
    }
    cr_assert_fail("no LUKS header in %s", img);
    return 0;
}

static void patch(size_t off, const void *bytes, size_t n)
{
    FILE *f = fopen(img, "r+b");

    cr_assert_not_null(f);
    fseek(f, (long)off, SEEK_SET);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

static void patch_be32(size_t off, uint32_t v)
{
    uint8_t b[4] = {v >> 24, v >> 16, v >> 8, v};
    patch(off, b, 4);
}

/* Overwrites a 32-byte name field with s, NUL-padded. */
static void patch_name(size_t off, const char *s)
{
    uint8_t b[32] = {0};
    memcpy(b, s, strlen(s));
    patch(off, b, sizeof(b));
}

static int parse_image(size_t hdr_off, size_t len, struct qcow2_luks_info *info)
{
    size_t flen;
    uint8_t *buf = slurp(&flen);
    static uint8_t hdr[HDR_SIZE];
    int ret;

    cr_assert_leq(hdr_off + HDR_SIZE, flen);
    memcpy(hdr, buf + hdr_off, HDR_SIZE);
    free(buf);
    ret = qcow2_luks_parse(hdr, len, info);
    return ret;
}

/* The template of a qcow2 error code, filled as cmd/report.c would. */
static char *render(int code, const struct qcow2_luks_info *info)
{
    static const struct {
        int code;
        const char *msg;
    } table[] = {
#define ROW(name, c, m) {c, m},
        QCOW2_ERRORS(ROW)
#undef ROW
    };
    static char out[512];
    const char *t = NULL;
    size_t o = 0;

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (table[i].code == code) {
            t = table[i].msg;
        }
    }
    cr_assert_not_null(t, "no message for code %d", code);
    while (*t) {
        if (t[0] == '{' && t[1] >= '0' && t[1] <= '3' && t[2] == '}') {
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%" PRIu64, info->err_args[t[1] - '0']);
            t += 3;
        } else if (strncmp(t, "{s}", 3) == 0) {
            cr_assert_not_null(info->err_str);
            memcpy(out + o, info->err_str, info->err_str_len);
            o += info->err_str_len;
            t += 3;
        } else {
            out[o++] = *t++;
        }
    }
    out[o] = '\0';
    return out;
}

/* Our parse fails with the very line qemu-img prints for the same file. */
static void expect_qemu_error(size_t hdr_off, size_t len)
{
    struct qcow2_luks_info info;
    char want[1024];
    char *got = sh_out("qemu-img info '%s' 2>&1 >/dev/null", img);
    int ret = parse_image(hdr_off, len, &info);

    cr_assert_lt(ret, 0, "parse succeeded; qemu-img said: %s", got);
    snprintf(want, sizeof(want), "qemu-img: Could not open '%s': %s\n", img, render(-ret, &info));
    cr_assert_str_eq(want, got);
    free(got);
}

/* Our parse succeeds and agrees with qemu-img info on every LUKS field. */
static void expect_qemu_info(size_t hdr_off)
{
    struct qcow2_luks_info info;
    char mine[4096];
    size_t o = 0;
    char *want = sh_out(
        "qemu-img info --output=json '%s' | jq -r '.[\"format-specific\"].data.encrypt | "
        "([.\"cipher-alg\", .\"cipher-mode\", .\"ivgen-alg\", (.\"ivgen-hash-alg\" // \"-\"), "
        ".\"hash-alg\", .uuid, .\"payload-offset\", .\"master-key-iters\"] | @tsv), "
        "(.slots[] | [.active, (.iters // \"-\"), (.stripes // \"-\"), .\"key-offset\"] | @tsv)'",
        img);
    int ret = parse_image(hdr_off, HDR_SIZE, &info);

    cr_assert_eq(ret, 0, "parse failed with %d; qemu-img info gave: %s", ret, want);
    o += (size_t)snprintf(mine + o, sizeof(mine) - o,
                          "%s\t%s\t%s\t%s\t%s\t%s\t%" PRIu64 "\t%" PRIu64 "\n", info.cipher_alg,
                          info.cipher_mode, info.ivgen_alg,
                          info.ivgen_hash_alg ? info.ivgen_hash_alg : "-", info.hash_alg, info.uuid,
                          info.payload_offset, info.master_key_iters);
    for (int i = 0; i < QCOW2_LUKS_NUM_SLOTS; i++) {
        if (info.slots[i].active) {
            o += (size_t)snprintf(mine + o, sizeof(mine) - o,
                                  "true\t%" PRIu64 "\t%u\t%" PRIu64 "\n", info.slots[i].iters,
                                  info.slots[i].stripes, info.slots[i].key_offset);
        } else {
            o += (size_t)snprintf(mine + o, sizeof(mine) - o, "false\t-\t-\t%" PRIu64 "\n",
                                  info.slots[i].key_offset);
        }
    }
    cr_assert_str_eq(mine, want);
    free(want);
}

/* Field offsets inside the LUKS1 header (LUKS on-disk format 1.2.1). */
#define O_VERSION 6
#define O_NAME    8
#define O_MODE    40
#define O_HASH    72
#define O_PAYLOAD 104
#define O_MKLEN   108
#define O_MKITERS 164
#define O_UUID    168
#define O_SLOT(i) (208 + 48 * (i))
#define S_ACTIVE  0
#define S_ITERS   4
#define S_KEYOFF  40
#define S_STRIPES 44

/* --- good headers: every cipher family, mode, ivgen and hash qemu-img makes --- */

static void good(const char *opts)
{
    make_image(opts);
    expect_qemu_info(luks_offset());
}

Test(qcow2_luks, default_aes256_xts_plain64_sha256)
{
    good("");
}

Test(qcow2_luks, aes128)
{
    good(",encrypt.cipher-alg=aes-128");
}

/* (aes-192 with cbc trips an assertion in qemu-img create itself.) */
Test(qcow2_luks, aes192_and_aes256_cbc)
{
    good(",encrypt.cipher-alg=aes-192");
    good(",encrypt.cipher-mode=cbc");
}

Test(qcow2_luks, serpent_variants)
{
    good(",encrypt.cipher-alg=serpent-128");
    good(",encrypt.cipher-alg=serpent-256,encrypt.cipher-mode=cbc");
}

Test(qcow2_luks, twofish_variants)
{
    good(",encrypt.cipher-alg=twofish-192");
    good(",encrypt.cipher-alg=twofish-256,encrypt.cipher-mode=ctr");
}

Test(qcow2_luks, cast5_cbc)
{
    good(",encrypt.cipher-alg=cast5-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain");
}

Test(qcow2_luks, essiv)
{
    good(",encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256");
    good(",encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,"
         "encrypt.ivgen-hash-alg=md5");
}

Test(qcow2_luks, plain_ivgen_and_hashes)
{
    good(",encrypt.ivgen-alg=plain,encrypt.hash-alg=sha1");
    good(",encrypt.hash-alg=sha224");
    good(",encrypt.hash-alg=sha384");
    good(",encrypt.hash-alg=sha512");
    good(",encrypt.hash-alg=md5");
    good(",encrypt.hash-alg=ripemd160");
}

/* --- headers qemu-img accepts after patching --- */

Test(qcow2_luks, ivhash_ignored_without_essiv)
{
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_MODE, "xts-plain64:sha1");
    expect_qemu_info(h);
}

Test(qcow2_luks, essiv_with_shorter_digest_than_key)
{
    /* aes-256 block cipher, ESSIV with md5: QEMU picks AES-128 for IVs. */
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_MODE, "xts-essiv:md5");
    expect_qemu_info(h);
}

Test(qcow2_luks, uuid_without_nul)
{
    make_image("");
    size_t h = luks_offset();
    patch(h + O_UUID, "0123456789abcdef0123456789ABCDEF01234567", 40);
    expect_qemu_info(h);
}

Test(qcow2_luks, inactive_slot_may_have_zero_iters)
{
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_SLOT(3) + S_ITERS, 0);
    expect_qemu_info(h);
}

/* --- structural checks, in qemu's order --- */

Test(qcow2_luks, bad_magic)
{
    make_image("");
    size_t h = luks_offset();
    patch(h + 4, "\xba\xbf", 2);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, bad_version)
{
    make_image("");
    size_t h = luks_offset();
    patch(h + O_VERSION, "\x00\x02", 2);
    expect_qemu_error(h, HDR_SIZE);
    patch(h + O_VERSION, "\xff\xff", 2);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, names_not_terminated)
{
    static const char full[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    make_image("");
    size_t h = luks_offset();
    patch(h + O_HASH, full, 32);
    expect_qemu_error(h, HDR_SIZE);
    patch(h + O_MODE, full, 32);
    expect_qemu_error(h, HDR_SIZE);
    patch(h + O_NAME, full, 32);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, payload_overlaps_header)
{
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_PAYLOAD, 7);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, master_key_iters_zero)
{
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_MKITERS, 0);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, slot_stripes)
{
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_SLOT(5) + S_STRIPES, 4001);
    expect_qemu_error(h, HDR_SIZE);
    /* qemu prints stripes with %d: 0xffffffff shows as -1. */
    patch_be32(h + O_SLOT(0) + S_STRIPES, 0xffffffff);
    expect_qemu_error(h, HDR_SIZE);
    patch_be32(h + O_SLOT(0) + S_STRIPES, 0x80000000);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, slot_state)
{
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_SLOT(2) + S_ACTIVE, 0x00ac71f2);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, active_slot_iters_zero)
{
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_SLOT(0) + S_ITERS, 0);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, slot_overlaps_header)
{
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_SLOT(4) + S_KEYOFF, 7);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, slot_overlaps_payload)
{
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_SLOT(7) + S_KEYOFF, 4000);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, slot_end_wraps_like_qemu)
{
    /* start + len wraps past 2^32 in qemu's unsigned int, so neither the
     * payload check nor the pair checks see slot 7 and the header opens. */
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_SLOT(7) + S_KEYOFF, 0xffffff00);
    expect_qemu_info(h);
}

Test(qcow2_luks, slots_overlap)
{
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_SLOT(6) + S_KEYOFF, 1000);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, pair_check_before_later_stripes_check)
{
    /* Slot 1 has bad stripes and sits on slot 0; slot 0's pair check runs
     * before slot 1's own checks, so qemu reports the overlap. */
    make_image("");
    size_t h = luks_offset();
    patch_be32(h + O_SLOT(1) + S_STRIPES, 40000);
    patch_be32(h + O_SLOT(1) + S_KEYOFF, 8);
    expect_qemu_error(h, HDR_SIZE);
}

/* --- name parsing --- */

Test(qcow2_luks, mode_without_dash)
{
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_MODE, "xts");
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, unknown_ivhash)
{
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_MODE, "xts-plain64:sha999");
    expect_qemu_error(h, HDR_SIZE);
    patch_name(h + O_MODE, "xts-essiv:");
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, unknown_mode_is_case_sensitive)
{
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_MODE, "XTS-plain64");
    expect_qemu_error(h, HDR_SIZE);
    patch_name(h + O_MODE, "x:s-plain64");
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, unknown_cipher_or_size)
{
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_NAME, "blowfish");
    expect_qemu_error(h, HDR_SIZE);
    patch_name(h + O_NAME, "cast5");
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, cipher_key_size_printed_signed)
{
    /* 2^31-byte key, non-XTS: the 32-bit product with 4000 stripes is 0,
     * so no slot overlaps, and qemu prints the size with %d. */
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_MODE, "cbc-plain64");
    patch_be32(h + O_MKLEN, 0x80000000);
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, unknown_hash_spec)
{
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_HASH, "sha3");
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, unknown_ivgen)
{
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_MODE, "xts-plain32");
    expect_qemu_error(h, HDR_SIZE);
    patch_name(h + O_MODE, "xts-benbi:sha256");
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, essiv_without_hash)
{
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_MODE, "xts-essiv");
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, essiv_digest_without_cipher)
{
    make_image("");
    size_t h = luks_offset();
    patch_name(h + O_MODE, "xts-essiv:sha1");
    expect_qemu_error(h, HDR_SIZE);
    patch_name(h + O_NAME, "serpent");
    patch_name(h + O_MODE, "xts-essiv:sha512");
    expect_qemu_error(h, HDR_SIZE);
    patch_name(h + O_NAME, "twofish");
    patch_name(h + O_MODE, "xts-essiv:sha224");
    expect_qemu_error(h, HDR_SIZE);
}

Test(qcow2_luks, essiv_cast5)
{
    make_image(",encrypt.cipher-alg=cast5-128,encrypt.cipher-mode=cbc");
    size_t h = luks_offset();
    patch_name(h + O_MODE, "cbc-essiv:sha256");
    expect_qemu_error(h, HDR_SIZE);
    /* md5's 16-byte digest is cast5's key size: accepted. */
    patch_name(h + O_MODE, "cbc-essiv:md5");
    expect_qemu_info(h);
}

/* --- the qcow2 extension bounds the read --- */

Test(qcow2_luks, extension_shorter_than_header)
{
    size_t len;
    uint8_t *buf;
    size_t ext;

    make_image("");
    size_t h = luks_offset();
    /* Find the full disk encryption extension (magic 0x0537be77) after the
     * v3 header and shrink its length field to 591 bytes. */
    buf = slurp(&len);
    for (ext = 104; ext + 24 <= 65536; ext += 8) {
        if (memcmp(buf + ext, "\x05\x37\xbe\x77", 4) == 0) {
            break;
        }
    }
    free(buf);
    cr_assert_lt(ext + 24, 65536, "no crypto header extension");
    patch(ext + 8 + 8, "\x00\x00\x00\x00\x00\x00\x02\x4f", 8);
    expect_qemu_error(h, 591);
}

/* --- no qemu needed: the parser never reads past what it checked --- */

Test(qcow2_luks_pure, zeros_and_short)
{
    static uint8_t z[HDR_SIZE];
    struct qcow2_luks_info info;

    cr_assert_eq(qcow2_luks_parse(z, sizeof(z), &info), -QCOW2_ERR_LUKS_NOT_LUKS);
    cr_assert_eq(qcow2_luks_parse(z, 0, &info), -QCOW2_ERR_LUKS_OUTSIDE_EXT);
}
