/*
 * Fuzz target: qcow2 repair (qcow2_repair in formats/qcow2/check.h) over
 * one image held in memory, for "-r leaks" and "-r all" on two copies.
 * The harness aborts (a finding) when:
 *  - a write or truncate reaches past the write limit (file length +
 *    1/32 + 1 MiB here), or a refused repair wrote anything;
 *  - memory is left allocated;
 *  - "-r all" without a rebuild says it left no corruption and no error,
 *    yet a fresh check of the repaired bytes (header re-parsed) finds
 *    corruptions or errors.
 * Allocations are capped as in fuzz_qcow2_check.c.
 *
 * AFL++ persistent mode by default; with -DFUZZ_STANDALONE it runs every
 * file named on the command line once and prints the outcomes.
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
    uint8_t *p;
    size_t len;
    size_t cap;
    uint64_t limit;
    size_t live; /* bytes currently allocated through the env */
    unsigned long lines, writes;
    int refused;
    int rebuilt; /* "Rebuilding refcount structure" was reported */
};

static int mem_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    const struct mem *m = opaque;

    return fuzz_read(m->p, m->len, off, buf, len);
}

static void mem_grow(struct mem *m, uint64_t end)
{
    if (end > m->limit)
        abort(); /* past the write limit */
    if (end > m->cap) {
        uint8_t *p = realloc(m->p, (size_t)end);

        if (!p)
            abort();
        memset(p + m->cap, 0, (size_t)(end - m->cap));
        m->p = p;
        m->cap = (size_t)end;
    }
    if (end > m->len)
        m->len = (size_t)end;
}

static int mem_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    struct mem *m = opaque;

    if (off > m->limit || len > m->limit - off)
        abort();
    mem_grow(m, off + len);
    memcpy(m->p + off, buf, len);
    m->writes++;
    return 0;
}

static int mem_flush(void *opaque)
{
    (void)opaque;
    return 0;
}

static int mem_truncate(void *opaque, uint64_t size)
{
    struct mem *m = opaque;

    if (size > m->limit)
        abort();
    if (size > m->len)
        mem_grow(m, size);
    else
        m->len = (size_t)size;
    m->writes++;
    return 0;
}

static void mem_report(void *opaque, int32_t code, uint16_t flags, const uint64_t args[4],
                       const char *s, size_t slen)
{
    struct mem *m = opaque;
    volatile char sink = 0;

    (void)flags;
    (void)args;
    if (slen)
        sink = s[0] ^ s[slen - 1]; /* the string must be readable */
    (void)sink;
    if (code == QCOW2_MSG_REPAIR_REFUSED_UNCOUNTED || code == QCOW2_MSG_REPAIR_REFUSED_SNAPSHOTS ||
        code == QCOW2_MSG_REPAIR_REFUSED_AUTOCLEAR)
        m->refused = 1;
    if (code == QCOW2_MSG_REBUILDING)
        m->rebuilt = 1;
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

/* Parse m's bytes as check's open does; x's strings point into *copy. */
static int parse(const struct mem *m, struct qcow2_header *h, struct qcow2_exts *x, uint8_t **copy)
{
    static struct qcow2_err_info ei;
    int ret;

    *copy = malloc(m->len ? m->len : 1);
    if (!*copy)
        abort();
    memcpy(*copy, m->p, m->len);
    memset(*copy + 60, 0, 12);
    ret = qcow2_header_parse_flags(*copy, m->len, QCOW2_OPEN_CHECK, h, &ei);
    if (ret == 0)
        ret = qcow2_ext_parse(*copy, m->len, h, NULL, NULL, x, &ei);
    h->nb_snapshots = qcow2_be32(m->p, m->len, 60);
    h->snapshots_offset = qcow2_be64(m->p, m->len, 64);
    return ret;
}

static void one(const uint8_t *data, size_t len, unsigned fix)
{
    struct mem m = {NULL, 0, 0, 0, 0, 0, 0, 0, 0};
    struct qcow2_check_env env = {mem_pread, mem_report, mem_realloc, mem_free, &m};
    struct qcow2_repair_io io = {
        .pwrite = mem_pwrite, .flush = mem_flush, .truncate = mem_truncate};
    struct qcow2_check_result res, r2;
    struct qcow2_check_image ci;
    struct qcow2_header h;
    struct qcow2_exts x;
    uint8_t *copy;
    int ret, ret2 = 0;

    m.p = malloc(len);
    if (!m.p)
        abort();
    memcpy(m.p, data, len);
    m.len = m.cap = len;
    m.limit = len + len / 32 + (1u << 20);
    io.write_limit = m.limit;
    if (parse(&m, &h, &x, &copy) != 0)
        goto out;
    ci.h = &h;
    ci.x = &x;
    ci.file_size = len;
    ret = qcow2_repair(&ci, &env, &io, fix, &res);
    if (m.live != 0)
        abort(); /* the repair must release everything */
    if (m.refused && (m.writes || m.len != len || memcmp(m.p, data, len)))
        abort(); /* a refusal writes nothing */
    /*
     * After a rebuild QEMU counts only the fresh leaks of its second
     * comparison, so its first result can say clean where its own re-check
     * is not (instar then keeps the corrupt bit); without a rebuild the
     * repair is exact.
     */
    if (ret == 0 && (fix & QCOW2_CHECK_FIX_ERRORS) && !res.corruptions && !res.check_errors &&
        !m.rebuilt) {
        free(copy);
        if (parse(&m, &h, &x, &copy) != 0)
            abort(); /* the repair broke the header */
        ci.file_size = m.len;
        m.refused = 0;
        ret2 = qcow2_check(&ci, &env, 0, &r2);
        if (ret2 < 0 || r2.corruptions || r2.check_errors)
            abort(); /* said clean, is not */
        if (m.live != 0)
            abort();
    }
#ifdef FUZZ_STANDALONE
    printf("fix=%u ret=%d lines=%lu writes=%lu corruptions=%lld leaks=%lld fixed=%lld/%lld\n", fix,
           ret, m.lines, m.writes, (long long)res.corruptions, (long long)res.leaks,
           (long long)res.corruptions_fixed, (long long)res.leaks_fixed);
#endif
out:
    free(copy);
    free(m.p);
}

static int run(const uint8_t *data, size_t len)
{
    if (len < 72)
        return 0;
    one(data, len, QCOW2_CHECK_FIX_LEAKS);
    one(data, len, QCOW2_CHECK_FIX_LEAKS | QCOW2_CHECK_FIX_ERRORS);
    return 0;
}

#include "fuzz_main.h"
