"""Write a month's outputs into a staging folder (published atomically later) and the ledger delta.

Every file is written from a sorted query with no timestamps, so the same inputs give the same
bytes. Control totals are recomputed from the result tables and each identity is checked; a
failed identity is a bug and stops the run before anything is published.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import quote

import duckdb

from pipelines.rules import relations
from pipelines.ingest.files import ALL_INPUTS

log = logging.getLogger(__name__)

STATEMENT_COLUMNS = [
    "line", "entry", "date", "source_file", "record_id", "customer_id", "item", "currency", "billed_amount",
    "credit_pct", "rate", "amount", "payout_currency", "payout_amount", "note",
]


class IdentityFailed(RuntimeError):
    """A control total does not reconcile: a bug, never published."""


def statement_filename(partner_id: str) -> str:
    """The statement file of a partner: its id with every byte outside `A-Z a-z 0-9 _ -` percent-encoded
    (UTF-8; `%` and `.` included), then `.csv`. The encoding is one-to-one, so two partners never
    share a file, and no name is `.`, `..` or holds a `/`. partners.csv ids are at most 64 bytes
    (`id_too_long`), so a name is at most 196 bytes."""
    return quote(partner_id, safe="").replace(".", "%2E").replace("~", "%7E") + ".csv"


MANIFEST = "manifest.json"


def file_digest(path: Path) -> dict:
    """sha256 (hex) and size of a file, read in blocks (hashlib releases the GIL on large blocks)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(8 * 1024 * 1024):
            h.update(block)
            size += len(block)
    return {"sha256": h.hexdigest(), "size": size}


def manifest_sha256(month_dir: Path) -> str | None:
    """The sha256 of a month folder's manifest.json (what the ledger records at publish), or None."""
    path = Path(month_dir) / MANIFEST
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def write_manifest(month_dir: Path, month: str, inputs: dict[str, dict]) -> str:
    """`manifest.json`: the sha256 and size of every other file of the month folder and of every input
    that made it (deterministic: sorted keys, relative paths); returns its own sha256."""
    paths = sorted(p for p in month_dir.rglob("*") if p.is_file() and p != month_dir / MANIFEST)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        digests = list(pool.map(file_digest, paths))
    manifest = {
        "billing_month": month,
        "files": {p.relative_to(month_dir).as_posix(): d for p, d in zip(paths, digests)},
        "inputs": inputs,
    }
    text = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (month_dir / MANIFEST).write_bytes(text)
    return hashlib.sha256(text).hexdigest()


