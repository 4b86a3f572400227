/*
 * The Apple disk image (dmg.h): dmg_open()'s reading of the trailer, the
 * resource fork or plist and the mish blocks, as QEMU 7.2 does it.
 */
#include <string.h>

#include "dmg.h"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static int read_u32(const struct dmg_reader *r, uint64_t off, uint32_t *v)
{
    uint8_t b[4];
    int ret = r->pread(r->opaque, off, b, sizeof(b));

    if (ret == 0)
        *v = be32(b);
    return ret;
}

static int read_u64(const struct dmg_reader *r, uint64_t off, uint64_t *v)
{
    uint8_t b[8];
    int ret = r->pread(r->opaque, off, b, sizeof(b));

    if (ret == 0)
        *v = be64(b);
    return ret;
}

int dmg_open_trailer(const struct dmg_reader *r, uint64_t file_length, struct dmg_image *img)
{
    uint8_t buf[515];
    uint64_t length, offset = 0, koly, total = 0;
    size_t n, i;
    int ret;

    memset(img, 0, sizeof(*img));
    img->max_compressed = 1;
    img->max_sectors = 1;
    /* dmg_find_koly_offset(): bdrv_getlength() counts whole sectors. */
    length = file_length > UINT64_MAX - 511 ? UINT64_MAX & ~511ull : (file_length + 511) & ~511ull;
    if (length < 512)
        return -DMG_ERR_TOO_SMALL;
    if (length > 511 + 512)
        offset = length - 511 - 512;
    n = length < sizeof(buf) ? (size_t)length : sizeof(buf);
    ret = r->pread(r->opaque, offset, buf, n);
    if (ret < 0)
        return ret;
    for (i = 0; i + 3 < n; i++)
        if (!memcmp(buf + i, "koly", 4))
            break;
    if (i + 3 >= n)
        return -DMG_ERR_NO_TRAILER;
    koly = img->koly = offset + i;

    /* koly is below 2^64 - 1024: the field offsets do not wrap. */
    if ((ret = read_u64(r, koly + 0x18, &img->data_fork_offset)) < 0)
        return ret;
    if (img->data_fork_offset > koly)
        return -DMG_ERR_INVALID;
    if ((ret = read_u64(r, koly + 0x28, &img->rsrc_offset)) < 0 ||
        (ret = read_u64(r, koly + 0x30, &img->rsrc_length)) < 0)
        return ret;
    if (img->rsrc_offset >= koly || img->rsrc_length > koly - img->rsrc_offset)
        return -DMG_ERR_INVALID;
    if ((ret = read_u64(r, koly + 0xd8, &img->plist_offset)) < 0 ||
        (ret = read_u64(r, koly + 0xe0, &img->plist_length)) < 0)
        return ret;
    if (img->plist_offset >= koly || img->plist_length > koly - img->plist_offset)
        return -DMG_ERR_INVALID;
    if ((ret = read_u64(r, koly + 0x1ec, &total)) < 0)
        return ret;
    /* bs->total_sectors is an int64_t. */
    if (total >> 63)
        return -DMG_ERR_INVALID;
    img->total_sectors = total;
    if (img->rsrc_length == 0) {
        if (img->plist_length == 0)
            return -DMG_ERR_INVALID;
        /* dmg_read_plist_xml()'s cap: a test sample's plist was about 1 MiB. */
        if (img->plist_length > DMG_PLIST_MAX)
            return -DMG_ERR_INVALID;
    }
    return 0;
}

/* A mish block's bytes: in the file (the resource fork) or in memory (a decoded plist <data>). */
struct mish_src {
    const struct dmg_reader *r; /* NULL: mem */
    uint64_t off;
    const uint8_t *mem;
};

static int mish_read(const struct mish_src *m, uint32_t at, uint8_t *buf, size_t len)
{
    if (!m->r) {
        memcpy(buf, m->mem + at, len);
        return 0;
    }
    /* m->off + at: at most 2^33 past a fork inside the file. */
    return m->r->pread(m->r->opaque, m->off + at, buf, len);
}

