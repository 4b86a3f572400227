"""`qemu-img check -r leaks|all` parity: every image of tests/corrupt_check.py
(each corruption at each refcount width 1, 2, 4, 16, 64), in both modes, plus
images with internal snapshots and compressed clusters.

Each case copies the image twice; qemu-img repairs one copy, instar the other
(run_both_on_copies).  Then, from the oracle alone:

* exit code, stdout and stderr are the same;
* `qemu-img check` gives the same exit code and summary on both repaired
  copies (so wherever qemu-img's repair is clean, instar's is);
* `qemu-img compare` finds the guest data of both repaired copies equal
  (where both still open);
* the repaired files have the same holes (SEEK_DATA/SEEK_HOLE): clusters a
  repair frees are discarded as qemu-img discards them, so `disk size`
  agrees.

The documented differences (docs/differences.md, "check -r") are asserted as
such: where instar refuses ("ERROR refusing to repair: ...") it exits 1 and
the file is byte for byte the original, and qemu-img's repair is not clean
unless the case is a snapshot-table rewrite.
"""

from __future__ import annotations

import filecmp

import pytest

import corrupt_check as cc
import instar_testlib as tl
from output_compare import host_extents, sparse_copy

REFUSED = b"ERROR refusing to repair"
#: qemu-img's repair is clean because its header update (clearing an unknown
#: autoclear bit) drops the snapshot table; instar refuses (docs/differences.md).
AUTOCLEAR_DROPS_SNAPSHOTS = {"autoclear-unknown-snap"}


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    return cc.session_set(tmp_path_factory)


def _status(path):
    r = tl.qemu_img("check", path.name, cwd=path.parent, check=False)
    return r.returncode, r.stdout


def _header_state(path):
    """Feature bits (incompatible, autoclear) and snapshot count from the header bytes."""
    b = path.read_bytes()[:104]
    return {"incompat": int.from_bytes(b[72:80], "big"), "autoclear": int.from_bytes(b[88:96], "big"),
            "nb_snapshots": int.from_bytes(b[60:64], "big"), "version": int.from_bytes(b[4:8], "big")}


def _snapshots(path):
    r = tl.qemu_img("snapshot", "-l", path.name, cwd=path.parent, check=False)
    return r.returncode, r.stdout


def _repair_case(instar, src, mode, workdir, case_name=""):
    args = ["check", "-r", mode, src.name]
    expected, actual = tl.run_both_on_copies(instar, args, [src], workdir, copy=sparse_copy)
    o, i = workdir / "oracle" / src.name, workdir / "instar" / src.name
    if REFUSED in actual.stderr:
        assert actual.returncode == 1, actual.describe()
        assert b"qemu-img: Check failed" in actual.stderr
        assert filecmp.cmp(src, i, shallow=False), "a refused repair changed the file"
        if case_name in AUTOCLEAR_DROPS_SNAPSHOTS:
            # the documented reason: qemu-img's "clean" image lost its snapshots
            assert _header_state(src)["nb_snapshots"] > 0
            assert _header_state(o)["nb_snapshots"] == 0
        else:
            assert _status(o)[0] != 0, "qemu-img's repair is clean where instar refused"
        return
    tl.assert_same(expected, actual, " ".join(args))
    assert host_extents(o) == host_extents(i), "the repaired files have different holes"
    if tl.same_files(o, i):
        return  # identical bytes: the oracle's re-check, snapshot list and compare agree by construction
    so, si = _status(o), _status(i)
    assert so == si, f"re-check differs: qemu-img {so}, instar {si}"
    # Header state: dirty bit, unknown autoclear bits and snapshot count as
    # qemu-img leaves them; the corrupt bit too wherever the result is clean
    # (instar keeps the bit it set when corruptions remain, docs/repair.md).
    ho, hi = _header_state(o), _header_state(i)
    if so[0] != 0 and mode == "all":
        ho["incompat"] &= ~2
        hi["incompat"] &= ~2
    assert ho == hi, f"header state differs: qemu-img {ho}, instar {hi}"
    if so[0] == 0:
        assert _snapshots(o) == _snapshots(i)
    cmp = tl.qemu_img("compare", "-f", "qcow2", "-F", "qcow2", str(o), str(i), check=False)
    if so[0] == 0:
        assert cmp.returncode == 0, cmp.describe()
    else:
        # Still corrupt: the copies may be unreadable alike, never different.
        assert cmp.returncode != 1, cmp.describe()


CASES = [pytest.param(inst, mode, id=f"{mode}-{inst.id}") for inst in cc.instances() for mode in ("leaks", "all")]


@pytest.mark.parametrize("inst,mode", CASES)
def test_repair_corrupt(instar, corrupt, tmp_path, inst, mode):
    src = corrupt.root / corrupt.path(inst)
    _repair_case(instar, src, mode, tmp_path, inst.case.name)


# ---------------------------------------------------------------------------
# Internal snapshots and compressed clusters (refcounts above 1 are legitimate)
# ---------------------------------------------------------------------------
def _mk_snap_comp(d, name, w, leak):
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", f"refcount_bits={w}", name, "8M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 256k", "-c", "write -c -P 2 1M 128k",
               "-c", "write -c -P 3 2M 64k", name, cwd=d)
    tl.qemu_img("snapshot", "-c", "s1", name, cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 4 64k 64k", "-c", "write -c -P 5 3M 64k", name, cwd=d)
    tl.qemu_img("snapshot", "-c", "s2", name, cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 6 1M 64k", name, cwd=d)
    q = cc.Qcow2((d / name).read_bytes())
    if leak == "leak":
        q.set_l2(0x30000, 0)  # guest cluster 3 of the active L1 only
    elif leak == "rc-high":
        q.set_refcount(q.data_cluster(0x20000), q.refcount(q.data_cluster(0x20000)) + 1)
    elif leak == "rc-zero":
        q.set_refcount(q.data_cluster(0), 0)
    (d / name).write_bytes(bytes(q.b))


EXTRA = [pytest.param(w, leak, mode, id=f"snapcomp-{leak}-rb{w}-{mode}")
         for w in (4, 16, 64) for leak in ("clean", "leak", "rc-high", "rc-zero")
         for mode in ("leaks", "all")]


@pytest.mark.parametrize("w,leak,mode", EXTRA)
def test_repair_snapshots_compressed(instar, tmp_path, w, leak, mode):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    _mk_snap_comp(src_dir, "t.qcow2", w, leak)
    _repair_case(instar, src_dir / "t.qcow2", mode, tmp_path / "run")


# ---------------------------------------------------------------------------
# A lazy-refcounts image left dirty by a crash: the refcounts are rebuilt, and
# the old refcount table and block, leaked, are discarded
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["leaks", "all"])
def test_repair_dirty_lazy_refcounts(instar, tmp_path, mode):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "t.qcow2", "64M", cwd=src_dir)
    # qemu-io's abort leaves the image as a crash does: dirty, refcounts stale
    r = tl.qemu_io("-f", "qcow2", "-c", "write 0 64k", "-c", "write 1M 64k", "-c", "abort", "t.qcow2",
                   cwd=src_dir, check=False)
    assert r.returncode != 0
    assert _header_state(src_dir / "t.qcow2")["incompat"] & 1, "the image is not dirty"
    _repair_case(instar, src_dir / "t.qcow2", mode, tmp_path / "run")
