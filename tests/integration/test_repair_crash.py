"""Crash safety of `check -r`: the repair is interrupted before each of its
writes in turn (INSTAR_FAULT_WRITES=N: the VMM stops the guest before its
(N+1)-th block write or truncate), and after every interruption

* the image still opens in qemu-img (`qemu-img info`, and `qemu-img check`
  completes: exit 0, 2 or 3, never 1);
* no guest data is lost: `qemu-img compare` finds the interrupted image equal
  to the corrupt original (these repairs never change guest data);
* a second, uninterrupted `instar check -r all` makes it clean (`qemu-img
  check` exit 0) and clears the corrupt bit.

The sweep ends at the first N where the repair completes, so every write of
the repair is covered.  Images come from tests/corrupt_check.py.
"""

from __future__ import annotations

import shutil
import struct

import pytest

import corrupt_check as cc
import instar_testlib as tl

#: (case, width, mode): repairs that reach a clean image without changing
#: guest data, covering the rebuild, refcount fixes in both directions,
#: OFLAG_COPIED fixes, growing the file, and plain leak frees.
SWEEP = [
    ("refcount-zero-l2", 16, "all"),
    ("refcount-zero-data", 1, "all"),
    ("reftable0-zero", 4, "all"),
    ("reftable0-past-eof", 64, "all"),
    ("refblock-overlaps-l2", 2, "all"),
    ("refcount-too-low", 16, "all"),
    ("copied-cleared-l2", 16, "leaks"),
    ("leak", 2, "leaks"),
    ("dirty-lazy-leak", 16, "leaks"),
    ("refcount-too-high", 64, "all"),
]
MAX_WRITES = 200


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    return cc.session_set(tmp_path_factory)


def _instance(name, width):
    for inst in cc.instances():
        if inst.case.name == name and inst.width == width:
            return inst
    raise LookupError(f"{name}-rb{width} is not a generator instance")


def _corrupt_bit(path):
    data = path.read_bytes()
    return struct.unpack_from(">I", data, 4)[0] >= 3 and bool(struct.unpack_from(">Q", data, 72)[0] & 2)


@pytest.mark.parametrize("name,width,mode", SWEEP, ids=[f"{m}-{n}-rb{w}" for n, w, m in SWEEP])
def test_interrupted_repair(instar, corrupt, tmp_path, name, width, mode):
    src = corrupt.root / corrupt.path(_instance(name, width))
    completed = False
    for n in range(MAX_WRITES):
        img = tmp_path / f"w{n}.qcow2"
        shutil.copyfile(src, img)
        r = instar.run(["check", "-r", mode, img.name], cwd=tmp_path,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)})
        if r.returncode in (0, 2, 3) and b"sandbox failure" not in r.stderr:
            completed = True
        else:
            assert r.returncode == 1, r.describe()
            assert b"sandbox failure" in r.stderr, r.describe()
        info = tl.qemu_img("info", img.name, cwd=tmp_path, check=False)
        assert info.returncode == 0, f"after {n} writes: {info.describe()}"
        chk = tl.qemu_img("check", img.name, cwd=tmp_path, check=False)
        assert chk.returncode in (0, 2, 3), f"after {n} writes: {chk.describe()}"
        cmp = tl.qemu_img("compare", "-f", "qcow2", "-F", "qcow2", str(src), str(img), check=False)
        assert cmp.returncode == 0, f"after {n} writes, guest data changed: {cmp.describe()}"
        again = instar.run(["check", "-r", "all", img.name], cwd=tmp_path)
        assert again.returncode == 0, f"after {n} writes, second repair: {again.describe()}"
        final = tl.qemu_img("check", img.name, cwd=tmp_path, check=False)
        assert final.returncode == 0, f"after {n} writes: {final.describe()}"
        assert not _corrupt_bit(img), f"after {n} writes: corrupt bit left set"
        img.unlink()
        if completed:
            break
    assert completed, f"the repair did not complete within {MAX_WRITES} writes"
    assert n > 0, "the sweep must interrupt at least one write"


def test_interrupted_all_leaves_corrupt_bit(instar, corrupt, tmp_path):
    """An -r all stopped after its first write leaves the corrupt bit set."""
    src = corrupt.root / corrupt.path(_instance("refcount-zero-l2", 16))
    img = tmp_path / "t.qcow2"
    shutil.copyfile(src, img)
    assert not _corrupt_bit(img)
    r = instar.run(["check", "-r", "all", img.name], cwd=tmp_path,
                   env_extra={"INSTAR_FAULT_WRITES": "1"})
    assert r.returncode == 1, r.describe()
    assert _corrupt_bit(img)
    io = tl.qemu_io("-c", "write 0 512", img.name, cwd=tmp_path, check=False)
    assert b"is corrupt" in io.stderr + io.stdout, io.describe()


def test_clean_repair_changes_nothing(instar, corrupt, tmp_path):
    """Idempotence: repairing a clean image writes nothing (bytes and mtime kept)."""
    src = corrupt.root / corrupt.path(_instance("leak", 16))
    img = tmp_path / "t.qcow2"
    shutil.copyfile(src, img)
    assert instar.run(["check", "-r", "all", img.name], cwd=tmp_path).returncode == 0
    before = img.read_bytes()
    st = img.stat()
    for mode in ("leaks", "all"):
        r = instar.run(["check", "-r", mode, img.name], cwd=tmp_path)
        assert r.returncode == 0, r.describe()
        assert b"No errors were found on the image." in r.stdout
    assert img.read_bytes() == before
    assert img.stat().st_mtime_ns == st.st_mtime_ns
