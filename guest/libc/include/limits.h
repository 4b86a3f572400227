/*
 * Guest libc subset: <limits.h> is GCC's own.  GCC's header looks for a
 * libc <limits.h> beneath it unless _LIBC_LIMITS_H_ says that one is
 * already in hand (glibc's does the same), so say so and defer to it.
 */
#ifndef GUEST_LIMITS_H
#define GUEST_LIMITS_H

#define _LIBC_LIMITS_H_
#include_next <limits.h>

#endif /* GUEST_LIMITS_H */
