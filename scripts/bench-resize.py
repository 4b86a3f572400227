#!/usr/bin/python3
"""Time `instar resize` against `qemu-img resize` on the same images.

Usage: scripts/bench-resize.py [-n RUNS] [--instar PATH]

Two cases, each on a fresh copy of an image made once with qemu-img/qemu-io:
  grow-1t-2t   a 1 TiB qcow2 (64 KiB clusters, 4 MiB written) grown to
               2 TiB: the L1 table is relocated (16 -> 32 KiB).
  shrink-1g    a 1 GiB qcow2 with 256 MiB written in 64 KiB extents all
               over it, shrunk to 256 MiB (--shrink): discard of ~3000
               clusters, refcount updates, tail truncation.
Each case runs RUNS times per tool (default 15), interleaved run by run; the
copy is made before each run and is not timed.  Prints the median wall time
per tool and the ratio of medians (instar / qemu-img; below 1 means instar
is faster).  instar runs through a symlink named qemu-img.  Measures only.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QEMU_IMG = shutil.which("qemu-img") or "/usr/bin/qemu-img"
QEMU_IO = shutil.which("qemu-io") or "/usr/bin/qemu-io"
ENV = dict(os.environ, TZ="UTC", LC_ALL="C")


def sh(*argv, cwd):
    subprocess.run(argv, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL, timeout=1800)


def make_images(d: Path):
    sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "big.qcow2", "1T", cwd=d)
    sh(QEMU_IO, "-f", "qcow2", "-c", "write -P 1 0 4M", "big.qcow2", cwd=d)
    sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "written.qcow2", "1G", cwd=d)
    cmds = []
    for i in range(4096):
        cmds += ["-c", f"write -P {i % 250 + 1} {i * 256 * 1024} 64k"]
    sh(QEMU_IO, "-f", "qcow2", *cmds, "written.qcow2", cwd=d)
    return [("grow-1t-2t", "big.qcow2", ["2T"]), ("shrink-1g", "written.qcow2", ["--shrink", "256M"])]


def timed(argv, cwd):
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    t1 = time.perf_counter()
    if r.returncode != 0:
        sys.exit(f"{argv} failed: {r.stderr.decode(errors='replace')}")
    return (t1 - t0) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=15)
    ap.add_argument("--instar", default=os.environ.get("INSTAR", str(REPO / "build" / "instar")))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-resize-") as tmp:
        d = Path(tmp)
        (d / "bin").mkdir()
        link = d / "bin" / "qemu-img"
        link.symlink_to(Path(a.instar).resolve())
        cases = make_images(d)
        print(f"{'case':<12} {'qemu-img ms':>12} {'instar ms':>10} {'ratio':>6}")
        for name, img, args in cases:
            times = {"qemu": [], "instar": []}
            for _ in range(a.n):
                for tool, exe in (("qemu", QEMU_IMG), ("instar", str(link))):
                    subprocess.run(["cp", "--sparse=always", img, "run.qcow2"], cwd=d, check=True)
                    pos = [x for x in args if x.startswith("--")]
                    size = [x for x in args if not x.startswith("--")]
                    times[tool].append(timed([exe, "resize", *pos, "run.qcow2", *size], d))
            mq, mi = statistics.median(times["qemu"]), statistics.median(times["instar"])
            print(f"{name:<12} {mq:12.2f} {mi:10.2f} {mi / mq:6.2f}")


if __name__ == "__main__":
    main()
