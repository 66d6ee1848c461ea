"""Which file pays a partner, or why it is paid by hand: the one place the SPEC section 8 rules live.

``route`` picks the file a partner's details aim at (PayPal; ACH for USD in the US without a BIC;
SEPA for EUR to an IBAN of a SEPA country; else international), then runs that file's checks in
the SPEC's reason order; the first failing check is the manual reason (table: docs/payments.md).
``details_problem`` is the same routing without the changed-set, for ``run``'s ``bank_details_unusable``;
``details_hash`` / ``payer_hash`` fingerprint what routing reads, so ``release`` sees changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache

from schwifty import BIC, IBAN

from pipelines.core.money import minor_units
from pipelines.payments.model import AchPayer, Payee, Payer, PaymentFileError
from pipelines.payments.text import nacha_text, reference_problem, sepa_text

__all__ = [
    "FILE_ACH",
    "FILE_INTERNATIONAL",
    "FILE_PAYPAL",
    "FILE_SEPA",
    "MANUAL_REASONS",
    "PAYPAL_CURRENCIES",
    "Account",
    "Route",
    "debtor_account",
    "details_hash",
    "payer_hash",
    "route",
    "valid_bic",
    "valid_iban",
    "valid_routing_number",
]

FILE_SEPA = "sepa"
FILE_INTERNATIONAL = "international"
FILE_ACH = "ach"
FILE_PAYPAL = "paypal"

MANUAL_REASONS = (
    "bank_details_changed",
    "no_payer",
    "reference_unusable",
    "invalid_iban",
    "invalid_bic",
    "missing_bank_code",
    "invalid_routing_number",
    "invalid_account",
    "no_file_for_currency",
)

METHODS = ("bank_transfer", "paypal")

# EEA countries and the territories with their own ISO code that are part of them (Åland; the
# French outermost regions). Source: EPC409-09, EPC list of countries and territories of the SEPA
# schemes' geographical scope.
EEA = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK "  # EU 27
    "IS LI NO "  # EEA EFTA
    "AX GF GP MQ RE YT MF".split()
)
# SEPA scheme countries outside the EEA (EPC409-09): the IBAN country decides SEPA-ness.
SEPA_NON_EEA = frozenset("AD AL CH GB GG GI IM JE MC MD ME MK RS SM VA BL PM".split())
SEPA_COUNTRIES = EEA | SEPA_NON_EEA

# PayPal's currency codes (PayPal REST API "Currency codes"); HUF, JPY and TWD take no decimals.
PAYPAL_CURRENCIES = frozenset(
    "AUD BRL CAD CHF CZK DKK EUR GBP HKD HUF ILS JPY MXN MYR NOK NZD PHP PLN SEK SGD THB TWD USD".split()
)
PAYPAL_WHOLE_UNITS = frozenset({"HUF", "JPY", "TWD"})

SEPA_MAX_MINOR = 99_999_999_999  # EPC: at most 999 999 999.99 EUR per credit transfer
ACH_MAX_MINOR = 9_999_999_999  # NACHA entry amount: 10 digits of cents
XSD_MAX_MINOR = 10**13 - 1  # pain.001 amount: 18 total digits, kept well inside

_OTHER_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,33}")
_US_ACCOUNT = re.compile(r"[0-9]{4,17}")
_ROUTING = re.compile(r"[0-9]{9}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]+")
_PAYPAL_EMAIL = re.compile(r"[^@\s,;\"'<>()]+@[^@\s,;\"'<>()]+\.[A-Za-z0-9-]{2,}")
_PAYPAL_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{5,24}[0-9]")
_PAYPAL_PAYER_ID = re.compile(r"[A-Z0-9]{13}")


@dataclass(frozen=True)
class Account:
    """A normalised account: an IBAN (compact, upper case) or another account id (``Othr/Id``)."""

    id: str = field(repr=False)
    is_iban: bool


@dataclass(frozen=True)
class Route:
    """Where one payee is paid: ``file`` (sepa / international / ach / paypal), or ``reason`` (manual).

    The normalised details the writers need travel with it; account fields stay out of ``repr``.
    """

    file: str | None
    reason: str | None
    detail: str = ""  # why, in words, for people (never an account number)
    account: Account | None = field(default=None, repr=False)  # creditor account / PayPal receiver
    agent_bic: str | None = None  # creditor agent BIC (SEPA, international)
    routing: str | None = None  # RDFI routing number (ACH)
    transaction_code: str | None = None  # '22' checking / '32' savings (ACH)
    country: str | None = None  # creditor country, normalised

    @property
    def manual(self) -> bool:
        return self.file is None


def _manual(reason: str, detail: str) -> Route:
    assert reason in MANUAL_REASONS
    return Route(file=None, reason=reason, detail=detail)


# --- primitive checks ----------------------------------------------------------------------------


@lru_cache(maxsize=None)
def uses_iban(country: str | None) -> bool:
    """Whether ``country`` uses IBANs: schwifty's IBAN registry has an official (not 'aspirational')
    format for it."""
    if not country or not _COUNTRY.fullmatch(country):
        return False
    from schwifty import registry

    try:
        return not registry.get_iban_spec(country).aspirational
    except Exception:  # schwifty.exceptions.InvalidCountryCode: no IBAN format for that country
        return False


def valid_iban(text: str | None) -> str | None:
    """The compact upper-case IBAN when ``text`` is a valid IBAN of a country that uses IBANs, else None.

    Whitespace is ignored and letters may be lower case. Structure, length, country format and the
    mod-97 check digits are verified (schwifty); IBANs of 'aspirational' countries are not accepted.
    """
    if not text or not text.strip():
        return None
    try:
        iban = IBAN(text, allow_invalid=True)
        if not uses_iban(iban.country_code) or not iban.is_valid:
            return None
    except Exception:  # schwifty raises its own errors (and KeyError/ValueError) on odd input
        return None
    return str(iban)


def valid_bic(text: str | None) -> str | None:
    """The upper-case BIC when ``text`` is a valid ISO 9362 BIC (8 or 11 characters, known country)."""
    if not text or not text.strip():
        return None
    try:
        bic = BIC(text, allow_invalid=True)
        if not bic.is_valid:
            return None
    except Exception:
        return None
    return str(bic)


def valid_routing_number(text: str | None) -> str | None:
    """The routing number when ``text`` is a valid 9-digit ABA routing number, else None.

    Valid: 9 digits, a first two digits of a Federal Reserve district (01-12), thrift (21-32) or
    electronic (61-72) number, and the check digit: 3*d1 + 7*d2 + d3 + 3*d4 + 7*d5 + d6 + 3*d7 +
    7*d8 + d9 is a multiple of 10.
    """
    if text is None:
        return None
    r = text.strip()
    if not _ROUTING.fullmatch(r):
        return None
    prefix = int(r[:2])
    if not (1 <= prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72):
        return None
    weights = (3, 7, 1, 3, 7, 1, 3, 7, 1)
    if sum(int(d) * w for d, w in zip(r, weights)) % 10:
        return None
    return r


def _country(text: str | None) -> str | None:
    c = (text or "").strip().upper()
    return c if _COUNTRY.fullmatch(c) else None


def _other_account(text: str) -> str | None:
    compact = "".join(text.split())
    return compact if _OTHER_ACCOUNT.fullmatch(compact) else None


def _looks_like_iban(text: str | None) -> bool:
    """Shaped like an IBAN (2 letters, 2 digits, letters and digits) of a country that uses IBANs."""
    compact = "".join((text or "").split()).upper()
    return bool(_IBAN_SHAPE.fullmatch(compact)) and uses_iban(compact[:2])


def _account(text: str | None) -> Account | None:
    """A valid IBAN, else a plain account id (letters, digits, '-'; spaces dropped; at most 34) that
    does not look like a broken IBAN; None otherwise."""
    if not text:
        return None
    iban = valid_iban(text)
    if iban:
        return Account(iban, True)
    if _looks_like_iban(text):
        return None
    other = _other_account(text)
    return Account(other, False) if other else None


def debtor_account(payer: Payer | None, currency: str) -> Account | None:
    """The account a payment in ``currency`` is debited from: ``payer.accounts[currency]`` where given
    (and then only that one), else ``payer.iban``; None when there is none or it is not valid."""
    if payer is None:
        return None
    configured = (payer.accounts or {}).get(currency)
    if configured is not None:
        return _account(configured)
    iban = valid_iban(payer.iban)
    return Account(iban, True) if iban else None


def _payer_bic_ok(payer: Payer) -> bool:
    return payer.bic is None or not payer.bic.strip() or valid_bic(payer.bic) is not None


def ach_payer_problem(ach: AchPayer | None) -> str | None:
    """Why ``payer.ach`` cannot originate an ACH file (None when it can)."""
    if ach is None:
        return "the payer has no ach block"
    if valid_routing_number(ach.odfi_routing) is None:
        return "payer.ach.odfi_routing is not a valid ABA routing number"
    if not re.fullmatch(r"[A-Za-z0-9]{1,10}", (ach.company_id or "").strip()):
        return "payer.ach.company_id is not 1-10 letters or digits"
    origin = ach.immediate_origin if ach.immediate_origin not in (None, "") else ach.company_id
    if not re.fullmatch(r"[A-Za-z0-9]{1,10}", (origin or "").strip()):
        return "payer.ach.immediate_origin is not 1-10 letters or digits"
    if not nacha_text(ach.company_name or "", 16):
        return "payer.ach.company_name is empty in NACHA characters"
    return None


def _paypal_receiver(text: str | None) -> str | None:
    r = (text or "").strip()
    if len(r) > 127:
        return None
    if _PAYPAL_EMAIL.fullmatch(r) or _PAYPAL_PHONE.fullmatch(r) or _PAYPAL_PAYER_ID.fullmatch(r):
        return r
    return None


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


# --- routing -------------------------------------------------------------------------------------


def target_file(payee: Payee) -> str:
    """The file a payee's details aim at, before any check (steps 1-4 of the module docstring)."""
    if payee.payout_method not in METHODS:
        raise PaymentFileError(
            f"partner {payee.partner_id}: payout_method {payee.payout_method!r} has no payment file "
            f"(expected one of {', '.join(METHODS)})"
        )
    if payee.payout_method == "paypal":
        return FILE_PAYPAL
    country = _country(payee.country)
    if payee.currency == "USD" and country == "US" and valid_bic(payee.bank_code) is None:
        return FILE_ACH
    if payee.currency == "EUR":
        iban = valid_iban(payee.account_ref)
        if iban and iban[:2] in SEPA_COUNTRIES:
            if iban[:2] in EEA or (valid_bic(payee.bank_code) and country):
                return FILE_SEPA
    return FILE_INTERNATIONAL


