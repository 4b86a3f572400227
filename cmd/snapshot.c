/*
 * instar snapshot: qemu-img 7.2's img_snapshot().
 *
 * -l lists the internal snapshots as info describes them (dump_snapshots:
 * info's table renderer); -c, -d and -a run the guest's snapshot planner
 * (guest/plan_snapshot.c, formats/qcow2/snapop.c) over the image opened
 * read-write, which is the only code that reads or writes its metadata.
 * Without an action qemu-img opens the image read-write and does nothing.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "cmds.h"
#include "graph.h"
#include "info.h"
#include "object.h"
#include "open.h"
#include "qcow2/resize.h"
#include "qcow2/snapop.h"
#include "imgcheck.h"
#include "report.h"
#include "result.h"
#include "vmm.h"

enum {
    OPTION_OBJECT = 258,
    OPTION_IMAGE_OPTS = 259,
};

enum {
    SNAPSHOT_LIST = 1,
    SNAPSHOT_CREATE,
    SNAPSHOT_APPLY,
    SNAPSHOT_DELETE
};

/* The largest qcow2 cluster: every allocation may round up to one. */
#define SNAPSHOT_MAX_CLUSTER (2ULL << 20)
/* QCOW_MAX_L1_SIZE: no L1 table (active or a snapshot's) is larger. */
#define SNAPSHOT_MAX_L1_BYTES (32ULL << 20)
/* QCOW_MAX_SNAPSHOTS_SIZE: the largest snapshot table. */
#define SNAPSHOT_MAX_TABLE (64ULL << 20)
/* Guest RAM: the heap, two L1 tables, the table and one L2 table at their largest. */
#define SNAPSHOT_GUEST_MEM ((256ULL << 20) + 4 * SNAPSHOT_MAX_L1_BYTES + 2 * SNAPSHOT_MAX_TABLE)

/* dump_snapshots(): nothing at all when the image has none (or cannot have any). */
static void snapshot_list(const struct image_info *ii)
{
    uint32_t i;

    if (!ii->nsnapshots)
        return;
    printf("Snapshot list:\n");
    info_snapshot_dump(stdout, NULL);
    printf("\n");
    for (i = 0; i < ii->nsnapshots; i++) {
        info_snapshot_dump(stdout, &ii->snapshots[i]);
        printf("\n");
    }
}

static const char *snapop_msg(int code, int *kind)
{
    switch (code) {
#define SNAPOP_MSG_CASE(name, c, k, msg)                                                           \
    case c:                                                                                        \
        *kind = k;                                                                                 \
        return msg;
        QCOW2_SNAPOP_ERRORS(SNAPOP_MSG_CASE)
#undef SNAPOP_MSG_CASE
    }
    return NULL;
}

/* error_setg_errno() texts of qcow2_snapshot_delete() and the L1 table check. */
static const char *stage_msg(int stage)
{
    switch (stage) {
    case QCOW2_SNAPOP_STAGE_L1_TOO_LARGE:
        return "Snapshot L1 table too large";
    case QCOW2_SNAPOP_STAGE_L1_OFFSET:
        return "Snapshot L1 table offset invalid";
    case QCOW2_SNAPOP_STAGE_REMOVE:
        return "Failed to remove snapshot from snapshot list";
    case QCOW2_SNAPOP_STAGE_FREE:
        return "Failed to free the cluster and L1 table";
    case QCOW2_SNAPOP_STAGE_UPDATE:
        return "Failed to update snapshot status in disk";
    case QCOW2_SNAPOP_STAGE_SIZE_ALIGN:
        return "The new size must be a multiple of 512";
    case QCOW2_SNAPOP_STAGE_BITMAPS:
        return "Device has active dirty bitmaps";
    }
    return NULL;
}

/*
 * How far the guest may extend the file: a new L1 table and a new
 * snapshot table at their largest, refcount blocks for them and a new
 * refcount table (less than 1/32 of what they describe), and a cluster of
 * rounding for each allocation.  -a may first truncate the image to the
 * snapshot's size: a grow writes a new L1 table (counted once more), a
 * shrink gives every L1 entry past the new end an L2 table of its own
 * before freeing them (at most one 512-byte table per entry of the
 * largest L1 table, as resize allows), and a grow may copy its partial
 * last cluster.
 */
