"""Crash consistency of parallels writes (`bench -w`, `dd -O`/`convert -O parallels`, `check -r`).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  A
writable parallels image is marked in use (the inuse flag) by its first
write and clean by the close, and its catalog reaches the file only at a
flush, after the data it points at (parallels_co_writev's order).  So for
every N until the run completes the interrupted image must open in
qemu-img with the same virtual size; when the run stopped after the open
marked it, `qemu-img check` must report it as not closed correctly and
`check -r all` must repair it; and every byte outside the requests must
read as before, every byte of the requests as before or as written.
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
INUSE = (0x746F6E59).to_bytes(4, "little")


def info(img: Path) -> dict:
    r = tl.run_oracle(["info", "-f", "parallels", "--output=json", str(img)])
    assert r.returncode == 0, f"the interrupted image does not open:\n  {r.describe()}"
    return json.loads(r.stdout)


def repaired(img: Path) -> None:
    """check -r all repairs the image: qemu-img's check then finds no corruption (its close
    cuts the file at data_end, which may leave space it calls leaked)."""
    tl.assert_repairs_clean(img, "-f", "parallels")


def data(img: Path) -> bytes:
    r = tl.run([tl.QEMU_IMG, "dd", "-f", "parallels", "-O", "raw", f"if={img}", f"of={img}.raw", "bs=64k"])
    assert r.returncode == 0, r.describe()
    return Path(f"{img}.raw").read_bytes()


def either(b: bytes, off: int, length: int, old: bytes, new: int) -> None:
    """[off, off+length) reads, sector by sector, as old (the bytes before) or as new."""
    for i in range(0, length, 512):
        s = b[off + i:off + i + 512]
        assert s in (old[off + i:off + i + 512], bytes([new]) * len(s)), f"sector at {off + i} is neither"


def sweep(instar, tmp_path: Path, img0: Path, args: list[str], out: str, check) -> None:
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        for f in img0.parent.iterdir():
            tl.copy_file(f, work / f.name)
        r = instar.run(args, cwd=work, env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        img = work / out
        if r.returncode == 0:
            check(img, done=True)
            assert (img.read_bytes()[44:48]) != INUSE, "a completed run left the image in use"
            return
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        if img.exists() and img.stat().st_size >= 64:
            check(img, done=False)
    pytest.fail(f"the run did not complete within {MAX_WRITES} writes")


@pytest.mark.parametrize("cl", ["64k", "1M"])
def test_bench_write_sweep(instar, tmp_path, cl):
    src = tmp_path / "src"
    src.mkdir()
    img0 = src / "w.img"
    tl.qemu_img("create", "-q", "-f", "parallels", "-o", f"cluster_size={cl}", str(img0), "12M")
    tl.qemu_io("-f", "parallels", "-c", "write -P 0x11 0 2M", "-c", "write -P 0x22 6M 1M", str(img0))
    size = info(img0)["virtual-size"]
    before = data(img0)
    # 64 KiB requests every 1 MiB from 1 MiB on, a flush every 3: into
    # allocated clusters and unallocated ones (each allocation preallocates)
    args = ["bench", "-w", "-d", "1", "-f", "parallels", "-c", "8", "-s", "64k", "-S", "1M", "-o", "1M",
            "--pattern=90", "--flush-interval=3", "w.img"]

    def check(img, done):
        assert info(img)["virtual-size"] == size
        if not done:
            repaired(img)
        b = data(img)
        for k in range(8):
            either(b, (1 + k) << 20, 64 << 10, before, 0x5A)
        mask = bytearray(before)
        got = bytearray(b)
        for k in range(8):
            lo = (1 + k) << 20
            mask[lo:lo + (64 << 10)] = bytes(64 << 10)
            got[lo:lo + (64 << 10)] = bytes(64 << 10)
        assert mask == got, "data changed outside the requests"
        if done:
            assert all(b[((1 + k) << 20):((1 + k) << 20) + (64 << 10)] == b"\x5a" * (64 << 10) for k in range(8))

    sweep(instar, tmp_path, img0, args, "w.img", check)


@pytest.mark.parametrize("cmd", ["dd", "convert"])
def test_dd_out_sweep(instar, tmp_path, cmd):
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", str(src / "in.qcow2"), "5M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x33 0 1M", "-c", "write -P 0x44 3M 1M", str(src / "in.qcow2"))
    want = Path(src / "in.qcow2")
    r = tl.run([tl.QEMU_IMG, "convert", "-O", "raw", str(want), str(src / "want.raw")])
    assert r.returncode == 0
    expect = (src / "want.raw").read_bytes()
    (src / "want.raw").unlink()
    args = (["dd", "-O", "parallels", "if=in.qcow2", "of=out.img", "bs=256k"] if cmd == "dd" else
            ["convert", "-O", "parallels", "-o", "cluster_size=64k", "in.qcow2", "out.img"])

    def check(img, done):
        if img.read_bytes()[:16] != b"WithouFreSpacExt":
            return  # stopped inside create: no header yet
        assert info(img)["virtual-size"] == len(expect)
        if not done:
            repaired(img)
        b = data(img)
        for off in range(0, len(expect), 512):
            assert b[off:off + 512] in (expect[off:off + 512], bytes(512)), f"sector {off} is neither"
        if done:
            assert b == expect

    sweep(instar, tmp_path, src / "in.qcow2", args, "out.img", check)


@pytest.mark.parametrize("fix", ["all", "leaks"])
def test_check_repair_sweep(instar, tmp_path, fix):
    """check -r of an unclean image with a cluster past the end and leaked space."""
    import struct

    src = tmp_path / "src"
    src.mkdir()
    hdr = b"WithouFreSpacExt" + struct.pack("<IIIIIQIIIQ", 2, 16, 0, 8, 4, 32, 0x746F6E59, 1, 0, 0)
    b = bytearray(hdr + struct.pack("<4I", 1, 0, 50, 2) + bytes(24 * 512))
    b[8 * 512:16 * 512] = b"\x5a" * 4096
    b[16 * 512:24 * 512] = b"\xa5" * 4096
    (src / "c.img").write_bytes(bytes(b) + b"\x66" * 3000)
    before = data(src / "c.img")
    args = ["check", "-r", fix, "-f", "parallels", "c.img"]

    def check(img, done):
        info(img)
        if not done:
            repaired(img)
        after = data(img)
        # the clusters inside the file keep their data; the one past the end reads as zeros
        assert after[:4096] == before[:4096] and after[3 * 4096:] == before[3 * 4096:]

    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        tl.copy_file(src / "c.img", work / "c.img")
        r = instar.run(args, cwd=work, env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode != 1 or b"fault injection" not in r.stderr:
            assert r.returncode in (0, 2, 3), r.describe()
            check(work / "c.img", done=True)
            assert (work / "c.img").read_bytes()[44:48] != INUSE
            return
        check(work / "c.img", done=False)
    pytest.fail(f"check -r did not complete within {MAX_WRITES} writes")