def route(payee: Payee, payer: Payer | None, changed: AbstractSet[str] = frozenset()) -> Route:
    """The file that pays ``payee``, or the first manual reason that applies (module docstring)."""
    target = target_file(payee)
    if payee.partner_id in changed:
        return _manual("bank_details_changed", "bank details changed since the month was computed")
    if target == FILE_PAYPAL:
        return _route_paypal(payee)
    if target == FILE_ACH:
        return _route_ach(payee, payer)
    return _route_iso(payee, payer, target)


#: a payer every check accepts: routing a payee with it finds what is wrong with the payee's own
#: details, for a program without a payer block (it pays by hand, but wants bad details caught)
STAND_IN_PAYER = Payer(name="Stand-in payer", iban="DE89370400440532013000", bic="COBADEFFXXX", accounts={},
                       ach=AchPayer(odfi_routing="091000019", company_id="1234567890", company_name="STAND IN"))


def details_problem(payee: Payee, payer: Payer | None) -> Route:
    """``route`` for the run's report: with a payer, the route itself (a payer that cannot pay a
    currency is reported too); without one, the route under ``STAND_IN_PAYER``, so that only the
    partner's own details count (``no_payer`` is the program's choice, not a problem to report)."""
    return route(payee, payer if payer is not None else STAND_IN_PAYER)