static uint64_t snapshot_write_limit(uint64_t file_size, bool apply, uint32_t nbitmaps)
{
    uint64_t add = SNAPSHOT_MAX_L1_BYTES + SNAPSHOT_MAX_TABLE + 8 * SNAPSHOT_MAX_CLUSTER;

    /*
     * Persistent bitmaps are stored again at close: their data and tables
     * anew (no more than the file holds now), a new directory (at most
     * 64 MiB), a cluster of rounding for each table.
     */
    if (nbitmaps)
        add += file_size + (64ULL << 20) + (uint64_t)nbitmaps * 2 * SNAPSHOT_MAX_CLUSTER;

    /* (and the copy of a partial last cluster: one cluster more) */
    if (apply)
        add += SNAPSHOT_MAX_L1_BYTES + (SNAPSHOT_MAX_L1_BYTES / 8) * 512 + SNAPSHOT_MAX_CLUSTER;
    uint64_t limit = file_size + add;

    return limit + limit / 32 + 8 * SNAPSHOT_MAX_CLUSTER;
}

/* Run the guest's planner for action on the open qcow2 image.  Returns 0 or 1 after reporting. */
static int snapshot_run(struct open_chain *oc, int action, const char *name)
{
    struct open_image *im = &oc->img[0];
    struct instar_snapshot_args args;
    struct instar_result_hdr hdr;
    struct vmm_config cfg;
    struct vmm_outcome out;
    struct vmm_dev devs[2];
    struct graph *gr = NULL;
    struct timeval tv;
    struct stat st;
    uint64_t err, stage, not_found;
    int kind = 0;
    int ret = 1;
    unsigned ndev = 1;

    memset(&args, 0, sizeof(args));
    args.action = action == SNAPSHOT_CREATE   ? INSTAR_SNAPSHOT_CREATE
                  : action == SNAPSHOT_DELETE ? INSTAR_SNAPSHOT_DELETE
                                              : INSTAR_SNAPSHOT_APPLY;
    /* pstrcpy() into QEMUSnapshotInfo.name: at most 255 bytes. */
    snprintf(args.name, sizeof(args.name), "%s", name);
    /* g_get_real_time(), split as img_snapshot() splits it. */
    gettimeofday(&tv, NULL);
    args.date_sec = (uint32_t)tv.tv_sec;
    args.date_nsec = (uint32_t)tv.tv_usec * 1000;
    /* bdrv_co_truncate() of -a to a larger snapshot zero-fills over a longer backing file. */
    if (oc->n > 1 && oc->img[1].info) {
        args.flags |= INSTAR_SNAPSHOT_BACKING;
        args.backing_len = (uint64_t)oc->img[1].info->virtual_size;
    }

    if (fstat(im->fd, &st) != 0)
        st = im->st;
    memset(devs, 0, sizeof(devs));
    devs[0].fd = im->fd;
    devs[0].size = (uint64_t)st.st_size;
    devs[0].write_limit =
        snapshot_write_limit(devs[0].size, action == SNAPSHOT_APPLY, (uint32_t)im->info->nbitmaps);
    devs[0].flags = INSTAR_DEV_READ | INSTAR_DEV_WRITE;
    /*
     * An image with bitmaps and an external data file: the node the
     * guest opens for the bitmaps has the data file (read-write, as qemu
     * opens it; nothing is written to it).
     */
    if (im->info->nbitmaps && im->data_fd >= 0) {
        struct stat ds;

        if (fstat(im->data_fd, &ds) != 0) {
            report_error("Could not get the size of '%s': %s", im->data_name ? im->data_name : "",
                         strerror(errno));
            goto out;
        }
        devs[1].fd = im->data_fd;
        devs[1].size = (uint64_t)ds.st_size;
        devs[1].write_limit = (uint64_t)ds.st_size;
        devs[1].flags = INSTAR_DEV_READ | INSTAR_DEV_WRITE;
        ndev = 2;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = SNAPSHOT_GUEST_MEM;
    cfg.report = check_report_cb; /* a dirty image's repair at open, as check -r prints it */
    cfg.report_opaque = stderr;
    memset(&out, 0, sizeof(out));

    /*
     * -a to a larger snapshot from a size inside a cluster may copy that
     * cluster: its old data is read through the backing chain, as resize
     * reads it (graph_for_planner(), INSTAR_SNAPSHOT_CHAIN; qcow2's
     * snapshots refuse an image with a data file before that).  An
     * encrypted image writes guest data only for the zero-fill over a
     * longer backing file: its key then unlocks it for the cipher.
     */
    if (action == SNAPSHOT_APPLY && im->data_fd < 0 &&
        (!im->info->encrypted || (oc->key && oc->n > 1))) {
        uint64_t cur = (uint64_t)im->info->virtual_size & ~UINT64_C(511);
        uint64_t cs = (uint64_t)im->info->cluster_size;

        if (cs && (cur & (cs - 1))) {
            gr = malloc(sizeof(*gr));
            if (!gr) {
                report_error("Snapshot of '%s': Cannot allocate memory", im->name);
                goto out;
            }
            if (graph_for_planner(gr, oc, im->name, devs, ndev, "Snapshot of") < 0)
                goto out;
            args.chain = gr->g;
            args.flags |= INSTAR_SNAPSHOT_CHAIN;
        }
    }
    if (open_run_planner(&cfg, INSTAR_OP_SNAPSHOT, &args, sizeof(args), gr ? gr->devs : devs,
                         gr ? gr->ndevs : ndev, &out, &hdr, "Snapshot of", im->name) < 0)
        goto out;
    if (hdr.error >= 3200 && hdr.error < 3300) {
        int kind = 0;
        const char *msg = snapop_msg(hdr.error, &kind);

        if (!msg)
            report_error("Unknown error %d from the sandbox", hdr.error);
        else if (kind == 2)
            report_error("Could not open '%s': %s", im->name, msg);
        else
            report_error("%s", msg);
        goto out;
    }
    if (hdr.error != 0) {
        const char *s = hdr.err_str.off ? (const char *)out.result + hdr.err_str.off : NULL;

        fprintf(stderr, "%s: Could not open '%s': ", report_progname(), im->name);
        report_code_render_to(stderr, hdr.error, hdr.err_args, s, hdr.err_str.len);
        fputc('\n', stderr);
        goto out;
    }
    err = hdr.err_args[0];
    stage = hdr.err_args[1];
    not_found = hdr.err_args[2];
    if (err > 4095 || stage > QCOW2_SNAPOP_STAGE_BITMAPS || not_found > 1 ||
        (stage == QCOW2_SNAPOP_STAGE_RESIZE && !resize_msg((int)hdr.err_args[3], &kind))) {
        report_error("Snapshot of '%s': sandbox failure: invalid result", im->name);
        goto out;
    }
    switch (action) {
    case SNAPSHOT_CREATE:
        if (err) {
            report_error("Could not create snapshot '%s': %d (%s)", name, -(int)err,
                         strerror((int)err));
            goto out;
        }
        break;
    case SNAPSHOT_DELETE:
        if (not_found) {
            report_error("Could not delete snapshot '%s': snapshot not found", name);
            goto out;
        }
        if (err) {
            const char *what = stage_msg((int)stage);

            if (what && stage <= QCOW2_SNAPOP_STAGE_L1_OFFSET)
                report_error("Could not delete snapshot '%s': %s", name, what);
            else if (what)
                report_error("Could not delete snapshot '%s': %s: %s", name, what,
                             strerror((int)err));
            else
                report_error("Could not delete snapshot '%s': %s", name, strerror((int)err));
            goto out;
        }
        break;
    default:
        if (err) {
            const char *what = stage_msg((int)stage);

            /* qcow2_snapshot_goto() prints the table check's and the truncation's errors itself. */
            if (stage == QCOW2_SNAPOP_STAGE_BITMAPS) {
                /* bdrv_snapshot_goto()'s refusal, before anything is written. */
                report_error("Could not apply snapshot '%s': %s", name, what);
                goto out;
            }
            if (stage == QCOW2_SNAPOP_STAGE_RESIZE) {
                const char *msg = resize_msg((int)hdr.err_args[3], &kind);

                if (kind == QCOW2_RESIZE_MSG_ERRNO)
                    report_error("%s: %s", msg, strerror((int)err));
                else
                    report_error("%s", msg);
            } else if (what)
                report_error("%s", what);
            report_error("Could not apply snapshot '%s': Failed to load snapshot: %s", name,
                         strerror((int)err));
            goto out;
        }
        break;
    }
    ret = 0;
out:
    vmm_outcome_release(&out);
    free(gr);
    return ret;
}

int cmd_snapshot(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *filename, *name = NULL;
    bool image_opts = false, force_share = false;
    int c, action = 0, ret = 1;
    struct open_chain oc;
    struct open_image *im;

    for (;;) {
        c = cmd_getopt(argc, argv, ":la:c:d:hqU", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'l':
        case 'a':
        case 'c':
        case 'd':
            if (action)
                return report_usage("Cannot mix '-l', '-a', '-c', '-d'");
            action = c == 'l'   ? SNAPSHOT_LIST
                     : c == 'a' ? SNAPSHOT_APPLY
                     : c == 'c' ? SNAPSHOT_CREATE
                                : SNAPSHOT_DELETE;
            name = c == 'l' ? NULL : optarg;
            break;
        case 'q':
            report_set_quiet(true);
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_OBJECT:
            /* user_creatable_process_cmdline(): help or a bad definition ends qemu-img. */
            c = object_add(optarg);
            if (c != 0)
                return c > 0 ? 0 : 1;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }
    if (optind != argc - 1)
        return report_usage("Expecting one image file name");
    filename = argv[optind];

    if (open_chain_arg(&oc, filename, image_opts, NULL, force_share,
                       action == SNAPSHOT_LIST ? 0 : OPEN_RDWR) < 0)
        return 1;
    im = &oc.img[0];
    /*
     * qcow2_do_open() and block/crypto.c's open unlock an encrypted image,
     * -l's read-only open too: without its key-secret, or with a wrong
     * one, the open fails.  The actions themselves are metadata only.
     */
    if (graph_check_keys(&oc, filename) < 0 || graph_unlock_chain(&oc, filename) < 0) {
        open_chain_close(&oc);
        return 1;
    }
    ret = 0;
    switch (action) {
    case SNAPSHOT_LIST:
        snapshot_list(im->info);
        break;
    case SNAPSHOT_CREATE:
    case SNAPSHOT_APPLY:
    case SNAPSHOT_DELETE:
        if (!strcmp(im->info->format, "qcow2")) {
            ret = snapshot_run(&oc, action, name);
        } else if (!strcmp(im->info->format, "raw") || !strcmp(im->info->format, "file") ||
                   !strcmp(im->info->format, "vpc") || !strcmp(im->info->format, "parallels") ||
                   !strcmp(im->info->format, "vdi") || !strcmp(im->info->format, "qed") ||
                   !strcmp(im->info->format, "vmdk") || !strcmp(im->info->format, "qcow") ||
                   !strcmp(im->info->format, "vhdx") || !strcmp(im->info->format, "luks")) {
            /* bdrv_snapshot_*() with no driver support, as qemu-img words each. */
            if (action == SNAPSHOT_CREATE)
                report_error("Could not create snapshot '%s': %d (%s)", name, -ENOTSUP,
                             strerror(ENOTSUP));
            else if (action == SNAPSHOT_DELETE)
                report_error("Could not delete snapshot '%s': snapshot not found", name);
            else {
                /*
                 * bdrv_snapshot_goto()'s fallback closes the raw layer, tries
                 * the file and opens raw again: a probed image warns again.
                 */
                if ((!strcmp(im->info->format, "raw") || !strcmp(im->info->format, "file")) &&
                    !image_opts && strncmp(filename, "json:", 5) != 0)
                    fprintf(stderr,
                            "WARNING: Image format was not specified for '%s' and probing "
                            "guessed raw.\n"
                            "         Automatically detecting the format is dangerous for raw "
                            "images, write operations on block 0 will be restricted.\n"
                            "         Specify the 'raw' format explicitly to remove the "
                            "restrictions.\n",
                            filename);
                report_error("Could not apply snapshot '%s': Block driver does not support "
                             "snapshots",
                             name);
            }
            ret = 1;
        } else {
            report_error("Image format '%s' is not supported by instar", im->info->format);
            ret = 1;
        }
        break;
    }
    open_chain_close(&oc);
    return ret;
}
