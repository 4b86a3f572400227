/*
 * VMDK reading as qemu 7.2's vmdk_open() does it (see vmdk.h).  Checks run
 * in QEMU's order, so the first failure is the one qemu-img reports.
 */
#include "vmdk.h"

#include <string.h>

/* BDRV_MAX_LENGTH: INT64_MAX aligned down to 1 GiB; requests end below it. */
#define VMDK_IO_MAX 0x7fffffffc0000000ull

#define VMDK4_FLAG_RGD           (1u << 1)
#define VMDK4_FLAG_ZERO_GRAIN    (1u << 2)
#define VMDK4_FLAG_MARKER        (1u << 17)
#define VMDK4_COMPRESS_DEFLATE   1
#define VMDK4_GD_AT_END          0xffffffffffffffffull
#define VMDK4_HDR_SIZE           75 /* QEMU's packed VMDK4Header, after the magic */
#define VMDK_MARKER_FOOTER       3
#define VMDK_MARKER_EOS          0
#define VMDK_MAX_CLUSTER_SECTORS 0x200000u
#define VMDK_MAX_L1_SIZE         (32u * 1024 * 1024)

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

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* bdrv_check_request(): QEMU refuses a read it cannot address. */
static bool io_ok(uint64_t off, uint64_t len)
{
    return len <= VMDK_IO_MAX && off <= VMDK_IO_MAX - len;
}

int vmdk_add_extent_check(uint64_t cluster_sectors, uint32_t l1_size)
{
    if (cluster_sectors > VMDK_MAX_CLUSTER_SECTORS)
        return -VMDK_ERR_GRANULARITY;
    if (l1_size > VMDK_MAX_L1_SIZE)
        return -VMDK_ERR_L1_SIZE;
    return 0;
}

int vmdk_open_vmdk4(const struct vmdk_reader *r, uint64_t file_size, bool rdwr,
                    struct vmdk_extent *e, uint64_t *desc_offset, uint64_t *err_arg)
{
    uint8_t h[VMDK4_HDR_SIZE];
    uint64_t capacity, granularity, gd_offset, grain_offset, l1_size, nb_sectors;
    uint32_t version, flags, num_gtes, l1_entry_sectors;
    bool compressed;
    int ret;

    *err_arg = 0;
    ret = r->pread(r->opaque, 4, h, sizeof(h));
    if (ret < 0)
        return ret;
    capacity = le64(h + 8);
    if (capacity == 0 && le64(h + 24) != 0) {
        *desc_offset = le64(h + 24) << 9;
        return 1;
    }
    nb_sectors = file_size / 512 + (file_size % 512 != 0);
    if (le64(h + 52) == VMDK4_GD_AT_END) {
        /* The footer (sector -3 from the end) takes precedence over the header. */
        uint8_t f[1536];

        if (nb_sectors < 3)
            return -VMDK_ERR_FOOTER_READ;
        ret = r->pread(r->opaque, nb_sectors * 512 - 1536, f, sizeof(f));
        if (ret < 0)
            return ret;
        if (be32(f + 512) != VMDK4_MAGIC_BE || le32(f + 8) != 0 ||
            le32(f + 12) != VMDK_MARKER_FOOTER || le64(f + 1024) != 0 || le32(f + 1032) != 0 ||
            le32(f + 1036) != VMDK_MARKER_EOS)
            return -VMDK_ERR_FOOTER;
        memcpy(h, f + 516, sizeof(h));
        capacity = le64(h + 8);
    }
    version = le32(h);
    flags = le32(h + 4);
    granularity = le64(h + 16);
    num_gtes = le32(h + 40);
    gd_offset = le64(h + 52);
    grain_offset = le64(h + 60);
    compressed = le16(h + 73) == VMDK4_COMPRESS_DEFLATE;
    if (version > 3) {
        *err_arg = version;
        return -VMDK_ERR_VERSION;
    }
    if (version == 3 && rdwr && !compressed)
        return -VMDK_ERR_V3_RO;
    if (num_gtes > 512)
        return -VMDK_ERR_L2_SIZE;
    /* QEMU keeps the product in a uint32_t. */
    l1_entry_sectors = (uint32_t)(num_gtes * granularity);
    if (l1_entry_sectors == 0)
        return -VMDK_ERR_L1_ENTRY;
    /* ... and the quotient too; the sum wraps as QEMU's does. */
    l1_size = (uint32_t)((capacity + l1_entry_sectors - 1) / l1_entry_sectors);
    /* bdrv_nb_sectors() (an int64) against the uint64 field: an unsigned compare. */
    if (nb_sectors < grain_offset) {
        uint64_t bytes = grain_offset * 512;

        if ((int64_t)bytes < 0) {
            *err_arg = 0 - bytes;
            return -VMDK_ERR_TRUNCATED_NEG;
        }
        *err_arg = bytes;
        return -VMDK_ERR_TRUNCATED;
    }
    ret = vmdk_add_extent_check(granularity, (uint32_t)l1_size);
    if (ret < 0)
        return ret;
    memset(e, 0, sizeof(*e));
    e->sectors = capacity;
    e->l1_table_offset = gd_offset << 9;
    e->l1_backup_offset = (flags & VMDK4_FLAG_RGD) ? le64(h + 44) << 9 : 0;
    e->l1_size = (uint32_t)l1_size;
    e->l2_size = num_gtes;
    e->cluster_sectors = granularity;
    e->l1_entry_sectors = l1_entry_sectors;
    e->compressed = compressed;
    e->has_marker = (flags & VMDK4_FLAG_MARKER) != 0;
    e->version = version;
    e->entry_size = 4;
    e->has_zero_grain = (flags & VMDK4_FLAG_ZERO_GRAIN) != 0;
    /* vmdk_init_tables(): the grain directory must be addressable. */
    if (!io_ok(e->l1_table_offset, (uint64_t)e->l1_size * 4) ||
        (e->l1_backup_offset && !io_ok(e->l1_backup_offset, (uint64_t)e->l1_size * 4)))
        return -VMDK_ERR_L1_READ;
    return 0;
}

