/*
 * Path policy.  Name resolution follows QEMU 7.2's block.c
 * (path_has_protocol, bdrv_make_absolute_filename, bdrv_find_protocol) so
 * that the strings qemu-img prints come out the same; the decisions are
 * instar's own: only local regular files are ever opened.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy.h"

bool policy_has_protocol(const char *path)
{
    return path[strcspn(path, ":/")] == ':';
}

char *policy_full_backing(const char *image, const char *backing)
{
    const char *slash;
    size_t dirlen, blen = strlen(backing);
    char *r;

    if (backing[0] == '/' || policy_has_protocol(backing))
        return strdup(backing);
    /* bdrv_dirname() of a file node: path_combine(exact_filename, ""). */
    slash = strrchr(image, '/');
    dirlen = slash ? (size_t)(slash - image) + 1 : 0;
    r = malloc(dirlen + blen + 1);
    if (!r)
        return NULL;
    memcpy(r, image, dirlen);
    memcpy(r + dirlen, backing, blen + 1);
    return r;
}

/* Protocol drivers QEMU 7.2 knows (their .protocol_name); all refused. */
static const char *const qemu_protocols[] = {
    "blkdebug",     "blkverify",   "fat",          "ftp",        "ftps",        "gluster",
    "gluster+rdma", "gluster+tcp", "gluster+unix", "host_cdrom", "host_device", "http",
    "https",        "iscsi",       "iser",         "nbd",        "nbd+tcp",     "nbd+unix",
    "nfs",          "null-aio",    "null-co",      "nvme",       "rbd",         "ssh",
};

static char *msg_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *msg_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

int policy_host_path(const char *name, const char **path, char **msg)
{
    char proto[128];
    size_t len, i;

    *msg = NULL;
    if (!policy_has_protocol(name)) {
        *path = name;
        return 0;
    }
    len = strcspn(name, ":");
    if (len > sizeof(proto) - 1)
        len = sizeof(proto) - 1; /* QEMU truncates the same way */
    memcpy(proto, name, len);
    proto[len] = '\0';

    if (!strcmp(proto, "file")) {
        *path = name + 5;
        return 0;
    }
    if (!strcmp(proto, "json")) {
        *msg = msg_printf("instar does not accept 'json:' filenames");
        return -1;
    }
    for (i = 0; i < sizeof(qemu_protocols) / sizeof(qemu_protocols[0]); i++) {
        if (!strcmp(proto, qemu_protocols[i])) {
            *msg = msg_printf("Protocol '%s' is not supported by instar (only local files are "
                              "opened)",
                              proto);
            return -1;
        }
    }
    *msg = msg_printf("Unknown protocol '%s'", proto);
    return -1;
}

int policy_host_path_dup(const char *name, char **path, char **msg)
{
    const char *p;

    if (policy_host_path(name, &p, msg) < 0)
        return -1;
    if (p != name && policy_has_protocol(p))
        *path = msg_printf("./%s", p);
    else
        *path = strdup(p);
    return *path ? 0 : -1;
}

/*
 * The refusal of a file that is not a regular one, worded as the open
 * qemu-img (and instar before it decided first) would have failed with:
 * a socket cannot be opened (ENXIO), a file the caller may not read gives
 * EACCES; otherwise the type.  link names the O_PATH descriptor.
 */
static char *refuse_type(const char *path, const char *link, const struct stat *st)
{
    if (S_ISSOCK(st->st_mode))
        return msg_printf("Could not open '%s': %s", path, strerror(ENXIO));
    if (faccessat(AT_FDCWD, link, R_OK, AT_EACCESS) != 0 && errno == EACCES)
        return msg_printf("Could not open '%s': %s", path, strerror(EACCES));
    if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
        return msg_printf("'%s' is a device; instar opens regular files only", path);
    return msg_printf("'file' driver requires '%s' to be a regular file", path);
}

