"""bochs parity (qemu-img 7.2 vs instar): the read-only Bochs growing image.

qemu-img cannot create bochs images, so every image is built field by field
below (block/bochs.c's struct bochs_header: magic, "Redolog", "Growing",
version 1 or 2, header size, catalog entries, bitmap and extent sizes,
disk size; the catalog at the header size; each extent its bitmap then its
data): images of several shapes (version 1 and 2, sparse and full
catalogs, sector bitmaps with holes, extents out of order) and hostile ones
(truncations, a catalog over qemu's limit or too small for the disk,
extent sizes that are not powers of two, too small or too large, catalog
entries and header sizes pointing past the end of the file or past
BDRV_MAX_LENGTH).  Read-only commands run on the same files under both
tools; convert and dd run on copies, and their outputs must be identical.
A case id starting with `err-` must make qemu-img fail (a guard that the
case tests what its name says).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import instar_testlib as tl

MiB = 1 << 20
UNALLOC = 0xFFFFFFFF


def header(disk, catalog, extent=4096, bitmap=512, version=0x20000, hdr=512,
           magic=b"Bochs Virtual HD Image", typ=b"Redolog", sub=b"Growing"):
    """struct bochs_header, little-endian: version 1 keeps the disk size 4 bytes earlier."""
    h = bytearray(512)
    h[0:len(magic)] = magic
    h[32:32 + len(typ)] = typ
    h[48:48 + len(sub)] = sub
    struct.pack_into("<IIIII", h, 64, version, hdr, catalog, bitmap, extent)
    struct.pack_into("<Q", h, 84 if version == 0x10000 else 88, disk)
    return bytes(h)


def image(disk, catalog=None, extent=4096, bitmap=512, extents=(), cat=None, pad_header=0, **kw):
    """A whole image: extents is a list of (catalog index, bitmap bytes, data bytes), stored in order."""
    n = catalog if catalog is not None else max(1, -(-disk // extent))
    c = list(cat) if cat is not None else [UNALLOC] * n
    body = b""
    for k, (idx, bm, data) in enumerate(extents):
        if cat is None:
            c[idx] = k
        bm = bm.ljust(-(-bitmap // 512) * 512, b"\0")
        body += bm + data.ljust(extent, b"\0")
    h = header(disk, n, extent, bitmap, hdr=512 + pad_header, **kw)
    return h + b"\0" * pad_header + struct.pack(f"<{len(c)}I", *c) + body


def pattern(seed, n):
    return bytes((seed * 7 + i * 13) & 0xFF for i in range(n))


ALL = b"\xff" * 512
GOOD = {
    "empty-1M": image(MiB),
    "empty-v1": image(MiB, version=0x10000),
    "one-extent": image(MiB, extents=[(0, ALL, pattern(1, 4096))]),
    "holes-in-bitmap": image(MiB, extents=[(3, b"\x05", pattern(2, 4096)), (7, b"\x80", pattern(3, 4096))]),
    "out-of-order": image(2 * MiB, extent=64 * 1024, bitmap=1024,
                          extents=[(20, ALL * 2, pattern(4, 65536)), (1, ALL * 2, pattern(5, 65536)),
                                   (31, b"\x0f" + b"\xf0" * 15, pattern(6, 65536))]),
    "v1-data": image(256 * 1024, version=0x10000, extents=[(0, ALL, pattern(7, 4096)),
                                                          (63, b"\xaa", pattern(8, 4096))]),
    "odd-disk-size": image(MiB + 1000, extents=[(256, ALL, pattern(9, 4096))]),
    "catalog-larger": image(64 * 1024, catalog=1000, extents=[(5, ALL, pattern(10, 4096))]),
    "bitmap-zero": image(64 * 1024, bitmap=0, extents=[(2, ALL, pattern(11, 4096))]),
    "extent-8M": image(16 * MiB, extent=8 * MiB, bitmap=2048, extents=[(1, b"\x01" + b"\0" * 2047, pattern(12, 512))]),
    "header-1024": image(MiB, pad_header=512, extents=[(1, ALL, pattern(13, 4096))]),
    "disk-0": image(0, catalog=0),
    # two catalog entries naming one extent, an entry inside the catalog itself
    "shared-extent": image(64 * 1024, cat=[0, 0, 1] + [UNALLOC] * 13, extents=[(0, ALL, pattern(14, 4096)),
                                                                               (1, ALL, pattern(15, 4096))]),
    # entries past the end of the file read as zeros, one far past it
    "entry-past-eof": image(64 * 1024, cat=[0, 5000, 0x7FFFFF] + [UNALLOC] * 13, extents=[(0, ALL, pattern(16, 4096))]),
    "truncated-data": image(MiB, extents=[(0, ALL, pattern(17, 4096))])[:512 + 1024 + 512 + 100],
    "truncated-catalog": image(MiB)[:600],
}
HOSTILE_ERR = {
    "tiny": b"Bochs",
    "zeros": b"\0" * 4096,
    "bad-magic": header(MiB, 256, magic=b"Bochs Virtual HD Imagf") + b"\xff" * 1024,
    "bad-type": header(MiB, 256, typ=b"Redolgo") + b"\xff" * 1024,
    "bad-subtype-undoable": header(MiB, 256, sub=b"Undoable") + b"\xff" * 1024,
    "bad-version": header(MiB, 256, version=0x30000) + b"\xff" * 1024,
    "catalog-too-large": header(MiB, 0x100001) + b"\xff" * 1024,
    "catalog-max-int": header(MiB, 0xFFFFFFFF) + b"\xff" * 1024,
    "catalog-too-small": header(MiB, 255) + b"\xff" * 1024,
    "catalog-small-huge-disk": header(1 << 62, 0x100000, extent=0x800000),
    "extent-0": header(MiB, 256, extent=0) + b"\xff" * 1024,
    "extent-511": header(MiB, 256, extent=511) + b"\xff" * 1024,
    "extent-3000": header(MiB, 256, extent=3000) + b"\xff" * 1024,
    "extent-16M": header(MiB, 256, extent=16 * MiB) + b"\xff" * 1024,
    "extent-2G": header(MiB, 256, extent=1 << 31) + b"\xff" * 1024,
}
# The catalog at 4 GiB (past the end: its entries read as zeros), and an
# entry whose offset wraps 64 bits as QEMU's arithmetic does.
GOOD["header-huge"] = header(64 * 1024, 16, hdr=0xFFFFFF00)
GOOD["entry-wraps"] = image(64 * 1024, extent=0x800000, bitmap=0, cat=[0xFFFFFFFE])
# Accepted at open; reading its data fails: the bitmap lies past BDRV_MAX_LENGTH.
HOSTILE_READ = {"entry-huge": image(64 * 1024, extent=0x800000, bitmap=0, cat=[0x80000000])}
IMAGES = {**GOOD, **HOSTILE_ERR, **HOSTILE_READ}


@pytest.fixture(scope="module")
def bdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bochs")
    for name, data in IMAGES.items():
        (d / f"{name}.bochs").write_bytes(data)
    tl.qemu_img("create", "-q", "-f", "raw", "zero-1M.raw", "1M", cwd=d)
    return d


CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


# Without the magic, type, subtype and version, the probe says raw.
PROBED_RAW = {"tiny", "zeros", "bad-magic", "bad-type", "bad-subtype-undoable", "bad-version"}
for _n in IMAGES:
    _e = "err-" if _n in HOSTILE_ERR else ""
    _ep = "err-" if _n in HOSTILE_ERR and _n not in PROBED_RAW else ""
    case(f"{_e}info-{_n}", "info", "-f", "bochs", f"@{_n}")
    case(f"{_e}check-{_n}", "check", "-f", "bochs", f"@{_n}")
    case(f"{_ep}info-probed-{_n}", "info", f"@{_n}")
    case(f"{_ep}check-probed-{_n}", "check", f"@{_n}")
for _n in list(GOOD) + list(HOSTILE_READ):
    case(f"info-json-{_n}", "info", "--output=json", "-f", "bochs", f"@{_n}")
    case(f"{'' if _n == 'disk-0' else 'err-'}map-{_n}", "map", "-f", "bochs", f"@{_n}")
    case(f"map-json-{_n}", "map", "--output=json", f"@{_n}")
    case(f"measure-{_n}", "measure", "-O", "qcow2", f"@{_n}")
    case(f"check-json-{_n}", "check", "--output=json", f"@{_n}")
for _n in GOOD:
    case(f"compare-self-{_n}", "compare", f"@{_n}", f"@{_n}")
case("compare-empty-raw", "compare", "-f", "bochs", "-F", "raw", "@empty-1M", "zero-1M.raw")
case("compare-data-raw", "compare", "-f", "bochs", "-F", "raw", "@one-extent", "zero-1M.raw")
case("compare-v1-v2", "compare", "@empty-v1", "@empty-1M")
case("compare-strict", "compare", "-s", "@one-extent", "@holes-in-bitmap")
case("err-compare-read-fail", "compare", "@entry-huge", "@entry-huge")
case("info-image-opts", "info", "--image-opts", "driver=bochs,file.filename=@one-extent")
case("err-info-image-opts-option", "info", "--image-opts", "driver=bochs,foo=bar,file.filename=@one-extent")
case("err-create", "create", "-f", "bochs", "new.img", "1M")


def _resolve(args):
    return [a.split("@", 1)[0] + a.split("@", 1)[1] + ".bochs" if "@" in a else a for a in args]


@pytest.mark.parametrize("args", CASES)
def test_bochs_read(instar, bdir, request, args):
    argv = _resolve(args)
    expected, actual = tl.run_both(instar, argv, cwd=bdir)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    ok = {"check": (0, 63), "compare": (0, 1)}.get(argv[0], (0,))
    assert (expected.returncode not in ok) == err_case, "case id does not match qemu-img's outcome: " + \
        expected.describe()


OUT_CASES = []


def out_case(cid, out, *args):
    OUT_CASES.append(pytest.param(out, list(args), id=cid))


for _n in list(GOOD) + list(HOSTILE_READ):
    _e = "err-" if _n in HOSTILE_READ else ""
    out_case(f"{_e}convert-raw-{_n}", "out.raw", "convert", "-O", "raw", f"@{_n}", "out.raw")
    out_case(f"{_e}convert-qcow2-{_n}", "out.qcow2", "convert", "-f", "bochs", "-O", "qcow2", f"@{_n}", "out.qcow2")
    out_case(f"{_e}dd-{_n}", "out.raw", "dd", "-f", "bochs", "-O", "raw", f"if=@{_n}", "of=out.raw", "bs=3000")
out_case("dd-skip-count", "out.raw", "dd", "if=@out-of-order", "of=out.raw", "bs=64k", "skip=1", "count=20")
out_case("convert-compressed", "out.qcow2", "convert", "-c", "-O", "qcow2", "@out-of-order", "out.qcow2")
out_case("err-convert-O-bochs", "out.img", "convert", "-O", "bochs", "@one-extent", "out.img")
out_case("err-dd-O-bochs", "out.img", "dd", "-O", "bochs", "if=@one-extent", "of=out.img")


@pytest.mark.parametrize("out,args", OUT_CASES)
def test_bochs_output(instar, bdir, tmp_path, request, out, args):
    argv = _resolve(args)
    inputs = sorted({bdir / a.rsplit("=", 1)[-1] for a in argv if a.endswith(".bochs")})
    expected, actual = tl.run_both_on_copies(instar, argv, inputs, tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    a, b = tmp_path / "oracle" / out, tmp_path / "instar" / out
    assert a.exists() == b.exists()
    if a.exists():
        assert tl.same_content(a, b), f"{out} differs"


# ---- read-write opens: bdrv_apply_auto_read_only() refuses them ("Image is read-only") -------
RW = [["resize", "@I", "2M"], ["snapshot", "-c", "s", "@I"], ["snapshot", "-a", "s", "@I"],
      ["amend", "-o", "size=2M", "@I"], ["commit", "@I"], ["rebase", "-u", "-b", "x", "-F", "raw", "@I"],
      ["bitmap", "--add", "@I", "b"], ["check", "-r", "all", "@I"], ["bench", "-w", "-c", "1", "@I"],
      ["dd", "-n", "-O", "raw", "if=@I", "of=@I"], ["snapshot", "-l", "@I"]]


@pytest.mark.parametrize("args", RW, ids=lambda a: "-".join(x.strip("-@=") for x in a[:2]))
def test_bochs_read_write(instar, bdir, tmp_path, args):
    argv = _resolve([a.replace("@I", "@one-extent") for a in args])
    src = bdir / "one-extent.bochs"
    expected, actual = tl.run_both_on_copies(instar, argv, [src], tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert (expected.returncode != 0) == (args[0] != "snapshot" or args[1] != "-l")
    assert tl.same_content(tmp_path / "oracle" / src.name, tmp_path / "instar" / src.name)
