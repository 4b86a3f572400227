"""Crash consistency of qed writes (`convert -O qed`, `dd -O qed`).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the run completes, once the new target exists (a create cut
short leaves a new file, as qemu-img's own create does), `qemu-img check
-r all` must leave an image of the source's size with no corruption (qed
repairs no leaks: a cluster written before its table entry stays leaked), and every sector
must read as the source's or as zeros: qed_aio_write_alloc()'s order
(the need-check bit set first, the cluster's data, then its L2 table,
then the L1 entry) means a table never points at data not yet written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 200
SIZE = 5 << 20
#: (offset, length, pattern) of the source's data; the rest reads as zeros.
DATA = [(0, 1536 << 10, 0x33), (3 << 20, 4096, 0x44)]


def source(tmp_path: Path) -> Path:
    src = tmp_path / "src.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", str(src), str(SIZE))
    tl.qemu_io("-f", "qcow2", *[x for o, n, p in DATA for x in ("-c", f"write -P {p:#x} {o} {n}")], str(src))
    return src


def verify(img: Path) -> None:
    # qed's check repairs tables, not leaks: clusters written before their
    # table entry stay leaked ("no harm to data"), never corrupt.
    r = tl.run_oracle(["check", "-r", "all", "-f", "qed", str(img)])
    assert r.returncode in (0, 3), f"check -r all left corruption:\n  {r.describe()}"
    r = tl.run_oracle(["info", "-f", "qed", "--output=json", str(img)])
    assert r.returncode == 0 and json.loads(r.stdout)["virtual-size"] == SIZE, r.describe()
    raw = Path(f"{img}.raw")
    r = tl.run([tl.QEMU_IMG, "convert", "-f", "qed", "-O", "raw", str(img), str(raw)])
    assert r.returncode == 0, r.describe()
    b = raw.read_bytes()
    want = bytearray(SIZE)
    for off, n, p in DATA:
        want[off:off + n] = bytes([p]) * n
    for i in range(0, SIZE, 512):
        s = b[i:i + 512]
        assert s in (bytes(want[i:i + 512]), bytes(512)), f"sector at {i} is neither the source's nor zeros"


def sweep(instar, tmp_path: Path, args: list[str]) -> None:
    def check(work: Path, done: bool) -> None:
        img = work / "out.qed"
        verify(img)
        if done:
            c = tl.run_oracle(["compare", "-f", "qcow2", "-F", "qed", str(tmp_path / "src.qcow2"), str(img)])
            assert c.returncode == 0, c.describe()

    assert tl.new_target_sweep(instar, tmp_path, args, check, MAX_WRITES) >= 3


@pytest.mark.parametrize("opts", ["", "cluster_size=4k,table_size=2"], ids=["default", "small-clusters"])
def test_convert_sweep(instar, tmp_path, opts):
    src = source(tmp_path)
    sweep(instar, tmp_path, ["convert", "-O", "qed", *(["-o", opts] if opts else []), str(src), "out.qed"])


def test_dd_sweep(instar, tmp_path):
    src = source(tmp_path)
    sweep(instar, tmp_path, ["dd", "-O", "qed", f"if={src}", "of=out.qed", "bs=1M"])


def test_resize_sweep(instar, tmp_path):
    """resize of a qed image left with need-check set and an unknown
    autoclear bit: the open's writes (autoclear cleared, the check's), the
    header's new image size, the close's clean header.  Every interrupted
    image opens with the old or the new size after `check -r all`, its data
    intact; the completed one is qemu-img's byte for byte."""
    img0 = tmp_path / "img0.qed"
    tl.qemu_img("create", "-q", "-f", "qed", "-o", "cluster_size=4k,table_size=2", str(img0), "3M")
    tl.qemu_io("-f", "qed", "-c", "write -P 0x5a 0 64k", "-c", "write -P 0x6b 2M 4k", str(img0))
    b = bytearray(img0.read_bytes())
    b[16] |= 0x02  # QED_F_NEED_CHECK
    b[32] = 0x80  # an autoclear bit qemu does not know
    img0.write_bytes(bytes(b))
    ref = tmp_path / "ref.qed"
    tl.copy_file(img0, ref)
    tl.qemu_img("resize", str(ref), "+5M")
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        img = work / "w.qed"
        tl.copy_file(img0, img)
        r = instar.run(["resize", "w.qed", "+5M"], cwd=work, env_extra={"INSTAR_FAULT_WRITES": str(n)},
                       timeout=120)
        if r.returncode == 0:
            assert r.stdout == b"Image resized.\n", r.describe()
            assert img.read_bytes() == ref.read_bytes(), "the completed resize differs from qemu-img's"
            assert n >= 2, "fewer writes than the open's and the header's"
            return
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        c = tl.run_oracle(["check", "-r", "all", "-f", "qed", str(img)])
        assert c.returncode == 0, f"after {n} writes:\n  {c.describe()}"
        i = tl.run_oracle(["info", "-f", "qed", "--output=json", str(img)])
        assert json.loads(i.stdout)["virtual-size"] in (3 << 20, 8 << 20), i.describe()
        q = tl.run([tl.QEMU_IO, "-f", "qed", "-c", "read -P 0x5a 0 64k", "-c", "read -P 0x6b 2M 4k",
                    "-c", "read -P 0 64k 1984k", str(img)])
        assert q.returncode == 0 and b"Pattern verification failed" not in q.stdout, q.describe()
    pytest.fail(f"resize did not complete within {MAX_WRITES} writes")


