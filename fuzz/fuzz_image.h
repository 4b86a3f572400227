/*
 * An in-memory qcow2 image for the harnesses of the writers
 * (fuzz_qcow2_snapop.c, fuzz_qcow2_bitmap_store.c): the file bytes with
 * reads (zeros past the end), writes (bounded by a write limit: a write
 * past it fails with -EIO, as a full disk would), flush and discard; the
 * open qemu-img's read-write open makes (header, extensions, snapshot
 * table, bitmap directory and tables, size check), and the consistency
 * check of formats/qcow2/check.h over the current bytes.
 *
 * Inputs carry their operations in a trailer: the last FI_OPS bytes of the
 * input are the operation script, the bytes before them the image file.
 */
#ifndef FUZZ_IMAGE_H
#define FUZZ_IMAGE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_read.h"
#include "fuzz_alloc.h"
#include "qcow2/bitmap.h"
#include "qcow2/check.h"
#include "qcow2/header.h"
#include "qcow2/snapshot.h"

#define FI_OPS 16
/*
 * Bytes of the file the header parses see: its first cluster, as
 * guest/open.c reads it (at least 512 bytes, at most the file).
 */
static size_t fi_first_len(const uint8_t *p, size_t len)
{
    uint32_t cbits = qcow2_be32(p, len, 20);
    size_t n = 512;

    if (cbits >= QCOW2_MIN_CLUSTER_BITS && cbits <= QCOW2_MAX_CLUSTER_BITS && (1u << cbits) > n)
        n = (size_t)1 << cbits;
    return n < len ? n : len;
}

struct fi {
    uint8_t *p;
    size_t len, cap;
    uint64_t limit; /* no write may end past it */
    size_t live;    /* bytes the libraries hold through fi_mem / fi_crealloc */
    unsigned long writes;
};

static int fi_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    const struct fi *m = opaque;

    return fuzz_read(m->p, m->len, off, buf, len);
}

static int fi_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    struct fi *m = opaque;
    uint64_t end;

    if (off > m->limit || len > m->limit - off)
        return -5; /* EIO: the disk is full */
    end = off + len;
    if (end > m->cap) {
        uint8_t *p = realloc(m->p, (size_t)end);

        if (!p)
            abort();
        memset(p + m->cap, 0, (size_t)(end - m->cap));
        m->p = p;
        m->cap = (size_t)end;
    }
    if (end > m->len) {
        memset(m->p + m->len, 0, (size_t)(end - m->len));
        m->len = (size_t)end;
    }
    memcpy(m->p + off, buf, len);
    m->writes++;
    return 0;
}

static int fi_flush(void *opaque)
{
    (void)opaque;
    return 0;
}

/* A punched range reads as zeros afterwards (the file driver's discard). */
static void fi_discard(void *opaque, uint64_t off, uint64_t len)
{
    struct fi *m = opaque;

    if (off >= m->len)
        return;
    if (len > m->len - off)
        len = m->len - off;
    memset(m->p + off, 0, (size_t)len);
}

/*
 * realloc() semantics with size 0 freeing (struct qcow2_alloc_ops.mem),
 * capped lower than the check's memory: a hostile refcount table can ask
 * the allocator for a new table of 64 MiB, which would only slow the
 * harness down (the writers' ENOMEM paths are fuzzed instead).
 */
#define FI_MEM_CAP (8u << 20)

static void *fi_mem(void *opaque, void *p, size_t size)
{
    struct fi *m = opaque;

    if (size == 0) {
        fuzz_free(&m->live, p);
        return NULL;
    }
    if (size > FI_MEM_CAP)
        return NULL;
    return fuzz_realloc(&m->live, p, size);
}

static void *fi_crealloc(void *opaque, void *p, size_t size)
{
    return fuzz_realloc(&((struct fi *)opaque)->live, p, size);
}

static void fi_cfree(void *opaque, void *p)
{
    fuzz_free(&((struct fi *)opaque)->live, p);
}

