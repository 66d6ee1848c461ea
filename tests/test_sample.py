"""Tests for the demo data generator (pipelines/sample.py).

Every assertion is computed from the files written, with a small independent validator that applies
the SPEC section 1/2 row rules; nothing is taken from the generator's internals.
"""

from __future__ import annotations

import csv
import re
import time
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from iso4217 import Currency

from pipelines.demo.sample_data import write_sample

# its module-scoped fixtures are built once: all its tests run on one xdist worker
pytestmark = pytest.mark.xdist_group("test_sample")

SCALE = 2000
MONTHS = ["2025-01", "2025-02", "2025-03"]

# Column lists exactly as SPEC section 1 gives them.
SPEC_HEADERS = {
    "reference/partners.csv": "partner_id, name, payout_currency, payout_method, account_ref, country, "
                              "withholding_tax_pct, status, min_payout, bank_code, account_type",
    "reference/partner_levels.csv": "partner_id, level, effective_from",
    "reference/attributions.csv": "claim_id, customer_id, partner_id, source, engagement_type, credit_pct, "
                                  "valid_from, valid_to, status",
    "reference/fx_rates.csv": "rate_date, currency, rate",
    "subscription_billing.csv": "line_id, invoice_id, invoice_date, customer_id, subscription_id, "
                                "subscription_start, product_family, currency, amount, line_type, "
                                "refers_to_line_id",
    "project_billing.csv": "line_id, invoice_id, invoice_date, customer_id, currency, amount, line_type, "
                           "refers_to_line_id, project_id, engagement_type, partner_id, contract_value, "
                           "partner_contribution_pct",
    "referral_events.csv": "event_id, partner_id, customer_id, deal_id, event_type, event_date, "
                           "first_year_contract_value, currency",
    "partner_fees.csv": "fee_id, partner_id, fee_date, fee_type, currency, amount",
    "adjustments.csv": "adjustment_id, partner_id, currency, amount, reason, entered_by",
}
EXPORTS = ["subscription_billing.csv", "project_billing.csv", "referral_events.csv", "partner_fees.csv"]

EXPECTED_BAD = {
    "subscription_billing.csv": {
        "malformed_row", "bad_date", "unparseable_amount", "too_many_decimals", "date_outside_month",
        "duplicate_line_id", "unknown_currency", "unknown_product_family", "refund_original_unknown",
        "negative_charge", "refund_exceeds_original", "refund_currency_mismatch", "credit_over_100"},
    "project_billing.csv": {
        "malformed_row", "bad_date", "unknown_partner", "joint_without_contribution",
        "refund_original_unknown", "too_many_decimals", "date_outside_month", "duplicate_line_id",
        "negative_charge"},
    "referral_events.csv": {
        "malformed_row", "bad_date", "unknown_partner", "missing_first_year_contract_value",
        "unparseable_amount", "unknown_event_type"},
    "partner_fees.csv": {
        "malformed_row", "unknown_partner", "unparseable_amount", "bad_date", "unknown_currency",
        "too_many_decimals"},
}

ISO = {c.code: c.exponent for c in Currency if c.exponent is not None}
PRECEDENCE = ["partner_of_record", "deal_registration", "referral_link"]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUM = re.compile(r"^-?\d+(\.\d+)?$")


# ------------------------------------------------------------------------------------------------
# reading and validating
# ------------------------------------------------------------------------------------------------
def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def parse_date(s: str) -> date | None:
    if not _DATE.match(s or ""):
        return None
    try:
        return date.fromisoformat(s)
    except ValueError:
        return None


def month_bounds(key: str) -> tuple[date, date]:
    y, m = map(int, key.split("-"))
    start = date(y, m, 1)
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return start, nxt - timedelta(days=1)


def money_problem(s: str, currency: str) -> str | None:
    if not _NUM.match(s or ""):
        return "unparseable_amount"
    dp = len(s.split(".")[1]) if "." in s else 0
    if dp > ISO.get(currency, 2):
        return "too_many_decimals"
    return None


