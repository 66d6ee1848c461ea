"""Routing: which file each kind of partner lands in, every manual reason and their order."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
from paymentcases import PAYER, payee

from pipelines.payments import MANUAL_REASONS, PaymentFileError, details_hash, payer_hash, route
from pipelines.payments.route import details_problem, valid_routing_number

SEPA_FR = dict(account_ref="FR1420041010050500013M02606", country="FR")
GB = dict(account_ref="GB29NWBK60161331926819", bank_code="NWBKGB2L", country="GB")
US = dict(account_ref="123456789012", bank_code="021000021", country="US")


def where(p, payer=PAYER, changed=frozenset()):
    r = route(p, payer, changed)
    return r.file or r.reason


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (payee("E1", "EUR", 100, **SEPA_FR), "sepa"),
        (payee("E2", "EUR", 100, account_ref="fr14 2004 1010 0505 0001 3m02 606", country="FR"), "sepa"),
        # non-EEA SEPA country: BIC and country make it SEPA ...
        (payee("E3", "EUR", 100, account_ref="CH9300762011623852957", bank_code="UBSWCHZH80A", country="CH"), "sepa"),
        # ... without the country it is still a valid international transfer
        (payee("E4", "EUR", 100, account_ref="CH9300762011623852957", bank_code="UBSWCHZH80A"), "international"),
        # ... without a BIC nothing can carry it
        (payee("E5", "EUR", 100, account_ref="CH9300762011623852957", country="CH"), "missing_bank_code"),
        # EUR to a non-SEPA IBAN country
        (payee("E6", "EUR", 100, account_ref="TR330006100519786457841326", bank_code="ISBKTRIS", country="TR"),
         "international"),
        (payee("G1", "GBP", 100, **GB), "international"),
        # a country without IBANs: the account goes as Othr/Id
        (payee("J1", "JPY", 100, account_ref="1234567", bank_code="MHCBJPJT", country="JP"), "international"),
        (payee("U1", "USD", 100, **US), "ach"),
        (payee("U2", "USD", 100, **US, account_type="savings"), "ach"),
        # a US partner with a SWIFT BIC instead of a routing number: an international wire in USD
        (payee("U3", "USD", 100, account_ref="123456789012", bank_code="CHASUS33", country="US"), "international"),
        # USD outside the US: international
        (payee("U4", "USD", 100, account_ref="1234567", bank_code="MHCBJPJT", country="JP"), "international"),
        (payee("P1", "USD", 100, method="paypal", account_ref="someone@example.com"), "paypal"),
        (payee("P2", "EUR", 100, method="paypal", account_ref="+49 151 2345678"), "paypal"),
        (payee("P3", "JPY", 100, method="paypal", account_ref="ABCDEFGHJKLMN"), "paypal"),
    ],
)
def test_file_per_partner(p, expected):
    assert where(p) == expected


@pytest.mark.parametrize(
    ("p", "changed", "expected"),
    [
        (payee("C1", "EUR", 100, **SEPA_FR), {"C1"}, "bank_details_changed"),
        # the reason order: changed beats everything, even details that no file can carry
        (payee("C2", "EUR", 100, account_ref="nonsense"), {"C2"}, "bank_details_changed"),
        (payee("R1/", "EUR", 100, **SEPA_FR), set(), "reference_unusable"),  # trailing '/'
        (payee("R//1", "EUR", 100, **SEPA_FR), set(), "reference_unusable"),  # double '/'
        # 10 + 26 = 36 characters; the reference check comes before the invalid IBAN
        (payee("X" * 26, "EUR", 100, account_ref="DE89370400440532013001"), set(), "reference_unusable"),
        (payee("Zoë", "EUR", 100, **SEPA_FR), set(), "reference_unusable"),  # outside the SEPA set
        (payee("R_4", "EUR", 100, **SEPA_FR), set(), "reference_unusable"),
        (payee("I1", "EUR", 100, account_ref="DE89370400440532013001"), set(), "invalid_iban"),
        # IBAN before BIC: both bad
        (payee("I2", "GBP", 100, account_ref="GB29NWBK60161331926818", bank_code="NOPE"), set(), "invalid_iban"),
        # the account's country (from the BIC) uses IBANs, the account is not one
        (payee("I3", "GBP", 100, account_ref="12345678", bank_code="NWBKGB2L"), set(), "invalid_iban"),
        (payee("B1", "GBP", 100, account_ref="GB29NWBK60161331926819", bank_code="NWBKGB2"), set(), "invalid_bic"),
        # an EEA SEPA partner needs no BIC, but a broken one is not silently dropped
        (payee("B2", "EUR", 100, **SEPA_FR, bank_code="BNPAFRP"), set(), "invalid_bic"),
        (payee("M1", "GBP", 100, account_ref="GB29NWBK60161331926819"), set(), "missing_bank_code"),
        (payee("M2", "USD", 100, account_ref="123456789012", country="US"), set(), "missing_bank_code"),
        # a US partner's bank_code is a routing number unless it is a valid BIC: bad routing, not bad BIC
        (payee("T1", "USD", 100, account_ref="123456789012", bank_code="021000022", country="US"), set(),
         "invalid_routing_number"),
        (payee("T2", "USD", 100, account_ref="123456789012", bank_code="CHASUS3", country="US"), set(),
         "invalid_routing_number"),
        (payee("T3", "USD", 100, account_ref="123456789012", bank_code="000000000", country="us"), set(),
         "invalid_routing_number"),
        (payee("A1", "USD", 100, account_ref="123", bank_code="021000021", country="US"), set(), "invalid_account"),
        (payee("A2", "USD", 100, account_ref="123456789012345678", bank_code="021000021", country="US"), set(),
         "invalid_account"),
        (payee("A3", "USD", 100, account_ref="1234-5678", bank_code="021000021", country="US"), set(),
         "invalid_account"),
        (payee("A4", "USD", 100, **US, account_type="loan"), set(), "invalid_account"),
        (payee("A5", "JPY", 100, account_ref="12 34/56", bank_code="MHCBJPJT", country="JP"), set(), "invalid_account"),
        (payee("A6", "USD", 100, method="paypal", account_ref="not a receiver"), set(), "invalid_account"),
        (payee("F1", "KWD", 100, method="paypal", account_ref="a@example.com"), set(), "no_file_for_currency"),
        (payee("F2", "HUF", 150, method="paypal", account_ref="a@example.com"), set(), "no_file_for_currency"),
        (payee("F3", "USD", 10_000_000_000, **US), set(), "no_file_for_currency"),  # above 99,999,999.99
        # PayPal's customer id: at most 30 characters and no space, stricter than SEPA's 35
        (payee("X" * 21, "USD", 100, method="paypal", account_ref="a@example.com"), set(), "reference_unusable"),
        (payee("P 1", "USD", 100, method="paypal", account_ref="a@example.com"), set(), "reference_unusable"),
    ],
)
def test_manual_reasons(p, changed, expected):
    assert where(p, changed=changed) == expected


def test_every_reason_is_covered_above():
    # the list of reasons is SPEC section 8's, in its order
    assert MANUAL_REASONS == (
        "bank_details_changed", "no_payer", "reference_unusable", "invalid_iban", "invalid_bic",
        "missing_bank_code", "invalid_routing_number", "invalid_account", "no_file_for_currency",
    )


def test_space_in_reference_is_fine_for_sepa_but_not_paypal():
    assert where(payee("P 1", "EUR", 100, **SEPA_FR)) == "sepa"
    assert where(payee("X" * 25, "EUR", 100, **SEPA_FR)) == "sepa"  # 35 characters exactly


def test_without_payer_everyone_but_paypal_is_manual():
    cases = [
        payee("S", "EUR", 100, **SEPA_FR),
        payee("G", "GBP", 100, **GB),
        payee("U", "USD", 100, **US),
        payee("Bad", "EUR", 100, account_ref="DE89370400440532013001"),  # no_payer comes before invalid_iban
    ]
    assert [where(p, payer=None) for p in cases] == ["no_payer"] * 4
    assert where(payee("P", "USD", 100, method="paypal", account_ref="a@example.com"), payer=None) == "paypal"


def test_payer_without_ach_block():
    payer = replace(PAYER, ach=None)
    assert where(payee("U", "USD", 100, **US), payer=payer) == "no_payer"
    assert where(payee("S", "EUR", 100, **SEPA_FR), payer=payer) == "sepa"


def test_debtor_accounts():
    # a configured account for the currency is used, and only that one
    assert where(payee("G", "GBP", 100, **GB), payer=replace(PAYER, iban=None)) == "international"
    assert where(payee("C", "CHF", 100, account_ref="CH9300762011623852957", bank_code="UBSWCHZH80A"),
                 payer=replace(PAYER, iban=None)) == "no_payer"
    broken = replace(PAYER, accounts={"GBP": "GB00BUKB20201555555555"})
    assert where(payee("G", "GBP", 100, **GB), payer=broken) == "no_payer"
    # SEPA debits an IBAN: a EUR account that is not one leaves the payer without a usable account
    assert where(payee("S", "EUR", 100, **SEPA_FR), payer=replace(PAYER, accounts={"EUR": "12345"})) == "no_payer"
    assert where(payee("S", "EUR", 100, **SEPA_FR), payer=replace(PAYER, bic="NOTABIC")) == "no_payer"


def test_details_problem_is_route_without_the_changed_set():
    good = payee("C1", "EUR", 100, **SEPA_FR)
    assert details_problem(good, PAYER).reason is None
    assert route(good, PAYER, {"C1"}).reason == "bank_details_changed"
    assert details_problem(payee("M", "GBP", 100, account_ref="GB29NWBK60161331926819"), PAYER).reason == "missing_bank_code"


def test_unknown_method_is_an_error():
    with pytest.raises(PaymentFileError, match="partner Z: payout_method 'cheque'"):
        route(payee("Z", "EUR", 100, method="cheque", **SEPA_FR), PAYER)


def test_details_never_show_an_account():
    p = payee("I1", "EUR", 100, account_ref="DE89370400440532013001")
    r = route(p, PAYER)
    assert r.reason == "invalid_iban"
    assert "DE8937" not in r.detail and "532013001" not in repr(r) and "532013001" not in repr(p)
    ok = route(payee("U", "USD", 100, **US), PAYER)
    assert "123456789012" not in repr(ok)


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("091000019", True),  # 3*0+7*9+1*1+3*0+7*0+1*0+3*0+7*1+9 = 63+1+7+9 = 80
        ("021000021", True),  # 0+14+1+0+0+0+0+14+1 = 30
        ("021000022", False),  # 31
        ("720000005", True),  # 21+14+5 = 40
        ("000000000", False),  # check digit fine, prefix 00 is not an ACH prefix
        ("13000000" + "9", False),  # prefix 13 is not used
        ("02100002", False),
        ("0210000210", False),
        ("02100002a", False),
    ],
)
def test_routing_numbers(number, valid):
    assert (valid_routing_number(number) is not None) is valid


def test_details_hash_is_the_documented_encoding():
    p = payee("H1", "EUR", 100, account_ref="FR14 2004", bank_code=None, account_type=None, country="FR",
              name="Zoë")
    canonical = ('{"account_ref":"FR14 2004","account_type":null,"bank_code":null,"country":"FR",'
                 '"currency":"EUR","method":"bank_transfer","name":"Zoë","v":1}')
    assert details_hash(p) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    # the amount is not a bank detail; every bank detail is
    assert details_hash(replace(p, net_minor=5)) == details_hash(p)
    for change in [dict(account_ref="FR14  2004"), dict(bank_code="BNPAFRPP"), dict(account_type="savings"),
                   dict(country="DE"), dict(currency="USD"), dict(name="Zoe"), dict(payout_method="paypal")]:
        assert details_hash(replace(p, **change)) != details_hash(p)


def test_payer_hash_is_the_documented_encoding():
    expected = {
        "v": 1,
        "name": "Example Software Inc.",
        "iban": "DE89370400440532013000",
        "bic": "COBADEFFXXX",
        "accounts": {"GBP": "GB33BUKB20201555555555"},
        "ach": {"odfi_routing": "091000019", "company_id": "1234567890", "company_name": "EXAMPLE SOFTWARE",
                "immediate_origin": None},
    }
    text = json.dumps(expected, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert payer_hash(PAYER) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert payer_hash(replace(PAYER, bic="COBADEFF")) != payer_hash(PAYER)
    assert payer_hash(None) == hashlib.sha256(b'{"payer":null,"v":1}').hexdigest()
