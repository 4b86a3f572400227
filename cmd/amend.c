/*
 * instar amend: qemu-img 7.2's img_amend() with qcow2's
 * qcow2_amend_options() and block/crypto.c's LUKS key slot changes.
 *
 * The host parses the -o options as qemu-img does (the driver's amend
 * options, then the create options for the "only supported for image
 * creation" hint), opens the image read-write under path policy, runs the
 * checks qcow2_amend_options() makes of each option (in the order of its
 * option list) from what the guest described, and refuses what instar
 * does not amend yet.  The guest (guest/plan_amend.c) opens the image
 * again, repairing a dirty one as qcow2_do_open() does, and makes the
 * changes: the lazy refcounts bit and the truncation, which is the
 * resize planner's.  A dirty image is repaired first, by a guest run that
 * only opens it, so that every error qemu finds after its open comes
 * after the repair's lines.  A luks volume's key slots (or a LUKS qcow2
 * image's, with encrypt.* options alone) are checked on the host as far
 * as no key material is needed, then changed by the guest
 * (gbs_luks_amend() in guest/drv_luks.c).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "cmds.h"
#include "graph.h"
#include "instar/errors.h"
#include "imgcheck.h"
#include "instar/ovf.h"
#include "object.h"
#include "open.h"
#include "opts.h"
#include "progress.h"
#include "qcow2/amend.h"
#include "qcow2/qcow2_err.h"
#include "qcow2/resize.h"
#include "report.h"
#include "result.h"
#include "vmm.h"

enum {
    OPTION_OBJECT = 258,
    OPTION_IMAGE_OPTS = 259,
    OPTION_FORCE = 260,
};

/* qcow2_amend_opts, in its order (the order qcow2_amend_options() checks). */
static const struct opt_desc qcow2_amend_descs[] = {
    {"encrypt.state", OPT_STRING, "Select new state of affected keyslots (active/inactive)", NULL},
    {"encrypt.keyslot", OPT_NUMBER, "Select a single keyslot to modify explicitly", NULL},
    {"encrypt.old-secret", OPT_STRING, "Select all keyslots that match this password", NULL},
    {"encrypt.new-secret", OPT_STRING,
     "New secret to set in the matching keyslots. Empty string to erase", NULL},
    {"encrypt.iter-time", OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL},
    {"size", OPT_SIZE, "Virtual disk size", NULL},
    {"compat", OPT_STRING, "Compatibility level (v2 [0.10] or v3 [1.1])", NULL},
    {"backing_file", OPT_STRING, "File name of a base image", NULL},
    {"backing_fmt", OPT_STRING, "Image format of the base image", NULL},
    {"data_file", OPT_STRING, "File name of an external data file", NULL},
    {"data_file_raw", OPT_BOOL, "The external data file must stay valid as a raw image", NULL},
    {"lazy_refcounts", OPT_BOOL, "Postpone refcount updates", "off"},
    {"refcount_bits", OPT_NUMBER, "Width of a reference count entry in bits", "16"},
    {NULL, 0, NULL, NULL},
};

/* block/crypto.c's block_crypto_amend_opts_luks, in its order. */
static const struct opt_desc luks_amend_descs[] = {
    {"state", OPT_STRING, "Select new state of affected keyslots (active/inactive)", NULL},
    {"keyslot", OPT_NUMBER, "Select a single keyslot to modify explicitly", NULL},
    {"old-secret", OPT_STRING, "Select all keyslots that match this password", NULL},
    {"new-secret", OPT_STRING, "New secret to set in the matching keyslots. Empty string to erase",
     NULL},
    {"iter-time", OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL},
    {NULL, 0, NULL, NULL},
};

/* QEMU's BDRV_MAX_LENGTH (block/io.c). */
#define AMEND_MAX_LENGTH INT64_C(0x7fffffffc0000000)
/* The largest qcow2 cluster: any allocation may round up to one. */
#define AMEND_MAX_CLUSTER (2ULL << 20)
/* QEMU's QCOW_MAX_L1_SIZE. */
#define AMEND_MAX_L1_BYTES (32ULL << 20)
/* Guest RAM: as resize's, the heap and the L1 tables at their largest. */
#define AMEND_GUEST_MEM ((256ULL << 20) + 4 * AMEND_MAX_L1_BYTES)

/* print_amend_option_help() */
static int amend_option_help(const char *fmt)
{
    struct opt_list l;

    if (!cmd_driver_known(fmt)) {
        report_error("Unknown file format '%s'", fmt);
        return 1;
    }
    memset(&l, 0, sizeof(l));
    if (!strcmp(fmt, "qcow2"))
        opts_append(&l, qcow2_amend_descs);
    else if (!strcmp(fmt, "luks"))
        opts_append(&l, luks_amend_descs);
    else {
        report_error("Format driver '%s' does not support option amendment", fmt);
        return 1;
    }
    printf("Amend options for '%s':\n", fmt);
    opts_print_help(&l);
    opts_free(&l);
    return 0;
}

