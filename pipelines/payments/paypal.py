"""PayPal Payouts batch files: ``paypal_payouts_<CUR>.csv``, one (or more) per currency.

The format of PayPal's Payouts web upload: UTF-8 (here plain ASCII but for the receiver), no
header, one payout a row, columns receiver (e-mail, phone or PayPal id), amount (major units with
the currency's digits, ``.`` as the decimal point; HUF, JPY and TWD in whole units, as PayPal takes
no decimals for them), currency, customer id (the payment reference, at most 30 characters, no
spaces; ``route`` sends longer ones to manual as ``reference_unusable``) and the note to the
recipient. At most 5,000 rows a file: rows are sorted by payment reference and cut into files of
5,000, the first ``paypal_payouts_USD.csv``, then ``paypal_payouts_USD_2.csv``, ``_3`` and so on.
Not formula-escaped (SPEC section 4 is for files people open): PayPal reads the values as given.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from pipelines.core.money import format_minor, minor_units
from pipelines.payments.model import Payee, PaymentFileError
from pipelines.payments.route import FILE_PAYPAL, PAYPAL_WHOLE_UNITS, Route
from pipelines.payments.text import paypal_note, reference_problem

__all__ = ["MAX_ROWS", "paypal_amount", "paypal_documents", "paypal_file_name"]

MAX_ROWS = 5000


def paypal_file_name(currency: str, part: int) -> str:
    """``paypal_payouts_USD.csv`` for the first part, ``paypal_payouts_USD_2.csv`` for the second, …"""
    return f"paypal_payouts_{currency}.csv" if part == 1 else f"paypal_payouts_{currency}_{part}.csv"


def paypal_amount(minor: int, currency: str) -> str:
    """The amount as PayPal reads it: major units with the currency's digits (0 for HUF, JPY, TWD)."""
    digits = minor_units()[currency]
    if currency in PAYPAL_WHOLE_UNITS:
        if minor % 10**digits:
            raise PaymentFileError(f"PayPal pays {currency} in whole units; {format_minor(minor, digits)} is not")
        return str(minor // 10**digits)
    return format_minor(minor, digits)


def paypal_documents(month: str, items: Sequence[tuple[Payee, Route]]) -> dict[str, bytes]:
    """File name -> bytes for the payees routed to PayPal (no file for a currency without one)."""
    by_currency: dict[str, list[tuple[Payee, Route]]] = {}
    for payee, r in sorted(items, key=lambda item: item[0].payment_reference):
        if r.file != FILE_PAYPAL or r.account is None:
            raise PaymentFileError(f"partner {payee.partner_id}: not routed to PayPal")
        problem = reference_problem(payee.payment_reference, paypal=True)
        if problem:
            raise PaymentFileError(f"partner {payee.partner_id}: payment reference: {problem}")
        by_currency.setdefault(payee.currency, []).append((payee, r))
    out: dict[str, bytes] = {}
    for currency in sorted(by_currency):
        rows = by_currency[currency]
        for part, start in enumerate(range(0, len(rows), MAX_ROWS), 1):
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            for payee, r in rows[start : start + MAX_ROWS]:
                assert r.account is not None
                writer.writerow(
                    [
                        r.account.id,
                        paypal_amount(payee.net_minor, currency),
                        currency,
                        payee.payment_reference,
                        paypal_note(f"Partner payout {month} {payee.payment_reference}"),
                    ]
                )
            out[paypal_file_name(currency, part)] = buf.getvalue().encode("utf-8")
    return out
