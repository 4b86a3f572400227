#!/bin/sh
# Build the fuzz harnesses (fuzz/fuzz_*.c) with AFL++ and run them.
#   scripts/fuzz.sh smoke        CI: replay seeds standalone, then AFL++ for
#                                $FUZZ_SECONDS (default 10) per harness
#   scripts/fuzz.sh run NAME S   one harness for S seconds, findings kept
#                                in build-fuzz/out-NAME
# The smoke runs the harnesses nproc at a time (each AFL++ instance keeps
# one CPU busy), after the instrumented libraries they share are built.
set -eu
cd "$(dirname "$0")/.."
mode=${1:-smoke}
out=build-fuzz
mkdir -p "$out"

CC=afl-clang-fast
command -v "$CC" >/dev/null 2>&1 || CC=afl-cc
INC="-Iinclude -Iformats -Iformats/qcow2 -Iformats/vpc -Iformats/vdi"
# Every format's library but luks's, which links nettle (crypto_libs).
FORMATS=""
for f in formats/*.c formats/*/*.c; do
    case "$f" in formats/luks/*) ;; *) FORMATS="$FORMATS $f" ;; esac
done

seeds="$out/seeds"
make_seeds() {
    rm -rf "$seeds" "$out"/seeds-*
    scripts/make-fuzz-seeds.sh "$seeds" >/dev/null
    # Every other corpus: scripts/make-NAME-seeds.sh makes $out/seeds-NAME.
    for s in scripts/make-*-seeds.sh; do
        name=${s#scripts/make-}
        name=${name%-seeds.sh}
        [ "$name" = fuzz ] || "$s" "$out/seeds-$name" >/dev/null
    done
}

seeds_of() { # name: the seed corpus of a harness
    case "$1" in
    fuzz_decompress) echo "$out/seeds-codec" ;;
    fuzz_bdrv) echo "$out/seeds-bdrv" ;;
    fuzz_qcow2_snapop | fuzz_qcow2_bitmap_store) echo "$out/seeds-mutate" ;;
    *)
        # fuzz_<fmt>: its format's corpus when it has one.
        if [ -d "$out/seeds-${1#fuzz_}" ]; then echo "$out/seeds-${1#fuzz_}"; else echo "$seeds"; fi
        ;;
    esac
}

# fuzz_decompress links guest/codec.c and the zlib and zstd it wraps
# (scripts/fetch-codecs.sh), instrumented, and built by CMake's own rules
# so that they are configured exactly as the guest's are.
codec_libs() {
    [ -z "${codec_libs_built:-}" ] || return 0
    [ -n "${FUZZ_LIBS_READY:-}" ] ||
        { cmake -S . -B "$out/cmake" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=Release &&
            cmake --build "$out/cmake" -j"$(nproc)" --target instar_codec_host; } \
            >"$out/cmake.log" 2>&1 || { tail -20 "$out/cmake.log" >&2; exit 1; }
    codecs=$(sed -n 's/^INSTAR_CODECS_DIR:PATH=//p' "$out/cmake/CMakeCache.txt")
    CODEC_FLAGS="-D_GNU_SOURCE -DZ_SOLO -DZ_PREFIX -Iguest -Itests/unit -I$codecs/zlib
        -I$codecs/zstd/lib $out/cmake/libinstar_codec_host.a $out/cmake/libinstar_zlib_host.a
        $out/cmake/libinstar_zstd_host.a"
    codec_libs_built=1
}

# fuzz_luks links formats/luks and the nettle it calls (scripts/fetch-codecs.sh),
# instrumented and configured by CMake's rules as the guest's is.
crypto_libs() {
    [ -n "${FUZZ_LIBS_READY:-}" ] ||
        { cmake -S . -B "$out/cmake" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=Release &&
            cmake --build "$out/cmake" -j"$(nproc)" --target instar_nettle_host; } \
            >"$out/cmake.log" 2>&1 || { tail -20 "$out/cmake.log" >&2; exit 1; }
    CRYPTO_FLAGS="-I$out/cmake/nettle-include $out/cmake/libinstar_nettle_host.a"
}

# Every harness links the format libraries, luks's with them: compiled
# (instrumented) once into one archive, not once per harness (a harness
# took 12 s to build, nearly all of it these sources).
formats_lib() {
    FMT_LIB="$out/libformats.a"
    [ -z "${FUZZ_LIBS_READY:-}" ] || return 0
    mkdir -p "$out/formats"
    rm -f "$FMT_LIB" "$out"/formats/*.o
    pids=""
    for f in $FORMATS formats/luks/*.c; do
        o="$out/formats/$(echo "${f%.c}" | tr / _).o"
        # shellcheck disable=SC2086 # flag lists
        AFL_QUIET=1 $CC -c -O2 -g -std=gnu11 $INC -I"$out/cmake/nettle-include" "$f" -o "$o" \
            2>"$o.log" &
        pids="$pids $!"
    done
    for p in $pids; do
        wait "$p" || { cat "$out"/formats/*.log >&2; exit 1; }
    done
    ar rcs "$FMT_LIB" "$out"/formats/*.o
}

# fuzz_bdrv runs guest code over fuzz/fake_guest.c: the guest's sources
# are built with its heap (malloc and co. renamed), the harness without.
bdrv_guest() {
    mkdir -p "$out/bdrv-guest"
    BDRV_OBJS=""
    drivers=""
    for d in guest/drv_*.c; do
        d=${d#guest/}
        drivers="$drivers ${d%.c}"
    done
    for f in bdrv crypt open plan_map report result $drivers; do
        BDRV_OBJS="$BDRV_OBJS $out/bdrv-guest/$f.o"
        [ -z "${FUZZ_LIBS_READY:-}" ] || continue
        # shellcheck disable=SC2086 # flag lists
        AFL_QUIET=1 $CC -c -O2 -g -std=gnu11 $INC -Iguest -I"$out/cmake/nettle-include" -Dmalloc=fake_malloc \
            -Dcalloc=fake_calloc -Drealloc=fake_realloc -Dfree=fake_free "guest/$f.c" \
            -o "$out/bdrv-guest/$f.o" 2>"$out/fuzz_bdrv.build.log" ||
            { cat "$out/fuzz_bdrv.build.log" >&2; exit 1; }
    done
}

build() { # name
    # Every harness links the format libraries, and some of them call
    # nettle (luks, parallels' MD5): the instrumented nettle goes with all.
    crypto_libs
    formats_lib
    extra=$CRYPTO_FLAGS
    if [ "$1" = fuzz_decompress ] || [ "$1" = fuzz_cloop ] || [ "$1" = fuzz_dmg ]; then
        codec_libs
        extra="$extra $CODEC_FLAGS"
    elif [ "$1" = fuzz_bdrv ]; then
        codec_libs
        bdrv_guest
        extra="fuzz/fake_guest.c $BDRV_OBJS $CODEC_FLAGS $CRYPTO_FLAGS"
    fi
    # shellcheck disable=SC2086 # flag lists
    AFL_QUIET=1 $CC -O2 -g -std=gnu11 $INC "fuzz/$1.c" -Wl,--start-group "$FMT_LIB" $extra \
        -Wl,--end-group -o "$out/$1" \
        2>"$out/$1.build.log" || { cat "$out/$1.build.log" >&2; exit 1; }
}

run_afl() { # name seconds
    rm -rf "$out/out-$1"
    AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        AFL_SKIP_BIN_CHECK=0 AFL_NO_AFFINITY=1 \
        afl-fuzz -V "$2" -i "$(seeds_of "$1")" -o "$out/out-$1" -- "$out/$1" >"$out/$1.afl.log" 2>&1 ||
        { tail -20 "$out/$1.afl.log" >&2; echo "fuzz: afl-fuzz failed for $1" >&2; exit 1; }
    crashes=$(find "$out/out-$1" -path '*crashes/id:*' 2>/dev/null | wc -l)
    hangs=$(find "$out/out-$1" -path '*hangs/id:*' 2>/dev/null | wc -l)
    execs=$(sed -n 's/^execs_done *: *//p' "$out/out-$1"/default/fuzzer_stats 2>/dev/null || echo 0)
    echo "fuzz: $1: $execs execs in $2 s, $crashes crashes, $hangs hangs"
    [ "$crashes" -eq 0 ] && [ "$hangs" -eq 0 ]
}

case "$mode" in
smoke)
    make_seeds
    # The shared instrumented libraries, once (one CMake tree).
    codec_libs
    crypto_libs
    formats_lib
    bdrv_guest
    printf '%s\n' fuzz/fuzz_*.c | FUZZ_LIBS_READY=1 xargs -P "$(nproc)" -n 1 "$0" one ||
        { echo "fuzz: the smoke failed" >&2; exit 1; }
    ;;
one)
    # One harness of the smoke (fuzz/NAME.c), its libraries and seeds made.
    n=$(basename "$2" .c)
    # Standalone replay of every seed (built by CMake as build/NAME).
    if [ -x "build/$n" ]; then
        "build/$n" "$(seeds_of "$n")"/* >/dev/null
        echo "fuzz: $n: replayed $(find "$(seeds_of "$n")" -type f | wc -l) seeds standalone"
    fi
    build "$n"
    run_afl "$n" "${FUZZ_SECONDS:-10}"
    ;;
run)
    make_seeds
    build "$2"
    run_afl "$2" "${3:-600}"
    ;;
*)
    echo "usage: $0 smoke | run NAME SECONDS | one fuzz/NAME.c" >&2
    exit 2
    ;;
esac
