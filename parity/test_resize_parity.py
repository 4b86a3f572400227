"""Parity of `qemu-img resize` (qemu-img 7.2 vs instar).

Every case runs both tools on private copies of an image the oracle made
(run_both_on_copies) and compares exit code, stdout and stderr; for the
image it also compares `qemu-img check` output, `qemu-img compare` and
`qemu-img info` of the two results, and the file lengths.  Nothing here is
an expected value written by hand: the oracle's own run is the expectation.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import corrupt_check as cc
import instar_testlib as tl
from output_compare import host_extents, sparse_copy
import output_compare as oc

CLUSTER_SIZES = [512, 4096, 65536, 2 << 20]
REFCOUNT_BITS = [1, 2, 4, 8, 16, 32, 64]


@pytest.fixture(scope="module")
def imgdir(tmp_path_factory):
    return tmp_path_factory.mktemp("resize-images")


_made: dict[str, Path] = {}


def qcow2_image(imgdir: Path, cs: int = 65536, rb: int = 16, size: str = "16M", opts: str = "",
                writes: tuple[str, ...] = ("write -P 7 0 64k", "write -P 9 12M 128k")) -> Path:
    """A qcow2 image made by the oracle (cached per parameters for the module)."""
    key = f"c{cs}-r{rb}-{size}-{opts}-{'|'.join(writes)}".replace("/", "_").replace(" ", "_")
    if key in _made and _made[key].exists():
        return _made[key]
    path = imgdir / f"img{len(_made)}.qcow2"
    o = f"cluster_size={cs},refcount_bits={rb}" + (f",{opts}" if opts else "")
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", o, str(path), size)
    if writes:
        args = []
        for w in writes:
            args += ["-c", w]
        tl.qemu_io("-f", "qcow2", *args, str(path))
    _made[key] = path
    return path


def resize_both(instar, src: Path, tmp_path: Path, *args: str, fmt: str = "qcow2"):
    """resize ARGS on copies of src (named img.<ext> in the args); full comparison."""
    name = "img." + ("raw" if fmt == "raw" else "qcow2")
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    copy = work / name
    tl.copy_file(src, copy, sparse_always=True)
    argv = ["resize", *[name if a == "IMG" else a for a in args]]
    exp, act = tl.run_both_on_copies(instar, argv, [copy], tmp_path / "run", compare_images=[name],
                                     compare_fmt=fmt, timeout=120)
    tl.assert_same(exp, act, f"resize {args}")
    lq = (tmp_path / "run" / "oracle" / name).stat().st_size
    li = (tmp_path / "run" / "instar" / name).stat().st_size
    assert lq == li, f"file length after resize {args}: oracle {lq}, instar {li}"
    return exp, act


# --- The reproduction, every refcount width and cluster size ---


@pytest.mark.parametrize("rb", REFCOUNT_BITS)
@pytest.mark.parametrize("cs", CLUSTER_SIZES)
def test_shrink_written_image(instar, imgdir, tmp_path, cs, rb):
    src = qcow2_image(imgdir, cs, rb)
    exp, _ = resize_both(instar, src, tmp_path, "--shrink", "IMG", "8M")
    assert exp.returncode == 0
    # The data inside the kept range survived in instar's copy.
    r = tl.qemu_io("-f", "qcow2", "-c", "read -P 7 0 64k", str(tmp_path / "run" / "instar" / "img.qcow2"))
    assert b"read 65536/65536" in r.stdout


@pytest.mark.parametrize("rb", REFCOUNT_BITS)
@pytest.mark.parametrize("cs", CLUSTER_SIZES)
def test_grow_relative(instar, imgdir, tmp_path, cs, rb):
    resize_both(instar, qcow2_image(imgdir, cs, rb), tmp_path, "IMG", "+1G")


@pytest.mark.parametrize("rb", REFCOUNT_BITS)
def test_grow_relocates_l1_and_grows_reftable(instar, imgdir, tmp_path, rb):
    """512-byte clusters: 16M -> 2G needs a 512 KiB L1 table, many new
    refcount blocks and (at every width) a bigger refcount table."""
    resize_both(instar, qcow2_image(imgdir, 512, rb), tmp_path, "IMG", "2G")


@pytest.mark.parametrize("cs", [4096, 65536])
def test_grow_huge(instar, imgdir, tmp_path, cs):
    resize_both(instar, qcow2_image(imgdir, cs, 16), tmp_path, "IMG", "+1T")


@pytest.mark.parametrize("rb", [1, 4, 16, 64])
@pytest.mark.parametrize("spec", ["-8M", "4M", "-15M", "512", "12M", "12352k"])
def test_shrink_sizes(instar, imgdir, tmp_path, rb, spec):
    resize_both(instar, qcow2_image(imgdir, 4096, rb), tmp_path, "--shrink", "IMG", spec)


@pytest.mark.parametrize("cs,size,new", [(512, "64M", "40000k"), (65536, "3G", "1000M")])
def test_shrink_sparse_big_image(instar, imgdir, tmp_path, cs, size, new):
    """Shrinking over unallocated L2 ranges: QEMU allocates (then frees)
    an L2 table for each, and keeps the one straddling the new end."""
    src = qcow2_image(imgdir, cs, 16, size=size, writes=("write -P 1 0 64k", "write -P 2 50M 64k"))
    resize_both(instar, src, tmp_path, "--shrink", "IMG", new)


def test_shrink_with_snapshot(instar, imgdir, tmp_path):
    src = qcow2_image(imgdir, 65536, 16, size="64M", writes=("write -P 5 0 1M", "write -P 6 40M 2M"))
    snap = tmp_path / "snap.qcow2"
    tl.copy_file(src, snap)
    tl.qemu_img("snapshot", "-c", "s1", str(snap))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 8 41M 64k", str(snap))
    resize_both(instar, snap, tmp_path, "--shrink", "IMG", "32M")


def test_shrink_compressed_and_zero_clusters(instar, imgdir, tmp_path):
    src = qcow2_image(imgdir, 65536, 8, size="32M",
                      writes=("write -c -P 3 16M 1M", "write -z 20M 1M", "write -P 4 24M 64k"))
    resize_both(instar, src, tmp_path, "--shrink", "IMG", "16M")


def same_file_and_holes(tmp_path: Path, name: str = "img.qcow2") -> None:
    """After resize_both: the two files hold the same bytes and the same
    host data/hole layout (QEMU punches the clusters a shrink frees)."""
    a, b = (tmp_path / "run" / k / name for k in ("oracle", "instar"))
    assert oc.same_bytes(a, b), f"{name}: bytes differ at {oc.first_difference(a, b)}"
    ea, eb = oc.host_extents(a), oc.host_extents(b)
    assert ea == eb, f"{name}: host data extents: qemu-img {ea}, instar {eb}"


@pytest.mark.parametrize("rb", [1, 16])
@pytest.mark.parametrize("cs", [4096, 65536, 2 << 20])
def test_shrink_discards_freed_clusters(instar, imgdir, tmp_path, cs, rb):
    """The 12M data is written first, so its clusters lie inside the part
    of the file that stays: qemu-img punches them out (discard=unmap on the
    image's file), and the L2 tables and refcount blocks it frees."""
    src = qcow2_image(imgdir, cs, rb, size="16M", writes=("write -P 9 12M 128k", "write -P 7 0 64k"))
    resize_both(instar, src, tmp_path, "--shrink", "IMG", "8M")
    same_file_and_holes(tmp_path)


def test_shrink_discards_swapped_ends(instar, imgdir, tmp_path):
    """qemu-iotests 250, smaller: metadata preallocation, 1 MiB clusters,
    the first and last 10 MiB discarded and rewritten in swapped places;
    the shrink frees the data at the start of the file and punches it."""
    src = qcow2_image(imgdir, 1 << 20, 16, size="300M", opts="preallocation=metadata",
                      writes=("discard 0 10M", "discard 290M 10M", "write 290M 10M", "write 0 10M"))
    resize_both(instar, src, tmp_path, "--shrink", "IMG", "5M")
    same_file_and_holes(tmp_path)


def test_shrink_extended_l2(instar, imgdir, tmp_path):
    src = qcow2_image(imgdir, 65536, 16, opts="extended_l2=on",
                      writes=("write -P 7 0 4k", "write -P 9 12M 4k", "write -z 13M 64k"))
    resize_both(instar, src, tmp_path, "--shrink", "IMG", "8M")


def test_v2_image(instar, imgdir, tmp_path):
    resize_both(instar, qcow2_image(imgdir, 65536, 16, opts="compat=0.10"), tmp_path, "--shrink",
                "IMG", "8M")


def test_v2_with_snapshots_refused(instar, imgdir, tmp_path):
    snap = tmp_path / "v2snap.qcow2"
    tl.copy_file(qcow2_image(imgdir, 65536, 16, opts="compat=0.10"), snap)
    tl.qemu_img("snapshot", "-c", "s1", str(snap))
    exp, _ = resize_both(instar, snap, tmp_path, "IMG", "32M")
    assert exp.returncode == 1


@pytest.mark.parametrize("args", [
    ("IMG", "8M"),                      # shrink without --shrink
    ("IMG", "-1M"),
    ("--shrink", "IMG", "100"),         # not a multiple of 512
    ("--shrink", "IMG", "-100"),
    ("IMG", "+100"),
    ("IMG", "-16M"),                    # zero
    ("--shrink", "IMG", "-17M"),        # negative
    ("IMG", "18446744073709551615"),
    ("IMG", "9223372036854775807"),     # past BDRV_MAX_LENGTH
    ("IMG", "16E"),
    ("IMG", "abc"),
    ("IMG", ""),
    ("IMG", "0x10k"),
    ("--preallocation=bogus", "IMG", "32M"),
    ("--preallocation=metadata", "IMG", "16M"),
    ("--preallocation=falloc", "--shrink", "IMG", "8M"),
    ("IMG",),
    ("IMG", "1M", "2M"),
    ("-U", "IMG", "1M"),
    ("-f", "raw", "IMG", "+1M"),        # probed qcow2 opened as raw: grows the file
    ("-q", "IMG", "+1M"),
    ("IMG", "+0"),
])
def test_cli_and_refusals(instar, imgdir, tmp_path, args):
    src = qcow2_image(imgdir, 65536, 16)
    resize_both(instar, src, tmp_path, *args, fmt="raw" if args[:2] == ("-f", "raw") else "qcow2")


@pytest.mark.parametrize("args", [
    ("--image-opts", "driver=qcow2,file.filename=img.qcow2", "+1M"),
    ("--image-opts", "file.filename=img.qcow2", "32M"),
    ("--image-opts", "--shrink", "driver=qcow2,file.driver=file,file.filename=img.qcow2", "8M"),
    ("--image-opts", "driver=raw,file.filename=img.qcow2", "+1M"),
    ("--image-opts", "driver=file,filename=img.qcow2", "+1M"),
    ("--image-opts", "driver=qcow2,file.filename=img.qcow2,force-share=on", "+1M"),
    ("--image-opts", "driver=qcow2,file.filename=img.qcow2,foo=1", "+1M"),
    ("--image-opts", "-f", "qcow2", "driver=qcow2,file.filename=img.qcow2", "+1M"),
    ('json:{"driver":"qcow2","file":{"driver":"file","filename":"img.qcow2"}}', "+1M"),
    ('json:{"file":{"filename":"img.qcow2"}}', "24M"),
    ('json:{"file":{"filename":"img.qcow2"}', "24M"),
    ("-f", "file", "img.qcow2", "+1M"),
], ids=["opts-qcow2", "opts-probed", "opts-shrink", "opts-raw", "opts-file", "opts-force-share",
        "opts-unknown", "opts-and-f", "json-qcow2", "json-probed", "json-bad", "f-file"])
def test_image_opts_and_json_names(instar, imgdir, tmp_path, args):
    src = qcow2_image(imgdir, 65536, 16)
    raw = any(a.startswith(("driver=raw", "driver=file")) for a in args) or args[:2] == ("-f", "file")
    resize_both(instar, src, tmp_path, *args, fmt="raw" if raw else "qcow2")


def test_l1_too_large(instar, imgdir, tmp_path):
    """512-byte clusters cannot address 1 PiB: QEMU's -EFBIG message."""
    resize_both(instar, qcow2_image(imgdir, 512, 16), tmp_path, "IMG", "1P")


def test_missing_file(instar, tmp_path):
    tl.assert_same(*tl.run_both(instar, ["resize", "nonexistent.qcow2", "1M"], cwd=tmp_path))


# --- raw ---


@pytest.fixture(scope="module")
def raw_image(imgdir):
    path = imgdir / "base.raw"
    tl.qemu_img("create", "-q", "-f", "raw", str(path), "1M")
    tl.qemu_io("-f", "raw", "-c", "write -P 5 0 64k", str(path))
    return path


@pytest.mark.parametrize("args", [
    ("-f", "raw", "IMG", "2M"),
    ("-f", "raw", "IMG", "+100"),
    ("-f", "raw", "IMG", "1000"),
    ("-f", "raw", "--shrink", "IMG", "1000"),
    ("-f", "raw", "--shrink", "IMG", "-512k"),
    ("-f", "raw", "--preallocation=falloc", "IMG", "3M"),
    ("-f", "raw", "--preallocation=full", "IMG", "+1M"),
    ("-f", "raw", "--preallocation=metadata", "IMG", "3M"),
    ("-f", "raw", "--preallocation=off", "IMG", "3M"),
    ("-f", "raw", "--preallocation=full", "--shrink", "IMG", "512k"),
    ("IMG", "2M"),   # probed raw: QEMU's probing warning
])
def test_raw(instar, raw_image, tmp_path, args):
    resize_both(instar, raw_image, tmp_path, *args, fmt="raw")


# --- Preallocation on qcow2 grow (preallocate_co / qcow2_refcount_area) ---

PREALLOC = ["metadata", "falloc", "full"]


@pytest.mark.parametrize("mode", PREALLOC)
def test_qcow2_grow_preallocation(instar, imgdir, tmp_path, mode):
    resize_both(instar, qcow2_image(imgdir, 65536, 16), tmp_path, f"--preallocation={mode}", "IMG", "+4M")


@pytest.mark.parametrize("mode", PREALLOC)
@pytest.mark.parametrize("cs,rb", [(512, 16), (4096, 1), (65536, 64), (2 << 20, 8)])
def test_qcow2_grow_preallocation_geometry(instar, imgdir, tmp_path, mode, cs, rb):
    resize_both(instar, qcow2_image(imgdir, cs, rb), tmp_path, f"--preallocation={mode}", "IMG", "+3M")


@pytest.mark.parametrize("mode,new", [("metadata", "160M"), ("falloc", "100M")])
def test_qcow2_grow_preallocation_grows_reftable(instar, imgdir, tmp_path, mode, new):
    """512-byte clusters, 1-bit refcounts: the new metadata needs new refcount blocks and table
    (qemu-img moves the one-cluster table to two clusters at 160M; 300M took it to four, at
    twice the cost)."""
    src = qcow2_image(imgdir, 512, 1, writes=("write -P 7 0 64k",))
    resize_both(instar, src, tmp_path, f"--preallocation={mode}", "IMG", new)


# An old size that ends inside a cluster (16 MiB - 512): the head cluster is kept
# (metadata), or copied into the new data area (falloc/full).
UNALIGNED = {
    "head-written": ("write -P 7 0 64k", "write -P 9 16711680 65024"),
    "head-empty": ("write -P 7 0 64k",),
}


@pytest.mark.parametrize("mode", PREALLOC)
@pytest.mark.parametrize("head", list(UNALIGNED))
@pytest.mark.parametrize("ext", ["", "extended_l2=on"])
@pytest.mark.parametrize("new", ["20M", "16777216"])
def test_qcow2_grow_preallocation_unaligned(instar, imgdir, tmp_path, mode, head, ext, new):
    src = qcow2_image(imgdir, 65536, 16, size="16776704", opts=ext, writes=UNALIGNED[head])
    resize_both(instar, src, tmp_path, f"--preallocation={mode}", "IMG", new)


@pytest.mark.parametrize("mode", PREALLOC)
@pytest.mark.parametrize("opts", ["extended_l2=on", "compat=0.10", "lazy_refcounts=on"])
def test_qcow2_grow_preallocation_features(instar, imgdir, tmp_path, mode, opts):
    resize_both(instar, qcow2_image(imgdir, 65536, 16, opts=opts), tmp_path, f"--preallocation={mode}",
                "IMG", "+1000k")


@pytest.mark.parametrize("mode", ["falloc", "full"])
def test_qcow2_grow_preallocation_snapshot_head(instar, imgdir, tmp_path, mode):
    """The partial head cluster is shared with a snapshot: falloc/full copy it."""
    src = qcow2_image(imgdir, 65536, 16, size="16776704", writes=UNALIGNED["head-written"])
    snap = tmp_path / "snap.qcow2"
    tl.copy_file(src, snap)
    tl.qemu_img("snapshot", "-c", "s1", str(snap))
    resize_both(instar, snap, tmp_path, f"--preallocation={mode}", "IMG", "20M")


# --- Growing over a longer backing file: the new area is zero-filled ---


@pytest.fixture(scope="module")
def backing_dir(imgdir):
    d = imgdir / "backing"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", str(d / "base.qcow2"), "64M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 64M", str(d / "base.qcow2"))
    return d


def overlay(backing_dir: Path, name: str, size: str, opts: str = "", writes: tuple[str, ...] = ()) -> Path:
    path = backing_dir / name
    if not path.exists():
        o = ["-o", opts] if opts else []
        tl.qemu_img("create", "-q", "-f", "qcow2", *o, "-b", "base.qcow2", "-F", "qcow2", str(path), size)
        for w in writes:
            tl.qemu_io("-f", "qcow2", "-c", w, str(path))
    return path


OVERLAYS = {
    "plain": ("16M", "", ()),
    "written": ("16M", "", ("write -P 3 0 64k", "write -P 4 15M 1M")),
    "extended": ("16M", "extended_l2=on", ("write -P 3 0 4k",)),
    "v2": ("16M", "compat=0.10", ()),                         # qemu: "Failed to zero out new clusters"
    "small-clusters": ("16M", "cluster_size=4096,refcount_bits=2", ("write -P 3 0 64k",)),
    "unaligned-head-written": ("16776704", "", ("write -P 3 16711680 512",)),
}


@pytest.mark.parametrize("pre", ["off", *PREALLOC])
@pytest.mark.parametrize("new", ["24M", "40M"])
@pytest.mark.parametrize("kind", list(OVERLAYS))
def test_grow_over_longer_backing(instar, backing_dir, tmp_path, pre, new, kind):
    size, opts, writes = OVERLAYS[kind]
    ov = overlay(backing_dir, f"ov-{kind}.qcow2", size, opts, writes)
    work = tmp_path / "w"
    work.mkdir()
    tl.copy_file(ov, work / "img.qcow2", sparse_always=True)
    tl.copy_file(backing_dir / "base.qcow2", work / "base.qcow2", sparse_always=True)
    argv = ["resize", f"--preallocation={pre}", "img.qcow2", new]
    exp, act = tl.run_both_on_copies(instar, argv, [work / "img.qcow2", work / "base.qcow2"], tmp_path / "run",
                                     compare_images=["img.qcow2"], compare_fmt="qcow2", timeout=120)
    tl.assert_same(exp, act, f"resize {argv}")
    lq = (tmp_path / "run" / "oracle" / "img.qcow2").stat().st_size
    li = (tmp_path / "run" / "instar" / "img.qcow2").stat().st_size
    assert lq == li
    if exp.returncode == 0:
        # The backing file no longer shows through the grown area.
        r = tl.qemu_io("-f", "qcow2", "-c", "read -P 0 16M 8M", str(tmp_path / "run" / "instar" / "img.qcow2"))
        assert b"read 8388608/8388608" in r.stdout


# --- The partial head cluster copied into a new one (its data read through the block layer) ---


@pytest.mark.parametrize("pre", ["off", *PREALLOC])
@pytest.mark.parametrize("head", ["ov-unaligned-empty", "ov-unaligned-compressed", "ov-unaligned-snap"])
def test_grow_over_backing_unallocated_partial_head(instar, backing_dir, tmp_path, pre, head):
    """Over a longer backing file: the head cluster's old data (the backing
    file's, or a compressed cluster's) is copied into a new cluster."""
    writes = {"ov-unaligned-empty": (),
              "ov-unaligned-compressed": ("write -c -P 3 16711680 65024",),
              "ov-unaligned-snap": ("write -P 3 16711680 512",)}[head]
    ov = overlay(backing_dir, head + ".qcow2", "16776704", writes=writes)
    work = tmp_path / "w"
    work.mkdir()
    tl.copy_file(ov, work / "img.qcow2")
    tl.copy_file(backing_dir / "base.qcow2", work / "base.qcow2", sparse_always=True)
    if head == "ov-unaligned-snap":
        tl.qemu_img("snapshot", "-c", "s1", str(work / "img.qcow2"))
    exp, act = tl.run_both_on_copies(instar, ["resize", f"--preallocation={pre}", "img.qcow2", "24M"],
                                     [work / "img.qcow2", work / "base.qcow2"], tmp_path / "run",
                                     compare_images=["img.qcow2"], compare_fmt="qcow2", timeout=120)
    tl.assert_same(exp, act, "resize")
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_content(o, i)


@pytest.mark.parametrize("pre,head", [("off", "empty"), ("off", "compressed"), ("off", "zero"), ("off", "snap"),
                                      ("metadata", "empty")])
def test_grow_over_backing_tail_past_new_end(instar, tmp_path, pre, head):
    """A new end inside the head cluster (4 KiB clusters) over a longer
    backing file: the copy-on-write of the head cluster reaches past the
    new end, where it writes the backing file's data (or the compressed
    cluster's), as perform_cow() reads it."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 64M", "base.qcow2", cwd=src)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "base.qcow2", "-F", "qcow2",
                "img.qcow2", "16773632", cwd=src)
    w = {"empty": [], "compressed": ["-c", "write -c -P 3 16773120 512"], "zero": ["-c", "write -z -u 16773120 512"],
         "snap": ["-c", "write -P 3 16773120 512"]}[head]
    tl.qemu_io("-f", "qcow2", "-c", "write -P 5 0 64k", *w, "img.qcow2", cwd=src)
    if head == "snap":
        tl.qemu_img("snapshot", "-c", "s1", "img.qcow2", cwd=src)
    exp, act = tl.run_both_on_copies(instar, ["resize", f"--preallocation={pre}", "img.qcow2", "16776192"],
                                     [src / "img.qcow2", src / "base.qcow2"], tmp_path / "run",
                                     compare_images=["img.qcow2"], compare_fmt="qcow2", timeout=120)
    tl.assert_same(exp, act, "resize")
    assert exp.returncode == 0, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_content(o, i)


@pytest.mark.parametrize("pre", PREALLOC)
@pytest.mark.parametrize("new", ["20M", "16777216"])
def test_grow_compressed_partial_head(instar, imgdir, tmp_path, pre, new):
    """A compressed head cluster: decompressed into a new cluster."""
    src = qcow2_image(imgdir, 65536, 16, size="16776704",
                      writes=("write -P 7 0 64k", "write -c -P 3 16711680 65024"))
    resize_both(instar, src, tmp_path, f"--preallocation={pre}", "IMG", new)
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_content(o, i)


# --- Cases instar still refuses (docs/differences.md) ---


def _to_data_file(path: Path, data_name: bytes) -> None:
    """A version 3 image made an external data file image by hand: the
    data file bit, and header extensions for the backing format and the
    data file's name before the backing file name."""
    def ext(t, d):
        return struct.pack(">II", t, len(d)) + d + b"\0" * (-len(d) % 8)
    b = bytearray(path.read_bytes())
    hl = struct.unpack(">I", b[100:104])[0]
    boff, blen = struct.unpack(">QI", b[8:20])
    name = bytes(b[boff:boff + blen])
    struct.pack_into(">Q", b, 72, struct.unpack(">Q", b[72:80])[0] | 4)
    e = ext(0xE2792ACA, b"qcow2") + ext(0x44415441, data_name) + ext(0, b"")
    b[hl:hl + len(e)] = e
    b[hl + len(e):hl + len(e) + blen] = name
    struct.pack_into(">QI", b, 8, hl + len(e), blen)
    path.write_bytes(bytes(b))


def test_refused_compressed_head_data_file(instar, tmp_path):
    """A compressed head cluster in an external data file image, grown
    over a longer backing file: qemu takes the entry for corruption and
    marks the image corrupt on the zero-fill's write; instar refuses
    before any write (docs/differences.md)."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 64M", "base.qcow2", cwd=src)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "img.qcow2", "16776704", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -c -P 3 16711680 65024", "img.qcow2", cwd=src)
    _to_data_file(src / "img.qcow2", b"img.data")
    with open(src / "img.data", "wb") as f:
        f.truncate(16776704)
    files = [src / "img.qcow2", src / "img.data", src / "base.qcow2"]
    exp, act = tl.run_both_on_copies(instar, ["resize", "img.qcow2", "24M"], files, tmp_path / "run", timeout=120)
    assert exp.returncode == 1 and b"Marking image as corrupt" in exp.stderr, exp.describe()
    assert act.returncode == 1 and b"with an external data file is not supported by instar" in act.stderr
    for f in ("img.qcow2", "img.data"):
        assert (tmp_path / "run" / "instar" / f).read_bytes() == (src / f).read_bytes(), f"{f} changed"


@pytest.mark.parametrize("zero,spec", [("write -z", "--preallocation=metadata 20M"),
                                       ("write -z", "--preallocation=falloc 20M"),
                                       ("write -z -u", "--preallocation=metadata 16777216"),
                                       ("write -z -u", "--preallocation=full 20M")],
                         ids=["alloc-metadata", "alloc-falloc", "plain-metadata-cluster-end", "plain-full"])
def test_data_file_preallocation_zero_head(instar, tmp_path, zero, spec):
    """A zero head cluster in an external data file image (mapped 1:1, or
    unmapped) under preallocation: its copy-on-write, zeros, goes to the
    data file before the entry maps the cluster without the zero flag."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "data_file=snap.data", "snap.qcow2", "16776704", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 3 16711680 65024", "-c", f"{zero} 16711680 65024", "snap.qcow2",
               cwd=src)
    *flags, new = spec.split()
    argv = ["resize", *flags, "snap.qcow2", new]
    exp, act = tl.run_both_on_copies(instar, argv, [src / "snap.qcow2", src / "snap.data"], tmp_path / "run",
                                     timeout=120)
    tl.assert_same(exp, act, f"resize {argv}")
    assert exp.returncode == 0, exp.describe()
    for f in ("snap.qcow2", "snap.data"):
        o, i = tmp_path / "run" / "oracle" / f, tmp_path / "run" / "instar" / f
        assert tl.same_content(o, i), f"{f} differs after resize {argv}"


