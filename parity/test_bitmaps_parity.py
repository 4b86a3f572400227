"""`qemu-img convert --bitmaps` parity with bitmaps that hold bits (qemu-img 7.2
vs instar): every persistent bitmap of the source (name, granularity,
enabled state, bits) copied into a qcow2 target.

As in test_convert_parity.py, each case runs under qemu-img (twice) and
instar on identical copies of its images (parity/images.py, the dp-bm-*
sets at the end) and compares exit code, stdout, stderr and the output
images byte for byte with their host data/hole layout: the bitmap
directory, tables and data clusters have to land where qemu-img puts them,
with the same bytes.  A case id starting with `err-` must make qemu-img
fail.  test_bitmap_contents below also reads the copied bits back with a
reader of its own and checks them against the source's.
"""

from __future__ import annotations

import re
import struct

import pytest

import output_compare as oc

CASES = []
_OUT = re.compile(r"\bout[\w-]*\.(qcow2|raw|bin|img)\b")


def case(cid, *args, out=None, contents="bytes", normalise=None):
    outs = {}
    for a in args:
        for m in _OUT.finditer(a):
            outs[m.group(0)] = "qcow2" if m.group(1) == "qcow2" else "raw"
    outs.update(out or {})
    CASES.append(pytest.param(list(args), outs, contents, normalise, id=cid))


for _img in ("dp-bm-many", "dp-bm-cs512", "dp-bm-large", "dp-bm-ones", "dp-bm-names", "dp-bitmaps"):
    case(f"{_img}", "--bitmaps", "-O", "qcow2", f"@{_img}", "out.qcow2")
for _o in ("cluster_size=512", "cluster_size=4k", "cluster_size=2M", "extended_l2=on", "refcount_bits=1",
           "refcount_bits=64", "lazy_refcounts=on", "preallocation=metadata", "compression_type=zstd",
           "data_file=out-data.bin"):
    case(f"many-o-{_o}", "--bitmaps", "-O", "qcow2", "-o", _o, "@dp-bm-many", "out.qcow2")
case("cs512-to-2M", "--bitmaps", "-O", "qcow2", "-o", "cluster_size=2M", "@dp-bm-cs512", "out.qcow2")
case("ones-cs512", "--bitmaps", "-O", "qcow2", "-o", "cluster_size=512", "@dp-bm-ones", "out.qcow2")
case("names-cs64k", "--bitmaps", "-O", "qcow2", "-o", "cluster_size=64k", "@dp-bm-names", "out.qcow2")
case("large-cs512", "--bitmaps", "-O", "qcow2", "-o", "cluster_size=512", "@dp-bm-large", "out.qcow2")
case("many-c", "--bitmaps", "-c", "-O", "qcow2", "@dp-bm-many", "out.qcow2")
case("many-p", "-p", "--bitmaps", "-O", "qcow2", "@dp-bm-many", "out.qcow2")
case("many-q", "-q", "--bitmaps", "-O", "qcow2", "@dp-bm-many", "out.qcow2")
case("many-S0", "-S", "0", "--bitmaps", "-O", "qcow2", "@dp-bm-many", "out.qcow2")
case("many-B", "--bitmaps", "-O", "qcow2", "-B", "@dp-bm-target-64M", "-F", "qcow2", "@dp-bm-many", "out.qcow2")
case("many-n", "-n", "--bitmaps", "-O", "qcow2", "@dp-bm-many", "@dp-bm-target-64M",
     out={"dp-bm-target-64M.qcow2": "qcow2"})
case("err-many-n-longer-target", "-n", "--bitmaps", "-O", "qcow2", "@dp-bm-many", "@dp-bm-target-65M",
     out={"dp-bm-target-65M.qcow2": "qcow2"})
case("inuse-skip-broken", "--bitmaps", "--skip-broken-bitmaps", "-O", "qcow2", "@dp-bm-inuse-bits", "out.qcow2")
case("err-inuse", "--bitmaps", "-O", "qcow2", "@dp-bm-inuse-bits", "out.qcow2")
case("err-inuse-n-longer-target", "-n", "--bitmaps", "--skip-broken-bitmaps", "-O", "qcow2",
     "@dp-bm-inuse-bits", "@dp-bm-target-65M", out={"dp-bm-target-65M.qcow2": "qcow2"})


# -n --bitmaps into an image with bitmaps of its own: the copies join them
# (stored after them), or qemu-img stops at a name the target has.
for _cid, _src, _tgt in (("bitmaps-n-into-bitmaps", "dp-bm-cs512", "dp-bm-many"),
                         ("err-bitmaps-n-name-exists", "dp-bm-many", "dp-bm-inuse-bits"),
                         ("err-bitmaps-n-longer-with-bitmaps", "dp-bm-many", "dp-bm-ones")):
    case(_cid, "-n", "--bitmaps", "-O", "qcow2", f"@{_src}", f"@{_tgt}",
         out={f"{_tgt}.qcow2": "qcow2"})


