/*
 * cmd/resize.c against a stand-in guest: vmm_run() below answers the info
 * run with a description the test chooses (honest or hostile) and records
 * what the host hands the resize run.  No guest boots.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "qcow2/prealloc.h"
#include "qcow2/resize.h"
#include "result.h"
#include "vmm.h"

/* --- The stand-in guest --- */

/* What the info run reports about the image. */
static uint64_t guest_cluster_size, guest_virtual_size;

/*
 * Set: play an honest guest instead.  The info run describes the real
 * qcow2 header, and the resize run performs the resize with the same
 * library the guest runs (formats/qcow2/resize.c) over the host's
 * descriptor, held to the write limit as the monitor holds the guest.
 */
static bool honest;

/* What the host handed the last resize run, and how many there were. */
static unsigned nresize;
static struct vmm_config seen_cfg;
static struct vmm_dev seen_dev;
static int honest_ret;      /* qcow2_resize()'s return in honest mode */
static uint64_t honest_end; /* the furthest offset it wrote or truncated to */

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

static uint64_t be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;

    while (bytes--)
        v = v << 8 | *p++;
    return v;
}

/* The host's file, as the monitor serves it to a guest (vmm/hc.c). */
struct dev_io {
    int fd;
    uint64_t limit;
};

static int d_pread(void *o, uint64_t off, void *buf, size_t len)
{
    const struct dev_io *d = o;
    ssize_t n = pread(d->fd, buf, len, (off_t)off);

    if (n < 0)
        return -EIO;
    memset((uint8_t *)buf + n, 0, len - (size_t)n); /* zeros past the end, as QEMU reads */
    return 0;
}

static int d_pwrite(void *o, uint64_t off, const void *buf, size_t len)
{
    const struct dev_io *d = o;

    if (off + len > d->limit)
        return -EIO; /* the monitor's INSTAR_HC_ERANGE, as guest/plan_resize.c maps it */
    if (off + len > honest_end)
        honest_end = off + len;
    return pwrite(d->fd, buf, len, (off_t)off) == (ssize_t)len ? 0 : -EIO;
}

static int d_flush(void *o)
{
    (void)o;
    return 0;
}

static int d_truncate_mode(void *o, uint64_t size, int mode)
{
    static const uint8_t zeros[65536];
    const struct dev_io *d = o;
    struct stat st;
    uint64_t off;

    if (size > d->limit)
        return -EFBIG;
    if (size > honest_end)
        honest_end = size;
    if (fstat(d->fd, &st) < 0)
        return -EIO;
    if (mode == QCOW2_PREALLOC_FALLOC && size > (uint64_t)st.st_size)
        return posix_fallocate(d->fd, st.st_size, (off_t)(size - (uint64_t)st.st_size)) ? -EIO : 0;
    if (ftruncate(d->fd, (off_t)size) < 0)
        return -EIO;
    for (off = (uint64_t)st.st_size; mode == QCOW2_PREALLOC_FULL && off < size;
         off += sizeof(zeros)) {
        size_t n = size - off < sizeof(zeros) ? (size_t)(size - off) : sizeof(zeros);

        if (pwrite(d->fd, zeros, n, (off_t)off) != (ssize_t)n)
            return -EIO;
    }
    return 0;
}

static int d_truncate(void *o, uint64_t size)
{
    return d_truncate_mode(o, size, QCOW2_PREALLOC_OFF);
}

