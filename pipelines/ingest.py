"""Ingest: every input file read as text, each row type-checked, bad rows quarantined (never dropped).

For each file: `raw_<key>` (all text, with the physical `row_number`), `checked_<key>` (typed, with
the first reason a row cannot be used, from `sql/checked_<key>/query.sql`), `stg_<key>` (the usable
rows) and rows appended to `quarantine`. Cross-row rules that need the ledger (line ids used in
earlier months, refunds of earlier charges) are applied later, in compute.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import duckdb
import numpy as np

from pipelines import csvio, sqlfiles
from pipelines.inputs import ALL_INPUTS, InputFile

log = logging.getLogger(__name__)

QUARANTINE_DDL = """
create table if not exists quarantine (
    source_file varchar, row_number bigint, record_id varchar, reason_code varchar, message varchar
)
"""
COUNTS_DDL = "create table if not exists file_rows (file varchar, source_file varchar, rows_read bigint)"


class MissingInput(ValueError):
    """A required file or column is missing: the run stops and nothing is written."""


def check_presence(data_dir: Path, month: str) -> None:
    """Fail fast, before any row is read, on a missing required file or column."""
    for f in ALL_INPUTS:
        path = f.path(data_dir, month)
        if not path.exists():
            if f.required:
                raise MissingInput(f"{f.label(month)}: required file is missing")
            continue
        try:
            header = csvio.read_header(path)
        except csvio.CsvError as exc:
            raise MissingInput(f"{f.label(month)}: {exc}") from None
        missing = [c for c in f.required_columns if c not in header]
        if missing:
            cols = ", ".join(repr(c) for c in missing)
            raise MissingInput(f"{f.label(month)}: required column {cols} is missing")


def stage_file(con: duckdb.DuckDBPyConnection, f: InputFile, data_dir: Path, month: str, scratch: Path) -> int:
    """Create `raw_<key>`: every well-formed record as text plus its physical line; quarantine the rest."""
    path = f.path(data_dir, month)
    label = f.label(month)
    cols = f.columns
    if not path.exists():  # an optional file that is absent holds no rows
        _empty_raw(con, f)
        con.execute("insert into file_rows values (?, ?, 0)", [f.key, label])
        return 0
    try:
        idx = csvio.index_records(path)
    except csvio.CsvError as exc:
        raise MissingInput(f"{label}: {exc}") from None
    bad = idx.malformed()
    n_bad = int(bad.sum())
    if n_bad:
        positions = np.flatnonzero(bad)
        texts = csvio.raw_records(path, idx, positions)
        id_pos = idx.header.index(f.record_id) if f.record_id in idx.header else None
        rows = []
        for pos, text in zip(positions, texts):  # the few malformed records only
            fields = next(csv.reader(io.StringIO(text)), [])
            rec_id = fields[id_pos].strip() if id_pos is not None and id_pos < len(fields) else None
            rows.append((label, int(idx.lines[pos]), rec_id or None, "malformed_row",
                         f"expected {len(idx.header)} fields, found {int(idx.fields[pos])}"))
        con.executemany("insert into quarantine values (?, ?, ?, ?, ?)", rows)
    good_lines = csvio.line_table(idx.lines[~bad])
    n_good = good_lines.num_rows
    if n_good == 0:
        _empty_raw(con, f)
    else:
        src = csvio.well_formed_copy(path, idx, bad, scratch / f"{f.key}.wellformed.csv")
        positions_of = {name: i for i, name in reversed(list(enumerate(idx.header)))}
        # Column names are positional (c0, c1, ...); the spec's names are mapped below, extras ignored.
        columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(idx.header))) + "}"
        select = ", ".join(
            f"nullif(r.c{positions_of[c]}, '') as \"{c}\"" if c in positions_of else f'null::varchar as "{c}"'
            for c in cols
        )
        # The row numbers are stored (a compressed integer column, cheap); the text itself is not
        # copied into the database: `raw_<key>` is a view over the export, read once into a temp
        # table below for the type checks and the input suites (gates.run_input_suites), which run
        # on this connection. Parsing 1 GB of CSV costs less than writing the same rows to the
        # database file; `check_sources_unchanged` refuses a month whose exports changed since.
        con.register("good_lines", good_lines)
        con.execute(f"create or replace table lines_{f.key} as select row_number from good_lines")
        con.unregister("good_lines")
        reader = (f"read_csv({sqlfiles.sql_literal(str(src.resolve()))}, header = {str(src == path).lower()}, "
                  f"columns = {columns}, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
                  "strict_mode = false, null_padding = false)")
        con.execute(f"create or replace view raw_{f.key} as select l.row_number, {select} "
                    f"from {reader} as r positional join lines_{f.key} as l")
        _record_source(con, f.key, src)
        # The type checks read it from a temp copy: a positional join scans on one thread, and the
        # checks then run in parallel on the copy (the temp table shadows the view on this connection).
        try:
            con.execute(f"create or replace temp table raw_{f.key} as select * from main.raw_{f.key}")
        except duckdb.Error as exc:  # e.g. bytes that are not UTF-8: the file cannot be read as text
            raise _unreadable(label, exc) from None
    con.execute("insert into file_rows values (?, ?, ?)", [f.key, label, n_good + n_bad])
    log.info("%s: %d rows read, %d malformed", label, n_good + n_bad, n_bad)
    return n_good + n_bad


SOURCES_DDL = "create table if not exists raw_sources (file varchar, path varchar, size bigint, mtime_ns bigint)"


def _unreadable(label: str, exc: duckdb.Error) -> MissingInput:
    first = str(exc).splitlines()[0].replace("Invalid Input Error: ", "")
    return MissingInput(f"{label}: unreadable: {first}")


def _record_source(con: duckdb.DuckDBPyConnection, key: str, src: Path) -> None:
    st = src.stat()
    con.execute(SOURCES_DDL)
    con.execute("delete from raw_sources where file = ?", [key])
    con.execute("insert into raw_sources values (?, ?, ?, ?)", [key, str(src), st.st_size, st.st_mtime_ns])


def check_sources_unchanged(con: duckdb.DuckDBPyConnection) -> None:
    """The `raw_<key>` views read the exports again: refuse if one changed since ingest."""
    con.execute(SOURCES_DDL)
    for path, size, mtime in con.execute("select path, size, mtime_ns from raw_sources order by file").fetchall():
        p = Path(path)
        st = p.stat() if p.exists() else None
        if st is None or (st.st_size, st.st_mtime_ns) != (size, mtime):
            raise MissingInput(f"{p.name} changed since it was ingested; run the month again")


def _empty_raw(con: duckdb.DuckDBPyConnection, f: InputFile) -> None:
    cols = ", ".join(f'null::varchar as "{c}"' for c in f.columns)
    con.execute(f"create or replace table raw_{f.key} as select null::bigint as row_number, {cols} limit 0")


def type_check(con: duckdb.DuckDBPyConnection, f: InputFile, month: str, params: dict) -> tuple[int, int]:
    """`checked_<key>` -> `stg_<key>` (usable rows) + quarantine; returns (used, quarantined)."""
    try:
        sqlfiles.build(con, f"checked_{f.key}", persist=True, **params)
    except duckdb.Error as exc:
        raise _unreadable(f.label(month), exc) from None
    con.execute(
        f"create or replace view stg_{f.key} as "
        f"select * exclude (reason_code, message) from checked_{f.key} where reason_code is null"
    )
    con.execute(
        f"""insert into quarantine
            select $label, row_number, cast("{f.record_id}" as varchar), reason_code, message
            from checked_{f.key} where reason_code is not null""",
        {"label": f.label(month)},
    )
    (used,) = con.execute(f"select count(*) from stg_{f.key}").fetchall()[0]
    (bad,) = con.execute(f"select count(*) from checked_{f.key} where reason_code is not null").fetchall()[0]
    return used, bad


def ingest_all(con: duckdb.DuckDBPyConnection, data_dir: Path, month: str, scratch: Path, params: dict) -> dict:
    con.execute(QUARANTINE_DDL)
    con.execute(COUNTS_DDL)
    counts = {}
    for f in ALL_INPUTS:
        read = stage_file(con, f, data_dir, month, scratch)
        used, bad = type_check(con, f, month, params)
        counts[f.key] = {"read": read, "used_after_typing": used}
        log.info("%s: %d usable after type checks, %d quarantined", f.label(month), used, bad)
    return counts
