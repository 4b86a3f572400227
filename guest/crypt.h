/*
 * Unlocking an encrypted node in the guest (formats/luks/unlock.h over the
 * node's secret), shared by the drivers whose images carry a LUKS header.
 */
#ifndef GUEST_CRYPT_H
#define GUEST_CRYPT_H

#include "bdrv.h"
#include "luks/unlock.h"

/*
 * gcrypt_unlock - open the LUKS header hdr (parsed into info) of node bs
 * with its secret (bs->key; none: the open fails as qemu's does without
 * key-secret), reading key material through read(opaque, ...).
 * Returns 0 with *out a malloc'd volume, or a negative INSTAR_ERR_* /
 * QCOW2_ERR_* code for the open result (*args its message arguments).
 */
int gcrypt_unlock(struct gbs *bs, const uint8_t *hdr, const struct qcow2_luks_info *info,
                  luks_read_fn read, void *opaque, struct luks_volume **out, uint64_t args[2]);

/*
 * gcrypt_pread - read len bytes stored encrypted at host offset host of
 * device dev, decrypted with vol, the IV sector numbers counted from
 * iv_off / 512 (qcow2: the host offset; luks: the offset in the payload),
 * which lies at the same place within its 512-byte sector as host.
 * Returns 0 or -errno.
 */
int gcrypt_pread(const struct luks_volume *vol, uint32_t dev, uint64_t host, uint64_t iv_off,
                 void *buf, size_t len);

#endif /* GUEST_CRYPT_H */
