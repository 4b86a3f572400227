/*
 * qemu-img measure: how large a new image of format -O would be, for a
 * size (--size: arithmetic only, nothing is read) or for the data of an
 * image (img_measure, and bdrv_measure's qcow2_measure and raw_measure).
 *
 * The qcow2 arithmetic is formats/qcow2/measure.c.  For a source image
 * the host opens it as map does (cmd/open.c) and a guest walks its
 * allocation: the map op (guest/plan_map.c) with qcow2_measure()'s steps
 * (measure_bits, include/instar/abi.h) streams one record per block
 * status step, which the host feeds to the walk.  The source's bitmaps
 * come from the guest's description of the opened image (cmd/info.h).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "datarun.h"
#include "luksopt.h"
#include "object.h"
#include "opts.h"
#include "qobj.h"
#include "report.h"
#include "size.h"
#include "snaparg.h"
#include "spec.h"
#include "qcow2/measure.h"
#include "qcow2/prealloc.h"
#include "qcow2/qcow2_err.h"

enum {
    OPTION_OUTPUT = 256,
    OPTION_OBJECT = 257,
    OPTION_IMAGE_OPTS = 258,
    OPTION_SIZE = 259,
};

#define MSG_MAX 4096

/*
 * Guest RAM for a walk (sparse: untouched pages cost nothing): the active
 * L1 table and a snapshot's, up to 32 MiB each with their byte copies,
 * and the L2 buffers of a chain.
 */
#define MEASURE_GUEST_MEM (256ULL << 20)

/* QEMU's BlockMeasureInfo. */
struct measure_info {
    uint64_t required;
    uint64_t fully_allocated;
    bool has_bitmaps;
    uint64_t bitmaps;
};

/* The source image, when one was named. */
struct measure_src {
    struct open_chain oc;
    const char *filename; /* as typed, for messages */
    int snapshot;         /* -1, or the internal snapshot -l selected */
};

/* Formats qemu-img 7.2 can create (their driver has create_opts). */
static bool driver_creates(const char *fmt)
{
    static const char *const creators[] = {
        "file", "gluster", "host_cdrom", "host_device", "iscsi", "iser",  "luks",
        "nbd",  "nfs",     "nvme",       "parallels",   "qcow",  "qcow2", "qed",
        "raw",  "rbd",     "ssh",        "vdi",         "vhdx",  "vmdk",  "vpc",
    };

    for (size_t i = 0; i < sizeof(creators) / sizeof(creators[0]); i++)
        if (!strcmp(fmt, creators[i]))
            return true;
    return false;
}

static const char *opt_str(const struct opt_list *l, const char *name)
{
    const struct opt_val *v = opts_find(l, name);

    return v ? v->str : NULL;
}

static uint64_t opt_num(const struct opt_list *l, const char *name, uint64_t def)
{
    const struct opt_val *v = opts_find(l, name);

    return v ? v->value : def;
}

/* --- The walk over the source's allocation --- */

struct walk_state {
    struct qcow2_measure_walk w;
    uint64_t end;
    bool bad;
};

static int walk_report_cb(void *opaque, const void *recs, size_t len)
{
    struct walk_state *s = opaque;
    const uint8_t *p = recs;

    if (len % sizeof(struct instar_map_rec))
        return -1;
    for (size_t i = 0; i < len; i += sizeof(struct instar_map_rec)) {
        struct instar_map_rec r;
        bool zero, data;

        memcpy(&r, p + i, sizeof(r));
        zero = r.status & INSTAR_BS_ZERO;
        data = (r.status & INSTAR_BS_DATA) && (r.status & INSTAR_BS_ALLOCATED);
        if (r.start > s->end || r.length > s->end - r.start ||
            qcow2_measure_walk_extent(&s->w, r.start, r.length, zero, data) < 0) {
            s->bad = true;
            return -1;
        }
    }
    return 0;
}

/*
 * qcow2_measure()'s loop over the source: the bytes of data clusters of
 * size cs its allocation needs, in *required.  Returns 0, or -1 after
 * reporting.
 */
