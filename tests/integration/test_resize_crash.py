"""Crash consistency of `instar resize` (fault injection).

INSTAR_FAULT_WRITES=N makes the VMM stop the guest before its (N+1)-th
block write or truncate.  For every N from 0 until the resize completes,
the interrupted image must still open in qemu-img (`qemu-img info`),
`qemu-img check -r all` must bring it to a clean state, and the guest data
inside the kept range must read back as the oracle wrote it.

Scenarios: a grow that relocates the L1 table and has to grow the refcount
table (512-byte clusters, 64-bit refcounts, an image whose file nearly
fills what its refcount table covers), and the issue's shrink.
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

MAX_WRITES = 400  # a resize here takes far fewer; a bound against endless loops


def header_fields(path: Path) -> tuple[int, int, int]:
    """(size, l1_table_offset, refcount_table_offset) from a qcow2 header."""
    with open(path, "rb") as f:
        h = f.read(64)
    size = struct.unpack(">Q", h[24:32])[0]
    l1 = struct.unpack(">Q", h[40:48])[0]
    reft = struct.unpack(">Q", h[48:56])[0]
    return size, l1, reft


def verify_recoverable(img: Path, reads: list[str]) -> None:
    info = tl.run_oracle(["info", str(img)])
    assert info.returncode == 0, f"qemu-img info fails on the interrupted image:\n  {info.describe()}"
    tl.assert_repairs_clean(img)
    args = []
    for r in reads:
        args += ["-c", r]
    io = tl.run([tl.QEMU_IO, "-f", "qcow2", *args, str(img)])
    assert io.returncode == 0 and b"Pattern verification failed" not in io.stdout + io.stderr, (
        f"guest data lost in the kept range:\n  {io.describe()}"
    )


def sweep(instar, src: Path, tmp_path: Path, args: list[str], reads: list[str]) -> tuple[int, Path]:
    """Interrupt the resize before every write in turn; returns (writes, final image)."""
    for n in range(MAX_WRITES):
        img = tmp_path / f"n{n}.qcow2"
        tl.copy_file(src, img)
        r = instar.run(["resize", *[str(img) if a == "IMG" else a for a in args]],
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode == 0:
            return n, img
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        verify_recoverable(img, reads)
        img.unlink()
    pytest.fail(f"resize did not complete within {MAX_WRITES} writes")


def test_grow_with_l1_and_reftable_relocation(instar, tmp_path):
    src = tmp_path / "grow.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", str(src), "16M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 12M 128k",
               "-c", "write -P 3 1M 3700k", str(src))
    reads = ["read -P 7 0 64k", "read -P 3 1M 3700k", "read -P 9 12M 128k", "read -P 0 64k 960k"]
    writes, final = sweep(instar, src, tmp_path, ["IMG", "256M"], reads)
    before, after = header_fields(src), header_fields(final)
    # The scenario really moved both tables and was interruptible at each step.
    assert after[0] == 256 << 20
    assert after[1] != before[1], "L1 table was not relocated"
    assert after[2] != before[2], "refcount table did not grow"
    assert writes >= 4
    verify_recoverable(final, reads)


@pytest.mark.parametrize("rb", [1, 16, 64])
def test_shrink(instar, tmp_path, rb):
    src = tmp_path / "shrink.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", f"refcount_bits={rb}", str(src), "16M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 12M 128k", str(src))
    reads = ["read -P 7 0 64k", "read -P 0 64k 8128k"]
    writes, final = sweep(instar, src, tmp_path, ["--shrink", "IMG", "8M"], reads)
    assert writes >= 3
    assert final.stat().st_size == 393216
    verify_recoverable(final, reads)


def test_shrink_small_clusters(instar, tmp_path):
    """512-byte clusters: the discard allocates and frees many L2 tables."""
    src = tmp_path / "small.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=4", str(src), "1M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 768k 64k", str(src))
    reads = ["read -P 7 0 64k", "read -P 0 64k 448k"]
    sweep(instar, src, tmp_path, ["--shrink", "IMG", "512k"], reads)


@pytest.mark.parametrize("mode", ["metadata", "falloc"])
def test_grow_with_preallocation(instar, tmp_path, mode):
    """Preallocation: L2 tables (and data clusters) for the new range, a new
    refcount area for falloc; the partial head cluster is kept or copied."""
    src = tmp_path / "pre.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096,refcount_bits=4", str(src), "1047552")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 1044480 3072", str(src))
    reads = ["read -P 7 0 64k", "read -P 9 1044480 3072"]
    writes, final = sweep(instar, src, tmp_path, [f"--preallocation={mode}", "IMG", "3M"], reads)
    assert header_fields(final)[0] == 3 << 20
    assert writes >= 4
    verify_recoverable(final, reads + ["read -P 0 1047552 2097152"])


def test_grow_over_longer_backing(instar, tmp_path):
    """The zero-fill: new L2 tables whose entries read as zeros."""
    base = tmp_path / "base.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", str(base), "8M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 8M", str(base))
    src = tmp_path / "ov.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", str(base), "-F", "qcow2",
                str(src), "1M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", str(src))
    reads = ["read -P 7 0 64k", "read -P 1 64k 960k"]
    writes, final = sweep(instar, src, tmp_path, ["IMG", "6M"], reads)
    assert header_fields(final)[0] == 6 << 20
    assert writes >= 3
    verify_recoverable(final, reads + ["read -P 0 1M 5M"])


def test_dirty_image_repair_then_grow(instar, tmp_path):
    """A dirty lazy-refcounts image (a crash after two writes): the repair
    qemu runs while opening it (a refcount rebuild, leaks discarded), then
    the grow; interrupted at any write, the image still repairs with the
    data intact."""
    src = tmp_path / "dirty.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", str(src), "64M")
    r = tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 1M 64k", "-c", "abort",
                   str(src), check=False)
    assert r.returncode != 0
    reads = ["read -P 7 0 64k", "read -P 9 1M 64k", "read -P 0 2M 62M"]
    writes, final = sweep(instar, src, tmp_path, ["IMG", "128M"], reads)
    assert writes >= 4, "the repair and the grow should take several writes"
    assert header_fields(final)[0] == 128 << 20
    with open(final, "rb") as f:
        f.seek(72)
        assert struct.unpack(">Q", f.read(8))[0] & 1 == 0, "the dirty bit is still set"
    verify_recoverable(final, reads)


@pytest.mark.parametrize("spec", ["+3M", "--shrink 5M", "--preallocation=metadata +1M"])
def test_bitmaps(instar, tmp_path, spec):
    """Persistent bitmaps: marked in use in place, the resize, then stored anew
    (data, tables, directory, the header, the old clusters freed).  Every
    interrupted image repairs; until the header names the new directory the
    bitmaps are in use (qemu reads them as inconsistent), after it they are
    the new ones."""
    src = tmp_path / "bm.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", str(src), "8M")
    tl.qemu_img("bitmap", "--add", str(src), "b1")
    tl.qemu_img("bitmap", "--add", "-g", "512", str(src), "b2")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 4M 64k", str(src))
    reads = ["read -P 7 0 64k", "read -P 9 4M 64k"]
    *flags, new = spec.split()
    writes, final = sweep(instar, src, tmp_path, [*flags, "IMG", new], reads)
    assert writes >= 8, "marking in use, the resize and the store should take several writes"
    info = tl.run_oracle(["info", str(final)])
    assert b"b1" in info.stdout and b"b2" in info.stdout and b"in-use" not in info.stdout, info.describe()
    verify_recoverable(final, reads)


@pytest.mark.parametrize("opts,spec", [("data_file=d.data", "+3M"), ("data_file=d.data", "--shrink 2M"),
                                       ("data_file=d.data,data_file_raw=on", "+3M"),
                                       ("data_file=d.data", "--preallocation=metadata 4100k")])
def test_data_file(instar, tmp_path, opts, spec):
    """An external data file: the metadata as for any resize, and the data
    file cut or extended to the new size (last for a shrink)."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", opts, "d.qcow2", "4M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 1M 64k", "d.qcow2", cwd=src)
    reads = ["read -P 7 0 64k", "read -P 9 1M 64k"]
    *flags, new = spec.split()
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        shutil.copytree(src, work)
        r = instar.run(["resize", *flags, "d.qcow2", new], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode != 0:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        rep = tl.run_oracle(["check", "-r", "all", "d.qcow2"], cwd=work)
        assert rep.returncode == 0, f"write {n}: check -r all did not repair:\n  {rep.describe()}"
        args = []
        for rd in reads:
            args += ["-c", rd]
        io = tl.run([tl.QEMU_IO, "-f", "qcow2", *args, "d.qcow2"], cwd=work)
        assert io.returncode == 0 and b"Pattern verification failed" not in io.stdout + io.stderr, (
            f"write {n}: guest data lost:\n  {io.describe()}")
        if r.returncode == 0:
            assert n >= 2
            return
        shutil.rmtree(work)
    pytest.fail(f"resize did not complete within {MAX_WRITES} writes")


def test_preallocation_metadata_shared_head(instar, tmp_path):
    """Metadata preallocation over a partial head cluster shared with a
    snapshot: the cluster is copied into a new one, the L2 entry relinked,
    the old reference dropped."""
    src = tmp_path / "sh.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", str(src), "1047552")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 1044480 3072", str(src))
    tl.qemu_img("snapshot", "-c", "s1", str(src))
    reads = ["read -P 7 0 64k", "read -P 9 1044480 3072"]
    writes, final = sweep(instar, src, tmp_path, ["--preallocation=metadata", "IMG", "2M"], reads)
    assert writes >= 4
    verify_recoverable(final, reads + ["read -P 0 1047552 1049600"])


