"""vhdx parity (qemu-img 7.2 vs instar): the read side and the log replay.

Images are made at test time: with `qemu-img create -f vhdx` / `convert -O
vhdx` and `qemu-io` writes (dynamic and fixed, block sizes, log sizes), and
hostile ones built field by field by parity/vhdx_build.py (headers with bad
checksums or equal sequence numbers, bad logs, region tables and metadata
items qemu refuses, absurd block and sector sizes, BAT entries past the end
of the file or into the metadata, payload block states).  Read-only
commands run on the same files under both tools; convert, dd and
`check -r all` (which replays a log) run on copies, and their outputs
must be identical byte for byte, the headers' random GUIDs masked.  A case
id starting with `err-` must make qemu-img fail, every other must make it
succeed (a guard that the case tests what its name says).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import instar_testlib as tl
import vhdx_build as vb
from vhdx_build import MiB

KiB = 1024
PRESENT = 6


def _img(**kw):
    return vb.image(**kw)


def _blk(off, state=PRESENT):
    return off | state


# Blocks of 1 MiB: a 4 MiB disk, its data block at 4 MiB in a 5 MiB file.
SMALL = dict(size=4 * MiB, bs=MiB, length=5 * MiB)
_ONE = vb.log_entry(1, [("data", 4 * MiB + 4 * KiB, b"\xab" * 4096)])
HOSTILE = {
    "tiny": lambda: b"vhdx",
    "not-vhdx": lambda: b"vhdxfilf" + _img()[8:],
    "zeros": lambda: b"\0" * (4 * MiB),
    "headers-bad-crc": lambda: _img(hdrs=(vb.header(1, bad_crc=True), vb.header(2, bad_crc=True))),
    "header1-only": lambda: _img(hdrs=(vb.header(5), vb.header(9, bad_crc=True))),
    "header2-only": lambda: _img(hdrs=(vb.header(9, sig=b"xxxx"), vb.header(5))),
    "header-version-2": lambda: _img(hdrs=(vb.header(1, version=2), vb.header(2, version=2))),
    "headers-same-seq": lambda: _img(hdrs=(vb.header(7), vb.header(7))),
    "headers-same-seq-differ": lambda: _img(hdrs=(vb.header(7), vb.header(7, log_len=2 * MiB))),
    "header2-current-bad-log": lambda: _img(hdrs=(vb.header(1), vb.header(2, log_off=MiB + 512))),
    "log-offset-zero": lambda: _img(hdrs=(vb.header(1, log_off=0), vb.header(2, log_off=0))),
    "log-version-1": lambda: _img(hdrs=(vb.header(1, log_version=1), vb.header(2, log_version=1))),
    "log-length-odd": lambda: _img(hdrs=(vb.header(1, vb.LOG_GUID, log_len=MiB + 4096),
                                         vb.header(2, vb.LOG_GUID, log_len=MiB + 4096))),
    "log-length-odd-no-guid": lambda: _img(hdrs=(vb.header(1, log_len=MiB + 4096), vb.header(2, log_len=MiB + 4096))),
    "log-guid-empty-log": lambda: _img(hdrs=(vb.header(1, vb.LOG_GUID), vb.header(2, vb.LOG_GUID))),
    "log-bad-crc": lambda: _img(**SMALL, bat=[_blk(4 * MiB)], log=[(0, vb.log_entry(1, [("data", 4 * MiB, b"x" * 4096)],
                                                                                    bad_crc=True))]),
    "log-other-guid": lambda: _img(**SMALL, bat=[_blk(4 * MiB)],
                                   log=[(0, vb.log_entry(1, [("zero", 4 * MiB, 4096)], log_guid=b"\x77" * 16))]),
    "log-bad-desc": lambda: _img(**SMALL, log=[(0, vb.log_entry(1, [("zero", 4 * MiB + 1, 4096)]))]),
    "log-active": lambda: _img(**SMALL, bat=[_blk(4 * MiB)], log=[(0, _ONE)]),
    "log-zero-desc": lambda: _img(**SMALL, bat=[_blk(4 * MiB)],
                                  log=[(0, vb.log_entry(3, [("zero", 4 * MiB, 8192), ("data", 4 * MiB + 64 * KiB,
                                                                                         bytes(range(256)) * 16)]))]),
    "log-two-seqs": lambda: _img(**SMALL, bat=[_blk(4 * MiB)],
                                 log=[(0, vb.log_entry(5, [("data", 4 * MiB, b"\x01" * 4096)])),
                                      (64 * KiB, vb.log_entry(9, [("data", 4 * MiB, b"\x02" * 4096)])),
                                      (72 * KiB, vb.log_entry(10, [("data", 4 * MiB + 4096, b"\x03" * 4096)]))]),
    "log-grows-file": lambda: _img(**SMALL, bat=[_blk(4 * MiB)],
                                   log=[(0, vb.log_entry(1, [("data", 4 * MiB, b"\x05" * 4096)], last=6 * MiB + 1))]),
    "log-flushed-past-eof": lambda: _img(**SMALL, bat=[_blk(4 * MiB)],
                                         log=[(0, vb.log_entry(1, [("data", 4 * MiB, b"\x05" * 4096)],
                                                               flushed=64 * MiB))]),
    "region-bad-crc": lambda: _img()[:192 * KiB] + vb.region([], bad_crc=True) + _img()[256 * KiB:],
    "region-bad-sig": lambda: _img(regions=[]).replace(b"regi", b"rego", 1),
    "region-count-2048": lambda: _img()[:192 * KiB] + vb.region([(vb.BAT, 3 * MiB, MiB, 1), (vb.META, 2 * MiB, MiB, 1)],
                                                                count=2048) + _img()[256 * KiB:],
    "region-unknown-required": lambda: _img(regions=[(vb.BAT, 3 * MiB, MiB, 1), (vb.META, 2 * MiB, MiB, 1),
                                                     (b"\x99" * 16, 5 * MiB, MiB, 1)]),
    "region-unknown-optional": lambda: _img(regions=[(vb.BAT, 3 * MiB, MiB, 1), (vb.META, 2 * MiB, MiB, 1),
                                                     (b"\x99" * 16, 5 * MiB, MiB, 0)]),
    "region-bat-twice": lambda: _img(regions=[(vb.BAT, 3 * MiB, MiB, 1), (vb.META, 2 * MiB, MiB, 1),
                                              (vb.BAT, 5 * MiB, MiB, 1)]),
    "region-no-metadata": lambda: _img(regions=[(vb.BAT, 3 * MiB, MiB, 1)]),
    "region-overlap": lambda: _img(regions=[(vb.BAT, 3 * MiB, MiB, 1), (vb.META, 2 * MiB, 2 * MiB, 1)]),
    "region-overlaps-log": lambda: _img(regions=[(vb.BAT, 3 * MiB, MiB, 1), (vb.META, MiB + 4096, MiB, 1)]),
    "region-far": lambda: _img(regions=[(vb.BAT, 1 << 62, MiB, 1), (vb.META, 2 * MiB, MiB, 1)]),
    "meta-bad-sig": lambda: _img(meta=vb.metadata(vb.items(64 * MiB, 8 * MiB), sig=b"metadatx")),
    "meta-count-2048": lambda: _img(meta=vb.metadata(vb.items(64 * MiB, 8 * MiB), count=2048)),
    "meta-count-2047": lambda: _img(meta=vb.metadata(vb.items(64 * MiB, 8 * MiB), count=2047)),
    "meta-missing-size": lambda: _img(meta=vb.metadata(vb.items(64 * MiB, 8 * MiB)[:1] +
                                                       vb.items(64 * MiB, 8 * MiB)[2:])),
    "meta-twice": lambda: _img(meta=vb.metadata(vb.items(64 * MiB, 8 * MiB) + vb.items(64 * MiB, 8 * MiB)[:1])),
    "meta-unknown-required": lambda: _img(extra_meta=[(b"\x42" * 16, b"abcd", 4)]),
    "meta-unknown-optional": lambda: _img(extra_meta=[(b"\x42" * 16, b"abcd", 0)]),
    "parent-no-locator": lambda: _img(data_bits=2),
    "parent-locator": lambda: _img(data_bits=2, extra_meta=[(vb.PARENT, b"x" * 32, 6)]),
    "locator-no-parent": lambda: _img(extra_meta=[(vb.PARENT, b"x" * 32, 6)]),
    "block-size-0": lambda: _img(bs=0),
    "block-size-512k": lambda: _img(bs=512 * KiB),
    "block-size-3M": lambda: _img(bs=3 * MiB),
    "block-size-512M": lambda: _img(bs=512 * MiB),
    "block-size-256M": lambda: _img(bs=256 * MiB),
    "logical-4096": lambda: _img(lss=4096),
    "logical-0": lambda: _img(lss=0),
    "physical-odd": lambda: _img(pss=1000),
    "size-0": lambda: _img(size=0),
    "size-odd": lambda: _img(size=64 * MiB + 700),
    "size-bat-too-small": lambda: _img(size=64 * MiB, bat_len=8 * 7),
    "size-huge": lambda: _img(size=1 << 60, bs=MiB),
    "bat-past-eof": lambda: _img(bat=[_blk(100 * MiB)]),
    "bat-end-past-eof": lambda: _img(**SMALL, bat=[_blk(4 * MiB), 0, 0, _blk(5 * MiB)], tail=b"\x01" * (512 * KiB)),
    "bat-partial-last": lambda: _img(size=4 * MiB + 4 * KiB, bs=MiB, length=5 * MiB, bat=[0, 0, 0, 0, _blk(4 * MiB)]),
    "bat-overflow": lambda: _img(bat=[_blk(0xFFFFFFFFFFF00000)]),
    "bat-into-metadata": lambda: _img(**SMALL, bat=[_blk(2 * MiB)]),
    "bat-into-headers": lambda: _img(**SMALL, bat=[_blk(0)]),
    "bat-many-bad": lambda: _img(**SMALL, bat=[_blk(2 * MiB), _blk(40 * MiB), _blk(4 * MiB + 512 * KiB),
                                               _blk(1 << 63)]),
    "bat-states": lambda: _img(**SMALL, bat=[_blk(4 * MiB), 2, 3, 5]),
    "bat-undefined": lambda: _img(**SMALL, bat=[1, _blk(4 * MiB), 0, 0]),
    "bat-partial": lambda: _img(**SMALL, bat=[_blk(4 * MiB, 7)]),
    "bat-state-4": lambda: _img(**SMALL, bat=[0, _blk(4 * MiB, 4)]),
}
# The data block's bytes (4 MiB .. 5 MiB) for the small images.
_DATA = bytes(range(256)) * (MiB // 256)


def _hostile(name):
    """HOSTILE[name]'s bytes, built when the module's fixture writes them
    (not at import: every xdist worker imports every module)."""
    v = HOSTILE[name]()
    return v[:4 * MiB] + _DATA if len(v) == 5 * MiB else v


# QEMU 7.2 opens these and then indexes past its BAT (the 32-bit count wraps); instar refuses them.
DIFFERS = {
    # every sector of the log a one-sector entry, numbers rising all the way round: qemu-img's
    # search never ends (its inner loop passes the outer loop's start)
    "log-full-ring": lambda: _img(**SMALL, bat=[_blk(4 * MiB)],
                                          log=[(i * 4096, vb.log_entry(100 + i, [])) for i in range(256)]),
    "size-wraps": lambda: _img(size=((1 << 32) + 1) * MiB, bs=MiB),
    "size-wraps-bitmaps": lambda: _img(size=(4293918976 + 5) * MiB, bs=MiB),
}


def _write(path: Path, data: bytes):
    path.write_bytes(data)


def _qio(path, *cmds, fmt="vhdx"):
    args = []
    for c in cmds:
        args += ["-c", c]
    tl.qemu_io("-f", fmt, *args, str(path))


@pytest.fixture(scope="module")
def vhdxdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("vhdx")

    def q(*a):
        tl.qemu_img(*a, cwd=d)

    q("create", "-q", "-f", "vhdx", "dyn.vhdx", "64M")
    _qio(d / "dyn.vhdx", "write -P 0x11 0 64k", "write -P 0x22 9M 2M", "write -z 20M 1M",
         "write -P 0x33 63M 512")
    q("create", "-q", "-f", "vhdx", "-o", "block_size=1M", "bs1m.vhdx", "10M")
    _qio(d / "bs1m.vhdx", "write -P 0x44 1M 4k", "write -P 0x45 5M 1M")
    q("create", "-q", "-f", "vhdx", "-o", "subformat=fixed,block_size=1M", "fixed.vhdx", "6M")
    _qio(d / "fixed.vhdx", "write -P 0x55 0 4k", "write -P 0x56 3M 1M")
    q("create", "-q", "-f", "vhdx", "-o", "log_size=2M,block_state_zero=off", "log2m.vhdx", "20M")
    _qio(d / "log2m.vhdx", "write -P 0x66 1M 64k")
    q("create", "-q", "-f", "vhdx", "empty.vhdx", "1G")
    q("create", "-q", "-f", "vhdx", "odd.vhdx", "1000000")
    q("create", "-q", "-f", "qcow2", "src.qcow2", "7M")
    _qio(d / "src.qcow2", "write -P 0x77 0 1M", "write -z 2M 1M", "write -P 0x78 4095k 2k", fmt="qcow2")
    q("create", "-q", "-f", "raw", "small.raw", "4M")
    _qio(d / "small.raw", "write -P 0x79 1M 4k", "write -P 0x7a 3M 1M", fmt="raw")
    q("convert", "-O", "vhdx", "src.qcow2", "conv.vhdx")
    # 140 blocks of 1 MiB written: their log entries go round a 1 MiB log
    q("create", "-q", "-f", "qcow2", "many.qcow2", "140M")
    _qio(d / "many.qcow2", *[f"write -P {i % 250 + 1} {i}M 4k" for i in range(140)], fmt="qcow2")
    q("convert", "-O", "vhdx", "-o", "subformat=fixed,block_size=2M", "src.qcow2", "conv-fixed.vhdx")
    for name in HOSTILE:
        _write(d / f"h-{name}.vhdx", _hostile(name))
    for name, make in DIFFERS.items():
        _write(d / f"h-{name}.vhdx", make())
    return d


GOOD = ["dyn", "bs1m", "fixed", "log2m", "empty", "odd", "conv", "conv-fixed"]
HOSTILE_OK = ["header1-only", "header2-only", "headers-same-seq", "log-guid-empty-log", "log-bad-crc",
              "log-other-guid", "region-unknown-optional", "region-far", "meta-count-2047",
              "meta-unknown-optional", "block-size-256M", "physical-odd", "size-odd", "bat-partial-last",
              "bat-into-headers", "bat-states", "bat-undefined", "bat-partial", "bat-state-4"]
# Logs to replay (a read-only open refuses them; check -r all replays).
LOGS = ["log-active", "log-zero-desc", "log-two-seqs", "log-grows-file"]
HOSTILE_ERR = [n for n in HOSTILE if n not in HOSTILE_OK]
# Reads of these fail (a partially present block, an unknown state).
READ_ERR = {"bat-partial", "bat-state-4"}


def _name(n):
    if n in ("src", "many"):
        return f"{n}.qcow2"
    if n == "small":
        return "small.raw"
    return f"{n}.vhdx" if n in GOOD else f"h-{n}.vhdx"


CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


for _n in GOOD + list(HOSTILE):
    case(f"{'err-' if _n in HOSTILE_ERR else ''}info-{_n}", "info", "-f", "vhdx", f"@{_n}")
for _n in HOSTILE_ERR:
    case(f"err-check-{_n}" if _n not in ("bat-past-eof", "bat-end-past-eof", "bat-overflow",
                                         "bat-into-metadata", "bat-many-bad") else f"check-{_n}",
         "check", "-f", "vhdx", f"@{_n}")
for _n in GOOD + HOSTILE_OK:
    case(f"info-json-{_n}", "info", "--output=json", "-f", "vhdx", f"@{_n}")
    case(f"err-map-{_n}", "map", "-f", "vhdx", f"@{_n}")
    case(f"map-json-{_n}", "map", "--output=json", "-f", "vhdx", f"@{_n}")
    case(f"check-{_n}", "check", "-f", "vhdx", f"@{_n}")
    case(f"check-json-{_n}", "check", "--output=json", "-f", "vhdx", f"@{_n}")
    case(f"measure-qcow2-{_n}", "measure", "-f", "vhdx", "-O", "qcow2", f"@{_n}")
for _n in ["bat-past-eof", "bat-many-bad"]:
    case(f"check-json-{_n}", "check", "--output=json", "-f", "vhdx", f"@{_n}")
for _n in ["dyn", "fixed", "log-active"]:
    _e = "err-" if _n in HOSTILE_ERR else ""
    case(f"{_e}info-probed-{_n}", "info", f"@{_n}")
    case(f"{_e}check-probed-{_n}", "check", f"@{_n}")
case("info-image-opts", "info", "--image-opts", "driver=vhdx,file.filename=@dyn")
case("err-info-image-opts-bogus", "info", "--image-opts", "driver=vhdx,bogus=1,file.filename=@dyn")
case("measure-raw", "measure", "-f", "vhdx", "-O", "raw", "@dyn")
case("measure-json", "measure", "--output=json", "-f", "vhdx", "-O", "qcow2", "@conv")
case("compare-same", "compare", "-f", "vhdx", "-F", "vhdx", "@dyn", "@dyn")
case("compare-conv-src", "compare", "-f", "vhdx", "-F", "qcow2", "@conv", "@src")
case("compare-conv-fixed", "compare", "-f", "vhdx", "-F", "vhdx", "@conv", "@conv-fixed")
case("compare-probed", "compare", "@conv", "@src")
case("compare-differ", "compare", "-f", "vhdx", "-F", "vhdx", "@dyn", "@empty")
case("compare-strict-differ-size", "compare", "-s", "-f", "vhdx", "-F", "vhdx", "@conv", "@odd")
case("compare-states", "compare", "-f", "vhdx", "-F", "vhdx", "@bat-states", "@bat-undefined")
case("err-compare-partial", "compare", "-f", "vhdx", "-F", "vhdx", "@bat-partial", "@bat-states")


def _resolve(args):
    out = []
    for a in args:
        if "@" in a:
            pre, name = a.split("@", 1)
            a = pre + _name(name)
        out.append(a)
    return out


@pytest.mark.parametrize("args", CASES)
def test_vhdx_read(instar, vhdxdir, request, args):
    argv = _resolve(args)
    expected, actual = tl.run_both(instar, argv, cwd=vhdxdir)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    ok = {"check": (0, 2, 63), "compare": (0, 1)}.get(argv[0], (0,))
    assert (expected.returncode not in ok) == err_case, "case id does not match qemu-img's outcome: " + \
        expected.describe()


# ---- commands that write an output: convert, dd, check -r ---------------------------------------
OUT_CASES = []


def out_case(cid, out, *args):
    OUT_CASES.append(pytest.param(out, list(args), id=cid))


for _n in ["dyn", "bs1m", "fixed", "conv", "conv-fixed", "odd", "size-odd", "bat-states", "bat-undefined",
           "bat-into-headers", "bat-partial-last", "bat-partial"]:
    _e = "err-" if _n in READ_ERR else ""
    out_case(f"{_e}convert-raw-{_n}", "out.raw", "convert", "-f", "vhdx", "-O", "raw", f"@{_n}", "out.raw")
    out_case(f"{_e}convert-qcow2-{_n}", "out.qcow2", "convert", "-f", "vhdx", "-O", "qcow2", f"@{_n}",
             "out.qcow2")
    out_case(f"{_e}dd-{_n}", "out.raw", "dd", "-f", "vhdx", "-O", "raw", f"if=@{_n}", "of=out.raw", "bs=64k")
out_case("convert-probed", "out.raw", "convert", "-O", "raw", "@conv", "out.raw")
out_case("convert-qcow2-compressed", "out.qcow2", "convert", "-c", "-f", "vhdx", "-O", "qcow2", "@dyn",
         "out.qcow2")
out_case("dd-skip-count", "out.raw", "dd", "-f", "vhdx", "-O", "raw", "if=@dyn", "of=out.raw", "bs=1M",
         "skip=1", "count=4")
for _n in LOGS + ["dyn", "log-flushed-past-eof", "log-bad-desc", "bat-past-eof", "log-bad-crc"]:
    _e = "err-" if _n in ("log-flushed-past-eof", "log-bad-desc") else ""
    _img_name = _name(_n)
    out_case(f"{_e}check-r-all-{_n}", _img_name, "check", "-r", "all", "-f", "vhdx", f"@{_n}")
    out_case(f"{_e}check-r-leaks-json-{_n}", _img_name, "check", "-r", "leaks", "--output=json", f"@{_n}")
for _n in LOGS:
    out_case(f"err-convert-{_n}", "out.raw", "convert", "-O", "raw", f"@{_n}", "out.raw")


def _mask_guids(data: bytes) -> bytes:
    """The headers' checksum, file and data write GUIDs are random in qemu-img's replay."""
    b = bytearray(data)
    for h in (64 * KiB, 128 * KiB):
        if len(b) >= h + 48:
            b[h + 4:h + 8] = b"\0" * 4
            b[h + 16:h + 48] = b"\0" * 32
    return bytes(b)


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
def test_vhdx_output(instar, vhdxdir, tmp_path, request, out, args):
    argv = _resolve(args)
    inputs = sorted({vhdxdir / a.rsplit("=", 1)[-1] for a in argv if a.endswith((".vhdx", ".qcow2"))
                     and (vhdxdir / a.rsplit("=", 1)[-1]).exists()})
    expected, actual = tl.run_both_on_copies(instar, argv, inputs, tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    ok = (0, 2) if argv[0] == "check" else (0,)
    assert (expected.returncode not in ok) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / out, tmp_path / "instar" / out
    assert a.exists() == b.exists()
    if a.exists():
        assert _mask_guids(a.read_bytes()) == _mask_guids(b.read_bytes()), f"{out} differs"
        if argv[0] != "check":
            assert _layout(a) == _layout(b), f"{out}: host data/hole layout differs"


def test_vhdx_replay_guids(instar, vhdxdir, tmp_path):
    """A replay writes new random GUIDs: the two data write GUIDs differ, and both headers
    carry the session's file write GUID, with valid checksums and rising numbers."""
    argv = ["check", "-r", "all", "-f", "vhdx", _name("log-active")]
    _, actual = tl.run_both_on_copies(instar, argv, [vhdxdir / _name("log-active")], tmp_path)
    assert actual.returncode == 0, actual.describe()
    data = (tmp_path / "instar" / _name("log-active")).read_bytes()
    h1, h2 = data[64 * KiB:64 * KiB + 4096], data[128 * KiB:128 * KiB + 4096]
    for h in (h1, h2):
        assert vb.crc32c(h[:4] + b"\0" * 4 + h[8:]) == struct.unpack_from("<I", h, 4)[0]
        assert h[48:64] == b"\0" * 16
        assert h[16:32] != b"\x11" * 16
    assert h1[16:32] == h2[16:32] and h1[32:48] != h2[32:48]
    assert {struct.unpack_from("<Q", h, 8)[0] for h in (h1, h2)} == {5, 6}


