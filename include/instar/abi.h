/*
 * instar hypercall ABI: the one contract between the host monitor (vmm/)
 * and the sandboxed guest (guest/).
 *
 * Shape (after Solo5's hvt_abi.h):
 *  - The guest issues a hypercall by writing the guest-physical address of
 *    an argument struct (32 bits) to I/O port INSTAR_HC_PIO_BASE + nr.
 *    Guest code runs in ring 3 and executes INT3 with RAX = address and
 *    RDX = port.  Under KVM that enters a ring-0 gate that does the OUT
 *    (guest/boot.S); in the process backend it raises SIGTRAP, and the
 *    child's tender forwards the same {port, address} pair (vmm/tender/).
 *    Either way the host sees only that pair.
 *  - Every argument struct is plain data, fixed size, naturally aligned.
 *    Fields are marked IN (guest -> host) or OUT (host -> guest).
 *  - On the host, a guest address is an opaque integer.  Every
 *    (address, length) pair goes through one checked accessor that rejects
 *    overflow and anything outside guest RAM, whatever the guest checked.
 *  - The host hands the guest a struct instar_boot_info at
 *    INSTAR_BOOT_INFO_GPA before the first instruction runs.
 *
 * Any change to a struct or a number below bumps INSTAR_ABI_VERSION.
 * This header must stay includable by freestanding code: stdint only.
 */
#ifndef INSTAR_ABI_H
#define INSTAR_ABI_H

#define INSTAR_ABI_VERSION 46
#define INSTAR_IMAGE_MAGIC 0x474d4953 /* "SIMG": struct instar_image_hdr */

/* guest/boot.S includes this header for the two numbers above only. */
#ifndef __ASSEMBLER__

#include <stdint.h>

/*
 * --- Guest memory map (guest-physical == guest-virtual, identity) ---
 *
 * The same guest image runs under two backends (vmm/vmm.h): a KVM VM and
 * a sandboxed process that maps guest RAM at virtual address == GPA.  A
 * process cannot map below Linux's vm.mmap_min_addr (64 KiB on Debian), so
 * everything guest code touches lies at or above INSTAR_PROC_LOW_GPA; below
 * it are only the structures a KVM vCPU reads (GDT, page tables, TSS, the
 * ring-0 exception stack), which the process backend leaves unmapped.
 */

/* Page 0 is left unmapped so that a NULL dereference faults. */
#define INSTAR_GDT_GPA        0x1000ULL
#define INSTAR_PML4_GPA       0x2000ULL
#define INSTAR_PDPT_GPA       0x3000ULL
#define INSTAR_PT0_GPA        0x4000ULL   /* 4 KiB pages for the first 2 MiB */
#define INSTAR_TSS_GPA        0x6000ULL   /* RSP0 for exceptions */
#define INSTAR_PD_GPA         0x8000ULL   /* one page directory per GiB */
#define INSTAR_TRAP_STACK_TOP 0x20000ULL  /* 0x10000..0x20000: exception stack */
#define INSTAR_PROC_LOW_GPA   0x80000ULL  /* lowest address the process backend maps */
#define INSTAR_BOOT_INFO_GPA  0x80000ULL  /* struct instar_boot_info (up to the IDT) */
#define INSTAR_IDT_GPA        0xff000ULL  /* 32 gates, filled by the guest */
#define INSTAR_PD_MAX         4           /* so guest RAM <= 4 GiB */
#define INSTAR_GUEST_LOAD_GPA 0x100000ULL /* guest image, then bss */
#define INSTAR_GUEST_MEM_MIN  (4ULL << 20)
#define INSTAR_GUEST_MEM_MAX  ((uint64_t)INSTAR_PD_MAX << 30)

/*
 * Every guest image starts with this header, at INSTAR_GUEST_LOAD_GPA
 * (guest/boot.S).  The host reads it from its own copy of the image (never
 * from guest RAM) to find the two entry points and the read-only,
 * executable part.
 */
struct instar_image_hdr {
    uint32_t magic;       /* INSTAR_IMAGE_MAGIC */
    uint32_t abi_version; /* INSTAR_ABI_VERSION the image was built for */
    uint64_t entry_kvm;   /* ring-0, long mode, paging on: the vCPU starts here */
    uint64_t entry_user;  /* ring 3, nothing set up: the process backend starts here */
    uint64_t text_end;    /* [load, text_end) is text and rodata, page-aligned */
    uint64_t image_end;   /* end of bss, page-aligned: the heap starts here */
};

/* --- Hypercalls --- */

#define INSTAR_HC_PIO_BASE 0x500

enum instar_hc {
    INSTAR_HC_BLKREAD = 1, /* struct instar_hc_blk */
    INSTAR_HC_BLKWRITE,    /* struct instar_hc_blk */
    INSTAR_HC_FLUSH,       /* struct instar_hc_flush */
    INSTAR_HC_RESULT,      /* struct instar_hc_result */
    INSTAR_HC_LOG,         /* struct instar_hc_log (debug builds print it) */
    INSTAR_HC_PANIC,       /* struct instar_hc_panic; ends the run */
    INSTAR_HC_TRAP,        /* struct instar_hc_trap; ends the run */
    INSTAR_HC_EXIT,        /* struct instar_hc_exit; ends the run */
    INSTAR_HC_REPORT,      /* struct instar_hc_report: diagnostics, streamed */
    INSTAR_HC_TRUNCATE,    /* struct instar_hc_truncate */
    INSTAR_HC_COPY,        /* struct instar_hc_copy: device to device, on the host */
    INSTAR_HC_ZERO,        /* struct instar_hc_zero: zero a range of a writable device */
    INSTAR_HC_SEEK,        /* struct instar_hc_seek: where a device's data and holes lie */
    INSTAR_HC_PROGRESS,    /* struct instar_hc_progress: how far the operation is */
    INSTAR_HC_CMP,         /* struct instar_hc_cmp: compare two device ranges on the host */
    INSTAR_HC_SCAN,        /* struct instar_hc_scan: convert's -S runs of a device range */
    INSTAR_HC_CLOCK,       /* struct instar_hc_clock: guest CPU time, for LUKS's PBKDF2 benchmark */
    INSTAR_HC_COPYV,       /* struct instar_hc_copyv: several INSTAR_HC_COPY requests at once */
    INSTAR_HC_MAX
};

/* Return codes the host writes to the 'ret' OUT fields. */
#define INSTAR_HC_OK      0
#define INSTAR_HC_EINVAL  -1 /* bad handle, range, alignment or mode */
#define INSTAR_HC_EIO     -2 /* the host I/O failed */
#define INSTAR_HC_ERANGE  -3 /* past the end of the device or write limit */
#define INSTAR_HC_EPERM   -4 /* write to a read-only device */
#define INSTAR_HC_ETOOBIG -5 /* over a per-call size limit */
#define INSTAR_HC_ENOSPC  -6 /* a write, zero, copy, truncate or flush: the file system is full */

/*
 * Per-call transfer limit.  Large so that a sequential walk costs few
 * exits (each exit is ~10 us under nested KVM); bounded so one call cannot
 * stall the host for long.
 */
#define INSTAR_BLK_XFER_MAX (16ULL << 20)

struct instar_hc_blk {
    uint32_t handle; /* IN: index into boot_info.devices */
    uint32_t pad;
    uint64_t offset; /* IN: byte offset in the device */
    uint64_t data;   /* IN: guest-physical address of the buffer */
    uint64_t len;    /* IN: bytes, <= INSTAR_BLK_XFER_MAX */
    int64_t ret;     /* OUT: bytes moved (short read at EOF), or < 0 */
};

struct instar_hc_flush {
    uint32_t handle; /* IN */
    uint32_t pad;
    int64_t ret; /* OUT */
};

/* The typed result of the operation; see include/instar/result.h. */
#define INSTAR_RESULT_MAX (16ULL << 20)

struct instar_hc_result {
    uint64_t data; /* IN: guest-physical address of the result blob */
    uint64_t len;  /* IN: its length, <= INSTAR_RESULT_MAX */
    int64_t ret;   /* OUT */
};

