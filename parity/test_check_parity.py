"""`qemu-img check` parity (read-only checks, no -r): every case must give the
oracle's exit code, stdout and stderr byte for byte.

Three families of cases, each its own test id:

* corrupt-*: every image of tests/corrupt_check.py (each corruption at each
  refcount width), human and JSON output, plus -q at 16-bit refcounts;
* clean-*: every image of the foundation's info matrix (parity/images.py),
  whatever the oracle says about it (0, 63 for raw, open errors ...), human
  and JSON;
* extra-*: images only check cares about (many snapshots, compressed clusters
  shared with snapshots, fragmentation, trailing bytes, LUKS opened with its
  secret, ...) and option spellings / usage errors.

Both tools run on the SAME file with the same cwd and arguments (check without
-r does not modify the image), so no normalisation is applied.  Nothing is
expected from instar except what the oracle prints in the same run.
"""

from __future__ import annotations

import re

import pytest

import corrupt_check as cc
import instar_testlib as tl
from images import GENERATORS, SECRET


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    """Corrupt images, built lazily once per session (shared with the generator tests)."""
    return cc.session_set(tmp_path_factory)


def _compare(instar, args, cwd):
    expected, actual = tl.run_both(instar, args, cwd=cwd)
    tl.assert_same(expected, actual, f"qemu-img {' '.join(args)}")


# ---------------------------------------------------------------------------
# Corrupt images
# ---------------------------------------------------------------------------
CORRUPT = []
for _i in cc.instances():
    CORRUPT.append(pytest.param(_i, [], id=f"corrupt-human-{_i.id}"))
    CORRUPT.append(pytest.param(_i, ["--output=json"], id=f"corrupt-json-{_i.id}"))
    if _i.width == 16:
        CORRUPT.append(pytest.param(_i, ["-q"], id=f"corrupt-q-{_i.id}"))
        CORRUPT.append(pytest.param(_i, ["-f", "qcow2", "-q", "--output=json"], id=f"corrupt-f-q-json-{_i.id}"))


@pytest.mark.parametrize("inst,opts", CORRUPT)
def test_check_corrupt(instar, corrupt, inst, opts):
    name = corrupt.path(inst)
    _compare(instar, ["check", *opts, name], corrupt.root)


# ---------------------------------------------------------------------------
# The foundation's image matrix (clean images, raw, open errors)
# ---------------------------------------------------------------------------
MATRIX = [n for n in GENERATORS if not n.startswith("fmt-")]
CLEAN = []
for _n in MATRIX:
    CLEAN.append(pytest.param(_n, [], id=f"clean-human-{_n}"))
    CLEAN.append(pytest.param(_n, ["--output=json"], id=f"clean-json-{_n}"))
for _n in ("v3", "raw-data", "snapshots", "overlay", "data-file"):
    CLEAN.append(pytest.param(_n, ["-q"], id=f"clean-q-{_n}"))
for _n in ("v3", "v2", "luks", "raw-data", "overlay"):
    CLEAN.append(pytest.param(_n, ["-f", "qcow2"], id=f"clean-f-qcow2-{_n}"))
for _n in ("v3", "raw-data", "raw-empty", "luks"):
    CLEAN.append(pytest.param(_n, ["-f", "raw"], id=f"clean-f-raw-{_n}"))
    CLEAN.append(pytest.param(_n, ["-f", "raw", "--output=json"], id=f"clean-f-raw-json-{_n}"))


@pytest.mark.parametrize("name,opts", CLEAN)
def test_check_matrix(instar, images, name, opts):
    _compare(instar, ["check", *opts, images.path(name)], images.root)


# ---------------------------------------------------------------------------
# Extra images for check
# ---------------------------------------------------------------------------
def _many_snaps(s, name, rb):
    s.qcow2(name, opts=f"refcount_bits={rb},cluster_size=4k", size="16M",
            writes=("-P 1 0 256k", "-P 2 8M 64k"))
    for i in range(24):
        s.qimg("snapshot", "-c", f"s{i}", name)
        if i % 3 == 0:
            s.qio("-c", f"write -P {i + 3} {i * 64}k 8k", name)
    s.qimg("snapshot", "-d", "s5", name)
    return name


def _comp_snap(s, name, rb):
    s.qcow2(name, opts=f"refcount_bits={rb}", size="8M",
            compressed=("-P 0x42 0 64k", "-P 0x43 64k 64k", "-P 0x44 1M 64k"), writes=("-P 9 2M 64k",))
    s.qimg("snapshot", "-c", "c1", name)
    s.qio("-c", "write -P 0x45 0 4k", "-c", "write -c -P 0x46 3M 64k", name)
    s.qimg("snapshot", "-c", "c2", name)
    s.qio("-c", "write -P 0x47 1M 64k", name)
    return name


