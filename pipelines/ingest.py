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
import re
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


def stage_file(con: duckdb.DuckDBPyConnection, f: InputFile, data_dir: Path, month: str, scratch: Path,
               fast_max_bytes: int | None = None) -> int:
    """Create `raw_<key>` (a temp table): every well-formed record as text plus its physical line;
    quarantine the rest.

    Two readers give the same table. A file whose records are its physical lines (no carriage
    return, no blank line, no quoted newline) and no larger than `fast_max_bytes` (the memory
    budget: it is held in memory while it is split) is read by Polars on all cores and split at
    commas by DuckDB; its few lines with quotes go through the record index and DuckDB's CSV parser.
    Any other file is indexed record by record (`csvio.index_records`), streaming.
    tests/test_ingest_paths.py checks that both give the same rows and quarantine.
    """
    path = f.path(data_dir, month)
    label = f.label(month)
    if not path.exists():  # an optional file that is absent holds no rows
        _empty_raw(con, f)
        con.execute("insert into file_rows values (?, ?, 0)", [f.key, label])
        return 0
    try:
        header = csvio.read_header(path)
    except csvio.CsvError as exc:
        raise MissingInput(f"{label}: {exc}") from None
    lines = None
    if fast_max_bytes is None or path.stat().st_size <= fast_max_bytes:
        lines = csvio.read_lines(path)
    if lines is None:
        n_good, n_bad = _stage_indexed(con, f, path, label, scratch, f"raw_{f.key}")
    else:
        n_good, n_bad = _stage_lines(con, f, path, label, scratch, header, lines)
    _record_source(con, f.key, path)
    con.execute("insert into file_rows values (?, ?, ?)", [f.key, label, n_good + n_bad])
    log.info("%s: %d rows read, %d malformed (%s)", label, n_good + n_bad, n_bad,
             "indexed" if lines is None else "read by lines")
    return n_good + n_bad


def _select_columns(f: InputFile, header: list[str], field) -> str:
    """The spec's columns from a record's fields, by header position (extra columns are ignored)."""
    positions_of = {name: i for i, name in reversed(list(enumerate(header)))}
    return ", ".join(
        f"nullif({field(positions_of[c])}, '') as \"{c}\"" if c in positions_of else f'null::varchar as "{c}"'
        for c in f.columns
    )


def _malformed(label: str, header: list[str], f: InputFile, row: int, fields: list[str] | None, found: int) -> tuple:
    id_pos = header.index(f.record_id) if f.record_id in header else None
    rec_id = fields[id_pos].strip() if fields is not None and id_pos is not None and id_pos < len(fields) else None
    return (label, row, rec_id or None, "malformed_row", f"expected {len(header)} fields, found {found}")


def _stage_lines(con: duckdb.DuckDBPyConnection, f: InputFile, path: Path, label: str, scratch: Path,
                 header: list[str], lines: csvio.PhysicalLines) -> tuple[int, int]:
    """`raw_<key>` from a file's physical lines: lines without quotes split at commas (DuckDB, in
    parallel), lines with quotes parsed by the record index and DuckDB's CSV reader."""
    n = len(header)
    con.register("_plain_lines", lines.plain)
    try:
        # a line without quotes is one record, its fields the text between commas (n - 1 of them)
        bad = con.execute("select row_number, string_split(line, ',') from _plain_lines where commas <> $c "
                          "order by row_number", {"c": n - 1}).fetchall()
        select = _select_columns(f, header, lambda i: f"fields[{i + 1}]")
        con.execute(
            f"create or replace temp table raw_{f.key} as select row_number, {select} "
            "from (select row_number, string_split(line, ',') as fields from _plain_lines where commas = $c)",
            {"c": n - 1})
    except duckdb.Error as exc:
        raise _unreadable(label, exc) from None
    finally:
        con.unregister("_plain_lines")
    rows = [_malformed(label, header, f, int(r), fields, len(fields)) for r, fields in bad]  # the few malformed
    if rows:
        con.executemany("insert into quarantine values (?, ?, ?, ?, ?)", rows)
    n_good, n_bad = lines.plain.num_rows - len(rows), len(rows)
    if len(lines.quoted_rows):
        with open(path, "rb") as fh:
            head = fh.readline()
        quoted = scratch / f"{f.key}.quoted.csv"
        quoted.write_bytes(head.rstrip(b"\r\n") + b"\n" + lines.quoted_text)  # LF line ends throughout
        g, b = _stage_indexed(con, f, quoted, label, scratch, f"_quoted_{f.key}", row_of=lines.quoted_rows)
        con.execute(f"insert into raw_{f.key} select * from _quoted_{f.key}")
        con.execute(f"drop table _quoted_{f.key}")
        quoted.unlink()
        n_good, n_bad = n_good + g, n_bad + b
    return n_good, n_bad