def test_preallocation_metadata_zero_alloc_head(instar, tmp_path):
    """Metadata preallocation over a preallocated zero cluster at the old
    end: its zeros written in place, then the entry loses its zero flag."""
    src = tmp_path / "za.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", str(src), "1047552")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 1044480 3072",
               "-c", "write -z 1044480 3072", str(src))
    reads = ["read -P 7 0 64k", "read -P 0 1044480 3072"]
    writes, final = sweep(instar, src, tmp_path, ["--preallocation=metadata", "IMG", "2M"], reads)
    assert writes >= 4
    verify_recoverable(final, reads + ["read -P 0 1047552 1049600"])


def test_preallocation_metadata_partly_allocated_extl2_head(instar, tmp_path):
    """Metadata preallocation over a partly allocated head cluster with
    extended L2 entries: kept, the head subcluster's outside part written
    with its old data (zeros), the bitmap unchanged."""
    src = tmp_path / "x2.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=65536,extended_l2=on", str(src), "1047552")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 983040 4096", str(src))
    reads = ["read -P 7 0 64k", "read -P 9 983040 4096", "read -P 0 987136 60416"]
    writes, final = sweep(instar, src, tmp_path, ["--preallocation=metadata", "IMG", "2M"], reads)
    assert writes >= 3
    verify_recoverable(final, reads + ["read -P 0 1047552 1049600"])


