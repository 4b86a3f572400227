#!/usr/bin/python3
"""Deterministic generator of corrupt qcow2 images for `check` (and later `check -r`).

Every image starts as a file made by the oracle's own tools (qemu-img create,
qemu-io writes with patterns, qemu-img snapshot -c, compressed writes) and is
then patched with ``struct``.  Every patched offset is READ from the image
itself: header fields, the L1 table, L2 tables (standard or extended), the
refcount table and refcount blocks at any width 1..64 (widths below 8 bits
are packed LSB-first inside each byte, as QEMU does), the snapshot table.
Nothing is hard-coded but the qcow2 header layout (docs/interop/qcow2.txt).

Use as a module::

    from corrupt_check import CASES, WIDTHS, instances, build
    for inst in instances():            # (case, width) pairs, skips excluded
        path = build(inst, outdir, cache)

or as a CLI: ``python3 tests/corrupt_check.py OUTDIR`` writes every instance
as ``OUTDIR/<case>-rb<width>.qcow2`` and prints one line per image (and one
per skipped combination, with its reason).

A Case carries a name, a short description, the base image it patches, the
patch function, and what the ORACLE is expected to say about it (exit code and
substrings of its output) -- that expectation is only used by the generator's
own tests (tests/integration/test_corrupt_check_gen.py) to show that each
image really holds the corruption it claims; parity tests compare instar with
the oracle run on the same image and never use it.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from instar_testlib import qemu_img, qemu_io  # noqa: E402

#: Refcount widths every case is generated for (where expressible).
WIDTHS = (1, 2, 4, 16, 64)

# ---- qcow2 constants (docs/interop/qcow2.txt) ------------------------------
COPIED = 1 << 63
COMPRESSED = 1 << 62
ZERO = 1 << 0
OFFSET_MASK = 0x00FFFFFFFFFFFE00
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_EXTL2 = 1 << 4

MiB = 1 << 20
IMAGE_SIZE = "4M"
CLUSTER = 65536

#: Data written into every base image: (pattern, guest offset, length).
#: Guest offsets are multiples of the cluster size so each write owns clusters.
DATA = ((0xAB, 0, 64 * 1024), (0xCD, 1 * MiB, 128 * 1024), (0x11, 3 * MiB, 64 * 1024))


# ---------------------------------------------------------------------------
# A small read/patch view of one qcow2 image held in memory
# ---------------------------------------------------------------------------
class Qcow2:
    """An in-memory qcow2 image whose metadata is decoded from its own bytes."""

    def __init__(self, data: bytes):
        self.b = bytearray(data)
        (magic, self.version) = struct.unpack_from(">4sI", self.b, 0)
        if magic != b"QFI\xfb":
            raise ValueError("not a qcow2 image")
        self.cluster_bits = self.u32(20)
        self.cluster_size = 1 << self.cluster_bits
        self.l1_size = self.u32(36)
        self.l1_offset = self.u64(40)
        self.rt_offset = self.u64(48)
        self.rt_clusters = self.u32(56)
        self.nb_snapshots = self.u32(60)
        self.snapshots_offset = self.u64(64)
        if self.version >= 3:
            self.incompat = self.u64(72)
            self.refcount_order = self.u32(96)
        else:
            self.incompat = 0
            self.refcount_order = 4
        self.refcount_bits = 1 << self.refcount_order
        self.extended_l2 = bool(self.incompat & INCOMPAT_EXTL2)
        self.l2_entry_size = 16 if self.extended_l2 else 8
        self.l2_entries = self.cluster_size // self.l2_entry_size
        self.refblock_entries = self.cluster_size * 8 // self.refcount_bits

    # ---- raw fields --------------------------------------------------------
    def u32(self, off: int) -> int:
        return struct.unpack_from(">I", self.b, off)[0]

    def u64(self, off: int) -> int:
        return struct.unpack_from(">Q", self.b, off)[0]

    def put32(self, off: int, v: int) -> None:
        struct.pack_into(">I", self.b, off, v)

    def put64(self, off: int, v: int) -> None:
        struct.pack_into(">Q", self.b, off, v)

    @property
    def file_clusters(self) -> int:
        return (len(self.b) + self.cluster_size - 1) // self.cluster_size

    def past_eof(self, extra_clusters: int = 16) -> int:
        """A cluster-aligned host offset well past the end of the file."""
        return (self.file_clusters + extra_clusters) * self.cluster_size

    # ---- header ------------------------------------------------------------
    def set_incompat(self, bits: int) -> None:
        self.put64(72, self.u64(72) | bits)

    # ---- L1 / L2 -----------------------------------------------------------
    def l1_entry_off(self, index: int, l1_offset: int | None = None) -> int:
        base = self.l1_offset if l1_offset is None else l1_offset
        return base + 8 * index

    def l1(self, index: int = 0, l1_offset: int | None = None) -> int:
        return self.u64(self.l1_entry_off(index, l1_offset))

    def l2_table(self, l1_index: int = 0, l1_offset: int | None = None) -> int:
        off = self.l1(l1_index, l1_offset) & OFFSET_MASK
        if not off:
            raise ValueError(f"L1 entry {l1_index} is unallocated")
        return off

    def l2_slot(self, guest_offset: int, l1_offset: int | None = None) -> int:
        """File offset of the L2 entry mapping ``guest_offset``."""
        cl = guest_offset >> self.cluster_bits
        table = self.l2_table(cl // self.l2_entries, l1_offset)
        return table + (cl % self.l2_entries) * self.l2_entry_size

    def l2(self, guest_offset: int, l1_offset: int | None = None) -> int:
        return self.u64(self.l2_slot(guest_offset, l1_offset))

    def set_l2(self, guest_offset: int, value: int, l1_offset: int | None = None) -> None:
        self.put64(self.l2_slot(guest_offset, l1_offset), value)

    def l2_bitmap(self, guest_offset: int) -> int:
        assert self.extended_l2
        return self.u64(self.l2_slot(guest_offset) + 8)

    def set_l2_bitmap(self, guest_offset: int, value: int) -> None:
        assert self.extended_l2
        self.put64(self.l2_slot(guest_offset) + 8, value)

    def data_cluster(self, guest_offset: int) -> int:
        """Host offset of the normal (uncompressed) cluster mapping ``guest_offset``."""
        e = self.l2(guest_offset)
        if e & COMPRESSED or not (e & OFFSET_MASK):
            raise ValueError(f"guest offset {guest_offset:#x} is not a normal allocated cluster: {e:#x}")
        return e & OFFSET_MASK

    # ---- compressed descriptors -------------------------------------------
    @property
    def compressed_offset_bits(self) -> int:
        return 62 - (self.cluster_bits - 8)

    # ---- refcounts ---------------------------------------------------------
    def rt_slot(self, index: int) -> int:
        if index >= self.rt_clusters * self.cluster_size // 8:
            raise ValueError("refcount table index out of range")
        return self.rt_offset + 8 * index

    def rt(self, index: int) -> int:
        return self.u64(self.rt_slot(index))

    def set_rt(self, index: int, value: int) -> None:
        self.put64(self.rt_slot(index), value)

    def _refcount_loc(self, host_offset: int) -> tuple[int, int]:
        cl = host_offset >> self.cluster_bits
        block = self.rt(cl // self.refblock_entries) & OFFSET_MASK
        if not block:
            raise ValueError(f"no refcount block for cluster {cl}")
        return block, cl % self.refblock_entries

    def refcount(self, host_offset: int) -> int:
        block, idx = self._refcount_loc(host_offset)
        w = self.refcount_bits
        if w < 8:
            per = 8 // w
            byte = self.b[block + idx // per]
            return (byte >> (w * (idx % per))) & ((1 << w) - 1)
        n = w // 8
        return int.from_bytes(self.b[block + idx * n : block + (idx + 1) * n], "big")

    def set_refcount(self, host_offset: int, value: int) -> None:
        block, idx = self._refcount_loc(host_offset)
        w = self.refcount_bits
        if value >= 1 << w:
            raise ValueError(f"refcount {value} does not fit in {w} bits")
        if w < 8:
            per = 8 // w
            shift = w * (idx % per)
            mask = ((1 << w) - 1) << shift
            pos = block + idx // per
            self.b[pos] = (self.b[pos] & ~mask & 0xFF) | (value << shift)
        else:
            n = w // 8
            self.b[block + idx * n : block + (idx + 1) * n] = value.to_bytes(n, "big")

    # ---- snapshot table ----------------------------------------------------
    def snapshot_entries(self) -> list[int]:
        """File offsets of each snapshot table entry."""
        out, off = [], self.snapshots_offset
        for _ in range(self.nb_snapshots):
            out.append(off)
            id_len, name_len = struct.unpack_from(">HH", self.b, off + 12)
            extra = self.u32(off + 36)
            size = 40 + extra + id_len + name_len
            off += (size + 7) & ~7
        return out

    def snapshot_l1(self, n: int = 0) -> tuple[int, int]:
        e = self.snapshot_entries()[n]
        return self.u64(e), self.u32(e + 8)


# ---------------------------------------------------------------------------
# Base images (made by the oracle, cached per width)
# ---------------------------------------------------------------------------
def _writes(data=DATA, compressed=False) -> list[str]:
    cmds = []
    for pat, off, ln in data:
        cmds += ["-c", f"write {'-c ' if compressed else ''}-P {pat:#x} {off} {ln}"]
    return cmds


def _base_data(d: Path, name: str, w: int, opts: str = "") -> None:
    o = f"refcount_bits={w},cluster_size={CLUSTER}" + (f",{opts}" if opts else "")
    qemu_img("create", "-q", "-f", "qcow2", "-o", o, name, IMAGE_SIZE, cwd=d)
    qemu_io("-f", "qcow2", *_writes(), name, cwd=d)


def _base_snap0(d, name, w):
    """Data, then one internal snapshot: every cluster has refcount 2."""
    _base_data(d, name, w)
    qemu_img("snapshot", "-c", "snap1", name, cwd=d)
    _fix_snapshot_dates(d / name)


def _fix_snapshot_dates(path: Path) -> None:
    """Replace qemu-img's clock-derived snapshot dates by a fixed one (determinism)."""
    q = Qcow2(path.read_bytes())
    for e in q.snapshot_entries():
        q.put32(e + 16, 1700000000)  # date_sec
        q.put32(e + 20, 0)  # date_nsec
    path.write_bytes(bytes(q.b))


