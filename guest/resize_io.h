/*
 * What the resize and amend planners share (guest/plan_resize.c): the
 * qcow2_resize() callbacks over device 0, the image description from its
 * header, and the result.
 */
#ifndef GUEST_RESIZE_IO_H
#define GUEST_RESIZE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gbs;
struct instar_graph;
struct qcow2_header;
struct qcow2_resize_image;
struct qcow2_resize_io;

/* Reads, writes, flushes, truncates and discards device 0 (gdev_*). */
extern const struct qcow2_resize_io gresize_io;
/* gresize_io with the external data file on device 1 (the host opened it read-write). */
extern const struct qcow2_resize_io gresize_io_data;

/* ri from h and device 0's size, the request's fields (prealloc, ...) zero. */
void gresize_image(struct qcow2_resize_image *ri, const struct qcow2_header *h);

/* Send op's struct instar_resize_result, with the tail truncation's warning if wcode. */
__attribute__((noreturn)) void gresize_send(uint32_t op, int wcode, int werrno);

struct gq_image;
struct qcow2_snapop_image;
struct qcow2_snapop_io;

/* snapop.c's callbacks over device 0 (guest/plan_snapshot.c). */
extern const struct qcow2_snapop_io gsnap_io;

/*
 * gsnap_image - si described from the open img, its snapshot table with
 * each entry's unknown extra data read (owned by si; the planner's run
 * ends without freeing it).  Returns 0, -INSTAR_ERR_NOMEM or
 * -QCOW2_SNAPOP_EIO.
 */
int gsnap_image(const struct gq_image *img, struct qcow2_snapop_image *si);

/*
 * Device 0 opened read-write as the one node of a graph, by the block
 * layer's qcow2 driver (guest/drv_qcow2.c: persistent bitmaps loaded and
 * marked in use), over device 1 as its data file if data_file; op's
 * error if it cannot be opened.  For its metadata alone
 * (gbs_open_graph_meta()): an encrypted image is not unlocked.
 */
struct gbs *gresize_open_node(uint32_t op, bool data_file);

/*
 * 1 and the name (not NUL-terminated, up to QCOW2_BM_NAME_MAX bytes) of
 * the first bitmap of bs that was in use at open
 * (qcow2_truncate_bitmaps_check() refuses it), or 0.
 */
int gresize_bad_bitmap(struct gbs *bs, char *name, size_t *len);

/*
 * The guest data of the partial cluster at the old end of ri (ri->size),
 * read through the block layer over chain (the image's backing chain as
 * the host sent it: node 0 the image on device 0, and device 1 when
 * ri->data_file) before anything is written, into ri->head_data /
 * head_len: what QEMU's copy-on-write of that cluster reads.  Nothing
 * when chain is NULL, for an aligned end, a shrink, or a chain that
 * cannot be read (the cases that need it are then refused); a chain
 * that does not describe device 0 ends the run with op's
 * INSTAR_ERR_BAD_ARGS.  Node 0 must not be open already.  An encrypted
 * image's grow opens the chain with its key even for an aligned end: then
 * ri->encrypt encrypts the guest data the resize writes (node 0's cipher,
 * which stays open for it).
 */
void gresize_read_head(uint32_t op, struct qcow2_resize_image *ri, const struct instar_graph *chain,
                       uint64_t new_size);

#endif /* GUEST_RESIZE_IO_H */
