"""Parity of `qemu-img snapshot` (-l, -c, -d, -a) between qemu-img 7.2 and instar.

Each case runs both tools on private copies of an image the oracle made
and compares exit code, stdout and stderr.  For the images a command
changed it compares, with the oracle's own tools:
  * the bytes of the two files, with the date fields of the snapshot
    table entries masked (each tool stamps its own wall-clock time), and
    the two tables' dates are checked to be plausible "now" values;
  * `qemu-img check` output, `qemu-img info --output=json` without the
    date fields and actual-size, `snapshot -l` with dates normalised,
    the `disk size` line of `qemu-img info`, and `qemu-img compare` of
    the active layers.
Nothing here is an expected value written by hand: the oracle's run is
the expectation.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import time
from pathlib import Path

import pytest

import instar_testlib as tl

REFCOUNT_BITS = [1, 2, 4, 8, 16, 32, 64]
CLUSTER_SIZES = [512, 4096, 65536, 2 << 20]

WRITES = ("write -P 1 0 64k", "write -P 3 1M 192k", "write -z 3M 64k")


def make_image(path: Path, size: str = "4M", opts: str = "", writes=WRITES, snaps=(),
               after=()) -> Path:
    """A qcow2 image made by the oracle: writes, snapshots (each after the writes so far), more writes."""
    tl.qemu_img("create", "-q", "-f", "qcow2", *(["-o", opts] if opts else []), str(path), size)
    if writes:
        args = []
        for w in writes:
            args += ["-c", w]
        tl.qemu_io("-f", "qcow2", *args, str(path))
    for s in snaps:
        tl.qemu_img("snapshot", "-c", s, str(path))
    if after:
        args = []
        for w in after:
            args += ["-c", w]
        tl.qemu_io("-f", "qcow2", *args, str(path))
    return path


def snapshot_dates(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of every entry's date fields in a qcow2 image's snapshot table."""
    if data[:4] != b"QFI\xfb":
        return []
    nb, off = struct.unpack(">IQ", data[60:72])
    out = []
    for _ in range(nb):
        off = (off + 7) & ~7
        if off + 40 > len(data):
            break
        id_size, name_size = struct.unpack(">HH", data[off + 12:off + 16])
        extra = struct.unpack(">I", data[off + 36:off + 40])[0]
        out.append((off + 16, 8))
        off += 40 + extra + id_size + name_size
    return out


def masked(data: bytes) -> tuple[bytes, list[int]]:
    """data with the snapshot dates zeroed, and the date_sec values."""
    b = bytearray(data)
    secs = []
    for off, n in snapshot_dates(data):
        secs.append(struct.unpack(">I", data[off:off + 4])[0])
        b[off:off + n] = bytes(n)
    return bytes(b), secs


DATE_RE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def norm_list(out: bytes) -> bytes:
    """snapshot -l / info output with its dates replaced (the format is kept checked)."""
    return DATE_RE.sub(b"YYYY-MM-DD hh:mm:ss", out)


def info_json(path: Path) -> dict:
    r = tl.qemu_img("info", "--output=json", str(path))
    d = json.loads(r.stdout)
    d.pop("actual-size", None)
    d.pop("filename", None)
    d.pop("full-backing-filename", None)
    for sn in d.get("snapshots", []):
        sn.pop("date-sec")
        sn.pop("date-nsec")
    return d


def disk_size(path: Path) -> bytes:
    r = tl.qemu_img("info", str(path))
    return [ln for ln in r.stdout.splitlines() if ln.startswith(b"disk size:")][0]


def compare_results(o: Path, i: Path, what: str, t0: float) -> None:
    """The oracle's and instar's images after the same command (see the module docstring)."""
    a, b = o.read_bytes(), i.read_bytes()
    (ma, sa), (mb, sb) = masked(a), masked(b)
    assert len(a) == len(b), f"{what}: file length oracle {len(a)}, instar {len(b)}"
    if ma != mb:
        diff = next(k for k in range(len(ma)) if ma[k] != mb[k])
        raise AssertionError(f"{what}: images differ first at byte {diff:#x}")
    # Dates: the same table entries; new ones stamped at the time of the run.
    assert len(sa) == len(sb)
    for x, y in zip(sa, sb):
        if x != y:
            assert int(t0) - 2 <= y <= time.time() + 2, f"{what}: instar date {y}"
    if tl.allocated_blocks(o) == tl.allocated_blocks(i):
        # The same bytes but for the dates and the same allocation: the
        # oracle's check, info, list, disk size and compare agree by construction.
        return
    ca = tl.qemu_img("check", str(o), check=False)
    cb = tl.qemu_img("check", str(i), check=False)
    assert (ca.returncode, ca.stdout, ca.stderr) == (cb.returncode, cb.stdout, cb.stderr), what
    assert info_json(o) == info_json(i), what
    la = tl.qemu_img("snapshot", "-l", str(o))
    lb = tl.qemu_img("snapshot", "-l", str(i))
    assert norm_list(la.stdout) == norm_list(lb.stdout), what
    assert disk_size(o) == disk_size(i), what
    r = tl.qemu_img("compare", "-f", "qcow2", "-F", "qcow2", str(o), str(i), check=False)
    assert r.returncode == 0, f"{what}: active layers differ: {r.stdout!r}"


