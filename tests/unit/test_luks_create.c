/*
 * formats/luks/create.c: a volume built with a fake clock and fixed random
 * bytes must unlock with its passphrase (and not with another) through
 * formats/luks/unlock.c, give back the master key, and be accepted by
 * qemu-io 7.2, which unlocks it and reads the sector written with that
 * key (skipped when qemu-io is missing).
 */
#include <criterion/criterion.h>
#include "test_sh.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luks/create.h"
#include "luks/unlock.h"

static uint64_t fake_ms;

/* Every PBKDF2 run "takes" 600 ms: the benchmark stops at its first. */
static uint64_t fake_now(void *opaque)
{
    (void)opaque;
    fake_ms += 600;
    return fake_ms;
}

static void fake_random(void *opaque, uint8_t *buf, size_t len)
{
    (void)opaque;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
}

static uint8_t vol[4u << 20];

static int vol_read(void *opaque, uint64_t off, uint8_t *buf, size_t len)
{
    (void)opaque;
    if (off > sizeof(vol) || len > sizeof(vol) - off)
        return -1;
    memcpy(buf, vol + off, len);
    return 0;
}

static void build(const char *name, const char *mode, const char *hash, uint32_t key_bytes,
                  struct qcow2_luks_info *info, uint8_t *mk)
{
    static uint8_t hdr[QCOW2_LUKS_HDR_SIZE], material[LUKS_WORK_SIZE];
    uint8_t mk_salt[32], slot_salt[32];
    size_t mlen;
    uint64_t moff, err;
    struct luks_create c = {
        .cipher_name = name,
        .cipher_mode = mode,
        .hash_spec = hash,
        .key_bytes = key_bytes,
        .iter_time = 10,
        .master_key = mk,
        .mk_salt = mk_salt,
        .slot_salt = slot_salt,
        .uuid = "01234567-89ab-4cde-8f01-23456789abcd",
        .pw = (const uint8_t *)"pass",
        .pwlen = 4,
        .now_ms = fake_now,
        .random = fake_random,
    };

    for (unsigned i = 0; i < 64; i++)
        mk[i] = (uint8_t)(0x80 + i);
    memset(mk_salt, 0x11, sizeof(mk_salt));
    memset(slot_salt, 0x22, sizeof(slot_salt));
    memset(vol, 0, sizeof(vol));
    cr_assert_eq(luks_create_header(&c, hdr, info, &err), 0);
    cr_assert_eq(info->master_key_iters, 1000); /* 54613/s * 10 ms / 8, raised to the minimum */
    cr_assert_eq(info->payload_offset, luks_create_payload_offset(key_bytes));
    cr_assert_eq(luks_create_slot0(&c, hdr, info, material, &mlen, &moff, &err), 0);
    cr_assert_eq(mlen, (size_t)key_bytes * 4000);
    cr_assert_eq(moff, 4096);
    memcpy(vol + moff, material, mlen);
    memcpy(vol, hdr, sizeof(hdr));
    cr_assert_eq(qcow2_luks_parse(vol, QCOW2_LUKS_HDR_SIZE, info), 0);
    cr_assert(info->slots[0].active);
    cr_assert_eq(info->slots[0].iters, 1000);
    for (unsigned i = 1; i < 8; i++)
        cr_assert(!info->slots[i].active);
}

static void unlock_roundtrip(const char *name, const char *mode, const char *hash,
                             uint32_t key_bytes)
{
    static uint8_t work[LUKS_WORK_SIZE];
    static struct luks_volume v, ref;
    struct qcow2_luks_info info;
    uint8_t mk[64], a[1024], b[1024];
    uint64_t args[2];

    build(name, mode, hash, key_bytes, &info, mk);
    cr_assert_eq(
        luks_unlock(vol, &info, (const uint8_t *)"wrong", 5, vol_read, NULL, work, &v, args),
        -LUKS_ERR_PASSWORD);
    cr_assert_eq(
        luks_unlock(vol, &info, (const uint8_t *)"pass", 4, vol_read, NULL, work, &v, args), 0);
    cr_assert_eq(v.slot, 0);
    /* The unlocked key is the master key: it decrypts what that key encrypted. */
    cr_assert_eq(luks_volume_init(&ref, &info, key_bytes, mk), 0);
    for (unsigned i = 0; i < sizeof(a); i++)
        a[i] = (uint8_t)i;
    memcpy(b, a, sizeof(a));
    cr_assert_eq(luks_encrypt(&ref, 5, b, sizeof(b)), 0);
    cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
    cr_assert_eq(luks_decrypt(&v, 5, b, sizeof(b)), 0);
    cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
}

