"""Parity of `qemu-img bitmap` between qemu-img 7.2 and instar.

Each case makes its images with the oracle (qemu-img create, qemu-io
writes, earlier `qemu-img bitmap` calls, struct patches for in-use
bitmaps and the dirty bit), runs the command under both tools on private
copies and compares exit code, stdout and stderr (qemu's random node name
`#block1NN` normalised), then every image the command may have changed:
byte for byte (qemu-img writes bitmaps in one deterministic order), its
host data/hole layout, and with the oracle's tools `check`,
`info --output=json` (bitmaps included) and `compare`.  Nothing here is
an expected value written by hand: the oracle's run is the expectation.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import pytest

import instar_testlib as tl

BITMAP_EXT = 0x23852875
NODE_RE = re.compile(rb"#block1\d\d")


def make(path: Path, size: str = "64M", opts: str = "", writes=(), bitmaps=(), fmt="qcow2") -> Path:
    """An image made by the oracle: writes, then `qemu-img bitmap` calls (argument lists)."""
    tl.qemu_img("create", "-q", "-f", fmt, *(["-o", opts] if opts else []), str(path), size)
    if writes:
        args = []
        for w in writes:
            args += ["-c", w]
        tl.qemu_io("-f", fmt, *args, str(path))
    for b in bitmaps:
        tl.qemu_img("bitmap", *b[:-1], str(path), b[-1])
    return path


def patch_flags(path: Path, names, bit: int = 1) -> None:
    """Set flag bit (1: in use) on the named bitmaps' directory entries."""
    with open(path, "r+b") as f:
        hdr = f.read(65536)
        off = struct.unpack_from(">I", hdr, 100)[0]
        while True:
            magic, length = struct.unpack_from(">II", hdr, off)
            if magic == BITMAP_EXT:
                nb, _r, _size, d = struct.unpack_from(">IIQQ", hdr, off + 8)
                break
            if magic == 0:
                raise RuntimeError("no bitmap extension")
            off += 8 + ((length + 7) & ~7)
        for _ in range(nb):
            f.seek(d)
            ent = f.read(24)
            flags, = struct.unpack_from(">I", ent, 12)
            nl, = struct.unpack_from(">H", ent, 18)
            extra, = struct.unpack_from(">I", ent, 20)
            name = f.read(nl).decode()
            if name in names:
                f.seek(d + 12)
                f.write(struct.pack(">I", flags | bit))
            d += (24 + extra + nl + 7) & ~7


