#!/bin/sh
# make-luks-seeds.sh DIR - seed corpus for fuzz/fuzz_luks.c: raw LUKS
# volumes made by qemu-img (-f luks, iter-time=10) with the passphrase the
# harness tries ("fuzz"), in the ciphers and modes instar decrypts, cut
# after their first key slot's material.  Nothing is committed.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
mk() { # mk NAME BYTES options...
    name=$1
    bytes=$2
    shift 2
    rm -f "$out/$name.tmp"
    # qemu's PBKDF2 benchmark fails now and then at iter-time=10: retried.
    n=0
    until qemu-img create -q --object secret,id=s,data=fuzz -f luks \
        -o "key-secret=s,iter-time=10${1:+,$1}" "$out/$name.tmp" 1M 2>/dev/null; do
        n=$((n + 1))
        [ "$n" -lt 20 ] || { echo "make-luks-seeds: qemu-img create failed for $name" >&2; exit 1; }
    done
    head -c "$bytes" "$out/$name.tmp" >"$out/$name"
    rm -f "$out/$name.tmp"
}
mk xts-aes256 262144
mk xts-aes128 135168 cipher-alg=aes-128
mk cbc-essiv-aes128 69632 cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256
mk cbc-plain-aes256 135168 cipher-mode=cbc,ivgen-alg=plain,hash-alg=sha512
