"""The validation report of a month: ``results.json`` (for machines) and ``report.html`` (for people).

Both are pure functions of the :class:`~pipelines.validation.checks.ValidationReport`: no run ids,
timestamps or GX batch ids, so the same inputs give the same bytes. The page is self-contained (inline
CSS, no script, no link out) and every value in it is HTML-escaped, with ``://`` broken up so that its
source holds no URL.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from pipelines.validation.checks import ValidationReport, example_text

TEMPLATE = resources.files("pipelines.validation") / "templates" / "report.html.j2"
STATUS_TEXT = {
    "passed": "Passed: every check passed.",
    "warnings": "Passed with warnings: nothing stops the run, but look at the warnings below.",
    "failed": "Failed: a critical check failed; the run stops before anything is published.",
}


def results_json(report: ValidationReport) -> str:
    return json.dumps(report.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _finalize(value):
    """Every ``{{ value }}`` of the page: escaped, and ``://`` broken up (the page holds no URL)."""
    from markupsafe import Markup, escape

    if value is None:
        return ""
    return Markup(str(escape(str(value))).replace("://", ":&#47;&#47;"))


def _observed(e: dict) -> str:
    if e["error"]:
        return f"not checked: {e['error']}"
    if e["element_count"] is None:
        observed = e["observed"]
        if isinstance(observed, list):  # the columns
            return f"{len(observed)} columns as expected" if e["success"] else ", ".join(map(str, observed))
        return str(observed)
    null, bad = e["missing_count"], e["unexpected_count"]
    rows = e["element_count"] - null
    if rows == 0:
        text = "no rows to check"
    elif bad:
        text = f"{bad} of {rows} rows fail"
    else:
        text = "the 1 row passes" if rows == 1 else f"all {rows} rows pass"
    return text + (f" ({null} null, not checked)" if null else "")


def render_html(report: ValidationReport) -> str:
    from jinja2 import Environment, StrictUndefined

    env = Environment(autoescape=True, finalize=_finalize, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["observed"] = _observed
    env.filters["example"] = example_text
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    suites = [{"result": r, "fatal": len(r.failed("critical")), "warnings": len(r.failed("warning"))}
              for r in report.results]
    return template.render(month=report.month, status=report.status(), status_text=STATUS_TEXT[report.status()],
                           fatal=report.fatal_messages(), warnings=report.warning_messages(), suites=suites)


def _write(path: Path, text: str) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(report: ValidationReport, folder: Path) -> None:
    """Write ``results.json`` (sorted keys, deterministic) and ``report.html`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "results.json", results_json(report))
    _write(folder / "report.html", render_html(report))
