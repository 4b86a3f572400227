/*
 * VHD creation (see create.h): the layout of qemu 7.2's
 * create_dynamic_disk() and create_fixed_disk().
 */
#include "create.h"

#include <string.h>

#include "vpc.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* calculate_rounded_image_size() for bytes (a multiple of 512). */
static int rounded(uint64_t bytes, bool force_size, struct vpc_create *c)
{
    uint64_t total, i;

    c->cyls = 0;
    c->heads = 0;
    c->secs = 0;
    if (force_size) {
        c->cyls = 65535;
        c->heads = 16;
        c->secs = 255;
    } else {
        /* Grow the request until a geometry holds it. */
        total = bytes / 512 < VPC_MAX_GEOMETRY ? bytes / 512 : VPC_MAX_GEOMETRY;
        for (i = 0; total > (uint64_t)c->cyls * c->heads * c->secs; i++)
            vpc_geometry(total + i, &c->cyls, &c->heads, &c->secs);
    }
    if ((uint64_t)c->cyls * c->heads * c->secs == VPC_MAX_GEOMETRY) {
        total = bytes / 512;
        if (total > VPC_MAX_SECTORS)
            return -1;
    } else {
        total = (uint64_t)c->cyls * c->heads * c->secs;
    }
    c->total_sectors = total;
    c->size = total * 512;
    return 0;
}

int vpc_create_size(uint64_t requested, bool force_size, bool fixed, struct vpc_create *c)
{
    /* vpc_co_create_opts(): rounded up to sectors, then to the geometry. */
    uint64_t bytes =
        requested > UINT64_MAX - 511 ? UINT64_MAX & ~511ull : (requested + 511) & ~511ull;

    memset(c, 0, sizeof(*c));
    c->force_size = force_size;
    c->fixed = fixed;
    if (rounded(bytes, force_size, c) < 0)
        return -1;
    /* vpc_co_create() computes it again from the rounded size: the same. */
    return rounded(force_size ? bytes : c->size, force_size, c);
}

void vpc_create_footer(const struct vpc_create *c, uint32_t timestamp, const uint8_t uuid[16],
                       uint8_t out[512])
{
    memset(out, 0, 512);
    memcpy(out, "conectix", 8);
    put32(out + 8, 0x02);        /* features: reserved bit */
    put32(out + 12, 0x00010000); /* version 1.0 */
    put64(out + 16, c->fixed ? UINT64_MAX : 512);
    put32(out + 24, timestamp);
    memcpy(out + 28, c->force_size ? "qem2" : "qemu", 4);
    put16(out + 32, 5); /* Virtual PC 2007 */
    put16(out + 34, 3);
    memcpy(out + 36, "Wi2k", 4);
    put64(out + 40, c->size);
    put64(out + 48, c->size);
    put16(out + 56, c->cyls);
    out[58] = c->heads;
    out[59] = c->secs;
    put32(out + 60, c->fixed ? VPC_TYPE_FIXED : VPC_TYPE_DYNAMIC);
    memcpy(out + 68, uuid, 16);
    put32(out + 64, vpc_checksum(out, 512));
}

uint32_t vpc_create_bat_entries(const struct vpc_create *c)
{
    return (uint32_t)((c->total_sectors + VPC_CREATE_BLOCK_SIZE / 512 - 1) /
                      (VPC_CREATE_BLOCK_SIZE / 512));
}

void vpc_create_dyn_header(const struct vpc_create *c, uint8_t out[1024])
{
    memset(out, 0, 1024);
    memcpy(out, "cxsparse", 8);
    /* All 64 bits set: Microsoft's tools expect it, whatever the spec says. */
    put64(out + 8, UINT64_MAX);
    put64(out + 16, 3 * 512);
    put32(out + 24, 0x00010000);
    put32(out + 28, vpc_create_bat_entries(c));
    put32(out + 32, VPC_CREATE_BLOCK_SIZE);
    put32(out + 36, vpc_checksum(out, 1024));
}