class Reference:
    def __init__(self, root: Path):
        _, self.partners = read_csv(root / "reference/partners.csv")
        self.partner_ids = {r[0] for r in self.partners}
        _, self.levels = read_csv(root / "reference/partner_levels.csv")
        _, claims = read_csv(root / "reference/attributions.csv")
        self.claims = claims
        self.by_customer: dict[str, list[list[str]]] = defaultdict(list)
        for c in claims:
            self.by_customer[c[1]].append(c)
        _, self.fx = read_csv(root / "reference/fx_rates.csv")

    def credited(self, customer: str, on: date) -> list[tuple[str, Decimal, str]]:
        """SPEC attribution: [(partner_id, credit_pct, engagement_type)]; raises ValueError on credit > 100."""
        cands = [c for c in self.by_customer.get(customer, [])
                 if c[8] == "approved" and date.fromisoformat(c[6]) <= on
                 and (not c[7] or on <= date.fromisoformat(c[7]))]
        if not cands:
            return []
        best = min(PRECEDENCE.index(c[3]) for c in cands)
        kept = [c for c in cands if PRECEDENCE.index(c[3]) == best]
        pct = lambda c: Decimal(c[5] or "100")  # noqa: E731
        full = [c for c in kept if pct(c) == 100]
        if full:
            w = min(full, key=lambda c: (c[6], c[0]))
            return [(w[2], Decimal(100), w[4])]
        if sum(pct(c) for c in kept) > 100:
            raise ValueError("credit_over_100")
        return [(c[2], pct(c), c[4]) for c in kept]

    def rate(self, currency: str, month: str) -> Decimal | None:
        if currency == "USD":
            return Decimal(1)
        end = month_bounds(month)[1].isoformat()
        rows = [r for r in self.fx if r[1] == currency and r[0] <= end]
        return Decimal(max(rows)[2]) if rows else None


