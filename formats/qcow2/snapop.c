/*
 * qcow2 internal snapshots: create, delete, apply.  See snapop.h.
 *
 * The order of writes is QEMU's:
 *  - create: the copy of the active L1 table in new clusters, the
 *    refcounts of everything it references (+1, COPIED cleared in the
 *    active L2 tables and L1 table), then the new snapshot table in new
 *    clusters, then the header (nb_snapshots, snapshots_offset), then the
 *    old table freed;
 *  - delete: the table without the entry, the header, then the refcounts
 *    of what the snapshot referenced (-1, freed clusters discarded), its
 *    L1 table freed, and the active layer's COPIED flags fixed up;
 *  - apply: the snapshot's references raised, its L1 table written over
 *    the active one, the old active references dropped, COPIED fixed up.
 */
#include "snapop.h"

#include <string.h>

#include "alloc.h"
#include "be.h"
#include "l2.h"

#define SO_MAX_L1_BYTES     (UINT64_C(32) << 20) /* QCOW_MAX_L1_SIZE */
#define SO_MAX_SNAPSHOTS    65536                /* QCOW_MAX_SNAPSHOTS */
#define SO_MAX_TABLE        (UINT64_C(1024) * SO_MAX_SNAPSHOTS)
#define SO_HDR_NB_SNAPSHOTS 60 /* offsetof(QCowHeader, nb_snapshots), then snapshots_offset */
#define SO_HDR_L1_SIZE      36 /* offsetof(QCowHeader, l1_size), then l1_table_offset */

struct so {
    const struct qcow2_snapop_image *img;
    const struct qcow2_snapop_io *io;
    struct qcow2_alloc a;
    bool a_init;
    uint64_t cs;
    unsigned esize; /* bytes per L2 entry */
    uint64_t *l1;   /* the active L1 table, host-endian */
    uint8_t *l2;    /* one L2 table */
    /*
     * QEMU's list of regions to discard (s->discards): freed clusters
     * merge into the first region they touch, and the regions are punched
     * in order when processed.  Which punches cover whole blocks of the
     * host file decides its allocation, so the merging is QEMU's.
     */
    struct so_discard {
        uint64_t offset, bytes;
    } * discards;
    size_t ndiscards, cap_discards;
    bool cache_discards; /* inside update_snapshot_refcount */
};

/* --- I/O and memory --- */

static int so_read(void *opaque, uint64_t off, void *buf, size_t len)
{
    struct so *s = opaque;

    return s->io->pread(s->io->opaque, off, buf, len);
}

static int so_write(void *opaque, uint64_t off, const void *buf, size_t len)
{
    struct so *s = opaque;

    return s->io->pwrite(s->io->opaque, off, buf, len);
}

static void *so_alloc_mem(void *opaque, void *p, size_t size)
{
    struct so *s = opaque;

    return s->io->mem(s->io->opaque, p, size);
}

/* qcow2_process_discards(): punch the queued regions in order, forget them. */
static void process_discards(struct so *s)
{
    size_t i;

    for (i = 0; i < s->ndiscards; i++)
        if (s->io->discard)
            s->io->discard(s->io->opaque, s->discards[i].offset, s->discards[i].bytes);
    s->ndiscards = 0;
}

/*
 * Merge every other region adjacent to region k into it (they never
 * overlap: each holds clusters that lost their last reference).
 */
static void merge_adjacent(struct so *s, size_t k)
{
    size_t i = 0;

    while (i < s->ndiscards) {
        struct so_discard *d = &s->discards[k], *p = &s->discards[i];

        if (i == k || p->offset > d->offset + d->bytes || d->offset > p->offset + p->bytes) {
            i++;
            continue;
        }
        if (p->offset < d->offset)
            d->offset = p->offset;
        d->bytes += p->bytes;
        memmove(p, p + 1, (s->ndiscards - i - 1) * sizeof(*p));
        s->ndiscards--;
        if (i < k)
            k--;
    }
}

/*
 * update_refcount_discard(): queue a freed region, merged into the first
 * one it adjoins, then that one with any other it now adjoins.
 */
