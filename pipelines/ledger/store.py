"""The ledger: a DuckDB database under the output root that carries month to month what the next
month needs (closing balances, charges and their shares for later refunds, tier bases, unsettled
movements, referral events, ids already used).

Every table is append-only and keyed by `billing_month`, so rerunning the latest month is "delete
that month's rows, insert the new ones", in one transaction. Compute only ever reads rows of months
before the one it computes, which is what makes a rerun of the latest month reproduce it exactly.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import duckdb

from pipelines.core.months import BillingMonth
from pipelines.ledger import outroot
from pipelines.rules.relations import sql_literal

LEDGER_FILE = "ledger.duckdb"
#: each month's billing lines and charge credits (10M and 9M rows at marketplace scale) stay the
#: Parquet files compute wrote, moved under `<out>/ledger_files/<month>.<token>/` at publish:
#: publishing them is a rename, not an insert of 19M rows into the database file. `month_files`
#: (committed in the same transaction as the month's other rows) names the folder that holds a
#: month's files; a folder it does not name (a rerun's replaced files, or a publish that died before
#: its commit) is never read, and the next publish removes it.
FILES_DIR = "ledger_files"
PARQUET_TABLES = ("billing_lines", "charge_credits")

# Money columns are minor units of the row's own currency (HUGEINT); credited_program is the
# program currency in major units, exact to 20 decimals.
TABLES: dict[str, str] = {
    # manifest_sha256: the sha256 of the month folder's manifest.json this commit published
    "months": "billing_month varchar, program_currency varchar, manifest_sha256 varchar",
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
    # who entered each adjustment (approval's maker-checker rule) and the ids used (unique across months)
    "adjustments": (
        "billing_month varchar, adjustment_id varchar, partner_id varchar, currency varchar, "
        "amount_minor hugeint, entered_by varchar"
    ),
    # rows read from each input file (the input gate compares a month with earlier ones)
    "input_rows": "billing_month varchar, file varchar, rows_read bigint",
    # restatement (docs/restatement.md): each month's earnings as computed, the fx rates it used, and
    # the differences later months posted for it
    "earnings": "billing_month varchar, partner_id varchar, currency varchar, kind varchar, amount_minor hugeint",
    "month_rates": "billing_month varchar, currency varchar, rate decimal(22, 10)",
    "restatements": (
        "billing_month varchar, partner_id varchar, locked_month varchar, currency varchar, amount_minor hugeint"
    ),
    # the folder (relative to the output root) holding each month's PARQUET_TABLES
    "month_files": "billing_month varchar, dir varchar",
}


def columns(table: str) -> list[tuple[str, str]]:
    """(name, type) of a ledger table's columns, from TABLES."""
    return [tuple(c.split(" ", 1)) for c in re.split(r",\s*(?=[a-z_][a-z0-9_]* [a-z])", TABLES[table])]


def ledger_path(out_dir: Path) -> Path:
    return Path(out_dir) / LEDGER_FILE