@pytest.mark.parametrize("spec", ["6M", "--preallocation=metadata 6M", "--preallocation=falloc 6M"])
def test_grow_over_backing_partial_head(instar, tmp_path, spec):
    """The old end inside an unallocated cluster over a longer backing file:
    the cluster's old data (the backing file's) is copied into a new cluster
    before the zeros of the grow are written into it."""
    base = tmp_path / "base.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", str(base), "8M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 8M", str(base))
    src = tmp_path / "ov.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", str(base), "-F", "qcow2",
                str(src), "1047552")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", str(src))
    reads = ["read -P 7 0 64k", "read -P 1 64k 982016"]
    *flags, new = spec.split()
    writes, final = sweep(instar, src, tmp_path, [*flags, "IMG", new], reads)
    assert header_fields(final)[0] == 6 << 20
    assert writes >= 3
    verify_recoverable(final, reads + ["read -P 0 1047552 5243904"])


@pytest.mark.parametrize("spec", ["1048064", "--preallocation=metadata 1048064"], ids=["zero-fill", "metadata"])
def test_grow_tail_past_new_end_over_backing(instar, tmp_path, spec):
    """A new end inside the head cluster over a longer backing file: the
    head cluster's copy (a compressed head; the tail past the new end the
    backing file's data) into a new cluster."""
    base = tmp_path / "base.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", str(base), "8M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 8M", str(base))
    src = tmp_path / "ov.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", str(base), "-F", "qcow2",
                str(src), "1045504")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -c -P 9 1044480 1024", str(src))
    reads = ["read -P 7 0 64k", "read -P 1 64k 978944", "read -P 9 1044480 1024"]
    *flags, new = spec.split()
    writes, final = sweep(instar, src, tmp_path, [*flags, "IMG", new], reads)
    assert writes >= 3
    verify_recoverable(final, reads + ["read -P 0 1045504 2560"])


@pytest.mark.parametrize("mode", ["metadata", "falloc"])
def test_grow_compressed_partial_head(instar, tmp_path, mode):
    """A compressed partial head cluster: decompressed into a new cluster,
    the compressed one freed."""
    src = tmp_path / "c.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", str(src), "1047552")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -c -P 9 1044480 3072", str(src))
    reads = ["read -P 7 0 64k", "read -P 9 1044480 3072"]
    writes, final = sweep(instar, src, tmp_path, [f"--preallocation={mode}", "IMG", "2M"], reads)
    assert writes >= 3
    verify_recoverable(final, reads + ["read -P 0 1047552 1049600"])


