#!/usr/bin/env python3
"""Differential fuzzing of `instar convert`, `compare` and `map` against qemu-img 7.2.

Each iteration makes a random image with the oracle: a qcow2 (cluster size,
refcount width, v2/v3, extended L2, zlib/zstd, odd virtual size) or raw
image holding random plain, zero, unmapped-zero, compressed writes and
discards, sometimes with one or two qcow2 overlays on top (each of its own
size and geometry, with writes of its own) and sometimes an internal
snapshot.  Then it runs random operations on it with both tools:

* convert with random options (-O qcow2/raw, -o cluster_size, compat,
  refcount_bits, extended_l2, compression_type, preallocation, -c, -S, -B
  onto the image under the top, -m, -W, -l, -t, -p, -q), compared by
  tests/output_compare.py: messages byte for byte, the output byte for byte
  and its hole layout where qemu-img writes the same bytes twice, else
  semantically;
* compare of the image with its oracle conversion, its backing file or a
  copy changed in one place, with random -s/-f/-F/-q;
* map, human or JSON, with a random --start-offset/--max-length.

Usage: scripts/fuzz-convert.py [--seed N] [--iterations N] [--instar PATH] [-v]
Exit status 0 when every operation matched, 1 otherwise.  INSTAR=qemu-img
(--instar /usr/bin/qemu-img) checks the fuzzer itself: it must then pass.
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import instar_testlib as tl  # noqa: E402
import output_compare as oc  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20
CLUSTER_SIZES = [512, 4096, 65536, 2 * MIB]
REFCOUNT_BITS = [1, 2, 4, 8, 16, 32, 64]


def must(*args, cwd):
    r = tl.run([*args], cwd=cwd, timeout=120)
    if r.returncode != 0 or b"failed" in r.stderr.lower():
        raise RuntimeError("generation failed: " + r.describe())
    return r


def random_writes(rng: random.Random, size: int, cs: int, compress: bool) -> list[str]:
    cmds = []
    for _ in range(rng.randint(0, 7)):
        length = min(size, rng.choice([512, 4 * KIB, 64 * KIB, 300 * KIB, MIB]))
        off = rng.randrange(0, max(1, size - length + 1)) & ~511
        k = rng.random()
        if k < 0.12:
            cmds.append(f"write -z {off} {length}")
        elif k < 0.2:
            cmds.append(f"write -z -u {off} {length}")
        elif k < 0.3:
            cmds.append(f"discard {off} {length}")
        elif k < 0.35:
            cmds.append(f"write -P 0 {off} {length}")
        else:
            cmds.append(f"write -P {rng.randint(1, 255)} {off} {length}")
    if compress and cs <= 64 * KIB and rng.random() < 0.4:
        n = rng.randint(1, 4)
        first = rng.randrange(0, max(1, size // cs - n))
        if (first + n) * cs <= size:
            cmds.insert(0, f"write -c -P {rng.randint(1, 255)} {first * cs} {n * cs}")
    return cmds


def random_qcow2(rng: random.Random, d: Path, name: str, backing: str | None = None,
                 backing_fmt: str | None = None) -> dict:
    cs = rng.choice(CLUSTER_SIZES)
    v2 = rng.random() < 0.1
    ext = not v2 and cs >= 16 * KIB and rng.random() < 0.25
    opts = [f"cluster_size={cs}", f"refcount_bits={16 if v2 else rng.choice(REFCOUNT_BITS)}"]
    if v2:
        opts.append("compat=0.10")
    if ext:
        opts.append("extended_l2=on")
    if not v2 and rng.random() < 0.3:
        opts.append("compression_type=zstd")
    size = rng.choice([1, 2, 3, 8]) * MIB + rng.choice([0, 0, 512, 64 * KIB, 1000 * 512])
    b = ["-b", backing, "-F", backing_fmt] if backing else []
    must(tl.QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", ",".join(opts), *b, name, str(size), cwd=d)
    cmds = random_writes(rng, size, cs, compress=True)
    if cmds:
        must(tl.QEMU_IO, "-f", "qcow2", *[x for c in cmds for x in ("-c", c)], name, cwd=d)
    return {"name": name, "fmt": "qcow2", "size": size, "opts": opts, "writes": cmds}


def random_raw(rng: random.Random, d: Path, name: str) -> dict:
    size = rng.choice([1, 3, 4]) * MIB + rng.choice([0, 512, 1000])
    with open(d / name, "wb") as f:
        f.truncate(size)
    cmds = [c for c in random_writes(rng, size, 4096, compress=False) if not c.startswith("discard")]
    if cmds:
        must(tl.QEMU_IO, "-f", "raw", *[x for c in cmds for x in ("-c", c)], name, cwd=d)
    return {"name": name, "fmt": "raw", "size": size, "writes": cmds}


def random_image(rng: random.Random, d: Path) -> list[dict]:
    """The chain, bottom first; the last element is the image to work on."""
    chain = [random_raw(rng, d, "base.raw") if rng.random() < 0.2 else random_qcow2(rng, d, "base.qcow2")]
    for i in range(rng.choice([0, 0, 1, 2])):
        below = chain[-1]
        chain.append(random_qcow2(rng, d, f"layer{i}.qcow2", below["name"], below["fmt"]))
    top = chain[-1]
    # A snapshot raises refcounts to 2, which 1-bit refcounts cannot hold
    # (qemu-img then fails with "-22 (Invalid argument)"): only keep it if made.
    if (top["fmt"] == "qcow2" and rng.random() < 0.2
            and tl.run([tl.QEMU_IMG, "snapshot", "-c", "snap", top["name"]], cwd=d).returncode == 0):
        must(tl.QEMU_IO, "-f", "qcow2", "-c", f"write -P 0x5a 0 {min(top['size'], 64 * KIB)}", top["name"], cwd=d)
        top["snapshot"] = True
    return chain


def random_convert(rng: random.Random, chain: list[dict]) -> tuple[list[str], str, str]:
    """(args after `convert`, output name, contents mode)."""
    top = chain[-1]
    out_fmt = rng.choice(["qcow2", "qcow2", "raw"])
    out = f"out.{out_fmt}"
    args, contents = [], "bytes"
    if rng.random() < 0.5:
        args += ["-f", top["fmt"]]
    args += ["-O", out_fmt]
    o = []
    if out_fmt == "qcow2":
        if rng.random() < 0.4:
            o.append(f"cluster_size={rng.choice(['512', '4k', '64k', '2M'])}")
        if rng.random() < 0.2:
            o.append("compat=0.10")
        elif rng.random() < 0.3:
            o.append(f"refcount_bits={rng.choice(REFCOUNT_BITS)}")
        if rng.random() < 0.2:
            o.append("extended_l2=on")
        if rng.random() < 0.2:
            o.append("compression_type=zstd")
        if rng.random() < 0.2:
            o.append(f"preallocation={rng.choice(['metadata', 'falloc', 'full'])}")
        if rng.random() < 0.3:
            args.append("-c")
        if len(chain) > 1 and rng.random() < 0.35:
            args += ["-B", chain[-2]["name"], "-F", chain[-2]["fmt"]]
    elif rng.random() < 0.15:
        o.append(f"preallocation={rng.choice(['falloc', 'full'])}")
    if o:
        args += ["-o", ",".join(o)]
    if rng.random() < 0.3:
        args += ["-S", rng.choice(["0", "512", "4k", "64k", "1M"])]
    if rng.random() < 0.2:
        args += ["-m", str(rng.randint(1, 16))]
    if rng.random() < 0.15:
        args.append("-W")
        contents = "semantic"  # writes complete in any order: see parity/test_convert_parity.py
    if top.get("snapshot") and rng.random() < 0.5:
        args += ["-l", rng.choice(["snap", "snapshot.name=snap", "1", "nosuch"])]
    if rng.random() < 0.15:
        args += ["-t", rng.choice(["unsafe", "writeback", "none"])]
    if rng.random() < 0.2:
        args.append("-p")
    elif rng.random() < 0.1:
        args.append("-q")
    args += [top["name"], out]
    return args, out, contents


def mutated(d: Path, top: dict, rng: random.Random) -> str:
    """A copy of the top image with one sector changed somewhere (qcow2 copy of the data)."""
    must(tl.QEMU_IMG, "convert", "-O", "qcow2", top["name"], "mutant.qcow2", cwd=d)
    off = rng.randrange(0, top["size"]) & ~511
    must(tl.QEMU_IO, "-f", "qcow2", "-c", f"write -P 0xa7 {off} 512", "mutant.qcow2", cwd=d)
    return "mutant.qcow2"


def random_compare(rng: random.Random, d: Path, chain: list[dict]) -> list[str]:
    top = chain[-1]
    k = rng.random()
    if k < 0.35:
        other, fmt2 = "oracle-conv.img", rng.choice(["qcow2", "raw"])
        must(tl.QEMU_IMG, "convert", "-O", fmt2, top["name"], other, cwd=d)
    elif k < 0.6 and len(chain) > 1:
        other, fmt2 = chain[-2]["name"], chain[-2]["fmt"]
    else:
        other, fmt2 = mutated(d, top, rng), "qcow2"
    args = []
    if rng.random() < 0.4:
        args += ["-f", top["fmt"], "-F", fmt2]
    if rng.random() < 0.3:
        args.append("-s")
    if rng.random() < 0.15:
        args.append("-q")
    pair = [top["name"], other]
    if rng.random() < 0.3:
        pair.reverse()
        if "-f" in args:
            args = ["-f", fmt2, "-F", top["fmt"]] + [a for a in args if a not in ("-f", "-F", fmt2, top["fmt"])]
    return args + pair


def random_map(rng: random.Random, top: dict) -> list[str]:
    args = []
    if rng.random() < 0.6:
        args.append("--output=json")
    if rng.random() < 0.3:
        args.append(f"--start-offset={rng.randrange(0, top['size'] + MIB)}")
    if rng.random() < 0.3:
        args.append(f"--max-length={rng.randrange(0, top['size'])}")
    return args + [top["name"]]


def _files(d: Path) -> list[tuple[Path, str]]:
    return [(p, p.name) for p in sorted(d.iterdir()) if p.is_file()]


def iteration(instar: tl.Instar, rng: random.Random, work: Path, verbose: bool = False) -> tuple[list[str], int]:
    """One random image (chain) and 3-5 operations; returns (problems, operations)."""
    shutil.rmtree(work, ignore_errors=True)
    src = work / "src"
    src.mkdir(parents=True)
    chain = random_image(rng, src)
    top = chain[-1]
    desc = " <- ".join(f"{c['name']}({','.join(c.get('opts', [c['fmt']]))}; {'; '.join(c['writes'])})"
                       for c in chain)
    problems, ops = [], 0
    for n in range(rng.randint(3, 5)):
        kind = rng.choice(["convert", "convert", "compare", "map"])
        if kind == "convert":
            args, out, contents = random_convert(rng, chain)
            argv = ["convert", *args]
            outputs = {out: out.rsplit(".", 1)[1]}
        elif kind == "compare":
            argv, outputs, contents = ["compare", *random_compare(rng, src, chain)], {}, "bytes"
        else:
            argv, outputs, contents = ["map", *random_map(rng, top)], {}, "bytes"
        if verbose:
            print(f"  {desc}\n    qemu-img {' '.join(argv)}", file=sys.stderr)
        ops += 1
        try:
            oc.run_writing(instar, argv, work / f"op{n}", _files(src), outputs, contents=contents)
        except AssertionError as e:
            problems.append(f"image {desc}\n  qemu-img {' '.join(argv)}\n  {e}")
    return problems, ops


if __name__ == "__main__":
    sys.exit(tl.fuzz_main("fuzz-convert", __doc__, iteration, 10))
