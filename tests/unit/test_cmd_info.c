/*
 * cmd/info.c renderers: synthetic guest results for images whose
 * qemu-img 7.2 output was captured from the oracle (Debian 12 qemu-img,
 * TZ=UTC); the expected texts below are those captures, byte for byte.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <getopt.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmds.h"

#include "info.h"
#include "qobj.h"
#include "result.h"
#include "vmm.h"

/* --- A result blob builder, like the guest's rbuf --- */

struct blob {
    union {
        uint8_t buf[1 << 18]; /* more than struct instar_info_result */
        uint64_t align;
    } u;
    size_t len;
};

static struct blob B; /* the blob the fake monitor below returns */

static struct instar_info_result *R(void)
{
    return (struct instar_info_result *)B.u.buf;
}

static void blob_init(void)
{
    memset(&B, 0, sizeof(B));
    B.len = sizeof(struct instar_info_result);
}

static struct instar_str blob_str(const char *s)
{
    struct instar_str r = {(uint32_t)B.len, (uint32_t)strlen(s)};

    memcpy(B.u.buf + B.len, s, strlen(s));
    B.len += strlen(s) ? strlen(s) : 1;
    return r;
}

static uint32_t blob_array(size_t elem, size_t n)
{
    uint32_t off;

    B.len = (B.len + 7) & ~(size_t)7;
    off = (uint32_t)B.len;
    B.len += elem * n;
    return off;
}

static void blob_finish(void)
{
    R()->hdr.magic = INSTAR_RESULT_MAGIC;
    R()->hdr.abi_version = INSTAR_ABI_VERSION;
    R()->hdr.op = INSTAR_OP_INFO;
    R()->hdr.size = (uint32_t)B.len;
}

static void base_qcow2(uint64_t vsize)
{
    blob_init();
    strcpy(R()->format, "qcow2");
    R()->virtual_size = vsize;
    R()->cluster_size = 65536;
    R()->flags = INSTAR_INFO_DIRTY_VALID | INSTAR_INFO_QCOW2;
    R()->qcow2_version = 3;
    R()->refcount_bits = 16;
}

/* Validate the blob and turn it into an image_info named filename. */
static struct image_info *to_info(const char *filename, int64_t actual)
{
    struct result_info v;
    struct image_info *ii = calloc(1, sizeof(*ii));

    blob_finish();
    cr_assert_eq(result_info_parse(B.u.buf, B.len, &v), RESULT_OK);
    ii->filename = strdup(filename);
    ii->has_actual_size = true;
    ii->actual_size = actual;
    cr_assert_eq(info_from_result(ii, &v), 0);
    return ii;
}

static char *render_human(struct image_info *const *list, int n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int i;

    for (i = 0; i < n; i++) {
        if (i)
            fputc('\n', f);
        cr_assert_eq(info_dump_human(f, list[i]), 0);
    }
    fclose(f);
    return buf;
}

static char *render_json(struct image_info *const *list, int n, bool chain)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct qobj *root;
    int i;

    if (chain) {
        root = qobj_list_new();
        for (i = 0; i < n; i++)
            qobj_list_append(root, info_to_qobj(list[i]));
    } else {
        root = info_to_qobj(list[0]);
    }
    cr_assert(!qobj_failed(root));
    cr_assert_eq(qobj_to_json(f, root), 0);
    fputc('\n', f);
    fclose(f);
    qobj_free(root);
    return buf;
}

static void check_both(struct image_info *const *list, int n, bool chain, const char *human,
                       const char *json)
{
    char *h = render_human(list, n), *j = render_json(list, n, chain);

    cr_expect_str_eq(h, human);
    cr_expect_str_eq(j, json);
    free(h);
    free(j);
}

static void utc(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
}

/* --- Oracle captures --- */

static const char ext_txt[] = "image: ext.qcow2\n"
                              "file format: qcow2\n"
                              "virtual size: 64 MiB (67108864 bytes)\n"
                              "disk size: 288 KiB\n"
                              "cluster_size: 65536\n"
                              "Format specific information:\n"
                              "    compat: 1.1\n"
                              "    compression type: zstd\n"
                              "    lazy refcounts: true\n"
                              "    bitmaps:\n"
                              "        [0]:\n"
                              "            flags:\n"
                              "                [0]: auto\n"
                              "            name: bm0\n"
                              "            granularity: 65536\n"
                              "        [1]:\n"
                              "            flags:\n"
                              "            name: bm1\n"
                              "            granularity: 1048576\n"
                              "    refcount bits: 16\n"
                              "    data file: data.raw\n"
                              "    data file raw: true\n"
                              "    corrupt: false\n"
                              "    extended l2: true\n";