def snap_both(instar, src: Path, tmp_path: Path, *args: str, name: str = "img.qcow2",
              extra_files=(), sparse: bool = True):
    """snapshot ARGS (IMG, also inside an argument, = the copy) on copies of src; full comparison of the results.
    sparse=False: the copies keep src's host layout (its zero blocks stay data)."""
    work = tmp_path / "w"
    work.mkdir(parents=True, exist_ok=True)
    copy = work / name
    tl.copy_file(src, copy, sparse_always=sparse)
    argv = ["snapshot", *[re.sub(r"\bIMG\b", name, a) for a in args]]
    t0 = time.time()
    exp, act = tl.run_both_on_copies(instar, argv, [copy, *extra_files], tmp_path / "run")
    tl.assert_same(exp, act, f"snapshot {args}")
    if name.endswith(".qcow2"):
        compare_results(tmp_path / "run" / "oracle" / name, tmp_path / "run" / "instar" / name,
                        f"snapshot {args}", t0)
    return exp, act


# --- -l ---


@pytest.mark.parametrize("snaps", [(), ("one",), ("a", "b", "a", "a-much-longer-tag-name-x")],
                         ids=["none", "one", "four"])
@pytest.mark.parametrize("U", [[], ["-U"]], ids=["lock", "U"])
def test_list(instar, tmp_path, snaps, U):
    src = make_image(tmp_path / "src.qcow2", snaps=snaps)
    exp, _ = snap_both(instar, src, tmp_path, *U, "-l", "IMG")
    assert exp.returncode == 0


def test_list_v2_and_extl2(instar, tmp_path):
    for i, opts in enumerate(["compat=0.10", "extended_l2=on", "refcount_bits=2"]):
        src = make_image(tmp_path / f"src{i}.qcow2", opts=opts, snaps=("s",))
        snap_both(instar, src, tmp_path / str(i), "-l", "IMG")


def test_list_raw(instar, tmp_path):
    tl.qemu_img("create", "-q", "-f", "raw", str(tmp_path / "src.raw"), "1M")
    snap_both(instar, tmp_path / "src.raw", tmp_path, "-l", "IMG", name="img.raw")


def test_list_image_opts(instar, tmp_path):
    src = make_image(tmp_path / "src.qcow2", snaps=("s",))
    snap_both(instar, src, tmp_path, "--image-opts", "-l", "driver=qcow2,file.filename=IMG")


@pytest.mark.parametrize("argv", [
    ["-f", "qcow2", "-l", "IMG"],
    ["-l", "-c", "x", "IMG"],
    ["-d", "x", "-a", "y", "IMG"],
    ["-l"],
    ["-l", "IMG", "IMG"],
    ["-c"],
    ["-x", "IMG"],
    ["-l", "missing.qcow2"],
    ["--image-opts", "-l", "IMG"],
], ids=["f", "mix-l-c", "mix-d-a", "no-file", "two-files", "c-no-arg", "unknown", "missing",
        "image-opts-plain"])
def test_usage_errors(instar, tmp_path, argv):
    src = make_image(tmp_path / "src.qcow2", snaps=("s",))
    exp, _ = snap_both(instar, src, tmp_path, *argv)
    assert exp.returncode == 1


@pytest.mark.parametrize("argv", [
    ["--object", "secret,id=s0,data=x", "-l", "IMG"],
    ["--object", "secret,id=s0,data=x", "-c", "o", "IMG"],
    ["--object", "bogus,id=x", "-l", "IMG"],
    ["-q", "-d", "s", "IMG"],
    ["-h"],
], ids=["object-l", "object-c", "object-bogus", "quiet-d", "help"])
def test_options(instar, tmp_path, argv):
    src = make_image(tmp_path / "src.qcow2", snaps=("s",))
    snap_both(instar, src, tmp_path, *argv)


def test_no_action(instar, tmp_path):
    src = make_image(tmp_path / "src.qcow2", snaps=("s",))
    snap_both(instar, src, tmp_path, "IMG")


def hold_lock(path, byte):
    fd = os.open(path, os.O_RDWR)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0))
    return fd


@pytest.mark.parametrize("argv", [["-l"], ["-U", "-l"], ["-c", "s"], ["-U", "-c", "s"],
                                  ["-d", "s"], ["-a", "s"]],
                         ids=["l", "U-l", "c", "U-c", "d", "a"])
def test_locked(instar, tmp_path, argv):
    """Another process writing the image (its lock byte 201: shares no write)."""
    tl.qemu_img("create", "-q", "-f", "qcow2", "img.qcow2", "1M", cwd=tmp_path)
    tl.qemu_img("snapshot", "-c", "s", "img.qcow2", cwd=tmp_path)
    fd = hold_lock(tmp_path / "img.qcow2", 201)
    try:
        exp, act = tl.run_both(instar, ["snapshot", *argv, "img.qcow2"], cwd=tmp_path)
    finally:
        os.close(fd)
    tl.assert_same(exp, act, f"locked {argv}")


# --- -c ---