#define INSTAR_LOG_MAX 1024

struct instar_hc_log {
    uint64_t data; /* IN: message bytes (not NUL-terminated) */
    uint64_t len;  /* IN: <= INSTAR_LOG_MAX */
};

/* A failed assertion in the guest (after the KVM selftests' GUEST_ASSERT). */
struct instar_hc_panic {
    uint64_t expr; /* IN: guest address of a NUL-terminated string */
    uint64_t file; /* IN: likewise */
    uint32_t line; /* IN */
    uint32_t pad;
};

/* A CPU exception caught by the guest's IDT. */
struct instar_hc_trap {
    uint64_t vector; /* IN */
    uint64_t error_code;
    uint64_t rip;
    uint64_t cr2;
    uint64_t rsp;
};

/*
 * Diagnostics that qemu-img prints while it works (check's per-cluster
 * lines), streamed so that their number is not bounded by guest RAM or
 * the result size.  data holds packed records: a struct instar_report_rec,
 * then slen string bytes, then zero padding to a multiple of 8.  The host
 * validates every record and prints them on stderr in order, before the
 * result.  Only operations that expect them accept them (check, repair,
 * map and measure, convert --salvage, compare's size warning);
 * for the others the call is a protocol error.
 */
#define INSTAR_REPORT_MAX (64u << 10)

struct instar_hc_report {
    uint64_t data; /* IN: guest-physical address of the records */
    uint64_t len;  /* IN: bytes, <= INSTAR_REPORT_MAX */
    int64_t ret;   /* OUT */
};

/* The line starts with "<prog>: " (QEMU's error_report, not fprintf). */
#define INSTAR_REC_PREFIX (1u << 0)

struct instar_report_rec {
    int32_t code;   /* a message code: formats/qcow2/check_err.h */
    uint16_t slen;  /* string bytes after the record ({s}) */
    uint16_t flags; /* INSTAR_REC_* */
    uint64_t args[4];
};

/*
 * Set the length of a writable device (the host ftruncates, or with
 * FALLOC/FULL allocates the grown range as qemu's file driver would:
 * posix_fallocate, or zeros written).  size <= write_limit.  FALLOC and
 * FULL grow the device by at most INSTAR_TRUNC_FILL_MAX per call (else
 * ETOOBIG), so that no single call keeps the host busy for long: a guest
 * grows a file in steps.
 */
#define INSTAR_TRUNC_FILL_MAX (1ULL << 30)

enum instar_trunc_mode {
    INSTAR_TRUNC_OFF = 0,
    INSTAR_TRUNC_FALLOC = 1,
    INSTAR_TRUNC_FULL = 2,
};

struct instar_hc_truncate {
    uint32_t handle; /* IN */
    uint32_t mode;   /* IN: enum instar_trunc_mode */
    uint64_t size;   /* IN: new length in bytes */
    int64_t ret;     /* OUT */
};

/*
 * Copy len bytes from device src at src_off to device dst at dst_off on
 * the host, without the bytes passing through guest RAM: the guest has
 * planned where they go (an uncompressed cluster is just a range of its
 * file).  Checked as a BLKREAD of src plus a BLKWRITE of dst.
 *
 * With INSTAR_COPY_SPARSE the host skips runs of zero bytes the way
 * qemu-img convert's -S does (is_allocated_sectors_min: runs of at least
 * sparse_sectors 512-byte sectors, aligned as qemu aligns them, relative
 * to the destination offset), leaving them unwritten: the guest asks for
 * it only where the destination already reads as zeros.  With
 * INSTAR_COPY_PUNCH it instead zeroes those runs as INSTAR_HC_ZERO does.
 * written (OUT) is the number of bytes actually written.
 */
#define INSTAR_COPY_MAX        (64ULL << 20)
#define INSTAR_COPY_SPARSE_MAX (4ULL << 20) /* with SPARSE or PUNCH */
#define INSTAR_COPY_SPARSE     (1u << 0)
#define INSTAR_COPY_PUNCH      (1u << 1)

struct instar_hc_copy {
    uint32_t src;            /* IN: readable device */
    uint32_t dst;            /* IN: writable device */
    uint64_t src_off;        /* IN */
    uint64_t dst_off;        /* IN */
    uint64_t len;            /* IN: <= INSTAR_COPY_MAX */
    uint32_t flags;          /* IN: INSTAR_COPY_* */
    uint32_t sparse_sectors; /* IN: -S in 512-byte sectors (with SPARSE or PUNCH), >= 1 */
    uint32_t alignment;      /* IN: convert's alignment in sectors, a power of two */
    uint32_t pad;
    uint64_t sector; /* IN: the destination sector dst_off stands for (alignment) */
    int64_t written; /* OUT */
    int64_t ret;     /* OUT: 0 or INSTAR_HC_E* */
};

/*
 * n copies in one exit: vec holds n struct instar_hc_copy, each checked
 * and done as INSTAR_HC_COPY does it, in order, until one fails (its
 * fault-injection count included: one write each).  The host reads the
 * vector once; the requests' own written and ret fields are not written
 * (the guest batches copies that are each a chunk of convert, whose
 * failure it reports at the failing one's offset: done says which).
 */
#define INSTAR_COPYV_MAX 256

struct instar_hc_copyv {
    uint64_t vec;    /* IN: guest-physical address of n struct instar_hc_copy */
    uint32_t n;      /* IN: 1 .. INSTAR_COPYV_MAX */
    uint32_t done;   /* OUT: requests done before the one that failed (n: all) */
    int64_t written; /* OUT: bytes written by all of them */
    int64_t ret;     /* OUT: 0, or the failed request's INSTAR_HC_E* */
};

/*
 * Make [offset, offset + len) of a writable device read as zeros without
 * growing it past its write limit: a hole where the file system can punch
 * one (qemu's write_zeroes with BDRV_REQ_MAY_UNMAP on a file), else zeros.
 * With INSTAR_ZERO_ALLOCATE the range is allocated as zeros instead
 * (write_zeroes without MAY_UNMAP, as qcow2's handle_alloc_space() asks
 * for it: fallocate(FALLOC_FL_ZERO_RANGE), growing the file; else written
 * zeros), so that the file system lays the file out as under qemu.
 * With INSTAR_ZERO_DISCARD the range is discarded as qemu's file driver
 * discards freed qcow2 clusters (bdrv_pdiscard on a file): a hole is
 * punched in the part inside the file where the file system can punch
 * one, and nothing else happens (no zeros written, the file never grows);
 * the range then reads as zeros or as before, as under qemu.
 * With INSTAR_ZERO_DATA zero bytes are written, as a write of a zeroed
 * buffer writes them (qemu-img rebase writing the old chain's zeros as
 * data); at most one of the three flags.
 */
#define INSTAR_ZERO_MAX      (1ULL << 30)
#define INSTAR_ZERO_ALLOCATE (1u << 0)
#define INSTAR_ZERO_DISCARD  (1u << 1)
#define INSTAR_ZERO_DATA     (1u << 2)

struct instar_hc_zero {
    uint32_t handle; /* IN */
    uint32_t flags;  /* IN: INSTAR_ZERO_* */
    uint64_t offset; /* IN */
    uint64_t len;    /* IN: <= INSTAR_ZERO_MAX */
    int64_t ret;     /* OUT */
};

/*
 * Where data and holes lie from offset on (qemu's find_allocation():
 * lseek SEEK_DATA, then SEEK_HOLE).  status: INSTAR_SEEK_OK with data and
 * hole set as find_allocation sets them, INSTAR_SEEK_NXIO past the last
 * data (a trailing hole), INSTAR_SEEK_UNKNOWN if the file system cannot
 * tell.
 *
 * With max_exts > 0 the host goes on where that answer's region ends (at
 * hole after data, at data after a hole) and writes to exts the answers
 * find_allocation() would give there, one after the other, nexts of
 * them: a stretch of the file's allocation in one call (a walk over a
 * sparse source costs one call per INSTAR_SEEK_EXT_MAX regions, not one
 * per region).  It stops after max_exts answers, after a NXIO or UNKNOWN
 * answer, and at the end of the device.
 */
