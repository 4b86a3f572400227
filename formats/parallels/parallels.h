/*
 * The Parallels disk image format as qemu 7.2's block/parallels.c and
 * block/parallels-ext.c read and write it: the 64-byte header (magic
 * "WithoutFreeSpace" or "WithouFreSpacExt", version 2), the block
 * allocation table ("catalog", BAT) of 32-bit little-endian cluster
 * offsets after it, the inuse flag, and the optional format extension
 * cluster with its dirty bitmaps.  Reference: QEMU's
 * docs/interop/parallels.txt.
 *
 * QEMU keeps the header and the BAT as one buffer of header_size bytes
 * (s->header), read from offset 0 at open and written back from it.
 * Here the caller holds the first len bytes of that buffer; entries past
 * len read as 0 (they lie past the end of the file, where QEMU reads
 * zeros).
 *
 * Pure code: no I/O, no allocation.  The caller reads the file through
 * struct prl_reader (bytes past the end of the file read as zeros).
 */
#ifndef PARALLELS_PARALLELS_H
#define PARALLELS_PARALLELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parallels_err.h"

#define PRL_HEADER_SIZE     64
#define PRL_INUSE_MAGIC     0x746f6e59u
#define PRL_INUSE_OFFSET    44
#define PRL_DEFAULT_CLUSTER (1u << 20)
/* bdrv_opt_mem_align() of a file-posix node: the host page. */
#define PRL_MEM_ALIGN 4096u
/* s->bat_dirty_block: four host pages. */
#define PRL_DIRTY_BLOCK 16384u
/* BDRV_REQUEST_MAX_BYTES: a larger read fails with EIO. */
#define PRL_REQUEST_MAX 2147483136ull
/* BDRV_MAX_LENGTH: INT64_MAX aligned down to 1 GiB. */
#define PRL_IO_MAX 0x7fffffffc0000000ull
/* The default prealloc-size (128 MiB), in sectors. */
#define PRL_PREALLOC_SECTORS 262144u

/* reader - read [off, off + len) of the image file; 0 or a negative code. */
struct prl_reader {
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    /* md5 - the MD5 digest of [off, off + len) of the file (the extension's checksum). */
    int (*md5)(void *opaque, uint64_t off, uint64_t len, uint8_t digest[16]);
    void *opaque;
};

struct prl_image {
    uint8_t hdr[PRL_HEADER_SIZE]; /* as read (zeros past the end of the file) */
    uint32_t tracks;              /* sectors per cluster */
    uint32_t off_multiplier;      /* a BAT entry counts this many sectors */
    uint32_t cluster_size;        /* bytes */
    uint32_t bat_size;            /* BAT entries */
    uint64_t total_sectors;       /* the virtual size in sectors */
    uint64_t header_size;         /* bytes of header and BAT QEMU reads and writes */
    int64_t data_end;             /* where the next cluster goes, in sectors */
    bool unclean;                 /* the inuse flag was set */
    uint64_t ext_off;             /* the format extension field (sectors), 0: none */
    uint32_t nbitmaps;            /* dirty bitmaps the extension holds */
    uint64_t err_arg[2];          /* the arguments of the last error */
    char err_str[40];             /* and its string (a bitmap's UUID) */
};

/* Open flags: qemu's BDRV_O_RDWR and BDRV_O_CHECK. */
#define PRL_OPEN_RDWR  (1u << 0)
#define PRL_OPEN_CHECK (1u << 1)

/*
 * prl_open_header - parallels_open() up to the BAT read: check the
 * header's version, magic, cluster and catalog sizes, and the size rule
 * of bdrv_refresh_total_sectors(); compute header_size and the first
 * data_end as QEMU does (units and all: data_off counts sectors, but
 * when it is 0 QEMU takes the catalog's end in bytes, and it compares a
 * count of sectors with header_size in bytes).  hdr: the file's first
 * 64 bytes.  Returns 0 or a negated PRL_ERR_* (PRL_ERR_EIO when QEMU's
 * read of header_size bytes would fail).
 */
int prl_open_header(const uint8_t hdr[PRL_HEADER_SIZE], struct prl_image *img);

