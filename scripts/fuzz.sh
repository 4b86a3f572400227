#!/bin/sh
# Build the fuzz harnesses (fuzz/fuzz_*.c) with AFL++ and run them.
#   scripts/fuzz.sh smoke        CI: replay seeds standalone, then AFL++ for
#                                $FUZZ_SECONDS (default 10) per harness
#   scripts/fuzz.sh run NAME S   one harness for S seconds, findings kept
#                                in build-fuzz/out-NAME
set -eu
cd "$(dirname "$0")/.."
mode=${1:-smoke}
out=build-fuzz
mkdir -p "$out"

CC=afl-clang-fast
command -v "$CC" >/dev/null 2>&1 || CC=afl-cc
INC="-Iinclude -Iformats -Iformats/qcow2"
FORMATS=$(ls formats/*.c formats/qcow2/*.c)

seeds="$out/seeds"
rm -rf "$seeds"
scripts/make-fuzz-seeds.sh "$seeds" >/dev/null

build() { # name
    AFL_QUIET=1 $CC -O2 -g -std=gnu11 $INC "fuzz/$1.c" $FORMATS -o "$out/$1" 2>"$out/$1.build.log" ||
        { cat "$out/$1.build.log" >&2; exit 1; }
}

run_afl() { # name seconds
    rm -rf "$out/out-$1"
    AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        AFL_SKIP_BIN_CHECK=0 AFL_NO_AFFINITY=1 \
        afl-fuzz -V "$2" -i "$seeds" -o "$out/out-$1" -- "$out/$1" >"$out/$1.afl.log" 2>&1 ||
        { tail -20 "$out/$1.afl.log" >&2; echo "fuzz: afl-fuzz failed for $1" >&2; exit 1; }
    crashes=$(find "$out/out-$1" -path '*crashes/id:*' 2>/dev/null | wc -l)
    hangs=$(find "$out/out-$1" -path '*hangs/id:*' 2>/dev/null | wc -l)
    execs=$(sed -n 's/^execs_done *: *//p' "$out/out-$1"/default/fuzzer_stats 2>/dev/null || echo 0)
    echo "fuzz: $1: $execs execs in $2 s, $crashes crashes, $hangs hangs"
    [ "$crashes" -eq 0 ] && [ "$hangs" -eq 0 ]
}

case "$mode" in
smoke)
    for f in fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        # Standalone replay of every seed (built by CMake as build/NAME).
        if [ -x "build/$n" ]; then
            "build/$n" "$seeds"/* >/dev/null
            echo "fuzz: $n: replayed $(ls "$seeds" | wc -l) seeds standalone"
        fi
        build "$n"
        run_afl "$n" "${FUZZ_SECONDS:-10}"
    done
    ;;
run)
    build "$2"
    run_afl "$2" "${3:-600}"
    ;;
*)
    echo "usage: $0 smoke | run NAME SECONDS" >&2
    exit 2
    ;;
esac
