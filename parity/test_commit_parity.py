"""`qemu-img commit` parity (qemu-img 7.2 vs instar).

Every case commits a chain built here with qemu-img and qemu-io into
directories of its own (tests/output_compare.py): qemu-img twice, instar
once, on copies; exit code, stdout, stderr and every image of the chain
(bytes and host data/hole layout where qemu-img writes them the same way
twice, else `check`, `info`, the guest view of `map` and `compare`) must
match.  qemu-img's commit job runs up to 16 requests at once, so where a
qcow2 base allocates clusters, their order (host offsets) varies from run
to run; the harness then compares semantically.

`-p`: qemu-img prints the job's progress each time its event loop wakes
up, so how often it repeats a value and which values between 0 and 100 it
passes through depend on timing.  normalise_progress() keeps what does
not: the progress lines 0.00 and 100.00, each run of repeats once.

A case id starting with `err-` must make qemu-img fail, every other must
make it succeed (a guard that the case tests what its name says).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import pytest

import instar_testlib as tl
import output_compare as oc


def _qimg(cwd, *args):
    tl.qemu_img(*args, cwd=cwd)


def _qio(cwd, fmt, name, *cmds):
    argv = [tl.QEMU_IO, "-f", fmt]
    for c in cmds:
        argv += ["-c", c]
    subprocess.run(argv + [name], cwd=cwd, check=True, stdout=subprocess.DEVNULL, env=tl.tool_env())


def _chain(d, base_fmt="qcow2", base_size="4M", top_size=None, base_opts="", top_opts="", base_writes=(),
           top_writes=(), mid=None):
    """base (+ mid) + top.qcow2 in d; writes are qemu-io commands."""
    base = f"base.{'raw' if base_fmt == 'raw' else 'qcow2'}"
    _qimg(d, "create", "-q", "-f", base_fmt, *(["-o", base_opts] if base_opts else []), base, base_size)
    if base_writes:
        _qio(d, base_fmt, base, *base_writes)
    below, below_fmt = base, base_fmt
    if mid is not None:
        _qimg(d, "create", "-q", "-f", "qcow2", "-b", base, "-F", base_fmt, "mid.qcow2")
        _qio(d, "qcow2", "mid.qcow2", *mid)
        below, below_fmt = "mid.qcow2", "qcow2"
    o = ["-o", top_opts] if top_opts else []
    _qimg(d, "create", "-q", "-f", "qcow2", *o, "-b", below, "-F", below_fmt, "top.qcow2",
          *([top_size] if top_size else []))
    if top_writes:
        _qio(d, "qcow2", "top.qcow2", *top_writes)


def _clobber_tail(p: Path):
    with open(p, "r+b") as f:
        f.seek(-512, 2)
        f.write(b"\xff" * 512)


def _qio_abort(cwd, name, *cmds):
    """qemu-io's writes then its abort: a lazy-refcounts image left as a crash leaves it (dirty)."""
    argv = [tl.QEMU_IO, "-f", "qcow2"]
    for c in (*cmds, "abort"):
        argv += ["-c", c]
    r = subprocess.run(argv + [name], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=tl.tool_env())
    assert r.returncode != 0
    assert Path(cwd, name).read_bytes()[79] & 1, "the image is not dirty"


def _set_dirty(p: Path):
    """The dirty bit alone (incompatible bit 0), refcounts left right."""
    with open(p, "r+b") as f:
        f.seek(79)
        b = f.read(1)[0]
        f.seek(79)
        f.write(bytes([b | 1]))