static void so_discard(void *opaque, uint64_t off, uint64_t len)
{
    struct so *s = opaque;
    size_t i;

    for (i = 0; i < s->ndiscards; i++) {
        struct so_discard *d = &s->discards[i];
        uint64_t start = off < d->offset ? off : d->offset;
        uint64_t end = off + len > d->offset + d->bytes ? off + len : d->offset + d->bytes;

        if (end - start <= len + d->bytes) {
            d->offset = start;
            d->bytes = end - start;
            merge_adjacent(s, i);
            return;
        }
    }
    if (s->ndiscards == s->cap_discards) {
        size_t cap = s->cap_discards ? 2 * s->cap_discards : 64;
        struct so_discard *n = s->io->mem(s->io->opaque, s->discards, cap * sizeof(*n));

        if (!n) {
            /* Out of memory: punch what is queued and this one now. */
            process_discards(s);
            if (s->io->discard)
                s->io->discard(s->io->opaque, off, len);
            return;
        }
        s->discards = n;
        s->cap_discards = cap;
    }
    s->discards[s->ndiscards].offset = off;
    s->discards[s->ndiscards].bytes = len;
    s->ndiscards++;
    merge_adjacent(s, s->ndiscards - 1);
}

/* A reference dropped outside update_snapshot_refcount: its discards go at once. */
static int free_now(struct so *s, uint64_t off, uint64_t size)
{
    int ret = qcow2_alloc_free(&s->a, off, size, true);

    if (!s->cache_discards)
        process_discards(s);
    return ret;
}

static int so_flush_io(void *opaque)
{
    struct so *s = opaque;

    return s->io->flush(s->io->opaque);
}

static const struct qcow2_alloc_ops so_alloc_ops = {so_read, so_write, so_alloc_mem, so_discard,
                                                    so_flush_io};

static void *so_mem(struct so *s, size_t size)
{
    void *p = s->io->mem(s->io->opaque, NULL, size ? size : 1);

    if (p)
        memset(p, 0, size ? size : 1);
    return p;
}

static void so_free(struct so *s, void *p)
{
    if (p)
        (void)s->io->mem(s->io->opaque, p, 0);
}

/* bdrv_flush(): the cached refcount blocks, then the file. */
static int so_sync(struct so *s)
{
    int ret = qcow2_alloc_flush(&s->a);

    return ret ? ret : s->io->flush(s->io->opaque);
}

/* Metadata other than refcount blocks: the refcounts it depends on go first. */
static int meta_write(struct so *s, uint64_t off, const void *buf, size_t len, bool sync)
{
    int ret = qcow2_alloc_flush(&s->a);

    if (ret == 0 && len)
        ret = s->io->pwrite(s->io->opaque, off, buf, len);
    if (ret == 0 && sync)
        ret = s->io->flush(s->io->opaque);
    return ret;
}

/* qcow2_alloc_clusters(), with QEMU's answer for 0 bytes: the scan's position, no reference. */
static int64_t alloc_clusters(struct so *s, uint64_t size)
{
    if (size == 0)
        return (int64_t)(s->a.free_cluster_index << s->img->cluster_bits);
    return qcow2_alloc_clusters(&s->a, size);
}

static int so_init(struct so *s, const struct qcow2_snapop_image *img,
                   const struct qcow2_snapop_io *io)
{
    uint64_t i;
    int ret;

    memset(s, 0, sizeof(*s));
    s->img = img;
    s->io = io;
    s->cs = UINT64_C(1) << img->cluster_bits;
    s->esize = img->extended_l2 ? 16 : 8;
    ret = qcow2_alloc_init(&s->a, &so_alloc_ops, s, img->cluster_bits, img->refcount_order,
                           img->refcount_table_offset, img->refcount_table_clusters);
    if (ret < 0)
        return ret;
    s->a_init = true;
    s->l1 = so_mem(s, (size_t)img->l1_size * 8);
    s->l2 = so_mem(s, (size_t)s->cs);
    if (!s->l1 || !s->l2)
        return -QCOW2_SNAPOP_ENOMEM;
    if (img->l1_size) {
        ret = io->pread(io->opaque, img->l1_table_offset, s->l1, (size_t)img->l1_size * 8);
        if (ret < 0)
            return ret;
        for (i = 0; i < img->l1_size; i++)
            s->l1[i] = be_ld64((const uint8_t *)&s->l1[i]);
    }
    return 0;
}

