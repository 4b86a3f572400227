"""Encrypted images (qcow2 with encrypt.format=luks) read with a secret: parity.

Images are made by qemu-img in the test (random salts and keys: never
committed), with encrypt.iter-time=10 to keep PBKDF2 short; qemu-img and
instar then run the same command on the same files, each in its own copy
of the directory, and must agree on exit code, stdout, stderr and the
bytes of every output file.
"""

from __future__ import annotations

import shutil

import pytest

import instar_testlib as tl

PW = "s3cret-pass"
SEC = f"secret,id=sec0,data={PW}"


def create(*args):
    """qemu-img create, retried: its PBKDF2 benchmark fails now and then
    ("Unable to get accurate CPU usage") with a short iter-time."""
    for attempt in range(20):
        r = tl.qemu_img("create", *args, check=attempt == 19)
        if r.returncode == 0:
            return


@pytest.fixture(scope="module")
def encdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("luks")
    (d / "pw.txt").write_text(PW)
    enc = f"encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"
    create("-q", "--object", SEC, "-f", "qcow2", "-o", enc, str(d / "enc.qcow2"), "4M")
    tl.qemu_io("--object", SEC, "--image-opts", f"driver=qcow2,file.filename={d / 'enc.qcow2'},encrypt.key-secret=sec0",
               "-c", "write -P 0x5a 0 1M", "-c", "write -P 0xa5 1536k 700k", "-c", "write -z 3M 64k")
    # cluster_size=4k and an odd size: many clusters, a partial last sector run
    create("-q", "--object", SEC, "-f", "qcow2", "-o", enc + ",cluster_size=4096",
                str(d / "enc4k.qcow2"), "3000k")
    tl.qemu_io("--object", SEC, "--image-opts",
               f"driver=qcow2,file.filename={d / 'enc4k.qcow2'},encrypt.key-secret=sec0",
               "-c", "write -P 0x11 4000 90000", "-c", "write -P 0x22 2M 100k")
    # aes-128-cbc-essiv:sha256 (iter-time=50: qemu fails its PBKDF2 benchmark at 10 now and then)
    create("-q", "--object", SEC, "-f", "qcow2", "-o",
                "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=50,encrypt.cipher-alg=aes-128,"
                "encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256",
                str(d / "cbc.qcow2"), "2M")
    tl.qemu_io("--object", SEC, "--image-opts",
               f"driver=qcow2,file.filename={d / 'cbc.qcow2'},encrypt.key-secret=sec0",
               "-c", "write -P 0x77 512 300k")
    # a second key slot holding another passphrase
    tl.qemu_img("amend", "--object", SEC, "--object", "secret,id=sec1,data=other",
                "--image-opts", f"driver=qcow2,file.filename={d / 'enc4k.qcow2'},encrypt.key-secret=sec0",
                "-o", "encrypt.new-secret=sec1,encrypt.keyslot=3,encrypt.iter-time=10,encrypt.state=active")
    tl.qemu_img("create", "-q", "-f", "raw", str(d / "plain.raw"), "4M")
    return d


def opts(img, sec="sec0"):
    return f"driver=qcow2,file.filename={img},encrypt.key-secret={sec}"


