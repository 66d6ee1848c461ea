"""A refused or failed run leaves no partial output and the ledger unchanged."""

import hashlib
import subprocess
import sys

import pytest
from builders import build, claim, partner, sub

from pipelines import engine
from pipelines.publish import outputs
from pipelines.engine import PayoutError, run_month


def _tree(root):
    return build(root, partners=[partner("P1")], attributions=[claim("A1", "C1", "P1")],
                 months={m: {"subscription_billing": [sub(f"L{m}", "C1", "400.00", f"{m}-10")]}
                         for m in ("2025-03", "2025-04")})


def _snapshot(out):
    """Every file of the output root but the audit log, which records each refusal too."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and not p.name.startswith("audit.")}


def test_missing_column_exits_nonzero_and_writes_nothing(tmp_path):
    data = _tree(tmp_path / "data")
    path = data / "exports" / "2025-03" / "subscription_billing.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(",".join(c for i, c in enumerate(l.split(",")) if i != 8) for l in lines) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--month", "2025-03", "--data", str(data),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "payouts: exports/2025-03/subscription_billing.csv: required column 'amount' is missing"]
    assert not (tmp_path / "out" / "2025-03").exists()
    assert not (tmp_path / "out" / "ledger.duckdb").exists()


def test_failure_mid_run_leaves_previous_month_and_ledger_untouched(tmp_path, monkeypatch):
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    before = _snapshot(out)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "control_totals", boom)
    with pytest.raises(OSError):
        run_month(data, out, "2025-04")
    assert _snapshot(out) == before  # no 2025-04 folder, no staging left, ledger bytes unchanged
    monkeypatch.undo()
    run_month(data, out, "2025-04")
    assert (out / "2025-04" / "remittance.csv").exists()


def test_rerun_of_latest_month_replaces_it_whole(tmp_path):
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    first = _snapshot(out / "2025-03")
    (out / "2025-03" / "stray.txt").write_text("left by someone")
    run_month(data, out, "2025-03")
    assert _snapshot(out / "2025-03") == first
    assert engine.ledger.latest_month(out) == "2025-03"


def test_bad_month_argument_is_refused(tmp_path):
    with pytest.raises(PayoutError, match="not YYYY-MM"):
        run_month(tmp_path, tmp_path, "2025-13")


def test_publish_refuses_when_the_ledger_moved_since_compute(tmp_path):
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    for step in ("prepare", "ingest", "validate_inputs", "compute", "validate_results"):
        getattr(engine, step)(data, out, "2025-04")  # April computed from March's ledger...
    run_month(data, out, "2025-03")                   # ...then March is rerun and republished
    before = _snapshot(out)
    with pytest.raises(PayoutError, match="ledger changed since 2025-04 was computed"):
        engine.publish(data, out, "2025-04")          # April's openings may be stale: refused
    assert {k: v for k, v in _snapshot(out).items() if not k.startswith(".staging")} == \
        {k: v for k, v in before.items() if not k.startswith(".staging")}
    run_month(data, out, "2025-04")                   # recomputing April works
    assert (out / "2025-04" / "remittance.csv").exists()


def test_an_export_changed_between_ingest_and_the_input_gate_is_refused(tmp_path):
    # The input gate reads the exports again (ingest keeps only their row numbers): a file replaced
    # in between (e.g. a late re-drop while the DAG runs) must not be validated against stale rows.
    data, out = _tree(tmp_path / "data"), tmp_path / "out"
    engine.prepare(data, out, "2025-03")
    engine.ingest(data, out, "2025-03")
    path = data / "exports" / "2025-03" / "subscription_billing.csv"
    path.write_text(path.read_text() + "L2,I2,2025-03-11,C1,S,2025-01-01,platform,USD,1.00,charge,\n")
    with pytest.raises(PayoutError, match="subscription_billing.csv changed since it was ingested"):
        engine.validate_inputs(data, out, "2025-03")
    engine.ingest(data, out, "2025-03")  # a retried ingest reads the new file, and the gate goes on
    assert engine.validate_inputs(data, out, "2025-03")["suites"] > 0


def test_a_retried_compute_gives_the_same_month(tmp_path):
    """Airflow retries a failed task: compute run twice on the same staging must not count the rows
    it quarantines twice (the control totals would refuse the month) nor change any output."""
    data = build(tmp_path / "data", partners=[partner("P1")], attributions=[claim("A1", "C1", "P1")],
                 months={"2025-03": {"subscription_billing": [
                     sub("L1", "C1", "400.00", "2025-03-10"),
                     sub("L2", "C1", "-5.00", "2025-03-11", line_type="refund", refers_to_line_id="NOPE"),  # compute
                     sub("L3", "C1", "1.001", "2025-03-12"),  # quarantined at ingest
                 ]}})
    straight = tmp_path / "straight"
    run_month(data, straight, "2025-03")
    retried = tmp_path / "retried"
    for step in (engine.prepare, engine.ingest, engine.validate_inputs, engine.compute, engine.compute,
                 engine.validate_results, engine.publish):
        step(data, retried, "2025-03")
    month = _snapshot(straight / "2025-03")
    assert month == _snapshot(retried / "2025-03")
    exceptions = (straight / "2025-03" / "exceptions.csv").read_text()
    assert exceptions.count("\n") == 3  # header, the refund of an unknown charge, the bad amount
