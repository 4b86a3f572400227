/*
 * The qcow2 repair library (qcow2_repair in formats/qcow2/check.c)
 * against the oracle.
 *
 * Every image of the corrupt-image generator (tests/corrupt_check.py:
 * qemu-made images, patched) is repaired twice per mode (-r leaks, -r
 * all): by "qemu-img check -r MODE" on one copy and by the library on
 * the same bytes in memory, with the re-validation and header finish the
 * guest planner does.  Then, from the oracle's own runs:
 *  - the library's lines plus those of a read-only check of its result
 *    (what qemu-img's "Double checking" prints) equal qemu-img's stderr;
 *  - "qemu-img check" gives both repaired copies the same exit code;
 *  - "qemu-img compare" finds the guest data of the two copies equal;
 *  - writes never go past the write limit.
 * Where instar deliberately differs (refusals, docs/differences.md) the
 * test asserts the difference instead: nothing written, exit path taken.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2_test_util.h"
#include "test_sh.h"

#include "qcow2/check.h"
#include "qcow2/header.h"
#include "report.h"

#ifndef INSTAR_SOURCE_DIR
#define INSTAR_SOURCE_DIR "."
#endif

/* --- Rendering the streamed lines as the host does --- */

static char lines[1 << 20];
static size_t lines_len;
static int refused; /* a QCOW2_MSG_REPAIR_REFUSED_* line was seen */

static void out(const char *s, size_t n)
{
    cr_assert_lt(lines_len + n, sizeof(lines));
    memcpy(lines + lines_len, s, n);
    lines_len += n;
    lines[lines_len] = '\0';
}

static void render(int32_t code, uint16_t flags, const uint64_t a[4], const char *s, size_t slen)
{
    char *m;

    cr_assert_not_null(report_code_template(code), "unknown code %d", code);
    if (code == QCOW2_MSG_REPAIR_REFUSED_UNCOUNTED || code == QCOW2_MSG_REPAIR_REFUSED_SNAPSHOTS ||
        code == QCOW2_MSG_REPAIR_REFUSED_AUTOCLEAR)
        refused = 1;
    m = report_code_render(code, a, s, slen);
    cr_assert_not_null(m);
    if (flags & QCOW2_CHECK_REC_PREFIX)
        out("qemu-img: ", 10);
    out(m, strlen(m));
    out("\n", 1);
    free(m);
}

/* --- An image in memory that repairs may write to --- */

struct mimg {
    uint8_t *p;
    uint64_t len;
    uint64_t cap;
    uint64_t limit; /* write limit */
    unsigned writes, flushes, truncates;
    uint64_t max_end; /* furthest byte any write asked for */
};

static struct mimg cur;

static int m_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    memset(buf, 0, len);
    if (off < cur.len)
        memcpy(buf, cur.p + off, cur.len - off < len ? (size_t)(cur.len - off) : len);
    return 0;
}

static void m_grow(uint64_t end)
{
    if (end > cur.cap) {
        uint64_t cap = end * 2;

        cur.p = realloc(cur.p, (size_t)cap);
        cr_assert_not_null(cur.p);
        memset(cur.p + cur.cap, 0, (size_t)(cap - cur.cap));
        cur.cap = cap;
    }
    if (end > cur.len)
        cur.len = end;
}

static int m_pwrite(void *opaque, uint64_t off, const void *buf, size_t len)
{
    (void)opaque;
    cr_assert_leq(off + len, cur.limit, "write past the limit: %llu+%zu", (unsigned long long)off,
                  len);
    if (off + len > cur.max_end)
        cur.max_end = off + len;
    m_grow(off + len);
    memcpy(cur.p + off, buf, len);
    cur.writes++;
    return 0;
}

static int m_flush(void *opaque)
{
    (void)opaque;
    cur.flushes++;
    return 0;
}

static int m_truncate(void *opaque, uint64_t size)
{
    (void)opaque;
    cr_assert_leq(size, cur.limit);
    if (size > cur.len)
        m_grow(size);
    else
        cur.len = size;
    cur.truncates++;
    return 0;
}