/* vmdk_add_extent()'s sizes of a sparse extent (QEMU's int l2_size times its uint64_t grain). */
static void sparse_geometry(struct vmdk_extent *e, uint64_t sectors, uint64_t l1_offset,
                            uint32_t l1_size, uint32_t l2_size, uint64_t cluster_sectors)
{
    memset(e, 0, sizeof(*e));
    e->sectors = sectors;
    e->l1_table_offset = l1_offset;
    e->l1_size = l1_size;
    e->l2_size = l2_size;
    e->cluster_sectors = cluster_sectors;
    /* QEMU keeps the product in a uint32_t: it can wrap to 0. */
    e->l1_entry_sectors = (uint32_t)(l2_size * cluster_sectors);
    e->entry_size = 4;
}

int vmdk_open_vmfs(const struct vmdk_reader *r, struct vmdk_extent *e)
{
    /* VMDK3Header after the magic: version, flags, disk_sectors, granularity,
     * l1dir_offset, l1dir_size, file_sectors, cylinders, heads, sectors_per_track. */
    uint8_t h[40];
    int ret = r->pread(r->opaque, 4, h, sizeof(h));

    if (ret < 0)
        return ret;
    ret = vmdk_add_extent_check(le32(h + 12), le32(h + 20));
    if (ret < 0)
        return ret;
    sparse_geometry(e, le32(h + 8), (uint64_t)le32(h + 16) << 9, le32(h + 20), 4096, le32(h + 12));
    /* vmdk_init_tables() reads the directory wherever it is: a 32-bit sector always is. */
    return 0;
}

#define SE_CONST_MAGIC    0xcafebabeull
#define SE_VOLATILE_MAGIC 0xcafecafeull
#define SE_VERSION        0x0000000200000001ull

static bool all_zero(const uint8_t *p, size_t n)
{
    while (n--)
        if (*p++)
            return false;
    return true;
}

