/*
 * The guest runtime: what planners (guest/plan_*.c) may call.
 *
 * The guest is freestanding: no host libc, no syscalls.  Everything it
 * learns about the world comes from the boot info and hypercalls.
 */
#ifndef GUEST_H
#define GUEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

#include "instar/abi.h"
#include "instar/errors.h"
#include "instar/result.h"

/* The boot info the host wrote at INSTAR_BOOT_INFO_GPA. */
extern const struct instar_boot_info *boot;

/* --- Hypercalls (guest/hypercall.c) --- */

int64_t hc_blk_read(uint32_t handle, uint64_t offset, void *buf, uint64_t len);
int64_t hc_blk_write(uint32_t handle, uint64_t offset, const void *buf, uint64_t len);
int64_t hc_flush(uint32_t handle);
/*
 * hc_last_write_error - the INSTAR_HC_E* code of the last write, flush,
 * truncate, copy or zero call that failed, 0 if none has.
 */
int64_t hc_last_write_error(void);
int64_t hc_result(const void *blob, uint64_t len);
void hc_log(const char *msg, size_t len);
int64_t hc_report(const void *recs, uint64_t len);
int64_t hc_truncate(uint32_t handle, uint64_t size, uint32_t mode);
int64_t hc_copy(uint32_t src, uint64_t src_off, uint32_t dst, uint64_t dst_off, uint64_t len,
                uint32_t flags, uint32_t sparse_sectors, uint32_t alignment, uint64_t sector,
                int64_t *written);
/*
 * hc_copyv - n copies (struct instar_hc_copy, their written and ret
 * fields unused) in one call, in order until one fails: *done of them
 * done (the host's count, unchecked), *written (may be NULL) their bytes.
 * Returns 0 or the failed one's INSTAR_HC_E*.
 */
int64_t hc_copyv(const struct instar_hc_copy *vec, uint32_t n, uint32_t *done, int64_t *written);
int64_t hc_zero(uint32_t handle, uint64_t offset, uint64_t len, uint32_t flags);
int64_t hc_seek(uint32_t handle, uint64_t offset, uint64_t *data, uint64_t *hole, uint32_t *status);
/*
 * hc_seek, and up to max further answers (abi.h, INSTAR_HC_SEEK) in
 * exts, *n of them (the host's count, unchecked: the caller checks it).
 */
int64_t hc_seek_ext(uint32_t handle, uint64_t offset, uint64_t *data, uint64_t *hole,
                    uint32_t *status, struct instar_seek_ext *exts, uint32_t max, uint32_t *n);
void hc_progress(uint32_t mode, uint64_t num, uint64_t den);
/* hc_clock_ns - the host's monotonic clock, in ns (INSTAR_HC_CLOCK). */
uint64_t hc_clock_ns(void);
int64_t hc_scan(uint32_t dev, uint64_t off, uint64_t len, uint32_t min_sparse, uint32_t alignment,
                uint64_t sector, uint32_t *runs, uint32_t max_runs, uint64_t *nruns);
int64_t hc_cmp(uint32_t a, uint64_t a_off, uint32_t b, uint64_t b_off, uint64_t len, bool *differ,
               uint64_t *same_len);
__attribute__((noreturn)) void hc_exit(int64_t status);
__attribute__((noreturn)) void hc_panic(const char *expr, const char *file, unsigned line);