@pytest.mark.parametrize("rb", REFCOUNT_BITS)
@pytest.mark.parametrize("cs", CLUSTER_SIZES)
def test_create(instar, tmp_path, cs, rb):
    src = make_image(tmp_path / "src.qcow2", opts=f"cluster_size={cs},refcount_bits={rb}")
    snap_both(instar, src, tmp_path, "-c", "snap1", "IMG")


@pytest.mark.parametrize("rb", REFCOUNT_BITS)
def test_create_second(instar, tmp_path, rb):
    """A second snapshot over shared clusters: refcount 3 needs 2 bits."""
    src = make_image(tmp_path / "src.qcow2", opts=f"refcount_bits={rb}",
                     snaps=() if rb == 1 else ("first",), after=("write -P 5 64k 64k",))
    snap_both(instar, src, tmp_path, "-c", "second", "IMG")


@pytest.mark.parametrize("opts", ["compat=0.10", "extended_l2=on", "cluster_size=16384,extended_l2=on",
                                  "lazy_refcounts=on", "compression_type=zstd"])
def test_create_formats(instar, tmp_path, opts):
    src = make_image(tmp_path / "src.qcow2", opts=opts, snaps=("a",), after=("write -P 9 2M 64k",))
    snap_both(instar, src, tmp_path, "-c", "b", "IMG")


def test_create_compressed(instar, tmp_path):
    tl.qemu_img("create", "-q", "-f", "qcow2", str(tmp_path / "raw.qcow2"), "4M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 1M", str(tmp_path / "raw.qcow2"))
    tl.qemu_img("convert", "-c", "-O", "qcow2", str(tmp_path / "raw.qcow2"), str(tmp_path / "src.qcow2"))
    snap_both(instar, tmp_path / "src.qcow2", tmp_path, "-c", "c", "IMG")


@pytest.mark.parametrize("name", ["dup", "x" * 300, "1", "with space", "ünï"],
                         ids=["duplicate", "long", "numeric", "space", "utf8"])
def test_create_names(instar, tmp_path, name):
    src = make_image(tmp_path / "src.qcow2", snaps=("dup", "7"))
    snap_both(instar, src, tmp_path, "-c", name, "IMG")


def test_create_many(instar, tmp_path):
    src = make_image(tmp_path / "src.qcow2", opts="cluster_size=512", snaps=tuple(f"s{i}" for i in range(12)))
    snap_both(instar, src, tmp_path, "-q", "-c", "thirteen", "IMG")


def test_create_empty(instar, tmp_path):
    src = make_image(tmp_path / "src.qcow2", size="0", writes=())
    snap_both(instar, src, tmp_path, "-c", "e", "IMG")


def test_create_image_opts(instar, tmp_path):
    src = make_image(tmp_path / "src.qcow2")
    snap_both(instar, src, tmp_path, "--image-opts", "-c", "s", "driver=qcow2,file.filename=IMG")


def test_create_backing(instar, tmp_path):
    tl.qemu_img("create", "-q", "-f", "qcow2", str(tmp_path / "base.qcow2"), "4M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 4 0 2M", str(tmp_path / "base.qcow2"))
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(tmp_path / "src.qcow2"))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 2 64k 64k", str(tmp_path / "src.qcow2"))
    snap_both(instar, tmp_path / "src.qcow2", tmp_path, "-c", "s", "IMG",
              extra_files=[tmp_path / "base.qcow2"])


# --- -d ---


@pytest.mark.parametrize("rb", REFCOUNT_BITS[2:])
@pytest.mark.parametrize("which", ["a", "b", "c", "missing", "2"])
def test_delete(instar, tmp_path, rb, which):
    src = make_image(tmp_path / "src.qcow2", opts=f"refcount_bits={rb}", snaps=("a", "b"),
                     after=("write -P 8 0 128k", "write -P 6 2M 64k"))
    tl.qemu_img("snapshot", "-c", "c", str(src))
    snap_both(instar, src, tmp_path, "-d", which, "IMG")


@pytest.mark.parametrize("cs", CLUSTER_SIZES)
def test_delete_only(instar, tmp_path, cs):
    src = make_image(tmp_path / "src.qcow2", opts=f"cluster_size={cs}", snaps=("only",),
                     after=("write -P 2 0 256k",))
    snap_both(instar, src, tmp_path, "-d", "only", "IMG")


@pytest.mark.parametrize("opts", ["compat=0.10", "extended_l2=on"])
def test_delete_formats(instar, tmp_path, opts):
    src = make_image(tmp_path / "src.qcow2", opts=opts, snaps=("a", "b"), after=("write -P 9 0 64k",))
    snap_both(instar, src, tmp_path, "-d", "a", "IMG")


def test_delete_duplicate_names(instar, tmp_path):
    src = make_image(tmp_path / "src.qcow2", snaps=("d", "d"), after=("write -P 9 0 64k",))
    snap_both(instar, src, tmp_path, "-d", "d", "IMG")


# --- -a ---