static void fi_report(void *opaque, int32_t code, uint16_t flags, const uint64_t args[4],
                      const char *s, size_t slen)
{
    volatile char sink = 0;

    (void)opaque;
    (void)code;
    (void)flags;
    (void)args;
    if (slen)
        sink = s[0] ^ s[slen - 1]; /* the string must be readable */
    (void)sink;
}

static int fi_init(struct fi *m, const uint8_t *data, size_t len)
{
    memset(m, 0, sizeof(*m));
    m->p = malloc(len ? len : 1);
    if (!m->p)
        abort();
    memcpy(m->p, data, len);
    m->len = m->cap = len;
    m->limit = len + (8u << 20);
    return 0;
}

/*
 * qemu-img check of the current bytes (its own open: snapshot fields
 * hidden from the header parse, as check mode does not read the table),
 * with the file taken as long as the write limit (zeros past its end): the
 * check counts only clusters inside the file, and a refcount past its end
 * would turn into a leak once a write grows the file over it.
 * Returns the check's return value, or 1 when the header does not parse.
 */
static int fi_check(struct fi *m, struct qcow2_check_result *res)
{
    static struct qcow2_err_info ei;
    struct qcow2_check_env env = {fi_pread, fi_report, fi_crealloc, fi_cfree, m};
    struct qcow2_check_image ci;
    struct qcow2_header h;
    struct qcow2_exts x;
    size_t n = fi_first_len(m->p, m->len);
    uint8_t *copy = malloc(n ? n : 1);
    size_t live = m->live;
    int ret;

    if (!copy)
        abort();
    memcpy(copy, m->p, n);
    if (n >= 72)
        memset(copy + 60, 0, 12);
    ret = qcow2_header_parse_flags(copy, n, QCOW2_OPEN_CHECK, &h, &ei);
    if (ret == 0)
        ret = qcow2_ext_parse(copy, n, &h, NULL, NULL, &x, &ei);
    if (ret != 0) {
        free(copy);
        return 1;
    }
    h.nb_snapshots = qcow2_be32(m->p, m->len, 60);
    h.snapshots_offset = qcow2_be64(m->p, m->len, 64);
    ci.h = &h;
    ci.x = &x;
    ci.file_size = m->limit;
    ret = qcow2_check(&ci, &env, 0, res);
    free(copy);
    if (m->live != live)
        abort(); /* the check must release everything */
    return ret;
}

/* A check that found nothing at all. */
static int fi_clean(struct fi *m)
{
    struct qcow2_check_result r;

    return fi_check(m, &r) == 0 && !r.corruptions && !r.leaks && !r.check_errors;
}

/* The image as qemu-img's read-write open sees it. */
struct fi_open {
    uint8_t *first; /* a copy of the file's first cluster: ext strings point into it */
    size_t first_len;
    struct qcow2_header h;
    struct qcow2_exts x;
    uint32_t nsn;
    struct qcow2_snapshot *sn; /* id and name point into strs */
    uint8_t **strs;            /* 2 per entry */
    uint8_t *bitmap_dir;
    uint32_t nbm;
    struct qcow2_bitmap *bm;
};

static int fi_on_snapshot(void *opaque, uint32_t i, const struct qcow2_snapshot *sn)
{
    struct fi_open *o = opaque;
    uint8_t *id = malloc(sn->id_len + 1), *name = malloc(sn->name_len + 1);

    if (!id || !name)
        abort();
    memcpy(id, sn->id, sn->id_len);
    memcpy(name, sn->name, sn->name_len);
    o->strs[2 * i] = id;
    o->strs[2 * i + 1] = name;
    o->sn[i] = *sn;
    o->sn[i].id = id;
    o->sn[i].name = name;
    return 0;
}

static int fi_on_bitmap(void *opaque, uint32_t i, const struct qcow2_bitmap *bm)
{
    ((struct fi_open *)opaque)->bm[i] = *bm;
    return 0;
}

