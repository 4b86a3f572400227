"""Crash consistency of `instar commit` (fault injection).

INSTAR_FAULT_WRITES=N makes the VMM stop the guest before its (N+1)-th
write (block write, zero, truncate or copy).  For every N from 0 until the
commit completes, the interrupted chain must still open in qemu-img,
`qemu-img check -r all` must bring the top and a qcow2 base to a clean
state, and the guest data read through the top must be what it was before
the commit (`qemu-img compare` with an untouched copy of the chain): qemu's
order, the data into the base first (flushed), the top emptied only after.

Scenarios: the top emptied by make_completely_empty(), by discarding every
cluster (a top with an internal snapshot; a version 2 top), a raw base, a
base grown first, -d, and a three-image chain committed with -b into its
bottom; a top and base with persistent bitmaps (marked in use at the
open, stored again at the close: a cut leaves bitmaps qemu reads as
inconsistent, which check -r all leaves as they are), and a dirty top
with bitmaps (repaired at the open, after its bitmaps are marked in
use), with and without -d; qcow and vmdk bases (one with an extent file,
and streamOptimized), and a qcow top.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 600  # a commit here takes far fewer; a bound against endless loops


def _chain(d: Path, base_fmt="qcow2", base_opts="", top_opts="", base_size="4M", top_size=None, mid=False,
           snapshot=False, bitmaps=False, dirty=False):
    base = d / ("base.raw" if base_fmt == "raw" else "base.qcow2")
    tl.qemu_img("create", "-q", "-f", base_fmt, *(["-o", base_opts] if base_opts else []), str(base), base_size)
    tl.qemu_io("-f", base_fmt, "-c", "write -P 1 0 1M", "-c", "write -P 5 1536k 64k", str(base))
    below, below_fmt = base, base_fmt
    if mid:
        m = d / "mid.qcow2"
        tl.qemu_img("create", "-q", "-f", "qcow2", "-b", below.name, "-F", below_fmt, str(m))
        tl.qemu_io("-f", "qcow2", "-c", "write -P 3 1M 1M", str(m))
        below, below_fmt = m, "qcow2"
    top = d / "top.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", *(["-o", top_opts] if top_opts else []), "-b", below.name,
                "-F", below_fmt, str(top), *([top_size] if top_size else []))
    if bitmaps:
        tl.qemu_img("bitmap", "--add", str(top), "t0")
        tl.qemu_img("bitmap", "--add", "-g", "8k", str(top), "t1")
        if base_fmt == "qcow2":
            tl.qemu_img("bitmap", "--add", str(base), "b0")
            tl.qemu_img("bitmap", "--add", "-g", "4k", str(base), "b1")
    writes = ["-c", "write -P 2 512k 1M", "-c", "write -z 2M 64k", "-c", "write -c -P 7 3M 64k"]
    if dirty:
        # qemu-io's abort leaves a lazy-refcounts top as a crash does: dirty, refcounts stale
        r = tl.qemu_io("-f", "qcow2", *writes, "-c", "abort", str(top), check=False)
        assert r.returncode != 0 and top.read_bytes()[79] & 1
    else:
        tl.qemu_io("-f", "qcow2", *writes, str(top))
    if snapshot:
        tl.qemu_img("snapshot", "-c", "s1", str(top))
        tl.qemu_io("-f", "qcow2", "-c", "write -P 9 1536k 128k", str(top))
    return [p.name for p in sorted(d.iterdir())]


def _verify(run: Path, ref: Path, names: list[str]) -> None:
    for n in names:
        if n.endswith(".qcow2"):
            tl.assert_repairs_clean(run / n)
    c = tl.run_oracle(["compare", str(ref / "top.qcow2"), str(run / "top.qcow2")])
    assert c.returncode == 0, f"guest data through the top changed:\n  {c.describe()}"


def _sweep(instar, tmp_path: Path, args: list[str], **kw) -> int:
    ref = tmp_path / "ref"
    ref.mkdir()
    names = _chain(ref, **kw)
    for n in range(MAX_WRITES):
        run = tmp_path / f"n{n}"
        shutil.copytree(ref, run)
        r = instar.run(["commit", *args, "top.qcow2"], cwd=run, env_extra={"INSTAR_FAULT_WRITES": str(n)},
                       timeout=120)
        if r.returncode == 0:
            _verify(run, ref, names)
            return n
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        _verify(run, ref, names)
        shutil.rmtree(run)
    pytest.fail(f"commit did not complete within {MAX_WRITES} writes")


@pytest.mark.parametrize("kw", [
    {},
    {"snapshot": True},
    {"base_opts": "compat=0.10", "top_opts": "compat=0.10"},
    {"base_fmt": "raw"},
    {"base_size": "2M", "top_size": "6M"},
    {"top_opts": "extended_l2=on", "base_opts": "cluster_size=4k"},
    {"bitmaps": True},
    {"bitmaps": True, "base_size": "2M", "top_size": "6M"},
    {"bitmaps": True, "dirty": True, "top_opts": "lazy_refcounts=on"},
], ids=["empty-completely", "snapshot-discard", "v2-discard", "raw-base", "grown-base", "extl2-small-base",
        "bitmaps", "bitmaps-grown-base", "dirty-top-bitmaps"])
def test_commit_crash(instar, tmp_path, kw):
    writes = _sweep(instar, tmp_path, [], **kw)
    assert writes >= 5


def test_commit_crash_drop(instar, tmp_path):
    assert _sweep(instar, tmp_path, ["-d"]) >= 2


def test_commit_crash_drop_bitmaps_dirty(instar, tmp_path):
    assert _sweep(instar, tmp_path, ["-d"], bitmaps=True, dirty=True, top_opts="lazy_refcounts=on") >= 2


def test_commit_crash_b_bottom(instar, tmp_path):
    assert _sweep(instar, tmp_path, ["-b", "base.qcow2"], mid=True) >= 2


@pytest.mark.parametrize("top_fmt,base_fmt,sub", [("qcow2", "qcow", None), ("qcow2", "vmdk", None),
                                                  ("qcow", "qcow", None), ("qcow2", "vmdk", "twoGbMaxExtentSparse"),
                                                  ("qcow2", "vmdk", "streamOptimized")],
                         ids=["qcow2-qcow", "qcow2-vmdk", "qcow-qcow", "qcow2-vmdk-extent", "qcow2-vmdk-stream"])
def test_commit_crash_other_formats(instar, tmp_path, top_fmt, base_fmt, sub):
    """A qcow or vmdk base (the job's writes through their drivers; a vmdk
    one also with an extent file of its own, or streamOptimized), and a
    qcow top emptied as qcow_make_empty() does (its L1 table zeroed, then
    the file cut): at every cut the guest data read through the top is
    what it was, and a vmdk base passes check."""
    ref = tmp_path / "ref"
    ref.mkdir()
    base, top = f"base.{base_fmt}", f"top.{top_fmt}"
    tl.qemu_img("create", "-q", "-f", base_fmt, *(["-o", f"subformat={sub}"] if sub else []), str(ref / base), "4M")
    # (streamOptimized takes whole grains, each once: the top's clusters go to new ones)
    stream = sub == "streamOptimized"
    tl.qemu_io("-f", base_fmt, "-c", "write -P 1 0 64k", "-c", f"write -P 5 1536k {'64k' if stream else '4k'}",
               str(ref / base))
    tl.qemu_img("create", "-q", "-f", top_fmt, "-b", base, "-F", base_fmt, str(ref / top), "4M", cwd=ref)
    # few clusters: a qcow base takes several writes (L2 entry synced, file grown) per cluster
    tl.qemu_io("-f", top_fmt, "-c", f"write -P 2 {'256k' if stream else '32k'} 16k", "-c", "write -P 7 3M 4k", top,
               cwd=ref)
    for n in range(MAX_WRITES):
        run = tmp_path / f"n{n}"
        shutil.copytree(ref, run)
        r = instar.run(["commit", top], cwd=run, env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        assert r.returncode == 0 or (r.returncode == 1 and b"fault injection" in r.stderr), r.describe()
        if base_fmt == "vmdk":
            ck = tl.run_oracle(["check", "-f", "vmdk", str(run / base)])
            assert ck.returncode == 0, ck.describe()
        c = tl.run_oracle(["compare", "-f", top_fmt, "-F", top_fmt, str(ref / top), str(run / top)])
        assert c.returncode == 0, f"n={n}: guest data through the top changed:\n  {c.describe()}"
        shutil.rmtree(run)
        if r.returncode == 0:
            assert n >= 3
            return
    pytest.fail(f"commit did not complete within {MAX_WRITES} writes")


def test_commit_crash_encrypted(instar, tmp_path):
    """A LUKS-encrypted top over a LUKS-encrypted base, each with its own
    secret (iotest 198): the base's clusters written through its cipher,
    then the top emptied cluster by cluster (its LUKS header kept).  At
    every cut both images repair clean and the guest data read through
    the top is what it was."""
    secrets = ["--object", "secret,id=s0,data=base-pass", "--object", "secret,id=s1,data=top-pass"]
    spec = ("driver=qcow2,file.filename=top.qcow2,encrypt.key-secret=s1,"
            "backing.driver=qcow2,backing.file.filename=base.qcow2,backing.encrypt.key-secret=s0")
    base_spec = "driver=qcow2,file.filename=base.qcow2,encrypt.key-secret=s0"
    ref = tmp_path / "ref"
    ref.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", *secrets, "-o",
                "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", "base.qcow2", "4M", cwd=ref)
    tl.qemu_img("create", "-q", "-f", "qcow2", *secrets, "-o",
                "encrypt.format=luks,encrypt.key-secret=s1,encrypt.iter-time=10", "-b", "base.qcow2", "-F",
                "qcow2", "top.qcow2", cwd=ref)
    tl.qemu_io(*secrets, "--image-opts", "-c", "write -P 1 0 256k", base_spec, cwd=ref)
    tl.qemu_io(*secrets, "--image-opts", "-c", "write -P 2 128k 192k", "-c", "write -P 3 2M 64k", spec, cwd=ref)
    ref_spec = spec.replace("top.qcow2", str(ref / "top.qcow2")).replace("base.qcow2", str(ref / "base.qcow2"))
    for n in range(MAX_WRITES):
        run = tmp_path / f"n{n}"
        shutil.copytree(ref, run)
        r = instar.run(["commit", *secrets, "--image-opts", spec], cwd=run,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        assert r.returncode == 0 or (r.returncode == 1 and b"fault injection" in r.stderr), r.describe()
        for s in (base_spec, spec):
            tl.assert_repairs_clean(s, *secrets, "--image-opts", cwd=run, what=f"n={n}")
        c = tl.run_oracle(["compare", *secrets, "--image-opts", ref_spec, spec], cwd=run)
        assert c.returncode == 0, f"n={n}: guest data through the top changed:\n  {c.describe()}"
        shutil.rmtree(run)
        if r.returncode == 0:
            assert n >= 3
            return
    pytest.fail(f"commit did not complete within {MAX_WRITES} writes")
