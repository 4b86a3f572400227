"""`qemu-img bench` parity (qemu-img 7.2 vs instar), written before instar's bench.

Every case runs in directories of its own (tests/output_compare.py) on a
copy of its image: qemu-img twice, instar once.  stdout and stderr must
match byte for byte except the one timing figure, `Run completed in X
seconds.`, which is normalised (it is wall-clock time); with -w the
written image must match qemu-img's (bytes and host layout where qemu-img
writes the same bytes twice).  Request counts are kept small (-c) so the
suite stays fast; qemu-img's default is 75000 requests.
A case id starting with `err-` must make qemu-img fail, every other must
make it succeed (a guard that the case tests what its name says).

Not covered, on purpose: `-d 0` (queue depth 0) makes qemu-img 7.2 loop
forever waiting for requests it never sends, so no case can compare it.
"""

from __future__ import annotations

import re

import pytest

import output_compare as oc

_TIMING = re.compile(rb"Run completed in \d+\.\d{3} seconds\.")


def timing(b: bytes) -> bytes:
    """The elapsed time is the one thing bench prints that varies by itself."""
    return _TIMING.sub(b"Run completed in <T> seconds.", b)


CASES = []


def case(cid, *args, img="dp-small", image=True, into=CASES):
    """``image``: compare the image afterwards byte for byte where qemu-img
    is deterministic (True), only semantically ("semantic"), or not at all
    (False); see the cases that use the last two."""
    into.append(pytest.param(list(args), img, image, id=cid))


# ---- reads ----------------------------------------------------------------------------------
case("read", "-c", "100")
case("read-raw", "-c", "100", img="dp-raw")
case("read-chain", "-c", "200", "-s", "64k", img="dp-chain-top")
case("read-compressed", "-c", "50", "-s", "64k", img="dp-zlib-full")
case("read-f-raw", "-c", "10", "-f", "raw")
case("read-depth-1", "-c", "20", "-d", "1")
case("read-size-512", "-c", "20", "-s", "512")
case("read-size-odd", "-c", "20", "-s", "1000")
case("read-step", "-c", "50", "-S", "1M")
case("read-offset", "-c", "20", "-o", "512k")
case("err-read-offset-past-end", "-c", "20", "-o", "7M")
case("read-offset-wraps", "-c", "40", "-o", "1044480", "-s", "4k", "-S", "256k")
case("read-count-0", "-c", "0")
case("read-size-0", "-c", "10", "-s", "0")
case("read-q", "-q", "-c", "10")
case("read-U", "-U", "-c", "10")
case("read-t-none", "-t", "none", "-c", "10")
case("read-native-aio", "-n", "-t", "none", "-c", "10")
case("read-i-native", "-i", "native", "-t", "none", "-c", "10")
case("read-i-io_uring", "-i", "io_uring", "-c", "10")
case("read-pattern-ignored", "--pattern", "0x55", "-c", "10")
case("read-hostile", "-c", "100", "-s", "64k", img="dp-bad-comp-eof")
case("err-read-error", "-c", "10", "-s", "64k", "-o", "64k", img="dp-bad-comp-past-eof")

# ---- writes ---------------------------------------------------------------------------------
# Parallel writes (-d > 1) that allocate qcow2 clusters complete in any
# order, and so do the allocations: qemu-img's own file layout varies from
# run to run (seen for write-pattern), so those cases compare the image
# semantically (guest data, check, info, map without offsets); this is also
# why dp-small's unallocated and zero clusters (from 200 KiB on) are written
# only by the semantic cases.  Writes into allocated clusters, raw images and
# -d 1 are compared byte for byte.
S = "semantic"
case("write", "-w", "-c", "32")
case("write-allocating", "-w", "-c", "100", image=S)
case("write-pattern", "-w", "--pattern", "0xab", "-c", "12", "-d", "4", "-s", "8k", "-S", "64k", "-o", "128k", image=S)
case("write-pattern-decimal", "-w", "--pattern", "7", "-c", "16", "-s", "64k", image=S)
case("write-wraps", "-w", "--pattern", "0x33", "-c", "10", "-s", "64k", "-S", "256k", "-o", "768k", image=S)
case("write-allocating-depth-1", "-w", "--pattern", "0x34", "-d", "1", "-c", "16", "-s", "4k", "-S", "64k", "-o", "768k")
case("write-raw", "-w", "--pattern", "0x11", "-c", "50", "-s", "16k", img="dp-raw")
case("write-chain", "-w", "--pattern", "0x22", "-c", "30", "-s", "32k", "-S", "200k", img="dp-chain-top", image=S)
case("write-chain-depth-1", "-w", "--pattern", "0x23", "-d", "1", "-c", "10", "-s", "32k", "-S", "200k",
     img="dp-chain-top")
case("write-extl2", "-w", "--pattern", "0x44", "-c", "30", "-s", "2k", "-S", "6k", img="dp-extl2", image=S)
case("write-compressed-image", "-w", "-c", "20", "-s", "4k", "-S", "64k", img="dp-zlib-full", image=S)
case("write-cs512", "-w", "-c", "50", "-s", "1000", img="dp-cs512")
case("write-flush", "-w", "-c", "100", "-d", "4", "--flush-interval", "10", image=S)
case("write-flush-no-drain", "-w", "-c", "100", "-d", "4", "--flush-interval", "10", "--no-drain", image=S)
case("write-flush-equals-depth", "-w", "-c", "32", "-d", "8", "--flush-interval=8")
case("write-depth-1", "-w", "-c", "20", "-d", "1", "--pattern", "1")
case("write-t-none", "-w", "-t", "none", "-c", "20")
case("write-f-raw-on-qcow2", "-w", "-f", "raw", "-c", "4", "-o", "64k", "--pattern", "0xee")
# An external data file: guest data at its guest offset in the data file
# (compared too), metadata in the image; partial clusters copy on write
# from data, from a zero cluster (1M) and from unallocated ones.
case("write-datafile", "-w", "--pattern", "0x55", "-c", "40", "-s", "4k", "-S", "100k", "-o", "3000",
     img="dp-datafile")
