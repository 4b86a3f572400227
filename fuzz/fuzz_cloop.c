/*
 * Fuzz target: formats/cloop over one image held in memory: cloop_open()'s
 * checks (block size, block count, the offsets table as a stream) and, for
 * an image that opens, up to 64 of its blocks decoded with the guest's
 * zlib (gcodec_inflate_read(): exactly one block of output or a failure,
 * however the stream inflates).  AFL++ persistent mode by default; with
 * -DFUZZ_STANDALONE it is a plain program that runs every file named on
 * the command line (or stdin) once and prints the result.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloop/cloop.h"
#include "codec.h"
#include "fuzz_read.h"

#define MAX_INPUT   (16u << 20)
#define BLOCK_LIMIT (1u << 20) /* blocks decoded only up to this size */

struct mem {
    const uint8_t *p;
    size_t len;
};

static int mem_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    const struct mem *m = opaque;

    return fuzz_read(m->p, m->len, off, buf, len);
}

static int run(const uint8_t *data, size_t len)
{
    static uint8_t scratch[4096], block[BLOCK_LIMIT + 16];
    static struct cloop_image img;
    struct mem m = {data, len};
    struct cloop_reader r = {mem_pread, &m};
    uint64_t off;
    uint32_t i, n, clen;
    int ret;

    ret = cloop_open(&r, &img, scratch, sizeof(scratch));
    if (ret < 0) {
#ifdef FUZZ_STANDALONE
        printf("error %d (%u)\n", -ret, img.err_arg);
#endif
        return 0;
    }
#ifdef FUZZ_STANDALONE
    printf("cloop, %u blocks of %u, %llu bytes\n", img.n_blocks, img.block_size,
           (unsigned long long)img.total_sectors * 512);
#endif
    if (img.block_size == 0 || img.block_size % 512 || img.block_size > CLOOP_MAX_BLOCK_SIZE ||
        img.total_sectors > UINT32_MAX)
        abort();
    if (img.block_size > BLOCK_LIMIT)
        return 0;
    n = img.n_blocks < 64 ? img.n_blocks : 64;
    for (i = 0; i < n; i++) {
        if (cloop_block(&r, &img, i, &off, &clen) < 0)
            abort(); /* the table the open accepted holds */
        if (clen > img.max_compressed && clen > 1)
            abort();
        if (clen > len)
            continue; /* zeros past the end: no stream */
        /* A canary past the block: decoding must not touch it. */
        memset(block + img.block_size, 0xa5, 16);
        ret = gcodec_inflate_read(mem_pread, &m, off, clen, block, img.block_size);
        if (ret != 0 && ret != -GCODEC_EIO)
            abort();
        for (unsigned k = 0; k < 16; k++)
            if (block[img.block_size + k] != 0xa5)
                abort();
#ifdef FUZZ_STANDALONE
        printf("block %u: %s\n", i, ret ? "EIO" : "ok");
#endif
    }
    return 0;
}

#include "fuzz_main.h"