/* The end of every operation: the refcount cache written back (qcow2_close). */
static int so_finish(struct so *s, int ret)
{
    if (s->a_init) {
        int r = so_sync(s);

        if (ret == 0)
            ret = r;
        if (s->img->free_cluster_index)
            *s->img->free_cluster_index = s->a.free_cluster_index;
        qcow2_alloc_release(&s->a);
    }
    process_discards(s);
    so_free(s, s->discards);
    so_free(s, s->l1);
    so_free(s, s->l2);
    return ret;
}

/* qcow2_validate_table() for a snapshot's L1 table. */
static int validate_l1(uint64_t cs, const struct qcow2_snapshot *sn, int *stage)
{
    uint64_t size = (uint64_t)sn->l1_size * 8;

    if (sn->l1_size > SO_MAX_L1_BYTES / 8) {
        *stage = QCOW2_SNAPOP_STAGE_L1_TOO_LARGE;
        return -QCOW2_SNAPOP_EFBIG;
    }
    if ((uint64_t)INT64_MAX - size < sn->l1_table_offset || (sn->l1_table_offset & (cs - 1)) != 0) {
        *stage = QCOW2_SNAPOP_STAGE_L1_OFFSET;
        return -QCOW2_SNAPOP_EINVAL;
    }
    return 0;
}

/* --- qcow2_update_snapshot_refcount() --- */

static void st_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/*
 * One L2 entry: its refcount changed by addend (-1, 0, +1) and COPIED set
 * exactly when the refcount is then 1.  *entry is updated.
 */
static int update_entry(struct so *s, uint64_t *entry, int addend)
{
    uint64_t e = *entry & ~QCOW2_OFLAG_COPIED, off = e & QCOW2_L2E_OFFSET_MASK, rc = 0;
    unsigned cb = s->img->cluster_bits;
    int ret;

    if (e & QCOW2_OFLAG_COMPRESSED) {
        /* qcow2_parse_compressed_l2_entry(): the host bytes the data touches. */
        unsigned shift = 62 - (cb - 8);
        uint64_t coff = e & ((UINT64_C(1) << shift) - 1);
        uint64_t nsec = ((e >> shift) & ((UINT64_C(1) << (cb - 8)) - 1)) + 1;
        uint64_t csize = nsec * 512 - (coff & 511);

        if (addend) {
            ret = qcow2_alloc_update_discard(&s->a, coff, csize, 1, addend < 0, true);
            if (ret < 0)
                return ret;
        }
        rc = 2; /* compressed clusters are never COPIED */
    } else if ((e & QCOW2_OFLAG_ZERO) && !s->img->extended_l2 && !off) {
        rc = 0;
    } else if (off) {
        if (off & (s->cs - 1))
            return -QCOW2_SNAPOP_EIO; /* QEMU marks the image corrupt */
        if (addend) {
            ret = qcow2_alloc_update_discard(&s->a, off, s->cs, 1, addend < 0, true);
            if (ret < 0)
                return ret;
        }
        ret = qcow2_alloc_get_refcount(&s->a, off >> cb, &rc);
        if (ret < 0)
            return ret;
    }
    if (rc == 1)
        e |= QCOW2_OFLAG_COPIED;
    *entry = e;
    return 0;
}

/*
 * The refcounts of every cluster the L1 table at l1_off (l1_size entries;
 * active: the in-memory active table) references changed by addend, and
 * the COPIED flags of its L2 tables and (addend >= 0) of the table itself
 * brought in line.  On return the refcount blocks are written and flushed.
 */