@pytest.mark.parametrize("new", ["20971520", "end", "end+512"])
@pytest.mark.parametrize("snap", [False, True], ids=["own", "shared"])
@pytest.mark.parametrize("cs", [4096, 65536])
def test_grow_preallocation_metadata_zero_alloc_head(instar, imgdir, tmp_path, cs, snap, new):
    """A preallocated zero cluster at the old end: rewritten in place (its
    zeros copied, the zero flag dropped), or copied into a new cluster
    when a snapshot shares it."""
    size = 16776704 if cs == 65536 else 16772608
    head = size // cs * cs
    src = qcow2_image(imgdir, cs, 16, size=str(size),
                      writes=(f"write -P 3 {head} {size - head}", f"write -z {head} {size - head}"))
    if snap:
        s = tmp_path / "snap.qcow2"
        tl.copy_file(src, s)
        tl.qemu_img("snapshot", "-c", "s1", str(s))
        src = s
    new = {"end": str(head + cs), "end+512": str(head + cs + 512)}.get(new, new)
    resize_both(instar, src, tmp_path, "--preallocation=metadata", "IMG", new)
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_content(o, i)


@pytest.mark.parametrize("new", ["20971520", "16760832", "16777216"])
@pytest.mark.parametrize("size,write", [("16776704", "write -P 3 16711680 4096"),
                                        ("16776704", "write -P 3 16713728 512"),
                                        ("16744448", "write -P 3 16711680 32768"),
                                        ("16744448", "write -P 3 16740352 2048")],
                         ids=["head-allocated", "middle-allocated", "all-allocated", "edge-allocated"])