@pytest.mark.parametrize("spec,size,zero", [("6M", "1048576", False), ("--preallocation=metadata 6M", "1048576", False),
                                            ("6M", "1047552", False), ("6M", "1047552", True),
                                            ("--preallocation=metadata 6M", "1047552", False),
                                            ("6M", "1047552", "extl2"),
                                            ("--preallocation=falloc 6M", "1047552", True),
                                            ("--preallocation=falloc 6M", "1047552", "extl2-unalloc")],
                         ids=["grow", "metadata", "partial-head", "partial-zero-head", "partial-head-metadata",
                              "partial-extl2-kept-head", "partial-zero-head-falloc", "partial-extl2-head-falloc"])
def test_data_file_over_longer_backing(instar, tmp_path, spec, size, zero):
    """An external data file over a longer backing file: the data file
    follows the new size, then the grown range becomes zero clusters; from
    a size inside a cluster, the head's backing data (zeros for a zero
    cluster) and zeros are written to the data file before its L2 entry
    maps them."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "8M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 8M", "base.qcow2", cwd=src)
    opts = "extended_l2=on" if str(zero).startswith("extl2") else "cluster_size=4096"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file=d.data,{opts}", "-b", "base.qcow2",
                "-F", "qcow2", "d.qcow2", size, cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "d.qcow2", cwd=src)
    reads = ["read -P 7 0 64k", f"read -P 1 64k {int(size) - 65536}"]
    if zero == "extl2":  # the head cluster kept: its first subcluster written, the one at the old end not
        tl.qemu_io("-f", "qcow2", "-c", "write -P 4 983040 2048", "d.qcow2", cwd=src)
        reads = ["read -P 7 0 64k", "read -P 1 64k 917504", "read -P 4 983040 2048", "read -P 1 985088 62464"]
    elif zero == "extl2-unalloc":  # the head cluster unallocated: falloc copies its backing data
        pass
    elif zero:  # the head cluster a zero cluster mapped 1:1
        tl.qemu_io("-f", "qcow2", "-c", "write -z 1044480 3072", "d.qcow2", cwd=src)
        reads = ["read -P 7 0 64k", "read -P 1 64k 978944", "read -P 0 1044480 3072"]
    *flags, new = spec.split()
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        shutil.copytree(src, work)
        r = instar.run(["resize", *flags, "d.qcow2", new], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode != 0:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        rep = tl.run_oracle(["check", "-r", "all", "d.qcow2"], cwd=work)
        assert rep.returncode == 0, f"write {n}: check -r all did not repair:\n  {rep.describe()}"
        args = []
        for rd in reads + ([f"read -P 0 {size} {(6 << 20) - int(size)}"] if r.returncode == 0 else []):
            args += ["-c", rd]
        io = tl.run([tl.QEMU_IO, "-f", "qcow2", *args, "d.qcow2"], cwd=work)
        assert io.returncode == 0 and b"Pattern verification failed" not in io.stdout + io.stderr, (
            f"write {n}: guest data lost:\n  {io.describe()}")
        if r.returncode == 0:
            assert n >= 2
            return
        shutil.rmtree(work)
    pytest.fail(f"resize did not complete within {MAX_WRITES} writes")


def test_dirty_image_with_bitmaps(instar, tmp_path):
    """A dirty image with consistent bitmaps (a crash left leaks, the
    in-use flags cleared): the open marks the bitmaps in use, repairs the
    image, then the grow and the store; every interrupted image repairs
    with the data intact."""
    src = tmp_path / "dbm.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=4096", str(src), "8M")
    tl.qemu_img("bitmap", "--add", str(src), "b1")
    r = tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 9 4M 64k", "-c", "abort",
                   str(src), check=False)
    assert r.returncode != 0
    data = bytearray(src.read_bytes())
    off = struct.unpack(">I", data[100:104])[0]
    while struct.unpack(">I", data[off:off + 4])[0] != 0x23852875:
        off += 8 + ((struct.unpack(">I", data[off + 4:off + 8])[0] + 7) & ~7)
    d = struct.unpack(">Q", data[off + 24:off + 32])[0]
    data[d + 15] &= ~1  # the one bitmap no longer in use: consistent
    src.write_bytes(bytes(data))
    reads = ["read -P 7 0 64k", "read -P 9 4M 64k"]
    writes, final = sweep(instar, src, tmp_path, ["IMG", "+3M"], reads)
    assert writes >= 6, "marking in use, the repair, the resize and the store"
    info = tl.run_oracle(["info", str(final)])
    assert b"b1" in info.stdout and b"in-use" not in info.stdout, info.describe()
    verify_recoverable(final, reads)


@pytest.mark.parametrize("size,spec", [("8M", "+3M"), ("8M", "--preallocation=falloc 12M"), ("8M", "--shrink 2M"),
                                       ("8390656", "--preallocation=metadata 12290k"),
                                       ("8390656", "--preallocation=falloc 9M")],
                         ids=["grow", "falloc", "shrink", "metadata-partial-ends", "falloc-partial-head"])
def test_encrypted(instar, tmp_path, size, spec):
    """An encrypted (LUKS) image: the metadata-only resize, and a partial
    cluster at either end copied or zero-filled through the cipher; every
    interrupted image opens with its key and repairs, the data intact."""
    secret = ["--object", "secret,id=s0,data=abc"]
    src = tmp_path / "enc.qcow2"
    tl.qemu_img_retried("create", "-q", *secret, "-f", "qcow2", "-o",
                        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,cluster_size=4096",
                        str(src), size)
    opts = lambda p: f"driver=qcow2,file.filename={p},encrypt.key-secret=s0"  # noqa: E731
    head = ["write -P 5 8M 2k"] if size != "8M" else []
    tl.qemu_io(*secret, "--image-opts", opts(src), "-c", "write -P 7 0 64k", "-c", "write -P 9 1M 64k",
               *[a for w in head for a in ("-c", w)])
    *flags, new = spec.split()
    for n in range(MAX_WRITES):
        img = tmp_path / f"n{n}.qcow2"
        tl.copy_file(src, img)
        r = instar.run(["resize", *secret, *flags, "--image-opts", opts(img), new],
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode != 0:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        rep = tl.run_oracle(["check", *secret, "-r", "all", "--image-opts", opts(img)])
        assert rep.returncode == 0, f"write {n}: check -r all did not repair:\n  {rep.describe()}"
        io = tl.run([tl.QEMU_IO, *secret, "--image-opts", opts(img), "-c", "read -P 7 0 64k", "-c",
                     "read -P 9 1M 64k", *[a for w in head for a in ("-c", w.replace("write", "read"))]])
        assert io.returncode == 0 and b"Pattern verification failed" not in io.stdout + io.stderr, (
            f"write {n}: guest data lost:\n  {io.describe()}")
        if r.returncode == 0:
            assert n >= 2
            return
        img.unlink()
    pytest.fail(f"resize did not complete within {MAX_WRITES} writes")


@pytest.mark.parametrize("backing", [False, True], ids=["metadata", "zero-fill-over-backing"])
def test_encrypted_data_file(instar, tmp_path, backing):
    """An encrypted (LUKS) image with an external data file, grown from a size inside a written
    cluster with metadata preallocation (the head and tail copy-on-writes go into the data file
    encrypted), or over a longer backing file (the zero-fill's explicit zeros, encrypted).
    Every interrupted image opens with its key and repairs, the data intact."""
    secret = ["--object", "secret,id=s0,data=abc"]
    d = tmp_path / "src"
    d.mkdir()
    b = []
    if backing:
        tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "12M", cwd=d)
        tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 12M", "base.qcow2", cwd=d)
        b = ["-b", "base.qcow2", "-F", "qcow2"]
    tl.qemu_img_retried("create", "-q", *secret, "-f", "qcow2", "-o",
                        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,cluster_size=4096,"
                        "data_file=img.raw", *b, "img.qcow2", "8390656", cwd=d)
    opts = "driver=qcow2,file.filename=img.qcow2,encrypt.key-secret=s0"
    reads = ["read -P 7 0 64k", "read -P 5 8M 2k"]
    tl.qemu_io(*secret, "--image-opts", opts, *[a for w in reads for a in ("-c", w.replace("read", "write"))],
               cwd=d)
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        for f in ("img.qcow2", "img.raw", *(["base.qcow2"] if backing else [])):
            tl.copy_file(d / f, work / f)
        spec = ["12M"] if backing else ["--preallocation=metadata", "12290k"]
        r = instar.run(["resize", *secret, *spec[:-1], "--image-opts", opts, spec[-1]], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode != 0:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        rep = tl.run_oracle(["check", *secret, "-r", "all", "--image-opts", opts], cwd=work)
        assert rep.returncode == 0, f"write {n}: check -r all did not repair:\n  {rep.describe()}"
        io = tl.run([tl.QEMU_IO, *secret, "--image-opts", opts, *[a for w in reads for a in ("-c", w)]], cwd=work)
        assert io.returncode == 0 and b"Pattern verification failed" not in io.stdout + io.stderr, (
            f"write {n}: guest data lost:\n  {io.describe()}")
        if r.returncode == 0:
            assert n >= 2
            return
        shutil.rmtree(work)
    pytest.fail(f"resize did not complete within {MAX_WRITES} writes")
