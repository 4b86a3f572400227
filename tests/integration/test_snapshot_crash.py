"""Crash consistency of `snapshot -c`, `-d` and `-a`.

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the run completes, `qemu-img check -r all` must repair the
interrupted image to a clean one (a second check finds nothing), its
active layer must read as before the operation (or, for -a, as the
applied snapshot), and every snapshot the operation keeps must read as
before.  The expected contents are the oracle's reads of the image
before the operation (qemu-img convert, -l for snapshots).  Images with
persistent bitmaps (test_bitmaps) must keep every bitmap too.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 400


def raw_of(img: Path, out: Path, snapshot: str | None = None) -> bytes:
    args = ["convert", "-O", "raw"]
    if snapshot:
        args += ["-l", f"snapshot.name={snapshot}"]
    tl.qemu_img(*args, str(img), str(out))
    data = out.read_bytes()
    out.unlink()
    return data


def snapshot_names(img: Path) -> list[str]:
    import json

    r = tl.qemu_img("info", "--output=json", "-U", str(img))
    return [s["name"] for s in json.loads(r.stdout).get("snapshots", [])]


def bitmap_names(img: Path) -> list[str]:
    import json

    r = tl.qemu_img("info", "--output=json", "-U", str(img))
    fs = json.loads(r.stdout).get("format-specific", {}).get("data", {})
    return sorted(b["name"] for b in fs.get("bitmaps", []))


def verify_before_repair(img: Path, n: int, active_ok: list[bytes], kept: dict[str, bytes],
                         bitmaps: list[str]) -> None:
    """An image with persistent bitmaps and snapshots, read before any repair:
    qemu-img 7.2's check -r of such an image drops its snapshot table (the
    bitmaps marked in use rewrite the header from check mode's state, which
    has none), so the data, snapshots and bitmaps are read first (the image
    must open and check: exit 0, 2 or 3).  The bitmaps are all listed, or
    none: a cut inside qemu's in-place directory update
    (update_ext_header_and_dir_in_place(): the autoclear bit dropped
    first) leaves an extension qemu ignores, as a crash of qemu-img would."""
    chk = tl.run_oracle(["check", img.name], cwd=img.parent)
    assert chk.returncode in (0, 2, 3), f"write {n}: check failed:\n  {chk.describe()}"
    assert raw_of(img, img.parent / "a.raw") in active_ok, f"write {n}: active layer changed"
    names = snapshot_names(img)
    for name, data in kept.items():
        assert name in names, f"write {n}: snapshot {name} lost"
        assert raw_of(img, img.parent / "s.raw", name) == data, f"write {n}: snapshot {name} changed"
    assert bitmap_names(img) in (bitmaps, []), f"write {n}: persistent bitmaps lost"


def sweep(instar, src: Path, tmp_path: Path, args: list[str], active_ok: list[bytes],
          kept: dict[str, bytes], final_error: bytes | None = None) -> int:
    """final_error: the run ends with that error (exit 1) rather than success."""
    bitmaps = bitmap_names(src)
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        img = work / src.name
        shutil.copy(src, img)
        r = instar.run(["snapshot", *args, src.name], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if final_error is None:
            done = r.returncode == 0
        else:
            done = r.returncode == 1 and final_error in r.stderr
        if not done:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        if bitmaps:
            verify_before_repair(img, n, active_ok, kept, bitmaps)
        tl.assert_repairs_clean(img.name, cwd=work, what=f"write {n}")
        if not bitmaps:
            assert raw_of(img, work / "a.raw") in active_ok, f"write {n}: active layer changed"
            names = snapshot_names(img)
            for name, data in kept.items():
                assert name in names, f"write {n}: snapshot {name} lost"
                assert raw_of(img, work / "s.raw", name) == data, f"write {n}: snapshot {name} changed"
        else:
            assert raw_of(img, work / "a.raw") in active_ok, f"write {n}: active layer changed by the repair"
        shutil.rmtree(work)
        if done:
            return n
    pytest.fail(f"snapshot did not complete within {MAX_WRITES} writes")


def make_bitmaps(tmp_path: Path, opts: str, dirty: bool = False) -> Path:
    """make()'s image with an enabled and a disabled persistent bitmap; dirty:
    lazy refcounts, and the last writes left by qemu-io's abort (as a crash
    leaves them: the dirty bit set, the bitmaps in use)."""
    img = make(tmp_path, opts + (",lazy_refcounts=on" if dirty else ""))
    tl.qemu_img("bitmap", "--add", str(img), "on")
    tl.qemu_img("bitmap", "--add", "-g", "4k", "--disable", str(img), "off")
    if dirty:
        r = tl.qemu_io("-f", "qcow2", "-c", "write -P 0x66 1M 128k", "-c", "abort", str(img), check=False)
        assert r.returncode != 0 and img.read_bytes()[79] & 1, "the image is not dirty"
    else:
        tl.qemu_io("-f", "qcow2", "-c", "write -P 0x66 1M 128k", str(img))
    return img


def make(tmp_path: Path, opts: str) -> Path:
    d = tmp_path / "img"
    d.mkdir()
    img = d / "s.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", opts, str(img), "4M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 2M 64k", str(img))
    tl.qemu_img("snapshot", "-c", "one", str(img))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x33 64k 128k", "-c", "write -z 2M 64k", str(img))
    tl.qemu_img("snapshot", "-c", "two", str(img))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x44 0 64k", "-c", "write -P 0x55 3M 64k", str(img))
    return img


OPTS = ["cluster_size=65536", "cluster_size=4096,refcount_bits=4", "cluster_size=512,compat=0.10"]


@pytest.mark.parametrize("opts", OPTS)
def test_create(instar, tmp_path, opts):
    img = make(tmp_path, opts)
    active = raw_of(img, tmp_path / "x.raw")
    kept = {s: raw_of(img, tmp_path / "x.raw", s) for s in ("one", "two")}
    assert sweep(instar, img, tmp_path, ["-c", "three"], [active], kept) >= 4


@pytest.mark.parametrize("opts", OPTS)
@pytest.mark.parametrize("which", ["one", "two"])
def test_delete(instar, tmp_path, opts, which):
    img = make(tmp_path, opts)
    active = raw_of(img, tmp_path / "x.raw")
    kept = {s: raw_of(img, tmp_path / "x.raw", s) for s in ("one", "two") if s != which}
    assert sweep(instar, img, tmp_path, ["-d", which], [active], kept) >= 3


@pytest.mark.parametrize("opts", OPTS)
@pytest.mark.parametrize("which", ["one", "two"])
def test_apply(instar, tmp_path, opts, which):
    img = make(tmp_path, opts)
    active = raw_of(img, tmp_path / "x.raw")
    kept = {s: raw_of(img, tmp_path / "x.raw", s) for s in ("one", "two")}
    assert sweep(instar, img, tmp_path, ["-a", which], [active, kept[which]], kept) >= 3


def sweep_resized(instar, src: Path, tmp_path: Path, which: str, active_ok: list[bytes],
                  kept: dict[str, bytes]) -> int:
    """sweep() for -a with a truncation: the contents compared without their
    trailing zeros; a snapshot reads at the image's current length, kept
    holds each at its own size."""
    ok = [a.rstrip(b"\0") for a in active_ok]
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        img = work / src.name
        shutil.copy(src, img)
        r = instar.run(["snapshot", "-a", which, src.name], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        done = r.returncode == 0
        if not done:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        tl.assert_repairs_clean(img.name, cwd=work, what=f"write {n}")
        assert raw_of(img, work / "a.raw").rstrip(b"\0") in ok, f"write {n}: active layer changed"
        for name, data in kept.items():
            got = raw_of(img, work / "s.raw", name)
            # Read through the image's current length: the snapshot's data cut or padded to it.
            want = (data + bytes(max(0, len(got) - len(data))))[:len(got)]
            assert got.rstrip(b"\0") == want.rstrip(b"\0"), f"write {n}: snapshot {name} changed"
        shutil.rmtree(work)
        if done:
            return n
    pytest.fail(f"snapshot did not complete within {MAX_WRITES} writes")


@pytest.mark.parametrize("opts", OPTS[:2])
@pytest.mark.parametrize("grow", [False, True], ids=["shrink", "grow"])
def test_apply_other_size(instar, tmp_path, opts, grow):
    """-a of a snapshot of another size: the image is truncated to it (resize's
    writes: a shrink discards the clusters past the new end first, a grow
    relocates the L1 table), then the snapshot's table is applied.  The
    active layer reads as before, as before with its tail cut, or as the
    snapshot (qemu-img's own -a on a copy)."""
    img = make(tmp_path, opts)
    # The snapshots are 4 MiB: the active layer is made 6 MiB (-a shrinks it) or 2 MiB (-a grows it).
    tl.qemu_img("resize", "-q", "--shrink", str(img), "2M" if grow else "6M")
    active = raw_of(img, tmp_path / "x.raw")
    ref = tmp_path / "ref.qcow2"
    shutil.copy(img, ref)
    tl.qemu_img("snapshot", "-a", "one", str(ref))
    applied = raw_of(ref, tmp_path / "x.raw")
    # The snapshots as they read at their own size (4 MiB).
    kept = {s: raw_of(ref, tmp_path / "x.raw", s) for s in ("one", "two")}
    assert len(applied) == 4 << 20
    ok = [active, applied, active[:4 << 20]]
    assert sweep_resized(instar, img, tmp_path, "one", ok, kept) >= 3


def test_apply_longer_l1(instar, tmp_path):
    """-a of a snapshot whose L1 table is longer than the active one: the
    active table grows first (a new table, the header, the old one freed),
    then the snapshot's table is applied."""
    d = tmp_path / "img"
    d.mkdir()
    img = d / "l.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", str(img), "1G")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 900M 64k", str(img))
    tl.qemu_img("resize", "-q", "--shrink", str(img), "4M")
    tl.qemu_img("snapshot", "-c", "one", str(img))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x33 0 64k", "-c", "write -P 0x44 3M 64k", str(img))
    with open(img, "r+b") as f:
        f.seek(36)
        assert struct.unpack(">I", f.read(4))[0] == 512
        f.seek(36)
        f.write(struct.pack(">I", 2))  # what 4 MiB needs at 4 KiB clusters
    active = raw_of(img, tmp_path / "x.raw")
    kept = {"one": raw_of(img, tmp_path / "x.raw", "one")}
    assert sweep(instar, img, tmp_path, ["-a", "one"], [active, kept["one"]], kept) >= 3


