/*
 * LUKS1 unlocking and sector encryption (see unlock.h), the steps of QEMU
 * 7.2's crypto/block-luks.c (qcrypto_block_luks_load_key()),
 * crypto/afsplit.c and crypto/ivgen-*.c, over nettle's ciphers (AES,
 * cast128, serpent, twofish), modes (CBC, XTS, CTR), hashes, HMAC and
 * PBKDF2.  Nothing here is a cipher or a hash: those are
 * nettle's.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <nettle/aes.h>
#include <nettle/cast128.h>
#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/hmac.h>
#include <nettle/md5.h>
#include <nettle/nettle-meta.h>
#include <nettle/pbkdf2.h>
#include <nettle/ripemd160.h>
#include <nettle/serpent.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <nettle/twofish.h>
#include <nettle/xts.h>

#include "luks/unlock.h"
#include "qcow2/be.h"

/* LUKS1 header layout (cryptsetup's LUKS1 on-disk format). */
#define OFF_MK_LEN    108
#define OFF_MK_DIGEST 112
#define OFF_MK_SALT   132
#define OFF_MK_ITERS  164
#define OFF_SLOTS     208
#define SLOT_SIZE     48
#define SALT_LEN      32
#define DIGEST_LEN    20
#define SLOT_ENABLED  0x00AC71F3u

enum {
    MODE_ECB,
    MODE_CBC,
    MODE_XTS,
    MODE_CTR
};
enum {
    IV_PLAIN,
    IV_PLAIN64,
    IV_ESSIV
};

static const struct nettle_hash *hash_by_name(const char *name)
{
    static const struct {
        const char *name;
        const struct nettle_hash *h;
    } t[] = {
        {"md5", &nettle_md5},
        {"sha1", &nettle_sha1},
        {"sha224", &nettle_sha224},
        {"sha256", &nettle_sha256},
        {"sha384", &nettle_sha384},
        {"sha512", &nettle_sha512},
        {"ripemd160", &nettle_ripemd160},
    };
    for (size_t i = 0; name && i < sizeof(t) / sizeof(t[0]); i++)
        if (!strcmp(name, t[i].name))
            return t[i].h;
    return NULL;
}

/* ---- HMAC over any nettle hash, for nettle's generic pbkdf2() ---- */

struct hmac_any {
    const struct nettle_hash *h;
    uint64_t outer[32], inner[32], state[32];
};

static void hmac_any_update(void *ctx, size_t len, const uint8_t *data)
{
    struct hmac_any *m = ctx;
    hmac_update(m->state, m->h, len, data);
}

static void hmac_any_digest(void *ctx, size_t len, uint8_t *out)
{
    struct hmac_any *m = ctx;
    hmac_digest(m->outer, m->inner, m->state, m->h, len, out);
}

/* qcrypto_pbkdf2(): PBKDF2-HMAC-h of pw over salt into out[0..outlen). */
static void pbkdf2_any(const struct nettle_hash *h, const uint8_t *pw, size_t pwlen,
                       const uint8_t *salt, size_t saltlen, unsigned iters, uint8_t *out,
                       size_t outlen)
{
    struct hmac_any m;

    m.h = h;
    hmac_set_key(m.outer, m.inner, m.state, h, pwlen, pw);
    pbkdf2(&m, hmac_any_update, hmac_any_digest, h->digest_size, iters, saltlen, salt, outlen, out);
    memset(&m, 0, sizeof(m));
}

/* ---- ciphers ---- */

/*
 * The LUKS ciphers by QAPI name (qcow2_luks_parse() maps the header's
 * name and key length to one), with nettle's meta descriptions: QEMU
 * 7.2's crypto/cipher-nettle.c.inc keys serpent and twofish with
 * serpent_set_key()/twofish_set_key() and cast5 with cast5_set_key() at
 * the QAPI key size, which are what these set_*_key functions do.
 */
static const struct {
    const char *name;
    const struct nettle_cipher *c;
} ciphers[] = {
    {"aes-128", &nettle_aes128},         {"aes-192", &nettle_aes192},
    {"aes-256", &nettle_aes256},         {"cast5-128", &nettle_cast128},
    {"serpent-128", &nettle_serpent128}, {"serpent-192", &nettle_serpent192},
    {"serpent-256", &nettle_serpent256}, {"twofish-128", &nettle_twofish128},
    {"twofish-192", &nettle_twofish192}, {"twofish-256", &nettle_twofish256},
};

#define NCIPHERS (sizeof(ciphers) / sizeof(ciphers[0]))

