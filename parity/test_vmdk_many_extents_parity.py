"""vmdk parity (qemu-img 7.2 vs instar): images of more than 16 extent files.

qemu-img has no limit of its own on a descriptor's extents (a 2 TiB
twoGbMaxExtentSparse image has 1024); instar opens up to 2048 per image
(docs/differences.md).  The images are qemu-img's: 40 GiB twoGbMaxExtentSparse
and twoGbMaxExtentFlat images (20 extent files each) with a few writes by
qemu-io, across extent boundaries too, and a descriptor whose 300 extent
lines all name one small flat file.  Read-only commands run on the same
files under both tools; convert -O raw writes a file of each tool's own.
A case id starting with `err-` must make qemu-img fail, one starting with
`diff-` must make compare find a difference.
"""

from __future__ import annotations

import pytest

import instar_testlib as tl

GiB = 1 << 30
# Each write lands in a different extent; the second crosses from extent 1 into 2.
WRITES = ["write -P 0x11 0 64k", "write -P 0x22 2047M 2M", "write -P 0x33 21G 4k", "write -P 0x44 40956M 1M"]


def desc_lines(n: int, line: bytes, ctype: bytes = b"monolithicFlat") -> bytes:
    return (b'# Disk DescriptorFile\nversion=1\nCID=1234abcd\nparentCID=ffffffff\ncreateType="' + ctype +
            b'"\n\n# Extent description\n' + line * n + b'\nddb.adapterType = "ide"\n')


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    d = tmp_path_factory.mktemp("vmdkmany")
    for name, sub, more in [("sparse.vmdk", "twoGbMaxExtentSparse", []),
                            ("flat.vmdk", "twoGbMaxExtentFlat", []),
                            ("sparse2.vmdk", "twoGbMaxExtentSparse", ["write -P 0x55 30G 512"])]:
        tl.qemu_img("create", "-q", "-f", "vmdk", "-o", f"subformat={sub}", name, "40G", cwd=d)
        tl.qemu_io("-f", "vmdk", *sum((["-c", c] for c in WRITES + more), []), str(d / name))
    (d / "one.raw").write_bytes(b"\x5a" * 512)
    (d / "lines.vmdk").write_bytes(desc_lines(300, b'RW 1 FLAT "one.raw" 0\n'))
    return d


CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


for _n in ["sparse", "flat"]:
    case(f"info-{_n}", "info", f"{_n}.vmdk")
    case(f"info-json-{_n}", "info", "--output=json", f"{_n}.vmdk")
    case(f"map-{_n}", "map", f"{_n}.vmdk")
    case(f"map-json-{_n}", "map", "--output=json", f"{_n}.vmdk")
    case(f"check-{_n}", "check", f"{_n}.vmdk")
# (sparse against flat: qemu-img reads all 40 GiB of the flat extents' holes, ten seconds)
case("diff-compare-sparse", "compare", "sparse.vmdk", "sparse2.vmdk")
case("info-json-lines", "info", "--output=json", "lines.vmdk")
case("map-json-lines", "map", "--output=json", "lines.vmdk")


@pytest.mark.parametrize("args", CASES)
def test_vmdk_many_extents_read(instar, many, request, args):
    expected, actual = tl.run_both(instar, args, cwd=many)
    tl.assert_same(expected, actual, " ".join(args))
    cid = request.node.callspec.id
    want = 1 if cid.startswith("diff-") else 0
    assert (expected.returncode != want) == cid.startswith("err-"), "case id does not match: " + \
        expected.describe()


@pytest.mark.parametrize("name", ["sparse.vmdk", "flat.vmdk"])
def test_vmdk_many_extents_convert_raw(instar, many, tmp_path, name):
    a, b = tmp_path / "oracle.raw", tmp_path / "instar.raw"
    expected = tl.run_oracle(["convert", "-O", "raw", name, str(a)], cwd=many)
    actual = instar.run(["convert", "-O", "raw", name, str(b)], cwd=many)
    tl.assert_same(expected, actual, f"convert -O raw {name}")
    assert expected.returncode == 0, expected.describe()
    assert tl.same_files(a, b), "the raw images differ"


def test_vmdk_many_extent_lines_refused(instar, tmp_path):
    """More extent lines than instar opens (2048): a clear error, no file opened past the
    limit.  qemu-img opens all 3000 (in about half a minute: its open is quadratic)."""
    (tmp_path / "one.raw").write_bytes(b"\x5a" * 512)
    (tmp_path / "h.vmdk").write_bytes(desc_lines(3000, b'RW 1 FLAT "one.raw" 0\n'))
    r = instar.run(["info", "h.vmdk"], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (1, b""), r.describe()
    assert r.stderr == b"qemu-img: Could not open 'h.vmdk': VMDK descriptor names more than 2048 extents\n"
