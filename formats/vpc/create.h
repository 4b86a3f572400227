/*
 * Creating a VHD image as qemu 7.2's vpc_co_create_opts() and
 * vpc_co_create() do: the size rounded to a CHS geometry (or kept, with
 * force_size), the footer, and for a dynamic image the dynamic disk
 * header and an empty BAT of 2 MiB blocks.
 *
 * Pure code: the host computes the size with it (user numbers), the guest
 * lays the image out with it.
 */
#ifndef VPC_CREATE_H
#define VPC_CREATE_H

#include <stdbool.h>
#include <stdint.h>

#define VPC_CREATE_BLOCK_SIZE 0x200000u
/* Seconds from the Unix epoch to the VHD one (2000-01-01 00:00:00 UTC). */
#define VPC_TIMESTAMP_BASE 946684800u

struct vpc_create {
    uint64_t size;          /* the image's size in bytes (total_sectors * 512) */
    uint64_t total_sectors; /* its sectors */
    uint16_t cyls;
    uint8_t heads, secs;
    bool force_size;
    bool fixed;
};

/*
 * vpc_create_size - the size qemu gives an image of requested bytes:
 * rounded up to 512, then (without force_size) up to the first CHS
 * geometry holding it.  Returns 0, or -1 where qemu fails with EFBIG
 * (more than 2040 GiB).
 */
int vpc_create_size(uint64_t requested, bool force_size, bool fixed, struct vpc_create *c);

/*
 * vpc_create_footer - the footer of image c, created at timestamp (VHD
 * seconds) with uuid (16 random bytes, a version 4 UUID), checksummed.
 */
void vpc_create_footer(const struct vpc_create *c, uint32_t timestamp, const uint8_t uuid[16],
                       uint8_t out[512]);

/* vpc_create_bat_entries - the BAT entries of a dynamic image c. */
uint32_t vpc_create_bat_entries(const struct vpc_create *c);

/*
 * vpc_create_dyn_header - the dynamic disk header (at offset 512) of a
 * dynamic image c, its BAT at 1536.
 */
void vpc_create_dyn_header(const struct vpc_create *c, uint8_t out[1024]);

#endif /* VPC_CREATE_H */