class Ledger:
    """Walks the billing files month by month, like the engine would, and classifies every row."""

    def __init__(self, root: Path, ref: Reference):
        self.root, self.ref = root, ref
        self.ids: set[str] = set()
        self.charges: dict[str, dict] = {}  # line_id -> {currency, amount, refunded, date, month}
        self.valid: dict[tuple[str, str], list[list[str]]] = {}
        self.bad: dict[tuple[str, str], Counter] = {}
        for month in MONTHS:
            self._billing(month, "subscription_billing.csv")
            self._billing(month, "project_billing.csv")
            self._simple(month, "referral_events.csv")
            self._simple(month, "partner_fees.csv")

    def _billing(self, month: str, name: str) -> None:
        header, rows = read_csv(self.root / "exports" / month / name)
        col = {c: i for i, c in enumerate(header)}
        lo, hi = month_bounds(month)
        good, bad = [], Counter()
        for r in rows:
            reason = self._billing_reason(r, col, lo, hi, name)
            if reason:
                bad[reason] += 1
                continue
            good.append(r)
            lid, amt, cur = r[col["line_id"]], Decimal(r[col["amount"]]), r[col["currency"]]
            self.ids.add(lid)
            if r[col["line_type"]] == "charge":
                self.charges[lid] = {"currency": cur, "amount": amt, "refunded": Decimal(0),
                                     "date": r[col["invoice_date"]], "month": month}
            else:
                self.charges[r[col["refers_to_line_id"]]]["refunded"] += -amt
        self.valid[(month, name)], self.bad[(month, name)] = good, bad

    def _billing_reason(self, r, col, lo, hi, name) -> str | None:
        if len(r) != len(col):
            return "malformed_row"
        d = parse_date(r[col["invoice_date"]])
        if d is None:
            return "bad_date"
        if not lo <= d <= hi:
            return "date_outside_month"
        cur = r[col["currency"]]
        if cur not in ISO:
            return "unknown_currency"
        problem = money_problem(r[col["amount"]], cur)
        if problem:
            return problem
        amt = Decimal(r[col["amount"]])
        lt = r[col["line_type"]]
        assert lt in ("charge", "refund", "chargeback"), lt
        if lt == "charge" and amt < 0:
            return "negative_charge"
        if lt != "charge" and amt > 0:
            return "positive_refund"
        if r[col["line_id"]] in self.ids:
            return "duplicate_line_id"
        if name == "subscription_billing.csv":
            if r[col["product_family"]] not in ("platform", "factory"):
                return "unknown_product_family"
            assert parse_date(r[col["subscription_start"]]) <= d
            try:
                self.ref.credited(r[col["customer_id"]], d)
            except ValueError:
                return "credit_over_100"
        else:
            if r[col["partner_id"]] not in self.ref.partner_ids:
                return "unknown_partner"
            assert r[col["engagement_type"]] in ("partner_led", "company_led", "joint")
            if money_problem(r[col["contract_value"]], cur):
                return "bad_contract_value"
            if r[col["engagement_type"]] == "joint":
                pct = r[col["partner_contribution_pct"]]
                if not pct:
                    return "joint_without_contribution"
                assert 0 <= Decimal(pct) <= 100
        if lt != "charge":
            orig = self.charges.get(r[col["refers_to_line_id"]])
            if orig is None:
                return "refund_original_unknown"
            if orig["currency"] != cur:
                return "refund_currency_mismatch"
            if orig["refunded"] - amt > orig["amount"]:
                return "refund_exceeds_original"
        return None

    def _simple(self, month: str, name: str) -> None:
        header, rows = read_csv(self.root / "exports" / month / name)
        col = {c: i for i, c in enumerate(header)}
        lo, hi = month_bounds(month)
        good, bad = [], Counter()
        for r in rows:
            reason = None
            if len(r) != len(col):
                reason = "malformed_row"
            elif r[col["partner_id"]] not in self.ref.partner_ids:
                reason = "unknown_partner"
            elif name == "referral_events.csv":
                d = parse_date(r[col["event_date"]])
                if d is None:
                    reason = "bad_date"
                elif r[col["event_type"]] not in ("qualified_lead", "signed_agreement", "successful_delivery"):
                    reason = "unknown_event_type"
                elif r[col["currency"]] not in ISO:
                    reason = "unknown_currency"
                elif r[col["event_type"]] == "signed_agreement":
                    if not r[col["first_year_contract_value"]]:
                        reason = "missing_first_year_contract_value"
                    else:
                        reason = money_problem(r[col["first_year_contract_value"]], r[col["currency"]])
            else:
                d = parse_date(r[col["fee_date"]])
                if d is None:
                    reason = "bad_date"
                elif r[col["currency"]] not in ISO:
                    reason = "unknown_currency"
                else:
                    reason = money_problem(r[col["amount"]], r[col["currency"]])
            if reason is None:
                assert lo <= d <= hi, (name, r)
                good.append(r)
            else:
                bad[reason] += 1
        self.valid[(month, name)], self.bad[(month, name)] = good, bad


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sample")
    summary = write_sample(root, months=3, scale=SCALE, seed=7, first_month="2025-01")
    return root, summary


@pytest.fixture(scope="module")
def ref(sample) -> Reference:
    return Reference(sample[0])


@pytest.fixture(scope="module")
def ledger(sample, ref) -> Ledger:
    return Ledger(sample[0], ref)


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".payouts-sample")


# ------------------------------------------------------------------------------------------------
# layout, headers, determinism
# ------------------------------------------------------------------------------------------------
def test_tree_and_headers(sample):
    root, summary = sample
    expected = ["reference/attributions.csv", "reference/fx_rates.csv", "reference/partner_levels.csv",
                "reference/partners.csv", "reference/program.yaml"]
    expected += [f"exports/{m}/{f}" for m in MONTHS for f in EXPORTS]
    expected += ["exports/2025-02/adjustments.csv"]  # the second month's corrections
    assert all_files(root) == sorted(expected)
    for rel in all_files(root):
        if rel.endswith(".csv"):
            key = rel if rel.startswith("reference/") else rel.rsplit("/", 1)[1]
            header, rows = read_csv(root / rel)
            assert header == SPEC_HEADERS[key].split(", "), rel
            raw = (root / rel).read_bytes()
            raw.decode("utf-8")
            assert b"\r" not in raw and raw.endswith(b"\n")
            assert summary["files"][rel]["rows"] == len(rows), rel
    assert summary["months"] == MONTHS


