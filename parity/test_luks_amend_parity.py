"""amend of LUKS key slots (raw `-f luks` volumes, and qcow2 images with
encrypt.format=luks and `encrypt.*` options): parity with qemu-img 7.2.

qemu-img amend adds a key slot (state=active: the master key unlocked
with the volume's secret, the new passphrase's slot written) or erases
slots (state=inactive: by keyslot= or by the passphrase old-secret= they
hold).  An added slot's salt and AF-split stripes are random and its
iterations come from timing, and an erased slot's key material is
overwritten with random bytes, so the results cannot be equal byte for
byte.  Each tool amends its own copy of a volume qemu-img made; both runs
must agree on exit code, stdout and stderr; then each result is judged
on its own terms:

* every passphrase that should open it does (qemu-img compare against the
  source volume opened with its own key: the same data), and every one
  that should not fails with qemu's message;
* the header's deterministic parts are the source's (all but the slots
  changed) and the changed slots' states, offsets and stripes are the
  oracle's; an erased slot has a zero salt and no iterations, and its key
  material no longer is the source's;
* the payload and the key material of the slots left alone are the
  source's, byte for byte (qcow2: every byte outside its LUKS header's
  clusters).

The option checks made before any key slot is looked at are
test_luksraw_parity.py's (amend cases).
"""

from __future__ import annotations

import re
import struct

import pytest

import instar_testlib as tl

# Left out of --slice runs: the module's fixture has qemu-img make and
# re-key volumes with three passphrases (about 27 s under TCG) for any one
# case, and the key slot code it proves runs in the guest the same on every
# backend (the other LUKS modules' cases in the slice unlock volumes); the
# full run on the default backend keeps it.
pytestmark = pytest.mark.not_in_slice

PW = {"sec0": "s3cret-pass", "sec1": "other-pass", "sec2": "third-pass"}
OBJS = [x for k, v in PW.items() for x in ("--object", f"secret,id={k},data={v}")]
SLOT_OFF, SLOT_LEN = 208, 48


def create(*args):
    tl.qemu_img_retried("create", *args)


def lopts(img, sec="sec0"):
    if str(img).endswith(".qcow2"):
        return f"driver=qcow2,file.filename={img},encrypt.key-secret={sec}"
    return f"driver=luks,file.filename={img},key-secret={sec}"


def luks_extent(b: bytes, name: str):
    """(offset, length) of the LUKS header and key material in the file b."""
    if not name.endswith(".qcow2"):
        return 0, struct.unpack(">I", b[104:108])[0] * 512
    # header_length (v3); a version 2 header is 72 bytes
    off = struct.unpack(">I", b[100:104])[0] if struct.unpack(">I", b[4:8])[0] >= 3 else 72
    while off + 8 <= len(b):
        magic, n = struct.unpack(">II", b[off:off + 8])
        if magic == 0x0537BE77:
            return struct.unpack(">QQ", b[off + 8:off + 24])
        assert magic != 0, "no crypto header extension"
        off += 8 + (n + 7) // 8 * 8
    raise AssertionError("no crypto header extension")


def add_slot(img, sec, slot):
    tl.qemu_img("amend", *OBJS, "--image-opts", lopts(img), "-o",
                f"state=active,new-secret={sec},keyslot={slot},iter-time=10")


