/*
 * VHDX reading as qemu 7.2's vhdx_open() does it (see vhdx.h).  Checks run
 * in QEMU's order, so the first failure is the one qemu-img reports.  All
 * on-disk fields are little-endian.
 */
#include "vhdx.h"

#include <string.h>

#include "crc32c.h"

/* BDRV_MAX_LENGTH: INT64_MAX aligned down to 1 GiB; requests end below it. */
#define VHDX_IO_MAX 0x7fffffffc0000000ull

#define VHDX_HEADER_SIG        0x64616568u /* "head" */
#define VHDX_REGION_SIG        0x69676572u /* "regi" */
#define VHDX_LOG_SIG           0x65676f6cu /* "loge" */
#define VHDX_LOG_DESC_SIG      0x63736564u /* "desc" */
#define VHDX_LOG_ZERO_SIG      0x6f72657au /* "zero" */
#define VHDX_LOG_DATA_SIG      0x61746164u /* "data" */
#define VHDX_REGION_REQUIRED   1u
#define VHDX_META_REQUIRED     4u
#define VHDX_PARAMS_HAS_PARENT 2u

/* The metadata items qemu 7.2 knows (vhdx.c), in the order it tests them. */
enum {
    M_FILE_PARAMS,
    M_DISK_SIZE,
    M_PAGE83,
    M_LOGICAL,
    M_PHYSICAL,
    M_PARENT,
    M_COUNT
};
#define M_ALL_REQUIRED 0x1fu

/* GUIDs in their on-disk (little-endian fields) byte order. */
static const uint8_t bat_guid[16] = {0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                                     0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08};
static const uint8_t metadata_guid[16] = {0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
                                          0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e};
static const uint8_t item_guids[M_COUNT][16] = {
    {0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7,
     0x6b}, /* file parameters */
    {0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4,
     0xb8}, /* virtual disk size */
    {0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45, 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7,
     0x46}, /* page 83 data */
    {0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab,
     0x5f}, /* logical sector size */
    {0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5,
     0x56}, /* physical sector size */
    {0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab,
     0x0c}, /* parent locator */
};

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

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

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

/* bdrv_check_request(): QEMU refuses a read it cannot address (EIO). */
static int rd(const struct vhdx_reader *r, uint64_t off, void *buf, size_t len)
{
    if (len > VHDX_IO_MAX || off > VHDX_IO_MAX - len)
        return -VHDX_ERR_EIO;
    return r->pread(r->opaque, off, buf, len) < 0 ? -VHDX_ERR_EIO : 0;
}

static unsigned ctz64(uint64_t v)
{
    unsigned n = 0;

    while (v && !(v & 1)) {
        v >>= 1;
        n++;
    }
    return n;
}

bool vhdx_checksum_ok(const uint8_t *buf, size_t len)
{
    static const uint8_t zero[4];
    uint32_t crc = vhdx_crc32c(0xffffffffu, buf, 4);

    crc = vhdx_crc32c(crc, zero, 4);
    crc = vhdx_crc32c(crc, buf + 8, len - 8);
    return (crc ^ 0xffffffffu) == le32(buf + 4);
}

static int vhdx_log_search(const struct vhdx_reader *r, struct vhdx_image *img, uint8_t *sector);

/* --- headers --- */

