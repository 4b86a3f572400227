/*
 * qemu-img dd: the host reads the operands as img_dd() does, opens the
 * input (chain included) under its path policy, creates the output with
 * the size img_dd() computes, opens it read-write, and lets the guest copy
 * it block by block through the block layer (guest/plan_dd.c): every
 * block is read and written, zeros included, as blk_pread()/blk_pwrite()
 * do.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "datarun.h"
#include "object.h"
#include "policy.h"
#include "report.h"
#include "size.h"
#include "spec.h"

enum {
    OPTION_OBJECT = 257,
    OPTION_IMAGE_OPTS = 258,
};

/* The operands given (img_dd's C_* flags). */
#define DD_BS    (1u << 0)
#define DD_COUNT (1u << 1)
#define DD_IF    (1u << 2)
#define DD_OF    (1u << 3)
#define DD_SKIP  (1u << 4)

/* Guest RAM for a dd: one block (up to 2 GiB) and a qcow2 output's tables. */
#define DD_GUEST_MEM_BASE (256ULL << 20)

struct dd_opts {
    unsigned flags;
    int64_t bs;
    int64_t count;
    int64_t skip;
    const char *in, *out;
};

/* One "key=value" operand, as img_dd()'s table of handlers reads it.  0, or 1 after reporting. */
static int dd_operand(struct dd_opts *o, const char *arg)
{
    const char *eq = strchr(arg, '=');
    const char *val;
    size_t klen;

    if (!eq) {
        report_error("unrecognized operand %s", arg);
        return 1;
    }
    klen = (size_t)(eq - arg);
    val = eq + 1;
#define KEY(k) (klen == sizeof(k) - 1 && !memcmp(arg, k, klen))
    if (KEY("bs")) {
        o->bs = size_cvtnum("bs", val, 1, INT_MAX);
        if (o->bs < 0)
            return 1;
        o->flags |= DD_BS;
    } else if (KEY("count")) {
        o->count = size_cvtnum("count", val, 0, INT64_MAX);
        if (o->count < 0)
            return 1;
        o->flags |= DD_COUNT;
    } else if (KEY("if")) {
        o->in = val;
        o->flags |= DD_IF;
    } else if (KEY("of")) {
        o->out = val;
        o->flags |= DD_OF;
    } else if (KEY("skip")) {
        o->skip = size_cvtnum("skip", val, 0, INT64_MAX);
        if (o->skip < 0)
            return 1;
        o->flags |= DD_SKIP;
    } else {
        report_error("unrecognized operand %.*s", (int)klen, arg);
        return 1;
    }
#undef KEY
    return 0;
}

/* The drivers of qemu-img 7.2 that can create images (they have create_opts). */
static bool dd_can_create(const char *fmt)
{
    static const char *const fmts[] = {
        "file", "gluster", "host_cdrom", "host_device", "iscsi", "iser", "luks", "nbd",
        "nfs",  "nvme",    "parallels",  "qcow",        "qcow2", "qed",  "raw",  "rbd",
        "ssh",  "vdi",     "vhdx",       "vmdk",        "vpc",   NULL};

    for (const char *const *f = fmts; *f; f++)
        if (!strcmp(fmt, *f))
            return true;
    return false;
}

/*
 * The most a dd writes to its new output: the bigger of a qcow2 image's
 * data and metadata; a vhdx image's blocks, each rounded up to 1 MiB at
 * the end of the file (convert.c's target_write_limit()).
 */
static uint64_t dd_write_limit(bool qcow2, bool vhdx, uint64_t size, uint64_t file_size)
{
    uint64_t lim = (size + 511) & ~511ull;

    if (!qcow2 && !vhdx)
        return lim > file_size ? lim : file_size;
    if (size > (UINT64_MAX >> 2))
        return UINT64_MAX;
    if (vhdx)
        return file_size + 2 * size + (520ULL << 20);
    return file_size + size + size / 8 + (256ULL << 20);
}

/*
 * qemu-img dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size]
 *             [count=blocks] [skip=blocks] if=input of=output
 */
