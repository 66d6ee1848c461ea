"""The formula guard: one rule, written once in Python (core.text) and once as a SQL macro
(sql/macros.sql safe_text); both must agree on every text."""

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.core.text import safe_text, unsafe_text
from pipelines.rules import relations


@pytest.mark.parametrize("value, expected", [
    ("=1+1", "'=1+1"), ("+x", "'+x"), ("-x", "'-x"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("ok", "ok"), ("", ""), (None, None), ("'=x", "'=x"), ("a=b", "a=b"),
])
def test_safe_text(value, expected):
    assert safe_text(value) == expected


CON = duckdb.connect()
relations.install_macros(CON)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="=+-@\t\r'ab ,\"", max_size=6), max_size=20))
def test_the_sql_macro_and_python_agree_and_python_round_trips(values):
    con = CON
    got = [r[0] for r in con.execute("select safe_text(unnest($v::varchar[]))", {"v": values}).fetchall()]
    assert got == [safe_text(v) for v in values]
    # reading back is exact for text that does not itself start with an apostrophe (ids and references)
    plain = [v for v in values if not v.startswith("'")]
    assert [unsafe_text(safe_text(v)) for v in plain] == plain
