/*
 * New vmdk images as qemu 7.2's vmdk_co_do_create() makes them: see
 * create.h.  Header layout: VMware's "Virtual Disk Format 5.0", "Hosted
 * Sparse Extent Header" (qemu's packed VMDK4Header after the magic).
 */
#include "create.h"

#include <string.h>

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void vmdk_create_layout(uint64_t filesize, struct vmdk_create_layout *l)
{
    memset(l, 0, sizeof(*l));
    l->capacity = filesize / 512;
    /* DIV_ROUND_UP(capacity, granularity) stored in a uint32_t, as qemu stores it. */
    l->grains = (uint32_t)((l->capacity + 127) / 128);
    l->gt_size = (512 * 4 + 511) / 512;
    l->gt_count = (l->grains + 511) / 512;
    l->gd_sectors = (uint32_t)(((uint64_t)l->gt_count * 4 + 511) / 512);
    l->rgd_offset = 1 + 20;
    /* gt_size * gt_count is a uint32_t product in qemu. */
    l->gd_offset = l->rgd_offset + l->gd_sectors + (uint32_t)(l->gt_size * l->gt_count);
    l->grain_offset = (l->gd_offset + l->gd_sectors + (uint32_t)(l->gt_size * l->gt_count) + 127) &
                      ~(uint64_t)127;
}

void vmdk_create_header(const struct vmdk_create_layout *l, bool compress, bool zeroed,
                        uint8_t out[VMDK_CREATE_HEADER_LEN])
{
    /* VMDK4_FLAG_NL_DETECT, _RGD, _ZERO_GRAIN, _COMPRESS, _MARKER */
    uint32_t flags = 1u | 2u | (zeroed ? 4u : 0) | (compress ? (1u << 16) | (1u << 17) : 0);
    uint8_t *h = out + 4;

    memset(out, 0, VMDK_CREATE_HEADER_LEN);
    memcpy(out, "KDMV", 4);
    put_le(h + 0, compress ? 3 : zeroed ? 2 : 1, 4); /* version */
    put_le(h + 4, flags, 4);
    put_le(h + 8, l->capacity, 8);
    put_le(h + 16, 128, 8); /* granularity */
    put_le(h + 24, 1, 8);   /* desc_offset */
    put_le(h + 32, 20, 8);  /* desc_size */
    put_le(h + 40, 512, 4); /* num_gtes_per_gt */
    put_le(h + 44, l->rgd_offset, 8);
    put_le(h + 52, l->gd_offset, 8);
    put_le(h + 60, l->grain_offset, 8);
    /* h[68]: filler; the newline-detection bytes "\n \r\n" */
    h[69] = 0xa;
    h[70] = 0x20;
    h[71] = 0xd;
    h[72] = 0xa;
    put_le(h + 73, compress ? 1 : 0, 2); /* VMDK4_COMPRESSION_DEFLATE */
}

uint32_t vmdk_create_gd_entry(const struct vmdk_create_layout *l, bool redundant, uint32_t i)
{
    uint64_t base = (redundant ? l->rgd_offset : l->gd_offset) + l->gd_sectors;

    /* qemu's uint32_t tmp walks the tables: it wraps as the entries do. */
    return (uint32_t)(base + (uint64_t)i * l->gt_size);
}

uint64_t vmdk_create_extents(uint64_t size, bool flat, bool split)
{
    if (split)
        return size / VMDK_SPLIT_SIZE + (size % VMDK_SPLIT_SIZE ? 1 : 0);
    return flat && size > 0 ? 1 : 0;
}

struct sbuf {
    char *p;
    size_t len, cap;
    bool over;
};

static void put_str(struct sbuf *b, const char *s)
{
    size_t n = strlen(s);

    if (b->over || n >= b->cap - b->len) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put_num(struct sbuf *b, uint64_t v, unsigned base, unsigned width)
{
    char tmp[24];
    int i = (int)sizeof(tmp) - 1;

    tmp[i] = '\0';
    do {
        tmp[--i] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while ((unsigned)(sizeof(tmp) - 1 - (size_t)i) < width)
        tmp[--i] = '0';
    put_str(b, tmp + i);
}

/* vmdk_desc_add_extent(): "RW <sectors> SPARSE|FLAT \"<name>\"[ 0]". */
static void put_extent(struct sbuf *b, const struct vmdk_create_desc *d, uint64_t bytes,
                       const char *infix, unsigned idx)
{
    put_str(b, "RW ");
    put_num(b, (bytes + 511) / 512, 10, 0);
    put_str(b, d->flat ? " FLAT \"" : " SPARSE \"");
    put_str(b, d->stem);
    put_str(b, infix);
    if (idx)
        put_num(b, idx, 10, 3);
    put_str(b, d->suffix);
    put_str(b, d->flat ? "\" 0\n" : "\"\n");
}

long vmdk_create_desc_text(const struct vmdk_create_desc *d, char *buf, size_t cap)
{
    struct sbuf b = {buf, 0, cap, cap == 0};
    uint32_t heads = strcmp(d->adapter, "ide") ? 255 : 16;

    if (cap)
        buf[0] = '\0';
    put_str(&b, "# Disk DescriptorFile\nversion=1\nCID=");
    put_num(&b, d->cid, 16, 0);
    put_str(&b, "\nparentCID=");
    put_num(&b, d->parent_cid, 16, 0);
    put_str(&b, "\ncreateType=\"");
    put_str(&b, d->create_type);
    put_str(&b, "\"\n");
    if (d->parent_hint) {
        put_str(&b, "parentFileNameHint=\"");
        put_str(&b, d->parent_hint);
        put_str(&b, "\"");
    }
    put_str(&b, "\n# Extent description\n");
    if (d->split) {
        uint64_t done = 0;
        unsigned i = 1;

        while (done < d->size) {
            uint64_t cur = d->size - done < VMDK_SPLIT_SIZE ? d->size - done : VMDK_SPLIT_SIZE;

            put_extent(&b, d, cur, d->flat ? "-f" : "-s", i++);
            done += cur;
        }
    } else if (!d->flat) {
        put_extent(&b, d, d->size, "", 0);
    } else if (d->size > 0) {
        put_extent(&b, d, d->size, "-flat", 0);
    }
    put_str(&b, "\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"");
    put_str(&b, d->hwversion);
    put_str(&b, "\"\nddb.geometry.cylinders = \"");
    /* size / (63 * heads * 512) of a non-negative int64 */
    put_num(&b, d->size / (63ull * heads * 512), 10, 0);
    put_str(&b, "\"\nddb.geometry.heads = \"");
    put_num(&b, heads, 10, 0);
    put_str(&b, "\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"");
    put_str(&b, d->adapter);
    put_str(&b, "\"\nddb.toolsVersion = \"");
    put_str(&b, d->toolsversion);
    put_str(&b, "\"\n");
    return b.over ? -1 : (long)b.len;
}
