/*
 * -l snapshot_param (convert, measure): see snaparg.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datarun.h"
#include "info.h"
#include "object.h"
#include "report.h"
#include "snaparg.h"
#include "qcow2/qcow2_err.h"

static const struct opt_desc snapshot_descs[] = {
    {"snapshot.id", OPT_STRING, "snapshot id", NULL},
    {"snapshot.name", OPT_STRING, "snapshot name", NULL},
    {NULL, 0, NULL, NULL},
};

/*
 * qemu_opts_parse_noisily(&internal_snapshot_opts, params, false): the
 * options' id (the first "id=", checked and unique in the list, as
 * qemu_opts_create() wants it; *prev_id keeps the last one), then the
 * parameters.  Returns 0, or -1 after reporting the option error.
 */
static int snapshot_opts_parse(struct opt_list *sn, const char *params, char **prev_id)
{
    char msg[4096], hint[4096], *id = NULL;

    for (const char *p = params; *p && !id;) {
        char *name, *value;

        p = opts_next(p, NULL, &name, &value);
        if (name && !strcmp(name, "id")) {
            id = value;
            value = NULL;
        }
        free(name);
        free(value);
    }
    if (id && !object_id_wellformed(id)) {
        object_report_bad_id();
        free(id);
        return -1;
    }
    if (id && *prev_id && !strcmp(id, *prev_id)) {
        report_error("Duplicate ID '%s' for snapshot", id);
        free(id);
        return -1;
    }
    opts_free(sn);
    memset(sn, 0, sizeof(*sn));
    opts_append(sn, snapshot_descs);
    if (opts_parse(sn, params, msg, hint, sizeof(msg)) < 0) {
        report_error("%s", msg);
        fputs(hint, stderr);
        free(id);
        return -1;
    }
    if (id) {
        free(*prev_id);
        *prev_id = id;
    }
    return 0;
}

/*
 * find_snapshot_by_id_and_name() over the snapshot table the guest
 * described.  Returns the index, -ENOENT-like -1 when there is none, or
 * -2 after reporting for a source that cannot load snapshots.
 */
static int snapshot_load(const struct image_info *ii, const char *id, const char *name)
{
    if (!id && !name) {
        report_error("Failed to load snapshot: snapshot_id and name are both NULL");
        return -2;
    }
    if (strcmp(ii->format, "qcow2")) {
        report_error("Failed to load snapshot: Block format '%s' used by device '' does not "
                     "support temporarily loading internal snapshots",
                     ii->format);
        return -2;
    }
    /* qcow2_snapshot_load_tmp() finds them with an external data file too. */
    const struct info_snapshot *tab = ii->has_external_data ? ii->hidden_snapshots : ii->snapshots;
    uint32_t n = ii->has_external_data ? ii->nhidden_snapshots : ii->nsnapshots;

    for (uint32_t i = 0; i < n; i++) {
        const struct info_snapshot *sn = &tab[i];

        if ((!id || !strcmp(sn->id, id)) && (!name || !strcmp(sn->name, name)))
            return (int)i;
    }
    return -1;
}

/*
 * qcow2_snapshot_load_tmp() past the lookup: a guest opens the source
 * with snapshot index's L1 table (the map op over nothing), so that the
 * table's errors come where qemu-img reports them, whatever the target.
 * Returns 0; 1 for an invalid table offset (-EINVAL) left unreported
 * when retry is set (bdrv_snapshot_load_tmp_by_id_or_name then looks the
 * name up); or -1 after reporting.
 */
static int snapshot_check(struct open_chain *oc, const char *filename, uint64_t mem_size, int index,
                          bool retry)
{
    struct instar_map_args args;
    struct instar_data_result v;
    struct vmm_config cfg;
    struct graph gr;
    char *msg;
    int r;

    graph_init(&gr);
    memset(&args, 0, sizeof(args));
    if (graph_add_chain(&gr, oc, filename, &args.top) < 0)
        return -1;
    args.g = gr.g;
    args.g.snapshot = (uint32_t)index + 1;
    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = mem_size;
    r = datarun_status(&cfg, INSTAR_OP_MAP, &args, sizeof(args), &gr, filename, &v);
    if (r <= 0)
        return r;
    if (retry && v.hdr.error == QCOW2_ERR_SNAP_L1_OFFSET)
        return 1;
    msg = report_code_render(v.hdr.error, v.hdr.err_args, NULL, 0);
    if (QCOW2_ERR_IS_SNAPSHOT_LOAD(v.hdr.error))
        report_error("Failed to load snapshot: %s", msg ? msg : strerror(ENOMEM));
    else
        report_error("Could not open '%s': %s", filename, msg ? msg : strerror(ENOMEM));
    free(msg);
    return -1;
}

static const char *opt_str(const struct opt_list *l, const char *name)
{
    const struct opt_val *v = opts_find(l, name);

    return v ? v->str : NULL;
}

int snap_arg_parse(struct snap_arg *a, const char *param)
{
    if (strncmp(param, "snapshot.", 9)) {
        a->name = param;
        return 0;
    }
    if (snapshot_opts_parse(&a->sn, param, &a->prev_id) < 0) {
        report_error("Failed in parsing snapshot param '%s'", param);
        return -1;
    }
    a->have_sn = true;
    return 0;
}

bool snap_arg_given(const struct snap_arg *a)
{
    return a->name || a->have_sn;
}

bool snap_arg_by_name(const struct snap_arg *a)
{
    return a->name && !a->have_sn;
}

int snap_arg_select(const struct snap_arg *a, struct open_chain *oc, const char *filename,
                    uint64_t mem_size)
{
    const struct image_info *ii = oc->img[0].info;
    int r, c;

    if (snap_arg_by_name(a)) {
        /* bdrv_snapshot_load_tmp_by_id_or_name(): the id, then (-ENOENT, -EINVAL) the name. */
        r = snapshot_load(ii, a->name, NULL);
        if (r >= 0) {
            c = snapshot_check(oc, filename, mem_size, r, true);
            if (c <= 0)
                return c < 0 ? -1 : r;
        }
        if (r != -2)
            r = snapshot_load(ii, NULL, a->name);
    } else {
        /* snapshot.* options win over a plain -l NAME, whatever their order. */
        r = snapshot_load(ii, opt_str(&a->sn, "snapshot.id"), opt_str(&a->sn, "snapshot.name"));
    }
    if (r == -1)
        report_error("Failed to load snapshot: Can't find snapshot");
    if (r < 0)
        return -1;
    return snapshot_check(oc, filename, mem_size, r, false) < 0 ? -1 : r;
}

void snap_arg_release(struct snap_arg *a)
{
    opts_free(&a->sn);
    free(a->prev_id);
    memset(a, 0, sizeof(*a));
}
