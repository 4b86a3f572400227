/*
 * The luks driver of the guest block layer: a raw LUKS1 volume, as QEMU
 * 7.2's block/crypto.c opens it.  The header at offset 0 is checked by
 * formats/qcow2/luks.c (qcow2_luks_parse(), the checks of
 * qcrypto_block_luks_open()), unlocked with the node's secret by
 * formats/luks (PBKDF2, AF merge, digest), and the payload follows at the
 * header's payload offset: guest offset off is stored encrypted at
 * payload + off, its IV the sector number off / 512 (block_crypto_co_preadv
 * passes the guest offset).  The virtual size is the file's length less
 * the payload offset (block_crypto_getlength), in whole sectors as QEMU
 * counts them.  Block status has no hook in QEMU: every range is DATA
 * without an offset.  Writes encrypt whole sectors, a partial one read,
 * merged and written back (QEMU's request alignment of 512 does the same).
 */
#include <stdlib.h>
#include <string.h>

#include "bdrv.h"
#include "crypt.h"
#include "luks/create.h"
#include "luks/unlock.h"
#include "qcow2/be.h"
#include "qcow2/luks.h"

struct gluks {
    uint8_t hdr[QCOW2_LUKS_HDR_SIZE];
    struct qcow2_luks_info info;
    uint64_t payload; /* bytes */
    uint32_t dev;
    struct luks_volume *vol;
};

static struct gluks lukss[INSTAR_NODE_MAX];

