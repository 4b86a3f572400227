/*
 * LUKS1 header checks and name mapping, after QEMU 7.2's
 * crypto/block-luks.c open path with QCRYPTO_BLOCK_OPEN_NO_IO.
 *
 * On-disk layout (LUKS1 on-disk format 1.2.1; all integers big-endian):
 *
 *   0  magic "LUKS\xba\xbe"        104  payload offset (512-byte sectors)
 *   6  version (u16)               108  master key length (bytes)
 *   8  cipher name  (32, NUL)      112  master key digest (20)
 *  40  cipher mode  (32, NUL)      132  master key salt (32)
 *  72  hash spec    (32, NUL)      164  master key iterations
 *                                  168  uuid (40)
 * 208  8 key slots of 48 bytes: active, iterations, salt (32),
 *      key material offset (sectors), anti-forensic stripes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "be.h"
#include "luks.h"
#include "qcow2_err.h"

#define LUKS_OFF_VERSION     6
#define LUKS_OFF_CIPHER_NAME 8
#define LUKS_OFF_CIPHER_MODE 40
#define LUKS_OFF_HASH_SPEC   72
#define LUKS_OFF_PAYLOAD     104
#define LUKS_OFF_MK_LEN      108
#define LUKS_OFF_MK_ITERS    164
#define LUKS_OFF_UUID        168
#define LUKS_OFF_SLOTS       208
#define LUKS_NAME_LEN        32
#define LUKS_SLOT_SIZE       48

#define LUKS_VERSION       1
#define LUKS_STRIPES       4000
#define LUKS_SLOT_DISABLED 0x0000DEADu
#define LUKS_SLOT_ENABLED  0x00AC71F3u
#define LUKS_SECTOR_SIZE   512u
/* Key material starts after the first 4096 bytes: 8 sectors. */
#define LUKS_HDR_SECTORS 8u

static const uint8_t luks_magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};

/* QAPI QCryptoHashAlgorithm names and digest lengths (crypto/hash.c). */
struct luks_hash {
    const char *name;
    uint32_t digest_len;
};

static const struct luks_hash luks_hashes[] = {
    {"md5", 16},    {"sha1", 20},   {"sha224", 28},    {"sha256", 32},
    {"sha384", 48}, {"sha512", 64}, {"ripemd160", 20},
};

/* QAPI QCryptoCipherMode and QCryptoIVGenAlgorithm names. */
static const char *const luks_modes[] = {"ecb", "cbc", "xts", "ctr"};
static const char *const luks_ivgens[] = {"plain", "plain64", "essiv"};

/*
 * LUKS cipher names and the QAPI algorithm each key size selects.  Only
 * these four families can come out of a LUKS header in QEMU; essiv_err is
 * the message when ESSIV needs a key size the family lacks (0: the family
 * has no ESSIV variant at all).
 */
struct luks_cipher {
    const char *name;
    struct {
        uint32_t key_bytes;
        const char *qapi;
    } sizes[3];
    int essiv_err;
};

