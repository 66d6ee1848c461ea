"""The validation gates between the engine's steps: the frames the suites of `checks` run on.

Every frame is small (one row per input file, currency or partner), so Great Expectations never
sees the billing lines; row-level rules are SQL quarantine (sql/*_checked).

- `input_gate` (the `validate_inputs` step): `input_files` (quarantine rate: fatal above
  `validation.max_quarantine_pct`; rows read against earlier months: a warning) and `fx_moves`.
- `gate_totals` (in `compute`, while its tables are in memory): totals computed from the rules'
  own tables, independently of what the files and summary.json were written from.
- `result_gate` (the `validate_results` step): the files as written, read back, against those
  totals and each other (`remittance`, `partner_balances`, `carried_balances`, `payout_totals`,
  `currency_totals`: fatal), `unattributed_share` and `new_values` (warnings), `input_files` again
  with the month's final quarantine counts. It writes `validation/results.json` and `report.html`
  into the staged month; a fatal failure stops the run before anything is published.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import duckdb
import polars as pl

from pipelines.core.money import minor_units, to_minor
from pipelines.core.months import BillingMonth
from pipelines.core.program import Program
from pipelines.core.text import unsafe_text
from pipelines.rules import relations
from pipelines.validation import checks
from pipelines.validation.checks import GateFailed, ValidationReport

log = logging.getLogger(__name__)

MONEY = pl.Int128  # minor units: a real amount can pass 64 bits (tests/test_rules.py)
INPUT_REPORT = "validation_inputs.json"
INPUT_HISTORY = "validation_input_files.json"  # each file's label and rows read in earlier months
GATE_TOTALS = "gate_totals.json"
BALANCE_AMOUNTS = ("opening_balance", "earnings", "clawbacks", "referral_fees", "fees", "adjustments", "pending",
                   "gross_paid", "withholding", "net_paid", "closing_balance")
REMITTANCE_AMOUNTS = ("gross_amount", "withholding_amount", "net_amount")

__all__ = ["GateFailed", "input_gate", "gate_totals", "result_gate", "prewarm"]


def prewarm() -> None:
    """Import Great Expectations in a background thread (it takes seconds) while DuckDB works."""
    checks.prewarm()


def _bp(part: int, whole: int | None) -> int | None:
    """part / whole in basis points, rounded down; None when there is nothing to compare with."""
    if whole is None or whole == 0:
        return None
    return abs(part) * 10000 // abs(whole)


def _thresholds(program: Program, month: str) -> dict:
    v = program.validation
    bp = lambda pct: int(pct * 100)  # noqa: E731  (percent with at most 2 decimals -> basis points)
    return {"month": month, "max_quarantine_bp": bp(v.max_quarantine_pct), "max_row_change_bp": bp(v.max_row_change_pct),
            "max_fx_move_bp": bp(v.max_fx_move_pct), "max_unattributed_bp": bp(v.max_unattributed_pct)}


def _frame(con: duckdb.DuckDBPyConnection, name: str, params: dict) -> pl.DataFrame:
    rel = relations.graph().relations[name]
    return pl.from_arrow(con.sql(rel.query, params=relations.bound(rel, params) or None).to_arrow_table())


def _input_files(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.with_columns(
        pl.struct("rows_quarantined", "rows_read").map_elements(
            lambda r: _bp(r["rows_quarantined"], r["rows_read"]) or 0, return_dtype=pl.Int64).alias("quarantine_bp"),
        pl.struct("rows_read", "previous_rows").map_elements(
            lambda r: _bp(r["rows_read"] - r["previous_rows"], r["previous_rows"])
            if r["previous_rows"] is not None else None, return_dtype=pl.Int64).alias("change_bp"),
    ).select("file", "label", "rows_read", "rows_quarantined", "quarantine_bp", "previous_rows", "change_bp")


# --- the input gate ---------------------------------------------------------------------------------

def input_gate(con: duckdb.DuckDBPyConnection, stage: Path, month: str, program: Program) -> dict:
    """The input suites, on the work database (with the ledger attached): their report waits in the
    staging folder for the result gate; a fatal result stops the run here."""
    m = BillingMonth.parse(month)
    params = {"billing_month": month, "month_end": m.last_day, "previous_month_end": m.previous.last_day}
    fx = _frame(con, "gate_fx_moves", params)
    frames = {
        "input_files": _input_files(_frame(con, "gate_input_files", params)),
        "fx_moves": pl.DataFrame({
            "currency": fx["currency"].to_list(),
            "rate": [str(r) for r in fx["rate"].to_list()],
            "previous_rate": [None if r is None else str(r) for r in fx["previous_rate"].to_list()],
            "move_bp": [None if p is None else _bp_decimal(r - p, p)
                        for r, p in zip(fx["rate"].to_list(), fx["previous_rate"].to_list())],
        }, schema={"currency": pl.String, "rate": pl.String, "previous_rate": pl.String, "move_bp": pl.Int64}),
    }
    report = checks.validate(month, frames, _thresholds(program, month))
    (stage / INPUT_REPORT).write_text(json.dumps(report.to_dict(), sort_keys=True))
    (stage / INPUT_HISTORY).write_text(json.dumps(
        {r["file"]: {"label": r["label"], "previous_rows": r["previous_rows"]}
         for r in frames["input_files"].to_dicts()}, sort_keys=True))
    checks.raise_if_fatal(report)
    return {"suites": len(report.results), "warnings": len(report.warning_messages())}


def _bp_decimal(diff, base) -> int | None:
    if base == 0:
        return None
    return int(abs(diff) * 10000 // abs(base))


# --- totals computed in compute ---------------------------------------------------------------------

def gate_totals(con: duckdb.DuckDBPyConnection, stage: Path, params: dict) -> None:
    """Totals the result gate checks the files against, computed from the rules' tables while compute
    holds them (a later step runs in another process, without compute's temporary tables)."""
    def rows(name: str) -> list[dict]:
        return _frame(con, name, params).to_dicts()

    totals = {"currency": rows("gate_currency_totals"), "payout": rows("gate_payout_totals"),
              "new_values": rows("gate_new_values")}
    (stage / GATE_TOTALS).write_text(json.dumps(totals, sort_keys=True, default=int))


# --- the result gate --------------------------------------------------------------------------------

def _digits_ok(amount: str | None, digits: int) -> bool:
    pattern = r"-?[0-9]+" if digits == 0 else rf"-?[0-9]+\.[0-9]{{{digits}}}"
    return amount is not None and re.fullmatch(pattern, amount) is not None


def _minor(amount: str | None, digits: int) -> int | None:
    return None if amount is None else to_minor(amount, digits)


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)  # the file exactly as written: every column text


