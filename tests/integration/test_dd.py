"""`dd` from hostile images: qemu-img's lines, exit code and output file.

dd reads its input through the guest's block layer, so damaged metadata
must fail (or read) exactly as under qemu-img, and the output file must
hold what qemu-img's holds: the blocks copied before the failure.  The
parity suite (parity/test_dd_parity.py) covers the options and ordinary
images.
"""

import struct

import pytest

import instar_testlib as tl
import output_compare as oc


def _be64(b, off):
    return struct.unpack(">Q", b[off:off + 8])[0]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("dd")

    def img(name, *writes, size="1M"):
        tl.qemu_img("create", "-q", "-f", "qcow2", name, size, cwd=root)
        tl.qemu_io("-f", "qcow2", *[x for w in writes for x in ("-c", w)], name, cwd=root)
        return root / name

    def patch(p, fn):
        b = bytearray(p.read_bytes())
        fn(b)
        p.write_bytes(bytes(b))

    def l2_0(b):
        return _be64(b, _be64(b, 40)) & 0x00FFFFFFFFFFFE00

    # The second L2 entry points 512 bytes into its cluster.
    p = img("unaligned.qcow2", "write -P 7 0 64k", "write -P 8 64k 64k")
    patch(p, lambda b: b.__setitem__(slice(l2_0(b) + 8, l2_0(b) + 16),
                                     struct.pack(">Q", _be64(b, l2_0(b) + 8) + 512)))
    # L1[0] names an L2 table far past the end of the file (it reads as zeros).
    p = img("l2-far.qcow2", "write -P 7 0 64k")
    patch(p, lambda b: b.__setitem__(slice(_be64(b, 40), _be64(b, 40) + 8),
                                     struct.pack(">Q", (1 << 40) | (1 << 63))))
    # A compressed entry whose data runs past the end of the file.
    p = img("comp-eof.qcow2", "write -c -P 9 0 64k", "write -P 8 128k 64k")
    patch(p, lambda b: b.__setitem__(slice(l2_0(b), l2_0(b) + 8),
                                     struct.pack(">Q", _be64(b, l2_0(b)) | ((len(b) + 4096) & 0x3FFFFFFFFFFFFF))))
    return root


@pytest.mark.parametrize("name,fmt", [
    ("unaligned.qcow2", "raw"),
    ("unaligned.qcow2", "qcow2"),
    ("l2-far.qcow2", "raw"),
    ("comp-eof.qcow2", "raw"),
])
def test_hostile_input(instar, d, tmp_path, name, fmt):
    w = oc.run_writing(instar, ["dd", "-O", fmt, f"if={name}", "of=out.img", "bs=64k"], tmp_path,
                       files=[(d / name, name)], outputs={"out.img": fmt})
    assert w.oracle.returncode == (0 if name == "l2-far.qcow2" else 1), w.oracle.describe()
