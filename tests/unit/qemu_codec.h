/*
 * The oracle for guest/codec.c: qemu-img 7.2's qcow2 compression calls
 * (block/qcow2-threads.c: qcow2_{zlib,zstd}_{compress,decompress}),
 * restated here and made on the system's libz.so.1 and libzstd.so.1, the
 * libraries Debian's qemu-img links.  They are loaded with dlopen() into
 * a program that also links our own build of the same sources, so the
 * loader must keep the two apart: our zlib has z_-prefixed names
 * (Z_PREFIX), and qemu_codec_load() checks that the program exports none
 * of the names it looks up, which would otherwise bind the system
 * libraries' internal calls to our copies.
 *
 * Results are in guest/codec.h's terms: QEMU's -EIO is -GCODEC_EIO, its
 * -ENOMEM (compression: does not fit) -GCODEC_ENOSPC.  Each call creates
 * and frees its own context, as QEMU's do, and decodes zstd through
 * zstd's own buffers (QEMU sets no parameter), not into dst directly.
 *
 * Used by tests/unit/test_codec.c and fuzz/fuzz_decompress.c.
 */
#ifndef QEMU_CODEC_H
#define QEMU_CODEC_H

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define ZLIB_CONST /* as QEMU: next_in is const */
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "codec.h"

struct qemu_codec {
    const char *(*zlib_ver)(void);
    int (*inflate_init2)(z_stream *s, int window_bits, const char *version, int size);
    int (*inflate_run)(z_stream *s, int flush);
    int (*inflate_end)(z_stream *s);
    int (*deflate_init2)(z_stream *s, int level, int method, int window_bits, int mem_level,
                         int strategy, const char *version, int size);
    int (*deflate_run)(z_stream *s, int flush);
    int (*deflate_end)(z_stream *s);

    unsigned (*zstd_version)(void);
    ZSTD_CCtx *(*cctx_create)(void);
    size_t (*cctx_free)(ZSTD_CCtx *c);
    size_t (*cctx_set)(ZSTD_CCtx *c, ZSTD_cParameter p, int value);
    size_t (*compress_stream2)(ZSTD_CCtx *c, ZSTD_outBuffer *out, ZSTD_inBuffer *in,
                               ZSTD_EndDirective end);
    ZSTD_DCtx *(*dctx_create)(void);
    size_t (*dctx_free)(ZSTD_DCtx *d);
    size_t (*decompress_stream)(ZSTD_DCtx *d, ZSTD_outBuffer *out, ZSTD_inBuffer *in);
    unsigned (*is_error)(size_t code);
};

/* Look name up in handle; fail when the program itself exports it. */
static inline void *qemu_codec_sym(void *handle, const char *lib, const char *name)
{
    void *mine = dlsym(RTLD_DEFAULT, name);
    void *p = dlsym(handle, name);
    Dl_info info;

    if (mine && dladdr(mine, &info) && info.dli_fname && !strstr(info.dli_fname, lib)) {
        fprintf(stderr, "qemu_codec: %s resolves to %s, not %s\n", name, info.dli_fname, lib);
        return NULL;
    }
    if (!p || !dladdr(p, &info) || !info.dli_fname || !strstr(info.dli_fname, lib)) {
        fprintf(stderr, "qemu_codec: %s not found in %s\n", name, lib);
        return NULL;
    }
    return p;
}

/* Fill q from the system libraries; 0, or -1 after a message on stderr. */
static inline int qemu_codec_load(struct qemu_codec *q)
{
    void *z = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    void *zs = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);

    memset(q, 0, sizeof(*q));
    if (!z || !zs) {
        fprintf(stderr, "qemu_codec: %s\n", dlerror());
        return -1;
    }
#define SYM(field, h, lib, name) (*(void **)&q->field = qemu_codec_sym(h, lib, name)) != NULL
    if (SYM(zlib_ver, z, "libz.so", "zlibVersion") &&
        SYM(inflate_init2, z, "libz.so", "inflateInit2_") &&
        SYM(inflate_run, z, "libz.so", "inflate") && SYM(inflate_end, z, "libz.so", "inflateEnd") &&
        SYM(deflate_init2, z, "libz.so", "deflateInit2_") &&
        SYM(deflate_run, z, "libz.so", "deflate") && SYM(deflate_end, z, "libz.so", "deflateEnd") &&
        SYM(zstd_version, zs, "libzstd.so", "ZSTD_versionNumber") &&
        SYM(cctx_create, zs, "libzstd.so", "ZSTD_createCCtx") &&
        SYM(cctx_free, zs, "libzstd.so", "ZSTD_freeCCtx") &&
        SYM(cctx_set, zs, "libzstd.so", "ZSTD_CCtx_setParameter") &&
        SYM(compress_stream2, zs, "libzstd.so", "ZSTD_compressStream2") &&
        SYM(dctx_create, zs, "libzstd.so", "ZSTD_createDCtx") &&
        SYM(dctx_free, zs, "libzstd.so", "ZSTD_freeDCtx") &&
        SYM(decompress_stream, zs, "libzstd.so", "ZSTD_decompressStream") &&
        SYM(is_error, zs, "libzstd.so", "ZSTD_isError"))
        return 0;