@pytest.fixture(scope="module")
def vols(tmp_path_factory):
    d = tmp_path_factory.mktemp("luksamend")
    create("-q", *OBJS, "-f", "luks", "-o", "key-secret=sec0,iter-time=10", str(d / "a.luks"), "1M")
    tl.qemu_io(*OBJS, "--image-opts", lopts(d / "a.luks"), "-c", "write -P 0x5a 0 300k",
               "-c", "write -P 0xa5 700k 5000")
    create("-q", *OBJS, "-f", "luks", "-o",
           "key-secret=sec0,iter-time=10,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,"
           "ivgen-hash-alg=sha256,hash-alg=sha1", str(d / "cbc.luks"), "512k")
    tl.qemu_io(*OBJS, "--image-opts", lopts(d / "cbc.luks"), "-c", "write -P 0x77 512 100k")
    # slot 0: sec0, slot 5: sec1
    tl.copy_file(d / "a.luks", d / "two.luks")
    add_slot(d / "two.luks", "sec1", 5)
    # slot 0: sec0, slots 1 and 2: sec1
    tl.copy_file(d / "a.luks", d / "three.luks")
    add_slot(d / "three.luks", "sec1", 1)
    add_slot(d / "three.luks", "sec1", 2)
    # all eight slots in use (sec0 in 0, sec2 in 1..7)
    tl.copy_file(d / "a.luks", d / "full.luks")
    for i in range(1, 8):
        add_slot(d / "full.luks", "sec2", i)
    # qcow2 with encrypt.format=luks: slot 0 sec0; e2: and slot 3 sec1
    create("-q", *OBJS, "-f", "qcow2", "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
           str(d / "e.qcow2"), "1M")
    tl.qemu_io(*OBJS, "--image-opts", lopts(d / "e.qcow2"), "-c", "write -P 0x66 64k 200k")
    tl.copy_file(d / "e.qcow2", d / "e2.qcow2")
    tl.qemu_img("amend", *OBJS, "--image-opts", lopts(d / "e2.qcow2"), "-o",
                "encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=3,encrypt.iter-time=10")
    # e.qcow2 with a persistent bitmap b0 (bits set by a write after it)
    tl.copy_file(d / "e.qcow2", d / "eb.qcow2")
    tl.qemu_img("bitmap", *OBJS, "--add", "--image-opts", lopts(d / "eb.qcow2"), "b0")
    tl.qemu_io(*OBJS, "--image-opts", lopts(d / "eb.qcow2"), "-c", "write -P 0x67 512k 64k")
    # a version 2 qcow2 image with encrypt.format=luks
    create("-q", *OBJS, "-f", "qcow2", "-o",
           "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,compat=0.10", str(d / "ev2.qcow2"), "1M")
    tl.qemu_io(*OBJS, "--image-opts", lopts(d / "ev2.qcow2"), "-c", "write -P 0x66 64k 200k")
    return d


def slots(b: bytes):
    return [b[SLOT_OFF + SLOT_LEN * i:SLOT_OFF + SLOT_LEN * (i + 1)] for i in range(8)]


def slot_fields(s: bytes):
    active, iters = struct.unpack(">II", s[:8])
    off, stripes = struct.unpack(">II", s[40:48])
    return active, iters, s[8:40], off, stripes


def material(b: bytes, s: bytes, mk_len: int):
    _, _, _, off, stripes = slot_fields(s)
    return b[off * 512:off * 512 + mk_len * stripes]


def check_layout(src: bytes, oracle: bytes, ours: bytes, name: str):
    """ours against the source and the oracle's result (module docstring)."""
    assert len(ours) == len(src) == len(oracle), "the file length changed"
    base, length = luks_extent(src, name)
    # (qcow2: qemu's qcow2_update_header() after the change writes the header unchanged)
    assert oracle[:base] == src[:base] and oracle[base + length:] == src[base + length:], \
        "qemu-img changed bytes outside the LUKS header and key material"
    assert ours[:base] == src[:base] and ours[base + length:] == src[base + length:], \
        "bytes outside the LUKS header and key material changed"
    src, oracle, ours = src[base:base + length], oracle[base:base + length], ours[base:base + length]
    assert ours[:SLOT_OFF] == src[:SLOT_OFF], "the header's fixed part changed"
    mk_len = struct.unpack(">I", src[108:112])[0]
    for i, (s, o, u) in enumerate(zip(slots(src), slots(oracle), slots(ours))):
        if o == s and material(oracle, o, mk_len) == material(src, s, mk_len):
            assert u == s, f"slot {i} changed (qemu-img left it alone)"
            assert material(ours, u, mk_len) == material(src, s, mk_len), f"slot {i}'s key material changed"
            continue
        oa, oi, osalt, ooff, ostr = slot_fields(o)
        ua, ui, usalt, uoff, ustr = slot_fields(u)
        assert (ua, uoff, ustr) == (oa, ooff, ostr), f"slot {i}: state, offset or stripes differ"
        if oa == 0xDEAD:
            assert (ui, usalt) == (0, bytes(32)), f"slot {i}: an erased slot keeps iterations or salt"
            assert material(ours, u, mk_len) != material(src, s, mk_len), f"slot {i}: key material not erased"
        else:
            assert ui >= 1000 and usalt != s[8:40], f"slot {i}: no new salt or too few iterations"


