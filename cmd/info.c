/*
 * instar info: qemu-img 7.2's img_info().
 *
 * Shape: parse options; for each image of the (optional) backing chain
 * open it read-only on the host, let the sandboxed guest plan the info
 * (raw with -f raw is answered here: no image byte is interpreted), and
 * collect an image_info; then render once, human (bdrv_image_info_dump in
 * block/qapi.c) or JSON (the ImageInfo QAPI struct through
 * qobject_to_json_pretty).
 *
 * Names found inside images are decided by cmd/policy.c.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmds.h"
#include "info.h"
#include "object.h"
#include "open.h"
#include "policy.h"
#include "qobj.h"
#include "report.h"
#include "result.h"
#include "size.h"
#include "spec.h"
#include "vmm.h"

enum {
    OPTION_OUTPUT = 256,
    OPTION_BACKING_CHAIN = 257,
    OPTION_OBJECT = 258,
    OPTION_IMAGE_OPTS = 259,
};

/* --- Building an image_info --- */

static void snapshot_release(struct info_snapshot *s)
{
    free(s->id);
    free(s->name);
}

uint64_t info_bitmaps_bytes(const struct image_info *ii, uint64_t size)
{
    uint64_t sum = 0, cl = 2ULL << 20;
    uint32_t i;

    for (i = 0; i < ii->nbitmaps; i++) {
        uint64_t g = ii->bitmaps[i].granularity ? ii->bitmaps[i].granularity : 512;
        uint64_t ser = (size / g / 64 + 1) * 8;

        if (sum > UINT64_MAX / 2 || ser > UINT64_MAX / 4)
            return UINT64_MAX;
        sum += ser + ser / 64 + 3 * cl;
    }
    return sum;
}

void image_info_free(struct image_info *ii)
{
    uint32_t i;

    if (!ii)
        return;
    free(ii->filename);
    free(ii->backing_filename);
    free(ii->full_backing_filename);
    free(ii->backing_filename_format);
    free(ii->data_file);
    for (i = 0; i < ii->nsnapshots; i++)
        snapshot_release(&ii->snapshots[i]);
    free(ii->snapshots);
    for (i = 0; i < ii->nhidden_snapshots; i++)
        snapshot_release(&ii->hidden_snapshots[i]);
    free(ii->hidden_snapshots);
    qobj_free(ii->format_specific);
    for (i = 0; i < ii->nbitmaps; i++)
        free(ii->bitmaps[i].name);
    free(ii->bitmaps);
    for (i = 0; i < ii->nextent_files; i++)
        free(ii->extent_files[i]);
    free(ii);
}

/* A qobj string from a validated result string. */
static struct qobj *rstr(const struct result_info *v, struct instar_str s)
{
    char *c = result_str(v, s);
    struct qobj *o;

    if (!c)
        return NULL;
    o = qobj_str_new(c);
    free(c);
    return o;
}

/* QCryptoBlockInfoLUKS (qapi/crypto.json) members, in QAPI order. */
static void put_luks(struct qobj *enc, const struct result_info *v)
{
    const struct instar_info_luks *l = &v->info.luks;
    struct qobj *slots = qobj_list_new();
    unsigned i;

    qobj_dict_put(enc, "cipher-alg", rstr(v, l->cipher_alg));
    qobj_dict_put(enc, "cipher-mode", rstr(v, l->cipher_mode));
    qobj_dict_put(enc, "ivgen-alg", rstr(v, l->ivgen_alg));
    if (result_str_present(l->ivgen_hash_alg))
        qobj_dict_put(enc, "ivgen-hash-alg", rstr(v, l->ivgen_hash_alg));
    qobj_dict_put(enc, "hash-alg", rstr(v, l->hash_alg));
    qobj_dict_put_int(enc, "payload-offset", (int64_t)l->payload_offset);
    qobj_dict_put_int(enc, "master-key-iters", (int64_t)l->master_key_iters);
    qobj_dict_put(enc, "uuid", rstr(v, l->uuid));
    for (i = 0; i < INSTAR_LUKS_SLOTS; i++) {
        const struct instar_info_luks_slot *s = &l->slots[i];
        struct qobj *d = qobj_dict_new();

        qobj_dict_put_bool(d, "active", s->active != 0);
        if (s->active) {
            qobj_dict_put_int(d, "iters", (int64_t)s->iters);
            qobj_dict_put_int(d, "stripes", (int64_t)s->stripes);
        }
        qobj_dict_put_int(d, "key-offset", (int64_t)s->key_offset);
        qobj_list_append(slots, d);
    }
    qobj_dict_put(enc, "slots", slots);
}

