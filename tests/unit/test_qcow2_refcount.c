/*
 * Refcount entry accessors, pinned to QEMU's on-disk layout.
 *
 * Known-answer tests spell out the byte layout qcow2.txt and QEMU use
 * (sub-byte entries LSB first, wider ones big-endian).  The qemu tests go
 * further: for every refcount width, qemu-img makes an image, our getter
 * reads its first refcount block, our setter rewrites every entry to a
 * fresh value, and `qemu-img check` then names each cluster with the
 * refcount QEMU read (must be what we wrote) and the reference count it
 * computed from the metadata (must be what we read from the clean image).
 */
#include <criterion/criterion.h>
#include "test_sh.h"
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "refcount.h"

/* --- pure tests --- */

Test(qcow2_refcount, max)
{
    cr_assert_eq(qcow2_refcount_max(0), 1);
    cr_assert_eq(qcow2_refcount_max(1), 3);
    cr_assert_eq(qcow2_refcount_max(2), 15);
    cr_assert_eq(qcow2_refcount_max(3), 255);
    cr_assert_eq(qcow2_refcount_max(4), 65535);
    cr_assert_eq(qcow2_refcount_max(5), 4294967295u);
    cr_assert_eq(qcow2_refcount_max(6), UINT64_MAX);
    cr_assert(qcow2_refcount_fits(65535, 4));
    cr_assert_not(qcow2_refcount_fits(65536, 4));
    cr_assert(qcow2_refcount_fits(UINT64_MAX, 6));
}

Test(qcow2_refcount, block_entries)
{
    /* 64 KiB clusters with 16-bit refcounts: 32768 entries (qcow2.txt). */
    cr_assert_eq(qcow2_refcount_block_entries(16, 4), 32768);
    cr_assert_eq(qcow2_refcount_block_entries(9, 0), 4096);
    cr_assert_eq(qcow2_refcount_block_entries(9, 6), 64);
    cr_assert_eq(qcow2_refcount_block_entries(21, 6), 262144);
}

/* Byte layouts written out by hand from the spec. */
Test(qcow2_refcount, known_layouts)
{
    uint8_t b[16];

    memset(b, 0, sizeof(b));
    qcow2_refcount_set(b, 0, 0, 1);
    qcow2_refcount_set(b, 3, 0, 1);
    qcow2_refcount_set(b, 9, 0, 1);
    cr_assert_eq(b[0], 0x09);
    cr_assert_eq(b[1], 0x02);

    memset(b, 0, sizeof(b));
    qcow2_refcount_set(b, 1, 1, 3);
    qcow2_refcount_set(b, 2, 1, 1);
    qcow2_refcount_set(b, 7, 1, 2);
    cr_assert_eq(b[0], 0x1c);
    cr_assert_eq(b[1], 0x80);

    memset(b, 0, sizeof(b));
    qcow2_refcount_set(b, 0, 2, 0x3);
    qcow2_refcount_set(b, 1, 2, 0xa);
    cr_assert_eq(b[0], 0xa3);

    memset(b, 0, sizeof(b));
    qcow2_refcount_set(b, 1, 3, 0x7f);
    cr_assert_eq(b[1], 0x7f);

    memset(b, 0, sizeof(b));
    qcow2_refcount_set(b, 1, 4, 0x1234);
    cr_assert_eq(b[2], 0x12);
    cr_assert_eq(b[3], 0x34);

    memset(b, 0, sizeof(b));
    qcow2_refcount_set(b, 1, 5, 0x89abcdef);
    cr_assert_arr_eq(b + 4, ((uint8_t[]){0x89, 0xab, 0xcd, 0xef}), 4);

    memset(b, 0, sizeof(b));
    qcow2_refcount_set(b, 1, 6, 0x0123456789abcdefull);
    cr_assert_arr_eq(b + 8, ((uint8_t[]){0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}), 8);
    cr_assert_eq(qcow2_refcount_get(b, 1, 6), 0x0123456789abcdefull);
    cr_assert_eq(qcow2_refcount_get(b, 0, 6), 0);
}

