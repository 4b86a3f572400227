"""instar measure: what the parity suite cannot run cheaply.

* LUKS encryption with a real secret: qemu-img builds a LUKS header for
  it, benchmarking PBKDF2 (seconds, and now and then it fails on a busy
  machine with "Unable to get accurate CPU usage"; the oracle is retried).
* qcow2_measure()'s steps: a corrupt L2 entry where QEMU's loop steps over
  it (inside a target cluster already counted) must not be read, and must
  fail the measure where the loop does ask about it.

Every expectation comes from running qemu-img in the same test.
"""

from __future__ import annotations

import struct

import pytest

import instar_testlib as tl

SECRET = ["--object", "secret,id=sec0,data=abc"]


def run_oracle_retrying(argv, cwd):
    for _ in range(3):
        r = tl.run_oracle(argv, cwd=cwd, timeout=120)
        if b"Unable to get accurate CPU usage" not in r.stderr:
            return r
    pytest.skip("qemu-img could not benchmark PBKDF2 on this machine: " + r.describe())


@pytest.mark.parametrize("opts", [
    "encrypt.format=luks,encrypt.key-secret=sec0",
    "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=aes-128,encrypt.hash-alg=sha1",
    "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain,cluster_size=512",
    "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=aes-192,cluster_size=2M,preallocation=full",
], ids=["default", "aes-128-sha1", "cbc-plain-cs512", "aes-192-cs2M-full"])
def test_luks_with_secret(instar, tmp_path, opts):
    argv = ["measure", *SECRET, "-O", "qcow2", "-o", opts + ",encrypt.iter-time=10", "--size", "3G"]
    expected = run_oracle_retrying(argv, tmp_path)
    actual = instar.run(argv, cwd=tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert expected.returncode == 0, expected.describe()


def test_luks_of_an_image(instar, tmp_path):
    tl.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", "16M", cwd=tmp_path)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 1M 3M", "src.qcow2", cwd=tmp_path)
    argv = ["measure", *SECRET, "--output=json", "-O", "qcow2", "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", "src.qcow2"]
    expected = run_oracle_retrying(argv, tmp_path)
    tl.assert_same(expected, instar.run(argv, cwd=tmp_path), " ".join(argv))


@pytest.mark.parametrize("opts,size", [
    ("key-secret=sec0", "1G"),
    ("key-secret=sec0", "1000"),
    ("key-secret=sec0,cipher-alg=aes-128,cipher-mode=cbc,preallocation=full", "10M"),
    ("key-secret=sec0,cipher-alg=aes-256,cipher-mode=ecb,ivgen-alg=essiv,ivgen-hash-alg=sha256,hash-alg=md5", "0"),
    ("key-secret=sec0,cipher-alg=aes-128,ivgen-alg=essiv,ivgen-hash-alg=md5,hash-alg=sha512", "3G"),
    ("key-secret=sec0,size=5M", "64k"),
], ids=["default", "size-1000", "aes-128-cbc-full", "aes-256-ecb-essiv-md5", "aes-128-xts-essiv-md5", "size-option"])
def test_luks_target(instar, tmp_path, opts, size):
    """-O luks: the payload offset of the master key's length plus the size, both numbers."""
    argv = ["measure", *SECRET, "-O", "luks", "-o", opts + ",iter-time=10", "--size", size]
    expected = run_oracle_retrying(argv, tmp_path)
    tl.assert_same(expected, instar.run(argv, cwd=tmp_path), " ".join(argv))
    assert expected.returncode == 0, expected.describe()


def test_luks_target_of_images(instar, tmp_path):
    tl.qemu_img("create", "-q", "-f", "raw", "odd.raw", "1000", cwd=tmp_path)
    tl.qemu_img("create", "-q", "-f", "qcow2", "src.qcow2", "16M", cwd=tmp_path)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 1M 3M", "src.qcow2", cwd=tmp_path)
    for args in (["odd.raw"], ["--output=json", "src.qcow2"], ["-o", "size=1G", "src.qcow2"]):
        argv = ["measure", *SECRET, "-O", "luks", "-o", "key-secret=sec0,iter-time=10", *args]
        expected = run_oracle_retrying(argv, tmp_path)
        tl.assert_same(expected, instar.run(argv, cwd=tmp_path), " ".join(argv))
        assert expected.returncode == 0, expected.describe()


