/*
 * qemu-img bench: the host reads the options as img_bench() does, opens
 * the image (read-write with -w) under its path policy, prints the
 * request line, times one guest run (guest/plan_bench.c) that issues the
 * requests through the block layer, and prints the time it took.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "cmds.h"
#include "datarun.h"
#include "policy.h"
#include "imgcheck.h"
#include "report.h"
#include "size.h"
#include "spec.h"

enum {
    OPTION_IMAGE_OPTS = 258,
    OPTION_PATTERN = 260,
    OPTION_FLUSH_INTERVAL = 261,
    OPTION_NO_DRAIN = 262,
};

/* Guest RAM for a bench: one request's buffer (at most 16 MiB) and a qcow2 writer's tables. */
#define BENCH_GUEST_MEM (256ULL << 20)

/*
 * qemu_strtoul(s, NULL, 0, res): the whole string, any base prefix; a
 * minus sign wraps as strtoul() wraps it.  0, or -1 if not a number or
 * out of range.
 */
static int parse_ulong(const char *s, unsigned long *res)
{
    char *end;

    errno = 0;
    *res = strtoul(s, &end, 0);
    if (end == s || *end || errno == ERANGE)
        return -1;
    return 0;
}

/* bdrv_parse_cache_mode(): 0 (*direct for BDRV_O_NOCACHE), or -1 for an unknown mode. */
static int cache_mode(const char *mode, bool *direct)
{
    static const struct {
        const char *name;
        bool direct;
    } modes[] = {
        {"off", true},        {"none", true},    {"directsync", true},
        {"writeback", false}, {"unsafe", false}, {"writethrough", false},
    };

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (!strcmp(mode, modes[i].name)) {
            *direct = modes[i].direct;
            return 0;
        }
    return -1;
}

/*
 * file-posix refuses aio=native without O_DIRECT once it has opened the
 * file, before any format looks at it: true when that is the error to
 * print (the file opens), false to let open_chain() report the failure.
 */
