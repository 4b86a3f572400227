"""vpc (VHD) parity (qemu-img 7.2 vs instar): the read side.

Every image is made at test time: with `qemu-img create -f vpc` /
`convert -O vpc` and `qemu-io` writes (fixed and dynamic, sizes whose CHS
geometry rounds the size, images sized by current_size), and hostile ones
written field by field below (a footer with a bad checksum, truncated
headers, absurd block sizes and table sizes, a BAT past the end of the
file...).  Read-only commands (info, map, compare, check, measure) run on
the same files under both tools; convert and dd run on copies in
directories of their own, and their outputs must be identical byte for
byte.  A case id starting with `err-` must make qemu-img fail, every other
must make it succeed (a guard that the case tests what its name says).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

import instar_testlib as tl

MiB = 1 << 20


# ---- images ------------------------------------------------------------------------------
def _csum(b: bytes) -> int:
    return ~sum(b) & 0xFFFFFFFF


def footer(size, typ=3, chs=(2, 16, 63), app=b"qemu", data_offset=512, checksum=None):
    """A VHD footer (spec: Hard Disk Footer Format), big-endian."""
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">II", f, 8, 2, 0x10000)
    struct.pack_into(">Q", f, 16, data_offset if typ != 2 else 0xFFFFFFFFFFFFFFFF)
    f[28:32] = app
    struct.pack_into(">QQHBBI", f, 40, size, size, chs[0], chs[1], chs[2], typ)
    struct.pack_into(">I", f, 64, _csum(f) if checksum is None else checksum)
    return bytes(f)


def dynhdr(entries, block_size=2 * MiB, table=1536):
    """A dynamic disk header (spec: Dynamic Disk Header Format)."""
    h = bytearray(1024)
    h[0:8] = b"cxsparse"
    struct.pack_into(">QQIII", h, 8, 0xFFFFFFFFFFFFFFFF, table, 0x10000, entries, block_size)
    struct.pack_into(">I", h, 36, _csum(h))
    return bytes(h)


def bat(*entries, n=128):
    e = list(entries) + [0xFFFFFFFF] * (n - len(entries))
    return struct.pack(f">{len(e)}I", *e)


# A small dynamic image by hand: 2 blocks of 4 KiB (bitmap 512 bytes each), CHS 1 MiB.
_SMALL = 1 * MiB
_CHS_1M = (32, 4, 17)  # 2176 sectors: more than 1 MiB
HOSTILE = {
    "tiny": b"abc",
    "zeros": b"\0" * 4096,
    "bad-checksum": footer(_SMALL, checksum=0x1234) + dynhdr(512, 4096) + bat(n=512),
    "too-large": footer(1 << 50, app=b"win ") + dynhdr(1),
    "too-large-fixed-at-end": b"\0" * 512 + footer(1 << 42, typ=2, app=b"win "),
    "fixed-footer-wrong-type": b"\0" * 512 + footer(_SMALL, typ=3),
    "header-offset-huge": footer(_SMALL, data_offset=1 << 62) + b"\0" * 512,
    "header-offset-negative": footer(_SMALL, data_offset=1 << 63) + b"\0" * 512,
    "header-past-eof": footer(_SMALL, data_offset=4096),
    "bad-magic": footer(_SMALL) + b"x" * 1024,
    "block-size-1000": footer(_SMALL) + dynhdr(1, 1000) + bat(),
    "block-size-256": footer(_SMALL) + dynhdr(8192, 256) + bat(),
    "block-size-0": footer(_SMALL) + dynhdr(1, 0) + bat(),
    "table-too-small": footer(_SMALL) + dynhdr(0) + bat(),
    "entries-int-max": footer(_SMALL) + dynhdr(0x7FFFFFFF, 512) + bat(),
    "entries-2-29": footer(_SMALL) + dynhdr(0x20000000, 512) + bat(),
    "entries-negative": footer(1 << 40, app=b"win ") + dynhdr(0xFFFFFFFF, 512) + bat(),
    "entries-min-int": footer(1 << 40, app=b"win ") + dynhdr(0x80000000, 512) + bat(),
    "bat-offset-negative": footer(_SMALL) + dynhdr(1, table=1 << 63) + bat(),
    "bat-offset-huge": footer(_SMALL) + dynhdr(1, table=1 << 62) + bat(),
    "bat-past-eof": footer(_SMALL) + dynhdr(4096, 512, table=1536) + bat(n=16),
    "block-past-eof": footer(_SMALL) + dynhdr(1) + bat(0x10, n=128),
    # Accepted by qemu: blocks inside the headers, two entries for one block.
    "bat-into-headers": footer(_SMALL, chs=_CHS_1M) + dynhdr(512, 4096) + bat(0, 1, 2, n=512)
    + bytes(range(256)) * 16,
    "bat-overlapping": footer(_SMALL, chs=_CHS_1M) + dynhdr(512, 4096) + bat(8, 8, 9, n=512)
    + b"\x5a" * 4096 * 3,
    # current_size wins for these creators, and for the maximum geometry.
    "creator-win": footer(3 * MiB + 512, app=b"win ", chs=_CHS_1M) + dynhdr(2, 2 * MiB) + bat(n=128),
    "creator-tap": footer(3 * MiB, app=b"tap\0", chs=_CHS_1M) + dynhdr(2, 2 * MiB) + bat(n=128),
    "creator-vpc-max-chs": footer(5 * MiB, app=b"vpc ", chs=(65535, 16, 255)) + dynhdr(3, 2 * MiB)
    + bat(n=128),
    "creator-d2v-fixed": b"\x11" * (4 * MiB) + footer(4 * MiB, typ=2, app=b"d2v ", chs=(1, 1, 1)),
    "fixed-shorter-than-size": b"\x22" * 8192 + footer(_SMALL, typ=2),
    # A fixed footer at both ends: the one at 0 makes it dynamic, without a header.
    "fixed-with-leading-footer": footer(8192, typ=2, chs=(1, 4, 17)) + b"\x33" * 8192
    + footer(8192, typ=2, chs=(1, 4, 17)),
}
# Size overflowing 32-bit sector and block counts: qemu's limits are what they test.
HOSTILE["size-2040G"] = footer(0xFF000000 * 512, app=b"win ") + dynhdr(0xFF000000 * 512 // (2 * MiB) + 1) + bat()


def _write(path: Path, data: bytes):
    path.write_bytes(data)


def _qio(path, *cmds, fmt="vpc"):
    args = []
    for c in cmds:
        args += ["-c", c]
    tl.qemu_io("-f", fmt, *args, str(path))


@pytest.fixture(scope="module")
def vpcdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("vpc")

    def q(*a):
        tl.qemu_img(*a, cwd=d)

    # dynamic images with data in some blocks, zeros written in others
    q("create", "-q", "-f", "vpc", "dyn.vhd", "100M")
    _qio(d / "dyn.vhd", "write -P 0x11 0 64k", "write -P 0x22 1M 2M", "write -z 10M 1M",
         "write -P 0x33 99M 512")
    q("create", "-q", "-f", "vpc", "-o", "subformat=fixed", "fixed.vhd", "20M")
    _qio(d / "fixed.vhd", "write -P 0x44 0 4k", "write -P 0x55 5M 1M")
    for size in ["0", "1000000", "10M", "1G", "3000000000"]:
        q("create", "-q", "-f", "vpc", f"size-{size}.vhd", size)
    q("create", "-q", "-f", "vpc", "-o", "force_size=on", "force.vhd", "10000000")
    q("create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size=on", "fixed-force.vhd", "3000000")
    _qio(d / "fixed-force.vhd", "write -P 0x66 1M 1000")
    # convert from a qcow2 with data, zeros and holes
    q("create", "-q", "-f", "qcow2", "src.qcow2", "7M")
    _qio(d / "src.qcow2", "write -P 0x77 0 1M", "write -z 2M 1M", "write -P 0x78 4095k 2k", fmt="qcow2")
    q("convert", "-O", "vpc", "src.qcow2", "conv.vhd")
    q("convert", "-O", "vpc", "-o", "subformat=fixed", "src.qcow2", "conv-fixed.vhd")
    for name, data in HOSTILE.items():
        _write(d / f"h-{name}.vhd", data)
    return d


GOOD = ["dyn", "fixed", "size-0", "size-1000000", "size-10M", "size-1G", "size-3000000000", "force",
        "fixed-force", "conv", "conv-fixed"]
HOSTILE_OK = ["bat-into-headers", "bat-overlapping", "creator-win", "creator-tap", "creator-vpc-max-chs",
              "creator-d2v-fixed", "fixed-shorter-than-size"]
HOSTILE_ERR = [n for n in HOSTILE if n not in HOSTILE_OK]
FIXED = {"fixed", "fixed-force", "conv-fixed", "creator-d2v-fixed", "fixed-shorter-than-size",
         "fixed-with-leading-footer", "too-large-fixed-at-end", "fixed-footer-wrong-type"}


def _img(n):
    if n == "src":
        return "src.qcow2"
    return f"{n}.vhd" if n in GOOD else f"h-{n}.vhd"




CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


for _n in GOOD + list(HOSTILE):
    case(f"{'err-' if _n in HOSTILE_ERR else ''}info-{_n}", "info", "-f", "vpc", f"@{_n}")
for _n in GOOD + HOSTILE_OK:
    case(f"info-json-{_n}", "info", "--output=json", "-f", "vpc", f"@{_n}")
    case(f"map-{_n}", "map", "-f", "vpc", f"@{_n}")
    case(f"map-json-{_n}", "map", "--output=json", "-f", "vpc", f"@{_n}")
    case(f"check-{_n}", "check", "-f", "vpc", f"@{_n}")
    case(f"measure-qcow2-{_n}", "measure", "-f", "vpc", "-O", "qcow2", f"@{_n}")
# probed: a dynamic image is vpc, a fixed one raw (its footer is at the end)
for _n in ["dyn", "fixed", "conv", "size-0", "fixed-with-leading-footer"]:
    _e = "err-" if _n in HOSTILE_ERR else ""
    case(f"{_e}info-probed-{_n}", "info", f"@{_n}")
    case(f"{_e}map-probed-{_n}", "map", "--output=json", f"@{_n}")
    case(f"{_e}check-probed-{_n}", "check", f"@{_n}")
case("err-check-bad-checksum", "check", "-f", "vpc", "@bad-checksum")
case("err-map-bad-magic", "map", "-f", "vpc", "@bad-magic")
case("info-image-opts", "info", "--image-opts", "driver=vpc,file.filename=@dyn")
case("info-image-opts-json", "info", "--output=json", "--image-opts", "driver=vpc,file.filename=@fixed")
case("err-info-image-opts-force-size", "info", "--image-opts", "driver=vpc,force_size=on,file.filename=@dyn")
# force_size_calc: the size rule chosen by the user (the maximum geometry still means current_size)
for _n in ["dyn", "force", "creator-win", "creator-vpc-max-chs", "fixed"]:
    for _calc in ["chs", "current_size"]:
        _o = f"driver=vpc,force_size_calc={_calc},file.filename=@{_n}"
        case(f"info-calc-{_calc}-{_n}", "info", "--output=json", "--image-opts", _o)
        case(f"map-calc-{_calc}-{_n}", "map", "--output=json", "--image-opts", _o)
case("err-info-calc-bogus", "info", "--image-opts", "driver=vpc,force_size_calc=bogus,file.filename=@dyn")
case("err-info-calc-empty", "info", "--image-opts", "driver=vpc,force_size_calc=,file.filename=@dyn")
case("compare-calc", "compare", "--image-opts", "driver=vpc,force_size_calc=current_size,file.filename=@dyn",
     "driver=vpc,file.filename=@dyn")
case("measure-raw", "measure", "-f", "vpc", "-O", "raw", "@dyn")
case("measure-json", "measure", "--output=json", "-f", "vpc", "-O", "qcow2", "@conv")
# compare: vpc with vpc, with its qcow2 source, dynamic with fixed
case("compare-same", "compare", "-f", "vpc", "-F", "vpc", "@dyn", "@dyn")
case("compare-conv-src", "compare", "-f", "vpc", "-F", "qcow2", "@conv", "@src")
case("compare-conv-fixed", "compare", "-f", "vpc", "-F", "vpc", "@conv", "@conv-fixed")
case("compare-probed", "compare", "@conv", "@src")
case("compare-differ", "compare", "-f", "vpc", "-F", "vpc", "@dyn", "@size-1G")
case("compare-strict-differ-size", "compare", "-s", "-f", "vpc", "-F", "vpc", "@conv", "@size-10M")
case("compare-hostile", "compare", "-f", "vpc", "-F", "vpc", "@bat-overlapping", "@bat-into-headers")


def _resolve(args):
    out = []
    for a in args:
        if "@" in a:
            pre, name = a.split("@", 1)
            a = pre + _img(name)
        out.append(a)
    return out


@pytest.mark.parametrize("args", CASES)
def test_vpc_read(instar, vpcdir, request, args):
    argv = _resolve(args)
    expected, actual = tl.run_both(instar, argv, cwd=vpcdir)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    ok = {"check": (0, 63), "compare": (0, 1)}.get(argv[0], (0,))
    assert (expected.returncode not in ok) == err_case, "case id does not match qemu-img's outcome: " + \
        expected.describe()


# ---- commands that write an output: convert and dd ------------------------------------------
OUT_CASES = []


def out_case(cid, out, *args):
    OUT_CASES.append(pytest.param(out, list(args), id=cid))


for _n in ["dyn", "fixed", "conv", "conv-fixed", "size-1000000", "fixed-force", "bat-overlapping",
           "creator-win", "fixed-shorter-than-size"]:
    out_case(f"convert-raw-{_n}", "out.raw", "convert", "-f", "vpc", "-O", "raw", f"@{_n}", "out.raw")
    out_case(f"convert-qcow2-{_n}", "out.qcow2", "convert", "-f", "vpc", "-O", "qcow2", f"@{_n}", "out.qcow2")
    out_case(f"dd-{_n}", "out.raw", "dd", "-f", "vpc", "-O", "raw", f"if=@{_n}", "of=out.raw", "bs=64k")
out_case("convert-calc", "out.raw", "convert", "--image-opts", "-O", "raw",
         "driver=vpc,force_size_calc=current_size,file.filename=@creator-win", "out.raw")
out_case("dd-calc", "out.raw", "dd", "--image-opts", "-O", "raw",
         "if=driver=vpc,force_size_calc=chs,file.filename=@force", "of=out.raw")
# dd -O vpc: a dynamic output, every block written (so allocated) in order
for _n in ["src", "dyn", "fixed", "size-1000000"]:
    _f = [] if _n == "src" else ["-f", "vpc"]
    out_case(f"dd-O-vpc-{_n}", "out.vhd", "dd", *_f, "-O", "vpc", f"if=@{_n}", "of=out.vhd", "bs=1M")
out_case("dd-O-vpc-odd-bs", "out.vhd", "dd", "-O", "vpc", "if=@src", "of=out.vhd", "bs=3000", "skip=7")
# convert -O vpc: a new dynamic or fixed image, written through the vpc driver in convert's order
for _n in ["src", "dyn", "fixed", "size-1000000", "fixed-force", "creator-win", "bat-overlapping"]:
    _f = [] if _n == "src" else ["-f", "vpc"]
    out_case(f"convert-O-vpc-{_n}", "out.vhd", "convert", *_f, "-O", "vpc", f"@{_n}", "out.vhd")
    out_case(f"convert-O-vpc-fixed-{_n}", "out.vhd", "convert", *_f, "-O", "vpc", "-o", "subformat=fixed",
             f"@{_n}", "out.vhd")
out_case("convert-O-vpc-force-size", "out.vhd", "convert", "-O", "vpc", "-o", "force_size=on", "@src", "out.vhd")
out_case("convert-O-vpc-S0", "out.vhd", "convert", "-S", "0", "-O", "vpc", "@src", "out.vhd")
out_case("convert-O-vpc-S64k", "out.vhd", "convert", "-S", "64k", "-O", "vpc", "@src", "out.vhd")
out_case("convert-O-vpc-p", "out.vhd", "convert", "-p", "-O", "vpc", "@src", "out.vhd")
out_case("convert-O-vpc-two-sources", "out.vhd", "convert", "-O", "vpc", "@src", "@conv", "out.vhd")
# -n: into an existing image, which does not read as zeros: zeros written too
out_case("convert-O-vpc-n-dyn", "dyn.vhd", "convert", "-n", "-O", "vpc", "@src", "@dyn")
out_case("convert-O-vpc-n-fixed", "fixed.vhd", "convert", "-n", "-O", "vpc", "@src", "@fixed")
out_case("convert-O-vpc-n-target-is-zero", "dyn.vhd", "convert", "-n", "--target-is-zero", "-O", "vpc",
         "@src", "@dyn")
out_case("err-convert-O-vpc-n-smaller", "size-1000000.vhd", "convert", "-n", "-O", "vpc", "@src",
         "@size-1000000")
out_case("err-convert-O-vpc-compressed", "out.vhd", "convert", "-c", "-O", "vpc", "@src", "out.vhd")
out_case("err-convert-O-vpc-subformat", "out.vhd", "convert", "-O", "vpc", "-o", "subformat=foo", "@src",
         "out.vhd")
out_case("err-convert-O-vpc-bitmaps", "out.vhd", "convert", "--bitmaps", "-O", "vpc", "@src", "out.vhd")
out_case("err-convert-O-vpc-hostile-source", "out.vhd", "convert", "-f", "vpc", "-O", "vpc", "@block-past-eof",
         "out.vhd")
out_case("convert-probed", "out.raw", "convert", "-O", "raw", "@conv", "out.raw")
out_case("convert-qcow2-compressed", "out.qcow2", "convert", "-c", "-f", "vpc", "-O", "qcow2", "@dyn", "out.qcow2")
out_case("dd-skip-count", "out.raw", "dd", "-f", "vpc", "-O", "raw", "if=@dyn", "of=out.raw", "bs=1M", "skip=1",
         "count=4")
out_case("err-convert-hostile", "out.raw", "convert", "-f", "vpc", "-O", "raw", "@block-past-eof", "out.raw")


def _layout(path: Path) -> list:
    """The host data/hole layout of path (SEEK_DATA/SEEK_HOLE)."""
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        size, off, out = os.fstat(fd).st_size, 0, []
        while off < size:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            out.append((data, hole))
            off = hole
        return out
    finally:
        os.close(fd)


@pytest.mark.parametrize("out,args", OUT_CASES)
def test_vpc_output(instar, vpcdir, tmp_path, request, out, args):
    argv = _resolve(args)
    inputs = sorted({vpcdir / a.rsplit("=", 1)[-1] for a in argv if a.endswith((".vhd", ".qcow2"))
                     and (vpcdir / a.rsplit("=", 1)[-1]).exists()})
    expected, actual = tl.run_both_on_copies(instar, argv, inputs, tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / out, tmp_path / "instar" / out
    assert a.exists() == b.exists()
    if a.exists():
        assert _mask_footers(a.read_bytes()) == _mask_footers(b.read_bytes()), f"{out} differs"
        assert _layout(a) == _layout(b), f"{out}: host data/hole layout differs"


# ---- create -f vpc ---------------------------------------------------------------------------
CREATE_CASES = []


def create_case(cid, *args):
    CREATE_CASES.append(pytest.param(list(args), id=cid))


# sizes whose CHS geometry rounds them up, exact ones, the CHS limit (127 GiB) and the 2040 GiB one
for _s in ["0", "512", "1000", "1000001", "10M", "100M", "1G", "3000000000", "127G", "2040G"]:
    create_case(f"dynamic-{_s}", "create", "-f", "vpc", "a.vhd", _s)
    create_case(f"force-{_s}", "create", "-f", "vpc", "-o", "force_size=on", "a.vhd", _s)
for _s in ["0", "1000", "1000001", "10M", "1G"]:
    create_case(f"fixed-{_s}", "create", "-f", "vpc", "-o", "subformat=fixed", "a.vhd", _s)
    create_case(f"fixed-force-{_s}", "create", "-f", "vpc", "-o", "subformat=fixed,force_size=on", "a.vhd", _s)
create_case("subformat-dynamic-q", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic", "a.vhd", "5M")
create_case("size-option", "create", "-f", "vpc", "-o", "size=3M,force_size=off", "a.vhd")
create_case("file-options", "create", "-f", "vpc", "-o", "preallocation=full,nocow=on", "a.vhd", "1M")
create_case("help", "create", "-f", "vpc", "-o", "help")
create_case("help-file", "create", "-f", "vpc", "-o", "help", "a.vhd")
for _cid, _args in [("subformat-bogus", ["-o", "subformat=bogus", "a.vhd", "1M"]),
                    ("too-large", ["a.vhd", "3T"]), ("too-large-force", ["-o", "force_size=on", "a.vhd", "2041G"]),
                    ("force-size-bogus", ["-o", "force_size=bad", "a.vhd", "1M"]),
                    ("preallocation-metadata", ["-o", "preallocation=metadata", "a.vhd", "1M"]),
                    ("cluster-size", ["-o", "cluster_size=4k", "a.vhd", "1M"]),
                    ("backing", ["-b", "x.qcow2", "-F", "qcow2", "a.vhd", "1M"]),
                    ("no-size", ["a.vhd"])]:
    create_case(f"err-{_cid}", "create", "-f", "vpc", *_args)


def _mask_footers(data: bytes) -> bytes:
    """The footers with their timestamp, checksum and UUID zeroed (time and chance)."""
    b = bytearray(data)
    for base in (0, len(b) - 512):
        if base >= 0 and b[base:base + 8] == b"conectix" and b[base + 28:base + 32] in (b"qemu", b"qem2"):
            b[base + 24:base + 28] = bytes(4)
            b[base + 64:base + 84] = bytes(20)
    return bytes(b)


@pytest.mark.parametrize("args", CREATE_CASES)
def test_vpc_create(instar, tmp_path, request, args):
    expected, actual = tl.run_both_on_copies(instar, args, [], tmp_path)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / "a.vhd", tmp_path / "instar" / "a.vhd"
    assert a.exists() == b.exists()
    if a.exists() and a.stat().st_size > 64 << 20:
        # A large fixed image: its two ends masked, the rest compared in
        # chunks (whole copies in memory overran the nested test system).
        size = a.stat().st_size
        assert size == b.stat().st_size, "a.vhd: lengths differ"
        with open(a, "rb") as fa, open(b, "rb") as fb:
            for off in range(0, size, 4 << 20):
                ca, cb = fa.read(4 << 20), fb.read(4 << 20)
                if off == 0 or off + len(ca) == size:
                    ca, cb = bytearray(ca), bytearray(cb)
                    for base in (0, len(ca) - 512) if off == 0 else (len(ca) - 512,):
                        for c in (ca, cb):
                            if c[base:base + 8] == b"conectix" and c[base + 28:base + 32] in (b"qemu", b"qem2"):
                                c[base + 24:base + 28] = bytes(4)
                                c[base + 64:base + 84] = bytes(20)
                assert ca == cb, f"a.vhd differs at {off:#x} beyond timestamp, checksum and UUID"
        assert _layout(a) == _layout(b), "a.vhd: host data/hole layout differs"
    elif a.exists():
        da, db = a.read_bytes(), b.read_bytes()
        assert _mask_footers(da) == _mask_footers(db), "a.vhd differs beyond timestamp, checksum and UUID"
        assert _layout(a) == _layout(b), "a.vhd: host data/hole layout differs"
        if len(db) >= 512 and not err_case:
            # instar's own footers carry a valid checksum and a version 4 UUID
            for base in {0, len(db) - 512}:
                f = db[base:base + 512]
                if f[:8] == b"conectix":
                    assert struct.unpack(">I", f[64:68])[0] == _csum(f[:64] + bytes(4) + f[68:])
                    assert f[74] >> 4 == 4 and f[76] >> 6 == 2


# resize: vpc has no truncate; qemu-img's own message
@pytest.mark.parametrize("args", [["resize", "-f", "vpc", "@dyn", "200M"], ["resize", "@fixed", "+1M"]],
                         ids=["err-resize-dynamic", "err-resize-fixed-probed-raw"])
def test_vpc_resize(instar, vpcdir, tmp_path, args):
    argv = _resolve(args)
    expected, actual = tl.run_both_on_copies(instar, argv, [vpcdir / a for a in argv if a.endswith(".vhd")], tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))


# ---- bench -w on vpc: one request at a time (-d 1), the image bytes as qemu-img's ------------------
BENCH = []
for _sub in ["dynamic", "fixed"]:
    for _cid, _a in [("seq", ["-c", "40", "-s", "64k", "-S", "300k"]),
                     ("big", ["-c", "6", "-s", "3M", "-o", "1M"]),
                     ("flush", ["-c", "20", "-s", "4k", "-S", "1M", "--flush-interval=3"])]:
        BENCH.append(pytest.param(_sub, _a, id=f"{_sub}-{_cid}"))


@pytest.mark.parametrize("sub,opts", BENCH)
def test_vpc_bench_write(instar, tmp_path, sub, opts):
    src = tmp_path / "w.vhd"
    tl.qemu_img("create", "-q", "-f", "vpc", "-o", f"subformat={sub}", str(src), "20M")
    _qio(src, "write -P 0x11 0 3M")
    argv = ["bench", "-w", "-d", "1", "-f", "vpc", *opts, "w.vhd"]
    expected, actual = tl.run_both_on_copies(instar, argv, [src], tmp_path)
    strip = lambda r: b"".join(x for x in r.stdout.splitlines(True) if not x.startswith(b"Run completed"))
    assert (actual.returncode, strip(actual), actual.stderr) == (expected.returncode, strip(expected),
                                                                 expected.stderr)
    a, b = tmp_path / "oracle" / "w.vhd", tmp_path / "instar" / "w.vhd"
    assert tl.same_content(a, b), "w.vhd differs"
    assert _layout(a) == _layout(b), "w.vhd: host data/hole layout differs"


# snapshot: vpc has none; qemu-img's message for each action
@pytest.mark.parametrize("args", [["snapshot", "-l", "@dyn"], ["snapshot", "-c", "s", "@dyn"],
                                  ["snapshot", "-d", "s", "-f", "vpc", "@dyn"], ["snapshot", "-a", "s", "@dyn"]],
                         ids=["list", "err-create", "err-delete", "err-apply"])
def test_vpc_snapshot(instar, vpcdir, tmp_path, request, args):
    argv = _resolve(args)
    expected, actual = tl.run_both_on_copies(instar, argv, [vpcdir / a for a in argv if a.endswith(".vhd")], tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert (expected.returncode != 0) == request.node.callspec.id.startswith("err-")
    assert tl.same_content(tmp_path / "oracle" / "dyn.vhd", tmp_path / "instar" / "dyn.vhd")


# force_size_calc names the image json:{...}: its file name as qemu's JSON writer escapes it
# (\uXXXX past ASCII, a surrogate pair past the BMP, U+FFFD for bytes that are no UTF-8)
@pytest.fixture(scope="module")
def odd_names(tmp_path_factory):
    d = tmp_path_factory.mktemp("vpc-names")
    names = ["\u00e9.vhd", "a\tb\".vhd", "\U0001f600.vhd", "\udcff.vhd"]
    for n in names:
        tl.qemu_img("create", "-q", "-f", "vpc", n, "1M", cwd=d)
    return d, names


@pytest.mark.parametrize("i", range(4), ids=["latin1", "tab-quote", "astral", "not-utf8"])
@pytest.mark.parametrize("out", ["human", "json"])
def test_vpc_calc_name_escapes(instar, odd_names, i, out):
    d, names = odd_names
    argv = ["info", f"--output={out}", "--image-opts", f"driver=vpc,force_size_calc=chs,file.filename={names[i]}"]
    tl.assert_same(*tl.run_both(instar, argv, cwd=d), " ".join(argv))
