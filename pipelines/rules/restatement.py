"""sql/restatement_differences: late reference data reaching into locked months (SPEC section 7).

Every run recomputes the locked months' earnings (shares, clawbacks, referral fees) with today's
reference data (partners, claims, levels, program.yaml's agreement versions) and each month's own fx
rates, in month order, tier bases included: each locked month is replayed through the same ingest
and rules relations as a run, from the exports the ledger kept when it was approved
(`<out>/ledger_files/kept/<month>/`), against a ledger made of the months replayed before it. The
difference per partner, locked month and currency, less what earlier months already posted, is
what a run lists in summary.json and, with `--restate`, posts as `restatement` movements.

A replay is set-based (the rules' SQL over the month's kept lines, one DuckDB connection per locked
month); only the small earnings tables come back to Python.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.core.money import minor_units
from pipelines.core.months import BillingMonth
from pipelines.ingest import load
from pipelines.ingest.files import ALL_INPUTS
from pipelines.ledger import store as ledger
from pipelines.rules import relations

log = logging.getLogger(__name__)

#: what a replayed month must build: its earnings, and the ledger rows later months read
EARNINGS = {"month_earnings"}
LEDGER = {"ledger_months", "ledger_billing_lines", "ledger_charge_credits", "ledger_refunds", "ledger_tier_base",
          "ledger_referral_events", "ledger_fee_ids", "ledger_adjustments"}


def differences(con: duckdb.DuckDBPyConnection, params: dict, context: dict) -> int:
    """Table restatement_differences: partner_id, locked_month, currency, digits, difference_minor,
    posted (this run posts it: `--restate`), note (the locked month and what changed since)."""
    locked = sorted(context.get("locked_months") or [])
    month = params["billing_month"]
    rows = []
    if locked:
        replayed = replay(locked, context)
        original = _sums(con.execute(
            "select billing_month, partner_id, currency, sum(amount_minor) from ledger.earnings "
            "where billing_month in (select unnest($m::varchar[])) group by all", {"m": locked}).fetchall())
        # months whose run kept earnings and rates (every such month has the program currency's rate)
        computed = {m for (m,) in con.execute(
            "select distinct billing_month from ledger.month_rates where billing_month in (select unnest($m::varchar[]))",
            {"m": locked}).fetchall()}
        posted = _sums(con.execute(
            "select locked_month, partner_id, currency, sum(amount_minor) from ledger.restatements "
            "where billing_month < $month group by all", {"month": month}).fetchall())
        digits = minor_units()
        changes = {m: _changed_reference(Path(context["out_dir"]), Path(context["data_dir"]), m) for m in locked}
        for key in sorted(set(replayed) | set(original) | set(posted)):
            locked_month, partner, currency = key
            if locked_month not in computed:
                continue  # computed before the ledger kept earnings: nothing to compare with
            diff = replayed.get(key, 0) - original.get(key, 0) - posted.get(key, 0)
            if diff:
                note = f"restatement of {locked_month}" + (f": {changes[locked_month]} changed since"
                                                           if changes[locked_month] else "")
                rows.append((partner, locked_month, currency, digits[currency], diff, bool(context.get("restate")),
                             note))
    relations.table_from_rows(con, "restatement_differences", {
        "partner_id": pa.string(), "locked_month": pa.string(), "currency": pa.string(), "digits": pa.int32(),
        "difference_minor": relations.decimal_type(0), "posted": pa.bool_(), "note": pa.string()}, rows)
    return len(rows)


def _sums(rows) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = defaultdict(int)
    for month, partner, currency, amount in rows:
        out[(month, partner, currency)] += int(amount)
    return out


def replay(locked: list[str], context: dict) -> dict[tuple[str, str, str], int]:
    """Each locked month's earnings recomputed, in month order: {(month, partner, currency): minor}."""
    out_dir, data_dir = Path(context["out_dir"]), Path(context["data_dir"])
    root = Path(context["stage"]) / "restatement"
    if root.exists():
        shutil.rmtree(root)
    deltas: list[Path] = []
    earnings: dict[tuple[str, str, str], int] = defaultdict(int)
    with duckdb.connect(str(out_dir / ledger.LEDGER_FILE), read_only=True) as original:
        rates = {m: original.execute("select currency, rate from month_rates where billing_month = $m",
                                     {"m": m}).fetchall() for m in locked}
    for month in locked:
        kept = ledger.kept_exports(out_dir, month)
        if not kept.is_dir():
            log.warning("restatement: %s has no kept exports (approved before they were kept); skipped", month)
            continue
        data = root / "data" / month
        (data / "exports").mkdir(parents=True)
        os.symlink(data_dir.resolve() / "reference", data / "reference")
        os.symlink(kept.resolve(), data / "exports" / month)
        delta = root / "ledger" / month
        delta.mkdir(parents=True)
        for partner, currency, kind, amount in _replay_month(month, data, rates[month], deltas, delta, context):
            earnings[(month, partner, currency)] += int(amount)
        deltas.append(delta)
    return dict(earnings)


def _replay_month(month: str, data: Path, rates: list, deltas: list[Path], delta: Path, context: dict) -> list:
    from pipelines.rules.run import month_params

    program = context["program"]
    labels = {f.key: f.label(month) for f in ALL_INPUTS}
    params = month_params(program, month, labels)
    scratch = delta.parent.parent / "scratch" / month
    scratch.mkdir(parents=True)
    con = duckdb.connect(config=context.get("duckdb_settings") or {})
    try:
        con.execute("set temp_directory = $d", {"d": str(scratch)})
        relations.install_macros(con)
        ledger.attach_replay(con, deltas)
        load.reference_lists(con, program)
        load.ingest_all(con, data, month, scratch, params)
        # the month's own fx rates, as it used them: the rules' month_rates picks them back up
        con.execute("create or replace table replay_rates (currency varchar, rate decimal(22, 10))")
        if rates:
            con.executemany("insert into replay_rates values (?, ?)", rates)
        last_day = BillingMonth.parse(month).last_day.isoformat()  # a view binds no parameter: a date literal
        con.execute(f"create or replace view fx_rates as select date '{last_day}' as rate_date, currency, rate "
                    "from replay_rates")
        relations.run(con, "rules", params, {"program": program}, only=EARNINGS | _rules_for_ledger())
        relations.run(con, "ledger", params, {"delta_dir": delta}, only=LEDGER)
        return con.execute("select partner_id, currency, kind, amount_minor from month_earnings").fetchall()
    finally:
        con.close()


def _rules_for_ledger() -> set[str]:
    """The rules relations the replay's ledger rows read (the ledger step's own dependencies are in
    another step, so they are named here by what those queries read)."""
    g = relations.graph()
    maker = g.maker()
    return {maker[n] for r in LEDGER for n in g.relations[r].names() if n in maker and g.relations[maker[n]].step == "rules"}


def _changed_reference(out_dir: Path, data_dir: Path, month: str) -> str:
    """The reference files that changed since `month` was computed (from its manifest), for the note."""
    path = out_dir / month / "manifest.json"
    if not path.exists():
        return ""
    inputs = json.loads(path.read_text()).get("inputs", {})
    changed = []
    for label, entry in sorted(inputs.items()):
        if label.startswith("reference/"):
            p = data_dir / label
            if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != entry["sha256"]:
                changed.append(label.removeprefix("reference/"))
    return ", ".join(changed)
