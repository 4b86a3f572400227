/*
 * Compressed qcow2 clusters: zlib (raw deflate) and zstd, the real
 * libraries from Debian 12's sources built for the guest (docs/
 * architecture.md, "The codecs"), called the way qemu-img 7.2 calls them
 * (block/qcow2-threads.c), so that what it accepts, rejects and writes is
 * what qemu-img accepts, rejects and writes.
 *
 * Builds into the guest and, for the unit tests and fuzzers, into the host:
 * it needs only malloc and free.  Not thread-safe: one context per codec
 * and direction, created on first use and kept (reset between calls) until
 * gcodec_release().  Peak heap per context, as the libraries request it
 * and as the guest's power-of-two allocator (guest/alloc.c) lays it out,
 * measured with tests/unit/test_codec.c's inputs:
 *                          requested     in guest RAM
 *   zlib decompress        7 KiB         8 KiB
 *     + its window (1)     + 4 KiB       16 KiB in all
 *   zlib compress          278 KiB       552 KiB (any cluster size)
 *   zstd decompress        94 KiB        128 KiB
 *     + input buffer (2)   + 128 KiB     384 KiB in all
 *   zstd compress (3)      841 KiB       1 MiB (64 KiB clusters)
 *                          3.5 MiB       4 MiB (1 and 2 MiB clusters)
 * (1) once a stream has not ended within dst; (2) once a frame did not
 * state its size or did not lie whole in src; (3) level 3: 40 KiB and
 * 136 KiB of guest RAM for 512-byte and 4 KiB clusters.  A context keeps
 * what its largest call needed.
 */
#ifndef GUEST_CODEC_H
#define GUEST_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* The qcow2 header's compression_type values (qcow2.txt, header byte 104). */
#define GCODEC_ZLIB 0
#define GCODEC_ZSTD 1

/* Failures, returned negated. */
enum gcodec_err {
    GCODEC_EIO = 1,    /* corrupt, truncated or short stream; a library error (QEMU's -EIO) */
    GCODEC_ENOSPC = 2, /* compress: the result does not fit dst (QEMU's -ENOMEM) */
    GCODEC_ENOMEM = 3, /* the heap could not hold a context (QEMU, on a host, would not fail) */
    GCODEC_EINVAL = 4, /* unknown type, or a length over 4 GiB */
};

/*
 * gcodec_decompress - decode the compressed cluster src[0..src_len) of
 * compression type `type` into exactly dst_len bytes at dst (the cluster
 * size), as qcow2_zlib_decompress / qcow2_zstd_decompress do:
 *  - GCODEC_ZLIB: raw deflate (windowBits -12), one inflate(Z_FINISH); in
 *    one call all of dst is history, so matches may reach anywhere back in
 *    dst, never before it.  Succeeds when dst is full, whether the stream ends
 *    there, goes on past it (the rest is not decoded: a compression bomb
 *    just fills dst), or its input ends there.  Fails when the stream or its
 *    input ends before dst is full, or is corrupt.  Bytes after the end of
 *    the stream are ignored (qcow2 stores sizes in 512-byte sectors).
 *  - GCODEC_ZSTD: a sequence of zstd frames (skippable frames included; no
 *    legacy formats) decoded as a stream until dst is full.  Succeeds when
 *    the frame that fills dst ends exactly there; a frame that would decode
 *    past dst_len, input that ends before dst is full, and a corrupt frame
 *    fail.  Bytes after the frame that filled dst are ignored.
 * Never writes outside dst; dst's contents are unspecified after a failure.
 * Work is bounded by src_len + dst_len: every step consumes input or
 * produces output, or the call fails.
 * Returns 0, or -GCODEC_EIO, -GCODEC_ENOMEM, -GCODEC_EINVAL.
 */
int gcodec_decompress(unsigned type, const void *src, size_t src_len, void *dst, size_t dst_len);

/*
 * gcodec_compress - compress src[0..src_len) (a whole cluster) into at most
 * dst_len bytes at dst, as qcow2_zlib_compress / qcow2_zstd_compress do:
 *  - GCODEC_ZLIB: deflateInit2(Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
 *    Z_DEFAULT_STRATEGY), one deflate(Z_FINISH);
 *  - GCODEC_ZSTD: default parameters (level 3), one
 *    ZSTD_compressStream2(ZSTD_e_end).
 * With the same library version the bytes are those qemu-img writes, and
 * so is the verdict: zlib says "does not fit" also when the stream would
 * fill dst exactly (it needs a spare byte to report its end).  Like
 * qemu-img, a qcow2 writer passes dst_len = cluster size - 1, and on
 * -GCODEC_ENOSPC writes the cluster uncompressed.  Never writes outside dst.
 * Returns the compressed length, or -GCODEC_ENOSPC, -GCODEC_EIO,
 * -GCODEC_ENOMEM, -GCODEC_EINVAL.
 */
long gcodec_compress(unsigned type, const void *src, size_t src_len, void *dst, size_t dst_len);

/*
 * gcodec_inflate_read - decode the zlib stream (RFC 1950: header, deflate
 * data, Adler-32; a 32 KiB window) of src_len bytes at src_off, read
 * through rd in 64 KiB pieces, into dst, as block/cloop.c and block/dmg.c
 * decode a block (inflateReset, one inflate(Z_FINISH) over the whole
 * block): succeeds only when the stream ends within the input having
 * produced exactly dst_len bytes.  A stream that would go on past dst (a
 * compression bomb) fails once dst is full; bytes after the end of the
 * stream are ignored.  Work is bounded by src_len + dst_len.  Returns 0,
 * or -GCODEC_EIO (rd's failures too), -GCODEC_ENOMEM, -GCODEC_EINVAL.
 */
int gcodec_inflate_read(int (*rd)(void *opaque, uint64_t off, void *buf, size_t len), void *opaque,
                        uint64_t src_off, uint64_t src_len, void *dst, size_t dst_len);

/*
 * gcodec_zlib_uncompress - zlib's uncompress() as vmdk_read_extent()
 * calls it: the zlib stream (RFC 1950, 32 KiB window) src[0..src_len)
 * into at most *dst_len bytes at dst.  Succeeds only when the stream ends
 * within src and dst, with *dst_len the bytes it decoded; a stream that
 * would decode past dst (a compression bomb) fails once dst is full.
 * Never writes outside dst.  Returns 0, or -GCODEC_EIO, -GCODEC_ENOMEM,
 * -GCODEC_EINVAL.
 */
int gcodec_zlib_uncompress(const void *src, size_t src_len, void *dst, size_t *dst_len);

/*
 * gcodec_zlib_compress - zlib's compress() as vmdk_write_extent() calls
 * it (default level, a zlib stream with its header and a 32 KiB window):
 * src into at most dst_len bytes at dst.  Returns the compressed length,
 * -GCODEC_ENOSPC when it does not fit, or another negated gcodec_err.
 */
long gcodec_zlib_compress(const void *src, size_t src_len, void *dst, size_t dst_len);

/* Heap the codec contexts hold now (live) and held at most (peak), in bytes requested. */
struct gcodec_mem {
    size_t live;
    size_t peak;
};
void gcodec_mem_usage(struct gcodec_mem *m);

/* Free every context and restart the peak; the next call creates what it needs again. */
void gcodec_release(void);

#endif /* GUEST_CODEC_H */