static const char ext_json[] = "{\n"
                               "    \"virtual-size\": 67108864,\n"
                               "    \"filename\": \"ext.qcow2\",\n"
                               "    \"cluster-size\": 65536,\n"
                               "    \"format\": \"qcow2\",\n"
                               "    \"actual-size\": 294912,\n"
                               "    \"format-specific\": {\n"
                               "        \"type\": \"qcow2\",\n"
                               "        \"data\": {\n"
                               "            \"compat\": \"1.1\",\n"
                               "            \"compression-type\": \"zstd\",\n"
                               "            \"lazy-refcounts\": true,\n"
                               "            \"bitmaps\": [\n"
                               "                {\n"
                               "                    \"flags\": [\n"
                               "                        \"auto\"\n"
                               "                    ],\n"
                               "                    \"name\": \"bm0\",\n"
                               "                    \"granularity\": 65536\n"
                               "                },\n"
                               "                {\n"
                               "                    \"flags\": [\n"
                               "                    ],\n"
                               "                    \"name\": \"bm1\",\n"
                               "                    \"granularity\": 1048576\n"
                               "                }\n"
                               "            ],\n"
                               "            \"refcount-bits\": 16,\n"
                               "            \"data-file\": \"data.raw\",\n"
                               "            \"data-file-raw\": true,\n"
                               "            \"corrupt\": false,\n"
                               "            \"extended-l2\": true\n"
                               "        }\n"
                               "    },\n"
                               "    \"dirty-flag\": false\n"
                               "}\n";

static const char luks_txt[] = "image: luks.qcow2\n"
                               "file format: qcow2\n"
                               "virtual size: 16 MiB (16777216 bytes)\n"
                               "disk size: 2.19 MiB\n"
                               "encrypted: yes\n"
                               "cluster_size: 65536\n"
                               "Format specific information:\n"
                               "    compat: 1.1\n"
                               "    compression type: zlib\n"
                               "    lazy refcounts: false\n"
                               "    refcount bits: 16\n"
                               "    encrypt:\n"
                               "        ivgen alg: plain64\n"
                               "        hash alg: sha256\n"
                               "        cipher alg: aes-256\n"
                               "        uuid: 4c9fa6ac-4b4e-4e6b-af92-4442d7ba84e3\n"
                               "        format: luks\n"
                               "        cipher mode: xts\n"
                               "        slots:\n"
                               "            [0]:\n"
                               "                active: true\n"
                               "                iters: 65536\n"
                               "                key offset: 4096\n"
                               "                stripes: 4000\n"
                               "            [1]:\n"
                               "                active: false\n"
                               "                key offset: 262144\n"
                               "            [2]:\n"
                               "                active: false\n"
                               "                key offset: 520192\n"
                               "            [3]:\n"
                               "                active: false\n"
                               "                key offset: 778240\n"
                               "            [4]:\n"
                               "                active: false\n"
                               "                key offset: 1036288\n"
                               "            [5]:\n"
                               "                active: false\n"
                               "                key offset: 1294336\n"
                               "            [6]:\n"
                               "                active: false\n"
                               "                key offset: 1552384\n"
                               "            [7]:\n"
                               "                active: false\n"
                               "                key offset: 1810432\n"
                               "        payload offset: 2068480\n"
                               "        master key iters: 8192\n"
                               "    corrupt: false\n"
                               "    extended l2: false\n";

static const char luks_json[] =
    "{\n"
    "    \"virtual-size\": 16777216,\n"
    "    \"filename\": \"luks.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 2297856,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"refcount-bits\": 16,\n"
    "            \"encrypt\": {\n"
    "                \"ivgen-alg\": \"plain64\",\n"
    "                \"hash-alg\": \"sha256\",\n"
    "                \"cipher-alg\": \"aes-256\",\n"
    "                \"uuid\": \"4c9fa6ac-4b4e-4e6b-af92-4442d7ba84e3\",\n"
    "                \"format\": \"luks\",\n"
    "                \"cipher-mode\": \"xts\",\n"
    "                \"slots\": [\n"
    "                    {\n"
    "                        \"active\": true,\n"
    "                        \"iters\": 65536,\n"
    "                        \"key-offset\": 4096,\n"
    "                        \"stripes\": 4000\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 262144\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 520192\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 778240\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 1036288\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 1294336\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 1552384\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 1810432\n"
    "                    }\n"
    "                ],\n"
    "                \"payload-offset\": 2068480,\n"
    "                \"master-key-iters\": 8192\n"
    "            },\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"encrypted\": true,\n"
    "    \"dirty-flag\": false\n"
    "}\n";

static const char v2_txt[] =
    "image: v2.qcow2\n"
    "file format: qcow2\n"
    "virtual size: 1 GiB (1073741824 bytes)\n"
    "disk size: 212 KiB\n"
    "cluster_size: 65536\n"
    "Snapshot list:\n"
    "ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\n"
    "1         snap1                 0 B 2026-11-21 18:07:43 00:00:00.000          0\n"
    "2         a much longer snapshot name here      0 B 2026-11-21 18:07:43 00:00:00.000          "
    "0\n"
    "Format specific information:\n"
    "    compat: 0.10\n"
    "    compression type: zlib\n"
    "    refcount bits: 16\n";

