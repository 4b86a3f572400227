#!/bin/sh
# make-bdrv-seeds.sh DIR - seed corpus for fuzz/fuzz_bdrv.c.
#
# Whole small qcow2 images made with qemu-img and qemu-io (every seed under
# 1 MiB, AFL++'s input limit): cluster sizes from 512 bytes, v2 and v3,
# data, zero and discarded clusters, extended L2 with subclusters,
# compressed clusters (zlib and zstd), internal snapshots, metadata
# preallocation; and two-device inputs (top, the split marker, then the
# second device): a qcow2 or raw backing image, an external data file.
# Nothing is committed; scripts/fuzz.sh and the fuzz_bdrv_seeds test run it.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
split='FUZZ-BDRV-NEXT!!' # FUZZ_BDRV_SPLIT in fuzz/fuzz_bdrv.c

img() { # img FILE SIZE qemu-img-create-options...
    f=$1
    size=$2
    shift 2
    rm -f "$f"
    qemu-img create -q -f qcow2 "$@" "$f" "$size"
}
io() { # io FILE qemu-io-commands...
    f=$1
    shift
    for c in "$@"; do set -- "$@" -c "$c"; shift; done
    qemu-io "$@" "$f" >/dev/null
}
seed() { # seed NAME FILE [SECOND-DEVICE]
    if [ $# -eq 3 ]; then
        { cat "$2"; printf '%s' "$split"; cat "$3"; } >"$out/$1"
    else
        cp "$2" "$out/$1"
    fi
    size=$(wc -c <"$out/$1")
    [ "$size" -le 1048576 ] || { echo "$0: seed $1 is $size bytes" >&2; exit 1; }
}

i=$tmp/i
b=$tmp/b

# Data, zeros (allocated and not) and discards, at several cluster sizes.
for cs in 512 4096 65536; do
    img "$i" 1M -o cluster_size=$cs
    io "$i" 'write -P 1 0 3k' 'write -P 2 100k 64k' 'write -z 300k 16k' \
        'write -P 3 400k 8k' 'discard 400k 4k' 'write -z -u 600k 64k' 'write -P 4 1020k 4k'
    seed "data-$cs" "$i"
done
img "$i" 1M -o compat=0.10,cluster_size=4096
io "$i" 'write -P 5 0 12k' 'write -P 6 512k 4k' 'write -z 8k 4k'
seed v2 "$i"
img "$i" 1M -o cluster_size=4096
seed empty "$i"

# Extended L2: subclusters of 512 bytes (16k clusters) and 2k (64k).
for cs in 16k 64k; do
    img "$i" 1M -o extended_l2=on,cluster_size=$cs
    io "$i" 'write -P 7 0 1k' 'write -P 8 5k 3k' 'write -z 64k 2k' 'write -P 9 66k 1k' \
        'write -P 10 200k 70k' 'discard 210k 32k'
    seed "extl2-$cs" "$i"
done

# Compressed clusters, zlib and zstd, mixed with plain ones.
qemu-img create -q -f raw "$tmp/r" 512k
qemu-io -f raw -c 'write -P 11 0 100k' -c 'write -P 12 300k 8k' -c 'write -P 13 200k 2k' \
    "$tmp/r" >/dev/null
for ct in zlib zstd; do
    for cs in 4096 65536; do
        rm -f "$i"
        qemu-img convert -c -O qcow2 -o cluster_size=$cs,compression_type=$ct "$tmp/r" "$i"
        io "$i" 'write -P 14 0 2k'
        seed "compressed-$ct-$cs" "$i"
    done
done

# Internal snapshots sharing clusters with the active layer.
img "$i" 512k -o cluster_size=4096
io "$i" 'write -P 15 0 64k'
qemu-img snapshot -c one "$i"
io "$i" 'write -P 16 8k 8k' 'write -z 32k 4k'
qemu-img snapshot -c two "$i"
io "$i" 'discard 0 16k' 'write -P 17 100k 4k'
seed snapshots "$i"

# Metadata preallocation: clusters mapped in a sparse file.
img "$i" 512k -o cluster_size=4096,preallocation=metadata
io "$i" 'write -P 18 4k 8k'
seed prealloc "$i"

# Backing chains: a qcow2 backing longer than the top, a raw one shorter.
img "$b" 1M -o cluster_size=4096
io "$b" 'write -P 19 0 256k' 'write -z 512k 4k' 'write -P 20 900k 8k'
img "$i" 512k -o cluster_size=4096 -b "$b" -F qcow2
io "$i" 'write -P 21 8k 4k' 'write -z 64k 8k' 'write -P 22 130k 1k'
seed backing-qcow2 "$i" "$b"
img "$i" 1M -o extended_l2=on,cluster_size=16k -b "$b" -F qcow2
io "$i" 'write -P 23 1k 1k' 'write -z 40k 2k'
seed backing-extl2 "$i" "$b"
rm -f "$b"
qemu-img create -q -f raw "$b" 100k
qemu-io -f raw -c 'write -P 24 0 50k' "$b" >/dev/null
img "$i" 1M -o cluster_size=512 -b "$b" -F raw
io "$i" 'write -P 25 20k 1k'
seed backing-raw "$i" "$b"

# An external data file (raw data, and not).
for raw in on off; do
    rm -f "$tmp/d"
    img "$i" 256k -o cluster_size=4096,data_file="$tmp/d",data_file_raw=$raw
    io "$i" 'write -P 26 0 8k' 'write -z 16k 4k' 'write -P 27 100k 4k'
    seed "datafile-raw-$raw" "$i" "$tmp/d"
done

echo "$(ls "$out" | wc -l) seeds in $out"
