"""parallels parity (qemu-img 7.2 vs instar).

Every image is made at test time: with `qemu-img create -f parallels` /
`convert -O parallels` and `qemu-io` writes (cluster sizes from 512 bytes
to the 1 MiB default, clusters written out of order so that they are
fragmented), and hostile ones written field by field below: bad magic
and version, zero and huge cluster sizes, catalogs too large to read,
sizes that overflow QEMU's sector arithmetic, the inuse flag, clusters
past the end of the file, leaked space, and format extensions (a valid
dirty bitmap, then one wrong field at a time).  Read-only commands run
on the same files under both tools; check -r, convert, dd and create run
on copies and their outputs must be identical byte for byte.  A case id
starting with `err-` must make qemu-img fail, every other must make it
succeed (a guard that the case tests what its name says).
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest

import instar_testlib as tl

MiB = 1 << 20
M1 = b"WithoutFreeSpace"
M2 = b"WithouFreSpacExt"
INUSE = 0x746F6E59
EXT_MAGIC = 0xAB234CEF23DCEA87
BM_MAGIC = 0x20385FAE252CB34A


# ---- images ------------------------------------------------------------------------------
def hdr(magic=M2, version=2, tracks=8, bat_entries=4, nb_sectors=None, inuse=0, data_off=1, ext_off=0,
        heads=16, cyl=0, flags=0):
    """The 64-byte header (docs/interop/parallels.txt), little-endian."""
    if nb_sectors is None:
        nb_sectors = bat_entries * tracks
    return magic + struct.pack("<IIIIIQIIIQ", version, heads, cyl, tracks, bat_entries, nb_sectors, inuse,
                               data_off, flags, ext_off)


def image(bat=(), size=None, fill=b"\0", **kw):
    """Header, BAT entries, then fill up to size bytes."""
    b = hdr(**kw) + struct.pack(f"<{len(bat)}I", *bat)
    if size is not None:
        b += (fill * size)[: max(0, size - len(b))]
    return b


def feature(magic, data, flags=0, data_size=None):
    fh = struct.pack("<QQII", magic, flags, len(data) if data_size is None else data_size, 0)
    return fh + data + bytes(-len(data) % 8)


def bitmap(size_sectors, gran_sectors=8, l1=(), uid=bytes(range(16)), size=None, l1_size=None):
    d = struct.pack("<Q", size_sectors if size is None else size) + uid
    d += struct.pack("<II", gran_sectors, len(l1) if l1_size is None else l1_size)
    return d + struct.pack(f"<{len(l1)}Q", *l1)


def ext_cluster(features, cluster, magic=EXT_MAGIC, bad_sum=False):
    body = b"".join(features)
    body = body + bytes(cluster - 24 - len(body))
    s = hashlib.md5(body).digest()
    if bad_sum:
        s = bytes(16)
    return struct.pack("<Q", magic) + s + body


# A small image with an extension: cluster 4 KiB (8 sectors), 4 clusters
# (16 KiB, 32 sectors), BAT in sector 0, data from sector 8, the extension
# in the cluster at sector 40 (after two data clusters).
def with_ext(features=None, ext_off=40, cluster=4096, magic=EXT_MAGIC, bad_sum=False, nb=32, **kw):
    if features is None:
        features = [feature(BM_MAGIC, bitmap(nb, 8, l1=(1,))), feature(0, b"")]
    b = bytearray(image(bat=(1, 0, 2), tracks=8, bat_entries=4, nb_sectors=nb, data_off=1, ext_off=ext_off,
                        size=40 * 512, **kw))
    b[4096:8192] = b"\x11" * 4096
    b[8192:12288] = b"\x22" * 4096
    return bytes(b) + ext_cluster(features, cluster, magic, bad_sum)


def _small(**kw):
    """4 clusters of 4 KiB; clusters 0 and 2 at sectors 8 and 16 hold data."""
    b = bytearray(image(bat=(1, 0, 2), tracks=8, bat_entries=4, data_off=1, size=24 * 512, **kw))
    b[8 * 512:16 * 512] = b"\x5a" * 4096
    b[16 * 512:24 * 512] = b"\xa5" * 4096
    return bytes(b)


_BM = bitmap(32, 8, l1=(1,))
HOSTILE = {
    "tiny": b"abc",
    "zeros": b"\0" * 4096,
    "magic-only": M1 + bytes(20),
    "bad-version": image(version=3, size=512),
    "bad-magic": image(magic=b"WithoutFreeSpacX", size=512),
    "tracks-0": image(tracks=0, size=512),
    "tracks-too-big": image(tracks=0x7FFFFFFF // 513 + 1, size=512),
    "tracks-max": image(tracks=0x7FFFFFFF // 513, bat_entries=1, size=512),
    "catalog-too-large": image(bat_entries=0x20000000, size=512),
    "catalog-eio": image(bat_entries=0x1FFFFFFF, size=512),
    "catalog-past-eof": image(bat=(1, 2), bat_entries=1000, tracks=1, data_off=0, size=4096, fill=b"\x33"),
    "size-refresh": image(nb_sectors=(1 << 54) - 1, size=512),
    "size-v1-masked": image(magic=M1, tracks=1, bat_entries=8, nb_sectors=(1 << 33) + 8, size=512),
    "v1": image(magic=M1, bat=(2, 0, 10), tracks=8, bat_entries=3, size=18 * 512, fill=b"\x44"),
    "inuse": _small(inuse=INUSE),
    "outside": image(bat=(1, 0, 100, 0), tracks=8, bat_entries=4, size=16 * 512, fill=b"\x55"),
    "leaked": _small() + b"\x66" * 5000,
    "fragmented": image(bat=(3, 1, 2, 0), tracks=8, bat_entries=4, size=32 * 512, fill=b"\x77"),
    "into-header": image(bat=(0, 1, 1, 0), tracks=1, bat_entries=4, size=2048, fill=b"\x88"),
    "data-off-0": image(bat=(1,) + (0,) * 199, tracks=1, bat_entries=200, data_off=0, size=4096, fill=b"\x99"),
    "data-off-big": image(bat=(20,), tracks=8, bat_entries=2, data_off=20, size=28 * 512, fill=b"\x12"),
    "ext-ok": with_ext(),
    "ext-two-bitmaps": with_ext([feature(BM_MAGIC, _BM), feature(BM_MAGIC, bitmap(32, 16, l1=(0,),
                                                                                   uid=b"\x01" * 16)),
                                 feature(0, b"")]),
    "ext-bitmap-data": with_ext([feature(BM_MAGIC, bitmap(32, 1, l1=(41,))), feature(0, b"")]),
    "ext-bad-magic": with_ext(magic=0x1122334455667788),
    "ext-bad-checksum": with_ext(bad_sum=True),
    "ext-flags": with_ext([feature(BM_MAGIC, _BM, flags=1), feature(0, b"")]),
    "ext-data-size": with_ext([feature(BM_MAGIC, _BM, data_size=5000)]),
    "ext-unknown": with_ext([feature(0x1234, b"abcd"), feature(0, b"")]),
    "ext-bitmap-small": with_ext([feature(BM_MAGIC, _BM[:31]), feature(0, b"")]),
    "ext-bitmap-size": with_ext([feature(BM_MAGIC, bitmap(32, 8, l1=(1,), size=33)), feature(0, b"")]),
    "ext-bitmap-size-neg": with_ext([feature(BM_MAGIC, bitmap(32, 8, l1=(1,), size=(1 << 64) - 5)),
                                     feature(0, b"")]),
    "ext-bitmap-l1": with_ext([feature(BM_MAGIC, bitmap(32, 8, l1=(1,), l1_size=2)), feature(0, b"")]),
    "ext-bitmap-table": with_ext([feature(BM_MAGIC, bitmap(32, 8, l1=(1, 1))), feature(0, b"")]),
    "ext-bitmap-dup": with_ext([feature(BM_MAGIC, _BM), feature(BM_MAGIC, _BM), feature(0, b"")]),
    "ext-bitmap-eio": with_ext([feature(BM_MAGIC, bitmap(32, 8, l1=((1 << 54) - 1,))), feature(0, b"")]),
    "ext-past-eof": with_ext(ext_off=4000),
    "ext-eio": with_ext(ext_off=(1 << 54) - 1),
    "ext-no-end": with_ext([feature(BM_MAGIC, _BM)] + [b"\0" * 8]),
}
# The format extension of an image opened read-write is not read (a warning).
HOSTILE_OK = ["tracks-max", "catalog-past-eof", "size-v1-masked", "v1", "inuse", "outside",
              "leaked", "fragmented", "into-header", "data-off-0", "data-off-big", "ext-ok", "ext-two-bitmaps",
              "ext-bitmap-data", "ext-no-end"]
HOSTILE_ERR = [n for n in HOSTILE if n not in HOSTILE_OK]
# Probed as raw (no parallels magic and version): only -f parallels fails.
PROBED_RAW = {"tiny", "zeros", "magic-only", "bad-version", "bad-magic"}


def _qio(path, *cmds, fmt="parallels"):
    args = []
    for c in cmds:
        args += ["-c", c]
    tl.qemu_io("-f", fmt, *args, str(path))


@pytest.fixture(scope="module")
def prldir(tmp_path_factory):
    d = tmp_path_factory.mktemp("parallels")

    def q(*a):
        tl.qemu_img(*a, cwd=d)

    q("create", "-q", "-f", "parallels", "data.img", "10M")
    _qio(d / "data.img", "write -P 0x11 0 64k", "write -P 0x22 5M 1M", "write -P 0x33 9M 512")
    q("create", "-q", "-f", "parallels", "-o", "cluster_size=64k", "c64k.img", "4M")
    _qio(d / "c64k.img", "write -P 0x44 3M 64k", "write -P 0x45 0 100k", "write -P 0x46 2M 1k",
         "write -z 1M 64k")
    q("create", "-q", "-f", "parallels", "-o", "cluster_size=512", "c512.img", "64k")
    _qio(d / "c512.img", "write -P 0x47 10k 3k", "write -P 0x48 1k 1k")
    q("create", "-q", "-f", "parallels", "-o", "cluster_size=1000", "c1000.img", "100k")
    _qio(d / "c1000.img", "write -P 0x49 5000 7000")
    for size in ["0", "1000001", "1G"]:
        q("create", "-q", "-f", "parallels", f"size-{size}.img", size)
    q("create", "-q", "-f", "qcow2", "src.qcow2", "7M")
    _qio(d / "src.qcow2", "write -P 0x77 0 1M", "write -z 2M 1M", "write -P 0x78 4095k 2k", fmt="qcow2")
    q("convert", "-O", "parallels", "src.qcow2", "conv.img")
    for name, data in HOSTILE.items():
        (d / f"h-{name}.img").write_bytes(data)
    return d


GOOD = ["data", "c64k", "c512", "c1000", "size-0", "size-1000001", "size-1G", "conv"]


def _img(n):
    if n == "src":
        return "src.qcow2"
    return f"{n}.img" if n in GOOD else f"h-{n}.img"


CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


for _n in GOOD + list(HOSTILE):
    case(f"{'err-' if _n in HOSTILE_ERR else ''}info-{_n}", "info", "-f", "parallels", f"@{_n}")
for _n in GOOD + HOSTILE_OK:
    case(f"info-json-{_n}", "info", "--output=json", "-f", "parallels", f"@{_n}")
    case(f"map-{_n}", "map", "-f", "parallels", f"@{_n}")
    case(f"map-json-{_n}", "map", "--output=json", "-f", "parallels", f"@{_n}")
    case(f"check-{_n}", "check", "-f", "parallels", f"@{_n}")
    case(f"check-json-{_n}", "check", "--output=json", "-f", "parallels", f"@{_n}")
    case(f"measure-qcow2-{_n}", "measure", "-f", "parallels", "-O", "qcow2", f"@{_n}")
    case(f"info-probed-{_n}", "info", f"@{_n}")
for _n in ["ext-bad-magic", "ext-bitmap-dup", "catalog-eio", "size-refresh", "tracks-0"]:
    case(f"err-check-{_n}", "check", "-f", "parallels", f"@{_n}")
    case(f"err-map-{_n}", "map", "-f", "parallels", f"@{_n}")
    case(f"err-info-probed-{_n}", "info", f"@{_n}")
for _n in sorted(PROBED_RAW):
    case(f"info-probed-raw-{_n}", "info", f"@{_n}")
case("info-image-opts", "info", "--image-opts", "driver=parallels,file.filename=@data")
case("info-image-opts-json", "info", "--output=json", "--image-opts", "driver=parallels,file.filename=@c64k")
case("measure-raw", "measure", "-f", "parallels", "-O", "raw", "@data")
case("measure-json", "measure", "--output=json", "-f", "parallels", "-O", "qcow2", "@conv")
case("err-measure-O-parallels", "measure", "-O", "parallels", "@data")
case("compare-same", "compare", "-f", "parallels", "-F", "parallels", "@data", "@data")
case("compare-conv-src", "compare", "-f", "parallels", "-F", "qcow2", "@conv", "@src")
case("compare-probed", "compare", "@conv", "@src")
case("compare-differ", "compare", "@data", "@size-1G")
case("compare-strict", "compare", "-s", "@c64k", "@c512")
case("compare-hostile", "compare", "@into-header", "@fragmented")
case("compare-ext", "compare", "@ext-ok", "@ext-two-bitmaps")
case("snapshot-list", "snapshot", "-l", "@data")


def _resolve(args):
    out = []
    for a in args:
        if "@" in a:
            pre, name = a.split("@", 1)
            a = pre + _img(name)
        out.append(a)
    return out


@pytest.mark.parametrize("args", CASES)
def test_parallels_read(instar, prldir, request, args):
    argv = _resolve(args)
    expected, actual = tl.run_both(instar, argv, cwd=prldir)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    ok = {"check": (0, 2, 3), "compare": (0, 1)}.get(argv[0], (0,))
    assert (expected.returncode not in ok) == err_case, "case id does not match qemu-img's outcome: " + \
        expected.describe()


# ---- commands that write: check -r, convert, dd, and what qemu-img refuses ----------------------
OUT_CASES = []


def out_case(cid, out, *args):
    OUT_CASES.append(pytest.param(out, list(args), id=cid))


for _n in ["inuse", "outside", "leaked", "data", "fragmented", "ext-ok", "data-off-0", "into-header"]:
    for _r in ["leaks", "all"]:
        out_case(f"check-r-{_r}-{_n}", _img(_n), "check", "-r", _r, "-f", "parallels", f"@{_n}")
    out_case(f"check-r-all-json-{_n}", _img(_n), "check", "-r", "all", "--output=json", f"@{_n}")
out_case("check-r-all-q-outside", _img("outside"), "check", "-q", "-r", "all", "@outside")
for _n in ["data", "c64k", "c1000", "conv", "v1", "outside", "fragmented", "into-header", "ext-ok",
           "catalog-past-eof", "inuse"]:
    out_case(f"convert-raw-{_n}", "out.raw", "convert", "-f", "parallels", "-O", "raw", f"@{_n}", "out.raw")
    out_case(f"convert-qcow2-{_n}", "out.qcow2", "convert", "-f", "parallels", "-O", "qcow2", f"@{_n}",
             "out.qcow2")
    out_case(f"dd-{_n}", "out.raw", "dd", "-f", "parallels", "-O", "raw", f"if=@{_n}", "of=out.raw", "bs=64k")
out_case("dd-skip-count", "out.raw", "dd", "-f", "parallels", "-O", "raw", "if=@data", "of=out.raw", "bs=1M",
         "skip=1", "count=6")
out_case("err-resize", _img("data"), "resize", "-f", "parallels", "@data", "20M")
out_case("err-resize-probed", _img("data"), "resize", "@data", "+1M")
out_case("err-snapshot-c", _img("data"), "snapshot", "-c", "s", "@data")
out_case("err-snapshot-d", _img("data"), "snapshot", "-d", "s", "@data")
out_case("err-snapshot-a", _img("data"), "snapshot", "-a", "s", "@data")
out_case("err-amend", _img("data"), "amend", "-o", "cluster_size=4k", "@data")
out_case("err-commit", _img("data"), "commit", "@data")
out_case("check-r-ext-rw", _img("ext-bad-magic"), "check", "-r", "all", "@ext-bad-magic")


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


def _inputs(base: Path, argv):
    names = set()
    for a in argv:
        a = a.rsplit("=", 1)[-1]
        if a.endswith((".img", ".qcow2")) and (base / a).exists():
            names.add(base / a)
    return sorted(names)


@pytest.mark.parametrize("out,args", OUT_CASES)
def test_parallels_output(instar, prldir, tmp_path, request, out, args):
    argv = _resolve(args)
    expected, actual = tl.run_both_on_copies(instar, argv, _inputs(prldir, argv), tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    ok = (0, 2, 3) if argv[0] == "check" else (0,)
    assert (expected.returncode not in ok) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / out, tmp_path / "instar" / out
    assert a.exists() == b.exists()
    if a.exists():
        assert tl.same_content(a, b), f"{out} differs"
        assert _layout(a) == _layout(b), f"{out}: host data/hole layout differs"


# ---- where qemu-img 7.2 reads out of bounds or fails an assertion: a clean error ----------------
# (docs/differences.md).  qemu-img's behaviour is undefined or an abort, so
# instar is held to one "Could not open" line and exit 1, never a crash.
CLEAN = {
    # a chain of 63 bitmaps walks "pos" to the cluster's end while "remaining" still
    # allows more: the 64th bitmap's header fits, its data lies past the cluster
    "ext-oob-chain": with_ext([feature(BM_MAGIC, bitmap(32, 8, l1=(1,), uid=bytes([i]) * 16)) for i in range(63)]
                              + [struct.pack("<QQII", BM_MAGIC, 0, 40, 0)]),
    # a feature whose data_size passes the stale check but ends past the cluster
    "ext-oob-data": with_ext([feature(BM_MAGIC, bitmap(32, 8, l1=(1,)), data_size=4040)], cluster=4096),
    "ext-offset-negative": with_ext(ext_off=1 << 54),
    "ext-offset-zero": with_ext(ext_off=1 << 55),
    "ext-granularity": with_ext([feature(BM_MAGIC, bitmap(32, 3, l1=(1,))), feature(0, b"")]),
    "ext-granularity-0": with_ext([feature(BM_MAGIC, bitmap(32, 0, l1=(1,))), feature(0, b"")]),
    "size-getlength": image(nb_sectors=1 << 62, size=512),
    "size-negative": image(nb_sectors=(1 << 64) - 1, size=512),
}


@pytest.mark.parametrize("name", list(CLEAN))
@pytest.mark.parametrize("cmd", [["info"], ["check"], ["map", "--output=json"], ["convert", "-O", "raw"]])
def test_parallels_clean_errors(instar, tmp_path, name, cmd):
    img = tmp_path / "h.img"
    img.write_bytes(CLEAN[name])
    argv = [*cmd, "-f", "parallels", str(img)] + ([str(tmp_path / "o.raw")] if cmd[0] == "convert" else [])
    r = instar.run(argv, cwd=tmp_path)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 1 and r.stdout == b"", r.describe()
    assert err.startswith(f"qemu-img: Could not open '{img}': ") and err.count("\n") == 1, r.describe()
    assert not (tmp_path / "o.raw").exists()


# ---- create -f parallels: byte-identical files (qemu's layout is deterministic) ------------------
CREATE_CASES = []


def create_case(cid, *args):
    CREATE_CASES.append(pytest.param(list(args), id=cid))


for _s in ["0", "1", "511", "1000", "1000001", "10M", "1G", "100G"]:
    create_case(f"size-{_s}", "create", "-f", "parallels", "a.img", _s)
for _c in ["512", "1000", "4k", "64k", "2M", "1G", "2047M"]:
    create_case(f"cluster-{_c}", "create", "-f", "parallels", "-o", f"cluster_size={_c}", "a.img", "100M")
create_case("cluster-512-large", "create", "-f", "parallels", "-o", "cluster_size=512", "a.img", "1T")
create_case("q", "create", "-q", "-f", "parallels", "a.img", "5M")
create_case("size-option", "create", "-f", "parallels", "-o", "size=3M,cluster_size=8k", "a.img")
create_case("file-options", "create", "-f", "parallels", "-o", "preallocation=full,nocow=on", "a.img", "1M")
create_case("help", "create", "-f", "parallels", "-o", "help")
for _cid, _args in [("cluster-0", ["-o", "cluster_size=0", "a.img", "1M"]),
                    ("cluster-2G", ["-o", "cluster_size=2G", "a.img", "1M"]),
                    ("cluster-huge", ["-o", "cluster_size=4096G", "a.img", "1M"]),
                    ("too-large", ["-o", "cluster_size=512", "a.img", "2T"]),
                    ("preallocation-metadata", ["-o", "preallocation=metadata", "a.img", "1M"]),
                    ("preallocation-bogus", ["-o", "preallocation=bogus", "a.img", "1M"]),
                    ("subformat", ["-o", "subformat=fixed", "a.img", "1M"]),
                    ("backing", ["-b", "x.qcow2", "-F", "qcow2", "a.img", "1M"]),
                    ("no-size", ["a.img"])]:
    create_case(f"err-{_cid}", "create", "-f", "parallels", *_args)


@pytest.mark.parametrize("args", CREATE_CASES)
def test_parallels_create(instar, tmp_path, request, args):
    expected, actual = tl.run_both_on_copies(instar, args, [], tmp_path)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / "a.img", tmp_path / "instar" / "a.img"
    assert a.exists() == b.exists()
    if a.exists():
        # Equal lengths and layouts, then the data regions byte for byte (the holes read as zeros).
        assert a.stat().st_size == b.stat().st_size
        layout = _layout(a)
        assert layout == _layout(b), "a.img: host data/hole layout differs"
        with open(a, "rb") as fa, open(b, "rb") as fb:
            for start, end in layout:
                for off in range(start, end, 4 << 20):
                    n = min(4 << 20, end - off)
                    fa.seek(off)
                    fb.seek(off)
                    assert fa.read(n) == fb.read(n), f"a.img differs at {off:#x}"


# ---- the write path: dd -O parallels and bench -w, one request at a time -------------------------
WRITE_CASES = []
for _n, _f in [("src", []), ("data", ["-f", "parallels"]), ("c1000", ["-f", "parallels"])]:
    for _bs in ["64k", "1M", "3000", "512"]:
        WRITE_CASES.append(pytest.param(["dd", *_f, "-O", "parallels", f"if=@{_n}", "of=out.img", f"bs={_bs}"],
                                        id=f"dd-O-parallels-{_n}-{_bs}"))
WRITE_CASES.append(pytest.param(["dd", "-O", "parallels", "if=@src", "of=out.img", "bs=3000", "skip=7",
                                 "count=900"], id="dd-O-parallels-skip-count"))


@pytest.mark.parametrize("args", WRITE_CASES)
def test_parallels_dd_out(instar, prldir, tmp_path, args):
    argv = _resolve(args)
    expected, actual = tl.run_both_on_copies(instar, argv, _inputs(prldir, argv), tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert expected.returncode == 0
    a, b = tmp_path / "oracle" / "out.img", tmp_path / "instar" / "out.img"
    assert tl.same_content(a, b), "out.img differs"
    assert _layout(a) == _layout(b), "out.img: host data/hole layout differs"


BENCH = []
for _cl in ["1M", "64k", "512"]:
    for _cid, _a in [("seq", ["-c", "40", "-s", "64k", "-S", "300k"]),
                     ("big", ["-c", "6", "-s", "3M", "-o", "1M"]),
                     ("flush", ["-c", "20", "-s", "4k", "-S", "1M", "--flush-interval=3"]),
                     ("odd", ["-c", "30", "-s", "1000", "-S", "7000"])]:
        BENCH.append(pytest.param(_cl, _a, id=f"{_cl}-{_cid}"))


@pytest.mark.parametrize("cl,opts", BENCH)
def test_parallels_bench_write(instar, tmp_path, cl, opts):
    src = tmp_path / "w.img"
    tl.qemu_img("create", "-q", "-f", "parallels", "-o", f"cluster_size={cl}", str(src), "20M")
    _qio(src, "write -P 0x11 0 3M")
    argv = ["bench", "-w", "-d", "1", "-f", "parallels", *opts, "w.img"]
    expected, actual = tl.run_both_on_copies(instar, argv, [src], tmp_path)

    def strip(r):
        return b"".join(x for x in r.stdout.splitlines(True) if not x.startswith(b"Run completed"))

    assert (actual.returncode, strip(actual), actual.stderr) == (expected.returncode, strip(expected),
                                                                 expected.stderr)
    a, b = tmp_path / "oracle" / "w.img", tmp_path / "instar" / "w.img"
    assert tl.same_content(a, b), "w.img differs"
    assert _layout(a) == _layout(b), "w.img: host data/hole layout differs"


# ---- convert -O parallels: the target written through its node, as parallels_co_writev --------
for _n, _f in [("src", []), ("data", ["-f", "parallels"]), ("c64k", []), ("conv", []), ("fragmented", []),
               ("ext-ok", []), ("v1", [])]:
    out_case(f"convert-O-parallels-{_n}", "out.img", "convert", *_f, "-O", "parallels", f"@{_n}", "out.img")
for _cid, _o in [("cluster-64k", ["-o", "cluster_size=64k"]), ("cluster-512", ["-o", "cluster_size=512"]),
                 ("cluster-1000", ["-o", "cluster_size=1000"]), ("S0", ["-S", "0"]), ("S64k", ["-S", "64k"]),
                 ("target-is-zero", ["--target-is-zero", "-n"])]:
    out_case(f"convert-O-parallels-{_cid}", "out.img" if "-n" not in _o else _img("size-1G"),
             "convert", *_o, "-O", "parallels", "@src", "out.img" if "-n" not in _o else "@size-1G")
out_case("convert-n-parallels", _img("data"), "convert", "-n", "-O", "parallels", "@src", "@data")
out_case("err-convert-n-parallels-unclean", _img("inuse"), "convert", "-n", "-O", "parallels", "@src",
         "@inuse")
out_case("err-convert-O-parallels-cluster-0", "out.img", "convert", "-O", "parallels", "-o", "cluster_size=0",
         "@src", "out.img")


# bench -w opens read-write: an extension is ignored with qemu's warning, an unclean image refused
@pytest.mark.parametrize("name", ["ext-ok", "inuse", "ext-bad-magic"])
def test_parallels_bench_write_rw_open(instar, prldir, tmp_path, name):
    argv = ["bench", "-w", "-c", "3", "-s", "4k", "-d", "1", "-f", "parallels", _img(name)]
    expected, actual = tl.run_both_on_copies(instar, argv, [prldir / _img(name)], tmp_path)

    def strip(r):
        return b"".join(x for x in r.stdout.splitlines(True) if not x.startswith(b"Run completed"))

    assert (actual.returncode, strip(actual), actual.stderr) == (expected.returncode, strip(expected),
                                                                 expected.stderr)
    a, b = tmp_path / "oracle" / _img(name), tmp_path / "instar" / _img(name)
    assert tl.same_content(a, b), "image differs"


# ---- runtime options prealloc-mode / prealloc-size (--image-opts, json:) --------------------------
# falloc (the default) zero-writes the file's growth, truncate grows it sparse; the size is only
# the growth step (the close cuts the file at data_end): the same bytes, holes where qemu's are.
@pytest.mark.parametrize("opts", ["", ",prealloc-mode=truncate", ",prealloc-mode=falloc,prealloc-size=1M",
                                  ",prealloc-mode=truncate,prealloc-size=100k"],
                         ids=["default", "truncate", "falloc-1M", "truncate-100k"])
def test_parallels_prealloc_options(instar, tmp_path, opts):
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "parallels", str(src / "w.prl"), "64M")
    argv = ["bench", "-w", "-d", "1", "-c", "20", "-s", "4k", "-S", "3M", "--image-opts",
            f"driver=parallels,file.filename=w.prl{opts}"]
    expected, actual = tl.run_both_on_copies(instar, argv, [src / "w.prl"], tmp_path / "run")

    def strip(r):
        return b"".join(x for x in r.stdout.splitlines(True) if not x.startswith(b"Run completed"))

    assert (actual.returncode, strip(actual), actual.stderr) == (0, strip(expected), expected.stderr)
    a, b = tmp_path / "run" / "oracle" / "w.prl", tmp_path / "run" / "instar" / "w.prl"
    assert tl.same_content(a, b), "w.prl differs"
    assert _layout(a) == _layout(b), "w.prl: host data/hole layout differs"


@pytest.mark.parametrize("opt", ["prealloc-mode=bad", "prealloc-mode=", "prealloc-size=x",
                                 "prealloc-size=99999999999999999999999"])
def test_parallels_prealloc_option_errors(instar, prldir, opt):
    argv = ["info", "--image-opts", f"driver=parallels,file.filename={_img('data')},{opt}"]
    tl.assert_same(*tl.run_both(instar, argv, cwd=prldir), " ".join(argv))
