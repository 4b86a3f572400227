"""Image locking: instar honours QEMU's OFD lock bytes exactly as qemu-img does.

QEMU's file driver maps block permissions to byte-range locks (byte 100+i:
"uses permission i", byte 200+i: "does not share permission i").  Another
process holding one of them must make `info` fail with qemu-img's message,
or not fail, the same way for both tools; -U ignores locks.
"""

import fcntl
import os
import struct

import pytest

import instar_testlib as tl


def hold_lock(path, byte):
    """Open path and take an exclusive OFD lock on one byte; returns the fd."""
    fd = os.open(path, os.O_RDWR)
    flock = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, flock)
    return fd


@pytest.mark.parametrize("byte", [100, 101, 102, 103, 200, 201, 202, 203])
@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
@pytest.mark.parametrize("share", [[], ["-U"]], ids=["locking", "force-share"])
def test_info_lock_byte(instar, tmp_path, byte, fmt, share):
    name = f"img.{fmt}"
    tl.qemu_img("create", "-q", "-f", fmt, name, "1M", cwd=tmp_path)
    fd = hold_lock(tmp_path / name, byte)
    try:
        expected, actual = tl.run_both(instar, ["info", *share, name], cwd=tmp_path)
    finally:
        os.close(fd)
    tl.assert_same(expected, actual, f"lock byte {byte}")
