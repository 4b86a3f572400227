"""vmdk parity (qemu-img 7.2 vs instar): VMDK3 ("COWD", vmfsSparse) and seSparse extents.

qemu-img reads both (block/vmdk.c: vmdk_open_vmfs_sparse(), vmdk_open_se_sparse())
but creates neither, so the images are written here from the layouts the QEMU
source reads: VMDK3's header after the "COWD" magic (version, flags,
disk_sectors, granularity, l1dir_offset, l1dir_size, ...; 4096-entry grain
tables of 32-bit sectors), seSparse's const header (26 little-endian uint64
fields, 304 zero bytes), its volatile header, a directory of 64-bit entries
(0x10000000 in the top half, a table index below), 4096-entry tables of
64-bit grain entries (top nibble: 0 unallocated, 1 unmapped, 2 zero, 3
allocated with a 60-bit grain index whose low 12 bits come first).  Each
image is opened through a descriptor (createType vmfsSparse, seSparse, or
twoGbMaxExtentSparse mixing kinds).  Read-only commands run on the same
files under both tools; convert runs on copies.  A case id starting with
`err-` must make qemu-img fail.  Where qemu-img crashes (a VMDK3 grain
size whose lookups divide by zero) instar's clean error is tested on its
own (docs/differences.md).
"""

from __future__ import annotations

import os
import struct
import subprocess

import pytest

import instar_testlib as tl

CID_DESC = b'# Disk DescriptorFile\nversion=1\nCID=1234abcd\nparentCID=ffffffff\n'