case("write-datafile-depth-1", "-w", "--pattern", "0x56", "-d", "1", "-c", "40", "-s", "6000", "-S", "100k",
     "-o", "1000", img="dp-datafile")
case("write-datafile-flush", "-w", "-c", "64", "-d", "4", "--flush-interval", "8", "-s", "64k",
     img="dp-datafile")
case("write-datafile-backing", "-w", "--pattern", "0x58", "-d", "1", "-c", "40", "-s", "6000", "-S", "100k",
     "-o", "1000", img="dp-datafile-backing")
case("write-datafile-raw", "-w", "--pattern", "0x57", "-d", "1", "-c", "40", "-s", "6000", "-S", "100k",
     "-o", "1000", img="dp-datafile-raw")
# A failed request makes qemu-img exit(1) at once, with other requests still
# in flight: which of them reached the file varies from run to run (seen: 1
# different file in 6 runs), so only the messages are compared.
case("err-write-past-end", "-w", "-f", "raw", "-c", "4", "-o", "2M", "--pattern", "0xee", image=False)

# ---- errors ------------------------------------------------------------------------------------
for _cid, _args in [("count-abc", ["-c", "abc"]), ("count-big", ["-c", "3000000000"]),
                    ("depth-abc", ["-d", "x"]), ("pattern-256", ["--pattern", "256"]),
                    ("size-abc", ["-s", "abc"]), ("size-huge", ["-s", "4G"]), ("step-abc", ["-S", "abc"]),
                    ("offset-neg", ["-o", "-1"]), ("t-bogus", ["-t", "bogus"]),
                    ("i-bogus", ["-i", "bogus"]), ("native-without-direct", ["-n"]),
                    ("flush-read", ["--flush-interval", "10"]),
                    ("flush-below-depth", ["-w", "--flush-interval", "10", "-d", "20"]),
                    ("flush-abc", ["-w", "--flush-interval", "x"]), ("f-bogus", ["-f", "bogus"]),
                    ("unknown-option", ["-z"]), ("missing-argument", ["-c"])]:
    case(f"err-{_cid}", *_args)
case("err-f-qcow2-on-raw", "-f", "qcow2", "-c", "10", img="dp-raw")


@pytest.mark.parametrize("args,img,image", CASES)
def test_bench(instar, images, tmp_path, request, args, img, image):
    argv, files = images.resolve([*args, f"@{img}"])
    fmt = "raw" if img == "dp-raw" else "qcow2"
    outputs = {images.path(img): fmt} if image else {}
    if image:
        # an image's external data file: written too
        outputs.update({rel: "raw" for _, rel in files if rel.endswith(".bin")})
    w = oc.run_writing(instar, ["bench", *argv], tmp_path, files, outputs=outputs, normalise=timing,
                       contents="semantic" if image == S else "bytes")
    err_case = request.node.callspec.id.startswith("err-")
    assert (w.oracle.returncode != 0) == err_case, "case id does not match qemu-img's outcome: " + w.oracle.describe()


def test_bench_timing_is_normalised_only_there():
    """The normaliser touches the timing figure and nothing else."""
    line = b"Sending 1 read requests, 4096 bytes each, 64 in parallel (starting at offset 0, step size 4096)\n"
    assert timing(line + b"Run completed in 0.001 seconds.\n") == line + b"Run completed in <T> seconds.\n"
    assert timing(b"Run completed in 1 seconds.\n") == b"Run completed in 1 seconds.\n"


USAGE = []
case("err-no-args", into=USAGE)
case("err-two-files", "@dp-small", "@dp-small", into=USAGE)
case("err-missing-file", "no-such.qcow2", into=USAGE)
case("help", "-h", into=USAGE)


@pytest.mark.parametrize("args,img,image", USAGE)
def test_bench_usage(instar, images, tmp_path, request, args, img, image):
    argv, files = images.resolve(args)
    w = oc.run_writing(instar, ["bench", *argv], tmp_path, files, normalise=timing)
    err_case = request.node.callspec.id.startswith("err-")
    assert (w.oracle.returncode != 0) == err_case, w.oracle.describe()


@pytest.mark.parametrize("share", [[], ["-U"]], ids=["err-locked", "locked-U"])
def test_bench_locked(instar, images, locked_image, tmp_path, share):
    src = str(images.root / locked_image)
    w = oc.run_writing(instar, ["bench", *share, "-c", "10", src], tmp_path, normalise=timing)
    assert (w.oracle.returncode != 0) == (not share), w.oracle.describe()


case("read-image-opts", "--image-opts", "-c", "10", "driver=qcow2,file.filename=@dp-small", into=USAGE)

REFUSED = []
case("fmt-vmdk", "-c", "10", img="fmt-vmdk")


@pytest.mark.parametrize("args,img,image", REFUSED)
def test_bench_refused(instar, images, tmp_path, request, args, img, image):
    """Deliberate refusals (docs/differences.md): one `qemu-img: ` line, exit 1."""
    argv, files = images.resolve(args)
    w = oc.run_refused(instar, ["bench", *argv], tmp_path, files)
    oc.assert_refused(w, "vmdk", files, [rel for _, rel in files])
