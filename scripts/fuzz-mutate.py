#!/usr/bin/env python3
"""Differential fuzzing of instar's mutating commands against qemu-img 7.2.

Each iteration makes a random qcow2 image with the oracle (cluster size,
refcount width, v2/v3, extended L2, lazy refcounts, sometimes a backing
chain of one or two images, sometimes a persistent bitmap or the dirty bit
left set by a crash), writes random data with qemu-io (plain, zero,
compressed writes, discards), then runs a random sequence of operations on
two copies of the directory, one with qemu-img and one with instar:
snapshot -c/-d/-a/-l, commit (-d, -b), rebase (safe and -u, onto another
image, the base or nothing), amend (compat=1.1 and 0.10, lazy_refcounts,
size) and resize (grow, shrink).  After every operation it compares the
exit code, stdout and stderr (snapshot dates normalised), and for every
image of the chain `qemu-img check`, `qemu-img info --output=json` (without
actual-size, paths and snapshot dates) and `qemu-img compare` of the guest
data.  Where instar refuses an operation qemu-img carries out, the refusal
must be one of the documented ones (REFUSALS, each quoted in
docs/differences.md); the instar copy then takes the oracle's files and the
sequence goes on.

Usage: scripts/fuzz-mutate.py [--seed N] [--iterations N] [--instar PATH] [-v]
Exit status 0 when every iteration matched, 1 otherwise.  --instar
/usr/bin/qemu-img checks the fuzzer itself: it must then pass.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QEMU_IMG = shutil.which("qemu-img") or "/usr/bin/qemu-img"
QEMU_IO = shutil.which("qemu-io") or "/usr/bin/qemu-io"
ENV = dict(os.environ, TZ="UTC", LC_ALL="C")
KIB, MIB = 1 << 10, 1 << 20

# What instar refuses where qemu-img goes on (docs/differences.md quotes
# each text): a refusal by instar of an operation the oracle carried out
# must print one of these.
REFUSALS = [
    "instar does not commit into an image with the dirty bit set",
    "Amending encrypt.* with other options of encrypted qcow2 images with persistent bitmaps is "
    "not supported by instar",
    "Growing this encrypted qcow2 image would write encrypted data, which instar does not do",
    "Growing this qcow2 image would copy data into its partial last cluster, which instar "
    "does not do",
]

DATE_RE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def no_core() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(argv, cwd=None, timeout=300):
    cp = subprocess.run(argv, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=no_core)
    return cp.returncode, cp.stdout, cp.stderr


def must(argv, cwd=None):
    rc, out, err = run(argv, cwd)
    if rc != 0:
        raise RuntimeError(f"generation failed: {argv}: {err.decode(errors='replace')}")
    return out


def random_writes(rng: random.Random, size: int, cs: int, ext: bool) -> list[str]:
    cmds = []
    # Compressed writes need unallocated clusters: first, at most one run.
    if not ext and rng.random() < 0.3:
        n = rng.randint(1, 4)
        off = rng.randrange(0, max(1, size // cs - n)) * cs
        if off + n * cs <= size:
            cmds.append(f"write -c -P {rng.randint(1, 255)} {off} {n * cs}")
    for _ in range(rng.randint(0, 6)):
        length = min(size, rng.choice([512, 4 * KIB, 64 * KIB, 300 * KIB, cs, 2 * cs]))
        off = rng.randrange(0, max(1, size - length + 1)) & ~511
        k = rng.random()
        if k < 0.15:
            cmds.append(f"write -z {off} {length}")
        elif k < 0.25:
            cmds.append(f"discard {off} {length}")
        else:
            cmds.append(f"write -P {rng.randint(1, 255)} {off} {length}")
    return cmds


def qemu_io(d: Path, name: str, cmds: list[str], crash: bool = False) -> None:
    if not cmds and not crash:
        return
    argv = [QEMU_IO, "-f", "qcow2"]
    for c in cmds:
        argv += ["-c", c]
    if crash:
        argv += ["-c", "abort"]  # leaves the dirty bit of a lazy-refcounts image set
    rc = run(argv + [name], cwd=d)[0]
    if rc != 0 and not crash:
        raise RuntimeError(f"qemu-io {cmds} failed")


def make_images(rng: random.Random, d: Path) -> dict:
    """The random chain in d (img.qcow2 on top); its parameters."""
    cs = rng.choice([512, 4096, 4096, 65536, 65536, 2 << 20])
    v2 = rng.random() < 0.15
    rb = 16 if v2 else rng.choice([1, 2, 4, 8, 16, 16, 16, 32, 64])
    ext = not v2 and cs >= 16384 and rng.random() < 0.25
    lazy = not v2 and rng.random() < 0.2
    size = rng.choice([1, 2, 3, 8]) * MIB + rng.choice([0, 0, 0, 64 * KIB, 512])
    opts = f"cluster_size={cs},refcount_bits={rb}"
    if v2:
        opts += ",compat=0.10"
    if ext:
        opts += ",extended_l2=on"
    if lazy:
        opts += ",lazy_refcounts=on"
    depth = rng.choice([0, 0, 1, 1, 2])
    chain = ["base.qcow2", "mid.qcow2"][:depth] + ["img.qcow2"]
    below = None
    for name in chain:
        sz = size if rng.random() < 0.7 else rng.choice([size // 2 // 512 * 512, size * 2])
        b = ["-b", below, "-F", "qcow2"] if below else []
        must([QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", opts, *b, name, str(sz)], cwd=d)
        qemu_io(d, name, random_writes(rng, sz, cs, ext))
        below = name
    if rng.random() < 0.5:
        must([QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", opts, "new.qcow2", str(size)], cwd=d)
        qemu_io(d, "new.qcow2", random_writes(rng, size, cs, ext))
    if not v2 and rng.random() < 0.08:
        must([QEMU_IMG, "bitmap", "--add", rng.choice(chain), "bm0"], cwd=d)
    if lazy and rng.random() < 0.3:
        qemu_io(d, rng.choice(chain), [f"write -P 9 0 {min(size, 64 * KIB)}"], crash=True)
    return {"cs": cs, "rb": rb, "v2": v2, "ext": ext, "lazy": lazy, "size": size, "chain": chain}


def backing_of(d: Path, name: str) -> str | None:
    rc, out, _ = run([QEMU_IMG, "info", "-U", "--output=json", name], cwd=d)
    return json.loads(out).get("backing-filename") if rc == 0 else None


def chain_of(d: Path) -> list[str]:
    """img.qcow2 and the images below it (top first), as the oracle's copy has them."""
    out, name = [], "img.qcow2"
    while name and (d / name).exists() and name not in out and len(out) < 4:
        out.append(name)
        name = backing_of(d, name)
    return out


