/*
 * Fuzz target: formats/dmg over one image held in memory: the koly
 * trailer's checks, the resource fork or plist (base64 decoded in place)
 * with its mish blocks, then, for an image that opens, the chunk each of
 * up to 4096 sectors lands in (dmg_search(): the chunk returned must hold
 * the sector), and up to 32 zlib chunks decoded with the guest's zlib.
 * AFL++ persistent mode by default; with -DFUZZ_STANDALONE it is a plain
 * program that runs every file named on the command line (or stdin) once
 * and prints the result.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dmg/dmg.h"
#include "fuzz_read.h"

#define MAX_INPUT  (16u << 20)
#define CHUNKS_MAX (1u << 16)
#define OUT_LIMIT  (1u << 20) /* zlib chunks decoded only up to this size */

struct mem {
    const uint8_t *p;
    size_t len;
};

static int mem_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    const struct mem *m = opaque;

    return fuzz_read(m->p, m->len, off, buf, len);
}

static struct dmg_chunk chunks[CHUNKS_MAX];

static int keep(void *opaque, uint32_t index, const struct dmg_chunk *c)
{
    (void)opaque;
    if (index >= CHUNKS_MAX)
        return -DMG_ERR_NOMEM;
    if (c->type != DMG_UDZE && c->type != DMG_UDIG && c->sectorcount > DMG_SECTORCOUNTS_MAX)
        abort();
    if (c->length > DMG_LENGTHS_MAX)
        abort();
    chunks[index] = *c;
    return 0;
}

static int run(const uint8_t *data, size_t len)
{
    static uint8_t xml[DMG_PLIST_MAX + 1], out[OUT_LIMIT];
    static struct dmg_image img;
    struct mem m = {data, len};
    struct dmg_reader r = {mem_pread, &m};
    uint64_t s, step;
    uint32_t cur, decoded = 0;
    int ret;

    ret = dmg_open_trailer(&r, len, &img);
    if (ret == 0 && img.rsrc_length) {
        ret = dmg_read_rsrc(&r, &img, keep, NULL);
    } else if (ret == 0) {
        if (img.plist_length > DMG_PLIST_MAX)
            abort();
        fuzz_read(data, len, img.plist_offset, xml, (size_t)img.plist_length);
        ret = dmg_read_plist(xml, (size_t)img.plist_length, &img, keep, NULL);
    }
    if (ret < 0) {
#ifdef FUZZ_STANDALONE
        printf("error %d\n", -ret);
#endif
        return 0;
    }
#ifdef FUZZ_STANDALONE
    printf("dmg, %u chunks, %llu sectors, warnings %x\n", img.n_chunks,
           (unsigned long long)img.total_sectors, img.warn_order);
#endif
    if (img.total_sectors >> 63)
        abort();
    cur = img.n_chunks;
    step = img.total_sectors / 4096 + 1;
    for (s = 0; s < img.total_sectors; s += step) {
        uint32_t i = dmg_search(chunks, img.n_chunks, cur, s);
        const struct dmg_chunk *c;

        if (i > img.n_chunks)
            abort();
        if (i == img.n_chunks)
            continue;
        c = &chunks[i];
        if (c->sector > s || c->sector + c->sectorcount <= s)
            abort(); /* a chunk that does not hold the sector */
        cur = i;
        if (c->type == DMG_UDZO && decoded < 32 && c->sectorcount * 512 <= OUT_LIMIT) {
            decoded++;
            ret = gcodec_inflate_read(mem_pread, &m, c->offset, c->length, out,
                                      (size_t)c->sectorcount * 512);
            if (ret != 0 && ret != -GCODEC_EIO)
                abort();
        }
    }
    return 0;
}

#include "fuzz_main.h"