enum instar_seek_status {
    INSTAR_SEEK_OK = 0,
    INSTAR_SEEK_NXIO = 1,
    INSTAR_SEEK_UNKNOWN = 2,
};

#define INSTAR_SEEK_EXT_MAX 1024

struct instar_seek_ext {
    uint64_t offset; /* where find_allocation() was asked */
    uint64_t data;
    uint64_t hole;
    uint32_t status; /* enum instar_seek_status */
    uint32_t pad;
};

struct instar_hc_seek {
    uint32_t handle;   /* IN */
    uint32_t max_exts; /* IN: entries exts holds, <= INSTAR_SEEK_EXT_MAX; 0: one answer */
    uint64_t offset;   /* IN: < the device's size */
    uint64_t exts;     /* IN: guest address of struct instar_seek_ext[max_exts] */
    uint64_t data;     /* OUT */
    uint64_t hole;     /* OUT */
    uint32_t status;   /* OUT: enum instar_seek_status */
    uint32_t nexts;    /* OUT: answers written to exts */
    int64_t ret;       /* OUT: 0 or INSTAR_HC_E* */
};

/*
 * Compare len bytes of device a at a_off with device b at b_off on the
 * host, as qemu-img compare's compare_buffers() does: differ says whether
 * the first 512-byte sector differs, same_len how many bytes from the
 * start share that answer (whole sectors, or the rest of the range).  The
 * guest asks only where both ranges are plain file data.
 */
#define INSTAR_CMP_MAX (64ULL << 20)

struct instar_hc_cmp {
    uint32_t a; /* IN: readable device */
    uint32_t b; /* IN: readable device */
    uint64_t a_off;
    uint64_t b_off;
    uint64_t len;      /* IN: 1 .. INSTAR_CMP_MAX, within both devices */
    uint64_t differ;   /* OUT: 0 or 1 */
    uint64_t same_len; /* OUT */
    int64_t ret;       /* OUT: 0 or INSTAR_HC_E* */
};

/*
 * The runs convert's -S would find in len bytes of device dev at off
 * (is_allocated_sectors_min with min_sparse and alignment, the first
 * sector standing for sector), without the bytes entering guest RAM: the
 * host writes nruns entries to runs, each (sectors << 1) | allocated, and
 * the guest then allocates and copies only the allocated runs.
 */
struct instar_hc_scan {
    uint32_t dev;        /* IN: readable device */
    uint32_t min_sparse; /* IN: sectors, >= 1 */
    uint64_t off;
    uint64_t len;       /* IN: a multiple of 512, <= INSTAR_COPY_SPARSE_MAX, within dev */
    uint64_t sector;    /* IN */
    uint32_t alignment; /* IN: sectors, a power of two */
    uint32_t max_runs;  /* IN: entries the array holds */
    uint64_t runs;      /* IN: guest address of uint32_t[max_runs] */
    uint64_t nruns;     /* OUT */
    int64_t ret;        /* OUT: 0 or INSTAR_HC_E* (ETOOBIG: more runs than max_runs) */
};

/*
 * Progress of a long operation (qemu-img -p, SIGUSR1): the numbers qemu
 * passes to qemu_progress_print(), which the host computes with qemu's
 * float arithmetic and prints as qemu does (INSTAR_PROGRESS_* modes).
 */
struct instar_hc_progress {
    uint32_t mode; /* IN: INSTAR_PROGRESS_ABS or INSTAR_PROGRESS_ADD */
    uint32_t pad;
    uint64_t num; /* IN: <= den */
    uint64_t den; /* IN: > 0 */
};

/*
 * The host's monotonic clock (qcrypto_pbkdf2_count_iters() times PBKDF2
 * runs with it when a LUKS header is created).  Not image data.
 */
struct instar_hc_clock {
    uint64_t ns; /* OUT */
};

struct instar_hc_exit {
    int64_t status; /* IN: 0 after a RESULT, else a guest-side failure */
};

/* --- Boot information --- */

/*
 * Devices a run can be given (since ABI v37; 32 before): room for the
 * extent files of vmdk images (a 2 TiB twoGbMaxExtent image has 1024).
 * The table lies in the boot info, below the IDT; the host keeps the
 * state of only the devices it hands over.
 */
#define INSTAR_DEV_MAX 4096

#define INSTAR_DEV_READ  (1u << 0)
#define INSTAR_DEV_WRITE (1u << 1)
/*
 * qemu opens the file with O_DIRECT (cache.direct=on): its request
 * alignment is at least a sector, so a data extent that ends at an end
 * of file inside a sector reaches the end of that sector
 * (raw_co_block_status()'s round-up).  Only block status reads it.
 */
#define INSTAR_DEV_DIRECT (1u << 2)

struct instar_dev {
    uint64_t size;        /* bytes at open time */
    uint64_t write_limit; /* writes may extend the device up to here */
    uint32_t flags;       /* INSTAR_DEV_* */
    uint32_t pad;
    uint64_t allocated; /* bytes the file system allocated to it at boot (st_blocks * 512) */
};

/* Operations the guest can plan. */
enum instar_op {
    INSTAR_OP_NONE = 0,
    INSTAR_OP_INFO,    /* args: struct instar_info_args */
    INSTAR_OP_CHECK,   /* args: struct instar_check_args */
    INSTAR_OP_CREATE,  /* args: struct instar_create_args */
    INSTAR_OP_RESIZE,  /* args: struct instar_resize_args */
    INSTAR_OP_MAP,     /* args: struct instar_map_args */
    INSTAR_OP_COMPARE, /* args: struct instar_compare_args */
    INSTAR_OP_CONVERT, /* args: struct instar_convert_args */
    INSTAR_OP_DD,      /* args: struct instar_dd_args */
    INSTAR_OP_BENCH,   /* args: struct instar_bench_args */
    INSTAR_OP_REBASE,  /* args: struct instar_rebase_args */
    INSTAR_OP_COMMIT,  /* args: struct instar_commit_args */
    /* args: struct instar_snapshot_args */
    INSTAR_OP_SNAPSHOT,
    INSTAR_OP_AMEND,  /* args: struct instar_amend_args */
    INSTAR_OP_BITMAP, /* args: struct instar_bitmap_args */
    INSTAR_OP_MAX
};

#define INSTAR_FMT_NAME_MAX 32

/* The file name ends in ".dmg": qemu's dmg probe looks only at that. */
#define INSTAR_INFO_NAME_DMG (1u << 0)
/*
 * Describe the image as the open of another command sees it: OPEN_CHECK
 * is qemu's BDRV_O_CHECK (qemu-img check: no snapshot table, no refcount
 * table required), OPEN_RDWR a read-write open (a corrupt image refused).
 */
#define INSTAR_INFO_OPEN_CHECK (1u << 1)
#define INSTAR_INFO_OPEN_RDWR  (1u << 2)
/* vpc's force_size_calc open option: chs, or current_size. */
#define INSTAR_INFO_VPC_SIZE_CHS     (1u << 3)
#define INSTAR_INFO_VPC_SIZE_CURRENT (1u << 4)
/*
 * vmdk (since ABI v32): the devices after the image are only the first of
 * the extent files the descriptor names (the host could not open the next
 * one).  The guest opens those as qemu does before it reaches the missing
 * file and answers with their error, or with INSTAR_INFO_VMDK_NEED_FILES
 * again when they open: the host then reports the missing file.
 */
#define INSTAR_INFO_VMDK_PARTIAL (1u << 5)
/*
 * A secret comes with the image (since ABI v46): with OPEN_CHECK (an open
 * with I/O), a qcow AES image opens rather than fail for want of a key.
 */
#define INSTAR_INFO_HAS_KEY (1u << 6)

struct instar_info_args {
    char format[INSTAR_FMT_NAME_MAX]; /* "" = probe, else -f value */
    uint32_t flags;                   /* INSTAR_INFO_NAME_* */
    uint32_t pad;
};

