"""`make bench`: the end-to-end `payouts run` against the bare scan, at 1M and 10M lines a month.

    python benchmarks/bench.py [N ...] [--memory-limit 1GB] [--out bench-out] [--check] [--restatement N]

For each N it writes (once, then reuses) a one-month sample with `payouts sample --scale N`, then
runs, each in its own process so wall time and peak memory (max RSS, from wait4) are the whole
process's:

* the baseline: DuckDB reading every CSV of the month's exports and writing each to Parquet, the
  least work any pipeline must do;
* `payouts run` for that month, with validation, into a fresh output folder.

It prints lines per second, wall, peak memory, the ratio to the baseline and a breakdown by step,
writes `bench-out/results.json`, and checks the targets at 10M lines: <= 5x the baseline, <= 3 GB,
<= 60 s, and 10M/1M <= 12x. `--check` makes a missed target exit 1. `--restatement N` times
instead the run of a 13th month after 12 approved months of N lines (restatement replays them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

MONTH = "2025-01"

BASELINE = r"""
import sys, duckdb
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
con = duckdb.connect()
for f in sorted(src.glob("*.csv")):
    out = dst / (f.stem + ".parquet")
    # the bare minimum: parse every row as text (skipping malformed ones) and write it as Parquet
    con.execute(f"copy (select * from read_csv('{f}', all_varchar = true, ignore_errors = true)) to '{out}' (format parquet)")
"""

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from pipelines import engine
from pipelines.rules import relations
t_import = time.perf_counter() - t0
res = engine.run_month(sys.argv[1], sys.argv[2], sys.argv[3])
steps = {k: v["seconds"] for k, v in res.items()}
print(json.dumps({"import": round(t_import, 3), "steps": steps,
                  "sql": {k: round(v, 3) for k, v in relations.TIMINGS.items()}}))
"""


def run_one(python: str, n: int, root: Path, memory_limit: str | None) -> dict:
    data = root / f"data-{n}"
    if not (data / ".payouts-sample").exists() or not (data / "exports" / MONTH).exists():
        if data.exists():
            shutil.rmtree(data)
        t0 = time.perf_counter()
        subprocess.run([python, "-m", "pipelines.cli", "sample", "--data", str(data), "--months", "1",
                        "--scale", str(n)], check=True, stdout=subprocess.DEVNULL)
        print(f"  sample of {n:,} lines written in {time.perf_counter() - t0:.1f} s", flush=True)
    exports = data / "exports" / MONTH
    lines = sum(_records(p) for p in exports.glob("*.csv"))
    base_out = root / f"baseline-{n}"
    shutil.rmtree(base_out, ignore_errors=True)
    # each measurement in a fresh interpreter that is the only child: ru_maxrss is then its own peak
    b_wall, b_rss, _ = _isolated(python, ["-c", BASELINE, str(exports), str(base_out)])
    out = root / f"out-{n}"
    shutil.rmtree(out, ignore_errors=True)
    env = {"PAYOUTS_MEMORY_LIMIT": memory_limit} if memory_limit else {}
    r_wall, r_rss, stdout = _isolated(python, ["-c", CHILD, str(data), str(out), MONTH], env)
    detail = json.loads(stdout.strip().splitlines()[-1])
    return {
        "lines": lines, "subscription_lines": n,
        "baseline": {"wall_s": round(b_wall, 2), "peak_mb": round(b_rss / 2**20)},
        "run": {"wall_s": round(r_wall, 2), "peak_mb": round(r_rss / 2**20), **detail},
        "lines_per_s": round(lines / r_wall),
        "ratio_to_baseline": round(r_wall / b_wall, 2),
        "memory_limit": memory_limit,
    }


LOCKED = 12


