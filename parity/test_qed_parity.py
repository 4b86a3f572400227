"""qed parity (qemu-img 7.2 vs instar): the read side, check and the write side.

Every image is made at test time: with `qemu-img create -f qed` /
`convert -O qed` and `qemu-io` writes (data, zero clusters, a backing
file in raw and in qcow2, an image left with the need-check flag), and
hostile ones written field by field below (bad magic, unknown features,
absurd cluster, table and image sizes, tables outside the file, backing
file names out of the header, L1/L2 entries pointing anywhere...).
Read-only commands (info, map, compare, check, measure) run on the same
files under both tools; convert, dd and check -r run on copies, and
their outputs must be identical byte for byte.  A case id starting with
`err-` must make qemu-img fail, every other must make it succeed.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

import instar_testlib as tl

KiB = 1 << 10
MiB = 1 << 20
MAGIC = 0x00444551


# ---- images ------------------------------------------------------------------------------
def hdr(cs=4096, ts=2, hs=1, features=0, compat=0, autoclear=0, l1=4096, size=4 * MiB, bfo=0, bfs=0):
    """A QED header (docs/interop/qed_spec.txt), little-endian."""
    return struct.pack("<IIIIQQQQQII", MAGIC, cs, ts, hs, features, compat, autoclear, l1, size, bfo, bfs)


def table(entries, cs=4096, ts=2):
    e = list(entries) + [0] * (cs * ts // 8 - len(entries))
    return struct.pack(f"<{len(e)}Q", *e)


def image(h=None, l1=(), l2=None, data=b"", cs=4096, ts=2, name=b""):
    """Header cluster (+ name), L1 at cluster 1, optional L2 after it, then data clusters."""
    h = h if h is not None else hdr(cs=cs, ts=ts)
    head = (h + name).ljust(cs, b"\0")
    out = head + table(l1, cs, ts)
    if l2 is not None:
        out += table(l2, cs, ts)
    return out + data


# cs 4096, ts 2: tables of 1024 entries (8 KiB); L1 at 4096..12287, L2 at 12288..20479,
# data clusters from 20480 (cluster 5).
L2 = 12288
D = 20480
_DATA = bytes(range(256)) * 16 * 4  # four clusters
HOSTILE = {
    "tiny": b"QED\0",
    "zeros": b"\0" * 4096,
    "features-unknown": hdr(features=0x18) + b"\0" * 4096,
    "cluster-size-0": hdr(cs=0) + b"\0" * 8192,
    "cluster-size-1000": hdr(cs=1000) + b"\0" * 8192,
    "cluster-size-2k": hdr(cs=2048) + b"\0" * 8192,
    "cluster-size-128M": hdr(cs=128 * MiB) + b"\0" * 8192,
    "table-size-0": image(hdr(ts=0)),
    "table-size-1": image(hdr(ts=1), ts=1),
    "table-size-3": image(hdr(ts=3), ts=3),
    "table-size-32": image(hdr(ts=32)),
    "image-size-odd": image(hdr(size=4 * MiB + 1)),
    "image-size-too-large": image(hdr(size=(1024 * 4096) * 1024 + 512)),
    "image-size-max": image(hdr(size=(1024 * 4096) * 1024)),
    "image-size-wraps": image(hdr(cs=64 * MiB, ts=16, size=1 << 63, l1=64 * MiB)),
    "l1-offset-0": image(hdr(l1=0)),
    "l1-offset-unaligned": image(hdr(l1=4097)),
    "l1-offset-past-eof": image(hdr(l1=1 << 20)),
    "l1-offset-wraps": image(hdr(l1=(1 << 64) - 4096)),
    "l1-last-cluster-past-eof": image()[:-4096],
    "backing-offset-invalid": image(hdr(features=1, bfo=64, bfs=4096 - 63)),
    "backing-offset-wraps": image(hdr(features=1, bfo=0xFFFFFFFF, bfs=2)),
    "backing-name-4096": (hdr(hs=3, features=1, bfo=64, bfs=4096, l1=3 * 4096) + b"x" * 4096).ljust(3 * 4096, b"\0")
    + table([]),
    "backing-name-4095": (hdr(hs=3, features=1, bfo=64, bfs=4095, l1=3 * 4096) + b"x" * 4095).ljust(3 * 4096, b"\0")
    + table([]),
    "backing-missing": image(hdr(features=1, bfo=64, bfs=9), name=b"nonexist\0"),
    "backing-self": image(hdr(features=1, bfo=64, bfs=18), name=b"h-backing-self.qed"),
    "backing-empty-name": image(hdr(features=1, bfo=64, bfs=0)),
    "backing-nul-inside": image(hdr(features=5, bfo=64, bfs=12), name=b"base.raw\0zzz"),
    "backing-no-flag": image(hdr(features=0, bfo=64, bfs=8), name=b"base.raw"),
    "l1-entry-invalid": image(l1=[12345]),
    "l1-entry-past-eof": image(l1=[1 << 30]),
    "l2-entry-past-eof": image(l1=[L2], l2=[D, 1 << 30], data=_DATA),
    "l2-entry-unaligned": image(l1=[L2], l2=[D + 1], data=_DATA),
    "l2-entry-in-header": image(l1=[L2], l2=[0, 4096 * 0 + 0, 2], data=_DATA),
    "l2-run-past-eof": image(l1=[L2], l2=[D + 3 * 4096, D + 4 * 4096, D + 5 * 4096], data=_DATA),
    "l2-duplicate": image(l1=[L2], l2=[D, D, D + 4096, 1, 1, 0, D + 2 * 4096], data=_DATA),
    "l2-is-l1": image(l1=[4096], data=_DATA),
    "l1-twice-same-l2": image(l1=[L2, L2], l2=[D], data=_DATA),
    "leaks": image(l1=[L2], l2=[D + 4096], data=_DATA),
    "need-check-leaks": image(hdr(features=2), l1=[L2], l2=[D + 4096], data=_DATA),
    "need-check-corrupt": image(hdr(features=2), l1=[L2, 777], l2=[D, 1 << 40], data=_DATA),
    "autoclear-compat": image(hdr(compat=3, autoclear=0xF0), l1=[L2], l2=[D], data=_DATA),
    "header-size-huge": b"",  # made sparse below
}


def _qio(path, *cmds, fmt="qed"):
    args = []
    for c in cmds:
        args += ["-c", c]
    tl.qemu_io("-f", fmt, *args, str(path))


@pytest.fixture(scope="module")
def qeddir(tmp_path_factory):
    d = tmp_path_factory.mktemp("qed")

    def q(*a):
        tl.qemu_img(*a, cwd=d)

    q("create", "-q", "-f", "raw", "base.raw", "6M")
    _qio(d / "base.raw", "write -P 0x0b 0 6M", fmt="raw")
    q("create", "-q", "-f", "qcow2", "base.qcow2", "3M")
    _qio(d / "base.qcow2", "write -P 0x0c 1M 1M", fmt="qcow2")
    q("create", "-q", "-f", "qed", "plain.qed", "100M")
    _qio(d / "plain.qed", "write -P 0x11 0 64k", "write -P 0x22 1M 2M", "write -z 10M 1M",
         "write -P 0x33 99M 512", "write -P 0x44 50M 4k")
    q("create", "-q", "-f", "qed", "-o", "cluster_size=4k,table_size=2", "small.qed", "3M")
    _qio(d / "small.qed", "write -P 0x55 4k 8k", "write -z 1M 64k", "write -P 0x56 2M 100k")
    q("create", "-q", "-f", "qed", "-o", "cluster_size=1M,table_size=16", "big.qed", "5G")
    _qio(d / "big.qed", "write -P 0x57 4G 1M", "write -P 0x58 3M 10k")
    q("create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", "over-raw.qed", "8M")
    _qio(d / "over-raw.qed", "write -P 0x66 64k 64k", "write -z 1M 128k", "write -P 0x67 5M 3k")
    q("create", "-q", "-f", "qed", "-b", "base.qcow2", "-F", "qcow2", "over-qcow2.qed", "4M")
    _qio(d / "over-qcow2.qed", "write -P 0x68 1536k 4k")
    q("create", "-q", "-f", "qed", "empty.qed", "0")
    q("create", "-q", "-f", "qed", "odd.qed", "1000001")
    q("create", "-q", "-f", "qcow2", "src.qcow2", "7M")
    _qio(d / "src.qcow2", "write -P 0x77 0 1M", "write -z 2M 1M", "write -P 0x78 4095k 2k", fmt="qcow2")
    q("convert", "-O", "qed", "src.qcow2", "conv.qed")
    # need-check left set: a copy of plain.qed with the flag on (as after a crash)
    b = bytearray((d / "small.qed").read_bytes())
    b[16] |= 2
    (d / "dirty.qed").write_bytes(b)
    for name, data in HOSTILE.items():
        (d / f"h-{name}.qed").write_bytes(data)
    # header_size 2^20 + 1 clusters of 4 KiB: past UINT32_MAX bytes (a sparse file)
    hs = (1 << 20) + 1
    with open(d / "h-header-size-huge.qed", "wb") as f:
        f.write(hdr(hs=hs, l1=hs * 4096))
        f.truncate(hs * 4096 + 4 * 4096)
    return d


GOOD = ["plain", "small", "big", "over-raw", "over-qcow2", "empty", "odd", "conv", "dirty"]
# opened by info -f qed (the others fail there)
HOSTILE_OK = ["image-size-max", "backing-empty-name", "backing-nul-inside", "backing-no-flag", "backing-missing",
              "backing-name-4095", "backing-self", "l1-entry-invalid", "l1-entry-past-eof", "l2-entry-past-eof",
              "l2-entry-unaligned", "l2-entry-in-header", "l2-run-past-eof", "l2-duplicate", "l2-is-l1",
              "l1-twice-same-l2", "leaks", "need-check-leaks", "need-check-corrupt", "autoclear-compat"]
HOSTILE_ERR = [n for n in HOSTILE if n not in HOSTILE_OK]
# the backing file cannot be opened: every command that opens the chain fails
CHAIN_FAILS = {"backing-missing", "backing-name-4095"}
# opened, but block status fails (an L1 or L2 entry is refused)
MAP_FAILS = CHAIN_FAILS | {"l1-entry-invalid", "l1-entry-past-eof", "l2-entry-in-header", "l2-entry-past-eof",
                           "l2-entry-unaligned", "need-check-corrupt"}
MEASURE_FAILS = CHAIN_FAILS | {"l1-entry-invalid", "l1-entry-past-eof", "l2-entry-in-header", "l2-entry-unaligned"}
# qemu-img 7.2 -f qed on an image that names itself as backing file loops until memory runs out
# (docs/differences.md): left out of the commands that open the chain
SELF = {"backing-self"}


def _img(n):
    if n in ("src", "base"):
        return {"src": "src.qcow2", "base": "base.raw"}[n]
    return f"{n}.qed" if n in GOOD else f"h-{n}.qed"


CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


for _n in GOOD + list(HOSTILE):
    case(f"{'err-' if _n in HOSTILE_ERR else ''}info-{_n}", "info", "-f", "qed", f"@{_n}")
for _n in GOOD + HOSTILE_OK:
    case(f"info-json-{_n}", "info", "--output=json", "-f", "qed", f"@{_n}")
    if _n in SELF:
        continue
    _c = "err-" if _n in CHAIN_FAILS else ""
    _m = "err-" if _n in MAP_FAILS else ""
    _s = "err-" if _n in MEASURE_FAILS else ""
    case(f"{_c}info-chain-{_n}", "info", "--backing-chain", f"@{_n}")
    case(f"{_m}map-{_n}", "map", "-f", "qed", f"@{_n}")
    case(f"{_m}map-json-{_n}", "map", "--output=json", "-f", "qed", f"@{_n}")
    case(f"{_c}check-{_n}", "check", "-f", "qed", f"@{_n}")
    case(f"{_c}check-json-{_n}", "check", "--output=json", f"@{_n}")
    case(f"{_s}measure-qcow2-{_n}", "measure", "-f", "qed", "-O", "qcow2", f"@{_n}")
case("err-info-chain-backing-self", "info", "--backing-chain", "@backing-self")
for _n in ["plain", "over-raw", "tiny", "zeros"]:
    _e = "err-" if _n in HOSTILE_ERR and _n != "zeros" else ""
    case(f"{_e}info-probed-{_n}", "info", f"@{_n}")
case("compare-same", "compare", "-f", "qed", "-F", "qed", "@plain", "@plain")
case("compare-conv-src", "compare", "-f", "qed", "-F", "qcow2", "@conv", "@src")
case("compare-probed", "compare", "@over-raw", "@base")
case("compare-differ", "compare", "@plain", "@conv")
case("compare-strict", "compare", "-s", "@conv", "@src")
case("compare-chain", "compare", "@over-qcow2", "@over-raw")
case("measure-json", "measure", "--output=json", "-O", "qcow2", "@over-raw")
case("info-image-opts", "info", "--image-opts", "driver=qed,file.filename=@plain")


def _resolve(args):
    out = []
    for a in args:
        if "@" in a:
            pre, name = a.split("@", 1)
            a = pre + _img(name)
        out.append(a)
    return out


@pytest.mark.parametrize("args", CASES)
def test_qed_read(instar, qeddir, request, args):
    argv = _resolve(args)
    expected, actual = tl.run_both(instar, argv, cwd=qeddir)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    ok = {"check": (0, 2, 3), "compare": (0, 1)}.get(argv[0], (0,))
    assert (expected.returncode not in ok) == err_case, "case id does not match qemu-img's outcome: " + \
        expected.describe()


# ---- commands that write an output or the image: convert, dd, check -r -----------------------
OUT_CASES = []


def out_case(cid, out, *args):
    OUT_CASES.append(pytest.param(out, list(args), id=cid))


for _n in ["plain", "small", "over-raw", "over-qcow2", "conv", "odd", "l2-duplicate", "l2-run-past-eof"]:
    out_case(f"convert-raw-{_n}", "out.raw", "convert", "-f", "qed", "-O", "raw", f"@{_n}", "out.raw")
    out_case(f"convert-qcow2-{_n}", "out.qcow2", "convert", "-f", "qed", "-O", "qcow2", f"@{_n}", "out.qcow2")
    out_case(f"dd-{_n}", "out.raw", "dd", "-f", "qed", "-O", "raw", f"if=@{_n}", "of=out.raw", "bs=64k")
out_case("err-convert-hostile", "out.raw", "convert", "-f", "qed", "-O", "raw", "@l2-entry-past-eof", "out.raw")
for _n in ["leaks", "need-check-leaks", "need-check-corrupt", "l2-duplicate", "dirty", "l2-entry-past-eof",
           "l1-entry-invalid", "l1-twice-same-l2", "autoclear-compat"]:
    for _r in ["leaks", "all"]:
        out_case(f"check-r-{_r}-{_n}", _img(_n), "check", "-r", _r, f"@{_n}")
# the write side: convert -O qed, dd -O qed
for _n in ["src", "plain", "over-raw", "small"]:
    _f = [] if _n == "src" else ["-f", "qed"]
    out_case(f"convert-O-qed-{_n}", "out.qed", "convert", *_f, "-O", "qed", f"@{_n}", "out.qed")
    out_case(f"dd-O-qed-{_n}", "out.qed", "dd", *_f, "-O", "qed", f"if=@{_n}", "of=out.qed", "bs=1M")
out_case("convert-O-qed-opts", "out.qed", "convert", "-O", "qed", "-o", "cluster_size=4k,table_size=2",
         "@src", "out.qed")
out_case("convert-O-qed-backing", "out.qed", "convert", "-O", "qed", "-B", "base.raw", "-F", "raw",
         "@src", "out.qed")
out_case("dd-O-qed-odd-bs", "out.qed", "dd", "-O", "qed", "if=@src", "of=out.qed", "bs=3000", "skip=7")


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


@pytest.mark.parametrize("out,args", OUT_CASES)
def test_qed_output(instar, qeddir, tmp_path, request, out, args):
    argv = _resolve(args)
    names = {a.rsplit("=", 1)[-1] for a in argv} | {"base.raw", "base.qcow2"}
    inputs = sorted(qeddir / n for n in names if (qeddir / n).is_file())
    expected, actual = tl.run_both_on_copies(instar, argv, inputs, tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    if argv[0] != "check":
        assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / out, tmp_path / "instar" / out
    assert a.exists() == b.exists()
    if a.exists():
        assert tl.same_content(a, b), f"{out} differs"
        assert _layout(a) == _layout(b), f"{out}: host data/hole layout differs"


# ---- create -f qed ---------------------------------------------------------------------------
CREATE_CASES = []


def create_case(cid, *args):
    CREATE_CASES.append(pytest.param(list(args), id=cid))


for _s in ["0", "512", "1000", "10M", "1G", "100G"]:
    create_case(f"size-{_s}", "create", "-f", "qed", "a.qed", _s)
# 64 MiB clusters with the default 4-cluster tables: qemu's maximum size wraps to 0
for _o in ["cluster_size=64M", "cluster_size=64M,table_size=1"]:
    create_case(f"err-opt-{_o}", "create", "-f", "qed", "-o", _o, "a.qed", "10M")
for _o in ["cluster_size=4k", "cluster_size=1M,table_size=1", "table_size=1", "table_size=16", "cluster_size=1M,table_size=2"]:
    create_case(f"opt-{_o}", "create", "-f", "qed", "-o", _o, "a.qed", "10M")
create_case("backing-raw", "create", "-f", "qed", "-b", "base.raw", "-F", "raw", "a.qed")
create_case("backing-qcow2", "create", "-f", "qed", "-b", "base.qcow2", "-F", "qcow2", "a.qed", "1M")
create_case("backing-size", "create", "-f", "qed", "-o", "backing_file=base.raw,backing_fmt=raw", "a.qed")
create_case("q", "create", "-q", "-f", "qed", "a.qed", "5M")
create_case("help", "create", "-f", "qed", "-o", "help")
for _cid, _args in [("cluster-size-2k", ["-o", "cluster_size=2k", "a.qed", "1M"]),
                    ("cluster-size-3k", ["-o", "cluster_size=3k", "a.qed", "1M"]),
                    ("table-size-3", ["-o", "table_size=3", "a.qed", "1M"]),
                    ("table-size-32", ["-o", "table_size=32", "a.qed", "1M"]),
                    ("too-large", ["-o", "cluster_size=4k,table_size=1", "a.qed", "5G"]),
                    ("backing-missing", ["-b", "nope.raw", "-F", "raw", "a.qed", "1M"]),
                    ("backing-no-fmt", ["-b", "base.raw", "a.qed", "1M"]),
                    ("encryption", ["-o", "encryption=on", "a.qed", "1M"]),
                    ("no-size", ["a.qed"])]:
    create_case(f"err-{_cid}", "create", "-f", "qed", *_args)


@pytest.mark.parametrize("args", CREATE_CASES)
def test_qed_create(instar, qeddir, tmp_path, request, args):
    inputs = [qeddir / "base.raw", qeddir / "base.qcow2"]
    expected, actual = tl.run_both_on_copies(instar, args, inputs, tmp_path)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / "a.qed", tmp_path / "instar" / "a.qed"
    assert a.exists() == b.exists()
    if a.exists():
        assert tl.same_content(a, b), "a.qed differs"
        assert _layout(a) == _layout(b), "a.qed: host data/hole layout differs"


# ---- resize: bdrv_qed_co_truncate() (grow only: the header's image size) ------------------
@pytest.fixture(scope="module")
def resizedir(tmp_path_factory):
    d = tmp_path_factory.mktemp("qed-resize")
    tl.qemu_img("create", "-q", "-f", "qed", str(d / "data.qed"), "3M")
    _qio(d / "data.qed", "write -P 0x5a 0 64k", "write -P 0x6b 2M 4k")
    tl.qemu_img("create", "-q", "-f", "qed", "-o", "cluster_size=4k,table_size=2", str(d / "small.qed"), "1M")
    # need-check set and an unknown autoclear bit: the read-write open repairs and clears
    b = bytearray((d / "data.qed").read_bytes())
    b[16] |= 0x02
    b[32] = 0x80
    (d / "dirty.qed").write_bytes(bytes(b))
    tl.qemu_img("create", "-q", "-f", "qcow2", str(d / "b8.qcow2"), "8M")
    tl.qemu_img("create", "-q", "-f", "qcow2", str(d / "b2.qcow2"), "2M")
    for b_, n in (("b8.qcow2", "long.qed"), ("b2.qcow2", "short.qed")):
        tl.qemu_img("create", "-q", "-f", "qed", "-b", b_, "-F", "qcow2", str(d / n), "4M", cwd=d)
        _qio(d / n, "write -P 0x11 100k 64k")
    return d


RESIZE_CASES = [
    ("grow", "data.qed", ["IMG", "8M"]),
    ("grow-relative", "data.qed", ["IMG", "+1M"]),
    ("grow-quiet-f", "data.qed", ["-q", "-f", "qed", "IMG", "1G"]),
    ("same-size", "data.qed", ["IMG", "3M"]),
    ("shrink-flag-same-size", "data.qed", ["--shrink", "IMG", "3M"]),
    ("grow-to-max", "small.qed", ["IMG", "4G"]),
    ("err-grow-past-max", "small.qed", ["IMG", "4294967808"]),
    ("err-unaligned", "data.qed", ["IMG", "4000001"]),
    ("err-too-large", "data.qed", ["IMG", "1P"]),
    ("err-shrink", "data.qed", ["--shrink", "IMG", "2M"]),
    ("err-shrink-without-flag", "data.qed", ["IMG", "-1M"]),
    ("err-prealloc-falloc", "data.qed", ["--preallocation=falloc", "IMG", "8M"]),
    ("err-prealloc-metadata", "data.qed", ["--preallocation=metadata", "IMG", "8M"]),
    ("grow-need-check", "dirty.qed", ["IMG", "8M"]),
    ("err-shrink-need-check", "dirty.qed", ["--shrink", "IMG", "1M"]),
    ("grow-over-short-backing", "short.qed", ["IMG", "8M"]),
    ("err-grow-over-long-backing", "long.qed", ["IMG", "8M"]),
    ("err-prealloc-over-long-backing", "long.qed", ["--preallocation=full", "IMG", "8M"]),
    ("grow-to-backing-size", "long.qed", ["IMG", "4M"]),
]


@pytest.mark.parametrize("img,args", [c[1:] for c in RESIZE_CASES], ids=[c[0] for c in RESIZE_CASES])
def test_qed_resize(instar, resizedir, tmp_path, request, img, args):
    argv = ["resize", *[img if a == "IMG" else a for a in args]]
    files = [resizedir / img] + [resizedir / b for b in ("b8.qcow2", "b2.qcow2")]
    expected, actual = tl.run_both_on_copies(instar, argv, files, tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert (expected.returncode != 0) == request.node.callspec.id.startswith("err-")
    a, b = tmp_path / "oracle" / img, tmp_path / "instar" / img
    assert tl.same_files(a, b), f"{img} differs"


# ---- rebase: bdrv_qed_change_backing_file() (and a safe rebase's writes through qed) ------
@pytest.fixture(scope="module")
def rebasedir(tmp_path_factory):
    d = tmp_path_factory.mktemp("qed-rebase")

    def q(*a):
        tl.qemu_img(*a, cwd=d)

    q("create", "-q", "-f", "qcow2", "b1.qcow2", "4M")
    _qio(d / "b1.qcow2", "write -P 1 0 1M", fmt="qcow2")
    q("create", "-q", "-f", "raw", "b2.raw", "4M")
    _qio(d / "b2.raw", "write -P 1 0 512k", "write -P 2 2M 64k", fmt="raw")
    q("create", "-q", "-f", "qed", "-b", "b1.qcow2", "-F", "qcow2", "top.qed", "4M")
    _qio(d / "top.qed", "write -P 9 100k 64k")
    q("create", "-q", "-f", "qed", "-o", "cluster_size=4k,table_size=2", "plain.qed", "4M")
    _qio(d / "plain.qed", "write -P 7 0 4k")
    # an unknown compat feature: qemu refuses to name a backing file
    b = bytearray((d / "plain.qed").read_bytes())
    b[24] = 0x01
    (d / "compat.qed").write_bytes(bytes(b))
    return d


REBASE_CASES = [
    ("unsafe-remove", "top.qed", ["-u", "-b", ""]),
    ("unsafe-raw", "top.qed", ["-u", "-b", "b2.raw", "-F", "raw"]),
    ("unsafe-qcow2", "plain.qed", ["-u", "-b", "b1.qcow2", "-F", "qcow2"]),
    ("safe-raw", "top.qed", ["-b", "b2.raw", "-F", "raw"]),
    ("safe-remove", "top.qed", ["-b", ""]),
    ("safe-add", "plain.qed", ["-b", "b1.qcow2", "-F", "qcow2"]),
    ("safe-progress", "top.qed", ["-p", "-f", "qed", "-b", "b2.raw", "-F", "raw"]),
    ("err-no-format", "top.qed", ["-u", "-b", "b2.raw"]),
    ("err-compat-feature", "compat.qed", ["-u", "-b", "b2.raw", "-F", "raw"]),
    ("compat-feature-remove", "compat.qed", ["-u", "-b", ""]),
    # names past qcow2's 1023 bytes: qed takes what its header clusters hold
    ("unsafe-long-name", "top.qed", ["-u", "-b", "./" * 600 + "b2.raw", "-F", "raw"]),
    ("safe-long-name", "top.qed", ["-b", "./" * 600 + "b2.raw", "-F", "raw"]),
    ("long-name-fills-header", "plain.qed", ["-u", "-b", "n" * 4032, "-F", "raw"]),
    ("err-long-name-no-space", "plain.qed", ["-u", "-b", "n" * 4033, "-F", "raw"]),
]


@pytest.mark.parametrize("img,args", [c[1:] for c in REBASE_CASES], ids=[c[0] for c in REBASE_CASES])
def test_qed_rebase(instar, rebasedir, tmp_path, request, img, args):
    argv = ["rebase", *args, img]
    files = [rebasedir / n for n in (img, "b1.qcow2", "b2.raw")]
    expected, actual = tl.run_both_on_copies(instar, argv, files, tmp_path)
    tl.assert_same(expected, actual, "rebase " + " ".join(a[:40] for a in args))
    assert (expected.returncode != 0) == request.node.callspec.id.startswith("err-")
    assert tl.same_files(tmp_path / "oracle" / img, tmp_path / "instar" / img), f"{img} differs"
