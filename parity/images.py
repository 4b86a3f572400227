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
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from instar_testlib import qemu_img, qemu_io  # noqa: E402

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

    def path(self, name: str) -> str:
        """Relative path (to root) of image ``name``, generating it on first use."""
        if name not in self._done:
            gen = GENERATORS[name]
            self._done[name] = gen(self)
        return self._done[name]

    def abspath(self, name: str) -> str:
        return str(self.root / self.path(name))

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
