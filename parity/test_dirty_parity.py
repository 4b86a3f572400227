"""A dirty qcow2 image (lazy refcounts, left by a crash) opened read-write
by bench -w, convert -n or rebase: qemu-img repairs it first
(qcow2_do_open() runs check -r all's repair and prints its lines), then
does the operation.  instar does the same in the guest.  With persistent
bitmaps (also for bitmap), qemu loads them first (marking the consistent
ones in use in the file), then repairs, acts (bench's and convert's
writes recorded in the enabled bitmaps) and stores them at the close:
those cases compare the files byte for byte.

Each case runs both tools on copies that keep the source's host layout
(sparse_copy) and compares exit code, stdout, stderr, the resulting
images (run_both_on_copies: check, compare, info), the header bytes
(dirty bit, refcount table) and the files' holes (the leaked old refcount
structures are discarded as qemu discards them).  Nothing here is an
expected value written by hand.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import instar_testlib as tl
from output_compare import host_extents, sparse_copy


def _dirty(d: Path, name: str, size: str = "64M", backing: str | None = None,
           writes=("write -P 7 0 64k", "write -P 9 1M 64k")) -> Path:
    opts = ["-o", "lazy_refcounts=on"] + (["-b", backing, "-F", "qcow2"] if backing else [])
    tl.qemu_img("create", "-q", "-f", "qcow2", *opts, name, *([] if backing else [size]), cwd=d)
    cmds = []
    for w in writes:
        cmds += ["-c", w]
    # qemu-io's abort leaves the image as a crash does: dirty, refcounts stale
    r = tl.qemu_io("-f", "qcow2", *cmds, "-c", "abort", name, cwd=d, check=False)
    assert r.returncode != 0
    assert (d / name).read_bytes()[72:80][-1] & 1, "the image is not dirty"
    return d / name


def _both(instar, tmp_path, args, files, images):
    exp, act = tl.run_both_on_copies(instar, args, files, tmp_path / "run", compare_images=images,
                                      compare_fmt="qcow2", copy=sparse_copy)
    tl.assert_same(exp, act, " ".join(args))
    assert b"Rebuilding refcount structure" in exp.stderr or b"Repairing" in exp.stderr or exp.returncode, \
        f"the oracle did not repair: {exp.describe()}"
    for n in images:
        o, i = tmp_path / "run" / "oracle" / n, tmp_path / "run" / "instar" / n
        assert o.read_bytes()[:104] == i.read_bytes()[:104], f"{n}: the headers differ"
        assert host_extents(o) == host_extents(i), f"{n}: different holes"
    return exp, act


@pytest.mark.parametrize("extra", [[], ["-c", "64", "-s", "64k"], ["-o", "2M", "-c", "8"]],
                         ids=["default", "spread", "offset"])
def test_bench_write(instar, tmp_path, extra):
    src = tmp_path / "src"
    src.mkdir()
    img = _dirty(src, "t.qcow2")
    args = ["bench", "-w", "-d", "1", "-c", "16", *extra, "t.qcow2"]  # -d 1: qemu allocates in order
    exp, act = tl.run_both_on_copies(instar, args, [img], tmp_path / "run", compare_images=["t.qcow2"],
                                      compare_fmt="qcow2", copy=sparse_copy)
    # bench's timing line differs from run to run; everything else must not
    strip = lambda b: b"\n".join(l for l in b.split(b"\n") if not l.startswith(b"Run completed"))
    assert exp.returncode == act.returncode, act.describe()
    assert strip(exp.stdout) == strip(act.stdout)
    assert exp.stderr == act.stderr, f"{exp.describe()}\n{act.describe()}"
    assert b"Rebuilding refcount structure" in exp.stderr
    o, i = tmp_path / "run" / "oracle" / "t.qcow2", tmp_path / "run" / "instar" / "t.qcow2"
    assert tl.same_content(o, i)
    assert host_extents(o) == host_extents(i)


def test_convert_n(instar, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "in.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 5 0 3M", "-c", "write -P 6 40M 1M", "in.qcow2", cwd=src)
    img = _dirty(src, "t.qcow2")
    _both(instar, tmp_path, ["convert", "-n", "-O", "qcow2", "in.qcow2", "t.qcow2"], [src / "in.qcow2", img],
          ["t.qcow2"])


@pytest.mark.parametrize("args", [["-u", "-b", "new.qcow2", "-F", "qcow2"], ["-b", "new.qcow2", "-F", "qcow2"],
                                  ["-b", ""]], ids=["unsafe", "safe", "flatten"])
def test_rebase(instar, tmp_path, args):
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "4M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 2M", "base.qcow2", cwd=src)
    tl.qemu_img("create", "-q", "-f", "qcow2", "new.qcow2", "4M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 2 1M 2M", "new.qcow2", cwd=src)
    img = _dirty(src, "top.qcow2", backing="base.qcow2", writes=("write -P 3 0 64k", "write -P 4 3M 64k"))
    _both(instar, tmp_path, ["rebase", *args, "top.qcow2"],
          [src / "base.qcow2", src / "new.qcow2", img], ["top.qcow2"])


@pytest.mark.parametrize("action", [["-c", "new"], ["-d", "s1"], ["-a", "s1"]], ids=["create", "delete", "apply"])
def test_snapshot(instar, tmp_path, action):
    """The snapshot table holds the creation time, so the files are compared
    field by field: the header, the holes, check, compare, and the list
    without its dates."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "t.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 128k", "t.qcow2", cwd=src)
    tl.qemu_img("snapshot", "-c", "s1", "t.qcow2", cwd=src)
    r = tl.qemu_io("-f", "qcow2", "-c", "write -P 2 64k 128k", "-c", "write -P 3 2M 64k", "-c", "abort",
                   "t.qcow2", cwd=src, check=False)
    assert r.returncode != 0
    assert (src / "t.qcow2").read_bytes()[79] & 1, "the image is not dirty"
    args = ["snapshot", *action, "t.qcow2"]
    exp, act = tl.run_both_on_copies(instar, args, [src / "t.qcow2"], tmp_path / "run", copy=sparse_copy)
    tl.assert_same(exp, act, " ".join(args))
    assert b"Rebuilding refcount structure" in exp.stderr, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "t.qcow2", tmp_path / "run" / "instar" / "t.qcow2"
    assert o.read_bytes()[:104] == i.read_bytes()[:104], "the headers differ"
    assert host_extents(o) == host_extents(i), "different holes"
    for what in (["check"], ["compare", "-f", "qcow2", "-F", "qcow2", str(o), str(i)]):
        a = tl.qemu_img(*what, *(["t.qcow2"] if what == ["check"] else []), cwd=o.parent, check=False)
        b = tl.qemu_img(*what, *(["t.qcow2"] if what == ["check"] else []), cwd=i.parent, check=False)
        assert (a.returncode, a.stdout) == (b.returncode, b.stdout), f"{a.describe()}\n{b.describe()}"
        assert a.returncode == 0, a.describe()
    names = lambda p: [l.split()[:2] for l in tl.qemu_img("snapshot", "-l", p.name, cwd=p.parent).stdout.split(b"\n")[2:] if l]
    assert names(o) == names(i)


