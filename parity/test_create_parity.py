"""`qemu-img create` parity: exit code, stdout, stderr, the files left on disk
(byte for byte), `qemu-img info --output=json`, `qemu-img check` and the
allocated size, for a sampled qcow2 option matrix, raw, and the error cases.

Both tools run in their own empty directory with the same relative names,
so no output needs rewriting.  Every expectation comes from the oracle.
"""

import itertools
import os
import shutil

import pytest

import instar_testlib as tl

SIZE = "24M"

# Every value of every option at least once, with a few interactions
# (small clusters + narrow refcounts + preallocation grow the refcount table).
COMPAT = ["1.1", "v3", "0.10", "v2"]
CLUSTER = ["512", "1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k", "256k", "512k", "1M", "2M"]
REFBITS = ["1", "2", "4", "8", "16", "32", "64"]
PREALLOC = ["off", "metadata", "falloc", "full"]

CASES = []


def case(cid, args, files=("x.qcow2",)):
    CASES.append(pytest.param(list(args), list(files), id=cid))


for i, (cs, rb) in enumerate(itertools.product(CLUSTER, REFBITS)):
    if i % 3:
        continue
    pa = PREALLOC[i % 4]
    lazy = "on" if i % 2 else "off"
    opts = f"cluster_size={cs},refcount_bits={rb},preallocation={pa},lazy_refcounts={lazy}"
    case(f"qcow2-{cs}-{rb}-{pa}-{lazy}", ["create", "-f", "qcow2", "-o", opts, "x.qcow2", SIZE])
for c in COMPAT:
    case(f"compat-{c}", ["create", "-f", "qcow2", "-o", f"compat={c}", "x.qcow2", "1G"])
for cs in ["16k", "64k", "2M"]:
    for pa in PREALLOC:
        case(
            f"extl2-{cs}-{pa}",
            ["create", "-f", "qcow2", "-o", f"extended_l2=on,cluster_size={cs},preallocation={pa}",
             "x.qcow2", SIZE],
        )
case("zstd", ["create", "-f", "qcow2", "-o", "compression_type=zstd", "x.qcow2", "1M"])
case("zlib", ["create", "-f", "qcow2", "-o", "compression_type=zlib", "x.qcow2", "1M"])
case("grow-reftable", ["create", "-f", "qcow2", "-o",
                       "cluster_size=512,refcount_bits=64,preallocation=metadata", "x.qcow2", "64M"])
case("unaligned-size", ["create", "-f", "qcow2", "-o", "preallocation=metadata", "x.qcow2", "1000001"])
case("size-zero", ["create", "-f", "qcow2", "x.qcow2", "0"])
case("size-opt", ["create", "-f", "qcow2", "-o", "size=5M", "x.qcow2"])
case("quiet", ["create", "-q", "-f", "qcow2", "x.qcow2", "1M"])
case("dup-key", ["create", "-f", "qcow2", "-o", "cluster_size=4k,cluster_size=8k", "x.qcow2", "1M"])
case("multi-o", ["create", "-f", "qcow2", "-o", "cluster_size=4k", "-o", "refcount_bits=8", "x.qcow2", "1M"])
case("bool-forms", ["create", "-f", "qcow2", "-o", "lazy_refcounts=yes,extended_l2=n", "x.qcow2", "1M"])
case("data-file", ["create", "-f", "qcow2", "-o", "data_file=d.raw", "x.qcow2", "4M"], ("x.qcow2", "d.raw"))
case("data-file-raw", ["create", "-f", "qcow2", "-o", "data_file=d.raw,data_file_raw=on", "x.qcow2", "4M"],
     ("x.qcow2", "d.raw"))
case("data-file-falloc", ["create", "-f", "qcow2", "-o", "data_file=d.raw,preallocation=falloc", "x.qcow2",
                          "4M"], ("x.qcow2", "d.raw"))
case("backing-u", ["create", "-f", "qcow2", "-u", "-b", "nowhere.qcow2", "-F", "qcow2", "x.qcow2", "1M"])
case("backing-u-opts", ["create", "-f", "qcow2", "-u", "-o", "backing_file=b,,c,backing_fmt=raw", "x.qcow2",
                        "1M"])
case("backing-u-nofmt", ["create", "-f", "qcow2", "-u", "-b", "b.qcow2", "x.qcow2", "1M"])
case("backing-extl2-prealloc", ["create", "-f", "qcow2", "-u", "-b", "b", "-F", "raw", "-o",
                                "extended_l2=on,preallocation=metadata", "x.qcow2", "1M"])
for pa in PREALLOC:
    case(f"raw-{pa}", ["create", "-f", "raw", "-o", f"preallocation={pa}", "x.raw", "3M"], ("x.raw",))