/* Set/get round trip at every width, with neighbours left intact. */
Test(qcow2_refcount, round_trip_every_width)
{
    enum {
        BLOCK = 512
    };
    static uint8_t block[BLOCK], ref[BLOCK];

    for (unsigned order = 0; order <= QCOW2_REFCOUNT_ORDER_MAX; order++) {
        uint64_t n = qcow2_refcount_block_entries(9, order);
        uint64_t max = qcow2_refcount_max(order);
        uint64_t probes[] = {0, 1, 2, n / 2 - 1, n / 2, n - 2, n - 1};
        uint64_t values[] = {0, 1, max, max - 1, max / 2, max / 3 + 1};

        for (size_t pi = 0; pi < sizeof(probes) / sizeof(probes[0]); pi++) {
            for (size_t vi = 0; vi < sizeof(values) / sizeof(values[0]); vi++) {
                for (int fill = 0; fill <= 0xff; fill += 0xff) {
                    uint64_t i = probes[pi];

                    memset(block, fill, BLOCK);
                    memcpy(ref, block, BLOCK);
                    qcow2_refcount_set(block, i, order, values[vi]);
                    cr_assert_eq(qcow2_refcount_get(block, i, order), values[vi],
                                 "order %u index %" PRIu64, order, i);
                    for (uint64_t j = 0; j < n; j++) {
                        if (j != i) {
                            cr_assert_eq(qcow2_refcount_get(block, j, order),
                                         qcow2_refcount_get(ref, j, order));
                        }
                    }
                }
            }
        }
    }
}

Test(qcow2_refcount, oversized_value_stays_in_its_entry)
{
    uint8_t b[2] = {0, 0};

    qcow2_refcount_set(b, 1, 1, 0xff);
    cr_assert_eq(b[0], 0x0c);
    cr_assert_eq(b[1], 0x00);
}

/* --- against qemu-img --- */

static char tmpdir[64];
static char img[128];

