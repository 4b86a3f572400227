/*
 * The qcow2 consistency check of qemu-img 7.2 ("qemu-img check"):
 * qcow2_co_check_locked() in block/qcow2.c with the snapshot table check
 * of block/qcow2-snapshot.c, the refcount walk of block/qcow2-refcount.c
 * (calculate_refcounts, compare_refcounts, check_oflag_copied) and the
 * bitmap accounting of block/qcow2-bitmap.c, in QEMU's order, so that the
 * per-problem lines come out as qemu-img prints them.
 *
 * Pure code: no I/O, no allocation, no printing of its own.  Reads,
 * memory and the diagnostic lines go through struct qcow2_check_env.
 * Memory use: the computed reference counts (one entry of the image's
 * refcount width per cluster of the file, grown as QEMU grows them when
 * references point past the end of the file), the refcount table, the
 * snapshot table's entry list, and a few cluster-sized buffers: L1/L2
 * tables, refcount blocks and bitmap tables are read a piece at a time.
 *
 * Repair (qemu-img check -r) is not implemented yet: the fix argument is
 * in place (QEMU's BdrvCheckMode) so that it can be added inside the same
 * functions; a non-zero fix returns -QCOW2_CHECK_ENOTSUP for now.
 */
#ifndef QCOW2_CHECK_H
#define QCOW2_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "check_err.h"
#include "header.h"

/* Linux errno values; functions return them negated, as QEMU does. */
#define QCOW2_CHECK_EIO     5
#define QCOW2_CHECK_ENOMEM  12
#define QCOW2_CHECK_EINVAL  22
#define QCOW2_CHECK_EFBIG   27
#define QCOW2_CHECK_ENOTSUP 95

/* QEMU's BdrvCheckMode. */
#define QCOW2_CHECK_FIX_LEAKS  (1u << 0)
#define QCOW2_CHECK_FIX_ERRORS (1u << 1)

/* Report flag: the line is an error_report() line ("qemu-img: " prefix). */
#define QCOW2_CHECK_REC_PREFIX (1u << 0)

struct qcow2_check_env {
    /*
     * pread - len bytes of the image file at off into buf; bytes past the
     * end of the file read as zeros (QEMU's file driver).  The library
     * never asks for a range QEMU's block layer would refuse
     * (qcow2_read_ok).  Returns 0, or < 0 for a failed read (the check
     * then fails with -EIO as QEMU's would).
     */
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    /*
     * report - one stderr line: code from check_err.h, its numeric
     * arguments (always 4) and its {s} string (s may be NULL when slen is
     * 0; not NUL-terminated; valid during the call only).  flags:
     * QCOW2_CHECK_REC_PREFIX.
     */
    void (*report)(void *opaque, int32_t code, uint16_t flags, const uint64_t args[4],
                   const char *s, size_t slen);
    /*
     * realloc - resize p (NULL: new block) to size bytes, keeping its
     * contents; NULL on failure with p untouched.  The caller may refuse
     * large sizes (a cap): the check then fails with QEMU's ENOMEM path.
     */
    void *(*realloc)(void *opaque, void *p, size_t size);
    /* free - release p from realloc (p may be NULL). */
    void (*free)(void *opaque, void *p);
    void *opaque;
};

/*
 * The image as qemu-img check opened it (BDRV_O_CHECK): a header
 * qcow2_header_parse accepted, its extensions (crypto header, bitmaps
 * extension: only when valid with the autoclear bit, as x->nb_bitmaps is)
 * and the length of the image file.  The snapshot table is read by the
 * check itself, as QEMU's check mode does.
 */
struct qcow2_check_image {
    const struct qcow2_header *h;
    const struct qcow2_exts *x;
    uint64_t file_size;
};

/* QEMU's BdrvCheckResult (with its BlockFragInfo). */
struct qcow2_check_result {
    int64_t corruptions;
    int64_t leaks;
    int64_t check_errors;
    int64_t corruptions_fixed;
    int64_t leaks_fixed;
    int64_t image_end_offset;
    int64_t total_clusters;
    int64_t allocated_clusters;
    int64_t fragmented_clusters;
    int64_t compressed_clusters;
};

/*
 * qcow2_check - qcow2_co_check_locked(): read and check the snapshot
 * table, compute every cluster's references, compare them with the
 * stored refcounts, check the OFLAG_COPIED flags, and fill res.  Each
 * problem is reported through env->report as qemu-img prints it, in its
 * order.
 *
 * img: the opened image (not modified).  env: reads, memory, reports.
 * fix: QCOW2_CHECK_FIX_* (not implemented yet: non-zero fails at once
 *     with -QCOW2_CHECK_ENOTSUP, nothing reported).
 * res: zeroed, then filled; meaningful when 0 is returned (on failure
 *     qemu-img prints only "Check failed: <strerror>").
 * Returns 0, or QEMU's negated errno: -EIO (unreadable metadata), -ENOMEM
 * (an allocation failed; check_errors counts it), -EFBIG (more than
 * INT_MAX clusters in the file), -EINVAL (a broken bitmap directory or
 * table), and the snapshot table's -EFBIG/-EINVAL.
 * Every allocation is released before returning.
 */
int qcow2_check(const struct qcow2_check_image *img, const struct qcow2_check_env *env,
                unsigned fix, struct qcow2_check_result *res);

/*
 * qcow2_check_strerror - glibc's strerror() text for the errno values
 * the check returns (e.g. 5 -> "Input/output error"); "Unknown error"
 * otherwise.
 */
const char *qcow2_check_strerror(int err);

#endif /* QCOW2_CHECK_H */
