/*
 * The guest's nettle under each code path guest/nettle_cpu.c can choose:
 * the portable C, nettle's x86-64 assembly, and its SHA-NI and AES-NI
 * assembly where this CPU has them (vmm_cpu_features(), what the host
 * passes every run).  Every expected value is a published test vector,
 * copied from nettle's own testsuite (testsuite/sha*-test.c, aes-test.c:
 * NIST SP 800-38A F.1; xts-test.c: NIST CAVS 11.0 XTS; pbkdf2-test.c: RFC
 * 6070 and others), never produced by this code.
 */
#include <criterion/criterion.h>
#include <nettle/aes.h>
#include <nettle/memxor.h>
#include <nettle/nettle-meta.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <nettle/xts.h>
#include <stdio.h>
#include <string.h>

#include "../../guest/nettle_cpu.h"
#include "instar/abi.h"
#include "luks/unlock.h"
#include "vmm.h"

/* The code paths, from the portable C up; a set this CPU lacks is skipped. */
static const uint32_t sets[] = {
    0,
    INSTAR_CPU_X86_64,
    INSTAR_CPU_X86_64 | INSTAR_CPU_SHANI,
    INSTAR_CPU_X86_64 | INSTAR_CPU_AESNI,
    INSTAR_CPU_ALL,
};

static size_t unhex(uint8_t *out, size_t max, const char *hex)
{
    size_t n = 0;

    for (; *hex; hex++) {
        unsigned v;

        if (*hex == ' ')
            continue;
        cr_assert(n / 2 < max && sscanf(hex, "%1x", &v) == 1, "bad vector %s", hex);
        if (n % 2 == 0)
            out[n / 2] = (uint8_t)(v << 4);
        else
            out[n / 2] |= (uint8_t)v;
        n++;
    }
    cr_assert(n % 2 == 0);
    return n / 2;
}

static void expect(const uint8_t *got, const char *hex, uint32_t set, const char *what)
{
    uint8_t want[256];
    size_t n = unhex(want, sizeof(want), hex);

    cr_assert(memcmp(got, want, n) == 0, "%s differs with cpu features %#x", what, set);
}

static void hash_check(const struct nettle_hash *h, const char *msg, size_t reps, const char *hex,
                       uint32_t set)
{
    uint8_t ctx[512], digest[64];

    cr_assert(h->context_size <= sizeof(ctx));
    h->init(ctx);
    for (size_t i = 0; i < reps; i++)
        h->update(ctx, strlen(msg), (const uint8_t *)msg);
    h->digest(ctx, h->digest_size, digest);
    expect(digest, hex, set, h->name);
}

