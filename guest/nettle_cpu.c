/*
 * nettle's run-time choice of code, made from the host's feature bits.
 *
 * CMake builds each variant under its own name, as nettle's fat build
 * does: the portable C with the HAVE_NATIVE_<fn> hooks nettle's sources
 * carry for fat builds (e.g. sha1-compress.c then defines
 * _nettle_sha1_compress_c), and each assembly file through m4 with
 * fat_transform giving it a suffix (_x86_64, _sha_ni, _aesni).  Here, the
 * public names call through one pointer each, set by gnettle_cpu_select()
 * (nettle's fat-x86_64.c does the same from CPUID, getenv and a
 * constructor, none of which the guest has).  The pointers start at the
 * portable C, so a caller that never selects still gets correct results.
 *
 * What each bit selects (the choices of Debian's libnettle8, whose
 * qemu-img we match; its memxor's SSE2 variant serves Intel CPUs only and
 * is left out):
 *   INSTAR_CPU_X86_64  sha1, sha256, sha512 compress, the AES rounds
 *                      (_nettle_aes_{en,de}crypt), memxor, memxor3
 *   INSTAR_CPU_SHANI   sha1 and sha256 compress with the SHA extensions
 *   INSTAR_CPU_AESNI   aes{128,192,256}_{en,de}crypt with AES-NI
 * md5 and ripemd160 stay C: LUKS rarely names them.
 */
#include <nettle/aes-internal.h>
#include <nettle/memxor.h>
#include <nettle/sha1.h>
#include <nettle/sha2-internal.h>
#include <stdbool.h>

#include "instar/abi.h"
#include "nettle_cpu.h"

typedef void sha1_fn(uint32_t *state, const uint8_t *input);
typedef void sha256_fn(uint32_t *state, const uint8_t *input, const uint32_t *k);
typedef void sha512_fn(uint64_t *state, const uint8_t *input, const uint64_t *k);
typedef void aes_rounds_fn(unsigned rounds, const uint32_t *keys, const struct aes_table *T,
                           size_t length, uint8_t *dst, const uint8_t *src);
typedef void aes128_fn(const struct aes128_ctx *ctx, size_t length, uint8_t *dst,
                       const uint8_t *src);
typedef void aes192_fn(const struct aes192_ctx *ctx, size_t length, uint8_t *dst,
                       const uint8_t *src);
typedef void aes256_fn(const struct aes256_ctx *ctx, size_t length, uint8_t *dst,
                       const uint8_t *src);
typedef void *memxor_fn(void *dst, const void *src, size_t n);
typedef void *memxor3_fn(void *dst, const void *a, const void *b, size_t n);

/* The variants CMake builds (CMakeLists.txt, "crypto"). */
sha1_fn _nettle_sha1_compress_c, _nettle_sha1_compress_x86_64, _nettle_sha1_compress_sha_ni;
sha256_fn _nettle_sha256_compress_c, _nettle_sha256_compress_x86_64, _nettle_sha256_compress_sha_ni;
sha512_fn _nettle_sha512_compress_c, _nettle_sha512_compress_x86_64;
aes_rounds_fn _nettle_aes_encrypt_c, _nettle_aes_encrypt_x86_64, _nettle_aes_decrypt_c,
    _nettle_aes_decrypt_x86_64;
aes128_fn _nettle_aes128_encrypt_c, _nettle_aes128_encrypt_aesni, _nettle_aes128_decrypt_c,
    _nettle_aes128_decrypt_aesni;
aes192_fn _nettle_aes192_encrypt_c, _nettle_aes192_encrypt_aesni, _nettle_aes192_decrypt_c,
    _nettle_aes192_decrypt_aesni;
aes256_fn _nettle_aes256_encrypt_c, _nettle_aes256_encrypt_aesni, _nettle_aes256_decrypt_c,
    _nettle_aes256_decrypt_aesni;
memxor_fn _nettle_memxor_c, _nettle_memxor_x86_64;
memxor3_fn _nettle_memxor3_c, _nettle_memxor3_x86_64;

static sha1_fn *sha1_vec = _nettle_sha1_compress_c;
static sha256_fn *sha256_vec = _nettle_sha256_compress_c;
static sha512_fn *sha512_vec = _nettle_sha512_compress_c;
static aes_rounds_fn *aes_enc_vec = _nettle_aes_encrypt_c;
static aes_rounds_fn *aes_dec_vec = _nettle_aes_decrypt_c;
static aes128_fn *aes128_enc_vec = _nettle_aes128_encrypt_c;
static aes128_fn *aes128_dec_vec = _nettle_aes128_decrypt_c;
static aes192_fn *aes192_enc_vec = _nettle_aes192_encrypt_c;
static aes192_fn *aes192_dec_vec = _nettle_aes192_decrypt_c;
static aes256_fn *aes256_enc_vec = _nettle_aes256_encrypt_c;
static aes256_fn *aes256_dec_vec = _nettle_aes256_decrypt_c;
static memxor_fn *memxor_vec = _nettle_memxor_c;
static memxor3_fn *memxor3_vec = _nettle_memxor3_c;

