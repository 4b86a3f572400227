"""The data commands on the largest qcow2 tables, under Cinder's limits.

A 2000 TiB image with 64 KiB clusters has a 31 MiB L1 table, near
qcow2's 32 MiB maximum.  map and measure must work on it inside
``prlimit --as=1073741824 --cpu=60`` (Cinder's defaults), with the same
output as qemu-img under the same limits: guest RAM is sized for the
largest table, not for the image.  (compare and convert are left out for
time: qemu-img takes 20 to 80 s on this image here.)
"""

import pytest

import instar_testlib as tl

PRLIMIT = ["prlimit", "--as=1073741824", "--cpu=60"]

# qemu-img needs about 11 s a command here, minutes in the nested TCG system.
pytestmark = pytest.mark.not_in_slice


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    root = tmp_path_factory.mktemp("huge")
    tl.qemu_img("create", "-q", "-f", "qcow2", "huge.qcow2", "2000T", cwd=root)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 1T 64k", "-c", "write -P 9 1999T 128k", "huge.qcow2", cwd=root)
    return root


@pytest.mark.parametrize(
    "args",
    [
        ["map", "--output=json", "huge.qcow2"],
        ["measure", "-O", "qcow2", "huge.qcow2"],
    ],
    ids=["map-json", "measure"],
)
def test_huge_l1_read(instar, huge, args):
    expected = tl.run([*PRLIMIT, tl.QEMU_IMG, *args], cwd=huge, timeout=120)
    assert expected.returncode == 0, expected.describe()
    actual = tl.run([*PRLIMIT, str(instar.qemu_img), *args], cwd=huge)
    tl.assert_same(expected, actual, "under prlimit --as=1GiB --cpu=60")
