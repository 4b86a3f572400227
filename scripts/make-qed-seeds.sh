#!/bin/sh
# make-qed-seeds.sh DIR - seed corpus for fuzz/fuzz_qed.c.
#
# Whole small QED images made with qemu-img and qemu-io: empty, with data
# and zero clusters, 4 KiB clusters with small tables, a backing file
# name, converted from a qcow2, and one left with the need-check flag.
# Nothing is committed; scripts/fuzz.sh and the fuzz_qed_seeds test run it.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

qemu-img create -q -f qed "$out/empty" 4M
qemu-img create -q -f qed -o cluster_size=4k,table_size=2 "$out/small" 3M
qemu-io -f qed -c 'write -P 0x5a 4k 8k' -c 'write -z 1M 64k' -c 'write -P 0xa5 2M 100k' "$out/small" >/dev/null
qemu-img create -q -f qed "$out/data" 8M
qemu-io -f qed -c 'write -P 0x11 0 64k' -c 'write -z 1M 128k' -c 'write -P 0x22 5M 1M' "$out/data" >/dev/null
qemu-img create -q -f raw "$tmp/base.raw" 1M
qemu-img create -q -f qed -b "$tmp/base.raw" -F raw "$out/backing" 1M
qemu-img create -q -f qcow2 "$tmp/src.qcow2" 6M
qemu-io -f qcow2 -c 'write -P 1 1M 4k' -c 'write -P 2 4M 1M' "$tmp/src.qcow2" >/dev/null
qemu-img convert -O qed -o cluster_size=4k,table_size=2 "$tmp/src.qcow2" "$out/converted"
cp "$out/small" "$out/need-check"
printf '\002' | dd of="$out/need-check" bs=1 seek=16 conv=notrunc 2>/dev/null
