"""Validation gates: Great Expectations 1.x suites run on in-memory frames.

The suites are JSON files under ``expectations/`` (one per input file and per result table). The
engine hands every frame it wants checked to :func:`validate_frame`, collects the results in a
:class:`GateReport`, calls :meth:`GateReport.raise_if_fatal` before it publishes anything and, when
the month is published, :meth:`GateReport.write` into ``<out>/<month>/validation/``.

Two severities:

* ``fatal``  - the run stops before publishing (``GateFailed``): a missing or unreadable file, a
  missing required column, a quarantine rate above ``validation.max_quarantine_pct``, a result table
  that does not reconcile.
* ``warning`` - reported, the run goes on: row-level problems, which the engine quarantines.

How a suite runs (see ``docs/validation.md``):

* One ephemeral GX context per process, a pandas data source with one dataframe asset and a
  whole-dataframe batch definition; every call validates a batch built from
  ``batch_parameters={"dataframe": df}``.
* GX's per-batch fingerprint (an md5 over ``pandas.util.hash_pandas_object`` of the whole frame, which
  costs more than every expectation together) is switched off.
* By default (``compact=True``) GX is not handed the full frame but exact reductions computed in
  Polars: for a row-wise expectation the distinct values of its columns with their row counts
  (unexpected counts are weighted back to rows); for uniqueness the rows whose key is duplicated;
  for not-null the null / non-null split; for schema checks a zero-row frame with the same columns.
  Every row is covered, nothing is sampled. ``compact=False`` runs GX on the full frame instead.
"""

from __future__ import annotations

import html
import importlib.abc
import importlib.util
from importlib import resources
import json
import logging
import math
import os
import re
import sys
import threading
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import polars as pl

EXPECTATIONS_DIR = resources.files("pipelines.validation") / "expectations"  # package data

FATAL = "fatal"
WARNING = "warning"
SEVERITIES = (FATAL, WARNING)

#: program.yaml key holding the quarantine-rate limit (percent of the rows read, per input file);
#: pipelines/config.py reads it as ``program.validation.max_quarantine_pct``.
QUARANTINE_LIMIT_KEY = "validation.max_quarantine_pct"
#: Its default when program.yaml does not set it: 100, i.e. off (the spec computes and writes a month
#: whatever its exceptions); finance sets e.g. 5 to stop a run on a broken export.
DEFAULT_MAX_QUARANTINE_PCT = 100.0

#: How many unexpected values a result keeps as examples.
EXAMPLES = 5

_GX_TO_SEVERITY = {"critical": FATAL, "warning": WARNING, "info": WARNING}
_SEVERITY_TO_GX = {FATAL: "critical", WARNING: "warning"}

# Expectation families, by how they can be reduced to a small exact frame.
_SCHEMA = {
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal",
    "expect_table_column_count_to_be_between",
    "expect_column_to_exist",
}
_ROWCOUNT = {"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"}
_NULLS = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"}
_UNIQUE = {"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"}
# Row-wise: whether a row passes depends only on the values of the expectation's columns in that row.
_ROWWISE = {
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
    "expect_column_values_to_match_regex_list",
    "expect_column_values_to_not_match_regex_list",
    "expect_column_values_to_match_like_pattern",
    "expect_column_values_to_not_match_like_pattern",
    "expect_column_values_to_match_like_pattern_list",
    "expect_column_values_to_not_match_like_pattern_list",
    "expect_column_values_to_be_between",
    "expect_column_value_lengths_to_be_between",
    "expect_column_value_lengths_to_equal",
    "expect_column_values_to_match_strftime_format",
    "expect_column_values_to_be_dateutil_parseable",
    "expect_column_values_to_be_json_parseable",
    "expect_column_pair_values_to_be_equal",
    "expect_column_pair_values_a_to_be_greater_than_b",
    "expect_column_pair_values_to_be_in_set",
    "expect_multicolumn_sum_to_equal",
    "expect_select_column_values_to_be_unique_within_record",
}
# Aggregates whose value only depends on the set of distinct values.
_DISTINCT = {
    "expect_column_distinct_values_to_be_in_set",
    "expect_column_distinct_values_to_contain_set",
    "expect_column_distinct_values_to_equal_set",
    "expect_column_min_to_be_between",
    "expect_column_max_to_be_between",
    "expect_column_unique_value_count_to_be_between",
}

_COUNT_COL = "__gx_rows"


class GateFailed(Exception):
    """A fatal gate failed: the run stops before publishing. ``str()`` is one line."""

    def __init__(self, messages: list[str] | str):
        if isinstance(messages, str):
            messages = [messages]
        self.messages = list(messages)
        first = self.messages[0] if self.messages else "validation failed"
        extra = len(self.messages) - 1
        super().__init__(first + (f" (and {extra} more fatal problem{'s' if extra > 1 else ''})" if extra else ""))


class SuiteError(ValueError):
    """A suite file is missing or malformed, or a runtime parameter it needs was not given."""


# --------------------------------------------------------------------------------------------
# The GX context: one per process, built lazily (importing GX costs seconds), optionally in the
# background via prewarm().


class _GX:
    lock = threading.Lock()
    ready = threading.Event()
    thread: threading.Thread | None = None
    error: BaseException | None = None
    gx: Any = None
    batch_definition: Any = None
    version: str = ""