def check_keys(src, img, good, bad):
    """qemu-img compare opens (unlocks) img with each secret; info would not."""
    for sec in good:
        r = tl.run_oracle(["compare", *OBJS, "--image-opts", lopts(src), lopts(img, sec)])
        assert r.returncode == 0, f"{sec} does not open {img.name} to the source's data: {r.describe()}"
    for sec in bad:
        r = tl.run_oracle(["compare", *OBJS, "--image-opts", lopts(img, sec), lopts(img, sec)])
        assert r.returncode == 2 and b"Invalid password, cannot unlock any keyslot" in r.stderr, \
            f"{sec} should not open {img.name}: {r.describe()}"


# (id, volume, -o options, extra arguments, secrets that open the result, secrets that do not)
CASES = [
    ("add-first-free", "a.luks", "state=active,new-secret=sec1,iter-time=10", [], ["sec0", "sec1"], ["sec2"]),
    ("add-keyslot", "a.luks", "state=active,new-secret=sec1,keyslot=6,iter-time=10", [], ["sec0", "sec1"], []),
    ("add-same-passphrase", "a.luks", "state=active,new-secret=sec0,iter-time=10", [], ["sec0"], ["sec1"]),
    ("add-next-free", "two.luks", "state=active,new-secret=sec2,iter-time=10", [], ["sec0", "sec1", "sec2"], []),
    ("add-cbc-essiv-sha1", "cbc.luks", "state=active,new-secret=sec1,iter-time=10", [], ["sec0", "sec1"], []),
    ("add-force-over-other", "two.luks", "state=active,new-secret=sec2,keyslot=5,iter-time=10", ["--force"],
     ["sec0", "sec2"], ["sec1"]),
    ("add-force-over-own", "a.luks", "state=active,new-secret=sec1,keyslot=0,iter-time=10", ["--force"],
     ["sec1"], ["sec0"]),
    ("add-force-free", "a.luks", "state=active,new-secret=sec1,keyslot=2,iter-time=10", ["--force"],
     ["sec0", "sec1"], []),
    ("add-with-other-key", "two.luks", "state=active,new-secret=sec2,iter-time=10", [], ["sec1", "sec2"], []),
    ("err-add-full", "full.luks", "state=active,new-secret=sec1,iter-time=10", [], ["sec0", "sec2"], ["sec1"]),
    ("err-add-over-active", "full.luks", "state=active,new-secret=sec1,keyslot=3", [], ["sec0"], ["sec1"]),
    ("erase-keyslot", "two.luks", "state=inactive,keyslot=5", [], ["sec0"], ["sec1"]),
    ("erase-keyslot-0", "two.luks", "state=inactive,keyslot=0", [], ["sec1"], ["sec0"]),
    ("erase-keyslot-old-secret", "two.luks", "state=inactive,keyslot=5,old-secret=sec1", [], ["sec0"], ["sec1"]),
    ("erase-old-secret", "two.luks", "state=inactive,old-secret=sec1", [], ["sec0"], ["sec1"]),
    ("erase-old-secret-two-slots", "three.luks", "state=inactive,old-secret=sec1", [], ["sec0"], ["sec1"]),
    ("erase-old-secret-six-slots", "full.luks", "state=inactive,old-secret=sec2", [], ["sec0"], ["sec2"]),
    ("erase-one-of-two", "three.luks", "state=inactive,keyslot=2", [], ["sec0", "sec1"], []),
    ("erase-force-inactive", "two.luks", "state=inactive,keyslot=3", ["--force"], ["sec0", "sec1"], []),
    ("erase-force-only", "a.luks", "state=inactive,keyslot=0", ["--force"], [], ["sec0"]),
    ("erase-force-all-matching", "three.luks", "state=inactive,old-secret=sec1", ["--force"], ["sec0"], ["sec1"]),
    ("erase-force-every-slot", "a.luks", "state=inactive,old-secret=sec0", ["--force"], [], ["sec0"]),
    ("err-erase-no-match", "two.luks", "state=inactive,old-secret=sec2", [], ["sec0", "sec1"], []),
    ("err-erase-keyslot-other-secret", "two.luks", "state=inactive,keyslot=0,old-secret=sec1", [],
     ["sec0", "sec1"], []),
    ("err-erase-keyslot-inactive-old-secret", "two.luks", "state=inactive,keyslot=3,old-secret=sec0", [],
     ["sec0", "sec1"], []),
    ("err-erase-all-match", "a.luks", "state=inactive,old-secret=sec0", [], ["sec0"], []),
    ("err-erase-only-old-secret", "a.luks", "state=inactive,keyslot=0,old-secret=sec0", [], ["sec0"], []),
    # -p: img_amend()'s progress around the driver's amend, a refusal included
    ("add-progress", "a.luks", "state=active,new-secret=sec1,iter-time=10", ["-p"], ["sec0", "sec1"], []),
    ("err-add-over-active-progress", "two.luks", "state=active,new-secret=sec2,keyslot=5", ["-p"],
     ["sec0", "sec1"], []),
    ("err-parse-progress", "a.luks", "foo=1", ["-p"], ["sec0"], []),
    ("qcow2-add-progress", "e.qcow2", "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10",
     ["-p"], ["sec0", "sec1"], []),
    # qcow2 with encrypt.format=luks: the same, with the encrypt. prefix
    ("qcow2-add", "e.qcow2", "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10", [],
     ["sec0", "sec1"], ["sec2"]),
    ("qcow2-add-keyslot", "e2.qcow2",
     "encrypt.state=active,encrypt.new-secret=sec2,encrypt.keyslot=7,encrypt.iter-time=10", [],
     ["sec0", "sec1", "sec2"], []),
    ("qcow2-add-force", "e2.qcow2",
     "encrypt.state=active,encrypt.new-secret=sec2,encrypt.keyslot=3,encrypt.iter-time=10", ["--force"],
     ["sec0", "sec2"], ["sec1"]),
    ("qcow2-erase-keyslot", "e2.qcow2", "encrypt.state=inactive,encrypt.keyslot=3", [], ["sec0"], ["sec1"]),
    ("qcow2-erase-old-secret", "e2.qcow2", "encrypt.state=inactive,encrypt.old-secret=sec0", [], ["sec1"],
     ["sec0"]),
    ("err-qcow2-add-over-active", "e2.qcow2", "encrypt.state=active,encrypt.new-secret=sec2,encrypt.keyslot=0",
     [], ["sec0", "sec1"], []),
    ("err-qcow2-state-missing", "e.qcow2", "encrypt.keyslot=1", [], ["sec0"], []),
    ("err-qcow2-no-new-secret", "e.qcow2", "encrypt.state=active", [], ["sec0"], []),
    ("err-qcow2-erase-only", "e.qcow2", "encrypt.state=inactive,encrypt.keyslot=0", [], ["sec0"], []),
    ("err-qcow2-erase-no-match", "e2.qcow2", "encrypt.state=inactive,encrypt.old-secret=sec2", [], ["sec0"], []),
    ("err-qcow2-erase-all-match", "e.qcow2", "encrypt.state=inactive,encrypt.old-secret=sec0", [], ["sec0"], []),
    ("err-qcow2-keyslot-range", "e.qcow2", "encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=8",
     [], ["sec0"], []),
    ("err-qcow2-unknown-secret", "e.qcow2", "encrypt.state=active,encrypt.new-secret=nosuch", [], ["sec0"], []),
    ("err-qcow2-wrong-key", "e.qcow2", "encrypt.state=active,encrypt.new-secret=sec2,encrypt.iter-time=10",
     [], ["sec0"], []),
    ("err-luks-wrong-key", "a.luks", "state=active,new-secret=sec2,iter-time=10", [], ["sec0"], []),
]