def random_op(rng: random.Random, d: Path, snaps: list[str], n: int) -> list[str]:
    """Arguments of one random operation on the oracle's copy d."""
    chain = chain_of(d)
    has_new = (d / "new.qcow2").exists()
    info = json.loads(run([QEMU_IMG, "info", "-U", "--output=json", "img.qcow2"], cwd=d)[1] or b"{}")
    size = info.get("virtual-size", MIB)
    r = rng.random()
    if r < 0.18:
        return ["snapshot", "-c", f"s{n}", "img.qcow2"]
    if r < 0.28:
        name = rng.choice(snaps) if snaps and rng.random() < 0.9 else "nosuch"
        return ["snapshot", "-d", name, "img.qcow2"]
    if r < 0.38:
        name = rng.choice(snaps) if snaps and rng.random() < 0.9 else "nosuch"
        return ["snapshot", "-a", name, "img.qcow2"]
    if r < 0.43:
        return ["snapshot", "-l", "img.qcow2"]
    if r < 0.55:
        args = ["commit"]
        if rng.random() < 0.3:
            args.append("-d")
        if len(chain) > 2 and rng.random() < 0.5:
            args += ["-b", chain[-1]]
        return args + ["img.qcow2"]
    if r < 0.68:
        targets = [["-b", ""]] + [["-b", c, "-F", "qcow2"] for c in chain[2:]]
        if has_new:
            targets.append(["-b", "new.qcow2", "-F", "qcow2"])
        args = ["rebase"] + (["-u"] if rng.random() < 0.35 else [])
        return args + rng.choice(targets) + ["img.qcow2"]
    if r < 0.84:
        opt = rng.choice(["compat=1.1", "compat=1.1", "compat=0.10", "lazy_refcounts=on",
                          "lazy_refcounts=off", f"size={size + rng.choice([512, 64 * KIB, MIB])}",
                          f"size={max(512, size - rng.choice([512, 64 * KIB, MIB])) // 512 * 512}"])
        return ["amend", "-o", opt, "img.qcow2"]
    if rng.random() < 0.5:
        return ["resize", "img.qcow2", f"+{rng.choice([512, 64 * KIB, MIB, 3 * MIB])}"]
    return ["resize", "--shrink", "img.qcow2", f"-{rng.choice([512, 64 * KIB, MIB])}"]


