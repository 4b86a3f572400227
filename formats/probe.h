/*
 * Image format probing as qemu-img 7.2 (Debian 12) does it when no -f is
 * given: find_image_format() / bdrv_probe_all() over the format drivers
 * built into Debian's qemu-img that have a probe function.
 *
 * Pure code: the caller reads the first bytes of the image.
 */
#ifndef INSTAR_PROBE_H
#define INSTAR_PROBE_H

#include <stddef.h>
#include <stdint.h>

/* QEMU probes the first BLOCK_PROBE_BUF_SIZE bytes, zero-filled past EOF. */
#define PROBE_BUF_SIZE 512

/*
 * probe_format - the driver qemu-img would pick.
 *
 * buf/len: the first bytes of the image; bytes past len read as zero
 *     (only the first PROBE_BUF_SIZE matter).
 * file_size: the image's size in bytes; an empty image is "raw", unread.
 * filename: the name as given on the command line, or NULL when unknown
 *     (the dmg driver matches on a ".dmg" suffix, nothing else does).
 * Returns a static driver name: "qcow2", "raw", "vmdk", "qcow", "qed",
 * "vdi", "vpc", "vhdx", "parallels", "dmg", "bochs", "cloop" or "luks".
 * Never NULL: raw matches everything, at the lowest score.
 */
const char *probe_format(const uint8_t *buf, size_t len, uint64_t file_size, const char *filename);

#endif /* INSTAR_PROBE_H */
