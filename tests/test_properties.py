"""Property tests on generated months: the invariants every run must keep, whatever the data.

Each example is two consecutive months of random partners (payout in USD, EUR, JPY or KWD, every
status and payout method), claims (all sources, joint credit), subscription and project lines
in four currencies with refunds of earlier charges, fees and fx rates. Both months are run, and
the outputs are checked against the inputs by independent arithmetic.
"""

from __future__ import annotations

import csv
import hashlib
import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from builders import build, claim, partner, proj, read_rows, sub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.engine import PayoutError, run_month

DIGITS = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}
RATES = {"USD": "1", "EUR": "1.0843", "JPY": "0.006712", "KWD": "3.2571"}
MONTHS = ("2025-03", "2025-04")


def money(draw, currency: str, lo: int, hi: int) -> str:
    d = DIGITS[currency]
    minor = draw(st.integers(lo * 10**d, hi * 10**d))
    return str(Decimal(minor).scaleb(-d))


@st.composite
def payout_months(draw):
    n_partners = draw(st.integers(2, 5))
    pids = [f"P{i}" for i in range(n_partners)]
    partners = [
        partner(
            p,
            payout_currency=draw(st.sampled_from(list(DIGITS))),
            payout_method=draw(st.sampled_from(["bank_transfer", "bank_transfer", "paypal", "none"])),
            status=draw(st.sampled_from(["active", "active", "active", "suspended", "terminated"])),
            withholding_tax_pct=draw(st.sampled_from(["0", "10", "30", "12.5"])),
            min_payout=draw(st.sampled_from(["", "", "0", "1"])),
        )
        for p in pids
    ]
    customers = [f"C{i}" for i in range(draw(st.integers(1, 5)))]
    claims = []
    for i, c in enumerate(customers):
        for j in range(draw(st.integers(0, 2))):
            claims.append(claim(
                f"A{i}_{j}", c, draw(st.sampled_from(pids)),
                source=draw(st.sampled_from(["partner_of_record", "deal_registration", "referral_link"])),
                engagement_type=draw(st.sampled_from(["partner_led", "company_led", "joint"])),
                credit_pct=draw(st.sampled_from(["", "100", "50", "40", "33.3333"])),
            ))
    fx = [{"rate_date": "2025-03-31", "currency": c, "rate": r} for c, r in RATES.items() if c != "USD"]
    months = {}
    charges = []  # (line_id, currency, amount) of earlier charges, for refunds
    for m_i, month in enumerate(MONTHS):
        subs, projs, fees = [], [], []
        for k in range(draw(st.integers(1, 8))):
            cur = draw(st.sampled_from(list(DIGITS)))
            lid = f"S{m_i}_{k}"
            amount = money(draw, cur, 0, 5000)
            subs.append(sub(lid, draw(st.sampled_from(customers)), amount, f"{month}-{draw(st.integers(1, 28)):02d}",
                            currency=cur, product_family=draw(st.sampled_from(["platform", "factory"])),
                            subscription_start=draw(st.sampled_from(["2023-02-15", "2024-12-31", "2025-03-01"]))))
            charges.append((lid, cur, Decimal(amount)))
        for k in range(draw(st.integers(0, 3))):
            cur = draw(st.sampled_from(list(DIGITS)))
            eng = draw(st.sampled_from(["partner_led", "company_led", "joint"]))
            projs.append(proj(f"J{m_i}_{k}", draw(st.sampled_from(pids)), money(draw, cur, 0, 90000),
                              f"{month}-{draw(st.integers(1, 28)):02d}", engagement=eng, currency=cur,
                              contract_value=money(draw, cur, 1000, 400000),
                              partner_contribution_pct=draw(st.sampled_from(["60", "25.5"])) if eng == "joint" else ""))
        for k, (lid, cur, amt) in enumerate(draw(st.lists(st.sampled_from(charges), max_size=3, unique=True))
                                            if charges else []):
            part = (amt * Decimal(draw(st.sampled_from(["0.4", "1", "0.3333"])))).quantize(
                Decimal(1).scaleb(-DIGITS[cur]))
            subs.append(sub(f"R{m_i}_{k}", "C0", str(-part), f"{month}-28", currency=cur,
                            line_type=draw(st.sampled_from(["refund", "chargeback"])), refers_to_line_id=lid))
        for k in range(draw(st.integers(0, 2))):
            cur = draw(st.sampled_from(list(DIGITS)))
            fees.append({"fee_id": f"F{m_i}_{k}", "partner_id": draw(st.sampled_from(pids)),
                         "fee_date": f"{month}-15", "fee_type": "platform", "currency": cur,
                         "amount": money(draw, cur, 0, 800)})
        months[month] = {"subscription_billing": subs, "project_billing": projs, "partner_fees": fees}
    return {"partners": partners, "attributions": claims, "fx": fx, "months": months}


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def dec(s: str) -> Decimal:
    return Decimal(s) if s else Decimal(0)