def set_dirty(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(72)
        v, = struct.unpack(">Q", f.read(8))
        f.seek(72)
        f.write(struct.pack(">Q", v | 1))


def layout(path: Path) -> list[tuple[int, int]]:
    """The file's data extents (SEEK_DATA/SEEK_HOLE)."""
    out, pos, end = [], 0, path.stat().st_size
    with open(path, "rb") as f:
        fd = f.fileno()
        while pos < end:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            h = os.lseek(fd, d, os.SEEK_HOLE)
            out.append((d, h))
            pos = h
    return out


def info_json(path: Path) -> dict:
    r = tl.qemu_img("info", "-U", "--output=json", str(path))
    d = json.loads(r.stdout)
    for k in ("actual-size", "filename", "full-backing-filename"):
        d.pop(k, None)
    return d


def compare_images(o: Path, i: Path, what: str) -> None:
    a, b = o.read_bytes(), i.read_bytes()
    if a != b:
        diff = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
        raise AssertionError(f"{what}: {o.name} differs first at byte {diff:#x} "
                             f"(lengths {len(a)}, {len(b)})")
    assert layout(o) == layout(i), f"{what}: host data/hole layout of {o.name}"
    ca = tl.qemu_img("check", "-U", o.name, cwd=o.parent, check=False)
    cb = tl.qemu_img("check", "-U", i.name, cwd=i.parent, check=False)
    na = tl.normalise(ca.stderr, {str(o.parent): "<DIR>"})
    nb = tl.normalise(cb.stderr, {str(i.parent): "<DIR>"})
    assert (ca.returncode, ca.stdout, na) == (cb.returncode, cb.stdout, nb), what
    if ca.returncode == 1:
        return  # qemu-img cannot open it (e.g. its backing file is missing): bytes compared
    assert info_json(o) == info_json(i), what
    if o.suffix == ".qcow2" and a[:4] == b"QFI\xfb":
        # From o's directory: an external data file's relative name resolves there
        # (both copies of every file were compared byte for byte already).
        r = tl.qemu_img("compare", "-U", o.name, str(i), cwd=o.parent, check=False)
        assert r.returncode == 0, f"{what}: {r.stdout!r}"


def bm_both(instar, tmp_path: Path, files, *args: str):
    """qemu-img bitmap ARGS on copies of files; full comparison of every file."""
    run = tmp_path / "run"
    exp, act = tl.run_both_on_copies(instar, ["bitmap", *args], files, run)
    exp = tl.Result(exp.argv, exp.returncode, exp.stdout, NODE_RE.sub(b"#block1NN", exp.stderr))
    act = tl.Result(act.argv, act.returncode, act.stdout, NODE_RE.sub(b"#block1NN", act.stderr))
    tl.assert_same(exp, act, f"bitmap {args}")
    if tl.same_trees(run / "oracle", run / "instar"):
        return exp, act  # every file the same bytes and holes: the oracle's checks below agree
    for f in files:
        name = Path(f).name
        compare_images(run / "oracle" / name, run / "instar" / name, f"bitmap {args}")
    return exp, act


WRITES = ("write -P 1 0 1M", "write -P 2 30M 64k", "write 63M 1M")
# Bitmaps with bits: some written while enabled, one disabled half way, one big granularity.
HISTORY = (("--add", "-g", "4k", "first"), ("--add", "-g", "1M", "other"))
LATER = ("write -P 3 10M 192k", "write 40M 4k")


def with_bits(path: Path, opts: str = "", size: str = "64M") -> Path:
    make(path, size=size, opts=opts, writes=WRITES, bitmaps=HISTORY)
    tl.qemu_io("-f", "qcow2", "-c", LATER[0], "-c", LATER[1], str(path))
    tl.qemu_img("bitmap", "--add", "--disable", str(path), "off")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 4 50M 1M", str(path))
    return path


# --- option parsing and usage errors (no image needed beyond one) ---


@pytest.mark.parametrize("argv", [
    [],
    ["IMG", "b"],
    ["--add"],
    ["--add", "IMG"],
    ["--add", "IMG", "b", "c"],
    ["-g", "4k", "--remove", "IMG", "b"],
    ["-F", "qcow2", "--add", "IMG", "b"],
    ["-b", "x.qcow2", "--add", "IMG", "b"],
    ["-g", "abc", "--add", "IMG", "b"],
    ["-g", "-1", "--add", "IMG", "b"],
    ["-g", "99999999999999999999", "--add", "IMG", "b"],
    ["-g", "8E", "--add", "IMG", "b"],
    ["--bogus", "IMG", "b"],
    ["--merge"],
    ["-x"],
    ["-g"],
    ["-h"],
    ["--image-opts", "-f", "qcow2", "--add", "IMG", "b"],
    ["--add", "missing.qcow2", "b"],
    ["-f", "foo", "--add", "IMG", "b"],
    ["--merge", "a", "-b", "missing.qcow2", "IMG", "b"],
    ["--object", "bogus,id=x", "--add", "IMG", "b"],
    ["--object", "help"],
    ["-q", "--add", "IMG", "b"],
    ["-U", "--add", "IMG", "b"],
    ["--add", "--granularity", "4k", "--source-format", "qcow2", "IMG", "b"],
], ids=["nothing", "no-action", "add-alone", "add-one-arg", "three-args", "g-without-add",
        "F-without-b", "b-without-merge", "g-abc", "g-negative", "g-huge", "g-8E", "unknown-long",
        "merge-no-arg", "unknown-short", "g-no-arg", "help", "image-opts-and-f", "missing-image",
        "unknown-driver", "missing-source", "object-bogus", "object-help", "q", "U",
        "long-options"])
def test_usage(instar, tmp_path, argv):
    img = make(tmp_path / "img.qcow2")
    bm_both(instar, tmp_path, [img], *["img.qcow2" if a == "IMG" else a for a in argv])


# --- --add ---


@pytest.mark.parametrize("g", [None, "512", "4k", "64k", "1M", "2G", "0", "1000", "256", "1.5k",
                               "4G", "4294967808"],
                         ids=lambda g: f"g-{g}")
def test_add_granularity(instar, tmp_path, g):
    img = make(tmp_path / "img.qcow2", writes=WRITES)
    bm_both(instar, tmp_path, [img], "--add", *(["-g", g] if g else []), "img.qcow2", "new")


@pytest.mark.parametrize("cs", [512, 4096, 65536, 2 << 20])
@pytest.mark.parametrize("rb", [1, 2, 4, 8, 16, 32, 64])
def test_add_formats(instar, tmp_path, cs, rb):
    img = make(tmp_path / "img.qcow2", opts=f"cluster_size={cs},refcount_bits={rb}", writes=WRITES)
    bm_both(instar, tmp_path, [img], "--add", "img.qcow2", "b")


@pytest.mark.parametrize("opts", ["extended_l2=on", "cluster_size=16384,extended_l2=on",
                                  "lazy_refcounts=on", "compression_type=zstd"])
def test_add_on_bits(instar, tmp_path, opts):
    """A second bitmap on an image whose bitmaps hold bits: all of them stored anew."""
    img = with_bits(tmp_path / "img.qcow2", opts=opts)
    bm_both(instar, tmp_path, [img], "--add", "-g", "64k", "img.qcow2", "third")


@pytest.mark.parametrize("name", ["", "first", "x" * 1023, "x" * 1024, "with space", "ünï"],
                         ids=["empty", "exists", "1023", "1024", "space", "utf8"])
def test_add_names(instar, tmp_path, name):
    img = with_bits(tmp_path / "img.qcow2")
    bm_both(instar, tmp_path, [img], "--add", "img.qcow2", name)


def test_add_disabled(instar, tmp_path):
    img = make(tmp_path / "img.qcow2", writes=WRITES)
    bm_both(instar, tmp_path, [img], "--add", "--disable", "-g", "512", "img.qcow2", "born-off")


def test_add_twice(instar, tmp_path):
    """The second add fails; the first is stored by the close all the same."""
    img = make(tmp_path / "img.qcow2", writes=WRITES)
    bm_both(instar, tmp_path, [img], "--add", "--add", "img.qcow2", "twice")


@pytest.mark.parametrize("g,name", [("1k", "big"), ("1k", "n" * 1024), ("2k", "n" * 1024),
                                    ("2k", "ok")], ids=["too-big", "too-big-long", "long", "fits"])
def test_add_too_big(instar, tmp_path, g, name):
    """8 TiB at 1 KiB per bit: 1 GiB of bits (the limit is 512 MiB), checked before the name."""
    img = make(tmp_path / "img.qcow2", size="8T")
    bm_both(instar, tmp_path, [img], "--add", "-g", g, "img.qcow2", name)


def test_add_v2(instar, tmp_path):
    img = make(tmp_path / "img.qcow2", opts="compat=0.10", writes=WRITES)
    bm_both(instar, tmp_path, [img], "--add", "img.qcow2", "b")


def test_add_snapshots(instar, tmp_path):
    img = with_bits(tmp_path / "img.qcow2")
    tl.qemu_img("snapshot", "-c", "s1", str(img))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 9 2M 64k", str(img))
    tl.qemu_img("snapshot", "-c", "s2", str(img))
    bm_both(instar, tmp_path, [img], "--add", "img.qcow2", "after-snapshots")


def test_add_many(instar, tmp_path):
    img = make(tmp_path / "img.qcow2", size="4M", writes=("write 0 1M",),
               bitmaps=[("--add", "-g", f"{512 << (i % 8)}", f"bm{i:02d}") for i in range(40)])
    bm_both(instar, tmp_path, [img], "--add", "img.qcow2", "forty-one")


def test_add_backing_not_opened(instar, tmp_path):
    """The image is opened without its backing file: a missing one does not matter."""
    make(tmp_path / "base.qcow2", writes=WRITES)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                str(tmp_path / "img.qcow2"))
    (tmp_path / "base.qcow2").unlink()
    bm_both(instar, tmp_path, [tmp_path / "img.qcow2"], "--add", "img.qcow2", "b")


