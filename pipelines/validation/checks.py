"""Dataset-level checks on Great Expectations 1.x: GX suites run on small frames (one row per input
file, currency or partner; never the billing lines) and a report of what passed and failed.

The suites are GX ExpectationSuite JSON files under ``suites/`` (one per frame, named like the frame's
key). Each expectation carries GX's own ``severity``: ``"critical"`` failures stop the run
(:func:`raise_if_fatal`), ``"warning"`` ones are reported. Thresholds and counts come from ``params``
through GX's ``{"$PARAMETER": name}``. Suite ``meta`` says what the messages call the frame (``file``),
which columns identify a row in examples (``row_id``) and which columns the caller must build
(``columns``; see docs/validation.md).

GX is imported on first use (it takes seconds), with one ephemeral context per process; nothing of it
is imported when this module is.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import types
import warnings
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import polars as pl

FATAL = "critical"
WARNING = "warning"
EXAMPLES = 5  # unexpected examples kept per expectation

SUITES = resources.files("pipelines.validation") / "suites"


class GateFailed(RuntimeError):
    """A "critical" expectation failed. ``str()`` is one line: the first message, then how many more."""

    def __init__(self, messages: list[str] | str):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        first = self.messages[0] if self.messages else "validation failed"
        more = len(self.messages) - 1
        tail = f" (and {more} more fatal problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(first + tail)


class SuiteError(ValueError):
    """The caller's mistake: an unknown suite, a missing $PARAMETER or a missing derived column."""


