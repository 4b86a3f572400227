/*
 * Shell helpers for unit tests that make fixtures with qemu-img/qemu-io.
 * Header-only: each test binary is one translation unit.
 */
#ifndef TEST_SH_H
#define TEST_SH_H

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Run a printf-formatted shell command; returns system()'s status. */
static inline __attribute__((format(printf, 1, 2))) int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Run a printf-formatted shell command and return its stdout (malloc'd). */
static inline __attribute__((format(printf, 1, 2))) char *sh_out(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    size_t cap = 4096, len = 0, n;
    char *out = malloc(cap);
    FILE *p;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            out = realloc(out, cap);
        }
    }
    pclose(p);
    out[len] = '\0';
    return out;
}

#endif /* TEST_SH_H */
