"""The relations under `sql/` and the one runner that builds them.

Each relation is a folder, `sql/<name>/`, with `metadata.yaml` declaring it and, unless Python builds
it, `query.sql` (a SELECT; values are bound parameters such as `$billing_month`, never spliced):

    description: what one row is
    step: ingest | rules | outputs | ledger   # the engine step that builds it
    materialized: table | temp_table | view | query | parquet | python
    parameters: [billing_month, ...]          # the bound parameters the query uses (checked)
    quarantine:                               # a `*_checked` relation: every candidate row, each with
      usable: lines                           #   the first reason it cannot be used; the usable rows
      into: month_quarantine                  #   become view `usable`, the others are appended to
      source_file: source_file                #   `into` (source_file: a column, or $parameter)
      record_id: record_id                    #   (record_id: a column)
      keep: refused_charges                   #   optional: a temp table of the refused rows too
    function: pipelines.rules.balances:partner_results   # materialized python: what builds it
    creates: [...]                            # python: the relations it makes (default: its name)
    reads: [...]                              # python: the relations it reads
    updates: [sub_shares]                     # python: a relation it changes in place
    free_after_use: true                      # a temp table dropped once every reader is built
    parquet: billing_lines                    # materialized parquet: the file name in the delta folder
    dictionary_columns: [source, currency]    # parquet: few-valued text columns, written as ENUMs
    dictionaries:                             # parquet: ENUM types the query itself casts to, each
      ledger_partner_id: [credited_days.partner_id]   #   holding the values of these columns

`sql/sources.yaml` declares the relations Python makes before a step runs (the raw exports, the
ledger). A query's dependencies are the declared relations its FROM and JOIN clauses name (its
own CTE names excepted); a python node's are its `reads`. `run(con, step, ...)` builds a step's
relations in dependency order (ties by name), so the order of the rules is the declarations', not
code's. `materialized: query` relations are not stored: their reader fetches them (`query_text`).
A view is computed where it is read, and only there: building it does not count its rows.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import duckdb
import yaml

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

SQL_DIR = resources.files("pipelines") / "sql"  # package data: in the wheel too
STEPS = ("ingest", "rules", "outputs", "ledger")
MATERIALIZED = ("table", "temp_table", "view", "query", "parquet", "python")
_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")
_FROM = re.compile(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)\b(?!\s*\.)", re.IGNORECASE)
_CTE = re.compile(r"(?:\bwith(?:\s+recursive)?|,)\s*([a-z_][a-z0-9_]*)(?:\s*\([^)]*\))?\s+as\s*"
                  r"(?:materialized\s+|not\s+materialized\s+)?\(", re.IGNORECASE)
_TABLE_FUNCTIONS = {"range", "generate_series", "unnest", "read_csv", "read_parquet"}
_KEYS = {"description", "step", "materialized", "parameters", "quarantine", "function", "creates", "reads",
         "updates", "free_after_use", "parquet", "dictionary_columns", "dictionaries"}
_COLUMN_REF = re.compile(r"([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)")

#: seconds per relation built in this process (the benchmark's breakdown)
TIMINGS: dict[str, float] = {}


class DeclarationError(ValueError):
    """A metadata.yaml or query.sql that breaks the rules above."""


class RelationFailed(RuntimeError):
    """DuckDB could not build a relation (e.g. a value its casts cannot read)."""

    def __init__(self, name: str, exc: Exception):
        self.name = name
        self.reason = str(exc).splitlines()[0].replace("Invalid Input Error: ", "")
        super().__init__(f"sql/{name}: {self.reason}")


@dataclass(frozen=True)
class Quarantine:
    usable: str
    into: str
    source_file: str
    record_id: str
    keep: str | None = None


@dataclass(frozen=True)
class Relation:
    name: str
    description: str
    step: str
    materialized: str
    parameters: tuple[str, ...] = ()
    quarantine: Quarantine | None = None
    function: str | None = None
    creates: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    updates: tuple[str, ...] = ()
    free_after_use: bool = False
    parquet: str | None = None
    dictionary_columns: tuple[str, ...] = ()
    dictionaries: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (ENUM type, its relation.column refs)
    query: str | None = field(default=None, repr=False)

    @property
    def makes(self) -> tuple[str, ...]:
        """The relations that exist once this one is built."""
        made = self.creates or (self.name,)
        return made + ((self.quarantine.usable,) if self.quarantine else ()) + \
            ((self.quarantine.keep,) if self.quarantine and self.quarantine.keep else ())

    def names(self) -> set[str]:
        """The relation names this one's query or declaration refers to."""
        if self.query is None:
            return set(self.reads) | set(self.updates)
        dictionary_sources = {ref.split(".")[0] for _, refs in self.dictionaries for ref in refs}
        text = re.sub(r"'[^']*'", "''", strip_comments(self.query))  # no string literals either
        ctes = {m.lower() for m in _CTE.findall(text)}
        return ({m.lower() for m in _FROM.findall(text)} - ctes - _TABLE_FUNCTIONS) | dictionary_sources


