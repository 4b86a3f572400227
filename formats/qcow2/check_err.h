/*
 * Diagnostic lines of the qcow2 check and repair (2000..2499), each the
 * exact text qemu-img 7.2 prints on stderr (block/qcow2-refcount.c,
 * block/qcow2.c, block/qcow2-bitmap.c), without the trailing newline.
 * The guest streams them as struct instar_report_rec (INSTAR_HC_REPORT);
 * the host renders them with cmd/report.c.
 *
 * Templates follow include/instar/errors.h, plus {#x0}..{#x3}: C's "%#x"
 * (a "0x" prefix, except that zero prints as "0").  Arguments are
 * unsigned; a value qemu prints with a signed conversion never goes
 * negative here.  Where qemu prints two strings (snapshot id and name),
 * the guest passes the whole fragment as {s}.
 */
#ifndef QCOW2_CHECK_ERR_H
#define QCOW2_CHECK_ERR_H

#define QCOW2_CHECK_MSGS(X)                                                                        \
    X(QCOW2_MSG_LEAKED, 2000, "Leaked cluster {0} refcount={1} reference={2}")                     \
    X(QCOW2_MSG_REFCOUNT_ERROR, 2001, "ERROR cluster {0} refcount={1} reference={2}")              \
    X(QCOW2_MSG_REFCOUNT_REPAIRING, 2002, "Repairing cluster {0} refcount={1} reference={2}")

enum qcow2_check_msg {
#define QCOW2_CHECK_ENUM(name, code, msg) name = code,
    QCOW2_CHECK_MSGS(QCOW2_CHECK_ENUM)
#undef QCOW2_CHECK_ENUM
};

#endif /* QCOW2_CHECK_ERR_H */