/* a + b, saturating at UINT64_MAX. */
static uint64_t sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;

    return ovf_add_u64(a, b, &r) ? UINT64_MAX : r;
}

/*
 * How far the guest may extend the file: the dirty repair and lazy bit
 * write in place or within a few clusters; a truncation as resize bounds
 * it (cmd/resize.c's resize_write_limit() for an absolute size with
 * --shrink): the new L1 table, the L2 tables a discard may allocate,
 * refcount structures (under 1/32 of the file) and a cluster of
 * rounding per allocation.
 */
static uint64_t amend_write_limit(uint64_t file_size, bool has_size, uint64_t size)
{
    uint64_t add = 0, limit;

    if (has_size) {
        add =
            sat_add(size / 64, size / 4096 < AMEND_MAX_L1_BYTES ? size / 4096 : AMEND_MAX_L1_BYTES);
        add = sat_add(add, (AMEND_MAX_L1_BYTES / 8) * 512);
    }
    limit = sat_add(file_size, add);
    limit = sat_add(sat_add(limit, limit / 32), 32 * AMEND_MAX_CLUSTER);
    return limit > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : limit;
}

/* The text of a guest code, and how it is printed; NULL if unknown. */
static const char *amend_msg(int code, int *kind)
{
    const char *msg = resize_msg(code, kind);

    if (msg)
        return msg;
    switch (code) {
#define AMEND_MSG_CASE(name, c, k, msg)                                                            \
    case c:                                                                                        \
        *kind = k == QCOW2_AMEND_MSG_ERRNO ? QCOW2_RESIZE_MSG_ERRNO : QCOW2_RESIZE_MSG_PLAIN;      \
        return msg;
        QCOW2_AMEND_ERRORS(AMEND_MSG_CASE)
#undef AMEND_MSG_CASE
    }
    return NULL;
}

static void report_amend_code(const char *name, int code, const uint64_t *args, int64_t size,
                              bool warning)
{
    int kind = QCOW2_RESIZE_MSG_PLAIN;
    const char *msg = amend_msg(code, &kind);
    uint64_t errnum = args[0];

    if (code == QCOW2_AMEND_ERR_SIZE_RANGE) {
        if (size < 0)
            report_error("Image size cannot be negative");
        else
            report_error("offset(%" PRId64 ") exceeds maximum(%" PRId64 ")", size,
                         AMEND_MAX_LENGTH);
        return;
    }
    if (code == QCOW2_AMEND_ERR_REFCOUNT_DECREASE) {
        report_error("Cannot decrease refcount entry width to %i bits: Cluster at offset %#" PRIx64
                     " has a refcount of %" PRIu64,
                     (int)(args[2] <= 64 ? args[2] : 0), args[0], args[1]);
        return;
    }
    /* qcow2_expand_zero_clusters(): qcow2_validate_table()'s error first. */
    if (code == QCOW2_AMEND_ERR_EXPAND_ZERO && !warning && QCOW2_ERR_IS_SNAPSHOT_LOAD(args[1]))
        report_error("%s", report_code_template((int32_t)args[1]));
    if (code == QCOW2_AMEND_ERR_DOWNGRADE_INCOMPAT) {
        report_error("Cannot downgrade an image with incompatible features 0x%" PRIx64 " set",
                     errnum);
        return;
    }
    if (!msg) {
        report_error("Unknown error %d from the sandbox", code);
        return;
    }
    if (kind == QCOW2_RESIZE_MSG_OPEN)
        report_error("Could not open '%s': %s", name, msg);
    else if (kind == QCOW2_RESIZE_MSG_ERRNO && warning)
        report_warning("%s: %s", msg, strerror(errnum < 4096 ? (int)errnum : EIO));
    else if (kind == QCOW2_RESIZE_MSG_ERRNO)
        report_error("%s: %s", msg, strerror(errnum < 4096 ? (int)errnum : EIO));
    else
        report_error("%s", msg);
}

static int amend_report_cb(void *opaque, const void *recs, size_t len)
{
    return check_print_batch(opaque, recs, len);
}

/* The guest opened the image read-write (what qemu-img's open does to it is done). */
static bool amend_opened;

/*
 * Run the amend planner over the qcow2 image of oc with args.  Returns 0
 * or -1 after reporting.
 */