Test(luks_create, xts_plain64_sha256)
{
    unlock_roundtrip("aes", "xts-plain64", "sha256", 64);
}

Test(luks_create, aes128_cbc_essiv_hash_sha1)
{
    unlock_roundtrip("aes", "cbc-essiv:sha256", "sha1", 16);
}

Test(luks_create, aes192_ecb_sha512)
{
    unlock_roundtrip("aes", "ecb-plain", "sha512", 24);
}

Test(luks_create, serpent256_xts_essiv_sha1)
{
    unlock_roundtrip("serpent", "xts-essiv:sha256", "sha1", 64);
}

/* ESSIV with sha256 keys twofish-256 for a twofish-128 volume. */
Test(luks_create, twofish128_cbc_essiv_ripemd160)
{
    unlock_roundtrip("twofish", "cbc-essiv:sha256", "ripemd160", 16);
}

/* cast5's 8-byte block: CTR counters and ESSIV (md5 keys cast5-128) of 8 bytes. */
Test(luks_create, cast5_ctr_essiv_md5)
{
    unlock_roundtrip("cast5", "ctr-essiv:md5", "md5", 16);
}

/* cast5 has no XTS mode (qemu's cipher_new: "Unsupported cipher mode xts"). */
Test(luks_create, cast5_xts_unsupported)
{
    struct qcow2_luks_info info = {
        .cipher_alg = "cast5-128", .cipher_mode = "xts", .ivgen_alg = "plain64"};
    static struct luks_volume v;
    uint8_t key[32] = {0};

    cr_assert_eq(luks_volume_init(&v, &info, 32, key), -LUKS_ERR_UNSUPPORTED);
}

Test(luks_create, bad_names_refused)
{
    struct qcow2_luks_info info;
    uint8_t hdr[QCOW2_LUKS_HDR_SIZE], z[64] = {0};
    uint64_t err;
    struct luks_create c = {.cipher_name = "rot13",
                            .cipher_mode = "xts-plain64",
                            .hash_spec = "sha256",
                            .key_bytes = 64,
                            .iter_time = 10,
                            .master_key = z,
                            .mk_salt = z,
                            .slot_salt = z,
                            .uuid = "01234567-89ab-4cde-8f01-23456789abcd",
                            .now_ms = fake_now,
                            .random = fake_random};

    cr_assert_eq(luks_create_header(&c, hdr, &info, &err), -LUKS_CREATE_ERR_NAMES);
}

/* qemu-io unlocks the volume and reads what the master key encrypted at payload sector 0. */
Test(luks_create, qemu_io_reads_it)
{
    static struct luks_volume ref;
    struct qcow2_luks_info info;
    uint8_t mk[64], sec[512];
    char dir[] = "/tmp/instar-luksc-XXXXXX", cmd[512];
    FILE *f;

    if (sh("qemu-io --version >/dev/null 2>&1") != 0)
        cr_skip_test("qemu-io not installed");
    build("aes", "xts-plain64", "sha256", 64, &info, mk);
    cr_assert_eq(luks_volume_init(&ref, &info, 64, mk), 0);
    memset(sec, 0x5c, sizeof(sec));
    cr_assert_eq(luks_encrypt(&ref, 0, sec, sizeof(sec)), 0);
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "%s/v.luks", dir);
    f = fopen(cmd, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(vol, 1, (size_t)info.payload_offset, f), info.payload_offset);
    cr_assert_eq(fwrite(sec, 1, sizeof(sec), f), sizeof(sec));
    cr_assert_eq(fclose(f), 0);
    snprintf(cmd, sizeof(cmd),
             "qemu-io --object secret,id=s,data=pass --image-opts "
             "driver=luks,key-secret=s,file.filename=%s/v.luks -c 'read -P 0x5c 0 512' "
             "| grep -q '^read 512/512'",
             dir);
    cr_assert_eq(sh("%s", cmd), 0, "qemu-io did not unlock and read the volume");
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    sh("%s", cmd);
}