@pytest.mark.parametrize("name", ["size-wraps", "size-wraps-bitmaps"])
@pytest.mark.parametrize("sub", ["info", "map", "check"])
def test_vhdx_bat_count_wraps(instar, vhdxdir, sub, name):
    """qemu-img 7.2 counts the BAT in 32 bits: a virtual size whose count wraps opens there
    (and its reads index past the table, heap out of bounds).  instar refuses it with the
    message of a BAT too small (docs/differences.md); qemu-img is run on info only."""
    argv = [sub, "-f", "vhdx", _name(name)]
    if sub == "info":
        expected = tl.run_oracle(argv, cwd=vhdxdir)
        assert expected.returncode == 0, expected.describe()
    actual = instar.run(argv, cwd=vhdxdir)
    assert actual.returncode == 1, actual.describe()
    assert actual.stderr.decode() == f"qemu-img: Could not open '{argv[-1]}': Could not open '{argv[-1]}': " \
        "Invalid argument\n" or sub == "map"
    assert b"Invalid argument" in actual.stderr


@pytest.mark.parametrize("sub", [["info"], ["check"], ["check", "-r", "all"], ["convert", "-O", "raw"]])
def test_vhdx_log_search_ends(instar, vhdxdir, tmp_path, sub):
    """A log whose sequence runs all the way round: qemu-img 7.2's search loops for ever
    (not run here); instar's ends with the error of an invalid log (docs/differences.md)."""
    src = vhdxdir / _name("log-full-ring")
    img = tmp_path / src.name
    img.write_bytes(src.read_bytes())
    argv = [*sub, "-f", "vhdx", img.name] + (["out.raw"] if sub[0] == "convert" else [])
    actual = instar.run(argv, cwd=tmp_path, timeout=60)
    assert actual.returncode == 1, actual.describe()
    assert actual.stderr.decode() == f"qemu-img: Could not open '{img.name}': Could not open '{img.name}': " \
        "Invalid argument\n", actual.describe()
    assert tl.same_content(img, src)


