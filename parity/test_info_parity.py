"""`qemu-img info` parity: every case must give the oracle's exit code, stdout
and stderr byte for byte.

Case arguments are token lists: ``@name`` is replaced by the image's path
relative to the image root (which is the cwd of both runs), ``@abs:name`` by
its absolute path, ``@locked`` by an image held open by a background qemu-io.
Both tools read the same file, in the same cwd, with the same arguments, so
no normalisation is applied.

The other formats' info cases live in their own suites (test_<fmt>_parity.py).
"""

import re

import pytest

import instar_testlib as tl
from images import GENERATORS

# Images that every "matrix" case (human + json, probed) runs on.
MATRIX = [n for n in GENERATORS if not n.startswith("fmt-")]

CASES = []


def case(cid, *args):
    CASES.append(pytest.param(list(args), id=cid))


for _n in MATRIX:
    case(f"human-probe-{_n}", "info", f"@{_n}")
    case(f"json-probe-{_n}", "info", "--output=json", f"@{_n}")

# --output=human spelled explicitly, and option spellings
for _n in ("v3", "snapshots", "bitmaps", "luks", "data-file-raw"):
    case(f"output-human-{_n}", "info", "--output=human", f"@{_n}")
case("output-json-separate-arg", "info", "--output", "json", "@v3")
case("output-after-filename", "info", "@v3", "--output=json")
case("double-dash", "info", "--", "@v3")
case("output-given-twice", "info", "--output=json", "--output=human", "@v3")
case("abs-path-human", "info", "@abs:v3")
case("abs-path-json", "info", "--output=json", "@abs:snapshots")

# -f variants
for _n in ("v2", "v3", "snapshots", "extl2-64k", "luks", "overlay", "dirty", "corrupt"):
    case(f"f-qcow2-{_n}", "info", "-f", "qcow2", f"@{_n}")
case("f-qcow2-json-bitmaps", "info", "-f", "qcow2", "--output=json", "@bitmaps")
case("format-long-option", "info", "--format=qcow2", "@v3")
case("format-long-option-sep", "info", "--format", "raw", "@raw-data")
for _n in ("raw-data", "raw-1000", "raw-empty", "raw-sparse-odd", "v3", "overlay", "luks"):
    case(f"f-raw-{_n}", "info", "-f", "raw", f"@{_n}")
case("f-raw-json-qcow2", "info", "-f", "raw", "--output=json", "@v3")
case("f-qcow2-on-raw", "info", "-f", "qcow2", "@raw-data")
case("f-qcow2-on-empty", "info", "-f", "qcow2", "@raw-empty")
case("f-qcow2-on-garbage-json", "info", "-f", "qcow2", "--output=json", "@raw-garbage")
case("f-given-twice", "info", "-f", "raw", "-f", "qcow2", "@v3")

# --backing-chain, both outputs
for _n in ("v3", "overlay", "chain3", "backing-abs", "backing-raw", "backing-probed",
           "subdir-overlay", "subdir-chain", "backing-v2", "backing-missing", "backing-missing-mid",
           "snapshots", "data-file"):
    case(f"chain-human-{_n}", "info", "--backing-chain", f"@{_n}")
    case(f"chain-json-{_n}", "info", "--backing-chain", "--output=json", f"@{_n}")
case("chain-f-qcow2", "info", "--backing-chain", "-f", "qcow2", "@chain3")
case("chain-abs-name", "info", "--backing-chain", "@abs:subdir-chain")

# -U / --force-share
for _n in ("v3", "chain3", "snapshots"):
    case(f"U-{_n}", "info", "-U", f"@{_n}")
    case(f"force-share-json-{_n}", "info", "--force-share", "--output=json", f"@{_n}")
case("U-backing-chain", "info", "-U", "--backing-chain", "--output=json", "@subdir-chain")
case("U-f-qcow2-raw", "info", "-U", "-f", "qcow2", "@raw-data")
case("locked", "info", "@locked")
case("locked-json", "info", "--output=json", "@locked")
case("locked-U", "info", "-U", "@locked")
case("locked-force-share-json", "info", "--force-share", "--output=json", "@locked")

