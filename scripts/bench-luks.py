#!/usr/bin/python3
"""Time LUKS work (PBKDF2, AES-XTS) in instar against qemu-img, same run.

Usage: scripts/bench-luks.py [-n RUNS] [--instar PATH] [--size-mb N] [--features LIST]

Images, made once by qemu-img with its default iter-time (2 s of its own
PBKDF2 benchmark, so their iteration counts are tuned to qemu-img's
speed): an encrypted qcow2 (`encrypt.format=luks`) and a raw LUKS volume,
each converted from N MiB (default 64) of random data.  Cases:

  info        `info` of each, opened with its secret (--image-opts)
  convert     `convert -O raw` of each: one unlock (PBKDF2 over the slot's
              iterations and the master key digest's), then AES-XTS
              decryption of every sector
  create      `create -f luks` and `-f qcow2 -o encrypt.format=luks` with
              iter-time=100: the PBKDF2 benchmark, whose iteration counts
              show each tool's PBKDF2 speed (iterations per second of
              PBKDF2-HMAC-SHA256 = slot iterations * 1000 / iter-time)

Each case runs RUNS times per tool (default 3), interleaved.  Printed: the
median wall time and, where `perf` works, the median CPU time of the whole
process tree (`perf stat -e task-clock`: on a busy machine wall time
mostly measures the other load), and instar / qemu-img ratios.
--features runs instar once per INSTAR_CPU_FEATURES mask in LIST (e.g.
0,1,7: portable C, x86-64 assembly, everything; default: the host's own),
to show what each of nettle's code paths is worth.  Asserts nothing.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ENV, QEMU_IMG, REPO, describe_host  # noqa: E402

SECRET = ["--object", "secret,id=sec0,data=benchpass"]
PERF = shutil.which("perf")


def run(argv, env, cwd):
    """(wall seconds, CPU seconds of the process tree or None)."""
    cmd = list(argv)
    if PERF:
        cmd = [PERF, "stat", "-x,", "-e", "task-clock", "-o", str(cwd / "perf.out"), "--"] + cmd
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{argv!r} failed (rc={r.returncode}): {r.stderr.decode(errors='replace')}")
    cpu = None
    if PERF:
        for line in (cwd / "perf.out").read_text().splitlines():
            f = line.split(",")
            if len(f) > 2 and f[2] == "task-clock" and f[0] not in ("", "<not counted>", "<not supported>"):
                cpu = float(f[0]) / 1000.0
    return wall, cpu


def slot_iters(img, fmt):
    r = subprocess.run([QEMU_IMG, "info", "--output=json", "-f", fmt, str(img)], env=ENV,
                       stdout=subprocess.PIPE, check=True)
    data = json.loads(r.stdout)["format-specific"]["data"]
    if fmt == "qcow2":
        data = data["encrypt"]
    slot = next(s for s in data["slots"] if s["active"])
    return slot["iters"], data["master-key-iters"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--instar", default=str(REPO / "build" / "instar"))
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--features", default="")
    a = ap.parse_args()
    instar = Path(a.instar).resolve()
    masks = [m for m in a.features.split(",") if m] or [None]
    host = describe_host(instar)
    print(f"# {host['date']} {host['host']} cpus={host['cpus']} {host['qemu_img']} "
          f"{' '.join(host['instar'])} ({host['git_tree']}); perf: {'yes' if PERF else 'no (wall only)'}")

    with tempfile.TemporaryDirectory(prefix="bench-luks-") as td:
        tmp = Path(td)
        with open(tmp / "data.raw", "wb") as f:
            f.write(os.urandom(a.size_mb << 20))
        images = {
            "qcow2-luks": ("qcow2", ["-O", "qcow2", "-o", "encrypt.format=luks,encrypt.key-secret=sec0"],
                           "driver=qcow2,encrypt.key-secret=sec0,file.filename="),
            "luks": ("luks", ["-O", "luks", "-o", "key-secret=sec0"], "driver=luks,key-secret=sec0,file.filename="),
        }
        for name, (fmt, opts, _) in images.items():
            subprocess.run([QEMU_IMG, "convert", *SECRET, "-f", "raw", *opts, "data.raw", name], cwd=tmp,
                           env=ENV, check=True)
            it, mk = slot_iters(tmp / name, fmt)
            print(f"# {name}: made by qemu-img, default iter-time: slot iterations {it}, master key {mk}")

        cases = []
        for name, (fmt, _, spec) in images.items():
            cases.append((f"info {name}", ["info", *SECRET, "--image-opts", spec + name], None))
            cases.append((f"convert -O raw {name}",
                          ["convert", *SECRET, "--image-opts", spec + name, "-O", "raw", "out.raw"], None))
        cases.append(("create -f luks iter-time=100",
                      ["create", *SECRET, "-f", "luks", "-o", "key-secret=sec0,iter-time=100", "new.luks", "16M"],
                      ("new.luks", "luks")))
        cases.append(("create qcow2 luks iter-time=100",
                      ["create", *SECRET, "-f", "qcow2", "-o", "encrypt.format=luks,encrypt.key-secret=sec0,"
                       "encrypt.iter-time=100", "new.qcow2", "16M"], ("new.qcow2", "qcow2")))

        tools = [("qemu-img", QEMU_IMG, None)] + [(f"instar{'' if m is None else ' mask=' + m}", str(instar), m)
                                                  for m in masks]
        print(f"\n| case | tool | wall s | CPU s | wall / qemu-img | CPU / qemu-img | slot iters |")
        print("|---|---|---|---|---|---|---|")
        for title, argv, made in cases:
            samples = {t[0]: [] for t in tools}
            iters = {t[0]: [] for t in tools}
            for _ in range(a.n):
                for label, exe, mask in tools:
                    env = dict(ENV)
                    env.pop("INSTAR_CPU_FEATURES", None)
                    if mask is not None:
                        env["INSTAR_CPU_FEATURES"] = mask
                    samples[label].append(run([exe, *argv], env, tmp))
                    if made:
                        iters[label].append(slot_iters(tmp / made[0], made[1])[0])
                        (tmp / made[0]).unlink()
            base_w = statistics.median(s[0] for s in samples["qemu-img"])
            base_c = [s[1] for s in samples["qemu-img"] if s[1] is not None]
            base_c = statistics.median(base_c) if base_c else None
            for label, _, _ in tools:
                w = statistics.median(s[0] for s in samples[label])
                c = [s[1] for s in samples[label] if s[1] is not None]
                c = statistics.median(c) if c else None
                its = f"{int(statistics.median(iters[label]))}" if iters[label] else ""
                print(f"| {title} | {label} | {w:.3f} | {'' if c is None else f'{c:.3f}'} | {w / base_w:.2f} | "
                      f"{'' if c is None or not base_c else f'{c / base_c:.2f}'} | {its} |")
        print("\nPBKDF2-HMAC-SHA256 iterations/s = slot iters * 10 (iter-time=100).")


if __name__ == "__main__":
    main()
