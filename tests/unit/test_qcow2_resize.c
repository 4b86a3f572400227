/*
 * formats/qcow2/resize.c over an in-memory file.  Images are made by the
 * oracle (qemu-img, qemu-io); the expected result of each resize is the
 * file qemu-img resize produces from the same bytes, compared byte for
 * byte (the in-memory file's discard zeroes the range, which is what
 * QEMU's hole punching leaves to read).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "prealloc.h"
#include "qcow2_test_util.h"
#include "resize.h"

static struct memfile mf_from(struct img im)
{
    struct memfile m;

    memfile_copy(&m, im.p, im.len);
    return m;
}

static void image_of(const struct memfile *m, struct qcow2_resize_image *ri)
{
    const uint8_t *h = m->p;

    memset(ri, 0, sizeof(*ri));
    ri->version = (uint32_t)get_be(h, 4, 4);
    ri->cluster_bits = (uint32_t)get_be(h, 20, 4);
    ri->size = get_be(h, 24, 8) & ~UINT64_C(511);
    ri->l1_size = (uint32_t)get_be(h, 36, 4);
    ri->l1_table_offset = get_be(h, 40, 8);
    ri->refcount_table_offset = get_be(h, 48, 8);
    ri->refcount_table_clusters = (uint32_t)get_be(h, 56, 4);
    ri->nb_snapshots = (uint32_t)get_be(h, 60, 4);
    ri->refcount_order = ri->version >= 3 ? (uint32_t)get_be(h, 96, 4) : 4;
    ri->extended_l2 = ri->version >= 3 && (get_be(h, 72, 8) & 16);
    ri->file_size = m->len;
}

static int do_resize(struct memfile *m, uint64_t size, int *errnum)
{
    struct qcow2_resize_io io = {
        m,           memfile_read, memfile_write,   memfile_flush, memfile_truncate,
        memfile_mem, NULL,         memfile_discard, NULL,          NULL,
        NULL};
    struct qcow2_resize_image ri;
    int wc, we;

    image_of(m, &ri);
    return qcow2_resize(&ri, &io, size, errnum, &wc, &we);
}

/*
 * Make an image with cmds, resize it in memory and with qemu-img; same
 * bytes.  Returns the bytes the resize discarded.
 */
static uint64_t same_as_qemu(const char *make, const char *qemu_args, uint64_t size)
{
    char cmds[2048];
    struct img before = img_make(make, "t.qcow2");
    struct memfile m = mf_from(before);
    struct img after;
    int errnum = -1;

    cr_assert_eq(do_resize(&m, size, &errnum), 0, "resize failed, errno %d", errnum);
    snprintf(cmds, sizeof(cmds), "%s && qemu-img resize %s", make, qemu_args);
    after = img_make(cmds, "t.qcow2");
    cr_assert_eq(m.len, after.len, "length %zu, qemu-img %zu", m.len, after.len);
    cr_assert(memcmp(m.p, after.p, m.len) == 0, "bytes differ from qemu-img's result");
    free(m.p);
    return m.discarded;
}

#define MK(o)                                                                                      \
    "qemu-img create -q -f qcow2 -o " o " t.qcow2 16M && qemu-io -f qcow2 -c 'write -P 7 0 64k' "  \
    "-c 'write -P 9 12M 128k' t.qcow2"

Test(qcow2_resize, shrink_every_refcount_width)
{
    static const char *const o[] = {"refcount_bits=1", "refcount_bits=2",  "refcount_bits=4",
                                    "refcount_bits=8", "refcount_bits=16", "refcount_bits=32",
                                    "refcount_bits=64"};
    for (unsigned i = 0; i < sizeof(o) / sizeof(o[0]); i++) {
        char make[512];

        snprintf(make, sizeof(make), MK("%s"), o[i]);
        same_as_qemu(make, "--shrink t.qcow2 8M", 8 << 20);
    }
}

Test(qcow2_resize, shrink_small_clusters_sub_byte_refcounts)
{
    same_as_qemu(MK("cluster_size=512,refcount_bits=2"), "--shrink t.qcow2 8M", 8 << 20);
    same_as_qemu(MK("cluster_size=512,refcount_bits=4"), "--shrink t.qcow2 5M", 5 << 20);
}

/*
 * Data clusters freed inside the kept file are punched out of it
 * (qcow2_process_discards): the 12M data was written first, so it lies
 * before the data kept at 0.  With 64 KiB clusters one L2 table covers
 * the image and stays; with 4 KiB ones each 2 MiB past 8M has its own
 * (the discard allocates those it lacks, as QEMU's does), and the four
 * are freed and discarded too.
 */
