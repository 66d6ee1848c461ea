"""A month's state, and the transitions between them: draft -> approved -> released.

The state is what the month folder holds: a computed month is a **draft**; `approval.json` makes it
**approved**; `payments/payments.json` makes it **released**. Approved and released months are
**locked**: their files are read-only and never rewritten (`check_can_run` refuses a run of them).
The audit log backs the two seals: a month its committed lines leave approved or released stays
locked even if `approval.json` or `payments.json` is removed, and `check_files` names every seal
that does not match its audit line (`seal_problems`).

Every transition is one commit: under the audit log's lock the command writes its intent to
`<out>/.close-pending.json`, then appends its audit line (the commit point), then changes the files
(`_apply`, idempotent), then removes the intent. A command killed before its audit line changed
nothing; one killed after it is finished by the next command (`recover`), so a month is always
either in its old state or its new one. The caller holds the output root's lock (engine.command).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from pipelines.close import audit
from pipelines.ledger import outroot
from pipelines.ledger import store as ledger

APPROVAL = "approval.json"
MANIFEST = "manifest.json"
PAYMENTS_DIR = "payments"
PAYMENTS_JSON = "payments.json"
PENDING = ".close-pending.json"
DRAFT, APPROVED, RELEASED = "draft", "approved", "released"


class CloseRefused(RuntimeError):
    """A transition that is not allowed now; the message is one line saying why."""


@dataclass(frozen=True)
class MonthState:
    month: str
    state: str
    approval: dict | None
    payments: dict | None
    sealed: dict | None = None  # audit.transitions' entry: the lines that approved (and released) it

    @property
    def locked(self) -> bool:
        return self.state in (APPROVED, RELEASED)

    def who(self) -> str:
        """`approved by NAME at TIME` (and released) for messages; from the audit log when a seal
        file is missing."""
        approve = self.approval or (self.sealed or {}).get("approve")
        if not approve or not self.locked:
            return "a draft"
        text = (f"approved by {approve.get('approved_by', approve.get('actor'))} "
                f"at {approve.get('approved_at', approve.get('at'))}")
        release = self.payments or (self.sealed or {}).get("release")
        if release:
            text += (f", released by {release.get('released_by', release.get('actor'))} "
                     f"at {release.get('released_at', release.get('at'))}")
        return text


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def state(out_dir: Path, month: str, sealed: dict[str, dict] | None = None) -> MonthState | None:
    """The month's state, or None when it was never computed. `sealed` is audit.transitions(out_dir)
    (read here when not given): a month the audit log leaves locked is locked whatever its folder
    holds."""
    folder = Path(out_dir) / month
    if not folder.is_dir():
        return None
    approval = read_json(folder / APPROVAL)
    payments = read_json(folder / PAYMENTS_DIR / PAYMENTS_JSON)
    name = RELEASED if payments else APPROVED if approval else DRAFT
    seal = (audit.transitions(out_dir) if sealed is None else sealed).get(month)
    if seal and name == DRAFT or seal and seal["state"] == RELEASED:
        name = seal["state"]
    return MonthState(month, name, approval, payments, seal)


def months(out_dir: Path) -> list[MonthState]:
    sealed = audit.transitions(out_dir)
    return [s for m in outroot.month_folders(out_dir) if (s := state(out_dir, m, sealed)) is not None]


def check_can_run(out_dir: Path, month: str) -> None:
    """A locked month never runs again."""
    s = state(out_dir, month)
    if s is None and (seal := audit.transitions(out_dir).get(month)):
        s = MonthState(month, seal["state"], None, None, seal)  # its folder is gone: still locked
    if s is not None and s.locked:
        raise CloseRefused(f"{month} is {s.state} ({s.who()}): a locked month never changes; corrections go into "
                           "the next open month as adjustments")


# --- the files of a month, against its manifest -------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 * 1024 * 1024):
            h.update(block)
    return h.hexdigest()


class DigestCache:
    """sha256 of input files, remembered by (path, size, mtime) in `<out>/.input-digests.json`, so that
    every run can compare the locked months' exports with their manifests without reading gigabytes
    again. A scratch file: deleting it costs one full read. The caller holds the output root's lock."""

    FILE = ".input-digests.json"

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / self.FILE
        try:
            self.known = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.known = {}
        self.used: dict[str, list] = {}

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = str(path.resolve())
        entry = self.known.get(key)
        if not (isinstance(entry, list) and entry[:2] == [st.st_size, st.st_mtime_ns]):
            entry = [st.st_size, st.st_mtime_ns, sha256_file(path)]
        self.used[key] = entry
        return entry[2]

    def save(self) -> None:
        """Keep the entries used this time (files no longer compared drop out)."""
        if self.used != self.known:
            _write_json(self.path, self.used)


