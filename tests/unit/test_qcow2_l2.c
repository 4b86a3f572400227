/*
 * L1/L2 entry decoding.
 *
 * Known-answer tests spell entries out bit by bit from qcow2.txt.  The
 * qemu tests walk images qemu-io wrote (standard and extended L2) and
 * compare every (sub)cluster's decoded type and host offset with
 * `qemu-img map --output=json`; compressed ranges are checked by inflating
 * them (python3's zlib) back to what qemu-io wrote; problem flags are
 * compared with the complaints of `qemu-img check` on patched entries.
 */
#include <criterion/criterion.h>
#include "test_sh.h"
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "l2.h"

static const struct qcow2_l2_geom std64k = {.cluster_bits = 16};
static const struct qcow2_l2_geom ext64k = {.cluster_bits = 16, .extended_l2 = true};

/* --- known answers from the spec --- */

Test(qcow2_l2, l1_entry)
{
    struct qcow2_l1_entry e;

    qcow2_l1_decode(0x8000000000050000ull, 16, &e);
    cr_assert_eq(e.l2_offset, 0x50000);
    cr_assert(e.copied);
    cr_assert_eq(e.problems, 0);

    qcow2_l1_decode(0x0000000000050200ull, 16, &e);
    cr_assert_eq(e.l2_offset, 0x50200);
    cr_assert_eq(e.problems, QCOW2_L1_BAD_UNALIGNED);
    qcow2_l1_decode(0x0000000000050200ull, 9, &e);
    cr_assert_eq(e.problems, 0);

    qcow2_l1_decode(0x0100000000050001ull, 16, &e);
    cr_assert_eq(e.l2_offset, 0x50000);
    cr_assert_eq(e.problems, QCOW2_L1_BAD_RESERVED);
    qcow2_l1_decode(0x4000000000000000ull, 16, &e);
    cr_assert_eq(e.problems, QCOW2_L1_BAD_RESERVED);

    uint8_t t[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0x05, 0, 0};
    cr_assert_eq(qcow2_l1_load(t, 1), 0x8000000000050000ull);
}

Test(qcow2_l2, standard_types)
{
    struct qcow2_l2_entry e;

    qcow2_l2_decode(0, 0, &std64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_UNALLOCATED);
    cr_assert_eq(e.problems, 0);

    qcow2_l2_decode(0x8000000000070000ull, 0, &std64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_NORMAL);
    cr_assert_eq(e.host_offset, 0x70000);
    cr_assert(e.copied);

    qcow2_l2_decode(1, 0, &std64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_ZERO_PLAIN);
    cr_assert_eq(e.host_offset, 0);

    qcow2_l2_decode(0x8000000000070001ull, 0, &std64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_ZERO_ALLOC);
    cr_assert_eq(e.host_offset, 0x70000);
    cr_assert_eq(e.problems, 0);
    cr_assert_not(qcow2_l2_holds_data(&e, &std64k));

    /* COPIED with offset 0 is allocated only with a data file. */
    qcow2_l2_decode(0x8000000000000000ull, 0, &std64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_UNALLOCATED);
    struct qcow2_l2_geom df = {.cluster_bits = 16, .data_file = true};
    qcow2_l2_decode(0x8000000000000000ull, 0, &df, &e);
    cr_assert_eq(e.type, QCOW2_L2_NORMAL);
    cr_assert_eq(e.host_offset, 0);

    /* Bitmap ignored without extended L2. */
    qcow2_l2_decode(0x70000, ~0ull, &std64k, &e);
    cr_assert_eq(e.bitmap, 0);
    cr_assert_eq(e.problems, 0);
}

Test(qcow2_l2, standard_problems)
{
    struct qcow2_l2_entry e;

    qcow2_l2_decode(0x0000000000070002ull, 0, &std64k, &e);
    cr_assert_eq(e.problems, QCOW2_L2_BAD_RESERVED);
    qcow2_l2_decode(0x2000000000070000ull, 0, &std64k, &e);
    cr_assert_eq(e.problems, QCOW2_L2_BAD_RESERVED);
    /* Bits 1-8 set, offset 0: still unallocated, still reserved bits. */
    qcow2_l2_decode(0x1fe, 0, &std64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_UNALLOCATED);
    cr_assert_eq(e.problems, QCOW2_L2_BAD_RESERVED);

    qcow2_l2_decode(0x0000000000070200ull, 0, &std64k, &e);
    cr_assert_eq(e.problems, QCOW2_L2_BAD_UNALIGNED);
    cr_assert(qcow2_l2_holds_data(&e, &std64k));
    qcow2_l2_decode(0x0000000000070201ull, 0, &std64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_ZERO_ALLOC);
    cr_assert_eq(e.problems, QCOW2_L2_BAD_UNALIGNED);
}