/* Qcow2BitmapInfo list (qcow2_get_bitmap_info_list, block/qcow2-bitmap.c). */
static struct qobj *qcow2_bitmaps(const struct result_info *v)
{
    struct qobj *list = qobj_list_new();
    uint32_t i;

    for (i = 0; i < v->info.nbitmaps; i++) {
        struct instar_info_bitmap bm;
        struct qobj *d = qobj_dict_new(), *flags = qobj_list_new();

        result_info_bitmap(v, i, &bm);
        qobj_dict_put(d, "name", rstr(v, bm.name));
        qobj_dict_put(d, "granularity", qobj_uint_new(bm.granularity));
        if (bm.flags & INSTAR_BITMAP_IN_USE)
            qobj_list_append(flags, qobj_str_new("in-use"));
        if (bm.flags & INSTAR_BITMAP_AUTO)
            qobj_list_append(flags, qobj_str_new("auto"));
        qobj_dict_put(d, "flags", flags);
        qobj_list_append(list, d);
    }
    return list;
}

/*
 * ImageInfoSpecific for qcow2: {"type": "qcow2", "data":
 * ImageInfoSpecificQCow2}, members in QAPI order as qcow2_get_specific_info
 * (block/qcow2.c) fills them.
 */
static struct qobj *qcow2_specific(const struct result_info *v)
{
    const struct instar_info_result *r = &v->info;
    struct qobj *spec = qobj_dict_new(), *data = qobj_dict_new();
    bool v3 = r->qcow2_version == 3;

    qobj_dict_put_str(spec, "type", "qcow2");
    qobj_dict_put_str(data, "compat", v3 ? "1.1" : "0.10");
    if (v3) {
        if (result_str_present(r->data_file))
            qobj_dict_put(data, "data-file", rstr(v, r->data_file));
        if (r->qcow2_flags & INSTAR_QCOW2_HAS_DATA_FILE)
            qobj_dict_put_bool(data, "data-file-raw",
                               (r->qcow2_flags & INSTAR_QCOW2_DATA_FILE_RAW) != 0);
        qobj_dict_put_bool(data, "extended-l2", (r->qcow2_flags & INSTAR_QCOW2_EXTENDED_L2) != 0);
        qobj_dict_put_bool(data, "lazy-refcounts", (r->qcow2_flags & INSTAR_QCOW2_LAZY_REFS) != 0);
        qobj_dict_put_bool(data, "corrupt", (r->qcow2_flags & INSTAR_QCOW2_CORRUPT) != 0);
    }
    qobj_dict_put_int(data, "refcount-bits", r->refcount_bits);
    if (r->encrypt_format != INSTAR_ENCRYPT_NONE) {
        struct qobj *enc = qobj_dict_new();

        qobj_dict_put_str(enc, "format", r->encrypt_format == INSTAR_ENCRYPT_LUKS ? "luks" : "aes");
        if (r->encrypt_format == INSTAR_ENCRYPT_LUKS)
            put_luks(enc, v);
        qobj_dict_put(data, "encrypt", enc);
    }
    if (v3 && r->nbitmaps > 0)
        qobj_dict_put(data, "bitmaps", qcow2_bitmaps(v));
    /* A v2 header has no compression type field: always zlib. */
    qobj_dict_put_str(data, "compression-type", v3 && r->compression_type == 1 ? "zstd" : "zlib");
    qobj_dict_put(spec, "data", data);
    return spec;
}

/* QEMUSnapshotInfo keeps ids and names in char[128] / char[256]: cut before copying. */
static char *snapshot_str(const struct result_info *v, struct instar_str s, size_t max)
{
    return result_strn(v, s, max - 1);
}

/* A NUL-terminated copy of a fixed guest array (cut at its first NUL or its end). */
static struct qobj *fixed_str(const char *s, size_t n)
{
    return qobj_str_newn(s, strnlen(s, n));
}

/*
 * ImageInfoSpecific for vmdk: {"type": "vmdk", "data":
 * ImageInfoSpecificVmdk}, as vmdk_get_specific_info() fills it; each
 * extent an ImageInfo of vmdk_get_extent_info() (filename, format,
 * virtual-size, cluster-size unless flat, compressed when it is).
 */
