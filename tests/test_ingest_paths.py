"""The two ways ingest reads an export give the same rows, line numbers and quarantine.

Reading by lines (DuckDB's parallel CSV reader splits every line at commas and each row is numbered
by its position, once `csv_reader.scan_lines` has counted the lines) is the fast path;
`csv_reader.index_records` with DuckDB's CSV reader is the path for any file.
Hypothesis writes files with quotes, embedded commas and newlines, blank lines, CRLF, short and long
rows, and both readers must agree; the fast one must also be the one taken when a file allows it.
"""

from __future__ import annotations

import logging

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.ingest import csv_reader, load
from pipelines.rules import relations
from pipelines.ingest.files import InputFile

F = InputFile("t", "t.csv", ("a", "b", "c"), record_id="a")

FIELD = st.one_of(
    st.sampled_from(["", "x", "1.5", " id ", "=1+1", "a\x1fb", "a\rb"]),
    st.text(alphabet='ab, "\n\r', max_size=5).map(lambda s: '"' + s.replace('"', '""') + '"'),
)


# csv_reader's scans read 8 MB blocks; these files are a few bytes, so the tests also scan them in tiny
# blocks (a CRLF, a comma or a quote then falls on a block boundary)
BLOCK = st.sampled_from([csv_reader.SCAN_BLOCK, 1, 2, 3, 7])


def stage(tmp_path, text: bytes, fast: bool, block: int = csv_reader.SCAN_BLOCK):
    data = tmp_path / ("fast" if fast else "slow")
    data.mkdir()
    (data / "t.csv").write_bytes(text)
    con = duckdb.connect()
    con.execute(load.QUARANTINE_DDL)
    con.execute(load.COUNTS_DDL)
    default, csv_reader.SCAN_BLOCK = csv_reader.SCAN_BLOCK, block
    try:
        read = load.stage_file(con, F, data, "2025-01", data, by_lines=fast)
    except load.MissingInput as exc:  # e.g. a lone CR, which DuckDB's reader takes for a line end
        return "refused", str(exc)
    finally:
        csv_reader.SCAN_BLOCK = default
    rows = con.execute("select * from raw_t order by row_number").fetchall()
    quarantine = con.execute("select * from quarantine order by row_number").fetchall()
    return read, rows, quarantine


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(st.lists(FIELD, min_size=1, max_size=4).map(",".join), min_size=1, max_size=8),
    blank_line=st.booleans(),
    crlf=st.booleans(),
    trailing_newline=st.booleans(),
    block=BLOCK,
)
def test_both_readers_agree(tmp_path_factory, records, blank_line, crlf, trailing_newline, block):
    if blank_line:
        records = records[:1] + [""] + records[1:]
    nl = "\r\n" if crlf else "\n"
    text = ("a,b,c" + nl + nl.join(records) + (nl if trailing_newline else "")).encode()
    tmp = tmp_path_factory.mktemp("paths")
    assert stage(tmp, text, fast=True, block=block) == stage(tmp, text, fast=False)


