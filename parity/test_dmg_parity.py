"""dmg parity (qemu-img 7.2 vs instar): the read-only Apple disk image (UDIF).

qemu-img cannot create dmg images, so every image is built field by field
below (block/dmg.c: the "koly" trailer in the last 515 bytes, the resource
fork or the XML plist, the "mish" blocks and their 40-byte chunk entries):
valid images of several shapes (resource fork and plist, several mish
blocks, data fork and mish offsets, odd file sizes, zero/raw/ignore/zlib
chunks, comments and last-entry markers, base64 with odd whitespace and
padding, an unsorted chunk table that qemu's binary search partly misses)
and hostile ones (truncations, every open check of the trailer and the
forks, wrapping counts, chunk sizes over qemu's limits, sizes past
BDRV_MAX_LENGTH, zlib bombs and corrupt streams, chunks past the end of
the file or past BDRV_MAX_LENGTH, and bzip2, lzfse and unknown chunks,
which Debian's qemu-img 7.2 cannot read: it warns at open and fails their
reads).  Every dmg open in Debian's qemu-img also prints the notice of the
missing dmg-bz2 and dmg-lzfse modules.  Read-only commands run on the same
files under both tools; convert and dd run on copies, outputs compared
byte for byte.  A case id starting with `err-` must make qemu-img fail.
"""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

import instar_testlib as tl

MiB = 1 << 20
UDZE, UDRW, UDIG, UDZO, UDBZ, ULFO, UDCM, UDLE = 0, 1, 2, 0x80000005, 0x80000006, 0x80000007, 0x7FFFFFFE, 0xFFFFFFFF


def mish(entries, first=0, data_offset=0, pad=0, magic=b"mish"):
    """A mish block: 204-byte header, then (type, sector, count, offset, length) entries."""
    h = bytearray(204)
    h[0:4] = magic
    struct.pack_into(">IQQQ", h, 4, 1, first, sum(e[2] for e in entries) & (2**64 - 1), data_offset)
    struct.pack_into(">I", h, 200, len(entries))
    b = bytes(h)
    for (t, sec, cnt, off, ln) in entries:
        b += struct.pack(">IIQQQQ", t, 0, sec, cnt, off, ln)
    return b + b"\0" * pad


def koly(data_off=0, rsrc=(0, 0), plist=(0, 0), sectors=0):
    k = bytearray(512)
    k[0:4] = b"koly"
    struct.pack_into(">III", k, 4, 4, 512, 1)
    struct.pack_into(">Q", k, 0x18, data_off)
    struct.pack_into(">QQ", k, 0x28, *rsrc)
    struct.pack_into(">QQ", k, 0xD8, *plist)
    struct.pack_into(">Q", k, 0x1EC, sectors)
    return bytes(k)


def rsrc_fork(mishes, data_off=256, count=None, lens=None):
    res = b""
    for i, m in enumerate(mishes):
        res += struct.pack(">I", len(m) if lens is None else lens[i]) + m
    hdr = bytearray(data_off)
    struct.pack_into(">I", hdr, 0, data_off)
    struct.pack_into(">I", hdr, 8, len(res) if count is None else count)
    return bytes(hdr) + res


def dmg_rsrc(data, mishes, sectors, data_fork=0, tail=b"", rsrc_len=None, **kw):
    """data fork, resource fork, trailer (then tail bytes)."""
    fork = rsrc_fork(mishes, **kw)
    ln = len(fork) if rsrc_len is None else rsrc_len
    return data + fork + koly(data_off=data_fork, rsrc=(len(data), ln), sectors=sectors) + tail


def plist_xml(mishes, width=52, sep="\n\t\t\t"):
    x = ('<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n'
         "<key>resource-fork</key>\n<dict>\n<key>blkx</key>\n<array>\n")
    for m in mishes:
        enc = base64.b64encode(m).decode()
        lines = sep.join(enc[i:i + width] for i in range(0, len(enc), width))
        x += f"<dict>\n<key>Data</key>\n<data>\n\t\t\t{lines}\n\t\t\t</data>\n</dict>\n"
    return (x + "</array>\n</dict>\n</dict>\n</plist>\n").encode()