CASES = [
    ("err-map-human", ["map", "--object", SEC, "--image-opts", opts("enc.qcow2")], []),
    ("map-json", ["map", "--output=json", "--object", SEC, "--image-opts", opts("enc.qcow2")], []),
    ("map-json-4k", ["map", "--output=json", "--object", SEC, "--image-opts", opts("enc4k.qcow2")], []),
    ("convert-raw", ["convert", "-O", "raw", "--object", SEC, "--image-opts", opts("enc.qcow2"), "out.raw"],
     ["out.raw"]),
    ("convert-raw-4k", ["convert", "-O", "raw", "--object", SEC, "--image-opts", opts("enc4k.qcow2"), "out.raw"],
     ["out.raw"]),
    ("convert-cbc-essiv", ["convert", "-O", "raw", "--object", SEC, "--image-opts", opts("cbc.qcow2"), "out.raw"],
     ["out.raw"]),
    ("convert-qcow2", ["convert", "-O", "qcow2", "--object", SEC, "--image-opts", opts("enc.qcow2"), "out.qcow2"],
     ["out.qcow2"]),
    ("convert-file-secret", ["convert", "-O", "raw", "--object", "secret,id=sec0,file=pw.txt", "--image-opts",
                             opts("enc.qcow2"), "out.raw"], ["out.raw"]),
    ("convert-second-slot", ["convert", "-O", "raw", "--object", "secret,id=sec1,data=other", "--image-opts",
                             opts("enc4k.qcow2", "sec1"), "out.raw"], ["out.raw"]),
    ("dd", ["dd", "--object", SEC, "--image-opts", f"if={opts('enc4k.qcow2')}", "of=out.raw", "bs=3000", "skip=1"],
     ["out.raw"]),
    ("err-wrong-password", ["map", "--object", "secret,id=sec0,data=nope", "--image-opts", opts("enc.qcow2")], []),
    ("err-no-such-secret", ["map", "--object", SEC, "--image-opts", opts("enc.qcow2", "sec9")], []),
    ("err-missing-secret", ["convert", "-O", "raw", "enc.qcow2", "out.raw"], []),
    ("err-missing-secret-map", ["map", "enc.qcow2"], []),
    ("compare-same", ["compare", "--object", SEC, "--image-opts", opts("enc.qcow2"), opts("enc.qcow2")], []),
    ("diff-compare", ["compare", "--object", SEC, "--image-opts", opts("enc.qcow2"), opts("enc4k.qcow2")], []),
    ("diff-compare-with-raw", ["compare", "--object", SEC, "--image-opts", opts("enc.qcow2"),
                          "driver=raw,file.filename=plain.raw"], []),
    ("diff-compare-json-name", ["compare", "--object", SEC, "-f", "raw", "plain.raw",
                           'json:{"driver":"qcow2","encrypt.key-secret":"sec0","file":{"filename":"enc.qcow2"}}'], []),
    # nothing is created when the source does not unlock
    ("err-convert-wrong-password", ["convert", "-O", "raw", "--object", "secret,id=sec0,data=nope", "--image-opts",
                                    opts("enc.qcow2"), "out.raw"], []),
    ("err-dd-wrong-password", ["dd", "--object", "secret,id=sec0,data=nope", "--image-opts",
                               f"if={opts('enc.qcow2')}", "of=out.raw"], []),
]


@pytest.mark.parametrize("cid,args,outs", CASES, ids=[c[0] for c in CASES])
def test_luks_parity(instar, encdir, tmp_path, cid, args, outs):
    runs = {}
    for who in ("qemu", "instar"):
        d = tmp_path / who
        shutil.copytree(encdir, d)
        if who == "qemu":
            r = tl.run([tl.QEMU_IMG, *args], cwd=d)
        else:
            r = instar.run(args, cwd=d)
        runs[who] = (r, d)
    q, i = runs["qemu"][0], runs["instar"][0]
    if cid.startswith("diff-"):  # compare finds a difference: exit 1
        assert q.returncode == 1 and q.stderr == b"", q.describe()
    else:
        assert (q.returncode != 0) == cid.startswith("err-"), q.describe()
    assert (i.returncode, i.stdout, i.stderr) == (q.returncode, q.stdout, q.stderr), i.describe()
    for name in ("out.raw", "out.qcow2"):
        assert (runs["qemu"][1] / name).exists() == (runs["instar"][1] / name).exists(), name
    for name in outs:
        qb = (runs["qemu"][1] / name).read_bytes()
        ib = (runs["instar"][1] / name).read_bytes()
        assert ib == qb, f"{name} differs"
