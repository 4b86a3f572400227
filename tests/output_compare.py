"""Run a command that WRITES files under qemu-img and under instar, and compare what they wrote.

Used by the parity suites of convert, dd and bench (and scripts/fuzz-convert.py).
A case names its input files (copied, holes kept where they are, into a
directory per run) and the files the command writes or changes.  The oracle
runs in a directory of its own and instar in another; both see the same
relative names and the same cwd layout, so no message needs rewriting except
an absolute mention of the run directory (``<DIR>``).  When instar's result
differs from the oracle's in any way, the oracle runs a SECOND time, in a
third directory, to tell a difference from qemu-img's own run-to-run
variation; when instar's output and files equal the oracle's, that second
run could not change the verdict (equal files are also semantically equal),
so it is skipped.

What is compared, always from the oracle's own runs:

* exit code, stdout and stderr, byte for byte (after ``normalise``); where
  they differ from instar's and the two oracle runs disagree too, the case
  is reported as needing a normalisation (a harness error, never a pass);
* for every output file: existence; then instar's file must be
  byte-identical to the oracle's, with the same host data/hole layout
  (SEEK_DATA/SEEK_HOLE), wherever the oracle writes those bytes (and that
  layout) in both of its runs;
* when the oracle's two files differ (e.g. ``convert -W``, whose writes
  complete in any order), the comparison is semantic: ``qemu-img check``,
  ``info --output=json`` without ``actual-size``, ``map --output=json``
  without host offsets, and ``qemu-img compare`` of the two results.

Nothing here knows what the command should do: the oracle's runs are the
expectation.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import instar_testlib as tl


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def sparse_copy(src: os.PathLike | str, dst: os.PathLike | str) -> None:
    """Copy a file, reproducing its data/hole layout exactly (SEEK_DATA/SEEK_HOLE).

    ``cp --sparse=always`` would also turn written zero blocks into holes;
    qcow2 block status reports holes of the host file as zeros, and raw
    block status is the host layout, so a copy must keep the layout for
    ``map``, ``convert`` and ``compare -s`` to see the same image.
    """
    tl.copy_file(src, dst)


def host_extents(path: os.PathLike | str) -> list[tuple[int, int]]:
    """The file's data extents [(start, end)], as SEEK_DATA/SEEK_HOLE report them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return tl.host_extents_fd(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def first_difference(a: Path, b: Path) -> int | None:
    """Offset of the first differing byte of two files (None if identical)."""
    x, y = Path(a).read_bytes(), Path(b).read_bytes()
    if x == y:
        return None
    n = min(len(x), len(y))
    lo, hi = 0, n  # binary search on prefix equality (C-speed slices)
    while hi - lo > 4096:
        mid = (lo + hi) // 2
        if x[lo:mid] == y[lo:mid]:
            lo = mid
        else:
            hi = mid
    for i in range(lo, hi):
        if x[i] != y[i]:
            return i
    return n


def same_bytes(a: Path, b: Path) -> bool:
    a, b = Path(a), Path(b)
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------

RUNS = ("oracle", "oracle2", "instar")


@dataclass
class Writing:
    """The runs of one case (outputs already normalised) and their directories.
    second(): the oracle's second run (made on the first call)."""

    oracle: tl.Result
    instar: tl.Result
    dirs: dict
    second: Callable[[], tl.Result]


def _normalised(r: tl.Result, repl: Mapping[str, str], extra: Callable[[bytes], bytes] | None) -> tl.Result:
    out, err = tl.normalise(r.stdout, repl), tl.normalise(r.stderr, repl)
    if extra:
        out, err = extra(out), extra(err)
    return tl.Result(r.argv, r.returncode, out, err)


def prepare(workdir: Path, files: Iterable[tuple[os.PathLike | str, str]],
            runs: Sequence[str] = RUNS) -> dict:
    """Directories oracle/, oracle2/, instar/ under workdir (the ``runs``
    among them made now), each holding a copy of every (source, relative
    name) in ``files``."""
    files = list(files)
    dirs = {k: Path(workdir) / k for k in RUNS}
    for k in runs:
        d = dirs[k]
        d.mkdir(parents=True, exist_ok=True)
        for src, rel in files:
            dst = d / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            sparse_copy(src, dst)
    return dirs