uint32_t gnettle_cpu_select(uint32_t features)
{
    bool x86_64 = features & INSTAR_CPU_X86_64;
    bool shani = features & INSTAR_CPU_SHANI;
    bool aesni = features & INSTAR_CPU_AESNI;

    sha1_vec = shani    ? _nettle_sha1_compress_sha_ni
               : x86_64 ? _nettle_sha1_compress_x86_64
                        : _nettle_sha1_compress_c;
    sha256_vec = shani    ? _nettle_sha256_compress_sha_ni
                 : x86_64 ? _nettle_sha256_compress_x86_64
                          : _nettle_sha256_compress_c;
    sha512_vec = x86_64 ? _nettle_sha512_compress_x86_64 : _nettle_sha512_compress_c;
    aes_enc_vec = x86_64 ? _nettle_aes_encrypt_x86_64 : _nettle_aes_encrypt_c;
    aes_dec_vec = x86_64 ? _nettle_aes_decrypt_x86_64 : _nettle_aes_decrypt_c;
    aes128_enc_vec = aesni ? _nettle_aes128_encrypt_aesni : _nettle_aes128_encrypt_c;
    aes128_dec_vec = aesni ? _nettle_aes128_decrypt_aesni : _nettle_aes128_decrypt_c;
    aes192_enc_vec = aesni ? _nettle_aes192_encrypt_aesni : _nettle_aes192_encrypt_c;
    aes192_dec_vec = aesni ? _nettle_aes192_decrypt_aesni : _nettle_aes192_decrypt_c;
    aes256_enc_vec = aesni ? _nettle_aes256_encrypt_aesni : _nettle_aes256_encrypt_c;
    aes256_dec_vec = aesni ? _nettle_aes256_decrypt_aesni : _nettle_aes256_decrypt_c;
    memxor_vec = x86_64 ? _nettle_memxor_x86_64 : _nettle_memxor_c;
    memxor3_vec = x86_64 ? _nettle_memxor3_x86_64 : _nettle_memxor3_c;
    return features & INSTAR_CPU_ALL;
}

/* The public names (nettle's headers declare them), each one indirect call. */

void nettle_sha1_compress(uint32_t *state, const uint8_t *input)
{
    sha1_vec(state, input);
}

void _nettle_sha256_compress(uint32_t *state, const uint8_t *input, const uint32_t *k)
{
    sha256_vec(state, input, k);
}

void _nettle_sha512_compress(uint64_t *state, const uint8_t *input, const uint64_t *k)
{
    sha512_vec(state, input, k);
}

void _nettle_aes_encrypt(unsigned rounds, const uint32_t *keys, const struct aes_table *T,
                         size_t length, uint8_t *dst, const uint8_t *src)
{
    aes_enc_vec(rounds, keys, T, length, dst, src);
}

void _nettle_aes_decrypt(unsigned rounds, const uint32_t *keys, const struct aes_table *T,
                         size_t length, uint8_t *dst, const uint8_t *src)
{
    aes_dec_vec(rounds, keys, T, length, dst, src);
}

void nettle_aes128_encrypt(const struct aes128_ctx *ctx, size_t length, uint8_t *dst,
                           const uint8_t *src)
{
    aes128_enc_vec(ctx, length, dst, src);
}

void nettle_aes128_decrypt(const struct aes128_ctx *ctx, size_t length, uint8_t *dst,
                           const uint8_t *src)
{
    aes128_dec_vec(ctx, length, dst, src);
}

void nettle_aes192_encrypt(const struct aes192_ctx *ctx, size_t length, uint8_t *dst,
                           const uint8_t *src)
{
    aes192_enc_vec(ctx, length, dst, src);
}

void nettle_aes192_decrypt(const struct aes192_ctx *ctx, size_t length, uint8_t *dst,
                           const uint8_t *src)
{
    aes192_dec_vec(ctx, length, dst, src);
}

void nettle_aes256_encrypt(const struct aes256_ctx *ctx, size_t length, uint8_t *dst,
                           const uint8_t *src)
{
    aes256_enc_vec(ctx, length, dst, src);
}

void nettle_aes256_decrypt(const struct aes256_ctx *ctx, size_t length, uint8_t *dst,
                           const uint8_t *src)
{
    aes256_dec_vec(ctx, length, dst, src);
}

void *nettle_memxor(void *dst, const void *src, size_t n)
{
    return memxor_vec(dst, src, n);
}

void *nettle_memxor3(void *dst, const void *a, const void *b, size_t n)
{
    return memxor3_vec(dst, a, b, n);
}
