"""Property: whatever the payees, each lands in exactly one file, the money adds up, bytes repeat.

The files are read back here with their own parsers (ElementTree for pain.001, carta-ach for NACHA,
csv for the rest), independently of the package's own read-back.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from dataclasses import replace
from decimal import Decimal

from ach.parser import Parser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paymentcases import EXECUTION, MONTH, PAYER, RELEASED

from pipelines.core.money import minor_units
from pipelines.payments import MANUAL_REASONS, Payee, build_payment_files

NS = "{urn:iso:std:iso:20022:tech:xsd:pain.001.001.09}"

IBANS = ["FR1420041010050500013M02606", "NL91ABNA0417164300", "DE89370400440532013000", "GB29NWBK60161331926819",
         "CH9300762011623852957", "AT611904300234573201", "TR330006100519786457841326",
         "KW81CBKU0000000000001234560101", "SM86U0322509800000000270100", "de89 3704 0044 0532 0130 00"]
BAD_IBANS = ["DE89370400440532013001", "GB29NWBK60161331926818", "FR14", "CH00 1234"]
ACCOUNTS = ["1234", "123456789012", "99999999999999999", "1234567", "12AB", "", " ", "12 34/56", "0001-2345"]
RECEIVERS = ["a@example.com", "+1 555 123 4567", "ABCDEFGHJKLMN", "not a receiver", "x@y"]
BANK_CODES = [None, "", "NWBKGB2L", "ABNANL2A", "UBSWCHZH80A", "CHASUS33", "MHCBJPJT", "NOPE", "BNPAFRP",
              "021000021", "011000015", "021000022", "000000000", "12345"]
NAMES = ["Zoë Ærøskøbing Straße GmbH", "北京科技有限公司", "Москва ООО", "العربية", "Smith & Sons, Inc.",
         "😀", "", "=SUM(A1)", "Ölfirma Überseehandel Gesellschaft mit beschränkter Haftung & Compagnie KG"]
SCRIPTS = "aZ09 éßøÆ北京Мкع😀&/_-'\"\t"

partner_ids = st.one_of(
    st.from_regex(r"[A-Z][A-Za-z0-9]{0,7}", fullmatch=True),
    st.from_regex(r"[A-Z][A-Za-z0-9]{0,7}", fullmatch=True),
    st.from_regex(r"[A-Z][A-Za-z0-9]{0,7}", fullmatch=True),
    st.sampled_from(["a//b", "x/", "P 1", "Zoë", "X" * 26, "=1", "-2", "ABCDEFGHIJKLMNOPQRSTU"]),
)


def maybe(draw, good, bad):
    """Mostly a value from ``good``, sometimes one from ``bad``."""
    return draw(st.sampled_from(bad)) if draw(st.integers(0, 4)) == 0 else draw(st.sampled_from(good))


@st.composite
def payees(draw, partner_id):
    """Bank details shaped like one file's (sometimes broken), or drawn at random."""
    profile = draw(st.sampled_from(["sepa", "international", "ach", "paypal", "random"]))
    method, account_type = "bank_transfer", None
    if profile == "sepa":
        currency = "EUR"
        account = maybe(draw, [i for i in IBANS if i[:2] in ("FR", "NL", "DE", "AT", "de", "CH", "SM")], BAD_IBANS)
        bank_code = draw(st.sampled_from([None, None, "ABNANL2A", "UBSWCHZH80A", "BNPAFRP"]))
        country = draw(st.sampled_from([None, "FR", "CH", "nl"]))
    elif profile == "international":
        currency = draw(st.sampled_from(["GBP", "CHF", "JPY", "KWD", "USD", "EUR"]))
        account = maybe(draw, IBANS + ["1234567", "000123456789"], BAD_IBANS + ["12 34/56", ""])
        bank_code = maybe(draw, ["NWBKGB2L", "UBSWCHZH80A", "CHASUS33", "MHCBJPJT"], [None, "NOPE"])
        country = draw(st.sampled_from([None, "GB", "JP", "US", "TR"]))
    elif profile == "ach":
        currency, country = "USD", draw(st.sampled_from(["US", "us", " US "]))
        account = maybe(draw, ["1234", "123456789012", "99999999999999999"], ["12AB", "123", "0001-2345"])
        bank_code = maybe(draw, ["021000021", "011000015", "720000005"], [None, "021000022", "000000000"])
        account_type = maybe(draw, [None, "", "checking", "savings", "Savings"], ["loan"])
    elif profile == "paypal":
        method = "paypal"
        currency = draw(st.sampled_from(["USD", "EUR", "JPY", "HUF", "KWD"]))
        account = maybe(draw, RECEIVERS[:3], RECEIVERS[3:] + ACCOUNTS)
        bank_code = country = None
    else:
        method = draw(st.sampled_from(["bank_transfer", "paypal"]))
        currency = draw(st.sampled_from(["EUR", "USD", "GBP", "CHF", "JPY", "KWD", "HUF"]))
        account = draw(st.sampled_from(RECEIVERS + ACCOUNTS + IBANS + BAD_IBANS))
        bank_code = draw(st.sampled_from(BANK_CODES))
        account_type = draw(st.sampled_from([None, "", "checking", "savings", "loan"]))
        country = draw(st.sampled_from([None, "US", "us", "DE", "CH", "GB", "FR", "JP", "USA"]))
    return Payee(
        payment_reference=f"PO-{MONTH.replace('-', '')}-{partner_id}",
        partner_id=partner_id,
        name=draw(st.one_of(st.sampled_from(NAMES), st.text(alphabet=SCRIPTS, max_size=90))),
        currency=currency,
        net_minor=draw(st.one_of(st.integers(1, 10**6), st.integers(1, 2 * 10**10))),
        payout_method=method,
        account_ref=account,
        bank_code=bank_code,
        account_type=account_type,
        country=country,
    )