def make_bad_second_cluster(path):
    """A 4 KiB-cluster qcow2 with data in clusters 0 and 1, then cluster 1's
    L2 entry pointing at an unaligned host offset (a corruption QEMU
    reports when block status reaches it)."""
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", path.name, "1M", cwd=path.parent)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 8k", "-c", "write -P 2 512k 4k", path.name, cwd=path.parent)
    with open(path, "r+b") as f:
        hdr = f.read(72)
        (l1_off,) = struct.unpack_from(">Q", hdr, 40)
        f.seek(l1_off)
        (l2,) = struct.unpack(">Q", f.read(8))
        l2_off = l2 & 0x00FFFFFFFFFFFE00
        f.seek(l2_off + 8)
        (e,) = struct.unpack(">Q", f.read(8))
        f.seek(l2_off + 8)
        f.write(struct.pack(">Q", e + 0x200))


@pytest.mark.parametrize("cluster_size", ["64k", "8k", "4k", "512"])
def test_steps_over_a_counted_cluster(instar, tmp_path, cluster_size):
    """With 64k or 8k target clusters, QEMU counts cluster 0 of the target
    from offset 0 and asks next at its end: the bad entry is never read.
    With 4k or 512-byte clusters it asks at 4k and fails."""
    make_bad_second_cluster(tmp_path / "bad.qcow2")
    argv = ["measure", "-O", "qcow2", "-o", f"cluster_size={cluster_size}", "bad.qcow2"]
    expected, actual = tl.run_both(instar, argv, cwd=tmp_path)
    tl.assert_same(expected, actual, " ".join(argv))
    assert (expected.returncode == 0) == (cluster_size in ("64k", "8k")), expected.describe()


def make_snapshots(path, entry, off_delta=0, l1_size=None):
    """A 4 MiB qcow2 with two snapshots ('first', 'second', data written
    before and between them), then snapshot number `entry` (0-based) of the
    table given a moved L1 table offset or another L1 size."""
    tl.qemu_img("create", "-q", "-f", "qcow2", path.name, "4M", cwd=path.parent)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 1M", path.name, cwd=path.parent)
    tl.qemu_img("snapshot", "-c", "first", path.name, cwd=path.parent)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 2 2M 1M", path.name, cwd=path.parent)
    tl.qemu_img("snapshot", "-c", "second", path.name, cwd=path.parent)
    with open(path, "r+b") as f:
        hdr = f.read(72)
        (nb,) = struct.unpack_from(">I", hdr, 60)
        (off,) = struct.unpack_from(">Q", hdr, 64)
        for i in range(nb):
            f.seek(off)
            e = f.read(40)
            l1_off, l1_len = struct.unpack_from(">QI", e, 0)
            id_len, name_len = struct.unpack_from(">HH", e, 12)
            (extra,) = struct.unpack_from(">I", e, 36)
            if i == entry:
                f.seek(off)
                f.write(struct.pack(">QI", l1_off + off_delta, l1_len if l1_size is None else l1_size))
            off = (off + 40 + extra + id_len + name_len + 7) & ~7


@pytest.mark.parametrize("damage", [
    {"entry": 0, "off_delta": 0x200},      # "Snapshot L1 table offset invalid" (or, by id, the name)
    {"entry": 1, "l1_size": 5_000_000},    # "Snapshot L1 table too large"
    {"entry": 1, "off_delta": 1 << 40},    # past the end of the file: reads as zeros
    {"entry": 0, "l1_size": 0},            # an empty table: nothing allocated
], ids=["unaligned", "too-large", "past-eof", "empty"])
@pytest.mark.parametrize("target", ["qcow2", "raw"])
def test_snapshot_tables(instar, tmp_path, damage, target):
    """-l loads the snapshot's L1 table as qcow2_snapshot_load_tmp() does,
    with its checks, before the target is even looked at; a bad offset
    found by id sends bdrv_snapshot_load_tmp_by_id_or_name() to the name."""
    make_snapshots(tmp_path / "s.qcow2", **damage)
    for sel in ["first", "second", "1", "2", "snapshot.id=1", "snapshot.name=second"]:
        argv = ["measure", "-O", target, "-l", sel, "s.qcow2"]
        tl.assert_same(*tl.run_both(instar, argv, cwd=tmp_path), " ".join(argv))
