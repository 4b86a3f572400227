#!/bin/sh
# make-fuzz-seeds.sh DIR - seed corpus for fuzz/fuzz_qcow2_header.c.
#
# Makes small images with qemu-img (v2/v3, cluster sizes, refcount widths,
# extended L2, zstd, lazy refcounts, backing file, external data file,
# snapshots, bitmaps, AES and LUKS encryption) and keeps the first 256 KiB
# of each (1 MiB for the bitmap image, whose directory lies further in):
# header, extensions and snapshot table live there for images this small.
# The LUKS seed keeps only the start of its 2 MiB encryption header.  Nothing is committed; CI runs this script.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

seed() { # seed NAME [BYTES]: copy the head of $tmp/i into the corpus
    head -c "${2:-262144}" "$tmp/i" >"$out/$1"
}
mk() { # mk NAME qemu-img-create-options...
    name=$1
    shift
    rm -f "$tmp/i"
    qemu-img create -q -f qcow2 "$@" "$tmp/i" 16M || return 1
    seed "$name"
}

mk v3
mk v2 -o compat=0.10
for cs in 512 4096 2M; do mk "cluster-$cs" -o cluster_size=$cs; done
for rb in 1 8 64; do mk "refbits-$rb" -o refcount_bits=$rb; done
mk extl2 -o extended_l2=on,cluster_size=16k
mk zstd -o compression_type=zstd
mk lazy -o lazy_refcounts=on
mk prealloc -o preallocation=metadata

rm -f "$tmp/b"
qemu-img create -q -f qcow2 "$tmp/b" 16M
mk backing -b "$tmp/b" -F qcow2
mk datafile -o data_file="$tmp/d",data_file_raw=on

mk snaps
qemu-img snapshot -c one "$tmp/i"
qemu-img snapshot -c two "$tmp/i"
seed snapshots

mk bitmaps
qemu-img bitmap --add "$tmp/i" b0
qemu-img bitmap --add -g 512 "$tmp/i" b1
qemu-img bitmap --disable "$tmp/i" b1
seed bitmaps 1048576

# Images with data, for fuzz/fuzz_qcow2_check.c: mapped, zero and
# compressed clusters, and a snapshot sharing them.
mk data -o cluster_size=4096
qemu-io -c 'write -P 1 0 64k' -c 'write -z 1M 8k' "$tmp/i" >/dev/null
qemu-img snapshot -c s "$tmp/i"
qemu-io -c 'write -P 2 0 8k' "$tmp/i" >/dev/null
seed data
rm -f "$tmp/r" "$tmp/i"
qemu-img create -q -f raw "$tmp/r" 1M
qemu-io -f raw -c 'write -P 3 0 200k' "$tmp/r" >/dev/null
qemu-img convert -c -O qcow2 -o cluster_size=4096 "$tmp/r" "$tmp/i"
seed compressed

# LUKS creation times PBKDF2 with CPU usage counters, which fails now and
# then on loaded or nested hosts ("Unable to get accurate CPU usage"): retry.
for try in 1 2 3 4 5; do
    if mk luks --object secret,id=s0,data=pw \
        -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 2>/dev/null; then
        break
    fi
    [ "$try" -lt 5 ] || { echo "$0: could not create the LUKS seed" >&2; exit 1; }
done
# Legacy AES cannot be created by qemu-img 7.2; patch the method field.
mk aes
printf '\000\000\000\001' | dd of="$out/aes" bs=1 seek=32 conv=notrunc 2>/dev/null

echo "$(ls "$out" | wc -l) seeds in $out"