int vmdk_open_sesparse(const struct vmdk_reader *r, bool rdwr, struct vmdk_extent *e,
                       uint64_t err_args[4])
{
    /* VMDKSESparseConstHeader: 26 little-endian uint64 fields and 304 bytes of padding. */
    uint8_t h[512], v[512];
    uint64_t vol, l1_offset, l1_bytes;
    uint32_t l1_size;
    int ret, i;

    memset(err_args, 0, 4 * sizeof(err_args[0]));
    /* bdrv_apply_auto_read_only(): qemu-img's read-write opens are not auto-read-only. */
    if (rdwr)
        return -VMDK_ERR_SE_RDWR;
    ret = r->pread(r->opaque, 0, h, sizeof(h));
    if (ret < 0)
        return ret;
    if ((err_args[0] = le64(h)) != SE_CONST_MAGIC)
        return -VMDK_ERR_SE_MAGIC;
    if ((err_args[0] = le64(h + 8)) != SE_VERSION)
        return -VMDK_ERR_SE_VERSION;
    if ((err_args[0] = le64(h + 24)) != 8)
        return -VMDK_ERR_SE_GRAIN;
    if ((err_args[0] = le64(h + 32)) != 64)
        return -VMDK_ERR_SE_GT;
    if ((err_args[0] = le64(h + 40)) != 0)
        return -VMDK_ERR_SE_FLAGS;
    for (i = 0; i < 4; i++)
        err_args[i] = le64(h + 48 + 8 * i);
    if (err_args[0] | err_args[1] | err_args[2] | err_args[3])
        return -VMDK_ERR_SE_RESERVED;
    memset(err_args, 0, 4 * sizeof(err_args[0]));
    if (!all_zero(h + 208, 304))
        return -VMDK_ERR_SE_PAD;
    /* The sector number times 512 as QEMU computes it (uint64, wrapping), read as an int64. */
    vol = le64(h + 80) * 512;
    if (!io_ok(vol, sizeof(v)))
        return -VMDK_ERR_SE_VOL_READ;
    ret = r->pread(r->opaque, vol, v, sizeof(v));
    if (ret < 0)
        return ret;
    if ((err_args[0] = le64(v)) != SE_VOLATILE_MAGIC)
        return -VMDK_ERR_SE_VMAGIC;
    err_args[0] = 0;
    if (le64(v + 24))
        return -VMDK_ERR_SE_DIRTY;
    if (!all_zero(v + 32, 480))
        return -VMDK_ERR_SE_VPAD;
    /* vmdk_add_extent(): grain_dir_size sectors of 8-byte entries, kept in a uint32_t. */
    l1_size = (uint32_t)(le64(h + 136) * 512 / 8);
    ret = vmdk_add_extent_check(8, l1_size);
    if (ret < 0)
        return ret;
    l1_offset = le64(h + 128) * 512;
    sparse_geometry(e, le64(h + 16), l1_offset, l1_size, 4096, 8);
    e->sesparse = true;
    e->entry_size = 8;
    e->se_l2_offset = le64(h + 144);
    e->se_grains_offset = le64(h + 192);
    l1_bytes = (uint64_t)l1_size * 8;
    if (!io_ok(l1_offset, l1_bytes))
        return -VMDK_ERR_L1_READ_EIO;
    return 0;
}

/* --- the descriptor --- */

/* find() (the guest's libc has none). */
static const char *find(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay; hay++)
        if (!strncmp(hay, needle, n))
            return hay;
    return NULL;
}

int vmdk_desc_value(const char *desc, const char *name, char *buf, size_t buf_size)
{
    const char *end = desc + strlen(desc);
    const char *pos = find(desc, name), *q;

    if (!pos)
        return -1;
    /* QEMU skips the two bytes after the name (`="`) without looking at them. */
    if ((size_t)(end - pos) <= strlen(name) + 2)
        return -1;
    pos += strlen(name) + 2;
    for (q = pos; q < end && *q != '"'; q++)
        ;
    if (q == end || buf_size < (size_t)(q - pos) + 1)
        return -1;
    memcpy(buf, pos, (size_t)(q - pos));
    buf[q - pos] = '\0';
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * sscanf's %x into a uint32_t (glibc): blanks, a sign, an optional 0x,
 * hex digits read as strtoul does (saturated at ULONG_MAX, negated for
 * '-'), stored truncated.  -1 when there is no digit.
 */
static int scan_hex32(const char *s, uint32_t *out)
{
    uint64_t v = 0;
    bool neg = false, any = false, sat = false;
    int d;

    while (is_space(*s))
        s++;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && hex_digit(s[2]) >= 0)
        s += 2;
    for (; (d = hex_digit(*s)) >= 0; s++) {
        any = true;
        if (v > (UINT64_MAX - (uint64_t)d) / 16)
            sat = true;
        else
            v = v * 16 + (uint64_t)d;
    }
    if (!any)
        return -1;
    if (sat)
        v = UINT64_MAX;
    else if (neg)
        v = 0 - v;
    *out = (uint32_t)v;
    return 0;
}

int vmdk_desc_cid(const char *desc, bool parent, uint32_t *cid)
{
    const char *name = parent ? "parentCID" : "CID";
    const char *p = find(desc, name);

    if (!p)
        return -1;
    /* QEMU skips sizeof(name): the name and one byte, which must be inside the buffer. */
    p += strlen(name);
    if (*p == '\0')
        return -1;
    return scan_hex32(p + 1, cid);
}

