"""Encrypted images through each of nettle's code paths in the guest.

The host passes the guest the CPU features it found (boot_info.cpu_features)
and INSTAR_CPU_FEATURES narrows them: 0 runs nettle's portable C, 1 its
x86-64 assembly, 7 also the AES-NI and SHA-NI code where the CPU has them
(docs/architecture.md, "The crypto").  Under each, instar must unlock and
decrypt an image qemu-img made (PBKDF2, AES-XTS decryption), and make one
that qemu-img unlocks and reads back (PBKDF2, AES-XTS encryption; its
PBKDF2 benchmark cut short by tl.LUKS_FAST_PBKDF2, the iteration counts
then the minimum).
tests/unit/test_luks_cpu.c checks the same code against published vectors.
"""

from __future__ import annotations

import os

import pytest

import instar_testlib as tl

# Volumes with the iteration counts a real benchmark gives (tens of
# thousands for iter-time=10), not the suites' fast clock's minimum.
pytestmark = pytest.mark.real_pbkdf2

SEC = "secret,id=sec0,data=cpu-pw"
MASKS = ["0", "1", "7"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("luks-cpu")
    (d / "data.raw").write_bytes(os.urandom(1 << 20))
    tl.qemu_img_retried("convert", "--object", SEC, "-f", "raw", "-O", "qcow2", "-o",
                        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
                        str(d / "data.raw"), str(d / "enc.qcow2"))
    return d


def spec(path):
    return f"driver=qcow2,file.filename={path},encrypt.key-secret=sec0"


@pytest.mark.parametrize("mask", MASKS)
def test_reads_qemu_image(instar, made, tmp_path, mask):
    out = tmp_path / "out.raw"
    r = instar.run(["convert", "--object", SEC, "--image-opts", spec(made / "enc.qcow2"), "-O", "raw",
                    str(out)], env_extra={"INSTAR_CPU_FEATURES": mask})
    assert r.returncode == 0, r.describe()
    assert out.read_bytes() == (made / "data.raw").read_bytes()


@pytest.mark.parametrize("mask", MASKS)
def test_writes_image_qemu_reads(instar, made, tmp_path, mask):
    enc, out = tmp_path / "enc.qcow2", tmp_path / "out.raw"
    r = instar.run(["convert", "--object", SEC, "-f", "raw", "-O", "qcow2", "-o",
                    "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
                    str(made / "data.raw"), str(enc)],
                   env_extra={**tl.LUKS_FAST_PBKDF2, "INSTAR_CPU_FEATURES": mask})
    assert r.returncode == 0, r.describe()
    tl.qemu_img("convert", "--object", SEC, "--image-opts", spec(enc), "-O", "raw", str(out))
    assert out.read_bytes() == (made / "data.raw").read_bytes()
