"""Restatement (SPEC section 7): late reference data reaching into locked months, computed by hand.

January is run and approved (locked); then reference data changes with effect from January and
February is run. Shares are partner-led platform subscriptions of the test program: 0.25, level
uplift certified 0.025, tier step above 1,000,000 with uplift 0.10 (tests/fixtures/program.yaml).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from builders import build, claim, partner, read_rows, sub

from pipelines import engine
from pipelines.close.actions import Who
from pipelines.engine import run_month

MONTHS = ("2025-01", "2025-02", "2025-03")


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def restatements(out: Path, month: str) -> list[tuple]:
    rows = json.loads((out / month / "summary.json").read_text())["restatement"]
    return [(r["partner_id"], r["locked_month"], r["currency"], r["difference"], r["posted"]) for r in rows]


def locked_january(tmp_path, *, partners, claims, january, levels=(), program_text=None) -> tuple[Path, Path]:
    data = build(tmp_path / "data", partners=partners, attributions=claims, levels=levels,
                 months={"2025-01": {"subscription_billing": january}, "2025-02": {}, "2025-03": {}})
    if program_text:
        (data / "reference" / "program.yaml").write_text(program_text(
            (data / "reference" / "program.yaml").read_text()))
    out = tmp_path / "out"
    run_month(data, out, "2025-01")
    engine.approve(data, out, "2025-01", Who("alice"))
    return data, out


def append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


def test_a_back_dated_claim_a_back_dated_level_and_a_recovery(tmp_path):
    data, out = locked_january(
        tmp_path,
        partners=[partner("P1"), partner("P2"), partner("P3")],
        claims=[claim("A2", "C2", "P2"), claim("A3", "C3", "P3")],
        january=[sub("L1", "C1", "1000.00", "2025-01-10"),   # nobody's in January: the company kept it
                 sub("L2", "C2", "400.00", "2025-01-10"),    # P2, registered: 400.00 x 0.25 = 100.00
                 sub("L3", "C3", "200.00", "2025-01-10")])   # P3: 200.00 x 0.25 = 50.00
    before = snapshot(out / "2025-01")
    ref = data / "reference"
    append(ref / "attributions.csv", "A1,C1,P1,deal_registration,partner_led,,2025-01-01,,approved")  # + 250.00
    append(ref / "partner_levels.csv", "P2,certified,2025-01-01")  # 400.00 x 0.275 = 110.00: + 10.00
    (ref / "attributions.csv").write_text((ref / "attributions.csv").read_text().replace(
        "A3,C3,P3,partner_of_record,partner_led,,2024-01-01,,approved",
        "A3,C3,P3,partner_of_record,partner_led,,2024-01-01,,rejected"))  # - 50.00: recovered
    run_month(data, out, "2025-02")
    assert restatements(out, "2025-02") == [
        ("P1", "2025-01", "USD", "250.00", False), ("P2", "2025-01", "USD", "10.00", False),
        ("P3", "2025-01", "USD", "-50.00", False)]
    # listed, not posted: the balances do not move
    assert all(r["adjustments"] == "0.00" for r in read_rows(out / "2025-02" / "partner_balances.csv"))
    run_month(data, out, "2025-02", restate=True)
    assert [r[4] for r in restatements(out, "2025-02")] == [True, True, True]
    rows = {r["partner_id"]: r for r in read_rows(out / "2025-02" / "partner_balances.csv")}
    assert (rows["P1"]["adjustments"], rows["P1"]["gross_paid"], rows["P1"]["status"]) == ("250.00", "250.00", "paid")
    assert (rows["P2"]["adjustments"], rows["P2"]["status"]) == ("10.00", "below_minimum")  # minimum 50
    assert (rows["P3"]["adjustments"], rows["P3"]["closing_balance"], rows["P3"]["status"]) == \
        ("-50.00", "-50.00", "negative_balance")
    statement = (out / "2025-02" / "statements" / "P1.csv").read_text()
    assert ',restatement,,,2025-01,,,USD,,,,250.00,USD,,"restatement of 2025-01: attributions.csv, ' \
           'partner_levels.csv changed since"' in statement
    summary = json.loads((out / "2025-02" / "summary.json").read_text())
    assert summary["by_currency"]["USD"]["adjustments"] == "210.00"  # 250.00 + 10.00 - 50.00
    # posted once: March lists nothing more
    run_month(data, out, "2025-03")
    assert restatements(out, "2025-03") == []
    assert snapshot(out / "2025-01") == before  # a locked month never changes


def test_a_back_dated_agreement_version(tmp_path):
    data, out = locked_january(tmp_path, partners=[partner("P1")], claims=[claim("A1", "C1", "P1")],
                               january=[sub("L1", "C1", "400.00", "2025-01-05"),    # before the new version
                                        sub("L2", "C1", "400.00", "2025-01-20")])   # after it
    program = data / "reference" / "program.yaml"
    text = program.read_text()
    start = text.index("  - effective_from: 2025-01-01")
    end = text.index("payout:")
    version = text[start:end].replace("2025-01-01", "2025-01-15").replace("partner_led: 0.25", "partner_led: 0.30")
    program.write_text(text[:end] + version + text[end:])
    run_month(data, out, "2025-02")
    # L2 at 0.30 instead of 0.25: 400.00 x 0.05 = 20.00; L1 keeps the first version
    assert restatements(out, "2025-02") == [("P1", "2025-01", "USD", "20.00", False)]


def test_a_change_that_moves_a_partner_across_a_tier_step(tmp_path):
    data, out = locked_january(
        tmp_path, partners=[partner("P1")], claims=[claim("A1", "C1", "P1")],
        january=[sub("L1", "C1", "995000.00", "2025-01-05"),   # tier base 995,000 after it
                 sub("L2", "C2", "10000.00", "2025-01-20")])    # unattributed in January
    append(data / "reference" / "attributions.csv", "A2,C2,P1,deal_registration,partner_led,,2025-01-01,,approved")
    run_month(data, out, "2025-02")
    # SPEC worked example 5: 5000.00 x 0.25 + 5000.00 x 0.35 = 3000.00, all new to P1
    assert restatements(out, "2025-02") == [("P1", "2025-01", "USD", "3000.00", False)]


def test_a_second_change_posts_only_what_changed_since(tmp_path):
    data, out = locked_january(tmp_path, partners=[partner("P1")], claims=[],
                               january=[sub("L1", "C1", "1000.00", "2025-01-10")])
    attributions = data / "reference" / "attributions.csv"
    append(attributions, "A1,C1,P1,deal_registration,partner_led,,2025-01-01,,approved")
    run_month(data, out, "2025-02", restate=True)
    assert restatements(out, "2025-02") == [("P1", "2025-01", "USD", "250.00", True)]
    # then the claim turns out to be 40 %: January should have paid 1000.00 x 0.40 x 0.25 = 100.00
    attributions.write_text(attributions.read_text().replace("deal_registration,partner_led,,", "deal_registration,"
                                                                                                  "partner_led,40,"))
    run_month(data, out, "2025-03", restate=True)
    assert restatements(out, "2025-03") == [("P1", "2025-01", "USD", "-150.00", True)]  # 100.00 - 0 - 250.00
    rows = {r["partner_id"]: r for r in read_rows(out / "2025-03" / "partner_balances.csv")}
    assert rows["P1"]["adjustments"] == "-150.00"
    # a rerun of March posts the same again, not twice
    run_month(data, out, "2025-03", restate=True)
    assert restatements(out, "2025-03") == [("P1", "2025-01", "USD", "-150.00", True)]


def test_a_locked_month_is_recomputed_with_its_own_fx_rates(tmp_path):
    """An EUR-payout partner's January USD share is compared in USD (the line's currency); a rate
    entered later for January does not restate anything by itself."""
    data, out = locked_january(
        tmp_path, partners=[partner("P1", payout_currency="EUR")], claims=[claim("A1", "C1", "P1")],
        january=[sub("L1", "C1", "400.00", "2025-01-10")])
    fx = data / "reference" / "fx_rates.csv"
    append(fx, "2025-01-31,EUR,1.2500")
    run_month(data, out, "2025-02")
    assert restatements(out, "2025-02") == []


def test_several_locked_months_are_recomputed_in_order(tmp_path):
    """January and February locked; a claim back-dated to January reaches both: March lists each."""
    data = build(tmp_path / "data", partners=[partner("P1")], attributions=[],
                 months={"2025-01": {"subscription_billing": [sub("L1", "C1", "400.00", "2025-01-10")]},
                         "2025-02": {"subscription_billing": [sub("L2", "C1", "800.00", "2025-02-10")]},
                         "2025-03": {}})
    out = tmp_path / "out"
    for month in ("2025-01", "2025-02"):
        run_month(data, out, month)
        engine.approve(data, out, month, Who("alice"))
    append(data / "reference" / "attributions.csv", "A1,C1,P1,deal_registration,partner_led,,2025-01-01,,approved")
    run_month(data, out, "2025-03")
    assert restatements(out, "2025-03") == [("P1", "2025-01", "USD", "100.00", False),   # 400.00 x 0.25
                                            ("P1", "2025-02", "USD", "200.00", False)]   # 800.00 x 0.25