def info_json(d: Path, name: str) -> dict | str:
    rc, out, err = run([QEMU_IMG, "info", "-U", "--output=json", name], cwd=d)
    if rc != 0:
        return err.decode(errors="replace")
    j = json.loads(out)
    for k in ("actual-size", "filename", "full-backing-filename"):
        j.pop(k, None)
    for sn in j.get("snapshots", []):
        sn.pop("date-sec", None)
        sn.pop("date-nsec", None)
    return j


LAYOUT_RE = re.compile(rb"(\d+\.\d+% fragmented|Image end offset: \d+)")


def layout_masked(check: tuple) -> tuple:
    """check's result without the figures of the file's layout."""
    return check[0], LAYOUT_RE.sub(b"<layout>", check[1]), check[2]


def compare_dirs(dq: Path, di: Path, notes: list[str], layout_free: bool, parted: set) -> list[str]:
    """The images of the two copies: check, info, guest data.

    layout_free: the operation was a commit, where the order in which a
    qcow2 base allocates clusters is documented as free
    (docs/differences.md, "## commit"): check's fragmentation and end
    offset then differing goes to notes, not problems, and the image joins
    parted (whose layouts differ from then on).
    """
    problems = []
    for name in sorted(p.name for p in dq.glob("*.qcow2")):
        cq = run([QEMU_IMG, "check", "-U", name], cwd=dq)
        ci = run([QEMU_IMG, "check", "-U", name], cwd=di)
        if cq != ci:
            msg = f"{name}: check: oracle {cq!r} instar {ci!r}"
            if (layout_free or name in parted) and layout_masked(cq) == layout_masked(ci):
                notes.append(msg)
                parted.add(name)
            else:
                problems.append(msg)
        jq, ji = info_json(dq, name), info_json(di, name)
        if jq != ji:
            problems.append(f"{name}: info: oracle {jq!r} instar {ji!r}")
        if isinstance(jq, dict) and isinstance(ji, dict):
            c = run([QEMU_IMG, "compare", "-U", "-f", "qcow2", "-F", "qcow2", str(dq / name),
                     str(di / name)])
            if c[0] != 0:
                problems.append(f"{name}: compare: {c!r}")
    return problems


