"""Crash consistency of `amend` (compat=1.1, lazy_refcounts=, size=, a dirty image's repair).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the run completes, `qemu-img check -r all` must recover the
interrupted image (no corruption left afterwards) and the guest data the
amend keeps must read as before.
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

MAX_WRITES = 400

DATA = ("write -P 7 0 64k", "write -P 9 3M 128k")
READS_4M = ["read -P 7 0 64k", "read -P 0 64k 2944k", "read -P 9 3M 128k", "read -P 0 3200k 896k"]
READS_1M = ["read -P 7 0 64k", "read -P 0 64k 960k"]


def verify(img: Path, reads: list[str], cwd: Path | None = None) -> None:
    """cwd: where qemu resolves a relative data file name (not the image's directory)."""
    tl.assert_repairs_clean(img, cwd=cwd)
    io = tl.run([tl.QEMU_IO, "-f", "qcow2", *[x for c in reads for x in ("-c", c)], str(img)], cwd=cwd)
    assert io.returncode == 0 and b"Pattern verification failed" not in io.stdout + io.stderr, (
        f"kept data changed:\n  {io.describe()}")


def sweep(instar, src: Path, tmp_path: Path, opts: str, reads: list[str]) -> int:
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        tl.copy_file(src, work / src.name)
        img = work / src.name
        r = instar.run(["amend", "-o", opts, src.name], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode == 0:
            verify(img, reads)
            return n
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        verify(img, reads)
    pytest.fail(f"amend did not complete within {MAX_WRITES} writes")


def make(d: Path, name: str, opts: str, size: str = "4M") -> Path:
    d.mkdir(exist_ok=True)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", opts, name, size, cwd=d)
    tl.qemu_io("-f", "qcow2", *[x for c in DATA for x in ("-c", c)], name, cwd=d)
    return d / name


CASES = [
    # (id, create options, amend options, reads of the kept data, least writes)
    ("lazy-on", "cluster_size=65536", "lazy_refcounts=on", READS_4M, 1),
    ("lazy-off", "lazy_refcounts=on", "lazy_refcounts=off", READS_4M, 1),
    ("grow", "cluster_size=65536", "size=64M", READS_4M, 1),
    ("grow-small-clusters", "cluster_size=512,refcount_bits=1", "size=300M", READS_4M, 3),
    ("shrink", "cluster_size=65536", "size=1M", READS_1M, 2),
    ("shrink-small-clusters", "cluster_size=512,refcount_bits=1", "size=1M", READS_1M, 2),
    ("lazy-and-grow", "cluster_size=4096", "lazy_refcounts=on,size=1G", READS_4M, 3),
    ("upgrade", "compat=0.10", "compat=1.1", READS_4M, 1),
    ("upgrade-lazy-grow", "compat=0.10,cluster_size=512", "compat=1.1,lazy_refcounts=on,size=300M", READS_4M, 4),
]


@pytest.mark.parametrize("create,opts,reads,least", [pytest.param(c, o, r, n, id=i) for i, c, o, r, n in CASES])
def test_amend_crash(instar, tmp_path, create, opts, reads, least):
    src = make(tmp_path / "img", "a.qcow2", create)
    assert sweep(instar, src, tmp_path, opts, reads) >= least


@pytest.mark.parametrize("opts", ["lazy_refcounts=off", "size=128M"])
def test_dirty_image_crash(instar, tmp_path, opts):
    """A crash left a lazy-refcounts image dirty: the repair's writes, then the amend's."""
    d = tmp_path / "img"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "t.qcow2", "64M", cwd=d)
    r = tl.qemu_io("-f", "qcow2", "-c", "write -P 5 0 64k", "-c", "write -P 6 1M 64k", "-c", "abort",
                   "t.qcow2", cwd=d, check=False)
    assert r.returncode != 0
    reads = ["read -P 5 0 64k", "read -P 0 64k 960k", "read -P 6 1M 64k"]
    assert sweep(instar, d / "t.qcow2", tmp_path, opts, reads) >= 2


def make_rich(d: Path, opts: str) -> Path:
    """Data, an internal snapshot, then compressed and zero clusters over it."""
    src = make(d, "a.qcow2", opts)
    tl.qemu_img("snapshot", "-c", "s1", "a.qcow2", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -c -P 3 1M 256k", "-c", "write -z 3M 64k",
               "-c", "write -P 4 3136k 64k", "a.qcow2", cwd=d)
    return src


def sweep_same(instar, src: Path, tmp_path: Path, opts: str, extra: tuple = (), after=None) -> int:
    """As sweep(), with the whole active layer compared to the source's;
    after(img, n, done): more checks of each resulting image."""
    s = tl.run_oracle(["snapshot", "-l", str(src)]).stdout.splitlines()[2:]
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        for f in (src, *extra):
            tl.copy_file(f, work / f.name)
        img = work / src.name
        r = instar.run(["amend", "-o", opts, src.name], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        assert r.returncode == 0 or (r.returncode == 1 and b"fault injection" in r.stderr), r.describe()
        tl.assert_repairs_clean(img, what=f"n={n}")
        c = tl.run_oracle(["compare", "-f", "qcow2", "-F", "qcow2", str(src), str(img)])
        assert c.returncode == 0, f"guest data changed (n={n}):\n  {c.describe()}"
        t = tl.run_oracle(["snapshot", "-l", str(img)]).stdout.splitlines()[2:]
        assert s == t, f"snapshots changed (n={n})"
        if after:
            after(img, n, r.returncode == 0)
        if r.returncode == 0:
            return n
    pytest.fail(f"amend did not complete within {MAX_WRITES} writes")


# (id, create options, new refcount_bits, least writes)
REFCOUNT_CASES = [
    ("16-to-64", "cluster_size=65536", "64", 4),
    ("16-to-8", "cluster_size=65536", "8", 4),
    ("64-to-4", "cluster_size=65536,refcount_bits=64", "4", 4),
    ("2-to-32", "cluster_size=4096,refcount_bits=2", "32", 4),
    ("4-to-16", "cluster_size=4096,refcount_bits=4", "16", 4),
    ("8-to-64-c512", "cluster_size=512,refcount_bits=8", "64", 8),
]


@pytest.mark.parametrize("create,bits,least", [pytest.param(c, b, n, id=i) for i, c, b, n in REFCOUNT_CASES])
def test_refcount_bits_crash(instar, tmp_path, create, bits, least):
    """refcount_bits= rebuilds the refcount structures: a crash at any write loses nothing."""
    src = make_rich(tmp_path / "img", create)
    assert sweep_same(instar, src, tmp_path, f"refcount_bits={bits}") >= least


def test_downgrade_crash(instar, tmp_path):
    """compat=0.10 expands zero clusters (active and a snapshot's), then rewrites the header."""
    d = tmp_path / "img"
    src = make_rich(d, "cluster_size=4096,lazy_refcounts=on")
    tl.qemu_io("-f", "qcow2", "-c", "write -z -u 2M 64k", "-c", "write -z 64k 8k", "a.qcow2", cwd=d)
    assert sweep_same(instar, src, tmp_path, "compat=0.10") >= 4


def test_downgrade_backed_crash(instar, tmp_path):
    """A backed image's unallocated zero clusters get clusters of zeros."""
    d = tmp_path / "img"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "4M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 5 0 4M", "base.qcow2", cwd=d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "backing_file=base.qcow2,backing_fmt=qcow2",
                "t.qcow2", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -z 0 192k", "-c", "write -P 6 1M 64k", "-c", "write -z 1M 64k",
               "t.qcow2", cwd=d)
    tl.qemu_img("snapshot", "-c", "s1", "t.qcow2", cwd=d)
    assert sweep_same(instar, d / "t.qcow2", tmp_path, "compat=0.10", (d / "base.qcow2",)) >= 4


def test_refcount_bits_and_downgrade_crash(instar, tmp_path):
    """refcount_bits=16 from 64, then the downgrade, in one amend."""
    src = make_rich(tmp_path / "img", "cluster_size=65536,refcount_bits=64")
    tl.qemu_io("-f", "qcow2", "-c", "write -z 0 64k", "a.qcow2", cwd=tmp_path / "img")
    assert sweep_same(instar, src, tmp_path, "compat=0.10,refcount_bits=16") >= 6


def bitmap_names(img: Path) -> list[tuple[str, bool]]:
    """(name, in use) of each persistent bitmap, as qemu-img info lists them
    (from the image's directory: a relative data file name opens from there)."""
    import json

    r = tl.run_oracle(["info", "--output=json", img.name], cwd=img.parent)
    assert r.returncode == 0, r.describe()
    data = json.loads(r.stdout).get("format-specific", {}).get("data", {})
    return [(b["name"], "in-use" in b["flags"]) for b in data.get("bitmaps", [])]


@pytest.mark.parametrize("opts", ["lazy_refcounts=on", "refcount_bits=64", "size=1G"])
def test_bitmaps_crash(instar, tmp_path, opts):
    """An image with persistent bitmaps: the open marks them in use, the amend
    writes, the close stores them anew.  A crash at any write loses no data
    and no bitmap once they are marked in use (one left in use is what qemu
    reports as inconsistent); the completed run leaves them all consistent."""
    d = tmp_path / "img"
    src = make(d, "a.qcow2", "cluster_size=65536")
    tl.qemu_img("bitmap", "--add", "a.qcow2", "b0", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "512k", "--disable", "a.qcow2", "b1", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 4 1M 256k", "a.qcow2", cwd=d)
    names = [n for n, _ in bitmap_names(src)]
    assert names == ["b0", "b1"]

    def after(img: Path, n: int, done: bool) -> None:
        found = bitmap_names(img)
        # The in-place marking (update_ext_header_and_dir_in_place()) clears
        # the header's bitmaps bit, rewrites the directory, then the header
        # gets the bit back: qemu's own window (the first four writes here)
        # where a crash drops the bitmaps, never the data.
        assert [b for b, _ in found] == names or (n <= 3 and not found), f"bitmaps lost (n={n}): {found}"
        if done:
            assert not any(u for _, u in found), f"bitmaps left in use: {found}"

    assert sweep_same(instar, src, tmp_path, opts, after=after) >= 3


@pytest.mark.parametrize("opts", ["compat=1.1", "compat=1.1,refcount_bits=8,size=64M"])
def test_upgrade_unknown_exts_crash(instar, tmp_path, opts):
    """A version 2 image with a header extension qemu does not know: the
    upgrade rewrites the header cluster with it carried over (one write),
    then the other changes.  Every cut leaves an image qemu-img opens and
    repairs, with the same guest data and the extension kept."""
    import struct

    d = tmp_path / "img"
    src = make(d, "a.qcow2", "compat=0.10")
    b = bytearray(src.read_bytes())
    assert struct.unpack_from(">II", b, 72) == (0, 0)
    b[72:88] = struct.pack(">II", 0x12345678, 5) + b"hello\0\0\0"
    src.write_bytes(bytes(b))

    def after(img: Path, n: int, done: bool) -> None:
        assert b"\x12\x34\x56\x78\x00\x00\x00\x05hello" in img.read_bytes()[:4096], f"extension lost (n={n})"

    assert sweep_same(instar, src, tmp_path, opts, after=after) >= 1


@pytest.mark.parametrize("dirty", [False, True], ids=["clean", "dirty"])
def test_bitmaps_downgrade_crash(instar, tmp_path, dirty):
    """compat=0.10 of an image with persistent bitmaps: marked in use by the
    open (a dirty image repaired next), the close stores them, and the
    header is written as version 2 with the bitmaps extension left in it (as
    qemu-img leaves it).  Every cut: no data lost, version 3 with the bitmaps
    listed (but inside qemu's own window of the marking) or version 2."""
    d = tmp_path / "img"
    src = make(d, "a.qcow2", "cluster_size=65536,lazy_refcounts=on")
    tl.qemu_img("bitmap", "--add", "a.qcow2", "b0", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "512k", "--disable", "a.qcow2", "b1", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 4 1M 256k", "a.qcow2", cwd=d)
    if dirty:
        b = bytearray(src.read_bytes())
        b[79] |= 1
        src.write_bytes(bytes(b))
    names = [n for n, _ in bitmap_names(src)]

    def after(img: Path, n: int, done: bool) -> None:
        version = int.from_bytes(img.read_bytes()[4:8], "big")
        assert version == 2 or not done, "not downgraded"
        if version == 3:
            found = bitmap_names(img)
            assert [b for b, _ in found] == names or (n <= 3 and not found), f"bitmaps lost (n={n}): {found}"

    assert sweep_same(instar, src, tmp_path, "compat=0.10", after=after) >= 5


@pytest.mark.parametrize("opts", ["compat=1.1", "compat=1.1,refcount_bits=8,size=8M"])
def test_upgrade_snapshots_crash(instar, tmp_path, opts):
    """A version 2 image whose snapshot table lacks the version 3 extra data:
    the upgrade writes the table again (new clusters, the header's snapshot
    fields, the old table freed), then the version 3 header.  Every cut:
    the data and both snapshots kept."""
    import struct

    d = tmp_path / "img"
    src = make(d, "a.qcow2", "compat=0.10")
    tl.qemu_img("snapshot", "-c", "s1", "a.qcow2", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 3 1M 64k", "a.qcow2", cwd=d)
    tl.qemu_img("snapshot", "-c", "second", "a.qcow2", cwd=d)
    b = bytearray(src.read_bytes())
    nb, off = struct.unpack_from(">IQ", b, 60)
    entries, pos = [], off
    for _ in range(nb):  # each entry without its extra data, as version 2 writers left them
        hdr = bytearray(b[pos:pos + 40])
        id_len, name_len = struct.unpack_from(">HH", hdr, 12)
        extra, = struct.unpack_from(">I", hdr, 36)
        struct.pack_into(">I", hdr, 36, 0)
        entries.append(bytes(hdr) + bytes(b[pos + 40 + extra:pos + 40 + extra + id_len + name_len]))
        pos += (40 + extra + id_len + name_len + 7) & ~7
    table = b"".join(e + bytes(-len(e) % 8) for e in entries)
    b[off:pos] = table + bytes(pos - off - len(table))
    src.write_bytes(bytes(b))

    def after(img: Path, n: int, done: bool) -> None:
        if done:
            assert int.from_bytes(img.read_bytes()[4:8], "big") == 3

    assert sweep_same(instar, src, tmp_path, opts, after=after) >= 3


def test_downgrade_unknown_exts_crash(instar, tmp_path):
    """A version 3 image with a header extension qemu does not know: the
    downgrade writes it into the version 2 header (one write of the header
    cluster, after the zero clusters' expansion)."""
    import struct

    d = tmp_path / "img"
    src = make(d, "a.qcow2", "cluster_size=65536")
    tl.qemu_io("-f", "qcow2", "-c", "write -z 1M 128k", "a.qcow2", cwd=d)
    b = bytearray(src.read_bytes())
    off = struct.unpack_from(">I", b, 100)[0]
    while struct.unpack_from(">I", b, off)[0]:
        off += 8 + ((struct.unpack_from(">I", b, off + 4)[0] + 7) & ~7)
    b[off:off + 24] = struct.pack(">II", 0x12345678, 5) + b"hello\0\0\0" + bytes(8)
    src.write_bytes(bytes(b))

    def after(img: Path, n: int, done: bool) -> None:
        assert b"\x12\x34\x56\x78\x00\x00\x00\x05hello" in img.read_bytes()[:4096], f"extension lost (n={n})"
        if done:
            assert int.from_bytes(img.read_bytes()[4:8], "big") == 2

    assert sweep_same(instar, src, tmp_path, "compat=0.10", after=after) >= 1


@pytest.mark.parametrize("opts", ["lazy_refcounts=off", "size=1G"])
def test_bitmaps_dirty_crash(instar, tmp_path, opts):
    """A dirty image (lazy refcounts) with consistent persistent bitmaps: the
    open marks them in use, then repairs the image (qemu's order), the
    amend writes, the close stores them anew.  Every cut: no data lost, the
    bitmaps listed (but inside qemu's own window of the marking), and all
    consistent once the run completed."""
    d = tmp_path / "img"
    src = make(d, "a.qcow2", "cluster_size=65536,lazy_refcounts=on")
    tl.qemu_img("bitmap", "--add", "a.qcow2", "b0", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "512k", "--disable", "a.qcow2", "b1", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 4 1M 256k", "a.qcow2", cwd=d)
    b = bytearray(src.read_bytes())
    b[79] |= 1  # the dirty bit alone: a repair with nothing to fix, qemu's writes all the same
    src.write_bytes(bytes(b))
    names = [n for n, _ in bitmap_names(src)]
    assert names == ["b0", "b1"]

    def after(img: Path, n: int, done: bool) -> None:
        found = bitmap_names(img)
        assert [b for b, _ in found] == names or (n <= 3 and not found), f"bitmaps lost (n={n}): {found}"
        if done:
            assert not any(u for _, u in found), f"bitmaps left in use: {found}"

    assert sweep_same(instar, src, tmp_path, opts, after=after) >= 5


@pytest.mark.parametrize("create,opts", [
    ("data_file=d.raw", "size=8M"),
    ("data_file=d.raw", "lazy_refcounts=on,size=3200k"),
    ("data_file=d.raw", "refcount_bits=1,data_file=other.raw"),
    ("data_file=d.raw,data_file_raw=on", "data_file_raw=off,size=6M"),
    # With persistent bitmaps: the open marks them in use, the close stores
    # them, and the header's new name or raw bit is written after that store.
    ("data_file=d.raw+bitmaps", "lazy_refcounts=on,data_file=other.raw"),
    ("data_file=d.raw,data_file_raw=on+bitmaps", "data_file_raw=off,size=6M"),
])
def test_data_file_crash(instar, tmp_path, create, opts):
    """An external data file (device 1, read-write): the header rewritten
    with a new name or without the raw bit, the data file cut or extended
    with the image.  Every interrupted image repairs and reads as before
    (other.raw is a second name of the same file, so the header reads the
    same data under either name)."""
    src = tmp_path / "src"
    src.mkdir()
    create, _, bitmaps = create.partition("+")
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", create, "d.qcow2", "4M", cwd=src)
    if bitmaps:
        tl.qemu_img("bitmap", "--add", "d.qcow2", "b0", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 3M 128k", "d.qcow2", cwd=src)
    reads = ["read -P 7 0 64k", "read -P 9 3M 128k"]
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        for f in ("d.qcow2", "d.raw"):
            tl.copy_file(src / f, work / f)
        (work / "other.raw").hardlink_to(work / "d.raw")
        r = instar.run(["amend", "-o", opts, "d.qcow2"], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        assert r.returncode == 0 or (r.returncode == 1 and b"fault injection" in r.stderr), r.describe()
        verify(work / "d.qcow2", reads, cwd=work)
        if bitmaps:
            found = bitmap_names(work / "d.qcow2")
            assert [b for b, _ in found] == ["b0"] or (n <= 3 and not found), f"bitmaps lost (n={n}): {found}"
        if r.returncode == 0:
            assert n >= 1
            if bitmaps:
                assert not any(u for _, u in found), f"bitmaps left in use: {found}"
            return
    pytest.fail(f"amend did not complete within {MAX_WRITES} writes")


def test_grow_partial_head_over_longer_backing(instar, tmp_path):
    """size= from a size inside a cluster over a longer backing file: the
    head cluster copied into a new one (its backing data read first), the
    zeros written there, the old reference dropped; every cut repairs
    with the kept data, the backing file's part of the head included."""
    d = tmp_path / "img"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "8M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 8M", "base.qcow2", cwd=d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "base.qcow2", "-F", "qcow2",
                "t.qcow2", "1047552", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 1044480 512", "t.qcow2", cwd=d)
    reads = ["read -P 7 0 64k", "read -P 1 64k 978944", "read -P 9 1044480 512", "read -P 1 1044992 2560"]
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        shutil.copytree(d, work)
        r = instar.run(["amend", "-o", "size=6M", "t.qcow2"], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        assert r.returncode == 0 or (r.returncode == 1 and b"fault injection" in r.stderr), r.describe()
        verify(work / "t.qcow2", reads, cwd=work)
        if r.returncode == 0:
            io = tl.run([tl.QEMU_IO, "-f", "qcow2", "-c", "read -P 0 1047552 5243904", "t.qcow2"], cwd=work)
            assert b"Pattern verification failed" not in io.stdout + io.stderr, io.describe()
            assert n >= 3
            return
        shutil.rmtree(work)
    pytest.fail(f"amend did not complete within {MAX_WRITES} writes")
