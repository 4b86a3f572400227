/*
 * The qcow2 check library (formats/qcow2/check.c) against the oracle.
 *
 * Each case makes an image with qemu-img/qemu-io, optionally corrupts it
 * with a small Python patch, and runs "qemu-img check --output=json" on
 * the same bytes.  The library then runs over the bytes in memory; its
 * lines, rendered from check_err.h's templates, must equal qemu-img's
 * stderr line for line, and its counters the JSON's fields.  Nothing is
 * expected that the oracle did not print.
 */
#include <sys/stat.h>

#include "qcow2_test_util.h"
#include "test_sh.h"

#include "qcow2/check.h"
#include "qcow2/header.h"
#include "report.h"

/* --- Rendering the streamed lines as the host does --- */

static char lines[1 << 22];
static size_t lines_len;
static size_t nreports;

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
    m = report_code_render(code, a, s, slen);
    cr_assert_not_null(m);
    if (flags & QCOW2_CHECK_REC_PREFIX)
        out("qemu-img: ", 10);
    out(m, strlen(m));
    out("\n", 1);
    free(m);
}

/* --- The environment over an image in memory --- */

static struct img cur;
static size_t mem_cap = SIZE_MAX; /* allocation cap for the ENOMEM case */

static int env_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    (void)opaque;
    memset(buf, 0, len);
    if (off < cur.len)
        memcpy(buf, cur.p + off, cur.len - off < len ? cur.len - off : len);
    return 0;
}

static void env_report(void *opaque, int32_t code, uint16_t flags, const uint64_t args[4],
                       const char *s, size_t slen)
{
    (void)opaque;
    nreports++;
    render(code, flags, args, s, slen);
}

static void *env_realloc(void *opaque, void *p, size_t size)
{
    (void)opaque;
    if (size > mem_cap)
        return NULL;
    return realloc(p, size);
}

static void env_free(void *opaque, void *p)
{
    (void)opaque;
    free(p);
}

static const struct qcow2_check_env env = {env_pread, env_report, env_realloc, env_free, NULL};

/* --- The oracle --- */

struct oracle {
    char err[1 << 22];
    char json[8192];
    int rc;
};

static struct oracle orc;

/* Patch helpers for the Python snippets (refcount entries of any width). */
static const char py_pre[] = "import struct\n"
                             "b=bytearray(open('t.qcow2','rb').read())\n"
                             "def g64(o): return struct.unpack('>Q',b[o:o+8])[0]\n"
                             "def g32(o): return struct.unpack('>I',b[o:o+4])[0]\n"
                             "def p64(o,v): b[o:o+8]=struct.pack('>Q',v)\n"
                             "def p32(o,v): b[o:o+4]=struct.pack('>I',v)\n"
                             "cb=g32(20); cs=1<<cb; l1=g64(40); rt=g64(48)\n"
                             "ro=g32(96) if g32(4)>=3 else 4; bits=1<<ro\n"
                             "l2=g64(l1)&0x00fffffffffffe00\n"
                             "def rbo(i): return g64(rt+8*(i>>(cb+3-ro)))&~511\n"
                             "def setref(i,v):\n"
                             "  o=rbo(i); k=i&((1<<(cb+3-ro))-1)\n"
                             "  if bits>=8:\n"
                             "    n=bits//8; b[o+k*n:o+k*n+n]=v.to_bytes(n,'big')\n"
                             "  else:\n"
                             "    per=8//bits; sh=(k%per)*bits; m=((1<<bits)-1)<<sh\n"
                             "    b[o+k//per]=(b[o+k//per]&~m)|((v<<sh)&m)\n"
                             "def getref(i):\n"
                             "  o=rbo(i); k=i&((1<<(cb+3-ro))-1)\n"
                             "  if bits>=8:\n"
                             "    n=bits//8; return int.from_bytes(b[o+k*n:o+k*n+n],'big')\n"
                             "  per=8//bits; return (b[o+k//per]>>((k%per)*bits))&((1<<bits)-1)\n";