def amend_both(instar, vols, tmp_path, argv, img, cid):
    """argv under both tools on copies of vols/img, run again (up to 10 times) while qemu-img's
    PBKDF2 benchmark fails, as it does now and then with a short iter-time on the real clock;
    the same results, an error exactly for the err- cases.  Returns both results and the
    directory holding the oracle/ and instar/ copies."""
    for attempt in range(10):
        expected, actual = tl.run_both_on_copies(instar, argv, [vols / img], tmp_path / str(attempt),
                                                 timeout=300)
        if b"Unable to get accurate CPU usage" not in expected.stderr + actual.stderr:
            break
    tl.assert_same(expected, actual, " ".join(argv))
    assert (expected.returncode != 0) == cid.startswith("err-"), expected.describe()
    return expected, actual, tmp_path / str(attempt)

@pytest.mark.parametrize("cid,img,opts,extra,good,bad", CASES, ids=[c[0] for c in CASES])
def test_luks_amend(instar, vols, tmp_path, cid, img, opts, extra, good, bad):
    key = "sec1" if cid in ("add-with-other-key", "err-qcow2-wrong-key", "err-luks-wrong-key") else "sec0"
    argv = ["amend", *OBJS, *extra, "--image-opts", lopts(img, key), "-o", opts]
    expected, actual, tmp_path = amend_both(instar, vols, tmp_path, argv, img, cid)
    src = (vols / img).read_bytes()
    oracle, ours = tmp_path / "oracle" / img, tmp_path / "instar" / img
    if expected.returncode != 0:
        assert tl.same_content(oracle, vols / img)
        assert tl.same_content(ours, vols / img), "a refused amend changed the volume"
        return
    check_layout(src, oracle.read_bytes(), ours.read_bytes(), img)
    check_keys(vols / img, ours, good, bad)