static int amend_run(struct open_chain *oc, struct instar_amend_args *args)
{
    struct open_image *im = &oc->img[0];
    struct instar_result_hdr hdr;
    struct vmm_config cfg;
    struct vmm_outcome out;
    struct vmm_dev devs[2], dev;
    struct graph *gr = NULL;
    struct stat st;
    unsigned ndev = 1;
    uint64_t mem = AMEND_GUEST_MEM;
    int ret = -1;

    amend_opened = true;
    if (!result_qcow2_cluster_size_ok((uint64_t)im->info->cluster_size)) {
        report_error("Failed to amend '%s': sandbox failure: invalid result", im->name);
        return -1;
    }
    /* bdrv_co_truncate(): the backing file facts, as resize gives them. */
    if ((args->flags & INSTAR_AMEND_SIZE) && oc->n > 1 && oc->img[1].info) {
        uint64_t blen = (uint64_t)oc->img[1].info->virtual_size;
        uint64_t cur = (uint64_t)im->info->virtual_size, cs = (uint64_t)im->info->cluster_size;

        if (args->size > cur && blen > cur)
            args->flags |= INSTAR_AMEND_ZERO_WRITE;
        if (cs && blen > (cur & ~(cs - 1)))
            args->flags |= INSTAR_AMEND_BACKING_HEAD;
    }
    if (fstat(im->fd, &st) != 0)
        st = im->st;
    memset(&dev, 0, sizeof(dev));
    dev.fd = im->fd;
    dev.size = (uint64_t)st.st_size;
    dev.write_limit =
        amend_write_limit(dev.size, (args->flags & INSTAR_AMEND_SIZE) != 0, args->size);
    dev.flags = INSTAR_DEV_READ | INSTAR_DEV_WRITE;
    /* Persistent bitmaps are stored anew at the close (twice their bits in memory). */
    if (im->info->nbitmaps) {
        uint64_t cur = (uint64_t)im->info->virtual_size;
        uint64_t len = (args->flags & INSTAR_AMEND_SIZE) && args->size > cur ? args->size : cur;

        dev.write_limit = sat_add(dev.write_limit, info_bitmaps_bytes(im->info, len));
        for (uint32_t i = 0; i < im->info->nbitmaps; i++) {
            uint64_t g = im->info->bitmaps[i].granularity;

            if (g >= 512 && !(g & (g - 1)))
                mem = sat_add(mem, 2 * (len / g / 8 + 8));
        }
    }
    if (dev.write_limit > (uint64_t)INT64_MAX)
        dev.write_limit = (uint64_t)INT64_MAX;
    devs[0] = dev;
    /*
     * An external data file, opened read-write under the path policy as
     * qemu opens it: device 1, which the guest truncates to the new size.
     */
    if (im->data_fd >= 0) {
        struct stat ds;
        uint64_t grow = (args->flags & INSTAR_AMEND_SIZE) ? args->size : 0;

        if (fstat(im->data_fd, &ds) != 0) {
            report_error("Could not get the size of '%s': %s", im->data_name ? im->data_name : "",
                         strerror(errno));
            return -1;
        }
        memset(&devs[1], 0, sizeof(devs[1]));
        devs[1].fd = im->data_fd;
        devs[1].size = (uint64_t)ds.st_size;
        devs[1].write_limit = (uint64_t)ds.st_size > grow ? (uint64_t)ds.st_size : grow;
        devs[1].flags = INSTAR_DEV_READ | INSTAR_DEV_WRITE;
        ndev = 2;
    }
    memset(&cfg, 0, sizeof(cfg));
    mem = (mem + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
    cfg.mem_size = mem > INSTAR_GUEST_MEM_MAX ? INSTAR_GUEST_MEM_MAX : mem;
    cfg.report = amend_report_cb; /* the repair of a dirty image, as check -r prints it */
    cfg.report_opaque = stderr;
    /* qcow2_amend_options()'s status callbacks, computed by the guest. */
    cfg.progress = progress_from_guest;
    memset(&out, 0, sizeof(out));

    /*
     * A grow from a size inside a cluster may copy that cluster: its old
     * data is read through the backing chain, as resize reads it
     * (graph_for_planner(), INSTAR_AMEND_CHAIN).
     */
    if (args->flags & INSTAR_AMEND_SIZE) {
        uint64_t cur = (uint64_t)im->info->virtual_size & ~UINT64_C(511);
        uint64_t cs = (uint64_t)im->info->cluster_size;

        /*
         * (An encrypted image writes guest data only for the zero-fill
         * over a longer backing file: its key then unlocks it for the
         * cipher, as resize.)
         */
        if ((!im->info->encrypted || (oc->key && (args->flags & INSTAR_AMEND_ZERO_WRITE))) &&
            args->size > cur && cs && (cur & (cs - 1))) {
            gr = malloc(sizeof(*gr));
            if (!gr) {
                report_error("Failed to amend '%s': Cannot allocate memory", im->name);
                goto out;
            }
            if (graph_for_planner(gr, oc, im->name, devs, ndev, "Failed to amend") < 0)
                goto out;
            args->chain = gr->g;
            args->flags |= INSTAR_AMEND_CHAIN;
        }
    }
    if (open_run_planner(&cfg, INSTAR_OP_AMEND, args, sizeof(*args), gr ? gr->devs : devs,
                         gr ? gr->ndevs : ndev, &out, &hdr, "Failed to amend", im->name) < 0)
        goto out;
    if (hdr.error == QCOW2_RESIZE_ERR_BITMAP_INCONSISTENT) {
        /* qcow2_truncate_bitmaps_check(): the bitmap's name, as it is on disk. */
        int kind = 0;
        const char *m = amend_msg(hdr.error, &kind), *pct = m ? strstr(m, "%s") : NULL;

        if (!pct || !hdr.err_str.off)
            report_error("Failed to amend '%s': sandbox failure: invalid result", im->name);
        else
            report_error("%.*s%.*s%s", (int)(pct - m), m, (int)hdr.err_str.len,
                         (const char *)out.result + hdr.err_str.off, pct + 2);
        goto out;
    }
    if (hdr.error >= 3000 && hdr.error < 3200) {
        report_amend_code(im->name, hdr.error, hdr.err_args, (int64_t)args->size, false);
        goto out;
    }
    if (hdr.error != 0) {
        const char *s = hdr.err_str.off ? (const char *)out.result + hdr.err_str.off : NULL;

        fprintf(stderr, "%s: Could not open '%s': ", report_progname(), im->name);
        report_code_render_to(stderr, hdr.error, hdr.err_args, s, hdr.err_str.len);
        fputc('\n', stderr);
        goto out;
    }
    if (hdr.err_args[0] >= 3000 && hdr.err_args[0] < 3100)
        report_amend_code(im->name, (int)hdr.err_args[0], hdr.err_args + 1, 0, true);
    ret = 0;
out:
    vmm_outcome_release(&out);
    free(gr);
    return ret;
}

/* The passphrase of secret id (found: the caller looked it up) into k; -1 if too long. */
static int amend_key(struct instar_key *k, const char *pw)
{
    size_t len = pw ? strlen(pw) : 0;

    if (len > INSTAR_KEY_BYTES) {
        report_error("instar takes LUKS passphrases of up to %d bytes", INSTAR_KEY_BYTES);
        return -1;
    }
    k->len = (uint32_t)len;
    memcpy(k->data, pw, len);
    return 0;
}

static int amend_urandom(void *buf, size_t len)
{
    return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -1;
}

/* A LUKS amend's guest RAM: the heap's key material buffers and the runtime. */
#define AMEND_LUKS_MEM (32ULL << 20)

/*
 * The guest's part of a luks volume's amend (guest/drv_luks.c,
 * gbs_luks_amend()): the volume's key, the new or old passphrase and the
 * random bytes passed; the file written in place, never grown.  slot: the
 * keyslot= given, or -1.  Returns 0 or -1 after reporting.
 */
static int amend_luks_run(struct open_chain *oc, const struct opt_list *l, const char *prefix,
                          bool active, int slot, bool force)
{
    struct open_image *im = &oc->img[0];
    const struct opt_val *it, *sec;
    char name[64];
    struct instar_amend_args *args;
    struct instar_result_hdr hdr;
    struct vmm_config cfg;
    struct vmm_outcome out;
    struct vmm_dev dev;
    struct stat st;
    int ret = -1;

    args = calloc(1, sizeof(*args));
    if (!args) {
        report_error("Cannot allocate memory");
        return -1;
    }
    args->flags = INSTAR_AMEND_LUKS;
    args->luks.flags = (*prefix ? 0 : INSTAR_AMEND_LUKS_VOLUME) |
                       (active ? INSTAR_AMEND_LUKS_ACTIVE : 0) |
                       (force ? INSTAR_AMEND_LUKS_FORCE : 0);
    if (slot >= 0) {
        args->luks.flags |= INSTAR_AMEND_LUKS_KEYSLOT;
        args->luks.keyslot = (uint32_t)slot;
    }
    snprintf(name, sizeof(name), "%siter-time", prefix);
    it = opts_find(l, name);
    /* QCRYPTO_BLOCK_LUKS_DEFAULT_ITER_TIME_MS */
    args->luks.iter_time = it ? it->value : 2000;
    if (amend_key(&args->luks.key, oc->key) < 0)
        goto out;
    snprintf(name, sizeof(name), "%snew-secret", prefix);
    sec = opts_find(l, name);
    if (sec && amend_key(&args->luks.new_key, object_secret_utf8(sec->str)) < 0)
        goto out;
    snprintf(name, sizeof(name), "%sold-secret", prefix);
    sec = opts_find(l, name);
    if (sec) {
        args->luks.flags |= INSTAR_AMEND_LUKS_OLD;
        if (amend_key(&args->luks.old_key, object_secret_utf8(sec->str)) < 0)
            goto out;
    }
    if (amend_urandom(args->luks.slot_salt, sizeof(args->luks.slot_salt)) < 0 ||
        amend_urandom(args->luks.seed, sizeof(args->luks.seed)) < 0) {
        report_error("Could not read /dev/urandom");
        goto out;
    }
    if (fstat(im->fd, &st) != 0)
        st = im->st;
    memset(&dev, 0, sizeof(dev));
    dev.fd = im->fd;
    dev.size = (uint64_t)st.st_size;
    /* The key slots are rewritten in place; qcow2's open may repair a dirty image. */
    dev.write_limit = *prefix ? amend_write_limit(dev.size, false, 0) : dev.size;
    dev.flags = INSTAR_DEV_READ | INSTAR_DEV_WRITE;
    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = *prefix ? AMEND_GUEST_MEM : AMEND_LUKS_MEM;
    cfg.report = amend_report_cb; /* qcow2: the repair of a dirty image, as check -r prints it */
    cfg.report_opaque = stderr;
    memset(&out, 0, sizeof(out));
    amend_opened = true;
    if (open_run_planner(&cfg, INSTAR_OP_AMEND, args, sizeof(*args), &dev, 1, &out, &hdr,
                         "Failed to amend", im->name) < 0)
        goto release;
    if (hdr.error != 0) {
        /* qemu's amend errors are printed as they are, the open's after its prefix. */
        bool plain = (hdr.error >= INSTAR_ERR_LUKS_AMEND_FULL &&
                      hdr.error <= INSTAR_ERR_LUKS_AMEND_OUTSIDE) ||
                     hdr.error == INSTAR_ERR_LUKS_SCALE || hdr.error == INSTAR_ERR_LUKS_LARGE ||
                     hdr.error == INSTAR_ERR_LUKS_CREATE;

        if (plain)
            fprintf(stderr, "%s: ", report_progname());
        else
            fprintf(stderr, "%s: Could not open '%s': ", report_progname(), im->name);
        report_code_render_to(stderr, hdr.error, hdr.err_args, NULL, 0);
        fputc('\n', stderr);
        /* qcrypto_block_luks_amend_add_keyslot()'s hint, which has no newline. */
        if (hdr.error == INSTAR_ERR_LUKS_SCALE || hdr.error == INSTAR_ERR_LUKS_LARGE ||
            hdr.error == INSTAR_ERR_LUKS_CREATE)
            fprintf(stderr, "Failed to write to keyslot %u", (unsigned)(hdr.err_args[1] & 7));
        goto release;
    }
    ret = 0;
release:
    vmm_outcome_release(&out);
out:
    memset(args, 0, sizeof(*args));
    free(args);
    return ret;
}

/* The option prefix + name in l (qcow2's "encrypt.", or "" for a luks volume). */
static const struct opt_val *lo(const struct opt_list *l, const char *prefix, const char *name)
{
    char full[64];

    snprintf(full, sizeof(full), "%s%s", prefix, name);
    return opts_find(l, full);
}

/*
 * The checks block_crypto_amend_opts_init() and
 * qcrypto_block_luks_amend_options() make before they look at the key
 * slots, on the options prefix + name of l, in qemu's words; then the
 * guest makes the change.  Returns the exit code.
 */
static int amend_luks_slots(struct open_chain *oc, const struct opt_list *l, const char *prefix,
                            bool force)
{
    unsigned slots_active = oc->img[0].info->luks_slots_active;
    const struct opt_val *state, *ks;
    bool active;
    int slot;

    /* QCryptoBlockAmendOptionsLUKS: state is mandatory, an enum. */
    state = lo(l, prefix, "state");
    if (!state) {
        report_error("Parameter 'state' is missing");
        return 1;
    }
    if (strcmp(state->str, "active") && strcmp(state->str, "inactive")) {
        report_error("Parameter 'state' does not accept value '%s'", state->str);
        return 1;
    }
    active = !strcmp(state->str, "active");
    ks = lo(l, prefix, "keyslot");
    if (active) {
        if (!lo(l, prefix, "new-secret")) {
            report_error("'new-secret' is required to activate a keyslot");
            return 1;
        }
        if (lo(l, prefix, "old-secret")) {
            report_error("'old-secret' must not be given when activating keyslots");
            return 1;
        }
        /* The number is cut to a C int, and printed with %u. */
        if (ks && ((int32_t)ks->value < 0 || (int32_t)ks->value >= 8)) {
            report_error("Invalid keyslot %u specified, must be between 0 and 7",
                         (uint32_t)ks->value);
            return 1;
        }
        slot = ks ? (int32_t)ks->value : -1;
        for (int i = 0; i < 8 && slot < 0; i++)
            if (!(slots_active & (1u << i)))
                slot = i;
        if (slot < 0) {
            report_error("Can't add a keyslot - all keyslots are in use");
            return 1;
        }
        if (!force && (slots_active & (1u << slot))) {
            report_error("Refusing to overwrite active keyslot %d - please erase it first", slot);
            return 1;
        }
        /* The volume's own key was found at the open: the new one is looked up. */
        if (!object_secret_utf8(lo(l, prefix, "new-secret")->str))
            return 1;
    } else {
        if (lo(l, prefix, "new-secret")) {
            report_error("'new-secret' must not be given when erasing keyslots");
            return 1;
        }
        if (lo(l, prefix, "iter-time")) {
            report_error("'iter-time' must not be given when erasing keyslots");
            return 1;
        }
        if (lo(l, prefix, "old-secret") && !object_secret_utf8(lo(l, prefix, "old-secret")->str))
            return 1;
        if (!ks && !lo(l, prefix, "old-secret")) {
            report_error("To erase keyslot(s), either explicit keyslot index or the password "
                         "currently contained in them must be given");
            return 1;
        }
        slot = ks ? (int32_t)ks->value : -1;
        if (ks && (slot < 0 || slot >= 8)) {
            report_error("Invalid keyslot %d specified, must be between 0 and 7", slot);
            return 1;
        }
        /* Without old-secret: the slot's state alone (with it, PBKDF2 first). */
        if (ks && !lo(l, prefix, "old-secret") && !force) {
            if (!(slots_active & (1u << slot))) {
                report_error("Given keyslot %d is already erased (inactive) ", slot);
                return 1;
            }
            if (__builtin_popcount(slots_active) == 1) {
                report_error("Attempt to erase the only active keyslot %d which will erase all "
                             "the data in the image irreversibly - refusing operation",
                             slot);
                return 1;
            }
        }
    }
    return amend_luks_run(oc, l, prefix, active, slot, force) < 0 ? 1 : 0;
}

/*
 * img_amend()'s parse of -o against the format's amend options (descs):
 * on an error, its message, the hint, and whether the option is one of
 * the creation options only.  Returns 0, or -1 after reporting.
 */
static int amend_opts_parse(struct opt_list *l, const struct opt_desc *descs, const char *fmt,
                            const char *options)
{
    char msg[512], hint[512], m2[512], h2[512];
    struct opt_list cl;

    opts_append(l, descs);
    if (opts_parse(l, options, msg, hint, sizeof(msg)) == 0)
        return 0;
    memset(&cl, 0, sizeof(cl));
    opts_append(&cl, descs);
    (void)create_format_opts_for(&cl, fmt);
    report_error("%s", msg);
    if (hint[0])
        fputs(hint, stderr);
    if (opts_parse(&cl, options, m2, h2, sizeof(m2)) == 0)
        fputs("This option is only supported for image creation\n", stderr);
    opts_free(&cl);
    return -1;
}

/*
 * A luks volume: qemu-img amend's option parse (the creation options
 * named in the hint), then the checks block_crypto_amend_opts_init() and
 * qcrypto_block_luks_amend_options() make before they look at the key
 * slots, in qemu's words; then the guest makes the change (amend_luks_run()).
 * Returns the exit code.
 */
static int amend_luks(struct open_chain *oc, struct opt_list *l, const char *options, bool force)
{
    int ret;

    if (amend_opts_parse(l, luks_amend_descs, "luks", options) < 0)
        return 1;
    /* img_amend(): the progress around bdrv_amend_options(), which makes the checks. */
    progress_print(0, 0);
    ret = amend_luks_slots(oc, l, "", force);
    progress_print(100, 0);
    return ret;
}

/* g_strcmp0() */
static int strcmp0(const char *a, const char *b)
{
    if (!a || !b)
        return a ? 1 : b ? -1 : 0;
    return strcmp(a, b);
}

/*
 * qcow2_amend_options() on the open image oc, with the options parsed in
 * l (progress: -p, the guest sends the status calls).  Returns 0 or -1
 * after reporting.
 */
static int amend_qcow2(struct open_chain *oc, const struct opt_list *l, bool progress, bool force)
{
    bool encryption_update = false, only_encrypt = true;
    const struct image_info *ii = oc->img[0].info;
    struct instar_amend_args args;
    const struct opt_val *v;
    const char *err = NULL, *hint = NULL;
    char buf[256];
    int new_version = (int)ii->qcow2_version;
    unsigned i;

    memset(&args, 0, sizeof(args));
    /* The option loop, in the order of qcow2_amend_opts: its errors come first. */
    for (i = 0; qcow2_amend_descs[i].name && !err; i++) {
        const char *name = qcow2_amend_descs[i].name;

        v = opts_find(l, name);
        if (!v)
            continue;
        only_encrypt = only_encrypt && !strncmp(name, "encrypt.", 8);
        if (!strncmp(name, "encrypt.", 8)) {
            if (!ii->encrypted)
                err = "Can't amend encryption options - encryption not present";
            else if (!ii->encrypt_luks)
                err = "Only LUKS encryption options can be amended";
            else
                encryption_update = true;
        } else if (!strcmp(name, "compat")) {
            if (!strcmp(v->str, "0.10") || !strcmp(v->str, "v2"))
                new_version = 2;
            else if (!strcmp(v->str, "1.1") || !strcmp(v->str, "v3"))
                new_version = 3;
            else {
                snprintf(buf, sizeof(buf), "Unknown compatibility level %.200s", v->str);
                err = buf;
            }
        } else if (!strcmp(name, "size")) {
            /* size=0 leaves the size alone. */
            if (v->value) {
                args.flags |= INSTAR_AMEND_SIZE;
                args.size = v->value;
            }
        } else if (!strcmp(name, "data_file")) {
            if (!ii->has_external_data)
                err = "data-file can only be set for images that use an external data file";
            else if (strlen(v->str) >= sizeof(args.data_file))
                err = "The data file name is too long for instar";
            else {
                args.flags |= INSTAR_AMEND_DATA_FILE;
                strcpy(args.data_file, v->str);
            }
        } else if (!strcmp(name, "data_file_raw")) {
            if (v->value && !ii->data_file_raw)
                err = "data-file-raw cannot be set on existing images";
            else if (!v->value && ii->data_file_raw)
                args.flags |= INSTAR_AMEND_RAW_OFF;
        } else if (!strcmp(name, "lazy_refcounts")) {
            args.flags |= INSTAR_AMEND_LAZY | (v->value ? INSTAR_AMEND_LAZY_ON : 0);
        } else if (!strcmp(name, "refcount_bits")) {
            if (v->value == 0 || v->value > 64 || (v->value & (v->value - 1)))
                err = "Refcount width must be a power of two and may not exceed 64 bits";
            else
                args.refcount_bits = (uint32_t)v->value;
        }
    }
    /*
     * What instar does not amend yet, refused before anything is written
     * (qemu would have made the change).
     */
    if (!err) {
        /* The LUKS key slots alone: block/crypto.c's checks and change, with the prefix. */
        if (encryption_update && only_encrypt)
            return amend_luks_slots(oc, l, "encrypt.", force) ? -1 : 0;
        /*
         * With other options instar changes the key slots and the rest in
         * runs of their own (below), each opening the image, so persistent
         * bitmaps would be stored at each run's close, not once as at
         * qemu-img's one close (other clusters).
         */
        if (encryption_update && ii->encrypted && ii->nbitmaps) {
            amend_opened = true; /* a refusal: not even the bitmaps are stored */
            report_error("Amending encrypt.* with other options of encrypted qcow2 images with "
                         "persistent bitmaps is not supported by instar");
            return -1;
        }
        if (new_version == 3 && ii->qcow2_version == 2)
            args.flags |= INSTAR_AMEND_UPGRADE;
        else if (new_version == 2 && ii->qcow2_version == 3)
            args.flags |= INSTAR_AMEND_DOWNGRADE;
    }
    /* After qcow2_update_header(): the backing file cannot change. */
    if (!err && (opts_find(l, "backing_file") || opts_find(l, "backing_fmt"))) {
        const struct opt_val *bf = opts_find(l, "backing_file"),
                             *bfmt = opts_find(l, "backing_fmt");

        if (strcmp0(bf ? bf->str : NULL, ii->backing_filename) ||
            strcmp0(bfmt ? bfmt->str : NULL, ii->backing_filename_format)) {
            err = "Cannot amend the backing file";
            hint = "You can use 'qemu-img rebase' instead.\n";
        }
    }
    if (err) {
        report_error("%s", err);
        if (hint)
            fputs(hint, stderr);
        return -1;
    }
    if (progress)
        args.flags |= INSTAR_AMEND_PROGRESS;
    /*
     * encrypt.* with other options: qcow2_amend_options() upgrades first,
     * then changes the key slots (as for the options alone), then makes
     * the other changes: three runs in that order.
     */
    if (encryption_update) {
        if (args.flags & INSTAR_AMEND_UPGRADE) {
            struct instar_amend_args up;

            memset(&up, 0, sizeof(up));
            up.flags = args.flags & (INSTAR_AMEND_UPGRADE | INSTAR_AMEND_PROGRESS);
            if (amend_run(oc, &up) < 0)
                return -1;
            args.flags &= ~INSTAR_AMEND_UPGRADE;
        }
        if (amend_luks_slots(oc, l, "encrypt.", force))
            return -1;
    }
    return amend_run(oc, &args);
}

int cmd_amend(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"force", no_argument, 0, OPTION_FORCE},
        {0, 0, 0, 0},
    };
    char *options = NULL;
    const char *fmt = NULL, *filename, *cache = "writeback";
    bool quiet = false, progress = false, image_opts = false, oc_open = false, force = false;
    int c, ret = 1;
    struct open_chain oc;
    struct opt_list l;

    memset(&l, 0, sizeof(l));
    for (;;) {
        c = cmd_getopt(argc, argv, ":ho:f:t:pq", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            free(options);
            return ret;
        case 'o':
            if (cmd_add_options(&options, optarg) < 0) {
                free(options);
                return 1;
            }
            break;
        case 'f':
            fmt = optarg;
            break;
        case 't':
            cache = optarg;
            break;
        case 'p':
            progress = true;
            break;
        case 'q':
            quiet = true;
            break;
        case OPTION_OBJECT:
            /* user_creatable_process_cmdline(): help or a bad definition ends qemu-img. */
            c = object_add(optarg);
            if (c != 0) {
                free(options);
                return c > 0 ? 0 : 1;
            }
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        case OPTION_FORCE:
            /* Only LUKS keyslot changes look at it. */
            force = true;
            break;
        }
    }
    if (!options)
        return report_usage("Must specify options (-o)");
    if (quiet)
        progress = false;
    report_set_quiet(quiet);
    progress_init(progress, 1.0);

    filename = optind == argc - 1 ? argv[argc - 1] : NULL;
    if (fmt && opts_has_help(options)) {
        ret = amend_option_help(fmt);
        goto out;
    }
    if (!filename) {
        report_error("Expecting one image file name");
        goto out;
    }
    if (cmd_cache_mode(cache, &(bool){0}, &(bool){0}) < 0) {
        report_error("Invalid cache option: %s", cache);
        goto out;
    }
    if (open_chain_arg(&oc, filename, image_opts, fmt, false, OPEN_RDWR) < 0)
        goto out;
    oc_open = true;
    fmt = oc.img[0].info->format;
    /* qcow2_do_open() needs the key of an encrypted image (instar takes none). */
    if (graph_check_keys(&oc, filename) < 0)
        goto out;
    /* The open unlocks a luks volume or LUKS qcow2 image before the options are read. */
    if (graph_unlock_chain(&oc, filename) < 0)
        goto out;
    /*
     * qcow2_do_open() repairs a dirty image it opens read-write, before
     * anything else can fail: the guest opens it alone first.  Not one
     * with persistent bitmaps: that open's close would store them once
     * more than qemu-img's one open does; its repair runs in the amend's
     * own open, or at the end when the amend fails first (the repair's
     * lines then come after the error: docs/differences.md).
     */
    if (!strcmp(fmt, "qcow2") && oc.img[0].info->dirty_flag && !oc.img[0].info->nbitmaps) {
        struct instar_amend_args open_only;

        memset(&open_only, 0, sizeof(open_only));
        open_only.flags = INSTAR_AMEND_OPEN_ONLY;
        if (amend_run(&oc, &open_only) < 0)
            goto out;
    }
    if (opts_has_help(options)) {
        ret = amend_option_help(fmt);
        goto out;
    }
    if (!strcmp(fmt, "luks")) {
        ret = amend_luks(&oc, &l, options, force);
        goto out;
    }
    if (strcmp(fmt, "qcow2")) {
        report_error("Format driver '%s' does not support option amendment", fmt);
        goto out;
    }

    if (amend_opts_parse(&l, qcow2_amend_descs, "qcow2", options) < 0)
        goto out;

    progress_print(0, 0);
    ret = amend_qcow2(&oc, &l, progress, force) < 0 ? 1 : 0;
    progress_print(100, 0);
out:
    progress_end();
    /*
     * A failure after qemu-img's read-write open (help, option errors):
     * the open and the close still store an image's persistent bitmaps
     * anew, as blk_unref() does.
     */
    if (oc_open && !amend_opened && !strcmp(oc.img[0].info->format, "qcow2") &&
        oc.img[0].info->nbitmaps) {
        struct instar_amend_args open_only;

        memset(&open_only, 0, sizeof(open_only));
        open_only.flags = INSTAR_AMEND_OPEN_ONLY;
        (void)amend_run(&oc, &open_only);
    }
    opts_free(&l);
    if (oc_open)
        open_chain_close(&oc);
    free(options);
    return ret;
}