@pytest.mark.parametrize("small", ["2M", "2096640"], ids=["aligned", "partial-head"])
def test_apply_larger_over_backing(instar, tmp_path, small):
    """-a of a larger snapshot over a longer backing file: the truncation
    zero-fills the grown range (zero clusters; from a size inside a
    cluster its head copied into a new cluster from the backing file
    first), then the snapshot's table is applied."""
    d = tmp_path / "img"
    d.mkdir()
    base = tmp_path / "base.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", str(base), "16M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 16M", str(base))
    img = d / "ov.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", str(base), "-F", "qcow2",
                str(img), "8M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 6M 64k", str(img))
    tl.qemu_img("snapshot", "-c", "one", str(img))
    tl.qemu_img("resize", "-q", "--shrink", str(img), small)
    active = raw_of(img, tmp_path / "x.raw")
    ref = tmp_path / "ref.qcow2"
    shutil.copy(img, ref)
    tl.qemu_img("snapshot", "-a", "one", str(ref))
    applied = raw_of(ref, tmp_path / "x.raw")
    kept = {"one": raw_of(ref, tmp_path / "x.raw", "one")}
    assert len(applied) == 8 << 20
    assert sweep_resized(instar, img, tmp_path, "one", [active, applied], kept) >= 3


@pytest.mark.parametrize("opts", OPTS[:2])
@pytest.mark.parametrize("dirty", [False, True], ids=["clean", "dirty"])
@pytest.mark.parametrize("args", [["-c", "three"], ["-d", "one"], ["-a", "two"]],
                         ids=["create", "delete", "apply"])
