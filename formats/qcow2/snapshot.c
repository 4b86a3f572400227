/*
 * The snapshot table walk of qcow2_do_read_snapshots() (repair off), the
 * way "qemu-img info" runs it at open.  Entry layout: qcow2.txt,
 * "Snapshots": a 40-byte header, extra data, id, name, 8-byte aligned.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "be.h"
#include "instar/ovf.h"
#include "snapshot.h"

/* A read QEMU would make: refused past BDRV_MAX_LENGTH, else the caller's. */
static int rd_read(const struct qcow2_reader *rd, uint64_t off, void *buf, size_t len)
{
    /* QEMU checks the range even of an empty read. */
    if (!qcow2_read_ok(off, len))
        return -QCOW2_ERR_SNAP_READ;
    if (len == 0)
        return 0;
    return rd->pread(rd->opaque, off, buf, len);
}

static size_t cstrlen(const uint8_t *s, size_t n)
{
    const uint8_t *nul = memchr(s, 0, n);
    return nul ? (size_t)(nul - s) : n;
}

int qcow2_snapshots_parse(const struct qcow2_header *h, const struct qcow2_reader *rd,
                          uint8_t *scratch, qcow2_snapshot_fn visit, void *opaque,
                          struct qcow2_err_info *ei)
{
    /*
     * offset and table_length move together (the table is cluster
     * aligned), and the walk stops once table_length passes 64 MiB, so
     * offset stays below snapshots_offset + 64 MiB + one entry.
     */
    uint64_t offset = h->snapshots_offset;
    uint64_t table_length = 0;
    uint32_t i;
    int ret;