static const char v2_json[] = "{\n"
                              "    \"snapshots\": [\n"
                              "        {\n"
                              "            \"icount\": 0,\n"
                              "            \"vm-clock-nsec\": 0,\n"
                              "            \"name\": \"snap1\",\n"
                              "            \"date-sec\": 1795284463,\n"
                              "            \"date-nsec\": 980701000,\n"
                              "            \"vm-clock-sec\": 0,\n"
                              "            \"id\": \"1\",\n"
                              "            \"vm-state-size\": 0\n"
                              "        },\n"
                              "        {\n"
                              "            \"icount\": 0,\n"
                              "            \"vm-clock-nsec\": 0,\n"
                              "            \"name\": \"a much longer snapshot name here\",\n"
                              "            \"date-sec\": 1795284463,\n"
                              "            \"date-nsec\": 989841000,\n"
                              "            \"vm-clock-sec\": 0,\n"
                              "            \"id\": \"2\",\n"
                              "            \"vm-state-size\": 0\n"
                              "        }\n"
                              "    ],\n"
                              "    \"virtual-size\": 1073741824,\n"
                              "    \"filename\": \"v2.qcow2\",\n"
                              "    \"cluster-size\": 65536,\n"
                              "    \"format\": \"qcow2\",\n"
                              "    \"actual-size\": 217088,\n"
                              "    \"format-specific\": {\n"
                              "        \"type\": \"qcow2\",\n"
                              "        \"data\": {\n"
                              "            \"compat\": \"0.10\",\n"
                              "            \"compression-type\": \"zlib\",\n"
                              "            \"refcount-bits\": 16\n"
                              "        }\n"
                              "    },\n"
                              "    \"dirty-flag\": false\n"
                              "}\n";

static const char weird_json[] =
    "{\n"
    "    \"backing-filename-format\": \"qcow2\",\n"
    "    \"virtual-size\": 1048576,\n"
    "    \"filename\": \"weird.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 200704,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"refcount-bits\": 16,\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"full-backing-filename\": "
    "\"a\\\"b\\\\c\\td\\u0001e\\u00E9f\\uFFFDg\\uD83D\\uDE00h\\uFFFDi.qcow2\",\n"
    "    \"backing-filename\": "
    "\"a\\\"b\\\\c\\td\\u0001e\\u00E9f\\uFFFDg\\uD83D\\uDE00h\\uFFFDi.qcow2\",\n"
    "    \"dirty-flag\": false\n"
    "}\n";

static const char weird_txt[] =
    "image: weird.qcow2\n"
    "file format: qcow2\n"
    "virtual size: 1 MiB (1048576 bytes)\n"
    "disk size: 196 KiB\n"
    "cluster_size: 65536\n"
    "backing file: a\"b\\c\td\001e\303\251f\377g\360\237\230\200h\355\240\200i.qcow2\n"
    "backing file format: qcow2\n"
    "Format specific information:\n"
    "    compat: 1.1\n"
    "    compression type: zlib\n"
    "    lazy refcounts: false\n"
    "    refcount bits: 16\n"
    "    corrupt: false\n"
    "    extended l2: false\n";

static const char chain_json[] = "[\n"
                                 "    {\n"
                                 "        \"backing-filename-format\": \"qcow2\",\n"
                                 "        \"virtual-size\": 16777216,\n"
                                 "        \"filename\": \"sub/top2.qcow2\",\n"
                                 "        \"cluster-size\": 65536,\n"
                                 "        \"format\": \"qcow2\",\n"
                                 "        \"actual-size\": 200704,\n"
                                 "        \"format-specific\": {\n"
                                 "            \"type\": \"qcow2\",\n"
                                 "            \"data\": {\n"
                                 "                \"compat\": \"1.1\",\n"
                                 "                \"compression-type\": \"zlib\",\n"
                                 "                \"lazy-refcounts\": false,\n"
                                 "                \"refcount-bits\": 16,\n"
                                 "                \"corrupt\": false,\n"
                                 "                \"extended-l2\": false\n"
                                 "            }\n"
                                 "        },\n"
                                 "        \"full-backing-filename\": \"sub/../base.qcow2\",\n"
                                 "        \"backing-filename\": \"../base.qcow2\",\n"
                                 "        \"dirty-flag\": false\n"
                                 "    },\n"
                                 "    {\n"
                                 "        \"virtual-size\": 16777216,\n"
                                 "        \"filename\": \"sub/../base.qcow2\",\n"
                                 "        \"cluster-size\": 65536,\n"
                                 "        \"format\": \"qcow2\",\n"
                                 "        \"actual-size\": 200704,\n"
                                 "        \"format-specific\": {\n"
                                 "            \"type\": \"qcow2\",\n"
                                 "            \"data\": {\n"
                                 "                \"compat\": \"1.1\",\n"
                                 "                \"compression-type\": \"zlib\",\n"
                                 "                \"lazy-refcounts\": false,\n"
                                 "                \"refcount-bits\": 16,\n"
                                 "                \"corrupt\": false,\n"
                                 "                \"extended-l2\": false\n"
                                 "            }\n"
                                 "        },\n"
                                 "        \"dirty-flag\": false\n"
                                 "    }\n"
                                 "]\n";

static const char chain_txt[] = "image: sub/top2.qcow2\n"
                                "file format: qcow2\n"
                                "virtual size: 16 MiB (16777216 bytes)\n"
                                "disk size: 196 KiB\n"
                                "cluster_size: 65536\n"
                                "backing file: ../base.qcow2 (actual path: sub/../base.qcow2)\n"
                                "backing file format: qcow2\n"
                                "Format specific information:\n"
                                "    compat: 1.1\n"
                                "    compression type: zlib\n"
                                "    lazy refcounts: false\n"
                                "    refcount bits: 16\n"
                                "    corrupt: false\n"
                                "    extended l2: false\n"
                                "\n"
                                "image: sub/../base.qcow2\n"
                                "file format: qcow2\n"
                                "virtual size: 16 MiB (16777216 bytes)\n"
                                "disk size: 196 KiB\n"
                                "cluster_size: 65536\n"
                                "Format specific information:\n"
                                "    compat: 1.1\n"
                                "    compression type: zlib\n"
                                "    lazy refcounts: false\n"
                                "    refcount bits: 16\n"
                                "    corrupt: false\n"
                                "    extended l2: false\n";

