/*
 * Fuzz target: the whole qcow2 check (formats/qcow2/check.h) over one
 * image held in memory: header and extensions parsed as qemu-img check
 * opens them (the snapshot table left to the check), then the check with
 * every line rendered away.  Allocations are capped (FUZZ_MEM_CAP live
 * bytes), so a hostile header cannot make the harness allocate without
 * bound: the check must then fail with -ENOMEM, never crash.
 *
 * AFL++ persistent mode by default; with -DFUZZ_STANDALONE it runs every
 * file named on the command line once and prints the counters.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_read.h"
#include "fuzz_alloc.h"
#include "qcow2/check.h"
#include "qcow2/header.h"

#define MAX_INPUT (4u << 20)

struct mem {
    const uint8_t *p;
    size_t len;
    size_t live; /* bytes currently allocated through the env */
    unsigned long lines;
};

static int mem_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    const struct mem *m = opaque;

    return fuzz_read(m->p, m->len, off, buf, len);
}

static void mem_report(void *opaque, int32_t code, uint16_t flags, const uint64_t args[4],
                       const char *s, size_t slen)
{
    struct mem *m = opaque;
    volatile char sink = 0;

    (void)code;
    (void)flags;
    (void)args;
    if (slen)
        sink = s[0] ^ s[slen - 1]; /* the string must be readable */
    (void)sink;
    m->lines++;
}

static void *mem_realloc(void *opaque, void *p, size_t size)
{
    return fuzz_realloc(&((struct mem *)opaque)->live, p, size);
}

static void mem_free(void *opaque, void *p)
{
    fuzz_free(&((struct mem *)opaque)->live, p);
}

static int run(const uint8_t *data, size_t len)
{
    static struct qcow2_err_info ei;
    struct mem m = {data, len, 0, 0};
    struct qcow2_check_env env = {mem_pread, mem_report, mem_realloc, mem_free, &m};
    struct qcow2_check_result res;
    struct qcow2_check_image ci;
    struct qcow2_header h;
    struct qcow2_exts x;
    uint8_t *copy;
    int ret;

    if (len < 72)
        return 0;
    /* Check mode: parse without the snapshot table fields, then restore. */
    copy = malloc(len);
    if (!copy)
        abort();
    memcpy(copy, data, len);
    memset(copy + 60, 0, 12);
    ret = qcow2_header_parse(copy, len, &h, &ei);
    if (ret == 0)
        ret = qcow2_ext_parse(copy, len, &h, NULL, NULL, &x, &ei);
    if (ret == 0) {
        h.nb_snapshots = qcow2_be32(data, len, 60);
        h.snapshots_offset = qcow2_be64(data, len, 64);
        /* x's strings point into copy, which lives until the end. */
        ci.h = &h;
        ci.x = &x;
        ci.file_size = len;
        ret = qcow2_check(&ci, &env, 0, &res);
        if (m.live != 0)
            abort(); /* the check must release everything */
#ifdef FUZZ_STANDALONE
        printf("ret=%d lines=%lu corruptions=%lld leaks=%lld check_errors=%lld end=%lld\n", ret,
               m.lines, (long long)res.corruptions, (long long)res.leaks,
               (long long)res.check_errors, (long long)res.image_end_offset);
#endif
    }
    free(copy);
    return 0;
}

#include "fuzz_main.h"
