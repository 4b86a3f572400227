/*
 * Fuzz target: the internal snapshot writer (formats/qcow2/snapop.c, with
 * the snapshot table writer of snapshot.c) over one image held in memory
 * (fuzz_image.h).  The input is the image file followed by FI_OPS bytes of
 * operations, run in turn on the image as each left it; each byte is
 * create (a new name), delete or apply (of the entry (byte >> 2) modulo
 * the count), or the end of the script.  Each operation sees the image as
 * qemu-img snapshot's read-write open does (images it refuses or repairs
 * first are skipped).
 *
 * The harness aborts (a finding) when memory is left allocated, and, for
 * an image the check finds clean before the operation:
 *  - after a success, when the image does not open again, the check finds
 *    anything (corruption, leak, error), the table is not the old one with
 *    the entry added or removed (ids, names, L1 tables kept), or the
 *    active L1 table does not map what it should (unchanged by create and
 *    delete, the snapshot's after apply; COPIED flags aside), or a new
 *    snapshot's L1 table is not the active one;
 *  - after a failure, when the check finds a corruption (a failure leaves
 *    at most leaked clusters).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_image.h"
#include "qcow2/l2.h"
#include "qcow2/snapop.h"

#define MAX_INPUT (4u << 20)

/* The L1 table at off (n entries), COPIED cleared, padded with zeros to pad entries. */
static uint64_t *read_l1(struct fi *m, uint64_t off, uint32_t n, uint32_t pad)
{
    uint64_t *l1 = calloc(pad > n ? pad : n ? n : 1, 8);
    uint8_t b[8];

    if (!l1)
        abort();
    for (uint32_t i = 0; i < n; i++) {
        fi_pread(m, off + 8ull * i, b, 8);
        l1[i] = qcow2_be64(b, 8, 0) & ~QCOW2_OFLAG_COPIED;
    }
    return l1;
}

static int same_str(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && !memcmp(a, b, alen);
}

static int same_entry(const struct qcow2_snapshot *a, const struct qcow2_snapshot *b)
{
    return same_str(a->id, a->id_len, b->id, b->id_len) &&
           same_str(a->name, a->name_len, b->name, b->name_len) &&
           a->l1_table_offset == b->l1_table_offset && a->l1_size == b->l1_size &&
           a->date_sec == b->date_sec && a->date_nsec == b->date_nsec &&
           a->vm_clock_nsec == b->vm_clock_nsec && a->vm_state_size == b->vm_state_size &&
           a->disk_size == b->disk_size && a->icount == b->icount;
}