@st.composite
def releases(draw):
    ids = draw(st.lists(partner_ids, max_size=14, unique=True))
    people = [draw(payees(pid)) for pid in ids]
    changed = {pid for pid in ids if draw(st.integers(0, 7)) == 0}
    payer = draw(st.sampled_from([PAYER, PAYER, PAYER, None, replace(PAYER, ach=None),
                                  replace(PAYER, bic=None, accounts={}),
                                  replace(PAYER, accounts={"GBP": "GB33BUKB20201555555555", "CHF": "CH00 1"})]))
    return people, changed, payer


def _minor(text: str, currency: str) -> int:
    value = Decimal(text).scaleb(minor_units()[currency])
    assert value == value.to_integral_value()
    return int(value)


def read_files(files: dict[str, bytes]) -> list[tuple[str, str, str, int]]:
    """(file, payment_reference, currency, minor) for every payment in every file."""
    out = []
    for name, data in files.items():
        if name.endswith(".xml"):
            for tx in ET.fromstring(data).iter(f"{NS}CdtTrfTxInf"):
                amt = tx.find(f"{NS}Amt/{NS}InstdAmt")
                ref = tx.find(f"{NS}PmtId/{NS}EndToEndId").text
                out.append((name, ref, amt.get("Ccy"), _minor(amt.text, amt.get("Ccy"))))
        elif name.endswith(".ach"):
            parsed = Parser(data.decode("ascii")).as_dict()
            total = 0
            for batch in parsed["batches"]:
                for entry in batch["entries"]:
                    cents = int(entry["entry_detail"]["amount"])
                    total += cents
                    out.append((name, entry["addenda"][0]["pmt_rel_info"].rstrip(), "USD", cents))
            assert int(parsed["file_control"]["credit_amount"]) == total
        elif name == "manual_payments.csv":
            rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
            assert rows[0] == ["payment_reference", "partner_id", "payout_currency", "net_amount", "reason"]
            for ref, _, cur, amount, reason in rows[1:]:
                assert reason in MANUAL_REASONS
                out.append((name, ref, cur, _minor(amount, cur)))
        else:
            assert name.startswith("paypal_payouts_")
            for receiver, amount, cur, ref, note in csv.reader(io.StringIO(data.decode("utf-8"))):
                minor = int(amount) * 10 ** minor_units()[cur] if cur in ("HUF", "JPY", "TWD") else _minor(amount, cur)
                out.append((name, ref, cur, minor))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(releases())
def test_every_payee_once_and_the_money_adds_up(release):
    people, changed, payer = release
    batch = build_payment_files(MONTH, people, payer, execution_date=EXECUTION, released_at=RELEASED,
                                changed=changed)
    found = read_files(dict(batch.files))
    refs = [ref for _, ref, _, _ in found]
    assert sorted(refs) == sorted(p.payment_reference for p in people)  # each exactly once
    by_ref = {p.payment_reference: p for p in people}
    for name, ref, cur, minor in found:
        assert (cur, minor) == (by_ref[ref].currency, by_ref[ref].net_minor)
        assert batch.placement[ref] == name
    want: dict[str, int] = {}
    got: dict[str, int] = {}
    for p in people:
        want[p.currency] = want.get(p.currency, 0) + p.net_minor
    for _, _, cur, minor in found:
        got[cur] = got.get(cur, 0) + minor
    assert got == want
    # changed partners are always manual; without a payer only PayPal avoids manual
    for p in people:
        if p.partner_id in changed:
            assert batch.manual[p.payment_reference] == "bank_details_changed"
        elif payer is None and p.payout_method != "paypal":
            assert batch.manual[p.payment_reference] == "no_payer"
    # deterministic, whatever the order
    again = build_payment_files(MONTH, list(reversed(people)), payer, execution_date=EXECUTION,
                                released_at=RELEASED, changed=set(changed))
    assert again.files == batch.files
