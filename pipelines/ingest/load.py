"""Ingest: every input file read as text, each row type-checked, bad rows quarantined (never dropped).

For each file: `raw_<key>` (all text, with the physical `row_number`), `<key>_checked` (typed, with
the first reason a row cannot be used, from `sql/<key>_checked/query.sql`), `<key>` (the usable
rows) and rows appended to `quarantine`. Cross-row rules that need the ledger (line ids used in
earlier months, refunds of earlier charges) are applied later, in compute.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from pipelines.ingest import csv_reader
from pipelines.rules import relations
from pipelines.core.money import minor_units
from pipelines.ingest.files import ALL_INPUTS, InputFile

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
            header = csv_reader.read_header(path)
        except csv_reader.CsvError as exc:
            raise MissingInput(f"{f.label(month)}: {exc}") from None
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:
            raise MissingInput(f"{f.label(month)}: column {twice[0]!r} is named twice in the header")
        missing = [c for c in f.required_columns if c not in header]
        if missing:
            cols = ", ".join(repr(c) for c in missing)
            raise MissingInput(f"{f.label(month)}: required column {cols} is missing")


def stage_file(con: duckdb.DuckDBPyConnection, f: InputFile, data_dir: Path, month: str, scratch: Path,
               by_lines: bool = True) -> int:
    """Create `raw_<key>` (a temp view): every well-formed record as text plus its physical line;
    quarantine the rest.

    Two readers give the same rows. A file whose records are its physical lines (no lone carriage
    return, no blank line, no quoted newline) is read by DuckDB's CSV reader on all cores, split at
    commas, each row numbered by its position (`_stage_by_lines`); its few lines with quotes go
    through the record index. Any other file (or any file when `by_lines` is false) is indexed
    record by record (`csv_reader.index_records`), streaming. tests/test_ingest_paths.py checks that
    both give the same rows and quarantine.
    """
    path = f.path(data_dir, month)
    label = f.label(month)
    _drop_relation(con, f"raw_{f.key}")
    if not path.exists():  # an optional file that is absent holds no rows
        _empty_raw(con, f)
        con.execute("insert into file_rows values (?, ?, 0)", [f.key, label])
        return 0
    try:
        header = csv_reader.read_header(path)
    except csv_reader.CsvError as exc:
        raise MissingInput(f"{label}: {exc}") from None
    counted = _stage_by_lines(con, f, path, label, scratch, header) if by_lines else None
    if counted is None:
        n_good, n_bad = _stage_indexed(con, f, path, label, scratch, f"raw_{f.key}")
    else:
        n_good, n_bad = counted
    _record_source(con, f.key, path)
    con.execute("insert into file_rows values (?, ?, ?)", [f.key, label, n_good + n_bad])
    log.info("%s: %d rows read, %d malformed (%s)", label, n_good + n_bad, n_bad,
             "indexed" if counted is None else "read by lines")
    return n_good + n_bad


def _drop_relation(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a table or view of this name (DROP VIEW refuses a table and DROP TABLE a view)."""
    for (kind,) in con.execute(
        "select 'view' from duckdb_views() where view_name = $n and temporary "
        "union all select 'table' from duckdb_tables() where table_name = $n and temporary", {"n": name}
    ).fetchall():
        con.execute(f"drop {kind} {name}")

def _select_columns(f: InputFile, header: list[str], field) -> str:
    """The spec's staged columns from a record's fields, by header position (extra and unread columns
    are not kept)."""
    positions_of = {name: i for i, name in reversed(list(enumerate(header)))}
    return ", ".join(
        f"nullif({field(positions_of[c])}, '') as \"{c}\"" if c in positions_of else f'null::varchar as "{c}"'
        for c in f.staged_columns
    )


def _malformed(label: str, header: list[str], f: InputFile, row: int, fields: list[str] | None, message: str) -> tuple:
    """A quarantine row for a record that cannot be parsed. Its fields may be shifted, so the value
    at the id column's position may be any column's: partners.csv's malformed rows name no record id
    (it could be an account_ref); other files give the value there (docs/rules.md)."""
    id_pos = header.index(f.record_id) if f.record_id in header and f.key != "partners" else None
    rec_id = fields[id_pos].strip() if fields is not None and id_pos is not None and id_pos < len(fields) else None
    return (label, row, rec_id or None, "malformed_row", message)


