"""``partner_payouts``: the monthly partner payout run, orchestrated by Airflow.

A thin DAG over ``pipelines.engine``, the same step API that ``payouts run --month`` chains, so an
orchestrated month gives exactly the files of the command line:

    resolve_billing_month -> check_month -> wait_for_exports -> prepare -> ingest -> validate_inputs
        -> compute -> validate_results -> publish

* Month: the ``billing_month`` Param if given, else the month of the run's data interval (for a
  scheduled run, the calendar month just ended). See ``pipelines/billing_month.py``.
* Roots: ``PAYOUTS_DATA`` and ``PAYOUTS_OUT`` from the worker's environment, defaulting to the
  repository's ``data/`` and ``out/`` (found from this file, not the working directory).
* ``check_month`` refuses at once (no retries, before the sensor waits days for exports) a month that
  cannot run: one finance approved (locked), or one out of order. The run leaves the month a draft;
  finance approves it with ``payouts approve`` or in the portal (docs/closing-a-month.md).
* Every engine step is idempotent and keeps its state under ``<out>/.staging/<month>/``, so every
  task retries. A ``PayoutError`` (a refusal: months out of order, a missing file or column, a bad
  program.yaml) fails the task at once without retrying: rerunning cannot change the answer.
* Months chain (opening balance = last month's closing), so runs go one at a time
  (``max_active_runs=1``) and every task ``depends_on_past``: if a month fails, the next month's
  run stops before it computes anything, instead of computing against the wrong opening balances.
  Backfills must be created with ``--max-active-runs 1`` (a backfill has its own limit, 10 by
  default, and ignores the DAG's) and ``--reprocess-behavior failed`` (required with
  depends_on_past). See docs/orchestration.md.

Only light imports at module level: the engine (duckdb, polars ...) is imported inside the tasks.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, chain, dag, task

# The repository root: dags/ lives right under it.
REPO_ROOT = Path(__file__).resolve().parent.parent

# `pipelines` is importable when the project is installed or on PYTHONPATH; from a plain checkout
# (AIRFLOW__CORE__DAGS_FOLDER pointing at dags/) it is found next to this folder.
if importlib.util.find_spec("pipelines") is None:  # pragma: no cover - depends on the deployment
    sys.path.insert(0, str(REPO_ROOT))

from pipelines.core.months import BILLING_MONTH_PATTERN  # noqa: E402  (stdlib only)

DAG_ID = "partner_payouts"

# How the sensor waits for the month's exports: poke every 15 minutes for up to 3 days after the
# run starts (exports usually land in the first working days of the month), then fail. Reschedule
# mode frees the worker slot between pokes. Overridable for test set-ups.
EXPORTS_POKE_INTERVAL = timedelta(seconds=int(os.environ.get("PAYOUTS_EXPORTS_POKE_SECONDS", 15 * 60)))
EXPORTS_TIMEOUT = timedelta(seconds=int(os.environ.get("PAYOUTS_EXPORTS_TIMEOUT_SECONDS", 3 * 24 * 3600)))

default_args = {
    "owner": "finance-data",
    # Safe: every engine step is idempotent and stages under <out>/.staging/<month>/.
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    # Months chain: month M+1 must not run when month M did not go through.
    "depends_on_past": True,
}


def _roots() -> tuple[str, str]:
    """The data and output roots, read in the process that runs the task."""
    data_dir = os.environ.get("PAYOUTS_DATA") or str(REPO_ROOT / "data")
    out_dir = os.environ.get("PAYOUTS_OUT") or str(REPO_ROOT / "out")
    return str(Path(data_dir).resolve()), str(Path(out_dir).resolve())


def _run_step(step: str, run: dict) -> dict:
    """Call one engine step for the run; a refusal fails the task without retries."""
    import json

    from airflow.sdk.exceptions import AirflowFailException

    from pipelines import engine

    try:
        extra = {"restate": bool(run.get("restate"))} if step == "compute" else {}
        result = getattr(engine, step)(run["data_dir"], run["out_dir"], run["month"], run=run["run_id"], **extra)
    except engine.PayoutError as exc:
        raise AirflowFailException(f"{step} {run['month']}: {exc}") from exc
    # XCom keeps small JSON values only.
    return json.loads(json.dumps(result if result is not None else {}, default=str))


@dag(
    dag_id=DAG_ID,
    description="Monthly partner payouts: billing exports in; remittance, statements, exceptions, totals out",
    # Fires at 06:00 UTC on the 1st for the interval [1st of last month, 1st of this month):
    # the calendar month that just ended.
    schedule=CronDataIntervalTimetable("0 6 1 * *", timezone="UTC"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    # No automatic catch-up on first deployment: history is loaded with an explicit backfill
    # (docs/orchestration.md). A month the scheduler missed makes the next month refuse to run
    # (the engine only computes the month after the latest), loudly.
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["payouts", "finance", "monthly"],
    params={
        "billing_month": Param(
            None,
            type=["null", "string"],
            pattern=BILLING_MONTH_PATTERN,
            title="Billing month",
            description=(
                "Month to compute, as YYYY-MM (for example 2025-01). Leave empty to compute the "
                "month of the run's data interval: for a scheduled run, the month just ended. "
                "Months chain: only the month after the latest one computed, or the latest again, "
                "may run."
            ),
        ),
        "restate": Param(
            False,
            type="boolean",
            title="Post restatements",
            description=(
                "Post the locked months' restatements (their earnings recomputed with today's reference "
                "data, less what was computed then) as movements of this month. Off: they are only listed "
                "in summary.json. See docs/restatement.md."
            ),
        ),
    },
    doc_md=__doc__,
)
def partner_payouts():
    @task
    def resolve_billing_month(**context):
        """The month and the roots this run works on: the dict every later task gets."""
        from pipelines.core.months import resolve_billing_month as resolve

        dag_run = context.get("dag_run")
        month = resolve(
            (context.get("params") or {}).get("billing_month"),
            context.get("data_interval_start"),
            getattr(dag_run, "run_after", None),
        )
        data_dir, out_dir = _roots()
        logging.getLogger(__name__).info("billing month %s; data %s; out %s", month, data_dir, out_dir)
        # the run's staging folder is claimed in its name: a step never works on another run's files
        run_id = f"airflow:{getattr(dag_run, 'run_id', None) or context.get('run_id')}"
        restate = bool((context.get("params") or {}).get("restate"))
        return {"month": month, "data_dir": data_dir, "out_dir": out_dir, "run_id": run_id, "restate": restate}

    @task(retries=0)
    def check_month(run: dict) -> None:
        """Fail at once, without retries, for a month that cannot run (locked, or out of order)."""
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines import engine

        try:
            engine.check_runnable(run["data_dir"], run["out_dir"], run["month"], run=run["run_id"])
        except engine.PayoutError as exc:
            raise AirflowFailException(f"{run['month']} cannot run: {exc}") from exc

    @task.sensor(
        mode="reschedule",
        poke_interval=EXPORTS_POKE_INTERVAL,
        timeout=EXPORTS_TIMEOUT,
    )
    def wait_for_exports(run: dict) -> bool:
        """Done when the month's required export files are there."""
        from pipelines import engine

        return bool(engine.exports_ready(run["data_dir"], run["month"]))

    @task
    def prepare(run: dict):
        """Check program.yaml, the required files and columns and the months chain; clean staging."""
        return _run_step("prepare", run)

    @task
    def ingest(run: dict):
        return _run_step("ingest", run)

    @task
    def validate_inputs(run: dict):
        return _run_step("validate_inputs", run)

    @task
    def compute(run: dict):
        return _run_step("compute", run)

    @task
    def validate_results(run: dict):
        return _run_step("validate_results", run)

    @task
    def publish(run: dict):
        """Atomically publish <out>/<month>/ and update the ledger."""
        return _run_step("publish", run)

    run = resolve_billing_month()
    chain(
        run,
        check_month(run),
        wait_for_exports(run),
        prepare(run),
        ingest(run),
        validate_inputs(run),
        compute(run),
        validate_results(run),
        publish(run),
    )


partner_payouts()
