"""Crash consistency of the vhdx log replay (`check -r all`).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  The
replay writes both headers (new GUIDs), each descriptor's sector, grows
the file, flushes, then writes both headers with an empty log GUID: until
that last step the log is still valid, and replaying it again writes the
same sectors.  So for every N until the run completes, the interrupted
image must be one that qemu-img's `check -r all` (and instar's) replays
to the data a clean replay gives, and that, once replayed, reads the same.
"""

from __future__ import annotations

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