_COLUMN_COUNT_ERRORS = {"MISSING COLUMNS", "TOO MANY COLUMNS"}


def _read_lines(con: duckdb.DuckDBPyConnection, f: InputFile, path: Path, header: list[str]
                ) -> tuple[list[tuple] | None, int]:
    """Temp table `_lines_<key>`: DuckDB's CSV reader, quoting off, splits every line of `path` at
    commas (in parallel, in file order); lines with another number of fields are rejected.
    Returns the rejections as (line, all of them a count of fields, the line's text), by line, and
    the number of rows accepted; (None, 0) when the reader failed."""
    lines, rejects = f"_lines_{f.key}", f"_rejects_{f.key}"
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
    select = _select_columns(f, header, lambda i: f"c{i}")
    try:
        con.execute(
            f"create or replace temp table {lines} as select {select} "
            f"from read_csv($path, header = true, columns = {columns}, auto_detect = false, delim = ',', "
            "quote = '', escape = '', strict_mode = true, null_padding = false, "
            f"ignore_errors = true, store_rejects = true, rejects_table = '{rejects}', "
            f"rejects_scan = '{rejects}_scan')",
            {"path": str(path)})
        rejected = con.execute(
            f"select line, bool_and(list_contains($ok, error_type)), any_value(csv_line) from {rejects} "
            "group by line order by line",
            {"ok": sorted(_COLUMN_COUNT_ERRORS)}).fetchall()
        (accepted,) = con.execute(f"select count(*) from {lines}").fetchall()[0]
    except duckdb.Error:  # e.g. a line longer than the reader's buffer: the record index copes
        rejected, accepted = None, 0
    finally:
        for t in (rejects, f"{rejects}_scan"):
            _drop_relation(con, t)
    return rejected, accepted