_Static_assert(sizeof(struct twofish_ctx) <= LUKS_CTX_BYTES, "cipher context storage");
_Static_assert(sizeof(struct serpent_ctx) <= LUKS_CTX_BYTES, "cipher context storage");
_Static_assert(sizeof(struct aes256_ctx) <= LUKS_CTX_BYTES, "cipher context storage");
_Static_assert(sizeof(struct cast128_ctx) <= LUKS_CTX_BYTES, "cipher context storage");

static int cipher_by_name(const char *name)
{
    for (unsigned i = 0; name && i < NCIPHERS; i++)
        if (!strcmp(name, ciphers[i].name))
            return (int)i;
    return -1;
}

/*
 * qcrypto_block_luks_essiv_cipher(): ESSIV's cipher is the volume's when
 * the digest is its key's size, else the member of its family with a key
 * the digest's size (qcow2_luks_parse() and the create options checked
 * that one exists).
 */
static int essiv_cipher(unsigned alg, size_t digest)
{
    const char *name = ciphers[alg].name;
    size_t fam = (size_t)(strchr(name, '-') - name);

    if (ciphers[alg].c->key_size == digest)
        return (int)alg;
    for (unsigned i = 0; i < NCIPHERS; i++)
        if (!strncmp(ciphers[i].name, name, fam + 1) && ciphers[i].c->key_size == digest)
            return (int)i;
    return -1;
}

/*
 * Key vol (alg, mode, ivgen already set) with key[0..vol->key_bytes):
 * qcrypto_cipher_new() and qcrypto_ivgen_new().  essiv_hash: the IV
 * generator's hash for ESSIV.
 */
static int volume_key(struct luks_volume *vol, const uint8_t *key,
                      const struct nettle_hash *essiv_hash)
{
    const struct nettle_cipher *c = ciphers[vol->alg].c;

    c->set_encrypt_key(vol->enc, key);
    c->set_decrypt_key(vol->dec, key);
    if (vol->mode == MODE_XTS) /* the tweak key: the second half */
        c->set_encrypt_key(vol->twk, key + c->key_size);
    if (vol->ivgen == IV_ESSIV) {
        /* ivgen-essiv.c: an ECB cipher keyed with hash(key). */
        uint8_t d[64];
        uint64_t hctx[32];
        int ealg;

        if (!essiv_hash || essiv_hash->digest_size > sizeof(d))
            return -LUKS_ERR_UNSUPPORTED;
        ealg = essiv_cipher(vol->alg, essiv_hash->digest_size);
        if (ealg < 0)
            return -LUKS_ERR_UNSUPPORTED;
        essiv_hash->init(hctx);
        essiv_hash->update(hctx, vol->key_bytes, key);
        essiv_hash->digest(hctx, essiv_hash->digest_size, d);
        ciphers[ealg].c->set_encrypt_key(vol->essiv, d);
        vol->essiv_alg = (unsigned)ealg;
        memset(d, 0, sizeof(d));
        memset(hctx, 0, sizeof(hctx));
    }
    return 0;
}

/*
 * The IV of a sector (qcrypto_ivgen_calculate) into iv[0..niv): the
 * sector number little-endian (plain: its low 32 bits), zero-padded;
 * ESSIV encrypts that block with its cipher.
 */
static void sector_iv(const struct luks_volume *vol, uint64_t sector, uint8_t *iv, size_t niv)
{
    uint8_t block[16] = {0};

    if (vol->ivgen == IV_PLAIN)
        sector &= 0xffffffffu;
    for (unsigned i = 0; i < 8; i++)
        block[i] = (uint8_t)(sector >> (8 * i));
    if (vol->ivgen == IV_ESSIV) {
        const struct nettle_cipher *e = ciphers[vol->essiv_alg].c;
        e->encrypt(vol->essiv, e->block_size, block, block);
    }
    memcpy(iv, block, niv);
}