static const char aes_txt[] = "image: aes.qcow2\n"
                              "file format: qcow2\n"
                              "virtual size: 16 MiB (16777216 bytes)\n"
                              "disk size: 196 KiB\n"
                              "encrypted: yes\n"
                              "cluster_size: 65536\n"
                              "Format specific information:\n"
                              "    compat: 1.1\n"
                              "    compression type: zlib\n"
                              "    lazy refcounts: false\n"
                              "    refcount bits: 16\n"
                              "    encrypt:\n"
                              "        format: aes\n"
                              "    corrupt: false\n"
                              "    extended l2: false\n";

/* --- Tests --- */

TestSuite(cmd_info, .init = utc);

/*
 * qemu-img create -f qcow2 -o data_file=data.raw,data_file_raw=on,
 * lazy_refcounts=on,compression_type=zstd,extended_l2=on ext.qcow2 64M;
 * bitmap --add bm0; bitmap --add -g 1M bm1; bitmap --disable bm1.
 */
Test(cmd_info, qcow2_data_file_bitmaps)
{
    struct instar_info_bitmap *bm;
    struct image_info *ii;
    uint32_t off;

    base_qcow2(67108864);
    R()->qcow2_flags = INSTAR_QCOW2_HAS_DATA_FILE | INSTAR_QCOW2_DATA_FILE_RAW |
                       INSTAR_QCOW2_HAS_BITMAPS | INSTAR_QCOW2_LAZY_REFS | INSTAR_QCOW2_EXTENDED_L2;
    R()->compression_type = 1;
    R()->data_file = blob_str("data.raw");
    R()->nbitmaps = 2;
    off = blob_array(sizeof(*bm), 2);
    R()->bitmaps_off = off;
    bm = (struct instar_info_bitmap *)(B.u.buf + off);
    bm[0].granularity = 65536;
    bm[0].flags = INSTAR_BITMAP_AUTO;
    bm[1].granularity = 1048576;
    bm[0].name = blob_str("bm0");
    bm[1].name = blob_str("bm1");
    ii = to_info("ext.qcow2", 576 * 512);
    check_both(&ii, 1, false, ext_txt, ext_json);
    image_info_free(ii);
}

/* LUKS-encrypted qcow2 (created under an LD_PRELOAD getrusage shim). */
Test(cmd_info, qcow2_luks)
{
    struct instar_info_luks *l;
    struct image_info *ii;
    unsigned i;

    base_qcow2(16777216);
    R()->flags |= INSTAR_INFO_ENCRYPTED;
    R()->encrypt_format = INSTAR_ENCRYPT_LUKS;
    l = &R()->luks;
    l->cipher_alg = blob_str("aes-256");
    l->cipher_mode = blob_str("xts");
    l->ivgen_alg = blob_str("plain64");
    l->hash_alg = blob_str("sha256");
    l->uuid = blob_str("4c9fa6ac-4b4e-4e6b-af92-4442d7ba84e3");
    l->payload_offset = 2068480;
    l->master_key_iters = 8192;
    for (i = 0; i < INSTAR_LUKS_SLOTS; i++) {
        l->slots[i].stripes = 4000;
        l->slots[i].key_offset = i ? 262144 + (i - 1) * 258048ULL : 4096;
    }
    l->slots[0].active = 1;
    l->slots[0].iters = 65536;
    ii = to_info("luks.qcow2", 4488 * 512);
    check_both(&ii, 1, false, luks_txt, luks_json);
    image_info_free(ii);
}

Test(cmd_info, qcow2_aes)
{
    struct image_info *ii;
    char *h;

    base_qcow2(16777216);
    R()->flags |= INSTAR_INFO_ENCRYPTED;
    R()->encrypt_format = INSTAR_ENCRYPT_AES;
    ii = to_info("aes.qcow2", 392 * 512);
    h = render_human(&ii, 1);
    cr_expect_str_eq(h, aes_txt);
    free(h);
    image_info_free(ii);
}

/* compat=0.10 with two internal snapshots (snapshot -c), TZ=UTC. */
Test(cmd_info, qcow2_v2_snapshots)
{
    struct instar_info_snapshot *sn;
    struct image_info *ii;
    uint32_t off;

    base_qcow2(1073741824);
    R()->qcow2_version = 2;
    R()->nsnapshots = 2;
    off = blob_array(sizeof(*sn), 2);
    R()->snapshots_off = off;
    sn = (struct instar_info_snapshot *)(B.u.buf + off);
    sn[0].date_sec = sn[1].date_sec = 1795284463;
    sn[0].date_nsec = 980701000;
    sn[1].date_nsec = 989841000;
    sn[0].id = blob_str("1");
    sn[0].name = blob_str("snap1");
    sn[1].id = blob_str("2");
    sn[1].name = blob_str("a much longer snapshot name here");
    ii = to_info("v2.qcow2", 424 * 512);
    check_both(&ii, 1, false, v2_txt, v2_json);
    image_info_free(ii);
}