def _stage_by_lines(con: duckdb.DuckDBPyConnection, f: InputFile, path: Path, label: str, scratch: Path,
                    header: list[str]) -> tuple[int, int] | None:
    """`raw_<key>` when the file's records are its physical lines; None (nothing created) otherwise.

    DuckDB's parallel CSV reader, with quoting off, splits every line at commas into `_lines_<key>`
    (a temp table, in file order) and rejects lines with the wrong number of fields, naming their
    line. Its rows are the file's lines when there are as many as `csv_reader.scan_lines` counted (a
    blank line, which the reader skips, would make them fewer), and when they hold as many commas
    (the reader also accepts a line with extra empty fields at its end). Then accepted row `rowid`
    is line `rowid + 2` plus the rejected lines before it. The lines that hold a quote (at most
    `MAX_QUOTED_LINES`, each with an even number of quotes, else None) are parsed by the record
    index instead, and `raw_<key>` is a view over both.
    """
    # the scan runs beside the reader, not before it: DuckDB's reader releases the GIL, and the scan's
    # numpy calls, which hold it, would otherwise take turns with Great Expectations' import in the
    # background (the first seconds of a run used one core of two; docs/performance.md)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="line-scan") as pool:
        scanning = pool.submit(csv_reader.scan_lines, path)
        rejected, accepted = _read_lines(con, f, path, header)
        scan = scanning.result()
    lines = f"_lines_{f.key}"

    def give_up() -> None:
        _drop_relation(con, lines)

    if scan is None:  # not one record per line: the reader's rows are not used
        return give_up()
    # every rejection a count of fields (not e.g. bytes that are not UTF-8), every line a row or a rejection
    if rejected is None or not all(ok for _, ok, _ in rejected) or accepted + len(rejected) != scan.data_lines:
        return give_up()
    reject_lines = np.array([int(line) for line, _, _ in rejected], dtype=np.int64)
    quoted = np.zeros(0, dtype=np.int64)
    if scan.quotes:
        quoted, quote_count = np.unique(csv_reader.quote_lines(path, scan), return_counts=True)
        if len(quoted) > csv_reader.MAX_QUOTED_LINES or (quote_count % 2).any():
            return give_up()  # quoted throughout, or a quoted field that holds a newline
    if len(reject_lines) and not (reject_lines.min() >= 2 and reject_lines.max() <= scan.data_lines + 1):
        return give_up()  # a line number that is not a data line of the file
    read_again = np.union1d(reject_lines, quoted).astype(np.int64)  # the few lines whose text is needed
    texts = dict(zip(read_again.tolist(), csv_reader.physical_lines(path, scan, read_again)))
    # the reader's line numbers, checked against the file (its text of a line may carry the line end before it)
    if any(texts[line].decode("utf-8", "replace") != text.strip("\r\n") for line, _, text in rejected):
        return give_up()
    accepted_quoted = quoted[~np.isin(quoted, reject_lines)]
    # each accepted row other than a quoted one holds exactly len(header) - 1 commas
    commas = (len(header) - 1) * (accepted - len(accepted_quoted)) + sum(t.count(b",") for t in texts.values())
    if commas != scan.commas:
        return give_up()

    is_quoted = set(quoted.tolist())
    malformed = [line for line in reject_lines.tolist() if line not in is_quoted]
    rows = [_malformed(label, header, f, line, fields, f"expected {len(header)} fields, found {len(fields)}")
            for line in malformed for fields in [texts[line].decode("utf-8", "replace").split(",")]]
    if rows:
        con.executemany("insert into quarantine values (?, ?, ?, ?, ?)", rows)
    n_good, n_bad = accepted - len(accepted_quoted), len(rows)
    # accepted row p is line p + 2 + the rejected lines before it: the k-th rejected line (0-based)
    # comes after p = line - 2 - k accepted rows
    row_number = "rowid + 2"
    if len(reject_lines):
        after = reject_lines - 2 - np.arange(len(reject_lines))
        con.execute(f"create or replace temp table {lines}_gaps as select unnest($after::bigint[]) as after",
                    {"after": after.tolist()})
        row_number += f" + len(list_filter((select list(after) from {lines}_gaps), lambda x: x <= rowid))"
    view = f"select {row_number} as row_number, * from {lines}"
    if len(quoted):
        positions = accepted_quoted - 2 - np.searchsorted(reject_lines, accepted_quoted)
        con.execute(f"delete from {lines} where rowid in (select unnest($p::bigint[]))", {"p": positions.tolist()})
        again = scratch / f"{f.key}.quoted.csv"
        with open(path, "rb") as fh:
            head = fh.readline()
        # LF line ends throughout
        again.write_bytes(head.rstrip(b"\r\n") + b"\n" + b"".join(texts[line] + b"\n" for line in quoted.tolist()))
        g, b = _stage_indexed(con, f, again, label, scratch, f"_quoted_{f.key}", row_of=quoted)
        again.unlink()
        n_good, n_bad = n_good + g, n_bad + b
        view += f" union all select * from _quoted_{f.key}"
    con.execute(f"create temp view raw_{f.key} as {view}")
    return n_good, n_bad