def _build_context() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

    with warnings.catch_warnings(), _lazy_modules(LAZY_MODULES):
        warnings.simplefilter("ignore")
        import great_expectations as gx
        import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # The batch "fingerprint" hashes every cell of the frame on every batch (~0.4 s per 1M rows);
        # it only fills batch_markers, which we drop anyway.
        if hasattr(pandas_engine, "HASH_THRESHOLD"):
            pandas_engine.HASH_THRESHOLD = 0
        _read_configuration_once()
        # GX logs its set-up at INFO (some of it before our handlers apply); the CLI promises one line
        for name in [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations")] + ["great_expectations"]:
            logging.getLogger(name).setLevel(logging.WARNING)
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = context.data_sources.add_pandas("payouts_frames")
        asset = source.add_dataframe_asset("frame")
        _GX.batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
        _GX.gx = gx
        _GX.version = gx.__version__


#: modules GX imports at start-up only for expectations the suites never use (KL divergence and KS
#: tests): scipy.stats and altair are 3 of GX's 7 s of import on the 2-core box. They are imported
#: lazily (the standard library's LazyLoader): the module object exists, and runs on first use.
LAZY_MODULES = frozenset({"scipy.stats", "altair"})


class _LazyFinder(importlib.abc.MetaPathFinder):
    """Finds `names` as the other finders do, with a loader that defers running the module."""

    def __init__(self, names: frozenset[str]):
        self.names = names

    def find_spec(self, name, path, target=None):
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


@contextmanager
def _lazy_modules(names: frozenset[str]) -> Iterator[None]:
    """While GX is imported (only then: the finder is removed after), `names` load lazily."""
    finder = _LazyFinder(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def _read_configuration_once() -> None:
    """GX 1.x rebuilds `Expectation.configuration` (a pydantic `.dict()` of the whole expectation,
    value sets included) once per kwarg key inside `_get_domain_kwargs` / `_get_success_kwargs` /
    `_get_runtime_kwargs`: about 70 rebuilds per expectation per validation, 40% of a small month's
    GX time. These replacements read it once per call. `configuration` is a pure function of the
    expectation, so the kwargs they return are the same; tests/test_validation.py checks that.
    """
    from great_expectations.expectations.expectation import Expectation

    if getattr(Expectation, "_payouts_config_once", False) or not all(
        hasattr(Expectation, n) for n in ("_get_domain_kwargs", "_get_success_kwargs", "_get_runtime_kwargs",
                                          "_get_default_value", "domain_keys", "success_keys", "runtime_keys")
    ):
        return
    from great_expectations.expectations import expectation as gx_expectation

    def domain_kwargs(self, _kwargs=None):
        kwargs = self.configuration.kwargs if _kwargs is None else _kwargs
        return {key: kwargs.get(key, self._get_default_value(key)) for key in self.domain_keys}

    def success_kwargs(self, _kwargs=None):
        kwargs = self.configuration.kwargs if _kwargs is None else _kwargs
        out = {key: kwargs.get(key, self._get_default_value(key)) for key in self.success_keys}
        out.update(domain_kwargs(self, kwargs))
        return out

    def runtime_kwargs(self, runtime_configuration=None):
        runtime_configuration = runtime_configuration or {}
        kwargs = self.configuration.kwargs
        out = {}
        for key in self.runtime_keys:
            if key in runtime_configuration:
                out[key] = runtime_configuration[key]
            elif key in kwargs:
                out[key] = kwargs[key]
            else:
                field = self.__fields__.get(key)
                out[key] = field.default if field is not None and not field.required else None
        out.update(success_kwargs(self, kwargs))
        out["result_format"] = gx_expectation.parse_result_format(out["result_format"])
        return out

    GX_KWARGS_ORIGINALS.update(domain=Expectation._get_domain_kwargs, success=Expectation._get_success_kwargs,
                               runtime=Expectation._get_runtime_kwargs)
    Expectation._get_domain_kwargs = domain_kwargs
    Expectation._get_success_kwargs = success_kwargs
    Expectation._get_runtime_kwargs = runtime_kwargs
    Expectation._payouts_config_once = True


#: GX's own kwargs methods, kept for the test that compares them with the replacements
GX_KWARGS_ORIGINALS: dict[str, Any] = {}


def _prewarm_target() -> None:
    try:
        _build_context()
    except BaseException as exc:  # noqa: BLE001 - re-raised by _context()
        _GX.error = exc
    finally:
        _GX.ready.set()


def prewarm() -> None:
    """Start importing GX and building the context in a background thread (idempotent).

    Importing great_expectations takes ~5 s on the 2-core box; calling this at the start of a run lets
    the import overlap with reading the exports.
    """
    with _GX.lock:
        if _GX.thread is None and not _GX.ready.is_set():
            _GX.thread = threading.Thread(target=_prewarm_target, name="gx-prewarm", daemon=True)
            _GX.thread.start()


def _context() -> Any:
    if not _GX.ready.is_set():
        prewarm()
        _GX.ready.wait()
    if _GX.error is not None:
        raise _GX.error
    return _GX.batch_definition


def gx_version() -> str:
    _context()
    return _GX.version


# --------------------------------------------------------------------------------------------
# Suites


@dataclass
class _Expectation:
    index: int
    id: str
    type: str
    kwargs: dict
    severity: str | None  # explicit in the JSON, else None (the call's severity applies)
    meta: dict
    description: str | None

    @property
    def domain_columns(self) -> list[str]:
        k = self.kwargs
        cols: list[str] = []
        for key in ("column", "column_A", "column_B"):
            if isinstance(k.get(key), str):
                cols.append(k[key])
        if isinstance(k.get("column_list"), list):
            cols.extend(k["column_list"])
        return cols


@dataclass
class _SuiteSpec:
    name: str
    file: str | None
    expectations: list[_Expectation]
    derived: list[dict]
    raw: dict
    parameters: set[str] = field(default_factory=set)


_SPECS: dict[str, _SuiteSpec] = {}
_GX_SUITES: dict[tuple, Any] = {}


def suite_path(name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SuiteError(f"bad suite name {name!r}")
    return EXPECTATIONS_DIR / f"{name}.json"


def available_suites() -> list[str]:
    return sorted(p.stem for p in EXPECTATIONS_DIR.glob("*.json"))


def _collect_parameters(obj: Any, out: set[str]) -> None:
    if isinstance(obj, dict):
        if "$PARAMETER" in obj and isinstance(obj["$PARAMETER"], str):
            out.add(obj["$PARAMETER"])
        for v in obj.values():
            _collect_parameters(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _collect_parameters(v, out)
    elif isinstance(obj, str):
        out.update(re.findall(r"\{\$([A-Za-z0-9_]+)\}", obj))


def _spec(name: str) -> _SuiteSpec:
    spec = _SPECS.get(name)
    if spec is not None:
        return spec
    path = suite_path(name)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"expectation suite {name!r} not found ({path})") from None
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path.name}: not valid JSON: {exc}") from None
    if raw.get("name") != name:
        raise SuiteError(f"{path.name}: 'name' must be {name!r}")
    meta = raw.get("meta") or {}
    exps = []
    for i, e in enumerate(raw.get("expectations") or []):
        if not isinstance(e, dict) or not isinstance(e.get("type"), str):
            raise SuiteError(f"{path.name}: expectation {i} has no 'type'")
        sev = e.get("severity")
        if sev is not None and sev not in _GX_TO_SEVERITY:
            raise SuiteError(f"{path.name}: expectation {i}: unknown severity {sev!r}")
        emeta = dict(e.get("meta") or {})
        exps.append(
            _Expectation(
                index=i,
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"partner-payouts/expectations/{name}/{i}")),
                type=e["type"],
                kwargs=dict(e.get("kwargs") or {}),
                severity=_GX_TO_SEVERITY[sev] if sev else None,
                meta=emeta,
                description=emeta.get("description"),
            )
        )
    spec = _SuiteSpec(name=name, file=meta.get("file"), expectations=exps, derived=list(meta.get("derived_columns") or []), raw=raw)
    _collect_parameters([e.kwargs for e in exps], spec.parameters)
    _collect_parameters(spec.derived, spec.parameters)
    _SPECS[name] = spec
    return spec


def load_suite(name: str):
    """The GX ``ExpectationSuite`` stored in ``expectations/<name>.json`` (ids are deterministic)."""
    spec = _spec(name)
    _context()
    gx = _GX.gx
    return gx.ExpectationSuite(
        name=spec.name,
        expectations=[_gx_config(spec, e, e.kwargs, e.severity or FATAL) for e in spec.expectations],
        meta=dict(spec.raw.get("meta") or {}),
        notes=spec.raw.get("notes"),
    )


def _gx_config(spec: _SuiteSpec, e: _Expectation, kwargs: dict, severity: str) -> dict:
    return {"type": e.type, "kwargs": kwargs, "meta": e.meta, "id": e.id, "severity": _SEVERITY_TO_GX[severity]}


# --------------------------------------------------------------------------------------------
# Runtime parameters


def month_params(month: str) -> dict:
    """Runtime parameters describing billing month ``YYYY-MM`` for the suites."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"bad month {month!r}")
    y, mo = int(m.group(1)), int(m.group(2))
    nxt = date(y + (mo == 12), mo % 12 + 1, 1)
    last = date.fromordinal(nxt.toordinal() - 1)
    return {
        "month": month,
        "month_compact": f"{y:04d}{mo:02d}",
        "month_regex": rf"^{y:04d}-{mo:02d}$",
        "month_start": f"{y:04d}-{mo:02d}-01",
        "month_end": last.isoformat(),
        # A YYYY-MM-DD string inside the month (day validity is checked by the strftime expectations).
        "month_date_regex": rf"^{y:04d}-{mo:02d}-(0[1-9]|[12][0-9]|3[01])$",
    }


def _resolve(obj: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"$PARAMETER"}:
            return params[obj["$PARAMETER"]]
        return {k: _resolve(v, params) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, params) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------
# Derived columns (declared in a suite's meta.derived_columns, computed in Polars)


def _decimal_expr(frame: pl.DataFrame, column: str, scale: int) -> pl.Expr:
    dtype = frame.schema[column]
    col = pl.col(column)
    if dtype == pl.String:
        return col.str.strip_chars().str.to_decimal(scale=scale)
    return col.cast(pl.Decimal(38, scale), strict=False)


def _direct_sources(d: dict) -> list[str]:
    cols = [t.lstrip("+-") for t in d.get("terms", [])] + ([d["column"]] if "column" in d else [])
    return cols + re.findall(r"\{([A-Za-z0-9_]+)\}", d.get("template", ""))


def _derived_sources(spec: _SuiteSpec, name: str) -> list[str]:
    """The input (non-derived) columns a derived column is computed from, through other derived ones."""
    by_name = {d["name"]: d for d in spec.derived}
    if name not in by_name:
        return []
    out: list[str] = []
    for c in _direct_sources(by_name[name]):
        out.extend(_derived_sources(spec, c) if c in by_name else [c])
    return out


def _derived_closure(spec: _SuiteSpec, names: Iterable[str]) -> list[dict]:
    """The derived columns needed for `names`, with the ones they build on, in the suite's order."""
    by_name = {d["name"]: d for d in spec.derived}
    need: set[str] = set()
    todo = [n for n in names if n in by_name]
    while todo:
        n = todo.pop()
        if n not in need:
            need.add(n)
            todo.extend(c for c in _direct_sources(by_name[n]) if c in by_name)
    return [d for d in spec.derived if d["name"] in need]