static int update_snapshot_refcount(struct so *s, uint64_t l1_off, uint32_t l1_size, bool active,
                                    int addend)
{
    uint64_t *l1 = s->l1, i, n = s->cs / s->esize, l2_off = 0;
    bool l1_modified = false, modified = false;
    int ret = 0;

    s->cache_discards = true;
    if (!active) {
        l1 = so_mem(s, (size_t)l1_size * 8);
        if (!l1)
            return -QCOW2_SNAPOP_ENOMEM;
        if (l1_size) {
            ret = s->io->pread(s->io->opaque, l1_off, l1, (size_t)l1_size * 8);
            if (ret < 0)
                goto out;
        }
        for (i = 0; i < l1_size; i++)
            l1[i] = be_ld64((const uint8_t *)&l1[i]);
    }
    for (i = 0; i < l1_size; i++) {
        uint64_t old = l1[i], rc, j;

        l2_off = l1[i] & QCOW2_L1E_OFFSET_MASK;
        modified = false;

        if (!old)
            continue;
        if (l2_off & (s->cs - 1)) {
            ret = -QCOW2_SNAPOP_EIO; /* QEMU marks the image corrupt */
            goto out;
        }
        ret = s->io->pread(s->io->opaque, l2_off, s->l2, (size_t)s->cs);
        if (ret < 0)
            goto out;
        for (j = 0; j < n; j++) {
            uint8_t *p = s->l2 + j * s->esize;
            uint64_t e = be_ld64(p), ne = e;

            ret = update_entry(s, &ne, addend);
            if (ret < 0)
                goto out_l2;
            if (ne != e) {
                st_be64(p, ne);
                modified = true;
            }
        }
        if (addend) {
            ret = qcow2_alloc_update_discard(&s->a, l2_off, s->cs, 1, addend < 0, true);
            if (ret < 0)
                goto out_l2;
        }
        ret = qcow2_alloc_get_refcount(&s->a, l2_off >> s->img->cluster_bits, &rc);
        if (ret < 0)
            goto out;
        /* A table whose last reference went is dropped from QEMU's cache unwritten. */
        if (modified && rc > 0) {
            ret = meta_write(s, l2_off, s->l2, (size_t)s->cs, false);
            if (ret < 0)
                goto out;
        }
        if (rc == 1)
            l2_off |= QCOW2_OFLAG_COPIED;
        if (l2_off != old) {
            l1[i] = l2_off;
            l1_modified = true;
        }
    }
    ret = so_sync(s);
    s->cache_discards = false;
    process_discards(s);
    if (ret == 0 && addend >= 0 && l1_modified && l1_size) {
        uint8_t *raw = so_mem(s, (size_t)l1_size * 8);

        if (!raw) {
            ret = -QCOW2_SNAPOP_ENOMEM;
            goto out;
        }
        for (i = 0; i < l1_size; i++)
            st_be64(raw + i * 8, l1[i]);
        ret = meta_write(s, l1_off, raw, (size_t)l1_size * 8, true);
        so_free(s, raw);
    }
    goto out;
out_l2:
    /*
     * A refcount update failed inside an L2 table (e.g. a narrow refcount
     * overflowing): the entries updated before it are in QEMU's L2 cache,
     * marked dirty, and reach the file when it flushes (after the refcount
     * blocks they depend on), so their COPIED flags match the raised
     * refcounts and the failure leaves leaks only.
     */
    if (modified)
        (void)meta_write(s, l2_off, s->l2, (size_t)s->cs, false);
out:
    if (s->cache_discards) {
        s->cache_discards = false;
        process_discards(s);
    }
    if (!active)
        so_free(s, l1);
    return ret;
}

/* --- qcow2_write_snapshots() --- */

/*
 * Write the table of n entries (list[i], or for i == skip none: delete)
 * to new clusters, point the header at it, free the old one.
 */
