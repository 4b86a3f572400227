"""Parity cases found by the differential fuzzer of the mutating commands (scripts/fuzz-mutate.py).

Each case runs both tools on private copies of an image the oracle made
and compares exit code, stdout, stderr and the resulting files byte for
byte, then `qemu-img check` of each (tl.run_both_on_copies).
"""

from __future__ import annotations

import pytest

import instar_testlib as tl


def make(path, opts: str, size: str, *writes: str) -> None:
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", opts, str(path), size)
    args = []
    for w in writes:
        args += ["-c", w]
    if args:
        tl.qemu_io("-f", "qcow2", *args, str(path))


@pytest.mark.parametrize("rb", [1, 2])
def test_snapshot_create_refcount_overflow(instar, tmp_path, rb):
    """snapshot -c failing half-way through an L2 table (a narrow refcount overflows).

    Clusters before the one that overflows keep their raised refcount and
    lose COPIED in the table qemu's L2 cache writes back: leaks only, no
    OFLAG_COPIED errors (fuzz-mutate seed 3, iteration 15).
    """
    src = tmp_path / "img.qcow2"
    # Plain clusters first, then compressed ones sharing host clusters
    # (their refcount already at 2 or more).
    make(src, f"cluster_size=4096,refcount_bits={rb}", "1M",
         "write -c -P 7 512k 64k", "write -P 1 0 64k")
    q, i = tl.run_both_on_copies(instar, ["snapshot", "-c", "s0", "img.qcow2"], [src],
                                 tmp_path / "w", compare_images=["img.qcow2"])
    tl.assert_same(q, i, "snapshot -c over an overflowing refcount")
    assert q.returncode == 1
    a = (tmp_path / "w" / "oracle" / "img.qcow2").read_bytes()
    b = (tmp_path / "w" / "instar" / "img.qcow2").read_bytes()
    assert a == b