/* One operation on the image m as it is; 1 when the script should stop. */
static int one(struct fi *m, uint8_t op)
{
    const struct qcow2_snapop_io io = {m, fi_pread, fi_pwrite, fi_flush, fi_mem, fi_discard};
    struct qcow2_snapop_image si;
    struct fi_open o, n;
    uint8_t name[8];
    size_t name_len;
    uint64_t *l1_before = NULL, *l1_after = NULL, *l1_sn = NULL;
    uint32_t idx = 0, i;
    int clean, ret, stage = 0, kind = op & 3;

    if (kind == 3 || fi_open(m, &o) != 0)
        return 1;
    if (o.h.incompatible_features &
            (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DATA_FILE) ||
        o.nbm) {
        fi_close(&o);
        return 1;
    }
    if (kind != 0) {
        if (!o.nsn) {
            fi_close(&o);
            return 0;
        }
        idx = (uint32_t)(op >> 2) % o.nsn;
    }
    memset(&si, 0, sizeof(si));
    si.cluster_bits = o.h.cluster_bits;
    si.refcount_order = o.h.refcount_order;
    si.extended_l2 = (o.h.incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
    si.disk_size = o.h.disk_size;
    si.l1_size = o.h.l1_size;
    si.l1_table_offset = o.h.l1_table_offset;
    si.refcount_table_offset = o.h.refcount_table_offset;
    si.refcount_table_clusters = o.h.refcount_table_clusters;
    si.snapshots_offset = o.h.snapshots_offset;
    si.nb_snapshots = o.nsn;
    if (o.nsn) {
        si.snapshots = calloc(o.nsn, sizeof(*si.snapshots));
        if (!si.snapshots)
            abort();
        si.snapshots_size = o.sn[o.nsn - 1].end_offset - o.h.snapshots_offset;
    }
    for (i = 0; i < o.nsn; i++) {
        si.snapshots[i].sn = o.sn[i];
        if (o.sn[i].extra_data_size > QCOW2_SNAPSHOT_KNOWN_EXTRA) {
            size_t len = o.sn[i].extra_data_size - QCOW2_SNAPSHOT_KNOWN_EXTRA;
            uint8_t *u = malloc(len);

            if (!u)
                abort();
            fi_pread(m, o.sn[i].unknown_offset, u, len);
            si.snapshots[i].unknown = u;
        }
    }
    clean = fi_clean(m);
    if (clean) {
        l1_before = read_l1(m, o.h.l1_table_offset, o.h.l1_size, 0);
        if (kind == 2)
            l1_sn = read_l1(m, o.sn[idx].l1_table_offset, o.sn[idx].l1_size, o.h.l1_size);
    }

    name_len = (size_t)snprintf((char *)name, sizeof(name), "f%02x", op);
    if (kind == 0)
        ret = qcow2_snapop_create(&si, &io, name, name_len, op, 0);
    else if (kind == 1)
        ret = qcow2_snapop_delete(&si, &io, idx, &stage);
    else
        ret = qcow2_snapop_apply(&si, &io, idx, &stage);
    if (m->live != 0)
        abort(); /* the operation must release everything */
#ifdef FUZZ_STANDALONE
    printf("op=%u kind=%d idx=%u ret=%d stage=%d clean=%d writes=%lu\n", op, kind, idx, ret, stage,
           clean, m->writes);
#endif

    if (clean && ret < 0) {
        struct qcow2_check_result r;

        if (fi_check(m, &r) < 0 || r.corruptions)
            abort(); /* a failure left more than leaks */
    } else if (clean) {
        if (fi_open(m, &n) != 0)
            abort(); /* the rewritten image does not open */
        if (!fi_clean(m))
            abort(); /* refcounts or COPIED flags are off */
        if (n.h.l1_size != o.h.l1_size || n.h.l1_table_offset != o.h.l1_table_offset)
            abort();
        if (n.nsn != (kind == 0 ? o.nsn + 1 : kind == 1 ? o.nsn - 1 : o.nsn))
            abort();
        for (i = 0; i < n.nsn; i++) {
            uint32_t from = kind == 1 && i >= idx ? i + 1 : i;

            if (kind == 0 && i == o.nsn)
                break;
            if (!same_entry(&n.sn[i], &o.sn[from]))
                abort(); /* an entry changed */
        }
        l1_after = read_l1(m, n.h.l1_table_offset, n.h.l1_size, 0);
        if (kind == 0) {
            const struct qcow2_snapshot *s = &n.sn[o.nsn];
            uint64_t *l1_new = read_l1(m, s->l1_table_offset, s->l1_size, 0);

            if (!same_str(s->name, s->name_len, name, name_len) || s->l1_size != o.h.l1_size ||
                memcmp(l1_new, l1_before, 8ull * o.h.l1_size))
                abort(); /* the new snapshot is not the active layer */
            free(l1_new);
        }
        if (memcmp(l1_after, kind == 2 ? l1_sn : l1_before, 8ull * o.h.l1_size))
            abort(); /* the active layer maps something else */
        fi_close(&n);
    }
    free(l1_before);
    free(l1_after);
    free(l1_sn);
    for (i = 0; i < o.nsn; i++)
        free((void *)si.snapshots[i].unknown);
    free(si.snapshots);
    fi_close(&o);
    return 0;
}

static int run(const uint8_t *data, size_t len)
{
    struct fi m;
    size_t img_len;

    if (len < 72 + FI_OPS)
        return 0;
    img_len = len - FI_OPS;
    fi_init(&m, data, img_len);
    for (int i = 0; i < FI_OPS; i++)
        if (one(&m, data[img_len + i]))
            break;
    free(m.p);
    return 0;
}

#include "fuzz_main.h"
