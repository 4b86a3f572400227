/*
 * Fuzz target: formats/vpc over one image held in memory: vpc_open()'s
 * checks (footer, dynamic header, BAT) and, for an image that opens, the
 * map of every block (what block status and reads use), whose host
 * ranges must end inside the file as the truncation check promises.
 * AFL++ persistent mode by default; with -DFUZZ_STANDALONE it is a plain
 * program that runs every file named on the command line (or stdin) once
 * and prints the resulting message or the virtual size.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_read.h"
#include "vpc/vpc.h"

#define MAX_INPUT (16u << 20)
#define BAT_MAX   (1u << 22) /* entries the harness holds (16 MiB) */

struct mem {
    const uint8_t *p;
    size_t len;
};

/* Reads past the end of the input return zeros, as QEMU's do. */
static int mem_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    const struct mem *m = opaque;

    return fuzz_read(m->p, m->len, off, buf, len);
}

#ifdef FUZZ_STANDALONE
static void print_msg(int code, uint32_t arg)
{
    switch (code) {
#define T(name, c, msg)                                                                            \
    case c:                                                                                        \
        printf("%s (%u)\n", msg, arg);                                                             \
        return;
        VPC_ERRORS(T)
#undef T
    }
    printf("error %d\n", code);
}
#endif

static int run(const uint8_t *data, size_t len)
{
    static uint32_t bat[BAT_MAX];
    static uint8_t buf[4096];
    static struct vpc_image img;
    struct mem m = {data, len};
    struct vpc_reader r = {mem_pread, &m};
    uint64_t off, host, run_len, total;
    int ret;

    for (int calc = VPC_SIZE_AUTO; calc <= VPC_SIZE_CURRENT; calc++) {
        ret = vpc_open_footer(&r, len, (enum vpc_size_calc)calc, &img);
        if (ret == 0 && !img.fixed) {
            ret = vpc_open_dynamic(&r, &img);
            if (ret == 0 && img.max_table_entries > BAT_MAX)
                return 0; /* larger than the input allows anyway */
            if (ret == 0)
                ret = vpc_open_bat(&r, &img, bat, buf, sizeof(buf));
        }
        if (ret < 0) {
#ifdef FUZZ_STANDALONE
            if (calc == VPC_SIZE_AUTO)
                print_msg(-ret, img.err_arg);
#endif
            continue;
        }
        total = img.total_sectors * 512;
        if (img.total_sectors > VPC_MAX_SECTORS)
            abort();
#ifdef FUZZ_STANDALONE
        if (calc == VPC_SIZE_AUTO)
            printf("%s, %llu bytes\n", img.fixed ? "fixed" : "dynamic", (unsigned long long)total);
#endif
        if (img.fixed)
            continue;
        /* One map per BAT entry (the table lies inside the input). */
        for (off = 0; off < total && off / img.block_size < img.max_table_entries; off += run_len) {
            if (vpc_map(&img, bat, off, &host, &run_len) && host + run_len > img.file_length)
                abort(); /* a block past the file the open accepted */
            if (run_len == 0 || run_len > img.block_size)
                abort();
        }
    }
    return 0;
}

#include "fuzz_main.h"
