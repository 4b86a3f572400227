"""Fixtures shared by parity/ and tests/integration/."""

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

import instar_testlib as tl  # noqa: E402


@pytest.fixture(scope="session")
def instar(tmp_path_factory):
    """The binary under test behind a `qemu-img` symlink (fails if missing; no sandbox: skip, or fail in CI)."""
    return tl.require_instar(pytest, tmp_path_factory.mktemp("link"))


def pytest_report_header(config):
    """Say which sandbox backend instar runs its guests on (INSTAR_SANDBOX picks; auto by default)."""
    backend, problem = tl.sandbox_probe()
    chosen = os.environ.get("INSTAR_SANDBOX", "auto")
    if problem:
        return f"instar sandbox: NONE ({problem.splitlines()[0]})"
    return f"instar sandbox: {backend} backend (INSTAR_SANDBOX={chosen})"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    backend, problem = tl.sandbox_probe()
    terminalreporter.write_line(f"instar sandbox backend used: {backend or 'none: ' + problem.splitlines()[0]}")


def pytest_addoption(parser):
    parser.addoption(
        "--slice",
        type=int,
        default=0,
        metavar="N",
        help="keep every Nth test of each file (deterministic), and every test of "
        "tests/integration/test_sandbox.py: a representative slice for the non-default backend",
    )


# Cases marked real_pbkdf2 (or in a module so marked) run both tools' PBKDF2
# benchmarks on the real clocks (tests/instar_testlib.py, clock_env()).
@pytest.fixture(scope="module", autouse=True)
def _real_pbkdf2_module(request):
    if request.node.get_closest_marker("real_pbkdf2"):
        os.environ[tl.REAL_PBKDF2_ENV] = "1"
        yield
        del os.environ[tl.REAL_PBKDF2_ENV]
    else:
        yield


@pytest.fixture(autouse=True)
def _real_pbkdf2(request, monkeypatch):
    if request.node.get_closest_marker("real_pbkdf2"):
        monkeypatch.setenv(tl.REAL_PBKDF2_ENV, "1")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "real_pbkdf2: both tools time their PBKDF2 benchmarks on the real clocks, not the "
        "suites' fast one (tests/instar_testlib.py, clock_env())")
    config.addinivalue_line(
        "markers", "not_in_slice: left out of --slice runs (fault sweeps and fuzz runs, whose guest code "
        "is the same on every backend, and cases whose oracle alone takes minutes under TCG); "
        "the full run on the default backend keeps it")


def pytest_collection_modifyitems(config, items):
    n = config.getoption("--slice")
    if n <= 1:
        return
    keep, drop, seen = [], [], {}
    for item in items:
        path = str(item.path)
        i = seen.get(path, 0)
        seen[path] = i + 1
        if item.get_closest_marker("not_in_slice"):
            drop.append(item)
            continue
        (keep if i % n == 0 or path.endswith("test_sandbox.py") else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


# A passed case's tmp_path is removed at its teardown: pytest keeps every
# case's directory until the session ends, and the format suites' images
# (preallocated parallels growth, fixed vhdx/vdi, crash sweeps) add up to
# more than a CI disk holds.  A failed case keeps its files for the report.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._instar_passed = rep.passed


@pytest.fixture(autouse=True)
def _drop_passed_tmp_path(request):
    path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if path is not None and getattr(request.node, "_instar_passed", False):
        shutil.rmtree(path, ignore_errors=True)