def create_tables(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    for name, cols in TABLES.items():
        con.execute(f"create table if not exists {schema}.{name} ({cols})")
    # a ledger written before months carried the manifest's hash
    con.execute(f"alter table {schema}.months add column if not exists manifest_sha256 varchar")


def attach_read_only(con: duckdb.DuckDBPyConnection, out_dir: Path) -> None:
    """Make the ledger readable as `ledger.<table>` (empty tables when no month was computed yet).

    The database file is attached read-only as `ledger_db`; `ledger` is an in-memory catalog of
    views over it, where billing_lines and charge_credits add the committed months' Parquet files.
    """
    path = ledger_path(out_dir)
    if path.exists():
        con.execute("attach $path as ledger_db (read_only)", {"path": str(path)})
    else:
        con.execute("attach ':memory:' as ledger_db")
        create_tables(con, "ledger_db")
    con.execute("attach ':memory:' as ledger")
    # a ledger written by an earlier version lacks the tables added since: they read as empty
    present = {t for (t,) in con.execute(
        "select table_name from duckdb_tables() where database_name = 'ledger_db'").fetchall()}
    dirs = [d for (d,) in con.execute("select dir from ledger_db.month_files order by billing_month").fetchall()] \
        if "month_files" in present else []
    for name in TABLES:
        if name not in present:  # empty, with the columns TABLES gives it
            sql = "select " + ", ".join(f'null::{t} as "{c}"' for c, t in columns(name)) + " limit 0"
        elif name == "months":  # by name: a ledger from before manifest_sha256 has no such column
            sql = "select billing_month, program_currency from ledger_db.months"
        else:
            sql = f"select * from ledger_db.{name}"
        if name in PARQUET_TABLES and dirs:
            files = ", ".join(sql_literal(str(Path(out_dir) / d / f"{name}.parquet")) for d in dirs)
            # Parquet has no 128-bit integer: the money columns were written as DECIMAL(38, 0)
            typed = ", ".join(f'"{c}"::{t} as "{c}"' for c, t in columns(name))
            sql += f" union all select {typed} from read_parquet([{files}])"
        con.execute(f"create view ledger.{name} as {sql}")


def attach_replay(con: duckdb.DuckDBPyConnection, delta_dirs: list[Path]) -> None:
    """`ledger.<table>` as views over the given months' ledger deltas (`<dir>/<table>.parquet`, the
    files the ledger step writes) and nothing else: a restatement recomputes locked months in order,
    each against the ones recomputed before it."""
    con.execute("attach ':memory:' as ledger")
    for name in TABLES:
        files = [str(Path(d) / f"{name}.parquet") for d in delta_dirs if (Path(d) / f"{name}.parquet").exists()]
        present = set()
        if files:  # a delta holds the table's columns the ledger step writes (not e.g. manifest_sha256)
            present = {c for (c, *_) in con.execute(
                f"describe select * from read_parquet({sql_literal(files[0])})").fetchall()}
        typed = ", ".join((f'"{c}"::{t}' if c in present else f"null::{t}") + f' as "{c}"' for c, t in columns(name))
        if files:
            sql = f"select {typed} from read_parquet([{', '.join(sql_literal(f) for f in files)}])"
        else:
            sql = "select " + ", ".join(f'null::{t} as "{c}"' for c, t in columns(name)) + " limit 0"
        con.execute(f"create view ledger.{name} as {sql}")


KEPT_DIR = "kept"  # <out>/ledger_files/kept/<month>/: a locked month's exports, for restatement


def kept_exports(out_dir: Path, month: str) -> Path:
    return Path(out_dir) / FILES_DIR / KEPT_DIR / month


def latest_month(out_dir: Path) -> str | None:
    return committed(out_dir)[0]


def committed(out_dir: Path) -> tuple[str | None, str | None]:
    """The ledger's latest month and the sha256 of the manifest.json its publish committed (None for
    a month published before manifests, or an empty ledger)."""
    path = ledger_path(out_dir)
    if not path.exists():
        return None, None
    con = duckdb.connect(str(path), read_only=True)
    try:
        cols = {c for (c,) in con.execute(
            "select column_name from duckdb_columns() where table_name = 'months'").fetchall()}
        sha = "manifest_sha256" if "manifest_sha256" in cols else "null"
        row = con.execute(f"select billing_month, {sha} from months order by billing_month desc limit 1").fetchall()
        return (row[0][0], row[0][1]) if row else (None, None)
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
    return str(BillingMonth.parse(month).next)


def check_chain(out_dir: Path, month: str) -> None:
    """Months chain: only the month after the latest computed one, or the latest again, may run.
    A ledger that is missing while months are published is an error, never a fresh start; so is a
    month folder the ledger does not know."""
    latest = latest_month(out_dir)
    folders = outroot.month_folders(out_dir)
    if latest is None and (folders or (Path(out_dir) / FILES_DIR).exists()):
        shown = ", ".join(folders) if folders else "ledger_files/"
        raise ChainError(f"the ledger ({LEDGER_FILE}) is missing but months are published ({shown}): restore it "
                         "from a backup, or start a new ledger in an empty output folder")
    unknown = [m for m in folders if latest is not None and m > latest]
    if unknown:
        raise ChainError(f"{unknown[0]} is in the output folder but the ledger ends at {latest}: a folder the "
                         f"ledger never published; move it out of the output folder, then run {next_month(latest)}")
    if latest is not None and month == next_month(latest):
        _check_published(out_dir, latest)
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


def _check_published(out_dir: Path, month: str) -> None:
    """The folder of the ledger's latest month is there and is what its publish committed (the next
    month's opening balances are its closing ones, and finance reads them there)."""
    import hashlib

    _, sha = committed(out_dir)
    manifest = Path(out_dir) / month / "manifest.json"
    if not (Path(out_dir) / month).is_dir():
        raise ChainError(f"the ledger has {month} but its folder {month}/ is missing: restore it from a backup "
                         f"(or run {month} again) before {next_month(month)}")
    if sha is not None and (not manifest.exists() or hashlib.sha256(manifest.read_bytes()).hexdigest() != sha):
        raise ChainError(f"{month}/manifest.json is not the one the ledger published: restore {month}/ from a "
                         f"backup (or run {month} again) before {next_month(month)}")


class ChainError(ValueError):
    pass


def apply_month(out_dir: Path, delta_dir: Path, month: str, manifest_sha256: str, config: dict | None = None) -> None:
    """Replace `month` in the ledger with the staged rows (`<delta_dir>/<table>.parquet`), in one
    transaction that also records the hash of the month folder's manifest.json: the big tables'
    files move into a new folder first, and the commit names it. If the commit fails, the files
    move back, so the step can be retried."""
    out_dir = Path(out_dir)
    files_dir = Path(FILES_DIR) / f"{month}.{uuid.uuid4().hex[:12]}"
    (out_dir / files_dir).mkdir(parents=True)
    for name in PARQUET_TABLES:
        os.replace(delta_dir / f"{name}.parquet", out_dir / files_dir / f"{name}.parquet")
    path = ledger_path(out_dir)
    try:
        con = duckdb.connect(str(path), config=config or {})
    except BaseException:
        _move_back(out_dir / files_dir, delta_dir)
        raise
    try:
        try:
            create_tables(con, "main")
            con.execute("begin transaction")
            for name in TABLES:
                # a rerun month's rows go; for a ledger from before month_files, so do its big tables' rows
                con.execute(f"delete from main.{name} where billing_month = $m", {"m": month})
                if name == "month_files":
                    con.execute("insert into main.month_files values ($m, $d)", {"m": month, "d": files_dir.as_posix()})
                elif name not in PARQUET_TABLES:
                    con.execute(f"insert into main.{name} by name select * from read_parquet($p)",
                                {"p": str(delta_dir / f"{name}.parquet")})
            con.execute("update main.months set manifest_sha256 = $s where billing_month = $m",
                        {"s": manifest_sha256, "m": month})
            con.execute("commit")
        except BaseException:
            _move_back(out_dir / files_dir, delta_dir)
            raise
        con.execute("checkpoint")
        kept = {d for (d,) in con.execute("select dir from main.month_files").fetchall()}
    finally:
        con.close()
    # after the commit: folders no committed month names (the month's previous files on a rerun, or
    # those of a publish that died before its commit) are never read again
    for d in sorted((out_dir / FILES_DIR).iterdir()):
        if f"{FILES_DIR}/{d.name}" not in kept and d.name != KEPT_DIR:
            shutil.rmtree(d)


def _move_back(files_dir: Path, delta_dir: Path) -> None:
    for name in PARQUET_TABLES:
        if (files_dir / f"{name}.parquet").exists():
            os.replace(files_dir / f"{name}.parquet", delta_dir / f"{name}.parquet")
    shutil.rmtree(files_dir, ignore_errors=True)


def adjustment_makers(out_dir: Path, month: str) -> list[str]:
    """Who entered the month's adjustments (`entered_by`), from the ledger."""
    path = ledger_path(Path(out_dir))
    if not path.exists():
        return []
    con = duckdb.connect(str(path), read_only=True)
    try:
        if not con.execute("select 1 from duckdb_tables() where table_name = 'adjustments'").fetchall():
            return []  # a ledger from before adjustments
        return [m for (m,) in con.execute(
            "select distinct entered_by from adjustments where billing_month = $m order by 1", {"m": month}).fetchall()]
    finally:
        con.close()


def discard_month(out_dir: Path, month: str) -> None:
    """Remove `month` from the ledger (every table is keyed by billing_month) in one transaction, then
    its Parquet files; nothing happens when the ledger does not have it (safe to run twice)."""
    out_dir = Path(out_dir)
    path = ledger_path(out_dir)
    if not path.exists():
        return
    con = duckdb.connect(str(path))
    try:
        create_tables(con, "main")
        dirs = [d for (d,) in con.execute("select dir from main.month_files where billing_month = $m",
                                          {"m": month}).fetchall()]
        con.execute("begin transaction")
        for name in TABLES:
            con.execute(f"delete from main.{name} where billing_month = $m", {"m": month})
        con.execute("commit")
        con.execute("checkpoint")
    finally:
        con.close()
    for d in dirs:
        shutil.rmtree(out_dir / d, ignore_errors=True)
