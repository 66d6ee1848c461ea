"""The billing month an orchestrated run computes (pipelines/billing_month.py). No Airflow needed."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines.core.months import BILLING_MONTH_PATTERN, BillingMonthError, resolve_billing_month  # noqa: E402

UTC = timezone.utc


def interval_start(year: int, month: int) -> datetime:
    """data_interval_start of the partner_payouts run for a month: 06:00 UTC on its 1st."""
    return datetime(year, month, 1, 6, 0, tzinfo=UTC)


# --- scheduled runs: the month of the data interval, i.e. the calendar month just ended ----------


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (interval_start(2025, 1), "2025-01"),  # fired 2025-02-01 06:00
        (interval_start(2025, 2), "2025-02"),  # February: the short month
        (interval_start(2024, 2), "2024-02"),  # leap February
        (interval_start(2025, 12), "2025-12"),  # fired 2026-01-01: December, not January
        (interval_start(2026, 1), "2026-01"),
    ],
)
def test_scheduled_run_bills_its_data_interval_month(start, expected):
    assert resolve_billing_month(None, start) == expected


def test_scheduled_run_ignores_the_trigger_time():
    # The run fires at the interval END (2026-01-01 06:00); what it bills is the interval start.
    start = interval_start(2025, 12)
    fired = start.replace(year=2026, month=1)
    assert resolve_billing_month(None, start, run_after=fired) == "2025-12"


@pytest.mark.parametrize(
    "start",
    [
        datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC),  # last instant of a 31-day month
        datetime(2025, 1, 1, 0, 0, tzinfo=UTC),  # first instant
        datetime(2025, 1, 15),  # naive: taken as is
        date(2025, 1, 31),  # a plain date
    ],
)
def test_month_ends(start):
    assert resolve_billing_month(None, start) == "2025-01"


def test_data_interval_date_is_taken_as_given_not_converted():
    # Airflow hands the task its interval in the timetable's zone (UTC here); no conversion.
    berlin = timezone(timedelta(hours=1))
    assert resolve_billing_month(None, datetime(2025, 2, 1, 0, 30, tzinfo=berlin)) == "2025-02"


# --- backfill runs: each run gets its own interval ------------------------------------------------


def test_backfill_runs_bill_one_month_each_in_order():
    starts = [interval_start(2024, m) for m in (11, 12)] + [interval_start(2025, m) for m in (1, 2, 3)]
    assert [resolve_billing_month(None, s) for s in starts] == [
        "2024-11",
        "2024-12",
        "2025-01",
        "2025-02",
        "2025-03",
    ]


def test_backfill_with_conf_uses_the_param():
    # `airflow backfill create ... --dag-run-conf '{"billing_month": ...}'` would pin every run.
    assert resolve_billing_month("2025-01", interval_start(2025, 3)) == "2025-01"


# --- manual runs: the Param wins; without it, the data interval; without that, run_after --------


def test_manual_run_param_wins_over_data_interval():
    assert resolve_billing_month("2025-01", interval_start(2026, 10), datetime(2026, 11, 21, tzinfo=UTC)) == "2025-01"


@pytest.mark.parametrize("empty", [None, ""])
def test_manual_run_without_param_uses_data_interval(empty):
    # Airflow infers a manual run's interval as the last complete one before its logical date.
    assert resolve_billing_month(empty, interval_start(2026, 10), datetime(2026, 11, 21, 13, 0, tzinfo=UTC)) == "2026-10"


@pytest.mark.parametrize(
    ("run_after", "expected"),
    [
        (datetime(2026, 11, 21, 13, 0, tzinfo=UTC), "2026-10"),
        (datetime(2026, 1, 3, tzinfo=UTC), "2025-12"),  # January -> the December before
        (datetime(2025, 3, 31, 23, 59, tzinfo=UTC), "2025-02"),
        (date(2025, 3, 1), "2025-02"),
    ],
)
def test_manual_run_without_logical_date_uses_month_before_run_after(run_after, expected):
    assert resolve_billing_month(None, None, run_after) == expected


def test_nothing_to_go_on_is_a_clear_error():
    with pytest.raises(BillingMonthError, match="set the billing_month parameter"):
        resolve_billing_month(None, None, None)


# --- bad Param values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "2025-13",
        "2025-00",
        "2025-1",
        "25-01",
        "2025/01",
        "2025-01-01",
        " 2025-01",
        "2025-01\n",
        "January 2025",
        "२०२५-०१",  # non-ASCII digits
    ],
)
def test_bad_param_value_raises_a_clear_error(bad):
    with pytest.raises(BillingMonthError, match=r"billing_month must be YYYY-MM") as info:
        resolve_billing_month(bad, interval_start(2025, 1))
    assert repr(bad) in str(info.value)
    assert "\n" not in str(info.value).replace(repr(bad), "")  # one line


@pytest.mark.parametrize("bad", [202501, 2025.01, ["2025-01"], {"month": "2025-01"}, True])
def test_non_string_param_raises(bad):
    with pytest.raises(BillingMonthError, match="YYYY-MM string"):
        resolve_billing_month(bad, interval_start(2025, 1))


def test_bad_interval_type_raises():
    with pytest.raises(BillingMonthError, match="data_interval_start"):
        resolve_billing_month(None, "2025-01-01T06:00:00+00:00")


def test_error_is_a_value_error():
    assert issubclass(BillingMonthError, ValueError)


def test_pattern_is_json_schema_friendly_and_matches_the_function():
    import re

    assert BILLING_MONTH_PATTERN.startswith("^") and BILLING_MONTH_PATTERN.endswith("$")
    rx = re.compile(BILLING_MONTH_PATTERN)
    for month in range(1, 13):
        assert rx.match(f"2025-{month:02d}")
    assert not rx.match("2025-13")


def test_importable_without_airflow():
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name == 'airflow' or name.startswith('airflow.'):\n"
        "        raise ImportError('airflow must not be imported')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "from pipelines.core.months import resolve_billing_month\n"
        "print(resolve_billing_month('2025-01'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2025-01"
