"""The ledger: a DuckDB database under the output root that carries month to month what the next
month needs (closing balances, charges and their shares for later refunds, tier bases, unsettled
movements, referral events, ids already used).

Every table is append-only and keyed by `billing_month`, so rerunning the latest month is "delete
that month's rows, insert the new ones", in one transaction. Compute only ever reads rows of months
before the one it computes, which is what makes a rerun of the latest month reproduce it exactly.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

LEDGER_FILE = "ledger.duckdb"

# Money columns are minor units of the row's own currency (HUGEINT); credited_program is the
# program currency in major units, exact to 20 decimals.
TABLES: dict[str, str] = {
    "months": "billing_month varchar, program_currency varchar",
    "billing_lines": (
        "billing_month varchar, line_id varchar, source varchar, line_type varchar, invoice_date date, "
        "customer_id varchar, item varchar, currency varchar, digits integer, amount_minor hugeint, "
        "source_file varchar, row_number bigint"
    ),
    "charge_credits": (
        "billing_month varchar, line_id varchar, credit_key varchar, partner_id varchar, "
        "engagement_type varchar, credit_pct decimal(9, 4), rate decimal(9, 6), share_minor hugeint"
    ),
    "refunds": "billing_month varchar, line_id varchar, refers_to_line_id varchar, amount_minor hugeint",
    "tier_base": "billing_month varchar, partner_id varchar, year integer, credited_program decimal(38, 20)",
    "referral_events": (
        "billing_month varchar, event_id varchar, partner_id varchar, deal_id varchar, event_type varchar, "
        "event_date date, paid boolean"
    ),
    "fee_ids": "billing_month varchar, fee_id varchar",
    "movements": (
        "billing_month varchar, movement_id varchar, partner_id varchar, kind varchar, entry_date date, "
        "currency varchar, digits integer, amount_minor hugeint, payable_month varchar, netted boolean, "
        "source_file varchar, record_id varchar, customer_id varchar, item varchar, billed_minor hugeint, "
        "credit_pct decimal(9, 4), rate decimal(9, 6), refers_to varchar, note varchar"
    ),
    "settlements": "billing_month varchar, movement_id varchar",
    "balances": (
        "billing_month varchar, partner_id varchar, payout_currency varchar, digits integer, "
        "opening_minor hugeint, closing_minor hugeint, status varchar"
    ),
}


def ledger_path(out_dir: Path) -> Path:
    return Path(out_dir) / LEDGER_FILE


def create_tables(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    for name, cols in TABLES.items():
        con.execute(f"create table if not exists {schema}.{name} ({cols})")


def attach_read_only(con: duckdb.DuckDBPyConnection, out_dir: Path) -> None:
    """Make the ledger readable as schema `ledger` (empty tables when no month was computed yet)."""
    path = ledger_path(out_dir)
    if path.exists():
        con.execute("attach $path as ledger (read_only)", {"path": str(path)})
    else:
        con.execute("attach ':memory:' as ledger")
        create_tables(con, "ledger")


def latest_month(out_dir: Path) -> str | None:
    path = ledger_path(out_dir)
    if not path.exists():
        return None
    con = duckdb.connect(str(path), read_only=True)
    try:
        (m,) = con.execute("select max(billing_month) from months").fetchall()[0]
        return m
    finally:
        con.close()


def stamp(out_dir: Path) -> str | None:
    """Identifies the ledger's current state: any publish rewrites the file (size and mtime change)."""
    path = ledger_path(out_dir)
    if not path.exists():
        return None
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def next_month(month: str) -> str:
    d = dt.date.fromisoformat(month + "-01")
    return f"{d.year + (d.month == 12)}-{d.month % 12 + 1:02d}"


def check_chain(out_dir: Path, month: str) -> None:
    """Months chain: only the month after the latest computed one, or the latest again, may run."""
    latest = latest_month(out_dir)
    if latest is None or month == latest or month == next_month(latest):
        return
    if month < latest:
        raise ChainError(
            f"refusing to run {month}: the ledger's latest month is {latest}; only {latest} (again) "
            f"or {next_month(latest)} may run, because later balances depend on earlier ones"
        )
    raise ChainError(
        f"refusing to run {month}: the ledger's latest month is {latest}; run {next_month(latest)} first"
    )


class ChainError(ValueError):
    pass


def apply_month(out_dir: Path, delta_dir: Path, month: str, config: dict | None = None) -> None:
    """Replace `month` in the ledger with the staged rows (`<delta_dir>/<table>.parquet`), in one transaction."""
    path = ledger_path(out_dir)
    con = duckdb.connect(str(path), config=config or {})
    try:
        create_tables(con, "main")
        con.execute("begin transaction")
        for name in TABLES:
            con.execute(f"delete from main.{name} where billing_month = $m", {"m": month})
            con.execute(f"insert into main.{name} by name select * from read_parquet($p)",
                        {"p": str(delta_dir / f"{name}.parquet")})
        con.execute("commit")
        con.execute("checkpoint")
    finally:
        con.close()
