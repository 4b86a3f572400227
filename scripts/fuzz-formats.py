#!/usr/bin/env python3
"""Differential fuzzing of every other format's reader against qemu-img 7.2.

Each iteration makes an image with the oracle: a random virtual size and
random writes (qemu-io) in one of the formats qemu-img writes (vmdk
monolithicSparse or streamOptimized, vpc dynamic or fixed, vhdx, vdi, qcow,
qed, parallels), made by `qemu-img convert` from a raw file, or one of the
well-formed dmg, bochs and cloop images of their parity suites (no
qemu-img writes those; the raw file is then qemu-img's conversion of the
undamaged image).  Then, most of
the time, it damages it: a few bytes of its metadata (the first 1 MiB, or
a vmdk descriptor or footer) set to random values, boundary values or
copies of other fields.  Then it runs random read-only operations with both
tools on the same file: info (human or JSON), check (human or JSON), map
(human or JSON), compare with the raw file it came from, and convert -O
raw (the outputs compared byte for byte where both succeed).

A mismatch is a problem, except where the difference is deliberate:
instar's message names instar (its refusals and safety answers, listed in
docs/differences.md) or qemu-img died on a signal or an assertion (then
instar must exit 0 or 1 on its own, with no signal).  A timeout of either
tool is a problem unless qemu-img's (a hang instar must not share).

Usage: scripts/fuzz-formats.py [--seed N] [--iterations N] [--instar PATH] [-v]
Exit status 0 when every operation matched, 1 otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import instar_testlib as tl  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20

# (name, qemu-img convert options)
FORMATS = [
    ("vmdk", ["-O", "vmdk"]),
    ("vmdk", ["-O", "vmdk", "-o", "subformat=streamOptimized"]),
    ("vpc", ["-O", "vpc"]),
    ("vpc", ["-O", "vpc", "-o", "subformat=fixed"]),
    ("vhdx", ["-O", "vhdx", "-o", "block_size=1M"]),
    ("vdi", ["-O", "vdi"]),
    ("qcow", ["-O", "qcow"]),
    ("qed", ["-O", "qed"]),
    ("parallels", ["-O", "parallels"]),
]

BOUNDARY = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000,
            0x200, 0x10000, 0x100000]


# The read-only formats: their parity suites' well-formed images (GOOD).
READ_ONLY = {"dmg": "test_dmg_parity", "bochs": "test_bochs_parity", "cloop": "test_cloop_parity"}
_good = {}


def good_images(fmt: str) -> dict:
    if fmt not in _good:
        sys.path.insert(0, str(REPO / "parity"))
        spec = importlib.util.spec_from_file_location(READ_ONLY[fmt],
                                                      REPO / "parity" / f"{READ_ONLY[fmt]}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _good[fmt] = mod.GOOD
    return _good[fmt]


def must(*args, cwd):
    r = tl.run([*args], cwd=cwd, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("generation failed: " + r.describe())
    return r


def make_read_only(rng: random.Random, d: Path) -> tuple[str, str, list[str]]:
    fmt = rng.choice(sorted(READ_ONLY))
    good = good_images(fmt)
    name = "img." + fmt
    while True:  # one small enough to convert in a moment
        key = rng.choice(sorted(good))
        (d / name).write_bytes(good[key])
        r = tl.run_oracle(["info", "--output=json", name], cwd=d)
        if r.returncode == 0 and json.loads(r.stdout)["virtual-size"] <= 64 * MIB:
            break
    r = tl.run_oracle(["convert", "-O", "raw", name, "src.raw"], cwd=d)
    if r.returncode != 0:
        must(tl.QEMU_IMG, "create", "-q", "-f", "raw", "src.raw", "1M", cwd=d)
    return name, fmt, [f"{fmt} {key}"]


def make_image(rng: random.Random, d: Path) -> tuple[str, str, list[str]]:
    """The source raw file and an image made from it: (image, format, description)."""
    if rng.random() < 0.25:
        return make_read_only(rng, d)
    fmt, opts = rng.choice(FORMATS)
    size = rng.choice([1 * MIB, 4 * MIB, 33 * MIB, 64 * MIB + 512 * 3])
    must(tl.QEMU_IMG, "create", "-q", "-f", "raw", "src.raw", str(size), cwd=d)
    cmds = []
    for _ in range(rng.randint(1, 6)):
        length = min(size, rng.choice([512, 4 * KIB, 64 * KIB, 300 * KIB, MIB]))
        off = rng.randrange(0, max(1, size - length + 1)) & ~511
        cmds += ["-c", f"write -P {rng.randint(1, 255)} {off} {length}"]
    must(tl.QEMU_IO, "-f", "raw", *cmds, "src.raw", cwd=d)
    name = "img." + fmt
    must(tl.QEMU_IMG, "convert", *opts, "src.raw", name, cwd=d)
    desc = [f"{fmt} {' '.join(opts[2:])} size {size}", " ".join(c for c in cmds if c != "-c")]
    return name, fmt, desc


def damage(rng: random.Random, path: Path) -> list[str]:
    """Set a few bytes of the image's metadata area; returns what was done."""
    data = bytearray(path.read_bytes() if path.stat().st_size <= 8 * MIB else b"")
    length = path.stat().st_size
    done = []
    with open(path, "r+b") as f:
        for _ in range(rng.randint(1, 4)):
            where = rng.random()
            if where < 0.15 and length > 512:
                off = length - 512 + rng.randrange(0, 512)  # a footer
            elif where < 0.55:
                off = rng.randrange(0, min(length, 4 * KIB))  # a header
            elif where < 0.8:
                off = rng.randrange(0, min(length, 64 * KIB))  # tables after it
            else:
                off = rng.randrange(0, min(length, MIB))
            kind = rng.random()
            if kind < 0.4:
                width = rng.choice([1, 2, 4, 8])
                v = rng.choice(BOUNDARY) & ((1 << (8 * width)) - 1)
                buf = v.to_bytes(width, rng.choice(["little", "big"]))
            elif kind < 0.7:
                buf = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif data:
                src = rng.randrange(0, max(1, min(len(data), MIB) - 8))
                buf = bytes(data[src:src + 8])
            else:
                buf = struct.pack("<Q", rng.getrandbits(64))
            f.seek(off)
            f.write(buf)
            done.append(f"{buf.hex()}@{off}")
    return done


