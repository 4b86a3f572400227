"""Deterministic generator of hostile qcow2 images (no committed blobs).

Every image starts as a file made by the oracle's qemu-img/qemu-io and is then
patched with ``struct``.  Field offsets follow QEMU's docs/interop/qcow2.txt:

    0 magic  4 version  8 backing_file_offset  16 backing_file_size
    20 cluster_bits  24 size  32 crypt_method  36 l1_size  40 l1_table_offset
    48 refcount_table_offset  56 refcount_table_clusters  60 nb_snapshots
    64 snapshots_offset  (v3:) 72 incompatible  80 compatible  88 autoclear
    96 refcount_order  100 header_length  104 compression_type

``HOSTILE`` maps a case id to a Case(builder, kind, args, env, names).  ``kind``
is PARITY (instar must match qemu-img exactly: exit code, stdout, stderr),
POLICY (instar deliberately refuses: exit 1, a ``qemu-img: `` message naming
the offending backing file, nothing on stdout; the oracle is not run, since it
may hang, e.g. on a FIFO), or POLICY_OR_ORACLE (see below).
Builders take a Gen (the output directory plus helpers) and return the image
path relative to that directory, which is the cwd of both tools.
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from instar_testlib import qemu_img, qemu_io  # noqa: E402

PARITY = "parity"
POLICY = "policy"
#: Safety-policy case where qemu-img itself also rejects the image (loops,
#: directories): if the oracle fails, instar must match it exactly; if the
#: oracle succeeds, instar must refuse as for POLICY.
POLICY_OR_ORACLE = "policy-or-oracle"

EXT_END = 0
EXT_BACKING_FMT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857


class Gen:
    """Output directory plus helpers; caches the pristine templates."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._templates: dict[str, bytes] = {}

    def qimg(self, *a):
        return qemu_img(*a, cwd=self.root)

    def template(self, kind: str = "v3") -> bytes:
        """Bytes of a small pristine image made by qemu-img (cached)."""
        if kind not in self._templates:
            name = f"_template-{kind}.qcow2"
            opts = {"v3": "cluster_size=65536", "v2": "compat=0.10", "v3-4k": "cluster_size=4096"}[kind]
            self.qimg("create", "-q", "-f", "qcow2", "-o", opts, name, "64M")
            qemu_io("-f", "qcow2", "-c", "write -P 0xab 0 64k", "-c", "write -P 0xcd 1M 64k", name, cwd=self.root)
            self._templates[kind] = (self.root / name).read_bytes()
        return self._templates[kind]

    def write(self, name: str, data: bytes) -> str:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return name

    def patched(self, name: str, patches, kind: str = "v3", truncate: int | None = None) -> str:
        """Template ``kind`` with (offset, struct-fmt, value) patches applied."""
        b = bytearray(self.template(kind))
        for off, fmt, val in patches:
            struct.pack_into(fmt, b, off, val)
        if truncate is not None:
            b = b[:truncate]
        return self.write(name, bytes(b))

    def overlay(self, name: str, backing: str, fmt: str = "qcow2") -> str:
        """A v3 qcow2 whose header names ``backing`` (no existence check)."""
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        # create + unsafe rebase: `create -b` refuses a backing name equal to
        # the image name (needed for self loops); `rebase -u` never opens it.
        self.qimg("create", "-q", "-f", "qcow2", name, "64M")
        self.qimg("rebase", "-u", "-b", backing, "-F", fmt, name)
        return name


def hdr_u64(data: bytes, off: int) -> int:
    return struct.unpack_from(">Q", data, off)[0]


def extensions(data: bytes):
    """List of (magic, payload) header extensions of a v3 image."""
    off = struct.unpack_from(">I", data, 100)[0]
    out = []
    while True:
        magic, length = struct.unpack_from(">II", data, off)
        if magic == EXT_END:
            return out
        out.append((magic, data[off + 8: off + 8 + length]))
        off += 8 + ((length + 7) & ~7)


def with_extensions(data: bytes, exts) -> bytes:
    """Rewrite the extension area of a v3 image WITHOUT a backing file."""
    assert hdr_u64(data, 8) == 0, "with_extensions() does not relocate backing names"
    b = bytearray(data)
    off = struct.unpack_from(">I", b, 100)[0]
    area = bytearray()
    for magic, payload in exts:
        area += struct.pack(">II", magic, len(payload)) + payload
        area += b"\0" * ((-len(payload)) % 8)
    area += struct.pack(">II", EXT_END, 0)
    cluster = 1 << struct.unpack_from(">I", b, 20)[0]
    assert off + len(area) <= cluster
    b[off: cluster] = area + b"\0" * (cluster - off - len(area))
    return bytes(b)