static int write_snapshots(struct so *s, const struct qcow2_snapop_entry *list, uint32_t n,
                           uint32_t skip, const struct qcow2_snapop_entry *extra)
{
    const struct qcow2_snapop_image *img = s->img;
    uint64_t size = 0, off, count = 0;
    uint8_t *buf = NULL, hdr[12];
    int64_t table;
    uint32_t i;
    int ret;

    for (i = 0; i <= n; i++) {
        const struct qcow2_snapop_entry *e = i < n ? &list[i] : extra;

        if ((i < n && i == skip) || !e)
            continue;
        size = ((size + 7) & ~UINT64_C(7)) + qcow2_snapshot_entry_len(&e->sn);
        count++;
        if (size > SO_MAX_TABLE)
            return -QCOW2_SNAPOP_EFBIG;
    }
    table = alloc_clusters(s, size);
    if (table < 0)
        return (int)table;
    ret = so_sync(s);
    if (ret < 0)
        return ret;

    buf = so_mem(s, QCOW2_SNAPSHOT_HDR_LEN + QCOW2_SNAPSHOT_MAX_EXTRA + 2 * 65536);
    if (!buf)
        return -QCOW2_SNAPOP_ENOMEM;
    off = (uint64_t)table;
    for (i = 0; i <= n; i++) {
        const struct qcow2_snapop_entry *e = i < n ? &list[i] : extra;
        size_t len;

        if ((i < n && i == skip) || !e)
            continue;
        off = (off + 7) & ~UINT64_C(7);
        len = qcow2_snapshot_write_entry(&e->sn, e->unknown, buf);
        /* The padding between entries is left as it is, as QEMU leaves it. */
        ret = s->io->pwrite(s->io->opaque, off, buf, len);
        if (ret < 0)
            goto out;
        off += len;
    }
    ret = so_sync(s);
    if (ret < 0)
        goto out;
    hdr[0] = (uint8_t)(count >> 24);
    hdr[1] = (uint8_t)(count >> 16);
    hdr[2] = (uint8_t)(count >> 8);
    hdr[3] = (uint8_t)count;
    st_be64(hdr + 4, (uint64_t)table);
    ret = meta_write(s, SO_HDR_NB_SNAPSHOTS, hdr, sizeof(hdr), true);
    if (ret < 0)
        goto out;
    /* QEMU only prints a failure to free (a leak at worst). */
    (void)free_now(s, img->snapshots_offset, img->snapshots_size);
out:
    so_free(s, buf);
    return ret;
}

/* --- The operations --- */

/* strtoul(id, NULL, 10) on a C string of len bytes (find_new_snapshot_id). */
static uint64_t id_value(const uint8_t *p, size_t len)
{
    size_t i = 0;
    bool neg = false;
    uint64_t v = 0;
    bool ovf = false;

    while (i < len && (p[i] == ' ' || (p[i] >= '\t' && p[i] <= '\r')))
        i++;
    if (i < len && (p[i] == '+' || p[i] == '-'))
        neg = p[i++] == '-';
    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(p[i] - '0');

        if (v > (UINT64_MAX - d) / 10)
            ovf = true;
        else
            v = v * 10 + d;
    }
    if (ovf)
        return UINT64_MAX;
    return neg ? (uint64_t)0 - v : v;
}

int qcow2_snapop_create(const struct qcow2_snapop_image *img, const struct qcow2_snapop_io *io,
                        const uint8_t *name, size_t name_len, uint32_t date_sec, uint32_t date_nsec)
{
    struct qcow2_snapop_entry e;
    uint64_t id_max = 0, id, i;
    uint8_t id_str[24], *raw = NULL;
    size_t id_len = 0;
    struct so s;
    int64_t l1_off;
    int ret;

    if (img->nb_snapshots >= SO_MAX_SNAPSHOTS)
        return -QCOW2_SNAPOP_EFBIG;
    ret = so_init(&s, img, io);
    if (ret < 0)
        return so_finish(&s, ret);

    for (i = 0; i < img->nb_snapshots; i++) {
        id = id_value(img->snapshots[i].sn.id, img->snapshots[i].sn.id_len);
        if (id > id_max)
            id_max = id;
    }
    id = id_max + 1;
    do {
        uint8_t t = (uint8_t)('0' + id % 10);

        memmove(id_str + 1, id_str, id_len);
        id_str[0] = t;
        id_len++;
        id /= 10;
    } while (id);

    memset(&e, 0, sizeof(e));
    e.sn.id = id_str;
    e.sn.id_len = id_len;
    e.sn.name = name;
    e.sn.name_len = name_len;
    e.sn.disk_size = img->disk_size & ~UINT64_C(511);
    e.sn.date_sec = date_sec;
    e.sn.date_nsec = date_nsec;
    e.sn.extra_data_size = QCOW2_SNAPSHOT_KNOWN_EXTRA;
    e.sn.l1_size = img->l1_size;

    /* The copy of the active L1 table, as it is now (COPIED flags included). */
    l1_off = alloc_clusters(&s, (uint64_t)img->l1_size * 8);
    if (l1_off < 0)
        return so_finish(&s, (int)l1_off);
    e.sn.l1_table_offset = (uint64_t)l1_off;
    raw = so_mem(&s, (size_t)img->l1_size * 8);
    if (!raw)
        return so_finish(&s, -QCOW2_SNAPOP_ENOMEM);
    for (i = 0; i < img->l1_size; i++)
        st_be64(raw + i * 8, s.l1[i]);
    ret = meta_write(&s, (uint64_t)l1_off, raw, (size_t)img->l1_size * 8, false);
    so_free(&s, raw);
    if (ret < 0)
        return so_finish(&s, ret);

    ret = update_snapshot_refcount(&s, img->l1_table_offset, img->l1_size, true, 1);
    if (ret < 0)
        return so_finish(&s, ret);
    ret = write_snapshots(&s, img->snapshots, img->nb_snapshots, UINT32_MAX, &e);
    return so_finish(&s, ret);
}

