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

#endif