def dmg_plist(data, mishes=(), sectors=0, xml=None, plist_len=None):
    x = plist_xml(mishes) if xml is None else xml
    ln = len(x) if plist_len is None else plist_len
    return data + x + koly(plist=(len(data), ln), sectors=sectors)


def pattern(seed, n):
    return bytes((seed * 7 + i * 13 + (i >> 9)) & 0xFF for i in range(n))


RAW = pattern(1, 4096)
Z16 = zlib.compress(pattern(2, 8192))
DATA = RAW + Z16
BASIC = [(UDRW, 0, 8, 0, 4096), (UDZE, 8, 8, 0, 0), (UDZO, 16, 16, 4096, len(Z16)), (UDIG, 32, 4, 0, 0),
         (UDCM, 36, 0, 0, 0), (UDLE, 36, 0, 0, 0)]
TWO_A = [(UDRW, 0, 8, 0, 4096)]
TWO_B = [(UDZO, 0, 16, 0, len(Z16))]  # relative to its mish block's first sector and data offset
BIG_Z = zlib.compress(pattern(3, 64 * 1024))

GOOD = {
    "rsrc-basic": dmg_rsrc(DATA, [mish(BASIC)], 36),
    "plist-basic": dmg_plist(DATA, [mish(BASIC)], 36),
    "rsrc-two-mish": dmg_rsrc(DATA, [mish(TWO_A), mish(TWO_B, first=8, data_offset=4096)], 24),
    "plist-two-mish": dmg_plist(DATA, [mish(TWO_A), b"not a mish block, skipped" * 10,
                                       mish(TWO_B, first=8, data_offset=4096)], 24),
    "plist-odd-base64": dmg_plist(DATA, sectors=36, xml=plist_xml([mish(BASIC)], width=7, sep=" \r\n!*\t")),
    "plist-short-data": dmg_plist(DATA, sectors=36, xml=plist_xml([b"abc", mish(BASIC)])),
    "data-fork-offset": dmg_rsrc(b"\xee" * 1000 + DATA, [mish(BASIC)], 36, data_fork=1000),
    "odd-file-size": dmg_rsrc(DATA, [mish(BASIC)], 36, tail=b"\x01\x02\x03"),
    "koly-then-300": dmg_rsrc(DATA, [mish(BASIC)], 36, tail=b"\0" * 300),
    "size-below-chunks": dmg_rsrc(DATA, [mish(BASIC)], 30),
    "raw-past-eof": dmg_rsrc(RAW, [mish([(UDRW, 0, 8, 1 << 40, 4096), (UDZE, 8, 8, 0, 0)])], 16),
    "size-0": dmg_rsrc(DATA, [mish(BASIC)], 0),
    "zlib-64k": dmg_rsrc(BIG_Z, [mish([(UDZO, 0, 128, 0, len(BIG_Z))])], 128),
    "huge-zero-chunk": dmg_rsrc(RAW, [mish([(UDRW, 0, 8, 0, 4096), (UDZE, 8, 1 << 40, 0, 0)])], 1 << 30),
    "raw-longer-than-sectors": dmg_rsrc(RAW * 2, [mish([(UDRW, 0, 8, 0, 8192)])], 8),
    "unsorted": dmg_rsrc(DATA, [mish([(UDZE, 16, 8, 0, 0), (UDRW, 0, 8, 0, 4096), (UDZO, 24, 16, 4096, len(Z16)),
                                      (UDZE, 8, 8, 0, 0)])], 40),
    "mish-small-skipped": dmg_rsrc(DATA, [b"mish" + b"\0" * 239, mish(BASIC)], 36),
    "bz2-lzfse-unknown": dmg_rsrc(RAW, [mish([(UDRW, 0, 8, 0, 4096), (UDBZ, 8, 8, 0, 10), (ULFO, 16, 8, 0, 10),
                                              (0x1234, 24, 8, 0, 0), (0x55, 32, 8, 0, 0), (UDBZ, 40, 8, 0, 0),
                                              (UDZE, 48, 8, 0, 0)])], 56),
    "unknown-first": dmg_rsrc(RAW, [mish([(0xABCDEF, 0, 8, 0, 0), (ULFO, 8, 8, 0, 10), (UDRW, 16, 8, 0, 4096)])],
                              24),
    "no-chunks-size-0": dmg_rsrc(RAW, [b"x" * 300], 0),
}
HOSTILE_ERR = {
    "tiny": b"koly" + b"\0" * 96,
    "no-koly": b"\0" * 4096,
    "koly-too-early": koly(sectors=1) + b"\0" * 1100,
    "data-fork-past-koly": DATA + koly(data_off=1 << 20, rsrc=(0, 100), sectors=8),
    "rsrc-at-koly": DATA + koly(rsrc=(len(DATA), 1), sectors=8),
    "rsrc-too-long": DATA + koly(rsrc=(100, len(DATA)), sectors=8),
    "plist-at-koly": DATA + koly(plist=(len(DATA) + 5, 1), sectors=8),
    "plist-too-long": DATA + koly(plist=(0, len(DATA) + 1), sectors=8),
    "plist-too-long-wraps": DATA + koly(plist=(10, (1 << 64) - 5), sectors=8),
    "sectors-negative": dmg_rsrc(DATA, [mish(BASIC)], 1 << 63),
    "no-forks": DATA + koly(sectors=8),
    "rsrc-data-offset-past": dmg_rsrc(DATA, [mish(BASIC)], 36, rsrc_len=300, data_off=400),
    "rsrc-count-0": dmg_rsrc(DATA, [mish(BASIC)], 36, count=0),
    "rsrc-count-past": dmg_rsrc(DATA, [mish(BASIC)], 36, count=2000),
    "resource-len-0": dmg_rsrc(DATA, [mish(BASIC)], 36, lens=[0]),
    "resource-len-past": dmg_rsrc(DATA, [mish(BASIC)], 36, lens=[5000]),
    "sectorcount-over": dmg_rsrc(DATA, [mish([(UDRW, 0, 8, 0, 4096), (UDZO, 8, 131073, 0, 10)])], 48),
    "sectorcount-raw-over": dmg_rsrc(DATA, [mish([(UDRW, 0, 1 << 40, 0, 4096)])], 48),
    "length-over": dmg_rsrc(DATA, [mish([(UDBZ, 0, 8, 0, 0), (UDZE, 0, 8, 0, 0), (UDZO, 8, 8, 0, 64 * MiB + 1)])],
                            48),
    "length-over-zero-chunk": dmg_rsrc(DATA, [mish([(UDZE, 0, 8, 0, 1 << 40)])], 8),
    "plist-no-end-tag": dmg_plist(DATA, sectors=8, xml=b"<plist><data>AAAA</dat></plist>"),
    "plist-empty-len": DATA + koly(plist=(0, 0), rsrc=(0, 0), sectors=8),
    "size-2-54": dmg_rsrc(DATA, [mish(BASIC)], 1 << 54),
    "size-2-54-less-1": dmg_rsrc(DATA, [mish(BASIC)], (1 << 54) - 1),
}
HOSTILE_READ = {
    "size-past-chunks": dmg_rsrc(DATA, [mish(BASIC)], 40),
    "bomb": dmg_rsrc(zlib.compress(b"\0" * (32 * MiB)), [mish([(UDZO, 0, 8, 0, 40000)])], 8),
    "short-zlib": dmg_rsrc(Z16, [mish([(UDZO, 0, 32, 0, len(Z16))])], 32),
    "corrupt-zlib": dmg_rsrc(b"\x78\x9c" + b"\xff" * 50, [mish([(UDZO, 0, 8, 0, 52)])], 8),
    "zlib-zero-length": dmg_rsrc(Z16, [mish([(UDZO, 0, 16, 0, 0)])], 16),
    "zlib-past-max": dmg_rsrc(Z16, [mish([(UDZO, 0, 16, (1 << 63) - 100, len(Z16))])], 16),
    "raw-past-max": dmg_rsrc(RAW, [mish([(UDRW, 0, 8, (1 << 63) - 100, 4096)])], 8),
    "bz2-read": dmg_rsrc(RAW, [mish([(UDRW, 0, 8, 0, 4096), (UDBZ, 8, 8, 0, 10)])], 16),
}
IMAGES = {**GOOD, **HOSTILE_ERR, **HOSTILE_READ}


