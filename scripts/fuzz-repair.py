#!/usr/bin/python3
"""Differential fuzzing of `check -r` against qemu-img 7.2.

Each iteration takes a qemu-made base image (tests/corrupt_check.py's
bases: data, snapshots, compressed, extended L2, lazy refcounts, v2, at
refcount widths 1..64), injects 1-4 random corruptions read from the image's
own metadata (refcounts set to random values, L2/L1 entries cleared, bits
flipped, COPIED flags toggled, refcount table entries moved), and repairs two
copies: one with qemu-img, one with instar.  A finding is:

* instar refused (its "ERROR refusing to repair" line) yet changed the file;
* instar bounded a growth ("ERROR refusing to grow the image") and is not
  clean where qemu-img's repair is;
* otherwise: a different exit code, stdout or stderr; a different
  `qemu-img check` result of the two repaired copies; or, where qemu-img's
  repair is clean, guest data that differs (`qemu-img compare`).

Usage: scripts/fuzz-repair.py [--seed S] [--iterations N] [--instar PATH]
                              [--keep DIR]
Exit 0 when no finding, 1 otherwise (findings are copied to --keep).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import corrupt_check as cc  # noqa: E402

REFUSED = b"ERROR refusing to repair"
MODES = ("leaks", "all")
GROW_REFUSED = b"ERROR refusing to grow the image"


def run(argv, cwd):
    env = dict(os.environ, TZ="UTC", LC_ALL="C")
    p = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=120, env=env)
    return p.returncode, p.stdout, p.stderr


def mutate(q: cc.Qcow2, rng: random.Random) -> list[str]:
    """Apply 1-4 random corruptions; return their descriptions."""
    done = []
    guests = [g for (_, g, _) in cc.DATA]
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["refcount", "l2-clear", "l2-copied", "l1-copied", "refcount-meta",
                           "l2-bitflip", "rt-entry"])
        try:
            if kind == "refcount":
                g = rng.choice(guests)
                host = q.data_cluster(g)
                v = rng.randint(0, (1 << min(q.refcount_bits, 3)) - 1)
                q.set_refcount(host, v)
            elif kind == "l2-clear":
                q.set_l2(rng.choice(guests), 0)
            elif kind == "l2-copied":
                g = rng.choice(guests)
                q.set_l2(g, q.l2(g) ^ cc.COPIED)
            elif kind == "l1-copied":
                q.put64(q.l1_entry_off(0), q.l1(0) ^ cc.COPIED)
            elif kind == "refcount-meta":
                host = rng.choice([0, q.l1_offset, q.rt_offset, q.l2_table(0), q.rt(0) & cc.OFFSET_MASK])
                q.set_refcount(host, rng.randint(0, min(3, (1 << q.refcount_bits) - 1)))
            elif kind == "l2-bitflip":
                g = rng.choice(guests)
                q.set_l2(g, q.l2(g) ^ (1 << rng.choice([9, 16, 17, 20, 30, 40, 55, 56, 62])))
            elif kind == "rt-entry":
                q.set_rt(rng.randint(1, 3), rng.choice([0, q.past_eof(rng.randint(1, 8)),
                                                        q.data_cluster(rng.choice(guests))]))
        except (ValueError, AssertionError, IndexError, struct_error()):
            continue
        done.append(kind)
    return done


def struct_error():
    import struct

    return struct.error


def one(rng, instar, work, cache, it):
    base = rng.choice(list(cc.BASES))
    width = rng.choice([w for w in cc.WIDTHS if w not in cc.BASE_SKIPS.get(base, {})])
    q = cc.Qcow2(cache.get(base, width))
    kinds = mutate(q, rng)
    mode = rng.choice(MODES)
    d = work / f"it{it}"
    (d / "o").mkdir(parents=True)
    (d / "i").mkdir()
    src = d / "src.qcow2"
    src.write_bytes(bytes(q.b))
    shutil.copyfile(src, d / "o" / "t.qcow2")
    shutil.copyfile(src, d / "i" / "t.qcow2")
    ro = run(["qemu-img", "check", "-r", mode, "t.qcow2"], d / "o")
    ri = run([instar, "check", "-r", mode, "t.qcow2"], d / "i")
    what = f"it{it} {base}-rb{width} -r {mode} {kinds}"
    if REFUSED in ri[2]:
        if not filecmp.cmp(src, d / "i" / "t.qcow2", shallow=False):
            return f"{what}: refused but changed the file"
        shutil.rmtree(d)
        return None
    if GROW_REFUSED in ri[2]:
        # Documented: instar bounds the growth where qemu-img grows the file
        # (by GiBs, or fails at the file system's limit).  What follows can
        # differ; accept it unless qemu-img's repair is clean and instar's
        # is not.
        co = run(["qemu-img", "check", "t.qcow2"], d / "o")
        ci = run(["qemu-img", "check", "t.qcow2"], d / "i")
        if co[0] == 0 and ci[0] != 0:
            return f"{what}: growth refused and not clean where qemu-img's repair is"
        shutil.rmtree(d)
        return None
    if ro != ri:
        return f"{what}: output differs\n--- qemu-img rc={ro[0]}\n{ro[2].decode()}--- instar rc={ri[0]}\n{ri[2].decode()}"
    co = run(["qemu-img", "check", "t.qcow2"], d / "o")
    ci = run(["qemu-img", "check", "t.qcow2"], d / "i")
    if co[:2] != ci[:2]:
        return f"{what}: re-check differs: qemu-img rc={co[0]}, instar rc={ci[0]}"
    if co[0] == 0:
        cmp = run(["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", "o/t.qcow2", "i/t.qcow2"], d)
        # 1 is a mismatch; 2 means data unreadable in both (e.g. a bit flip
        # made an entry compressed): not a repair difference.
        if cmp[0] == 1:
            return f"{what}: guest data differs after clean repairs"
    shutil.rmtree(d)
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--instar", default=str(HERE.parent / "build" / "instar"))
    ap.add_argument("--keep", default=None, help="directory for findings")
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    findings = 0
    with tempfile.TemporaryDirectory(prefix="instar-fuzz-repair-") as tmp:
        work = Path(tmp)
        cache = cc.BaseCache(work / "_bases")
        # Run instar as "qemu-img" so that message prefixes compare equal.
        (work / "bin").mkdir()
        os.symlink(os.path.abspath(a.instar), work / "bin" / "qemu-img")
        instar = str(work / "bin" / "qemu-img")
        for it in range(a.iterations):
            f = one(rng, instar, work, cache, it)
            if f:
                findings += 1
                print("FINDING", f)
                if a.keep:
                    # sparse: qemu-img's repair can grow a file to many GiB
                    Path(a.keep).mkdir(parents=True, exist_ok=True)
                    subprocess.run(["cp", "-r", "--sparse=always", str(work / f"it{it}"),
                                    str(Path(a.keep))], check=False)
    print(f"fuzz-repair: seed {a.seed}, {a.iterations} iterations, {findings} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