int qcow2_snapop_rewrite(const struct qcow2_snapop_image *img, const struct qcow2_snapop_io *io)
{
    struct so s;
    int ret;

    ret = so_init(&s, img, io);
    if (ret == 0)
        ret = write_snapshots(&s, img->snapshots, img->nb_snapshots, UINT32_MAX, NULL);
    return so_finish(&s, ret);
}

int qcow2_snapop_delete(const struct qcow2_snapop_image *img, const struct qcow2_snapop_io *io,
                        uint32_t index, int *stage)
{
    const struct qcow2_snapshot *sn = &img->snapshots[index].sn;
    struct so s;
    int ret;

    *stage = QCOW2_SNAPOP_STAGE_NONE;
    ret = so_init(&s, img, io);
    if (ret < 0)
        return so_finish(&s, ret);
    ret = validate_l1(s.cs, sn, stage);
    if (ret < 0)
        return so_finish(&s, ret);

    ret = write_snapshots(&s, img->snapshots, img->nb_snapshots, index, NULL);
    if (ret < 0) {
        *stage = QCOW2_SNAPOP_STAGE_REMOVE;
        return so_finish(&s, ret);
    }
    ret = update_snapshot_refcount(&s, sn->l1_table_offset, sn->l1_size, false, -1);
    if (ret < 0) {
        *stage = QCOW2_SNAPOP_STAGE_FREE;
        return so_finish(&s, ret);
    }
    (void)free_now(&s, sn->l1_table_offset, (uint64_t)sn->l1_size * 8);
    ret = update_snapshot_refcount(&s, img->l1_table_offset, img->l1_size, true, 0);
    if (ret < 0)
        *stage = QCOW2_SNAPOP_STAGE_UPDATE;
    return so_finish(&s, ret);
}

/*
 * qcow2_grow_l1_table(exact) for the active table: a new table of
 * new_size entries (the old ones, then zeros) in freshly allocated
 * clusters, written and flushed, then the header's l1_size and
 * l1_table_offset, then the old table freed (QCOW2_DISCARD_OTHER: not
 * punched).  *l1_off and *l1_size follow; s->l1 becomes the new table.
 */
static int grow_active_l1(struct so *s, uint32_t new_size, uint64_t *l1_off, uint32_t *l1_size)
{
    uint64_t *nl1 = NULL;
    uint8_t *raw = NULL, hdr[12];
    int64_t off;
    uint64_t i;
    int ret;

    if ((uint64_t)new_size * 8 > SO_MAX_L1_BYTES)
        return -QCOW2_SNAPOP_EFBIG;
    nl1 = so_mem(s, (size_t)new_size * 8);
    raw = so_mem(s, (size_t)new_size * 8);
    if (!nl1 || !raw) {
        ret = -QCOW2_SNAPOP_ENOMEM;
        goto out;
    }
    memset(nl1, 0, (size_t)new_size * 8);
    memset(raw, 0, (size_t)new_size * 8);
    for (i = 0; i < *l1_size; i++)
        nl1[i] = s->l1[i];
    off = alloc_clusters(s, (uint64_t)new_size * 8);
    if (off < 0) {
        ret = (int)off;
        goto out;
    }
    for (i = 0; i < new_size; i++)
        st_be64(raw + i * 8, nl1[i]);
    ret = meta_write(s, (uint64_t)off, raw, (size_t)new_size * 8, true);
    if (ret == 0) {
        st_be64(hdr, (uint64_t)new_size << 32 | (uint64_t)off >> 32);
        st_be64(hdr + 4, (uint64_t)off);
        ret = meta_write(s, SO_HDR_L1_SIZE, hdr, sizeof(hdr), true);
    }
    if (ret < 0) {
        (void)qcow2_alloc_free(&s->a, (uint64_t)off, (uint64_t)new_size * 8, false);
        goto out;
    }
    (void)qcow2_alloc_free(&s->a, *l1_off, (uint64_t)*l1_size * 8, false);
    so_free(s, s->l1);
    s->l1 = nl1;
    nl1 = NULL;
    *l1_off = (uint64_t)off;
    *l1_size = new_size;
out:
    so_free(s, nl1);
    so_free(s, raw);
    return ret;
}