# --image-opts and json: filenames (cmd/spec.c): the file protocol under
# qcow2, raw, a probed format, or "file" itself; qemu-img's errors for the rest
for _o, _cid in (("driver=qcow2,file.filename=@v3", "qcow2"),
                 ("driver=qcow2,file.driver=file,file.filename=@snapshots", "file-driver"),
                 ("file.filename=@v3", "probed"),
                 ("driver=raw,file.filename=@v3", "raw"),
                 ("driver=file,filename=@raw-1000", "file"),
                 ("file.filename=@v3,file.filename=@raw-data", "later-wins"),
                 ("driver=qcow2,file.filename=@v3,force-share=on,read-only=on,l2-cache-size=1M",
                  "runtime-options"),
                 ("@v3", "implied-file"),
                 ("file=@v3", "file-reference"),
                 ("filename=@v3", "no-driver"),
                 ("driver=qcow2", "no-file"),
                 ("driver=qcow2,filename=@v3", "qcow2-filename"),
                 ("driver=bogus,file.filename=@v3", "unknown-driver"),
                 ("driver=qcow2,file.driver=bogus,file.filename=@v3", "unknown-file-driver"),
                 ("driver=qcow2,file.filename=no-such-file", "missing"),
                 ("driver=qcow2,file.filename=@v3,foo=1", "unknown-option"),
                 ("driver=raw,file.filename=@v3,foo=1", "unknown-raw-option"),
                 ("driver=qcow2,file.filename=@v3,file.foo=1", "unknown-file-option"),
                 ("driver=file,filename=@v3,foo=1", "unknown-protocol-option"),
                 ("driver=qcow2,,file.filename=@v3", "escaped-comma"),
                 ("driver=file", "file-no-name"),
                 ("", "empty")):
    case(f"image-opts-{_cid}", "info", "--image-opts", _o)
case("image-opts-json-output", "info", "--output=json", "--image-opts", "driver=qcow2,file.filename=@bitmaps")
# encrypt.key-secret names the image json:{...} (opened without I/O: the secret is not looked up)
for _n in ("aes-legacy", "luks", "v3"):
    for _out in ("human", "json"):
        case(f"image-opts-key-secret-{_n}-{_out}", "info", f"--output={_out}", "--object", "secret,id=sec0,data=x",
             "--image-opts", f"driver=qcow2,encrypt.key-secret=sec0,file.filename=@{_n}")
case("image-opts-key-secret-unknown-id", "info", "--image-opts", "driver=qcow2,encrypt.key-secret=a\"b,file.filename=@aes-legacy")
case("image-opts-key-secret-chain", "info", "--backing-chain", "--image-opts",
     "driver=qcow2,encrypt.key-secret=s,file.filename=@chain3")
case("image-opts-chain", "info", "--backing-chain", "--image-opts", "driver=qcow2,file.filename=@chain3")
case("image-opts-and-f", "info", "-f", "qcow2", "--image-opts", "driver=qcow2,file.filename=@v3")
case("image-opts-U", "info", "-U", "--image-opts", "driver=qcow2,file.filename=@v3")
case("image-opts-U-conflict", "info", "-U", "--image-opts", "driver=qcow2,file.filename=@v3,force-share=off")
case("image-opts-locked-force-share", "info", "--image-opts", "driver=qcow2,file.filename=@locked,force-share=on")
for _j, _cid in (('{"driver":"qcow2","file":{"driver":"file","filename":"@v3"}}', "qcow2"),
                 ('{"file":{"filename":"@snapshots"}}', "probed"),
                 ('{"file.filename":"@v3"}', "flat-key"),
                 ('{"driver":"file","filename":"@raw-1000"}', "file"),
                 ("{'driver':'qcow2','file':{'filename':'@v3'}}", "single-quotes"),
                 ('{ "driver" : "raw" , "file" : { "filename" : "@raw-data" } }', "spaces"),
                 ('{"driver":"qcow2","file":{"filename":"@v3"},"force-share":true}', "bool"),
                 ('{"file":"@v3"}', "file-reference"),
                 ('{"driver":1}', "driver-not-string"),
                 ('{"driver":"file"}', "file-no-name"),
                 ('{"driver":"qcow2","file":{"filename":"@v3"},"x":[1]}', "list"),
                 ('{"driver":"qcow2","file":{"filename":"no-such-file"}}', "missing"),
                 ('{"driver":"qcow2"', "premature-end"),
                 ("{bad", "keyword"),
                 ("", "empty"),
                 ("[]", "not-object")):
    case(f"json-name-{_cid}", "info", "json:" + _j)
case("json-name-f", "info", "-f", "qcow2", 'json:{"file":{"filename":"@v3"}}')
case("json-name-chain-json", "info", "--backing-chain", "--output=json", 'json:{"file":{"filename":"@chain3"}}')
case("f-file", "info", "-f", "file", "@raw-1000")
case("f-file-json-qcow2", "info", "--output=json", "-f", "file", "@v3")

# errors
case("err-missing-file", "info", "no-such-file.qcow2")
case("err-missing-file-json", "info", "--output=json", "no-such-file.qcow2")
case("err-missing-file-f-qcow2", "info", "-f", "qcow2", "no-such-file.qcow2")
case("err-missing-dir-component", "info", "no/such/dir.img")
case("err-bad-output", "info", "--output=xml", "@v3")
case("err-bad-output-case", "info", "--output=JSON", "@v3")
case("err-output-empty", "info", "--output=", "@v3")
case("err-output-missing-arg", "info", "--output")
case("err-unknown-driver", "info", "-f", "bogus", "@v3")
case("err-unknown-driver-missing-file", "info", "-f", "bogus", "no-such-file")
case("err-f-missing-arg", "info", "-f")
case("err-extra-args", "info", "@v3", "@v2")
case("err-no-args", "info")
case("err-unknown-short-option", "info", "-z", "@v3")
case("err-unknown-long-option", "info", "--bogus", "@v3")
case("err-directory", "info", ".")
case("err-directory-f-raw", "info", "-f", "raw", "sub")
case("err-empty-filename", "info", "")
case("err-qcow2-magic-only", "info", "@qcow2-magic-only")
case("err-data-file-missing-f", "info", "-f", "qcow2", "@data-file-missing")
case("help-info-h", "info", "-h")
case("help-info-help", "info", "--help")


