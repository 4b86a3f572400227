/*
 * guest/codec.c, built for the host over the same zlib and zstd sources the
 * guest links (scripts/fetch-codecs.sh), against qemu-img 7.2's calls made
 * on the system's libz and libzstd (qemu_codec.h): the same bytes out of
 * compression, the same verdict (and bytes) out of decompression, for
 * round trips at every cluster size, compression bombs, truncated,
 * corrupted and over-long streams, trailing data and short output.  Every
 * destination buffer has a guard band that must come back untouched.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "qemu_codec.h"

static struct qemu_codec qc;

static void setup(void)
{
    cr_assert_eq(qemu_codec_load(&qc), 0, "cannot load the system libz/libzstd");
}

TestSuite(codec, .init = setup);

static const unsigned types[] = {GCODEC_ZLIB, GCODEC_ZSTD};
static const char *const type_names[] = {"zlib", "zstd"};

/* --- data --- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

enum kind {
    ZEROS,
    TEXT,
    RANDOM,
    MIXED,
    SPARSE,
    NKINDS
};
static const char *const kind_names[] = {"zeros", "text", "random", "mixed", "sparse"};

/* Cluster contents of a few kinds: MIXED copies earlier runs from near and far (> 4 KiB). */
static void fill(uint8_t *p, size_t n, enum kind k)
{
    static const char *const words[] = {"qcow2 ", "cluster ", "refcount ", "the ", "of ",
                                        "table ", "L2 ",      "zstd ",     "\n",   "image "};
    size_t i = 0;

    switch (k) {
    case ZEROS:
        memset(p, 0, n);
        break;
    case TEXT:
        while (i < n) {
            const char *w = words[rnd() % 10];
            size_t l = strlen(w);

            l = l < n - i ? l : n - i;
            memcpy(p + i, w, l);
            i += l;
        }
        break;
    case RANDOM:
        for (i = 0; i < n; i++)
            p[i] = (uint8_t)rnd();
        break;
    case MIXED:
        while (i < n) {
            size_t len = 1 + rnd() % 300;

            len = len < n - i ? len : n - i;
            if (i > 64 && rnd() % 2) {
                size_t dist = 1 + rnd() % (i < 40000 ? i : 40000);

                for (size_t j = 0; j < len; j++)
                    p[i + j] = p[i + j - dist];
            } else {
                for (size_t j = 0; j < len; j++)
                    p[i + j] = (uint8_t)(rnd() % 16);
            }
            i += len;
        }
        break;
    case SPARSE:
        memset(p, 0, n);
        for (i = 0; i < n / 512; i++)
            p[rnd() % n] = (uint8_t)rnd();
        break;
    case NKINDS:
        break;
    }
}

/* --- buffers with a guard band --- */

#define GUARD 64

static uint8_t *gbuf(size_t n)
{
    uint8_t *p = malloc(n + GUARD);

    cr_assert(p);
    memset(p, 0xa5, n + GUARD);
    return p;
}

static void guard_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < GUARD; i++)
        cr_assert_eq(p[n + i], 0xa5, "write past dst (+%zu)", i);
}

/* Compress with QEMU's dst_len (cluster size - 1); the result, or a negative code. */
static long compress_cluster(unsigned type, const uint8_t *src, size_t cs, uint8_t **out)
{
    uint8_t *dst = gbuf(cs);
    long n = gcodec_compress(type, src, cs, dst, cs - 1);

    guard_ok(dst, cs - 1);
    *out = dst;
    return n;
}

/*
 * Decompress src into a fresh dst_len buffer with ours and with QEMU's
 * calls; both must agree, and on success produce the same bytes.  Returns
 * the verdict; *out (if given) keeps our output.
 */
static int both_decompress(unsigned type, const uint8_t *src, size_t src_len, size_t dst_len,
                           uint8_t **out)
{
    uint8_t *a = gbuf(dst_len), *b = gbuf(dst_len);
    int ra = gcodec_decompress(type, src, src_len, a, dst_len);
    int rb = qemu_decompress(&qc, type, src, src_len, b, dst_len);

    guard_ok(a, dst_len);
    cr_assert_eq(ra, rb, "%s: ours %d, QEMU's %d (src %zu, dst %zu)", type_names[type], ra, rb,
                 src_len, dst_len);
    if (ra == 0)
        cr_assert(memcmp(a, b, dst_len) == 0, "%s: same verdict, different bytes",
                  type_names[type]);
    free(b);
    if (out)
        *out = a;
    else
        free(a);
    return ra;
}

