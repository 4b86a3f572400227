/*
 * A new Parallels image as qemu 7.2's parallels_co_create() lays it out:
 * the header sector and a zeroed catalog rounded up to whole clusters.
 * The host links this file to check the user's sizes (numbers only,
 * never image bytes); the guest writes the layout.
 */
#include "parallels.h"

#include <string.h>

#define HEADS_NUMBER 16
#define SEC_IN_CYL   32

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

int prl_create_layout(uint64_t size, uint64_t cluster_size, struct prl_create *c)
{
    uint64_t bat_bytes;

    memset(c, 0, sizeof(*c));
    /* INT64_MAX / MAX_PARALLELS_IMAGE_FACTOR (2^32) */
    if (cluster_size >= 0x7fffffffull)
        return -1;
    if (size >= cluster_size << 32)
        return -2;
    if (size % 512)
        return -3;
    if (cluster_size % 512)
        return -4;
    c->size = size;
    c->cluster_size = cluster_size;
    c->bat_entries = (uint32_t)((size + cluster_size - 1) / cluster_size);
    /* bat_entry_off() is a uint32_t; QEMU rounds it up to clusters, in sectors. */
    bat_bytes = (uint32_t)(PRL_HEADER_SIZE + 4ull * c->bat_entries);
    c->bat_sectors = (uint32_t)((bat_bytes + cluster_size - 1) / cluster_size);
    c->bat_sectors = (uint32_t)(((uint64_t)c->bat_sectors * cluster_size) >> 9);
    return 0;
}

void prl_create_header(const struct prl_create *c, uint8_t sector[512])
{
    memset(sector, 0, 512);
    memcpy(sector, "WithouFreSpacExt", 16);
    put_le32(sector + 16, 2); /* HEADER_VERSION */
    put_le32(sector + 20, HEADS_NUMBER);
    put_le32(sector + 24, (uint32_t)(c->size / 512 / HEADS_NUMBER / SEC_IN_CYL));
    put_le32(sector + 28, (uint32_t)(c->cluster_size >> 9));
    put_le32(sector + 32, c->bat_entries);
    put_le32(sector + 36, (uint32_t)((c->size + 511) / 512));
    put_le32(sector + 40, (uint32_t)(((c->size + 511) / 512) >> 32));
    put_le32(sector + 48, c->bat_sectors);
}
