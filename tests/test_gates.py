"""The validation gates through the engine, on corrupted copies of the sample: each fatal kind stops
the run with a message naming the file and column (or the rate) and publishes nothing; each warning
kind is reported and the month is still published; a clean month's report says it passed."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.validation import gates
from pipelines.engine import PayoutError, run_month
from pipelines.demo.sample_data import write_sample

# its module-scoped fixtures are built once: all its tests run on one xdist worker
pytestmark = pytest.mark.xdist_group("test_gates")

SUB = "exports/2025-01/subscription_billing.csv"
GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample") / "data"
    write_sample(root, months=1, scale=200)
    return root


@pytest.fixture
def data(sample, tmp_path):
    dest = tmp_path / "data"
    shutil.copytree(sample, dest)
    return dest


def _drop_column(path, name):
    lines = path.read_text().splitlines()
    idx = lines[0].split(",").index(name)
    # the sample's subscription file quotes nothing, so a plain split is exact here
    path.write_text("\n".join(",".join(c for i, c in enumerate(l.split(",")) if i != idx) for l in lines) + "\n")


def _cli(data, out):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--month", "2025-01", "--data", str(data),
                           "--out", str(out)], capture_output=True, text=True)


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: _drop_column(d / SUB, "amount"), f"{SUB}: required column 'amount' is missing"),
    (lambda d: (d / "exports/2025-01/project_billing.csv").unlink(),
     "exports/2025-01/project_billing.csv: required file is missing"),
    (lambda d: (d / SUB).open("ab").write(b'X1,"I,2025-01-02,C,S,2025-01-01,platform,USD,1.00,charge,\n'),
     f"{SUB}: a quoted field opened on line"),
    (lambda d: (d / "reference/program.yaml").write_text(
        (d / "reference/program.yaml").read_text() + "validation:\n  max_quarantine_pct: 0.1\n"),
     "quarantine rate"),
])
def test_fatal_kinds_stop_the_run_and_publish_nothing(data, tmp_path, corrupt, message):
    corrupt(data)
    out = tmp_path / "out"
    proc = _cli(data, out)
    assert proc.returncode == 1
    line = proc.stderr.strip()
    assert "\n" not in line and message in line, line
    assert not (out / "2025-01").exists()
    assert not (out / "ledger.duckdb").exists()
    if "quarantine rate" in message:
        assert "% is above the limit 0.1% (program.yaml validation.max_quarantine_pct)" in line


def test_warning_kinds_are_reported_and_the_month_is_published(data, tmp_path):
    out = tmp_path / "out"
    run_month(data, out, "2025-01")
    results = json.loads((out / "2025-01" / "validation" / "results.json").read_text())
    assert results["status"] == "warnings" and results["success"] is True
    warnings = "\n".join(results["warning_messages"])
    # the sample's bad rows, each seen by the gates as well as quarantined by the engine
    for expected in ("subscription_billing", "line_id", "invoice_date", "amount", "currency"):
        assert expected in warnings
    exceptions = (out / "2025-01" / "exceptions.csv").read_text()
    assert "date_outside_month" in exceptions and "malformed_row" in exceptions
    assert (out / "2025-01" / "remittance.csv").exists()


def test_clean_month_report_says_passed_and_renders_offline(tmp_path):
    out = tmp_path / "out"
    run_month(GOLDEN / "example7_withholding" / "data", out, "2025-03")
    results = json.loads((out / "2025-03" / "validation" / "results.json").read_text())
    assert results["status"] == "passed"
    html = (out / "2025-03" / "validation" / "report.html").read_text()
    assert "<style>" in html and "http://" not in html and "https://" not in html and "<script" not in html
    assert "passed" in html.lower()


def test_reconciliation_failure_is_fatal(data, tmp_path, monkeypatch):
    """A result that does not reconcile (a bug) never reaches finance: simulate one remittance row off by a cent."""
    from pipelines.validation import gates

    real = gates.validate_results

    def tamper(con, out_dir, stage, month, program):
        path = stage / "month" / "remittance.csv"
        lines = path.read_text().splitlines()
        cells = lines[1].split(",")
        cells[7] = f"{float(cells[7]) + 0.01:.2f}"  # net_amount, one cent more than gross - withholding
        lines[1] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
        return real(con, out_dir, stage, month, program)

    monkeypatch.setattr(gates, "validate_results", tamper)
    with pytest.raises(PayoutError, match="remittance"):
        run_month(data, tmp_path / "out", "2025-01")
    assert not (tmp_path / "out" / "2025-01").exists()


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 5), max_size=60))
def test_repeated_table_keeps_each_repeated_value_once(values):
    """The repeated line-id hashes (found by numpy in the sorted values) are what counting every value gives."""
    import numpy as np
    from collections import Counter

    table = gates.repeated_table(np.array(values, dtype=np.uint64))
    assert table.column("h").type == pa.uint64()
    assert table.column("h").to_pylist() == sorted(v for v, n in Counter(values).items() if n > 1)
    # the same from the values in order (as ingest passes them: not sorted again)
    ordered = gates.repeated_table(np.array(sorted(values), dtype=np.uint64))
    assert ordered.column("h").to_pylist() == table.column("h").to_pylist()
    con = duckdb.connect()
    con.register("t", table)
    assert con.execute("select typeof(h) from t limit 1").fetchall() in ([], [("UBIGINT",)])