int vhdx_open_headers(const struct vhdx_reader *r, struct vhdx_image *img, uint8_t *scratch)
{
    static const uint8_t zero_guid[16];
    bool valid[2] = {false, false};
    uint64_t seq[2] = {0, 0};
    unsigned i;
    const uint8_t *h;
    int ret;

    memset(img, 0, sizeof(*img));
    ret = rd(r, 0, scratch, 8);
    if (ret < 0)
        return ret;
    if (memcmp(scratch, "vhdxfile", 8))
        return -VHDX_ERR_EINVAL;

    /* vhdx_parse_header(): the checksum covers the whole 4 KiB. */
    for (i = 0; i < 2; i++) {
        ret = rd(r, i ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET, scratch, VHDX_HEADER_SIZE);
        if (ret < 0)
            return -VHDX_ERR_NO_HEADER;
        memcpy(img->headers[i], scratch, 80);
        if (vhdx_checksum_ok(scratch, VHDX_HEADER_SIZE) && le32(scratch) == VHDX_HEADER_SIG &&
            le16(scratch + 66) == 1) {
            valid[i] = true;
            seq[i] = le64(scratch + 8);
        }
    }
    if (valid[0] && !valid[1])
        img->curr = 0;
    else if (!valid[0] && valid[1])
        img->curr = 1;
    else if (!valid[0] && !valid[1])
        return -VHDX_ERR_NO_HEADER;
    else if (seq[0] > seq[1])
        img->curr = 0;
    else if (seq[1] > seq[0])
        img->curr = 1;
    else if (!memcmp(img->headers[0], img->headers[1], 80))
        img->curr = 0; /* Disk2VHD writes two identical headers */
    else
        return -VHDX_ERR_NO_HEADER;

    h = img->headers[img->curr];
    memcpy(img->log_guid, h + 48, 16);
    img->log_length = le32(h + 68);
    img->log_offset = le64(h + 72);
    img->regions[0].start = img->log_offset;
    img->regions[0].end = img->log_offset + img->log_length;
    img->nregions = 1;

    /* vhdx_parse_log() */
    if (img->log_offset < VHDX_MiB || img->log_offset % VHDX_MiB)
        return -VHDX_ERR_EINVAL;
    if (le16(h + 64) != 0)
        return -VHDX_ERR_EINVAL;
    if (!memcmp(img->log_guid, zero_guid, 16) || img->log_length == 0)
        return 0;
    if (img->log_length % VHDX_MiB)
        return -VHDX_ERR_EINVAL;
    return vhdx_log_search(r, img, scratch);
}

/* --- the log (vhdx-log.c) --- */

/* A cursor over the circular log: byte indices of whole 4 KiB sectors. */
struct vlog {
    const struct vhdx_reader *r;
    const struct vhdx_image *img;
    uint32_t read, write;
};

struct vlog_hdr {
    uint32_t checksum, entry_length, descriptor_count;
    uint64_t sequence, flushed_file_offset, last_file_offset;
    bool valid; /* vhdx_log_hdr_is_valid() */
};

static uint32_t log_inc(uint32_t idx, uint32_t length)
{
    uint64_t n = (uint64_t)idx + VHDX_LOG_SECTOR;

    return n >= length ? 0 : (uint32_t)n;
}

/* vhdx_log_peek_hdr() and vhdx_log_hdr_is_valid(). */
static int log_peek(struct vlog *l, struct vlog_hdr *h)
{
    uint8_t b[64];
    uint32_t read = l->read;
    int ret;

    if ((uint64_t)read + sizeof(b) > l->img->log_length)
        read = 0;
    if (read == l->write)
        return -VHDX_ERR_EINVAL;
    ret = rd(l->r, l->img->log_offset + read, b, sizeof(b));
    if (ret < 0)
        return ret;
    h->checksum = le32(b + 4);
    h->entry_length = le32(b + 8);
    h->sequence = le64(b + 16);
    h->descriptor_count = le32(b + 24);
    h->flushed_file_offset = le64(b + 48);
    h->last_file_offset = le64(b + 56);
    h->valid = le32(b) == VHDX_LOG_SIG && h->entry_length <= l->img->log_length &&
               h->entry_length % VHDX_LOG_SECTOR == 0 && h->sequence != 0 &&
               !memcmp(b + 32, l->img->log_guid, 16) &&
               (uint64_t)h->descriptor_count * 32 <= h->entry_length;
    return 0;
}

/* vhdx_log_read_sectors() of one sector: 1 read, 0 when the log is empty. */
static int log_next(struct vlog *l, uint8_t *sector)
{
    int ret;

    if (l->read == l->write)
        return 0;
    ret = rd(l->r, l->img->log_offset + l->read, sector, VHDX_LOG_SECTOR);
    if (ret < 0)
        return ret;
    l->read = log_inc(l->read, l->img->log_length);
    return 1;
}

/* vhdx_compute_desc_sectors(): the header takes two descriptor slots. */
static uint32_t desc_sectors(uint32_t count)
{
    return (uint32_t)(((uint64_t)count + 2 + 127) / 128);
}

/* vhdx_log_desc_is_valid() of the descriptor at d. */
static bool desc_ok(const uint8_t *d, const struct vlog_hdr *h)
{
    uint32_t sig = le32(d);

    if (le64(d + 24) != h->sequence || le64(d + 16) % VHDX_LOG_SECTOR)
        return false;
    if (sig == VHDX_LOG_ZERO_SIG)
        return le64(d + 8) % VHDX_LOG_SECTOR == 0;
    return sig == VHDX_LOG_DESC_SIG;
}

