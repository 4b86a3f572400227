"""A short fixed-seed run of the differential resize fuzzer (scripts/fuzz-resize.py).

Random qcow2 images (every cluster size and refcount width, v2/v3,
extended L2, compressed/zero/plain writes, snapshots) get random resize
operations under both qemu-img and instar; every operation's exit code,
output, file length, `qemu-img check` and `qemu-img compare` must match.
Longer runs and their results: docs/resize.md.
"""

import pytest
import importlib.util
import random

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

spec = importlib.util.spec_from_file_location("fuzz_resize", tl.REPO / "scripts" / "fuzz-resize.py")
fuzz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz)

SEED = 20240501
ITERATIONS = 15


def test_fuzz_resize_fixed_seed(instar, tmp_path):
    rng = random.Random(SEED)
    problems, ops = [], 0
    for n in range(ITERATIONS):
        p, k, _ = fuzz.iteration(instar.path, rng, tmp_path / f"w{n}", False)
        ops += k
        problems += [f"iteration {n}: {x}" for x in p]
    assert ops >= ITERATIONS
    assert not problems, "\n".join(problems)
