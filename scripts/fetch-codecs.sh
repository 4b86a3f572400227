#!/bin/sh
# fetch-codecs.sh [DIR] - fetch the zlib, zstd and nettle sources that instar
# builds into its guest (docs/architecture.md, "The codecs" and "The crypto"):
# Debian 12's source packages at the versions of the installed zlib1g,
# libzstd1 and libnettle8, the libraries Debian's qemu-img links, unpacked as
# DIR/zlib, DIR/zstd and DIR/nettle (default DIR: .cache/codecs, which git
# ignores).  Nothing is committed.
#
# Idempotent: when DIR already holds what it would fetch it does nothing.
# Needs root (or sudo) only to add a deb-src entry when APT has none for
# bookworm; it then runs `apt-get update`, and otherwise only when APT's
# source index does not know a wanted version (it was never fetched).
#
# What is checked before a tree is used:
#  - apt checks every file it downloads against bookworm's Sources index,
#    which the signed InRelease covers (Debian archive key);
#  - the .dsc must have the SHA-256 scripts/codecs.pins records for that
#    version, so an unreviewed source never builds;
#  - dpkg-source (run by apt-get source) checks each tarball against the
#    .dsc and applies Debian's patches.  It cannot check the uploader's
#    signature on the .dsc without debian-keyring, which we do not install:
#    the two checks above already tie the files to the archive key;
#  - the unpacked debian/changelog must name the pinned version.
#
# When no mirror offers the installed version's source (some mirrors carry
# no bookworm-security sources), it falls back to the newest older pinned
# version of the same upstream release, says so, and leaves DIR/NAME.note,
# which CMake repeats as a warning at every configure.
set -eu
cd "$(dirname "$0")/.."
out=${1:-.cache/codecs}
pins=scripts/codecs.pins

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

die() {
    echo "fetch-codecs: $*" >&2
    exit 1
}

command -v dpkg-source >/dev/null 2>&1 || die "dpkg-source is missing (apt-get install dpkg-dev)"

# installed BINARY: the source version of the installed BINARY.
installed() {
    dpkg-query -W -f='${source:Version}' "$1" 2>/dev/null ||
        die "$1 is not installed (scripts/setup.sh installs it)"
}

# candidates BINARY VERSION: the pinned "source version sha256" lines to
# try for BINARY at VERSION: that version, then older pinned versions of
# the same upstream release, newest first.
candidates() {
    exact=$(awk -v b="$1" -v v="$2" '!/^#/ && NF && $3 == b && $2 == v { print $1, $2, $4 }' "$pins")
    [ -n "$exact" ] ||
        die "installed $1 is $2, which $pins does not list: review that version and pin it"
    echo "$exact"
    awk -v b="$1" -v v="$2" '!/^#/ && NF && $3 == b && $2 != v { print $1, $2, $4 }' "$pins" |
        while read -r s v h; do
            [ "${v%-*}" = "${2%-*}" ] && dpkg --compare-versions "$v" lt "$2" && echo "$s $v $h"
        done | sort -r -V -k2,2
}

zlib_want="zlib1g $(installed zlib1g)"
zstd_want="libzstd1 $(installed libzstd1)"
nettle_want="libnettle8 $(installed libnettle8)"

# uptodate NAME WANT: DIR/NAME was fetched for WANT ("binary version").
uptodate() {
    [ -f "$out/$1.want" ] && [ "$(cat "$out/$1.want")" = "$2" ] && [ -f "$out/$1.pin" ] &&
        [ -d "$out/$1/debian" ]
}
if uptodate zlib "$zlib_want" && uptodate zstd "$zstd_want" && uptodate nettle "$nettle_want"; then
    echo "fetch-codecs: $out is up to date ($(cut -d' ' -f1-2 "$out/zlib.pin")," \
        "$(cut -d' ' -f1-2 "$out/zstd.pin"), $(cut -d' ' -f1-2 "$out/nettle.pin"))"
    for c in zlib zstd nettle; do
        [ ! -f "$out/$c.note" ] || fold -s -w 78 "$out/$c.note" >&2
    done
    exit 0
fi