def _dirty_top(d, bitmaps=(), patched=False, backing=True):
    """top.qcow2 (lazy refcounts) over base.qcow2, dirty: left by qemu-io's abort (its
    bitmaps, marked in use by qemu-io's open, stay in use), or written cleanly and the
    bit set afterwards (patched: its bitmaps consistent)."""
    _qimg(d, "create", "-q", "-f", "qcow2", "base.qcow2", "4M")
    _qio(d, "qcow2", "base.qcow2", "write -P 1 0 1M")
    if backing:
        _qimg(d, "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-b", "base.qcow2", "-F", "qcow2",
              "top.qcow2")
    else:
        _qimg(d, "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "top.qcow2", "4M")
    for i, b in enumerate(bitmaps):
        _qimg(d, "bitmap", "--add", *b, "top.qcow2", f"b{i}")
    if patched:
        _qio(d, "qcow2", "top.qcow2", "write -P 2 512k 1M", "write -z 3M 64k")
        _set_dirty(d / "top.qcow2")
    else:
        _qio_abort(d, "top.qcow2", "write -P 2 512k 1M", "write -z 3M 64k")


TOP = ("write -P 2 512k 1M", "write -z 3M 64k")
BASE = ("write -P 1 0 1M",)

SETUPS = {
    "q-over-q": lambda d: _chain(d, base_writes=BASE, top_writes=TOP),
    "q-over-raw": lambda d: _chain(d, base_fmt="raw", base_writes=BASE, top_writes=TOP),
    "chain3": lambda d: _chain(d, base_writes=BASE, top_writes=TOP, mid=("write -P 3 1M 1M", "write -z 0 64k")),
    "q-over-raw-chain3": lambda d: _chain(d, base_fmt="raw", base_writes=BASE, top_writes=TOP,
                                          mid=("write -P 3 1M 1M",)),
    "compressed": lambda d: _chain(d, base_writes=BASE, top_writes=("write -c -P 7 0 64k", "write -c -P 8 1M 128k",
                                                                    "write -P 9 2M 64k")),
    "extl2": lambda d: _chain(d, base_opts="extended_l2=on,cluster_size=128k", top_opts="extended_l2=on",
                              base_writes=BASE,
                              top_writes=("write -P 2 4k 8k", "write -z 3M 64k", "write -P 5 2M 100k")),
    "extl2-top-only": lambda d: _chain(d, top_opts="extended_l2=on", base_writes=BASE,
                                       top_writes=("write -P 2 4k 8k", "write -z 3M 4k")),
    "longer-top": lambda d: _chain(d, base_size="2M", top_size="6M", base_writes=BASE,
                                   top_writes=("write -P 2 512k 1M", "write -P 4 5M 64k")),
    "longer-top-raw": lambda d: _chain(d, base_fmt="raw", base_size="2M", top_size="6M", base_writes=BASE,
                                       top_writes=("write -P 2 512k 1M", "write -P 4 5M 64k")),
    "longer-top-odd": lambda d: _chain(d, base_size="1000000", top_size="3000000", base_writes=("write -P 1 0 64k",),
                                       top_writes=("write -P 4 2M 64k",)),
    "v2": lambda d: _chain(d, base_opts="compat=0.10", top_opts="compat=0.10", base_writes=BASE, top_writes=TOP),
    "v2-top": lambda d: _chain(d, top_opts="compat=0.10", base_writes=BASE, top_writes=("write -P 2 512k 1M",)),
    "top-cs4k-base-64k": lambda d: _chain(d, top_opts="cluster_size=4k", base_writes=BASE,
                                          top_writes=("write -P 2 4k 4k", "write -P 3 200k 12k", "write -z 1M 4k")),
    "top-64k-base-cs4k": lambda d: _chain(d, base_opts="cluster_size=4k", base_writes=BASE, top_writes=TOP),
    "base-cs2M": lambda d: _chain(d, base_opts="cluster_size=2M", base_size="8M", base_writes=BASE,
                                  top_writes=("write -P 2 512k 64k", "write -z 4M 64k", "write -z 6M 2M")),
    "base-cs512": lambda d: _chain(d, base_opts="cluster_size=512", base_writes=BASE, top_writes=TOP),
    "rb1": lambda d: _chain(d, top_opts="refcount_bits=1", base_writes=BASE, top_writes=TOP),
    "empty-top": lambda d: _chain(d, base_writes=BASE),
    "big": lambda d: _chain(d, base_size="64M", base_writes=("write -P 1 0 8M",),
                            top_writes=("write -P 2 1M 20M", "write -P 3 30M 3M", "write -z 40M 4M",
                                        "write -P 4 50M 64k")),
    "snapshot-top": lambda d: (_chain(d, base_writes=BASE, top_writes=TOP),
                               _qimg(d, "snapshot", "-c", "snap1", "top.qcow2"),
                               _qio(d, "qcow2", "top.qcow2", "write -P 9 2M 128k")),
    # A v3 top's zero cluster over a v2 base: the base's cluster is discarded
    # (v2 has no zero flag) and, freed, reused by the copy that follows.
    "v2-base": lambda d: _chain(d, base_opts="compat=0.10", base_writes=("write -P 1 0 1M", "write -P 1 3M 128k"),
                                top_writes=TOP),
    "v2-base-chain3": lambda d: _chain(d, base_opts="compat=0.10",
                                       base_writes=("write -P 1 0 1M", "write -P 1 3M 128k"),
                                       top_writes=TOP, mid=("write -P 5 3M 64k",)),
    # The compressed cluster's data (the file's tail) overwritten: reading it fails.
    "bad-compressed": lambda d: (_chain(d, top_writes=("write -c -P 7 0 64k",)),
                                 _clobber_tail(d / "top.qcow2")),
    "datafile-top": lambda d: _chain(d, top_opts="data_file=top.data", base_writes=BASE, top_writes=TOP),
    "datafile-base": lambda d: _chain(d, base_opts="data_file=base.data", base_writes=BASE, top_writes=TOP),
    "bitmap-top": lambda d: (_chain(d, base_writes=BASE, top_writes=TOP),
                             _qimg(d, "bitmap", "--add", "top.qcow2", "b0")),
    "bitmap-base": lambda d: (_chain(d, base_writes=BASE, top_writes=TOP),
                              _qimg(d, "bitmap", "--add", "base.qcow2", "b0")),
    "bitmap-both": lambda d: (_chain(d, base_writes=BASE, top_writes=TOP),
                              _qimg(d, "bitmap", "--add", "top.qcow2", "t0"),
                              _qimg(d, "bitmap", "--add", "-g", "4k", "top.qcow2", "t1"),
                              _qimg(d, "bitmap", "--add", "base.qcow2", "b0"),
                              _qimg(d, "bitmap", "--add", "-g", "16k", "base.qcow2", "b1"),
                              _qimg(d, "bitmap", "--add", "--disable", "base.qcow2", "off")),
    "bitmap-chain3": lambda d: (_chain(d, base_writes=BASE, top_writes=TOP, mid=("write -P 3 1M 1M",)),
                                _qimg(d, "bitmap", "--add", "mid.qcow2", "m0"),
                                _qimg(d, "bitmap", "--add", "base.qcow2", "b0")),
    "bitmap-longer-top": lambda d: (_chain(d, base_size="2M", top_size="6M", base_writes=BASE,
                                                 top_writes=("write -P 2 512k 1M", "write -P 4 5M 64k")),
                                          _qimg(d, "bitmap", "--add", "-g", "8k", "base.qcow2", "b0"),
                                          _qimg(d, "bitmap", "--add", "top.qcow2", "t0")),
    "dirty-top": lambda d: _dirty_top(d),
    "dirty-top-bitmaps": lambda d: _dirty_top(d, bitmaps=(("-g", "8k"), ())),
    "dirty-top-bitmaps-clean": lambda d: _dirty_top(d, bitmaps=(("-g", "8k"), ()), patched=True),
    "dirty-nobacking-bitmaps": lambda d: _dirty_top(d, bitmaps=((),), backing=False),
    "dirty-base": lambda d: (_qimg(d, "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "base.qcow2", "4M"),
                             _qio_abort(d, "base.qcow2", "write -P 1 0 1M"),
                             _qimg(d, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"),
                             _qio(d, "qcow2", "top.qcow2", *TOP)),
    "subdir": lambda d: (Path(d, "sub").mkdir(), _chain(Path(d, "sub"), base_writes=BASE, top_writes=TOP)),
}


@pytest.fixture(scope="session")
def setups(tmp_path_factory):
    root = tmp_path_factory.mktemp("commit")
    made = {}

    def get(name):
        if name not in made:
            d = root / name
            d.mkdir()
            SETUPS[name](d)
            made[name] = d
        return made[name]

    return get


def _files(d: Path):
    return [(p, str(p.relative_to(d))) for p in sorted(d.rglob("*")) if p.is_file()]


def _outputs(d: Path):
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(d))] = "raw" if p.suffix in (".raw", ".data") else "qcow2"
    return out


_PROGRESS = re.compile(rb"    \((\d+\.\d+)/100%\)\r")


def normalise_progress(b: bytes) -> bytes:
    out, last = [], None
    pos = 0
    for m in _PROGRESS.finditer(b):
        out.append(b[pos:m.start()])
        pos = m.end()
        if m.group(1) in (b"0.00", b"100.00") and m.group(0) != last:
            out.append(m.group(0))
            last = m.group(0)
    out.append(b[pos:])
    return b"".join(out)


CASES = []


def case(cid, setup, *args):
    CASES.append(pytest.param(setup, list(args), id=cid))


for _s in SETUPS:
    if _s not in ("subdir", "bad-compressed", "dirty-base", "dirty-nobacking-bitmaps"):
        case(_s, _s, "top.qcow2")
case("subdir", "subdir", "sub/top.qcow2")
for _s in ("q-over-q", "q-over-raw", "snapshot-top", "v2", "compressed", "datafile-top", "datafile-base"):
    case(f"{_s}-d", _s, "-d", "top.qcow2")
# Persistent bitmaps and the dirty bit: the top's marked in use at the
# read-write open and stored again at its close (-d too), a dirty top
# repaired first (check -r's lines), the base's recording the job's writes.
for _s in ("bitmap-top", "bitmap-base", "bitmap-both", "dirty-top", "dirty-top-bitmaps",
           "dirty-top-bitmaps-clean"):
    case(f"{_s}-d", _s, "-d", "top.qcow2")
case("bitmap-both-p", "bitmap-both", "-p", "top.qcow2")
case("bitmap-chain3-b-mid", "bitmap-chain3", "-b", "mid.qcow2", "top.qcow2")
case("bitmap-chain3-b-base", "bitmap-chain3", "-b", "base.qcow2", "top.qcow2")
# qemu-img fails after its read-write open: the bitmaps stored again, a dirty image repaired.
case("err-no-backing-bitmap", "bitmap-top", "base.qcow2")
case("err-no-backing-bitmap-both", "bitmap-both", "-p", "base.qcow2")
case("err-b-not-in-chain-bitmap", "bitmap-both", "-b", "nothere.qcow2", "top.qcow2")
case("err-no-backing-dirty-bitmaps", "dirty-nobacking-bitmaps", "top.qcow2")
case("err-b-not-in-chain-dirty", "dirty-top-bitmaps", "-b", "nothere.qcow2", "top.qcow2")
case("chain3-b-mid", "chain3", "-b", "mid.qcow2", "top.qcow2")
case("chain3-b-base", "chain3", "-b", "base.qcow2", "top.qcow2")
case("v2-base-chain3-b-base", "v2-base-chain3", "-b", "base.qcow2", "top.qcow2")
case("raw-chain3-b-base", "q-over-raw-chain3", "-b", "base.raw", "top.qcow2")
case("subdir-b-relative-to-overlay", "subdir", "-b", "base.qcow2", "sub/top.qcow2")
case("b-and-d", "chain3", "-d", "-b", "base.qcow2", "top.qcow2")
case("p", "q-over-q", "-p", "top.qcow2")
case("p-big", "big", "-p", "top.qcow2")
case("p-empty-top", "empty-top", "-p", "top.qcow2")
case("q", "q-over-q", "-q", "top.qcow2")
case("p-q", "q-over-q", "-p", "-q", "top.qcow2")
for _t in ("none", "writeback", "unsafe", "directsync", "writethrough"):
    case(f"t-{_t}", "q-over-q", "-t", _t, "top.qcow2")
case("r", "q-over-q", "-r", "100M", "top.qcow2")
case("f-qcow2", "q-over-q", "-f", "qcow2", "top.qcow2")
case("image-opts", "q-over-q", "--image-opts", "driver=qcow2,file.filename=top.qcow2")
case("object", "q-over-q", "--object", "secret,id=s0,data=x", "top.qcow2")
case("err-no-backing", "q-over-q", "base.qcow2")
case("err-no-backing-raw", "q-over-raw", "base.raw")
case("err-no-backing-p", "q-over-q", "-p", "base.qcow2")
case("err-no-backing-q", "q-over-q", "-q", "base.qcow2")
case("err-b-not-in-chain", "q-over-q", "-b", "nothere.qcow2", "top.qcow2")
case("err-b-self", "chain3", "-b", "top.qcow2", "top.qcow2")
case("err-b-not-in-chain-p", "q-over-q", "-p", "-b", "nothere.qcow2", "top.qcow2")
case("err-t-bogus", "q-over-q", "-t", "bogus", "top.qcow2")
case("err-r-bogus", "q-over-q", "-r", "abc", "top.qcow2")
case("err-r-negative", "q-over-q", "-r", "-1", "top.qcow2")
case("err-missing", "q-over-q", "nothere.qcow2")
case("err-no-args", "q-over-q")
case("err-two-args", "q-over-q", "top.qcow2", "base.qcow2")
case("err-f-raw", "q-over-q", "-f", "raw", "top.qcow2")
case("err-image-opts-f", "q-over-q", "--image-opts", "-f", "qcow2", "driver=qcow2,file.filename=top.qcow2")
case("err-read-error", "bad-compressed", "top.qcow2")
case("err-unknown-option", "q-over-q", "-x", "top.qcow2")
case("help", "q-over-q", "-h")


# A qcow2 image the job writes into (the base) allocates clusters for the
# requests qemu-img has in flight at once (up to 16): their order in the
# file is a race in qemu-img (two runs often agree, a third may not), so
# such an image is compared semantically (check, info, guest map, compare),
# plus how many bytes the host allocated to it, which does not depend on
# the order.  (Its length does: where the last cluster allocated is only
# partly written, as with extended L2 entries, or where a zero write frees
# a cluster that a later allocation reuses.)  The top and a raw base, byte for byte.


# A base with persistent bitmaps that the job grows: instar grows it in a
# run of its own (resize's code: open, truncate, close), which stores the
# bitmaps once more than qemu-img's one reopen does, so the clusters the
# extra store frees stay allocated (docs/differences.md, commit); the
# content, bitmaps and check are compared as for every racy base.
ALLOC_DIFFERS = {"bitmap-longer-top"}


def _allocated(p: Path) -> int:
    return sum(e - s for s, e in oc.host_extents(p))


@pytest.mark.parametrize("setup,args", CASES)
def test_commit(instar, setups, tmp_path, request, setup, args):
    d = setups(setup)
    files = _files(d)
    outputs = _outputs(d)
    # (A base with an external data file keeps guest offsets: nothing to race.)
    racy = {n: f for n, f in outputs.items()
            if f == "qcow2" and n.endswith(("base.qcow2", "mid.qcow2")) and not (d / "base.data").exists()}
    w = oc.run_writing(instar, ["commit", *args], tmp_path, files,
                       {n: f for n, f in outputs.items() if n not in racy}, normalise=normalise_progress)
    for n, f in racy.items():
        oc.compare_written(w.dirs, n, f, "semantic", f"qemu-img commit {' '.join(args)}")
        a, b = w.dirs["oracle"] / n, w.dirs["instar"] / n
        assert setup in ALLOC_DIFFERS or _allocated(a) == _allocated(b), (
            f"{n}: host-allocated bytes: qemu-img {_allocated(a)}, instar {_allocated(b)}")
    err_case = request.node.callspec.id.startswith("err-")
    assert (w.oracle.returncode != 0) == err_case, "case id does not match qemu-img's outcome: " + w.oracle.describe()


REFUSED = [
    pytest.param("dirty-base", ["top.qcow2"], "base.qcow2", id="dirty-base"),
    pytest.param("dirty-base", ["-d", "top.qcow2"], "base.qcow2", id="dirty-base-d"),
]


@pytest.mark.parametrize("setup,args,mention", REFUSED)
def test_commit_refused(instar, setups, tmp_path, setup, args, mention):
    """Deliberate refusal (docs/differences.md): a base with the dirty bit
    set, which qemu-img does not repair (it opens the base read-only and
    reopens it read-write, trusting its stale refcounts, then clears the
    bit): instar says why in one `qemu-img: ` line, exit 1, and writes
    nothing."""
    d = setups(setup)
    files = _files(d)
    w = oc.run_refused(instar, ["commit", *args], tmp_path, files)
    oc.assert_refused(w, "the dirty bit set", files, [rel for _, rel in files])
    assert mention.encode() in w.instar.stderr


def test_commit_read_only_format_base_fails(instar, tmp_path):
    """A bochs base (cloop and dmg alike): read-only formats have no
    bdrv_reopen_prepare either, so the reopen fails as parallels' does."""
    src = tmp_path / "src"
    src.mkdir()
    h = bytearray(512)  # struct bochs_header: a growing redolog of 1 MiB, 4 KiB extents, none allocated
    h[0:22], h[32:39], h[48:55] = b"Bochs Virtual HD Image", b"Redolog", b"Growing"
    struct.pack_into("<IIIIIQ", h, 64, 0x20000, 512, 256, 512, 4096, 1 << 20)
    (src / "base.bochs").write_bytes(bytes(h) + b"\xff" * 1024)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.bochs", "-F", "bochs", "top.qcow2", "1M", cwd=src)
    tl.qemu_io("-c", "write -P 9 0 64k", "top.qcow2", cwd=src)
    files = sorted(src.iterdir())
    expected, actual = tl.run_both_on_copies(instar, ["commit", "top.qcow2"], files, tmp_path)
    mask = lambda r: tl.Result(r.argv, r.returncode, r.stdout, _NODE_RANDOM.sub(rb"\1NN'", r.stderr))
    tl.assert_same(mask(expected), mask(actual), "commit top.qcow2")
    assert expected.returncode == 1 and b"'bochs' used by node" in expected.stderr
    for f in files:
        assert (tmp_path / "instar" / f.name).read_bytes() == f.read_bytes(), f"{f.name} was written"


# ---- commit of a qcow2 image into a base of another format (iotest 020's idea) -------------
# vpc bases come out byte for byte qemu-img's; a vhdx base too but for its
# two headers (a new random session GUID and checksum per open).  qed and
# vdi bases usually do too, but they allocate blocks in the order the job's
# requests reach them, which under load is not always the same in qemu-img
# (a full-suite run saw vdi's block map differ): there the content, the
# check and the length are compared.  The same for vmdk (whose grains
# follow the requests' order too, and whose descriptor gets a random CID on
# the first write) and qcow: qcow releases its lock while a cluster's data
# is written, so requests in flight together interleave their clusters (a
# zero write, which reads nothing, takes its first cluster before a
# copy's); it has no check, so its guest map is compared instead.
VHDX_HEADERS = ((64 << 10, 4096), (128 << 10, 4096))
SEMANTIC = ("qed", "vdi", "vmdk", "qcow")


def _masked(path, fmt):
    b = bytearray(path.read_bytes())
    if fmt == "vhdx":
        for off, n in VHDX_HEADERS:
            b[off:off + n] = bytes(n)
    return bytes(b)


def _guest_map(path, fmt):
    r = tl.run_oracle(["map", "--output=json", "-f", fmt, str(path)])
    assert r.returncode == 0, r.describe()
    out = []
    for e in json.loads(r.stdout):
        e = {k: v for k, v in e.items() if k != "offset"}
        if out and all(out[-1][k] == e[k] for k in e if k not in ("start", "length")):
            out[-1]["length"] += e["length"]  # host offsets gone: neighbours merge
        else:
            out.append(e)
    return out


@pytest.mark.parametrize("fmt", ["qed", "vdi", "vpc", "vhdx", "vmdk", "qcow"])
@pytest.mark.parametrize("drop", [False, True], ids=["emptied", "d"])
def test_commit_into_other_format(instar, tmp_path, fmt, drop):
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", fmt, str(src / f"base.{fmt}"), "8M")
    tl.qemu_io("-f", fmt, "-c", "write -P 1 0 1M", "-c", "write -P 4 5M 100k", str(src / f"base.{fmt}"))
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", f"base.{fmt}", "-F", fmt, str(src / "top.qcow2"), "8M",
                cwd=src)
    tl.qemu_io("-c", "write -P 9 512k 1M", "-c", "write -z 5M 64k", "-c", "write -P 7 7M 4k",
               str(src / "top.qcow2"))
    argv = ["commit", *(["-d"] if drop else []), "top.qcow2"]
    expected, actual = tl.run_both_on_copies(instar, argv, [src / f"base.{fmt}", src / "top.qcow2"], tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert expected.returncode == 0
    a, b = tmp_path / "oracle", tmp_path / "instar"
    if fmt not in SEMANTIC:
        assert _masked(a / f"base.{fmt}", fmt) == _masked(b / f"base.{fmt}", fmt), f"base.{fmt} differs"
    assert (a / f"base.{fmt}").stat().st_size == (b / f"base.{fmt}").stat().st_size
    assert tl.same_content(a / "top.qcow2", b / "top.qcow2"), "top.qcow2 differs"
    if fmt == "qcow":
        assert _guest_map(a / "base.qcow", fmt) == _guest_map(b / "base.qcow", fmt)
    if fmt in ("qed", "vdi", "vmdk"):
        # (qed's fragmentation figure follows the allocation order)
        cb = tl.run_oracle(["check", "-f", fmt, str(b / f"base.{fmt}")])
        assert cb.returncode == 0, cb.describe()
    if fmt in ("vhdx",) + SEMANTIC:
        c = tl.run_oracle(["compare", "-f", fmt, "-F", fmt, str(a / f"base.{fmt}"), str(b / f"base.{fmt}")])
        assert c.returncode == 0, c.describe()


@pytest.mark.parametrize("fmt", ["qed", "vdi", "vpc", "vhdx", "vmdk", "qcow"])
def test_commit_into_shorter_other_format(instar, tmp_path, fmt):
    """mirror_run() grows a shorter base first: qed's truncate does, the
    others have none and the job fails before anything is written."""
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", fmt, str(src / f"base.{fmt}"), "4M")
    tl.qemu_io("-f", fmt, "-c", "write -P 1 0 1M", str(src / f"base.{fmt}"))
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", f"base.{fmt}", "-F", fmt, str(src / "top.qcow2"), "8M",
                cwd=src)
    tl.qemu_io("-c", "write -P 9 3M 2M", str(src / "top.qcow2"))
    expected, actual = tl.run_both_on_copies(instar, ["commit", "top.qcow2"],
                                             [src / f"base.{fmt}", src / "top.qcow2"], tmp_path)
    tl.assert_same(expected, actual, "commit top.qcow2")
    assert expected.returncode == (0 if fmt == "qed" else 1)
    a, b = tmp_path / "oracle", tmp_path / "instar"
    if fmt == "qed":  # the allocation order, as above
        c = tl.run_oracle(["compare", "-f", fmt, "-F", fmt, str(a / f"base.{fmt}"), str(b / f"base.{fmt}")])
        assert c.returncode == 0, c.describe()
        assert (a / f"base.{fmt}").stat().st_size == (b / f"base.{fmt}").stat().st_size
    else:
        assert _masked(a / f"base.{fmt}", fmt) == _masked(b / f"base.{fmt}", fmt), f"base.{fmt} differs"
    assert tl.same_content(a / "top.qcow2", b / "top.qcow2"), "top.qcow2 differs"


