/*
 * LUKS1 volume creation (see create.h), after QEMU 7.2's
 * crypto/block-luks.c (qcrypto_block_luks_create, _store_key) and
 * crypto/pbkdf.c (qcrypto_pbkdf2_count_iters).  The PBKDF2, hashes and
 * ciphers are nettle's, through formats/luks/unlock.c.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "luks/create.h"

#define OFF_VERSION   6
#define OFF_NAME      8
#define OFF_MODE      40
#define OFF_HASH      72
#define OFF_PAYLOAD   104
#define OFF_MK_LEN    108
#define OFF_MK_DIGEST 112
#define OFF_MK_SALT   132
#define OFF_MK_ITERS  164
#define OFF_UUID      168
#define OFF_SLOTS     208
#define SLOT_SIZE     48
#define NAME_LEN      32
#define DIGEST_LEN    20
#define STRIPES       4000u
#define HDR_SECTORS   8u /* QCRYPTO_BLOCK_LUKS_KEY_SLOT_OFFSET / 512 */
#define MIN_ITERS     1000u
#define SLOT_ENABLED  0x00AC71F3u
#define SLOT_DISABLED 0x0000DEADu

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void st32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* qcrypto_block_luks_splitkeylen_sectors(): cryptsetup's, not the spec's. */
static uint32_t split_sectors(uint32_t key_bytes)
{
    uint32_t s = (key_bytes * STRIPES + LUKS_SECTOR - 1) / LUKS_SECTOR;

    return (s + HDR_SECTORS - 1) / HDR_SECTORS * HDR_SECTORS;
}

uint64_t luks_create_payload_offset(uint32_t key_bytes)
{
    return (uint64_t)(HDR_SECTORS + QCOW2_LUKS_NUM_SLOTS * split_sectors(key_bytes)) * LUKS_SECTOR;
}

/*
 * qcrypto_pbkdf2_count_iters(): the iterations PBKDF2 does in a second of
 * the thread's CPU time, measured on runs of at least 100 ms until one
 * takes over 500 ms.
 */
static int count_iters(const struct luks_create *c, const char *hash, const uint8_t *key,
                       size_t nkey, const uint8_t *salt, size_t nout, uint64_t *out)
{
    uint64_t iterations = 1u << 15, delta;
    uint8_t buf[LUKS_KEY_MAX];

    for (;;) {
        uint64_t start, end;

        if (iterations > UINT32_MAX)
            return -LUKS_CREATE_ERR_CPU; /* nettle's counter is 32 bits; never on a real CPU */
        start = c->now_ms(c->opaque);
        if (luks_pbkdf2(hash, key, nkey, salt, LUKS_CREATE_SALT, (uint32_t)iterations, buf, nout) <
            0)
            return -LUKS_ERR_UNSUPPORTED;
        end = c->now_ms(c->opaque);
        delta = end - start;
        if (end < start || delta == 0)
            return -LUKS_CREATE_ERR_CPU;
        if (delta > 500)
            break;
        if (delta < 100)
            iterations *= 10;
        else
            iterations = iterations * 1000 / delta;
    }
    memset(buf, 0, sizeof(buf));
    *out = iterations * 1000 / delta;
    return 0;
}

/* iters per second scaled to iter_time ms (divided by div), as qemu's checks. */
static int scale_iters(const struct luks_create *c, uint64_t iters, unsigned div, uint32_t *out,
                       uint64_t *err_arg)
{
    /* iter-time=0: qemu's division by it leaves the minimum (its build traps nothing). */
    if (c->iter_time && iters > UINT64_MAX / c->iter_time) {
        *err_arg = iters;
        return -LUKS_CREATE_ERR_SCALE;
    }
    iters = iters * c->iter_time / 1000 / div;
    if (iters > UINT32_MAX) {
        *err_arg = iters;
        return -LUKS_CREATE_ERR_LARGE;
    }
    *out = iters < MIN_ITERS ? MIN_ITERS : (uint32_t)iters;
    return 0;
}