static int hdr_read(void *opaque, uint64_t off, uint8_t *buf, size_t len)
{
    const struct gluks *s = opaque;

    return gblk_pread_direct(s->dev, off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

/*
 * Read and check the header of device dev into s (no key used).  Returns
 * 0 or a negative error code, the message arguments in s->info.err_*.
 */
static int gluks_open(struct gluks *s, uint32_t dev)
{
    memset(s, 0, sizeof(*s));
    s->dev = dev;
    /* Past the end of the file the header reads as zeros, as qemu's file driver. */
    if (gblk_pread(dev, 0, s->hdr, sizeof(s->hdr)) < 0)
        return -INSTAR_ERR_IO;
    return qcow2_luks_parse(s->hdr, sizeof(s->hdr), &s->info);
}

static __attribute__((noreturn)) void gluks_fail(uint32_t op, int ret, const struct gluks *s)
{
    result_error(op, -ret, s->info.err_args, s->info.err_str,
                 s->info.err_str ? s->info.err_str_len : 0);
}

/* block_crypto_getlength(), rounded up to sectors as refresh_total_sectors() counts. */
static int gluks_size(const struct gluks *s, uint64_t file_size, uint64_t *size)
{
    uint64_t len;

    if (s->info.payload_offset > file_size)
        return -INSTAR_ERR_LUKS_SIZE;
    len = file_size - s->info.payload_offset;
    *size = (len + 511) & ~511ull;
    return 0;
}

void gbs_luks_describe(uint32_t op, uint32_t dev, struct qcow2_luks_info *info, uint64_t *size)
{
    static struct gluks s;
    int ret = gluks_open(&s, dev);

    if (ret == 0)
        ret = gluks_size(&s, gblk_size(dev), size);
    if (ret < 0)
        gluks_fail(op, ret, &s);
    *info = s.info;
    /* The message pointers, if any, point into s.hdr: none on success. */
}

void gbs_luks_unlock(uint32_t op, uint32_t dev, const struct instar_key *key)
{
    static struct gluks s;
    struct gbs bs;
    uint64_t args[4] = {0, 0, 0, 0}, size;
    int ret = gluks_open(&s, dev);

    if (ret == 0 && !key)
        ret = -INSTAR_ERR_LUKS_KEY_SECRET;
    if (ret < 0)
        gluks_fail(op, ret, &s);
    memset(&bs, 0, sizeof(bs));
    bs.file = dev;
    bs.key = key;
    ret = gcrypt_unlock(&bs, s.hdr, &s.info, hdr_read, &s, &s.vol, args);
    if (ret == 0)
        ret = gluks_size(&s, gblk_size(dev), &size);
    if (ret < 0)
        result_error(op, -ret, args, NULL, 0);
    free(s.vol);
    s.vol = NULL;
}

static struct gluks *L(struct gbs *bs)
{
    return bs->opaque;
}

static int luks_drv_open(struct gbs *bs)
{
    struct gluks *s = &lukss[bs->node];
    uint64_t args[4] = {0, 0, 0, 0};
    int ret;

    bs->opaque = s;
    ret = gluks_open(s, bs->file);
    if (ret < 0)
        gluks_fail(boot->op, ret, s);
    /* The host asks for the secret before it builds the graph; none here is its bug. */
    if (!bs->key)
        return -INSTAR_ERR_LUKS_KEY_SECRET;
    ret = gcrypt_unlock(bs, s->hdr, &s->info, hdr_read, s, &s->vol, args);
    if (ret < 0)
        return ret;
    s->payload = s->info.payload_offset;
    ret = gluks_size(s, gdev_length(bs->file), &bs->total);
    if (ret < 0)
        return ret;
    bs->supports_backing = false;
    return 0;
}

static int luks_block_status(struct gbs *bs, bool want_zero, uint64_t off, uint64_t bytes,
                             uint64_t *pnum, uint64_t *map, uint32_t *dev)
{
    (void)bs;
    (void)want_zero;
    (void)off;
    *pnum = bytes;
    *map = 0;
    *dev = INSTAR_NO_NODE;
    return INSTAR_BS_DATA;
}

static int luks_pread(struct gbs *bs, uint64_t off, void *buf, size_t len)
{
    const struct gluks *s = L(bs);

    if (len == 0)
        return 0;
    return gcrypt_pread(s->vol, bs->file, s->payload + off, off, buf, len);
}

/* Encrypt and write n bytes (whole sectors) at guest offset off from tmp. */
static int write_sectors(struct gbs *bs, uint64_t off, uint8_t *tmp, size_t n)
{
    const struct gluks *s = L(bs);

    if (luks_encrypt(s->vol, off / LUKS_SECTOR, tmp, n) < 0)
        return -GBS_EIO;
    return gdev_pwrite(bs->file, s->payload + off, tmp, n) < 0 ? -GBS_EIO : 0;
}

#define LUKS_WRITE_CHUNK (1u << 20) /* BLOCK_CRYPTO_MAX_IO_SIZE */

static int luks_pwrite(struct gbs *bs, uint64_t off, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint8_t *tmp;
    int ret = 0;

    tmp = malloc(LUKS_WRITE_CHUNK);
    if (!tmp)
        return -GBS_ENOMEM;
    while (len > 0 && ret == 0) {
        uint64_t head = off & (LUKS_SECTOR - 1);
        uint64_t start = off - head;
        size_t n;

        if (head || len < LUKS_SECTOR) {
            /* A partial sector: read, merge, write it back. */
            n = LUKS_SECTOR - head < len ? (size_t)(LUKS_SECTOR - head) : len;
            ret = luks_pread(bs, start, tmp, LUKS_SECTOR);
            if (ret == 0) {
                memcpy(tmp + head, p, n);
                ret = write_sectors(bs, start, tmp, LUKS_SECTOR);
            }
        } else {
            n = len < LUKS_WRITE_CHUNK ? len & ~(size_t)(LUKS_SECTOR - 1) : LUKS_WRITE_CHUNK;
            memcpy(tmp, p, n);
            ret = write_sectors(bs, off, tmp, n);
        }
        off += n;
        p += n;
        len -= n;
    }
    free(tmp);
    return ret;
}

static int luks_flush(struct gbs *bs)
{
    return gdev_flush(bs->file) < 0 ? -GBS_EIO : 0;
}

const struct gbs_driver gbs_drv_luks = {
    .name = "luks",
    .open = luks_drv_open,
    .block_status = luks_block_status,
    .pread = luks_pread,
    .pwrite = luks_pwrite,
    .flush = luks_flush,
};

/* --- Creation (qcrypto_block_luks_create through block/crypto.c or qcow2) --- */

/* The AF split's random stripes: AES-256 in counter mode over the host's seed. */
struct gluks_rng {
    struct luks_volume vol; /* aes-256-ecb keyed with the seed */
    uint64_t counter;
};

static uint64_t rng_now_ms(void *opaque)
{
    (void)opaque;
    return hc_clock_ns() / 1000000;
}

static void rng_fill(void *opaque, uint8_t *buf, size_t len)
{
    struct gluks_rng *g = opaque;

    while (len > 0) {
        uint8_t block[LUKS_SECTOR];
        size_t n = len < sizeof(block) ? len : sizeof(block);

        memset(block, 0, sizeof(block));
        for (unsigned i = 0; i < sizeof(block) / 16; i++) {
            uint64_t c = g->counter++;
            memcpy(block + i * 16, &c, sizeof(c));
        }
        luks_encrypt(&g->vol, 0, block, sizeof(block));
        memcpy(buf, block, n);
        memset(block, 0, sizeof(block));
        buf += n;
        len -= n;
    }
}

/* A failure of the LUKS steps themselves: qemu's message, and the create ends. */
static __attribute__((noreturn)) void format_fail(int r, uint64_t arg)
{
    uint64_t args[4] = {arg, 0, 0, 0};
    int code = r == -LUKS_CREATE_ERR_SCALE   ? INSTAR_ERR_LUKS_SCALE
               : r == -LUKS_CREATE_ERR_LARGE ? INSTAR_ERR_LUKS_LARGE
               : r == -LUKS_CREATE_ERR_CPU   ? INSTAR_ERR_LUKS_CREATE
               : r == -LUKS_ERR_UNSUPPORTED  ? INSTAR_ERR_LUKS_UNSUPPORTED
               : r == -INSTAR_ERR_NOMEM      ? INSTAR_ERR_NOMEM
                                             : INSTAR_ERR_BAD_ARGS;

    result_error(INSTAR_OP_CREATE, code, args, NULL, 0);
}

int gbs_luks_format(const struct instar_create_luks *l, const struct gluks_format_io *io,
                    uint64_t *payload_offset)
{
    static uint8_t hdr[QCOW2_LUKS_HDR_SIZE];
    static struct gluks_rng rng;
    static const struct qcow2_luks_info ecb = {
        .cipher_alg = "aes-256", .cipher_mode = "ecb", .ivgen_alg = "plain64"};
    struct qcow2_luks_info info;
    struct luks_create c;
    char name[33], mode[33], hash[33], uuid[LUKS_UUID_STR + 1];
    size_t pwlen = 0, mlen;
    uint64_t err = 0, moff;
    uint8_t *material;
    int r;

    memcpy(name, l->cipher_name, 32);
    memcpy(mode, l->cipher_mode, 32);
    memcpy(hash, l->hash_spec, 32);
    memcpy(uuid, l->uuid, LUKS_UUID_STR);
    name[32] = mode[32] = hash[32] = uuid[LUKS_UUID_STR] = '\0';
    if (l->key.len > INSTAR_KEY_BYTES || l->key_bytes == 0 || l->key_bytes > LUKS_KEY_MAX ||
        strlen(uuid) != LUKS_UUID_STR)
        format_fail(-INSTAR_ERR_BAD_ARGS, 0);
    while (pwlen < l->key.len && l->key.data[pwlen])
        pwlen++;
    if (luks_volume_init(&rng.vol, &ecb, 32, l->seed) < 0)
        format_fail(-INSTAR_ERR_BAD_ARGS, 0);
    rng.counter = 0;
    c = (struct luks_create){
        .cipher_name = name,
        .cipher_mode = mode,
        .hash_spec = hash,
        .key_bytes = l->key_bytes,
        .iter_time = l->iter_time,
        .master_key = l->master_key,
        .mk_salt = l->mk_salt,
        .slot_salt = l->slot_salt,
        .uuid = uuid,
        .pw = l->key.data,
        .pwlen = pwlen,
        .now_ms = rng_now_ms,
        .random = rng_fill,
        .opaque = &rng,
    };
    r = luks_create_header(&c, hdr, &info, &err);
    if (r < 0)
        format_fail(r, err);
    *payload_offset = info.payload_offset;
    /* initfunc: the room for the header and key material, before any key is stored. */
    r = io->init(io->opaque, info.payload_offset);
    if (r < 0)
        return r;
    material = malloc(LUKS_WORK_SIZE);
    if (!material)
        format_fail(-INSTAR_ERR_NOMEM, 0);
    r = luks_create_slot0(&c, hdr, &info, material, &mlen, &moff, &err);
    if (r < 0)
        format_fail(r, err);
    /* qcrypto_block_luks_store_key(): the key material, then the header. */
    r = io->write(io->opaque, moff, material, mlen);
    memset(material, 0, LUKS_WORK_SIZE);
    free(material);
    if (r == 0)
        r = io->write(io->opaque, 0, hdr, sizeof(hdr));
    memset(&rng, 0, sizeof(rng));
    return r;
}

/* --- Key slot changes (qcrypto_block_luks_amend_options) --- */

static int am_read(void *opaque, uint64_t off, uint8_t *buf, size_t len)
{
    const struct gluks_amend_io *io = opaque;

    /* qcow2_crypto_hdr_read_func(): nothing outside the extension's length. */
    if (off > io->len || len > io->len - off)
        return -INSTAR_ERR_LUKS_AMEND_OUTSIDE;
    return gdev_pread(io->dev, io->base + off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

static int am_write(const struct gluks_amend_io *io, uint64_t off, const void *buf, size_t len)
{
    if (off > io->len || len > io->len - off)
        return -INSTAR_ERR_LUKS_AMEND_OUTSIDE;
    return gdev_pwrite(io->dev, io->base + off, buf, len) < 0 ? -INSTAR_ERR_IO : 0;
}

/* The passphrase of k up to its first NUL (qcrypto_secret_lookup_as_utf8()). */
static size_t key_len(const struct instar_key *k)
{
    size_t n = 0;

    while (n < k->len && n < INSTAR_KEY_BYTES && k->data[n])
        n++;
    return n;
}

/* A luks_unlock()/luks_slot_load() failure as an open's code. */
int gbs_luks_unlock_code(int r)
{
    switch (-r) {
    case LUKS_ERR_PASSWORD:
        return -INSTAR_ERR_LUKS_PASSWORD;
    case LUKS_ERR_UNSUPPORTED:
        return -INSTAR_ERR_LUKS_UNSUPPORTED;
    case LUKS_ERR_TOO_MUCH_WORK:
        return -INSTAR_ERR_LUKS_WORK;
    case LUKS_ERR_READ:
        return -INSTAR_ERR_IO;
    default:
        return r;
    }
}

/*
 * qcrypto_block_luks_erase_key(): the slot's header entry reset and the
 * header written first, then its key material overwritten with random
 * bytes QCRYPTO_BLOCK_LUKS_ERASE_ITERATIONS times (qemu goes on with the
 * material when the header write fails, and returns the failure).
 */
#define LUKS_ERASE_ITERATIONS 40

static int erase_key(const struct gluks_amend_io *io, uint8_t *hdr, unsigned slot,
                     struct gluks_rng *rng, uint8_t *work)
{
    size_t len;
    uint64_t off;
    int ret, r;

    luks_slot_disable(hdr, slot, &len, &off);
    if (len > LUKS_WORK_SIZE)
        return -INSTAR_ERR_LUKS_UNSUPPORTED;
    ret = am_write(io, 0, hdr, QCOW2_LUKS_HDR_SIZE);
    for (unsigned i = 0; i < LUKS_ERASE_ITERATIONS; i++) {
        rng_fill(rng, work, len);
        r = am_write(io, off, work, len);
        if (r < 0)
            return r;
    }
    return ret;
}

int gbs_luks_amend(const struct instar_amend_luks *a, const struct gluks_amend_io *io,
                   uint64_t args[4])
{
    static uint8_t hdr[QCOW2_LUKS_HDR_SIZE];
    static struct gluks_rng rng;
    static struct luks_volume vol;
    static const struct qcow2_luks_info ecb = {
        .cipher_alg = "aes-256", .cipher_mode = "ecb", .ivgen_alg = "plain64"};
    struct qcow2_luks_info info;
    uint8_t mk[LUKS_KEY_MAX], *work;
    unsigned nactive = 0, active = 0, slot;
    bool force = (a->flags & INSTAR_AMEND_LUKS_FORCE) != 0;
    int ret;

    memset(args, 0, 4 * sizeof(args[0]));
    if (a->key.len > INSTAR_KEY_BYTES || a->new_key.len > INSTAR_KEY_BYTES ||
        a->old_key.len > INSTAR_KEY_BYTES ||
        ((a->flags & INSTAR_AMEND_LUKS_KEYSLOT) && a->keyslot >= QCOW2_LUKS_NUM_SLOTS))
        return -INSTAR_ERR_BAD_ARGS;
    ret = am_read((void *)io, 0, hdr, sizeof(hdr));
    if (ret < 0)
        return ret;
    ret = qcow2_luks_parse(hdr, sizeof(hdr), &info);
    if (ret < 0)
        return ret;
    for (unsigned i = 0; i < QCOW2_LUKS_NUM_SLOTS; i++)
        if (info.slots[i].active) {
            active |= 1u << i;
            nactive++;
        }
    work = malloc(LUKS_WORK_SIZE);
    if (!work)
        return -INSTAR_ERR_NOMEM;
    if (luks_volume_init(&rng.vol, &ecb, 32, a->seed) < 0) {
        ret = -INSTAR_ERR_BAD_ARGS;
        goto out;
    }
    rng.counter = 0;

    if (a->flags & INSTAR_AMEND_LUKS_ACTIVE) {
        struct luks_create c;
        size_t mlen;
        uint64_t moff, err = 0;

        /* qcrypto_block_luks_amend_add_keyslot(). */
        slot = QCOW2_LUKS_NUM_SLOTS;
        if (a->flags & INSTAR_AMEND_LUKS_KEYSLOT)
            slot = a->keyslot;
        for (unsigned i = 0; i < QCOW2_LUKS_NUM_SLOTS && slot == QCOW2_LUKS_NUM_SLOTS; i++)
            if (!(active & (1u << i)))
                slot = i;
        args[0] = slot;
        if (slot == QCOW2_LUKS_NUM_SLOTS) {
            ret = -INSTAR_ERR_LUKS_AMEND_FULL;
            goto out;
        }
        if (!force && (active & (1u << slot))) {
            ret = -INSTAR_ERR_LUKS_AMEND_ACTIVE;
            goto out;
        }
        /* The master key, from the volume's own secret. */
        ret = luks_unlock_key(hdr, &info, a->key.data, key_len(&a->key), am_read, (void *)io, work,
                              &vol, args, mk);
        memset(&vol, 0, sizeof(vol));
        if (ret < 0) {
            ret = gbs_luks_unlock_code(ret);
            goto out;
        }
        c = (struct luks_create){
            .key_bytes = be_ld32(hdr + 108), /* the master key length */
            .iter_time = a->iter_time,
            .master_key = mk,
            .slot_salt = a->slot_salt,
            .pw = a->new_key.data,
            .pwlen = key_len(&a->new_key),
            .now_ms = rng_now_ms,
            .random = rng_fill,
            .opaque = &rng,
        };
        ret = luks_store_key(&c, hdr, &info, slot, work, &mlen, &moff, &err);
        memset(mk, 0, sizeof(mk));
        if (ret < 0) {
            args[0] = err;
            args[1] = slot; /* the hint's "Failed to write to keyslot N" */
            ret = ret == -LUKS_CREATE_ERR_SCALE   ? -INSTAR_ERR_LUKS_SCALE
                  : ret == -LUKS_CREATE_ERR_LARGE ? -INSTAR_ERR_LUKS_LARGE
                  : ret == -LUKS_CREATE_ERR_CPU   ? -INSTAR_ERR_LUKS_CREATE
                                                  : -INSTAR_ERR_LUKS_UNSUPPORTED;
            goto out;
        }
        /* qcrypto_block_luks_store_key(): the key material, then the header. */
        ret = am_write(io, moff, work, mlen);
        if (ret == 0)
            ret = am_write(io, 0, hdr, sizeof(hdr));
        goto out;
    }

    /* qcrypto_block_luks_amend_erase_keyslots(). */
    if (a->flags & INSTAR_AMEND_LUKS_KEYSLOT) {
        slot = a->keyslot;
        args[0] = slot;
        if (a->flags & INSTAR_AMEND_LUKS_OLD) {
            ret = luks_slot_load(hdr, &info, slot, a->old_key.data, key_len(&a->old_key), am_read,
                                 (void *)io, work, args);
            if (ret < 0) {
                ret = gbs_luks_unlock_code(ret);
                goto out;
            }
            args[0] = slot;
            if (ret == 0) {
                ret = -INSTAR_ERR_LUKS_AMEND_NOT_OLD;
                goto out;
            }
        }
        if (!force && !(active & (1u << slot))) {
            ret = -INSTAR_ERR_LUKS_AMEND_ERASED;
            goto out;
        }
        if (!force && nactive == 1) {
            ret = -INSTAR_ERR_LUKS_AMEND_ONLY;
            goto out;
        }
        ret = erase_key(io, hdr, slot, &rng, work);
    } else if (a->flags & INSTAR_AMEND_LUKS_OLD) {
        unsigned match = 0;

        for (unsigned i = 0; i < QCOW2_LUKS_NUM_SLOTS; i++) {
            ret = luks_slot_load(hdr, &info, i, a->old_key.data, key_len(&a->old_key), am_read,
                                 (void *)io, work, args);
            if (ret < 0) {
                ret = gbs_luks_unlock_code(ret);
                goto out;
            }
            if (ret == 1)
                match |= 1u << i;
        }
        if (match == 0) {
            ret = -INSTAR_ERR_LUKS_AMEND_NO_MATCH;
            goto out;
        }
        if (!force && (unsigned)__builtin_popcount(match) == nactive) {
            ret = -INSTAR_ERR_LUKS_AMEND_ALL;
            goto out;
        }
        ret = 0;
        for (unsigned i = 0; i < QCOW2_LUKS_NUM_SLOTS && ret == 0; i++)
            if (match & (1u << i))
                ret = erase_key(io, hdr, i, &rng, work);
    } else {
        ret = -INSTAR_ERR_BAD_ARGS; /* the host refused it */
    }
out:
    memset(mk, 0, sizeof(mk));
    memset(work, 0, LUKS_WORK_SIZE);
    free(work);
    memset(&rng, 0, sizeof(rng));
    return ret;
}
