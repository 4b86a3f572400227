/*
 * Path policy: which names the host opens.  The guest only proposes names
 * it found inside an image (backing file, external data file); this module
 * resolves them the way qemu-img does and decides.  docs/path-policy.md
 * states the rules.
 *
 * Every refusal is a message meant to follow "Could not open 'NAME': ".
 */
#ifndef CMD_POLICY_H
#define CMD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Longest backing chain --backing-chain walks (top image included). */
#define POLICY_CHAIN_MAX 16

/* Environment variable holding the optional backing-file allowlist. */
#define POLICY_ALLOW_ENV "INSTAR_BACKING_ALLOW"

/* QEMU's path_has_protocol(): a ':' before any '/'. */
bool policy_has_protocol(const char *path);

/*
 * policy_full_backing - the name qemu-img prints as "actual path" /
 * full-backing-filename (block.c, bdrv_make_absolute_filename): backing
 * itself if it is absolute or has a protocol prefix, else the directory
 * part of image (everything up to its last '/') followed by backing.
 * @image: the image's name as opened (after policy_host_path())
 * @backing: the non-empty backing file name from the image
 * Returns a malloc'd string (caller frees), NULL on OOM.
 */
char *policy_full_backing(const char *image, const char *backing);

/*
 * policy_host_path - decide whether name may be opened as a local file and
 * return the host path for it.  "file:" prefixes are stripped as QEMU does;
 * "json:" names, every protocol QEMU would treat as a network or device
 * protocol, and unknown protocols are refused.
 * @name: the name from the command line or from an image
 * @path: receives a pointer into name (the host path) on success
 * @msg: on refusal, receives a malloc'd message (caller frees; may be NULL
 *       on OOM)
 * Returns 0 if allowed, -1 if refused.
 */
int policy_host_path(const char *name, const char **path, char **msg);

/*
 * policy_host_path_dup - policy_host_path, returning the name qemu's file
 * driver then uses for the file (bdrv_parse_filename_strip_prefix): a
 * "file:" prefix stripped, and "./" put in front of what remains if that
 * would itself look like a protocol prefix ("file:a:b" is "./a:b", the
 * name qemu-img prints and resolves backing names against).
 * @path: receives a malloc'd string (caller frees) on success
 * Returns 0, or -1 with *msg as policy_host_path (or NULL on OOM).
 */
int policy_host_path_dup(const char *name, char **path, char **msg);

/* What a name is opened as: whether the allowlist applies, and what a refusal calls it. */
enum policy_role {
    POLICY_IMAGE,     /* named by the user (command line, create -b): no allowlist */
    POLICY_BACKING,   /* a backing file named inside an image */
    POLICY_DATA_FILE, /* an external data file named inside an image */
};

/*
 * policy_open - open a host path for a guest device, deciding first and
 * opening after: the name is resolved with O_PATH (which opens nothing: a
 * FIFO, device or tty sees no open), the file type checked on that, and
 * the allowlist (POLICY_BACKING, POLICY_DATA_FILE) on the file it
 * resolved to; only then is that very file opened, through
 * /proc/self/fd/N, read-only or read-write, no controlling tty,
 * close-on-exec, and checked to be the same inode.  Anything but a
 * regular file is refused with qemu-img's "'file' driver requires ..."
 * text (devices with instar's own).
 * @path: host path (from policy_host_path)
 * @role: what the name is (see enum policy_role)
 * @rdwr: open read-write instead of read-only
 * @fd: receives the descriptor (caller closes)
 * @st: receives its fstat
 * @msg: on failure, receives a malloc'd message (caller frees)
 * Returns 0 or -1.
 */
int policy_open(const char *path, enum policy_role role, bool rdwr, int *fd, struct stat *st,
                char **msg);

/*
 * policy_allowlist_check - with INSTAR_BACKING_ALLOW set (colon-separated
 * directories), accept fd only if the file it names lies under one of
 * them, both compared after resolving symlinks.  Unset: always accept.
 * An empty value accepts nothing.  policy_open() calls it.
 * @fd: the file, open or an O_PATH descriptor
 * @role: POLICY_BACKING or POLICY_DATA_FILE (names the file in the refusal)
 * @msg: on refusal, receives a malloc'd message (caller frees)
 * Returns 0 if allowed, -1 if refused.
 */
int policy_allowlist_check(int fd, enum policy_role role, char **msg);

/* Files already visited on a backing chain, by st_dev/st_ino. */
struct policy_chain {
    struct {
        dev_t dev;
        ino_t ino;
    } seen[POLICY_CHAIN_MAX];
    unsigned n;
};

void policy_chain_init(struct policy_chain *c);

/*
 * policy_chain_add - record st as the next image of the chain.
 * Returns 0; -1 if the file is already on the chain (a loop); -2 if the
 * chain would exceed POLICY_CHAIN_MAX images.
 */
int policy_chain_add(struct policy_chain *c, const struct stat *st);

#endif /* CMD_POLICY_H */
