"""cloop parity (qemu-img 7.2 vs instar): the read-only compressed loop image.

qemu-img cannot create cloop images, so every image is built field by field
below (block/cloop.c: the V2.0 shell preamble, block size and block count
big-endian at 128, then n_blocks + 1 big-endian offsets; block i is the zlib
stream between offsets i and i + 1): valid images of several shapes (block
sizes from 512 bytes to 1 MiB, poorly compressible blocks, streams with
trailing bytes, a block count whose sector product wraps 32 bits) and
hostile ones (every open check: block sizes, block counts, the offsets
table's size, a decreasing offset, an oversized block; offsets past the end
of the file or past BDRV_MAX_LENGTH; corrupt streams, short streams,
streams with a bad Adler-32, and compression bombs, which must fail the
read, not fill memory).  Read-only commands run on the same files under
both tools; convert and dd run on copies, outputs compared byte for byte.
A case id starting with `err-` must make qemu-img fail.
"""

from __future__ import annotations

import random
import struct
import zlib

import pytest

import instar_testlib as tl

MiB = 1 << 20
PREAMBLE = b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"


def cloop(block_size, blocks=(), n_blocks=None, offsets=None, tail=b""):
    """blocks: compressed streams (bytes); offsets default to back to back after the table."""
    n = len(blocks) if n_blocks is None else n_blocks
    if offsets is None:
        offsets = [128 + 8 + 8 * (n + 1)]
        for b in blocks:
            offsets.append(offsets[-1] + len(b))
    return (PREAMBLE.ljust(128, b"\0") + struct.pack(">II", block_size, n)
            + struct.pack(f">{len(offsets)}Q", *offsets) + b"".join(blocks) + tail)


_P512 = bytes((k * 13) & 0xFF for k in range(512))


