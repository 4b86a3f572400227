#!/bin/sh
# make-parallels-seeds.sh DIR - seed corpus for fuzz/fuzz_parallels.c.
#
# Whole small Parallels images made with qemu-img and qemu-io (empty, with
# data in some clusters out of order, 512-byte and odd cluster sizes,
# converted from a qcow2), and a few built field by field: the old magic,
# the inuse flag, a cluster past the end of the file, and a format
# extension holding a dirty bitmap (its MD5 computed here).  Nothing is
# committed; scripts/fuzz.sh and the fuzz_parallels_seeds test run it.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

mk() { # mk NAME SIZE create-options...
    name=$1
    size=$2
    shift 2
    qemu-img create -q -f parallels "$@" "$out/$name" "$size"
}
mk empty 4M -o cluster_size=64k
mk zero 0 -o cluster_size=4k
mk c512 64k -o cluster_size=512
qemu-io -f parallels -c 'write -P 0x5a 10k 3k' -c 'write -P 0xa5 1k 1k' "$out/c512" >/dev/null
mk c1000 100k -o cluster_size=1000
qemu-io -f parallels -c 'write -P 0x49 5000 7000' "$out/c1000" >/dev/null
mk data 1M -o cluster_size=16k
qemu-io -f parallels -c 'write -P 1 512k 16k' -c 'write -P 2 0 40k' -c 'write -P 3 1000k 1k' "$out/data" >/dev/null
qemu-img create -q -f qcow2 "$tmp/src.qcow2" 2M
qemu-io -f qcow2 -c 'write -P 1 1M 4k' "$tmp/src.qcow2" >/dev/null
qemu-img convert -O parallels -o cluster_size=64k "$tmp/src.qcow2" "$out/converted" 2>/dev/null ||
    qemu-img dd -O parallels if="$tmp/src.qcow2" of="$out/converted" bs=64k
python3 - "$out" <<'PY'
import hashlib, struct, sys
out = sys.argv[1]
def hdr(magic=b"WithouFreSpacExt", tracks=8, bat=4, nb=None, inuse=0, data_off=1, ext_off=0):
    return magic + struct.pack("<IIIIIQIIIQ", 2, 16, 0, tracks, bat, bat * tracks if nb is None else nb,
                               inuse, data_off, 0, ext_off)
def img(name, b, size):
    open(f"{out}/{name}", "wb").write(b + bytes(max(0, size - len(b))))
img("v1", hdr(magic=b"WithoutFreeSpace") + struct.pack("<3I", 2, 0, 10), 18 * 512)
img("inuse", hdr(inuse=0x746F6E59) + struct.pack("<4I", 1, 0, 2, 0), 24 * 512)
img("outside", hdr() + struct.pack("<4I", 1, 0, 100, 0), 16 * 512)
bm = struct.pack("<Q", 32) + bytes(range(16)) + struct.pack("<IIQ", 8, 1, 1)
feat = struct.pack("<QQII", 0x20385FAE252CB34A, 0, len(bm), 0) + bm + struct.pack("<QQII", 0, 0, 0, 0)
body = feat + bytes(4096 - 24 - len(feat))
ext = struct.pack("<Q", 0xAB234CEF23DCEA87) + hashlib.md5(body).digest() + body
b = hdr(ext_off=40, nb=32) + struct.pack("<4I", 1, 0, 2, 0)
img("ext", b + bytes(40 * 512 - len(b)) + ext, 0)
PY