@pytest.mark.parametrize("rb", REFCOUNT_BITS[1:])
@pytest.mark.parametrize("which", ["a", "b", "1", "missing"])
def test_apply(instar, tmp_path, rb, which):
    src = make_image(tmp_path / "src.qcow2", opts=f"refcount_bits={rb}", snaps=("a",),
                     after=("write -P 8 0 128k", "write -P 6 2M 64k"))
    tl.qemu_img("snapshot", "-c", "b", str(src))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 1M 64k", str(src))
    snap_both(instar, src, tmp_path, "-a", which, "IMG")


@pytest.mark.parametrize("opts", ["compat=0.10", "extended_l2=on", "cluster_size=512"])
def test_apply_formats(instar, tmp_path, opts):
    src = make_image(tmp_path / "src.qcow2", opts=opts, snaps=("a",), after=("write -P 9 0 64k",))
    snap_both(instar, src, tmp_path, "-a", "a", "IMG")


def test_apply_compressed(instar, tmp_path):
    tl.qemu_img("create", "-q", "-f", "qcow2", str(tmp_path / "raw.qcow2"), "4M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 1M", str(tmp_path / "raw.qcow2"))
    tl.qemu_img("convert", "-c", "-O", "qcow2", str(tmp_path / "raw.qcow2"), str(tmp_path / "src.qcow2"))
    tl.qemu_img("snapshot", "-c", "c", str(tmp_path / "src.qcow2"))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 3 0 128k", str(tmp_path / "src.qcow2"))
    snap_both(instar, tmp_path / "src.qcow2", tmp_path, "-a", "c", "IMG")


@pytest.mark.parametrize("new_size,opts", [("8M", ""), ("2M", ""), ("8M", "cluster_size=512"),
                                           ("1M", "cluster_size=512,refcount_bits=4"),
                                           ("8M", "extended_l2=on")],
                         ids=["resized-grown", "resized-shrunk", "resized-grown-512",
                              "resized-shrunk-512", "resized-grown-extl2"])
def test_apply_resized(instar, tmp_path, new_size, opts):
    """A snapshot of another size: qemu truncates the image to it."""
    src = make_image(tmp_path / "src.qcow2", opts=opts, snaps=("old",), after=("write -P 5 0 128k",))
    tl.qemu_img("resize", "--shrink", str(src), new_size)
    snap_both(instar, src, tmp_path, "-a", "old", "IMG")


def test_apply_unaligned_size(instar, tmp_path):
    """A snapshot whose disk size (its extra data, hand-edited) is not a
    multiple of 512: the truncation fails before anything is written."""
    src = make_image(tmp_path / "src.qcow2", snaps=("old",))
    with open(src, "r+b") as f:
        f.seek(64)
        table = struct.unpack(">Q", f.read(8))[0]
        f.seek(table + 40 + 8)  # the first entry's extra data: vm_state_size_large, then disk_size
        f.write(struct.pack(">Q", (4 << 20) + 100))
    exp, _ = snap_both(instar, src, tmp_path, "-a", "old", "IMG")
    assert exp.returncode == 1 and b"multiple of 512" in exp.stderr


# --- Images without snapshot support ---


@pytest.mark.parametrize("argv", [["-c", "x"], ["-d", "x"], ["-a", "x"], ["-l"]])
@pytest.mark.parametrize("fmt", ["probed", "raw"])
def test_raw(instar, tmp_path, argv, fmt):
    tl.qemu_img("create", "-q", "-f", "raw", str(tmp_path / "src.raw"), "1M")
    if fmt == "raw":
        exp, _ = snap_both(instar, tmp_path / "src.raw", tmp_path, "--image-opts", *argv,
                           "driver=raw,file.filename=IMG", name="img.raw")
    else:
        exp, _ = snap_both(instar, tmp_path / "src.raw", tmp_path, *argv, "IMG", name="img.raw")
    # The raw file is unchanged by both.
    a = (tmp_path / "run" / "oracle" / "img.raw").read_bytes()
    assert a == (tmp_path / "run" / "instar" / "img.raw").read_bytes()


@pytest.mark.parametrize("argv", [["-c", "x"], ["-d", "s"], ["-a", "s"], ["-l"]])
def test_data_file(instar, tmp_path, argv):
    """An external data file: qcow2's snapshot functions answer -ENOTSUP."""
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "data_file=img.data", "img.qcow2", "1M", cwd=tmp_path)
    exp, act = tl.run_both_on_copies(instar, ["snapshot", *argv, "img.qcow2"],
                                     [tmp_path / "img.qcow2", tmp_path / "img.data"], tmp_path / "run")
    tl.assert_same(exp, act, f"data file {argv}")


@pytest.mark.parametrize("entry", [b"\xbf\xff\xff\xff\xff\xff\x00\x00", b"\x80\x00\x00\xff\xff\xff\x00\x00"],
                         ids=["l2-huge-offset", "l2-far-offset"])
def test_create_bad_l2(instar, tmp_path, entry):
    """iotest 080's invalid L2 entries: -EFBIG, and -EAGAIN for a refcount block qemu had to place."""
    src = make_image(tmp_path / "src.qcow2", size="64M", writes=("write 0 512",))
    data = bytearray(src.read_bytes())
    l1 = struct.unpack(">Q", data[40:48])[0]
    l2 = struct.unpack(">Q", data[l1:l1 + 8])[0] & 0x00fffffffffffe00
    data[l2:l2 + 8] = entry
    src.write_bytes(bytes(data))
    exp, _ = snap_both(instar, src, tmp_path, "-c", "test", "IMG")
    assert exp.returncode == 1


