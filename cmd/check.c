/*
 * instar check: qemu-img 7.2's img_check().
 *
 * Shape: parse options as img_check does (same messages, same order of
 * checks), open the image and its chain as img_open() does
 * (cmd/open.c), let the sandboxed guest check it (INSTAR_OP_CHECK): it
 * streams qemu's per-problem lines (INSTAR_HC_REPORT), which the host
 * validates and prints on stderr as they arrive, then returns qemu's
 * BdrvCheckResult; render it once, human (dump_human_image_check) or
 * JSON (the ImageCheck QAPI struct).  raw has no check: answered here.
 *
 * Repair (-r leaks|all): the image is opened read-write and the guest
 * repairs it (INSTAR_CHECK_FIX_*) within a write limit; when anything was
 * fixed, "The following inconsistencies were found and repaired" and a
 * second, read-only guest run re-checks the file, whose result is
 * rendered (with the first run's *_fixed counts), as img_check does.
 * docs/repair.md has the safety model.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgcheck.h"
#include "cmds.h"
#include "object.h"
#include "open.h"
#include "vhdx/vhdx_err.h"
#include "qobj.h"
#include "opts.h"
#include "report.h"
#include "spec.h"
#include "result.h"
#include "vmm.h"

enum {
    OPTION_OUTPUT = 256,
    OPTION_OBJECT = 257,
    OPTION_IMAGE_OPTS = 258,
};

/* Guest RAM for a check: refcount tables of large images live there (no guest value). */
#define CHECK_GUEST_MEM (512ULL << 20)

/* --- Rendering --- */

void check_dump_human(FILE *f, const struct check_report *c)
{
    if (!(c->corruptions || c->leaks || c->check_errors)) {
        fputs("No errors were found on the image.\n", f);
    } else {
        if (c->corruptions)
            fprintf(f,
                    "\n%" PRId64 " errors were found on the image.\n"
                    "Data may be corrupted, or further writes to the image may corrupt it.\n",
                    c->corruptions);
        if (c->leaks)
            fprintf(f,
                    "\n%" PRId64 " leaked clusters were found on the image.\n"
                    "This means waste of disk space, but no harm to data.\n",
                    c->leaks);
        if (c->check_errors)
            fprintf(f, "\n%" PRId64 " internal errors have occurred during the check.\n",
                    c->check_errors);
    }
    if (c->total_clusters != 0 && c->allocated_clusters != 0)
        fprintf(f,
                "%" PRId64 "/%" PRId64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
                "compressed clusters\n",
                c->allocated_clusters, c->total_clusters,
                c->allocated_clusters * 100.0 / c->total_clusters,
                c->fragmented_clusters * 100.0 / c->allocated_clusters,
                c->compressed_clusters * 100.0 / c->allocated_clusters);
    if (c->image_end_offset)
        fprintf(f, "Image end offset: %" PRId64 "\n", c->image_end_offset);
}

struct qobj *check_to_qobj(const struct check_report *c)
{
    struct qobj *d = qobj_dict_new();

    /* ImageCheck (qapi/block-core.json), members in QAPI order; optional
     * counters are present when non-zero, as collect_image_check sets them. */
    qobj_dict_put_str(d, "filename", c->filename);
    qobj_dict_put_str(d, "format", c->format);
    qobj_dict_put_int(d, "check-errors", c->check_errors);
    if (c->image_end_offset)
        qobj_dict_put_int(d, "image-end-offset", c->image_end_offset);
    if (c->corruptions)
        qobj_dict_put_int(d, "corruptions", c->corruptions);
    if (c->leaks)
        qobj_dict_put_int(d, "leaks", c->leaks);
    if (c->corruptions_fixed)
        qobj_dict_put_int(d, "corruptions-fixed", c->corruptions_fixed);
    if (c->leaks_fixed)
        qobj_dict_put_int(d, "leaks-fixed", c->leaks_fixed);
    if (c->total_clusters)
        qobj_dict_put_int(d, "total-clusters", c->total_clusters);
    if (c->allocated_clusters)
        qobj_dict_put_int(d, "allocated-clusters", c->allocated_clusters);
    if (c->fragmented_clusters)
        qobj_dict_put_int(d, "fragmented-clusters", c->fragmented_clusters);
    if (c->compressed_clusters)
        qobj_dict_put_int(d, "compressed-clusters", c->compressed_clusters);
    return d;
}

