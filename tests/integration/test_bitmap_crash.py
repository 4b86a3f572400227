"""Crash consistency of `qemu-img bitmap` (fault injection).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the command completes, the interrupted image must hold no
corruption (`qemu-img check`: leaked clusters at most), `check -r all`
must leave it clean, `qemu-img info` must open it, its guest data must
be unchanged, and each bitmap it still lists must be readable and, unless
it is marked in use, be the bitmap as it was before the command or as the
oracle's run leaves it (names, granularity, enabled flag, bits): never a
directory entry whose table or data is not written.

The command's writes come in qemu's order: the read-write open marks the
loaded bitmaps in use (autoclear bit dropped, directory in place, bit
back), --remove writes a new directory and header at once and then frees
the removed bitmap's clusters, and the close writes every bitmap's data
and table, then the directory, then the header, then frees the old ones.
The completed run must leave the oracle's bytes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import instar_testlib as tl
from test_convert_bitmaps_crash import bitmaps, raw

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 400


def make(d: Path) -> None:
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "img.qcow2", "16M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x5a 0 300k", "img.qcow2", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "4k", "img.qcow2", "first", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "1M", "img.qcow2", "other", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x6b 1M 200k", "-c", "write 9M 4k", "img.qcow2", cwd=d)
    tl.qemu_img("bitmap", "--add", "img.qcow2", "off", cwd=d)
    tl.qemu_img("bitmap", "--disable", "img.qcow2", "off", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x7c 12M 64k", "img.qcow2", cwd=d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", "16M", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "64k", "src.qcow2", "s", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write 3M 128k", "-c", "write 15M 1M", "src.qcow2", cwd=d)


def verify(img: Path, data: bytes, before: dict, after: dict) -> None:
    r = tl.run_oracle(["check", "--output=json", str(img)])
    assert r.returncode in (0, 3), f"check finds more than leaks:\n  {r.describe()}"
    assert json.loads(r.stdout).get("corruptions", 0) == 0, r.describe()
    info = tl.run_oracle(["info", str(img)])
    assert info.returncode == 0, info.describe()
    assert raw(img, img.with_suffix(".raw")) == data, "guest data changed"
    full = bitmaps(img, mask=3)
    for name, (g, flags, bits) in full.items():
        if flags & 1:
            assert name in before, f"{name}: a new bitmap marked in use"
            continue
        assert (g, flags & 2, bits) in (before.get(name), after.get(name)), f"{name}: half written"
    tl.assert_repairs_clean(img)
    assert bitmaps(img, mask=3) == full, "the repair changed the bitmaps"


@pytest.mark.parametrize("argv", [
    ["--add", "-g", "512", "img.qcow2", "new"],
    ["--remove", "img.qcow2", "first"],
    ["--remove", "--add", "img.qcow2", "other"],
    ["--clear", "--merge", "s", "-b", "src.qcow2", "--disable", "img.qcow2", "first"],
], ids=["add", "remove", "remove-add", "clear-merge-disable"])
def test_bitmap_sweep(instar, tmp_path, argv):
    d = tmp_path / "img"
    d.mkdir()
    make(d)
    data = raw(d / "img.qcow2", tmp_path / "data.raw")
    before = bitmaps(d / "img.qcow2", mask=3)
    final = tmp_path / "final"
    shutil.copytree(d, final)
    o = tl.run_oracle(["bitmap", *argv], cwd=final)
    assert o.returncode == 0, o.describe()
    after = bitmaps(final / "img.qcow2", mask=3)
    assert after != before
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        shutil.copytree(d, work)
        img = work / "img.qcow2"
        r = instar.run(["bitmap", *argv], cwd=work, env_extra={"INSTAR_FAULT_WRITES": str(n)},
                       timeout=120)
        if r.returncode == 0:
            assert tl.same_content(img, (final / "img.qcow2"))
            verify(img, data, before, after)
            assert n >= 8, "the sweep did not reach the bitmap writes"
            return
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        verify(img, data, before, after)
        shutil.rmtree(work)
    pytest.fail(f"bitmap did not complete within {MAX_WRITES} writes")
