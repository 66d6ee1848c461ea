"""Compute: the payout rules of SPEC section 2 over the staged month, as DuckDB SQL steps.

Set-based work (attribution, levels and fx as-of joins, tier bases with window functions, refunds,
referral windows) is SQL under `sql/`. Python handles only what is small and needs exact rational
arithmetic: the few charges whose tier base crosses a step (split exactly with `Fraction`) and the
per-partner balance (currency conversion, rounding, payout decision), one row per partner and
currency, never per billing line.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import duckdb
import pyarrow as pa

from pipelines.rules import relations
from pipelines.core.program import LEVELS, Program

log = logging.getLogger(__name__)

KINDS = ("share", "clawback", "referral_fee", "fee")


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    start = dt.date.fromisoformat(month + "-01")
    nxt = dt.date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, nxt - dt.timedelta(days=1)


def _table(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, pa.DataType], rows: list[tuple]) -> None:
    def col(i: int, t: pa.DataType) -> pa.Array:
        vals = [r[i] for r in rows]
        if pa.types.is_decimal(t):  # exact: ints and Decimals only, never floats
            vals = [None if v is None else Decimal(v) for v in vals]
        return pa.array(vals, type=t)

    arrays = [col(i, t) for i, t in enumerate(columns.values())]
    con.register("_tmp_arrow", pa.table(dict(zip(columns, arrays))))
    con.execute(f"create or replace table {name} as select * from _tmp_arrow")
    con.unregister("_tmp_arrow")


def _dec(scale: int) -> pa.DataType:
    return pa.decimal128(38, scale)


def load_program_tables(con: duckdb.DuckDBPyConnection, program: Program, digits: dict[str, int]) -> None:
    """The rate card as small tables, one row per agreement version (and key)."""
    vs = sorted(enumerate(program.agreements), key=lambda x: x[1].effective_from)
    rows = []
    for n, (_, a) in enumerate(vs):
        nxt = vs[n + 1][1].effective_from if n + 1 < len(vs) else None
        rows.append((n, a.effective_from, nxt))
    _table(con, "agreements", {"version": pa.int32(), "effective_from": pa.date32(), "next_from": pa.date32()}, rows)
    versions = [(n, a) for n, (_, a) in enumerate(vs)]
    _table(con, "sub_base_rates",
           {"version": pa.int32(), "product_family": pa.string(), "engagement_type": pa.string(), "rate": _dec(6)},
           [(n, fam, et, getattr(r, et)) for n, a in versions for fam, r in a.subscription.base_rates.items()
            for et in ("partner_led", "company_led", "joint")])
    _table(con, "level_uplifts", {"version": pa.int32(), "level": pa.string(), "uplift": _dec(6)},
           [(n, lv, getattr(a.subscription.level_uplift, lv)) for n, a in versions for lv in LEVELS])
    _table(con, "sub_terms", {"version": pa.int32(), "after_first_year_uplift": _dec(6), "max_months": pa.int32()},
           [(n, a.subscription.after_first_year_uplift, a.subscription.max_months) for n, a in versions])
    _table(con, "tier_scopes", {"version": pa.int32(), "scope": pa.string()},
           [(n, a.tiers.scope) for n, a in versions])
    _table(con, "tier_steps", {"version": pa.int32(), "step_no": pa.int32(), "above": _dec(20), "uplift": _dec(6)},
           [(n, i + 1, s.above, s.uplift) for n, a in versions for i, s in enumerate(a.tiers.steps)])
    _table(con, "project_bands", {"version": pa.int32(), "band_no": pa.int32(), "up_to": _dec(10), "rate": _dec(6)},
           [(n, i, b.up_to, b.rate) for n, a in versions for i, b in enumerate(a.project.partner_led_bands)])
    _table(con, "project_terms", {"version": pa.int32(), "company_led_rate": _dec(6)},
           [(n, a.project.company_led_rate) for n, a in versions])
    pd = digits[program.currency]
    _table(con, "referral_terms",
           {"version": pa.int32(), "qualified_lead_minor": _dec(0), "successful_delivery_minor": _dec(0),
            "pct_of_first_year_value": _dec(6), "signed_within_days": pa.int32()},
           [(n, a.referral.qualified_lead.fixed.scaleb(pd), a.referral.successful_delivery.fixed.scaleb(pd),
             a.referral.signed_agreement.pct_of_first_year_value, a.referral.signed_within_days)
            for n, a in versions])


def split(con: duckdb.DuckDBPyConnection, checked: str, clean: str, refused: str | None = None) -> int:
    """Rows of `checked` with a reason_code go to month_quarantine; the rest become view `clean`.
    With `refused`, the refused rows' (source, row_number) are also kept in that temp table."""
    rows = f"(select * from {checked} where reason_code is not null)"
    if refused is not None:  # `checked` is read once, into the (small) table of refused rows
        con.execute(f"create or replace temp table {refused} as "
                    f"select source, row_number, source_file, record_id, reason_code, message from {rows}")
        rows = refused
    # an INSERT returns the number of rows it inserted: `checked` (maybe a view) is read once here
    (bad,) = con.execute(
        f"insert into month_quarantine select source_file, row_number, record_id, reason_code, message from {rows}"
    ).fetchall()[0]
    # a view, not a copy: the clean rows are read once or twice downstream, never worth materialising
    con.execute(f"create or replace temp view {clean} as select * exclude (reason_code, message) "
                f"from {checked} where reason_code is null")
    return int(bad)


