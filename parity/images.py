"""Deterministic image matrix for parity tests.

Every image is made with the oracle's own tools (qemu-img / qemu-io) plus, for
header bits qemu cannot set on request (dirty, corrupt), a small ``struct``
patch.  Nothing is committed; images are generated lazily, once per session,
into a session temp dir (``ImageSet.root``), which is also the cwd of every
parity case so that relative names ("sub/ov.qcow2", "base.qcow2") are spelled
the same way for both tools.

Names in ``GENERATORS`` are the image ids used by parity cases.  A generator
takes the ImageSet and returns the path of its image RELATIVE to the root; it
may call ``images.path(other)`` to build dependencies first.

Snapshot dates are taken from the clock by qemu-img, so two sessions produce
different bytes for snapshot images; within one session both tools read the
same file, so this never matters for parity.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from instar_testlib import qemu_img, qemu_io  # noqa: E402
from output_compare import sparse_copy as _sparse_copy  # noqa: E402

MiB = 1 << 20
SECRET = ["--object", "secret,id=sec0,data=abc"]

# qcow2 header offsets (docs/interop/qcow2.txt)
HDR_INCOMPAT = 72
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
BACKING_FMT_EXT = 0xE2792ACA


def patch_u64_or(path: Path, off: int, bits: int) -> None:
    """OR ``bits`` into the big-endian u64 at ``off`` of ``path``."""
    with open(path, "r+b") as f:
        f.seek(off)
        (v,) = struct.unpack(">Q", f.read(8))
        f.seek(off)
        f.write(struct.pack(">Q", v | bits))


def patch_backing_fmt_ext_away(path: Path) -> None:
    """Rename the backing-format header extension to an unknown magic.

    qemu-img 7.2 refuses to create an overlay without -F, but older images have
    no backing format; turning the extension into an unknown one (which qemu
    skips) yields such an image, so the backing format gets probed.
    """
    with open(path, "r+b") as f:
        hdr = f.read(4096)
        (version,) = struct.unpack_from(">I", hdr, 4)
        off = 72 if version == 2 else struct.unpack_from(">I", hdr, 100)[0]
        while off + 8 <= len(hdr):
            magic, length = struct.unpack_from(">II", hdr, off)
            if magic == 0:
                break
            if magic == BACKING_FMT_EXT:
                f.seek(off)
                f.write(struct.pack(">I", 0x12345678))
                return
            off += 8 + ((length + 7) & ~7)
    raise RuntimeError(f"no backing format extension in {path}")


class ImageSet:
    """Lazily generated, session-cached images under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._done: dict[str, str] = {}
        self._files: dict[str, tuple[str, ...]] = {}

    def path(self, name: str) -> str:
        """Relative path (to root) of image ``name``, generating it on first use.

        ``name`` is a key of GENERATORS or of DATA_IMAGES.  A generator may
        return a tuple (image, other files it needs...), see files().
        """
        if name not in self._done:
            gen = GENERATORS[name] if name in GENERATORS else DATA_IMAGES[name]
            made = gen(self)
            files = (made,) if isinstance(made, str) else tuple(made)
            self._done[name] = files[0]
            self._files[name] = files
        return self._done[name]

    def files(self, name: str) -> tuple[str, ...]:
        """Every file image ``name`` consists of: itself first, then its
        backing files and external data file (relative to root), so that a
        test can copy the whole image into a directory of its own."""
        self.path(name)
        return self._files[name]

    def abspath(self, name: str) -> str:
        return str(self.root / self.path(name))

    def resolve(self, args) -> tuple[list[str], list[tuple[Path, str]]]:
        """Replace every ``@name`` in ``args`` (also inside an argument, as in
        ``-o backing_file=@dp-chain-mid``) by the relative path of image
        ``name``; return (args, files), where files lists (source, relative
        name) of every file those images consist of (see files()), for a
        case that copies its inputs into a directory of its own."""
        files: dict[str, Path] = {}

        def sub(m):
            name = m.group(1)
            for f in self.files(name):
                files[f] = self.root / f
            return self.path(name)

        out = [re.sub(r"@([\w.-]+)", sub, a) for a in args]
        return out, [(src, rel) for rel, src in files.items()]

    # ---- helpers used by generators -------------------------------------
    def qimg(self, *args):
        return qemu_img(*args, cwd=self.root)

    def qio(self, *args):
        return qemu_io(*args, cwd=self.root)

    def qcow2(self, name, opts="", size="64M", writes=(), compressed=(), fmt="qcow2"):
        o = ["-o", opts] if opts else []
        self.qimg("create", "-q", "-f", fmt, *o, name, size)
        cmds = []
        for w in writes:
            cmds += ["-c", f"write {w}"]
        for w in compressed:
            cmds += ["-c", f"write -c {w}"]
        if cmds:
            self.qio("-f", fmt, *cmds, name)
        return name


DATA = ("-P 0xab 0 64k", "-P 0xcd 1M 128k", "-P 0x11 5M 4k")
GENERATORS: dict = {}


def gen(name):
    def deco(fn):
        GENERATORS[name] = fn
        return fn

    return deco


def simple(name, filename, **kw):
    GENERATORS[name] = lambda s: s.qcow2(filename, **kw)


# ---- plain qcow2 variants -------------------------------------------------
simple("v2", "v2.qcow2", opts="compat=0.10", writes=DATA)
simple("v3", "v3.qcow2", writes=DATA)
simple("v3-empty", "v3-empty.qcow2")
simple("v3-odd-size", "v3-odd.qcow2", size="1000001")
simple("v3-big", "v3-big.qcow2", size="1T", writes=("-P 1 512G 64k",))
for cs in ("512", "1k", "4k", "32k", "64k", "128k", "2M"):
    simple(f"cs{cs}", f"cs{cs}.qcow2", opts=f"cluster_size={cs}", writes=DATA)
simple("v2-cs4k", "v2-cs4k.qcow2", opts="compat=0.10,cluster_size=4k", writes=DATA)
for rb in (1, 2, 4, 8, 16, 32, 64):
    simple(f"rb{rb}", f"rb{rb}.qcow2", opts=f"refcount_bits={rb}", writes=DATA)
simple("lazy", "lazy.qcow2", opts="lazy_refcounts=on", writes=DATA)
for cs in ("16k", "64k", "2M"):
    simple(f"extl2-{cs}", f"extl2-{cs}.qcow2", opts=f"extended_l2=on,cluster_size={cs}", writes=DATA)