# --- dirty images with persistent bitmaps ---

BITMAP_EXT = 0x23852875


def _clear_in_use(p: Path) -> None:
    """The in-use flag dropped from every bitmap's directory entry: consistent
    bitmaps (their stored bits) on an image whose refcounts a crash left stale."""
    b = bytearray(p.read_bytes())
    off = struct.unpack_from(">I", b, 100)[0]
    while True:
        magic, length = struct.unpack_from(">II", b, off)
        assert magic, "no bitmap extension"
        if magic == BITMAP_EXT:
            nb, _r, _size, d = struct.unpack_from(">IIQQ", b, off + 8)
            break
        off += 8 + ((length + 7) & ~7)
    for _ in range(nb):
        flags, = struct.unpack_from(">I", b, d + 12)
        nl, = struct.unpack_from(">H", b, d + 18)
        extra, = struct.unpack_from(">I", b, d + 20)
        struct.pack_into(">I", b, d + 12, flags & ~1)
        d += (24 + extra + nl + 7) & ~7
    p.write_bytes(bytes(b))


def _dirty_bitmaps(d: Path, name: str, kind: str, backing: str | None = None) -> Path:
    """Data, an enabled bitmap (64k) and a disabled one (8k) with bits, then a
    crash (qemu-io's abort) after two more writes: the dirty bit set, leaked
    refcounts, the bitmaps left in use (kind "inuse": inconsistent, qemu
    neither loads nor stores them) or made consistent again ("consistent")."""
    opts = ["-o", "lazy_refcounts=on"] + (["-b", backing, "-F", "qcow2"] if backing else [])
    tl.qemu_img("create", "-q", "-f", "qcow2", *opts, name, "64M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 128k", "-c", "write -P 2 5M 64k", name, cwd=d)
    tl.qemu_img("bitmap", "--add", name, "b0", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "8k", "--disable", name, "b1", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 3 1M 64k", name, cwd=d)
    r = tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 2M 64k", "-c", "abort",
                   name, cwd=d, check=False)
    assert r.returncode != 0
    if kind == "consistent":
        _clear_in_use(d / name)
    assert (d / name).read_bytes()[79] & 1, "the image is not dirty"
    return d / name


