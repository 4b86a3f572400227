"""A short fixed-seed run of the differential format-reader fuzzer (scripts/fuzz-formats.py).

Images of every format qemu-img writes but qcow2 and raw, most of them
with damaged metadata, read by info, check, map, compare and convert -O
raw under both qemu-img and instar; messages, exit codes and converted
data must match, but for instar's documented refusals and qemu-img's
crashes.  Longer runs: scripts/fuzz-formats.py --seed N --iterations N.
"""

import pytest

import instar_testlib as tl

# A fuzz run: the guest code it proves is the same on every backend, so
# the full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

fuzz = tl.load_script("fuzz-formats")

SEED = 20261207
ITERATIONS = 24


def test_fuzz_formats_fixed_seed(instar, tmp_path):
    problems, ops = tl.fuzz_fixed_seed(fuzz.iteration, instar, tmp_path, SEED, ITERATIONS)
    assert ops >= 3 * ITERATIONS
    assert not problems, "\n".join(problems)