/* A backing file name with quotes, controls, UTF-8, bad bytes, a surrogate. */
Test(cmd_info, json_escaping)
{
    struct image_info *ii;

    base_qcow2(1048576);
    R()->backing_file =
        blob_str("a\"b\\c\td\001e\303\251f\377g\360\237\230\200h\355\240\200i.qcow2");
    R()->backing_fmt = blob_str("qcow2");
    ii = to_info("weird.qcow2", 392 * 512);
    check_both(&ii, 1, false, weird_txt, weird_json);
    image_info_free(ii);
}

/* info --backing-chain sub/top2.qcow2 (backing ../base.qcow2). */
Test(cmd_info, backing_chain)
{
    struct image_info *ii[2];

    base_qcow2(16777216);
    R()->backing_file = blob_str("../base.qcow2");
    R()->backing_fmt = blob_str("qcow2");
    ii[0] = to_info("sub/top2.qcow2", 392 * 512);
    cr_assert_str_eq(ii[0]->full_backing_filename, "sub/../base.qcow2");
    base_qcow2(16777216);
    ii[1] = to_info(ii[0]->full_backing_filename, 392 * 512);
    check_both(ii, 2, true, chain_txt, chain_json);
    image_info_free(ii[0]);
    image_info_free(ii[1]);
}

/* An external data file makes QEMU's snapshot listing fail (-ENOTSUP): none shown. */
Test(cmd_info, data_file_hides_snapshots)
{
    struct instar_info_snapshot *sn;
    struct image_info *ii;

    base_qcow2(1048576);
    R()->qcow2_flags = INSTAR_QCOW2_HAS_DATA_FILE;
    R()->nsnapshots = 1;
    R()->snapshots_off = blob_array(sizeof(*sn), 1);
    sn = (struct instar_info_snapshot *)(B.u.buf + R()->snapshots_off);
    sn->id = blob_str("1");
    sn->name = blob_str("x");
    ii = to_info("d.qcow2", 0);
    cr_expect_eq(ii->nsnapshots, 0);
    image_info_free(ii);
}

/* bdrv_snapshot_dump: VM CLOCK, ICOUNT absent, long names, size units. */
Test(cmd_info, snapshot_row)
{
    struct info_snapshot sn = {
        .id = "12",
        .name = "averyveryverylongtagname",
        .vm_state_size = 1536 * 1024,
        .vm_clock_nsec = 3723004000000ULL, /* 1h 2m 3.004s */
        .icount = UINT64_MAX,
        .date_sec = 0,
    };
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    info_snapshot_dump(f, &sn);
    fclose(f);
    cr_expect_str_eq(buf, "12        averyveryverylongtagname  1.5 MiB 1970-01-01 00:00:00 "
                          "01:02:03.004           ");
    free(buf);
}

/* raw answered by the host; dirty flag false, no cluster size. */
Test(cmd_info, raw_json)
{
    struct image_info ii = {
        .filename = "r.raw",
        .format = "raw",
        .virtual_size = 1024,
        .has_actual_size = true,
        .has_dirty_flag = true,
    };
    struct image_info *p = &ii;
    char *j = render_json(&p, 1, false), *h = render_human(&p, 1);

    cr_expect_str_eq(j, "{\n    \"virtual-size\": 1024,\n    \"filename\": \"r.raw\",\n"
                        "    \"format\": \"raw\",\n    \"actual-size\": 0,\n"
                        "    \"dirty-flag\": false\n}\n");
    cr_expect_str_eq(h, "image: r.raw\nfile format: raw\nvirtual size: 1 KiB (1024 bytes)\n"
                        "disk size: 0 B\n");
    free(j);
    free(h);
}

/* --- Strings that overlap, or are longer than what is kept --- */

/*
 * A blob of nsn snapshots (malloc'd, caller frees) with ids of id_len and
 * names of name_len bytes: each its own, or when shared all of them the
 * same bytes.  *len receives the blob's length.
 */
static uint8_t *snapshots_blob(uint32_t nsn, uint32_t id_len, uint32_t name_len, bool shared,
                               size_t *len)
{
    size_t arr = (sizeof(struct instar_info_result) + 7) & ~(size_t)7;
    size_t strs = arr + (size_t)nsn * sizeof(struct instar_info_snapshot);
    size_t each = shared ? (id_len > name_len ? id_len : name_len) : (size_t)id_len + name_len;
    size_t n = strs + (shared ? 1 : (size_t)nsn) * each;
    struct instar_info_result *r;
    uint8_t *b = calloc(1, n);
    uint32_t i;

    cr_assert_not_null(b);
    r = (struct instar_info_result *)b;
    strcpy(r->format, "qcow2");
    r->virtual_size = 1 << 20;
    r->cluster_size = 65536;
    r->flags = INSTAR_INFO_QCOW2;
    r->qcow2_version = 3;
    r->refcount_bits = 16;
    r->nsnapshots = nsn;
    r->snapshots_off = (uint32_t)arr;
    memset(b + strs, 'x', n - strs);
    for (i = 0; i < nsn; i++) {
        struct instar_info_snapshot sn;
        size_t at = strs + (shared ? 0 : (size_t)i * each);

        memset(&sn, 0, sizeof(sn));
        sn.id.off = (uint32_t)at;
        sn.id.len = id_len;
        sn.name.off = (uint32_t)(shared ? at : at + id_len);
        sn.name.len = name_len;
        sn.icount = UINT64_MAX;
        memcpy(b + arr + (size_t)i * sizeof(sn), &sn, sizeof(sn));
    }
    r->hdr.magic = INSTAR_RESULT_MAGIC;
    r->hdr.abi_version = INSTAR_ABI_VERSION;
    r->hdr.op = INSTAR_OP_INFO;
    r->hdr.size = (uint32_t)n;
    *len = n;
    return b;
}

