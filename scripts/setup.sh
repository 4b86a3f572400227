#!/bin/sh
# Install everything instar needs to build, run and test on Debian 12.
# Idempotent; needs root (or sudo) for apt-get.
set -eu

PKGS="build-essential cmake clang-format qemu-utils python3 python3-pytest
python3-pytest-xdist libcriterion-dev afl++ zlib1g-dev libzstd-dev hyperfine util-linux libseccomp-dev eatmydata
m4"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "setup: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# The zlib and zstd sources that the guest's codecs are built from, at the
# versions of the installed zlib1g, libzstd1 and libnettle8 (scripts/fetch-codecs.sh;
# into .cache/codecs, never committed).  CMake refuses to configure without.
"$(dirname "$0")/fetch-codecs.sh"

# /dev/kvm: the KVM backend needs read-write access; without it instar
# runs its guests in the process sandbox (docs/sandbox.md).  Report, never fake.
if [ ! -e /dev/kvm ]; then
    echo "setup: note: /dev/kvm is missing; instar will use its process sandbox here" >&2
elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    if [ "$(id -u)" -eq 0 ]; then
        chmod 0666 /dev/kvm 2>/dev/null || true
    fi
    [ -r /dev/kvm ] && [ -w /dev/kvm ] ||
        echo "setup: note: /dev/kvm is not read-write for $(id -un) (add yourself to group kvm); instar will use its process sandbox" >&2
fi