# vmdk bases of the other subformats: the descriptor's extent files are the base's children,
# reopened read-write with it.  Sparse extents take the grains in the order the requests reach
# them (as monolithicSparse: content, check, lengths compared); flat extents are written in
# place (byte for byte).  The descriptor's CID is random in both.  A streamOptimized base takes
# new grains compressed and refuses a grain already allocated ("Could not write to allocated
# cluster for streamOptimized"), the job then failing after the requests in flight with it.
_VMDK_CID = re.compile(rb"^CID=[0-9a-f]+$", re.M)


@pytest.mark.parametrize("sub,top_writes", [
    ("twoGbMaxExtentSparse", ("write -P 9 512k 1M", "write -z 5M 64k")),
    ("monolithicFlat", ("write -P 9 512k 1M", "write -z 5M 64k")),
    ("twoGbMaxExtentFlat", ("write -P 9 512k 1M",)),
    ("streamOptimized", ("write -P 9 2M 1M", "write -P 7 7M 4k")),
    ("streamOptimized", ("write -P 9 512k 1M", "write -P 7 4M 1M", "write -P 3 7M 64k")),
], ids=["twoGbMaxExtentSparse", "monolithicFlat", "twoGbMaxExtentFlat", "stream", "err-stream-allocated"])
def test_commit_into_vmdk_subformat(instar, tmp_path, request, sub, top_writes):
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "vmdk", "-o", f"subformat={sub}", "base.vmdk", "8M", cwd=src)
    tl.qemu_io("-f", "vmdk", "-c", "write -P 1 0 1M", "base.vmdk", cwd=src)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.vmdk", "-F", "vmdk", "top.qcow2", "8M", cwd=src)
    tl.qemu_io("-f", "qcow2", *[a for w in top_writes for a in ("-c", w)], "top.qcow2", cwd=src)
    files = sorted(src.iterdir())
    expected, actual = tl.run_both_on_copies(instar, ["commit", "top.qcow2"], files, tmp_path)
    tl.assert_same(expected, actual, "commit top.qcow2")
    assert (expected.returncode != 0) == request.node.callspec.id.startswith("err-"), expected.describe()
    a, b = tmp_path / "oracle", tmp_path / "instar"
    for f in files:
        x, y = (a / f.name).read_bytes(), (b / f.name).read_bytes()
        assert len(x) == len(y), f"{f.name}: {len(x)} bytes, instar {len(y)}"
        if f.name == "base.vmdk" and sub != "streamOptimized" and "Sparse" not in sub:
            x, y = _VMDK_CID.sub(b"CID=", x), _VMDK_CID.sub(b"CID=", y)
        if "Flat" in sub or f.name == "top.qcow2":
            assert x == y, f"{f.name} differs"
    c = tl.run_oracle(["compare", "-f", "vmdk", "-F", "vmdk", str(a / "base.vmdk"), str(b / "base.vmdk")])
    assert c.returncode == 0, c.describe()
    cb = tl.run_oracle(["check", "-f", "vmdk", str(b / "base.vmdk")])
    assert cb.returncode == 0, cb.describe()