static struct qobj *vmdk_specific(const struct result_info *v, const struct image_info *ii)
{
    const struct instar_info_vmdk *k = &v->info.vmdk;
    struct qobj *spec = qobj_dict_new(), *data = qobj_dict_new(), *list = qobj_list_new();
    uint32_t i;

    qobj_dict_put_str(spec, "type", "vmdk");
    qobj_dict_put(data, "create-type", fixed_str(k->create_type, sizeof(k->create_type)));
    qobj_dict_put_int(data, "cid", k->cid);
    qobj_dict_put_int(data, "parent-cid", k->parent_cid);
    for (i = 0; i < k->nextents; i++) {
        const struct instar_info_vmdk_extent *e = &k->extents[i];
        struct qobj *x = qobj_dict_new();

        /* vmdk_get_extent_info(): its file's name (the descriptor's dir + the name). */
        if (e->file == 0 || e->file > ii->nextent_files)
            qobj_dict_put_str(x, "filename", ii->filename);
        else
            qobj_dict_put_str(x, "filename", ii->extent_files[e->file - 1]);
        qobj_dict_put(x, "format", fixed_str(e->type, sizeof(e->type)));
        qobj_dict_put_int(x, "virtual-size", (int64_t)e->virtual_size);
        if (!(e->flags & INSTAR_VMDK_EXT_FLAT))
            qobj_dict_put_int(x, "cluster-size", (int64_t)e->cluster_size);
        if (e->flags & INSTAR_VMDK_EXT_COMPRESSED)
            qobj_dict_put_bool(x, "compressed", true);
        qobj_list_append(list, x);
    }
    qobj_dict_put(data, "extents", list);
    qobj_dict_put(spec, "data", data);
    return spec;
}