/* qcrypto_block_cipher_{de,en}crypt_helper(): sector by sector. */
static int crypt(const struct luks_volume *vol, uint64_t sector, uint8_t *buf, size_t len,
                 bool decrypt)
{
    const struct nettle_cipher *c = ciphers[vol->alg].c;
    size_t bs = c->block_size;

    while (len > 0) {
        size_t n = len < LUKS_SECTOR ? len : LUKS_SECTOR;
        uint8_t iv[16];

        if (n % bs)
            return -LUKS_ERR_UNSUPPORTED;
        /* qcrypto_cipher_get_iv_len(): a block's IV, none for ECB. */
        if (vol->mode != MODE_ECB)
            sector_iv(vol, sector, iv, bs);
        switch (vol->mode) {
        case MODE_XTS:
            if (decrypt)
                xts_decrypt_message(vol->dec, vol->twk, c->decrypt, c->encrypt, iv, n, buf, buf);
            else
                xts_encrypt_message(vol->enc, vol->twk, c->encrypt, iv, n, buf, buf);
            break;
        case MODE_CBC:
            if (decrypt)
                cbc_decrypt(vol->dec, c->decrypt, bs, iv, n, buf, buf);
            else
                cbc_encrypt(vol->enc, c->encrypt, bs, iv, n, buf, buf);
            break;
        case MODE_CTR:
            ctr_crypt(vol->enc, c->encrypt, bs, iv, n, buf, buf);
            break;
        default:
            if (decrypt)
                c->decrypt(vol->dec, n, buf, buf);
            else
                c->encrypt(vol->enc, n, buf, buf);
            break;
        }
        buf += n;
        len -= n;
        sector++;
    }
    return 0;
}

int luks_decrypt(const struct luks_volume *vol, uint64_t sector, uint8_t *buf, size_t len)
{
    return crypt(vol, sector, buf, len, true);
}

int luks_encrypt(const struct luks_volume *vol, uint64_t sector, uint8_t *buf, size_t len)
{
    return crypt(vol, sector, buf, len, false);
}

/* ---- AF merge (crypto/afsplit.c) ---- */

static void af_diffuse(const struct nettle_hash *h, uint8_t *block, size_t len)
{
    size_t dl = h->digest_size, n = (len + dl - 1) / dl;
    uint64_t hctx[32];
    uint8_t d[64];

    for (size_t i = 0; i < n; i++) {
        size_t this = i == n - 1 ? len - i * dl : dl;
        uint8_t be[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};

        h->init(hctx);
        h->update(hctx, 4, be);
        h->update(hctx, this, block + i * dl);
        h->digest(hctx, dl, d);
        memcpy(block + i * dl, d, this);
    }
}

static void af_merge(const struct nettle_hash *h, const uint8_t *in, size_t blocklen,
                     uint32_t stripes, uint8_t *out)
{
    uint8_t block[LUKS_KEY_MAX];

    memset(block, 0, blocklen);
    for (uint32_t i = 0; i + 1 < stripes; i++) {
        for (size_t k = 0; k < blocklen; k++)
            block[k] ^= in[i * blocklen + k];
        af_diffuse(h, block, blocklen);
    }
    for (size_t k = 0; k < blocklen; k++)
        out[k] = block[k] ^ in[(size_t)(stripes - 1) * blocklen + k];
    memset(block, 0, sizeof(block));
}

/* The PBKDF2 work of iters iterations deriving len bytes with h. */
static uint64_t work_of(const struct nettle_hash *h, uint64_t iters, size_t len)
{
    return iters * ((len + h->digest_size - 1) / h->digest_size);
}

/* Cipher, mode and IV generator of vol from the header's names; *ivh the ESSIV hash. */
static int volume_setup(struct luks_volume *vol, const struct qcow2_luks_info *info,
                        uint32_t mk_len, const struct nettle_hash **ivh)
{
    int alg;

    memset(vol, 0, sizeof(*vol));
    *ivh = NULL;
    if (mk_len == 0 || mk_len > LUKS_KEY_MAX)
        return -LUKS_ERR_UNSUPPORTED;
    if (!strcmp(info->cipher_mode, "xts"))
        vol->mode = MODE_XTS;
    else if (!strcmp(info->cipher_mode, "cbc"))
        vol->mode = MODE_CBC;
    else if (!strcmp(info->cipher_mode, "ecb"))
        vol->mode = MODE_ECB;
    else if (!strcmp(info->cipher_mode, "ctr"))
        vol->mode = MODE_CTR;
    else
        return -LUKS_ERR_UNSUPPORTED;
    alg = cipher_by_name(info->cipher_alg);
    if (alg < 0 || ciphers[alg].c->key_size * (vol->mode == MODE_XTS ? 2 : 1) != mk_len)
        return -LUKS_ERR_UNSUPPORTED;
    /* XTS is for 16-byte blocks: qemu's nettle backend has no cast5-xts. */
    if (vol->mode == MODE_XTS && ciphers[alg].c->block_size != XTS_BLOCK_SIZE)
        return -LUKS_ERR_UNSUPPORTED;
    vol->alg = (unsigned)alg;
    vol->key_bytes = mk_len;
    if (!strcmp(info->ivgen_alg, "plain"))
        vol->ivgen = IV_PLAIN;
    else if (!strcmp(info->ivgen_alg, "plain64"))
        vol->ivgen = IV_PLAIN64;
    else {
        vol->ivgen = IV_ESSIV;
        *ivh = hash_by_name(info->ivgen_hash_alg);
    }
    return 0;
}

