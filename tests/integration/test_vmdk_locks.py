"""vmdk extent files are locked as qemu locks them (cmd/open.c, cmd/lock.c).

qemu opens each extent file a descriptor names as a child of the vmdk node
and takes the format's storage permissions on it (file-posix's OFD locks),
as on the descriptor file: a run on an image whose extent file another
process uses (or holds a lock byte of) fails with qemu-img's "Failed to get
... lock" and the extent's name, and an extent of an image in use cannot be
opened for what the user's lock forbids.  Both tools run each case under a
lock held by this test or by a background qemu-io; output compared exactly.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess

import pytest

import instar_testlib as tl


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("vmdklocks")
    tl.qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "x.vmdk", "5G", cwd=d)
    tl.qemu_io("-f", "vmdk", "-c", "write -P 0x11 2047M 2M", str(d / "x.vmdk"))
    (d / "sub").mkdir()
    tl.qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", "sub/f.vmdk", "3G", cwd=d)
    return d


def hold_lock(path, byte):
    """Open path and take an exclusive OFD lock on one byte; returns the fd."""
    fd = os.open(path, os.O_RDWR)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0))
    return fd


# 100 + i: permission i in use (consistent read, write, write unchanged, resize); 200 + i: not shared.
@pytest.mark.parametrize("byte", [100, 101, 103, 200, 201])
@pytest.mark.parametrize(
    "args,held",
    [
        (["info", "x.vmdk"], "x-s002.vmdk"),
        (["check", "x.vmdk"], "x-s001.vmdk"),
        (["map", "--output=json", "x.vmdk"], "x-s003.vmdk"),
        (["info", "-U", "x.vmdk"], "x-s002.vmdk"),
        (["check", "sub/f.vmdk"], "sub/f-f002.vmdk"),
    ],
    ids=lambda x: " ".join(x) if isinstance(x, list) else x,
)
def test_extent_lock_bytes(instar, d, byte, args, held):
    fd = hold_lock(d / held, byte)
    try:
        expected, actual = tl.run_both(instar, args, cwd=d)
    finally:
        os.close(fd)
    tl.assert_same(expected, actual, f"{held} byte {byte}")


def test_extent_lock_bytes_read_write(instar, tmp_path):
    """convert -n onto the image opens its extents read-write: a reader of one stops it."""
    tl.qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", "t.vmdk", "5G", cwd=tmp_path)
    tl.qemu_img("create", "-q", "-f", "raw", "src.raw", "5G", cwd=tmp_path)
    fd = hold_lock(tmp_path / "t-f003.vmdk", 100)
    try:
        # Both fail at the open: nothing is written.
        expected, actual = tl.run_both(instar, ["convert", "-n", "-f", "raw", "-O", "vmdk", "src.raw", "t.vmdk"],
                                       cwd=tmp_path)
    finally:
        os.close(fd)
    tl.assert_same(expected, actual, "convert -n")
    # (a byte held exclusively: file-posix cannot take its shared lock, and says so without a name)
    assert expected.stderr == b"qemu-img: Could not open 't.vmdk': Failed to lock byte 100\n", \
        expected.describe()


def background_qemu_io(d, *args):
    """qemu-io holding a file open (its real locks) until its stdin closes."""
    proc = subprocess.Popen([tl.QEMU_IO, *args], cwd=d, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=tl.tool_env())
    proc.stdin.write(b"length\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else b""
    if not line.strip():
        proc.kill()
        raise RuntimeError("background qemu-io did not open the file")
    return proc


def stop(proc):
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_extent_in_use_by_qemu_io(instar, d):
    """An extent file open read-write in another process: the image cannot be read, but with -U."""
    proc = background_qemu_io(d, "-f", "raw", "x-s002.vmdk")
    try:
        for args in (["info", "x.vmdk"], ["map", "x.vmdk"], ["compare", "x.vmdk", "x.vmdk"],
                     ["info", "-U", "x.vmdk"]):
            expected, actual = tl.run_both(instar, args, cwd=d)
            tl.assert_same(expected, actual, " ".join(args))
        assert b"Is another process using the image [x-s002.vmdk]?" in expected.stderr or args[1] == "-U"
    finally:
        stop(proc)


def test_image_in_use_by_qemu_io(instar, d):
    """The image open read-write in another process: its extent files are locked too."""
    proc = background_qemu_io(d, "-f", "vmdk", "x.vmdk")
    try:
        for args in (["check", "-f", "vmdk", "x-s001.vmdk"], ["info", "-f", "raw", "x-s003.vmdk"],
                     ["check", "x.vmdk"]):
            expected, actual = tl.run_both(instar, args, cwd=d)
            tl.assert_same(expected, actual, " ".join(args))
            assert expected.returncode == (0 if args[0] == "info" else 1), expected.describe()
    finally:
        stop(proc)
