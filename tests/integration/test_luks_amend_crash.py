"""Crash consistency of `amend` on LUKS key slots (raw volumes and qcow2
with encrypt.format=luks).

INSTAR_FAULT_WRITES=N stops the guest before its (N+1)-th write.  For
every N until the amend completes, on a fresh copy of the volume, the
volume must still open with its old passphrase to the same data
(qemu-img compare against the source): qemu's order guarantees it.  An
added slot's key material is written before the header that makes the
slot active; an erased slot is marked inactive in the header before its
material is overwritten (40 times), so the passphrase that stays is never
touched.  Once the amend completes, the new passphrase opens the volume
too, or the erased one no longer does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import instar_testlib as tl

pytestmark = pytest.mark.not_in_slice

OBJS = ["--object", "secret,id=sec0,data=crash-pw", "--object", "secret,id=sec1,data=second-pw",
        "--object", "secret,id=sec2,data=third-pw"]


def lopts(img, sec):
    if str(img).endswith(".qcow2"):
        return f"driver=qcow2,file.filename={img},encrypt.key-secret={sec}"
    return f"driver=luks,file.filename={img},key-secret={sec}"


def qemu_img_retry(*args):
    tl.qemu_img_retried(*args)


@pytest.fixture(scope="module")
def vols(tmp_path_factory):
    d = tmp_path_factory.mktemp("luksamendcrash")
    qemu_img_retry("create", "-q", *OBJS, "-f", "luks", "-o", "key-secret=sec0,iter-time=10",
                   str(d / "a.luks"), "1M")
    tl.qemu_io(*OBJS, "--image-opts", lopts(d / "a.luks", "sec0"), "-c", "write -P 0x3c 0 200k",
               "-c", "write -P 0xc3 900k 3000")
    tl.copy_file(d / "a.luks", d / "two.luks")
    qemu_img_retry("amend", *OBJS, "--image-opts", lopts(d / "two.luks", "sec0"), "-o",
                   "state=active,new-secret=sec1,keyslot=5,iter-time=10")
    qemu_img_retry("create", "-q", *OBJS, "-f", "qcow2", "-o",
                   "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", str(d / "e.qcow2"), "1M")
    tl.qemu_io(*OBJS, "--image-opts", lopts(d / "e.qcow2", "sec0"), "-c", "write -P 0x5e 64k 100k")
    qemu_img_retry("create", "-q", *OBJS, "-f", "qcow2", "-o",
                   "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,compat=0.10",
                   str(d / "ev2.qcow2"), "1M")
    tl.qemu_io(*OBJS, "--image-opts", lopts(d / "ev2.qcow2", "sec0"), "-c", "write -P 0x5e 64k 100k")
    return d


def opens_to_source(src: Path, img: Path, sec: str) -> tl.Result:
    return tl.run_oracle(["compare", *OBJS, "--image-opts", lopts(src, "sec0"), lopts(img, sec)])


def sweep(instar, vols: Path, tmp_path: Path, name: str, opts: str, extra=(), keeps=("sec0",), gains=(),
          loses=()) -> int:
    src = vols / name
    for n in range(200):
        work = tmp_path / f"n{n}"
        work.mkdir()
        img = work / name
        tl.copy_file(src, img)
        r = instar.run(["amend", *OBJS, *extra, "--image-opts", lopts(name, "sec0"), "-o", opts], cwd=work,
                       env_extra={**tl.LUKS_FAST_PBKDF2, "INSTAR_FAULT_WRITES": str(n)}, timeout=300)
        done = r.returncode == 0
        if not done:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        for sec in keeps + (gains if done else ()):
            c = opens_to_source(src, img, sec)
            assert c.returncode == 0, f"cut before write {n + 1}: {sec} does not open the volume: {c.describe()}"
        if name.endswith(".qcow2"):
            c = tl.run_oracle(["check", *OBJS, "--image-opts", lopts(img, "sec0")])
            assert c.returncode == 0, f"cut before write {n + 1}: {c.describe()}"
        if done:
            for sec in loses:
                c = opens_to_source(src, img, sec)
                assert c.returncode == 2 and b"Invalid password" in c.stderr, c.describe()
            return n
        img.unlink()
    raise AssertionError("amend did not complete within 200 writes")


def test_add_slot_sweep(instar, vols, tmp_path):
    # the key material, then the header
    assert sweep(instar, vols, tmp_path, "a.luks", "state=active,new-secret=sec1,keyslot=3,iter-time=10",
                 gains=("sec1",)) == 2


def test_add_slot_force_sweep(instar, vols, tmp_path):
    # over another passphrase's active slot: sec0's slot 0 stays whole at every cut
    assert sweep(instar, vols, tmp_path, "two.luks", "state=active,new-secret=sec2,keyslot=5,iter-time=10",
                 extra=("--force",), gains=("sec2",), loses=("sec1",)) == 2


def test_erase_slot_sweep(instar, vols, tmp_path):
    # the header, then 40 overwrites of the key material
    assert sweep(instar, vols, tmp_path, "two.luks", "state=inactive,keyslot=5", loses=("sec1",)) == 41


def test_erase_by_old_secret_sweep(instar, vols, tmp_path):
    assert sweep(instar, vols, tmp_path, "two.luks", "state=inactive,old-secret=sec1", loses=("sec1",)) == 41


def test_qcow2_add_slot_sweep(instar, vols, tmp_path):
    assert sweep(instar, vols, tmp_path, "e.qcow2",
                 "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10", gains=("sec1",)) == 2


def test_qcow2_upgrade_add_slot_refcount_bits_sweep(instar, vols, tmp_path):
    """encrypt.* with other options on a version 2 image: the upgrade, the key slot, the refcount
    width change, each cut; check -r all repairs every cut (the refcount change leaks until it
    ends) and sec0 opens it to the source's data."""
    src, opts = vols / "ev2.qcow2", ("compat=1.1,encrypt.state=active,encrypt.new-secret=sec1,"
                                     "encrypt.iter-time=10,refcount_bits=8")
    for n in range(200):
        work = tmp_path / f"n{n}"
        work.mkdir()
        img = work / "ev2.qcow2"
        tl.copy_file(src, img)
        r = instar.run(["amend", *OBJS, "--image-opts", lopts("ev2.qcow2", "sec0"), "-o", opts], cwd=work,
                       env_extra={**tl.LUKS_FAST_PBKDF2, "INSTAR_FAULT_WRITES": str(n)}, timeout=300)
        done = r.returncode == 0
        if not done:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
        tl.assert_repairs_clean(lopts(img, "sec0"), *OBJS, "--image-opts", what=f"cut before write {n + 1}")
        for sec in ("sec0", "sec1") if done else ("sec0",):
            c = opens_to_source(src, img, sec)
            assert c.returncode == 0, f"cut before write {n + 1}: {sec} does not open the image: {c.describe()}"
        if done:
            assert n >= 4, "the upgrade, the key slot and the refcount change"
            return
    raise AssertionError("amend did not complete within 200 writes")