# ---- create -f vhdx ---------------------------------------------------------------------------
CREATE_CASES = []


def create_case(cid, *args):
    CREATE_CASES.append(pytest.param(list(args), id=cid))


for _s in ["0", "512", "1000", "3M", "1G", "2G", "200G", "64T"]:
    create_case(f"dynamic-{_s}", "create", "-f", "vhdx", "a.vhdx", _s)
for _s in ["0", "1000", "3M", "20M"]:
    create_case(f"fixed-{_s}", "create", "-f", "vhdx", "-o", "subformat=fixed", "a.vhdx", _s)
    create_case(f"fixed-nozero-{_s}", "create", "-f", "vhdx", "-o",
                "subformat=fixed,block_state_zero=off,block_size=1M", "a.vhdx", _s)
for _o in ["block_size=1M", "block_size=1000", "block_size=300M", "block_size=256M", "block_size=0",
           "log_size=1500k", "log_size=8M", "block_state_zero=off", "block_state_zero=on",
           "subformat=dynamic", "preallocation=full,nocow=on", "size=5M"]:
    create_case(f"opt-{_o}", "create", "-f", "vhdx", "-o", _o, "a.vhdx", *([] if _o == "size=5M" else ["7M"]))
create_case("quiet", "create", "-q", "-f", "vhdx", "a.vhdx", "5M")
create_case("help", "create", "-f", "vhdx", "-o", "help")
for _cid, _args in [("subformat-bogus", ["-o", "subformat=bogus", "a.vhdx", "1M"]),
                    ("too-large", ["a.vhdx", "65T"]),
                    ("block-size-3M", ["-o", "block_size=3M", "a.vhdx", "1M"]),
                    ("log-size-0", ["-o", "log_size=0", "a.vhdx", "1M"]),
                    ("log-size-5G", ["-o", "log_size=5G", "a.vhdx", "1M"]),
                    ("zero-bogus", ["-o", "block_state_zero=maybe", "a.vhdx", "1M"]),
                    ("preallocation-metadata", ["-o", "preallocation=metadata", "a.vhdx", "1M"]),
                    ("cluster-size", ["-o", "cluster_size=4k", "a.vhdx", "1M"]),
                    ("backing", ["-b", "x.qcow2", "-F", "qcow2", "a.vhdx", "1M"]),
                    ("no-size", ["a.vhdx"])]:
    create_case(f"err-{_cid}", "create", "-f", "vhdx", *_args)