/*
 * check (and, with FIX_*, repair: qemu's BDRV_FIX_LEAKS / BDRV_FIX_ERRORS).
 * Device 0 is the image (writable only when a FIX flag is set).
 */
#define INSTAR_CHECK_FIX_LEAKS  (1u << 0)
#define INSTAR_CHECK_FIX_ERRORS (1u << 1)
#define INSTAR_CHECK_NAME_DMG   (1u << 2) /* as INSTAR_INFO_NAME_DMG */

/*
 * Secrets for encrypted nodes (since ABI v14): the bytes of the
 * --object secret a node's encrypt.key-secret / key-secret names, as
 * qcrypto_secret_lookup_as_utf8() returns them (up to the first NUL: the
 * LUKS passphrase).  They are not image bytes: the guest only feeds them
 * to PBKDF2.  A check args' key unlocks its image (has_key); a graph's
 * are its nodes' (node_key).
 */
#define INSTAR_KEY_MAX   4
#define INSTAR_KEY_BYTES 256

struct instar_key {
    uint32_t len; /* <= INSTAR_KEY_BYTES */
    uint8_t data[INSTAR_KEY_BYTES];
};

struct instar_check_args {
    char format[INSTAR_FMT_NAME_MAX]; /* "" = probe, else -f value */
    uint32_t flags;                   /* INSTAR_CHECK_* */
    uint32_t has_key;                 /* 1: key unlocks the image (encrypt.key-secret) */
    struct instar_key key;
    /* vhdx: a replayed log's session file write GUID and two data write GUIDs (random) */
    uint8_t vhdx_guids[3][16];
};

/* qemu's PreallocMode, in the order of its QAPI enum. */
enum instar_prealloc {
    INSTAR_PREALLOC_OFF = 0,
    INSTAR_PREALLOC_METADATA = 1,
    INSTAR_PREALLOC_FALLOC = 2,
    INSTAR_PREALLOC_FULL = 3,
};

#define INSTAR_NAME_MAX 1024 /* backing/data file names, NUL included */

#define INSTAR_CREATE_LAZY_REFCOUNTS (1u << 0)
#define INSTAR_CREATE_EXTENDED_L2    (1u << 1)
#define INSTAR_CREATE_DATA_FILE_RAW  (1u << 2)
/*
 * A vpc image instead of qcow2 (size, vpc_timestamp, vpc_uuid and the
 * VPC_* flags only): dynamic, or FIXED; FORCE_SIZE is qemu's force_size.
 */
#define INSTAR_CREATE_VPC            (1u << 3)
#define INSTAR_CREATE_VPC_FIXED      (1u << 4)
#define INSTAR_CREATE_VPC_FORCE_SIZE (1u << 5)
/*
 * A parallels image instead of qcow2 (size and cluster_size, multiples of
 * 512 that formats/parallels' prl_create_layout() accepts, only).
 */
#define INSTAR_CREATE_PARALLELS (1u << 9)
/*
 * A vhdx image instead of qcow2 (size, the vhdx_* fields and the VHDX_*
 * flags only): dynamic, or FIXED; ZERO is qemu's block_state_zero.
 */
#define INSTAR_CREATE_VHDX       (1u << 6)
#define INSTAR_CREATE_VHDX_FIXED (1u << 7)
#define INSTAR_CREATE_VHDX_ZERO  (1u << 8)
/*
 * A vdi image instead of qcow2 (size, vdi_uuids and the VDI_* flags
 * only): dynamic, or STATIC (qemu's static=on).
 */
#define INSTAR_CREATE_VDI        (1u << 10)
#define INSTAR_CREATE_VDI_STATIC (1u << 11)

/*
 * A raw LUKS volume instead of qcow2 (size, prealloc and luks only), or
 * (ENCRYPT) a qcow2 image with encrypt.format=luks: the LUKS header in
 * clusters of its own, named by the crypto header extension.
 */
#define INSTAR_CREATE_LUKS    (1u << 12)
#define INSTAR_CREATE_ENCRYPT (1u << 13)
/* qcow2 with encrypt.format=aes: crypt_method 1 in the header, nothing else. */
#define INSTAR_CREATE_ENCRYPT_AES (1u << 14)
/*
 * A vmdk image instead of qcow2 (size, backing_file as the parent's
 * fileName hint, the vmdk_* fields and the VMDK_* flags only), laid out as
 * vmdk_co_do_create() does: device 0 the image (monolithic sparse) or the
 * descriptor file, devices 1.. its extent files in order.  FLAT: flat
 * extents (monolithicFlat, twoGbMaxExtentFlat); SPLIT: 2 GiB extents
 * (twoGbMaxExtent*); STREAM: streamOptimized; ZEROED: zeroed_grain=on.
 */
#define INSTAR_CREATE_VMDK        (1u << 15)
#define INSTAR_CREATE_VMDK_FLAT   (1u << 16)
#define INSTAR_CREATE_VMDK_SPLIT  (1u << 17)
#define INSTAR_CREATE_VMDK_STREAM (1u << 18)
#define INSTAR_CREATE_VMDK_ZEROED (1u << 19)

/* qemu's BlockdevVmdkAdapterType, in the order of its QAPI enum. */
enum instar_vmdk_adapter {
    INSTAR_VMDK_IDE = 0,
    INSTAR_VMDK_BUSLOGIC = 1,
    INSTAR_VMDK_LSILOGIC = 2,
    INSTAR_VMDK_LEGACYESX = 3,
};
#define INSTAR_VMDK_STR_MAX 512 /* hwversion, toolsversion, NUL included */

/*
 * The LUKS header's choices, as the host mapped qemu's options to the
 * header's names (qcrypto_block_luks_create()), the passphrase, and the
 * random bytes the host's random source gave: master key, salts, uuid,
 * and the seed of the AF split's random stripes (expanded in the guest
 * with AES-256 in counter mode).
 */
struct instar_create_luks {
    char cipher_name[32]; /* "aes" */
    char cipher_mode[32]; /* "xts-plain64" */
    char hash_spec[32];   /* "sha256" */
    uint32_t key_bytes;   /* master key length */
    uint32_t pad;
    uint64_t iter_time; /* ms */
    uint8_t master_key[64];
    uint8_t mk_salt[32];
    uint8_t slot_salt[32];
    char uuid[40]; /* 36 characters, then NULs */
    uint8_t seed[32];
    struct instar_key key;
};

/*
 * create a qcow2 image on device 0 (opened empty and writable; its
 * write_limit bounds the file).  The host has validated every option the
 * way qemu-img does before the guest runs; the guest re-checks the ranges
 * and lays the image out exactly as qcow2_co_create() does.  Device 1, when
 * present, is the external data file (for preallocation).
 */
struct instar_create_args {
    uint64_t size;         /* virtual size in bytes */
    uint64_t cluster_size; /* bytes, power of two, 512..2 MiB */
    uint32_t version;      /* 2 or 3 */
    uint32_t refcount_bits;
    uint32_t flags;            /* INSTAR_CREATE_* */
    uint32_t prealloc;         /* enum instar_prealloc */
    uint32_t compression_type; /* 0 zlib, 1 zstd */
    uint32_t pad;
    char backing_file[INSTAR_NAME_MAX]; /* "" = none, as it goes in the header */
    char backing_fmt[INSTAR_FMT_NAME_MAX];
    char data_file[INSTAR_NAME_MAX]; /* "" = none */
    uint32_t vpc_timestamp;          /* the footer's: seconds since 2000-01-01 UTC */
    uint8_t vpc_uuid[16];            /* the footer's: random, version 4 */
    uint32_t pad2;
    uint32_t vhdx_log_size;   /* a multiple of 1 MiB */
    uint32_t vhdx_block_size; /* 0: qemu's choice by size */
    uint32_t vhdx_seq;        /* the first header's sequence number (random) */
    uint32_t pad3;
    uint8_t vhdx_guids[3][16]; /* file write, data write, page 83 data: random */
    uint8_t vdi_uuids[32];     /* vdi: the image's and last snapshot's UUIDs, random, version 4 */
    struct instar_create_luks luks; /* INSTAR_CREATE_LUKS / INSTAR_CREATE_ENCRYPT */
    /* INSTAR_CREATE_VMDK: */
    uint32_t vmdk_cid;        /* the new descriptor's CID (random) */
    uint32_t vmdk_parent_cid; /* the backing image's CID, or 0xffffffff */
    uint32_t vmdk_adapter;    /* enum instar_vmdk_adapter */
    uint32_t vmdk_first_only; /* 1: lay out device 0 only (qemu fails on the backing file next) */
    char vmdk_hwversion[INSTAR_VMDK_STR_MAX];    /* ddb.virtualHWVersion */
    char vmdk_toolsversion[INSTAR_VMDK_STR_MAX]; /* ddb.toolsVersion */
    /* The extent lines' names: stem + "" / "-flat" / "-s001" / "-f001" ... + suffix. */
    char vmdk_stem[INSTAR_NAME_MAX];
    char vmdk_suffix[INSTAR_NAME_MAX];
};

