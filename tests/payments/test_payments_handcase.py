"""A small release worked out by hand: every file's exact bytes, where each partner lands, the totals."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from paymentcases import EXECUTION, MONTH, PAYER, RELEASED, payee

from pipelines.payments import build_payment_files
from pipelines.payments.pain001 import validate_pain001

# The payer of SPEC section 3, plus a CHF debtor account that is not a valid IBAN (CH uses IBANs),
# so that a CHF partner gets no_payer while everyone else has a payer.
HAND_PAYER = replace(PAYER, accounts={"GBP": "GB33BUKB20201555555555", "CHF": "CH00 1234 5678"})

PAYEES = [
    # SEPA: EUR, French IBAN (given with spaces), EEA so no BIC needed; accented name
    payee("P001", "EUR", 125050, account_ref="FR14 2004 1010 0505 0001 3M02 606", country="FR",
          name="Zoë Ærøskøbing Straße GmbH"),
    # SEPA: EUR, Dutch IBAN with its BIC
    payee("P002", "EUR", 9999, account_ref="NL91ABNA0417164300", bank_code="ABNANL2A", country="NL", name="Acme BV"),
    # international: GBP with IBAN and BIC, debited from payer.accounts["GBP"]
    payee("P003", "GBP", 50000, account_ref="GB29NWBK60161331926819", bank_code="NWBKGB2L", country="GB",
          name="Ångström Ltd"),
    # ACH: USD, US, routing 021000021, 12-digit savings account
    payee("P004", "USD", 123456, account_ref="123456789012", bank_code="021000021", account_type="savings",
          country="US", name="Smith & Sons Consulting LLC, Inc."),
    # PayPal
    payee("P005", "USD", 7500, method="paypal", account_ref="payouts@example.com", country="CN", name="北京科技有限公司"),
    # one of each manual reason
    payee("P006", "EUR", 1000, account_ref="DE89370400440532013000", country="DE"),  # in `changed`
    payee("P007", "CHF", 2000, account_ref="CH9300762011623852957", bank_code="UBSWCHZH80A", country="CH"),
    payee("ACME//EU", "EUR", 3000, account_ref="AT611904300234573201", country="AT"),  # double '/'
    payee("P009", "EUR", 4000, account_ref="DE89370400440532013001", country="DE"),  # check digits off
    payee("P010", "GBP", 5000, account_ref="GB29NWBK60161331926819", bank_code="NOTABIC!", country="GB"),
    payee("P011", "GBP", 6000, account_ref="GB29NWBK60161331926819", country="GB"),  # no BIC
    payee("P012", "USD", 7000, account_ref="123456789", bank_code="021000022", country="US"),  # check digit off
    payee("P013", "USD", 8000, account_ref="12AB", bank_code="021000021", country="US"),  # not 4-17 digits
    payee("P014", "KWD", 9000, method="paypal", account_ref="kw@example.com", country="KW"),  # PayPal has no KWD
]

EXPECTED_PLACEMENT = {
    "PO-202501-P001": "sepa_credit_transfer.xml",
    "PO-202501-P002": "sepa_credit_transfer.xml",
    "PO-202501-P003": "international_credit_transfer.xml",
    "PO-202501-P004": "ach_credit.ach",
    "PO-202501-P005": "paypal_payouts_USD.csv",
    "PO-202501-P006": "manual_payments.csv",
    "PO-202501-P007": "manual_payments.csv",
    "PO-202501-ACME//EU": "manual_payments.csv",
    "PO-202501-P009": "manual_payments.csv",
    "PO-202501-P010": "manual_payments.csv",
    "PO-202501-P011": "manual_payments.csv",
    "PO-202501-P012": "manual_payments.csv",
    "PO-202501-P013": "manual_payments.csv",
    "PO-202501-P014": "manual_payments.csv",
}

EXPECTED_MANUAL = (
    "payment_reference,partner_id,payout_currency,net_amount,reason\n"
    "PO-202501-ACME//EU,ACME//EU,EUR,30.00,reference_unusable\n"
    "PO-202501-P006,P006,EUR,10.00,bank_details_changed\n"
    "PO-202501-P007,P007,CHF,20.00,no_payer\n"
    "PO-202501-P009,P009,EUR,40.00,invalid_iban\n"
    "PO-202501-P010,P010,GBP,50.00,invalid_bic\n"
    "PO-202501-P011,P011,GBP,60.00,missing_bank_code\n"
    "PO-202501-P012,P012,USD,70.00,invalid_routing_number\n"
    "PO-202501-P013,P013,USD,80.00,invalid_account\n"
    "PO-202501-P014,P014,KWD,9.000,no_file_for_currency\n"
)

EXPECTED_PAYPAL = "payouts@example.com,75.00,USD,PO-202501-P005,Partner payout 2025-01 PO-202501-P005\n"

# CreDtTm: the release 2025-02-01 09:30:15.123456 UTC without microseconds; CtrlSum 1250.50 + 99.99.
# Creditor 1: "Zoë Ærøskøbing Straße" transliterated; IBAN compacted; no BIC (EEA) so no CdtrAgt.
EXPECTED_SEPA = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09">
  <CstmrCdtTrfInitn>
    <GrpHdr>
      <MsgId>PO-202501-SEPA</MsgId>
      <CreDtTm>2025-02-01T09:30:15Z</CreDtTm>
      <NbOfTxs>2</NbOfTxs>
      <CtrlSum>1350.49</CtrlSum>
      <InitgPty>
        <Nm>Example Software Inc.</Nm>
      </InitgPty>
    </GrpHdr>
    <PmtInf>
      <PmtInfId>PO-202501-SEPA-1</PmtInfId>
      <PmtMtd>TRF</PmtMtd>
      <NbOfTxs>2</NbOfTxs>
      <CtrlSum>1350.49</CtrlSum>
      <PmtTpInf>
        <SvcLvl>
          <Cd>SEPA</Cd>
        </SvcLvl>
      </PmtTpInf>
      <ReqdExctnDt>
        <Dt>2025-02-03</Dt>
      </ReqdExctnDt>
      <Dbtr>
        <Nm>Example Software Inc.</Nm>
      </Dbtr>
      <DbtrAcct>
        <Id>
          <IBAN>DE89370400440532013000</IBAN>
        </Id>
      </DbtrAcct>
      <DbtrAgt>
        <FinInstnId>
          <BICFI>COBADEFFXXX</BICFI>
        </FinInstnId>
      </DbtrAgt>
      <ChrgBr>SLEV</ChrgBr>
      <CdtTrfTxInf>
        <PmtId>
          <EndToEndId>PO-202501-P001</EndToEndId>
        </PmtId>
        <Amt>
          <InstdAmt Ccy="EUR">1250.50</InstdAmt>
        </Amt>
        <Cdtr>
          <Nm>Zoe Aeroskobing Strasse GmbH</Nm>
          <PstlAdr>
            <Ctry>FR</Ctry>
          </PstlAdr>
        </Cdtr>
        <CdtrAcct>
          <Id>
            <IBAN>FR1420041010050500013M02606</IBAN>
          </Id>
        </CdtrAcct>
        <RmtInf>
          <Ustrd>PO-202501-P001</Ustrd>
        </RmtInf>
      </CdtTrfTxInf>
      <CdtTrfTxInf>
        <PmtId>
          <EndToEndId>PO-202501-P002</EndToEndId>
        </PmtId>
        <Amt>
          <InstdAmt Ccy="EUR">99.99</InstdAmt>
        </Amt>
        <CdtrAgt>
          <FinInstnId>
            <BICFI>ABNANL2A</BICFI>
          </FinInstnId>
        </CdtrAgt>
        <Cdtr>
          <Nm>Acme BV</Nm>
          <PstlAdr>
            <Ctry>NL</Ctry>
          </PstlAdr>
        </Cdtr>
        <CdtrAcct>
          <Id>
            <IBAN>NL91ABNA0417164300</IBAN>
          </Id>
        </CdtrAcct>
        <RmtInf>
          <Ustrd>PO-202501-P002</Ustrd>
        </RmtInf>
      </CdtTrfTxInf>
    </PmtInf>
  </CstmrCdtTrfInitn>
</Document>
"""

