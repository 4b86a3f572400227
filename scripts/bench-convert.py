#!/usr/bin/python3
"""Time `instar convert` (and compare, map) against qemu-img in the same run.

Usage: scripts/bench-convert.py [-n RUNS] [--instar PATH] [--baseline PATH] [--workdir DIR]
                                [--only CASE,...] [--json FILE]

Images are made once with qemu-img/qemu-io in a temp dir (or --workdir,
kept and reused):

  data.raw      2 GiB, sparse, 1 GiB written in 1 MiB pieces at every other
                MiB: a quarter random bytes, the rest log-like text (zlib
                compresses it to about 45 %, nothing is zero);
  data.qcow2    the same guest data, 64 KiB clusters;
  zlib.qcow2    data.qcow2 converted with -c (zlib);  zstd.qcow2: with zstd;
  chain.qcow2   the top of a 3-deep chain (base, mid, top each writing a third);
  empty.qcow2   1 TiB, nothing written (block status is everything);
  data.vmdk, stream.vmdk, data.vhdx, data.vpc
                data.raw converted by qemu-img to vmdk (monolithicSparse and
                streamOptimized), vhdx and vpc (dynamic), made only when a
                case that reads them runs.

Cases (output in the work dir, removed before each run):
  qcow2-raw    convert -O raw data.qcow2         (and cp --sparse=always data.raw)
  raw-qcow2    convert -O qcow2 data.raw
  raw-qcow2-c  convert -c -O qcow2 data.raw
  zlib-raw     convert -O raw zlib.qcow2
  zstd-raw     convert -O raw zstd.qcow2
  chain-raw    convert -O raw chain.qcow2
  empty-raw    convert -O raw empty.qcow2
  vmdk-raw     convert -O raw data.vmdk     (and vmdkso-raw: stream.vmdk,
  vhdx-raw     convert -O raw data.vhdx      vpc-raw: data.vpc)
  compare      compare data.qcow2 data.raw
  map          map --output=json data.qcow2

Each case is run RUNS times per tool (default 5), interleaved run by run
in a rotating order, after one warm-up each (page cache hot).  Prints the median wall time,
throughput over the guest data (1 GiB), the ratio qemu-img / instar
(above 1: instar is faster) and the peak memory of each tool: the
proportional set size (PSS, shared pages split between the processes
that map them) summed over the process tree, sampled every 5 ms, so that
instar's sandbox process counts with its host process (ru_maxrss alone
sees only the first process).  A run shorter than the sampling interval
may show less than it used.  Each time is followed by the spread of the
runs (min-max).  instar runs through a symlink named qemu-img.
--baseline PATH adds a third tool, another instar binary (say the build
before a change), interleaved with the other two and compared with
qemu-img likewise, so that before and after come from the same run.  A case instar
fails is reported as such with its stderr.  Measures only; asserts nothing.
"""

import argparse
import json
import os
import random
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
GIB = 1 << 30
MIB = 1 << 20


def sh(argv, cwd):
    subprocess.run(argv, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL)


def make_images(wd: Path):
    if (wd / "done").exists():
        return
    # 1 GiB of data in every other MiB of 2 GiB, about as compressible as
    # a system image (a quarter random bytes, the rest log-like text).
    rnd = random.Random(1)
    with open(wd / "data.raw", "wb") as f:
        f.truncate(2 * GIB)
        for i in range(1024):
            text = b"".join(b"%08d host%03d service[%05d]: request %d done in %d ms\n" %
                            (i * 13000 + k, k % 7, rnd.randrange(99999), k, rnd.randrange(500))
                            for k in range(13000))
            chunk = (rnd.randbytes(MIB // 4) + text)[:MIB]
            f.seek(2 * i * MIB)
            f.write(chunk)
    sh([QEMU_IMG, "convert", "-O", "qcow2", "data.raw", "data.qcow2"], wd)
    sh([QEMU_IMG, "convert", "-c", "-O", "qcow2", "data.qcow2", "zlib.qcow2"], wd)
    sh([QEMU_IMG, "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", "data.qcow2",
        "zstd.qcow2"], wd)
    sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "base.qcow2", "2G"], wd)
    sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "mid.qcow2"], wd)
    sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "chain.qcow2"], wd)
    for n, name in enumerate(["base.qcow2", "mid.qcow2", "chain.qcow2"]):
        cmds = []
        for i in range(n, 1024, 3):
            cmds += ["-c", f"write -P {1 + (i + n) % 250} {2 * i}M 1M"]
        sh([QEMU_IO, *cmds, name], wd)
    sh([QEMU_IMG, "create", "-q", "-f", "qcow2", "empty.qcow2", "1T"], wd)
    (wd / "done").write_text("")


# Other formats' images, made from data.raw by qemu-img when a case needs them.
FORMAT_IMAGES = {
    "data.vmdk": ["-O", "vmdk"],
    "stream.vmdk": ["-O", "vmdk", "-o", "subformat=streamOptimized"],
    "data.vhdx": ["-O", "vhdx"],
    "data.vpc": ["-O", "vpc"],
}


def make_format_image(wd: Path, name: str):
    if not (wd / name).exists():
        sh([QEMU_IMG, "convert", *FORMAT_IMAGES[name], "data.raw", name + ".tmp"], wd)
        (wd / (name + ".tmp")).rename(wd / name)