static char *slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n = 0;

    buf[0] = '\0';
    if (f) {
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

/*
 * Make t.qcow2 with cmds, patch it with py (may be NULL), run the oracle
 * with check_args (NULL: "t.qcow2"), and load the image.
 */
static void make_case(const char *cmds, const char *py, const char *check_args)
{
    char dir[] = "/tmp/instar-ck-XXXXXX";
    char path[512], rcbuf[32];
    FILE *f;

    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(sh("cd %s && (%s) >/dev/null 2>&1", dir, cmds), 0, "setup failed: %s", cmds);
    if (py) {
        snprintf(path, sizeof(path), "%s/patch.py", dir);
        f = fopen(path, "w");
        cr_assert_not_null(f);
        fprintf(f, "%s%s\nopen('t.qcow2','wb').write(b)\n", py_pre, py);
        fclose(f);
        cr_assert_eq(sh("cd %s && python3 patch.py", dir), 0, "patch failed: %s", py);
    }
    sh("cd %s && TZ=UTC LC_ALL=C qemu-img check --output=json %s >out.json 2>err.txt; "
       "echo $? >rc",
       dir, check_args ? check_args : "t.qcow2");
    snprintf(path, sizeof(path), "%s/err.txt", dir);
    slurp(path, orc.err, sizeof(orc.err));
    snprintf(path, sizeof(path), "%s/out.json", dir);
    slurp(path, orc.json, sizeof(orc.json));
    snprintf(path, sizeof(path), "%s/rc", dir);
    orc.rc = atoi(slurp(path, rcbuf, sizeof(rcbuf)));
    {
        char cmd[600];

        snprintf(cmd, sizeof(cmd), "cp %s/t.qcow2 t.qcow2", dir);
        cur = img_make(cmd, "t.qcow2");
    }
    sh("rm -rf %s", dir);
}

static int64_t json_int(const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    p = strstr(orc.json, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : 0;
}

static struct qcow2_header h;
static struct qcow2_exts x;
static struct qcow2_err_info ei;
static struct qcow2_check_result res;

/* Run the library on cur; returns its return value. */
static int run_check(void)
{
    struct qcow2_check_image ci;
    uint8_t saved[12];

    lines_len = 0;
    lines[0] = '\0';
    nreports = 0;
    /*
     * qemu-img check opens with BDRV_O_CHECK: the snapshot table is left
     * to the check, so parse the header without it, then put it back.
     */
    memcpy(saved, cur.p + 60, sizeof(saved));
    memset(cur.p + 60, 0, sizeof(saved));
    cr_assert_eq(qcow2_header_parse(cur.p, cur.len, &h, &ei), 0);
    cr_assert_eq(qcow2_ext_parse(cur.p, cur.len, &h, NULL, NULL, &x, &ei), 0);
    memcpy(cur.p + 60, saved, sizeof(saved));
    h.nb_snapshots = (uint32_t)get_be(cur.p, 60, 4);
    h.snapshots_offset = get_be(cur.p, 64, 8);
    ci.h = &h;
    ci.x = &x;
    ci.file_size = cur.len;
    return qcow2_check(&ci, &env, 0, &res);
}

/*
 * The library's lines and counters equal the oracle's; "qemu-img: Check
 * failed" (the host's line) closes qemu's stderr when the check failed.
 */
static void expect_same(void)
{
    int ret = run_check();
    char tail[256];

    if (ret < 0) {
        snprintf(tail, sizeof(tail), "qemu-img: Check failed: %s\n", qcow2_check_strerror(-ret));
        out(tail, strlen(tail));
        cr_assert_eq(orc.rc, 1);
    } else if (res.check_errors) {
        out("qemu-img: Check failed\n", 23);
    }
    if (getenv("CK_VERBOSE"))
        fprintf(stderr, "--- rc %d\n%s", orc.rc, lines);
    cr_assert_str_eq(lines, orc.err, "stderr differs:\n--- instar\n%s--- qemu-img\n%s", lines,
                     orc.err);
    if (ret < 0)
        return;
    cr_assert_eq(res.corruptions, json_int("corruptions"));
    cr_assert_eq(res.leaks, json_int("leaks"));
    cr_assert_eq(res.check_errors, json_int("check-errors"));
    cr_assert_eq(res.image_end_offset, json_int("image-end-offset"));
    cr_assert_eq(res.total_clusters, json_int("total-clusters"));
    cr_assert_eq(res.allocated_clusters, json_int("allocated-clusters"));
    cr_assert_eq(res.fragmented_clusters, json_int("fragmented-clusters"));
    cr_assert_eq(res.compressed_clusters, json_int("compressed-clusters"));
    cr_assert_eq(orc.rc, res.check_errors ? 1 : res.corruptions ? 2 : res.leaks ? 3 : 0);
}

static void same(const char *cmds, const char *py)
{
    make_case(cmds, py, NULL);
    expect_same();
}

#define MK      "qemu-img create -q -f qcow2 "
#define IO      "qemu-io -c "
#define DATA    MK "t.qcow2 4M && " IO "'write -P 1 0 192k' -c 'write -P 2 1M 64k' t.qcow2"
#define DATA_RB MK "-o refcount_bits=%d t.qcow2 4M && " IO "'write -P 1 0 192k' t.qcow2"

/* --- Clean images --- */

Test(qcow2_check, clean_empty)
{
    same(MK "t.qcow2 1M", NULL);
    cr_assert_eq(nreports, 0);
}

Test(qcow2_check, clean_with_data)
{
    same(DATA, NULL);
    cr_assert_gt(res.allocated_clusters, 0);
}

Test(qcow2_check, clean_v2_zero_clusters_and_fragmentation)
{
    same(MK "-o compat=0.10 t.qcow2 4M && " IO "'write 1M 64k' -c 'write 0 64k' -c "
            "'write -z 2M 64k' t.qcow2",
         NULL);
    cr_assert_gt(res.fragmented_clusters, 0);
}

Test(qcow2_check, clean_zero_alloc)
{
    same(MK "-o preallocation=metadata t.qcow2 1M && " IO "'write -z 0 64k' t.qcow2", NULL);
}

Test(qcow2_check, clean_compressed)
{
    same("qemu-img create -q -f raw r 1M && " IO "'write -P 5 0 300k' -f raw r && "
         "qemu-img convert -c -O qcow2 r t.qcow2",
         NULL);
    cr_assert_gt(res.compressed_clusters, 0);
}

Test(qcow2_check, clean_extended_l2)
{
    same(MK "-o extended_l2=on t.qcow2 4M && " IO "'write 0 4k' -c 'write -z 64k 8k' -c "
            "'write 1M 70k' t.qcow2",
         NULL);
}

Test(qcow2_check, clean_small_clusters_and_snapshots)
{
    same(MK "-o cluster_size=512 t.qcow2 1M && " IO "'write 0 4k' t.qcow2 && "
            "qemu-img snapshot -c s1 t.qcow2 && " IO "'write 0 1k' t.qcow2 && "
            "qemu-img snapshot -c s2 t.qcow2",
         NULL);
}

Test(qcow2_check, clean_bitmaps)
{
    same(MK "t.qcow2 4M && qemu-img bitmap --add t.qcow2 b0 && " IO "'write 0 64k' t.qcow2 && "
            "qemu-img bitmap --add --disable t.qcow2 b1",
         NULL);
}

Test(qcow2_check, clean_luks)
{
    /* PBKDF2 timing fails now and then on loaded hosts: retry the create. */
    make_case("for i in 1 2 3 4 5; do qemu-img create -q -f qcow2 --object secret,id=s0,data=x "
              "-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 t.qcow2 1M "
              "&& break; done",
              NULL,
              "--object secret,id=s0,data=x --image-opts "
              "driver=qcow2,file.filename=t.qcow2,encrypt.key-secret=s0");
    expect_same();
}

Test(qcow2_check, clean_data_file)
{
    same(MK "-o data_file=t.raw t.qcow2 4M && " IO "'write 0 64k' t.qcow2", NULL);
}

/* --- Refcount mismatches, every width --- */

static void leak_and_error(int bits)
{
    char cmds[256];

    snprintf(cmds, sizeof(cmds), DATA_RB, bits);
    /* cluster of guest offset 0: refcount 0; last data cluster: its L2 entry dropped */
    same(cmds, "d=g64(l2)&0x00fffffffffffe00; setref(d>>cb,0)\n"
               "p64(l2+16,0)\n");
    cr_assert_gt(res.corruptions, 0);
    cr_assert_gt(res.leaks, 0);
}

Test(qcow2_check, refcount_widths)
{
    int bits;

    for (bits = 1; bits <= 64; bits *= 2)
        leak_and_error(bits);
}

Test(qcow2_check, refcount_too_high_and_shared_cluster)
{
    same(DATA, "d=g64(l2)&0x00fffffffffffe00; setref(d>>cb,2)\n"
               "p64(l2+8, g64(l2+16))\n");
}

Test(qcow2_check, refcount_overflow_width_1)
{
    same(MK "-o refcount_bits=1 t.qcow2 4M && " IO "'write 0 128k' t.qcow2",
         "p64(l2+8, g64(l2))\n");
    cr_assert_gt(res.corruptions, 0);
}

/* --- L1/L2 entries --- */

Test(qcow2_check, copied_flags)
{
    same(DATA, "p64(l2, g64(l2)&~(1<<63))\np64(l1, g64(l1)&~(1<<63))\n");
}

Test(qcow2_check, reserved_bits)
{
    same(DATA, "p64(l2, g64(l2)|(1<<58))\np64(l1, g64(l1)|(1<<57))\n");
}

Test(qcow2_check, unaligned_entries)
{
    same(DATA, "p64(l2, g64(l2)+512)\np64(l2+8, (g64(l2+8)+1024)|1)\n");
}

Test(qcow2_check, unaligned_l2_table)
{
    same(DATA, "p64(l1, g64(l1)+512)\n");
}

Test(qcow2_check, entries_past_eof)
{
    same(DATA, "p64(l2+8, (1<<63)|(len(b)+10*cs))\n"
               "p64(l1+8, (1<<63)|(len(b)+3*cs))\n");
}

Test(qcow2_check, compressed_flags)
{
    same("qemu-img create -q -f raw r 1M && " IO "'write -P 5 0 300k' -f raw r && "
         "qemu-img convert -c -O qcow2 r t.qcow2",
         "p64(l2, g64(l2)|(1<<63))\n");
}

Test(qcow2_check, extended_l2_bitmaps)
{
    same(MK "-o extended_l2=on t.qcow2 4M && " IO "'write 0 4k' -c 'write 1M 8k' t.qcow2",
         "p64(l2+8, g64(l2+8)|(1<<32)|1)\n"                    /* allocated: alloc+zero */
         "p64(l2+16*5+8, 3)\n"                                 /* unallocated with alloc bits */
         "p64(l2+16*6, (1<<62)|(5*cs))\np64(l2+16*6+8, 1)\n"); /* compressed + bitmap */
}

/* --- Refcount structure --- */

Test(qcow2_check, reftable_entries)
{
    same(DATA, "p64(rt+8, 1)\n"
               "p64(rt+16, 3*cs+512)\n"
               "p64(rt+24, 1<<50)\n");
}

Test(qcow2_check, refblock_unaligned_in_use)
{
    same(DATA, "p64(rt, g64(rt)+512)\n");
}

Test(qcow2_check, refblock_refcount_two)
{
    same(DATA, "setref(rbo(0)>>cb, 2)\n");
}

/* --- Snapshots --- */

#define SNAP                                                                                       \
    MK "t.qcow2 4M && " IO "'write 0 128k' t.qcow2 && qemu-img snapshot -c s1 t.qcow2 && " IO      \
       "'write 0 64k' t.qcow2"
#define SNAPPY "so=g64(64)\n"

Test(qcow2_check, snapshot_clean_shared_clusters)
{
    same(SNAP, NULL);
}

Test(qcow2_check, snapshot_l1_unaligned_and_too_large)
{
    same(SNAP " && qemu-img snapshot -c s2 t.qcow2",
         SNAPPY "p64(so, g64(so)+512)\n"
                "n=(so+40+g32(so+36)+(b[so+12]<<8|b[so+13])+(b[so+14]<<8|b[so+15])+7)&~7\n"
                "p32(n+8, 5000000)\n");
}

Test(qcow2_check, snapshot_incomplete)
{
    same(SNAP, SNAPPY "p32(so+36, 8)\n");
}

Test(qcow2_check, snapshot_table_errors)
{
    same(SNAP, "p32(60, 70000)\n");
    same(SNAP, SNAPPY "p64(64, so+8)\n");
    same(SNAP, SNAPPY "p32(so+36, 5000)\n");
    same(SNAP, SNAPPY "p64(64, 0x7fffffffffff0000)\n");
}

Test(qcow2_check, snapshot_l1_past_eof)
{
    same(SNAP, SNAPPY "p64(so, 0x7fffffff00000000)\n");
}

/* --- Allocation failure: QEMU's ENOMEM path, never a partial check --- */

Test(qcow2_check, enomem)
{
    make_case(DATA, NULL, NULL);
    mem_cap = 4096;
    cr_assert_eq(run_check(), -QCOW2_CHECK_ENOMEM);
    mem_cap = SIZE_MAX;
}

Test(qcow2_check, fix_not_implemented)
{
    struct qcow2_check_image ci = {&h, &x, 0};

    make_case(MK "t.qcow2 1M", NULL, NULL);
    cr_assert_eq(qcow2_header_parse(cur.p, cur.len, &h, &ei), 0);
    cr_assert_eq(qcow2_ext_parse(cur.p, cur.len, &h, NULL, NULL, &x, &ei), 0);
    ci.file_size = cur.len;
    cr_assert_eq(qcow2_check(&ci, &env, QCOW2_CHECK_FIX_LEAKS, &res), -QCOW2_CHECK_ENOTSUP);
}