simple("zlib-io", "zlib-io.qcow2", compressed=("-P 0x42 0 64k", "-P 0x43 2M 64k"))
simple("zstd-io", "zstd-io.qcow2", opts="compression_type=zstd", compressed=("-P 0x42 0 64k", "-P 0x43 2M 64k"))
simple("v2-compressed", "v2-comp.qcow2", opts="compat=0.10", compressed=("-P 0x42 0 64k",))
simple("preallocated", "prealloc.qcow2", opts="preallocation=metadata", size="16M")


@gen("raw-data")
def _raw_data(s):
    p = s.root / "data.raw"
    with open(p, "wb") as f:
        for i in range(64):
            f.write(bytes([i]) * 4096)
            f.seek(60 * 1024, os.SEEK_CUR)
        f.truncate(8 * MiB)
    return "data.raw"


@gen("zlib-convert")
def _zlib_convert(s):
    s.qimg("convert", "-c", "-f", "raw", "-O", "qcow2", s.path("raw-data"), "zlib-conv.qcow2")
    return "zlib-conv.qcow2"


@gen("zstd-convert")
def _zstd_convert(s):
    s.qimg("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=zstd", s.path("raw-data"), "zstd-conv.qcow2")
    return "zstd-conv.qcow2"


# ---- snapshots and bitmaps -----------------------------------------------
@gen("snapshots")
def _snapshots(s):
    n = s.qcow2("snaps.qcow2", writes=DATA)
    for tag in ("first", "with space", "ünïcödé ☃", "a" * 40, "first"):
        s.qimg("snapshot", "-c", tag, n)
    s.qio("-c", "write -P 0x77 0 4k", n)
    return n


@gen("v2-snapshots")
def _v2_snapshots(s):
    n = s.qcow2("v2-snaps.qcow2", opts="compat=0.10", writes=DATA)
    s.qimg("snapshot", "-c", "s1", n)
    s.qimg("snapshot", "-c", "s 2", n)
    return n


@gen("bitmaps")
def _bitmaps(s):
    n = s.qcow2("bitmaps.qcow2", writes=DATA)
    s.qimg("bitmap", "--add", n, "b0")
    s.qimg("bitmap", "--add", "-g", "1M", n, "big-gran")
    s.qimg("bitmap", "--add", "-g", "512", n, "small")
    s.qimg("bitmap", "--add", n, "off")
    s.qimg("bitmap", "--disable", n, "off")
    s.qimg("bitmap", "--add", n, "born off")
    s.qimg("bitmap", "--disable", n, "born off")
    return n


@gen("snap-bitmaps")
def _snap_bitmaps(s):
    n = s.qcow2("snapbm.qcow2", writes=DATA, opts="cluster_size=4k")
    s.qimg("snapshot", "-c", "s1", n)
    s.qimg("bitmap", "--add", n, "bm1")
    s.qimg("snapshot", "-c", "s2", n)
    s.qimg("bitmap", "--add", "-g", "4k", n, "bm2")
    return n


# ---- backing files --------------------------------------------------------
@gen("base")
def _base(s):
    return s.qcow2("base.qcow2", writes=DATA)


@gen("overlay")
def _overlay(s):
    s.path("base")
    s.qimg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "overlay.qcow2")
    s.qio("-c", "write -P 0x55 64k 64k", "overlay.qcow2")
    return "overlay.qcow2"


@gen("chain3")
def _chain3(s):
    s.path("overlay")
    s.qimg("create", "-q", "-f", "qcow2", "-b", "overlay.qcow2", "-F", "qcow2", "chain3.qcow2", "128M")
    return "chain3.qcow2"


@gen("backing-abs")
def _backing_abs(s):
    s.qimg("create", "-q", "-f", "qcow2", "-b", s.abspath("base"), "-F", "qcow2", "backing-abs.qcow2")
    return "backing-abs.qcow2"


@gen("backing-raw")
def _backing_raw(s):
    s.qimg("create", "-q", "-f", "qcow2", "-b", s.path("raw-data"), "-F", "raw", "backing-raw.qcow2")
    return "backing-raw.qcow2"


@gen("backing-probed")
def _backing_probed(s):
    s.path("base")
    s.qimg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "backing-probed.qcow2")
    patch_backing_fmt_ext_away(s.root / "backing-probed.qcow2")
    return "backing-probed.qcow2"


@gen("subdir-overlay")
def _subdir_overlay(s):
    s.path("base")
    (s.root / "sub").mkdir(exist_ok=True)
    s.qimg("create", "-q", "-f", "qcow2", "-b", "../base.qcow2", "-F", "qcow2", "sub/ov.qcow2")
    return "sub/ov.qcow2"


