#!/usr/bin/python3
"""Time `instar check` against `qemu-img check` on the same images.

Usage: scripts/bench-check.py [-n RUNS] [--instar PATH] [--json] [--hyperfine]
                              [--only scattered|prealloc] [--workdir DIR]

Images are generated in a temp dir (or --workdir, kept and reused) with
qemu-img/qemu-io:

  scattered.qcow2  64 GiB virtual, 1 GiB written as 4096 writes of 256 KiB at
                   pseudo-random, non-overlapping 256 KiB-aligned offsets
                   (random.Random(20261121)), so the L2 tables and refcounts
                   are spread over the whole image;
  prealloc.qcow2   1 TiB created with -o preallocation=metadata (sparse file,
                   ~160 MiB of L2 tables and refcount blocks, 16 Mi clusters).

Each image is timed RUNS times per tool (default 10), interleaving the two
tools run by run so drift affects both equally, after one warm-up run each
(page cache hot).  Prints the median wall time per tool and image and the
ratio of medians (instar / qemu-img).  instar runs through a symlink named
qemu-img, like the parity suite, with TZ=UTC LC_ALL=C.  With --hyperfine,
hyperfine does the timing instead (not interleaved).

The warm-up outputs of the two tools are compared and a difference is
reported on stderr (the timing still runs); this script asserts nothing.
"""

import argparse
import json
import os
import random
import shlex
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

GiB = 1 << 30
SEED = 20261121
N_WRITES = 4096
WRITE_SIZE = 256 << 10


def sh(*argv, cwd, stdin=None):
    subprocess.run(argv, cwd=cwd, env=ENV, check=True, input=stdin, stdout=subprocess.DEVNULL, timeout=3600)


def make_scattered(d: Path) -> str:
    name = "scattered.qcow2"
    if (d / name).exists():
        return name
    tmp = name + ".tmp"
    sh(QEMU_IMG, "create", "-q", "-f", "qcow2", tmp, "64G", cwd=d)
    rng = random.Random(SEED)
    slots = rng.sample(range((64 * GiB) // WRITE_SIZE), N_WRITES)
    # qemu-io reads commands from stdin when no -c is given: one process, 4096 writes
    cmds = "".join(f"write -q -P {i % 251 + 1} {s * WRITE_SIZE} {WRITE_SIZE}\n" for i, s in enumerate(slots))
    sh(QEMU_IO, "-f", "qcow2", tmp, cwd=d, stdin=cmds.encode())
    os.rename(d / tmp, d / name)
    return name


def make_prealloc(d: Path) -> str:
    name = "prealloc.qcow2"
    if not (d / name).exists():
        sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", name + ".tmp", "1T", cwd=d)
        os.rename(d / (name + ".tmp"), d / name)
    return name


IMAGES = {"scattered": make_scattered, "prealloc": make_prealloc}


def run_once(argv, cwd):
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{argv!r} failed (rc={r.returncode}): {r.stderr.decode(errors='replace')}")
    return dt, (r.stdout, r.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=10)
    ap.add_argument("--instar", default=os.environ.get("INSTAR", str(REPO / "build" / "instar")))
    ap.add_argument("--json", action="store_true", help="use --output=json")
    ap.add_argument("--hyperfine", action="store_true", help="let hyperfine do the timing")
    ap.add_argument("--only", choices=sorted(IMAGES), action="append", help="image(s) to time (default: all)")
    ap.add_argument("--workdir", help="keep images here and reuse them across runs")
    a = ap.parse_args()

    instar = Path(a.instar).resolve()
    if not os.access(instar, os.X_OK):
        sys.exit(f"instar binary not found or not executable: {instar}")

    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        tmp = Path(tmp)
        (tmp / "link").mkdir()
        link = tmp / "link" / "qemu-img"
        link.symlink_to(instar)
        imgdir = Path(a.workdir) if a.workdir else tmp / "img"
        imgdir.mkdir(parents=True, exist_ok=True)
        out = ["--output=json"] if a.json else []
        tools = {"qemu-img": QEMU_IMG, "instar": str(link)}

        rows = []
        for key in a.only or list(IMAGES):
            print(f"generating {key} in {imgdir} ...", file=sys.stderr)
            img = IMAGES[key](imgdir)
            argvs = {t: [p, "check", *out, img] for t, p in tools.items()}
            outputs = {t: run_once(argvs[t], imgdir)[1] for t in tools}  # warm-up
            if outputs["qemu-img"] != outputs["instar"]:
                print(f"WARNING: {img}: instar's output differs from qemu-img's:\n"
                      f"  qemu-img: {outputs['qemu-img']!r}\n  instar:   {outputs['instar']!r}", file=sys.stderr)
            if a.hyperfine:
                res = tmp / "hf.json"
                cmds = [" ".join(map(shlex.quote, v)) for v in argvs.values()]
                subprocess.run(["hyperfine", "-N", "-w", "1", "-r", str(a.runs), "--export-json", str(res), *cmds],
                               cwd=imgdir, env=ENV, check=True, stdout=subprocess.DEVNULL)
                r = json.loads(res.read_text())["results"]
                med = {t: r[i]["median"] for i, t in enumerate(tools)}
            else:
                samples = {t: [] for t in tools}
                for i in range(a.runs):
                    order = list(tools) if i % 2 == 0 else list(reversed(tools))
                    for t in order:
                        samples[t].append(run_once(argvs[t], imgdir)[0])
                med = {t: statistics.median(s) for t, s in samples.items()}
            rows.append((img, med["qemu-img"], med["instar"], med["instar"] / med["qemu-img"]))

    print(f"{'image':20s} {'qemu-img ms':>12s} {'instar ms':>12s} {'ratio':>8s}   (medians of {a.runs} runs)")
    for img, q, i, ratio in rows:
        print(f"{img:20s} {q * 1e3:12.2f} {i * 1e3:12.2f} {ratio:8.2f}")


if __name__ == "__main__":
    main()