# A parallels image at or below the base: commit_active_start() reopens the base read-write,
# and parallels has no bdrv_reopen_prepare, so qemu-img fails before the job starts.  The
# node is named "#block<count of nodes opened before it><2 random digits>": the count is
# compared, the random digits masked.
_NODE_RANDOM = re.compile(rb"(node '#block\d)\d\d'")


@pytest.mark.parametrize("case", ["base", "base-d", "base-b", "below-base", "data-file"])
def test_commit_parallels_base_fails(instar, tmp_path, case):
    src = tmp_path / "src"
    src.mkdir()
    tl.qemu_img("create", "-q", "-f", "parallels", str(src / "base.parallels"), "8M")
    tl.qemu_io("-f", "parallels", "-c", "write -P 1 0 1M", str(src / "base.parallels"))
    opts = ["-o", "data_file=top.data"] if case == "data-file" else []
    tl.qemu_img("create", "-q", "-f", "qcow2", *opts, "-b", "base.parallels", "-F", "parallels",
                str(src / "top.qcow2"), "8M", cwd=src)
    tl.qemu_io("-c", "write -P 9 512k 1M", "top.qcow2", cwd=src)
    top = "top.qcow2"
    if case == "below-base":
        tl.qemu_img("create", "-q", "-f", "qcow2", "-b", "top.qcow2", "-F", "qcow2", str(src / "top2.qcow2"), "8M",
                    cwd=src)
        tl.qemu_io("-c", "write -P 7 2M 64k", str(src / "top2.qcow2"))
        top = "top2.qcow2"
    extra = {"base-d": ["-d"], "base-b": ["-b", "base.parallels"]}.get(case, [])
    argv = ["commit", *extra, top]
    files = sorted(src.iterdir())
    expected, actual = tl.run_both_on_copies(instar, argv, files, tmp_path)
    mask = lambda r: tl.Result(r.argv, r.returncode, r.stdout, _NODE_RANDOM.sub(rb"\1NN'", r.stderr))
    tl.assert_same(mask(expected), mask(actual), " ".join(argv))
    assert expected.returncode == 1 and b"does not support reopening files" in expected.stderr
    for f in files:
        assert (tmp_path / "instar" / f.name).read_bytes() == f.read_bytes(), f"{f.name} was written"