int info_from_result(struct image_info *ii, const struct result_info *v)
{
    const struct instar_info_result *r = &v->info;
    bool qcow2 = (r->flags & INSTAR_INFO_QCOW2) != 0;
    uint32_t i;

    memcpy(ii->format, r->format, sizeof(r->format));
    ii->format[sizeof(ii->format) - 1] = '\0';
    ii->virtual_size = (int64_t)r->virtual_size;
    ii->encrypted = (r->flags & INSTAR_INFO_ENCRYPTED) != 0;
    ii->encrypt_luks = r->encrypt_format == INSTAR_ENCRYPT_LUKS;
    if (ii->encrypt_luks)
        for (unsigned k = 0; k < INSTAR_LUKS_SLOTS && k < 8; k++)
            if (v->info.luks.slots[k].active)
                ii->luks_slots_active |= 1u << k;
    ii->has_cluster_size = r->cluster_size != 0;
    ii->cluster_size = (int64_t)r->cluster_size;
    ii->has_dirty_flag = (r->flags & INSTAR_INFO_DIRTY_VALID) != 0;
    ii->dirty_flag = (r->flags & INSTAR_INFO_DIRTY) != 0;

    if (result_str_present(r->backing_file)) {
        ii->backing_filename = result_str(v, r->backing_file);
        if (!ii->backing_filename)
            return -ENOMEM;
        if (!ii->backing_filename[0]) {
            /* bs->backing_file "" means no backing file to QEMU. */
            free(ii->backing_filename);
            ii->backing_filename = NULL;
        }
    }
    if (ii->backing_filename) {
        ii->full_backing_filename = policy_full_backing(ii->filename, ii->backing_filename);
        if (!ii->full_backing_filename)
            return -ENOMEM;
        if (result_str_present(r->backing_fmt)) {
            ii->backing_filename_format = result_str(v, r->backing_fmt);
            if (!ii->backing_filename_format)
                return -ENOMEM;
            if (!ii->backing_filename_format[0]) {
                free(ii->backing_filename_format);
                ii->backing_filename_format = NULL;
            }
        }
    }

    if (qcow2 && result_str_present(r->data_file)) {
        ii->data_file = result_str(v, r->data_file);
        if (!ii->data_file)
            return -ENOMEM;
    }
    ii->has_external_data = qcow2 && (r->qcow2_flags & INSTAR_QCOW2_HAS_DATA_FILE);
    ii->data_file_raw = ii->has_external_data && (r->qcow2_flags & INSTAR_QCOW2_DATA_FILE_RAW);

    /*
     * qcow2_snapshot_list() answers -ENOTSUP with an external data file,
     * but qcow2_snapshot_load_tmp() (measure -l, convert -l) reads the table.
     */
    if (r->nsnapshots) {
        bool hidden = qcow2 && (r->qcow2_flags & INSTAR_QCOW2_HAS_DATA_FILE);
        struct info_snapshot **tab = hidden ? &ii->hidden_snapshots : &ii->snapshots;
        uint32_t *n = hidden ? &ii->nhidden_snapshots : &ii->nsnapshots;

        *tab = calloc(r->nsnapshots, sizeof(**tab));
        if (!*tab)
            return -ENOMEM;
        for (i = 0; i < r->nsnapshots; i++) {
            struct instar_info_snapshot sn;
            struct info_snapshot *o = &(*tab)[i];

            result_info_snapshot(v, i, &sn);
            *n = i + 1;
            o->id = snapshot_str(v, sn.id, 128);
            o->name = snapshot_str(v, sn.name, 256);
            if (!o->id || !o->name)
                return -ENOMEM;
            o->vm_state_size = sn.vm_state_size;
            o->date_sec = sn.date_sec;
            o->date_nsec = sn.date_nsec;
            o->vm_clock_nsec = sn.vm_clock_nsec;
            o->icount = sn.icount;
        }
    }

    if (r->flags & INSTAR_INFO_VMDK) {
        ii->format_specific = vmdk_specific(v, ii);
        ii->vmdk_cid = v->info.vmdk.cid;
        ii->vmdk_stream =
            !strncmp(v->info.vmdk.create_type, "streamOptimized", sizeof(v->info.vmdk.create_type));
    }
    if (r->flags & INSTAR_INFO_LUKS) {
        /* block_crypto_get_specific_info_luks(): {"type": "luks", "data": QCryptoBlockInfoLUKS}. */
        struct qobj *data = qobj_dict_new();

        ii->format_specific = qobj_dict_new();
        ii->luks_payload_offset = v->info.luks.payload_offset;
        for (unsigned i = 0; i < INSTAR_LUKS_SLOTS && i < 8; i++)
            if (v->info.luks.slots[i].active)
                ii->luks_slots_active |= 1u << i;
        put_luks(data, v);
        qobj_dict_put_str(ii->format_specific, "type", "luks");
        qobj_dict_put(ii->format_specific, "data", data);
        if (qobj_failed(ii->format_specific))
            return -ENOMEM;
    }
    if (qcow2) {
        ii->format_specific = qcow2_specific(v);
        if (qobj_failed(ii->format_specific))
            return -ENOMEM;
        ii->qcow2_version = r->qcow2_version;
    }
    /* A v2 image has no bitmaps (QEMU ignores the extension there). */
    if (qcow2 && r->qcow2_version == 3 && r->nbitmaps) {
        ii->bitmaps = calloc(r->nbitmaps, sizeof(*ii->bitmaps));
        if (!ii->bitmaps)
            return -ENOMEM;
        for (i = 0; i < r->nbitmaps; i++) {
            struct instar_info_bitmap bm;

            result_info_bitmap(v, i, &bm);
            ii->nbitmaps = i + 1;
            ii->bitmaps[i].granularity = bm.granularity;
            ii->bitmaps[i].in_use = (bm.flags & INSTAR_BITMAP_IN_USE) != 0;
            ii->bitmaps[i].name = result_str(v, bm.name);
            if (!ii->bitmaps[i].name)
                return -ENOMEM;
        }
    }
    return 0;
}

/* --- Opening one image --- */

/* -U (or force-share=on): take no locks (QEMU's BDRV_O_FORCE_SHARE). */
static bool info_force_share;

/*
 * Open and describe one image of the chain (cmd/open.c), then let the
 * file go: info holds no image open while it renders.
 * @display: as qemu-img would print it in "Could not open '...'"
 * @name: the name to open (a host path as it stands with OPEN_LITERAL)
 * @fmt: format (NULL to probe)
 * @depth: 0 for the image named on the command line
 * @flags: OPEN_LITERAL or 0
 * Returns a new image_info, or NULL after reporting.
 */