def _mask_create(data: bytes) -> bytes:
    """The random parts: both headers' sequence number, checksum and GUIDs, the page 83 data."""
    b = bytearray(_mask_guids(data))
    for h in (64 * KiB, 128 * KiB):
        if len(b) >= h + 16:
            b[h + 8:h + 16] = b"\0" * 8
    if len(b) >= 192 * KiB + 80 and b[192 * KiB:192 * KiB + 4] == b"regi":
        meta = struct.unpack_from("<Q", b, 192 * KiB + 64)[0]
        if len(b) >= meta + 64 * KiB + 32:
            b[meta + 64 * KiB + 16:meta + 64 * KiB + 32] = b"\0" * 16
    return bytes(b)


@pytest.mark.parametrize("args", CREATE_CASES)
def test_vhdx_create(instar, tmp_path, request, args):
    expected, actual = tl.run_both_on_copies(instar, args, [], tmp_path)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / "a.vhdx", tmp_path / "instar" / "a.vhdx"
    assert a.exists() == b.exists()
    if not a.exists():
        return
    size = a.stat().st_size
    assert size == b.stat().st_size, "a.vhdx: lengths differ"
    page83 = None
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for off in range(0, size, 4 << 20):
            ca, cb = fa.read(4 << 20), fb.read(4 << 20)
            if off == 0:
                if ca[192 * KiB:192 * KiB + 4] == b"regi":
                    page83 = struct.unpack_from("<Q", ca, 192 * KiB + 64)[0] + 64 * KiB + 16
                ca, cb = _mask_create(ca), _mask_create(cb)
            if page83 is not None and off <= page83 < off + len(ca):
                r = page83 - off
                ca, cb = ca[:r] + bytes(16) + ca[r + 16:], cb[:r] + bytes(16) + cb[r + 16:]
            assert ca == cb, f"a.vhdx differs at {off:#x} beyond the random fields"
    assert _layout(a) == _layout(b), "a.vhdx: host data/hole layout differs"
    if not err_case and size:
        # instar's own headers: valid checksums, numbers n and n + 1, its GUIDs version 4
        d = b.read_bytes()[:256 * KiB]
        h1, h2 = d[64 * KiB:64 * KiB + 4096], d[128 * KiB:128 * KiB + 4096]
        for h in (h1, h2):
            assert vb.crc32c(h[:4] + b"\0" * 4 + h[8:]) == struct.unpack_from("<I", h, 4)[0]
            assert h[16 + 6] >> 4 == 4 and h[16 + 8] >> 6 == 2
        assert struct.unpack_from("<Q", h2, 8)[0] == struct.unpack_from("<Q", h1, 8)[0] + 1
        r = instar.run(["check", str(b)])
        assert r.returncode == 0, r.describe()