def _both_bytes(instar, tmp_path, args, files, image):
    """_both(), and the image byte for byte: qemu's bitmap store is deterministic."""
    exp, act = _both(instar, tmp_path, args, files, [image])
    o, i = tmp_path / "run" / "oracle" / image, tmp_path / "run" / "instar" / image
    a, b = o.read_bytes(), i.read_bytes()
    assert a == b, f"{image} differs first at byte {next(k for k in range(min(len(a), len(b))) if a[k] != b[k]) if len(a) == len(b) else 'end'}"
    return exp, act


KINDS = ["consistent", "inuse"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("extra", [[], ["-o", "3M", "-c", "40", "-s", "16k"]], ids=["default", "spread"])
def test_bitmaps_bench_write(instar, tmp_path, kind, extra):
    """bench -w's writes land in the enabled bitmap (of a consistent image)."""
    src = tmp_path / "src"
    src.mkdir()
    img = _dirty_bitmaps(src, "t.qcow2", kind)
    args = ["bench", "-w", "-d", "1", "-c", "16", *extra, "t.qcow2"]
    exp, act = tl.run_both_on_copies(instar, args, [img], tmp_path / "run", copy=sparse_copy)
    strip = lambda b: b"\n".join(l for l in b.split(b"\n") if not l.startswith(b"Run completed"))
    assert (exp.returncode, strip(exp.stdout), exp.stderr) == (act.returncode, strip(act.stdout), act.stderr), \
        f"{exp.describe()}\n{act.describe()}"
    assert exp.returncode == 0 and b"Rebuilding refcount structure" in exp.stderr, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "t.qcow2", tmp_path / "run" / "instar" / "t.qcow2"
    assert o.read_bytes() == i.read_bytes()
    assert host_extents(o) == host_extents(i)


@pytest.mark.parametrize("kind", KINDS)
def test_bitmaps_convert_n(instar, tmp_path, kind):
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "in.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 5 0 3M", "-c", "write -P 6 40M 1M", "in.qcow2", cwd=src)
    img = _dirty_bitmaps(src, "t.qcow2", kind)
    _both_bytes(instar, tmp_path, ["convert", "-n", "-O", "qcow2", "in.qcow2", "t.qcow2"],
                [src / "in.qcow2", img], "t.qcow2")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("args", [["-u", "-b", "new.qcow2", "-F", "qcow2"], ["-b", "new.qcow2", "-F", "qcow2"],
                                  ["-b", ""]], ids=["unsafe", "safe", "flatten"])
def test_bitmaps_rebase(instar, tmp_path, kind, args):
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 4M", "base.qcow2", cwd=src)
    tl.qemu_img("create", "-q", "-f", "qcow2", "new.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 2 1M 4M", "new.qcow2", cwd=src)
    img = _dirty_bitmaps(src, "top.qcow2", kind, backing="base.qcow2")
    _both_bytes(instar, tmp_path, ["rebase", *args, "top.qcow2"],
                [src / "base.qcow2", src / "new.qcow2", img], "top.qcow2")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("args", [["--add", "t.qcow2", "new"], ["--remove", "t.qcow2", "b0"],
                                  ["--clear", "t.qcow2", "b0"], ["--enable", "t.qcow2", "b1"],
                                  ["--add", "--merge", "b0", "t.qcow2", "m"]],
                         ids=["add", "remove", "clear", "enable", "merge"])
def test_bitmaps_bitmap(instar, tmp_path, kind, args):
    """Also the refusals of an in-use bitmap (after the repair and the store)."""
    src = tmp_path / "src"
    src.mkdir()
    img = _dirty_bitmaps(src, "t.qcow2", kind)
    exp, act = tl.run_both_on_copies(instar, ["bitmap", *args], [img], tmp_path / "run", copy=sparse_copy)
    tl.assert_same(exp, act, " ".join(args))
    assert b"Rebuilding refcount structure" in exp.stderr, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "t.qcow2", tmp_path / "run" / "instar" / "t.qcow2"
    assert o.read_bytes() == i.read_bytes()
    assert host_extents(o) == host_extents(i)
