/*
 * The qcow2 codecs (guest/codec.h): qemu-img 7.2's use of zlib and zstd
 * (block/qcow2-threads.c), restated over contexts that live across calls.
 *
 * QEMU creates and frees a context per cluster; we create each one once
 * and reset it before every call.  A reset context behaves as a new one:
 * inflateReset/deflateReset are documented as End+Init without the
 * reallocation, and ZSTD_*_reset(session_only) keeps only the parameters,
 * which we never change from the defaults QEMU uses (test_codec compares
 * the output of long sequences of calls with fresh system contexts).
 *
 * One deliberate difference in how zstd decodes, not in what it accepts:
 * the decompression context runs with ZSTD_d_stableOutBuffer, so it
 * decodes straight into dst and never allocates a window buffer, which a
 * hostile frame can size up to 128 MiB (windowLog 27, zstd's default
 * limit) and which would not fit guest RAM.  The outcome is the same:
 * where QEMU's buffered stream runs out of dst mid-frame and fails its
 * "frame fully flushed" check, the stable one fails at the block or frame
 * header that would not fit (fuzz/fuzz_decompress.c checks against the
 * system library driven exactly as QEMU drives it).
 *
 * Allocation: the libraries allocate through counting wrappers around
 * malloc/free, which track what gcodec_mem_usage() reports and let a
 * failed allocation be told apart from a corrupt stream.  Only a failed
 * allocation differs from QEMU, which would report -EIO or, for zstd
 * compression, "does not fit": on a host those do not happen, and here
 * they must not silently change what is read or written.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_customMem, ZSTD_d_stableOutBuffer */
#include <zstd.h>
#include <zstd_errors.h>

#include "codec.h"
#include "instar/ovf.h"

/* --- counting allocation --- */

/* Each block starts with its size; 16 bytes keep malloc's alignment. */
#define MEM_HDR 16

static struct gcodec_mem mem;

static void *mem_alloc(size_t size)
{
    uint64_t total;
    unsigned char *p;

    if (ovf_add_u64(size, MEM_HDR, &total))
        return NULL;
    p = malloc(total);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof(size));
    mem.live += size;
    if (mem.live > mem.peak)
        mem.peak = mem.live;
    return p + MEM_HDR;
}

static void mem_free(void *ptr)
{
    unsigned char *p = ptr;
    size_t size;

    if (!p)
        return;
    p -= MEM_HDR;
    memcpy(&size, p, sizeof(size));
    mem.live -= size;
    free(p);
}

static voidpf zlib_alloc(voidpf opaque, uInt items, uInt size)
{
    uint64_t n;

    (void)opaque;
    if (ovf_mul_u64(items, size, &n))
        return Z_NULL;
    return mem_alloc(n);
}

static void zlib_free(voidpf opaque, voidpf ptr)
{
    (void)opaque;
    mem_free(ptr);
}

static void *zstd_alloc(void *opaque, size_t size)
{
    (void)opaque;
    return mem_alloc(size);
}

static void zstd_free(void *opaque, void *ptr)
{
    (void)opaque;
    mem_free(ptr);
}

static const ZSTD_customMem zstd_mem = {zstd_alloc, zstd_free, NULL};

void gcodec_mem_usage(struct gcodec_mem *m)
{
    *m = mem;
}

/* --- contexts --- */

static z_stream zinf, zdef, zblk, zinf15;
static int zinf_ready, zdef_ready, zblk_ready, zinf15_ready;
static ZSTD_DCtx *zstd_d;
static ZSTD_CCtx *zstd_c;

void gcodec_release(void)
{
    if (zinf_ready)
        inflateEnd(&zinf);
    if (zinf15_ready)
        inflateEnd(&zinf15);
    zinf15_ready = 0;
    if (zdef_ready)
        deflateEnd(&zdef);
    if (zblk_ready)
        inflateEnd(&zblk);
    zinf_ready = zdef_ready = zblk_ready = 0;
    ZSTD_freeDCtx(zstd_d);
    ZSTD_freeCCtx(zstd_c);
    zstd_d = NULL;
    zstd_c = NULL;
    mem.peak = mem.live;
}

