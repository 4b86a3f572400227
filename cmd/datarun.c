/*
 * See datarun.h.
 */
#include <stdio.h>
#include <string.h>

#include "datarun.h"
#include "instar/errors.h"
#include "report.h"
#include "qcow2/qcow2_err.h"

/* Keep only printable ASCII of a sandbox detail. */
static void sanitize(char *s, size_t n)
{
    for (size_t i = 0; i < n && s[i]; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            s[i] = '?';
}

/*
 * The silence watchdog of a run that unlocks an encrypted image: PBKDF2
 * makes no hypercall, and qemu-img's default iter-time (2 s of qemu's
 * PBKDF2, which uses SHA-NI) asks for several million iterations per key
 * slot, 10-20 s of nettle's portable C in the guest.  The CPU budget
 * (INSTAR_CPU_BUDGET_S) still bounds the run, and formats/luks refuses
 * headers asking for more than LUKS_WORK_MAX before the work.
 */
#define DATARUN_UNLOCK_WATCHDOG_MS 300000u

/*
 * How many images up the chain node is opened from (0: a top), counted
 * through gr's backing links; node is the guest's (err_args[3]), so an
 * index out of range counts as a top.
 */
static unsigned node_depth(const struct graph *gr, uint64_t node)
{
    unsigned depth = 0;
    uint32_t n, j;

    if (node >= gr->g.nnodes || gr->g.nnodes > INSTAR_NODE_MAX)
        return 0;
    for (n = (uint32_t)node; depth < INSTAR_NODE_MAX; depth++) {
        for (j = 0; j < gr->g.nnodes && gr->g.nodes[j].backing != n; j++)
            ;
        if (j == gr->g.nnodes)
            break;
        n = j;
    }
    return depth;
}

static int run(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
               const struct graph *gr, const char *filename, struct instar_data_result *v,
               bool report_error_hdr)
{
    struct vmm_outcome out;
    struct vmm_config unlock_cfg;
    enum result_bad why;
    int ret = -1;

    for (uint32_t i = 0; i < gr->g.nnodes && i < INSTAR_NODE_MAX; i++) {
        if (gr->g.node_key[i]) {
            if (cfg)
                unlock_cfg = *cfg;
            else
                memset(&unlock_cfg, 0, sizeof(unlock_cfg));
            if (unlock_cfg.watchdog_ms < DATARUN_UNLOCK_WATCHDOG_MS)
                unlock_cfg.watchdog_ms = DATARUN_UNLOCK_WATCHDOG_MS;
            cfg = &unlock_cfg;
            break;
        }
    }
    memset(&out, 0, sizeof(out));
    if (vmm_run(cfg, op, args, args_len, gr->devs, gr->ndevs, &out) != 0) {
        sanitize(out.detail, sizeof(out.detail));
        report_error("Could not read '%s': sandbox failure: %s", filename,
                     out.detail[0] ? out.detail : "unknown error");
        goto out;
    }
    why = result_data_parse(out.result, out.result_len, op, v);
    if (why != RESULT_OK) {
        report_error("Could not read '%s': sandbox failure: invalid result (%s)", filename,
                     result_bad_str(why));
        goto out;
    }
    report_guest_warning(v->hdr.warn_code, v->hdr.warn_count, v->hdr.err_args[2]);
    if (v->hdr.error != 0 && !report_error_hdr) {
        ret = 1;
        goto out;
    }
    if (v->hdr.error != 0) {
        const char *s = v->hdr.err_str.off ? (const char *)out.result + v->hdr.err_str.off : NULL;

        /* Loading an internal snapshot (-l) is not part of the open in qemu-img. */
        if (QCOW2_ERR_IS_SNAPSHOT_LOAD(v->hdr.error))
            fprintf(stderr, "%s: Failed to load snapshot: ", report_progname());
        else
            fprintf(stderr, "%s: Could not open '%s': ", report_progname(), filename);
        /* A backing file's key (bdrv_open_backing_file() prefixes each level). */
        if (v->hdr.error == INSTAR_ERR_LUKS_PASSWORD)
            for (unsigned d = node_depth(gr, v->hdr.err_args[3]); d > 0; d--)
                fputs("Could not open backing file: ", stderr);
        report_code_render_to(stderr, v->hdr.error, v->hdr.err_args, s, v->hdr.err_str.len);
        fputc('\n', stderr);
        goto out;
    }
    if (v->corrupt_code) {
        fputs("qcow2: Image is corrupt: ", stderr);
        report_code_render_to(stderr, v->corrupt_code, v->corrupt_args, NULL, 0);
        fputs("; further non-fatal corruption events will be suppressed\n", stderr);
    }
    ret = 0;
out:
    vmm_outcome_release(&out);
    return ret;
}

int datarun(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
            const struct graph *gr, const char *filename, struct instar_data_result *v)
{
    return run(cfg, op, args, args_len, gr, filename, v, true);
}

int datarun_status(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
                   const struct graph *gr, const char *filename, struct instar_data_result *v)
{
    return run(cfg, op, args, args_len, gr, filename, v, false);
}
