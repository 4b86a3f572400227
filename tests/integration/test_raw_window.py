"""raw's offset and size options where instar and qemu-img 7.2 differ (docs/differences.md).

An offset that is no multiple of 512 leaves a window whose length is no
whole number of sectors: qemu-img 7.2's map and compare die on an
assertion and its measure never ends; instar answers them from the bytes
at the offset (the expected answers come from the oracle, run on a file
holding exactly those bytes).  convert's `-n --target-image-opts` target
refuses the options (its writes would need the window too).
"""

import json
import os

import instar_testlib as tl

ODD = "driver=raw,offset=1000,file.filename=d.raw"


def _disk(d):
    data = os.urandom(3 << 20) + b"\x5a" * 1000  # fully allocated: no holes to tell apart
    (d / "d.raw").write_bytes(data)
    # the window: the bytes from the offset to the end of the file's last sector (a hole past its end)
    (d / "part.raw").write_bytes(data[1000:])
    os.truncate(d / "part.raw", (3 << 20) + 24)
    return data


def test_unaligned_offset_answers(instar, tmp_path):
    _disk(tmp_path)
    # qemu-img: "get_block_status: Assertion `bytes' failed." / "img_compare: Assertion ..."
    o = tl.run_oracle(["map", "--output=json", "--image-opts", ODD], cwd=tmp_path)
    assert o.returncode < 0, o.describe()

    r = instar.run(["map", "--output=json", "--image-opts", ODD], cwd=tmp_path)
    assert r.returncode == 0, r.describe()
    ext = json.loads(r.stdout)
    size = ((3 << 20) + 1024) - 1000  # the file's length in whole sectors, past the offset
    virtual = (size + 511) // 512 * 512
    assert ext[0]["start"] == 0 and ext[-1]["start"] + ext[-1]["length"] == virtual, ext
    assert all(a["start"] + a["length"] == b["start"] for a, b in zip(ext, ext[1:])), ext
    for e in ext:
        if e["data"]:
            assert e["offset"] == e["start"] + 1000, e

    r = instar.run(["compare", "--image-opts", ODD, "driver=raw,file.filename=part.raw"], cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"Images are identical.\n", b""), r.describe()

    # qemu-img's measure of the window spins; of the same bytes as a file it answers
    want = tl.run_oracle(["measure", "-O", "qcow2", "-f", "raw", "part.raw"], cwd=tmp_path)
    assert want.returncode == 0, want.describe()
    r = instar.run(["measure", "-O", "qcow2", "--image-opts", ODD], cwd=tmp_path, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, want.stdout, b""), r.describe()


def test_convert_target_window_refused(instar, tmp_path):
    _disk(tmp_path)
    tl.qemu_img("create", "-q", "-f", "raw", "src.raw", "1M", cwd=tmp_path)
    tgt = "driver=raw,offset=1M,size=1M,file.filename=d.raw"
    before = (tmp_path / "d.raw").read_bytes()
    r = instar.run(["convert", "-n", "-f", "raw", "src.raw", "--target-image-opts", tgt], cwd=tmp_path)
    assert r.returncode == 1, r.describe()
    assert r.stderr == (f"qemu-img: Could not open '{tgt}': Option 'offset' is not supported by "
                        "instar\n").encode(), r.describe()
    assert (tmp_path / "d.raw").read_bytes() == before, "a refused convert changed the target"
    o = tl.run_oracle(["convert", "-n", "-f", "raw", "src.raw", "--target-image-opts", tgt], cwd=tmp_path)
    assert o.returncode == 0, o.describe()