def operations(rng: random.Random, name: str) -> list[list[str]]:
    ops = []
    for _ in range(rng.randint(3, 5)):
        k = rng.choice(["info", "info", "check", "map", "compare", "convert", "convert"])
        js = ["--output=json"] if rng.random() < 0.5 else []
        if k == "info":
            ops.append(["info", *js, name])
        elif k == "check":
            ops.append(["check", *js, name])
        elif k == "map":
            ops.append(["map", *js, name])
        elif k == "compare":
            ops.append(["compare", name, "src.raw"])
        else:
            ops.append(["convert", "-O", "raw", name, "out.raw"])
    return ops


def deliberate(oracle: tl.Result, actual: tl.Result) -> bool:
    """A documented difference: instar's own message, or qemu-img crashing."""
    if oracle.returncode < 0 or oracle.returncode == 134:
        return actual.returncode in (0, 1)
    return actual.returncode == 1 and b"instar" in actual.stderr


def run_op(instar: tl.Instar, argv: list[str], d: Path) -> str | None:
    """Both tools on the same file; returns a problem or None."""
    convert = argv[0] == "convert"
    try:
        oracle = tl.run_oracle(argv, cwd=d, timeout=60)
    except AssertionError:
        oracle = None  # qemu-img hung: instar must not
    if convert and oracle and oracle.returncode == 0:
        (d / "out.raw").rename(d / "oracle.raw")
    try:
        actual = instar.run(argv, cwd=d, timeout=60)
    except AssertionError as e:
        return f"instar: {e}"
    if actual.returncode < 0:
        return f"instar killed by signal {-actual.returncode}: {actual.describe()}"
    if oracle is None:
        return None if actual.returncode in (0, 1) else f"qemu-img hung; instar {actual.describe()}"
    try:
        if actual.returncode == 1 and actual.stderr != oracle.stderr and deliberate(oracle, actual):
            return None
        if oracle.returncode < 0 or oracle.returncode == 134:
            return None if deliberate(oracle, actual) else f"qemu-img crashed; instar {actual.describe()}"
        if (actual.returncode, actual.stdout, actual.stderr) != (oracle.returncode, oracle.stdout,
                                                                  oracle.stderr):
            return f"output differs\n oracle: {oracle.describe()}\n instar: {actual.describe()}"
        if convert and oracle.returncode == 0 and not tl.same_content(d / "oracle.raw", d / "out.raw"):
            return "the converted images differ"
        return None
    finally:
        for f in ("oracle.raw", "out.raw"):
            (d / f).unlink(missing_ok=True)


def iteration(instar: tl.Instar, rng: random.Random, work: Path, verbose: bool = False) -> tuple[list[str], int]:
    """One image, maybe damaged, and 3-5 operations; returns (problems, operations)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    name, fmt, desc = make_image(rng, work)
    if rng.random() < 0.8:
        desc.append("damaged: " + " ".join(damage(rng, work / name)))
    problems, ops = [], 0
    for argv in operations(rng, name):
        if verbose:
            print(f"  {'; '.join(desc)}\n    qemu-img {' '.join(argv)}", file=sys.stderr)
        ops += 1
        p = run_op(instar, argv, work)
        if p:
            problems.append(f"image {'; '.join(desc)}\n  qemu-img {' '.join(argv)}\n  {p}")
    return problems, ops


if __name__ == "__main__":
    sys.exit(tl.fuzz_main("fuzz-formats", __doc__, iteration, 20))
