/*
 * Validation of the result blob a guest returns (include/instar/result.h).
 *
 * Everything in the blob is untrusted guest output.  result_info_parse()
 * checks the whole blob once (magic, ABI version, op, size, every string
 * and array extent, bounded counts, enumerations); after it succeeds the
 * typed accessors below cannot read outside the blob.
 *
 * String budget: a guest lays every string of a result out once
 * (guest/result.c), so the strings of a valid result are together no
 * longer than the blob.  result_info_parse() requires that, because
 * strings may point at the same bytes: without it 65,536 snapshots naming
 * one 64 KiB string make a 3 MiB blob that the host would copy 8 GiB out
 * of.  The host therefore never copies more string bytes out of a result
 * than the result is long (at most INSTAR_RESULT_MAX), and it cuts a
 * string to the length it keeps before it copies it (result_strn).
 */
#ifndef CMD_RESULT_H
#define CMD_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "instar/abi.h"
#include "instar/result.h"

/* Bounds on counts, from QEMU: QCOW_MAX_SNAPSHOTS and QCOW2_MAX_BITMAPS. */
#define RESULT_MAX_SNAPSHOTS 65536
#define RESULT_MAX_BITMAPS   65535

/* qcow2 cluster sizes (qcow2.txt: cluster_bits 9..21). */
#define RESULT_QCOW2_CLUSTER_MIN 512
#define RESULT_QCOW2_CLUSTER_MAX (2u << 20)

/* True if cs is a cluster size a qcow2 image can have: a power of two, 512 B..2 MiB. */
static inline bool result_qcow2_cluster_size_ok(uint64_t cs)
{
    return cs >= RESULT_QCOW2_CLUSTER_MIN && cs <= RESULT_QCOW2_CLUSTER_MAX && !(cs & (cs - 1));
}

/* Why a blob was rejected (for the "sandbox returned a bad result" message). */
enum result_bad {
    RESULT_OK = 0,
    RESULT_BAD_SHORT,     /* shorter than its header or fixed struct */
    RESULT_BAD_MAGIC,     /* wrong magic */
    RESULT_BAD_ABI,       /* wrong ABI version */
    RESULT_BAD_OP,        /* not the operation asked for */
    RESULT_BAD_SIZE,      /* header size != blob length, or too large */
    RESULT_BAD_STR,       /* a string outside the blob or too long */
    RESULT_BAD_ARRAY,     /* an array outside the blob or too many elements */
    RESULT_BAD_VALUE,     /* an enumeration or field out of its range */
    RESULT_BAD_STR_TOTAL, /* the strings together longer than the blob */
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
 * whole struct instar_info_result and everything it names, and the string
 * budget (above).  A qcow2 result (INSTAR_INFO_QCOW2, or format "qcow2")
 * must carry a qcow2 cluster size (result_qcow2_cluster_size_ok).
 * @v: receives the view (borrowing blob, which must outlive it)
 * Returns RESULT_OK or the reason for rejection.
 */
enum result_bad result_info_parse(const void *blob, size_t len, struct result_info *v);

/*
 * result_strn - copy a validated string out of the blob as a C string, cut
 * at its first NUL byte (QEMU keeps such names as C strings too) and after
 * max bytes, before anything is allocated.
 * @s: a string of the view's blob (absent strings give "")
 * @max: the most bytes kept (the NUL not counted)
 * Returns a malloc'd string of at most max + 1 bytes (caller frees), NULL
 * on OOM.
 */
char *result_strn(const struct result_info *v, struct instar_str s, size_t max);

/* result_strn without a cut beyond the string's own length. */
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

/* A validated INSTAR_OP_CHECK result (a copy: the blob is not needed after). */
struct result_check {
    struct instar_result_hdr hdr;
    struct instar_check_result check; /* zero when hdr.error != 0 */
};

/*
 * result_check_parse - validate an INSTAR_OP_CHECK blob: the header (an
 * error result may be just the header), then the whole struct: format
 * a NUL-terminated driver name, only known flags, every counter
 * non-negative, ret 0 or a negated errno (-4095..-1).
 * @v: receives copies; v->blob-relative strings (err_str) stay in blob
 * Returns RESULT_OK or the reason for rejection.
 */
enum result_bad result_check_parse(const void *blob, size_t len, struct result_check *v);

/* Message codes a check or repair may stream (formats/qcow2/check_err.h). */
#define RESULT_REPORT_CODE_MIN 2000
#define RESULT_REPORT_CODE_MAX 2499
/* The lines of parallels' check (formats/parallels/parallels_err.h). */
#define RESULT_REPORT_PRL_MIN 5680
#define RESULT_REPORT_PRL_MAX 5699
/* vdi's check lines (formats/vdi/vdi_err.h: VDI_MSG_*). */
#define RESULT_REPORT_VDI_MIN 6020
#define RESULT_REPORT_VDI_MAX 6029
/* vmdk_co_check()'s lines (formats/vmdk/vmdk_err.h) */
#define RESULT_REPORT_VMDK_MIN 4040
#define RESULT_REPORT_VMDK_MAX 4049

/*
 * result_report_validate - validate a whole INSTAR_HC_REPORT batch
 * before anything in it is printed: packed records (struct
 * instar_report_rec, slen string bytes, zero padding to a multiple of 8)
 * that end exactly at len; each code a known check message code
 * (RESULT_REPORT_CODE_MIN..MAX or RESULT_REPORT_VDI_MIN..MAX, with a
 * template), only INSTAR_REC_* flags.
 * An empty batch is valid.
 * Returns RESULT_OK or the reason for rejection.
 */
enum result_bad result_report_validate(const void *batch, size_t len);

/*
 * result_report_next - walk a batch that result_report_validate accepted.
 * @off: in/out byte offset of the next record (start at 0)
 * @rec: receives a copy of the record; @s receives its string bytes
 *       (rec->slen of them, pointing into batch)
 * Returns true while a record was returned, false at the end.
 */
bool result_report_next(const void *batch, size_t len, size_t *off, struct instar_report_rec *rec,
                        const char **s);

/*
 * result_salvage_validate - validate a whole convert --salvage batch
 * (include/instar/abi.h, INSTAR_CONVERT_REC_*) before anything in it is
 * printed: whole struct instar_report_rec records with slen 0 and flags
 * 0; BSTAT and READ with an offset <= INT64_MAX and an errno 1..4095;
 * otherwise a known qcow2 corruption code (formats/qcow2/data_err.h).
 * Walk an accepted batch as an array of records.
 * Returns RESULT_OK, RESULT_BAD_SIZE (not whole records) or RESULT_BAD_VALUE.
 */
enum result_bad result_salvage_validate(const void *batch, size_t len);

/*
 * result_data_parse - validate a map/compare/convert blob (struct
 * instar_data_result) for op: the header, and without an error the whole
 * struct, a known status and a known corruption code.  *v is a copy.
 */
enum result_bad result_data_parse(const void *blob, size_t len, uint32_t op,
                                  struct instar_data_result *v);

#endif /* CMD_RESULT_H */
