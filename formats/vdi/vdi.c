/*
 * VDI reading and writing as qemu 7.2's block/vdi.c does it (see vdi.h).
 * The open checks run in vdi_open()'s order, so the first failure is
 * the one qemu-img reports.
 */
#include "vdi.h"

#include <string.h>

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

static bool uuid_is_null(const uint8_t *u)
{
    static const uint8_t zero[16];

    return !memcmp(u, zero, sizeof(zero));
}

static int fail(struct vdi_image *img, int err, uint64_t a0, uint64_t a1)
{
    img->err_args[0] = a0;
    img->err_args[1] = a1;
    return -err;
}

int vdi_open_header(const uint8_t h[VDI_HEADER_SIZE], uint64_t file_length, struct vdi_image *img)
{
    uint64_t disk_size = le64(h + VDI_OFF_DISK_SIZE), room, held;
    uint32_t version = le32(h + VDI_OFF_VERSION), blocks = le32(h + VDI_OFF_BLOCKS_IN_IMAGE);
    uint32_t block_size = le32(h + VDI_OFF_BLOCK_SIZE);

    memset(img, 0, sizeof(*img));
    memcpy(img->header, h, VDI_HEADER_SIZE);
    /* The size limit comes first, before the signature. */
    if (disk_size > VDI_DISK_SIZE_MAX)
        return fail(img, VDI_ERR_SIZE_MAX, disk_size, VDI_DISK_SIZE_MAX);
    /* 'VBoxManage convertfromraw' writes odd sizes: qemu rounds them up. */
    disk_size = (disk_size + 511) & ~511ull;
    img->offset_bmap = le32(h + VDI_OFF_OFFSET_BMAP);
    img->offset_data = le32(h + VDI_OFF_OFFSET_DATA);
    room = (uint64_t)blocks * block_size;

    if (le32(h + VDI_OFF_SIGNATURE) != VDI_SIGNATURE)
        return fail(img, VDI_ERR_SIGNATURE, le32(h + VDI_OFF_SIGNATURE), 0);
    if (version != VDI_VERSION_1_1)
        return fail(img, VDI_ERR_VERSION, version >> 16, version & 0xffff);
    if (img->offset_bmap % 512)
        return fail(img, VDI_ERR_BMAP_ALIGN, img->offset_bmap, 0);
    if (img->offset_data % 512)
        return fail(img, VDI_ERR_DATA_ALIGN, img->offset_data, 0);
    if (le32(h + VDI_OFF_SECTOR_SIZE) != 512)
        return fail(img, VDI_ERR_SECTOR_SIZE, le32(h + VDI_OFF_SECTOR_SIZE), 0);
    if (block_size != VDI_BLOCK_SIZE)
        return fail(img, VDI_ERR_BLOCK_SIZE, block_size, 0);
    if (disk_size > room)
        return fail(img, VDI_ERR_DISK_SIZE, disk_size, room);
    if (!uuid_is_null(h + VDI_OFF_UUID_LINK))
        return fail(img, VDI_ERR_LINK_UUID, 0, 0);
    if (!uuid_is_null(h + VDI_OFF_UUID_PARENT))
        return fail(img, VDI_ERR_PARENT_UUID, 0, 0);
    if (blocks > VDI_BLOCKS_MAX)
        return fail(img, VDI_ERR_TOO_MANY_BLOCKS, blocks, VDI_BLOCKS_MAX);

    img->image_type = le32(h + VDI_OFF_IMAGE_TYPE);
    img->blocks_in_image = blocks;
    img->blocks_allocated = le32(h + VDI_OFF_BLOCKS_ALLOCATED);
    img->disk_size = disk_size;
    put_le64(img->header + VDI_OFF_DISK_SIZE, disk_size);
    /* blocks <= VDI_BLOCKS_MAX: the map is below 2 GiB, its sectors below 2^22. */
    img->bmap_sectors = ((uint64_t)blocks * 4 + 511) / 512;
    /*
     * Only the sectors that lie in the file are held: the others read as
     * zeros (entry 0) and stay so, since a write never allocates a block
     * whose entry is allocated.
     */
    held = 0;
    if (file_length > img->offset_bmap)
        held = (file_length - img->offset_bmap + 511) / 512;
    if (held > img->bmap_sectors)
        held = img->bmap_sectors;
    img->bmap_held = (uint32_t)(held * 128);
    return 0;
}

