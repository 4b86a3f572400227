/*
 * The LUKS create options (see luksopt.h).
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luksopt.h"
#include "object.h"

/* QAPI enums (qapi/crypto.json), in their order. */
static const char *const cipher_algs[] = {
    "aes-128",     "aes-192",     "aes-256",     "des",         "3des",        "cast5-128",
    "serpent-128", "serpent-192", "serpent-256", "twofish-128", "twofish-192", "twofish-256",
};
/* Each one's LUKS header name (NULL: none), key bytes and ESSIV error's family name. */
static const char *const luks_names[] = {
    "aes",     "aes",     "aes",     NULL,      NULL,      "cast5",
    "serpent", "serpent", "serpent", "twofish", "twofish", "twofish",
};
static const unsigned cipher_key[] = {16, 24, 32, 8, 24, 16, 16, 24, 32, 16, 24, 32};
static const char *const essiv_family[] = {
    "AES",     "AES",     "AES",     NULL,      NULL,      NULL,
    "Serpent", "Serpent", "Serpent", "Twofish", "Twofish", "Twofish",
};
static const char *const cipher_modes[] = {"ecb", "cbc", "xts", "ctr"};
static const char *const ivgen_algs[] = {"plain", "plain64", "essiv"};
static const char *const hash_algs[] = {"md5",    "sha1",   "sha224",   "sha256",
                                        "sha384", "sha512", "ripemd160"};
static const unsigned hash_len[] = {16, 20, 28, 32, 48, 64, 20};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int lookup(const char *v, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v, list[i]))
            return (int)i;
    return -1;
}

static const char *get(const struct opt_list *l, const char *prefix, const char *name)
{
    char full[64];
    const struct opt_val *v;

    snprintf(full, sizeof(full), "%s%s", prefix, name);
    v = opts_find(l, full);
    return v ? v->str : NULL;
}

int luksopt_check(const struct opt_list *l, const char *prefix, char *msg, size_t cap)
{
    static const struct {
        const char *opt;
        const char *const *list;
        size_t n;
    } enums[] = {
        {"cipher-alg", cipher_algs, N(cipher_algs)}, {"cipher-mode", cipher_modes, N(cipher_modes)},
        {"ivgen-alg", ivgen_algs, N(ivgen_algs)},    {"ivgen-hash-alg", hash_algs, N(hash_algs)},
        {"hash-alg", hash_algs, N(hash_algs)},
    };

    for (size_t i = 0; i < N(enums); i++) {
        const char *v = get(l, prefix, enums[i].opt);

        /* The visitor names the member without qcow2's "encrypt." prefix. */
        if (v && lookup(v, enums[i].list, enums[i].n) < 0) {
            snprintf(msg, cap, "Parameter '%s' does not accept value '%s'", enums[i].opt, v);
            return -1;
        }
    }
    return 0;
}

static int urandom(void *buf, size_t len)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    size_t got = 0;

    if (fd < 0)
        return -1;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);

        if (n <= 0) {
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    return 0;
}

int luksopt_build(const struct opt_list *l, const char *prefix, struct instar_create_luks *out,
                  char *msg, size_t cap)
{
    const char *secret = get(l, prefix, "key-secret"), *pw, *fmt = NULL;
    const char *alg = get(l, prefix, "cipher-alg"), *mode = get(l, prefix, "cipher-mode");
    const char *ivgen = get(l, prefix, "ivgen-alg"), *ivhash = get(l, prefix, "ivgen-hash-alg");
    const char *hash = get(l, prefix, "hash-alg");
    const struct opt_val *it;
    uint8_t u[16];
    size_t pwlen;
    int a;

    memset(out, 0, sizeof(*out));
    if (!secret) {
        snprintf(msg, cap, "Parameter '%skey-secret' is required for cipher", prefix);
        return -1;
    }
    pw = object_secret_lookup(secret, &fmt);
    if (!pw) {
        snprintf(msg, cap, fmt, secret);
        return -1;
    }
    alg = alg ? alg : "aes-256";
    mode = mode ? mode : "xts";
    ivgen = ivgen ? ivgen : "plain64";
    hash = hash ? hash : "sha256";
    if (!ivhash && !strcmp(ivgen, "essiv"))
        ivhash = "sha256";
    a = lookup(alg, cipher_algs, N(cipher_algs));
    if (a < 0 || !luks_names[a]) {
        /* qcrypto_block_luks_cipher_alg_lookup(): no LUKS name. */
        snprintf(msg, cap, "Algorithm '%s' not supported", alg);
        return -1;
    }
    if (!strcmp(ivgen, "essiv")) {
        /*
         * qcrypto_block_luks_essiv_cipher(): the cipher itself when the
         * digest is its key's size, else one of its family with a key the
         * digest's size; cast5 has no other.
         */
        int h = lookup(ivhash, hash_algs, N(hash_algs));
        unsigned d = h < 0 ? 0 : hash_len[h];
        bool ok = d == cipher_key[a];

        for (size_t i = 0; i < N(cipher_algs) && !ok; i++)
            ok = luks_names[i] && !strcmp(luks_names[i], luks_names[a]) && cipher_key[i] == d;
        if (!ok && !strcmp(luks_names[a], "cast5")) {
            snprintf(msg, cap, "Cipher %s not supported with essiv", alg);
            return -1;
        }
        if (!ok) {
            snprintf(msg, cap, "No %s cipher with key size %u available", essiv_family[a], d);
            return -1;
        }
    }
    /* qcrypto_cipher_new() (nettle): XTS needs a 16-byte block, cast5's is 8. */
    if (!strcmp(luks_names[a], "cast5") && !strcmp(mode, "xts")) {
        snprintf(msg, cap, "Unsupported cipher mode %s", mode);
        return -1;
    }
    out->key_bytes = cipher_key[a] * (strcmp(mode, "xts") ? 1 : 2);
    snprintf(out->cipher_name, sizeof(out->cipher_name), "%s", luks_names[a]);
    if (ivhash)
        snprintf(out->cipher_mode, sizeof(out->cipher_mode), "%s-%s:%s", mode, ivgen, ivhash);
    else
        snprintf(out->cipher_mode, sizeof(out->cipher_mode), "%s-%s", mode, ivgen);
    snprintf(out->hash_spec, sizeof(out->hash_spec), "%s", hash);
    it = NULL;
    {
        char full[64];

        snprintf(full, sizeof(full), "%siter-time", prefix);
        it = opts_find(l, full);
    }
    out->iter_time = it ? it->value : 2000; /* QCRYPTO_BLOCK_LUKS_DEFAULT_ITER_TIME_MS */
    pwlen = strlen(pw);
    if (pwlen > INSTAR_KEY_BYTES) {
        snprintf(msg, cap, "instar takes LUKS passphrases of up to %d bytes", INSTAR_KEY_BYTES);
        return -1;
    }
    out->key.len = (uint32_t)pwlen;
    memcpy(out->key.data, pw, pwlen);
    if (urandom(out->master_key, sizeof(out->master_key)) < 0 ||
        urandom(out->mk_salt, sizeof(out->mk_salt)) < 0 ||
        urandom(out->slot_salt, sizeof(out->slot_salt)) < 0 ||
        urandom(out->seed, sizeof(out->seed)) < 0 || urandom(u, sizeof(u)) < 0) {
        snprintf(msg, cap, "Could not read /dev/urandom");
        return -1;
    }
    /* qemu_uuid_generate(), unparsed as qemu_uuid_unparse() does. */
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(out->uuid, sizeof(out->uuid),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
             u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
             u[15]);
    return 0;
}
