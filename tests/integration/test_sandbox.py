"""The sandbox as a user meets it: backend selection, callers' limits, and
what the host and the guest process hold while a command runs.

Every expectation about output comes from qemu-img run in the same test.
Backends: the process backend runs everywhere; KVM cases skip where no KVM
VM can be created (scripts/kvm-tcg.sh runs them in a nested system that
has one, with INSTAR_REQUIRE_KVM=1, where a skip is a failure).
"""

import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

import instar_testlib as tl

BACKENDS = ["process", "kvm"]


def kvm_usable() -> bool:
    """True if instar can create a KVM VM here (asks instar itself)."""
    d = Path(tl.make_linkdir())
    try:
        tl.qemu_img("create", "-q", "-f", "qcow2", "k.qcow2", "1M", cwd=d)
        r = tl.run([str(tl.instar_binary()), "info", "k.qcow2"], cwd=d, env_extra={"INSTAR_SANDBOX": "kvm"})
        return r.returncode == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


_KVM = None


def need_backend(backend: str) -> dict:
    """Environment selecting backend; skips KVM cases without KVM (fails if it is required)."""
    global _KVM
    if backend == "kvm":
        if _KVM is None:
            _KVM = kvm_usable()
        if not _KVM:
            assert not os.environ.get("INSTAR_REQUIRE_KVM"), "INSTAR_REQUIRE_KVM is set but KVM is not usable"
            pytest.skip("KVM backend: no KVM VM can be created here (the process backend ran this case)")
    return {"INSTAR_SANDBOX": backend}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("sandbox")
    tl.qemu_img("create", "-q", "-f", "qcow2", "s.qcow2", "64M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0xab 0 64k", "s.qcow2", cwd=d)
    return d


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """A qcow2 whose L1 table was zeroed: 8,320 leaked clusters, ~350 KB of check output."""
    d = tmp_path_factory.mktemp("leaky")
    tl.qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "l.qcow2", "64M", cwd=d)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 0 4M", "l.qcow2", cwd=d)
    with open(d / "l.qcow2", "r+b") as f:
        h = f.read(48)
        l1_size, l1_off = struct.unpack(">I", h[36:40])[0], struct.unpack(">Q", h[40:48])[0]
        f.seek(l1_off)
        f.write(b"\0" * 8 * l1_size)
    return d


@pytest.mark.parametrize("backend", BACKENDS)
def test_info_on_each_backend(instar, small, backend):
    env = need_backend(backend)
    expected, actual = tl.run_both(instar, ["info", "--output=json", "s.qcow2"], cwd=small, env_extra=env)
    tl.assert_same(expected, actual)


@pytest.mark.parametrize("backend", BACKENDS)
def test_debug_names_the_backend(instar, small, backend):
    env = need_backend(backend)
    r = instar.run(["info", "s.qcow2"], cwd=small, env_extra={**env, "INSTAR_DEBUG": "1"})
    assert r.returncode == 0, r.describe()
    assert f"instar: sandbox: {backend} backend".encode() in r.stderr, r.describe()


def test_auto_picks_kvm_only_when_a_vm_can_be_created(instar, small):
    r = instar.run(["info", "s.qcow2"], cwd=small, env_extra={"INSTAR_SANDBOX": "auto", "INSTAR_DEBUG": "1"})
    assert r.returncode == 0, r.describe()
    want = "kvm" if kvm_usable() else "process"
    assert f"instar: sandbox: {want} backend".encode() in r.stderr, r.describe()


def test_unusable_explicit_kvm_is_a_clear_error(instar, small):
    if kvm_usable():
        pytest.skip("KVM is usable here: an explicit kvm choice is honoured (test_info_on_each_backend)")
    r = instar.run(["info", "s.qcow2"], cwd=small, env_extra={"INSTAR_SANDBOX": "kvm"})
    assert r.returncode == 1, r.describe()
    assert r.stdout == b""
    assert re.fullmatch(
        rb"qemu-img: Could not open 's\.qcow2': sandbox failure: KVM is not usable here: [^\n]+\n", r.stderr
    ), r.describe()