int check_dump_json(FILE *f, const struct check_report *c)
{
    struct qobj *root = check_to_qobj(c);
    int ret;

    if (qobj_failed(root)) {
        qobj_free(root);
        return -1;
    }
    ret = qobj_to_json(f, root);
    fputc('\n', f);
    qobj_free(root);
    return ret;
}

void check_report_from_result(struct check_report *c, const char *filename,
                              const struct instar_check_result *r)
{
    memset(c, 0, sizeof(*c));
    c->filename = filename;
    memcpy(c->format, r->format, sizeof(c->format));
    c->format[sizeof(c->format) - 1] = '\0';
    c->corruptions = r->corruptions;
    c->leaks = r->leaks;
    c->check_errors = r->check_errors;
    c->corruptions_fixed = r->corruptions_fixed;
    c->leaks_fixed = r->leaks_fixed;
    c->image_end_offset = r->image_end_offset;
    c->total_clusters = r->total_clusters;
    c->allocated_clusters = r->allocated_clusters;
    c->fragmented_clusters = r->fragmented_clusters;
    c->compressed_clusters = r->compressed_clusters;
}

/* --- Streamed diagnostics --- */

int check_print_batch(FILE *f, const void *recs, size_t len)
{
    struct instar_report_rec rec;
    size_t off = 0;
    const char *s;

    if (result_report_validate(recs, len) != RESULT_OK)
        return -1;
    while (result_report_next(recs, len, &off, &rec, &s)) {
        if (rec.flags & INSTAR_REC_PREFIX)
            fprintf(f, "%s: ", report_progname());
        report_code_render_to(f, rec.code, rec.args, s, rec.slen);
        fputc('\n', f);
    }
    fflush(f);
    return 0;
}

int check_report_cb(void *opaque, const void *recs, size_t len)
{
    return check_print_batch(opaque, recs, len);
}

/* --- Running the guest --- */

/* Printable ASCII only: vmm details may quote guest-supplied strings. */
static void sanitize(char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n && s[i]; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            s[i] = '?';
    if (n)
        s[n - 1] = '\0';
}

/* A version 4 UUID from the system's random source (qemu_uuid_generate()). */
static int check_random_guid(uint8_t uuid[16])
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, uuid, 16);

    if (fd >= 0)
        close(fd);
    if (n != 16) {
        errno = EIO;
        return -1;
    }
    uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
    return 0;
}

/*
 * The write limit of a repair: the file may grow by what a refcount
 * rebuild can need (a 1/32 of the file in refcount blocks at worst, a
 * table, the old structure left as leaks) and 64 MiB more; saturating.
 * size is the host's own fstat of the file, never a guest value.
 */
static uint64_t check_write_limit(uint64_t size)
{
    uint64_t lim = size + size / 32;

    if (lim < size || lim + (64ULL << 20) < lim)
        return UINT64_MAX;
    return lim + (64ULL << 20);
}

/*
 * Let the guest check the image open as img.  Returns 0 with *v filled,
 * or -1 after reporting (a failure of the sandbox or an invalid result).
 */