def run_writing(
    instar,
    args: Sequence[str],
    workdir: os.PathLike | str,
    files: Iterable[tuple[os.PathLike | str, str]] = (),
    outputs: Mapping[str, str | None] = {},
    normalise: Callable[[bytes], bytes] | None = None,
    contents: str = "bytes",
    timeout: float = 60,
    env_extra: Mapping[str, str] | None = None,
) -> Writing:
    """Run ``qemu-img ARGS`` twice under the oracle and once under instar; compare all.

    ``files``: (source path, relative name) pairs copied into each run's
    directory (the cwd of that run).  ``outputs``: relative name -> format
    ("qcow2", "raw" or None to let qemu-img probe) of every file the command
    may write, create or change; each is compared as described in the
    module docstring.  ``normalise`` rewrites stdout/stderr of all runs (for
    qemu-img output that varies by itself, e.g. bench's timing line).
    ``contents``: how output files are compared: "bytes" (the default:
    byte for byte wherever qemu-img writes the same bytes twice, else
    semantically), "semantic" (the case is known to give different bytes
    from run to run, e.g. ``convert -W``, so only semantic equality is
    required even if the oracle's two runs happen to agree), or "exists"
    (qemu-img's output is a race, e.g. the partial output of a convert that
    failed while other requests were in flight: only existence and size).
    Raises AssertionError on any difference.
    """
    files = list(files)
    workdir = Path(workdir)
    dirs = prepare(workdir, files, ("oracle", "instar"))
    repl = {str(d): "<DIR>" for d in dirs.values()}

    def go(k):
        r = (instar.run if k == "instar" else tl.run_oracle)(
            list(args), cwd=dirs[k], timeout=timeout, env_extra=env_extra)
        return _normalised(r, repl, normalise)

    res = {"oracle": go("oracle"), "instar": go("instar")}
    # The second oracle run only tells whether qemu-img writes the same bytes
    # twice; when it wrote or changed nothing (usage and open errors) it is
    # not made, and its directory keeps the untouched copies.
    wrote = any((dirs["oracle"] / n).exists() for n in outputs)

    def second():
        if "oracle2" not in res:
            prepare(workdir, files, ("oracle2",))
            res["oracle2"] = go("oracle2") if wrote else res["oracle"]
        return res["oracle2"]

    w = Writing(res["oracle"], res["instar"], dirs, second)
    what = f"qemu-img {' '.join(args)}"
    o1, b = w.oracle, w.instar
    if (o1.returncode, o1.stdout, o1.stderr) != (b.returncode, b.stdout, b.stderr):
        o2 = second()
        if (o1.returncode, o1.stdout, o1.stderr) != (o2.returncode, o2.stdout, o2.stderr):
            raise AssertionError(
                "HARNESS: qemu-img's output differs between two identical runs; this case needs a "
                f"normalisation (and a comment saying why):\n {o1.describe()}\n {o2.describe()}")
    tl.assert_same(w.oracle, w.instar, what)
    assert contents in ("bytes", "semantic", "exists"), contents
    for name, fmt in outputs.items():
        compare_written(dirs, name, fmt, contents, what, second)
    return w


def compare_written(dirs: dict, name: str, fmt: str | None, contents: str = "bytes",
                    what: str = "", second: Callable[[], tl.Result] | None = None) -> None:
    """Compare the file ``name`` written in the run directories (see module
    docstring); second(): makes the oracle's second run when it is needed."""
    a, a2, b = (dirs[k] / name for k in RUNS)
    if not a.exists() and not b.exists():
        return
    if a.exists() != b.exists() and second:
        second()
        if a.exists() != a2.exists():
            raise AssertionError(f"HARNESS: {name} exists after one oracle run only ({what})")
    assert a.exists() == b.exists(), f"{what}: {name} exists after qemu-img: {a.exists()}, after instar: {b.exists()}"
    if not a.exists():
        return
    if contents == "exists":
        sa, sb = a.stat().st_size, b.stat().st_size
        assert sa == sb, f"{what}: {name} has {sa} bytes after qemu-img, {sb} after instar"
        return
    # Equal bytes and layout pass whatever a second oracle run would write.
    if contents == "bytes" and same_bytes(a, b) and host_extents(a) == host_extents(b):
        return
    if contents == "bytes" and second:
        second()
    deterministic = contents == "bytes" and a2.exists() and same_bytes(a, a2)
    if contents == "bytes" and not deterministic:
        warnings.warn(f"qemu-img wrote different bytes to {name} in two runs of `{what}`: "
                      "compared semantically only")
    if deterministic:
        if not same_bytes(a, b):
            diag = semantic_differences(dirs, name, fmt)
            raise AssertionError(
                f"{what}: {name} differs from qemu-img's, which is byte-identical over two runs: "
                f"sizes {a.stat().st_size} / {b.stat().st_size}, first difference at byte "
                f"{first_difference(a, b)}" + (f"\n semantic differences: {diag}" if diag else
                                               "\n (same guest data, check, info and map: layout only)"))
        ea = host_extents(a)
        if ea == host_extents(a2):
            eb = host_extents(b)
            assert eb == ea, (f"{what}: {name}: same bytes, different host allocation (SEEK_DATA/SEEK_HOLE):\n"
                              f" qemu-img: {_fmt_extents(ea)}\n instar:   {_fmt_extents(eb)}")
        return
    diag = semantic_differences(dirs, name, fmt)
    assert not diag, f"{what}: {name}: {diag}"