int luks_create_header(const struct luks_create *c, uint8_t *hdr, struct qcow2_luks_info *info,
                       uint64_t *err_arg)
{
    static const uint8_t magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
    uint32_t split = split_sectors(c->key_bytes);
    uint8_t digest[DIGEST_LEN];
    uint64_t iters;
    uint32_t mk_iters;
    int r;

    *err_arg = 0;
    if (strlen(c->cipher_name) >= NAME_LEN || strlen(c->cipher_mode) >= NAME_LEN ||
        strlen(c->hash_spec) >= NAME_LEN || c->key_bytes == 0 || c->key_bytes > LUKS_KEY_MAX)
        return -LUKS_CREATE_ERR_NAMES;
    memset(hdr, 0, QCOW2_LUKS_HDR_SIZE);
    memcpy(hdr, magic, sizeof(magic));
    hdr[OFF_VERSION + 1] = 1;
    memcpy(hdr + OFF_NAME, c->cipher_name, strlen(c->cipher_name));
    memcpy(hdr + OFF_MODE, c->cipher_mode, strlen(c->cipher_mode));
    memcpy(hdr + OFF_HASH, c->hash_spec, strlen(c->hash_spec));
    st32(hdr + OFF_PAYLOAD, HDR_SECTORS + QCOW2_LUKS_NUM_SLOTS * split);
    st32(hdr + OFF_MK_LEN, c->key_bytes);
    memcpy(hdr + OFF_MK_SALT, c->mk_salt, LUKS_CREATE_SALT);
    memcpy(hdr + OFF_UUID, c->uuid, LUKS_UUID_STR);
    st32(hdr + OFF_MK_ITERS, MIN_ITERS); /* for the parse below; set after the benchmark */
    for (unsigned i = 0; i < QCOW2_LUKS_NUM_SLOTS; i++) {
        uint8_t *s = hdr + OFF_SLOTS + i * SLOT_SIZE;

        st32(s, SLOT_DISABLED);
        st32(s + 40, HDR_SECTORS + i * split);
        st32(s + 44, STRIPES);
    }
    /* The header must be one the open path accepts, with a cipher instar has. */
    if (qcow2_luks_parse(hdr, QCOW2_LUKS_HDR_SIZE, info) < 0)
        return -LUKS_CREATE_ERR_NAMES;

    r = count_iters(c, info->hash_alg, c->master_key, c->key_bytes, c->mk_salt, DIGEST_LEN, &iters);
    if (r < 0)
        return r;
    /* cryptsetup's /= 8: all eight slots checked in about iter_time. */
    r = scale_iters(c, iters, 8, &mk_iters, err_arg);
    if (r < 0)
        return r;
    st32(hdr + OFF_MK_ITERS, mk_iters);
    r = luks_pbkdf2(info->hash_alg, c->master_key, c->key_bytes, c->mk_salt, LUKS_CREATE_SALT,
                    mk_iters, digest, DIGEST_LEN);
    if (r < 0)
        return r;
    memcpy(hdr + OFF_MK_DIGEST, digest, DIGEST_LEN);
    info->master_key_iters = mk_iters;
    return 0;
}

int luks_store_key(const struct luks_create *c, uint8_t *hdr, const struct qcow2_luks_info *info,
                   unsigned slot, uint8_t *material, size_t *material_len, uint64_t *material_off,
                   uint64_t *err_arg)
{
    static struct luks_volume vol;
    static uint8_t rnd[LUKS_KEY_MAX * (STRIPES - 1)];
    uint8_t *s = hdr + OFF_SLOTS + slot * SLOT_SIZE;
    uint8_t slotkey[LUKS_KEY_MAX];
    size_t len = (size_t)c->key_bytes * STRIPES;
    uint64_t iters;
    uint32_t slot_iters;
    int r;

    *err_arg = 0;
    if (slot >= QCOW2_LUKS_NUM_SLOTS || c->key_bytes == 0 || c->key_bytes > LUKS_KEY_MAX)
        return -LUKS_CREATE_ERR_NAMES;
    /* qcrypto_block_luks_store_key(): a new salt, then the benchmark with it. */
    memcpy(s + 8, c->slot_salt, LUKS_CREATE_SALT);
    r = count_iters(c, info->hash_alg, c->pw, c->pwlen, c->slot_salt, c->key_bytes, &iters);
    if (r < 0)
        return r;
    r = scale_iters(c, iters, 1, &slot_iters, err_arg);
    if (r < 0)
        return r;
    r = luks_pbkdf2(info->hash_alg, c->pw, c->pwlen, c->slot_salt, LUKS_CREATE_SALT, slot_iters,
                    slotkey, c->key_bytes);
    if (r == 0)
        r = luks_volume_init(&vol, info, c->key_bytes, slotkey);
    memset(slotkey, 0, sizeof(slotkey));
    if (r < 0)
        return r;
    c->random(c->opaque, rnd, (size_t)c->key_bytes * (STRIPES - 1));
    r = luks_af_split(info->hash_alg, c->master_key, c->key_bytes, STRIPES, rnd, material);
    memset(rnd, 0, sizeof(rnd));
    /* The key material is encrypted from sector 0, whatever its offset. */
    if (r == 0)
        r = luks_encrypt(&vol, 0, material, len);
    memset(&vol, 0, sizeof(vol));
    if (r < 0)
        return r;
    st32(s, SLOT_ENABLED);
    st32(s + 4, slot_iters);
    *material_len = len;
    *material_off = (uint64_t)ld32(s + 40) * LUKS_SECTOR;
    return 0;
}

int luks_create_slot0(const struct luks_create *c, uint8_t *hdr, const struct qcow2_luks_info *info,
                      uint8_t *material, size_t *material_len, uint64_t *material_off,
                      uint64_t *err_arg)
{
    return luks_store_key(c, hdr, info, 0, material, material_len, material_off, err_arg);
}

void luks_slot_disable(uint8_t *hdr, unsigned slot, size_t *material_len, uint64_t *material_off)
{
    uint8_t *s = hdr + OFF_SLOTS + slot * SLOT_SIZE;

    /* qcrypto_block_luks_erase_key(): the entry reset, its offset and stripes kept. */
    memset(s + 8, 0, LUKS_CREATE_SALT);
    st32(s + 4, 0);
    st32(s, SLOT_DISABLED);
    *material_len = (size_t)ld32(hdr + OFF_MK_LEN) * ld32(s + 44);
    *material_off = (uint64_t)ld32(s + 40) * LUKS_SECTOR;
}
