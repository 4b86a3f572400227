"""VHDX images built field by field (Microsoft's VHDX Format Specification 1.0).

Used by parity/test_vhdx_parity.py for hostile images and by
scripts/make-vhdx-seeds.sh (run as a script: `vhdx_build.py DIR` writes a
few seeds).  All fields are little-endian; CRC-32C is computed here with
the Castagnoli polynomial.
"""

from __future__ import annotations

import struct
import sys
import uuid
from pathlib import Path

MiB = 1 << 20


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _table()


def crc32c(b: bytes, crc: int = 0xFFFFFFFF) -> int:
    for x in b:
        crc = _T[(crc ^ x) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def guid(s: str) -> bytes:
    return uuid.UUID(s).bytes_le


BAT = guid("2dc27766-f623-4200-9d64-115e9bfd4a08")
META = guid("8b7ca206-4790-4b9a-b8fe-575f050f886e")
FILE_PARAMS = guid("caa16737-fa36-4d43-b3b6-33f0aa44e76b")
DISK_SIZE = guid("2fa54224-cd1b-4876-b211-5dbed83bf4b8")
PAGE83 = guid("beca12ab-b2e6-4523-93ef-c309e000c746")
LOGICAL = guid("8141bf1d-a96f-4709-ba47-f233a8faab5f")
PHYSICAL = guid("cda348c7-445d-4471-9cc9-e9885251c556")
PARENT = guid("a8d35f2d-b30b-454d-abf7-d3d84834ab0c")
LOG_GUID = bytes(range(1, 17))


def header(seq, log_guid=b"\0" * 16, log_off=MiB, log_len=MiB, version=1, sig=b"head",
           bad_crc=False, log_version=0, fill=b"\0"):
    """A 4 KiB header (spec 2.2.2); fill: the reserved bytes after the 80 defined ones."""
    h = bytearray(fill * 4096)
    h[0:80] = b"\0" * 80
    h[0:4] = sig
    struct.pack_into("<Q", h, 8, seq)
    h[16:32] = b"\x11" * 16
    h[32:48] = b"\x22" * 16
    h[48:64] = log_guid
    struct.pack_into("<HHIQ", h, 64, log_version, version, log_len, log_off)
    struct.pack_into("<I", h, 4, crc32c(bytes(h)) ^ (1 if bad_crc else 0))
    return bytes(h)


def region(entries, sig=b"regi", count=None, bad_crc=False):
    """The 64 KiB region table (spec 2.2.3): entries of (guid, offset, length, required)."""
    r = bytearray(65536)
    r[0:4] = sig
    struct.pack_into("<I", r, 8, len(entries) if count is None else count)
    o = 16
    for g, off, ln, req in entries:
        r[o:o + 16] = g
        struct.pack_into("<QII", r, o + 16, off, ln, req)
        o += 32
    struct.pack_into("<I", r, 4, crc32c(bytes(r)) ^ (1 if bad_crc else 0))
    return bytes(r)


def metadata(items, sig=b"metadata", count=None):
    """The metadata region (spec 2.6): items of (guid, data or None, flags)."""
    m = bytearray(MiB)
    m[0:8] = sig
    struct.pack_into("<H", m, 10, len(items) if count is None else count)
    o, doff = 32, 65536
    for g, data, fl in items:
        m[o:o + 16] = g
        struct.pack_into("<III", m, o + 16, doff if data else 0, len(data or b""), fl)
        o += 32
        if data:
            m[doff:doff + len(data)] = data
            doff += max(len(data), 8)
    return bytes(m)


def items(size, bs, lss=512, pss=4096, data_bits=0):
    return [(FILE_PARAMS, struct.pack("<II", bs, data_bits), 4),
            (DISK_SIZE, struct.pack("<Q", size), 6), (PAGE83, b"\x33" * 16, 6),
            (LOGICAL, struct.pack("<I", lss), 6), (PHYSICAL, struct.pack("<I", pss), 6)]


def log_entry(seq, descs, log_guid=LOG_GUID, flushed=0, last=0, bad_crc=False, length=None):
    """One log entry (spec 2.3.1): descs of ("data", file_offset, 4096 bytes) or
    ("zero", file_offset, length); returns its bytes (header, descriptors, data)."""
    n = len(descs)
    dsec = (n + 2 + 127) // 128
    data = [d for d in descs if d[0] == "data"]
    total = dsec + len(data)
    e = bytearray(total * 4096)
    e[0:4] = b"loge"
    struct.pack_into("<IIQII", e, 8, length if length is not None else total * 4096, 0, seq, n, 0)
    e[32:48] = log_guid
    struct.pack_into("<QQ", e, 48, flushed, last)
    k = 0
    for i, d in enumerate(descs):
        o = 64 + 32 * i
        if d[0] == "data":
            payload = d[2]
            e[o:o + 4] = b"desc"
            e[o + 4:o + 8] = payload[4092:4096]
            e[o + 8:o + 16] = payload[0:8]
            struct.pack_into("<QQ", e, o + 16, d[1], seq)
            s = (dsec + k) * 4096
            e[s:s + 4] = b"data"
            struct.pack_into("<I", e, s + 4, seq >> 32)
            e[s + 8:s + 4092] = payload[8:4092]
            struct.pack_into("<I", e, s + 4092, seq & 0xFFFFFFFF)
            k += 1
        else:
            e[o:o + 4] = b"zero"
            struct.pack_into("<QQQ", e, o + 8, d[2], d[1], seq)
    struct.pack_into("<I", e, 4, crc32c(bytes(e)) ^ (1 if bad_crc else 0))
    return bytes(e)


def image(size=64 * MiB, bs=8 * MiB, lss=512, pss=4096, bat=(), bat_len=MiB, data_bits=0,
          extra_meta=(), hdrs=None, regions=None, meta=None, log=None, length=4 * MiB, tail=b""):
    """A whole image: identifier, headers at 64/128 KiB, region tables at 192/256 KiB, the
    log at 1 MiB, metadata at 2 MiB, the BAT at 3 MiB; log: [(offset in the log, bytes)]."""
    f = bytearray(max(length, 4 * MiB))
    f[0:8] = b"vhdxfile"
    if hdrs is None:
        hdrs = (header(1, LOG_GUID if log else b"\0" * 16),
                header(2, LOG_GUID if log else b"\0" * 16))
    f[64 * 1024:64 * 1024 + 4096] = hdrs[0]
    f[128 * 1024:128 * 1024 + 4096] = hdrs[1]
    rt = region(regions if regions is not None else
                [(BAT, 3 * MiB, bat_len, 1), (META, 2 * MiB, MiB, 1)])
    f[192 * 1024:256 * 1024] = rt
    f[256 * 1024:320 * 1024] = rt
    f[2 * MiB:3 * MiB] = meta if meta is not None else metadata(
        items(size, bs, lss, pss, data_bits) + list(extra_meta))
    for i, e in enumerate(bat):
        struct.pack_into("<Q", f, 3 * MiB + 8 * i, e)
    for off, data in (log or []):
        f[MiB + off:MiB + off + len(data)] = data
    return bytes(f[:length]) + tail


def seeds(out: Path):
    """A few hand-built seeds for fuzz/fuzz_vhdx.c: with an active log, blocks present."""
    out.mkdir(parents=True, exist_ok=True)
    blk = 4 * MiB | 6
    (out / "present").write_bytes(image(size=4 * MiB, bs=MiB, bat=[blk], length=5 * MiB))
    ent = log_entry(1, [("data", 4 * MiB, b"\xab" * 4096), ("zero", 4 * MiB + 8192, 8192)])
    (out / "log").write_bytes(image(size=4 * MiB, bs=MiB, bat=[blk], length=5 * MiB,
                                    log=[(0, ent)]))


if __name__ == "__main__":
    seeds(Path(sys.argv[1]))
