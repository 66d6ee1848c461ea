"""Money: ISO 4217 minor units, the one rounding rule, and minor units to text.

Amounts are integers in minor units of their own currency (USD cents, JPY yen, KWD fils) from the
moment they are parsed; exact ratios are `Fraction`s. No binary float touches an amount.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

from iso4217 import Currency


@lru_cache(maxsize=1)
def minor_units() -> dict[str, int]:
    """Currency code -> digits after the decimal point (USD 2, JPY 0, KWD 3).

    Codes without a minor unit in ISO 4217 (gold, SDRs, testing codes) are left out, so they
    count as unknown currencies: nothing can be paid in them.
    """
    return {c.code: c.exponent for c in Currency if c.exponent is not None}


def is_currency(code: str) -> bool:
    return code in minor_units()


def round_half_away(x: Fraction | int) -> int:
    """Round to the nearest integer, halves away from zero (the spec's rule for every amount)."""
    x = Fraction(x)
    n, d = abs(x.numerator), x.denominator
    q = (2 * n + d) // (2 * d)
    return q if x >= 0 else -q


def format_minor(minor: int, digits: int) -> str:
    """Minor units as a decimal string with exactly `digits` decimals: (-3050, 2) -> '-30.50'."""
    minor = int(minor)
    sign = "-" if minor < 0 else ""
    m = abs(minor)
    if digits == 0:
        return f"{sign}{m}"
    return f"{sign}{m // 10**digits}.{m % 10**digits:0{digits}d}"


def format_amount(minor: int, currency: str) -> str:
    """Minor units of `currency` as text with exactly its ISO 4217 digits: (-3050, 'USD') -> '-30.50'."""
    return format_minor(minor, minor_units()[currency])


def format_fraction(value: Fraction, digits: int) -> str:
    """An exact amount in major units, rounded half away from zero to `digits` decimals, as text."""
    return format_minor(round_half_away(Fraction(value) * 10**digits), digits)


def to_minor(text: str, digits: int) -> int:
    """A money string in major units ('1250.00', '-30.5') as minor units; ValueError when it is not
    a plain decimal or has more decimals than the currency."""
    d = Decimal(text)
    if not d.is_finite() or -d.as_tuple().exponent > digits or "e" in text.lower():
        raise ValueError(f"{text!r} is not an amount with at most {digits} decimals")
    return int(d.scaleb(digits))
