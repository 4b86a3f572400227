"""`instar rebase`'s deliberate differences (docs/differences.md).

qcow2 images with both persistent bitmaps and the dirty bit set are
refused before anything is written: qemu-img would load the bitmaps, then
repair the image as it opens it read-write.  (A dirty image without
bitmaps is repaired as qemu-img does: parity/test_dirty_parity.py.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import instar_testlib as tl


def dirty(d: Path) -> None:
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-F", "qcow2", "-b",
                "base.qcow2", "top.qcow2", cwd=d)
    tl.qemu_img("bitmap", "--add", "top.qcow2", "b0", cwd=d)
    # qemu-io dies before it closes the image: the dirty bit stays set.
    subprocess.run([tl.QEMU_IO, "-f", "qcow2", "-c", "write -P 3 0 4k", "-c", "sigraise 9", "top.qcow2"],
                   cwd=d, capture_output=True)
    hdr = (d / "top.qcow2").read_bytes()[72:80]
    assert int.from_bytes(hdr, "big") & 1, "the dirty bit is not set"


@pytest.mark.parametrize("make", [dirty], ids=["dirty-bitmaps"])
@pytest.mark.parametrize("args", [["-u", "-b", "new.qcow2", "-F", "qcow2"], ["-b", "new.qcow2", "-F", "qcow2"],
                                  ["-b", ""]], ids=["unsafe", "safe", "flatten"])
def test_refused_before_writing(instar, tmp_path, make, args):
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "1M", cwd=tmp_path)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 512k", "base.qcow2", cwd=tmp_path)
    tl.qemu_img("create", "-q", "-f", "qcow2", "new.qcow2", "1M", cwd=tmp_path)
    make(tmp_path)
    before = (tmp_path / "top.qcow2").read_bytes()
    r = instar.run(["rebase", *args, "top.qcow2"], cwd=tmp_path)
    assert r.returncode == 1, r.describe()
    assert r.stderr == (b"qemu-img: Could not rebase 'top.qcow2': instar does not write to qcow2 images "
                        b"with the dirty bit set\n"), r.describe()
    assert (tmp_path / "top.qcow2").read_bytes() == before


def test_corrupt_image_not_marked(instar, tmp_path):
    """A corrupt L2 entry met by the walk: the error, and no corrupt bit written."""
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "4M", cwd=tmp_path)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 4M", "base.qcow2", cwd=tmp_path)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", "top.qcow2", cwd=tmp_path)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 2 0 64k", "top.qcow2", cwd=tmp_path)
    top = tmp_path / "top.qcow2"
    data = bytearray(top.read_bytes())
    l1 = int.from_bytes(data[40:48], "big")
    l2 = int.from_bytes(data[l1:l1 + 8], "big") & 0x00FFFFFFFFFFFE00
    entry = int.from_bytes(data[l2:l2 + 8], "big") | 0x200  # an unaligned data cluster
    data[l2:l2 + 8] = entry.to_bytes(8, "big")
    top.write_bytes(bytes(data))
    before = top.read_bytes()
    r = instar.run(["rebase", "-b", "", "top.qcow2"], cwd=tmp_path)
    assert r.returncode == 1, r.describe()
    assert r.stderr.endswith(b"qemu-img: error while reading image metadata: Input/output error\n"), r.describe()
    assert b"qcow2: Image is corrupt: Cluster allocation offset 0x" in r.stderr, r.describe()
    assert top.read_bytes() == before