static void *d_mem(void *o, void *p, size_t size)
{
    (void)o;
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

/* An honest info result: the facts of the qcow2 header on fd. */
static void honest_info(int fd, struct vmm_outcome *out)
{
    struct {
        struct instar_info_result r;
        char name[1024];
    } b;
    uint8_t h[104];
    uint64_t boff, blen;
    size_t len = sizeof(b.r);

    memset(&b, 0, sizeof(b));
    cr_assert_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
    strcpy(b.r.format, "qcow2");
    b.r.virtual_size = be(h + 24, 8);
    b.r.cluster_size = UINT64_C(1) << be(h + 20, 4);
    b.r.flags = INSTAR_INFO_QCOW2 | INSTAR_INFO_DIRTY_VALID;
    b.r.qcow2_version = (uint32_t)be(h + 4, 4);
    b.r.refcount_bits = b.r.qcow2_version >= 3 ? 1u << be(h + 96, 4) : 16;
    boff = be(h + 8, 8);
    blen = be(h + 16, 4);
    if (boff && blen) {
        cr_assert_lt(blen, sizeof(b.name));
        cr_assert_eq(pread(fd, b.name, blen, (off_t)boff), (ssize_t)blen);
        b.r.backing_file.off = (uint32_t)len;
        b.r.backing_file.len = (uint32_t)blen;
        len += blen;
    }
    hdr_fill(&b.r.hdr, INSTAR_OP_INFO, len);
    out->result = blob_copy(&b, len);
    out->result_len = len;
}

/* An honest resize of the qcow2 image on dev, within dev->write_limit. */
static void honest_resize(const struct instar_resize_args *a, const struct vmm_dev *dev)
{
    struct dev_io d = {dev->fd, dev->write_limit};
    struct qcow2_resize_io io = {
        &d, d_pread, d_pwrite, d_flush, d_truncate, d_mem, d_truncate_mode, NULL, NULL, NULL, NULL};
    struct qcow2_resize_image ri;
    uint8_t h[104];
    int errnum, wc, we;

    cr_assert_eq(pread(dev->fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
    memset(&ri, 0, sizeof(ri));
    ri.version = (uint32_t)be(h + 4, 4);
    ri.cluster_bits = (uint32_t)be(h + 20, 4);
    ri.size = be(h + 24, 8) & ~UINT64_C(511);
    ri.l1_size = (uint32_t)be(h + 36, 4);
    ri.l1_table_offset = be(h + 40, 8);
    ri.refcount_table_offset = be(h + 48, 8);
    ri.refcount_table_clusters = (uint32_t)be(h + 56, 4);
    ri.nb_snapshots = (uint32_t)be(h + 60, 4);
    ri.refcount_order = ri.version >= 3 ? (uint32_t)be(h + 96, 4) : 4;
    ri.extended_l2 = ri.version >= 3 && (be(h + 72, 8) & 16);
    ri.file_size = dev->size;
    ri.prealloc = (int)a->prealloc;
    ri.zero_write = (a->flags & INSTAR_RESIZE_ZERO_WRITE) != 0;
    ri.backing_head = (a->flags & INSTAR_RESIZE_BACKING_HEAD) != 0;
    honest_end = dev->size;
    honest_ret = qcow2_resize(&ri, &io, a->size, &errnum, &wc, &we);
}

int vmm_run(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
            const struct vmm_dev *devs, unsigned ndevs, struct vmm_outcome *out)
{
    memset(out, 0, sizeof(*out));
    cr_assert_eq(ndevs, 1);
    if (op == INSTAR_OP_INFO && honest) {
        honest_info(devs[0].fd, out);
        return 0;
    }
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
    cr_assert_eq(args_len, sizeof(struct instar_resize_args));
    cr_assert_not_null(cfg);
    nresize++;
    seen_cfg = *cfg;
    seen_dev = devs[0];
    if (honest)
        honest_resize(args, &devs[0]);
    {
        struct instar_resize_result r;

        memset(&r, 0, sizeof(r));
        hdr_fill(&r.hdr, op, sizeof(r));
        if (honest && honest_ret < 0)
            r.hdr.error = -honest_ret;
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
    honest = false;
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

/* --- Limits come from the host's own facts, never from the guest --- */

struct guest {
    uint64_t cluster_size, virtual_size;
};

/*
 * Resize a.qcow2 with args under the honest description and then under
 * each hostile one; the host must hand every run the same write limit and
 * guest RAM.  Returns the write limit.
 */
static uint64_t same_limits(const char **args, const struct guest *hostile, size_t n)
{
    uint64_t limit, mem;
    size_t i;

    nresize = 0;
    guest_cluster_size = 65536;
    guest_virtual_size = 16 << 20;
    cr_assert_eq(run_resize(args), 0);
    cr_assert_eq(nresize, 1);
    limit = seen_dev.write_limit;
    mem = seen_cfg.mem_size;
    for (i = 0; i < n; i++) {
        guest_cluster_size = hostile[i].cluster_size;
        guest_virtual_size = hostile[i].virtual_size;
        cr_assert_eq(run_resize(args), 0, "guest %zu", i);
        cr_assert_eq(nresize, i + 2);
        cr_expect_eq(seen_dev.write_limit, limit, "%s %s: write limit %llu, honest %llu", args[0],
                     args[1], (unsigned long long)seen_dev.write_limit, (unsigned long long)limit);
        cr_expect_eq(seen_cfg.mem_size, mem, "%s %s: guest RAM %llu, honest %llu", args[0], args[1],
                     (unsigned long long)seen_cfg.mem_size, (unsigned long long)mem);
    }
    cr_expect_leq(mem, 512ULL << 20);
    return limit;
}

Test(cmd_resize, limits_not_steered_by_the_guest)
{
    static const struct guest big[] = {
        {512, 16 << 20},
        {2 << 20, 16 << 20},
        {512, UINT64_C(1) << 62},
        {2 << 20, UINT64_C(1) << 62},
        {65536, UINT64_C(0x7fffffff00000000)},
    };
    static const struct guest small[] = {{512, 512}, {2 << 20, 512}, {512, (32 << 20) - 512}};
    uint64_t lim;

    /* The file is 192 KiB: a grow by 1 MiB needs little room... */
    lim = same_limits((const char *[]){"a.qcow2", "+1M", NULL}, big, 5);
    cr_expect_leq(lim, 128ULL << 20);
    lim = same_limits((const char *[]){"--shrink", "a.qcow2", "-4M", NULL}, big, 5);
    cr_expect_leq(lim, 128ULL << 20);
    /* ... an absolute shrink, room for the L2 tables of a discard... */
    lim = same_limits((const char *[]){"--shrink", "a.qcow2", "8M", NULL}, big, 5);
    cr_expect_leq(lim, 3ULL << 30);
    /* ... and a preallocated grow, its data. */
    lim =
        same_limits((const char *[]){"--preallocation=metadata", "a.qcow2", "32M", NULL}, small, 3);
    cr_expect_leq(lim, 128ULL << 20);
}

/* --- Every legitimate resize still fits its limit --- */

static void sh(const char *cmd)
{
    char full[4096];

    snprintf(full, sizeof(full), "(%s) >/dev/null 2>&1", cmd);
    cr_assert_eq(system(full), 0, "%s", cmd);
}

static void need_oracle(void)
{
    if (system("command -v qemu-img >/dev/null && command -v qemu-io >/dev/null") != 0)
        cr_skip_test("qemu-img/qemu-io (the oracle) not installed");
}

struct legit {
    const char *make; /* shell commands that make a.qcow2 (and its backing file) */
    const char *args[5];
};

/*
 * Resize each image with the honest stand-in: the library the guest runs
 * must get through within the limit the host set, and leave an image
 * qemu-img check finds clean.
 */
static void fit(const struct legit *c, size_t n)
{
    size_t i;

    honest = true;
    for (i = 0; i < n; i++) {
        const char *const *a = c[i].args;

        sh("rm -f a.qcow2 b.qcow2");
        sh(c[i].make);
        nresize = 0;
        honest_ret = -1;
        cr_expect_eq(run_resize((const char **)a), 0, "%s; resize %s %s %s", c[i].make, a[0], a[1],
                     a[2] ? a[2] : "");
        cr_expect_eq(nresize, 1);
        cr_expect_eq(honest_ret, 0, "%s; resize %s %s %s: error %d, limit %llu", c[i].make, a[0],
                     a[1], a[2] ? a[2] : "", -honest_ret, (unsigned long long)seen_dev.write_limit);
        cr_expect_leq(honest_end, seen_dev.write_limit);
        sh("qemu-img check -q a.qcow2");
    }
}

#define WRITTEN(o)                                                                                 \
    "qemu-img create -f qcow2 -o " o " a.qcow2 16M && "                                            \
    "qemu-io -c 'write -P 7 0 64k' -c 'write -P 9 12M 128k' a.qcow2"

/* The cases of parity/test_resize_parity.py, at their extremes. */
Test(cmd_resize, legit_resizes_fit, .timeout = 300)
{
    static const struct legit c[] = {
        {WRITTEN("cluster_size=512,refcount_bits=1"), {"--shrink", "a.qcow2", "8M"}},
        {WRITTEN("cluster_size=512,refcount_bits=64"), {"--shrink", "a.qcow2", "-8M"}},
        {WRITTEN("cluster_size=2M,refcount_bits=1"), {"--shrink", "a.qcow2", "8M"}},
        {WRITTEN("cluster_size=2M,refcount_bits=64"), {"--shrink", "a.qcow2", "512"}},
        {WRITTEN("cluster_size=512,refcount_bits=64"), {"a.qcow2", "+1G"}},
        {WRITTEN("cluster_size=2M,refcount_bits=1"), {"a.qcow2", "+1G"}},
        /* A new 512 KiB L1 table, refcount blocks and a bigger refcount table. */
        {WRITTEN("cluster_size=512,refcount_bits=1"), {"a.qcow2", "2G"}},
        {WRITTEN("cluster_size=512,refcount_bits=64"), {"a.qcow2", "2G"}},
        {WRITTEN("cluster_size=4096,refcount_bits=16"), {"a.qcow2", "+1T"}},
        {WRITTEN("cluster_size=65536,refcount_bits=16"), {"a.qcow2", "+1T"}},
        /* Shrinks over unallocated L2 ranges: a table for each, then freed. */
        {"qemu-img create -f qcow2 -o cluster_size=512 a.qcow2 64M && "
         "qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 50M 64k' a.qcow2",
         {"--shrink", "a.qcow2", "40000k"}},
        {"qemu-img create -f qcow2 a.qcow2 3G && "
         "qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 50M 64k' a.qcow2",
         {"--shrink", "a.qcow2", "1000M"}},
        {"qemu-img create -f qcow2 a.qcow2 1T && qemu-io -c 'write -P 1 0 64k' a.qcow2",
         {"--shrink", "a.qcow2", "1G"}},
        {"qemu-img create -f qcow2 a.qcow2 1T && qemu-io -c 'write -P 1 0 64k' a.qcow2",
         {"--shrink", "a.qcow2", "-1022G"}},
        /* Preallocation, over a partial cluster at the old end too. */
        {WRITTEN("cluster_size=512,refcount_bits=64"),
         {"--preallocation=metadata", "a.qcow2", "+64M"}},
        {WRITTEN("cluster_size=512,refcount_bits=64"),
         {"--preallocation=falloc", "a.qcow2", "80M"}},
        {WRITTEN("cluster_size=2M,refcount_bits=1"), {"--preallocation=full", "a.qcow2", "+64M"}},
        {"qemu-img create -f qcow2 a.qcow2 16896k",
         {"--preallocation=metadata", "a.qcow2", "+32M"}},
        {"qemu-img create -f qcow2 -o cluster_size=2M a.qcow2 16897k",
         {"--preallocation=falloc", "a.qcow2", "48M"}},
        /* A longer backing file: the grown range becomes zero clusters. */
        {"qemu-img create -f qcow2 -o cluster_size=512 b.qcow2 4G && "
         "qemu-img create -f qcow2 -o cluster_size=512 -b b.qcow2 -F qcow2 a.qcow2 16M",
         {"a.qcow2", "+1G"}},
        {"qemu-img create -f qcow2 -o cluster_size=512 b.qcow2 4G && "
         "qemu-img create -f qcow2 -o cluster_size=512 -b b.qcow2 -F qcow2 a.qcow2 16M",
         {"a.qcow2", "3G"}},
    };

    need_oracle();
    fit(c, sizeof(c) / sizeof(c[0]));
}

/* A 1 TiB image with preallocated metadata grown to 2 TiB the same way. */
Test(cmd_resize, legit_terabyte_prealloc_fits, .timeout = 300)
{
    static const struct legit c[] = {
        {"qemu-img create -f qcow2 -o preallocation=metadata a.qcow2 1T",
         {"--preallocation=metadata", "a.qcow2", "2T"}},
    };

    need_oracle();
    fit(c, 1);
}
