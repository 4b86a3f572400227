"""Shared helpers for instar's parity and integration test suites.

Both parity/conftest.py and tests/integration/conftest.py import this module
(they put <repo>/tests on sys.path), so the rules about which binary is under
test, when to skip, and how processes are run live in one place:

* The binary under test is $INSTAR if set, else <repo>/build/instar.  A missing
  binary is a test FAILURE, never a skip.  INSTAR=/usr/bin/qemu-img runs the
  suites against the oracle itself, as a self-check of the harness.
* instar interprets images only inside its sandbox: a KVM VM where KVM is
  usable, else a seccomp-confined process (INSTAR_SANDBOX picks one).  The
  suites probe it once; if no sandbox can run they skip loudly, and under
  CI=true that is a failure instead, never a silent pass.  The backend in
  use is printed in the session header.
* instar is always run through a symlink named ``qemu-img`` (in a private temp
  dir) so that its ``qemu-img: `` message prefix (basename(argv[0])) matches
  the oracle's.  ``run_instar_multicall`` runs the real path instead.
* Both tools run with TZ=UTC LC_ALL=C and a subprocess timeout.

Nothing here hard-codes expected output: every expectation comes from running
the oracle (Debian 12's qemu-img 7.2) in the same test run.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]

#: The oracle.  Resolved once; an absent oracle is an environment error.
QEMU_IMG = shutil.which("qemu-img") or "/usr/bin/qemu-img"
QEMU_IO = shutil.which("qemu-io") or "/usr/bin/qemu-io"

#: Default per-process timeout in seconds.  Every subprocess call uses one.
TIMEOUT = 20

BASE_ENV = {"TZ": "UTC", "LC_ALL": "C"}


def tool_env(extra: Mapping[str, str] | None = None) -> dict:
    """Environment for both tools: the caller's env plus TZ=UTC LC_ALL=C.

    INSTAR_BACKING_ALLOW is removed unless given in ``extra`` so a developer's
    shell setting cannot change results.
    """
    env = dict(os.environ)
    env.pop("INSTAR_BACKING_ALLOW", None)
    env.update(BASE_ENV)
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class Result:
    """Outcome of one process run; stdout/stderr are raw bytes."""

    argv: tuple
    returncode: int
    stdout: bytes
    stderr: bytes

    def describe(self) -> str:
        return (
            f"argv={list(self.argv)!r}\n  rc={self.returncode}\n"
            f"  stdout={self.stdout.decode('utf-8', 'replace')!r}\n"
            f"  stderr={self.stderr.decode('utf-8', 'replace')!r}"
        )


# Both tools' PBKDF2 benchmark on a clock 1000 times fast.  A LUKS create or
# new key slot in qemu-img hashes until it has used 500 ms of CPU (twice for
# a create), whatever the iter-time, and instar's guest times its benchmark
# the same way: over a second of CPU per volume per tool, most of the
# suites' LUKS time.  So every run of qemu-img or qemu-io gets the
# getrusage() shim tests/oracle_clock.c (build/liboracle_clock.so) and
# every run of instar INSTAR_CLOCK_SCALE: both benchmarks end after their
# first round and both tools choose LUKS's minimum iteration counts.
# Nothing else reads those clocks.  Cases marked real_pbkdf2 (conftest.py
# sets REAL_PBKDF2_ENV for them) run on the real clocks: iteration counts
# past 2^32, the CPU paths of tests/integration/test_luks_cpu.py, a default
# create.  Without the shim neither tool's clock is scaled.
PBKDF2_CLOCK_SCALE = "1000"
REAL_PBKDF2_ENV = "INSTAR_TEST_REAL_PBKDF2"
_shim: list = []


def oracle_clock_shim() -> str | None:
    """build/liboracle_clock.so beside the binary under test, or in <repo>/build; None if absent."""
    if not _shim:
        found = None
        for d in (instar_binary().parent, REPO / "build"):
            if (d / "liboracle_clock.so").is_file():
                found = str(d / "liboracle_clock.so")
                break
        _shim.extend((found, is_oracle_self_check()))
    return _shim[0]


def clock_env(argv: Sequence[str]) -> dict:
    """The fast PBKDF2 clock for argv's tool (see PBKDF2_CLOCK_SCALE), or {}."""
    shim = oracle_clock_shim()
    if shim is None or os.environ.get(REAL_PBKDF2_ENV):
        return {}
    oracle = (QEMU_IMG, QEMU_IO, "qemu-img", "qemu-io")
    if any(str(a) in oracle for a in argv[:6]) or _shim[1]:
        # after what is preloaded already (scripts/test.sh's eatmydata)
        pre = os.environ.get("LD_PRELOAD")
        return {"LD_PRELOAD": f"{pre} {shim}" if pre else shim, "INSTAR_ORACLE_CLOCK_SCALE": PBKDF2_CLOCK_SCALE}
    return {"INSTAR_CLOCK_SCALE": PBKDF2_CLOCK_SCALE}


