#!/usr/bin/python3
"""Time instar's mutating subcommands against qemu-img in the same run.

Usage: scripts/bench-mutate.py [-n RUNS] [--instar PATH] [--workdir DIR] [--only CASE,...]
                               [--scale MIB] [--json FILE]

Images are made once with qemu-img/qemu-io (in --workdir, kept and reused,
or a temp dir); SCALE MiB of guest data stands for the 1 GiB of issue 11's
goals (default 1024; a small --scale is a quick smoke run):

  snap.qcow2    2*SCALE MiB, SCALE MiB written in 1 MiB pieces at every other
                MiB, then 50 snapshots with a 1 MiB write before each;
  base.qcow2 <- top.qcow2
                top has SCALE MiB written over an empty base;
  old.qcow2, new.qcow2 <- rtop.qcow2
                new has SCALE MiB written that old has not; rtop (backed by
                old) has a little of its own;
  meta.qcow2    1 TiB with preallocation=metadata (refcount_bits=16).

Cases (each run on fresh copies of its images, made before the timer starts):
  snap-create  snapshot -c new snap.qcow2
  snap-delete  snapshot -d s25 snap.qcow2
  commit       commit top.qcow2                 (SCALE MiB into the base)
  rebase       rebase -b new.qcow2 -F qcow2 rtop.qcow2   (safe: SCALE MiB differ)
  amend-rb64   amend -o refcount_bits=64 meta.qcow2

Each case runs RUNS times per tool (default 3), interleaved, after one
warm-up each.  Prints the median wall time, the ratio qemu-img / instar
(above 1: instar is faster) and the peak proportional set size of each
tool's process tree, with the sampler of scripts/bench-convert.py.  A case
a tool fails (instar: a subcommand not built yet) is reported with its
last stderr line.  Measures only; asserts nothing.
"""

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_convert", REPO / "scripts" / "bench-convert.py")
bc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bc)

QEMU_IMG, QEMU_IO = bc.QEMU_IMG, bc.QEMU_IO

CASES = {
    "snap-create": (["snap.qcow2"], ["snapshot", "-c", "new", "snap.qcow2"]),
    "snap-delete": (["snap.qcow2"], ["snapshot", "-d", "s25", "snap.qcow2"]),
    "commit": (["base.qcow2", "top.qcow2"], ["commit", "top.qcow2"]),
    "rebase": (["old.qcow2", "new.qcow2", "rtop.qcow2"], ["rebase", "-b", "new.qcow2", "-F", "qcow2", "rtop.qcow2"]),
    "amend-rb64": (["meta.qcow2"], ["amend", "-o", "refcount_bits=64", "meta.qcow2"]),
}


def qio_writes(path, wd, mib, step=2, pattern=0x5a, first=0):
    """qemu-io writes of 1 MiB at every step-th MiB from first, mib of them, batched."""
    cmds = []
    for i in range(mib):
        cmds += ["-c", f"write -P {(pattern + i) & 0xff} {first + i * step}M 1M"]
        if len(cmds) >= 512 or i == mib - 1:
            bc.sh([QEMU_IO, "-f", "qcow2", *cmds, path], wd)
            cmds = []


def make_images(wd: Path, scale: int):
    stamp = wd / f"done-{scale}"
    if stamp.exists():
        return
    size = f"{2 * scale}M"
    bc.sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "snap.qcow2", size], wd)
    qio_writes("snap.qcow2", wd, scale)
    for i in range(50):
        bc.sh([QEMU_IO, "-f", "qcow2", "-c", f"write -P {i} {(2 * i + 1) % (2 * scale)}M 1M", "snap.qcow2"], wd)
        bc.sh([QEMU_IMG, "snapshot", "-c", f"s{i}", "snap.qcow2"], wd)

    bc.sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "base.qcow2", size], wd)
    bc.sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"], wd)
    qio_writes("top.qcow2", wd, scale)

    bc.sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "old.qcow2", size], wd)
    bc.sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "new.qcow2", size], wd)
    qio_writes("new.qcow2", wd, scale)
    bc.sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", "old.qcow2", "-F", "qcow2", "rtop.qcow2"], wd)
    qio_writes("rtop.qcow2", wd, 8, step=max(2, scale // 4), pattern=0x33, first=1)

    bc.sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", "meta.qcow2", "1T"], wd)
    stamp.touch()


def fresh(files, src: Path, run: Path):
    """Copies of files in run/, holes kept (cp's default sparse detection)."""
    if run.exists():
        shutil.rmtree(run)
    run.mkdir()
    for f in files:
        subprocess.run(["cp", "--sparse=always", str(src / f), str(run / f)], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--instar", default=str(REPO / "build" / "instar"))
    ap.add_argument("--workdir")
    ap.add_argument("--only")
    ap.add_argument("--scale", type=int, default=1024)
    ap.add_argument("--json")
    a = ap.parse_args()

    wd = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="bench-mutate-"))
    src = wd / f"src-{a.scale}"
    src.mkdir(parents=True, exist_ok=True)
    make_images(src, a.scale)
    link = wd / "bin" / "qemu-img"
    link.parent.mkdir(exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(a.instar).resolve())

    cases = a.only.split(",") if a.only else list(CASES)
    tools = {"qemu-img": [QEMU_IMG], "instar": [str(link)]}
    run = wd / "run"
    rows = []
    for case in cases:
        files, argv = CASES[case]
        times = {t: [] for t in tools}
        pss = {t: 0 for t in tools}
        failed = {}
        for t, pre in tools.items():  # warm-up
            fresh(files, src, run)
            _, _, rc, err = bc.run_once(pre + argv, run)
            if rc != 0:
                failed[t] = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
        for _ in range(a.n):
            for t, pre in tools.items():
                if t in failed:
                    continue
                fresh(files, src, run)
                s, m, _, _ = bc.run_once(pre + argv, run)
                times[t].append(s)
                pss[t] = max(pss[t], m)
        row = {"case": case, "failed": failed}
        line = f"{case:12s}"
        for t in tools:
            if times[t]:
                row[t] = statistics.median(times[t])
                row[t + "_spread"] = max(times[t]) - min(times[t])
                row[t + "_pss_kib"] = pss[t]
                line += f"  {t} {row[t]:.3f}s (±{row[t + '_spread'] / 2:.3f}, {pss[t] // 1024} MiB peak)"
            else:
                line += f"  {t} FAILED: {failed.get(t)}"
        if "qemu-img" in row and "instar" in row:
            row["speedup"] = row["qemu-img"] / row["instar"]
            line += f"  qemu-img/instar {row['speedup']:.2f}x"
        rows.append(row)
        print(line, flush=True)
    if run.exists():
        shutil.rmtree(run)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if not a.workdir:
        shutil.rmtree(wd)


if __name__ == "__main__":
    sys.exit(main())
