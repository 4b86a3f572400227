/*
 * Opening images inside the guest the way qemu-img 7.2 opens them:
 * format probing (or the -f format), and qcow2_do_open()'s validation in
 * its order, so that the first failure is the one qemu-img reports.
 * Shared by every planner that opens a qcow2 image (info, check, resize).
 */
#ifndef GUEST_OPEN_H
#define GUEST_OPEN_H

#include "guest.h"
#include "qcow2/bitmap.h"
#include "qcow2/header.h"
#include "qcow2/luks.h"
#include "qcow2/snapshot.h"

/*
 * The device gq_open() and gopen_probe() read: device 0 for the metadata
 * planners; the data path points it at each node's file in turn.
 */
extern uint32_t gopen_dev;
#define GOPEN_DEV gopen_dev

/* Reads of device 0 for formats/qcow2 walkers (zeros past EOF). */
extern const struct qcow2_reader gopen_reader;

/* The first 512 bytes, read by gopen_probe for the probe and the header. */
#define GOPEN_FIRST 512

/*
 * gopen_probe - the driver name for device 0: fmt if not empty, else
 * qemu's probe over the first bytes (name_dmg: the file name ends in
 * ".dmg").  first receives GOPEN_FIRST bytes.  An I/O failure sends an
 * error result for op and does not return.
 */
const char *gopen_probe(uint32_t op, const char *fmt, bool name_dmg, uint8_t first[GOPEN_FIRST]);

/*
 * gopen_known_driver - a driver qemu-img 7.2 has but instar does not open
 * (the planner then fails with INSTAR_ERR_UNSUPPORTED_FMT).
 */
bool gopen_known_driver(const char *drv);

/* A snapshot table entry, its strings copied (NUL-terminated). */
struct gq_snapshot {
    struct qcow2_snapshot sn; /* sn.id/sn.name point at id/name below */
    char *id;
    char *name;
};

struct gq_image {
    uint64_t file_size;
    uint8_t *first; /* the first cluster (header, extensions), owned */
    size_t first_len;
    struct qcow2_header h;
    struct qcow2_exts x; /* its strings point into first */
    uint32_t nsnapshots;
    struct gq_snapshot *snapshots;
    uint32_t nbitmaps;            /* = x.nb_bitmaps when the directory loaded */
    struct qcow2_bitmap *bitmaps; /* names point into bitmap_dir */
    uint8_t *bitmap_dir;          /* the directory bytes, owned */
    bool has_luks;                /* luks below is valid */
    struct qcow2_luks_info luks;
    /* The LUKS header's place (the extension) and its first bytes, for unlocking. */
    uint64_t luks_off, luks_len;
    uint8_t luks_hdr[QCOW2_LUKS_HDR_SIZE];
    uint32_t warn_bitmaps; /* warnings already queued (result_warn) */
};

/*
 * gq_open - open device 0 as qcow2 the way qcow2_do_open() does for a
 * read-only open with I/O (header, extensions and the LUKS header,
 * snapshot table, persistent bitmaps, size checks), queueing the
 * bitmaps warning with result_warn().
 * @first: the GOPEN_FIRST bytes from gopen_probe
 * On failure sends an error result for op ("Could not open" message) and
 * does not return.
 */
void gq_open(struct gq_image *img, uint32_t op, const uint8_t first[GOPEN_FIRST]);

/*
 * gq_repair_dirty - the repair qcow2_do_open() runs on a dirty image it
 * opens read-write (device 0 writable), lines streamed to the host as
 * check -r streams them; img is opened again afterwards (gq_open_flags
 * with flags).  0, or -1 if
 * the image could not be repaired (guest/plan_check.c).
 */
int gq_repair_dirty(struct gq_image *img, uint32_t op, unsigned flags);

/*
 * gq_open_flags - gq_open for an open with QCOW2_OPEN_* flags
 * (formats/qcow2/header.h): QCOW2_OPEN_RDWR refuses a corrupt image as
 * qemu does for read-write opens; QCOW2_OPEN_CHECK (qemu-img check) also
 * accepts an image without a refcount table and does not read the
 * snapshot table (nsnapshots stays 0; the check walks it itself).
 */
void gq_open_flags(struct gq_image *img, uint32_t op, unsigned flags,
                   const uint8_t first[GOPEN_FIRST]);

/*
 * gopen_fail - send an error result for op: code with the arguments of e
 * (NULL: none).  Does not return.
 */
__attribute__((noreturn)) void gopen_fail(uint32_t op, int code, const struct qcow2_err_info *e);

#endif /* GUEST_OPEN_H */
