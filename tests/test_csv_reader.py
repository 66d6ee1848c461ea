"""The record index agrees with Python's csv module (a second, independent parser) on any file."""

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.ingest import csv_reader

FIELD = st.one_of(
    st.sampled_from(["", "a", "1.5", "x y"]),
    st.text(alphabet='ab,"\n\r', max_size=6).map(lambda s: '"' + s.replace('"', '""') + '"'),
)


def oracle(text: str) -> list[tuple[int, int]]:
    """(start line, field count) of each record, from csv.reader's line_num.

    Physical lines end at LF (CRLF counts once); a lone CR inside a quoted field is not a line break.
    """
    reader = csv.reader(io.StringIO(text, newline="\n"))
    out, prev = [], 0
    for rec in reader:
        out.append((prev + 1, len(rec) if rec else 1))
        prev = reader.line_num
    return out


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(st.lists(FIELD, min_size=1, max_size=4).map(",".join), min_size=0, max_size=8),
    trailing_newline=st.booleans(),
    crlf=st.booleans(),
    chunk=st.sampled_from([1, 2, 3, 7, 64, 1 << 20]),
)
def test_index_matches_csv_module(tmp_path_factory, records, trailing_newline, crlf, chunk):
    nl = "\r\n" if crlf else "\n"
    text = "h1,h2,h3" + nl + nl.join(records) + (nl if trailing_newline and records else "")
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    path.write_bytes(text.encode())
    old = csv_reader.CHUNK
    csv_reader.CHUNK = chunk
    try:
        idx = csv_reader.index_records(path)
    finally:
        csv_reader.CHUNK = old
    expected = oracle(text)[1:]
    # csv.reader reads a blank final line after CRLF the same way; an empty record list is no data
    assert list(zip(idx.lines.tolist(), idx.fields.tolist())) == expected
    assert idx.header == ["h1", "h2", "h3"]


def test_an_unclosed_quote_names_the_line_where_it_opened(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text('a,b\n1,2\n3,"oops\n4,5\n6,"fine, quoted"\n')
    with pytest.raises(csv_reader.UnclosedQuote, match="a quoted field opened on line 3 is never closed"):
        csv_reader.index_records(p)


def test_a_lone_cr_bad_utf8_and_an_overlong_record_are_malformed_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_reader, "MAX_RECORD_BYTES", 20)
    p = tmp_path / "f.csv"
    p.write_bytes(b'a,b\r\n1,2\r\n3,x\ry\r\n4,\xff\r\n5,"q\rq"\r\n6,' + b"z" * 30 + b"\r\n7,8\r")
    idx = csv_reader.index_records(p)
    assert idx.lines.tolist() == [2, 3, 4, 5, 6, 7]
    assert idx.problem.tolist() == [0, csv_reader.STRAY_CR, csv_reader.NOT_UTF8, 0, csv_reader.TOO_LONG, 0]
