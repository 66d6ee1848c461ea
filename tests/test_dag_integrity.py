"""The partner_payouts DAG parses cleanly and is configured as the orchestration needs.

An in-process DagBag of dags/ (Airflow reads its configuration once per process: tests/conftest.py
sets an isolated AIRFLOW_HOME, SQLite metadata and no example DAGs before anything imports it).
Nothing here touches ~/airflow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# its module-scoped fixtures are built once: all its tests run on one xdist worker
pytestmark = pytest.mark.xdist_group("test_dag_integrity")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DAG_ID = "partner_payouts"


@pytest.fixture(scope="module")
def probe() -> dict:
    """The DAG as Airflow loads it, in this process (tests/conftest.py points AIRFLOW_HOME at a temporary
    folder before anything imports Airflow): a DagBag of dags/, and what the tests below check."""
    import copy
    import time

    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    t0 = time.monotonic()

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    parse_seconds = time.monotonic() - t0
    dag = bag.dags.get(DAG_ID)  # (get_dag would query the metadata DB)
    out = {
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "dag_ids": sorted(bag.dag_ids),
        "parse_seconds": parse_seconds,
    }
    if dag is not None:
        from airflow.serialization.encoders import coerce_to_core_timetable
        from airflow.serialization.serialized_objects import DagSerialization
        from airflow.timetables.base import TimeRestriction

        # What the scheduler stores and works from must round-trip.
        roundtrip = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))

        tt = dag.timetable
        core = coerce_to_core_timetable(tt)
        infos, last = [], None
        restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=True)
        for _ in range(14):
            info = core.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
            infos.append([info.run_after.isoformat(), info.data_interval.start.isoformat(),
                          info.data_interval.end.isoformat()])
            last = info.data_interval
        manual = core.infer_manual_data_interval(
            run_after=pendulum.datetime(2026, 11, 21, 13, 0, tz="UTC"))

        tasks = {}
        for t in dag.tasks:
            tasks[t.task_id] = {
                "type": type(t).__name__,
                "retries": t.retries,
                "retry_delay_s": t.retry_delay.total_seconds() if t.retry_delay is not None else None,
                "depends_on_past": t.depends_on_past,
                "upstream": sorted(t.upstream_task_ids),
                "mode": getattr(t, "mode", None),
                "timeout_s": float(t.timeout) if getattr(t, "timeout", None) is not None else None,
                "poke_interval_s": float(t.poke_interval) if getattr(t, "poke_interval", None) is not None else None,
                "soft_fail": getattr(t, "soft_fail", None),
            }
        params = dag.params.dump() if hasattr(dag.params, "dump") else dict(dag.params)
        schema = {k: dag.params.get_param(k).schema for k in dag.params.keys()}
        descriptions = {k: dag.params.get_param(k).description for k in dag.params.keys()}
        param_checks = {}
        for value in ("2025-01", "2025-12", None, "2025-13", "2025-1", "2025/01", "", 202501):
            trial = copy.deepcopy(dag.params)
            try:
                trial["billing_month"] = value
                trial.validate()
                param_checks[repr(value)] = "ok"
            except Exception as exc:
                param_checks[repr(value)] = type(exc).__name__ + ": " + str(exc).splitlines()[0]
        out["dag"] = {
            "dag_id": dag.dag_id,
            "fileloc": dag.fileloc,
            "tags": sorted(dag.tags),
            "owner": dag.owner,
            "max_active_runs": dag.max_active_runs,
            "catchup": dag.catchup,
            "start_date": dag.start_date.isoformat(),
            "timetable_class": type(tt).__module__ + "." + type(tt).__name__,
            "timetable_expression": getattr(tt, "expression", None),
            "timetable_timezone": str(getattr(tt, "timezone", None)),
            "timetable_periodic": core.periodic,
            "runs": infos,
            "manual_interval": [manual.start.isoformat(), manual.end.isoformat()],
            "params": params,
            "param_schema": schema,
            "param_descriptions": descriptions,
            "param_checks": param_checks,
            "tasks": tasks,
            "roundtrip_task_ids": sorted(roundtrip.task_ids),
            "has_doc": bool(dag.doc_md),
        }
    return out


@pytest.fixture(scope="module")
def dag(probe) -> dict:
    assert probe.get("dag"), f"{DAG_ID} not loaded; import errors: {probe['import_errors']}"
    return probe["dag"]


def test_no_import_errors(probe):
    assert probe["import_errors"] == {}


def test_only_our_dag_and_no_examples(probe):
    assert probe["dag_ids"] == [DAG_ID]


def test_dag_id_and_file(dag):
    assert dag["dag_id"] == DAG_ID
    assert Path(dag["fileloc"]).resolve() == (ROOT / "dags" / "partner_payouts.py").resolve()


def test_parse_is_quick(probe):
    # Heavy imports live inside the tasks (test_dag_file_does_not_import_heavy_modules_at_top_level)
    assert probe["parse_seconds"] < 30


def test_tags_owner_and_docs(dag):
    assert {"payouts", "finance", "monthly"} <= set(dag["tags"])
    assert dag["owner"] == "finance-data"
    assert dag["has_doc"]


def test_monthly_utc_data_interval_timetable(dag):
    assert dag["timetable_class"].endswith("CronDataIntervalTimetable")
    assert dag["timetable_expression"] == "0 6 1 * *"
    assert dag["timetable_timezone"] == "UTC"
    assert dag["timetable_periodic"] is True


def test_schedule_bills_the_month_just_ended(dag):
    from pipelines.core.months import resolve_billing_month
    from datetime import datetime

    runs = dag["runs"]
    # First run fires 2025-02-01 06:00 UTC for January; months follow one by one, across a year end.
    assert runs[0] == ["2025-02-01T06:00:00+00:00", "2025-01-01T06:00:00+00:00", "2025-02-01T06:00:00+00:00"]
    months = [resolve_billing_month(None, datetime.fromisoformat(start)) for _, start, _ in runs]
    assert months[:14] == [f"2025-{m:02d}" for m in range(1, 13)] + ["2026-01", "2026-02"]
    for run_after, start, end in runs:
        assert run_after == end  # a run fires when its month is over
    # December's run fires on 1 January and bills December.
    dec = runs[11]
    assert dec[0].startswith("2026-01-01") and dec[1].startswith("2025-12-01")


def test_manual_run_interval_is_the_last_complete_month(dag):
    from datetime import datetime

    from pipelines.core.months import resolve_billing_month

    start, end = dag["manual_interval"]
    assert resolve_billing_month(None, datetime.fromisoformat(start)) == "2026-10"
    assert end.startswith("2026-11-01T06:00")


def test_runs_one_at_a_time_without_catchup(dag):
    assert dag["max_active_runs"] == 1
    assert dag["catchup"] is False
    assert dag["start_date"].startswith("2025-01-01T00:00:00")


def test_billing_month_param(dag):
    assert dag["params"] == {"billing_month": None, "restate": False}
    schema = dag["param_schema"]["billing_month"]
    assert set(schema["type"]) == {"null", "string"}
    assert schema["pattern"] == r"^[0-9]{4}-(0[1-9]|1[0-2])$"
    assert schema["title"] == "Billing month"
    assert "YYYY-MM" in dag["param_descriptions"]["billing_month"]


def test_trigger_form_rejects_bad_billing_month(dag):
    """Airflow validates the Param against its schema before a run is created."""
    checks = dag["param_checks"]
    for good in ("'2025-01'", "'2025-12'", "None"):
        assert checks[good] == "ok", (good, checks[good])
    for bad in ("'2025-13'", "'2025-1'", "'2025/01'", "''", "202501"):
        assert checks[bad].startswith("ParamValidationError: Invalid input for param billing_month"), (bad, checks[bad])


EXPECTED_ORDER = [
    "resolve_billing_month",
    "check_month",
    "wait_for_exports",
    "prepare",
    "ingest",
    "validate_inputs",
    "compute",
    "validate_results",
    "publish",
]


def test_task_chain(dag):
    tasks = dag["tasks"]
    assert set(tasks) == set(EXPECTED_ORDER)
    assert tasks["resolve_billing_month"]["upstream"] == []
    for before, after in zip(EXPECTED_ORDER, EXPECTED_ORDER[1:]):
        assert before in tasks[after]["upstream"], f"{before} must run before {after}"
    assert dag["roundtrip_task_ids"] == sorted(EXPECTED_ORDER)


def test_every_task_retries_and_depends_on_past(dag):
    for task_id, t in dag["tasks"].items():
        if task_id == "check_month":  # a refusal: retrying cannot change the answer
            assert t["retries"] == 0
            continue
        assert t["retries"] >= 2, task_id
        assert t["retry_delay_s"] and t["retry_delay_s"] > 0, task_id
        assert t["depends_on_past"] is True, task_id


def test_exports_sensor_frees_its_slot_and_times_out(dag):
    sensor = dag["tasks"]["wait_for_exports"]
    assert "Sensor" in sensor["type"]
    assert sensor["mode"] == "reschedule"
    assert sensor["timeout_s"] and 0 < sensor["timeout_s"] <= 7 * 24 * 3600
    assert sensor["poke_interval_s"] and sensor["poke_interval_s"] >= 60
    assert sensor["soft_fail"] is False


def test_dag_file_does_not_import_heavy_modules_at_top_level():
    import ast

    tree = ast.parse((ROOT / "dags" / "partner_payouts.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"pipelines.engine", "duckdb", "polars", "pandas"}
    assert "pipelines" not in {n.module for n in top if isinstance(n, ast.ImportFrom)} or all(
        a.name != "engine" for n in top if isinstance(n, ast.ImportFrom) and n.module == "pipelines" for a in n.names
    )


def test_pipelines_never_import_dags():
    for path in (ROOT / "pipelines").rglob("*.py"):
        text = path.read_text()
        assert "from dags" not in text and "import dags" not in text, path
