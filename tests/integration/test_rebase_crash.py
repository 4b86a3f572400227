"""Crash consistency of `instar rebase` (fault injection).

INSTAR_FAULT_WRITES=N makes the VMM stop the guest before its (N+1)-th
write.  A safe rebase writes the data the new chain lacks into the image,
flushes, and only then rewrites the header to name the new backing file.
For every N until the rebase completes, the interrupted image must open in
qemu-img, `qemu-img check -r all` must leave it clean, and its
guest-visible data must be what it was: read through the old chain while
the header still names the old backing file, through the new chain once it
names the new one (`qemu-img compare` against the pristine image, which is
the oracle's reading of the original chain).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 600  # a rebase here takes far fewer; a bound against endless loops


def make_chain(d: Path, opts: str = "") -> None:
    o = ["-o", opts] if opts else []

    def io(name: str, *cmds: str) -> None:
        args = []
        for c in cmds:
            args += ["-c", c]
        tl.qemu_io("-f", "qcow2", *args, name, cwd=d)

    tl.qemu_img("create", "-q", "-f", "qcow2", *o, "base.qcow2", "8M", cwd=d)
    io("base.qcow2", "write -P 1 0 1M", "write -P 2 2M 512k", "write -c -P 3 5M 64k", "write -P 4 7M 4k")
    tl.qemu_img("create", "-q", "-f", "qcow2", *o, "-F", "qcow2", "-b", "base.qcow2", "mid.qcow2", cwd=d)
    io("mid.qcow2", "write -P 5 512k 1M", "write -z 2M 64k", "write -P 6 6M 3k")
    tl.qemu_img("create", "-q", "-f", "qcow2", *o, "-F", "qcow2", "-b", "mid.qcow2", "top.qcow2", cwd=d)
    io("top.qcow2", "write -P 7 64k 64k", "write -P 8 100k 3k", "write -z 5M 4k")
    tl.qemu_img("create", "-q", "-f", "qcow2", *o, "new.qcow2", "8M", cwd=d)
    io("new.qcow2", "write -P 1 0 512k", "write -P 9 3M 1M")


def backing_of(img: Path) -> str | None:
    r = tl.run_oracle(["info", "--output=json", "-U", str(img)])
    assert r.returncode == 0, f"qemu-img info fails on the interrupted image:\n  {r.describe()}"
    return json.loads(r.stdout).get("backing-filename")


def verify(work: Path, pristine: Path) -> str | None:
    top = work / "top.qcow2"
    backing = backing_of(top)
    tl.assert_repairs_clean("top.qcow2", cwd=work)
    assert backing_of(top) == backing
    # The same guest data through whichever chain the header names now.
    cmp = tl.run_oracle(["compare", str(pristine / "top.qcow2"), "top.qcow2"], cwd=work)
    assert cmp.returncode == 0, f"guest data changed (backing {backing!r}):\n  {cmp.describe()}"
    return backing


def sweep(instar, tmp_path: Path, args: list[str], opts: str = "") -> tuple[int, Path]:
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    make_chain(pristine, opts)
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        shutil.copytree(pristine, work)
        r = instar.run(["rebase", *args, "top.qcow2"], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        if r.returncode == 0:
            assert verify(work, pristine) != "mid.qcow2"
            return n, work
        assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        # Interrupted before the header: the old chain, unchanged in content.
        assert verify(work, pristine) == "mid.qcow2"
        shutil.rmtree(work)
    pytest.fail(f"rebase did not complete within {MAX_WRITES} writes")


@pytest.mark.parametrize("opts", ["", "cluster_size=4096", "extended_l2=on", "compat=0.10"])
def test_safe_rebase_onto_new(instar, tmp_path, opts):
    writes, _ = sweep(instar, tmp_path, ["-b", "new.qcow2", "-F", "qcow2"], opts)
    assert writes >= 5, "the scenario should write data before the header"


def test_flatten(instar, tmp_path):
    writes, final = sweep(instar, tmp_path, ["-b", ""])
    assert writes >= 5
    assert backing_of(final / "top.qcow2") is None


def test_onto_base_of_chain(instar, tmp_path):
    writes, final = sweep(instar, tmp_path, ["-b", "base.qcow2", "-F", "qcow2"])
    assert writes >= 2
    assert backing_of(final / "top.qcow2") == "base.qcow2"
