/*
 * instar info: the collected facts about one image (QEMU's ImageInfo) and
 * its two renderers.  Exported for the unit tests; cmd_info() (cmds.h) is
 * the handler.
 */
#ifndef CMD_INFO_H
#define CMD_INFO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "instar/result.h"

struct qobj;

/* One internal snapshot (QEMU's SnapshotInfo). */
struct info_snapshot {
    char *id;   /* at most 127 bytes, as QEMUSnapshotInfo.id_str */
    char *name; /* at most 255 bytes, as QEMUSnapshotInfo.name */
    uint64_t vm_state_size;
    uint64_t vm_clock_nsec;
    uint64_t icount; /* UINT64_MAX: absent */
    uint32_t date_sec;
    uint32_t date_nsec;
};

/*
 * A persistent dirty bitmap a qcow2 v3 image loads at open (qemu's
 * qcow2_load_dirty_bitmaps), for qemu-img measure's bitmaps size and
 * convert --bitmaps' checks.
 */
struct info_bitmap {
    char *name; /* cut at its first NUL, as QEMU keeps it */
    uint64_t granularity;
    bool in_use; /* inconsistent: convert --bitmaps refuses or skips it */
};

/* QEMU's ImageInfo, as qemu-img info fills it.  NULL strings are absent. */
struct image_info {
    char *filename;
    char format[32];
    int64_t virtual_size;
    bool has_actual_size;
    int64_t actual_size;
    bool encrypted;
    bool has_cluster_size;
    int64_t cluster_size;
    bool has_dirty_flag;
    bool dirty_flag;
    char *backing_filename;
    char *full_backing_filename;
    char *backing_filename_format;
    char *data_file;        /* the qcow2 data file extension's name, or NULL */
    bool has_external_data; /* the incompatible "external data file" bit */
    bool data_file_raw;     /* and the autoclear "data file raw" bit */
    struct info_snapshot *snapshots;
    uint32_t nsnapshots;
    struct qobj *format_specific; /* ImageInfoSpecific {type, data}, or NULL */
    /* Not part of ImageInfo: what other commands need of the open image. */
    /* qcow2 with an external data file: its snapshot table, not listed but loadable */
    struct info_snapshot *hidden_snapshots;
    uint32_t nhidden_snapshots;
    uint32_t qcow2_version;      /* 2 or 3 for a qcow2 image, else 0 */
    struct info_bitmap *bitmaps; /* v3 only, in directory order */
    uint32_t nbitmaps;
    /* vmdk: the extent files a descriptor names, as qemu names them (dir + name) */
    char *extent_files[INSTAR_VMDK_EXTENTS_MAX];
    uint32_t nextent_files;
    uint32_t vmdk_cid;            /* vmdk: the descriptor's CID (create -f vmdk's parentCID) */
    bool vmdk_stream;             /* vmdk: createType streamOptimized (needs_compressed_writes) */
    uint64_t luks_payload_offset; /* luks: the payload's byte offset in the file */
    unsigned luks_slots_active;   /* luks, qcow2 LUKS: bit i set for an active key slot i */
    bool encrypt_luks;            /* qcow2: encrypt.format=luks (crypt_method 2) */
};

/*
 * info_bitmaps_bytes - at most how many bytes storing the persistent
 * bitmaps of ii (for an image of size bytes) writes: per bitmap its
 * serialised bits, a table and a directory entry, each rounded up to the
 * largest cluster (2 MiB), and refcount blocks for them.  For the write
 * limits the host sets from sizes alone.
 */
uint64_t info_bitmaps_bytes(const struct image_info *ii, uint64_t size);

struct result_info;

/*
 * info_from_result - fill ii from a validated INSTAR_OP_INFO result (see
 * cmd/result.h), as bdrv_query_image_info() would: backing names resolved
 * against ii->filename, snapshots hidden for images with an external data
 * file, the qcow2 format-specific tree built.
 * @ii: filename (and actual size) already set by the caller
 * Returns 0 or -ENOMEM (ii then holds partial data; free it).
 */
int info_from_result(struct image_info *ii, const struct result_info *v);

/* Free ii and everything it owns (NULL is fine). */
void image_info_free(struct image_info *ii);

/*
 * info_dump_human - bdrv_image_info_dump() (block/qapi.c) of ii to f.
 * Returns 0, or -1 if f failed.
 */
int info_dump_human(FILE *f, const struct image_info *ii);

/* bdrv_snapshot_dump(): one table row without newline; the header if sn is NULL. */
void info_snapshot_dump(FILE *f, const struct info_snapshot *sn);

/*
 * info_to_qobj - ii as the QAPI ImageInfo dict (for JSON output).
 * Returns a new tree (caller frees; check qobj_failed()).
 */
struct qobj *info_to_qobj(const struct image_info *ii);

#endif /* CMD_INFO_H */
