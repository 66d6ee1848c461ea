"""pain.001.001.09: both files validate against the official XSD; broken documents are rejected."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from importlib.resources import files

import pytest
import xmlschema
from paymentcases import EXECUTION, MONTH, PAYER, RELEASED, payee

from pipelines.payments import PaymentFileError, build_payment_files
from pipelines.payments.pain001 import NS, _schema, validate_pain001

Q = f"{{{NS}}}"

PAYEES = [
    payee("S1", "EUR", 1, account_ref="FR1420041010050500013M02606", country="FR", name="Zoë Ærøskøbing Straße"),
    payee("S2", "EUR", 99_999_999_999, account_ref="CH9300762011623852957", bank_code="UBSWCHZH80A", country="CH",
          name="Москва ООО " * 12),  # the SEPA maximum; a non-EEA SEPA creditor; a very long name
    payee("G1", "GBP", 50000, account_ref="GB29NWBK60161331926819", bank_code="NWBKGB2L", country="GB",
          name="北京科技有限公司"),
    payee("J1", "JPY", 120000, account_ref="1234567", bank_code="MHCBJPJT", country="JP", name="العربية"),
    payee("K1", "KWD", 1234, account_ref="KW81CBKU0000000000001234560101", bank_code="CBKUKWKW", country="KW",
          name=""),
    payee("U1", "USD", 1050, account_ref="000123456789", bank_code="CHASUS33", country="US", name="😀 Emoji Ltd"),
]


@pytest.fixture(scope="module")
def batch():
    return build_payment_files(MONTH, PAYEES, PAYER, execution_date=EXECUTION, released_at=RELEASED)


def official_schema():
    # independent of the code under test: load the XSD afresh from the sepaxml package
    return xmlschema.XMLSchema(str(files("sepaxml") / "schemas" / "pain.001.001.09.xsd"))


def test_both_files_valid_against_the_official_xsd(batch):
    schema = official_schema()
    assert {"sepa_credit_transfer.xml", "international_credit_transfer.xml"} <= set(batch.files)
    for name in ("sepa_credit_transfer.xml", "international_credit_transfer.xml"):
        schema.validate(batch.files[name].decode("utf-8"))


def test_international_blocks_per_currency(batch):
    doc = ET.fromstring(batch.files["international_credit_transfer.xml"])
    blocks = doc.findall(f"{Q}CstmrCdtTrfInitn/{Q}PmtInf")
    assert [b.findtext(f"{Q}PmtInfId") for b in blocks] == [
        "PO-202501-INTL-GBP", "PO-202501-INTL-JPY", "PO-202501-INTL-KWD", "PO-202501-INTL-USD"]
    assert {b.findtext(f"{Q}ChrgBr") for b in blocks} == {"DEBT"}
    amounts = [(a.get("Ccy"), a.text) for a in doc.iter(f"{Q}InstdAmt")]
    assert amounts == [("GBP", "500.00"), ("JPY", "120000"), ("KWD", "1.234"), ("USD", "10.50")]
    # group CtrlSum: the plain sum whatever the currency, 500.00 + 120000 + 1.234 + 10.50
    assert doc.findtext(f"{Q}CstmrCdtTrfInitn/{Q}GrpHdr/{Q}CtrlSum") == "120511.734"
    # GBP from payer.accounts["GBP"], the others from payer.iban
    debtors = [b.findtext(f"{Q}DbtrAcct/{Q}Id/{Q}IBAN") for b in blocks]
    assert debtors == ["GB33BUKB20201555555555"] + ["DE89370400440532013000"] * 3
    # accounts of countries without IBANs go as Othr/Id
    accts = [(t.findtext(f"{Q}PmtId/{Q}EndToEndId"), t.findtext(f"{Q}CdtrAcct/{Q}Id/{Q}IBAN"),
              t.findtext(f"{Q}CdtrAcct/{Q}Id/{Q}Othr/{Q}Id")) for t in doc.iter(f"{Q}CdtTrfTxInf")]
    assert accts == [
        ("PO-202501-G1", "GB29NWBK60161331926819", None),
        ("PO-202501-J1", None, "1234567"),
        ("PO-202501-K1", "KW81CBKU0000000000001234560101", None),
        ("PO-202501-U1", None, "000123456789"),
    ]


def test_names_transliterated_and_cut(batch):
    sepa = ET.fromstring(batch.files["sepa_credit_transfer.xml"])
    names = [n.text for n in sepa.iter(f"{Q}Nm")]
    assert names[:2] == ["Example Software Inc.", "Example Software Inc."]
    assert names[2] == "Zoe Aeroskobing Strasse"
    # "Moskva OOO " repeated, cut to 70 characters and stripped
    assert names[3] == ("Moskva OOO " * 7)[:70].rstrip() and len(names[3]) <= 70
    intl = ET.fromstring(batch.files["international_credit_transfer.xml"])
    cdtr = [t.findtext(f"{Q}Cdtr/{Q}Nm") for t in intl.iter(f"{Q}CdtTrfTxInf")]
    # Chinese, Arabic (its backtick becomes an apostrophe), empty name -> partner id, emoji dropped
    assert cdtr == ["BeiJingKeJiYouXianGongSi", "l'rbyh", "K1", "Emoji Ltd"]


def test_sepa_header_fields(batch):
    doc = ET.fromstring(batch.files["sepa_credit_transfer.xml"])
    root = doc.find(f"{Q}CstmrCdtTrfInitn")
    assert root.findtext(f"{Q}GrpHdr/{Q}MsgId") == "PO-202501-SEPA"
    assert root.findtext(f"{Q}GrpHdr/{Q}NbOfTxs") == "2"
    assert root.findtext(f"{Q}GrpHdr/{Q}CtrlSum") == "1000000000.00"  # 0.01 + 999,999,999.99
    pmt = root.find(f"{Q}PmtInf")
    assert pmt.findtext(f"{Q}PmtTpInf/{Q}SvcLvl/{Q}Cd") == "SEPA"
    assert pmt.findtext(f"{Q}ChrgBr") == "SLEV"
    assert pmt.findtext(f"{Q}ReqdExctnDt/{Q}Dt") == "2025-02-03"


def test_release_time_in_utc_without_microseconds():
    p = [payee("S1", "EUR", 100, account_ref="FR1420041010050500013M02606")]
    berlin = datetime(2025, 2, 1, 10, 30, 15, 999999, tzinfo=timezone(timedelta(hours=1)))
    b = build_payment_files(MONTH, p, PAYER, execution_date=EXECUTION, released_at=berlin)
    doc = ET.fromstring(b.files["sepa_credit_transfer.xml"])
    assert doc.findtext(f"{Q}CstmrCdtTrfInitn/{Q}GrpHdr/{Q}CreDtTm") == "2025-02-01T09:30:15Z"
    with pytest.raises(PaymentFileError, match="timezone-aware"):
        build_payment_files(MONTH, p, PAYER, execution_date=EXECUTION, released_at=datetime(2025, 2, 1, 9, 30))


def test_without_payer_bic_the_debtor_agent_is_notprovided():
    from dataclasses import replace

    p = [payee("S1", "EUR", 100, account_ref="FR1420041010050500013M02606")]
    b = build_payment_files(MONTH, p, replace(PAYER, bic=None), execution_date=EXECUTION, released_at=RELEASED)
    doc = ET.fromstring(b.files["sepa_credit_transfer.xml"])
    assert doc.findtext(f"{Q}CstmrCdtTrfInitn/{Q}PmtInf/{Q}DbtrAgt/{Q}FinInstnId/{Q}Othr/{Q}Id") == "NOTPROVIDED"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"<ChrgBr>SLEV</ChrgBr>", b"<ChrgBr>XXXX</ChrgBr>", "ChrgBr"),
        (b"<PmtMtd>TRF</PmtMtd>", b"", "PmtMtd"),
        (b"<Cd>SEPA</Cd>", b"<Cd>SEPA</Cd><Cd>X</Cd>", "Cd"),
        (b'Ccy="EUR">0.01', b'Ccy="eur">0.01', "InstdAmt"),
        (b"<IBAN>FR1420041010050500013M02606</IBAN>", b"<IBAN>fr1420041010050500013M02606</IBAN>", "IBAN"),
    ],
)
def test_broken_element_rejected(batch, old, new, message):
    data = batch.files["sepa_credit_transfer.xml"]
    assert old in data
    bad = data.replace(old, new, 1)
    with pytest.raises(PaymentFileError, match=message) as info:
        validate_pain001(bad)
    assert "pain.001.001.09 schema" in str(info.value)
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        official_schema().validate(bad.decode("utf-8"))


def test_error_names_the_transaction_not_the_account(batch):
    data = batch.files["sepa_credit_transfer.xml"]
    bad = data.replace(b"<IBAN>FR1420041010050500013M02606</IBAN>", b"<IBAN>FR1420041010050500013M02606-</IBAN>")
    with pytest.raises(PaymentFileError) as info:
        validate_pain001(bad)
    message = str(info.value)
    assert "transaction PO-202501-S1" in message and "CdtTrfTxInf[1]" in message
    assert "FR1420041010050500013M02606" not in message


def test_control_totals_checked_beyond_the_xsd(batch):
    data = batch.files["sepa_credit_transfer.xml"]
    bad = data.replace(b"<CtrlSum>1000000000.00</CtrlSum>", b"<CtrlSum>1000000000.01</CtrlSum>", 1)
    official_schema().validate(bad.decode("utf-8"))  # the XSD cannot see it
    with pytest.raises(PaymentFileError, match="GrpHdr/CtrlSum"):
        validate_pain001(bad)
    bad = data.replace(b"<NbOfTxs>2</NbOfTxs>", b"<NbOfTxs>3</NbOfTxs>")
    with pytest.raises(PaymentFileError, match="NbOfTxs is 3"):
        validate_pain001(bad)
    with pytest.raises(PaymentFileError, match="not well-formed"):
        validate_pain001(data[:-20])


def test_schema_is_loaded_once():
    assert _schema() is _schema()
