/*
 * LUKS1 volume creation, the steps of QEMU 7.2's qcrypto_block_luks_create()
 * and qcrypto_block_luks_store_key(): the header of a new volume (its
 * names, master key length and salt, uuid, eight disabled key slots laid
 * out after the 4 KiB header, the payload after them), the PBKDF2
 * iteration counts derived by timing as qcrypto_pbkdf2_count_iters()
 * does, the master key digest, and key slot 0's key material (the master
 * key AF-split and encrypted with the passphrase's key).  Pure: the clock,
 * the random bytes and the writes come from the caller.
 */
#ifndef LUKS_CREATE_H
#define LUKS_CREATE_H

#include <stddef.h>
#include <stdint.h>

#include "luks/unlock.h"

#define LUKS_CREATE_SALT 32u
#define LUKS_UUID_STR    36u /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */

/* What the caller chose (qemu's create options) and the random bytes. */
struct luks_create {
    const char *cipher_name;   /* header cipher name, "aes" */
    const char *cipher_mode;   /* header mode spec, "xts-plain64", "cbc-essiv:sha256" */
    const char *hash_spec;     /* header hash, "sha256" */
    uint32_t key_bytes;        /* master key length (twice the cipher's for xts) */
    uint64_t iter_time;        /* ms, >= 1 */
    const uint8_t *master_key; /* key_bytes random bytes */
    const uint8_t *mk_salt;    /* LUKS_CREATE_SALT random bytes */
    const uint8_t *slot_salt;  /* LUKS_CREATE_SALT random bytes */
    const char *uuid;          /* LUKS_UUID_STR characters */
    const uint8_t *pw;         /* the passphrase */
    size_t pwlen;
    /* The thread's CPU time in ms (qcrypto_pbkdf2_get_thread_cpu). */
    uint64_t (*now_ms)(void *opaque);
    /* Fill buf with len random bytes (the AF split's stripes). */
    void (*random)(void *opaque, uint8_t *buf, size_t len);
    void *opaque;
};

enum {
    LUKS_CREATE_ERR_CPU = 16, /* Unable to get accurate CPU usage */
    LUKS_CREATE_ERR_SCALE,    /* PBKDF iterations {0} too large to scale */
    LUKS_CREATE_ERR_LARGE,    /* PBKDF iterations {0} larger than 4294967295 */
    LUKS_CREATE_ERR_NAMES,    /* the names do not make a header instar can use */
};

/* The payload offset in bytes of a volume with a master key of key_bytes. */
uint64_t luks_create_payload_offset(uint32_t key_bytes);

/*
 * luks_create_header - the header (QCOW2_LUKS_HDR_SIZE bytes into hdr),
 * master key digest and iterations included, slot 0 not yet active; and
 * info parsed from it.  Runs the master key's PBKDF2 benchmark and digest.
 * Returns 0 or -LUKS_CREATE_ERR_* / -LUKS_ERR_UNSUPPORTED (err_arg: the
 * message's number).
 */
int luks_create_header(const struct luks_create *c, uint8_t *hdr, struct qcow2_luks_info *info,
                       uint64_t *err_arg);

/*
 * luks_create_slot0 - qcrypto_block_luks_store_key() for slot 0: its
 * iterations by benchmark, its key from the passphrase, the master key
 * AF-split (stripes from c->random) and encrypted into material (key_bytes
 * * 4000 bytes: LUKS_WORK_SIZE holds any), which the caller writes at
 * *material_off (bytes) before it writes the header, which this marks
 * active.  Returns 0 or a negative code as luks_create_header().
 */
int luks_create_slot0(const struct luks_create *c, uint8_t *hdr, const struct qcow2_luks_info *info,
                      uint8_t *material, size_t *material_len, uint64_t *material_off,
                      uint64_t *err_arg);

/*
 * luks_store_key - qcrypto_block_luks_store_key() for key slot slot of
 * hdr (a header qcow2_luks_parse() accepted, giving info): c->slot_salt
 * as the slot's new salt, its iterations by benchmark of c->pw scaled to
 * c->iter_time, its key from c->pw, and the master key c->master_key
 * (c->key_bytes) AF-split (stripes from c->random) and encrypted into
 * material (LUKS_WORK_SIZE bytes), which the caller writes at
 * *material_off (bytes, the slot's key offset) before it writes the
 * header, which this marks active.  Returns 0 or a negative code as
 * luks_create_header().
 */
int luks_store_key(const struct luks_create *c, uint8_t *hdr, const struct qcow2_luks_info *info,
                   unsigned slot, uint8_t *material, size_t *material_len, uint64_t *material_off,
                   uint64_t *err_arg);

/*
 * luks_slot_disable - qcrypto_block_luks_erase_key()'s header change: key
 * slot slot (< 8) of the parsed header hdr disabled, its salt and
 * iterations zeroed; the extent of its key material (which qemu then
 * overwrites with random bytes, after the header) in *material_len and
 * *material_off (bytes).
 */
void luks_slot_disable(uint8_t *hdr, unsigned slot, size_t *material_len, uint64_t *material_off);

#endif /* LUKS_CREATE_H */