def test_grow_preallocation_metadata_partly_allocated_extl2_head(instar, imgdir, tmp_path, size, write, new):
    """A partly allocated head cluster with extended L2 entries: kept; the
    subclusters at the edges of the mapped range that are not plain data
    get their outside part copied (the head's old data, zeros after the
    new end), the bitmap left as it was."""
    if int(new) <= int(size):
        pytest.skip("not a grow")
    src = qcow2_image(imgdir, 65536, 16, size=size, opts="extended_l2=on", writes=(write,))
    resize_both(instar, src, tmp_path, "--preallocation=metadata", "IMG", new)
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_content(o, i)


@pytest.mark.parametrize("new", ["20971520", "16760832"])
def test_grow_preallocation_metadata_partly_allocated_extl2_head_over_backing(instar, tmp_path, new):
    """The same over a backing file as long as the image: the head
    subcluster's old data comes from the backing file (read beforehand)."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "16744448", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 16744448", "base.qcow2", cwd=src)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "-b", "base.qcow2", "-F", "qcow2",
                "img.qcow2", "16744448", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 3 16711680 4096", "img.qcow2", cwd=src)
    exp, act = tl.run_both_on_copies(instar, ["resize", "--preallocation=metadata", "img.qcow2", new],
                                     [src / "img.qcow2", src / "base.qcow2"], tmp_path / "run")
    tl.assert_same(exp, act, "resize over a backing file")
    assert exp.returncode == 0, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_content(o, i)


@pytest.mark.parametrize("pre", ["off", "falloc", "full"])
@pytest.mark.parametrize("new", ["100", "1M"])
def test_raw_from_empty_allocates_first_block(instar, tmp_path, pre, new):
    """QEMU's file driver writes the first block after growing an empty file."""
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    resize_both(instar, empty, tmp_path, "-f", "raw", f"--preallocation={pre}", "IMG", new, fmt="raw")
    qb = tl.allocated_blocks(tmp_path / "run" / "oracle" / "img.raw")
    ib = tl.allocated_blocks(tmp_path / "run" / "instar" / "img.raw")
    assert qb == ib, f"allocated blocks {ib} vs oracle {qb}"


