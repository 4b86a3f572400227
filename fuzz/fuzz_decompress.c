/*
 * Fuzz target: gcodec_decompress (guest/codec.c) over one compressed
 * cluster, differentially: its verdict, and on success its bytes, must be
 * those of qemu-img 7.2's calls on the system's libz and libzstd
 * (tests/unit/qemu_codec.h).  The harness aborts (a finding) when they
 * differ, when a byte past dst changed, or when the contexts keep more
 * than 1 MiB (a decoder must never size a buffer from the stream).
 *
 * Input: byte 0 picks the codec (bit 0: 0 zlib, 1 zstd) and the cluster
 * size (bits 1-4: cluster_bits - 9, taken modulo 13: 512 B to 2 MiB); the
 * rest is the compressed cluster as qcow2 would read it.  Seeds are real
 * clusters that qemu-img wrote (scripts/make-codec-seeds.sh).
 *
 * One known difference is not a finding: Debian's libzstd also decodes
 * the legacy v0.5-v0.7 frame formats, which instar does not build (no
 * qcow2 writer produces them); an input holding one of their magic
 * numbers may decode there and fail here.
 *
 * AFL++ persistent mode by default; with -DFUZZ_STANDALONE it runs every
 * file named on the command line once and prints each verdict.
 */
#define _GNU_SOURCE /* dladdr(), in qemu_codec.h */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "qemu_codec.h"

#undef MAX_INPUT /* POSIX's, from <limits.h> */
#define MAX_INPUT (4u << 20)
#define GUARD     64
#define MEM_BOUND (1u << 20)

static struct qemu_codec qc;
static int loaded;

/* A zstd legacy frame magic (0xFD2FB525..0xFD2FB527, little-endian) anywhere in p. */
static int has_legacy_magic(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++) {
        if (p[i] >= 0x25 && p[i] <= 0x27 && p[i + 1] == 0xb5 && p[i + 2] == 0x2f &&
            p[i + 3] == 0xfd)
            return 1;
    }
    return 0;
}

static int run(const uint8_t *data, size_t len)
{
    static uint8_t ours[(2u << 20) + GUARD], theirs[2u << 20];
    struct gcodec_mem m;
    unsigned type;
    size_t cs;
    int a, b;

    if (!loaded) {
        if (qemu_codec_load(&qc) < 0)
            abort();
        loaded = 1;
    }
    if (len < 1)
        return 0;
    type = data[0] & 1;
    cs = (size_t)512 << ((data[0] >> 1) % 13);
    data++;
    len--;

    memset(ours + cs, 0xa5, GUARD);
    a = gcodec_decompress(type, data, len, ours, cs);
    b = qemu_decompress(&qc, type, data, len, theirs, cs);
    for (size_t i = 0; i < GUARD; i++) {
        if (ours[cs + i] != 0xa5)
            abort(); /* wrote past dst */
    }
    gcodec_mem_usage(&m);
    if (m.live > MEM_BOUND)
        abort();
#ifdef FUZZ_STANDALONE
    printf("%s %zu: ours %d, qemu %d\n", type ? "zstd" : "zlib", cs, a, b);
#endif
    if (a != b) {
        if (type == GCODEC_ZSTD && a == -GCODEC_EIO && b == 0 && has_legacy_magic(data, len))
            return 0;
        abort();
    }
    if (a == 0 && memcmp(ours, theirs, cs) != 0)
        abort();
    return 0;
}

#include "fuzz_main.h"
