/*
 * Validation of the result blob a guest returns (include/instar/result.h).
 *
 * Everything in the blob is untrusted guest output.  result_info_parse()
 * checks the whole blob once (magic, ABI version, op, size, every string
 * and array extent, bounded counts, enumerations); after it succeeds the
 * typed accessors below cannot read outside the blob.
 */
#ifndef CMD_RESULT_H
#define CMD_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "instar/result.h"

/* Bounds on counts, from QEMU: QCOW_MAX_SNAPSHOTS and QCOW2_MAX_BITMAPS. */
#define RESULT_MAX_SNAPSHOTS 65536
#define RESULT_MAX_BITMAPS   65535

/* Why a blob was rejected (for the "sandbox returned a bad result" message). */
enum result_bad {
    RESULT_OK = 0,
    RESULT_BAD_SHORT, /* shorter than its header or fixed struct */
    RESULT_BAD_MAGIC, /* wrong magic */
    RESULT_BAD_ABI,   /* wrong ABI version */
    RESULT_BAD_OP,    /* not the operation asked for */
    RESULT_BAD_SIZE,  /* header size != blob length, or too large */
    RESULT_BAD_STR,   /* a string outside the blob or too long */
    RESULT_BAD_ARRAY, /* an array outside the blob or too many elements */
    RESULT_BAD_VALUE, /* an enumeration or field out of its range */
};

/* A validated view of an INSTAR_OP_INFO result.  Borrowed from the blob. */
struct result_info {
    const uint8_t *blob;
    size_t len;
    struct instar_result_hdr hdr;   /* copy */
    struct instar_info_result info; /* copy; zero when hdr.error != 0 */
};

/* The name of a rejection reason, for messages. */
const char *result_bad_str(enum result_bad why);

/*
 * result_hdr_parse - validate the common header of a blob for op.
 * @blob, @len: the blob as vmm_run() returned it
 * @hdr: receives a copy of the header
 * Returns RESULT_OK or the reason for rejection.  On RESULT_OK the err_str
 * extent has been checked too.
 */
enum result_bad result_hdr_parse(const void *blob, size_t len, uint32_t op,
                                 struct instar_result_hdr *hdr);

/*
 * result_info_parse - validate an INSTAR_OP_INFO blob.  If the header
 * carries an error, only the header is required and checked; otherwise the
 * whole struct instar_info_result and everything it names.
 * @v: receives the view (borrowing blob, which must outlive it)
 * Returns RESULT_OK or the reason for rejection.
 */
enum result_bad result_info_parse(const void *blob, size_t len, struct result_info *v);

/*
 * result_str - copy a validated string out of the blob as a C string, cut
 * at its first NUL byte (QEMU keeps such names as C strings too).
 * @s: a string of the view's blob (absent strings give "")
 * Returns a malloc'd string (caller frees), NULL on OOM.
 */
char *result_str(const struct result_info *v, struct instar_str s);

/* True if s is present (off != 0). */
static inline bool result_str_present(struct instar_str s)
{
    return s.off != 0;
}

/* The i-th snapshot / bitmap, copied out (i below the validated count). */
void result_info_snapshot(const struct result_info *v, uint32_t i,
                          struct instar_info_snapshot *out);
void result_info_bitmap(const struct result_info *v, uint32_t i, struct instar_info_bitmap *out);

#endif /* CMD_RESULT_H */
