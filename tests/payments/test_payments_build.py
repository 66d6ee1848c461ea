"""build_payment_files: PayPal splitting, manual_payments.csv, dates, input checks."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone

import pytest
from paymentcases import EXECUTION, MONTH, PAYER, RELEASED, payee

from pipelines.payments import MANUAL_FILE, PaymentFileError, build_payment_files, next_banking_day

SEPA_FR = dict(account_ref="FR1420041010050500013M02606", country="FR")


def build(payees, payer=PAYER, **kw):
    kw.setdefault("execution_date", EXECUTION)
    kw.setdefault("released_at", RELEASED)
    return build_payment_files(MONTH, payees, payer, **kw)


def test_paypal_split_at_5000_rows():
    payees = [payee(f"PP{i:05d}", "USD", 100 + i, method="paypal", account_ref=f"p{i}@example.com")
              for i in range(5001)]
    payees.append(payee("EU1", "EUR", 250, method="paypal", account_ref="eu@example.com"))
    payees.append(payee("HU1", "HUF", 150000, method="paypal", account_ref="hu@example.com"))
    b = build(list(reversed(payees)))
    assert list(b.files) == [MANUAL_FILE, "paypal_payouts_EUR.csv", "paypal_payouts_HUF.csv",
                             "paypal_payouts_USD.csv", "paypal_payouts_USD_2.csv"]
    first = b.files["paypal_payouts_USD.csv"].decode().splitlines()
    second = b.files["paypal_payouts_USD_2.csv"].decode().splitlines()
    assert len(first) == 5000 and len(second) == 1
    assert first[0] == "p0@example.com,1.00,USD,PO-202501-PP00000,Partner payout 2025-01 PO-202501-PP00000"
    assert second == ["p5000@example.com,51.00,USD,PO-202501-PP05000,Partner payout 2025-01 PO-202501-PP05000"]
    # HUF: PayPal takes no decimals; 150000 fillér = 1500 forint
    assert b.files["paypal_payouts_HUF.csv"].decode() == (
        "hu@example.com,1500,HUF,PO-202501-HU1,Partner payout 2025-01 PO-202501-HU1\n")
    # control sums: sum(100 + i for i < 5000) = 500000 + 12497500 = 12997500 cents
    assert b.summary["paypal_payouts_USD.csv"].control_sums == {"USD": "129975.00"}
    assert b.summary["paypal_payouts_USD_2.csv"].control_sums == {"USD": "51.00"}
    assert b.summary[MANUAL_FILE].count == 0
    assert b.files[MANUAL_FILE] == b"payment_reference,partner_id,payout_currency,net_amount,reason\n"


def test_manual_csv_is_formula_safe_and_sorted():
    payees = [
        payee("=HYPERLINK(1)", "EUR", 100, **SEPA_FR),  # '=' and '(' ... '=' is outside the SEPA set
        payee("@cmd", "EUR", 200, **SEPA_FR),
        payee("+1", "USD", 300, account_ref="x"),
        payee("-2", "USD", 400, account_ref="x"),
    ]
    b = build(payees, changed={"+1", "-2"})
    rows = list(csv.reader(io.StringIO(b.files[MANUAL_FILE].decode())))
    assert rows == [
        ["payment_reference", "partner_id", "payout_currency", "net_amount", "reason"],
        ["PO-202501-+1", "'+1", "USD", "3.00", "bank_details_changed"],
        ["PO-202501--2", "'-2", "USD", "4.00", "bank_details_changed"],
        ["PO-202501-=HYPERLINK(1)", "'=HYPERLINK(1)", "EUR", "1.00", "reference_unusable"],
        ["PO-202501-@cmd", "'@cmd", "EUR", "2.00", "reference_unusable"],
    ]


def test_payment_files_are_not_formula_escaped():
    b = build([payee("-5", "EUR", 100, **SEPA_FR, name="=SUM(A1)")])
    assert b"<EndToEndId>PO-202501--5</EndToEndId>" in b.files["sepa_credit_transfer.xml"]
    assert b"<Nm>SUM(A1)</Nm>" in b.files["sepa_credit_transfer.xml"]  # '=' is not in the SEPA set


def test_without_payer_only_manual_and_paypal():
    payees = [payee("S", "EUR", 100, **SEPA_FR),
              payee("P", "USD", 100, method="paypal", account_ref="a@example.com")]
    b = build(payees, payer=None)
    assert list(b.files) == [MANUAL_FILE, "paypal_payouts_USD.csv"]
    assert b.manual == {"PO-202501-S": "no_payer"}


def test_empty_release_has_only_the_manual_header():
    b = build([])
    assert list(b.files) == [MANUAL_FILE]
    assert b.totals == {}


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 1, 31), date(2025, 2, 3)),  # Friday -> Monday
        (date(2025, 2, 1), date(2025, 2, 3)),  # Saturday -> Monday
        (date(2025, 2, 2), date(2025, 2, 3)),  # Sunday -> Monday
        (date(2025, 2, 3), date(2025, 2, 4)),  # Monday -> Tuesday (strictly after)
        (date(2025, 12, 24), date(2025, 12, 25)),  # holidays are not modelled
    ],
)
def test_next_banking_day(day, expected):
    assert next_banking_day(day) == expected


def test_execution_date_checks():
    p = [payee("S", "EUR", 100, **SEPA_FR)]
    with pytest.raises(PaymentFileError, match="before the release"):
        build(p, execution_date=date(2025, 1, 31))
    with pytest.raises(PaymentFileError, match="Sunday"):
        build(p, execution_date=date(2025, 2, 2))
    # the release day itself is allowed when it is a weekday
    build(p, execution_date=date(2025, 2, 3), released_at=datetime(2025, 2, 3, 23, 59, tzinfo=timezone.utc))


@pytest.mark.parametrize(
    ("payees", "message"),
    [
        ([payee("A", "EUR", 100, **SEPA_FR), payee("A", "EUR", 200, **SEPA_FR)], "paid twice"),
        ([payee("A", "EUR", 0, **SEPA_FR)], "positive integer"),
        ([payee("A", "EUR", 1.5, **SEPA_FR)], "positive integer"),
        ([payee("A", "XYZ", 100, **SEPA_FR)], "unknown payout currency"),
        ([payee("A", "EUR", 100, month="2025-02", **SEPA_FR)], "payment reference is not PO-202501-"),
    ],
)
def test_bad_inputs_raise(payees, message):
    with pytest.raises(PaymentFileError, match=message):
        build(payees)


def test_bad_month_raises():
    with pytest.raises(PaymentFileError, match="YYYY-MM"):
        build_payment_files("2025-13", [], PAYER, execution_date=EXECUTION, released_at=RELEASED)


def test_payments_json_shape():
    b = build([payee("S", "EUR", 12345, **SEPA_FR)])
    j = b.payments_json()
    assert j["month"] == "2025-01" and j["execution_date"] == "2025-02-03"
    assert j["files"]["sepa_credit_transfer.xml"]["count"] == 1
    assert j["files"]["sepa_credit_transfer.xml"]["control_sum"] == {"EUR": "123.45"}
    assert j["files"][MANUAL_FILE] == {"count": 0, "control_sum": {},
                                       "sha256": b.summary[MANUAL_FILE].sha256}
    assert j["totals"] == {"EUR": "123.45"}
