#!/bin/sh
# make-bochs-seeds.sh DIR - seed corpus for fuzz/fuzz_bochs.c.
#
# qemu-img cannot create bochs images: small ones are built field by field
# (as parity/test_bochs_parity.py builds them): versions 1 and 2, empty and
# with extents (sparse sector bitmaps, extents out of order), a large
# extent size, and a header larger than 512 bytes.  Nothing is committed;
# scripts/fuzz.sh and the fuzz_bochs_seeds test run it.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
python3 - "$1" <<'PY'
import struct, sys
out = sys.argv[1]
U = 0xFFFFFFFF


def image(disk, extent=4096, bitmap=512, version=0x20000, extents=(), pad=0, catalog=None):
    n = catalog if catalog is not None else max(1, -(-disk // extent))
    cat, body = [U] * n, b""
    for k, (idx, bm, fill) in enumerate(extents):
        cat[idx] = k
        body += bm.ljust(-(-bitmap // 512) * 512, b"\0") + bytes([fill]) * extent
    h = bytearray(512)
    h[0:22] = b"Bochs Virtual HD Image"
    h[32:39] = b"Redolog"
    h[48:55] = b"Growing"
    struct.pack_into("<IIIII", h, 64, version, 512 + pad, n, bitmap, extent)
    struct.pack_into("<Q", h, 84 if version == 0x10000 else 88, disk)
    return bytes(h) + b"\0" * pad + struct.pack(f"<{n}I", *cat) + body


seeds = {
    "empty": image(1 << 20),
    "v1": image(256 << 10, version=0x10000, extents=[(0, b"\xff" * 8, 0x11)]),
    "data": image(1 << 20, extents=[(3, b"\x05", 0x22), (1, b"\xff" * 8, 0x33)]),
    "extent-64k": image(1 << 20, extent=65536, bitmap=1024, extents=[(7, b"\x0f" * 128, 0x44)]),
    "header-1024": image(64 << 10, pad=512, extents=[(0, b"\x80", 0x55)]),
    "disk-0": image(0, catalog=0),
}
for name, data in seeds.items():
    open(f"{out}/{name}", "wb").write(data)
PY