def pattern(seed, n):
    """Byte i is (seed * 7 + i * 13 + (i >> 9)) & 0xFF, made a 512-byte run at a time
    (512 * 13 is 0 mod 256, so run j is _P512 shifted by seed * 7 + j)."""
    runs = (_P512.translate(bytes((x + seed * 7 + j) & 0xFF for x in range(256)))
            for j in range(-(-n // 512)))
    return b"".join(runs)[:n]


def z(data, level=6):
    return zlib.compress(data, level)


def noise(seed, n):
    return random.Random(seed).randbytes(n)


B4K = [z(pattern(1, 4096)), z(b"\0" * 4096), z(noise(2, 4096), 9), z(pattern(3, 4096), 1)]
GOOD = {
    "four-4k": cloop(4096, B4K),
    "one-512": cloop(512, [z(pattern(4, 512))]),
    "sixty-four-64k": cloop(65536, [z(pattern(i, 65536)) for i in range(64)]),
    "one-1M": cloop(MiB, [z(noise(5, MiB), 1)]),
    "empty": cloop(4096, []),
    "stored-block": cloop(4096, [z(noise(6, 4096), 0)]),
    # bytes after the end of a stream are ignored
    "trailing-bytes": cloop(4096, [z(pattern(7, 4096)) + b"junk", z(pattern(8, 4096))]),
    # n_blocks * sectors_per_block wraps 32 bits: QEMU's uint32_t product
    "sectors-wrap": cloop(64 * MiB, [], n_blocks=32769, offsets=[0] * 32770),
}
HOSTILE_ERR = {
    "tiny": PREAMBLE,
    "block-size-0": cloop(0, B4K),
    "block-size-1000": cloop(1000, B4K),
    "block-size-513": cloop(513, B4K),
    "block-size-128M": cloop(128 * MiB, B4K),
    "block-size-4G-512": cloop(0xFFFFFE00, B4K),
    "n-blocks-2-29": cloop(4096, [], n_blocks=0x20000000, offsets=[]),
    "n-blocks-max": cloop(4096, [], n_blocks=0xFFFFFFFF, offsets=[]),
    "too-many-offsets": cloop(4096, [], n_blocks=0x4000000, offsets=[]),
    "not-monotonic": cloop(4096, B4K[:2], offsets=[200, 100, 300]),
    "not-monotonic-late": cloop(4096, B4K, offsets=[152, 200, 300, 400, 10]),
    "truncated-table": cloop(4096, B4K)[:150],
    "block-over-128M": cloop(4096, [], n_blocks=1, offsets=[0, 128 * MiB + 1]),
}
# Accepted at open; reading some block fails.
HOSTILE_READ = {
    "truncated-last-block": cloop(4096, B4K)[:-10],
    # block 0 starts inside the table, block 1 is empty
    "block-gap": cloop(4096, [z(pattern(9, 4096))], offsets=[200, 400 + 0, 400])[:136 + 16]
    + b"\0" * 48 + z(pattern(9, 4096)).ljust(200, b"\0"),
    "bomb": cloop(4096, [z(b"\0" * (16 * MiB))]),
    "bomb-tiny-block": cloop(512, [z(b"\x41" * 600000)] * 2),
    "short-stream": cloop(4096, [z(pattern(10, 2048))]),
    "corrupt-stream": cloop(4096, [b"\x78\x9c" + b"\xff" * 30]),
    "bad-adler": cloop(4096, [z(pattern(11, 4096))[:-4] + b"\0\0\0\0"]),
    "raw-deflate": cloop(4096, [z(pattern(12, 4096))[2:-4]]),
    "empty-stream": cloop(4096, [b"", z(pattern(13, 4096))]),
    "offset-past-eof": cloop(4096, [], n_blocks=1, offsets=[1 << 40, (1 << 40) + 100]),
    "offset-past-max": cloop(4096, [], n_blocks=1, offsets=[(1 << 63) - 50, (1 << 63) + 50]),
    "block-128M-zeros": cloop(4096, [], n_blocks=1, offsets=[0, 128 * MiB]),
    "size-wrap-zero": cloop(64 * MiB, [], n_blocks=65536, offsets=[0] * 65537),
}
IMAGES = {**GOOD, **HOSTILE_ERR, **HOSTILE_READ}
# The probe needs the preamble, whatever follows: these probe as cloop and fail.
PROBED_RAW = set()


@pytest.fixture(scope="module")
def cdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cloop")
    for name, data in IMAGES.items():
        (d / f"{name}.cloop").write_bytes(data)
    tl.qemu_img("create", "-q", "-f", "raw", "zero-16k.raw", "16k", cwd=d)
    return d


CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


def _size(n):
    return n not in HOSTILE_ERR and n not in ("empty", "size-wrap-zero")


for _n in IMAGES:
    _e = "err-" if _n in HOSTILE_ERR else ""
    case(f"{_e}info-{_n}", "info", "-f", "cloop", f"@{_n}")
    case(f"{_e}info-probed-{_n}", "info", f"@{_n}")
    case(f"{_e}check-{_n}", "check", f"@{_n}")
for _n in list(GOOD) + list(HOSTILE_READ):
    case(f"info-json-{_n}", "info", "--output=json", f"@{_n}")
    case(f"{'err-' if _size(_n) else ''}map-{_n}", "map", "-f", "cloop", f"@{_n}")
    case(f"map-json-{_n}", "map", "--output=json", f"@{_n}")
    case(f"measure-{_n}", "measure", "-O", "qcow2", f"@{_n}")
for _n in GOOD:
    if _n not in ("sectors-wrap", "block-gap", "truncated-last-block"):
        case(f"compare-self-{_n}", "compare", f"@{_n}", f"@{_n}")
for _n in ("bomb", "short-stream", "corrupt-stream", "bad-adler", "raw-deflate", "empty-stream",
           "offset-past-eof", "offset-past-max"):
    case(f"err-compare-{_n}", "compare", "-f", "cloop", "-F", "raw", f"@{_n}", "zero-16k.raw")
case("compare-four-raw", "compare", "-f", "cloop", "-F", "raw", "@four-4k", "zero-16k.raw")
case("compare-strict", "compare", "-s", "@four-4k", "@trailing-bytes")
case("info-image-opts", "info", "--image-opts", "driver=cloop,file.filename=@four-4k")
case("err-create", "create", "-f", "cloop", "new.img", "1M")


def _resolve(args):
    return [a.split("@", 1)[0] + a.split("@", 1)[1] + ".cloop" if "@" in a else a for a in args]


@pytest.mark.parametrize("args", CASES)
def test_cloop_read(instar, cdir, request, args):
    argv = _resolve(args)
    expected, actual = tl.run_both(instar, argv, cwd=cdir)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    ok = {"check": (0, 63), "compare": (0, 1)}.get(argv[0], (0,))
    assert (expected.returncode not in ok) == err_case, "case id does not match qemu-img's outcome: " + \
        expected.describe()


OUT_CASES = []


def out_case(cid, out, *args):
    OUT_CASES.append(pytest.param(out, list(args), id=cid))


for _n in list(GOOD) + list(HOSTILE_READ):
    if _n in ("sectors-wrap", "size-wrap-zero"):
        continue
    _e = "err-" if _n in HOSTILE_READ else ""
    out_case(f"{_e}convert-raw-{_n}", "out.raw", "convert", "-O", "raw", f"@{_n}", "out.raw")
    out_case(f"{_e}convert-qcow2-{_n}", "out.qcow2", "convert", "-f", "cloop", "-O", "qcow2", f"@{_n}",
             "out.qcow2")
    out_case(f"{_e}dd-{_n}", "out.raw", "dd", "-f", "cloop", "-O", "raw", f"if=@{_n}", "of=out.raw", "bs=3000")
out_case("dd-skip-count", "out.raw", "dd", "if=@sixty-four-64k", "of=out.raw", "bs=64k", "skip=3", "count=20")
out_case("convert-compressed", "out.qcow2", "convert", "-c", "-O", "qcow2", "@sixty-four-64k", "out.qcow2")
out_case("err-convert-O-cloop", "out.img", "convert", "-O", "cloop", "@four-4k", "out.img")


@pytest.mark.parametrize("out,args", OUT_CASES)
def test_cloop_output(instar, cdir, tmp_path, request, out, args):
    argv = _resolve(args)
    inputs = sorted({cdir / a.rsplit("=", 1)[-1] for a in argv if a.endswith(".cloop")})
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
def test_cloop_read_write(instar, cdir, tmp_path, args):
    argv = _resolve([a.replace("@I", "@four-4k") for a in args])
    src = cdir / "four-4k.cloop"
    expected, actual = tl.run_both_on_copies(instar, argv, [src], tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert (expected.returncode != 0) == (args[0] != "snapshot" or args[1] != "-l")
    assert tl.same_content(tmp_path / "oracle" / src.name, tmp_path / "instar" / src.name)
