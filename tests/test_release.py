"""`payouts release` (SPEC section 8): a small month computed by hand, every paid partner in exactly
one file, bank details that changed or cannot be used paid by hand, the order and the seal."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from builders import build, claim, partner, read_rows, sub

from pipelines import engine
from pipelines.close import audit
from pipelines.close.actions import Who
from pipelines.engine import PayoutError, run_month
from pipelines.payments.nacha import validate_nacha
from pipelines.payments.pain001 import validate_pain001

ROOT = Path(__file__).resolve().parent.parent
PAYER = """
payer:
  name: Example Software Inc.
  iban: DE89370400440532013000
  bic: COBADEFFXXX
  accounts: {GBP: GB33BUKB20201555555555}
  ach:
    odfi_routing: "091000019"
    company_id: "1234567890"
    company_name: EXAMPLE SOFTWARE
"""
ACCOUNTS = {  # the full account numbers: they may appear in payment files only
    "E1": "DE44500105175407324931", "G1": "GB82WEST12345698765432", "U1": "123456789",
    "X1": "987654321", "C1": "FR1420041010050500013M02606",
}
FX = [{"rate_date": "2025-03-01", "currency": "EUR", "rate": "1.10"},
      {"rate_date": "2025-03-01", "currency": "GBP", "rate": "1.25"}]


def tree(root: Path) -> Path:
    partners = [
        partner("E1", name="Zoë Ærøskøbing GmbH", payout_currency="EUR", account_ref=ACCOUNTS["E1"], country="DE",
                bank_code=""),
        partner("G1", name="Smith & Sons Ltd", payout_currency="GBP", account_ref=ACCOUNTS["G1"], country="GB",
                bank_code="WESTGB2L"),
        partner("U1", name="Acme Inc.", payout_currency="USD", account_ref=ACCOUNTS["U1"], country="US",
                bank_code="021000021", account_type="savings"),
        partner("P1", name="Pay Pal Partner", payout_currency="USD", payout_method="paypal",
                account_ref="payouts+p1@example.com", country="US", bank_code=""),
        partner("X1", name="Bad Routing LLC", payout_currency="USD", account_ref=ACCOUNTS["X1"], country="US",
                bank_code="021000022"),  # check digit wrong
        partner("C1", name="Changes Later SAS", payout_currency="EUR", account_ref=ACCOUNTS["C1"], country="FR",
                bank_code=""),
    ]
    claims = [claim(f"A{p}", f"C{p}", p) for p in ("E1", "G1", "U1", "P1", "X1", "C1")]
    currency = {"E1": "EUR", "G1": "GBP", "C1": "EUR"}
    lines = [sub(f"L{p}", f"C{p}", "400.00", "2025-03-10", currency=currency.get(p, "USD"))
             for p in ("E1", "G1", "U1", "P1", "X1", "C1")]
    data = build(root, partners=partners, attributions=claims, fx=FX,
                 months={"2025-03": {"subscription_billing": lines}, "2025-04": {}})
    program = data / "reference" / "program.yaml"
    program.write_text(program.read_text() + PAYER)
    return data


@pytest.fixture
def month(tmp_path):
    data = tree(tmp_path / "data")
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    return data, out


def test_run_reports_the_partner_no_payment_file_can_carry(month):
    data, out = month
    reported = [r for r in read_rows(out / "2025-03" / "exceptions.csv") if r["reason_code"] == "bank_details_unusable"]
    assert [(r["kind"], r["source_file"], r["record_id"]) for r in reported] == \
        [("reported", "reference/partners.csv", "X1")]
    assert reported[0]["message"].startswith("invalid_routing_number")
    manifest = json.loads((out / "2025-03" / "manifest.json").read_text())
    assert sorted(manifest["bank_details"]) == ["C1", "E1", "G1", "P1", "U1", "X1", "payer"]


def test_without_a_payer_run_still_reports_details_no_file_could_carry(tmp_path):
    """SPEC section 8: run reports each partner it pays whose details no file can carry. Without a
    payer everybody is paid by hand (not reported), but X1's routing number and P1's PayPal receiver
    would fail any payer's file: those two are reported."""
    data = tree(tmp_path / "data")
    program = data / "reference" / "program.yaml"
    program.write_text(program.read_text().replace(PAYER, ""))
    partners = data / "reference" / "partners.csv"
    partners.write_text(partners.read_text().replace("payouts+p1@example.com", "not-an-address"))
    run_month(data, tmp_path / "out", "2025-03")
    reported = {r["record_id"]: r["message"].split(":")[0]
                for r in read_rows(tmp_path / "out" / "2025-03" / "exceptions.csv")
                if r["reason_code"] == "bank_details_unusable"}
    assert reported == {"X1": "invalid_routing_number", "P1": "invalid_account"}


