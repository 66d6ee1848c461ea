"""Secrets and spreadsheet safety: account references and formula injection."""

import subprocess
import sys

from builders import build, claim, partner, proj, read_rows, sub

from pipelines.engine import run_month

ACCOUNT = "DE89370400440532013000"


def _month(tmp_path):
    data = tmp_path / "data"
    build(
        data,
        partners=[
            partner("=HYPERLINK(\"http://x\")", name="=1+2", account_ref=ACCOUNT),
            partner("P2", name="+SUM(A1)", account_ref="GB29NWBK60161331926819"),
            partner("P3", name="-2+3", account_ref="FR1420041010050500013M02606"),
            partner("P4", name="@cmd", account_ref="IT60X0542811101000000123456"),
            partner("P5", name="\tTabbed", account_ref="NL91ABNA0417164300"),
        ],
        attributions=[claim(f"A{i}", f"C{i}", pid) for i, pid in
                      enumerate(["=HYPERLINK(\"http://x\")", "P2", "P3", "P4", "P5"])],
        months={"2025-03": {"subscription_billing": [
            sub(f"L{i}", f"C{i}", "1000.00", "2025-03-10") for i in range(5)
        ] + [sub("=cmd|' /C calc'!A0", "C1", "-1.00", "2025-03-10", line_type="refund", refers_to_line_id="nope")],
            # a project id (a statement's item) that is a formula with a comma: made text, then quoted
            "project_billing": [proj("PL1", "P2", "100.00", "2025-03-10", project_id="=SUM(1,2)")]}},
    )
    return data


def test_account_ref_never_leaves_beyond_last4(tmp_path):
    data = _month(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "-v", "run", "--month", "2025-03",
                           "--data", str(data), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    accounts = [r["account_ref"] for r in read_rows(data / "reference" / "partners.csv")]
    texts = [proc.stdout, proc.stderr] + [p.read_text() for p in (out / "2025-03").rglob("*") if p.is_file()]
    for acct in accounts:
        # no 5-character window of the account that holds a letter appears anywhere, nor any
        # 8-character one (a run of digits shorter than that also occurs in counts and amounts,
        # e.g. 10000 basis points inside IT60X0542811101000000123456)
        windows = {acct[i:i + 5] for i in range(len(acct) - 4) if not acct[i:i + 5].isdigit()}
        windows |= {acct[i:i + 8] for i in range(len(acct) - 7)}
        for text in texts:
            assert not any(w in text for w in windows), acct
    last4 = {r["partner_id"]: r["account_last4"] for r in read_rows(out / "2025-03" / "remittance.csv")}
    assert last4["P2"] == "6819" and last4["P3"] == "2606"
    # the ledger keeps no account references either
    assert not any(acct.encode() in (out / "ledger.duckdb").read_bytes() for acct in accounts)


def test_formula_text_stays_text(tmp_path):
    data = _month(tmp_path)
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    dangerous = ("=", "+", "-", "@", "\t", "\r")
    text_columns = {
        "remittance.csv": ["payment_reference", "partner_id", "partner_name", "account_last4"],
        "partner_balances.csv": ["partner_id"],
        "exceptions.csv": ["source_file", "record_id", "message"],
    }
    seen = 0
    for name, cols in text_columns.items():
        for row in read_rows(out / "2025-03" / name):
            for c in cols:
                assert not row[c].startswith(dangerous), (name, c, row[c])
                seen += row[c].startswith("'")
    names = {r["partner_id"]: r["partner_name"] for r in read_rows(out / "2025-03" / "remittance.csv")}
    assert names["P2"] == "'+SUM(A1)" and names["P3"] == "'-2+3" and names["P4"] == "'@cmd"
    assert names["P5"] == "'\tTabbed"
    assert "'=HYPERLINK(\"http://x\")" in names
    exc = read_rows(out / "2025-03" / "exceptions.csv")
    assert exc[0]["record_id"] == "'=cmd|' /C calc'!A0"
    p2 = (out / "2025-03" / "statements" / "P2.csv").read_text()
    assert [r["item"] for r in read_rows(out / "2025-03" / "statements" / "P2.csv") if r["record_id"] == "PL1"] == [
        "'=SUM(1,2)"]
    assert "\"'=SUM(1,2)\"" in p2  # quoted, as the comma needs
    for f in (out / "2025-03" / "statements").glob("*.csv"):
        for row in read_rows(f):
            for c in ("record_id", "customer_id", "item", "note", "source_file"):
                assert not row[c].startswith(dangerous), (f.name, c, row[c])
    assert seen >= 6
