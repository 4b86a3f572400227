"""Crash safety of `check -r`: the repair is interrupted before each of its
writes in turn (INSTAR_FAULT_WRITES=N: the VMM stops the guest before its
(N+1)-th block write or truncate), and after every interruption

* the image still opens in qemu-img (`qemu-img info`, and `qemu-img check`
  completes: exit 0, 2 or 3, never 1), or fails exactly as the original did
  (a snapshot table qemu refuses to open stays so until the header switch);
* no guest data is lost: `qemu-img compare` finds the interrupted image equal
  to the corrupt original (these repairs never change guest data), or, when
  the original does not open, to qemu-img's own repair of it;
* a second, uninterrupted `instar check -r all` ends as qemu-img's repair of
  the same file does (exit code, corrupt bit), and it or a third one makes
  the image clean (`qemu-img check` exit 0) with the corrupt bit cleared.

The sweep ends at the first N where the repair completes, so every write of
the repair is covered.  Images come from tests/corrupt_check.py.
"""

from __future__ import annotations

import shutil
import struct

import pytest

import corrupt_check as cc
import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

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
    # the snapshot table rewrite (new table, header switch, old table freed)
    ("snap-table-past-eof", 16, "all"),
    ("snap-extra-too-large", 64, "all"),
    ("snap-extra-incomplete", 2, "all"),
    # header-only changes: unknown autoclear bits, the dirty bit after a rebuild
    ("autoclear-unknown-leak", 16, "leaks"),
    ("dirty-refcount-zero", 16, "all"),
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
    src_info = tl.qemu_img("info", src.name, cwd=src.parent, check=False).returncode
    src_check = tl.qemu_img("check", src.name, cwd=src.parent, check=False).returncode
    ref = src
    if src_info != 0:
        ref = tmp_path / "oracle-repaired.qcow2"
        shutil.copyfile(src, ref)
        tl.qemu_img("check", "-r", "all", ref.name, cwd=tmp_path, check=False)
        assert tl.qemu_img("info", ref.name, cwd=tmp_path, check=False).returncode == 0
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
        assert info.returncode in (0, src_info), f"after {n} writes: {info.describe()}"
        chk = tl.qemu_img("check", img.name, cwd=tmp_path, check=False)
        assert chk.returncode in (0, 2, 3, src_check), f"after {n} writes: {chk.describe()}"
        if info.returncode == 0:
            cmp = tl.qemu_img("compare", "-f", "qcow2", "-F", "qcow2", str(ref), str(img), check=False)
            assert cmp.returncode == 0, f"after {n} writes, guest data changed: {cmp.describe()}"
        # The next repair behaves as qemu-img's repair of the same file ...
        twin = tmp_path / "twin.qcow2"
        shutil.copyfile(img, twin)
        again = instar.run(["check", "-r", "all", img.name], cwd=tmp_path)
        qtwin = tl.qemu_img("check", "-r", "all", twin.name, cwd=tmp_path, check=False)
        assert again.returncode in (0, 3), f"after {n} writes, second repair: {again.describe()}"
        assert again.returncode == qtwin.returncode, f"after {n} writes: {again.describe()}"
        assert _corrupt_bit(img) == _corrupt_bit(twin), f"after {n} writes: corrupt bit differs"
        # ... and at most one more makes it clean: a leak the first one
        # could not see (a cluster past the end of the file that a rewrite
        # then passes), or a corrupt bit qemu-img clears only after a
        # repair that found nothing left (qcow2_mark_consistent).
        if again.returncode != 0 or _corrupt_bit(img):
            third = instar.run(["check", "-r", "all", img.name], cwd=tmp_path)
            assert third.returncode == 0, f"after {n} writes, third repair: {third.describe()}"
        final = tl.qemu_img("check", img.name, cwd=tmp_path, check=False)
        assert final.returncode == 0, f"after {n} writes: {final.describe()}"
        assert not _corrupt_bit(img), f"after {n} writes: corrupt bit left set"
        img.unlink()
        twin.unlink()
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