static int check_run(const struct open_image *img, const char *key, const char *filename,
                     unsigned fix, struct result_check *v)
{
    struct instar_check_args args;
    struct vmm_config cfg;
    struct vmm_dev devs[1 + INSTAR_VMDK_EXTENTS_MAX], *dev = &devs[0];
    struct vmm_outcome out;
    enum result_bad why;
    int ret = -1;

    memset(&args, 0, sizeof(args));
    memset(devs, 0, sizeof(devs));
    snprintf(args.format, sizeof(args.format), "%s", img->info->format);
    args.flags = fix;
    if (fix && !strcmp(img->info->format, "vhdx")) {
        /* A log replayed by the read-write open: the GUIDs qemu generates. */
        for (int i = 0; i < 3; i++)
            if (check_random_guid(args.vhdx_guids[i]) < 0) {
                report_error("Could not check '%s': %s", filename, strerror(errno));
                return -1;
            }
    }
    if (strlen(filename) > 4 && !strcmp(filename + strlen(filename) - 4, ".dmg"))
        args.flags |= INSTAR_CHECK_NAME_DMG;
    dev->fd = img->fd;
    dev->size = (uint64_t)img->st.st_size;
    dev->flags = INSTAR_DEV_READ;
    if (fix) {
        /* Room for any refcount rebuild, and no more (docs/repair.md). */
        dev->flags |= INSTAR_DEV_WRITE;
        dev->write_limit = check_write_limit(dev->size);
    }
    /* vmdk: its extent files, read-only, as devices 1.. (guest/drv_vmdk.c). */
    for (unsigned k = 0; k < img->next; k++) {
        devs[1 + k].fd = img->ext_fd[k];
        devs[1 + k].size = (uint64_t)img->ext_st[k].st_size;
        devs[1 + k].flags = INSTAR_DEV_READ;
    }
    memset(&cfg, 0, sizeof(cfg));
    if (key) {
        /* The passphrase, for the guest's PBKDF2 only: never logged. */
        size_t len = strlen(key);

        if (len > INSTAR_KEY_BYTES) {
            report_error("Could not open '%s': instar takes secrets of up to %d bytes", filename,
                         INSTAR_KEY_BYTES);
            return -1;
        }
        args.has_key = 1;
        args.key.len = (uint32_t)len;
        memcpy(args.key.data, key, len);
        cfg.watchdog_ms = 300000; /* PBKDF2 makes no hypercall (cmd/datarun.c) */
    }
    cfg.mem_size = CHECK_GUEST_MEM;
    cfg.report = check_report_cb;
    cfg.report_opaque = stderr;
    memset(&out, 0, sizeof(out));

    if (vmm_run(&cfg, INSTAR_OP_CHECK, &args, sizeof(args), devs, 1 + img->next, &out) != 0) {
        sanitize(out.detail, sizeof(out.detail));
        report_error("Could not check '%s': sandbox failure: %s", filename,
                     out.detail[0] ? out.detail : "unknown error");
        goto out;
    }
    why = result_check_parse(out.result, out.result_len, v);
    if (why != RESULT_OK) {
        report_error("Could not check '%s': sandbox failure: invalid result (%s)", filename,
                     result_bad_str(why));
        goto out;
    }
    report_guest_warning(v->hdr.warn_code, v->hdr.warn_count, v->hdr.err_args[2]);
    if (v->hdr.error != 0) {
        const char *s = v->hdr.err_str.off ? (const char *)out.result + v->hdr.err_str.off : NULL;
        uint32_t slen = v->hdr.err_str.len;

        if (vhdx_err_names_file(v->hdr.error)) {
            s = filename;
            slen = (uint32_t)strlen(filename);
        }
        open_vhdx_preface(v->hdr.error, v->hdr.err_args);
        fprintf(stderr, "%s: Could not open '%s': ", report_progname(), filename);
        report_code_render_to(stderr, v->hdr.error, v->hdr.err_args, s, slen);
        fputc('\n', stderr);
        goto out;
    }
    ret = 0;
out:
    vmm_outcome_release(&out);
    return ret;
}

/*
 * qemu-img check [--object objectdef] [--image-opts] [-q] [-f fmt]
 *                [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename
 * Exit codes (img_check):
 *   0  check completed, the image is clean
 *   1  usage error, the image could not be opened, or the check failed
 *      ("Check failed: <strerror>", or "Check failed" with internal errors)
 *   2  check completed, the image is corrupted
 *   3  check completed, the image only leaks clusters
 *  63  the format has no check ("This image format does not support checks")
 */
