"""The money and date macros of sql/macros.sql against Python's exact arithmetic. `fmt_money` writes
minor units as the amount's text with exactly the currency's digits, on a 64-bit path below 10^14
minor units and a 128-bit one above: both are checked across the boundary and at the extremes of
HUGEINT. Ingest's typing of text (`is_money`, `decimals_of`, `to_minor`, `as_date`) is checked
against Python's re, Decimal and date on well-formed and malformed text."""

import re
from datetime import date
from decimal import Decimal
from fractions import Fraction

import duckdb
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from pipelines.rules import relations

CON = duckdb.connect()
relations.install_macros(CON)
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


# credited_share: the 64-bit path (0 <= minor <= 9,000,000) and the DECIMAL(38) path, against Python
PCTS = st.integers(0, 100 * 10**4).map(lambda n: Decimal(n).scaleb(-4))  # 0..100, 4 decimals
RATES = st.integers(0, 10**6).map(lambda n: Decimal(n).scaleb(-6))  # 0..1, 6 decimals
# ingest takes at most 18 integer digits and 4 decimals (is_money): below 10^22 minor units
MINORS = st.one_of(st.integers(0, 10**4), st.integers(9_000_000 - 1000, 9_000_000 + 1000),
                   st.integers(0, 10**22 - 1), st.integers(-10**6, -1))


def expected_share(minor: int, pct: Decimal, rate: Decimal) -> int:
    """minor x pct / 100 x rate rounded half away from zero, in exact rational arithmetic."""
    x = Fraction(minor) * Fraction(pct) / 100 * Fraction(rate)
    n, d = abs(x.numerator), x.denominator
    q = (2 * n + d) // (2 * d)
    return q if x >= 0 else -q


@settings(max_examples=400, deadline=None)
@given(MINORS, PCTS, RATES)
@example(9_000_000, Decimal(100), Decimal(1))  # the 64-bit path's largest numerator
@example(9_000_001, Decimal(100), Decimal(1))  # the first amount past it
@example(9_223_373, Decimal(100), Decimal(1))  # would overflow 64 bits: must take the decimal path
@example(1, Decimal("50"), Decimal("1"))  # exactly half a minor unit: rounds up
@example(3, Decimal("50"), Decimal("0.333333"))  # just below half
@example(-1, Decimal("50"), Decimal("1"))  # a negative half: away from zero
@example(10**22 - 1, Decimal(100), Decimal(1))  # the largest amount ingest accepts
def test_credited_share_matches_rational_arithmetic(minor, pct, rate):
    (share,) = CON.execute(
        "select credited_share($m::hugeint, $p::decimal(14, 4), $r::decimal(9, 6))",
        {"m": str(minor), "p": str(pct), "r": str(rate)}).fetchall()[0]
    assert share == expected_share(minor, pct, rate)


# the typing of input text (is_money, decimals_of, to_minor, as_date), against Python's re, Decimal
# and date: the same answers for well-formed and malformed text
MONEY_TEXT = st.builds(
    lambda sign, whole, frac: f"{sign}{whole}" + ("" if frac is None else f".{frac}"),
    st.sampled_from(["", "-"]),
    st.one_of(st.integers(0, 10**6), st.integers(0, 10**18 - 1)).map(str),
    st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=4)),
)
TEXT = st.text("0123456789.-+e ,", max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.one_of(MONEY_TEXT, TEXT), st.integers(0, 4))
@example("-30.5", 2)
@example("12", 0)
@example("0.0001", 4)
@example("999999999999999999.9999", 4)
@example("1.2.3", 4)
@example("1.", 2)
@example("+1", 2)
def test_money_text_to_minor_units_matches_decimal(text, digits):
    money, decimals, minor = CON.execute(
        "select is_money($s), decimals_of($s), to_minor($s, $d)", {"s": text, "d": digits}).fetchall()[0]
    assert money == bool(re.fullmatch(r"-?[0-9]{1,18}(\.[0-9]+)?", text))
    if money:
        assert decimals == len(text.partition(".")[2])
        if decimals <= digits:
            assert minor == int(Decimal(text).scaleb(digits))


DATE_TEXT = st.one_of(
    st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(1, 9999), st.integers(0, 13), st.integers(0, 32)),
    st.text("0123456789-/ T", min_size=8, max_size=11),
)


@settings(max_examples=400, deadline=None)
@given(DATE_TEXT)
@example("2025-01-31")
@example("2025-1-31")
@example("2025/01/31")
@example(" 2025-01-31")
@example("2025-01-31 ")
@example("2024-02-29")
@example("2025-02-29")
def test_date_text_matches_python(text):
    assume(not text.startswith("0000"))  # year 0: DuckDB reads 1 BC, Python has no such date
    (parsed,) = CON.execute("select as_date($s)", {"s": text}).fetchall()[0]
    expected = None
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        try:
            expected = date.fromisoformat(text)
        except ValueError:
            pass
    assert parsed == expected