/*
 * Compressed descriptor, 64 KiB clusters: x = 62 - 8 = 54, so the offset is
 * bits 0-53 and the extra sector count bits 54-61.
 */
Test(qcow2_l2, compressed_descriptor)
{
    struct qcow2_l2_entry e;
    uint64_t raw = QCOW2_OFLAG_COMPRESSED | (3ull << 54) | 0x50123;

    qcow2_l2_decode(raw, 0, &std64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_COMPRESSED);
    cr_assert_eq(e.host_offset, 0x50123);
    cr_assert_eq(e.nb_csectors, 4);
    cr_assert_eq(e.csize, 4 * 512 - 0x123);
    cr_assert_eq(e.problems, 0);

    /* Reserved-bit and zero-flag rules do not apply to compressed entries. */
    qcow2_l2_decode(raw | 1, 0, &std64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_COMPRESSED);
    cr_assert_eq(e.problems, 0);

    qcow2_l2_decode(raw | QCOW2_OFLAG_COPIED, 0, &std64k, &e);
    cr_assert_eq(e.problems, QCOW2_L2_BAD_COMPRESSED_COPIED);
    struct qcow2_l2_geom df = {.cluster_bits = 16, .data_file = true};
    qcow2_l2_decode(raw, 0, &df, &e);
    cr_assert_eq(e.problems, QCOW2_L2_BAD_COMPRESSED_DATA_FILE);

    /* Largest count at 2 MiB clusters: x = 49, 13 count bits. */
    struct qcow2_l2_geom big = {.cluster_bits = 21};
    qcow2_l2_decode(QCOW2_OFLAG_COMPRESSED | (0x1fffull << 49) | 0x200, 0, &big, &e);
    cr_assert_eq(e.host_offset, 0x200);
    cr_assert_eq(e.nb_csectors, 8192);
    cr_assert_eq(e.csize, 8192 * 512);

    /* 512-byte clusters: x = 61, no count bits; offset bits 56-60 must be 0. */
    struct qcow2_l2_geom tiny = {.cluster_bits = 9};
    qcow2_l2_decode(QCOW2_OFLAG_COMPRESSED | 0x1234, 0, &tiny, &e);
    cr_assert_eq(e.host_offset, 0x1234);
    cr_assert_eq(e.nb_csectors, 1);
    cr_assert_eq(e.csize, 512 - 0x34);
    cr_assert_eq(e.problems, 0);
    qcow2_l2_decode(QCOW2_OFLAG_COMPRESSED | (1ull << 60) | 0x1234, 0, &tiny, &e);
    cr_assert_eq(e.host_offset, (1ull << 60) | 0x1234);
    cr_assert_eq(e.problems, QCOW2_L2_SPEC_COMPRESSED_HIGH);
}