# ---- convert -O vhdx, dd -O vhdx: writes through the log ----------------------------------------
WRITE_CASES = []


def write_case(cid, pre, *args):
    """pre: qemu-img create arguments making an existing out.vhdx first (for -n), or None."""
    WRITE_CASES.append(pytest.param(pre, list(args), id=cid))


for _cid, _o in [("dynamic", []), ("fixed", ["-o", "subformat=fixed"]),
                 ("fixed-nozero", ["-o", "subformat=fixed,block_state_zero=off"]),
                 ("nozero", ["-o", "block_state_zero=off"]),
                 ("bs1m", ["-o", "block_size=1M"]),
                 ("bs1m-log2m", ["-o", "block_size=1M,log_size=2M"]),
                 ("fixed-bs2m", ["-o", "subformat=fixed,block_size=2M"]),
                 ("bs256m", ["-o", "block_size=256M"]),
                 ("sparse-0", ["-S", "0", "-o", "block_size=1M"]),
                 ("sparse-1m", ["-S", "1M"]),
                 ("progress", ["-p"]),
                 ("quiet", ["-q"])]:
    write_case(f"convert-{_cid}", None, "convert", "-O", "vhdx", *_o, "@src", "out.vhdx")
write_case("convert-from-vhdx", None, "convert", "-f", "vhdx", "-O", "vhdx", "@dyn", "out.vhdx")
write_case("convert-from-fixed", None, "convert", "-O", "vhdx", "-o", "subformat=fixed", "@fixed", "out.vhdx")
write_case("convert-odd-size", None, "convert", "-O", "vhdx", "@odd", "out.vhdx")
write_case("convert-log-wraps", None, "convert", "-O", "vhdx", "-o", "block_size=1M", "@many", "out.vhdx")
write_case("convert-n", ["-o", "block_size=1M", "out.vhdx", "7M"],
           "convert", "-n", "-O", "vhdx", "@src", "out.vhdx")
