"""`fmt_money` (sql/macros.sql) writes minor units as the amount's text with exactly the currency's
digits, on a 64-bit path below 10^14 minor units and a 128-bit one above: both are checked against
Python's exact integer arithmetic, across the boundary and at the extremes of HUGEINT."""

import duckdb
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipelines import sqlfiles

CON = duckdb.connect()
sqlfiles.install_macros(CON)
EDGE = 10**14


def expected(minor: int, digits: int) -> str:
    """The amount's text, written again with integers: sign, major units, '.', `digits` minor digits."""
    sign, m = ("-" if minor < 0 else ""), abs(minor)
    if digits == 0:
        return f"{sign}{m}"
    return f"{sign}{m // 10**digits}.{m % 10**digits:0{digits}d}"


AMOUNTS = st.one_of(
    st.integers(-10**6, 10**6),
    st.integers(EDGE - 1000, EDGE + 1000), st.integers(-EDGE - 1000, -EDGE + 1000),
    st.integers(-(10**37), 10**37),
)


@settings(max_examples=400, deadline=None)
@given(AMOUNTS, st.integers(0, 4))
@example(0, 2)
@example(-5, 2)
@example(EDGE - 1, 3)
@example(EDGE, 3)
@example(-(EDGE - 1), 1)
@example(-EDGE, 1)
@example(10**37, 4)
def test_fmt_money_matches_integer_arithmetic(minor, digits):
    (text,) = CON.execute("select fmt_money($m::hugeint, $d)", {"m": str(minor), "d": digits}).fetchall()[0]
    assert text == expected(minor, digits)