/*
 * prl_open_bat - the rest of parallels_open() over buf, the first len
 * bytes of the header_size-byte buffer: data_end raised past every
 * allocated cluster, the inuse flag (refused for a read-write open
 * without BDRV_O_CHECK).  Returns 0 or a negated PRL_ERR_*.
 */
int prl_open_bat(struct prl_image *img, const uint8_t *buf, size_t len, unsigned flags);

/*
 * prl_read_extension - parallels_read_format_extension() for the
 * read-only open of an image whose ext_off is not 0: the extension
 * cluster's magic and MD5 checksum, its features, and each dirty
 * bitmap's checks (size, table size, data cluster offsets), without the
 * bits (nothing qemu-img prints shows them).  Every length and offset is
 * checked against the cluster: where QEMU 7.2 would read past it or fail
 * an assertion this returns instar's own code.  Returns 0 (img->nbitmaps
 * set) or a negated PRL_ERR_* with its arguments in img.
 */
int prl_read_extension(const struct prl_reader *r, struct prl_image *img);

/* prl_bat_get - BAT entry idx as stored (0: not allocated). */
uint32_t prl_bat_get(const uint8_t *buf, size_t len, uint32_t idx);

/* prl_bat_set - store BAT entry idx (idx must lie inside buf). */
void prl_bat_set(uint8_t *buf, size_t len, uint32_t idx, uint32_t v);

/*
 * prl_block_status - block_status() of parallels.c: from sector, at most
 * nb sectors of one kind: contiguous clusters in the file (returns the
 * host sector of the first) or unallocated ones (returns -1); *pnum the
 * sectors covered (at least one when nb > 0).
 */
int64_t prl_block_status(const struct prl_image *img, const uint8_t *buf, size_t len,
                         uint64_t sector, uint64_t nb, uint64_t *pnum);

/* What parallels_co_check() counted (BdrvCheckResult). */
struct prl_check_result {
    int64_t corruptions, leaks, corruptions_fixed, leaks_fixed;
    int64_t image_end_offset;
    int64_t total_clusters, allocated_clusters, fragmented_clusters;
    bool flush_bat; /* the caller writes the header_size bytes back */
    bool truncate;  /* the caller truncates the file to image_end_offset */
};

/* report - one line of the check (code PRL_MSG_*, its argument). */
typedef void (*prl_report_fn)(void *opaque, int code, uint64_t arg);

/* Check modes: qemu's BDRV_FIX_LEAKS and BDRV_FIX_ERRORS. */
#define PRL_FIX_LEAKS  (1u << 0)
#define PRL_FIX_ERRORS (1u << 1)

/*
 * prl_check - parallels_co_check() on the image whose buffer is buf (len
 * bytes) and whose file is file_size bytes: the unclean flag (cleared
 * when fixing errors), clusters outside the file (their entries zeroed
 * when fixing errors), fragmentation, the space after the last cluster.
 * The caller does the I/O the result asks for.
 */
void prl_check(struct prl_image *img, uint8_t *buf, size_t len, uint64_t file_size, unsigned fix,
               prl_report_fn report, void *opaque, struct prl_check_result *r);

/* A new image as parallels_co_create() lays it out. */
struct prl_create {
    uint64_t size;         /* bytes, a multiple of 512 */
    uint64_t cluster_size; /* bytes, a multiple of 512 */
    uint32_t bat_entries;
    uint32_t bat_sectors; /* the header and BAT, rounded up to whole clusters */
};

/*
 * prl_create_layout - parallels_co_create()'s checks and sizes (size and
 * cluster_size already rounded up to 512 as parallels_co_create_opts
 * does).  Returns 0, -1 "Cluster size is too large", -2 "Image size is
 * too large for this cluster size", -3 a size, -4 a cluster size not a
 * multiple of 512.
 */
int prl_create_layout(uint64_t size, uint64_t cluster_size, struct prl_create *c);

/* prl_create_header - the first sector of the new image (512 bytes). */
void prl_create_header(const struct prl_create *c, uint8_t sector[512]);

#endif /* PARALLELS_PARALLELS_H */
