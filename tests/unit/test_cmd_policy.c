/*
 * cmd/policy.c: name resolution as qemu-img 7.2 prints it (the "actual
 * path" cases were checked with the oracle) and the refusals of
 * docs/path-policy.md.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy.h"

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

    cr_expect_eq(policy_open("missing", &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "Could not open 'missing': No such file or directory");
    free(msg);
    cr_assert_eq(mkdir("d", 0700), 0);
    cr_expect_eq(policy_open("d", &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "'file' driver requires 'd' to be a regular file");
    free(msg);
    /* A FIFO must be refused, not waited on. */
    cr_assert_eq(mkfifo("fifo", 0600), 0);
    cr_expect_eq(policy_open("fifo", &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "'file' driver requires 'fifo' to be a regular file");
    free(msg);
    cr_expect_eq(policy_open("/dev/null", &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "'/dev/null' is a device; instar opens regular files only");
    free(msg);
    cr_expect_eq(policy_open("", &fd, &st, &msg), -1);
    cr_expect_str_eq(msg, "The 'file' block driver requires a file name");
    free(msg);
}

Test(cmd_policy, open_regular, .init = in_tmpdir, .fini = rm_tmpdir)
{
    struct stat st;
    char *msg;
    int fd, fl;

    close(open("img", O_CREAT | O_WRONLY, 0600));
    cr_assert_eq(policy_open("img", &fd, &st, &msg), 0);
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

    cr_assert_eq(policy_open("ok/b", &fd, &st, &msg), 0);
    cr_expect_eq(policy_allowlist_check(fd, &msg), 0); /* unset: no confinement */
    setenv(POLICY_ALLOW_ENV, "/nonexistent:ok", 1);
    cr_expect_eq(policy_allowlist_check(fd, &msg), 0);
    setenv(POLICY_ALLOW_ENV, "", 1);
    cr_expect_eq(policy_allowlist_check(fd, &msg), -1);
    free(msg);
    close(fd);

    /* "ok" must not admit "okay/", and links are judged by their target. */
    setenv(POLICY_ALLOW_ENV, "ok", 1);
    cr_assert_eq(policy_open("ok/link", &fd, &st, &msg), 0);
    cr_expect_eq(policy_allowlist_check(fd, &msg), -1);
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
