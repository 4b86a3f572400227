"""convert never destroys an image in use: a target that is also a source
(by name or through a symlink) fails on QEMU's write lock, as qemu-img's
does, and the image is left as it was."""

import pytest

import instar_testlib as tl


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
@pytest.mark.parametrize("via_link", [False, True], ids=["same-name", "symlink"])
def test_convert_onto_its_own_source(instar, tmp_path, fmt, via_link):
    for d in ("q", "i"):
        (tmp_path / d).mkdir()
        tl.qemu_img("create", "-q", "-f", "qcow2", "x.qcow2", "4M", cwd=tmp_path / d)
        tl.qemu_io("-c", "write -P 9 0 128k", "x.qcow2", cwd=tmp_path / d)
        (tmp_path / d / "l.qcow2").symlink_to("x.qcow2")
    before = (tmp_path / "i" / "x.qcow2").read_bytes()
    target = "l.qcow2" if via_link else "x.qcow2"
    argv = ["convert", "-O", fmt, "x.qcow2", target]
    expected = tl.run_oracle(argv, cwd=tmp_path / "q")
    actual = instar.run(argv, cwd=tmp_path / "i")
    assert expected.returncode == 1, expected.describe()
    tl.assert_same(expected, actual, " ".join(argv))
    assert (tmp_path / "i" / "x.qcow2").read_bytes() == before, "the source was changed"