# --- Dirty images: qemu repairs them while opening them read-write ---

DIRTY = [pytest.param(inst, spec, id=f"{inst.id}-{spec}") for inst in cc.instances()
         if inst.case.name.startswith("dirty") for spec in ("+1M", "32M", "--shrink 12M")]


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    return cc.session_set(tmp_path_factory)


@pytest.mark.parametrize("inst,spec", DIRTY)
def test_dirty_image_repaired_then_resized(instar, corrupt, tmp_path, inst, spec):
    """The repair's lines, then the resize; same image and same holes (freed clusters discarded)."""
    src = corrupt.root / corrupt.path(inst)
    name = src.name
    args = ["resize", *spec.split()[:-1], name, spec.split()[-1]]
    exp, act = tl.run_both_on_copies(instar, args, [src], tmp_path / "run", compare_images=[name],
                                     compare_fmt="qcow2", copy=sparse_copy, timeout=120)
    tl.assert_same(exp, act, " ".join(args))
    o, i = tmp_path / "run" / "oracle" / name, tmp_path / "run" / "instar" / name
    assert o.read_bytes()[:104] == i.read_bytes()[:104], "the headers differ (dirty bit, refcount table)"
    assert host_extents(o) == host_extents(i), "the resized files have different holes"


def test_dirty_image_left_by_a_crash(instar, tmp_path):
    """The issue's case: qemu-io aborted after two writes to a lazy-refcounts image."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "t.qcow2", "64M", cwd=src)
    r = tl.qemu_io("-f", "qcow2", "-c", "write 0 64k", "-c", "write 1M 64k", "-c", "abort", "t.qcow2",
                   cwd=src, check=False)
    assert r.returncode != 0
    exp, act = tl.run_both_on_copies(instar, ["resize", "t.qcow2", "128M"], [src / "t.qcow2"], tmp_path / "run",
                                     compare_images=["t.qcow2"], compare_fmt="qcow2", copy=sparse_copy)
    tl.assert_same(exp, act, "resize of a dirty image")
    assert b"Rebuilding refcount structure" in exp.stderr, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "t.qcow2", tmp_path / "run" / "instar" / "t.qcow2"
    assert tl.same_content(o, i)
    assert host_extents(o) == host_extents(i)


@pytest.mark.parametrize("spec", ["--preallocation=metadata 20M", "--preallocation=falloc 20M",
                                  "--preallocation=full 16777216", "24M"])
@pytest.mark.parametrize("head", ["compressed", "backing"])
def test_dirty_image_partial_head(instar, tmp_path, head, spec):
    """A dirty image whose partial last cluster QEMU copies into a new one:
    the repair first, then the copy-on-write reads the repaired image
    (a compressed head decompressed, or the backing file's part)."""
    src = tmp_path / "src"
    src.mkdir()
    if head == "backing":
        tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "64M", cwd=src)
        tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 64M", "base.qcow2", cwd=src)
        tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-b", "base.qcow2", "-F", "qcow2",
                    "t.qcow2", "16776704", cwd=src)
        writes = ["write -P 3 16711680 4096"]
    else:
        tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "t.qcow2", "16776704", cwd=src)
        writes = ["write -c -P 3 16711680 65024"]
    args = []
    for w in [*writes, "write -P 5 0 64k", "write -P 6 1M 64k", "abort"]:
        args += ["-c", w]
    r = tl.qemu_io("-f", "qcow2", *args, "t.qcow2", cwd=src, check=False)
    assert r.returncode != 0
    *flags, new = spec.split()
    files = [src / "t.qcow2"] + ([src / "base.qcow2"] if head == "backing" else [])
    exp, act = tl.run_both_on_copies(instar, ["resize", *flags, "t.qcow2", new], files, tmp_path / "run",
                                     copy=sparse_copy, timeout=120)
    tl.assert_same(exp, act, f"resize {spec} of a dirty image")
    assert exp.returncode == 0, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "t.qcow2", tmp_path / "run" / "instar" / "t.qcow2"
    assert tl.same_content(o, i), f"resize {spec}: the files differ"


