/*
 * probe_format: each driver's magic, the tie orders qemu-img 7.2 shows
 * (vdi's signature at byte 64 loses to parallels and qed and beats the
 * rest; dmg beats cloop), and real images made by qemu-img.
 */
#include "qcow2_test_util.h"

#include "probe.h"

static uint8_t b[4096];

static void le32(size_t off, uint32_t v)
{
    b[off] = v & 0xff, b[off + 1] = v >> 8 & 0xff, b[off + 2] = v >> 16 & 0xff,
    b[off + 3] = v >> 24;
}

static const char *probe(const void *head, size_t n, const char *name)
{
    memset(b, 0, sizeof(b));
    memcpy(b, head, n);
    return probe_format(b, sizeof(b), sizeof(b), name);
}

#define IS(got, want) cr_assert_str_eq(got, want)

Test(probe, magics)
{
    IS(probe("QFI\xfb\0\0\0\3", 8, NULL), "qcow2");
    IS(probe("QFI\xfb\0\0\0\2", 8, NULL), "qcow2");
    IS(probe("QFI\xfb\0\0\0\1", 8, NULL), "qcow");
    IS(probe("QFI\xfb\0\0\0\0", 8, NULL), "raw");
    IS(probe("KDMV", 4, NULL), "vmdk");
    IS(probe("COWD", 4, NULL), "vmdk");
    IS(probe("# Disk\n  \nversion=1\n", 20, NULL), "vmdk");
    IS(probe("# Disk\n\n  \nversion=1\n", 21, NULL), "raw");
    IS(probe("# Disk\n x\nversion=1\n", 20, NULL), "raw");
    IS(probe("version=2\r\n", 11, NULL), "vmdk");
    IS(probe("version=4\n", 10, NULL), "raw");
    IS(probe("conectix", 8, NULL), "vpc");
    IS(probe("vhdxfile", 8, NULL), "vhdx");
    IS(probe("QED\0", 4, NULL), "qed");
    IS(probe("WithoutFreeSpace\2\0\0\0", 20, NULL), "parallels");
    IS(probe("WithouFreSpacExt\2\0\0\0", 20, NULL), "parallels");
    IS(probe("WithoutFreeSpace\3\0\0\0", 20, NULL), "raw");
    IS(probe("LUKS\xba\xbe\0\1", 8, NULL), "luks");
    IS(probe("LUKS\xba\xbe\0\2", 8, NULL), "raw");
    IS(probe("", 0, NULL), "raw");
}

Test(probe, bochs)
{
    static uint8_t h[68];

    memcpy(h, "Bochs Virtual HD Image", 22);
    memcpy(h + 32, "Redolog", 7);
    memcpy(h + 48, "Growing", 7);
    h[66] = 2; /* version 0x00020000, little-endian */
    IS(probe(h, sizeof(h), NULL), "bochs");
    h[66] = 1;
    IS(probe(h, sizeof(h), NULL), "bochs");
    h[66] = 3;
    IS(probe(h, sizeof(h), NULL), "raw");
}

Test(probe, vdi_ties)
{
    static const char heads[][9] = {"QFI\xfb\0\0\0\3", "KDMV", "conectix", "vhdxfile",
                                    "LUKS\xba\xbe\0\1"};
    size_t i;

    for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        probe(heads[i], 8, NULL);
        le32(64, 0xbeda107f);
        IS(probe_format(b, sizeof(b), sizeof(b), NULL), "vdi");
    }
    probe("QED\0", 4, NULL);
    le32(64, 0xbeda107f);
    IS(probe_format(b, sizeof(b), sizeof(b), NULL), "qed");
    probe("WithoutFreeSpace\2\0\0\0", 20, NULL);
    le32(64, 0xbeda107f);
    IS(probe_format(b, sizeof(b), sizeof(b), NULL), "parallels");
}

Test(probe, dmg_and_cloop)
{
    static const char cloop[] = "#!/bin/sh\n#V2.0 Format\n"
                                "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

    IS(probe("", 0, "x.dmg"), "dmg");
    IS(probe("", 0, ".dmg"), "raw");
    IS(probe("", 0, "x.DMG"), "raw");
    IS(probe(cloop, sizeof(cloop) - 1, NULL), "cloop");
    IS(probe(cloop, sizeof(cloop) - 1, "c.dmg"), "dmg");
}

Test(probe, empty_and_short)
{
    /* An empty file is raw without probing; a short one reads zeros. */
    IS(probe_format((const uint8_t *)"QFI\xfb\0\0\0\3", 8, 0, NULL), "raw");
    IS(probe_format((const uint8_t *)"QFI\xfb\0\0\0\3", 8, 8, NULL), "qcow2");
}

Test(probe, real_images)
{
    static const struct {
        const char *fmt;
    } fmts[] = {{"qcow2"}, {"qcow"}, {"qed"},       {"vdi"}, {"vpc"},
                {"vhdx"},  {"vmdk"}, {"parallels"}, {"raw"}};
    size_t i;
    char cmd[256];

    for (i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        struct img im;

        snprintf(cmd, sizeof(cmd), "qemu-img create -f %s i 16M", fmts[i].fmt);
        im = img_make(cmd, "i");
        cr_assert_str_eq(probe_format(im.p, im.len, im.len, "i"), fmts[i].fmt);
    }
}