def run_restatement(python: str, n: int, root: Path) -> dict:
    """12 months of n lines computed and approved, a claim back-dated to the first of them, then the
    13th month run (in isolation, timed): every run replays the locked months (docs/restatement.md)."""
    data = root / f"restate-data-{n}"
    months = [f"{2025 + (i // 12)}-{i % 12 + 1:02d}" for i in range(LOCKED + 1)]
    if not (data / "exports" / months[-1]).exists():
        shutil.rmtree(data, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([python, "-m", "pipelines.cli", "sample", "--data", str(data), "--months", str(LOCKED + 1),
                        "--scale", str(n)], check=True, stdout=subprocess.DEVNULL)
        print(f"  sample of {LOCKED + 1} months x {n:,} lines written in {time.perf_counter() - t0:.1f} s", flush=True)
    out = root / f"restate-out-{n}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    for month in months[:-1]:
        for cmd in (["run", "--month", month, "--data", str(data)],
                    ["approve", "--month", month, "--by", "bench", "--data", str(data)]):
            subprocess.run([python, "-m", "pipelines.cli", *cmd, "--out", str(out)], check=True,
                           stdout=subprocess.DEVNULL)
    print(f"  {LOCKED} months run and approved in {time.perf_counter() - t0:.1f} s", flush=True)
    claims = data / "reference" / "attributions.csv"
    original = claims.read_text()
    customer = next(line.split(",")[3] for line in (data / "exports" / months[0] / "subscription_billing.csv")
                    .read_text().splitlines()[1:50] if line.count(",") == 10)
    claims.write_text(original + f"CLM-BENCH,{customer},PRT-0005,deal_registration,partner_led,,"
                                 f"{months[0]}-01,,approved\n")
    try:
        wall, rss, stdout = _isolated(python, ["-c", CHILD, str(data), str(out), months[-1]])
    finally:
        claims.write_text(original)
    detail = json.loads(stdout.strip().splitlines()[-1])
    summary = json.loads((out / months[-1] / "summary.json").read_text())
    return {"locked_months": LOCKED, "lines_per_month": n, "run": {"wall_s": round(wall, 2),
            "peak_mb": round(rss / 2**20), **detail},
            "restatement_s": detail["sql"].get("restatement_differences", 0.0),
            "restatements": len(summary["restatement"])}


def _isolated(python: str, args: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Run `python args` through a tiny parent that reports the child's own wall time and max RSS."""
    wrapper = (
        "import json, os, resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t0\n"
        "sys.stderr.write(p.stderr[-4000:])\n"
        "print(json.dumps({'rc': p.returncode, 'wall': wall, 'out': p.stdout,\n"
        "                  'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))\n"
    )
    proc = subprocess.run([python, "-c", wrapper, python, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"bench: wrapper failed:\n{proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise SystemExit(f"bench: {args[:1]} failed:\n{proc.stderr[-3000:]}")
    return res["wall"], res["rss"], res["out"]


def _records(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 24), b"")) - 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[1_000_000, 10_000_000])
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory limit for the run, e.g. 1GB")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--restatement", type=int, metavar="N", default=None,
                    help="instead: 12 locked months of N subscription lines, then the 13th month's run, which "
                         "recomputes them all (restatement)")
    args = ap.parse_args(argv)
    root = Path(args.out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    machine = f"{platform.node()}: {os.cpu_count()} cores, {_mem_gb()} GB, Python {platform.python_version()}"
    print(f"machine: {machine}", flush=True)
    if args.restatement:
        r = run_restatement(python, args.restatement, root)
        print(f"  13th month with 12 locked months of {args.restatement:,} lines: {r['run']['wall_s']:.1f} s, "
              f"{r['run']['peak_mb']} MB; restatement (the replay of 12 months) {r['restatement_s']:.1f} s, "
              f"{r['restatements']} differences listed")
        (root / "restatement.json").write_text(json.dumps({"machine": machine, **r}, indent=2) + "\n")
        return 0
    results = []
    for n in args.sizes:
        print(f"N = {n:,}", flush=True)
        r = run_one(python, n, root, args.memory_limit)
        results.append(r)
        print(f"  baseline (DuckDB CSV -> Parquet): {r['baseline']['wall_s']:.1f} s, {r['baseline']['peak_mb']} MB")
        print(f"  payouts run: {r['run']['wall_s']:.1f} s, {r['run']['peak_mb']} MB, {r['lines_per_s']:,} lines/s, "
              f"{r['ratio_to_baseline']}x baseline")
        print("  steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["run"]["steps"].items())
              + f", imports {r['run']['import']:.1f} s")
        top = sorted(r["run"]["sql"].items(), key=lambda kv: -kv[1])[:8]
        print("  slowest SQL: " + ", ".join(f"{k} {v:.1f} s" for k, v in top), flush=True)
    verdicts = targets(results)
    for line in verdicts:
        print(line)
    (root / "results.json").write_text(json.dumps({"machine": machine, "results": results, "targets": verdicts},
                                                  indent=2) + "\n")
    return 1 if args.check and any(v.startswith("MISSED") for v in verdicts) else 0


def targets(results: list[dict]) -> list[str]:
    by_n = {r["subscription_lines"]: r for r in results}
    out = []
    big = by_n.get(10_000_000)
    if big:
        run = big["run"]
        out.append(_verdict(big["ratio_to_baseline"] <= 5, f"10M ratio to baseline {big['ratio_to_baseline']} <= 5"))
        out.append(_verdict(run["peak_mb"] <= 3072, f"10M peak memory {run['peak_mb']} MB <= 3072 MB"))
        out.append(_verdict(run["wall_s"] <= 60, f"10M end-to-end {run['wall_s']} s <= 60 s"))
        small = by_n.get(1_000_000)
        if small:
            growth = round(run["wall_s"] / small["run"]["wall_s"], 2)
            out.append(_verdict(growth <= 12, f"10M / 1M wall time {growth} <= 12"))
    return out


def _verdict(ok: bool, text: str) -> str:
    return ("met    " if ok else "MISSED ") + text


def _mem_gb() -> int:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (ValueError, OSError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