int cmd_dd(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    struct dd_opts o = {.bs = 512};
    const char *fmt = NULL, *out_fmt = "raw";
    bool image_opts = false, force_share = false, qcow2, vpc, parallels, vdi, qed, vhdx, vmdk, qcow;
    struct instar_dd_args args;
    struct instar_data_result v;
    struct open_chain in;
    struct vmm_config cfg;
    struct graph gr;
    struct stat st;
    int64_t size, in_pos;
    int c, i, ret = 1, out_fd = -1, dev;
    bool in_open = false;

    for (;;) {
        c = cmd_getopt(argc, argv, ":hf:O:U", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'O':
            out_fmt = optarg;
            break;
        case 'f':
            fmt = optarg;
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
    for (i = optind; i < argc; i++)
        if (dd_operand(&o, argv[i]))
            return 1;
    if (!(o.flags & DD_IF) || !(o.flags & DD_OF)) {
        report_error("Must specify both input and output files");
        return 1;
    }
    /* img_open(): the input only (bdrv_create() takes no --image-opts for the output). */
    if (open_chain_arg(&in, o.in, image_opts, fmt, force_share, 0) < 0)
        return 1;
    ret = 1;
    in_open = true;
    graph_init(&gr);
    memset(&args, 0, sizeof(args));
    if (graph_add_chain(&gr, &in, o.in, &args.src) < 0 || graph_unlock_chain(&in, o.in) < 0)
        goto out;
    if (!cmd_driver_known(out_fmt)) {
        report_error("Unknown file format");
        goto out;
    }
    if (!dd_can_create(out_fmt)) {
        report_error("Format driver '%s' does not support image creation", out_fmt);
        goto out;
    }
    /*
     * -O file writes the protocol node itself: the same bytes as raw.
     * -O luks fails in its create: dd has no -o for its key-secret.
     */
    if (strcmp(out_fmt, "raw") && strcmp(out_fmt, "file") && strcmp(out_fmt, "qcow2") &&
        strcmp(out_fmt, "vpc") && strcmp(out_fmt, "parallels") && strcmp(out_fmt, "vdi") &&
        strcmp(out_fmt, "qed") && strcmp(out_fmt, "vhdx") && strcmp(out_fmt, "vmdk") &&
        strcmp(out_fmt, "qcow") && strcmp(out_fmt, "luks")) {
        report_error("Format '%s' is not supported by instar dd", out_fmt);
        goto out;
    }
    qcow2 = !strcmp(out_fmt, "qcow2");
    vpc = !strcmp(out_fmt, "vpc");
    vdi = !strcmp(out_fmt, "vdi");
    qed = !strcmp(out_fmt, "qed");
    vhdx = !strcmp(out_fmt, "vhdx");
    vmdk = !strcmp(out_fmt, "vmdk");
    qcow = !strcmp(out_fmt, "qcow");
    parallels = !strcmp(out_fmt, "parallels");

    /* img_dd(): count blocks from the start of the input, then the skip off that. */
    size = in.img[0].info->virtual_size;
    if ((o.flags & DD_COUNT) && o.count <= INT64_MAX / o.bs && o.count * o.bs < size)
        size = o.count * o.bs;
    if ((o.flags & DD_SKIP) && (o.skip > INT64_MAX / o.bs || size < o.bs * o.skip))
        in_pos = -1;
    else
        in_pos = o.skip * o.bs;
    if (create_for_dd(o.out, out_fmt, in_pos < 0 ? 0 : (uint64_t)(size - in_pos)) < 0)
        goto out;
    if (!strcmp(out_fmt, "luks")) {
        report_error("Format 'luks' is not supported by instar dd");
        goto out;
    }

    {
        const char *path = o.out;
        char *pmsg = NULL;

        if (policy_has_protocol(o.out) && policy_host_path(o.out, &path, &pmsg) < 0) {
            report_error("Could not open '%s': %s", o.out, pmsg ? pmsg : "unknown");
            free(pmsg);
            goto out;
        }
        out_fd = open(path, O_RDWR | O_CLOEXEC);
        if (out_fd < 0) {
            report_error("Could not open '%s': Could not open '%s': %s", o.out, path,
                         strerror(errno));
            goto out;
        }
        if (fstat(out_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            report_error("Could not open '%s': not a regular file", o.out);
            goto out;
        }
    }
    if (in_pos < 0) {
        /* Like dd(1): a warning, and an empty output. */
        report_error("%s: cannot skip to specified offset", o.in);
        in_pos = size;
    }
    if (in_pos >= size) {
        ret = 0;
        goto out;
    }

    dev = graph_add_dev(&gr, out_fd, (uint64_t)st.st_size, INSTAR_DEV_READ | INSTAR_DEV_WRITE,
                        dd_write_limit(qcow2 || vpc || parallels || vdi || qed || vmdk || qcow,
                                       vhdx, (uint64_t)(size - in_pos), (uint64_t)st.st_size),
                        o.out);
    if (dev < 0 || gr.g.nnodes >= INSTAR_NODE_MAX) {
        report_error("Could not open '%s': instar reads at most %u images and %u files at once",
                     o.out, INSTAR_NODE_MAX, INSTAR_DEV_MAX);
        goto out;
    }
    args.dst = gr.g.nnodes++;
    gr.g.nodes[args.dst] = (struct instar_node){
        .driver = qcow2       ? INSTAR_DRV_QCOW2
                  : vpc       ? INSTAR_DRV_VPC
                  : parallels ? INSTAR_DRV_PARALLELS
                  : vdi       ? INSTAR_DRV_VDI
                  : qed       ? INSTAR_DRV_QED
                  : vhdx      ? INSTAR_DRV_VHDX
                  : vmdk      ? INSTAR_DRV_VMDK
                  : qcow      ? INSTAR_DRV_QCOW
                              : INSTAR_DRV_RAW,
        .file = (uint32_t)dev,
        .data = INSTAR_NO_NODE,
        .backing = INSTAR_NO_NODE,
    };
    args.g = gr.g;
    args.bs = (uint64_t)o.bs;
    args.start = (uint64_t)in_pos;
    args.end = (uint64_t)size;

    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = DD_GUEST_MEM_BASE + (((uint64_t)o.bs + (1 << 20)) & ~((1ULL << 20) - 1));
    if (datarun(&cfg, INSTAR_OP_DD, &args, sizeof(args), &gr, o.in, &v) < 0)
        goto out;
    switch (v.status) {
    case INSTAR_DATA_OK:
        ret = 0;
        break;
    case INSTAR_DATA_EREAD_AT:
        report_error("error while reading from input image file: %s", strerror((int)v.errnum));
        break;
    case INSTAR_DATA_EWRITE_AT:
        report_error("error while writing to output image file: %s", strerror((int)v.errnum));
        break;
    default:
        report_error("Could not copy '%s': sandbox failure: unexpected result", o.in);
        break;
    }
out:
    if (out_fd >= 0)
        close(out_fd);
    if (in_open)
        open_chain_close(&in);
    return ret;
}