def check_files(out_dir: Path, month: str) -> list[str]:
    """Every difference between the month folder and the manifests that seal it, one line each
    (empty: intact): manifest.json for the computed files, approval.json's manifest hash, and
    payments.json for the payment files."""
    folder = Path(out_dir) / month
    problems: list[str] = []
    manifest = read_json(folder / MANIFEST)
    if manifest is None:
        return [f"{month}/{MANIFEST} is missing"]
    listed = manifest["files"]
    sealed = {MANIFEST, APPROVAL}
    payments = read_json(folder / PAYMENTS_DIR / PAYMENTS_JSON)
    if payments:
        sealed.add(f"{PAYMENTS_DIR}/{PAYMENTS_JSON}")
        for name, entry in payments["files"].items():
            path = folder / PAYMENTS_DIR / name
            rel = f"{PAYMENTS_DIR}/{name}"
            sealed.add(rel)
            if not path.is_file():
                problems.append(f"{month}/{rel} is missing")
            elif sha256_file(path) != entry["sha256"]:
                problems.append(f"{month}/{rel} differs from {PAYMENTS_JSON}")
    for rel, entry in sorted(listed.items()):
        path = folder / rel
        if not path.is_file():
            problems.append(f"{month}/{rel} is missing")
        elif path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            problems.append(f"{month}/{rel} differs from {MANIFEST}")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    for rel in sorted(present - set(listed) - sealed):
        problems.append(f"{month}/{rel} is not in {MANIFEST}")
    approval = read_json(folder / APPROVAL)
    if approval and approval["manifest_sha256"] != sha256_file(folder / MANIFEST):
        problems.append(f"{month}/{MANIFEST} is not the one {APPROVAL} sealed")
    return problems + seal_problems(out_dir, month)


def seal_problems(out_dir: Path, month: str) -> list[str]:
    """Every way `approval.json` and `payments/payments.json` disagree with the audit log's committed
    lines: a seal missing, one no line committed, or one whose approver, releaser or manifest is not
    its line's."""
    folder = Path(out_dir) / month
    seal = audit.transitions(out_dir).get(month) or {}
    problems = []
    seals = ((APPROVAL, APPROVAL, seal.get("approve"), "approved_by"),
             (PAYMENTS_JSON, f"{PAYMENTS_DIR}/{PAYMENTS_JSON}", seal.get("release"), "released_by"))
    for name, rel, line, who in seals:
        doc = read_json(folder / rel)
        if line is None:
            if doc is not None:
                problems.append(f"{month}/{rel} is not backed by the audit log (no committed line "
                                f"{'approved' if name == APPROVAL else 'released'} {month})")
            continue
        where = f"the audit log (line {line['seq']}) says {line['actor']} {line['action']}d it at {line['at']}"
        if doc is None:
            problems.append(f"{month}/{rel} is missing: {where}")
        elif doc.get("audit_line_sha256") != line["sha256"]:
            problems.append(f"{month}/{rel} does not name its audit line: {where}")
        elif doc.get(who) != line["actor"]:
            problems.append(f"{month}/{rel} says {doc.get(who)}: {where}")
        elif name == APPROVAL and f"manifest {doc.get('manifest_sha256')}" not in line["detail"]:
            problems.append(f"{month}/{rel} seals another manifest than its audit line (line {line['seq']})")
    return problems


# --- read-only folders ----------------------------------------------------------------------------