@pytest.mark.parametrize("head,spec", [("compressed", "--preallocation=metadata 20M"), ("backing", "24M")])
def test_dirty_image_with_bitmaps_partial_head(instar, tmp_path, head, spec):
    """A dirty image with persistent bitmaps whose partial last cluster QEMU
    copies: the node that loads the bitmaps and repairs the image is open
    over the backing chain, and the copy reads the head through it."""
    src = tmp_path / "src"
    src.mkdir()
    if head == "backing":
        tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "64M", cwd=src)
        tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 64M", "base.qcow2", cwd=src)
        tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-b", "base.qcow2", "-F", "qcow2",
                    "t.qcow2", "16776704", cwd=src)
        w = "write -P 3 16711680 4096"
    else:
        tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "t.qcow2", "16776704", cwd=src)
        w = "write -c -P 3 16711680 65024"
    tl.qemu_io("-f", "qcow2", "-c", w, "-c", "write -P 5 0 64k", "t.qcow2", cwd=src)
    tl.qemu_img("bitmap", "--add", "t.qcow2", "b0", cwd=src)
    with open(src / "t.qcow2", "r+b") as f:  # the dirty bit alone (the bitmaps consistent)
        f.seek(79)
        f.write(b"\x01")
    *flags, new = spec.split()
    files = [src / "t.qcow2"] + ([src / "base.qcow2"] if head == "backing" else [])
    exp, act = tl.run_both_on_copies(instar, ["resize", *flags, "t.qcow2", new], files, tmp_path / "run",
                                     compare_images=["t.qcow2"], compare_fmt="qcow2", copy=sparse_copy, timeout=120)
    tl.assert_same(exp, act, f"resize {spec} of a dirty image with bitmaps")
    assert exp.returncode == 0, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "t.qcow2", tmp_path / "run" / "instar" / "t.qcow2"
    assert tl.same_content(o, i), f"resize {spec}: the files differ"


# --- Persistent bitmaps: in use while open, resized in memory, stored again at the close ---

_bm_made: dict[str, Path] = {}


def bitmap_image(imgdir: Path, opts: str = "", size: str = "16M",
                 writes: tuple[str, ...] = ("write -P 3 0 100k", "write 12M 3M"), inuse: str = "") -> Path:
    """A qcow2 image with four bitmaps (64k, 4k, 512 B granularity; one disabled), bits set by
    qemu-io's writes; inuse: the name of one to mark in use (inconsistent)."""
    key = f"{opts}-{size}-{'|'.join(writes)}-{inuse}"
    if key in _bm_made:
        return _bm_made[key]
    path = imgdir / f"bm{len(_bm_made)}.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", *(["-o", opts] if opts else []), str(path), size)
    tl.qemu_img("bitmap", "--add", str(path), "b1")
    tl.qemu_img("bitmap", "--add", "-g", "4k", str(path), "b4k")
    tl.qemu_img("bitmap", "--add", "-g", "512", str(path), "b512")
    tl.qemu_img("bitmap", "--add", str(path), "dis")
    tl.qemu_img("bitmap", "--disable", str(path), "dis")
    for w in writes:
        tl.qemu_io("-f", "qcow2", "-c", w, str(path))
    if inuse:
        data = bytearray(path.read_bytes())
        off = int.from_bytes(data[100:104], "big")
        while True:
            magic, length = int.from_bytes(data[off:off + 4], "big"), int.from_bytes(data[off + 4:off + 8], "big")
            if magic == 0x23852875:
                count = int.from_bytes(data[off + 8:off + 12], "big")
                d = int.from_bytes(data[off + 24:off + 32], "big")
                for _ in range(count):
                    name_size = int.from_bytes(data[d + 18:d + 20], "big")
                    extra = int.from_bytes(data[d + 20:d + 24], "big")
                    if data[d + 24 + extra:d + 24 + extra + name_size] == inuse.encode():
                        data[d + 15] |= 1
                    d += (24 + extra + name_size + 7) & ~7
                break
            off += 8 + ((length + 7) & ~7)
        path.write_bytes(bytes(data))
    _bm_made[key] = path
    return path


def resize_bitmaps_both(instar, src: Path, tmp_path: Path, *args: str):
    """resize_both, then the files byte for byte (qemu places the stored bitmaps deterministically)."""
    exp, act = resize_both(instar, src, tmp_path, *args)
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_content(o, i), f"resize {args}: the files differ"
    info = tl.qemu_img("info", "--output=json", str(i)).stdout
    assert b'"bitmaps"' in info
    return exp, act


BM_IMAGES = {
    "c64k": ("", "16M"),
    "c512": ("cluster_size=512", "16M"),
    "extl2": ("extended_l2=on", "16M"),
    "refcount1": ("refcount_bits=1", "16M"),
    "unaligned": ("", "16775680"),
}
BM_SPECS = ["+7M", "1G", "--shrink 5M", "--shrink 12345k", "--shrink 13M",
            "--preallocation=metadata +2M", "--preallocation=falloc +2M", "--preallocation=full 20M"]


@pytest.mark.parametrize("spec", BM_SPECS)
@pytest.mark.parametrize("kind", list(BM_IMAGES))
def test_bitmaps(instar, imgdir, tmp_path, kind, spec):
    opts, size = BM_IMAGES[kind]
    src = bitmap_image(imgdir, opts, size)
    *flags, new = spec.split()
    exp, _ = resize_bitmaps_both(instar, src, tmp_path, *flags, "IMG", new)
    assert exp.returncode == 0, exp.describe()


