#!/bin/sh
# make-vdi-seeds.sh DIR - seed corpus for fuzz/fuzz_vdi.c.
#
# Small VDI images made with qemu-img and qemu-io: dynamic (empty, with
# data in some blocks, converted from a qcow2), static, odd sizes.  Data
# blocks are 1 MiB, so images with data are cut after their block map:
# the harness reads past the end as zeros, as qemu does.  Nothing is
# committed; scripts/fuzz.sh and the fuzz_vdi_seeds test run it.
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
    qemu-img create -q -f vdi "$@" "$out/$name" "$size"
}
cut() { # cut NAME BYTES: keep the header and block map
    head -c "$2" "$out/$1" >"$tmp/cut" && mv "$tmp/cut" "$out/$1"
}
mk empty 4M
mk tiny 1000
mk zero 0
mk big 3G
mk static 2M -o static=on
cut static 1024
mk data 8M
qemu-io -f vdi -c 'write -P 0x5a 5M 64k' -c 'write -P 0xa5 0 1M' "$out/data" >/dev/null
cut data 1536
qemu-img create -q -f qcow2 "$tmp/src.qcow2" 6M
qemu-io -f qcow2 -c 'write -P 1 1M 4k' -c 'write -P 2 4M 1M' "$tmp/src.qcow2" >/dev/null
qemu-img convert -O vdi "$tmp/src.qcow2" "$out/converted"
cut converted 1100
