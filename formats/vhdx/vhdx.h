/*
 * The VHDX format as qemu 7.2's block/vhdx.c and block/vhdx-log.c read it:
 * the file identifier, the two headers (CRC-32C, the current one chosen
 * by sequence number), the log (searched for an active sequence, replayed
 * by a read-write open), the region table (BAT and metadata regions,
 * unknown required regions refused, overlaps refused), the metadata items
 * (block size, virtual disk size, logical and physical sector size; a
 * differencing image is refused as qemu 7.2 refuses it) and the block
 * allocation table.  Reference: Microsoft's "VHDX Format Specification"
 * 1.0, sections 2 (headers, log, region table), 3 (BAT) and 4 (metadata).
 *
 * Pure code: no I/O, no allocation.  The caller reads the file through
 * struct vhdx_reader (bytes past the end of the file read as zeros, as
 * QEMU's file driver returns them) and owns the BAT's memory.
 */
#ifndef VHDX_VHDX_H
#define VHDX_VHDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhdx_err.h"

#define VHDX_MiB             (1024u * 1024u)
#define VHDX_HEADER1_OFFSET  (64u * 1024u)
#define VHDX_HEADER2_OFFSET  (128u * 1024u)
#define VHDX_REGION_OFFSET   (192u * 1024u)
#define VHDX_REGION2_OFFSET  (256u * 1024u)
#define VHDX_HEADER_SIZE     4096u
#define VHDX_HEADER_BLOCK    65536u
#define VHDX_LOG_SECTOR      4096u
#define VHDX_META_TABLE_SIZE 65536u /* 32 x (2047 entries + the header) */
#define VHDX_BLOCK_SIZE_MIN  VHDX_MiB
#define VHDX_BLOCK_SIZE_MAX  (256u * VHDX_MiB)
#define VHDX_REGIONS_MAX     2048u /* the log and 2047 region table entries */
#define VHDX_BAT_STATE_MASK  7u
#define VHDX_BAT_OFFSET_MASK 0xfffffffffff00000ull

/* Payload block states (specification 3.1.2). */
#define VHDX_PAYLOAD_NOT_PRESENT       0
#define VHDX_PAYLOAD_UNDEFINED         1
#define VHDX_PAYLOAD_ZERO              2
#define VHDX_PAYLOAD_UNMAPPED          3
#define VHDX_PAYLOAD_UNMAPPED_V095     5
#define VHDX_PAYLOAD_FULLY_PRESENT     6
#define VHDX_PAYLOAD_PARTIALLY_PRESENT 7

/* reader - read [off, off + len) of the image file; 0 or a negative code. */
struct vhdx_reader {
    int (*pread)(void *opaque, uint64_t off, void *buf, size_t len);
    void *opaque;
};

/* writer - write [off, off + len) (sync: written and flushed); 0 or negative. */
struct vhdx_writer {
    int (*pwrite)(void *opaque, uint64_t off, const void *buf, size_t len);
    int (*truncate)(void *opaque, uint64_t size); /* grow the file */
    void *opaque;
    int (*flush)(void *opaque); /* bdrv_flush(); NULL: nothing to do */
};

/* A registered file range [start, end) (vhdx_region_register()). */
struct vhdx_range {
    uint64_t start, end;
};

/* An active log sequence (VHDXLogSequence): entries from read up to write. */
struct vhdx_log_seq {
    bool valid;
    uint32_t read, write; /* byte indices into the log */
    uint32_t count;       /* entries */
    uint64_t sequence;    /* the last entry's sequence number */
};

struct vhdx_image {
    uint8_t headers[2][80]; /* the 80 defined bytes of each header, as read */
    unsigned curr;          /* the current header: 0 or 1 */
    uint8_t log_guid[16];
    uint64_t log_offset;
    uint32_t log_length;
    struct vhdx_log_seq log; /* the active sequence found at open */
    struct vhdx_range regions[VHDX_REGIONS_MAX];
    uint32_t nregions; /* registered, oldest first (QEMU walks newest first) */
    uint64_t bat_offset;
    uint32_t bat_length;
    uint64_t meta_offset;
    uint32_t block_size;
    uint32_t data_bits;
    uint64_t virtual_disk_size;
    uint32_t logical_sector_size;
    uint32_t physical_sector_size;
    uint32_t chunk_ratio;      /* payload blocks per sector bitmap block */
    unsigned chunk_ratio_bits; /* log2(chunk_ratio) */
    uint32_t bat_entries;      /* payload and sector bitmap entries */
    uint64_t total_sectors;    /* virtual_disk_size / 512 */
    uint64_t err_args[4];      /* the arguments of the last error */
};

/*
 * vhdx_open_headers - the file identifier, the headers (vhdx_parse_header())
 * and the log search (vhdx_parse_log() up to the replay): on success
 * img->log.valid says whether a log needs replay.  scratch: 4096 bytes.
 * Returns 0 or a negated VHDX_ERR_*.
 */
int vhdx_open_headers(const struct vhdx_reader *r, struct vhdx_image *img, uint8_t *scratch);

