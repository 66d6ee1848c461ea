"""The validation gates between the engine's steps, on Great Expectations (`pipelines/validation.py`).

`run_input_suites` runs inside ingest, on the raw rows it holds: the input suites on every export
(warnings: the engine quarantines those rows) and the quarantine-rate limit (fatal);
`validate_inputs`, the gate step, stops the run on a fatal result. `validate_results` runs after
compute, before publish: the result suites on the files as written (fatal when they do not
reconcile), then writes `validation/results.json` and `report.html` into the staged month. The two
may run in different processes (Airflow tasks), so the input results wait in the staging folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import duckdb
import polars as pl

from pipelines.core.program import LEVELS, Program
from pipelines.core.money import minor_units
from pipelines.ingest.files import ALL_INPUTS

log = logging.getLogger(__name__)

INPUT_RESULTS = "validation_inputs.json"
#: hash(line_id) of every line id found more than once in the month's two billing files as read
REPEATED_LINE_HASHES = "repeated_line_hashes"
LINE_RESULTS = "validation_lines.json"


class GateFailed(RuntimeError):
    """A fatal gate failed; the message is one line naming the file and column, or the rate."""


def _frame(con: duckdb.DuckDBPyConnection, query: str, params: dict | None = None) -> pl.DataFrame:
    return pl.from_arrow(con.sql(query, params=params or None).to_arrow_table())


def _params(con: duckdb.DuckDBPyConnection, month: str, program: Program) -> dict:
    from pipelines.validation import suites as validation
    from pipelines.core.months import BillingMonth

    end = BillingMonth.parse(month).last_day
    digits = minor_units()
    fx = {c for (c,) in con.execute(
        "select distinct currency from fx_rates where rate_date <= $end", {"end": end}).fetchall()}
    return {
        **validation.month_params(month),
        "currencies": sorted(digits),
        "minor_units": digits,
        "fx_currencies": sorted(fx | {program.currency}),
        "product_families": program.product_families(),
        "partner_ids": [p for (p,) in con.execute("select partner_id from partners order by 1").fetchall()],
        "levels": list(LEVELS),
    }


def _raise(report) -> None:
    from pipelines.validation import suites as validation

    try:
        report.raise_if_fatal()
    except validation.GateFailed as exc:
        raise GateFailed(str(exc)) from None


def _file_counts(con: duckdb.DuckDBPyConnection) -> dict:
    rows = con.execute(
        """select f.file, f.rows_read, count(q.source_file)
           from file_rows as f left join quarantine as q on q.source_file = f.source_file
           group by all order by f.file"""
    ).fetchall()
    return {k: {"read": int(r), "quarantined": int(q), "used": int(r) - int(q)} for k, r, q in rows}


def repeated_table(values):
    """The values (a numpy uint64 array) that occur more than once, each once and sorted, as an
    Arrow table with one UBIGINT column `h` (built from the buffer: no pandas)."""
    import numpy as np
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.uint64)
    # values already in order (ingest has DuckDB sort them, on every core) are not sorted again
    ordered = values if bool((values[1:] >= values[:-1]).all()) else np.sort(values)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    return pa.table({"h": pa.Array.from_buffers(pa.uint64(), len(repeated), [None, pa.py_buffer(repeated)])})


def run_input_suites(con: duckdb.DuckDBPyConnection, stage: Path, month: str, program: Program) -> None:
    """The input suites on every raw export, run by ingest while its connection holds the rows as text
    (`raw_<key>`, temp tables): the exports are parsed once for ingest and gate together. The results
    wait in the staging folder; `validate_inputs` (the gate step) decides on them."""
    from pipelines.validation import suites as validation

    report = validation.GateReport(month)
    params = _params(con, month, program)
    repeated = {("line_id",): f"select h from {REPEATED_LINE_HASHES}"}
    for f in ALL_INPUTS:
        if f.key == "adjustments":  # no row-level suite (this layer is being replaced)
            continue
        cols = ", ".join(f'"{c}"' for c in f.columns)
        # the rows stay in DuckDB and GX gets exact reductions of them (validation.SqlFrame)
        frame = validation.SqlFrame(con, f"select {cols} from raw_{f.key}",  # an absent optional file: no rows
                                    repeated if f.key in ("subscription_billing", "project_billing") else None)
        report.validate(f.key, frame, severity=validation.WARNING, runtime_params=params, file=f.label(month))
    ids = validation.SqlFrame(
        con, "select line_id from raw_subscription_billing union all select line_id from raw_project_billing",
        repeated)
    report.validate("billing_line_ids", ids, severity=validation.WARNING, runtime_params=params)
    report.check_quarantine(_file_counts(con), float(program.validation.max_quarantine_pct))
    (stage / INPUT_RESULTS).write_text(json.dumps({"suites": report.suites, "problems": report.problems},
                                                  sort_keys=True, default=str))


def _input_report(stage: Path, month: str):
    from pipelines.validation import suites as validation

    saved = stage / INPUT_RESULTS
    if not saved.exists():
        raise GateFailed(f"no input gate results for {month}: run ingest first")
    state = json.loads(saved.read_text())
    report = validation.GateReport(month)
    for s in state["suites"]:
        report.add(s)
    report.problems.extend(state["problems"])
    return report


def validate_inputs(stage: Path, month: str) -> dict:
    """The input gate: fatal problems found by the input suites (`run_input_suites`) stop the run."""
    report = _input_report(stage, month)
    _raise(report)
    warnings = report.warning_messages()
    log.info("input gates: %d suites, %d warnings", len(report.suites), len(warnings))
    return {"suites": len(report.suites), "warnings": len(warnings)}


def run_line_suite(con: duckdb.DuckDBPyConnection, stage: Path, month: str) -> None:
    """The `line_reconciliation` suite on the month's billing lines, run by compute while its
    connection holds them (`line_reconciliation`, a temp view): the 10M lines are neither written
    to disk nor read again by the result gate, which adds this result to its report."""
    from pipelines.validation import suites as validation

    lines = validation.SqlFrame(
        con, "select line_id, currency, amount, partner_shares, company_share from line_reconciliation")
    result = validation.validate_frame("line_reconciliation", lines, severity=validation.FATAL, runtime_params={})
    (stage / LINE_RESULTS).write_text(json.dumps(result, sort_keys=True, default=str))


def validate_results(con: duckdb.DuckDBPyConnection, out_dir: Path, stage: Path, month: str,
                     program: Program) -> dict:
    from pipelines.validation import suites as validation

    report = _input_report(stage, month)  # the input gate's results, possibly from another process
    params = _params(con, month, program)
    month_dir = stage / "month"
    read = lambda p: pl.read_csv(p, infer_schema=False)  # noqa: E731  (the files exactly as written)
    remittance = read(month_dir / "remittance.csv")
    balances = read(month_dir / "partner_balances.csv")
    summary = json.loads((month_dir / "summary.json").read_text())
    report.validate("remittance", remittance, severity=validation.FATAL, runtime_params=params)
    report.validate("partner_balances", balances, severity=validation.FATAL, runtime_params=params)
    totals = {c: {"gross": v["gross"], "withholding": v["withholding"], "net": v["net_paid"]}
              for c, v in summary["by_payout_currency"].items()}
    report.validate("payout_totals", validation.payout_totals_frame(remittance, balances, totals),
                    severity=validation.FATAL, runtime_params=params)
    previous = _previous_balances(con, out_dir, month)
    report.validate("balance_chain", validation.balance_chain_frame(balances, previous),
                    severity=validation.FATAL, runtime_params=params)
    # one row per billing line: run by compute while it held the lines (run_line_suite)
    saved = stage / LINE_RESULTS
    if not saved.exists():
        raise GateFailed(f"no line reconciliation results for {month}: run compute first")
    report.add(json.loads(saved.read_text()))
    report.check_quarantine(summary["files"], float(program.validation.max_quarantine_pct))
    _raise(report)
    report.write(month_dir / "validation")
    log.info("result gates: %d suites, status %s", len(report.suites), report.to_dict()["status"])
    return {"suites": len(report.suites), "status": report.to_dict()["status"]}


def _previous_balances(con: duckdb.DuckDBPyConnection, out_dir: Path, month: str) -> pl.DataFrame | None:
    """Last month's published partner_balances.csv, when the ledger has last month."""
    start = dt.date.fromisoformat(month + "-01")
    prev = (start - dt.timedelta(days=1)).strftime("%Y-%m")
    (known,) = con.execute("select count(*) from ledger.months where billing_month = $p", {"p": prev}).fetchall()[0]
    path = out_dir / prev / "partner_balances.csv"
    if known and not path.exists():
        raise GateFailed(f"{prev}/partner_balances.csv is missing: the ledger has {prev} but its folder does not "
                         "hold it; restore the folder from a backup")
    return pl.read_csv(path, infer_schema=False) if known else None
