#!/usr/bin/python3
"""Time `instar check` on every usable sandbox backend against `qemu-img check`.

Usage: scripts/bench-check.py [-n RUNS] [--instar PATH] [--json] [--hyperfine]
                              [--only scattered|prealloc] [--workdir DIR] [--out-json FILE]

Images are generated in a temp dir (or --workdir, kept and reused) with
qemu-img/qemu-io:

  scattered.qcow2  64 GiB virtual, 1 GiB written as 4096 writes of 256 KiB at
                   pseudo-random, non-overlapping 256 KiB-aligned offsets
                   (random.Random(20261121)), so the L2 tables and refcounts
                   are spread over the whole image;
  prealloc.qcow2   1 TiB created with -o preallocation=metadata (sparse file,
                   ~160 MiB of L2 tables and refcount blocks, 16 Mi clusters).

Backends: instar is timed once per sandbox backend (INSTAR_SANDBOX=process,
and INSTAR_SANDBOX=kvm where a VM can be created); a backend is usable when
`INSTAR_SANDBOX=<backend> instar info` on a small qcow2 exits 0, otherwise
the script says why it was skipped.  Each image is timed RUNS times per
tool (default 10): qemu-img and instar on each usable backend, interleaved
run by run in a rotating order so drift affects all equally, after one
warm-up run each (page cache hot).  Prints the median wall time per tool
and image and, per backend, the ratio of medians (instar / qemu-img; below
1 means instar is faster).  instar runs through a symlink named qemu-img,
like the parity suite, with TZ=UTC LC_ALL=C.  With --hyperfine, hyperfine
does the timing instead (not interleaved; one hyperfine invocation per
backend, since hyperfine cannot give one command its own environment, and
each ratio is against the qemu-img of its own invocation).

Also printed, to see where instar's time goes:
  - bench-vmm -n 101 --json (next to the instar binary): each backend's
    per-run start cost and per-hypercall cost;
  - per image and backend, the guest runs and hypercalls instar makes and
    the time spent inside those runs (INSTAR_DEBUG=1 runs, outside the
    timed loop), and "after exit": instar leaves its last, already killed
    sandbox process for init to reap; the script adopts such processes
    (PR_SET_CHILD_SUBREAPER) and waits for them after each timed run, so
    their teardown does not spill into the next run, and reports how long
    that took beyond instar's exit (not part of the timed wall time);
  - the start-up of a process that boots no guest: /bin/true,
    `instar --version` and `qemu-img --version`, interleaved likewise.

The outputs of qemu-img and of instar on each backend are compared once
per image and a difference is reported on stderr (the timing still runs).
--out-json writes every number (and the raw samples) to FILE.  This script
asserts nothing; it only measures.
"""

import argparse
import ctypes
import datetime
import json
import os
import platform
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QEMU_IMG = shutil.which("qemu-img") or "/usr/bin/qemu-img"
QEMU_IO = shutil.which("qemu-io") or "/usr/bin/qemu-io"
ENV = dict(os.environ, TZ="UTC", LC_ALL="C")
ENV.pop("INSTAR_DEBUG", None)
ENV.pop("INSTAR_SANDBOX", None)
BACKENDS = ("process", "kvm")
PR_SET_CHILD_SUBREAPER = 36
VMM_RUNS = 101  # bench-vmm -n: its per-hypercall figure is a difference of two medians
RUN_ENDED = re.compile(r"^instar: sandbox: run ended after (\d+) hypercalls in ([0-9.]+) ms: (.*)$")

GiB = 1 << 30
SEED = 20261121
N_WRITES = 4096
WRITE_SIZE = 256 << 10


def sh(*argv, cwd, stdin=None):
    subprocess.run(argv, cwd=cwd, env=ENV, check=True, input=stdin, stdout=subprocess.DEVNULL, timeout=3600)


