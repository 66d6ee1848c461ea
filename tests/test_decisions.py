"""Decisions the spec leaves open, each pinned by a test (docs/rules.md, "Decisions pinned by tests").

One input tree, three months (2025-03, 2025-04, 2025-05), is built and run once for the module; each
test reads the outputs for its question. Every expected number is worked out by hand in the comments
from SPEC section 2 and the fixture program (platform partner_led 0.25; project bands 0.70 up to
50,000; company_led 0.40; level uplift certified 0.025, strategic 0.05; referral qualified_lead 500;
minimum 50 USD), with `holding_days` set to 5 here: an earning is payable in a month's run when its
date + 5 days is on or before the month's last day (in March: dated up to 03-26), else it waits for the
next month. Everything is in USD.

Partners and what they are for:
  P1  customer C1: refunds and chargebacks (questions 1 and 8)
  P2  customer C2: only a pending earning in March (question 2)
  P3  projects across a level change (question 3)
  P4  customer C4: line ids repeated in one month (question 5)
  P5  referral events and fees: dated outside the month, ids repeated across months (4, 9)
  PT  terminated, PS suspended in March and active from April (question 7)
Question 6 (malformed rows) and 10 (absent optional files) read exceptions.csv and summary.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import COLUMNS, PROGRAM, build, claim, partner, proj, read_rows, sub, write_csv

from pipelines.engine import run_month

MONTHS = ("2025-03", "2025-04", "2025-05")
SUB = "exports/{m}/subscription_billing.csv"
PROJ = "exports/{m}/project_billing.csv"
REFS = "exports/{m}/referral_events.csv"
FEES = "exports/{m}/partner_fees.csv"

BAL_COLS = ("opening_balance", "earnings", "clawbacks", "referral_fees", "fees", "adjustments", "pending",
            "gross_paid", "withholding", "net_paid", "closing_balance", "status")


def refund(line_id, customer, amount, date, refers_to, line_type="refund", **kw):
    return sub(line_id, customer, amount, date, line_type=line_type, refers_to_line_id=refers_to,
               subscription_start="", **kw)


def event(eid, pid, deal, kind, date):
    return dict(event_id=eid, partner_id=pid, customer_id="C" + deal, deal_id=deal, event_type=kind,
                event_date=date, first_year_contract_value="", currency="")


def fee(fid, pid, date, amount):
    return dict(fee_id=fid, partner_id=pid, fee_date=date, fee_type="platform", currency="USD", amount=amount)


def partners(ps_status):
    return [partner("P1"), partner("P2"), partner("P3"), partner("P4"), partner("P5"),
            partner("PT", status="terminated"), partner("PS", status=ps_status)]


MARCH = {
    "subscription_billing": [
        # Q1: the refund's row comes before its charge's row; a refund refers to a charge of the same
        # file billed earlier in the month (by date): 50.00 x 80.00 / 200.00 = 20.00 clawed back
        refund("Q1-RF", "C1", "-80.00", "2025-03-20", "Q1-CH"),                     # row 2
        sub("Q1-CH", "C1", "200.00", "2025-03-05"),                                  # row 3: 0.25 -> 50.00
        # Q1: a subscription refund of this month's *project* charge: no such subscription charge
        refund("Q1-XS", "C1", "-100.00", "2025-03-21", "Q1-PJ"),                    # row 4
        # Q8: refunds and chargebacks of one charge share one limit, in (invoice_date, line_id) order
        sub("Q8-CH", "C1", "100.00", "2025-03-02"),                                  # row 5: 25.00
        refund("Q8-RF", "C1", "-60.00", "2025-03-10", "Q8-CH"),                     # row 6: 60 <= 100: -15.00
        refund("Q8-CB", "C1", "-60.00", "2025-03-12", "Q8-CH", "chargeback"),       # row 7: 120 > 100: exceeds
        refund("Q8-CB2", "C1", "-40.00", "2025-03-14", "Q8-CH", "chargeback"),      # row 8: 100 <= 100: -10.00
        # Q5: P4 (customer C4) and repeated line ids
        sub("D2", "C4", "200.00", "2025-03-20"),                                     # row 9: keeps D2: 50.00
        sub("D3", "C4", "abc", "2025-03-04"),                                        # row 10: bad_amount
        sub("D1", "C4", "100.00", "2025-03-25"),                                     # row 11: keeps D1: 25.00
        sub("D2", "C4", "300.00", "2025-03-03"),                                     # row 12: duplicate (earlier date)
        sub("D3", "C4", "400.00", "2025-03-04"),                                     # row 13: keeps D3: 100.00
        # Q2: P2's only activity, dated 03-28: 03-28 + 5 = 04-02 > 03-31, pending: 400.00 x 0.25 = 100.00
        sub("Q2-S", "C2", "400.00", "2025-03-28"),                                   # row 14
        # Q7: the terminated and the suspended partner still earn their shares
        sub("Q7-T", "CT", "200.00", "2025-03-05"),                                   # row 15: PT 50.00
        sub("Q7-S", "CS", "400.00", "2025-03-05"),                                   # row 16: PS 100.00
    ],
    "project_billing": [
        # Q1: P1 registered, partner_led, contract 10,000 -> band 0.70: 700.00
        proj("Q1-PJ", "P1", "1000.00", "2025-03-06"),                                # row 2
        # Q1: a project refund of this month's *subscription* charge: no such project charge
        proj("Q1-XP", "P1", "-10.00", "2025-03-22", line_type="refund", refers_to_line_id="Q1-CH",
             contract_value=""),                                                     # row 3
        # Q5: D1 is used by the subscription file (row 11), which comes first whatever the dates
        proj("D1", "P4", "1000.00", "2025-03-01"),                                   # row 4: duplicate
        # Q3: P3 certified from 2024-01-01, strategic from 2025-03-16 (contract 10,000: band 0.70)
        proj("Q3-A", "P3", "1000.00", "2025-03-15"),                                 # row 5: 0.725 -> 725.00
        proj("Q3-B", "P3", "1000.00", "2025-03-16"),                                 # row 6: 0.75 -> 750.00
        proj("Q3-C", "P3", "500.00", "2025-03-20", engagement="company_led"),        # row 7: 0.40 -> 200.00
        proj("Q3-D", "P3", "1000.00", "2025-03-20", engagement="joint",
             partner_contribution_pct="60"),                                         # row 8: 0.60 -> 600.00
    ],
    "referral_events": [
        event("Q7-E", "PT", "DT", "qualified_lead", "2025-03-10"),    # row 2: PT 500.00 (03-15: payable)
        event("Q9-E1", "P5", "DQ9", "qualified_lead", "2025-03-04"),  # row 3: P5 500.00
        event("Q9-E2", "P5", "DQ9", "qualified_lead", "2025-03-05"),  # row 4: (DQ9, lead) paid: reported
        event("Q4-E1", "P5", "D4A", "qualified_lead", "2025-02-28"),  # row 5: date_outside_month
        event("Q4-E2", "P5", "D4B", "qualified_lead", "2025-04-01"),  # row 6: date_outside_month
    ],
    "partner_fees": [
        fee("Q9-F1", "P5", "2025-03-03", "10.00"),                    # row 2: netted
        fee("Q4-F1", "P5", "2025-04-02", "20.00"),                    # row 3: date_outside_month
    ],
    # no adjustments.csv (question 10)
}

APRIL = {
    "subscription_billing": [
        # Q1: 80.00 (March) + 120.00 = 200.00, exactly the charge: 50.00 x 120 / 200 = 30.00 clawed back
        refund("Q1-RF2", "C1", "-120.00", "2025-04-10", "Q1-CH"),                   # row 2
        # Q8: Q8-CH's 100.00 is used up by March's refund and chargeback: even 0.01 more exceeds
        refund("Q8-RF2", "C1", "-0.01", "2025-04-02", "Q8-CH"),                     # row 3
        sub("Q7-T2", "CT", "40.00", "2025-04-05"),                                   # row 4: PT 10.00
    ],
    "referral_events": [
        event("Q9-E1", "P5", "DQ9B", "successful_delivery", "2025-04-03"),  # row 2: id paid in March
        event("Q9-E2", "P5", "DQ9C", "successful_delivery", "2025-04-03"),  # row 3: id reported in March
        event("Q4-E2", "P5", "D4B", "qualified_lead", "2025-04-01"),        # row 4: in its month now: 500.00
    ],
    "partner_fees": [
        fee("Q9-F1", "P5", "2025-04-03", "10.00"),                    # row 2: id used in March
        fee("Q4-F1", "P5", "2025-04-02", "20.00"),                    # row 3: in its month now: netted
    ],
}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("decisions")
    data = root / "data"
    program = PROGRAM.read_text().replace("holding_days: 0", "holding_days: 5")
    tree = dict(
        program=program,
        attributions=[claim("K1", "C1", "P1"), claim("K2", "C2", "P2"), claim("K4", "C4", "P4"),
                      claim("KT", "CT", "PT"), claim("KS", "CS", "PS")],
        levels=[{"partner_id": "P3", "level": "certified", "effective_from": "2024-01-01"},
                {"partner_id": "P3", "level": "strategic", "effective_from": "2025-03-16"}],
    )
    build(data, partners=partners("suspended"), months={"2025-03": MARCH, "2025-04": APRIL, "2025-05": {}},
          **tree)
    # Q6: malformed rows (wrong field count) appended by hand
    with open(data / REFS.format(m="2025-03"), "a", encoding="utf-8") as fh:
        fh.write("Q6-E,P5,CD6,D6\n")                                   # row 7: 4 fields of 8
    with open(data / FEES.format(m="2025-03"), "a", encoding="utf-8") as fh:
        fh.write("Q6-F,P5,2025-03-03,api,USD,1,000.00\n")              # row 4: 7 fields of 6
    # Q6: a file whose id column is not the first: event_id last, so a short row has nothing there
    header = [c for c in COLUMNS["referral_events"] if c != "event_id"] + ["event_id"]
    april_refs = data / REFS.format(m="2025-04")
    write_csv(april_refs, header, [[r[c] for c in header] for r in APRIL["referral_events"]])
    with open(april_refs, "a", encoding="utf-8") as fh:
        fh.write("P5,CD7,D7,qualified_lead\n")                         # row 5: 4 fields of 8
    out = root / "out"
    run_month(data, out, "2025-03")
    # PS is active again from April (reference data may change between months)
    write_csv(data / "reference" / "partners.csv", COLUMNS["partners"], partners("active"))
    run_month(data, out, "2025-04")
    run_month(data, out, "2025-05")
    return out


def balances(out: Path, month: str) -> dict[str, tuple]:
    return {r["partner_id"]: tuple(r[c] for c in BAL_COLS) for r in read_rows(out / month / "partner_balances.csv")}


def quarantined(out: Path, month: str) -> dict[tuple, tuple]:
    return {(r["source_file"], int(r["row_number"])): (r["record_id"], r["reason_code"])
            for r in read_rows(out / month / "exceptions.csv") if r["kind"] == "quarantined"}


def statement(out: Path, month: str, pid: str, *entries: str) -> list[tuple]:
    return [(r["entry"], r["record_id"], r["rate"], r["amount"])
            for r in read_rows(out / month / "statements" / f"{pid}.csv") if r["entry"] in entries]


def paid(out: Path, month: str) -> dict[str, str]:
    return {r["partner_id"]: r["gross_amount"] for r in read_rows(out / month / "remittance.csv")}


def summary(out: Path, month: str) -> dict:
    return json.loads((out / month / "summary.json").read_text())


def test_q1_refund_of_a_charge_billed_earlier_the_same_month(out):
    """A refund may refer to a charge of the same billing file billed in the same month (whatever the
    rows' order in the export); a refund in the other billing file that names it is
    refund_unknown_original (each file's refunds refer to that file's charges)."""
    m = "2025-03"
    q = quarantined(out, m)
    assert q[(SUB.format(m=m), 4)] == ("Q1-XS", "refund_unknown_original")
    assert q[(PROJ.format(m=m), 3)] == ("Q1-XP", "refund_unknown_original")
    assert (SUB.format(m=m), 2) not in q  # Q1-RF is used
    claws = statement(out, m, "P1", "clawback")
    assert ("clawback", "Q1-RF", "0.25", "-20.00") in claws
    # P1 in March: shares 50.00 (Q1-CH) + 25.00 (Q8-CH) + 700.00 (Q1-PJ) = 775.00;
    # clawbacks 20.00 (Q1-RF) + 15.00 (Q8-RF) + 10.00 (Q8-CB2) = 45.00; balance 730.00 paid
    assert balances(out, m)["P1"] == (
        "0.00", "775.00", "-45.00", "0.00", "0.00", "0.00", "0.00", "730.00", "0.00", "730.00", "0.00", "paid")
    # April: Q1-RF2 takes Q1-CH's refunds to exactly 200.00: clawback 30.00, balance -30.00 carried
    assert ("clawback", "Q1-RF2", "0.25", "-30.00") in statement(out, "2025-04", "P1", "clawback")


def test_q2_partner_with_only_pending_earnings_is_listed(out):
    """A partner whose only activity is an earning in its holding period is listed in
    partner_balances.csv: every column 0 but `pending`, status nothing_due (its balance is 0); it
    has a statement with the pending row, and is not paid. Next month the earning is payable."""
    assert balances(out, "2025-03")["P2"] == (
        "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "100.00", "0.00", "0.00", "0.00", "0.00", "nothing_due")
    assert statement(out, "2025-03", "P2", "share", "pending_share") == [
        ("pending_share", "Q2-S", "0.25", "100.00")]
    assert "P2" not in paid(out, "2025-03")
    assert balances(out, "2025-04")["P2"] == (
        "0.00", "100.00", "0.00", "0.00", "0.00", "0.00", "0.00", "100.00", "0.00", "100.00", "0.00", "paid")


def test_q3_project_lines_take_the_level_on_their_invoice_date(out):
    """P3 is certified until 2025-03-15 and strategic from 2025-03-16 (effective_from is inclusive).
    partner_led lines take the uplift of the level on their invoice date; company_led and joint
    lines take no level uplift."""
    assert statement(out, "2025-03", "P3", "share") == [
        ("share", "Q3-A", "0.725", "725.00"),   # 0.70 + 0.025 (certified on 03-15)
        ("share", "Q3-B", "0.75", "750.00"),    # 0.70 + 0.05 (strategic from 03-16)
        ("share", "Q3-C", "0.4", "200.00"),     # company_led_rate, no uplift
        ("share", "Q3-D", "0.6", "600.00"),     # contribution 60 %, no uplift
    ]
    # 725 + 750 + 200 + 600 = 2275.00
    assert paid(out, "2025-03")["P3"] == "2275.00"


def test_q4_referral_events_and_fees_dated_outside_the_month(out):
    """An event or fee dated outside its export's month is quarantined (date_outside_month), like a
    billing line: it earns or costs nothing and uses up neither its id nor its (deal, event type).
    The same row in the export of the month it is dated in is used there."""
    march, april = "2025-03", "2025-04"
    q = quarantined(out, march)
    assert q[(REFS.format(m=march), 5)] == ("Q4-E1", "date_outside_month")
    assert q[(REFS.format(m=march), 6)] == ("Q4-E2", "date_outside_month")
    assert q[(FEES.format(m=march), 3)] == ("Q4-F1", "date_outside_month")
    # April: Q4-E2 pays 500.00 and Q4-F1 costs 20.00 (the repeated Q9 ids are refused, question 9)
    assert statement(out, april, "P5", "referral_fee", "fee") == [
        ("referral_fee", "Q4-E2", "", "500.00"), ("fee", "Q4-F1", "", "-20.00")]
    assert balances(out, april)["P5"] == (
        "0.00", "0.00", "0.00", "500.00", "-20.00", "0.00", "0.00", "480.00", "0.00", "480.00", "0.00", "paid")


def test_q5_which_row_keeps_a_repeated_line_id(out):
    """Among the month's rows that passed the row checks, the subscription file's rows come first,
    then the project file's, each in row order; the first keeps the id (not the earliest
    invoice_date). A row quarantined for another reason does not take the id."""
    m = "2025-03"
    q = quarantined(out, m)
    assert q[(SUB.format(m=m), 10)] == ("D3", "bad_amount")
    assert q[(SUB.format(m=m), 12)] == ("D2", "duplicate_line_id")
    assert q[(PROJ.format(m=m), 4)] == ("D1", "duplicate_line_id")
    assert {(SUB.format(m=m), r) for r in (9, 11, 13)}.isdisjoint(q)
    # P4: D2 200.00 -> 50.00, D1 100.00 -> 25.00, D3 400.00 -> 100.00 (statement by date)
    assert statement(out, m, "P4", "share") == [
        ("share", "D3", "0.25", "100.00"), ("share", "D2", "0.25", "50.00"), ("share", "D1", "0.25", "25.00")]
    assert balances(out, m)["P4"][-5:] == ("175.00", "0.00", "175.00", "0.00", "paid")


def test_q6_record_id_of_a_malformed_row(out):
    """A malformed row's record_id is the field at the id column's position in the header (blank when
    the row has no field there); partners.csv's is always blank (docs/rules.md)."""
    q = quarantined(out, "2025-03")
    assert q[(REFS.format(m="2025-03"), 7)] == ("Q6-E", "malformed_row")   # short row, event_id first
    assert q[(FEES.format(m="2025-03"), 4)] == ("Q6-F", "malformed_row")   # an unquoted "1,000.00"
    # April's referral file has event_id as its last column: the 4-field row has nothing there
    assert quarantined(out, "2025-04")[(REFS.format(m="2025-04"), 5)] == ("", "malformed_row")
    files = summary(out, "2025-03")["files"]
    # read = used + quarantined: 6 events (Q9-E2 is used, and reported), 3 fees
    assert files["referral_events"] == {"read": 6, "used": 3, "quarantined": 3}
    assert files["partner_fees"] == {"read": 3, "used": 1, "quarantined": 2}


