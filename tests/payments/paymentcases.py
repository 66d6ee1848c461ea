"""Shared inputs of the payment-file tests: a payer like SPEC section 3's and a payee builder."""

from __future__ import annotations

from datetime import date, datetime, timezone

from pipelines.payments import AchPayer, Payee, Payer

MONTH = "2025-01"
EXECUTION = date(2025, 2, 3)  # a Monday
RELEASED = datetime(2025, 2, 1, 9, 30, 15, 123456, tzinfo=timezone.utc)  # a Saturday, 09:30:15 UTC

ACH = AchPayer(odfi_routing="091000019", company_id="1234567890", company_name="EXAMPLE SOFTWARE")
PAYER = Payer(
    name="Example Software Inc.",
    iban="DE89370400440532013000",
    bic="COBADEFFXXX",
    accounts={"GBP": "GB33BUKB20201555555555"},
    ach=ACH,
)


def payee(
    partner_id: str,
    currency: str,
    net_minor: int,
    method: str = "bank_transfer",
    account_ref: str = "",
    bank_code: str | None = None,
    account_type: str | None = None,
    country: str | None = None,
    name: str | None = None,
    month: str = MONTH,
) -> Payee:
    return Payee(
        payment_reference=f"PO-{month.replace('-', '')}-{partner_id}",
        partner_id=partner_id,
        name=name if name is not None else f"Partner {partner_id}",
        currency=currency,
        net_minor=net_minor,
        payout_method=method,
        account_ref=account_ref,
        bank_code=bank_code,
        account_type=account_type,
        country=country,
    )