/* The child's address space now, from /proc/self/status (VmSize), in bytes. */
static rlim_t vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long kib = 0;

    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmSize: %lu kB", &kib) == 1)
            break;
    fclose(f);
    cr_assert_gt(kib, 0);
    return (rlim_t)kib << 10;
}

/*
 * In a child limited to 256 MiB of address space beyond what it has:
 * parse the blob, and if it is valid, build the image_info and render it
 * both ways.  Exit codes: 0 refused or rendered, 1 out of memory.
 */
static int render_limited(const uint8_t *b, size_t len)
{
    struct rlimit rl;
    int status;
    pid_t pid = fork();

    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct image_info *ii = calloc(1, sizeof(*ii));
        struct result_info v;
        struct qobj *o;
        FILE *null = fopen("/dev/null", "w");

        rl.rlim_cur = rl.rlim_max = vm_size() + (256ULL << 20);
        if (!ii || !null || setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(2);
        if (result_info_parse(b, len, &v) != RESULT_OK)
            _exit(0);
        ii->filename = strdup("x.qcow2");
        if (!ii->filename || info_from_result(ii, &v) < 0)
            _exit(1);
        if (info_dump_human(null, ii) < 0)
            _exit(1);
        o = info_to_qobj(ii);
        if (qobj_failed(o) || qobj_to_json(null, o) < 0)
            _exit(1);
        _exit(0);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "child killed by signal %d", WTERMSIG(status));
    return WEXITSTATUS(status);
}

/*
 * 65,536 snapshots whose ids and names are one 64 KiB string: a 3.2 MiB
 * blob that made the host allocate 8 GiB (64 KiB per string, cut to
 * 127/255 bytes afterwards).  Refused, or rendered within the limit.
 */
Test(cmd_info, shared_strings_bounded)
{
    size_t len;
    uint8_t *b = snapshots_blob(65536, INSTAR_STR_MAX, INSTAR_STR_MAX, true, &len);

    cr_expect_lt(len, 4u << 20);
    cr_expect_eq(render_limited(b, len), 0);
    free(b);
    /* The same with an id and a name of their own: 32768 snapshots fit a result. */
    b = snapshots_blob(32768, 127, 255, false, &len);
    cr_assert_leq(len, INSTAR_RESULT_MAX);
    cr_expect_eq(render_limited(b, len), 0);
    free(b);
}

/* QEMU keeps 127 / 255 bytes of an id / name: no more is copied, not even briefly. */
Test(cmd_info, snapshot_strings_cut_before_copy)
{
    struct image_info *ii = calloc(1, sizeof(*ii));
    struct result_info v;
    size_t len;
    uint8_t *b = snapshots_blob(1, 60000, 60000, false, &len);

    cr_assert_eq(result_info_parse(b, len, &v), RESULT_OK);
    ii->filename = strdup("x.qcow2");
    cr_assert_eq(info_from_result(ii, &v), 0);
    cr_assert_eq(ii->nsnapshots, 1);
    cr_expect_eq(strlen(ii->snapshots[0].id), 127);
    cr_expect_eq(strlen(ii->snapshots[0].name), 255);
    cr_expect_lt(malloc_usable_size(ii->snapshots[0].id), 1024);
    cr_expect_lt(malloc_usable_size(ii->snapshots[0].name), 1024);
    image_info_free(ii);
    free(b);
}

/*
 * With chain_next set, each run answers an image named "<n>.img" whose
 * backing file is "<n+1>.img" (n counts the runs).
 */
static bool chain_next;
static unsigned nruns;

static void fake_prepare(void)
{
    if (!chain_next)
        return;
    char name[32];

    base_qcow2(1048576);
    snprintf(name, sizeof(name), "%u.img", nruns + 1);
    R()->backing_file = blob_str(name);
}

/* --- cmd_info end to end, with a fake monitor that returns B --- */

static enum vmm_status fake_status = VMM_OK;
static struct instar_info_args fake_args;

int vmm_run(const struct vmm_config *cfg, uint32_t op, const void *args, size_t args_len,
            const struct vmm_dev *devs, unsigned ndevs, struct vmm_outcome *out)
{
    (void)cfg;
    (void)devs;
    cr_assert_eq(op, INSTAR_OP_INFO);
    cr_assert_eq(ndevs, 1);
    cr_assert_eq(args_len, sizeof(fake_args));
    memcpy(&fake_args, args, sizeof(fake_args));
    memset(out, 0, sizeof(*out));
    out->status = fake_status;
    fake_prepare();
    nruns++;
    if (fake_status != VMM_OK) {
        snprintf(out->detail, sizeof(out->detail), "the sandbox guest crashed\033[31m");
        return -1;
    }
    blob_finish();
    out->result = malloc(B.len);
    memcpy(out->result, B.u.buf, B.len);
    out->result_len = B.len;
    return 0;
}