def _copy_csv(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> int:
    """Write a query's rows as CSV: header, quotes only where needed, nulls as empty fields."""
    con.execute(f"copy ({query}) to {relations.sql_literal(str(path))} (format csv, header)")
    return int(con.execute(f"select count(*) from ({query})").fetchall()[0][0])


def write_month(con: duckdb.DuckDBPyConnection, month_dir: Path, params: dict, file_rows: dict) -> dict:
    month_dir.mkdir(parents=True, exist_ok=True)
    p = {"billing_month": params["billing_month"]}
    relations.build(con, "remittance", **p)
    relations.build(con, "partner_balances")
    relations.build(con, "exceptions")
    n_remit = _copy_csv(con, "select * from remittance", month_dir / "remittance.csv")
    _copy_csv(con, "select * from partner_balances", month_dir / "partner_balances.csv")
    n_exc = _copy_csv(con, "select * from exceptions", month_dir / "exceptions.csv")
    t0 = time.perf_counter()
    n_statements = write_statements(con, month_dir, p)
    t1 = time.perf_counter()
    summary = control_totals(con, params, file_rows)
    log.info("statements %.1f s, control totals %.1f s", t1 - t0, time.perf_counter() - t1)
    (month_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("outputs: %d remittance rows, %d statements, %d exceptions", n_remit, n_statements, n_exc)
    return {"remittance_rows": n_remit, "statements": n_statements, "exceptions": n_exc}


def write_statements(con: duckdb.DuckDBPyConnection, month_dir: Path, params: dict) -> int:
    """One CSV per partner, rows in statement line order, numbered 1, 2, ... per partner.

    `sql/statement_lines/query.sql` gives each row as CSV text (`row_text`, from `entry` to `note`
    with its line end): the month's subscription shares, and the other rows from
    `sql/statement_other_rows` (a temp table built first). It is sorted once by (partner, statement
    order) and streamed in Arrow batches; each batch is cut where the partner changes, and each
    slice is written as one block of bytes: the line numbers joined in front of the rows by Arrow,
    then the string column's data
    buffer as it is, by one writer thread while the next batch is fetched. One sort and one pass: no
    window function, no query per partner, no CSV writer and no Python loop over rows; memory
    bounded by two batches.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    statements = month_dir / "statements"
    statements.mkdir(exist_ok=True)
    # the partners' statement numbers, and every row but the month's subscription shares (tens of
    # thousands), as temp tables: sql/statement_lines merges the shares' rows with them
    relations.build(con, "statement_partners")
    relations.build(con, "statement_other_rows", **params)
    rel = con.sql(f"select statement_partner_id, statement_no, row_text "
                  f"from ({relations.query_text('statement_lines')}) order by line_order")
    reader = rel.to_arrow_reader(STATEMENT_BATCH_ROWS)
    header = (",".join(STATEMENT_COLUMNS) + "\n").encode()
    written: dict[str, int] = {}
    state: dict = {"current": None, "fh": None}

    def write_batch(batch) -> None:
        ids = batch.column(0)
        nos = batch.column(1).to_numpy(zero_copy_only=False)
        texts = batch.column(2)
        # the batch is sorted by partner: a new slice starts wherever the partner number changes
        starts = [0, *(np.flatnonzero(nos[1:] != nos[:-1]) + 1).tolist(), batch.num_rows]
        for a, b in zip(starts, starts[1:]):
            pid = ids[a].as_py()
            if pid != state["current"]:
                if state["fh"] is not None:
                    state["fh"].close()
                if pid in written:
                    raise RuntimeError(f"statement rows of {pid} are not contiguous")
                state["current"], state["fh"] = pid, open(statements / statement_filename(pid), "wb")
                state["fh"].write(header)
                written[pid] = 0
            first = written[pid] + 1
            numbers = pa.array(np.arange(first, first + b - a, dtype=np.int64)).cast(pa.string())
            state["fh"].write(_string_data(pc.binary_join_element_wise(numbers, texts.slice(a, b - a), ",")))
            written[pid] += b - a

    # one writer thread, batches in order: DuckDB fetches the next batch while the last is written
    # (Arrow and file writes release the GIL); at most two batches are in memory
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        try:
            for batch in reader:
                if pending is not None:
                    pending.result()
                pending = writer.submit(write_batch, batch) if batch.num_rows else None
            if pending is not None:
                pending.result()
        finally:
            if pending is not None:
                pending.cancel()
                wait([pending])
            if state["fh"] is not None:
                state["fh"].close()
    pids = [r[0] for r in con.execute("select partner_id from partner_results order by partner_id").fetchall()]
    if sorted(written) != pids:
        raise RuntimeError("statements were not written for exactly the partners in partner_results")
    return len(pids)


def _string_data(arr) -> memoryview:
    """The bytes of a string array's values, end to end (no nulls here: every row has its text)."""
    import numpy as np
    import pyarrow as pa

    if arr.null_count:
        raise RuntimeError("a statement row has no text")
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width, count=len(arr) + 1, offset=arr.offset * width().itemsize)
    return memoryview(arr.buffers()[2])[int(offsets[0]):int(offsets[-1])]


#: rows per Arrow batch when streaming statements (bounds the writer's memory)
STATEMENT_BATCH_ROWS = 200_000


def _money_by(con: duckdb.DuckDBPyConnection, query: str, params: dict | None = None) -> dict[str, str]:
    return {k: v for k, v in con.execute(query, params or {}).fetchall()}


def control_totals(con: duckdb.DuckDBPyConnection, params: dict, file_rows: dict) -> dict:
    month = params["billing_month"]
    # one row per usable billing line with the partners' shares and clawbacks
    # (sql/line_totals): every per-line and per-currency control total below is read from it, and
    # so is the line_reconciliation suite (gates.run_line_suite, on this connection). A temp table:
    # written to the database file it took 5.5 s at 10M lines, as a temp table 3.4 s (2026-12-01).
    relations.build(con, "line_totals")
    con.execute(
        """create or replace temp view line_reconciliation as
           select line_id, currency, amount_minor as amount,
                  partner_share + clawed_back as partner_shares, company_share
           from line_totals"""
    )
    per_currency = con.execute(
        """
        with refs as (
            select fee_currency as currency, sum(fee_minor) as s from referral_fees
            where report_code is null group by all
        ),
        fees_by as (select currency, sum(amount_minor) as s from fees group by all),
        per_currency as (
            select currency, sum(amount_minor) as billed, sum(partner_share) as partner_share,
                   sum(company_share) as company_share,
                   sum(amount_minor) filter (where unattributed) as unattributed,
                   sum(clawed_back) as clawed_back
            from line_totals group by currency
        ),
        currencies_used as (
            select currency from per_currency union select currency from refs union select currency from fees_by
        )
        select
            u.currency,
            c.digits,
            coalesce(p.billed, 0) as billed,
            coalesce(p.partner_share, 0) as partner_share,
            coalesce(p.company_share, 0) as company_share,
            coalesce(p.unattributed, 0) as unattributed,
            coalesce(p.clawed_back, 0) as clawed_back,
            coalesce(r.s, 0) as referral_fees,
            coalesce(f.s, 0) as fees
        from currencies_used as u
        join currencies as c on c.code = u.currency
        left join per_currency as p on p.currency = u.currency
        left join refs as r on r.currency = u.currency
        left join fees_by as f on f.currency = u.currency
        order by u.currency
        """
    ).fetchall()
    by_currency = {}
    identities = []
    for cur, d, billed, share, company, unattr, claw, refs, fees in per_currency:
        fmt = lambda m: _fmt(int(m), d)  # noqa: E731
        by_currency[cur] = {
            "billed": fmt(billed), "partner_share": fmt(share), "company_share": fmt(company),
            "unattributed": fmt(unattr), "clawed_back": fmt(claw), "referral_fees": fmt(refs), "fees": fmt(fees),
        }
        identities.append(_identity(f"{cur}: partner_share + clawed_back + company_share = billed",
                                    share + claw + company, billed, d))
    # every line reconciles on its own, not only in total: no charge pays its partners more than it
    # billed, and no refund claws back more than it refunds
    (bad_lines,) = con.execute(
        """select count(*) from line_totals
           where partner_share + clawed_back + company_share <> amount_minor
              or (line_type = 'charge' and (partner_share > amount_minor or partner_share < 0))
              or (line_type <> 'charge' and (clawed_back < amount_minor or clawed_back > 0))"""
    ).fetchall()[0]
    identities.append({"name": "every line: partner shares within its amount, company share = amount - shares",
                       "holds": bad_lines == 0, "lines_failing": int(bad_lines)})

    payouts = {}
    for cur, d, opening, moves, gross, wh, net, closing, pending, n, n_paid in con.execute(
        """select payout_currency, any_value(payout_digits), sum(opening_minor),
                  sum(earnings_minor + clawbacks_minor + referral_fees_minor + fees_minor),
                  sum(gross_minor), sum(withholding_minor), sum(net_minor), sum(closing_minor), sum(pending_minor),
                  count(*), count(*) filter (where status = 'paid')
           from partner_results group by payout_currency order by payout_currency"""
    ).fetchall():
        fmt = lambda m: _fmt(int(m), d)  # noqa: E731
        (r_gross, r_wh, r_net, r_n) = con.execute(
            """select coalesce(sum(gross_minor), 0), coalesce(sum(withholding_minor), 0),
                      coalesce(sum(net_minor), 0), count(*)
               from partner_results where status = 'paid' and payout_currency = $c""", {"c": cur}
        ).fetchall()[0]
        payouts[cur] = {
            "opening": fmt(opening), "movements": fmt(moves), "gross": fmt(gross), "withholding": fmt(wh),
            "net_paid": fmt(net), "carried": fmt(closing), "pending": fmt(pending),
            "partners": int(n), "partners_paid": int(n_paid),
        }
        identities.append(_identity(f"{cur}: opening + movements - gross = carried", opening + moves - gross, closing, d))
        identities.append(_identity(f"{cur}: gross - withholding = net_paid", gross - wh, net, d))
        identities.append(_identity(f"{cur}: remittance gross = partner_balances gross_paid", r_gross, gross, d))
        identities.append({"name": f"{cur}: remittance rows = partners paid", "holds": int(r_n) == int(n_paid),
                           "lhs": int(r_n), "rhs": int(n_paid)})

    files = {}
    quarantined = dict(con.execute("select source_file, count(*) from month_quarantine group by all").fetchall())
    used = used_rows(con)
    for f in ALL_INPUTS:
        label = file_rows[f.key]["source_file"]
        read = file_rows[f.key]["read"]
        q = int(quarantined.get(label, 0))
        files[f.key] = {"read": read, "used": used[f.key], "quarantined": q}
        identities.append({"name": f"{f.key}: read = used + quarantined", "holds": read == used[f.key] + q,
                           "lhs": read, "rhs": used[f.key] + q})

    failed = [i["name"] for i in identities if not i["holds"]]
    if failed:
        raise IdentityFailed("control totals do not reconcile: " + "; ".join(failed))
    return {
        "billing_month": month,
        "program_currency": params["program_currency"],
        "by_currency": by_currency,
        "by_payout_currency": payouts,
        "files": files,
        "identities": identities,
    }


def used_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows of each file that made it into a result table, counted from those tables (not read - bad)."""
    q = lambda sql: int(con.execute(sql).fetchall()[0][0])  # noqa: E731
    billing = dict(con.execute("select source, count(*) from line_totals group by source").fetchall())
    return {
        "partners": q("select count(*) from stg_partners"),
        "partner_levels": q("select count(*) from stg_partner_levels"),
        "attributions": q("select count(*) from stg_attributions"),
        "fx_rates": q("select count(*) from stg_fx_rates"),
        "subscription_billing": int(billing.get("subscription", 0)),
        "project_billing": int(billing.get("project", 0)),
        "referral_events": q("select count(*) from referral_fees"),
        "partner_fees": q("select count(*) from fees"),
    }


def _fmt(minor: int, digits: int) -> str:
    sign = "-" if minor < 0 else ""
    m = abs(minor)
    if digits == 0:
        return f"{sign}{m}"
    return f"{sign}{m // 10**digits}.{m % 10**digits:0{digits}d}"


def _identity(name: str, lhs: int, rhs: int, digits: int) -> dict:
    return {"name": name, "holds": int(lhs) == int(rhs), "lhs": _fmt(int(lhs), digits), "rhs": _fmt(int(rhs), digits)}


def write_ledger_delta(con: duckdb.DuckDBPyConnection, params: dict, delta_dir: Path) -> None:
    """`<delta_dir>/<name>.parquet`: this month's rows of each ledger table (applied at publish).

    Parquet, not tables in the work database: written in parallel and read once by publish, so the
    month's 10M billing lines are written to a database file once (the ledger's), not twice.
    """
    m = {"m": params["billing_month"], "pc": params["program_currency"]}
    stmts = {
        "months": "select $m as billing_month, $pc as program_currency",
        "billing_lines": """select $m as billing_month, line_id, source, line_type, invoice_date, customer_id, item,
                                   currency, digits, amount_minor, source_file, row_number
                            from (select * from charge_lines union all by name select * from refunds)""",
        "charge_credits": """select $m as billing_month, line_id, credit_key, partner_id, engagement_type, credit_pct,
                                    rate, share_minor from credits""",
        "refunds": "select $m as billing_month, line_id, refers_to_line_id, amount_minor from refunds",
        # the month's credited subscription charges per partner and year, program currency: the sum of
        # tier_day_bases' day totals (each the sum of that partner's and day's credits), not a scan
        # of the month's 9M credits
        "tier_base": """select $m as billing_month, partner_id, year(invoice_date) as year,
                               sum(day_total)::decimal(38, 20) as credited_program
                        from tier_day_bases group by all""",
        "referral_events": """select $m as billing_month, event_id, partner_id, deal_id, event_type, event_date,
                                     report_code is null as paid from referral_fees""",
        "fee_ids": "select $m as billing_month, fee_id from fees",
        # only what a later month reads: movements still open at month end (pending, or held for a
        # missing rate), and settlements of movements carried in from earlier months. settled: a
        # payable or unnetted movement of a partner not held (a predicate, not a 9M-id anti-join).
        # written as the two kinds of open movement: the first filter reaches the shares' scan, and
        # the held partners (few) are a semi join; one predicate with `not in` built every share
        # movement before filtering (1.3 s against 0.2 s at 10M lines)
        "movements": """select * exclude (payable, sort_row, sort_credit, share_source) from new_movements
                         where not (payable or not netted)
                         union all
                         select * exclude (payable, sort_row, sort_credit, share_source) from new_movements
                         where (payable or not netted) and partner_id in (select partner_id from held_partners)""",
        "settlements": """select $m as billing_month, movement_id from carried_movements
                           where (payable or not netted)
                             and partner_id not in (select partner_id from held_partners)""",
        "balances": """select $m as billing_month, partner_id, payout_currency, payout_digits as digits,
                              opening_minor, closing_minor, status from partner_results""",
    }
    if delta_dir.exists():
        shutil.rmtree(delta_dir)
    delta_dir.mkdir(parents=True)
    for name, sql in stmts.items():
        bound = {k: v for k, v in m.items() if f"${k}" in sql}
        rel = con.sql(sql, params=bound or None)
        # Parquet has no 128-bit integer: money columns go as DECIMAL(38, 0), exact, and come back
        # as HUGEINT when publish inserts them into the ledger's typed tables
        cols = ", ".join(f'"{c}"::decimal(38, 0) as "{c}"' if str(t) == "HUGEINT" else f'"{c}"'
                         for c, t in zip(rel.columns, rel.types))
        t0 = time.perf_counter()
        con.execute(f"copy (select {cols} from ({sql})) to {relations.sql_literal(str(delta_dir / (name + '.parquet')))} "
                    "(format parquet)", bound)
        log.info("ledger delta %s: %.2f s", name, time.perf_counter() - t0)
