"""sql/payment_routes: each partner paid this month, checked against the payment files before anyone
approves the month (SPEC section 8).

`run` reports (`bank_details_unusable`, in exceptions.csv) every paid partner whose bank details no
payment file can carry, with the reason the payment files' routing gives (`pipelines.payments.route`,
the one place those rules live). Without a `payer` block every partner but PayPal's is paid by
hand, and the report still names each partner whose own details no file could carry
(`payments.route.details_problem`).
It records a sha256 of each paid partner's details and of the payer block in manifest.json, so that
`release` can tell what changed since.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipelines.core.months import BillingMonth
from pipelines.payments import details_hash, payer_hash, route
from pipelines.payments.model import Payee, payer_from
from pipelines.payments.route import details_problem
from pipelines.rules.relations import table_from_rows

PAYER_KEY = "payer"  # the payer block's entry in manifest.json's bank_details


def payees(con: duckdb.DuckDBPyConnection, month: str) -> list[Payee]:
    """The month's paid partners as payees: the remittance's reference and net, partners.csv's details."""
    compact = BillingMonth.parse(month).compact
    rows = con.execute(
        """select r.partner_id, p.name, r.payout_currency, r.net_minor, p.payout_method, p.account_ref,
                  p.bank_code, p.account_type, p.country
           from partner_results as r join partners as p on p.partner_id = r.partner_id
           where r.status = 'paid' order by r.partner_id""").fetchall()
    return [Payee(payment_reference=f"PO-{compact}-{pid}", partner_id=pid, name=name, currency=cur,
                  net_minor=int(net), payout_method=method, account_ref=account or "", bank_code=bank_code,
                  account_type=account_type, country=country)
            for pid, name, cur, net, method, account, bank_code, account_type, country in rows]


def payment_routes(con: duckdb.DuckDBPyConnection, params: dict, context: dict) -> int:
    """Table payment_routes: partner_id, details_sha256, file (or null), unusable reason and detail."""
    payer = payer_from(context["program"].payer)
    rows = []
    for payee in payees(con, params["billing_month"]):
        r = route(payee, payer)
        problem = r if payer is not None else details_problem(payee, None)  # with a payer: the same route
        rows.append((payee.partner_id, details_hash(payee), r.file, problem.reason,
                     f"{problem.reason}: {problem.detail}" if problem.reason else None))
    table_from_rows(con, "payment_routes",
                    {"partner_id": pa.string(), "details_sha256": pa.string(), "file": pa.string(),
                     "unusable_reason": pa.string(), "unusable_message": pa.string()}, rows)
    context["bank_details"] = {PAYER_KEY: payer_hash(payer), **{pid: sha for pid, sha, *_ in rows}}
    return len(rows)
