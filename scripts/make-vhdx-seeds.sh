#!/bin/sh
# make-vhdx-seeds.sh DIR - seed corpus for fuzz/fuzz_vhdx.c.
#
# Small VHDX images made with qemu-img and qemu-io (dynamic, empty or with
# data, fixed, a block size of 1 MiB, converted from a qcow2), and one with
# an active log built by parity/vhdx_build.py.  Nothing is committed;
# scripts/fuzz.sh and the fuzz_vhdx_seeds test run it.
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
    qemu-img create -q -f vhdx "$@" "$out/$name" "$size"
}
mk empty 4M
mk small-blocks 3M -o block_size=1M
mk fixed 2M -o subformat=fixed,block_size=1M
mk data 8M -o block_size=1M
qemu-io -f vhdx -c 'write -P 0x5a 0 64k' -c 'write -P 0xa5 5M 1M' "$out/data" >/dev/null
qemu-img create -q -f qcow2 "$tmp/src.qcow2" 6M
qemu-io -f qcow2 -c 'write -P 1 1M 4k' -c 'write -P 2 4M 1M' "$tmp/src.qcow2" >/dev/null
qemu-img convert -O vhdx -o block_size=1M "$tmp/src.qcow2" "$out/converted"
here=$(dirname "$0")
python3 "$here/../parity/vhdx_build.py" "$out"