Test(qcow2_l2, extended_types_and_subclusters)
{
    struct qcow2_l2_entry e;
    uint64_t load_raw, load_bm;
    uint8_t t[32] = {0};

    /* Subclusters 0 and 1 allocated, 2 zero, the rest unallocated. */
    t[16 + 5] = 0x07;
    t[24 + 3] = 0x04;
    t[16 + 15] = 0x03;
    qcow2_l2_load(t, 1, true, &load_raw, &load_bm);
    cr_assert_eq(load_raw, 0x70000);
    cr_assert_eq(load_bm, 0x0000000400000003ull);
    qcow2_l2_load(t, 3, false, &load_raw, &load_bm);
    cr_assert_eq(load_raw, 0x0000000400000003ull);
    cr_assert_eq(load_bm, 0);

    qcow2_l2_decode(0x70000, 0x0000000400000003ull, &ext64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_NORMAL);
    cr_assert_eq(e.problems, 0);
    cr_assert_eq(qcow2_l2_subcluster_type(&e, &ext64k, 0), QCOW2_SC_NORMAL);
    cr_assert_eq(qcow2_l2_subcluster_type(&e, &ext64k, 1), QCOW2_SC_NORMAL);
    cr_assert_eq(qcow2_l2_subcluster_type(&e, &ext64k, 2), QCOW2_SC_ZERO_ALLOC);
    cr_assert_eq(qcow2_l2_subcluster_type(&e, &ext64k, 31), QCOW2_SC_UNALLOCATED_ALLOC);

    /* The zero flag means nothing with extended entries. */
    qcow2_l2_decode(1, 0xffffffff00000000ull, &ext64k, &e);
    cr_assert_eq(e.type, QCOW2_L2_UNALLOCATED);
    cr_assert_eq(e.problems, QCOW2_L2_SPEC_EXTENDED_ZERO);
    cr_assert_eq(qcow2_l2_subcluster_type(&e, &ext64k, 5), QCOW2_SC_ZERO_PLAIN);
    qcow2_l2_decode(0, 0, &ext64k, &e);
    cr_assert_eq(qcow2_l2_subcluster_type(&e, &ext64k, 5), QCOW2_SC_UNALLOCATED_PLAIN);

    /* Invalid combinations. */
    qcow2_l2_decode(0x70000, 0x0000000100000001ull, &ext64k, &e);
    cr_assert_eq(e.problems, QCOW2_L2_BAD_BITMAP_CONFLICT);
    cr_assert_eq(qcow2_l2_subcluster_type(&e, &ext64k, 9), QCOW2_SC_INVALID);
    qcow2_l2_decode(0, 0x0000000000000100ull, &ext64k, &e);
    cr_assert_eq(e.problems, QCOW2_L2_BAD_UNALLOC_BITMAP);
    cr_assert_eq(qcow2_l2_subcluster_type(&e, &ext64k, 0), QCOW2_SC_INVALID);
    qcow2_l2_decode(QCOW2_OFLAG_COMPRESSED | 0x50000, 1, &ext64k, &e);
    cr_assert_eq(e.problems, QCOW2_L2_BAD_COMPRESSED_BITMAP);
    cr_assert_eq(qcow2_l2_subcluster_type(&e, &ext64k, 0), QCOW2_SC_COMPRESSED);
}

/* --- against qemu-img --- */

static char tmpdir[64];
static char img[128];

static void setup(void)
{
    if (sh("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1 && "
           "python3 -c 'import zlib' 2>/dev/null") != 0) {
        cr_skip_test("qemu-img, qemu-io or python3 not installed");
    }
    strcpy(tmpdir, "/tmp/instar-l2-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(img, sizeof(img), "%s/t.qcow2", tmpdir);
}

static void teardown(void)
{
    if (tmpdir[0]) {
        sh("rm -rf '%s'", tmpdir);
    }
}

TestSuite(qcow2_l2_qemu, .init = setup, .fini = teardown);

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

static void patch_be64(uint64_t off, uint64_t v)
{
    uint8_t b[8];
    FILE *f = fopen(img, "r+b");

    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    }
    cr_assert_not_null(f);
    fseek(f, (long)off, SEEK_SET);
    cr_assert_eq(fwrite(b, 1, 8, f), 8);
    fclose(f);
}

struct walk {
    uint8_t *file;
    size_t len;
    struct qcow2_l2_geom geom;
    uint64_t cluster_size, l1_offset, l1_size, entry_size, l2_entries;
};

static void walk_open(struct walk *w)
{
    w->file = slurp(&w->len);
    w->geom.cluster_bits = (unsigned)be(w->file + 20, 4);
    w->geom.extended_l2 = (be(w->file + 72, 8) >> 4) & 1;
    w->geom.data_file = false;
    w->cluster_size = 1ull << w->geom.cluster_bits;
    w->l1_size = be(w->file + 36, 4);
    w->l1_offset = be(w->file + 40, 8);
    w->entry_size = w->geom.extended_l2 ? 16 : 8;
    w->l2_entries = w->cluster_size / w->entry_size;
}

