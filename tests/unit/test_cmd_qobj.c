/*
 * cmd/qobj.c: QDict iteration order, qobject_to_json_pretty() layout and
 * escaping, and block/qapi.c's dump_qobject() layout.  Expected texts are
 * qemu-img 7.2 output (captured from the oracle) unless marked "from the
 * source" (cases qemu-img info cannot produce, derived from QEMU 7.2's
 * qobject/json-writer.c and block/qapi.c).
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "qobj.h"

static char *json(const struct qobj *o)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    cr_assert_eq(qobj_to_json(f, o), 0);
    fclose(f);
    return buf;
}

static char *human(const struct qobj *o, int indent)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    cr_assert_eq(qobj_dump_human(f, indent, o), 0);
    fclose(f);
    return buf;
}

Test(cmd_qobj, tdb_hash_values)
{
    /* From the source: tdb_hash() of qobject/qdict.c. */
    cr_expect_eq(qobj_tdb_hash("filename"), 3232703801u);
    cr_expect_eq(qobj_tdb_hash("dirty-flag"), 708147701u);
    cr_expect_eq(qobj_tdb_hash("backing-filename-format"), 3782586574u);
    cr_expect_eq(qobj_tdb_hash("aa") % 512, qobj_tdb_hash("aq") % 512);
}

/* ImageInfo members inserted in QAPI order come out in qemu-img's order. */
Test(cmd_qobj, image_info_key_order)
{
    struct qobj *d = qobj_dict_new();
    char *s;

    qobj_dict_put_str(d, "filename", "top.qcow2");
    qobj_dict_put_str(d, "format", "qcow2");
    qobj_dict_put_bool(d, "dirty-flag", false);
    qobj_dict_put_int(d, "actual-size", 200704);
    qobj_dict_put_int(d, "virtual-size", 16777216);
    qobj_dict_put_int(d, "cluster-size", 65536);
    qobj_dict_put_str(d, "backing-filename", "base.qcow2");
    qobj_dict_put_str(d, "full-backing-filename", "base.qcow2");
    qobj_dict_put_str(d, "backing-filename-format", "qcow2");
    s = json(d);
    cr_expect_str_eq(s, "{\n"
                        "    \"backing-filename-format\": \"qcow2\",\n"
                        "    \"virtual-size\": 16777216,\n"
                        "    \"filename\": \"top.qcow2\",\n"
                        "    \"cluster-size\": 65536,\n"
                        "    \"format\": \"qcow2\",\n"
                        "    \"actual-size\": 200704,\n"
                        "    \"full-backing-filename\": \"base.qcow2\",\n"
                        "    \"backing-filename\": \"base.qcow2\",\n"
                        "    \"dirty-flag\": false\n"
                        "}");
    free(s);
    qobj_free(d);
}

/* From the source: head insertion, so within a bucket the newest key first. */
Test(cmd_qobj, same_bucket_newest_first)
{
    struct qobj *d = qobj_dict_new();
    char *s;

    qobj_dict_put_int(d, "aa", 1);
    qobj_dict_put_int(d, "aq", 2);
    s = json(d);
    cr_expect_str_eq(s, "{\n    \"aq\": 2,\n    \"aa\": 1\n}");
    free(s);
    /* Replacing a value keeps the entry where it is. */
    qobj_dict_put_int(d, "aa", 3);
    s = json(d);
    cr_expect_str_eq(s, "{\n    \"aq\": 2,\n    \"aa\": 3\n}");
    free(s);
    qobj_free(d);
}

/* Bitmap list with an empty flags list (qemu-img info of ext.qcow2). */
static struct qobj *bitmaps(void)
{
    struct qobj *l = qobj_list_new(), *b0 = qobj_dict_new(), *b1 = qobj_dict_new();
    struct qobj *f0 = qobj_list_new();

    qobj_dict_put_str(b0, "name", "bm0");
    qobj_dict_put(b0, "granularity", qobj_uint_new(65536));
    qobj_list_append(f0, qobj_str_new("auto"));
    qobj_dict_put(b0, "flags", f0);
    qobj_dict_put_str(b1, "name", "bm1");
    qobj_dict_put(b1, "granularity", qobj_uint_new(1048576));
    qobj_dict_put(b1, "flags", qobj_list_new());
    qobj_list_append(l, b0);
    qobj_list_append(l, b1);
    return l;
}

