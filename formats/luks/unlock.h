/*
 * LUKS1 unlocking and sector encryption, with nettle's primitives (the
 * library Debian's qemu-img uses), as QEMU 7.2's crypto/block-luks.c does.
 *
 * The header itself is parsed and checked by formats/qcow2/luks.c
 * (qcow2_luks_parse(), which qemu-img info also uses); this library takes
 * that header and a passphrase, tries every active key slot (PBKDF2 of the
 * passphrase with the slot's salt and iterations, the slot's key material
 * decrypted with that key, AF-merged with the header's hash), and keeps the
 * master key whose PBKDF2 digest the header records.  Then it decrypts and
 * encrypts 512-byte sectors with the header's cipher (AES, cast5, serpent,
 * twofish), mode (ECB, CBC, XTS, CTR) and IV generator.  Pure: no I/O (key material comes through a
 * callback), no allocation (the caller passes the work buffer), no printing.
 */
#ifndef LUKS_UNLOCK_H
#define LUKS_UNLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2/luks.h"

#define LUKS_SECTOR       512u
#define LUKS_KEY_MAX      64u                    /* bytes: aes-256-xts */
#define LUKS_STRIPES_WANT 4000u                  /* the only value the header check accepts */
#define LUKS_WORK_SIZE    (LUKS_KEY_MAX * 4000u) /* one slot's key material */

/*
 * The PBKDF2 work instar does to unlock one image: the iterations of the
 * slots it tries and of the master key digest, each weighted by the
 * number of digest-sized blocks it derives.  qemu-img has no bound (a
 * hostile header can ask for 2^32 - 1 iterations per slot, hours of
 * work); instar refuses a header above this with LUKS_ERR_TOO_MUCH_WORK
 * before it starts.  Images qemu-img creates with its default iter-time
 * (2 s of PBKDF2 on the creating machine) ask for a few million.
 */
#define LUKS_WORK_MAX (1ull << 28)

enum {
    LUKS_ERR_PASSWORD = 1,  /* Invalid password, cannot unlock any keyslot */
    LUKS_ERR_READ,          /* the key material callback failed */
    LUKS_ERR_UNSUPPORTED,   /* a cipher without the mode (cast5-xts), as qemu's cipher_new */
    LUKS_ERR_TOO_MUCH_WORK, /* over LUKS_WORK_MAX; args: slot, work */
};

/* Bytes of the largest nettle cipher context a volume holds (twofish_ctx). */
#define LUKS_CTX_BYTES 4256u

/* An unlocked volume: the master key's cipher contexts. */
struct luks_volume {
    unsigned alg;       /* internal cipher id (the table in unlock.c) */
    unsigned mode;      /* 0 ecb, 1 cbc, 2 xts, 3 ctr */
    unsigned ivgen;     /* 0 plain, 1 plain64, 2 essiv */
    unsigned essiv_alg; /* ESSIV's cipher (internal id) */
    uint32_t key_bytes; /* master key length */
    uint32_t slot;      /* the key slot that opened it */
    /* Cipher contexts (nettle's aes256_ctx, twofish_ctx, ...), 8-aligned storage. */
    uint64_t enc[LUKS_CTX_BYTES / 8], dec[LUKS_CTX_BYTES / 8], twk[LUKS_CTX_BYTES / 8],
        essiv[LUKS_CTX_BYTES / 8];
};

/*
 * luks_read_fn - read len bytes at off from the start of the LUKS header
 * (the key material).  Returns 0 or a negative code, which luks_unlock()
 * returns as is.
 */
typedef int (*luks_read_fn)(void *opaque, uint64_t off, uint8_t *buf, size_t len);

/*
 * luks_unlock - open the LUKS1 header hdr (QCOW2_LUKS_HDR_SIZE bytes that
 * qcow2_luks_parse() accepted, giving info) with passphrase pw[0..pwlen)
 * (QEMU uses the secret up to its first NUL: the caller cuts it).
 * work: LUKS_WORK_SIZE bytes of scratch.  On success fills *vol.
 * Returns 0, -LUKS_ERR_*, or a negative code from read.  For
 * -LUKS_ERR_TOO_MUCH_WORK, err_args[0..1] hold the slot (8: the master
 * key digest) and its work.
 */
int luks_unlock(const uint8_t *hdr, const struct qcow2_luks_info *info, const uint8_t *pw,
                size_t pwlen, luks_read_fn read, void *opaque, uint8_t *work,
                struct luks_volume *vol, uint64_t err_args[2]);

/*
 * luks_unlock_key - luks_unlock(), the master key (key_bytes) also copied
 * to mk_out when it is not NULL (qcrypto_block_luks_find_key(), for a key
 * slot written with it).  The caller wipes mk_out.
 */
int luks_unlock_key(const uint8_t *hdr, const struct qcow2_luks_info *info, const uint8_t *pw,
                    size_t pwlen, luks_read_fn read, void *opaque, uint8_t *work,
                    struct luks_volume *vol, uint64_t err_args[2], uint8_t *mk_out);

/*
 * luks_slot_load - qcrypto_block_luks_load_key(): whether key slot slot
 * of hdr (as luks_unlock() takes it) opens with pw[0..pwlen).  work:
 * LUKS_WORK_SIZE bytes of scratch.  Returns 1 if it does, 0 if the slot
 * is inactive or holds another passphrase, or a negative code as
 * luks_unlock() (the work bounded as there, over every active slot).
 */
int luks_slot_load(const uint8_t *hdr, const struct qcow2_luks_info *info, unsigned slot,
                   const uint8_t *pw, size_t pwlen, luks_read_fn read, void *opaque, uint8_t *work,
                   uint64_t err_args[2]);

/*
 * luks_decrypt / luks_encrypt - len bytes (a multiple of 512) of buf in
 * place, the first sector being sector number sector (IV generator).
 * Returns 0, or -LUKS_ERR_UNSUPPORTED.
 */
int luks_decrypt(const struct luks_volume *vol, uint64_t sector, uint8_t *buf, size_t len);
int luks_encrypt(const struct luks_volume *vol, uint64_t sector, uint8_t *buf, size_t len);

/*
 * luks_volume_init - key vol for the cipher, mode and IV generator info
 * names with key[0..key_bytes) (a master key, or a slot's key when key
 * material is written).  Returns 0 or -LUKS_ERR_UNSUPPORTED.
 */
int luks_volume_init(struct luks_volume *vol, const struct qcow2_luks_info *info,
                     uint32_t key_bytes, const uint8_t *key);

/*
 * luks_pbkdf2 - qcrypto_pbkdf2(): PBKDF2-HMAC with the hash hash_alg names
 * (QAPI name, "sha256") of pw over salt, iters iterations, into
 * out[0..outlen).  Returns 0 or -LUKS_ERR_UNSUPPORTED.
 */
int luks_pbkdf2(const char *hash_alg, const uint8_t *pw, size_t pwlen, const uint8_t *salt,
                size_t saltlen, uint32_t iters, uint8_t *out, size_t outlen);

/*
 * luks_af_split - qcrypto_afsplit_encode(): in[0..blocklen) split into
 * stripes blocks at out (blocklen * stripes bytes), the first stripes - 1
 * taken from rnd (as many random bytes), diffused with hash_alg.
 * Returns 0 or -LUKS_ERR_UNSUPPORTED.
 */
int luks_af_split(const char *hash_alg, const uint8_t *in, size_t blocklen, uint32_t stripes,
                  const uint8_t *rnd, uint8_t *out);

#endif /* LUKS_UNLOCK_H */
