"""Billing months: the one `BillingMonth` type, month arithmetic, and which month an orchestrated
run computes.

Pure standard library on purpose: the Airflow DAG calls it at run time, the tests call it without
Airflow installed, and nothing here looks at the clock.

Which month a run computes, first match wins:


1. the run's ``billing_month`` Param (``YYYY-MM``), when it is given (a manual run from the
   trigger form, ``airflow dags test -c '{"billing_month": "2025-01"}'`` or a backfill's
   ``--dag-run-conf``);
2. the month of the run's ``data_interval_start``: a scheduled run fired on the 1st of a month
   covers the interval [1st of last month, 1st of this month), so this is the calendar month
   that just ended, and a backfill run gets the month of its own interval;
3. a manual run created without a logical date has no data interval; Airflow infers one from
   ``run_after`` (the last complete interval before it), and so do we: the calendar month before
   ``run_after``'s month.

``logical_date`` is never used: for a manually triggered run it is the trigger time, whose month is
the month being billed *in*, not the month being billed.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime

__all__ = ["BILLING_MONTH_PATTERN", "BillingMonth", "BillingMonthError", "add_months", "resolve_billing_month"]

#: JSON-schema ``pattern`` of the ``billing_month`` Param, and the check applied here (ASCII digits).
BILLING_MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
_MONTH_RE = re.compile(BILLING_MONTH_PATTERN)


class BillingMonthError(ValueError):
    """The billing month cannot be resolved (bad ``billing_month`` value, or nothing to go on)."""


@dataclass(frozen=True, order=True)
class BillingMonth:
    """A calendar month, `YYYY-MM` as text (`str(m)`), ordered in time."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: object) -> "BillingMonth":
        """`YYYY-MM` exactly (ASCII digits, month 01-12, nothing before or after)."""
        if not isinstance(text, str) or not _MONTH_RE.fullmatch(text):
            raise BillingMonthError(f"billing month {text!r} is not YYYY-MM")
        return cls(int(text[:4]), int(text[5:7]))

    @classmethod
    def of(cls, d: date) -> "BillingMonth":
        return cls(d.year, d.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def compact(self) -> str:
        """`YYYYMM`, as in payment references."""
        return f"{self.year:04d}{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    @property
    def days(self) -> int:
        return self.last_day.day

    def plus(self, months: int) -> "BillingMonth":
        y, m = divmod(self.year * 12 + self.month - 1 + months, 12)
        return BillingMonth(y, m + 1)

    @property
    def next(self) -> "BillingMonth":
        return self.plus(1)

    @property
    def previous(self) -> "BillingMonth":
        return self.plus(-1)


def add_months(d: date, n: int) -> date:
    """`d` plus `n` months, keeping the day of month; a day past the month's end becomes its last day
    (2025-01-31 + 1 month = 2025-02-28). The spec's rule for tenure (SQL: sql/macros.sql add_months)."""
    m = BillingMonth.of(d).plus(n)
    return date(m.year, m.month, min(d.day, m.days))


def resolve_billing_month(
    billing_month: object = None,
    data_interval_start: date | datetime | None = None,
    run_after: date | datetime | None = None,
) -> str:
    """Return the billing month (``YYYY-MM``) a run must compute.

    ``billing_month`` is the Param's value (``None`` or ``""`` when not given);
    ``data_interval_start`` and ``run_after`` come from the run's context, already in the DAG's
    timetable zone (UTC here): the calendar date they carry is used as is.

    Raises ``BillingMonthError`` with a one-line message when ``billing_month`` is not a
    ``YYYY-MM`` string, or when neither a Param, a data interval nor ``run_after`` is given.
    """
    if billing_month is not None and billing_month != "":
        if not isinstance(billing_month, str):
            raise BillingMonthError(
                f"billing_month must be a YYYY-MM string such as 2025-01, got {billing_month!r}"
            )
        if not _MONTH_RE.fullmatch(billing_month):
            raise BillingMonthError(
                f"billing_month must be YYYY-MM with a month 01-12, such as 2025-01; got {billing_month!r}"
            )
        return billing_month

    if data_interval_start is not None:
        _check_date("data_interval_start", data_interval_start)
        return str(BillingMonth.of(data_interval_start))

    if run_after is not None:
        _check_date("run_after", run_after)
        return str(BillingMonth.of(run_after).previous)

    raise BillingMonthError(
        "cannot tell which month to bill: the run has no data interval; "
        "set the billing_month parameter (YYYY-MM)"
    )


def _check_date(name: str, value: object) -> None:
    if not isinstance(value, date):  # datetime is a subclass of date
        raise BillingMonthError(f"{name} must be a date or datetime, got {value!r}")
