#!/usr/bin/env python3
"""Project tasks that need nothing but Python 3.11 and pip.

    python3 dev.py up            set up .venv, write sample data, run the DAG through Airflow for the sample months
    python3 dev.py test          set up .venv if needed and run the test suite (what CI runs)
    python3 dev.py setup         only create .venv and install the locked dependencies
    python3 dev.py bench [N...]  benchmark `payouts run` against the bare DuckDB scan (default 1000000 10000000)
    python3 dev.py test-cluster  the production compose services as local processes (needs PostgreSQL + Redis)
    python3 dev.py portal        the finance portal on the sample months (after `up`), with demo users

The Makefile has the same targets for those who have make.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".installed-lock"
SAMPLE_MONTHS = 3


def sh(*cmd: str | Path, env: dict | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env={**os.environ, **(env or {})})


def setup() -> None:
    """Create .venv and install the lock file (skipped when the lock has not changed)."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"dev.py: Python 3.11 is required (this is {sys.version.split()[0]})")
    digest = hashlib.sha256(LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    if not PY.exists():
        venv.create(VENV, with_pip=True)
    # uv installs the ~570 locked packages in seconds instead of minutes; pip is the fallback.
    # Both write the bytecode of every installed module now, as pip does by default: uv does not
    # unless asked, and where Python may not write it at import (PYTHONDONTWRITEBYTECODE, a
    # read-only venv) every process would compile what it imports from source, seconds for Great
    # Expectations or Airflow (docs/performance.md).
    try:
        sh(PY, "-m", "pip", "install", "--quiet", "uv==0.13.8")
        sh(VENV / "bin" / "uv", "pip", "sync", "--compile-bytecode", "--python", PY, LOCK)
        sh(VENV / "bin" / "uv", "pip", "install", "--python", PY, "--no-deps", "-e", ".")
    except subprocess.CalledProcessError:
        sh(PY, "-m", "pip", "install", "--quiet", "-r", LOCK)
        sh(PY, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ".")
    STAMP.write_text(digest)


def airflow_env() -> dict:
    """The embedded default: SQLite metadata and logs under airflow-home/, DAGs from dags/."""
    home = ROOT / "airflow-home"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "PAYOUTS_DATA": os.environ.get("PAYOUTS_DATA", str(ROOT / "data")),
        "PAYOUTS_OUT": os.environ.get("PAYOUTS_OUT", str(ROOT / "out")),
    }


def up() -> None:
    setup()
    env = airflow_env()
    data = Path(env["PAYOUTS_DATA"])
    if not (data / "reference" / "program.yaml").exists():
        sh(VENV / "bin" / "payouts", "sample", "--data", data, "--months", str(SAMPLE_MONTHS))
    out = Path(env["PAYOUTS_OUT"])
    computed = {p.name for p in out.glob("*") if p.is_dir()}
    # months already computed stay as they are (a month before the latest may not run again)
    months = sorted(p.name for p in (data / "exports").iterdir() if p.is_dir() and p.name not in computed)
    if (ROOT / "dags" / "partner_payouts.py").exists():
        sh(VENV / "bin" / "airflow", "db", "migrate", env=env)
        for month in months:
            sh(VENV / "bin" / "airflow", "dags", "test", "partner_payouts", "-c",
               '{"billing_month": "%s"}' % month, env=env)
    else:
        for month in months:
            sh(VENV / "bin" / "payouts", "run", "--month", month, "--data", data, "--out", env["PAYOUTS_OUT"])
    print(f"\nDone: {len(months)} months computed. Remittance files:")
    for month in months:
        print(f"  {out / month / 'remittance.csv'}")


def test(args: list[str]) -> None:
    setup()
    # one worker per core (pytest-xdist), tests handed out one by one; the files with expensive
    # module fixtures (the Airflow end-to-end file migrates a metadata database) are each kept on one
    # worker by their xdist_group mark
    sh(PY, "-m", "pytest", "-q", "-n", "auto", "--dist", "loadgroup", *args)


def bench(args: list[str]) -> None:
    setup()
    sh(PY, ROOT / "benchmarks" / "bench.py", *args)


def test_cluster(args: list[str]) -> None:
    setup()
    sh(PY, "-m", "pytest", "-q", "-m", "cluster", "tests/cluster", *args)


DEMO_USERS = (("finance", "approver", ""), ("auditor", "viewer", ""), ("pm", "partner_manager", "PRT-0001,PRT-0002"))


def portal(args: list[str]) -> None:
    """`payouts serve` on the embedded default's out/ (running `up` first when it is empty), with a
    users file of demo users whose random passwords are printed and kept in portal-demo-users.txt."""
    setup()
    env = airflow_env()
    out, data = Path(env["PAYOUTS_OUT"]), Path(env["PAYOUTS_DATA"])
    if not any(p.is_dir() and p.name[:4].isdigit() for p in out.glob("*")):
        up()
    users = ROOT / "users.yaml"
    note = ROOT / "portal-demo-users.txt"
    if not users.exists():
        import secrets

        lines = []
        for name, role, partners in DEMO_USERS:
            password = secrets.token_urlsafe(12)
            cmd = [str(VENV / "bin" / "payouts"), "users", "add", name, "--role", role, "--password-stdin",
                   "--users", str(users), "--out", str(out)] + (["--partners", partners] if partners else [])
            subprocess.run(cmd, input=password + "\n", text=True, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            lines.append(f"{name:<8} {role:<16} {password}")
        note.write_text("demo users of the portal (user, role, password)\n" + "\n".join(lines) + "\n")
        note.chmod(0o600)
    print(note.read_text())
    print("portal: http://127.0.0.1:8765  (Ctrl-C stops it)", flush=True)
    sh(VENV / "bin" / "payouts", "serve", "--out", out, "--data", data, "--users", users, *args)


def main() -> None:
    task, *rest = sys.argv[1:] or ["help"]
    if task == "setup":
        setup()
    elif task == "up":
        up()
    elif task == "test":
        test(rest)
    elif task == "bench":
        bench(rest)
    elif task == "test-cluster":
        test_cluster(rest)
    elif task == "portal":
        portal(rest)
    else:
        print(__doc__)
        sys.exit(0 if task == "help" else 2)


if __name__ == "__main__":
    main()
