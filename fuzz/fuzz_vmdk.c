/*
 * Fuzz target: formats/vmdk over one file held in memory: a sparse
 * extent's header checks (vmdk_open_vmdk4, or vmdk_open_vmfs for a VMDK3
 * "COWD" file, vmdk_open_sesparse for a seSparse one), the descriptor's values, CIDs,
 * parent name and extent lines (the text at sector 1, or the whole input
 * when it is a descriptor file), and for an extent that opens, the grain
 * lookup of every grain (bounded) with its grain directory read from the
 * input, and the grain marker of each allocated grain.  Lookups must stay
 * in their tables; a grain's data must lie in its two-grain buffer.
 * AFL++ persistent mode by default; with -DFUZZ_STANDALONE it runs every
 * file named on the command line (or stdin) once and prints the result.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_read.h"
#include "vmdk/vmdk.h"

#define MAX_INPUT (16u << 20)
#define L1_MAX    (1u << 20)
#define STEPS_MAX 65536
#define GRAIN_MAX (1u << 20) /* compressed grains the harness looks at: up to 1 MiB */

struct mem {
    const uint8_t *p;
    size_t len;
    size_t l2_len; /* the extent's table size: l2_size * entry_size */
    uint8_t l2[VMDK_L2_MAX_BYTES];
};

static int mem_pread(void *opaque, uint64_t off, void *buf, size_t len)
{
    const struct mem *m = opaque;

    return fuzz_read(m->p, m->len, off, buf, len);
}

static int load_l2(void *opaque, uint32_t sector, const uint8_t **l2)
{
    struct mem *m = opaque;

    if (mem_pread(m, (uint64_t)sector * 512, m->l2, m->l2_len) < 0)
        return -1;
    *l2 = m->l2;
    return 0;
}

static void descriptor(const char *desc)
{
    static char buf[VMDK_PARENT_MAX + 1];
    struct vmdk_extent_line l;
    const char *p = desc, *bad;
    size_t bad_len;
    uint32_t cid;
    int n = 0, ret;

    (void)vmdk_desc_value(desc, "createType", buf, 128);
    (void)vmdk_desc_cid(desc, false, &cid);
    (void)vmdk_desc_cid(desc, true, &cid);
    (void)vmdk_desc_parent(desc, buf);
    while ((ret = vmdk_desc_next_extent(&p, &l, &bad, &bad_len)) == 1 && n++ < 1000) {
        if (l.sectors <= 0 || strlen(l.fname) > 511 || strlen(l.type) > 10)
            abort();
#ifdef FUZZ_STANDALONE
        printf("extent %s %lld \"%s\" %lld\n", l.type, (long long)l.sectors, l.fname,
               (long long)l.flat_offset);
#endif
    }
    if (ret < 0 && (bad < desc || bad + bad_len > desc + strlen(desc)))
        abort();
}

static int run(const uint8_t *data, size_t len)
{
    static uint64_t l1[L1_MAX]; /* uint32_t entries, or uint64_t for seSparse */
    static char desc[VMDK_DESC_SIZE + 1];
    static uint8_t grain[2 * GRAIN_MAX];
    static struct mem m;
    struct vmdk_reader r = {mem_pread, &m};
    struct vmdk_extent e;
    uint64_t desc_offset = 0, arg = 0, args[4], off, co;
    static const uint8_t se_magic[8] = {0xbe, 0xba, 0xfe, 0xca, 0, 0, 0, 0};
    bool vmdk4 = len >= 4 && !memcmp(data, "KDMV", 4);
    int ret, steps = 0;

    m.p = data;
    m.len = len;
    memset(desc, 0, sizeof(desc));
    if (len >= 4 && !memcmp(data, "COWD", 4)) {
        ret = vmdk_open_vmfs(&r, &e);
    } else if (len >= 8 && !memcmp(data, se_magic, 8)) {
        ret = vmdk_open_sesparse(&r, false, &e, args);
    } else if (!vmdk4) {
        mem_pread(&m, 0, desc, VMDK_DESC_SIZE);
        descriptor(desc);
        return 0;
    } else {
        mem_pread(&m, 512, desc, VMDK_DESC_SIZE);
        descriptor(desc);
        ret = vmdk_open_vmdk4(&r, len, false, &e, &desc_offset, &arg);
    }
#ifdef FUZZ_STANDALONE
    printf("open: %d (%llu)\n", ret, (unsigned long long)arg);
#endif
    if (ret != 0 || e.l1_size > L1_MAX)
        return 0;
    /* VMDK3 grains may cover 0 sectors (vmdk_cluster() then answers an error). */
    if (e.l2_size == 0 || e.l2_size > VMDK_L2_MAX || e.cluster_sectors > 0x200000 ||
        (vmdk4 && e.cluster_sectors == 0) || (e.entry_size != 4 && e.entry_size != 8) ||
        e.sesparse != (e.entry_size == 8))
        abort();
    m.l2_len = (size_t)e.l2_size * e.entry_size;
    for (uint32_t i = 0; i < e.l1_size; i++) {
        uint8_t b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        uint64_t v;

        mem_pread(&m, e.l1_table_offset + (uint64_t)e.entry_size * i, b, e.entry_size);
        v = (uint64_t)b[0] | (uint64_t)b[1] << 8 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 24 |
            (uint64_t)b[4] << 32 | (uint64_t)b[5] << 40 | (uint64_t)b[6] << 48 |
            (uint64_t)b[7] << 56;
        if (e.sesparse)
            l1[i] = v;
        else
            ((uint32_t *)l1)[i] = (uint32_t)v;
    }
    e.end_sector = e.sectors;
    for (off = 0; off / 512 < e.sectors && steps < STEPS_MAX;
         off += e.cluster_sectors * 512, steps++) {
        ret = vmdk_cluster(&e, l1, off, load_l2, &m, &co);
        if (ret == VMDK_CLUSTER_OK && e.compressed && e.cluster_sectors * 512 <= GRAIN_MAX) {
            size_t blen = (size_t)e.cluster_sectors * 1024, dlen;
            const uint8_t *d;

            mem_pread(&m, co, grain, blen);
            if (vmdk_grain_data(&e, grain, blen, &d, &dlen) == 0 &&
                (d < grain || d + dlen > grain + blen))
                abort();
        }
        if (vmdk_offset_in_cluster(&e, off) != 0)
            abort();
    }
    return 0;
}

#include "fuzz_main.h"