def _fragmented(s, name):
    s.qimg("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", name, "4M")
    s.qio(*[x for i in range(32) for x in ("-c", f"write -P {i} {(31 - i) * 8}k 4k")], name)
    return name


def _trailing(s, name, extra):
    s.qcow2(name, writes=("-P 5 0 64k",), size="4M")
    with open(s.root / name, "ab") as f:
        f.write(b"\xee" * extra)
    return name


def _discarded(s, name):
    s.qcow2(name, writes=("-P 5 0 1M",), size="4M")
    s.qio("-c", "discard 128k 256k", "-c", "write -z 512k 64k", "-c", "write -z -u 640k 64k", name)
    return name


def _zstd_snap(s, name):
    s.qcow2(name, opts="compression_type=zstd,extended_l2=on", size="4M",
            compressed=("-P 1 0 64k",), writes=("-P 2 1M 16k",))
    s.qimg("snapshot", "-c", "z", name)
    s.qio("-c", "write -P 3 1M 4k", name)
    return name


def _bitmap_snap_overlay(s, name):
    s.qcow2("chk-bm-base.qcow2", writes=("-P 1 0 128k",), size="4M")
    s.qimg("create", "-q", "-f", "qcow2", "-b", "chk-bm-base.qcow2", "-F", "qcow2", name)
    s.qio("-c", "write -P 2 64k 64k", name)
    s.qimg("bitmap", "--add", name, "b1")
    s.qimg("snapshot", "-c", "o1", name)
    return name


def _data_file_snapless(s, name):
    s.qimg("create", "-q", "-f", "qcow2", "-o", "data_file=chk-ext.bin,refcount_bits=2", name, "4M")
    s.qio("-c", "write -P 3 0 128k", "-c", "write -P 4 2M 64k", name)
    return name


EXTRA_GENERATORS = {
    **{f"many-snaps-rb{rb}": (lambda rb: lambda s, n: _many_snaps(s, n, rb))(rb) for rb in (8, 16, 64)},
    **{f"comp-snap-rb{rb}": (lambda rb: lambda s, n: _comp_snap(s, n, rb))(rb) for rb in (4, 8, 16)},
    "fragmented": _fragmented,
    "trailing-bytes": lambda s, n: _trailing(s, n, 1000),
    "trailing-cluster": lambda s, n: _trailing(s, n, 3 * 65536),
    "discarded": _discarded,
    "zstd-extl2-snap": _zstd_snap,
    "bitmap-snap-overlay": _bitmap_snap_overlay,
    "data-file-rb2": _data_file_snapless,
}


@pytest.fixture(scope="module")
def extra(images):
    """Lazily built extra images in the ImageSet root (names prefixed chk-)."""
    done: dict[str, str] = {}

    def get(key: str) -> str:
        if key not in done:
            done[key] = EXTRA_GENERATORS[key](images, f"chk-{key}.qcow2")
        return done[key]

    return get


EXTRA = []
for _k in EXTRA_GENERATORS:
    EXTRA.append(pytest.param(_k, [], id=f"extra-human-{_k}"))
    EXTRA.append(pytest.param(_k, ["--output=json"], id=f"extra-json-{_k}"))


@pytest.mark.parametrize("key,opts", EXTRA)
def test_check_extra(instar, images, extra, key, opts):
    _compare(instar, ["check", *opts, extra(key)], images.root)


# ---------------------------------------------------------------------------
# Encrypted images opened with their secret, option spellings, usage errors
# ---------------------------------------------------------------------------
def _luks_opts(name, images):
    return [*SECRET, "--image-opts", f"driver=qcow2,file.filename={images.path(name)},encrypt.key-secret=sec0"]


OPTS = []


def opt_case(cid, *args, into=OPTS):
    into.append(pytest.param(list(args), id=cid))


# LUKS (AES, twofish, serpent) and qcow2's old AES method are unlocked (docs/architecture.md,
# "The crypto"), as qemu-img does.
for _n in ("luks", "luks-aes128-xts", "aes-legacy", "luks-twofish-cbc", "luks-serpent-plain"):
    opt_case(f"secret-{_n}", "check", "@secret:" + _n)
    opt_case(f"secret-json-{_n}", "check", "--output=json", "@secret:" + _n)
opt_case("secret-wrong-key", "check", "--object", "secret,id=sec0,data=wrong", "--image-opts",
         "driver=qcow2,file.filename=@luks,encrypt.key-secret=sec0")
