/*
 * Laying out a new qcow2 image exactly as QEMU 7.2's qcow2_co_create()
 * does: the minimal header and refcount table, the first allocation,
 * qcow2_update_header(), the truncate to the virtual size with its
 * preallocation (qcow2_co_truncate(), preallocate_co()), then the backing
 * file (qcow2_change_backing_file()).  The bytes and the file length that
 * result are QEMU's, because every cluster is placed by formats/qcow2/
 * alloc.c in QEMU's order.
 *
 * Pure code: I/O, file lengths and memory through struct qcow2_create_io.
 * Option validation (qemu's messages) is the caller's job; this module
 * re-checks the ranges it depends on and fails with -EINVAL otherwise.
 */
#ifndef QCOW2_CREATE_H
#define QCOW2_CREATE_H

#include <stdbool.h>
#include <stdint.h>

#include "alloc.h"
#include "prealloc.h"

#define QCOW2_CREATE_ENOSPC 28

/* Devices the callbacks address. */
#define QCOW2_CREATE_DEV_IMAGE 0
#define QCOW2_CREATE_DEV_DATA  1

/* Preallocation modes: QCOW2_PREALLOC_* in prealloc.h. */

struct qcow2_create_io {
    /* read/write/mem of the image file (device 0); must come first */
    struct qcow2_alloc_ops alloc;
    /*
     * truncate - set the length of dev (QCOW2_CREATE_DEV_*) to size; mode
     * is a QCOW2_PREALLOC_* of OFF, FALLOC or FULL, applied to the grown
     * range as qemu's file driver does.  0 or -errno.
     */
    int (*truncate)(void *opaque, int dev, uint64_t size, int mode);
    /* length - the current length of dev in bytes.  0 or -errno. */
    int (*length)(void *opaque, int dev, uint64_t *len);
    /*
     * luks - qcrypto_block_create() for encrypt.format=luks: build the
     * LUKS header, calling init(ctx, hdrlen) once (qcow2 allocates and
     * zeroes the clusters) and then write(ctx, off, buf, len) within
     * them.  0 or a negative code, returned by qcow2_create() as is.
     */
    int (*luks)(void *opaque, int (*init)(void *ctx, uint64_t hdrlen),
                int (*write)(void *ctx, uint64_t off, const void *buf, size_t len), void *ctx);
};

struct qcow2_create_opts {
    uint64_t size; /* virtual size, a multiple of 512 */
    uint32_t cluster_bits;
    uint32_t version; /* 2 or 3 */
    uint32_t refcount_order;
    uint32_t compression_type; /* 0 zlib, 1 zstd */
    uint32_t prealloc;         /* QCOW2_PREALLOC_* */
    bool lazy_refcounts;
    bool extended_l2;
    bool data_file_raw;
    const char *data_file;    /* NULL: none; else its name for the header */
    const char *backing_file; /* NULL: none */
    const char *backing_fmt;  /* NULL: none */
    /*
     * encrypt.format=luks: qcow2_set_up_encryption() runs last, through
     * io->luks.  The header then has crypt_method 2 and the full disk
     * encryption header extension (crypto_offset, crypto_length: set by
     * qcow2_create() itself; 0 in the options it is given).
     */
    bool encrypt_luks;
    bool encrypt_aes; /* encrypt.format=aes: crypt_method 1 and no header, likewise last */
    uint64_t crypto_offset, crypto_length;
    uint32_t crypt_method; /* the header's; set by qcow2_create() itself (0 in the options) */
};

/* Which step failed: the caller picks qemu's message from it. */
enum qcow2_create_stage {
    QCOW2_CREATE_STAGE_NONE = 0,
    QCOW2_CREATE_STAGE_HEADER,        /* "Could not write qcow2 header" */
    QCOW2_CREATE_STAGE_REFTABLE,      /* "Could not write refcount table" */
    QCOW2_CREATE_STAGE_FIRST_ALLOC,   /* "Could not allocate clusters for ..." */
    QCOW2_CREATE_STAGE_UPDATE_HDR,    /* "Could not update qcow2 header" */
    QCOW2_CREATE_STAGE_GROW_L1,       /* "Could not resize image: Failed to grow the L1 table" */
    QCOW2_CREATE_STAGE_PREALLOC,      /* "Could not resize image: Allocating clusters failed" */
    QCOW2_CREATE_STAGE_TRUNCATE,      /* "Could not resize image: " + file driver message */
    QCOW2_CREATE_STAGE_REFCOUNT_AREA, /* "... Failed to resize refcount structures" */
    QCOW2_CREATE_STAGE_DATA_ALLOC,    /* "... Failed to allocate data clusters" */
    QCOW2_CREATE_STAGE_L2,            /* "... Failed to update L2 tables" */
    QCOW2_CREATE_STAGE_SIZE,          /* "... Failed to update the image size" */
    QCOW2_CREATE_STAGE_BACKING,       /* "Could not assign backing file '%s' with format '%s'" */
    QCOW2_CREATE_STAGE_CRYPTO_ALLOC,  /* "Cannot allocate cluster for LUKS header size %zu" */
    QCOW2_CREATE_STAGE_CRYPTO_ZERO,   /* "Could not zero fill encryption header" */
    QCOW2_CREATE_STAGE_CRYPTO_WRITE,  /* "Could not read encryption header" (sic) */
    QCOW2_CREATE_STAGE_CRYPTO_HDR,    /* "Could not write encryption header" */
};

/*
 * qcow2_create - write a new image through io (the file is empty).
 * @o: the options (strings NUL-terminated, owned by the caller)
 * @stage: receives the failed step (QCOW2_CREATE_STAGE_NONE on success)
 * Returns 0 or a negated errno (-EFBIG: QEMU's "image size is too large").
 * On failure the file holds whatever was written; the caller deletes it,
 * as qemu-img does.
 */
int qcow2_create(const struct qcow2_create_opts *o, const struct qcow2_create_io *io, void *opaque,
                 int *stage);

/*
 * qcow2_create_header - the first cluster as qcow2_update_header() writes
 * it for these options (backing file included when o->backing_file),
 * given the current size, L1 and refcount table placement.
 * @buf: cluster_size bytes, filled
 * Returns 0 or -QCOW2_CREATE_ENOSPC (the names do not fit) or -EINVAL.
 */
int qcow2_create_header(const struct qcow2_create_opts *o, uint8_t *buf, uint64_t size,
                        uint32_t l1_size, uint64_t l1_offset, uint64_t reftable_offset,
                        uint32_t reftable_clusters, bool with_backing);

/*
 * qcow2_create_max_file_size - an upper bound of the file length a create
 * with these options can reach (for the host's write limit).
 */
uint64_t qcow2_create_max_file_size(const struct qcow2_create_opts *o);

#endif /* QCOW2_CREATE_H */