#define INSTAR_RESIZE_SHRINK (1u << 0) /* --shrink was given */
/*
 * Facts about the backing file the host learnt from its own describe (the
 * guest opens it only with INSTAR_RESIZE_CHAIN, below).  ZERO_WRITE: the
 * backing file is longer than the image, so the grown range must read as
 * zeros (QEMU's BDRV_REQ_ZERO_WRITE).
 * BACKING_HEAD: the backing file reaches into the cluster holding the
 * current end of the image.
 */
#define INSTAR_RESIZE_ZERO_WRITE   (1u << 1)
#define INSTAR_RESIZE_BACKING_HEAD (1u << 2)
/*
 * OPEN_ONLY: open the image read-write and close it, nothing resized (size
 * ignored): what qemu-img does before a size check of img_resize() or
 * qcow2_co_truncate() fails.  The persistent bitmaps are marked in use at
 * the open and stored again at the close.
 */
#define INSTAR_RESIZE_OPEN_ONLY (1u << 3)

/*
 * CHAIN: chain holds the image and its backing chain as nodes (node 0 the
 * image: its file device 0, its data file device 1; the backing images'
 * devices read-only after them).  The guest opens it read-only to read
 * the guest data of the partial cluster at the old end before a grow
 * copies that cluster into a new one (the backing file's data and
 * compressed clusters, as QEMU's copy-on-write reads them).
 */
#define INSTAR_RESIZE_CHAIN (1u << 4)
/*
 * QED (since ABI v28): device 0 is a qed image, opened read-write by the
 * guest's qed driver (a need-check image repaired, unknown autoclear bits
 * cleared) and grown as bdrv_qed_co_truncate() does: its header's image
 * size rewritten, nothing else.  Only size, prealloc and ZERO_WRITE (qed
 * takes none: the grow is refused after the open) are used.
 */
#define INSTAR_RESIZE_QED (1u << 5)
/* struct instar_resize_args: after struct instar_graph, below. */

/* snapshot's actions (qemu-img snapshot -c, -d, -a). */
enum instar_snapshot_action {
    INSTAR_SNAPSHOT_CREATE = 1,
    INSTAR_SNAPSHOT_DELETE = 2,
    INSTAR_SNAPSHOT_APPLY = 3,
};

#define INSTAR_SNAPSHOT_NAME_MAX 256 /* QEMUSnapshotInfo.name, NUL included */

/*
 * snapshot: create, delete or apply an internal snapshot of the qcow2
 * image on device 0 (writable).  name is NUL-terminated (the host cut it
 * at 255 bytes as qemu-img's pstrcpy does); date is the host's wall clock
 * for a create (g_get_real_time()).
 */
/*
 * BACKING: backing_len is the guest-visible length of the image's backing
 * file (the host's own describe): -a of a larger snapshot zero-fills the
 * grown range when the backing file is longer than the image (QEMU's
 * BDRV_REQ_ZERO_WRITE, as INSTAR_RESIZE_ZERO_WRITE).
 */
#define INSTAR_SNAPSHOT_BACKING (1u << 0)

/*
 * CHAIN (since ABI v33): chain holds the image's backing chain as graph
 * nodes, as INSTAR_RESIZE_CHAIN does for resize: -a's truncation to a
 * larger snapshot from a size inside a cluster reads that cluster's
 * guest data through it before the first write.
 */
#define INSTAR_SNAPSHOT_CHAIN (1u << 1)
/* struct instar_snapshot_args: after struct instar_graph, below. */

/*
 * amend the qcow2 image on device 0 (writable), as qcow2_amend_options()
 * does after the open: the host has parsed and checked the options; the
 * guest opens (repairing a dirty image), then applies the lazy refcounts
 * change and the truncation in qemu's order.  OPEN_ONLY: open and stop
 * (the host then reports an error qemu finds after the open).
 */
#define INSTAR_AMEND_SIZE         (1u << 0) /* size= given (non-zero) */
#define INSTAR_AMEND_LAZY         (1u << 1) /* lazy_refcounts= given */
#define INSTAR_AMEND_LAZY_ON      (1u << 2) /* its value */
#define INSTAR_AMEND_ZERO_WRITE   (1u << 3) /* as INSTAR_RESIZE_ZERO_WRITE */
#define INSTAR_AMEND_BACKING_HEAD (1u << 4) /* as INSTAR_RESIZE_BACKING_HEAD */
#define INSTAR_AMEND_OPEN_ONLY    (1u << 5)
#define INSTAR_AMEND_UPGRADE      (1u << 6) /* compat=1.1 on a version 2 image */
#define INSTAR_AMEND_DOWNGRADE    (1u << 7) /* compat=0.10 on a version 3 image */
#define INSTAR_AMEND_PROGRESS     (1u << 8) /* -p: the status calls as INSTAR_HC_PROGRESS */
/* data_file= given: the header names data_file instead ("" none). */
#define INSTAR_AMEND_DATA_FILE (1u << 9)
/* data_file_raw=off given on a raw data file image: the bit cleared. */
#define INSTAR_AMEND_RAW_OFF (1u << 10)

/*
 * A LUKS key slot change (since ABI v29), qcrypto_block_luks_amend_options()
 * on device 0: a raw LUKS volume (the header at 0), or a qcow2 image's
 * LUKS header (its crypto header extension).  The host has made the
 * checks that need no key material (the options' misuse, the slot's
 * range); the guest unlocks the volume and makes the rest in qemu's order.
 */
#define INSTAR_AMEND_LUKS (1u << 11)

#define INSTAR_AMEND_LUKS_ACTIVE  (1u << 0) /* state=active: a key added (else erased) */
#define INSTAR_AMEND_LUKS_KEYSLOT (1u << 1) /* keyslot= given */
#define INSTAR_AMEND_LUKS_OLD     (1u << 2) /* old-secret= given: old_key */
#define INSTAR_AMEND_LUKS_FORCE   (1u << 3) /* --force */
#define INSTAR_AMEND_LUKS_VOLUME  (1u << 4) /* device 0 is a raw LUKS volume (else qcow2) */

struct instar_amend_luks {
    uint32_t flags;        /* INSTAR_AMEND_LUKS_* */
    uint32_t keyslot;      /* with INSTAR_AMEND_LUKS_KEYSLOT: < 8 */
    uint64_t iter_time;    /* ms (ACTIVE) */
    uint8_t slot_salt[32]; /* the added slot's salt: random */
    /* The AF split's stripes and the erased material's bytes (AES-256-CTR of it): random. */
    uint8_t seed[32];
    struct instar_key key;     /* the volume's secret: unlocks the master key */
    struct instar_key new_key; /* ACTIVE: the added slot's passphrase */
    struct instar_key old_key; /* OLD: the passphrase of the slots erased */
};

/* CHAIN (since ABI v33): as INSTAR_SNAPSHOT_CHAIN, for the truncation of size=. */
#define INSTAR_AMEND_CHAIN (1u << 12)
/* struct instar_amend_args: after struct instar_graph, below. */

