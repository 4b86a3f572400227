"""pytest fixtures for instar's integration tests.

The binary/KVM gate and the process helpers are shared with parity/ through
tests/instar_testlib.py (one implementation, imported by both suites).
"""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import instar_testlib as tl  # noqa: E402
from corrupt import Gen  # noqa: E402


@pytest.fixture(scope="session")
def hostile(tmp_path_factory):
    """Generator of hostile images in a session temp dir (the cwd of every case)."""
    return Gen(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="session")
def plain_images(tmp_path_factory):
    """A few ordinary images made by qemu-img: {'qcow2': name, 'big': name}, with root."""
    root = tmp_path_factory.mktemp("plain")
    tl.qemu_img("create", "-q", "-f", "qcow2", "small.qcow2", "64M", cwd=root)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 0xab 0 64k", "small.qcow2", cwd=root)
    tl.qemu_img("create", "-q", "-f", "qcow2", "big.qcow2", "1T", cwd=root)
    tl.qemu_io("-f", "qcow2", "-c", "write -P 1 1023G 64k", "big.qcow2", cwd=root)
    return root