/* Append up to 511 bytes of junk, as a qcow2 read up to the sector's end brings. */
static size_t sector_tail(uint8_t *buf, size_t len)
{
    size_t end = (len + 511) & ~(size_t)511;

    for (size_t i = len; i < end; i++)
        buf[i] = (uint8_t)rnd();
    return end;
}

/* --- tests --- */

Test(codec, same_library_versions)
{
    cr_assert_str_eq(zlibVersion(), qc.zlib_ver());
    cr_assert_eq(ZSTD_versionNumber(), qc.zstd_version());
}

Test(codec, round_trip_every_cluster_size)
{
    for (unsigned t = 0; t < 2; t++) {
        for (size_t cs = 512; cs <= (2u << 20); cs *= 2) {
            for (int k = 0; k < NKINDS; k++) {
                uint8_t *src = malloc(cs), *c, *d;
                long n;

                fill(src, cs, (enum kind)k);
                n = compress_cluster(types[t], src, cs, &c);
                if (k == RANDOM) {
                    cr_assert_eq(n, -GCODEC_ENOSPC, "%s %zu: random data compressed", type_names[t],
                                 cs);
                } else if (k == ZEROS || k == TEXT || k == SPARSE) {
                    cr_assert_gt(n, 0, "%s %zu %s: %ld", type_names[t], cs, kind_names[k], n);
                }
                if (n > 0) {
                    uint8_t *in = malloc((size_t)n + 512);

                    memcpy(in, c, (size_t)n);
                    cr_assert_eq(both_decompress(types[t], in, sector_tail(in, (size_t)n), cs, &d),
                                 0, "%s %zu %s", type_names[t], cs, kind_names[k]);
                    cr_assert(memcmp(d, src, cs) == 0, "%s %zu %s: round trip differs",
                              type_names[t], cs, kind_names[k]);
                    free(d);
                    free(in);
                }
                free(c);
                free(src);
            }
        }
    }
}

/*
 * A long sequence of clusters through the kept contexts (kinds, sizes and
 * "does not fit" failures interleaved) gives QEMU's bytes from fresh
 * system contexts, call for call.
 */
Test(codec, compression_is_byte_identical_to_qemu)
{
    static const size_t sizes[] = {65536, 4096, 2u << 20, 512, 65536, 1u << 20, 16384, 65536};

    for (unsigned t = 0; t < 2; t++) {
        int fits = 0, nofit = 0;

        for (int i = 0; i < 60; i++) {
            size_t cs = sizes[i % 8];
            enum kind k = (enum kind)(rnd() % NKINDS);
            uint8_t *src = malloc(cs), *a = gbuf(cs), *b = gbuf(cs);
            long na, nb;

            fill(src, cs, k);
            na = gcodec_compress(types[t], src, cs, a, cs - 1);
            nb = qemu_compress(&qc, types[t], src, cs, b, cs - 1);
            guard_ok(a, cs - 1);
            cr_assert_eq(na, nb, "%s #%d (%zu, %s): ours %ld, QEMU's %ld", type_names[t], i, cs,
                         kind_names[k], na, nb);
            if (na > 0) {
                cr_assert(memcmp(a, b, (size_t)na) == 0, "%s #%d: different bytes", type_names[t],
                          i);
                fits++;
            } else {
                nofit++;
            }
            free(src);
            free(a);
            free(b);
        }
        cr_assert(fits > 10 && nofit > 3, "%s: %d fits, %d do not", type_names[t], fits, nofit);
    }
}

