/*
 * Typed results the guest hands back with INSTAR_HC_RESULT.
 *
 * A result is one blob: a fixed struct for the operation, then arrays and
 * string bytes.  Every variable part is named by an (offset, length) pair
 * relative to the start of the blob.  The host copies the blob out of guest
 * RAM once and validates every pair against the blob's length before it
 * reads anything (cmd/result.c); nothing in it is trusted.
 *
 * Strings are bytes, not NUL-terminated; an absent string has off == 0.
 */
#ifndef INSTAR_RESULT_H
#define INSTAR_RESULT_H

#include <stdint.h>

#define INSTAR_RESULT_MAGIC 0x544c5352 /* "RSLT" */
#define INSTAR_STR_MAX      65536      /* no single string is longer */

struct instar_str {
    uint32_t off; /* from the start of the blob; 0 = absent */
    uint32_t len;
};

/*
 * Errors: 'error' is 0 or a code from include/instar/errors.h or
 * formats/qcow2/qcow2_err.h.  An error result may be just this header.  The message text lives in
 * those tables; err_args and err_str fill its {0}..{3}, {x0}..{x3} and {s} slots.
 */
struct instar_result_hdr {
    uint32_t magic;       /* INSTAR_RESULT_MAGIC */
    uint32_t abi_version; /* INSTAR_ABI_VERSION */
    uint32_t op;          /* enum instar_op */
    int32_t error;
    uint64_t err_args[4];
    struct instar_str err_str;
    uint32_t size;       /* total blob length, header included */
    uint16_t warn_code;  /* 0 or an INSTAR_WARN_* code (include/instar/errors.h) */
    uint16_t warn_count; /* how many times qemu-img prints that warning */
};

/* --- INSTAR_OP_INFO --- */

#define INSTAR_INFO_ENCRYPTED   (1u << 0) /* "encrypted: yes" */
#define INSTAR_INFO_DIRTY_VALID (1u << 1) /* format reports a dirty flag */
#define INSTAR_INFO_DIRTY       (1u << 2)
#define INSTAR_INFO_QCOW2       (1u << 3) /* the qcow2 block below is valid */
#define INSTAR_INFO_VMDK        (1u << 4) /* the vmdk block below is valid */
/*
 * A vmdk descriptor names extent files the run was not given: only
 * vmdk.nextents and vmdk.names are valid.  The host decides on each name
 * (cmd/policy.c), opens them and describes the image again with them as
 * devices 1..n (docs/architecture.md, "Adding a format": vmdk).
 */
#define INSTAR_INFO_VMDK_NEED_FILES (1u << 5)
#define INSTAR_INFO_LUKS            (1u << 6) /* a luks volume: its block is the format-specific one */

/*
 * HAS_DATA_FILE: the incompatible "external data file" bit is set (qemu
 * then prints "data file raw:"); DATA_FILE_RAW: the autoclear bit.  The
 * data_file string is present exactly when the extension is ("data file:").
 * A LUKS image without a crypto extension has INSTAR_INFO_ENCRYPTED and
 * encrypt_format NONE: qemu shows "encrypted: yes" but no encrypt block.
 */
#define INSTAR_QCOW2_HAS_DATA_FILE (1u << 0)
#define INSTAR_QCOW2_DATA_FILE_RAW (1u << 1)
#define INSTAR_QCOW2_HAS_BITMAPS   (1u << 2) /* bitmaps extension present */
#define INSTAR_QCOW2_LAZY_REFS     (1u << 3)
#define INSTAR_QCOW2_CORRUPT       (1u << 4)
#define INSTAR_QCOW2_EXTENDED_L2   (1u << 5)

enum instar_encrypt_fmt {
    INSTAR_ENCRYPT_NONE = 0,
    INSTAR_ENCRYPT_AES = 1,  /* legacy qcow2 AES-CBC */
    INSTAR_ENCRYPT_LUKS = 2, /* the luks block below is valid */
};

struct instar_info_snapshot {
    struct instar_str id;
    struct instar_str name;
    uint64_t vm_state_size;
    uint64_t vm_clock_nsec;
    uint64_t icount; /* UINT64_MAX: not recorded */
    uint32_t date_sec;
    uint32_t date_nsec;
};

/* Bitmap directory entry flags, as stored (qcow2.txt, "Bitmap directory"). */
#define INSTAR_BITMAP_IN_USE (1u << 0)
#define INSTAR_BITMAP_AUTO   (1u << 1)

struct instar_info_bitmap {
    struct instar_str name;
    uint64_t granularity; /* bytes */
    uint32_t flags;       /* raw flags field */
    uint32_t pad;
};

#define INSTAR_LUKS_SLOTS 8

