"""`bench`: hostile images on the read and write paths, and what instar refuses.

Reads of a damaged image must fail exactly as qemu-img's do (same lines,
same exit code).  Writes that meet damaged metadata fail the request with
Input/output error; qemu-img also marks the image corrupt, instar does not
(docs/differences.md), so for those only instar's own behaviour is pinned
down: exit 1, the request line, `Failed request: Input/output error`, and
an image no writable byte of which was touched.  The parity suite
(parity/test_bench_parity.py) covers everything qemu-img does the same.
"""

import json
import re
import struct

import pytest

import instar_testlib as tl

TIMING = re.compile(rb"Run completed in \d+\.\d{3} seconds\.")


def _be64(b: bytes, off: int) -> int:
    return struct.unpack(">Q", b[off:off + 8])[0]


def _l2_entry_offset(path) -> int:
    """File offset of the first L2 entry of a qcow2 image (its L1[0] table)."""
    b = path.read_bytes()
    l1 = _be64(b, 40)
    return _be64(b, l1) & 0x00FFFFFFFFFFFE00


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")

    def img(name, *writes, size="1M", opts=()):
        tl.qemu_img("create", "-q", "-f", "qcow2", *opts, name, size, cwd=root)
        if writes:
            tl.qemu_io("-f", "qcow2", *[x for w in writes for x in ("-c", w)], name, cwd=root)
        return root / name

    # L2[0] points 512 bytes into its cluster: an unaligned data cluster.
    p = img("unaligned.qcow2", "write -P 7 0 64k", "write -P 8 512k 64k")
    e = _l2_entry_offset(p)
    b = bytearray(p.read_bytes())
    b[e:e + 8] = struct.pack(">Q", _be64(b, e) + 512)
    p.write_bytes(bytes(b))
    # L1[0] points at an L2 table far past the end of the file.
    p = img("l2-far.qcow2", "write -P 7 0 64k")
    b = bytearray(p.read_bytes())
    l1 = _be64(b, 40)
    b[l1:l1 + 8] = struct.pack(">Q", (1 << 40) | (1 << 63))
    p.write_bytes(bytes(b))
    # The refcount table's first block is unaligned: any allocation fails.
    p = img("reftable.qcow2", "write -P 7 0 64k")
    b = bytearray(p.read_bytes())
    rt = _be64(b, 48)
    b[rt:rt + 8] = struct.pack(">Q", _be64(b, rt) + 512)
    p.write_bytes(bytes(b))
    img("empty.qcow2", size="0")
    tl.qemu_img("create", "-q", "-f", "raw", "data.raw", "1M", cwd=root)
    img("datafile.qcow2", opts=("-o", "data_file=data.raw"))
    img("plain.qcow2", "write -P 5 0 256k")
    img("bitmap.qcow2", "write -P 5 0 64k")
    tl.qemu_img("bitmap", "--add", "bitmap.qcow2", "b0", cwd=root)
    return root


def _same(instar, args, cwd):
    exp, act = tl.run_oracle(args, cwd=cwd), instar.run(args, cwd=cwd)
    norm = [tl.Result(r.argv, r.returncode, TIMING.sub(b"T", r.stdout), r.stderr) for r in (exp, act)]
    tl.assert_same(*norm, " ".join(args))


@pytest.mark.parametrize("args", [
    ["-c", "4", "unaligned.qcow2"],
    ["-c", "4", "-o", "512k", "unaligned.qcow2"],
    ["-c", "4", "-s", "64k", "l2-far.qcow2"],
    ["-c", "4", "reftable.qcow2"],
], ids=["unaligned-cluster", "unaligned-cluster-elsewhere", "l2-past-eof", "bad-reftable"])
def test_read_hostile(instar, d, args):
    """Damaged metadata on the read path: qemu-img's lines and exit code."""
    _same(instar, ["bench", *args], d)


def _corruptions(cwd, name) -> int:
    r = tl.qemu_img("check", "--output=json", name, cwd=cwd, check=False)
    return json.loads(r.stdout).get("corruptions", 0)


