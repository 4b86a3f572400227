#!/usr/bin/env python3
"""Differential fuzzing of `instar resize` against qemu-img 7.2.

Each iteration makes a random qcow2 image with the oracle (cluster size,
refcount width, version, extended L2, virtual size), writes random data with
qemu-io (plain, zero and compressed writes), sometimes takes internal
snapshots, then applies a random sequence of resize operations (absolute or
relative, grow or shrink, with or without --shrink, sometimes unaligned) to
two copies: one with qemu-img, one with instar.  After every operation it
compares exit code, stdout and stderr, the file length, `qemu-img check`
output and `qemu-img compare` of the two copies; byte-identical files are
counted (QEMU punches holes for discarded clusters, instar cannot, so
identity is reported, not required).

Usage: scripts/fuzz-resize.py [--seed N] [--iterations N] [--instar PATH] [-v]
Exit status 0 when every iteration matched, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QEMU_IMG = shutil.which("qemu-img") or "/usr/bin/qemu-img"
QEMU_IO = shutil.which("qemu-io") or "/usr/bin/qemu-io"
ENV = dict(os.environ, TZ="UTC", LC_ALL="C")

CLUSTER_SIZES = [512, 4096, 65536, 2 << 20]
REFCOUNT_BITS = [1, 2, 4, 8, 16, 32, 64]
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def run(argv, cwd=None, timeout=300):
    cp = subprocess.run(argv, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=timeout, stdin=subprocess.DEVNULL)
    return cp.returncode, cp.stdout, cp.stderr


def must(argv, cwd=None):
    rc, out, err = run(argv, cwd)
    if rc != 0 or b"failed" in err.lower():
        raise RuntimeError(f"generation failed: {argv}: {err.decode(errors='replace')}")
    return out


def random_image(rng: random.Random, path: Path) -> dict:
    """Create a random qcow2 image with data at path; return its parameters."""
    cs = rng.choice(CLUSTER_SIZES)
    v2 = rng.random() < 0.1
    rb = 16 if v2 else rng.choice(REFCOUNT_BITS)
    ext = (not v2) and cs >= 16384 and rng.random() < 0.2
    size = rng.choice([1, 3, 16, 64, 100, 1000]) * MIB + rng.choice([0, 0, 512, 64 * KIB])
    opts = f"cluster_size={cs},refcount_bits={rb}"
    if v2:
        opts += ",compat=0.10"
    if ext:
        opts += ",extended_l2=on"
    must([QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", opts, str(path), str(size)])
    cmds = []
    for _ in range(rng.randint(0, 6)):
        length = rng.choice([512, 4 * KIB, 64 * KIB, 300 * KIB, 2 * MIB])
        length = min(length, size)
        off = rng.randrange(0, max(1, size - length + 1)) & ~511
        kind = rng.random()
        if kind < 0.15:
            cmds.append(f"write -z {off} {length}")
        else:
            cmds.append(f"write -P {rng.randint(1, 255)} {off} {length}")
    # Compressed writes need unallocated clusters: at most one, first.
    if not ext and cs <= 65536 and rng.random() < 0.3:
        n = rng.randint(1, 8)
        off = rng.randrange(0, max(1, size // cs - n)) * cs
        if off + n * cs <= size:
            cmds.insert(0, f"write -c -P {rng.randint(1, 255)} {off} {n * cs}")
    if cmds:
        argv = [QEMU_IO, "-f", "qcow2"]
        for c in cmds:
            argv += ["-c", c]
        must(argv + [str(path)])
    snaps = 0
    # A snapshot raises refcounts to 2: not with 1-bit refcounts.
    if rb > 1 and rng.random() < 0.25:
        for i in range(rng.randint(1, 2)):
            # Compressed clusters may already sit near a narrow refcount's maximum.
            if run([QEMU_IMG, "snapshot", "-c", f"s{i}", str(path)])[0] != 0:
                break
            snaps += 1
            more = rng.randrange(0, size) & ~511
            must([QEMU_IO, "-f", "qcow2", "-c", f"write -P 77 {more} 4k", str(path)])
    return {"cs": cs, "rb": rb, "v2": v2, "ext": ext, "size": size, "writes": cmds, "snaps": snaps}


def random_op(rng: random.Random, size: int, cs: int) -> list[str]:
    """Arguments of one random resize (after 'resize')."""
    r = rng.random()
    args = []
    # A shrink over unallocated ranges allocates (and frees) one L2 table per
    # L1 entry in both tools: keep later shrinks quick by bounding the growth
    # to 4096 L1 entries, or make it so large that QEMU refuses it (-EFBIG:
    # an L1 table over 32 MiB).
    l2_cover = cs // 8 * cs
    grows = [d for d in (512, 64 * KIB, MIB, 100 * MIB, 5 * GIB, 700 * GIB)
             if (size + d) // l2_cover <= 4096 or (size + d) // l2_cover > (32 << 20) // 8]
    if r < 0.35:
        new = size + rng.choice(grows)
        spec = str(new) if rng.random() < 0.5 else f"+{new - size}"
    elif r < 0.8:
        new = max(512, size - rng.choice([512, 64 * KIB, MIB, size // 2, size - 512]))
        new = new // 512 * 512
        spec = str(new) if rng.random() < 0.5 else f"-{size - new}"
        if rng.random() < 0.9:
            args.append("--shrink")
    elif r < 0.9:
        spec = str(size + rng.choice([1, 100, 511]))
        args.append("--shrink")
    else:
        spec = "+0"
    return args + ["img.qcow2", spec]


def compare_copies(instar: Path, d_q: Path, d_i: Path, args: list[str]) -> list[str]:
    """Run one op under both tools and return the differences found."""
    problems = []
    link = d_i.parent / "bin" / "qemu-img"
    q = run([QEMU_IMG, "resize", *args], cwd=d_q)
    i = run([str(link), "resize", *args], cwd=d_i)
    if q != i:
        problems.append(f"resize {args}: oracle {q!r} instar {i!r}")
    img_q, img_i = d_q / "img.qcow2", d_i / "img.qcow2"
    lq, li = img_q.stat().st_size, img_i.stat().st_size
    if lq != li:
        problems.append(f"file length: oracle {lq} instar {li}")
    cq = run([QEMU_IMG, "check", "img.qcow2"], cwd=d_q)
    ci = run([QEMU_IMG, "check", "img.qcow2"], cwd=d_i)
    if cq != ci:
        problems.append(f"check: oracle {cq!r} instar {ci!r}")
    c = run([QEMU_IMG, "compare", "-f", "qcow2", "-F", "qcow2", str(img_q), str(img_i)])
    if c[0] != 0:
        problems.append(f"compare: {c!r}")
    return problems


def iteration(instar: Path, rng: random.Random, work: Path, verbose: bool) -> tuple[list[str], int, int]:
    """One random image and 1-3 operations; returns (problems, ops, identical)."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "q").mkdir(parents=True)
    (work / "i").mkdir()
    (work / "bin").mkdir()
    (work / "bin" / "qemu-img").symlink_to(instar)
    params = random_image(rng, work / "q" / "img.qcow2")
    shutil.copy(work / "q" / "img.qcow2", work / "i" / "img.qcow2")
    problems, ops, same = [], 0, 0
    size = params["size"]
    for _ in range(rng.randint(1, 3)):
        args = random_op(rng, size, params["cs"])
        if verbose:
            print(f"  {params} resize {args}", file=sys.stderr)
        p = compare_copies(instar, work / "q", work / "i", args)
        ops += 1
        if p:
            problems += [f"{params}: {x}" for x in p]
            break
        if (work / "q" / "img.qcow2").read_bytes() == (work / "i" / "img.qcow2").read_bytes():
            same += 1
        info = must([QEMU_IMG, "info", "--output=json", "img.qcow2"], cwd=work / "q")
        import json

        size = json.loads(info)["virtual-size"]
    return problems, ops, same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--instar", default=os.environ.get("INSTAR", str(REPO / "build" / "instar")))
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    instar = Path(a.instar).resolve()
    rng = random.Random(a.seed)
    failures, total_ops, identical = 0, 0, 0
    with tempfile.TemporaryDirectory(prefix="fuzz-resize-") as tmp:
        for n in range(a.iterations):
            problems, ops, same = iteration(instar, rng, Path(tmp) / "w", a.verbose)
            total_ops += ops
            identical += same
            if problems:
                failures += 1
                print(f"iteration {n} (seed {a.seed}):", *problems, sep="\n  ")
    print(f"fuzz-resize: seed {a.seed}, {a.iterations} iterations, {total_ops} operations, "
          f"{failures} mismatching iterations, {identical} byte-identical results")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