static const struct luks_cipher luks_ciphers[] = {
    {"aes", {{16, "aes-128"}, {24, "aes-192"}, {32, "aes-256"}}, QCOW2_ERR_LUKS_ESSIV_AES},
    {"cast5", {{16, "cast5-128"}, {0, NULL}, {0, NULL}}, 0},
    {"serpent",
     {{16, "serpent-128"}, {24, "serpent-192"}, {32, "serpent-256"}},
     QCOW2_ERR_LUKS_ESSIV_SERPENT},
    {"twofish",
     {{16, "twofish-128"}, {24, "twofish-192"}, {32, "twofish-256"}},
     QCOW2_ERR_LUKS_ESSIV_TWOFISH},
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static int lookup_name(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static const struct luks_hash *lookup_hash(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(luks_hashes); i++) {
        if (strcmp(name, luks_hashes[i].name) == 0) {
            return &luks_hashes[i];
        }
    }
    return NULL;
}

/*
 * Sectors of key material a slot occupies, computed as QEMU does (which
 * follows cryptsetup, not the spec): key length times stripes, rounded up
 * to sectors, then to the 8-sector header size.  QEMU multiplies the two
 * 32-bit header fields in 32-bit arithmetic, so the product wraps; that is
 * reproduced on purpose so hostile headers fail or pass exactly as there.
 */
static uint32_t splitkey_sectors(uint32_t mk_len, uint32_t stripes)
{
    uint64_t bytes = (uint32_t)(mk_len * stripes);
    uint64_t sectors = (bytes + LUKS_SECTOR_SIZE - 1) / LUKS_SECTOR_SIZE;
    return (uint32_t)((sectors + LUKS_HDR_SECTORS - 1) & ~(uint64_t)(LUKS_HDR_SECTORS - 1));
}

static void set_err_str(struct qcow2_luks_info *out, const char *s)
{
    out->err_str = s;
    out->err_str_len = strlen(s);
}

/*
 * Returns the message for a value QEMU prints with "%d" though it is a
 * uint32_t: the plain code below 2^31, else the twin code whose template
 * holds the minus sign, with the magnitude as argument.
 */
static int signed_arg(struct qcow2_luks_info *out, int idx, uint32_t v, int code, int neg_code)
{
    if (v < 0x80000000u) {
        out->err_args[idx] = v;
        return -code;
    }
    out->err_args[idx] = (uint64_t)(0x100000000ull - v);
    return -neg_code;
}

/* qcrypto_block_luks_check_header(): structural checks, in QEMU's order. */
static int luks_check(const uint8_t *buf, struct qcow2_luks_info *out)
{
    uint32_t payload = be_ld32(buf + LUKS_OFF_PAYLOAD);
    uint32_t mk_len = be_ld32(buf + LUKS_OFF_MK_LEN);

    if (memcmp(buf, luks_magic, sizeof(luks_magic)) != 0) {
        return -QCOW2_ERR_LUKS_NOT_LUKS;
    }
    if (be_ld16(buf + LUKS_OFF_VERSION) != LUKS_VERSION) {
        out->err_args[0] = be_ld16(buf + LUKS_OFF_VERSION);
        return -QCOW2_ERR_LUKS_VERSION;
    }
    if (!memchr(buf + LUKS_OFF_CIPHER_NAME, 0, LUKS_NAME_LEN)) {
        return -QCOW2_ERR_LUKS_CIPHER_NAME_NUL;
    }
    if (!memchr(buf + LUKS_OFF_CIPHER_MODE, 0, LUKS_NAME_LEN)) {
        return -QCOW2_ERR_LUKS_CIPHER_MODE_NUL;
    }
    if (!memchr(buf + LUKS_OFF_HASH_SPEC, 0, LUKS_NAME_LEN)) {
        return -QCOW2_ERR_LUKS_HASH_SPEC_NUL;
    }
    if (payload < LUKS_HDR_SECTORS) {
        return -QCOW2_ERR_LUKS_PAYLOAD_OVERLAP;
    }
    if (be_ld32(buf + LUKS_OFF_MK_ITERS) == 0) {
        return -QCOW2_ERR_LUKS_MK_ITERS_ZERO;
    }

    for (unsigned i = 0; i < QCOW2_LUKS_NUM_SLOTS; i++) {
        const uint8_t *s1 = buf + LUKS_OFF_SLOTS + i * LUKS_SLOT_SIZE;
        uint32_t active = be_ld32(s1);
        uint32_t start1 = be_ld32(s1 + 40);
        uint32_t stripes = be_ld32(s1 + 44);
        uint32_t len1 = splitkey_sectors(mk_len, stripes);

        out->err_args[0] = i;
        if (stripes != LUKS_STRIPES) {
            return signed_arg(out, 1, stripes, QCOW2_ERR_LUKS_SLOT_STRIPES,
                              QCOW2_ERR_LUKS_SLOT_STRIPES_NEG);
        }
        if (active != LUKS_SLOT_DISABLED && active != LUKS_SLOT_ENABLED) {
            return -QCOW2_ERR_LUKS_SLOT_STATE;
        }
        if (active == LUKS_SLOT_ENABLED && be_ld32(s1 + 4) == 0) {
            return -QCOW2_ERR_LUKS_SLOT_ITERS_ZERO;
        }
        if (start1 < LUKS_HDR_SECTORS) {
            return -QCOW2_ERR_LUKS_SLOT_HDR_OVERLAP;
        }
        /* QEMU adds in unsigned int, so the end wraps modulo 2^32. */
        if ((uint32_t)(start1 + len1) > payload) {
            return -QCOW2_ERR_LUKS_SLOT_PAYLOAD_OVERLAP;
        }
        /* Later slots are measured before their own stripes are checked. */
        for (unsigned j = i + 1; j < QCOW2_LUKS_NUM_SLOTS; j++) {
            const uint8_t *s2 = buf + LUKS_OFF_SLOTS + j * LUKS_SLOT_SIZE;
            uint32_t start2 = be_ld32(s2 + 40);
            uint32_t len2 = splitkey_sectors(mk_len, be_ld32(s2 + 44));

            if ((uint32_t)(start1 + len1) > start2 && (uint32_t)(start2 + len2) > start1) {
                out->err_args[1] = j;
                return -QCOW2_ERR_LUKS_SLOTS_OVERLAP;
            }
        }
    }
    out->err_args[0] = 0;
    return 0;
}

/*
 * qcrypto_block_luks_parse_header(): the mode field reads
 * "<mode>-<ivgen>[:<ivhash>]", e.g. "xts-plain64" or "cbc-essiv:sha256".
 * Names are looked up exactly (case-sensitive), in QEMU's order.
 */
static int luks_names(const uint8_t *buf, struct qcow2_luks_info *out)
{
    const char *hdr_name = (const char *)buf + LUKS_OFF_CIPHER_NAME;
    const char *hdr_mode = (const char *)buf + LUKS_OFF_CIPHER_MODE;
    const char *hdr_hash = (const char *)buf + LUKS_OFF_HASH_SPEC;
    uint32_t key_bytes = be_ld32(buf + LUKS_OFF_MK_LEN);
    char mode[LUKS_NAME_LEN];
    char *ivgen, *ivhash;
    const struct luks_hash *ivhash_alg = NULL, *hash_alg;
    const struct luks_cipher *family = NULL;
    const char *cipher_alg = NULL;
    uint32_t cipher_key_bytes = 0;
    int mode_idx, ivgen_idx;

    /* luks_check() found a NUL inside each of the three name fields. */
    memcpy(mode, hdr_mode, sizeof(mode));
    ivgen = strchr(mode, '-');
    if (!ivgen) {
        set_err_str(out, hdr_mode);
        return -QCOW2_ERR_LUKS_MODE_FORMAT;
    }
    *ivgen++ = '\0';
    ivhash = strchr(ivgen, ':');
    if (ivhash) {
        *ivhash++ = '\0';
        ivhash_alg = lookup_hash(ivhash);
        if (!ivhash_alg) {
            set_err_str(out, hdr_mode + (ivhash - mode));
            return -QCOW2_ERR_LUKS_HASH_ALG;
        }
    }

    mode_idx = lookup_name(mode, luks_modes, ARRAY_LEN(luks_modes));
    if (mode_idx < 0) {
        out->err_str = hdr_mode;
        out->err_str_len = strlen(mode);
        return -QCOW2_ERR_LUKS_CIPHER_MODE;
    }

    /* An XTS key is two keys of the cipher's size. */
    if (strcmp(luks_modes[mode_idx], "xts") == 0) {
        key_bytes /= 2;
    }
    for (size_t i = 0; i < ARRAY_LEN(luks_ciphers) && !cipher_alg; i++) {
        if (strcmp(hdr_name, luks_ciphers[i].name) != 0) {
            continue;
        }
        for (size_t k = 0; k < ARRAY_LEN(luks_ciphers[i].sizes); k++) {
            if (luks_ciphers[i].sizes[k].qapi && luks_ciphers[i].sizes[k].key_bytes == key_bytes) {
                family = &luks_ciphers[i];
                cipher_alg = luks_ciphers[i].sizes[k].qapi;
                cipher_key_bytes = key_bytes;
                break;
            }
        }
    }
    if (!cipher_alg) {
        set_err_str(out, hdr_name);
        return signed_arg(out, 0, key_bytes, QCOW2_ERR_LUKS_CIPHER_ALG,
                          QCOW2_ERR_LUKS_CIPHER_ALG_NEG);
    }

    hash_alg = lookup_hash(hdr_hash);
    if (!hash_alg) {
        set_err_str(out, hdr_hash);
        return -QCOW2_ERR_LUKS_HASH_ALG;
    }

    ivgen_idx = lookup_name(ivgen, luks_ivgens, ARRAY_LEN(luks_ivgens));
    if (ivgen_idx < 0) {
        /* The name ends at ':' in the copy, not in the header. */
        out->err_str = hdr_mode + (ivgen - mode);
        out->err_str_len = strlen(ivgen);
        return -QCOW2_ERR_LUKS_IVGEN;
    }

    /*
     * ESSIV keys the IV cipher with a digest, so the cipher family must
     * have a key the digest's size (dm-crypt's rule).  With plain/plain64
     * a ":hash" suffix is parsed above but otherwise ignored, as in QEMU.
     */
    out->ivgen_hash_alg = NULL;
    if (strcmp(luks_ivgens[ivgen_idx], "essiv") == 0) {
        bool ok = false;

        if (!ivhash_alg) {
            return -QCOW2_ERR_LUKS_IVGEN_HASH_MISSING;
        }
        if (ivhash_alg->digest_len == cipher_key_bytes) {
            ok = true;
        }
        for (size_t k = 0; k < ARRAY_LEN(family->sizes) && !ok && family->essiv_err; k++) {
            ok = family->sizes[k].qapi && family->sizes[k].key_bytes == ivhash_alg->digest_len;
        }
        if (!ok && !family->essiv_err) {
            set_err_str(out, cipher_alg);
            return -QCOW2_ERR_LUKS_ESSIV_CIPHER;
        }
        if (!ok) {
            out->err_args[0] = ivhash_alg->digest_len;
            return -family->essiv_err;
        }
        out->ivgen_hash_alg = ivhash_alg->name;
    }

    out->cipher_alg = cipher_alg;
    out->cipher_mode = luks_modes[mode_idx];
    out->ivgen_alg = luks_ivgens[ivgen_idx];
    out->hash_alg = hash_alg->name;
    return 0;
}

int qcow2_luks_parse(const uint8_t *buf, size_t len, struct qcow2_luks_info *out)
{
    int ret;

    memset(out, 0, sizeof(*out));

    /* QEMU reads the whole header through qcow2's extension-bounded reader. */
    if (len < QCOW2_LUKS_HDR_SIZE) {
        return -QCOW2_ERR_LUKS_OUTSIDE_EXT;
    }
    ret = luks_check(buf, out);
    if (ret < 0) {
        return ret;
    }
    ret = luks_names(buf, out);
    if (ret < 0) {
        return ret;
    }

    /* QEMU shows the uuid as a string cut at its first NUL. */
    size_t uuid_len = strnlen((const char *)buf + LUKS_OFF_UUID, QCOW2_LUKS_UUID_LEN);
    memcpy(out->uuid, buf + LUKS_OFF_UUID, uuid_len);
    out->uuid[uuid_len] = '\0';

    /* Sector counts are 32-bit, so byte offsets fit in 64 bits. */
    out->payload_offset = (uint64_t)be_ld32(buf + LUKS_OFF_PAYLOAD) * LUKS_SECTOR_SIZE;
    out->master_key_iters = be_ld32(buf + LUKS_OFF_MK_ITERS);
    for (unsigned i = 0; i < QCOW2_LUKS_NUM_SLOTS; i++) {
        const uint8_t *s = buf + LUKS_OFF_SLOTS + i * LUKS_SLOT_SIZE;

        out->slots[i].active = be_ld32(s) == LUKS_SLOT_ENABLED;
        out->slots[i].iters = be_ld32(s + 4);
        out->slots[i].key_offset = (uint64_t)be_ld32(s + 40) * LUKS_SECTOR_SIZE;
        out->slots[i].stripes = be_ld32(s + 44);
    }
    return 0;
}