def result_gate(con: duckdb.DuckDBPyConnection, out_dir: Path, stage: Path, month: str, program: Program) -> dict:
    """The result suites on the staged month's files; writes the month's validation report (input and
    result suites together) and stops the run on a fatal result."""
    digits = minor_units()
    month_dir = stage / "month"
    compact = BillingMonth.parse(month).compact
    remittance = _read(month_dir / "remittance.csv")
    balances = _read(month_dir / "partner_balances.csv")
    summary = json.loads((month_dir / "summary.json").read_text())
    totals = json.loads((stage / GATE_TOTALS).read_text())
    status = {unsafe_text(p): s for p, s in zip(balances["partner_id"].to_list(), balances["status"].to_list())}

    d_of = lambda cur: digits.get(cur, 2)  # noqa: E731  (payout currencies are known: checked at ingest)
    rem = remittance.to_dicts()
    remittance_frame = remittance.with_columns(
        pl.Series("expected_reference", [f"PO-{compact}-{unsafe_text(r['partner_id'])}" for r in rem], pl.String),
        pl.Series("gross_minor", [_minor(r["gross_amount"], d_of(r["payout_currency"])) for r in rem], MONEY),
        pl.Series("amount_digits_ok", [all(_digits_ok(r[c], d_of(r["payout_currency"])) for c in REMITTANCE_AMOUNTS)
                                       for r in rem], pl.Boolean),
        pl.Series("paid_in_balances", [status.get(unsafe_text(r["partner_id"])) == "paid" for r in rem], pl.Boolean),
    )

    previous = _previous_balances(con, out_dir, month)
    prev_closing = {} if previous is None else {
        unsafe_text(r["partner_id"]): _minor(r["closing_balance"], d_of(r["payout_currency"]))
        for r in previous.to_dicts()}
    bal = balances.to_dicts()
    balances_frame = balances.with_columns(
        pl.Series("closing_minor", [_minor(r["closing_balance"], d_of(r["payout_currency"])) for r in bal], MONEY),
        pl.Series("gross_minor", [_minor(r["gross_paid"], d_of(r["payout_currency"])) for r in bal], MONEY),
        pl.Series("opening_minor", [_minor(r["opening_balance"], d_of(r["payout_currency"])) for r in bal], MONEY),
        pl.Series("previous_closing_minor", [prev_closing.get(unsafe_text(r["partner_id"])) for r in bal], MONEY),
        pl.Series("amount_digits_ok", [all(_digits_ok(r[c], d_of(r["payout_currency"])) for c in BALANCE_AMOUNTS)
                                       for r in bal], pl.Boolean),
    )
    present = set(status)
    carried = [p for p, c in prev_closing.items() if c]
    carried_frame = pl.DataFrame({"partner_id": carried, "present": [p in present for p in carried]},
                                 schema={"partner_id": pl.String, "present": pl.Boolean})

    payout_frame = _payout_totals(remittance, balances, summary, totals["payout"], d_of)
    currency_frame, unattributed_frame = _currency_totals(summary, totals["currency"], d_of)
    new_values = pl.DataFrame(totals["new_values"], schema={"kind": pl.String, "value": pl.String,
                                                            "seen_before": pl.Boolean, "first_month": pl.Boolean})
    history = json.loads((stage / INPUT_HISTORY).read_text())
    file_rows = pl.DataFrame(
        [{"file": key, "label": history.get(key, {}).get("label", key), "rows_read": f["read"],
          "rows_quarantined": f["quarantined"], "previous_rows": history.get(key, {}).get("previous_rows")}
         for key, f in sorted(summary["files"].items())],
        schema={"file": pl.String, "label": pl.String, "rows_read": pl.Int64, "rows_quarantined": pl.Int64,
                "previous_rows": pl.Int64})
    earlier = ValidationReport.from_dict(json.loads((stage / INPUT_REPORT).read_text()))
    frames = {
        "input_files": _input_files(file_rows),
        "remittance": remittance_frame,
        "partner_balances": balances_frame,
        "carried_balances": carried_frame,
        "payout_totals": payout_frame,
        "currency_totals": currency_frame,
        "unattributed_share": unattributed_frame,
        "new_values": new_values,
    }
    params = _thresholds(program, month) | {"partners_paid": sum(p["partners_paid"] for p in totals["payout"])}
    report = earlier.merge(checks.validate(month, frames, params))
    from pipelines.validation.report import write_report

    write_report(report, month_dir / "validation")
    checks.raise_if_fatal(report)
    return {"suites": len(report.results), "status": report.status()}


