"""The month-close commands: approve, reopen, discard, status and verify (SPEC sections 6, 7, 9).

Each refusal is one line, recorded in the audit log with outcome `refused`. The caller holds the
output root's lock (engine.command); these functions never run a month.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pipelines.close import audit, users
from pipelines.close.states import (APPROVAL, DRAFT, MANIFEST, APPROVED, CloseRefused, DigestCache, MonthState,
                                    check_files, months, read_json, refuse, sha256_file, state, transact)
from pipelines.ledger import outroot
from pipelines.ledger import store as ledger


@dataclass(frozen=True)
class Who:
    """Who acts: `--by` (checked against the users file and a password when one is given)."""

    name: str
    users_file: Path | None = None
    password: str | None = None


def _authorise(out_dir: Path, who: Who, action: str, month: str) -> str:
    """The actor's name; refuses an unknown user, a wrong password or a role that may not approve."""
    if not who.name or not who.name.strip():
        raise refuse(out_dir, "unknown", action, month, "--by must name who acts")
    if who.users_file is None:
        return who.name.strip()  # one operator on a laptop: recorded as given (without edge spaces)
    known = users.load(who.users_file)
    user = users.authenticate(known, who.name, who.password or "")
    if user is None:
        raise refuse(out_dir, who.name, action, month, f"{who.name}: unknown user or wrong password")
    if not user.may("approve"):
        raise refuse(out_dir, who.name, action, month, f"{who.name} is a {user.role}: only an approver may {action}")
    return user.name


def _totals(folder: Path) -> dict:
    summary = read_json(folder / "summary.json") or {}
    return {cur: {"partners_paid": v["partners_paid"], "gross": v["gross"], "withholding": v["withholding"],
                  "net": v["net_paid"]} for cur, v in sorted(summary.get("by_payout_currency", {}).items())}


def changed_inputs(folder: Path, data_dir: Path, month: str, *, digest=sha256_file,
                   gone_is_change: bool = True) -> tuple[list[str], list[str]]:
    """(exports of the month changed since it was computed, reference files changed): every input the
    manifest lists whose sha256 differs or (with `gone_is_change`) that is gone, and every export of
    the month present now that the manifest does not list."""
    inputs = (read_json(folder / MANIFEST) or {}).get("inputs", {})
    exports_prefix = f"exports/{month}/"
    changed = []
    for label, entry in sorted(inputs.items()):
        path = data_dir / label
        if not path.is_file():
            if gone_is_change:
                changed.append(label)
        elif digest(path) != entry["sha256"]:
            changed.append(label)
    folder_now = data_dir / "exports" / month
    if folder_now.is_dir():
        for path in sorted(folder_now.glob("*.csv")):
            label = path.relative_to(data_dir).as_posix()
            if label not in inputs:
                changed.append(label)
    exports = [c for c in changed if c.startswith(exports_prefix)]
    return exports, [c for c in changed if not c.startswith(exports_prefix)]


def locked_input_changes(con, params: dict, context: dict) -> int:
    """Table locked_input_changes: source_file, locked_month, message. An export of a locked month
    that changed (or was added) since the month was computed is reported by every later run and
    never applied (SPEC section 7): corrections are adjustments of an open month. An export removed
    from the data folder is not a change (the ledger keeps its own copy for restatement)."""
    import pyarrow as pa

    from pipelines.rules.relations import table_from_rows

    out_dir, data_dir = Path(context["out_dir"]), Path(context["data_dir"])
    digests = DigestCache(out_dir)
    sealed = audit.transitions(out_dir)
    rows = []
    for locked in sorted(context.get("locked_months") or []):
        s = state(out_dir, locked, sealed)
        exports, _ = changed_inputs(out_dir / locked, data_dir, locked, digest=digests.sha256, gone_is_change=False)
        for label in exports:
            rows.append((label, locked, f"{label} changed after {locked} was locked ({s.who() if s else 'locked'}): "
                                        "not applied; enter the correction as an adjustment of an open month"))
    digests.save()
    table_from_rows(con, "locked_input_changes", {"source_file": pa.string(), "locked_month": pa.string(),
                                                  "message": pa.string()}, rows)
    return len(rows)


def approve(out_dir: Path, data_dir: Path, month: str, who: Who, note: str = "") -> dict:
    """Approve the oldest draft: seal its manifest in approval.json and lock its files."""
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    actor = _authorise(out_dir, who, "approve", month)
    s = state(out_dir, month)
    if s is None:
        raise refuse(out_dir, actor, "approve", month, f"{month} has not been computed")
    if s.state != DRAFT:
        raise refuse(out_dir, actor, "approve", month, f"{month} is already {s.state} ({s.who()})")
    oldest = next(m.month for m in months(out_dir) if m.state == DRAFT)
    if oldest != month:
        raise refuse(out_dir, actor, "approve", month,
                     f"approve {oldest} first: months are approved oldest first")
    folder = out_dir / month
    problems = check_files(out_dir, month)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise refuse(out_dir, actor, "approve", month, f"{problems[0]}{more}: run {month} again before approving")
    if not (data_dir / "exports" / month).is_dir():
        raise refuse(out_dir, actor, "approve", month,
                     f"cannot check {month}'s exports: {data_dir.name}/exports/{month} is not there (pass --data)")
    exports, reference = changed_inputs(folder, data_dir, month)
    if exports:
        raise refuse(out_dir, actor, "approve", month,
                     f"{exports[0]} changed since {month} was computed: run {month} again before approving")
    makers = sorted({m for m in ledger.adjustment_makers(out_dir, month)})
    # names compare case-insensitively and without edge spaces: ' Jane.Doe' is jane.doe (SPEC section 7)
    if actor.strip().casefold() in {m.strip().casefold() for m in makers}:
        raise refuse(out_dir, actor, "approve", month,
                     f"{actor} entered adjustments of {month}: the maker is not the checker; another approver "
                     "must approve it")
    approval = {
        "month": month,
        "approved_by": actor,
        "approved_at": audit.now_utc(),
        "note": note,
        "manifest_sha256": sha256_file(folder / MANIFEST),
        "totals": _totals(folder),
        "warnings": [f"{r} changed since {month} was computed (see restatement)" for r in reference],
    }
    _keep_exports(out_dir, data_dir, month)
    detail = f"manifest {approval['manifest_sha256']}" + (f"; note: {note}" if note else "")
    line = transact(out_dir, "approve", month, actor, detail, {"approval": approval})
    return approval | {"audit_line_sha256": line.sha256}


