/*
 * Fuzz target: a LUKS1 header and its key material, held in memory as a
 * raw LUKS volume lays them out (header at 0, key material at the slots'
 * offsets), through qcow2_luks_parse() and then luks_unlock() with a fixed
 * passphrase (formats/luks: PBKDF2, key material decryption, AF merge,
 * digest check, over nettle).  Iteration counts are cut to at most 8 so an
 * execution stays short (the work bound itself is tested by
 * tests/integration/test_luks_hostile.py).  Seeds: scripts/make-luks-seeds.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_read.h"
#include "luks/unlock.h"
#include "qcow2/luks.h"

#define MAX_INPUT (1u << 20)

struct mem {
    const uint8_t *p;
    size_t len;
};

/* Reads past the end of the input return zeros, as QEMU's file reads do. */
static int mem_read(void *opaque, uint64_t off, uint8_t *buf, size_t len)
{
    const struct mem *m = opaque;

    return fuzz_read(m->p, m->len, off, buf, len);
}

static void cut_iterations(uint8_t *hdr)
{
    /* The master key digest's count (164), then each slot's (208 + 48 i + 4). */
    hdr[164] = hdr[165] = hdr[166] = 0;
    hdr[167] = (uint8_t)((hdr[167] & 7) + 1);
    for (unsigned i = 0; i < QCOW2_LUKS_NUM_SLOTS; i++) {
        uint8_t *it = hdr + 208 + 48 * i + 4;
        it[0] = it[1] = it[2] = 0;
        it[3] = (uint8_t)((it[3] & 7) + 1);
    }
}

static int run(const uint8_t *data, size_t len)
{
    static uint8_t work[LUKS_WORK_SIZE];
    static struct luks_volume vol;
    uint8_t hdr[QCOW2_LUKS_HDR_SIZE];
    struct qcow2_luks_info info;
    struct mem m = {data, len};
    uint64_t args[2] = {0, 0};
    int r;

    if (len < QCOW2_LUKS_HDR_SIZE)
        return 0;
    memcpy(hdr, data, sizeof(hdr));
    cut_iterations(hdr);
    r = qcow2_luks_parse(hdr, sizeof(hdr), &info);
#ifdef FUZZ_STANDALONE
    printf("parse: %d\n", r);
#endif
    if (r < 0)
        return 0;
    r = luks_unlock(hdr, &info, (const uint8_t *)"fuzz", 4, mem_read, &m, work, &vol, args);
#ifdef FUZZ_STANDALONE
    printf("unlock: %d\n", r);
#endif
    if (r == 0) {
        uint8_t sector[LUKS_SECTOR];

        memcpy(sector, work, sizeof(sector));
        if (luks_decrypt(&vol, 7, sector, sizeof(sector)) < 0 ||
            luks_encrypt(&vol, 7, sector, sizeof(sector)) < 0 ||
            memcmp(sector, work, sizeof(sector)))
            abort(); /* decrypt then encrypt must give the sector back */
    }
    return r == 0 || r == -LUKS_ERR_PASSWORD || r == -LUKS_ERR_UNSUPPORTED ? 0 : 1;
}

#include "fuzz_main.h"
