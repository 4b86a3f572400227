#!/bin/sh
# make-qcow-seeds.sh DIR - seed corpus for fuzz/fuzz_qcow.c.
#
# Whole small qcow (version 1) images made with qemu-img and qemu-io:
# empty, with data, with compressed clusters, with a backing file name
# (512-byte clusters), converted from a qcow2, and AES-encrypted.
# Nothing is committed; scripts/fuzz.sh and the fuzz_qcow_seeds test run it.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

qemu-img create -q -f qcow "$out/empty" 4M
qemu-img create -q -f qcow "$out/data" 8M
qemu-io -f qcow -c 'write -P 0x11 0 64k' -c 'write -P 0x22 5M 5000' "$out/data" >/dev/null
qemu-img create -q -f qcow "$out/compressed" 1M
qemu-io -f qcow -c 'write -c -P 0x21 0 4k' -c 'write -c -P 0x22 128k 4k' -c 'write -P 0x23 256k 4k' \
    "$out/compressed" >/dev/null
qemu-img create -q -f raw "$tmp/base.raw" 1M
qemu-img create -q -f qcow -b "$tmp/base.raw" -F raw "$out/backing" 1M
qemu-io -f qcow -c 'write -P 5 4k 1k' "$out/backing" >/dev/null
qemu-img create -q -f qcow2 "$tmp/src.qcow2" 2M
qemu-io -f qcow2 -c 'write -P 1 1M 4k' "$tmp/src.qcow2" >/dev/null
qemu-img convert -O qcow "$tmp/src.qcow2" "$out/converted"
qemu-img create -q --object secret,id=s,data=abc -f qcow -o encrypt.format=aes,encrypt.key-secret=s \
    "$out/encrypted" 1M