@gen("subdir-chain")
def _subdir_chain(s):
    s.path("subdir-overlay")
    (s.root / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    s.qimg("create", "-q", "-f", "qcow2", "-b", "../ov.qcow2", "-F", "qcow2", "sub/deeper/top.qcow2")
    return "sub/deeper/top.qcow2"


@gen("backing-missing")
def _backing_missing(s):
    s.qimg("create", "-q", "-f", "qcow2", "-u", "-b", "missing-base.qcow2", "-F", "qcow2", "backing-missing.qcow2", "64M")
    return "backing-missing.qcow2"


@gen("backing-missing-mid")
def _backing_missing_mid(s):
    s.path("backing-missing")
    s.qimg("create", "-q", "-f", "qcow2", "-b", "backing-missing.qcow2", "-F", "qcow2", "-u", "backing-missing-mid.qcow2", "64M")
    return "backing-missing-mid.qcow2"


@gen("backing-v2")
def _backing_v2(s):
    s.path("v2")
    s.qimg("create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "v2.qcow2", "-F", "qcow2", "backing-v2.qcow2")
    return "backing-v2.qcow2"


# ---- external data files --------------------------------------------------
@gen("data-file")
def _data_file(s):
    s.qimg("create", "-q", "-f", "qcow2", "-o", "data_file=ext-data.bin", "data-file.qcow2", "8M")
    s.qio("-c", "write -P 0x33 0 64k", "data-file.qcow2")
    return "data-file.qcow2"


@gen("data-file-raw")
def _data_file_raw(s):
    s.qimg("create", "-q", "-f", "qcow2", "-o", "data_file=ext-raw.bin,data_file_raw=on", "data-file-raw.qcow2", "8M")
    s.qio("-c", "write -P 0x33 0 64k", "data-file-raw.qcow2")
    return "data-file-raw.qcow2"


@gen("data-file-missing")
def _data_file_missing(s):
    s.qimg("create", "-q", "-f", "qcow2", "-o", "data_file=gone.bin", "data-file-missing.qcow2", "8M")
    (s.root / "gone.bin").unlink()
    return "data-file-missing.qcow2"


# ---- header bits ----------------------------------------------------------
@gen("dirty")
def _dirty(s):
    n = s.qcow2("dirty.qcow2", opts="lazy_refcounts=on", writes=DATA)
    patch_u64_or(s.root / n, HDR_INCOMPAT, INCOMPAT_DIRTY)
    return n


@gen("corrupt")
def _corrupt(s):
    n = s.qcow2("corrupt.qcow2", writes=DATA)
    patch_u64_or(s.root / n, HDR_INCOMPAT, INCOMPAT_CORRUPT)
    return n


@gen("dirty-corrupt")
def _dirty_corrupt(s):
    n = s.qcow2("dirty-corrupt.qcow2", opts="lazy_refcounts=on", writes=DATA)
    patch_u64_or(s.root / n, HDR_INCOMPAT, INCOMPAT_DIRTY | INCOMPAT_CORRUPT)
    return n


# ---- encryption -----------------------------------------------------------
def _luks(s, name, extra=""):
    opts = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10" + extra
    # qemu's PBKDF benchmark fails ("Unable to get accurate CPU usage") when
    # 2^15 iterations take < 1 ms of thread CPU, common for sha1/sha256 with
    # SHA-NI; variants use slower hashes and every create is retried.
    for attempt in range(20):
        r = qemu_img("create", "-q", *SECRET, "-f", "qcow2", "-o", opts, name, "16M",
                     cwd=s.root, check=attempt == 19)
        if r.returncode == 0:
            break
    s.qio(*SECRET, "--image-opts", "-c", "write -P 0x99 0 64k",
          f"driver=qcow2,file.filename={name},encrypt.key-secret=sec0")
    return name


GENERATORS["luks"] = lambda s: _luks(s, "luks.qcow2")
GENERATORS["luks-aes128-xts"] = lambda s: _luks(s, "luks-aes128.qcow2", ",encrypt.cipher-alg=aes-128,encrypt.hash-alg=sha384")
GENERATORS["luks-twofish-cbc"] = lambda s: _luks(
    s, "luks-twofish.qcow2",
    ",encrypt.cipher-alg=twofish-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,"
    "encrypt.ivgen-hash-alg=sha256,encrypt.hash-alg=sha512")
GENERATORS["luks-serpent-plain"] = lambda s: _luks(
    s, "luks-serpent.qcow2",
    ",encrypt.cipher-alg=serpent-256,encrypt.ivgen-alg=plain,encrypt.hash-alg=ripemd160")


@gen("aes-legacy")
def _aes_legacy(s):
    s.qimg("create", "-q", *SECRET, "-f", "qcow2", "-o", "encrypt.format=aes,encrypt.key-secret=sec0", "aes.qcow2", "16M")
    return "aes.qcow2"


# ---- raw ------------------------------------------------------------------
def _raw_file(s, name, size, data=b""):
    with open(s.root / name, "wb") as f:
        f.write(data)
        f.truncate(size)
    return name


GENERATORS["raw-empty"] = lambda s: _raw_file(s, "empty.raw", 0)
GENERATORS["raw-1000"] = lambda s: _raw_file(s, "odd1000.img", 1000, b"\x01" * 1000)
GENERATORS["raw-4097"] = lambda s: _raw_file(s, "odd4097.img", 4097, b"x")
GENERATORS["raw-1"] = lambda s: _raw_file(s, "one-byte.raw", 1, b"\0")
GENERATORS["raw-sparse"] = lambda s: _raw_file(s, "sparse.raw", 1 << 30)
GENERATORS["raw-sparse-odd"] = lambda s: _raw_file(s, "sparse-odd.raw", (1 << 30) + 123, b"hello")
GENERATORS["raw-garbage"] = lambda s: _raw_file(s, "garbage.bin", 65536, bytes(range(256)) * 256)
GENERATORS["raw-qemu"] = lambda s: (s.qimg("create", "-q", "-f", "raw", "qraw.img", "3M"), "qraw.img")[1]
GENERATORS["raw-name-spaces"] = lambda s: _raw_file(s, "name with spaces.img", 4096, b"z")
GENERATORS["raw-name-unicode"] = lambda s: _raw_file(s, "ïmägé ☃.raw", 8192, b"u")
# qcow2 magic but truncated to 16 bytes: probes as qcow2, fails to open
GENERATORS["qcow2-magic-only"] = lambda s: _raw_file(s, "magic-only.qcow2", 16, b"QFI\xfb\0\0\0\3")


# ---- other formats (instar refuses these; used by the difference tests) ----
def _other(fmt, name):
    def g(s):
        s.qimg("create", "-q", "-f", fmt, name, "4M")
        return name

    return g


# File names deliberately do not mention the format, so a refusal message
# that names the format is not satisfied by the file name alone.
OTHER_FORMATS = {fmt: f"other-{i}.img" for i, fmt in
                 enumerate(("vmdk", "vdi", "vpc", "vhdx", "qed", "qcow", "parallels"))}
for _fmt, _name in OTHER_FORMATS.items():
    GENERATORS[f"fmt-{_fmt}"] = _other(_fmt, _name)
# The other formats instar opens (each tested in its own parity/test_<fmt>_parity.py).
OPENED_FORMATS = {"vpc", "qed", "qcow", "parallels", "vhdx", "vdi", "vmdk"}
REFUSED_FORMATS = [f for f in OTHER_FORMATS if f not in OPENED_FORMATS]


# ===========================================================================
# Data images for convert / compare / map / measure / dd / bench
# ===========================================================================
# A matrix of its own (DATA_IMAGES, ids prefixed ``dp-``), so the info and
# check suites, which iterate over GENERATORS, are not changed by it.  Every
# image is small (at most 8 MiB virtual) and holds guest data of every kind
# qcow2 can express: plain data (qemu-io ``write -P``), data that is all
# zeros, zero clusters (``write -z``), zero clusters whose host cluster was
# freed (``write -z -u``), discarded ranges, unallocated holes, partial
# clusters, compressed clusters.  A generator returns the image, or a tuple
# (image, backing files and data files it needs), see ImageSet.files().
# Hostile images (``dp-bad-*``) are patched with tests/corrupt_check.py's
# Qcow2 view, whose every offset is read from the image itself.

DATA_IMAGES: dict = {}


def data_image(name):
    def deco(fn):
        DATA_IMAGES[name] = fn
        return fn

    return deco


def mixed_writes(cs: int = 65536, compressed: bool = True) -> tuple[str, ...]:
    """qemu-io commands giving an 8 MiB image every kind of content.

    Offsets are fixed, so images of any cluster size hold the same guest
    data; the compressed write covers whole clusters (qemu-io refuses
    anything else) at 4 MiB, which is cluster aligned up to 2 MiB clusters.
    """
    clen = max(cs, 128 * 1024)
    w = (
        "write -P 0x11 0 1M",                # plain data, whole clusters
        "write -P 0x22 1049088 4k",          # unaligned, inside one cluster
        "write -z 2M 256k",                  # zero clusters (zero flag, v3)
        "write -P 0x33 3M 512k",
        "discard 3200k 128k",                # punched into written data
        "write -P 0 3840k 64k",              # allocated data that is all zeros
    )
    if compressed:
        w += (f"write -c -P 0x44 4M {clen}",)
    w += ("write -z -u 6M 64k",)             # zero, host cluster freed
    # 6M+64k .. 8M stays unallocated
    return w


def _qcow2_io(s, name, opts="", size="8M", writes=()):
    o = ["-o", opts] if opts else []
    s.qimg("create", "-q", "-f", "qcow2", *o, name, size)
    cmds = [x for w in writes for x in ("-c", w)]
    if cmds:
        s.qio("-f", "qcow2", *cmds, name)
    return name


def _mixed(name, opts="", cs=65536, compressed=True):
    DATA_IMAGES[name] = lambda s: _qcow2_io(s, f"{name}.qcow2", opts, writes=mixed_writes(cs, compressed))


_mixed("dp-mixed")
for _cs, _spell in ((512, "512"), (4096, "4k"), (2 << 20, "2M")):
    _mixed(f"dp-cs{_spell}", f"cluster_size={_spell}", _cs)
for _rb in (1, 8, 64):
    _mixed(f"dp-rb{_rb}", f"refcount_bits={_rb}")
_mixed("dp-zstd", "compression_type=zstd")
# v2 has no zero flag: `write -z` becomes written zeros or deallocation.
_mixed("dp-v2", "compat=0.10")
_mixed("dp-lazy", "lazy_refcounts=on")


@data_image("dp-small")
def _dp_small(s):
    """1 MiB with the same kinds of content as dp-mixed, for cases where the
    options matter more than the image (cheaper to copy and compare)."""
    return _qcow2_io(s, "dp-small.qcow2", size="1M", writes=(
        "write -P 0x11 0 128k",
        "write -P 0x22 200k 4k",
        "write -z 256k 128k",
        "write -P 0 384k 64k",
        "write -c -P 0x44 512k 64k",
        "write -P 0x33 640k 128k",
        "discard 704k 64k",
        # 768k .. 1M stays unallocated
    ))


@data_image("dp-extl2")
def _dp_extl2(s):
    """extended_l2=on, 64 KiB clusters (2 KiB subclusters): 4 KiB writes
    leave clusters partly allocated, partly zero, partly unallocated."""
    return _qcow2_io(s, "dp-extl2.qcow2", "extended_l2=on", writes=(
        "write -P 0x51 0 4k",
        "write -P 0x52 8k 4k",
        "write -P 0x53 62k 4k",              # straddles a cluster boundary
        "write -z 64k 8k",
        "write -z 80k 2k",
        "write -P 0x54 1M 64k",
        "write -z -u 1M 4k",
        "write -c -P 0x55 2M 128k",
        "write -P 0x56 3M 2k",
        "discard 3M 2k",
        "write -P 0 5M 4k",
    ))


@data_image("dp-extl2-2M")
def _dp_extl2_2m(s):
    """extended_l2=on with 2 MiB clusters: 64 KiB subclusters."""
    return _qcow2_io(s, "dp-extl2-2M.qcow2", "extended_l2=on,cluster_size=2M", writes=(
        "write -P 0x61 0 4k",
        "write -P 0x62 192k 64k",
        "write -z 2M 128k",
        "write -P 0x63 5M 1M",
    ))


@data_image("dp-odd")
def _dp_odd(s):
    """A size that is no multiple of the cluster size (3 MiB + 512), data
    up to the last sector."""
    return _qcow2_io(s, "dp-odd.qcow2", size="3146240", writes=(
        "write -P 0x71 0 64k", "write -P 0x72 3M 512"))


@data_image("dp-empty")
def _dp_empty(s):
    return _qcow2_io(s, "dp-empty.qcow2", size="4M")


@data_image("dp-full")
def _dp_full(s):
    """Every cluster written with non-zero data (no sparse areas at all)."""
    return _qcow2_io(s, "dp-full.qcow2", size="2M", writes=("write -P 0x7e 0 2M",))


@data_image("dp-prealloc")
def _dp_prealloc(s):
    """preallocation=metadata: every cluster allocated, reading as zeros."""
    return _qcow2_io(s, "dp-prealloc.qcow2", "preallocation=metadata", size="4M",
                     writes=("write -P 0x7f 1M 64k",))


@data_image("dp-zlib-full")
def _dp_zlib_full(s):
    """Made by `convert -c` (zlib): every data cluster compressed."""
    src = s.path("dp-mixed")
    s.qimg("convert", "-c", "-O", "qcow2", src, "dp-zlib-full.qcow2")
    return "dp-zlib-full.qcow2"


@data_image("dp-zstd-full")
def _dp_zstd_full(s):
    src = s.path("dp-mixed")
    s.qimg("convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", src, "dp-zstd-full.qcow2")
    return "dp-zstd-full.qcow2"


@data_image("dp-mixed-raw")
def _dp_mixed_raw(s):
    """dp-mixed converted to raw by the oracle: same guest data, no qcow2
    allocation information (written zeros are holes)."""
    s.qimg("convert", "-O", "raw", s.path("dp-mixed"), "dp-mixed.raw")
    return "dp-mixed.raw"


@data_image("dp-mixed-flipped")
def _dp_mixed_flipped(s):
    """dp-mixed with one byte changed inside the compressed range."""
    name = "dp-mixed-flipped.qcow2"
    _sparse_copy(s.root / s.path("dp-mixed"), s.root / name)
    s.qio("-f", "qcow2", "-c", "write -P 0x45 4300001 1", name)
    return name


@data_image("dp-mixed-bigger")
def _dp_mixed_bigger(s):
    """dp-mixed grown to 9 MiB: the extra MiB reads as zeros."""
    name = "dp-mixed-bigger.qcow2"
    _sparse_copy(s.root / s.path("dp-mixed"), s.root / name)
    s.qimg("resize", "-q", name, "9M")
    return name


@data_image("dp-mixed-bigger-data")
def _dp_mixed_bigger_data(s):
    """dp-mixed grown to 9 MiB with data in the extra MiB."""
    name = "dp-mixed-bigger-data.qcow2"
    _sparse_copy(s.root / s.path("dp-mixed-bigger"), s.root / name)
    s.qio("-f", "qcow2", "-c", "write -P 0x99 8716800 512", name)
    return name


@data_image("dp-raw")
def _dp_raw(s):
    """A raw image with data, explicit zero blocks and holes (4 MiB + 1000)."""
    p = s.root / "dp-raw.img"
    with open(p, "wb") as f:
        f.write(b"\x5a" * 65536)
        f.seek(1 << 20)
        f.write(bytes(65536))                # allocated zeros
        f.seek((2 << 20) + 512)
        f.write(b"\xa5" * 3000)              # unaligned
        f.truncate((4 << 20) + 1000)
    with open(p, "r+b") as f:
        f.seek((4 << 20) + 1000 - 10)
        f.write(b"0123456789")               # data in the last partial sector
    return "dp-raw.img"


# ---- backing chains -------------------------------------------------------
@data_image("dp-chain-base")
def _dp_chain_base(s):
    return _qcow2_io(s, "dp-chain-base.qcow2", size="4M", writes=(
        "write -P 0xb1 0 4M",))


@data_image("dp-chain-mid")
def _dp_chain_mid(s):
    base = s.path("dp-chain-base")
    s.qimg("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", "dp-chain-mid.qcow2", "6M")
    s.qio("-f", "qcow2", "-c", "write -P 0xb2 1M 2M", "-c", "write -z 1536k 256k",
          "-c", "write -P 0xb3 5M 64k", "dp-chain-mid.qcow2")
    return ("dp-chain-mid.qcow2", *s.files("dp-chain-base"))


@data_image("dp-chain-top")
def _dp_chain_top(s):
    """Three deep, overlapping writes; the top (8 MiB) is larger than the
    middle (6 MiB) and the base (4 MiB)."""
    mid = s.path("dp-chain-mid")
    s.qimg("create", "-q", "-f", "qcow2", "-b", mid, "-F", "qcow2", "dp-chain-top.qcow2", "8M")
    s.qio("-f", "qcow2", "-c", "write -P 0xc1 2M 1M", "-c", "write -z 0 64k",
          "-c", "write -P 0xc2 1088k 4k", "-c", "write -c -P 0xc3 7M 64k",
          "-c", "discard 2560k 64k", "dp-chain-top.qcow2")
    return ("dp-chain-top.qcow2", *s.files("dp-chain-mid"))


@data_image("dp-chain-flat")
def _dp_chain_flat(s):
    """dp-chain-top flattened by the oracle: same guest data as the chain."""
    s.qimg("convert", "-O", "qcow2", s.path("dp-chain-top"), "dp-chain-flat.qcow2")
    return "dp-chain-flat.qcow2"


@data_image("dp-chain-rawbase")
def _dp_chain_rawbase(s):
    """A qcow2 (extended L2) overlay on a raw backing file."""
    raw = s.path("dp-raw")
    s.qimg("create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "-b", raw, "-F", "raw",
           "dp-chain-rawbase.qcow2")
    s.qio("-f", "qcow2", "-c", "write -P 0xd1 32k 8k", "-c", "write -z 1M 32k",
          "dp-chain-rawbase.qcow2")
    return ("dp-chain-rawbase.qcow2", raw)


# ---- external data files, snapshots, bitmaps ------------------------------
@data_image("dp-datafile")
def _dp_datafile(s):
    s.qimg("create", "-q", "-f", "qcow2", "-o", "data_file=dp-datafile.bin", "dp-datafile.qcow2", "4M")
    s.qio("-f", "qcow2", "-c", "write -P 0xe1 0 128k", "-c", "write -z 1M 64k",
          "-c", "write -P 0xe2 2M 4k", "dp-datafile.qcow2")
    return ("dp-datafile.qcow2", "dp-datafile.bin")


def _toggle_data_file(p: Path, ext: bytes | None) -> bytes:
    """The external data file bit and extension (the first, as qemu writes
    it) taken out of a qcow2 header (ext None: returns the extension's
    bytes), or put back (ext: those bytes)."""
    b = bytearray(p.read_bytes())
    hl, = struct.unpack_from(">I", b, 100)
    inc, = struct.unpack_from(">Q", b, 72)
    if ext is None:
        t, n = struct.unpack_from(">II", b, hl)
        assert t == 0x44415441
        ext = bytes(b[hl:hl + 8 + ((n + 7) & ~7)])
        b[hl:4096] = b[hl + len(ext):4096] + bytes(len(ext))
        struct.pack_into(">Q", b, 72, inc & ~4)
    else:
        b[hl:4096] = ext + b[hl:4096 - len(ext)]
        struct.pack_into(">Q", b, 72, inc | 4)
    p.write_bytes(bytes(b))
    return ext


@data_image("dp-datafile-snaps")
def _dp_datafile_snaps(s):
    """An external data file image with a snapshot (qemu refuses to take
    one, but reads the table of an image that has one): the snapshot taken
    with the data file bit and extension out, then put back, and the
    active layer written and grown after it."""
    n = "dp-datafile-snaps.qcow2"
    s.qimg("create", "-q", "-f", "qcow2", "-o", "data_file=dp-datafile-snaps.bin", n, "4M")
    s.qio("-f", "qcow2", "-c", "write -P 0xe5 0 1M", "-c", "write -P 0xe6 2M 64k", n)
    ext = _toggle_data_file(s.root / n, None)
    s.qimg("snapshot", "-c", "first", n)
    _toggle_data_file(s.root / n, ext)
    s.qio("-f", "qcow2", "-c", "write -P 0xe7 512k 1M", n)
    s.qimg("resize", "-q", n, "8M")
    return (n, "dp-datafile-snaps.bin")


@data_image("dp-datafile-raw")
def _dp_datafile_raw(s):
    s.qimg("create", "-q", "-f", "qcow2", "-o", "data_file=dp-datafile-raw.bin,data_file_raw=on",
           "dp-datafile-raw.qcow2", "4M")
    s.qio("-f", "qcow2", "-c", "write -P 0xe3 0 128k", "-c", "write -P 0xe4 3M 4k",
          "dp-datafile-raw.qcow2")
    return ("dp-datafile-raw.qcow2", "dp-datafile-raw.bin")


@data_image("dp-snaps")
def _dp_snaps(s):
    """Three states: snapshot 'first' (id 1), snapshot 'second' (id 2), and
    the active layer, each with different data."""
    n = _qcow2_io(s, "dp-snaps.qcow2", size="4M", writes=("write -P 0xf1 0 1M",))
    s.qimg("snapshot", "-c", "first", n)
    s.qio("-f", "qcow2", "-c", "write -P 0xf2 512k 1M", "-c", "write -z 3M 64k", n)
    s.qimg("snapshot", "-c", "second", n)
    s.qio("-f", "qcow2", "-c", "write -P 0xf3 0 64k", "-c", "discard 1M 64k", n)
    return n


@data_image("dp-bitmaps")
def _dp_bitmaps(s):
    """Persistent bitmaps: enabled, disabled, a big granularity."""
    n = _qcow2_io(s, "dp-bitmaps.qcow2", size="4M", writes=("write -P 0x81 0 64k",))
    s.qimg("bitmap", "--add", n, "b-enabled")
    s.qimg("bitmap", "--add", "-g", "1M", n, "b-disabled")
    s.qimg("bitmap", "--disable", n, "b-disabled")
    s.qio("-f", "qcow2", "-c", "write -P 0x82 1M 64k", n)
    return n


BITMAP_EXT = 0x23852875
BITMAP_IN_USE = 1


@data_image("dp-bitmap-inuse")
def _dp_bitmap_inuse(s):
    """A bitmap whose in-use flag is set (inconsistent: qemu-img refuses to
    copy it without --skip-broken-bitmaps)."""
    name = "dp-bitmap-inuse.qcow2"
    _sparse_copy(s.root / s.path("dp-bitmaps"), s.root / name)
    with open(s.root / name, "r+b") as f:
        hdr = f.read(4096)
        off = struct.unpack_from(">I", hdr, 100)[0]
        while off + 8 <= len(hdr):
            magic, length = struct.unpack_from(">II", hdr, off)
            if magic == BITMAP_EXT:
                dir_off = struct.unpack_from(">Q", hdr, off + 8 + 16)[0]
                f.seek(dir_off + 12)
                (flags,) = struct.unpack(">I", f.read(4))
                f.seek(dir_off + 12)
                f.write(struct.pack(">I", flags | BITMAP_IN_USE))
                return name
            if magic == 0:
                break
            off += 8 + ((length + 7) & ~7)
    raise RuntimeError("no bitmap extension")


@data_image("dp-bitmaps-all-inuse")
def _dp_bitmaps_all_inuse(s):
    """Every bitmap of dp-bitmaps in use: qemu-img names the one it loaded
    last (the last in directory order)."""
    name = "dp-bitmaps-all-inuse.qcow2"
    _sparse_copy(s.root / s.path("dp-bitmaps"), s.root / name)
    with open(s.root / name, "r+b") as f:
        hdr = f.read(4096)
        off = struct.unpack_from(">I", hdr, 100)[0]
        while off + 8 <= len(hdr):
            magic, length = struct.unpack_from(">II", hdr, off)
            if magic == BITMAP_EXT:
                count = struct.unpack_from(">I", hdr, off + 8)[0]
                dir_off = struct.unpack_from(">Q", hdr, off + 8 + 16)[0]
                for _ in range(count):
                    f.seek(dir_off)
                    ent = f.read(24)
                    flags = struct.unpack_from(">I", ent, 12)[0]
                    name_size = struct.unpack_from(">H", ent, 18)[0]
                    extra = struct.unpack_from(">I", ent, 20)[0]
                    f.seek(dir_off + 12)
                    f.write(struct.pack(">I", flags | BITMAP_IN_USE))
                    dir_off += (24 + extra + name_size + 7) & ~7
                return name
            if magic == 0:
                break
            off += 8 + ((length + 7) & ~7)
    raise RuntimeError("no bitmap extension")


@data_image("dp-target-v2")
def _dp_target_v2(s):
    """An existing 8 MiB qcow2 v2 image: a convert -n target that cannot hold bitmaps."""
    return _qcow2_io(s, "dp-target-v2.qcow2", opts="compat=0.10", size="8M")


@data_image("dp-target-qcow2")
def _dp_target_qcow2(s):
    """An existing 8 MiB qcow2 with data everywhere: a target for convert -n."""
    return _qcow2_io(s, "dp-target.qcow2", size="8M", writes=(
        "write -P 0xee 0 8M",))


@data_image("dp-target-raw")
def _dp_target_raw(s):
    """An existing 9 MiB raw file full of 0xee: a target for convert -n."""
    p = s.root / "dp-target.raw"
    p.write_bytes(b"\xee" * (9 << 20))
    return "dp-target.raw"


@data_image("dp-target-small")
def _dp_target_small(s):
    return _qcow2_io(s, "dp-target-small.qcow2", size="1M")


@data_image("dp-target-zero-raw")
def _dp_target_zero_raw(s):
    """A fresh all-holes 8 MiB raw file (for --target-is-zero)."""
    p = s.root / "dp-target-zero.raw"
    with open(p, "wb") as f:
        f.truncate(8 << 20)
    return "dp-target-zero.raw"


# ---- hostile images ---------------------------------------------------------
def _patched(s, name, src, patch):
    """Copy image ``src`` to ``name`` and apply ``patch(Qcow2)`` to it."""
    from corrupt_check import Qcow2

    q = Qcow2((s.root / s.path(src)).read_bytes())
    patch(q)
    (s.root / name).write_bytes(bytes(q.b))
    return name


@data_image("dp-bad-l2-eof")
def _dp_bad_l2_eof(s):
    """An L2 entry (guest 3 MiB) pointing at a data cluster past the end of
    the file."""
    from corrupt_check import COPIED

    return _patched(s, "dp-bad-l2-eof.qcow2", "dp-mixed",
                    lambda q: q.set_l2(3 << 20, q.past_eof() | COPIED))


@data_image("dp-bad-l1-eof")
def _dp_bad_l1_eof(s):
    """The only L1 entry points at an L2 table past the end of the file."""
    from corrupt_check import COPIED

    return _patched(s, "dp-bad-l1-eof.qcow2", "dp-mixed",
                    lambda q: q.put64(q.l1_entry_off(0), q.past_eof() | COPIED))


@data_image("dp-bad-l2-unaligned")
def _dp_bad_l2_unaligned(s):
    """A data cluster offset that is not cluster aligned."""
    return _patched(s, "dp-bad-l2-unaligned.qcow2", "dp-mixed",
                    lambda q: q.set_l2(3 << 20, q.l2(3 << 20) + 512))


@data_image("dp-text-comp")
def _dp_text_comp(s):
    """256 KiB of text (numbered lines) in a 1 MiB image, compressed by
    `convert -c`: compressed clusters of a few KiB whose deflate streams
    are not a single repeated match (see dp-bad-comp-eof)."""
    raw = s.root / "dp-text.raw"
    text = b"".join(b"line %06d of the text, some words: %x\n" % (i, i * 7919) for i in range(6000))
    with open(raw, "wb") as f:
        f.write(text[: 256 * 1024])
        f.truncate(1 << 20)
    s.qimg("convert", "-c", "-f", "raw", "-O", "qcow2", "dp-text.raw", "dp-text-comp.qcow2")
    raw.unlink()
    return "dp-text-comp.qcow2"


@data_image("dp-noise")
def _dp_noise(s):
    """A raw 6 MiB + 1536 image whose 64 KiB blocks compress differently: noise
    (incompressible: convert -c writes it as plain clusters), half noise,
    a little noise in zeros, a repeated byte, and a noisy short tail."""
    import hashlib

    def noise(n, seed):
        out, h = bytearray(), hashlib.sha256(seed).digest()
        while len(out) < n:
            h = hashlib.sha256(h).digest()
            out += h
        return bytes(out[:n])

    p = s.root / "dp-noise.img"
    with open(p, "wb") as f:
        for i in range(96):
            kind = i % 4
            if kind == 0:
                blk = noise(65536, b"full%d" % i)
            elif kind == 1:
                blk = noise(32768, b"half%d" % i) + bytes(32768)
            elif kind == 2:
                blk = bytes(60000) + noise(5536, b"bit%d" % i)
            else:
                blk = bytes([i % 256]) * 65536
            f.write(blk)
        f.write(noise(1536, b"tail"))
    return "dp-noise.img"


@data_image("dp-bad-comp-eof")
def _dp_bad_comp_eof(s):
    """The last compressed cluster's data runs past the end of the file:
    the file is cut in the middle of it.  (Cutting a cluster of one repeated
    byte would not do: deflate encodes it as a run of one match whose code
    the zeros read past the end of the file repeat, so it still inflates.)"""
    from corrupt_check import COMPRESSED, Qcow2

    name = "dp-bad-comp-eof.qcow2"
    q = Qcow2((s.root / s.path("dp-text-comp")).read_bytes())
    mask = (1 << q.compressed_offset_bits) - 1
    last = max(q.l2(g) & mask for g in range(0, 256 * 1024, q.cluster_size) if q.l2(g) & COMPRESSED)
    (s.root / name).write_bytes(bytes(q.b[: last + 512]))
    return name


@data_image("dp-bad-comp-past-eof")
def _dp_bad_comp_past_eof(s):
    """A compressed cluster descriptor (guest 64 KiB) whose data lies wholly
    past the end of the file: it reads as zeros, which do not inflate."""
    from corrupt_check import COMPRESSED

    def patch(q):
        e = q.l2(65536)
        assert e & COMPRESSED
        mask = (1 << q.compressed_offset_bits) - 1
        q.set_l2(65536, (e & ~mask) | ((e & mask) + q.past_eof()))

    return _patched(s, "dp-bad-comp-past-eof.qcow2", "dp-text-comp", patch)


@data_image("dp-bad-chain-trunc")
def _dp_bad_chain_trunc(s):
    """A chain whose middle member is cut in the middle of a data cluster:
    reads of the rest of that cluster go past its end of file."""
    from corrupt_check import Qcow2

    base = s.path("dp-chain-base")
    mid = "dp-trunc-mid.qcow2"
    s.qimg("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", mid, "6M")
    s.qio("-f", "qcow2", "-c", "write -P 0xb2 1M 2M", mid)
    q = Qcow2((s.root / mid).read_bytes())
    host = q.data_cluster(2 << 20)
    (s.root / mid).write_bytes(bytes(q.b[: host + 4096 + 100]))
    top = "dp-trunc-top.qcow2"
    s.qimg("create", "-q", "-f", "qcow2", "-u", "-b", mid, "-F", "qcow2", top, "6M")
    s.qio("-f", "qcow2", "-c", "write -P 0xc1 0 64k", top)
    return (top, mid, *s.files("dp-chain-base"))


def _converted_raw(src):
    def g(s):
        name = f"{src}-conv.raw"
        s.qimg("convert", "-O", "raw", s.path(src), name)
        return name

    return g


for _src in ("dp-extl2", "dp-datafile", "dp-snaps"):
    DATA_IMAGES[f"{_src}-conv"] = _converted_raw(_src)


@data_image("dp-datafile-backing")
def _dp_datafile_backing(s):
    """An external data file over a backing file: guest data the image
    does not hold reads from dp-chain-base (0xb1)."""
    base = s.path("dp-chain-base")
    s.qimg("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2",
           "-o", "data_file=dp-datafile-backing.bin", "dp-datafile-backing.qcow2", "4M")
    s.qio("-f", "qcow2", "-c", "write -P 0xc1 512k 64k", "-c", "write -z 1M 64k",
          "dp-datafile-backing.qcow2")
    return ("dp-datafile-backing.qcow2", "dp-datafile-backing.bin", *s.files("dp-chain-base"))


# ---- convert --bitmaps: bitmaps with bits (parity/test_bitmaps_parity.py) ----------

def _bm_entries(path):
    """(name, table offset, table size) of each bitmap of a qcow2 image, in
    directory order (qcow2.txt, "Bitmaps extension", "Bitmap directory")."""
    with open(path, "rb") as f:
        hdr = f.read(65536)
        off = struct.unpack_from(">I", hdr, 100)[0]
        while True:
            magic, length = struct.unpack_from(">II", hdr, off)
            if magic == BITMAP_EXT:
                _nb, _r, size, dir_off = struct.unpack_from(">IIQQ", hdr, off + 8)
                break
            if magic == 0:
                raise RuntimeError("no bitmap extension")
            off += 8 + ((length + 7) & ~7)
        f.seek(dir_off)
        d = f.read(size)
    out, e = [], 0
    while e < len(d):
        t_off, t_size, _fl, _ty, _gb, nlen, extra = struct.unpack_from(">QIIBBHI", d, e)
        out.append((d[e + 24:e + 24 + nlen].decode(), t_off, t_size))
        e += (24 + nlen + extra + 7) & ~7
    return out


def _bm_patch(path, name, fn):
    """fn(file, table offset, table size) on bitmap `name` of a qcow2 image."""
    for n, t_off, t_size in _bm_entries(path):
        if n == name:
            with open(path, "r+b") as f:
                fn(f, t_off, t_size)
            return
    raise RuntimeError(f"no bitmap {name}")


@data_image("dp-bm-many")
def _dp_bm_many(s):
    """Bitmaps of every granularity with bits set by qemu-io writes, one
    disabled half-way (so it misses the later writes), one added late."""
    n = _qcow2_io(s, "dp-bm-many.qcow2", size="64M", writes=("write -P 0x11 0 192k",))
    s.qimg("bitmap", "--add", n, "b-64k")
    s.qimg("bitmap", "--add", "-g", "4k", n, "b-4k")
    s.qimg("bitmap", "--add", "-g", "512", n, "b-512")
    s.qimg("bitmap", "--add", "-g", "2M", n, "b 2M spaced")
    s.qio("-f", "qcow2", "-c", "write -P 0x21 0 1M", "-c", "write -P 0x22 10M 64k", "-c", "write 33M 4k",
          "-c", "write 63M 1M", n)
    s.qimg("bitmap", "--disable", n, "b-4k")
    s.qio("-f", "qcow2", "-c", "write -P 0x23 40M 1536k", "-c", "write 5M 512", n)
    s.qimg("bitmap", "--add", "-g", "128k", n, "late")
    s.qio("-f", "qcow2", "-c", "write -P 0x24 20M 3M", n)
    return n


@data_image("dp-bm-cs512")
def _dp_bm_cs512(s):
    """512-byte clusters: bitmap tables and data of many clusters."""
    n = _qcow2_io(s, "dp-bm-cs512.qcow2", opts="cluster_size=512", size="64M")
    s.qimg("bitmap", "--add", n, "x")
    s.qimg("bitmap", "--add", "-g", "1k", n, "y")
    s.qio("-f", "qcow2", "-c", "write 0 3M", "-c", "write 50M 512", "-c", "write 17M 100k", n)
    return n


@data_image("dp-bm-large")
def _dp_bm_large(s):
    """A 40 GiB image (sparse) with a 512-byte-granularity bitmap: 10 MiB
    of serialised bits, mostly zero clusters."""
    n = _qcow2_io(s, "dp-bm-large.qcow2", size="40G")
    s.qimg("bitmap", "--add", "-g", "512", n, "fine")
    s.qimg("bitmap", "--add", n, "coarse")
    s.qio("-f", "qcow2", "-c", "write 0 64k", "-c", "write 5G 1M", "-c", "write 20G 4k", "-c", "write 39G 2M", n)
    return n


@data_image("dp-bm-ones")
def _dp_bm_ones(s):
    """An odd size (64 MiB + 1.5 KiB): bitmap table entries set to 1 (all
    ones, which qemu reads but never writes), and bits past the image's last
    granule set in a data cluster (qemu copies whole words)."""
    n = _qcow2_io(s, "dp-bm-ones.qcow2", size=str((64 << 20) + 1536))
    s.qimg("bitmap", "--add", n, "o1")
    s.qimg("bitmap", "--add", "-g", "1k", n, "o2")
    s.qimg("bitmap", "--add", "-g", "4k", n, "o3")
    s.qio("-f", "qcow2", "-c", "write 0 4k", "-c", "write 64M 1k", n)
    p = s.root / n

    def ones(f, t_off, _t_size):
        f.seek(t_off)
        f.write(struct.pack(">Q", 1))

    def garbage(f, t_off, _t_size):
        # o2: 65538 bits; bits past the last one in its last word.
        f.seek(t_off)
        (entry,) = struct.unpack(">Q", f.read(8))
        f.seek(entry + 8199)
        f.write(b"\xf0")

    _bm_patch(p, "o1", ones)
    _bm_patch(p, "o2", garbage)
    return n


@data_image("dp-bm-inuse-bits")
def _dp_bm_inuse_bits(s):
    """dp-bm-many with its 4k bitmap marked in use (skipped with
    --skip-broken-bitmaps, the others copied)."""
    name = "dp-bm-inuse-bits.qcow2"
    _sparse_copy(s.root / s.path("dp-bm-many"), s.root / name)
    p = s.root / name
    with open(p, "rb") as f:
        hdr = f.read(65536)
    off = struct.unpack_from(">I", hdr, 100)[0]
    while True:
        magic, length = struct.unpack_from(">II", hdr, off)
        if magic == BITMAP_EXT:
            dir_off = struct.unpack_from(">Q", hdr, off + 8 + 16)[0]
            break
        off += 8 + ((length + 7) & ~7)
    e = 0
    with open(p, "r+b") as f:
        for n, _t, _s in _bm_entries(p):
            if n == "b-4k":
                f.seek(dir_off + e + 12)
                (flags,) = struct.unpack(">I", f.read(4))
                f.seek(dir_off + e + 12)
                f.write(struct.pack(">I", flags | BITMAP_IN_USE))
            e += (24 + len(n.encode()) + 7) & ~7
    return name


@data_image("dp-bm-names")
def _dp_bm_names(s):
    """Twenty bitmaps with long names: a directory of several 512-byte
    clusters."""
    n = _qcow2_io(s, "dp-bm-names.qcow2", opts="cluster_size=512", size="4M")
    for i in range(20):
        s.qimg("bitmap", "--add", "-g", f"{512 << (i % 6)}", n, f"{i:02d}-" + "n" * (150 + i))
    s.qio("-f", "qcow2", "-c", "write 1M 300k", n)
    return n


@data_image("dp-bm-target-64M")
def _dp_bm_target_64m(s):
    """An existing 64 MiB qcow2 image: a convert -n --bitmaps target of dp-bm-many's size."""
    return _qcow2_io(s, "dp-bm-target-64M.qcow2", size="64M", writes=("write -P 0xee 0 2M",))


@data_image("dp-bm-target-65M")
def _dp_bm_target_65m(s):
    """An existing 65 MiB qcow2 image: longer than dp-bm-many, so the bitmaps cannot be merged."""
    return _qcow2_io(s, "dp-bm-target-65M.qcow2", size="65M")


def _raw_unaligned_tail(s):
    """qemu-iotests 253's file: 1 MiB - 1 bytes, data in the first 4 KiB
    and in the last 65535 bytes (to the end of the file, inside a sector)."""
    name = "unaligned-tail.raw"
    with open(s.root / name, "wb") as f:
        f.write(b"\x5a" * 4096)
        f.seek(983040)
        f.write(b"\xa5" * 65535)
    return name


GENERATORS["raw-unaligned-tail"] = _raw_unaligned_tail