case("raw-default", ["create", "x.raw", "1M"], ("x.raw",))
for pa in ("off", "falloc", "full"):
    for sz in ("100", "4095", "4096"):
        case(f"raw-{pa}-{sz}", ["create", "-f", "raw", "-o", f"preallocation={pa}", "x.raw", sz], ("x.raw",))
case("raw-zero", ["create", "-f", "raw", "x.raw", "0"], ("x.raw",))
case("raw-unaligned", ["create", "x.raw", "1001"], ("x.raw",))

# Errors, before and after the Formatting line.
ERR = {
    "cluster-3": "cluster_size=3",
    "cluster-4M": "cluster_size=4M",
    "cluster-abc": "cluster_size=abc",
    "refbits-3": "refcount_bits=3",
    "refbits-128": "refcount_bits=128",
    "refbits-abc": "refcount_bits=abc",
    "refbits-v2": "refcount_bits=8,compat=0.10",
    "lazy-v2": "lazy_refcounts=on,compat=0.10",
    "lazy-maybe": "lazy_refcounts=maybe",
    "extl2-small": "extended_l2=on,cluster_size=8k",
    "extl2-v2": "extended_l2=on,compat=0.10",
    "compat-bad": "compat=2",
    "prealloc-bad": "preallocation=bogus",
    "ctype-bad": "compression_type=lz4",
    "zstd-v2": "compression_type=zstd,compat=0.10",
    "dfraw-nodf": "data_file_raw=on",
    "df-v2": "data_file=d.raw,compat=0.10",
    "fmt-nobacking": "backing_fmt=raw",
    "prealloc-backing": "preallocation=metadata,backing_file=b,backing_fmt=raw",
    "unknown-opt": "bogus=1",
    "size-twice": "size=2M",
    "encrypt": "encrypt.format=luks",
    "encryption-on": "encryption=on",
    # encryption is encrypt.format's alias (qdict_rename_keys(), before the cluster size)
    "encryption-and-format": "encryption=on,encrypt.format=aes,cluster_size=3",
}
for cid, o in ERR.items():
    case(f"err-{cid}", ["create", "-f", "qcow2", "-u", "-o", o, "x.qcow2", "1M"], ("x.qcow2", "d.raw"))
case("err-invalid-list", ["create", "-f", "qcow2", "-o", ",a", "x.qcow2", "1M"])
case("err-nosize", ["create", "-f", "qcow2", "x.qcow2"])
case("err-nofile", ["create", "-f", "qcow2"])
case("err-extra", ["create", "-f", "qcow2", "x.qcow2", "1M", "2M"])
case("err-bad-size", ["create", "-f", "qcow2", "x.qcow2", "12Q"])
case("err-neg-size", ["create", "-f", "qcow2", "x.qcow2", "-5"])
case("err-huge", ["create", "-f", "qcow2", "x.qcow2", "4P"])
case("err-huge-512", ["create", "-f", "qcow2", "-o", "cluster_size=512", "x.qcow2", "1P"])
case("err-unknown-fmt", ["create", "-f", "bogus", "x.qcow2", "1M"])
case("err-raw-backing", ["create", "-f", "raw", "-b", "b", "x.raw", "1M"], ("x.raw",))
case("err-raw-cluster", ["create", "-f", "raw", "-o", "cluster_size=4k", "x.raw", "1M"], ("x.raw",))
case("err-same-backing", ["create", "-f", "qcow2", "-b", "x.qcow2", "-F", "qcow2", "x.qcow2", "1M"])
case("err-empty-backing", ["create", "-f", "qcow2", "-o", "backing_file=", "x.qcow2", "1M"])
# Drivers qemu-img knows that cannot create (no create_opts; iotest 113).
for _f in ("bochs", "cloop", "dmg", "vvfat", "null-co", "quorum"):
    case(f"err-nocreate-{_f}", ["create", "-f", _f, "x.img", "1M"], ("x.img",))
case("err-nocreate-nbd", ["create", "-f", "bochs", "nbd://example.com", "64M"])
case("err-nocreate-unknown-proto", ["create", "-f", "bochs", "bogus://x", "64M"])
case("help-nocreate", ["create", "-f", "dmg", "-o", "help"], ())
# Help.
for cid, args in {
    "help-qcow2": ["-f", "qcow2", "-o", "help"],
    "help-q": ["-f", "qcow2", "-o", "?"],
    "help-raw": ["-f", "raw", "-o", "help"],
    "help-default": ["-o", "help"],
    "help-file": ["-f", "qcow2", "-o", "help", "x.qcow2"],
    "help-file-raw": ["-f", "raw", "-o", "cluster_size=1,help", "x.raw"],
    "help-unknown": ["-f", "bogus", "-o", "help"],
}.items():
    case(cid, ["create", *args], ())


def _tree(d):
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out[name] = f.read()
    return out


def _blocks(path):
    return tl.allocated_blocks(path)


