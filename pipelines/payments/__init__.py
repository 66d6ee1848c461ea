"""Payment files: this package owns the bank and PayPal files that pay an approved month's remittance
(SPEC section 8) — which file each paid partner lands in or why it is paid by hand, the ISO 20022
pain.001.001.09 SEPA and international credit transfers, the NACHA ACH credit file, the PayPal
Payouts batch files and manual_payments.csv, each checked against its format's rules before its
bytes are returned; it is a pure library (no clock, files or logging) that imports nothing from
``pipelines`` but ``pipelines.core``.
"""

from __future__ import annotations

from pipelines.payments.build import (
    MANUAL_FILE,
    FileSummary,
    PaymentBatch,
    build_payment_files,
    next_banking_day,
)
from pipelines.payments.model import AchPayer, Payee, Payer, PaymentFileError
from pipelines.payments.route import (
    MANUAL_REASONS,
    Route,
    details_hash,
    payer_hash,
    route,
)

__all__ = [
    "MANUAL_FILE",
    "MANUAL_REASONS",
    "AchPayer",
    "FileSummary",
    "Payee",
    "Payer",
    "PaymentBatch",
    "PaymentFileError",
    "Route",
    "build_payment_files",
    "details_hash",
    "next_banking_day",
    "payer_hash",
    "route",
]