static bool has_warned(const struct dmg_image *img, enum dmg_warn w)
{
    for (unsigned k = 0; k < 3; k++)
        if (((img->warn_order >> (2 * k)) & 3) == (uint32_t)w)
            return true;
    return false;
}

static void warn_once(struct dmg_image *img, enum dmg_warn w)
{
    for (unsigned k = 0; k < 3; k++) {
        uint32_t v = (img->warn_order >> (2 * k)) & 3;

        if (v == (uint32_t)w)
            return;
        if (v == 0) {
            img->warn_order |= (uint32_t)w << (2 * k);
            return;
        }
    }
}

static bool known_type(uint32_t t)
{
    /* dmg-bz2 and dmg-lzfse are missing: their types are not known. */
    return t == DMG_UDZE || t == DMG_UDRW || t == DMG_UDIG || t == DMG_UDZO;
}

/* dmg_read_mish_block() over count bytes of m. */
static int read_mish(const struct mish_src *m, uint32_t count, struct dmg_image *img,
                     dmg_chunk_fn fn, void *opaque)
{
    uint8_t h[0x20], e[40];
    uint64_t out_offset, in_offset;
    uint32_t chunks, k;
    int ret;

    /* Not a mish block (too small, or another magic): skipped. */
    if (count < 244)
        return 0;
    if ((ret = mish_read(m, 0, h, sizeof(h))) < 0)
        return ret;
    if (be32(h) != 0x6d697368u)
        return 0;
    out_offset = be64(h + 8);
    in_offset = img->data_fork_offset + be64(h + 0x18);
    chunks = (count - 204) / 40;
    for (k = 0; k < chunks; k++) {
        struct dmg_chunk c;

        if ((ret = mish_read(m, 204 + 40 * k, e, sizeof(e))) < 0)
            return ret;
        c.type = be32(e);
        if (!known_type(c.type)) {
            if (c.type == DMG_UDBZ) {
                warn_once(img, DMG_WARN_BZ2);
            } else if (c.type == DMG_ULFO) {
                warn_once(img, DMG_WARN_LZFSE);
            } else if (c.type != DMG_UDCM && c.type != DMG_UDLE) {
                if (!has_warned(img, DMG_WARN_UNKNOWN))
                    img->unknown_type = c.type;
                warn_once(img, DMG_WARN_UNKNOWN);
            }
            continue;
        }
        c.sector = be64(e + 8) + out_offset;
        c.sectorcount = be64(e + 0x10);
        img->err_args[1] = img->n_chunks;
        if (c.type != DMG_UDZE && c.type != DMG_UDIG && c.sectorcount > DMG_SECTORCOUNTS_MAX) {
            img->err_args[0] = c.sectorcount;
            return -DMG_ERR_SECTORCOUNT;
        }
        c.offset = be64(e + 0x18) + in_offset;
        c.length = be64(e + 0x20);
        if (c.length > DMG_LENGTHS_MAX) {
            img->err_args[0] = c.length;
            return -DMG_ERR_LENGTH;
        }
        /* update_max_chunk_size() */
        if (c.type == DMG_UDZO) {
            if (c.length > img->max_compressed)
                img->max_compressed = (uint32_t)c.length;
            if (c.sectorcount > img->max_sectors)
                img->max_sectors = (uint32_t)c.sectorcount;
        } else if (c.type == DMG_UDRW && (c.length + 511) / 512 > img->max_sectors) {
            img->max_sectors = (uint32_t)((c.length + 511) / 512);
        }
        if (img->n_chunks == UINT32_MAX)
            return -DMG_ERR_NOMEM;
        if ((ret = fn(opaque, img->n_chunks, &c)) < 0)
            return ret;
        img->n_chunks++;
    }
    return 0;
}

