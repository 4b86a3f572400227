/*
 * qemu-img check for qcow2 (see check.h).  The functions keep the shape
 * of QEMU's (block/qcow2.c, block/qcow2-snapshot.c,
 * block/qcow2-refcount.c, block/qcow2-bitmap.c) so that repair can be
 * added where QEMU repairs; the qcow2 layout is docs/interop/qcow2.txt.
 *
 * Arithmetic that QEMU does on int64_t (it builds with -fwrapv) is done
 * here on uint64_t and compared as int64_t, which wraps the same way.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "be.h"
#include "bitmap.h"
#include "check.h"
#include "l2.h"
#include "alloc.h"
#include "refcount.h"
#include "snapshot.h"

#define CK_INT_MAX           0x7fffffffull
#define CK_MAX_L1_SIZE       (32ull << 20) /* QCOW_MAX_L1_SIZE, bytes */
#define CK_REFT_OFFSET_MASK  0xfffffffffffffe00ull
#define CK_REFT_RESERVED     0x1ffull
#define CK_BME_OFFSET_MASK   0x00fffffffffffe00ull
#define CK_BME_RESERVED_MASK 0xff000000000001feull
#define CK_BME_ALL_ONES      1ull
#define CK_CHECK_FRAG_INFO   0x2
#define CK_RB_CACHE          4
#define CK_L1_CHUNK          8192 /* entries per L1 read */
#define CK_BMT_CHUNK         8192 /* entries per bitmap table read */
#define CK_HDR_INCOMPAT      72   /* be64 incompatible_features */
#define CK_HDR_REFTABLE      48   /* be64 refcount_table_offset, be32 clusters */
#define CK_HDR_NB_SNAPSHOTS  60   /* be32 nb_snapshots, then be64 snapshots_offset */
#define CK_HDR_AUTOCLEAR     88   /* be64 autoclear_features */

/* One snapshot table entry, what the check needs of it. */
struct ck_snap {
    uint64_t l1_table_offset;
    uint64_t id_off; /* file offsets of the id and name strings */
    uint64_t name_off;
    uint32_t l1_size;
    uint32_t extra_data_size; /* as kept: at most QCOW2_SNAPSHOT_MAX_EXTRA */
    uint16_t id_size;
    uint16_t name_size;
    /* What a table rewrite (qcow2_write_snapshots) needs besides. */
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount;
    uint64_t unknown_off; /* file offset of the unknown extra data */
    uint16_t id_len;      /* strlen() of id and name, for the rewrite */
    uint16_t name_len;
};

struct ck_rb {
    uint64_t offset; /* 0: empty */
    uint8_t *data;
    uint64_t used;
};

/* The state QEMU keeps in BDRVQcow2State, for the check. */
struct ck {
    const struct qcow2_check_env *env;
    const struct qcow2_header *h;
    const struct qcow2_exts *x;
    uint64_t file_len;
    unsigned cluster_bits;
    uint64_t cluster_size;
    unsigned order; /* refcount_order */
    uint64_t refcount_max;
    unsigned rb_bits; /* log2(entries per refcount block) */
    bool extl2;
    bool data_file;
    unsigned l2_esize; /* bytes per L2 entry */
    uint64_t l2_size;  /* entries per L2 table */
    unsigned csize_shift;
    uint64_t csize_mask;
    uint64_t cluster_offset_mask;

    /* The refcount table, host-endian (QEMU loads it at open). */
    uint64_t *reftable;
    uint64_t reftable_size;
    struct ck_rb rbc[CK_RB_CACHE];
    uint64_t clock;
    bool signaled_corruption;

    /* The snapshot table as the check read it. */
    struct ck_snap *snaps;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t snapshots_size;

    /* Scratch: one L2 table, one chunk of L1 entries. */
    uint8_t *l2buf;
    uint8_t *l1buf;

    /* Repair state. */
    const struct qcow2_repair_io *io; /* NULL: a read-only pass */
    unsigned fix;                     /* QCOW2_CHECK_FIX_* of this pass */
    uint64_t write_limit;             /* no write may end past this */
    uint64_t reftable_offset;         /* moves when the structure is rebuilt */
    uint64_t incompat;                /* incompatible features as on disk */
    bool wrote;                       /* something was written or truncated */
    bool dead;                        /* a fatal corruption was signalled: no more writes */
    /* A reference could not be counted: computed counts may be too low. */
    bool undercount;
    /* The snapshot table would need rewriting (FIX_ERRORS). */
    bool snap_repair;
    /* Read the snapshot table as "check -r all" does (discarding what it must). */
    bool snap_fix;
    /* The snapshot table could not be read: QEMU then forgets it (0 entries). */
    bool snap_unread;
};

const char *qcow2_check_strerror(int err)
{
    switch (err) {
    case QCOW2_CHECK_EIO:
        return "Input/output error";
    case QCOW2_CHECK_ENOMEM:
        return "Cannot allocate memory";
    case QCOW2_CHECK_EINVAL:
        return "Invalid argument";
    case QCOW2_CHECK_EFBIG:
        return "File too large";
    case QCOW2_CHECK_ENOTSUP:
        return "Operation not supported";
    default:
        return "Unknown error";
    }
}

/* --- Plumbing --- */

static void rep(struct ck *c, int32_t code, uint16_t flags, uint64_t a0, uint64_t a1, uint64_t a2,
                const char *s, size_t slen)
{
    uint64_t args[4] = {a0, a1, a2, 0};

    c->env->report(c->env->opaque, code, flags, args, s, s ? slen : 0);
}

static void rep_n(struct ck *c, int32_t code, uint64_t a0, uint64_t a1, uint64_t a2)
{
    rep(c, code, 0, a0, a1, a2, NULL, 0);
}

static void *ck_realloc(struct ck *c, void *p, uint64_t size)
{
    if (size > SIZE_MAX)
        return NULL;
    return c->env->realloc(c->env->opaque, p, (size_t)size);
}

static void ck_free(struct ck *c, void *p)
{
    if (p)
        c->env->free(c->env->opaque, p);
}

/* A read QEMU's block layer makes: refused past BDRV_MAX_LENGTH (EIO). */
static int ck_read(struct ck *c, uint64_t off, void *buf, uint64_t len)
{
    if (!qcow2_read_ok(off, len) || len > SIZE_MAX)
        return -QCOW2_CHECK_EIO;
    if (len == 0)
        return 0;
    if (c->env->pread(c->env->opaque, off, buf, (size_t)len) < 0)
        return -QCOW2_CHECK_EIO;
    return 0;
}

/*
 * The first write of a repair: with FIX_ERRORS on a version 3 image, set
 * the corrupt bit and flush before anything else changes, so that an
 * interrupted repair leaves an image qemu refuses to write to until a
 * repair completes (docs/repair.md).
 */
/* Set the corrupt bit on disk (version 3) and flush. */
static int ck_mark_corrupt(struct ck *c)
{
    uint8_t be[8];
    uint64_t v;
    int i;

    if (!c->io || c->h->version < 3 || (c->incompat & QCOW2_INCOMPAT_CORRUPT))
        return 0;
    v = c->incompat | QCOW2_INCOMPAT_CORRUPT;
    for (i = 0; i < 8; i++)
        be[i] = (uint8_t)(v >> (56 - 8 * i));
    c->wrote = true;
    if (c->io->pwrite(c->env->opaque, CK_HDR_INCOMPAT, be, 8) < 0 ||
        c->io->flush(c->env->opaque) < 0)
        return -QCOW2_CHECK_EIO;
    c->incompat = v;
    return 0;
}

static int ck_begin_write(struct ck *c)
{
    bool first = !c->wrote;

    if (!c->fix || !c->io || c->dead)
        return -QCOW2_CHECK_EIO; /* a read-only pass never writes */
    c->wrote = true;
    if (first && (c->fix & QCOW2_CHECK_FIX_ERRORS))
        return ck_mark_corrupt(c);
    return 0;
}

/* A repair write: within write_limit (-EFBIG), else -EIO on failure. */
static int ck_write(struct ck *c, uint64_t off, const void *buf, uint64_t len)
{
    uint64_t end;
    int ret;

    if (__builtin_add_overflow(off, len, &end) || end > c->write_limit || len > SIZE_MAX)
        return -QCOW2_CHECK_EFBIG;
    ret = ck_begin_write(c);
    if (ret < 0)
        return ret;
    if (c->io->pwrite(c->env->opaque, off, buf, (size_t)len) < 0)
        return -QCOW2_CHECK_EIO;
    if (end > c->file_len)
        c->file_len = end;
    return 0;
}

static int ck_flush(struct ck *c)
{
    return c->io->flush(c->env->opaque) < 0 ? -QCOW2_CHECK_EIO : 0;
}

