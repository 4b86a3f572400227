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
 * Repair (qemu-img check -r leaks|all, the fix argument: QEMU's
 * BdrvCheckMode) happens inside the same functions, where QEMU repairs:
 * refcounts set to the computed reference counts (compare_refcounts),
 * OFLAG_COPIED flags (check_oflag_copied), unaligned preallocated L2
 * entries zeroed, refcount blocks past the end of the file made part of
 * it, a new refcount structure placed where QEMU places it
 * (rebuild_refcount_structure), and the snapshot table read and rewritten
 * as QEMU's check -r all does (qcow2_check_read_snapshot_table,
 * qcow2_write_snapshots through formats/qcow2/alloc.h).  Writes go
 * through env->pwrite/flush/truncate (struct qcow2_repair_io) and never
 * past io->write_limit.  Before anything is written the image is walked
 * once silently; repair is refused (nothing written, -EIO after one line
 * saying why) when some references could not be counted (so the computed
 * counts could be too low), or when clearing unknown autoclear bits would
 * drop the snapshot table as QEMU's open does.  With FIX_ERRORS on a
 * version 3 image the corrupt bit is set (and flushed) before the first
 * write; it is left for the caller to clear after a clean re-validation
 * (qcow2_check_finish).  docs/repair.md has the safety model.
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
 * The writes of a repair (qcow2_repair), with env's opaque.  pwrite -
 * len bytes from buf at off (may extend the file); env->pread calls that
 * follow must see them.  flush - make every earlier write durable (an
 * ordering point).  truncate - set the file length.  Each returns 0 or
 * < 0 (the repair step then fails as QEMU's does on an I/O error).
 * discard - give a cluster whose refcount the repair dropped to 0 back
 * to the file system, as QEMU's QCOW2_DISCARD_ALWAYS does (NULL: never;
 * its failure is ignored, as QEMU ignores a failed discard).
 * write_limit: no write or truncate may end past it.
 */
struct qcow2_repair_io {
    int (*pwrite)(void *opaque, uint64_t off, const void *buf, size_t len);
    int (*flush)(void *opaque);
    int (*truncate)(void *opaque, uint64_t size);
    int (*discard)(void *opaque, uint64_t off, uint64_t len);
    uint64_t write_limit;
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
    /* instar's own: what qcow2_repair did (QCOW2_REPAIR_*); 0 for a check. */
    unsigned repair_flags;
};

/*
 * repair_flags: RAN - the image was opened for writing as qemu-img check
 * -r opens it (the repair was not refused), so qemu-img would clear the
 * dirty bit when closing it; KEEP_DIRTY - except here: QEMU's node became
 * unusable (a fatal corruption was signalled), or the snapshot table was
 * not read, so QEMU's header update at close would drop the snapshot
 * table (instar leaves the header alone then, docs/repair.md).
 */
#define QCOW2_REPAIR_RAN        (1u << 0)
#define QCOW2_REPAIR_KEEP_DIRTY (1u << 1)

/*
 * qcow2_check - qcow2_co_check_locked(): read and check the snapshot
 * table, compute every cluster's references, compare them with the
 * stored refcounts, check the OFLAG_COPIED flags, and fill res.  Each
 * problem is reported through env->report as qemu-img prints it, in its
 * order.
 *
 * img: the opened image (not modified).  env: reads, memory, reports.
 * fix: must be 0 here (read-only); non-zero fails at once with
 *     -QCOW2_CHECK_ENOTSUP, nothing reported: see qcow2_repair.
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
 * qcow2_repair - qemu-img check -r: qcow2_check with fix
 * (QCOW2_CHECK_FIX_LEAKS, with QCOW2_CHECK_FIX_ERRORS for "all"), writing
 * through io.  Lines ("Repairing ...", "Rebuilding refcount structure")
 * and res as qemu-img's first bdrv_check gives them; res's *_fixed
 * counts what was repaired.  fix 0 is qcow2_check.
 * Returns what qcow2_check returns, and also -EIO after "ERROR need to
 * rebuild refcount structures" (leaks only, nothing written), after a
 * refusal line (QCOW2_MSG_REPAIR_REFUSED_*, nothing written) or a failed
 * write.  The caller re-validates and then calls qcow2_check_finish.
 * With FIX_ERRORS the snapshot table is read as QEMU's repair reads it
 * (entries past the limits dropped, oversized extra data cut) and, when
 * that found corruptions, rewritten after the refcount repair
 * (qcow2_check_fix_snapshot_table).  Unknown autoclear feature bits are
 * cleared first, as QEMU's read-write open does; when the header names
 * internal snapshots that open would also drop the snapshot table
 * (QEMU's check-mode open has not read it), so the repair is refused.
 */
int qcow2_repair(const struct qcow2_check_image *img, const struct qcow2_check_env *env,
                 const struct qcow2_repair_io *io, unsigned fix, struct qcow2_check_result *res);

/* Incompatible feature bits qcow2_check_finish may clear. */
#define QCOW2_CHECK_CLEAR_DIRTY   (1u << 0)
#define QCOW2_CHECK_CLEAR_CORRUPT (1u << 1)

/*
 * qcow2_check_finish - QEMU's qcow2_mark_clean()/qcow2_mark_consistent()
 * after a repair: clear the dirty and/or corrupt bits (clear:
 * QCOW2_CHECK_CLEAR_*) in the incompatible features of h (the header as
 * the repair left it, version 3), after a flush so that the repair is
 * durable first, then flush again.  Call it only after a re-validation of
 * the repaired image came back clean for CLEAR_CORRUPT; CLEAR_DIRTY is
 * what QEMU does on closing any image it opened for repair (res
 * repair_flags RAN without KEEP_DIRTY).  Writes nothing when none of the
 * bits is set or h is version 2.
 * Returns 0, 1 when the header was written, or -QCOW2_CHECK_EIO.
 */
int qcow2_check_finish(const struct qcow2_header *h, const struct qcow2_check_env *env,
                       const struct qcow2_repair_io *io, unsigned clear);

/*
 * qcow2_check_strerror - glibc's strerror() text for the errno values
 * the check returns (e.g. 5 -> "Input/output error"); "Unknown error"
 * otherwise.
 */
const char *qcow2_check_strerror(int err);

#endif /* QCOW2_CHECK_H */
