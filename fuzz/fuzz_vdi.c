/*
 * Fuzz target: formats/vdi over one image held in memory: vdi_open()'s
 * header checks, the block map as the driver holds it (the sectors that
 * lie in the file), vdi_co_check()'s walk, and for an image that opens
 * the map of every block (what block status, reads and writes use),
 * whose answers must stay inside a block and past the data offset.
 * AFL++ persistent mode by default; with -DFUZZ_STANDALONE it is a plain
 * program that runs every file named on the command line (or stdin) once
 * and prints the resulting message or the virtual size.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_read.h"
#include "vdi/vdi.h"

#define MAX_INPUT (16u << 20)
#define BMAP_MAX  (1u << 22) /* entries the harness holds (16 MiB): more than the input has */
#define MAP_STEPS 65536u     /* blocks mapped per input */

static uint64_t reports;

static void count(void *opaque, int32_t code, uint64_t a0, uint64_t a1)
{
    (void)opaque;
    if (code != VDI_MSG_ALSO_USED && code != VDI_MSG_TOO_LARGE && code != VDI_MSG_MISMATCH)
        abort();
    if (code == VDI_MSG_ALSO_USED && a0 != a1)
        abort();
    reports++;
}

static int run(const uint8_t *data, size_t len)
{
    static uint32_t bmap[BMAP_MAX];
    static uint64_t used[(BMAP_MAX + 63) / 64];
    static struct vdi_image img;
    uint8_t h[VDI_HEADER_SIZE], out[VDI_HEADER_SIZE];
    uint64_t off, host, run_len, corruptions;
    uint32_t steps = 0;
    int ret;

    if (fuzz_read(data, len, 0, h, sizeof(h)) < 0)
        return 0;
    ret = vdi_open_header(h, len, &img);
    if (ret < 0) {
#ifdef FUZZ_STANDALONE
        printf("error %d (%llu, %llu)\n", -ret, (unsigned long long)img.err_args[0],
               (unsigned long long)img.err_args[1]);
#endif
        return 0;
    }
    /* What the open promised. */
    if (img.disk_size % 512 || img.disk_size > (uint64_t)img.blocks_in_image * VDI_BLOCK_SIZE ||
        img.disk_size > VDI_DISK_SIZE_MAX || img.bmap_held % 128 ||
        img.bmap_held > img.bmap_sectors * 128 || img.offset_bmap % 512 || img.offset_data % 512)
        abort();
    /* Held sectors lie in the file: at most its length in entries, rounded to a sector. */
    if ((uint64_t)img.bmap_held * 4 > len + 512)
        abort();
    if (img.bmap_held > BMAP_MAX || img.blocks_in_image > BMAP_MAX)
        return 0;
    if (fuzz_read(data, len, img.offset_bmap, bmap, (size_t)img.bmap_held * 4) < 0)
        return 0;
    vdi_bmap_load(bmap, img.bmap_held);
#ifdef FUZZ_STANDALONE
    printf("%llu bytes, %u blocks\n", (unsigned long long)img.disk_size, img.blocks_in_image);
#endif
    reports = 0;
    corruptions = vdi_check(&img, bmap, used, count, NULL);
    if (corruptions != reports)
        abort();
    for (off = 0; off < img.disk_size && steps < MAP_STEPS; off += run_len, steps++) {
        bool mapped = vdi_map(&img, bmap, off, &host, &run_len);

        if (run_len == 0 || run_len > VDI_BLOCK_SIZE || (off + run_len) % VDI_BLOCK_SIZE)
            abort();
        if (mapped && (host < img.offset_data || host % 512))
            abort();
    }
    vdi_header_store(&img, out);
    if (memcmp(out, h, VDI_OFF_DISK_SIZE) || memcmp(out + 376, h + 376, 12) ||
        memcmp(out + 392, h + 392, 120))
        abort();
    return 0;
}

#include "fuzz_main.h"
