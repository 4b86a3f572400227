"""`check` within bounded memory and time.

* A 1 TiB qcow2 created with ``-o preallocation=metadata`` (sparse: ~160 MiB of
  metadata actually written, 16 Mi data clusters described) is checked by
  instar under ``prlimit --as=1073741824`` (1 GiB address space, the KVM
  guest's RAM included) and must print exactly what qemu-img prints.
* Hostile headers claiming huge (or maximal) refcount tables, L1 tables and
  snapshot tables, and entries pointing near 2^56: instar, under the same
  limit and a timeout, must give qemu-img's exit code, stdout and stderr
  (never a crash, a hang or an out-of-memory death).

Expected outputs come from the oracle (run without limits) in the same run.
"""

import shutil
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

import corrupt_check as cc  # noqa: E402
import instar_testlib as tl  # noqa: E402

AS_LIMIT = 1 << 30
TIB = 1 << 40


def limited(instar, args, cwd, timeout=120):
    return tl.run(["prlimit", f"--as={AS_LIMIT}", str(instar.qemu_img), *args], cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def big_prealloc(tmp_path_factory):
    root = tmp_path_factory.mktemp("prealloc-1t")
    free = shutil.disk_usage(root).free
    if free < 1 << 30:
        pytest.skip(f"need ~1 GiB free for the sparse 1 TiB preallocated image, have {free} bytes")
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", "big.qcow2", "1T", cwd=root)
    st = (root / "big.qcow2").stat()
    assert st.st_size > TIB, st  # apparent size: data + metadata
    assert st.st_blocks * 512 < 1 << 30, "image should be sparse"
    return root


@pytest.mark.parametrize("opts", [[], ["--output=json"]], ids=["human", "json"])
def test_check_1t_prealloc_under_1g(instar, big_prealloc, opts):
    args = ["check", *opts, "big.qcow2"]
    expected = tl.run_oracle(args, cwd=big_prealloc, timeout=120)
    assert expected.returncode == 0, expected.describe()
    actual = limited(instar, args, big_prealloc)
    tl.assert_same(expected, actual, "check of a 1 TiB preallocated image under prlimit --as=1GiB")


# ---- hostile headers -------------------------------------------------------
def _rt_huge(q):
    q.put32(56, 0xFFFFFFFF)  # refcount_table_clusters


def _rt_max_past_eof(q):
    q.put32(56, (8 << 20) // q.cluster_size)  # qemu's 8 MiB maximum
    q.put64(48, q.past_eof())


def _rt_max_in_file(q):
    q.put32(56, (8 << 20) // q.cluster_size)  # table runs over the data clusters


def _l1_huge(q):
    q.put32(36, 0x7FFFFFFF)


def _l1_max_past_eof(q):
    q.put64(24, 1 << 51)  # virtual size that needs qemu's maximal 32 MiB L1
    q.put32(36, (32 << 20) // 8)
    q.put64(40, q.past_eof())


def _snap_many(q):
    q.put32(60, 65536)  # QCOW_MAX_SNAPSHOTS, table past EOF
    q.put64(64, q.past_eof())


def _snap_too_many(q):
    q.put32(60, 0xFFFFFFFF)


def _rt_far(q):
    q.set_rt(1, 0x00FFFFFFFFFE0000)


def _l1_far(q):
    q.put64(q.l1_entry_off(0), 0x00FFFFFFFFFE0000 | cc.COPIED)


def _l2_far(q):
    q.set_l2(cc.G0, 0x00FFFFFFFFFE0000 | cc.COPIED)


def _size_max(q):
    q.put64(24, (1 << 63) - 512)


HOSTILE = {
    "reftable-clusters-huge": _rt_huge,
    "reftable-max-past-eof": _rt_max_past_eof,
    "reftable-max-over-data": _rt_max_in_file,
    "l1-size-huge": _l1_huge,
    "l1-size-max-past-eof": _l1_max_past_eof,
    "snapshots-65536-past-eof": _snap_many,
    "snapshots-count-huge": _snap_too_many,
    "refblock-near-2^56": _rt_far,
    "l2-table-near-2^56": _l1_far,
    "data-cluster-near-2^56": _l2_far,
    "virtual-size-max": _size_max,
}


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("check-hostile")
    cache = cc.BaseCache(root / "_bases")
    for name, fn in HOSTILE.items():
        q = cc.Qcow2(cache.get("data", 16))
        fn(q)
        (root / f"{name}.qcow2").write_bytes(bytes(q.b))
    return root


@pytest.mark.parametrize("name", list(HOSTILE))
def test_check_hostile_header_bounded(instar, hostile_dir, name):
    args = ["check", f"{name}.qcow2"]
    expected = tl.run_oracle(args, cwd=hostile_dir, timeout=120)
    actual = limited(instar, args, hostile_dir, timeout=60)
    tl.assert_same(expected, actual, f"hostile {name} under prlimit --as=1GiB")