@dataclass(frozen=True)
class SuiteResult:
    """One suite run on one frame. ``expectations`` holds one dict per expectation, in suite order:
    type, kwargs (as declared), severity, description, check (in words), success, error, observed,
    element/unexpected/missing counts, examples (up to 5) and message (one line; "" when it passed)."""

    suite: str
    rows: int
    success: bool
    expectations: list[dict]
    file: str = ""
    description: str = ""
    parameters: dict = field(default_factory=dict)

    def failed(self, severity: str) -> list[dict]:
        return [e for e in self.expectations if not e["success"] and e["severity"] == severity]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SuiteResult":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class ValidationReport:
    month: str
    results: list[SuiteResult] = field(default_factory=list)

    def _messages(self, severity: str) -> list[str]:
        return [e["message"] for r in self.results for e in r.failed(severity)]

    def fatal_messages(self) -> list[str]:
        return self._messages(FATAL)

    def warning_messages(self) -> list[str]:
        return self._messages(WARNING)

    def status(self) -> str:
        return "failed" if self.fatal_messages() else "warnings" if self.warning_messages() else "passed"

    def to_dict(self) -> dict:
        return {"month": self.month, "status": self.status(), "fatal_messages": self.fatal_messages(),
                "warning_messages": self.warning_messages(), "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, d: dict) -> "ValidationReport":
        return cls(d["month"], [SuiteResult.from_dict(r) for r in d["results"]])

    def merge(self, other: "ValidationReport") -> "ValidationReport":
        """This report's results then the other's; a suite in both keeps the other's (later) result."""
        if other.month != self.month:
            raise ValueError(f"cannot merge reports of {self.month} and {other.month}")
        names = {r.suite for r in other.results}
        return ValidationReport(self.month, [r for r in self.results if r.suite not in names] + list(other.results))


# ---------------------------------------------------------------------------------------------
# Suites


def suite_names() -> list[str]:
    return sorted(p.name[:-5] for p in SUITES.iterdir() if p.name.endswith(".json"))


@lru_cache(maxsize=None)
def _suite_text(name: str) -> str:
    if name not in suite_names():
        raise SuiteError(f"no validation suite {name!r} (known: {', '.join(suite_names())})")
    return (SUITES / f"{name}.json").read_text(encoding="utf-8")


def load_suite(name: str) -> dict:
    """The suite's JSON (GX's ExpectationSuite format: ``gx.ExpectationSuite(**load_suite(name))``)."""
    return json.loads(_suite_text(name))


def _parameter_names(obj: Any) -> set[str]:
    if isinstance(obj, dict):
        if "$PARAMETER" in obj:
            return {obj["$PARAMETER"]}
        return set().union(*map(_parameter_names, obj.values()))
    if isinstance(obj, list):
        return set().union(*map(_parameter_names, obj))
    return set()


def _gx_parameters(params: dict) -> dict:
    out = dict(params)
    if "month" in params:  # GX's value_set must be a list: `billing_month = $month` is `in [month]`
        out["month_values"] = [params["month"]]
    return out


def _columns(kwargs: dict) -> list[str]:
    """The columns an expectation checks, in their declared order."""
    if "column" in kwargs:
        return [kwargs["column"]]
    if "column_A" in kwargs:
        return [kwargs["column_A"], kwargs["column_B"]]
    if "column_list" in kwargs:
        return list(kwargs["column_list"])
    return []


_TABLE = {"expect_table_columns_to_match_ordered_list", "expect_table_row_count_to_equal"}


# ---------------------------------------------------------------------------------------------
# GX: one ephemeral context per process, one Checkpoint per (suite, row id columns)


class _GX:
    lock = threading.RLock()  # run_suite holds it while _checkpoint builds the context
    gx: Any = None
    context: Any = None
    batch_definition: Any = None
    checkpoints: dict = {}


def prewarm() -> None:
    """Build the GX context in a background thread (importing GX takes seconds): the engine calls
    this before DuckDB's long steps, so the gates find it ready."""
    if _GX.gx is None and not any(t.name == "gx-prewarm" for t in threading.enumerate()):
        threading.Thread(target=_context, name="gx-prewarm", daemon=True).start()


def _context() -> Any:
    with _GX.lock:
        return _build_context()


def _build_context() -> Any:
    if _GX.gx is None:
        os.environ["GX_ANALYTICS_ENABLED"] = "False"  # read when GX is imported
        logging.getLogger("great_expectations").setLevel(logging.WARNING)  # GX logs its set-up at INFO
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gx = _import_gx()
            from great_expectations.data_context.types.base import ProgressBarsConfig

            # GX sets its loggers' levels when imported, and logs its set-up at INFO: the CLI prints one line
            for name in [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations")]:
                logging.getLogger(name).setLevel(logging.WARNING)
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            asset = context.data_sources.add_pandas("payouts").add_dataframe_asset("frame")
            _GX.batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
            _GX.context = context
        _GX.gx = gx
    return _GX.context


# GX imports SQLAlchemy for its SQL data sources, and scipy.stats and Altair for expectations this
# project does not use (distribution tests, KL divergence): about 40 % of its import's CPU, which the
# month's DuckDB steps lose while the import runs beside them. SQLAlchemy is optional to GX, so it
# is hidden while GX imports unless something has loaded it already (an Airflow worker has); the
# other two load on first use. While hidden, an import of SQLAlchemy in another thread would fail:
# nothing that runs beside the import (ingest) imports it.
HIDDEN_FROM_GX = ("sqlalchemy",)
LOADED_ON_FIRST_USE = ("scipy.stats", "altair")


class _OnFirstUse(types.ModuleType):
    """Stands in for a module until an attribute is read, then imports it and becomes a copy of it.
    (importlib's LazyLoader does not serve: ``import altair`` reads ``__spec__``, which loads it.)"""

    def __getattr__(self, attr: str) -> Any:
        parent, _, child = self.__name__.rpartition(".")
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
            if parent and getattr(sys.modules.get(parent), child, None) is self:
                delattr(sys.modules[parent], child)
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


def _import_gx() -> Any:
    for name in LOADED_ON_FIRST_USE:
        spec = None if name in sys.modules else importlib.util.find_spec(name)
        if spec is not None:
            stand_in = _OnFirstUse(name)
            stand_in.__spec__ = spec
            sys.modules[name] = stand_in
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, stand_in)
    hidden = [name for name in HIDDEN_FROM_GX if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))  # None: "import sqlalchemy" raises ImportError
    try:
        import great_expectations
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
    return great_expectations


def _checkpoint(name: str, row_id: tuple[str, ...]) -> tuple[Any, dict[str, int]]:
    """The suite's Checkpoint (one ValidationDefinition) and its expectations' GX ids -> position."""
    key = (name, row_id)
    if key not in _GX.checkpoints:
        context, gx = _context(), _GX.gx
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = load_suite(name)
            spec["name"] = f"{name}.{len(_GX.checkpoints)}"
            suite = context.suites.add(gx.ExpectationSuite(**spec))
            vd = context.validation_definitions.add(
                gx.ValidationDefinition(name=spec["name"], data=_GX.batch_definition, suite=suite))
            result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": list(row_id)}
            cp = context.checkpoints.add(gx.Checkpoint(
                name=spec["name"], validation_definitions=[vd], result_format=result_format))
        _GX.checkpoints[key] = (cp, {e.id: i for i, e in enumerate(suite.expectations)})
    return _GX.checkpoints[key]


