"""Tests of the corrupt-image generator (tests/corrupt_check.py) against the ORACLE only.

For every (case, refcount width) the image is checked with qemu-img 7.2; its
exit code and the kind of line it prints show that the image really holds the
corruption the case claims.  Expected cluster numbers are computed from the
PRISTINE base image (so the generator's refcount/L1/L2 readers are checked by
qemu-img too).  instar is not involved: these pass without it.
"""

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

import corrupt_check as cc  # noqa: E402
import instar_testlib as tl  # noqa: E402

INSTANCES = list(cc.instances())


@pytest.fixture(scope="module")
def cset(tmp_path_factory):
    return cc.session_set(tmp_path_factory)


@pytest.mark.parametrize("inst", INSTANCES, ids=[i.id for i in INSTANCES])
def test_oracle_sees_the_corruption(cset, inst):
    name = cset.path(inst)
    r = tl.run_oracle(["check", name], cwd=cset.root)
    out = (r.stderr + r.stdout).decode("utf-8", "replace")
    assert r.returncode == inst.case.expect_rc, f"{inst.id}: {inst.case.description}\n  {r.describe()}"
    base = cc.Qcow2(cset.cache.get(inst.case.base, inst.width))
    for want in inst.case.expected_lines(base):
        assert want in out, f"{inst.id}: expected {want!r} in the oracle's output\n  {r.describe()}"


@pytest.mark.parametrize("base", sorted(cc.BASES))
@pytest.mark.parametrize("width", cc.WIDTHS)
def test_bases_are_clean_and_decoded(cset, base, width):
    """Every pristine base is clean for the oracle, and our reader agrees with its layout."""
    reason = cc.BASE_SKIPS.get(base, {}).get(width)
    if reason:
        # the reason must be real: the oracle refuses to build it
        with pytest.raises(RuntimeError):
            cc.BASES[base](cset.root, f"_skipcheck-{base}-{width}.qcow2", width)
        return
    data = cset.cache.get(base, width)
    name = f"_pristine-{base}-rb{width}.qcow2"
    (cset.root / name).write_bytes(data)
    r = tl.run_oracle(["check", "--output=json", name], cwd=cset.root)
    assert r.returncode == 0, r.describe()
    q = cc.Qcow2(data)
    assert q.refcount_bits == width
    # every cluster the oracle counts as allocated is a guest cluster our L2 walk finds
    j = json.loads(r.stdout)
    found = 0
    for g in range(0, 4 * cc.MiB, q.cluster_size):
        e = q.l2(g)
        if e & cc.COMPRESSED or (e & cc.OFFSET_MASK):
            found += 1
            if not e & cc.COMPRESSED:
                rc = q.refcount(e & cc.OFFSET_MASK)
                want = 2 if "snap" in base and not (e & cc.COPIED) else 1
                assert rc == want, f"refcount of guest {g:#x} read as {rc}, expected {want}"
    assert found == j["allocated-clusters"], r.stdout
    # header, L1, refcount table and block all have refcount 1 in a fresh image
    for off in (0, q.l1_offset, q.rt_offset, q.rt(0) & cc.OFFSET_MASK):
        assert q.refcount(off) == 1, f"metadata cluster {off:#x}"


def test_set_refcount_roundtrip_all_widths():
    """set_refcount/refcount agree at every width 1..64 and leave neighbours alone."""
    for order in range(7):
        w = 1 << order
        cs = 512
        hdr = bytearray(cs * 4)
        # header: cluster_bits 9, L1 at cluster 3, refcount table at cluster 1
        struct.pack_into(">4sIQIIQIIQQIIQ", hdr, 0, b"QFI\xfb", 3, 0, 0, 9, 1 << 20, 0, 1, cs * 3, cs, 1, 0, 0)
        struct.pack_into(">I", hdr, 96, order)
        struct.pack_into(">Q", hdr, cs, cs * 2)  # rt[0] -> block at cluster 2
        q = cc.Qcow2(bytes(hdr))
        n = q.refblock_entries
        vals = [(i * 0x9E3779B97F4A7C15) & ((1 << w) - 1) for i in range(n)]
        for i, v in enumerate(vals):
            q.set_refcount(i * cs, v)
        assert [q.refcount(i * cs) for i in range(n)] == vals, f"width {w}"
        if w < 8:
            # LSB-first packing: entry 0 lives in the low bits of byte 0
            assert q.b[cs * 2] & ((1 << w) - 1) == vals[0]


def test_deterministic(tmp_path):
    """Two builds of the whole set give byte-identical files (snapshot dates are fixed)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        r = subprocess.run([sys.executable, str(TESTS / "corrupt_check.py"), str(d)],
                           capture_output=True, timeout=300, env=tl.tool_env())
        assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(i.filename for i in INSTANCES)
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert tl.same_content(a / n, b / n), n
    out = r.stdout.decode()
    skipped = [i for i in cc.instances(include_skipped=True) if i.case.skip_reason(i.width)]
    assert out.count("skip  ") == len(skipped) and skipped, out