def test_program_yaml_is_the_spec_example(sample):
    root, _ = sample
    text = (root / "reference/program.yaml").read_text()
    prog = yaml.safe_load(text)
    assert prog["program"] == {"name": "Example Partner Program", "currency": "USD"}
    assert prog["payout"] == {"minimum": 50, "holding_days": 0, "net_fees": True}
    (ag,) = prog["agreements"]
    assert str(ag["effective_from"]) == "2025-01-01"
    assert ag["subscription"]["base_rates"] == {
        "platform": {"partner_led": 0.25, "company_led": 0.20, "joint": 0.30},
        "factory": {"partner_led": 0.20, "company_led": 0.15, "joint": 0.25}}
    assert ag["subscription"]["level_uplift"] == {"registered": 0.0, "certified": 0.025, "strategic": 0.05}
    assert ag["subscription"]["max_months"] is None
    assert ag["project"]["partner_led_bands"] == [
        {"up_to": 50000, "rate": 0.70}, {"up_to": 250000, "rate": 0.75}, {"up_to": None, "rate": 0.80}]
    assert ag["project"]["company_led_rate"] == 0.40
    assert ag["referral"] == {"qualified_lead": {"fixed": 500},
                              "signed_agreement": {"pct_of_first_year_value": 0.10},
                              "successful_delivery": {"fixed": 1000}, "signed_within_days": 180}
    assert ag["tiers"] == {"scope": "lifetime", "steps": [{"above": 1000000, "uplift": 0.10}]}


def test_deterministic_byte_identical(sample, tmp_path):
    root, _ = sample
    again = tmp_path / "again"
    write_sample(again, months=3, scale=SCALE, seed=7, first_month="2025-01")
    assert all_files(again) == all_files(root)
    for rel in all_files(root):
        assert (again / rel).read_bytes() == (root / rel).read_bytes(), rel
    other = tmp_path / "other"
    write_sample(other, months=1, scale=SCALE, seed=8, first_month="2025-01")
    assert (other / "exports/2025-01/subscription_billing.csv").read_bytes() != \
        (root / "exports/2025-01/subscription_billing.csv").read_bytes()


def test_rewrites_a_sample_but_never_real_data(tmp_path):
    write_sample(tmp_path / "s", months=3, scale=20)
    write_sample(tmp_path / "s", months=1, scale=20, first_month="2024-11")  # replaces the old tree
    assert sorted(p.name for p in (tmp_path / "s/exports").iterdir()) == ["2024-11"]
    real = tmp_path / "real"
    (real / "reference").mkdir(parents=True)
    (real / "reference/partners.csv").write_text("partner_id\n")
    with pytest.raises(FileExistsError):
        write_sample(real, months=1, scale=20)
    assert (real / "reference/partners.csv").read_text() == "partner_id\n"


def test_rejects_bad_arguments(tmp_path):
    for kwargs in ({"first_month": "2025-13"}, {"first_month": "Jan 2025"}, {"months": 0}, {"scale": 0}):
        with pytest.raises(ValueError):
            write_sample(tmp_path, **kwargs)


# ------------------------------------------------------------------------------------------------
# billing content
# ------------------------------------------------------------------------------------------------
def test_subscription_has_scale_valid_lines_plus_a_handful_of_bad_ones(ledger):
    for m in MONTHS:
        key = (m, "subscription_billing.csv")
        assert len(ledger.valid[key]) == SCALE
        bad = ledger.bad[key]
        assert set(bad) == EXPECTED_BAD["subscription_billing.csv"], bad
        assert all(n == 1 for n in bad.values()) and sum(bad.values()) <= 15


@pytest.mark.parametrize("name", ["project_billing.csv", "referral_events.csv", "partner_fees.csv"])
def test_every_export_has_its_bad_rows(ledger, name):
    for m in MONTHS:
        bad = ledger.bad[(m, name)]
        assert set(bad) == EXPECTED_BAD[name], (m, name, bad)
        assert sum(bad.values()) <= 10
        assert len(ledger.valid[(m, name)]) >= 10