def _fmt_extents(ext) -> str:
    return " ".join(f"[{s:#x},{e:#x})" for s, e in ext) or "(no data)"


_ACTUAL_SIZE = re.compile(rb'\s*"actual-size": \d+,?')
# Layout, not content: how fragmented the clusters are and where the file
# ends depend on the order in which writes allocated them.
_LAYOUT = re.compile(rb"\d+\.\d+% fragmented|Image end offset: \d+")


def guest_map(map_json: bytes) -> list:
    """``qemu-img map --output=json`` without host offsets, adjacent extents
    that then look alike merged: the guest's view of allocation.  (qemu-img
    merges extents only when their host offsets are contiguous, so the raw
    listing depends on the file layout.)"""
    out = []
    for e in json.loads(map_json or b"[]"):
        key = (e["depth"], e["present"], e["zero"], e["data"], "offset" in e)
        if out and out[-1][0] == key and out[-1][1] + out[-1][2] == e["start"]:
            out[-1][2] += e["length"]
        else:
            out.append([key, e["start"], e["length"]])
    return out


def semantic_differences(dirs: dict, name: str, fmt: str | None) -> str:
    """Differences qemu-img sees between the oracle's and instar's ``name``:
    ``check`` (but the fragmentation percentage and the image end offset),
    ``info`` (but actual-size), the guest view of ``map`` (guest_map) and
    ``compare``;
    "" if none."""
    f = ["-f", fmt] if fmt else []
    probs = []
    a, b = dirs["oracle"], dirs["instar"]
    repl = {str(a): "<DIR>", str(b): "<DIR>"}

    def both(cmd, strip=None, view=None):
        ra = tl.run_oracle([*cmd, name], cwd=a)
        rb = tl.run_oracle([*cmd, name], cwd=b)
        xa, xb = (tl.normalise(r.stdout + r.stderr, repl) for r in (ra, rb))
        if strip is not None:
            xa, xb = strip.sub(b"", xa), strip.sub(b"", xb)
        if view is not None and ra.returncode == 0 and rb.returncode == 0:
            xa, xb = view(ra.stdout), view(rb.stdout)
        if (ra.returncode, xa) != (rb.returncode, xb):
            probs.append(f"`qemu-img {' '.join(cmd)}` differs:\n  qemu-img's: {ra.describe()}\n"
                         f"  instar's: {rb.describe()}")
        return ra.returncode == 0 and rb.returncode == 0

    both(["check", *f], _LAYOUT)
    opened = both(["info", *f, "--output=json"], _ACTUAL_SIZE)
    both(["map", *f, "--output=json"], view=guest_map)
    if opened:
        ff = ["-f", fmt, "-F", fmt] if fmt else []
        c = tl.run_oracle(["compare", *ff, str(a / name), str(b / name)])
        if c.returncode != 0:
            probs.append(f"qemu-img compare: {c.describe()}")
    return "\n ".join(probs)


# --------------------------------------------------------------------------
# Deliberate refusals
# --------------------------------------------------------------------------


def run_refused(instar, args: Sequence[str], workdir: os.PathLike | str,
                files: Iterable[tuple[os.PathLike | str, str]] = (), timeout: float = 60) -> Writing:
    """Run a command instar refuses on purpose: qemu-img once (it must
    succeed, or the case would not show a difference), instar once, each in
    a directory of copies.  Check the refusal with assert_refused()."""
    dirs = prepare(Path(workdir), files, ("oracle", "instar"))
    exp = tl.run_oracle(list(args), cwd=dirs["oracle"], timeout=timeout)
    act = instar.run(list(args), cwd=dirs["instar"], timeout=timeout)
    assert exp.returncode == 0, "qemu-img should accept this: " + exp.describe()
    return Writing(exp, act, dirs, lambda: exp)


def assert_refused(w: Writing, mention: str, files: Iterable[tuple[os.PathLike | str, str]] = (),
                   outputs: Iterable[str] = ()) -> None:
    """instar refused on purpose (docs/differences.md): exit 1, nothing on
    stdout, one ``qemu-img: `` line on stderr containing ``mention``, and
    nothing written: each of ``outputs`` that was an input copy (``files``)
    still has its source's bytes, and every other one does not exist."""
    r = w.instar
    assert r.returncode == 1, r.describe()
    assert r.stdout == b"", r.describe()
    err = r.stderr.decode("utf-8", "replace")
    assert err.startswith("qemu-img: ") and err.count("\n") == 1 and mention in err, r.describe()
    sources = {rel: Path(src) for src, rel in files}
    for name in outputs:
        p = w.dirs["instar"] / name
        if name in sources:
            assert same_bytes(sources[name], p), f"{name} was changed by a refused command"
        else:
            assert not p.exists(), f"{name} was created by a refused command"