write_case("convert-n-fixed", ["-o", "subformat=fixed,block_state_zero=off", "out.vhdx", "8M"],
           "convert", "-n", "-O", "vhdx", "@src", "out.vhdx")
write_case("convert-n-target-is-zero", ["out.vhdx", "7M"],
           "convert", "-n", "--target-is-zero", "-O", "vhdx", "@src", "out.vhdx")
write_case("err-convert-n-small", ["out.vhdx", "1M"], "convert", "-n", "-O", "vhdx", "@src", "out.vhdx")
write_case("err-convert-bad-block-size", None, "convert", "-O", "vhdx", "-o", "block_size=3M", "@src",
           "out.vhdx")
# The target's log replayed by the read-write open, then its numbers go on (a small source).
for _n in ["log-active", "log-two-seqs"]:
    write_case(f"convert-n-{_n}", None, "convert", "-n", "-O", "vhdx", "@small", f"@{_n}")
write_case("dd", None, "dd", "-O", "vhdx", "if=@src", "of=out.vhdx", "bs=64k")
write_case("dd-unaligned", None, "dd", "-O", "vhdx", "if=@src", "of=out.vhdx", "bs=1000", "skip=3",
           "count=5000")
write_case("dd-from-vhdx", None, "dd", "-f", "vhdx", "-O", "vhdx", "if=@dyn", "of=out.vhdx", "bs=1M",
           "count=12")


