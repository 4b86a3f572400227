#!/bin/sh
# make-cloop-seeds.sh DIR - seed corpus for fuzz/fuzz_cloop.c.
#
# qemu-img cannot create cloop images: small ones are built field by field
# (as parity/test_cloop_parity.py builds them): the V2.0 preamble, block
# sizes 512 B to 64 KiB, compressible and stored zlib blocks, a stream with
# trailing bytes, an empty image.  Nothing is committed; scripts/fuzz.sh
# and the fuzz_cloop_seeds test run it.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
python3 - "$1" <<'PY'
import struct, sys, zlib
out = sys.argv[1]
PRE = b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"


def cloop(bs, blocks):
    offs = [136 + 8 * (len(blocks) + 1)]
    for b in blocks:
        offs.append(offs[-1] + len(b))
    return PRE.ljust(128, b"\0") + struct.pack(">II", bs, len(blocks)) + struct.pack(f">{len(offs)}Q", *offs) \
        + b"".join(blocks)


def pat(seed, n):
    return bytes((seed * 7 + i * 13 + (i >> 9)) & 0xFF for i in range(n))


seeds = {
    "four-4k": cloop(4096, [zlib.compress(pat(i, 4096)) for i in range(4)]),
    "one-512": cloop(512, [zlib.compress(pat(9, 512))]),
    "zeros-64k": cloop(65536, [zlib.compress(b"\0" * 65536)] * 3),
    "stored": cloop(4096, [zlib.compress(pat(5, 4096), 0)]),
    "trailing": cloop(4096, [zlib.compress(pat(6, 4096)) + b"junk", zlib.compress(pat(7, 4096))]),
    "empty": cloop(4096, []),
}
for name, data in seeds.items():
    open(f"{out}/{name}", "wb").write(data)
PY