def test_bad_rows_do_not_scale(tmp_path):
    summary = write_sample(tmp_path, months=1, scale=50_000)
    rel = "exports/2025-01/subscription_billing.csv"
    with open(tmp_path / rel, "rb") as f:
        lines = sum(1 for _ in f)
    assert lines - 1 == summary["files"][rel]["rows"] == 50_000 + summary["files"][rel]["bad_rows"]
    assert summary["files"][rel]["bad_rows"] <= 15


def test_line_ids_unique_across_months_and_files(ledger):
    seen = Counter()
    for m in MONTHS:
        for name in ("subscription_billing.csv", "project_billing.csv"):
            seen.update(r[0] for r in ledger.valid[(m, name)])
    assert max(seen.values()) == 1


def test_refunds_reference_real_earlier_charges(sample, ledger):
    """Valid refunds point at a valid charge (this or an earlier month, earlier in the file),
    in the same currency, dated no earlier, and all refunds of a charge stay within it."""
    root, _ = sample
    kinds = Counter()
    for name in ("subscription_billing.csv", "project_billing.csv"):
        charges: dict[str, tuple[str, Decimal, str, str]] = {}
        refunded: dict[str, Decimal] = defaultdict(Decimal)
        for m in MONTHS:
            header, _ = read_csv(root / "exports" / m / name)
            c = {h: i for i, h in enumerate(header)}
            for r in ledger.valid[(m, name)]:
                amt = Decimal(r[c["amount"]])
                if r[c["line_type"]] == "charge":
                    assert amt >= 0 and r[c["refers_to_line_id"]] == ""
                    charges[r[c["line_id"]]] = (r[c["currency"]], amt, r[c["invoice_date"]], m)
                    continue
                kinds[(name, r[c["line_type"]], "same" if r[c["refers_to_line_id"]] in
                       {x[0] for x in ledger.valid[(m, name)]} else "earlier")] += 1
                orig = charges[r[c["refers_to_line_id"]]]  # KeyError: not an earlier charge
                assert amt < 0
                assert orig[0] == r[c["currency"]]
                assert orig[2] <= r[c["invoice_date"]]
                refunded[r[c["refers_to_line_id"]]] += -amt
                assert refunded[r[c["refers_to_line_id"]]] <= orig[1]
    sub = {k[1:]: n for k, n in kinds.items() if k[0] == "subscription_billing.csv"}
    assert sub.get(("refund", "same"), 0) > 0 and sub.get(("refund", "earlier"), 0) > 0
    assert sub.get(("chargeback", "same"), 0) + sub.get(("chargeback", "earlier"), 0) > 0
    assert sum(n for k, n in kinds.items() if k[0] == "project_billing.csv") >= len(MONTHS)


def test_money_and_dates_are_canonical(ledger):
    """Valid amounts carry exactly the currency's digits (2, or 0 for JPY); dates are YYYY-MM-DD."""
    cols = {"subscription_billing.csv": [(8, 7)], "project_billing.csv": [(5, 4), (11, 4)],
            "partner_fees.csv": [(5, 4)]}
    for (m, name), rows in ledger.valid.items():
        for r in rows:
            for a, cur in cols.get(name, []):
                want = r"^-?\d+$" if r[cur] == "JPY" else r"^-?\d+\.\d{2}$"
                assert re.match(want, r[a]), (name, r)
                assert not re.match(r"^-?0\d", r[a]), r


def test_subscription_mix(ledger, ref):
    rows = [r for m in MONTHS for r in ledger.valid[(m, "subscription_billing.csv")]]
    assert {r[6] for r in rows} == {"platform", "factory"}
    assert {r[7] for r in rows} == {"USD", "EUR", "GBP", "JPY"}
    assert {r[9] for r in rows} == {"charge", "refund", "chargeback"}
    old = sum(1 for r in rows if date.fromisoformat(r[5]) <= date.fromisoformat(r[2]) - timedelta(days=366))
    assert 0.2 * len(rows) < old < len(rows)
    assert any(r[5] >= "2025-01-01" for r in rows)  # subscriptions starting inside the period
    engagement, unattributed, joint = Counter(), 0, 0
    for r in rows:
        credited = ref.credited(r[3], date.fromisoformat(r[2]))
        if not credited:
            unattributed += 1
        if len(credited) > 1:
            joint += 1
        engagement.update(e for _, _, e in credited)
    assert set(engagement) == {"partner_led", "company_led", "joint"}
    assert 0.03 * len(rows) < unattributed < 0.4 * len(rows)
    assert joint > 0


