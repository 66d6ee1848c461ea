"""What the portal reads from the output root: months, their files, partners, statements.

Read-only, without the output root's lock: a month folder is swapped in whole by a rename, and its
files are written before it appears, so a reader sees a month either before or after a run.
Parsed files are cached by (path, size, mtime), so a month rerun is read again.

Files leave the month folder only through `open_month_file`: the month must be a `YYYY-MM` folder
directly under the output root, the path relative, made of plain names (no `.`, `..`, empty
segment, backslash or NUL), and every component is opened with O_NOFOLLOW from its parent's
descriptor, so a symbolic link anywhere on the way is refused, and nothing outside the folder can
be reached. Which files may be asked for at all is the manifest's (or payments.json's) list.

Only `partner_id`, `name`, `status` and `payout_currency` are ever read from the data root's
partners.csv (for search by name); `account_ref` is never read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

from pipelines.close import audit, states
from pipelines.close.states import APPROVAL, MANIFEST, PAYMENTS_DIR, PAYMENTS_JSON
from pipelines.core.text import unsafe_text
from pipelines.ledger import outroot
from pipelines.publish.outputs import statement_filename

MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
MOVE_THRESHOLD = Decimal("0.20")  # "net moved by more than 20 %"
BALANCE_AMOUNTS = ("opening_balance", "earnings", "clawbacks", "referral_fees", "fees", "adjustments", "pending",
                   "gross_paid", "withholding", "net_paid", "closing_balance")


class Unreadable(RuntimeError):
    """A file the portal may serve but the operating system will not let it read."""


@dataclass(frozen=True)
class PartnerRef:
    partner_id: str
    name: str
    status: str = ""
    payout_currency: str = ""


def open_month_file(out_dir: Path, month: str, rel: str):
    """A binary file object for `<out>/<month>/<rel>`, or None when the path is not a plain relative path
    to a regular file inside the month folder reached without a symbolic link. Raises Unreadable when
    the file is there but permission is denied."""
    if not isinstance(month, str) or not MONTH.fullmatch(month):
        return None
    if not rel or not isinstance(rel, str) or "\\" in rel or "\x00" in rel or rel.startswith("/"):
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for comp in [month, *parts[:-1]]:
            try:
                nfd = os.open(comp, flags_dir, dir_fd=fd)
            except PermissionError:
                raise Unreadable(f"{month}/{rel} is not readable by the portal's user") from None
            except OSError:  # missing, not a directory, or a symbolic link (ELOOP)
                return None
            os.close(fd)
            fd = nfd
        try:
            ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
        except PermissionError:
            raise Unreadable(f"{month}/{rel} is not readable by the portal's user") from None
        except OSError:
            return None
    finally:
        os.close(fd)
    st = os.fstat(ffd)
    if not stat.S_ISREG(st.st_mode):
        os.close(ffd)
        return None
    os.set_blocking(ffd, True)
    return os.fdopen(ffd, "rb")


def read_month_text(out_dir: Path, month: str, rel: str) -> str | None:
    fh = open_month_file(out_dir, month, rel)
    if fh is None:
        return None
    with fh:
        return fh.read().decode("utf-8", errors="replace")


def to_decimal(text: str | None) -> Decimal | None:
    try:
        return Decimal(text) if text not in (None, "") else None
    except (InvalidOperation, TypeError):
        return None


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


class Store:
    """Cached, read-only views of the output root (and the names in the data root's partners.csv)."""

    def __init__(self, out_dir: Path, data_dir: Path):
        self.out_dir = Path(out_dir)
        self.data_dir = Path(data_dir)
        self._cache: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    # --- caching ---------------------------------------------------------------------------------

    def _cached(self, kind: str, month: str, rel: str, parse: Callable[[str], Any]) -> Any:
        """`parse(text)` of a month file, cached by its identity; None when the file is not there."""
        path = self.out_dir / month / rel
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return None
        key = (kind, month, rel, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        text = read_month_text(self.out_dir, month, rel)
        if text is None:
            return None
        value = parse(text)
        with self._lock:
            stale = [k for k in self._cache if k[:3] == (kind, month, rel)]
            for k in stale:
                del self._cache[k]
            self._cache[key] = value
        return value

    # --- months ----------------------------------------------------------------------------------

    def months(self) -> list[str]:
        """Every computed month (a folder with a manifest), oldest first."""
        return [m for m in outroot.month_folders(self.out_dir) if self.exists(m)]

    def exists(self, month: str) -> bool:
        if not isinstance(month, str) or not MONTH.fullmatch(month):
            return False
        folder = self.out_dir / month
        return folder.is_dir() and not folder.is_symlink() and (folder / MANIFEST).is_file()

    def state(self, month: str) -> states.MonthState | None:
        return states.state(self.out_dir, month) if self.exists(month) else None

    def manifest(self, month: str) -> dict:
        return self._cached("json", month, MANIFEST, json.loads) or {}

    def summary(self, month: str) -> dict:
        return self._cached("json", month, "summary.json", json.loads) or {}

    def approval(self, month: str) -> dict | None:
        return self._cached("json", month, APPROVAL, json.loads)

    def payments(self, month: str) -> dict | None:
        try:
            return self._cached("json", month, f"{PAYMENTS_DIR}/{PAYMENTS_JSON}", json.loads)
        except Unreadable:
            s = states.state(self.out_dir, month)
            return s.payments if s else None

    def validation_status(self, month: str) -> str | None:
        doc = self._cached("json", month, "validation/results.json", json.loads) or {}
        return doc.get("status")

    def exceptions_count(self, month: str) -> dict[str, int]:
        def count(text: str) -> dict[str, int]:
            out = {"quarantined": 0, "reported": 0}
            for row in csv_rows(text):
                kind = row.get("kind", "")
                out[kind] = out.get(kind, 0) + 1
            return out
        return self._cached("exc", month, "exceptions.csv", count) or {"quarantined": 0, "reported": 0}

    def balances(self, month: str) -> dict[str, dict[str, str]]:
        """partner_balances.csv by partner id (ids as written, formula guard undone)."""
        def parse(text: str) -> dict[str, dict[str, str]]:
            return {unsafe_text(r["partner_id"]): r for r in csv_rows(text)}
        return self._cached("bal", month, "partner_balances.csv", parse) or {}

    def balances_text(self, month: str) -> str | None:
        return read_month_text(self.out_dir, month, "partner_balances.csv")

    def remittance(self, month: str) -> dict[str, dict[str, str]]:
        """remittance.csv by partner id; only what the portal uses (never account_last4 beyond the file)."""
        def parse(text: str) -> dict[str, dict[str, str]]:
            out = {}
            for r in csv_rows(text):
                pid = unsafe_text(r["partner_id"])
                out[pid] = {"partner_id": pid, "partner_name": unsafe_text(r.get("partner_name", "")),
                            "payout_currency": r.get("payout_currency", ""), "gross_amount": r.get("gross_amount", ""),
                            "withholding_amount": r.get("withholding_amount", ""),
                            "net_amount": r.get("net_amount", "")}
            return out
        return self._cached("rem", month, "remittance.csv", parse) or {}

    def run_times(self) -> dict[str, str]:
        """When each month was last published (the audit log's `run` line), by month."""
        out: dict[str, str] = {}
        try:
            for line in audit.read(self.out_dir):
                if line.get("action") == "run" and line.get("outcome") == "ok" and line.get("month"):
                    out[line["month"]] = line.get("at", "")
        except (OSError, ValueError):
            pass
        return out

    def run_time(self, month: str, times: dict[str, str] | None = None) -> str:
        times = self.run_times() if times is None else times
        if month in times:
            return times[month]
        try:
            import time as _time
            return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime((self.out_dir / month / MANIFEST).stat().st_mtime))
        except OSError:
            return ""

    def previous(self, month: str) -> str | None:
        earlier = [m for m in self.months() if m < month]
        return earlier[-1] if earlier else None

    # --- files -----------------------------------------------------------------------------------

    def files(self, month: str) -> dict[str, dict]:
        """The month's files as manifest.json lists them: path -> {sha256, size}."""
        return dict(self.manifest(month).get("files", {}))

    def payment_files(self, month: str) -> dict[str, dict]:
        """`payments/<name>` -> payments.json's entry, for a released month."""
        doc = self.payments(month) or {}
        return {f"{PAYMENTS_DIR}/{name}": entry for name, entry in sorted(doc.get("files", {}).items())}

    def statement_files(self, month: str) -> dict[str, str]:
        """partner id -> its statement's path, for every partner of the month's balances."""
        listed = self.files(month)
        out = {}
        for pid in self.balances(month):
            rel = f"statements/{statement_filename(pid)}"
            if rel in listed:
                out[pid] = rel
        return out

    def statement_rel(self, month: str, partner_id: str) -> str | None:
        rel = f"statements/{statement_filename(partner_id)}"
        return rel if rel in self.files(month) else None

    def statement(self, month: str, partner_id: str) -> tuple[list[str], list[dict[str, str]]] | None:
        rel = f"statements/{statement_filename(partner_id)}"
        if rel not in self.files(month):
            return None
        text = read_month_text(self.out_dir, month, rel)
        if text is None:
            return None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = [{k: unsafe_text(v or "") for k, v in r.items()} for r in reader]
        return list(reader.fieldnames or []), rows

    # --- partners --------------------------------------------------------------------------------

    def partner_refs(self) -> dict[str, PartnerRef]:
        """Every partner the data root's partners.csv names, or any month's balances hold."""
        refs = dict(self._reference_partners())
        names = {}
        for month in self.months():
            for pid, row in self.remittance(month).items():
                names[pid] = row["partner_name"]
            for pid, row in self.balances(month).items():
                if pid not in refs:
                    refs[pid] = PartnerRef(pid, names.get(pid, ""), "", row.get("payout_currency", ""))
        for pid, ref in list(refs.items()):
            if not ref.name and names.get(pid):
                refs[pid] = PartnerRef(pid, names[pid], ref.status, ref.payout_currency)
        return refs

    def _reference_partners(self) -> dict[str, PartnerRef]:
        path = self.data_dir / "reference" / "partners.csv"
        try:
            st = path.stat()
        except OSError:
            return {}
        key = ("partners", str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        out: dict[str, PartnerRef] = {}
        try:
            with open(path, newline="", encoding="utf-8", errors="replace") as fh:
                for row in csv.DictReader(fh):
                    pid = (row.get("partner_id") or "").strip()
                    if pid and pid not in out:
                        out[pid] = PartnerRef(pid, (row.get("name") or "").strip(), (row.get("status") or "").strip(),
                                              (row.get("payout_currency") or "").strip())
        except (OSError, csv.Error):
            return {}
        with self._lock:
            for k in [k for k in self._cache if k[0] == "partners"]:
                del self._cache[k]
            self._cache[key] = out
        return out

    def partner_history(self, partner_id: str) -> list[dict[str, str]]:
        """The partner's partner_balances.csv row of every month (months without one: no row)."""
        out = []
        for month in self.months():
            row = self.balances(month).get(partner_id)
            if row is not None:
                out.append({"month": month, **{k: v for k, v in row.items() if k != "partner_id"}})
        return out

    # --- what changed ----------------------------------------------------------------------------

    def changes(self, month: str, visible: Callable[[str], bool] = lambda pid: True) -> dict:
        """Partners newly paid, no longer paid, and paid both months with the net moved by more than 20 %,
        against the month before (remittance against remittance)."""
        prev = self.previous(month)
        now = self.remittance(month)
        before = self.remittance(prev) if prev else {}
        newly, gone, moved = [], [], []
        if prev is not None:
            for pid in sorted(set(now) - set(before)):
                if visible(pid):
                    r = now[pid]
                    newly.append({"partner_id": pid, "name": r["partner_name"], "currency": r["payout_currency"],
                                  "net": r["net_amount"]})
            for pid in sorted(set(before) - set(now)):
                if visible(pid):
                    r = before[pid]
                    gone.append({"partner_id": pid, "name": r["partner_name"], "currency": r["payout_currency"],
                                 "previous_net": r["net_amount"]})
            for pid in sorted(set(now) & set(before)):
                if not visible(pid):
                    continue
                a, b = before[pid], now[pid]
                old, new = to_decimal(a["net_amount"]), to_decimal(b["net_amount"])
                entry = {"partner_id": pid, "name": b["partner_name"], "currency": b["payout_currency"],
                         "previous_currency": a["payout_currency"], "previous_net": a["net_amount"],
                         "net": b["net_amount"], "change_pct": None}
                if a["payout_currency"] != b["payout_currency"]:
                    moved.append(entry)  # a currency change is always shown
                elif old is not None and new is not None and old != 0:
                    change = (new - old) / abs(old)
                    if abs(change) > MOVE_THRESHOLD:
                        entry["change_pct"] = str((change * 100).quantize(Decimal("0.1")))
                        moved.append(entry)
        return {"previous_month": prev, "newly_paid": newly, "no_longer_paid": gone, "net_moved": moved,
                "threshold_pct": str(MOVE_THRESHOLD * 100)}


def format_amount(text: str | None) -> str:
    """A decimal string with thousands separators, its digits kept exactly (`-1234.50` -> `-1,234.50`)."""
    if text is None or text == "":
        return ""
    s = str(text)
    sign = ""
    if s[:1] in "+-":
        sign, s = ("-" if s[0] == "-" else ""), s[1:]
    whole, dot, frac = s.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        return str(text)
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    return sign + ",".join(groups) + (dot + frac if dot else "")
