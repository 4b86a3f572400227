/*
 * cmd/resize.c against a stand-in guest: vmm_run() below answers the info
 * run with a description the test chooses (honest or hostile) and records
 * what the host hands the resize run.  No guest boots.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "result.h"
#include "vmm.h"

/* --- The stand-in guest --- */

/* What the info run reports about the image. */
static uint64_t guest_cluster_size, guest_virtual_size;

/* What the host handed the last resize run, and how many there were. */
static unsigned nresize;
static struct vmm_config seen_cfg;
static struct vmm_dev seen_dev;

static void *blob_copy(const void *p, size_t len)
{
    void *c = malloc(len);

    cr_assert_not_null(c);
    memcpy(c, p, len);
    return c;
}

static void hdr_fill(struct instar_result_hdr *h, uint32_t op, size_t len)
{
    h->magic = INSTAR_RESULT_MAGIC;
    h->abi_version = INSTAR_ABI_VERSION;
    h->op = op;
    h->size = (uint32_t)len;
}

int vmm_run(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
            const struct vmm_dev *devs, unsigned ndevs, struct vmm_outcome *out)
{
    (void)args;
    (void)args_len;
    memset(out, 0, sizeof(*out));
    cr_assert_eq(ndevs, 1);
    if (op == INSTAR_OP_INFO) {
        struct instar_info_result r;

        memset(&r, 0, sizeof(r));
        hdr_fill(&r.hdr, op, sizeof(r));
        strcpy(r.format, "qcow2");
        r.virtual_size = guest_virtual_size;
        r.cluster_size = guest_cluster_size;
        r.flags = INSTAR_INFO_QCOW2 | INSTAR_INFO_DIRTY_VALID;
        r.qcow2_version = 3;
        r.refcount_bits = 16;
        out->result = blob_copy(&r, sizeof(r));
        out->result_len = sizeof(r);
        return 0;
    }
    cr_assert_eq(op, INSTAR_OP_RESIZE);
    cr_assert_not_null(cfg);
    nresize++;
    seen_cfg = *cfg;
    seen_dev = devs[0];
    {
        struct instar_resize_result r;

        memset(&r, 0, sizeof(r));
        hdr_fill(&r.hdr, op, sizeof(r));
        out->result = blob_copy(&r, sizeof(r));
        out->result_len = sizeof(r);
    }
    return 0;
}

/* --- Running cmd_resize in a temporary directory --- */

static char tmpdir[64];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void tmpdir_fini(void)
{
    if (chdir("/") == 0 && tmpdir[0])
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A 192 KiB "a.qcow2" (its bytes never matter: the stand-in describes it). */
static void tmpdir_init(void)
{
    int fd;

    cr_redirect_stdout();
    cr_redirect_stderr();
    strcpy(tmpdir, "/tmp/instar-resize-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    cr_assert_eq(chdir(tmpdir), 0);
    fd = open("a.qcow2", O_CREAT | O_WRONLY | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 192 << 10), 0);
    close(fd);
    guest_cluster_size = 65536;
    guest_virtual_size = 16 << 20;
    nresize = 0;
    unsetenv("INSTAR_BACKING_ALLOW");
}

/* cmd_resize on argv (NULL-terminated, without the subcommand name). */
static int run_resize(const char **args)
{
    char *argv[16];
    int argc = 0;

    argv[argc++] = "resize";
    while (*args)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    optind = 0;
    return cmd_resize(argc, argv);
}

TestSuite(cmd_resize, .init = tmpdir_init, .fini = tmpdir_fini);

Test(cmd_resize, honest_guest_is_resized)
{
    cr_assert_eq(run_resize((const char *[]){"a.qcow2", "+1M", NULL}), 0);
    cr_expect_eq(nresize, 1);
    fflush(stdout);
    cr_expect_stdout_eq_str("Image resized.\n");
}

/*
 * The host used to divide by cluster_size / 8 * cluster_size: a
 * cluster size below 8, or one whose square wraps (2^35), killed it with
 * SIGFPE.  No qcow2 image has such a cluster size: the result is invalid.
 */
Test(cmd_resize, impossible_cluster_size_is_an_invalid_result)
{
    static const uint64_t bad[] = {
        0, 1, 7, 256, 1536, 4 << 20, UINT64_C(1) << 35, UINT64_C(1) << 62,
    };
    char want[4096] = "";
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        guest_cluster_size = bad[i];
        cr_expect_eq(run_resize((const char *[]){"a.qcow2", "+1M", NULL}), 1, "cluster size %llu",
                     (unsigned long long)bad[i]);
        strcat(want, "qemu-img: Could not open 'a.qcow2': sandbox failure: invalid result "
                     "(result field out of range)\n");
    }
    cr_expect_eq(nresize, 0);
    fflush(stderr);
    cr_expect_stderr_eq_str(want);
}