# --- -a of snapshots of other sizes: the truncation to the snapshot's size first ---


@pytest.mark.parametrize("sizes,opts,which,rc", [
    (("6M", "2M"), "", "s0", 0),
    (("6M", "2M"), "", "s1", 0),
    # 3 MiB + 512 after the snapshot: qemu's truncation back to 4 MiB fails with EINVAL
    (("3146240", "5M"), "refcount_bits=2", "s0", 1),
    (("1M", "9M"), "cluster_size=16384,extended_l2=on", "s0", 0),
    (("40M", "1M"), "cluster_size=512", "s0", 0),         # the L1 table grows past one cluster
], ids=["two-grow", "two-shrink", "unaligned", "extl2-shrink", "c512-l1-grows"])
def test_apply_resized_chain(instar, tmp_path, sizes, opts, which, rc):
    """Snapshots taken at several sizes, the image resized again after each."""
    src = make_image(tmp_path / "src.qcow2", opts=opts)
    for i, size in enumerate(sizes):
        tl.qemu_img("snapshot", "-c", f"s{i}", str(src))
        tl.qemu_img("resize", "-q", "--shrink", str(src), size)
        tl.qemu_io("-f", "qcow2", "-c", f"write -P {0x60 + i} 512k 256k", str(src))
    exp, _ = snap_both(instar, src, tmp_path, "-a", which, "IMG")
    assert exp.returncode == rc, exp.describe()


# --- -a of a snapshot whose L1 table is longer than the active one ---


@pytest.mark.parametrize("opts", ["", "cluster_size=4096,refcount_bits=4"])
@pytest.mark.parametrize("resized", [False, True], ids=["same-size", "resized"])
def test_apply_longer_l1(instar, tmp_path, opts, resized):
    """qemu grows the active L1 table to the snapshot's (qcow2_grow_l1_table,
    exact).  A shrink keeps the header's l1_size, so the snapshot table is
    taken at a shrunk size and the active one cut back to what the size
    needs (a table as another tool may write it)."""
    src = tmp_path / "src.qcow2"
    o = ["-o", opts] if opts else []
    tl.qemu_img("create", "-q", "-f", "qcow2", *o, str(src), "4G")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 7 0 64k", "-c", "write -P 8 3G 64k", str(src))
    tl.qemu_img("resize", "-q", "--shrink", str(src), "64M")
    tl.qemu_img("snapshot", "-c", "s1", str(src))
    tl.qemu_io("-f", "qcow2", "-c", "write -P 9 0 64k", str(src))
    if resized:
        tl.qemu_img("resize", "-q", "--shrink", str(src), "32M")
    cb = 12 if opts else 16
    with open(src, "r+b") as f:
        f.seek(36)
        old = struct.unpack(">I", f.read(4))[0]
        need = -(-(32 << 20 if resized else 64 << 20) // (1 << (2 * cb - 3)))
        assert old > need
        f.seek(36)
        f.write(struct.pack(">I", need))
    exp, _ = snap_both(instar, src, tmp_path, "-a", "s1", "IMG")
    assert exp.returncode == 0, exp.describe()


# --- -a of a larger snapshot of an image with a backing file: the zero-fill ---


@pytest.mark.parametrize("base_size,small", [("64M", "16M"), ("20M", "16M"), ("8M", "16M"),
                                             ("64M", "16252928")],
                         ids=["longer", "longer-partly", "shorter", "longer-to-15872k"])
def test_apply_larger_over_backing(instar, tmp_path, base_size, small):
    """The truncation to the snapshot's size zero-fills the grown range
    over a backing file longer than the image (BDRV_REQ_ZERO_WRITE)."""
    base = tmp_path / "base.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", str(base), base_size)
    tl.qemu_io("-f", "qcow2", "-c", f"write -P 1 0 {base_size}", str(base))
    src = tmp_path / "ov.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(src), "32M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 3 0 64k", "-c", "write -P 4 20M 1M", str(src))
    tl.qemu_img("snapshot", "-c", "s1", str(src))
    tl.qemu_img("resize", "-q", "--shrink", str(src), small)
    exp, _ = snap_both(instar, src, tmp_path, "-a", "s1", "IMG", name="ov.qcow2", extra_files=[base])
    assert exp.returncode == 0, exp.describe()


@pytest.mark.parametrize("small", ["16M", "16252928"], ids=["aligned", "partial-head"])
def test_apply_larger_empty_backing_name(instar, tmp_path, small):
    """A backing file offset with an empty name: qemu opens no backing file,
    so the truncation to the larger snapshot zero-fills nothing."""
    base = tmp_path / "base.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", str(base), "64M")
    src = tmp_path / "ov.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(src), "32M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 3 0 64k", "-c", "write -P 4 15M 2M", str(src))
    tl.qemu_img("snapshot", "-c", "s1", str(src))
    tl.qemu_img("resize", "-q", "--shrink", str(src), small)
    with open(src, "r+b") as f:  # backing_file_size 0, the offset kept
        f.seek(16)
        f.write(bytes(4))
    exp, _ = snap_both(instar, src, tmp_path, "-a", "s1", "IMG", name="ov.qcow2")
    assert exp.returncode == 0, exp.describe()