int policy_open(const char *path, enum policy_role role, bool rdwr, int *fd, struct stat *st,
                char **msg)
{
    struct stat pst;
    char link[64];
    int p, f;

    *msg = NULL;
    *fd = -1;
    if (!path[0]) {
        *msg = msg_printf("The 'file' block driver requires a file name");
        return -1;
    }
    /* Resolve the name (following symlinks, as QEMU does) without opening the file. */
    p = open(path, O_PATH | O_CLOEXEC);
    if (p < 0) {
        *msg = msg_printf("Could not open '%s': %s", path, strerror(errno));
        return -1;
    }
    snprintf(link, sizeof(link), "/proc/self/fd/%d", p);
    if (fstat(p, &pst) < 0) {
        *msg = msg_printf("Could not open '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(pst.st_mode)) {
        *msg = refuse_type(path, link, &pst);
        goto out;
    }
    if (role != POLICY_IMAGE && policy_allowlist_check(p, role, msg) < 0)
        goto out;
    /* Now open the file vetted above, not the name again (a rename cannot swap it). */
    f = open(link, (rdwr ? O_RDWR : O_RDONLY) | O_NOCTTY | O_CLOEXEC);
    if (f < 0) {
        *msg = msg_printf("Could not open '%s': %s", path, strerror(errno));
        goto out;
    }
    if (fstat(f, st) < 0 || st->st_dev != pst.st_dev || st->st_ino != pst.st_ino) {
        *msg = msg_printf("Could not open '%s': the file changed while it was opened", path);
        close(f);
        goto out;
    }
    *fd = f;
out:
    close(p);
    return *fd >= 0 ? 0 : -1;
}

/* True if real lies in directory dir (both canonical). */
static bool under_dir(const char *real, const char *dir)
{
    size_t n = strlen(dir);

    if (n == 1 && dir[0] == '/')
        return real[0] == '/';
    return !strncmp(real, dir, n) && (real[n] == '/' || real[n] == '\0');
}

int policy_allowlist_check(int fd, enum policy_role role, char **msg)
{
    const char *what = role == POLICY_DATA_FILE ? "data file" : "backing file";
    const char *env = getenv(POLICY_ALLOW_ENV);
    char link[64], real[PATH_MAX], *list, *tok, *save = NULL;
    ssize_t n;
    int ok = 0;

    *msg = NULL;
    if (!env)
        return 0;
    /* The file the descriptor resolved to, not the name: no race with a renamed link. */
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, real, sizeof(real) - 1);
    if (n < 0 || (size_t)n >= sizeof(real) - 1) {
        *msg = msg_printf("cannot resolve the %s to check " POLICY_ALLOW_ENV, what);
        return -1;
    }
    real[n] = '\0';
    list = strdup(env);
    if (!list) {
        *msg = msg_printf("%s", strerror(ENOMEM));
        return -1;
    }
    for (tok = strtok_r(list, ":", &save); tok && !ok; tok = strtok_r(NULL, ":", &save)) {
        char *dir = realpath(tok, NULL);

        if (dir) {
            ok = under_dir(real, dir);
            free(dir);
        }
    }
    free(list);
    if (!ok) {
        *msg = msg_printf("%s '%s' is outside the directories allowed by " POLICY_ALLOW_ENV, what,
                          real);
        return -1;
    }
    return 0;
}

void policy_chain_init(struct policy_chain *c)
{
    c->n = 0;
}

int policy_chain_add(struct policy_chain *c, const struct stat *st)
{
    unsigned i;

    for (i = 0; i < c->n; i++)
        if (c->seen[i].dev == st->st_dev && c->seen[i].ino == st->st_ino)
            return -1;
    if (c->n >= POLICY_CHAIN_MAX)
        return -2;
    c->seen[c->n].dev = st->st_dev;
    c->seen[c->n].ino = st->st_ino;
    c->n++;
    return 0;
}
