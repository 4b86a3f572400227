"""A short fixed-seed run of scripts/fuzz-repair.py (differential `check -r`
fuzzing against qemu-img): random corruptions of qemu-made images, repaired
by both tools, must give the same output, the same re-check and the same
guest data (or an instar refusal that left the file untouched).  Longer runs
and their results: docs/repair.md."""

import pytest
import importlib.util
from pathlib import Path

# A sweep or fuzz run: the guest code it proves is the same on every
# backend, and under TCG it alone takes most of the slice's time, so the
# full run on the default backend keeps it and --slice runs leave it out.
pytestmark = pytest.mark.not_in_slice

ROOT = Path(__file__).resolve().parents[2]


def test_fuzz_repair_fixed_seed(instar, capsys):
    spec = importlib.util.spec_from_file_location("fuzz_repair", ROOT / "scripts" / "fuzz-repair.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rc = mod.main(["--seed", "7", "--iterations", "40", "--instar", str(instar.path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "40 iterations, 0 findings" in out
