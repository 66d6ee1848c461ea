"""Text in CSV files people open: a spreadsheet must never run it as a formula.

SQL writes most files and has the same rule as macros (`safe_text` in sql/macros.sql, tested
against this one); Python writes the few others (manual_payments.csv).
"""

from __future__ import annotations

#: what a spreadsheet takes for the start of a formula (OWASP's CSV injection advice)
FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str | None) -> str | None:
    """Text a spreadsheet would run as a formula gets a leading apostrophe."""
    if value and value.startswith(FORMULA_LEAD):
        return "'" + value
    return value


def unsafe_text(value: str) -> str:
    """`safe_text` undone, for reading back what was written: exact for text that does not itself
    start with an apostrophe (ids and payment references)."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_LEAD) else value
