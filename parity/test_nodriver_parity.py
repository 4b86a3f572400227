"""Actions a format driver lacks in qemu-img 7.2, in qemu-img's own words.

Only qcow2 stores persistent bitmaps and keeps internal snapshots; vmdk and
qcow (like vpc, parallels, vhdx and vdi) have no bdrv_co_truncate.  For
each writable format the `bitmap` actions, `snapshot -c/-d/-a` and
`resize` must fail as qemu-img fails (same exit code, stdout and stderr,
the random node name qemu-img prints masked) and leave the image as it
was.  Every image is made with `qemu-img create` at test time.  A case id
starting with `err-` must make qemu-img fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import instar_testlib as tl

SECRET = ["--object", "secret,id=s0,data=pw"]

# name -> (create arguments, files the image is made of)
IMAGES = {
    "qed": (["-f", "qed"], ["t.qed"]),
    "vpc": (["-f", "vpc"], ["t.vpc"]),
    "vmdk": (["-f", "vmdk"], ["t.vmdk"]),
    "vmdk-2g-flat": (["-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat"], ["f.vmdk", "f-f001.vmdk"]),
    "parallels": (["-f", "parallels"], ["t.parallels"]),
    "qcow": (["-f", "qcow"], ["t.qcow"]),
    "vhdx": (["-f", "vhdx"], ["t.vhdx"]),
    "luks": ([*SECRET, "-f", "luks", "-o", "key-secret=s0,iter-time=10"], ["t.luks"]),
}

# the node name qemu-img prints is #block plus a random number
NODE_RE = re.compile(rb"#block\d+")


@pytest.fixture(scope="module")
def imgdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("nodriver")
    for args, files in IMAGES.values():
        tl.qemu_img("create", "-q", *args, files[0], "3M", cwd=d)
    return d


def image_args(name: str) -> list[str]:
    """The image as the command names it (luks through --image-opts with its key)."""
    files = IMAGES[name][1]
    if name == "luks":
        return [*SECRET, "--image-opts", f"driver=luks,key-secret=s0,file.filename={files[0]}"]
    return [files[0]]


def run_case(instar, imgdir: Path, tmp_path: Path, name: str, argv: list[str]):
    files = IMAGES[name][1]
    expected, actual = tl.run_both_on_copies(instar, argv, [imgdir / f for f in files], tmp_path)
    mask = lambda r: tl.Result(r.argv, r.returncode, r.stdout, NODE_RE.sub(b"#blockNNN", r.stderr))
    tl.assert_same(mask(expected), mask(actual), " ".join(argv))
    assert expected.returncode == 1
    for f in files:
        assert tl.same_content(imgdir / f, tmp_path / "oracle" / f), f"{f} changed by qemu-img"
        assert tl.same_files(tmp_path / "oracle" / f, tmp_path / "instar" / f), f"{f} differs"


BITMAP = {
    "err-add": (["--add"], "bm"),
    "err-add-enable-granularity": (["--add", "--enable", "-g", "64k"], "bm"),
    "err-remove": (["--remove"], "bm"),
    "err-clear": (["--clear"], "bm"),
    "err-disable": (["--disable"], "bm"),
    "err-add-bad-granularity": (["--add", "-g", "1000"], "bm"),
    "err-add-empty-name": (["--add"], ""),
}


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("case", BITMAP)
def test_bitmap(instar, imgdir, tmp_path, name, case):
    opts, bm = BITMAP[case]
    img = image_args(name)
    argv = ["bitmap", *opts, *img[:-1], img[-1], bm]
    run_case(instar, imgdir, tmp_path, name, argv)


SNAPSHOT = {"err-create": ["-c", "s"], "err-delete": ["-d", "s"], "err-apply": ["-a", "s"]}


@pytest.mark.parametrize("name", [n for n in IMAGES if n not in ("vpc", "parallels")])
@pytest.mark.parametrize("case", SNAPSHOT)
def test_snapshot(instar, imgdir, tmp_path, name, case):
    run_case(instar, imgdir, tmp_path, name, ["snapshot", *SNAPSHOT[case], *image_args(name)])


RESIZE = {"err-grow": ["4M"], "err-grow-relative": ["+1M"], "err-shrink": ["--shrink", "ARG", "1M"]}


@pytest.mark.parametrize("name", ["vmdk", "vmdk-2g-flat", "qcow"])
@pytest.mark.parametrize("case", RESIZE)
def test_resize(instar, imgdir, tmp_path, name, case):
    args = RESIZE[case]
    img = image_args(name)
    if "ARG" in args:
        argv = ["resize", args[0], *img, *args[2:]]
    else:
        argv = ["resize", *img, *args]
    run_case(instar, imgdir, tmp_path, name, argv)
