"""Crash consistency of `convert -n --bitmaps`, and of `convert -n` into an
image with persistent bitmaps (fault injection).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the convert completes, the interrupted target must hold no
corruption (`qemu-img check`: leaked clusters at most), `check -r all`
must leave it clean, every sector must read as before the convert or as
the source, and its bitmaps must be either none (the header does not
point at a directory yet) or exactly the source's (names, granularity,
enabled flag, bits): never a directory whose tables or data are not
written.  The completed convert leaves the source's data and bitmaps.

Into an image with bitmaps, qemu marks them in use at open (the
autoclear bit dropped, the directory updated in place, the bit back),
records the writes and stores them anew at close: an interrupted run
leaves the old bitmaps, none (autoclear bit dropped), the same ones in
use, or the final ones.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 400
SECTOR = 512


def raw(img: Path, out: Path) -> bytes:
    r = tl.run_oracle(["convert", "-U", "-O", "raw", str(img), str(out)])
    assert r.returncode == 0, r.describe()
    data = out.read_bytes()
    out.unlink()
    return data


def bitmaps(path: Path, mask: int = 2) -> dict:
    """{name: (granularity bits, auto flag, bits as an int)}: {} without the
    extension (qcow2.txt, "Bitmaps extension", "Bitmap directory/table")."""
    data = path.read_bytes()
    cs = 1 << struct.unpack_from(">I", data, 20)[0]
    size = struct.unpack_from(">Q", data, 24)[0]
    if not struct.unpack_from(">Q", data, 88)[0] & 1:
        return {}
    off = struct.unpack_from(">I", data, 100)[0]
    while True:
        magic, length = struct.unpack_from(">II", data, off)
        if magic == 0:
            return {}
        if magic == 0x23852875:
            _nb, _r, dsize, doff = struct.unpack_from(">IIQQ", data, off + 8)
            break
        off += 8 + ((length + 7) & ~7)
    out, e = {}, doff
    while e < doff + dsize:
        t_off, t_size, flags, _ty, gbits, nlen, extra = struct.unpack_from(">QIIBBHI", data, e)
        nbits = ((size - 1) >> gbits) + 1
        ser = (nbits + 63) // 64 * 8
        bits = bytearray()
        for k in range(t_size):
            entry = struct.unpack_from(">Q", data, t_off + 8 * k)[0]
            chunk = min(cs, ser - k * cs)
            o = entry & 0x00fffffffffffe00
            bits += data[o:o + chunk].ljust(chunk, b"\0") if o else (b"\xff" if entry & 1 else b"\0") * chunk
        out[data[e + 24:e + 24 + nlen].decode()] = (
            gbits, flags & mask, int.from_bytes(bytes(bits), "little") & ((1 << nbits) - 1))
        e += (24 + nlen + extra + 7) & ~7
    return out


def verify(img: Path, old: bytes, new: bytes, want_bitmaps: dict, also=()) -> None:
    r = tl.run_oracle(["check", "--output=json", str(img)])
    assert r.returncode in (0, 3), f"check finds more than leaks:\n  {r.describe()}"
    assert json.loads(r.stdout).get("corruptions", 0) == 0, r.describe()
    got = raw(img, img.with_suffix(".raw"))
    assert len(got) == len(old) == len(new)
    for i in range(0, len(got), SECTOR):
        s = got[i:i + SECTOR]
        assert s in (old[i:i + SECTOR], new[i:i + SECTOR]), f"sector at {i} is neither old nor new data"
    bm = bitmaps(img)
    ok = bm in ({}, want_bitmaps, *also)
    if not ok and bm:
        # In use: every bitmap flagged, the tables still the old ones.
        full = bitmaps(img, mask=3)
        ok = all(f & 1 for _g, f, _b in full.values()) and bitmaps(img) in also
    assert ok, f"bitmaps half written: {sorted(bm)}"
    tl.assert_repairs_clean(img)
    assert bitmaps(img) == bm, "the repair changed the bitmaps"


@pytest.mark.parametrize("cs", ["64k", "2M"])
def test_convert_bitmaps_sweep(instar, tmp_path, cs):
    d = tmp_path / "img"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", "8M", cwd=d)
    tl.qemu_img("bitmap", "--add", "src.qcow2", "a", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "512", "src.qcow2", "b", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "4k", "src.qcow2", "c", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x5a 0 300k", "-c", "write -P 0x6b 7M 5k", "src.qcow2", cwd=d)
    tl.qemu_img("bitmap", "--disable", "src.qcow2", "c", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x7c 2M 64k", "src.qcow2", cwd=d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", f"cluster_size={cs}", "t.qcow2", "8M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x11 1M 1M", "t.qcow2", cwd=d)
    old = raw(d / "t.qcow2", tmp_path / "old.raw")
    new = raw(d / "src.qcow2", tmp_path / "new.raw")
    want = bitmaps(d / "src.qcow2")
    assert len(want) == 3 and all(b for _g, _f, b in want.values())
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        shutil.copytree(d, work)
        img = work / "t.qcow2"
        r = instar.run(["convert", "-n", "--bitmaps", "-O", "qcow2", "src.qcow2", "t.qcow2"], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode == 0:
            assert bitmaps(img) == want
            verify(img, old, new, want)
            cmp = tl.run_oracle(["compare", "src.qcow2", "t.qcow2"], cwd=work)
            assert cmp.returncode == 0, cmp.describe()
            assert n >= 8, "the sweep did not reach the bitmap writes"
            return
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        verify(img, old, new, want)
        shutil.rmtree(work)
    pytest.fail(f"convert did not complete within {MAX_WRITES} writes")


@pytest.mark.parametrize("cmd", [["convert", "-n", "-O", "qcow2", "src.qcow2", "t.qcow2"],
                                 ["bench", "-w", "-c", "12", "-s", "64k", "-S", "640k", "--pattern=157", "t.qcow2"]],
                         ids=["convert-n", "bench-w"])
def test_write_into_bitmaps_sweep(instar, tmp_path, cmd):
    d = tmp_path / "img"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", "8M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x5a 0 300k", "-c", "write -P 0x6b 7M 5k", "src.qcow2", cwd=d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "t.qcow2", "8M", cwd=d)
    tl.qemu_img("bitmap", "--add", "t.qcow2", "a", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "512", "t.qcow2", "b", cwd=d)
    tl.qemu_img("bitmap", "--add", "t.qcow2", "off", cwd=d)
    tl.qemu_img("bitmap", "--disable", "t.qcow2", "off", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x11 1M 1M", "t.qcow2", cwd=d)
    old = raw(d / "t.qcow2", tmp_path / "old.raw")
    before = bitmaps(d / "t.qcow2")
    final = tmp_path / "final"
    shutil.copytree(d, final)
    o = tl.run_oracle(cmd, cwd=final)
    assert o.returncode == 0, o.describe()
    new = raw(final / "t.qcow2", tmp_path / "new.raw")
    after = bitmaps(final / "t.qcow2")
    assert after != before and set(after) == set(before)
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        shutil.copytree(d, work)
        img = work / "t.qcow2"
        r = instar.run(cmd, cwd=work, env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode == 0:
            assert tl.same_content(img, (final / "t.qcow2"))
            verify(img, old, new, after)
            assert n >= 8, "the sweep did not reach the bitmap writes"
            return
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        verify(img, old, new, after, also=(before,))
        shutil.rmtree(work)
    pytest.fail(f"convert did not complete within {MAX_WRITES} writes")
