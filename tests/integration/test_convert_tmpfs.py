"""convert into qcow2 on tmpfs: the file's holes as qemu-img leaves them.

A write into part of a new qcow2 cluster zeroes the whole cluster first
(qcow2's handle_alloc_space).  file-posix tries FALLOC_FL_ZERO_RANGE,
which tmpfs lacks, then a punched hole allocated again with fallocate,
which leaves the untouched part of the cluster a hole for SEEK_HOLE on
tmpfs; on ext4 ZERO_RANGE does it.  instar's host follows the same order
(vmm/hc.c zero_allocate), so the target has qemu-img's holes on both.
The parity suites run on the temp dir's file system; this runs on
/dev/shm, where a ZERO_RANGE-only emulation would write the zeros.
"""

import os
import shutil
import subprocess

import pytest

import instar_testlib as tl
from output_compare import host_extents

SHM = "/dev/shm"


def _is_tmpfs(path):
    try:
        out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return out.stdout.strip() == "tmpfs"


@pytest.fixture
def shm_dir(tmp_path):
    if not _is_tmpfs(SHM):
        pytest.skip(f"{SHM} is not a tmpfs here")
    d = tmp_path.__class__(os.path.join(SHM, f"instar-test-{os.getpid()}-{tmp_path.name}"))
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("opts", [[], ["-o", "cluster_size=2M"], ["-o", "extended_l2=on"]],
                         ids=["64k", "2M", "extl2"])
def test_convert_qcow2_holes_on_tmpfs(instar, shm_dir, opts):
    tl.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", "8M", cwd=shm_dir)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 1049088 4k",
               "-c", "write -P 0x33 3M 40k", "-c", "write -P 0x44 5000k 4k", "src.qcow2", cwd=shm_dir)
    oracle = tl.run_oracle(["convert", "-O", "qcow2", *opts, "src.qcow2", "q.qcow2"], cwd=shm_dir)
    assert oracle.returncode == 0, oracle.describe()
    r = instar.run(["convert", "-O", "qcow2", *opts, "src.qcow2", "i.qcow2"], cwd=shm_dir)
    assert r.returncode == 0, r.describe()
    q, i = shm_dir / "q.qcow2", shm_dir / "i.qcow2"
    assert tl.same_content(q, i), "the converted image differs from qemu-img's"
    eq = host_extents(q)
    assert len(eq) > 2, f"qemu-img left no hole inside the clusters here: {eq}"
    assert host_extents(i) == eq, f"host extents differ:\n qemu-img: {eq}\n instar:   {host_extents(i)}"
