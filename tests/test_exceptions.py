"""Bad input of every kind in the spec's Exceptions paragraph: quarantined with file, row and reason."""

import json

from builders import build, claim, partner, proj, read_rows, sub, write_csv

from pipelines.engine import run_month

SUB = "exports/2025-03/subscription_billing.csv"
PROJ = "exports/2025-03/project_billing.csv"
FEES = "exports/2025-03/partner_fees.csv"
REFS = "exports/2025-03/referral_events.csv"


def test_every_exception_kind(tmp_path):
    data = tmp_path / "data"
    subs = [
        sub("OK1", "C1", "100.00", "2025-03-02"),                       # line 2: fine
        sub("BADDATE", "C1", "100.00", "2025-03-32"),                   # 3: bad_date
        sub("BADAMT", "C1", "12,5", "2025-03-02"),                      # 4: bad_amount (quoted comma)
        sub("DEC", "C1", "10.001", "2025-03-02"),                       # 5: too_many_decimals
        sub("NEG", "C1", "-5.00", "2025-03-02"),                        # 6: charge_below_zero
        sub("POSREF", "C1", "5.00", "2025-03-02", line_type="refund", refers_to_line_id="OK1"),  # 7
        sub("OUT", "C1", "100.00", "2025-04-01"),                       # 8: date_outside_month
        sub("OK1", "C1", "100.00", "2025-03-03"),                       # 9: duplicate_line_id
        sub("CUR", "C1", "100.00", "2025-03-02", currency="XXY"),       # 10: unknown_currency
        sub("FAM", "C1", "100.00", "2025-03-02", product_family="widgets"),  # 11: unknown_product_family
        sub("ORPHAN", "C1", "-1.00", "2025-03-02", line_type="refund", refers_to_line_id="NOPE"),  # 12
        sub("XCUR", "C1", "-1.00", "2025-03-02", line_type="chargeback", refers_to_line_id="OK1",
            currency="EUR"),                                            # 13: refund_currency_mismatch
        sub("R1", "C1", "-60.00", "2025-03-04", line_type="refund", refers_to_line_id="OK1"),   # 14: fine
        sub("R2", "C1", "-50.00", "2025-03-05", line_type="refund", refers_to_line_id="OK1"),   # 15: exceeds
        sub("R3", "C1", "-40.00", "2025-03-06", line_type="refund", refers_to_line_id="OK1"),   # 16: fine (60+40)
        sub("JOINT", "C2", "100.00", "2025-03-02"),                     # 17: credit_over_100 (60 + 50)
    ]
    projects = [
        proj("J1", "P1", "100.00", "2025-03-02", engagement="joint"),   # line 2: joint_without_contribution
        proj("UNK", "P404", "100.00", "2025-03-02"),                    # 3: unknown_partner
        proj("OK1", "P1", "100.00", "2025-03-02"),   # 4: duplicate_line_id (subscription first)
    ]
    build(
        data,
        partners=[partner("P1"), partner("P2"), partner("P3")],
        attributions=[
            claim("A1", "C1", "P1"),
            claim("A2", "C2", "P2", credit_pct="60"),
            claim("A3", "C2", "P3", credit_pct="50"),
        ],
        fx=[{"rate_date": "2025-03-31", "currency": "EUR", "rate": "1.1"}],
        months={"2025-03": {
            "subscription_billing": subs,
            "project_billing": projects,
            "partner_fees": [{"fee_id": "F1", "partner_id": "P404", "fee_date": "2025-03-05", "fee_type": "api",
                              "currency": "USD", "amount": "10.00"}],
            "referral_events": [],
        }},
    )
    # a malformed row (wrong field count) appended by hand to the subscription file: line 18
    with open(data / SUB, "a") as fh:
        fh.write("SHORT,I1,2025-03-02,C1\n")
    run_month(data, tmp_path / "out", "2025-03")
    got = {(r["source_file"], int(r["row_number"])): (r["reason_code"], r["record_id"])
           for r in read_rows(tmp_path / "out" / "2025-03" / "exceptions.csv") if r["kind"] == "quarantined"}
    expected = {
        (SUB, 3): ("bad_date", "BADDATE"),
        (SUB, 4): ("bad_amount", "BADAMT"),
        (SUB, 5): ("too_many_decimals", "DEC"),
        (SUB, 6): ("charge_below_zero", "NEG"),
        (SUB, 7): ("refund_above_zero", "POSREF"),
        (SUB, 8): ("date_outside_month", "OUT"),
        (SUB, 9): ("duplicate_line_id", "OK1"),
        (SUB, 10): ("unknown_currency", "CUR"),
        (SUB, 11): ("unknown_product_family", "FAM"),
        (SUB, 12): ("refund_unknown_original", "ORPHAN"),
        (SUB, 13): ("refund_currency_mismatch", "XCUR"),
        (SUB, 15): ("refund_exceeds_original", "R2"),
        (SUB, 17): ("credit_over_100", "JOINT"),
        (SUB, 18): ("malformed_row", "SHORT"),
        (PROJ, 2): ("joint_without_contribution", "J1"),
        (PROJ, 3): ("unknown_partner", "UNK"),
        (PROJ, 4): ("duplicate_line_id", "OK1"),
        (FEES, 2): ("unknown_partner", "F1"),
    }
    assert got == expected
    summary = json.loads((tmp_path / "out" / "2025-03" / "summary.json").read_text())
    assert summary["files"]["subscription_billing"] == {"read": 17, "used": 3, "quarantined": 14}
    assert summary["files"]["project_billing"] == {"read": 3, "used": 0, "quarantined": 3}
    assert summary["files"]["partner_fees"] == {"read": 1, "used": 0, "quarantined": 1}
    # OK1 100.00 at 0.25 = 25.00; R1 -60.00 claws back 15.00, R3 -40.00 claws back 10.00: balance 0
    bal = {r["partner_id"]: r for r in read_rows(tmp_path / "out" / "2025-03" / "partner_balances.csv")}
    assert (bal["P1"]["earnings"], bal["P1"]["clawbacks"], bal["P1"]["closing_balance"]) == ("25.00", "-25.00", "0.00")
    assert bal["P1"]["status"] == "nothing_due"


def test_fixing_the_data_and_rerunning_picks_the_row_up(tmp_path):
    data = tmp_path / "data"
    build(data, partners=[partner("P1")], attributions=[claim("A1", "C1", "P1")],
          months={"2025-03": {"subscription_billing": [sub("L1", "C1", "400.00", "2025-03-32")]}})
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    assert [r["reason_code"] for r in read_rows(out / "2025-03" / "exceptions.csv")] == ["bad_date"]
    write_csv(data / SUB, list(read_rows(data / SUB)[0]), [sub("L1", "C1", "400.00", "2025-03-31")])
    run_month(data, out, "2025-03")  # the latest month may run again
    assert read_rows(out / "2025-03" / "exceptions.csv") == []
    assert read_rows(out / "2025-03" / "remittance.csv")[0]["gross_amount"] == "100.00"