def _stage_indexed(con: duckdb.DuckDBPyConnection, f: InputFile, path: Path, label: str, scratch: Path, target: str,
                   row_of: np.ndarray | None = None) -> tuple[int, int]:
    """Temp table `target` from any CSV file, record by record: the record index finds each record's
    physical line and field count (malformed ones are quarantined), DuckDB's CSV reader parses the
    well-formed ones, and a positional join gives each its line. `row_of` maps the file's data lines
    (line 2 onwards) to the line numbers to report (for a file of lines picked from another)."""
    try:
        idx = csv_reader.index_records(path)
    except csv_reader.CsvError as exc:
        raise MissingInput(f"{label}: {exc}") from None
    lines = idx.lines if row_of is None else row_of[idx.lines - 2]
    bad = idx.malformed()
    n_bad = int(bad.sum())
    if n_bad:
        positions = np.flatnonzero(bad)
        texts = csv_reader.raw_records(path, idx, positions)
        rows = [_malformed(label, idx.header, f, int(lines[pos]), next(csv.reader(io.StringIO(text, newline="")), []),
                           idx.problem_message(int(pos)))
                for pos, text in zip(positions, texts)]  # the few malformed records only
        con.executemany("insert into quarantine values (?, ?, ?, ?, ?)", rows)
    good_lines = csv_reader.line_table(lines[~bad])
    n_good = good_lines.num_rows
    if n_good == 0:
        _empty_raw(con, f, target)
        return 0, n_bad
    src = csv_reader.well_formed_copy(path, idx, bad, scratch / f"{f.key}.wellformed.csv")
    # Column names are positional (c0, c1, ...); the spec's names are mapped below, extras ignored.
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(idx.header))) + "}"
    select = _select_columns(f, idx.header, lambda i: f"r.c{i}")
    reader = (f"read_csv({relations.sql_literal(str(src.resolve()))}, header = {str(src == path).lower()}, "
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
    cols = ", ".join(f'null::varchar as "{c}"' for c in f.staged_columns)
    con.execute(f"create or replace temp table {target or 'raw_' + f.key} as "
                f"select null::bigint as row_number, {cols} limit 0")


def reference_lists(con: duckdb.DuckDBPyConnection, program) -> None:
    """The tables the type checks look codes up in: `currencies` (ISO 4217 with minor digits) and
    `product_families` (the rate card's keys)."""
    digits = minor_units()
    # list parameters, not an Arrow table from Python lists: pyarrow imports pandas for that, and
    # this thread would wait seconds for it while Great Expectations is imported in the background
    con.execute("create or replace table currencies as select unnest($codes::varchar[]) as code, "
                "unnest($digits::integer[]) as digits", {"codes": list(digits), "digits": list(digits.values())})
    con.execute("create or replace table product_families as select unnest($f::varchar[]) as product_family",
                {"f": program.product_families()})


def ingest_all(con: duckdb.DuckDBPyConnection, data_dir: Path, month: str, scratch: Path, params: dict,
               before_exports: Callable[[], None] | None = None) -> dict:
    """Read every input file (`stage_file`), then build the relations declared with `step: ingest`:
    each file's `<key>_checked` types every row and quarantines what cannot be used.
    `before_exports` is called once the reference files are staged, before the month's exports."""
    con.execute(QUARANTINE_DDL)
    con.execute(COUNTS_DDL)
    read = {}
    for f in ALL_INPUTS:
        if f.export and before_exports is not None:
            before_exports()
            before_exports = None
        read[f.key] = stage_file(con, f, data_dir, month, scratch)
    try:
        relations.run(con, "ingest", params)
    except relations.RelationFailed as exc:
        key = exc.name.removesuffix("_checked")
        label = next((f.label(month) for f in ALL_INPUTS if f.key == key), exc.name)
        raise MissingInput(f"{label}: unreadable: {exc.reason}") from None
    return read


def repeated_line_hashes(con: duckdb.DuckDBPyConnection, params: dict, context: dict) -> int:
    """sql/repeated_line_hashes: hash(line_id) of every line id that occurs more than once in the two
    billing exports as read (a line id repeated in one file is repeated in both together). DuckDB
    hashes the ids and sorts the 64-bit hashes on every core; numpy keeps the repeated ones (the array
    is 8 bytes a line, outside DuckDB's memory limit). sql/line_conflicts looks only at these."""
    hashes = con.execute(
        "select hash(line_id) as h "
        "from (select line_id from raw_subscription_billing union all select line_id from raw_project_billing) "
        "where line_id is not null order by h").fetchnumpy()["h"]
    values = np.ascontiguousarray(hashes, dtype=np.uint64)
    repeated = np.unique(values[1:][values[1:] == values[:-1]])
    con.register("_repeated", pa.table({"h": pa.Array.from_buffers(pa.uint64(), len(repeated),
                                                                    [None, pa.py_buffer(repeated)])}))
    try:
        con.execute("create or replace table repeated_line_hashes as select h from _repeated")
    finally:
        con.unregister("_repeated")
    return len(repeated)