static void be_st64(uint8_t *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t size_to_clusters(const struct ck *c, uint64_t size)
{
    return (size >> c->cluster_bits) + ((size & (c->cluster_size - 1)) != 0);
}

/* --- The in-memory refcount table (QEMU's "IMRT") --- */

struct imrt {
    uint8_t *table;
    uint64_t nb_clusters; /* entries; QEMU's *refcount_table_size */
};

/* refcount_array_byte_size() rounded up to whole clusters. */
static uint64_t imrt_bytes(const struct ck *c, uint64_t entries)
{
    /* entries < 2^55 (offsets are 64-bit, clusters >= 512 bytes). */
    uint64_t bytes = ((entries << c->order) + 7) / 8;

    return size_to_clusters(c, bytes) << c->cluster_bits;
}

/* realloc_refcount_array(): new entries zeroed; -ENOMEM leaves t alone. */
static int imrt_resize(struct ck *c, struct imrt *t, uint64_t new_size)
{
    uint64_t old_bytes = imrt_bytes(c, t->nb_clusters);
    uint64_t new_bytes = imrt_bytes(c, new_size);
    uint8_t *p;

    if (new_bytes == old_bytes) {
        t->nb_clusters = new_size;
        return 0;
    }
    p = ck_realloc(c, t->table, new_bytes);
    if (!p)
        return -QCOW2_CHECK_ENOMEM;
    if (new_bytes > old_bytes)
        memset(p + old_bytes, 0, (size_t)(new_bytes - old_bytes));
    t->table = p;
    t->nb_clusters = new_size;
    return 0;
}

static inline uint64_t imrt_get(const struct ck *c, const struct imrt *t, uint64_t k)
{
    if (c->order == 4) {
        const uint8_t *p = t->table + k * 2;
        return (uint64_t)p[0] << 8 | p[1];
    }
    return qcow2_refcount_get(t->table, k, c->order);
}

static inline void imrt_set(const struct ck *c, struct imrt *t, uint64_t k, uint64_t v)
{
    if (c->order == 4) {
        uint8_t *p = t->table + k * 2;
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
        return;
    }
    qcow2_refcount_set(t->table, k, c->order, v);
}

/*
 * qcow2_inc_refcounts_imrt(): one more reference to every cluster that
 * [offset, offset + size) touches.  offset and size are QEMU's int64_t.
 */
static int inc_refcounts(struct ck *c, struct qcow2_check_result *res, struct imrt *t,
                         uint64_t offset, uint64_t size)
{
    uint64_t start, last, cl, k, refcount;
    int ret;

    if ((int64_t)size <= 0)
        return 0;
    /* A last cluster may be partly past the end of the file, no more. */
    if ((int64_t)(offset + size - c->file_len) >= (int64_t)c->cluster_size) {
        rep_n(c, QCOW2_MSG_REGION_PAST_EOF, offset, size, 0);
        res->corruptions++;
        /* Uncounted clusters inside the file would look free or leaked. */
        if (offset < c->file_len)
            c->undercount = true;
        return 0;
    }
    start = offset & ~(c->cluster_size - 1);
    last = (offset + size - 1) & ~(c->cluster_size - 1);
    for (cl = start; cl <= last; cl += c->cluster_size) {
        k = cl >> c->cluster_bits;
        if (k >= t->nb_clusters) {
            ret = imrt_resize(c, t, k + 1);
            if (ret < 0) {
                res->check_errors++;
                return ret;
            }
        }
        refcount = imrt_get(c, t, k);
        if (refcount == c->refcount_max) {
            rep_n(c, QCOW2_MSG_REFCOUNT_OVERFLOW, cl, 0, 0);
            rep_n(c, QCOW2_MSG_REFCOUNT_OVERFLOW_HINT, 0, 0, 0);
            res->corruptions++;
        } else {
            imrt_set(c, t, k, refcount + 1);
        }
        if (cl > UINT64_MAX - c->cluster_size)
            break;
    }
    return 0;
}

/* --- Stored refcounts (qcow2_get_refcount and its block cache) --- */

/*
 * The refcount block at offset (aligned), read through a small LRU
 * cache.  Returns NULL with *err set when the read fails.
 */
static const uint8_t *refblock_get(struct ck *c, uint64_t offset, int *err)
{
    struct ck_rb *victim = &c->rbc[0];
    int i, ret;

    for (i = 0; i < CK_RB_CACHE; i++) {
        if (c->rbc[i].offset == offset && c->rbc[i].data) {
            c->rbc[i].used = ++c->clock;
            return c->rbc[i].data;
        }
        if (c->rbc[i].used < victim->used)
            victim = &c->rbc[i];
    }
    if (!victim->data) {
        victim->data = ck_realloc(c, NULL, c->cluster_size);
        if (!victim->data) {
            *err = -QCOW2_CHECK_ENOMEM;
            return NULL;
        }
    }
    victim->offset = 0;
    ret = ck_read(c, offset, victim->data, c->cluster_size);
    if (ret < 0) {
        *err = ret;
        return NULL;
    }
    victim->offset = offset;
    victim->used = ++c->clock;
    return victim->data;
}

static int ck_mark_corrupt(struct ck *c);

/*
 * qcow2_signal_corruption(), printed once.  On a read-only image only
 * the line; when repairing (opened read-write) QEMU marks the image
 * corrupt and the node becomes unusable: every later write fails.
 */
static void signal_refblock_unaligned(struct ck *c, uint64_t offset, uint64_t index)
{
    if (c->signaled_corruption)
        return;
    c->signaled_corruption = true;
    if (!c->io) {
        rep_n(c, QCOW2_MSG_CORRUPT_REFBLOCK_UNALIGNED, offset, index, 0);
        return;
    }
    rep_n(c, QCOW2_MSG_MARK_CORRUPT_REFBLOCK_UNALIGNED, offset, index, 0);
    (void)ck_mark_corrupt(c);
    c->dead = true;
}

/*
 * The refcount block holding cluster_index's entry: NULL with *err 0
 * when the refcount is 0 without a block (past the table, empty entry),
 * NULL with *err < 0 on failure (-EIO), else the block.
 */
static const uint8_t *refblock_for(struct ck *c, uint64_t cluster_index, int *err)
{
    uint64_t ri = cluster_index >> c->rb_bits;
    uint64_t off;

    *err = 0;
    if (ri >= c->reftable_size)
        return NULL;
    off = c->reftable[ri] & CK_REFT_OFFSET_MASK;
    if (!off)
        return NULL;
    if (off & (c->cluster_size - 1)) {
        signal_refblock_unaligned(c, off, ri);
        *err = -QCOW2_CHECK_EIO;
        return NULL;
    }
    return refblock_get(c, off, err);
}

/* qcow2_get_refcount(): 0 or a negated errno. */
static int get_refcount(struct ck *c, uint64_t cluster_index, uint64_t *refcount)
{
    const uint8_t *rb;
    int err;

    rb = refblock_for(c, cluster_index, &err);
    if (!rb) {
        *refcount = 0;
        return err;
    }
    *refcount = qcow2_refcount_get(rb, cluster_index & ((UINT64_C(1) << c->rb_bits) - 1), c->order);
    return 0;
}

/* Forget every cached refcount block (QEMU's qcow2_cache_empty). */
static void refblock_cache_empty(struct ck *c)
{
    int i;

    for (i = 0; i < CK_RB_CACHE; i++) {
        c->rbc[i].offset = 0;
        c->rbc[i].used = 0;
    }
}

/*
 * Store value as the refcount of cluster_index, whose refcount block
 * exists (the caller read a non-zero refcount from it): the entry is set
 * in the cached block and the aligned 8 bytes holding it are written, so
 * each update is one small write that changes this entry alone.
 * Returns 0 or a negated errno.
 */
static int refcount_write(struct ck *c, uint64_t cluster_index, uint64_t value)
{
    uint64_t per_block = UINT64_C(1) << c->rb_bits;
    uint64_t idx = cluster_index & (per_block - 1), off, chunk;
    uint8_t *rb;
    int err;

    rb = (uint8_t *)refblock_for(c, cluster_index, &err);
    if (!rb)
        return err < 0 ? err : -QCOW2_CHECK_EIO;
    off = c->reftable[cluster_index >> c->rb_bits] & CK_REFT_OFFSET_MASK;
    qcow2_refcount_set(rb, idx, c->order, value);
    chunk = ((idx << c->order) / 8) & ~UINT64_C(7);
    return ck_write(c, off + chunk, rb + chunk, 8);
}

/*
 * A small form of QEMU's metadata overlap check (the "cached" checks)
 * for a repair write into an L2 table at [off, off + len): it must not
 * touch the header, the active L1 table, the refcount table, a refcount
 * block, the snapshot table or a snapshot's L1 table.
 */
static bool overlaps_metadata(const struct ck *c, uint64_t off, uint64_t len)
{
    uint64_t end = off + len, rb, i;

#define CK_OVERLAP(o, l) ((l) != 0 && (o) < end && off < (o) + (l))
    if (CK_OVERLAP(0, c->cluster_size))
        return true;
    if (CK_OVERLAP(c->h->l1_table_offset, (uint64_t)c->h->l1_size * 8))
        return true;
    if (CK_OVERLAP(c->reftable_offset, c->reftable_size * 8))
        return true;
    if (CK_OVERLAP(c->snapshots_offset, c->snapshots_size))
        return true;
    for (i = 0; i < c->reftable_size; i++) {
        rb = c->reftable[i] & CK_REFT_OFFSET_MASK;
        if (rb && CK_OVERLAP(rb, c->cluster_size))
            return true;
    }
    for (i = 0; i < c->nb_snapshots; i++)
        if (CK_OVERLAP(c->snaps[i].l1_table_offset, (uint64_t)c->snaps[i].l1_size * 8))
            return true;
#undef CK_OVERLAP
    return false;
}

/* --- Snapshot table (qcow2_check_read_snapshot_table) --- */

/*
 * qcow2_do_read_snapshots() with repair off: the entries' fixed parts and
 * where their strings are.  Returns 0 or the negated errno, having
 * reported QEMU's "ERROR failed to read the snapshot table: ..." lines.
 */
static int read_snapshots(struct ck *c, uint32_t *nb_reduced, uint32_t *extra_dropped)
{
    uint64_t offset = c->snapshots_offset, table_length = 0, pre_sn_offset;
    uint32_t i, nb = c->nb_snapshots;

    if (nb == 0) {
        c->snapshots_size = 0;
        return 0;
    }
    c->snaps = ck_realloc(c, NULL, (uint64_t)nb * sizeof(*c->snaps));
    if (!c->snaps)
        return -QCOW2_CHECK_ENOMEM; /* QEMU's g_new0 would abort */

    for (i = 0; i < nb; i++) {
        struct ck_snap *sn = &c->snaps[i];
        uint8_t hdr[QCOW2_SNAPSHOT_HDR_LEN], extra[24];
        uint32_t known, full_extra;

        pre_sn_offset = offset;
        table_length = (table_length + 7) & ~7ull;
        offset = (offset + 7) & ~7ull;
        if (ck_read(c, offset, hdr, sizeof(hdr)) < 0)
            goto read_fail;
        offset += sizeof(hdr);
        sn->l1_table_offset = be_ld64(hdr);
        sn->l1_size = be_ld32(hdr + 8);
        sn->id_size = be_ld16(hdr + 12);
        sn->name_size = be_ld16(hdr + 14);
        sn->date_sec = be_ld32(hdr + 16);
        sn->date_nsec = be_ld32(hdr + 20);
        sn->vm_clock_nsec = be_ld64(hdr + 24);
        sn->vm_state_size = be_ld32(hdr + 32);
        sn->extra_data_size = full_extra = be_ld32(hdr + 36);

        if (sn->extra_data_size > QCOW2_SNAPSHOT_MAX_EXTRA) {
            c->snap_repair = true;
            if (!c->snap_fix) {
                rep(c, QCOW2_MSG_SNAPTABLE_EXTRA, QCOW2_CHECK_REC_PREFIX, i, 0, 0, NULL, 0);
                rep_n(c, QCOW2_MSG_SNAPTABLE_EXTRA_HINT, 0, 0, 0);
                return -QCOW2_CHECK_EFBIG;
            }
            rep_n(c, QCOW2_MSG_SNAP_DISCARD_EXTRA, i, sn->extra_data_size,
                  QCOW2_SNAPSHOT_MAX_EXTRA);
            (*extra_dropped)++;
            sn->extra_data_size = QCOW2_SNAPSHOT_MAX_EXTRA; /* the rest is dropped */
        }
        /* The known extra data (24 bytes at most), then the rest. */
        known = sn->extra_data_size < 24 ? sn->extra_data_size : 24;
        if (ck_read(c, offset, extra, known) < 0)
            goto read_fail;
        offset += known;
        sn->vm_state_size = known >= 8 ? be_ld64(extra) : sn->vm_state_size;
        sn->disk_size = known >= 16 ? be_ld64(extra + 8) : (c->h->disk_size & ~511ull);
        sn->icount = known >= 24 ? be_ld64(extra + 16) : UINT64_MAX;
        sn->unknown_off = offset;
        if (full_extra > 24) {
            if (!qcow2_read_ok(offset, sn->extra_data_size - 24))
                goto read_fail;
            offset += full_extra - 24;
        }
        if (!qcow2_read_ok(offset, sn->id_size))
            goto read_fail;
        sn->id_off = offset;
        offset += sn->id_size;
        if (!qcow2_read_ok(offset, sn->name_size))
            goto read_fail;
        sn->name_off = offset;
        offset += sn->name_size;

        table_length +=
            QCOW2_SNAPSHOT_HDR_LEN + (uint64_t)sn->extra_data_size + sn->id_size + sn->name_size;
        if (table_length > QCOW2_SNAPSHOT_MAX_TABLE || offset - c->snapshots_offset > CK_INT_MAX) {
            c->snap_repair = true;
            if (!c->snap_fix) {
                rep(c, QCOW2_MSG_SNAPTABLE_TOO_BIG, QCOW2_CHECK_REC_PREFIX, 0, 0, 0, NULL, 0);
                rep_n(c, QCOW2_MSG_SNAPTABLE_OVERHANG_HINT, nb - i, 0, 0);
                return -QCOW2_CHECK_EFBIG;
            }
            /* This entry and every later one are dropped (their clusters leak). */
            rep_n(c, QCOW2_MSG_SNAP_DISCARD_TOO_BIG, nb - i, 0, 0);
            *nb_reduced += nb - i;
            c->nb_snapshots = i;
            offset = pre_sn_offset;
            break;
        }
    }
    c->snapshots_size = offset - c->snapshots_offset;
    return 0;

read_fail : {
    const char *e = qcow2_check_strerror(QCOW2_CHECK_EIO);

    rep(c, QCOW2_MSG_SNAPTABLE_READ, QCOW2_CHECK_REC_PREFIX, 0, 0, 0, e, strlen(e));
    return -QCOW2_CHECK_EIO;
}
}

static int check_read_snapshot_table(struct ck *c, struct qcow2_check_result *res, unsigned fix)
{
    const struct qcow2_header *h = c->h;
    uint64_t nb = h->nb_snapshots, off = h->snapshots_offset;
    uint32_t i, nb_reduced = 0, extra_dropped = 0;
    int ret;

    (void)fix;
    c->snap_unread = true; /* until it was read */
    if (nb > QCOW2_MAX_SNAPSHOTS && c->snap_fix) {
        c->snap_repair = true;
        rep_n(c, QCOW2_MSG_SNAP_DISCARD_COUNT, nb - QCOW2_MAX_SNAPSHOTS, 0, 0);
        nb_reduced += (uint32_t)(nb - QCOW2_MAX_SNAPSHOTS);
        nb = QCOW2_MAX_SNAPSHOTS;
    }
    /* qcow2_validate_table(): at most 65536 entries, an aligned offset. */
    if (nb > QCOW2_MAX_SNAPSHOTS) {
        c->snap_repair = true;
        res->check_errors++;
        rep(c, QCOW2_MSG_SNAPTABLE_TOO_LARGE, QCOW2_CHECK_REC_PREFIX, 0, 0, 0, NULL, 0);
        rep_n(c, QCOW2_MSG_SNAPTABLE_OVERHANG_HINT, nb - QCOW2_MAX_SNAPSHOTS, 0, 0);
        return -QCOW2_CHECK_EFBIG;
    }
    if (0x7fffffffffffffffull - nb * QCOW2_SNAPSHOT_HDR_LEN < off ||
        (off & (c->cluster_size - 1))) {
        res->check_errors++;
        rep(c, QCOW2_MSG_SNAPTABLE_OFFSET, QCOW2_CHECK_REC_PREFIX, 0, 0, 0, NULL, 0);
        return -QCOW2_CHECK_EINVAL;
    }
    c->snapshots_offset = off;
    c->nb_snapshots = (uint32_t)nb;

    ret = read_snapshots(c, &nb_reduced, &extra_dropped);
    if (ret < 0) {
        res->check_errors++;
        c->nb_snapshots = 0;
        c->snapshots_offset = 0;
        return ret;
    }
    c->snap_unread = false;
    res->corruptions += (int64_t)nb_reduced + extra_dropped;
    if (nb_reduced) {
        c->snap_repair = true;
        /* The header's count first: the refcount walk relies on it. */
        if (c->io) {
            uint8_t be[4] = {(uint8_t)(c->nb_snapshots >> 24), (uint8_t)(c->nb_snapshots >> 16),
                             (uint8_t)(c->nb_snapshots >> 8), (uint8_t)c->nb_snapshots};

            ret = ck_write(c, CK_HDR_NB_SNAPSHOTS, be, 4);
            if (ret == 0)
                ret = ck_flush(c);
            if (ret < 0) {
                const char *e = qcow2_check_strerror(-ret);

                res->check_errors++;
                rep(c, QCOW2_MSG_SNAP_COUNT_UPDATE_FAILED, 0, 0, 0, 0, e, strlen(e));
                return ret;
            }
        }
        res->corruptions_fixed += nb_reduced;
        res->corruptions -= nb_reduced;
    }

    /* v3 entries carry at least vm_state_size_large and disk_size. */
    if (h->version >= 3) {
        for (i = 0; i < c->nb_snapshots; i++) {
            if (c->snaps[i].extra_data_size < 16) {
                c->snap_repair = true;
                res->corruptions++;
                rep_n(c,
                      c->snap_fix ? QCOW2_MSG_SNAPSHOT_INCOMPLETE_REPAIRING
                                  : QCOW2_MSG_SNAPSHOT_INCOMPLETE,
                      i, 0, 0);
            }
        }
    }
    return 0;
}

/* "ERROR snapshot %s (%s) ...": id and name, each up to its first NUL. */
static void rep_snapshot(struct ck *c, int32_t code, const struct ck_snap *sn, uint64_t arg)
{
    size_t cap = (size_t)sn->id_size + sn->name_size + 3, n = 0;
    char *s = ck_realloc(c, NULL, cap);
    const char *p;

    if (!s) {
        rep(c, code, 0, arg, 0, 0, "? (?)", 5); /* the line, if not the names */
        return;
    }
    if (ck_read(c, sn->id_off, s, sn->id_size) == 0 &&
        ck_read(c, sn->name_off, s + sn->id_size + 2, sn->name_size) == 0) {
        p = memchr(s, 0, sn->id_size);
        n = p ? (size_t)(p - s) : sn->id_size;
        s[n++] = ' ';
        s[n++] = '(';
        p = memchr(s + sn->id_size + 2, 0, sn->name_size);
        size_t nl = p ? (size_t)(p - (s + sn->id_size + 2)) : sn->name_size;
        memmove(s + n, s + sn->id_size + 2, nl);
        n += nl;
        s[n++] = ')';
    }
    rep(c, code, 0, arg, 0, 0, s, n);
    ck_free(c, s);
}

/* --- calculate_refcounts --- */

/*
 * fix_l2_entry_by_zero(): turn the unaligned preallocated entry i of the
 * L2 table at l2_offset (held in c->l2buf) into a zero entry on disk.
 * *overlap is set when the write was refused by the overlap check.
 */
static int fix_l2_entry_by_zero(struct ck *c, struct qcow2_check_result *res, uint64_t l2_offset,
                                uint64_t i, bool *overlap)
{
    uint8_t *ep = c->l2buf + i * c->l2_esize;
    uint64_t l2e_offset = l2_offset + i * c->l2_esize;
    int ret;

    if (c->extl2) {
        uint64_t bm = be_ld64(ep + 8);

        bm |= bm << 32; /* allocated subclusters read as zeros */
        bm &= QCOW2_BITMAP_ALL_ZEROES;
        be_st64(ep + 8, bm);
        be_st64(ep, 0);
    } else {
        be_st64(ep, QCOW2_OFLAG_ZERO);
    }
    *overlap = overlaps_metadata(c, l2e_offset, c->l2_esize);
    if (*overlap) {
        rep_n(c, QCOW2_MSG_OVERLAP_FAILED, 0, 0, 0);
        ret = -QCOW2_CHECK_EIO;
        goto fail;
    }
    ret = ck_write(c, l2e_offset, ep, c->l2_esize);
    if (ret == 0)
        ret = ck_flush(c);
    if (ret < 0) {
        const char *e = qcow2_check_strerror(-ret);

        rep(c, QCOW2_MSG_L2_OVERWRITE_FAILED, 0, 0, 0, 0, e, strlen(e));
        goto fail;
    }
    res->corruptions--;
    res->corruptions_fixed++;
    return 0;
fail:
    res->check_errors++;
    return ret;
}

/* check_refcounts_l2(): returns 0 or a negated errno. */
static int check_refcounts_l2(struct ck *c, struct qcow2_check_result *res, struct imrt *t,
                              uint64_t l2_offset, int flags, unsigned fix, bool active)
{
    const uint8_t *tb = c->l2buf;
    uint64_t next_contiguous_offset = 0;
    uint64_t i;
    int ret;

    (void)active;
    if (ck_read(c, l2_offset, c->l2buf, c->cluster_size) < 0) {
        rep_n(c, QCOW2_MSG_L2_IO, 0, 0, 0);
        res->check_errors++;
        return -QCOW2_CHECK_EIO;
    }

    for (i = 0; i < c->l2_size; i++) {
        const uint8_t *ep = tb + i * c->l2_esize;
        uint64_t e = be_ld64(ep);
        uint64_t bm = c->extl2 ? be_ld64(ep + 8) : 0;
        uint64_t offset;

        if (e == 0 && bm == 0)
            continue; /* unallocated, nothing to check: the common case */

        if (e & QCOW2_OFLAG_COMPRESSED) {
            uint64_t coffset, nb_csectors, csize;

            if (e & QCOW2_OFLAG_COPIED) {
                rep_n(c, QCOW2_MSG_COMPRESSED_COPIED, e & c->cluster_offset_mask, 0, 0);
                e &= ~QCOW2_OFLAG_COPIED;
                res->corruptions++;
            }
            if (c->data_file) {
                rep_n(c, QCOW2_MSG_COMPRESSED_DATA_FILE, i, e, 0);
                res->corruptions++;
                c->undercount = true;
                continue;
            }
            if (bm) {
                rep_n(c, QCOW2_MSG_COMPRESSED_BITMAP, i, e, 0);
                res->corruptions++;
                c->undercount = true; /* its data cluster is left uncounted */
                continue;
            }
            coffset = e & c->cluster_offset_mask;
            nb_csectors = ((e >> c->csize_shift) & c->csize_mask) + 1;
            csize = nb_csectors * QCOW2_COMPRESSED_SECTOR_SIZE -
                    (coffset & (QCOW2_COMPRESSED_SECTOR_SIZE - 1));
            ret = inc_refcounts(c, res, t, coffset, csize);
            if (ret < 0)
                return ret;
            if (flags & CK_CHECK_FRAG_INFO) {
                res->allocated_clusters++;
                res->compressed_clusters++;
                /* Compressed clusters count as fragmented by nature. */
                res->fragmented_clusters++;
            }
            continue;
        }

        if (e & QCOW2_L2E_STD_RESERVED_MASK) {
            rep_n(c, QCOW2_MSG_L2_RESERVED, e, 0, 0);
            res->corruptions++;
        }
        offset = e & QCOW2_L2E_OFFSET_MASK;

        /* qcow2_get_cluster_type() */
        if ((e & QCOW2_OFLAG_ZERO) && !c->extl2) {
            if (!offset)
                continue; /* ZERO_PLAIN */
        } else if (!offset && !(c->data_file && (e & QCOW2_OFLAG_COPIED))) {
            /* UNALLOCATED */
            if (bm & QCOW2_BITMAP_ALL_ALLOC) {
                res->corruptions++;
                rep_n(c, QCOW2_MSG_UNALLOC_BITMAP, 0, 0, 0);
            }
            continue;
        }

        /* NORMAL or ZERO_ALLOC */
        if ((bm >> 32) & bm) {
            res->corruptions++;
            rep_n(c, QCOW2_MSG_ALLOC_BITMAP_CORRUPT, offset, 0, 0);
        }
        if (offset & (c->cluster_size - 1)) {
            bool contains_data =
                c->extl2 ? (bm & QCOW2_BITMAP_ALL_ALLOC) != 0 : !(e & QCOW2_OFLAG_ZERO);

            res->corruptions++;
            if (contains_data) {
                rep_n(c, QCOW2_MSG_DATA_UNALIGNED, offset, 0, 0);
            } else if (!(fix & QCOW2_CHECK_FIX_ERRORS)) {
                rep_n(c, QCOW2_MSG_PREALLOC_UNALIGNED, offset, 0, 0);
            } else {
                bool overlap;

                rep_n(c, QCOW2_MSG_PREALLOC_UNALIGNED_REPAIRING, offset, 0, 0);
                ret = fix_l2_entry_by_zero(c, res, l2_offset, i, &overlap);
                if (overlap)
                    return ret; /* something is badly wrong: stop this table */
                if (ret == 0)
                    continue; /* the cluster is unused now */
                /* not fixed: go on with the rest of the table */
            }
        }
        if (flags & CK_CHECK_FRAG_INFO) {
            res->allocated_clusters++;
            if (next_contiguous_offset && offset != next_contiguous_offset)
                res->fragmented_clusters++;
            next_contiguous_offset = offset + c->cluster_size;
        }
        if (!c->data_file) {
            ret = inc_refcounts(c, res, t, offset, c->cluster_size);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

/* check_refcounts_l1(): returns 0 or a negated errno. */
static int check_refcounts_l1(struct ck *c, struct qcow2_check_result *res, struct imrt *t,
                              uint64_t l1_table_offset, uint32_t l1_size, int flags, unsigned fix,
                              bool active)
{
    uint64_t l1_bytes = (uint64_t)l1_size * 8;
    uint32_t base, n, i;
    int ret;

    if (!l1_size)
        return 0;
    ret = inc_refcounts(c, res, t, l1_table_offset, l1_bytes);
    if (ret < 0)
        return ret;
    /* QEMU reads the whole table at once; only a refused read fails. */
    if (!qcow2_read_ok(l1_table_offset, l1_bytes)) {
        rep_n(c, QCOW2_MSG_L1_IO, 0, 0, 0);
        res->check_errors++;
        return -QCOW2_CHECK_EIO;
    }
    for (base = 0; base < l1_size; base += n) {
        n = l1_size - base < CK_L1_CHUNK ? l1_size - base : CK_L1_CHUNK;
        if (ck_read(c, l1_table_offset + (uint64_t)base * 8, c->l1buf, (uint64_t)n * 8) < 0) {
            rep_n(c, QCOW2_MSG_L1_IO, 0, 0, 0);
            res->check_errors++;
            return -QCOW2_CHECK_EIO;
        }
        for (i = 0; i < n; i++) {
            uint64_t e = be_ld64(c->l1buf + (size_t)i * 8), l2_offset;

            if (!e)
                continue;
            if (e & QCOW2_L1E_RESERVED_MASK) {
                rep_n(c, QCOW2_MSG_L1_RESERVED, e, 0, 0);
                res->corruptions++;
            }
            l2_offset = e & QCOW2_L1E_OFFSET_MASK;
            ret = inc_refcounts(c, res, t, l2_offset, c->cluster_size);
            if (ret < 0)
                return ret;
            if (l2_offset & (c->cluster_size - 1)) {
                rep_n(c, QCOW2_MSG_L2_UNALIGNED, l2_offset, 0, 0);
                res->corruptions++;
            }
            ret = check_refcounts_l2(c, res, t, l2_offset, flags, fix, active);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

/* A bitmap directory entry's table, for the second directory pass. */
struct bm_walk {
    struct ck *c;
    struct qcow2_check_result *res;
    struct imrt *t;
    uint64_t *buf; /* CK_BMT_CHUNK entries */
};

/* bitmap_table_load()'s check_table_entry(). */
static bool bitmap_entry_ok(uint64_t e, uint64_t cluster_size)
{
    uint64_t off = e & CK_BME_OFFSET_MASK;

    if (e & CK_BME_RESERVED_MASK)
        return false;
    if (off && ((e & CK_BME_ALL_ONES) || (off & (cluster_size - 1))))
        return false;
    return true;
}

static int bitmap_refs(void *opaque, uint32_t index, const struct qcow2_bitmap *bm)
{
    struct bm_walk *w = opaque;
    struct ck *c = w->c;
    uint64_t size = bm->table_size, base, n, i;
    uint8_t *raw = (uint8_t *)w->buf;
    int ret;

    (void)index;
    ret = inc_refcounts(c, w->res, w->t, bm->table_offset, size * 8);
    if (ret < 0)
        return ret;
    /* bitmap_table_load(): the whole table must read and be valid... */
    if (!qcow2_read_ok(bm->table_offset, size * 8)) {
        w->res->corruptions++;
        return -QCOW2_CHECK_EIO;
    }
    for (base = 0; base < size; base += n) {
        n = size - base < CK_BMT_CHUNK ? size - base : CK_BMT_CHUNK;
        ret = ck_read(c, bm->table_offset + base * 8, raw, n * 8);
        if (ret < 0) {
            w->res->corruptions++;
            return ret;
        }
        for (i = 0; i < n; i++) {
            if (!bitmap_entry_ok(be_ld64(raw + i * 8), c->cluster_size)) {
                w->res->corruptions++;
                return -QCOW2_CHECK_EINVAL;
            }
        }
    }
    /* ...before any of its clusters is counted. */
    for (base = 0; base < size; base += n) {
        n = size - base < CK_BMT_CHUNK ? size - base : CK_BMT_CHUNK;
        ret = ck_read(c, bm->table_offset + base * 8, raw, n * 8);
        if (ret < 0) {
            w->res->corruptions++;
            return ret;
        }
        for (i = 0; i < n; i++) {
            uint64_t off = be_ld64(raw + i * 8) & CK_BME_OFFSET_MASK;

            if (!off)
                continue;
            ret = inc_refcounts(c, w->res, w->t, off, c->cluster_size);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

/* qcow2_check_bitmaps_refcounts() */
static int check_bitmaps_refcounts(struct ck *c, struct qcow2_check_result *res, struct imrt *t)
{
    const struct qcow2_exts *x = c->x;
    struct qcow2_err_info *ei = NULL;
    struct bm_walk w = {c, res, t, NULL};
    uint8_t *dir = NULL;
    int ret;

    if (x->nb_bitmaps == 0)
        return 0;
    ret = inc_refcounts(c, res, t, x->bitmap_dir_offset, x->bitmap_dir_size);
    if (ret < 0)
        return ret;

    /* bitmap_list_load(): any failure is one corruption and -EINVAL. */
    ret = -QCOW2_CHECK_EINVAL;
    if (x->bitmap_dir_size == 0 || x->bitmap_dir_size > QCOW2_MAX_BITMAP_DIR_SIZE)
        goto broken;
    dir = ck_realloc(c, NULL, x->bitmap_dir_size);
    ei = ck_realloc(c, NULL, sizeof(*ei));
    w.buf = ck_realloc(c, NULL, CK_BMT_CHUNK * 8);
    if (!dir || !ei || !w.buf)
        goto broken;
    if (ck_read(c, x->bitmap_dir_offset, dir, x->bitmap_dir_size) < 0)
        goto broken;
    if (qcow2_bitmap_dir_parse(dir, (size_t)x->bitmap_dir_size, x->nb_bitmaps, c->h, NULL, NULL,
                               ei) < 0)
        goto broken;

    /* The directory loaded; now each bitmap, in order. */
    ret = qcow2_bitmap_dir_parse(dir, (size_t)x->bitmap_dir_size, x->nb_bitmaps, c->h, bitmap_refs,
                                 &w, ei);
    goto out;

broken:
    res->corruptions++;
out:
    if (ret < 0)
        c->undercount = true; /* some bitmap clusters were not counted */
    ck_free(c, w.buf);
    ck_free(c, ei);
    ck_free(c, dir);
    return ret;
}

/* check_refblocks() */
static int check_refblocks(struct ck *c, struct qcow2_check_result *res, unsigned fix,
                           bool *rebuild, struct imrt *t)
{
    uint64_t i;
    int ret;

    for (i = 0; i < c->reftable_size; i++) {
        uint64_t offset = c->reftable[i] & CK_REFT_OFFSET_MASK;
        uint64_t cluster = offset >> c->cluster_bits;

        if (c->reftable[i] & CK_REFT_RESERVED) {
            rep_n(c, QCOW2_MSG_REFT_RESERVED, i, 0, 0);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (offset & (c->cluster_size - 1)) {
            rep_n(c, QCOW2_MSG_REFBLOCK_UNALIGNED, i, 0, 0);
            res->corruptions++;
            *rebuild = true;
            continue;
        }
        if (cluster >= t->nb_clusters) {
            uint64_t new_size;
            const char *e;

            res->corruptions++;
            if (!(fix & QCOW2_CHECK_FIX_ERRORS)) {
                rep_n(c, QCOW2_MSG_REFBLOCK_OUTSIDE, i, 0, 0);
                continue;
            }
            rep_n(c, QCOW2_MSG_REFBLOCK_OUTSIDE_REPAIRING, i, 0, 0);
            /* Grow the file so that the block lies inside it (zeros). */
            if (offset > 0x7fffffffffffffffull - c->cluster_size) {
                ret = -QCOW2_CHECK_EINVAL;
                goto resize_fail;
            }
            new_size = offset + c->cluster_size;
            if (new_size > c->write_limit) {
                /* QEMU would grow a sparse file to a hostile offset; refuse. */
                rep_n(c, QCOW2_MSG_REPAIR_WRITE_LIMIT, new_size, c->write_limit, offset);
                ret = -QCOW2_CHECK_EFBIG;
                goto resize_fail;
            }
            ret = ck_begin_write(c);
            if (ret == 0 && c->io->truncate(c->env->opaque, new_size) < 0)
                ret = -QCOW2_CHECK_EIO;
            if (ret < 0)
                goto resize_fail;
            if (new_size > c->file_len)
                c->file_len = new_size;
            if (size_to_clusters(c, c->file_len) > t->nb_clusters) {
                ret = imrt_resize(c, t, size_to_clusters(c, c->file_len));
                if (ret < 0) {
                    res->check_errors++;
                    return ret;
                }
            }
            if (cluster >= t->nb_clusters) {
                ret = -QCOW2_CHECK_EINVAL;
                goto resize_fail;
            }
            res->corruptions--;
            res->corruptions_fixed++;
            ret = inc_refcounts(c, res, t, offset, c->cluster_size);
            if (ret < 0)
                return ret;
            /* Just made of zeros and counted once: its refcount is 1. */
            continue;
        resize_fail:
            *rebuild = true;
            e = qcow2_check_strerror(-ret);
            rep(c, QCOW2_MSG_RESIZE_FAILED, 0, 0, 0, 0, e, strlen(e));
            continue;
        }
        if (offset != 0) {
            ret = inc_refcounts(c, res, t, offset, c->cluster_size);
            if (ret < 0)
                return ret;
            if (imrt_get(c, t, cluster) != 1) {
                rep_n(c, QCOW2_MSG_REFBLOCK_REFCOUNT, i, imrt_get(c, t, cluster), 0);
                res->corruptions++;
                *rebuild = true;
            }
        }
    }
    return 0;
}

/* calculate_refcounts() */
static int calculate_refcounts(struct ck *c, struct qcow2_check_result *res, unsigned fix,
                               bool *rebuild, struct imrt *t)
{
    const struct qcow2_header *h = c->h;
    uint32_t i;
    int ret;

    if (!t->table) {
        uint64_t want = t->nb_clusters;

        t->nb_clusters = 0;
        ret = imrt_resize(c, t, want);
        if (ret < 0) {
            res->check_errors++;
            return ret;
        }
    }

    /* header */
    ret = inc_refcounts(c, res, t, 0, c->cluster_size);
    if (ret < 0)
        return ret;

    /* current L1 table */
    ret = check_refcounts_l1(c, res, t, h->l1_table_offset, h->l1_size, CK_CHECK_FRAG_INFO, fix,
                             true);
    if (ret < 0)
        return ret;

    /* snapshots */
    if (c->data_file && c->nb_snapshots) {
        rep_n(c, QCOW2_MSG_SNAPSHOTS_DATA_FILE, c->nb_snapshots, 0, 0);
        res->corruptions++;
    }
    for (i = 0; i < c->nb_snapshots; i++) {
        const struct ck_snap *sn = &c->snaps[i];

        if (sn->l1_table_offset & (c->cluster_size - 1)) {
            rep_snapshot(c, QCOW2_MSG_SNAPSHOT_L1_UNALIGNED, sn, sn->l1_table_offset);
            res->corruptions++;
            c->undercount = true; /* the snapshot's clusters are not counted */
            continue;
        }
        if (sn->l1_size > CK_MAX_L1_SIZE / 8) {
            rep_snapshot(c, QCOW2_MSG_SNAPSHOT_L1_TOO_LARGE, sn, sn->l1_size);
            res->corruptions++;
            c->undercount = true;
            continue;
        }
        ret = check_refcounts_l1(c, res, t, sn->l1_table_offset, sn->l1_size, 0, fix, false);
        if (ret < 0)
            return ret;
    }
    ret = inc_refcounts(c, res, t, c->snapshots_offset, c->snapshots_size);
    if (ret < 0)
        return ret;

    /* refcount data */
    ret = inc_refcounts(c, res, t, c->reftable_offset, c->reftable_size * 8);
    if (ret < 0)
        return ret;

    /* encryption */
    if (c->x->has_crypto && c->x->crypto_length) {
        ret = inc_refcounts(c, res, t, c->x->crypto_offset, c->x->crypto_length);
        if (ret < 0)
            return ret;
    }

    /* bitmaps */
    ret = check_bitmaps_refcounts(c, res, t);
    if (ret < 0)
        return ret;

    return check_refblocks(c, res, fix, rebuild, t);
}

/*
 * Whether entries [from, to) of t are all zero.  from is a multiple of a
 * refcount block's entries (at least 8 bits' worth), so it starts on a
 * byte; a partial last byte is checked entry by entry.
 */
static bool imrt_zero(const struct ck *c, const struct imrt *t, uint64_t from, uint64_t to)
{
    uint64_t b = (from << c->order) / 8, e = (to << c->order) / 8, k;

    for (k = b; k < e; k++)
        if (t->table[k])
            return false;
    for (k = (e * 8) >> c->order; k < to; k++)
        if (imrt_get(c, t, k))
            return false;
    return true;
}

/* compare_refcounts(), a refcount block at a time. */
static void compare_refcounts(struct ck *c, struct qcow2_check_result *res, unsigned fix,
                              bool *rebuild, uint64_t *highest_cluster, const struct imrt *t)
{
    uint64_t per_block = UINT64_C(1) << c->rb_bits;
    uint64_t i = 0, end, refcount1, refcount2;

    *highest_cluster = 0;
    while (i < t->nb_clusters) {
        const uint8_t *rb;
        int err;

        end = (i | (per_block - 1)) + 1;
        if (end > t->nb_clusters)
            end = t->nb_clusters;
        /* Every cluster of a block shares its reftable entry, so its outcome. */
        rb = refblock_for(c, i, &err);
        if (!rb && err == 0 && imrt_zero(c, t, i, end)) {
            i = end; /* no stored block, nothing counted: nothing to say */
            continue;
        }
        for (; i < end; i++) {
            if (err < 0) {
                const char *s = qcow2_check_strerror(-err);

                rep(c, QCOW2_MSG_CANT_GET_REFCOUNT, 0, i, 0, 0, s, strlen(s));
                res->check_errors++;
                continue;
            }
            refcount1 = rb ? qcow2_refcount_get(rb, i & (per_block - 1), c->order) : 0;
            refcount2 = imrt_get(c, t, i);
            if (refcount1 > 0 || refcount2 > 0)
                *highest_cluster = i;
            if (refcount1 != refcount2) {
                int64_t *num_fixed = NULL;

                if (refcount1 == 0)
                    *rebuild = true;
                else if (refcount1 > refcount2 && (fix & QCOW2_CHECK_FIX_LEAKS))
                    num_fixed = &res->leaks_fixed;
                else if (refcount1 < refcount2 && (fix & QCOW2_CHECK_FIX_ERRORS))
                    num_fixed = &res->corruptions_fixed;
                rep_n(c,
                      num_fixed               ? QCOW2_MSG_REFCOUNT_REPAIRING
                      : refcount1 < refcount2 ? QCOW2_MSG_REFCOUNT_ERROR
                                              : QCOW2_MSG_LEAKED,
                      i, refcount1, refcount2);
                if (num_fixed && refcount_write(c, i, refcount2) == 0) {
                    (*num_fixed)++;
                    if (refcount2 == 0 && c->io->discard)
                        (void)c->io->discard(c->env->opaque, i << c->cluster_bits, c->cluster_size);
                    /* the block may have been re-read: refresh the pointer */
                    rb = refblock_for(c, i, &err);
                    continue;
                }
                if (num_fixed)
                    rb = refblock_for(c, i, &err);
                if (refcount1 < refcount2)
                    res->corruptions++;
                else
                    res->leaks++;
            }
        }
    }
}

/*
 * check_oflag_copied(): the COPIED flags of the active L1 and its L2
 * entries against the stored refcounts.  Stored refcounts that cannot be
 * read are skipped silently, as QEMU skips them.
 */
static int check_oflag_copied(struct ck *c, struct qcow2_check_result *res, unsigned fix)
{
    const struct qcow2_header *h = c->h;
    uint32_t base, n, i;
    uint64_t j, refcount;
    bool repair;
    int ret;

    if (fix & QCOW2_CHECK_FIX_ERRORS)
        repair = true;
    else if (fix & QCOW2_CHECK_FIX_LEAKS)
        /* only when the refcounts are known to be right by now */
        repair = !res->check_errors && !res->corruptions && !res->leaks;
    else
        repair = false;

    for (base = 0; base < h->l1_size; base += n) {
        n = h->l1_size - base < CK_L1_CHUNK ? h->l1_size - base : CK_L1_CHUNK;
        /* The open read this table already: it cannot fail now. */
        if (ck_read(c, h->l1_table_offset + (uint64_t)base * 8, c->l1buf, (uint64_t)n * 8) < 0) {
            res->check_errors++;
            return -QCOW2_CHECK_EIO;
        }
        for (i = 0; i < n; i++) {
            uint64_t l1e = be_ld64(c->l1buf + (size_t)i * 8);
            uint64_t l2_offset = l1e & QCOW2_L1E_OFFSET_MASK;
            uint64_t l2_dirty = 0;

            if (!l2_offset)
                continue;
            if (get_refcount(c, l2_offset >> c->cluster_bits, &refcount) < 0)
                continue;
            if ((refcount == 1) != ((l1e & QCOW2_OFLAG_COPIED) != 0)) {
                res->corruptions++;
                rep_n(c, repair ? QCOW2_MSG_COPIED_L2_REPAIRING : QCOW2_MSG_COPIED_L2, base + i,
                      l1e, refcount);
                if (repair) {
                    uint8_t *ep = c->l1buf + (size_t)i * 8;

                    be_st64(ep,
                            refcount == 1 ? l1e | QCOW2_OFLAG_COPIED : l1e & ~QCOW2_OFLAG_COPIED);
                    ret = ck_write(c, h->l1_table_offset + (uint64_t)(base + i) * 8, ep, 8);
                    if (ret < 0) {
                        res->check_errors++;
                        return ret;
                    }
                    res->corruptions--;
                    res->corruptions_fixed++;
                }
            }
            if (ck_read(c, l2_offset, c->l2buf, c->cluster_size) < 0) {
                const char *s = qcow2_check_strerror(QCOW2_CHECK_EIO);

                rep(c, QCOW2_MSG_L2_READ, 0, 0, 0, 0, s, strlen(s));
                res->check_errors++;
                return -QCOW2_CHECK_EIO;
            }
            for (j = 0; j < c->l2_size; j++) {
                uint64_t e = be_ld64(c->l2buf + j * c->l2_esize);
                uint64_t data_offset = e & QCOW2_L2E_OFFSET_MASK;
                bool allocated;

                if (e & QCOW2_OFLAG_COMPRESSED)
                    continue;
                if ((e & QCOW2_OFLAG_ZERO) && !c->extl2)
                    allocated = data_offset != 0; /* ZERO_ALLOC */
                else
                    allocated = data_offset || (c->data_file && (e & QCOW2_OFLAG_COPIED));
                if (!allocated)
                    continue;
                if (c->data_file) {
                    refcount = 1;
                } else if (get_refcount(c, data_offset >> c->cluster_bits, &refcount) < 0) {
                    continue;
                }
                if ((refcount == 1) != ((e & QCOW2_OFLAG_COPIED) != 0)) {
                    res->corruptions++;
                    rep_n(c, repair ? QCOW2_MSG_COPIED_DATA_REPAIRING : QCOW2_MSG_COPIED_DATA, e,
                          refcount, 0);
                    if (repair) {
                        be_st64(c->l2buf + j * c->l2_esize,
                                refcount == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED);
                        l2_dirty++;
                    }
                }
            }
            if (l2_dirty) {
                const char *s;

                if (overlaps_metadata(c, l2_offset, c->cluster_size)) {
                    s = qcow2_check_strerror(QCOW2_CHECK_EIO);
                    rep(c, QCOW2_MSG_L2_WRITE_OVERLAP, 0, 0, 0, 0, s, strlen(s));
                    res->check_errors++;
                    return -QCOW2_CHECK_EIO;
                }
                ret = ck_write(c, l2_offset, c->l2buf, c->cluster_size);
                if (ret < 0) {
                    s = qcow2_check_strerror(-ret);
                    rep(c, QCOW2_MSG_L2_WRITE_FAILED, 0, 0, 0, 0, s, strlen(s));
                    res->check_errors++;
                    return ret;
                }
                res->corruptions -= (int64_t)l2_dirty;
                res->corruptions_fixed += (int64_t)l2_dirty;
            }
        }
    }
    return 0;
}

/* --- rebuild_refcount_structure --- */

/*
 * alloc_clusters_imrt(): count clusters consecutive free clusters of t
 * (from *first_free on; t grows past the end of the image when needed)
 * as used.  *first_free: the first free cluster seen.  Returns the byte
 * offset of the first one, or a negated errno.
 */
static int64_t alloc_clusters_imrt(struct ck *c, uint64_t count, struct imrt *t,
                                   uint64_t *first_free)
{
    uint64_t cluster = *first_free, contiguous = 0, i;
    bool first_gap = true;
    int ret;

    for (; cluster < t->nb_clusters && contiguous < count; cluster++) {
        if (!imrt_get(c, t, cluster)) {
            contiguous++;
            if (first_gap) {
                *first_free = cluster;
                first_gap = false;
            }
        } else {
            contiguous = 0;
        }
    }
    if (contiguous < count) {
        uint64_t want = cluster + count - contiguous;

        /* Offsets stay below 2^56 (QEMU's max cluster offset) */
        if (want > (UINT64_C(1) << (56 - c->cluster_bits)))
            return -QCOW2_CHECK_EFBIG;
        ret = imrt_resize(c, t, want);
        if (ret < 0)
            return ret;
    }
    cluster -= contiguous;
    for (i = 0; i < count; i++)
        imrt_set(c, t, cluster + i, 1);
    return (int64_t)(cluster << c->cluster_bits);
}

/* The new refcount table being built (host-endian). */
struct new_reftable {
    uint64_t *e;
    uint64_t n;
};

static void rep_err(struct ck *c, int32_t code, int err)
{
    const char *s = qcow2_check_strerror(-err);

    rep(c, code, QCOW2_CHECK_REC_PREFIX, 0, 0, 0, s, strlen(s));
}

/*
 * rebuild_refcounts_write_refblocks(): write a refcount block (a slice of
 * t) for every block of [first, end) that holds a non-zero count,
 * allocating the blocks from t and entering them in rt.
 * Returns 1 if rt grew, 0 if not, or a negated errno (reported).
 */
static int write_refblocks(struct ck *c, struct imrt *t, uint64_t first, uint64_t end,
                           struct new_reftable *rt)
{
    uint64_t per_block = UINT64_C(1) << c->rb_bits;
    uint64_t cluster, first_free = 0;
    bool grown = false;
    int ret;

    for (cluster = first; cluster < end; cluster++) {
        uint64_t ri, start, rb_offset;

        if (!imrt_get(c, t, cluster))
            continue;
        ri = cluster >> c->rb_bits;
        start = ri << c->rb_bits;
        if (ri < rt->n && rt->e[ri]) {
            rb_offset = rt->e[ri]; /* allocated in an earlier round */
        } else {
            int64_t o;

            /* never into a block that is already written */
            if (first_free < start)
                first_free = start;
            o = alloc_clusters_imrt(c, 1, t, &first_free);
            if (o < 0) {
                rep_err(c, QCOW2_MSG_REBUILD_ALLOC_REFBLOCK, (int)o);
                return (int)o;
            }
            rb_offset = (uint64_t)o;
            if ((rb_offset >> c->cluster_bits) >= end)
                end = (rb_offset >> c->cluster_bits) + 1; /* its own count */
            if (rt->n <= ri) {
                uint64_t n = (((ri + 1) * 8 + c->cluster_size - 1) & ~(c->cluster_size - 1)) / 8;
                uint64_t *e = ck_realloc(c, rt->e, n * 8);

                if (!e) {
                    rep(c, QCOW2_MSG_REBUILD_REFTABLE_MEM, QCOW2_CHECK_REC_PREFIX, 0, 0, 0, NULL,
                        0);
                    return -QCOW2_CHECK_ENOMEM;
                }
                memset(e + rt->n, 0, (size_t)(n - rt->n) * 8);
                rt->e = e;
                rt->n = n;
                grown = true;
            }
            rt->e[ri] = rb_offset;
        }
        /* t's size is whole clusters, so the slice is all there. */
        ret = ck_write(c, rb_offset, t->table + ri * c->cluster_size, c->cluster_size);
        if (ret < 0) {
            rep_err(c, QCOW2_MSG_REBUILD_WRITE_REFBLOCK, ret);
            return ret;
        }
        cluster = start + per_block - 1; /* this block is done */
    }
    return grown;
}

/*
 * rebuild_refcount_structure(): a new refcount table and blocks from t
 * alone, placed where QEMU places them; the old structure is left to be
 * freed as leaks.  Crash-safe order: blocks, then the table, a flush,
 * then the header fields in one write, and a flush.
 */
static int rebuild_refcount_structure(struct ck *c, struct qcow2_check_result *res, struct imrt *t)
{
    struct new_reftable rt = {NULL, 0};
    uint64_t rt_clusters = 0, k;
    int64_t rt_offset = -1;
    uint8_t hdr[12], *be = NULL;
    int ret, changed;

    refblock_cache_empty(c);
    changed = write_refblocks(c, t, 0, t->nb_clusters, &rt);
    if (changed < 0) {
        res->check_errors++;
        ret = changed;
        goto fail;
    }
    do {
        uint64_t first_free = 0, start;

        rt_clusters = size_to_clusters(c, rt.n * 8);
        rt_offset = alloc_clusters_imrt(c, rt_clusters, t, &first_free);
        if (rt_offset < 0) {
            rep_err(c, QCOW2_MSG_REBUILD_ALLOC_REFTABLE, (int)rt_offset);
            res->check_errors++;
            ret = (int)rt_offset;
            goto fail;
        }
        start = (uint64_t)rt_offset >> c->cluster_bits;
        changed = write_refblocks(c, t, start, start + rt_clusters, &rt);
        if (changed < 0) {
            res->check_errors++;
            ret = changed;
            goto fail;
        }
    } while (changed);

    be = ck_realloc(c, NULL, rt.n * 8);
    if (!be) {
        ret = -QCOW2_CHECK_ENOMEM;
        rep_err(c, QCOW2_MSG_REBUILD_WRITE_REFTABLE, ret);
        goto fail;
    }
    for (k = 0; k < rt.n; k++)
        be_st64(be + k * 8, rt.e[k]);
    ret = ck_write(c, (uint64_t)rt_offset, be, rt.n * 8);
    if (ret == 0)
        ret = ck_flush(c); /* blocks and table before the header points at them */
    if (ret < 0) {
        rep_err(c, QCOW2_MSG_REBUILD_WRITE_REFTABLE, ret);
        goto fail;
    }
    be_st64(hdr, (uint64_t)rt_offset);
    hdr[8] = (uint8_t)(rt_clusters >> 24);
    hdr[9] = (uint8_t)(rt_clusters >> 16);
    hdr[10] = (uint8_t)(rt_clusters >> 8);
    hdr[11] = (uint8_t)rt_clusters;
    ret = ck_write(c, CK_HDR_REFTABLE, hdr, sizeof(hdr));
    if (ret == 0)
        ret = ck_flush(c);
    if (ret < 0) {
        rep_err(c, QCOW2_MSG_REBUILD_SET_REFTABLE, ret);
        goto fail;
    }
    ck_free(c, c->reftable);
    c->reftable = rt.e;
    c->reftable_size = rt.n;
    c->reftable_offset = (uint64_t)rt_offset;
    refblock_cache_empty(c);
    ck_free(c, be);
    return 0;
fail:
    ck_free(c, be);
    ck_free(c, rt.e);
    return ret;
}

/* qcow2_check_refcounts() */
static int check_refcounts(struct ck *c, struct qcow2_check_result *res, unsigned fix)
{
    struct imrt t = {NULL, 0};
    struct qcow2_check_result pre_compare;
    uint64_t nb_clusters, highest_cluster = 0;
    bool rebuild = false;
    int ret;

    nb_clusters = size_to_clusters(c, c->file_len);
    if (nb_clusters > CK_INT_MAX) {
        res->check_errors++;
        return -QCOW2_CHECK_EFBIG;
    }
    res->total_clusters = (int64_t)size_to_clusters(c, c->h->disk_size);

    /* The refcount table, as qcow2_refcount_init() loaded it at open. */
    c->reftable_size = (uint64_t)c->h->refcount_table_clusters << (c->cluster_bits - 3);
    if (c->reftable_size) {
        uint64_t k, bytes = c->reftable_size * 8;

        c->reftable = ck_realloc(c, NULL, bytes);
        if (!c->reftable) {
            res->check_errors++;
            return -QCOW2_CHECK_ENOMEM;
        }
        ret = ck_read(c, c->h->refcount_table_offset, c->reftable, bytes);
        if (ret < 0) {
            res->check_errors++;
            return ret;
        }
        for (k = 0; k < c->reftable_size; k++)
            c->reftable[k] = be_ld64((const uint8_t *)&c->reftable[k]);
    }

    t.nb_clusters = nb_clusters;
    ret = calculate_refcounts(c, res, fix, &rebuild, &t);
    if (ret < 0)
        goto fail;

    pre_compare = *res;
    compare_refcounts(c, res, 0, &rebuild, &highest_cluster, &t);

    if (rebuild && (fix & QCOW2_CHECK_FIX_ERRORS)) {
        struct qcow2_check_result old = *res;
        int64_t fresh_leaks = 0;

        rep_n(c, QCOW2_MSG_REBUILDING, 0, 0, 0);
        ret = rebuild_refcount_structure(c, res, &t);
        if (ret < 0)
            goto fail;
        res->corruptions = 0;
        res->leaks = 0;

        /* Count again against the new structure. */
        rebuild = false;
        memset(t.table, 0, (size_t)imrt_bytes(c, t.nb_clusters));
        ret = calculate_refcounts(c, res, 0, &rebuild, &t);
        if (ret < 0)
            goto fail;
        if (fix & QCOW2_CHECK_FIX_LEAKS) {
            /* The old structure is leaked now: free it. */
            struct qcow2_check_result saved = *res;

            memset(res, 0, sizeof(*res));
            compare_refcounts(c, res, QCOW2_CHECK_FIX_LEAKS, &rebuild, &highest_cluster, &t);
            if (rebuild)
                rep_n(c, QCOW2_MSG_REBUILT_STILL_BROKEN, 0, 0, 0);
            fresh_leaks = res->leaks;
            *res = saved;
        }
        if (res->corruptions < old.corruptions)
            res->corruptions_fixed += old.corruptions - res->corruptions;
        if (res->leaks < old.leaks)
            res->leaks_fixed += old.leaks - res->leaks;
        res->leaks += fresh_leaks;
    } else if (fix) {
        if (rebuild) {
            rep_n(c, QCOW2_MSG_NEED_REBUILD, 0, 0, 0);
            res->check_errors++;
            ret = -QCOW2_CHECK_EIO;
            goto fail;
        }
        if (res->leaks || res->corruptions) {
            *res = pre_compare;
            compare_refcounts(c, res, fix, &rebuild, &highest_cluster, &t);
        }
    }

    ret = check_oflag_copied(c, res, fix);
    if (ret < 0)
        goto fail;
    res->image_end_offset = (int64_t)((highest_cluster + 1) << c->cluster_bits);
    ret = 0;
fail:
    ck_free(c, t.table);
    return ret;
}

/* --- The snapshot table rewrite (qcow2_check_fix_snapshot_table) --- */

static int snap_alloc_read(void *opaque, uint64_t off, void *buf, size_t len)
{
    return ck_read(opaque, off, buf, len);
}

static int snap_alloc_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    return ck_write(opaque, off, buf, len);
}

static void *snap_alloc_mem(void *opaque, void *p, size_t size)
{
    struct ck *c = opaque;

    if (size == 0) {
        ck_free(c, p);
        return NULL;
    }
    return ck_realloc(c, p, size);
}

/* The old table's clusters: QCOW2_DISCARD_SNAPSHOT passes through by default. */
static void snap_alloc_discard(void *opaque, uint64_t off, uint64_t len)
{
    struct ck *c = opaque;

    if (c->io && c->io->discard)
        (void)c->io->discard(c->env->opaque, off, len);
}

static int snap_alloc_flush(void *opaque)
{
    return ck_flush(opaque);
}

/* The length of s up to its first NUL, within n bytes (C's strnlen). */
static uint16_t ck_strnlen(const uint8_t *s, uint16_t n)
{
    const uint8_t *p = memchr(s, 0, n);

    return p ? (uint16_t)(p - s) : n;
}

/*
 * Entry i of the table as qcow2_write_snapshots() writes it, into out
 * (at least qcow2_snapshot_entry_len bytes); strings and unknown extra
 * data are read from the old table into tmp (65536 * 2 + 1024 bytes).
 * Returns the bytes written or a negated errno.
 */
static int64_t snap_serialize(struct ck *c, const struct ck_snap *sn, uint8_t *tmp, uint8_t *out)
{
    struct qcow2_snapshot q;
    uint8_t *id = tmp, *name = tmp + 65536, *unknown = tmp + 2 * 65536;
    uint32_t nunknown = sn->extra_data_size > 24 ? sn->extra_data_size - 24 : 0;

    if (ck_read(c, sn->id_off, id, sn->id_size) < 0 ||
        ck_read(c, sn->name_off, name, sn->name_size) < 0 ||
        ck_read(c, sn->unknown_off, unknown, nunknown) < 0)
        return -QCOW2_CHECK_EIO;
    memset(&q, 0, sizeof(q));
    q.l1_table_offset = sn->l1_table_offset;
    q.l1_size = sn->l1_size;
    q.date_sec = sn->date_sec;
    q.date_nsec = sn->date_nsec;
    q.extra_data_size = sn->extra_data_size;
    q.vm_clock_nsec = sn->vm_clock_nsec;
    q.vm_state_size = sn->vm_state_size;
    q.disk_size = sn->disk_size;
    q.icount = sn->icount;
    q.id = id;
    q.id_len = ck_strnlen(id, sn->id_size);
    q.name = name;
    q.name_len = ck_strnlen(name, sn->name_size);
    if (!out)
        return (int64_t)qcow2_snapshot_entry_len(&q);
    return (int64_t)qcow2_snapshot_write_entry(&q, nunknown ? unknown : NULL, out);
}

/*
 * qcow2_write_snapshots(): write the table as the check read it (entries
 * dropped, extra data cut, missing extra data filled in) to newly
 * allocated clusters, flush, point the header at it (count and offset in
 * one 12-byte write), flush, then free the old table.  Allocation goes
 * through formats/qcow2/alloc.h over the refcounts the repair left, so
 * the new table lands where QEMU's lands.  Returns 0 or a negated errno.
 */
static int write_snapshots(struct ck *c)
{
    static const struct qcow2_alloc_ops ops = {snap_alloc_read, snap_alloc_write, snap_alloc_mem,
                                               snap_alloc_discard, snap_alloc_flush};
    struct qcow2_alloc a;
    bool have_alloc = false;
    uint8_t *tmp = NULL, *table = NULL, hdr[12];
    uint64_t size = 0, off, reft_clusters;
    int64_t new_offset = 0, n;
    uint32_t i;
    int ret;

    tmp = ck_realloc(c, NULL, 2 * 65536 + QCOW2_SNAPSHOT_MAX_EXTRA);
    if (!tmp)
        return -QCOW2_CHECK_ENOMEM;
    for (i = 0; i < c->nb_snapshots; i++) {
        size = (size + 7) & ~7ull;
        n = snap_serialize(c, &c->snaps[i], tmp, NULL);
        if (n < 0) {
            ret = (int)n;
            goto out;
        }
        size += (uint64_t)n;
        if (size > QCOW2_SNAPSHOT_MAX_TABLE) {
            ret = -QCOW2_CHECK_EFBIG;
            goto out;
        }
    }

    reft_clusters = (c->reftable_size * 8) >> c->cluster_bits;
    ret =
        qcow2_alloc_init(&a, &ops, c, c->cluster_bits, c->order, c->reftable_offset, reft_clusters);
    if (ret < 0)
        goto out;
    have_alloc = true;
    if (size) {
        new_offset = qcow2_alloc_clusters(&a, size);
        if (new_offset < 0) {
            ret = (int)new_offset;
            new_offset = 0;
            goto out;
        }
    }
    ret = qcow2_alloc_flush(&a);
    if (ret == 0)
        ret = ck_flush(c);
    if (ret < 0)
        goto out_free_new;

    /* The new clusters must not hold metadata the header still points at. */
    if (size && c->snapshots_size &&
        (uint64_t)new_offset < c->snapshots_offset + c->snapshots_size &&
        c->snapshots_offset < (uint64_t)new_offset + size) {
        static const char what[] = "snapshot table";

        rep(c, QCOW2_MSG_MARK_CORRUPT_OVERLAP, 0, 0, 0, 0, what, sizeof(what) - 1);
        (void)ck_mark_corrupt(c);
        c->dead = true; /* QEMU's node is unusable now: nothing more is written */
        ret = -QCOW2_CHECK_EIO;
        goto out;
    }
    if (size && overlaps_metadata(c, (uint64_t)new_offset, size)) {
        static const char what[] = "metadata";

        rep(c, QCOW2_MSG_MARK_CORRUPT_OVERLAP, 0, 0, 0, 0, what, sizeof(what) - 1);
        (void)ck_mark_corrupt(c);
        c->dead = true;
        ret = -QCOW2_CHECK_EIO;
        goto out;
    }

    if (size) {
        table = ck_realloc(c, NULL, size);
        if (!table) {
            ret = -QCOW2_CHECK_ENOMEM;
            goto out_free_new;
        }
        memset(table, 0, (size_t)size);
        for (off = 0, i = 0; i < c->nb_snapshots; i++) {
            off = (off + 7) & ~7ull;
            n = snap_serialize(c, &c->snaps[i], tmp, table + off);
            if (n < 0) {
                ret = (int)n;
                goto out_free_new;
            }
            off += (uint64_t)n;
        }
        ret = ck_write(c, (uint64_t)new_offset, table, size);
        if (ret == 0)
            ret = ck_flush(c); /* the table before the header points at it */
        if (ret < 0)
            goto out_free_new;
    }
    hdr[0] = (uint8_t)(c->nb_snapshots >> 24);
    hdr[1] = (uint8_t)(c->nb_snapshots >> 16);
    hdr[2] = (uint8_t)(c->nb_snapshots >> 8);
    hdr[3] = (uint8_t)c->nb_snapshots;
    be_st64(hdr + 4, (uint64_t)new_offset);
    ret = ck_write(c, CK_HDR_NB_SNAPSHOTS, hdr, sizeof(hdr));
    if (ret == 0)
        ret = ck_flush(c);
    if (ret < 0)
        goto out_free_new;

    /* The old table: QEMU frees it and only reports a failure. */
    ret = qcow2_alloc_free(&a, c->snapshots_offset, c->snapshots_size, true);
    if (ret < 0) {
        const char *e = qcow2_check_strerror(-ret);

        rep(c, QCOW2_MSG_FREE_CLUSTERS_FAILED, 0, 0, 0, 0, e, strlen(e));
    }
    ret = qcow2_alloc_flush(&a);
    if (ret == 0)
        ret = ck_flush(c);
    c->snapshots_offset = (uint64_t)new_offset;
    c->snapshots_size = size;
    goto out;

out_free_new:
    if (new_offset > 0 && !c->dead) {
        (void)qcow2_alloc_free(&a, (uint64_t)new_offset, size, true);
        (void)qcow2_alloc_flush(&a);
    }
out:
    if (have_alloc)
        qcow2_alloc_release(&a);
    ck_free(c, table);
    ck_free(c, tmp);
    return ret;
}

/* qcow2_check_fix_snapshot_table() */
static int fix_snapshot_table(struct ck *c, struct qcow2_check_result *res)
{
    int ret;

    if (!res->corruptions || !(c->fix & QCOW2_CHECK_FIX_ERRORS) || !c->io)
        return 0;
    ret = c->dead ? -QCOW2_CHECK_EIO : write_snapshots(c);
    if (ret < 0) {
        const char *e = qcow2_check_strerror(-ret);

        res->check_errors++;
        rep(c, QCOW2_MSG_SNAP_TABLE_UPDATE_FAILED, 0, 0, 0, 0, e, strlen(e));
        return ret;
    }
    res->corruptions_fixed += res->corruptions;
    res->corruptions = 0;
    return 0;
}

static void add_result(struct qcow2_check_result *out, const struct qcow2_check_result *src,
                       bool set_allocation_info)
{
    out->corruptions += src->corruptions;
    out->leaks += src->leaks;
    out->check_errors += src->check_errors;
    out->corruptions_fixed += src->corruptions_fixed;
    out->leaks_fixed += src->leaks_fixed;
    if (set_allocation_info) {
        out->image_end_offset = src->image_end_offset;
        out->total_clusters = src->total_clusters;
        out->allocated_clusters = src->allocated_clusters;
        out->fragmented_clusters = src->fragmented_clusters;
        out->compressed_clusters = src->compressed_clusters;
    }
}

static void ck_release(struct ck *c)
{
    int i;

    for (i = 0; i < CK_RB_CACHE; i++)
        ck_free(c, c->rbc[i].data);
    ck_free(c, c->reftable);
    ck_free(c, c->snaps);
    ck_free(c, c->l2buf);
    ck_free(c, c->l1buf);
}

/* What a pass learnt that decides whether a repair may go ahead. */
struct ck_pass {
    bool undercount;
    bool snap_repair;
    bool snap_unread; /* the snapshot table was not read (QEMU forgets it) */
    bool dead;        /* a fatal corruption was signalled (QEMU's node is unusable) */
    bool wrote;
};

/* qcow2_co_check_locked() */
static int check_run(const struct qcow2_check_image *img, const struct qcow2_check_env *env,
                     const struct qcow2_repair_io *io, unsigned fix, struct qcow2_check_result *res,
                     struct ck_pass *pass)
{
    const struct qcow2_header *h = img->h;
    struct qcow2_check_result snapshot_res, refcount_res;
    struct ck c;
    int ret;

    memset(res, 0, sizeof(*res));
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS ||
        h->refcount_order > QCOW2_REFCOUNT_ORDER_MAX)
        return -QCOW2_CHECK_EINVAL; /* not a header qcow2_header_parse accepted */

    memset(&c, 0, sizeof(c));
    memset(&snapshot_res, 0, sizeof(snapshot_res));
    memset(&refcount_res, 0, sizeof(refcount_res));
    c.env = env;
    c.h = h;
    c.x = img->x;
    c.file_len = img->file_size;
    c.cluster_bits = h->cluster_bits;
    c.cluster_size = UINT64_C(1) << h->cluster_bits;
    c.order = h->refcount_order;
    c.refcount_max = qcow2_refcount_max(c.order);
    c.rb_bits = h->cluster_bits + 3 - h->refcount_order;
    c.extl2 = (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0;
    c.data_file = (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) != 0;
    c.l2_esize = c.extl2 ? 16 : 8;
    c.l2_size = c.cluster_size / c.l2_esize;
    c.csize_shift = 62 - (h->cluster_bits - 8);
    c.csize_mask = (UINT64_C(1) << (h->cluster_bits - 8)) - 1;
    c.cluster_offset_mask = (UINT64_C(1) << c.csize_shift) - 1;
    c.io = fix ? io : NULL;
    c.fix = c.io ? fix : 0;
    /* A dry run for "-r all" reads the snapshot table as the repair will. */
    c.snap_fix = (fix & QCOW2_CHECK_FIX_ERRORS) != 0;
    c.write_limit = c.io ? io->write_limit : img->file_size;
    c.reftable_offset = h->refcount_table_offset;
    c.incompat = h->incompatible_features;

    c.l2buf = ck_realloc(&c, NULL, c.cluster_size);
    c.l1buf = ck_realloc(&c, NULL, CK_L1_CHUNK * 8);
    if (!c.l2buf || !c.l1buf) {
        /* QEMU's g_malloc of an L2 table would abort; fail cleanly. */
        res->check_errors++;
        ret = -QCOW2_CHECK_ENOMEM;
        goto out;
    }

    ret = check_read_snapshot_table(&c, &snapshot_res, fix);
    if (ret < 0) {
        add_result(res, &snapshot_res, false);
        goto out;
    }
    ret = check_refcounts(&c, &refcount_res, c.fix);
    add_result(res, &refcount_res, true);
    if (ret < 0) {
        add_result(res, &snapshot_res, false);
        goto out;
    }
    ret = fix_snapshot_table(&c, &snapshot_res);
    add_result(res, &snapshot_res, false);
out:
    pass->undercount = c.undercount;
    pass->snap_repair = c.snap_repair;
    pass->snap_unread = c.snap_unread;
    pass->dead = c.dead;
    pass->wrote = c.wrote;
    ck_release(&c);
    return ret;
}

static void quiet_report(void *opaque, int32_t code, uint16_t flags, const uint64_t args[4],
                         const char *s, size_t slen)
{
    (void)opaque;
    (void)code;
    (void)flags;
    (void)args;
    (void)s;
    (void)slen;
}

int qcow2_check(const struct qcow2_check_image *img, const struct qcow2_check_env *env,
                unsigned fix, struct qcow2_check_result *res)
{
    struct ck_pass pass = {false, false, false, false, false};

    memset(res, 0, sizeof(*res));
    if (fix)
        return -QCOW2_CHECK_ENOTSUP;
    return check_run(img, env, NULL, 0, res, &pass);
}

/*
 * QEMU's read-write open clears the autoclear feature bits it does not
 * know (qcow2_update_header()).  Returns 0, 1 when the header must not be
 * rewritten (it would lose the snapshot table), or -EIO.
 */
static int clear_unknown_autoclear(const struct qcow2_header *h, const struct qcow2_check_env *env,
                                   const struct qcow2_repair_io *io, bool write)
{
    uint64_t known = QCOW2_AUTOCLEAR_BITMAPS | QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    uint8_t be[8];

    if (h->version < 3 || !(h->autoclear_features & ~known))
        return 0;
    if (h->nb_snapshots || h->snapshots_offset)
        return 1;
    if (!write)
        return 0;
    be_st64(be, h->autoclear_features & known);
    if (io->pwrite(env->opaque, CK_HDR_AUTOCLEAR, be, 8) < 0 || io->flush(env->opaque) < 0)
        return -QCOW2_CHECK_EIO;
    return 0;
}

int qcow2_repair(const struct qcow2_check_image *img, const struct qcow2_check_env *env,
                 const struct qcow2_repair_io *io, unsigned fix, struct qcow2_check_result *res)
{
    struct qcow2_check_env quiet;
    struct ck_pass pass = {false, false, false, false, false};
    int32_t refusal = 0;
    int ret;

    memset(res, 0, sizeof(*res));
    if (!fix)
        return check_run(img, env, NULL, 0, res, &pass);
    if (!io || !io->pwrite || !io->flush || !io->truncate)
        return -QCOW2_CHECK_ENOTSUP;

    /*
     * A silent read-only walk first, reading the snapshot table as the
     * repair will: repair only when every reference could be counted
     * (that includes the old snapshot table a rewrite frees).  If that
     * walk fails, so would the repair's, before its first write: report
     * the read-only walk.
     */
    quiet = *env;
    quiet.report = quiet_report;
    ret = check_run(img, &quiet, NULL, fix, res, &pass);
    if (clear_unknown_autoclear(img->h, env, io, false) == 1)
        refusal = QCOW2_MSG_REPAIR_REFUSED_AUTOCLEAR;
    else if (ret < 0)
        return check_run(img, env, NULL, fix, res, &pass);
    else if (pass.undercount && (res->corruptions || res->leaks))
        refusal = QCOW2_MSG_REPAIR_REFUSED_UNCOUNTED;
    if (refusal) {
        static const uint64_t none[4];

        ret = check_run(img, env, NULL, 0, res, &pass);
        env->report(env->opaque, refusal, 0, none, NULL, 0);
        if (ret == 0) {
            res->check_errors++;
            ret = -QCOW2_CHECK_EIO;
        }
        return ret;
    }
    ret = clear_unknown_autoclear(img->h, env, io, true);
    if (ret < 0)
        return ret;
    ret = check_run(img, env, io, fix, res, &pass);
    res->repair_flags = QCOW2_REPAIR_RAN;
    if (pass.dead || pass.snap_unread)
        res->repair_flags |= QCOW2_REPAIR_KEEP_DIRTY;
    return ret;
}

int qcow2_check_finish(const struct qcow2_header *h, const struct qcow2_check_env *env,
                       const struct qcow2_repair_io *io, unsigned clear)
{
    uint64_t bits = 0, v;
    uint8_t be[8];

    if (clear & QCOW2_CHECK_CLEAR_DIRTY)
        bits |= QCOW2_INCOMPAT_DIRTY;
    if (clear & QCOW2_CHECK_CLEAR_CORRUPT)
        bits |= QCOW2_INCOMPAT_CORRUPT;
    if (h->version < 3 || !(h->incompatible_features & bits))
        return 0;
    if (!io || !io->pwrite || !io->flush)
        return -QCOW2_CHECK_EIO;
    v = h->incompatible_features & ~bits;
    be_st64(be, v);
    if (io->flush(env->opaque) < 0 || io->pwrite(env->opaque, CK_HDR_INCOMPAT, be, 8) < 0 ||
        io->flush(env->opaque) < 0)
        return -QCOW2_CHECK_EIO;
    return 1;
}
