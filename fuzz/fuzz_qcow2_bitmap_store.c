/*
 * Fuzz target: the persistent bitmap writer (formats/qcow2/bitmap_store.c:
 * the bitmaps' data, tables and directory, the header rewrite, the old
 * clusters freed) over one image held in memory (fuzz_image.h).  The
 * input is the image file followed by FI_OPS bytes of operations on the
 * image's bitmap list as qemu loads it (every bitmap not in use read into
 * memory): add, remove, enable/disable, record a write, clear, merge one
 * into another, store (then the list is loaded again from what was
 * written), or the end of the script; what changed is stored at the end,
 * as QEMU stores its bitmaps when it closes the image.  Version 3 images
 * that qemu opens read-write without a repair only.
 *
 * The harness aborts (a finding) when memory is left allocated, and, for
 * an image the check found clean when the list was loaded:
 *  - after a store that succeeded, when the image does not open again,
 *    the check finds anything, the directory is not the list (names,
 *    granularities, flags, in order), or a bitmap held in memory does not
 *    read back bit for bit;
 *  - after a store that failed, when the check finds a corruption.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_image.h"
#include "qcow2/alloc.h"
#include "qcow2/bitmap_store.h"

#define MAX_INPUT (4u << 20)

static const struct qcow2_alloc_ops fi_alloc_ops = {fi_pread, fi_pwrite, fi_mem, fi_discard,
                                                    fi_flush};

struct st {
    struct fi *m;
    struct fi_open o;
    struct qcow2_bm_list l;
    int clean; /* the check found the image clean when the list was loaded */
};

/* qemu's read-write open: the list loaded; -1 when the image is not one to fuzz. */
static int load(struct st *s)
{
    struct qcow2_reader rd = {fi_pread, s->m};
    const struct qcow2_header *h;

    if (fi_open(s->m, &s->o) != 0)
        return -1;
    h = &s->o.h;
    if (h->version < 3 ||
        (h->incompatible_features &
         (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DATA_FILE))) {
        fi_close(&s->o);
        return -1;
    }
    qcow2_bm_list_init(&s->l, h->disk_size, h->cluster_bits, fi_mem, s->m);
    if (qcow2_bm_list_load(&s->l, s->o.bm, s->o.nbm) != 0)
        goto fail;
    for (uint32_t i = 0; i < s->l.n; i++)
        if (!(s->l.bm[i].flags & QCOW2_BITMAP_IN_USE) && qcow2_bm_load_bits(&s->l, i, &rd) != 0)
            goto fail;
    s->clean = fi_clean(s->m);
    return 0;
fail:
    qcow2_bm_list_release(&s->l);
    fi_close(&s->o);
    if (s->m->live != 0)
        abort();
    return -1;
}

static void unload(struct st *s)
{
    qcow2_bm_list_release(&s->l);
    fi_close(&s->o);
    if (s->m->live != 0)
        abort(); /* the list must release everything */
}

/* q2_store(): data, tables and directory, flush, header, old clusters freed. */
static int store(struct st *s)
{
    const struct qcow2_header *h = &s->o.h;
    struct qcow2_header_state hs;
    struct qcow2_bm_dir dir;
    struct qcow2_alloc a;
    uint8_t *buf, *hdr;
    size_t old_len = s->o.first_len < h->cluster_size ? s->o.first_len : h->cluster_size;
    int ret;

    ret = qcow2_alloc_init(&a, &fi_alloc_ops, s->m, h->cluster_bits, h->refcount_order,
                           h->refcount_table_offset, h->refcount_table_clusters);
    if (ret < 0)
        return ret;
    buf = malloc(h->cluster_size);
    hdr = malloc(h->cluster_size);
    if (!buf || !hdr)
        abort();
    ret = qcow2_bm_store(&s->l, &a, buf, NULL, NULL, &dir);
    if (ret == 0)
        ret = qcow2_alloc_flush(&a);
    if (ret == 0) {
        memset(&hs, 0, sizeof(hs));
        hs.l1_offset = h->l1_table_offset;
        hs.l1_size = h->l1_size;
        hs.reftable_offset = a.reftable_offset;
        hs.reftable_clusters = (uint32_t)((a.reftable_size * 8) >> h->cluster_bits);
        hs.incompatible = h->incompatible_features;
        hs.compatible = h->compatible_features;
        hs.autoclear = (h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) |
                       (dir.nb_bitmaps ? QCOW2_AUTOCLEAR_BITMAPS : 0);
        hs.bitmaps = dir;
        ret = qcow2_header_rewrite(s->o.first, old_len, h, &s->o.x, &hs, hdr);
        if (ret == 0)
            ret = fi_pwrite(s->m, 0, hdr, h->cluster_size);
    }
    if (ret == 0) {
        qcow2_bm_store_finish(&s->l, &a, buf, s->o.x.bitmap_dir_offset,
                              s->o.x.nb_bitmaps ? s->o.x.bitmap_dir_size : 0);
        ret = qcow2_alloc_flush(&a);
    }
    qcow2_alloc_release(&a);
    free(buf);
    free(hdr);
    return ret;
}