def _base_snap(d, name, w):
    """Data, snapshot, then a rewrite of guest cluster 0 (COW: active L2 copied)."""
    _base_snap0(d, name, w)
    qemu_io("-f", "qcow2", "-c", "write -P 0x77 0 64k", name, cwd=d)


def _base_lazy(d, name, w):
    _base_data(d, name, w, "lazy_refcounts=on")


def _base_comp(d, name, w):
    o = f"refcount_bits={w},cluster_size={CLUSTER}"
    qemu_img("create", "-q", "-f", "qcow2", "-o", o, name, IMAGE_SIZE, cwd=d)
    qemu_io("-f", "qcow2", *_writes(((0x42, 0, 65536), (0x43, 2 * MiB, 65536)), compressed=True),
            "-c", f"write -P 0x44 {3 * MiB} 64k", name, cwd=d)


def _base_extl2(d, name, w):
    o = f"refcount_bits={w},cluster_size={CLUSTER},extended_l2=on"
    qemu_img("create", "-q", "-f", "qcow2", "-o", o, name, IMAGE_SIZE, cwd=d)
    # full clusters, one partially written cluster (subclusters) and a zeroed one
    qemu_io("-f", "qcow2", *_writes(), "-c", f"write -P 0x5a {2 * MiB} 4k",
            "-c", f"write -z {2 * MiB + 65536} 64k", "-c", f"write -c -P 0x66 {3 * MiB + 65536} 64k",
            name, cwd=d)


