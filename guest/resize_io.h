/*
 * What the resize and amend planners share (guest/plan_resize.c): the
 * qcow2_resize() callbacks over device 0, the image description from its
 * header, and the result.
 */
#ifndef GUEST_RESIZE_IO_H
#define GUEST_RESIZE_IO_H

#include <stdint.h>

struct qcow2_header;
struct qcow2_resize_image;
struct qcow2_resize_io;

/* Reads, writes, flushes, truncates and discards device 0 (gdev_*). */
extern const struct qcow2_resize_io gresize_io;

/* ri from h and device 0's size, the request's fields (prealloc, ...) zero. */
void gresize_image(struct qcow2_resize_image *ri, const struct qcow2_header *h);

/* Send op's struct instar_resize_result, with the tail truncation's warning if wcode. */
__attribute__((noreturn)) void gresize_send(uint32_t op, int wcode, int werrno);

#endif /* GUEST_RESIZE_IO_H */
