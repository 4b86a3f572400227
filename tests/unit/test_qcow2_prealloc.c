/*
 * formats/qcow2/prealloc.c's qcow2_prealloc_zeroize_flags() against the
 * oracle: an image made by qemu-img and qemu-io, zeroed here in memory
 * and by `qemu-io -c 'write -z [-u]'` (blk_pwrite_zeroes, so
 * qcow2_co_pwrite_zeroes -> qcow2_subcluster_zeroize), must come out
 * byte for byte the same file.  Discards punch holes, as qemu's file
 * driver does (qemu-io opens with BDRV_O_UNMAP: QCOW2_ZEROIZE_DISCARD).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "prealloc.h"
#include "qcow2_test_util.h"

static const struct qcow2_alloc_ops mops = {memfile_read, memfile_write, memfile_mem,
                                            memfile_discard, NULL};

/* qemu-img create -o opts (8 MiB), then qemu-io io; the file's bytes. */
static struct img oracle(const char *opts, const char *io)
{
    char cmd[2048];
    struct img im;
    uint8_t *copy;

    snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 -o %s x.qcow2 8M && qemu-io %s x.qcow2",
             opts, io);
    im = img_make(cmd, "x.qcow2");
    copy = malloc(im.len);
    cr_assert_not_null(copy);
    memcpy(copy, im.p, im.len);
    im.p = copy;
    return im;
}

/*
 * Zero [off, off + bytes) of the image made with (opts, setup) here with
 * flags, and by qemu-io with zero_cmd after setup; compare the files.
 */
static void zeroize_case(const char *opts, const char *setup, const char *zero_cmd, uint64_t off,
                         uint64_t bytes, unsigned flags, bool discards)
{
    char io[1024];
    struct img base, want;
    struct memfile f;
    struct qcow2_alloc a;
    struct qcow2_prealloc p;
    uint64_t *l1, l1_size, l1_off, size;
    uint32_t cb;

    base = oracle(opts, setup);
    snprintf(io, sizeof(io), "%s -c '%s'", setup, zero_cmd);
    want = oracle(opts, io);
    memfile_adopt(&f, base.p, base.len);
    cb = (uint32_t)get_be(f.p, 20, 4);
    size = get_be(f.p, 24, 8);
    l1_size = get_be(f.p, 36, 4);
    l1_off = get_be(f.p, 40, 8);
    l1 = calloc(l1_size, 8);
    cr_assert_not_null(l1);
    for (uint64_t i = 0; i < l1_size; i++)
        l1[i] = get_be(f.p, l1_off + i * 8, 8);
    /* refcount_order is a version 3 field: version 2 has 16-bit refcounts */
    cr_assert_eq(qcow2_alloc_init(&a, &mops, &f, cb,
                                  get_be(f.p, 4, 4) >= 3 ? (uint32_t)get_be(f.p, 96, 4) : 4,
                                  get_be(f.p, 48, 8), (uint32_t)get_be(f.p, 56, 4)),
                 0);
    memset(&p, 0, sizeof(p));
    p.a = &a;
    p.ops = &mops;
    p.truncate = memfile_prealloc_truncate;
    p.length = memfile_prealloc_length;
    p.opaque = &f;
    p.cluster_bits = cb;
    /* incompatible_features, a version 3 field: bit 4, extended L2 entries */
    p.extended_l2 = get_be(f.p, 4, 4) >= 3 && (get_be(f.p, 72, 8) & (1u << 4));
    p.ordered = true;
    p.write = true;
    p.l1 = l1;
    p.l1_size = l1_size;
    p.l1_offset = l1_off;
    cr_assert_eq(qcow2_prealloc_init(&p), 0);
    cr_assert_eq(
        qcow2_prealloc_zeroize_flags(&p, (uint32_t)get_be(f.p, 4, 4), off, bytes, size, flags), 0);
    cr_assert_eq(qcow2_prealloc_flush(&p), 0);
    cr_assert_eq(qcow2_alloc_flush(&a), 0);
    cr_assert_eq(f.discards > 0, discards, "discards: %d", f.discards);
    cr_assert_eq(f.len, want.len, "file length %zu, qemu %zu", f.len, want.len);
    for (size_t i = 0; i < f.len; i++)
        cr_assert_eq(f.p[i], want.p[i], "byte %zu differs", i);
    qcow2_prealloc_release(&p);
    qcow2_alloc_release(&a);
    free(l1);
    free(f.p);
    free(want.p);
}

