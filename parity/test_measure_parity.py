"""`qemu-img measure` parity (qemu-img 7.2 vs instar).

measure reads its input (if any) read-only, so both tools run on the SAME
files (the image set's root is the cwd) with the same arguments; exit code,
stdout and stderr must match byte for byte: the required and fully
allocated sizes for every create option that changes them, `bitmaps size`
(printed for a qcow2 target measured from a qcow2 source), JSON and human.
A case id starting with `err-` must make qemu-img fail, every other must
make it succeed (a guard that the case tests what its name says).
"""

from __future__ import annotations

import pytest

import instar_testlib as tl

CASES = []


def case(cid, *args, into=CASES):
    into.append(pytest.param(list(args), id=cid))


# ---- --size --------------------------------------------------------------------------
_TOO_BIG = {("8E", "qcow2"), ("8E", "raw"), ("9223372036854775807", "qcow2")}
for _size in ["0", "1000", "1G", "8E", "9223372036854775807"]:
    for _fmt in ["qcow2", "raw"]:
        case(f"{'err-' if (_size, _fmt) in _TOO_BIG else ''}size-{_size}-{_fmt}", "-O", _fmt, "--size", _size)
case("size-default-format", "--size", "1G")
case("size-json-qcow2", "--output=json", "-O", "qcow2", "--size", "1G")
case("size-json-raw", "--output=json", "-O", "raw", "--size", "64M")
case("size-spelled-equals", "-O", "qcow2", "--size=100M")
case("size-suffix-b", "-O", "qcow2", "--size", "1048576b")

# ---- create options --------------------------------------------------------------------
OPTS = ["cluster_size=512", "cluster_size=2M", "preallocation=metadata", "preallocation=falloc",
        "preallocation=full", "extended_l2=on", "extended_l2=on,cluster_size=16k,preallocation=full",
        "refcount_bits=1", "refcount_bits=64", "compat=0.10", "data_file=x.bin", "data_file=x.bin,preallocation=full",
        "cluster_size=512,refcount_bits=1,preallocation=metadata", "backing_file=x.qcow2,backing_fmt=qcow2",
        "size=2G",
        # measure does not validate the combination (create refuses it)
        "compat=0.10,lazy_refcounts=on"]
for _o in OPTS:
    case(f"o-{_o}", "-O", "qcow2", "-o", _o, "--size", "1G")
