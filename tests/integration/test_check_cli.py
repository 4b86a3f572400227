"""`check` on the host side: options, opening (backing chain, data file), locks.

Every expectation comes from running the oracle (qemu-img 7.2) on the same
files in the same directory; instar must give the same exit code, stdout
and stderr.  Images are made by qemu-img at module scope.
"""

import fcntl
import os
import select
import struct
import subprocess

import pytest

import instar_testlib as tl


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A directory of small images made by qemu-img (the cwd of every case)."""
    root = tmp_path_factory.mktemp("checkcli")

    def q(*a):
        tl.qemu_img(*a, cwd=root)

    q("create", "-q", "-f", "qcow2", "a.qcow2", "16M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "a.qcow2", cwd=root)
    q("create", "-q", "-f", "raw", "r.raw", "1M")
    (root / "g.qcow2").write_bytes(b"garbage, not an image")
    # A chain top -> b1 -> b0, and broken chains at depth 1 and 2.
    q("create", "-q", "-f", "qcow2", "b0.qcow2", "1M")
    q("create", "-q", "-f", "qcow2", "-b", "b0.qcow2", "-F", "qcow2", "b1.qcow2")
    q("create", "-q", "-f", "qcow2", "-b", "b1.qcow2", "-F", "qcow2", "top.qcow2")
    q("create", "-q", "-f", "qcow2", "-u", "-b", "nope.qcow2", "-F", "qcow2", "m1.qcow2", "1M")
    q("create", "-q", "-f", "qcow2", "-u", "-b", "m1.qcow2", "-F", "qcow2", "m2.qcow2", "1M")
    q("create", "-q", "-f", "qcow2", "-u", "-b", "g.qcow2", "-F", "qcow2", "f1.qcow2", "1M")
    q("create", "-q", "-f", "qcow2", "-u", "-b", "f1.qcow2", "-F", "qcow2", "f2.qcow2", "1M")
    q("create", "-q", "-f", "qcow2", "-u", "-b", "b0.qcow2", "-F", "raw", "braw.qcow2", "1M")
    q("create", "-q", "-f", "qcow2", "-u", "-b", "b0.qcow2", "-F", "qcow2", "-o",
      "data_file=dtop.raw", "bdata.qcow2", "1M")
    # Backing names are relative to the overlay; data files to the cwd.
    (root / "sub").mkdir()
    q("create", "-q", "-f", "qcow2", "sub/x.qcow2", "1M")
    q("create", "-q", "-f", "qcow2", "-b", "x.qcow2", "-F", "qcow2", "sub/y.qcow2")
    q("create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", "sub/z.qcow2", "1M")
    q("create", "-q", "-f", "qcow2", "-o", "data_file=d.raw", "dd.qcow2", "1M")
    q("create", "-q", "-f", "qcow2", "-o", "data_file=dm.raw", "dmiss.qcow2", "1M")
    os.unlink(root / "dm.raw")
    q("create", "-q", "-f", "qcow2", "-o", "data_file=ds.raw", "sub/ds.qcow2", "1M")
    # A chain whose middle image has its data file missing.
    q("create", "-q", "-f", "qcow2", "-u", "-b", "dmiss.qcow2", "-F", "qcow2", "over-dmiss.qcow2", "1M")
    return root


def same(instar, d, *args, **kw):
    tl.assert_same(*tl.run_both(instar, ["check", *args], cwd=d, **kw), f"check {' '.join(args)}")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["a.qcow2", "b0.qcow2"],
        ["-r"],
        ["-r", "bad", "a.qcow2"],
        ["--repair=some", "a.qcow2"],
        ["-f"],
        ["--bogus", "a.qcow2"],
        ["-x", "a.qcow2"],
        ["--output=xml", "a.qcow2"],
        ["--output=xml", "nofile"],
        ["-T", "bogus", "a.qcow2"],
        ["-T", "bogus", "--output", "xml", "a.qcow2"],
        ["--image-opts", "-f", "qcow2", "a.qcow2"],
        ["-f", "bogus", "a.qcow2"],
        ["-f", "bogus", "nofile"],
        ["nofile"],
        ["-q", "nofile"],
        ["--output=json", "nofile"],
        ["-U", "-r", "leaks", "a.qcow2"],
        ["-U", "-r", "all", "nofile"],
        ["-r", "leaks", "nofile"],
        ["sub"],
    ],
    ids=lambda a: " ".join(a) or "none",
)
def test_option_and_open_errors(instar, d, args):
    same(instar, d, *args)


@pytest.mark.parametrize(
    "args",
    [
        ["-f", "raw", "a.qcow2"],
        ["-f", "raw", "r.raw"],
        ["r.raw"],
        ["g.qcow2"],
        ["--output=json", "r.raw"],
        ["-q", "r.raw"],
        ["-U", "r.raw"],
        ["-T", "none", "-f", "raw", "r.raw"],
        ["-r", "leaks", "r.raw"],
        ["-r", "all", "-f", "raw", "r.raw"],
    ],
    ids=lambda a: " ".join(a),
)
def test_no_check_for_raw(instar, d, args):
    same(instar, d, *args)


@pytest.mark.parametrize(
    "img",
    [
        "m1.qcow2",
        "m2.qcow2",
        "f1.qcow2",
        "f2.qcow2",
        "sub/z.qcow2",
        "dmiss.qcow2",
        "over-dmiss.qcow2",
        "-f qcow2 g.qcow2",
        "-f qcow2 r.raw",
    ],
)
def test_chain_failures(instar, d, img):
    same(instar, d, *img.split())


def test_chain_failure_absolute_path(instar, d):
    same(instar, d, str(d / "m2.qcow2"))


def test_data_file_relative_to_cwd(instar, d, tmp_path):
    # qemu opens the data file relative to the current directory, not the image's.
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "data_file=here.raw", "img.qcow2", "1M", cwd=tmp_path)
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    same(instar, sub, "../img.qcow2")


# ---- A clean check (needs the guest planner) ----


@pytest.mark.parametrize(
    "args",
    [
        ["a.qcow2"],
        ["-q", "a.qcow2"],
        ["--output=json", "a.qcow2"],
        ["--output", "human", "a.qcow2"],
        ["-q", "--output=json", "a.qcow2"],
        ["-U", "a.qcow2"],
        ["-T", "writeback", "a.qcow2"],
        ["-f", "qcow2", "a.qcow2"],
        ["top.qcow2"],
        ["sub/y.qcow2"],
        ["braw.qcow2"],
        ["dd.qcow2"],
        ["bdata.qcow2"],
        ["--object", "secret,id=s0,data=x", "a.qcow2"],
        ["file:a.qcow2"],
        ["--output=json", "file:a.qcow2"],
    ],
    ids=lambda a: " ".join(a),
)
def test_clean_images(instar, d, args):
    same(instar, d, *args)


# ---- Locks ----


def hold_lock(path, byte):
    """Open path and take an exclusive OFD lock on one byte; returns the fd."""
    fd = os.open(path, os.O_RDWR)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0))
    return fd


LOCK_BYTES = [100, 101, 102, 103, 200, 201, 202, 203]


@pytest.mark.parametrize("byte", LOCK_BYTES)
@pytest.mark.parametrize(
    "args,held",
    [
        (["a.qcow2"], "a.qcow2"),
        (["-U", "a.qcow2"], "a.qcow2"),
        (["-f", "raw", "a.qcow2"], "a.qcow2"),
        (["r.raw"], "r.raw"),
        (["top.qcow2"], "b1.qcow2"),
        (["top.qcow2"], "b0.qcow2"),
        (["-U", "top.qcow2"], "b0.qcow2"),
        (["dd.qcow2"], "d.raw"),
        (["-U", "dd.qcow2"], "d.raw"),
    ],
    ids=lambda x: " ".join(x) if isinstance(x, list) else x,
)
def test_lock_bytes(instar, d, byte, args, held):
    fd = hold_lock(d / held, byte)
    try:
        expected, actual = tl.run_both(instar, ["check", *args], cwd=d)
    finally:
        os.close(fd)
    tl.assert_same(expected, actual, f"{held} byte {byte}")


@pytest.mark.parametrize("byte", LOCK_BYTES)
@pytest.mark.parametrize("held", ["a.qcow2", "b0.qcow2"])
def test_lock_bytes_read_write(instar, d, byte, held):
    """-r opens read-write: where the oracle fails on a lock, instar fails the same way."""
    img = "a.qcow2" if held == "a.qcow2" else "b1.qcow2"
    fd = hold_lock(d / held, byte)
    try:
        expected, actual = tl.run_both(instar, ["check", "-r", "leaks", img], cwd=d)
    finally:
        os.close(fd)
    tl.assert_same(expected, actual, f"-r leaks, {held} byte {byte}")


@pytest.fixture
def qemu_io_holding(d):
    """a.qcow2 held open read-write by a background qemu-io (its real locks)."""
    proc = subprocess.Popen(
        [tl.QEMU_IO, "-f", "qcow2", "a.qcow2"],
        cwd=d,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=tl.tool_env(),
    )
    proc.stdin.write(b"length\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else b""
    if not line.strip():
        proc.kill()
        raise RuntimeError("background qemu-io did not open the image")
    yield "a.qcow2"
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    "args",
    [["a.qcow2"], ["-r", "leaks", "a.qcow2"], ["-r", "all", "a.qcow2"], ["--output=json", "a.qcow2"]],
    ids=lambda a: " ".join(a),
)
def test_qemu_io_holds_the_image(instar, d, qemu_io_holding, args):
    same(instar, d, *args)


def test_force_share_while_qemu_io_holds(instar, d, qemu_io_holding):
    """-U: qemu-img checks an image in use (the result needs the guest planner)."""
    same(instar, d, "-U", "a.qcow2")


def test_quiet_keeps_stderr(instar, d):
    """-q silences stdout only: open errors still print."""
    same(instar, d, "-q", "m2.qcow2")
