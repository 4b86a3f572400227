"""A full file system: qemu-img's "No space left on device", not EIO.

The target lives on a 24 MiB tmpfs mounted for the test (root only; the
test skips where mount is not permitted).  Each command fills it: data
written by the host's copy (a raw source), from guest RAM (a vmdk
streamOptimized source, whose writes the guest joins), through a qcow2
target's driver, and by dd.  Exit code and stderr must be qemu-img's.
"""

import subprocess

import pytest

import instar_testlib as tl


@pytest.fixture
def full_fs(tmp_path):
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def sources(tmp_path):
    tl.qemu_img("create", "-q", "-f", "raw", "s.raw", "64M", cwd=tmp_path)
    tl.qemu_io("-f", "raw", "-c", "write -P 7 0 60M", "s.raw", cwd=tmp_path)
    tl.qemu_img("convert", "-O", "vmdk", "-o", "subformat=streamOptimized", "s.raw", "s.vmdk",
                cwd=tmp_path)
    return tmp_path


CASES = {
    "convert-raw-from-raw": ["convert", "-O", "raw", "s.raw", "{out}"],
    "convert-raw-from-vmdk": ["convert", "-O", "raw", "s.vmdk", "{out}"],
    "convert-qcow2-from-vmdk": ["convert", "-O", "qcow2", "s.vmdk", "{out}"],
    "dd-raw-from-vmdk": ["dd", "-O", "raw", "bs=1M", "if=s.vmdk", "of={out}"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_full_file_system(instar, sources, full_fs, case):
    out = str(full_fs / "out")
    args = [a.replace("{out}", out) for a in CASES[case]]
    oracle = tl.run_oracle(args, cwd=sources)
    assert b"No space left on device" in oracle.stderr, oracle.describe()
    (full_fs / "out").unlink()
    actual = instar.run(args, cwd=sources)
    tl.assert_same(oracle, actual, case)