case("o-json", "--output=json", "-O", "qcow2", "-o", "cluster_size=4k,preallocation=full", "--size", "3G")
case("o-odd-size-prealloc", "-O", "qcow2", "-o", "preallocation=full", "--size", "1000000")
case("o-raw-preallocation-full", "-O", "raw", "-o", "preallocation=full", "--size", "1G")
# (Not measured with a real LUKS secret: qemu benchmarks PBKDF for it, which
# takes seconds and fails now and then on a loaded machine: "Unable to get
# accurate CPU usage".)
for _cid, _o in [("cluster_size-3000", "cluster_size=3000"), ("bogus-key", "bogus=1"),
                 ("extl2-small-cluster", "extended_l2=on,cluster_size=4k"), ("preallocation-bogus", "preallocation=bogus"),
                 ("encrypt-no-secret", "encrypt.format=luks"), ("help", "help"),
                 # measure knows compat=0.10 and 1.1 only (create also takes v2, v3)
                 ("compat-v3", "compat=v3"), ("refcount-3", "refcount_bits=3"),
                 ("refcount-v2", "compat=0.10,refcount_bits=8"), ("invalid-list", ","),
                 ("cluster-before-compat", "cluster_size=3000,compat=bogus"),
                 ("extended_l2-bogus", "extended_l2=maybe"), ("size-bogus", "size=12x"),
                 # the LUKS options fail before the key is used (no PBKDF benchmark)
                 ("encrypt-unknown-secret", "encrypt.format=luks,encrypt.key-secret=nosuch"),
                 ("encrypt-bad-alg", "encrypt.format=luks,encrypt.cipher-alg=bogus"),
                 ("encrypt-bad-hash", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.hash-alg=sha3")]:
    case(f"err-o-{_cid}", "-O", "qcow2", "-o", _o, "--size", "1G")
case("err-o-raw-bogus", "-O", "raw", "-o", "cluster_size=4k", "--size", "1G")
case("err-o-encrypt-des", "--object", "secret,id=sec0,data=abc", "-O", "qcow2", "-o",
     "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=des", "--size", "1G")
case("err-o-encrypt-not-utf8", "--object", "secret,id=sec0,data=/w==,format=base64", "-O", "qcow2", "-o",
     "encrypt.format=luks,encrypt.key-secret=sec0", "--size", "1G")
# -O luks: the option checks that come before qemu's PBKDF2 benchmark (the
# sizes themselves: tests/integration/test_measure.py).
for _cid, _o in [("no-secret", "iter-time=10"), ("unknown-secret", "key-secret=nosuch"),
                 ("bad-alg", "key-secret=sec0,cipher-alg=bogus"), ("bad-mode", "cipher-mode=cfb"),
                 ("des", "key-secret=sec0,cipher-alg=des"), ("3des", "key-secret=sec0,cipher-alg=3des"),
                 ("essiv-sha1", "key-secret=sec0,ivgen-alg=essiv,ivgen-hash-alg=sha1"),
                 ("essiv-sha512", "key-secret=sec0,cipher-alg=aes-128,ivgen-alg=essiv,ivgen-hash-alg=sha512"),
                 ("bogus-key", "key-secret=sec0,bogus=1"), ("qcow2-option", "key-secret=sec0,cluster_size=4k")]:
    case(f"err-luks-{_cid}", "--object", "secret,id=sec0,data=abc", "-O", "luks", "-o", _o, "--size", "1G")
case("err-luks-size-only", "-O", "luks", "--size", "1M")
# AES encryption (and an unknown format) changes nothing in qcow2_measure().
for _cid, _o in [("aes", "encrypt.format=aes"), ("encryption", "encryption=on"), ("other", "encrypt.format=bogus")]:
    case(f"o-encrypt-{_cid}", "-O", "qcow2", "-o", _o, "--size", "1G")
# A size option is checked even when a file gives the size.
case("err-o-size-too-large-with-file", "-O", "qcow2", "-o", "size=8E", "@dp-mixed")
case("o-size-with-file", "-O", "qcow2", "-o", "size=1P", "@dp-mixed")

# ---- measured from an image -------------------------------------------------------------
FILES = ["dp-mixed", "dp-cs512", "dp-cs2M", "dp-extl2", "dp-zlib-full", "dp-chain-top", "dp-snaps", "dp-bitmaps",
         "dp-raw", "dp-datafile", "dp-empty", "dp-prealloc", "dp-odd", "raw-1000", "v3-big", "dp-bad-l2-eof"]
RAW_FILES = ["dp-mixed", "dp-chain-top", "dp-raw", "raw-1000"]
for _n in FILES:
    case(f"file-qcow2-{_n}", "-O", "qcow2", f"@{_n}")
for _n in RAW_FILES:
    case(f"file-raw-{_n}", "-O", "raw", f"@{_n}")
for _n in ["dp-bitmaps", "dp-raw"]:
    case(f"file-json-{_n}", "--output=json", "-O", "qcow2", f"@{_n}")
case("file-default-format", "@dp-mixed")
case("file-o-cluster_size", "-O", "qcow2", "-o", "cluster_size=512", "@dp-mixed")
case("file-o-preallocation", "-O", "qcow2", "-o", "preallocation=full", "@dp-chain-top")
case("file-o-extl2", "-O", "qcow2", "-o", "extended_l2=on", "@dp-extl2")
case("file-o-v2-bitmaps", "-O", "qcow2", "-o", "compat=0.10", "@dp-bitmaps")
case("file-f-raw-on-qcow2", "-f", "raw", "-O", "qcow2", "@dp-mixed")
case("file-U", "-U", "-O", "qcow2", "@dp-mixed")
case("file-options-after", "@dp-mixed", "-O", "qcow2")
for _cid, _l in [("name", "first"), ("name-2", "second"), ("id", "1"), ("opt-id", "snapshot.id=2"),
                 ("opt-name", "snapshot.name=second"), ("opt-both", "snapshot.id=1,snapshot.name=first")]:
    case(f"l-{_cid}", "-O", "qcow2", "-l", _l, "@dp-snaps")
case("l-cs512-json", "--output=json", "-O", "qcow2", "-o", "cluster_size=512", "-l", "second", "@dp-snaps")
case("l-json", "--output=json", "-O", "raw", "-l", "first", "@dp-snaps")
# With a backing file nothing of the snapshot is read: every cluster counts.
case("l-backing", "-O", "qcow2", "-o", "backing_file=x.qcow2", "-l", "first", "@dp-snaps")
case("l-raw-target-by-id", "-O", "raw", "-l", "snapshot.id=2", "@dp-snaps")
for _cid, _l in [("unknown", "nosuch"), ("opt-bogus", "snapshot.bogus=1"), ("opt-mismatch", "snapshot.id=1,snapshot.name=second")]:
    case(f"err-l-{_cid}", "-O", "qcow2", "-l", _l, "@dp-snaps")
case("err-l-raw", "-O", "qcow2", "-l", "first", "@dp-raw")
case("err-l-file", "-f", "file", "-O", "qcow2", "-l", "first", "@dp-snaps")
case("err-l-bad-id", "-O", "raw", "-l", "snapshot.id=1,id=1x", "@dp-snaps")
case("err-l-duplicate-id", "-O", "raw", "-l", "snapshot.id=1,id=a", "-l", "snapshot.id=2,id=a", "@dp-snaps")
# snapshot.* options win over a plain name, in either order
case("l-options-win", "-O", "raw", "-l", "snapshot.name=second", "-l", "nosuch", "@dp-snaps")
case("err-l-options-win", "-O", "raw", "-l", "first", "-l", "snapshot.name=nosuch", "@dp-snaps")
# An external data file: the table qemu-img does not list is read by qcow2_snapshot_load_tmp().
for _cid, _l in [("name", "first"), ("id", "1"), ("opt-name", "snapshot.name=first")]:
    case(f"l-datafile-{_cid}", "-O", "qcow2", "-l", _l, "@dp-datafile-snaps")
case("l-datafile-json-raw", "--output=json", "-O", "raw", "-l", "first", "@dp-datafile-snaps")
case("err-l-datafile-unknown", "-O", "qcow2", "-l", "nosuch", "@dp-datafile-snaps")
case("err-l-without-file", "-O", "qcow2", "-l", "first", "--size", "1G")

# ---- errors -------------------------------------------------------------------------------
case("err-size-and-file", "-O", "qcow2", "--size", "1G", "@dp-mixed")
case("err-neither", "-O", "qcow2")
case("err-no-args")
case("err-two-files", "@dp-mixed", "@dp-mixed")
for _cid, _v in [("abc", "abc"), ("neg", "-1"), ("16E", "16E")]:
    case(f"err-size-{_cid}", "-O", "qcow2", "--size", _v)
case("err-O-bogus", "-O", "bogus", "--size", "1G")
case("err-O-vdi", "-O", "vdi", "--size", "1G")
# -o is checked against the format's create options first: `Invalid parameter`
case("err-O-vmdk-bad-option", "-O", "vmdk", "-o", "bad=x", "--size", "1G")
case("err-O-vdi-good-option", "-O", "vdi", "-o", "static=on", "--size", "1G")
case("err-output-bogus", "--output=xml", "--size", "1G")
case("err-f-without-file", "-f", "qcow2", "--size", "1G")
case("err-image-opts-without-file", "--image-opts", "--size", "1G")
case("err-f-qcow2-on-raw", "-f", "qcow2", "-O", "qcow2", "@dp-raw")
case("err-missing-file", "-O", "qcow2", "no-such.qcow2")
case("err-hostile-unaligned", "-O", "qcow2", "@dp-bad-l2-unaligned")
case("err-missing-backing", "-O", "qcow2", "@backing-missing")
case("err-object-bogus", "--object", "bogus,id=x", "--size", "1G")
for _cid, _def in [("no-type", "id=x"), ("no-id", "secret"), ("no-data", "secret,id=x"),
                   ("bad-id", "secret,id=1x,data=a"), ("unexpected", "secret,id=x,data=a,bogus=1"),
                   ("data-and-file", "secret,id=x,data=a,file=b"), ("no-file", "secret,id=x,file=no-such-file"),
                   ("keyid-unknown", "secret,id=x,data=a,keyid=k"), ("loaded", "secret,id=x,data=a,loaded=on"),
                   ("bad-format", "secret,id=x,data=a,format=b64"), ("bad-base64", "secret,id=x,data=a&,format=base64"),
                   ("not-linked", "iothread,id=x"), ("expected-equals", "secret,id=x,data"),
                   ("bad-key", "secret,id=x,da!ta=1")]:
    case(f"err-object-{_cid}", "--object", _def, "--size", "1G")
case("err-object-duplicate", "--object", "secret,id=x,data=a", "--object", "secret,id=x,data=b", "--size", "1G")
case("object-secret", "--object", "secret,id=x,data=a", "--object", "secret,id=y,data=QQ==,format=base64",
     "--object", "qom-type=throttle-group,id=t", "--size", "1G")
# --object help ends qemu-img with exit 0 (the type list, or a type's properties)
for _cid, _def in [("help", "help"), ("help-mark", "?"), ("secret-help", "secret,id=x,help"),
                   ("unknown-type-help", "bogus,help"), ("throttle-group-help", "throttle-group,help"),
                   ("tls-creds-x509-help", "tls-creds-x509,?"), ("not-linked-help", "iothread,help")]:
    case(f"object-{_cid}", "--object", _def, "--size", "1G")
case("err-O-file", "-O", "file", "--size", "1G")
case("err-O-dmg", "-O", "dmg", "--size", "1G")
case("err-image-opts-and-f", "--image-opts", "-f", "qcow2", "driver=qcow2,file.filename=@dp-mixed")
case("image-opts", "--image-opts", "-O", "qcow2", "driver=qcow2,file.filename=@dp-mixed")
case("image-opts-raw", "--image-opts", "-O", "qcow2", "driver=raw,file.filename=@dp-mixed")
case("image-opts-file", "--image-opts", "-O", "qcow2", "driver=file,filename=@dp-mixed")
case("f-file", "-f", "file", "-O", "qcow2", "@dp-raw")
case("json-name", "-O", "qcow2", 'json:{"driver": "qcow2", "file": {"driver": "file", "filename": "@dp-mixed"}}')
# measure's option loop sends an unknown option to help() (exit 0, the full
# help on stdout), unlike the other commands' `unrecognized option`.
case("unknown-option-prints-help", "-z", "--size", "1G")
case("missing-argument-prints-help", "--size")
case("help", "-h")


@pytest.mark.parametrize("args", CASES)
def test_measure(instar, images, request, args):
    argv, _ = images.resolve(args)
    argv = ["measure", *argv]
    expected, actual = tl.run_both(instar, argv, cwd=images.root)
    tl.assert_same(expected, actual, " ".join(argv))
    err_case = request.node.callspec.id.startswith("err-")
    assert (expected.returncode != 0) == err_case, "case id does not match qemu-img's outcome: " + expected.describe()


@pytest.mark.parametrize("share", [[], ["-U"]], ids=["err-locked", "locked-U"])
def test_measure_locked(instar, images, locked_image, share):
    argv = ["measure", *share, "-O", "qcow2", locked_image]
    expected, actual = tl.run_both(instar, argv, cwd=images.root)
    tl.assert_same(expected, actual, " ".join(argv))
    assert (expected.returncode != 0) == (not share), expected.describe()


# Each refused case names what the refusal must mention.
REFUSED = []
case("fmt-vmdk", "-f", "vmdk", "-O", "qcow2", "@fmt-vmdk")


@pytest.mark.parametrize("args", REFUSED)
def test_measure_refused(instar, images, args):
    """Deliberate refusals (docs/differences.md): qemu-img measures, instar
    says why it will not in one `qemu-img: ` line, exit 1, nothing on stdout."""
    mention, args = args[0], args[1:]
    argv, _ = images.resolve(args)
    expected, actual = tl.run_both(instar, ["measure", *argv], cwd=images.root)
    assert expected.returncode == 0, "qemu-img should accept this: " + expected.describe()
    assert actual.returncode == 1 and actual.stdout == b"", actual.describe()
    err = actual.stderr.decode("utf-8", "replace")
    assert err.startswith("qemu-img: ") and err.count("\n") == 1 and mention in err, actual.describe()
