/*
 * formats/qcow2/snapop.c over an in-memory file.  Images are made by the
 * oracle (qemu-img, qemu-io); the expected result of each operation is
 * the file qemu-img snapshot produces from the same bytes, compared byte
 * for byte except the new entry's date (each side stamps its own).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2_test_util.h"
#include "snapop.h"

static struct memfile mf_from(struct img im)
{
    struct memfile m;

    memfile_copy(&m, im.p, im.len);
    return m;
}

/* The snapshot table of m (entries without unknown extra data: qemu-img made them). */
static void image_of(const struct memfile *m, struct qcow2_snapop_image *si)
{
    const uint8_t *h = m->p;
    uint64_t off;
    uint32_t i, version = (uint32_t)get_be(h, 4, 4);

    memset(si, 0, sizeof(*si));
    si->cluster_bits = (uint32_t)get_be(h, 20, 4);
    si->disk_size = get_be(h, 24, 8);
    si->l1_size = (uint32_t)get_be(h, 36, 4);
    si->l1_table_offset = get_be(h, 40, 8);
    si->refcount_table_offset = get_be(h, 48, 8);
    si->refcount_table_clusters = (uint32_t)get_be(h, 56, 4);
    si->nb_snapshots = (uint32_t)get_be(h, 60, 4);
    si->snapshots_offset = get_be(h, 64, 8);
    si->refcount_order = version >= 3 ? (uint32_t)get_be(h, 96, 4) : 4;
    si->extended_l2 = version >= 3 && (get_be(h, 72, 8) & 16);
    si->snapshots = calloc(si->nb_snapshots + 1, sizeof(*si->snapshots));
    off = si->snapshots_offset;
    for (i = 0; i < si->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &si->snapshots[i].sn;

        off = (off + 7) & ~UINT64_C(7);
        sn->l1_table_offset = get_be(h, off, 8);
        sn->l1_size = (uint32_t)get_be(h, off + 8, 4);
        sn->id_len = get_be(h, off + 12, 2);
        sn->name_len = get_be(h, off + 14, 2);
        sn->date_sec = (uint32_t)get_be(h, off + 16, 4);
        sn->date_nsec = (uint32_t)get_be(h, off + 20, 4);
        sn->vm_clock_nsec = get_be(h, off + 24, 8);
        sn->extra_data_size = (uint32_t)get_be(h, off + 36, 4);
        cr_assert_eq(sn->extra_data_size, 24);
        sn->vm_state_size = get_be(h, off + 40, 8);
        sn->disk_size = get_be(h, off + 48, 8);
        sn->icount = get_be(h, off + 56, 8);
        sn->id = m->p + off + 64;
        sn->name = sn->id + sn->id_len;
        off += 64 + sn->id_len + sn->name_len;
    }
    si->snapshots_size = si->nb_snapshots ? off - si->snapshots_offset : 0;
}

/* Zero the date of every entry of the table m's header names. */
static void mask_dates(uint8_t *p)
{
    uint64_t off = get_be(p, 64, 8);
    uint32_t i, nb = (uint32_t)get_be(p, 60, 4);

    for (i = 0; i < nb; i++) {
        off = (off + 7) & ~UINT64_C(7);
        memset(p + off + 16, 0, 8);
        off += 40 + get_be(p, off + 36, 4) + get_be(p, off + 12, 2) + get_be(p, off + 14, 2);
    }
}

static const struct qcow2_snapop_io *io_of(struct memfile *m)
{
    static struct qcow2_snapop_io io = {NULL,          memfile_read, memfile_write,
                                        memfile_flush, memfile_mem,  memfile_discard};

    io.opaque = m;
    return &io;
}