/*
 * --- Image graphs for the data path (map, compare, convert, dd, bench) ---
 *
 * The host opens every image of a chain under its path policy and hands
 * each one to the guest as a node: the driver the host's describe run
 * found, the device holding it, the device of its external data file, and
 * the node of its backing image.  The guest opens the nodes again (with
 * the same checks) and composes the chain itself (guest/bdrv.c).
 */
#define INSTAR_NODE_MAX 32
#define INSTAR_NO_NODE  0xffffffffu

enum instar_driver {
    INSTAR_DRV_RAW = 1,
    INSTAR_DRV_QCOW2 = 2,
    INSTAR_DRV_VPC = 3,
    /* Reserved for the formats being built (issue 12), one value each. */
    INSTAR_DRV_VMDK = 4,
    INSTAR_DRV_VHDX = 5,
    INSTAR_DRV_VDI = 6,
    INSTAR_DRV_QCOW = 7,
    INSTAR_DRV_QED = 8,
    INSTAR_DRV_PARALLELS = 9,
    INSTAR_DRV_DMG = 10,
    INSTAR_DRV_BOCHS = 11,
    INSTAR_DRV_CLOOP = 12,
    INSTAR_DRV_LUKS = 13,
};
/*
 * instar_node.driver: the enum in the low 16 bits, the driver's open
 * options above INSTAR_DRV_OPT_SHIFT (vpc: force_size_calc, 1 = chs,
 * 2 = current_size; parallels, since ABI v42: 1 = prealloc-mode=truncate).
 */
#define INSTAR_DRV_MASK      0xffffu
#define INSTAR_DRV_OPT_SHIFT 16

struct instar_node {
    uint32_t driver;  /* enum instar_driver */
    uint32_t file;    /* device holding the image */
    uint32_t data;    /* device of its external data file, or INSTAR_NO_NODE */
    uint32_t backing; /* node index of its backing image, or INSTAR_NO_NODE */
};

/*
 * snapshot: 0, or n: node 0 (the top of the first chain) reads through the
 * L1 table of its internal snapshot n - 1 (the table's order) instead of
 * its active one, as after qemu's bdrv_snapshot_load_tmp() (-l).  The
 * field was padding: 0 keeps its meaning.
 */
/*
 * node_key[i]: 0 (none), or k for keys[k - 1] (struct instar_key, above;
 * since ABI v14).  seed: random bytes from the host's random source, the
 * one source of what a written image draws at random: a writable vhdx
 * node expands them into its GUIDs (session, data write and log GUIDs;
 * since ABI v18), a written vmdk node takes its new CID from bytes 0..3
 * (little-endian; since ABI v32, before which a separate field held it).
 */
/*
 * window[i] (since ABI v46): raw's offset and size options (block/
 * raw-format.c), for a raw node only: the node reads and writes the bytes
 * of its file from offset on, and its length is the file's past offset,
 * at most size when has_size (else the file's length decides).  All zero
 * (a zeroed graph) is the whole file, as before.
 */
struct instar_window {
    uint64_t offset;
    uint64_t size;
    uint32_t has_size; /* 0 or 1 */
    uint32_t pad;
};

struct instar_graph {
    uint32_t nnodes;
    uint32_t snapshot;
    struct instar_node nodes[INSTAR_NODE_MAX];
    uint8_t node_key[INSTAR_NODE_MAX];
    struct instar_key keys[INSTAR_KEY_MAX];
    uint8_t seed[32];
    struct instar_window window[INSTAR_NODE_MAX];
};

/* resize the qcow2 image on device 0 (writable) to an absolute size. */
struct instar_resize_args {
    uint64_t size;             /* new virtual size in bytes (host resolved +/-) */
    uint32_t prealloc;         /* enum instar_prealloc */
    uint32_t flags;            /* INSTAR_RESIZE_* */
    struct instar_graph chain; /* with INSTAR_RESIZE_CHAIN */
};

struct instar_snapshot_args {
    uint32_t action; /* enum instar_snapshot_action */
    uint32_t date_sec;
    uint32_t date_nsec;
    uint32_t flags; /* INSTAR_SNAPSHOT_* (was padding) */
    char name[INSTAR_SNAPSHOT_NAME_MAX];
    uint64_t backing_len;      /* with INSTAR_SNAPSHOT_BACKING */
    struct instar_graph chain; /* with INSTAR_SNAPSHOT_CHAIN */
};

struct instar_amend_args {
    uint64_t size;                   /* the new virtual size (INSTAR_AMEND_SIZE) */
    uint32_t flags;                  /* INSTAR_AMEND_* */
    uint32_t refcount_bits;          /* refcount_bits= (a power of two, 1..64), 0 if not given */
    char data_file[INSTAR_NAME_MAX]; /* INSTAR_AMEND_DATA_FILE: NUL-terminated */
    struct instar_amend_luks luks;   /* INSTAR_AMEND_LUKS */
    struct instar_graph chain;       /* with INSTAR_AMEND_CHAIN */
};

/*
 * bitmap: qemu-img bitmap's actions, in command-line order, on the
 * persistent bitmap `name` of node g.nodes[0] (a qcow2 image, writable,
 * opened without its backing chain); merge sources come from the image
 * itself or, with INSTAR_BITMAP_SOURCE, from node `source` (read-only,
 * the -b image).  The guest opens the graph (a read-write open marks the
 * loaded bitmaps in use), applies the actions until one fails, closes
 * the image (its bitmaps stored) and answers with a struct
 * instar_data_result: INSTAR_DATA_OK, or INSTAR_DATA_EBITMAP with
 * offset = action index << 8 | enum instar_bitmap_err and errnum an errno
 * where the message has one; image 1: the image is empty and the close
 * stored nothing (qemu: "Lost persistent bitmaps ...: No memory").
 */
#define INSTAR_BITMAP_ACT_MAX   64
#define INSTAR_BITMAP_SRC_BYTES 1280
#define INSTAR_BITMAP_NAME_MAX  1024    /* BME_MAX_NAME_SIZE + NUL */
#define INSTAR_BITMAP_NO_NAME   0xffffu /* src_off: a name longer than any bitmap's */

enum instar_bitmap_act {
    INSTAR_BITMAP_ADD = 1,
    INSTAR_BITMAP_REMOVE = 2,
    INSTAR_BITMAP_CLEAR = 3,
    INSTAR_BITMAP_ENABLE = 4,
    INSTAR_BITMAP_DISABLE = 5,
    INSTAR_BITMAP_MERGE = 6,
};

#define INSTAR_BITMAP_SOURCE      (1u << 0) /* merge sources from node `source` */
#define INSTAR_BITMAP_GRANULARITY (1u << 1) /* -g given (granularity != 0) */

/* Why an action failed (the host words each as qemu-img does). */
enum instar_bitmap_err {
    INSTAR_BITMAP_ENOT_FOUND = 1,     /* the bitmap `name` */
    INSTAR_BITMAP_ESRC_NOT_FOUND = 2, /* the merge source */
    INSTAR_BITMAP_EEXISTS = 3,
    INSTAR_BITMAP_EINCONSISTENT = 4,     /* the bitmap `name` is in use */
    INSTAR_BITMAP_ESRC_INCONSISTENT = 5, /* the merge source is */
    INSTAR_BITMAP_EEMPTY_NAME = 6,
    INSTAR_BITMAP_EGRANULARITY = 7, /* not a power of two, or under 512 */
    INSTAR_BITMAP_EV2 = 8,          /* a version 2 image */
    INSTAR_BITMAP_ETOO_BIG = 9,
    INSTAR_BITMAP_ENAME_TOO_LONG = 10,
    INSTAR_BITMAP_ETOO_MANY = 11,
    INSTAR_BITMAP_EDIR_FULL = 12,
    INSTAR_BITMAP_ESIZES = 13,  /* source and destination sizes differ */
    INSTAR_BITMAP_EREMOVE = 14, /* "Failed to update bitmap extension": errnum */
    INSTAR_BITMAP_ESTORE = 15,  /* storing at close failed: errnum (index = nact) */
    INSTAR_BITMAP_ERR_MAX = 15
};

