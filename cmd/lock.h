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

#endif /* CMD_LOCK_H */
