"""`qemu-img map` parity (qemu-img 7.2 vs instar), written before instar's map.

map opens its image read-only, so both tools run on the SAME files (the
image set's root is the cwd) with the same arguments; exit code, stdout and
stderr must match byte for byte.  Note what that covers: qemu-img's extent
merging (entries merge only when depth, flags, file and contiguous host
offset agree), the human format's coalescing of zero and unallocated
ranges, its refusal of compressed clusters (`File contains external,
encrypted or compressed clusters.`, after the header line), and block
status read from the host file (holes inside allocated qcow2 clusters read
as `"zero": true`, so images are copied with their holes where they are).
A case id starting with `err-` must make qemu-img fail, every other must
make it succeed (a guard that the case tests what its name says).
"""

from __future__ import annotations

import errno
import os

import pytest

import instar_testlib as tl

CASES = []


def case(cid, *args, into=CASES):
    into.append(pytest.param(list(args), id=cid))


#: qemu-img map fails on these in human format (compressed clusters, or I/O
#: errors on hostile images); JSON lists compressed clusters without offset.
HUMAN_FAILS = {"dp-zlib-full", "dp-zstd-full", "dp-text-comp", "dp-mixed", "dp-cs512", "dp-cs4k", "dp-cs2M",
               "dp-rb1", "dp-rb64", "dp-zstd", "dp-v2", "dp-lazy", "dp-extl2", "dp-chain-top",
               "dp-bad-l2-eof", "dp-bad-comp-eof", "dp-bad-comp-past-eof", "dp-bad-l2-unaligned",
               "backing-missing", "data-file-missing"}
JSON_FAILS = {"dp-bad-l2-unaligned", "backing-missing", "data-file-missing"}
MATRIX = [
    "dp-mixed", "dp-cs512", "dp-cs4k", "dp-cs2M", "dp-rb1", "dp-zstd", "dp-v2",
    "dp-extl2", "dp-extl2-2M", "dp-odd", "dp-empty", "dp-full", "dp-prealloc", "dp-zlib-full",
    "dp-zstd-full", "dp-text-comp", "dp-raw", "dp-mixed-raw", "dp-chain-base", "dp-chain-mid",
    "dp-chain-top", "dp-chain-rawbase", "dp-chain-flat", "dp-datafile", "dp-datafile-raw", "dp-snaps",
    "dp-bitmaps", "raw-1000", "raw-empty", "v3-big", "dp-bad-l2-eof", "dp-bad-l1-eof",
    "dp-bad-l2-unaligned", "dp-bad-comp-eof", "dp-bad-comp-past-eof", "dp-bad-chain-trunc",
    "backing-missing", "data-file-missing",
]
HUMAN = ["dp-mixed", "dp-extl2-2M", "dp-odd", "dp-empty", "dp-prealloc", "dp-raw", "dp-mixed-raw",
         "dp-chain-mid", "dp-chain-rawbase", "dp-chain-flat", "dp-datafile", "dp-datafile-raw", "raw-empty",
         "dp-bad-chain-trunc"]
for _n in MATRIX:
    case(f"{'err-' if _n in JSON_FAILS else ''}json-{_n}", "--output=json", f"@{_n}")
for _n in HUMAN:
    case(f"{'err-' if _n in HUMAN_FAILS else ''}human-{_n}", f"@{_n}")

# ---- --start-offset / --max-length ---------------------------------------------------
for _cid, _opts in [("start-1M", ["--start-offset=1M"]), ("start-unaligned", ["--start-offset", "1000"]),
                    ("start-mid-extent", ["-s", "1049600"]), ("start-end", ["--start-offset=8M"]),
                    ("start-past-end", ["--start-offset=9M"]), ("length-0", ["--max-length=0"]),
                    ("length-1", ["--max-length=1"]), ("length-64k", ["-l", "64k"]),
                    ("length-odd", ["--max-length", "1048579"]), ("length-huge", ["--max-length=1E"]),
                    ("start-and-length", ["--start-offset=1M", "--max-length=2M"]),
                    ("start-and-length-unaligned", ["-s", "1000", "-l", "3000"])]:
    case(f"json-{_cid}", "--output=json", *_opts, "@dp-chain-top")
    if _cid in ("start-unaligned", "start-past-end", "length-0", "length-odd", "start-and-length-unaligned"):
        case(f"human-{_cid}", *_opts, "@dp-extl2-2M")
case("json-start-extl2-subcluster", "--output=json", "--start-offset=6k", "--max-length=60k", "@dp-extl2")
case("json-start-in-compressed", "--output=json", "--start-offset=4200000", "@dp-mixed")
case("human-start-after-compressed", "--start-offset=4325376", "@dp-mixed")
case("human-length-before-compressed", "--max-length=4M", "@dp-mixed")
for _cid, _v in [("abc", "abc"), ("neg", "-1"), ("too-big", "16E")]:
    case(f"err-start-{_cid}", f"--start-offset={_v}", "@dp-mixed")
    case(f"err-length-{_cid}", f"--max-length={_v}", "@dp-mixed")