def test_rebase_sweep(instar, tmp_path):
    """A safe rebase of a qed image onto another backing file: the old
    backing file's data where the two differ is written into the image
    (clusters allocated as qed_aio_write_alloc() orders them), flushed,
    then the header names the new file.  Every interrupted image passes
    `check -r all` (leaks at most) and reads, through whichever backing file its header
    names, as it read before; the completed one is qemu-img's."""
    def mk(d: Path) -> None:
        tl.qemu_img("create", "-q", "-f", "qcow2", str(d / "b1.qcow2"), "4M")
        tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 1M", "-c", "write -P 3 3M 8k", str(d / "b1.qcow2"))
        tl.qemu_img("create", "-q", "-f", "raw", str(d / "b2.raw"), "4M")
        tl.qemu_io("-f", "raw", "-c", "write -P 1 0 512k", "-c", "write -P 2 2M 64k", str(d / "b2.raw"))
        tl.qemu_img("create", "-q", "-f", "qed", "-o", "cluster_size=4k,table_size=2", "-b", "b1.qcow2",
                    "-F", "qcow2", str(d / "w.qed"), "4M", cwd=d)
        tl.qemu_io("-f", "qed", "-c", "write -P 9 100k 64k", str(d / "w.qed"))

    base = tmp_path / "base"
    base.mkdir()
    mk(base)
    before = tmp_path / "before.raw"
    tl.qemu_img("convert", "-O", "raw", str(base / "w.qed"), str(before))
    ref = tmp_path / "ref"
    ref.mkdir()
    for f in ("b1.qcow2", "b2.raw", "w.qed"):
        tl.copy_file(base / f, ref / f)
    tl.qemu_img("rebase", "-b", "b2.raw", "-F", "raw", "w.qed", cwd=ref)
    args = ["rebase", "-b", "b2.raw", "-F", "raw", "w.qed"]
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        for f in ("b1.qcow2", "b2.raw", "w.qed"):
            tl.copy_file(base / f, work / f)
        r = instar.run(args, cwd=work, env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        img = work / "w.qed"
        if r.returncode == 0:
            assert tl.same_content(img, ref / "w.qed"), "the completed rebase differs from qemu-img's"
            assert n >= 3, "fewer writes than the data's and the header's"
            return
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        # qed repairs no leaks: clusters written before their table entry stay leaked
        c = tl.run_oracle(["check", "-r", "all", "-f", "qed", "w.qed"], cwd=work)
        assert c.returncode in (0, 3), f"after {n} writes:\n  {c.describe()}"
        out = work / "now.raw"
        cv = tl.run_oracle(["convert", "-O", "raw", "w.qed", "now.raw"], cwd=work)
        assert cv.returncode == 0, cv.describe()
        assert out.read_bytes() == before.read_bytes(), f"after {n} writes the image reads otherwise"
    pytest.fail(f"rebase did not complete within {MAX_WRITES} writes")