def test_q7_terminated_and_suspended_partners_earn_but_are_not_paid(out):
    """Shares and referral fees are computed for a terminated or suspended partner as for any other
    (its claims decide what it earns); its balance is carried with its status as the reason. A
    suspended partner made active again is paid its carried balance."""
    march = balances(out, "2025-03")
    # PT: share 200.00 x 0.25 = 50.00, referral 500.00 -> 550.00 carried
    assert march["PT"] == (
        "0.00", "50.00", "0.00", "500.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "550.00", "terminated")
    # PS: 400.00 x 0.25 = 100.00 carried
    assert march["PS"] == (
        "0.00", "100.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "100.00", "suspended")
    assert not {"PT", "PS"} & set(paid(out, "2025-03"))
    april = balances(out, "2025-04")
    # PT keeps earning: 40.00 x 0.25 = 10.00 -> 560.00; PS active: its 100.00 is paid
    assert april["PT"] == (
        "550.00", "10.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "560.00", "terminated")
    assert april["PS"] == (
        "100.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "100.00", "0.00", "100.00", "0.00", "paid")
    assert paid(out, "2025-04")["PS"] == "100.00"
    assert balances(out, "2025-05")["PT"][-2:] == ("560.00", "terminated")


def test_q8_chargebacks_count_toward_the_refunds_of_a_charge(out):
    """Refunds and chargebacks of one charge are one total that may not pass the charge, in
    (invoice_date, line_id) order, across months."""
    q = quarantined(out, "2025-03")
    assert q[(SUB.format(m="2025-03"), 7)] == ("Q8-CB", "refund_exceeds_original")  # 60 + 60 > 100
    assert [c for c in statement(out, "2025-03", "P1", "clawback") if c[1].startswith("Q8")] == [
        ("clawback", "Q8-RF", "0.25", "-15.00"),    # 25.00 x 60 / 100
        ("clawback", "Q8-CB2", "0.25", "-10.00"),   # 25.00 x 40 / 100: 60 + 40 = 100
    ]
    # April: March's refund and chargeback used up all of Q8-CH
    assert quarantined(out, "2025-04")[(SUB.format(m="2025-04"), 3)] == ("Q8-RF2", "refund_exceeds_original")
    assert balances(out, "2025-04")["P1"] == (
        "0.00", "0.00", "-30.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00", "-30.00",
        "negative_balance")


def test_q9_fee_and_event_ids_repeated_across_months(out):
    """fee_id and event_id are unique across months: an id a used row took in an earlier month
    (paid, or reported and not paid) is quarantined as duplicate_id; an id whose row was
    quarantined is free (question 4)."""
    april = "2025-04"
    q = quarantined(out, april)
    assert q[(REFS.format(m=april), 2)] == ("Q9-E1", "duplicate_id")
    assert q[(REFS.format(m=april), 3)] == ("Q9-E2", "duplicate_id")
    assert q[(FEES.format(m=april), 2)] == ("Q9-F1", "duplicate_id")
    # March: Q9-E1 500.00 less Q9-F1 10.00 = 490.00
    assert balances(out, "2025-03")["P5"] == (
        "0.00", "0.00", "0.00", "500.00", "-10.00", "0.00", "0.00", "490.00", "0.00", "490.00", "0.00", "paid")
    assert [(r["record_id"], r["reason_code"]) for r in read_rows(out / "2025-03" / "exceptions.csv")
            if r["kind"] == "reported"] == [("Q9-E2", "repeated_referral_event")]


def test_q10_absent_optional_files_count_zero_rows(out):
    """Every input file is listed in summary.json's "files", an absent optional one with 0 read,
    0 used, 0 quarantined (like a file holding only its header)."""
    zero = {"read": 0, "used": 0, "quarantined": 0}
    march = summary(out, "2025-03")["files"]
    assert march["adjustments"] == zero
    may = summary(out, "2025-05")["files"]
    assert set(may) == {"partners", "partner_levels", "attributions", "fx_rates", "subscription_billing",
                        "project_billing", "referral_events", "partner_fees", "adjustments"}
    assert {k: may[k] for k in ("subscription_billing", "project_billing", "referral_events", "partner_fees",
                                "adjustments")} == dict.fromkeys(
        ("subscription_billing", "project_billing", "referral_events", "partner_fees", "adjustments"), zero)
    # May: only the carried balances
    assert {p: b[-2:] for p, b in balances(out, "2025-05").items()} == {
        "P1": ("-30.00", "negative_balance"), "PT": ("560.00", "terminated")}