def _route_paypal(payee: Payee) -> Route:
    problem = reference_problem(payee.payment_reference, paypal=True)
    if problem:
        return _manual("reference_unusable", f"payment reference: {problem}")
    receiver = _paypal_receiver(payee.account_ref)
    if receiver is None:
        return _manual("invalid_account", "the PayPal receiver is not an e-mail, phone number or PayPal id")
    if payee.currency not in PAYPAL_CURRENCIES:
        return _manual("no_file_for_currency", f"PayPal Payouts does not pay in {payee.currency}")
    if payee.currency in PAYPAL_WHOLE_UNITS and payee.net_minor % 10 ** minor_units()[payee.currency]:
        return _manual("no_file_for_currency", f"PayPal pays {payee.currency} in whole units only")
    return Route(file=FILE_PAYPAL, reason=None, account=Account(receiver, False))


def _route_ach(payee: Payee, payer: Payer | None) -> Route:
    if payer is None:
        return _manual("no_payer", "program.yaml has no payer")
    problem = ach_payer_problem(payer.ach)
    if problem:
        return _manual("no_payer", problem)
    problem = reference_problem(payee.payment_reference)
    if problem:
        return _manual("reference_unusable", f"payment reference: {problem}")
    if _blank(payee.bank_code):
        return _manual("missing_bank_code", "no ABA routing number in bank_code")
    routing = valid_routing_number(payee.bank_code)
    if routing is None:
        return _manual("invalid_routing_number", "bank_code is not a valid ABA routing number (9 digits, check digit)")
    account = (payee.account_ref or "").strip()
    if not _US_ACCOUNT.fullmatch(account):
        return _manual("invalid_account", "account_ref is not 4-17 digits")
    account_type = (payee.account_type or "checking").strip().lower() or "checking"
    if account_type not in ("checking", "savings"):
        return _manual("invalid_account", f"account_type {payee.account_type!r} is not checking or savings")
    if payee.net_minor > ACH_MAX_MINOR:
        return _manual("no_file_for_currency", "amount above the NACHA entry's 99,999,999.99")
    return Route(
        file=FILE_ACH,
        reason=None,
        account=Account(account, False),
        routing=routing,
        transaction_code="22" if account_type == "checking" else "32",
        country="US",
    )