/*
 * vhdx_log_read_desc(): the descriptor sectors of the entry at l->read,
 * each descriptor checked once all are read; *crc continues over them with
 * the header's checksum field as zero.  Returns 0 or a negated error.
 */
static int log_read_desc(struct vlog *l, struct vlog_hdr *h, uint8_t *sector, uint32_t *crc)
{
    static const uint8_t zero[4];
    uint32_t n, k, i;
    bool bad = false;
    int ret;

    ret = log_peek(l, h);
    if (ret < 0)
        return ret;
    if (!h->valid)
        return -VHDX_ERR_EINVAL;
    n = desc_sectors(h->descriptor_count);
    for (k = 0; k < n; k++) {
        ret = log_next(l, sector);
        if (ret < 0)
            return ret;
        if (ret == 0)
            return -VHDX_ERR_EINVAL;
        if (k == 0) {
            *crc = vhdx_crc32c(*crc, sector, 4);
            *crc = vhdx_crc32c(*crc, zero, 4);
            *crc = vhdx_crc32c(*crc, sector + 8, VHDX_LOG_SECTOR - 8);
        } else {
            *crc = vhdx_crc32c(*crc, sector, VHDX_LOG_SECTOR);
        }
        /* Descriptor i sits at byte 64 + 32 i of the descriptor sectors. */
        for (i = k == 0 ? 0 : k * 128 - 2; i < h->descriptor_count && i < k * 128 + 126; i++)
            if (!desc_ok(sector + (64 + 32 * (uint64_t)i) % VHDX_LOG_SECTOR, h))
                bad = true;
    }
    return bad ? -VHDX_ERR_EINVAL : 0;
}

/*
 * vhdx_validate_log_entry(): is the entry at l->read valid (and, with
 * seq > 0, sequence seq + 1)?  An entry that is not advances the cursor
 * by one sector; a valid one past its data.
 */
static int log_validate(struct vlog *l, uint64_t seq, uint8_t *sector, bool *valid,
                        struct vlog_hdr *out)
{
    struct vlog_hdr h;
    uint32_t crc = 0xffffffffu, total, n, i;
    int ret;

    *valid = false;
    ret = log_peek(l, &h);
    if (ret < 0 || !h.valid || (seq > 0 && h.sequence != seq + 1)) {
        l->read = log_inc(l->read, l->img->log_length);
        return ret;
    }
    n = desc_sectors(h.descriptor_count);
    total = h.entry_length / VHDX_LOG_SECTOR;
    ret = log_read_desc(l, &h, sector, &crc);
    if (ret < 0)
        return ret;
    for (i = n; i < total; i++) {
        ret = log_next(l, sector);
        if (ret <= 0)
            return ret;
        crc = vhdx_crc32c(crc, sector, VHDX_LOG_SECTOR);
    }
    if ((crc ^ 0xffffffffu) != h.checksum)
        return 0;
    *valid = true;
    *out = h;
    return 0;
}

/*
 * vhdx_log_search(): the whole log, sector by sector, for the valid
 * sequence with the highest first sequence number.  QEMU's loops end
 * (every step advances the cursor; a sequence's numbers strictly rise, so
 * it cannot pass a sector twice), and a budget of steps makes that
 * explicit.
 */
static int vhdx_log_search(const struct vhdx_reader *r, struct vhdx_image *img, uint8_t *sector)
{
    struct vlog l = {r, img, 0, img->log_length};
    struct vhdx_log_seq cand = {0};
    uint64_t budget = 4ull * (img->log_length / VHDX_LOG_SECTOR) + 16;
    struct vlog_hdr h;
    bool valid;
    int ret;

    for (;;) {
        struct vhdx_log_seq cur = {0};
        uint64_t curr_seq = 0;
        uint32_t tail = l.read;

        if (budget-- == 0)
            return -VHDX_ERR_EINVAL;
        ret = log_validate(&l, curr_seq, sector, &valid, &h);
        if (ret < 0)
            return ret;
        if (valid) {
            cur.valid = true;
            cur.read = tail;
            cur.write = l.read;
            cur.count = 1;
            cur.sequence = h.sequence; /* QEMU keeps the first entry's header */
            for (;;) {
                if (budget-- == 0)
                    return -VHDX_ERR_EINVAL;
                ret = log_validate(&l, curr_seq, sector, &valid, &h);
                if (ret < 0)
                    return ret;
                if (!valid)
                    break;
                cur.write = l.read;
                cur.count++;
                curr_seq = h.sequence;
            }
        }
        if (cur.valid && (!cand.valid || cur.sequence > cand.sequence))
            cand = cur;
        if (l.read < tail)
            break;
    }
    img->log = cand;
    return 0;
}

