"""raw's `offset` and `size` options (a partition inside a disk) under qemu-img 7.2 and instar.

`--image-opts driver=raw,offset=O,size=S,file.filename=F` (or json:) reads
the bytes [O, O+S) of F as the image (block/raw-format.c): every command
that takes image options, with qemu's checks against the file's length
(offset past the end, offset + size past the end, a size that is no
multiple of 512, values that are no sizes), its json:{...} name, host
offsets in map, and resize moving the end of the file (or refusing a
fixed size).  Read-only cases run on the fixture itself; convert, dd,
bench and resize on copies, every written file compared byte for byte.
A case id starting with `err-` must make qemu-img fail.

An offset that is no multiple of 512 is only shown by info here:
qemu-img 7.2's map and compare abort on it and its measure spins
(docs/differences.md); instar answers them (tests/integration/test_raw_window.py).
"""

from __future__ import annotations

import dataclasses
import re

import pytest

import instar_testlib as tl

MiB = 1 << 20
W = "driver=raw,offset=1M,size=2M,file.filename=disk.raw"  # the partition: 1M..3M
WO = "driver=raw,offset=1M,file.filename=disk.raw"  # from 1M to the end
_TIMING = re.compile(rb"Run completed in \d+\.\d{3} seconds\.")
FILES = ["disk.raw", "odd.raw", "part.raw", "q.qcow2"]


@pytest.fixture(scope="module")
def rawdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("rawwin")
    tl.qemu_img("create", "-q", "-f", "raw", "disk.raw", "4M", cwd=d)
    tl.qemu_io("-f", "raw", "-c", "write -P 0x11 1M 64k", "-c", "write -P 0x22 2M 4k",
               "-c", "write -P 0x33 3M 4k", str(d / "disk.raw"))
    with open(d / "disk.raw", "rb") as f:
        f.seek(MiB)
        (d / "part.raw").write_bytes(f.read(2 * MiB))
    (d / "odd.raw").write_bytes(bytes(range(256)) * 4100 + b"\x55" * 232)  # 1049832 bytes
    tl.qemu_img("create", "-q", "-f", "qcow2", "q.qcow2", "1M", cwd=d)
    return d


CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


IO = "--image-opts"
case("info", "info", IO, W)
case("info-offset", "info", IO, WO)
case("info-size", "info", IO, "driver=raw,size=3M,file.filename=disk.raw")
case("info-end", "info", IO, "driver=raw,offset=4M,file.filename=disk.raw")
case("info-unaligned-offset", "info", IO, "driver=raw,offset=1000,file.filename=odd.raw")
case("info-offset-past-eof-in-sector", "info", IO, "driver=raw,offset=1049833,file.filename=odd.raw")
case("info-probed", "info", IO, "file.filename=disk.raw,offset=0x100000,size=1.5M")
case("info-json", "info", "--output=json", "json:{\"driver\": \"raw\", \"offset\": 1048576, "
     "\"size\": \"2M\", \"file\": {\"driver\": \"file\", \"filename\": \"disk.raw\"}}")
case("info-json-null", "info", "json:{\"driver\": \"raw\", \"offset\": \"1M\", \"size\": null, "
     "\"file\": {\"driver\": \"file\", \"filename\": \"disk.raw\"}}")  # named, not given
case("err-info-offset-past-eof", "info", IO, "driver=raw,offset=5M,file.filename=disk.raw")
case("err-info-size-past-eof", "info", IO, "driver=raw,offset=1M,size=4M,file.filename=disk.raw")
case("err-info-size-unaligned", "info", IO, "driver=raw,offset=1M,size=1000,file.filename=disk.raw")
case("err-info-offset-not-a-size", "info", IO, "driver=raw,offset=-1,size=x,file.filename=disk.raw")
case("err-info-size-out-of-range", "info", IO, "driver=raw,size=16E,file.filename=disk.raw")
case("err-info-qcow2", "info", IO, "file.filename=q.qcow2,size=1M,offset=5")
case("err-info-missing-file", "info", IO, "driver=raw,offset=x,file.filename=none.raw")
case("check", "check", IO, W)
case("map", "map", IO, W)
case("map-json", "map", "--output=json", IO, WO)
case("map-json-end", "map", "--output=json", IO, "driver=raw,offset=4M,file.filename=disk.raw")
case("compare-part", "compare", IO, W, "driver=raw,file.filename=part.raw")
case("compare-diff", "compare", IO, W, "driver=raw,size=2M,file.filename=disk.raw")
case("compare-strict-size", "compare", "-s", IO, WO, "driver=raw,file.filename=part.raw")
case("measure", "measure", "-O", "qcow2", IO, WO)
case("measure-json", "measure", "--output=json", "-O", "qcow2", IO, W)


@pytest.mark.parametrize("args", CASES)
def test_raw_window_read(instar, rawdir, request, args):
    expected, actual = tl.run_both(instar, args, cwd=rawdir)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    ok = {"check": (63,), "compare": (0, 1)}.get(args[0], (0,))
    assert (expected.returncode not in ok) == err_case, "case id does not match qemu-img's outcome: " + \
        expected.describe()


OUT_CASES = []


def out_case(cid, out, *args):
    OUT_CASES.append(pytest.param(out, list(args), id=cid))


out_case("convert-raw", "out.raw", "convert", IO, W, "-O", "raw", "out.raw")
out_case("convert-qcow2", "out.qcow2", "convert", IO, WO, "-O", "qcow2", "out.qcow2")
out_case("convert-unaligned-offset", "out.raw", "convert", IO, "driver=raw,offset=1000,file.filename=odd.raw",
         "-O", "raw", "out.raw")
out_case("dd", "out.raw", "dd", IO, "if=" + W, "of=out.raw", "bs=64k", "skip=3", "count=20")
out_case("bench-write", "disk.raw", "bench", "-w", "-c", "3", "-d", "1", "-s", "64k", "-S", "1M",
         "--pattern=7", IO, W)
out_case("resize-offset", "disk.raw", "resize", IO, WO, "5M")
out_case("resize-offset-shrink", "disk.raw", "resize", "--shrink", IO, WO, "1M")
out_case("resize-unaligned-offset", "odd.raw", "resize", IO, "driver=raw,offset=1000,file.filename=odd.raw",
         "+1000")
out_case("resize-falloc", "disk.raw", "resize", "--preallocation=falloc", IO, WO, "4M")
out_case("err-resize-size", "disk.raw", "resize", IO, W, "2M")


@pytest.mark.parametrize("out,args", OUT_CASES)
def test_raw_window_output(instar, rawdir, tmp_path, request, out, args):
    expected, actual = tl.run_both_on_copies(instar, args, [rawdir / f for f in FILES], tmp_path)
    if args[0] == "bench":  # the one timing figure
        expected, actual = (dataclasses.replace(r, stdout=_TIMING.sub(b"<T>", r.stdout))
                            for r in (expected, actual))
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / out, tmp_path / "instar" / out
    assert a.exists() == b.exists()
    if a.exists():
        assert tl.same_files(a, b), f"{out} differs (bytes or holes)"