def set_read_only(folder: Path, read_only: bool) -> None:
    """Files 0444 and folders 0555 (locked), or 0644 / 0755; payment files stay owner-only."""
    for path in sorted(folder.rglob("*"), reverse=True) + [folder]:
        if path.is_dir():
            os.chmod(path, 0o555 if read_only else 0o755)
        elif path.parent.name == PAYMENTS_DIR and path.parent.parent == folder:
            os.chmod(path, 0o400)
        else:
            os.chmod(path, 0o444 if read_only else 0o644)


# --- transitions ---------------------------------------------------------------------------------

def _write_json(path: Path, doc: dict, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def transact(out_dir: Path, action: str, month: str, actor: str, detail: str, payload: dict) -> audit.Line:
    """Commit one transition (see the module docstring); `payload` is what `_apply` needs, and gets
    `audit_line_sha256`, the hash of the committing line."""
    out_dir = Path(out_dir)
    with audit.locked(out_dir) as log:
        line = log.line(actor, action, month, "ok", detail)
        payload = {**payload, "audit_line_sha256": line.sha256}
        _write_json(out_dir / PENDING, {"action": action, "month": month, "line_sha256": line.sha256,
                                         "payload": payload}, 0o600)
        log.append(line)  # the commit point
    _apply(out_dir, action, month, payload)
    (out_dir / PENDING).unlink()
    return line


def recover(out_dir: Path) -> str | None:
    """Finish (or drop) a transition a killed command left; returns what was finished."""
    out_dir = Path(out_dir)
    pending = read_json(out_dir / PENDING)
    if pending is None:
        return None
    with audit.locked(out_dir) as log:
        committed = log.contains(pending["line_sha256"])
    if committed:
        _apply(out_dir, pending["action"], pending["month"], pending["payload"])
    (out_dir / PENDING).unlink()
    return f"{pending['action']} {pending['month']}" if committed else None


def refuse(out_dir: Path, actor: str, action: str, month: str | None, message: str) -> CloseRefused:
    """Record a refusal in the audit log; returns the exception to raise."""
    audit.append(out_dir, actor, action, month, "refused", message)
    return CloseRefused(message)


def _apply(out_dir: Path, action: str, month: str, payload: dict) -> None:
    """The file changes of a committed transition; safe to run twice."""
    folder = out_dir / month
    if action == "approve":
        kept = ledger.kept_exports(out_dir, month)
        partial = kept.with_name(f"{month}.partial")
        if partial.exists() and not kept.exists():
            os.replace(partial, kept)  # the exports the month was computed from, for restatement
        if not (folder / APPROVAL).exists():
            os.chmod(folder, 0o755)
            _write_json(folder / APPROVAL, payload["approval"] | {"audit_line_sha256": payload["audit_line_sha256"]})
        set_read_only(folder, True)
    elif action == "reopen":
        if folder.exists():
            set_read_only(folder, False)
            (folder / APPROVAL).unlink(missing_ok=True)
        shutil.rmtree(ledger.kept_exports(out_dir, month), ignore_errors=True)
    elif action == "discard":
        ledger.discard_month(out_dir, month)
        if folder.exists():
            trash = outroot.staging_dir(out_dir, month) / "discarded"
            trash.parent.mkdir(parents=True, exist_ok=True)
            set_read_only(folder, False)
            os.replace(folder, trash)
            outroot.remove_staging(out_dir, month)
    elif action == "release":
        staged = Path(payload["staged"])
        if staged.exists():
            os.chmod(folder, 0o755)
            sealed = payload["payments_json"] | {"audit_line_sha256": payload["audit_line_sha256"]}
            _write_json(staged / PAYMENTS_JSON, sealed, 0o400)
            if (folder / PAYMENTS_DIR).exists():
                shutil.rmtree(folder / PAYMENTS_DIR)
            os.replace(staged, folder / PAYMENTS_DIR)
            shutil.rmtree(staged.parent, ignore_errors=True)
        set_read_only(folder, True)
        os.chmod(folder / PAYMENTS_DIR, stat.S_IRUSR | stat.S_IXUSR)
    else:
        raise ValueError(f"unknown transition {action!r}")