def cowd(cap=2048, gran=8, gd=4, l1_size=None, grains=None, l1=None, hdr_gd=None, hdr_l1=None, size=None):
    """A VMDK3 (COWD) extent: header, grain directory at sector gd, one 4096-entry grain table
    per directory entry in use, then the grains; grains maps grain index -> bytes."""
    grains = grains or {}
    n_l1 = -(-cap // (4096 * gran)) if l1_size is None else l1_size
    sec = gd + max(1, -(-n_l1 * 4 // 512))
    l1v = [0] * n_l1
    tables = {}
    for t in sorted({i // 4096 for i in grains}):
        if t < n_l1:
            l1v[t] = sec
        tables[t] = [sec, [0] * 4096]
        sec += 32
    at = sec
    for i in sorted(grains):
        tables[i // 4096][1][i % 4096] = at
        at += gran
    h = b"COWD" + struct.pack("<10I", 1, 3, cap, gran, gd if hdr_gd is None else hdr_gd,
                              n_l1 if hdr_l1 is None else hdr_l1, 0, 0, 0, 0)
    img = bytearray(h).ljust(gd * 512, b"\0")
    img[gd * 512:] = struct.pack(f"<{n_l1}I", *(l1v if l1 is None else l1))
    for s, tab in tables.values():
        img = img.ljust(s * 512, b"\0")
        img[s * 512:s * 512 + 16384] = struct.pack("<4096I", *tab)
    img = img.ljust(sec * 512, b"\0")
    for i in sorted(grains):
        img += grains[i].ljust(gran * 512, b"\0") if i != max(grains) else grains[i]
    tail = gran * 512 - len(grains[max(grains)]) if grains else 0
    if size is not None:
        img = (img + b"\0" * tail)[:size].ljust(size, b"\0")
        tail = 0
    if tail <= 0:
        return bytes(img + b"\0" * max(tail, 0))
    ext = Extent(img)
    ext.size = len(img) + tail
    return ext


class Extent(bytes):
    """Extent file bytes whose last grain's zero padding, up to .size, is left
    out: write_extent() makes it a hole (a 0x200001-sector grain is 1 GiB)."""


def write_extent(path, data):
    path.write_bytes(data)
    os.truncate(path, getattr(data, "size", len(data)))


def se_entry(gi):
    """The grain table entry of an allocated grain with index gi."""
    return 0x3000000000000000 | ((gi & 0xfff) << 48) | (gi >> 12)


def sesparse(cap=8192, grains=None, zeros=(), unmapped=(), gd=8, gd_size=1, gt=16, vol=2,
             override=None, vol_override=None, l1=None, l2=None):
    """A seSparse extent: const header (sector 0), volatile header (sector vol), a grain directory
    of gd_size sectors at gd, 64-sector grain tables from gt, 4 KiB grains after them; grains
    maps grain index -> bytes, zeros / unmapped list grain indexes; l1 / l2 replace the directory
    and the first table in use."""
    grains = grains or {}
    tabs = {}
    for k, i in enumerate(sorted(grains)):
        tabs.setdefault(i // 4096, [0] * 4096)[i % 4096] = se_entry(k)
    for i in zeros:
        tabs.setdefault(i // 4096, [0] * 4096)[i % 4096] = 0x2000000000000000
    for i in unmapped:
        tabs.setdefault(i // 4096, [0] * 4096)[i % 4096] = 0x1000000000000000
    ntab = max(tabs, default=0) + 1
    gstart = gt + 64 * ntab
    f = dict(magic=0xcafebabe, version=0x200000001, capacity=cap, grain_size=8, grain_table_size=64,
             flags=0, r1=0, r2=0, r3=0, r4=0, vol_off=vol, vol_size=1, jh_off=0, jh_size=0, j_off=0,
             j_size=0, gd_off=gd, gd_size=gd_size, gt_off=gt, gt_size=64 * ntab, fb_off=0, fb_size=0,
             bm_off=0, bm_size=0, g_off=gstart, g_size=8 * len(grains))
    f.update(override or {})
    v = dict(magic=0xcafecafe, free=0, txn=0, replay=0)
    v.update(vol_override or {})
    img = bytearray(struct.pack("<26Q", *f.values()) + bytes(304)).ljust(vol * 512, b"\0")
    img += struct.pack("<4Q", *v.values()) + bytes(480)
    l1v = [0] * (gd_size * 64)
    for t in tabs:
        l1v[t] = 0x1000000000000000 | t
    if l1 is not None:
        l1v = l1 + [0] * (gd_size * 64 - len(l1))
    img = img.ljust(gd * 512, b"\0")
    img[gd * 512:] = struct.pack(f"<{len(l1v)}Q", *l1v)
    for t, tab in sorted(tabs.items()):
        if l2 is not None:
            tab, l2 = l2 + [0] * (4096 - len(l2)), None
        img = img.ljust((gt + 64 * t) * 512, b"\0")
        img[(gt + 64 * t) * 512:(gt + 64 * t + 64) * 512] = struct.pack("<4096Q", *tab)
    img = img.ljust(gstart * 512, b"\0")
    for i in sorted(grains):
        img += grains[i].ljust(4096, b"\0")
    return bytes(img)


def desc(ctype, lines, parent=None):
    """A descriptor file: lines are (sectors, type, file) or (sectors, type, file, offset)."""
    ext = "".join(f'RW {e[0]} {e[1]} "{e[2]}"' + (f" {e[3]}" if len(e) > 3 else "") + "\n"
                  for e in lines)
    cid = CID_DESC if parent is None else CID_DESC.replace(b"ffffffff", parent.encode())
    return cid + f'createType="{ctype}"\n\n# Extent description\n{ext}\nddb.virtualHWVersion = "4"\n'.encode()


G = {0: b"\x11" * 4096, 5: b"\x22" * 4096, 4097: b"\x33" * 4096}
S = {0: b"\x44" * 4096, 3: b"\x55" * 4096, 4100: b"\x66" * 4096}
CAP = 8192 * 8

# name -> (extent file bytes, descriptor type and extent type); vmfsSparse unless named se-
EXTENTS = {
    "c": cowd(cap=CAP + 100, grains=G),
    "c-gran-1": cowd(cap=300, gran=1, grains={0: b"\x12" * 512, 7: b"\x13" * 512, 299: b"\x14" * 512}),
    "c-gran-128": cowd(cap=2048 * 8, gran=128, grains={1: b"\x15" * 65536, 127: b"\x16" * 65536}),
    "c-empty": cowd(cap=4096),
    "c-cap-0": cowd(cap=0, l1_size=1, grains={0: b"\x11" * 4096}),
    "c-gran-big": cowd(grains={0: b"\x11" * 4096}, gran=0x200001),
    "c-l1-big": cowd(grains={0: b"\x11" * 4096}, hdr_l1=32 * 1024 * 1024 + 1),
    "c-l1-short": cowd(cap=CAP, grains=G, l1_size=1),
    "c-gd-past": cowd(grains={0: b"\x11" * 4096}, hdr_gd=1 << 31),
    "c-gd-top": cowd(grains={0: b"\x11" * 4096}, hdr_gd=0xffffffff),
    "c-gt-past": cowd(grains={0: b"\x11" * 4096}, l1=[1 << 30]),
    "c-grain-past": cowd(grains={0: b"\x11" * 4096})[:-4096],
    "c-short": cowd(grains={0: b"\x11" * 4096})[:20],
    "c-tiny": b"COWD",
    "se": sesparse(cap=CAP, grains=S, zeros=[7], unmapped=[9]),
    "se-empty": sesparse(cap=CAP),
    "se-big": sesparse(cap=1 << 23, grains={0: b"\x77" * 4096, 4096 * 200 + 5: b"\x78" * 4096}, gd_size=32,
                       gt=64),
    "se-cap-0": sesparse(cap=0, grains=S),
    "se-magic": sesparse(grains=S, override=dict(magic=0x1234)),
    "se-version": sesparse(grains=S, override=dict(version=1)),
    "se-grain": sesparse(grains=S, override=dict(grain_size=16)),
    "se-gt": sesparse(grains=S, override=dict(grain_table_size=32)),
    "se-flags": sesparse(grains=S, override=dict(flags=5)),
    "se-reserved": sesparse(grains=S, override=dict(r2=7, r4=1 << 63)),
    "se-vmagic": sesparse(grains=S, vol_override=dict(magic=3)),
    "se-dirty": sesparse(grains=S, vol_override=dict(replay=1)),
    "se-vol-wrap": sesparse(grains=S, override=dict(vol_off=1 << 60)),
    "se-vol-neg": sesparse(grains=S, override=dict(vol_off=1 << 54)),
    "se-vol-past": sesparse(grains=S, override=dict(vol_off=1 << 20)),
    "se-gd-neg": sesparse(grains=S, override=dict(gd_off=1 << 54)),
    "se-gd-wrap": sesparse(grains=S, override=dict(gd_off=1 << 60)),
    "se-gd-past": sesparse(grains=S, override=dict(gd_off=1 << 30)),
    "se-gdsize-big": sesparse(grains=S, override=dict(gd_size=1 << 20)),
    "se-gdsize-wrap": sesparse(grains=S, override=dict(gd_size=1 << 55)),
    "se-l1-bad": sesparse(grains=S, l1=[0x2000000000000000]),
    "se-l1-far": sesparse(grains=S, l1=[0x10000000ffffffff]),
    "se-l2-bad": sesparse(grains=S, l2=[5, 0x4000000000000000, 0x1000000000000000, se_entry(1 << 40)]),
    "se-gt-past": sesparse(grains=S, override=dict(gt_off=1 << 28)),
    "se-gt-top": sesparse(grains=S, override=dict(gt_off=0xffffffff)),
    "se-grains-far": sesparse(grains=S, override=dict(g_off=1 << 62)),
}
# Which open qemu-img refuses (the ids say it; a wrong guess fails the case).
OPEN_ERR = {"c-gran-big", "c-l1-big", "se-magic", "se-version", "se-grain", "se-gt", "se-flags",
            "se-reserved", "se-vmagic", "se-dirty", "se-vol-wrap", "se-vol-neg", "se-vol-past",
            "se-gd-neg", "se-gdsize-big", "order-bad-missing", "order-good-missing",
            "order-good-bad-missing", "order-missing-bad", "order-bad-absolute"}
# Opens, but reading metadata fails (block status: EIO).
READ_ERR = {"c-l1-short", "c-short", "se-gd-wrap", "se-gdsize-wrap", "se-l1-bad", "se-l1-far", "se-l2-bad"}
CHECK_ERR = READ_ERR | {"c-grain-past"}

DESCS = {f"{n}.vmdk": desc("seSparse" if n.startswith("se") else "vmfsSparse",
                           [(CAP, "SESPARSE" if n.startswith("se") else "VMFSSPARSE", f"{n}.img")])
         for n in EXTENTS}
DESCS.update({
    # a COWD file as a SPARSE extent (its header's capacity counts, not the line's), a VMDK4
    # extent, a flat one and a seSparse one in one image
    "mixed.vmdk": desc("twoGbMaxExtentSparse", [(100, "SPARSE", "c-gran-1.img"), (16, "FLAT", "raw.img", 0),
                                                 (2048, "SPARSE", "v4.vmdk"), (CAP, "SESPARSE", "se.img")]),
    "c-tiny-desc.vmdk": desc("vmfsSparse", [(8, "SPARSE", "c-tiny.img")]),
    # qemu opens and parses each extent before the next line: a corrupt extent's error comes
    # before a later missing (or refused) file's, and a missing file before a later corrupt one
    "order-bad-missing.vmdk": desc("seSparse", [(8, "SESPARSE", "se-version.img"), (8, "SESPARSE", "nofile.img")]),
    "order-good-missing.vmdk": desc("seSparse", [(8, "SESPARSE", "se.img"), (8, "VMFSSPARSE", "nofile.img")]),
    "order-good-bad-missing.vmdk": desc("seSparse", [(8, "SESPARSE", "se.img"), (8, "SPARSE", "c-gran-big.img"),
                                                     (8, "FLAT", "nofile.img", 0)]),
    "order-missing-bad.vmdk": desc("seSparse", [(8, "SESPARSE", "nofile.img"), (8, "SESPARSE", "se-magic.img")]),
    "order-bad-absolute.vmdk": desc("seSparse", [(8, "SESPARSE", "se-dirty.img"), (8, "FLAT", "/etc/hostname", 0)]),
    # a vmfsSparse child over a seSparse parent: reads fall through to it where unallocated
    "child.vmdk": desc("vmfsSparse", [(CAP, "VMFSSPARSE", "child.img")], parent="1234abcd")
    .replace(b'createType', b'parentFileNameHint="se.vmdk"\ncreateType'),
})
TOP_COWD = ["c.img", "c-gran-1.img"]  # a VMDK3 file opened as the image itself


@pytest.fixture(scope="module")
def extdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("vmdkext")
    for n, data in EXTENTS.items():
        write_extent(d / f"{n}.img", data)
    (d / "child.img").write_bytes(cowd(cap=CAP, grains={3: b"\x99" * 4096, 4100: b"\x9a" * 4096}))
    (d / "raw.img").write_bytes(b"\x71" * 8192)
    for n, data in DESCS.items():
        (d / n).write_bytes(data)
    tl.qemu_img("create", "-q", "-f", "vmdk", "v4.vmdk", "1M", cwd=d)
    tl.qemu_io("-f", "vmdk", "-c", "write -P 0x5a 64k 64k", str(d / "v4.vmdk"))
    tl.qemu_img("create", "-q", "-f", "raw", "empty.raw", str(CAP * 512), cwd=d)
    return d


def _stem(name):
    return name.rsplit(".", 1)[0]


CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


for _f in sorted(DESCS):
    _n = _stem(_f)
    if _n in OPEN_ERR:
        case(f"err-info-{_n}", "info", _f)
        case(f"err-map-{_n}", "map", "--output=json", _f)
        continue
    case(f"info-{_n}", "info", _f)
    case(f"info-json-{_n}", "info", "--output=json", _f)
    _e = "err-" if _n in READ_ERR else ""
    case(f"{_e}map-json-{_n}", "map", "--output=json", _f)
    case(f"{_e}map-{_n}", "map", _f)
    case(f"{'err-' if _n in CHECK_ERR else ''}check-{_n}", "check", _f)
    case(f"{_e}compare-{_n}", "compare", _f, _f)
for _f in TOP_COWD:
    case(f"err-info-top-{_stem(_f)}", "info", _f)
    case(f"err-info-top-f-{_stem(_f)}", "info", "-f", "vmdk", _f)
case("compare-c-raw", "compare", "-F", "raw", "c-empty.vmdk", "empty.raw")
case("diff-compare-se-raw", "compare", "-F", "raw", "se.vmdk", "empty.raw")
case("info-backing-chain-child", "info", "--backing-chain", "child.vmdk")
case("err-convert-n-se", "convert", "-n", "-f", "raw", "-O", "vmdk", "raw.img", "se.vmdk")
case("err-commit-se", "commit", "se.vmdk")


@pytest.mark.parametrize("args", CASES)
def test_vmdk_extents_read(instar, extdir, request, args):
    expected, actual = tl.run_both(instar, args, cwd=extdir)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    diff_case = request.node.callspec.id.startswith("diff-")
    ok = {"check": (0, 63), "compare": (1,) if diff_case else (0,)}.get(args[0], (0,))
    assert (expected.returncode not in ok) == err_case, "case id does not match qemu-img's outcome: " + \
        expected.describe()


OUT_CASES = []
for _f in ["c.vmdk", "c-gran-1.vmdk", "c-gran-128.vmdk", "c-gt-past.vmdk", "c-gd-top.vmdk", "se.vmdk",
           "se-big.vmdk", "se-gt-past.vmdk", "se-gt-top.vmdk", "se-grains-far.vmdk", "mixed.vmdk",
           "child.vmdk", "se-l1-bad.vmdk", "c-short.vmdk"]:
    _e = "err-" if _stem(_f) in READ_ERR else ""
    OUT_CASES.append(pytest.param(["convert", "-O", "raw", _f, "out.raw"], id=f"{_e}convert-raw-{_stem(_f)}"))
OUT_CASES.append(pytest.param(["convert", "-O", "qcow2", "mixed.vmdk", "out.qcow2"], id="convert-qcow2-mixed"))
# qemu writes VMDK3 extents as VMDK4 ones (32-bit table entries): the grains, tables, CID
OUT_CASES.append(pytest.param(["convert", "-n", "-f", "raw", "-O", "vmdk", "empty.raw", "c.vmdk"],
                              id="convert-n-onto-cowd"))


@pytest.mark.parametrize("args", OUT_CASES)
def test_vmdk_extents_output(instar, extdir, tmp_path, request, args):
    inputs = sorted(p for p in extdir.iterdir() if p.name != "empty.raw" or p.name in args)
    expected, actual = tl.run_both_on_copies(instar, args, inputs, tmp_path)
    tl.assert_same(expected, actual, " ".join(args))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match: " + expected.describe()
    out = args[-1]
    a, b = tmp_path / "oracle" / out, tmp_path / "instar" / out
    if not err_case and args[1] != "-n":
        assert tl.same_content(a, b), f"{out} differs"
    if args[1] == "-n":
        # the extent file byte for byte; the descriptor but for its new (random) CID
        assert tl.same_content(tmp_path / "oracle" / "c.img", tmp_path / "instar" / "c.img")
        da = (tmp_path / "oracle" / "c.vmdk").read_bytes().split(b"\n")
        db = (tmp_path / "instar" / "c.vmdk").read_bytes().split(b"\n")
        assert [x for x in da if not x.startswith(b"CID=")] == [x for x in db if not x.startswith(b"CID=")]
        assert sum(x.startswith(b"CID=") for x in da) == sum(x.startswith(b"CID=") for x in db) == 1


# ---- where qemu-img crashes: instar's clean errors (docs/differences.md) ------------------------
def test_vmdk3_grain_dividing_by_zero(instar, tmp_path):
    """A VMDK3 grain of 0 sectors, or one whose 4096-entry tables cover 2^32 sectors (the product
    is a uint32_t in QEMU): qemu-img's info works, its lookups divide by zero (SIGFPE); instar
    answers info the same and fails the lookups cleanly."""
    for name, gran in (("g0", 0), ("g20", 0x100000)):
        write_extent(tmp_path / f"{name}.img", cowd(grains={0: b"\x11" * 4096}, gran=gran, l1_size=1))
        (tmp_path / f"{name}.vmdk").write_bytes(desc("vmfsSparse", [(8, "VMFSSPARSE", f"{name}.img")]))
        q = subprocess.run([tl.QEMU_IMG, "map", f"{name}.vmdk"], cwd=tmp_path, capture_output=True)
        assert q.returncode == -8 or q.returncode == 136, q  # the oracle's SIGFPE
        expected, actual = tl.run_both(instar, ["info", f"{name}.vmdk"], cwd=tmp_path)
        tl.assert_same(expected, actual, f"info {name}")
        for argv, msg in ((["map", f"{name}.vmdk"], "Could not read file metadata: Input/output error"),
                          (["convert", "-O", "raw", f"{name}.vmdk", "o.raw"],
                           "error while reading block status at offset 0: Input/output error"),
                          (["check", f"{name}.vmdk"], "ERROR: could not get cluster_offset for sector 0")):
            r = instar.run(argv, cwd=tmp_path)
            assert r.returncode == 1 and msg.encode() in r.stderr, r.describe()


def test_sesparse_capacity_past_2e63(instar, tmp_path):
    """A seSparse capacity of 2^62 or 2^63 sectors: qemu-img fails to size the image in each
    command its own way; instar refuses the open, as for a VMDK4 extent."""
    for cap in (1 << 62, 1 << 63):
        (tmp_path / "h.img").write_bytes(sesparse(grains=S, override=dict(capacity=cap)))
        (tmp_path / "h.vmdk").write_bytes(desc("seSparse", [(8, "SESPARSE", "h.img")]))
        r = instar.run(["info", "h.vmdk"], cwd=tmp_path)
        assert r.returncode == 1
        assert r.stderr == b"qemu-img: Could not open 'h.vmdk': VMDK extents add up to more than 2^63 bytes\n"