def feature_entry(ftype: int, bit: int, name: str) -> bytes:
    return struct.pack(">BB46s", ftype, bit, name.encode())


@dataclass
class Case:
    build: object
    kind: str = PARITY
    args: tuple = ()  # extra info options, e.g. ("--backing-chain",)
    env: dict = field(default_factory=dict)  # values may contain {root}
    names: tuple = ()  # substrings the POLICY refusal message must contain


HOSTILE: dict[str, Case] = {}


def add(cid, build, kind=PARITY, args=(), env=None, names=()):
    HOSTILE[cid] = Case(build, kind, tuple(args), env or {}, tuple(names))


# ---- truncated headers -----------------------------------------------------
for _n in (0, 3, 4, 8, 20, 32, 48, 71, 72, 99, 100, 104, 111, 4096, 65536, 65537):
    add(f"truncated-v3-{_n}", lambda g, n=_n: g.patched(f"trunc-v3-{n}.qcow2", [], truncate=n))
for _n in (20, 71, 72, 4096):
    add(f"truncated-v2-{_n}", lambda g, n=_n: g.patched(f"trunc-v2-{n}.qcow2", [], kind="v2", truncate=n))

# ---- header fields -----------------------------------------------------------
for _cb in (0, 8, 22, 63, 0xFFFFFFFF):
    add(f"cluster-bits-{_cb}", lambda g, cb=_cb: g.patched(f"cb{cb}.qcow2", [(20, ">I", cb)]))
# cluster_bits 8 / 22 on the v2 template too (v2 skips the v3-only checks)
for _cb in (8, 22):
    add(f"v2-cluster-bits-{_cb}", lambda g, cb=_cb: g.patched(f"v2-cb{cb}.qcow2", [(20, ">I", cb)], kind="v2"))
# version 1 with the QFI\xfb magic is qcow (v1), which both open as qcow.
add("version-1-is-qcow", lambda g: g.patched("version-one.img", [(4, ">I", 1)]))
for _v in (0, 4, 0xFFFFFFFF):
    add(f"version-{_v}", lambda g, v=_v: g.patched(f"version{v}.qcow2", [(4, ">I", v)]))
add("bad-magic", lambda g: g.patched("badmagic.qcow2", [(0, ">I", 0x514649FC)]))
add("crypt-method-3", lambda g: g.patched("crypt3.qcow2", [(32, ">I", 3)]))
add("crypt-method-1-v3", lambda g: g.patched("crypt1.qcow2", [(32, ">I", 1)]))
add("size-huge", lambda g: g.patched("size-huge.qcow2", [(24, ">Q", 1 << 62)]))
add("size-max", lambda g: g.patched("size-max.qcow2", [(24, ">Q", (1 << 64) - 1)]))
add("size-zero", lambda g: g.patched("size-zero.qcow2", [(24, ">Q", 0)]))
add("l1-size-huge", lambda g: g.patched("l1-huge.qcow2", [(36, ">I", 0x7FFFFFFF)]))
add("l1-size-max", lambda g: g.patched("l1-max.qcow2", [(36, ">I", 0xFFFFFFFF)]))
add("l1-size-too-small", lambda g: g.patched("l1-small.qcow2", [(36, ">I", 0), (24, ">Q", 1 << 40)]))
add("l1-offset-unaligned", lambda g: g.patched("l1-unaligned.qcow2", [(40, ">Q", 0x30001)]))
add("l1-offset-past-eof", lambda g: g.patched("l1-past-eof.qcow2", [(40, ">Q", 1 << 40)]))
add("l1-offset-overflow", lambda g: g.patched("l1-overflow.qcow2", [(40, ">Q", 0xFFFFFFFFFFFF0000)]))
add("l1-offset-zero", lambda g: g.patched("l1-zero.qcow2", [(40, ">Q", 0)]))
add("refcount-table-unaligned", lambda g: g.patched("rt-unaligned.qcow2", [(48, ">Q", 0x10200)]))
add("refcount-table-past-eof", lambda g: g.patched("rt-past-eof.qcow2", [(48, ">Q", 1 << 44)]))
add("refcount-table-clusters-huge", lambda g: g.patched("rt-huge.qcow2", [(56, ">I", 0xFFFFFFFF)]))
add("refcount-table-clusters-zero", lambda g: g.patched("rt-zero.qcow2", [(56, ">I", 0)]))
for _ro in (7, 8, 255):
    add(f"refcount-order-{_ro}", lambda g, ro=_ro: g.patched(f"ro{ro}.qcow2", [(96, ">I", ro)]))