/* What a store that returned ret must have left; s->l is the list it stored. */
static void verify(struct st *s, int ret)
{
    struct qcow2_check_result r;
    struct qcow2_reader rd = {fi_pread, s->m};
    struct qcow2_bm_list l2;
    struct fi_open n;

#ifdef FUZZ_STANDALONE
    printf("store ret=%d bitmaps=%u clean=%d writes=%lu\n", ret, s->l.n, s->clean, s->m->writes);
#endif
    if (!s->clean)
        return;
    if (ret < 0) {
        if (fi_check(s->m, &r) < 0 || r.corruptions)
            abort(); /* a failure left more than leaks */
        return;
    }
    if (fi_open(s->m, &n) != 0)
        abort(); /* the rewritten image does not open */
    if (!fi_clean(s->m))
        abort(); /* refcounts are off */
    if (n.nbm != s->l.n)
        abort();
    qcow2_bm_list_init(&l2, n.h.disk_size, n.h.cluster_bits, fi_mem, s->m);
    if (qcow2_bm_list_load(&l2, n.bm, n.nbm) != 0)
        abort();
    for (uint32_t i = 0; i < n.nbm; i++) {
        const struct qcow2_bm *a = &s->l.bm[i], *b = &l2.bm[i];

        if (a->name_len != b->name_len || memcmp(a->name, b->name, a->name_len) ||
            a->granularity_bits != b->granularity_bits || a->flags != b->flags)
            abort(); /* the directory is not the list */
        if (!a->bits)
            continue;
        if (b->flags & QCOW2_BITMAP_IN_USE)
            abort(); /* a stored bitmap is not in use */
        if (qcow2_bm_load_bits(&l2, i, &rd) != 0 ||
            memcmp(a->bits, b->bits,
                   (size_t)qcow2_bm_ser_size(s->l.disk_size, a->granularity_bits)))
            abort(); /* the bits do not read back */
    }
    qcow2_bm_list_release(&l2);
    fi_close(&n);
}

static int dirty(const struct st *s)
{
    if (s->l.ndrop)
        return 1;
    for (uint32_t i = 0; i < s->l.n; i++)
        if (s->l.bm[i].dirty)
            return 1;
    return 0;
}

static int run(const uint8_t *data, size_t len)
{
    struct fi m;
    struct st s;
    size_t img_len;
    int ret;

    if (len < 72 + FI_OPS)
        return 0;
    img_len = len - FI_OPS;
    fi_init(&m, data, img_len);
    memset(&s, 0, sizeof(s));
    s.m = &m;
    if (load(&s) != 0)
        goto out;
    for (int k = 0; k < FI_OPS; k++) {
        uint8_t op = data[img_len + k], arg = op >> 3;
        uint32_t i = s.l.n ? arg % s.l.n : 0;
        uint64_t size = s.l.disk_size;
        char name[8];

        switch (op & 7) {
        case 0:
            snprintf(name, sizeof(name), "b%02x", op);
            (void)qcow2_bm_add(&s.l, name, strlen(name), 9 + arg % 12, op & 0x80, true);
            break;
        case 1:
            (void)qcow2_bm_remove(&s.l, i);
            break;
        case 2:
            if (s.l.n)
                (void)qcow2_bm_set_enabled(&s.l, i, !(s.l.bm[i].flags & QCOW2_BITMAP_AUTO));
            break;
        case 3:
            (void)qcow2_bm_set_range(&s.l, i, size / 32 * (arg & 31), size / 17 + (op & 0x80));
            break;
        case 4:
            (void)qcow2_bm_clear(&s.l, i);
            break;
        case 5:
            if (s.l.n && s.l.bm[(i + 1) % s.l.n].bits)
                (void)qcow2_bm_merge(&s.l, i, s.l.bm[(i + 1) % s.l.n].bits,
                                     s.l.bm[(i + 1) % s.l.n].granularity_bits);
            break;
        case 6:
            ret = store(&s);
            verify(&s, ret);
            unload(&s);
            if (load(&s) != 0)
                goto out;
            break;
        default:
            k = FI_OPS;
            break;
        }
    }
    if (dirty(&s)) {
        ret = store(&s);
        verify(&s, ret);
    }
    unload(&s);
out:
    free(m.p);
    return 0;
}

#include "fuzz_main.h"