/* Smaller room than the compressed size: "does not fit" at every dst_len, as QEMU says. */
Test(codec, compression_that_does_not_fit)
{
    size_t cs = 65536;
    uint8_t *src = malloc(cs), *a = gbuf(cs), *b = gbuf(cs);

    fill(src, cs, MIXED);
    for (unsigned t = 0; t < 2; t++) {
        long full = gcodec_compress(types[t], src, cs, a, cs - 1);

        cr_assert_gt(full, 100);
        for (size_t room = 0; room <= (size_t)full + 1; room += room < 64 ? 1 : 97) {
            long na, nb;

            memset(a, 0xa5, cs + GUARD);
            na = gcodec_compress(types[t], src, cs, a, room);
            nb = qemu_compress(&qc, types[t], src, cs, b, room);
            guard_ok(a, room);
            cr_assert_eq(na, nb, "%s room %zu: ours %ld, QEMU's %ld", type_names[t], room, na, nb);
        }
        /* zlib needs a spare byte to say it finished (deflate.c's FLUSH_BLOCK) */
        cr_assert_eq(gcodec_compress(types[t], src, cs, a, (size_t)full + 1), full);
        cr_assert_eq(gcodec_compress(types[t], src, cs, a, (size_t)full - 1), -GCODEC_ENOSPC);
    }
    free(src);
    free(a);
    free(b);
}

/* A bomb: 64 MiB of zeros in a few KiB.  zlib fills dst and succeeds; zstd fails; both stop. */
Test(codec, bomb_only_fills_dst)
{
    size_t big = 64u << 20, cs = 65536;
    uint8_t *zeros = calloc(1, big), *bomb = malloc(1 << 20), *d;
    struct gcodec_mem m;
    z_stream s;
    size_t n;

    cr_assert(zeros && bomb);
    /* zlib: the system's deflate, raw, 4 KiB window. */
    memset(&s, 0, sizeof(s));
    cr_assert_eq(qc.deflate_init2(&s, 9, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                                  (int)sizeof(s)),
                 Z_OK);
    s.next_in = zeros;
    s.avail_in = (uInt)big;
    s.next_out = bomb;
    s.avail_out = 1 << 20;
    cr_assert_eq(qc.deflate_run(&s, Z_FINISH), Z_STREAM_END);
    n = (1u << 20) - s.avail_out;
    qc.deflate_end(&s);
    cr_assert_lt(n, 128u << 10);
    cr_assert_eq(both_decompress(GCODEC_ZLIB, bomb, n, cs, &d), 0);
    for (size_t i = 0; i < cs; i++)
        cr_assert_eq(d[i], 0);
    free(d);

    /* zstd: a frame that says 64 MiB, and one that does not say. */
    n = ZSTD_compress(bomb, 1 << 20, zeros, big, 3);
    cr_assert(!ZSTD_isError(n) && n < 64u << 10, "%zu", n);
    gcodec_release();
    cr_assert_eq(both_decompress(GCODEC_ZSTD, bomb, n, cs, NULL), -GCODEC_EIO);
    {
        ZSTD_CCtx *c = ZSTD_createCCtx();
        ZSTD_inBuffer in = {zeros, big, 0};
        ZSTD_outBuffer out = {bomb, 1 << 20, 0};

        cr_assert_eq(ZSTD_compressStream2(c, &out, &in, ZSTD_e_continue), 0);
        cr_assert_eq(ZSTD_compressStream2(c, &out, &in, ZSTD_e_end), 0);
        ZSTD_freeCCtx(c);
        cr_assert_eq(both_decompress(GCODEC_ZSTD, bomb, out.pos, cs, NULL), -GCODEC_EIO);
    }
    gcodec_mem_usage(&m);
    cr_assert_lt(m.peak, 512u << 10, "zstd allocated %zu bytes for a bomb", m.peak);
    free(zeros);
    free(bomb);
}

/* Every cut of a stream gets QEMU's verdict; a zstd cut always fails, a zlib one when output is
 * lost. */
Test(codec, truncated_streams_fail)
{
    size_t cs = 4096;
    uint8_t *src = malloc(cs), *c;

    fill(src, cs, MIXED);
    for (unsigned t = 0; t < 2; t++) {
        long n = compress_cluster(types[t], src, cs, &c);

        cr_assert_gt(n, 64);
        for (long cut = 0; cut < n; cut++) {
            int r = both_decompress(types[t], c, (size_t)cut, cs, NULL);

            if (types[t] == GCODEC_ZSTD || cut < n / 2)
                cr_assert_eq(r, -GCODEC_EIO, "%s cut at %ld of %ld", type_names[t], cut, n);
        }
        free(c);
    }
    free(src);
}