def _base_v2(d, name, w):
    """compat=0.10 (version 2): qemu-img refuses any refcount width but 16."""
    o = f"compat=0.10,refcount_bits={w},cluster_size={CLUSTER}"
    qemu_img("create", "-q", "-f", "qcow2", "-o", o, name, IMAGE_SIZE, cwd=d)
    qemu_io("-f", "qcow2", *_writes(), name, cwd=d)


def _base_v2snap(d, name, w):
    _base_v2(d, name, w)
    qemu_img("snapshot", "-c", "old", name, cwd=d)
    _fix_snapshot_dates(d / name)


BASES: dict[str, Callable[[Path, str, int], None]] = {
    "v2": _base_v2,
    "v2snap": _base_v2snap,
    "data": _base_data,
    "snap0": _base_snap0,
    "snap": _base_snap,
    "lazy": _base_lazy,
    "comp": _base_comp,
    "extl2": _base_extl2,
}

#: Reasons a base cannot exist at a given width.
_V2_SKIP = "version 2 images only have 16-bit refcounts"
BASE_SKIPS = {
    "v2": {w: _V2_SKIP for w in WIDTHS if w != 16},
    "v2snap": {w: _V2_SKIP for w in WIDTHS if w != 16},
    "snap0": {1: "an internal snapshot needs refcount 2, which 1-bit refcounts cannot hold"},
    "snap": {1: "an internal snapshot needs refcount 2, which 1-bit refcounts cannot hold"},
}


