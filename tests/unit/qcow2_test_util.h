/*
 * Helpers shared by the qcow2 unit tests: make an image with the real
 * qemu-img (the oracle) in a temporary directory and load it into memory,
 * then patch big-endian fields.  Expected codes and arguments in the tests
 * were confirmed by running qemu-img info on the same patched bytes.
 */
#ifndef QCOW2_TEST_UTIL_H
#define QCOW2_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct img {
    uint8_t *p;
    size_t len;
};

static uint8_t *img_last;

static inline void img_free_last(void)
{
    free(img_last);
    img_last = NULL;
}

/* Run a shell command in a fresh temp dir, then load file name from it. */
static inline struct img img_make(const char *cmds, const char *name)
{
    char dir[] = "/tmp/instar-ut-XXXXXX";
    char cmd[4096], path[512];
    struct img im = {0};
    FILE *f;
    long n;

    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "cd %s && (%s) >/dev/null 2>&1", dir, cmds);
    cr_assert_eq(system(cmd), 0, "command failed: %s", cmds);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (!img_last)
        atexit(img_free_last);
    free(img_last);
    im.p = img_last = calloc(1, (size_t)n + 1);
    im.len = (size_t)n;
    cr_assert_eq(fread(im.p, 1, im.len, f), im.len);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)system(cmd);
    return im;
}

static inline void put_be(uint8_t *p, size_t off, uint64_t v, int bytes)
{
    int i;

    for (i = bytes - 1; i >= 0; i--, v >>= 8)
        p[off + (size_t)i] = (uint8_t)v;
}

#define PUT8(im, off, v)  ((im).p[off] = (uint8_t)(v))
#define PUT16(im, off, v) put_be((im).p, off, v, 2)
#define PUT32(im, off, v) put_be((im).p, off, v, 4)
#define PUT64(im, off, v) put_be((im).p, off, v, 8)

static inline uint64_t get_be(const uint8_t *p, size_t off, int bytes)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < bytes; i++)
        v = v << 8 | p[off + (size_t)i];
    return v;
}

/*
 * An image file in memory, for the qcow2 libraries' I/O callbacks
 * (alloc.h's ops, resize.h's io, ...): bytes past the end read as zeros,
 * writes grow it, a discard zeroes the range within the file as a punched
 * hole reads.  Past len the buffer (cap bytes) holds zeros.  Each callback takes a struct memfile *
 * as its opaque.
 */
struct memfile {
    uint8_t *p;
    size_t len;
    size_t cap;
    int writes;         /* writes (and truncates) done */
    int fail_at;        /* fail the write with this index with EIO (-1: never) */
    int truncations;    /* memfile_truncate calls */
    int discards;       /* memfile_discard calls */
    uint64_t discarded; /* bytes they named */
};

/* Take over len bytes at p (malloc'ed; freed with free(m->p)). */
static inline void memfile_adopt(struct memfile *m, uint8_t *p, size_t len)
{
    memset(m, 0, sizeof(*m));
    m->p = p;
    m->len = m->cap = len;
    m->fail_at = -1;
}

/* A memfile holding a copy of len bytes at p. */
static inline void memfile_copy(struct memfile *m, const uint8_t *p, size_t len)
{
    uint8_t *c = malloc(len ? len : 1);

    cr_assert_not_null(c);
    memcpy(c, p, len);
    memfile_adopt(m, c, len);
}

static inline int memfile_reserve(struct memfile *m, size_t n)
{
    if (n > m->cap) {
        uint8_t *p = realloc(m->p, n);

        if (!p)
            return -12;
        memset(p + m->cap, 0, n - m->cap);
        m->p = p;
        m->cap = n;
    }
    return 0;
}

static inline int memfile_read(void *o, uint64_t off, void *buf, size_t len)
{
    struct memfile *m = o;

    memset(buf, 0, len);
    if (off < m->len)
        memcpy(buf, m->p + off, off + len <= m->len ? len : m->len - off);
    return 0;
}

static inline int memfile_write(void *o, uint64_t off, const void *buf, size_t len)
{
    struct memfile *m = o;

    if (m->writes++ == m->fail_at)
        return -5;
    if (memfile_reserve(m, off + len) < 0)
        return -12;
    memcpy(m->p + off, buf, len);
    if (off + len > m->len)
        m->len = off + len;
    return 0;
}

static inline int memfile_flush(void *o)
{
    (void)o;
    return 0;
}

/* Set the length, growing with zeros. */
static inline int memfile_set_length(struct memfile *m, uint64_t size)
{
    if (memfile_reserve(m, size) < 0)
        return -12;
    if (size < m->len) /* past the length, the buffer stays zeros */
        memset(m->p + size, 0, m->len - size);
    m->len = size;
    return 0;
}

/* memfile_set_length as a truncate callback (counted as a write: fail_at applies). */
static inline int memfile_truncate(void *o, uint64_t size)
{
    struct memfile *m = o;

    m->truncations++;
    if (m->writes++ == m->fail_at)
        return -5;
    return memfile_set_length(m, size);
}

/* A punched hole: the range reads as zeros, the length stays. */
static inline void memfile_discard(void *o, uint64_t off, uint64_t len)
{
    struct memfile *m = o;

    m->discards++;
    m->discarded += len;
    if (off < m->len)
        memset(m->p + off, 0, off + len <= m->len ? len : m->len - off);
}

/* realloc(), as the libraries' mem callback: size 0 frees p. */
static inline void *memfile_mem(void *o, void *p, size_t size)
{
    (void)o;
    if (!size) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

#ifdef QCOW2_PREALLOC_H
/* prealloc.h's truncate and length callbacks over a memfile (the image only). */
static inline int memfile_prealloc_truncate(void *o, int dev, uint64_t size, int mode)
{
    (void)mode;
    cr_assert_eq(dev, QCOW2_PREALLOC_DEV_IMAGE);
    return memfile_truncate(o, size);
}

static inline int memfile_prealloc_length(void *o, int dev, uint64_t *len)
{
    cr_assert_eq(dev, QCOW2_PREALLOC_DEV_IMAGE);
    *len = ((struct memfile *)o)->len;
    return 0;
}
#endif

#endif