static void m_report(void *opaque, int32_t code, uint16_t flags, const uint64_t args[4],
                     const char *s, size_t slen)
{
    (void)opaque;
    render(code, flags, args, s, slen);
}

static void m_quiet(void *opaque, int32_t code, uint16_t flags, const uint64_t args[4],
                    const char *s, size_t slen)
{
    (void)opaque;
    (void)code;
    (void)flags;
    (void)args;
    (void)s;
    (void)slen;
}

static void *m_realloc(void *opaque, void *p, size_t size)
{
    (void)opaque;
    return realloc(p, size);
}

static void m_free(void *opaque, void *p)
{
    (void)opaque;
    free(p);
}

static const struct qcow2_check_env env = {m_pread, m_report, m_realloc, m_free, NULL};
static const struct qcow2_check_env quiet = {m_pread, m_quiet, m_realloc, m_free, NULL};
static const struct qcow2_repair_io io_ops = {
    .pwrite = m_pwrite, .flush = m_flush, .truncate = m_truncate};

/* The header as check's open sees it (snapshot fields kept). */
static int parse(struct qcow2_header *h, struct qcow2_exts *x)
{
    static struct qcow2_err_info ei;
    uint8_t saved[12];
    int ret;

    memcpy(saved, cur.p + 60, sizeof(saved));
    memset(cur.p + 60, 0, sizeof(saved));
    ret = qcow2_header_parse_flags(cur.p, (size_t)cur.len, QCOW2_OPEN_CHECK, h, &ei);
    if (ret == 0)
        ret = qcow2_ext_parse(cur.p, (size_t)cur.len, h, NULL, NULL, x, &ei);
    memcpy(cur.p + 60, saved, sizeof(saved));
    h->nb_snapshots = (uint32_t)get_be(cur.p, 60, 4);
    h->snapshots_offset = get_be(cur.p, 64, 8);
    return ret;
}

/*
 * What guest/plan_check.c does for one repair: qcow2_repair, then a
 * silent re-validation from a re-parsed header and qcow2_check_finish.
 * Returns qcow2_repair's value; res its result.
 */
static int repair(unsigned fix, struct qcow2_check_result *res)
{
    struct qcow2_repair_io io = io_ops;
    struct qcow2_check_image ci;
    struct qcow2_check_result r2;
    struct qcow2_header h, h2;
    struct qcow2_exts x, x2;
    unsigned clear = 0;
    bool first_clean;
    int ret;

    cr_assert_eq(parse(&h, &x), 0);
    ci.h = &h;
    ci.x = &x;
    ci.file_size = cur.len;
    io.write_limit = cur.limit;
    ret = qcow2_repair(&ci, &env, &io, fix, res);
    if (!(res->repair_flags & QCOW2_REPAIR_RAN))
        return ret;
    if (!(res->repair_flags & QCOW2_REPAIR_KEEP_DIRTY))
        clear |= QCOW2_CHECK_CLEAR_DIRTY;
    first_clean = ret == 0 && !res->check_errors && !res->corruptions;
    if (parse(&h2, &x2) != 0)
        return ret;
    ci.h = &h2;
    ci.file_size = cur.len;
    if ((first_clean || !(h.incompatible_features & QCOW2_INCOMPAT_CORRUPT)) &&
        qcow2_check(&ci, &quiet, 0, &r2) == 0 && !r2.check_errors && !r2.corruptions)
        clear |= QCOW2_CHECK_CLEAR_CORRUPT;
    if (clear)
        cr_assert_geq(qcow2_check_finish(&h2, &env, &io, clear), 0);
    return ret;
}