@pytest.mark.real_pbkdf2  # the count past 2^32 needs each tool's real PBKDF2 speed
@pytest.mark.parametrize("img,prefix", [("a.luks", ""), ("e.qcow2", "encrypt.")], ids=["luks", "qcow2"])
def test_luks_amend_iterations_too_large(instar, vols, tmp_path, img, prefix):
    """An iter-time whose iteration count passes 2^32 - 1: qemu's error and
    its hint without a newline.  The count comes from each tool's own
    benchmark, so it is masked."""
    opts = f"{prefix}state=active,{prefix}new-secret=sec1,{prefix}iter-time=100000000"
    argv = ["amend", *OBJS, "--image-opts", lopts(img), "-o", opts]
    expected, actual = tl.run_both_on_copies(instar, argv, [vols / img], tmp_path, timeout=300)
    mask = re.compile(rb"PBKDF iterations \d+ ")
    assert expected.returncode == actual.returncode == 1, (expected.describe(), actual.describe())
    assert mask.sub(b"PBKDF iterations N ", expected.stderr) == mask.sub(b"PBKDF iterations N ", actual.stderr)
    assert expected.stdout == actual.stdout == b""
    assert tl.same_content(tmp_path / "instar" / img, vols / img), "a failed amend changed the image"


# Other qcow2 options on an encrypted image, alone or with encrypt.*, which qcow2_amend_options()
# applies after an upgrade and before the rest (id, image, -o options, secrets that open the result).
COMBINED = [
    ("lazy", "e.qcow2", "lazy_refcounts=on", ["sec0"]),
    ("refcount-bits", "e.qcow2", "refcount_bits=4", ["sec0"]),
    ("downgrade", "e.qcow2", "compat=0.10", ["sec0"]),
    ("size-grow", "e.qcow2", "size=3M", ["sec0"]),
    ("size-shrink", "e2.qcow2", "size=512k", ["sec0", "sec1"]),
    ("upgrade", "ev2.qcow2", "compat=1.1", ["sec0"]),
    ("add-and-refcount-bits", "e.qcow2",
     "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10,refcount_bits=8", ["sec0", "sec1"]),
    ("erase-and-downgrade", "e2.qcow2", "encrypt.state=inactive,encrypt.keyslot=3,compat=0.10", ["sec0"]),
    ("add-and-size", "e.qcow2", "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10,size=2M",
     ["sec0", "sec1"]),
    ("upgrade-add-and-lazy", "ev2.qcow2",
     "compat=1.1,encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10,lazy_refcounts=on",
     ["sec0", "sec1"]),
    # persistent bitmaps: loaded and marked in use at the open, stored at the close
    ("bitmaps-refcount-bits", "eb.qcow2", "refcount_bits=8", ["sec0"]),
    ("bitmaps-add", "eb.qcow2", "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10",
     ["sec0", "sec1"]),
    ("bitmaps-downgrade", "eb.qcow2", "compat=0.10", ["sec0"]),
    ("err-add-over-active-and-lazy", "e2.qcow2",
     "encrypt.state=active,encrypt.new-secret=sec2,encrypt.keyslot=0,lazy_refcounts=on", ["sec0", "sec1"]),
    # the key slot is added before the refcount width is refused
    ("err-add-then-refcount-bits-v2", "ev2.qcow2",
     "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10,refcount_bits=8", ["sec0", "sec1"]),
]