def test_bitmaps_with_snapshot(instar, imgdir, tmp_path):
    src = tmp_path / "snap.qcow2"
    tl.copy_file(bitmap_image(imgdir), src)
    tl.qemu_img("snapshot", "-c", "s1", str(src))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 5 14M 1M", str(src))
    resize_bitmaps_both(instar, src, tmp_path, "--shrink", "IMG", "10M")


def test_bitmaps_huge_grow(instar, imgdir, tmp_path):
    """1 TiB: the 512-byte bitmap grows to 256 MiB of bits in memory, all new ones zero."""
    resize_bitmaps_both(instar, bitmap_image(imgdir, "extended_l2=on"), tmp_path, "IMG", "1T")


@pytest.mark.parametrize("spec", ["+1M", "--shrink 8M"])
def test_bitmap_in_use_refused_others_stored(instar, imgdir, tmp_path, spec):
    """qcow2_truncate_bitmaps_check(): an inconsistent bitmap fails the resize; the close still
    stores the others (marked in use at open) anew."""
    *flags, new = spec.split()
    exp, _ = resize_bitmaps_both(instar, bitmap_image(imgdir, inuse="b4k"), tmp_path, *flags, "IMG", new)
    assert exp.returncode == 1 and b"inconsistent" in exp.stderr, exp.describe()


@pytest.mark.parametrize("args", [("IMG", "1M"), ("IMG", "-16M"), ("IMG", "+100"),
                                  ("--preallocation=full", "IMG", "1M"), ("IMG", "9223372036854775807")],
                         ids=["no-shrink", "zero", "unaligned", "prealloc-shrink", "too-big"])
@pytest.mark.parametrize("inuse", ["", "b4k"])
def test_bitmaps_refused_size_still_stored(instar, imgdir, tmp_path, args, inuse):
    """img_resize() refuses these after opening the image read-write: the bitmaps were
    marked in use and are stored again by the close."""
    exp, _ = resize_bitmaps_both(instar, bitmap_image(imgdir, inuse=inuse), tmp_path, *args)
    assert exp.returncode == 1, exp.describe()


def test_dirty_image_refused_size_still_repaired(instar, tmp_path):
    """A dirty image is repaired by the open that comes before img_resize()'s size check."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "t.qcow2", "64M", cwd=src)
    r = tl.qemu_io("-f", "qcow2", "-c", "write 0 64k", "-c", "write 1M 64k", "-c", "abort", "t.qcow2",
                   cwd=src, check=False)
    assert r.returncode != 0
    exp, act = tl.run_both_on_copies(instar, ["resize", "t.qcow2", "32M"], [src / "t.qcow2"], tmp_path / "run",
                                     compare_images=["t.qcow2"], compare_fmt="qcow2", copy=sparse_copy)
    tl.assert_same(exp, act, "refused resize of a dirty image")
    assert exp.returncode == 1 and b"Rebuilding refcount structure" in exp.stderr, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "t.qcow2", tmp_path / "run" / "instar" / "t.qcow2"
    assert tl.same_content(o, i)


# --- An external data file: its clusters mapped 1:1; the data file follows the new size ---

DF_IMAGES = {
    "plain": "data_file=img.data",
    "raw": "data_file=img.data,data_file_raw=on",
    "extl2": "data_file=img.data,extended_l2=on,cluster_size=16k",
}
DF_SPECS = ["+2M", "--shrink 2M", "--shrink 3146240", "4100k", "--preallocation=metadata +2M",
            "--preallocation=metadata 4100k", "--preallocation=falloc 4100k", "--preallocation=full 5M",
            "1M", "+100"]


def _resize_data_file_both(instar, src: Path, tmp_path: Path, argv, files, check: bool = True):
    """argv under both tools on copies of src's files (a data file image's): the same results,
    the image and its data file the same bytes, and (check) instar's image clean to qemu-img's
    check, run from the copy's directory since the data file's name is relative.  Returns the
    oracle's result."""
    exp, act = tl.run_both_on_copies(instar, argv, [src / f for f in files], tmp_path / "run", timeout=120)
    tl.assert_same(exp, act, f"resize {argv}")
    for f in ("img.qcow2", "img.data"):
        o, i = tmp_path / "run" / "oracle" / f, tmp_path / "run" / "instar" / f
        assert tl.same_content(o, i), f"{f} differs after resize {argv}"
    if check:
        chk = tl.run_oracle(["check", "img.qcow2"], cwd=tmp_path / "run" / "instar")
        assert chk.returncode == 0, chk.describe()
    return exp


@pytest.mark.parametrize("spec", DF_SPECS)
@pytest.mark.parametrize("kind", list(DF_IMAGES))
def test_data_file(instar, tmp_path, kind, spec):
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", DF_IMAGES[kind], "img.qcow2", "4M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 1M", "-c", "write -P 2 3M 5k", "img.qcow2", cwd=src)
    *flags, new = spec.split()
    argv = ["resize", *flags, "img.qcow2", new]
    _resize_data_file_both(instar, src, tmp_path, argv, ("img.qcow2", "img.data"))


def test_grow_preallocation_metadata_zero_head(instar, imgdir, tmp_path):
    """The partial head cluster is a zero cluster: a new cluster takes its place."""
    src = qcow2_image(imgdir, 65536, 16, size="16776704", writes=("write -z 16711680 65024",))
    resize_both(instar, src, tmp_path, "--preallocation=metadata", "IMG", "20M")
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_content(o, i)


@pytest.mark.parametrize("spec", ["24M", "--preallocation=metadata 24M", "--preallocation=falloc 24M",
                                  "--preallocation=full 20M", "+512", "16777216"])
@pytest.mark.parametrize("kind", ["plain", "extl2", "unaligned", "unaligned-extl2", "unaligned-written"])
def test_data_file_over_longer_backing(instar, tmp_path, kind, spec):
    """An external data file over a longer backing file (data_file_raw
    cannot have one): the data file follows the new size (or is
    preallocated), then the zero-fill makes the grown range zero clusters;
    from an old size inside a (sub)cluster its explicit zeros go to the
    data file, in place or after the head's backing data (copy-on-write)."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 64M", "base.qcow2", cwd=src)
    opts = DF_IMAGES["extl2" if kind.endswith("extl2") else "plain"]
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", opts, "-b", "base.qcow2", "-F", "qcow2", "img.qcow2",
                "16776704" if kind.startswith("unaligned") else "16M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 3 0 1M", "img.qcow2", cwd=src)
    if kind == "unaligned-written":
        tl.qemu_io("-f", "qcow2", "-c", "write -P 4 16760832 1024", "img.qcow2", cwd=src)
    *flags, new = spec.split()
    argv = ["resize", *flags, "img.qcow2", new]
    _resize_data_file_both(instar, src, tmp_path, argv, ("img.qcow2", "img.data", "base.qcow2"))


@pytest.mark.parametrize("kind,cs,size,new", [("zero-alloc", 65536, "16776704", "24M"),
                                              ("zero-plain", 65536, "16776704", "16777216"),
                                              ("zero-alloc", 4096, "16773632", "16776192")],
                         ids=["alloc", "plain-to-cluster-end", "alloc-4k-same-cluster"])
def test_data_file_over_longer_backing_zero_head(instar, tmp_path, kind, cs, size, new):
    """A data file image's zero head cluster under the zero-fill over a
    longer backing file: zeros written over the whole cluster in the data
    file (its copy-on-write reaches both ends, past the new end too), then
    the entry maps it without the zero flag."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 64M", "base.qcow2", cwd=src)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file=img.data,cluster_size={cs}", "-b", "base.qcow2",
                "-F", "qcow2", "img.qcow2", size, cwd=src)
    head = int(size) // cs * cs
    z = "write -z -u" if kind == "zero-plain" else "write -z"
    tl.qemu_io("-f", "qcow2", "-c", "write -P 3 0 1M", "-c", f"write -P 4 {head} 512",
               "-c", f"{z} {head} {int(size) - head}", "img.qcow2", cwd=src)
    argv = ["resize", "img.qcow2", new]
    exp = _resize_data_file_both(instar, src, tmp_path, argv, ("img.qcow2", "img.data", "base.qcow2"))
    assert exp.returncode == 0, exp.describe()


