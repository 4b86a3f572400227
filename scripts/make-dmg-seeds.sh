#!/bin/sh
# make-dmg-seeds.sh DIR - seed corpus for fuzz/fuzz_dmg.c.
#
# qemu-img cannot create dmg images: small ones are built field by field
# (as parity/test_dmg_parity.py builds them): a koly trailer with a
# resource fork or an XML plist, one or two mish blocks, zero, raw,
# ignore, zlib, bzip2, lzfse, comment and last-entry chunks.  Nothing is
# committed; scripts/fuzz.sh and the fuzz_dmg_seeds test run it.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
python3 - "$1" <<'PY'
import base64, struct, sys, zlib
out = sys.argv[1]


def mish(entries, first=0, data_offset=0):
    h = bytearray(204)
    h[0:4] = b"mish"
    struct.pack_into(">IQQQ", h, 4, 1, first, sum(e[2] for e in entries), data_offset)
    return bytes(h) + b"".join(struct.pack(">IIQQQQ", t, 0, s, c, o, ln) for (t, s, c, o, ln) in entries)


def koly(rsrc=(0, 0), plist=(0, 0), sectors=0):
    k = bytearray(512)
    k[0:4] = b"koly"
    struct.pack_into(">QQ", k, 0x28, *rsrc)
    struct.pack_into(">QQ", k, 0xD8, *plist)
    struct.pack_into(">Q", k, 0x1EC, sectors)
    return bytes(k)


def rsrc(data, mishes, sectors):
    res = b"".join(struct.pack(">I", len(m)) + m for m in mishes)
    hdr = bytearray(256)
    struct.pack_into(">I", hdr, 0, 256)
    struct.pack_into(">I", hdr, 8, len(res))
    fork = bytes(hdr) + res
    return data + fork + koly(rsrc=(len(data), len(fork)), sectors=sectors)


def plist(data, mishes, sectors):
    x = b"<plist><array>" + b"".join(b"<dict><data>\n" + base64.encodebytes(m) + b"</data></dict>"
                                     for m in mishes) + b"</array></plist>\n"
    return data + x + koly(plist=(len(data), len(x)), sectors=sectors)


raw = bytes(range(256)) * 16
z = zlib.compress(b"\x22" * 8192)
data = raw + z
basic = [(1, 0, 8, 0, 4096), (0, 8, 8, 0, 0), (0x80000005, 16, 16, 4096, len(z)), (2, 32, 4, 0, 0),
         (0x7FFFFFFE, 36, 0, 0, 0), (0xFFFFFFFF, 36, 0, 0, 0)]
seeds = {
    "rsrc": rsrc(data, [mish(basic)], 36),
    "plist": plist(data, [mish(basic)], 36),
    "two-mish": rsrc(data, [mish(basic[:1]), mish([(0x80000005, 0, 16, 0, len(z))], 8, 4096)], 24),
    "bz2-lzfse": rsrc(raw, [mish([(1, 0, 8, 0, 4096), (0x80000006, 8, 8, 0, 10), (0x80000007, 16, 8, 0, 10),
                                  (0x1234, 24, 8, 0, 0)])], 32),
    "odd-size": rsrc(data, [mish(basic)], 36) + b"\1\2\3",
}
for name, data in seeds.items():
    open(f"{out}/{name}", "wb").write(data)
PY