int qcow2_snapop_apply(const struct qcow2_snapop_image *img, const struct qcow2_snapop_io *io,
                       uint32_t index, int *stage)
{
    const struct qcow2_snapshot *sn = &img->snapshots[index].sn;
    uint8_t *sn_l1 = NULL;
    uint64_t i, cur_bytes, l1_off = img->l1_table_offset;
    uint32_t l1_size = img->l1_size;
    struct so s;
    int ret;

    *stage = QCOW2_SNAPOP_STAGE_NONE;
    ret = so_init(&s, img, io);
    if (ret < 0)
        return so_finish(&s, ret);
    ret = validate_l1(s.cs, sn, stage);
    if (ret < 0)
        return so_finish(&s, ret);
    /* The caller truncated the image to the snapshot's size first (guest/plan_snapshot.c). */
    if (sn->disk_size != (img->disk_size & ~UINT64_C(511)))
        return so_finish(&s, -QCOW2_SNAPOP_EINVAL);
    /* The active table must hold the snapshot's whole (qcow2_grow_l1_table, exact). */
    if (sn->l1_size > l1_size) {
        ret = grow_active_l1(&s, sn->l1_size, &l1_off, &l1_size);
        if (ret < 0)
            return so_finish(&s, ret);
    }
    cur_bytes = (uint64_t)l1_size * 8;

    /* The snapshot's table as it is before its references rise, padded with zeros. */
    sn_l1 = so_mem(&s, (size_t)cur_bytes);
    if (!sn_l1)
        return so_finish(&s, -QCOW2_SNAPOP_ENOMEM);
    if (sn->l1_size) {
        ret = io->pread(io->opaque, sn->l1_table_offset, sn_l1, (size_t)sn->l1_size * 8);
        if (ret < 0)
            goto out;
    }
    ret = update_snapshot_refcount(&s, sn->l1_table_offset, sn->l1_size, false, 1);
    if (ret < 0)
        goto out;
    ret = meta_write(&s, l1_off, sn_l1, (size_t)cur_bytes, true);
    if (ret < 0)
        goto out;
    /* The old active table's references go; then the in-memory table follows the disk. */
    ret = update_snapshot_refcount(&s, l1_off, l1_size, true, -1);
    for (i = 0; i < l1_size; i++)
        s.l1[i] = be_ld64(sn_l1 + i * 8);
    if (ret < 0)
        goto out;
    ret = update_snapshot_refcount(&s, l1_off, l1_size, true, 0);
out:
    so_free(&s, sn_l1);
    return so_finish(&s, ret);
}

int qcow2_snapop_apply_check(const struct qcow2_snapop_image *img, uint32_t index,
                             uint32_t l1_after, int *stage)
{
    const struct qcow2_snapshot *sn = &img->snapshots[index].sn;
    int ret;

    *stage = QCOW2_SNAPOP_STAGE_NONE;
    (void)l1_after; /* a longer table grows the active one (qcow2_snapop_apply) */
    ret = validate_l1(UINT64_C(1) << img->cluster_bits, sn, stage);
    return ret;
}

int64_t qcow2_snapop_find(const struct qcow2_snapop_image *img, const uint8_t *name,
                          size_t name_len, bool by_id)
{
    uint32_t i;

    if (by_id) {
        for (i = 0; i < img->nb_snapshots; i++) {
            const struct qcow2_snapshot *sn = &img->snapshots[i].sn;

            if (sn->id_len == name_len && !memcmp(sn->id, name, name_len))
                return i;
        }
    }
    for (i = 0; i < img->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &img->snapshots[i].sn;

        if (sn->name_len == name_len && !memcmp(sn->name, name, name_len))
            return i;
    }
    return -1;
}