/* Decodes guest cluster c; returns the file offset of its L2 entry, or 0. */
static uint64_t walk_entry(struct walk *w, uint64_t c, struct qcow2_l2_entry *e)
{
    struct qcow2_l1_entry l1;
    uint64_t raw, bm;
    uint64_t i1 = c / w->l2_entries, i2 = c % w->l2_entries;

    cr_assert_lt(i1, w->l1_size);
    qcow2_l1_decode(qcow2_l1_load(w->file + w->l1_offset, i1), w->geom.cluster_bits, &l1);
    cr_assert_eq(l1.problems, 0);
    if (!l1.l2_offset) {
        qcow2_l2_decode(0, 0, &w->geom, e);
        return 0;
    }
    cr_assert_leq(l1.l2_offset + w->cluster_size, w->len);
    qcow2_l2_load(w->file + l1.l2_offset, i2, w->geom.extended_l2, &raw, &bm);
    qcow2_l2_decode(raw, bm, &w->geom, e);
    return l1.l2_offset + i2 * w->entry_size;
}

/*
 * What qemu-img map reports for a (sub)cluster of each type, in an image
 * without a backing file (QEMU's qcow2_co_block_status()).
 */
static void map_flags(enum qcow2_subcluster_type t, bool *present, bool *zero, bool *data,
                      bool *has_offset)
{
    *present = *zero = *data = *has_offset = false;
    switch (t) {
    case QCOW2_SC_NORMAL:
        *present = *data = *has_offset = true;
        break;
    case QCOW2_SC_COMPRESSED:
        *present = *data = true;
        break;
    case QCOW2_SC_ZERO_ALLOC:
        *present = *zero = *has_offset = true;
        break;
    case QCOW2_SC_ZERO_PLAIN:
        *present = *zero = true;
        break;
    case QCOW2_SC_UNALLOCATED_ALLOC:
        *zero = *has_offset = true;
        break;
    case QCOW2_SC_UNALLOCATED_PLAIN:
        *zero = true;
        break;
    case QCOW2_SC_INVALID:
        cr_assert_fail("invalid subcluster in a qemu-made image");
    }
}

/* Every (sub)cluster of the image agrees with qemu-img map; returns #compressed seen. */
static int compare_with_map(void)
{
    struct walk w;
    char *map = sh_out("qemu-img map --output=json '%s'", img);
    char *line;
    int compressed = 0;

    walk_open(&w);
    uint64_t unit = w.geom.extended_l2 ? w.cluster_size / QCOW2_SUBCLUSTERS : w.cluster_size;
    for (line = strtok(map, "\n"); line; line = strtok(NULL, "\n")) {
        uint64_t start, length, offset = 0;
        int depth;
        char p[8], z[8], d[8];
        int n = sscanf(line,
                       "%*[[{ ]\"start\": %" SCNu64 ", \"length\": %" SCNu64
                       ", \"depth\": %d, \"present\": %7[a-z], \"zero\": %7[a-z], \"data\": "
                       "%7[a-z], \"offset\": %" SCNu64,
                       &start, &length, &depth, p, z, d, &offset);
        cr_assert_geq(n, 6, "unparsed map line: %s", line);
        for (uint64_t g = start; g < start + length; g += unit) {
            struct qcow2_l2_entry e;
            bool present, zero, data, has_offset;
            unsigned sc = (unsigned)((g % w.cluster_size) / unit);

            walk_entry(&w, g / w.cluster_size, &e);
            cr_assert_eq(e.problems, 0, "guest %" PRIu64, g);
            enum qcow2_subcluster_type t = qcow2_l2_subcluster_type(&e, &w.geom, sc);
            map_flags(t, &present, &zero, &data, &has_offset);
            cr_assert_eq(present, strcmp(p, "true") == 0, "guest %" PRIu64 ": %s", g, line);
            cr_assert_eq(zero, strcmp(z, "true") == 0, "guest %" PRIu64 ": %s", g, line);
            cr_assert_eq(data, strcmp(d, "true") == 0, "guest %" PRIu64 ": %s", g, line);
            cr_assert_eq(has_offset, n == 7, "guest %" PRIu64 ": %s", g, line);
            if (has_offset) {
                cr_assert_eq(e.host_offset + sc * unit, offset + (g - start),
                             "guest %" PRIu64 ": %s", g, line);
            }
            if (t == QCOW2_SC_COMPRESSED && (g % w.cluster_size) == 0) {
                compressed++;
            }
        }
    }
    free(map);
    free(w.file);
    return compressed;
}