# One GBP block, ChrgBr DEBT, debited from payer.accounts["GBP"].
EXPECTED_INTL = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09">
  <CstmrCdtTrfInitn>
    <GrpHdr>
      <MsgId>PO-202501-INTL</MsgId>
      <CreDtTm>2025-02-01T09:30:15Z</CreDtTm>
      <NbOfTxs>1</NbOfTxs>
      <CtrlSum>500.00</CtrlSum>
      <InitgPty>
        <Nm>Example Software Inc.</Nm>
      </InitgPty>
    </GrpHdr>
    <PmtInf>
      <PmtInfId>PO-202501-INTL-GBP</PmtInfId>
      <PmtMtd>TRF</PmtMtd>
      <NbOfTxs>1</NbOfTxs>
      <CtrlSum>500.00</CtrlSum>
      <ReqdExctnDt>
        <Dt>2025-02-03</Dt>
      </ReqdExctnDt>
      <Dbtr>
        <Nm>Example Software Inc.</Nm>
      </Dbtr>
      <DbtrAcct>
        <Id>
          <IBAN>GB33BUKB20201555555555</IBAN>
        </Id>
      </DbtrAcct>
      <DbtrAgt>
        <FinInstnId>
          <BICFI>COBADEFFXXX</BICFI>
        </FinInstnId>
      </DbtrAgt>
      <ChrgBr>DEBT</ChrgBr>
      <CdtTrfTxInf>
        <PmtId>
          <EndToEndId>PO-202501-P003</EndToEndId>
        </PmtId>
        <Amt>
          <InstdAmt Ccy="GBP">500.00</InstdAmt>
        </Amt>
        <CdtrAgt>
          <FinInstnId>
            <BICFI>NWBKGB2L</BICFI>
          </FinInstnId>
        </CdtrAgt>
        <Cdtr>
          <Nm>Angstrom Ltd</Nm>
          <PstlAdr>
            <Ctry>GB</Ctry>
          </PstlAdr>
        </Cdtr>
        <CdtrAcct>
          <Id>
            <IBAN>GB29NWBK60161331926819</IBAN>
          </Id>
        </CdtrAcct>
        <RmtInf>
          <Ustrd>PO-202501-P003</Ustrd>
        </RmtInf>
      </CdtTrfTxInf>
    </PmtInf>
  </CstmrCdtTrfInitn>