/* MAY_UNMAP: the data clusters go (refcount 0, holes), the entries read as zeros. */
Test(qcow2_prealloc, zeroize_unmap)
{
    zeroize_case("cluster_size=65536", "-c 'write -P 7 0 1M'", "write -z -u 128k 512k", 128 << 10,
                 512 << 10, QCOW2_ZEROIZE_UNMAP | QCOW2_ZEROIZE_DISCARD | QCOW2_ZEROIZE_NO_BACKING,
                 true);
}

/* Without it the clusters stay, with the zero flag (ZERO_ALLOC). */
Test(qcow2_prealloc, zeroize_keep)
{
    zeroize_case("cluster_size=65536", "-c 'write -P 7 0 1M'", "write -z 128k 512k", 128 << 10,
                 512 << 10, QCOW2_ZEROIZE_DISCARD | QCOW2_ZEROIZE_NO_BACKING, false);
}

/* Unallocated clusters of an L2 table not yet there: the table is allocated. */
Test(qcow2_prealloc, zeroize_allocates_l2)
{
    zeroize_case("cluster_size=65536", "-c 'write -P 7 0 64k'", "write -z 4M 1M", 4 << 20, 1 << 20,
                 QCOW2_ZEROIZE_UNMAP | QCOW2_ZEROIZE_DISCARD | QCOW2_ZEROIZE_NO_BACKING, false);
}

/* Extended L2, 2 MiB clusters: a range ending inside a cluster zeroes only its subclusters. */
Test(qcow2_prealloc, zeroize_subcluster_tail)
{
    zeroize_case("cluster_size=2M,extended_l2=on", "-c 'write -P 7 0 4M'", "write -z -u 2M 192k",
                 2 << 20, 192 << 10,
                 QCOW2_ZEROIZE_UNMAP | QCOW2_ZEROIZE_DISCARD | QCOW2_ZEROIZE_NO_BACKING, false);
}

/* ... and one starting inside a cluster, running into the next: head subclusters, then whole. */
Test(qcow2_prealloc, zeroize_subcluster_head)
{
    zeroize_case("cluster_size=2M,extended_l2=on", "-c 'write -P 7 0 6M'", "write -z -u 1M 3M",
                 1 << 20, 3 << 20,
                 QCOW2_ZEROIZE_UNMAP | QCOW2_ZEROIZE_DISCARD | QCOW2_ZEROIZE_NO_BACKING, true);
}

/* Version 2 without a backing file: qcow2_cluster_discard() clears the entries. */
Test(qcow2_prealloc, zeroize_v2_discards)
{
    zeroize_case("compat=0.10", "-c 'write -P 7 0 1M'", "write -z -u 128k 512k", 128 << 10,
                 512 << 10, QCOW2_ZEROIZE_UNMAP | QCOW2_ZEROIZE_DISCARD | QCOW2_ZEROIZE_NO_BACKING,
                 true);
}

/* Compressed clusters are dropped even without MAY_UNMAP. */
Test(qcow2_prealloc, zeroize_compressed)
{
    /* One cluster per command: qemu-io's compressed writes of more run in parallel. */
    zeroize_case("cluster_size=65536",
                 "-c 'write -c -P 7 0 64k' -c 'write -c -P 8 64k 64k' -c 'write -P 9 128k 64k'",
                 "write -z 0 192k", 0, 192 << 10, QCOW2_ZEROIZE_DISCARD | QCOW2_ZEROIZE_NO_BACKING,
                 true);
}
