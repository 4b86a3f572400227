/*
 * Format probing: every probe of QEMU 7.2's built-in format drivers, with
 * its score.  bdrv_probe_all() keeps the first driver with the highest
 * score in its driver list; where two probes can both match (vdi's
 * signature sits at byte 64, under other formats' headers; cloop and dmg
 * both score 2) the order below is the one qemu-img 7.2 shows:
 * parallels, qed, vdi, then the rest; dmg before cloop.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qcow2/be.h"
#include "probe.h"

struct probe_buf {
    uint8_t b[PROBE_BUF_SIZE];
};

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* strcmp(field, lit) == 0 for a field inside the buffer: lit and its NUL. */
static bool field_is(const uint8_t *p, const char *lit)
{
    return memcmp(p, lit, strlen(lit) + 1) == 0;
}

static int probe_parallels(const uint8_t *b)
{
    return (!memcmp(b, "WithoutFreeSpace", 16) || !memcmp(b, "WithouFreSpacExt", 16)) &&
                   le32(b + 16) == 2
               ? 100
               : 0;
}

static int probe_qed(const uint8_t *b)
{
    return !memcmp(b, "QED\0", 4) ? 100 : 0;
}

static int probe_vdi(const uint8_t *b)
{
    return le32(b + 64) == 0xbeda107fu ? 100 : 0;
}

static int probe_qcow2(const uint8_t *b)
{
    return be_ld32(b) == 0x514649fbu && be_ld32(b + 4) >= 2 ? 100 : 0;
}

static int probe_qcow(const uint8_t *b)
{
    return be_ld32(b) == 0x514649fbu && be_ld32(b + 4) == 1 ? 100 : 0;
}

static int probe_vpc(const uint8_t *b)
{
    return !memcmp(b, "conectix", 8) ? 100 : 0;
}

static int probe_vhdx(const uint8_t *b)
{
    return !memcmp(b, "vhdxfile", 8) ? 100 : 0;
}

static int probe_bochs(const uint8_t *b)
{
    uint32_t v = le32(b + 64);

    return field_is(b, "Bochs Virtual HD Image") && field_is(b + 32, "Redolog") &&
                   field_is(b + 48, "Growing") && (v == 0x00020000u || v == 0x00010000u)
               ? 100
               : 0;
}

static int probe_luks(const uint8_t *b)
{
    return !memcmp(b, "LUKS\xba\xbe", 6) && b[6] == 0 && b[7] == 1 ? 100 : 0;
}

/* vmdk_probe(): a sparse extent magic, or a text descriptor. */
static int probe_vmdk(const uint8_t *b)
{
    const uint8_t *p = b, *end = b + PROBE_BUF_SIZE;
    static const char *const v[] = {"version=1\n", "version=2\n", "version=3\n"};
    static const char *const vr[] = {"version=1\r\n", "version=2\r\n", "version=3\r\n"};
    int i;

    if (be_ld32(b) == 0x434f5744u /* COWD */ || be_ld32(b) == 0x4b444d56u /* KDMV */)
        return 100;
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n')
                p++;
            p++;
            continue;
        }
        if (*p == ' ') {
            while (p < end && *p == ' ')
                p++;
            if (p < end && *p == '\r')
                p++;
            if (p == end || *p != '\n')
                return 0;
            p++;
            continue;
        }
        for (i = 0; i < 3; i++) {
            if (end - p >= 10 && !memcmp(p, v[i], 10))
                return 100;
        }
        for (i = 0; i < 3; i++) {
            if (end - p >= 11 && !memcmp(p, vr[i], 11))
                return 100;
        }
        return 0;
    }
    return 0;
}

static int probe_dmg(const char *filename)
{
    size_t n;

    if (!filename)
        return 0;
    n = strlen(filename);
    return n > 4 && !strcmp(filename + n - 4, ".dmg") ? 2 : 0;
}

static int probe_cloop(const uint8_t *b)
{
    static const char magic[] = "#!/bin/sh\n"
                                "#V2.0 Format\n"
                                "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";
    return !memcmp(b, magic, sizeof(magic) - 1) ? 2 : 0;
}

const char *probe_format(const uint8_t *buf, size_t len, uint64_t file_size, const char *filename)
{
    struct probe_buf pb;
    const uint8_t *b = pb.b;
    struct {
        const char *name;
        int score;
    } d[] = {
        {"parallels", 0}, {"qed", 0},   {"vdi", 0},  {"qcow2", 0}, {"qcow", 0},
        {"vpc", 0},       {"vhdx", 0},  {"vmdk", 0}, {"bochs", 0}, {"luks", 0},
        {"dmg", 0},       {"cloop", 0}, {"raw", 1},
    };
    const char *best = "raw";
    int best_score = 0;
    size_t i;

    if (file_size == 0)
        return "raw";
    memset(pb.b, 0, sizeof(pb.b));
    memcpy(pb.b, buf, len < sizeof(pb.b) ? len : sizeof(pb.b));

    d[0].score = probe_parallels(b);
    d[1].score = probe_qed(b);
    d[2].score = probe_vdi(b);
    d[3].score = probe_qcow2(b);
    d[4].score = probe_qcow(b);
    d[5].score = probe_vpc(b);
    d[6].score = probe_vhdx(b);
    d[7].score = probe_vmdk(b);
    d[8].score = probe_bochs(b);
    d[9].score = probe_luks(b);
    d[10].score = probe_dmg(filename);
    d[11].score = probe_cloop(b);
    for (i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        if (d[i].score > best_score) {
            best_score = d[i].score;
            best = d[i].name;
        }
    }
    return best;
}