# --- images with persistent bitmaps ---
#
# qemu-img's read-write open loads the bitmaps and marks them in use (and
# then repairs a dirty image), its close stores them again, whatever the
# action did; -a fails with "Device has active dirty bitmaps" before
# anything else, its bitmaps stored again all the same.


def make_bitmap_image(path: Path, opts: str = "", dirty: bool = False) -> Path:
    """Two snapshots, an enabled and a disabled bitmap; dirty: then written by
    qemu-io and left by its abort (a lazy-refcounts image left by a crash,
    its bitmaps in use)."""
    make_image(path, opts=",".join(o for o in (opts, "lazy_refcounts=on" if dirty else "") if o),
               snaps=("a", "b"), after=("write -P 8 0 128k",))
    tl.qemu_img("bitmap", "--add", str(path), "on")
    tl.qemu_img("bitmap", "--add", "-g", "4k", "--disable", str(path), "off")
    if dirty:
        r = tl.qemu_io("-f", "qcow2", "-c", "write -P 6 2M 64k", "-c", "abort", str(path), check=False)
        assert r.returncode != 0 and path.read_bytes()[79] & 1, "the image is not dirty"
    else:
        tl.qemu_io("-f", "qcow2", "-c", "write -P 6 2M 64k", str(path))
    return path


@pytest.mark.parametrize("argv", [["-c", "new"], ["-d", "a"], ["-d", "missing"], ["-a", "a"],
                                  ["-a", "missing"], ["-l"]],
                         ids=["create", "delete", "delete-missing", "apply", "apply-missing", "list"])
@pytest.mark.parametrize("kind", ["plain", "rb4-cs4k", "v3-extl2", "dirty"])
def test_bitmaps(instar, tmp_path, argv, kind):
    opts = {"plain": "", "rb4-cs4k": "refcount_bits=4,cluster_size=4096",
            "v3-extl2": "extended_l2=on", "dirty": ""}[kind]
    src = make_bitmap_image(tmp_path / "src.qcow2", opts=opts, dirty=kind == "dirty")
    # dirty: the repair's header write (qemu: the whole cluster; instar: the
    # changed field, docs/differences.md "check -r") on a layout qemu wrote.
    exp, _ = snap_both(instar, src, tmp_path, *argv, "IMG", sparse=kind != "dirty")
    fails = argv[0] == "-a" or argv == ["-d", "missing"]
    assert (exp.returncode != 0) == fails, exp.describe()


@pytest.mark.parametrize("argv", [["-c", "new"], ["-d", "a"], ["-a", "a"], ["-l"]],
                         ids=["create", "delete", "apply", "list"])
@pytest.mark.parametrize("dirty", [False, True], ids=["clean", "dirty"])
def test_bitmaps_data_file(instar, tmp_path, argv, dirty):
    """Bitmaps and an external data file: the open loads the bitmaps (the
    node has the data file), then -c answers -ENOTSUP, -d finds no snapshot
    and -a refuses the bitmaps; the close stores them again all the same."""
    d = tmp_path / "src"
    d.mkdir()
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o",
                "data_file=img.raw" + (",lazy_refcounts=on" if dirty else ""), "img.qcow2", "4M", cwd=d)
    tl.qemu_img("bitmap", "--add", "img.qcow2", "on", cwd=d)
    tl.qemu_img("bitmap", "--add", "-g", "4k", "--disable", "img.qcow2", "off", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 6 1M 64k", "img.qcow2", cwd=d)
    if dirty:
        b = bytearray((d / "img.qcow2").read_bytes())
        b[79] |= 1
        (d / "img.qcow2").write_bytes(bytes(b))
    args = ["snapshot", *argv, "img.qcow2"]
    exp, act = tl.run_both_on_copies(instar, args, [d / "img.qcow2", d / "img.raw"], tmp_path / "run")
    tl.assert_same(exp, act, " ".join(args))
    assert (exp.returncode != 0) == (argv != ["-l"]), exp.describe()
    for n in ("img.qcow2", "img.raw"):
        o, i = tmp_path / "run" / "oracle" / n, tmp_path / "run" / "instar" / n
        assert o.read_bytes() == i.read_bytes(), f"{n} differs"


@pytest.mark.parametrize("head", ["backing", "compressed", "backing-partly-written"])
@pytest.mark.parametrize("cs", [4096, 65536])
def test_apply_larger_partial_head_over_longer_backing(instar, tmp_path, head, cs):
    """-a of a larger snapshot from a size inside a cluster over a longer
    backing file: the truncation's zero-fill copies the head cluster into
    a new one, its old data read through the backing chain (or
    decompressed) beforehand, as resize does: the same file."""
    src = tmp_path / "src"
    src.mkdir()
    size = 16776704 if cs == 65536 else 16772608
    last = size // cs * cs
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "64M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 64M", "base.qcow2", cwd=src)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", f"cluster_size={cs}", "-b", "base.qcow2", "-F", "qcow2",
                "top.qcow2", "24M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 2 0 64k", "top.qcow2", cwd=src)
    tl.qemu_img("snapshot", "-c", "big", "top.qcow2", cwd=src)
    tl.qemu_img("resize", "-q", "--shrink", "top.qcow2", str(size), cwd=src)
    writes = {"backing": [], "compressed": [f"write -c -P 3 {last} {size - last}"],
              "backing-partly-written": [f"write -P 3 {last} 512"]}[head]
    for w in writes:
        tl.qemu_io("-f", "qcow2", "-c", w, "top.qcow2", cwd=src)
    exp, act = tl.run_both_on_copies(instar, ["snapshot", "-a", "big", "top.qcow2"],
                                     [src / "top.qcow2", src / "base.qcow2"], tmp_path / "run")
    tl.assert_same(exp, act, "snapshot -a big")
    assert exp.returncode == 0, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "top.qcow2", tmp_path / "run" / "instar" / "top.qcow2"
    assert tl.same_content(o, i), "the files differ"