static bool native_aio_refused(const char *filename)
{
    const char *path = filename;
    char *msg = NULL;
    int fd;

    /* (an --image-opts file.filename is a host path as it stands, like a plain one here) */
    if (policy_has_protocol(filename) && policy_host_path(filename, &path, &msg) < 0) {
        free(msg);
        return false;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/*
 * qemu-img bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio]
 *     [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size]
 *     [-S step_size] [-t cache] [-w] [-U] filename
 */
int cmd_bench(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"flush-interval", required_argument, 0, OPTION_FLUSH_INTERVAL},
        {"image-opts", no_argument, 0, OPTION_IMAGE_OPTS},
        {"pattern", required_argument, 0, OPTION_PATTERN},
        {"no-drain", no_argument, 0, OPTION_NO_DRAIN},
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *filename;
    bool is_write = false, image_opts = false, force_share = false, native = false;
    bool direct = false, drain_on_flush = true;
    unsigned long count = 75000, depth = 64, pattern = 0, flush_interval = 0, res;
    int64_t offset = 0, bufsize = 4096, step = 0, sval;
    struct instar_bench_args args;
    struct instar_data_result v;
    struct open_chain oc;
    struct img_spec spec;
    struct vmm_config cfg;
    struct graph gr;
    struct timeval t1, t2;
    uint64_t image_size;
    int c, ret = 1;

    for (;;) {
        c = cmd_getopt(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", long_options, &ret);
        if (c == -1)
            break;
        switch (c) {
        case CMD_GETOPT_DONE:
            return ret;
        case 'c':
            if (parse_ulong(optarg, &res) < 0 || res > INT_MAX) {
                report_error("Invalid request count specified");
                return 1;
            }
            count = res;
            break;
        case 'd':
            if (parse_ulong(optarg, &res) < 0 || res > INT_MAX) {
                report_error("Invalid queue depth specified");
                return 1;
            }
            depth = res;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'n':
            native = true;
            break;
        case 'i':
            /* bdrv_parse_aio(): threads and io_uring leave an earlier -n in force. */
            if (!strcmp(optarg, "native")) {
                native = true;
            } else if (strcmp(optarg, "threads") && strcmp(optarg, "io_uring")) {
                report_error("Invalid aio option: %s", optarg);
                return 1;
            }
            break;
        case 'o':
            offset = size_cvtnum("offset", optarg, 0, INT64_MAX);
            if (offset < 0)
                return 1;
            break;
        case 'q':
            break; /* the two lines bench prints are printf()s: -q keeps them */
        case 's':
            sval = size_cvtnum("buffer size", optarg, 0, INT_MAX);
            if (sval < 0)
                return 1;
            bufsize = sval;
            break;
        case 'S':
            sval = size_cvtnum("step_size", optarg, 0, INT_MAX);
            if (sval < 0)
                return 1;
            step = sval;
            break;
        case 't':
            if (cache_mode(optarg, &direct) < 0) {
                report_error("Invalid cache mode");
                return 1;
            }
            break;
        case 'w':
            is_write = true;
            break;
        case 'U':
            force_share = true;
            break;
        case OPTION_PATTERN:
            if (parse_ulong(optarg, &res) < 0 || res > 0xff) {
                report_error("Invalid pattern byte specified");
                return 1;
            }
            pattern = res;
            break;
        case OPTION_FLUSH_INTERVAL:
            if (parse_ulong(optarg, &res) < 0 || res > INT_MAX) {
                report_error("Invalid flush interval specified");
                return 1;
            }
            flush_interval = res;
            break;
        case OPTION_NO_DRAIN:
            drain_on_flush = false;
            break;
        case OPTION_IMAGE_OPTS:
            image_opts = true;
            break;
        }
    }
    if (optind != argc - 1)
        return report_usage("Expecting one image file name");
    filename = argv[argc - 1];
    if (!is_write && flush_interval) {
        report_error("--flush-interval is only available in write tests");
        return 1;
    }
    if (flush_interval && flush_interval < depth) {
        report_error("Flush interval can't be smaller than depth");
        return 1;
    }
    if (image_opts && fmt) {
        report_error("--image-opts and --format are mutually exclusive");
        return 1;
    }
    if (spec_parse(&spec, filename, image_opts, fmt, force_share) < 0)
        return 1;
    if (native && !direct && native_aio_refused(spec.path ? spec.path : filename)) {
        report_error("Could not open '%s': aio=native was specified, but it requires "
                     "cache.direct=on, which was not specified.",
                     filename);
        spec_release(&spec);
        return 1;
    }
    c = open_chain_spec(&oc, &spec,
                        (is_write ? OPEN_RDWR : 0) | (force_share ? OPEN_FORCE_SHARE : 0));
    spec_release(&spec);
    if (c < 0)
        return 1;

    graph_init(&gr);
    memset(&args, 0, sizeof(args));
    if (graph_add_chain(&gr, &oc, filename, &args.top) < 0)
        goto out;
    image_size = (uint64_t)oc.img[0].info->virtual_size;
    if (is_write) {
        struct vmm_dev *d = &gr.devs[gr.g.nodes[args.top].file];

        d->flags |= INSTAR_DEV_WRITE;
        if (gr.g.nodes[args.top].driver == INSTAR_DRV_RAW)
            d->write_limit = d->size > image_size ? d->size : image_size;
        else if (image_size > (UINT64_MAX >> 2))
            d->write_limit = UINT64_MAX;
        else
            d->write_limit = d->size + image_size + image_size / 8 + (256ULL << 20);
        /* Persistent bitmaps are stored anew at close. */
        if (d->write_limit != UINT64_MAX) {
            uint64_t more = info_bitmaps_bytes(oc.img[0].info, image_size);

            d->write_limit =
                more > UINT64_MAX - d->write_limit ? UINT64_MAX : d->write_limit + more;
        }
        /* A vmdk descriptor's extent files (the devices after its own), each within its share. */
        for (unsigned k = 1; k <= oc.img[0].next; k++) {
            uint32_t e = gr.g.nodes[args.top].file + k;
            uint64_t lim = d->write_limit - d->size;

            gr.devs[e].flags |= INSTAR_DEV_WRITE;
            gr.devs[e].write_limit =
                d->write_limit == UINT64_MAX || lim > UINT64_MAX - gr.devs[e].size
                    ? UINT64_MAX
                    : gr.devs[e].size + lim;
            if (d->write_limit < 20 * 512)
                d->write_limit = 20 * 512;
        }
        if (gr.g.nodes[args.top].data != INSTAR_NO_NODE) {
            /* The external data file: guest data at its guest offset, up to the last cluster. */
            d = &gr.devs[gr.g.nodes[args.top].data];
            d->flags |= INSTAR_DEV_WRITE;
            d->write_limit =
                image_size + (2ULL << 20) > d->size ? image_size + (2ULL << 20) : d->size;
        }
    }
    /* qemu-img divides by the image size to wrap the offset: an empty image crashes it. */
    if (image_size == 0 && count > 0) {
        report_error("Could not open '%s': the image is empty (qemu-img 7.2 divides by its "
                     "size here)",
                     filename);
        goto out;
    }
    /* With no request in flight qemu-img waits for a completion forever. */
    if (depth == 0 && count > 0) {
        report_error("A queue depth of 0 sends no request (qemu-img 7.2 waits forever)");
        goto out;
    }

    args.g = gr.g;
    args.flags = (is_write ? INSTAR_BENCH_WRITE : 0) | (drain_on_flush ? 0 : INSTAR_BENCH_NO_DRAIN);
    args.count = (uint32_t)count;
    args.depth = (uint32_t)depth;
    args.bufsize = (uint32_t)bufsize;
    args.step = (uint32_t)(step ? step : bufsize);
    args.flush_interval = (uint32_t)flush_interval;
    args.pattern = (uint32_t)pattern;
    args.offset = (uint64_t)offset;

    printf("Sending %d %s requests, %d bytes each, %d in parallel (starting at offset %" PRId64
           ", step size %d)\n",
           (int)count, is_write ? "write" : "read", (int)bufsize, (int)depth, offset,
           (int)args.step);
    if (flush_interval)
        printf("Sending flush every %d requests\n", (int)flush_interval);
    fflush(stdout);

    memset(&cfg, 0, sizeof(cfg));
    cfg.mem_size = BENCH_GUEST_MEM;
    cfg.report = check_report_cb; /* a dirty image's repair at open, as check -r prints it */
    cfg.report_opaque = stderr;
    gettimeofday(&t1, NULL);
    if (datarun(&cfg, INSTAR_OP_BENCH, &args, sizeof(args), &gr, filename, &v) < 0)
        goto out;
    gettimeofday(&t2, NULL);
    switch (v.status) {
    case INSTAR_DATA_OK:
        printf("Run completed in %3.3f seconds.\n",
               (t2.tv_sec - t1.tv_sec) + ((double)(t2.tv_usec - t1.tv_usec) / 1000000));
        ret = 0;
        break;
    case INSTAR_DATA_EREQUEST:
        report_error("Failed request: %s", strerror((int)v.errnum));
        break;
    case INSTAR_DATA_EFLUSH:
        report_error("Failed flush request: %s", strerror((int)v.errnum));
        break;
    default:
        report_error("Could not read '%s': sandbox failure: unexpected result", filename);
        break;
    }
out:
    open_chain_close(&oc);
    return ret;
}