@pytest.mark.parametrize("opts,size,new", [("cluster_size=4096", "16773632", "16776192"),
                                           ("extended_l2=on", "16775680", "16776704")], ids=["4k", "extl2"])
def test_data_file_over_longer_backing_tail_past_new_end(instar, tmp_path, opts, size, new):
    """A data file image's unallocated head under the zero-fill, the new
    size inside the same (sub)cluster: the copy-on-write's tail past the
    new end gets the backing file's data there, as perform_cow() reads it."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 64M", "base.qcow2", cwd=src)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file=img.data,{opts}", "-b", "base.qcow2",
                "-F", "qcow2", "img.qcow2", size, cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 3 0 1M", "img.qcow2", cwd=src)
    argv = ["resize", "img.qcow2", new]
    exp = _resize_data_file_both(instar, src, tmp_path, argv, ("img.qcow2", "img.data", "base.qcow2"),
                                 check=False)
    assert exp.returncode == 0, exp.describe()


@pytest.mark.parametrize("kind,new", [("unalloc-sc", "24M"), ("unalloc-sc", "16776192"),
                                      ("zero-sc", "24M"), ("zero-sc", "16774656")],
                         ids=["unalloc-sc", "unalloc-sc-same-subcluster", "zero-sc", "zero-sc-same-subcluster"])
def test_data_file_over_longer_backing_extl2_kept_head(instar, tmp_path, kind, new):
    """A data file image with extended L2 entries whose head cluster is
    mapped, its subcluster at the old end unallocated or zero: the
    zero-fill's write keeps the cluster, its copy-on-write from that
    subcluster's start to its end (the backing data, or zeros) goes to the
    data file with the zeros, then the subcluster is allocated."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 64M", "base.qcow2", cwd=src)
    size = "16775680" if kind == "unalloc-sc" else "16775168"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", DF_IMAGES["extl2"].replace(",cluster_size=16k", ""),
                "-b", "base.qcow2", "-F", "qcow2", "img.qcow2", size, cwd=src)
    writes = ["-c", "write -P 3 0 1M", "-c", "write -P 4 16711680 2048"]
    if kind == "zero-sc":
        writes += ["-c", "write -z 16773120 2048"]
    tl.qemu_io("-f", "qcow2", *writes, "img.qcow2", cwd=src)
    if kind == "zero-sc":  # the old end inside the zero subcluster
        tl.qemu_img("resize", "-q", "--shrink", "img.qcow2", "16774144", cwd=src)
    argv = ["resize", "img.qcow2", new]
    exp = _resize_data_file_both(instar, src, tmp_path, argv, ("img.qcow2", "img.data", "base.qcow2"))
    assert exp.returncode == 0, exp.describe()


def test_shrink_discards_as_qemu(instar, imgdir, tmp_path):
    """The clusters a shrink frees inside the kept file are punched out as
    qemu-img punches them: same bytes, same holes, same `disk size`."""
    src = qcow2_image(imgdir, 65536, 16, writes=("write -P 7 0 64k", "write -P 3 8M 1M", "write -P 9 12M 128k"))
    resize_both(instar, src, tmp_path, "--shrink", "IMG", "4M")
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_files(o, i)
    assert tl.allocated_blocks(o) == tl.allocated_blocks(i)


# --- Encrypted qcow2 images, opened with their key (--object secret, --image-opts) ---

ENC_SECRET = ["--object", "secret,id=s0,data=abc"]
ENC_OPTS = "driver=qcow2,file.filename=img.qcow2,encrypt.key-secret=s0"


@pytest.fixture(scope="module")
def enc_dir(tmp_path_factory):
    """The encrypted sources, each built once per module and worker (qemu-img's LUKS create
    times PBKDF2 for seconds on a loaded machine, whatever the iter-time); cases run on copies."""
    return tmp_path_factory.mktemp("enc")


def encrypted_image(enc_dir: Path, fmt: str, size: str) -> Path:
    src = enc_dir / f"{fmt}-{size}"
    if (src / "img.qcow2").exists():
        return src / "img.qcow2"
    src.mkdir(exist_ok=True)
    o = f"encrypt.format={fmt},encrypt.key-secret=s0" + (",encrypt.iter-time=10" if fmt == "luks" else "")
    # qemu's PBKDF benchmark fails under load ("Unable to get accurate CPU usage"): retried.
    for attempt in range(20):
        r = tl.qemu_img("create", "-q", *ENC_SECRET, "-f", "qcow2", "-o", o, "img.qcow2", size, cwd=src,
                        check=attempt == 19)
        if r.returncode == 0:
            break
    # The last cluster partly written (a size inside it), one in the middle whole.
    last = (int(size) - 1) // 65536 * 65536 if size.isdigit() else 16711680
    tl.qemu_io(*ENC_SECRET, "--image-opts", ENC_OPTS, "-c", "write -P 5 1M 64k", "-c",
               f"write -P 3 {last} 512", cwd=src)
    return src / "img.qcow2"


ENC_SPECS = ["+16M", "--shrink 8M", "--shrink 1000000k", "--preallocation=metadata 32M",
             "--preallocation=falloc 32M", "--preallocation=full 20M", "--preallocation=falloc 20000k"]


@pytest.mark.parametrize("spec", ENC_SPECS)
@pytest.mark.parametrize("fmt,size", [("luks", "16M"), ("aes", "16M"), ("luks", "16776704")],
                         ids=["luks", "aes", "luks-unaligned"])
def test_encrypted(instar, tmp_path, enc_dir, fmt, size, spec):
    """Whole clusters mapped, and a partial cluster at either end copied or zero-filled through
    the image's cipher (the same master key, the same IVs): the files come out byte for byte."""
    src = encrypted_image(enc_dir, fmt, size)
    *flags, new = spec.split()
    argv = ["resize", *ENC_SECRET, *flags, "--image-opts", ENC_OPTS, new]
    exp, act = tl.run_both_on_copies(instar, argv, [src], tmp_path / "run", timeout=120)
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    tl.assert_same(exp, act, f"resize {argv}")
    assert tl.same_content(o, i), f"resize {argv}: the files differ"
    assert o.stat().st_size == i.stat().st_size


@pytest.mark.parametrize("fmt,spec", [
    ("luks", "+16M"), ("luks", "--shrink 8M"), ("luks", "--preallocation=metadata 32M"),
    ("luks", "--preallocation=falloc 20000k"), ("aes", "--preallocation=full 20M"),
])
def test_encrypted_bitmaps(instar, tmp_path, enc_dir, fmt, spec):
    """An encrypted image with a persistent bitmap (bits set), its size inside a partly written
    cluster: the open loads the bitmap and marks it in use, the grow's data goes through the
    cipher of that same node (the key unlocks it), the close stores the bitmap at the new size:
    the oracle's file byte for byte."""
    src = enc_dir / f"{fmt}-bitmaps"
    if not (src / "img.qcow2").exists():
        src.mkdir(exist_ok=True)
        tl.copy_file(encrypted_image(enc_dir, fmt, "16776704"), src / "img.qcow2")
        tl.qemu_img("bitmap", *ENC_SECRET, "--add", "--image-opts", ENC_OPTS, "b0", cwd=src)
        tl.qemu_io(*ENC_SECRET, "--image-opts", ENC_OPTS, "-c", "write -P 6 4M 64k", cwd=src)
    *flags, new = spec.split()
    argv = ["resize", *ENC_SECRET, *flags, "--image-opts", ENC_OPTS, new]
    exp, act = tl.run_both_on_copies(instar, argv, [src / "img.qcow2"], tmp_path / "run", timeout=120)
    tl.assert_same(exp, act, f"resize {argv}")
    assert exp.returncode == 0, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_content(o, i), f"resize {argv}: the files differ"


