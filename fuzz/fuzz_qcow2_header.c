/*
 * Fuzz target: the qcow2 open-time checks over one image held in memory
 * (header, extensions, snapshot table, bitmap directory and tables, and
 * the format probe).  AFL++ persistent mode by default; with
 * -DFUZZ_STANDALONE it is a plain program that runs every file named on
 * the command line (or stdin) once and prints the resulting message, so
 * CI can replay seeds and tests can compare it with qemu-img.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_read.h"
#include "probe.h"
#include "qcow2/bitmap.h"
#include "qcow2/header.h"
#include "qcow2/qcow2_err.h"
#include "qcow2/snapshot.h"

#ifdef FUZZ_STANDALONE
#define MAX_INPUT (256u << 20) /* a snapshot table may take 64 MiB */
#else
#define MAX_INPUT (4u << 20)
#endif

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
static const char *template_of(int code)
{
    switch (code) {
#define T(name, c, msg)                                                                            \
    case c:                                                                                        \
        return msg;
        QCOW2_ERRORS(T)
#undef T
    }
    return "?";
}

/* Fill a template the way the host renders it (include/instar/errors.h). */
static void print_msg(int code, const struct qcow2_err_info *ei)
{
    const char *t = template_of(code);

    for (; *t; t++) {
        if (t[0] == '{' && t[1] >= '0' && t[1] <= '3' && t[2] == '}') {
            printf("%llu", (unsigned long long)ei->args[t[1] - '0']);
            t += 2;
        } else if (t[0] == '{' && t[1] == 's' && t[2] == '}') {
            fwrite(ei->s, 1, ei->slen, stdout);
            t += 2;
        } else {
            putchar(*t);
        }
    }
    putchar('\n');
}
#endif

static int count_snap(void *opaque, uint32_t i, const struct qcow2_snapshot *sn)
{
    (void)opaque;
    (void)i;
    (void)sn;
    return 0;
}

struct bms {
    struct qcow2_bitmap *bm;
};

static int keep_bitmap(void *opaque, uint32_t i, const struct qcow2_bitmap *bm)
{
    ((struct bms *)opaque)->bm[i] = *bm;
    return 0;
}

static int run(const uint8_t *data, size_t len)
{
    static uint8_t scratch[QCOW2_SNAPSHOT_SCRATCH];
    static uint8_t tbuf[4096];
    static struct qcow2_err_info ei;
    struct mem m = {data, len};
    struct qcow2_reader rd = {mem_pread, &m};
    struct qcow2_header h;
    struct qcow2_exts x;
    const char *fmt;
    int ret;

    fmt = probe_format(data, len, len, NULL);
    if (strcmp(fmt, "qcow2") != 0)
        return 0;
    ret = qcow2_header_parse(data, len, &h, &ei);
    if (ret == 0)
        ret = qcow2_ext_parse(data, len, &h, NULL, NULL, &x, &ei);
    if (ret == 0)
        ret = qcow2_snapshots_parse(&h, &rd, scratch, count_snap, NULL, &ei);
    if (ret == 0 && x.nb_bitmaps > 0) {
        ret = qcow2_bitmap_dir_precheck(&x);
        if (ret == 0) {
            uint8_t *dir = calloc(1, (size_t)x.bitmap_dir_size);
            struct bms b = {calloc(x.nb_bitmaps, sizeof(*b.bm))};
            uint32_t *idx = calloc(x.nb_bitmaps, sizeof(*idx));
            uint8_t *dup = calloc(x.nb_bitmaps, 1);
            uint32_t i;

            if (!dir || !b.bm || !idx || !dup)
                abort();
            mem_pread(&m, x.bitmap_dir_offset, dir, (size_t)x.bitmap_dir_size);
            ret = qcow2_bitmap_dir_parse(dir, (size_t)x.bitmap_dir_size, x.nb_bitmaps, &h,
                                         keep_bitmap, &b, &ei);
            if (ret == 0)
                qcow2_bitmap_mark_dups(b.bm, x.nb_bitmaps, idx, dup);
            for (i = 0; ret == 0 && i < x.nb_bitmaps; i++) {
                if (dup[i] && !(b.bm[i].flags & QCOW2_BITMAP_IN_USE)) {
                    ei.s = b.bm[i].name;
                    ei.slen = b.bm[i].name_len;
                    ret = -QCOW2_ERR_BITMAP_EXISTS;
                } else if (!dup[i] && !(b.bm[i].flags & QCOW2_BITMAP_IN_USE)) {
                    ret = qcow2_bitmap_load_check(&b.bm[i], &h, &rd, tbuf, sizeof(tbuf), &ei);
                }
            }
#ifdef FUZZ_STANDALONE
            if (ret < 0)
                print_msg(-ret, &ei);
            ret = ret < 0 ? 1 : 0;
#endif
            free(dup);
            free(idx);
            free(b.bm);
            free(dir);
            return ret;
        }
    }
    if (ret == 0)
        ret = qcow2_size_check(&h);
#ifdef FUZZ_STANDALONE
    if (ret < 0) {
        print_msg(-ret, &ei);
        return 1;
    }
#endif
    return ret < 0;
}

#include "fuzz_main.h"
