"""Property tests on generated months: invariants every run must keep, checked against the inputs.

Each example is two consecutive months of random partners (payout in USD, EUR, JPY or KWD, every
status and payout method), claims (all sources, joint credit), subscription and project lines in
four currencies with refunds of earlier charges (some of them too large, so they are quarantined),
fees, adjustments, a random holding period and fx rates that change between the months. Both months
run through the engine.

Every assertion compares the outputs with something the engine did not write itself: the input
files (record counts, amounts, fx rates, partners' details, holding_days), a second output file,
or a sum over the statement's own rows. Identities that hold by construction are not asserted,
for example net = gross - withholding on a row where the engine computed net that way, or a share
recomputed from the rate printed next to it. The values themselves are checked against an
independent model in tests/test_reference_model.py.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from builders import PROGRAM, build, claim, partner, proj, read_rows, sub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.engine import PayoutError, run_month

DIGITS = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}
RATES = {"2025-03-01": {"EUR": "1.0843", "JPY": "0.006712", "KWD": "3.2571"},
         "2025-04-15": {"EUR": "1.25", "JPY": "0.005", "KWD": "3.25"}}
MONTHS = ("2025-03", "2025-04")
MONTH_END = {"2025-03": date(2025, 3, 31), "2025-04": date(2025, 4, 30)}
PROGRAM_MINIMUM_USD = 50            # tests/fixtures/program.yaml
REFERENCE = ("partners", "partner_levels", "attributions", "fx_rates")
BALANCE_ROWS = ("opening_balance", "closing_balance", "conversion", "payout", "withholding", "net_payment")


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
    fx = [{"rate_date": d, "currency": c, "rate": r} for d, rates in RATES.items() for c, r in rates.items()]
    months = {}
    charges = []  # (line_id, currency, amount) of earlier charges, for refunds
    for m_i, month in enumerate(MONTHS):
        subs, projs, fees, adjustments = [], [], [], []
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
        # refunds of earlier subscription charges; the same charge may be refunded in both months,
        # so some refunds exceed what is left and are quarantined
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
        for k in range(draw(st.integers(0, 2))):
            cur = draw(st.sampled_from(list(DIGITS)))
            adjustments.append({"adjustment_id": f"ADJ{m_i}_{k}", "partner_id": draw(st.sampled_from(pids)),
                                "currency": cur, "amount": draw(st.sampled_from(["", "-"])) + money(draw, cur, 1, 300),
                                "reason": "correction", "entered_by": "maker"})
        months[month] = {"subscription_billing": subs, "project_billing": projs, "partner_fees": fees,
                         "adjustments": adjustments}
    holding_days = draw(st.sampled_from([0, 0, 10, 40]))
    return {"partners": partners, "attributions": claims, "fx": fx, "months": months, "holding_days": holding_days}


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def dec(s: str) -> Fraction:
    return Fraction(s) if s else Fraction(0)


def round_half_away(x: Fraction, digits: int) -> Fraction:
    scaled = x * 10**digits
    q, r = divmod(abs(scaled), 1)
    q += r >= Fraction(1, 2)
    return Fraction(int(q) if scaled >= 0 else -int(q), 10**digits)


def month_rates(fx_rows, month: str) -> dict[str, Fraction]:
    """fx_rates.csv's rate of each currency for the month: latest rate_date on or before its last day."""
    best = {}
    for r in sorted(fx_rows, key=lambda r: r["rate_date"]):
        if date.fromisoformat(r["rate_date"]) <= MONTH_END[month]:
            best[r["currency"]] = Fraction(r["rate"])
    return {"USD": Fraction(1), **best}


def input_path(data: Path, month: str, key: str) -> Path:
    return data / ("reference" if key in REFERENCE else f"exports/{month}") / f"{key}.csv"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=payout_months())