static void setup(void)
{
    if (sh("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1") != 0) {
        cr_skip_test("qemu-img or qemu-io not installed");
    }
    strcpy(tmpdir, "/tmp/instar-rc-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(img, sizeof(img), "%s/t.qcow2", tmpdir);
}

static void teardown(void)
{
    if (tmpdir[0]) {
        sh("rm -rf '%s'", tmpdir);
    }
}

static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint8_t *slurp(size_t *len)
{
    FILE *f = fopen(img, "rb");
    uint8_t *buf;
    long n;

    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A refcount value for entry i that fills the width and differs from old. */
static uint64_t fresh_value(uint64_t i, unsigned order, uint64_t old)
{
    uint64_t v = (0x8123456789abcdefull ^ (i * 0x9e3779b97f4a7c15ull)) & qcow2_refcount_max(order);
    return v == old ? v ^ 1 : v;
}

static void check_width(unsigned order)
{
    unsigned bits = 1u << order;
    size_t len;
    uint8_t *file, *orig, *mod;
    uint64_t cluster_bits, cluster_size, reftable, refblock, entries, nb;
    uint64_t *want_read, *want_ref;
    bool *seen;
    char *out, *line;

    cr_assert_eq(
        sh("qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=%u '%s' 1M", bits, img),
        0);
    cr_assert_eq(sh("qemu-io -c 'write -P 1 0 2k' -c 'write -P 2 100k 512' "
                    "-c 'write -P 3 700k 1k' '%s' >/dev/null",
                    img),
                 0);
    if (bits >= 2) {
        /* A snapshot shares clusters: refcounts of 2 appear. */
        cr_assert_eq(sh("qemu-img snapshot -c s1 '%s'", img), 0);
        cr_assert_eq(sh("qemu-io -c 'write -P 4 0 512' '%s' >/dev/null", img), 0);
    }
    cr_assert_eq(sh("qemu-img check -q '%s'", img), 0, "baseline image not clean");

    file = slurp(&len);
    cluster_bits = be(file + 20, 4);
    cr_assert_eq(cluster_bits, 9);
    cr_assert_eq(be(file + 96, 4), order, "refcount_order in the header");
    cluster_size = 1ull << cluster_bits;
    reftable = be(file + 48, 8);
    refblock = be(file + reftable, 8) & ~0x1ffull;
    cr_assert_neq(refblock, 0);
    entries = qcow2_refcount_block_entries(9, order);
    nb = len / cluster_size;
    cr_assert_lt(nb, entries, "image needs more than one refcount block");

    orig = malloc(cluster_size);
    mod = malloc(cluster_size);
    memcpy(orig, file + refblock, cluster_size);
    memcpy(mod, orig, cluster_size);

    /* Cluster 0 (the header) has refcount 1; its raw bytes per width. */
    if (bits < 8) {
        cr_assert_eq(orig[0] & ((1u << bits) - 1), 1);
    } else {
        for (unsigned k = 0; k + 1 < bits / 8; k++) {
            cr_assert_eq(orig[k], 0);
        }
        cr_assert_eq(orig[bits / 8 - 1], 1);
    }
    /* Entries for clusters past the end of the file are zero. */
    for (uint64_t i = nb; i < entries; i++) {
        cr_assert_eq(qcow2_refcount_get(orig, i, order), 0);
    }

    want_read = calloc(nb, sizeof(*want_read));
    want_ref = calloc(nb, sizeof(*want_ref));
    seen = calloc(nb, sizeof(*seen));
    for (uint64_t i = 0; i < nb; i++) {
        want_ref[i] = qcow2_refcount_get(orig, i, order);
        want_read[i] = fresh_value(i, order, want_ref[i]);
        qcow2_refcount_set(mod, i, order, want_read[i]);
    }
    for (uint64_t i = 0; i < nb; i++) {
        cr_assert_eq(qcow2_refcount_get(mod, i, order), want_read[i]);
    }
    for (uint64_t i = nb; i < entries; i++) {
        cr_assert_eq(qcow2_refcount_get(mod, i, order), 0);
    }

    FILE *f = fopen(img, "r+b");
    cr_assert_not_null(f);
    fseek(f, (long)refblock, SEEK_SET);
    cr_assert_eq(fwrite(mod, 1, cluster_size, f), cluster_size);
    fclose(f);

    /* Every cluster in the file now mismatches; qemu reports each one. */
    out = sh_out("qemu-img check '%s' 2>&1", img);
    for (line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        uint64_t i, r, ref;
        char word[16];

        if (sscanf(line, "%15s cluster %" SCNu64 " refcount=%" SCNu64 " reference=%" SCNu64, word,
                   &i, &r, &ref) != 4) {
            continue;
        }
        cr_assert_lt(i, nb, "%s", line);
        cr_assert_eq(r, want_read[i], "qemu read what we wrote: %s", line);
        cr_assert_eq(ref, want_ref[i], "we read what qemu wrote: %s", line);
        seen[i] = true;
    }
    for (uint64_t i = 0; i < nb; i++) {
        cr_assert(seen[i], "qemu-img check did not report cluster %" PRIu64, i);
    }

    free(out);
    free(seen);
    free(want_ref);
    free(want_read);
    free(mod);
    free(orig);
    free(file);
}

TestSuite(qcow2_refcount_qemu, .init = setup, .fini = teardown);

Test(qcow2_refcount_qemu, bits1)
{
    check_width(0);
}

Test(qcow2_refcount_qemu, bits2)
{
    check_width(1);
}

Test(qcow2_refcount_qemu, bits4)
{
    check_width(2);
}

Test(qcow2_refcount_qemu, bits8)
{
    check_width(3);
}

Test(qcow2_refcount_qemu, bits16)
{
    check_width(4);
}

Test(qcow2_refcount_qemu, bits32)
{
    check_width(5);
}

Test(qcow2_refcount_qemu, bits64)
{
    check_width(6);
}