def test_add_image_opts(instar, tmp_path):
    img = with_bits(tmp_path / "img.qcow2")
    bm_both(instar, tmp_path, [img], "--image-opts", "--add",
            "driver=qcow2,file.filename=img.qcow2", "io")


def test_add_object(instar, tmp_path):
    img = make(tmp_path / "img.qcow2")
    bm_both(instar, tmp_path, [img], "--object", "secret,id=s0,data=x", "--add", "img.qcow2", "ob")


def test_add_f_qcow2(instar, tmp_path):
    img = make(tmp_path / "img.qcow2")
    bm_both(instar, tmp_path, [img], "-f", "qcow2", "--add", "img.qcow2", "f")


# --- --remove, --clear, --enable, --disable ---


@pytest.mark.parametrize("act", ["--remove", "--clear", "--enable", "--disable"])
@pytest.mark.parametrize("name", ["first", "other", "off", "missing"])
def test_actions(instar, tmp_path, act, name):
    img = with_bits(tmp_path / "img.qcow2")
    bm_both(instar, tmp_path, [img], act, "img.qcow2", name)


@pytest.mark.parametrize("rb", [1, 8, 64])
@pytest.mark.parametrize("cs", [512, 65536])
def test_remove_formats(instar, tmp_path, cs, rb):
    img = with_bits(tmp_path / "img.qcow2", opts=f"cluster_size={cs},refcount_bits={rb}")
    bm_both(instar, tmp_path, [img], "--remove", "img.qcow2", "first")