def round_half_away(x: Decimal, digits: int) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)  # HALF_UP in decimal = away from zero


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=payout_months())
def test_invariants(case, tmp_path_factory):
    root = tmp_path_factory.mktemp("prop")
    data, out = root / "data", root / "out"
    build(data, partners=case["partners"], attributions=case["attributions"], fx=case["fx"], months=case["months"])
    for month in MONTHS:
        run_month(data, out, month)

    closing_before: dict[str, Decimal] = {}
    for month in MONTHS:
        folder = out / month
        summary = json.loads((folder / "summary.json").read_text())
        assert all(i["holds"] for i in summary["identities"])

        # rows read = used + quarantined, and "read" is the file's real record count
        for key, counts in summary["files"].items():
            path = data / ("reference" if key in ("partners", "partner_levels", "attributions", "fx_rates")
                           else f"exports/{month}") / f"{key}.csv"
            records = len(list(csv.reader(open(path, newline="")))) - 1 if path.exists() else 0
            assert counts["read"] == records == counts["used"] + counts["quarantined"], key

        balances = {r["partner_id"]: r for r in read_rows(folder / "partner_balances.csv")}
        # closing(M-1) = opening(M)
        for pid, row in balances.items():
            assert dec(row["opening_balance"]) == closing_before.get(pid, Decimal(0)), pid
        for pid, closing in closing_before.items():
            if closing != 0:
                assert pid in balances, f"{pid} carried {closing} but is missing in {month}"
        closing_before = {pid: dec(r["closing_balance"]) for pid, r in balances.items()}

        for pid, row in balances.items():
            moves = sum(dec(row[k]) for k in ("earnings", "clawbacks", "referral_fees", "fees"))
            assert dec(row["opening_balance"]) + moves - dec(row["gross_paid"]) == dec(row["closing_balance"])
            assert dec(row["gross_paid"]) - dec(row["withholding"]) == dec(row["net_paid"])
            # statements foot to partner_balances
            stmt = read_rows(folder / "statements" / f"{pid}.csv")
            assert stmt[0]["entry"] == "opening_balance" and stmt[-1]["entry"] == "closing_balance"
            assert dec(stmt[0]["payout_amount"]) == dec(row["opening_balance"])
            assert dec(stmt[-1]["payout_amount"]) == dec(row["closing_balance"])
            moved = sum(dec(r["payout_amount"]) for r in stmt[1:-1])
            assert dec(row["opening_balance"]) + moved == dec(row["closing_balance"])
            for kind, col in (("share", "earnings"), ("clawback", "clawbacks"), ("fee", "fees"),
                              ("referral_fee", "referral_fees")):
                conv = sum(dec(r["payout_amount"]) for r in stmt if r["entry"] == "conversion" and r["item"] == kind)
                assert conv == dec(row[col]), (pid, kind)
            # each share is amount x credit% x rate rounded half away from zero (second method: decimal)
            for r in stmt:
                if r["entry"] in ("share", "pending_share") and "tier split" not in r["note"]:
                    d = DIGITS[r["currency"]]
                    exact = dec(r["billed_amount"]) * dec(r["credit_pct"]) / 100 * dec(r["rate"])
                    assert dec(r["amount"]) == round_half_away(exact, d), r

        # every charge reconciles: partner shares never exceed it; the company keeps the rest
        shares: dict[str, Decimal] = {}
        for f in (folder / "statements").glob("*.csv"):
            for r in read_rows(f):
                if r["entry"] in ("share", "pending_share") and r["date"].startswith(month):
                    shares[r["record_id"]] = shares.get(r["record_id"], Decimal(0)) + dec(r["amount"])
        inputs = {r["line_id"]: r for key in ("subscription_billing", "project_billing")
                  for r in read_rows(data / "exports" / month / f"{key}.csv")}
        for lid, total in shares.items():
            assert Decimal(0) <= total <= dec(inputs[lid]["amount"]), lid

        # the per-currency line totals (sql/line_totals), recomputed from the inputs, the quarantine
        # and the statements: billed = the usable lines; partner_share = the month's shares;
        # clawed_back = the month's clawbacks; unattributed = usable charges no partner is credited on
        quarantined = {(r["source_file"], r["row_number"]) for r in read_rows(folder / "exceptions.csv")
                       if r["kind"] == "quarantined"}
        usable = {}
        for key in ("subscription_billing", "project_billing"):
            label = f"exports/{month}/{key}.csv"
            for n, r in enumerate(read_rows(data / "exports" / month / f"{key}.csv"), start=2):
                if (label, str(n)) not in quarantined:
                    usable[r["line_id"]] = r
        clawed: dict[str, Decimal] = {}
        for f in (folder / "statements").glob("*.csv"):
            for r in read_rows(f):
                if r["entry"] in ("clawback", "pending_clawback") and r["date"].startswith(month):
                    clawed[r["currency"]] = clawed.get(r["currency"], Decimal(0)) + dec(r["amount"])
        expected: dict[str, dict[str, Decimal]] = {}
        for lid, r in usable.items():
            e = expected.setdefault(r["currency"], dict.fromkeys(("billed", "partner_share", "unattributed"), Decimal(0)))
            e["billed"] += dec(r["amount"])
            e["partner_share"] += shares.get(lid, Decimal(0))
            if r["line_type"] == "charge" and lid not in shares:
                e["unattributed"] += dec(r["amount"])
        for cur, e in expected.items():
            got = summary["by_currency"][cur]
            claw = clawed.get(cur, Decimal(0))
            assert (dec(got["billed"]), dec(got["partner_share"]), dec(got["unattributed"]), dec(got["clawed_back"]),
                    dec(got["company_share"])) == (e["billed"], e["partner_share"], e["unattributed"], claw,
                                                   e["billed"] - e["partner_share"] - claw), (month, cur)

        # remittance: one row per partner paid, equal to partner_balances
        remit = read_rows(folder / "remittance.csv")
        paid = {pid for pid, r in balances.items() if r["status"] == "paid"}
        assert [r["partner_id"] for r in remit] == sorted(paid)
        for r in remit:
            assert dec(r["gross_amount"]) - dec(r["withholding_amount"]) == dec(r["net_amount"])
            assert r["gross_amount"] == balances[r["partner_id"]]["gross_paid"]
            assert len(r["gross_amount"].partition(".")[2]) == DIGITS[r["payout_currency"]]

    # a rerun of the latest month is byte-identical, and the ledger still chains
    before = digest(out / MONTHS[-1])
    run_month(data, out, MONTHS[-1])
    assert digest(out / MONTHS[-1]) == before
    # running out of order is refused, and changes nothing
    with pytest.raises(PayoutError, match="refusing"):
        run_month(data, out, MONTHS[0])
    with pytest.raises(PayoutError, match="refusing"):
        run_month(data, out, "2025-06")
    assert digest(out / MONTHS[-1]) == before