@dataclass(frozen=True)
class Graph:
    relations: dict[str, Relation]
    sources: dict[str, str]  # name -> what makes it

    def maker(self) -> dict[str, str]:
        """Relation name -> the declaration that makes it."""
        out = {}
        for r in self.relations.values():
            for name in r.makes:
                out[name] = r.name
        return out

    def dependencies(self, rel: Relation) -> set[str]:
        """The declarations `rel` needs built first: those making what it reads or changes, and those
        that change (update, or quarantine into) a relation it reads."""
        maker = self.maker()
        reads = rel.names()
        targets = set(rel.updates) | ({rel.quarantine.into} if rel.quarantine else set())
        deps = {maker[n] for n in reads | targets if n in maker}
        for other in self.relations.values():
            changed = set(other.updates) | ({other.quarantine.into} if other.quarantine else set())
            if changed & reads and maker.get(next(iter(changed & reads))) != rel.name:
                deps.add(other.name)
        deps.discard(rel.name)
        return deps

    def order(self, step: str) -> list[Relation]:
        """The step's declarations in dependency order (Kahn's algorithm; ties by name)."""
        todo = {n: r for n, r in self.relations.items() if r.step == step}
        deps = {n: {d for d in self.dependencies(r) if d in todo} for n, r in todo.items()}
        done: list[Relation] = []
        while todo:
            ready = sorted(n for n in todo if not deps[n])
            if not ready:
                raise DeclarationError(f"sql/: the {step} relations depend on each other in a cycle: {sorted(todo)}")
            for n in ready:
                done.append(todo.pop(n))
                for d in deps.values():
                    d.discard(n)
        return done


def strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


@lru_cache(maxsize=1)
def graph() -> Graph:
    """Every declaration under sql/ (read once per process)."""
    relations = {}
    for folder in sorted((p for p in SQL_DIR.iterdir() if p.is_dir() and (p / "metadata.yaml").is_file()),
                         key=lambda p: p.name):
        relations[folder.name] = _load(folder)
    sources = yaml.safe_load((SQL_DIR / "sources.yaml").read_text(encoding="utf-8"))
    return Graph(relations, {name: str(v) for name, v in sources.items()})


def _load(folder) -> Relation:
    name = folder.name
    meta = yaml.safe_load((folder / "metadata.yaml").read_text(encoding="utf-8")) or {}
    where = f"sql/{name}/metadata.yaml"
    unknown = set(meta) - _KEYS
    if unknown:
        raise DeclarationError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    for key in ("description", "step", "materialized"):
        if not meta.get(key):
            raise DeclarationError(f"{where}: {key} is required")
    if meta["step"] not in STEPS or meta["materialized"] not in MATERIALIZED:
        raise DeclarationError(f"{where}: step must be one of {STEPS}, materialized one of {MATERIALIZED}")
    query_file = folder / "query.sql"
    query = query_file.read_text(encoding="utf-8") if query_file.is_file() else None
    if (meta["materialized"] == "python") != (query is None):
        raise DeclarationError(f"{where}: a python relation has no query.sql; every other one has one")
    for key in ("dictionary_columns", "dictionaries"):
        if meta.get(key) and meta["materialized"] != "parquet":
            raise DeclarationError(f"{where}: only a parquet relation has {key}")
    dictionaries = tuple((str(t), tuple(cols)) for t, cols in (meta.get("dictionaries") or {}).items())
    for type_name, cols in dictionaries:
        if not cols or not all(_COLUMN_REF.fullmatch(c) for c in cols):
            raise DeclarationError(f"{where}: dictionaries: {type_name} lists relation.column names")
        if query is not None and not re.search(rf"::\s*{re.escape(type_name)}\b", query):
            raise DeclarationError(f"{where}: dictionaries: query.sql never casts to {type_name}")
    if meta["materialized"] == "python" and not meta.get("function"):
        raise DeclarationError(f"{where}: a python relation names its function")
    params = tuple(meta.get("parameters") or ())
    if query is not None:
        used = set(_PARAM.findall(strip_comments(query)))
        if used != set(params):
            raise DeclarationError(f"{where}: parameters {sorted(params)} but query.sql uses {sorted(used)}")
        if params and meta["materialized"] == "view":
            raise DeclarationError(f"{where}: a view cannot bind parameters")
    q = meta.get("quarantine")
    return Relation(
        name=name, description=meta["description"], step=meta["step"], materialized=meta["materialized"],
        parameters=params, quarantine=Quarantine(**q) if q else None, function=meta.get("function"),
        creates=tuple(meta.get("creates") or ()), reads=tuple(meta.get("reads") or ()),
        updates=tuple(meta.get("updates") or ()), free_after_use=bool(meta.get("free_after_use")),
        parquet=meta.get("parquet"), dictionary_columns=tuple(meta.get("dictionary_columns") or ()),
        dictionaries=dictionaries, query=query,
    )


