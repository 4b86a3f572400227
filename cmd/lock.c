/*
 * Image locking compatible with QEMU 7.2's file-posix driver
 * (raw_apply_lock_bytes / raw_check_lock_bytes).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "lock.h"

#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200

/* Block-layer permission bits and the names QEMU prints for them. */
enum {
    PERM_WRITE = 1,
    PERM_RESIZE = 3
};
static const char *const perm_names[] = {"consistent read", "write", "write unchanged", "resize"};

static int lock_byte(int fd, int off, short type, int cmd)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};

    if (fcntl(fd, cmd, &fl) < 0)
        return -errno;
    return cmd == F_OFD_GETLK && fl.l_type != F_UNLCK ? -EAGAIN : 0;
}

int lock_metadata_readonly(int fd, const char *name, char *msg, size_t len)
{
    /* BDRV_O_NO_IO: no permission used; write and resize not shared. */
    return lock_perms(fd, 0, LOCK_PERM_ALL & ~((1u << PERM_WRITE) | (1u << PERM_RESIZE)), name, msg,
                      len);
}

int lock_perms(int fd, unsigned perm, unsigned shared, const char *name, char *msg, size_t len)
{
    unsigned unshared = LOCK_PERM_ALL & ~shared;
    int i, pass, r;

    /* Our own bytes: first the permissions used, then those not shared. */
    for (pass = 0; pass < 2; pass++) {
        unsigned bits = pass ? unshared : perm;

        for (i = 0; i < 4; i++) {
            int off = (pass ? LOCK_SHARED_BASE : LOCK_PERM_BASE) + i;

            if (!(bits & (1u << i)))
                continue;
            r = lock_byte(fd, off, F_RDLCK, F_OFD_SETLK);
            if (r == -EAGAIN || r == -EACCES) {
                snprintf(msg, len, "Failed to lock byte %d", off);
                return -1;
            }
            if (r == -EINVAL || r == -ENOTSUP || r == -ENOLCK)
                return 0; /* no OFD locks here: QEMU then skips locking too */
            if (r < 0) {
                snprintf(msg, len, "Failed to lock byte %d: %s", off, strerror(-r));
                return -1;
            }
        }
    }
    /* Then everyone else's: nobody may refuse what we use or use what we refuse. */
    for (pass = 0; pass < 2; pass++) {
        unsigned bits = pass ? unshared : perm;

        for (i = 0; i < 4; i++) {
            int off = (pass ? LOCK_PERM_BASE : LOCK_SHARED_BASE) + i;

            if (!(bits & (1u << i)))
                continue;
            r = lock_byte(fd, off, F_WRLCK, F_OFD_GETLK);
            if (r == -EAGAIN) {
                snprintf(msg, len,
                         "Failed to get %s\"%s\" lock\nIs another process using the "
                         "image [%s]?",
                         pass ? "shared " : "", perm_names[i], name);
                return -1;
            }
        }
    }
    return 0;
}
