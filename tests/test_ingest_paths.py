"""The two ways ingest reads an export give the same rows, line numbers and quarantine.

`csvio.read_lines` (Polars splits the file at newlines on all cores; DuckDB splits unquoted lines at
commas) is the fast path; `csvio.index_records` with DuckDB's CSV reader is the path for any file.
Hypothesis writes files with quotes, embedded commas and newlines, blank lines, CRLF, short and long
rows, and both readers must agree; the fast one must also be the one taken when a file allows it.
"""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import csvio, ingest
from pipelines.inputs import InputFile

F = InputFile("t", "t.csv", ("a", "b", "c"), record_id="a")

FIELD = st.one_of(
    st.sampled_from(["", "x", "1.5", " id ", "=1+1", "a\x1fb", "a\rb"]),
    st.text(alphabet='ab, "\n\r', max_size=5).map(lambda s: '"' + s.replace('"', '""') + '"'),
)


def stage(tmp_path, text: bytes, fast: bool):
    data = tmp_path / ("fast" if fast else "slow")
    data.mkdir()
    (data / "t.csv").write_bytes(text)
    con = duckdb.connect()
    con.execute(ingest.QUARANTINE_DDL)
    con.execute(ingest.COUNTS_DDL)
    try:
        read = ingest.stage_file(con, F, data, "2025-01", data, fast_max_bytes=None if fast else 0)
    except ingest.MissingInput as exc:  # e.g. a lone CR, which DuckDB's reader takes for a line end
        return "refused", str(exc)
    rows = con.execute("select * from raw_t order by row_number").fetchall()
    quarantine = con.execute("select * from quarantine order by row_number").fetchall()
    return read, rows, quarantine


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(st.lists(FIELD, min_size=1, max_size=4).map(",".join), min_size=1, max_size=8),
    blank_line=st.booleans(),
    crlf=st.booleans(),
    trailing_newline=st.booleans(),
)
def test_both_readers_agree(tmp_path_factory, records, blank_line, crlf, trailing_newline):
    if blank_line:
        records = records[:1] + [""] + records[1:]
    nl = "\r\n" if crlf else "\n"
    text = ("a,b,c" + nl + nl.join(records) + (nl if trailing_newline else "")).encode()
    tmp = tmp_path_factory.mktemp("paths")
    assert stage(tmp, text, fast=True) == stage(tmp, text, fast=False)


def test_crlf_line_ends_take_the_fast_path(tmp_path):
    text = b'a,b,c\r\n1,2,3\r\n4,"5,5",6\r\n7,8,9\r\n'
    lines = csvio.read_lines(_write(tmp_path, text))
    assert lines is not None and lines.quoted_rows.tolist() == [3]
    assert stage(tmp_path, text, fast=True)[1] == [(2, "1", "2", "3"), (3, "4", "5,5", "6"), (4, "7", "8", "9")]


def test_fast_path_is_taken_and_numbers_lines(tmp_path):
    text = b'a,b,c\nA1,x,y\nA2,"1,250.00",z\nA3,only-two\nA4,p,q,extra\n A5 ,,\n'
    lines = csvio.read_lines(_write(tmp_path, text))
    assert lines is not None
    assert lines.plain.column("row_number").to_pylist() == [2, 4, 5, 6]
    assert lines.quoted_rows.tolist() == [3]
    read, rows, quarantine = stage(tmp_path, text, fast=True)
    assert read == 5
    assert rows == [(2, "A1", "x", "y"), (3, "A2", "1,250.00", "z"), (6, " A5 ", None, None)]
    assert quarantine == [
        ("t.csv", 4, "A3", "malformed_row", "expected 3 fields, found 2"),
        ("t.csv", 5, "A4", "malformed_row", "expected 3 fields, found 4"),
    ]


@pytest.mark.parametrize("text", [
    b"a,b,c\n1,2\r3,4\n",  # a lone CR
    b"a,b,c\n1,2,3\n\n4,5,6\n",  # a blank line
    b'a,b,c\n1,"two\nlines",3\n',  # a quoted newline
    b"a,b,c\n",  # no data
    b"a,b,c\n1,\xff,3\n",  # not UTF-8
    b"a,b,c\n1,2,3\n4,5\x1f,6\n",  # the byte the line reader splits on
])
def test_files_the_fast_path_leaves_to_the_record_index(tmp_path, text):
    assert csvio.read_lines(_write(tmp_path, text)) is None


def _write(tmp_path, text: bytes):
    p = tmp_path / "f.csv"
    p.write_bytes(text)
    return p


@pytest.mark.parametrize("limit, low, high", [
    ("2GB", 1.9e9, 2.0e9),  # DuckDB shows 1.8 GiB
    ("2GiB", 2**31 - 1, 2**31 + 1),
    ("3G", 2.8e9, 3.0e9),
    ("512MB", 5.0e8, 5.2e8),
])
def test_memory_limit_is_read_as_duckdb_enforces_it(limit, low, high):
    con = duckdb.connect(config={"memory_limit": limit})
    assert low <= ingest.memory_limit_bytes(con) <= high
    assert con.execute("select 1").fetchall() == [(1,)]  # the connection is free for the next step


def test_a_percentage_memory_limit_is_understood():
    con = duckdb.connect(config={"memory_limit": "50%"})
    assert ingest.memory_limit_bytes(con) > 0
