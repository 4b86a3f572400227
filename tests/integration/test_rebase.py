"""`instar rebase` on a corrupt image: the error, and nothing written.

(Dirty images, with and without persistent bitmaps, are repaired as
qemu-img repairs them: parity/test_dirty_parity.py.)
"""

from __future__ import annotations

import instar_testlib as tl


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