class BaseCache:
    """Pristine base images, built once per (base, width) in ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._done: dict[tuple[str, int], bytes] = {}

    def get(self, base: str, w: int) -> bytes:
        key = (base, w)
        if key not in self._done:
            name = f"_base-{base}-rb{w}.qcow2"
            p = self.root / name
            p.unlink(missing_ok=True)
            BASES[base](self.root, name, w)
            self._done[key] = p.read_bytes()
        return self._done[key]


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    description: str
    base: str
    patch: Callable[[Qcow2], None]
    #: oracle's `qemu-img check` exit code on this image
    expect_rc: int
    #: substrings that must appear in the oracle's stderr+stdout; a callable
    #: item is given the PRISTINE base image (a Qcow2) and returns the substring
    expect: tuple = ()
    #: width -> reason this combination cannot be expressed
    skip: dict = field(default_factory=dict)
    widths: tuple = WIDTHS

    def skip_reason(self, w: int) -> str | None:
        return self.skip.get(w) or BASE_SKIPS.get(self.base, {}).get(w)

    def expected_lines(self, base: "Qcow2") -> list[str]:
        """The expected substrings, callables resolved against the pristine ``base``."""
        return [e(base) if callable(e) else e for e in self.expect]


CASES: dict[str, Case] = {}
NEEDS_2_BITS = {1: "a refcount of 2 does not fit in 1 bit"}


def case(name, description, base, expect_rc, expect=(), skip=None, widths=WIDTHS):
    def deco(fn):
        CASES[name] = Case(name, description, base, fn, expect_rc, tuple(expect), skip or {}, widths)
        return fn

    return deco


G0, G1, G3 = DATA[0][1], DATA[1][1], DATA[2][1]  # guest offsets of the three writes


def _twice_referenced(q, host):
    """What qemu-img check says about a cluster with refcount 1 and two references.

    With 1-bit refcounts its in-memory count overflows at the second reference.
    """
    if q.refcount_bits == 1:
        return f"ERROR: overflow cluster offset={host:#x}"
    return f"ERROR cluster {host >> q.cluster_bits} refcount=1 reference=2"


# ---- refcounts -----------------------------------------------------------
@case("leak", "L2 entry of a data cluster cleared: cluster has refcount 1, no reference",
      "data", 3, [lambda q: f"Leaked cluster {q.data_cluster(G3) >> q.cluster_bits} refcount=1 reference=0",
                  "1 leaked clusters were found"])
def _leak(q):
    q.set_l2(G3, 0)


@case("refcount-too-low", "cluster shared with a snapshot (2 references) has refcount 1",
      "snap", 2, [lambda q: f"ERROR cluster {q.data_cluster(G1) >> q.cluster_bits} refcount=1 reference=2"])
def _rc_low(q):
    q.set_refcount(q.data_cluster(G1), 1)


@case("refcount-too-high", "data cluster with one reference has refcount 2",
      "data", 2, [lambda q: f"Leaked cluster {q.data_cluster(G1) >> q.cluster_bits} refcount=2 reference=1",
                  "ERROR OFLAG_COPIED data cluster"],
      skip=NEEDS_2_BITS)
def _rc_high(q):
    q.set_refcount(q.data_cluster(G1), 2)


@case("refcount-zero-data", "used data cluster has refcount 0",
      "data", 2, [lambda q: f"ERROR cluster {q.data_cluster(G1) >> q.cluster_bits} refcount=0 reference=1"])
def _rc_zero(q):
    q.set_refcount(q.data_cluster(G1), 0)


@case("refcount-zero-l2", "active L2 table has refcount 0",
      "data", 2, [lambda q: f"ERROR cluster {q.l2_table(0) >> q.cluster_bits} refcount=0 reference=1",
                  "OFLAG_COPIED L2 cluster"])
def _rc_zero_l2(q):
    q.set_refcount(q.l2_table(0), 0)


@case("refcount-zero-l1", "active L1 table has refcount 0",
      "data", 2, [lambda q: f"ERROR cluster {q.l1_offset >> q.cluster_bits} refcount=0 reference=1"])
def _rc_zero_l1(q):
    q.set_refcount(q.l1_offset, 0)


@case("refcount-zero-reftable", "refcount table cluster has refcount 0",
      "data", 2, [lambda q: f"ERROR cluster {q.rt_offset >> q.cluster_bits} refcount=0 reference=1"])
def _rc_zero_rt(q):
    q.set_refcount(q.rt_offset, 0)


@case("refcount-zero-refblock", "refcount block has refcount 0 (it describes itself)",
      "data", 2, [lambda q: f"ERROR cluster {(q.rt(0) & OFFSET_MASK) >> q.cluster_bits} refcount=0 reference=1"])
def _rc_zero_rb(q):
    q.set_refcount(q.rt(0) & OFFSET_MASK, 0)


@case("refcount-zero-header", "header cluster has refcount 0",
      "data", 2, ["ERROR cluster 0 refcount=0 reference=1"])
def _rc_zero_hdr(q):
    q.set_refcount(0, 0)


@case("shared-cluster", "two L2 entries point at the same host cluster (other one leaked)",
      "data", 2, [lambda q: _twice_referenced(q, q.data_cluster(G0)),
                  lambda q: f"Leaked cluster {q.data_cluster(G3) >> q.cluster_bits} refcount=1 reference=0"])
def _shared(q):
    q.set_l2(G3, q.l2(G0))


# ---- L1 / L2 structure ---------------------------------------------------
@case("l1-past-eof", "L1 entry points at an L2 table past the end of the file",
      "data", 2, ["exceeding the end of the file"])
def _l1_eof(q):
    q.put64(q.l1_entry_off(0), q.past_eof() | COPIED)


@case("l1-unaligned", "L1 entry holds an L2 table offset that is not cluster aligned",
      "data", 2, ["Table is not cluster aligned; L1 entry corrupted"])
def _l1_unal(q):
    q.put64(q.l1_entry_off(0), q.l1(0) + 512)


@case("l1-reserved-bits", "L1 entry with reserved bits set",
      "data", 2, ["found L1 entry with reserved bits set"])
def _l1_res(q):
    q.put64(q.l1_entry_off(0), q.l1(0) | (1 << 56))


@case("l2-past-eof", "L2 entry points at a data cluster past the end of the file",
      "data", 2, ["exceeding the end of the file", "ERROR OFLAG_COPIED data cluster"])
def _l2_eof(q):
    q.set_l2(G3, q.past_eof() | COPIED)


@case("l2-data-unaligned", "L2 entry holds a data cluster offset that is not cluster aligned",
      "data", 2, ["Data cluster is not properly aligned; L2 entry corrupted"])
def _l2_unal(q):
    q.set_l2(G3, q.l2(G3) + 512)


@case("l2-zero-unaligned", "zero-flagged preallocated L2 entry with an unaligned offset",
      "data", 2, ["Preallocated cluster is not properly aligned; L2 entry corrupted"])
def _l2_zunal(q):
    q.set_l2(G3, (q.l2(G3) + 512) | ZERO)


@case("l2-reserved-bits", "L2 entry with reserved bits set",
      "data", 2, ["found l2 entry with reserved bits set"])
def _l2_res(q):
    q.set_l2(G1, q.l2(G1) | (1 << 56))


# ---- refcount table / blocks ---------------------------------------------
@case("reftable-past-eof", "unused refcount table slot points past the end of the file",
      "data", 2, ["refcount block 1 is outside image"])
def _rt_eof(q):
    q.set_rt(1, q.past_eof())


@case("reftable-unaligned", "unused refcount table slot holds an unaligned refcount block offset",
      "data", 2, ["refcount block 1 is not cluster aligned; refcount table entry corrupted"])
def _rt_unal(q):
    q.set_rt(1, q.data_cluster(G1) + 512)


@case("reftable-reserved-bits", "refcount table entry with reserved bits set",
      "data", 2, ["refcount table entry 1 has reserved bits set"])
def _rt_res(q):
    q.set_rt(1, q.data_cluster(G1) | 0x100)


@case("reftable0-zero", "the refcount table entry covering every used cluster is 0",
      "data", 2, ["refcount=0 reference=1"])
def _rt0_zero(q):
    q.set_rt(0, 0)


@case("reftable0-past-eof", "the refcount block covering every used cluster lies past the end of the file",
      "data", 2, ["ERROR refcount block 0 is outside image", "ERROR cluster 0 refcount=0 reference=1"])
def _rt0_eof(q):
    q.set_rt(0, q.past_eof())


@case("reftable0-unaligned", "the refcount block covering every used cluster has an unaligned offset",
      "data", 1, ["ERROR refcount block 0 is not cluster aligned; refcount table entry corrupted",
                  "Can't get refcount for cluster 0: Input/output error", "internal errors have occurred"])
def _rt0_unal(q):
    q.set_rt(0, q.rt(0) + 512)


@case("refblock-overlaps-l2", "a refcount table slot points at the active L2 table",
      "data", 2, [lambda q: _twice_referenced(q, q.l2_table(0))])
def _rb_l2(q):
    q.set_rt(1, q.l2_table(0))


# ---- OFLAG_COPIED ----------------------------------------------------------
@case("copied-cleared-data", "OFLAG_COPIED cleared on a data cluster whose refcount is 1",
      "data", 2, ["ERROR OFLAG_COPIED data cluster", "refcount=1"])
def _cp_clr_data(q):
    q.set_l2(G1, q.l2(G1) & ~COPIED)


@case("copied-cleared-l2", "OFLAG_COPIED cleared on the L1 entry of an L2 table whose refcount is 1",
      "data", 2, ["ERROR OFLAG_COPIED L2 cluster", "refcount=1"])
def _cp_clr_l2(q):
    q.put64(q.l1_entry_off(0), q.l1(0) & ~COPIED)


@case("copied-set-data", "OFLAG_COPIED set on a data cluster shared with a snapshot (refcount 2)",
      "snap", 2, ["ERROR OFLAG_COPIED data cluster", "refcount=2"])
def _cp_set_data(q):
    q.set_l2(G1, q.l2(G1) | COPIED)


@case("copied-set-l2", "OFLAG_COPIED set on an L1 entry whose L2 table is shared with a snapshot",
      "snap0", 2, ["ERROR OFLAG_COPIED L2 cluster", "refcount=2"])
def _cp_set_l2(q):
    q.put64(q.l1_entry_off(0), q.l1(0) | COPIED)


# ---- version 2 images (16-bit refcounts only) -----------------------------------
V2_ONLY = (16,)


@case("v2-leak", "compat=0.10 image: L2 entry of a data cluster cleared (leak)",
      "v2", 3, [lambda q: f"Leaked cluster {q.data_cluster(G3) >> q.cluster_bits} refcount=1 reference=0"],
      widths=V2_ONLY)
def _v2_leak(q):
    q.set_l2(G3, 0)


@case("v2-copied-cleared", "compat=0.10 image: OFLAG_COPIED cleared on a data cluster",
      "v2", 2, ["ERROR OFLAG_COPIED data cluster"], widths=V2_ONLY)
def _v2_copied(q):
    q.set_l2(G1, q.l2(G1) & ~COPIED)


@case("v2-snap-refcount-zero", "compat=0.10 image with a snapshot: shared cluster has refcount 0",
      "v2snap", 2, [lambda q: f"ERROR cluster {q.data_cluster(G1) >> q.cluster_bits} refcount=0 reference=2"],
      widths=V2_ONLY)
def _v2_snap_rc0(q):
    q.set_refcount(q.data_cluster(G1), 0)


# ---- header bits -----------------------------------------------------------
@case("corrupt-bit", "incompatible 'corrupt' bit set on a consistent image",
      "data", 0, ["No errors were found on the image."])
def _corrupt(q):
    q.set_incompat(INCOMPAT_CORRUPT)


@case("dirty-lazy", "dirty bit set on a consistent lazy-refcounts image",
      "lazy", 0, ["No errors were found on the image."])
def _dirty(q):
    q.set_incompat(INCOMPAT_DIRTY)


@case("dirty-lazy-leak", "dirty bit set on a lazy-refcounts image with a leaked cluster",
      "lazy", 3, ["Leaked cluster"])
def _dirty_leak(q):
    q.set_incompat(INCOMPAT_DIRTY)
    q.set_l2(G3, 0)


# ---- snapshots ---------------------------------------------------------------
@case("snap-l1-unaligned", "snapshot table entry holds an unaligned L1 table offset",
      "snap", 2, ["L1 table is not cluster aligned; snapshot table entry corrupted"])
def _sn_unal(q):
    e = q.snapshot_entries()[0]
    q.put64(e, q.u64(e) + 512)


@case("snap-l1-too-large", "snapshot table entry claims an L1 table larger than qemu's maximum",
      "snap", 2, ["L1 table is too large; snapshot table entry corrupted"])
def _sn_big(q):
    e = q.snapshot_entries()[0]
    q.put32(e + 8, 0x4000000)


@case("snap-l1-garbage", "snapshot L1 table offset points at a guest data cluster (pattern bytes)",
      "snap", 2, ["found L1 entry with reserved bits set"])
def _sn_garbage(q):
    e = q.snapshot_entries()[0]
    q.put64(e, q.data_cluster(G3))


@case("snap-l1-entry-past-eof", "snapshot L1 entry points at an L2 table past the end of the file",
      "snap", 2, ["exceeding the end of the file"])
def _sn_eof(q):
    l1, _ = q.snapshot_l1(0)
    q.put64(q.l1_entry_off(0, l1), q.past_eof())


@case("snap-table-past-eof", "snapshot table offset points past the end of the file",
      "snap", 2, ["ERROR snapshot table entry 0 is incomplete"])
def _sn_tab_eof(q):
    q.put64(64, q.past_eof())


@case("snap-count-too-large", "header claims more snapshots than qemu allows (65536)",
      "snap", 1, ["ERROR snapshot table too large", "Check failed"])
def _sn_count(q):
    q.put32(60, 65537)


def _set_snapshot_extra(q, size: int, fill: int = 0xAB) -> None:
    """Rewrite the (only) snapshot table entry in place with ``size`` bytes of extra data.

    Known extra data is kept as far as it reaches; bytes past the old extra
    data are ``fill``.  The table stays inside its cluster.
    """
    (e,) = q.snapshot_entries()
    id_len, name_len = struct.unpack_from(">HH", q.b, e + 12)
    old = q.u32(e + 36)
    extra = bytes(q.b[e + 40 : e + 40 + min(old, size)]) + bytes([fill]) * max(0, size - old)
    strings = bytes(q.b[e + 40 + old : e + 40 + old + id_len + name_len])
    assert (e % q.cluster_size) + 40 + size + len(strings) <= q.cluster_size
    q.put32(e + 36, size)
    q.b[e + 40 : e + 40 + size + len(strings)] = extra + strings


@case("snap-extra-too-large", "snapshot table entry with 1100 bytes of extra data (qemu allows 1024)",
      "snap", 1, ["Too much extra metadata in snapshot table entry 0", "Check failed"], widths=(2, 16, 64))
def _sn_extra_big(q):
    _set_snapshot_extra(q, 1100)


@case("snap-extra-incomplete", "version 3 snapshot table entry with 8 bytes of extra data (16 needed)",
      "snap", 2, ["ERROR snapshot table entry 0 is incomplete"], widths=(2, 16, 64))
def _sn_extra_short(q):
    _set_snapshot_extra(q, 8)


@case("autoclear-unknown-leak", "unknown autoclear feature bit set, and a leaked cluster",
      "data", 3, ["Leaked cluster"], widths=(1, 16, 64))
def _ac_leak(q):
    q.put64(88, q.u64(88) | (1 << 40))
    q.set_l2(G3, 0)


@case("autoclear-unknown-snap", "unknown autoclear feature bit set on a consistent image with a snapshot",
      "snap", 0, ["No errors were found on the image."], widths=(16,))
def _ac_snap(q):
    q.put64(88, q.u64(88) | (1 << 40))


@case("dirty-refcount-zero", "dirty lazy-refcounts image whose data cluster has refcount 0",
      "lazy", 2, [lambda q: f"ERROR cluster {q.data_cluster(G1) >> q.cluster_bits} refcount=0 reference=1"],
      widths=(2, 16, 64))
def _dirty_rc0(q):
    q.set_incompat(INCOMPAT_DIRTY)
    q.set_refcount(q.data_cluster(G1), 0)


# ---- compressed clusters -------------------------------------------------------
@case("compressed-past-eof", "compressed cluster descriptor points past the end of the file",
      "comp", 2, ["exceeding the end of the file", "Leaked cluster"])
def _comp_eof(q):
    e = q.l2(G0)
    assert e & COMPRESSED
    mask = (1 << q.compressed_offset_bits) - 1
    q.set_l2(G0, (e & ~mask) | ((e & mask) + q.past_eof()))


@case("compressed-copied", "OFLAG_COPIED set on a compressed cluster descriptor",
      "comp", 2, ["copied flag must never be set for compressed clusters"])
def _comp_copied(q):
    e = q.l2(G0)
    assert e & COMPRESSED
    q.set_l2(G0, e | COPIED)


@case("compressed-refcount-zero", "host cluster holding compressed data has refcount 0",
      "comp", 2, [lambda q: f"ERROR cluster {_comp_host(q, G0) >> q.cluster_bits} refcount=0 reference="])
def _comp_rc0(q):
    q.set_refcount(_comp_host(q, G0), 0)


def _comp_host(q, guest):
    e = q.l2(guest)
    assert e & COMPRESSED
    return e & ((1 << q.compressed_offset_bits) - 1)


# ---- extended L2 ---------------------------------------------------------------
@case("extl2-alloc-and-zero", "allocated cluster whose subcluster bitmap has alloc and zero bits both set",
      "extl2", 2, ["Allocated cluster has corrupted subcluster allocation bitmap"])
def _x_both(q):
    q.set_l2_bitmap(G1, q.l2_bitmap(G1) | (1 << 32))


@case("extl2-unallocated-bitmap", "unallocated cluster with subcluster allocation bits set",
      "extl2", 2, ["Unallocated cluster has non-zero subcluster allocation map"])
def _x_unalloc(q):
    free = 2 * MiB + 2 * CLUSTER
    assert q.l2(free) == 0
    q.set_l2_bitmap(free, 0x3)


@case("extl2-compressed-bitmap", "compressed cluster with a non-zero subcluster bitmap",
      "extl2", 2, ["with non-zero subcluster allocation bitmap"])
def _x_comp(q):
    g = 3 * MiB + CLUSTER
    assert q.l2(g) & COMPRESSED
    q.set_l2_bitmap(g, 1)


@case("extl2-partial-both", "partially written cluster: the written subcluster is also marked zero",
      "extl2", 2, ["Allocated cluster has corrupted subcluster allocation bitmap"])
def _x_partial(q):
    g = 2 * MiB
    bm = q.l2_bitmap(g)
    assert bm & 0xFFFFFFFF and bm != 0xFFFFFFFF
    q.set_l2_bitmap(g, bm | ((bm & 0xFFFFFFFF) << 32))


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Instance:
    case: Case
    width: int

    @property
    def id(self) -> str:
        return f"{self.case.name}-rb{self.width}"

    @property
    def filename(self) -> str:
        return f"{self.id}.qcow2"


def instances(include_skipped: bool = False):
    """Every (case, width) combination, skipped ones only if asked."""
    for c in CASES.values():
        for w in c.widths:
            if include_skipped or c.skip_reason(w) is None:
                yield Instance(c, w)


def build(inst: Instance, outdir: Path, cache: BaseCache) -> Path:
    """Write ``inst``'s image into ``outdir`` (from cached bases); return its path."""
    reason = inst.case.skip_reason(inst.width)
    if reason:
        raise ValueError(f"{inst.id} cannot be built: {reason}")
    q = Qcow2(cache.get(inst.case.base, inst.width))
    if q.refcount_bits != inst.width:
        raise AssertionError(f"base image has refcount width {q.refcount_bits}, wanted {inst.width}")
    inst.case.patch(q)
    p = Path(outdir) / inst.filename
    p.write_bytes(bytes(q.b))
    return p


