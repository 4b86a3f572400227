#!/usr/bin/python3
"""Run QEMU's qemu-iotests with instar and with qemu-img (docs/iotests.md).

Called by scripts/iotests.sh, which fetches the suite first.  Each test runs
through the suite's own `check` (one `check -<fmt> TEST` per test, so that
every test gets its own scratch directory, a timeout and a place in the
time budget), with

  QEMU_IMG_PROG  instar through a symlink named qemu-img, or /usr/bin/qemu-img
  QEMU_IO_PROG   /usr/bin/qemu-io,  QEMU_NBD_PROG  /usr/bin/qemu-nbd
  QEMU_PROG      a stub qemu-system: it answers the probes testenv.py and
                 common.rc make (`-machine help`, `-drive format=help`,
                 `-device help`) and fails every real start, noting it in
                 $TEST_DIR/qemu-system-needed
  QSD_PROG       the same stub for qemu-storage-daemon

7.2's testenv.py takes every binary from these variables (falling back to
a build tree two levels above the iotests directory, which is never
consulted when all are set) and needs no build directory or meson config.

Results go to OUT/results.json (default build/iotests/), one record per
(tool, format, test), with the diffs of failures under OUT/<tool>-<fmt>/.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QEMU_IMG = "/usr/bin/qemu-img"
QEMU_IO = "/usr/bin/qemu-io"
QEMU_NBD = "/usr/bin/qemu-nbd"
PASS_LIST = ROOT / "tests" / "iotests-pass.txt"
GAPS = ROOT / "tests" / "iotests-gaps.txt"

STUB = r"""#!/bin/sh
# Stand-in for %(what)s: iotests run here without it.
case " $* " in
*" -machine help "*|*" -M help "*) exit 0 ;;
*"format=help"*)
    # The same block-driver whitelist as qemu-img's (one QEMU build).
    %(qemu_img)s --help | sed -n 's/^Supported formats:/Supported formats:/p'
    exit 0 ;;
