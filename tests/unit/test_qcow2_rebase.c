/*
 * formats/qcow2/rebase.c: the first cluster qcow2_rebase_header() builds
 * for an image made by the oracle is compared byte for byte with the one
 * `qemu-img rebase -u` writes into the same image; the refusals are
 * compared with qemu-img's exit status on the same request.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2_test_util.h"
#include "rebase.h"

/* Loads a copy of file name after running cmds (img_make frees its last image). */
static struct img load(const char *cmds, const char *name)
{
    struct img t = img_make(cmds, name), c;

    c.len = t.len;
    c.p = malloc(t.len + 1);
    cr_assert_not_null(c.p);
    memcpy(c.p, t.p, t.len);
    return c;
}

/*
 * Build the rebased header of the image made by mk (named a.qcow2) and
 * return the code; with exp_cmd, compare it with the first cluster of the
 * image after running mk then exp_cmd.
 */
static int check(const char *mk, const char *backing, const char *fmt, const char *exp_cmd)
{
    struct img in = load(mk, "a.qcow2");
    struct qcow2_header h;
    struct qcow2_exts x;
    struct qcow2_err_info ei;
    uint8_t *out;
    int ret;

    cr_assert_eq(qcow2_header_parse(in.p, in.len, &h, &ei), 0);
    cr_assert_eq(qcow2_ext_parse(in.p, in.len, &h, NULL, NULL, &x, &ei), 0);
    out = malloc(h.cluster_size);
    cr_assert_not_null(out);
    ret = qcow2_rebase_header(&h, &x, in.p, in.len, backing, fmt, out);
    if (exp_cmd) {
        char cmds[8192];
        struct img exp;

        snprintf(cmds, sizeof(cmds), "%s && %s", mk, exp_cmd);
        exp = load(cmds, "a.qcow2");
        cr_assert_eq(ret, 0);
        cr_assert_geq(exp.len, h.cluster_size);
        for (size_t i = 0; i < h.cluster_size; i++)
            cr_assert_eq(out[i], exp.p[i], "byte %zu: %#x, qemu-img wrote %#x", i, out[i],
                         exp.p[i]);
        free(exp.p);
    }
    free(out);
    free(in.p);
    return ret;
}

#define MK_BACKED                                                                                  \
    "qemu-img create -q -f qcow2 b.qcow2 1M && qemu-img create -q -f qcow2 -F qcow2 -b b.qcow2 "   \
    "a.qcow2 1M"

Test(rebase, new_name_and_format_v3)
{
    check(MK_BACKED, "other/base.img", "raw",
          "qemu-img rebase -u -b other/base.img -F raw a.qcow2");
}

Test(rebase, remove_backing_v3)
{
    check(MK_BACKED, NULL, NULL, "qemu-img rebase -u -b '' a.qcow2");
}

Test(rebase, add_backing_to_image_without_one)
{
    check("qemu-img create -q -f qcow2 a.qcow2 3M", "/abs/path.qcow2", "qcow2",
          "qemu-img rebase -u -b /abs/path.qcow2 -F qcow2 a.qcow2");
}

Test(rebase, v2_image)
{
    check("qemu-img create -q -f qcow2 -o compat=0.10 b.qcow2 1M && qemu-img create -q -f qcow2 "
          "-o compat=0.10 -F qcow2 -b b.qcow2 a.qcow2 1M",
          "new.qcow2", "qcow2", "qemu-img rebase -u -b new.qcow2 -F qcow2 a.qcow2");
}

Test(rebase, small_clusters_no_feature_table)
{
    check("qemu-img create -q -f qcow2 -o cluster_size=4096 a.qcow2 1M", "n", "vmdk",
          "qemu-img rebase -u -b n -F vmdk a.qcow2");
}

Test(rebase, extended_l2_zstd_lazy_refcounts)
{
    check("qemu-img create -q -f qcow2 -o extended_l2=on,compression_type=zstd,lazy_refcounts=on "
          "a.qcow2 1M",
          "b", "raw", "qemu-img rebase -u -b b -F raw a.qcow2");
}

Test(rebase, external_data_file_kept)
{
    check("qemu-img create -q -f qcow2 -o data_file=a.data a.qcow2 1M", "b.qcow2", "qcow2",
          "qemu-img rebase -u -b b.qcow2 -F qcow2 a.qcow2");
}

/* Two unknown extensions (written back in reverse order) and unknown header fields. */
#define MK_UNKNOWN                                                                                 \
    "qemu-img create -q -f qcow2 a.qcow2 1M && printf "                                            \
    "'\\000\\000\\000\\170\\000\\000\\000\\000\\000\\000\\000\\000UNKNOWN!"                        \
    "\\022\\064\\126\\170\\000\\000\\000\\003abc\\000\\000\\000\\000\\000"                         \
    "\\013\\255\\312\\376\\000\\000\\000\\010ABCDEFGH\\000\\000\\000\\000\\000\\000\\000\\000' | " \
    "dd of=a.qcow2 bs=1 seek=100 conv=notrunc status=none"

Test(rebase, unknown_extensions_and_fields)
{
    check(MK_UNKNOWN, "b.qcow2", "qcow2", "qemu-img rebase -u -b b.qcow2 -F qcow2 a.qcow2");
}

Test(rebase, name_does_not_fit)
{
    char name[600];

    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = 0;
    /* qemu-img: "No space left in the file header" for this name and 512-byte clusters. */
    cr_assert_eq(check("qemu-img create -q -f qcow2 -o cluster_size=512 a.qcow2 1M && ! qemu-img "
                       "rebase -u -F raw -b $(printf 'a%.0s' $(seq 599)) a.qcow2",
                       name, "raw", NULL),
                 -QCOW2_REBASE_ENOSPC);
}

Test(rebase, name_fits_exactly_or_not)
{
    /* v3, 512-byte clusters: 112 + 16 (format "raw") + 8 (end) = 136; 376 bytes left. */
    char name[378];

    memset(name, 'b', sizeof(name));
    name[376] = 0;
    cr_assert_eq(check("qemu-img create -q -f qcow2 -o cluster_size=512 a.qcow2 1M", name, "raw",
                       "qemu-img rebase -u -F raw -b $(printf 'b%.0s' $(seq 376)) a.qcow2"),
                 0);
    name[376] = 'b';
    name[377] = 0;
    cr_assert_eq(check("qemu-img create -q -f qcow2 -o cluster_size=512 a.qcow2 1M && ! qemu-img "
                       "rebase -u -F raw -b $(printf 'b%.0s' $(seq 377)) a.qcow2",
                       name, "raw", NULL),
                 -QCOW2_REBASE_ENOSPC);
}

Test(rebase, refusals)
{
    char name[1025];

    memset(name, 'c', sizeof(name) - 1);
    name[1024] = 0;
    cr_assert_eq(
        check("qemu-img create -q -f qcow2 -o cluster_size=2M a.qcow2 1M", name, "raw", NULL),
        -QCOW2_REBASE_EINVAL);
    cr_assert_eq(
        check("qemu-img create -q -f qcow2 -o data_file=a.data,data_file_raw=on a.qcow2 1M", "b",
              "raw", NULL),
        -QCOW2_REBASE_EINVAL);
    cr_assert_eq(check("qemu-img create -q -f qcow2 a.qcow2 1M", NULL, "raw", NULL),
                 -QCOW2_REBASE_EINVAL);
}
