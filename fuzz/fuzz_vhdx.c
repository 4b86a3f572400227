/*
 * Fuzz target: formats/vhdx over one image held in memory: vhdx_open()'s
 * checks (file identifier, headers, the log search, region table,
 * metadata, BAT size and entries), the check's walk over the BAT, the map
 * of every block, and for an image with an active log its replay into a
 * copy of the input (writes past a limit fail, as a full disk would),
 * then the open again.  AFL++ persistent mode by default; with
 * -DFUZZ_STANDALONE it is a plain program that runs every file named on
 * the command line (or stdin) once and prints the resulting message or
 * the virtual size.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_read.h"
#include "vhdx/vhdx.h"

#define MAX_INPUT (16u << 20)
#define COPY_MAX  (24u << 20) /* the replay's file may grow to this */
#define BAT_MAX   (1u << 21)  /* entries the harness holds (16 MiB) */

struct mem {
    uint8_t *p;
    size_t len, cap;
};

/* Reads past the end of the input return zeros, as QEMU's do. */
static int mem_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    const struct mem *m = opaque;

    return fuzz_read(m->p, m->len, off, buf, len);
}

static int mem_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    struct mem *m = opaque;

    if (off > m->cap || len > m->cap - off)
        return -1;
    if (off > m->len)
        memset(m->p + m->len, 0, off - m->len);
    memcpy(m->p + off, buf, len);
    if (off + len > m->len)
        m->len = off + len;
    return 0;
}

static int mem_truncate(void *opaque, uint64_t size)
{
    struct mem *m = opaque;

    if (size > m->cap)
        return -1;
    if (size > m->len)
        memset(m->p + m->len, 0, size - m->len);
    m->len = size;
    return 0;
}

static void count_line(void *opaque, int code, const uint64_t args[4])
{
    (void)args;
    if (code < VHDX_MSG_MIN || code > VHDX_MSG_MAX)
        abort();
    (*(int64_t *)opaque)++;
}

#ifdef FUZZ_STANDALONE
static void print_msg(int code)
{
    switch (code) {
#define T(name, c, msg)                                                                            \
    case c:                                                                                        \
        printf("%s\n", msg);                                                                       \
        return;
        VHDX_ERRORS(T)
#undef T
    }
    printf("error %d\n", code);
}
#endif

/* Open the image in m; for an image that opens, walk it.  Returns the open's result. */
static int open_walk(struct mem *m, struct vhdx_image *img, bool replay)
{
    static uint64_t bat[BAT_MAX];
    static uint8_t scratch[65536];
    static const uint8_t guids[3][16] = {{1}, {2}, {3}};
    struct vhdx_reader r = {mem_pread, m};
    struct vhdx_writer w = {mem_pwrite, mem_truncate, m, NULL};
    uint64_t off, host, run_len, total;
    int64_t errs = 0;
    uint64_t pay = 0;
    int ret;

    ret = vhdx_open_headers(&r, img, scratch);
    if (ret == 0 && img->log.valid) {
        if (!replay)
            return -VHDX_ERR_LOG_READONLY;
        ret = vhdx_log_replay(&r, &w, img, m->len, guids, scratch);
        if (ret == 0) {
            /* The replay empties the log: the open finds none now. */
            ret = vhdx_open_headers(&r, img, scratch);
            if (ret == 0 && img->log.valid)
                abort();
        }
    }
    if (ret == 0)
        ret = vhdx_open_regions(&r, img, scratch);
    if (ret == 0 && img->bat_entries > BAT_MAX)
        return 0; /* larger than the input allows anyway */
    if (ret == 0 && vhdx_bat_used(img) > img->bat_entries)
        abort();
    if (ret == 0)
        ret = vhdx_read_bat(&r, img, 0, img->bat_entries, bat);
    if (ret < 0)
        return ret;
    vhdx_check_bat(img, bat, 0, img->bat_entries, &pay, m->len, count_line, &errs, &errs);
    if (errs < 0)
        abort();
    ret = vhdx_check_bat(img, bat, 0, img->bat_entries, &pay, m->len, NULL, NULL, NULL);
    if ((ret == 0) != (errs == 0))
        abort(); /* the open fails exactly when the check finds a problem */
    if (ret < 0)
        return ret;
    total = img->total_sectors * 512;
    /* One map per block; reads of a present block go past the file as zeros. */
    for (off = 0; off < total; off += run_len) {
        unsigned state = vhdx_map(img, bat, off, &host, &run_len);

        if (state > 7 || run_len == 0 || run_len > img->block_size)
            abort();
        if (off / img->block_size > BAT_MAX)
            break;
    }
    return 0;
}

static int run(const uint8_t *data, size_t len)
{
    static uint8_t copy[COPY_MAX];
    static struct vhdx_image img;
    struct mem m = {copy, len, COPY_MAX};
    int ret;

    if (len > MAX_INPUT)
        return 0;
    memcpy(copy, data, len);
    ret = open_walk(&m, &img, false);
#ifdef FUZZ_STANDALONE
    if (ret < 0)
        print_msg(-ret);
    else
        printf("vhdx, %llu bytes\n", (unsigned long long)(img.total_sectors * 512));
#endif
    if (ret == -VHDX_ERR_LOG_READONLY)
        open_walk(&m, &img, true);
    return 0;
}

#include "fuzz_main.h"