def _derive(frame: pl.DataFrame, derived: list[dict], params: Mapping[str, Any]) -> pl.DataFrame:
    for d in derived:
        name, op = d["name"], d["op"]
        needed = [t.lstrip("+-") for t in d.get("terms", [])] + ([d["column"]] if "column" in d else [])
        needed += re.findall(r"\{([A-Za-z0-9_]+)\}", d.get("template", ""))
        if any(c not in frame.columns for c in needed):
            continue  # expectations on `name` are reported as skipped
        if op == "decimal_places":
            s = pl.col(d["column"]).cast(pl.String)
            dot = s.str.find(".", literal=True)
            expr = pl.when(s.is_null()).then(None).when(dot.is_null()).then(0).otherwise(
                s.str.len_bytes().cast(pl.Int64) - dot.cast(pl.Int64) - 1
            ).cast(pl.Int64)
        elif op == "lookup":
            mapping = _resolve(d["mapping"], params)
            expr = pl.col(d["column"]).cast(pl.String).replace_strict(
                {str(k): v for k, v in mapping.items()}, default=d.get("default"), return_dtype=pl.Int64
            )
        elif op == "decimal_sum":
            scale = int(d.get("scale", 6))
            ints = all(frame.schema[t.lstrip("+-")].is_integer() for t in d["terms"])
            expr = None
            for t in d["terms"]:
                sign, col = (-1, t[1:]) if t.startswith("-") else (1, t.lstrip("+"))
                e = pl.col(col).cast(pl.Int64) if ints else _decimal_expr(frame, col, scale)
                expr = (e if sign > 0 else -e) if expr is None else (expr + e if sign > 0 else expr - e)
            expr = expr.cast(pl.Float64)
        elif op == "strip_formula_guard":
            # the text as it was before outputs prefixed "'" to keep a formula from running
            col = pl.col(d["column"]).cast(pl.String)
            expr = pl.when(col.str.contains(r"^'[=+\-@\t\r]")).then(col.str.slice(1)).otherwise(col)
        elif op == "format":
            parts: list[pl.Expr] = []
            for lit, ref in re.findall(r"([^{]*)(?:\{(\$?[A-Za-z0-9_]+)\})?", d["template"]):
                if lit:
                    parts.append(pl.lit(lit))
                if ref:
                    parts.append(pl.lit(str(params[ref[1:]])) if ref.startswith("$") else pl.col(ref).cast(pl.String))
            expr = pl.concat_str(parts)
        else:
            raise SuiteError(f"unknown derived column op {op!r}")
        frame = frame.with_columns(expr.alias(name))
    return frame


# --------------------------------------------------------------------------------------------
# Row conditions (GX 1.x structured conditions) as Polars expressions


def _condition_expr(cond: Any) -> pl.Expr | None:
    """A Polars filter for a GX row_condition dict, or None when it cannot be translated."""
    if not isinstance(cond, dict):
        return None
    kind = cond.get("type")
    if kind == "nullity":
        c = pl.col(cond["column"]["name"])
        return c.is_null() if cond["is_null"] else c.is_not_null()
    if kind == "comparison":
        c, op, p = pl.col(cond["column"]["name"]), cond["operator"], cond["parameter"]
        ops = {
            "==": lambda: c == p, "!=": lambda: c != p, "<": lambda: c < p, "<=": lambda: c <= p,
            ">": lambda: c > p, ">=": lambda: c >= p, "IN": lambda: c.is_in(list(p)),
            "NOT_IN": lambda: ~c.is_in(list(p)),
        }
        return ops[op]().fill_null(False) if op in ops else None
    if kind in ("and", "or"):
        parts = [_condition_expr(c) for c in cond.get("conditions", [])]
        if not parts or any(p is None for p in parts):
            return None
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if kind == "and" else (out | p)
        return out
    return None


def _condition_columns(cond: Any) -> list[str]:
    out: list[str] = []
    if isinstance(cond, dict):
        if isinstance(cond.get("column"), dict):
            out.append(cond["column"]["name"])
        for c in cond.get("conditions", []):
            out.extend(_condition_columns(c))
    return out


# --------------------------------------------------------------------------------------------
# JSON helpers


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return None
        return int(v) if v.is_integer() and abs(v) < 2**53 else round(v, 6)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        items = [_jsonable(x) for x in v]
        return sorted(items, key=_sort_key) if isinstance(v, (set, frozenset)) else items
    if hasattr(v, "item"):  # numpy scalar
        try:
            return _jsonable(v.item())
        except (ValueError, TypeError):
            pass
    if hasattr(v, "value") and isinstance(getattr(v, "value"), str):  # enums
        return v.value
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return str(v)


