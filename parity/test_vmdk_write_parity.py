"""vmdk parity (qemu-img 7.2 vs instar): the write side.

`convert -O vmdk` (every subformat, -c, -n, -B, -S), `dd -O vmdk` and
`bench -w` on vmdk, and `create -f vmdk` with every option qemu-img 7.2 has (each subformat, each
adapter type, hwversion, toolsversion, compat6, zeroed_grain, a backing
file with its parentCID and fileName hint) and its refusals; each case
runs under both tools in directories of their own, and every file either
leaves (the image, the descriptor file, each extent file) must be the
oracle's byte for byte with the same holes, the random CID masked.  A case
id starting with `err-` must make qemu-img fail, every other must make it
succeed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import instar_testlib as tl

MiB = 1 << 20
CID = re.compile(rb"(\nCID=)[0-9a-f]+\n")


def mask_cid(data: bytes) -> bytes:
    """The descriptor's random CID cut out (a sparse extent's descriptor region padded back).

    A write rewrites the CID in place (vmdk_write_cid()): a shorter new CID
    leaves the old text's last bytes after the descriptor's NUL, so qemu-img
    itself differs there from run to run; the region is compared up to its
    first NUL."""
    if data[:4] == b"KDMV":
        region = data[512:512 + 20 * 512]
        text = CID.sub(rb"\1\n", region.split(b"\0", 1)[0])
        return data[:512] + text.ljust(len(region), b"\0") + data[512 + len(region):]
    return CID.sub(rb"\1\n", data.split(b"\0", 1)[0])


def host_extents(p: Path) -> list:
    fd = os.open(p, os.O_RDONLY)
    try:
        return tl.host_extents_fd(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def assert_same_tree(a: Path, b: Path) -> None:
    """The same files in a and b, each the same bytes (CID masked) and holes."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()), "different files left"
    for n in names:
        fa, fb = a / n, b / n
        size = fa.stat().st_size
        if size > 64 * MiB:
            # Only a flat extent is this large here: no descriptor in it.
            assert tl.same_files(fa, fb), f"{n} differs"
            continue
        ca, cb = fa.read_bytes(), fb.read_bytes()
        assert mask_cid(ca) == mask_cid(cb), f"{n} differs beyond the CID"
        if ca[:4] != b"KDMV":
            continue  # a descriptor file: as long as its text (the CID's digits vary)
        assert len(ca) == len(cb), f"{n}: lengths differ"
        assert host_extents(fa) == host_extents(fb), f"{n}: host data/hole layout differs"


# ---- create -f vmdk ----------------------------------------------------------------------------
CREATE = []


def create_case(cid, *args, base=False):
    CREATE.append(pytest.param(list(args), base, id=cid))


SUBS = ["monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized"]
for _sub in SUBS:
    for _s in ["0", "1000", "1M", "5G"]:
        create_case(f"{_sub}-{_s}", "create", "-f", "vmdk", "-o", f"subformat={_sub}", "a.vmdk", _s)
for _s in ["512", "100M", "4095M", "100G"]:
    create_case(f"default-{_s}", "create", "-f", "vmdk", "a.vmdk", _s)
for _a in ["ide", "buslogic", "lsilogic", "legacyESX"]:
    create_case(f"adapter-{_a}", "create", "-f", "vmdk", "-o", f"adapter_type={_a}", "a.vmdk", "1G")
for _cid, _o in [("hwversion", "hwversion=7"), ("hwversion-empty", "hwversion=,toolsversion="),
                 ("hwversion-undefined", "hwversion=undefined"), ("toolsversion", "toolsversion=10240"),
                 ("compat6", "compat6=on"), ("compat6-off-hw", "compat6=off,hwversion=11"),
                 ("zeroed", "zeroed_grain=on"), ("zeroed-split", "zeroed_grain=on,subformat=twoGbMaxExtentSparse"),
                 ("zeroed-stream", "zeroed_grain=on,subformat=streamOptimized,compat6=on"),
                 ("file-options", "preallocation=full,nocow=on"),
                 ("falloc-flat", "preallocation=falloc,subformat=monolithicFlat"),
                 ("size-option", "size=3M"), ("backing-fmt-vmdk", "backing_fmt=vmdk")]:
    create_case(_cid, "create", "-f", "vmdk", "-o", _o, "a.vmdk", *([] if "size=" in _o else ["3M"]))