struct instar_bitmap_args {
    struct instar_graph g;
    uint32_t flags;       /* INSTAR_BITMAP_* */
    uint32_t granularity; /* -g as qemu passes it on (uint32_t), with INSTAR_BITMAP_GRANULARITY */
    uint32_t source;      /* node of the -b image, with INSTAR_BITMAP_SOURCE */
    uint32_t nact;        /* 0..INSTAR_BITMAP_ACT_MAX (0: open and close) */
    uint32_t name_len;    /* the bitmap name's length (may exceed what name holds) */
    uint32_t pad;
    char name[INSTAR_BITMAP_NAME_MAX];       /* NUL-terminated when name_len fits */
    uint8_t act[INSTAR_BITMAP_ACT_MAX];      /* enum instar_bitmap_act */
    uint16_t src_off[INSTAR_BITMAP_ACT_MAX]; /* merge: its source's name in srcnames, or NO_NAME */
    char srcnames[INSTAR_BITMAP_SRC_BYTES];  /* NUL-terminated names */
};

/*
 * map: stream the block status of node top over [start, end) as records
 * (INSTAR_HC_REPORT, struct instar_map_rec), qemu-img map's
 * get_block_status() for each step; the host merges and prints them.
 *
 * qemu-img measure walks the same records (the status of the first layer
 * that has the range: what bdrv_block_status_above() answers), stepping
 * as qcow2_measure() steps: with measure_bits = n (9..21, the target's
 * cluster size 2^n), a record with DATA and ALLOCATED but not ZERO is
 * followed by one at the next multiple of 2^n (the walk skips the rest
 * of that cluster, as QEMU's loop does), so the records may have gaps.
 * measure_bits 0 (what the field was as padding) is map's walk.
 */
#define INSTAR_MAP_MEASURE_BITS_MIN 9
#define INSTAR_MAP_MEASURE_BITS_MAX 21

struct instar_map_args {
    struct instar_graph g;
    uint32_t top;
    uint32_t measure_bits; /* 0: map; else see above */
    uint64_t start;
    uint64_t end;
};

/* QEMU's BDRV_BLOCK_* bits, as block status reports them. */
#define INSTAR_BS_DATA         0x01u
#define INSTAR_BS_ZERO         0x02u
#define INSTAR_BS_OFFSET_VALID 0x04u
#define INSTAR_BS_RAW          0x08u
#define INSTAR_BS_ALLOCATED    0x10u
#define INSTAR_BS_EOF          0x20u
#define INSTAR_BS_RECURSE      0x40u

struct instar_map_rec {
    uint64_t start;
    uint64_t length;
    uint64_t offset; /* with INSTAR_BS_OFFSET_VALID: in device dev */
    uint32_t status; /* INSTAR_BS_* */
    uint32_t depth;  /* the node in the chain that answered, 0 = top */
    uint32_t dev;    /* with INSTAR_BS_OFFSET_VALID: the device holding offset */
    uint32_t pad;
};

/*
 * compare: qemu-img compare of node top1 against node top2 (-s: strict).
 * The result (struct instar_data_result) says what qemu-img prints.
 * PROGRESS (-p): every step is reported (INSTAR_HC_PROGRESS), as qemu-img
 * prints from each; without it the steps are batched (SIGUSR1 only).
 * When the sizes differ, the moment qemu-img prints "Warning: Image size
 * mismatch!" (after the common part, before the longer image's tail and
 * its progress) is one INSTAR_HC_REPORT record, code
 * INSTAR_COMPARE_REC_SIZE_MISMATCH, slen 0, flags 0, args 0, sent once
 * and flushed at once, so the host prints it in order with the progress.
 */
#define INSTAR_COMPARE_STRICT   (1u << 0)
#define INSTAR_COMPARE_PROGRESS (1u << 1)

#define INSTAR_COMPARE_REC_SIZE_MISMATCH 1

struct instar_compare_args {
    struct instar_graph g;
    uint32_t top1;
    uint32_t top2;
    uint32_t flags;
    uint32_t pad;
};

/*
 * convert: qemu-img convert's copy loop (convert_do_copy) from the source
 * nodes src[0..nsrc), joined, to device target in format target_driver.
 * The host created (or, with -n, opened) the target and decided every
 * parameter below the way img_convert() does.
 */
#define INSTAR_CONVERT_SRC_MAX 16

#define INSTAR_CONVERT_ZERO_INIT      (1u << 0) /* s->has_zero_init */
#define INSTAR_CONVERT_TARGET_BACKING (1u << 1) /* s->target_has_backing (-B) */
#define INSTAR_CONVERT_COMPRESSED     (1u << 2) /* -c */
#define INSTAR_CONVERT_COPY_RANGE     (1u << 3) /* -C */
#define INSTAR_CONVERT_PROGRESS       (1u << 4) /* report progress (-p, or SIGUSR1) */
#define INSTAR_CONVERT_TARGET_NEW     (1u << 5) /* the target was created for this run */
#define INSTAR_CONVERT_BITMAPS        (1u << 6) /* --bitmaps: copy src[0]'s persistent bitmaps */
#define INSTAR_CONVERT_SKIP_BROKEN    (1u << 7) /* --skip-broken-bitmaps */
#define INSTAR_CONVERT_SALVAGE        (1u << 8) /* --salvage: read errors become zeros */

/*
 * convert --salvage streams what qemu-img warns about as it goes on past
 * an error (INSTAR_HC_REPORT, struct instar_report_rec with slen 0 and
 * flags 0), in the order qemu-img prints it:
 *   INSTAR_CONVERT_REC_BSTAT  args[0] the source byte offset, args[1] an
 *       errno: "error while reading block status at offset N: strerror"
 *   INSTAR_CONVERT_REC_READ   likewise: "error while reading offset N: ..."
 *   a corruption code (formats/qcow2/data_err.h) with its args: the
 *       "qcow2: Image is corrupt: ..." line of the event that caused the
 *       errors after it (it is then not repeated in the result).
 */
#define INSTAR_CONVERT_REC_BSTAT 1
#define INSTAR_CONVERT_REC_READ  2

struct instar_convert_args {
    struct instar_graph g;
    uint32_t nsrc;
    uint32_t src[INSTAR_CONVERT_SRC_MAX]; /* top nodes of the sources */
    uint32_t target;                      /* the writable device */
    uint32_t target_driver;               /* enum instar_driver */
    uint32_t flags;                       /* INSTAR_CONVERT_* */
    uint32_t min_sparse;                  /* -S in sectors; 0 = -S 0 */
    uint32_t buf_sectors;
    uint32_t alignment; /* sectors, a power of two */
    /*
     * A qcow2 target: its node in g (writable, its image file the device
     * target, its backing chain below it); INSTAR_NO_NODE for raw.
     */
    uint32_t target_node;
    uint32_t num_coroutines; /* -m: how many chunks qemu-img has in flight (progress on failure) */
    int64_t target_backing_sectors; /* -1: unknown or none */
    /* -l: g.snapshot (src[0] is node 0). */
    /* INSTAR_CONVERT_BITMAPS: copy the bitmaps from this directory index on */
    uint32_t bitmaps_from;
    uint32_t pad;
};

/*
 * dd: img_dd()'s copy loop.  Blocks of bs bytes of node src, from start
 * to end (the last one shorter), each read through the block layer and
 * written to node dst at the same offset minus start.  dst's file is a
 * writable device: the output image the host created for this run.
 */
struct instar_dd_args {
    struct instar_graph g;
    uint32_t src;   /* top node of the input */
    uint32_t dst;   /* the output node */
    uint64_t bs;    /* block size, 1..INT_MAX */
    uint64_t start; /* skip * bs, < end */
    uint64_t end;   /* the input size, or count * bs when smaller */
};