int vmdk_desc_parent(const char *desc, char *buf)
{
    static const char name[] = "parentFileNameHint";
    const char *p = find(desc, name), *end;

    if (!p)
        return 0;
    /* QEMU skips `parentFileNameHint="` unchecked: stop where the string does. */
    p += sizeof(name) - 1;
    if (p[0] == '\0' || p[1] == '\0')
        return -1;
    p += 2;
    end = strchr(p, '"');
    if (!end || (size_t)(end - p) > VMDK_PARENT_MAX)
        return -1;
    memcpy(buf, p, (size_t)(end - p));
    buf[end - p] = '\0';
    return 1;
}

static const char *next_line(const char *s)
{
    while (*s) {
        if (*s++ == '\n')
            return s;
    }
    return s;
}

/* sscanf %Ns: blanks skipped, then 1..max non-blanks.  NULL: none. */
static const char *scan_word(const char *s, char *out, size_t max)
{
    size_t n = 0;

    while (is_space(*s))
        s++;
    while (*s && !is_space(*s) && n < max)
        out[n++] = *s++;
    out[n] = '\0';
    return n ? s : NULL;
}

/* sscanf %lld (glibc: strtoll's saturation).  NULL: no digits. */
static const char *scan_i64(const char *s, int64_t *out)
{
    uint64_t v = 0;
    bool neg = false, any = false, sat = false;

    while (is_space(*s))
        s++;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    for (; *s >= '0' && *s <= '9'; s++) {
        any = true;
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            sat = true;
        else
            v = v * 10 + (uint64_t)(*s - '0');
    }
    if (!any)
        return NULL;
    if (neg)
        *out = sat || v > (uint64_t)INT64_MAX + 1 ? INT64_MIN : (int64_t)(0 - v);
    else
        *out = sat || v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
    return s;
}

/*
 * sscanf(s, "%10s %lld %10s \"%511[^\n\r\"]\" %lld", ...): the number of
 * conversions made (-1, glibc's EOF, when the input ends before the first).
 */
static int scan_extent_line(const char *s, char access[11], int64_t *sectors, char type[11],
                            char fname[512], int64_t *flat)
{
    size_t n = 0;
    const char *t = s;

    while (is_space(*t))
        t++;
    if (!*t)
        return -1;
    if (!(s = scan_word(s, access, 10)))
        return 0;
    if (!(s = scan_i64(s, sectors)))
        return 1;
    if (!(s = scan_word(s, type, 10)))
        return 2;
    while (is_space(*s))
        s++;
    if (*s++ != '"')
        return 3;
    while (*s && *s != '\n' && *s != '\r' && *s != '"' && n < 511)
        fname[n++] = *s++;
    fname[n] = '\0';
    if (n == 0)
        return 3;
    if (*s++ != '"')
        return 4;
    return scan_i64(s, flat) ? 5 : 4;
}

int vmdk_desc_next_extent(const char **pp, struct vmdk_extent_line *l, const char **bad,
                          size_t *bad_len)
{
    char access[11], type[11];
    int64_t sectors = 0, flat;
    const char *p;
    int matches;

    for (p = *pp; *p; p = next_line(p)) {
        flat = -1;
        matches = scan_extent_line(p, access, &sectors, type, l->fname, &flat);
        if (matches < 4 || strcmp(access, "RW"))
            continue;
        if (!strcmp(type, "FLAT")) {
            if (matches != 5 || flat < 0)
                goto invalid;
        } else if (!strcmp(type, "VMFS")) {
            if (matches != 4)
                goto invalid;
            flat = 0;
        } else if (matches != 4) {
            goto invalid;
        }
        if (sectors <= 0 ||
            (strcmp(type, "FLAT") && strcmp(type, "SPARSE") && strcmp(type, "VMFS") &&
             strcmp(type, "VMFSSPARSE") && strcmp(type, "SESPARSE")))
            continue;
        memcpy(l->type, type, sizeof(type));
        l->sectors = sectors;
        l->flat_offset = flat;
        *pp = next_line(p);
        return 1;
    }
    *pp = p;
    return 0;
invalid : {
    const char *np = next_line(p);

    if (np[-1] == '\n')
        np--;
    *bad = p;
    *bad_len = (size_t)(np - p);
    *pp = p;
    return -VMDK_ERR_EXTENT_LINE;
}
}

/* --- grains --- */

/*
 * get_cluster_offset()'s seSparse directory entry: 0 (none), else the top
 * 32 bits must be 0x10000000 and the low 32 index the grain tables (64
 * sectors each) from se_l2_offset; the sector must fit QEMU's unsigned int.
 */