Test(qcow2_resize, shrink_discards_freed_clusters)
{
    const char *make = "qemu-img create -q -f qcow2 -o %s t.qcow2 16M && qemu-io -f qcow2 "
                       "-c 'write -P 9 12M 128k' -c 'write -P 7 0 64k' t.qcow2";
    static const struct {
        const char *o;
        uint64_t discarded;
    } c[] = {{"refcount_bits=16", 128 << 10}, {"refcount_bits=1,cluster_size=4096", 144 << 10}};

    for (unsigned i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        char cmd[512];
        uint64_t d;

        snprintf(cmd, sizeof(cmd), make, c[i].o);
        d = same_as_qemu(cmd, "--shrink t.qcow2 8M", 8 << 20);
        cr_expect_eq(d, c[i].discarded, "%s: %llu bytes discarded", c[i].o, (unsigned long long)d);
    }
}

Test(qcow2_resize, grow_relocates_l1_and_grows_reftable)
{
    same_as_qemu(MK("cluster_size=512,refcount_bits=1"), "t.qcow2 2G", UINT64_C(2) << 30);
    same_as_qemu(MK("cluster_size=512,refcount_bits=64"), "t.qcow2 2G", UINT64_C(2) << 30);
    same_as_qemu(MK("cluster_size=4096,refcount_bits=16"), "t.qcow2 1T", UINT64_C(1) << 40);
}

Test(qcow2_resize, grow_within_l1_only_writes_size)
{
    struct memfile m = mf_from(img_make(MK("cluster_size=65536"), "t.qcow2"));
    int errnum;

    cr_assert_eq(do_resize(&m, 32 << 20, &errnum), 0);
    cr_assert_eq(m.writes, 1, "one write (the header size), got %d", m.writes);
    cr_assert_eq(get_be(m.p, 24, 8), 32u << 20);
    free(m.p);
}

Test(qcow2_resize, v2_with_snapshots_refused)
{
    struct memfile m = mf_from(img_make("qemu-img create -q -f qcow2 -o compat=0.10 t.qcow2 16M && "
                                        "qemu-img snapshot -c s t.qcow2",
                                        "t.qcow2"));
    int errnum;

    cr_assert_eq(do_resize(&m, 32 << 20, &errnum), -QCOW2_RESIZE_ERR_V2_SNAPSHOTS);
    cr_assert_eq(m.writes, 0);
    free(m.p);
}

Test(qcow2_resize, l1_too_large_is_efbig)
{
    struct memfile m = mf_from(img_make(MK("cluster_size=512"), "t.qcow2"));
    int errnum;

    cr_assert_eq(do_resize(&m, UINT64_C(1) << 50, &errnum), -QCOW2_RESIZE_ERR_GROW_L1);
    cr_assert_eq(errnum, QCOW2_RESIZE_EFBIG);
    cr_assert_eq(m.writes, 0);
    free(m.p);
}

Test(qcow2_resize, write_failure_names_the_step)
{
    struct img im = img_make(MK("refcount_bits=16"), "t.qcow2");
    struct memfile m = mf_from(im);
    int errnum;

    m.fail_at = 0; /* the first write of a shrink is the discard's L2 table */
    cr_assert_eq(do_resize(&m, 8 << 20, &errnum), -QCOW2_RESIZE_ERR_DISCARD);
    cr_assert_eq(errnum, 5);
    cr_assert(memcmp(m.p, im.p, im.len) == 0, "nothing written");
    free(m.p);

    m = mf_from(im);
    m.fail_at = 0;
    cr_assert_eq(do_resize(&m, 32 << 20, &errnum), -QCOW2_RESIZE_ERR_UPDATE_SIZE);
    free(m.p);
}

Test(qcow2_resize, failed_tail_truncation_is_a_warning)
{
    struct memfile m = mf_from(img_make(MK("refcount_bits=16"), "t.qcow2"));
    struct qcow2_resize_io io = {
        &m,   memfile_read, memfile_write, memfile_flush, memfile_truncate, memfile_mem, NULL,
        NULL, NULL,         NULL,          NULL};
    struct qcow2_resize_image ri;
    int errnum, wc, we, total;

    /* Count the writes, then fail exactly the truncation (the last one). */
    image_of(&m, &ri);
    {
        struct memfile probe = m;

        probe.p = malloc(m.len);
        memcpy(probe.p, m.p, m.len);
        probe.cap = m.len;
        io.opaque = &probe;
        cr_assert_eq(qcow2_resize(&ri, &io, 8 << 20, &errnum, &wc, &we), 0);
        cr_assert_eq(probe.truncations, 1);
        total = probe.writes;
        free(probe.p);
    }
    /* The truncation is the write before the header size. */
    {
        struct memfile t = m;

        t.p = malloc(m.len);
        memcpy(t.p, m.p, m.len);
        t.cap = m.len;
        t.fail_at = total - 2;
        io.opaque = &t;
        cr_assert_eq(qcow2_resize(&ri, &io, 8 << 20, &errnum, &wc, &we), 0);
        cr_assert_eq(wc, QCOW2_RESIZE_ERR_TRUNCATE_TAIL);
        cr_assert_eq(we, 5);
        cr_assert_eq(get_be(t.p, 24, 8), 8u << 20);
        free(t.p);
    }
    free(m.p);
}

