/*
 * A host-side fake of the guest runtime, for harnesses that run guest/
 * code (the block layer, its qcow2 driver, planners) as a plain process:
 * the boot info, the hypercalls over devices held in memory, a capped
 * heap, and a run that ends (hc_exit, so also result_error and gbs_send)
 * by a longjmp back to the harness.
 *
 * The guest sources linked with it are compiled with malloc, calloc,
 * realloc and free renamed to fake_malloc & co. (scripts/fuzz.sh and
 * CMakeLists.txt pass -Dmalloc=fake_malloc ...), so that their heap is
 * this one: FAKE_MEM_CAP live bytes, then NULL, as guest RAM runs out
 * (guest/alloc.c); a hostile table size takes the guest's NOMEM path
 * instead of making the harness allocate gigabytes.  guest/blk.c is built
 * inside fake_guest.c, which resets its block cache between runs.
 *
 * Devices are read-only, as the read side of the data path opens them: a
 * write, truncate, zero or flush, a read outside a device or over the
 * transfer limit, or a failed GUEST_ASSERT aborts the process (the fuzzer
 * reports it as a crash).  SEEK answers as a sparse file whose aligned
 * all-zero FAKE_HOLE_SIZE blocks are holes, and a device's allocated size
 * counts its other blocks.
 */
#ifndef FAKE_GUEST_H
#define FAKE_GUEST_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "instar/abi.h"
#include "instar/result.h"

#define FAKE_MEM_CAP   (16u << 20)
#define FAKE_HOLE_SIZE 4096u

struct fake_dev {
    const uint8_t *p;
    size_t len;
};

/* What the run sent with INSTAR_HC_RESULT (got: a result arrived). */
struct fake_result {
    int got;
    struct instar_data_result r; /* the header, and a data result's fields when size allows */
};

extern struct fake_result fake_result;

/*
 * Where hc_exit() lands: a harness calls guest code only while
 * setjmp(fake_exit) == 0; fake_exit_status is hc_exit's argument.
 */
extern jmp_buf fake_exit;
extern int64_t fake_exit_status;

/*
 * fake_on_report - called with every INSTAR_HC_REPORT blob (NULL: ignored);
 * returns the hypercall's result (0, or an INSTAR_HC_E* code).
 */
extern int64_t (*fake_on_report)(const void *recs, uint64_t len);

/*
 * fake_guest_start - begin a run of operation op over n devices (at most
 * INSTAR_DEV_MAX; the caller keeps their bytes alive for the run): fresh
 * boot info, no result, no corruption event.  Call fake_guest_end() after
 * each run before the next.
 */
void fake_guest_start(uint32_t op, const struct fake_dev *devs, unsigned n);

/* The boot info, for a harness to fill the operation's arguments. */
struct instar_boot_info *fake_boot(void);

/* fake_guest_end - free everything the run allocated and drop the block cache. */
void fake_guest_end(void);

/* Bytes the guest heap holds now. */
size_t fake_heap_live(void);

/* fake_read - the bytes of device dev at off as the guest should read them (zeros past its end). */
void fake_read(unsigned dev, uint64_t off, void *buf, size_t len);

#endif /* FAKE_GUEST_H */
