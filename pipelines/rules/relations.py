"""Run the SQL steps under `sql/`: one folder per table, `sql/<table>/query.sql` is its SELECT.

Values are always bound parameters (`$billing_month`); the only name spliced into the statement is
the destination table, which is the step's own folder name, never data.
"""

from __future__ import annotations

import logging
import os
import re
import time
from functools import lru_cache
from importlib import resources
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

SQL_DIR = resources.files("pipelines") / "sql"  # package data: in the wheel too
_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")


@lru_cache(maxsize=None)
def query_text(name: str) -> str:
    return (SQL_DIR / name / "query.sql").read_text(encoding="utf-8")


def sql_literal(value: str) -> str:
    """A string as a SQL literal, for the few places that cannot bind a parameter (a COPY's target
    path, a view's text). Only our own paths go through here, never values from the data."""
    return "'" + value.replace("'", "''") + "'"


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute((SQL_DIR / "macros.sql").read_text(encoding="utf-8"))


def build(con: duckdb.DuckDBPyConnection, name: str, *, persist: bool = False, **params: object) -> int:
    """Create (or replace) table `name` from `sql/<name>/query.sql`; returns its row count.

    The table is a TEMP table (memory, spilling to the temp directory past the memory limit) unless
    `persist`: only what a later step, possibly in another process, reads is written to the
    database file (at 1M lines, compute went from 27 s to 16 s when its intermediates became temp
    tables; measured 2026-12-01).
    """
    sql = query_text(name)
    wanted = set(_PARAM.findall(_strip_comments(sql)))
    missing = wanted - params.keys()
    if missing:
        raise KeyError(f"sql/{name}/query.sql needs parameters {sorted(missing)}")
    t0 = time.perf_counter()
    kind = "table" if persist else "temp table"
    profile_dir = os.environ.get("PAYOUTS_PROFILE_DIR")
    if profile_dir:  # EXPLAIN ANALYZE of every step, one file per step (for `make bench` work)
        con.execute("set enable_profiling = 'query_tree_optimizer'")
        con.execute(f"set profiling_output = {sql_literal(str(Path(profile_dir) / (name + '.txt')))}")
    con.execute(f'create or replace {kind} "{name}" as\n{sql}', {k: params[k] for k in wanted})
    if profile_dir:
        con.execute("pragma disable_profiling")
    (rows,) = con.execute(f'select count(*) from "{name}"').fetchall()[0]
    TIMINGS[name] = time.perf_counter() - t0
    log.info("built %s: %d rows in %.2f s", name, rows, TIMINGS[name])
    return rows


def build_view(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Create (or replace) temp view `name` from `sql/<name>/query.sql` (a view takes no parameters)."""
    sql = query_text(name)
    if _PARAM.findall(_strip_comments(sql)):
        raise KeyError(f"sql/{name}/query.sql is a view and cannot take parameters")
    con.execute(f'create or replace temp view "{name}" as\n{sql}')


# seconds per SQL step in this process, for the benchmark's breakdown
TIMINGS: dict[str, float] = {}


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)