/*
 * vhdx_update_header(): the non-current header gets the next sequence
 * number, the session's file GUID, a new data GUID when data_guid is set,
 * and log_guid when set; its 4 KiB are read, the checksum computed over
 * them, and the 80 defined bytes written.  It becomes current.
 */
int vhdx_header_update(const struct vhdx_reader *r, const struct vhdx_writer *w,
                       struct vhdx_image *img, const uint8_t *session, const uint8_t *data_guid,
                       const uint8_t *log_guid, uint8_t *buf)
{
    unsigned idx = img->curr ^ 1;
    uint64_t off = idx ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;
    uint8_t *h = img->headers[idx];
    uint32_t crc;
    int ret;

    put_le64(h + 8, le64(img->headers[img->curr] + 8) + 1);
    memcpy(h + 16, session, 16);
    if (data_guid)
        memcpy(h + 32, data_guid, 16);
    if (log_guid)
        memcpy(h + 48, log_guid, 16);
    ret = rd(r, off, buf, VHDX_HEADER_SIZE);
    if (ret < 0)
        return ret;
    memcpy(buf, h, 80);
    put_le32(buf + 4, 0);
    crc = vhdx_crc32c(0xffffffffu, buf, VHDX_HEADER_SIZE) ^ 0xffffffffu;
    put_le32(buf + 4, crc);
    put_le32(h + 4, crc);
    if (w->pwrite(w->opaque, off, buf, 80) < 0)
        return -VHDX_ERR_EIO;
    img->curr = idx;
    return 0;
}

/*
 * vhdx_log_flush(): write img->log's sequence into the file (file_size its
 * length), then the two headers with a zero log GUID (vhdx_log_reset()).
 */
static int log_flush(const struct vhdx_reader *r, const struct vhdx_writer *w,
                     struct vhdx_image *img, uint64_t file_size, const uint8_t *session,
                     uint8_t *scratch)
{
    static const uint8_t zero_guid[16];
    uint8_t *sector = scratch, *data = scratch + VHDX_LOG_SECTOR;
    struct vlog l = {r, img, img->log.read, img->log.write};
    uint32_t cnt = img->log.count;
    int ret;

    while (cnt--) {
        struct vlog_hdr h;
        uint32_t crc = 0, i;
        uint64_t start;

        ret = log_peek(&l, &h);
        if (ret < 0)
            return ret;
        /* A FlushedFileOffset past the end: the file was truncated. */
        if (h.flushed_file_offset > file_size)
            return -VHDX_ERR_EINVAL;
        start = l.read;
        ret = log_read_desc(&l, &h, sector, &crc);
        if (ret < 0)
            return ret;
        for (i = 0; i < h.descriptor_count; i++) {
            /* Descriptor i, read again from its sector of the entry. */
            uint64_t pos = (start + (64 + 32 * (uint64_t)i) / VHDX_LOG_SECTOR * VHDX_LOG_SECTOR) %
                           img->log_length;
            uint8_t d[32];
            uint64_t off;

            ret = rd(r, img->log_offset + pos + (64 + 32 * (uint64_t)i) % VHDX_LOG_SECTOR, d,
                     sizeof(d));
            if (ret < 0)
                return ret;
            off = le64(d + 16);
            if (le32(d) == VHDX_LOG_DESC_SIG) {
                uint64_t seq;

                ret = log_next(&l, data);
                if (ret < 0)
                    return ret;
                if (ret == 0)
                    return -VHDX_ERR_EINVAL;
                /* vhdx_log_flush_desc(): the sector's number must be the descriptor's. */
                seq = (uint64_t)le32(data + 4) << 32 | le32(data + 4092);
                if (seq != le64(d + 24))
                    return -VHDX_ERR_EINVAL;
                memcpy(data, d + 8, 8);
                memcpy(data + 4092, d + 4, 4);
                if (off > VHDX_IO_MAX - VHDX_LOG_SECTOR ||
                    w->pwrite(w->opaque, off, data, VHDX_LOG_SECTOR) < 0)
                    return -VHDX_ERR_EIO;
                /* bdrv_getlength() of the next entry sees a file the write grew. */
                if (off + VHDX_LOG_SECTOR > file_size)
                    file_size = off + VHDX_LOG_SECTOR;
            } else {
                /* A zero descriptor: zero_length / 4096 sectors of zeros. */
                uint64_t len = le64(d + 8) / VHDX_LOG_SECTOR * VHDX_LOG_SECTOR, k;

                /* QEMU writes until a write fails; instar refuses the range first. */
                if (len > VHDX_IO_MAX || off > VHDX_IO_MAX - len)
                    return -VHDX_ERR_EIO;
                memset(data, 0, VHDX_LOG_SECTOR);
                for (k = 0; k < len; k += VHDX_LOG_SECTOR)
                    if (w->pwrite(w->opaque, off + k, data, VHDX_LOG_SECTOR) < 0)
                        return -VHDX_ERR_EIO;
                if (len && off + len > file_size)
                    file_size = off + len;
                continue;
            }
        }
        if (file_size < h.last_file_offset && h.last_file_offset % VHDX_MiB) {
            /* Rounded up to 1 MiB (QEMU grows the file only then). */
            uint64_t size = h.last_file_offset / VHDX_MiB * VHDX_MiB + VHDX_MiB;

            if (size < h.last_file_offset || size > VHDX_IO_MAX)
                return -VHDX_ERR_EINVAL;
            if (w->truncate(w->opaque, size) < 0)
                return -VHDX_ERR_EIO;
            file_size = size;
        }
    }
    /* vhdx_log_reset(): an empty log is a zero log GUID, in both headers. */
    ret = vhdx_header_update(r, w, img, session, NULL, zero_guid, sector);
    if (ret == 0)
        ret = vhdx_header_update(r, w, img, session, NULL, zero_guid, sector);
    if (ret == 0)
        memset(img->log_guid, 0, 16);
    return ret;
}