def test_release_writes_each_partner_into_exactly_one_file(month):
    data, out = month
    with pytest.raises(PayoutError, match="^2025-03 cannot be released: it is a draft: approve it first$"):
        engine.release(data, out, "2025-03", Who("alice"))
    engine.approve(data, out, "2025-03", Who("alice"))
    # C1's bank details change after the month was computed: never paid blindly
    partners = data / "reference" / "partners.csv"
    partners.write_text(partners.read_text().replace(ACCOUNTS["C1"], "FR7630006000011234567890189"))
    result = engine.release(data, out, "2025-03", Who("bob"), "2099-01-06")
    pay = out / "2025-03" / "payments"
    files = sorted(p.name for p in pay.iterdir())
    assert files == ["ach_credit.ach", "international_credit_transfer.xml", "manual_payments.csv", "payments.json",
                     "paypal_payouts_USD.csv", "sepa_credit_transfer.xml"]
    # every share: 400.00 x 0.25 = 100.00 in the line's (and payout) currency
    sepa = (pay / "sepa_credit_transfer.xml").read_bytes()
    validate_pain001(sepa)
    assert b"<EndToEndId>PO-202503-E1</EndToEndId>" in sepa and b'<InstdAmt Ccy="EUR">100.00</InstdAmt>' in sepa
    assert b"PO-202503-C1" not in sepa
    assert b"<Nm>Zoe Aeroskobing GmbH</Nm>" in sepa  # transliterated to the SEPA character set
    assert b"<Dt>2099-01-06</Dt>" in sepa  # the requested execution date
    intl = (pay / "international_credit_transfer.xml").read_bytes()
    validate_pain001(intl)
    assert b'<InstdAmt Ccy="GBP">100.00</InstdAmt>' in intl and b"GB33BUKB20201555555555" in intl  # payer.accounts
    ach = (pay / "ach_credit.ach").read_bytes()
    validate_nacha(ach)
    entries = [line for line in ach.decode().splitlines() if line.startswith("6")]
    assert len(entries) == 1
    assert entries[0][1:3] == "32" and entries[0][3:12] == "021000021"  # savings; the RDFI and its check digit
    assert entries[0][12:29].rstrip() == ACCOUNTS["U1"] and entries[0][29:39] == "0000010000"
    assert "PO-202503-U1" in [line for line in ach.decode().splitlines() if line.startswith("705")][0]
    paypal = list(csv.reader(io.StringIO((pay / "paypal_payouts_USD.csv").read_text())))
    assert paypal[0][:4] == ["payouts+p1@example.com", "100.00", "USD", "PO-202503-P1"]
    manual = read_rows(pay / "manual_payments.csv")
    assert [(r["partner_id"], r["net_amount"], r["reason"]) for r in manual] == [
        ("C1", "100.00", "bank_details_changed"), ("X1", "100.00", "invalid_routing_number")]
    assert result["bank_details_changed"] == ["C1"]
    sealed = json.loads((pay / "payments.json").read_text())
    assert sealed["totals"] == {"EUR": "200.00", "GBP": "100.00", "USD": "300.00"}  # = the remittance's net
    assert {n: f["count"] for n, f in sealed["files"].items()} == {
        "ach_credit.ach": 1, "international_credit_transfer.xml": 1, "manual_payments.csv": 2,
        "paypal_payouts_USD.csv": 1, "sepa_credit_transfer.xml": 1}
    assert sealed["audit_line_sha256"] == audit.sha256((out / "audit.jsonl").read_text().splitlines()[-1])
    for p in pay.iterdir():
        assert p.stat().st_mode & 0o777 == 0o400, p
    assert pay.stat().st_mode & 0o777 == 0o500
    assert engine.status(out)[0]["state"] == "released"
    assert engine.verify(out)["ok"]
    # full account numbers only in the payment files (payments.json and manual_payments.csv hold none)
    for p in out.rglob("*"):
        if p.is_file() and p.name not in ("ach_credit.ach", "international_credit_transfer.xml",
                                          "sepa_credit_transfer.xml", "paypal_payouts_USD.csv"):
            text = p.read_bytes().decode("utf-8", "replace")
            for pid, account in ACCOUNTS.items():
                assert account not in text, (p, pid)


def test_release_happens_once_and_in_order(month, tmp_path):
    data, out = month
    run_month(data, out, "2025-04")
    engine.approve(data, out, "2025-03", Who("alice"))
    engine.approve(data, out, "2025-04", Who("alice"))
    with pytest.raises(PayoutError, match="^release 2025-03 first: months are released oldest first$"):
        engine.release(data, out, "2025-04", Who("alice"))
    engine.release(data, out, "2025-03", Who("alice"))
    with pytest.raises(PayoutError, match=r"^2025-03 cannot be released: it was already released \(approved by"):
        engine.release(data, out, "2025-03", Who("alice"))
    with pytest.raises(PayoutError, match="^2025-03 cannot be reopened: it was released: corrections go into"):
        engine.reopen(out, "2025-03", Who("alice"), "too late")
    with pytest.raises(PayoutError, match=r"^execution date 2020-01-02 is before the release"):
        engine.release(data, out, "2025-04", Who("alice"), "2020-01-02")


def test_a_changed_payer_block_refuses_the_release(month):
    data, out = month
    engine.approve(data, out, "2025-03", Who("alice"))
    program = data / "reference" / "program.yaml"
    program.write_text(program.read_text().replace("COBADEFFXXX", "DEUTDEFFXXX"))
    with pytest.raises(PayoutError, match="^program.yaml's payer block changed since 2025-03 was computed: reopen"):
        engine.release(data, out, "2025-03", Who("alice"))
    assert not (out / "2025-03" / "payments").exists()


def test_the_cli_releases_and_names_changed_partners(month):
    data, out = month
    engine.approve(data, out, "2025-03", Who("alice"))
    partners = data / "reference" / "partners.csv"
    partners.write_text(partners.read_text().replace("021000021", "026009593"))
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "release", "--month", "2025-03", "--by", "alice",
                           "--execution-date", "2099-01-06", "--data", str(data), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ("payouts: U1's bank details changed since 2025-03 was computed: paid by hand "
                                   "(manual_payments.csv)")