# --- Encrypted images: every open (-l's too) needs the key; the actions are metadata only ---

ENC_SECRET = ["--object", "secret,id=s0,data=abc"]
ENC_OPTS = "driver=qcow2,file.filename=IMG,encrypt.key-secret=s0"


@pytest.fixture(scope="module")
def encrypted_images(tmp_path_factory):
    """qcow2 LUKS (iter-time 10) and old AES images with a snapshot 'old' of 2M, resized to 4M
    and written after it, and a raw LUKS volume."""
    d = tmp_path_factory.mktemp("enc")
    made = {}
    for fmt in ("luks", "aes"):
        p = d / f"{fmt}.qcow2"
        o = f"encrypt.format={fmt},encrypt.key-secret=s0" + (",encrypt.iter-time=10" if fmt == "luks" else "")
        tl.qemu_img_retried("create", "-q", *ENC_SECRET, "-f", "qcow2", "-o", o, str(p), "2M")
        opts = f"driver=qcow2,file.filename={p},encrypt.key-secret=s0"
        tl.qemu_io(*ENC_SECRET, "--image-opts", opts, "-c", "write -P 1 0 64k", "-c", "write -P 2 1M 4k")
        tl.qemu_img("snapshot", *ENC_SECRET, "-c", "old", "--image-opts", opts)
        tl.qemu_img("resize", "-q", *ENC_SECRET, "--image-opts", opts, "4M")
        tl.qemu_io(*ENC_SECRET, "--image-opts", opts, "-c", "write -P 3 0 128k", "-c", "write -P 4 3M 64k")
        made[fmt] = p
    p = d / "vol.luks"
    tl.qemu_img_retried("create", "-q", *ENC_SECRET, "-f", "luks", "-o", "key-secret=s0,iter-time=10", str(p),
                        "1M")
    made["raw"] = p
    return made


@pytest.mark.parametrize("argv", [
    ["-l", "IMG"], ["-U", "-l", "IMG"], ["-c", "new", "IMG"], ["-a", "old", "IMG"],
    [*ENC_SECRET, "-l", "--image-opts", ENC_OPTS],
    [*ENC_SECRET, "-l", "-U", "json:{\"driver\": \"qcow2\", \"file.filename\": \"IMG\", \"encrypt.key-secret\": \"s0\"}"],
    [*ENC_SECRET, "-c", "new", "--image-opts", ENC_OPTS],
    [*ENC_SECRET, "-d", "old", "--image-opts", ENC_OPTS],
    [*ENC_SECRET, "-a", "old", "--image-opts", ENC_OPTS],
    [*ENC_SECRET, "-a", "none", "--image-opts", ENC_OPTS],
    [*ENC_SECRET, "-d", "none", "--image-opts", ENC_OPTS],
    ["--object", "secret,id=s0,data=bad", "-c", "new", "--image-opts", ENC_OPTS],
    ["-c", "new", "--image-opts", ENC_OPTS],
], ids=["l-no-key", "U-l-no-key", "c-no-key", "a-no-key", "l", "U-l-json", "c", "d", "a-resized",
        "err-a-missing", "err-d-missing", "err-wrong-key", "err-no-secret"])
@pytest.mark.parametrize("fmt", ["luks", "aes"])
def test_encrypted(instar, tmp_path, encrypted_images, fmt, argv):
    """qcow2's open unlocks the image (qemu-img asks for the key even to list); -a of the
    2M snapshot truncates the 4M image to it. The results are the oracle's bytes (dates masked)."""
    if fmt == "aes" and "bad" in argv[1]:
        pytest.skip("the old AES method has no key check: any passphrase opens it")
    exp, _ = snap_both(instar, encrypted_images[fmt], tmp_path, *argv)
    key = "encrypt.key-secret" in " ".join(argv) and "data=abc" in " ".join(argv)
    assert (exp.returncode == 0) == (key and "none" not in argv), exp.describe()


