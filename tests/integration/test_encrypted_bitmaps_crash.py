"""Crash consistency of snapshot, resize, rebase and bitmap on an
encrypted qcow2 image (LUKS) with persistent bitmaps (fault injection).

The open marks the bitmaps in use before the operation's first write and
the close stores them again; a resize's grow writes its data through the
cipher of the same node.  INSTAR_FAULT_WRITES=N stops the guest before
its (N+1)-th write: at every cut `qemu-img check -r all` (with the key)
must repair the image and the key must still open it to the guest data
it had (qemu-io's reads); the complete run keeps the bitmap.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep: the guest code it proves is the same on every backend (see test_snapshot_crash.py).
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 200
SECRET = ["--object", "secret,id=s0,data=abc"]
OPTS = "driver=qcow2,file.filename={},encrypt.key-secret=s0"
READS = [x for r in ("read -P 0 0 1M", "read -P 5 1M 64k", "read -P 6 4M 64k", "read -P 0 8M 64k",
                     "read -P 3 16711680 512", "read -P 0 16712192 64000") for x in ("-c", r)]


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """A LUKS image (iter-time 10) of a size inside a partly written cluster, with a bitmap b0
    whose bits a write after it set."""
    d = tmp_path_factory.mktemp("encbm")
    tl.qemu_img_retried("create", "-q", *SECRET, "-f", "qcow2", "-o",
                        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10",
                        "img.qcow2", "16776704", cwd=d)
    o = OPTS.format("img.qcow2")
    tl.qemu_io(*SECRET, "--image-opts", o, "-c", "write -P 5 1M 64k", "-c", "write -P 3 16711680 512",
               cwd=d)
    tl.qemu_img("bitmap", *SECRET, "--add", "--image-opts", o, "b0", cwd=d)
    tl.qemu_io(*SECRET, "--image-opts", o, "-c", "write -P 6 4M 64k", cwd=d)
    return d


def bitmaps(work: Path) -> list[str]:
    r = tl.qemu_img("info", "--output=json", "-U", "img.qcow2", cwd=work)
    fs = json.loads(r.stdout).get("format-specific", {}).get("data", {})
    return [b["name"] for b in fs.get("bitmaps", [])]


@pytest.mark.parametrize("args", [
    ["snapshot", *SECRET, "-c", "s1", "--image-opts", OPTS.format("img.qcow2")],
    ["resize", *SECRET, "--preallocation=metadata", "--image-opts", OPTS.format("img.qcow2"), "20000k"],
], ids=["snapshot-c", "resize-metadata"])
def test_sweep(instar, tmp_path, src, args):
    # The guest data as before, up to the old size (a metadata preallocation's new clusters
    # decrypt to noise, in qemu-img's results too).
    sweep(instar, tmp_path, src, ["img.qcow2"], args, READS, ["b0"], least=2)


def sweep(instar, tmp_path: Path, srcdir: Path, files: list[str], args: list[str], reads: list[str],
          bms: list[str], least: int = 0) -> None:
    """Cut args before each of its writes in turn (copies of srcdir's files): every cut repairs
    with check -r all, reads as before, and keeps b0, bms or (check -r all of an image cut inside
    qemu's own window of the marking drops them) no bitmap; the complete run leaves bms, after
    at least `least` writes."""
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        for f in files:
            shutil.copy(srcdir / f, work / f)
        r = instar.run(args, cwd=work, env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        done = r.returncode == 0
        assert done or (r.returncode == 1 and b"fault injection" in r.stderr), r.describe()
        tl.assert_repairs_clean(OPTS.format("img.qcow2"), *SECRET, "--image-opts", cwd=work,
                                what=f"write {n}")
        io = tl.qemu_io(*SECRET, "--image-opts", OPTS.format("img.qcow2"), *reads, cwd=work, check=False)
        assert io.returncode == 0 and b"verification failed" not in io.stdout, f"write {n}: data changed"
        assert bitmaps(work) in (["b0"], bms, []), f"write {n}: bitmaps changed"
        if done:
            assert bitmaps(work) == bms and n >= least
            return
        shutil.rmtree(work)
    pytest.fail(f"{args[0]} did not complete within {MAX_WRITES} writes")


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    """A LUKS image (iter-time 10) over a 2M qcow2 base of 1s, one cluster of its own written,
    with a bitmap b0."""
    d = tmp_path_factory.mktemp("encrb")
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "2M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 2M", "base.qcow2", cwd=d)
    tl.qemu_img_retried("create", "-q", *SECRET, "-f", "qcow2", "-o",
                        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10",
                        "-b", "base.qcow2", "-F", "qcow2", "img.qcow2", "2M", cwd=d)
    o = OPTS.format("img.qcow2")
    tl.qemu_img("bitmap", *SECRET, "--add", "--image-opts", o, "b0", cwd=d)
    tl.qemu_io(*SECRET, "--image-opts", o, "-c", "write -P 3 1M 64k", cwd=d)
    return d


@pytest.mark.parametrize("args,bms", [
    (["rebase", *SECRET, "-b", "", "--image-opts", OPTS.format("img.qcow2")], ["b0"]),
    (["bitmap", *SECRET, "--add", "--image-opts", OPTS.format("img.qcow2"), "b1"], ["b0", "b1"]),
], ids=["rebase-flatten", "bitmap-add"])
def test_chain_sweep(instar, tmp_path, chain, args, bms):
    """A safe rebase's copies through the cipher (about 15 writes), a bitmap added: every cut
    repairs and reads as before."""
    reads = [x for r in ("read -P 1 0 1M", "read -P 3 1M 64k", "read -P 1 1088k 960k") for x in ("-c", r)]
    sweep(instar, tmp_path, chain, ["img.qcow2", "base.qcow2"], args, reads, bms)
