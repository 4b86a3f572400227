/*
 * Sizes as qemu-img prints and parses them.
 */
#ifndef CMD_SIZE_H
#define CMD_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* Longest size_to_str() output, NUL included ("1.02e+03 KiB" and the like). */
#define SIZE_STR_MAX 32

/*
 * size_to_str - render val the way QEMU's size_to_str() does: "%0.3g" of
 * val scaled to the largest IEC unit that keeps the integer part below
 * 1000 (after QEMU's 1000/1024 correction), then " B", " KiB", ...
 * @val: byte count
 * @buf: receives the NUL-terminated text
 * Returns buf.
 */
char *size_to_str(uint64_t val, char buf[SIZE_STR_MAX]);

/*
 * size_parse - QEMU's qemu_strtosz(): a decimal (optionally fractional) or
 * 0x-hexadecimal number with an optional suffix b/k/M/G/T/P/E (case
 * insensitive, powers of 1024).
 * @str: the text
 * @end: if not NULL, receives where parsing stopped; if NULL, trailing
 *       characters are an error
 * @out: receives the byte count on success
 * Returns 0, -EINVAL (not a size) or -ERANGE (does not fit 64 bits).
 * *out is untouched on failure.  A hex number with a suffix is accepted
 * with QEMU's deprecation warning on stderr.
 */
int size_parse(const char *str, const char **end, uint64_t *out);

/*
 * size_cvtnum - qemu-img's cvtnum_full(): parse value as a size in
 * [min, max]; on failure reports the error the way qemu-img does (naming
 * the quantity, e.g. "image size") and returns a negative errno.
 * @name: what the number is, for the messages
 * Returns the size (>= 0) or -EINVAL / -ERANGE.
 */
int64_t size_cvtnum(const char *name, const char *value, int64_t min, int64_t max);

#endif /* CMD_SIZE_H */
