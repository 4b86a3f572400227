"""Shared by scripts/bench-info.py and scripts/bench-check.py: timing
instar (on every usable sandbox backend) against qemu-img, interleaved,
with the sandbox's own costs (build/bench-vmm) and the guest runs each
command makes (INSTAR_DEBUG=1).  Measures only; asserts nothing.
"""

import ctypes
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
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


def time_once(argv, cwd, env, timeout=600):
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
