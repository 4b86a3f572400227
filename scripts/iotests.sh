#!/bin/sh
# QEMU's own qemu-iotests as instar's peer suite (docs/iotests.md).
#
# Fetches tests/qemu-iotests from Debian's qemu source package of the
# installed qemu-utils version into .cache/qemu-src/ (gitignored, never
# committed), then runs scripts/iotests.py, which runs the suite's `check`
# once per test with instar (a symlink named qemu-img) and/or the real
# qemu-img as QEMU_IMG_PROG, the real qemu-io and qemu-nbd, and stubs in
# place of qemu-system and qemu-storage-daemon.
#
#   scripts/iotests.sh [--fetch-only] [iotests.py options]   (see --help)
#   scripts/iotests.sh --must-pass      instar on tests/iotests-pass.txt
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=$ROOT/.cache/qemu-src

# The source package's version: the binary version less a binNMU suffix
# (1:7.2+dfsg-7+deb12u18+b3 -> 1:7.2+dfsg-7+deb12u18).
BINVER=$(dpkg-query -W -f '${Version}' qemu-utils 2>/dev/null) || {
    echo "iotests: qemu-utils is not installed (scripts/setup.sh)" >&2
    exit 1
}
SRCVER=$(dpkg-query -W -f '${source:Version}' qemu-utils)
UPVER=${SRCVER#*:}          # 7.2+dfsg-7+deb12u18
UPVER=${UPVER%-*}           # 7.2+dfsg
SRC=$CACHE/qemu-$UPVER
STAMP=$CACHE/.fetched-$SRCVER

# A deb-src entry for Debian's archive, added once, the deb822 way, only if
# no deb-src line or stanza exists yet (another script, e.g.
# scripts/fetch-codecs.sh, may have added one; this one leaves it alone).
ensure_deb_src() {
    if grep -rqsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 0
    fi
    echo "iotests: adding deb-src entries (/etc/apt/sources.list.d/debian-src.sources)" >&2
    # Mirror every Debian "Types: deb" stanza of debian.sources as deb-src.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        awk 'BEGIN { RS = ""; ORS = "\n\n" }
             /(^|\n)Types:[^\n]*deb/ && /debian/ {
                 sub(/Types:[^\n]*/, "Types: deb-src"); print }' \
            /etc/apt/sources.list.d/debian.sources \
            >/etc/apt/sources.list.d/debian-src.sources.tmp
    else
        : >/etc/apt/sources.list.d/debian-src.sources.tmp
    fi
    if ! [ -s /etc/apt/sources.list.d/debian-src.sources.tmp ]; then
        cat >/etc/apt/sources.list.d/debian-src.sources.tmp <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

EOF
    fi
    mv /etc/apt/sources.list.d/debian-src.sources.tmp \
        /etc/apt/sources.list.d/debian-src.sources
    apt-get update >/dev/null
}

fetch() {
    if [ -f "$STAMP" ] && [ -x "$SRC/tests/qemu-iotests/check" ]; then
        return 0
    fi
    command -v dpkg-source >/dev/null || apt-get install -y dpkg-dev >/dev/null
    ensure_deb_src
    rm -rf "$CACHE"
    mkdir -p "$CACHE"
    echo "iotests: fetching qemu $SRCVER source (for qemu-utils $BINVER) into $CACHE" >&2
    if ! (cd "$CACHE" && apt-get source -q "qemu=$SRCVER" >apt-source.log 2>&1); then
        # The package lists may predate the deb-src entry of another script.
        apt-get update >/dev/null
        (cd "$CACHE" && apt-get source -q "qemu=$SRCVER" >apt-source.log 2>&1) || {
            cat "$CACHE/apt-source.log" >&2
            echo "iotests: apt-get source qemu=$SRCVER failed" >&2
            exit 1
        }
    fi
    [ -x "$SRC/tests/qemu-iotests/check" ] || {
        echo "iotests: $SRC/tests/qemu-iotests/check missing after unpacking" >&2
        exit 1
    }
    rm -f "$CACHE"/*.orig.tar.* "$CACHE"/*.debian.tar.*
    touch "$STAMP"
}

fetch
if [ "${1:-}" = "--fetch-only" ]; then
    echo "$SRC/tests/qemu-iotests"
    exit 0
fi
exec /usr/bin/python3 "$ROOT/scripts/iotests.py" --iotests "$SRC/tests/qemu-iotests" "$@"