add("header-length-past-cluster", lambda g: g.patched("hl-past.qcow2", [(100, ">I", 65536 + 8)]))
add("header-length-huge", lambda g: g.patched("hl-huge.qcow2", [(100, ">I", 0xFFFFFFF8)]))
for _hl in (0, 72, 96, 103):
    add(f"header-length-{_hl}", lambda g, hl=_hl: g.patched(f"hl{hl}.qcow2", [(100, ">I", hl)]))
add("header-length-unaligned", lambda g: g.patched("hl-unaligned.qcow2", [(100, ">I", 105)]))
add("nb-snapshots-huge", lambda g: g.patched("nbsn-huge.qcow2", [(60, ">I", 0xFFFFFFFF), (64, ">Q", 0x50000)]))
add("nb-snapshots-65537", lambda g: g.patched("nbsn-65537.qcow2", [(60, ">I", 65537), (64, ">Q", 0x50000)]))
add("snapshot-table-past-eof", lambda g: g.patched("sn-past-eof.qcow2", [(60, ">I", 3), (64, ">Q", 1 << 40)]))
add("snapshot-table-unaligned", lambda g: g.patched("sn-unaligned.qcow2", [(60, ">I", 1), (64, ">Q", 0x50001)]))
add("snapshot-table-garbage", lambda g: g.patched("sn-garbage.qcow2", [(60, ">I", 2), (64, ">Q", 0)]))
add("compression-type-2", lambda g: g.patched("ct2.qcow2", [(104, ">B", 2), (72, ">Q", 1 << 3)]))
add("compression-type-zstd-no-bit", lambda g: g.patched("ct-nobit.qcow2", [(104, ">B", 1)]))
add("compression-bit-zlib", lambda g: g.patched("ct-bitzlib.qcow2", [(72, ">Q", 1 << 3)]))
add("backing-size-1024", lambda g: g.patched("bfs1024.qcow2", [(8, ">Q", 0x200), (16, ">I", 1024)]))
add("backing-offset-past-cluster", lambda g: g.patched("bfo-past.qcow2", [(8, ">Q", 65530), (16, ">I", 16)]))
add("backing-offset-past-eof", lambda g: g.patched("bfo-eof.qcow2", [(8, ">Q", 1 << 40), (16, ">I", 16)]))
add("autoclear-unknown", lambda g: g.patched("autoclear.qcow2", [(88, ">Q", 0xFFFF000000000000)]))
add("compatible-unknown", lambda g: g.patched("compatible.qcow2", [(80, ">Q", 0xFFFF000000000000)]))
add("v2-with-incompat-bits", lambda g: g.patched("v2-incompat.qcow2", [(72, ">Q", 0xFFFFFFFF)], kind="v2"))

# ---- unknown incompatible feature bits ---------------------------------------
for _bits in (1 << 5, 1 << 63, (1 << 40) | (1 << 7)):
    add(f"incompat-unknown-{_bits:x}", lambda g, b=_bits: g.patched(f"incompat-{b:x}.qcow2", [(72, ">Q", b)]))


def _incompat_named(g: Gen, name: str, bits: int, entries) -> str:
    data = g.template("v3")
    exts = []
    for magic, payload in extensions(data):
        if magic == EXT_FEATURE_TABLE:
            payload = payload + b"".join(entries)
        exts.append((magic, payload))
    b = bytearray(with_extensions(data, exts))
    struct.pack_into(">Q", b, 72, bits)
    return g.write(name, bytes(b))


add("incompat-named-bit5", lambda g: _incompat_named(
    g, "incompat-named5.qcow2", 1 << 5, [feature_entry(0, 5, "Frobnication")]))
add("incompat-named-two-bits", lambda g: _incompat_named(
    g, "incompat-named2.qcow2", (1 << 5) | (1 << 9),
    [feature_entry(0, 5, "Frobnication"), feature_entry(1, 9, "compatible-not-incompatible")]))
add("incompat-named-46-chars", lambda g: _incompat_named(
    g, "incompat-named46.qcow2", 1 << 33, [feature_entry(0, 33, "N" * 46)]))
