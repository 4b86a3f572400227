/*
 * Fuzz target: rebase's header rewrite (formats/qcow2/rebase.c) over one
 * image held in memory.  For an image the open-time checks accept, the
 * first cluster is rebuilt for a short name, a name of the longest length
 * qcow2 takes, and no backing file; each built cluster is written into a
 * guarded buffer (a write outside it aborts), must parse again with the
 * same checks, and must name exactly the backing file and format asked for
 * with every other header field kept.  Any broken invariant aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2/header.h"
#include "qcow2/rebase.h"

#define MAX_INPUT (4u << 20)
#define GUARD     64

static void check(const struct qcow2_header *h, const uint8_t *out, size_t cs, const char *name,
                  const char *fmt)
{
    static struct qcow2_err_info ei;
    struct qcow2_header h2;
    struct qcow2_exts x2;

    if (qcow2_header_parse(out, cs, &h2, &ei) != 0 ||
        qcow2_ext_parse(out, cs, &h2, NULL, NULL, &x2, &ei) != 0)
        abort();
    if (h2.version != h->version || h2.cluster_bits != h->cluster_bits ||
        h2.l1_table_offset != h->l1_table_offset || h2.l1_size != h->l1_size ||
        h2.refcount_table_offset != h->refcount_table_offset ||
        h2.snapshots_offset != h->snapshots_offset || h2.nb_snapshots != h->nb_snapshots ||
        h2.incompatible_features != h->incompatible_features || h2.disk_size != h->disk_size)
        abort();
    if (!name != !x2.has_backing_file)
        abort();
    if (name &&
        (x2.backing_file_len != strlen(name) || memcmp(x2.backing_file, name, strlen(name))))
        abort();
    if (!fmt != !x2.has_backing_fmt)
        abort();
    if (fmt && (x2.backing_fmt_len != strlen(fmt) || memcmp(x2.backing_fmt, fmt, strlen(fmt))))
        abort();
}

static int run(const uint8_t *data, size_t len)
{
    static struct qcow2_err_info ei;
    static char longname[QCOW2_REBASE_NAME_MAX + 1];
    const char *names[3] = {"base.qcow2", longname, NULL};
    const char *fmts[3] = {"qcow2", "raw", NULL};
    struct qcow2_header h;
    struct qcow2_exts x;
    uint8_t *buf;
    size_t cs;

    if (qcow2_header_parse(data, len, &h, &ei) != 0 ||
        qcow2_ext_parse(data, len, &h, NULL, NULL, &x, &ei) != 0)
        return 0;
    memset(longname, 'n', QCOW2_REBASE_NAME_MAX);
    cs = h.cluster_size;
    buf = malloc(cs + 2 * GUARD);
    if (!buf)
        abort();
    for (int i = 0; i < 3; i++) {
        int ret;

        memset(buf, 0xa5, cs + 2 * GUARD);
        ret = qcow2_rebase_header(&h, &x, data, len, names[i], fmts[i], buf + GUARD);
        for (size_t g = 0; g < GUARD; g++)
            if (buf[g] != 0xa5 || buf[GUARD + cs + g] != 0xa5)
                abort();
        if (ret == 0)
            check(&h, buf + GUARD, cs, names[i], fmts[i]);
        else if (ret != -QCOW2_REBASE_ENOSPC && ret != -QCOW2_REBASE_EINVAL)
            abort();
    }
    free(buf);
    return 0;
}

#include "fuzz_main.h"
