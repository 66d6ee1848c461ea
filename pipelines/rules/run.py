"""The rules step: the month's parameters, then every relation declared with `step: rules`.

Set-based work (attribution, level and fx lookups, tier bases with window functions, refunds,
referral windows) is SQL under `sql/`; Python builds only what needs exact rational arithmetic on
a few rows (sql/tier_splits, sql/partner_results). The order is the declarations' dependencies
(`pipelines.rules.relations`), not code's.
"""

from __future__ import annotations

import duckdb

from pipelines.core.money import minor_units
from pipelines.core.months import BillingMonth
from pipelines.core.program import Program
from pipelines.rules import relations


def month_params(program: Program, month: str, labels: dict[str, str]) -> dict:
    """The bound parameters of the month's relations (`labels`: each input file's label by key)."""
    m = BillingMonth.parse(month)
    return {
        "billing_month": str(m),
        "month_start": m.first_day,
        "month_end": m.last_day,
        "next_month_start": m.next.first_day,
        "program_currency": program.currency,
        "program_digits": minor_units()[program.currency],
        "holding_days": program.payout.holding_days,
        "net_fees": program.payout.net_fees,
        **{f"{key}_file": label for key, label in labels.items()},
    }


def run_rules(con: duckdb.DuckDBPyConnection, context: dict, params: dict) -> dict:
    """Build the rules' relations; `context` carries the program and what restatement needs (the
    output and data roots, the staging folder, the locked months, whether to post). Returns the
    balances' counts (partners, paid, held)."""
    relations.run(con, "rules", params, context)
    return context["balances"]