def run(
    argv: Sequence[str],
    cwd: os.PathLike | str | None = None,
    timeout: float = TIMEOUT,
    env_extra: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> Result:
    """Run ``argv`` with the tool environment; raise on timeout (a hang is a failure)."""
    try:
        cp = subprocess.run(
            list(argv),
            cwd=cwd,
            env=tool_env({**clock_env(argv), **(env_extra or {})}),
            input=stdin if stdin is not None else b"",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"timeout after {timeout}s (hang?): {list(argv)!r}") from e
    return Result(tuple(argv), cp.returncode, cp.stdout, cp.stderr)


def qemu_img(*args: str, cwd=None, check: bool = True, timeout: float = 120) -> Result:
    """Run the oracle qemu-img (used for image generation and expectations)."""
    r = run([QEMU_IMG, *args], cwd=cwd, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("qemu-img failed while generating test data:\n  " + r.describe())
    return r


def qemu_io(*args: str, cwd=None, check: bool = True, timeout: float = 120) -> Result:
    """Run the oracle qemu-io (image generation only)."""
    r = run([QEMU_IO, *args], cwd=cwd, timeout=timeout)
    if check and (r.returncode != 0 or b"failed" in r.stderr.lower()):
        raise RuntimeError("qemu-io failed while generating test data:\n  " + r.describe())
    return r


def host_extents_fd(fd: int, end: int) -> list[tuple[int, int]]:
    """[(data, hole)] of fd up to end, as SEEK_DATA/SEEK_HOLE report them."""
    out, off = [], 0
    while off < end:
        try:
            data = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after off
            break
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        out.append((data, hole))
        off = hole
    return out


_ZERO_MIB = bytes(1 << 20)


def copy_file(src: os.PathLike | str, dst: os.PathLike | str, sparse_always: bool = False) -> None:
    """``cp SRC DST`` (or ``cp --sparse=always``) without a process.

    The source's holes stay holes and its data extents are copied in the
    kernel (copy_file_range).  With sparse_always, every 4 KiB block of
    data that reads as zeros becomes a hole as well, as cp --sparse=always
    makes it.  A new file gets the source's permission bits under the
    umask, as cp gives them.  Spawning cp costs far more than the copy for
    the small images most cases use, and the suites copy tens of
    thousands of them.
    """
    fi = os.open(src, os.O_RDONLY)
    try:
        st = os.fstat(fi)
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, st.st_mode & 0o777)
        try:
            for data, hole in host_extents_fd(fi, st.st_size):
                if sparse_always:
                    _copy_nonzero(fi, fo, data, hole)
                    continue
                off = data
                while off < hole:
                    n = os.copy_file_range(fi, fo, hole - off, off, off)
                    if n == 0:
                        break
                    off += n
            os.ftruncate(fo, st.st_size)
        finally:
            os.close(fo)
    finally:
        os.close(fi)


def copy_tree(src: Path, dst: Path, sparse_always: bool = False) -> None:
    """``cp -a [--sparse=always] SRC DST`` for a tree of files, directories and symlinks."""
    dst.mkdir(parents=True)
    for p in sorted(src.rglob("*")):
        q = dst / p.relative_to(src)
        if p.is_symlink():
            os.symlink(os.readlink(p), q)
        elif p.is_dir():
            q.mkdir()
        else:
            copy_file(p, q, sparse_always)
        if not p.is_symlink():
            os.chmod(q, p.stat().st_mode & 0o7777)


def _copy_nonzero(fi: int, fo: int, start: int, end: int) -> None:
    off = start
    while off < end:
        chunk = os.pread(fi, min(end - off, 1 << 20), off)
        if not chunk:
            return
        if chunk != _ZERO_MIB[:len(chunk)]:
            run_start = None
            for i in range(0, len(chunk) + 4096, 4096):
                block = chunk[i:i + 4096]
                zero = not block or block == _ZERO_MIB[:len(block)]
                if not zero and run_start is None:
                    run_start = i
                elif zero and run_start is not None:
                    os.pwrite(fo, chunk[run_start:i], off + run_start)
                    run_start = None
        off += len(chunk)


def settle(path: os.PathLike | str) -> None:
    """fsync path for real, so that its st_blocks is final.

    scripts/test.sh runs the suites under eatmydata, whose fsync does
    nothing: until the kernel writes a file back, ext4 counts the file's
    delayed allocations in st_blocks in its own way, and two files written
    alike by different call sequences can differ there.  The raw system
    call is not intercepted.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        nr = {"x86_64": 74, "aarch64": 82}.get(os.uname().machine)
        if nr is None:
            env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
            subprocess.run(["sync", str(path)], env=env, check=True)
        elif _libc().syscall(nr, fd) != 0:
            raise OSError(ctypes.get_errno(), "fsync")
    finally:
        os.close(fd)


def allocated_blocks(path: os.PathLike | str) -> int:
    """st_blocks of path once its writes have reached the file system (settle())."""
    settle(path)
    return os.stat(path).st_blocks


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _same_ranges(fa: int, fb: int, ranges) -> bool:
    for start, end in ranges:
        off = start
        while off < end:
            n = min(end - off, 1 << 22)
            if os.pread(fa, n, off) != os.pread(fb, n, off):
                return False
            off += n
    return True


def _compare(a, b, holes: bool) -> bool:
    """Same length and bytes; with holes, also the same data/hole layout
    (then only the data extents are read); without, holes read as zeros."""
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    try:
        size = os.fstat(fa).st_size
        if os.fstat(fb).st_size != size:
            return False
        ea, eb = host_extents_fd(fa, size), host_extents_fd(fb, size)
        if ea == eb:
            return _same_ranges(fa, fb, ea)
        return not holes and _same_ranges(fa, fb, [(0, size)])
    finally:
        os.close(fa)
        os.close(fb)


def same_files(a: os.PathLike | str, b: os.PathLike | str) -> bool:
    """Whether two files have the same length, holes and bytes."""
    return _compare(a, b, holes=True)


def same_content(a: os.PathLike | str, b: os.PathLike | str) -> bool:
    """Whether two files read the same (holes read as zeros), without loading them whole."""
    return _compare(a, b, holes=False)


def same_trees(a: Path, b: Path) -> bool:
    """Whether two directories hold the same names, each file with the same bytes and holes."""
    na = sorted(p.relative_to(a) for p in a.rglob("*"))
    nb = sorted(p.relative_to(b) for p in b.rglob("*"))
    if na != nb:
        return False
    for rel in na:
        pa, pb = a / rel, b / rel
        if pa.is_symlink() or pb.is_symlink():
            if not (pa.is_symlink() and pb.is_symlink() and os.readlink(pa) == os.readlink(pb)):
                return False
        elif pa.is_file() != pb.is_file() or (pa.is_file() and not same_files(pa, pb)):
            return False
    return True


# --------------------------------------------------------------------------
# Binary under test and KVM gate
# --------------------------------------------------------------------------


def instar_binary() -> Path:
    """Path of the binary under test: $INSTAR, else <repo>/build/instar (not checked)."""
    env = os.environ.get("INSTAR")
    return Path(env).resolve() if env else REPO / "build" / "instar"


def binary_problem() -> str | None:
    """Why the binary under test cannot be used, or None if it looks runnable."""
    b = instar_binary()
    if not b.exists():
        return f"instar binary not found at {b} (build it, or set INSTAR=/path/to/instar)"
    if not os.access(b, os.X_OK):
        return f"instar binary {b} is not executable"
    return None


def is_oracle_self_check() -> bool:
    """True when the binary under test IS the oracle (INSTAR=/usr/bin/qemu-img).

    That run checks the harness itself: every parity case must then pass
    (except those that assert a deliberate refusal, named ``refused``),
    which shows that a case compares what it should and that qemu-img's
    output is deterministic where the case requires it.  There is no
    sandbox to probe.
    """
    try:
        return instar_binary().resolve() == Path(QEMU_IMG).resolve()
    except OSError:
        return False


def kvm_problem() -> str | None:
    """Why /dev/kvm cannot be opened read-write, or None if it can."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"cannot open /dev/kvm read-write: {e.strerror} (errno {e.errno})"
    os.close(fd)
    return None


_SANDBOX_PROBE: tuple | None = None


def sandbox_probe() -> tuple[str | None, str | None]:
    """(backend, problem): which sandbox backend instar runs a guest on here.

    Boots one guest (``instar info`` on a fresh qcow2 made by qemu-img, with
    INSTAR_DEBUG set so instar names its backend).  backend is "kvm" or
    "process" and problem None, or backend None and problem says why no
    sandbox ran.  Cached for the session.
    """
    global _SANDBOX_PROBE
    if _SANDBOX_PROBE is not None:
        return _SANDBOX_PROBE
    problem = binary_problem()
    if problem:
        _SANDBOX_PROBE = (None, problem)
        return _SANDBOX_PROBE
    if is_oracle_self_check():
        _SANDBOX_PROBE = ("none (harness self-check: INSTAR is qemu-img)", None)
        return _SANDBOX_PROBE
    d = Path(tempfile.mkdtemp(prefix="instar-probe-"))
    try:
        qemu_img("create", "-q", "-f", "qcow2", "probe.qcow2", "1M", cwd=d)
        r = run([str(instar_binary()), "info", "probe.qcow2"], cwd=d, env_extra={"INSTAR_DEBUG": "1"})
    finally:
        shutil.rmtree(d, ignore_errors=True)
    m = re.search(rb"instar: sandbox: (\w+) backend", r.stderr)
    if r.returncode == 0 and m:
        _SANDBOX_PROBE = (m.group(1).decode(), None)
    else:
        _SANDBOX_PROBE = (None, "no sandbox could run a guest: " + r.describe())
    return _SANDBOX_PROBE


def in_ci() -> bool:
    """True under CI=true, where a test skipped for want of a sandbox is a failure."""
    return os.environ.get("CI", "").lower() == "true"


class Instar:
    """The binary under test, reachable through a ``qemu-img`` symlink.

    ``path`` is the real binary; ``qemu_img`` is a symlink named qemu-img
    pointing at it, in a private temporary directory.
    """

    def __init__(self, binary: Path, linkdir: Path):
        self.path = binary
        self.linkdir = linkdir
        self.qemu_img = linkdir / "qemu-img"
        if not self.qemu_img.is_symlink():
            self.qemu_img.symlink_to(binary)

    def run(self, args: Sequence[str], cwd=None, **kw) -> Result:
        """Run instar as ``qemu-img`` (through the symlink)."""
        return run([str(self.qemu_img), *args], cwd=cwd, **kw)

    def run_multicall(self, args: Sequence[str], cwd=None, **kw) -> Result:
        """Run the real binary path (argv[0] basename ``instar``)."""
        return run([str(self.path), *args], cwd=cwd, **kw)


def require_instar(pytest_mod, linkdir: Path) -> Instar:
    """Gate used by the session fixtures of both suites.

    Fails (never skips) if the binary is missing.  If no sandbox backend can
    run a guest it skips loudly, or fails under CI=true.  ``pytest_mod`` is
    the pytest module (passed in to keep this file importable without
    pytest).
    """
    problem = binary_problem()
    if problem:
        pytest_mod.fail(problem, pytrace=False)
    backend, problem = sandbox_probe()
    if problem:
        if in_ci():
            pytest_mod.fail(f"sandbox unavailable under CI=true: {problem}", pytrace=False)
        pytest_mod.skip(f"sandbox unavailable: {problem}")
    return Instar(instar_binary(), Path(linkdir))


def run_oracle(args: Sequence[str], cwd=None, **kw) -> Result:
    """Run the oracle qemu-img with ``args`` (no generation semantics)."""
    return run([QEMU_IMG, *args], cwd=cwd, **kw)


def assert_repairs_clean(img, *opts: str, cwd=None, what: str = "") -> Result:
    """``qemu-img check -r all`` brings ``img`` to a clean state.

    Exit code 0 after a repair means qemu-img's own second pass over the
    repaired image ("Double checking the fixed image now...") found neither
    corruptions nor leaks, so a separate ``check`` afterwards proves nothing
    more: crash sweeps run this once per cut."""
    r = run_oracle(["check", "-r", "all", *opts, str(img)], cwd=cwd)
    assert r.returncode == 0 and b"No errors were found" in r.stdout, \
        f"{what + ': ' if what else ''}check -r all did not leave {img} clean:\n  {r.describe()}"
    return r


# --------------------------------------------------------------------------
# Comparison helpers
# --------------------------------------------------------------------------


def normalise(data: bytes, replacements: Mapping[str, str]) -> bytes:
    """The ONE place where output is rewritten before comparison.

    Replaces each key (typically a temporary directory path) with its value
    (a placeholder such as ``<DIR>``), longest keys first so nested temp paths
    are handled correctly.  Read-only commands never need this (both tools run
    on the same file with the same cwd and argument spelling); it exists for
    mutating commands run on two copies in two directories.
    """
    for k in sorted(replacements, key=len, reverse=True):
        data = data.replace(os.fsencode(k), os.fsencode(replacements[k]))
    return data


def assert_same(expected: Result, actual: Result, what: str = "") -> None:
    """Assert identical exit code, stdout and stderr (byte for byte).

    The oracle's returncode must also be non-negative (sanity) and the
    instar one never negative (a signal means a crash).
    """
    assert actual.returncode >= 0, f"instar killed by signal {-actual.returncode}: {what}\n  {actual.describe()}"
    msg = f"{what}\n oracle: {expected.describe()}\n instar: {actual.describe()}"
    assert actual.stderr == expected.stderr, "stderr differs\n" + msg
    assert actual.stdout == expected.stdout, "stdout differs\n" + msg
    assert actual.returncode == expected.returncode, "exit code differs\n" + msg


def run_both(instar: Instar, args: Sequence[str], cwd, **kw) -> tuple[Result, Result]:
    """Run ``qemu-img ARGS`` under the oracle then under instar; same cwd, same args.

    Returns (oracle_result, instar_result).  Only for commands that do not
    modify their inputs; see run_both_on_copies for mutating commands.
    """
    expected = run_oracle(args, cwd=cwd, **kw)
    actual = instar.run(args, cwd=cwd, **kw)
    return expected, actual


def run_both_on_copies(
    instar: Instar,
    args: Sequence[str],
    files: Iterable[os.PathLike | str],
    workdir: os.PathLike | str,
    compare_images: Sequence[str] = (),
    compare_fmt: str | None = None,
    copy=None,
    **kw,
) -> tuple[Result, Result]:
    """Run a MUTATING command under both tools on private copies, then compare results.

    ``files`` (images, backing files, data files...) are copied (sparse-aware,
    preserving relative layout by basename; ``copy(src, dst)`` instead of
    ``cp --sparse=always`` when given) into ``<workdir>/oracle`` and
    ``<workdir>/instar``.  ``args`` must name them by their basenames
    (relative paths), and each tool runs with cwd = its own copy directory, so
    the argument spelling is identical and no normalisation is needed for
    messages mentioning relative names.  Any absolute mention of the copy
    directory in the output is rewritten to ``<DIR>`` via normalise().

    After the runs, unless the two directories hold identical files (names,
    bytes and holes), for every name in ``compare_images`` (basenames of
    files that exist after the command, e.g. the image that was
    checked/resized or created), this asserts with the ORACLE that:
      * ``qemu-img check`` gives the same exit code/stdout/stderr on both
        copies (exit 63, "does not support checks", is fine for raw), and
      * ``qemu-img compare`` (``-f/-F compare_fmt`` if given) reports the two
        copies identical (exit 0), and
      * ``qemu-img info --output=json`` matches (after normalise()) except
        for ``actual-size`` (host allocation may differ legitimately).
    Only basenames are kept when copying, so ``files`` must not depend on a
    directory layout (put such cases in their own generator).
    The caller still asserts on the returned command results, e.g. with
    assert_same(*run_both_on_copies(...)).

    Returns (oracle_result, instar_result), with outputs normalised.
    """
    workdir = Path(workdir)
    dirs = {"oracle": workdir / "oracle", "instar": workdir / "instar"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            src = Path(f)
            dst = d / src.name
            if copy is not None:
                copy(src, dst)
                continue
            copy_file(src, dst, sparse_always=True)
    expected = run_oracle(args, cwd=dirs["oracle"], **kw)
    actual = instar.run(args, cwd=dirs["instar"], **kw)
    repl = {str(dirs["oracle"]): "<DIR>", str(dirs["instar"]): "<DIR>"}
    expected = Result(expected.argv, expected.returncode, normalise(expected.stdout, repl), normalise(expected.stderr, repl))
    actual = Result(actual.argv, actual.returncode, normalise(actual.stdout, repl), normalise(actual.stderr, repl))

    # Two trees with the same names, bytes and holes give the same check,
    # compare and info by construction: the oracle's runs below only matter
    # when the results differ somewhere.
    if compare_images and same_trees(dirs["oracle"], dirs["instar"]):
        compare_images = ()
    for name in compare_images:
        a, b = dirs["oracle"] / name, dirs["instar"] / name
        assert a.exists() == b.exists(), f"{name}: exists after oracle={a.exists()} instar={b.exists()}"
        if not a.exists():
            continue
        ca = run_oracle(["check", name], cwd=dirs["oracle"])
        cb = run_oracle(["check", name], cwd=dirs["instar"])
        assert_same(ca, cb, f"qemu-img check of the resulting {name}")
        fmt = ["-f", compare_fmt, "-F", compare_fmt] if compare_fmt else []
        cmp = run_oracle(["compare", *fmt, str(a), str(b)])
        assert cmp.returncode == 0, f"qemu-img compare of resulting {name} copies:\n  {cmp.describe()}"
        ia = run_oracle(["info", "--output=json", name], cwd=dirs["oracle"])
        ib = run_oracle(["info", "--output=json", name], cwd=dirs["instar"])
        strip = re.compile(rb'\s*"actual-size": \d+,?')
        ja, jb = (strip.sub(b"", normalise(x.stdout, repl)) for x in (ia, ib))
        assert ja == jb, (
            f"qemu-img info of resulting {name} differs:\n{ia.stdout.decode()}\n---\n{ib.stdout.decode()}"
        )
    return expected, actual


def qemu_img_retried(*args: str, **kw) -> Result:
    """qemu-img ``args``, retried up to 20 times: its PBKDF2 benchmark
    fails now and then ("Unable to get accurate CPU usage") with a short
    iter-time.  The last try must succeed."""
    for attempt in range(20):
        r = qemu_img(*args, check=attempt == 19, **kw)
        if r.returncode == 0:
            return r
    return r


# A LUKS create's (or key slot's) PBKDF2 benchmark times a second or more of hashing; crash
# sweeps run a create or a convert to LUKS once per write, and what they
# prove is the order of the writes: a guest clock 1000 times faster ends the
# benchmark at its first run, with the minimum iteration counts (which
# qemu-img unlocks at once too).  Parity tests never set it.
LUKS_FAST_PBKDF2 = {"INSTAR_CLOCK_SCALE": "1000"}


def new_target_sweep(instar, tmp_path: Path, args: Sequence[str], check, max_writes: int = 200,
                     env: Mapping[str, str] | None = None) -> int:
    """Cut a command that writes a new target (convert -O, dd -O) before each
    of its writes in turn: INSTAR_FAULT_WRITES=0, 1, ... until it completes,
    each run in its own directory under tmp_path.  A run cut inside the
    target's create (a new file, as qemu-img's own create leaves one) is
    skipped; check(workdir, done) judges every other result.  Returns the
    number of writes the complete run made.  env: more variables for instar
    (LUKS_FAST_PBKDF2 for a LUKS target)."""
    for n in range(max_writes):
        work = tmp_path / f"n{n}"
        work.mkdir()
        r = instar.run(list(args), cwd=work, env_extra={**(env or {}), "INSTAR_FAULT_WRITES": str(n)},
                       timeout=120)
        if r.returncode != 0:
            assert r.returncode == 1 and b"fault injection" in r.stderr, r.describe()
            if b"error while" in r.stderr:
                continue
        check(work, r.returncode == 0)
        if r.returncode == 0:
            return n
    raise AssertionError(f"{args[0]} did not complete within {max_writes} writes")


def make_linkdir() -> Path:
    """A fresh private temp dir for the qemu-img symlink (caller may delete)."""
    return Path(tempfile.mkdtemp(prefix="instar-link-"))


# --------------------------------------------------------------------------
# Differential fuzzers (scripts/fuzz-*.py)
# --------------------------------------------------------------------------


def load_script(name: str):
    """scripts/NAME.py as a module (the fuzzers' file names have dashes)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fuzz_fixed_seed(iteration, instar, tmp_path: Path, seed: int, iterations: int) -> tuple[list[str], int]:
    """Run a fuzzer's iteration(instar, rng, work) `iterations` times from one
    seed; returns (problems, operations)."""
    import random

    rng = random.Random(seed)
    problems, ops = [], 0
    for n in range(iterations):
        p, k = iteration(instar, rng, tmp_path / f"w{n}")
        ops += k
        problems += [f"iteration {n}: {x}" for x in p]
    return problems, ops


def fuzz_main(name: str, doc: str, iteration, default_iterations: int) -> int:
    """The command line of a differential fuzzer: --seed, --iterations,
    --instar, -v; prints each mismatching iteration and a summary line.
    Returns the exit status (1 when an iteration mismatched)."""
    import argparse
    import random

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=default_iterations)
    ap.add_argument("--instar", default=os.environ.get("INSTAR", str(REPO / "build" / "instar")))
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    failures, total = 0, 0
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        instar = Instar(Path(a.instar).resolve(), Path(tmp))
        for n in range(a.iterations):
            problems, ops = iteration(instar, rng, Path(tmp) / "w", a.verbose)
            total += ops
            if problems:
                failures += 1
                print(f"iteration {n} (seed {a.seed}):", *problems, sep="\n  ")
    print(f"{name}: seed {a.seed}, {a.iterations} iterations, {total} operations, "
          f"{failures} mismatching iterations")
    return 1 if failures else 0
