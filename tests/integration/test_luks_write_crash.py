"""Crash consistency of writes through LUKS encryption (`convert -O luks`,
`convert -O qcow2 -o encrypt.format=luks`, and qcow2's old AES method).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the run completes, once the new target exists (a create cut
short is test_luks_create_crash.py's), qemu-img must open the target with
its secret:

* a luks volume: its virtual size the source's, and every payload sector
  either never written (zeros in the file, which decrypt to noise, as
  qemu-img's own cut convert leaves them) or decrypting to the source's
  data: a sector is encrypted whole before its one write;
* an encrypted qcow2 image: `check -r all` leaves no corruption (leaked
  clusters at most, repaired), and every sector reads as the source's or
  as zeros: a cluster's data (encrypted) is written before the L2 entry
  that links it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

import instar_testlib as tl

pytestmark = pytest.mark.not_in_slice

SEC = "secret,id=sec0,data=crash-pw"
SIZE = 2 << 20
#: (offset, length, pattern) of the source's data; the rest reads as zeros.
DATA = [(0, 768 << 10, 0x31), (1 << 20, 5000, 0x42), (1900 << 10, 512, 0x53)]


def source(tmp_path: Path) -> Path:
    src = tmp_path / "src.raw"
    tl.qemu_img("create", "-q", "-f", "raw", str(src), str(SIZE))
    tl.qemu_io("-f", "raw", *[x for o, n, p in DATA for x in ("-c", f"write -P {p:#x} {o} {n}")], str(src))
    return src


def want() -> bytes:
    w = bytearray(SIZE)
    for off, n, p in DATA:
        w[off:off + n] = bytes([p]) * n
    return bytes(w)


def decrypted(img: Path, opts: str) -> bytes:
    raw = Path(f"{img}.raw")
    r = tl.run([tl.QEMU_IMG, "convert", "--object", SEC, "--image-opts", opts, "-O", "raw", str(raw)])
    assert r.returncode == 0, r.describe()
    b = raw.read_bytes()
    raw.unlink()
    return b


def verify_luks(img: Path) -> None:
    opts = f"driver=luks,file.filename={img},key-secret=sec0"
    r = tl.run_oracle(["info", "--output=json", "--object", SEC, "--image-opts", opts])
    assert r.returncode == 0 and json.loads(r.stdout)["virtual-size"] == SIZE, r.describe()
    disk = img.read_bytes()
    payload = struct.unpack(">I", disk[104:108])[0] * 512
    dec, w = decrypted(img, opts), want()
    for i in range(0, SIZE, 512):
        on_disk = disk[payload + i:payload + i + 512]
        assert on_disk in (b"", bytes(512)) or dec[i:i + 512] == w[i:i + 512], \
            f"sector at {i} was written but does not decrypt to the source's"


def verify_qcow2(img: Path) -> None:
    opts = f"driver=qcow2,file.filename={img},encrypt.key-secret=sec0"
    r = tl.run_oracle(["check", "-r", "all", "--object", SEC, "--image-opts", opts])
    assert r.returncode == 0, f"check -r all left corruption:\n  {r.describe()}"
    dec, w = decrypted(img, opts), want()
    assert len(dec) == SIZE
    for i in range(0, SIZE, 512):
        assert dec[i:i + 512] in (w[i:i + 512], bytes(512)), f"sector at {i} is neither the source's nor zeros"


def sweep(instar, tmp_path: Path, args: list[str], out: str, verify) -> None:
    def check(work: Path, done: bool) -> None:
        img = work / out
        verify(img)
        if done:
            fmt = "luks" if out.endswith(".luks") else "qcow2"
            key = "key-secret" if fmt == "luks" else "encrypt.key-secret"
            c = tl.run_oracle(["compare", "--object", SEC, "--image-opts",
                               f"driver=raw,file.filename={tmp_path / 'src.raw'}",
                               f"driver={fmt},file.filename={img},{key}=sec0"])
            assert c.returncode == 0, c.describe()

    assert tl.new_target_sweep(instar, tmp_path, args, check, env=tl.LUKS_FAST_PBKDF2) >= 3


def test_convert_luks_sweep(instar, tmp_path):
    src = source(tmp_path)
    sweep(instar, tmp_path, ["convert", "--object", SEC, "-O", "luks", "-o", "key-secret=sec0,iter-time=10",
                             str(src), "out.luks"], "out.luks", verify_luks)


def test_convert_qcow2_aes_sweep(instar, tmp_path):
    """The old AES method: the same order, the IVs of guest sectors."""
    src = source(tmp_path)
    sweep(instar, tmp_path, ["convert", "--object", SEC, "-O", "qcow2", "-o",
                             "encrypt.format=aes,encrypt.key-secret=sec0", str(src), "out.qcow2"],
          "out.qcow2", verify_qcow2)


def test_convert_qcow2_luks_sweep(instar, tmp_path):
    # (Smaller clusters make the create alone write hundreds of times: the
    # LUKS header's 2 MiB of clusters; test_luks_create_crash.py cuts those.)
    src = source(tmp_path)
    sweep(instar, tmp_path, ["convert", "--object", SEC, "-O", "qcow2", "-o",
                             "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
                             str(src), "out.qcow2"], "out.qcow2", verify_qcow2)


def test_resize_luks_writes_nothing_in_guest(instar, tmp_path):
    """resize of a luks volume: the guest only unlocks it (read-only); the
    one change is the host's truncation of the file to the payload offset
    plus the new size (block_crypto_co_truncate()), a single step a crash
    leaves done or not done.  So with no guest write allowed at all the
    resize still completes, its file qemu-img's, the data intact."""
    vol = tmp_path / "v.luks"
    for attempt in range(20):  # qemu's PBKDF2 benchmark fails now and then with a short iter-time
        r = tl.qemu_img("create", "-q", "--object", SEC, "-f", "luks", "-o", "key-secret=sec0,iter-time=10",
                        str(vol), "2M", check=attempt == 19)
        if r.returncode == 0:
            break
    opts = f"driver=luks,key-secret=sec0,file.filename={vol}"
    tl.qemu_io("--object", SEC, "--image-opts", opts, "-c", "write -P 0x31 0 768k")
    ref = tmp_path / "ref.luks"
    tl.copy_file(vol, ref)
    tl.qemu_img("resize", "--object", SEC, "--image-opts", f"driver=luks,key-secret=sec0,file.filename={ref}", "3M")
    r = instar.run(["resize", "--object", SEC, "--image-opts", opts, "3M"],
                   env_extra={"INSTAR_FAULT_WRITES": "0"}, timeout=120)
    assert r.returncode == 0 and r.stdout == b"Image resized.\n", r.describe()
    assert tl.same_files(vol, ref), "the resized volume differs from qemu-img's"
    q = tl.run([tl.QEMU_IO, "--object", SEC, "--image-opts", opts, "-c", "read -P 0x31 0 768k"])
    assert q.returncode == 0 and b"Pattern verification failed" not in q.stdout, q.describe()