static int walk_source(struct measure_src *src, uint64_t cs, uint64_t ssize, uint64_t *required)
{
    struct instar_map_args args;
    struct instar_data_result v;
    struct vmm_config cfg;
    struct walk_state s;
    struct graph gr;

    graph_init(&gr);
    memset(&args, 0, sizeof(args));
    if (graph_add_chain(&gr, &src->oc, src->filename, &args.top) < 0)
        return -1;
    args.g = gr.g;
    /* -l: the source (node 0) reads through its snapshot's L1 table. */
    args.g.snapshot = src->snapshot >= 0 ? (uint32_t)src->snapshot + 1 : 0;
    args.measure_bits = (uint32_t)__builtin_ctzll(cs);
    args.start = 0;
    args.end = ssize;

    memset(&s, 0, sizeof(s));
    qcow2_measure_walk_init(&s.w, cs);
    s.end = ssize;
    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = MEASURE_GUEST_MEM;
    cfg.report = walk_report_cb;
    cfg.report_opaque = &s;
    if (datarun(&cfg, INSTAR_OP_MAP, &args, sizeof(args), &gr, src->filename, &v) < 0)
        return -1;
    if (v.status == INSTAR_DATA_EMETA) {
        report_error("Unable to get block status: %s", strerror((int)v.errnum));
        return -1;
    }
    /* The walk ends where QEMU's loop would: past the last extent it asked about. */
    if (s.bad || v.status != INSTAR_DATA_OK || (s.w.pos < ssize && s.w.next < ssize)) {
        report_error("Could not read '%s': sandbox failure: incomplete block status",
                     src->filename);
        return -1;
    }
    *required = s.w.required;
    return 0;
}

/* --- The two drivers --- */

/* raw_measure(): the source's length, or the size in whole sectors. */
static void measure_raw(const struct opt_list *l, const struct measure_src *src,
                        struct measure_info *mi)
{
    uint64_t size = opt_num(l, "size", 0);

    memset(mi, 0, sizeof(*mi));
    /* QEMU's ROUND_UP in uint64_t: it wraps as this does. */
    mi->required = src ? (uint64_t)src->oc.img[0].info->virtual_size : (size + 511) & ~511ull;
    mi->fully_allocated = mi->required;
}

/* QEMU's ROUND_UP for a power of two d, in uint64_t: it wraps as QEMU's does. */
static uint64_t round_up(uint64_t n, uint64_t d)
{
    return (n + d - 1) & ~(d - 1);
}

/* QAPI enums of the LUKS create options (qapi/crypto.json). */
static const char *const cipher_algs[] = {
    "aes-128",     "aes-192",     "aes-256",     "des",         "3des",        "cast5-128",
    "serpent-128", "serpent-192", "serpent-256", "twofish-128", "twofish-192", "twofish-256",
};
static const char *const cipher_modes[] = {"ecb", "cbc", "xts", "ctr"};
static const char *const ivgen_algs[] = {"plain", "plain64", "essiv"};
static const char *const hash_algs[] = {"md5",    "sha1",   "sha224",   "sha256",
                                        "sha384", "sha512", "ripemd160"};

static bool in_enum(const char *v, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v, list[i]))
            return true;
    return false;
}

/*
 * qcrypto_block_calculate_payload_offset() for encrypt.format=luks: the
 * options as the QAPI visitor checks them, the key secret as
 * qcrypto_block_luks_create() looks it up and its checks of the cipher
 * (luksopt_build()), then the header length.  Returns 0, or -1 after
 * reporting.
 */
static int luks_header(const struct opt_list *l, uint64_t *len)
{
    static const struct {
        const char *opt;
        const char *const *list;
        size_t n;
    } enums[] = {
        {"cipher-alg", cipher_algs, sizeof(cipher_algs) / sizeof(cipher_algs[0])},
        {"cipher-mode", cipher_modes, sizeof(cipher_modes) / sizeof(cipher_modes[0])},
        {"ivgen-alg", ivgen_algs, sizeof(ivgen_algs) / sizeof(ivgen_algs[0])},
        {"ivgen-hash-alg", hash_algs, sizeof(hash_algs) / sizeof(hash_algs[0])},
        {"hash-alg", hash_algs, sizeof(hash_algs) / sizeof(hash_algs[0])},
    };
    const char *secret = opt_str(l, "encrypt.key-secret");
    struct instar_create_luks c;
    char msg[256];
    uint32_t key_len;

    for (size_t i = 0; i < sizeof(enums) / sizeof(enums[0]); i++) {
        char name[32];
        const char *v;

        snprintf(name, sizeof(name), "encrypt.%s", enums[i].opt);
        v = opt_str(l, name);
        if (v && !in_enum(v, enums[i].list, enums[i].n)) {
            report_error("Parameter '%s' does not accept value '%s'", enums[i].opt, v);
            return -1;
        }
    }
    if (!secret) {
        report_error("Parameter 'encrypt.key-secret' is required for cipher");
        return -1;
    }
    if (!object_secret_utf8(secret))
        return -1;
    /* The rest of qcrypto_block_luks_create()'s checks, before its benchmark. */
    if (luksopt_build(l, "encrypt.", &c, msg, sizeof(msg)) < 0) {
        memset(&c, 0, sizeof(c));
        report_error("%s", msg);
        return -1;
    }
    key_len = c.key_bytes;
    memset(&c, 0, sizeof(c));
    *len = qcow2_measure_luks_header(key_len);
    return 0;
}

