/*
 * Result blob validation.  The blob is guest output: every offset, length
 * and count is checked with overflow-safe arithmetic against the blob's
 * real length before anything is read through it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "instar/abi.h"
#include "instar/ovf.h"
#include "qcow2_err.h"
#include "report.h"
#include "result.h"
#include "vhdx/vhdx_err.h"

const char *result_bad_str(enum result_bad why)
{
    switch (why) {
    case RESULT_OK:
        return "ok";
    case RESULT_BAD_SHORT:
        return "result too short";
    case RESULT_BAD_MAGIC:
        return "bad result magic";
    case RESULT_BAD_ABI:
        return "result ABI version mismatch";
    case RESULT_BAD_OP:
        return "result for the wrong operation";
    case RESULT_BAD_SIZE:
        return "result size mismatch";
    case RESULT_BAD_STR:
        return "result string out of bounds";
    case RESULT_BAD_ARRAY:
        return "result array out of bounds";
    case RESULT_BAD_VALUE:
        return "result field out of range";
    case RESULT_BAD_STR_TOTAL:
        return "result strings longer than the result";
    }
    return "bad result";
}

/* An absent string is {0, 0}; a present one lies inside the blob. */
static bool str_ok(struct instar_str s, size_t len)
{
    if (s.off == 0)
        return s.len == 0;
    return s.len <= INSTAR_STR_MAX && ovf_range_ok(s.off, s.len, len);
}

/* n elements of elem bytes at off, inside the blob; n == 0 is always fine. */
static bool array_ok(uint32_t off, uint32_t n, size_t elem, size_t len)
{
    uint64_t bytes;

    if (n == 0)
        return true;
    if (off == 0 || ovf_mul_u64(n, elem, &bytes))
        return false;
    return ovf_range_ok(off, bytes, len);
}

enum result_bad result_hdr_parse(const void *blob, size_t len, uint32_t op,
                                 struct instar_result_hdr *hdr)
{
    if (!blob || len < sizeof(*hdr))
        return RESULT_BAD_SHORT;
    if (len > INSTAR_RESULT_MAX)
        return RESULT_BAD_SIZE;
    memcpy(hdr, blob, sizeof(*hdr));
    if (hdr->magic != INSTAR_RESULT_MAGIC)
        return RESULT_BAD_MAGIC;
    if (hdr->abi_version != INSTAR_ABI_VERSION)
        return RESULT_BAD_ABI;
    if (hdr->op != op)
        return RESULT_BAD_OP;
    if (hdr->size != len)
        return RESULT_BAD_SIZE;
    if (!str_ok(hdr->err_str, len))
        return RESULT_BAD_STR;
    return RESULT_OK;
}

/* A driver name: non-empty, NUL-terminated in its array, [a-z0-9_+-] only. */
static bool format_ok(const char *f, size_t n)
{
    size_t i;

    for (i = 0; i < n && f[i]; i++) {
        char c = f[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '+'))
            return false;
    }
    return i > 0 && i < n;
}

static enum result_bad check_snapshots(const struct result_info *v)
{
    const struct instar_info_result *r = &v->info;
    struct instar_info_snapshot sn;
    uint32_t i;

    if (r->nsnapshots > RESULT_MAX_SNAPSHOTS ||
        !array_ok(r->snapshots_off, r->nsnapshots, sizeof(sn), v->len))
        return RESULT_BAD_ARRAY;
    for (i = 0; i < r->nsnapshots; i++) {
        result_info_snapshot(v, i, &sn);
        if (!str_ok(sn.id, v->len) || !str_ok(sn.name, v->len))
            return RESULT_BAD_STR;
    }
    return RESULT_OK;
}

static enum result_bad check_bitmaps(const struct result_info *v)
{
    const struct instar_info_result *r = &v->info;
    struct instar_info_bitmap bm;
    uint32_t i;

    if (r->nbitmaps > RESULT_MAX_BITMAPS ||
        !array_ok(r->bitmaps_off, r->nbitmaps, sizeof(bm), v->len))
        return RESULT_BAD_ARRAY;
    for (i = 0; i < r->nbitmaps; i++) {
        result_info_bitmap(v, i, &bm);
        if (!str_ok(bm.name, v->len))
            return RESULT_BAD_STR;
    }
    return RESULT_OK;
}