/* Run cmd_info on argv (NULL-terminated) in a fresh temporary directory. */
static int run_info(const char **args)
{
    char *argv[16];
    int argc = 0;

    argv[argc++] = "info";
    while (*args)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    optind = 0;
    return cmd_info(argc, argv);
}

static char tmpdir[64];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void tmpdir_fini(void)
{
    if (chdir("/") == 0 && tmpdir[0])
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void tmpdir_init(void)
{
    utc();
    cr_redirect_stdout();
    cr_redirect_stderr();
    strcpy(tmpdir, "/tmp/instar-cmd-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    cr_assert_eq(chdir(tmpdir), 0);
    fake_status = VMM_OK;
    chain_next = false;
    nruns = 0;
    unsetenv("INSTAR_BACKING_ALLOW");
}

static void touch(const char *name)
{
    FILE *f = fopen(name, "w");

    cr_assert_not_null(f);
    fclose(f);
}

static void flush(void)
{
    fflush(stdout);
    fflush(stderr);
}

TestSuite(cmd_info_run, .init = tmpdir_init, .fini = tmpdir_fini);

Test(cmd_info_run, qcow2_human)
{
    touch("a.qcow2");
    base_qcow2(16777216);
    R()->backing_file = blob_str("b.qcow2");
    R()->backing_fmt = blob_str("qcow2");
    cr_assert_eq(run_info((const char *[]){"a.qcow2", NULL}), 0);
    cr_assert_str_eq(fake_args.format, "");
    flush();
    cr_assert_stdout_eq_str("image: a.qcow2\n"
                            "file format: qcow2\n"
                            "virtual size: 16 MiB (16777216 bytes)\n"
                            "disk size: 0 B\n"
                            "cluster_size: 65536\n"
                            "backing file: b.qcow2\n"
                            "backing file format: qcow2\n"
                            "Format specific information:\n"
                            "    compat: 1.1\n"
                            "    compression type: zlib\n"
                            "    lazy refcounts: false\n"
                            "    refcount bits: 16\n"
                            "    corrupt: false\n"
                            "    extended l2: false\n");
}

Test(cmd_info_run, format_hint_passed)
{
    touch("a.qcow2");
    base_qcow2(16777216);
    cr_assert_eq(run_info((const char *[]){"-f", "qcow2", "a.qcow2", NULL}), 0);
    cr_assert_str_eq(fake_args.format, "qcow2");
}

Test(cmd_info_run, guest_error_code)
{
    touch("r.raw");
    blob_init();
    R()->hdr.error = 1000; /* QCOW2_ERR_NOT_QCOW2 */
    B.len = sizeof(struct instar_result_hdr);
    cr_assert_eq(run_info((const char *[]){"-f", "qcow2", "r.raw", NULL}), 1);
    flush();
    cr_assert_stderr_eq_str("qemu-img: Could not open 'r.raw': Image is not in qcow2 format\n");
}

Test(cmd_info_run, guest_error_template)
{
    static const char drv[] = "vmdk";

    touch("r.vmdk");
    blob_init();
    R()->hdr.error = 4; /* INSTAR_ERR_UNSUPPORTED_FMT */
    R()->hdr.err_str.off = sizeof(struct instar_result_hdr);
    R()->hdr.err_str.len = sizeof(drv) - 1;
    memcpy(B.u.buf + sizeof(struct instar_result_hdr), drv, sizeof(drv) - 1);
    B.len = sizeof(struct instar_result_hdr) + sizeof(drv) - 1;
    cr_assert_eq(run_info((const char *[]){"r.vmdk", NULL}), 1);
    flush();
    cr_assert_stderr_eq_str(
        "qemu-img: Could not open 'r.vmdk': Image format 'vmdk' is not supported by instar\n");
}

Test(cmd_info_run, sandbox_failure)
{
    touch("a.qcow2");
    fake_status = VMM_GUEST_SHUTDOWN;
    cr_assert_eq(run_info((const char *[]){"a.qcow2", NULL}), 1);
    flush();
    cr_assert_stderr_eq_str(
        "qemu-img: Could not open 'a.qcow2': sandbox failure: the sandbox guest crashed?[31m\n");
}

Test(cmd_info_run, invalid_result)
{
    touch("a.qcow2");
    base_qcow2(16777216);
    R()->backing_file.off = 1u << 30; /* past the end of the blob */
    R()->backing_file.len = 10;
    cr_assert_eq(run_info((const char *[]){"a.qcow2", NULL}), 1);
    flush();
    cr_assert_stderr_eq_str("qemu-img: Could not open 'a.qcow2': sandbox failure: invalid result "
                            "(result string out of bounds)\n");
}

Test(cmd_info_run, raw_is_answered_by_the_host)
{
    touch("r.raw");
    cr_assert_eq(truncate("r.raw", 1000), 0); /* sparse: no blocks allocated */
    fake_status = VMM_GUEST_SHUTDOWN;         /* the monitor must not be asked */
    cr_assert_eq(run_info((const char *[]){"-f", "raw", "--output=json", "r.raw", NULL}), 0);
    flush();
    cr_assert_stdout_eq_str("{\n    \"virtual-size\": 1024,\n    \"filename\": \"r.raw\",\n"
                            "    \"format\": \"raw\",\n    \"actual-size\": 0,\n"
                            "    \"dirty-flag\": false\n}\n");
}

Test(cmd_info_run, unknown_driver_before_open)
{
    cr_assert_eq(run_info((const char *[]){"-f", "", "missing", NULL}), 1);
    flush();
    cr_assert_stderr_eq_str("qemu-img: Could not open 'missing': Unknown driver ''\n");
}

Test(cmd_info_run, missing_backing_ignored_without_chain)
{
    touch("a.qcow2");
    base_qcow2(16777216);
    R()->backing_file = blob_str("json:{\"file\":\"x\"}");
    cr_assert_eq(run_info((const char *[]){"--output", "json", "a.qcow2", NULL}), 0);
}

Test(cmd_info_run, chain_refuses_json_and_protocols)
{
    touch("a.qcow2");
    base_qcow2(16777216);
    R()->backing_file = blob_str("nbd:localhost:10809");
    cr_assert_eq(run_info((const char *[]){"--backing-chain", "a.qcow2", NULL}), 1);
    flush();
    cr_assert_stdout_eq_str("");
    cr_assert_stderr_eq_str("qemu-img: Could not open 'nbd:localhost:10809': Protocol 'nbd' is "
                            "not supported by instar (only local files are opened)\n");
}

Test(cmd_info_run, chain_missing_backing)
{
    touch("a.qcow2");
    base_qcow2(16777216);
    R()->backing_file = blob_str("missing.qcow2");
    cr_assert_eq(run_info((const char *[]){"--backing-chain", "a.qcow2", NULL}), 1);
    flush();
    cr_assert_stderr_eq_str("qemu-img: Could not open 'missing.qcow2': Could not open "
                            "'missing.qcow2': No such file or directory\n");
}

Test(cmd_info_run, chain_loop_by_name)
{
    cr_assert_eq(mkdir("d", 0700), 0);
    touch("d/self.qcow2");
    base_qcow2(16777216);
    R()->backing_file = blob_str("self.qcow2");
    cr_assert_eq(run_info((const char *[]){"--backing-chain", "d/self.qcow2", NULL}), 1);
    flush();
    cr_assert_stderr_eq_str("qemu-img: Backing file 'd/self.qcow2' creates an infinite loop.\n");
}

Test(cmd_info_run, chain_loop_by_inode)
{
    touch("a.qcow2");
    cr_assert_eq(symlink("a.qcow2", "link.qcow2"), 0);
    base_qcow2(16777216);
    R()->backing_file = blob_str("link.qcow2");
    cr_assert_eq(run_info((const char *[]){"--backing-chain", "a.qcow2", NULL}), 1);
    flush();
    cr_assert_stderr_eq_str("qemu-img: Backing file 'link.qcow2' creates an infinite loop.\n");
}

Test(cmd_info_run, chain_depth_limit)
{
    char name[32];
    unsigned i;

    for (i = 0; i <= 20; i++) {
        snprintf(name, sizeof(name), "%u.img", i);
        touch(name);
    }
    chain_next = true;
    cr_assert_eq(run_info((const char *[]){"--backing-chain", "0.img", NULL}), 1);
    flush();
    cr_assert_stderr_eq_str(
        "qemu-img: Could not open '16.img': backing chain longer than 16 images\n");
}

Test(cmd_info_run, chain_allowlist)
{
    cr_assert_eq(mkdir("ok", 0700), 0);
    touch("a.qcow2");
    touch("b.qcow2");
    base_qcow2(16777216);
    R()->backing_file = blob_str("b.qcow2");
    setenv("INSTAR_BACKING_ALLOW", "ok", 1);
    cr_assert_eq(run_info((const char *[]){"--backing-chain", "a.qcow2", NULL}), 1);
    cr_assert_eq(nruns, 1);                  /* b.qcow2 refused before the guest ran */
    R()->backing_file = blob_str("a.qcow2"); /* a.qcow2 is not under ok/ */
    cr_assert_eq(run_info((const char *[]){"--backing-chain", "b.qcow2", NULL}), 1);
    cr_assert_eq(nruns, 2);
    setenv("INSTAR_BACKING_ALLOW", "ok:.", 1);
    base_qcow2(16777216);
    cr_assert_eq(run_info((const char *[]){"--backing-chain", "b.qcow2", NULL}), 0);
}

Test(cmd_info_run, chain_json_list)
{
    touch("0.img");
    touch("1.img");
    chain_next = true;
    /* 1.img's backing 2.img is missing: the walk fails after two runs. */
    cr_assert_eq(run_info((const char *[]){"--backing-chain", "0.img", NULL}), 1);
    cr_assert_eq(nruns, 2);
}

Test(cmd_info_run, usage_errors)
{
    cr_assert_eq(run_info((const char *[]){NULL}), 1);
    cr_assert_eq(run_info((const char *[]){"--output=xml", "x", NULL}), 1);
    cr_assert_eq(run_info((const char *[]){"--image-opts", "x", NULL}), 1);
    flush();
    cr_assert_stderr_eq_str("qemu-img: Expecting one image file name\n"
                            "Try 'qemu-img --help' for more information\n"
                            "qemu-img: --output must be used with human or json as argument.\n"
                            "qemu-img: Could not open 'x': Cannot find device='x' nor "
                            "node-name='x'\n");
}
