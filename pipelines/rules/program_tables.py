"""sql/program_tables: program.yaml's rate card as small DuckDB tables the rules join to."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipelines.core.money import minor_units
from pipelines.core.program import LEVELS, Program
from pipelines.rules.relations import decimal_type, table_from_rows


def load(con: duckdb.DuckDBPyConnection, params: dict, context: dict) -> None:
    """The rate card as small tables, one row per agreement version (and key): sql/program_tables."""
    program: Program = context["program"]
    digits = minor_units()
    vs = sorted(enumerate(program.agreements), key=lambda x: x[1].effective_from)
    rows = []
    for n, (_, a) in enumerate(vs):
        nxt = vs[n + 1][1].effective_from if n + 1 < len(vs) else None
        rows.append((n, a.effective_from, nxt))
    table_from_rows(con, "agreements", {"version": pa.int32(), "effective_from": pa.date32(), "next_from": pa.date32()}, rows)
    versions = [(n, a) for n, (_, a) in enumerate(vs)]
    table_from_rows(con, "sub_base_rates",
           {"version": pa.int32(), "product_family": pa.string(), "engagement_type": pa.string(), "rate": decimal_type(6)},
           [(n, fam, et, getattr(r, et)) for n, a in versions for fam, r in a.subscription.base_rates.items()
            for et in ("partner_led", "company_led", "joint")])
    table_from_rows(con, "level_uplifts", {"version": pa.int32(), "level": pa.string(), "uplift": decimal_type(6)},
           [(n, lv, getattr(a.subscription.level_uplift, lv)) for n, a in versions for lv in LEVELS])
    table_from_rows(con, "sub_terms", {"version": pa.int32(), "after_first_year_uplift": decimal_type(6), "max_months": pa.int32()},
           [(n, a.subscription.after_first_year_uplift, a.subscription.max_months) for n, a in versions])
    table_from_rows(con, "tier_scopes", {"version": pa.int32(), "scope": pa.string()},
           [(n, a.tiers.scope) for n, a in versions])
    table_from_rows(con, "tier_steps", {"version": pa.int32(), "step_no": pa.int32(), "above": decimal_type(20), "uplift": decimal_type(6)},
           [(n, i + 1, s.above, s.uplift) for n, a in versions for i, s in enumerate(a.tiers.steps)])
    table_from_rows(con, "project_bands", {"version": pa.int32(), "band_no": pa.int32(), "up_to": decimal_type(10), "rate": decimal_type(6)},
           [(n, i, b.up_to, b.rate) for n, a in versions for i, b in enumerate(a.project.partner_led_bands)])
    table_from_rows(con, "project_terms", {"version": pa.int32(), "company_led_rate": decimal_type(6)},
           [(n, a.project.company_led_rate) for n, a in versions])
    pd = digits[program.currency]
    table_from_rows(con, "referral_terms",
           {"version": pa.int32(), "qualified_lead_minor": decimal_type(0), "successful_delivery_minor": decimal_type(0),
            "pct_of_first_year_value": decimal_type(6), "signed_within_days": pa.int32()},
           [(n, a.referral.qualified_lead.fixed.scaleb(pd), a.referral.successful_delivery.fixed.scaleb(pd),
             a.referral.signed_agreement.pct_of_first_year_value, a.referral.signed_within_days)
            for n, a in versions])
