"""Crash consistency of qcow2 writes through the block layer (`bench -w`).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the run completes, the interrupted image must hold no
corruption at all (`qemu-img check`: leaked clusters at most, which is
what qcow2's ordering promises: data and refcounts before the L2 entry
that uses them, the L2 table before the references it drops), and every
byte outside the requests must read as before.

Scenarios: partial-cluster writes over a backing file (copy-on-write from
the backing data), and over clusters and an L2 table shared with an
internal snapshot (new clusters, a copied L2 table, old references
dropped); the same over a backing file into an external data file (data
in the data file, metadata in the image), with and without
data_file_raw.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 200


def verify(img: Path, reads: list[str]) -> None:
    # in the image's directory: qemu opens a relative data file name from the cwd
    r = tl.run_oracle(["check", "--output=json", str(img)], cwd=img.parent)
    assert r.returncode in (0, 3), f"check finds more than leaks:\n  {r.describe()}"
    assert json.loads(r.stdout).get("corruptions", 0) == 0, r.describe()
    io = tl.run([tl.QEMU_IO, "-f", "qcow2", *[x for c in reads for x in ("-c", c)], str(img)],
                cwd=img.parent)
    assert io.returncode == 0 and b"Pattern verification failed" not in io.stdout + io.stderr, (
        f"data outside the requests changed:\n  {io.describe()}")


def sweep(instar, src: Path, tmp_path: Path, args: list[str], reads: list[str]) -> int:
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        for f in src.parent.iterdir():
            if f.is_file():
                tl.copy_file(f, work / f.name)
        img = work / src.name
        r = instar.run(["bench", "-w", "-d", "1", *args, src.name], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode == 0:
            verify(img, reads)
            return n
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        verify(img, reads)
    pytest.fail(f"bench did not complete within {MAX_WRITES} writes")


def test_cow_from_backing(instar, tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "2M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0xb1 0 2M", "base.qcow2", cwd=d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0xc1 512k 64k", "top.qcow2", cwd=d)
    # Requests of 4 KiB at 10k, 110k, ..., 510k: every one inside one cluster.
    args = ["-c", "6", "-s", "4k", "-S", "100k", "-o", "10k", "--pattern", "0x5a"]
    reads = ["read -P 0xb1 0 10k", "read -P 0xb1 14k 96k", "read -P 0xb1 114k 96k",
             "read -P 0xb1 414k 96k", "read -P 0xc1 514k 62k", "read -P 0xb1 576k 1472k"]
    assert sweep(instar, d / "top.qcow2", tmp_path, args, reads) >= 6


def test_shared_with_snapshot(instar, tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "s.qcow2", "2M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x11 0 1M", "s.qcow2", cwd=d)
    tl.qemu_img("snapshot", "-c", "snap", "s.qcow2", cwd=d)
    args = ["-c", "4", "-s", "6000", "-S", "200k", "-o", "1000", "--pattern", "0x77"]
    reads = ["read -P 0x11 0 1000", "read -P 0x11 7000 197000", "read -P 0x11 211800 193200",
             "read -P 0x11 820600 227976", "read -P 0 1M 1M"]
    assert sweep(instar, d / "s.qcow2", tmp_path, args, reads) >= 4


@pytest.mark.parametrize("raw", [False, True], ids=["datafile", "datafile-raw"])
def test_datafile_cow_from_backing(instar, tmp_path, raw):
    d = tmp_path / "img"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "2M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0xb1 0 2M", "base.qcow2", cwd=d)
    opts = "data_file=top.bin" + (",data_file_raw=on" if raw else "")
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", opts,
                *([] if raw else ["-b", "base.qcow2", "-F", "qcow2"]), "top.qcow2", "2M", cwd=d)
    pre = ["write -P 0xb1 0 2M"] if raw else []
    tl.qemu_io("-f", "qcow2", *[x for c in [*pre, "write -P 0xc1 512k 64k"] for x in ("-c", c)],
               "top.qcow2", cwd=d)
    args = ["-c", "6", "-s", "4k", "-S", "100k", "-o", "10k", "--pattern", "0x5a"]
    reads = ["read -P 0xb1 0 10k", "read -P 0xb1 14k 96k", "read -P 0xb1 114k 96k",
             "read -P 0xb1 414k 96k", "read -P 0xc1 514k 62k", "read -P 0xb1 576k 1472k"]
    assert sweep(instar, d / "top.qcow2", tmp_path, args, reads) >= 6


def test_dirty_with_bitmaps(instar, tmp_path):
    """A dirty image (a crash left stale lazy refcounts) with consistent
    persistent bitmaps: the open marks them in use, repairs the image, bench
    writes (recorded in the enabled bitmap) and the close stores them.  Every
    cut: check -r all recovers the image with the data outside the requests
    and both bitmaps listed (but inside qemu's own window of the marking,
    the first writes, where a crash drops them); the completed run leaves
    them consistent."""
    d = tmp_path / "img"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "t.qcow2", "4M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x11 0 1M", "t.qcow2", cwd=d)
    tl.qemu_img("bitmap", "--add", "t.qcow2", "b0", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "8k", "--disable", "t.qcow2", "b1", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x22 1M 64k", "t.qcow2", cwd=d)
    src = d / "t.qcow2"
    b = bytearray(src.read_bytes())
    b[79] |= 1  # the dirty bit: the open's repair runs (nothing to fix, qemu's writes all the same)
    src.write_bytes(bytes(b))
    args = ["-c", "4", "-s", "4k", "-S", "256k", "-o", "2M", "--pattern", "0x5a"]
    reads = ["read -P 0x11 0 1M", "read -P 0x22 1M 64k", "read -P 0 1088k 960k"]
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        img = work / "t.qcow2"
        tl.copy_file(src, img)
        r = instar.run(["bench", "-w", "-d", "1", *args, "t.qcow2"], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        assert r.returncode == 0 or (r.returncode == 1 and b"fault injection" in r.stderr), r.describe()
        c = tl.run_oracle(["check", "-r", "all", str(img)])
        assert c.returncode in (0, 3), f"check -r all did not recover the image (n={n}):\n  {c.describe()}"
        verify(img, reads)
        info = json.loads(tl.run_oracle(["info", "--output=json", str(img)]).stdout)
        found = [(x["name"], "in-use" in x["flags"])
                 for x in info.get("format-specific", {}).get("data", {}).get("bitmaps", [])]
        assert [x for x, _ in found] == ["b0", "b1"] or (n <= 3 and not found), f"bitmaps lost (n={n}): {found}"
        if r.returncode == 0:
            assert not any(u for _, u in found), f"bitmaps left in use: {found}"
            assert n >= 6
            return
    pytest.fail(f"bench did not complete within {MAX_WRITES} writes")