@pytest.mark.parametrize("args,files", CASES)
def test_create_parity(instar, tmp_path, args, files):
    dq, di = tmp_path / "q", tmp_path / "i"
    dq.mkdir()
    di.mkdir()
    exp = tl.run_oracle(args, cwd=dq)
    act = instar.run(args, cwd=di)
    tl.assert_same(exp, act, " ".join(args))
    tq, ti = _tree(dq), _tree(di)
    assert sorted(tq) == sorted(ti), "files left differ"
    for name in tq:
        assert tq[name] == ti[name], f"{name}: bytes differ"
        # Files must be allocated as qemu allocates them: preallocation, and
        # the first block qemu's file driver writes after growing an empty
        # file (exact for raw and data files).  A large preallocated qcow2
        # can differ by one 4 KiB block from run to run of either tool.
        qb, ib = _blocks(dq / name), _blocks(di / name)
        if name.endswith(".qcow2"):
            assert abs(qb - ib) <= 8, f"{name}: allocated blocks {ib} vs oracle {qb}"
        else:
            assert qb == ib, f"{name}: allocated blocks {ib} vs oracle {qb}"
    for name in files:
        if name not in tq or not name.endswith(".qcow2"):
            continue
        for sub in (["info", "--output=json"], ["check"]):
            ri = tl.run_oracle([*sub, "-U", name], cwd=di)
            rq = tl.run_oracle([*sub, "-U", name], cwd=dq)
            # actual-size follows the file system's delayed allocation; the
            # st_blocks check above compares allocation with a tolerance.
            strip = lambda b: b"\n".join(x for x in b.split(b"\n") if b'"actual-size"' not in x)
            assert ri.returncode == rq.returncode, f"{sub} exit code differs"
            assert strip(ri.stdout) == strip(rq.stdout), f"{sub} differs"


# Backing files for -b, made once by the oracle: a plain qcow2 and raw; a
# qcow2 whose own backing is missing (mid), one whose chain is fine (midok);
# one with a missing external data file (md) and one above it (c1); a
# corrupt one (bad: version 9) and one above it (c2); a chain that names
# its middle image's format wrongly (c3: -F raw); an absurd virtual size
# (big); a directory.  (Backing loops are a documented difference: qemu-img
# recurses until the name is too long, instar stops at the loop.)
BACKING_SETUP = [
    "create -q -f qcow2 b.qcow2 7M",
    "create -q -f raw b.raw 3M",
    "create -q -f qcow2 -u -b gone.qcow2 -F qcow2 mid.qcow2 5M",
    "create -q -f qcow2 mid0.qcow2 5M",
    "create -q -f qcow2 -b mid0.qcow2 -F qcow2 midok.qcow2",
    "create -q -f qcow2 -o data_file=dd.raw md.qcow2 5M",
    "create -q -f qcow2 -u -b md.qcow2 -F qcow2 c1.qcow2 5M",
    "create -q -f qcow2 bad.qcow2 1M",
    "create -q -f qcow2 -u -b bad.qcow2 -F qcow2 c2.qcow2 1M",
    "create -q -f qcow2 -u -b c1.qcow2 -F raw c3.qcow2 1M",
    "create -q -f qcow2 big.qcow2 1M",
]


@pytest.fixture(scope="module")
def backing_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("backing")
    for line in BACKING_SETUP:
        tl.qemu_img(*line.split(), cwd=d)
    os.unlink(d / "dd.raw")
    with open(d / "bad.qcow2", "r+b") as f:
        f.seek(4)
        f.write(b"\x00\x00\x00\x09")
    with open(d / "big.qcow2", "r+b") as f:
        f.seek(24)
        f.write(b"\xff" * 7 + b"\x00")
    (d / "adir").mkdir()
    return d


