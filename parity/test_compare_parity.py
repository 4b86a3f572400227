"""`qemu-img compare` parity (qemu-img 7.2 vs instar), written before instar's compare.

compare opens both images read-only, so both tools run on the SAME files
(the image set's root is the cwd) with the same arguments; exit code, stdout
and stderr must match byte for byte.  The case id says what qemu-img does,
as a guard that the case tests what its name says: `same-` exits 0,
`diff-` exits 1 (a mismatch, `Content mismatch at offset N!`, or a strict
mode failure), `err-` exits 2 or more (2: open errors; 3: block status
failure; 4: read error), `usage-` exits 1 (command line errors go through
qemu-img's common error_exit(), exit 1, not compare's 2).  The outputs themselves are never written
down: qemu-img's run in the same test is the expectation.
"""

from __future__ import annotations

import pytest

import instar_testlib as tl

CASES = []


def case(cid, *args, into=CASES):
    into.append(pytest.param(list(args), id=cid))


# ---- identical guest data, different representations ------------------------------
for _a, _b in [("dp-mixed", "dp-mixed"), ("dp-mixed", "dp-mixed-raw"), ("dp-mixed-raw", "dp-mixed"),
               ("dp-mixed", "dp-cs512"), ("dp-mixed", "dp-zstd"), ("dp-mixed", "dp-v2"),
               ("dp-zlib-full", "dp-mixed"), ("dp-zstd-full", "dp-mixed-raw"),
               ("dp-chain-top", "dp-chain-flat"), ("dp-extl2", "dp-extl2-conv"),
               ("dp-datafile", "dp-datafile-conv"), ("dp-snaps", "dp-snaps-conv"),
               ("dp-raw", "dp-raw"), ("raw-1000", "raw-1000"), ("dp-empty", "dp-empty")]:
    case(f"same-{_a}-vs-{_b}", f"@{_a}", f"@{_b}")
case("same-datafile-raw-vs-its-data-file", "-F", "raw", "@dp-datafile-raw", "dp-datafile-raw.bin")
case("same-f-F", "-f", "qcow2", "-F", "raw", "@dp-mixed", "@dp-mixed-raw")
case("same-q", "-q", "@dp-mixed", "@dp-mixed-raw")
case("same-U", "-U", "@dp-mixed", "@dp-mixed-raw")
case("same-T-none", "-T", "none", "@dp-mixed", "@dp-zlib-full")
case("same-object", "--object", "secret,id=s0,data=x", "@dp-mixed", "@dp-mixed")
case("same-options-after-files", "@dp-mixed", "@dp-mixed-raw", "-q")
case("same-empty-vs-bigger-empty", "@dp-empty", "@v3-empty")

# ---- mismatches ------------------------------------------------------------------------
for _a, _b in [("dp-mixed", "dp-mixed-flipped"), ("dp-mixed-flipped", "dp-mixed"),
               ("dp-mixed", "dp-full"), ("dp-chain-mid", "dp-chain-top"), ("dp-chain-top", "dp-chain-mid"),
               ("dp-datafile", "dp-datafile-raw"), ("dp-mixed", "dp-extl2"), ("dp-extl2", "dp-extl2-2M"),
               ("dp-snaps", "dp-mixed"), ("dp-empty", "dp-prealloc"), ("raw-1000", "raw-4097"),
               # a discard inside a 2 MiB cluster frees nothing: the data stays
               ("dp-mixed", "dp-cs2M")]:
    case(f"diff-{_a}-vs-{_b}", f"@{_a}", f"@{_b}")
case("diff-q", "-q", "@dp-mixed", "@dp-mixed-flipped")
case("diff-f-raw-on-qcow2", "-f", "raw", "-F", "raw", "@dp-mixed", "@dp-mixed-raw")

# ---- size mismatch, strict mode ---------------------------------------------------------
case("same-size-mismatch-zeros", "@dp-mixed", "@dp-mixed-bigger")
case("same-size-mismatch-zeros-reversed", "@dp-mixed-bigger", "@dp-mixed")
case("diff-size-mismatch-data", "@dp-mixed", "@dp-mixed-bigger-data")
case("diff-size-mismatch-data-reversed", "@dp-mixed-bigger-data", "@dp-mixed")
case("diff-size-mismatch-odd", "@dp-odd", "@dp-empty")
case("diff-strict-size", "-s", "@dp-mixed", "@dp-mixed-bigger")
case("same-strict-itself", "-s", "@dp-mixed", "@dp-mixed")
case("same-strict-raw", "-s", "@dp-raw", "@dp-raw")
case("diff-strict-allocation-qcow2-vs-raw", "-s", "@dp-mixed", "@dp-mixed-raw")
case("diff-strict-chain-vs-flat", "-s", "@dp-chain-top", "@dp-chain-flat")
case("diff-strict-compressed", "-s", "@dp-mixed", "@dp-zlib-full")
case("diff-strict-cluster-size", "-s", "@dp-mixed", "@dp-cs512")
case("diff-strict-content", "-s", "@dp-mixed", "@dp-mixed-flipped")