/* Flipped bytes: QEMU's verdict (and bytes, where a corruption still decodes). */
Test(codec, corrupted_streams)
{
    size_t cs = 65536;
    uint8_t *src = malloc(cs), *c, *bad = malloc(cs + 512);
    int failed[2] = {0, 0};

    fill(src, cs, MIXED);
    for (unsigned t = 0; t < 2; t++) {
        long n = compress_cluster(types[t], src, cs, &c);

        cr_assert_gt(n, 64);
        for (int i = 0; i < 600; i++) {
            memcpy(bad, c, (size_t)n);
            for (int j = 0; j <= i % 3; j++) {
                size_t at = i < 100 ? rnd() % 24 : rnd() % (size_t)n;

                bad[at] ^= (uint8_t)(1 + rnd() % 255);
            }
            if (both_decompress(types[t], bad, (size_t)n, cs, NULL) < 0)
                failed[t]++;
        }
        free(c);
    }
    /* Neither format has a checksum here: many corruptions still decode, to other bytes. */
    cr_assert(failed[0] > 100 && failed[1] > 100, "%d/%d failed", failed[0], failed[1]);

    /* Known-bad openings: deflate block type 3; a zstd frame with a wrong magic. */
    memcpy(bad, "\x07\x00\x00\x00", 4);
    cr_assert_eq(both_decompress(GCODEC_ZLIB, bad, 4, 512, NULL), -GCODEC_EIO);
    memcpy(bad, "\x28\xb5\x2f\xfe\x00\x00\x00\x00", 8);
    cr_assert_eq(both_decompress(GCODEC_ZSTD, bad, 8, 512, NULL), -GCODEC_EIO);
    free(bad);
    free(src);
}

/* What follows the stream that filled dst is ignored; what follows one that did not is read. */
Test(codec, trailing_data)
{
    size_t cs = 65536, half = cs / 2;
    uint8_t *src = malloc(cs), *buf = malloc(4 * cs), *c1, *c2, *d;
    long n1, n2;

    fill(src, cs, TEXT);
    for (unsigned t = 0; t < 2; t++) {
        long n = compress_cluster(types[t], src, cs, &c1);

        cr_assert_gt(n, 0);
        /* junk after a complete stream */
        memcpy(buf, c1, (size_t)n);
        for (size_t i = 0; i < 4096; i++)
            buf[n + i] = (uint8_t)rnd();
        cr_assert_eq(both_decompress(types[t], buf, (size_t)n + 4096, cs, &d), 0);
        cr_assert(memcmp(d, src, cs) == 0);
        free(d);
        /* zeros after it (the next sectors of a sparse file) */
        memset(buf + n, 0, 4096);
        cr_assert_eq(both_decompress(types[t], buf, (size_t)n + 4096, cs, NULL), 0);
        free(c1);

        /* a stream for the first half, then junk: the junk is read, and fails */
        n1 = gcodec_compress(types[t], src, half, buf, cs);
        cr_assert_gt(n1, 0);
        for (size_t i = 0; i < 4096; i++)
            buf[n1 + i] = (uint8_t)(rnd() | 1);
        cr_assert_eq(both_decompress(types[t], buf, (size_t)n1 + 4096, cs, NULL), -GCODEC_EIO);
    }

    /* zstd: two frames, and a skippable frame between them, make one cluster */
    n1 = gcodec_compress(GCODEC_ZSTD, src, half, buf, cs);
    c2 = buf + n1;
    n2 = gcodec_compress(GCODEC_ZSTD, src + half, half, c2, cs);
    cr_assert(n1 > 0 && n2 > 0);
    cr_assert_eq(both_decompress(GCODEC_ZSTD, buf, (size_t)(n1 + n2), cs, &d), 0);
    cr_assert(memcmp(d, src, cs) == 0);
    free(d);
    memmove(buf + n1 + 12, buf + n1, (size_t)n2);
    memcpy(buf + n1, "\x50\x2a\x4d\x18\x04\x00\x00\x00skip", 12);
    cr_assert_eq(both_decompress(GCODEC_ZSTD, buf, (size_t)(n1 + 12 + n2), cs, &d), 0);
    cr_assert(memcmp(d, src, cs) == 0);
    free(d);
    free(buf);
    free(src);
}