#undef SYM
    return -1;
}

/* qcow2_zlib_decompress: one inflate(Z_FINISH); dst must end up full. */
static inline int qemu_zlib_decompress(const struct qemu_codec *q, const void *src, size_t src_len,
                                       void *dst, size_t dst_len)
{
    z_stream s;
    int ret;

    memset(&s, 0, sizeof(s));
    s.next_in = src;
    s.avail_in = (uInt)src_len;
    s.next_out = dst;
    s.avail_out = (uInt)dst_len;
    if (q->inflate_init2(&s, -12, ZLIB_VERSION, (int)sizeof(s)) != Z_OK)
        return -GCODEC_EIO;
    ret = q->inflate_run(&s, Z_FINISH);
    ret = (ret == Z_STREAM_END || ret == Z_BUF_ERROR) && s.avail_out == 0 ? 0 : -GCODEC_EIO;
    q->inflate_end(&s);
    return ret;
}

/* qcow2_zlib_compress: raw deflate, level 6, 4 KiB window, memLevel 9. */
static inline long qemu_zlib_compress(const struct qemu_codec *q, const void *src, size_t src_len,
                                      void *dst, size_t dst_len)
{
    z_stream s;
    long ret;
    int zret;

    memset(&s, 0, sizeof(s));
    if (q->deflate_init2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY,
                         ZLIB_VERSION, (int)sizeof(s)) != Z_OK)
        return -GCODEC_EIO;
    s.next_in = src;
    s.avail_in = (uInt)src_len;
    s.next_out = dst;
    s.avail_out = (uInt)dst_len;
    zret = q->deflate_run(&s, Z_FINISH);
    if (zret == Z_STREAM_END)
        ret = (long)(dst_len - s.avail_out);
    else
        ret = zret == Z_OK ? -GCODEC_ENOSPC : -GCODEC_EIO;
    q->deflate_end(&s);
    return ret;
}

/* qcow2_zstd_compress: default parameters, one ZSTD_compressStream2(ZSTD_e_end). */
static inline long qemu_zstd_compress(const struct qemu_codec *q, const void *src, size_t src_len,
                                      void *dst, size_t dst_len)
{
    ZSTD_inBuffer in = {src, src_len, 0};
    ZSTD_outBuffer out = {dst, dst_len, 0};
    ZSTD_CCtx *c = q->cctx_create();
    size_t zret;
    long ret;

    if (!c)
        return -GCODEC_EIO;
    zret = q->compress_stream2(c, &out, &in, ZSTD_e_end);
    if (zret)
        ret = zret > out.size - out.pos ? -GCODEC_ENOSPC : -GCODEC_EIO;
    else
        ret = (long)out.pos;
    q->cctx_free(c);
    return ret;
}

/*
 * qcow2_zstd_decompress: ZSTD_decompressStream until dst is full, failing
 * on an error or a call without progress; the last call must have
 * finished its frame.
 */
static inline int qemu_zstd_decompress(const struct qemu_codec *q, const void *src, size_t src_len,
                                       void *dst, size_t dst_len)
{
    ZSTD_inBuffer in = {src, src_len, 0};
    ZSTD_outBuffer out = {dst, dst_len, 0};
    ZSTD_DCtx *d = q->dctx_create();
    size_t zret = 0;
    int ret = 0;

    if (!d)
        return -GCODEC_EIO;
    while (out.pos < out.size) {
        size_t in_pos = in.pos, out_pos = out.pos;

        zret = q->decompress_stream(d, &out, &in);
        if (q->is_error(zret)) {
            ret = -GCODEC_EIO;
            break;
        }
        if (in.pos <= in_pos && out.pos <= out_pos) {
            ret = -GCODEC_EIO;
            break;
        }
    }
    if (zret > 0)
        ret = -GCODEC_EIO;
    q->dctx_free(d);
    return ret;
}

static inline int qemu_decompress(const struct qemu_codec *q, unsigned type, const void *src,
                                  size_t src_len, void *dst, size_t dst_len)
{
    if (type == GCODEC_ZLIB)
        return qemu_zlib_decompress(q, src, src_len, dst, dst_len);
    return qemu_zstd_decompress(q, src, src_len, dst, dst_len);
}

static inline long qemu_compress(const struct qemu_codec *q, unsigned type, const void *src,
                                 size_t src_len, void *dst, size_t dst_len)
{
    if (type == GCODEC_ZLIB)
        return qemu_zlib_compress(q, src, src_len, dst, dst_len);
    return qemu_zstd_compress(q, src, src_len, dst, dst_len);
}

#endif /* QEMU_CODEC_H */
