/*
 * Unlocking and reading encrypted nodes (see crypt.h).
 */
#include <stdlib.h>
#include <string.h>

#include "crypt.h"
#include "instar/errors.h"

int gcrypt_unlock(struct gbs *bs, const uint8_t *hdr, const struct qcow2_luks_info *info,
                  luks_read_fn read, void *opaque, struct luks_volume **out, uint64_t args[2])
{
    struct luks_volume *vol;
    uint8_t *work;
    size_t pwlen;
    int r;

    *out = NULL;
    if (!bs->key)
        return -INSTAR_ERR_ENCRYPTED_DATA;
    vol = malloc(sizeof(*vol));
    work = malloc(LUKS_WORK_SIZE);
    if (!vol || !work) {
        free(vol);
        free(work);
        return -INSTAR_ERR_NOMEM;
    }
    /* qcrypto_secret_lookup_as_utf8(): the passphrase ends at a NUL. */
    pwlen = 0;
    while (pwlen < bs->key->len && bs->key->data[pwlen])
        pwlen++;
    r = luks_unlock(hdr, info, bs->key->data, pwlen, read, opaque, work, vol, args);
    free(work);
    if (r == 0) {
        *out = vol;
        return 0;
    }
    free(vol);
    switch (-r) {
    case LUKS_ERR_PASSWORD:
        return -INSTAR_ERR_LUKS_PASSWORD;
    case LUKS_ERR_UNSUPPORTED:
        return -INSTAR_ERR_LUKS_UNSUPPORTED;
    case LUKS_ERR_TOO_MUCH_WORK: {
        uint64_t a[4] = {args[0], args[1], 0, 0};
        result_error(boot->op, INSTAR_ERR_LUKS_WORK, a, NULL, 0);
    }
    case LUKS_ERR_READ:
        return -INSTAR_ERR_IO;
    default:
        return r;
    }
}

int gcrypt_pread(const struct luks_volume *vol, uint32_t dev, uint64_t host, uint64_t iv_off,
                 void *buf, size_t len)
{
    uint64_t head = iv_off & (LUKS_SECTOR - 1);
    uint64_t span = (head + len + LUKS_SECTOR - 1) & ~(uint64_t)(LUKS_SECTOR - 1);
    uint8_t *tmp;
    int r;

    if (head == 0 && (len & (LUKS_SECTOR - 1)) == 0) {
        if (gblk_pread_direct(dev, host, buf, len) < 0)
            return -GBS_EIO;
        return luks_decrypt(vol, iv_off / LUKS_SECTOR, buf, len) < 0 ? -GBS_EIO : 0;
    }
    if (host < head)
        return -GBS_EIO;
    tmp = malloc((size_t)span);
    if (!tmp)
        return -GBS_ENOMEM;
    r = gblk_pread_direct(dev, host - head, tmp, (size_t)span) < 0 ? -GBS_EIO : 0;
    if (r == 0 && luks_decrypt(vol, (iv_off - head) / LUKS_SECTOR, tmp, (size_t)span) < 0)
        r = -GBS_EIO;
    if (r == 0)
        memcpy(buf, tmp + head, len);
    free(tmp);
    return r;
}