*" -device help "*) exit 0 ;;
esac
[ -n "${TEST_DIR:-}" ] && echo "$0 $*" >>"$TEST_DIR/qemu-system-needed"
echo "%(what)s is not available in this iotests run" >&2
exit 1
"""


def make_bindir(tmp, instar):
    """Create the stubs, and for instar a symlink named qemu-img."""
    d = Path(tmp)
    for name, what in (("qemu-system-x86_64", "qemu-system"),
                       ("qemu-storage-daemon", "qemu-storage-daemon")):
        p = d / name
        p.write_text(STUB % {"what": what, "qemu_img": QEMU_IMG})
        p.chmod(0o755)
    if instar:
        (d / "qemu-img").symlink_to(Path(instar).resolve())
    return d


def list_tests(iotests, bindir, groups, tests):
    """Resolve a group list or test names with `check -n` (sorted as check sorts)."""
    cmd = ["/usr/bin/python3", "check", "-n"]
    if groups:
        cmd += ["-g", groups]
    cmd += tests
    out = subprocess.run(cmd, cwd=iotests, check=True, capture_output=True,
                         text=True, env=base_env(bindir, None, None)).stdout
    return [t for t in out.split() if t]


def base_env(bindir, qemu_img, test_dir):
    env = dict(os.environ)
    for v in ("QEMU_IMG_OPTIONS", "QEMU_IO_OPTIONS", "QEMU_NBD_OPTIONS",
              "IMGOPTS", "GDB_OPTIONS", "PYTHONPATH"):
        env.pop(v, None)
    # check exits early unless every binary exists; -n needs them too.
    env["QEMU_PROG"] = str(bindir / "qemu-system-x86_64")
    env["QSD_PROG"] = str(bindir / "qemu-storage-daemon")
    env["QEMU_IMG_PROG"] = qemu_img or QEMU_IMG
    env["QEMU_IO_PROG"] = QEMU_IO
    env["QEMU_NBD_PROG"] = QEMU_NBD
    if test_dir:
        env["TEST_DIR"] = str(test_dir)
    return env


LINE = re.compile(r"^(\S+)\s+(pass|fail|not run)\s")


def run_one(iotests, bindir, tool, qemu_img, fmt, test, outdir, timeout):
    name = os.path.basename(test)
    work = outdir / f"{tool}-{fmt}" / name.replace("/", "_")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sock = tempfile.mkdtemp(prefix="iot-")  # short: unix socket paths
    env = base_env(bindir, qemu_img, work)
    env["SOCK_DIR"] = sock
    cmd = ["/usr/bin/python3", "check", "--color", "off", "-" + fmt, name]
    t0 = time.time()
    rec = {"tool": tool, "fmt": fmt, "test": test}
    proc = subprocess.Popen(cmd, cwd=iotests, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        out = out.decode(errors="replace")
        status = None
        for line in out.splitlines():
            m = LINE.match(line)
            if m and os.path.basename(m.group(1)) == name:
                status = m.group(2)
        if status is None:
            status, reason = "error", out.strip()[-500:]
        elif status == "not run":
            f = work / (name + ".notrun")
            reason = f.read_text(errors="replace").strip() if f.exists() else ""
        else:
            reason = ""
        if status == "fail":
            (work / "check.log").write_text(out)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        status, reason = "timeout", f"killed after {timeout} s"
    finally:
        shutil.rmtree(sock, ignore_errors=True)
    rec["elapsed"] = round(time.time() - t0, 1)
    rec["status"] = status
    rec["reason"] = reason
    rec["needs_system"] = (work / "qemu-system-needed").exists()
    if status == "pass":
        shutil.rmtree(work, ignore_errors=True)
    else:
        # Keep the diff and the notes; drop the images.
        for p in work.iterdir():
            if p.is_file() and not p.name.endswith((".out.bad", ".notrun", ".log",
                                                   "-needed", ".casenotrun")):
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
    return rec


def read_pairs(path, fast_only=False):
    """Lines 'fmt test [fast]'; with fast_only, only those tagged fast."""
    pairs = []
    for line in Path(path).read_text().splitlines():
        w = line.split("#", 1)[0].split()
        if len(w) >= 2 and (not fast_only or "fast" in w[2:]):
            pairs.append((w[0], w[1]))
    return pairs


def summarise(results):
    by = {}
    for r in results:
        by.setdefault((r["tool"], r["fmt"]), {}).setdefault(r["status"], 0)
        by[(r["tool"], r["fmt"])][r["status"]] += 1
    for (tool, fmt), counts in sorted(by.items()):
        print(f"  {tool:9} -{fmt:6} " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    idx = {(r["tool"], r["fmt"], r["test"]): r for r in results}
    fmts = sorted({r["fmt"] for r in results})
    for fmt in fmts:
        base = [t for (tool, f, t), r in idx.items()
                if tool == "qemu-img" and f == fmt and r["status"] == "pass"]
        if not base or not any(k[0] == "instar" for k in idx):
            continue
        ok = [t for t in base if idx.get(("instar", fmt, t), {}).get("status") == "pass"]
        print(f"  -{fmt}: {len(ok)}/{len(base)} of the tests that pass with qemu-img pass with instar")


def load_gaps():
    gaps = {}
    if GAPS.exists():
        for line in GAPS.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            key, reason = line.split(None, 1)
            gaps[key] = reason.strip()
    return gaps


UNBUILT = re.compile(r"'(\w+)' is not supported yet by instar")


def unbuilt(outdir, r):
    """The subcommands instar refused as not built yet in a failed run."""
    bad = Path(outdir) / f"{r['tool']}-{r['fmt']}" / os.path.basename(r["test"])
    found = []
    for f in bad.glob("*.out.bad"):
        for m in UNBUILT.finditer(f.read_text(errors="replace")):
            if m.group(1) not in found:
                found.append(m.group(1))
    return found


def markdown(results, outdir):
    """The table of docs/iotests.md: every test that passes with qemu-img."""
    idx = {(r["tool"], r["fmt"], r["test"]): r for r in results}
    fmts = ["qcow2", "raw"]
    tests = sorted({t for (tool, f, t), r in idx.items()
                    if tool == "qemu-img" and r["status"] == "pass"},
                   key=lambda t: (not t[0].isdigit(), t))
    gaps = load_gaps()
    print("| test | " + " | ".join(f"-{f}" for f in fmts) + " | why instar fails |")
    print("|---|" + "---|" * len(fmts) + "---|")
    for t in tests:
        cells, why = [], []
        for f in fmts:
            b = idx.get(("qemu-img", f, t))
            i = idx.get(("instar", f, t))
            if not b or b["status"] != "pass":
                cells.append("·")
                continue
            s = i["status"] if i else "?"
            cells.append("pass" if s == "pass" else f"**{s}**")
            if s != "pass":
                r = gaps.get(f"{t}:{f}") or gaps.get(t)
                if not r:
                    cmds = unbuilt(outdir, i) if i else []
                    r = ("needs " + ", ".join(f"`{c}`" for c in cmds) + " (not built yet)"
                         if cmds else "?")
                if r not in why:
                    why.append(r)
        print(f"| {t} | " + " | ".join(cells) + " | " + "; ".join(why) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iotests", required=True, help="QEMU's tests/qemu-iotests")
    p.add_argument("--tool", choices=["instar", "qemu-img", "both"], default="both")
    p.add_argument("--fmt", default="qcow2,raw", help="formats, comma-separated")
    p.add_argument("-g", "--groups", help="check's groups (e.g. quick,img)")
    p.add_argument("--list", help="file of tests to run, one a line ('fmt test' or 'test')")
    p.add_argument("-j", "--jobs", type=int, default=2)
    p.add_argument("--timeout", type=int, default=300, help="seconds per test")
    p.add_argument("--budget", type=int, default=0,
                   help="total seconds; tests not started by then are recorded as 'budget'")
    p.add_argument("--instar", default=str(ROOT / "build" / "instar"))
    p.add_argument("--out", default=str(ROOT / "build" / "iotests"))
    p.add_argument("--fresh", action="store_true",
                   help="replace OUT/results.json instead of merging into it")
    p.add_argument("--baseline-passes", action="store_true",
                   help="run only the (fmt, test) pairs that passed with qemu-img "
                        "in OUT/results.json")
    p.add_argument("--must-pass", nargs="?", const=str(PASS_LIST), metavar="FILE",
                   help="run instar on the (fmt, test) pairs of FILE "
                        "(default tests/iotests-pass.txt); exit 1 unless all pass")
    p.add_argument("--fast", action="store_true",
                   help="with --must-pass: only the pairs tagged 'fast' (scripts/test.sh)")
    p.add_argument("--markdown", action="store_true",
                   help="print docs/iotests.md's table from OUT/results.json and exit")
    p.add_argument("tests", nargs="*")
    a = p.parse_args()

    outdir = Path(a.out).resolve()  # TEST_DIR must be absolute
    if a.markdown:
        markdown(json.loads((outdir / "results.json").read_text()), outdir)
        return 0

    fmts = a.fmt.split(",")
    tools = ["qemu-img", "instar"] if a.tool == "both" else [a.tool]
    if a.must_pass:
        tools = ["instar"]
    if "instar" in tools and not os.access(a.instar, os.X_OK):
        print(f"iotests: {a.instar} is missing (scripts/build.sh)", file=sys.stderr)
        return 1
    outdir.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + a.budget if a.budget else None
    t0 = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="iotests-bin-") as tmp:
        bindirs = {}
        for tool in tools:
            sub = Path(tmp) / tool
            sub.mkdir()
            bindirs[tool] = make_bindir(sub, a.instar if tool == "instar" else None)
        if a.must_pass:
            jobs = [(f, t) for f, t in read_pairs(a.must_pass, a.fast)]
        elif a.baseline_passes:
            old = json.loads((outdir / "results.json").read_text())
            jobs = [(r["fmt"], r["test"]) for r in old
                    if r["tool"] == "qemu-img" and r["status"] == "pass" and r["fmt"] in fmts]
        elif a.list:
            jobs = []
            for line in Path(a.list).read_text().splitlines():
                w = line.split("#", 1)[0].split()
                if len(w) == 2:
                    jobs.append((w[0], w[1]))
                elif len(w) == 1:
                    jobs += [(f, w[0]) for f in fmts]
        else:
            names = list_tests(a.iotests, bindirs[tools[0]], a.groups, a.tests)
            jobs = [(f, t) for f in fmts for t in names]

        def task(job):
            tool, fmt, test = job
            if deadline and time.time() > deadline:
                return {"tool": tool, "fmt": fmt, "test": test, "status": "budget",
                        "reason": "time budget spent", "elapsed": 0, "needs_system": False}
            qimg = str(bindirs[tool] / "qemu-img") if tool == "instar" else QEMU_IMG
            r = run_one(a.iotests, bindirs[tool], tool, qimg, fmt, test, outdir, a.timeout)
            line = f"{tool:9} -{fmt:6} {test:32} {r['status']:8} {r['elapsed']:6.1f}s"
            if r["status"] == "not run":
                line += "  " + r["reason"][:60]
            print(line, flush=True)
            return r

        order = [(tool, f, t) for f, t in jobs for tool in tools]
        with ThreadPoolExecutor(max_workers=max(1, min(a.jobs, 2 * os.cpu_count()))) as ex:
            results = list(ex.map(task, order))

    wall = round(time.time() - t0, 1)
    # Merge into earlier results of other tests, tools or formats.
    merged = {}
    if not a.fresh and (outdir / "results.json").exists():
        for r in json.loads((outdir / "results.json").read_text()):
            merged[(r["tool"], r["fmt"], r["test"])] = r
    for r in results:
        merged[(r["tool"], r["fmt"], r["test"])] = r
    (outdir / "results.json").write_text(json.dumps(list(merged.values()), indent=1) + "\n")
    print(f"iotests: {len(results)} runs in {wall} s (-j{a.jobs}); results in {outdir}/results.json")
    summarise(list(merged.values()))
    if a.must_pass:
        bad = [r for r in results if r["status"] != "pass"]
        for r in bad:
            print(f"iotests: MUST-PASS {r['fmt']} {r['test']}: {r['status']} "
                  f"(see {outdir}/instar-{r['fmt']}/{os.path.basename(r['test'])})")
        n = len(results)
        print(f"{n - len(bad)} passed, {len(bad)} failed")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