def run_rules(con: duckdb.DuckDBPyConnection, program: Program, month: str, labels: dict[str, str]) -> dict:
    start, end = month_bounds(month)
    from pipelines.core.money import minor_units

    digits = minor_units()
    params = {
        "billing_month": month,
        "month_start": start,
        "month_end": end,
        "program_currency": program.currency,
        "program_digits": digits[program.currency],
        "holding_days": program.payout.holding_days,
        "net_fees": program.payout.net_fees,
        "subscription_file": labels["subscription_billing"],
        "project_file": labels["project_billing"],
        "referral_file": labels["referral_events"],
        "fees_file": labels["partner_fees"],
    }
    load_program_tables(con, program, digits)
    # ingest's quarantine plus the rows compute refuses, in a temp table: ingest's table is never
    # written by compute, so a retried compute (an Airflow retry) does not count its rows twice
    con.execute("create or replace temp table month_quarantine as select * from quarantine")
    # fx: each currency's row with the latest rate_date on or before month end; program currency is 1.
    con.execute(
        """create or replace table month_rates as
           select currency, arg_max(rate, rate_date) as rate from stg_fx_rates
           where rate_date <= $end and currency <> $pc group by currency
           union all select $pc, 1::decimal(22, 10)""",
        {"end": end, "pc": program.currency},
    )
    # each day of the month with its agreement version (a line's version, by an equi-join on the date)
    con.execute(
        """create or replace table day_versions as
           select cast(t.day as date) as day, a.version
           from range(cast($start as timestamp), cast($end as timestamp) + interval 1 day, interval 1 day) as t(day)
           left join agreements as a
             on cast(t.day as date) >= a.effective_from and (a.next_from is null or cast(t.day as date) < a.next_from)""",
        {"start": start, "end": end},
    )
    # a partner's level history as intervals [effective_from, next_from): a hash join on partner_id
    # with a range filter finds a line's level without sorting the lines (an as-of join would)
    con.execute(
        """create or replace table level_intervals as
           select partner_id, level, effective_from,
                  lead(effective_from) over (partition by partner_id order by effective_from) as next_from
           from stg_partner_levels"""
    )
    # the run's parameters as a one-row table, for the views (a view binds no parameters)
    con.execute(
        """create or replace temp table run_params as
           select $billing_month::varchar as billing_month, $holding_days::integer as holding_days,
                  $month_end::date as month_end, $next_month_start::date as next_month_start""",
        {"billing_month": month, "holding_days": program.payout.holding_days, "month_end": end,
         "next_month_start": end + dt.timedelta(days=1)},
    )
    b = lambda name: relations.build(con, name, **params)  # noqa: E731
    counts: dict[str, int] = {}
    b("line_conflicts")
    relations.build_view(con, "lines_checked")
    counts["duplicate_lines"] = split(con, "lines_checked", "lines")
    b("credited_days")
    # charges_checked is a view, not a table: its joins are with small tables (31 days, the credit
    # totals, the rates), so each of its readers takes 0.5-0.8 s more at 10M lines, where a table
    # of its 10M rows x 26 columns took 5-9 s to build, then spilled or took 0.6 GB of disk
    relations.build_view(con, "charge_terms")
    relations.build_view(con, "charges_checked")
    counts["charges_quarantined"] = split(con, "charges_checked", "charges", refused="refused_charges")
    # the usable charges' own columns, without charges_checked's joins: the stored lines less the
    # (few) refused ones. The readers that need no agreement version, fx rate or credit total
    # (refunds, clawbacks, control totals, the ledger) read this; each read of `charges` pays its
    # four joins again (at 10M lines a scan of `charges` took 1.0-1.3 s, of this 0.4-0.5 s)
    con.execute("""create or replace temp view charge_lines as
                   select l.* from lines as l
                   anti join refused_charges as r on r.source = l.source and r.row_number = l.row_number
                   where l.line_type = 'charge'""")
    # ... and with the two terms the share rules add (agreement version, fx rate: charge_terms):
    # sub_shares and the tier tables read this, not `charges`, whose credit-total join they do not
    # need (at 10M lines that join alone took 0.7-1.0 s of CPU per read, in two profiles)
    con.execute("""create or replace temp view charges_fx as
                   select t.* from charge_terms as t
                   anti join refused_charges as r on r.source = t.source and r.row_number = t.row_number""")
    b("month_refunds")
    b("refunds_checked")
    counts["refunds_quarantined"] = split(con, "refunds_checked", "refunds")
    b("tier_day_bases")
    b("tier_running_bases")
    # the month's biggest table (9M rows at 10M lines) is written to the work database, compressed,
    # not a temp table: a temp table is held uncompressed and spills uncompressed past the memory
    # limit, which starved the sorts and joins after it of memory (docs/performance.md)
    relations.build(con, "sub_shares", persist=True, **params)
    # consumed: free its memory for the rest of the month (a 1 GB memory limit must get through)
    con.execute("drop table tier_running_bases")
    b("project_shares")
    _credits(con, program)
    b("clawbacks")
    b("referral_fees_checked")
    split(con, "referral_fees_checked", "referral_fees")
    b("fees_checked")
    split(con, "fees_checked", "fees")
    b("other_movements")
    # the shares are not copied into a movements table: share_movements is a view over `credits`
    # (the month's 9M rows are then held once, in sub_shares)
    relations.build_view(con, "share_movements")
    con.execute("create or replace temp view new_movements as "
                "select * from share_movements union all by name select * from other_movements")
    b("carried_movements")
    # a view: the month's movements are not copied again, only the (few) carried ones were
    con.execute("create or replace temp view open_movements as "
                "select * from carried_movements union all by name select * from new_movements")
    return params


