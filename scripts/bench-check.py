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
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    become_subreaper,
    reap_orphans,
    time_once,
    backend_env,
    probe_backends,
    run_bench_vmm,
    sandbox_runs,
    interleave,
    hyperfine,
    cpu_ticks,
    cpus_busy,
    describe_host,
    print_backends,
    print_vmm,
    run_once,
    print_tables,
    BACKENDS,
    ENV,
    QEMU_IMG,
    QEMU_IO,
    REPO,
)

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
