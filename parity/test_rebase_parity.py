"""Parity of `qemu-img rebase` (qemu-img 7.2 vs instar).

Each scenario is a directory of images the oracle made (qemu-img create,
qemu-io writes, snapshots).  A case copies the directory twice, runs
`qemu-img rebase ARGS` in one copy with the oracle and in the other with
instar, and compares exit code, stdout and stderr, then every file of the
two directories byte for byte (a rebase is deterministic: the same writes
in the same order allocate the same clusters) and their host data/hole
layout, and `qemu-img map --output=json` of the rebased image through its
new chain.  Absolute names are spelt with the copy's directory, whose path
has the same length in both copies ("oracle", "instar"), so the bytes are
compared after that one substitution.  Nothing here is an expected value
written by hand: the oracle's own run is the expectation.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import instar_testlib as tl


def img(d: Path, *args: str) -> None:
    tl.qemu_img(*args, cwd=d)


def io(d: Path, name: str, *cmds: str, fmt: str = "qcow2") -> None:
    args = []
    for c in cmds:
        args += ["-c", c]
    tl.qemu_io("-f", fmt, *args, name, cwd=d)


def chain3(d: Path, opts: str = "", size: str = "8M") -> None:
    """base <- mid <- top, and new.qcow2 with other data; every kind of cluster."""
    o = ["-o", opts] if opts else []
    img(d, "create", "-q", "-f", "qcow2", *o, "base.qcow2", size)
    io(d, "base.qcow2", "write -P 1 0 1M", "write -P 2 2M 512k", "write -P 3 5M 64k",
       "write -P 4 7M 4k")
    img(d, "create", "-q", "-f", "qcow2", *o, "-F", "qcow2", "-b", "base.qcow2", "mid.qcow2")
    io(d, "mid.qcow2", "write -P 5 512k 1M", "write -z 2M 64k", "write -P 6 6M 3k")
    img(d, "create", "-q", "-f", "qcow2", *o, "-F", "qcow2", "-b", "mid.qcow2", "top.qcow2")
    io(d, "top.qcow2", "write -P 7 64k 64k", "write -P 8 100k 3k", "write -z 5M 4k",
       "discard 7M 64k")
    img(d, "create", "-q", "-f", "qcow2", *o, "new.qcow2", size)
    io(d, "new.qcow2", "write -P 1 0 512k", "write -P 5 512k 512k", "write -P 9 3M 1M",
       "write -P 3 5M 64k")


def rawbase(d: Path) -> None:
    img(d, "create", "-q", "-f", "raw", "base.raw", "4M")
    io(d, "base.raw", "write -P 1 0 1M", "write -P 2 3M 64k", fmt="raw")
    img(d, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "base.raw", "top.qcow2")
    io(d, "top.qcow2", "write -P 7 64k 64k")
    img(d, "create", "-q", "-f", "raw", "new.raw", "4M")
    io(d, "new.raw", "write -P 1 0 512k", "write -P 9 2M 1M", fmt="raw")
    img(d, "create", "-q", "-f", "raw", "plain.raw", "1M")


def short(d: Path) -> None:
    """An old backing file shorter than the image, and a new one shorter still."""
    img(d, "create", "-q", "-f", "qcow2", "base.qcow2", "3M")
    io(d, "base.qcow2", "write -P 1 0 3M")
    img(d, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", "top.qcow2", "6M")
    io(d, "top.qcow2", "write -P 7 1M 64k")
    img(d, "create", "-q", "-f", "qcow2", "new.qcow2", "1536k")
    io(d, "new.qcow2", "write -P 1 0 1M")
    img(d, "create", "-q", "-f", "qcow2", "long.qcow2", "10M")
    io(d, "long.qcow2", "write -P 1 0 2M", "write -P 4 5M 1M")


def compressed(d: Path) -> None:
    img(d, "create", "-q", "-f", "qcow2", "base.qcow2", "4M")
    io(d, "base.qcow2", "write -c -P 1 0 64k", "write -c -P 2 128k 64k", "write -c -P 3 1M 64k",
       "write -P 4 2M 64k")
    img(d, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", "top.qcow2")
    io(d, "top.qcow2", "write -P 7 128k 4k")
    img(d, "create", "-q", "-f", "qcow2", "new.qcow2", "4M")
    io(d, "new.qcow2", "write -c -P 1 0 64k")


def snapshots(d: Path) -> None:
    chain3(d)
    img(d, "snapshot", "-c", "snap1", "top.qcow2")
    io(d, "top.qcow2", "write -P 11 1M 64k")
    img(d, "snapshot", "-c", "snap2", "top.qcow2")


def subdir(d: Path) -> None:
    sub = d / "d"
    sub.mkdir()
    chain3(sub)


def tiny_clusters(d: Path) -> None:
    img(d, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "base.qcow2", "1M")
    io(d, "base.qcow2", "write -P 1 0 300k")
    img(d, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-F", "qcow2", "-b",
        "base.qcow2", "top.qcow2")
    io(d, "top.qcow2", "write -P 2 1000 3000")
    img(d, "create", "-q", "-f", "qcow2", "new.qcow2", "1M")


def data_file(d: Path) -> None:
    img(d, "create", "-q", "-f", "qcow2", "base.qcow2", "2M")
    io(d, "base.qcow2", "write -P 1 0 1M")
    img(d, "create", "-q", "-f", "qcow2", "-o", "data_file=top.data", "-F", "qcow2", "-b",
        "base.qcow2", "top.qcow2")
    io(d, "top.qcow2", "write -P 7 64k 64k")
    img(d, "create", "-q", "-f", "qcow2", "new.qcow2", "2M")


def broken(d: Path) -> None:
    """An image whose backing file is gone, and a new backing whose own is gone."""
    chain3(d)
    (d / "mid.qcow2").unlink()
    img(d, "create", "-q", "-f", "qcow2", "other.qcow2", "8M")
    img(d, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "other.qcow2", "new2.qcow2")
    (d / "other.qcow2").unlink()
    img(d, "create", "-q", "-f", "qcow2", "ok.qcow2", "8M")


def data_file_raw(d: Path) -> None:
    img(d, "create", "-q", "-f", "qcow2", "-o", "data_file=top.data,data_file_raw=on", "top.qcow2",
        "1M")
    io(d, "top.qcow2", "write -P 7 0 64k")
    img(d, "create", "-q", "-f", "qcow2", "new.qcow2", "1M")


def big(d: Path) -> None:
    """Many 2 MiB steps (the progress figure accumulates), and a size not a multiple of them."""
    img(d, "create", "-q", "-f", "qcow2", "base.qcow2", "100M")
    io(d, "base.qcow2", *[f"write -P {i % 250 + 1} {i * 3}M 100k" for i in range(33)])
    img(d, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", "top.qcow2")
    io(d, "top.qcow2", *[f"write -P 9 {i * 7}M 3M" for i in range(14)])
    img(d, "create", "-q", "-f", "qcow2", "new.qcow2", "5243392")
    io(d, "new.qcow2", "write -P 1 0 100k")
    img(d, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", "odd.qcow2", "5243392")


def rawodd(d: Path) -> None:
    """Raw backing files whose length is not a multiple of 512."""
    (d / "base.raw").write_bytes(b"\x01" * 1000001)
    (d / "new.raw").write_bytes(b"\x01" * 700000 + b"\x02" * 77)
    img(d, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "base.raw", "top.qcow2", "2M")
    io(d, "top.qcow2", "write -P 7 64k 4k")


def data_file_missing(d: Path) -> None:
    data_file(d)
    (d / "top.data").unlink()


def empty(d: Path) -> None:
    img(d, "create", "-q", "-f", "qcow2", "base.qcow2", "0")
    img(d, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", "top.qcow2", "0")
    img(d, "create", "-q", "-f", "qcow2", "new.qcow2", "1M")


def bitmaps(d: Path) -> None:
    """chain3 with persistent bitmaps in the top (one with bits, one disabled)."""
    chain3(d)
    img(d, "bitmap", "--add", "top.qcow2", "b0")
    img(d, "bitmap", "--add", "-g", "4k", "--disable", "top.qcow2", "b1")
    io(d, "top.qcow2", "write -P 9 1M 64k")


SCENARIOS = {
    "bitmaps": bitmaps,
    "empty": empty,
    "data-file-missing": data_file_missing,
    "rawodd": rawodd,
    "big": big,
    "broken": broken,
    "data-file-raw": data_file_raw,
    "chain3": chain3,
    "v2": lambda d: chain3(d, "compat=0.10"),
    "extl2": lambda d: chain3(d, "extended_l2=on"),
    "small-clusters": lambda d: chain3(d, "cluster_size=4096"),
    "big-clusters": lambda d: chain3(d, "cluster_size=2M", "8M"),
    "rawbase": rawbase,
    "short": short,
    "compressed": compressed,
    "snapshots": snapshots,
    "subdir": subdir,
    "tiny-clusters": tiny_clusters,
    "data-file": data_file,
}

NEW = ["-b", "new.qcow2", "-F", "qcow2"]

# (id, scenario, args); "ABS" in an argument is the copy's directory.
CASES = [
    # safe mode
    ("safe-new", "chain3", [*NEW, "top.qcow2"]),
    ("safe-prefix-base", "chain3", ["-b", "base.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("safe-prefix-mid", "chain3", ["-b", "mid.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("safe-prefix-dot", "chain3", ["-b", "./base.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("safe-mid-onto-new", "chain3", [*NEW, "mid.qcow2"]),
    ("safe-new-as-raw", "chain3", ["-b", "new.qcow2", "-F", "raw", "top.qcow2"]),
    ("safe-new-probed", "chain3", ["-b", "new.qcow2", "top.qcow2"]),
    ("safe-progress", "chain3", ["-p", *NEW, "top.qcow2"]),
    ("safe-progress-quiet", "chain3", ["-p", "-q", *NEW, "top.qcow2"]),
    ("safe-progress-prefix", "chain3", ["-p", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("flatten", "chain3", ["-b", "", "top.qcow2"]),
    ("flatten-progress", "chain3", ["-p", "-b", "", "top.qcow2"]),
    ("flatten-fmt", "chain3", ["-b", "", "-F", "qcow2", "top.qcow2"]),
    ("safe-f", "chain3", ["-f", "qcow2", *NEW, "top.qcow2"]),
    ("safe-U", "chain3", ["-U", *NEW, "top.qcow2"]),
    ("safe-t-none", "chain3", ["-t", "none", "-T", "none", *NEW, "top.qcow2"]),
    ("safe-cache", "chain3", ["-t", "writeback", "-T", "unsafe", *NEW, "top.qcow2"]),
    ("image-opts", "chain3", ["--image-opts", *NEW, "driver=qcow2,file.filename=top.qcow2"]),
    ("object", "chain3", ["--object", "secret,id=s0,data=x", *NEW, "top.qcow2"]),
    ("abs-name", "chain3", ["-b", "ABS/new.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("abs-name-unsafe", "chain3", ["-u", "-b", "ABS/new.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("safe-missing", "chain3", ["-b", "missing.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("safe-bad-fmt", "chain3", ["-b", "new.qcow2", "-F", "foo", "top.qcow2"]),
    ("safe-wrong-fmt", "rawbase", ["-b", "new.raw", "-F", "qcow2", "top.qcow2"]),
    ("v2-safe", "v2", [*NEW, "top.qcow2"]),
    ("v2-flatten", "v2", ["-b", "", "top.qcow2"]),
    ("v2-unsafe", "v2", ["-u", *NEW, "top.qcow2"]),
    ("extl2-safe", "extl2", [*NEW, "top.qcow2"]),
    ("extl2-flatten", "extl2", ["-b", "", "top.qcow2"]),
    ("small-clusters-safe", "small-clusters", [*NEW, "top.qcow2"]),
    ("small-clusters-flatten", "small-clusters", ["-b", "", "top.qcow2"]),
    ("big-clusters-safe", "big-clusters", ["-p", *NEW, "top.qcow2"]),
    ("rawbase-new-raw", "rawbase", ["-b", "new.raw", "-F", "raw", "top.qcow2"]),
    ("rawbase-flatten", "rawbase", ["-b", "", "top.qcow2"]),
    ("rawbase-unsafe", "rawbase", ["-u", "-b", "new.raw", "-F", "raw", "top.qcow2"]),
    ("raw-top", "rawbase", ["-b", "new.raw", "-F", "raw", "plain.raw"]),
    ("raw-top-f", "rawbase", ["-f", "raw", "-b", "", "plain.raw"]),
    ("raw-top-unsafe", "rawbase", ["-u", "-f", "raw", "-b", "new.raw", "-F", "raw", "plain.raw"]),
    ("raw-top-no-fmt", "rawbase", ["-f", "raw", "-b", "new.raw", "plain.raw"]),
    ("short-new", "short", [*NEW, "top.qcow2"]),
    ("short-long", "short", ["-b", "long.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("short-flatten", "short", ["-b", "", "top.qcow2"]),
    ("short-none-onto", "short", ["-b", "top.qcow2", "-F", "qcow2", "new.qcow2"]),
    ("compressed-flatten", "compressed", ["-b", "", "top.qcow2"]),
    ("compressed-new", "compressed", [*NEW, "top.qcow2"]),
    ("snapshots-new", "snapshots", [*NEW, "top.qcow2"]),
    ("snapshots-flatten", "snapshots", ["-b", "", "top.qcow2"]),
    ("subdir-relative", "subdir", [*NEW, "d/top.qcow2"]),
    ("subdir-prefix", "subdir", ["-b", "base.qcow2", "-F", "qcow2", "d/top.qcow2"]),
    ("subdir-missing", "subdir", ["-b", "new2.qcow2", "-F", "qcow2", "d/top.qcow2"]),
    ("subdir-unsafe", "subdir", ["-u", "-b", "../x.qcow2", "-F", "qcow2", "d/top.qcow2"]),
    ("tiny-clusters-safe", "tiny-clusters", [*NEW, "top.qcow2"]),
    ("tiny-clusters-name-too-long", "tiny-clusters", ["-u", "-F", "raw", "-b", "n" * 480, "top.qcow2"]),
    ("name-1024", "chain3", ["-u", "-F", "raw", "-b", "n" * 1024, "top.qcow2"]),
    ("data-file-safe", "data-file", [*NEW, "top.qcow2"]),
    ("data-file-flatten", "data-file", ["-b", "", "top.qcow2"]),
    ("json-top", "chain3", [*NEW, 'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}}']),
    ("json-top-subdir", "subdir", [*NEW, 'json:{"driver":"qcow2","file":{"driver":"file","filename":"d/top.qcow2"}}']),
    ("image-opts-subdir", "subdir", ["--image-opts", *NEW, "driver=qcow2,file.filename=d/top.qcow2"]),
    ("file-prefix", "subdir", [*NEW, "file:d/top.qcow2"]),
    ("onto-itself", "chain3", ["-b", "top.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("old-chain-missing", "broken", [*NEW, "top.qcow2"]),
    ("old-chain-missing-unsafe", "broken", ["-u", *NEW, "top.qcow2"]),
    ("new-chain-missing", "broken", ["-b", "new2.qcow2", "-F", "qcow2", "new.qcow2"]),
    ("new-chain-missing-unsafe", "broken", ["-u", "-b", "new2.qcow2", "-F", "qcow2", "new.qcow2"]),
    ("safe-onto-top-of-other", "broken", ["-b", "new.qcow2", "-F", "qcow2", "ok.qcow2"]),
    ("data-file-raw-safe", "data-file-raw", [*NEW, "top.qcow2"]),
    ("data-file-raw-unsafe", "data-file-raw", ["-u", *NEW, "top.qcow2"]),
    ("data-file-raw-remove", "data-file-raw", ["-u", "-b", "", "top.qcow2"]),
    ("raw-top-remove-unsafe", "rawbase", ["-u", "-b", "", "plain.raw"]),
    ("new-raw-probed", "rawbase", ["-b", "new.raw", "top.qcow2"]),
    ("new-raw-probed-p", "rawbase", ["-p", "-b", "new.raw", "-F", "raw", "top.qcow2"]),
    ("big-progress", "big", ["-p", *NEW, "top.qcow2"]),
    ("big-flatten-progress", "big", ["-p", "-b", "", "top.qcow2"]),
    ("big-prefix-progress", "big", ["-p", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("odd-size-progress", "big", ["-p", *NEW, "odd.qcow2"]),
    ("odd-size-flatten", "big", ["-p", "-b", "", "odd.qcow2"]),
    ("rawodd-new", "rawodd", ["-b", "new.raw", "-F", "raw", "top.qcow2"]),
    ("rawodd-flatten", "rawodd", ["-b", "", "top.qcow2"]),
    ("no-backing-flatten", "chain3", ["-b", "", "new.qcow2"]),
    ("no-backing-onto", "chain3", ["-b", "mid.qcow2", "-F", "qcow2", "new.qcow2"]),
    ("v2-no-backing-onto", "v2", ["-b", "mid.qcow2", "-F", "qcow2", "new.qcow2"]),
    ("extl2-no-backing-onto", "extl2", ["-b", "mid.qcow2", "-F", "qcow2", "new.qcow2"]),
    ("data-file-unsafe", "data-file", ["-u", *NEW, "top.qcow2"]),
    ("data-file-missing-unsafe", "data-file-missing", ["-u", *NEW, "top.qcow2"]),
    ("data-file-missing-safe", "data-file-missing", [*NEW, "top.qcow2"]),
    ("empty-new", "empty", ["-p", *NEW, "top.qcow2"]),
    ("empty-flatten", "empty", ["-b", "", "top.qcow2"]),
    ("bitmaps-safe", "bitmaps", [*NEW, "top.qcow2"]),
    ("bitmaps-flatten", "bitmaps", ["-b", "", "top.qcow2"]),
    ("bitmaps-unsafe", "bitmaps", ["-u", *NEW, "top.qcow2"]),
    # unsafe mode
    ("unsafe", "chain3", ["-u", *NEW, "top.qcow2"]),
    ("unsafe-missing", "chain3", ["-u", "-b", "missing.qcow2", "-F", "qcow2", "top.qcow2"]),
    ("unsafe-no-fmt", "chain3", ["-u", "-b", "new.qcow2", "top.qcow2"]),
    ("unsafe-remove", "chain3", ["-u", "-b", "", "top.qcow2"]),
    ("unsafe-no-b", "chain3", ["-u", "top.qcow2"]),
    ("unsafe-fmt-only", "chain3", ["-u", "-F", "qcow2", "top.qcow2"]),
    ("unsafe-other-fmt", "chain3", ["-u", "-b", "x.vmdk", "-F", "vmdk", "top.qcow2"]),
    ("unsafe-progress", "chain3", ["-u", "-p", *NEW, "top.qcow2"]),
    # refusals
    ("no-args", "chain3", []),
    ("no-b", "chain3", ["top.qcow2"]),
    ("two-files", "chain3", [*NEW, "top.qcow2", "mid.qcow2"]),
    ("bad-cache", "chain3", ["-t", "foo", *NEW, "top.qcow2"]),
    ("bad-src-cache", "chain3", ["-T", "foo", *NEW, "top.qcow2"]),
    ("missing-image", "chain3", [*NEW, "nothere.qcow2"]),
    ("image-opts-and-f", "chain3", ["--image-opts", "-f", "qcow2", *NEW, "driver=qcow2,file.filename=top.qcow2"]),
    ("unknown-option", "chain3", ["-z", "top.qcow2"]),
    ("missing-argument", "chain3", ["top.qcow2", "-b"]),
]


@pytest.fixture(scope="module")
def scenario_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rebase-scenarios")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            d = root / name
            d.mkdir()
            SCENARIOS[name](d)
            made[name] = d
        return made[name]

    return get


def layout(path: Path) -> list[tuple[int, int]]:
    """The host data extents of a file (SEEK_DATA/SEEK_HOLE)."""
    out = []
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                d = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            h = os.lseek(fd, d, os.SEEK_HOLE)
            out.append((d, h))
            off = h
    return out


def files_of(d: Path) -> list[Path]:
    return sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file())


@pytest.mark.parametrize("case_id,scenario,args", CASES, ids=[c[0] for c in CASES])
def test_rebase(instar, scenario_dirs, tmp_path, case_id, scenario, args):
    src = scenario_dirs(scenario)
    dirs = {"oracle": tmp_path / "oracle", "instar": tmp_path / "instar"}
    results = {}
    for who, d in dirs.items():
        tl.copy_tree(src, d, sparse_always=True)
        argv = ["rebase", *[a.replace("ABS", str(d)) for a in args]]
        if who == "oracle":
            results[who] = tl.run_oracle(argv, cwd=d)
        else:
            results[who] = instar.run(argv, cwd=d)
    repl = {str(dirs["oracle"]): "<DIR>", str(dirs["instar"]): "<DIR>"}
    exp, act = (tl.Result(r.argv, r.returncode, tl.normalise(r.stdout, repl), tl.normalise(r.stderr, repl))
                for r in (results["oracle"], results["instar"]))
    tl.assert_same(exp, act, f"rebase {args}")

    names = files_of(dirs["oracle"])
    assert names == files_of(dirs["instar"])
    for n in names:
        a = (dirs["oracle"] / n).read_bytes().replace(os.fsencode(str(dirs["oracle"])), os.fsencode(str(dirs["instar"])))
        b = (dirs["instar"] / n).read_bytes()
        if a != b:
            diff = next(i for i in range(min(len(a), len(b))) if a[i] != b[i]) if len(a) == len(b) else None
            pytest.fail(f"{n}: bytes differ (lengths {len(a)}, {len(b)}; first difference at {diff})")
        assert layout(dirs["oracle"] / n) == layout(dirs["instar"] / n), f"{n}: host data layout differs"

    top = next((a.replace("ABS", "") for a in reversed(args) if a.endswith(".qcow2")), None)
    if exp.returncode == 0 and top and (dirs["oracle"] / top).exists() and "driver=" not in top:
        maps = [tl.run_oracle(["map", "--output=json", top], cwd=d) for d in dirs.values()]
        assert maps[0].returncode == maps[1].returncode
        assert tl.normalise(maps[0].stdout, repl) == tl.normalise(maps[1].stdout, repl)


@pytest.mark.parametrize("force", [False, True], ids=["locked-new", "locked-new-U"])
def test_new_backing_locked(instar, images, locked_image, tmp_path, force):
    """A new backing file another process holds open read-write: -U shares it."""
    new = str(Path(images.root) / locked_image)
    out = {}
    for who in ("oracle", "instar"):
        d = tmp_path / who
        d.mkdir()
        img(d, "create", "-q", "-f", "qcow2", "top.qcow2", "16M")
        io(d, "top.qcow2", "write -P 7 0 64k")
        argv = ["rebase", *(["-U"] if force else []), "-b", new, "-F", "qcow2", "top.qcow2"]
        out[who] = tl.run_oracle(argv, cwd=d) if who == "oracle" else instar.run(argv, cwd=d)
    tl.assert_same(out["oracle"], out["instar"], f"rebase onto a locked image (-U: {force})")
    assert (out["oracle"].returncode == 0) == force, out["oracle"].describe()
    assert tl.same_content(tmp_path / "oracle" / "top.qcow2", tmp_path / "instar" / "top.qcow2")


def test_image_locked(instar, images, locked_image):
    """The image itself held open read-write by another process."""
    tl.assert_same(*tl.run_both(instar, ["rebase", "-u", "-b", "x", "-F", "raw", locked_image],
                                cwd=images.root), "rebase of a locked image")