Test(cmd_qobj, nested_json)
{
    struct qobj *d = qobj_dict_new();
    char *s;

    qobj_dict_put(d, "bitmaps", bitmaps());
    s = json(d);
    cr_expect_str_eq(s, "{\n"
                        "    \"bitmaps\": [\n"
                        "        {\n"
                        "            \"flags\": [\n"
                        "                \"auto\"\n"
                        "            ],\n"
                        "            \"name\": \"bm0\",\n"
                        "            \"granularity\": 65536\n"
                        "        },\n"
                        "        {\n"
                        "            \"flags\": [\n"
                        "            ],\n"
                        "            \"name\": \"bm1\",\n"
                        "            \"granularity\": 1048576\n"
                        "        }\n"
                        "    ]\n"
                        "}");
    free(s);
    qobj_free(d);
}

Test(cmd_qobj, nested_human)
{
    struct qobj *d = qobj_dict_new();
    char *s;

    qobj_dict_put_bool(d, "lazy-refcounts", true);
    qobj_dict_put(d, "bitmaps", bitmaps());
    s = human(d, 1);
    cr_expect_str_eq(s, "    lazy refcounts: true\n"
                        "    bitmaps:\n"
                        "        [0]:\n"
                        "            flags:\n"
                        "                [0]: auto\n"
                        "            name: bm0\n"
                        "            granularity: 65536\n"
                        "        [1]:\n"
                        "            flags:\n"
                        "            name: bm1\n"
                        "            granularity: 1048576\n");
    free(s);
    qobj_free(d);
}

/* From the source: an empty dict and a top-level scalar list. */
Test(cmd_qobj, empty_and_scalars)
{
    struct qobj *l = qobj_list_new();
    char *s;

    qobj_list_append(l, qobj_dict_new());
    qobj_list_append(l, qobj_int_new(-5));
    qobj_list_append(l, qobj_bool_new(true));
    s = json(l);
    cr_expect_str_eq(s, "[\n    {\n    },\n    -5,\n    true\n]");
    free(s);
    s = human(l, 0);
    cr_expect_str_eq(s, "[0]:\n[1]: -5\n[2]: true\n");
    free(s);
    qobj_free(l);
}

/* qemu-img info --output=json of an image with this backing file name. */
Test(cmd_qobj, json_string_escapes)
{
    struct qobj *l = qobj_list_new();
    char *s;

    qobj_list_append(l,
                     qobj_str_new("a\"b\\c\td\001e\303\251f\377g\360\237\230\200h\355\240\200i"));
    s = json(l);
    cr_expect_str_eq(
        s, "[\n    \"a\\\"b\\\\c\\td\\u0001e\\u00E9f\\uFFFDg\\uD83D\\uDE00h\\uFFFDi\"\n]");
    free(s);
    qobj_free(l);
}

/* From the source: a truncated multi-byte sequence, overlong forms, DEL. */
Test(cmd_qobj, json_string_edge_utf8)
{
    struct qobj *l = qobj_list_new();
    char *s;

    qobj_list_append(l, qobj_str_new("\303"));         /* cut short */
    qobj_list_append(l, qobj_str_new("\300\200x"));    /* \xC0\x80 is U+0000 */
    qobj_list_append(l, qobj_str_new("\340\200\257")); /* overlong '/' */
    qobj_list_append(l, qobj_str_new("\177\b\f\n\r"));
    qobj_list_append(l, qobj_str_newn("ab\0cd", 5)); /* cut at the NUL */
    s = json(l);
    cr_expect_str_eq(s, "[\n"
                        "    \"\\uFFFD\",\n"
                        "    \"\\u0000x\",\n"
                        "    \"\\uFFFD\",\n"
                        "    \"\\u007F\\b\\f\\n\\r\",\n"
                        "    \"ab\"\n"
                        "]");
    free(s);
    qobj_free(l);
}

Test(cmd_qobj, clone_and_failure)
{
    struct qobj *d = qobj_dict_new(), *c;
    char *a, *b;

    qobj_dict_put(d, "bitmaps", bitmaps());
    c = qobj_clone(d);
    a = json(d);
    b = json(c);
    cr_expect_str_eq(a, b);
    free(a);
    free(b);
    cr_expect_not_null(qobj_dict_get(c, "bitmaps"));
    cr_expect_null(qobj_dict_get(c, "nope"));
    /* A NULL value (failed allocation) poisons the container and its parents. */
    qobj_dict_put(c, "x", NULL);
    cr_expect(qobj_failed(c));
    qobj_dict_put(d, "c", c);
    cr_expect(qobj_failed(d));
    qobj_free(d);
}