def _route_iso(payee: Payee, payer: Payer | None, target: str) -> Route:
    if payer is None:
        return _manual("no_payer", "program.yaml has no payer")
    debtor = debtor_account(payer, payee.currency)
    if debtor is None:
        return _manual("no_payer", f"the payer has no valid debtor account for {payee.currency}")
    if target == FILE_SEPA and not debtor.is_iban:
        return _manual("no_payer", "the payer's EUR debtor account is not an IBAN")
    if not _payer_bic_ok(payer):
        return _manual("no_payer", "payer.bic is not a valid BIC")
    if not sepa_text(payer.name or ""):
        return _manual("no_payer", "payer.name is empty in the SEPA character set")
    problem = reference_problem(payee.payment_reference)
    if problem:
        return _manual("reference_unusable", f"payment reference: {problem}")
    country = _country(payee.country)
    bic = valid_bic(payee.bank_code)

    if target == FILE_SEPA:
        # the IBAN is valid and in a SEPA country (target_file); outside the EEA BIC and country are too
        if not _blank(payee.bank_code) and bic is None:
            return _manual("invalid_bic", "bank_code is not a valid BIC")
        if payee.net_minor > SEPA_MAX_MINOR:
            return _manual("no_file_for_currency", "amount above the SEPA maximum of 999,999,999.99")
        return Route(
            file=FILE_SEPA,
            reason=None,
            account=Account(valid_iban(payee.account_ref), True),
            agent_bic=bic,
            country=country,
        )

    # international: a valid BIC and an account, a valid IBAN where the account's country uses IBANs
    account_country = bic[4:6] if bic else country
    iban = valid_iban(payee.account_ref)
    if iban is None and (_looks_like_iban(payee.account_ref) or uses_iban(account_country)):
        return _manual("invalid_iban", "account_ref is not a valid IBAN, and the account's country uses IBANs")
    if not _blank(payee.bank_code) and bic is None:
        return _manual("invalid_bic", "bank_code is not a valid BIC")
    if bic is None:
        return _manual("missing_bank_code", "no BIC in bank_code (an international transfer needs one)")
    account = Account(iban, True) if iban else _account(payee.account_ref)
    if account is None:
        return _manual(
            "invalid_account", "account_ref is not an IBAN or an account id (letters, digits, '-', at most 34)"
        )
    if payee.net_minor > XSD_MAX_MINOR:
        return _manual("no_file_for_currency", "amount too large for a pain.001 amount")
    return Route(file=FILE_INTERNATIONAL, reason=None, account=account, agent_bic=bic, country=country)


# --- fingerprints --------------------------------------------------------------------------------


def _sha256_json(obj: object) -> str:
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def details_hash(payee: Payee) -> str:
    """sha256 (hex) of the bank-relevant fields of a payee, as given (no normalisation).

    Canonical encoding: the UTF-8 bytes of the JSON object
    ``{"account_ref", "account_type", "bank_code", "country", "currency", "method", "name",
    "v": 1}`` with keys sorted, no whitespace (separators ``,`` and ``:``), non-ASCII characters
    as themselves, ``null`` for a missing value. Any edit of one of these fields changes it.
    """
    return _sha256_json(
        {
            "v": 1,
            "method": payee.payout_method,
            "account_ref": payee.account_ref,
            "bank_code": payee.bank_code,
            "account_type": payee.account_type,
            "country": payee.country,
            "currency": payee.currency,
            "name": payee.name,
        }
    )


def payer_hash(payer: Payer | None) -> str:
    """sha256 (hex) of the payer block, same canonical JSON encoding as ``details_hash``:
    ``{"v": 1, "name", "iban", "bic", "accounts": {currency: account}, "ach": {"odfi_routing",
    "company_id", "company_name", "immediate_origin"} or null}``; no payer hashes ``{"v": 1,
    "payer": null}``."""
    if payer is None:
        return _sha256_json({"v": 1, "payer": None})
    ach = payer.ach
    return _sha256_json(
        {
            "v": 1,
            "name": payer.name,
            "iban": payer.iban,
            "bic": payer.bic,
            "accounts": dict(sorted((payer.accounts or {}).items())),
            "ach": None
            if ach is None
            else {
                "odfi_routing": ach.odfi_routing,
                "company_id": ach.company_id,
                "company_name": ach.company_name,
                "immediate_origin": ach.immediate_origin,
            },
        }
    )