static enum result_bad check_qcow2(const struct result_info *v)
{
    const struct instar_info_result *r = &v->info;
    const struct instar_info_luks *l = &r->luks;

    if (r->qcow2_version != 2 && r->qcow2_version != 3)
        return RESULT_BAD_VALUE;
    /* A power of two from 1 to 64 (qcow2.txt, refcount_order 0..6). */
    if (r->refcount_bits == 0 || r->refcount_bits > 64 ||
        (r->refcount_bits & (r->refcount_bits - 1)))
        return RESULT_BAD_VALUE;
    if (r->compression_type > 1)
        return RESULT_BAD_VALUE;
    if (r->encrypt_format > INSTAR_ENCRYPT_LUKS)
        return RESULT_BAD_VALUE;
    if (!str_ok(r->data_file, v->len))
        return RESULT_BAD_STR;
    if (r->encrypt_format == INSTAR_ENCRYPT_LUKS) {
        if (!str_ok(l->cipher_alg, v->len) || !str_ok(l->cipher_mode, v->len) ||
            !str_ok(l->ivgen_alg, v->len) || !str_ok(l->ivgen_hash_alg, v->len) ||
            !str_ok(l->hash_alg, v->len) || !str_ok(l->uuid, v->len))
            return RESULT_BAD_STR;
        if (l->payload_offset > INT64_MAX || l->master_key_iters > INT64_MAX)
            return RESULT_BAD_VALUE;
    }
    return RESULT_OK;
}

/*
 * The string budget (result.h): the lengths of every string of a
 * validated info result, summed, may not pass the blob's length.
 */
static enum result_bad check_strings_total(const struct result_info *v)
{
    const struct instar_info_result *r = &v->info;
    const struct instar_info_luks *l = &r->luks;
    struct instar_info_snapshot sn;
    struct instar_info_bitmap bm;
    uint64_t total = (uint64_t)r->backing_file.len + r->backing_fmt.len;
    uint32_t i;

    if (r->flags & INSTAR_INFO_QCOW2) {
        total += r->data_file.len;
        if (r->encrypt_format == INSTAR_ENCRYPT_LUKS)
            total += (uint64_t)l->cipher_alg.len + l->cipher_mode.len + l->ivgen_alg.len +
                     l->ivgen_hash_alg.len + l->hash_alg.len + l->uuid.len;
    }
    /* At most 2 * 65536 + 65535 + 9 strings of at most 64 KiB: no overflow. */
    for (i = 0; i < r->nsnapshots; i++) {
        result_info_snapshot(v, i, &sn);
        total += (uint64_t)sn.id.len + sn.name.len;
    }
    for (i = 0; i < r->nbitmaps; i++) {
        result_info_bitmap(v, i, &bm);
        total += bm.name.len;
    }
    return total > v->len ? RESULT_BAD_STR_TOTAL : RESULT_OK;
}

enum result_bad result_info_parse(const void *blob, size_t len, struct result_info *v)
{
    const struct instar_info_result *r = &v->info;
    enum result_bad why;

    memset(v, 0, sizeof(*v));
    v->blob = blob;
    v->len = len;
    why = result_hdr_parse(blob, len, INSTAR_OP_INFO, &v->hdr);
    if (why != RESULT_OK || v->hdr.error != 0)
        return why;