int dmg_read_rsrc(const struct dmg_reader *r, struct dmg_image *img, dmg_chunk_fn fn, void *opaque)
{
    uint64_t begin = img->rsrc_offset, info_length = img->rsrc_length, offset, end;
    uint32_t data_off, count;
    int ret;

    if ((ret = read_u32(r, begin, &data_off)) < 0)
        return ret;
    if (data_off > info_length)
        return -DMG_ERR_INVALID;
    if ((ret = read_u32(r, begin + 8, &count)) < 0)
        return ret;
    /* QEMU adds the two uint32_t values: the sum wraps. */
    if (count == 0 || (uint32_t)(data_off + count) > info_length)
        return -DMG_ERR_INVALID;
    offset = begin + data_off;
    end = offset + count;
    /* Each resource takes at least 5 bytes: at most 2^32 / 5 of them. */
    while (offset < end) {
        struct mish_src m = {r, 0, NULL};

        if ((ret = read_u32(r, offset, &count)) < 0)
            return ret;
        if (count == 0 || count > end - offset)
            return -DMG_ERR_INVALID;
        offset += 4;
        m.off = offset;
        if ((ret = read_mish(&m, count, img, fn, opaque)) < 0)
            return ret;
        offset += count;
    }
    return 0;
}

/* glib's mime_base64_rank: 0xff for a character outside the alphabet ('=' is 0). */
static uint8_t b64_rank(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return (uint8_t)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (uint8_t)(c - 'a' + 26);
    if (c >= '0' && c <= '9')
        return (uint8_t)(c - '0' + 52);
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    if (c == '=')
        return 0;
    return 0xff;
}

size_t dmg_base64_decode(const char *in, size_t len, uint8_t *out)
{
    const uint8_t *p = (const uint8_t *)in, *end = p + len;
    uint8_t *o = out, last0 = 0, last1 = 0;
    uint32_t v = 0;
    int i = 0;

    while (p < end) {
        uint8_t c = *p++, rank = b64_rank(c);

        if (rank == 0xff)
            continue;
        last1 = last0;
        last0 = c;
        v = (v << 6) | rank;
        if (++i == 4) {
            *o++ = (uint8_t)(v >> 16);
            if (last1 != '=')
                *o++ = (uint8_t)(v >> 8);
            if (last0 != '=')
                *o++ = (uint8_t)v;
            i = 0;
        }
    }
    return (size_t)(o - out);
}

/* strstr() over the NUL-terminated string at s. */
static uint8_t *find(uint8_t *s, const char *lit)
{
    size_t n = strlen(lit);

    for (; *s; s++)
        if (!strncmp((const char *)s, lit, n))
            return s;
    return NULL;
}

int dmg_read_plist(uint8_t *buf, size_t len, struct dmg_image *img, dmg_chunk_fn fn, void *opaque)
{
    uint8_t *data_end = buf, *data_begin;
    int ret;

    buf[len] = '\0';
    while ((data_begin = find(data_end, "<data>")) != NULL) {
        struct mish_src m = {NULL, 0, NULL};
        size_t out;

        data_begin += 6;
        data_end = find(data_begin, "</data>");
        if (!data_end)
            return -DMG_ERR_INVALID;
        *data_end++ = '\0';
        /* Decoded in place: the output never overtakes the input. */
        out = dmg_base64_decode((const char *)data_begin, strlen((const char *)data_begin),
                                data_begin);
        m.mem = data_begin;
        /* QEMU passes the length as a uint32_t; a plist is at most 16 MiB. */
        if ((ret = read_mish(&m, (uint32_t)out, img, fn, opaque)) < 0)
            return ret;
    }
    return 0;
}

uint32_t dmg_search(const struct dmg_chunk *c, uint32_t n, uint32_t current, uint64_t sector)
{
    uint32_t lo = 0, hi = n, mid;

    /* is_sector_in_chunk() of the chunk last read. */
    if (current < n && c[current].sector <= sector &&
        c[current].sector + c[current].sectorcount > sector)
        return current;
    /* search_chunk(): QEMU may look at entry n, which never yields a chunk. */
    while (lo <= hi) {
        mid = (uint32_t)(((uint64_t)lo + hi) / 2);
        if (mid >= n)
            return n;
        if (c[mid].sector > sector) {
            if (mid == 0)
                return n;
            hi = mid - 1;
        } else if (c[mid].sector + c[mid].sectorcount > sector) {
            return mid;
        } else {
            lo = mid + 1;
        }
    }
    return n;
}
