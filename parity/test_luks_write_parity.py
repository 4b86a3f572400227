"""Writing through LUKS encryption: `convert -O luks` and `convert -O qcow2
-o encrypt.format=luks` (and qcow2's old `encrypt.format=aes`), parity with
qemu-img 7.2.

The targets' master keys, salts and uuids are random, so the two tools'
outputs cannot be equal byte for byte.  Each tool converts the same source
in its own copy of the directory; both runs must agree on exit code,
stdout and stderr.  Then the oracle judges both outputs, opened with the
secret: `compare` against the source (qemu-img decrypts instar's output to
the source's data: the proof that the encryption is qemu's), `info` with
the random fields masked, `map --output=json` and, for qcow2, `check`
(the same clusters allocated in the same places); and the files have the
same length.  The old AES method has nothing random: its outputs are
compared byte for byte as well.  PBKDF2 runs with iter-time=10 (qemu-img's benchmark fails
now and then with less: its runs are retried).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import instar_testlib as tl

PW = "luks-write-pw"
SEC = f"secret,id=sec0,data={PW}"
MiB = 1 << 20
L = "key-secret=sec0,iter-time=10"
Q = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"


def lopts(img, sec="sec0"):
    return f"driver=luks,file.filename={img},key-secret={sec}"


def qopts(img, sec="sec0"):
    return f"driver=qcow2,file.filename={img},encrypt.key-secret={sec}"


@pytest.fixture(scope="module")
def srcs(tmp_path_factory):
    d = tmp_path_factory.mktemp("lukswsrc")
    tl.qemu_img("create", "-q", "-f", "raw", str(d / "a.raw"), "4M")
    tl.qemu_io("-f", "raw", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 3M 5000",
               "-c", "write -P 0x33 2100k 1536", str(d / "a.raw"))
    # a qcow2 source with small clusters, a zero cluster and a backing file
    tl.qemu_img("create", "-q", "-f", "qcow2", str(d / "base.qcow2"), "3M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x44 0 2M", str(d / "base.qcow2"))
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-b", "base.qcow2", "-F", "qcow2",
                str(d / "top.qcow2"), "3M")
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0x55 512k 3000", "-c", "write -z 1M 64k",
               "-c", "write -P 0x66 2999k 1k", str(d / "top.qcow2"))
    # an odd size (not a multiple of 512)
    tl.qemu_img("create", "-q", "-f", "raw", str(d / "odd.raw"), "1000001")
    tl.qemu_io("-f", "raw", "-c", "write -P 0x77 1000 999000", str(d / "odd.raw"))
    # encrypted sources: a luks volume and a qcow2 with luks
    for _ in range(20):
        r = tl.qemu_img("create", "-q", "--object", SEC, "-f", "luks", "-o", L, str(d / "e.luks"), "2M", check=False)
        if r.returncode == 0:
            break
    tl.qemu_io("--object", SEC, "--image-opts", lopts(d / "e.luks"), "-c", "write -P 0x88 4k 700k")
    for _ in range(20):
        r = tl.qemu_img("create", "-q", "--object", SEC, "-f", "qcow2", "-o", Q, str(d / "e.qcow2"), "2M",
                        check=False)
        if r.returncode == 0:
            break
    tl.qemu_io("--object", SEC, "--image-opts", qopts(d / "e.qcow2"), "-c", "write -P 0x99 100k 300k")
    tl.qemu_img("create", "-q", "-f", "raw", str(d / "empty.raw"), "1M")
    tl.qemu_img("create", "-q", "--object", SEC, "-f", "qcow2", "-o", "encrypt.format=aes,encrypt.key-secret=sec0",
                str(d / "aes.qcow2"), "1M")
    tl.qemu_io("--object", SEC, "--image-opts", qopts(d / "aes.qcow2"), "-c", "write -P 0xab 1000 70000")
    # targets for -n, as large as a.raw
    for fmt, name, o in (("luks", "t.luks", L), ("qcow2", "t.qcow2", Q)):
        for _ in range(20):
            r = tl.qemu_img("create", "-q", "--object", SEC, "-f", fmt, "-o", o, str(d / name), "4M", check=False)
            if r.returncode == 0:
                break
    tl.qemu_io("--object", SEC, "--image-opts", qopts(d / "t.qcow2"), "-c", "write -P 0xee 0 4M")
    return d


#: (id, convert arguments before the source, source (a file, or --image-opts text), target name)
CASES = []


def case(cid, args, src, out):
    CASES.append((cid, args, src, out))


# ---- convert -O luks --------------------------------------------------------------------------
case("luks-default", ["-O", "luks", "-o", L], "a.raw", "out.luks")
case("luks-aes128-cbc-essiv", ["-O", "luks", "-o", L + ",cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,"
                                                        "ivgen-hash-alg=sha256,hash-alg=sha1"], "a.raw", "out.luks")
case("luks-aes192-xts-plain", ["-O", "luks", "-o", L + ",cipher-alg=aes-192,ivgen-alg=plain"], "a.raw", "out.luks")
case("luks-aes256-ecb", ["-O", "luks", "-o", L + ",cipher-mode=ecb"], "a.raw", "out.luks")
case("luks-aes256-cbc-plain64", ["-O", "luks", "-o", L + ",cipher-mode=cbc,hash-alg=sha512"], "a.raw", "out.luks")
case("luks-from-qcow2-chain", ["-O", "luks", "-o", L], "top.qcow2", "out.luks")
case("luks-odd-size", ["-O", "luks", "-o", L], "odd.raw", "out.luks")
case("luks-empty", ["-O", "luks", "-o", L], "empty.raw", "out.luks")
case("luks-S-0", ["-S", "0", "-O", "luks", "-o", L], "a.raw", "out.luks")
case("luks-from-luks", ["-O", "luks", "-o", L, "--image-opts"], lopts("e.luks"), "out.luks")
case("luks-from-qcow2-luks", ["-O", "luks", "-o", L, "--image-opts"], qopts("e.qcow2"), "out.luks")
case("luks-p", ["-p", "-O", "luks", "-o", L], "a.raw", "out.luks")
case("luks-t-writeback", ["-t", "writeback", "-O", "luks", "-o", L], "a.raw", "out.luks")
case("err-luks-n-no-key", ["-n", "-O", "luks"], "a.raw", "out.luks")
case("err-qcow2-luks-n-no-key", ["-n", "-O", "qcow2"], "a.raw", "out.qcow2")
case("err-luks-no-secret", ["-O", "luks", "-o", "iter-time=10"], "a.raw", "out.luks")
case("err-luks-no-options", ["-O", "luks"], "a.raw", "out.luks")
case("err-luks-unknown-secret", ["-O", "luks", "-o", "key-secret=nope"], "a.raw", "out.luks")
case("err-luks-bad-cipher", ["-O", "luks", "-o", L + ",cipher-alg=rot13"], "a.raw", "out.luks")
case("err-luks-compressed", ["-c", "-O", "luks", "-o", L], "a.raw", "out.luks")

# ---- convert -O qcow2 -o encrypt.format=luks --------------------------------------------------
case("qcow2-luks", ["-O", "qcow2", "-o", Q], "a.raw", "out.qcow2")
case("qcow2-luks-512", ["-O", "qcow2", "-o", Q + ",cluster_size=512"], "a.raw", "out.qcow2")
case("qcow2-luks-2M", ["-O", "qcow2", "-o", Q + ",cluster_size=2M"], "a.raw", "out.qcow2")
case("qcow2-luks-extl2", ["-O", "qcow2", "-o", Q + ",extended_l2=on,cluster_size=16k"], "top.qcow2", "out.qcow2")
case("qcow2-luks-v2", ["-O", "qcow2", "-o", Q + ",compat=0.10,cluster_size=4k"], "top.qcow2", "out.qcow2")
case("qcow2-luks-cbc-essiv", ["-O", "qcow2", "-o", Q + ",encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,"
                                                       "encrypt.cipher-alg=aes-128"], "a.raw", "out.qcow2")
case("qcow2-luks-prealloc-metadata", ["-O", "qcow2", "-o", Q + ",preallocation=metadata"], "a.raw", "out.qcow2")
case("qcow2-luks-odd", ["-O", "qcow2", "-o", Q], "odd.raw", "out.qcow2")
case("qcow2-luks-S-0", ["-S", "0", "-O", "qcow2", "-o", Q], "top.qcow2", "out.qcow2")
case("qcow2-luks-from-luks", ["-O", "qcow2", "-o", Q, "--image-opts"], lopts("e.luks"), "out.qcow2")
case("qcow2-luks-backing", ["-O", "qcow2", "-o", Q, "-B", "base.qcow2", "-F", "qcow2"], "top.qcow2",
     "out.qcow2")
# ---- convert -O qcow2 -o encrypt.format=aes (the old method: the key is the passphrase) --------
A = "encrypt.format=aes,encrypt.key-secret=sec0"
case("qcow2-aes", ["-O", "qcow2", "-o", A], "a.raw", "out.qcow2")
case("qcow2-encryption-on", ["-O", "qcow2", "-o", "encryption=on,encrypt.key-secret=sec0"], "a.raw", "out.qcow2")
case("qcow2-aes-v2-512", ["-O", "qcow2", "-o", A + ",compat=0.10,cluster_size=512"], "top.qcow2", "out.qcow2")
case("qcow2-aes-extl2", ["-O", "qcow2", "-o", A + ",extended_l2=on,cluster_size=16k"], "top.qcow2", "out.qcow2")
case("qcow2-aes-odd", ["-O", "qcow2", "-o", A], "odd.raw", "out.qcow2")
case("qcow2-aes-from-luks", ["-O", "qcow2", "-o", A, "--image-opts"], lopts("e.luks"), "out.qcow2")
case("qcow2-aes-backing", ["-O", "qcow2", "-o", A, "-B", "base.qcow2", "-F", "qcow2"], "top.qcow2", "out.qcow2")
case("luks-from-qcow2-aes", ["-O", "luks", "-o", L, "--image-opts"], qopts("aes.qcow2"), "out.luks")
case("err-qcow2-aes-compressed", ["-c", "-O", "qcow2", "-o", A], "a.raw", "out.qcow2")
case("err-qcow2-aes-no-secret", ["-O", "qcow2", "-o", "encryption=on"], "a.raw", "out.qcow2")
case("err-qcow2-aes-unknown-secret", ["-O", "qcow2", "-o", "encrypt.format=aes,encrypt.key-secret=x"],
     "a.raw", "out.qcow2")
case("err-qcow2-luks-compressed", ["-c", "-O", "qcow2", "-o", Q], "a.raw", "out.qcow2")
case("err-qcow2-luks-no-secret", ["-O", "qcow2", "-o", "encrypt.format=luks"], "a.raw", "out.qcow2")
case("err-qcow2-luks-unknown-secret", ["-O", "qcow2", "-o", "encrypt.format=luks,encrypt.key-secret=x"],
     "a.raw", "out.qcow2")
case("err-qcow2-luks-bad-mode", ["-O", "qcow2", "-o", Q + ",encrypt.cipher-mode=gcm"], "a.raw", "out.qcow2")


#: info's fields that come from random bytes or a PBKDF2 benchmark
_RANDOM = re.compile(rb'("uuid": "|"iters": |"master-key-iters": |uuid: |iters: )[-0-9a-f]+')


def _mask(b: bytes) -> bytes:
    return _RANDOM.sub(rb"\1X", b)


def _opts(out: str) -> str:
    return lopts(out) if out.endswith(".luks") else qopts(out)


def _src_opts(src: str) -> list[str]:
    return ["--image-opts", src] if src.startswith("driver=") else [src]


@pytest.mark.parametrize("cid,args,src,out", CASES, ids=[c[0] for c in CASES])
def test_luks_write(instar, srcs, tmp_path, cid, args, src, out):
    runs = {}
    for who in ("qemu", "instar"):
        d = tmp_path / who
        tl.copy_tree(srcs, d)
        if "-n" in args:
            # an existing target: the same encrypted file for both
            shutil.copy(srcs / ("e.luks" if out.endswith(".luks") else "e.qcow2"), d / out)
        argv = ["convert", "--object", SEC, *args, *([] if "--image-opts" in args else _src_opts(src)), out]
        if "--image-opts" in args:
            argv = ["convert", "--object", SEC, *args, src, out]
        for _ in range(10):
            r = (tl.run([tl.QEMU_IMG, *argv], cwd=d, timeout=180) if who == "qemu"
                 else instar.run(argv, cwd=d, timeout=180))
            if b"Unable to get accurate CPU usage" not in r.stderr:
                break
        runs[who] = (r, d)
    q, i = runs["qemu"][0], runs["instar"][0]
    assert (q.returncode != 0) == cid.startswith("err-"), q.describe()
    assert (i.returncode, i.stdout, i.stderr) == (q.returncode, q.stdout, q.stderr), i.describe()
    qp, ip = runs["qemu"][1] / out, runs["instar"][1] / out
    assert qp.exists() == ip.exists()
    if q.returncode != 0:
        return
    assert qp.stat().st_size == ip.stat().st_size
    if "encrypt.format=aes" in " ".join(args) or "encryption=on" in " ".join(args):
        # the old AES method: no random bytes, so qemu-img's output byte for byte
        assert tl.same_files(qp, ip)
    res = {}
    for who, p in (("qemu", qp), ("instar", ip)):
        d = p.parent
        o = ["--object", SEC, "--image-opts"]
        # the proof: qemu-img decrypts the output to the source's data
        c = tl.run_oracle(["compare", *o, (src if src.startswith("driver=") else
                                           f"driver=raw,file.filename={src}" if src.endswith(".raw")
                                           else f"driver=qcow2,file.filename={src}"), _opts(out)], cwd=d)
        assert c.returncode == 0, f"{who}: {c.describe()}"
        info = tl.run_oracle(["info", "--output=json", *o, _opts(out)], cwd=d)
        assert info.returncode == 0, info.describe()
        j = json.loads(info.stdout)
        j.pop("actual-size", None)
        mp = tl.run_oracle(["map", "--output=json", *o, _opts(out)], cwd=d)
        assert mp.returncode == 0, mp.describe()
        chk = None
        if out.endswith(".qcow2"):
            chk = tl.run_oracle(["check", "--output=json", *o, _opts(out)], cwd=d)
            assert chk.returncode == 0, chk.describe()
            chk = chk.stdout
        res[who] = (_mask(json.dumps(j, sort_keys=True).encode()), mp.stdout, chk)
    assert res["instar"] == res["qemu"]


def test_luks_write_dd_refused(instar, srcs, tmp_path):
    """dd -O luks: dd has no -o, so qemu-img's create fails for want of a key-secret."""
    for who in ("qemu", "instar"):
        tl.copy_tree(srcs, tmp_path / who)
    a = ["dd", "--object", SEC, "-O", "luks", "if=a.raw", "of=out.luks"]
    q = tl.run([tl.QEMU_IMG, *a], cwd=tmp_path / "qemu")
    i = instar.run(a, cwd=tmp_path / "instar")
    assert q.returncode == 1, q.describe()
    assert (i.returncode, i.stdout, i.stderr) == (q.returncode, q.stdout, q.stderr), i.describe()
    assert not (tmp_path / "instar" / "out.luks").exists() and not (tmp_path / "qemu" / "out.luks").exists()