@pytest.mark.parametrize("args,outputs,contents,normalise", CASES)
def test_bitmaps(instar, images, tmp_path, request, args, outputs, contents, normalise):
    argv, files = images.resolve(args)
    w = oc.run_writing(instar, ["convert", *argv], tmp_path, files, outputs,
                       normalise=normalise, contents=contents)
    err_case = request.node.callspec.id.startswith("err-")
    assert (w.oracle.returncode != 0) == err_case, "case id does not match qemu-img's outcome: " + w.oracle.describe()


# --------------------------------------------------------------------------
# The bits themselves, read back without qemu (qcow2.txt, "Bitmaps extension")
# --------------------------------------------------------------------------

def read_bitmaps(path):
    """{name: (granularity bits, flags, serialised bits)} of a qcow2 image:
    table entry 0 reads as zeros, 1 as all ones, else the data cluster."""
    data = path.read_bytes()
    cs = 1 << struct.unpack_from(">I", data, 20)[0]
    size = struct.unpack_from(">Q", data, 24)[0]
    off = struct.unpack_from(">I", data, 100)[0]
    while True:
        magic, length = struct.unpack_from(">II", data, off)
        if magic == 0x23852875:
            _nb, _r, dsize, doff = struct.unpack_from(">IIQQ", data, off + 8)
            break
        assert magic != 0, "no bitmaps extension"
        off += 8 + ((length + 7) & ~7)
    out, e = {}, doff
    while e < doff + dsize:
        t_off, t_size, flags, _ty, gbits, nlen, extra = struct.unpack_from(">QIIBBHI", data, e)
        name = data[e + 24:e + 24 + nlen].decode()
        nbits = (size - 1 >> gbits) + 1
        ser = (nbits + 63) // 64 * 8
        bits = bytearray()
        for k in range(t_size):
            entry = struct.unpack_from(">Q", data, t_off + 8 * k)[0]
            chunk = min(cs, ser - k * cs)
            if entry & 0x00fffffffffffe00:
                o = entry & 0x00fffffffffffe00
                bits += data[o:o + chunk].ljust(chunk, b"\0")
            else:
                bits += (b"\xff" if entry & 1 else b"\0") * chunk
        # Only the bits of existing granules count.
        n = int.from_bytes(bytes(bits), "little") & ((1 << nbits) - 1)
        out[name] = (gbits, flags, n)
        e += (24 + nlen + extra + 7) & ~7
    return out


@pytest.mark.parametrize("img,opts", [("dp-bm-many", []), ("dp-bm-many", ["-o", "cluster_size=512"]),
                                      ("dp-bm-ones", []), ("dp-bm-cs512", ["-o", "cluster_size=2M"])])
def test_bitmap_contents(instar, images, tmp_path, img, opts):
    """The target's bitmaps are the source's: names, granularity, the
    enabled flag (auto) and every bit, in the source's order."""
    src = images.root / images.path(img)
    r = instar.run(["convert", "--bitmaps", "-O", "qcow2", *opts, str(src), "out.qcow2"], cwd=tmp_path)
    assert r.returncode == 0, r.describe()
    want = read_bitmaps(src)
    got = read_bitmaps(tmp_path / "out.qcow2")
    assert list(got) == list(want)
    for name, (gbits, flags, bits) in want.items():
        assert got[name] == (gbits, flags & 2, bits), name
    assert any(b for _g, _f, b in want.values()), "the source has no bits set: the test would prove nothing"


# --------------------------------------------------------------------------
# Writes into an image with persistent bitmaps (convert -n): qemu marks them
# in use at open, records the writes in the enabled ones and stores them all
# into new clusters at close.
# --------------------------------------------------------------------------
WRITES = []
for _cid, _src, _tgt in (("n-into-bitmaps", "dp-bm-cs512", "dp-bm-many"),
                         ("n-into-inuse", "dp-bm-cs512", "dp-bm-inuse-bits"),
                         ("n-into-ones", "dp-small", "dp-bm-ones"),
                         ("n-into-odd-size", "dp-bm-many", "dp-bm-ones")):
    WRITES.append(pytest.param(_src, _tgt, id=_cid))


@pytest.mark.parametrize("src,tgt", WRITES)
def test_write_into_bitmaps(instar, images, tmp_path, src, tgt):
    argv, files = images.resolve(["-n", "-O", "qcow2", f"@{src}", f"@{tgt}"])
    target = images.path(tgt)
    w = oc.run_writing(instar, ["convert", *argv], tmp_path, files, {target: "qcow2"})
    assert w.oracle.returncode == 0, w.oracle.describe()

