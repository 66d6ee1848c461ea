"""sql/tier_splits: the few charges whose tier base crosses a step, split exactly.

A charge that crosses a step is split into the part below and the part above, each at its own rate
(base + level + tenure + the step's uplift, clamped to [0, 1]), summed in the program currency,
converted back to the line's currency and rounded once (SPEC section 2, worked example 5). Exact
rational arithmetic (`Fraction`) on a handful of rows; sql/sub_shares does every other charge.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from fractions import Fraction

import duckdb

from pipelines.core.money import format_fraction, round_half_away

log = logging.getLogger(__name__)


def split_crossings(con: duckdb.DuckDBPyConnection, params: dict, context: dict) -> int:
    """`credits`: every credited partner's share of every usable charge, tier crossings split exactly."""
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
        return 0
    steps = con.execute("select version, above, uplift from tier_steps order by version, step_no").fetchall()
    by_version: dict[int, list[tuple[Decimal, Decimal]]] = {}
    for v, above, uplift in steps:
        by_version.setdefault(v, []).append((above, uplift))
    fixes = []
    for line_id, claim_day, version, before, after, r0, fx, d, currency in crossing:
        share, parts = split_across_steps(before, after, r0, by_version[version], fx, d)
        note = "tier split: " + " + ".join(
            f"{format_fraction(p / Fraction(fx), d)} {currency} at {format(r.normalize(), 'f')}" for p, r in parts
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
    return len(fixes)


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