struct instar_info_luks_slot {
    uint32_t active;
    uint32_t stripes;
    uint64_t iters;
    uint64_t key_offset; /* bytes */
};

/*
 * LUKS header facts, with algorithm names already mapped by the guest to
 * QEMU's QAPI names ("aes-256", "xts", "plain64", "sha256").
 */
struct instar_info_luks {
    struct instar_str cipher_alg;
    struct instar_str cipher_mode;
    struct instar_str ivgen_alg;
    struct instar_str ivgen_hash_alg; /* absent unless essiv */
    struct instar_str hash_alg;
    struct instar_str uuid;
    uint64_t payload_offset; /* bytes */
    uint64_t master_key_iters;
    struct instar_info_luks_slot slots[INSTAR_LUKS_SLOTS];
};

/*
 * vmdk format-specific information (ImageInfoSpecificVmdk): the
 * descriptor's CIDs and createType, and each extent as
 * vmdk_get_extent_info() describes it; the host names the extent's file
 * (file 0: the image file).  Strings are NUL-terminated in their arrays
 * (the host cuts them there).
 */
#define INSTAR_VMDK_EXTENTS_MAX    2048      /* 16 before ABI v37 */
#define INSTAR_VMDK_EXT_FLAT       (1u << 0) /* no cluster size */
#define INSTAR_VMDK_EXT_COMPRESSED (1u << 1) /* "compressed": true */

struct instar_info_vmdk_extent {
    uint64_t virtual_size; /* bytes */
    uint64_t cluster_size; /* bytes (not for a flat extent) */
    uint32_t flags;        /* INSTAR_VMDK_EXT_* */
    uint32_t file;         /* 0: the image file; i: the descriptor's i-th extent file */
    char type[12];         /* the descriptor's extent type ("FLAT", "SPARSE"), "" for none */
    uint32_t pad;
};

struct instar_info_vmdk {
    uint32_t cid;
    uint32_t parent_cid;
    char create_type[128];
    uint32_t nextents; /* <= INSTAR_VMDK_EXTENTS_MAX */
    uint32_t pad;
    struct instar_info_vmdk_extent extents[INSTAR_VMDK_EXTENTS_MAX];
    /*
     * INSTAR_INFO_VMDK_NEED_FILES: the extent lines' file names, in order,
     * and in extents[i].flags INSTAR_VMDK_EXT_FLAT for a FLAT or VMFS line
     * (since ABI v37: the host locks such a file as data only)
     */
    struct instar_str names[INSTAR_VMDK_EXTENTS_MAX];
};

struct instar_info_result {
    struct instar_result_hdr hdr;
    char format[32]; /* NUL-terminated driver name: "qcow2", "raw", ... */
    uint64_t virtual_size;
    uint64_t cluster_size; /* 0: the format has none */
    uint32_t flags;        /* INSTAR_INFO_* */
    uint32_t pad0;
    struct instar_str backing_file;
    struct instar_str backing_fmt;

    /* qcow2 format-specific information (INSTAR_INFO_QCOW2) */
    uint32_t qcow2_version; /* 2 or 3 */
    uint32_t qcow2_flags;   /* INSTAR_QCOW2_* */
    uint32_t refcount_bits;
    uint32_t compression_type; /* 0 zlib, 1 zstd */
    struct instar_str data_file;
    uint32_t encrypt_format; /* enum instar_encrypt_fmt */
    uint32_t pad1;
    struct instar_info_luks luks;

    uint32_t nsnapshots; /* array of struct instar_info_snapshot */
    uint32_t snapshots_off;
    uint32_t nbitmaps; /* array of struct instar_info_bitmap */
    uint32_t bitmaps_off;

    /* vmdk format-specific information (INSTAR_INFO_VMDK; appended for issue 12) */
    struct instar_info_vmdk vmdk;
};

/* --- INSTAR_OP_CHECK --- */

/*
 * The format has no check (qemu's -ENOTSUP from bdrv_check): the host
 * prints "This image format does not support checks" and exits 63.
 */
#define INSTAR_CHECK_NOTSUP (1u << 0)
/*
 * The guest already ran img_check()'s second check on the repaired image
 * (parallels: on the same open image, as qemu does): the counts are the
 * second check's, *_fixed the first's; the host does not run it again.
 */
#define INSTAR_CHECK_RECHECKED (1u << 1)

/*
 * qemu's BdrvCheckResult plus the return value of bdrv_check.  The
 * per-problem lines have already been streamed (INSTAR_HC_REPORT).
 * hdr.error != 0 means the image could not be opened (rendered as
 * "Could not open 'FILE': <message>"); then nothing below is valid.
 */
