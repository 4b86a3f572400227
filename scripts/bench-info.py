#!/usr/bin/python3
"""Time `instar info` on every usable sandbox backend against `qemu-img info`.

Usage: scripts/bench-info.py [-n RUNS] [--instar PATH] [--json] [--prealloc-1t] [--hyperfine]
                             [--formats | --only-formats] [--out-json FILE]

Images are generated in a temp dir with qemu-img/qemu-io: a small qcow2, a
qcow2 with snapshots and bitmaps, a raw file, a 1 TiB qcow2 and (opt-in,
slow to create) a 1 TiB qcow2 with preallocation=metadata.  --formats adds
one 1 GiB image of every other format qemu-img creates, each with 4 MiB
written at 0 and at 512 MiB (vmdk monolithicSparse and streamOptimized,
vpc, vhdx, vdi, qcow, qed, parallels, and a luks volume, whose info needs
no key); --only-formats times those alone.

Backends: instar is timed once per sandbox backend (INSTAR_SANDBOX=process,
and INSTAR_SANDBOX=kvm where a VM can be created); a backend is usable when
`INSTAR_SANDBOX=<backend> instar info` on a small qcow2 exits 0, otherwise
the script says why it was skipped.  Each image is timed RUNS times per
tool (default 30): qemu-img and instar on each usable backend, interleaved
run by run in a rotating order so drift affects all equally, after one
warm-up run each.  Prints the median wall time per tool and image and, per
backend, the ratio of medians (instar / qemu-img; below 1 means instar is
faster).  instar runs through a symlink named qemu-img, like the parity
suite.  With --hyperfine, hyperfine does the timing instead (not
interleaved; one hyperfine invocation per backend, since hyperfine cannot
give one command its own environment, and each ratio is against the
qemu-img of its own invocation).

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

Both tools run with TZ=UTC LC_ALL=C and `info --force-share` (human output,
or JSON with --json).  --out-json writes every number (and the raw samples)
to FILE.  This script asserts nothing; it only measures.
"""

import argparse
import json
import os
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


def sh(*argv, cwd):
    subprocess.run(argv, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL, timeout=1800)


# --formats: (file, qemu-img create -f FORMAT, extra create options)
FORMAT_IMAGES = [
    ("sparse.vmdk", "vmdk", []),
    ("stream.vmdk", "vmdk", ["-o", "subformat=streamOptimized"]),
    ("dynamic.vpc", "vpc", []),
    ("dynamic.vhdx", "vhdx", []),
    ("dynamic.vdi", "vdi", []),
    ("v1.qcow", "qcow", []),
    ("image.qed", "qed", []),
    ("image.parallels", "parallels", []),
]


def make_format_images(d: Path):
    """Every format's image: written through qemu-img convert from one raw file."""
    imgs = []
    with open(d / "src.raw", "wb") as f:
        f.truncate(1 << 30)
        for off, pat in ((0, 5), (512 << 20, 6)):
            f.seek(off)
            f.write(bytes([pat]) * (4 << 20))
    for name, fmt, opts in FORMAT_IMAGES:
        sh(QEMU_IMG, "convert", "-O", fmt, *opts, "src.raw", name, cwd=d)
        imgs.append(name)
    sh(QEMU_IMG, "convert", "-O", "luks", "--object", "secret,id=s,data=bench", "-o",
       "key-secret=s,iter-time=10", "src.raw", "volume.luks", cwd=d)
    imgs.append("volume.luks")
    (d / "src.raw").unlink()
    return imgs


