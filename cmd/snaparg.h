/*
 * -l snapshot_param of convert and measure: qemu-img's parsing of it
 * (internal_snapshot_opts, or a plain id or name) and
 * bdrv_snapshot_load_tmp[_by_id_or_name]() up to the snapshot's L1
 * table, checked by a guest before anything is written.
 */
#ifndef INSTAR_CMD_SNAPARG_H
#define INSTAR_CMD_SNAPARG_H

#include <stdbool.h>
#include <stdint.h>

#include "open.h"
#include "opts.h"

struct snap_arg {
    const char *name;   /* -l NAME (the last one) */
    struct opt_list sn; /* -l snapshot.id=..,snapshot.name=.. (the last one) */
    bool have_sn;
    char *prev_id; /* the options' last id= */
};

/* snap_arg_parse - one -l argument.  Returns 0, or -1 after reporting. */
int snap_arg_parse(struct snap_arg *a, const char *param);

/* snap_arg_given - whether -l was given. */
bool snap_arg_given(const struct snap_arg *a);

/*
 * snap_arg_given_name - -l NAME given and no snapshot.* options (which win
 * whatever their order): convert refuses it for several sources.
 */
bool snap_arg_by_name(const struct snap_arg *a);

/*
 * snap_arg_select - the snapshot -l names, in the top image of oc
 * (opened from filename, as typed for messages), as qemu-img loads it: its
 * index in the snapshot table (for struct instar_graph's snapshot), or -1
 * after reporting.  mem_size: guest RAM for the check run.
 */
int snap_arg_select(const struct snap_arg *a, struct open_chain *oc, const char *filename,
                    uint64_t mem_size);

void snap_arg_release(struct snap_arg *a);

#endif /* INSTAR_CMD_SNAPARG_H */
