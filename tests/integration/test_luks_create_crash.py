"""Crash consistency of LUKS creation (`create -f luks`, qcow2 `encrypt.format=luks`).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the create completes:

* a raw volume is sized first, then gets slot 0's key material, then its
  header: an interrupted one is not a LUKS volume at all (qemu-img -f luks:
  `Volume is not in LUKS format`), never a header without its key;
* a qcow2 image gets its LUKS header in clusters allocated after the image
  is laid out, the refcounts flushed, and the qcow2 header naming them
  (crypt_method 2, the crypto extension) last: once the image opens it is
  either unencrypted with at most leaked clusters (qemu-img check: 0 or 3)
  or encrypted, unlocked by qemu-io with the passphrase, and clean.
"""

from __future__ import annotations

import pytest
import struct
from pathlib import Path

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

SEC = "secret,id=sec0,data=crash-pw"
MAX_WRITES = 100


def _run(instar, args, cwd, n):
    return instar.run(args, cwd=cwd, env_extra={**tl.LUKS_FAST_PBKDF2, "INSTAR_FAULT_WRITES": str(n)})


def test_create_luks_sweep(instar, tmp_path):
    args = ["create", "-q", "--object", SEC, "-f", "luks", "-o", "key-secret=sec0,iter-time=10", "v.luks", "1M"]
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        r = _run(instar, args, work, n)
        img = work / "v.luks"
        if r.returncode == 0:
            io = tl.run([tl.QEMU_IO, "--object", SEC, "--image-opts",
                         f"driver=luks,key-secret=sec0,file.filename={img}", "-c", "write -P 7 0 4k",
                         "-c", "read -P 7 0 4k"])
            assert io.returncode == 0 and b"verification failed" not in io.stdout, io.describe()
            assert n > 1
            return
        if not img.exists():
            continue
        info = tl.run_oracle(["info", "-f", "luks", str(img)])
        assert info.returncode == 1 and b"Volume is not in LUKS format" in info.stderr, info.describe()
    raise AssertionError("the create never completed")


def _crypt_method(img: Path) -> int:
    b = img.read_bytes()[:36]
    return struct.unpack(">I", b[32:36])[0] if len(b) == 36 else -1


def test_create_qcow2_luks_sweep(instar, tmp_path):
    args = ["create", "-q", "--object", SEC, "-f", "qcow2", "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,cluster_size=512k", "e.qcow2", "4M"]
    opened = 0
    for n in range(MAX_WRITES):
        work = tmp_path / f"n{n}"
        work.mkdir()
        r = _run(instar, args, work, n)
        img = work / "e.qcow2"
        cm = _crypt_method(img) if img.exists() else -1
        if cm == 2:
            io = tl.run([tl.QEMU_IO, "--object", SEC, "--image-opts",
                         f"driver=qcow2,encrypt.key-secret=sec0,file.filename={img}", "-c", "write -P 7 0 4k",
                         "-c", "read -P 7 0 4k"])
            assert io.returncode == 0 and b"verification failed" not in io.stdout, io.describe()
            chk = tl.run_oracle(["check", "--object", SEC, "--image-opts",
                                 f"driver=qcow2,encrypt.key-secret=sec0,file.filename={img}"])
            assert chk.returncode == 0, chk.describe()
            opened += 1
        elif cm == 0 and tl.run_oracle(["info", str(img)]).returncode == 0:
            chk = tl.run_oracle(["check", str(img)])
            assert chk.returncode in (0, 3), chk.describe()
            opened += 1
        if r.returncode == 0:
            assert cm == 2 and opened >= 1 and n > 4
            return
    raise AssertionError("the create never completed")
