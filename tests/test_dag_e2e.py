"""End to end: the partner_payouts DAG, run through real Airflow, writes the CLI's files byte for byte.

Airflow runs in a child process with an isolated AIRFLOW_HOME (a temporary directory, a SQLite
metadata database migrated once per session with ``airflow db migrate``, no example DAGs,
DAGS_FOLDER pointing at this repository's dags/), so nothing touches ~/airflow. In that process
the DAG, loaded from dags/ the way Airflow loads it, is run with ``dag.test()`` -- what
``airflow dags test`` does, minus a second interpreter start per run -- once per case below,
one after the other:

1. January, chosen with the ``billing_month`` Param, in a run without a logical date (what the
   trigger form and ``airflow dags trigger -c '{"billing_month": "2025-01"}'`` create);
2. February, from the run's data interval alone (a run at 2025-03-01 06:00 covers February);
3. January again, now out of order: the engine refuses, the task fails at once without retries.

The reference is ``engine.run_month`` -- what ``payouts run --month`` does -- month after month
into a separate output root; every published file must be equal byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# its module-scoped fixtures are built once: all its tests run on one xdist worker
pytestmark = pytest.mark.xdist_group("test_dag_e2e")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("airflow", reason="apache-airflow is not installed")

from pipelines.ledger import store as ledger  # noqa: E402  (after ROOT is on the path)

DAG_ID = "partner_payouts"
MONTHS = ["2025-01", "2025-02"]
SCALE = 400  # valid subscription lines per month: small, the point here is the orchestration

DRIVER = r"""
import json, sys, time
from datetime import datetime, timezone

from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

def load_dag():
    # A fresh parse per run, as every Airflow run gets: in one process, a run's conf would
    # otherwise stay in the shared DAG object's params and leak into the next run.
    bag = DagBag(dag_folder=sys.argv[1])
    assert not bag.import_errors, bag.import_errors
    return bag.dags[sys.argv[2]]

def run(label, **kwargs):
    dag = load_dag()
    t0 = time.monotonic()
    dr = dag.test(**kwargs)
    seconds = time.monotonic() - t0
    with create_session() as session:
        tis = {ti.task_id: {"state": str(ti.state), "try_number": ti.try_number, "max_tries": ti.max_tries}
               for ti in dr.get_task_instances(session=session)}
        xcom = session.scalars(XComModel.get_many(run_id=dr.run_id, dag_ids=dag.dag_id,
                                                  task_ids="resolve_billing_month", key="return_value")).first()
        resolved = XComModel.deserialize_value(xcom) if xcom is not None else None
    out = {"label": label, "state": str(dr.state), "seconds": seconds, "tasks": tis, "resolved": resolved,
           "data_interval_start": dr.data_interval_start.isoformat() if dr.data_interval_start else None}
    print("E2E-JSON:" + json.dumps(out, default=str), flush=True)

# Like a trigger from the UI or `airflow dags trigger -c ...`: no logical date, so no data interval.
run("param", logical_date=None, run_conf={"billing_month": "2025-01"})
run("interval", logical_date=datetime(2025, 3, 1, 6, 0, tzinfo=timezone.utc))
run("out_of_order", run_conf={"billing_month": "2025-01"})
"""


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory) -> dict:
    """An isolated Airflow: temp AIRFLOW_HOME, SQLite, migrated once for the session."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PAYOUTS_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        cwd=str(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return env


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    from pipelines.demo.sample_data import write_sample

    data = tmp_path_factory.mktemp("data")
    write_sample(data, months=len(MONTHS), scale=SCALE)
    return data


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def e2e(airflow_env, sample, tmp_path_factory) -> dict:
    """Run the DAG (child process) while computing the CLI reference here, in parallel."""
    from pipelines import engine

    dag_out = tmp_path_factory.mktemp("dag-out")
    cli_out = tmp_path_factory.mktemp("cli-out")
    env = dict(airflow_env, PAYOUTS_DATA=str(sample), PAYOUTS_OUT=str(dag_out))
    log = dag_out.parent / "airflow-e2e.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(ROOT / "dags"), DAG_ID],
            env=env,
            cwd=env["AIRFLOW_HOME"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # The reference: what `payouts run --month M` writes, month after month.
            for month in MONTHS:
                engine.run_month(str(sample), str(cli_out), month)
            proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, f"driver failed:\n{text[-6000:]}"
    runs = {}
    for line in text.splitlines():
        if line.startswith("E2E-JSON:"):
            r = json.loads(line[len("E2E-JSON:") :])
            runs[r["label"]] = r
    assert set(runs) == {"param", "interval", "out_of_order"}, text[-6000:]
    return {"runs": runs, "dag_out": dag_out, "cli_out": cli_out, "log": text,
            # what the output root held before the refused run; compared after it
            "sample": sample}


@pytest.mark.parametrize(("label", "month"), [("param", "2025-01"), ("interval", "2025-02")])
def test_run_succeeds_and_resolves_its_month(e2e, label, month):
    run = e2e["runs"][label]
    assert run["state"] == "success", run
    assert run["resolved"]["month"] == month
    assert Path(run["resolved"]["data_dir"]) == e2e["sample"].resolve()
    assert Path(run["resolved"]["out_dir"]) == e2e["dag_out"].resolve()
    assert all(t["state"] == "success" and t["try_number"] == 1 for t in run["tasks"].values()), run["tasks"]


def test_param_run_had_no_logical_date(e2e):
    assert e2e["runs"]["param"]["data_interval_start"] is None


def test_interval_run_used_the_data_interval_not_the_logical_date(e2e):
    run = e2e["runs"]["interval"]
    # logical date 2025-03-01 06:00; its (inferred) interval starts 2025-02-01: February is billed.
    assert run["data_interval_start"].startswith("2025-02-01T06:00")


@pytest.mark.parametrize("month", MONTHS)
def test_dag_output_equals_cli_byte_for_byte(e2e, month):
    got, want = _files(e2e["dag_out"] / month), _files(e2e["cli_out"] / month)
    assert "remittance.csv" in want
    assert sorted(got) == sorted(want)
    for name, data in want.items():
        assert got[name] == data, f"{month}/{name} differs from the CLI's"


def test_no_other_month_published(e2e):
    published = sorted(p.name for p in e2e["dag_out"].iterdir()
                       if p.is_dir() and not p.name.startswith(".") and p.name != ledger.FILES_DIR)
    assert published == MONTHS


def test_out_of_order_month_is_refused_at_once_without_retry(e2e):
    """January after February: `check_month` refuses before the exports sensor waits; the task fails
    on its first try (no retry), nothing after it runs, and the run fails. That the published months
    were left alone is what the byte-for-byte tests above check (they run after)."""
    run = e2e["runs"]["out_of_order"]
    assert run["state"] == "failed"
    tasks = run["tasks"]
    assert tasks["check_month"]["state"] == "failed" and tasks["check_month"]["try_number"] == 1
    for later in ("wait_for_exports", "prepare", "ingest", "validate_inputs", "compute", "validate_results",
                  "publish"):
        assert tasks[later]["state"] in ("upstream_failed", "None"), (later, tasks[later])
    assert "AirflowFailException: 2025-01 cannot run: refusing to run 2025-01" in e2e["log"]
    assert run["seconds"] < 120
