"""The comparator of the writing parity suites (tests/output_compare.py) can fail.

Each test runs a real qemu-img case with a stand-in "instar" that is
qemu-img with one thing changed (an extra option, a deleted output, ...)
and requires run_writing() to reject it, with the reason it names.  And
the unchanged stand-in must pass: that is what INSTAR=/usr/bin/qemu-img
relies on.  Only qemu-img runs here; no sandbox is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import instar_testlib as tl
import output_compare as oc


class Twisted:
    """qemu-img standing in for instar, with ``twist`` applied to its argv."""

    def __init__(self, twist=lambda a: a, after=None):
        self.twist, self.after = twist, after

    def run(self, args, cwd=None, **kw):
        r = tl.run_oracle(self.twist(list(args)), cwd=cwd, **kw)
        if self.after:
            self.after(Path(cwd))
        return r


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("oc-src")
    tl.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", "2M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x11 0 64k", "-c", "write -z 256k 64k",
               "-c", "write -P 0 512k 64k", "-c", "write -P 0x22 1M 4k", "src.qcow2", cwd=d)
    return [(d / "src.qcow2", "src.qcow2")]


def _convert(fake, src, tmp_path, *opts, out="out.qcow2", fmt="qcow2", contents="bytes"):
    args = ["convert", *opts, "-O", fmt, "src.qcow2", out]
    return oc.run_writing(fake, args, tmp_path, src, {out: fmt}, contents=contents)


def test_unchanged_passes(src, tmp_path):
    _convert(Twisted(), src, tmp_path, "-p")


def test_unchanged_passes_semantic(src, tmp_path):
    _convert(Twisted(), src, tmp_path, "-W", contents="semantic")


def test_message_difference_fails(src, tmp_path):
    fake = Twisted(lambda a: [x for x in a if x != "-p"])
    with pytest.raises(AssertionError, match="stdout differs"):
        _convert(fake, src, tmp_path, "-p")


def test_byte_difference_fails(src, tmp_path):
    fake = Twisted(lambda a: a[:1] + ["-o", "lazy_refcounts=on"] + a[1:])
    with pytest.raises(AssertionError, match="differs from qemu-img's"):
        _convert(fake, src, tmp_path)


def test_layout_difference_fails(src, tmp_path):
    """-S 0 writes the zeros: same bytes in the raw output, no holes."""
    fake = Twisted(lambda a: a[:1] + ["-S", "0"] + a[1:])
    with pytest.raises(AssertionError, match="different host allocation"):
        _convert(fake, src, tmp_path, out="out.raw", fmt="raw")


def test_semantic_difference_fails(src, tmp_path):
    """Compressed clusters: same guest data, but check and map tell."""
    fake = Twisted(lambda a: a[:1] + ["-c"] + a[1:])
    with pytest.raises(AssertionError, match="qemu-img (check|map)"):
        _convert(fake, src, tmp_path, contents="semantic")


def test_guest_data_difference_fails(src, tmp_path):
    def scribble(d):
        tl.qemu_io("-f", "qcow2", "-c", "write -P 0x33 1M 512", "out.qcow2", cwd=d)

    with pytest.raises(AssertionError, match="qemu-img compare"):
        _convert(Twisted(after=scribble), src, tmp_path, contents="semantic")


def test_missing_output_fails(src, tmp_path):
    with pytest.raises(AssertionError, match="exists after qemu-img: True, after instar: False"):
        _convert(Twisted(after=lambda d: os.unlink(d / "out.qcow2")), src, tmp_path)


def test_size_difference_fails_for_racy_outputs(src, tmp_path):
    def grow(d):
        with open(d / "out.raw", "ab") as f:
            f.write(b"x")

    with pytest.raises(AssertionError, match="bytes after qemu-img"):
        _convert(Twisted(after=grow), src, tmp_path, out="out.raw", fmt="raw", contents="exists")


def test_exit_code_difference_fails(src, tmp_path):
    fake = Twisted(lambda a: a[:1] + ["-o", "cluster_size=3000"] + a[1:])
    with pytest.raises(AssertionError, match="differs"):
        _convert(fake, src, tmp_path)


def test_refusal_check(src, tmp_path):
    """assert_refused wants exit 1, one line naming the refused thing, nothing written."""
    w = oc.run_refused(Twisted(lambda a: ["convert", "-f", "bogus", *a[1:]]),
                       ["convert", "-O", "qcow2", "src.qcow2", "out.qcow2"], tmp_path, src)
    oc.assert_refused(w, "bogus", src, ["out.qcow2", "src.qcow2"])
    with pytest.raises(AssertionError):
        oc.assert_refused(w, "vmdk", src, ["out.qcow2"])
    w2 = oc.run_refused(Twisted(), ["convert", "-O", "qcow2", "src.qcow2", "out.qcow2"], tmp_path / "2", src)
    with pytest.raises(AssertionError):
        oc.assert_refused(w2, "qcow2", src, ["out.qcow2"])


def test_guest_map_merges_only_alike_extents():
    m = (b'[{ "start": 0, "length": 4, "depth": 0, "present": true, "zero": false, "data": true, "offset": 8},\n'
         b'{ "start": 4, "length": 4, "depth": 0, "present": true, "zero": false, "data": true, "offset": 100},\n'
         b'{ "start": 8, "length": 4, "depth": 1, "present": true, "zero": false, "data": true, "offset": 12}]\n')
    assert oc.guest_map(m) == [[(0, True, False, True, True), 0, 8], [(1, True, False, True, True), 8, 4]]


def test_sparse_copy_keeps_holes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with open(a, "wb") as f:
        f.seek(1 << 20)
        f.write(b"\0" * 4096)          # allocated zeros stay allocated
        f.seek(3 << 20)
        f.write(b"x")
        f.truncate(4 << 20)
    oc.sparse_copy(a, b)
    assert tl.same_content(a, b)
    assert oc.host_extents(a) == oc.host_extents(b)
