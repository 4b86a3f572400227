/*
 * cmd/policy.c: name resolution as qemu-img 7.2 prints it (the "actual
 * path" cases were checked with the oracle) and the refusals of
 * docs/path-policy.md.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmds.h"
#include "policy.h"
#include "result.h"
#include "vmm.h"

static void full_is(const char *image, const char *backing, const char *want)
{
    char *s = policy_full_backing(image, backing);

    cr_assert_not_null(s);
    cr_expect_str_eq(s, want, "full backing of %s + %s", image, backing);
    free(s);
}

Test(cmd_policy, full_backing_like_qemu)
{
    full_is("top.qcow2", "base.qcow2", "base.qcow2");
    full_is("sub/top2.qcow2", "../base.qcow2", "sub/../base.qcow2");
    full_is("/a/b/c.qcow2", "d.qcow2", "/a/b/d.qcow2");
    full_is("sub/top.qcow2", "/abs/base.qcow2", "/abs/base.qcow2");
    full_is("sub/top.qcow2", "nbd:localhost:1", "nbd:localhost:1");
    full_is("sub/top.qcow2", "json:{\"a\":1}", "json:{\"a\":1}");
    full_is("sub/top.qcow2", "./x:y", "sub/./x:y"); /* ':' after '/' is no protocol */
    full_is("/top.qcow2", "b", "/b");
}

Test(cmd_policy, has_protocol)
{
    cr_expect(policy_has_protocol("nbd:x"));
    cr_expect(policy_has_protocol("foo:bar"));
    cr_expect(policy_has_protocol("json:{}"));
    cr_expect(!policy_has_protocol("./foo:bar"));
    cr_expect(!policy_has_protocol("/dev/disk/by-id/a:b"));
    cr_expect(!policy_has_protocol("plain.qcow2"));
}

static void refused(const char *name, const char *want)
{
    const char *path = NULL;
    char *msg = NULL;

    cr_expect_eq(policy_host_path(name, &path, &msg), -1, "%s accepted", name);
    cr_assert_not_null(msg);
    cr_expect_str_eq(msg, want);
    free(msg);
}

Test(cmd_policy, host_path)
{
    const char *path;
    char *msg;

    cr_assert_eq(policy_host_path("a.qcow2", &path, &msg), 0);
    cr_expect_str_eq(path, "a.qcow2");
    cr_assert_eq(policy_host_path("file:sub/a.qcow2", &path, &msg), 0);
    cr_expect_str_eq(path, "sub/a.qcow2");
    refused("json:{\"driver\":\"raw\"}", "instar does not accept 'json:' filenames");
    refused("nbd:localhost:10809",
            "Protocol 'nbd' is not supported by instar (only local files are opened)");
    refused("https://example.com/x.qcow2",
            "Protocol 'https' is not supported by instar (only local files are opened)");
    refused("gluster+tcp://h/v/x", "Protocol 'gluster+tcp' is not supported by instar (only "
                                   "local files are opened)");
    refused("host_device:/dev/sda",
            "Protocol 'host_device' is not supported by instar (only local files are opened)");
    refused("foo:bar", "Unknown protocol 'foo'"); /* qemu-img's own text */
}

