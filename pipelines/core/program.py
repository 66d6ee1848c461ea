"""program.yaml: the rate card and payout rules, validated strictly before any export is read.

Numbers are read as `Decimal` straight from the YAML text (never through a binary float), and any
unknown key, rate outside [0, 1], unsorted or overlapping band or tier step, or version without
`effective_from` stops the run with a message that names the key.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.core.money import minor_units

ENGAGEMENT_TYPES = ("partner_led", "company_led", "joint")
LEVELS = ("registered", "certified", "strategic")

Rate = Annotated[Decimal, Field(ge=0, le=1, description="a fraction in [0, 1]")]
Money = Annotated[Decimal, Field(ge=0)]


class ProgramError(ValueError):
    """program.yaml is missing, unreadable or breaks a rule; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProgramInfo(_Strict):
    name: str
    currency: str

    @field_validator("currency")
    @classmethod
    def _iso(cls, v: str) -> str:
        if v not in minor_units():
            raise ValueError(f"{v!r} is not an ISO 4217 currency code")
        return v


class EngagementRates(_Strict):
    partner_led: Rate
    company_led: Rate
    joint: Rate


class LevelUplift(_Strict):
    registered: Rate
    certified: Rate
    strategic: Rate


class SubscriptionTerms(_Strict):
    base_rates: dict[str, EngagementRates] = Field(min_length=1)
    level_uplift: LevelUplift
    after_first_year_uplift: Rate = Decimal(0)
    max_months: Annotated[int, Field(gt=0)] | None = None


class Band(_Strict):
    up_to: Annotated[Decimal, Field(gt=0)] | None
    rate: Rate


class ProjectTerms(_Strict):
    partner_led_bands: list[Band] = Field(min_length=1)
    company_led_rate: Rate

    @field_validator("partner_led_bands")
    @classmethod
    def _sorted_bands(cls, bands: list[Band]) -> list[Band]:
        bounds = [b.up_to for b in bands]
        if any(b is None for b in bounds[:-1]):
            raise ValueError("only the last band may have up_to: null (bands overlap)")
        finite = [b for b in bounds if b is not None]
        if any(a >= b for a, b in zip(finite, finite[1:])):
            raise ValueError("bands must be sorted by up_to, strictly increasing (unsorted or overlapping)")
        if bounds[-1] is not None:
            raise ValueError("the last band must have up_to: null so every contract value has a band")
        return bands


class FixedFee(_Strict):
    fixed: Money


class PctOfFirstYear(_Strict):
    pct_of_first_year_value: Rate


class ReferralTerms(_Strict):
    qualified_lead: FixedFee
    signed_agreement: PctOfFirstYear
    successful_delivery: FixedFee
    signed_within_days: Annotated[int, Field(ge=0)]


class TierStep(_Strict):
    above: Money
    uplift: Rate


class Tiers(_Strict):
    scope: Literal["lifetime", "calendar_year"] = "lifetime"
    steps: list[TierStep] = Field(default_factory=list)

    @field_validator("steps")
    @classmethod
    def _sorted_steps(cls, steps: list[TierStep]) -> list[TierStep]:
        if any(a.above >= b.above for a, b in zip(steps, steps[1:])):
            raise ValueError("tier steps must be sorted by 'above', strictly increasing")
        return steps


class Agreement(_Strict):
    effective_from: dt.date
    subscription: SubscriptionTerms
    project: ProjectTerms
    referral: ReferralTerms
    tiers: Tiers = Field(default_factory=Tiers)


class Payout(_Strict):
    minimum: Money
    holding_days: Annotated[int, Field(ge=0)] = 0
    net_fees: bool = True


class AchPayerInfo(_Strict):
    odfi_routing: str  # the company's bank (immediate destination), 9-digit ABA routing number
    company_id: str  # the company identification the bank assigned
    company_name: str
    immediate_origin: str | None = None  # default: company_id


class PayerInfo(_Strict):
    """Who pays (SPEC section 8): the debtor of the payment files. Validated where it is used (the
    payment files' routing checks IBANs, BICs and routing numbers and says which is wrong)."""

    name: str
    iban: str | None = None
    bic: str | None = None
    accounts: dict[str, str] = Field(default_factory=dict)  # a debtor account per currency
    ach: AchPayerInfo | None = None

    @field_validator("iban", "bic", "name", mode="before")
    @classmethod
    def _text(cls, v: object) -> object:
        return str(v) if isinstance(v, (int, Decimal)) else v


class Validation(_Strict):
    # Fatal gate: a file whose quarantined share of rows is above this stops the run (docs/validation.md).
    # Off (100) unless set: the spec says a month with exceptions is still computed and written.
    max_quarantine_pct: Annotated[Decimal, Field(ge=0, le=100)] = Decimal(100)
    # Warnings (docs/validation.md): a file whose rows read differ from the average of the last 3
    # months by more than this; a currency whose fx rate moved more than this since last month; a
    # currency whose unattributed share of the amount billed is above this.
    max_row_change_pct: Annotated[Decimal, Field(ge=0)] = Decimal(50)
    max_fx_move_pct: Annotated[Decimal, Field(ge=0)] = Decimal(10)
    max_unattributed_pct: Annotated[Decimal, Field(ge=0, le=100)] = Decimal(50)


class Program(_Strict):
    program: ProgramInfo
    agreements: list[Agreement] = Field(min_length=1)
    payout: Payout
    validation: Validation = Field(default_factory=Validation)
    payer: PayerInfo | None = None

    @model_validator(mode="after")
    def _versions(self) -> "Program":
        dates = [a.effective_from for a in self.agreements]
        if len(set(dates)) != len(dates):
            raise ValueError("two agreement versions share an effective_from")
        digits = minor_units()[self.program.currency]
        for i, a in enumerate(self.agreements):
            for key in ("qualified_lead", "successful_delivery"):
                fixed = getattr(a.referral, key).fixed
                if -fixed.as_tuple().exponent > digits:
                    raise ValueError(
                        f"agreements[{i}].referral.{key}.fixed: {fixed} has more decimals than "
                        f"{self.program.currency} allows ({digits})"
                    )
        if -self.payout.minimum.as_tuple().exponent > digits:
            raise ValueError(f"payout.minimum: {self.payout.minimum} has more decimals than {digits}")
        return self

    @property
    def currency(self) -> str:
        return self.program.currency

    def product_families(self) -> list[str]:
        return sorted({f for a in self.agreements for f in a.subscription.base_rates})


class _DecimalLoader(yaml.SafeLoader):
    """Safe YAML loader that reads floats as Decimal from their source text."""


def _decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal | str:
    """A YAML float as the Decimal of its text; `.nan`, `.inf` and the like stay text, which the
    schema then refuses naming the key ("Input should be a valid decimal")."""
    text = loader.construct_scalar(node).replace("_", "")
    try:
        value = Decimal(text)
    except ArithmeticError:
        return text
    return value if value.is_finite() else text


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _decimal)


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_program(path: str | Path) -> Program:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_DecimalLoader)  # noqa: S506 (safe loader subclass)
    except FileNotFoundError:
        raise ProgramError(f"{path}: required file is missing") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ProgramError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        return Program.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        raise ProgramError(f"{path.name}: {_where(err['loc'])}: {msg}{more}") from None
