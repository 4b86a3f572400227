"""Crash consistency of `convert -n` into an existing qcow2 image (fault injection).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th block write,
zero or truncate.  For every N until the convert completes, the
interrupted target must hold no corruption (`qemu-img check`: leaked
clusters at most, qcow2's ordering promise) and `check -r all` must leave
it clean; every sector of it must read either as before the convert or as
the source (no third value: a cluster linked before its data, a shared
cluster written in place, a reference dropped too early); an internal
snapshot must read as before.  The completed convert must leave the
target equal to the source.

Scenarios: a target with an internal snapshot and compressed clusters
(copy-on-write of shared clusters, zero writes that free and discard
clusters), and a target over a backing file with larger clusters than
the source (copy-on-write from the backing data, partial zero writes that
fall back to written zeros).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 400
SECTOR = 512


def raw(img: Path, out: Path, *opts: str) -> bytes:
    r = tl.run_oracle(["convert", "-U", *opts, "-O", "raw", str(img), str(out)])
    assert r.returncode == 0, r.describe()
    data = out.read_bytes()
    out.unlink()
    return data


def verify(img: Path, old: bytes, new: bytes, snap: bytes | None) -> None:
    r = tl.run_oracle(["check", "--output=json", str(img)])
    assert r.returncode in (0, 3), f"check finds more than leaks:\n  {r.describe()}"
    assert json.loads(r.stdout).get("corruptions", 0) == 0, r.describe()
    got = raw(img, img.with_suffix(".raw"))
    assert len(got) == len(old) == len(new)
    for i in range(0, len(got), SECTOR):
        s = got[i:i + SECTOR]
        assert s in (old[i:i + SECTOR], new[i:i + SECTOR]), f"sector at {i} is neither old nor new data"
    if snap is not None:
        assert raw(img, img.with_suffix(".snap"), "-l", "snap") == snap, "the snapshot changed"
    tl.assert_repairs_clean(img)


def sweep(instar, d: Path, tmp_path: Path, snap: bool) -> int:
    old = raw(d / "t.qcow2", tmp_path / "old.raw")
    new = raw(d / "src.qcow2", tmp_path / "new.raw")
    assert old != new
    snap_data = raw(d / "t.qcow2", tmp_path / "snap.raw", "-l", "snap") if snap else None
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        shutil.copytree(d, work)
        img = work / "t.qcow2"
        r = instar.run(["convert", "-n", "-O", "qcow2", "src.qcow2", "t.qcow2"], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode == 0:
            verify(img, old, new, snap_data)
            cmp = tl.run_oracle(["compare", "src.qcow2", "t.qcow2"], cwd=work)
            assert cmp.returncode == 0, cmp.describe()
            return n
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        verify(img, old, new, snap_data)
        shutil.rmtree(work)
    pytest.fail(f"convert did not complete within {MAX_WRITES} writes")


def make_source(d: Path) -> None:
    """Data, a partial cluster, zero clusters, a compressed run, holes."""
    tl.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", "2M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x5a 0 300k", "-c", "write -z 320k 128k",
               "-c", "write -P 0x6b 700k 5k", "-c", "write -c -P 0x7c 1M 128k", "src.qcow2", cwd=d)


def test_into_snapshotted_target(instar, tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    make_source(d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "t.qcow2", "2M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -c -P 0x22 1536k 256k", "-c", "write -P 0x11 0 1536k",
               "t.qcow2", cwd=d)
    tl.qemu_img("snapshot", "-c", "snap", "t.qcow2", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x33 64k 64k", "t.qcow2", cwd=d)
    assert sweep(instar, d, tmp_path, snap=True) >= 40


def test_into_target_over_backing(instar, tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    make_source(d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "2M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0xb1 0 2M", "base.qcow2", cwd=d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=256k", "-b", "base.qcow2", "-F",
                "qcow2", "t.qcow2", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0xc1 512k 64k", "t.qcow2", cwd=d)
    assert sweep(instar, d, tmp_path, snap=False) >= 10