def test_remove_last(instar, tmp_path):
    img = make(tmp_path / "img.qcow2", writes=WRITES, bitmaps=[("--add", "only")])
    bm_both(instar, tmp_path, [img], "--remove", "img.qcow2", "only")


@pytest.mark.parametrize("act", ["--remove", "--clear", "--enable", "--disable", "--add"])
def test_in_use(instar, tmp_path, act):
    img = with_bits(tmp_path / "img.qcow2")
    patch_flags(img, {"first"})
    bm_both(instar, tmp_path, [img], act, "img.qcow2", "first")


@pytest.mark.parametrize("act", ["--remove", "--clear", "--add", "--merge"])
def test_raw(instar, tmp_path, act):
    make(tmp_path / "img.raw", size="1M", fmt="raw")
    extra = ["x"] if act == "--merge" else []
    bm_both(instar, tmp_path, [tmp_path / "img.raw"], act, *extra, "img.raw", "b")
    bm_both(instar, tmp_path / "f", [tmp_path / "img.raw"], "-f", "raw", act, *extra, "img.raw", "b")


def test_raw_add_checks(instar, tmp_path):
    make(tmp_path / "img.raw", size="1M", fmt="raw")
    bm_both(instar, tmp_path, [tmp_path / "img.raw"], "-f", "raw", "--add", "img.raw", "")
    bm_both(instar, tmp_path / "g", [tmp_path / "img.raw"], "-f", "raw", "-g", "3", "--add",
            "img.raw", "x")


# --- combined actions ---


@pytest.mark.parametrize("argv", [
    ["--clear", "--disable", "IMG", "first"],
    ["--disable", "--enable", "IMG", "off"],
    ["--remove", "--add", "-g", "512", "IMG", "first"],
    ["--add", "--remove", "IMG", "new"],
    ["--add", "--remove", "--add", "IMG", "new"],
    ["--remove", "--remove", "IMG", "first"],
    ["--clear", "--merge", "other", "--disable", "IMG", "first"],
    ["--add", "--merge", "first", "--merge", "other", "IMG", "sum"],
    ["--add", "-g", "2M", "--merge", "first", "--disable", "IMG", "coarse"],
    ["--enable", "--clear", "--missing-later", "IMG", "off"],
    ["--disable", "--clear", "--remove", "--add", "--merge", "other", "IMG", "first"],
], ids=["clear-disable", "disable-enable", "remove-add", "add-remove", "add-remove-add",
        "remove-twice", "clear-merge-disable", "add-merge-merge", "add-coarse-merge",
        "unknown-after", "everything"])