/* Ends the run with INSTAR_HC_PANIC when expr is false (programmer invariants only). */
#define GUEST_ASSERT(expr)                                                                         \
    do {                                                                                           \
        if (!(expr))                                                                               \
            hc_panic(#expr, __FILE__, __LINE__);                                                   \
    } while (0)

/* --- Block reads with QEMU's semantics (guest/blk.c) --- */

/*
 * gblk_pread - read len bytes at offset of device handle into buf.
 * Bytes past the end of the device read as zeros, as QEMU's file driver
 * gives them.  Small reads go through a block cache so that walking a
 * table entry by entry does not exit per entry; large reads go straight to
 * the host in INSTAR_BLK_XFER_MAX pieces.
 * Returns 0, or -INSTAR_ERR_IO if the host refused or failed the read.
 */
int gblk_pread(uint32_t handle, uint64_t offset, void *buf, size_t len);

/* gblk_pread without the cache: for data, read once.  Same contract. */
int gblk_pread_direct(uint32_t handle, uint64_t offset, void *buf, size_t len);

/*
 * gblk_pread_ahead - gblk_pread for data read front to back in pieces
 * (vmdk's compressed grains): a read outside the current window fetches
 * a window of GBLK_AHEAD bytes from its start in one exit, and the
 * following reads inside it are copies.  Same contract.
 */
#define GBLK_AHEAD (1u << 20)
int gblk_pread_ahead(uint32_t handle, uint64_t offset, void *buf, size_t len);

/* Size in bytes of device handle at boot (0 if the handle is invalid). */
uint64_t gblk_size(uint32_t handle);
/* gblk_flags - the device's INSTAR_DEV_* flags (0 for no device). */
uint32_t gblk_flags(uint32_t handle);

/*
 * --- Devices a planner writes (guest/blk.c) ---
 * Writes and truncates go straight to the host; the device's length then
 * follows them, and every later read of it (gblk_pread included) bypasses
 * the cache and reads zeros past that length.  Each call returns 0, or the
 * negative INSTAR_HC_E* code of the call that failed (a short transfer is
 * INSTAR_HC_EIO), so callers can map ERANGE (past the write limit) apart.
 */
int gdev_pread(uint32_t handle, uint64_t offset, void *buf, size_t len);
int gdev_pwrite(uint32_t handle, uint64_t offset, const void *buf, size_t len);
int gdev_truncate(uint32_t handle, uint64_t size, uint32_t mode); /* enum instar_trunc_mode */
int gdev_flush(uint32_t handle);
/*
 * gdev_zero - make [offset, offset + len) read as zeros (INSTAR_HC_ZERO
 * with flags INSTAR_ZERO_*), growing the device when the range ends past
 * it.
 */
int gdev_zero(uint32_t handle, uint64_t offset, uint64_t len, uint32_t flags);

/*
 * gdev_discard - give [offset, offset + len) back to the file system as
 * qemu discards freed clusters (INSTAR_ZERO_DISCARD): the part inside the
 * device may read as zeros afterwards, or as before; never grows it.
 */
int gdev_discard(uint32_t handle, uint64_t offset, uint64_t len);

/* The device's length as the writes left it (its boot size before any). */
uint64_t gdev_length(uint32_t handle);

/* Whether the planner has written or truncated the device. */
bool gdev_written(uint32_t handle);

/* --- Memory (guest/alloc.c): the usual contracts, over guest RAM --- */

void *malloc(size_t size);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t size);
void free(void *p);

/* --- Building a result blob (guest/result.c) --- */

struct rbuf {
    uint8_t *buf;
    size_t len;
    size_t cap;
    int oom; /* set when an append failed; rbuf_send then reports NOMEM */
};

/*
 * rbuf_init - start a blob whose first fixed_size bytes are the operation's
 * result struct (zeroed).  Its header is filled by rbuf_send().
 * Returns 0 or -INSTAR_ERR_NOMEM.
 */
int rbuf_init(struct rbuf *rb, size_t fixed_size);

/* Append bytes as a string; returns its reference ({0,0} on OOM). */
struct instar_str rbuf_str(struct rbuf *rb, const void *s, size_t len);

/* Append n zeroed elements; returns their offset (0 on OOM). */
uint32_t rbuf_array(struct rbuf *rb, size_t elem_size, size_t n);

/* Pointer to offset off; valid until the next append. */
static inline void *rbuf_at(struct rbuf *rb, uint32_t off)
{
    return rb->buf + off;
}

/*
 * rbuf_send - fill the header (op, error, size), hand the blob to the host
 * and exit the guest.  Does not return.
 */
__attribute__((noreturn)) void rbuf_send(struct rbuf *rb, uint32_t op, int32_t error);

/*
 * result_error - send a bare error result for op: code with up to four
 * arguments and an optional string (s may be NULL).  Does not return.
 */
__attribute__((noreturn)) void result_error(uint32_t op, int32_t code, const uint64_t args[4],
                                            const void *s, size_t slen);

/*
 * result_warn - attach a warning (INSTAR_WARN_*) that qemu-img prints
 * count times; carried by whichever result is sent next, error or not.
 */
void result_warn(uint16_t code, uint16_t count);

/* --- Streamed diagnostics (guest/report.c) --- */

/*
 * greport - queue one diagnostic line for the host to print on stderr:
 * code is a message code (formats/qcow2/check_err.h), args fill its
 * numeric slots (NULL: zeros), s/slen its {s} slot.  Queued records reach
 * the host when the buffer fills and always before a result is sent.
 */
void greport(int32_t code, uint16_t flags, const uint64_t args[4], const char *s, size_t slen);
void greport_flush(void);

/* --- Planners: one per operation, called by guest/main.c --- */

__attribute__((noreturn)) void plan_info(void);
__attribute__((noreturn)) void plan_check(void);
__attribute__((noreturn)) void plan_create(void);
__attribute__((noreturn)) void plan_resize(void);
__attribute__((noreturn)) void plan_map(void);
__attribute__((noreturn)) void plan_compare(void);
__attribute__((noreturn)) void plan_convert(void);
__attribute__((noreturn)) void plan_dd(void);
__attribute__((noreturn)) void plan_bench(void);
__attribute__((noreturn)) void plan_rebase(void);
__attribute__((noreturn)) void plan_commit(void);
__attribute__((noreturn)) void plan_snapshot(void);
__attribute__((noreturn)) void plan_amend(void);
__attribute__((noreturn)) void plan_bitmap(void);

#endif /* GUEST_H */