@pytest.fixture(scope="module")
def ddir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dmg")
    (d / "empty.dmg").write_bytes(b"")
    for name, data in IMAGES.items():
        (d / f"{name}.dmg").write_bytes(data)
        (d / f"{name}.img").write_bytes(data)
    return d


CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


for _n in IMAGES:
    _e = "err-" if _n in HOSTILE_ERR else ""
    case(f"{_e}info-{_n}", "info", f"@{_n}")
    case(f"{_e}check-{_n}", "check", f"@{_n}")
for _n in list(GOOD) + list(HOSTILE_READ):
    case(f"info-json-{_n}", "info", "--output=json", f"@{_n}")
    case(f"{'' if _n.startswith(('size-0', 'no-chunks')) else 'err-'}map-{_n}", "map", f"@{_n}")
    case(f"map-json-{_n}", "map", "--output=json", f"@{_n}")
    case(f"measure-{_n}", "measure", "-O", "qcow2", f"@{_n}")
# the dmg probe looks only at the name: another name is raw, -f dmg opens it
case("info-named-img-raw", "info", "rsrc-basic.img")
case("info-named-img-f-dmg", "info", "-f", "dmg", "rsrc-basic.img")
case("err-map-named-img-f-dmg", "map", "-f", "dmg", "sectorcount-over.img")
for _n in GOOD:
    if _n not in ("bz2-lzfse-unknown", "unknown-first", "huge-zero-chunk", "unsorted"):
        case(f"compare-self-{_n}", "compare", f"@{_n}", f"@{_n}")
