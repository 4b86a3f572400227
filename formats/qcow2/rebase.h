/*
 * qemu-img rebase's header rewrite: the first cluster of a qcow2 image as
 * QEMU 7.2's qcow2_change_backing_file() leaves it, i.e. what
 * qcow2_update_header() writes for an image opened read-write with a new
 * backing file name and format (or none).
 *
 * Everything else of the header is kept as qemu keeps it in memory after
 * a read-write open: the fields as read (the size rounded down to 512,
 * unknown autoclear bits cleared, header_length of a v3 image at least
 * 112), unknown header fields and unknown extensions (these in reverse
 * order, as qemu collects them on a list), the data file and crypto
 * extensions, a valid bitmaps extension; the feature name table is
 * written for v3 images with clusters above 4 KiB, whether or not the
 * image had one.
 *
 * Pure code: no I/O, no allocation, no printing.
 */
#ifndef QCOW2_REBASE_H
#define QCOW2_REBASE_H

#include <stddef.h>
#include <stdint.h>

#include "header.h"

#define QCOW2_REBASE_EINVAL 22 /* qcow2_change_backing_file()'s -EINVAL */
#define QCOW2_REBASE_ENOSPC 28 /* qcow2_update_header()'s -ENOSPC */

/* The longest backing file name qcow2_change_backing_file() takes. */
#define QCOW2_REBASE_NAME_MAX 1023

/*
 * qcow2_rebase_header - build the new first cluster.
 * @h, @x: the image's header and extensions as qcow2_header_parse() and
 *     qcow2_ext_parse() accepted them (x's pointers into first)
 * @first/@first_len: the image's current first bytes (zeros past
 *     first_len), from which unknown fields and extensions are copied
 * @backing: the new backing file name (NUL-terminated), or NULL for none
 * @backing_fmt: its format for the backing format extension, or NULL
 * @out: h->cluster_size bytes, filled on success
 * Returns 0; -QCOW2_REBASE_EINVAL when qemu refuses the change (a backing
 * file for an image whose external data file is raw, a name longer than
 * 1023 bytes, a format without a name, a version other than 2 or 3);
 * -QCOW2_REBASE_ENOSPC when the header, extensions and name do not fit
 * in the first cluster.
 */
int qcow2_rebase_header(const struct qcow2_header *h, const struct qcow2_exts *x,
                        const uint8_t *first, size_t first_len, const char *backing,
                        const char *backing_fmt, uint8_t *out);

#endif /* QCOW2_REBASE_H */
