"""vmdk parity (qemu-img 7.2 vs instar): SPARSE extents that are descriptors again.

A VMDK4 header of capacity 0 points at descriptor text (vmdk_open_vmdk4()
then calls vmdk_open_desc_file()): as an extent of a descriptor, qemu opens
the extents that text names as more extents of the image, relative to the
top descriptor's directory, takes its createType, and gives the last of
them the type of the line that named the nested file.  The images are
written here (a descriptor file or a sparse file with an embedded
descriptor on top, one and two levels of nesting, a missing file inside);
read-only commands run on the same files under both tools, convert -O raw
writes a file of each tool's own.  A case id starting with `err-` must make
qemu-img fail.  Where qemu-img recurses without a bound (a descriptor
naming itself overflows its stack) instar's clean error is tested on its
own (docs/differences.md).
"""

from __future__ import annotations

import struct

import pytest

import instar_testlib as tl

MiB = 1 << 20


def desc(ctype: bytes, lines: bytes) -> bytes:
    return (b'# Disk DescriptorFile\nversion=1\nCID=1234abcd\nparentCID=ffffffff\ncreateType="' + ctype +
            b'"\n\n# Extent description\n' + lines + b'\nddb.adapterType = "ide"\n')


def sparse_desc(text: bytes) -> bytes:
    """A VMDK4 header of capacity 0 whose descriptor (sector 1) is text."""
    h = b"KDMV" + struct.pack("<IIQQQQIQQQ", 1, 3, 0, 128, 1, 20, 512, 0, 0, 0) + b"\0\n \r\n\0\0"
    return h.ljust(512, b"\0") + text.ljust(20 * 512, b"\0")


FILES = {
    "top.vmdk": desc(b"twoGbMaxExtentSparse",
                     b'RW 2048 FLAT "a.raw" 0\nRW 4096 SPARSE "mid.vmdk"\nRW 2048 FLAT "b.raw" 0\n'),
    "mid.vmdk": sparse_desc(desc(b"monolithicFlat", b'RW 2048 FLAT "c.raw" 0\nRW 2048 FLAT "d.raw" 0\n')),
    # a sparse file on top whose own descriptor names a nested one, two levels deep
    "top2.vmdk": sparse_desc(desc(b"vmfsSparse", b'RW 2048 FLAT "a.raw" 0\nRW 2048 SPARSE "mid2.vmdk"\n')),
    "mid2.vmdk": sparse_desc(desc(b"twoGbMaxExtentFlat", b'RW 4096 SPARSE "mid.vmdk"\nRW 2048 FLAT "b.raw" 0\n')),
    # a file the nested descriptor names is missing; an unknown createType inside
    "top-missing.vmdk": desc(b"monolithicFlat", b'RW 2048 FLAT "a.raw" 0\nRW 2048 SPARSE "mid-missing.vmdk"\n'),
    "mid-missing.vmdk": sparse_desc(desc(b"monolithicFlat", b'RW 2048 FLAT "c.raw" 0\nRW 2048 FLAT "nosuch.raw" 0\n')),
    "top-badtype.vmdk": desc(b"monolithicFlat", b'RW 2048 FLAT "a.raw" 0\nRW 2048 SPARSE "mid-badtype.vmdk"\n'),
    "mid-badtype.vmdk": sparse_desc(desc(b"streamOptimized", b'RW 2048 FLAT "c.raw" 0\n')),
}


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    d = tmp_path_factory.mktemp("vmdknested")
    for n, data in FILES.items():
        (d / n).write_bytes(data)
    for i, n in enumerate(["a.raw", "b.raw", "c.raw", "d.raw"]):
        (d / n).write_bytes(bytes([0x31 + i]) * MiB)
    return d


CASES = []
for _n in ["top", "top2"]:
    for _args in [["info"], ["info", "--output=json"], ["map"], ["map", "--output=json"], ["check"]]:
        CASES.append(pytest.param([*_args, f"{_n}.vmdk"], id=f"{'-'.join(_args)}-{_n}"))
for _n in ["top-missing", "top-badtype"]:
    CASES.append(pytest.param(["info", f"{_n}.vmdk"], id=f"err-info-{_n}"))


@pytest.mark.parametrize("args", CASES)
def test_vmdk_nested_read(instar, nested, request, args):
    expected, actual = tl.run_both(instar, args, cwd=nested)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode not in (0, 63)) == err_case, "case id does not match: " + expected.describe()


@pytest.mark.parametrize("name", ["top.vmdk", "top2.vmdk"])
def test_vmdk_nested_convert_raw(instar, nested, tmp_path, name):
    a, b = tmp_path / "oracle.raw", tmp_path / "instar.raw"
    expected = tl.run_oracle(["convert", "-O", "raw", name, str(a)], cwd=nested)
    actual = instar.run(["convert", "-O", "raw", name, str(b)], cwd=nested)
    tl.assert_same(expected, actual, f"convert -O raw {name}")
    assert expected.returncode == 0, expected.describe()
    assert tl.same_content(a, b), "the raw images differ"


def test_vmdk_nested_refused_loop_and_depth(instar, tmp_path):
    """A descriptor naming itself: qemu-img recurses until its stack overflows (SIGSEGV); a chain
    nine deep: qemu-img opens it.  instar follows eight levels and says so."""
    (tmp_path / "loop.vmdk").write_bytes(sparse_desc(desc(b"monolithicFlat", b'RW 2048 SPARSE "loop.vmdk"\n')))
    for i in range(10):
        line = b'RW 2048 FLAT "a.raw" 0\n' if i == 9 else b'RW 2048 SPARSE "n%d.vmdk"\n' % (i + 1)
        (tmp_path / f"n{i}.vmdk").write_bytes(sparse_desc(desc(b"monolithicFlat", line)))
    (tmp_path / "a.raw").write_bytes(b"\x31" * MiB)
    msg = (b"VMDK extent files that are descriptors again nest more than 8 deep "
           b"(qemu-img 7.2 recurses without a bound)\n")
    for name in ["loop.vmdk", "n0.vmdk"]:
        r = instar.run(["info", name], cwd=tmp_path)
        assert (r.returncode, r.stdout) == (1, b""), r.describe()
        assert r.stderr == b"qemu-img: Could not open '" + name.encode() + b"': " + msg, r.describe()
    # eight deep opens
    r = instar.run(["map", "--output=json", "n1.vmdk"], cwd=tmp_path)
    expected = tl.run_oracle(["map", "--output=json", "n1.vmdk"], cwd=tmp_path)
    tl.assert_same(expected, r, "map n1.vmdk")
