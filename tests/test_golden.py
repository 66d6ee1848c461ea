"""SPEC section 5's worked examples as golden cases: inputs and hand-computed expected outputs.

Each folder under tests/golden/ holds `data/` (the inputs) and `expected/<month>/...` (files whose
bytes were written by hand from the spec's arithmetic, not copied from a run). The months under
data/exports/ are run in order through the engine, then every expected file is compared byte for byte.
"""

from pathlib import Path

import pytest

from pipelines.engine import run_month

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "expected").is_dir())


@pytest.mark.parametrize("case", CASES)
def test_golden_case(case, tmp_path):
    data = GOLDEN / case / "data"
    months = sorted(p.name for p in (data / "exports").iterdir())
    for month in months:
        run_month(data, tmp_path, month)
    expected = sorted(p for p in (GOLDEN / case / "expected").rglob("*") if p.is_file())
    assert expected
    for exp in expected:
        rel = exp.relative_to(GOLDEN / case / "expected")
        got = tmp_path / rel
        assert got.exists(), f"{rel} was not written"
        assert got.read_text() == exp.read_text(), f"{case}: {rel} differs"