static struct image_info *info_one(const char *display, const char *name, const char *fmt,
                                   unsigned depth, unsigned flags, struct policy_chain *chain,
                                   uint64_t *file_len)
{
    struct open_image img;
    struct image_info *ii;
    char *msg = NULL;
    int r;

    r = open_image(&img, name, fmt, depth,
                   flags | OPEN_METADATA | (info_force_share ? OPEN_FORCE_SHARE : 0), chain, &msg);
    if (r == -2)
        report_error("%s", msg ? msg : strerror(ENOMEM));
    else if (r < 0)
        report_error("Could not open '%s': %s", display, msg ? msg : strerror(ENOMEM));
    free(msg);
    if (r < 0)
        return NULL;
    ii = img.info;
    img.info = NULL;
    *file_len = (uint64_t)img.st.st_size;
    open_image_release(&img);
    return ii;
}

/*
 * collect_image_info_list(): the image (as spec_parse() read it), then
 * with chain its backing files, each opened with the format its parent
 * names.  Returns the number of images in *out (caller frees each and the
 * array), or -1 after reporting.
 */
static int info_collect(const struct img_spec *spec, bool chain, struct image_info ***out)
{
    struct image_info **list = NULL, *ii;
    const char *names[POLICY_CHAIN_MAX + 1];
    const char *filename = spec->path ? spec->path : spec->display, *fmt = spec->fmt;
    const char *display = spec->display;
    unsigned flags = spec->path ? OPEN_LITERAL : 0;
    struct policy_chain pc;
    struct instar_window window;
    uint64_t file_len = 0;

    if (spec->vpc_size_calc)
        flags |= spec->vpc_size_calc == 1 ? OPEN_VPC_SIZE_CHS : OPEN_VPC_SIZE_CURRENT;
    unsigned n = 0, i;

    policy_chain_init(&pc);
    list = calloc(POLICY_CHAIN_MAX + 1, sizeof(*list));
    if (!list) {
        report_error("Could not open '%s': %s", display, strerror(ENOMEM));
        return -1;
    }
    while (filename) {
        for (i = 0; i < n; i++) {
            if (!strcmp(names[i], filename)) {
                report_error("Backing file '%s' creates an infinite loop.", filename);
                goto fail;
            }
        }
        if (n >= POLICY_CHAIN_MAX) {
            report_error("Could not open '%s': backing chain longer than %d images", filename,
                         POLICY_CHAIN_MAX);
            goto fail;
        }
        ii = info_one(display, filename, fmt, n, flags, &pc, &file_len);
        if (!ii)
            goto fail;
        /* raw's offset and size options. */
        if (n == 0 && open_raw_window(ii, file_len, spec, &window) < 0) {
            image_info_free(ii);
            goto fail;
        }
        /* data-file.filename: qcow2's child (not opened by info's metadata-only open). */
        if (n == 0 && spec->data_file && strcmp(ii->format, "qcow2")) {
            report_error("Could not open '%s': Block format '%s' does not support the option "
                         "'data-file.filename'",
                         display, ii->format);
            image_info_free(ii);
            goto fail;
        }
        if (n == 0 && spec->vpc_size_calc && open_vpc_json_filename(ii, spec->vpc_size_calc) < 0) {
            image_info_free(ii);
            report_error("Could not open '%s': %s", display, strerror(ENOMEM));
            goto fail;
        }
        /* Opened without I/O (BDRV_O_NO_IO): the secret is named, never looked up. */
        if (n == 0 && spec->key_secret && !strcmp(ii->format, "luks") &&
            open_luks_json_filename(ii, spec->key_secret) < 0) {
            image_info_free(ii);
            report_error("Could not open '%s': %s", display, strerror(ENOMEM));
            goto fail;
        }
        if (n == 0 && spec->key_secret &&
            (!strcmp(ii->format, "qcow") || !strcmp(ii->format, "qcow2")) &&
            open_encrypt_json_filename(ii, spec->key_secret) < 0) {
            image_info_free(ii);
            report_error("Could not open '%s': %s", display, strerror(ENOMEM));
            goto fail;
        }
        flags &= ~(OPEN_VPC_SIZE_CHS | OPEN_VPC_SIZE_CURRENT);
        names[n] = filename;
        list[n++] = ii;

        display = filename = NULL;
        fmt = NULL;
        flags = 0;
        if (chain && ii->backing_filename) {
            display = filename = ii->full_backing_filename;
            fmt = ii->backing_filename_format;
        }
    }
    *out = list;
    return (int)n;
fail:
    for (i = 0; i < n; i++)
        image_info_free(list[i]);
    free(list);
    return -1;
}

/* --- Rendering --- */

