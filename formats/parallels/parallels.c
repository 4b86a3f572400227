/*
 * Parallels reading, checking and creation as qemu 7.2's
 * block/parallels.c does them (see parallels.h).  Checks run in QEMU's
 * order, so the first failure is the one qemu-img reports.
 */
#include "parallels.h"

#include <string.h>

#define MAGIC_V1       "WithoutFreeSpace"
#define MAGIC_V2       "WithouFreSpacExt"
#define HEADER_VERSION 2

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

int prl_open_header(const uint8_t hdr[PRL_HEADER_SIZE], struct prl_image *img)
{
    uint64_t size, bytes;

    memset(img, 0, sizeof(*img));
    memcpy(img->hdr, hdr, PRL_HEADER_SIZE);
    img->total_sectors = le64(hdr + 36);
    if (le32(hdr + 16) != HEADER_VERSION)
        return -PRL_ERR_FORMAT;
    if (!memcmp(hdr, MAGIC_V1, 16)) {
        /* The first version's size is 32 bits; its entries count sectors. */
        img->off_multiplier = 1;
        img->total_sectors &= 0xffffffffu;
    } else if (!memcmp(hdr, MAGIC_V2, 16)) {
        img->off_multiplier = le32(hdr + 28);
    } else {
        return -PRL_ERR_FORMAT;
    }
    img->tracks = le32(hdr + 28);
    if (img->tracks == 0)
        return -PRL_ERR_ZERO_TRACKS;
    if (img->tracks > 0x7fffffffu / 513)
        return -PRL_ERR_BIG_CLUSTER;
    img->cluster_size = img->tracks * 512;
    img->bat_size = le32(hdr + 32);
    if (img->bat_size > 0x7fffffffu / 4)
        return -PRL_ERR_CATALOG;

    size = PRL_HEADER_SIZE + 4ull * img->bat_size;
    img->header_size = round_up(size, PRL_MEM_ALIGN);
    img->data_end = le32(hdr + 48);
    if (img->data_end == 0)
        img->data_end = (int64_t)round_up(size, 512); /* bytes, as QEMU has it */
    if ((uint64_t)img->data_end < img->header_size)
        img->header_size = size;
    if (img->header_size > PRL_REQUEST_MAX)
        return -PRL_ERR_EIO;

    /*
     * refresh_total_sectors(): total_sectors * BDRV_SECTOR_SIZE, an
     * unsigned long long product, wrapping, against BDRV_MAX_LENGTH.  A
     * size that passes but does not fit bdrv_getlength() (over INT64_MAX
     * bytes) opens in QEMU and fails each command later; instar refuses
     * it here.
     */
    bytes = img->total_sectors * 512;
    if (bytes > PRL_IO_MAX)
        return -PRL_ERR_TOTAL_SECTORS;
    if (img->total_sectors > (uint64_t)INT64_MAX / 512) {
        img->err_arg[0] = img->total_sectors;
        return -PRL_ERR_SIZE;
    }
    img->ext_off = le64(hdr + 56);
    img->unclean = le32(hdr + PRL_INUSE_OFFSET) == PRL_INUSE_MAGIC;
    return 0;
}

uint32_t prl_bat_get(const uint8_t *buf, size_t len, uint32_t idx)
{
    uint64_t off = PRL_HEADER_SIZE + 4ull * idx;

    if (off + 4 > len)
        return 0;
    return le32(buf + off);
}

void prl_bat_set(uint8_t *buf, size_t len, uint32_t idx, uint32_t v)
{
    uint64_t off = PRL_HEADER_SIZE + 4ull * idx;

    if (off + 4 <= len)
        put_le32(buf + off, v);
}

/* The entries that lie inside buf: those after them read as 0. */
static uint32_t bat_in_buf(const struct prl_image *img, size_t len)
{
    uint64_t n = len > PRL_HEADER_SIZE ? (len - PRL_HEADER_SIZE) / 4 : 0;

    return n < img->bat_size ? (uint32_t)n : img->bat_size;
}

/* bat2sect(): entry idx in sectors (below 2^55: tracks < 2^23). */
static uint64_t bat2sect(const struct prl_image *img, const uint8_t *buf, size_t len, uint32_t idx)
{
    return (uint64_t)prl_bat_get(buf, len, idx) * img->off_multiplier;
}