@lru_cache(maxsize=None)
def query_text(name: str) -> str:
    rel = graph().relations[name]
    if rel.query is None:
        raise DeclarationError(f"sql/{name} has no query")
    return rel.query


def table_from_rows(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, "pa.DataType"],
                    rows: list[tuple]) -> None:
    """Table `name` from Python rows (a python relation's result), through Arrow: decimals exact (ints
    and Decimals only, never floats)."""
    import pyarrow as pa
    from decimal import Decimal

    def col(i: int, t: pa.DataType) -> pa.Array:
        vals = [r[i] for r in rows]
        if pa.types.is_decimal(t):
            vals = [None if v is None else Decimal(v) for v in vals]
        return pa.array(vals, type=t)

    arrays = [col(i, t) for i, t in enumerate(columns.values())]
    con.register("_rows_arrow", pa.table(dict(zip(columns, arrays))))
    try:
        con.execute(f'create or replace table "{name}" as select * from _rows_arrow')
    finally:
        con.unregister("_rows_arrow")


def decimal_type(scale: int) -> "pa.DataType":
    import pyarrow as pa

    return pa.decimal128(38, scale)


def sql_literal(value: str) -> str:
    """A string as a SQL literal, for the few places that cannot bind a parameter (a COPY's target
    path, a view's text). Only our own paths go through here, never values from the data."""
    return "'" + value.replace("'", "''") + "'"


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute((SQL_DIR / "macros.sql").read_text(encoding="utf-8"))


def bound(rel: Relation, params: dict) -> dict:
    missing = set(rel.parameters) - params.keys()
    if missing:
        raise DeclarationError(f"sql/{rel.name} needs parameters {sorted(missing)}")
    return {k: params[k] for k in rel.parameters}


def run(con: duckdb.DuckDBPyConnection, step: str, params: dict, context: dict | None = None,
        only: set[str] | None = None) -> dict[str, int | None]:
    """Build every relation of `step` in dependency order (with `only`, just those and what they need
    within the step); returns rows built (or quarantined) per relation. `context` is handed to python
    relations (the program, the delta folder, ...)."""
    g = graph()
    built: dict[str, int] = {}
    order = g.order(step)
    if only is not None:
        needed, todo = set(), set(only)
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                todo |= g.dependencies(g.relations[name])
        order = [r for r in order if r.name in needed]
    readers = {r.name: {o.name for o in g.relations.values() if set(r.makes) & o.names()} for r in order
               if r.free_after_use}
    done: set[str] = set()
    for rel in order:
        built[rel.name] = build(con, rel, params, context or {})
        done.add(rel.name)
        for name, needing in readers.items():  # free what nothing still to be built reads
            if name in done and needing <= done:
                con.execute(f'drop table if exists "{name}"')
                readers[name] = {"-"}  # dropped once
    return built


def build(con: duckdb.DuckDBPyConnection, rel: Relation | str, params: dict, context: dict | None = None) -> int | None:
    """Build one relation as declared; returns its row count (None for a view; a quarantine split: the
    rows refused)."""
    if isinstance(rel, str):
        rel = graph().relations[rel]
    t0 = time.perf_counter()
    profile_dir = os.environ.get("PAYOUTS_PROFILE_DIR")
    if profile_dir and rel.query is not None:  # EXPLAIN ANALYZE of every query, one file each
        con.execute("set enable_profiling = 'query_tree_optimizer'")
        con.execute(f"set profiling_output = {sql_literal(str(Path(profile_dir) / (rel.name + '.txt')))}")
    try:
        rows = _MATERIALIZE[rel.materialized](con, rel, params, context or {})
    except duckdb.Error as exc:
        raise RelationFailed(rel.name, exc) from exc
    finally:
        if profile_dir and rel.query is not None:
            con.execute("pragma disable_profiling")
    if rel.quarantine is not None:
        rows = _split(con, rel, params)
    TIMINGS[rel.name] = time.perf_counter() - t0
    log.info("built %s: %s in %.2f s", rel.name, "a view" if rows is None and rel.materialized == "view"
             else f"{rows} rows", TIMINGS[rel.name])
    return rows


