"""`csv_field` (sql/macros.sql) writes a statement's text field: formula-safe (`safe_text`'s rule) and
quoted as a CSV writer would. Checked against Python's csv module, which must read back the safe
value, and against polars' CSV writer, which wrote the statements before (quote_style
'necessary', nulls as empty fields), given the same safe values."""

import csv
import io

import duckdb
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.rules import relations

TEXT = st.one_of(st.none(), st.text(alphabet=st.sampled_from(list('ab ,"\n\r\t=+-@\'é')), max_size=8))
CON = duckdb.connect()
relations.install_macros(CON)


def formula_safe(v):
    """The spec's rule, written again: text starting with = + - @ tab or CR gets a leading apostrophe."""
    return v if v is None or v[:1] not in ("=", "+", "-", "@", "\t", "\r") else "'" + v


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=5))
def test_csv_field_reads_back_safe_and_matches_polars(values):
    fields = [CON.execute("select csv_field($s)", {"s": v}).fetchall()[0][0] for v in values]
    safe = [formula_safe(v) for v in values]
    line = ",".join(["1", *fields]) + "\n"  # a statement row starts with its line number
    # read back: a null and an empty string both read as '' (csv has no null), every other value exactly
    assert next(csv.reader(io.StringIO(line, newline=""))) == ["1", *(v or "" for v in safe)]
    frame = pl.DataFrame({"line": [1], **{f"c{i}": [v] for i, v in enumerate(safe)}},
                         schema={"line": pl.Int64, **{f"c{i}": pl.String for i in range(len(values))}})
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False, null_value="", quote_style="necessary", line_terminator="\n")
    assert line == buf.getvalue().decode()


def test_csv_field_examples():
    got = [CON.execute("select csv_field($s)", {"s": v}).fetchall()[0][0]
           for v in (None, "", "ACME", "=SUM(A1)", "a,b", 'say "hi"', "-1,5", "\rx")]
    assert got == ["", '""', "ACME", "'=SUM(A1)", '"a,b"', '"say ""hi"""', "\"'-1,5\"", "\"'\rx\""]
