"""`payouts release`: the payment files of the oldest approved month, written once (SPEC section 8).

From the month's remittance (what finance approved) and today's partners.csv and program.yaml: a
partner whose bank details changed since the month was computed (their sha256 is in manifest.json)
is paid by hand (`bank_details_changed`), never blindly; a changed payer block refuses the release
(reopen the month and run it again). The files are built and checked (`pipelines.payments`), staged
readable by their owner only, then committed with the release's audit line (`states.transact`),
which moves them into `<month>/payments/` and seals them with `payments.json`.
"""

from __future__ import annotations

import csv
import os
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

from pipelines.close.actions import Who, _authorise
from pipelines.close.states import APPROVED, MANIFEST, read_json, refuse, state, months, transact
from pipelines.core.money import minor_units, to_minor
from pipelines.core.program import Program
from pipelines.core.text import unsafe_text
from pipelines.ledger import outroot
from pipelines.payments import PaymentFileError, build_payment_files, details_hash, next_banking_day, payer_hash
from pipelines.payments.model import Payee, payer_from

PAYER_KEY = "payer"


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _unquote(text: str) -> str:
    """The remittance's text as written (a leading apostrophe guards formula-like text)."""
    return unsafe_text(text)


def release(out_dir: Path, data_dir: Path, month: str, who: Who, program: Program,
            execution_date: date | None = None, today: date | None = None) -> dict:
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    actor = _authorise(out_dir, who, "release", month)
    s = state(out_dir, month)
    if s is None:
        raise refuse(out_dir, actor, "release", month, f"{month} has not been computed")
    if s.state != APPROVED:
        why = f"it was already released ({s.who()})" if s.payments else "it is a draft: approve it first"
        raise refuse(out_dir, actor, "release", month, f"{month} cannot be released: {why}")
    oldest = next(m.month for m in months(out_dir) if m.state == APPROVED)
    if oldest != month:
        raise refuse(out_dir, actor, "release", month, f"release {oldest} first: months are released oldest first")
    released_at = datetime.now(timezone.utc).replace(microsecond=0)
    today = today or released_at.date()
    execution_date = execution_date or next_banking_day(today)
    if execution_date < today:
        raise refuse(out_dir, actor, "release", month,
                     f"execution date {execution_date} is before the release ({today})")
    folder = out_dir / month
    manifest = read_json(folder / MANIFEST) or {}
    recorded = manifest.get("bank_details", {})
    payer = payer_from(program.payer)
    if recorded.get(PAYER_KEY) is not None and recorded[PAYER_KEY] != payer_hash(payer):
        raise refuse(out_dir, actor, "release", month,
                     f"program.yaml's payer block changed since {month} was computed: reopen {month}, run it "
                     "again and approve it before releasing")
    partners = {r["partner_id"]: r for r in _read_csv(data_dir / "reference" / "partners.csv")}
    digits = minor_units()
    payees, changed = [], set()
    for row in _read_csv(folder / "remittance.csv"):
        pid = _unquote(row["partner_id"])
        currency = row["payout_currency"]
        p = partners.get(pid)
        payee = Payee(
            payment_reference=_unquote(row["payment_reference"]), partner_id=pid,
            name=(p or {}).get("name") or _unquote(row["partner_name"]), currency=currency,
            net_minor=to_minor(row["net_amount"], digits[currency]),
            payout_method=(p or {}).get("payout_method") or row["payout_method"],
            account_ref=(p or {}).get("account_ref") or "", bank_code=(p or {}).get("bank_code") or None,
            account_type=(p or {}).get("account_type") or None, country=(p or {}).get("country") or None)
        if p is None or details_hash(payee) != recorded.get(pid):
            changed.add(pid)
        payees.append(payee)
    try:
        batch = build_payment_files(month, payees, payer, execution_date=execution_date, released_at=released_at,
                                    changed=frozenset(changed))
    except PaymentFileError as exc:
        raise refuse(out_dir, actor, "release", month, f"the payment files failed their check: {exc}") from None
    staged = outroot.staging_dir(out_dir, f"release-{month}") / "payments"
    if staged.parent.exists():
        shutil.rmtree(staged.parent)
    staged.mkdir(parents=True, mode=0o700)
    for name, data in batch.files.items():
        fd = os.open(staged / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    payments_json = batch.payments_json() | {
        "released_by": actor, "released_at": released_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "execution_date": execution_date.isoformat(),
        "bank_details_changed": sorted(changed),
    }
    counts = ", ".join(f"{name} {summary.count}" for name, summary in sorted(batch.summary.items()))
    line = transact(out_dir, "release", month, actor, f"execution date {execution_date}; {counts}",
                    {"staged": str(staged), "payments_json": payments_json})
    return payments_json | {"audit_line_sha256": line.sha256}
