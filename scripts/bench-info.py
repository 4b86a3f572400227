#!/usr/bin/python3
"""Time `instar info` against `qemu-img info` on the same images.

Usage: scripts/bench-info.py [-n RUNS] [--instar PATH] [--json] [--prealloc-1t] [--hyperfine]

Images are generated in a temp dir with qemu-img/qemu-io: a small qcow2, a
qcow2 with snapshots and bitmaps, a raw file, a 1 TiB qcow2 and (opt-in,
slow to create) a 1 TiB qcow2 with preallocation=metadata.  Each image is
timed RUNS times per tool (default 30), interleaving the two tools run by
run so drift affects both equally.  Prints the median wall time per tool and
image and the ratio of medians (instar / qemu-img).  instar runs through a
symlink named qemu-img, like the parity suite.  With --hyperfine, hyperfine
does the timing instead (not interleaved; it warms up and reports mean/median).

Both tools run with TZ=UTC LC_ALL=C and `info --force-share` (human output,
or JSON with --json).  This script asserts nothing; it only measures.
"""

import argparse
import json
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


def make_images(d: Path, prealloc: bool):
    imgs = []
    sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "small.qcow2", "64M", cwd=d)
    sh(QEMU_IO, "-f", "qcow2", "-c", "write -P 1 0 1M", "small.qcow2", cwd=d)
    imgs.append("small.qcow2")

    sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "snapbm.qcow2", "1G", cwd=d)
    sh(QEMU_IO, "-f", "qcow2", "-c", "write -P 2 0 4M", "-c", "write -P 3 512M 4M", "snapbm.qcow2", cwd=d)
    for i in range(8):
        sh(QEMU_IMG, "snapshot", "-c", f"snap {i}", "snapbm.qcow2", cwd=d)
    for i in range(4):
        sh(QEMU_IMG, "bitmap", "--add", "-g", str(65536 << i), "snapbm.qcow2", f"bm{i}", cwd=d)
    imgs.append("snapbm.qcow2")

    with open(d / "disk.raw", "wb") as f:
        f.write(b"\1" * 4096)
        f.truncate(1 << 30)
    imgs.append("disk.raw")

    sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "big.qcow2", "1T", cwd=d)
    imgs.append("big.qcow2")
    if prealloc:
        sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", "big-prealloc.qcow2", "1T", cwd=d)
        imgs.append("big-prealloc.qcow2")
    return imgs


def time_once(argv, cwd) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{argv!r} failed (rc={r.returncode}): {r.stderr.decode(errors='replace')}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=30)
    ap.add_argument("--instar", default=os.environ.get("INSTAR", str(REPO / "build" / "instar")))
    ap.add_argument("--json", action="store_true", help="use --output=json")
    ap.add_argument("--prealloc-1t", action="store_true", help="also a 1 TiB preallocation=metadata qcow2 (slow)")
    ap.add_argument("--hyperfine", action="store_true", help="let hyperfine do the timing")
    a = ap.parse_args()

    instar = Path(a.instar).resolve()
    if not os.access(instar, os.X_OK):
        sys.exit(f"instar binary not found or not executable: {instar}")

    with tempfile.TemporaryDirectory(prefix="bench-info-") as tmp:
        tmp = Path(tmp)
        (tmp / "link").mkdir()
        link = tmp / "link" / "qemu-img"
        link.symlink_to(instar)
        imgdir = tmp / "img"
        imgdir.mkdir()
        print(f"generating images in {imgdir} ...", file=sys.stderr)
        imgs = make_images(imgdir, a.prealloc_1t)
        out = ["--output=json"] if a.json else []
        tools = {"qemu-img": QEMU_IMG, "instar": str(link)}

        rows = []
        for img in imgs:
            argvs = {t: [p, "info", "--force-share", *out, img] for t, p in tools.items()}
            if a.hyperfine:
                res = tmp / "hf.json"
                cmds = [" ".join(map(sh_quote, v)) for v in argvs.values()]
                subprocess.run(["hyperfine", "-N", "-w", "3", "-r", str(a.runs), "--export-json", str(res),
                                *cmds], cwd=imgdir, env=ENV, check=True,
                               stdout=subprocess.DEVNULL)
                r = json.loads(res.read_text())["results"]
                med = {t: r[i]["median"] for i, t in enumerate(tools)}
            else:
                samples = {t: [] for t in tools}
                for t in tools:  # one warm-up each
                    time_once(argvs[t], imgdir)
                for i in range(a.runs):
                    order = list(tools) if i % 2 == 0 else list(reversed(tools))
                    for t in order:
                        samples[t].append(time_once(argvs[t], imgdir))
                med = {t: statistics.median(s) for t, s in samples.items()}
            rows.append((img, med["qemu-img"], med["instar"], med["instar"] / med["qemu-img"]))

    print(f"{'image':24s} {'qemu-img ms':>12s} {'instar ms':>12s} {'ratio':>8s}   (medians of {a.runs} runs)")
    for img, q, i, ratio in rows:
        print(f"{img:24s} {q * 1e3:12.2f} {i * 1e3:12.2f} {ratio:8.2f}")


def sh_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


if __name__ == "__main__":
    main()
