"""The step API that both `payouts run` and the Airflow DAG call.

Every step takes the same three arguments (data root, output root, billing month as ``YYYY-MM``),
is idempotent, keeps its state under ``<out>/.staging/<month>/``, and returns a small JSON-able dict
(safe for XCom). ``run_month`` chains them. A step that fails raises ``PayoutError`` (one-line
message) and leaves the published outputs and the ledger untouched.

    prepare -> ingest -> validate_inputs -> compute -> validate_results -> publish
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import duckdb

from pipelines.rules import run as rules
from pipelines.ingest import load
from pipelines.close import actions, audit, states
from pipelines.close.states import CloseRefused
from pipelines.ledger import outroot
from pipelines.ledger import store as ledger
from pipelines.publish import outputs
from pipelines.rules import relations
from pipelines.validation import gates
from pipelines.core.months import BillingMonth, BillingMonthError
from pipelines.core.program import Program, ProgramError, load_program
from pipelines.ingest.files import ALL_INPUTS, PROGRAM_RELPATH

log = logging.getLogger(__name__)

LEDGER_BASE = "ledger_base.json"
LEDGER_DELTA = "ledger_delta"
INPUTS = "inputs.json"  # sha256 and size of every input file, as ingest read them (for the manifest)
BANK_DETAILS = "bank_details.json"  # sha256 of each paid partner's bank details (for the manifest)


class PayoutError(RuntimeError):
    """The run was refused or failed; the message is one line, for standard error."""


def _is_month(month: str) -> bool:
    try:
        BillingMonth.parse(month)
    except BillingMonthError:
        return False
    return True


def _month(month: str) -> str:
    if not isinstance(month, str) or not _is_month(month):
        raise PayoutError(f"billing month {month!r} is not YYYY-MM")
    return month


staging_dir = outroot.staging_dir


def _program(data_dir: Path) -> Program:
    try:
        return load_program(data_dir / PROGRAM_RELPATH)
    except ProgramError as exc:
        raise PayoutError(str(exc)) from None


DEFAULT_MEMORY_LIMIT = "2GB"


def duckdb_settings() -> dict:
    """DuckDB limits: PAYOUTS_MEMORY_LIMIT (default 2GB; past it DuckDB spills to the staging
    folder's spill/ directory, so a month larger than memory still runs), PAYOUTS_THREADS."""
    out = {"preserve_insertion_order": True,
           "memory_limit": os.environ.get("PAYOUTS_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT}
    if os.environ.get("PAYOUTS_THREADS"):
        out["threads"] = int(os.environ["PAYOUTS_THREADS"])
    return out


@contextmanager
def _work_db(out_dir: Path, month: str, *, attach_ledger: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    stage = staging_dir(out_dir, month)
    spill = stage / "spill"
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(stage / "work.duckdb"), config=duckdb_settings())
    try:
        con.execute("set temp_directory = $d", {"d": str(spill)})
        con.execute("set enable_progress_bar = false")  # log lines, not a terminal progress bar
        # The work database keeps DuckDB's default compression, FSST for strings included: the
        # typed export takes longer to write, but the compute step, which reads it back through a
        # buffer pool shared with its own 10M-row tables, more than makes up for it
        # (docs/performance.md). It is scratch (deleted at publish) and never synced to disk: a
        # machine that dies mid-run can lose only this file (DuckDB's block checksums then fail the
        # next step), and a rerun of the month starts over from prepare, which deletes it.
        con.execute("set fsync_mode = 'none'")
        relations.install_macros(con)
        if attach_ledger:
            ledger.attach_read_only(con, out_dir)
        yield con
    finally:
        con.close()


def _timed(step: str):
    """Wrap an engine step: the output root's lock (re-entrant), recovery of an unfinished publish or
    transition and removal of dead staging when this call took the lock, the run's ownership of
    the staging folder (`run`: who prepared it), one-line errors, the audit log's `run` line for a
    refusal (or, at publish, for the month published), and the step's time."""
    def wrap(fn):
        def inner(data_dir, out_dir, month, *a, run: str | None = None, **kw):
            t0 = time.perf_counter()
            out_dir = Path(out_dir)
            try:
                try:
                    month = _month(month)
                    with command(out_dir, f"payouts {step} --month {month}"):
                        if step != "prepare":
                            outroot.check_owner(out_dir, month, run)
                        result = fn(Path(data_dir), out_dir, month, *a, run=run, **kw)
                except PayoutError:
                    raise
                except (ProgramError, load.MissingInput, ledger.ChainError, gates.GateFailed, CloseRefused,
                        outroot.OutRootBusy, outroot.StagingTaken) as exc:
                    raise PayoutError(str(exc)) from None
            except BaseException as exc:
                if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    reason = str(exc) if isinstance(exc, PayoutError) else f"{type(exc).__name__}: {exc}"
                    audit.append(out_dir, _actor(run), "run", month if isinstance(month, str) else None,
                                 "refused", f"{step}: {reason.splitlines()[0] if reason else ''}")
                raise
            result = dict(result or {})
            result["seconds"] = round(time.perf_counter() - t0, 3)
            log.info("%s %s: %s", step, month, result)
            return result
        inner.__name__ = fn.__name__
        inner.__doc__ = fn.__doc__
        return inner
    return wrap


def _actor(run: str | None) -> str:
    """Who a run line names: the Airflow run, or the operating-system user."""
    return run if run and run.startswith("airflow:") else audit.os_user()


@contextmanager
def command(out_dir: Path, what: str) -> Iterator[None]:
    """Hold the output root for one command (`what` is how a waiting command names it): the lock,
    then, when this call took it, `open_out_root`."""
    with outroot.exclusive(out_dir, what) as took:
        if took:
            open_out_root(out_dir)
        yield


def open_out_root(out_dir: Path) -> None:
    """What every command does first, holding the lock: finish a publish whose ledger commit went
    through but whose folder was not put in place (a crash between the two), finish or drop a
    month-close transition a killed command left, then remove staging that no live run can use."""
    finished = states.recover(out_dir)
    if finished:
        log.warning("finished the interrupted %s", finished)
    latest, sha = ledger.committed(out_dir)
    if latest is not None and sha is not None and outputs.manifest_sha256(out_dir / latest) != sha:
        staged = staging_dir(out_dir, latest) / "month"
        if outputs.manifest_sha256(staged) == sha:
            log.warning("finishing the publish of %s (its ledger update committed, its folder was not moved)", latest)
            _swap_in(out_dir, latest, staged)
            outroot.remove_staging(out_dir, latest)
        # otherwise the folder is missing or changed: running the next month refuses (check_chain)
    if latest is None:
        keep = {p.name for p in (out_dir / outroot.STAGING).glob("*")}
    else:
        keep = {latest, ledger.next_month(latest)}
    outroot.clean_stale_staging(out_dir, keep)


def _swap_in(out_dir: Path, month: str, staged: Path) -> None:
    """Move a staged month folder into place, replacing the published one (two renames; a crash
    between them is finished by `open_out_root`)."""
    target = out_dir / month
    trash = staging_dir(out_dir, month) / "replaced"
    if trash.exists():
        shutil.rmtree(trash)
    if target.exists():
        os.replace(target, trash)
    os.replace(staged, target)
    shutil.rmtree(trash, ignore_errors=True)


def exports_ready(data_dir: str | Path, month: str) -> bool:
    """The month's required export files are present (what the DAG's sensor waits for)."""
    return all(f.path(Path(data_dir), month).exists() for f in ALL_INPUTS if f.required)


@_timed("prepare")
def prepare(data_dir: Path, out_dir: Path, month: str, run: str | None = None) -> dict:
    """Check the program file, the required files and columns, and the month chain; claim a fresh
    staging folder for this run (`run` names it: the Airflow run, or `payouts run`'s own id; steps
    called one by one without a run share the owner `steps`)."""
    states.check_can_run(out_dir, month)
    ledger.check_chain(out_dir, month)
    program = _program(data_dir)
    load.check_presence(data_dir, month)
    stage = outroot.claim_staging(out_dir, month, run or "steps")
    return {"month": month, "program": program.program.name, "staging": str(stage)}


def cli_run_id() -> str:
    """`payouts run`'s owner name: it holds the lock from start to end, so when another command holds
    the lock a staging folder so named belongs to a dead run (outroot.clean_stale_staging)."""
    return f"cli:{uuid.uuid4().hex[:12]}"


@_timed("ingest")
def ingest(data_dir: Path, out_dir: Path, month: str, run: str | None = None) -> dict:
    """Read every input file, type-check each row, quarantine what fails; stage the usable rows; run
    the input expectation suites on the rows as read (the gate step decides on their results)."""
    program = _program(data_dir)
    load.check_presence(data_dir, month)
    stage = staging_dir(out_dir, month)
    db = stage / "work.duckdb"
    if db.exists():
        db.unlink()  # idempotent: a retried ingest starts over
    labels = {f.key: f.label(month) for f in ALL_INPUTS}
    params = rules.month_params(program, month, labels)
    with _work_db(out_dir, month, attach_ledger=False) as con:
        load.reference_lists(con, program)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="input-hash") as pool:
            hashing = pool.submit(_input_digests, data_dir, month)
            # GX imports in a background thread while DuckDB reads the exports. Not earlier: the
            # reference files' many small queries, each waiting for the GIL the import holds,
            # took 0.7 s beside it against 0.13 s alone (docs/performance.md)
            read = load.ingest_all(con, data_dir, month, stage, params, before_exports=_prewarm_gx)
            (stage / INPUTS).write_text(json.dumps(hashing.result(), sort_keys=True))
        (quarantined,) = con.execute("select count(*) from quarantine").fetchall()[0]
    return {"rows_read": read, "quarantined_at_ingest": int(quarantined)}


def _input_digests(data_dir: Path, month: str) -> dict[str, dict]:
    """sha256 and size of program.yaml and of every input file present (what made the month)."""
    paths = {PROGRAM_RELPATH: data_dir / PROGRAM_RELPATH}
    paths.update({f.label(month): f.path(data_dir, month) for f in ALL_INPUTS})
    return {label: outputs.file_digest(p) for label, p in sorted(paths.items()) if p.exists()}


@_timed("validate_inputs")
def validate_inputs(data_dir: Path, out_dir: Path, month: str, run: str | None = None) -> dict:
    """The input gate: the month is computed from the exports as ingested, and the dataset-level input
    suites pass (a quarantine rate above the limit stops the run; other findings are warnings)."""
    _prewarm_gx()
    with _work_db(out_dir, month) as con:
        load.check_sources_unchanged(con)
        return gates.input_gate(con, staging_dir(out_dir, month), month, _program(data_dir))


@_timed("compute")
def compute(data_dir: Path, out_dir: Path, month: str, run: str | None = None, restate: bool = False) -> dict:
    """Apply the payout rules and write the month's files into staging, with the ledger delta and the
    totals the result gate checks them against. Every run recomputes the locked months' earnings with
    today's reference data (restatement); `restate` posts the differences as movements of this month."""
    _prewarm_gx()
    program = _program(data_dir)
    ledger.check_chain(out_dir, month)
    stage = staging_dir(out_dir, month)
    month_dir = stage / "month"
    if month_dir.exists():
        shutil.rmtree(month_dir)
    context = {"program": program, "out_dir": out_dir, "data_dir": data_dir, "stage": stage, "restate": restate,
               "locked_months": [s.month for s in states.months(out_dir) if s.locked and s.month < month],
               "duckdb_settings": duckdb_settings()}
    with _work_db(out_dir, month) as con:
        labels = {f.key: f.label(month) for f in ALL_INPUTS}
        params = rules.month_params(program, month, labels)
        t0 = time.perf_counter()
        balances = rules.run_rules(con, context, params)
        t1 = time.perf_counter()
        file_rows = {
            k: {"source_file": s, "read": int(r)}
            for k, s, r in con.execute("select file, source_file, rows_read from file_rows").fetchall()
        }
        written = outputs.write_month(con, month_dir, params, file_rows, context)
        (stage / BANK_DETAILS).write_text(json.dumps(context["bank_details"], sort_keys=True))
        gates.gate_totals(con, stage, params)  # while compute's tables are in memory
        t2 = time.perf_counter()
        delta = stage / LEDGER_DELTA
        if delta.exists():
            shutil.rmtree(delta)
        delta.mkdir(parents=True)
        relations.run(con, "ledger", params, {"delta_dir": delta})
        log.info("compute %s: rules %.1f s, outputs %.1f s, ledger delta %.1f s",
                 month, t1 - t0, t2 - t1, time.perf_counter() - t2)
    # what the ledger ended at when this month was computed: publish refuses if it moved since
    (stage / LEDGER_BASE).write_text(json.dumps({"stamp": ledger.stamp(out_dir)}))
    return {**balances, **written, "month_dir": str(month_dir)}


@_timed("validate_results")
def validate_results(data_dir: Path, out_dir: Path, month: str, run: str | None = None) -> dict:
    """Great Expectations gates on the results, before anything is published."""
    _prewarm_gx()
    with _work_db(out_dir, month) as con:
        return gates.result_gate(con, out_dir, staging_dir(out_dir, month), month, _program(data_dir))


@_timed("publish")
def publish(data_dir: Path, out_dir: Path, month: str, run: str | None = None) -> dict:
    """Make the month visible together with its ledger update: write manifest.json, commit the ledger
    (its `months` row records the manifest's sha256), then move the folder into place. If the
    process dies after the commit, the next command finishes the move (`open_out_root`); if the
    commit fails, nothing is visible and the step can be retried.
    """
    stage = staging_dir(out_dir, month)
    month_dir = stage / "month"
    if not (month_dir / "summary.json").exists():
        raise PayoutError(f"nothing staged for {month}: run compute first")
    ledger.check_chain(out_dir, month)
    if ledger.stamp(out_dir) != json.loads((stage / LEDGER_BASE).read_text())["stamp"]:
        # another run published in between: these balances were computed from stale openings
        raise PayoutError(f"the ledger changed since {month} was computed; run {month} again")
    sha = outputs.write_manifest(month_dir, month, json.loads((stage / INPUTS).read_text()),
                                 json.loads((stage / BANK_DETAILS).read_text()))
    try:
        ledger.apply_month(out_dir, stage / LEDGER_DELTA, month, sha, duckdb_settings())
    except duckdb.IOException as exc:  # e.g. another process holds the ledger file open
        raise PayoutError(f"could not update the ledger, nothing was published: {str(exc).splitlines()[0]}") from None
    _swap_in(out_dir, month, month_dir)
    outroot.remove_staging(out_dir, month)
    audit.append(out_dir, _actor(run), "run", month, "ok", f"published; manifest {sha}")
    target = out_dir / month
    summary = json.loads((target / "summary.json").read_text())
    paid = {c: v["net_paid"] for c, v in summary["by_payout_currency"].items()}
    return {"month_dir": str(target), "net_paid": paid}


def _prewarm_gx() -> None:
    """Import Great Expectations in a background thread while DuckDB works (it takes seconds)."""
    gates.prewarm()


STEPS = ("prepare", "ingest", "validate_inputs", "compute", "validate_results", "publish")


def run_month(data_dir: str | Path, out_dir: str | Path, month: str, restate: bool = False,
              progress: Callable[[str, dict | None], None] | None = None) -> dict:
    """Everything `payouts run --month` does, holding the output root's lock from start to end; on
    failure the published outputs and ledger are unchanged. `restate` posts the locked months'
    restatements (docs/restatement.md). `progress(step, None)` is called as a step starts and
    `progress(step, result)` when it ends (the CLI's display on a terminal)."""
    steps = tuple(globals()[name] for name in STEPS)
    run = cli_run_id()
    out_dir = Path(out_dir)
    results = {}
    try:
        with command(out_dir, f"payouts run --month {month}"):
            try:
                for step in steps:
                    extra = {"restate": restate} if step is compute else {}
                    if progress:
                        progress(step.__name__, None)
                    results[step.__name__] = step(data_dir, out_dir, month, run=run, **extra)
                    if progress:
                        progress(step.__name__, results[step.__name__])
            except BaseException:
                _drop_failed_run(out_dir, month, run)
                raise
    except outroot.OutRootBusy as exc:
        audit.append(out_dir, audit.os_user(), "run", month, "refused", str(exc))
        raise PayoutError(str(exc)) from None
    return results


def _drop_failed_run(out_dir: Path, month: str, run: str) -> None:
    """Leave nothing of a failed run behind, unless its ledger update committed: the next command
    then moves its staged folder into place (`open_out_root`)."""
    if outroot.staging_owner(out_dir, month) != run:
        return
    latest, sha = ledger.committed(out_dir)
    if latest == month and sha is not None and sha == outputs.manifest_sha256(staging_dir(out_dir, month) / "month"):
        return
    outroot.remove_staging(out_dir, month)


# --- month close (SPEC section 7): the CLI and the portal call these --------------------------------

@contextmanager
def _close_command(out_dir: Path, action: str, month: str | None, actor: str) -> Iterator[None]:
    """One month-close command: a valid month, the output root's lock, refusals as PayoutError (each
    already in the audit log)."""
    out_dir = Path(out_dir)
    try:
        if month is not None:
            _month(month)
        with command(out_dir, f"payouts {action}" + (f" --month {month}" if month else "")):
            yield
    except CloseRefused as exc:
        raise PayoutError(str(exc)) from None
    except (PayoutError, outroot.OutRootBusy) as exc:
        audit.append(out_dir, actor or "unknown", action, month, "refused", str(exc))
        raise PayoutError(str(exc)) from None


def approve(data_dir: str | Path, out_dir: str | Path, month: str, who: actions.Who, note: str = "") -> dict:
    """Approve the oldest draft (checks: manifest, the month's exports, maker-checker, the user)."""
    with _close_command(Path(out_dir), "approve", month, who.name):
        return actions.approve(Path(out_dir), Path(data_dir), month, who, note)


def reopen(out_dir: str | Path, month: str, who: actions.Who, reason: str) -> dict:
    with _close_command(Path(out_dir), "reopen", month, who.name):
        return actions.reopen(Path(out_dir), month, who, reason)


def discard(out_dir: str | Path, month: str, who: actions.Who) -> dict:
    with _close_command(Path(out_dir), "discard", month, who.name):
        return actions.discard(Path(out_dir), month, who)


def release(data_dir: str | Path, out_dir: str | Path, month: str, who: actions.Who,
            execution_date: str | None = None) -> dict:
    """Write the payment files of the oldest approved month (once) and mark it released."""
    from pipelines.close import release as release_mod

    with _close_command(Path(out_dir), "release", month, who.name):
        when = None
        if execution_date is not None:
            try:
                when = dt.date.fromisoformat(execution_date)
            except ValueError:
                raise PayoutError(f"--execution-date {execution_date!r} is not YYYY-MM-DD") from None
        return release_mod.release(Path(out_dir), Path(data_dir), month, who, _program(Path(data_dir)), when)


def status(out_dir: str | Path) -> list[dict]:
    with command(Path(out_dir), "payouts status"):
        return actions.status(Path(out_dir))


def verify(out_dir: str | Path, month: str | None = None) -> dict:
    if month is not None:
        _month(month)
    with command(Path(out_dir), "payouts verify"):
        return actions.verify(Path(out_dir), month)


def check_runnable(data_dir: str | Path, out_dir: str | Path, month: str, run: str | None = None) -> None:
    """Refuse at once a month that cannot run now (locked, or out of order): the DAG asks this before
    it waits for the month's exports."""
    out_dir = Path(out_dir)
    try:
        _month(month)
        with command(out_dir, f"payouts check --month {month}"):
            states.check_can_run(out_dir, month)
            ledger.check_chain(out_dir, month)
    except (PayoutError, CloseRefused, ledger.ChainError, outroot.OutRootBusy) as exc:
        audit.append(out_dir, _actor(run), "run", month, "refused", f"check: {exc}")
        raise PayoutError(str(exc)) from None