/* The compressed range of guest cluster c inflates to cluster_size bytes of pattern. */
static void check_compressed(uint64_t c, int pattern)
{
    struct walk w;
    struct qcow2_l2_entry e;
    char *out;

    walk_open(&w);
    walk_entry(&w, c, &e);
    cr_assert_eq(e.type, QCOW2_L2_COMPRESSED);
    cr_assert_leq(e.host_offset + e.csize, w.len);
    out = sh_out("python3 -c 'import sys,zlib; f=open(sys.argv[1],\"rb\"); f.seek(%" PRIu64 "); "
                 "d=zlib.decompressobj(-12).decompress(f.read(%u)); "
                 "print(len(d), len(set(d)), d[0])' '%s'",
                 e.host_offset, e.csize, img);
    char want[64];
    snprintf(want, sizeof(want), "%" PRIu64 " 1 %d\n", w.cluster_size, pattern);
    cr_assert_str_eq(out, want);
    free(out);
    free(w.file);
}

Test(qcow2_l2_qemu, standard_entries_match_map)
{
    cr_assert_eq(sh("qemu-img create -q -f qcow2 '%s' 4M", img), 0);
    cr_assert_eq(sh("qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 64k 64k' -c 'write -z 64k 64k' "
                    "-c 'write -z 128k 64k' -c 'write -c -P 3 192k 64k' -c 'write -P 5 256k 128k' "
                    "-c 'write -z -u 320k 64k' -c 'write -c -P 7 3M 64k' "
                    "-c 'write -c -P 9 3136k 64k' '%s' >/dev/null",
                    img),
                 0);
    cr_assert_eq(compare_with_map(), 3);
    check_compressed(3, 3);
    check_compressed(48, 7);
    check_compressed(49, 9);
}

Test(qcow2_l2_qemu, small_clusters_compressed)
{
    cr_assert_eq(sh("qemu-img create -q -f qcow2 -o cluster_size=512 '%s' 256k", img), 0);
    cr_assert_eq(sh("qemu-io -c 'write -c -P 1 0 512' -c 'write -c -P 2 512 512' "
                    "-c 'write -P 3 1k 512' -c 'write -c -P 4 100k 512' '%s' >/dev/null",
                    img),
                 0);
    cr_assert_eq(compare_with_map(), 3);
    check_compressed(0, 1);
    check_compressed(1, 2);
    check_compressed(200, 4);
}

Test(qcow2_l2_qemu, extended_entries_match_map)
{
    cr_assert_eq(sh("qemu-img create -q -f qcow2 -o extended_l2=on '%s' 4M", img), 0);
    cr_assert_eq(sh("qemu-io -c 'write -P 1 0 4k' -c 'write -z 8k 2k' -c 'write -P 2 64k 64k' "
                    "-c 'write -z 70k 4k' -c 'write -z 256k 64k' -c 'write -c -P 6 512k 64k' "
                    "-c 'write -P 7 1M 2k' -c 'write -P 8 1086k 2k' -c 'discard 1M 2k' '%s' "
                    ">/dev/null",
                    img),
                 0);
    cr_assert_eq(compare_with_map(), 1);
    check_compressed(8, 6);
}

/*
 * Problem flags against `qemu-img check`: each patched entry must draw
 * exactly the complaint(s) our flags name.
 */
static const struct {
    unsigned flag;
    const char *text;
} check_text[] = {
    {QCOW2_L2_BAD_RESERVED, "ERROR found l2 entry with reserved bits set"},
    {QCOW2_L2_BAD_UNALIGNED, "cluster is not properly aligned; L2 entry corrupted"},
    {QCOW2_L2_BAD_COMPRESSED_COPIED, "copied flag must never be set for compressed clusters"},
    {QCOW2_L2_BAD_COMPRESSED_BITMAP, "with non-zero subcluster allocation bitmap"},
    {QCOW2_L2_BAD_BITMAP_CONFLICT, "Allocated cluster has corrupted subcluster allocation bitmap"},
    {QCOW2_L2_BAD_UNALLOC_BITMAP, "Unallocated cluster has non-zero subcluster allocation map"},
};