@pytest.mark.parametrize("args", [["info", "s.qcow2"], ["create", "-f", "raw", "new.raw", "1M"]])
def test_unknown_backend_is_a_clear_error(instar, small, args):
    """Refused before any work, even by a command that would boot no guest (raw create)."""
    r = instar.run(args, cwd=small, env_extra={"INSTAR_SANDBOX": "qemu"})
    assert r.returncode == 1, r.describe()
    assert r.stdout == b""
    assert r.stderr == b"qemu-img: INSTAR_SANDBOX must be auto, kvm or process, not 'qemu'\n", r.describe()
    assert not (small / "new.raw").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_openstack_prlimit(instar, small, backend):
    """OpenStack's call: prlimit --as=1G --cpu=2 qemu-img info --output=json -f qcow2 --force-share."""
    env = need_backend(backend)
    prlimit = ["prlimit", "--as=1073741824", "--cpu=2"]
    args = ["info", "--output=json", "-f", "qcow2", "--force-share", "s.qcow2"]
    expected = tl.run([*prlimit, tl.QEMU_IMG, *args], cwd=small)
    actual = tl.run([*prlimit, str(instar.qemu_img), *args], cwd=small, env_extra=env)
    tl.assert_same(expected, actual)


def _children(pid: int) -> list[int]:
    """Live children of pid (instar kills finished sandboxes and reaps them later: skip zombies)."""
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(p.name))
    return kids


def _status(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_stalled_reader_loses_no_line_and_host_is_confined(instar, leaky, backend):
    """check's ~350 KB of lines into a pipe nobody reads for a while.

    While instar is blocked writing, look at it: confined (seccomp filter,
    no_new_privs), no core dumps, guest RAM never mapped (process) or
    excluded from dumps and not executable (KVM); on the
    process backend its child holds no descriptor, an empty environment,
    its own filter on top, and no memory but guest RAM, its mailbox page,
    the tender and the kernel's stack/vDSO.  Then drain: every line arrives,
    in order, exactly as qemu-img prints them.
    """
    env = need_backend(backend)
    expected = tl.run_oracle(["check", "l.qcow2"], cwd=leaky, timeout=120)
    assert len(expected.stderr) + len(expected.stdout) > 4 * 65536
    proc = subprocess.Popen(
        [str(instar.qemu_img), "check", "l.qcow2"],
        cwd=leaky,
        env=tl.tool_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Let it fill the stderr pipe and block (nobody reads yet).
        time.sleep(1.5)
        assert proc.poll() is None, "instar finished without blocking on a full pipe"
        st = _status(proc.pid)
        assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1", st
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert re.search(r"Max core file size\s+0\s+0", limits), limits
        smaps = Path(f"/proc/{proc.pid}/smaps").read_text()
        ram = re.findall(r"instar-guest-ram.*?\nVmFlags:([^\n]*)", smaps, re.S)
        if backend == "kvm":
            # Mapped for KVM's memory slot only, and never into a core file.
            assert ram and all(" dd" in f for f in ram), "guest RAM is not excluded from core dumps"
            assert all(" ex" not in f for f in ram), "guest RAM is executable in the host"
        else:
            # The host copies through the memfd and never maps guest RAM.
            assert not ram, "the host maps guest RAM"
        if backend == "process":
            kids = _children(proc.pid)
            assert len(kids) == 1, f"want one sandbox child, got {kids}"
            c = kids[0]
            cst = _status(c)
            assert cst["Seccomp"] == "2" and cst["NoNewPrivs"] == "1", cst
            assert int(cst["Seccomp_filters"]) >= 2, "the child must add its own filter"
            fds = os.listdir(f"/proc/{c}/fd")
            assert fds == [], f"the child holds descriptors: {fds}"
            assert Path(f"/proc/{c}/environ").read_bytes() == b""
            for line in Path(f"/proc/{c}/maps").read_text().splitlines():
                name = line.split()[5] if len(line.split()) > 5 else ""
                allowed = ("/memfd:instar-guest-ram", "/memfd:instar-tender", "/memfd:instar-mailbox",
                           "[stack]", "[vvar]",
                           "[vvar_vclock]", "[vdso]", "[vsyscall]", "")
                assert name.startswith(allowed), f"child maps more than it should: {line}"
                if name.startswith("/memfd:instar-guest-ram") and "x" in line.split()[1]:
                    assert line.split()[1] == "r-xs", f"guest text must not be writable: {line}"
                if name == "":
                    # anonymous: the tender's bss (signal stack), right after its image
                    assert int(line.split("-")[0], 16) >= 0x10000000000, line
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    actual = tl.Result(tuple(proc.args), proc.returncode, out, err)
    tl.assert_same(expected, actual, "check with a stalled reader")