/*
 * block_crypto_measure(): the create options checked as
 * qcrypto_block_luks_create() checks them before its header exists (the
 * QAPI enums, the key secret, the cipher's LUKS name, ESSIV's cipher),
 * then the payload offset (which depends on the master key's length
 * alone) plus the virtual size, unrounded, for both numbers: the payload
 * of a LUKS volume is all written, encrypted.  qemu also runs the PBKDF2
 * benchmark of a fake creation; instar does not.  Returns 0, or -1 after
 * reporting.
 */
static int measure_luks(const struct opt_list *l, const struct measure_src *src,
                        struct measure_info *mi)
{
    struct instar_create_luks c;
    char msg[256];
    uint64_t size = opt_num(l, "size", 0), total;
    int r;

    memset(mi, 0, sizeof(*mi));
    if (src)
        size = (uint64_t)src->oc.img[0].info->virtual_size;
    r = luksopt_check(l, "", msg, sizeof(msg));
    if (r == 0)
        r = luksopt_build(l, "", &c, msg, sizeof(msg));
    memset(&c.key, 0, sizeof(c.key));
    memset(c.master_key, 0, sizeof(c.master_key));
    if (r < 0) {
        report_error("%s", msg);
        return -1;
    }
    /* QEMU adds in uint64_t: it wraps as this does. */
    total = qcow2_measure_luks_header(c.key_bytes) + size;
    mi->required = total;
    mi->fully_allocated = total;
    return 0;
}

static const char *const prealloc_names[] = {"off", "metadata", "falloc", "full"};

/*
 * qcow2_measure(): the options in its order, then the source's data.
 * Returns 0, or -1 after reporting.
 */
static int measure_qcow2(const struct opt_list *l, struct measure_src *src, struct measure_info *mi)
{
    const char *compat = opt_str(l, "compat"), *pa = opt_str(l, "preallocation");
    const char *enc = opt_str(l, "encrypt.format");
    struct qcow2_measure_opts o;
    uint64_t vs, required = 0, luks = 0;
    enum qcow2_measure_err e;

    memset(mi, 0, sizeof(*mi));
    memset(&o, 0, sizeof(o));
    o.extended_l2 = opt_num(l, "extended_l2", 0) != 0;
    o.cluster_size = opt_num(l, "cluster_size", 65536);
    o.version = !compat ? 3 : !strcmp(compat, "0.10") ? 2 : !strcmp(compat, "1.1") ? 3 : 0;
    o.refcount_bits = opt_num(l, "refcount_bits", 16);
    o.prealloc = pa ? QCOW2_MEASURE_PREALLOC_INVALID : QCOW2_PREALLOC_OFF;
    for (int i = 0; pa && i < 4; i++)
        if (!strcmp(pa, prealloc_names[i]))
            o.prealloc = i;
    o.backing_file = opt_str(l, "backing_file") != NULL;

    switch (qcow2_measure_check_opts(&o)) {
    case QCOW2_MEASURE_OK:
        break;
    case QCOW2_MEASURE_ECLUSTER_SIZE:
        report_error("Cluster size must be a power of two between 512 and 2048k");
        return -1;
    case QCOW2_MEASURE_EEXTL2_CLUSTER:
        report_error("Extended L2 entries are only supported with cluster sizes of at least "
                     "16384 bytes");
        return -1;
    case QCOW2_MEASURE_ECOMPAT:
        report_error("Invalid compatibility level: '%s'", compat);
        return -1;
    case QCOW2_MEASURE_EREFCOUNT_BITS:
        report_error("Refcount width must be a power of two and may not exceed 64 bits");
        return -1;
    case QCOW2_MEASURE_EREFCOUNT_V2:
        report_error("Different refcount widths than 16 bits require compatibility level 1.1 "
                     "or above (use compat=1.1 or greater)");
        return -1;
    default:
        report_error("invalid parameter value: %s", pa);
        return -1;
    }

    if (enc && !strcmp(enc, "luks") && luks_header(l, &luks) < 0)
        return -1;

    e = qcow2_measure_check_size(&o, opt_num(l, "size", 0));
    if (e != QCOW2_MEASURE_OK) {
        report_error("The image size is too large (try using a larger cluster size)");
        return -1;
    }
    vs = round_up(opt_num(l, "size", 0), o.cluster_size);

    if (src) {
        const struct image_info *ii = src->oc.img[0].info;
        uint64_t ssize = (uint64_t)ii->virtual_size;

        vs = round_up(ssize, o.cluster_size);
        if (o.backing_file) {
            /* Nothing of the backing chain may be shared: every cluster counts. */
            required = vs;
        } else if (walk_source(src, o.cluster_size, ssize, &required) < 0) {
            return -1;
        }
    }
    if (o.prealloc == QCOW2_PREALLOC_FULL || o.prealloc == QCOW2_PREALLOC_FALLOC)
        required = vs;

    mi->fully_allocated =
        round_up(luks, o.cluster_size) +
        qcow2_measure_prealloc_size(vs, o.cluster_size, o.refcount_bits, o.extended_l2);
    /* Data clusters not required come off (metadata stays counted). */
    mi->required = mi->fully_allocated - vs + required;
    /* Bitmaps only if both the source and the target support them. */
    if (o.version >= 3 && src && !strcmp(src->oc.img[0].info->format, "qcow2") &&
        src->oc.img[0].info->qcow2_version >= 3) {
        const struct image_info *ii = src->oc.img[0].info;
        struct qcow2_measure_bitmaps b;

        qcow2_measure_bitmaps_init(&b, o.cluster_size);
        for (uint32_t i = 0; i < ii->nbitmaps; i++) {
            if (qcow2_measure_bitmaps_add(&b, (uint64_t)ii->virtual_size,
                                          ii->bitmaps[i].granularity,
                                          strlen(ii->bitmaps[i].name)) < 0) {
                report_error("Could not read '%s': sandbox failure: invalid bitmap", src->filename);
                return -1;
            }
        }
        mi->has_bitmaps = true;
        mi->bitmaps = qcow2_measure_bitmaps_total(&b);
    }
    return 0;
}