int vhdx_log_replay(const struct vhdx_reader *r, const struct vhdx_writer *w,
                    struct vhdx_image *img, uint64_t file_size, const uint8_t (*guids)[16],
                    uint8_t *scratch)
{
    /* vhdx_user_visible_write(): both headers, new data GUIDs. */
    int ret = vhdx_header_update(r, w, img, guids[0], guids[1], NULL, scratch);

    if (ret == 0)
        ret = vhdx_header_update(r, w, img, guids[0], guids[2], NULL, scratch);
    return ret < 0 ? ret : log_flush(r, w, img, file_size, guids[0], scratch);
}

int vhdx_log_write_entry(const struct vhdx_reader *r, const struct vhdx_writer *w,
                         struct vhdx_image *img, struct vhdx_log_pos *pos, const uint8_t *session,
                         const uint8_t log_guid[16], uint64_t entry, uint64_t offset,
                         uint64_t file_size, uint8_t *scratch)
{
    uint8_t *buf = scratch, *desc = scratch + 64, *sec = scratch + VHDX_LOG_SECTOR;
    uint8_t merged[VHDX_LOG_SECTOR], le[8];
    uint32_t so = (uint32_t)(offset % VHDX_LOG_SECTOR), start = pos->write, write, k;
    uint64_t file_offset = offset - so;
    int ret;

    /* vhdx_log_write(): an entry needs an empty log (a zero log GUID). */
    if (img->log_length < 2 * VHDX_LOG_SECTOR || offset % 8)
        return -VHDX_ERR_EINVAL;
    ret = vhdx_header_update(r, w, img, session, NULL, log_guid, scratch);
    if (ret == 0)
        ret = vhdx_header_update(r, w, img, session, NULL, log_guid, scratch);
    if (ret < 0)
        return ret;
    memcpy(img->log_guid, log_guid, 16);
    if (pos->sequence == 0)
        pos->sequence = 1;
    put_le64(le, entry);
    if (so) {
        /* The leading partial sector: the file's sector, the entry over it. */
        ret = rd(r, file_offset, merged, VHDX_LOG_SECTOR);
        if (ret < 0)
            return ret;
        memcpy(merged + so, le, 8);
    } else {
        /*
         * The trailing partial sector: the entry, then the rest of the
         * file's sector (7.2.0 read the sector's first 4088 bytes there,
         * shifted by 8; the 7.2.2 stable release, which Debian's 7.2
         * carries, reads them from where they belong).
         */
        ret = rd(r, file_offset + 8, merged + 8, VHDX_LOG_SECTOR - 8);
        if (ret < 0)
            return ret;
        memcpy(merged, le, 8);
    }
    /* One header sector (header and descriptor), one data sector. */
    memset(buf, 0, 2 * VHDX_LOG_SECTOR);
    put_le32(buf, VHDX_LOG_SIG);
    put_le32(buf + 8, 2 * VHDX_LOG_SECTOR);
    put_le32(buf + 12, pos->tail);
    put_le64(buf + 16, pos->sequence);
    put_le32(buf + 24, 1);
    memcpy(buf + 32, log_guid, 16);
    put_le64(buf + 48, file_size);
    put_le64(buf + 56, file_size);
    put_le32(desc, VHDX_LOG_DESC_SIG);
    memcpy(desc + 4, merged + 4092, 4);
    memcpy(desc + 8, merged, 8);
    put_le64(desc + 16, file_offset);
    put_le64(desc + 24, pos->sequence);
    put_le32(sec, VHDX_LOG_DATA_SIG);
    put_le32(sec + 4, (uint32_t)(pos->sequence >> 32));
    memcpy(sec + 8, merged + 8, 4084);
    put_le32(sec + 4092, (uint32_t)pos->sequence);
    put_le32(buf + 4, vhdx_crc32c(0xffffffffu, buf, 2 * VHDX_LOG_SECTOR) ^ 0xffffffffu);
    /* vhdx_log_write_sectors(): sector by sector round the ring. */
    write = start;
    for (k = 0; k < 2; k++) {
        uint32_t at = write;

        write = log_inc(write, img->log_length);
        if (write == start)
            return -VHDX_ERR_EINVAL;
        if (w->pwrite(w->opaque, img->log_offset + at, buf + k * VHDX_LOG_SECTOR, VHDX_LOG_SECTOR) <
            0)
            return -VHDX_ERR_EIO;
    }
    pos->sequence++;
    pos->tail = write;
    pos->write = write;
    if (w->flush && w->flush(w->opaque) < 0)
        return -VHDX_ERR_EIO;
    /* vhdx_log_flush() of the one entry just written. */
    img->log.valid = true;
    img->log.read = start;
    img->log.write = write;
    img->log.count = 1;
    ret = log_flush(r, w, img, file_size, session, scratch);
    img->log.valid = false;
    return ret;
}

