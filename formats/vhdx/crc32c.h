/*
 * CRC-32C for VHDX checksums.  Pure code.
 */
#ifndef VHDX_CRC32C_H
#define VHDX_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * vhdx_crc32c - continue the CRC-32C register crc over len bytes of buf
 * and return the new register: no pre- or post-inversion, as qemu's
 * crc32c() (start with 0xffffffff; the checksum is the result xor
 * 0xffffffff).
 */
uint32_t vhdx_crc32c(uint32_t crc, const void *buf, size_t len);

#endif /* VHDX_CRC32C_H */