# A qcow, vmdk or qed top (iotest 020 with -qcow / -vmdk / -qed): a qcow top is emptied as qcow_make_empty()
# does (its L1 table zeroed, the file cut after it), a vmdk or qed one is left as it is (they have no
# bdrv_make_empty: -ENOTSUP, which img_commit() ignores).  The base as into_other_format.
@pytest.mark.parametrize("top_fmt,base_fmt", [("qcow", "qcow"), ("qcow", "raw"), ("qcow", "qcow2"),
                                              ("qcow", "vmdk"), ("vmdk", "vmdk"), ("qed", "qed"),
                                              ("qed", "raw")])
@pytest.mark.parametrize("drop", [False, True], ids=["emptied", "d"])
def test_commit_other_top(instar, tmp_path, top_fmt, base_fmt, drop):
    src = tmp_path / "src"
    src.mkdir()
    base, top = f"base.{base_fmt}", f"top.{top_fmt}"
    tl.qemu_img("create", "-q", "-f", base_fmt, str(src / base), "8M")
    tl.qemu_io("-f", base_fmt, "-c", "write -P 1 0 1M", "-c", "write -P 4 5M 100k", str(src / base))
    tl.qemu_img("create", "-q", "-f", top_fmt, "-b", base, "-F", base_fmt, str(src / top), "8M", cwd=src)
    tl.qemu_io("-f", top_fmt, "-c", "write -P 9 512k 1M", "-c", "write -P 7 7M 4k", "-c", "write -P 3 5M 4k",
               top, cwd=src)
    argv = ["commit", *(["-d"] if drop else []), top]
    expected, actual = tl.run_both_on_copies(instar, argv, [src / base, src / top], tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert expected.returncode == 0
    a, b = tmp_path / "oracle", tmp_path / "instar"
    assert (a / top).read_bytes() == (b / top).read_bytes(), f"{top} differs"
    assert (a / base).stat().st_size == (b / base).stat().st_size
    c = tl.run_oracle(["compare", "-f", base_fmt, "-F", base_fmt, str(a / base), str(b / base)])
    assert c.returncode == 0, c.describe()
    if base_fmt == "raw":
        assert (a / base).read_bytes() == (b / base).read_bytes()


# ---- encrypted chains (iotest 198) -------------------------------------------------------
# A LUKS-encrypted qcow2 base and/or top, each with its own secret: the
# top's key is its encrypt.key-secret, the base's the --image-opts
# backing.encrypt.key-secret (with backing.driver and backing.file.filename
# naming the file the top names, as 198 spells it).  The job's one copy
# request makes the base's allocation deterministic: both files must match
# qemu-img's byte for byte (the top is emptied cluster by cluster: qemu
# keeps its LUKS header, so no make_completely_empty()).
SECRETS = ["--object", "secret,id=sec0,data=astrochicken", "--object", "secret,id=sec1,data=furby"]
LUKS0 = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"
LUKS1 = "encrypt.format=luks,encrypt.key-secret=sec1,encrypt.iter-time=10"
TOP_OPTS = "driver=qcow2,file.filename=top.qcow2"
BACKING_OPTS = "backing.driver=qcow2,backing.file.filename=base.qcow2,backing.encrypt.key-secret=sec0"


def _luks_chain(d, base_luks, top_luks):
    _qimg(d, "create", "-q", "-f", "qcow2", *SECRETS, *(["-o", LUKS0] if base_luks else []), "base.qcow2", "4M")
    _qimg(d, "create", "-q", "-f", "qcow2", *SECRETS, *(["-o", LUKS1] if top_luks else []),
          "-b", "base.qcow2", "-F", "qcow2", "top.qcow2")
    spec = ",".join([TOP_OPTS] + (["encrypt.key-secret=sec1"] if top_luks else [])
                    + ([BACKING_OPTS] if base_luks else []))
    argv = [tl.QEMU_IO, *SECRETS, "--image-opts", "-c", "write -P 9 64k 1M", spec]
    subprocess.run(argv, cwd=d, check=True, stdout=subprocess.DEVNULL, env=tl.tool_env())


@pytest.fixture(scope="module")
def luks_setups(tmp_path_factory):
    root = tmp_path_factory.mktemp("commit-luks")
    made = {}
    for name, base_luks, top_luks in (("both", True, True), ("base", True, False), ("top", False, True)):
        made[name] = root / name
        made[name].mkdir()
        _luks_chain(made[name], base_luks, top_luks)
    return made


LUKS_CASES = [
    pytest.param("both", f"{TOP_OPTS},encrypt.key-secret=sec1,{BACKING_OPTS}", id="both-backing-opts"),
    pytest.param("base", f"{TOP_OPTS},backing.encrypt.key-secret=sec0", id="base-backing-key"),
    pytest.param("top", f"{TOP_OPTS},encrypt.key-secret=sec1", id="top"),
    pytest.param("both", f"{TOP_OPTS},encrypt.key-secret=sec1", id="err-both-no-backing-key"),
    pytest.param("both", f"{TOP_OPTS},encrypt.key-secret=sec1,backing.encrypt.key-secret=sec9",
                 id="err-both-no-such-secret"),
    pytest.param("both", f"{TOP_OPTS},encrypt.key-secret=sec1,backing.encrypt.key-secret=sec1",
                 id="err-both-wrong-backing-key"),
    pytest.param("both", f"{TOP_OPTS},encrypt.key-secret=sec0,backing.encrypt.key-secret=sec0",
                 id="err-both-wrong-top-key"),
]


@pytest.mark.parametrize("setup,spec", LUKS_CASES)
def test_commit_encrypted(instar, luks_setups, tmp_path, request, setup, spec):
    d = luks_setups[setup]
    files = _files(d)
    w = oc.run_writing(instar, ["commit", *SECRETS, "--image-opts", spec], tmp_path, files,
                       {"base.qcow2": "qcow2", "top.qcow2": "qcow2"})
    err_case = request.node.callspec.id.startswith("err-")
    assert (w.oracle.returncode != 0) == err_case, "case id does not match qemu-img's outcome: " + w.oracle.describe()