def _incompat_no_table(g: Gen) -> str:
    b = bytearray(with_extensions(g.template("v3"), []))
    struct.pack_into(">Q", b, 72, 1 << 6)
    return g.write("incompat-notable.qcow2", bytes(b))


def _bad_ext(g: Gen, name: str, exts) -> str:
    return g.write(name, with_extensions(g.template("v3"), exts))


def _ext_length_past_cluster(g: Gen) -> str:
    b = bytearray(g.template("v3"))
    off = struct.unpack_from(">I", b, 100)[0]
    struct.pack_into(">II", b, off, 0x11111111, 0x7FFFFFF0)
    return g.write("ext-len.qcow2", bytes(b))


add("incompat-named-no-table", _incompat_no_table)
add("ext-length-past-cluster", _ext_length_past_cluster)
add("ext-backing-fmt-without-backing", lambda g: _bad_ext(g, "ext-bf.qcow2", [(EXT_BACKING_FMT, b"qcow2")]))
add("ext-feature-table-odd-length", lambda g: _bad_ext(g, "ext-ft-odd.qcow2", [(EXT_FEATURE_TABLE, b"\0" * 47)]))


# ---- backing files -------------------------------------------------------------
def _loop2(g: Gen) -> str:
    g.overlay("loop-a.qcow2", "loop-b.qcow2")
    g.overlay("loop-b.qcow2", "loop-a.qcow2")
    return "loop-a.qcow2"


def _loop3_abs(g: Gen) -> str:
    g.overlay("loop3-a.qcow2", "loop3-b.qcow2")
    g.overlay("loop3-b.qcow2", str(g.root / "loop3-c.qcow2"))
    g.overlay("loop3-c.qcow2", "./loop3-a.qcow2")
    return "loop3-a.qcow2"


def _chain(g: Gen, n: int) -> str:
    """A chain of n qcow2 images (top + n-1 backings); returns the top."""
    g.qimg("create", "-q", "-f", "qcow2", f"chain{n}-0.qcow2", "1M")
    for i in range(1, n):
        g.qimg("create", "-q", "-f", "qcow2", "-b", f"chain{n}-{i - 1}.qcow2", "-F", "qcow2", f"chain{n}-{i}.qcow2")
    return f"chain{n}-{n - 1}.qcow2"


def _symlink_loop(g: Gen) -> str:
    link = g.root / "loop-link.qcow2"
    if not link.is_symlink():
        link.symlink_to("loop-sym.qcow2")
    return g.overlay("loop-sym.qcow2", "loop-link.qcow2")


def _fifo_backing(g: Gen) -> str:
    p = g.root / "a-fifo"
    if not p.exists():
        os.mkfifo(p)
    return g.overlay("fifo-backing.qcow2", "a-fifo", fmt="raw")


def _dir_backing(g: Gen) -> str:
    (g.root / "a-dir").mkdir(exist_ok=True)
    return g.overlay("dir-backing.qcow2", "a-dir", fmt="raw")


def _make_base(g: Gen) -> str:
    if not (g.root / "good-base.qcow2").exists():
        g.qimg("create", "-q", "-f", "qcow2", "good-base.qcow2", "64M")
    return "good-base.qcow2"


def _allowed_backing(g: Gen) -> str:
    _make_base(g)
    return g.overlay("allowed.qcow2", str(g.root / "good-base.qcow2"))


def _escape_backing(g: Gen) -> str:
    _make_base(g)
    (g.root / "jail").mkdir(exist_ok=True)
    return g.overlay("jail/escape.qcow2", "../good-base.qcow2")


JSON_NAME = 'json:{"driver":"qcow2","file":{"driver":"file","filename":"good-base.qcow2"}}'

