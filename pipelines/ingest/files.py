"""The input files of SPEC section 1: where they live, their columns, and which are required."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class InputFile:
    key: str  # table-name stem and the name used in summary.json "files"
    relpath: str  # under the data root; {month} is replaced by YYYY-MM
    columns: tuple[str, ...]  # every column the spec names, in spec order
    optional_columns: tuple[str, ...] = ()
    record_id: str = ""  # column that identifies a row in exceptions.csv
    required: bool = True  # a missing file stops the run
    # columns the header must have but no rule reads: not staged, so that the largest file's
    # staging table holds only what its checks use (rules.md says they may be blank)
    unread_columns: tuple[str, ...] = ()

    def path(self, data_dir: Path, month: str) -> Path:
        return Path(data_dir) / self.relpath.format(month=month)

    def label(self, month: str) -> str:
        return self.relpath.format(month=month)

    @property
    def export(self) -> bool:
        """A file of the month's exports (the rest is reference data, staged first)."""
        return self.relpath.startswith("exports/")

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.optional_columns)

    @property
    def staged_columns(self) -> tuple[str, ...]:
        """The columns ingest keeps as text in `raw_<key>`."""
        return tuple(c for c in self.columns if c not in self.unread_columns)


_BILLING = ("line_id", "invoice_id", "invoice_date", "customer_id")
_MONEY = ("currency", "amount", "line_type", "refers_to_line_id")

PARTNERS = InputFile(
    "partners",
    "reference/partners.csv",
    ("partner_id", "name", "payout_currency", "payout_method", "account_ref", "country",
     "withholding_tax_pct", "status", "min_payout", "bank_code", "account_type"),
    optional_columns=("min_payout", "bank_code", "account_type"),
    record_id="partner_id",
)
PARTNER_LEVELS = InputFile(
    "partner_levels", "reference/partner_levels.csv", ("partner_id", "level", "effective_from"),
    record_id="partner_id",
)
ATTRIBUTIONS = InputFile(
    "attributions",
    "reference/attributions.csv",
    ("claim_id", "customer_id", "partner_id", "source", "engagement_type", "credit_pct",
     "valid_from", "valid_to", "status"),
    record_id="claim_id",
)
FX_RATES = InputFile("fx_rates", "reference/fx_rates.csv", ("rate_date", "currency", "rate"),
                     record_id="currency")
SUBSCRIPTION_BILLING = InputFile(
    "subscription_billing",
    "exports/{month}/subscription_billing.csv",
    _BILLING + ("subscription_id", "subscription_start", "product_family") + _MONEY,
    record_id="line_id",
    unread_columns=("invoice_id", "subscription_id"),
)
PROJECT_BILLING = InputFile(
    "project_billing",
    "exports/{month}/project_billing.csv",
    _BILLING + _MONEY + ("project_id", "engagement_type", "partner_id", "contract_value",
                         "partner_contribution_pct"),
    record_id="line_id",
)
REFERRAL_EVENTS = InputFile(
    "referral_events",
    "exports/{month}/referral_events.csv",
    ("event_id", "partner_id", "customer_id", "deal_id", "event_type", "event_date",
     "first_year_contract_value", "currency"),
    record_id="event_id",
    required=False,
)
PARTNER_FEES = InputFile(
    "partner_fees",
    "exports/{month}/partner_fees.csv",
    ("fee_id", "partner_id", "fee_date", "fee_type", "currency", "amount"),
    record_id="fee_id",
    required=False,
)

ADJUSTMENTS = InputFile(
    "adjustments",
    "exports/{month}/adjustments.csv",
    ("adjustment_id", "partner_id", "currency", "amount", "reason", "entered_by"),
    record_id="adjustment_id",
    required=False,
)

# Order matters: reference data is staged first because exports are checked against it.
ALL_INPUTS: tuple[InputFile, ...] = (
    PARTNERS, PARTNER_LEVELS, ATTRIBUTIONS, FX_RATES,
    SUBSCRIPTION_BILLING, PROJECT_BILLING, REFERRAL_EVENTS, PARTNER_FEES, ADJUSTMENTS,
)
PROGRAM_RELPATH = "reference/program.yaml"