def _credits(con: duckdb.DuckDBPyConnection, program: Program) -> None:
    """`credits`: every credited partner's share of every usable charge, tier crossings split exactly."""
    # a view: both sides are tables already, and a union of them costs nothing to scan again.
    # sub_shares keeps each credit's claim and day as claim_day: their columns come back from
    # credited_days (a few thousand rows: a hash join as cheap as a scan of the column)
    con.execute(
        """create or replace temp view credits as
           select s.line_id, c.credit_key, c.partner_id, c.engagement_type, c.credit_pct, s.rate, s.share_minor,
                  c.invoice_date, c.customer_id, s.item, s.currency, s.digits, s.amount_minor,
                  (select source_file from file_rows where file = 'subscription_billing') as source_file,
                  s.row_number, 'subscription' as source, s.note
           from sub_shares as s
           join credited_days as c on c.claim_day = s.claim_day
           union all
           select line_id, credit_key, partner_id, engagement_type, credit_pct, rate, share_minor,
                  invoice_date, customer_id, item, currency, digits, amount_minor, source_file, row_number,
                  'project', null
           from project_shares"""
    )
    crossing = []
    for line_id, claim_day, tier, d, currency in con.execute(
        """select s.line_id, s.claim_day, s.tier_crossing, s.digits, s.currency
           from sub_shares as s join credited_days as c on c.claim_day = s.claim_day
           where s.tier_crossing is not null order by s.line_id, c.credit_key"""
    ).fetchall():
        parts = tier.split("|")  # version|fx_rate|base_before|base_after|rate_before_tier (sql/sub_shares)
        if len(parts) != 5:
            raise RuntimeError(f"tier crossing of {line_id} is incomplete: {tier!r}")
        version, fx, before, after, r0 = parts
        crossing.append((line_id, claim_day, int(version), Decimal(before), Decimal(after), Decimal(r0),
                         Decimal(fx), d, currency))
    if not crossing:
        return
    steps = con.execute("select version, above, uplift from tier_steps order by version, step_no").fetchall()
    by_version: dict[int, list[tuple[Decimal, Decimal]]] = {}
    for v, above, uplift in steps:
        by_version.setdefault(v, []).append((above, uplift))
    fixes = []
    for line_id, claim_day, version, before, after, r0, fx, d, currency in crossing:
        share, parts = split_across_steps(before, after, r0, by_version[version], fx, d)
        note = "tier split: " + " + ".join(
            f"{_fmt(p / Fraction(fx), d)} {currency} at {format(r.normalize(), 'f')}" for p, r in parts
        )
        fixes.append((line_id, claim_day, share, note, max(r for _, r in parts)))
    con.execute("create or replace temp table _fixes (line_id varchar, claim_day integer, share_minor hugeint, "
                "note varchar, rate decimal(9, 6))")
    con.executemany("insert into _fixes values (?, ?, ?, ?, ?)", fixes)
    con.execute(
        """update sub_shares set share_minor = f.share_minor, note = f.note, rate = f.rate
           from _fixes as f where sub_shares.line_id = f.line_id and sub_shares.claim_day = f.claim_day"""
    )
    log.info("tier steps crossed by %d charge credits; split exactly", len(fixes))


