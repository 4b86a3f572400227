#!/bin/sh
# make-vpc-seeds.sh DIR - seed corpus for fuzz/fuzz_vpc.c.
#
# Whole small VHD images made with qemu-img and qemu-io: dynamic (empty,
# with data in some blocks, converted from a qcow2), fixed (whose footer
# is at the end), force_size, and an image in a creator's size rule.
# Nothing is committed; scripts/fuzz.sh and the fuzz_vpc_seeds test run it.
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
    qemu-img create -q -f vpc "$@" "$out/$name" "$size"
}
mk empty 4M
mk tiny 1000
mk zero 0
mk force 3000000 -o force_size=on
mk fixed 64k -o subformat=fixed
mk fixed-force 70000 -o subformat=fixed,force_size=on
mk data 8M
qemu-io -f vpc -c 'write -P 0x5a 0 64k' -c 'write -P 0xa5 5M 1M' "$out/data" >/dev/null
qemu-img create -q -f qcow2 "$tmp/src.qcow2" 6M
qemu-io -f qcow2 -c 'write -P 1 1M 4k' -c 'write -P 2 4M 1M' "$tmp/src.qcow2" >/dev/null
qemu-img convert -O vpc "$tmp/src.qcow2" "$out/converted"
# a fixed image's data starting with a footer: opened as dynamic
qemu-img create -q -f vpc -o subformat=fixed "$out/fixed-footer-first" 64k
dd if="$out/fixed-footer-first" of="$out/fixed-footer-first" bs=512 skip=$(( $(stat -c %s "$out/fixed-footer-first") / 512 - 1 )) count=1 conv=notrunc 2>/dev/null
