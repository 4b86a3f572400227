"""Fixtures shared by parity/ and tests/integration/."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

import instar_testlib as tl  # noqa: E402


@pytest.fixture(scope="session")
def instar(tmp_path_factory):
    """The binary under test behind a `qemu-img` symlink (fails if missing, skips without KVM)."""
    return tl.require_instar(pytest, tmp_path_factory.mktemp("link"))