/* bdrv_snapshot_dump(): one row, or the header when sn is NULL. */
void info_snapshot_dump(FILE *f, const struct info_snapshot *sn)
{
    char clock_buf[128], icount_buf[128] = "", date_buf[64] = "", size_buf[SIZE_STR_MAX];
    int64_t secs;
    struct tm tm;
    time_t t;

    if (!sn) {
        fprintf(f, "%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
                "ICOUNT");
        return;
    }
    t = (time_t)sn->date_sec;
    if (localtime_r(&t, &tm))
        strftime(date_buf, sizeof(date_buf), "%Y-%m-%d %H:%M:%S", &tm);
    secs = (int64_t)(sn->vm_clock_nsec / 1000000000);
    snprintf(clock_buf, sizeof(clock_buf), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
             (int)((secs / 60) % 60), (int)(secs % 60),
             (int)((sn->vm_clock_nsec / 1000000) % 1000));
    if (sn->icount != UINT64_MAX)
        snprintf(icount_buf, sizeof(icount_buf), "%" PRId64, (int64_t)sn->icount);
    fprintf(f, "%-9s %-16s %8s%20s%13s%11s", sn->id, sn->name,
            size_to_str(sn->vm_state_size, size_buf), date_buf, clock_buf, icount_buf);
}

/* bdrv_image_info_dump(). */
int info_dump_human(FILE *f, const struct image_info *ii)
{
    char size_buf[SIZE_STR_MAX], dsize_buf[SIZE_STR_MAX];
    uint32_t i;

    if (ii->has_actual_size)
        size_to_str((uint64_t)ii->actual_size, dsize_buf);
    else
        strcpy(dsize_buf, "unavailable");
    fprintf(f,
            "image: %s\n"
            "file format: %s\n"
            "virtual size: %s (%" PRId64 " bytes)\n"
            "disk size: %s\n",
            ii->filename, ii->format, size_to_str((uint64_t)ii->virtual_size, size_buf),
            ii->virtual_size, dsize_buf);
    if (ii->encrypted)
        fputs("encrypted: yes\n", f);
    if (ii->has_cluster_size)
        fprintf(f, "cluster_size: %" PRId64 "\n", ii->cluster_size);
    if (ii->has_dirty_flag && ii->dirty_flag)
        fputs("cleanly shut down: no\n", f);
    if (ii->backing_filename) {
        fprintf(f, "backing file: %s", ii->backing_filename);
        if (!ii->full_backing_filename)
            fputs(" (cannot determine actual path)", f);
        else if (strcmp(ii->backing_filename, ii->full_backing_filename))
            fprintf(f, " (actual path: %s)", ii->full_backing_filename);
        fputc('\n', f);
        if (ii->backing_filename_format)
            fprintf(f, "backing file format: %s\n", ii->backing_filename_format);
    }
    if (ii->nsnapshots) {
        fputs("Snapshot list:\n", f);
        info_snapshot_dump(f, NULL);
        fputc('\n', f);
        for (i = 0; i < ii->nsnapshots; i++) {
            info_snapshot_dump(f, &ii->snapshots[i]);
            fputc('\n', f);
        }
    }
    if (ii->format_specific) {
        fputs("Format specific information:\n", f);
        if (qobj_dump_human(f, 1, qobj_dict_get(ii->format_specific, "data")) < 0)
            return -1;
    }
    return ferror(f) ? -1 : 0;
}

/* SnapshotInfo (qapi/block-core.json), members in QAPI order. */
static struct qobj *snapshot_qobj(const struct info_snapshot *sn)
{
    struct qobj *d = qobj_dict_new();

    qobj_dict_put_str(d, "id", sn->id);
    qobj_dict_put_str(d, "name", sn->name);
    qobj_dict_put_int(d, "vm-state-size", (int64_t)sn->vm_state_size);
    qobj_dict_put_int(d, "date-sec", sn->date_sec);
    qobj_dict_put_int(d, "date-nsec", sn->date_nsec);
    qobj_dict_put_int(d, "vm-clock-sec", (int64_t)(sn->vm_clock_nsec / 1000000000));
    qobj_dict_put_int(d, "vm-clock-nsec", (int64_t)(sn->vm_clock_nsec % 1000000000));
    if (sn->icount != UINT64_MAX)
        qobj_dict_put_int(d, "icount", (int64_t)sn->icount);
    return d;
}

struct qobj *info_to_qobj(const struct image_info *ii)
{
    struct qobj *d = qobj_dict_new();
    uint32_t i;