</Document>
"""

# NACHA, field by field (positions 1-based):
# entry hash = RDFI 02100002 (routing 021000021 without its check digit 1) = 0002100002
# total credits = 1234.56 USD = 123456 cents = 000000123456; entry/addenda count = 1 entry + 1 addenda
# records 1, 5, 6, 7, 8, 9 = 6 -> one block of 10 with four all-9 padding records
FH = ("1" "01" " 091000019" "1234567890" "250201" "0930" "A" "094" "10" "1"
      + " " * 23 + "EXAMPLE SOFTWARE".ljust(23) + "PO202501")
BH = ("5" "220" "EXAMPLE SOFTWARE" + " " * 20 + "1234567890" "CCD" "PAYOUTS   " + " " * 6
      + "250203" "   " "1" "09100001" "0000001")
ED = ("6" "32" "02100002" "1" + "123456789012".ljust(17) + "0000123456" + "P004".ljust(15)
      + "SMITH & SONS CONSULTIN" + "  " "1" "09100001" "0000001")
AD = "7" "05" + "PO-202501-P004".ljust(80) + "0001" "0000001"
BC = ("8" "220" "000002" "0002100002" "000000000000" "000000123456" "1234567890" + " " * 19 + " " * 6
      + "09100001" "0000001")
FC = "9" "000001" "000001" "00000002" "0002100002" "000000000000" "000000123456" + " " * 39
EXPECTED_ACH = "".join(r + "\n" for r in [FH, BH, ED, AD, BC, FC] + ["9" * 94] * 4)


@pytest.fixture(scope="module")
def batch():
    return build_payment_files(
        MONTH, PAYEES, HAND_PAYER, execution_date=EXECUTION, released_at=RELEASED, changed={"P006"}
    )


def test_files_written(batch):
    assert list(batch.files) == [
        "ach_credit.ach",
        "international_credit_transfer.xml",
        "manual_payments.csv",
        "paypal_payouts_USD.csv",
        "sepa_credit_transfer.xml",
    ]


def test_each_partner_lands_where_derived(batch):
    assert batch.placement == dict(sorted(EXPECTED_PLACEMENT.items()))


def test_sepa_bytes(batch):
    assert batch.files["sepa_credit_transfer.xml"].decode("utf-8") == EXPECTED_SEPA
    validate_pain001(batch.files["sepa_credit_transfer.xml"])


def test_international_bytes(batch):
    assert batch.files["international_credit_transfer.xml"].decode("utf-8") == EXPECTED_INTL
    validate_pain001(batch.files["international_credit_transfer.xml"])


def test_every_nacha_record(batch):
    assert all(len(r) == 94 for r in [FH, BH, ED, AD, BC, FC])
    assert batch.files["ach_credit.ach"].decode("ascii") == EXPECTED_ACH


def test_paypal_and_manual_bytes(batch):
    assert batch.files["paypal_payouts_USD.csv"].decode("utf-8") == EXPECTED_PAYPAL
    assert batch.files["manual_payments.csv"].decode("utf-8") == EXPECTED_MANUAL


def test_manual_reasons(batch):
    assert batch.manual == {
        "PO-202501-ACME//EU": "reference_unusable",
        "PO-202501-P006": "bank_details_changed",
        "PO-202501-P007": "no_payer",
        "PO-202501-P009": "invalid_iban",
        "PO-202501-P010": "invalid_bic",
        "PO-202501-P011": "missing_bank_code",
        "PO-202501-P012": "invalid_routing_number",
        "PO-202501-P013": "invalid_account",
        "PO-202501-P014": "no_file_for_currency",
    }


def test_summary_and_totals(batch):
    summary = {name: s.as_json() for name, s in batch.summary.items()}
    for name, data in batch.files.items():
        assert summary[name]["sha256"] == hashlib.sha256(data).hexdigest()
    counts = {name: (s["count"], s["control_sum"]) for name, s in summary.items()}
    assert counts == {
        "ach_credit.ach": (1, {"USD": "1234.56"}),
        "international_credit_transfer.xml": (1, {"GBP": "500.00"}),
        # manual: CHF 20.00; EUR 10.00 + 30.00 + 40.00; GBP 50.00 + 60.00; KWD 9.000; USD 70.00 + 80.00
        "manual_payments.csv": (9, {"CHF": "20.00", "EUR": "80.00", "GBP": "110.00", "KWD": "9.000", "USD": "150.00"}),
        "paypal_payouts_USD.csv": (1, {"USD": "75.00"}),
        "sepa_credit_transfer.xml": (2, {"EUR": "1350.49"}),
    }
    # EUR 1350.49 + 80.00; GBP 500.00 + 110.00; USD 1234.56 + 75.00 + 150.00
    assert batch.totals == {"CHF": "20.00", "EUR": "1430.49", "GBP": "610.00", "KWD": "9.000", "USD": "1459.56"}
    assert batch.payments_json()["totals"] == batch.totals


def test_same_inputs_same_bytes_in_any_order(batch):
    again = build_payment_files(
        MONTH, list(reversed(PAYEES)), HAND_PAYER, execution_date=EXECUTION, released_at=RELEASED,
        changed={"P006"},
    )
    assert again.files == batch.files