static void fi_close(struct fi_open *o)
{
    if (o->strs)
        for (uint32_t i = 0; i < 2 * o->h.nb_snapshots; i++)
            free(o->strs[i]);
    free(o->strs);
    free(o->sn);
    free(o->bm);
    free(o->bitmap_dir);
    free(o->first);
    memset(o, 0, sizeof(*o));
}

/* gq_open_flags(QCOW2_OPEN_RDWR) over the bytes of m.  0, or -1 (o released). */
static int fi_open(struct fi *m, struct fi_open *o)
{
    static struct qcow2_err_info ei;
    static uint8_t scratch[QCOW2_SNAPSHOT_SCRATCH];
    static uint8_t tbuf[4096];
    struct qcow2_reader rd = {fi_pread, m};
    uint32_t *idx = NULL;
    uint8_t *dup = NULL;
    int ret;

    memset(o, 0, sizeof(*o));
    o->first_len = fi_first_len(m->p, m->len);
    o->first = malloc(o->first_len ? o->first_len : 1);
    if (!o->first)
        abort();
    memcpy(o->first, m->p, o->first_len);
    if (qcow2_header_parse_flags(o->first, o->first_len, QCOW2_OPEN_RDWR, &o->h, &ei) != 0 ||
        qcow2_ext_parse(o->first, o->first_len, &o->h, NULL, NULL, &o->x, &ei) != 0 ||
        o->h.crypt_method != QCOW2_CRYPT_NONE || o->h.nb_snapshots > 1024)
        goto fail;
    if (o->h.nb_snapshots) {
        o->sn = calloc(o->h.nb_snapshots, sizeof(*o->sn));
        o->strs = calloc(2 * (size_t)o->h.nb_snapshots, sizeof(*o->strs));
        if (!o->sn || !o->strs)
            abort();
        if (qcow2_snapshots_parse(&o->h, &rd, scratch, fi_on_snapshot, o, &ei) != 0)
            goto fail;
        o->nsn = o->h.nb_snapshots;
    }
    if (o->x.nb_bitmaps) {
        if (qcow2_bitmap_dir_precheck(&o->x) != 0 || o->x.bitmap_dir_size > (1u << 20))
            goto fail;
        o->bitmap_dir = malloc((size_t)o->x.bitmap_dir_size);
        o->bm = calloc(o->x.nb_bitmaps, sizeof(*o->bm));
        idx = calloc(o->x.nb_bitmaps, sizeof(*idx));
        dup = calloc(o->x.nb_bitmaps, 1);
        if (!o->bitmap_dir || !o->bm || !idx || !dup)
            abort();
        fi_pread(m, o->x.bitmap_dir_offset, o->bitmap_dir, (size_t)o->x.bitmap_dir_size);
        if (qcow2_bitmap_dir_parse(o->bitmap_dir, (size_t)o->x.bitmap_dir_size, o->x.nb_bitmaps,
                                   &o->h, fi_on_bitmap, o, &ei) != 0)
            goto fail;
        qcow2_bitmap_mark_dups(o->bm, o->x.nb_bitmaps, idx, dup);
        for (uint32_t i = 0; i < o->x.nb_bitmaps; i++) {
            if (o->bm[i].flags & QCOW2_BITMAP_IN_USE)
                continue;
            if (dup[i] ||
                qcow2_bitmap_load_check(&o->bm[i], &o->h, &rd, tbuf, sizeof(tbuf), &ei) != 0)
                goto fail;
        }
        o->nbm = o->x.nb_bitmaps;
    }
    ret = qcow2_size_check(&o->h);
    free(idx);
    free(dup);
    if (ret == 0)
        return 0;
    fi_close(o);
    return -1;
fail:
    free(idx);
    free(dup);
    fi_close(o);
    return -1;
}

#endif /* FUZZ_IMAGE_H */