CASES = {
    "qcow2-raw": ["convert", "-O", "raw", "data.qcow2", "out"],
    "raw-qcow2": ["convert", "-O", "qcow2", "data.raw", "out"],
    "raw-qcow2-c": ["convert", "-c", "-O", "qcow2", "data.raw", "out"],
    "zlib-raw": ["convert", "-O", "raw", "zlib.qcow2", "out"],
    "zstd-raw": ["convert", "-O", "raw", "zstd.qcow2", "out"],
    "chain-raw": ["convert", "-O", "raw", "chain.qcow2", "out"],
    "empty-raw": ["convert", "-O", "raw", "empty.qcow2", "out"],
    "vmdk-raw": ["convert", "-O", "raw", "data.vmdk", "out"],
    "vmdkso-raw": ["convert", "-O", "raw", "stream.vmdk", "out"],
    "vhdx-raw": ["convert", "-O", "raw", "data.vhdx", "out"],
    "vpc-raw": ["convert", "-O", "raw", "data.vpc", "out"],
    "compare": ["compare", "data.qcow2", "data.raw"],
    "map": ["map", "--output=json", "data.qcow2"],
}


def tree_pss_kib(pid):
    """PSS of pid and its descendants, KiB (0 for what has gone)."""
    total, todo = 0, [pid]
    while todo:
        q = todo.pop()
        try:
            for line in Path(f"/proc/{q}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
            for task in Path(f"/proc/{q}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            pass
    return total


def run_once(argv, wd):
    """(wall seconds, peak tree PSS KiB, exit code, stderr) of one run."""
    out = wd / "out"
    if out.exists():
        out.unlink()
    errf = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=wd, env=ENV, stdout=subprocess.DEVNULL, stderr=errf)
    peak, exe = 0, os.fsencode(argv[0])
    while True:
        try:  # not before the exec: the forked child is a copy of this Python
            execd = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")[0] == exe
        except OSError:
            execd = False
        if execd:
            peak = max(peak, tree_pss_kib(p.pid))
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.005)
    t1 = time.perf_counter()
    p.returncode = os.waitstatus_to_exitcode(status)
    errf.seek(0)
    return t1 - t0, peak, p.returncode, errf.read().decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--instar", default=str(REPO / "build" / "instar"))
    ap.add_argument("--baseline")
    ap.add_argument("--workdir")
    ap.add_argument("--only")
    ap.add_argument("--json")
    a = ap.parse_args()

    wd = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="bench-convert-"))
    wd.mkdir(parents=True, exist_ok=True)
    make_images(wd)
    def qemu_img_link(sub, target):
        link = wd / sub / "qemu-img"
        link.parent.mkdir(exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(target).resolve())
        return link

    cases = a.only.split(",") if a.only else list(CASES)
    tools = {"qemu-img": [QEMU_IMG], "instar": [str(qemu_img_link("bin", a.instar))]}
    if a.baseline:
        tools["baseline"] = [str(qemu_img_link("bin-baseline", a.baseline))]
    rows = []
    for case in cases:
        for arg in CASES[case]:
            if arg in FORMAT_IMAGES:
                make_format_image(wd, arg)
        times = {t: [] for t in tools}
        rss = {t: 0 for t in tools}
        failed = {}
        extra = {}
        for t, pre in tools.items():  # warm-up
            _, _, rc, err = run_once(pre + CASES[case], wd)
            if rc not in (0, 1) or (case != "compare" and rc != 0):
                failed[t] = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
        if case == "qcow2-raw":
            tools_cp = ["cp", "--sparse=always", "data.raw", "out"]
            run_once(tools_cp, wd)
            extra["cp"] = []
        for r in range(a.n):
            order = list(tools.items())
            order = order[r % len(order):] + order[:r % len(order)]  # rotate who goes first
            for t, pre in order:
                if t in failed:
                    continue
                s, m, _, _ = run_once(pre + CASES[case], wd)
                times[t].append(s)
                rss[t] = max(rss[t], m)
            if "cp" in extra:
                s, _, _, _ = run_once(["cp", "--sparse=always", "data.raw", "out"], wd)
                extra["cp"].append(s)
        row = {"case": case, "failed": failed}
        for t in tools:
            if times[t]:
                row[t] = statistics.median(times[t])
                row[t + "_min"], row[t + "_max"] = min(times[t]), max(times[t])
                row[t + "_rss_kib"] = rss[t]
        if "cp" in extra:
            row["cp"] = statistics.median(extra["cp"])
        if "qemu-img" in row and "instar" in row:
            row["speedup"] = row["qemu-img"] / row["instar"]
        if "qemu-img" in row and "baseline" in row:
            row["speedup_baseline"] = row["qemu-img"] / row["baseline"]
        if "cp" in row and "instar" in row:
            row["vs_cp"] = row["cp"] / row["instar"]
        rows.append(row)
        line = f"{case:10s}"
        for t in tools:
            if t in row:
                line += (f"  {t} {row[t]:.3f}s [{row[t + '_min']:.3f}-{row[t + '_max']:.3f}]"
                         f" ({GIB / row[t] / MIB:.0f} MiB/s, {row[t + '_rss_kib'] // 1024} MiB peak)")
            else:
                line += f"  {t} FAILED: {failed.get(t)}"
        if "speedup" in row:
            line += f"  qemu-img/instar {row['speedup']:.2f}x"
        if "speedup_baseline" in row:
            line += f"  qemu-img/baseline {row['speedup_baseline']:.2f}x"
        if "vs_cp" in row:
            line += f"  cp {row['cp']:.3f}s, cp/instar {row['vs_cp']:.2f}x"
        print(line, flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if not a.workdir:
        shutil.rmtree(wd)


if __name__ == "__main__":
    sys.exit(main())
