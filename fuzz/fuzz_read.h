/*
 * Reads from an input held in memory, as the harnesses' libraries read an
 * image file: bytes past the end of the input read as zeros, as QEMU's
 * file reads do.
 */
#ifndef FUZZ_READ_H
#define FUZZ_READ_H

#include <stdint.h>
#include <string.h>

/* Copy [off, off + len) of p (plen bytes) into buf, zeros past plen.  Returns 0. */
static inline int fuzz_read(const uint8_t *p, size_t plen, uint64_t off, void *buf, size_t len)
{
    memset(buf, 0, len);
    if (off < plen) {
        size_t n = plen - off < len ? (size_t)(plen - off) : len;

        memcpy(buf, p + off, n);
    }
    return 0;
}

#endif /* FUZZ_READ_H */
