"""Crash consistency of vpc writes (`bench -w`, `dd -O vpc`).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  vpc
has no check or repair, so for every N until the run completes the
interrupted image must open in qemu-img as it did (same virtual size),
every byte outside the requests must read as before, and every byte of
the requests must read as before or as written: alloc_block()'s order
(the block's bitmap, the footer moved after it, the BAT entry last)
means a block is either not in the BAT or fully set up.
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


def info(img: Path) -> dict:
    r = tl.run_oracle(["info", "-f", "vpc", "--output=json", str(img)])
    assert r.returncode == 0, f"the interrupted image does not open:\n  {r.describe()}"
    return json.loads(r.stdout)


def reads_ok(img: Path, reads: list[str]) -> None:
    io = tl.run([tl.QEMU_IO, "-f", "vpc", *[x for c in reads for x in ("-c", c)], str(img)])
    assert io.returncode == 0 and b"Pattern verification failed" not in io.stdout + io.stderr, (
        f"data changed where it must not:\n  {io.describe()}")


def either(img: Path, off: int, length: int, old: int, new: int) -> None:
    """[off, off+length) reads, sector by sector, as old or as new."""
    data = tl.run([tl.QEMU_IMG, "dd", "-f", "vpc", "-O", "raw", f"if={img}", f"of={img}.raw", "bs=64k"])
    assert data.returncode == 0, data.describe()
    b = Path(f"{img}.raw").read_bytes()[off:off + length]
    for i in range(0, length, 512):
        s = b[i:i + 512]
        assert s in (bytes([old]) * len(s), bytes([new]) * len(s)), f"sector at {off + i} is neither"


@pytest.mark.parametrize("sub", ["dynamic", "fixed"])
def test_bench_write_sweep(instar, tmp_path, sub):
    src = tmp_path / "src"
    src.mkdir()
    img0 = src / "w.vhd"
    tl.qemu_img("create", "-q", "-f", "vpc", "-o", f"subformat={sub}", str(img0), "12M")
    tl.qemu_io("-f", "vpc", "-c", "write -P 0x11 0 2M", "-c", "write -P 0x22 6M 1M", str(img0))
    size = info(img0)["virtual-size"]
    # 64 KiB requests every 1 MiB from 1 MiB on: into an allocated block,
    # then unallocated ones (each allocation: bitmap, footer, BAT entry)
    args = ["bench", "-w", "-d", "1", "-f", "vpc", "-c", "8", "-s", "64k", "-S", "1M", "-o", "1M",
            "--pattern=90", "w.vhd"]
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        tl.copy_file(img0, work / "w.vhd")
        r = instar.run(args, cwd=work, env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        img = work / "w.vhd"
        assert info(img)["virtual-size"] == size
        reads_ok(img, ["read -P 0x11 0 1M", "read -P 0x11 1088k 960k",
                       "read -P 0x22 6208k 960k", "read -P 0 2112k 960k"])
        for k in range(8):
            old = 0x11 if k < 1 else 0x22 if k == 5 else 0
            either(img, (1 + k) << 20, 64 << 10, old, 0x5A)
        if r.returncode == 0:
            reads_ok(img, [f"read -P 0x5a {(1 + k) << 20} 64k" for k in range(8)])
            return
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
    pytest.fail(f"bench did not complete within {MAX_WRITES} writes")


@pytest.mark.parametrize("sub", ["dynamic", "fixed"])
def test_convert_sweep(instar, tmp_path, sub):
    """convert -O vpc: every interrupted target that exists opens with the
    oracle's virtual size and reads, sector by sector, as the source or as zeros."""
    src = tmp_path / "src.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", str(src), "5M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x33 0 1536k", "-c", "write -P 0x44 3M 4k", str(src))
    ref = tmp_path / "ref.vhd"
    tl.qemu_img("convert", "-O", "vpc", "-o", f"subformat={sub}", str(src), str(ref))
    size = info(ref)["virtual-size"]
    args = ["convert", "-O", "vpc", "-o", f"subformat={sub}", str(src), "out.vhd"]

    def check(work: Path, done: bool) -> None:
        img = work / "out.vhd"
        assert info(img)["virtual-size"] == size
        either(img, 0, 1536 << 10, 0, 0x33)
        either(img, 3 << 20, 4096, 0, 0x44)
        reads_ok(img, ["read -P 0 1536k 1536k", "read -P 0 3076k 2044k"])
        if done:
            reads_ok(img, ["read -P 0x33 0 1536k", "read -P 0x44 3M 4k"])

    assert tl.new_target_sweep(instar, tmp_path, args, check, MAX_WRITES) >= 2