int luks_volume_init(struct luks_volume *vol, const struct qcow2_luks_info *info,
                     uint32_t key_bytes, const uint8_t *key)
{
    const struct nettle_hash *ivh;
    int r = volume_setup(vol, info, key_bytes, &ivh);

    return r < 0 ? r : volume_key(vol, key, ivh);
}

int luks_pbkdf2(const char *hash_alg, const uint8_t *pw, size_t pwlen, const uint8_t *salt,
                size_t saltlen, uint32_t iters, uint8_t *out, size_t outlen)
{
    const struct nettle_hash *h = hash_by_name(hash_alg);

    if (!h)
        return -LUKS_ERR_UNSUPPORTED;
    pbkdf2_any(h, pw, pwlen, salt, saltlen, iters, out, outlen);
    return 0;
}

int luks_af_split(const char *hash_alg, const uint8_t *in, size_t blocklen, uint32_t stripes,
                  const uint8_t *rnd, uint8_t *out)
{
    const struct nettle_hash *h = hash_by_name(hash_alg);
    uint8_t block[LUKS_KEY_MAX];

    if (!h || blocklen > LUKS_KEY_MAX || stripes == 0)
        return -LUKS_ERR_UNSUPPORTED;
    /* qcrypto_afsplit_encode(): random stripes, each folded into the diffused block. */
    memset(block, 0, blocklen);
    for (uint32_t i = 0; i + 1 < stripes; i++) {
        memcpy(out + (size_t)i * blocklen, rnd + (size_t)i * blocklen, blocklen);
        for (size_t k = 0; k < blocklen; k++)
            block[k] ^= out[(size_t)i * blocklen + k];
        af_diffuse(h, block, blocklen);
    }
    for (size_t k = 0; k < blocklen; k++)
        out[(size_t)(stripes - 1) * blocklen + k] = in[k] ^ block[k];
    memset(block, 0, sizeof(block));
    return 0;
}

/*
 * qcrypto_block_luks_load_key() for slot i of hdr (active, its stripes
 * checked by the caller): the passphrase's key decrypts the slot's
 * material, AF-merged into mk, which the header's digest must match.
 * vol is keyed with the slot key (scratch).  Returns 1 on a match, 0 for
 * another passphrase, or a negative code.
 */
static int slot_try(const uint8_t *hdr, unsigned i, const struct nettle_hash *h,
                    const struct nettle_hash *ivh, const uint8_t *pw, size_t pwlen,
                    luks_read_fn read, void *opaque, uint8_t *work, struct luks_volume *vol,
                    uint8_t *mk)
{
    const uint8_t *s = hdr + OFF_SLOTS + i * SLOT_SIZE;
    uint32_t mk_len = be_ld32(hdr + OFF_MK_LEN), mk_iters = be_ld32(hdr + OFF_MK_ITERS);
    uint32_t stripes = be_ld32(s + 44);
    size_t splitlen = (size_t)mk_len * stripes;
    uint8_t key[LUKS_KEY_MAX], digest[DIGEST_LEN];
    int r;

    if (stripes != LUKS_STRIPES_WANT) /* qcow2_luks_parse() refused it */
        return -LUKS_ERR_UNSUPPORTED;
    pbkdf2_any(h, pw, pwlen, s + 8, SALT_LEN, be_ld32(s + 4), key, mk_len);
    r = read(opaque, (uint64_t)be_ld32(s + 40) * LUKS_SECTOR, work, splitlen);
    if (r < 0)
        return r;
    r = volume_key(vol, key, ivh);
    if (r == 0)
        r = crypt(vol, 0, work, splitlen, true);
    memset(key, 0, sizeof(key));
    if (r < 0)
        return r;
    af_merge(h, work, mk_len, stripes, mk);
    pbkdf2_any(h, mk, mk_len, hdr + OFF_MK_SALT, SALT_LEN, mk_iters, digest, DIGEST_LEN);
    return memcmp(digest, hdr + OFF_MK_DIGEST, DIGEST_LEN) == 0;
}