case("compare-rsrc-plist", "compare", "@rsrc-basic", "@plist-basic")
case("compare-two-mish", "compare", "@rsrc-two-mish", "@plist-two-mish")
case("compare-strict", "compare", "-s", "@rsrc-basic", "@odd-file-size")
case("err-compare-warnings-twice", "compare", "@bz2-lzfse-unknown", "@bz2-lzfse-unknown")
case("err-compare-bz2-read", "compare", "@bz2-read", "@bz2-read")
case("err-compare-bomb", "compare", "@bomb", "@rsrc-basic")
# an empty file probes as raw; as dmg it is too small (bdrv_getlength() is 0)
case("info-empty-probed-raw", "info", "empty.dmg")
case("err-info-f-dmg-empty", "info", "-f", "dmg", "empty.dmg")
case("info-image-opts", "info", "--image-opts", "driver=dmg,file.filename=@plist-basic")
case("err-create", "create", "-f", "dmg", "new.dmg", "1M")


def _resolve(args):
    return [a.split("@", 1)[0] + a.split("@", 1)[1] + ".dmg" if "@" in a else a for a in args]


@pytest.mark.parametrize("args", CASES)
def test_dmg_read(instar, ddir, request, args):
    argv = _resolve(args)
    expected, actual = tl.run_both(instar, argv, cwd=ddir)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    ok = {"check": (0, 63), "compare": (0, 1)}.get(argv[0], (0,))
    assert (expected.returncode not in ok) == err_case, "case id does not match qemu-img's outcome: " + \
        expected.describe()


OUT_CASES = []


def out_case(cid, out, *args):
    OUT_CASES.append(pytest.param(out, list(args), id=cid))


_READ_FAILS = set(HOSTILE_READ) | {"bz2-lzfse-unknown", "unknown-first", "unsorted"}
for _n in list(GOOD) + list(HOSTILE_READ):
    if _n in ("huge-zero-chunk",):
        continue
    _e = "err-" if _n in _READ_FAILS else ""
    out_case(f"{_e}convert-raw-{_n}", "out.raw", "convert", "-O", "raw", f"@{_n}", "out.raw")
    out_case(f"{_e}convert-qcow2-{_n}", "out.qcow2", "convert", "-f", "dmg", "-O", "qcow2", f"@{_n}", "out.qcow2")
    out_case(f"{_e}dd-{_n}", "out.raw", "dd", "-O", "raw", f"if=@{_n}", "of=out.raw", "bs=1536")
