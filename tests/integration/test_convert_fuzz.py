"""A short fixed-seed run of the differential convert/compare/map fuzzer (scripts/fuzz-convert.py).

Random images and chains (every cluster size and refcount width, v2/v3,
extended L2, zlib/zstd, plain/zero/compressed writes and discards, raw
bases, snapshots) get random convert, compare and map operations under
both qemu-img and instar; messages, exit codes and the written images
(byte for byte where qemu-img is deterministic) must match.  Longer runs:
scripts/fuzz-convert.py --seed N --iterations N.
"""

import pytest

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

fuzz = tl.load_script("fuzz-convert")

SEED = 20240611
ITERATIONS = 3


def test_fuzz_convert_fixed_seed(instar, tmp_path):
    problems, ops = tl.fuzz_fixed_seed(fuzz.iteration, instar, tmp_path, SEED, ITERATIONS)
    assert ops >= 3 * ITERATIONS
    assert not problems, "\n".join(problems)
