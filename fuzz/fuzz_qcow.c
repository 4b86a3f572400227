/*
 * Fuzz target: formats/qcow over one image held in memory: qcow_open()'s
 * header checks (with and without the key check), then for an image that
 * opens the lookup of every cluster through the L1 table (the part inside
 * the input; the rest reads as zeros) and its L2 tables, as block status
 * and reads do, with compressed clusters' extents checked against their
 * mask.  AFL++ persistent mode by default; with -DFUZZ_STANDALONE a plain
 * program that runs every file named on the command line (or stdin) once
 * and prints the result.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_read.h"
#include "qcow/qcow.h"

#define MAX_INPUT (16u << 20)
/* Clusters the walk visits at most per input (a 2^60-byte image has too many). */
#define MAX_STEPS (1u << 16)

static int run(const uint8_t *data, size_t len)
{
    static struct qcow_image img;
    static uint64_t l2[1u << 13];
    uint8_t hdr[QCOW_HEADER_SIZE], e8[8];
    uint64_t held, off, total, cached = 0;
    uint32_t steps = 0;
    int ret;

    fuzz_read(data, len, 0, hdr, sizeof(hdr));
    (void)qcow_open_header(hdr, true, &img);
    ret = qcow_open_header(hdr, false, &img);
    if (ret == 0)
        ret = qcow_check_backing(&img);
#ifdef FUZZ_STANDALONE
    printf("open: %d\n", ret);
#endif
    if (ret < 0)
        return 0;
    if (img.l2_size > sizeof(l2) / 8 || img.cluster_size < 512 || img.cluster_size > 65536)
        abort();
    held = qcow_l1_in_file(&img, len);
    if (held > img.l1_size || (held && img.l1_table_offset + (held - 1) * 8 >= len))
        abort();
    total = img.size / 512 * 512;
    for (off = 0; off < total && steps < MAX_STEPS; off += img.cluster_size, steps++) {
        uint64_t i1 = qcow_l1_index(&img, off), l2off, entry;

        if (i1 >= img.l1_size)
            abort(); /* an offset the L1 table does not cover */
        if (i1 >= held)
            continue;
        fuzz_read(data, len, img.l1_table_offset + i1 * 8, e8, 8);
        l2off = qcow_be64(e8);
        if (!l2off)
            continue;
        if (l2off != cached) {
            uint8_t *p = (uint8_t *)l2;

            if (!qcow_io_ok(l2off, (uint64_t)img.l2_size * 8))
                continue;
            fuzz_read(data, len, l2off, l2, (size_t)img.l2_size * 8);
            for (uint32_t k = 0; k < img.l2_size; k++)
                l2[k] = qcow_be64(p + (size_t)k * 8);
            cached = l2off;
        }
        entry = l2[qcow_l2_index(&img, off)];
        if (entry & QCOW_OFLAG_COMPRESSED) {
            uint64_t coff;
            uint32_t csize;

            qcow_compressed(&img, entry, &coff, &csize);
            if (csize >= img.cluster_size || coff > img.cluster_offset_mask)
                abort();
        }
    }
    return 0;
}

#include "fuzz_main.h"