def test_projects_cover_every_band_and_engagement(ledger, ref):
    rows = [(m, r) for m in MONTHS for r in ledger.valid[(m, "project_billing.csv")]]
    assert {r[9] for _, r in rows} == {"partner_led", "company_led", "joint"}
    assert all(r[12] for _, r in rows if r[9] == "joint")
    bands = set()
    for m, r in rows:
        if r[9] == "partner_led":
            usd = Decimal(r[11]) * ref.rate(r[4], m)
            bands.add(0 if usd <= 50000 else 1 if usd <= 250000 else 2)
    assert bands == {0, 1, 2}
    cvs = {(r[4], r[11]) for _, r in rows if r[9] == "partner_led"}
    assert ("USD", "50000.00") in cvs and ("USD", "250000.00") in cvs  # band edges
    assert {r[4] for _, r in rows} == {"USD", "EUR", "GBP", "JPY"}
    for m in MONTHS:
        assert 20 <= len(ledger.valid[(m, "project_billing.csv")]) <= 80


def test_referral_events(ledger):
    rows = sorted((r for m in MONTHS for r in ledger.valid[(m, "referral_events.csv")]), key=lambda r: r[5])
    assert {r[4] for r in rows} == {"qualified_lead", "signed_agreement", "successful_delivery"}
    leads = defaultdict(list)
    paid, unpaid = 0, 0
    for r in rows:
        if r[4] == "qualified_lead":
            leads[(r[3], r[1])].append(date.fromisoformat(r[5]))
        elif r[4] == "signed_agreement":
            assert r[6]
            d = date.fromisoformat(r[5])
            if any(0 <= (d - x).days <= 180 for x in leads[(r[3], r[1])]):
                paid += 1
            else:
                unpaid += 1
    assert paid > unpaid >= len(MONTHS)
    repeats = Counter((r[3], r[4]) for r in rows)
    assert 1 <= sum(1 for n in repeats.values() if n > 1) <= 5


def test_fees_push_some_partner_negative(ledger, ref):
    """Some partner owes more in fees than the most it could possibly earn that month."""
    for m in MONTHS:
        fees = defaultdict(Decimal)
        for r in ledger.valid[(m, "partner_fees.csv")]:
            fees[r[1]] += Decimal(r[5]) * ref.rate(r[4], m)
        assert {r[3] for r in ledger.valid[(m, "partner_fees.csv")]} >= {
            "factory_usage", "platform_fee", "api_fee"}
        ceiling = defaultdict(Decimal)  # generous upper bound of earnings
        claimants = defaultdict(set)
        for c in ref.claims:
            claimants[c[1]].add(c[2])
        for r in ledger.valid[(m, "subscription_billing.csv")]:
            for p in claimants[r[3]]:
                ceiling[p] += abs(Decimal(r[8])) * ref.rate(r[7], m)
        for r in ledger.valid[(m, "project_billing.csv")]:
            ceiling[r[10]] += abs(Decimal(r[5])) * ref.rate(r[4], m)
        for r in ledger.valid[(m, "referral_events.csv")]:
            ceiling[r[1]] += 1000 + (Decimal(r[6]) * ref.rate(r[7], m) if r[6] else 0)
        assert any(total > ceiling[p] for p, total in fees.items()), m


