/*
 * instar check: qemu's ImageCheck as the host renders it, and the
 * printer of streamed check diagnostics.  Exported for the unit tests;
 * cmd_check() (cmds.h) is the handler.
 */
#ifndef CMD_IMGCHECK_H
#define CMD_IMGCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "instar/result.h"

struct qobj;

/* qemu's ImageCheck, as collect_image_check() fills it. */
struct check_report {
    const char *filename; /* as given on the command line (borrowed) */
    char format[32];
    int64_t check_errors;
    int64_t image_end_offset;
    int64_t corruptions;
    int64_t leaks;
    int64_t corruptions_fixed;
    int64_t leaks_fixed;
    int64_t total_clusters;
    int64_t allocated_clusters;
    int64_t fragmented_clusters;
    int64_t compressed_clusters;
};

/*
 * check_report_from_result - c from a validated INSTAR_OP_CHECK result
 * (cmd/result.h: result_check_parse) for the image named filename
 * (borrowed: must outlive c).
 */
void check_report_from_result(struct check_report *c, const char *filename,
                              const struct instar_check_result *r);

/* dump_human_image_check() of c to f (qprintf: the caller handles -q). */
void check_dump_human(FILE *f, const struct check_report *c);

/*
 * check_to_qobj - c as the QAPI ImageCheck dict, optional members only
 * when non-zero.  Returns a new tree (caller frees; check qobj_failed()).
 */
struct qobj *check_to_qobj(const struct check_report *c);

/*
 * check_dump_json - dump_json_image_check(): c as pretty JSON and a
 * newline.  Returns 0, or -1 on OOM or a failed stream.
 */
int check_dump_json(FILE *f, const struct check_report *c);

/*
 * check_print_batch - validate a whole INSTAR_HC_REPORT batch
 * (result_report_validate) and, only if it is valid, print each record
 * as one line on f ("<prog>: " first with INSTAR_REC_PREFIX).
 * Returns 0, or -1 (nothing printed) if the batch is malformed.
 */
int check_print_batch(FILE *f, const void *recs, size_t len);

/*
 * check_report_cb - check_print_batch as a vmm_config report callback
 * (opaque: the FILE *): check -r's lines, and a dirty image's repair when
 * another command opens it read-write (resize, bench, convert, rebase).
 */
int check_report_cb(void *opaque, const void *recs, size_t len);

#endif /* CMD_IMGCHECK_H */