/* --- region table, metadata, BAT (vhdx.c) --- */

/* vhdx_region_check(): the newest registered region first. */
static bool region_overlaps(struct vhdx_image *img, uint64_t start, uint64_t length)
{
    uint64_t end = start + length;
    uint32_t i;

    for (i = img->nregions; i-- > 0;) {
        const struct vhdx_range *g = &img->regions[i];

        if (!(start >= g->end || end <= g->start)) {
            img->err_args[0] = start;
            img->err_args[1] = end;
            img->err_args[2] = g->start;
            img->err_args[3] = g->end;
            return true;
        }
    }
    return false;
}

int vhdx_open_regions(const struct vhdx_reader *r, struct vhdx_image *img, uint8_t *scratch)
{
    bool bat_found = false, meta_found = false;
    uint64_t meta_off, data_blocks, bitmap_blocks, entries;
    uint32_t count, i, present = 0, item_off[M_COUNT] = {0};
    uint8_t v[8];
    int ret;

    /* vhdx_open_region_tables(): the checksum covers the whole 64 KiB. */
    ret = rd(r, VHDX_REGION_OFFSET, scratch, VHDX_HEADER_BLOCK);
    if (ret < 0)
        return ret;
    if (!vhdx_checksum_ok(scratch, VHDX_HEADER_BLOCK) || le32(scratch) != VHDX_REGION_SIG)
        return -VHDX_ERR_EINVAL;
    count = le32(scratch + 8);
    if (count > 2047)
        return -VHDX_ERR_EINVAL;
    for (i = 0; i < count; i++) {
        const uint8_t *e = scratch + 16 + 32 * i;
        uint64_t off = le64(e + 16);
        uint32_t len = le32(e + 24);

        if (region_overlaps(img, off, len))
            return -VHDX_ERR_OVERLAP;
        img->regions[img->nregions].start = off;
        img->regions[img->nregions].end = off + len;
        img->nregions++;
        if (!memcmp(e, bat_guid, 16)) {
            if (bat_found)
                return -VHDX_ERR_EINVAL;
            bat_found = true;
            img->bat_offset = off;
            img->bat_length = len;
            continue;
        }
        if (!memcmp(e, metadata_guid, 16)) {
            if (meta_found)
                return -VHDX_ERR_EINVAL;
            meta_found = true;
            img->meta_offset = off;
            continue;
        }
        if (le32(e + 28) & VHDX_REGION_REQUIRED)
            return -VHDX_ERR_ENOTSUP;
    }
    if (!bat_found || !meta_found)
        return -VHDX_ERR_EINVAL;

    /* vhdx_parse_metadata(): the table is read whole, 64 KiB. */
    meta_off = img->meta_offset;
    ret = rd(r, meta_off, scratch, VHDX_META_TABLE_SIZE);
    if (ret < 0)
        return ret;
    if (memcmp(scratch, "metadata", 8))
        return -VHDX_ERR_EINVAL;
    count = le16(scratch + 10);
    if ((uint64_t)count * 32 > VHDX_META_TABLE_SIZE - 32)
        return -VHDX_ERR_EINVAL;
    for (i = 0; i < count; i++) {
        const uint8_t *e = scratch + 32 + 32 * i;
        unsigned m;

        for (m = 0; m < M_COUNT; m++)
            if (!memcmp(e, item_guids[m], 16))
                break;
        if (m < M_COUNT) {
            if (present & (1u << m))
                return -VHDX_ERR_EINVAL;
            present |= 1u << m;
            item_off[m] = le32(e + 16);
            continue;
        }
        if (le32(e + 24) & VHDX_META_REQUIRED)
            return -VHDX_ERR_ENOTSUP;
    }
    /* A parent locator too is not "all present": differencing images are refused. */
    if (present != M_ALL_REQUIRED)
        return -VHDX_ERR_ENOTSUP;
    ret = rd(r, meta_off + item_off[M_FILE_PARAMS], v, 8);
    if (ret < 0)
        return ret;
    img->block_size = le32(v);
    img->data_bits = le32(v + 4);
    if (img->data_bits & VHDX_PARAMS_HAS_PARENT)
        return -VHDX_ERR_EINVAL; /* a parent without a locator */
    ret = rd(r, meta_off + item_off[M_DISK_SIZE], v, 8);
    if (ret < 0)
        return ret;
    img->virtual_disk_size = le64(v);
    ret = rd(r, meta_off + item_off[M_LOGICAL], v, 4);
    if (ret < 0)
        return ret;
    img->logical_sector_size = le32(v);
    ret = rd(r, meta_off + item_off[M_PHYSICAL], v, 4);
    if (ret < 0)
        return ret;
    img->physical_sector_size = le32(v);
    if (img->block_size < VHDX_BLOCK_SIZE_MIN || img->block_size > VHDX_BLOCK_SIZE_MAX)
        return -VHDX_ERR_EINVAL;
    if (img->logical_sector_size != 512)
        return -VHDX_ERR_ENOTSUP;
    /* A power of two: then sectors per block and the chunk ratio are too. */
    if (img->block_size & (img->block_size - 1))
        return -VHDX_ERR_EINVAL;
    img->chunk_ratio = (uint32_t)((1ull << 23) * 512 / img->block_size);
    img->chunk_ratio_bits = ctz64(img->chunk_ratio);
    img->total_sectors = img->virtual_disk_size / 512;

    /*
     * vhdx_calc_bat_entries().  QEMU counts in 32 bits: a virtual size
     * whose count does not fit wraps to a small BAT that passes the
     * length check below, and reads index past it.  instar counts in 64
     * bits and refuses what QEMU would have wrapped.  An empty disk keeps
     * QEMU's count ((0 - 1) >> bits in 32 bits).
     */
    data_blocks =
        img->virtual_disk_size / img->block_size + (img->virtual_disk_size % img->block_size != 0);
    bitmap_blocks = data_blocks ? (data_blocks - 1) >> img->chunk_ratio_bits
                                : 0xffffffffull >> img->chunk_ratio_bits;
    entries = data_blocks + bitmap_blocks;
    if (data_blocks > 0xffffffffull || entries > 0xffffffffull)
        return -VHDX_ERR_SIZE_OVERFLOW;
    img->bat_entries = (uint32_t)entries;
    if (img->bat_entries > img->bat_length / 8)
        return -VHDX_ERR_EINVAL;
    /* QEMU reads the whole region. */
    if (img->bat_offset > VHDX_IO_MAX - img->bat_length)
        return -VHDX_ERR_EIO;
    return 0;
}