int cmd_check(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"format", required_argument, 0, 'f'},
        {"repair", required_argument, 0, 'r'},
        {"output", required_argument, 0, OPTION_OUTPUT},
        {"object", required_argument, 0, OPTION_OBJECT},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *filename, *fmt = NULL, *output = NULL, *cache = "writeback";
    bool json = false, quiet = false, image_opts = false, force_share = false;
    struct open_chain oc;
    struct result_check v;
    struct check_report rep;
    unsigned fix = 0;
    int c, ret = 1;

    for (;;) {
        c = cmd_getopt(argc, argv, ":hf:r:T:qU", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'f':
            fmt = optarg;
            break;
        case 'r':
            if (!strcmp(optarg, "leaks"))
                fix = INSTAR_CHECK_FIX_LEAKS;
            else if (!strcmp(optarg, "all"))
                fix = INSTAR_CHECK_FIX_LEAKS | INSTAR_CHECK_FIX_ERRORS;
            else
                return report_usage("Unknown option value for -r (expecting 'leaks' or 'all'): %s",
                                    optarg);
            break;
        case OPTION_OUTPUT:
            output = optarg;
            break;
        case 'T':
            cache = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            force_share = true;
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
    if (cmd_cache_mode(cache, &(bool){0}, &(bool){0}) < 0) {
        report_error("Invalid source cache option: %s", cache);
        return 1;
    }
    report_set_quiet(quiet);

    /* -r opens read-write (BDRV_O_RDWR): its open errors and locks are qemu's. */
    if (open_chain_arg(&oc, filename, image_opts, fmt, force_share,
                       OPEN_CHECK | (fix ? OPEN_RDWR : 0)) < 0)
        return 1;
    ret = 1;
    /* raw has no bdrv_check: qemu's -ENOTSUP, with or without -r. */
    if (!strcmp(oc.img[0].info->format, "raw") || !strcmp(oc.img[0].info->format, "file")) {
        report_error("This image format does not support checks");
        ret = 63;
        goto out;
    }
    if (check_run(&oc.img[0], oc.key, filename, fix, &v) < 0)
        goto out;
    if (v.check.flags & INSTAR_CHECK_NOTSUP) {
        report_error("This image format does not support checks");
        ret = 63;
        goto out;
    }
    if (v.check.ret < 0) {
        report_error("Check failed: %s", strerror(-v.check.ret));
        goto out;
    }
    check_report_from_result(&rep, filename, &v.check);
    if ((rep.corruptions_fixed || rep.leaks_fixed) && (v.check.flags & INSTAR_CHECK_RECHECKED)) {
        /* The guest ran the second check on the same open image (parallels). */
        if (!json && !quiet)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %" PRId64 " leaked clusters\n"
                   "    %" PRId64 " corruptions\n\n"
                   "Double checking the fixed image now...\n",
                   rep.leaks_fixed, rep.corruptions_fixed);
    } else if (rep.corruptions_fixed || rep.leaks_fixed) {
        int64_t leaks_fixed = rep.leaks_fixed, corruptions_fixed = rep.corruptions_fixed;

        if (!json && !quiet)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %" PRId64 " leaked clusters\n"
                   "    %" PRId64 " corruptions\n\n"
                   "Double checking the fixed image now...\n",
                   leaks_fixed, corruptions_fixed);
        fflush(stdout);
        /* The second bdrv_check: read-only, of the file as repaired. */
        if (fstat(oc.img[0].fd, &oc.img[0].st) < 0) {
            report_error("Check failed: %s", strerror(errno));
            goto out;
        }
        if (check_run(&oc.img[0], oc.key, filename, 0, &v) < 0)
            goto out;
        if (v.check.ret < 0) {
            report_error("Check failed: %s", strerror(-v.check.ret));
            goto out;
        }
        check_report_from_result(&rep, filename, &v.check);
        rep.leaks_fixed = leaks_fixed;
        rep.corruptions_fixed = corruptions_fixed;
    }
    if (!quiet) {
        if (json) {
            if (check_dump_json(stdout, &rep) < 0) {
                report_error("%s", strerror(ENOMEM));
                goto out;
            }
        } else {
            check_dump_human(stdout, &rep);
        }
    }
    if (rep.check_errors) {
        report_error("Check failed");
        goto out;
    }
    ret = rep.corruptions ? 2 : rep.leaks ? 3 : 0;
out:
    open_chain_close(&oc);
    return ret;
}