class CorruptSet:
    """Lazily built, cached corrupt images in one directory (for pytest sessions)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cache = BaseCache(self.root / "_bases")
        self._built: dict[str, str] = {}

    def path(self, inst: Instance) -> str:
        """File name (relative to root) of ``inst``'s image, built on first use."""
        if inst.id not in self._built:
            build(inst, self.root, self.cache)
            self._built[inst.id] = inst.filename
        return self._built[inst.id]


def session_set(tmp_path_factory) -> CorruptSet:
    """One CorruptSet per pytest session, shared by every module that asks.

    ``tmp_path_factory`` is pytest's session-scoped factory; the set is
    remembered on it, so the generator tests, the parity tests and the repair
    tests build each image once per session.
    """
    cs = getattr(tmp_path_factory, "_instar_corrupt_check_set", None)
    if cs is None:
        cs = CorruptSet(tmp_path_factory.mktemp("corrupt-check"))
        setattr(tmp_path_factory, "_instar_corrupt_check_set", cs)
    return cs


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1].startswith("-"):
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    cache = BaseCache(out / "_bases")
    for inst in instances(include_skipped=True):
        reason = inst.case.skip_reason(inst.width)
        if reason:
            print(f"skip  {inst.id}: {reason}")
            continue
        p = build(inst, out, cache)
        print(f"wrote {p}  ({inst.case.description})")
    shutil.rmtree(out / "_bases", ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TZ", "UTC")
    sys.exit(main(sys.argv))