    /* ImageInfo (qapi/block-core.json), members in QAPI order. */
    qobj_dict_put_str(d, "filename", ii->filename);
    qobj_dict_put_str(d, "format", ii->format);
    if (ii->has_dirty_flag)
        qobj_dict_put_bool(d, "dirty-flag", ii->dirty_flag);
    if (ii->has_actual_size)
        qobj_dict_put_int(d, "actual-size", ii->actual_size);
    qobj_dict_put_int(d, "virtual-size", ii->virtual_size);
    if (ii->has_cluster_size)
        qobj_dict_put_int(d, "cluster-size", ii->cluster_size);
    if (ii->encrypted)
        qobj_dict_put_bool(d, "encrypted", true);
    if (ii->backing_filename) {
        qobj_dict_put_str(d, "backing-filename", ii->backing_filename);
        if (ii->full_backing_filename)
            qobj_dict_put_str(d, "full-backing-filename", ii->full_backing_filename);
        if (ii->backing_filename_format)
            qobj_dict_put_str(d, "backing-filename-format", ii->backing_filename_format);
    }
    if (ii->nsnapshots) {
        struct qobj *l = qobj_list_new();

        for (i = 0; i < ii->nsnapshots; i++)
            qobj_list_append(l, snapshot_qobj(&ii->snapshots[i]));
        qobj_dict_put(d, "snapshots", l);
    }
    if (ii->format_specific)
        qobj_dict_put(d, "format-specific", qobj_clone(ii->format_specific)); /* one owner each */
    return d;
}

/* --- The handler --- */

static int info_dump(const struct image_info *const *list, int n, bool json, bool chain)
{
    struct qobj *root;
    int i, ret = 0;

    if (!json) {
        for (i = 0; i < n && ret == 0; i++) {
            if (i)
                putchar('\n');
            ret = info_dump_human(stdout, list[i]);
        }
        return ret;
    }
    if (chain) {
        root = qobj_list_new();
        for (i = 0; i < n; i++)
            qobj_list_append(root, info_to_qobj(list[i]));
    } else {
        root = info_to_qobj(list[0]);
    }
    if (qobj_failed(root)) {
        qobj_free(root);
        report_error("%s", strerror(ENOMEM));
        return -1;
    }
    ret = qobj_to_json(stdout, root);
    putchar('\n');
    qobj_free(root);
    return ret;
}

/*
 * qemu-img info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt]
 *               [--backing-chain] [-U] filename
 * Exit codes: 0 printed, 1 usage error or an image could not be described.
 */
int cmd_info(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"format", required_argument, 0, 'f'},
        {"output", required_argument, 0, OPTION_OUTPUT},
        {"backing-chain", no_argument, 0, OPTION_BACKING_CHAIN},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *filename, *fmt = NULL, *output = NULL;
    bool chain = false, image_opts = false, json = false;
    struct image_info **list = NULL;
    struct img_spec spec;
    int c, n, i, ret = 1;

    for (;;) {
        c = cmd_getopt(argc, argv, ":f:hU", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            info_force_share = true;
            break;
        case OPTION_OUTPUT:
            output = optarg;
            break;
        case OPTION_BACKING_CHAIN:
            chain = true;
            break;
        case OPTION_OBJECT:
            /* user_creatable_process_cmdline(): help or a bad definition ends qemu-img. */
            c = object_add(optarg);
            if (c != 0)
                return c > 0 ? 0 : 1;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }
    if (optind != argc - 1)
        return report_usage("Expecting one image file name");
    filename = argv[optind];

    if (cmd_output_json(output, &json) < 0)
        return 1;
    if (image_opts && fmt) {
        report_error("--image-opts and --format are mutually exclusive");
        return 1;
    }
    if (spec_parse(&spec, filename, image_opts, fmt, info_force_share) < 0)
        return 1;
    /* info opens each image without its backing file (BDRV_O_NO_BACKING). */
    if (spec_refuse_backing(&spec) < 0) {
        spec_release(&spec);
        return 1;
    }
    info_force_share = spec.force_share;
    n = info_collect(&spec, chain, &list);
    spec_release(&spec);
    if (n < 0)
        return 1;
    if (info_dump((const struct image_info *const *)list, n, json, chain) == 0)
        ret = 0;
    for (i = 0; i < n; i++)
        image_info_free(list[i]);
    free(list);
    return ret;
}