def _sort_key(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _summarize_param(v: Any) -> Any:
    v = _jsonable(v)
    if isinstance(v, list) and len(v) > 20:
        return {"count": len(v), "first": v[:20]}
    if isinstance(v, dict) and len(v) > 20:
        keys = sorted(v)[:20]
        return {"count": len(v), "first": {k: v[k] for k in keys}}
    return v


def _fmt_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return _fmt_num(v)
    if isinstance(v, list):
        return "(" + ", ".join(_fmt_value(x) for x in v) + ")"
    return repr(str(v)) if isinstance(v, str) else str(v)


def _fmt_num(v: Any) -> str:
    if isinstance(v, float):
        s = f"{v:.2f}".rstrip("0").rstrip(".")
        return s if s not in ("-0", "") else "0"
    return str(v)


# --------------------------------------------------------------------------------------------
# validate_frame


class SqlFrame:
    """A query in a DuckDB connection, validated without loading its rows into Python.

    The compact reductions (value counts, null counts, duplicated keys) run as DuckDB GROUP BYs,
    which are multi-threaded and bounded by the connection's memory limit (spilling past it), and
    only their small results become Polars frames. A suite that needs a derived column on every
    row, or a row condition on a uniqueness check, loads just the columns it needs.
    """

    def __init__(self, con: Any, query: str, repeated: Mapping[tuple[str, ...], str] | None = None):
        self.con = con
        self.query = query
        # for a uniqueness check on these key columns: a query giving hash(keys) of every key that
        # may repeat (a superset of this frame's repeated keys, computed once for several frames)
        self.repeated = dict(repeated or {})
        empty = pl.from_arrow(con.sql(f"select * from ({query}) limit 0").to_arrow_table())
        self.schema = empty.schema
        self.columns = list(empty.columns)
        self._height: int | None = None

    def _sql(self, sql: str) -> pl.DataFrame:
        return pl.from_arrow(self.con.sql(sql).to_arrow_table())

    @property
    def height(self) -> int:
        if self._height is None:
            (self._height,) = self.con.execute(f"select count(*) from ({self.query})").fetchall()[0]
        return int(self._height)

    def load(self, columns: Iterable[str] | None = None) -> pl.DataFrame:
        cols = self.columns if columns is None else [c for c in self.columns if c in set(columns)]
        return self._sql(f"select {_idents(cols)} from ({self.query})") if cols else pl.DataFrame()


def _whole(dtype: Any) -> bool:
    """An integer column, or a DECIMAL(p, 0) (DuckDB's HUGEINT comes to Arrow as DECIMAL(38, 0))."""
    return dtype.is_integer() or (isinstance(dtype, pl.Decimal) and dtype.scale == 0)


def _idents(cols: Iterable[str]) -> str:
    return ", ".join('"' + c.replace('"', '""') + '"' for c in cols)


class _PolarsRows:
    """The reductions of a frame already in memory."""

    def __init__(self, pf: pl.DataFrame):
        self.pf = pf
        self.columns = list(pf.columns)
        self.schema = pf.schema
        self.height = pf.height

    def load(self, columns: Iterable[str] | None = None) -> pl.DataFrame:
        return self.pf if columns is None else self.pf.select([c for c in self.pf.columns if c in set(columns)])

    def group_counts(self, cols: list[str]) -> pl.DataFrame:
        return self.pf.group_by(cols).agg(pl.len().cast(pl.Int64).alias(_COUNT_COL))

    def cardinalities(self, columns: list[str]) -> dict[str, int]:
        return _cardinalities(self.pf, columns)

    def null_patterns(self, cols: list[str], cond: Any, cond_expr: pl.Expr | None) -> tuple[pl.DataFrame, int, int]:
        pf = self.pf if cond_expr is None else self.pf.filter(cond_expr)
        frame = _null_patterns(pf.select(cols).with_columns(pl.lit(1, pl.Int64).alias(_COUNT_COL)), cols)
        return frame, pf.height, 0

    def duplicates(self, cols: list[str], cond: Any, cond_expr: pl.Expr | None) -> tuple[pl.DataFrame, int, int]:
        return _duplicates_frame(self.pf, cols, cond_expr)


class _SqlRows:
    """The same reductions as :class:`_PolarsRows`, computed by DuckDB (see :class:`SqlFrame`)."""

    def __init__(self, src: SqlFrame):
        self.src = src
        self.columns = src.columns
        self.schema = src.schema

    @property
    def height(self) -> int:
        return self.src.height

    def load(self, columns: Iterable[str] | None = None) -> pl.DataFrame:
        return self.src.load(columns)

    def with_derived(self, derived: list[dict]) -> "_SqlRows | None":
        """These rows with `derived` added by DuckDB, when every one is a `decimal_sum` of integer
        columns (or DECIMAL(p, 0): exact in SQL as HUGEINT; then a DOUBLE, as the in-memory path
        makes it); else None."""
        exprs = []
        for d in derived:
            terms = d.get("terms") or []
            if d["op"] != "decimal_sum" or not terms or any(
                    t.lstrip("+-") not in self.schema or not _whole(self.schema[t.lstrip("+-")]) for t in terms):
                return None
            sql = " ".join(("- " if t.startswith("-") else "+ ") + _idents([t.lstrip("+-")]) + "::hugeint"
                           for t in terms)
            exprs.append(f"({sql})::double as {_idents([d['name']])}")
        return _SqlRows(SqlFrame(self.src.con, f"select *, {', '.join(exprs)} from ({self.src.query})",
                                 self.src.repeated))

    def group_counts(self, cols: list[str]) -> pl.DataFrame:
        frame = self.src._sql(f"select {_idents(cols)}, count(*) as {_COUNT_COL} from ({self.src.query}) group by all")
        return frame.with_columns(pl.col(_COUNT_COL).cast(pl.Int64))

    def cardinalities(self, columns: list[str]) -> dict[str, int]:
        """Distinct counts in the first 100,000 rows: they only steer the plan, never a result."""
        columns = sorted(set(columns))
        if not columns:
            return {}
        counts = ", ".join(f'count(distinct "{c}") + max(case when "{c}" is null then 1 else 0 end)' for c in columns)
        row = self.src.con.execute(f"select {counts} from (select * from ({self.src.query}) limit 100000)").fetchall()[0]
        return {c: int(v or 0) for c, v in zip(columns, row)}

    def null_patterns(self, cols: list[str], cond: Any, cond_expr: pl.Expr | None) -> tuple[pl.DataFrame, int, int]:
        """Counts by (condition columns' values, null-ness of `cols`) in DuckDB; the condition is then
        applied to that small frame, which is reduced to the null patterns of `cols`."""
        by_value = sorted(set(_condition_columns(cond))) if cond is not None else []
        rest = [c for c in cols if c not in by_value]
        select = [_idents([c]) for c in by_value]
        select += [f"{_idents([c])} is null as __isnull_{i}" for i, c in enumerate(rest)]
        select += [f"min({_idents([c])}) as {_idents([c])}" for c in rest]
        counts = self.src._sql(f"select {', '.join(select)}, count(*) as {_COUNT_COL} "
                               f"from ({self.src.query}) group by all")
        if cond_expr is not None:
            counts = counts.filter(cond_expr)
        counts = counts.with_columns(pl.col(_COUNT_COL).cast(pl.Int64))
        total = int(counts[_COUNT_COL].sum() or 0)
        return _null_patterns(counts.select(cols + [_COUNT_COL]), cols), total, 0

    def duplicates(self, cols: list[str], cond: Any, cond_expr: pl.Expr | None) -> tuple[pl.DataFrame, int, int]:
        if cond is not None:  # a row condition on a uniqueness check: load the columns it needs
            return _duplicates_frame(self.load(set(cols) | set(_condition_columns(cond))), cols, cond_expr)
        keys = _idents(cols)
        all_null = " and ".join(f'"{c}" is null' for c in cols)
        total = self.height
        (missing,) = self.src.con.execute(f"select count(*) from ({self.src.query}) where {all_null}").fetchall()[0]
        # candidates by 64-bit hash first (grouping integers is far cheaper than grouping 10M
        # strings; every repeated key is among them), then the candidates grouped exactly. The
        # candidates may be given (`repeated`): hashes repeated in a superset of these rows
        given = self.src.repeated.get(tuple(cols))
        hashes = given or f"select hash({keys}) as h from k group by 1 having count(*) > 1"
        dups = self.src._sql(
            f"with k as (select {keys} from ({self.src.query}) where not ({all_null})), "
            f"h as ({hashes}) "
            f"select {keys}, count(*) as __n from k where hash({keys}) in (select h from h) "
            f"group by all having count(*) > 1"
        )
        # every duplicated row once (as the in-memory reduction gives them), sorted
        rows = dups.select(pl.col(cols).repeat_by(pl.col("__n"))).explode(cols) if dups.height else dups.select(cols)
        rows = rows.sort(cols, nulls_last=True).with_columns(pl.lit(1, pl.Int64).alias(_COUNT_COL))
        return rows, total, int(missing)


def _to_polars(frame: Any) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if hasattr(frame, "pl") and callable(frame.pl):  # a DuckDB relation
        return frame.pl()
    import pyarrow as pa

    if isinstance(frame, (pa.Table, pa.RecordBatch)):
        return pl.from_arrow(frame)
    import pandas as pd

    if isinstance(frame, pd.DataFrame):
        return pl.from_pandas(frame)
    raise TypeError(f"validate_frame needs a polars or pandas DataFrame, not {type(frame).__name__}")


def _to_pandas(frame: pl.DataFrame):
    return frame.to_pandas()


def _run_gx(spec: _SuiteSpec, key: tuple, configs: list[dict], pdf, params: Mapping[str, Any], result_format: dict) -> dict:
    """Run GX expectation configs on one pandas frame; results by expectation id."""
    batch_definition = _context()
    gx = _GX.gx
    suite = _GX_SUITES.get(key)
    if suite is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            suite = gx.ExpectationSuite(name=f"{spec.name}.{len(_GX_SUITES)}", expectations=configs)
        _GX_SUITES[key] = suite
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = batch_definition.get_batch(batch_parameters={"dataframe": pdf})
        res = batch.validate(suite, result_format=result_format, expectation_parameters=dict(params) or None)
    out = {}
    for r in res.results:
        cfg = r.expectation_config
        out[cfg.id] = r
    return out


def _exception_message(r) -> str | None:
    info = r.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "error")
    for v in info.values() if isinstance(info, dict) else []:
        if isinstance(v, dict) and v.get("raised_exception"):
            return str(v.get("exception_message") or "error")
    return None


