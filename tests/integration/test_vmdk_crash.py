"""Crash consistency of vmdk writes (`convert -O vmdk`, `dd -O vmdk`), sparse, streamOptimized, split and flat.

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the run completes, once the new target exists (a create cut
short leaves new files, as qemu-img's own create does), `qemu-img check`
must find the image clean, `info` must give the source's size, and every
sector must read as the source's or as zeros: vmdk_pwritev()'s order (the
whole grain written first, then its grain table entry, then the redundant
table's, then a flush) means a table never points at a grain not yet
written; a cut leaves at worst an unreferenced grain at the file's end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep: the guest code it proves is the same on every backend, and under
# TCG it alone takes much of the slice's time, so --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 200
SIZE = 5 << 20
#: (offset, length, pattern) of the source's data; the rest reads as zeros.
DATA = [(0, 200 << 10, 0x33), (3 << 20, 4096, 0x44), (4 << 20, 1000, 0x55)]


def source(tmp_path: Path) -> Path:
    src = tmp_path / "src.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", str(src), str(SIZE))
    tl.qemu_io("-f", "qcow2", *[x for o, n, p in DATA for x in ("-c", f"write -P {p:#x} {o} {n}")], str(src))
    return src


def verify(img: Path, size: int) -> None:
    r = tl.run_oracle(["check", "-f", "vmdk", str(img)])
    assert r.returncode == 0, f"check found errors:\n  {r.describe()}"
    r = tl.run_oracle(["info", "-f", "vmdk", "--output=json", str(img)])
    assert r.returncode == 0 and json.loads(r.stdout)["virtual-size"] == size, r.describe()
    raw = Path(f"{img}.raw")
    r = tl.run([tl.QEMU_IMG, "convert", "-f", "vmdk", "-O", "raw", str(img), str(raw)])
    assert r.returncode == 0, r.describe()
    b = raw.read_bytes()
    want = bytearray(SIZE)[:size]
    for off, n, p in DATA:
        want[off:off + n] = bytes([p]) * n
    for i in range(0, size, 512):
        s = b[i:i + 512]
        assert s in (bytes(want[i:i + 512]), bytes(512)), f"sector at {i} is neither the source's nor zeros"


def sweep(instar, tmp_path: Path, args: list[str], size: int = SIZE) -> None:
    def check(work: Path, done: bool) -> None:
        img = work / "out.vmdk"
        verify(img, size)
        if done and size == SIZE:
            c = tl.run_oracle(["compare", "-f", "qcow2", "-F", "vmdk", str(tmp_path / "src.qcow2"), str(img)])
            assert c.returncode == 0, c.describe()

    assert tl.new_target_sweep(instar, tmp_path, args, check, MAX_WRITES) >= 3


@pytest.mark.parametrize("opts", ["", "zeroed_grain=on", "subformat=streamOptimized",
                                  "subformat=twoGbMaxExtentSparse", "subformat=monolithicFlat"],
                         ids=["default", "zeroed-grain", "stream-optimized", "split-sparse", "flat"])
def test_convert_sweep(instar, tmp_path, opts):
    src = source(tmp_path)
    sweep(instar, tmp_path, ["convert", "-O", "vmdk", *(["-o", opts] if opts else []), str(src), "out.vmdk"])


def test_dd_sweep(instar, tmp_path):
    src = source(tmp_path)
    # dd writes every block, zeros included: its first 2 MiB (32 grains) keep the sweep short.
    sweep(instar, tmp_path, ["dd", "-O", "vmdk", f"if={src}", "of=out.vmdk", "bs=1M", "count=2"], 2 << 20)