/* --- Rendering --- */

static int dump_json(const struct measure_info *mi)
{
    struct qobj *d = qobj_dict_new();
    int ret;

    /* BlockMeasureInfo's members are QAPI 'int': int64_t. */
    qobj_dict_put_int(d, "required", (int64_t)mi->required);
    qobj_dict_put_int(d, "fully-allocated", (int64_t)mi->fully_allocated);
    if (mi->has_bitmaps)
        qobj_dict_put_int(d, "bitmaps", (int64_t)mi->bitmaps);
    if (qobj_failed(d)) {
        qobj_free(d);
        return -1;
    }
    ret = qobj_to_json(stdout, d);
    putchar('\n');
    qobj_free(d);
    return ret;
}

static void dump_human(const struct measure_info *mi)
{
    printf("required size: %" PRIu64 "\n", mi->required);
    printf("fully allocated size: %" PRIu64 "\n", mi->fully_allocated);
    if (mi->has_bitmaps)
        printf("bitmaps size: %" PRIu64 "\n", mi->bitmaps);
}

/*
 * qemu-img measure [--output=ofmt] [-O output_fmt] [-o options] [--size N |
 *                  [--object objectdef] [--image-opts] [-f fmt] [-l snapshot_param] filename]
 *
 * An unknown option or a missing argument prints getopt's message and the
 * help, exit 0, as qemu-img's help() does.
 */
