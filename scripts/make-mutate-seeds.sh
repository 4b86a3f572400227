#!/bin/sh
# make-mutate-seeds.sh DIR - seed corpus for the writers' harnesses
# (fuzz/fuzz_qcow2_snapop.c, fuzz/fuzz_qcow2_bitmap_store.c).
#
# Small qcow2 images made with qemu-img and qemu-io (cluster sizes,
# refcount widths, extended L2, compressed and zero clusters, internal
# snapshots, persistent bitmaps with bits set), each followed by a
# 16-byte operation script (fuzz/fuzz_image.h: FI_OPS).  Each image is
# written whole (they are all well under the harnesses' 4 MiB input).
# Nothing is committed; CI runs this script.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# Operation scripts, as octal escapes for printf: 16 bytes each.  The
# snapshot harness reads op & 3 (create, delete, apply, end) and the
# entry index from op >> 2; the bitmap harness reads op & 7 (add, remove,
# toggle, write, clear, merge, store, end) and its argument from op >> 3.
scripts="
\000\000\001\002\004\005\000\002\011\006\001\001\000\002\003\003
\002\000\006\001\004\000\002\012\001\001\001\003\003\003\003\003
\010\003\013\223\005\015\006\020\033\004\002\006\001\013\006\007
\200\003\203\000\205\006\022\001\003\006\003\003\006\006\007\007
"

n=0
seed() { # NAME: $tmp/i with each operation script appended
    k=0
    for s in $scripts; do
        k=$((k + 1))
        # shellcheck disable=SC2059 # the script is an escaped format
        { cat "$tmp/i"; printf "$s"; } >"$out/$1-$k"
    done
    n=$((n + 1))
}
mk() { # NAME SIZE qemu-img-create-options... (NAME documents the call)
    size=$2
    shift 2
    rm -f "$tmp/i"
    qemu-img create -q -f qcow2 "$@" "$tmp/i" "$size"
}
io() { qemu-io "$@" "$tmp/i" >/dev/null; }

mk plain 1M -o cluster_size=4096
seed plain

mk data 2M -o cluster_size=4096
io -c 'write -P 1 0 64k' -c 'write -z 256k 8k' -c 'write -P 2 1M 4k'
seed data

mk snaps 2M -o cluster_size=4096
io -c 'write -P 1 0 32k'
qemu-img snapshot -c one "$tmp/i"
io -c 'write -P 2 16k 32k' -c 'discard 0 4k'
qemu-img snapshot -c two "$tmp/i"
io -c 'write -P 3 1M 8k'
seed snaps

mk small 256k -o cluster_size=512
io -c 'write -P 4 0 8k'
qemu-img snapshot -c s "$tmp/i"
io -c 'write -P 5 4k 2k'
seed small512

# One bit per refcount: a snapshot cannot share a cluster.
mk refbits-1 256k -o cluster_size=512,refcount_bits=1
io -c 'write -P 4 0 8k'
seed refbits-1

for rb in 8 64; do
    mk "refbits-$rb" 1M -o cluster_size=4096,refcount_bits=$rb
    io -c 'write -P 6 0 16k'
    qemu-img snapshot -c s "$tmp/i"
    seed "refbits-$rb"
done

# Two bits per refcount: a snapshot overflows on compressed clusters
# sharing a host cluster, half-way through an L2 table.
mk refbits-2 1M -o cluster_size=4096,refcount_bits=2
io -c 'write -c -P 7 512k 64k' -c 'write -P 1 0 64k'
seed refbits-2

mk extl2 1M -o cluster_size=16k,extended_l2=on
io -c 'write -P 7 0 4k' -c 'write -z 64k 32k'
qemu-img snapshot -c s "$tmp/i"
seed extl2

mk v2 1M -o compat=0.10,cluster_size=4096
io -c 'write -P 8 0 16k'
qemu-img snapshot -c s "$tmp/i"
seed v2

# Compressed clusters sharing host clusters.
rm -f "$tmp/r" "$tmp/i"
qemu-img create -q -f raw "$tmp/r" 256k
qemu-io -f raw -c 'write -P 9 0 100k' "$tmp/r" >/dev/null
qemu-img convert -c -O qcow2 -o cluster_size=4096 "$tmp/r" "$tmp/i"
qemu-img snapshot -c s "$tmp/i"
seed compressed

# Persistent bitmaps: enabled ones record qemu-io's writes.
mk bitmaps 2M -o cluster_size=4096
qemu-img bitmap --add "$tmp/i" b0
qemu-img bitmap --add -g 65536 "$tmp/i" b1
io -c 'write -P 1 0 64k' -c 'write -P 2 1M 4k'
qemu-img bitmap --disable "$tmp/i" b1
qemu-img bitmap --add -g 512 "$tmp/i" b2
io -c 'write -P 3 512k 1k'
seed bitmaps

mk bitmaps512 256k -o cluster_size=512
qemu-img bitmap --add -g 512 "$tmp/i" a
io -c 'write -P 1 0 200k'
seed bitmaps512

echo "$n images, $(find "$out" -type f | wc -l) seeds in $out"
