"""The wheel is the product: built from the repository, installed into a fresh virtualenv and run
from a folder outside the checkout, it computes, approves and releases a month (its SQL, validation
suites and portal assets are package data, found through importlib.resources)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_runs_a_month_from_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    uv = Path(sys.executable).parent / "uv"
    build = [str(uv), "build", "--wheel", "--out-dir", str(wheels), str(ROOT)] if uv.exists() else \
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(ROOT)]
    proc = subprocess.run(build, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = wheels.glob("partner_payouts-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for data_file in ("pipelines/sql/macros.sql", "pipelines/sql/sub_shares/query.sql",
                      "pipelines/sql/sub_shares/metadata.yaml", "pipelines/sql/sources.yaml",
                      "pipelines/validation/suites/remittance.json",
                      "pipelines/validation/templates/report.html.j2",
                      "pipelines/portal/templates/month.html", "pipelines/portal/static/vendor/chart.umd.min.js"):
        assert data_file in names, data_file
    assert not any(n.startswith(("tests/", "dags/", "benchmarks/")) for n in names)

    # a fresh virtualenv: the wheel installed into it, its dependencies read from this environment's
    # site-packages (a path appended by a .pth file, which does not run this checkout's editable
    # install), so the package can only come from the wheel
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False)
    fresh = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(fresh), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([str(uv), "pip", "install", "--python", str(fresh), "--no-deps", str(wheel)]
                             if uv.exists() else [sys.executable, "-m", "pip", "--python", str(fresh), "install",
                                                  "--no-deps", str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    payouts = str(env_dir / "bin" / "payouts")

    def run(*args: str, stdin: str | None = None) -> str:
        p = subprocess.run([payouts, *args], capture_output=True, text=True, cwd=work, env=env, input=stdin)
        assert p.returncode == 0, (args, p.stderr[-3000:])
        return p.stdout

    where = subprocess.run([str(fresh), "-c", "import pipelines; print(pipelines.__file__)"], capture_output=True,
                           text=True, cwd=work, env=env, check=True).stdout.strip()
    assert where.startswith(str(site)), where
    run("sample", "--data", "data", "--months", "1", "--scale", "200")
    run("run", "--month", "2025-01")
    assert (work / "out" / "2025-01" / "remittance.csv").exists()
    assert (work / "out" / "2025-01" / "validation" / "report.html").exists()
    run("approve", "--month", "2025-01", "--by", "alice")
    run("release", "--month", "2025-01", "--by", "alice")
    assert (work / "out" / "2025-01" / "payments" / "payments.json").exists()
    assert "released" in run("status")
