/*
 * formats/qcow2/create.c over in-memory files, compared byte for byte with
 * the files `qemu-img create` makes for the same options (run at test
 * time), plus the failure paths: a name that does not fit the header
 * cluster (the oracle fails the same create), failing writes and
 * truncates reported with their stage.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "create.h"
#include "qcow2_test_util.h"
#include "test_sh.h"

struct mio {
    struct memfile dev[2]; /* the image, its data file (only p, len, cap) */
    int ops;               /* writes and truncates done */
    int fail_at;           /* fail the operation with this index (-1: never) */
    int last_mode;         /* the last truncate's preallocation mode */
};

static int m_read(void *o, uint64_t off, void *buf, size_t len)
{
    return memfile_read(&((struct mio *)o)->dev[0], off, buf, len);
}

static int m_write(void *o, uint64_t off, const void *buf, size_t len)
{
    struct mio *m = o;

    if (m->ops++ == m->fail_at)
        return -5;
    if (off + len > m->dev[0].len && memfile_set_length(&m->dev[0], off + len) < 0)
        return -12;
    memcpy(m->dev[0].p + off, buf, len);
    return 0;
}

static int m_truncate(void *o, int dev, uint64_t size, int mode)
{
    struct mio *m = o;

    cr_assert(dev == 0 || dev == 1);
    if (m->ops++ == m->fail_at)
        return -28;
    m->last_mode = mode;
    return memfile_set_length(&m->dev[dev], size);
}

static int m_length(void *o, int dev, uint64_t *len)
{
    *len = ((struct mio *)o)->dev[dev].len;
    return 0;
}

static const struct qcow2_create_io mio_ops = {
    {m_read, m_write, memfile_mem, NULL, NULL},
    m_truncate,
    m_length,
    NULL, /* no LUKS header here */
};

static void mio_free(struct mio *m)
{
    free(m->dev[0].p);
    free(m->dev[1].p);
}

static int log2u(uint64_t v)
{
    return 63 - __builtin_clzll(v);
}

/*
 * Create with qemu-img -o qopts (SIZE size) and with qcow2_create(o);
 * compare the image (and the data file, if any) byte for byte.
 */
static void same_as_qemu(const char *qopts, const char *size, const struct qcow2_create_opts *o)
{
    char cmd[1024];
    struct img q;
    struct mio m = {.fail_at = -1};
    int stage = -1;

    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 -u -o '%s' x.qcow2 %s", qopts, size);
    q = img_make(cmd, "x.qcow2");
    cr_assert_eq(qcow2_create(o, &mio_ops, &m, &stage), 0, "%s", qopts);
    cr_assert_eq(stage, QCOW2_CREATE_STAGE_NONE);
    cr_assert_eq(m.dev[0].len, q.len, "%s: file length %zu, qemu %zu", qopts, m.dev[0].len, q.len);
    if (memcmp(m.dev[0].p, q.p, q.len)) {
        size_t i = 0;

        while (m.dev[0].p[i] == q.p[i])
            i++;
        cr_assert_fail("%s: byte %zu differs", qopts, i);
    }
    if (o->data_file) {
        struct img d = img_make(cmd, o->data_file);

        cr_assert_eq(m.dev[1].len, d.len, "%s: data file length", qopts);
    }
    mio_free(&m);
}

static struct qcow2_create_opts defaults(uint64_t size)
{
    struct qcow2_create_opts o;

    memset(&o, 0, sizeof(o));
    o.size = size;
    o.cluster_bits = 16;
    o.version = 3;
    o.refcount_order = 4;
    return o;
}

Test(qcow2_create, default_1g)
{
    struct qcow2_create_opts o = defaults(1ull << 30);

    same_as_qemu("cluster_size=64k", "1G", &o);
}

Test(qcow2_create, compat_v2)
{
    struct qcow2_create_opts o = defaults(100 << 20);

    o.version = 2;
    same_as_qemu("compat=0.10", "100M", &o);
}

Test(qcow2_create, lazy_zstd_rb8_4k)
{
    struct qcow2_create_opts o = defaults(10 << 20);

    o.lazy_refcounts = true;
    o.compression_type = 1;
    o.refcount_order = 3;
    o.cluster_bits = 12;
    same_as_qemu("lazy_refcounts=on,compression_type=zstd,refcount_bits=8,cluster_size=4k", "10M",
                 &o);
}

/* Small clusters and wide refcounts: the refcount table grows while preallocating. */
Test(qcow2_create, metadata_reftable_growth)
{
    static const struct {
        unsigned cs, bits;
        const char *size;
        uint64_t bytes;
    } cases[] = {
        {512, 64, "6M", 6 << 20},
        {512, 1, "4M", 4 << 20},
        {1024, 32, "8M", 8 << 20},
        {2048, 2, "8M", 8 << 20},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct qcow2_create_opts o = defaults(cases[i].bytes);
        char q[128];

        o.cluster_bits = (uint32_t)log2u(cases[i].cs);
        o.refcount_order = (uint32_t)log2u(cases[i].bits);
        o.prealloc = QCOW2_PREALLOC_METADATA;
        snprintf(q, sizeof(q), "cluster_size=%u,refcount_bits=%u,preallocation=metadata",
                 cases[i].cs, cases[i].bits);
        same_as_qemu(q, cases[i].size, &o);
    }
}

Test(qcow2_create, extended_l2_metadata)
{
    struct qcow2_create_opts o = defaults(40 << 20);

    o.extended_l2 = true;
    o.cluster_bits = 14;
    o.prealloc = QCOW2_PREALLOC_METADATA;
    same_as_qemu("extended_l2=on,cluster_size=16k,preallocation=metadata", "40M", &o);
}

