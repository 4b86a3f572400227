"""pytest fixtures for the parity suite (qemu-img 7.2 vs instar, byte for byte).

Binary selection, the KVM gate and process running live in tests/instar_testlib.py,
shared with tests/integration.  Images come from parity/images.py.
"""

import select
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import instar_testlib as tl  # noqa: E402
from images import ImageSet  # noqa: E402


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """Session-wide lazily generated image matrix; its root is the cwd of every case."""
    return ImageSet(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def locked_image(images):
    """Relative name of a qcow2 held open read-write by a background qemu-io.

    qemu-io waits on stdin, keeping its write lock, until the session ends.
    """
    name = "locked.qcow2"
    tl.qemu_img("create", "-q", "-f", "qcow2", name, "16M", cwd=images.root)
    proc = subprocess.Popen(
        [tl.QEMU_IO, "-f", "qcow2", name],
        cwd=images.root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=tl.tool_env(),
    )
    # Wait until qemu-io has opened the image by having it answer a command.
    # (Polling with `qemu-img info` instead would race: its shared lock can
    # make qemu-io's own open fail.)
    proc.stdin.write(b"length\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else b""
    if not line.strip() or proc.poll() is not None:
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"background qemu-io did not open the image: stdout={line!r} stderr={err!r}")
    r = tl.run_oracle(["info", name], cwd=images.root)
    assert r.returncode != 0 and b"lock" in r.stderr, "image not locked: " + r.describe()
    yield name
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pytest_collection_modifyitems(config, items):
    """Mark the cases of parity/pending.py as strict xfails (not in the self-check)."""
    from pending import PENDING

    if tl.is_oracle_self_check():
        return
    for item in items:
        cs = getattr(item, "callspec", None)
        listed = PENDING.get(item.path.name, {})
        reason = (listed.get(cs.id) or listed.get("*")) if cs else None
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
