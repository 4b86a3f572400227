"""Crash consistency of qcow (version 1) writes (`convert -O qcow`, `dd -O qcow`).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the run completes, once the new target exists (a create cut
short leaves a new file, as qemu-img's own create does), the image must
open with the source's size (qcow has no check: qemu-img check exits 63)
and every sector must read as the source's or as zeros.  qemu's order
(get_cluster_offset(): the L1 entry first, pointing past the end of the
file, where reads give zeros; then the zeroed L2 table; the file grown
over a new cluster before the L2 entry links it; the data last) means a
table never links bytes that are not zeros or the source's.  Through AES
(`-o encryption=on`), a new cluster's sectors outside the write are
encrypted zeros and its data is written before the L2 entry links it
(qemu writes it after: the same bytes), so a linked cluster never holds
plain zeros, which would decrypt to garbage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import instar_testlib as tl

# A sweep: the guest code it proves is the same on every backend, and
# under TCG it alone takes most of the slice's time, so the full run on
# the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

MAX_WRITES = 200
SIZE = 5 << 20
#: (offset, length, pattern) of the source's data; the rest reads as zeros.
DATA = [(0, 6 << 10, 0x33), (3 << 20, 1024, 0x44)]


def source(tmp_path: Path, *backing: str) -> Path:
    src = tmp_path / "src.qcow2"
    # 4 KiB clusters: a data cluster is copied whole, its zeros included
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", *backing, str(src), str(SIZE))
    tl.qemu_io("-f", "qcow2", *[x for o, n, p in DATA for x in ("-c", f"write -P {p:#x} {o} {n}")], str(src))
    return src


#: the secret of the AES sweep, and how to open its image with it
AES = ["--object", "secret,id=s,data=abc"]


def verify(img: Path, size: int = SIZE, aes: bool = False) -> None:
    r = tl.run_oracle(["info", "-f", "qcow", "--output=json", str(img)])
    assert r.returncode == 0 and json.loads(r.stdout)["virtual-size"] == size, r.describe()
    raw = Path(f"{img}.raw")
    src = [*AES, "--image-opts", f"driver=qcow,encrypt.key-secret=s,file.filename={img}"] if aes else \
        ["-f", "qcow", str(img)]
    r = tl.run([tl.QEMU_IMG, "convert", *src, "-O", "raw", str(raw)])
    assert r.returncode == 0, r.describe()
    b = raw.read_bytes()
    want = bytearray(SIZE)
    for off, n, p in DATA:
        want[off:off + n] = bytes([p]) * n
    assert len(b) == size
    for i in range(0, size, 512):
        s = b[i:i + 512]
        assert s in (bytes(want[i:i + 512]), bytes(512)), f"sector at {i} is neither the source's nor zeros"


def sweep(instar, tmp_path: Path, args: list[str], aes: bool = False) -> None:
    def check(work: Path, done: bool) -> None:
        img = work / "out.qcow"
        verify(img, aes=aes)
        if done and not aes:
            c = tl.run_oracle(["compare", "-f", "qcow2", "-F", "qcow", str(tmp_path / "src.qcow2"), str(img)])
            assert c.returncode == 0, c.describe()

    assert tl.new_target_sweep(instar, tmp_path, args, check, MAX_WRITES) >= 3


def test_convert_sweep(instar, tmp_path):
    src = source(tmp_path)
    sweep(instar, tmp_path, ["convert", "-O", "qcow", str(src), "out.qcow"])


def test_convert_backing_sweep(instar, tmp_path):
    # a backing file makes qcow's clusters 512 bytes and its L2 tables 32 KiB; the
    # source's own backing file (zeros) leaves what it does not allocate to it
    base = tmp_path / "base.raw"
    tl.qemu_img("create", "-q", "-f", "raw", str(base), str(SIZE))
    src = source(tmp_path, "-b", str(base), "-F", "raw")
    sweep(instar, tmp_path, ["convert", "-O", "qcow", "-B", str(base), "-F", "raw", str(src), "out.qcow"])


def test_convert_aes_sweep(instar, tmp_path):
    # AES through 512-byte clusters (a backing file): the source's 1 KiB at 3 MiB is written
    # in part of an L2 table's span; a new target's sectors are the source's or zeros,
    # once decrypted (verify() converts with the key; done, every sector is the source's)
    base = tmp_path / "base.raw"
    tl.qemu_img("create", "-q", "-f", "raw", str(base), str(SIZE))
    src = source(tmp_path, "-b", str(base), "-F", "raw")
    sweep(instar, tmp_path, ["convert", *AES, "-O", "qcow", "-o", "encryption=on,encrypt.key-secret=s",
                             "-B", str(base), "-F", "raw", str(src), "out.qcow"], aes=True)


def test_convert_n_aes_partial_sweep(instar, tmp_path):
    # convert -n of 5000 bytes onto an empty AES image (4 KiB clusters): the second
    # cluster is new and written in part, its other sectors encrypted zeros
    img = tmp_path / "out.qcow"
    tl.qemu_img("create", "-q", *AES, "-f", "qcow", "-o", "encryption=on,encrypt.key-secret=s", str(img),
                str(SIZE))
    src = tmp_path / "tail.raw"
    data = bytes((i * 7 + 1) & 255 for i in range(5000))
    src.write_bytes(data)
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        tl.copy_file(img, work / "out.qcow")
        r = instar.run(["convert", "-n", *AES, "-f", "raw", str(src), "--target-image-opts",
                        "driver=qcow,encrypt.key-secret=s,file.filename=out.qcow"], cwd=work,
                       env_extra={"INSTAR_FAULT_WRITES": str(n)}, timeout=120)
        assert r.returncode == 0 or b"fault injection" in r.stderr, r.describe()
        raw = work / "out.raw"
        c = tl.run([tl.QEMU_IMG, "convert", *AES, "--image-opts",
                    f"driver=qcow,encrypt.key-secret=s,file.filename={work / 'out.qcow'}", "-O", "raw", str(raw)])
        assert c.returncode == 0, c.describe()
        b = raw.read_bytes()[:8192]
        want = data + bytes(8192 - len(data))
        for i in range(0, 8192, 512):
            assert b[i:i + 512] in (want[i:i + 512], bytes(512)), f"n={n}: sector at {i}"
        if r.returncode == 0:
            assert b == want
            assert n >= 3
            return
    raise AssertionError("convert -n did not complete")


def test_dd_sweep(instar, tmp_path):
    # dd writes every block, zeros included: two clusters of the source
    src = source(tmp_path)
    args = ["dd", "-O", "qcow", f"if={src}", "of=out.qcow", "bs=4k", "count=2"]
    assert tl.new_target_sweep(instar, tmp_path, args, lambda w, done: verify(w / "out.qcow", 8192),
                               MAX_WRITES) >= 3
