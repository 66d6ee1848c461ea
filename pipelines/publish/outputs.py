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
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import quote

import duckdb

from pipelines.core.money import format_minor
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


def write_manifest(month_dir: Path, month: str, inputs: dict[str, dict], bank_details: dict[str, str]) -> str:
    """`manifest.json`: the sha256 and size of every other file of the month folder and of every input
    that made it, and the sha256 of each paid partner's bank details and of the payer block (release
    compares them); deterministic: sorted keys, relative paths. Returns its own sha256."""
    paths = sorted(p for p in month_dir.rglob("*") if p.is_file() and p != month_dir / MANIFEST)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        digests = list(pool.map(file_digest, paths))
    manifest = {
        "billing_month": month,
        "files": {p.relative_to(month_dir).as_posix(): d for p, d in zip(paths, digests)},
        "inputs": inputs,
        "bank_details": bank_details,
    }
    text = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (month_dir / MANIFEST).write_bytes(text)
    return hashlib.sha256(text).hexdigest()


def _copy_csv(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> int:
    """Write a query's rows as CSV: header, quotes only where needed, nulls as empty fields."""
    con.execute(f"copy ({query}) to {relations.sql_literal(str(path))} (format csv, header)")
    return int(con.execute(f"select count(*) from ({query})").fetchall()[0][0])


def write_month(con: duckdb.DuckDBPyConnection, month_dir: Path, params: dict, file_rows: dict,
                context: dict) -> dict:
    """The month's files into `month_dir` (staging); `context` carries the program and receives
    what the outputs' python relations found (the paid partners' bank details hashes)."""
    month_dir.mkdir(parents=True, exist_ok=True)
    relations.run(con, "outputs", params, context)
    n_remit = _copy_csv(con, "select * from remittance", month_dir / "remittance.csv")
    _copy_csv(con, "select * from partner_balances", month_dir / "partner_balances.csv")
    n_exc = _copy_csv(con, "select * from exceptions", month_dir / "exceptions.csv")
    t0 = time.perf_counter()
    n_statements = write_statements(con, month_dir)
    t1 = time.perf_counter()
    summary = control_totals(con, params, file_rows)
    log.info("statements %.1f s, control totals %.1f s", t1 - t0, time.perf_counter() - t1)
    (month_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("outputs: %d remittance rows, %d statements, %d exceptions", n_remit, n_statements, n_exc)
    return {"remittance_rows": n_remit, "statements": n_statements, "exceptions": n_exc}


def write_statements(con: duckdb.DuckDBPyConnection, month_dir: Path) -> int:
    """One CSV per partner, rows in statement line order, numbered 1, 2, ... per partner.

    `sql/statement_lines/query.sql` gives each row as CSV text (`row_text`, from `entry` to `note`
    with its line end): the month's subscription shares, and the other rows from
    `sql/statement_other_rows` (a temp table built first). It is sorted by (partner, statement order)
    in a few ranges of partners (`_statement_chunks`: a sort of every row with its text spills to
    disk, a range's sort fits in memory) and streamed in Arrow batches; each batch is cut where the
    partner changes, and each slice is written as one block of bytes: the line numbers joined in
    front of the rows by Arrow, then the string column's data buffer as it is, by one writer thread
    while the next batch is fetched. No window function, no CSV writer and no Python loop over rows;
    the writer's memory is bounded by two batches.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    statements = month_dir / "statements"
    statements.mkdir(exist_ok=True)
    # sql/statement_lines merges the month's subscription shares' rows with statement_other_rows
    lines = relations.query_text("statement_lines")
    chunk_query = (f"select statement_partner_id, statement_no, row_text from ({lines}) "
                   f"where statement_no between $first and $last order by line_order")

    def batches():
        for first, last in _statement_chunks(con, lines):
            yield from con.sql(chunk_query, params={"first": first, "last": last}).to_arrow_reader(STATEMENT_BATCH_ROWS)

    reader = batches()
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


def _statement_chunks(con: duckdb.DuckDBPyConnection, lines: str) -> list[tuple[int, int]]:
    """Ranges of statement_no, in order, each with at most STATEMENT_CHUNK_ROWS rows (or one partner):
    each range is sorted on its own, small enough to sort in memory, where one sort of the month's
    rows with their text spills to disk."""
    chunks: list[tuple[int, int]] = []
    first, rows = None, 0
    for no, n in con.execute(f"select statement_no, count(*) from ({lines}) group by 1 order by 1").fetchall():
        if first is not None and rows + n > STATEMENT_CHUNK_ROWS:
            chunks.append((first, last))
            first, rows = None, 0
        if first is None:
            first = no
        last, rows = no, rows + n
    if first is not None:
        chunks.append((first, last))
    return chunks


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
#: rows per sorted range of statements (bounds the sort's memory: at most a few hundred MB of row
#: text under the default 2 GB limit). each range joins the month's shares again, so fewer, larger
#: ranges are faster until a range's sort no longer fits in memory (benchmarks/results.md)
STATEMENT_CHUNK_ROWS = 3_000_000


def _money_by(con: duckdb.DuckDBPyConnection, query: str, params: dict | None = None) -> dict[str, str]:
    return {k: v for k, v in con.execute(query, params or {}).fetchall()}


def control_totals(con: duckdb.DuckDBPyConnection, params: dict, file_rows: dict) -> dict:
    month = params["billing_month"]
    # line_totals (sql/line_totals, built with the outputs) totals the usable billing lines with the
    # partners' shares and clawbacks per currency and source: the per-currency totals and identities
    # are read from it
    by_currency = {}
    identities = []
    for cur, d, billed, share, company, unattr, claw, refs, fees, adjustments in con.execute(
            relations.query_text("control_totals_by_currency")).fetchall():
        fmt = lambda m: format_minor(int(m), d)  # noqa: E731
        by_currency[cur] = {
            "billed": fmt(billed), "partner_share": fmt(share), "company_share": fmt(company),
            "unattributed": fmt(unattr), "clawed_back": fmt(claw), "referral_fees": fmt(refs), "fees": fmt(fees),
            "adjustments": fmt(adjustments),
        }
        identities.append(_identity(f"{cur}: partner_share + clawed_back + company_share = billed",
                                    share + claw + company, billed, d))
    # every line reconciles on its own, not only in total
    (bad_lines,) = con.execute(relations.query_text("line_identity_failures")).fetchall()[0]
    identities.append({"name": "every line: partner shares within its amount, company share = amount - shares",
                       "holds": bad_lines == 0, "lines_failing": int(bad_lines)})

    payouts = {}
    for (cur, d, opening, moves, gross, wh, net, closing, pending, n, n_paid, r_gross, r_n) in con.execute(
            relations.query_text("control_totals_by_payout_currency")).fetchall():
        fmt = lambda m: format_minor(int(m), d)  # noqa: E731
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

    restatement = [
        {"partner_id": pid, "locked_month": locked, "currency": cur, "difference": format_minor(diff, d),
         "posted": bool(posted)}
        for pid, locked, cur, d, diff, posted in con.execute(
            """select partner_id, locked_month, currency, digits, difference_minor, posted
               from restatement_differences order by partner_id, locked_month, currency""").fetchall()]

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
        "restatement": restatement,
    }


def used_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows of each file that made it into a result table, counted from those tables (not read - bad)."""
    q = lambda sql: int(con.execute(sql).fetchall()[0][0])  # noqa: E731
    billing = dict(con.execute("select source, sum(lines) from line_totals group by source").fetchall())
    return {
        "partners": q("select count(*) from partners"),
        "partner_levels": q("select count(*) from partner_levels"),
        "attributions": q("select count(*) from attributions"),
        "fx_rates": q("select count(*) from fx_rates"),
        "subscription_billing": int(billing.get("subscription", 0)),
        "project_billing": int(billing.get("project", 0)),
        "referral_events": q("select count(*) from referral_fees"),
        "partner_fees": q("select count(*) from fees"),
        "adjustments": q("select count(*) from month_adjustments"),
    }


def _identity(name: str, lhs: int, rhs: int, digits: int) -> dict:
    return {"name": name, "holds": int(lhs) == int(rhs), "lhs": format_minor(lhs, digits),
            "rhs": format_minor(rhs, digits)}
