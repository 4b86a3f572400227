#!/bin/sh
# make-codec-seeds.sh DIR - seed corpus for fuzz/fuzz_decompress.c.
#
# Compressed clusters exactly as qemu-img writes them: `qemu-img convert -c`
# of text, sparse and mixed data into qcow2 images with zlib and zstd
# compression and 512 B, 4 KiB and 64 KiB clusters; each cluster is read
# out as qcow2 reads it (up to the end of its last sector, qcow2.txt
# "Compressed Clusters Descriptor") behind the harness's selector byte
# (bit 0: zstd; bits 1-4: cluster_bits - 9).  Nothing is committed;
# scripts/fuzz.sh runs this.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# 192 KiB of data: 64 KiB of text, 64 KiB of sparse bytes, 64 KiB of runs
# copied from near and far back.
python3 - "$tmp/data" <<'EOF'
import random, sys
r = random.Random(1)
words = [b"qcow2 ", b"cluster ", b"refcount ", b"the ", b"of ", b"table ", b"L2 ", b"\n"]
text = bytearray()
while len(text) < 65536:
    text += r.choice(words)
sparse = bytearray(65536)
for _ in range(256):
    sparse[r.randrange(65536)] = r.randrange(256)
mixed = bytearray()
while len(mixed) < 65536:
    n = r.randrange(1, 300)
    if len(mixed) > 64 and r.random() < 0.5:
        d = r.randrange(1, min(len(mixed), 40000) + 1)
        for _ in range(n):
            mixed.append(mixed[-d])
    else:
        mixed += bytes(r.randrange(16) for _ in range(n))
open(sys.argv[1], "wb").write(bytes(text[:65536] + sparse + mixed[:65536]))
EOF

# extract IMAGE PREFIX SELECTOR: for each 64 KiB of data (one kind each),
# its first compressed cluster, as the seed PREFIX-0, -1, -2.
extract() {
    python3 - "$@" <<'EOF'
import struct, sys
img, prefix, sel = sys.argv[1], sys.argv[2], int(sys.argv[3])
f = open(img, "rb").read()
be64 = lambda o: struct.unpack(">Q", f[o:o + 8])[0]
cbits = struct.unpack(">I", f[20:24])[0]
l1_size = struct.unpack(">I", f[36:40])[0]
l1 = be64(40)
x = 62 - (cbits - 8)
per_l2 = (1 << cbits) // 8
found = {}
for i in range(l1_size):
    l2 = be64(l1 + 8 * i) & 0x00fffffffffffe00
    for j in range(per_l2 if l2 else 0):
        e = be64(l2 + 8 * j)
        kind = ((i * per_l2 + j) << cbits) // 65536
        if not (e >> 62) & 1 or kind in found:
            continue
        off = e & ((1 << x) - 1)
        size = (((e >> x) & ((1 << (cbits - 8)) - 1)) + 1) * 512 - (off & 511)
        found[kind] = bytes([sel]) + f[off:off + size]
if len(found) != 3:
    sys.exit("%s: compressed clusters for %d kinds of data, not 3" % (img, len(found)))
for kind, seed in found.items():
    open("%s-%d" % (prefix, kind), "wb").write(seed)
EOF
}

for ct in zlib zstd; do
    t=0
    [ "$ct" = zlib ] || t=1
    for cb in 9 12 16; do
        rm -f "$tmp/i"
        qemu-img convert -q -c -f raw -O qcow2 \
            -o "cluster_size=$((1 << cb)),compression_type=$ct" "$tmp/data" "$tmp/i"
        extract "$tmp/i" "$out/$ct-$((1 << cb))" $((t | (cb - 9) << 1))
    done
done
echo "$(ls "$out" | wc -l) seeds in $out"
