#!/bin/sh
# make-vmdk-seeds.sh DIR - seed corpus for fuzz/fuzz_vmdk.c.
#
# Small VMDK files made with qemu-img and qemu-io: monolithicSparse (empty,
# with data, with zeroed grains), streamOptimized, and the descriptor files
# of monolithicFlat and twoGbMaxExtentSparse images (their extent files
# too).  Nothing is committed; scripts/fuzz.sh and the fuzz_vmdk_seeds test
# run it.
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
