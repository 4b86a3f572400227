"""Crash consistency of the vhdx log replay (`check -r all`), and of vhdx
writes (`convert -O vhdx`, `dd -O vhdx`).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  The
replay writes both headers (new GUIDs), each descriptor's sector, grows
the file, flushes, then writes both headers with an empty log GUID: until
that last step the log is still valid, and replaying it again writes the
same sectors.  So for every N until the run completes, the interrupted
image must be one that qemu-img's `check -r all` (and instar's) replays
to the data a clean replay gives, and that, once replayed, reads the same.

A write allocates a block at the end of the file, writes and flushes its
data, then puts the BAT entry through the log (both headers name a new
log, the entry is written and flushed, replayed into the BAT, the headers
reset).  So a cut leaves a block no BAT entry names (a longer file), or a
log that the next read-write open replays, or a BAT already updated: for
every N, `qemu-img check -r all` must succeed on the new target and every
sector read as the source's or as zeros.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "parity"))
import vhdx_build as vb  # noqa: E402

MiB = vb.MiB
MAX_WRITES = 64


def _images() -> dict:
    blk = 4 * MiB | 6
    data = bytes(range(256)) * (MiB // 256)
    small = dict(size=4 * MiB, bs=MiB, length=5 * MiB, bat=[blk])
    one = vb.log_entry(3, [("zero", 4 * MiB, 8192), ("data", 4 * MiB + 65536, b"\x5a" * 4096)])
    two = [(0, vb.log_entry(9, [("data", 4 * MiB, b"\x02" * 4096)])),
           (8192, vb.log_entry(10, [("data", 4 * MiB + 4096, b"\x03" * 4096),
                                    ("data", 2 * MiB + 65536 * 3, b"\x04" * 4096)], last=6 * MiB + 1))]
    return {"one": vb.image(**small, log=[(0, one)])[:4 * MiB] + data,
            "two": vb.image(**small, log=two)[:4 * MiB] + data}


def raw_of(tool: list[str], img: Path) -> bytes:
    out = Path(f"{img}.raw")
    r = tl.run([*tool, "convert", "-f", "vhdx", "-O", "raw", str(img), str(out)])
    assert r.returncode == 0, r.describe()
    return out.read_bytes()


@pytest.mark.parametrize("name", ["one", "two"])
def test_replay_sweep(instar, tmp_path, name):
    img0 = tmp_path / "w.vhdx"
    img0.write_bytes(_images()[name])
    clean = tmp_path / "clean.vhdx"
    clean.write_bytes(img0.read_bytes())
    r = tl.run([tl.QEMU_IMG, "check", "-r", "all", "-f", "vhdx", str(clean)])
    assert r.returncode == 0, r.describe()
    want = raw_of([tl.QEMU_IMG], clean)
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        img = work / "w.vhdx"
        img.write_bytes(img0.read_bytes())
        r = instar.run(["check", "-r", "all", "-f", "vhdx", "w.vhdx"], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        done = r.returncode == 0
        if not done:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        # qemu-img replays what is left (or finds nothing to do) and reads the clean result.
        for tool, label in ([tl.QEMU_IMG], "qemu"), ([str(instar.qemu_img)], "instar"):
            copy = work / f"{label}.vhdx"
            copy.write_bytes(img.read_bytes())
            c = tl.run([*tool, "check", "-r", "all", "-f", "vhdx", str(copy)])
            assert c.returncode == 0, c.describe()
            assert raw_of([tl.QEMU_IMG], copy) == want, f"{label} after {n} writes: data differs"
        if done:
            assert n > 4
            return
    pytest.fail(f"check -r all did not complete within {MAX_WRITES} writes")


# ---- convert -O vhdx, dd -O vhdx ------------------------------------------------------------------
SIZE = 5 << 20
#: (offset, length, pattern) of the source's data; the rest reads as zeros.
DATA = [(0, 1536 << 10, 0x33), (3 << 20, 4096, 0x44), (SIZE - 512, 512, 0x55)]


def source(tmp_path: Path) -> Path:
    src = tmp_path / "src.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", str(src), str(SIZE))
    tl.qemu_io("-f", "qcow2", *[x for o, n, p in DATA for x in ("-c", f"write -P {p:#x} {o} {n}")], str(src))
    return src


def verify(img: Path) -> None:
    r = tl.run_oracle(["check", "-r", "all", "-f", "vhdx", str(img)])
    assert r.returncode == 0, f"check -r all failed:\n  {r.describe()}"
    r = tl.run_oracle(["info", "-f", "vhdx", "--output=json", str(img)])
    assert r.returncode == 0 and json.loads(r.stdout)["virtual-size"] == SIZE, r.describe()
    b = raw_of([tl.QEMU_IMG], img)
    want = bytearray(SIZE)
    for off, n, p in DATA:
        want[off:off + n] = bytes([p]) * n
    for i in range(0, SIZE, 512):
        assert b[i:i + 512] in (bytes(want[i:i + 512]), bytes(512)), \
            f"sector at {i} is neither the source's nor zeros"


def write_sweep(instar, tmp_path: Path, args: list[str]) -> None:
    def check(work: Path, done: bool) -> None:
        img = work / "out.vhdx"
        verify(img)
        if done:
            c = tl.run_oracle(["compare", "-f", "qcow2", "-F", "vhdx", str(tmp_path / "src.qcow2"), str(img)])
            assert c.returncode == 0, c.describe()

    assert tl.new_target_sweep(instar, tmp_path, args, check, 200) >= 10


@pytest.mark.parametrize("opts", ["block_size=1M", "subformat=fixed,block_size=1M", "block_size=1M,log_size=1M"],
                         ids=["dynamic", "fixed", "dynamic-log1m"])
def test_convert_sweep(instar, tmp_path, opts):
    src = source(tmp_path)
    write_sweep(instar, tmp_path, ["convert", "-O", "vhdx", "-o", opts, str(src), "out.vhdx"])


@pytest.mark.parametrize("opts", [["-o", "block_size=1M", str(SIZE)],
                                  ["-o", "subformat=fixed,block_size=1M,log_size=1M", str(SIZE)]],
                         ids=["dynamic", "fixed"])
def test_convert_n_sweep(instar, tmp_path, opts):
    """convert -n onto a target qemu-img made: every write of the data run is cut in turn
    (a new target's sweep cuts the create run first, whose writes use up the first cuts)."""
    src = source(tmp_path)
    target = tmp_path / "target.vhdx"
    tl.qemu_img("create", "-q", "-f", "vhdx", *opts[:-1], str(target), opts[-1])
    for n in range(300):
        work = tmp_path / f"n{n}"
        work.mkdir()
        img = work / "out.vhdx"
        tl.copy_file(target, img)
        r = instar.run(["convert", "-n", "-O", "vhdx", str(src), "out.vhdx"], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        done = r.returncode == 0
        if not done:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        verify(img)
        if done:
            c = tl.run_oracle(["compare", "-f", "qcow2", "-F", "vhdx", str(src), str(img)])
            assert c.returncode == 0, c.describe()
            assert n >= 10
            return
        img.unlink()
        (work / "out.vhdx.raw").unlink()
    pytest.fail("convert -n did not complete within 300 writes")


def test_dd_sweep(instar, tmp_path):
    src = source(tmp_path)
    write_sweep(instar, tmp_path, ["dd", "-O", "vhdx", f"if={src}", "of=out.vhdx", "bs=512k"])