@pytest.mark.parametrize("fmt,head,spec", [
    ("luks", True, "--preallocation=metadata 20000k"), ("luks", False, "--preallocation=falloc 20000k"),
    ("luks", True, "--preallocation=full 20M"), ("aes", True, "--preallocation=metadata 20000k"),
    ("luks", True, "20M"), ("luks", "backing", "20M"), ("aes", "backing", "--preallocation=metadata 20M"),
], ids=["luks-metadata", "luks-unwritten-falloc", "luks-full", "aes-metadata", "luks-off",
        "luks-over-backing", "aes-over-backing-metadata"])
def test_encrypted_data_file(instar, tmp_path, enc_dir, fmt, head, spec):
    """An encrypted image with an external data file, its size inside the last cluster (written
    in part, or not at all; "backing": written, over a longer backing file, so the grow
    zero-fills): the copy-on-write of the head and tail clusters and the explicit zeros go into
    the data file through the cipher, as qemu writes them: both files are the oracle's byte for
    byte."""
    src = enc_dir / f"{fmt}-df-{head}"
    if not (src / "img.qcow2").exists():
        src.mkdir(exist_ok=True)
        o = f"encrypt.format={fmt},encrypt.key-secret=s0,data_file=img.raw" + (
            ",encrypt.iter-time=10" if fmt == "luks" else "")
        b = []
        if head == "backing":
            tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "24M", cwd=src)
            tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 24M", "base.qcow2", cwd=src)
            b = ["-b", "base.qcow2", "-F", "qcow2"]
        tl.qemu_img_retried("create", "-q", *ENC_SECRET, "-f", "qcow2", "-o", o, *b, "img.qcow2", "16776704",
                            cwd=src)
        if head:
            tl.qemu_io(*ENC_SECRET, "--image-opts", ENC_OPTS, "-c", "write -P 3 16711680 512", "-c",
                       "write -P 4 1M 4k", cwd=src)
    *flags, new = spec.split()
    argv = ["resize", *ENC_SECRET, *flags, "--image-opts", ENC_OPTS, new]
    files = [src / "img.qcow2", src / "img.raw"] + ([src / "base.qcow2"] if head == "backing" else [])
    exp, act = tl.run_both_on_copies(instar, argv, files, tmp_path / "run", timeout=120)
    tl.assert_same(exp, act, f"resize {argv}")
    assert exp.returncode == 0, exp.describe()
    for f in ("img.qcow2", "img.raw"):
        o, i = tmp_path / "run" / "oracle" / f, tmp_path / "run" / "instar" / f
        assert tl.same_content(o, i), f"resize {argv}: {f} differs"


@pytest.mark.parametrize("spec", ["24M", "--preallocation=metadata 24M", "--preallocation=falloc 20000k"])
@pytest.mark.parametrize("fmt", ["luks", "aes"])
def test_encrypted_over_longer_backing(instar, tmp_path, enc_dir, fmt, spec):
    """The zero-fill over a longer backing file from a size inside a cluster partly written:
    the head cluster's explicit zeros (and its copy) go through the cipher."""
    src = enc_dir / f"{fmt}-over-backing"
    if not (src / "img.qcow2").exists():
        src.mkdir(exist_ok=True)
        tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "24M", cwd=src)
        tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 24M", "base.qcow2", cwd=src)
        o = f"encrypt.format={fmt},encrypt.key-secret=s0" + (",encrypt.iter-time=10" if fmt == "luks" else "")
        tl.qemu_img_retried("create", "-q", *ENC_SECRET, "-f", "qcow2", "-o", o, "-b", "base.qcow2", "-F",
                            "qcow2", "img.qcow2", "16776704", cwd=src)
        tl.qemu_io(*ENC_SECRET, "--image-opts", ENC_OPTS, "-c", "write -P 3 16711680 512", cwd=src)
    *flags, new = spec.split()
    argv = ["resize", *ENC_SECRET, *flags, "--image-opts", ENC_OPTS, new]
    exp, act = tl.run_both_on_copies(instar, argv, [src / "img.qcow2", src / "base.qcow2"], tmp_path / "run",
                                     timeout=120)
    tl.assert_same(exp, act, f"resize {argv}")
    assert exp.returncode == 0, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "img.qcow2", tmp_path / "run" / "instar" / "img.qcow2"
    assert tl.same_content(o, i), f"resize {argv}: the files differ"


@pytest.mark.parametrize("args", [["img.qcow2", "+1M"],
                                  ["--object", "secret,id=s0,data=bad", "--image-opts", ENC_OPTS, "+1M"],
                                  [*ENC_SECRET, "--image-opts", ENC_OPTS, "1M"]],
                         ids=["no-key", "wrong-key", "no-shrink"])
def test_encrypted_refused_by_qemu(instar, tmp_path, enc_dir, args):
    src = encrypted_image(enc_dir, "luks", "16M")
    exp, act = tl.run_both_on_copies(instar, ["resize", *args], [src], tmp_path / "run")
    tl.assert_same(exp, act, f"resize {args}")
    assert exp.returncode == 1
    assert (tmp_path / "run" / "instar" / "img.qcow2").read_bytes() == src.read_bytes()


# --- Dirty images with persistent bitmaps: loaded (marked in use), then repaired, then resized ---

def set_bitmap_flags(path: Path, clear_in_use: bool) -> None:
    """Clear the in-use flag of every bitmap in path's directory (a crash left them set)."""
    data = bytearray(path.read_bytes())
    off = int.from_bytes(data[100:104], "big")
    while True:
        magic, length = int.from_bytes(data[off:off + 4], "big"), int.from_bytes(data[off + 4:off + 8], "big")
        assert magic, "no bitmap extension"
        if magic == 0x23852875:
            count = int.from_bytes(data[off + 8:off + 12], "big")
            d = int.from_bytes(data[off + 24:off + 32], "big")
            for _ in range(count):
                name_size = int.from_bytes(data[d + 18:d + 20], "big")
                extra = int.from_bytes(data[d + 20:d + 24], "big")
                if clear_in_use:
                    data[d + 15] &= ~1
                d += (24 + extra + name_size + 7) & ~7
            break
        off += 8 + ((length + 7) & ~7)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def dirty_bitmap_images(tmp_path_factory):
    d = tmp_path_factory.mktemp("dirty-bm")
    made = {}
    for kind in ("crash", "crash-consistent", "dirty-bit"):
        p = d / f"{kind}.qcow2"
        tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=4096", str(p), "16M")
        tl.qemu_img("bitmap", "--add", str(p), "b0")
        tl.qemu_img("bitmap", "--add", "-g", "8k", "--disable", str(p), "b1")
        if kind == "dirty-bit":
            tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 100k", str(p))
            b = bytearray(p.read_bytes())
            b[79] |= 1
            p.write_bytes(bytes(b))
        else:
            r = tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 100k", "-c", "write -P 2 9M 64k", "-c", "abort",
                           str(p), check=False)
            assert r.returncode != 0
            set_bitmap_flags(p, clear_in_use=kind == "crash-consistent")
        made[kind] = p
    return made


@pytest.mark.parametrize("spec", ["+1M", "--shrink 4M", "--preallocation=metadata 20M", "--preallocation=falloc 20M",
                                  "1M"])
@pytest.mark.parametrize("kind", ["crash", "crash-consistent", "dirty-bit"])
def test_dirty_image_with_bitmaps(instar, dirty_bitmap_images, tmp_path, kind, spec):
    """qcow2_do_open() loads the bitmaps (marking them in use), repairs the image printing
    check -r's lines, then the resize runs (or is refused: an inconsistent bitmap, or a
    shrink without --shrink) and the close stores the bitmaps: same output, same bytes."""
    src = dirty_bitmap_images[kind]
    *flags, new = spec.split()
    exp, act = tl.run_both_on_copies(instar, ["resize", *flags, src.name, new], [src], tmp_path / "run",
                                     copy=sparse_copy, timeout=120)
    tl.assert_same(exp, act, f"resize {spec} of a dirty image with bitmaps")
    if kind != "dirty-bit":
        assert b"Repairing" in exp.stderr, exp.describe()
    o, i = tmp_path / "run" / "oracle" / src.name, tmp_path / "run" / "instar" / src.name
    assert tl.same_content(o, i), f"resize {spec}: the files differ"
    assert o.stat().st_size == i.stat().st_size
