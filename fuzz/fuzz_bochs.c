/*
 * Fuzz target: formats/bochs over one image held in memory: bochs_open()'s
 * checks and, for an image that opens, the catalog and the location of
 * sectors spread over the whole disk, whose extent must lie inside the
 * catalog the open accepted.  AFL++ persistent mode by default; with
 * -DFUZZ_STANDALONE it is a plain program that runs every file named on
 * the command line (or stdin) once and prints the resulting message or the
 * virtual size.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bochs/bochs.h"
#include "fuzz_read.h"

#define MAX_INPUT (16u << 20)
#define STEPS     4096u /* sectors located per input */

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
    static uint32_t cat[BOCHS_CATALOG_MAX];
    static struct bochs_image img;
    struct mem m = {data, len};
    struct bochs_reader r = {mem_pread, &m};
    uint64_t step, s, bitmap, off;
    unsigned bit;
    int ret;

    ret = bochs_open(&r, &img);
    if (ret < 0) {
#ifdef FUZZ_STANDALONE
        printf("error %d (%u)\n", -ret, img.err_arg);
#endif
        return 0;
    }
#ifdef FUZZ_STANDALONE
    printf("bochs, %llu bytes\n", (unsigned long long)img.total_sectors * 512);
#endif
    if (img.catalog_size > BOCHS_CATALOG_MAX || img.extent_size < 512 ||
        img.extent_size > BOCHS_EXTENT_MAX || (img.extent_size & (img.extent_size - 1)))
        abort();
    if (bochs_read_catalog(&r, &img, cat) < 0)
        abort();
    if (img.total_sectors == 0)
        return 0;
    step = img.total_sectors / STEPS + 1;
    for (s = 0; s < img.total_sectors; s += step) {
        /* The catalog check promises the extent index is inside the catalog. */
        if (s * 512 / img.extent_size >= img.catalog_size)
            abort();
        if (bochs_locate(&img, cat, s, &bitmap, &bit, &off) && bit > 7)
            abort();
    }
    return 0;
}

#include "fuzz_main.h"