# ---- progress --------------------------------------------------------------------------
case("same-p", "-p", "@dp-mixed", "@dp-mixed-raw")
case("same-p-chain", "-p", "@dp-chain-top", "@dp-chain-flat")
case("same-p-size-mismatch", "-p", "@dp-mixed", "@dp-mixed-bigger")
# the size warning stands between the common part's progress and the tail's
case("same-p-size-mismatch-reversed", "-p", "@dp-mixed-bigger", "@dp-mixed")
case("diff-p-size-mismatch-data", "-p", "@dp-mixed", "@dp-mixed-bigger-data")
case("same-p-size-mismatch-raw", "-p", "@dp-mixed-raw", "@dp-mixed-bigger")
case("diff-p", "-p", "@dp-mixed", "@dp-mixed-flipped")
case("diff-p-strict", "-p", "-s", "@dp-mixed", "@dp-mixed-raw")
case("err-p-missing", "-p", "@dp-mixed", "no-such.qcow2")

# ---- hostile images ----------------------------------------------------------------------
case("err-hostile-unaligned-l2", "@dp-bad-l2-unaligned", "@dp-mixed")
case("err-hostile-compressed-past-eof", "@dp-bad-comp-past-eof", "@dp-text-comp")
case("err-hostile-compressed-past-eof-q", "-q", "@dp-text-comp", "@dp-bad-comp-past-eof")
case("diff-hostile-compressed-cut", "@dp-bad-comp-eof", "@dp-text-comp")
case("diff-hostile-l2-past-eof", "@dp-bad-l2-eof", "@dp-mixed")
case("diff-hostile-l1-past-eof", "@dp-mixed", "@dp-bad-l1-eof")
case("diff-hostile-chain-truncated", "@dp-bad-chain-trunc", "@dp-chain-top")
case("diff-hostile-strict", "-s", "@dp-bad-l2-eof", "@dp-mixed")

# ---- usage and open errors ---------------------------------------------------------------------
case("usage-no-args")
case("usage-one-file", "@dp-mixed")
case("usage-three-files", "@dp-mixed", "@dp-mixed", "@dp-mixed")
case("err-missing-first", "no-such.qcow2", "@dp-mixed")
case("err-missing-second", "@dp-mixed", "no-such.qcow2")
case("err-f-bogus", "-f", "bogus", "@dp-mixed", "@dp-mixed")
case("err-F-bogus", "-F", "bogus", "@dp-mixed", "@dp-mixed")
case("err-f-qcow2-on-raw", "-f", "qcow2", "@dp-raw", "@dp-mixed")
case("err-T-bogus", "-T", "bogus", "@dp-mixed", "@dp-mixed")
case("usage-unknown-option", "-z", "@dp-mixed", "@dp-mixed")
case("usage-missing-argument", "@dp-mixed", "@dp-mixed", "-f")
case("err-object-bogus", "--object", "bogus,id=x", "@dp-mixed", "@dp-mixed")
case("err-missing-backing", "@backing-missing", "@dp-mixed")
case("err-missing-data-file", "@data-file-missing", "@dp-mixed")
case("help", "-h")


def _resolve(images, args):
    argv, _ = images.resolve(args)
    return argv


def _kind(cid: str) -> str:
    return cid.split("-", 1)[0]


def _guard(cid: str, r: tl.Result) -> None:
    kind = _kind(cid)
    ok = {"same": r.returncode == 0, "diff": r.returncode == 1, "err": r.returncode >= 2,
          "usage": r.returncode == 1, "help": r.returncode == 0}[kind]
    assert ok, f"case id `{cid}` does not match qemu-img's outcome: {r.describe()}"


@pytest.mark.parametrize("args", CASES)
def test_compare(instar, images, request, args):
    argv = ["compare", *_resolve(images, args)]
    expected, actual = tl.run_both(instar, argv, cwd=images.root)
    tl.assert_same(expected, actual, " ".join(argv))
    _guard(request.node.callspec.id, expected)


@pytest.mark.parametrize("share", [[], ["-U"]], ids=["err-locked", "same-locked-U"])
def test_compare_locked(instar, images, locked_image, request, share):
    argv = ["compare", *share, locked_image, locked_image]
    expected, actual = tl.run_both(instar, argv, cwd=images.root)
    tl.assert_same(expected, actual, " ".join(argv))
    _guard(request.node.callspec.id, expected)


case("same-image-opts", "--image-opts", "driver=qcow2,file.filename=@dp-mixed",
     "driver=raw,file.filename=@dp-mixed-raw")
case("same-image-opts-probed", "--image-opts", "file.filename=@dp-chain-top", "file.filename=@dp-chain-flat")
case("err-image-opts-and-f", "-f", "qcow2", "--image-opts", "driver=qcow2,file.filename=@dp-mixed",
     "file.filename=@dp-mixed")

REFUSED = []
case("same-fmt-vmdk", "@fmt-vmdk", "@fmt-vmdk")


@pytest.mark.parametrize("args", REFUSED)
def test_compare_refused(instar, images, request, args):
    """Deliberate refusals (docs/differences.md): qemu-img compares, instar
    says why it will not, in one `qemu-img: ` line, with compare's error exit
    code 2 (compare's codes: 0 same, 1 different, >1 error)."""
    argv = ["compare", *_resolve(images, args)]
    expected, actual = tl.run_both(instar, argv, cwd=images.root)
    assert expected.returncode == 0, "qemu-img should accept this: " + expected.describe()
    assert actual.returncode == 2, actual.describe()
    assert actual.stdout == b"", actual.describe()
    err = actual.stderr.decode("utf-8", "replace")
    assert err.startswith("qemu-img: ") and err.count("\n") == 1 and "vmdk" in err, actual.describe()
