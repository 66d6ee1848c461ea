"""The inputs of the payment files: who is paid (Payee), who pays (Payer), and the one error type.

Account numbers are sensitive: the dataclasses keep them out of their ``repr`` so that a traceback
or a log line that prints a payee never shows one; messages name the partner id and at most the
last four characters of an account (``last4``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["AchPayer", "Payee", "Payer", "PaymentFileError", "last4", "payer_from"]


class PaymentFileError(ValueError):
    """A payment file cannot be built or failed its format's check (the message names the first problem).

    Messages name partner ids and at most the last 4 characters of an account, never a full one.
    """


def last4(account: str | None) -> str:
    """The last four characters of an account, for messages (``…3000``); '' when there is none."""
    if not account:
        return ""
    compact = "".join(account.split())
    return "\u2026" + compact[-4:]


@dataclass(frozen=True)
class Payee:
    """One paid partner of the month's remittance."""

    payment_reference: str  # PO-YYYYMM-<partner_id>, the end-to-end reference
    partner_id: str
    name: str
    currency: str  # payout currency, ISO 4217
    net_minor: int  # what is sent, minor units of currency (> 0)
    payout_method: str  # 'bank_transfer' or 'paypal'
    account_ref: str = field(repr=False)  # full IBAN / account number / PayPal receiver (sensitive)
    bank_code: str | None  # BIC, or for a US account the 9-digit ABA routing number
    account_type: str | None  # 'checking' | 'savings' | None (= checking), US only
    country: str | None  # ISO 3166 alpha-2


@dataclass(frozen=True)
class AchPayer:
    """program.yaml's ``payer.ach``: the company's ACH origination details."""

    odfi_routing: str  # the company's bank (immediate destination), 9-digit ABA routing number
    company_id: str  # the company identification the bank assigned (10 characters)
    company_name: str
    immediate_origin: str | None = None  # default company_id


@dataclass(frozen=True)
class Payer:
    """program.yaml's ``payer`` block: the debtor of every bank file."""

    name: str
    iban: str | None = field(repr=False)
    bic: str | None
    accounts: Mapping[str, str] = field(repr=False)  # currency -> debtor account for that currency
    ach: AchPayer | None


def payer_from(info) -> Payer | None:
    """program.yaml's `payer` block (`pipelines.core.program.PayerInfo`, or None) as a Payer."""
    if info is None:
        return None
    ach = info.ach
    return Payer(name=info.name, iban=info.iban, bic=info.bic, accounts=dict(info.accounts),
                 ach=None if ach is None else AchPayer(odfi_routing=ach.odfi_routing, company_id=ach.company_id,
                                                      company_name=ach.company_name,
                                                      immediate_origin=ach.immediate_origin))