BACKING = {
    "b-size": ["-b", "b.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-with-size": ["-b", "b.qcow2", "-F", "qcow2", "x.qcow2", "9M"],
    "b-raw": ["-b", "b.raw", "-F", "raw", "x.qcow2"],
    "b-nofmt": ["-b", "b.qcow2", "x.qcow2"],
    "b-nofmt-raw": ["-b", "b.raw", "x.qcow2"],
    "b-missing": ["-b", "nothere.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-missing-nofmt": ["-b", "nothere.qcow2", "x.qcow2"],
    "b-missing-with-size": ["-b", "nothere.qcow2", "x.qcow2", "1M"],
    "b-wrongfmt": ["-b", "b.raw", "-F", "qcow2", "x.qcow2"],
    "b-qcow2-as-raw": ["-b", "b.qcow2", "-F", "raw", "x.qcow2"],
    "b-qcow2-as-file": ["-b", "b.qcow2", "-F", "file", "x.qcow2"],
    "b-bogus-fmt": ["-b", "b.qcow2", "-F", "bogus", "x.qcow2"],
    "b-relative-subdir": ["-b", "../b.qcow2", "-F", "qcow2", "sub/x.qcow2"],
    "b-relative-wrong-dir": ["-b", "b.qcow2", "-F", "qcow2", "sub/x.qcow2"],
    "b-u-no-size": ["-u", "-b", "b.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-u-nofmt": ["-u", "-b", "b.qcow2", "x.qcow2"],
    "b-u-broken-chain": ["-u", "-b", "mid.qcow2", "-F", "qcow2", "x.qcow2", "1M"],
    "b-u-bogus-fmt": ["-u", "-b", "mid.qcow2", "-F", "bogus", "x.qcow2", "1M"],
    "b-u-wrong-fmt-no-size": ["-u", "-b", "mid.qcow2", "-F", "raw", "x.qcow2"],
    "b-chain-missing": ["-b", "mid.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-chain-missing-nofmt": ["-b", "mid.qcow2", "x.qcow2"],
    "b-chain-ok": ["-b", "midok.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-data-file-missing": ["-b", "md.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-chain-data-file-missing": ["-b", "c1.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-chain-corrupt": ["-b", "c2.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-chain-fmt-raw": ["-b", "c3.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-corrupt": ["-b", "bad.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-corrupt-nofmt": ["-b", "bad.qcow2", "x.qcow2"],
    "b-huge-size": ["-b", "big.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-dir-raw": ["-b", "adir", "-F", "raw", "x.qcow2"],
    "b-dir-qcow2": ["-b", "adir", "-F", "qcow2", "x.qcow2"],
    "b-dir-nofmt": ["-b", "adir", "x.qcow2"],
    "b-opt-size": ["-b", "b.raw", "-F", "raw", "-o", "size=2M", "x.qcow2"],
    "b-opt-and-b": ["-b", "b.raw", "-F", "raw", "-o", "backing_file=b.raw", "x.qcow2"],
    "b-F-beats-opt": ["-b", "b.raw", "-F", "raw", "-o", "backing_fmt=qcow2", "x.qcow2"],
    "b-opts-only": ["-o", "backing_file=b.raw,backing_fmt=raw", "x.qcow2"],
    "b-opts-nofmt": ["-o", "backing_file=b.raw", "x.qcow2"],
    "b-prealloc": ["-b", "b.raw", "-F", "raw", "-o", "preallocation=metadata", "x.qcow2"],
    "b-extl2-prealloc": ["-b", "b.raw", "-F", "raw", "-o", "extended_l2=on,preallocation=metadata", "x.qcow2"],
    "b-extl2-full": ["-b", "b.raw", "-F", "raw", "-o", "extended_l2=on,preallocation=full", "x.qcow2"],
    "b-bad-cluster": ["-b", "b.raw", "-F", "raw", "-o", "cluster_size=3", "x.qcow2"],
    "b-compat-v2": ["-b", "b.raw", "-F", "raw", "-o", "compat=0.10", "x.qcow2"],
    "b-file-prefix": ["-b", "file:b.raw", "-F", "raw", "x.qcow2"],
    "b-unknown-protocol": ["-b", "foo:bar", "-F", "raw", "x.qcow2"],
    "b-same-name": ["-b", "x.qcow2", "-F", "raw", "x.qcow2"],
    "b-same-file": ["-b", "./x.qcow2", "-F", "raw", "x.qcow2", "1M"],
    "b-quiet": ["-q", "-b", "b.qcow2", "-F", "qcow2", "x.qcow2"],
    "b-data-file": ["-b", "b.qcow2", "-F", "qcow2", "-o", "data_file=d.raw", "x.qcow2"],
    "b-object": ["--object", "secret,id=s0,data=x", "-b", "b.qcow2", "-F", "qcow2", "x.qcow2"],
}
BACKING_RAW = {
    "b-raw-format": ["-f", "raw", "-b", "b.raw", "-F", "raw", "x.qcow2"],
}


@pytest.mark.parametrize("cid", list(BACKING) + list(BACKING_RAW))
def test_create_backing_parity(instar, backing_dir, tmp_path, cid):
    args = ["create", *BACKING_RAW[cid]] if cid in BACKING_RAW else ["create", "-f", "qcow2", *BACKING[cid]]
    out = {}
    for tool in ("q", "i"):
        d = tmp_path / tool
        shutil.copytree(backing_dir, d, symlinks=True)
        (d / "sub").mkdir()
        r = tl.run_oracle(args, cwd=d) if tool == "q" else instar.run(args, cwd=d)
        out[tool] = (r, _tree_files(d))
    tl.assert_same(out["q"][0], out["i"][0], cid)
    assert out["q"][1] == out["i"][1], "files left differ"


def _tree_files(d):
    out = {}
    for root, _, files in os.walk(d):
        for n in files:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, d)] = f.read()
    return out