opt_case("image-opts-plain", "check", "--image-opts", "driver=qcow2,file.filename=@v3")
opt_case("image-opts-json", "check", "--output=json", "--image-opts", "driver=qcow2,file.filename=@snapshots")
opt_case("image-opts-probed", "check", "--image-opts", "file.filename=@v3")
opt_case("image-opts-raw", "check", "--image-opts", "driver=raw,file.filename=@v3")
opt_case("image-opts-file", "check", "--image-opts", "driver=file,filename=@v3")
opt_case("image-opts-and-f", "check", "-f", "qcow2", "--image-opts", "driver=qcow2,file.filename=@v3")
opt_case("image-opts-U-conflict", "check", "-U", "--image-opts", "driver=qcow2,file.filename=@v3,force-share=off")
opt_case("image-opts-missing", "check", "--image-opts", "driver=qcow2,file.filename=no-such-file")
opt_case("image-opts-unknown-option", "check", "--image-opts", "driver=qcow2,file.filename=@v3,foo=1")
opt_case("json-name", "check", 'json:{"driver":"qcow2","file":{"driver":"file","filename":"@v3"}}')
opt_case("json-name-json", "check", "--output=json", 'json:{"file":{"filename":"@snapshots"}}')
opt_case("json-name-bad", "check", 'json:{"driver":"qcow2"')
opt_case("f-file", "check", "-f", "file", "@v3")
opt_case("secret-object-unused", "check", *SECRET, "@luks")
opt_case("U", "check", "-U", "@v3")
opt_case("force-share-json", "check", "--force-share", "--output=json", "@snapshots")
opt_case("output-human", "check", "--output=human", "@v3")
opt_case("output-separate-arg", "check", "--output", "json", "@v3")
opt_case("output-after-filename", "check", "@v3", "--output=json")
opt_case("double-dash", "check", "--", "@v3")
opt_case("T-none", "check", "-T", "none", "@v3")
opt_case("cache-writeback", "check", "-T", "writeback", "@v3")
opt_case("format-long", "check", "--format=qcow2", "@v3")
opt_case("quiet-long", "check", "--quiet", "@v3")
opt_case("err-missing-file", "check", "no-such-file.qcow2")
opt_case("err-missing-file-json", "check", "--output=json", "no-such-file.qcow2")
opt_case("err-bad-output", "check", "--output=xml", "@v3")
opt_case("err-bad-repair", "check", "-r", "bogus", "@v3")
opt_case("err-unknown-driver", "check", "-f", "bogus", "@v3")
opt_case("err-extra-args", "check", "@v3", "@v2")
opt_case("err-no-args", "check")
opt_case("err-unknown-option", "check", "-z", "@v3")
opt_case("err-directory", "check", ".")
opt_case("err-bad-cache", "check", "-T", "bogus", "@v3")
opt_case("help-check-h", "check", "-h")
opt_case("locked", "check", "@locked")
opt_case("locked-U", "check", "-U", "@locked")


def _resolve(args, images, request):
    out = []
    for a in args:
        if a.startswith("@secret:"):
            out += _luks_opts(a[8:], images)
        elif a == "@locked":
            out.append(request.getfixturevalue("locked_image"))
        elif "@" in a:
            out.append(re.sub(r"@([\w.-]+)", lambda m: images.path(m.group(1)), a))
        else:
            out.append(a)
    return out


@pytest.mark.parametrize("args", OPTS)
def test_check_options(instar, images, request, args):
    _compare(instar, _resolve(args, images, request), images.root)


# ---------------------------------------------------------------------------
# Backing files in the other formats (qemu opens them with the chain; a
# broken one fails the check's open with that driver's message)
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_backings(tmp_path_factory):
    d = tmp_path_factory.mktemp("other-backings")
    for fmt in ("vmdk", "vdi", "vpc"):
        tl.qemu_img("create", "-q", "-f", fmt, f"b.{fmt}", "1M", cwd=d)
        tl.qemu_img("create", "-q", "-f", "qcow2", "-b", f"b.{fmt}", "-F", fmt, f"t-{fmt}.qcow2",
                    cwd=d)
    (d / "bad.vdi").write_bytes(b"\0" * 512)  # no vdi header
    tl.qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", "bad.vdi", "-F", "vdi", "t-bad.qcow2",
                "1M", cwd=d)
    return d


@pytest.mark.parametrize("top", ["t-vmdk.qcow2", "t-vdi.qcow2", "t-vpc.qcow2", "t-bad.qcow2"])
def test_check_other_format_backing(instar, other_backings, top):
    _compare(instar, ["check", top], other_backings)