@pytest.mark.parametrize("argv", [["-l"], ["-c", "x"], ["-d", "x"], ["-a", "x"]])
def test_encrypted_luks_volume(instar, tmp_path, encrypted_images, argv):
    """A raw LUKS volume: its open needs key-secret too, then it has no snapshots."""
    snap_both(instar, encrypted_images["raw"], tmp_path, *argv, "IMG", name="img.luks")
    snap_both(instar, encrypted_images["raw"], tmp_path / "k", *ENC_SECRET, *argv, "--image-opts",
              "driver=luks,file.filename=IMG,key-secret=s0", name="img.luks")


@pytest.fixture(scope="module")
def encrypted_bitmaps(tmp_path_factory, encrypted_images):
    """The LUKS and AES images with a persistent bitmap b0 (bits set by a write after it), and
    the LUKS one dirty (lazy refcounts, left by qemu-io's abort) with a bitmap in use."""
    d = tmp_path_factory.mktemp("encbm")
    made = {}
    for fmt in ("luks", "aes"):
        p = d / f"{fmt}.qcow2"
        tl.copy_file(encrypted_images[fmt], p)
        opts = f"driver=qcow2,file.filename={p},encrypt.key-secret=s0"
        tl.qemu_img("bitmap", *ENC_SECRET, "--add", "--image-opts", opts, "b0")
        tl.qemu_io(*ENC_SECRET, "--image-opts", opts, "-c", "write -P 6 2M 64k")
        made[fmt] = p
    p = d / "dirty.qcow2"
    tl.copy_file(made["luks"], p)
    opts = f"driver=qcow2,file.filename={p},encrypt.key-secret=s0"
    tl.qemu_img("amend", *ENC_SECRET, "-o", "lazy_refcounts=on", "--image-opts", opts)
    r = tl.qemu_io(*ENC_SECRET, "--image-opts", opts, "-c", "write -P 7 512k 64k", "-c", "write -P 8 2560k 64k",
                   "-c", "abort", check=False)
    assert r.returncode != 0 and p.read_bytes()[79] & 1, "the image is not dirty"
    made["dirty"] = p
    return made


_ENC_BITMAPS = [
    ("c", [*ENC_SECRET, "-c", "new", "--image-opts", ENC_OPTS]),
    ("d", [*ENC_SECRET, "-d", "old", "--image-opts", ENC_OPTS]),
    ("err-a-bitmaps", [*ENC_SECRET, "-a", "old", "--image-opts", ENC_OPTS]),
    ("l", [*ENC_SECRET, "-l", "--image-opts", ENC_OPTS]),
    ("err-no-key", ["-c", "new", "IMG"]),
]


# Every action on the LUKS and AES images; on the dirty one all but -l and -a, which tell
# nothing the clean ones do not.
@pytest.mark.parametrize("fmt,argv", [
    pytest.param(f, a, id=f"{f}-{c}") for f in ("luks", "aes", "dirty") for c, a in _ENC_BITMAPS
    if f != "dirty" or c not in ("l", "err-a-bitmaps")])
def test_encrypted_bitmaps(instar, tmp_path, encrypted_bitmaps, fmt, argv):
    """An encrypted image with persistent bitmaps: the open loads them and marks them in use (a
    dirty image repaired after that), the action is metadata only, the close stores them; -a
    is refused for the bitmaps, before the snapshot is looked at. The oracle's bytes (dates
    masked)."""
    action = next(a for a in argv if a in ("-c", "-d", "-a", "-l"))
    exp, _ = snap_both(instar, encrypted_bitmaps[fmt], tmp_path, *argv)
    assert (exp.returncode == 0) == (action != "-a" and "data=abc" in argv[1]), exp.describe()


def test_encrypted_apply_larger_over_longer_backing(instar, tmp_path):
    """-a of a larger snapshot of a LUKS image from a size inside a partly written cluster over a
    longer backing file: the truncation's zero-fill copies and zeroes that cluster through the
    image's cipher (its key unlocks it), as resize does: the oracle's file byte for byte."""
    src = tmp_path / "src"
    src.mkdir()
    opts = "driver=qcow2,file.filename=top.qcow2,encrypt.key-secret=s0"
    tl.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "24M", cwd=src)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 24M", "base.qcow2", cwd=src)
    tl.qemu_img_retried("create", "-q", *ENC_SECRET, "-f", "qcow2", "-o",
                        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", "-b", "base.qcow2",
                        "-F", "qcow2", "top.qcow2", "24M", cwd=src)
    tl.qemu_img("snapshot", *ENC_SECRET, "-c", "big", "--image-opts", opts, cwd=src)
    tl.qemu_img("resize", "-q", *ENC_SECRET, "--shrink", "--image-opts", opts, "16776704", cwd=src)
    tl.qemu_io(*ENC_SECRET, "--image-opts", opts, "-c", "write -P 3 16711680 512", cwd=src)
    exp, act = tl.run_both_on_copies(instar, ["snapshot", *ENC_SECRET, "-a", "big", "--image-opts", opts],
                                     [src / "top.qcow2", src / "base.qcow2"], tmp_path / "run")
    tl.assert_same(exp, act, "snapshot -a big")
    assert exp.returncode == 0, exp.describe()
    o, i = tmp_path / "run" / "oracle" / "top.qcow2", tmp_path / "run" / "instar" / "top.qcow2"
    assert tl.same_content(o, i), "the files differ"