static int se_l2_sector(const struct vmdk_extent *e, uint64_t entry, uint32_t *l2_sector)
{
    uint64_t sector;

    if (entry == 0) {
        *l2_sector = 0;
        return 0;
    }
    if ((entry & 0xffffffff00000000ull) != 0x1000000000000000ull)
        return -1;
    /* QEMU's uint64 arithmetic, wrapping (an index below 2^32 times 64 cannot). */
    sector = e->se_l2_offset + (entry & 0xffffffffull) * (e->l2_size * 8ull) / 512;
    if (sector > 0xffffffffull)
        return -1;
    *l2_sector = (uint32_t)sector;
    return 0;
}

/* A seSparse grain table entry: its top nibble says what the grain is. */
static int se_grain(const struct vmdk_extent *e, uint64_t entry, uint64_t *cluster_offset)
{
    uint64_t index;

    switch (entry >> 60) {
    case 0: /* unallocated */
        return entry == 0 ? VMDK_CLUSTER_UNALLOC : VMDK_CLUSTER_ERROR;
    case 1: /* unmapped (SCSI) */
    case 2: /* zero */
        return VMDK_CLUSTER_ZEROED;
    case 3: /* allocated: a 60-bit grain index, its low 12 bits on top */
        index = (entry & 0x0fff000000000000ull) >> 48 | (entry & 0x0000ffffffffffffull) << 12;
        /* QEMU's int64 arithmetic wraps (the offset is then past any file: a read error). */
        *cluster_offset = (e->se_grains_offset + index * e->cluster_sectors) << 9;
        return VMDK_CLUSTER_OK;
    default:
        return VMDK_CLUSTER_ERROR;
    }
}

int vmdk_cluster(const struct vmdk_extent *e, const void *l1, uint64_t offset,
                 vmdk_load_l2_fn load_l2, void *opaque, uint64_t *cluster_offset)
{
    const uint8_t *l2;
    uint32_t l1_index, l2_index, l2_sector, cluster_sector;

    if (e->flat) {
        *cluster_offset = e->flat_start_offset;
        return VMDK_CLUSTER_OK;
    }
    /* A VMDK3 grain of 0 sectors or tables covering 2^32: QEMU divides by zero here. */
    if (e->l1_entry_sectors == 0 || e->cluster_sectors == 0 || e->l2_size == 0)
        return VMDK_CLUSTER_ERROR;
    offset -= (e->end_sector - e->sectors) * 512;
    /* QEMU's unsigned int indexes. */
    l1_index = (uint32_t)((offset >> 9) / e->l1_entry_sectors);
    if (l1_index >= e->l1_size)
        return VMDK_CLUSTER_ERROR;
    if (e->sesparse) {
        if (se_l2_sector(e, ((const uint64_t *)l1)[l1_index], &l2_sector) < 0)
            return VMDK_CLUSTER_ERROR;
    } else {
        l2_sector = ((const uint32_t *)l1)[l1_index];
    }
    if (!l2_sector)
        return VMDK_CLUSTER_UNALLOC;
    if (load_l2(opaque, l2_sector, &l2) < 0)
        return VMDK_CLUSTER_ERROR;
    l2_index = (uint32_t)(((offset >> 9) / e->cluster_sectors) % e->l2_size);
    if (e->sesparse)
        return se_grain(e, le64(l2 + 8 * (size_t)l2_index), cluster_offset);
    cluster_sector = le32(l2 + 4 * (size_t)l2_index);
    if (e->has_zero_grain && cluster_sector == VMDK_GTE_ZEROED)
        return VMDK_CLUSTER_ZEROED;
    if (!cluster_sector)
        return VMDK_CLUSTER_UNALLOC;
    *cluster_offset = (uint64_t)cluster_sector << 9;
    return VMDK_CLUSTER_OK;
}

uint64_t vmdk_offset_in_cluster(const struct vmdk_extent *e, uint64_t offset)
{
    if (e->cluster_sectors == 0)
        return 0;
    return (offset - (e->end_sector - e->sectors) * 512) % (e->cluster_sectors * 512);
}

int vmdk_grain_data(const struct vmdk_extent *e, const uint8_t *buf, size_t buf_len,
                    const uint8_t **data, size_t *len)
{
    uint32_t n;

    if (!e->has_marker) {
        *data = buf;
        *len = buf_len / 2;
        return 0;
    }
    /* VmdkGrainMarker: lba (8 bytes), size (4), then the data. */
    n = le32(buf + 8);
    if (n == 0 || n > buf_len)
        return -1;
    *data = buf + 12;
    *len = n > buf_len - 12 ? buf_len - 12 : n;
    return 0;
}