def _stage_indexed(con: duckdb.DuckDBPyConnection, f: InputFile, path: Path, label: str, scratch: Path, target: str,
                   row_of: np.ndarray | None = None) -> tuple[int, int]:
    """Temp table `target` from any CSV file, record by record: the record index finds each record's
    physical line and field count (malformed ones are quarantined), DuckDB's CSV reader parses the
    well-formed ones, and a positional join gives each its line. `row_of` maps the file's data lines
    (line 2 onwards) to the line numbers to report (for a file of lines picked from another)."""
    try:
        idx = csvio.index_records(path)
    except csvio.CsvError as exc:
        raise MissingInput(f"{label}: {exc}") from None
    lines = idx.lines if row_of is None else row_of[idx.lines - 2]
    bad = idx.malformed()
    n_bad = int(bad.sum())
    if n_bad:
        positions = np.flatnonzero(bad)
        texts = csvio.raw_records(path, idx, positions)
        rows = [_malformed(label, idx.header, f, int(lines[pos]), next(csv.reader(io.StringIO(text, newline="")), []),
                           int(idx.fields[pos]))
                for pos, text in zip(positions, texts)]  # the few malformed records only
        con.executemany("insert into quarantine values (?, ?, ?, ?, ?)", rows)
    good_lines = csvio.line_table(lines[~bad])
    n_good = good_lines.num_rows
    if n_good == 0:
        _empty_raw(con, f, target)
        return 0, n_bad
    src = csvio.well_formed_copy(path, idx, bad, scratch / f"{f.key}.wellformed.csv")
    # Column names are positional (c0, c1, ...); the spec's names are mapped below, extras ignored.
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(idx.header))) + "}"
    select = _select_columns(f, idx.header, lambda i: f"r.c{i}")
    reader = (f"read_csv({sqlfiles.sql_literal(str(src.resolve()))}, header = {str(src == path).lower()}, "
              f"columns = {columns}, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
              "strict_mode = false, null_padding = false)")
    con.register("_good_lines", good_lines)
    try:
        # a positional join scans on one thread; the type checks then read the temp table in parallel
        con.execute(f"create or replace temp table {target} as select l.row_number, {select} "
                    f"from {reader} as r positional join _good_lines as l")
    except duckdb.Error as exc:  # e.g. bytes that are not UTF-8: the file cannot be read as text
        raise _unreadable(label, exc) from None
    finally:
        con.unregister("_good_lines")
        if src != path:
            src.unlink()
    return n_good, n_bad


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
    """The month is computed from the exports as ingested: refuse if one changed since."""
    con.execute(SOURCES_DDL)
    for path, size, mtime in con.execute("select path, size, mtime_ns from raw_sources order by file").fetchall():
        p = Path(path)
        st = p.stat() if p.exists() else None
        if st is None or (st.st_size, st.st_mtime_ns) != (size, mtime):
            raise MissingInput(f"{p.name} changed since it was ingested; run the month again")


def _empty_raw(con: duckdb.DuckDBPyConnection, f: InputFile, target: str | None = None) -> None:
    cols = ", ".join(f'null::varchar as "{c}"' for c in f.columns)
    con.execute(f"create or replace temp table {target or 'raw_' + f.key} as "
                f"select null::bigint as row_number, {cols} limit 0")


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
    # an INSERT returns the number of rows it inserted (as compute.split counts its refused rows)
    (bad,) = con.execute(
        f"""insert into quarantine
            select $label, row_number, cast("{f.record_id}" as varchar), reason_code, message
            from checked_{f.key} where reason_code is not null""",
        {"label": f.label(month)},
    ).fetchall()[0]
    (used,) = con.execute(f"select count(*) from stg_{f.key}").fetchall()[0]
    return used, int(bad)


_SHOWN_SIZE = re.compile(r"^([0-9.]+) ?(bytes|KiB|MiB|GiB|TiB|PiB)$")


def memory_limit_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """The connection's memory limit in bytes, as DuckDB enforces it (so every form DuckDB accepts
    for PAYOUTS_MEMORY_LIMIT works: 2GB, 3G, 2GiB, 80%). DuckDB shows it rounded ('1.8 GiB'), which
    is close enough for choosing a reader; 0 (stream every file) if the text is not understood."""
    (shown,) = con.execute("select current_setting('memory_limit')").fetchall()[0]
    m = _SHOWN_SIZE.match(str(shown).strip())
    if not m:
        return 0
    power = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"].index(m.group(2))
    return int(float(m.group(1)) * 1024**power)


def ingest_all(con: duckdb.DuckDBPyConnection, data_dir: Path, month: str, scratch: Path, params: dict) -> dict:
    """Stage, type-check and quarantine every input file; an export up to the memory limit is read
    by lines (`stage_file`), a larger one streams through the record index."""
    con.execute(QUARANTINE_DDL)
    con.execute(COUNTS_DDL)
    fast_max_bytes = memory_limit_bytes(con)
    counts = {}
    for f in ALL_INPUTS:
        read = stage_file(con, f, data_dir, month, scratch, fast_max_bytes)
        used, bad = type_check(con, f, month, params)
        counts[f.key] = {"read": read, "used_after_typing": used}
        log.info("%s: %d usable after type checks, %d quarantined", f.label(month), used, bad)
    return counts