def files_of(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.qcow2"))}


def norm(out: bytes) -> bytes:
    return DATE_RE.sub(b"YYYY-MM-DD hh:mm:ss", out)


def refusal(err: bytes) -> str | None:
    text = err.decode(errors="replace")
    for r in REFUSALS:
        if r in text:
            return r
    return None


def iteration(instar: Path, rng: random.Random, work: Path, verbose: bool = False) -> dict:
    """One random chain and 1-6 operations.  Returns problems, ops, refusals, sequence."""
    shutil.rmtree(work, ignore_errors=True)
    dq, di, bindir = work / "q", work / "i", work / "bin"
    dq.mkdir(parents=True)
    bindir.mkdir()
    (bindir / "qemu-img").symlink_to(instar)
    params = make_images(rng, dq)
    shutil.copytree(dq, work / "p")  # pristine, kept for a reproduction
    shutil.copytree(dq, di)
    res = {"problems": [], "notes": [], "ops": 0, "refusals": [], "seq": [], "params": params}
    snaps: list[str] = []
    parted: set[str] = set()
    for n in range(rng.randint(1, 6)):
        args = random_op(rng, dq, snaps, n)
        res["seq"].append(args)
        if verbose:
            print(f"  {args}", file=sys.stderr)
        before = files_of(dq)
        q = run([QEMU_IMG, *args], cwd=dq)
        i = run([str(bindir / "qemu-img"), *args], cwd=di)
        res["ops"] += 1
        # instar refuses before writing anything: a refusal stands for what
        # qemu-img did, whether it succeeded or wrote and then failed (its
        # read-write open stores persistent bitmaps again, for one).
        if i[0] != 0 and (q[0] == 0 or (q != i and files_of(dq) != before)):
            r = refusal(i[2])
            if r is None:
                res["problems"].append(f"{args}: instar failed: {i!r}")
                break
            res["refusals"].append(r)
            # The copies part here: the instar copy takes the oracle's files.
            shutil.rmtree(di)
            shutil.copytree(dq, di)
            parted.clear()
        else:
            oq = norm(q[1]) if args[:2] == ["snapshot", "-l"] else q[1]
            oi = norm(i[1]) if args[:2] == ["snapshot", "-l"] else i[1]
            if (q[0], oq, q[2]) != (i[0], oi, i[2]):
                res["problems"].append(f"{args}: oracle {q!r} instar {i!r}")
                break
        p = compare_dirs(dq, di, res["notes"], args[0] == "commit", parted)
        if p:
            res["problems"] += [f"after {args}: {x}" for x in p]
            break
        if q[0] == 0 and args[:2] == ["snapshot", "-c"]:
            snaps.append(args[2])
        if q[0] == 0 and args[:2] == ["snapshot", "-d"] and args[2] in snaps:
            snaps.remove(args[2])
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--instar", default=os.environ.get("INSTAR", str(REPO / "build" / "instar")))
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    instar = Path(a.instar).resolve()
    rng = random.Random(a.seed)
    failures = ops = refused = noted = 0
    with tempfile.TemporaryDirectory(prefix="fuzz-mutate-") as tmp:
        for n in range(a.iterations):
            r = iteration(instar, rng, Path(tmp) / "w", a.verbose)
            ops += r["ops"]
            refused += len(r["refusals"])
            if r["notes"] or r["problems"]:
                keep = Path(tempfile.gettempdir()) / f"fuzz-mutate-{a.seed}-{n}"
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(Path(tmp) / "w" / "p", keep)
            if r["notes"]:
                noted += 1
                print(f"iteration {n} (seed {a.seed}): {r['params']}\n  sequence {r['seq']}",
                      f"pristine images: {keep}", *(f"note: {x}" for x in r["notes"]), sep="\n  ")
            if r["problems"]:
                failures += 1
                print(f"iteration {n} (seed {a.seed}): {r['params']}\n  sequence {r['seq']}",
                      f"pristine images: {keep}", *r["problems"], sep="\n  ")
    print(f"fuzz-mutate: seed {a.seed}, {a.iterations} iterations, {ops} operations, "
          f"{refused} documented refusals, {noted} iterations with layout notes, "
          f"{failures} mismatching iterations")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