def resolve(args, images, locked_image_factory):
    out = []
    for a in args:
        if a == "@locked":
            out.append(locked_image_factory())
        elif a.startswith("@abs:"):
            out.append(images.abspath(a[5:]))
        elif a.startswith("@"):
            out.append(images.path(a[1:]))
        elif "@" in a:
            # inside an --image-opts string or a json: name
            out.append(re.sub(r"@([\w.-]+)",
                              lambda m: locked_image_factory() if m.group(1) == "locked"
                              else images.path(m.group(1)), a))
        else:
            out.append(a)
    return out


@pytest.mark.parametrize("args", CASES)
def test_info_parity(instar, images, request, args):
    if "sub" in args:
        images.path("subdir-overlay")  # make sure the directory exists
    argv = resolve(args, images, lambda: request.getfixturevalue("locked_image"))
    expected, actual = tl.run_both(instar, argv, cwd=images.root)
    tl.assert_same(expected, actual, f"qemu-img {' '.join(argv)}")


# ----------------------------------------------------------------------------
# Names with a colon: "image:top.qcow2" reads as protocol "image" (unknown),
# "./image:top.qcow2" as a file, and "file:image:top.qcow2" as the file that
# qemu then calls "./image:top.qcow2" (bdrv_parse_filename_strip_prefix),
# also when it resolves a backing name against it.
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def colon_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("colon")
    tl.qemu_img("create", "-q", "-f", "qcow2", "./image:top.qcow2", "1M", cwd=d)
    tl.qemu_img("create", "-q", "-f", "qcow2", "-b", "file:image:top.qcow2", "-F", "qcow2",
                "./ov:1.qcow2", cwd=d)
    return d


COLON = [
    ["info", "image:top.qcow2"],
    ["info", "./image:top.qcow2"],
    ["info", "file:image:top.qcow2"],
    ["info", "--output=json", "file:image:top.qcow2"],
    ["info", "file:nonexist:x"],
    ["info", "--backing-chain", "file:ov:1.qcow2"],
    ["info", "--backing-chain", "--output=json", "./ov:1.qcow2"],
    ["check", "file:image:top.qcow2"],
    ["check", "--output=json", "file:./ov:1.qcow2"],
    ["check", "image:top.qcow2"],
]


@pytest.mark.parametrize("args", COLON, ids=["-".join(a) for a in COLON])
def test_colon_names(instar, colon_dir, args):
    tl.assert_same(*tl.run_both(instar, args, cwd=colon_dir), f"qemu-img {' '.join(args)}")


# ----------------------------------------------------------------------------
# String escapes of json: names (qobject/json-parser.c parse_string, the
# lexer's stray strings): \u escapes beyond ASCII become (modified) UTF-8,
# surrogate pairs one code point; bad escapes, bad UTF-8 and control
# characters fail with qemu's words.
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def utf8_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("utf8")
    for n in ("\u00e9.qcow2", "\U0001f600.qcow2"):
        tl.qemu_img("create", "-q", "-f", "qcow2", n, "1M", cwd=d)
    return d


JSON_STRINGS = {
    "u-latin1": r"\u00E9.qcow2",
    "u-pair": r"\ud83d\ude00.qcow2",
    "raw-utf8": "\u00e9.qcow2",
    "u-nul": r"\u0000.qcow2",
    "u-lone-lead": r"\ud83d.qcow2",
    "u-lead-then-ascii": r"\ud83d\u0041",
    "u-lone-trail": r"\ude00",
    "u-noncharacter": r"\ufffe",
    "u-short": r"\u12",
    "u-not-hex": r"\u12g4x",
    "bad-escape": r"a\qb",
    "bad-utf8": "\udcc3.q",  # the byte C3 alone (argv takes surrogateescape)
    "control-char": "a\tb",
    "unterminated": "a\\",
}


@pytest.mark.parametrize("s", JSON_STRINGS.values(), ids=JSON_STRINGS.keys())
def test_json_string_escapes(instar, utf8_dir, s):
    arg = 'json:{"driver":"qcow2","file":{"driver":"file","filename":"%s"}}' % s
    if s.endswith("\\"):
        arg = arg[:-3]  # the text ends inside the string, after a backslash
    tl.assert_same(*tl.run_both(instar, ["info", arg], cwd=utf8_dir), f"qemu-img info {arg!r}")
