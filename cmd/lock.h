/*
 * QEMU's image locking, so that instar and qemu processes see each other.
 *
 * QEMU's file driver expresses block-layer permissions as OFD byte-range
 * locks: byte 100 + i held shared means "I use permission i", byte 200 + i
 * means "I do not let others use permission i".  A process opening an image
 * locks its own bytes, then checks that nobody holds the opposite ones.
 */
#ifndef CMD_LOCK_H
#define CMD_LOCK_H

#include <stddef.h>

/*
 * lock_metadata_readonly - take the locks qemu-img takes on a format
 * image's file when it opens it read-only without I/O (info): share
 * everything but "write" and "resize", and fail if someone writes or
 * resizes it.
 * @fd: open image; the locks live as long as its open file description
 * @name: the name qemu-img would print in the hint
 * @msg, @len: on failure, qemu-img's message (which may span two lines)
 * Returns 0, or -1 with msg filled.
 */
int lock_metadata_readonly(int fd, const char *name, char *msg, size_t len);

/* QEMU's block permissions (BLK_PERM_*), as lock_perms() takes them. */
#define LOCK_PERM_CONSISTENT_READ (1u << 0)
#define LOCK_PERM_WRITE           (1u << 1)
#define LOCK_PERM_WRITE_UNCHANGED (1u << 2)
#define LOCK_PERM_RESIZE          (1u << 3)
#define LOCK_PERM_ALL             0xfu

/*
 * lock_perms - what file-posix does when a node needs perm and shares
 * shared (raw_apply_lock_bytes, then raw_check_lock_bytes): a shared lock
 * on byte 100 + i for each permission used and on byte 200 + i for each
 * one not shared; then fail if anyone holds byte 200 + i of a permission
 * we use, or byte 100 + i of one we do not share.
 * @fd: open image; the locks live as long as its open file description
 * @name: the name qemu-img prints in the "Is another process" hint
 * @msg, @len: on failure, qemu-img's message (which may span two lines)
 * Returns 0 (also where the file system has no OFD locks), or -1.
 */
int lock_perms(int fd, unsigned perm, unsigned shared, const char *name, char *msg, size_t len);

#endif /* CMD_LOCK_H */