/* A stream shorter than dst fails; a longer one fills it with zlib and fails with zstd. */
Test(codec, output_length_must_match)
{
    size_t cs = 65536;
    uint8_t *src = malloc(cs), *c, *d;

    fill(src, cs, MIXED);
    for (unsigned t = 0; t < 2; t++) {
        long n = compress_cluster(types[t], src, cs, &c);

        cr_assert_gt(n, 0);
        cr_assert_eq(both_decompress(types[t], c, (size_t)n, 2 * cs, NULL), -GCODEC_EIO);
        cr_assert_eq(both_decompress(types[t], c, (size_t)n, cs + 1, NULL), -GCODEC_EIO);
        if (types[t] == GCODEC_ZLIB) {
            cr_assert_eq(both_decompress(types[t], c, (size_t)n, cs - 1, &d), 0);
            cr_assert(memcmp(d, src, cs - 1) == 0);
            free(d);
            cr_assert_eq(both_decompress(types[t], c, (size_t)n, cs / 2, NULL), 0);
        } else {
            cr_assert_eq(both_decompress(types[t], c, (size_t)n, cs - 1, NULL), -GCODEC_EIO);
            cr_assert_eq(both_decompress(types[t], c, (size_t)n, cs / 2, NULL), -GCODEC_EIO);
        }
        both_decompress(types[t], c, (size_t)n, 0, NULL);
        free(c);
    }
    free(src);
}

/* Raw deflate from the system's zlib with window and dictionary as given. */
static size_t sys_deflate(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, int wbits,
                          const uint8_t *dict, size_t dict_len)
{
    int (*set_dict)(z_stream *, const Bytef *, uInt);
    void *libz = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    z_stream s;

    cr_assert(libz);
    *(void **)&set_dict = dlsym(libz, "deflateSetDictionary");
    cr_assert(set_dict);
    memset(&s, 0, sizeof(s));
    cr_assert_eq(qc.deflate_init2(&s, 6, Z_DEFLATED, wbits, 9, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                                  (int)sizeof(s)),
                 Z_OK);
    if (dict)
        cr_assert_eq(set_dict(&s, dict, (uInt)dict_len), Z_OK);
    s.next_in = src;
    s.avail_in = (uInt)n;
    s.next_out = dst;
    s.avail_out = (uInt)cap;
    cr_assert_eq(qc.deflate_run(&s, Z_FINISH), Z_STREAM_END);
    qc.deflate_end(&s);
    return cap - s.avail_out;
}

/*
 * windowBits -12 bounds the history kept between inflate calls; in QEMU's
 * single call all of dst is history, so a stream made with a 32 KiB window
 * decodes.  A distance reaching before the cluster's start does not.
 */
Test(codec, zlib_distances)
{
    size_t cs = 65536;
    uint8_t *src = malloc(cs), *c = malloc(2 * cs), *d;
    size_t n;

    fill(src, cs, MIXED);
    n = sys_deflate(src, cs, c, 2 * cs, -15, NULL, 0);
    cr_assert_eq(both_decompress(GCODEC_ZLIB, c, n, cs, &d), 0);
    cr_assert(memcmp(d, src, cs) == 0);
    free(d);

    /* a preset dictionary: its matches point before the output */
    n = sys_deflate(src, cs, c, 2 * cs, -12, src, 4096);
    cr_assert_eq(both_decompress(GCODEC_ZLIB, c, n, cs, NULL), -GCODEC_EIO);
    free(c);
    free(src);
}

/*
 * A frame that asks for a 128 MiB window and does not state its size:
 * QEMU's buffered stream allocates the window and decodes it; ours decodes
 * it into dst without the window.
 */
Test(codec, zstd_large_window)
{
    size_t cs = 65536;
    uint8_t *src = malloc(cs), *c = malloc(2 * cs), *d;
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_inBuffer in = {src, cs, 0};
    ZSTD_outBuffer out = {c, 2 * cs, 0};
    struct gcodec_mem m;

    fill(src, cs, MIXED);
    cr_assert(!ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 27)));
    cr_assert_eq(ZSTD_compressStream2(cc, &out, &in, ZSTD_e_continue), 0);
    cr_assert_eq(ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end), 0);
    ZSTD_freeCCtx(cc);
    cr_assert_eq(ZSTD_getFrameContentSize(c, out.pos), ZSTD_CONTENTSIZE_UNKNOWN);

    gcodec_release();
    cr_assert_eq(both_decompress(GCODEC_ZSTD, c, out.pos, cs, &d), 0);
    cr_assert(memcmp(d, src, cs) == 0);
    free(d);
    gcodec_mem_usage(&m);
    cr_log_info("zstd, a frame without its size: decompress %zu bytes", m.peak);
    cr_assert_lt(m.peak, 512u << 10, "%zu bytes", m.peak);
    free(c);
    free(src);
}