for _args in ((), ("--backing-chain",)):
    _bc = bool(_args)
    _sfx = "-chain" if _bc else ""
    # Plain `info` never opens backing files (qemu opens with BDRV_O_NO_BACKING),
    # so the safety policy does not apply and the outputs must match; with
    # --backing-chain the backing file is opened and instar refuses.
    _pol = POLICY if _bc else PARITY
    _pol_or = POLICY_OR_ORACLE if _bc else PARITY
    add(f"loop-self{_sfx}", lambda g: g.overlay("loop-self.qcow2", "loop-self.qcow2"), _pol_or, _args,
        names=("loop-self.qcow2",))
    add(f"loop-a-b-a{_sfx}", _loop2, _pol_or, _args, names=("loop-",))
    add(f"loop-3-mixed-spelling{_sfx}", _loop3_abs, _pol, _args, names=("loop3-",))
    # a -> symlink to a: same file under another name (qemu compares names only)
    add(f"loop-via-symlink{_sfx}", _symlink_loop, _pol, _args, names=("loop-",))
    add(f"backing-json{_sfx}", lambda g: (_make_base(g), g.overlay("json-backing.qcow2", JSON_NAME))[1],
        _pol, _args, names=("json:",))
    add(f"backing-nbd{_sfx}", lambda g: g.overlay("nbd-backing.qcow2", "nbd://127.0.0.1:1/export", fmt="raw"),
        _pol, _args, names=("nbd://127.0.0.1:1/export",))
    add(f"backing-nbd-unix{_sfx}", lambda g: g.overlay("nbd-unix.qcow2", "nbd+unix:///x?socket=/nonexistent.sock",
                                                       fmt="raw"), _pol, _args, names=("nbd+unix",))
    add(f"backing-http{_sfx}", lambda g: g.overlay("http-backing.qcow2", "http://127.0.0.1:1/x.img", fmt="raw"),
        _pol, _args, names=("http://127.0.0.1:1/x.img",))
    add(f"backing-file-protocol{_sfx}", lambda g: (_make_base(g), g.overlay("fileproto.qcow2", "file:good-base.qcow2"))[1],
        PARITY, _args, names=("file:good-base.qcow2",))
    add(f"backing-directory{_sfx}", _dir_backing, _pol_or, _args, names=("a-dir",))
    add(f"backing-fifo{_sfx}", _fifo_backing, _pol, _args, names=("a-fifo",))
    add(f"backing-dev-null{_sfx}", lambda g: g.overlay("devnull.qcow2", "/dev/null", fmt="raw"), _pol, _args,
        names=("/dev/null",))
    add(f"backing-dev-zero{_sfx}", lambda g: g.overlay("devzero.qcow2", "/dev/zero", fmt="raw"), _pol, _args,
        names=("/dev/zero",))
    # Allowlist: INSTAR_BACKING_ALLOW holds the image dir only.
    add(f"allow-excludes-etc-passwd{_sfx}", lambda g: g.overlay("passwd.qcow2", "/etc/passwd", fmt="raw"), _pol,
        _args, env={"INSTAR_BACKING_ALLOW": "{root}"}, names=("/etc/passwd",))
    add(f"allow-excludes-relative-escape{_sfx}", _escape_backing, _pol, _args,
        env={"INSTAR_BACKING_ALLOW": "{root}/jail"}, names=("good-base.qcow2",))
    add(f"allow-prefix-not-dir-boundary{_sfx}", _allowed_backing, _pol, _args,
        env={"INSTAR_BACKING_ALLOW": "{root}/good"}, names=("good-base.qcow2",))
    add(f"allow-empty-allows-nothing{_sfx}", _allowed_backing, _pol, _args,
        env={"INSTAR_BACKING_ALLOW": ""}, names=("good-base.qcow2",))
    add(f"chain-17-deep{_sfx}", lambda g: _chain(g, 17), _pol, _args, names=())
    add(f"chain-18-deep{_sfx}", lambda g: _chain(g, 18), _pol, _args, names=())

# Positive controls: these must behave exactly like qemu-img.
add("allow-includes-backing", _allowed_backing, PARITY, ("--backing-chain",),
    env={"INSTAR_BACKING_ALLOW": "/nonexistent-dir:{root}"})
add("allow-includes-backing-json", _allowed_backing, PARITY, ("--backing-chain", "--output=json"),
    env={"INSTAR_BACKING_ALLOW": "{root}"})
add("allow-unset-abs-backing", _allowed_backing, PARITY, ("--backing-chain",))
add("chain-16-deep", lambda g: _chain(g, 16), PARITY, ("--backing-chain",))
add("chain-16-deep-json", lambda g: _chain(g, 16), PARITY, ("--backing-chain", "--output=json"))
add("backing-missing-chain", lambda g: g.overlay("missing-b.qcow2", "does-not-exist.qcow2"), PARITY,
    ("--backing-chain",))
add("backing-etc-passwd-no-allowlist-plain", lambda g: g.overlay("passwd2.qcow2", "/etc/passwd", fmt="raw"),
    PARITY, ())
