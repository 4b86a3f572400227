#!/bin/sh
# make-vmdk-seeds.sh DIR - seed corpus for fuzz/fuzz_vmdk.c.
#
# Small VMDK files made with qemu-img and qemu-io: monolithicSparse (empty,
# with data, with zeroed grains), streamOptimized, and the descriptor files
# of monolithicFlat and twoGbMaxExtentSparse images (their extent files
# too), and a VMDK3 and a seSparse extent written field by field.  Nothing
# is committed; scripts/fuzz.sh and the fuzz_vmdk_seeds test run it.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

qemu-img create -q -f vmdk "$out/empty" 4M
qemu-img create -q -f vmdk "$out/data" 8M
qemu-io -f vmdk -c 'write -P 0x5a 0 64k' -c 'write -P 0xa5 5M 1M' "$out/data" >/dev/null
qemu-img create -q -f vmdk -o zeroed_grain=on "$out/zeroed" 2M
qemu-io -f vmdk -c 'write -P 1 0 128k' -c 'write -z 64k 64k' "$out/zeroed" >/dev/null
qemu-img convert -O vmdk -o subformat=streamOptimized "$out/data" "$out/stream"
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$tmp/flat.vmdk" 1M
cp "$tmp/flat.vmdk" "$out/flat-descriptor"
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "$tmp/two.vmdk" 3G
cp "$tmp/two.vmdk" "$out/two-descriptor"
cp "$tmp/two-s001.vmdk" "$out/two-extent"
# The extents qemu-img reads but cannot create: a VMDK3 ("COWD") file and a
# seSparse one, written as parity/test_vmdk_extents_parity.py lays them out.
python3 - "$out" <<'PY'
import struct, sys
out = sys.argv[1]
# COWD: header (cap 2048, 4 KiB grains, directory at sector 4, one entry), a table at 5, a grain at 37
c = bytearray(b"COWD" + struct.pack("<10I", 1, 3, 2048, 8, 4, 1, 0, 0, 0, 0)).ljust(37 * 512 + 4096, b"\0")
c[4 * 512:4 * 512 + 4] = struct.pack("<I", 5)
c[5 * 512:5 * 512 + 8] = struct.pack("<2I", 0, 37)
open(f"{out}/cowd", "wb").write(c)
# seSparse: const header, volatile header at 2, directory at 8, a table at 16, grains from 80
h = struct.pack("<26Q", 0xcafebabe, 0x200000001, 8192, 8, 64, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0,
                8, 1, 16, 64, 0, 0, 0, 0, 80, 16) + bytes(304)
s = bytearray(h).ljust(1024, b"\0") + struct.pack("<4Q", 0xcafecafe, 0, 0, 0) + bytes(480)
s = s.ljust(82 * 512 + 8192, b"\0")
s[8 * 512:8 * 512 + 8] = struct.pack("<Q", 0x1000000000000000)
s[16 * 512:16 * 512 + 32] = struct.pack("<4Q", 0x3000000000000000, 0x2000000000000000, 0,
                                        0x3001000000000000)
open(f"{out}/sesparse", "wb").write(s)
PY