    memset(ei, 0, sizeof(ei->args) + sizeof(ei->s) + sizeof(ei->slen));
    for (i = 0; i < h->nb_snapshots; i++) {
        uint8_t hdr[QCOW2_SNAPSHOT_HDR_LEN];
        uint8_t extra[24];
        struct qcow2_snapshot sn;
        uint32_t known, id_size, name_size;

        table_length = (table_length + 7) & ~7ull;
        offset = (offset + 7) & ~7ull;
        ret = rd_read(rd, offset, hdr, sizeof(hdr));
        if (ret < 0)
            return ret;
        offset += sizeof(hdr);

        memset(&sn, 0, sizeof(sn));
        sn.l1_table_offset = be_ld64(hdr);
        sn.l1_size = be_ld32(hdr + 8);
        id_size = be_ld16(hdr + 12);
        name_size = be_ld16(hdr + 14);
        sn.date_sec = be_ld32(hdr + 16);
        sn.date_nsec = be_ld32(hdr + 20);
        sn.vm_clock_nsec = be_ld64(hdr + 24);
        sn.vm_state_size = be_ld32(hdr + 32);
        sn.extra_data_size = be_ld32(hdr + 36);

        if (sn.extra_data_size > QCOW2_SNAPSHOT_MAX_EXTRA) {
            ei->args[0] = i;
            return -QCOW2_ERR_SNAP_EXTRA_TOO_BIG;
        }

        /* Known extra data: vm_state_size_large, disk_size, icount. */
        known = sn.extra_data_size < sizeof(extra) ? sn.extra_data_size : sizeof(extra);
        memset(extra, 0, sizeof(extra));
        ret = rd_read(rd, offset, extra, known);
        if (ret < 0)
            return ret;
        offset += known;
        if (sn.extra_data_size >= 8)
            sn.vm_state_size = be_ld64(extra);
        sn.disk_size = sn.extra_data_size >= 16 ? be_ld64(extra + 8) : h->disk_size;
        sn.icount = sn.extra_data_size >= 24 ? be_ld64(extra + 16) : UINT64_MAX;

        if (sn.extra_data_size > sizeof(extra)) {
            /* QEMU keeps the unknown rest; reading it can only be refused. */
            uint64_t rest = sn.extra_data_size - sizeof(extra);
            sn.unknown_offset = offset;
            if (!qcow2_read_ok(offset, rest))
                return -QCOW2_ERR_SNAP_READ;
            offset += rest;
        }

        ret = rd_read(rd, offset, scratch, id_size);
        if (ret < 0)
            return ret;
        offset += id_size;
        ret = rd_read(rd, offset, scratch + 65536, name_size);
        if (ret < 0)
            return ret;
        offset += name_size;
        sn.end_offset = offset;
        sn.id = scratch;
        sn.id_len = cstrlen(scratch, id_size);
        sn.name = scratch + 65536;
        sn.name_len = cstrlen(scratch + 65536, name_size);

        table_length += QCOW2_SNAPSHOT_HDR_LEN + (uint64_t)sn.extra_data_size + id_size + name_size;
        if (table_length > QCOW2_SNAPSHOT_MAX_TABLE) {
            ei->args[0] = h->nb_snapshots - i;
            return -QCOW2_ERR_SNAP_TABLE_TOO_BIG;
        }

        if (visit) {
            ret = visit(opaque, i, &sn);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

static void snap_st16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void snap_st32(uint8_t *p, uint32_t v)
{
    snap_st16(p, (uint16_t)(v >> 16));
    snap_st16(p + 2, (uint16_t)v);
}

static void snap_st64(uint8_t *p, uint64_t v)
{
    snap_st32(p, (uint32_t)(v >> 32));
    snap_st32(p + 4, (uint32_t)v);
}

uint64_t qcow2_snapshot_entry_len(const struct qcow2_snapshot *sn)
{
    uint64_t extra = sn->extra_data_size > QCOW2_SNAPSHOT_KNOWN_EXTRA ? sn->extra_data_size
                                                                      : QCOW2_SNAPSHOT_KNOWN_EXTRA;

    return QCOW2_SNAPSHOT_HDR_LEN + extra + (uint64_t)sn->id_len + sn->name_len;
}

size_t qcow2_snapshot_write_entry(const struct qcow2_snapshot *sn, const uint8_t *unknown,
                                  uint8_t *buf)
{
    uint32_t extra = sn->extra_data_size > QCOW2_SNAPSHOT_KNOWN_EXTRA ? sn->extra_data_size
                                                                      : QCOW2_SNAPSHOT_KNOWN_EXTRA;
    size_t off = QCOW2_SNAPSHOT_HDR_LEN;

    memset(buf, 0, QCOW2_SNAPSHOT_HDR_LEN + QCOW2_SNAPSHOT_KNOWN_EXTRA);
    snap_st64(buf, sn->l1_table_offset);
    snap_st32(buf + 8, sn->l1_size);
    snap_st16(buf + 12, (uint16_t)sn->id_len);
    snap_st16(buf + 14, (uint16_t)sn->name_len);
    snap_st32(buf + 16, sn->date_sec);
    snap_st32(buf + 20, sn->date_nsec);
    snap_st64(buf + 24, sn->vm_clock_nsec);
    if (sn->vm_state_size <= 0xffffffffull)
        snap_st32(buf + 32, (uint32_t)sn->vm_state_size);
    snap_st32(buf + 36, extra);
    snap_st64(buf + off, sn->vm_state_size);
    snap_st64(buf + off + 8, sn->disk_size);
    snap_st64(buf + off + 16, sn->icount);
    off += QCOW2_SNAPSHOT_KNOWN_EXTRA;
    if (extra > QCOW2_SNAPSHOT_KNOWN_EXTRA) {
        size_t n = extra - QCOW2_SNAPSHOT_KNOWN_EXTRA;

        if (unknown)
            memcpy(buf + off, unknown, n);
        else
            memset(buf + off, 0, n);
        off += n;
    }
    if (sn->id_len)
        memcpy(buf + off, sn->id, sn->id_len);
    off += sn->id_len;
    if (sn->name_len)
        memcpy(buf + off, sn->name, sn->name_len);
    off += sn->name_len;
    return off;
}