def test_qcow2_amend_encrypted_bitmaps_refused(instar, vols, tmp_path):
    """instar's refusal (docs/differences.md): encrypt.* with other options of an image with
    persistent bitmaps, before anything is written."""
    tl.copy_file(vols / "eb.qcow2", tmp_path / "eb.qcow2")
    r = instar.run(["amend", *OBJS, "--image-opts", lopts("eb.qcow2"), "-o",
                    "encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10,lazy_refcounts=on"],
                   cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == (
        b"qemu-img: Amending encrypt.* with other options of encrypted qcow2 images with persistent "
        b"bitmaps is not supported by instar\n"), r.describe()
    assert tl.same_content(tmp_path / "eb.qcow2", vols / "eb.qcow2")


@pytest.mark.parametrize("cid,img,opts,good", COMBINED, ids=[c[0] for c in COMBINED])
def test_qcow2_amend_encrypted(instar, vols, tmp_path, cid, img, opts, good):
    """Outside the LUKS header and key material the result is the oracle's byte for byte; inside,
    the same slots change (their salts and iterations are each tool's own), and the secrets open
    it to the source's data."""
    argv = ["amend", *OBJS, "--image-opts", lopts(img), "-o", opts]
    expected, actual, tmp_path = amend_both(instar, vols, tmp_path, argv, img, cid)
    src = (vols / img).read_bytes()
    oracle, ours = (tmp_path / "oracle" / img).read_bytes(), (tmp_path / "instar" / img).read_bytes()
    base, length = luks_extent(src, img)
    assert len(ours) == len(oracle), "the file lengths differ"
    assert ours[:base] == oracle[:base] and ours[base + length:] == oracle[base + length:], \
        "bytes outside the LUKS header and key material differ from the oracle's"
    o, u = oracle[base:base + length], ours[base:base + length]
    assert u[:SLOT_OFF] == o[:SLOT_OFF], "the LUKS header's fixed part differs"
    for i, (so, su) in enumerate(zip(slots(o), slots(u))):
        (oa, _, _, ooff, ostr), (ua, _, _, uoff, ustr) = slot_fields(so), slot_fields(su)
        assert (ua, uoff, ustr) == (oa, ooff, ostr), f"slot {i}: state, offset or stripes differ"
    for sec in good:
        r = tl.run_oracle(["compare", *OBJS, "--image-opts", lopts(vols / img),
                           lopts(tmp_path / "instar" / img, sec)])
        assert r.returncode == 0, f"{sec} does not open the result to the source's data: {r.describe()}"