static char dir[64];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tmpdir(void)
{
    if (chdir("/") == 0 && dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void in_tmpdir(void)
{
    strcpy(dir, "/tmp/instar-policy-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(chdir(dir), 0);
    unsetenv(POLICY_ALLOW_ENV);
}

Test(cmd_policy, open_refusals, .init = in_tmpdir, .fini = rm_tmpdir)
{
    struct stat st;
    char *msg;
    int fd;

    cr_expect_eq(policy_open("missing", POLICY_IMAGE, false, &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "Could not open 'missing': No such file or directory");
    free(msg);
    cr_assert_eq(mkdir("d", 0700), 0);
    cr_expect_eq(policy_open("d", POLICY_IMAGE, false, &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "'file' driver requires 'd' to be a regular file");
    free(msg);
    /* A FIFO must be refused, not waited on. */
    cr_assert_eq(mkfifo("fifo", 0600), 0);
    cr_expect_eq(policy_open("fifo", POLICY_IMAGE, false, &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "'file' driver requires 'fifo' to be a regular file");
    free(msg);
    cr_expect_eq(policy_open("/dev/null", POLICY_IMAGE, false, &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "'/dev/null' is a device; instar opens regular files only");
    free(msg);
    cr_expect_eq(policy_open("", POLICY_IMAGE, false, &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "The 'file' block driver requires a file name");
    free(msg);
}

Test(cmd_policy, open_regular, .init = in_tmpdir, .fini = rm_tmpdir)
{
    struct stat st;
    char *msg;
    int fd, fl;

    close(open("img", O_CREAT | O_WRONLY, 0600));
    cr_assert_eq(policy_open("img", POLICY_IMAGE, false, &fd, &st, &msg), 0);
    cr_expect(S_ISREG(st.st_mode));
    fl = fcntl(fd, F_GETFL);
    cr_expect(!(fl & O_NONBLOCK));
    cr_expect(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
}

Test(cmd_policy, allowlist, .init = in_tmpdir, .fini = rm_tmpdir)
{
    struct stat st;
    char *msg;
    int fd;

    cr_assert_eq(mkdir("ok", 0700), 0);
    cr_assert_eq(mkdir("okay", 0700), 0);
    close(open("ok/b", O_CREAT | O_WRONLY, 0600));
    close(open("okay/b", O_CREAT | O_WRONLY, 0600));
    cr_assert_eq(symlink("../okay/b", "ok/link"), 0);

    cr_assert_eq(policy_open("ok/b", POLICY_IMAGE, false, &fd, &st, &msg), 0);
    cr_expect_eq(policy_allowlist_check(fd, POLICY_BACKING, &msg), 0); /* unset: no confinement */
    setenv(POLICY_ALLOW_ENV, "/nonexistent:ok", 1);
    cr_expect_eq(policy_allowlist_check(fd, POLICY_BACKING, &msg), 0);
    setenv(POLICY_ALLOW_ENV, "", 1);
    cr_expect_eq(policy_allowlist_check(fd, POLICY_BACKING, &msg), -1);
    free(msg);
    close(fd);

    /* "ok" must not admit "okay/", and links are judged by their target. */
    setenv(POLICY_ALLOW_ENV, "ok", 1);
    cr_assert_eq(policy_open("ok/link", POLICY_IMAGE, false, &fd, &st, &msg), 0);
    cr_expect_eq(policy_allowlist_check(fd, POLICY_BACKING, &msg), -1);
    cr_assert_not_null(msg);
    cr_expect(strstr(msg, "okay/b") != NULL);
    free(msg);
    close(fd);
}

Test(cmd_policy, chain_loops_and_depth)
{
    struct policy_chain c;
    struct stat st;
    unsigned i;

    memset(&st, 0, sizeof(st));
    policy_chain_init(&c);
    for (i = 0; i < POLICY_CHAIN_MAX; i++) {
        st.st_ino = i + 1;
        cr_assert_eq(policy_chain_add(&c, &st), 0);
    }
    st.st_ino = 1;
    cr_expect_eq(policy_chain_add(&c, &st), -1);
    st.st_ino = 1000;
    cr_expect_eq(policy_chain_add(&c, &st), -2);
    st.st_dev = 5;
    st.st_ino = 1;
    policy_chain_init(&c);
    cr_expect_eq(policy_chain_add(&c, &st), 0);
    st.st_dev = 6;
    cr_expect_eq(policy_chain_add(&c, &st), 0); /* same inode, other device */
}

/* --- Nothing is opened before the policy has decided --- */

/*
 * A stand-in guest for cmd/open.c: every info run describes a qcow2 image
 * whose backing file is guest_backing and whose external data file is
 * guest_data_file (NULL: none).  No guest boots.
 */
static const char *guest_backing, *guest_data_file;

int vmm_run(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
            const struct vmm_dev *devs, unsigned ndevs, struct vmm_outcome *out)
{
    struct {
        struct instar_info_result r;
        char s[512];
    } b;
    size_t len = sizeof(b.r);

    (void)cfg, (void)args, (void)args_len, (void)devs, (void)ndevs;
    memset(out, 0, sizeof(*out));
    cr_assert_eq(op, INSTAR_OP_INFO);
    memset(&b, 0, sizeof(b));
    strcpy(b.r.format, "qcow2");
    b.r.virtual_size = 1 << 20;
    b.r.cluster_size = 65536;
    b.r.flags = INSTAR_INFO_QCOW2 | INSTAR_INFO_DIRTY_VALID;
    b.r.qcow2_version = 3;
    b.r.refcount_bits = 16;
    if (guest_backing) {
        b.r.backing_file.off = (uint32_t)len;
        b.r.backing_file.len = (uint32_t)strlen(guest_backing);
        memcpy((char *)&b + len, guest_backing, strlen(guest_backing));
        len += strlen(guest_backing);
    }
    if (guest_data_file) {
        b.r.qcow2_flags = INSTAR_QCOW2_HAS_DATA_FILE;
        b.r.data_file.off = (uint32_t)len;
        b.r.data_file.len = (uint32_t)strlen(guest_data_file);
        memcpy((char *)&b + len, guest_data_file, strlen(guest_data_file));
        len += strlen(guest_data_file);
    }
    b.r.hdr.magic = INSTAR_RESULT_MAGIC;
    b.r.hdr.abi_version = INSTAR_ABI_VERSION;
    b.r.hdr.op = op;
    b.r.hdr.size = (uint32_t)len;
    out->result = malloc(len);
    cr_assert_not_null(out->result);
    memcpy(out->result, &b, len);
    out->result_len = len;
    return 0;
}

static int run(int (*cmd)(int, char **), const char **args)
{
    char *argv[16];
    int argc = 0;

    while (*args)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    optind = 0;
    return cmd(argc, argv);
}

static void in_tmpdir_quiet(void)
{
    in_tmpdir();
    cr_redirect_stdout();
    cr_redirect_stderr();
    guest_backing = guest_data_file = NULL;
    close(open("a.qcow2", O_CREAT | O_WRONLY, 0600));
    cr_assert_eq(mkdir("ok", 0700), 0);
}

/* An inotify watch on path for every open (O_PATH opens report nothing). */
static int watch_opens(const char *path)
{
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

    cr_assert_geq(in, 0);
    cr_assert_geq(inotify_add_watch(in, path, IN_OPEN | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE), 0);
    return in;
}

/* The events seen on the watch (0: none), and the watch closed. */
static uint32_t watched(int in)
{
    char buf[4096] __attribute__((aligned(8)));
    uint32_t mask = 0;
    ssize_t n = read(in, buf, sizeof(buf));
    char *p;

    for (p = buf; n > 0 && p < buf + n;
         p += sizeof(struct inotify_event) + ((struct inotify_event *)p)->len)
        mask |= ((struct inotify_event *)p)->mask;
    close(in);
    return mask;
}

/*
 * A writer blocked in open(O_WRONLY) on fifo: it gets through as soon as
 * anyone opens the FIFO for reading.  Returns its pid, once it waits.
 */
static pid_t blocked_writer(const char *fifo)
{
    char stat[512], path[64], st = 0;
    int sync[2], i;
    pid_t pid;

    cr_assert_eq(pipe(sync), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(sync[0]);
        if (write(sync[1], "x", 1) != 1)
            _exit(2);
        _exit(open(fifo, O_WRONLY) >= 0 ? 0 : 3);
    }
    close(sync[1]);
    cr_assert_eq(read(sync[0], stat, 1), 1);
    close(sync[0]);
    /* Until it sleeps in open() (state S in /proc/PID/stat). */
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    for (i = 0; i < 1000 && st != 'S'; i++) {
        FILE *f = fopen(path, "r");

        cr_assert_not_null(f);
        if (fgets(stat, sizeof(stat), f) && strrchr(stat, ')'))
            st = strrchr(stat, ')')[2];
        fclose(f);
        if (st != 'S')
            usleep(1000);
    }
    cr_assert_eq(st, 'S');
    usleep(20000);
    return pid;
}

/* True if the writer got through (a reader opened the FIFO); reaps it. */
static bool writer_released(pid_t pid)
{
    int status, i;
    bool done = false;

    for (i = 0; i < 20 && !done; i++) {
        done = waitpid(pid, &status, WNOHANG) == pid;
        if (!done)
            usleep(10000);
    }
    if (!done) {
        kill(pid, SIGKILL);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
    }
    return done;
}

TestSuite(cmd_policy_order, .init = in_tmpdir_quiet, .fini = rm_tmpdir);

/* A FIFO named as a backing file, outside the allowlist: never opened. */
Test(cmd_policy_order, fifo_backing_not_opened)
{
    pid_t w;

    cr_assert_eq(mkfifo("fifo", 0600), 0);
    setenv(POLICY_ALLOW_ENV, "ok", 1);
    guest_backing = "fifo";
    w = blocked_writer("fifo");
    cr_expect_eq(run(cmd_info, (const char *[]){"info", "--backing-chain", "a.qcow2", NULL}), 1);
    cr_expect(!writer_released(w), "the FIFO was opened: its blocked writer got through");
    fflush(stderr);
    cr_expect_stderr_eq_str(
        "qemu-img: Could not open 'fifo': 'file' driver requires 'fifo' to be a regular file\n");
}

/* A device named as a backing file: refused without being opened. */
Test(cmd_policy_order, device_backing_not_opened)
{
    /* /dev/zero under a name of our own, so that no other process's opens show. */
    const char *zero = mknod("zero", S_IFCHR | 0600, makedev(1, 5)) == 0 ? "zero" : "/dev/zero";
    int in = watch_opens(zero);
    char want[256];

    guest_backing = zero;
    cr_expect_eq(run(cmd_info, (const char *[]){"info", "--backing-chain", "a.qcow2", NULL}), 1);
    cr_expect_eq(watched(in), 0, "%s was opened", zero);
    fflush(stderr);
    snprintf(want, sizeof(want),
             "qemu-img: Could not open '%s': '%s' is a device; instar opens regular files only\n",
             zero, zero);
    cr_expect_stderr_eq_str(want);
}

/* check -r: a data file outside the allowlist is never opened, let alone read-write. */
Test(cmd_policy_order, data_file_outside_allowlist_not_opened)
{
    char want[PATH_MAX + 128], *real;
    uint32_t mask;
    int in;

    close(open("d.raw", O_CREAT | O_WRONLY, 0600));
    in = watch_opens("d.raw");
    setenv(POLICY_ALLOW_ENV, "ok", 1);
    guest_data_file = "d.raw";
    cr_expect_eq(run(cmd_check, (const char *[]){"check", "-r", "all", "a.qcow2", NULL}), 1);
    mask = watched(in);
    cr_expect_eq(mask, 0, "d.raw was opened: inotify mask %#x (%#x: opened read-write)", mask,
                 IN_CLOSE_WRITE);
    fflush(stderr);
    real = realpath("d.raw", NULL);
    cr_assert_not_null(real);
    snprintf(want, sizeof(want),
             "qemu-img: Could not open 'a.qcow2': data file '%s' is outside the directories "
             "allowed by INSTAR_BACKING_ALLOW\n",
             real);
    free(real);
    cr_expect_stderr_eq_str(want);
}

/* policy_open itself: each refusal comes before the file is opened. */
Test(cmd_policy, open_decides_first, .init = in_tmpdir, .fini = rm_tmpdir)
{
    const char *zero;
    struct stat st;
    char *msg;
    pid_t w;
    int fd, in;

    cr_assert_eq(mkdir("ok", 0700), 0);
    setenv(POLICY_ALLOW_ENV, "ok", 1);

    /* A FIFO, named by the user or by an image: refused, never opened. */
    cr_assert_eq(mkfifo("fifo", 0600), 0);
    w = blocked_writer("fifo");
    cr_expect_eq(policy_open("fifo", POLICY_IMAGE, false, &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "'file' driver requires 'fifo' to be a regular file");
    free(msg);
    cr_expect_eq(policy_open("fifo", POLICY_BACKING, false, &fd, &st, &msg), -1);
    free(msg);
    cr_expect(!writer_released(w), "the FIFO was opened");

    /* A device: refused, never opened. */
    zero = mknod("zero", S_IFCHR | 0600, makedev(1, 5)) == 0 ? "zero" : "/dev/zero";
    in = watch_opens(zero);
    cr_expect_eq(policy_open(zero, POLICY_IMAGE, true, &fd, &st, &msg), -1);
    cr_expect_eq(fd, -1);
    free(msg);
    cr_expect_eq(watched(in), 0, "%s was opened", zero);

    /* A data file outside the allowlist: refused as such, never opened. */
    close(open("d.raw", O_CREAT | O_WRONLY, 0600));
    in = watch_opens("d.raw");
    cr_expect_eq(policy_open("d.raw", POLICY_DATA_FILE, true, &fd, &st, &msg), -1);
    cr_assert_not_null(msg);
    cr_expect(strstr(msg, "data file '") == msg, "%s", msg);
    cr_expect(strstr(msg, "/d.raw' is outside the directories allowed by INSTAR_BACKING_ALLOW"));
    free(msg);
    cr_expect_eq(watched(in), 0, "d.raw was opened");

    /* Inside it: opened read-write, once, and it is the file vetted. */
    close(open("ok/d.raw", O_CREAT | O_WRONLY, 0600));
    in = watch_opens("ok/d.raw");
    cr_assert_eq(policy_open("ok/d.raw", POLICY_DATA_FILE, true, &fd, &st, &msg), 0);
    cr_expect_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
    cr_expect(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    cr_expect_eq(watched(in), IN_OPEN | IN_CLOSE_WRITE);
    cr_assert_eq(policy_open("ok/d.raw", POLICY_BACKING, false, &fd, &st, &msg), 0);
    cr_expect_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    close(fd);
}

/* Refusals worded as the open qemu-img makes would fail. */
Test(cmd_policy, open_refusals_like_an_open, .init = in_tmpdir, .fini = rm_tmpdir)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    char *msg;
    int fd, s = socket(AF_UNIX, SOCK_STREAM, 0);

    /* A socket cannot be opened: ENXIO. */
    cr_assert_geq(s, 0);
    strcpy(sa.sun_path, "sock");
    cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_expect_eq(policy_open("sock", POLICY_IMAGE, false, &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "Could not open 'sock': No such device or address");
    free(msg);
    close(s);
    if (geteuid() == 0)
        return; /* root reads anything: no EACCES to see */
    cr_assert_eq(mkdir("locked", 0), 0);
    cr_expect_eq(policy_open("locked", POLICY_IMAGE, false, &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "Could not open 'locked': Permission denied");
    free(msg);
    close(open("unreadable", O_CREAT | O_WRONLY, 0200));
    cr_expect_eq(policy_open("unreadable", POLICY_IMAGE, false, &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "Could not open 'unreadable': Permission denied");
    free(msg);
}
