"""The validation gates through the engine, on corrupted copies of the sample: each fatal kind stops
the run with a message naming the file and column (or the rate) and publishes nothing; each warning
kind is reported and the month is still published; a clean month's report says it passed; a file
that does not reconcile with the totals computed from the rules' tables never reaches finance."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
     "input files: quarantined rows"),
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
    if "quarantine" in message:
        assert "above the limit 10 bp (program.yaml validation.max_quarantine_pct)" in line


def test_warning_kinds_are_reported_and_the_month_is_published(sample, tmp_path):
    """Month 2 of the sample, then the same month with a currency never billed before, an fx rate
    that moved 50 %, a subscription export with half the rows of month 1: warnings, published."""
    data = tmp_path / "data"
    write_sample(data, months=2, scale=200)
    out = tmp_path / "out"
    run_month(data, out, "2025-01")
    fx = data / "reference" / "fx_rates.csv"
    rates = fx.read_text().splitlines()
    eur = [line for line in rates if ",EUR," in line and line.startswith("2025-02")]
    assert eur, "the sample has a February EUR rate"
    date, cur, rate = eur[-1].split(",")
    fx.write_text(fx.read_text().replace(eur[-1], f"{date},EUR,{float(rate) * 1.5:.4f}"))
    sub = data / "exports" / "2025-02" / "subscription_billing.csv"
    lines = sub.read_text().splitlines()
    first = lines[1].split(",")
    first[0], first[7] = "SEK-LINE-1", "SEK"
    fx.write_text(fx.read_text() + "2025-02-01,SEK,0.0950\n")
    sub.write_text("\n".join(lines[:1] + [",".join(first)] + lines[2:len(lines) // 2]) + "\n")
    run_month(data, out, "2025-02")
    results = json.loads((out / "2025-02" / "validation" / "results.json").read_text())
    assert results["status"] == "warnings"
    warnings = "\n".join(results["warning_messages"])
    assert "SEK" in warnings  # a currency no earlier month had
    assert "EUR" in warnings  # the rate moved more than 10 %
    assert "subscription_billing.csv" in warnings  # half the rows of month 1
    assert (out / "2025-02" / "remittance.csv").exists()


def test_clean_month_report_says_passed_and_renders_offline(tmp_path):
    out = tmp_path / "out"
    run_month(GOLDEN / "example7_withholding" / "data", out, "2025-03")
    results = json.loads((out / "2025-03" / "validation" / "results.json").read_text())
    assert results["status"] == "passed"
    html = (out / "2025-03" / "validation" / "report.html").read_text()
    assert "<style>" in html and "http://" not in html and "https://" not in html and "<script" not in html
    assert "passed" in html.lower()


@pytest.mark.parametrize("column, file, total", [(7, "remittance.csv", "net_remittance"),
                                                (9, "partner_balances.csv", "gross_balances")])
def test_a_file_off_by_a_cent_is_fatal(data, tmp_path, monkeypatch, column, file, total):
    """A file that does not reconcile (a bug) never reaches finance: one amount of the staged file is
    made a cent larger; the totals computed from the rules' tables disagree with it."""
    real = gates.result_gate

    def tamper(con, out_dir, stage, month, program):
        path = stage / "month" / file
        lines = path.read_text().splitlines()
        row = next(i for i, line in enumerate(lines[1:], 1) if ",paid" in line or file == "remittance.csv")
        cells = lines[row].split(",")
        cells[column] = f"{float(cells[column]) + 0.01:.2f}"
        lines[row] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
        return real(con, out_dir, stage, month, program)

    monkeypatch.setattr(gates, "result_gate", tamper)
    with pytest.raises(PayoutError, match=f"^payout totals: .*{total}.*: 1 of \\d+ rows fail"):
        run_month(data, tmp_path / "out", "2025-01")
    assert not (tmp_path / "out" / "2025-01").exists()