int vhdx_read_bat(const struct vhdx_reader *r, const struct vhdx_image *img, uint64_t first,
                  uint64_t count, uint64_t *bat)
{
    uint8_t b[512];
    uint64_t done = 0, total = count * 8;
    int ret;

    while (done < total) {
        size_t n = total - done < sizeof(b) ? (size_t)(total - done) : sizeof(b);
        size_t k;

        ret = rd(r, img->bat_offset + first * 8 + done, b, n);
        if (ret < 0)
            return ret;
        for (k = 0; k < n / 8; k++)
            bat[done / 8 + k] = le64(b + 8 * k);
        done += n;
    }
    return 0;
}

uint64_t vhdx_bat_used(const struct vhdx_image *img)
{
    uint64_t blocks = img->total_sectors * 512 / img->block_size +
                      (img->total_sectors * 512 % img->block_size != 0);

    return blocks ? blocks + ((blocks - 1) >> img->chunk_ratio_bits) : 0;
}

static int bat_problem(struct vhdx_image *img, vhdx_report_fn report, void *opaque, int64_t *errcnt,
                       int code, int msg, uint64_t a0, uint64_t a1, uint64_t a2)
{
    uint64_t args[4] = {a0, a1, a2, 0};

    if (!report) {
        memcpy(img->err_args, args, sizeof(args));
        return -code;
    }
    report(opaque, msg, args);
    (*errcnt)++;
    return 0;
}

