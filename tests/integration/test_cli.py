"""Top-level CLI behaviour: version/help, command table, multicall, resource limits.

All expectations come from running the oracle (qemu-img 7.2) in the same run.
"""

import re

import pytest

import instar_testlib as tl

# The 15 qemu-img 7.2 subcommands (qemu-img-cmds.hx).
SUBCOMMANDS = [
    "amend", "bench", "bitmap", "check", "commit", "compare", "convert", "create",
    "dd", "info", "map", "measure", "snapshot", "rebase", "resize",
]


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_identical_as_qemu_img(instar, tmp_path, flag):
    """Through the qemu-img name: exactly qemu-img's two lines (iotests compare them)."""
    tl.assert_same(*tl.run_both(instar, [flag], cwd=tmp_path), f"qemu-img {flag}")


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_as_instar_adds_a_line(instar, tmp_path, flag):
    expected = tl.run_oracle([flag], cwd=tmp_path)
    actual = instar.run_multicall([flag], cwd=tmp_path)
    assert actual.returncode == expected.returncode == 0, actual.describe()
    assert actual.stdout.startswith(expected.stdout), actual.describe()
    assert re.fullmatch(rb"instar version \S+\n", actual.stdout[len(expected.stdout):]), actual.describe()
    assert actual.stderr == expected.stderr


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["info", "-h"], ["info", "--help"]],
                         ids=["--help", "-h", "info-h", "info--help"])
def test_help_identical(instar, tmp_path, args):
    tl.assert_same(*tl.run_both(instar, args, cwd=tmp_path), f"qemu-img {' '.join(args)}")


@pytest.mark.parametrize("args", [
    [], ["bogus"], ["bogus", "x"], ["INFO"], ["--bogus"], ["-z"], ["info", "--version"],
], ids=["no-args", "bogus", "bogus-with-arg", "uppercase-info", "bogus-long-option", "bogus-short-option",
        "info-version"])
def test_usage_errors_identical(instar, tmp_path, args):
    expected, actual = tl.run_both(instar, args, cwd=tmp_path)
    assert expected.returncode == 1
    tl.assert_same(expected, actual, f"qemu-img {' '.join(args)}")


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_subcommand_in_table(instar, tmp_path, cmd):
    """Every qemu-img subcommand name is in instar's table.

    With no arguments a built subcommand prints qemu-img's usage error; a not
    yet built one exits 1 with a clear message.  Either way it must not be
    "Command not found", must not crash and must not hang.
    """
    oracle = tl.run_oracle([cmd], cwd=tmp_path)
    r = instar.run([cmd], cwd=tmp_path)
    assert r.returncode >= 0, "crashed: " + r.describe()
    assert b"Command not found" not in r.stderr, r.describe()
    if (r.returncode, r.stdout, r.stderr) == (oracle.returncode, oracle.stdout, oracle.stderr):
        return
    assert r.returncode == 1, r.describe()
    err = r.stderr.decode("utf-8", "replace")
    assert err.startswith("qemu-img: ") and len(err.strip()) > len("qemu-img:") + 5, r.describe()


def _to_multicall_prefix(stderr: bytes) -> bytes:
    """qemu-img's stderr as the multicall binary (argv[0] = instar) prints it.

    Only the program-name prefix at the start of a line changes; hard-coded
    texts such as "Try 'qemu-img --help'" stay as they are.
    """
    return re.sub(rb"(?m)^qemu-img: ", b"instar: ", stderr)


@pytest.mark.parametrize("which", ["ok-human", "ok-json", "missing-file", "bad-output", "no-args"])
def test_multicall_instar_info(instar, plain_images, which):
    args = {
        "ok-human": ["info", "small.qcow2"],
        "ok-json": ["info", "--output=json", "small.qcow2"],
        "missing-file": ["info", "nope.qcow2"],
        "bad-output": ["info", "--output=yaml", "small.qcow2"],
        "no-args": ["info"],
    }[which]
    via_link = instar.run(args, cwd=plain_images)
    expected = tl.run_oracle(args, cwd=plain_images)
    tl.assert_same(expected, via_link, "through the qemu-img symlink")
    direct = instar.run_multicall(args, cwd=plain_images)
    assert direct.returncode == expected.returncode, direct.describe()
    assert direct.stdout == expected.stdout, direct.describe()
    assert direct.stderr == _to_multicall_prefix(expected.stderr), direct.describe()


@pytest.mark.parametrize("img", ["small.qcow2", "big.qcow2"], ids=["qcow2-64M", "qcow2-1TiB"])
def test_info_under_prlimit(instar, plain_images, img):
    """1 GiB address space and 2 s CPU are enough for `info` (the KVM guest included)."""
    args = ["info", "--output=json", "-f", "qcow2", "--force-share", img]
    expected = tl.run_oracle(args, cwd=plain_images)
    assert expected.returncode == 0, expected.describe()
    r = tl.run(["prlimit", "--as=1073741824", "--cpu=2", str(instar.qemu_img), *args], cwd=plain_images)
    tl.assert_same(expected, r, "under prlimit --as=1GiB --cpu=2")