static int mf_truncate_mode(void *o, uint64_t size, int mode)
{
    (void)mode;
    return memfile_truncate(o, size);
}

/* Metadata preallocation in memory and with qemu-img from the same image: same bytes. */
static void prealloc_metadata_as_qemu(const char *make, uint64_t size)
{
    char cmds[2048];
    struct memfile m = mf_from(img_make(make, "t.qcow2"));
    struct qcow2_resize_io io = {
        &m,          memfile_read,     memfile_write,   memfile_flush, memfile_truncate,
        memfile_mem, mf_truncate_mode, memfile_discard, NULL,          NULL,
        NULL};
    struct qcow2_resize_image ri;
    struct img after;
    int errnum = 0, wc, we;

    image_of(&m, &ri);
    ri.prealloc = QCOW2_PREALLOC_METADATA;
    cr_assert_eq(qcow2_resize(&ri, &io, size, &errnum, &wc, &we), 0, "resize failed, errno %d",
                 errnum);
    snprintf(cmds, sizeof(cmds), "%s && qemu-img resize -q --preallocation=metadata t.qcow2 %llu",
             make, (unsigned long long)size);
    after = img_make(cmds, "t.qcow2");
    cr_assert_eq(m.len, after.len, "length %zu, qemu-img %zu", m.len, after.len);
    cr_assert(memcmp(m.p, after.p, m.len) == 0, "bytes differ from qemu-img's result");
    free(m.p);
}

/* The head cluster kept and rewritten in place (keep_zero_alloc, keep_extl2_edges). */
Test(qcow2_resize, prealloc_metadata_kept_head)
{
    prealloc_metadata_as_qemu("qemu-img create -q -f qcow2 t.qcow2 16776704 && qemu-io -f qcow2 "
                              "-c 'write -P 3 16711680 65024' -c 'write -z 16711680 65024' t.qcow2",
                              20 << 20);
    prealloc_metadata_as_qemu("qemu-img create -q -f qcow2 -o extended_l2=on t.qcow2 16744448 && "
                              "qemu-io -f qcow2 -c 'write -P 3 16740352 2048' t.qcow2",
                              16760832);
}

/* An encrypted image: every grow that would write guest data is refused before any write. */
Test(qcow2_resize, encrypted_data_write_refused)
{
    static const struct {
        const char *size;
        int prealloc;
        bool zero_write;
        uint64_t new_size;
    } c[] = {
        {"16776704", QCOW2_PREALLOC_METADATA, false, 20 << 20}, /* the head's copy-on-write */
        {"16M", QCOW2_PREALLOC_METADATA, false, 20000 << 10},   /* the tail's zeros */
        {"16776704", QCOW2_PREALLOC_FALLOC, false, 20 << 20},   /* the head moved */
        {"16776704", QCOW2_PREALLOC_OFF, true, 20 << 20},       /* the head's explicit zeros */
    };

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        char cmd[256];
        struct memfile m;
        struct qcow2_resize_io io = {
            NULL,        memfile_read, memfile_write,   memfile_flush, memfile_truncate,
            memfile_mem, NULL,         memfile_discard, NULL,          NULL,
            NULL};
        struct qcow2_resize_image ri;
        int errnum, wc, we;

        snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 t.qcow2 %s", c[i].size);
        m = mf_from(img_make(cmd, "t.qcow2"));
        io.opaque = &m;
        image_of(&m, &ri);
        ri.encrypted = true;
        ri.prealloc = c[i].prealloc;
        ri.zero_write = c[i].zero_write;
        cr_assert_eq(qcow2_resize(&ri, &io, c[i].new_size, &errnum, &wc, &we),
                     -QCOW2_RESIZE_ERR_NOTSUP_CRYPT, "case %zu", i);
        cr_assert_eq(m.writes, 0, "case %zu", i);
        free(m.p);
    }
}

Test(qcow2_resize, l1_entries)
{
    cr_assert_eq(qcow2_resize_l1_entries(0, 16, false), 0);
    cr_assert_eq(qcow2_resize_l1_entries(1, 16, false), 1);
    cr_assert_eq(qcow2_resize_l1_entries(UINT64_C(512) << 20, 16, false), 1);
    cr_assert_eq(qcow2_resize_l1_entries((UINT64_C(512) << 20) + 1, 16, false), 2);
    cr_assert_eq(qcow2_resize_l1_entries(UINT64_C(256) << 20, 16, true), 1);
    cr_assert_eq(qcow2_resize_l1_entries(UINT64_C(1) << 40, 9, false), UINT64_C(1) << 25);
}