def test_invariants(case, tmp_path_factory):
    root = tmp_path_factory.mktemp("prop")
    data, out = root / "data", root / "out"
    program = PROGRAM.read_text().replace("holding_days: 0", f"holding_days: {case['holding_days']}")
    build(data, partners=case["partners"], attributions=case["attributions"], fx=case["fx"], months=case["months"],
          program=program)
    for month in MONTHS:
        run_month(data, out, month)
    partners_in = {p["partner_id"]: p for p in case["partners"]}
    hold = timedelta(days=case["holding_days"])

    closing_before: dict[str, Fraction] = {}
    credited: set[str] = set()  # line ids with a share row in any month so far (a refund's original is earlier)
    for month in MONTHS:
        folder = out / month
        summary = json.loads((folder / "summary.json").read_text())
        exceptions = read_rows(folder / "exceptions.csv")
        rates = month_rates(case["fx"], month)

        # rows read = used + quarantined; "read" is the file's real record count, and "quarantined" is
        # the number of exceptions.csv rows naming that file
        for key, counts in summary["files"].items():
            path = input_path(data, month, key)
            records = len(list(csv.reader(open(path, newline="")))) - 1 if path.exists() else 0
            label = str(path.relative_to(data))
            listed = sum(1 for r in exceptions if r["kind"] == "quarantined" and r["source_file"] == label)
            assert counts["read"] == records == counts["used"] + counts["quarantined"], key
            assert counts["quarantined"] == listed, key

        balances = {r["partner_id"]: r for r in read_rows(folder / "partner_balances.csv")}
        # months chain: closing(M-1) = opening(M), and a carried balance is listed the next month
        for pid, row in balances.items():
            assert dec(row["opening_balance"]) == closing_before.get(pid, Fraction(0)), pid
        for pid, closing in closing_before.items():
            if closing != 0:
                assert pid in balances, f"{pid} carried {closing} but is missing in {month}"
        closing_before = {pid: dec(r["closing_balance"]) for pid, r in balances.items()}

        for pid, row in balances.items():
            p = partners_in[pid]
            pc = row["payout_currency"]
            assert pc == p["payout_currency"], pid
            unit = Fraction(1, 10**DIGITS[pc])
            for col in ("opening_balance", "earnings", "clawbacks", "referral_fees", "fees", "adjustments", "pending",
                        "gross_paid", "withholding", "net_paid", "closing_balance"):
                assert len(row[col].partition(".")[2]) == DIGITS[pc], (pid, col, row[col])

            # the payout decision against partners.csv and the month's fx rates
            status, gross, closing = row["status"], dec(row["gross_paid"]), dec(row["closing_balance"])
            minimum = dec(p["min_payout"]) if p["min_payout"] else round_half_away(
                PROGRAM_MINIMUM_USD / rates[pc], DIGITS[pc])
            if p["status"] != "active":
                assert status == p["status"], (pid, status)
            elif p["payout_method"] == "none" or not p["account_ref"]:
                assert status == "no_payout_method", (pid, status)
            assert {"paid": gross > 0 and gross >= minimum and closing == 0,
                    "negative_balance": closing < 0, "nothing_due": closing == 0 and gross == 0,
                    "below_minimum": 0 < closing < minimum and gross == 0,
                    }.get(status, gross == 0), (pid, status, row)
            # withholding from partners.csv's percentage, rounded half away from zero
            pct = dec(p["withholding_tax_pct"])
            assert dec(row["withholding"]) == round_half_away(gross * pct / 100, DIGITS[pc]), (pid, row)

            # the statement foots to partner_balances, summing its own rows
            stmt = read_rows(folder / "statements" / f"{pid}.csv")
            assert stmt[0]["entry"] == "opening_balance" and stmt[-1]["entry"] == "closing_balance"
            assert dec(stmt[0]["payout_amount"]) == dec(row["opening_balance"])
            assert dec(stmt[-1]["payout_amount"]) == closing
            moved = sum(dec(r["payout_amount"]) for r in stmt[1:-1])
            assert dec(row["opening_balance"]) + moved == closing, pid
            for kind, col in (("share", "earnings"), ("clawback", "clawbacks"), ("fee", "fees"),
                              ("referral_fee", "referral_fees"), ("adjustment", "adjustments")):
                conv = sum(dec(r["payout_amount"]) for r in stmt if r["entry"] == "conversion" and r["item"] == kind)
                assert conv == dec(row[col]), (pid, kind)
            for entry, col in (("withholding", "withholding"), ("net_payment", "net_paid")):
                assert sum(dec(r["amount"]) for r in stmt if r["entry"] == entry) == dec(row[col]), (pid, entry)
            assert -sum(dec(r["payout_amount"]) for r in stmt if r["entry"] == "payout") == gross, pid

            # the statement's movement rows foot to its conversion rows, per currency and kind, and each
            # currency's conversion is that currency's total at fx_rates.csv's rate, rounded once
            detail: dict[tuple[str, str], Fraction] = {}
            pending: dict[str, Fraction] = {}
            for r in stmt:
                if r["entry"].startswith("pending_"):
                    pending[r["currency"]] = pending.get(r["currency"], Fraction(0)) + dec(r["amount"])
                    assert date.fromisoformat(r["date"]) + hold > MONTH_END[month], (pid, r)
                elif r["entry"] not in BALANCE_ROWS:
                    key = (r["currency"], r["entry"])
                    detail[key] = detail.get(key, Fraction(0)) + dec(r["amount"])
                    if r["entry"] == "share":
                        assert date.fromisoformat(r["date"]) + hold <= MONTH_END[month], (pid, r)
            conv_rows = [r for r in stmt if r["entry"] == "conversion"]
            shown = {(r["currency"], r["item"]): dec(r["amount"]) for r in conv_rows}
            assert {k: v for k, v in shown.items() if v} == {k: v for k, v in detail.items() if v}, pid
            for cur in {c for c, _ in detail}:
                total = sum(v for (c, _), v in detail.items() if c == cur)
                converted = sum(dec(r["payout_amount"]) for r in conv_rows if r["currency"] == cur)
                assert converted == round_half_away(total * rates[cur] / rates[pc], DIGITS[pc]), (pid, cur)
            # pending: each currency's waiting earnings at the month's rates (rounding at most half a unit each)
            exact = sum((v * rates[c] / rates[pc] for c, v in pending.items()), Fraction(0))
            assert abs(dec(row["pending"]) - exact) <= len(pending) * unit / 2, (pid, row["pending"], pending)

        # every charge reconciles: the partners' shares of it never exceed it
        shares: dict[str, Fraction] = {}
        for f in (folder / "statements").glob("*.csv"):
            for r in read_rows(f):
                if r["entry"] in ("share", "pending_share") and r["date"].startswith(month):
                    shares[r["record_id"]] = shares.get(r["record_id"], Fraction(0)) + dec(r["amount"])
        credited |= set(shares)
        inputs = {r["line_id"]: r for key in ("subscription_billing", "project_billing")
                  for r in read_rows(data / "exports" / month / f"{key}.csv")}
        for lid, total in shares.items():
            assert inputs[lid]["line_type"] == "charge", lid
            assert Fraction(0) <= total <= dec(inputs[lid]["amount"]), lid

        # the per-currency control totals against the inputs less the quarantine, and the statements:
        # billed = the usable lines; partner_share = the month's shares; clawed_back = the month's
        # clawbacks; unattributed = usable lines no partner is credited on (a refund: its original), net
        # of refunds like billed; fees and adjustments =
        # the usable rows of their files
        quarantined = {(r["source_file"], r["row_number"]) for r in exceptions if r["kind"] == "quarantined"}

        def usable(key):
            label = f"exports/{month}/{key}.csv"
            path = data / label
            rows = read_rows(path) if path.exists() else []
            return [r for n, r in enumerate(rows, start=2) if (label, str(n)) not in quarantined]

        clawed: dict[str, Fraction] = {}
        for f in (folder / "statements").glob("*.csv"):
            for r in read_rows(f):
                if r["entry"] in ("clawback", "pending_clawback") and r["date"].startswith(month):
                    clawed[r["currency"]] = clawed.get(r["currency"], Fraction(0)) + dec(r["amount"])
        expected: dict[str, dict[str, Fraction]] = {}
        zero = dict.fromkeys(("billed", "partner_share", "unattributed", "clawed_back", "fees", "adjustments"),
                             Fraction(0))
        for r in usable("subscription_billing") + usable("project_billing"):
            e = expected.setdefault(r["currency"], dict(zero))
            e["billed"] += dec(r["amount"])
            e["partner_share"] += shares.get(r["line_id"], Fraction(0))
            original = r["line_id"] if r["line_type"] == "charge" else r["refers_to_line_id"]
            if original not in credited:
                e["unattributed"] += dec(r["amount"])
        for cur, v in clawed.items():
            expected.setdefault(cur, dict(zero))["clawed_back"] += v
        for key, col in (("partner_fees", "fees"), ("adjustments", "adjustments")):
            for r in usable(key):
                expected.setdefault(r["currency"], dict(zero))[col] += dec(r["amount"])
        for cur, e in expected.items():
            got = summary["by_currency"][cur]
            assert {k: dec(got[k]) for k in e} == e, (month, cur)

        # remittance: one row per partner paid, sorted, with partners.csv's details and partner_balances' amounts
        remit = read_rows(folder / "remittance.csv")
        paid = {pid for pid, r in balances.items() if r["status"] == "paid"}
        assert [r["partner_id"] for r in remit] == sorted(paid)
        for r in remit:
            p, b = partners_in[r["partner_id"]], balances[r["partner_id"]]
            assert r["payment_reference"] == f"PO-{month.replace('-', '')}-{r['partner_id']}"
            assert (r["billing_month"], r["partner_name"], r["payout_currency"], r["payout_method"],
                    r["account_last4"]) == (month, p["name"], p["payout_currency"], p["payout_method"],
                                            p["account_ref"][-4:])
            assert (r["gross_amount"], r["withholding_amount"], r["net_amount"]) == (
                b["gross_paid"], b["withholding"], b["net_paid"])

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