static void hashes(uint32_t set)
{
    static const char abc_56[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    static const char abc_112[] = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                                  "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    static const char digits[] = "1234567890";

    hash_check(&nettle_sha1, "abc", 1, "A9993E364706816ABA3E25717850C26C9CD0D89D", set);
    hash_check(&nettle_sha1, digits, 8, "50ABF5706A150990A08B2C5EA40FA0E585554732", set);
    hash_check(&nettle_sha256, "abc", 1,
               "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", set);
    hash_check(&nettle_sha256, abc_56, 1,
               "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", set);
    hash_check(&nettle_sha512, "abc", 1,
               "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
               "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
               set);
    hash_check(&nettle_sha512, abc_112, 1,
               "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
               "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
               set);
    hash_check(&nettle_sha512, digits, 8,
               "72EC1EF1124A45B047E8B7C75A932195135BB61DE24EC0D1914042246E0AEC3A"
               "2354E093D76F3048B456764346900CB130D2A4FD5DD16ABB5E30BCB850DEE843",
               set);
}

/* NIST SP 800-38A F.1.1, F.1.3, F.1.5: four blocks at once, then back. */
static const char ecb_plain[] = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                                "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";

static void aes_check(unsigned bits, const char *key_hex, const char *cipher_hex, uint32_t set)
{
    uint8_t key[32], pt[64], buf[64];
    size_t klen = unhex(key, sizeof(key), key_hex);
    char what[32];
    union {
        struct aes128_ctx a128;
        struct aes192_ctx a192;
        struct aes256_ctx a256;
    } enc, dec;

    cr_assert(klen == bits / 8);
    unhex(pt, sizeof(pt), ecb_plain);
    snprintf(what, sizeof(what), "aes%u", bits);
    if (bits == 128) {
        aes128_set_encrypt_key(&enc.a128, key);
        aes128_set_decrypt_key(&dec.a128, key);
        aes128_encrypt(&enc.a128, sizeof(pt), buf, pt);
        expect(buf, cipher_hex, set, what);
        aes128_decrypt(&dec.a128, sizeof(buf), buf, buf);
    } else if (bits == 192) {
        aes192_set_encrypt_key(&enc.a192, key);
        aes192_set_decrypt_key(&dec.a192, key);
        aes192_encrypt(&enc.a192, sizeof(pt), buf, pt);
        expect(buf, cipher_hex, set, what);
        aes192_decrypt(&dec.a192, sizeof(buf), buf, buf);
    } else {
        aes256_set_encrypt_key(&enc.a256, key);
        aes256_set_decrypt_key(&dec.a256, key);
        aes256_encrypt(&enc.a256, sizeof(pt), buf, pt);
        expect(buf, cipher_hex, set, what);
        aes256_decrypt(&dec.a256, sizeof(buf), buf, buf);
    }
    expect(buf, ecb_plain, set, what);
}

static void ciphers(uint32_t set)
{
    aes_check(128, "2b7e151628aed2a6abf7158809cf4f3c",
              "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf"
              "43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4",
              set);
    aes_check(192, "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
              "bd334f1d6e45f25ff712a214571fa5cc974104846d0ad3ad7734ecb3ecee4eef"
              "ef7afd2270e2e60adce0ba2face6444e9a4b41ba738d6c72fb16691603c18e0e",
              set);
    aes_check(256, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
              "f3eed1bdb5d2a03c064b5a7e3db181f8591ccb10d410ed26dc5ba74a31362870"
              "b6ed21b99ca6f4f9f153e7b1beafed1d23304b7a39f9f3ff067d8d8f9e24ecc7",
              set);
}

/* XTS as LUKS runs it (xts_{en,de}crypt_message: memxor, the AES entry points). */
static void xts_check(const char *key_hex, const char *tweak_hex, const char *pt_hex,
                      const char *ct_hex, uint32_t set)
{
    uint8_t key[64], tweak[16], pt[64], buf[64];
    size_t klen = unhex(key, sizeof(key), key_hex);
    size_t len = unhex(pt, sizeof(pt), pt_hex);
    struct aes256_ctx enc, dec, twk;

    unhex(tweak, sizeof(tweak), tweak_hex);
    cr_assert(klen == 64, "an AES-256 XTS key");
    aes256_set_encrypt_key(&enc, key);
    aes256_set_decrypt_key(&dec, key);
    aes256_set_encrypt_key(&twk, key + 32);
    xts_encrypt_message(&enc, &twk, (nettle_cipher_func *)aes256_encrypt, tweak, len, buf, pt);
    expect(buf, ct_hex, set, "xts-aes256 encrypt");
    xts_decrypt_message(&dec, &twk, (nettle_cipher_func *)aes256_decrypt,
                        (nettle_cipher_func *)aes256_encrypt, tweak, len, buf, buf);
    expect(buf, pt_hex, set, "xts-aes256 decrypt");
}

/* PBKDF2 as the LUKS code runs it (formats/luks/unlock.c). */
static void pbkdf2_run(const char *hash, const char *pw, size_t pwlen, unsigned iters,
                       const char *salt, size_t saltlen, size_t outlen, uint8_t *out)
{
    cr_assert_eq(luks_pbkdf2(hash, (const uint8_t *)pw, pwlen, (const uint8_t *)salt, saltlen,
                             iters, out, outlen),
                 0);
}

static void pbkdf2_check(uint32_t set)
{
    uint8_t dk[64];

    /* RFC 6070 */
    pbkdf2_run("sha1", "password", 8, 4096, "salt", 4, 20, dk);
    expect(dk, "4b007901b765489abead49d926f721d065a429c1", set, "pbkdf2-sha1");
    pbkdf2_run("sha1", "passwordPASSWORDpassword", 24, 4096, "saltSALTsaltSALTsaltSALTsaltSALTsalt",
               36, 25, dk);
    expect(dk, "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038", set, "pbkdf2-sha1");
    pbkdf2_run("sha256", "Password", 8, 80000, "NaCl", 4, 16, dk);
    expect(dk, "4ddcd8f60b98be21830cee5ef22701f9", set, "pbkdf2-sha256");
    pbkdf2_run("sha512", "passwordPASSWORDpassword", 24, 50, "salt\0\0\0", 7, 64, dk);
    expect(dk,
           "016871a4c4b75f96857fd2b9f8ca28023b30ee2a39f5adcac8c9375f9bda1ccd"
           "1b6f0b2fc3adda505412e79d890056c62e524c7d51154b1a8534575bd02dee39",
           set, "pbkdf2-sha512");
}

/* memxor and memxor3 at every alignment and short length, against bytes. */
static void memxor_check(uint32_t set)
{
    uint8_t a[96], b[96], d[96], want[96];

    for (unsigned i = 0; i < sizeof(a); i++) {
        a[i] = (uint8_t)(i * 7 + 1);
        b[i] = (uint8_t)(i * 13 + 5);
    }
    for (unsigned off = 0; off < 8; off++) {
        for (unsigned len = 0; len + off + 8 <= sizeof(a); len += 3) {
            for (unsigned i = 0; i < len; i++)
                want[i] = a[off + i] ^ b[i + 3];
            memcpy(d, a + off, len);
            memxor(d, b + 3, len);
            cr_assert(memcmp(d, want, len) == 0, "memxor %u+%u, cpu features %#x", off, len, set);
            memset(d, 0, sizeof(d));
            memxor3(d + 1, a + off, b + 3, len);
            cr_assert(memcmp(d + 1, want, len) == 0, "memxor3 %u+%u, cpu features %#x", off, len,
                      set);
        }
    }
}

Test(luks_cpu, vectors_on_every_code_path)
{
    uint32_t host = vmm_cpu_features();

    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
        uint32_t set = sets[i];

        if (set & ~host) {
            cr_log_warn("this CPU lacks cpu features %#x: not tested", set & ~host);
            continue;
        }
        cr_assert_eq(gnettle_cpu_select(set), set);
        hashes(set);
        ciphers(set);
        xts_check("1ea661c58d943a0e4801e42f4b0947149e7f9f8e3e68d0c7505210bd311a0e7c"
                  "d6e13ffdf2418d8d1911c004cda58da3d619b7e2b9141e58318eea392cf41b08",
                  "adf8d92627464ad2f0428e84a9f87564",
                  "2eedea52cd8215e1acc647e810bbc3642e87287f8d2e57e36c0a24fbc12a202e",
                  "cbaad0e2f6cea3f50b37f934d46a9b130b9d54f07e34f36af793e86f73c6d7db", set);
        xts_check("266c336b3b01489f3267f52835fd92f674374b88b4e1ebd2d36a5f457581d9d0"
                  "42c3eef7b0b7e5137b086496b4d9e6ac658d7196a23f23f036172fdb8faee527",
                  "06b209a7a22f486ecbfadb0f3137ba42",
                  "ca7d65ef8d3dfad345b61ccddca1ad81de830b9e86c7b426d76cb7db766852d9"
                  "81c6b21409399d78f42cc0b33a7bbb06",
                  "c73256870cc2f4dd57acc74b5456dbd776912a128bc1f77d72cdebbf270044b7"
                  "a43ceed29025e1e8be211fa3c3ed002d",
                  set);
        pbkdf2_check(set);
        memxor_check(set);
    }
    gnettle_cpu_select(0);
}

/* The host finds what this CPU has; narrowing by INSTAR_CPU_FEATURES only removes. */
Test(luks_cpu, host_features)
{
    uint32_t all = vmm_cpu_features();

    cr_assert(all & INSTAR_CPU_X86_64);
    cr_assert_eq(all & ~INSTAR_CPU_ALL, 0u);
    setenv("INSTAR_CPU_FEATURES", "1", 1);
    cr_assert_eq(vmm_cpu_features(), INSTAR_CPU_X86_64);
    setenv("INSTAR_CPU_FEATURES", "0", 1);
    cr_assert_eq(vmm_cpu_features(), 0u);
    unsetenv("INSTAR_CPU_FEATURES");
    cr_assert_eq(vmm_cpu_features(), all);
    cr_log_info("cpu features of this host: %#x", all);
}
