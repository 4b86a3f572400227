"""convert options instar does not build yet (docs/differences.md): each is a
clear error, exit 1, and leaves no target behind, where qemu-img would have
converted.  The oracle runs the same command in the same test, to show the
case is one qemu-img accepts (so the refusal is a real difference, not a
shared error path)."""

import pytest

import instar_testlib as tl

@pytest.fixture
def src(tmp_path):
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "4M", cwd=tmp_path)
    tl.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", "4M", cwd=tmp_path)
    tl.qemu_io("-c", "write -P 7 0 64k", "src.qcow2", cwd=tmp_path)
    return tmp_path


def test_convert_target_image_opts_probed_refused(instar, src):
    """-n --target-image-opts without a driver: qemu-img probes the target's
    format; instar does not probe a file it is about to write and says so."""
    tl.qemu_img("create", "-q", "-f", "raw", "oracle.out", "4M", cwd=src)
    tl.qemu_img("create", "-q", "-f", "raw", "instar.out", "4M", cwd=src)
    before = (src / "instar.out").read_bytes()
    oracle = tl.run_oracle(["convert", "-n", "--target-image-opts", "src.qcow2", "file.filename=oracle.out"],
                           cwd=src)
    assert oracle.returncode == 0, oracle.describe()
    r = instar.run(["convert", "-n", "--target-image-opts", "src.qcow2", "file.filename=instar.out"], cwd=src)
    assert r.returncode == 1, r.describe()
    assert r.stderr == (b"qemu-img: Could not open 'file.filename=instar.out': instar does not probe the "
                        b"format of a --target-image-opts target: name its driver\n"), r.describe()
    assert (src / "instar.out").read_bytes() == before, "a refused convert changed the target"