    if (len < sizeof(v->info))
        return RESULT_BAD_SHORT;
    memcpy(&v->info, blob, sizeof(v->info));
    if (!format_ok(r->format, sizeof(r->format)))
        return RESULT_BAD_VALUE;
    /* QEMU holds sizes in int64_t. */
    if (r->virtual_size > INT64_MAX || r->cluster_size > INT64_MAX)
        return RESULT_BAD_VALUE;
    /* qcow2_do_open() refuses any other cluster size; the host sizes resizes by it. */
    if (((r->flags & INSTAR_INFO_QCOW2) || !strcmp(r->format, "qcow2")) &&
        !result_qcow2_cluster_size_ok(r->cluster_size))
        return RESULT_BAD_VALUE;
    if (!str_ok(r->backing_file, len) || !str_ok(r->backing_fmt, len))
        return RESULT_BAD_STR;
    if (r->flags & INSTAR_INFO_QCOW2) {
        why = check_qcow2(v);
        if (why != RESULT_OK)
            return why;
    }
    /* vmdk: at most INSTAR_VMDK_EXTENTS_MAX extents (their strings are cut by the host). */
    if ((r->flags & INSTAR_INFO_VMDK) && r->vmdk.nextents > INSTAR_VMDK_EXTENTS_MAX)
        return RESULT_BAD_VALUE;
    if (r->flags & INSTAR_INFO_VMDK_NEED_FILES) {
        if (!(r->flags & INSTAR_INFO_VMDK) || r->vmdk.nextents == 0)
            return RESULT_BAD_VALUE;
        for (uint32_t i = 0; i < r->vmdk.nextents; i++)
            if (!str_ok(r->vmdk.names[i], len) || r->vmdk.names[i].len == 0)
                return RESULT_BAD_STR;
    }
    why = check_snapshots(v);
    if (why != RESULT_OK)
        return why;
    why = check_bitmaps(v);
    if (why != RESULT_OK)
        return why;
    return check_strings_total(v);
}