def _fmt(value: Fraction, digits: int) -> str:
    q = Decimal(value.numerator) / Decimal(value.denominator)
    return str(q.quantize(Decimal(1).scaleb(-digits)))


def round_half_away(x: Fraction) -> int:
    """Round to the nearest integer, halves away from zero (the spec's rule for every amount)."""
    n, d = abs(x.numerator), x.denominator
    q = (2 * n + d) // (2 * d)
    return q if x >= 0 else -q


def clamp(r: Decimal) -> Decimal:
    return max(Decimal(0), min(Decimal(1), r))


def split_across_steps(before: Decimal, after: Decimal, rate_before_tier: Decimal,
                       steps: list[tuple[Decimal, Decimal]], fx: Decimal, digits: int
                       ) -> tuple[int, list[tuple[Fraction, Decimal]]]:
    """Share (minor units of the line currency) of a charge whose tier base goes from `before` to
    `after` (program currency): each part at the rate of the highest step it lies above, summed,
    converted back to the line currency, and rounded once."""
    bounds = [(Decimal(0), Decimal(0))] + steps  # (lower bound, uplift); the first bracket has no uplift
    parts = []
    for i, (lo, uplift) in enumerate(bounds):
        hi = bounds[i + 1][0] if i + 1 < len(bounds) else None
        part_lo = max(before, lo)
        part_hi = after if hi is None else min(after, hi)
        if part_hi > part_lo:
            parts.append((Fraction(part_hi - part_lo), clamp(rate_before_tier + uplift)))
    total = sum((p * Fraction(r) for p, r in parts), Fraction(0))
    share = round_half_away(total / Fraction(fx) * 10**digits)
    return share, parts


# --- balances ---------------------------------------------------------------------------------

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


def compute_balances(con: duckdb.DuckDBPyConnection, program: Program, month: str) -> dict:
    from pipelines.core.money import minor_units

    digits = minor_units()
    pc = program.currency
    rates = {c: Fraction(r) for c, r in con.execute("select currency, rate from month_rates").fetchall()}
    partners = {
        r[0]: r for r in con.execute(
            "select partner_id, payout_currency, payout_method, account_ref, withholding_tax_pct, status, "
            "min_payout_minor from stg_partners"
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

    _table(con, "partner_results",
           {"partner_id": pa.string(), "payout_currency": pa.string(), "payout_digits": pa.int32(),
            "opening_minor": _dec(0), "earnings_minor": _dec(0), "clawbacks_minor": _dec(0),
            "referral_fees_minor": _dec(0), "fees_minor": _dec(0), "pending_minor": _dec(0),
            "gross_minor": _dec(0), "withholding_minor": _dec(0), "net_minor": _dec(0),
            "closing_minor": _dec(0), "status": pa.string()},
           [(r.partner_id, r.payout_currency, r.digits, r.opening, r.by_kind["share"], r.by_kind["clawback"],
             r.by_kind["referral_fee"], r.by_kind["fee"], r.pending, r.gross, r.withholding, r.net,
             r.closing, r.status) for r in results])
    _table(con, "conversions",
           {"partner_id": pa.string(), "currency": pa.string(), "kind": pa.string(), "source_minor": _dec(0),
            "rate": pa.string(), "converted_minor": _dec(0), "currency_total_minor": _dec(0)},
           conversions)
    _table(con, "held_partners", {"partner_id": pa.string()}, [(p,) for p in held])
    paid = sum(1 for r in results if r.status == "paid")
    log.info("balances: %d partners, %d paid, %d held for a missing fx rate", len(results), paid, len(held))
    return {"partners": len(results), "paid": paid, "held": len(held)}


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