@pytest.mark.parametrize("name,args", [
    ("unaligned.qcow2", ["-c", "4"]),
    ("l2-far.qcow2", ["-c", "4", "-s", "64k"]),
    ("reftable.qcow2", ["-c", "4", "-o", "256k"]),
], ids=["unaligned-cluster", "l2-past-write-limit", "bad-reftable-alloc"])
def test_write_hostile(instar, d, tmp_path, name, args):
    """Damaged metadata on the write path: the request fails and the
    image gains no corruption (at most leaked clusters).  l2-past-write-limit:
    qemu-img grows the file to the 1 TiB offset the L1 table names; the
    host's write limit stops instar (docs/differences.md)."""
    work = tmp_path / name
    work.write_bytes((d / name).read_bytes())
    before = _corruptions(tmp_path, name)
    r = instar.run(["bench", "-w", *args, name], cwd=tmp_path)
    assert r.returncode == 1, r.describe()
    assert r.stdout.startswith(b"Sending 4 write requests"), r.describe()
    assert r.stderr.endswith(b"qemu-img: Failed request: Input/output error\n"), r.describe()
    assert work.stat().st_size < (1 << 30)
    assert _corruptions(tmp_path, name) <= before


def test_write_then_reopen(instar, d, tmp_path):
    """Allocating writes at depth > 1 leave an image qemu-img checks clean,
    with the pattern where the requests went."""
    (tmp_path / "p.qcow2").write_bytes((d / "plain.qcow2").read_bytes())
    r = instar.run(["bench", "-w", "-c", "40", "-d", "8", "-s", "3000", "-S", "20000",
                    "-o", "100000", "--pattern", "0x5a", "p.qcow2"], cwd=tmp_path)
    assert r.returncode == 0, r.describe()
    c = tl.qemu_img("check", "p.qcow2", cwd=tmp_path, check=False)
    assert c.returncode == 0, c.describe()
    io = tl.qemu_io("-f", "qcow2", "-c", "read -P 0x5a 100000 3000", "-c", "read -P 0x5a 880000 3000",
                    "-c", "read -P 5 0 100000", "-c", "read -P 5 103000 17000", "-c", "read -P 0 900000 4096", "p.qcow2", cwd=tmp_path,
                    check=False)
    assert io.returncode == 0 and b"Pattern verification failed" not in io.stdout, io.describe()


@pytest.mark.parametrize("args,msg", [
    (["-c", "1", "empty.qcow2"], b"the image is empty"),
    (["-d", "0", "-c", "1", "plain.qcow2"], b"A queue depth of 0 sends no request"),
], ids=["empty-image", "depth-0"])
def test_refused(instar, d, args, msg):
    """Where qemu-img would crash or hang: one line, exit 1, nothing on stdout."""
    r = instar.run(["bench", *args], cwd=d)
    assert r.returncode == 1 and r.stdout == b"", r.describe()
    assert r.stderr.startswith(b"qemu-img: ") and r.stderr.count(b"\n") == 1 and msg in r.stderr, r.describe()


def test_read_data_file(instar, d):
    """Reads of an image with a data file are not refused."""
    _same(instar, ["bench", "-c", "8", "datafile.qcow2"], d)


@pytest.mark.parametrize("args", [["-c", "4"], ["-c", "20", "-d", "3", "--flush-interval=6", "-s", "4k", "-S", "64k"],
                                  ["-c", "0"]], ids=["c4", "depth-flush", "no-request"])
def test_write_with_bitmaps(instar, d, tmp_path, args):
    """qemu-img marks an image's persistent bitmaps in use when it opens it,
    records every write in the enabled ones and stores them into new
    clusters at close: the same bytes come out of instar."""
    for who in ("oracle", "instar"):
        (tmp_path / who).mkdir()
        (tmp_path / who / "bitmap.qcow2").write_bytes((d / "bitmap.qcow2").read_bytes())
    o = tl.run_oracle(["bench", "-w", *args, "bitmap.qcow2"], cwd=tmp_path / "oracle")
    assert o.returncode == 0, o.describe()
    r = instar.run(["bench", "-w", *args, "bitmap.qcow2"], cwd=tmp_path / "instar")
    assert r.returncode == 0, r.describe()
    want = (tmp_path / "oracle" / "bitmap.qcow2").read_bytes()
    assert want != (d / "bitmap.qcow2").read_bytes()
    assert (tmp_path / "instar" / "bitmap.qcow2").read_bytes() == want