# More than 16 extent files (20): instar's old limit.
for _sub in ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"]:
    create_case(f"{_sub}-40G", "create", "-f", "vmdk", "-o", f"subformat={_sub}", "a.vmdk", "40G")
create_case("quiet", "create", "-q", "-f", "vmdk", "a.vmdk", "1M")
create_case("dotless-name", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", "image", "1M")
create_case("two-dots", "create", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "a.b.vmdk", "3G")
create_case("help", "create", "-f", "vmdk", "-o", "help")
create_case("help-file", "create", "-f", "vmdk", "-o", "help", "a.vmdk")
create_case("backing", "create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "a.vmdk", base=True)
create_case("backing-size", "create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "a.vmdk", "8M", base=True)
create_case("backing-u", "create", "-f", "vmdk", "-u", "-b", "base.vmdk", "-F", "vmdk", "a.vmdk", "1M", base=True)
create_case("backing-split", "create", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "-b", "base.vmdk",
            "-F", "vmdk", "a.vmdk", base=True)
create_case("backing-stream", "create", "-f", "vmdk", "-o", "subformat=streamOptimized", "-b", "base.vmdk",
            "-F", "vmdk", "a.vmdk", base=True)
for _cid, _args in [("subformat-bogus", ["-o", "subformat=bogus", "a.vmdk", "1M"]),
                    ("adapter-bogus", ["-o", "adapter_type=scsi", "a.vmdk", "1M"]),
                    ("compat6-hwversion", ["-o", "compat6=on,hwversion=4", "a.vmdk", "1M"]),
                    ("flat-zeroed", ["-o", "subformat=monolithicFlat,zeroed_grain=on", "a.vmdk", "1M"]),
                    ("split-flat-zeroed", ["-o", "subformat=twoGbMaxExtentFlat,zeroed_grain=on", "a.vmdk", "1M"]),
                    ("compat6-bogus", ["-o", "compat6=maybe", "a.vmdk", "1M"]),
                    ("preallocation-metadata", ["-o", "preallocation=metadata", "a.vmdk", "1M"]),
                    ("preallocation-bogus", ["-o", "preallocation=bogus", "a.vmdk", "1M"]),
                    ("backing-fmt-raw-o", ["-o", "backing_fmt=raw", "a.vmdk", "1M"]),
                    ("no-size", ["a.vmdk"]),
                    ("cluster-size", ["-o", "cluster_size=4k", "a.vmdk", "1M"])]:
    create_case(f"err-{_cid}", "create", "-f", "vmdk", *_args)
for _cid, _args in [("flat-backing", ["-o", "subformat=monolithicFlat", "-b", "base.vmdk", "-F", "vmdk", "a.vmdk"]),
                    ("backing-fmt-raw", ["-b", "base.vmdk", "-F", "raw", "a.vmdk", "1M"]),
                    ("backing-raw-as-vmdk", ["-b", "base.raw", "-F", "vmdk", "a.vmdk", "1M"]),
                    ("backing-u-raw", ["-u", "-b", "base.raw", "-F", "vmdk", "a.vmdk", "1M"]),
                    ("backing-u-qcow2", ["-u", "-b", "base.qcow2", "-F", "vmdk", "a.vmdk", "1M"]),
                    ("backing-u-missing", ["-u", "-b", "nosuch.vmdk", "-F", "vmdk", "a.vmdk", "1M"]),
                    ("backing-u-missing-split", ["-u", "-b", "nosuch.vmdk", "-F", "vmdk", "-o",
                                                 "subformat=twoGbMaxExtentSparse", "a.vmdk", "3G"]),
                    ("backing-no-fmt", ["-b", "base.vmdk", "a.vmdk", "1M"])]:
    create_case(f"err-{_cid}", "create", "-f", "vmdk", *_args, base=True)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    d = tmp_path_factory.mktemp("vmdk-bases")
    tl.qemu_img("create", "-q", "-f", "vmdk", "base.vmdk", "4M", cwd=d)
    tl.qemu_img("create", "-q", "-f", "raw", "base.raw", "1M", cwd=d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "1M", cwd=d)
    return [d / "base.vmdk", d / "base.raw", d / "base.qcow2"]


@pytest.mark.parametrize("args,base", CREATE)
def test_vmdk_create(instar, tmp_path, request, bases, args, base):
    expected, actual = tl.run_both_on_copies(instar, args, bases if base else [], tmp_path)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    assert_same_tree(tmp_path / "oracle", tmp_path / "instar")


# ---- convert -O vmdk and dd -O vmdk: the target written through vmdk_pwritev() ------------------
OUT = []


def out_case(cid, *args, base=False):
    OUT.append(pytest.param(list(args), base, id=cid))


for _src in ["src.qcow2", "src.raw", "src.vmdk", "src-zeroed.vmdk"]:
    _n = _src.replace(".", "-")
    out_case(f"convert-{_n}", "convert", "-O", "vmdk", _src, "out.vmdk")
    out_case(f"dd-{_n}", "dd", "-O", "vmdk", f"if={_src}", "of=out.vmdk", "bs=64k")
out_case("convert-S0", "convert", "-S", "0", "-O", "vmdk", "src.qcow2", "out.vmdk")
out_case("convert-S4k", "convert", "-S", "4k", "-O", "vmdk", "src.qcow2", "out.vmdk")
out_case("convert-zeroed-grain", "convert", "-O", "vmdk", "-o", "zeroed_grain=on", "src.qcow2", "out.vmdk")
out_case("convert-zeroed-grain-S0", "convert", "-S", "0", "-O", "vmdk", "-o", "zeroed_grain=on", "src.qcow2",
         "out.vmdk")
out_case("convert-options", "convert", "-O", "vmdk", "-o", "adapter_type=lsilogic,hwversion=7,toolsversion=1",
         "src.qcow2", "out.vmdk")
out_case("convert-monolithicSparse", "convert", "-O", "vmdk", "-o", "subformat=monolithicSparse", "src.qcow2",
         "out.vmdk")
out_case("convert-progress", "convert", "-p", "-O", "vmdk", "src.qcow2", "out.vmdk")
out_case("convert-backing", "convert", "-O", "vmdk", "-B", "src.vmdk", "-F", "vmdk", "src-child.vmdk", "out.vmdk")
out_case("convert-backing-o", "convert", "-O", "vmdk", "-o", "backing_file=src.vmdk,backing_fmt=vmdk",
         "src-child.vmdk", "out.vmdk")
out_case("convert-n", "convert", "-n", "-O", "vmdk", "src.qcow2", "src-target.vmdk")
out_case("convert-n-zeroed", "convert", "-n", "-O", "vmdk", "src.raw", "src-target-zeroed.vmdk")
out_case("convert-target-is-zero", "convert", "-n", "--target-is-zero", "-O", "vmdk", "src.qcow2",
         "src-target.vmdk")
# streamOptimized: compressed grains (zlib's compress(), after a grain marker), each written over
# a grain of zeros; -c on monolithicSparse writes plain grains, a grain at a time.
for _src in ["src.qcow2", "src.raw", "src.vmdk", "src-zeroed.vmdk", "src-odd.raw"]:
    _n = _src.replace(".", "-")
    out_case(f"convert-stream-{_n}", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", _src, "out.vmdk")
    out_case(f"convert-c-{_n}", "convert", "-c", "-O", "vmdk", _src, "out.vmdk")
out_case("convert-stream-S0", "convert", "-S", "0", "-O", "vmdk", "-o", "subformat=streamOptimized", "src.qcow2",
         "out.vmdk")
out_case("convert-stream-c", "convert", "-c", "-O", "vmdk", "-o", "subformat=streamOptimized", "src.qcow2",
         "out.vmdk")
out_case("convert-stream-zeroed", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized,zeroed_grain=on",
         "src.qcow2", "out.vmdk")
out_case("convert-stream-progress", "convert", "-p", "-O", "vmdk", "-o", "subformat=streamOptimized",
         "src.qcow2", "out.vmdk")
out_case("convert-stream-backing", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", "-B", "src.vmdk",
         "-F", "vmdk", "src-child.vmdk", "out.vmdk")
out_case("convert-stream-n", "convert", "-n", "-O", "vmdk", "src.qcow2", "src-stream-empty.vmdk")
out_case("err-convert-stream-n-allocated", "convert", "-n", "-O", "vmdk", "src.qcow2", "src-stream-data.vmdk")
out_case("err-convert-c-prealloc", "convert", "-c", "-O", "vmdk", "-o", "preallocation=full", "src.qcow2",
         "out.vmdk")
# The descriptor-file subformats: flat extents written in place, split sparse ones as sparse files;
# the CID rewrite stops at the descriptor file's end rounded up to a sector.
for _sub in ["monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"]:
    for _src in ["src.qcow2", "src-big.qcow2"]:
        out_case(f"convert-{_sub}-{_src.replace('.', '-')}", "convert", "-O", "vmdk", "-o", f"subformat={_sub}",
                 _src, "out.vmdk")
out_case("convert-twoGbMaxExtentSparse-src-40g-qcow2", "convert", "-O", "vmdk", "-o",
         "subformat=twoGbMaxExtentSparse", "src-40g.qcow2", "out.vmdk")
out_case("convert-n-flat", "convert", "-n", "-O", "vmdk", "src.raw", "src-flat.vmdk")
out_case("convert-flat-S0", "convert", "-S", "0", "-O", "vmdk", "-o", "subformat=monolithicFlat", "src.qcow2",
         "out.vmdk")
out_case("dd-odd-bs", "dd", "-O", "vmdk", "if=src.qcow2", "of=out.vmdk", "bs=3000", "skip=7")
out_case("dd-count", "dd", "-O", "vmdk", "if=src.qcow2", "of=out.vmdk", "bs=1M", "count=3")
out_case("err-convert-backing-fmt-raw", "convert", "-O", "vmdk", "-B", "src.raw", "-F", "raw", "src.qcow2",
         "out.vmdk")
out_case("err-convert-n-smaller", "convert", "-n", "-O", "vmdk", "src.qcow2", "src-small.vmdk")
out_case("err-convert-adapter-bogus", "convert", "-O", "vmdk", "-o", "adapter_type=x", "src.qcow2", "out.vmdk")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("vmdk-sources")

    def q(*a):
        tl.qemu_img(*a, cwd=d)

    def io(fmt, name, *cmds):
        tl.run([tl.QEMU_IO, "-f", fmt, *sum((["-c", c] for c in cmds), []), name], cwd=d)

    q("create", "-q", "-f", "qcow2", "src.qcow2", "10M")
    io("qcow2", "src.qcow2", "write -P 7 0 100k", "write -P 9 3M 1k", "write -P 3 9M 1M", "write -z 5M 1M",
       "write -P 0 7M 64k", "write -P 1 10239k 1k")
    q("convert", "-O", "raw", "src.qcow2", "src.raw")
    q("create", "-q", "-f", "vmdk", "src.vmdk", "10M")
    io("vmdk", "src.vmdk", "write -P 5 64k 200k", "write -P 6 8M 4k")
    q("create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on", "src-zeroed.vmdk", "10M")
    io("vmdk", "src-zeroed.vmdk", "write -P 5 0 64k", "write -z 1M 1M", "write -P 6 1088k 4k")
    q("create", "-q", "-f", "vmdk", "-b", "src.vmdk", "-F", "vmdk", "src-child.vmdk")
    io("vmdk", "src-child.vmdk", "write -P 8 100k 10k", "write -P 8 9M 1M")
    q("create", "-q", "-f", "vmdk", "src-target.vmdk", "10M")
    io("vmdk", "src-target.vmdk", "write -P 4 0 2M")
    q("create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on", "src-target-zeroed.vmdk", "10M")
    io("vmdk", "src-target-zeroed.vmdk", "write -P 4 0 2M")
    q("create", "-q", "-f", "vmdk", "src-small.vmdk", "1M")
    q("create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", "src-stream-empty.vmdk", "10M")
    q("create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", "src-stream-data.vmdk", "10M")
    io("vmdk", "src-stream-data.vmdk", "write -P 1 0 64k")
    q("create", "-q", "-f", "raw", "src-odd.raw", "1000k")
    q("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "src-flat.vmdk", "10M")
    io("vmdk", "src-flat.vmdk", "write -P 4 0 2M")
    q("create", "-q", "-f", "qcow2", "src-big.qcow2", "5G")
    io("qcow2", "src-big.qcow2", "write -P 1 1G 64k", "write -P 2 2047M 2M", "write -P 3 5119M 1M")
    io("raw", "src-odd.raw", "write -P 2 0 1000k")
    q("create", "-q", "-f", "qcow2", "src-40g.qcow2", "40G")
    io("qcow2", "src-40g.qcow2", "write -P 1 0 64k", "write -P 2 2047M 2M", "write -P 3 39G 1M")
    return sorted(d.iterdir())


@pytest.mark.parametrize("args,base", OUT)
def test_vmdk_output(instar, tmp_path, request, sources, args, base):
    expected, actual = tl.run_both_on_copies(instar, args, sources, tmp_path)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    assert_same_tree(tmp_path / "oracle", tmp_path / "instar")


# ---- bench -w on vmdk: one request at a time (-d 1), the files as qemu-img's (CID masked) ---------
BENCH = []
for _sub, _o in [("sparse", "subformat=monolithicSparse"), ("zeroed", "zeroed_grain=on"),
                 ("flat", "subformat=monolithicFlat"), ("split", "subformat=twoGbMaxExtentSparse"),
                 ("stream", "subformat=streamOptimized")]:
    for _cid, _a in [("seq", ["-c", "20", "-s", "64k", "-S", "100k"]),
                     ("unaligned", ["-c", "9", "-s", "1000k", "-S", "1500k", "-o", "7k"])]:
        BENCH.append(pytest.param(_o, _a, id=f"{_sub}-{_cid}"))


@pytest.mark.parametrize("opts,args", BENCH)
def test_vmdk_bench_write(instar, tmp_path, opts, args):
    base = tmp_path / "base"
    base.mkdir()
    tl.qemu_img("create", "-q", "-f", "vmdk", "-o", opts, "w.vmdk", "20M", cwd=base)
    tl.run([tl.QEMU_IO, "-f", "vmdk", "-c", "write -P 0x11 0 64k", "w.vmdk"], cwd=base)
    argv = ["bench", "-w", "-d", "1", "-f", "vmdk", *args, "w.vmdk"]
    expected, actual = tl.run_both_on_copies(instar, argv, sorted(base.iterdir()), tmp_path)
    strip = lambda r: b"".join(x for x in r.stdout.splitlines(True) if not x.startswith(b"Run completed"))
    assert (actual.returncode, strip(actual), actual.stderr) == (expected.returncode, strip(expected),
                                                                 expected.stderr)
    assert_same_tree(tmp_path / "oracle", tmp_path / "instar")


@pytest.mark.parametrize("sub", ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"])
def test_vmdk_create_refused_extents(instar, tmp_path, sub):
    """More extent files than instar opens (2048, docs/differences.md): refused, nothing created.
    qemu-img makes the 2049 files (4 TiB and a GiB)."""
    r = instar.run(["create", "-q", "-f", "vmdk", "-o", f"subformat={sub}", "a.vmdk", "4097G"], cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == b"", r.describe()
    assert r.stderr == b"qemu-img: a.vmdk: instar creates at most 2048 vmdk extent files\n", r.describe()
    assert list(tmp_path.iterdir()) == []
