/*
 * Running a data-path planner (map, compare, convert) over a graph of
 * opened images, and printing what every one of them prints the same way:
 * the sandbox's failures, open errors, and qcow2's corruption line.
 */
#ifndef CMD_DATARUN_H
#define CMD_DATARUN_H

#include "graph.h"
#include "result.h"

/*
 * datarun - boot the guest for op with args over gr's devices and
 * validate its result into *v.  cfg may be NULL.  Returns 0 (v valid;
 * the corruption line, if any, already printed), or -1 after reporting
 * "qemu-img: <what>: ..." for a sandbox failure, an invalid result or
 * an error in the result header (an open failure: "Could not open
 * 'FILENAME': <message>").
 */
int datarun(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
            const struct graph *gr, const char *filename, struct instar_data_result *v);

/*
 * datarun_status - datarun, except that an error in the result header is
 * left to the caller: returns 1 with v->hdr.error (and its arguments) set,
 * nothing printed.  Returns 0 and -1 as datarun does.
 */
int datarun_status(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
                   const struct graph *gr, const char *filename, struct instar_data_result *v);

#endif /* CMD_DATARUN_H */