# ---- formats, output selection, options ------------------------------------------------
case("json-f-raw-on-qcow2", "--output=json", "-f", "raw", "@dp-mixed")
case("human-f-raw-on-qcow2", "-f", "raw", "@dp-mixed")
case("json-format-long", "--output=json", "--format=qcow2", "@dp-chain-top")
case("human-explicit", "--output=human", "@dp-chain-mid")
case("json-separate-arg", "--output", "json", "@dp-chain-mid")
case("json-U", "-U", "--output=json", "@dp-mixed")
case("json-object", "--object", "secret,id=s0,data=x", "--output=json", "@dp-mixed")
case("json-options-after-file", "@dp-mixed", "--output=json")
case("err-f-qcow2-on-raw", "-f", "qcow2", "@dp-raw")
case("err-f-bogus", "-f", "bogus", "@dp-mixed")
case("err-output-bogus", "--output=xml", "@dp-mixed")
case("err-missing-file", "no-such.qcow2")
case("err-no-args")
case("err-two-files", "@dp-mixed", "@dp-mixed")
case("err-unknown-option", "-z", "@dp-mixed")
case("err-missing-argument", "@dp-mixed", "--start-offset")
case("err-object-bogus", "--object", "bogus,id=x", "@dp-mixed")
case("help", "-h")


def _o_direct_ok(path) -> bool:
    """Whether the file system holding path opens files with O_DIRECT."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
    except OSError as e:
        if e.errno == errno.EINVAL:
            return False
        raise
    return True


@pytest.mark.parametrize("args", CASES)
def test_map(instar, images, request, args):
    argv, _ = images.resolve(args)
    argv = ["map", *argv]
    expected, actual = tl.run_both(instar, argv, cwd=images.root)
    tl.assert_same(expected, actual, " ".join(argv))
    cid = request.node.callspec.id
    # cache.direct=on on a file system without O_DIRECT (tmpfs before Linux
    # 6.6, as in the nested test system) fails to open under both tools.
    err_case = cid.startswith("err-") or (
        "direct" in cid and "off" not in cid and not _o_direct_ok(images.root / images.path("raw-unaligned-tail")))
    assert (expected.returncode != 0) == err_case, "case id does not match qemu-img's outcome: " + expected.describe()


@pytest.mark.parametrize("share", [[], ["-U"]], ids=["err-locked", "locked-U"])
def test_map_locked(instar, images, locked_image, share):
    argv = ["map", *share, "--output=json", locked_image]
    expected, actual = tl.run_both(instar, argv, cwd=images.root)
    tl.assert_same(expected, actual, " ".join(argv))
    assert (expected.returncode != 0) == (not share), expected.describe()


case("json-image-opts", "--image-opts", "--output=json", "driver=qcow2,file.filename=@dp-chain-top")
case("human-image-opts-raw", "--image-opts", "driver=raw,file.filename=@dp-mixed")
case("err-image-opts-and-f", "-f", "qcow2", "--image-opts", "driver=qcow2,file.filename=@dp-mixed")
# cache.direct=on: qemu opens the file with O_DIRECT, whose request
# alignment rounds a data extent ending inside the last sector up to its
# end (qemu-iotests 253); off, or without it, the partial sector stays.
for _img in ["raw-unaligned-tail", "raw-1000", "raw-4097", "raw-sparse-odd", "dp-raw"]:
    case(f"json-direct-{_img}", "--image-opts", "--output=json",
         f"driver=raw,file.filename=@{_img},cache.direct=on")
case("human-direct-file-option", "--image-opts", "driver=raw,file.filename=@raw-unaligned-tail,file.cache.direct=on")
case("json-direct-off", "--image-opts", "--output=json",
     "driver=raw,file.filename=@raw-unaligned-tail,cache.direct=off")
case("json-direct-file-off", "--image-opts", "--output=json",
     "driver=raw,file.filename=@raw-unaligned-tail,cache.direct=on,file.cache.direct=off")
case("json-direct-protocol", "--image-opts", "--output=json",
     "driver=file,filename=@raw-unaligned-tail,cache.direct=on")
case("json-direct-qcow2-chain", "--image-opts", "--output=json",
     "driver=qcow2,file.filename=@dp-chain-top,cache.direct=on")

REFUSED = []
case("fmt-vmdk", "--output=json", "@fmt-vmdk")


@pytest.mark.parametrize("args", REFUSED)
def test_map_refused(instar, images, request, args):
    """Deliberate refusals (docs/differences.md): qemu-img maps, instar says
    why it will not in one `qemu-img: ` line, exit 1, nothing on stdout."""
    argv, _ = images.resolve(args)
    expected, actual = tl.run_both(instar, ["map", *argv], cwd=images.root)
    assert expected.returncode == 0, "qemu-img should accept this: " + expected.describe()
    assert actual.returncode == 1 and actual.stdout == b"", actual.describe()
    err = actual.stderr.decode("utf-8", "replace")
    assert err.startswith("qemu-img: ") and err.count("\n") == 1 and "vmdk" in err, actual.describe()