def _payout_totals(remittance: pl.DataFrame, balances: pl.DataFrame, summary: dict, ledger_rows: list[dict],
                   d_of) -> pl.DataFrame:
    currencies = sorted(set(summary["by_payout_currency"]) | {r["currency"] for r in ledger_rows}
                        | set(remittance["payout_currency"].to_list()))
    ledger_by = {r["currency"]: r for r in ledger_rows}

    def file_sum(frame: pl.DataFrame, column: str, cur: str) -> int:
        return sum(_minor(v, d_of(cur)) for v, c in zip(frame[column].to_list(), frame["payout_currency"].to_list())
                   if c == cur)

    rows = []
    for cur in currencies:
        s = summary["by_payout_currency"].get(cur, {})
        row = {"currency": cur}
        for x, rem_col, bal_col, sum_key in (("gross", "gross_amount", "gross_paid", "gross"),
                                             ("withholding", "withholding_amount", "withholding", "withholding"),
                                             ("net", "net_amount", "net_paid", "net_paid")):
            row[f"{x}_remittance"] = file_sum(remittance, rem_col, cur)
            row[f"{x}_balances"] = file_sum(balances, bal_col, cur)
            row[f"{x}_summary"] = _minor(s.get(sum_key, "0"), d_of(cur))
            row[f"{x}_ledger"] = int(ledger_by.get(cur, {}).get(x, 0))
        rows.append(row)
    columns = ["currency"] + [f"{x}_{src}" for x in ("gross", "withholding", "net")
                              for src in ("remittance", "balances", "summary", "ledger")]
    return pl.DataFrame(rows, schema={c: (pl.String if c == "currency" else MONEY) for c in columns})


def _currency_totals(summary: dict, rows: list[dict], d_of) -> tuple[pl.DataFrame, pl.DataFrame]:
    by = {r["currency"]: r for r in rows}
    currencies = sorted(set(by) | {c for c, v in summary["by_currency"].items()
                                   if v["billed"] not in ("0", "0.00", "0.000")})
    totals, unattributed = [], []
    for cur in currencies:
        s = summary["by_currency"].get(cur, {})
        m = lambda k: _minor(s.get(k, "0"), d_of(cur))  # noqa: E731
        r = by.get(cur, {})
        totals.append({"currency": cur, "billed_summary": m("billed"), "billed_lines": int(r.get("billed_lines", 0)),
                       "partner_share_summary": m("partner_share"),
                       "partner_share_credits": int(r.get("partner_share_credits", 0)),
                       "clawed_back_summary": m("clawed_back"),
                       "clawed_back_clawbacks": int(r.get("clawed_back_clawbacks", 0))})
        unattributed.append({"currency": cur, "billed_minor": m("billed"), "unattributed_minor": m("unattributed"),
                             "unattributed_bp": _bp(m("unattributed"), m("billed")) or 0})
    t_cols = ["currency", "billed_summary", "billed_lines", "partner_share_summary", "partner_share_credits",
              "clawed_back_summary", "clawed_back_clawbacks"]
    u_cols = ["currency", "billed_minor", "unattributed_minor", "unattributed_bp"]
    return (pl.DataFrame(totals, schema={c: (pl.String if c == "currency" else MONEY) for c in t_cols}),
            pl.DataFrame(unattributed, schema={c: (pl.String if c == "currency" else MONEY) for c in u_cols}))


def _previous_balances(con: duckdb.DuckDBPyConnection, out_dir: Path, month: str) -> pl.DataFrame | None:
    """Last month's published partner_balances.csv, when the ledger has last month."""
    prev = str(BillingMonth.parse(month).previous)
    (known,) = con.execute("select count(*) from ledger.months where billing_month = $p", {"p": prev}).fetchall()[0]
    path = out_dir / prev / "partner_balances.csv"
    if known and not path.exists():
        raise GateFailed(f"{prev}/partner_balances.csv is missing: the ledger has {prev} but its folder does not "
                         "hold it; restore the folder from a backup")
    return _read(path) if known else None
