"""ISO 4217 currency data (minor units) from the `iso4217` package, not a hand-kept table."""

from __future__ import annotations

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
