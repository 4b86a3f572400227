/*
 * Compression codecs for qcow2 clusters: the real zlib and zstd, built for
 * the guest, with QEMU 7.2's semantics (block/qcow2-threads.c).
 */
#ifndef GUEST_CODEC_H
#define GUEST_CODEC_H

#include <stddef.h>

/* type: 0 zlib (raw deflate), 1 zstd.  0 when all of dst was produced, else < 0. */
int gcodec_decompress(unsigned type, const void *src, size_t src_len, void *dst, size_t dst_len);

/* The compressed length, or < 0 when it does not fit in dst_len (write uncompressed). */
long gcodec_compress(unsigned type, const void *src, size_t src_len, void *dst, size_t dst_len);

#endif /* GUEST_CODEC_H */
