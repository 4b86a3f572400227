"""vdi (VirtualBox) parity (qemu-img 7.2 vs instar).

Every image is made at test time: with `qemu-img create -f vdi` /
`convert -O vdi` and `qemu-io` writes (dynamic and static images, odd
sizes), and hostile ones written field by field below (each of
vdi_open()'s header checks, a block map past the end of the file, entries
out of range, shared or discarded, a wrong blocks_allocated...).
Read-only commands (info, map, compare, check, measure) run on the same
files under both tools; convert and dd run on copies in directories of
their own, and their outputs must be identical byte for byte (the two
random UUIDs of a created header masked).  A case id starting with `err-`
must make qemu-img fail, every other must make it succeed (a guard that
the case tests what its name says).
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import pytest

import instar_testlib as tl

MiB = 1 << 20
UNALLOC = 0xFFFFFFFF
DISCARDED = 0xFFFFFFFE


# ---- images ------------------------------------------------------------------------------
def hdr(size=4 * MiB, blocks=None, typ=1, bmap=512, data=None, sig=0xBEDA107F, ver=0x10001, ss=512,
        bs=MiB, alloc=0, link=bytes(16), parent=bytes(16)):
    """A VDI 1.1 header (qemu's VdiHeader), little-endian."""
    if blocks is None:
        blocks = (size + MiB - 1) // MiB
    if data is None:
        data = (bmap + (blocks * 4 + 511) // 512 * 512) & 0xFFFFFFFF
    h = bytearray(512)
    h[0:35] = b"<<< QEMU VM Virtual Disk Image >>>\n"
    struct.pack_into("<IIII", h, 64, sig, ver, 0x180, typ)
    struct.pack_into("<II", h, 340, bmap, data)
    struct.pack_into("<I", h, 360, ss)
    struct.pack_into("<QIIII", h, 368, size, bs, 0, blocks, alloc)
    h[392:408] = bytes(range(1, 17))
    h[424:440] = link
    h[440:456] = parent
    return bytes(h)


def bmap(*entries, n=128):
    e = list(entries) + [UNALLOC] * (n - len(entries))
    return struct.pack(f"<{len(e)}I", *e)


def block(v):
    return bytes([v]) * MiB


HOSTILE = {
    "tiny": b"abc",
    "zeros": bytes(4096),
    "signature": hdr(sig=0x12345),
    "version-2-3": hdr(ver=0x20003),
    "version-1-0": hdr(ver=0x10000),
    "bmap-unaligned": hdr(bmap=513),
    "data-unaligned": hdr(data=1000),
    "sector-size": hdr(ss=4096),
    "block-size-4k": hdr(bs=4096),
    "block-size-0": hdr(bs=0),
    "no-room": hdr(size=5 * MiB, blocks=4),
    "no-room-odd": hdr(size=4 * MiB + 1, blocks=4),
    "link-uuid": hdr(link=b"\1" * 16),
    "parent-uuid": hdr(parent=b"\1" * 16),
    "too-many-blocks": hdr(size=0, blocks=0x20000000),
    "blocks-max-int": hdr(size=0, blocks=0xFFFFFFFF),
    # the size limit comes before the signature
    "size-max": hdr(size=1 << 60, blocks=1, sig=0),
    "size-max-plus-1": hdr(size=(0x1FFFFF80 << 20) + 1, blocks=0x1FFFFF80),
    # Accepted by qemu: an odd size rounded up, a map past the end of the
    # file (its entries read as 0: every block is block 0), entries shared,
    # out of range, discarded, blocks in the headers, a wrong count.
    "odd-size": hdr(size=3 * MiB + 1, alloc=1) + bmap(0) + block(0x5A),
    "bmap-past-eof": hdr(size=4 * MiB),
    "bmap-half-in-file": hdr(size=300 * MiB, alloc=1)[:512] + bmap(1, n=64),
    "huge-map-past-eof": hdr(size=0, blocks=0x1000000),
    "entries": hdr(size=6 * MiB, alloc=7) + bmap(0, 0, 9, DISCARDED, 1, n=128) + block(0x11) + block(0x22),
    "data-in-headers": hdr(size=2 * MiB, data=0, alloc=2) + bmap(0, 0) + block(0x33),
    "data-past-eof": hdr(size=3 * MiB, alloc=3) + bmap(2, UNALLOC, 1) + block(0x44),
    "static-type": hdr(size=2 * MiB, typ=2, alloc=2) + bmap(0, 1) + block(0x55) + block(0x66),
    "type-bogus": hdr(size=2 * MiB, typ=77, alloc=1) + bmap(UNALLOC, 0) + block(0x77),
    "no-blocks": hdr(size=0, blocks=0),
}


def _qio(path, *cmds, fmt="vdi"):
    args = []
    for c in cmds:
        args += ["-c", c]
    tl.qemu_io("-f", fmt, *args, str(path))


@pytest.fixture(scope="module")
def vdidir(tmp_path_factory):
    d = tmp_path_factory.mktemp("vdi")

    def q(*a):
        tl.qemu_img(*a, cwd=d)

    q("create", "-q", "-f", "vdi", "dyn.vdi", "20M")
    _qio(d / "dyn.vdi", "write -P 0x11 5M 64k", "write -P 0x22 0 3M", "write -z 10M 1M",
         "write -P 0x33 19M 512")
    q("create", "-q", "-f", "vdi", "-o", "static=on", "static.vdi", "5M")
    _qio(d / "static.vdi", "write -P 0x44 0 4k", "write -P 0x55 3M 1M")
    for size in ["0", "1000000", "10M", "1G"]:
        q("create", "-q", "-f", "vdi", f"size-{size}.vdi", size)
    q("create", "-q", "-f", "qcow2", "src.qcow2", "7M")
    _qio(d / "src.qcow2", "write -P 0x77 0 1M", "write -z 2M 1M", "write -P 0x78 4095k 2k", fmt="qcow2")
    q("convert", "-O", "vdi", "src.qcow2", "conv.vdi")
    q("convert", "-O", "vdi", "-o", "static=on", "src.qcow2", "conv-static.vdi")
    for name, data in HOSTILE.items():
        (d / f"h-{name}.vdi").write_bytes(data)
    return d


GOOD = ["dyn", "static", "size-0", "size-1000000", "size-10M", "size-1G", "conv", "conv-static"]
HOSTILE_OK = ["odd-size", "bmap-past-eof", "bmap-half-in-file", "huge-map-past-eof", "entries",
              "data-in-headers", "data-past-eof", "static-type", "type-bogus", "no-blocks"]
HOSTILE_ERR = [n for n in HOSTILE if n not in HOSTILE_OK]
# 16M entries past the end of the file are all block 0: qemu-img check prints
# a line for each (too slow for the suite).
NO_CHECK = {"huge-map-past-eof"}


def _img(n):
    if n == "src":
        return "src.qcow2"
    return f"{n}.vdi" if n in GOOD else f"h-{n}.vdi"


CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


for _n in GOOD + list(HOSTILE):
    case(f"{'err-' if _n in HOSTILE_ERR else ''}info-{_n}", "info", "-f", "vdi", f"@{_n}")
for _n in GOOD + HOSTILE_OK:
    case(f"info-json-{_n}", "info", "--output=json", "-f", "vdi", f"@{_n}")
    case(f"map-{_n}", "map", "-f", "vdi", f"@{_n}")
    case(f"map-json-{_n}", "map", "--output=json", "-f", "vdi", f"@{_n}")
    if _n not in NO_CHECK:
        case(f"check-{_n}", "check", "-f", "vdi", f"@{_n}")
        case(f"check-json-{_n}", "check", "--output=json", "-f", "vdi", f"@{_n}")
    case(f"measure-qcow2-{_n}", "measure", "-f", "vdi", "-O", "qcow2", f"@{_n}")
# probed: the signature makes it vdi
# (without the signature, the image is raw)
for _n in ["dyn", "static", "size-0", "entries", "signature"]:
    _e = ""
    case(f"{_e}info-probed-{_n}", "info", f"@{_n}")
    case(f"{_e}map-probed-{_n}", "map", "--output=json", f"@{_n}")
    case(f"{_e}check-probed-{_n}", "check", f"@{_n}")
for _n in ["signature", "version-2-3", "no-room", "too-many-blocks"]:
    case(f"err-check-{_n}", "check", "-f", "vdi", f"@{_n}")
    case(f"err-map-{_n}", "map", "-f", "vdi", f"@{_n}")
case("info-image-opts", "info", "--image-opts", "driver=vdi,file.filename=@dyn")
case("info-image-opts-json", "info", "--output=json", "--image-opts", "driver=vdi,file.filename=@static")
case("err-info-image-opts-bogus", "info", "--image-opts", "driver=vdi,bogus=1,file.filename=@dyn")
case("measure-raw", "measure", "-f", "vdi", "-O", "raw", "@dyn")
case("measure-json", "measure", "--output=json", "-f", "vdi", "-O", "qcow2", "@conv")
case("compare-same", "compare", "-f", "vdi", "-F", "vdi", "@dyn", "@dyn")
case("compare-conv-src", "compare", "-f", "vdi", "-F", "qcow2", "@conv", "@src")
case("compare-conv-static", "compare", "-f", "vdi", "-F", "vdi", "@conv", "@conv-static")
case("compare-probed", "compare", "@conv", "@src")
case("compare-differ", "compare", "-f", "vdi", "-F", "vdi", "@dyn", "@size-1G")
case("compare-strict-differ-size", "compare", "-s", "-f", "vdi", "-F", "vdi", "@conv", "@size-10M")
case("compare-hostile", "compare", "-f", "vdi", "-F", "vdi", "@entries", "@data-in-headers")
# check -r: vdi_co_check() answers -ENOTSUP to a repair
case("check-r-leaks", "check", "-r", "leaks", "-f", "vdi", "@dyn")
case("check-r-all-entries", "check", "-r", "all", "-f", "vdi", "@entries")
case("err-check-r-signature", "check", "-r", "all", "-f", "vdi", "@signature")


def _resolve(args):
    out = []
    for a in args:
        if "@" in a:
            pre, name = a.split("@", 1)
            a = pre + _img(name)
        out.append(a)
    return out


@pytest.mark.parametrize("args", CASES)
def test_vdi_read(instar, vdidir, request, args):
    argv = _resolve(args)
    expected, actual = tl.run_both(instar, argv, cwd=vdidir)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    ok = {"check": (0, 2, 63), "compare": (0, 1)}.get(argv[0], (0,))
    assert (expected.returncode not in ok) == err_case, "case id does not match qemu-img's outcome: " + \
        expected.describe()


# ---- commands that write an output: convert and dd ------------------------------------------
OUT_CASES = []


def out_case(cid, out, *args):
    OUT_CASES.append(pytest.param(out, list(args), id=cid))


for _n in ["dyn", "static", "conv", "conv-static", "size-1000000", "odd-size", "entries", "data-past-eof",
           "bmap-half-in-file", "static-type"]:
    out_case(f"convert-raw-{_n}", "out.raw", "convert", "-f", "vdi", "-O", "raw", f"@{_n}", "out.raw")
    out_case(f"convert-qcow2-{_n}", "out.qcow2", "convert", "-f", "vdi", "-O", "qcow2", f"@{_n}", "out.qcow2")
    out_case(f"dd-{_n}", "out.raw", "dd", "-f", "vdi", "-O", "raw", f"if=@{_n}", "of=out.raw", "bs=64k")
# convert -O vdi and dd -O vdi: vdi_co_pwritev() allocating blocks in write order
for _n in ["src", "dyn", "static", "entries", "odd-size"]:
    _f = [] if _n == "src" else ["-f", "vdi"]
    out_case(f"convert-O-vdi-{_n}", "out.vdi", "convert", *_f, "-O", "vdi", f"@{_n}", "out.vdi")
    out_case(f"convert-O-vdi-static-{_n}", "out.vdi", "convert", *_f, "-O", "vdi", "-o", "static=on",
             f"@{_n}", "out.vdi")
    out_case(f"dd-O-vdi-{_n}", "out.vdi", "dd", *_f, "-O", "vdi", f"if=@{_n}", "of=out.vdi", "bs=1M")
out_case("convert-O-vdi-S0", "out.vdi", "convert", "-S", "0", "-O", "vdi", "@src", "out.vdi")
out_case("convert-O-vdi-S64k", "out.vdi", "convert", "-S", "64k", "-O", "vdi", "@dyn", "out.vdi")
out_case("convert-O-vdi-n", "conv.vdi", "convert", "-n", "-O", "vdi", "@src", "@conv")
out_case("convert-O-vdi-n-static", "conv-static.vdi", "convert", "-n", "-f", "vdi", "-O", "vdi",
         "@size-1000000", "@conv-static")
out_case("err-convert-O-vdi-n-smaller", "conv-static.vdi", "convert", "-n", "-f", "vdi", "-O", "vdi", "@dyn",
         "@conv-static")
out_case("dd-O-vdi-odd-bs", "out.vdi", "dd", "-O", "vdi", "if=@src", "of=out.vdi", "bs=3000", "skip=7")
out_case("err-convert-O-vdi-compressed", "out.vdi", "convert", "-c", "-O", "vdi", "@src", "out.vdi")
out_case("err-convert-O-vdi-backing", "out.vdi", "convert", "-O", "vdi", "-B", "src.qcow2", "-F", "qcow2", "@src",
         "out.vdi")
out_case("err-convert-O-vdi-prealloc-metadata", "out.vdi", "convert", "-O", "vdi", "-o", "preallocation=metadata",
         "@src", "out.vdi")
out_case("err-convert-O-vdi-static-bogus", "out.vdi", "convert", "-O", "vdi", "-o", "static=bogus", "@src", "out.vdi")
out_case("convert-O-vdi-progress", "out.vdi", "convert", "-p", "-O", "vdi", "@src", "out.vdi")
out_case("convert-O-vdi-t-none", "out.vdi", "convert", "-t", "none", "-O", "vdi", "@dyn", "out.vdi")
out_case("err-convert-O-vdi-bitmaps", "out.vdi", "convert", "--bitmaps", "-O", "vdi", "@src", "out.vdi")
out_case("convert-probed", "out.raw", "convert", "-O", "raw", "@conv", "out.raw")
out_case("convert-qcow2-compressed", "out.qcow2", "convert", "-c", "-f", "vdi", "-O", "qcow2", "@dyn", "out.qcow2")
out_case("dd-skip-count", "out.raw", "dd", "-f", "vdi", "-O", "raw", "if=@dyn", "of=out.raw", "bs=1M", "skip=1",
         "count=4")
out_case("err-convert-hostile", "out.raw", "convert", "-f", "vdi", "-O", "raw", "@no-room", "out.raw")


def _layout(path: Path) -> list:
    """The host data/hole layout of path (SEEK_DATA/SEEK_HOLE)."""
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


def mask_uuids(data: bytes) -> bytes:
    """A VDI header's image and last-snapshot UUIDs zeroed (random in both tools)."""
    b = bytearray(data)
    if len(b) >= 512 and struct.unpack_from("<I", b, 64)[0] == 0xBEDA107F:
        b[392:424] = bytes(32)
    return bytes(b)


@pytest.mark.parametrize("out,args", OUT_CASES)
def test_vdi_output(instar, vdidir, tmp_path, request, out, args):
    argv = _resolve(args)
    inputs = sorted({vdidir / a.rsplit("=", 1)[-1] for a in argv if a.endswith((".vdi", ".qcow2"))
                     and (vdidir / a.rsplit("=", 1)[-1]).exists()})
    expected, actual = tl.run_both_on_copies(instar, argv, inputs, tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / out, tmp_path / "instar" / out
    assert a.exists() == b.exists()
    if a.exists():
        assert mask_uuids(a.read_bytes()) == mask_uuids(b.read_bytes()), f"{out} differs"
        assert _layout(a) == _layout(b), f"{out}: host data/hole layout differs"


# ---- create -f vdi ---------------------------------------------------------------------------
CREATE_CASES = []


def create_case(cid, *args):
    CREATE_CASES.append(pytest.param(list(args), id=cid))


for _s in ["0", "512", "1000", "1M", "1000001", "100M", "3T"]:
    create_case(f"dynamic-{_s}", "create", "-f", "vdi", "a.vdi", _s)
for _s in ["0", "1000", "5000000", "64M"]:
    create_case(f"static-{_s}", "create", "-f", "vdi", "-o", "static=on", "a.vdi", _s)
create_case("static-off-q", "create", "-q", "-f", "vdi", "-o", "static=off", "a.vdi", "5M")
create_case("size-option", "create", "-f", "vdi", "-o", "size=3M", "a.vdi")
create_case("file-options", "create", "-f", "vdi", "-o", "preallocation=full,nocow=on", "a.vdi", "1M")
create_case("falloc-static", "create", "-f", "vdi", "-o", "preallocation=falloc,static=on", "a.vdi", "2M")
create_case("help", "create", "-f", "vdi", "-o", "help")
create_case("help-file", "create", "-f", "vdi", "-o", "help", "a.vdi")
for _cid, _args in [("static-bogus", ["-o", "static=bogus", "a.vdi", "1M"]),
                    ("too-large", ["a.vdi", "2147483648G"]), ("too-large-by-a-sector", ["a.vdi", "562949819203585"]),
                    ("preallocation-metadata", ["-o", "preallocation=metadata", "a.vdi", "1M"]),
                    ("preallocation-bogus", ["-o", "preallocation=bogus", "a.vdi", "1M"]),
                    ("cluster-size", ["-o", "cluster_size=4k", "a.vdi", "1M"]),
                    ("backing", ["-b", "x.qcow2", "-F", "qcow2", "a.vdi", "1M"]),
                    ("no-size", ["a.vdi"])]:
    create_case(f"err-{_cid}", "create", "-f", "vdi", *_args)


@pytest.mark.parametrize("args", CREATE_CASES)
def test_vdi_create(instar, tmp_path, request, args):
    expected, actual = tl.run_both_on_copies(instar, args, [], tmp_path)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / "a.vdi", tmp_path / "instar" / "a.vdi"
    assert a.exists() == b.exists()
    if a.exists():
        # The map of the largest is 2 GiB: compared in chunks, the header's UUIDs masked.
        size = a.stat().st_size
        assert size == b.stat().st_size, "a.vdi: lengths differ"
        with open(a, "rb") as fa, open(b, "rb") as fb:
            for off in range(0, size, 4 << 20):
                ca, cb = fa.read(4 << 20), fb.read(4 << 20)
                if off == 0:
                    ca, cb = mask_uuids(ca), mask_uuids(cb)
                assert ca == cb, f"a.vdi differs at {off:#x} beyond the UUIDs"
        assert _layout(a) == _layout(b), "a.vdi: host data/hole layout differs"
        h = b.read_bytes()[:512]
        if len(h) == 512 and not err_case:
            # instar's UUIDs are random version 4 ones, stored as qemu_uuid_bswap() stores them
            for base in (392, 408):
                assert h[base + 7] >> 4 == 4 and h[base + 8] >> 6 == 2, h[base:base + 16].hex()
            assert h[392:408] != h[408:424]


# ---- bench -w on vdi: one request at a time (-d 1), the image bytes as qemu-img's ------------------
BENCH = []
for _sub in ["off", "on"]:
    for _cid, _a in [("seq", ["-c", "40", "-s", "64k", "-S", "300k"]),
                     ("big", ["-c", "6", "-s", "3M", "-o", "1M"]),
                     ("unaligned", ["-c", "9", "-s", "1000k", "-S", "1500k", "-o", "7k"]),
                     ("flush", ["-c", "20", "-s", "4k", "-S", "1M", "--flush-interval=3"])]:
        BENCH.append(pytest.param(_sub, _a, id=f"static-{_sub}-{_cid}"))


@pytest.mark.parametrize("sub,opts", BENCH)
def test_vdi_bench_write(instar, tmp_path, sub, opts):
    src = tmp_path / "w.vdi"
    tl.qemu_img("create", "-q", "-f", "vdi", "-o", f"static={sub}", str(src), "20M")
    _qio(src, "write -P 0x11 0 3M", "write -P 0x22 9M 4k")
    argv = ["bench", "-w", "-d", "1", "-f", "vdi", *opts, "w.vdi"]
    expected, actual = tl.run_both_on_copies(instar, argv, [src], tmp_path)
    strip = lambda r: b"".join(x for x in r.stdout.splitlines(True) if not x.startswith(b"Run completed"))
    assert (actual.returncode, strip(actual), actual.stderr) == (expected.returncode, strip(expected),
                                                                 expected.stderr)
    a, b = tmp_path / "oracle" / "w.vdi", tmp_path / "instar" / "w.vdi"
    assert tl.same_content(a, b), "w.vdi differs"
    assert _layout(a) == _layout(b), "w.vdi: host data/hole layout differs"


# bench -w on hostile images: an odd size, shared and out-of-range entries
# with a count ahead of the map, blocks past the end, a map cut short
@pytest.mark.parametrize("name", ["odd-size", "entries", "data-past-eof", "static-type", "type-bogus",
                                  "bmap-half-in-file", "data-in-headers"])
def test_vdi_bench_write_hostile(instar, vdidir, tmp_path, name):
    img = _img(name)
    argv = ["bench", "-w", "-d", "1", "-f", "vdi", "-c", "7", "-s", "64k", "-S", "700k", "-o", "3k", img]
    expected, actual = tl.run_both_on_copies(instar, argv, [vdidir / img], tmp_path)
    strip = lambda r: b"".join(x for x in r.stdout.splitlines(True) if not x.startswith(b"Run completed"))
    assert (actual.returncode, strip(actual), actual.stderr) == (expected.returncode, strip(expected),
                                                                 expected.stderr)
    a, b = tmp_path / "oracle" / img, tmp_path / "instar" / img
    assert tl.same_content(a, b), f"{img} differs"
    assert _layout(a) == _layout(b), f"{img}: host data/hole layout differs"


# resize: vdi has no bdrv_co_truncate; qemu-img's own message
@pytest.mark.parametrize("args", [["resize", "-f", "vdi", "@dyn", "200M"], ["resize", "@static", "+1M"]],
                         ids=["err-resize-dynamic", "err-resize-static-probed"])
def test_vdi_resize(instar, vdidir, tmp_path, args):
    argv = _resolve(args)
    expected, actual = tl.run_both_on_copies(instar, argv, [vdidir / a for a in argv if a.endswith(".vdi")],
                                             tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert expected.returncode == 1


# snapshot: vdi has none; qemu-img's message for each action
@pytest.mark.parametrize("args", [["snapshot", "-l", "@dyn"], ["snapshot", "-c", "s", "@dyn"],
                                  ["snapshot", "-d", "s", "-f", "vdi", "@dyn"], ["snapshot", "-a", "s", "@dyn"]],
                         ids=["list", "err-create", "err-delete", "err-apply"])
def test_vdi_snapshot(instar, vdidir, tmp_path, request, args):
    argv = _resolve(args)
    expected, actual = tl.run_both_on_copies(instar, argv, [vdidir / a for a in argv if a.endswith(".vdi")],
                                             tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert (expected.returncode != 0) == request.node.callspec.id.startswith("err-")
    assert tl.same_content(tmp_path / "oracle" / "dyn.vdi", tmp_path / "instar" / "dyn.vdi")


# bitmap: vdi has no persistent bitmaps (bdrv_can_store_new_dirty_bitmap without a hook);
# the node name qemu-img prints ends in two random digits
NODE_RE = re.compile(rb"#block1\d\d")


@pytest.mark.parametrize("args", [["bitmap", "--add", "@dyn", "b"], ["bitmap", "--remove", "-f", "vdi", "@dyn", "b"],
                                  ["bitmap", "--add", "-g", "1000", "@dyn", "b"],
                                  ["bitmap", "--add", "--enable", "@dyn", ""]],
                         ids=["err-add", "err-remove", "err-add-granularity", "err-add-empty-name"])
def test_vdi_bitmap(instar, vdidir, tmp_path, args):
    argv = _resolve(args)
    expected, actual = tl.run_both_on_copies(instar, argv, [vdidir / a for a in argv if a.endswith(".vdi")],
                                             tmp_path)
    expected = tl.Result(expected.argv, expected.returncode, expected.stdout,
                         NODE_RE.sub(b"#block1NN", expected.stderr))
    actual = tl.Result(actual.argv, actual.returncode, actual.stdout, NODE_RE.sub(b"#block1NN", actual.stderr))
    tl.assert_same(expected, actual, " ".join(argv))
    assert expected.returncode == 1
    assert tl.same_content(tmp_path / "oracle" / "dyn.vdi", tmp_path / "instar" / "dyn.vdi")