def test_combined(instar, tmp_path, argv):
    img = with_bits(tmp_path / "img.qcow2")
    bm_both(instar, tmp_path, [img], *["img.qcow2" if a == "IMG" else a for a in argv])


def test_inconsistent_after_changes(instar, tmp_path):
    """An action fails after others changed the list: what they did is stored."""
    img = with_bits(tmp_path / "img.qcow2")
    patch_flags(img, {"other"})
    bm_both(instar, tmp_path, [img], "--clear", "--merge", "other", "img.qcow2", "first")


# --- --merge ---


@pytest.mark.parametrize("src,dst", [("first", "other"), ("other", "first"), ("off", "first"),
                                     ("first", "first"), ("missing", "first"),
                                     ("first", "missing")])
def test_merge_same_image(instar, tmp_path, src, dst):
    img = with_bits(tmp_path / "img.qcow2")
    bm_both(instar, tmp_path, [img], "--merge", src, "img.qcow2", dst)


@pytest.mark.parametrize("fmt", [None, "qcow2"])
@pytest.mark.parametrize("src", ["first", "other", "off", "missing"])
def test_merge_source_file(instar, tmp_path, src, fmt):
    s = with_bits(tmp_path / "src.qcow2", opts="cluster_size=4096")
    d = make(tmp_path / "img.qcow2", writes=("write 0 64k",), bitmaps=[("--add", "-g", "16k", "dst")])
    bm_both(instar, tmp_path, [s, d], "--merge", src, "-b", "src.qcow2",
            *(["-F", fmt] if fmt else []), "img.qcow2", "dst")


def test_merge_source_sizes_differ(instar, tmp_path):
    s = with_bits(tmp_path / "src.qcow2")
    d = make(tmp_path / "img.qcow2", size="32M", bitmaps=[("--add", "dst")])
    bm_both(instar, tmp_path, [s, d], "--merge", "first", "-b", "src.qcow2", "img.qcow2", "dst")


def test_merge_source_in_use(instar, tmp_path):
    s = with_bits(tmp_path / "src.qcow2")
    patch_flags(s, {"first"})
    d = make(tmp_path / "img.qcow2", bitmaps=[("--add", "dst")])
    bm_both(instar, tmp_path, [s, d], "--merge", "first", "-b", "src.qcow2", "img.qcow2", "dst")


def test_merge_source_raw(instar, tmp_path):
    make(tmp_path / "src.raw", size="64M", fmt="raw")
    d = make(tmp_path / "img.qcow2", bitmaps=[("--add", "dst")])
    bm_both(instar, tmp_path, [tmp_path / "src.raw", d], "--merge", "x", "-b", "src.raw",
            "-F", "raw", "img.qcow2", "dst")


def test_merge_source_is_target(instar, tmp_path):
    """-b naming the image itself: the read-only open conflicts with the writer's lock."""
    img = with_bits(tmp_path / "img.qcow2")
    bm_both(instar, tmp_path, [img], "--merge", "first", "-b", "img.qcow2", "img.qcow2", "other")


def test_merge_source_v2(instar, tmp_path):
    make(tmp_path / "src.qcow2", opts="compat=0.10")
    d = make(tmp_path / "img.qcow2", bitmaps=[("--add", "dst")])
    bm_both(instar, tmp_path, [tmp_path / "src.qcow2", d], "--add", "--merge", "x", "-b",
            "src.qcow2", "img.qcow2", "new")


def test_merge_many_sources(instar, tmp_path):
    s = make(tmp_path / "src.qcow2", writes=WRITES,
             bitmaps=[("--add", "-g", f"{512 << i}", f"s{i}") for i in range(12)])
    tl.qemu_io("-f", "qcow2", "-c", LATER[0], str(s))
    d = make(tmp_path / "img.qcow2", bitmaps=[("--add", "-g", "8k", "dst")])
    argv = []
    for i in range(12):
        argv += ["--merge", f"s{i}"]
    bm_both(instar, tmp_path, [s, d], *argv, "-b", "src.qcow2", "img.qcow2", "dst")


# --- images in odd states ---