def validate_frame(
    suite_name: str,
    frame: Any,
    *,
    severity: str,
    runtime_params: Mapping[str, Any] | None = None,
    file: str | None = None,
    compact: bool = True,
) -> dict:
    """Run suite ``expectations/<suite_name>.json`` on ``frame``; return a compact JSON-able result.

    ``severity`` (``"fatal"`` or ``"warning"``) applies to every expectation that does not state its
    own ``severity`` in the JSON (``"critical"`` = fatal, ``"warning"``). ``runtime_params`` fills the
    suite's ``{"$PARAMETER": name}`` values (e.g. :func:`month_params`). ``file`` overrides the file
    name used in messages (default: the suite's ``meta.file``).
    """
    if severity == "critical":
        severity = FATAL
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, not {severity!r}")
    spec = _spec(suite_name)
    params = dict(runtime_params or {})
    missing = sorted(spec.parameters - set(params))
    if missing:
        raise SuiteError(f"suite {suite_name!r} needs runtime parameter(s): {', '.join(missing)}")
    file = file or spec.file or suite_name
    rows = _SqlRows(frame) if isinstance(frame, SqlFrame) else _PolarsRows(_to_polars(frame))
    n_rows = rows.height
    input_columns = list(rows.columns)
    present = set(input_columns)
    for d in spec.derived:  # in order: a derived column may build on an earlier one
        if all(c in present for c in _derived_sources(spec, d["name"])):
            present.add(d["name"])

    entries: dict[int, dict] = {}
    runnable: list[_Expectation] = []
    for e in spec.expectations:
        sev = e.severity or severity
        cond = e.kwargs.get("row_condition")
        need = e.domain_columns + _condition_columns(cond)
        absent = [c for c in need if c not in present]
        entry = {
            "type": e.type,
            "kwargs": _jsonable(e.kwargs),
            "severity": sev,
            "description": e.description,
        }
        if absent:
            col = absent[0]
            sources = [c for c in _derived_sources(spec, col) if c not in input_columns]
            col = sources[0] if sources else col
            entry.update(status="skipped", success=None, message=f"not evaluated: column '{col}' is missing")
            entries[e.index] = entry
        else:
            entries[e.index] = entry
            runnable.append(e)

    if compact:
        # Derived columns that row-wise expectations use are computed on the compacted frames; only
        # the ones other expectations need are computed on every row.
        derived = {d["name"]: d for d in spec.derived}
        on_rows = {
            c
            for e in runnable
            if _group_key(e)[0] not in ("rowwise", "schema", "rowcount")
            for c in e.domain_columns + _condition_columns(e.kwargs.get("row_condition"))
            if c in derived
        }
        on_rows |= _derive_on_rows(rows, spec, runnable)
        if on_rows and isinstance(rows, _SqlRows):
            # a derived column on every row: DuckDB adds it where it can, else the rows are loaded
            rows = rows.with_derived([d for d in spec.derived if d["name"] in on_rows]) or _PolarsRows(rows.load())
        if on_rows and isinstance(rows, _PolarsRows):
            rows = _PolarsRows(_derive(rows.pf, [d for d in spec.derived if d["name"] in on_rows], params))
        _run_compact(spec, rows, runnable, entries, params, input_columns)
    else:
        _run_full(spec, _derive(rows.load(), spec.derived, params), runnable, entries, params)

    expectations = []
    for e in spec.expectations:
        entry = entries[e.index]
        if entry.get("status") in ("failed", "error"):
            entry["message"] = _message(file, e, entry, params, input_columns)
        expectations.append({k: v for k, v in entry.items() if v is not None or k == "success"})
    failed = [x for x in expectations if x["status"] in ("failed", "error")]
    return {
        "suite": spec.name,
        "file": file,
        "rows": n_rows,
        "parameters": {k: _summarize_param(params[k]) for k in sorted(spec.parameters)},
        "success": not failed and all(x["status"] == "passed" for x in expectations),
        "fatal": any(x["severity"] == FATAL for x in failed),
        "expectations": expectations,
    }


_FULL_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
_COMPLETE_FORMAT = {"result_format": "COMPLETE"}


def _run_full(spec: _SuiteSpec, pf: pl.DataFrame, runnable: list[_Expectation], entries: dict, params: Mapping) -> None:
    if not runnable:
        return
    configs = [_gx_config(spec, e, e.kwargs, entries[e.index]["severity"]) for e in runnable]
    key = (spec.name, "full", tuple(e.index for e in runnable), tuple(c["severity"] for c in configs))
    results = _run_gx(spec, key, configs, _to_pandas(pf), params, _FULL_FORMAT)
    for e in runnable:
        _fill_from_gx(entries[e.index], results.get(e.id))


def _fill_from_gx(entry: dict, r) -> None:
    if r is None:
        entry.update(status="error", success=False, error="no result from Great Expectations")
        return
    err = _exception_message(r)
    if err:
        entry.update(status="error", success=False, error=err)
        return
    res = r.result or {}
    entry["success"] = bool(r.success)
    entry["status"] = "passed" if r.success else "failed"
    if "observed_value" in res:
        entry["observed"] = _jsonable(res["observed_value"])
    if "details" in res:
        entry["details"] = _jsonable(res["details"])
    if "element_count" in res:
        entry["element_count"] = int(res["element_count"])
        entry["missing_count"] = int(res.get("missing_count") or 0)
        entry["unexpected_count"] = int(res.get("unexpected_count") or 0)
        entry["unexpected_percent"] = _pct(res.get("unexpected_percent"))
        counts = res.get("partial_unexpected_counts") or []
        ex = [{"value": _jsonable(c["value"]), "count": int(c["count"])} for c in counts]
        entry["examples"] = _sorted_examples(ex)[:EXAMPLES]


def _pct(v: Any) -> float | None:
    if v is None:
        return None
    return round(float(v), 4)


def _sorted_examples(ex: list[dict]) -> list[dict]:
    return sorted(ex, key=lambda x: (-x["count"], _sort_key(x["value"])))


def _group_key(e: _Expectation) -> tuple:
    cond = e.kwargs.get("row_condition")
    cond_key = json.dumps(cond, sort_keys=True) if cond is not None else ""
    if e.type in _SCHEMA:
        return ("schema",)
    if e.type in _ROWCOUNT:
        return ("rowcount",)
    translatable = cond is None or _condition_expr(cond) is not None
    if not translatable:
        return ("full", cond_key)
    cols = tuple(e.domain_columns)
    if e.type in _NULLS:
        return ("nulls", (), cond_key)  # every null check under one condition: one frame, one GX call
    if e.type in _UNIQUE:
        return ("unique", cols, cond_key)
    if e.type in _ROWWISE:
        return ("rowwise", cols, cond_key)
    if e.type in _DISTINCT:
        return ("rowwise", cols, cond_key)
    return ("full", cond_key)


def _strip_kwargs(e: _Expectation, *, drop_mostly: bool) -> dict:
    kw = {k: v for k, v in e.kwargs.items() if k not in ("row_condition", "condition_parser")}
    if drop_mostly:
        kw.pop("mostly", None)
    return kw


def _run_compact(
    spec: _SuiteSpec, rows: "_PolarsRows | _SqlRows", runnable: list[_Expectation], entries: dict, params: Mapping,
    input_columns: list[str],
) -> None:
    groups: dict[tuple, list[_Expectation]] = {}
    for e in runnable:
        groups.setdefault(_group_key(e), []).append(e)
    # Row-wise groups on the same columns share one group_by over those columns plus every column
    # their row conditions use; each group then filters and re-aggregates that (small) frame.
    cond_cols: dict[tuple, set] = {}
    for gkey, exps in groups.items():
        if gkey[0] == "rowwise":
            cond_cols.setdefault(gkey[1], set()).update(_condition_columns(exps[0].kwargs.get("row_condition")))
    bases: dict[tuple, pl.DataFrame] = {}
    derived = {d["name"]: d for d in spec.derived}

    def sources(columns: Iterable[str]) -> list[str]:
        out: set[str] = set()
        for c in columns:
            out.update(_derived_sources(spec, c) if c in derived and c not in rows.columns else [c])
        return sorted(out)

    base_keys = _plan_bases(rows, {g: sources(set(g[1]) | cond_cols.get(g[1], set())) for g in groups if g[0] == "rowwise"})

    for gkey, exps in groups.items():
        kind = gkey[0]
        configs = [_gx_config(spec, e, e.kwargs, entries[e.index]["severity"]) for e in exps]
        if kind in ("schema", "rowcount", "full"):
            if kind == "schema":  # the columns as given, without the derived ones
                pdf = _to_pandas(pl.DataFrame(schema={c: rows.schema[c] for c in input_columns}))
            elif kind == "rowcount":
                import pandas as pd

                pdf = pd.DataFrame(index=pd.RangeIndex(rows.height))
            else:
                cols = set()
                for e in exps:
                    cols |= set(e.domain_columns) | set(_condition_columns(e.kwargs.get("row_condition")))
                if any(not isinstance(e.kwargs.get("row_condition"), (dict, type(None))) for e in exps):
                    cols = set(rows.columns)  # pass-through conditions may use any column
                pdf = _to_pandas(rows.load(cols))
            res = _run_gx(spec, _ckey(spec, gkey, exps, entries), configs, pdf, params, _FULL_FORMAT)
            for e in exps:
                _fill_from_gx(entries[e.index], res.get(e.id))
            continue

        cols = list(gkey[1])
        cond = exps[0].kwargs.get("row_condition")
        cond_expr = _condition_expr(cond) if cond is not None else None
        if kind == "nulls":
            cols = sorted({c for e in exps for c in e.domain_columns})
            compact, total, missing = rows.null_patterns(cols, cond, cond_expr)
        elif kind == "unique":
            compact, total, missing = rows.duplicates(cols, cond, cond_expr)
        else:  # row-wise expectations and distinct-value aggregates
            wanted = set(cols) | cond_cols.get(tuple(cols), set())
            key = base_keys[gkey]
            base = bases.get(key)
            if base is None:
                base = rows.group_counts(list(key))
                bases[key] = base
            todo = [d for d in _derived_closure(spec, wanted) if d["name"] not in base.columns]
            if todo:
                base = bases[key] = _derive(base, todo, params)
            sub = base if cond_expr is None else base.filter(cond_expr)
            if sorted(sub.columns) != sorted(cols + [_COUNT_COL]):
                sub = sub.group_by(cols).agg(pl.col(_COUNT_COL).sum())
            compact = sub.sort(cols, nulls_last=True)
            total = int(compact[_COUNT_COL].sum() or 0)
            missing = int(compact.filter(pl.all_horizontal([pl.col(c).is_null() for c in cols]))[_COUNT_COL].sum() or 0)
        configs = [
            _gx_config(spec, e, _strip_kwargs(e, drop_mostly=e.type not in _DISTINCT), entries[e.index]["severity"])
            for e in exps
        ]
        res = _run_gx(spec, _ckey(spec, gkey, exps, entries), configs, _to_pandas(compact), params, _COMPLETE_FORMAT)
        weights = compact[_COUNT_COL].to_list()
        for e in exps:
            entry = entries[e.index]
            r = res.get(e.id)
            if e.type in _DISTINCT or r is None or _exception_message(r):
                _fill_from_gx(entry, r)
                continue
            idx = (r.result or {}).get("unexpected_index_list") or []
            if any(not isinstance(i, int) and not hasattr(i, "__index__") for i in idx):
                _fill_from_gx(entry, r)  # index given as dicts: keep GX's own counts
                continue
            positions = [int(i) for i in idx]
            if kind == "unique":
                unexpected = len(positions)
                examples = _unique_examples(compact, cols, positions)
            else:
                unexpected = int(sum(weights[p] for p in positions))
                examples = _merge_examples(
                    [{"value": _row_value(compact, e.domain_columns, p), "count": int(weights[p])} for p in positions])
            nonmissing = total if kind == "nulls" else total - missing
            mostly = e.kwargs.get("mostly")
            if isinstance(mostly, (int, float)) and mostly < 1:
                success = nonmissing == 0 or (nonmissing - unexpected) / nonmissing >= mostly
            else:
                success = unexpected == 0
            entry.update(
                status="passed" if success else "failed",
                success=bool(success),
                element_count=int(total),
                missing_count=int(missing),
                unexpected_count=int(unexpected),
                unexpected_percent=_pct(100.0 * unexpected / nonmissing) if nonmissing else 0.0,
                examples=_sorted_examples(examples)[:EXAMPLES],
            )