/* The lines of a read-only check of cur, as qemu-img's second run prints them. */
static void recheck_lines(void)
{
    struct qcow2_check_image ci;
    struct qcow2_check_result r;
    struct qcow2_header h;
    struct qcow2_exts x;
    int ret;

    cr_assert_eq(parse(&h, &x), 0);
    ci.h = &h;
    ci.x = &x;
    ci.file_size = cur.len;
    ret = qcow2_check(&ci, &env, 0, &r);
    if (ret < 0) {
        char tail[128];

        snprintf(tail, sizeof(tail), "qemu-img: Check failed: %s\n", qcow2_check_strerror(-ret));
        out(tail, strlen(tail));
    } else if (r.check_errors) {
        out("qemu-img: Check failed\n", 23);
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

static void spill(const char *path)
{
    FILE *f = fopen(path, "wb");

    cr_assert_not_null(f);
    cr_assert_eq(fwrite(cur.p, 1, (size_t)cur.len, f), (size_t)cur.len);
    fclose(f);
}

static char gen_dir[] = "/tmp/instar-repair-XXXXXX";

static void gen_setup(void)
{
    cr_assert_not_null(mkdtemp(gen_dir));
    cr_assert_eq(sh("TZ=UTC python3 %s/tests/corrupt_check.py %s/imgs >/dev/null 2>&1",
                    INSTAR_SOURCE_DIR, gen_dir),
                 0);
}

static void gen_teardown(void)
{
    sh("rm -rf %s", gen_dir);
}

/* Whether instar's repaired image (cur) is the oracle's o.qcow2, byte for byte. */
static int same_as_oracle(void)
{
    char path[1024], *o;
    size_t n;
    int same;

    snprintf(path, sizeof(path), "%s/o.qcow2", gen_dir);
    o = slurp(path, &n);
    same = n == cur.len && memcmp(o, cur.p, n) == 0;
    free(o);
    return same;
}

/* Counters over one mode's sweep, for the summary and the assertions. */
struct sweep {
    unsigned images, same_lines, refused, clean_both, qemu_clean_instar_not, differ;
};

/*
 * One image, one mode.  Returns 1 if instar matched qemu-img exactly
 * (lines, re-check status, guest data), 0 for an accepted documented
 * difference (a refusal: the image must be untouched), and fails the
 * test otherwise.
 */
static int one(const char *name, const char *mode, unsigned fix, struct sweep *sw)
{
    char path[1024], *orig, *orc_err, *p;
    size_t orig_len;
    int rc_o, rc_o2, rc_i2, cmp, ret;
    struct qcow2_check_result res;

    snprintf(path, sizeof(path), "%s/imgs/%s", gen_dir, name);
    orig = slurp(path, &orig_len);

    /* The oracle on a copy. */
    rc_o = sh("cd %s && cp imgs/%s o.qcow2 && TZ=UTC LC_ALL=C qemu-img check -r %s o.qcow2 "
              ">o.out 2>o.err",
              gen_dir, name, mode);
    rc_o = WEXITSTATUS(rc_o);
    snprintf(path, sizeof(path), "%s/o.err", gen_dir);
    orc_err = slurp(path, NULL);

    /* The library in memory. */
    free(cur.p);
    memset(&cur, 0, sizeof(cur));
    cur.cap = orig_len;
    cur.len = orig_len;
    cur.p = malloc(orig_len ? orig_len : 1);
    memcpy(cur.p, orig, orig_len);
    cur.limit = orig_len + orig_len / 32 + (64u << 20);
    lines_len = 0;
    lines[0] = '\0';
    refused = 0;
    ret = repair(fix, &res);
    if (ret < 0) {
        char tail[128];

        snprintf(tail, sizeof(tail), "qemu-img: Check failed: %s\n", qcow2_check_strerror(-ret));
        out(tail, strlen(tail));
    } else if (res.corruptions_fixed || res.leaks_fixed) {
        recheck_lines();
    } else if (res.check_errors) {
        out("qemu-img: Check failed\n", 23);
    }
    sw->images++;

    if (refused) {
        /* Refused: nothing written, a non-zero exit (docs/differences.md). */
        cr_assert_lt(ret, 0, "%s -r %s: refusal must fail the check", name, mode);
        cr_assert_eq(cur.writes + cur.truncates, 0, "%s -r %s: refused but wrote", name, mode);
        cr_assert_eq(cur.len, orig_len);
        cr_assert_eq(memcmp(cur.p, orig, orig_len), 0);
        sw->refused++;
        free(orig);
        free(orc_err);
        return 0;
    }

    /* Both repaired copies under qemu-img check, then compared. */
    snprintf(path, sizeof(path), "%s/i.qcow2", gen_dir);
    spill(path);
    rc_o2 = WEXITSTATUS(sh("cd %s && qemu-img check o.qcow2 >/dev/null 2>&1", gen_dir));
    if (same_as_oracle()) {
        /* The same bytes: the same re-check and no difference, by construction. */
        rc_i2 = rc_o2;
        cmp = 0;
    } else {
        rc_i2 = WEXITSTATUS(sh("cd %s && qemu-img check i.qcow2 >/dev/null 2>&1", gen_dir));
        cmp = WEXITSTATUS(sh("cd %s && qemu-img compare -f qcow2 -F qcow2 o.qcow2 i.qcow2 "
                             ">/dev/null 2>&1",
                             gen_dir));
    }
    if (rc_o2 == 0 && rc_i2 == 0)
        sw->clean_both++;
    if (rc_o2 == 0 && rc_i2 != 0) {
        sw->qemu_clean_instar_not++;
        cr_log_error("%s -r %s: qemu-img's repair is clean, instar's is not (%d)", name, mode,
                     rc_i2);
    }
    if (rc_o2 != rc_i2 || (rc_o2 == 0 && cmp != 0) || strcmp(lines, orc_err) != 0) {
        sw->differ++;
        cr_log_error("%s -r %s: rc %d/%d recheck %d/%d compare %d\n--- qemu-img:\n%.3000s--- "
                     "instar:\n%.3000s",
                     name, mode, rc_o, ret, rc_o2, rc_i2, cmp, orc_err, lines);
    } else {
        sw->same_lines++;
    }
    (void)p;
    free(orig);
    free(orc_err);
    return 1;
}

/*
 * The library against the oracle on an eighth of the generator's images
 * (every eighth name, a different eighth for each mode): the binary is
 * compared with qemu-img on every image in both modes, bytes included, by
 * parity/test_repair_parity.py.  REPAIR_ALL=1 sweeps them all here too.
 */
static void sweep(const char *mode, unsigned fix)
{
    struct sweep sw = {0};
    char *list = sh_out("ls %s/imgs | grep '\\.qcow2$'", gen_dir), *name, *save = NULL;
    const char *only = getenv("REPAIR_ONLY"); /* debugging: one image name */
    unsigned step = getenv("REPAIR_ALL") ? 1 : 8, i = 0;

    for (name = strtok_r(list, "\n", &save); name; name = strtok_r(NULL, "\n", &save), i++)
        if (only ? !strcmp(only, name) : (i + fix) % step == 0)
            one(name, mode, fix, &sw);
    free(list);
    cr_log_info("-r %s: %u images, %u identical, %u refused, %u clean in both, %u differ", mode,
                sw.images, sw.same_lines, sw.refused, sw.clean_both, sw.differ);
    if (!only)
        cr_assert_gt(sw.images, 100 / step);
    cr_assert_eq(sw.qemu_clean_instar_not, 0);
    cr_assert_eq(sw.differ, 0);
}

TestSuite(qcow2_repair, .init = gen_setup, .fini = gen_teardown, .timeout = 600);

Test(qcow2_repair, leaks_matches_oracle)
{
    sweep("leaks", QCOW2_CHECK_FIX_LEAKS);
}

Test(qcow2_repair, all_matches_oracle)
{
    sweep("all", QCOW2_CHECK_FIX_LEAKS | QCOW2_CHECK_FIX_ERRORS);
}

/* Load generator image name into cur (write limit as the host sets it). */
static void load(const char *name)
{
    char path[1024];
    size_t n;

    snprintf(path, sizeof(path), "%s/imgs/%s", gen_dir, name);
    free(cur.p);
    memset(&cur, 0, sizeof(cur));
    cur.p = (uint8_t *)slurp(path, &n);
    cur.len = cur.cap = n;
    cur.limit = n + n / 32 + (64u << 20);
    lines_len = 0;
    lines[0] = '\0';
    refused = 0;
}

/* A clean image: neither mode writes anything (idempotence). */
Test(qcow2_repair, clean_image_writes_nothing)
{
    struct qcow2_check_result r;
    const char *mk = "qemu-img create -q -f qcow2 t.qcow2 4M && "
                     "qemu-io -c 'write -P 7 0 128k' -c 'write -c -P 8 1M 64k' t.qcow2";
    struct img im = img_make(mk, "t.qcow2");
    unsigned fix;

    for (fix = 1; fix <= 3; fix += 2) {
        free(cur.p);
        memset(&cur, 0, sizeof(cur));
        cur.p = malloc(im.len);
        memcpy(cur.p, im.p, im.len);
        cur.len = cur.cap = im.len;
        cur.limit = im.len + (64u << 20);
        lines_len = 0;
        cr_assert_eq(repair(fix, &r), 0);
        cr_assert_eq(cur.writes + cur.truncates + cur.flushes, 0);
        cr_assert_eq(r.leaks_fixed + r.corruptions_fixed, 0);
        cr_assert_str_empty(lines);
        cr_assert_eq(memcmp(cur.p, im.p, im.len), 0);
    }
}

/*
 * Refusals (docs/differences.md): a snapshot whose L1 table cannot be
 * walked leaves its clusters uncounted.  qemu-img's repair frees them
 * (destroying the snapshot); instar refuses and writes nothing.
 */
Test(qcow2_repair, refuses_when_references_are_uncounted)
{
    const char *names[] = {"snap-l1-unaligned-rb16.qcow2", "snap-l1-too-large-rb4.qcow2",
                           "extl2-compressed-bitmap-rb16.qcow2"};
    struct qcow2_check_result r;
    size_t i;
    unsigned fix;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        for (fix = 1; fix <= 3; fix += 2) {
            char *orig;
            size_t n;

            load(names[i]);
            orig = malloc(cur.len);
            memcpy(orig, cur.p, cur.len);
            n = (size_t)cur.len;
            cr_assert_eq(repair(fix, &r), -QCOW2_CHECK_EIO, "%s", names[i]);
            cr_assert(refused, "%s: no refusal line", names[i]);
            cr_assert_eq(cur.writes + cur.truncates, 0);
            cr_assert_eq(memcmp(cur.p, orig, n), 0);
            free(orig);
        }
    }
}

/*
 * qemu-img -r all rewrites a broken snapshot table (and so does instar);
 * -r leaks does not.
 */
Test(qcow2_repair, rewrites_snapshot_table)
{
    struct qcow2_check_result r;
    uint64_t old_off;

    load("snap-table-past-eof-rb16.qcow2");
    old_off = get_be(cur.p, 64, 8);
    cr_assert_eq(repair(3, &r), 0);
    cr_assert_not(refused);
    cr_assert_gt(r.corruptions_fixed, 0);
    cr_assert_eq(get_be(cur.p, 60, 4), 1);
    cr_assert_neq(get_be(cur.p, 64, 8), old_off);
    cr_assert_lt(get_be(cur.p, 64, 8), cur.len);
    cr_assert_not_null(strstr(lines, "qcow2_free_clusters failed: Invalid argument\n"));
    cr_assert_not(get_be(cur.p, 72, 8) & QCOW2_INCOMPAT_CORRUPT);
    /* -r leaks does not rewrite the table in qemu either: it repairs. */
    load("snap-table-past-eof-rb16.qcow2");
    cr_assert_eq(repair(1, &r), 0);
    cr_assert_not(refused);
    cr_assert_gt(r.leaks_fixed, 0);
    cr_assert_eq(get_be(cur.p, 64, 8), old_off);

    /* oversized extra data is cut to 1024 bytes, the entry kept */
    load("snap-extra-too-large-rb16.qcow2");
    cr_assert_eq(repair(3, &r), 0);
    cr_assert_eq(get_be(cur.p, 60, 4), 1);
    cr_assert_eq(get_be(cur.p, get_be(cur.p, 64, 8) + 36, 4), 1024);
    cr_assert_not_null(strstr(lines, "Discarding too much extra metadata in snapshot table entry 0 "
                                     "(1100 > 1024)\n"));
}

/*
 * The corrupt bit: cleared after a repair qemu-img calls clean (either
 * mode, as qemu-img); an -r all that leaves corruptions behind leaves the
 * bit instar set before its first write.
 */
Test(qcow2_repair, corrupt_bit_handling)
{
    struct qcow2_check_result r;

    load("corrupt-bit-rb16.qcow2");
    cr_assert_eq(repair(1, &r), 0);
    cr_assert_not(get_be(cur.p, 72, 8) & QCOW2_INCOMPAT_CORRUPT);

    load("corrupt-bit-rb16.qcow2");
    cr_assert_eq(repair(3, &r), 0);
    cr_assert_not(get_be(cur.p, 72, 8) & QCOW2_INCOMPAT_CORRUPT);

    /* shared cluster at width 1: the leak is fixed, the overflow stays */
    load("shared-cluster-rb1.qcow2");
    cr_assert_not(get_be(cur.p, 72, 8) & QCOW2_INCOMPAT_CORRUPT);
    cr_assert_eq(repair(3, &r), 0);
    cr_assert_gt(r.corruptions, 0);
    cr_assert_gt(r.leaks_fixed, 0);
    cr_assert(get_be(cur.p, 72, 8) & QCOW2_INCOMPAT_CORRUPT);

    /* -r leaks on the same image: frees only, no corrupt bit */
    load("shared-cluster-rb1.qcow2");
    cr_assert_eq(repair(1, &r), 0);
    cr_assert_not(get_be(cur.p, 72, 8) & QCOW2_INCOMPAT_CORRUPT);
}

/* The dirty bit goes on closing, even after a failed repair (qemu's close). */
Test(qcow2_repair, dirty_bit_cleared_after_failed_repair)
{
    struct qcow2_check_result r;

    load("dirty-refcount-zero-rb16.qcow2");
    cr_assert(get_be(cur.p, 72, 8) & QCOW2_INCOMPAT_DIRTY);
    cr_assert_eq(repair(1, &r), -QCOW2_CHECK_EIO); /* needs a rebuild */
    cr_assert_not_null(strstr(lines, "ERROR need to rebuild refcount structures\n"));
    cr_assert_not(get_be(cur.p, 72, 8) & QCOW2_INCOMPAT_DIRTY);
}

/* Unknown autoclear bits are cleared; not where that would drop snapshots. */
Test(qcow2_repair, unknown_autoclear_bits)
{
    struct qcow2_check_result r;
    char *orig;
    size_t n;

    load("autoclear-unknown-leak-rb16.qcow2");
    cr_assert_eq(get_be(cur.p, 88, 8), 1ull << 40);
    cr_assert_eq(repair(1, &r), 0);
    cr_assert_eq(get_be(cur.p, 88, 8), 0);

    load("autoclear-unknown-snap-rb16.qcow2");
    n = (size_t)cur.len;
    orig = malloc(n);
    memcpy(orig, cur.p, n);
    cr_assert_eq(repair(3, &r), -QCOW2_CHECK_EIO);
    cr_assert(refused);
    cr_assert_eq(cur.writes + cur.truncates, 0);
    cr_assert_eq(memcmp(cur.p, orig, n), 0);
    free(orig);
}

/* A refcount block far past the end: the growth is refused, not done. */
Test(qcow2_repair, hostile_refblock_offset_is_bounded)
{
    struct qcow2_check_result r;

    load("reftable-past-eof-rb16.qcow2");
    put_be(cur.p, get_be(cur.p, 48, 8) + 8, UINT64_C(1) << 50, 8);
    cr_assert_eq(repair(3, &r), 0);
    cr_assert(strstr(lines, "ERROR refusing to grow the image"), "%s", lines);
    cr_assert(strstr(lines, "ERROR could not resize image: File too large"));
    cr_assert(strstr(lines, "Rebuilding refcount structure"));
    cr_assert_lt(cur.len, cur.limit);
}
