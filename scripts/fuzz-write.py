#!/usr/bin/env python3
"""Differential fuzzing of the block layer's writes (`bench -w -d 1`, `dd`)
against qemu-img 7.2.

Each iteration picks an image of the parity matrix (parity/images.py: mixed
content, extended L2 entries, a backing chain, compressed clusters, small
clusters, v2, refcount width 1, internal snapshots, an odd size) and runs,
on two copies of its files, either `bench -w -d 1` with a random request
size, step, offset, count and pattern, or `dd` to a raw or qcow2 output
with a random block size, skip and count.  With one request in flight
qemu-img is deterministic, so exit code, stdout (timing normalised),
stderr, the written file's bytes and its host data/hole layout must all be
the same as qemu-img's.

Usage: scripts/fuzz-write.py [--seed N] [--iterations N] [--instar PATH] [--dd] [-v]
Exit status 0 when every iteration matched, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "parity"), str(REPO / "tests")]

import output_compare as oc  # noqa: E402
from images import ImageSet  # noqa: E402

ENV = dict(os.environ, TZ="UTC", LC_ALL="C")
IMAGES = ["dp-mixed", "dp-extl2", "dp-chain-top", "dp-zlib-full", "dp-cs512", "dp-cs4k", "dp-v2",
          "dp-snaps", "dp-odd", "dp-rb1", "dp-empty"]
TIMING = re.compile(rb"in \d+\.\d+ seconds")


def virtual_size(path: Path) -> int:
    r = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], capture_output=True,
                       env=ENV, check=True)
    return json.loads(r.stdout)["virtual-size"]


def case(rnd: random.Random, images: ImageSet, dd: bool) -> tuple[list[str], list[str], str]:
    """(argv, files, written file) of one random case."""
    name = rnd.choice(IMAGES)
    rel = images.path(name)
    size = virtual_size(images.root / rel)
    bs = rnd.choice([512, 1000, 4096, 8192, 65536, 100000, 3 << 20])
    if dd:
        argv = ["dd", "-O", rnd.choice(["raw", "qcow2"]), f"if={rel}", "of=out.img", f"bs={bs}"]
        if rnd.random() < 0.5:
            argv.append(f"skip={rnd.randrange(0, size // bs + 2)}")
        if rnd.random() < 0.5:
            argv.append(f"count={rnd.randrange(0, size // bs + 2)}")
        return argv, images.files(name), "out.img"
    off = rnd.randrange(0, size) // rnd.choice([1, 512, 65536]) * rnd.choice([1, 512, 65536])
    off = min(off, size - 1)
    if rnd.random() < 0.7:
        off = min(off, max(0, size - 2 * bs))
    argv = ["bench", "-w", "-d", "1", "-c", str(rnd.choice([1, 5, 20, 60])), "-s", str(bs),
            "-S", str(rnd.choice([0, 4096, 65536, 200 * 1024, 1 << 20, 12345 * 512])),
            "-o", str(off), "--pattern", str(rnd.randrange(256)), rel]
    return argv, images.files(name), rel


def run_case(tools: dict, argv: list[str], files: list[str], written: str, images: ImageSet,
             work: Path) -> str:
    """"" when both tools agree, else what differs."""
    res = {}
    for k, exe in tools.items():
        d = work / k
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for f in files:
            oc.sparse_copy(images.root / f, d / f)
        r = subprocess.run([exe, *argv], cwd=d, capture_output=True, env=ENV, timeout=300)
        res[k] = (r.returncode, TIMING.sub(b"in T", r.stdout), r.stderr)
    if res["qemu-img"] != res["instar"]:
        return f"output: qemu-img {res['qemu-img']!r} instar {res['instar']!r}"
    a, b = work / "qemu-img" / written, work / "instar" / written
    if a.exists() != b.exists():
        return f"{written} exists after qemu-img: {a.exists()}, after instar: {b.exists()}"
    if a.exists() and res["qemu-img"][0] == 0:
        if not oc.same_bytes(a, b):
            return f"{written}: bytes differ at {oc.first_difference(a, b)}"
        if oc.host_extents(a) != oc.host_extents(b):
            return f"{written}: host layout differs"
    return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--instar", default=str(REPO / "build" / "instar"))
    ap.add_argument("--dd", action="store_true", help="fuzz dd instead of bench -w")
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="fuzz-write-") as tmp:
        tmp = Path(tmp)
        (tmp / "bin").mkdir()
        # Through the name qemu-img, so that the message prefix matches.
        os.symlink(Path(a.instar).resolve(), tmp / "bin" / "qemu-img")
        tools = {"qemu-img": shutil.which("qemu-img") or "/usr/bin/qemu-img",
                 "instar": str(tmp / "bin" / "qemu-img")}
        images = ImageSet(tmp / "images")
        for i in range(a.iterations):
            argv, files, written = case(rnd, images, a.dd)
            diff = run_case(tools, argv, files, written, images, tmp / "run")
            if diff:
                bad += 1
                print(f"MISMATCH #{i}: qemu-img {' '.join(argv)}\n  {diff}", flush=True)
            elif a.v:
                print(f"ok #{i}: qemu-img {' '.join(argv)}", flush=True)
    print(f"fuzz-write: seed {a.seed}, {a.iterations} iterations, {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