#: -n onto an existing encrypted target (--target-image-opts names its secret): the key is the
#: target's own, so the result is qemu-img's byte for byte.
EXISTING = [
    ("n-luks", "t.luks", "a.raw", lopts("out.luks")),
    ("n-luks-from-qcow2-chain", "t.luks", "top.qcow2", lopts("out.luks")),
    ("n-qcow2-luks", "t.qcow2", "a.raw", qopts("out.qcow2")),
    ("n-qcow2-luks-from-qcow2-chain", "t.qcow2", "top.qcow2", qopts("out.qcow2")),
    ("n-qcow2-luks-S-0", "t.qcow2", "top.qcow2", qopts("out.qcow2")),
    ("err-n-luks-unknown-secret", "t.luks", "a.raw", lopts("out.luks", "sec9")),
    ("err-n-qcow2-luks-wrong-password", "t.qcow2", "a.raw", qopts("out.qcow2", "sec1")),
    ("err-n-luks-too-small", "e.luks", "a.raw", lopts("out.luks")),
    ("n-qcow2-aes", "aes.qcow2", "empty.raw", qopts("out.qcow2")),
    ("err-n-qcow2-aes-no-key", "aes.qcow2", "empty.raw", "driver=qcow2,file.filename=out.qcow2"),
]


@pytest.mark.parametrize("cid,tgt,src,topts", EXISTING, ids=[c[0] for c in EXISTING])
def test_luks_write_existing(instar, srcs, tmp_path, cid, tgt, src, topts):
    out = "out.luks" if tgt.endswith(".luks") else "out.qcow2"
    argv = ["convert", "--object", SEC, "--object", "secret,id=sec1,data=wrong", "-n",
            *(["-S", "0"] if "S-0" in cid else []), "--target-image-opts", src, topts]
    runs = {}
    for who in ("qemu", "instar"):
        d = tmp_path / who
        tl.copy_tree(srcs, d)
        shutil.copy(srcs / tgt, d / out)
        r = tl.run([tl.QEMU_IMG, *argv], cwd=d, timeout=180) if who == "qemu" else instar.run(argv, cwd=d,
                                                                                             timeout=180)
        runs[who] = (r, d / out)
    q, i = runs["qemu"][0], runs["instar"][0]
    assert (q.returncode != 0) == cid.startswith("err-"), q.describe()
    assert (i.returncode, i.stdout, i.stderr) == (q.returncode, q.stdout, q.stderr), i.describe()
    assert tl.same_files(runs["qemu"][1], runs["instar"][1])
