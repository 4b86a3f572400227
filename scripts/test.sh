#!/bin/sh
# Every test: formatting, unit tests (criterion), the fuzz smoke, then the
# integration and parity suites (pytest), on every sandbox backend:
#  - where KVM is usable: everything on KVM (auto's choice), then a slice
#    of the parity suites and the sandbox tests on the process backend;
#  - where it is not: everything on the process backend, then the KVM
#    backend's negative guests and a slice in a nested system that has KVM
#    (scripts/kvm-tcg.sh: a Debian kernel under qemu-system-x86_64 TCG).
# Under CI=true nothing may pass by skipping for want of a sandbox.
set -eu
cd "$(dirname "$0")/.."

# eatmydata (scripts/setup.sh installs it) turns fsync and fdatasync into
# no-ops for the suites: qemu-img and instar flush thousands of times in
# a run (repairs, resizes, crash sweeps), what the suites check never
# depends on a flush reaching the disk (crash tests stop the writes with
# fault injection), and on a CI runner's disk those flushes cost more
# than everything else together.
EMD=""
command -v eatmydata >/dev/null 2>&1 && EMD=eatmydata
PYTEST="$EMD /usr/bin/python3 -m pytest -q -p no:cacheprovider"
# pytest-xdist: one worker per CPU for the host's own runs (each case runs
# the two tools one after the other, so a worker keeps one CPU busy).
JOBS=$(nproc 2>/dev/null || echo 1)
[ "$JOBS" -le 4 ] || JOBS=4
PAR="-n $JOBS"
SLICE=10     # every Nth parity case on the non-default backend
TCG_SLICE=300 # the same under TCG (10-20x slower): about 75 cases, every file

# Each stage's heading says when it starts, in seconds since the run
# began, so a CI log shows where the time goes.
T0=$(date +%s)
stage() { echo "== [$(($(date +%s) - T0)) s] $*"; }

kvm_usable() {
    d=$(mktemp -d)
    qemu-img create -q -f qcow2 "$d/probe.qcow2" 1M
    if INSTAR_SANDBOX=kvm build/instar info "$d/probe.qcow2" >/dev/null 2>&1; then r=0; else r=1; fi
    rm -rf "$d"
    return $r
}

if kvm_usable; then
    stage "sandbox backends: kvm (default) and process"
    KVM=1
else
    stage "sandbox backends: process (default); kvm in a nested system (no usable KVM here)"
    KVM=0
fi

stage "clang-format check"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

stage "unit tests (criterion; negative guests on every usable backend)"
(cd build && $EMD ctest --output-on-failure -j2)

stage "fuzz smoke"
FUZZ_SECONDS=${FUZZ_SECONDS:-5} scripts/fuzz.sh smoke

stage "integration and parity tests (pytest), default backend"
rc=0
$PYTEST $PAR --durations=25 --junitxml=build/pytest-junit.xml tests/integration parity || rc=$?
scripts/test-durations.py build/pytest-junit.xml 25 || true
[ "$rc" = 0 ] || exit "$rc"

# QEMU's own qemu-iotests (docs/iotests.md): the fast ones of those that
# must pass with instar, about 30 s on 2 cores (plus a 24 MB source fetch
# the first time).  scripts/iotests.sh --must-pass runs them all (~7 min).
stage "qemu-iotests that must pass with instar (fast subset)"
scripts/iotests.sh --must-pass --fast --out build/iotests-ci

if [ "$KVM" = 1 ]; then
    stage "a slice on the process backend"
    INSTAR_SANDBOX=process $PYTEST $PAR --slice=$SLICE tests/integration parity
fi

if [ "$KVM" = 0 ]; then
    # The KVM backend cannot rot where KVM is missing: its negative guests,
    # the confined host, and a slice of every suite run in a nested Debian
    # system whose /dev/kvm works (docs/kvm-tcg.md), where a KVM case that
    # skips is a failure (INSTAR_REQUIRE_KVM).
    stage "the KVM backend in a nested system (scripts/kvm-tcg.sh; TCG, 10-20x slower)"
    scripts/kvm-tcg-setup.sh
    scripts/kvm-tcg.sh --mem 6144 --timeout 1500 -- sh -c '
        set -e
        export INSTAR_REQUIRE_KVM=1
        build/test_vmm_negative
        build/test_vmm_seccomp
        INSTAR_SANDBOX=kvm '"$PYTEST"' --durations=15 --slice='"$TCG_SLICE"' tests/integration parity'
fi
stage "all done"
