/*
 * LUKS1 header parsing for qcow2 images with encrypt.format=luks.
 *
 * This reproduces what QEMU 7.2 does when it opens the LUKS header without
 * unlocking it (QCRYPTO_BLOCK_OPEN_NO_IO, as qemu-img info does): load the
 * 592-byte header, run every sanity check of the header and its key slots,
 * and map the cipher, mode, IV generator and hash names to QEMU's QAPI
 * names.  No key material is read and no cryptography is done.
 */
#ifndef QCOW2_LUKS_H
#define QCOW2_LUKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_LUKS_HDR_SIZE  592 /* magic .. key slot 7, as QEMU reads it */
#define QCOW2_LUKS_NUM_SLOTS 8
#define QCOW2_LUKS_UUID_LEN  40 /* bytes in the header; need not hold a NUL */

struct qcow2_luks_info {
    /* Static QAPI names ("aes-256", "xts", "plain64", "sha256"). */
    const char *cipher_alg, *cipher_mode, *ivgen_alg;
    const char *ivgen_hash_alg; /* NULL unless ivgen_alg is "essiv" */
    const char *hash_alg;
    /* The header's uuid bytes up to the first NUL (at most 40), as QEMU
     * prints them, then NUL.  Bytes are copied as stored, not validated. */
    char uuid[QCOW2_LUKS_UUID_LEN + 1];
    uint64_t payload_offset;   /* bytes */
    uint64_t master_key_iters; /* PBKDF2 iterations of the master key digest */
    struct {
        bool active;         /* state word is the "enabled" value */
        uint32_t stripes;    /* as stored; QEMU shows it only when active */
        uint64_t iters;      /* as stored; QEMU shows it only when active */
        uint64_t key_offset; /* bytes; shown for every slot */
    } slots[QCOW2_LUKS_NUM_SLOTS];

    /*
     * On failure, the arguments of the returned code's message template
     * (formats/qcow2/meta_err.h): err_args fills {0}..{3}; err_str and
     * err_str_len fill {s}.  err_str points either into the caller's buf
     * (a name copied from the header) or at a static string; it is NULL
     * when the message has no {s}.
     */
    uint64_t err_args[4];
    const char *err_str;
    size_t err_str_len;
};

/*
 * qcow2_luks_parse - check and decode a LUKS1 header.
 *
 * buf: the bytes of the qcow2 full disk encryption header, starting at the
 *      offset its header extension names.  Bytes past the end of the image
 *      file must read as zeros, as QEMU's file driver returns them.
 * len: how many bytes the extension declares (its length field), or fewer
 *      if the caller read less; only the first QCOW2_LUKS_HDR_SIZE are used.
 *      Fewer than QCOW2_LUKS_HDR_SIZE fails as QEMU fails a read outside
 *      the extension.
 * out: filled on success; on failure only its err_* fields are meaningful.
 *
 * The checks run in QEMU's order, so a header with several defects yields
 * the message QEMU prints.  Returns 0 or the negated QCOW2_ERR_LUKS_* code.
 * Nothing is allocated; out may point into nothing but itself and buf.
 */
int qcow2_luks_parse(const uint8_t *buf, size_t len, struct qcow2_luks_info *out);

#endif /* QCOW2_LUKS_H */