def test_every_currency_has_a_rate_for_every_month(sample, ledger, ref):
    root, _ = sample
    used = {r[2] for r in ref.partners}
    for (m, name), rows in ledger.valid.items():
        header, _ = read_csv(root / "exports" / m / name)
        used |= {r[header.index("currency")] for r in rows}
    assert used == {"USD", "EUR", "GBP", "JPY"}
    for r in ref.fx:
        assert parse_date(r[0]) and re.match(r"^\d+\.\d+$", r[2]) and Decimal(r[2]) > 0
    for m in MONTHS:
        lo, hi = month_bounds(m)
        for cur in sorted(used - {"USD"}):
            assert any(r[1] == cur and r[0] == hi.isoformat() for r in ref.fx), (m, cur)


# ------------------------------------------------------------------------------------------------
# reference content
# ------------------------------------------------------------------------------------------------
def test_partners(ref, sample):
    root, _ = sample
    p = ref.partners
    assert 250 <= len(p) <= 400 and len({r[0] for r in p}) == len(p)
    assert {r[2] for r in p} == {"USD", "EUR", "GBP", "JPY"}
    assert {r[3] for r in p} == {"bank_transfer", "paypal", "none"}
    assert {r[7] for r in p} == {"active", "suspended", "terminated"}
    assert {"0", "10", "30"} <= {r[6] for r in p}
    assert any(r[3] != "none" and r[4] == "" for r in p)
    assert sum(1 for r in p if r[8]) >= 5
    assert any(r[1][:1] in "=+@" for r in p)
    assert any("," in r[1] and '"' in r[1] for r in p)
    assert b'"Smith, Jones & ""Partners"" Ltd"' in (root / "reference/partners.csv").read_bytes()
    ibans = [r[4] for r in p if re.match(r"^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$", r[4])]
    assert len(ibans) > 50
    for iban in ibans:  # mod-97 check digits
        digits = "".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])
        assert int(digits) % 97 == 1, iban
    levels = ref.levels
    assert {r[1] for r in levels} == {"registered", "certified", "strategic"}
    changed = Counter(r[0] for r in levels)
    assert sum(1 for n in changed.values() if n > 1) >= 10
    assert any(r[2] >= "2025-01-01" for r in levels)
    assert set(changed) < ref.partner_ids  # some partners have no row (registered by default)


def test_attributions(ref, ledger):
    cl = ref.claims
    assert len({c[0] for c in cl}) == len(cl)
    assert {c[3] for c in cl} == set(PRECEDENCE)
    assert {c[8] for c in cl} == {"approved", "pending", "rejected"}
    assert {c[4] for c in cl} == {"partner_led", "company_led", "joint"}
    assert any(c[5] == "" for c in cl) and any(c[5] == "100" for c in cl)
    assert any(c[5] not in ("", "100") for c in cl)
    assert any(c[7] for c in cl)
    assert all(c[1] in ref.by_customer for c in cl) and set(ref.partner_ids) >= {c[2] for c in cl}
    # competing approved claims of different precedence for one customer
    sources = defaultdict(set)
    for c in cl:
        if c[8] == "approved":
            sources[c[1]].add(c[3])
    assert sum(1 for s in sources.values() if len(s) > 1) >= 10
    # billed customers with no claim at all
    billed = {r[3] for m in MONTHS for r in ledger.valid[(m, "subscription_billing.csv")]}
    assert len(billed - set(ref.by_customer)) >= 10


# ------------------------------------------------------------------------------------------------
# scale: streaming
# ------------------------------------------------------------------------------------------------
def test_streams_large_scale_quickly(tmp_path):
    n = 200_000
    t0 = time.perf_counter()
    summary = write_sample(tmp_path, months=1, scale=n)
    elapsed = time.perf_counter() - t0
    path = tmp_path / "exports/2025-01/subscription_billing.csv"
    count, last_index, repeats = 0, -1, 0
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for r in reader:
            if r[0].startswith("SB-202501-X"):
                continue  # an injected bad row
            i = int(r[0].rsplit("-", 1)[1])
            if i <= last_index:
                repeats += 1  # the duplicate_line_id row
                continue
            assert i == last_index + 1  # rows come out in index order, none missing
            last_index = i
            count += 1
    assert count == n and repeats == 1
    assert summary["files"]["exports/2025-01/subscription_billing.csv"]["rows"] == n + 13
    assert elapsed < 20