def _to_pandas(frame: pl.DataFrame):
    """Python objects in object columns: GX compares exact ints, strings, bools and None (no floats)."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series(frame.get_column(c).to_list(), dtype=object) for c in frame.columns})


# ---------------------------------------------------------------------------------------------
# Running


def run_suite(name: str, frame: pl.DataFrame, params: dict | None = None) -> SuiteResult:
    """Run suite ``suites/<name>.json`` on ``frame`` (one GX Checkpoint run).

    Raises SuiteError when the suite is unknown, a ``$PARAMETER`` it names is missing from ``params``
    (or None), or a column the caller must build (the suite's ``meta.columns``) is missing. A column of
    a file as written that is missing is not an error here: the suite's column check fails instead.
    """
    spec = load_suite(name)
    meta = spec.get("meta", {})
    params = dict(params or {})
    gx_params = _gx_parameters(params)
    needed = _parameter_names(spec["expectations"])
    missing = sorted({"month" if p == "month_values" else p for p in needed if gx_params.get(p) is None})
    if missing:
        raise SuiteError(f"suite {name!r} needs parameter(s) {', '.join(missing)}: pass them in params")
    absent = [c for c in meta.get("columns", {}) if c not in frame.columns]
    if absent:
        raise SuiteError(f"suite {name!r}: the frame lacks column(s) {', '.join(absent)} (see docs/validation.md)")
    row_id = tuple(c for c in meta.get("row_id", []) if c in frame.columns)

    with _GX.lock:
        checkpoint, positions = _checkpoint(name, row_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = checkpoint.run(batch_parameters={"dataframe": _to_pandas(frame)},
                                    expectation_parameters=gx_params)
    (suite_result,) = result.run_results.values()
    by_position = {positions[r.expectation_config.id]: r for r in suite_result.results}

    file = meta.get("file", name)
    used = {p: _jsonable(params[p]) for p in sorted(needed - {"month_values"})}
    if "month_values" in needed:
        used["month"] = params["month"]
    entries = [_entry(file, declared, by_position.get(i), gx_params, list(row_id), frame.columns)
               for i, declared in enumerate(spec["expectations"])]
    return SuiteResult(suite=name, rows=frame.height, success=all(e["success"] for e in entries),
                       expectations=entries, file=file, description=meta.get("description", ""),
                       parameters=dict(sorted(used.items())))


def validate(month: str, frames: dict[str, pl.DataFrame], params: dict) -> ValidationReport:
    """Run the suite named by each key of ``frames`` on its frame, in the dict's order.

    Each suite has its own GX Checkpoint (with one ValidationDefinition), built once per process:
    ``Checkpoint.run`` hands the same ``batch_parameters`` to every ValidationDefinition it holds, and a
    pandas dataframe asset takes exactly one of them, ``dataframe``; so one Checkpoint can validate
    one frame, and frames of different shapes need one Checkpoint each. ``params["month"]`` is set to
    ``month`` (a different value is an error).
    """
    if params.get("month", month) != month:
        raise SuiteError(f"params month {params['month']!r} is not the month validated, {month!r}")
    params = {**params, "month": month}
    unknown = [k for k in frames if k not in suite_names()]
    if unknown:
        raise SuiteError(f"no validation suite for frame(s) {', '.join(unknown)} (known: {', '.join(suite_names())})")
    return ValidationReport(month, [run_suite(k, f, params) for k, f in frames.items()])


def raise_if_fatal(report: ValidationReport) -> None:
    """GateFailed when any "critical" expectation failed."""
    messages = report.fatal_messages()
    if messages:
        raise GateFailed(messages)


# ---------------------------------------------------------------------------------------------
# Results in words


def _entry(file: str, declared: dict, r: Any, params: dict, row_id: list[str], columns: list[str]) -> dict:
    kwargs = declared["kwargs"]
    cols = [] if declared["type"] in _TABLE else _columns(kwargs)
    # a suite may say what an expectation checks in finance's words (meta.check, {parameter}s filled in)
    worded = declared.get("meta", {}).get("check")
    check = worded.format(**{k: _fmt(v) for k, v in params.items()}) if worded else \
        check_text(declared["type"], kwargs, params)
    entry = {"type": declared["type"], "kwargs": kwargs, "severity": declared.get("severity", FATAL),
             "description": declared.get("meta", {}).get("description", ""), "check": check,
             "success": False, "error": None, "observed": None, "element_count": None,
             "unexpected_count": None, "missing_count": None, "examples": [], "message": ""}
    error = _error(r)
    if error:
        cond = kwargs.get("row_condition")
        gone = [c for c in cols + _condition_columns(cond) if c not in columns]
        entry["error"] = f"column {gone[0]} is missing" if gone else error
        entry["message"] = f"{file}: {check}: not checked: {entry['error']}"
        return entry
    res = r.result or {}
    entry["success"] = bool(r.success)
    if "observed_value" in res:
        entry["observed"] = _jsonable(res["observed_value"])
    if "element_count" in res:
        entry["element_count"] = int(res["element_count"])
        entry["unexpected_count"] = int(res.get("unexpected_count") or 0)
        entry["missing_count"] = int(res.get("missing_count") or 0)
        rows = res.get("unexpected_index_list") or []
        for i, value in enumerate((res.get("unexpected_list") or [])[:EXAMPLES]):
            row = rows[i] if i < len(rows) and isinstance(rows[i], dict) else {}
            if isinstance(value, dict):  # a multicolumn expectation: the row's checked values
                value = [value.get(c) for c in cols]
            entry["examples"].append({"row": {c: _jsonable(row.get(c)) for c in row_id if c not in cols},
                                      "value": _jsonable(value)})
    if not entry["success"]:
        entry["message"] = _message(file, declared["type"], kwargs, check, entry, row_id, params)
    return entry


def _error(r: Any) -> str | None:
    if r is None:
        return "no result from Great Expectations"
    info = r.exception_info or {}
    found = [info] + [v for v in info.values() if isinstance(v, dict)]
    for i in found:
        if i.get("raised_exception"):
            return _one_line(str(i.get("exception_message") or "error"))
    return None


def _message(file: str, type_: str, kwargs: dict, check: str, entry: dict, row_id: list[str], params: dict) -> str:
    if type_ == "expect_table_columns_to_match_ordered_list":
        return f"{file}: {check}: {_column_difference(kwargs['column_list'], entry['observed'] or [])}"
    if entry["element_count"] is None:
        return f"{file}: {check}: observed {_fmt(entry['observed'])}"
    checked = entry["element_count"] - entry["missing_count"]  # nulls are not checked
    text = f"{file}: {check}: {entry['unexpected_count']} of {checked} rows fail"
    if entry["examples"]:
        short = "column_A" in kwargs and kwargs["column_A"] in row_id
        text += f" (e.g. {example_text(entry['examples'][0], short=short)})"
    return text


def example_text(example: dict, short: bool = False) -> str:
    """``P3: 500 vs 700``: the row's id values (when not checked themselves), then the value(s).
    A boolean flag shows the row only; ``short`` keeps only the first of a pair."""
    ids = " ".join(_fmt(v) for v in example.get("row", {}).values())
    value = example.get("value")
    if isinstance(value, list):
        shown = _fmt(value[0]) if short else (" vs " if len(value) == 2 else " / ").join(map(_fmt, value))
    else:
        shown = "" if isinstance(value, bool) and ids else _fmt(value)
    return ": ".join(p for p in (ids, shown) if p)


def _column_difference(expected: list[str], observed: list[str]) -> str:
    missing = [c for c in expected if c not in observed]
    extra = [c for c in observed if c not in expected]
    if missing:
        return f"column {missing[0]} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    if extra:
        return f"unexpected column {_fmt(extra[0])}"
    for i, (want, got) in enumerate(zip(expected, observed), start=1):
        if want != got:
            return f"column {i} is {_fmt(got)}, expected {want}"
    return "columns differ"


def _value(v: Any, params: dict) -> str:
    if isinstance(v, dict) and "$PARAMETER" in v:
        name = v["$PARAMETER"]
        return f"{name} ({_fmt(params.get(name))})"
    return _fmt(v)


def check_text(type_: str, kwargs: dict, params: dict) -> str:
    """What an expectation checks, in a few words: ``quarantine_bp <= max_quarantine_bp (500)``."""
    col = kwargs.get("column")
    if type_ == "expect_column_values_to_be_between":
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        lo_op = "<" if kwargs.get("strict_min") else "<="
        hi_op = "<" if kwargs.get("strict_max") else "<="
        if lo is not None and hi is not None:
            text = f"{_value(lo, params)} {lo_op} {col} {hi_op} {_value(hi, params)}"
        elif hi is not None:
            text = f"{col} {hi_op} {_value(hi, params)}"
        else:
            text = f"{col} {'>' if kwargs.get('strict_min') else '>='} {_value(lo, params)}"
    elif type_ == "expect_column_values_to_be_in_set":
        values = kwargs["value_set"]
        if isinstance(values, dict):
            values = params.get(values["$PARAMETER"]) or []
        if len(values) == 1:
            text = f"{col} = {_fmt(values[0])}"
        elif len(values) <= 4:
            text = f"{col} in {{{', '.join(map(_fmt, values))}}}"
        else:
            text = f"{col} in the {len(values)} accepted values"
    elif type_ == "expect_column_pair_values_to_be_equal":
        text = f"{kwargs['column_A']} = {kwargs['column_B']}"
    elif type_ == "expect_multicolumn_values_to_be_equal":
        text = " = ".join(kwargs["column_list"])
    elif type_ == "expect_column_values_to_be_unique":
        text = f"{col} unique"
    elif type_ == "expect_column_value_lengths_to_be_between":
        text = f"length of {col} <= {_value(kwargs['max_value'], params)}"
    elif type_ == "expect_table_row_count_to_equal":
        text = f"row count = {_value(kwargs['value'], params)}"
    elif type_ == "expect_table_columns_to_match_ordered_list":
        text = "columns in the expected order"
    else:
        text = type_.removeprefix("expect_").replace("_", " ") + (f" ({col})" if col else "")
    cond = kwargs.get("row_condition")
    return f"{text} where {_condition_text(cond)}" if cond else text


def _condition_text(c: dict) -> str:
    kind = c.get("type")
    if kind == "nullity":
        return f"{c['column']['name']} is {'null' if c['is_null'] else 'not null'}"
    if kind == "comparison":
        op = {"==": "="}.get(c["operator"], c["operator"])
        return f"{c['column']['name']} {op} {_fmt(c['parameter'])}"
    if kind in ("and", "or"):
        return f" {kind} ".join(_condition_text(x) for x in c["conditions"])
    return _fmt(c)


def _condition_columns(c: Any) -> list[str]:
    if not isinstance(c, dict):
        return []
    if "column" in c:
        return [c["column"]["name"]]
    return [n for x in c.get("conditions", []) for n in _condition_columns(x)]


# Anything that looks like a bank account (an IBAN, possibly in groups of 4, or 8+ digits in a row)
# keeps its last 4 characters only, wherever a value from a frame is shown.
# (A decimal number is not an account: digits right after or before "." or "," and a digit are left.)
_ACCOUNT = re.compile(r"(?<![A-Za-z0-9])(?<![0-9][.,])"
                      r"(?:[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?|[0-9]{8,})"
                      r"(?![A-Za-z0-9])(?![.,][0-9])")


def mask_accounts(text: str) -> str:
    return _ACCOUNT.sub(lambda m: "****" + m.group(0).replace(" ", "")[-4:], text)


def _jsonable(v: Any) -> Any:
    """A JSON value for a value from GX or a frame (strings masked); numpy scalars become Python ones."""
    if v is None or isinstance(v, (bool, int)):
        return v
    if isinstance(v, str):
        return mask_accounts(v)
    if isinstance(v, float):
        return None if v != v else v
    if isinstance(v, (Decimal, date, datetime)):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item"):  # numpy scalar
        return _jsonable(v.item())
    return mask_accounts(str(v))


def _one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


def _fmt(v: Any, limit: int = 80) -> str:
    """A value as text in a message: one line, masked, at most ``limit`` characters."""
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif v is None:
        text = "null"
    elif isinstance(v, (list, tuple)):
        text = "[" + ", ".join(_fmt(x, limit) for x in v) + "]"
    else:
        text = str(_jsonable(v))  # strings masked, numbers as they are
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