int vhdx_check_bat(struct vhdx_image *img, const uint64_t *bat, uint64_t first, uint64_t count,
                   uint64_t *payblocks_state, uint64_t file_size, vhdx_report_fn report,
                   void *opaque, int64_t *errcnt)
{
    uint64_t payblocks = first ? *payblocks_state : img->chunk_ratio, k, i;
    uint64_t disk = img->total_sectors * 512;
    int ret;

    for (k = 0; k < count; k++) {
        uint64_t off = bat[k] & VHDX_BAT_OFFSET_MASK, rest, len;

        i = first + k;
        if ((bat[k] & VHDX_BAT_STATE_MASK) != VHDX_PAYLOAD_FULLY_PRESENT)
            continue;
        /* The last block may be partial (images qemu created in the past). */
        rest = disk - i * (uint64_t)img->block_size;
        len = rest < img->block_size ? rest : img->block_size;
        if (off > 0x7fffffffffffffffull - img->block_size) {
            ret = bat_problem(img, report, opaque, errcnt, VHDX_ERR_BAT_OVERFLOW,
                              VHDX_MSG_BAT_OVERFLOW, i, 0, 0);
            if (ret < 0)
                return ret;
        }
        if (off >= file_size) {
            ret = bat_problem(img, report, opaque, errcnt, VHDX_ERR_BAT_START, VHDX_MSG_BAT_START,
                              i, off, file_size);
            if (ret < 0)
                return ret;
        } else if (off + len > file_size) {
            ret = bat_problem(img, report, opaque, errcnt, VHDX_ERR_BAT_END, VHDX_MSG_BAT_END, i,
                              off + len - 1, file_size);
            if (ret < 0)
                return ret;
        }
        /* QEMU counts down over the present entries only. */
        if (payblocks--) {
            if (region_overlaps(img, off, img->block_size)) {
                if (!report)
                    return -VHDX_ERR_OVERLAP;
                report(opaque, VHDX_MSG_OVERLAP, img->err_args);
                (*errcnt)++;
            }
        } else {
            payblocks = img->chunk_ratio;
        }
    }
    *payblocks_state = payblocks;
    return 0;
}

unsigned vhdx_map(const struct vhdx_image *img, const uint64_t *bat, uint64_t off, uint64_t *host,
                  uint64_t *run)
{
    uint64_t block = off / img->block_size, in = off % img->block_size;
    uint64_t idx = block + (block >> img->chunk_ratio_bits);
    uint64_t e = bat[idx];

    *run = img->block_size - in;
    /* vhdx_block_translate(): a zero offset is used as it is. */
    *host = (e & VHDX_BAT_OFFSET_MASK) ? (e & VHDX_BAT_OFFSET_MASK) + in : 0;
    return (unsigned)(e & VHDX_BAT_STATE_MASK);
}