/* A zlib init result as our error: its only allocation failure is Z_MEM_ERROR. */
static int z_init_err(int zret)
{
    return zret == Z_MEM_ERROR ? -GCODEC_ENOMEM : -GCODEC_EIO;
}

/* --- zlib: raw deflate, 4 KiB window --- */

static int zlib_decompress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    int zret;

    if (!zinf_ready) {
        memset(&zinf, 0, sizeof(zinf));
        zinf.zalloc = zlib_alloc;
        zinf.zfree = zlib_free;
        zret = inflateInit2(&zinf, -12);
        if (zret != Z_OK)
            return z_init_err(zret);
        zinf_ready = 1;
    } else if (inflateReset(&zinf) != Z_OK) {
        return -GCODEC_EIO;
    }
    zinf.next_in = src;
    zinf.avail_in = (uInt)src_len;
    zinf.next_out = dst;
    zinf.avail_out = (uInt)dst_len;

    /*
     * One call with Z_FINISH, as QEMU makes.  Z_BUF_ERROR is a success
     * when dst is full: the stream may go on past the cluster, or its end
     * may lie beyond the sectors we were given.
     */
    zret = inflate(&zinf, Z_FINISH);
    if ((zret == Z_STREAM_END || zret == Z_BUF_ERROR) && zinf.avail_out == 0)
        return 0;
    return zret == Z_MEM_ERROR ? -GCODEC_ENOMEM : -GCODEC_EIO;
}

static long zlib_compress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    int zret;

    if (!zdef_ready) {
        memset(&zdef, 0, sizeof(zdef));
        zdef.zalloc = zlib_alloc;
        zdef.zfree = zlib_free;
        /* QEMU's parameters: default level (6), 4 KiB window, memLevel 9, no header. */
        zret = deflateInit2(&zdef, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY);
        if (zret != Z_OK)
            return z_init_err(zret);
        zdef_ready = 1;
    } else if (deflateReset(&zdef) != Z_OK) {
        return -GCODEC_EIO;
    }
    zdef.next_in = src;
    zdef.avail_in = (uInt)src_len;
    zdef.next_out = dst;
    zdef.avail_out = (uInt)dst_len;

    /* Z_OK after Z_FINISH means dst filled up before the stream ended. */
    zret = deflate(&zdef, Z_FINISH);
    if (zret == Z_STREAM_END)
        return (long)(dst_len - zdef.avail_out);
    return zret == Z_OK ? -GCODEC_ENOSPC : -GCODEC_EIO;
}

/* zlib's compress(): a zlib stream (RFC 1950), default level, 32 KiB window, memLevel 8. */
static z_stream zcmp;
static int zcmp_ready;

long gcodec_zlib_compress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    int zret;

    if (src_len > UINT_MAX || dst_len > UINT_MAX)
        return -GCODEC_EINVAL;
    if (!zcmp_ready) {
        memset(&zcmp, 0, sizeof(zcmp));
        zcmp.zalloc = zlib_alloc;
        zcmp.zfree = zlib_free;
        zret = deflateInit(&zcmp, Z_DEFAULT_COMPRESSION);
        if (zret != Z_OK)
            return z_init_err(zret);
        zcmp_ready = 1;
    } else if (deflateReset(&zcmp) != Z_OK) {
        return -GCODEC_EIO;
    }
    zcmp.next_in = src;
    zcmp.avail_in = (uInt)src_len;
    zcmp.next_out = dst;
    zcmp.avail_out = (uInt)dst_len;
    zret = deflate(&zcmp, Z_FINISH);
    if (zret == Z_STREAM_END)
        return (long)(dst_len - zcmp.avail_out);
    return zret == Z_OK || zret == Z_BUF_ERROR ? -GCODEC_ENOSPC : -GCODEC_EIO;
}

