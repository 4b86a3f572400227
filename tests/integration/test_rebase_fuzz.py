"""A short fixed-seed run of the differential rebase fuzzer (scripts/fuzz-rebase.py).

Random chains (every cluster size, extended L2, v2, images shorter and
longer than the top, plain/zero/compressed writes and discards) rebased
onto a new image, a file of the old chain or nothing, under both qemu-img
and instar: messages, exit codes and every file byte for byte must match.
Longer runs: scripts/fuzz-rebase.py --seed N --iterations N.
"""

import pytest
import importlib.util
import random

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

spec = importlib.util.spec_from_file_location("fuzz_rebase", tl.REPO / "scripts" / "fuzz-rebase.py")
fuzz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz)

SEED = 20261206
ITERATIONS = 8


def test_fuzz_rebase_fixed_seed(instar, tmp_path):
    rng = random.Random(SEED)
    problems = []
    for n in range(ITERATIONS):
        problems += [f"iteration {n}: {x}" for x in fuzz.iteration(str(instar.qemu_img), rng, tmp_path / f"w{n}")]
    assert not problems, "\n".join(problems)
