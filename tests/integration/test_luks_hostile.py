"""Hostile LUKS headers in qcow2 images (encrypt.format=luks), opened with the secret.

Each image is made by qemu-img (encrypt.iter-time=10) and then one field of
its LUKS header is changed by this file.  Where qemu-img finishes in
reasonable time, instar must print what it prints (exit code, stdout,
stderr); where qemu-img would run PBKDF2 for hours (an absurd iteration
count), instar must refuse cleanly, before the work, with its own message
(docs/differences.md).
"""

from __future__ import annotations

import struct

import pytest

import instar_testlib as tl

PW = "hostile-pw"
SEC = f"secret,id=sec0,data={PW}"
EXT_CRYPTO = 0x0537BE77
SLOTS = 208  # LUKS1: the key slots, 48 bytes each
MK_ITERS = 164


def crypto_ext(path):
    """(file offset of the extension's payload, LUKS header offset, its length)."""
    b = path.read_bytes()
    hdr_len = struct.unpack(">I", b[100:104])[0] if struct.unpack(">I", b[4:8])[0] >= 3 else 72
    off = hdr_len
    while True:
        typ, ln = struct.unpack(">II", b[off:off + 8])
        if typ == 0:
            raise AssertionError("no crypto header extension")
        if typ == EXT_CRYPTO:
            luks_off, luks_len = struct.unpack(">QQ", b[off + 8:off + 24])
            return off + 8, luks_off, luks_len
        off += 8 + ((ln + 7) & ~7)


def patch(path, pos, data):
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(data)


@pytest.fixture
def enc(tmp_path):
    p = tmp_path / "enc.qcow2"
    for attempt in range(20):  # qemu's PBKDF2 benchmark fails now and then at iter-time=10
        r = tl.qemu_img("create", "-q", "--object", SEC, "-f", "qcow2", "-o",
                        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", str(p), "1M",
                        check=attempt == 19)
        if r.returncode == 0:
            break
    tl.qemu_io("--object", SEC, "--image-opts", f"driver=qcow2,file.filename={p},encrypt.key-secret=sec0",
               "-c", "write -P 0x42 0 64k")
    return p


def args_for(p):
    return ["convert", "-O", "raw", "--object", SEC, "--image-opts",
            f"driver=qcow2,file.filename={p.name},encrypt.key-secret=sec0", "out.raw"]


def both(instar, p):
    q = tl.run([tl.QEMU_IMG, *args_for(p)], cwd=p.parent)
    (p.parent / "out.raw").unlink(missing_ok=True)
    i = instar.run(args_for(p), cwd=p.parent)
    return q, i


def test_absurd_iterations_refused(instar, enc):
    _, luks, _ = crypto_ext(enc)
    patch(enc, luks + SLOTS + 4, struct.pack(">I", 0xFFFFFFFF))
    r = instar.run(args_for(enc), cwd=enc.parent, timeout=60)
    assert r.returncode == 1, r.describe()
    assert b"PBKDF2 blocks, more than instar's limit" in r.stderr, r.describe()
    assert r.stdout == b""


def test_absurd_iterations_refused_by_check(instar, enc):
    _, luks, _ = crypto_ext(enc)
    patch(enc, luks + SLOTS + 4, struct.pack(">I", 0xFFFFFFFF))
    r = instar.run(["check", "--object", SEC, "--image-opts",
                    f"driver=qcow2,file.filename={enc.name},encrypt.key-secret=sec0"], cwd=enc.parent, timeout=60)
    assert r.returncode == 1, r.describe()
    assert b"PBKDF2 blocks, more than instar's limit" in r.stderr, r.describe()
    assert r.stdout == b""


def test_absurd_master_key_iterations_refused(instar, enc):
    _, luks, _ = crypto_ext(enc)
    patch(enc, luks + MK_ITERS, struct.pack(">I", 0xFFFFFFF0))
    r = instar.run(args_for(enc), cwd=enc.parent, timeout=60)
    assert r.returncode == 1, r.describe()
    assert b"PBKDF2 blocks, more than instar's limit" in r.stderr, r.describe()


@pytest.mark.parametrize("what", ["ext-too-short", "stripes", "stripes-overflow", "digest", "salt",
                                  "key-material", "slot-inactive", "key-bytes"])
def test_hostile_matches_qemu(instar, enc, what):
    ext, luks, ln = crypto_ext(enc)
    if what == "ext-too-short":
        # the key material now lies past the extension's end
        patch(enc, ext + 8, struct.pack(">Q", 4096))
    elif what == "stripes":
        patch(enc, luks + SLOTS + 44, struct.pack(">I", 3999))
    elif what == "stripes-overflow":
        patch(enc, luks + SLOTS + 44, struct.pack(">I", 0xFFFFFFFF))
    elif what == "digest":
        patch(enc, luks + 112, b"\0" * 20)
    elif what == "salt":
        patch(enc, luks + SLOTS + 8, b"\xff" * 32)
    elif what == "key-material":
        key_off = struct.unpack(">I", enc.read_bytes()[luks + SLOTS + 40:luks + SLOTS + 44])[0] * 512
        patch(enc, luks + key_off, b"\x13" * 4096)
    elif what == "slot-inactive":
        patch(enc, luks + SLOTS, struct.pack(">I", 0xDEAD))
    elif what == "key-bytes":
        patch(enc, luks + 108, struct.pack(">I", 0x40000000))
    q, i = both(instar, enc)
    assert q.returncode != 0, q.describe()
    assert (i.returncode, i.stdout, i.stderr) == (q.returncode, q.stdout, q.stderr), i.describe()
    assert (enc.parent / "out.raw").exists() is False  # nothing created, as qemu-img
    chk = ["check", "--object", SEC, "--image-opts", f"driver=qcow2,file.filename={enc.name},encrypt.key-secret=sec0"]
    q = tl.run([tl.QEMU_IMG, *chk], cwd=enc.parent)
    i = instar.run(chk, cwd=enc.parent)
    assert (i.returncode, i.stdout, i.stderr) == (q.returncode, q.stdout, q.stderr), i.describe()
