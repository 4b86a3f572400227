"""A short fixed-seed run of the differential fuzzer of the mutating commands (scripts/fuzz-mutate.py).

Random qcow2 images and chains (every cluster size and refcount width,
v2/v3, extended L2, lazy refcounts, plain/zero/compressed writes and
discards, sometimes a persistent bitmap or the dirty bit set) get random
sequences of snapshot -c/-d/-a/-l, commit, rebase (safe and -u), amend and
resize under both qemu-img and instar; after every step the exit code,
output, `qemu-img check`, `qemu-img info` and the guest data of every image
must match, and where instar refuses what qemu-img does, the refusal must
be a documented one.  More seeds: MUTATE_FUZZ_SEEDS=N (default 1 seed of
ITERATIONS iterations), or scripts/fuzz-mutate.py --seed N --iterations N.
"""

import pytest
import importlib.util
import os
import random
import re

import instar_testlib as tl

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

spec = importlib.util.spec_from_file_location("fuzz_mutate", tl.REPO / "scripts" / "fuzz-mutate.py")
fuzz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz)

SEED = 20261206
ITERATIONS = 6


def test_refusals_are_documented():
    """Every refusal the fuzzer accepts is quoted in docs/differences.md."""
    doc = re.sub(r"\s+", " ", (tl.REPO / "docs" / "differences.md").read_text())
    for r in fuzz.REFUSALS:
        assert r in doc, f"refusal not in docs/differences.md: {r}"


def test_fuzz_mutate_fixed_seed(instar, tmp_path):
    problems, ops = [], 0
    for k in range(int(os.environ.get("MUTATE_FUZZ_SEEDS", "1"))):
        rng = random.Random(SEED + k)
        for n in range(ITERATIONS):
            r = fuzz.iteration(instar.path, rng, tmp_path / "w")
            ops += r["ops"]
            problems += [f"seed {SEED + k} iteration {n} {r['params']} sequence {r['seq']}: {x}"
                         for x in r["problems"]]
    assert ops >= ITERATIONS
    assert not problems, "\n".join(problems)