/*
 * vhdx_open_regions - the region table (vhdx_open_region_tables()), then
 * the metadata (vhdx_parse_metadata()) and the BAT's size
 * (vhdx_calc_bat_entries(), overflow-checked).  scratch: 65536 bytes.
 * On success img->bat_entries entries of BAT must be provided to
 * vhdx_read_bat().  Returns 0 or a negated VHDX_ERR_*.
 */
int vhdx_open_regions(const struct vhdx_reader *r, struct vhdx_image *img, uint8_t *scratch);

/*
 * vhdx_read_bat - read count BAT entries from entry first into bat (host
 * order).  Returns 0 or a negated VHDX_ERR_*.
 */
int vhdx_read_bat(const struct vhdx_reader *r, const struct vhdx_image *img, uint64_t first,
                  uint64_t count, uint64_t *bat);

/*
 * vhdx_bat_used - the entries reads can reach (the virtual size's blocks
 * and the sector bitmap entries among them): at most img->bat_entries,
 * and 0 for an empty disk, whose BAT qemu counts as 2^32 - 1 >> bits.
 */
uint64_t vhdx_bat_used(const struct vhdx_image *img);

/*
 * report - one check line: code a VHDX_MSG_* and its arguments.
 */
typedef void (*vhdx_report_fn)(void *opaque, int code, const uint64_t args[4]);

/*
 * vhdx_check_bat - vhdx_check_bat_entries() against a file of file_size
 * bytes, over count entries from entry first (bat holds them; the walk may
 * be cut into pieces in order, *payblocks carrying its state from one to
 * the next).  With report NULL (open), stops at the first problem and
 * returns its negated VHDX_ERR_* with img->err_args set; otherwise reports
 * each line and counts the problems in *errcnt, returning 0.
 */
int vhdx_check_bat(struct vhdx_image *img, const uint64_t *bat, uint64_t first, uint64_t count,
                   uint64_t *payblocks, uint64_t file_size, vhdx_report_fn report, void *opaque,
                   int64_t *errcnt);

/*
 * vhdx_log_replay - vhdx_log_flush(): write the active sequence found by
 * vhdx_open_headers() into the file (file_size its length), then the two
 * headers with a zero log GUID (vhdx_log_reset(); file_write_guid becomes
 * session_guid, as vhdx_user_visible_write() does first).  scratch: 8192
 * bytes.  Returns 0 or a negated VHDX_ERR_*.
 */
int vhdx_log_replay(const struct vhdx_reader *r, const struct vhdx_writer *w,
                    struct vhdx_image *img, uint64_t file_size, const uint8_t (*guids)[16],
                    uint8_t *scratch);

/*
 * vhdx_header_update - vhdx_update_header(): the non-current header gets
 * the next sequence number, file write GUID session, data write GUID
 * data_guid and log GUID log_guid (each NULL: kept), a checksum over its
 * 4 KiB as the file holds them, and is written and made current.  buf:
 * 4096 bytes.  Returns 0 or a negated VHDX_ERR_*.
 */
int vhdx_header_update(const struct vhdx_reader *r, const struct vhdx_writer *w,
                       struct vhdx_image *img, const uint8_t *session, const uint8_t *data_guid,
                       const uint8_t *log_guid, uint8_t *buf);

/*
 * Where a writer's next log entry goes (BDRVVHDXState.log): write and
 * tail byte indices into the log, the entry's sequence number (0: 1).
 */
struct vhdx_log_pos {
    uint32_t write, tail;
    uint64_t sequence;
};

/*
 * vhdx_log_write_entry - vhdx_log_write_and_flush() of the 8-byte BAT
 * entry `entry` (host order) at file offset `offset`, the file file_size
 * bytes long: both headers get log GUID log_guid, one entry (a header
 * sector, a data sector merged as qemu 7.2 merges a partial sector) goes
 * into the log at pos, the writer flushes, and the entry is replayed into
 * the file and the log reset (vhdx_log_flush()).  The log must be empty.
 * scratch: 8192 bytes.  Returns 0 or a negated VHDX_ERR_*.
 */
int vhdx_log_write_entry(const struct vhdx_reader *r, const struct vhdx_writer *w,
                         struct vhdx_image *img, struct vhdx_log_pos *pos, const uint8_t *session,
                         const uint8_t log_guid[16], uint64_t entry, uint64_t offset,
                         uint64_t file_size, uint8_t *scratch);

/*
 * vhdx_map - vhdx_block_translate() for guest offset off (< the virtual
 * size): the payload block's state (VHDX_PAYLOAD_*), *host the file offset
 * of off when FULLY_PRESENT, *run the bytes from off to the end of the
 * block.
 */
unsigned vhdx_map(const struct vhdx_image *img, const uint64_t *bat, uint64_t off, uint64_t *host,
                  uint64_t *run);

/* vhdx_checksum_ok - the CRC-32C of buf (len bytes, field at 4 as zero) is the field. */
bool vhdx_checksum_ok(const uint8_t *buf, size_t len);

#endif /* VHDX_VHDX_H */
