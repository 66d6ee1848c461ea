"""sql/partner_results: each partner's month in its payout currency.

Per partner and currency the payable movements are summed, converted once at month M's rates and
rounded half away from zero; the kinds' columns split that rounded amount by largest remainder so
they add up to it exactly. Then the payout decision (status, minimum, payout method), withholding
and the closing balance. One row per partner and currency, never per billing line: exact
`Fraction` arithmetic in Python.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import duckdb
import pyarrow as pa

from pipelines.core.money import minor_units, round_half_away
from pipelines.core.program import Program
from pipelines.rules.relations import decimal_type, table_from_rows

log = logging.getLogger(__name__)

#: the kinds of movement, in the order the largest-remainder split prefers when it must round one
#: up or down; adjustments and restatements both land in partner_balances' `adjustments` column
KINDS = ("share", "clawback", "referral_fee", "fee", "adjustment", "restatement")


@dataclass
class PartnerResult:
    partner_id: str
    payout_currency: str
    digits: int
    opening: int
    by_kind: dict[str, int]
    pending: int
    gross: int
    withholding: int
    net: int
    closing: int
    status: str


def allocate(total: int, exact: dict[str, Fraction]) -> dict[str, int]:
    """Split a rounded total over kinds so the parts sum to it exactly (largest remainder)."""
    alloc = {k: round_half_away(v) for k, v in exact.items()}
    residual = total - sum(alloc.values())
    step = 1 if residual > 0 else -1
    # the kinds whose rounding moved them furthest from their exact value in the residual's direction
    order = sorted(exact, key=lambda k: (-(exact[k] - alloc[k]) * step, KINDS.index(k)))
    for k in order[: abs(residual)]:
        alloc[k] += step
    return alloc


def partner_results(con: duckdb.DuckDBPyConnection, params: dict, context: dict) -> int:
    """sql/partner_results: each partner's balance in its payout currency (SPEC section 2, Balance and
    payout), from the month's open movements; also `conversions` (one row per partner, currency and
    kind, for the statements) and `held_partners`."""
    program: Program = context["program"]
    month = params["billing_month"]
    digits = minor_units()
    pc = program.currency
    rates = {c: Fraction(r) for c, r in con.execute("select currency, rate from month_rates").fetchall()}
    partners = {
        r[0]: r for r in con.execute(
            "select partner_id, payout_currency, payout_method, account_ref, withholding_tax_pct, status, "
            "min_payout_minor from partners"
        ).fetchall()
    }
    opening = {
        pid: (cur, int(closing)) for pid, cur, closing in con.execute(
            """select partner_id, arg_max(payout_currency, billing_month), arg_max(closing_minor, billing_month)
               from ledger.balances where billing_month < $m group by partner_id""", {"m": month}
        ).fetchall()
    }
    sums: dict[str, dict] = {}
    for pid, payable, kind, cur, netted, total in con.execute(
        """select partner_id, payable, kind, currency, netted, sum(amount_minor)
           from open_movements group by all order by all"""
    ).fetchall():
        s = sums.setdefault(pid, {"payable": {}, "pending": {}})
        if not netted:
            continue
        bucket = s["payable"] if payable else s["pending"]
        bucket[(cur, kind)] = bucket.get((cur, kind), 0) + int(total)

    results, conversions, held = [], [], []
    for pid in sorted(set(sums) | {p for p, (_, c) in opening.items() if c != 0}):
        info = partners.get(pid)
        s = sums.get(pid, {"payable": {}, "pending": {}})
        open_cur, open_bal = opening.get(pid, (None, 0))
        if info is None:  # a carried balance of a partner no longer in partners.csv
            results.append(PartnerResult(pid, open_cur, digits[open_cur], open_bal, dict.fromkeys(KINDS, 0),
                                         0, 0, 0, 0, open_bal, "unknown_partner"))
            held.append(pid)
            continue
        _, b, method, account, wht, status, min_payout = info
        d_b = digits[b]
        if open_cur is not None and open_cur != b and open_bal != 0:
            # the payout currency changed with money on the account: hold it for finance (docs/rules.md)
            results.append(PartnerResult(pid, open_cur, digits[open_cur], open_bal, dict.fromkeys(KINDS, 0),
                                         0, 0, 0, 0, open_bal, "payout_currency_changed"))
            held.append(pid)
            continue
        currencies = {c for c, _ in s["payable"]} | {c for c, _ in s["pending"]} | {b}
        needs_min = min_payout is None and b != pc
        if any(c not in rates for c in currencies) or (needs_min and b not in rates):
            results.append(PartnerResult(pid, b, d_b, open_bal, dict.fromkeys(KINDS, 0), 0, 0, 0, 0, open_bal,
                                         "missing_fx_rate"))
            held.append(pid)
            continue
        by_kind = dict.fromkeys(KINDS, 0)
        for cur in sorted({c for c, _ in s["payable"]}):
            ratio = rates[cur] / rates[b] * Fraction(10) ** (d_b - digits[cur])
            kinds = {k: v for (c, k), v in s["payable"].items() if c == cur}
            total = round_half_away(sum(kinds.values()) * ratio)
            alloc = allocate(total, {k: v * ratio for k, v in kinds.items()})
            for k, v in alloc.items():
                by_kind[k] += v
                conversions.append((pid, cur, k, kinds[k], ratio_text(rates[cur] / rates[b]), v, total))
        pending = sum(
            round_half_away(v * rates[cur] / rates[b] * Fraction(10) ** (d_b - digits[cur]))
            for cur, v in _by_currency(s["pending"]).items()
        )
        balance = open_bal + sum(by_kind.values())
        minimum = min_payout if min_payout is not None else round_half_away(
            Fraction(program.payout.minimum) / rates[b] * 10**d_b)
        if status != "active":
            why = status
        elif method == "none" or not account:
            why = "no_payout_method"
        elif balance < 0:
            why = "negative_balance"
        elif balance == 0:
            why = "nothing_due"
        elif balance < minimum:
            why = "below_minimum"
        else:
            why = "paid"
        gross = balance if why == "paid" else 0
        withholding = round_half_away(Fraction(gross) * Fraction(wht) / 100)
        results.append(PartnerResult(pid, b, d_b, open_bal, by_kind, pending, gross, withholding,
                                     gross - withholding, balance - gross, why))

    table_from_rows(con, "partner_results",
           {"partner_id": pa.string(), "payout_currency": pa.string(), "payout_digits": pa.int32(),
            "opening_minor": decimal_type(0), "earnings_minor": decimal_type(0), "clawbacks_minor": decimal_type(0),
            "referral_fees_minor": decimal_type(0), "fees_minor": decimal_type(0),
            "adjustments_minor": decimal_type(0), "pending_minor": decimal_type(0),
            "gross_minor": decimal_type(0), "withholding_minor": decimal_type(0), "net_minor": decimal_type(0),
            "closing_minor": decimal_type(0), "status": pa.string()},
           [(r.partner_id, r.payout_currency, r.digits, r.opening, r.by_kind["share"], r.by_kind["clawback"],
             r.by_kind["referral_fee"], r.by_kind["fee"], r.by_kind["adjustment"] + r.by_kind["restatement"],
             r.pending, r.gross, r.withholding, r.net,
             r.closing, r.status) for r in results])
    table_from_rows(con, "conversions",
           {"partner_id": pa.string(), "currency": pa.string(), "kind": pa.string(), "source_minor": decimal_type(0),
            "rate": pa.string(), "converted_minor": decimal_type(0), "currency_total_minor": decimal_type(0)},
           conversions)
    table_from_rows(con, "held_partners", {"partner_id": pa.string()}, [(p,) for p in held])
    paid = sum(1 for r in results if r.status == "paid")
    log.info("balances: %d partners, %d paid, %d held for a missing fx rate", len(results), paid, len(held))
    context["balances"] = {"partners": len(results), "paid": paid, "held": len(held)}
    return len(results)


def ratio_text(r: Fraction) -> str:
    """A conversion rate for people to read (the arithmetic itself used the exact fraction)."""
    if r.denominator == 1:
        return str(r.numerator)
    q = (Decimal(r.numerator) / Decimal(r.denominator)).quantize(Decimal("1e-10"))
    return format(q.normalize(), "f")


def _by_currency(bucket: dict[tuple[str, str], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (cur, _), v in bucket.items():
        out[cur] = out.get(cur, 0) + v
    return out