def make_images(d: Path, prealloc: bool, formats: str):
    imgs = []
    if formats == "only":
        return make_format_images(d)
    sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "small.qcow2", "64M", cwd=d)
    sh(QEMU_IO, "-f", "qcow2", "-c", "write -P 1 0 1M", "small.qcow2", cwd=d)
    imgs.append("small.qcow2")

    sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "snapbm.qcow2", "1G", cwd=d)
    sh(QEMU_IO, "-f", "qcow2", "-c", "write -P 2 0 4M", "-c", "write -P 3 512M 4M", "snapbm.qcow2", cwd=d)
    for i in range(8):
        sh(QEMU_IMG, "snapshot", "-c", f"snap {i}", "snapbm.qcow2", cwd=d)
    for i in range(4):
        sh(QEMU_IMG, "bitmap", "--add", "-g", str(65536 << i), "snapbm.qcow2", f"bm{i}", cwd=d)
    imgs.append("snapbm.qcow2")

    with open(d / "disk.raw", "wb") as f:
        f.write(b"\1" * 4096)
        f.truncate(1 << 30)
    imgs.append("disk.raw")

    sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "big.qcow2", "1T", cwd=d)
    imgs.append("big.qcow2")
    if prealloc:
        sh(QEMU_IMG, "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", "big-prealloc.qcow2", "1T", cwd=d)
        imgs.append("big-prealloc.qcow2")
    if formats == "also":
        imgs += make_format_images(d)
    return imgs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=30)
    ap.add_argument("--instar", default=os.environ.get("INSTAR", str(REPO / "build" / "instar")))
    ap.add_argument("--json", action="store_true", help="use --output=json")
    ap.add_argument("--prealloc-1t", action="store_true", help="also a 1 TiB preallocation=metadata qcow2 (slow)")
    ap.add_argument("--hyperfine", action="store_true", help="let hyperfine do the timing")
    ap.add_argument("--formats", action="store_true", help="also an image of every other format qemu-img creates")
    ap.add_argument("--only-formats", action="store_true", help="only the --formats images")
    ap.add_argument("--debug-runs", type=int, default=3, help="INSTAR_DEBUG=1 runs per image and backend")
    ap.add_argument("--out-json", metavar="FILE", help="also write every number to FILE")
    a = ap.parse_args()

    instar = Path(a.instar).resolve()
    if not os.access(instar, os.X_OK):
        sys.exit(f"instar binary not found or not executable: {instar}")
    if not become_subreaper():
        print("cannot become a child subreaper: what a tool leaves behind is not waited for "
              "('after exit' reads 0)", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench-info-") as tmp:
        tmp = Path(tmp)
        (tmp / "link").mkdir()
        link = tmp / "link" / "qemu-img"
        link.symlink_to(instar)
        imgdir = tmp / "img"
        imgdir.mkdir()
        print(f"generating images in {imgdir} ...", file=sys.stderr)
        imgs = make_images(imgdir, a.prealloc_1t,
                           "only" if a.only_formats else "also" if a.formats else "")

        probe = probe_backends(link, imgs[0], imgdir)
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
        base_med, base_samples, _ = interleave(base_argvs, {t: ENV for t in base_argvs}, imgdir, a.runs)

        rows = []
        for img in imgs:
            print(f"timing {img} ...", file=sys.stderr)
            argvs = {t: [p, "info", "--force-share", *out, img] for t, (p, _) in tools.items()}
            samples = after = None
            ticks = cpu_ticks()
            if a.hyperfine:
                med, ratio = hyperfine(argvs, backends, imgdir, a.runs, 3, tmp)
            else:
                med, samples, after = interleave(argvs, envs, imgdir, a.runs)
                ratio = {b: med[f"instar[{b}]"] / med["qemu-img"] for b in backends}
            busy = cpus_busy(ticks, cpu_ticks())
            debug = {b: sandbox_runs(argvs[f"instar[{b}]"], imgdir, b, a.debug_runs) for b in backends}
            for b in backends:
                if vmm and vmm.get(b):
                    debug[b]["est_hypercall_ms"] = debug[b]["total_hypercalls"] * vmm[b]["hypercall_us"] / 1e3
            rows.append({"image": img, "median_s": med, "ratio": ratio, "after_exit_median_s": after, "cpus_busy": busy,
                         "sandbox": debug, "samples_s": samples})

    title = "info --force-share" + (" --output=json" if a.json else "")
    print_tables(title, rows, backends, base_med, a, 24)

    if a.out_json:
        doc = {"command": "info", "args": ["--force-share", *out], "runs": a.runs, "hyperfine": a.hyperfine,
               "about": describe_host(Path(instar)), "backends": {b: {"usable": ok, "why": why}
                                                                  for b, (ok, why) in probe.items()},
               "bench_vmm": vmm, "bench_vmm_note": vmm_msg,
               "startup_median_s": base_med, "startup_samples_s": base_samples, "images": rows}
        Path(a.out_json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {a.out_json}")


if __name__ == "__main__":
    main()
