"""`qemu-img dd` parity (qemu-img 7.2 vs instar), written before instar's dd.

dd creates (or truncates and recreates) its output, so every case runs in
directories of its own (tests/output_compare.py): qemu-img twice, instar
once, on copies of the input; exit code, stdout, stderr and the output file
(bytes and host data/hole layout where qemu-img is deterministic) must
match.  qemu-img's quirks are part of the contract: the output size is
min(count*bs, input size) - skip*bs (count counts from the start of the
input, not after the skip), a skip past the end prints `cannot skip to
specified offset` yet exits 0 with an empty output, every block is written
(zeros too, so a raw output is fully allocated), and an existing output is
recreated.  A case id starting with `err-` must make qemu-img fail, every
other must make it succeed (a guard that the case tests what its name says).
"""

from __future__ import annotations

import pytest

import output_compare as oc

CASES = []


def case(cid, *args, out=None, into=CASES):
    outs = {"out.img": "raw"} if out is None else out
    into.append(pytest.param(list(args), outs, id=cid))


_Q = {"out.img": "qcow2"}

# ---- the image matrix -----------------------------------------------------------------
# (bs=64k: the default 512-byte blocks cost 2 system calls per sector, about a
# second of CPU per 8 MiB image and run; the default is kept for small inputs.)
for _n in ["dp-mixed", "dp-extl2", "dp-zlib-full", "dp-chain-top", "dp-datafile", "dp-raw", "dp-odd", "raw-empty",
           "dp-bad-comp-eof"]:
    case(f"raw-{_n}", f"if=@{_n}", "of=out.img", "bs=64k")
for _n in ["dp-mixed", "dp-chain-top"]:
    case(f"qcow2-{_n}", "-O", "qcow2", f"if=@{_n}", "of=out.img", "bs=64k", out=_Q)
case("default-bs", "if=@dp-small", "of=out.img")
case("default-bs-odd-input", "if=@raw-1000", "of=out.img")

# ---- bs / count / skip (a 1 MiB input) --------------------------------------------------
for _cid, _ops in [("bs-4k", ["bs=4k"]), ("bs-odd", ["bs=1000"]), ("bs-bigger-than-input", ["bs=16M"]),
                   ("count-2", ["bs=64k", "count=2"]), ("count-0", ["count=0"]),
                   ("count-past-end", ["bs=64k", "count=100"]), ("skip-1", ["bs=64k", "skip=1"]),
                   ("skip-count-from-start", ["bs=256k", "skip=1", "count=2"]),
                   ("skip-equals-count", ["bs=256k", "skip=1", "count=1"]),
                   ("skip-past-end", ["bs=256k", "skip=5"]), ("skip-past-count", ["bs=256k", "skip=3", "count=1"]),
                   ("skip-odd-bs", ["bs=1000", "skip=3", "count=500"]), ("skip-to-end", ["bs=256k", "skip=4"]),
                   ("skip-huge", ["bs=2M", "skip=4611686018427387904"]),
                   ("count-huge", ["bs=2M", "count=4611686018427387904"]),
                   ("repeated-operand", ["bs=1M", "bs=64k", "count=3"]), ("suffix-b", ["bs=4096b"]),
                   ("operands-before-options", ["bs=64k", "-O", "raw"])]:
    case(_cid, "if=@dp-small", "of=out.img", *_ops)
case("bs-1-small-input", "if=@raw-1000", "of=out.img", "bs=1", "skip=10")
case("qcow2-odd-bs-skip", "-O", "qcow2", "if=@dp-chain-top", "of=out.img", "bs=3000", "skip=5", out=_Q)
case("qcow2-count", "-O", "qcow2", "if=@dp-small", "of=out.img", "bs=64k", "count=10", out=_Q)
for _cid, _op in [("bs-0", "bs=0"), ("bs-abc", "bs=abc"), ("bs-2G", "bs=2G"), ("count-neg", "count=-1"),
                  ("skip-abc", "skip=1.5x"), ("unknown-operand", "foo=1"), ("no-equals", "bs"), ("empty-key", "=1")]:
    case(f"err-{_cid}", "if=@dp-small", "of=out.img", _op)

# ---- formats and options ------------------------------------------------------------------
case("f-raw-on-qcow2", "-f", "raw", "if=@dp-small", "of=out.img", "bs=64k")
case("U", "-U", "if=@dp-small", "of=out.img", "bs=64k")
case("object", "--object", "secret,id=s0,data=x", "if=@dp-small", "of=out.img", "bs=64k")
case("output-exists", "if=@dp-odd", "of=@dp-target-raw", "bs=64k", out={"dp-target.raw": "raw"})
case("output-exists-qcow2", "-O", "qcow2", "if=@dp-odd", "of=@dp-target-qcow2", "bs=64k",
     out={"dp-target.qcow2": "qcow2"})
case("err-f-qcow2-on-raw", "-f", "qcow2", "if=@dp-raw", "of=out.img")
case("err-f-bogus", "-f", "bogus", "if=@dp-small", "of=out.img")
case("err-O-bogus", "-O", "bogus", "if=@dp-small", "of=out.img")
case("err-missing-if", "of=out.img")
case("err-missing-of", "if=@dp-small")
case("err-no-args")
case("err-missing-input", "if=no-such.qcow2", "of=out.img")
case("err-output-dir-missing", "if=@dp-small", "of=no-dir/out.img")
case("err-output-is-input", "if=@dp-small", "of=dp-small.qcow2", "bs=64k", out={"dp-small.qcow2": "qcow2"})
case("err-unknown-option", "-p", "if=@dp-small", "of=out.img")
case("err-read-error", "if=@dp-bad-comp-past-eof", "of=out.img", "bs=64k")
case("help", "-h")


@pytest.mark.parametrize("args,outputs", CASES)
def test_dd(instar, images, tmp_path, request, args, outputs):
    argv, files = images.resolve(args)
    w = oc.run_writing(instar, ["dd", *argv], tmp_path, files, outputs)
    err_case = request.node.callspec.id.startswith("err-")
    assert (w.oracle.returncode != 0) == err_case, "case id does not match qemu-img's outcome: " + w.oracle.describe()


@pytest.mark.parametrize("share", [[], ["-U"]], ids=["err-locked", "locked-U"])
def test_dd_locked(instar, images, locked_image, tmp_path, share):
    src = str(images.root / locked_image)
    w = oc.run_writing(instar, ["dd", *share, f"if={src}", "of=out.img", "bs=1M", "count=1"], tmp_path,
                       outputs={"out.img": "raw"})
    assert (w.oracle.returncode != 0) == (not share), w.oracle.describe()


case("image-opts", "--image-opts", "if=driver=qcow2,file.filename=@dp-small", "of=out.img", "bs=64k")