void vdi_bmap_load(uint32_t *bmap, uint32_t n)
{
    uint32_t i;

    for (i = 0; i < n; i++)
        bmap[i] = le32((const uint8_t *)&bmap[i]);
}

bool vdi_map(const struct vdi_image *img, const uint32_t *bmap, uint64_t off, uint64_t *host,
             uint64_t *run)
{
    uint32_t index = (uint32_t)(off / VDI_BLOCK_SIZE), in = (uint32_t)(off % VDI_BLOCK_SIZE);
    uint32_t e;

    *run = VDI_BLOCK_SIZE - in;
    if (index >= img->blocks_in_image)
        return false;
    e = vdi_entry(img, bmap, index);
    if (!vdi_is_allocated(e))
        return false;
    /* At most 2^32 + 2^52: no overflow. */
    *host = img->offset_data + (uint64_t)e * VDI_BLOCK_SIZE + in;
    return true;
}

uint64_t vdi_check(const struct vdi_image *img, const uint32_t *bmap, uint64_t *used,
                   void (*report)(void *opaque, int32_t code, uint64_t a0, uint64_t a1),
                   void *opaque)
{
    uint64_t corruptions = 0;
    uint32_t block, allocated = 0;

    memset(used, 0, ((size_t)img->blocks_in_image + 63) / 64 * 8);
    for (block = 0; block < img->blocks_in_image; block++) {
        uint32_t e = vdi_entry(img, bmap, block);

        if (!vdi_is_allocated(e))
            continue;
        if (e >= img->blocks_in_image) {
            report(opaque, VDI_MSG_TOO_LARGE, block, e);
            corruptions++;
            continue;
        }
        allocated++;
        if (used[e / 64] & (1ull << (e % 64))) {
            /* qemu prints the entry it stored, which is e itself. */
            report(opaque, VDI_MSG_ALSO_USED, e, e);
            corruptions++;
        } else {
            used[e / 64] |= 1ull << (e % 64);
        }
    }
    if (allocated != img->blocks_allocated) {
        report(opaque, VDI_MSG_MISMATCH, allocated, img->blocks_allocated);
        corruptions++;
    }
    return corruptions;
}

void vdi_header_store(const struct vdi_image *img, uint8_t out[VDI_HEADER_SIZE])
{
    memcpy(out, img->header, VDI_HEADER_SIZE);
    put_le32(out + VDI_OFF_BLOCKS_ALLOCATED, img->blocks_allocated);
}

/* qemu_uuid_bswap(): the first three fields little endian on disk. */
static void put_uuid(uint8_t *p, const uint8_t u[16])
{
    static const uint8_t order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    unsigned i;

    for (i = 0; i < 16; i++)
        p[i] = u[order[i]];
}

void vdi_create_header(uint64_t size, bool is_static, const uint8_t uuid_image[16],
                       const uint8_t uuid_last_snap[16], uint8_t out[VDI_HEADER_SIZE])
{
    static const char text[] = "<<< QEMU VM Virtual Disk Image >>>\n";
    uint32_t blocks = vdi_create_blocks(size);
    uint32_t bmap_size = (uint32_t)(((uint64_t)blocks * 4 + 511) & ~511ull);

    memset(out, 0, VDI_HEADER_SIZE);
    memcpy(out, text, sizeof(text) - 1);
    put_le32(out + VDI_OFF_SIGNATURE, VDI_SIGNATURE);
    put_le32(out + VDI_OFF_VERSION, VDI_VERSION_1_1);
    put_le32(out + VDI_OFF_HEADER_SIZE, 0x180);
    put_le32(out + VDI_OFF_IMAGE_TYPE, is_static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC);
    put_le32(out + VDI_OFF_OFFSET_BMAP, 0x200);
    put_le32(out + VDI_OFF_OFFSET_DATA, 0x200 + bmap_size);
    put_le32(out + VDI_OFF_SECTOR_SIZE, 512);
    put_le64(out + VDI_OFF_DISK_SIZE, size);
    put_le32(out + VDI_OFF_BLOCK_SIZE, VDI_BLOCK_SIZE);
    put_le32(out + VDI_OFF_BLOCKS_IN_IMAGE, blocks);
    if (is_static)
        put_le32(out + VDI_OFF_BLOCKS_ALLOCATED, blocks);
    put_uuid(out + VDI_OFF_UUID_IMAGE, uuid_image);
    put_uuid(out + VDI_OFF_UUID_LAST_SNAP, uuid_last_snap);
}