struct instar_check_result {
    struct instar_result_hdr hdr;
    char format[32]; /* NUL-terminated driver name */
    uint32_t flags;  /* INSTAR_CHECK_NOTSUP, INSTAR_CHECK_RECHECKED */
    int32_t ret;     /* 0, or a negated Linux errno: "Check failed: strerror" */
    int64_t corruptions;
    int64_t leaks;
    int64_t check_errors;
    int64_t corruptions_fixed;
    int64_t leaks_fixed;
    int64_t image_end_offset;
    int64_t total_clusters; /* BlockFragInfo */
    int64_t allocated_clusters;
    int64_t fragmented_clusters;
    int64_t compressed_clusters;
};

/* --- INSTAR_OP_CREATE, INSTAR_OP_RESIZE: a header alone (error or 0) --- */

struct instar_create_result {
    struct instar_result_hdr hdr;
};

struct instar_resize_result {
    struct instar_result_hdr hdr;
};

/*
 * --- INSTAR_OP_SNAPSHOT: a header alone.  error 0: the operation ran;
 * err_args[0] is then 0 or the Linux errno it failed with, err_args[1]
 * where (enum qcow2_snapop_stage), err_args[2] 1 when no snapshot has the
 * name (delete, apply). ---
 */
struct instar_snapshot_result {
    struct instar_result_hdr hdr;
};

/* --- INSTAR_OP_MAP, INSTAR_OP_COMPARE, INSTAR_OP_CONVERT, INSTAR_OP_DD, INSTAR_OP_BENCH,
 * INSTAR_OP_COMMIT --- */

/* What a data-path run ended with (status); errnum a Linux errno. */
enum instar_data_status {
    INSTAR_DATA_OK = 0,
    INSTAR_DATA_EMETA = 1,         /* map: "Could not read file metadata: strerror" */
    INSTAR_DATA_IDENTICAL = 2,     /* compare: "Images are identical." */
    INSTAR_DATA_MISMATCH = 3,      /* compare: "Content mismatch at offset N!" */
    INSTAR_DATA_STRICT_SIZE = 4,   /* compare -s: "Strict mode: Image size mismatch!" */
    INSTAR_DATA_STRICT_STATUS = 5, /* compare -s: "Strict mode: Offset N block status mismatch!" */
    INSTAR_DATA_EALLOC = 6,        /* compare: "Sector allocation test failed for FILE" (image) */
    INSTAR_DATA_EREAD = 7,         /* compare: "Error while reading offset N of FILE: strerror" */
    INSTAR_DATA_NOT_EMPTY = 8,  /* compare: "Content mismatch at offset N!" after a size warning */
    INSTAR_DATA_EBSTAT = 9,     /* convert: "error while reading block status at offset N: ..." */
    INSTAR_DATA_EREAD_AT = 10,  /* convert: "error while reading at byte N: strerror" */
    INSTAR_DATA_EWRITE_AT = 11, /* convert: "error while writing at byte N: strerror" */
    /* dd: EREAD_AT and EWRITE_AT, worded as img_dd() words them */
    /* 12: not used (convert -l's failures are found before the run) */
    INSTAR_DATA_EREQUEST = 13, /* bench: "Failed request: strerror" */
    INSTAR_DATA_EFLUSH = 14,   /* bench --no-drain: "Failed flush request: strerror" */
    INSTAR_DATA_ESILENT = 15,  /* convert -c: failed where qemu-img prints nothing (exit 1) */
    INSTAR_DATA_EBACKING = 16, /* rebase: "Could not change the backing file to ...": errnum */
    INSTAR_DATA_EBITMAP = 17,  /* bitmap: offset = action << 8 | enum instar_bitmap_err */
    /* rebase: EMETA, EREAD (image 1: old backing, 2: new), EWRITE_AT as img_rebase() words them */
};

/* (1u << 1) was rebase's refusal of a dirty image with bitmaps; repaired now. */
/* commit: the failure was the top's emptying, after the job completed. */
#define INSTAR_DATA_COMMIT_EMPTY (1u << 2)
/* commit: storing the top's persistent bitmaps at its close failed (errnum). */
#define INSTAR_DATA_COMMIT_CLOSE (1u << 3)

struct instar_data_result {
    struct instar_result_hdr hdr;
    uint32_t status; /* enum instar_data_status */
    uint32_t errnum; /* with an error status */
    uint64_t offset; /* the offset a message names */
    uint32_t image;  /* compare: 1 or 2, the image a message names */
    uint32_t flags;  /* none defined: 0 */
    /* The first corruption a node signalled (formats/qcow2/data_err.h), 0: none. */
    int32_t corrupt_code;
    uint32_t pad;
    uint64_t corrupt_args[4];
};

#endif /* INSTAR_RESULT_H */