# A deb-src entry for bookworm: add one beside the system's own entries,
# in our own file, with the same mirrors, suites and keys.
has_src() {
    # shellcheck disable=SC2016 # $(RELEASE) is apt's format syntax
    apt-get indextargets --format '$(RELEASE)' 'Identifier: Sources' 2>/dev/null | grep -qx bookworm
}
updated=0
if ! has_src; then
    eval "$(apt-config shell PARTS Dir::Etc::sourceparts/d LIST Dir::Etc::sourcelist/f)"
    note="# Added by instar's scripts/fetch-codecs.sh: Debian's sources, for apt-get source."
    srcfile=$(mktemp)
    trap 'rm -f "$srcfile"' EXIT INT TERM
    if [ -f "${PARTS}debian.sources" ]; then
        # deb822 (Debian 12's default): the same stanzas, typed deb-src.
        { echo "$note"; sed 's/^Types:.*/Types: deb-src/' "${PARTS}debian.sources"; } >"$srcfile"
        dest="${PARTS}instar-deb-src.sources"
    elif [ -f "$LIST" ] && grep -q '^[[:space:]]*deb[[:space:]].*bookworm' "$LIST"; then
        { echo "$note"; sed -n 's/^[[:space:]]*deb[[:space:]]\(.*bookworm.*\)$/deb-src \1/p' "$LIST"; } >"$srcfile"
        dest="${PARTS}instar-deb-src.list"
    else
        die "APT has no Debian bookworm entry to derive a deb-src entry from; add one"
    fi
    echo "fetch-codecs: adding $dest"
    $SUDO install -m 0644 "$srcfile" "$dest"
    $SUDO apt-get update -qq
    updated=1
    has_src || die "APT still has no bookworm source index after adding $dest"
fi

# known SOURCE VERSION: does APT's source index list that version?
known() {
    apt-cache showsrc "$1" 2>/dev/null | grep -qx "Version: $2"
}

# fetch NAME SOURCE VERSION SHA256: apt-get source into DIR/NAME, checked.
# Returns 1 (leaving the log in $log) when apt cannot fetch it; dies on a
# failed check.
fetch() {
    tmp=$(mktemp -d "$out/.fetch.XXXXXX")
    # apt downloads as its sandbox user when run as root.
    [ "$(id -u)" -ne 0 ] || ! id _apt >/dev/null 2>&1 || chown _apt "$tmp"
    if ! (cd "$tmp" && apt-get source -q --only-source "$2=$3") >"$log" 2>&1; then
        rm -rf "$tmp"
        return 1
    fi
    set -- "$@" "$tmp"/*.dsc
    if [ $# -ne 5 ] || [ ! -f "$5" ]; then
        die "expected one .dsc for $2 $3 in $tmp"
    fi
    sha=$(sha256sum "$5" | cut -d' ' -f1)
    [ "$sha" = "$4" ] || die "$5 has SHA-256 $sha, but $pins records $4 for $2 $3"
    dir=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d)
    if [ -z "$dir" ] || [ ! -f "$dir/debian/changelog" ]; then
        die "apt-get source unpacked no tree for $2"
    fi
    got=$(dpkg-parsechangelog -l "$dir/debian/changelog" -S Version)
    [ "$got" = "$3" ] || die "$dir/debian/changelog is version $got, not $3"
    rm -rf "${out:?}/$1" "$out/$1.pin" "$out/$1.want" "$out/$1.note"
    mv "$dir" "$out/$1"
    echo "$2 $3 $4" >"$out/$1.pin"
    rm -rf "$tmp"
    echo "fetch-codecs: $2 $3 in $out/$1 (.dsc SHA-256 checked)"
}

# get NAME BINARY VERSION: fetch the best candidate for the installed version.
get() {
    cands=$(candidates "$2" "$3")
    log=$(mktemp)
    first=1
    for line in $(echo "$cands" | tr ' ' ','); do
        IFS=, read -r s v h <<EOF
$line
EOF
        if ! known "$s" "$v" && [ "$updated" -eq 0 ]; then
            echo "fetch-codecs: APT's source index lacks $s $v; running apt-get update"
            $SUDO apt-get update -qq
            updated=1
        fi
        if known "$s" "$v" && fetch "$1" "$s" "$v" "$h"; then
            echo "$2 $3" >"$out/$1.want"
            if [ "$first" -eq 0 ]; then
                echo "instar: warning: the $1 codec is built from $s $v, not from the" \
                    "installed $2 $3, whose source no mirror in APT's sources offers." \
                    "Debian's later patches are missing from the guest; compressed clusters" \
                    "stay identical to qemu-img's only where those patches leave compression" \
                    "alone (test_codec checks)." >"$out/$1.note"
                fold -s -w 78 "$out/$1.note" >&2
            fi
            rm -f "$log"
            return 0
        fi
        if [ "$first" -eq 1 ]; then
            echo "fetch-codecs: cannot fetch the source of $s $v:" >&2
            grep -E '^(E|Err):' "$log" | head -3 >&2 || true
        fi
        first=0
    done
    cat "$log" >&2
    rm -f "$log"
    die "could not fetch any pinned source for $2 $3"
}

mkdir -p "$out"
# shellcheck disable=SC2086 # "binary version", split on purpose
uptodate zlib "$zlib_want" || get zlib $zlib_want
# shellcheck disable=SC2086
uptodate zstd "$zstd_want" || get zstd $zstd_want
# shellcheck disable=SC2086
uptodate nettle "$nettle_want" || get nettle $nettle_want
