/*
 * Handing opened images to the guest's block layer: every image of a
 * backing chain (and its external data file) becomes a device and a node
 * of a struct instar_graph (include/instar/abi.h), with the names
 * qemu-img prints for them.
 */
#ifndef CMD_GRAPH_H
#define CMD_GRAPH_H

#include "open.h"
#include "vmm.h"

struct graph {
    struct instar_graph g;
    struct vmm_dev devs[INSTAR_DEV_MAX];
    const char *dev_names[INSTAR_DEV_MAX]; /* as qemu-img's map prints the file */
    unsigned ndevs;
};

void graph_init(struct graph *gr);

/*
 * graph_check_keys - qemu opens an encrypted image's crypto layer with the
 * image, so its missing key fails the open (instar takes no key).  Returns
 * 0, or -1 after reporting.
 */
int graph_check_keys(const struct open_chain *oc, const char *filename);

/*
 * graph_unlock_chain - for a command that creates files before its data
 * run (convert, dd): when oc's top image is encrypted and has a key, a
 * guest run that only opens it (unlocking it: PBKDF2, as qemu does when it
 * opens the source), so that a wrong password or a hostile header fails
 * before anything is created, as in qemu-img.  Returns 0, or -1 after
 * reporting "Could not open 'FILENAME': ...".
 */
int graph_unlock_chain(const struct open_chain *oc, const char *filename);

/*
 * graph_add_chain - add oc's images as nodes, the top one first; *top is
 * its node.  Returns 0, or -1 after reporting (a format instar cannot
 * read, or more images than a guest takes).
 */
int graph_add_chain(struct graph *gr, const struct open_chain *oc, const char *filename,
                    uint32_t *top);

/*
 * graph_add_dev - add a device (fd, size) with flags and write limit;
 * returns its handle, or -1 when the guest takes no more.
 */
int graph_add_dev(struct graph *gr, int fd, uint64_t size, uint32_t flags, uint64_t write_limit,
                  const char *name);

/*
 * graph_for_planner - gr: oc's chain as graph nodes for a mutating
 * planner that runs over devs[0..ndev) (device 0 the image, read-write;
 * device 1 its external data file when ndev is 2): node 0 on those
 * devices, the backing images' devices read-only after them, so that
 * gr->devs is the planner's device list.  Returns 0, or -1 after
 * reporting ("<what> '<filename>': ...").
 */
int graph_for_planner(struct graph *gr, const struct open_chain *oc, const char *filename,
                      const struct vmm_dev *devs, unsigned ndev, const char *what);

#endif /* CMD_GRAPH_H */