_HIGH_CARDINALITY = 1000


def _cardinalities(pf: pl.DataFrame, columns: Iterable[str]) -> dict[str, int]:
    """Distinct counts in the first 100,000 rows: they only steer the plan, never a result."""
    columns = sorted(set(columns))
    if not columns or pf.height == 0:
        return {c: 0 for c in columns}
    return dict(zip(columns, pf.head(100_000).select(pl.col(columns).n_unique()).row(0)))


def _derive_on_rows(rows: "_PolarsRows | _SqlRows", spec: _SuiteSpec, runnable: list[_Expectation]) -> set[str]:
    """Derived columns of row-wise expectations that are cheaper to compute on every row than on a
    group_by of their sources: those combining two or more high-cardinality columns (an exact
    difference such as amount - shares - company share is nearly always 0, so it groups to one row)."""
    used = {c for e in runnable if _group_key(e)[0] == "rowwise" for c in e.domain_columns}
    derived = [d for d in spec.derived if d["name"] in used]
    card = rows.cardinalities([c for d in derived for c in _derived_sources(spec, d["name"]) if c in rows.columns])
    return {
        d["name"]
        for d in derived
        if sum(1 for c in _derived_sources(spec, d["name"]) if card.get(c, 0) > _HIGH_CARDINALITY) >= 2
    }


def _plan_bases(rows: "_PolarsRows | _SqlRows", group_sources: Mapping[tuple, list[str]]) -> dict[tuple, tuple]:
    """Which group_by ("base") serves each row-wise group.

    Groups that share their high-cardinality columns (e.g. ``amount``) are served by one group_by over
    the union of their columns (``amount, currency, line_type``): one pass over the rows instead of
    several. Groups of low-cardinality columns only reuse such a base when it covers them. The
    cardinalities come from the first 100,000 rows; they only steer the plan, never the result.
    """
    columns = sorted({c for cols in group_sources.values() for c in cols})
    if not columns:
        return {}
    card = rows.cardinalities(columns)
    high = {g: frozenset(c for c in cols if card[c] > _HIGH_CARDINALITY) for g, cols in group_sources.items()}
    merged: dict[frozenset, set] = {}
    for g, cols in group_sources.items():
        if high[g]:
            merged.setdefault(high[g], set()).update(cols)
    out: dict[tuple, tuple] = {}
    for g, cols in group_sources.items():
        if high[g]:
            out[g] = tuple(sorted(merged[high[g]]))
            continue
        covering = [k for k in merged.values() if set(cols) <= k]
        out[g] = tuple(sorted(min(covering, key=lambda k: (len(k), sorted(k))))) if covering else tuple(cols)
    return out


def _duplicates_frame(pf: pl.DataFrame, cols: list[str], cond_expr: pl.Expr | None) -> tuple[pl.DataFrame, int, int]:
    """Every row whose key (``cols``) occurs more than once; rows with an all-null key are left out.

    Candidates are found by sorting 64-bit hashes of the key (far cheaper than a hash set over 10M
    strings), then the candidates are checked exactly.
    """
    sub = pf.select(cols) if cond_expr is None else pf.filter(cond_expr).select(cols)
    total = sub.height
    all_null = pl.all_horizontal([pl.col(c).is_null() for c in cols])
    missing = sub.filter(all_null).height if any(sub[c].null_count() for c in cols) else 0
    key_hash = (pl.col(cols[0]) if len(cols) == 1 else pl.struct(cols)).hash(seed=0)
    hashes = sub.filter(~all_null).select(key_hash.alias("h"))["h"].sort()
    dup_hashes = hashes.filter(hashes == hashes.shift(1)).unique()
    if dup_hashes.len() == 0:
        candidates = sub.head(0)
    else:
        candidates = sub.filter(~all_null & key_hash.is_in(dup_hashes.implode()))
    key = pl.col(cols[0]) if len(cols) == 1 else pl.struct(cols)
    dups = candidates.filter(key.is_duplicated()).sort(cols, nulls_last=True)
    return dups.with_columns(pl.lit(1, pl.Int64).alias(_COUNT_COL)), total, missing


def _merge_examples(examples: list[dict]) -> list[dict]:
    """One example per value (a null-pattern frame may hold a value, e.g. null, on several rows)."""
    out: dict[str, dict] = {}
    for x in examples:
        k = json.dumps(x["value"], sort_keys=True, default=str)
        if k in out:
            out[k]["count"] += x["count"]
        else:
            out[k] = dict(x)
    return list(out.values())