int prl_open_bat(struct prl_image *img, const uint8_t *buf, size_t len, unsigned flags)
{
    uint32_t i, n = bat_in_buf(img, len);

    /* A zero entry never raises data_end (it is positive): only those in buf count. */
    for (i = 0; i < n; i++) {
        int64_t off = (int64_t)bat2sect(img, buf, len, i);

        if (off >= img->data_end)
            img->data_end = off + img->tracks;
    }
    if (img->unclean && (flags & PRL_OPEN_RDWR) && !(flags & PRL_OPEN_CHECK))
        return -PRL_ERR_UNCLEAN;
    return 0;
}

/* seek_to_sector(): the host sector of sector, or -1 when not allocated. */
static int64_t seek_to_sector(const struct prl_image *img, const uint8_t *buf, size_t len,
                              uint64_t sector)
{
    uint64_t index = sector / img->tracks;

    if (index >= img->bat_size || prl_bat_get(buf, len, (uint32_t)index) == 0)
        return -1;
    return (int64_t)(bat2sect(img, buf, len, (uint32_t)index) + sector % img->tracks);
}

int64_t prl_block_status(const struct prl_image *img, const uint8_t *buf, size_t len,
                         uint64_t sector, uint64_t nb, uint64_t *pnum)
{
    int64_t start = -2, prev_end = -2;

    *pnum = 0;
    while (nb > 0 || start == -2) {
        int64_t off = seek_to_sector(img, buf, len, sector);
        uint64_t to_end = img->tracks - sector % img->tracks;

        if (start == -2) {
            start = off;
            prev_end = off;
        } else if (off != prev_end) {
            break;
        }
        /* Past the entries in buf every cluster is unallocated: the rest of the run at once. */
        if (off < 0 && sector / img->tracks >= bat_in_buf(img, len)) {
            *pnum += nb;
            break;
        }
        if (to_end > nb)
            to_end = nb;
        if (to_end == 0)
            break;
        nb -= to_end;
        sector += to_end;
        *pnum += to_end;
        if (off > 0)
            prev_end += (int64_t)to_end;
    }
    return start;
}

void prl_check(struct prl_image *img, uint8_t *buf, size_t len, uint64_t file_size, unsigned fix,
               prl_report_fn report, void *opaque, struct prl_check_result *r)
{
    int64_t size = (int64_t)file_size, prev_off = 0, high_off = 0;
    uint32_t i, n = bat_in_buf(img, len);

    memset(r, 0, sizeof(*r));
    if (img->unclean) {
        report(opaque, (fix & PRL_FIX_ERRORS) ? PRL_MSG_UNCLEAN_FIX : PRL_MSG_UNCLEAN, 0);
        r->corruptions++;
        if (fix & PRL_FIX_ERRORS) {
            r->corruptions_fixed++;
            img->unclean = false;
        }
    }
    r->total_clusters = img->bat_size;
    /* Entries past buf are 0: they only reset prev_off. */
    for (i = 0; i < n; i++) {
        int64_t off = (int64_t)(bat2sect(img, buf, len, i) << 9);

        if (off == 0) {
            prev_off = 0;
            continue;
        }
        if (off > size) {
            report(opaque, (fix & PRL_FIX_ERRORS) ? PRL_MSG_OUTSIDE_FIX : PRL_MSG_OUTSIDE, i);
            r->corruptions++;
            if (fix & PRL_FIX_ERRORS) {
                prev_off = 0;
                prl_bat_set(buf, len, i, 0);
                r->corruptions_fixed++;
                r->flush_bat = true;
                continue;
            }
        }
        r->allocated_clusters++;
        if (off > high_off)
            high_off = off;
        if (prev_off != 0 && prev_off + (int64_t)img->cluster_size != off)
            r->fragmented_clusters++;
        prev_off = off;
    }
    r->image_end_offset = high_off + img->cluster_size;
    if (size > r->image_end_offset) {
        int64_t count = (size - r->image_end_offset + img->cluster_size - 1) / img->cluster_size;

        report(opaque, (fix & PRL_FIX_LEAKS) ? PRL_MSG_LEAKED_FIX : PRL_MSG_LEAKED,
               (uint64_t)(size - r->image_end_offset));
        r->leaks += count;
        if (fix & PRL_FIX_LEAKS) {
            r->truncate = true;
            r->leaks_fixed += count;
        }
    }
}