def _keep_exports(out_dir: Path, data_dir: Path, month: str) -> None:
    """Copy the month's exports (the ones its manifest lists, checked) where the ledger keeps them for
    restatement; `states._apply` moves the copy into place when the approval commits."""
    inputs = (read_json(out_dir / month / MANIFEST) or {}).get("inputs", {})
    partial = ledger.kept_exports(out_dir, month).with_name(f"{month}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    for label, entry in sorted(inputs.items()):
        if label.startswith(f"exports/{month}/"):
            dest = partial / Path(label).name
            shutil.copyfile(data_dir / label, dest)
            if sha256_file(dest) != entry["sha256"]:
                raise refuse(out_dir, "unknown", "approve", month, f"{label} changed while it was being kept")


def reopen(out_dir: Path, month: str, who: Who, reason: str) -> dict:
    """Turn an approved month back into a draft, while it is not released and no later month exists."""
    out_dir = Path(out_dir)
    actor = _authorise(out_dir, who, "reopen", month)
    if not reason or not reason.strip():
        raise refuse(out_dir, actor, "reopen", month, "--reason is required: say why the month is reopened")
    s = state(out_dir, month)
    if s is None:
        raise refuse(out_dir, actor, "reopen", month, f"{month} has not been computed")
    if s.state != APPROVED:
        why = "it was released: corrections go into the next open month as adjustments" if s.payments \
            else "it is a draft"
        raise refuse(out_dir, actor, "reopen", month, f"{month} cannot be reopened: {why}")
    later = [m for m in outroot.month_folders(out_dir) if m > month]
    if later:
        raise refuse(out_dir, actor, "reopen", month,
                     f"{month} cannot be reopened: {later[0]} was computed after it (discard it first)")
    transact(out_dir, "reopen", month, actor, f"reason: {reason}", {})
    return {"billing_month": month, "state": DRAFT, "reopened_by": actor}


def discard(out_dir: Path, month: str, who: Who) -> dict:
    """Remove the latest month while it is a draft: its folder and its effect on the ledger."""
    out_dir = Path(out_dir)
    actor = _authorise(out_dir, who, "discard", month)
    s = state(out_dir, month)
    latest = ledger.latest_month(out_dir)
    if s is None or latest is None:
        raise refuse(out_dir, actor, "discard", month, f"{month} has not been computed")
    if month != latest:
        raise refuse(out_dir, actor, "discard", month, f"only the latest month ({latest}) may be discarded")
    if s.state != DRAFT:
        raise refuse(out_dir, actor, "discard", month, f"{month} is {s.state} ({s.who()}): only a draft may be "
                     "discarded")
    transact(out_dir, "discard", month, actor, "folder and ledger rows removed", {})
    return {"billing_month": month, "discarded_by": actor, "latest": ledger.latest_month(out_dir)}


def status(out_dir: Path) -> list[dict]:
    """Every month: state, who and when, totals per payout currency; approved months not released are
    flagged."""
    rows = []
    for s in months(Path(out_dir)):
        summary = read_json(Path(out_dir) / s.month / "summary.json") or {}
        rows.append({
            "month": s.month,
            "state": s.state,
            "approved_by": (s.approval or {}).get("approved_by"),
            "approved_at": (s.approval or {}).get("approved_at"),
            "released_by": (s.payments or {}).get("released_by"),
            "released_at": (s.payments or {}).get("released_at"),
            "awaiting_release": s.state == APPROVED,
            "net_paid": {c: v["net_paid"] for c, v in sorted(summary.get("by_payout_currency", {}).items())},
        })
    return rows


def verify(out_dir: Path, month: str | None = None) -> dict:
    """Check month files against their manifests (one month, or all) and the audit log's chain."""
    out_dir = Path(out_dir)
    sealed = audit.transitions(out_dir)
    targets = [month] if month else sorted(set(outroot.month_folders(out_dir)) | set(sealed))
    problems = []
    for m in targets:
        if state(out_dir, m, sealed) is None:
            seal = sealed.get(m)
            problems.append(f"{m} is missing: the audit log (line {seal['approve']['seq']}) says it was {seal['state']}"
                            if seal else f"{m} has not been computed")
            continue
        problems.extend(check_files(out_dir, m))
    chain = audit.verify(out_dir)
    return {"months": targets, "problems": problems, "audit_lines": chain.lines,
            "audit_broken_at": chain.broken_at, "audit_reason": chain.reason, "audit_last_sha256": chain.last_sha256,
            "ok": not problems and chain.ok}


__all__ = ["Who", "approve", "reopen", "discard", "status", "verify", "changed_inputs", "CloseRefused",
           "MonthState", "APPROVAL"]
