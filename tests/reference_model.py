"""A small, independent reference model of the payout rules, written from SPEC.md sections 1-5 and 7.

It does not import the engine: it takes the same input rows that tests/builders.py writes (dicts of
strings) and recomputes, month by month, what `partner_balances.csv` and `remittance.csv` must say.
Every amount is a `Fraction` until it is rounded (half away from zero, to the minor unit of the
currency it is in), so nothing here shares the engine's integer/DECIMAL arithmetic.

The subset of the rules it implements (the generated data of tests/test_reference_model.py stays
inside it; `run_months` raises `OutsideModel` when it sees something outside it):

- inputs are clean: no row is quarantined (no bad values, no duplicate ids, no unknown partner,
  currency or family, every needed fx rate is present, refunds never exceed their charge);
- currencies USD (the program currency), EUR, JPY, KWD; the rate of month M is the row with the
  latest `rate_date` on or before M's last day;
- one agreement version; subscription rate = base_rates[family][engagement] + level uplift (level
  from partner_levels.csv on the invoice date) + after_first_year_uplift (invoice date on or after
  subscription_start + 12 months), clamped to [0, 1]; `max_months: null`; the tier base never
  reaches the first step (checked: tier uplifts are out of the subset);
- attribution: approved claims valid on the invoice date, highest-precedence source, then the
  earliest (valid_from, claim_id) 100 % claim alone, else joint credit (a sum over 100 is out of the
  subset);
- project lines: partner_led band on contract_value in program currency (whole base) + level
  uplift; company_led rate; joint contribution / 100;
- refunds and chargebacks of a charge of the same billing file (any earlier month or this month):
  each credited partner's rounded share × refund / original, rounded;
- referral fees: fixed amounts (program currency), signed_agreement % of first-year value (event
  currency) when the same partner had a qualified_lead for the deal on or at most
  signed_within_days before; each (deal, event_type) pays once ever. The generator never puts two
  events with the same (deal, event_type) in one month (their order would be a choice);
- fees (deducted when net_fees), adjustments (always), both payable at once;
- holding_days >= 0: an earning (share or referral fee) is payable once date + holding_days <= the
  month's last day, otherwise pending; clawbacks, fees and adjustments are payable at once;
- payout: per currency sum of payable movements converted once and rounded; balance = opening +
  sum; minimum = min_payout or the program minimum converted and rounded; statuses in the
  spec's order; withholding = gross × pct / 100 rounded; net = gross - withholding.
  No payout_currency changes, no missing rates, no restatements.

`partner_balances.csv` splits each currency's one rounded conversion over the kinds (earnings,
clawbacks, referral fees, fees, adjustments) by largest remainder (docs/rules.md). The model does
not re-implement that split: for each per-kind column it gives the exact (unrounded) value and says
whether the rounded column is determined without it (every currency holding that kind is the
payout currency or holds no other kind); otherwise a test can only bound the column. The same
holds for `pending` when it is in more than one currency (the model converts each currency's
waiting earnings once and rounds, as for payable movements; the spec does not say). `row()` shows
such an undetermined column as "~" and its exact value, rounded.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

DIGITS = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}
SOURCES = ("partner_of_record", "deal_registration", "referral_link")  # highest precedence first
STATUS_ORDER = ("terminated", "suspended", "no_payout_method", "negative_balance", "nothing_due", "below_minimum")
KIND_COLUMN = {"share": "earnings", "clawback": "clawbacks", "referral_fee": "referral_fees", "fee": "fees",
               "adjustment": "adjustments"}
MONEY_COLUMNS = ("opening_balance", "earnings", "clawbacks", "referral_fees", "fees", "adjustments", "pending",
                 "gross_paid", "withholding", "net_paid", "closing_balance")


class OutsideModel(Exception):
    """The inputs use a rule this model does not implement."""


# ---------------------------------------------------------------------------------------- helpers

def frac(text: str) -> Fraction:
    return Fraction(text) if text not in ("", None) else Fraction(0)


def round_half_away(x, digits: int) -> Fraction:
    """x rounded to `digits` decimals, halves away from zero (the only rounding the spec allows)."""
    scaled = Fraction(x) * 10**digits
    sign = -1 if scaled < 0 else 1
    whole, rest = divmod(abs(scaled), 1)
    if rest >= Fraction(1, 2):
        whole += 1
    return Fraction(sign * int(whole), 10**digits)


def fmt(x: Fraction, currency: str) -> str:
    """x (already on the currency's minor unit) as the outputs print it: exactly the minor-unit digits."""
    d = DIGITS[currency]
    minor = x * 10**d
    if minor.denominator != 1:
        raise ValueError(f"{x} is not a whole number of {currency} minor units")
    return f"{Decimal(int(minor)).scaleb(-d):.{d}f}"


def day(text: str) -> date:
    return date.fromisoformat(text)


def add_months(d: date, n: int) -> date:
    """d + n months, keeping the day (clamped to the month's last day), as SPEC section 2 defines it."""
    y, m = divmod(d.month - 1 + n, 12)
    y, m = d.year + y, m + 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def last_day(month: str) -> date:
    y, m = map(int, month.split("-"))
    return date(y, m, calendar.monthrange(y, m)[1])


class Rates(dict):
    """Month M's rates; a currency without one is outside the model (the engine holds the partner)."""
    def __missing__(self, currency):
        raise OutsideModel(f"no rate for {currency}")


# ----------------------------------------------------------------------------------------- state

@dataclass
class Movement:
    partner_id: str
    kind: str            # share, clawback, referral_fee, fee, adjustment
    currency: str
    amount: Fraction     # rounded to the currency's minor unit; + owed to the partner, - owed by it
    payable_on: date     # the first day it is payable (earnings: date + holding_days)


@dataclass
class Charge:
    file: str
    currency: str
    amount: Fraction
    shares: list[tuple[str, Fraction]]   # (partner_id, rounded share)
    refunded: Fraction = Fraction(0)


@dataclass
class PartnerMonth:
    """One row of partner_balances.csv, plus what the model knows about the per-kind split."""
    partner_id: str
    payout_currency: str
    values: dict[str, Fraction]          # MONEY_COLUMNS -> value (an undetermined kind column: its exact value)
    kind_exact: dict[str, Fraction]      # per-kind column -> exact converted value (before any rounding)
    kind_determined: dict[str, bool]     # per-kind column -> the rounded column follows from the rules alone
    kind_currencies: dict[str, int]      # per-kind column -> how many currencies hold that kind
    pending_determined: bool
    pending_currencies: int
    status: str

    def row(self) -> dict[str, str]:
        out = {"partner_id": self.partner_id, "payout_currency": self.payout_currency}
        for k, v in self.values.items():
            determined = self.kind_determined.get(k, True) and (k != "pending" or self.pending_determined)
            # a column the model cannot fix alone is shown as "~" and its exact value rounded
            out[k] = fmt(v, self.payout_currency) if determined else \
                "~" + fmt(round_half_away(v, DIGITS[self.payout_currency]), self.payout_currency)
        out["status"] = self.status
        return out


@dataclass
class MonthResult:
    balances: dict[str, PartnerMonth]
    remittance: list[dict[str, str]]


@dataclass
class Ledger:
    closing: dict[str, Fraction] = field(default_factory=dict)
    open_earnings: list[Movement] = field(default_factory=list)   # pending at the last month's end
    charges: dict[str, Charge] = field(default_factory=dict)
    paid_referrals: set[tuple[str, str]] = field(default_factory=set)
    leads: list[tuple[str, str, date]] = field(default_factory=list)   # (partner, deal, date)
    tier_base: dict[str, Fraction] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ model

class Model:
    def __init__(self, program: dict, reference: dict[str, list[dict]]):
        self.program = program
        if program["program"]["currency"] != "USD":
            raise OutsideModel("program currency must be USD")
        if len(program["agreements"]) != 1:
            raise OutsideModel("one agreement version only")
        self.agreement = program["agreements"][0]
        self.effective_from = day(str(self.agreement["effective_from"]))
        if self.agreement["subscription"].get("max_months") is not None:
            raise OutsideModel("max_months")
        self.payout = program["payout"]
        self.holding_days = int(self.payout.get("holding_days", 0))
        self.net_fees = bool(self.payout.get("net_fees", True))
        self.partners = {r["partner_id"]: r for r in reference["partners"]}
        self.levels = reference.get("partner_levels", [])
        self.claims = reference.get("attributions", [])
        self.fx = reference.get("fx_rates", [])
        self.ledger = Ledger()

    # -- reference data
    def rates(self, month: str) -> dict[str, Fraction]:
        end = last_day(month)
        best: dict[str, tuple[date, Fraction]] = {}
        for r in self.fx:
            d = day(r["rate_date"])
            if d <= end and (r["currency"] not in best or d > best[r["currency"]][0]):
                best[r["currency"]] = (d, frac(r["rate"]))
        rates = Rates({c: v for c, (_, v) in best.items()})
        rates["USD"] = Fraction(1)
        return rates

    def level(self, pid: str, on: date) -> str:
        rows = [r for r in self.levels if r["partner_id"] == pid and day(r["effective_from"]) <= on]
        return max(rows, key=lambda r: r["effective_from"])["level"] if rows else "registered"

    def uplift(self, pid: str, on: date) -> Fraction:
        return Fraction(str(self.agreement["subscription"]["level_uplift"][self.level(pid, on)]))

    def credits(self, customer: str, on: date) -> list[tuple[str, Fraction, str]]:
        """[(partner_id, credit_pct, engagement_type)] for a subscription line (SPEC 2, attribution)."""
        cands = [c for c in self.claims if c["customer_id"] == customer and c["status"] == "approved"
                 and day(c["valid_from"]) <= on and (not c["valid_to"] or on <= day(c["valid_to"]))]
        if not cands:
            return []
        best = min(SOURCES.index(c["source"]) for c in cands)
        kept = [c for c in cands if SOURCES.index(c["source"]) == best]
        full = [c for c in kept if frac(c["credit_pct"] or "100") == 100]
        if full:
            c = min(full, key=lambda c: (c["valid_from"], c["claim_id"]))
            return [(c["partner_id"], Fraction(100), c["engagement_type"])]
        if sum(frac(c["credit_pct"]) for c in kept) > 100:
            raise OutsideModel(f"credit over 100 for {customer}")
        return [(c["partner_id"], frac(c["credit_pct"]), c["engagement_type"]) for c in kept]

    # -- rates
    def sub_rate(self, pid: str, line: dict, engagement: str) -> Fraction:
        on = day(line["invoice_date"])
        s = self.agreement["subscription"]
        rate = Fraction(str(s["base_rates"][line["product_family"]][engagement])) + self.uplift(pid, on)
        if on >= add_months(day(line["subscription_start"]), 12):
            rate += Fraction(str(s.get("after_first_year_uplift") or 0))
        return min(max(rate, Fraction(0)), Fraction(1))

    def project_rate(self, line: dict, rates: dict[str, Fraction]) -> Fraction:
        p = self.agreement["project"]
        eng = line["engagement_type"]
        if eng == "company_led":
            return Fraction(str(p["company_led_rate"]))
        if eng == "joint":
            return frac(line["partner_contribution_pct"]) / 100
        value = frac(line["contract_value"]) * rates[line["currency"]]     # program currency, exact
        for band in p["partner_led_bands"]:
            if band["up_to"] is None or value <= Fraction(str(band["up_to"])):
                rate = Fraction(str(band["rate"])) + self.uplift(line["partner_id"], day(line["invoice_date"]))
                return min(max(rate, Fraction(0)), Fraction(1))
        raise OutsideModel("no band")

    def add_tier_base(self, pid: str, amount: Fraction) -> None:
        base = self.ledger.tier_base.get(pid, Fraction(0)) + amount
        self.ledger.tier_base[pid] = base
        steps = self.agreement.get("tiers", {}).get("steps") or []
        if steps and base > Fraction(str(min(s["above"] for s in steps))):
            raise OutsideModel(f"{pid}'s tier base reaches a step")

    # -- one month
    def run(self, month: str, files: dict[str, list[dict]]) -> MonthResult:
        end = last_day(month)
        rates = self.rates(month)
        moves: list[Movement] = []
        hold = timedelta(days=self.holding_days)

        def earning(pid, kind, cur, amount, on: date):
            moves.append(Movement(pid, kind, cur, amount, on + hold))

        def now(pid, kind, cur, amount):
            moves.append(Movement(pid, kind, cur, amount, date.min))

        for file in ("subscription_billing", "project_billing"):
            lines = files.get(file, [])
            for line in lines:
                on = day(line["invoice_date"])
                if on < self.effective_from or line["invoice_date"][:7] != month:
                    raise OutsideModel("line outside the month or before the agreement")
                if line["line_type"] != "charge":
                    continue
                cur, amount = line["currency"], frac(line["amount"])
                shares = []
                if file == "subscription_billing":
                    for pid, credit, eng in self.credits(line["customer_id"], on):
                        self.add_tier_base(pid, amount * credit / 100 * rates[cur])
                        share = round_half_away(amount * credit / 100 * self.sub_rate(pid, line, eng), DIGITS[cur])
                        shares.append((pid, share))
                else:
                    pid = line["partner_id"]
                    shares.append((pid, round_half_away(amount * self.project_rate(line, rates), DIGITS[cur])))
                for pid, share in shares:
                    earning(pid, "share", cur, share, on)
                self.ledger.charges[line["line_id"]] = Charge(file, cur, amount, shares)
            for line in sorted((x for x in lines if x["line_type"] != "charge"),
                               key=lambda x: (x["invoice_date"], x["line_id"])):
                orig = self.ledger.charges.get(line["refers_to_line_id"])
                amount = frac(line["amount"])
                if orig is None or orig.file != file or orig.currency != line["currency"] \
                        or orig.refunded - amount > orig.amount:
                    raise OutsideModel(f"refund {line['line_id']} would be an exception")
                orig.refunded -= amount
                for pid, share in orig.shares:
                    now(pid, "clawback", line["currency"],
                        round_half_away(share * amount / orig.amount, DIGITS[line["currency"]]))

        ref = self.agreement["referral"]
        events = files.get("referral_events", [])
        keys = [(e["deal_id"], e["event_type"]) for e in events]
        if len(keys) != len(set(keys)):
            raise OutsideModel("two events with the same (deal, event_type) in one month")
        for e in events:
            if e["event_type"] == "qualified_lead":
                self.ledger.leads.append((e["partner_id"], e["deal_id"], day(e["event_date"])))
        for e in sorted(events, key=lambda e: (e["event_date"], e["event_id"])):
            on, key, pid = day(e["event_date"]), (e["deal_id"], e["event_type"]), e["partner_id"]
            if e["event_type"] == "signed_agreement":
                window = timedelta(days=int(ref["signed_within_days"]))
                if not any(p == pid and d == e["deal_id"] and on - window <= ld <= on
                           for p, d, ld in self.ledger.leads):
                    continue                    # earns nothing, does not use up the deal's signature
                cur = e["currency"]
                fee = round_half_away(Fraction(str(ref["signed_agreement"]["pct_of_first_year_value"]))
                                      * frac(e["first_year_contract_value"]), DIGITS[cur])
            else:
                cur, fee = "USD", Fraction(str(ref[e["event_type"]]["fixed"]))
            if key in self.ledger.paid_referrals:
                continue                        # a repeat: reported, not paid
            self.ledger.paid_referrals.add(key)
            earning(pid, "referral_fee", cur, fee, on)

        fees_shown: set[str] = set()
        for f in files.get("partner_fees", []):
            fees_shown.add(f["partner_id"])
            if self.net_fees:
                now(f["partner_id"], "fee", f["currency"], -frac(f["amount"]))
        for a in files.get("adjustments", []):
            now(a["partner_id"], "adjustment", a["currency"], frac(a["amount"]))

        for m in moves:
            if m.partner_id not in self.partners:
                raise OutsideModel(f"unknown partner {m.partner_id}")
        everything = self.ledger.open_earnings + moves
        payable = [m for m in everything if m.payable_on <= end]
        pending = [m for m in everything if m.payable_on > end]
        self.ledger.open_earnings = pending

        result = MonthResult({}, [])
        for pid in sorted(self.partners):
            p = self.partners[pid]
            pc = p["payout_currency"]
            opening = self.ledger.closing.get(pid, Fraction(0))
            mine = [m for m in payable if m.partner_id == pid]
            waiting = [m for m in pending if m.partner_id == pid]
            if not (mine or waiting or opening or pid in fees_shown):
                continue

            def convert(x: Fraction, cur: str) -> Fraction:
                return x * rates[cur] / rates[pc]

            by_cur: dict[str, Fraction] = {}
            for m in mine:
                by_cur[m.currency] = by_cur.get(m.currency, Fraction(0)) + m.amount
            converted = {c: round_half_away(convert(s, c), DIGITS[pc]) for c, s in by_cur.items()}
            balance = opening + sum(converted.values(), Fraction(0))

            kind_exact, kind_det, kind_curs, values = {}, {}, {}, {}
            for kind, col in KIND_COLUMN.items():
                curs = {m.currency for m in mine if m.kind == kind}
                part = {c: sum((m.amount for m in mine if m.kind == kind and m.currency == c), Fraction(0))
                        for c in curs}
                kind_exact[col] = sum((convert(s, c) for c, s in part.items()), Fraction(0))
                kind_curs[col] = len(curs)
                kind_det[col] = all(c == pc or {m.kind for m in mine if m.currency == c} == {kind} for c in curs)
                values[col] = sum((part[c] if c == pc else converted[c] for c in curs), Fraction(0)) \
                    if kind_det[col] else kind_exact[col]

            pend_by_cur: dict[str, Fraction] = {}
            for m in waiting:
                pend_by_cur[m.currency] = pend_by_cur.get(m.currency, Fraction(0)) + m.amount
            pend = sum((round_half_away(convert(s, c), DIGITS[pc]) for c, s in pend_by_cur.items()), Fraction(0))

            minimum = frac(p["min_payout"]) if p.get("min_payout") else round_half_away(
                convert(Fraction(str(self.payout["minimum"])), "USD"), DIGITS[pc])
            reasons = {
                "terminated": p["status"] == "terminated",
                "suspended": p["status"] == "suspended",
                "no_payout_method": p["payout_method"] == "none" or not p.get("account_ref"),
                "negative_balance": balance < 0,
                "nothing_due": balance == 0,
                "below_minimum": balance < minimum,
            }
            status = next((r for r in STATUS_ORDER if reasons[r]), "paid")
            gross = balance if status == "paid" else Fraction(0)
            withholding = round_half_away(gross * frac(p.get("withholding_tax_pct", "")) / 100, DIGITS[pc])
            closing = balance - gross
            values.update(opening_balance=opening, pending=pend, gross_paid=gross, withholding=withholding,
                          net_paid=gross - withholding, closing_balance=closing)
            values = {k: values[k] for k in MONEY_COLUMNS}
            result.balances[pid] = PartnerMonth(
                pid, pc, values, kind_exact, kind_det, kind_curs,
                pending_determined=len(pend_by_cur) <= 1 or set(pend_by_cur) == {pc},
                pending_currencies=len(pend_by_cur), status=status)
            if status == "paid":
                result.remittance.append({
                    "payment_reference": f"PO-{month.replace('-', '')}-{pid}", "billing_month": month,
                    "partner_id": pid, "partner_name": p["name"], "payout_currency": pc,
                    "gross_amount": fmt(gross, pc), "withholding_amount": fmt(withholding, pc),
                    "net_amount": fmt(gross - withholding, pc), "payout_method": p["payout_method"],
                    "account_last4": p["account_ref"][-4:]})
        self.ledger.closing = {pid: r.values["closing_balance"] for pid, r in result.balances.items()}
        return result


def run_months(program: dict, reference: dict[str, list[dict]], months: dict[str, dict[str, list[dict]]]
               ) -> dict[str, MonthResult]:
    """The model's outputs for each month, run in order (months: {"YYYY-MM": {file key: rows}})."""
    model = Model(program, reference)
    return {m: model.run(m, months[m]) for m in sorted(months)}