def test_dirty_no_bitmaps(instar, tmp_path):
    """A dirty image without bitmaps is repaired as it is opened read-write."""
    img = make(tmp_path / "img.qcow2", writes=WRITES)
    set_dirty(img)
    bm_both(instar, tmp_path, [img], "--add", "img.qcow2", "b")


def test_dirty_with_bitmaps(instar, tmp_path):
    """qemu-img loads the bitmaps (marks them in use), repairs, then acts and
    stores them (more in parity/test_dirty_parity.py)."""
    img = with_bits(tmp_path / "img.qcow2")
    set_dirty(img)
    exp, _ = bm_both(instar, tmp_path, [img], "--add", "img.qcow2", "b")
    assert exp.returncode == 0, exp.describe()


def test_corrupt(instar, tmp_path):
    img = with_bits(tmp_path / "img.qcow2")
    with open(img, "r+b") as f:
        f.seek(72)
        v, = struct.unpack(">Q", f.read(8))
        f.seek(72)
        f.write(struct.pack(">Q", v | 2))
    bm_both(instar, tmp_path, [img], "--clear", "img.qcow2", "first")


@pytest.mark.parametrize("argv", [["--add"], ["--add", "--add"], ["--add", "--remove"],
                                  ["--add", "--disable"], ["--clear"]],
                         ids=["add", "add-twice", "add-remove", "add-disable", "clear"])
def test_empty_image(instar, tmp_path, argv):
    """A 0-byte image: qemu's close cannot store a bitmap (a table of 0 entries)."""
    img = make(tmp_path / "img.qcow2", size="0")
    bm_both(instar, tmp_path, [img], *argv, "img.qcow2", "b")


def test_data_file(instar, tmp_path):
    """An image with an external data file: the bitmaps live in the image file."""
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "data_file=img.bin", "img.qcow2", "8M",
                cwd=tmp_path)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 1M", "img.qcow2", cwd=tmp_path)
    tl.qemu_img("bitmap", "--add", "img.qcow2", "a", cwd=tmp_path)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 8 4M 64k", "img.qcow2", cwd=tmp_path)
    bm_both(instar, tmp_path, [tmp_path / "img.qcow2", tmp_path / "img.bin"], "--add", "--merge",
            "a", "-g", "4k", "img.qcow2", "b")


def test_merge_source_json(instar, tmp_path):
    s = with_bits(tmp_path / "src.qcow2")
    d = make(tmp_path / "img.qcow2", bitmaps=[("--add", "dst")])
    bm_both(instar, tmp_path, [s, d], "--merge", "other", "-b",
            'json:{"driver":"qcow2","file":{"driver":"file","filename":"src.qcow2"}}',
            "img.qcow2", "dst")


@pytest.mark.parametrize("opts", ["extended_l2=on", "cluster_size=2M", "refcount_bits=1"])
def test_merge_source_formats(instar, tmp_path, opts):
    s = with_bits(tmp_path / "src.qcow2", opts="cluster_size=512")
    d = with_bits(tmp_path / "img.qcow2", opts=opts)
    bm_both(instar, tmp_path, [s, d], "--merge", "first", "--merge", "other", "-b", "src.qcow2",
            "-F", "qcow2", "img.qcow2", "off")


@pytest.mark.parametrize("act", [["--remove"], ["--clear"], ["--merge", "other"]])
def test_snapshots(instar, tmp_path, act):
    """Internal snapshots share the image: their clusters stay referenced."""
    img = with_bits(tmp_path / "img.qcow2", opts="refcount_bits=2")
    tl.qemu_img("snapshot", "-c", "s1", str(img))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 9 2M 64k", str(img))
    bm_both(instar, tmp_path, [img], *act, "img.qcow2", "first")


# --- other formats: their node cannot store persistent bitmaps, or has none ---


@pytest.mark.parametrize("fmt", ["vmdk", "vdi", "qed"])
@pytest.mark.parametrize("act", ["--add", "--remove"])
def test_other_formats(instar, tmp_path, fmt, act):
    img = make(tmp_path / f"img.{fmt}", size="1M", fmt=fmt)
    bm_both(instar, tmp_path, [img], act, f"img.{fmt}", "b")