/* --- zstd --- */

static int zstd_is_oom(size_t zret)
{
    return ZSTD_isError(zret) && ZSTD_getErrorCode(zret) == ZSTD_error_memory_allocation;
}

static int zstd_decompress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    ZSTD_inBuffer in = {src, src_len, 0};
    ZSTD_outBuffer out = {dst, dst_len, 0};
    size_t zret = 0;

    if (!zstd_d) {
        zstd_d = ZSTD_createDCtx_advanced(zstd_mem);
        if (!zstd_d)
            return -GCODEC_ENOMEM;
        zret = ZSTD_DCtx_setParameter(zstd_d, ZSTD_d_stableOutBuffer, 1);
        if (ZSTD_isError(zret)) {
            ZSTD_freeDCtx(zstd_d);
            zstd_d = NULL;
            return -GCODEC_EIO;
        }
    }
    if (ZSTD_isError(ZSTD_DCtx_reset(zstd_d, ZSTD_reset_session_only)))
        return -GCODEC_EIO;

    /*
     * QEMU's loop: a call decodes at most up to the end of one frame, so
     * call until dst is full; a call that neither consumes input nor
     * produces output ends it (the stream wants input it will not get).
     */
    while (out.pos < out.size) {
        size_t in_pos = in.pos, out_pos = out.pos;

        zret = ZSTD_decompressStream(zstd_d, &out, &in);
        if (ZSTD_isError(zret))
            return zstd_is_oom(zret) ? -GCODEC_ENOMEM : -GCODEC_EIO;
        if (in.pos <= in_pos && out.pos <= out_pos)
            return -GCODEC_EIO;
    }
    /* dst is full: the frame that filled it must have ended (0) too. */
    return zret == 0 ? 0 : -GCODEC_EIO;
}

static long zstd_compress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    ZSTD_inBuffer in = {src, src_len, 0};
    ZSTD_outBuffer out = {dst, dst_len, 0};
    size_t zret;

    if (!zstd_c) {
        zstd_c = ZSTD_createCCtx_advanced(zstd_mem);
        if (!zstd_c)
            return -GCODEC_ENOMEM;
    }
    if (ZSTD_isError(ZSTD_CCtx_reset(zstd_c, ZSTD_reset_session_only)))
        return -GCODEC_EIO;

    /*
     * One call, as QEMU makes: with ZSTD_e_end it finishes the frame when
     * dst can hold it, and otherwise returns what is left to flush.  QEMU
     * reads any non-zero result larger than the room left (which includes
     * every error code, being huge) as "does not fit".
     */
    zret = ZSTD_compressStream2(zstd_c, &out, &in, ZSTD_e_end);
    if (zret == 0)
        return (long)out.pos;
    if (zstd_is_oom(zret))
        return -GCODEC_ENOMEM;
    return zret > out.size - out.pos ? -GCODEC_ENOSPC : -GCODEC_EIO;
}

/* --- zlib streams (RFC 1950) of a whole block: cloop and dmg --- */