int cmd_measure(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"output", required_argument, 0, OPTION_OUTPUT},
        {"size", required_argument, 0, OPTION_SIZE},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *filename = NULL, *fmt = NULL, *out_fmt = "raw";
    bool json = false, image_opts = false, force_share = false;
    bool src_open = false;
    uint64_t img_size = UINT64_MAX;
    char *options = NULL;
    char msg[MSG_MAX], hint[MSG_MAX];
    struct measure_src src;
    struct measure_info mi;
    struct opt_list l;
    struct snap_arg sa;
    int c, r, ret = 1;

    memset(&l, 0, sizeof(l));
    memset(&sa, 0, sizeof(sa));
    memset(&src, 0, sizeof(src));
    src.snapshot = -1;
    opterr = 1; /* getopt's own messages, as qemu-img's optstring has no ':' */
    while ((c = getopt_long(argc, argv, "hf:O:o:l:U", long_options, NULL)) != -1) {
        switch (c) {
        case '?':
        case 'h':
            cmd_print_help();
            ret = 0;
            goto out;
        case 'f':
            fmt = optarg;
            break;
        case 'O':
            out_fmt = optarg;
            break;
        case 'o':
            if (cmd_add_options(&options, optarg) < 0)
                goto out;
            break;
        case 'l':
            if (snap_arg_parse(&sa, optarg) < 0)
                goto out;
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_OBJECT:
            /* user_creatable_process_cmdline(): help or a bad definition ends qemu-img. */
            r = object_add(optarg);
            if (r != 0) {
                ret = r > 0 ? 0 : 1;
                goto out;
            }
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_OUTPUT:
            if (cmd_output_json(optarg, &json) < 0)
                goto out;
            break;
        case OPTION_SIZE: {
            int64_t v = size_cvtnum("image size", optarg, 0, INT64_MAX);

            if (v < 0)
                goto out;
            img_size = (uint64_t)v;
            break;
        }
        }
    }

    if (argc - optind > 1) {
        report_error("At most one filename argument is allowed.");
        goto out;
    } else if (argc - optind == 1) {
        filename = argv[optind];
    }
    if (!filename && (image_opts || fmt || snap_arg_given(&sa))) {
        report_error("--image-opts, -f, and -l require a filename argument.");
        goto out;
    }
    if (filename && img_size != UINT64_MAX) {
        report_error("--size N cannot be used together with a filename.");
        goto out;
    }
    if (!filename && img_size == UINT64_MAX) {
        report_error("Either --size N or one filename must be specified.");
        goto out;
    }

    if (filename) {
        /* img_open() */
        if (open_chain_arg(&src.oc, filename, image_opts, fmt, force_share, 0) < 0)
            goto out;
        src_open = true;
        src.filename = filename;
        /* img_open() opens with I/O: an encrypted image needs its key. */
        if (graph_check_keys(&src.oc, filename) < 0)
            goto out;
        if (snap_arg_given(&sa)) {
            src.snapshot = snap_arg_select(&sa, &src.oc, filename, MEASURE_GUEST_MEM);
            if (src.snapshot < 0)
                goto out;
        }
    }

    /* bdrv_find_format(), then the driver's create options. */
    if (!cmd_driver_known(out_fmt)) {
        report_error("Unknown file format '%s'", out_fmt);
        goto out;
    }
    if (!driver_creates(out_fmt)) {
        report_error("Format driver '%s' does not support image creation", out_fmt);
        goto out;
    }
    if (!create_opts_for(&l, out_fmt)) {
        /* qemu-img parses -o against the driver's options first: instar does not know them. */
        report_error("Block driver '%s' does not support size measurement", out_fmt);
        goto out;
    }
    if (options && opts_parse(&l, options, msg, hint, sizeof(msg)) < 0) {
        report_error("%s", msg);
        fputs(hint, stderr);
        report_error("Invalid options for file format '%s'", out_fmt);
        goto out;
    }
    if (img_size != UINT64_MAX) {
        char num[32];

        snprintf(num, sizeof(num), "%" PRIu64, img_size);
        opts_set(&l, "size", num, img_size);
    }

    /*
     * ... and unlocks it (a wrong LUKS passphrase fails): qcow2's walk over
     * the source does it, the other drivers read no data.
     */
    if (src_open && strcmp(out_fmt, "qcow2") && graph_unlock_chain(&src.oc, filename) < 0)
        goto out;

    /* bdrv_measure() */
    if (!strcmp(out_fmt, "raw")) {
        measure_raw(&l, src_open ? &src : NULL, &mi);
    } else if (!strcmp(out_fmt, "qcow2")) {
        if (measure_qcow2(&l, src_open ? &src : NULL, &mi) < 0)
            goto out;
    } else if (!strcmp(out_fmt, "luks")) {
        if (measure_luks(&l, src_open ? &src : NULL, &mi) < 0)
            goto out;
    } else {
        report_error("Block driver '%s' does not support size measurement", out_fmt);
        goto out;
    }

    if (json) {
        if (dump_json(&mi) < 0) {
            report_error("%s", strerror(ENOMEM));
            goto out;
        }
    } else {
        dump_human(&mi);
    }
    ret = 0;
out:
    if (src_open)
        open_chain_close(&src.oc);
    opts_free(&l);
    snap_arg_release(&sa);
    free(options);
    object_release_all();
    return ret;
}