def _null_patterns(frame: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """One row per pattern of nulls over `cols`, each column holding its least present value (or
    null), with the pattern's row count; sorted, so the frame is the same on every run."""
    flags = [f"__isnull_{i}" for i in range(len(cols))]
    return (
        frame.group_by([pl.col(c).is_null().alias(f) for c, f in zip(cols, flags)])
        .agg([pl.col(c).min() for c in cols] + [pl.col(_COUNT_COL).sum().cast(pl.Int64)])
        .sort(flags)
        .select(cols + [_COUNT_COL])
    )


def _ckey(spec: _SuiteSpec, gkey: tuple, exps: list[_Expectation], entries: dict) -> tuple:
    return (spec.name, "compact", gkey, tuple(e.index for e in exps), tuple(entries[e.index]["severity"] for e in exps))


def _row_value(frame: pl.DataFrame, cols: list[str], pos: int) -> Any:
    row = frame.row(pos, named=True)
    vals = [_jsonable(row[c]) for c in cols]
    return vals[0] if len(vals) == 1 else vals


def _unique_examples(compact: pl.DataFrame, cols: list[str], positions: list[int]) -> list[dict]:
    if not positions:
        return []
    rows = compact[positions].select(cols)
    counts = rows.group_by(cols).agg(pl.len().alias(_COUNT_COL))
    counts = counts.sort([_COUNT_COL] + cols, descending=[True] + [False] * len(cols), nulls_last=True).head(EXAMPLES)
    return [{"value": _row_value(counts, cols, i), "count": int(counts[_COUNT_COL][i])} for i in range(counts.height)]


# --------------------------------------------------------------------------------------------
# Messages


def _message(file: str, e: _Expectation, entry: dict, params: Mapping, input_columns: list[str]) -> str:
    cols = e.domain_columns
    if entry.get("status") == "error":
        return f"{file}: {e.type} on {', '.join(cols) or 'table'} could not be evaluated: {entry.get('error')}"
    template = e.meta.get("message")
    examples = entry.get("examples") or []
    values = ", ".join(_fmt_value(x["value"]) for x in examples)
    if template:
        fields = {
            "file": file,
            "column": cols[0] if cols else "",
            "columns": ", ".join(cols),
            "count": entry.get("unexpected_count", ""),
            "rows": entry.get("element_count", ""),
            "values": values,
            "value": _fmt_value(examples[0]["value"]) if examples else "",
            "value_num": _fmt_num(examples[0]["value"]) if examples else "",
            "observed": _fmt_value(entry.get("observed")),
        }
        for k, v in params.items():
            fields["$" + k] = _fmt_num(v) if isinstance(v, (int, float)) else v

        def sub(m: re.Match) -> str:
            return str(fields.get(m.group(1), m.group(0)))

        return f"{file}: " + re.sub(r"\{(\$?[A-Za-z0-9_]+)\}", sub, template)
    if e.type in ("expect_table_columns_to_match_set", "expect_column_to_exist", "expect_table_columns_to_match_ordered_list"):
        wanted = e.kwargs.get("column_list") or e.kwargs.get("column_set") or [e.kwargs.get("column")]
        wanted = _resolve(wanted, params)
        absent = [c for c in wanted if c not in input_columns]
        if absent:
            noun = "column" if len(absent) == 1 else "columns"
            verb = "is" if len(absent) == 1 else "are"
            return f"{file}: required {noun} {', '.join(repr(c) for c in absent)} {verb} missing"
        extra = [c for c in input_columns if c not in wanted]
        if extra and (e.type != "expect_table_columns_to_match_set" or e.kwargs.get("exact_match", True)):
            return f"{file}: unexpected column(s) {', '.join(repr(c) for c in extra)}"
        return f"{file}: columns are not in the expected order ({', '.join(wanted)})"
    what = e.description or f"{e.type} on {', '.join(cols) or 'table'}"
    if "unexpected_count" in entry:
        eg = f" (e.g. {values})" if values else ""
        return f"{file}: {what}: {entry['unexpected_count']} of {entry['element_count']} rows fail{eg}"
    obs = entry.get("observed")
    return f"{file}: {what}: observed {_fmt_value(obs)}"


# --------------------------------------------------------------------------------------------
# Frames for the cross-table suites (exact decimal aggregates built in Polars)


def _dec_sum_by(frame: pl.DataFrame, key: str, columns: Mapping[str, str], scale: int = 6) -> pl.DataFrame:
    aggs = []
    for out, col in columns.items():
        expr = _decimal_expr(frame, col, scale)
        aggs.append(expr.sum().alias(out))
    return frame.group_by(key).agg(aggs) if frame.height else pl.DataFrame(
        {key: [], **{o: [] for o in columns}}, schema={key: pl.String, **{o: pl.Decimal(38, scale) for o in columns}}
    )


def _dec_str(v: Any) -> str:
    if v is None:
        return "0"
    d = Decimal(str(v))
    if d == 0:
        return "0"
    t = format(d.normalize(), "f")
    return t


def payout_totals_frame(
    remittance: Any,
    balances: Any,
    summary_by_currency: Mapping[str, Mapping[str, Any]] | None,
) -> pl.DataFrame:
    """One row per payout currency: gross / withholding / net totals of remittance.csv, of
    partner_balances.csv (gross_paid, withholding, net_paid) and of summary.json, as exact decimal
    strings, for the ``payout_totals`` suite. ``summary_by_currency`` maps a payout currency to
    ``{"gross": ..., "withholding": ..., "net": ...}`` (strings or numbers); ``None`` means summary.json
    has no payout totals, which the suite reports as a mismatch wherever money was paid.
    """
    rem = _to_polars(remittance)
    bal = _to_polars(balances)
    r = _dec_sum_by(rem, "payout_currency", {"remittance_gross": "gross_amount", "remittance_withholding": "withholding_amount", "remittance_net": "net_amount"})
    b = _dec_sum_by(bal, "payout_currency", {"balances_gross": "gross_paid", "balances_withholding": "withholding", "balances_net": "net_paid"})
    totals: dict[str, dict[str, str]] = {}
    for row in r.iter_rows(named=True):
        totals.setdefault(row["payout_currency"], {}).update({k: _dec_str(v) for k, v in row.items() if k != "payout_currency"})
    for row in b.iter_rows(named=True):
        totals.setdefault(row["payout_currency"], {}).update({k: _dec_str(v) for k, v in row.items() if k != "payout_currency"})
    for cur, vals in (summary_by_currency or {}).items():
        t = totals.setdefault(cur, {})
        for k in ("gross", "withholding", "net"):
            t[f"summary_{k}"] = _dec_str(vals.get(k))
    cols = ["remittance_gross", "balances_gross", "summary_gross", "remittance_withholding", "balances_withholding",
            "summary_withholding", "remittance_net", "balances_net", "summary_net"]
    rows = sorted(totals)
    return pl.DataFrame(
        {"payout_currency": rows, **{c: [totals[cur].get(c, "0") for cur in rows] for c in cols}},
        schema={"payout_currency": pl.String, **{c: pl.String for c in cols}},
    )


def balance_chain_frame(balances: Any, previous_balances: Any | None) -> pl.DataFrame:
    """partner_id, opening_balance (this month), previous_closing_balance (last month, "0" when the
    partner was not listed), for the ``balance_chain`` suite. A partner that closed last month at a
    non-zero balance but is missing this month appears with opening_balance "0" (and fails)."""
    cur = _to_polars(balances).select(pl.col("partner_id").cast(pl.String), pl.col("opening_balance").cast(pl.String))
    if previous_balances is None:
        prev = pl.DataFrame({"partner_id": [], "previous_closing_balance": []}, schema={"partner_id": pl.String, "previous_closing_balance": pl.String})
    else:
        prev = _to_polars(previous_balances).select(
            pl.col("partner_id").cast(pl.String), pl.col("closing_balance").cast(pl.String).alias("previous_closing_balance")
        )
    out = cur.join(prev, on="partner_id", how="full", coalesce=True)
    return out.with_columns(
        pl.col("opening_balance").fill_null("0"), pl.col("previous_closing_balance").fill_null("0")
    ).sort("partner_id")


# --------------------------------------------------------------------------------------------
# GateReport


class GateReport:
    """Collects the results of several suites, decides fatal vs warning, writes the files."""

    def __init__(self, month: str | None = None):
        self.month = month
        self.suites: list[dict] = []
        self.problems: list[dict] = []  # fatal problems found outside GX (missing / unreadable files)

    # -- collecting
    def add(self, result: dict) -> dict:
        self.suites.append(result)
        return result

    def validate(self, suite_name: str, frame: Any, *, severity: str, runtime_params: Mapping | None = None, **kw) -> dict:
        return self.add(validate_frame(suite_name, frame, severity=severity, runtime_params=runtime_params, **kw))

    def file_missing(self, file: str) -> None:
        self.problems.append({"file": file, "kind": "missing_file", "severity": FATAL, "message": f"{file}: required file is missing"})

    def file_unreadable(self, file: str, reason: str) -> None:
        reason = " ".join(str(reason).split())
        self.problems.append({"file": file, "kind": "unreadable_file", "severity": FATAL, "message": f"{file}: unreadable: {reason}"})

    def check_quarantine(
        self,
        counts: Mapping[str, Mapping[str, int]],
        max_pct: float | None = None,
        *,
        key: str = QUARANTINE_LIMIT_KEY,
    ) -> list[dict]:
        """Fatal when a file's quarantined rows exceed ``max_pct`` percent of its rows read.

        ``counts`` maps a file name (``subscription_billing`` or ``subscription_billing.csv``) to
        ``{"read": n, "quarantined": q, ...}`` (the ``files`` block of summary.json).
        """
        limit = DEFAULT_MAX_QUARANTINE_PCT if max_pct is None else float(max_pct)
        out = []
        for name in sorted(counts):
            c = counts[name]
            read, quarantined = int(c.get("read", 0)), int(c.get("quarantined", 0))
            pct = 100.0 * quarantined / read if read else 0.0
            file = name if name.endswith(".csv") else f"{name}.csv"
            frame = pl.DataFrame(
                {"file": [file], "rows_read": [read], "rows_quarantined": [quarantined], "quarantine_pct": [pct]},
                schema={"file": pl.String, "rows_read": pl.Int64, "rows_quarantined": pl.Int64, "quarantine_pct": pl.Float64},
            )
            out.append(
                self.validate(
                    "quarantine_rate",
                    frame,
                    severity=FATAL,
                    runtime_params={"max_quarantine_pct": limit, "limit_key": key},
                    file=file,
                )
            )
        return out

    # -- deciding
    def fatal_messages(self) -> list[str]:
        msgs = [p["message"] for p in self.problems if p["severity"] == FATAL]
        schema, other = [], []
        for s in self.suites:
            for x in s["expectations"]:
                if x["status"] in ("failed", "error") and x["severity"] == FATAL:
                    (schema if x["type"] in _SCHEMA else other).append(x["message"])
        return msgs + schema + other

    def warning_messages(self) -> list[str]:
        out = []
        for s in self.suites:
            for x in s["expectations"]:
                if x["status"] in ("failed", "error", "skipped") and x["severity"] == WARNING:
                    out.append(x["message"])
        return out

    @property
    def fatal(self) -> bool:
        return bool(self.fatal_messages())

    def raise_if_fatal(self) -> None:
        msgs = self.fatal_messages()
        if msgs:
            raise GateFailed(msgs)

    # -- output
    def to_dict(self) -> dict:
        fatal, warn = self.fatal_messages(), self.warning_messages()
        n = sum(len(s["expectations"]) for s in self.suites)
        passed = sum(1 for s in self.suites for x in s["expectations"] if x["status"] == "passed")
        skipped = sum(1 for s in self.suites for x in s["expectations"] if x["status"] == "skipped")
        return {
            "month": self.month,
            "status": "failed" if fatal else ("warnings" if warn else "passed"),
            "success": not fatal,
            "fatal_messages": fatal,
            "warning_messages": warn,
            "problems": self.problems,
            "counts": {
                "suites": len(self.suites),
                "expectations": n,
                "passed": passed,
                "skipped": skipped,
                "failed_fatal": sum(1 for s in self.suites for x in s["expectations"] if x["status"] in ("failed", "error") and x["severity"] == FATAL),
                "failed_warning": sum(1 for s in self.suites for x in s["expectations"] if x["status"] in ("failed", "error") and x["severity"] == WARNING),
            },
            "great_expectations_version": _GX.version or None,
            "suites": self.suites,
        }

    def to_json(self) -> str:
        return json.dumps(_jsonable(self.to_dict()), sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    def to_html(self) -> str:
        return render_html(json.loads(self.to_json()))

    def write(self, directory: str | os.PathLike) -> list[Path]:
        """Write ``results.json`` and ``report.html`` into ``directory`` (each atomically)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        out = []
        for name, text in (("results.json", self.to_json()), ("report.html", self.to_html())):
            target = d / name
            tmp = d / f".{name}.tmp"
            with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            out.append(target)
        return out


# --------------------------------------------------------------------------------------------
# HTML report (self-contained: inline CSS, no scripts, no links)

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 12px}h2{font-size:17px;margin:28px 0 8px}
.banner{padding:14px 18px;border-radius:6px;font-size:17px;font-weight:600;margin:12px 0}
.banner ul{margin:8px 0 0 18px;padding:0;font-weight:400;font-size:14px}
.passed{background:#dff3e4;border:1px solid #6cbf84;color:#13502a}
.warnings{background:#fff4d6;border:1px solid #e0b648;color:#5c4300}
.failed{background:#fde2e1;border:1px solid #d9534f;color:#7a1411}
.counts{font-size:14px;color:#4a5663;margin:4px 0 16px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px;margin-bottom:8px}
th,td{border:1px solid #d5dbe1;padding:5px 7px;text-align:left;vertical-align:top}
th{background:#e9edf1}
td.st{font-weight:600;white-space:nowrap}
tr.ok td.st{color:#1e7a3c}tr.bad-fatal td.st{color:#b3261e}tr.bad-warning td.st{color:#8a6100}tr.skip td.st{color:#6b7785}
tr.bad-fatal{background:#fff5f5}tr.bad-warning{background:#fffbef}
code{font-family:SFMono-Regular,Consolas,monospace;font-size:12px;word-break:break-all}
.msg{color:#4a5663}
"""


def _e(v: Any) -> str:
    # Escaped, and "://" broken up so that no URL (even one inside the data) appears in the page source.
    return html.escape(str(v), quote=True).replace("://", ":&#47;&#47;")


def _compact_json(v: Any, limit: int = 300) -> str:
    s = json.dumps(v, sort_keys=True, ensure_ascii=False, default=str)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained HTML page for a GateReport dict (``GateReport.to_dict()``)."""
    status = report.get("status", "passed")
    month = report.get("month")
    title = "Validation report" + (f" — {month}" if month else "")
    heading = {
        "passed": "PASSED — every check passed",
        "warnings": "PASSED WITH WARNINGS — the run went on; rows were quarantined or reported",
        "failed": "FAILED — the run stopped before publishing",
    }[status]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<div class="banner {_e(status)}">{_e(heading)}',
    ]
    msgs = list(report.get("fatal_messages") or [])
    warn = list(report.get("warning_messages") or [])
    shown = (msgs + warn)[:50]
    if shown:
        out.append("<ul>" + "".join(f"<li>{_e(m)}</li>" for m in shown) + "</ul>")
        if len(msgs) + len(warn) > len(shown):
            out.append(f"<div>… and {len(msgs) + len(warn) - len(shown)} more</div>")
    out.append("</div>")
    c = report.get("counts") or {}
    out.append(
        f'<div class="counts">{_e(c.get("suites", 0))} suites, {_e(c.get("expectations", 0))} expectations: '
        f'{_e(c.get("passed", 0))} passed, {_e(c.get("failed_fatal", 0))} fatal, '
        f'{_e(c.get("failed_warning", 0))} warnings, {_e(c.get("skipped", 0))} not evaluated.'
        + (f' Great Expectations {_e(report["great_expectations_version"])}.' if report.get("great_expectations_version") else "")
        + "</div>"
    )
    problems = report.get("problems") or []
    if problems:
        out.append("<h2>Files</h2><table><tr><th>Status</th><th>Severity</th><th>File</th><th>Problem</th></tr>")
        for p in problems:
            out.append(
                f'<tr class="bad-{_e(p["severity"])}"><td class="st">FAILED</td><td>{_e(p["severity"])}</td>'
                f'<td>{_e(p["file"])}</td><td>{_e(p["message"])}</td></tr>'
            )
        out.append("</table>")
    for s in report.get("suites") or []:
        ok = "passed" if s.get("success") else ("failed" if s.get("fatal") else "warnings")
        out.append(
            f'<h2>{_e(s.get("file"))} <span class="msg">— suite {_e(s.get("suite"))}, {_e(s.get("rows"))} rows, {_e(ok)}</span></h2>'
        )
        params = s.get("parameters") or {}
        if params:
            out.append('<div class="msg">Parameters: <code>' + _e(_compact_json(params, 600)) + "</code></div>")
        out.append(
            "<table><tr><th>Status</th><th>Severity</th><th>Expectation</th><th>Arguments</th>"
            "<th>Observed</th><th>Unexpected examples</th></tr>"
        )
        for x in s.get("expectations") or []:
            st = x.get("status")
            cls = {"passed": "ok", "skipped": "skip"}.get(st, f"bad-{x.get('severity')}")
            label = {"passed": "PASSED", "skipped": "NOT RUN", "error": "ERROR"}.get(st, "FAILED")
            kwargs = x.get("kwargs") or {}
            exp = _e(x.get("type"))
            if x.get("description"):
                exp += f'<div class="msg">{_e(x["description"])}</div>'
            if "unexpected_count" in x:
                observed = f'{_e(x["unexpected_count"])} of {_e(x.get("element_count"))} rows unexpected'
                if x.get("missing_count"):
                    observed += f', {_e(x["missing_count"])} null'
            elif "observed" in x:
                observed = "<code>" + _e(_compact_json(x["observed"])) + "</code>"
            else:
                observed = ""
            if x.get("message") and st != "passed":
                observed += f'<div class="msg">{_e(x["message"])}</div>'
            examples = x.get("examples") or []
            ex = "<br>".join(f"<code>{_e(_compact_json(v['value'], 120))}</code> × {_e(v['count'])}" for v in examples)
            out.append(
                f'<tr class="{cls}"><td class="st">{label}</td><td>{_e(x.get("severity"))}</td><td>{exp}</td>'
                f"<td><code>{_e(_compact_json(kwargs))}</code></td><td>{observed}</td><td>{ex}</td></tr>"
            )
        out.append("</table>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"