/* The PBKDF2 work of one try of each active slot, over LUKS_WORK_MAX: -LUKS_ERR_TOO_MUCH_WORK. */
static int work_check(const uint8_t *hdr, const struct nettle_hash *h, uint64_t err_args[2])
{
    uint32_t mk_len = be_ld32(hdr + OFF_MK_LEN), mk_iters = be_ld32(hdr + OFF_MK_ITERS);

    for (unsigned i = 0; i < QCOW2_LUKS_NUM_SLOTS; i++) {
        const uint8_t *s = hdr + OFF_SLOTS + i * SLOT_SIZE;
        uint64_t w;

        if (be_ld32(s) != SLOT_ENABLED)
            continue;
        w = work_of(h, be_ld32(s + 4), mk_len) + work_of(h, mk_iters, DIGEST_LEN);
        if (w > LUKS_WORK_MAX) {
            err_args[0] = i;
            err_args[1] = w;
            return -LUKS_ERR_TOO_MUCH_WORK;
        }
    }
    return 0;
}

int luks_unlock_key(const uint8_t *hdr, const struct qcow2_luks_info *info, const uint8_t *pw,
                    size_t pwlen, luks_read_fn read, void *opaque, uint8_t *work,
                    struct luks_volume *vol, uint64_t err_args[2], uint8_t *mk_out)
{
    const struct nettle_hash *h = hash_by_name(info->hash_alg), *ivh = NULL;
    uint32_t mk_len = be_ld32(hdr + OFF_MK_LEN);
    uint8_t mk[LUKS_KEY_MAX];
    int ret = -LUKS_ERR_PASSWORD;

    if (volume_setup(vol, info, mk_len, &ivh) < 0 || !h)
        return -LUKS_ERR_UNSUPPORTED;

    /* Bound the work before any of it: each slot tried, and its digest check. */
    ret = work_check(hdr, h, err_args);
    if (ret < 0)
        return ret;
    ret = -LUKS_ERR_PASSWORD;
    for (unsigned i = 0; i < QCOW2_LUKS_NUM_SLOTS && ret == -LUKS_ERR_PASSWORD; i++) {
        int r;

        if (be_ld32(hdr + OFF_SLOTS + i * SLOT_SIZE) != SLOT_ENABLED)
            continue;
        r = slot_try(hdr, i, h, ivh, pw, pwlen, read, opaque, work, vol, mk);
        if (r < 0)
            ret = r;
        else if (r == 1) {
            ret = volume_key(vol, mk, ivh);
            vol->slot = i;
            if (ret == 0 && mk_out)
                memcpy(mk_out, mk, mk_len);
        }
    }
    memset(mk, 0, sizeof(mk));
    memset(work, 0, LUKS_WORK_SIZE);
    if (ret < 0) {
        unsigned a = vol->alg, m = vol->mode, g = vol->ivgen;
        memset(vol, 0, sizeof(*vol));
        vol->alg = a, vol->mode = m, vol->ivgen = g;
    }
    return ret;
}

int luks_unlock(const uint8_t *hdr, const struct qcow2_luks_info *info, const uint8_t *pw,
                size_t pwlen, luks_read_fn read, void *opaque, uint8_t *work,
                struct luks_volume *vol, uint64_t err_args[2])
{
    return luks_unlock_key(hdr, info, pw, pwlen, read, opaque, work, vol, err_args, NULL);
}

int luks_slot_load(const uint8_t *hdr, const struct qcow2_luks_info *info, unsigned slot,
                   const uint8_t *pw, size_t pwlen, luks_read_fn read, void *opaque, uint8_t *work,
                   uint64_t err_args[2])
{
    const struct nettle_hash *h = hash_by_name(info->hash_alg), *ivh = NULL;
    static struct luks_volume vol;
    uint8_t mk[LUKS_KEY_MAX];
    int r;

    if (slot >= QCOW2_LUKS_NUM_SLOTS)
        return -LUKS_ERR_UNSUPPORTED;
    if (be_ld32(hdr + OFF_SLOTS + slot * SLOT_SIZE) != SLOT_ENABLED)
        return 0;
    if (volume_setup(&vol, info, be_ld32(hdr + OFF_MK_LEN), &ivh) < 0 || !h)
        return -LUKS_ERR_UNSUPPORTED;
    r = work_check(hdr, h, err_args);
    if (r == 0)
        r = slot_try(hdr, slot, h, ivh, pw, pwlen, read, opaque, work, &vol, mk);
    memset(mk, 0, sizeof(mk));
    memset(&vol, 0, sizeof(vol));
    memset(work, 0, LUKS_WORK_SIZE);
    return r;
}
