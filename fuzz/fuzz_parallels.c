/*
 * Fuzz target: formats/parallels over one image held in memory:
 * parallels_open()'s checks (header, catalog, inuse flag) for read-only
 * and read-write opens, the format extension and its dirty bitmaps (MD5
 * from nettle, as in the guest), block status over the whole disk (every
 * answer covers at least one sector and at most what was asked), and
 * parallels_co_check() with and without repairs (its counts consistent).
 * AFL++ persistent mode by default; with -DFUZZ_STANDALONE it is a plain
 * program that runs every file named on the command line (or stdin) once
 * and prints the resulting message or the virtual size.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/md5.h>

#include "fuzz_read.h"
#include "parallels/parallels.h"

#define MAX_INPUT (16u << 20)
#define MAX_STEPS 4096u
#define BUF_MAX   (MAX_INPUT + 4096u)

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

static int mem_md5(void *opaque, uint64_t off, uint64_t len, uint8_t digest[16])
{
    static uint8_t chunk[65536];
    struct md5_ctx ctx;

    md5_init(&ctx);
    while (len) {
        size_t n = len < sizeof(chunk) ? (size_t)len : sizeof(chunk);

        if (mem_pread(opaque, off, chunk, n) < 0)
            return -1;
        md5_update(&ctx, n, chunk);
        off += n;
        len -= n;
    }
    md5_digest(&ctx, 16, digest);
    return 0;
}

static void no_report(void *opaque, int code, uint64_t arg)
{
    (void)opaque;
    if (code < PRL_MSG_UNCLEAN || code > PRL_MSG_LEAKED_FIX)
        abort();
    (void)arg;
}

#ifdef FUZZ_STANDALONE
static void print_msg(int code, uint64_t arg)
{
    switch (code) {
#define T(name, c, msg)                                                                            \
    case c:                                                                                        \
        printf("%s (%llu)\n", msg, (unsigned long long)arg);                                       \
        return;
        PARALLELS_ERRORS(T)
#undef T
    }
    printf("error %d\n", code);
}
#endif

static void check_counts(const struct prl_image *img, const struct prl_check_result *r)
{
    if (r->corruptions < 0 || r->leaks < 0 || r->corruptions_fixed > r->corruptions ||
        r->leaks_fixed > r->leaks || r->allocated_clusters > r->total_clusters ||
        r->fragmented_clusters > r->allocated_clusters ||
        r->total_clusters != (int64_t)img->bat_size || r->image_end_offset < img->cluster_size)
        abort();
}

static int run(const uint8_t *data, size_t len)
{
    static uint8_t buf[BUF_MAX], copy[BUF_MAX];
    static struct prl_image img, img2;
    struct mem m = {data, len};
    struct prl_reader r = {mem_pread, mem_md5, &m};
    struct prl_check_result cr;
    uint8_t hdr[PRL_HEADER_SIZE];
    uint64_t sector, total, pnum;
    size_t blen = PRL_HEADER_SIZE;
    unsigned steps;
    int ret;

    mem_pread(&m, 0, hdr, sizeof(hdr));
    ret = prl_open_header(hdr, &img);
    if (ret == 0) {
        /* The guest holds the part of the buffer inside the file. */
        blen = img.header_size < len ? (size_t)img.header_size : len;
        if (blen < PRL_HEADER_SIZE)
            blen = PRL_HEADER_SIZE;
        mem_pread(&m, 0, buf, blen);
        img2 = img;
        if (prl_open_bat(&img2, buf, blen, PRL_OPEN_RDWR) == 0 && img2.unclean)
            abort(); /* a read-write open of an unclean image without CHECK */
        ret = prl_open_bat(&img, buf, blen, 0);
    }
    /* The checksum of a huge cluster costs seconds: such inputs fuzz the rest. */
    if (ret == 0 && img.ext_off && img.cluster_size <= MAX_INPUT)
        ret = prl_read_extension(&r, &img);
    if (ret < 0) {
#ifdef FUZZ_STANDALONE
        print_msg(-ret, img.err_arg[0]);
#endif
        return 0;
    }
    if (img.tracks == 0 || img.cluster_size != img.tracks * 512 ||
        img.total_sectors > (uint64_t)INT64_MAX / 512)
        abort();
    total = img.total_sectors;
#ifdef FUZZ_STANDALONE
    printf("parallels, %llu bytes, %u bitmaps\n", (unsigned long long)(total * 512), img.nbitmaps);
#endif
    /* Block status from the start, then from the middle: bounded steps. */
    for (int pass = 0; pass < 2; pass++) {
        sector = pass ? total / 2 : 0;
        for (steps = 0; sector < total && steps < MAX_STEPS; steps++) {
            uint64_t nb = total - sector > 0x7fffffffu ? 0x7fffffffu : total - sector;
            int64_t pos = prl_block_status(&img, buf, blen, sector, nb, &pnum);

            if (pnum == 0 || pnum > nb || pos < -1)
                abort();
            sector += pnum;
        }
    }
    /* The check, then a repair on a copy of the buffer and its second check. */
    prl_check(&img, buf, blen, (len + 511) & ~(uint64_t)511, 0, no_report, NULL, &cr);
    check_counts(&img, &cr);
    if (cr.flush_bat || cr.truncate || cr.corruptions_fixed || cr.leaks_fixed)
        abort();
    memcpy(copy, buf, blen);
    img2 = img;
    prl_check(&img2, copy, blen, (len + 511) & ~(uint64_t)511, PRL_FIX_ERRORS | PRL_FIX_LEAKS,
              no_report, NULL, &cr);
    check_counts(&img2, &cr);
    prl_check(&img2, copy, blen,
              cr.truncate ? (uint64_t)cr.image_end_offset : (len + 511) & ~(uint64_t)511, 0,
              no_report, NULL, &cr);
    check_counts(&img2, &cr);
    if (cr.corruptions)
        abort(); /* the repair left a corruption */
    return 0;
}

#include "fuzz_main.h"