char *result_strn(const struct result_info *v, struct instar_str s, size_t max)
{
    const char *p = s.off ? (const char *)v->blob + s.off : "";
    size_t n = s.off ? s.len : 0;
    const char *nul;
    char *out;

    if (n > max)
        n = max;
    nul = n ? memchr(p, '\0', n) : NULL;
    if (nul)
        n = (size_t)(nul - p);
    out = malloc(n + 1);
    if (!out)
        return NULL;
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

char *result_str(const struct result_info *v, struct instar_str s)
{
    return result_strn(v, s, SIZE_MAX);
}

void result_info_snapshot(const struct result_info *v, uint32_t i, struct instar_info_snapshot *out)
{
    memcpy(out, v->blob + v->info.snapshots_off + (size_t)i * sizeof(*out), sizeof(*out));
}

void result_info_bitmap(const struct result_info *v, uint32_t i, struct instar_info_bitmap *out)
{
    memcpy(out, v->blob + v->info.bitmaps_off + (size_t)i * sizeof(*out), sizeof(*out));
}

/* --- INSTAR_OP_CHECK --- */

enum result_bad result_check_parse(const void *blob, size_t len, struct result_check *v)
{
    const struct instar_check_result *c = &v->check;
    enum result_bad why;

    memset(v, 0, sizeof(*v));
    why = result_hdr_parse(blob, len, INSTAR_OP_CHECK, &v->hdr);
    if (why != RESULT_OK || v->hdr.error != 0)
        return why;
    if (len < sizeof(v->check))
        return RESULT_BAD_SHORT;
    memcpy(&v->check, blob, sizeof(v->check));
    if (!format_ok(c->format, sizeof(c->format)))
        return RESULT_BAD_VALUE;
    if (c->flags & ~(uint32_t)(INSTAR_CHECK_NOTSUP | INSTAR_CHECK_RECHECKED))
        return RESULT_BAD_VALUE;
    /* bdrv_check returns 0 or -errno; Linux errnos are below 4096. */
    if (c->ret > 0 || c->ret < -4095)
        return RESULT_BAD_VALUE;
    if (c->corruptions < 0 || c->leaks < 0 || c->check_errors < 0 || c->corruptions_fixed < 0 ||
        c->leaks_fixed < 0 || c->image_end_offset < 0 || c->total_clusters < 0 ||
        c->allocated_clusters < 0 || c->fragmented_clusters < 0 || c->compressed_clusters < 0)
        return RESULT_BAD_VALUE;
    return RESULT_OK;
}

/* --- INSTAR_HC_REPORT batches --- */

/* Bytes a record with slen string bytes takes in a batch. */
static size_t report_rec_size(uint16_t slen)
{
    return sizeof(struct instar_report_rec) + (((size_t)slen + 7) & ~(size_t)7);
}

enum result_bad result_salvage_validate(const void *batch, size_t len)
{
    const uint8_t *p = batch;

    if (len % sizeof(struct instar_report_rec))
        return RESULT_BAD_SIZE;
    for (size_t i = 0; i < len; i += sizeof(struct instar_report_rec)) {
        struct instar_report_rec r;

        memcpy(&r, p + i, sizeof(r));
        if (r.slen || r.flags)
            return RESULT_BAD_VALUE;
        if (r.code == INSTAR_CONVERT_REC_BSTAT || r.code == INSTAR_CONVERT_REC_READ) {
            if (r.args[0] > INT64_MAX || r.args[1] == 0 || r.args[1] > 4095)
                return RESULT_BAD_VALUE;
        } else if (r.code < QCOW2_CORRUPT_L2_UNALIGNED || r.code > QCOW2_CORRUPT_INVALID_ENTRY) {
            return RESULT_BAD_VALUE;
        }
    }
    return RESULT_OK;
}

enum result_bad result_report_validate(const void *batch, size_t len)
{
    const uint8_t *b = batch;
    size_t off = 0, i, need;
    struct instar_report_rec r;

    if (len && !batch)
        return RESULT_BAD_SHORT;
    if (len > INSTAR_REPORT_MAX)
        return RESULT_BAD_SIZE;
    while (off < len) {
        if (len - off < sizeof(r))
            return RESULT_BAD_SHORT;
        memcpy(&r, b + off, sizeof(r));
        if (((r.code < RESULT_REPORT_CODE_MIN || r.code > RESULT_REPORT_CODE_MAX) &&
             (r.code < RESULT_REPORT_PRL_MIN || r.code > RESULT_REPORT_PRL_MAX) &&
             (r.code < VHDX_MSG_MIN || r.code > VHDX_MSG_MAX) &&
             (r.code < RESULT_REPORT_VDI_MIN || r.code > RESULT_REPORT_VDI_MAX) &&
             (r.code < RESULT_REPORT_VMDK_MIN || r.code > RESULT_REPORT_VMDK_MAX)) ||
            !report_code_template(r.code))
            return RESULT_BAD_VALUE;
        if (r.flags & ~(uint16_t)INSTAR_REC_PREFIX)
            return RESULT_BAD_VALUE;
        need = report_rec_size(r.slen);
        if (need > len - off)
            return RESULT_BAD_STR;
        for (i = sizeof(r) + r.slen; i < need; i++)
            if (b[off + i] != 0)
                return RESULT_BAD_VALUE;
        off += need;
    }
    return RESULT_OK;
}

bool result_report_next(const void *batch, size_t len, size_t *off, struct instar_report_rec *rec,
                        const char **s)
{
    const uint8_t *b = batch;

    if (*off >= len || len - *off < sizeof(*rec))
        return false;
    memcpy(rec, b + *off, sizeof(*rec));
    *s = (const char *)b + *off + sizeof(*rec);
    *off += report_rec_size(rec->slen);
    return true;
}

/* --- INSTAR_OP_MAP, INSTAR_OP_COMPARE, INSTAR_OP_CONVERT, INSTAR_OP_DD, INSTAR_OP_BENCH --- */

enum result_bad result_data_parse(const void *blob, size_t len, uint32_t op,
                                  struct instar_data_result *v)
{
    enum result_bad why;

    memset(v, 0, sizeof(*v));
    why = result_hdr_parse(blob, len, op, &v->hdr);
    if (why != RESULT_OK)
        return why;
    if (v->hdr.error != 0)
        return RESULT_OK;
    if (len < sizeof(*v))
        return RESULT_BAD_SHORT;
    memcpy(v, blob, sizeof(*v));
    if (v->status > INSTAR_DATA_EBITMAP || v->image > 2 || v->errnum > 4095 ||
        (v->flags & ~(INSTAR_DATA_COMMIT_EMPTY | INSTAR_DATA_COMMIT_CLOSE)))
        return RESULT_BAD_VALUE;
    if (v->corrupt_code && (v->corrupt_code < QCOW2_CORRUPT_L2_UNALIGNED ||
                            v->corrupt_code > QCOW2_CORRUPT_INVALID_ENTRY))
        return RESULT_BAD_VALUE;
    return RESULT_OK;
}