int gcodec_inflate_read(int (*rd)(void *opaque, uint64_t off, void *buf, size_t len), void *opaque,
                        uint64_t src_off, uint64_t src_len, void *dst, size_t dst_len)
{
    static unsigned char in[65536];
    uint64_t done = 0;
    int zret;

    if (dst_len > UINT_MAX)
        return -GCODEC_EINVAL;
    if (!zblk_ready) {
        memset(&zblk, 0, sizeof(zblk));
        zblk.zalloc = zlib_alloc;
        zblk.zfree = zlib_free;
        zret = inflateInit(&zblk);
        if (zret != Z_OK)
            return z_init_err(zret);
        zblk_ready = 1;
    } else if (inflateReset(&zblk) != Z_OK) {
        return -GCODEC_EIO;
    }
    /* Nothing left over from the last block's input. */
    zblk.next_in = Z_NULL;
    zblk.avail_in = 0;
    zblk.next_out = dst;
    zblk.avail_out = (uInt)dst_len;
    /*
     * QEMU reads the block whole and makes one inflate(Z_FINISH) call; fed
     * piece by piece, inflate reaches the same end: the stream ends within
     * the input and the output (Z_STREAM_END), or it does not.  Each call
     * consumes input or produces output, or the loop ends.
     */
    for (;;) {
        size_t n = src_len - done < sizeof(in) ? (size_t)(src_len - done) : sizeof(in);
        uInt before_in, before_out;

        if (zblk.avail_in == 0 && n) {
            if (rd(opaque, src_off + done, in, n) < 0)
                return -GCODEC_EIO;
            done += n;
            zblk.next_in = in;
            zblk.avail_in = (uInt)n;
        }
        before_in = zblk.avail_in;
        before_out = zblk.avail_out;
        zret = inflate(&zblk, Z_FINISH);
        if (zret == Z_STREAM_END)
            return zblk.total_out == dst_len ? 0 : -GCODEC_EIO;
        if (zret == Z_MEM_ERROR)
            return -GCODEC_ENOMEM;
        if (zret != Z_OK && zret != Z_BUF_ERROR)
            return -GCODEC_EIO;
        /* Output full with more to come, or the input spent: Z_FINISH's Z_BUF_ERROR. */
        if (zblk.avail_out == 0 || (zblk.avail_in == 0 && done == src_len))
            return -GCODEC_EIO;
        if (zblk.avail_in == before_in && zblk.avail_out == before_out && zblk.avail_in)
            return -GCODEC_EIO;
    }
}

/* --- entry points --- */

/* zlib counts in uInt; clusters are at most 2 MiB. */
int gcodec_decompress(unsigned type, const void *src, size_t src_len, void *dst, size_t dst_len)
{
    if (src_len > UINT_MAX || dst_len > UINT_MAX)
        return -GCODEC_EINVAL;
    switch (type) {
    case GCODEC_ZLIB:
        return zlib_decompress(src, src_len, dst, dst_len);
    case GCODEC_ZSTD:
        return zstd_decompress(src, src_len, dst, dst_len);
    }
    return -GCODEC_EINVAL;
}

int gcodec_zlib_uncompress(const void *src, size_t src_len, void *dst, size_t *dst_len)
{
    int zret;

    if (src_len > UINT_MAX || *dst_len > UINT_MAX)
        return -GCODEC_EINVAL;
    if (!zinf15_ready) {
        memset(&zinf15, 0, sizeof(zinf15));
        zinf15.zalloc = zlib_alloc;
        zinf15.zfree = zlib_free;
        zret = inflateInit(&zinf15);
        if (zret != Z_OK)
            return z_init_err(zret);
        zinf15_ready = 1;
    } else if (inflateReset(&zinf15) != Z_OK) {
        return -GCODEC_EIO;
    }
    zinf15.next_in = src;
    zinf15.avail_in = (uInt)src_len;
    zinf15.next_out = dst;
    zinf15.avail_out = (uInt)*dst_len;
    /* uncompress(): Z_OK only for a stream that ended; all of it in one call. */
    zret = inflate(&zinf15, Z_FINISH);
    if (zret != Z_STREAM_END)
        return zret == Z_MEM_ERROR ? -GCODEC_ENOMEM : -GCODEC_EIO;
    *dst_len -= zinf15.avail_out;
    return 0;
}

long gcodec_compress(unsigned type, const void *src, size_t src_len, void *dst, size_t dst_len)
{
    if (src_len > UINT_MAX || dst_len > UINT_MAX)
        return -GCODEC_EINVAL;
    switch (type) {
    case GCODEC_ZLIB:
        return zlib_compress(src, src_len, dst, dst_len);
    case GCODEC_ZSTD:
        return zstd_compress(src, src_len, dst, dst_len);
    }
    return -GCODEC_EINVAL;
}