out_case("dd-skip-count", "out.raw", "dd", "if=@zlib-64k", "of=out.raw", "bs=4k", "skip=2", "count=9")
out_case("convert-compressed", "out.qcow2", "convert", "-c", "-O", "qcow2", "@rsrc-basic", "out.qcow2")
out_case("err-convert-O-dmg", "out.dmg", "convert", "-O", "dmg", "@rsrc-basic", "out.dmg")


@pytest.mark.parametrize("out,args", OUT_CASES)
def test_dmg_output(instar, ddir, tmp_path, request, out, args):
    argv = _resolve(args)
    inputs = sorted({ddir / a.rsplit("=", 1)[-1] for a in argv if a.endswith(".dmg")
                     and (ddir / a.rsplit("=", 1)[-1]).exists()})
    expected, actual = tl.run_both_on_copies(instar, argv, inputs, tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / out, tmp_path / "instar" / out
    assert a.exists() == b.exists()
    if a.exists():
        assert tl.same_content(a, b), f"{out} differs"


# ---- where qemu-img misbehaves, instar answers cleanly (docs/differences.md) ----------------
DIFFER = {
    # no chunk at all: qemu's search_chunk() reads the NULL table and qemu-img crashes
    "no-chunks": dmg_rsrc(RAW, [b"x" * 300], 16),
    # a raw chunk of 64 sectors storing 512 bytes: qemu serves the rest from past its buffer
    "raw-sectors-past-length": dmg_rsrc(RAW, [mish([(UDRW, 0, 64, 0, 512)])], 64),
}


@pytest.mark.parametrize("name", list(DIFFER))
def test_dmg_differs(instar, tmp_path, name):
    (tmp_path / "d.dmg").write_bytes(DIFFER[name])
    argv = ["convert", "-O", "raw", "d.dmg", "out.raw"]
    expected, actual = tl.run_both_on_copies(instar, argv, [tmp_path / "d.dmg"], tmp_path)
    out = tmp_path / "instar" / "out.raw"
    if name == "no-chunks":
        assert expected.returncode < 0 or expected.returncode > 128, expected.describe()
        assert actual.returncode == 1, actual.describe()
        assert actual.stderr.endswith(b": error while reading at byte 0: Input/output error\n"), actual.describe()
    else:
        assert actual.returncode == 0, actual.describe()
        assert out.read_bytes() == RAW[:512] + bytes(63 * 512)


# ---- read-write opens: bdrv_apply_auto_read_only() refuses them ("Image is read-only") -------
RW = [["resize", "@I", "2M"], ["snapshot", "-c", "s", "@I"], ["snapshot", "-a", "s", "@I"],
      ["amend", "-o", "size=2M", "@I"], ["commit", "@I"], ["rebase", "-u", "-b", "x", "-F", "raw", "@I"],
      ["bitmap", "--add", "@I", "b"], ["check", "-r", "all", "@I"], ["bench", "-w", "-c", "1", "@I"],
      ["dd", "-n", "-O", "raw", "if=@I", "of=@I"], ["snapshot", "-l", "@I"]]


@pytest.mark.parametrize("args", RW, ids=lambda a: "-".join(x.strip("-@=") for x in a[:2]))
def test_dmg_read_write(instar, ddir, tmp_path, args):
    argv = _resolve([a.replace("@I", "@rsrc-basic") for a in args])
    src = ddir / "rsrc-basic.dmg"
    expected, actual = tl.run_both_on_copies(instar, argv, [src], tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert (expected.returncode != 0) == (args[0] != "snapshot" or args[1] != "-l")
    assert tl.same_content(tmp_path / "oracle" / src.name, tmp_path / "instar" / src.name)
