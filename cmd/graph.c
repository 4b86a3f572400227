/*
 * Building the guest's image graph from opened chains (see graph.h).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "datarun.h"
#include "graph.h"
#include "report.h"

void graph_init(struct graph *gr)
{
    memset(gr, 0, sizeof(*gr));
    /* The seed of a writable vhdx node's GUIDs (qemu_uuid_generate()) and of a written vmdk's
     * new CID (g_random_int()); zeros if none (neither is a secret). */
    if (getrandom(gr->g.seed, sizeof(gr->g.seed), 0) != (ssize_t)sizeof(gr->g.seed))
        memset(gr->g.seed, 0, sizeof(gr->g.seed));
}

int graph_add_dev(struct graph *gr, int fd, uint64_t size, uint32_t flags, uint64_t write_limit,
                  const char *name)
{
    struct vmm_dev *d;

    if (gr->ndevs >= INSTAR_DEV_MAX)
        return -1;
    d = &gr->devs[gr->ndevs];
    d->fd = fd;
    d->size = size;
    d->flags = flags;
    d->write_limit = write_limit;
    d->no_flush = false;
    gr->dev_names[gr->ndevs] = name;
    return (int)gr->ndevs++;
}

int graph_check_keys(const struct open_chain *oc, const char *filename)
{
    for (unsigned i = 0; i < oc->n; i++) {
        /* The top image's key-secret unlocks it, backing.encrypt.key-secret its backing file. */
        if (oc->img[i].info->encrypted && !(i == 0 && oc->key) && !(i == 1 && oc->backing_key)) {
            /*
             * block/crypto.c's option is key-secret; qcow2's encrypt.key-secret.
             * A backing file's open fails inside its parent's, once per level.
             */
            static const char level[] = "Could not open backing file: ";
            char pre[(POLICY_CHAIN_MAX + 1) * (sizeof(level) - 1) + 1] = "";

            for (unsigned d = 0; d < i && d <= POLICY_CHAIN_MAX; d++)
                strcat(pre, level);
            report_error("Could not open '%s': %sParameter '%skey-secret' is required for cipher",
                         filename, pre, strcmp(oc->img[i].info->format, "luks") ? "encrypt." : "");
            return -1;
        }
    }
    return 0;
}

