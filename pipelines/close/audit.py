"""The audit log: `<out>/audit.jsonl`, append-only and hash-chained (SPEC section 9).

One JSON object per line, keys in this order: `seq, at, actor, action, month, outcome, detail,
prev`. `seq` is the line number from 1; `prev` the hex sha256 of the previous line without its
newline (64 zeros for the first). Every append takes an exclusive lock (`audit.lock`, flock: the
kernel releases it when a process dies), writes the line with one write on an O_APPEND descriptor
and fsyncs it. A line a crash cut short (no newline) was never committed: the next append, under
the lock, cuts it off first, so the log never keeps a torn line.

Nothing sensitive goes in: callers put ids, months, file names and reasons in `detail`, never an
account number.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

AUDIT_FILE = "audit.jsonl"
LOCK_FILE = "audit.lock"
ZERO = "0" * 64
ACTIONS = ("run", "approve", "reopen", "discard", "release", "user_add", "user_remove", "login", "download")
OUTCOMES = ("ok", "refused")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"uid:{os.getuid()}"


@dataclass(frozen=True)
class Line:
    seq: int
    at: str
    actor: str
    action: str
    month: str | None
    outcome: str
    detail: str
    prev: str

    def text(self) -> str:
        return json.dumps({"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                           "month": self.month, "outcome": self.outcome, "detail": self.detail,
                           "prev": self.prev}, ensure_ascii=False, separators=(", ", ": "))

    @property
    def sha256(self) -> str:
        return sha256(self.text())


class Log:
    """The log while its lock is held: the next line's `seq` and `prev`, and appends."""

    def __init__(self, path: Path):
        self.path = path
        self.seq, self.last = _tail(path)

    def line(self, actor: str, action: str, month: str | None, outcome: str, detail: str = "",
             at: str | None = None) -> Line:
        if action not in ACTIONS or outcome not in OUTCOMES:
            raise ValueError(f"audit: unknown action {action!r} or outcome {outcome!r}")
        return Line(self.seq + 1, at or now_utc(), actor, action, month, outcome, detail, self.last)

    def append(self, line: Line) -> Line:
        if line.seq != self.seq + 1 or line.prev != self.last:
            raise RuntimeError("audit: a line must follow the log's last line")
        data = (line.text() + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.seq, self.last = line.seq, line.sha256
        return line

    def add(self, actor: str, action: str, month: str | None, outcome: str, detail: str = "") -> Line:
        return self.append(self.line(actor, action, month, outcome, detail))

    def contains(self, sha: str) -> bool:
        """Whether a committed line has this sha256 (searched from the end)."""
        return any(line_sha == sha for line_sha in reversed([sha256(t) for t in _lines(self.path)]))


@contextmanager
def locked(out_dir: str | Path) -> Iterator[Log]:
    """Hold the audit log's lock; cut off a torn last line first."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = out_dir / AUDIT_FILE
        _cut_torn_tail(path)
        yield Log(path)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def append(out_dir: str | Path, actor: str, action: str, month: str | None, outcome: str, detail: str = "") -> Line:
    """Append one line (takes and releases the lock)."""
    with locked(out_dir) as log:
        return log.add(actor, action, month, outcome, detail)


def _cut_torn_tail(path: Path) -> None:
    if not path.exists():
        return
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # find the end of the last whole line
        pos = size
        while pos > 0:
            step = min(4096, pos)
            fh.seek(pos - step)
            chunk = fh.read(step)
            i = chunk.rfind(b"\n")
            if i != -1:
                fh.truncate(pos - step + i + 1)
                break
            pos -= step
        else:
            fh.truncate(0)
        fh.flush()
        os.fsync(fh.fileno())


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [t for t in path.read_text(encoding="utf-8").split("\n") if t]


def _tail(path: Path) -> tuple[int, str]:
    lines = _lines(path)
    if not lines:
        return 0, ZERO
    last = lines[-1]
    return int(json.loads(last)["seq"]), sha256(last)


@dataclass(frozen=True)
class ChainCheck:
    lines: int
    broken_at: int | None  # the first line (1-based) that breaks the chain, or None
    reason: str
    last_sha256: str

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(out_dir: str | Path) -> ChainCheck:
    """Check every line: valid JSON with the keys in order, `seq` its line number, `prev` the previous
    line's sha256. An edited, removed, inserted or reordered line breaks the chain at the first line
    that no longer follows."""
    path = Path(out_dir) / AUDIT_FILE
    if not path.exists():
        return ChainCheck(0, None, "", ZERO)
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw_lines = raw.split(b"\n")
        return ChainCheck(len(raw_lines), len(raw_lines), "the last line is cut short", ZERO)
    prev = ZERO
    texts = raw.decode("utf-8").split("\n")[:-1]
    keys = ["seq", "at", "actor", "action", "month", "outcome", "detail", "prev"]
    for n, text in enumerate(texts, start=1):
        try:
            obj = json.loads(text)
        except ValueError:
            return ChainCheck(len(texts), n, "not a JSON object", prev)
        if not isinstance(obj, dict) or list(obj) != keys:
            return ChainCheck(len(texts), n, "not an audit line (keys)", prev)
        if obj["prev"] != prev:
            return ChainCheck(len(texts), n, "prev is not the sha256 of the line before", prev)
        if obj["seq"] != n:
            return ChainCheck(len(texts), n, f"seq is {obj['seq']}, not {n}", prev)
        prev = sha256(text)
    return ChainCheck(len(texts), None, "", prev)


def read(out_dir: str | Path) -> list[dict]:
    """Every line as a dict (for `status` and the portal)."""
    return [json.loads(t) for t in _lines(Path(out_dir) / AUDIT_FILE)]


def transitions(out_dir: str | Path) -> dict[str, dict]:
    """The months the committed transitions of the log leave locked: month -> {"state": "approved" or
    "released", "approve": line, "release": line or None}, each line a dict with its `sha256`. An
    approval and a release stand until a `reopen` or `discard` line; a `run` never unlocks a month
    (a run of a locked month is refused, so such a line cannot undo one)."""
    locked: dict[str, dict] = {}
    for text in _lines(Path(out_dir) / AUDIT_FILE):
        line = json.loads(text)
        month = line.get("month")
        if line.get("outcome") != "ok" or not month:
            continue
        action = line.get("action")
        if action == "approve":
            locked[month] = {"state": "approved", "approve": {**line, "sha256": sha256(text)}, "release": None}
        elif action == "release" and month in locked:
            locked[month] = {**locked[month], "state": "released", "release": {**line, "sha256": sha256(text)}}
        elif action in ("reopen", "discard"):
            locked.pop(month, None)
    return locked