def _create(kind: str) -> Callable:
    def create(con, rel: Relation, params: dict, context: dict) -> int | None:
        con.execute(f'create or replace {kind} "{rel.name}" as\n{rel.query}', bound(rel, params))
        if kind.endswith("view"):
            return None  # counting a view's rows would compute it once more, for a log line
        (rows,) = con.execute(f'select count(*) from "{rel.name}"').fetchall()[0]
        return int(rows)
    return create


def _python(con, rel: Relation, params: dict, context: dict) -> int | None:
    module, _, name = rel.function.partition(":")
    return getattr(importlib.import_module(module), name)(con, params, context)


def _parquet(con, rel: Relation, params: dict, context: dict) -> int:
    """COPY the query to `<context['delta_dir']>/<parquet>.parquet`. Parquet has no 128-bit integer:
    HUGEINT money columns go as DECIMAL(38, 0), exact, and come back as HUGEINT in the ledger.

    `dictionary_columns` (text with a few values: a month, a currency, a partner) are cast to an
    ENUM of their sorted distinct values, taken in one pass: the Parquet writer then writes the
    ENUM's dictionary instead of hashing every row's text, and the file holds the same strings
    (read back as VARCHAR). `dictionaries` are ENUM types that the query casts to itself, each made
    first from the sorted distinct values of the columns it lists: a query casts a claim's columns
    on the few thousand claims before joining them to millions of credits, where a cast of the
    joined rows costs a lookup per row."""
    for type_name, refs in rel.dictionaries:
        columns = " union all ".join(f'select "{c}" as v from "{r}"' for r, c in (ref.split(".") for ref in refs))
        con.execute(f'create or replace temp type "{type_name}" as enum '
                    f"(select v from (select distinct v from ({columns}) where v is not null) order by v)")
    values = bound(rel, params)
    probe = con.sql(rel.query, params=values or None)
    casts = {c: f'"{c}"::decimal(38, 0)' for c, t in zip(probe.columns, probe.types) if str(t) == "HUGEINT"}
    if rel.dictionary_columns:
        lists = ", ".join(f'list(distinct "{c}") filter (where "{c}" is not null) as "{c}"'
                          for c in rel.dictionary_columns)
        con.execute(f"create or replace temp table _dictionary as select {lists} from ({rel.query})", values)
        for i, c in enumerate(rel.dictionary_columns):
            # the type's values come from the table (an ENUM's values cannot be bound), in sorted order
            con.execute(f'create or replace temp type _dictionary_{i} as enum '
                        f'(select v from (select unnest("{c}") as v from _dictionary) order by v)')
            casts[c] = f'"{c}"::_dictionary_{i}'
    cols = ", ".join(f'{casts[c]} as "{c}"' if c in casts else f'"{c}"' for c in probe.columns)
    path = Path(context["delta_dir"]) / f"{rel.parquet}.parquet"
    (rows,) = con.execute(f"copy (select {cols} from ({rel.query})) to {sql_literal(str(path))} (format parquet)",
                          values).fetchall()[0]
    return int(rows)


def _split(con, rel: Relation, params: dict) -> int:
    """Rows of a `*_checked` relation with a reason_code are appended to the quarantine table; the rest
    become the view of usable rows. Returns how many were refused."""
    q = rel.quarantine
    source, values = q.source_file, {}
    if source.startswith("$"):
        values["label"] = params[source[1:]]
        source = "$label"
    refused = f'(select * from "{rel.name}" where reason_code is not null)'
    if q.keep:  # the refused rows read once, into a small table later relations can join
        con.execute(f'create or replace temp table "{q.keep}" as {refused[1:-1]}')
        refused = f'"{q.keep}"'
    (bad,) = con.execute(
        f'insert into "{q.into}" select {source}, row_number, cast("{q.record_id}" as varchar), reason_code, message '
        f"from {refused}", values).fetchall()[0]
    # a view, not a copy: the usable rows are read once or twice downstream. a stored relation's view
    # is stored too (ingest's, which compute reads in another process)
    kind = "view" if rel.materialized == "table" else "temp view"
    con.execute(f'create or replace {kind} "{q.usable}" as select * exclude (reason_code, message) '
                f'from "{rel.name}" where reason_code is null')
    return int(bad)


_MATERIALIZE: dict[str, Callable[..., Any]] = {
    "table": _create("table"),
    "temp_table": _create("temp table"),
    "view": _create("temp view"),
    "query": lambda con, rel, params, context: None,  # fetched by its reader
    "parquet": _parquet,
    "python": _python,
}
