/*
 * Fuzz target: formats/qed over one image held in memory: bdrv_qed_do_open()'s
 * header checks, then for an image that opens the lookup of every guest
 * range through its L1 and L2 tables (qed_find_l2, what block status and
 * reads use) and the consistency check (qed_check) with and without
 * repair, writes going to a copy of the input.  AFL++ persistent mode by
 * default; with -DFUZZ_STANDALONE a plain program that runs every file
 * named on the command line (or stdin) once and prints the result.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_read.h"
#include "qed/qed.h"

#define MAX_INPUT (16u << 20)

struct mem {
    uint8_t *p;
    size_t len;
    const struct qed_image *img;
};

static int read_table(void *opaque, uint64_t off, uint64_t *t)
{
    struct mem *m = opaque;
    uint64_t n = qed_table_bytes(m->img), i;
    uint8_t *b = (uint8_t *)t;

    fuzz_read(m->p, m->len, off, t, (size_t)n);
    for (i = 0; i < n / 8; i++)
        t[i] = qed_le64(b + i * 8);
    return 0;
}

static int write_table(void *opaque, uint64_t off, const uint64_t *t, uint32_t index, uint32_t n)
{
    struct mem *m = opaque;

    if (index + n > m->img->table_nelems)
        abort(); /* a write outside the table */
    for (uint32_t i = index; i < index + n; i++) {
        uint64_t o = off + (uint64_t)i * 8;

        if (o + 8 <= m->len)
            qed_put_le64(m->p + o, t[i]);
    }
    return 0;
}

static int run(const uint8_t *data, size_t len)
{
    static struct qed_image img;
    static uint8_t copy[MAX_INPUT];
    uint8_t hdr[QED_HEADER_SIZE];
    struct mem m = {copy, len, &img};
    uint64_t *l1, *l2, off, total, n, offset;
    uint32_t *used;
    int ret;

    if (len > MAX_INPUT)
        return 0;
    memcpy(copy, data, len);
    fuzz_read(data, len, 0, hdr, sizeof(hdr));
    ret = qed_open_header(hdr, len, &img);
#ifdef FUZZ_STANDALONE
    printf("open: %d\n", ret);
#endif
    if (ret < 0)
        return 0;
    /* The tables lie inside the file: the input bounds them. */
    if (qed_table_bytes(&img) > len)
        abort();
    l1 = malloc((size_t)qed_table_bytes(&img));
    l2 = malloc((size_t)qed_table_bytes(&img));
    if (!l1 || !l2)
        abort();
    read_table(&m, img.l1_table_offset, l1);
    total = img.image_size;
    for (off = 0; off < total; off += n) {
        uint64_t e = l1[qed_l1_index(&img, off)];

        n = qed_l2_boundary(&img, off, total - off);
        if (n == 0 || n > total - off)
            abort();
        if (e == 0 || !qed_check_table_offset(&img, e))
            continue;
        read_table(&m, e, l2);
        for (uint64_t done = 0; done < n;) {
            uint64_t run_len = n - done;

            ret = qed_find_l2(&img, l2, off + done, &run_len, &offset);
            if (ret < 0)
                break;
            if (run_len == 0 || run_len > n - done)
                abort();
            if (ret == QED_CLUSTER_FOUND && !qed_check_cluster_offset(&img, offset))
                abort();
            done += run_len;
        }
    }
    for (int fix = 0; fix <= 1; fix++) {
        const struct qed_check_io io = {read_table, write_table, &m};
        struct qed_check_result r;
        uint64_t nc = qed_check_nclusters(&img);

        memset(&r, 0, sizeof(r));
        used = calloc((size_t)((nc + 31) / 32) + 1, 4);
        if (!used)
            abort();
        read_table(&m, img.l1_table_offset, l1);
        ret = qed_check(&img, l1, l2, used, fix, &io, &r);
        if (r.leaks > nc)
            abort();
#ifdef FUZZ_STANDALONE
        printf("check%s: %d corruptions %llu leaks %llu fixed %llu\n", fix ? " -r" : "", ret,
               (unsigned long long)r.corruptions, (unsigned long long)r.leaks,
               (unsigned long long)r.corruptions_fixed);
#endif
        free(used);
    }
    free(l1);
    free(l2);
    return 0;
}

#include "fuzz_main.h"