class _Messages(logging.Handler):
    """The ingest log's messages while a block runs (caplog is per test, not per hypothesis example)."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.logger = logging.getLogger("pipelines.ingest")
        self.level = self.logger.level
        self.logger.addHandler(self)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)


PLAIN_FIELD = st.sampled_from(["", "x", "1.5", " id ", "=1+1", "a\x1fb", '"q"', '"a,b"', '"a""b"', '""'])


@settings(max_examples=100, deadline=None)
@given(
    # (a record of one empty field would be a blank line, which sends the file to the record index)
    records=st.lists(st.lists(PLAIN_FIELD, min_size=1, max_size=5).map(",".join).filter(bool), min_size=1,
                     max_size=12),
    crlf=st.booleans(),
    trailing_newline=st.booleans(),
    block=BLOCK,
)
def test_files_of_lines_take_the_fast_path_and_agree(tmp_path_factory, records, crlf, trailing_newline, block):
    """Malformed rows and quoted lines anywhere in a file of lines: read by lines, same result.

    Except a line (without quotes) with extra fields that are all empty: DuckDB's reader accepts it
    as if the extra commas were not there, the comma count gives it away, and the record index
    reads the file."""
    nl = "\r\n" if crlf else "\n"
    text = ("a,b,c" + nl + nl.join(records) + (nl if trailing_newline else "")).encode()
    tmp = tmp_path_factory.mktemp("lines")
    with _Messages() as handler:
        fast = stage(tmp, text, fast=True, block=block)
    fields = [r.split(",") for r in records if '"' not in r]
    lenient = any(len(f) > 3 and not any(f[3:]) for f in fields)
    assert any("read by lines" in m for m in handler.messages) == (not lenient)
    assert fast == stage(tmp, text, fast=False)


def stage_logged(tmp_path, text: bytes, caplog):
    with caplog.at_level("INFO", logger="pipelines.ingest"):
        result = stage(tmp_path, text, fast=True)
    took_fast = any("read by lines" in r.getMessage() for r in caplog.records)
    return result, took_fast


def test_crlf_line_ends_take_the_fast_path(tmp_path, caplog):
    text = b'a,b,c\r\n1,2,3\r\n4,"5,5",6\r\n7,8,9\r\n'
    assert csv_reader.scan_lines(_write(tmp_path, text)).data_lines == 3
    (read, rows, quarantine), took_fast = stage_logged(tmp_path, text, caplog)
    assert took_fast
    assert rows == [(2, "1", "2", "3"), (3, "4", "5,5", "6"), (4, "7", "8", "9")]


def test_fast_path_is_taken_and_numbers_lines(tmp_path, caplog):
    # malformed lines before and after a quoted one, and a quoted line the reader would accept as it
    # stands (no comma inside its quotes): every row keeps its physical line
    text = (b'a,b,c\nA1,x,y\nA0,short\nA2,"1,250.00",z\nA3,only-two\nA4,p,q,extra\n A5 ,,\n'
            b'A6,"q",r\nA7,s,t\n')
    scan = csv_reader.scan_lines(_write(tmp_path, text))
    assert (scan.data_lines, scan.quotes) == (8, 4)
    (read, rows, quarantine), took_fast = stage_logged(tmp_path, text, caplog)
    assert took_fast
    assert read == 8
    assert rows == [(2, "A1", "x", "y"), (4, "A2", "1,250.00", "z"), (7, " A5 ", None, None), (8, "A6", "q", "r"),
                    (9, "A7", "s", "t")]
    assert quarantine == [
        ("t.csv", 3, "A0", "malformed_row", "expected 3 fields, found 2"),
        ("t.csv", 5, "A3", "malformed_row", "expected 3 fields, found 2"),
        ("t.csv", 6, "A4", "malformed_row", "expected 3 fields, found 4"),
    ]


@pytest.mark.parametrize("text", [
    b"a,b,c\n1,2\r3,4\n",  # a lone CR
    b"a,b,c\r\n1,2,3\n4,5,6\r\n",  # CRLF and LF line ends mixed
    b"a,b,c\n1,2,3\n\n4,5,6\n",  # a blank line
    b'a,b,c\n1,"two\nlines",3\n',  # a quoted newline
    b'"a,b\nc",d\n1,2\n',  # a header that spans lines
    b"a,b,c\n1,\xff,3\n",  # not UTF-8
])
def test_files_the_fast_path_leaves_to_the_record_index(tmp_path, text, caplog):
    result, took_fast = stage_logged(tmp_path, text, caplog)
    assert not took_fast
    (tmp_path / "x").mkdir()
    assert result == stage(tmp_path / "x", text, fast=False)


def _write(tmp_path, text: bytes):
    p = tmp_path / "f.csv"
    p.write_bytes(text)
    return p


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet='a,"\n', max_size=40).map(str.encode), block=BLOCK)
def test_quote_lines_and_physical_lines_read_only_their_blocks_and_agree_with_splitting(tmp_path_factory, text, block):
    """`quote_lines` and `physical_lines` find lines from the per-block newline counts of
    `scan_lines`, reading only the blocks they need: the same answers as splitting the whole file."""
    path = tmp_path_factory.mktemp("lines") / "t.csv"
    path.write_bytes(text)
    default, csv_reader.SCAN_BLOCK = csv_reader.SCAN_BLOCK, block
    try:
        scan = csv_reader.scan_lines(path)
    finally:
        csv_reader.SCAN_BLOCK = default
    lines = text.split(b"\n")
    if text.endswith(b"\n"):
        lines.pop()  # the line end of the last line, not a line
    if scan is None:  # only a header with an odd number of quotes is refused in this alphabet
        assert lines[0].count(b'"') % 2
        return
    assert scan.data_lines == max(len(lines) - 1, 0)
    expected_quotes = [n for n, line in enumerate(lines, start=1) if n > 1 for _ in range(line.count(b'"'))]
    assert csv_reader.quote_lines(path, scan).tolist() == expected_quotes
    numbers = list(range(len(lines), 0, -1))  # every line, in an order that is not the file's
    assert csv_reader.physical_lines(path, scan, numbers) == [lines[n - 1] for n in numbers]


def test_before_exports_runs_once_between_the_reference_files_and_the_exports(tmp_path, monkeypatch):
    """engine.ingest starts Great Expectations' import here: after the reference files' small
    queries, which would wait for the GIL the import holds, and before DuckDB reads the exports."""
    from pipelines.core.program import load_program
    from pipelines.ingest.files import ALL_INPUTS
    from pipelines.rules import run as rules
    from tests import builders

    data = tmp_path / "data"
    builders.build(data, partners=[builders.partner("P1")],
                   months={"2025-03": {"subscription_billing": [builders.sub("L1", "C1", "10.00", "2025-03-02")],
                                       "project_billing": []}})
    program = load_program(data / "reference" / "program.yaml")
    params = rules.month_params(program, "2025-03", {f.key: f.label("2025-03") for f in ALL_INPUTS})
    staged: list[str] = []
    real_stage = load.stage_file

    def stage_file(con, f, *args, **kwargs):
        staged.append(f.key)
        return real_stage(con, f, *args, **kwargs)

    monkeypatch.setattr(load, "stage_file", stage_file)
    con = duckdb.connect()
    relations.install_macros(con)
    load.reference_lists(con, program)
    calls: list[list[str]] = []
    load.ingest_all(con, data, "2025-03", tmp_path, params, before_exports=lambda: calls.append(list(staged)))
    reference = ["partners", "partner_levels", "attributions", "fx_rates"]  # files.py: reference/*.csv
    assert calls == [reference]
    assert staged == [f.key for f in ALL_INPUTS]  # every file staged, each once
