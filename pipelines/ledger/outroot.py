"""The output root: one command at a time, and the staging area each run works in.

`exclusive(out_dir, command)` takes an exclusive lock on `<out>/.lock` (flock: the kernel releases
it when the process dies, so a killed command never leaves it held). A second command waits for
it, saying which command holds it, up to `PAYOUTS_LOCK_WAIT` seconds (default 600), then refuses.
The lock is re-entrant within a process: `payouts run` holds it for the whole month while the
engine's steps (which the DAG calls one per task) take it again.

A run stages its month under `<out>/.staging/<month>/`; `owner` in it names the run that prepared
it (a CLI run, or the Airflow run id), so a step of one run never works on another run's files.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
STAGING = ".staging"
OWNER_FILE = "owner"
MONTH_DIR = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


class OutRootBusy(RuntimeError):
    """Another command holds the output root for longer than this one would wait."""


class StagingTaken(RuntimeError):
    """The month's staging area belongs to another run."""


_held: dict[str, int] = {}  # out root (resolved) -> how many times this process holds it
_held_lock = threading.Lock()


def _wait_seconds() -> float:
    return float(os.environ.get("PAYOUTS_LOCK_WAIT", "600"))


@contextmanager
def exclusive(out_dir: str | Path, command: str) -> Iterator[bool]:
    """Hold `<out>/.lock` for the block; yields True when this call took it (False: already held by
    this process)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = str(out_dir.resolve())
    with _held_lock:
        if _held.get(key):
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield False
        finally:
            with _held_lock:
                _held[key] -= 1
        return
    fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, out_dir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command,
                                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(), 0)
        with _held_lock:
            _held[key] = 1
        try:
            yield True
        finally:
            with _held_lock:
                _held.pop(key, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, out_dir: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    holder = _holder(fd)
    wait = _wait_seconds()
    log.warning("%s is in use by %s; waiting up to %.0f s for it to finish", out_dir.name or out_dir, holder, wait)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise OutRootBusy(f"another payouts command is working on this output root ({holder}); "
                                  "try again when it has finished") from None
            time.sleep(0.1)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"`{info['command']}`, pid {info['pid']}, since {info['since']}"
    except (ValueError, KeyError):
        return "another process"


# --- staging ------------------------------------------------------------------------------------

def staging_dir(out_dir: str | Path, month: str) -> Path:
    return Path(out_dir) / STAGING / month


def claim_staging(out_dir: Path, month: str, run: str) -> Path:
    """A fresh staging folder for `month`, owned by `run` (whatever was there is removed)."""
    stage = staging_dir(out_dir, month)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    (stage / OWNER_FILE).write_text(run)
    return stage


def check_owner(out_dir: Path, month: str, run: str | None) -> None:
    """Refuse to work on a staging folder another run prepared (`run` None: no check)."""
    if run is None:
        return
    owner = staging_owner(out_dir, month)
    if owner != run:
        raise StagingTaken(f"the staging area of {month} belongs to another run ({owner or 'none'}), "
                           f"not {run}: run the month again")


def staging_owner(out_dir: Path, month: str) -> str | None:
    path = staging_dir(out_dir, month) / OWNER_FILE
    return path.read_text() if path.exists() else None


def remove_staging(out_dir: Path, month: str) -> None:
    shutil.rmtree(staging_dir(out_dir, month), ignore_errors=True)
    parent = Path(out_dir) / STAGING
    if parent.exists() and not any(parent.iterdir()):
        parent.rmdir()


def clean_stale_staging(out_dir: Path, keep: set[str]) -> list[str]:
    """Remove staging folders no live run can use: those of CLI runs (a CLI run holds the lock from
    start to end, so whoever holds it now sees only dead ones), without an owner, or of a month not
    in `keep` (the months that may still be published). Returns the months removed."""
    parent = Path(out_dir) / STAGING
    if not parent.exists():
        return []
    removed = []
    for stage in sorted(parent.iterdir()):
        owner = staging_owner(out_dir, stage.name)
        if owner is None or owner.startswith("cli:") or stage.name not in keep:
            shutil.rmtree(stage, ignore_errors=True) if stage.is_dir() else stage.unlink()
            removed.append(stage.name)
    if removed:
        log.info("removed the staging left by earlier runs: %s", ", ".join(removed))
    if not any(parent.iterdir()):
        parent.rmdir()
    return removed


def month_folders(out_dir: str | Path) -> list[str]:
    """The month folders (`YYYY-MM`) under the output root, sorted."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return []
    return sorted(p.name for p in out_dir.iterdir() if p.is_dir() and MONTH_DIR.fullmatch(p.name))