/*
 * bench: img_bench()'s requests on node top, issued in order and run one
 * at a time as they complete in qemu (bench_cb()'s accounting of requests
 * in flight, flushes included): count requests of bufsize bytes, the
 * first at offset, each next one step bytes on, modulo the image size.
 * With INSTAR_BENCH_WRITE, top's file is writable and every request
 * writes bufsize bytes of pattern.
 */
#define INSTAR_BENCH_WRITE    (1u << 0)
#define INSTAR_BENCH_NO_DRAIN (1u << 1) /* --no-drain */

struct instar_bench_args {
    struct instar_graph g;
    uint32_t top;
    uint32_t flags;          /* INSTAR_BENCH_* */
    uint32_t count;          /* requests, <= INT_MAX */
    uint32_t depth;          /* requests in flight, <= INT_MAX */
    uint32_t bufsize;        /* bytes per request, <= INT_MAX */
    uint32_t step;           /* bytes from one request to the next, <= INT_MAX */
    uint32_t flush_interval; /* 0: none, else >= depth */
    uint32_t pattern;        /* the byte a write request writes */
    uint64_t offset;         /* of the first request, < 2^63 */
};

/*
 * rebase: qemu-img rebase of node top (its file a writable device).
 * With INSTAR_REBASE_SAFE, img_rebase()'s loop first: for every range
 * top does not allocate, node old (top's backing; INSTAR_NO_NODE: none)
 * and node new (INSTAR_NO_NODE: no new backing, zeros) are read and what
 * differs is written into top.  INSTAR_REBASE_PREFIX: new is a node of
 * old's chain (qemu's prefix_chain_bs), and ranges no node above it
 * allocates are skipped.  Then, with data flushed, the header names the
 * new backing file: name (NUL-terminated) with INSTAR_REBASE_NAME, none
 * without; fmt with INSTAR_REBASE_FMT.  INSTAR_REBASE_NAME_LONG: the
 * name is longer than the 1023 bytes qcow2 takes (name is then empty),
 * so a qcow2 top's change fails with EINVAL as qemu's does; a qed top
 * (whose header clusters take names of any length) reads the name from
 * device name_dev (read-only, the name's bytes without a NUL) given with
 * INSTAR_REBASE_NAME_DEV (since ABI v42).
 * The result is a struct instar_data_result: EMETA ("error while reading
 * image metadata"), EREAD with image 1 (old) or 2 (new), EWRITE_AT
 * ("Error while writing to COW image"), EBACKING (errnum of the failed
 * change).  PROGRESS: qemu's per-step figure (INSTAR_PROGRESS_RECIP).
 */
#define INSTAR_REBASE_SAFE      (1u << 0)
#define INSTAR_REBASE_PREFIX    (1u << 1)
#define INSTAR_REBASE_PROGRESS  (1u << 2)
#define INSTAR_REBASE_NAME      (1u << 3)
#define INSTAR_REBASE_FMT       (1u << 4)
#define INSTAR_REBASE_NAME_LONG (1u << 5)
#define INSTAR_REBASE_NAME_DEV  (1u << 6)

#define INSTAR_REBASE_NAME_MAX 1024 /* 1023 bytes and the NUL */
/* A NAME_DEV name's most bytes: Linux's MAX_ARG_STRLEN, one argument's. */
#define INSTAR_REBASE_LONG_NAME_MAX 131072
#define INSTAR_REBASE_FMT_MAX       32

struct instar_rebase_args {
    struct instar_graph g;
    uint32_t top;
    uint32_t old;      /* top's backing node, or INSTAR_NO_NODE */
    uint32_t new_;     /* the new backing node, or INSTAR_NO_NODE */
    uint32_t flags;    /* INSTAR_REBASE_* */
    uint32_t name_dev; /* with INSTAR_REBASE_NAME_DEV: the long name's device */
    char name[INSTAR_REBASE_NAME_MAX];
    char fmt[INSTAR_REBASE_FMT_MAX];
};

/*
 * commit: qemu-img commit's active commit job (block/mirror.c's
 * mirror_run for commit_active_start) from node top into node base, a
 * node of top's backing chain whose file is writable; base_overlay is
 * the node right above base.  The host grew base to top's length first
 * when it was shorter.  top's file is writable too (qemu-img opens it
 * read-write: a dirty top is repaired, its persistent bitmaps marked in
 * use and stored again at its close); unless DROP, top is emptied after
 * the job as qcow2_make_empty() does.  The base's bitmaps record the
 * job's writes and are stored when the job ends (qemu's reopen of the
 * base read-only).  PROGRESS: report the job's progress
 * (INSTAR_PROGRESS_ABS) as qemu-img polls it.  OPEN_ONLY (since ABI v22):
 * open node top and close it, nothing else (base and base_overlay
 * ignored): what qemu-img's read-write open and close do before a check
 * of img_commit() fails.
 */
#define INSTAR_COMMIT_DROP      (1u << 0) /* -d, or -b */
#define INSTAR_COMMIT_PROGRESS  (1u << 1)
#define INSTAR_COMMIT_OPEN_ONLY (1u << 2)

struct instar_commit_args {
    struct instar_graph g;
    uint32_t top;
    uint32_t base;
    uint32_t base_overlay;
    uint32_t flags; /* INSTAR_COMMIT_* */
};

/* Progress modes (struct instar_hc_progress). */
#define INSTAR_PROGRESS_ABS   0 /* qemu_progress_print(100.0 * num / den, 0) */
#define INSTAR_PROGRESS_ADD   1 /* qemu_progress_print((float)num / den * 100, 100) */
#define INSTAR_PROGRESS_RECIP 2 /* qemu_progress_print((float)num / (int64_t)den, 100) */

#define INSTAR_ARGS_MAX 7136

#define INSTAR_BOOT_MAGIC 0x52415453 /* "STAR" */

/*
 * CPU features the guest's crypto may use (boot_info.cpu_features).  The
 * host finds them with its own CPUID (vmm/run.c) and the guest picks
 * nettle's code for each by these bits alone (guest/nettle_cpu.c): it never
 * runs CPUID itself.  All are SSE-encoded (no VEX), so no XCR0 state.
 * With none set the guest runs nettle's portable C.
 */
#define INSTAR_CPU_X86_64 (1u << 0) /* nettle's x86-64 assembly (any x86-64 CPU) */
#define INSTAR_CPU_AESNI  (1u << 1) /* CPUID.1:ECX.AES[bit 25] */
#define INSTAR_CPU_SHANI  (1u << 2) /* CPUID.(7,0):EBX.SHA[bit 29], and SSSE3 */
#define INSTAR_CPU_ALL    (INSTAR_CPU_X86_64 | INSTAR_CPU_AESNI | INSTAR_CPU_SHANI)

struct instar_boot_info {
    uint32_t magic;       /* INSTAR_BOOT_MAGIC */
    uint32_t abi_version; /* INSTAR_ABI_VERSION */
    uint64_t mem_size;    /* bytes of guest RAM, from 0 */
    uint32_t op;          /* enum instar_op */
    uint32_t ndevices;
    uint32_t cpu_features; /* INSTAR_CPU_* (trusted: the host's own CPUID) */
    uint32_t pad;
    struct instar_dev devices[INSTAR_DEV_MAX];
    union {
        struct instar_info_args info;
        struct instar_check_args check;
        struct instar_create_args create;
        struct instar_resize_args resize;
        struct instar_map_args map;
        struct instar_compare_args compare;
        struct instar_convert_args convert;
        struct instar_dd_args dd;
        struct instar_bench_args bench;
        struct instar_rebase_args rebase;
        struct instar_commit_args commit;
        struct instar_snapshot_args snapshot;
        struct instar_amend_args amend;
        struct instar_bitmap_args bitmap;
        uint8_t raw[INSTAR_ARGS_MAX];
    } args;
};

_Static_assert(sizeof(struct instar_boot_info) <= INSTAR_IDT_GPA - INSTAR_BOOT_INFO_GPA,
               "boot info must fit below the IDT");

#endif /* !__ASSEMBLER__ */
#endif /* INSTAR_ABI_H */