def _mask_write(data: bytes) -> bytes:
    """The random parts of a written image: the headers' sequence numbers, checksums and GUIDs,
    the page 83 data, and each log entry's checksum, log GUID and the uninitialised rest of its
    header sector (docs/differences.md)."""
    b = bytearray(_mask_create(data))
    if len(b) < 64 * KiB + 80:
        return bytes(b)
    log_length, log_offset = struct.unpack_from("<IQ", b, 64 * KiB + 68)
    for off in range(log_offset, min(log_offset + log_length, len(b)), 4096):
        if b[off:off + 4] == b"loge":
            b[off + 4:off + 8] = b"\0" * 4
            b[off + 32:off + 48] = b"\0" * 16
            # qemu leaves the header sector past the descriptors uninitialised (heap bytes)
            end = 64 + 32 * struct.unpack_from("<I", b, off + 24)[0]
            if end < 4096:
                b[off + end:off + 4096] = b"\0" * (4096 - end)
    return bytes(b)


@pytest.mark.parametrize("pre,args", WRITE_CASES)
def test_vhdx_write(instar, vhdxdir, tmp_path, request, pre, args):
    argv = _resolve(args)
    inputs = sorted({vhdxdir / a.rsplit("=", 1)[-1] for a in argv
                     if (vhdxdir / a.rsplit("=", 1)[-1]).is_file()})
    if pre:
        tl.qemu_img("create", "-q", "-f", "vhdx", *pre, cwd=vhdxdir.parent)
        made = vhdxdir.parent / "out.vhdx"
        inputs.append(made)
    try:
        expected, actual = tl.run_both_on_copies(instar, argv, inputs, tmp_path)
    finally:
        if pre:
            made.unlink()
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    out = argv[-1].rsplit("=", 1)[-1]
    a, b = tmp_path / "oracle" / out, tmp_path / "instar" / out
    assert a.exists() == b.exists()
    if not a.exists():
        return
    assert a.stat().st_size == b.stat().st_size, "out.vhdx: lengths differ"
    assert _mask_write(a.read_bytes()) == _mask_write(b.read_bytes()), "out.vhdx differs beyond the random fields"
    assert _layout(a) == _layout(b), "out.vhdx: host data/hole layout differs"
    if not err_case:
        r = tl.qemu_img("check", "-f", "vhdx", str(b), check=False)
        assert r.returncode == 0, r.describe()
        h1, h2 = (b.read_bytes()[o:o + 4096] for o in (64 * KiB, 128 * KiB))
        for h in (h1, h2):
            assert vb.crc32c(h[:4] + b"\0" * 4 + h[8:]) == struct.unpack_from("<I", h, 4)[0]
            assert h[48:64] == b"\0" * 16  # the log is empty
        assert abs(struct.unpack_from("<Q", h1, 8)[0] - struct.unpack_from("<Q", h2, 8)[0]) == 1