static void expect_check_agrees(uint64_t c, uint64_t raw, uint64_t bitmap, bool set_bitmap)
{
    struct walk w;
    struct qcow2_l2_entry e;
    uint64_t at;
    char *out;

    walk_open(&w);
    at = walk_entry(&w, c, &e);
    cr_assert_neq(at, 0);
    free(w.file);
    patch_be64(at, raw);
    if (set_bitmap) {
        patch_be64(at + 8, bitmap);
    }
    walk_open(&w);
    walk_entry(&w, c, &e);
    free(w.file);

    out = sh_out("qemu-img check '%s' 2>&1", img);
    for (size_t i = 0; i < sizeof(check_text) / sizeof(check_text[0]); i++) {
        bool said = strstr(out, check_text[i].text) != NULL;
        cr_assert_eq(said, (e.problems & check_text[i].flag) != 0,
                     "entry %016" PRIx64 " bitmap %016" PRIx64 " flags %x vs check:\n%s", raw,
                     bitmap, e.problems, out);
    }
    if (e.problems & QCOW2_L2_BAD_UNALIGNED) {
        const char *word =
            qcow2_l2_holds_data(&e, &w.geom) ? "Data cluster" : "Preallocated cluster";
        cr_assert_not_null(strstr(out, word), "%s", out);
    }
    free(out);
}

Test(qcow2_l2_qemu, standard_problems_match_check)
{
    uint64_t host;
    struct walk w;
    struct qcow2_l2_entry e;

    cr_assert_eq(sh("qemu-img create -q -f qcow2 '%s' 1M", img), 0);
    cr_assert_eq(
        sh("qemu-io -c 'write -P 1 0 64k' -c 'write -c -P 2 64k 64k' '%s' >/dev/null", img), 0);
    walk_open(&w);
    walk_entry(&w, 0, &e);
    host = e.host_offset;
    walk_entry(&w, 1, &e);
    uint64_t craw = e.raw;
    free(w.file);

    /* Reserved bit 1, then bit 56, on a data cluster. */
    expect_check_agrees(0, QCOW2_OFLAG_COPIED | host | 0x2, 0, false);
    expect_check_agrees(0, QCOW2_OFLAG_COPIED | host | (1ull << 56), 0, false);
    /* Unaligned data and preallocated-zero clusters. */
    expect_check_agrees(0, QCOW2_OFLAG_COPIED | (host + 0x200), 0, false);
    expect_check_agrees(0, QCOW2_OFLAG_COPIED | (host + 0x200) | 1, 0, false);
    /* Back to sane, then a compressed entry with COPIED. */
    expect_check_agrees(0, QCOW2_OFLAG_COPIED | host, 0, false);
    expect_check_agrees(1, craw | QCOW2_OFLAG_COPIED, 0, false);
}

Test(qcow2_l2_qemu, extended_problems_match_check)
{
    struct walk w;
    struct qcow2_l2_entry e;

    cr_assert_eq(sh("qemu-img create -q -f qcow2 -o extended_l2=on '%s' 1M", img), 0);
    cr_assert_eq(sh("qemu-io -c 'write -P 1 0 64k' -c 'write -c -P 2 64k 64k' "
                    "-c 'write -z 128k 2k' '%s' >/dev/null",
                    img),
                 0);
    walk_open(&w);
    walk_entry(&w, 0, &e);
    uint64_t draw = e.raw;
    walk_entry(&w, 1, &e);
    uint64_t craw = e.raw;
    walk_entry(&w, 2, &e);
    cr_assert_eq(e.type, QCOW2_L2_UNALLOCATED);
    free(w.file);

    expect_check_agrees(0, draw, 0x0000000100000001ull, true);
    expect_check_agrees(0, draw, 0x00000000ffffffffull, true);
    expect_check_agrees(1, craw, 0x0000000000000001ull, true);
    expect_check_agrees(1, craw, 0, true);
    expect_check_agrees(2, 0, 0x0000000000000004ull, true);
    /* Bit 0 with extended entries: spec forbids it, qemu-img check is silent. */
    expect_check_agrees(2, 1, 0x0000000100000000ull, true);
}
