#!/usr/bin/python3
"""Time `instar create` against `qemu-img create` with the same options.

Usage: scripts/bench-create.py [-n RUNS] [--instar PATH] [--only NAME] [--workdir DIR]

Cases: a plain 1 TiB qcow2, a 1 TiB qcow2 with preallocation=metadata
(sparse; about 160 MiB of L2 tables and refcount blocks written), and a
64 GiB one with preallocation=metadata.  Each run creates a fresh file in
an empty directory (the file is deleted after each run, outside the timed
part); the two tools alternate run by run so drift affects both equally.
Prints the median wall time per tool and case and the ratio of medians
(instar / qemu-img).  instar runs through a symlink named qemu-img, like
the parity suite.  The first run of each case also checks that both tools
wrote the same bytes (a difference is printed as a warning; parity tests
are the place that asserts it).

Both tools run with TZ=UTC LC_ALL=C and -q.  This script asserts nothing;
it only measures.
"""

import argparse
import filecmp
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
ENV = dict(os.environ, TZ="UTC", LC_ALL="C")

CASES = {
    "plain-1T": ["-f", "qcow2", "{out}", "1T"],
    "metadata-64G": ["-f", "qcow2", "-o", "preallocation=metadata", "{out}", "64G"],
    "metadata-1T": ["-f", "qcow2", "-o", "preallocation=metadata", "{out}", "1T"],
}


def time_once(argv, cwd) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{argv!r} failed (rc={r.returncode}): {r.stderr.decode(errors='replace')}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=5)
    ap.add_argument("--instar", default=os.environ.get("INSTAR", str(REPO / "build" / "instar")))
    ap.add_argument("--only", choices=list(CASES), action="append", help="run only this case (repeatable)")
    ap.add_argument("--workdir", help="directory for the created files (default: a temp dir)")
    a = ap.parse_args()

    instar = Path(a.instar).resolve()
    if not os.access(instar, os.X_OK):
        sys.exit(f"instar binary not found or not executable: {instar}")

    with tempfile.TemporaryDirectory(prefix="bench-create-", dir=a.workdir) as tmp:
        tmp = Path(tmp)
        (tmp / "link").mkdir()
        link = tmp / "link" / "qemu-img"
        link.symlink_to(instar)
        tools = {"qemu-img": QEMU_IMG, "instar": str(link)}
        work = {t: tmp / t for t in tools}
        for d in work.values():
            d.mkdir()

        rows = []
        for name in a.only or list(CASES):
            argvs = {t: [p, "create", "-q", *(x.format(out="x.qcow2") for x in CASES[name])]
                     for t, p in tools.items()}
            for t in tools:  # one warm-up each, kept for the comparison
                time_once(argvs[t], work[t])
            if not filecmp.cmp(work["qemu-img"] / "x.qcow2", work["instar"] / "x.qcow2", shallow=False):
                print(f"warning: {name}: the two files differ", file=sys.stderr)
            samples = {t: [] for t in tools}
            for i in range(a.runs):
                order = list(tools) if i % 2 == 0 else list(reversed(tools))
                for t in order:
                    (work[t] / "x.qcow2").unlink()
                    samples[t].append(time_once(argvs[t], work[t]))
            for t in tools:
                (work[t] / "x.qcow2").unlink()
            med = {t: statistics.median(s) for t, s in samples.items()}
            rows.append((name, med["qemu-img"], med["instar"], med["instar"] / med["qemu-img"]))

    print(f"{'case':16s} {'qemu-img ms':>12s} {'instar ms':>12s} {'ratio':>8s}   (medians of {a.runs} runs)")
    for name, q, i, ratio in rows:
        print(f"{name:16s} {q * 1e3:12.2f} {i * 1e3:12.2f} {ratio:8.2f}")


if __name__ == "__main__":
    main()
