"""Cluster tier: the production compose deployment, as local processes, runs a two-month backfill.

What it does (about 2-3 minutes on the 2-core development machine):

1. reads docker-compose.yml and .env.example (secrets filled with throwaway values) and maps the
   containers onto this machine (tests/cluster/compose_local.py): PostgreSQL on localhost:5432 with
   a fresh database ``payouts_cluster_test``, Redis on localhost:6379 database 13, free local ports
   for the API server and the health/log servers, temporary directories for the named volumes;
2. runs the ``airflow-init`` service's own command (``airflow db migrate``);
3. starts airflow-apiserver, airflow-scheduler, airflow-dag-processor, airflow-triggerer and
   airflow-worker (CeleryExecutor) with their own commands and environment, in depends_on order,
   and waits until each service's own healthcheck passes;
4. writes two months of sample data into the data volume, waits for the dag-processor to parse the
   DAG, unpauses it and creates the backfill the docs give
   (``airflow backfill create --dag-id partner_payouts --from-date 2025-01-01 --to-date 2025-02-28
   --max-active-runs 1``) through the ``airflow-cli`` service's environment;
5. meanwhile computes the same months with ``engine.run_month`` (what ``payouts run`` does) into a
   separate directory;
6. checks: both backfill runs succeeded, in month order (February's first task started after
   January's publish ended); every task instance was queued to Celery and executed by the worker
   process (its Celery task id is in the worker's log); the output volume holds remittance files
   (and every other published file) byte-identical to the CLI's;
7. stops every process group it started, drops the database, flushes the Redis database and
   removes its temporary directory (kept when PAYOUTS_CLUSTER_KEEP=1, for debugging).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compose_local import LocalCompose, LocalPlan, free_port, image_from_dockerfile, load_compose, read_env_file

pytestmark = pytest.mark.cluster

DAG_ID = "partner_payouts"
MONTHS = ["2025-01", "2025-02"]
SCALE = 1000
DATABASE = "payouts_cluster_test"
REDIS_DB = 13
SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"]
BACKFILL = [
    "backfill", "create", "--dag-id", DAG_ID,
    "--from-date", "2025-01-01", "--to-date", "2025-02-28", "--max-active-runs", "1", "--reprocess-behavior", "failed",
]
RUN_TIMEOUT = 240  # seconds for the two backfilled months


def _pg(dbname: str = "postgres"):
    import psycopg2

    conn = psycopg2.connect(host="localhost", port=5432, user="postgres", dbname=dbname, connect_timeout=5)
    conn.autocommit = True
    return conn


def _redis():
    import redis

    return redis.Redis(host="localhost", port=6379, db=REDIS_DB, socket_connect_timeout=5)


def _reset_database(create: bool = True) -> None:
    conn = _pg()  # autocommit: DROP/CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            if create:
                cur.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        conn.close()


def _query(sql: str, *params) -> list[tuple]:
    conn = _pg(DATABASE)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _test_env_file() -> dict[str, str]:
    """The test's .env: .env.example with its empty secrets filled in by throwaway values."""
    import secrets

    from cryptography.fernet import Fernet

    env = read_env_file(ROOT / ".env.example")
    env.update(
        POSTGRES_USER="postgres",  # this machine's server: trust auth, any password
        POSTGRES_PASSWORD=secrets.token_urlsafe(12),
        POSTGRES_DB=DATABASE,
        AIRFLOW_FERNET_KEY=Fernet.generate_key().decode(),
        AIRFLOW_JWT_SECRET=secrets.token_urlsafe(48),
        AIRFLOW_API_SECRET_KEY=secrets.token_urlsafe(48),
        PAYOUTS_PORTAL_SECRET=secrets.token_urlsafe(48),
        AIRFLOW_UID=str(os.getuid()),
    )
    missing = [k for k, v in env.items() if v == ""]
    assert not missing, f".env.example has values the test does not fill: {missing}"
    return env


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def cluster():
    try:
        _pg().close()
        assert _redis().ping()
    except Exception as exc:  # pragma: no cover - environment
        pytest.fail(f"the cluster tier needs PostgreSQL on localhost:5432 (trust, user postgres) and Redis on "
                    f"localhost:6379: {exc}")
    keep = os.environ.get("PAYOUTS_CLUSTER_KEEP") == "1"
    work = Path(tempfile.mkdtemp(prefix="payouts-cluster-"))
    local = None
    try:
        logs = work / "logs"
        logs.mkdir()
        dotenv = _test_env_file()
        compose = load_compose(ROOT / "docker-compose.yml", dotenv)
        airflow_common = compose["services"]["airflow-apiserver"]
        image_env, image_paths = image_from_dockerfile(airflow_common["build"]["dockerfile_inline"], ROOT, work)
        plan = LocalPlan(
            root=ROOT, work=work, database=DATABASE, redis_db=REDIS_DB,
            ports={8080: free_port(), 8974: free_port(), 8793: free_port(), 8794: free_port()},
            path_map=dict(image_paths), image_env=image_env,
        )
        local = LocalCompose(compose, plan, logs)
        _reset_database()
        _redis().flushdb()
        yield local
    finally:
        if local is not None:
            local.stop_all()
        try:
            _reset_database(create=False)
        finally:
            _redis().flushdb()
            if keep:
                print(f"\ncluster work dir kept: {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)


def _airflow_cli(local: LocalCompose, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`docker compose run --rm airflow-cli <args>`: the debug service's environment."""
    return subprocess.run(
        [local.plan.python, "-m", "airflow", *args],
        env=local.env_for("airflow-cli"), cwd=local.plan.work, capture_output=True, text=True, timeout=timeout,
    )


def _task_logs(local: LocalCompose, bad) -> str:
    base = Path(local.plan.map_paths("/opt/airflow/logs")) / f"dag_id={DAG_ID}"
    out = []
    for run_id, task_id, _state in bad:
        for path in sorted((base / f"run_id={run_id}" / f"task_id={task_id}").glob("*.log")):
            out.append(f"===== task log {path.relative_to(base)} =====\n{path.read_text()[-6000:]}")
    return "\n".join(out) + "\n"


def _dump_logs(local: LocalCompose, names) -> str:
    return "\n".join(f"===== {n} =====\n{local.log(n)[-6000:]}" for n in names)


def test_backfill_on_the_compose_cluster_matches_the_cli(cluster: LocalCompose):
    local = cluster
    t_start = time.monotonic()
    timings = {}

    # 1. the init service, with its own command (`airflow db migrate`)
    init = local.run_once("airflow-init", timeout=240)
    assert init.returncode == 0, init.stdout[-5000:]
    assert "metadata database ready" in init.stdout
    timings["init"] = time.monotonic() - t_start

    # 2. the services, in depends_on order, each waited for when a later one needs it healthy
    order = local.start_order(SERVICES)
    deadline = time.monotonic() + 180
    for name in order:
        for dep, condition in local.services[name].depends_on.items():
            if condition == "service_healthy" and dep in local.procs:
                local.wait_healthy(dep, deadline)
        local.start(name)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(order)) as pool:  # each service's own healthcheck, concurrently
        for future in [pool.submit(local.wait_healthy, name, deadline) for name in order]:
            future.result()
    timings["healthy"] = time.monotonic() - t_start

    # 3. sample data into the data volume; the CLI reference in a thread meanwhile
    data = Path(local.plan.map_paths("/data"))
    out = Path(local.plan.map_paths("/out"))
    cli_out = local.plan.work / "cli-out"
    from pipelines.demo.sample_data import write_sample

    write_sample(data, months=len(MONTHS), scale=SCALE)
    cli_error: list[BaseException] = []

    def reference():
        try:
            from pipelines import engine

            for month in MONTHS:
                engine.run_month(str(data), str(cli_out), month)
        except BaseException as exc:  # reported below
            cli_error.append(exc)

    ref = threading.Thread(target=reference, daemon=True)
    ref.start()

    # 4. wait for the dag-processor to parse the DAG, then unpause and backfill
    while not _query("select 1 from serialized_dag where dag_id = %s", DAG_ID):
        errors = _query("select filename, stacktrace from import_error")
        assert not errors, errors
        assert time.monotonic() < deadline, "DAG not parsed:\n" + _dump_logs(local, ["airflow-dag-processor"])
        time.sleep(1)
    assert _query("select count(*) from import_error") == [(0,)]
    unpause = _airflow_cli(local, "dags", "unpause", DAG_ID)
    assert unpause.returncode == 0, unpause.stdout + unpause.stderr
    backfill = _airflow_cli(local, *BACKFILL)
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    timings["backfill_created"] = time.monotonic() - t_start

    # 5. wait for both backfill runs
    run_deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        runs = _query(
            "select run_id, state, data_interval_start from dag_run where dag_id = %s and backfill_id is not null "
            "order by data_interval_start", DAG_ID,
        )
        states = [r[1] for r in runs]
        if len(runs) == len(MONTHS) and all(s in ("success", "failed") for s in states):
            break
        # A failing task would retry after retry_delay (5 minutes): report it now instead.
        bad = _query(
            "select ti.run_id, ti.task_id, ti.state from task_instance ti join dag_run r "
            "on r.dag_id = ti.dag_id and r.run_id = ti.run_id where ti.dag_id = %s and r.backfill_id is not null "
            "and ti.state in ('failed', 'up_for_retry', 'upstream_failed')", DAG_ID,
        )
        if bad:
            pytest.fail(f"backfill task(s) failed: {bad}\n" + _task_logs(local, bad) + _dump_logs(local, SERVICES))
        if time.monotonic() > run_deadline:
            pytest.fail(f"backfill not finished in {RUN_TIMEOUT}s: {runs}\n" + _dump_logs(local, SERVICES))
        time.sleep(2)
    timings["backfill_done"] = time.monotonic() - t_start
    tis = _query(
        "select r.data_interval_start, ti.task_id, ti.state, ti.try_number, ti.hostname, ti.queue, "
        "ti.external_executor_id, ti.start_date, ti.end_date, ti.pid "
        "from task_instance ti join dag_run r on r.dag_id = ti.dag_id and r.run_id = ti.run_id "
        "where ti.dag_id = %s and r.backfill_id is not null order by ti.start_date", DAG_ID,
    )
    assert states == ["success"] * len(MONTHS), f"{runs}\n{tis}\n" + _dump_logs(local, SERVICES)

    # 6a. months in order: February started only after January had published
    by_month: dict[str, dict[str, dict]] = {}
    columns = ("state", "try_number", "hostname", "queue", "celery_id", "start_date", "end_date", "pid")
    for interval_start, task_id, *rest in tis:
        month = f"{interval_start.year:04d}-{interval_start.month:02d}"
        by_month.setdefault(month, {})[task_id] = dict(zip(columns, rest))
    assert sorted(by_month) == MONTHS
    jan_publish_end = by_month["2025-01"]["publish"]["end_date"]
    feb_first_start = min(t["start_date"] for t in by_month["2025-02"].values())
    assert feb_first_start >= jan_publish_end, (jan_publish_end, feb_first_start)

    # 6b. every task ran in the Celery worker: queued to Celery (the id the executor pre-assigns),
    # and that id is what the worker process logged executing
    worker_log = local.log("airflow-worker")
    for month, tasks in by_month.items():
        assert len(tasks) == 9, (month, sorted(tasks))  # check_month, the sensor and the seven others
        for task_id, ti in tasks.items():
            assert ti["state"] == "success", (month, task_id, ti)
            assert ti["celery_id"], (month, task_id, "no Celery task id")
            assert f"[{ti['celery_id']}] Executing workload in Celery" in worker_log, (month, task_id, ti)
            assert ti["hostname"] == local.plan.hostname and ti["queue"] == "default", ti
    for name in ("airflow-scheduler", "airflow-apiserver", "airflow-dag-processor", "airflow-triggerer"):
        assert "Executing workload in Celery" not in local.log(name), name
    assert "CeleryExecutor" in local.log("airflow-scheduler")

    # 6c. the published months equal the CLI's, byte for byte
    ref.join(timeout=120)
    assert not cli_error, cli_error
    for month in MONTHS:
        got, want = _files(out / month), _files(cli_out / month)
        assert "remittance.csv" in want
        assert sorted(got) == sorted(want), month
        for name, blob in want.items():
            assert got[name] == blob, f"{month}/{name} differs from the CLI's"

    timings["total"] = time.monotonic() - t_start
    print("\ncluster timings (s): " + json.dumps({k: round(v, 1) for k, v in timings.items()}))
