/*
 * Sizes: QEMU's size_to_str() and qemu_strtosz() (util/cutils.c), and
 * qemu-img's cvtnum_full(), re-implemented for byte-identical behaviour.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "size.h"

char *size_to_str(uint64_t val, char buf[SIZE_STR_MAX])
{
    static const char *const prefix[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    int exp2;

    /*
     * frexp's exponent minus one is floor(log2(val * 1024 / 1000)); the
     * 1000/1024 factor switches to the next unit as soon as the integer
     * part would reach 1000, so that "%0.3g" never needs an exponent.
     * For val = 0 the exponent is 0 and (0 - 1) / 10 truncates to 0.
     */
    frexp((double)val / (1000.0 / 1024.0), &exp2);
    exp2 = (exp2 - 1) / 10 * 10;
    if (exp2 < 0)
        exp2 = 0;
    if (exp2 > 60)
        exp2 = 60;
    snprintf(buf, SIZE_STR_MAX, "%0.3g %sB", (double)val / (double)(1ULL << exp2),
             prefix[exp2 / 10]);
    return buf;
}

/* Multiplier for a suffix character, or 0 if c is none. */
static uint64_t suffix_mul(unsigned char c)
{
    switch (toupper(c)) {
    case 'B':
        return 1;
    case 'K':
        return 1ULL << 10;
    case 'M':
        return 1ULL << 20;
    case 'G':
        return 1ULL << 30;
    case 'T':
        return 1ULL << 40;
    case 'P':
        return 1ULL << 50;
    case 'E':
        return 1ULL << 60;
    }
    return 0;
}

/*
 * strtoull with QEMU's qemu_strtou64() conventions: ERANGE saturates,
 * "no conversion" is -EINVAL, and "0x" alone parses as 0 ending at 'x'.
 */
static int strtou64_qemu(const char *s, const char **end, int base, uint64_t *out)
{
    char *ep;
    int err;

    errno = 0;
    *out = strtoull(s, &ep, base);
    err = errno;
    if (err == ERANGE)
        *out = UINT64_MAX;
    if (*out == 0 && ep == s && err == 0) {
        char *tmp;

        errno = 0;
        if (strtol(s, &tmp, 10) == 0 && errno == 0 && (*tmp == 'x' || *tmp == 'X'))
            ep = tmp;
    }
    *end = ep;
    if (err == 0 && ep == s)
        return -EINVAL;
    return -err;
}

/* strtod with qemu_strtod_finite() conventions. */
static int strtod_finite(const char *s, const char **end, double *out)
{
    char *ep;
    double d;
    int err;

    errno = 0;
    d = strtod(s, &ep);
    err = errno;
    *end = ep;
    if (err == 0 && ep == s)
        return -EINVAL;
    if (err == 0 && !isfinite(d)) {
        *end = s;
        return -EINVAL;
    }
    *out = d;
    return -err;
}

int size_parse(const char *nptr, const char **end, uint64_t *result)
{
    const char *endptr, *f;
    uint64_t val, valf = 0, mul;
    bool hex = false;
    int retval;

    retval = strtou64_qemu(nptr, &endptr, 10, &val);
    if (retval)
        goto out;
    if (memchr(nptr, '-', (size_t)(endptr - nptr))) {
        endptr = nptr;
        retval = -EINVAL;
        goto out;
    }
    if (val == 0 && (*endptr == 'x' || *endptr == 'X')) {
        retval = strtou64_qemu(nptr, &endptr, 16, &val);
        if (retval)
            goto out;
        if (*endptr == '.') {
            endptr = nptr;
            retval = -EINVAL;
            goto out;
        }
        hex = true;
    } else if (*endptr == '.') {
        double fraction = 0;

        /* "1.k" is fine without fraction digits; exponents are refused. */
        f = endptr;
        retval = strtod_finite(f, &endptr, &fraction);
        if (retval) {
            endptr++;
        } else if (memchr(f, 'e', (size_t)(endptr - f)) || memchr(f, 'E', (size_t)(endptr - f))) {
            endptr = nptr;
            retval = -EINVAL;
            goto out;
        } else {
            /* 64-bit fixed-point fraction, as QEMU computes it. */
            valf = (uint64_t)(fraction * 0x1p64);
        }
    }
    mul = suffix_mul((unsigned char)*endptr);
    if (mul) {
        if (hex)
            report_warning("Using a multiplier suffix on hex numbers is deprecated: %s", nptr);
        endptr++;
    } else {
        mul = 1;
    }
    if (mul == 1) {
        if (valf != 0) {
            endptr = nptr;
            retval = -EINVAL;
            goto out;
        }
    } else {
        /* Exact 64.64 x 64.0 product; round the fraction half up. */
        unsigned __int128 whole = (unsigned __int128)val * mul;
        unsigned __int128 frac = (unsigned __int128)valf * mul;

        whole += frac >> 64;
        whole += ((uint64_t)frac) >> 63;
        if (whole >> 64) {
            retval = -ERANGE;
            goto out;
        }
        val = (uint64_t)whole;
    }
    retval = 0;
out:
    if (end)
        *end = endptr;
    else if (*endptr)
        retval = -EINVAL;
    if (retval == 0)
        *result = val;
    return retval;
}

int64_t size_cvtnum(const char *name, const char *value, int64_t min, int64_t max)
{
    uint64_t res = 0;
    int err = size_parse(value, NULL, &res);

    if (err < 0 && err != -ERANGE) {
        report_error("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", name);
        report_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return err;
    }
    if (err == -ERANGE || res > (uint64_t)max || (int64_t)res < min) {
        report_error("Invalid %s specified. Must be between %" PRId64 " and %" PRId64 ".", name,
                     min, max);
        return -ERANGE;
    }
    return (int64_t)res;
}