def test_bitmaps(instar, tmp_path, opts, dirty, args):
    """An image with persistent bitmaps: marked in use at the open (then a
    dirty image repaired), the operation, the bitmaps stored again at the
    close; -a fails (`Device has active dirty bitmaps`) after that store.
    Every cut leaves the bitmaps listed (in use, or stored) and the data."""
    img = make_bitmaps(tmp_path, opts, dirty)
    active = raw_of(img, tmp_path / "x.raw")
    kept = {s: raw_of(img, tmp_path / "x.raw", s) for s in ("one", "two") if s != args[1]}
    err = b"Device has active dirty bitmaps" if args[0] == "-a" else None
    assert sweep(instar, img, tmp_path, args, [active], kept, final_error=err) >= 1


@pytest.mark.parametrize("dirty", [False, True], ids=["clean", "dirty"])
def test_bitmaps_data_file(instar, tmp_path, dirty):
    """Bitmaps and an external data file: the open marks the bitmaps in use
    (a dirty image repaired next), -c answers -ENOTSUP and the close stores
    them again.  Every cut: the data, and the bitmaps listed (or none, in
    qemu's own window of the marking), once check -r all ran."""
    d = tmp_path / "src"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "data_file=img.raw,lazy_refcounts=on",
                "img.qcow2", "4M", cwd=d)
    tl.qemu_img("bitmap", "--add", "img.qcow2", "on", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "4k", "--disable", "img.qcow2", "off", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x66 1M 128k", "img.qcow2", cwd=d)
    if dirty:
        b = bytearray((d / "img.qcow2").read_bytes())
        b[79] |= 1
        (d / "img.qcow2").write_bytes(bytes(b))
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        for f in ("img.qcow2", "img.raw"):
            shutil.copy(d / f, work / f)
        r = instar.run(["snapshot", "-c", "x", "img.qcow2"], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        done = r.returncode == 1 and b"Operation not supported" in r.stderr
        assert done or (r.returncode == 1 and b"fault injection" in r.stderr), r.describe()
        tl.assert_repairs_clean("img.qcow2", cwd=work, what=f"write {n}")
        io = tl.qemu_io("-f", "qcow2", "-c", "read -P 0x66 1M 128k", "-c", "read -P 0 0 1M",
                        "img.qcow2", cwd=work, check=False)
        assert io.returncode == 0 and b"verification failed" not in io.stdout, f"write {n}: data changed"
        assert bitmap_names(work / "img.qcow2") in (["off", "on"], []), f"write {n}: bitmaps lost"
        if done:
            assert bitmap_names(work / "img.qcow2") == ["off", "on"]
            assert n >= 3
            return
        shutil.rmtree(work)
    pytest.fail(f"snapshot did not complete within {MAX_WRITES} writes")