/*
 * amend's key slots: a second passphrase stored in slot 3 with the master
 * key opens the volume to the same key; luks_slot_load() tells which slot
 * holds which passphrase; a disabled slot opens with nothing.
 */
Test(luks_create, store_load_disable_slot)
{
    static uint8_t work[LUKS_WORK_SIZE], material[LUKS_WORK_SIZE];
    static struct luks_volume v;
    struct qcow2_luks_info info;
    uint8_t mk[64], got[64], salt[32];
    uint64_t args[2], moff, err;
    size_t mlen;
    struct luks_create c = {
        .key_bytes = 64,
        .iter_time = 10,
        .master_key = mk,
        .slot_salt = salt,
        .pw = (const uint8_t *)"second",
        .pwlen = 6,
        .now_ms = fake_now,
        .random = fake_random,
    };
    const uint8_t *p1 = (const uint8_t *)"pass", *p2 = (const uint8_t *)"second";

    build("aes", "xts-plain64", "sha256", 64, &info, mk);
    memset(salt, 0x33, sizeof(salt));
    cr_assert_eq(luks_store_key(&c, vol, &info, 3, material, &mlen, &moff, &err), 0);
    cr_assert_eq(mlen, 64u * 4000);
    cr_assert_eq(moff, (uint64_t)info.slots[3].key_offset);
    memcpy(vol + moff, material, mlen);
    cr_assert_eq(qcow2_luks_parse(vol, QCOW2_LUKS_HDR_SIZE, &info), 0);
    cr_assert(info.slots[3].active);
    cr_assert_eq(info.slots[3].iters, 1000);
    cr_assert_eq(luks_slot_load(vol, &info, 3, p2, 6, vol_read, NULL, work, args), 1);
    cr_assert_eq(luks_slot_load(vol, &info, 3, p1, 4, vol_read, NULL, work, args), 0);
    cr_assert_eq(luks_slot_load(vol, &info, 0, p2, 6, vol_read, NULL, work, args), 0);
    cr_assert_eq(luks_slot_load(vol, &info, 1, p2, 6, vol_read, NULL, work, args), 0);
    memset(got, 0, sizeof(got));
    cr_assert_eq(luks_unlock_key(vol, &info, p2, 6, vol_read, NULL, work, &v, args, got), 0);
    cr_assert_eq(v.slot, 3);
    cr_assert_eq(memcmp(got, mk, 64), 0);
    /* Slot 0 disabled: its salt and iterations zeroed, its material where it was. */
    luks_slot_disable(vol, 0, &mlen, &moff);
    cr_assert_eq(mlen, 64u * 4000);
    cr_assert_eq(moff, 4096);
    cr_assert_eq(qcow2_luks_parse(vol, QCOW2_LUKS_HDR_SIZE, &info), 0);
    cr_assert(!info.slots[0].active);
    cr_assert_eq(info.slots[0].iters, 0);
    cr_assert_eq(luks_slot_load(vol, &info, 0, p1, 4, vol_read, NULL, work, args), 0);
    cr_assert_eq(luks_unlock(vol, &info, p1, 4, vol_read, NULL, work, &v, args),
                 -LUKS_ERR_PASSWORD);
    cr_assert_eq(luks_unlock(vol, &info, p2, 6, vol_read, NULL, work, &v, args), 0);
}