/* Random mutations of valid streams: cuts, splices, junk, bit flips. */
Test(codec, differential)
{
    static const size_t sizes[] = {512, 4096, 65536};
    uint8_t *src = malloc(65536), *c, *in = malloc(4 * 65536);

    for (int i = 0; i < 3000; i++) {
        unsigned t = (unsigned)(rnd() % 2);
        size_t cs = sizes[rnd() % 3], len;
        long n;

        fill(src, cs, (enum kind)(rnd() % NKINDS));
        n = compress_cluster(types[t], src, cs, &c);
        if (n <= 0) {
            free(c);
            continue;
        }
        len = (size_t)n;
        memcpy(in, c, len);
        switch (rnd() % 4) {
        case 0:
            len = rnd() % (len + 1);
            break;
        case 1:
            for (size_t j = 0; j < 64; j++)
                in[len + j] = (uint8_t)rnd();
            len += rnd() % 64;
            break;
        case 2:
            memcpy(in + len, c, len);
            len += rnd() % (len + 1);
            break;
        default:
            for (int j = 0; j < 1 + (int)(rnd() % 4); j++)
                in[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        }
        both_decompress(types[t], in, len, rnd() % 8 ? cs : cs / 2 + rnd() % cs, NULL);
        free(c);
    }
    free(in);
    free(src);
}

/* Heap per context, as the header documents it. */
Test(codec, memory_per_context)
{
    static const size_t sizes[] = {65536, 2u << 20};
    uint8_t *src = malloc(2u << 20), *c = gbuf(2u << 20), *d = gbuf(2u << 20);
    struct gcodec_mem m;

    for (int s = 0; s < 2; s++) {
        size_t cs = sizes[s];

        fill(src, cs, MIXED);
        for (unsigned t = 0; t < 2; t++) {
            size_t cpeak, dpeak;
            long n;

            gcodec_release();
            n = gcodec_compress(types[t], src, cs, c, cs - 1);
            cr_assert_gt(n, 0);
            gcodec_mem_usage(&m);
            cpeak = m.peak;
            gcodec_release();
            cr_assert_eq(gcodec_decompress(types[t], c, (size_t)n, d, cs), 0);
            /* a stream split over calls: the input buffer zstd then needs */
            cr_assert_eq(gcodec_decompress(types[t], c, (size_t)n, d, cs / 2),
                         types[t] == GCODEC_ZLIB ? 0 : -GCODEC_EIO);
            gcodec_mem_usage(&m);
            dpeak = m.peak;
            cr_log_info("%s, %zu KiB clusters: compress %zu bytes, decompress %zu bytes",
                        type_names[t], cs >> 10, cpeak, dpeak);
            cr_assert_lt(dpeak, 256u << 10);
            cr_assert_lt(cpeak, types[t] == GCODEC_ZLIB ? 300u << 10 : 8u << 20);
        }
    }
    gcodec_release();
    gcodec_mem_usage(&m);
    cr_assert_eq(m.live, 0);
    free(src);
    free(c);
    free(d);
}

Test(codec, bad_arguments)
{
    uint8_t buf[64] = {0};

    cr_assert_eq(gcodec_decompress(2, buf, sizeof(buf), buf, sizeof(buf)), -GCODEC_EINVAL);
    cr_assert_eq(gcodec_compress(7, buf, sizeof(buf), buf, sizeof(buf)), -GCODEC_EINVAL);
    cr_assert_eq(gcodec_decompress(GCODEC_ZSTD, buf, (size_t)1 << 33, buf, 64), -GCODEC_EINVAL);
    cr_assert_eq(gcodec_compress(GCODEC_ZLIB, buf, 64, buf, (size_t)1 << 33), -GCODEC_EINVAL);
    /* nothing to write into: QEMU's verdicts */
    for (unsigned t = 0; t < 2; t++) {
        uint8_t out[1];

        cr_assert_eq(gcodec_compress(types[t], buf, sizeof(buf), out, 0),
                     qemu_compress(&qc, types[t], buf, sizeof(buf), out, 0));
    }
}