Test(qcow2_create, falloc_and_full)
{
    struct qcow2_create_opts o = defaults(3 << 20);
    struct mio m = {.fail_at = -1};
    int stage;

    o.prealloc = QCOW2_PREALLOC_FALLOC;
    same_as_qemu("preallocation=falloc", "3M", &o);
    o.prealloc = QCOW2_PREALLOC_FULL;
    same_as_qemu("preallocation=full", "3M", &o);
    /* The data clusters' range is handed to the file driver with the mode. */
    cr_assert_eq(qcow2_create(&o, &mio_ops, &m, &stage), 0);
    cr_assert_eq(m.last_mode, QCOW2_PREALLOC_FULL);
    mio_free(&m);
}

Test(qcow2_create, unaligned_size)
{
    struct qcow2_create_opts o = defaults(1000448);

    o.prealloc = QCOW2_PREALLOC_METADATA;
    same_as_qemu("preallocation=metadata", "1000001", &o);
}

Test(qcow2_create, backing_names_in_header)
{
    struct qcow2_create_opts o = defaults(1 << 20);

    o.backing_file = "base,image.qcow2";
    o.backing_fmt = "qcow2";
    same_as_qemu("backing_file=base,,image.qcow2,backing_fmt=qcow2", "1M", &o);
    o.cluster_bits = 9;
    same_as_qemu("backing_file=base,,image.qcow2,backing_fmt=qcow2,cluster_size=512", "1M", &o);
}

Test(qcow2_create, data_file)
{
    struct qcow2_create_opts o = defaults(4 << 20);

    o.data_file = "d.raw";
    same_as_qemu("data_file=d.raw", "4M", &o);
    o.data_file_raw = true;
    o.prealloc = QCOW2_PREALLOC_METADATA;
    same_as_qemu("data_file=d.raw,data_file_raw=on", "4M", &o);
}

/*
 * A backing file name that does not fit the 512-byte header cluster: the
 * oracle refuses the create at the backing step with ENOSPC's text; so
 * does the library (qemu-img then deletes the file, as cmd/create.c does).
 */
Test(qcow2_create, backing_name_too_long)
{
    char name[501], *out;
    struct qcow2_create_opts o = defaults(1 << 20);
    struct mio m = {.fail_at = -1};
    int stage = 0;

    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = 0;
    out = sh_out("cd /tmp && qemu-img create -q -f qcow2 -u -b %s -F raw -o cluster_size=512 "
                 "/tmp/instar-ut-long.$$ 1M 2>&1; echo rc=$?; rm -f /tmp/instar-ut-long.$$",
                 name);
    cr_assert_not_null(strstr(out, "Could not assign backing file"), "%s", out);
    cr_assert_not_null(strstr(out, "No space left on device"), "%s", out);
    cr_assert_not_null(strstr(out, "rc=1"), "%s", out);
    free(out);

    o.cluster_bits = 9;
    o.backing_file = name;
    o.backing_fmt = "raw";
    cr_assert_eq(qcow2_create(&o, &mio_ops, &m, &stage), -QCOW2_CREATE_ENOSPC);
    cr_assert_eq(stage, QCOW2_CREATE_STAGE_BACKING);
    mio_free(&m);
}

/* Every write or truncate that fails fails the create, with a stage. */
Test(qcow2_create, io_failures_report_a_stage)
{
    struct qcow2_create_opts o = defaults(8 << 20);
    struct mio probe = {.fail_at = -1};
    int stage, total;

    o.cluster_bits = 9;
    o.prealloc = QCOW2_PREALLOC_METADATA;
    cr_assert_eq(qcow2_create(&o, &mio_ops, &probe, &stage), 0);
    total = probe.ops;
    mio_free(&probe);
    cr_assert_gt(total, 3);
    for (int i = 0; i < total; i++) {
        struct mio m = {.fail_at = i};
        int ret;

        stage = QCOW2_CREATE_STAGE_NONE;
        ret = qcow2_create(&o, &mio_ops, &m, &stage);
        cr_assert_lt(ret, 0, "failure %d of %d was ignored", i, total);
        cr_assert_neq(stage, QCOW2_CREATE_STAGE_NONE, "failure %d has no stage", i);
        mio_free(&m);
    }
}

/* The layout the library computes stays under its own file-size bound. */
Test(qcow2_create, max_file_size_bounds_layout)
{
    static const unsigned bits[] = {0, 2, 4, 6};

    for (size_t i = 0; i < 4; i++) {
        struct qcow2_create_opts o = defaults(32 << 20);
        struct mio m = {.fail_at = -1};
        int stage;

        o.cluster_bits = 9;
        o.refcount_order = bits[i];
        o.prealloc = QCOW2_PREALLOC_METADATA;
        cr_assert_eq(qcow2_create(&o, &mio_ops, &m, &stage), 0);
        cr_assert_leq(m.dev[0].len, qcow2_create_max_file_size(&o));
        mio_free(&m);
    }
}

Test(qcow2_create, header_rejects_bad_geometry)
{
    struct qcow2_create_opts o = defaults(1 << 20);
    struct mio m = {.fail_at = -1};
    int stage;

    o.cluster_bits = 8;
    cr_assert_lt(qcow2_create(&o, &mio_ops, &m, &stage), 0);
    o.cluster_bits = 16;
    o.refcount_order = 7;
    cr_assert_lt(qcow2_create(&o, &mio_ops, &m, &stage), 0);
    mio_free(&m);
}
