#!/usr/bin/env python3
"""Differential fuzzing of `instar rebase` against qemu-img 7.2.

Each iteration makes a random chain with the oracle (base <- mid <- top, and
a separate new.qcow2): one cluster size (512 B to 2 MiB), sometimes
extended L2 or a v2 image, each image of its own virtual size (shorter or
longer than the top), with random plain, zero, compressed writes and
discards of random sizes.  Then it rebases the top onto new.qcow2, onto
base or mid (qemu's prefix chain), or onto nothing (-b ''), sometimes with
-p, under both tools on copies of the directory: exit code, stdout and
stderr must match, and every file byte for byte.

Usage: scripts/fuzz-rebase.py [--seed N] [--iterations N] [--instar PATH] [-v]
Exit status 0 when every iteration matched, 1 otherwise.  --instar
/usr/bin/qemu-img checks the fuzzer itself: it must then pass.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
from pathlib import Path

QEMU_IMG = shutil.which("qemu-img") or "/usr/bin/qemu-img"
QEMU_IO = shutil.which("qemu-io") or "/usr/bin/qemu-io"
NAMES = ["base", "mid", "top", "new"]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, timeout=300)


def random_write(rng: random.Random, size: int, cs: int) -> str | None:
    off = rng.randrange(0, max(size // 512, 1)) * 512
    ln = min(size - off, rng.choice([512, 1536, cs, 2 * cs, rng.randrange(1, 400) * 512]))
    if ln <= 0:
        return None
    kind = rng.randrange(4)
    if kind == 0:
        return f"write -P {rng.randrange(1, 250)} {off} {ln}"
    if kind == 1:
        return f"write -z {off} {ln}"
    if kind == 2:
        off = off // cs * cs
        return f"write -c -P {rng.randrange(1, 250)} {off} {cs}" if off + cs <= size else None
    return f"discard {off} {ln}"


def make_chain(rng: random.Random, d: Path) -> None:
    cs = rng.choice([512, 4096, 65536, 2 << 20])
    extl2 = cs >= 16384 and rng.random() < 0.3
    v2 = not extl2 and rng.random() < 0.2
    opts = f"cluster_size={cs}" + (",extended_l2=on" if extl2 else "") + (",compat=0.10" if v2 else "")
    top = rng.choice([1 << 20, 3 << 20, (5 << 20) + 512 * rng.randrange(0, 5)])
    sizes = {n: rng.choice([top, top, max(top // 2 // 512 * 512, 512), top * 2]) for n in NAMES}
    sizes["top"] = top
    backing = {"base": None, "mid": "base", "top": "mid", "new": None}
    for n in NAMES:
        b = ["-F", "qcow2", "-b", f"{backing[n]}.qcow2"] if backing[n] else []
        r = run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", opts, *b, f"{n}.qcow2", str(sizes[n])], d)
        if r.returncode:
            raise RuntimeError(f"qemu-img create failed: {r.stderr!r}")
        cmds = [c for c in (random_write(rng, sizes[n], cs) for _ in range(rng.randrange(0, 8))) if c]
        if cmds:
            args = []
            for c in cmds:
                args += ["-c", c]
            # A request qemu-io refuses (a compressed write over allocated
            # clusters, ...) just leaves the image as the others made it.
            run([QEMU_IO, "-f", "qcow2", *args, f"{n}.qcow2"], d)


def iteration(instar: str, rng: random.Random, work: Path) -> list[str]:
    """One random chain and rebase; returns the differences found."""
    pristine = work / "p"
    pristine.mkdir(parents=True)
    make_chain(rng, pristine)
    args = rng.choice([["-b", "new.qcow2", "-F", "qcow2"], ["-b", "base.qcow2", "-F", "qcow2"],
                       ["-b", "mid.qcow2", "-F", "qcow2"], ["-b", ""]])
    if rng.random() < 0.3:
        args = ["-p", *args]
    res = {}
    for who, exe in (("oracle", QEMU_IMG), ("instar", instar)):
        shutil.copytree(pristine, work / who)
        res[who] = run([exe, "rebase", *args, "top.qcow2"], work / who)
    problems = []
    q, i = res["oracle"], res["instar"]
    if (q.returncode, q.stdout, q.stderr) != (i.returncode, i.stdout, i.stderr):
        problems.append(f"rebase {args}: oracle rc={q.returncode} {q.stdout!r} {q.stderr!r}, "
                        f"instar rc={i.returncode} {i.stdout!r} {i.stderr!r}")
    for n in NAMES:
        if (work / "oracle" / f"{n}.qcow2").read_bytes() != (work / "instar" / f"{n}.qcow2").read_bytes():
            problems.append(f"rebase {args}: {n}.qcow2 differs")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--instar", default=str(Path(__file__).resolve().parent.parent / "build" / "instar"))
    ap.add_argument("--work", default=None, help="directory for the images (default: a temporary one)")
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    import tempfile

    rng = random.Random(a.seed)
    bad = 0
    with tempfile.TemporaryDirectory(dir=a.work) as tmp:
        for n in range(a.iterations):
            work = Path(tmp) / f"w{n}"
            problems = iteration(a.instar, rng, work)
            if problems:
                bad += 1
                print(f"seed {a.seed} iteration {n} ({work}):\n  " + "\n  ".join(problems))
                shutil.copytree(work, Path(tmp).parent / f"fuzz-rebase-{a.seed}-{n}", dirs_exist_ok=True)
            elif a.v:
                print(f"iteration {n}: ok")
            shutil.rmtree(work, ignore_errors=True)
    print(f"fuzz-rebase: seed {a.seed}, {a.iterations} iterations, {bad} with differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