/* make, then qemu-img snapshot ARGS on a copy; the op in memory on the other; same bytes. */
static void same_as_qemu(const char *make, const char *args, char op, const char *name, int expect)
{
    char cmds[2048];
    struct img before = img_make(make, "t.qcow2"), after;
    struct memfile m = mf_from(before);
    struct qcow2_snapop_image si;
    int stage = 0, ret;
    int64_t idx;

    image_of(&m, &si);
    if (op == 'c') {
        ret = qcow2_snapop_create(&si, io_of(&m), (const uint8_t *)name, strlen(name), 1, 2);
    } else {
        idx = qcow2_snapop_find(&si, (const uint8_t *)name, strlen(name), op == 'a');
        cr_assert_geq(idx, 0);
        ret = op == 'd' ? qcow2_snapop_delete(&si, io_of(&m), (uint32_t)idx, &stage)
                        : qcow2_snapop_apply(&si, io_of(&m), (uint32_t)idx, &stage);
    }
    cr_assert_eq(ret, expect, "%s: %d", args, ret);
    free(si.snapshots);
    snprintf(cmds, sizeof(cmds), "%s; qemu-img snapshot %s t.qcow2; true", make, args);
    after = img_make(cmds, "t.qcow2");
    cr_assert_eq(m.len, after.len, "%s: length %zu, qemu-img %zu", args, m.len, after.len);
    mask_dates(m.p);
    mask_dates(after.p);
    cr_assert(!memcmp(m.p, after.p, m.len), "%s: bytes differ", args);
    free(m.p);
}

#define MAKE(opts)                                                                                 \
    "qemu-img create -q -f qcow2 -o " opts " t.qcow2 4M && "                                       \
    "qemu-io -c 'write -P 1 0 128k' -c 'write -P 2 1M 64k' t.qcow2"

Test(qcow2_snapop, create_every_refcount_width)
{
    static const char *const opts[] = {"refcount_bits=2",  "refcount_bits=4",  "refcount_bits=8",
                                       "refcount_bits=16", "refcount_bits=32", "refcount_bits=64"};

    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        char make[512];

        snprintf(make, sizeof(make), MAKE("%s,cluster_size=4096"), opts[i]);
        same_as_qemu(make, "-c s1", 'c', "s1", 0);
    }
}

Test(qcow2_snapop, create_refcount_overflow_einval)
{
    same_as_qemu(MAKE("refcount_bits=1"), "-c s1", 'c', "s1", -QCOW2_SNAPOP_EINVAL);
}

Test(qcow2_snapop, delete_and_apply)
{
    const char *make = MAKE("cluster_size=512") " && qemu-img snapshot -c a t.qcow2 && "
                                                "qemu-io -c 'write -P 3 0 64k' t.qcow2 && "
                                                "qemu-img snapshot -c b t.qcow2";

    same_as_qemu(make, "-d a", 'd', "a", 0);
    same_as_qemu(make, "-d b", 'd', "b", 0);
    same_as_qemu(make, "-a a", 'a', "a", 0);
    same_as_qemu(make, "-a 2", 'a', "2", 0);
}

Test(qcow2_snapop, find_by_id_then_name)
{
    struct qcow2_snapop_entry e[2];
    struct qcow2_snapop_image si;

    memset(e, 0, sizeof(e));
    e[0].sn.id = (const uint8_t *)"1";
    e[0].sn.id_len = 1;
    e[0].sn.name = (const uint8_t *)"2";
    e[0].sn.name_len = 1;
    e[1].sn.id = (const uint8_t *)"2";
    e[1].sn.id_len = 1;
    e[1].sn.name = (const uint8_t *)"x";
    e[1].sn.name_len = 1;
    memset(&si, 0, sizeof(si));
    si.nb_snapshots = 2;
    si.snapshots = e;
    /* -a looks for an id first, -d only for a name. */
    cr_assert_eq(qcow2_snapop_find(&si, (const uint8_t *)"2", 1, true), 1);
    cr_assert_eq(qcow2_snapop_find(&si, (const uint8_t *)"2", 1, false), 0);
    cr_assert_eq(qcow2_snapop_find(&si, (const uint8_t *)"y", 1, true), -1);
}