def make_scattered(d: Path) -> str:
    name = "scattered.qcow2"
    if (d / name).exists():
        return name
    tmp = name + ".tmp"
    sh(QEMU_IMG, "create", "-q", "-f", "qcow2", tmp, "64G", cwd=d)
    rng = random.Random(SEED)
    slots = rng.sample(range((64 * GiB) // WRITE_SIZE), N_WRITES)
    # qemu-io reads commands from stdin when no -c is given: one process, 4096 writes
    cmds = "".join(f"write -q -P {i % 251 + 1} {s * WRITE_SIZE} {WRITE_SIZE}\n" for i, s in enumerate(slots))
    sh(QEMU_IO, "-f", "qcow2", tmp, cwd=d, stdin=cmds.encode())
    os.rename(d / tmp, d / name)
    return name


def make_prealloc(d: Path) -> str:
    name = "prealloc.qcow2"
    if not (d / name).exists():
        sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", name + ".tmp", "1T", cwd=d)
        os.rename(d / (name + ".tmp"), d / name)
    return name


IMAGES = {"scattered": make_scattered, "prealloc": make_prealloc}


def become_subreaper() -> bool:
    """Adopt the processes a tool leaves behind when it exits (prctl(PR_SET_CHILD_SUBREAPER)).

    instar kills its sandbox children at the end of each run but leaves the
    last ones for init to reap; adopting them lets time_once() wait until
    they are gone, so their teardown is measured and does not spill into
    the next tool's run.
    """
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans():
    """Wait until every adopted process has exited (only the tools' leftovers are ever adopted)."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def time_once(argv, cwd, env):
    """(seconds until the tool exits, seconds until every process it started is gone)."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    t1 = time.perf_counter()
    reap_orphans()
    t2 = time.perf_counter()
    if r.returncode != 0:
        raise SystemExit(f"{argv!r} failed (rc={r.returncode}): {r.stderr.decode(errors='replace')}")
    return t1 - t0, t2 - t0


def backend_env(backend):
    return dict(ENV, INSTAR_SANDBOX=backend) if backend else ENV


def probe_backends(link: Path, img: str, cwd: Path):
    """{backend: (usable, reason)}: usable when `INSTAR_SANDBOX=<backend> instar info img` exits 0."""
    res = {}
    for b in BACKENDS:
        r = subprocess.run([str(link), "info", "--force-share", img], cwd=cwd, env=backend_env(b),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        err = r.stderr.decode(errors="replace").strip().splitlines()
        reap_orphans()
        res[b] = (r.returncode == 0, "ok" if r.returncode == 0 else f"exit {r.returncode}: {err[-1] if err else ''}")
    return res


def run_bench_vmm(instar: Path):
    """bench-vmm --json from next to the instar binary: ({backend: figures or None}, message)."""
    exe = instar.parent / "bench-vmm"
    if not os.access(exe, os.X_OK):
        return None, f"{exe} not found: it is built with the unit tests (cmake --build build --target bench-vmm)"
    r = subprocess.run([str(exe), "-n", str(VMM_RUNS), "--json"], env=ENV, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=600)
    reap_orphans()
    if r.returncode != 0:
        return None, f"{exe} failed (rc={r.returncode}): {r.stderr.decode(errors='replace').strip()}"
    try:
        return json.loads(r.stdout), f"{exe} -n {VMM_RUNS} --json"
    except ValueError:
        return None, f"{exe}: unreadable output {r.stdout[:200]!r}"


def sandbox_runs(argv, cwd, backend, repeat):
    """Guest runs and hypercalls of one command (INSTAR_DEBUG=1), and the median time inside them."""
    counts, inside, per_run = None, [], []
    for _ in range(repeat):
        r = subprocess.run(argv, cwd=cwd, env=dict(backend_env(backend), INSTAR_DEBUG="1"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        reap_orphans()
        runs = [m.groups() for m in map(RUN_ENDED.match, r.stderr.decode(errors="replace").splitlines()) if m]
        c = {"runs": len(runs), "hypercalls": [int(n) for n, _, _ in runs],
             "results": [s for _, _, s in runs], "exit_code": r.returncode}
        if counts is None:
            counts = c
        elif c["hypercalls"] != counts["hypercalls"]:
            counts["varies"] = True
        inside.append(sum(float(ms) for _, ms, _ in runs))
        per_run.append([float(ms) for _, ms, _ in runs])
    counts["total_hypercalls"] = sum(counts["hypercalls"])
    counts["inside_runs_ms"] = statistics.median(inside)
    counts["inside_runs_ms_samples"] = inside
    if not counts.get("varies"):
        counts["per_run_ms"] = [statistics.median(ms) for ms in zip(*per_run)]
    return counts


def interleave(argvs, envs, cwd, runs):
    """One warm-up per tool, then runs rounds in a rotating order.

    Returns the median seconds per tool until it exits, the samples, and
    the median seconds from its exit until every process it started is gone.
    """
    tools = list(argvs)
    samples = {t: [] for t in tools}
    after = {t: [] for t in tools}
    for t in tools:
        time_once(argvs[t], cwd, envs[t])
    for i in range(runs):
        k = i % len(tools)
        for t in tools[k:] + tools[:k]:
            dt, gone = time_once(argvs[t], cwd, envs[t])
            samples[t].append(dt)
            after[t].append(gone - dt)
    return ({t: statistics.median(s) for t, s in samples.items()}, samples,
            {t: statistics.median(s) for t, s in after.items()})


def hyperfine(argvs, backends, cwd, runs, warmup, tmp: Path):
    """Medians with hyperfine: one invocation per backend, qemu-img first in each."""
    med, qmeds, ratio = {}, [], {}
    for b in backends:
        res = tmp / "hf.json"
        cmds = [shlex.join(argvs["qemu-img"]), shlex.join(argvs[f"instar[{b}]"])]
        subprocess.run(["hyperfine", "-N", "-w", str(warmup), "-r", str(runs), "--export-json", str(res), *cmds],
                       cwd=cwd, env=backend_env(b), check=True, stdout=subprocess.DEVNULL)
        reap_orphans()
        r = json.loads(res.read_text())["results"]
        qmeds.append(r[0]["median"])
        med[f"instar[{b}]"] = r[1]["median"]
        ratio[b] = r[1]["median"] / r[0]["median"]
    med["qemu-img"] = statistics.median(qmeds)
    return med, ratio


def cpu_ticks():
    """(busy, total) jiffies of all CPUs from /proc/stat, or None."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = f[3] + (f[4] if len(f) > 4 else 0)  # idle + iowait
    return sum(f[:8]) - idle, sum(f[:8])


def cpus_busy(t0, t1):
    """Average number of busy CPUs between two cpu_ticks(): this script's timing loop
    keeps about one busy; more means other work competed for the CPUs and skews ratios."""
    if not t0 or not t1 or t1[1] == t0[1]:
        return None
    return (t1[0] - t0[0]) / (t1[1] - t0[1]) * (os.cpu_count() or 1)


def describe_host(exe: Path):
    def out(argv):
        try:
            r = subprocess.run(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30)
            return r.stdout.decode(errors="replace").strip().splitlines()
        except OSError:
            return []

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "qemu_img": (out([QEMU_IMG, "--version"]) or ["?"])[0],
        "instar": [line for line in out([str(exe), "--version"]) if line.startswith("instar")],
        "instar_path": str(exe),
        "instar_built": datetime.datetime.fromtimestamp(exe.stat().st_mtime, datetime.timezone.utc)
        .isoformat(timespec="seconds"),
        "git_tree": (out(["git", "-C", str(REPO), "describe", "--always", "--dirty"]) or ["?"])[0],
    }


def print_backends(probe):
    for b, (ok, why) in probe.items():
        print(f"backend {b:8s} {'usable' if ok else 'skipped'}{'' if ok else ' (' + why + ')'}")


def print_vmm(vmm, msg):
    if vmm is None:
        print(f"bench-vmm: {msg}")
        return
    print(f"sandbox costs ({msg}):")
    for b, f in vmm.items():
        if f is None:
            print(f"  {b:8s} unavailable here")
        else:
            print(f"  {b:8s} start {f['start_us'] / 1e3:7.2f} ms per run   hypercall {f['hypercall_us']:7.2f} us")


def run_once(argv, cwd, env):
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    reap_orphans()
    if r.returncode != 0:
        raise SystemExit(f"{argv!r} failed (rc={r.returncode}): {r.stderr.decode(errors='replace')}")
    return r.stdout, r.stderr


def print_tables(title, rows, backends, base_med, a, width):
    """The timing table, the guest runs per command, and process start-up without a guest."""
    how = "hyperfine medians" if a.hyperfine else "medians"
    print(f"\n{title}: {how} of {a.runs} runs, ms; ratio = instar / qemu-img; "
          f"busy = CPUs busy on average while timing (the timing loop keeps ~1 busy)")
    head = f"{'image':{width}s} {'qemu-img':>10s}"
    for b in backends:
        head += f" {b:>10s} {'ratio':>6s}"
    print(f"{head}  busy")
    for r in rows:
        line = f"{r['image']:{width}s} {r['median_s']['qemu-img'] * 1e3:10.2f}"
        for b in backends:
            line += f" {r['median_s'][f'instar[{b}]'] * 1e3:10.2f} {r['ratio'][b]:6.2f}"
        print(f"{line}  " + ("?" if r["cpus_busy"] is None else f"{r['cpus_busy']:.2f}"))

    print(f"\nguest runs per command: runs, hypercalls per run and ms inside the runs from INSTAR_DEBUG=1 "
          f"(median of {a.debug_runs});\nest. hc = hypercalls x bench-vmm's per-hypercall cost; after exit = "
          f"median ms from instar's exit until its last sandbox process is gone")
    print(f"{'image':{width}s} {'backend':8s} {'runs':>5s} {'hypercalls':>12s} {'in runs ms':>24s} {'est. hc ms':>11s}"
          f" {'after exit':>11s}")
    for r in rows:
        for b in backends:
            d = r["sandbox"][b]
            hc = "+".join(map(str, d["hypercalls"])) or "0"
            after = ""
            est = f"{d['est_hypercall_ms']:.2f}" if "est_hypercall_ms" in d else ""
            inside = "+".join(f"{ms:.2f}" for ms in d.get("per_run_ms", []))
            if d["runs"] != 1:
                inside = f"{d['inside_runs_ms']:.2f}" + (f" ({inside})" if inside else "")
            if r["after_exit_median_s"]:
                after = f"{r['after_exit_median_s'][f'instar[{b}]'] * 1e3:.2f}"
            print(f"{r['image']:{width}s} {b:8s} {d['runs']:5d} {hc:>12s} {inside:>24s} {est:>11s}"
                  f" {after:>11s}{'  (varies)' if d.get('varies') else ''}")

    print(f"\nprocess start-up without a guest: medians of {a.runs} runs, ms")
    for t, m in base_med.items():
        print(f"  {t:20s} {m * 1e3:8.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=10)
    ap.add_argument("--instar", default=os.environ.get("INSTAR", str(REPO / "build" / "instar")))
    ap.add_argument("--json", action="store_true", help="use --output=json")
    ap.add_argument("--hyperfine", action="store_true", help="let hyperfine do the timing")
    ap.add_argument("--only", choices=sorted(IMAGES), action="append", help="image(s) to time (default: all)")
    ap.add_argument("--workdir", help="keep images here and reuse them across runs")
    ap.add_argument("--debug-runs", type=int, default=3, help="INSTAR_DEBUG=1 runs per image and backend")
    ap.add_argument("--out-json", metavar="FILE", help="also write every number to FILE")
    a = ap.parse_args()

    instar = Path(a.instar).resolve()
    if not os.access(instar, os.X_OK):
        sys.exit(f"instar binary not found or not executable: {instar}")
    if not become_subreaper():
        print("cannot become a child subreaper: what a tool leaves behind is not waited for "
              "('after exit' reads 0)", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        tmp = Path(tmp)
        (tmp / "link").mkdir()
        link = tmp / "link" / "qemu-img"
        link.symlink_to(instar)
        imgdir = Path(a.workdir) if a.workdir else tmp / "img"
        imgdir.mkdir(parents=True, exist_ok=True)
        sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "probe.qcow2", "64M", cwd=tmp)

        probe = probe_backends(link, "probe.qcow2", tmp)
        backends = [b for b, (ok, _) in probe.items() if ok]
        print_backends(probe)
        if not backends:
            sys.exit("no sandbox backend is usable here: nothing to time")
        vmm, vmm_msg = run_bench_vmm(instar)
        print_vmm(vmm, vmm_msg)
        sys.stdout.flush()

        tools = {"qemu-img": (QEMU_IMG, ENV)}
        tools.update({f"instar[{b}]": (str(link), backend_env(b)) for b in backends})
        envs = {t: e for t, (_, e) in tools.items()}
        out = ["--output=json"] if a.json else []

        base_argvs = {"/bin/true": ["/bin/true"], "instar --version": [str(link), "--version"],
                      "qemu-img --version": [QEMU_IMG, "--version"]}
        base_med, base_samples, _ = interleave(base_argvs, {t: ENV for t in base_argvs}, tmp, a.runs)

        rows = []
        for key in a.only or list(IMAGES):
            print(f"generating {key} in {imgdir} ...", file=sys.stderr)
            img = IMAGES[key](imgdir)
            argvs = {t: [p, "check", *out, img] for t, (p, _) in tools.items()}
            print(f"timing {img} ...", file=sys.stderr)
            outputs = {t: run_once(argvs[t], imgdir, envs[t]) for t in tools}
            for t in tools:
                if outputs[t] != outputs["qemu-img"]:
                    print(f"WARNING: {img}: {t}'s output differs from qemu-img's:\n"
                          f"  qemu-img: {outputs['qemu-img']!r}\n  {t}: {outputs[t]!r}", file=sys.stderr)
            samples = after = None
            ticks = cpu_ticks()
            if a.hyperfine:
                med, ratio = hyperfine(argvs, backends, imgdir, a.runs, 1, tmp)
            else:
                med, samples, after = interleave(argvs, envs, imgdir, a.runs)
                ratio = {b: med[f"instar[{b}]"] / med["qemu-img"] for b in backends}
            busy = cpus_busy(ticks, cpu_ticks())
            debug = {b: sandbox_runs(argvs[f"instar[{b}]"], imgdir, b, a.debug_runs) for b in backends}
            for b in backends:
                if vmm and vmm.get(b):
                    debug[b]["est_hypercall_ms"] = debug[b]["total_hypercalls"] * vmm[b]["hypercall_us"] / 1e3
            rows.append({"image": img, "median_s": med, "ratio": ratio, "after_exit_median_s": after, "cpus_busy": busy,
                         "sandbox": debug, "samples_s": samples,
                         "outputs_match": all(outputs[t] == outputs["qemu-img"] for t in tools)})

    title = "check" + (" --output=json" if a.json else "")
    print_tables(title, rows, backends, base_med, a, 20)

    if a.out_json:
        doc = {"command": "check", "args": out, "runs": a.runs, "hyperfine": a.hyperfine,
               "about": describe_host(Path(instar)), "backends": {b: {"usable": ok, "why": why}
                                                                  for b, (ok, why) in probe.items()},
               "bench_vmm": vmm, "bench_vmm_note": vmm_msg,
               "startup_median_s": base_med, "startup_samples_s": base_samples, "images": rows}
        Path(a.out_json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {a.out_json}")


if __name__ == "__main__":
    main()