int graph_add_chain(struct graph *gr, const struct open_chain *oc, const char *filename,
                    uint32_t *top)
{
    unsigned i;

    /* Before anything is created or printed. */
    if (graph_check_keys(oc, filename) < 0)
        return -1;

    *top = gr->g.nnodes;
    if (gr->g.nnodes + oc->n > INSTAR_NODE_MAX)
        goto too_many;
    for (i = 0; i < oc->n; i++) {
        const struct open_image *img = &oc->img[i];
        struct instar_node *n = &gr->g.nodes[gr->g.nnodes + i];
        const char *fmt = img->info->format;
        uint32_t dflags;
        int dev;

        if (!strcmp(fmt, "qcow2")) {
            n->driver = INSTAR_DRV_QCOW2;
        } else if (!strcmp(fmt, "parallels")) {
            n->driver = INSTAR_DRV_PARALLELS;
            if (i == 0 && oc->prl_truncate)
                n->driver |= 1u << INSTAR_DRV_OPT_SHIFT;
        } else if (!strcmp(fmt, "vpc")) {
            n->driver = INSTAR_DRV_VPC;
            if (i == 0)
                n->driver |= oc->vpc_size_calc << INSTAR_DRV_OPT_SHIFT;
        } else if (!strcmp(fmt, "vdi")) {
            n->driver = INSTAR_DRV_VDI;
        } else if (!strcmp(fmt, "vhdx")) {
            n->driver = INSTAR_DRV_VHDX;
        } else if (!strcmp(fmt, "qed")) {
            n->driver = INSTAR_DRV_QED;
        } else if (!strcmp(fmt, "qcow")) {
            n->driver = INSTAR_DRV_QCOW;
        } else if (!strcmp(fmt, "bochs")) {
            n->driver = INSTAR_DRV_BOCHS;
        } else if (!strcmp(fmt, "cloop")) {
            n->driver = INSTAR_DRV_CLOOP;
        } else if (!strcmp(fmt, "dmg")) {
            n->driver = INSTAR_DRV_DMG;
        } else if (!strcmp(fmt, "vmdk")) {
            n->driver = INSTAR_DRV_VMDK;
        } else if (!strcmp(fmt, "luks")) {
            n->driver = INSTAR_DRV_LUKS;
        } else if (!strcmp(fmt, "raw") || !strcmp(fmt, "file")) {
            /* The protocol node as the image (-f file): raw over it reads the same. */
            n->driver = INSTAR_DRV_RAW;
        } else {
            report_error("Could not open '%s': Image format '%s' is not supported by instar",
                         i == 0 ? filename : img->name, fmt);
            return -1;
        }
        /* Backing and data files inherit cache.direct (bdrv_inherited_options). */
        dflags = INSTAR_DEV_READ | (oc->direct ? INSTAR_DEV_DIRECT : 0);
        dev = graph_add_dev(gr, img->fd, (uint64_t)img->st.st_size, dflags, 0, img->name);
        if (dev < 0)
            goto too_many;
        n->file = (uint32_t)dev;
        n->data = INSTAR_NO_NODE;
        /* vmdk: its extent files as the devices right after its own, their count in the options. */
        for (unsigned k = 0; k < img->next; k++) {
            dev = graph_add_dev(gr, img->ext_fd[k], (uint64_t)img->ext_st[k].st_size, dflags, 0,
                                img->info->extent_files[k]);
            if (dev < 0)
                goto too_many;
        }
        n->driver |= img->next << INSTAR_DRV_OPT_SHIFT;
        const char *key = i == 0 ? oc->key : i == 1 ? oc->backing_key : NULL;

        if (key && img->info->encrypted) {
            /* The passphrase, for the guest's PBKDF2 only: never logged. */
            unsigned k = 0;
            size_t len = strlen(key);

            for (uint32_t j = 0; j < gr->g.nnodes + i; j++)
                k = gr->g.node_key[j] > k ? gr->g.node_key[j] : k;
            if (k >= INSTAR_KEY_MAX || len > INSTAR_KEY_BYTES) {
                report_error("Could not open '%s': instar takes up to %d secrets of up to %d "
                             "bytes",
                             filename, INSTAR_KEY_MAX, INSTAR_KEY_BYTES);
                return -1;
            }
            gr->g.keys[k].len = (uint32_t)len;
            memcpy(gr->g.keys[k].data, key, len);
            gr->g.node_key[gr->g.nnodes + i] = (uint8_t)(k + 1);
        }
        if (img->data_fd >= 0) {
            struct stat st;

            if (fstat(img->data_fd, &st) < 0) {
                report_error("Could not open '%s': Could not stat the data file",
                             i == 0 ? filename : img->name);
                return -1;
            }
            dev = graph_add_dev(gr, img->data_fd, (uint64_t)st.st_size, dflags, 0,
                                img->data_name ? img->data_name : img->name);
            if (dev < 0)
                goto too_many;
            n->data = (uint32_t)dev;
        }
        n->backing = i + 1 < oc->n ? gr->g.nnodes + i + 1 : INSTAR_NO_NODE;
        /* raw's offset/size options: the top image's only (backing options are refused). */
        if (i == 0)
            gr->g.window[gr->g.nnodes] = oc->window;
    }
    gr->g.nnodes += oc->n;
    return 0;
too_many:
    report_error("Could not open '%s': instar reads at most %u images and %u files at once",
                 filename, INSTAR_NODE_MAX, INSTAR_DEV_MAX);
    return -1;
}

int graph_for_planner(struct graph *gr, const struct open_chain *oc, const char *filename,
                      const struct vmm_dev *devs, unsigned ndev, const char *what)
{
    uint32_t top;

    graph_init(gr);
    if (graph_add_chain(gr, oc, filename, &top) < 0)
        return -1;
    if (top != 0 || ndev < 1 || ndev > 2 || gr->g.nodes[0].file != 0 ||
        gr->g.nodes[0].data != (ndev == 2 ? 1 : INSTAR_NO_NODE)) {
        report_error("%s '%s': sandbox failure: invalid graph", what, filename);
        return -1;
    }
    for (unsigned i = 0; i < ndev; i++)
        gr->devs[i] = devs[i];
    return 0;
}

int graph_unlock_chain(const struct open_chain *oc, const char *filename)
{
    struct instar_map_args *args;
    struct instar_data_result v;
    struct graph *gr;
    int ret = -1;

    if (!oc->key || oc->n == 0 || !oc->img[0].info->encrypted)
        return 0;
    gr = malloc(sizeof(*gr));
    args = calloc(1, sizeof(*args));
    if (!gr || !args) {
        report_error("Could not open '%s': Cannot allocate memory", filename);
        goto out;
    }
    graph_init(gr);
    if (graph_add_chain(gr, oc, filename, &args->top) < 0)
        goto out;
    /* map over nothing: the open (and its unlock) is the whole run. */
    args->g = gr->g;
    args->start = args->end = 0;
    if (datarun(NULL, INSTAR_OP_MAP, args, sizeof(*args), gr, filename, &v) < 0)
        goto out;
    ret = 0;
out:
    if (gr)
        memset(&gr->g.keys, 0, sizeof(gr->g.keys));
    if (args)
        memset(&args->g.keys, 0, sizeof(args->g.keys));
    free(gr);
    free(args);
    return ret;
}
