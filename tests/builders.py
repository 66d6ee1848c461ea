"""Build small input trees for tests from rows given as dicts (columns default to blank)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from pipelines.ingest.files import ALL_INPUTS

PROGRAM = Path(__file__).resolve().parent / "fixtures" / "program.yaml"
COLUMNS = {f.key: f.columns for f in ALL_INPUTS}


def write_csv(path: Path, columns, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([r.get(c, "") for c in columns] if isinstance(r, dict) else r)


def partner(pid, **kw):
    # bank details the ACH file takes (a valid ABA routing number, 4-17 digits), so that a test sees
    # no bank_details_unusable report unless it asks for one; the last 4 are 9876 as before
    row = dict(partner_id=pid, name=f"Partner {pid}", payout_currency="USD", payout_method="bank_transfer",
               account_ref="1234509876", bank_code="021000021", country="US", withholding_tax_pct="0",
               status="active")
    row.update(kw)
    return row


def claim(cid, customer, pid, **kw):
    row = dict(claim_id=cid, customer_id=customer, partner_id=pid, source="partner_of_record",
               engagement_type="partner_led", credit_pct="", valid_from="2024-01-01", valid_to="", status="approved")
    row.update(kw)
    return row


def sub(line_id, customer, amount, date, **kw):
    row = dict(line_id=line_id, invoice_id="I" + line_id, invoice_date=date, customer_id=customer,
               subscription_id="SUB" + customer, subscription_start="2025-01-01", product_family="platform",
               currency="USD", amount=amount, line_type="charge", refers_to_line_id="")
    row.update(kw)
    return row


def proj(line_id, pid, amount, date, engagement="partner_led", **kw):
    row = dict(line_id=line_id, invoice_id="I" + line_id, invoice_date=date, customer_id="C" + pid,
               currency="USD", amount=amount, line_type="charge", refers_to_line_id="", project_id="PRJ" + line_id,
               engagement_type=engagement, partner_id=pid, contract_value="10000.00", partner_contribution_pct="")
    row.update(kw)
    return row


def build(root: Path, *, partners, months: dict, attributions=(), levels=(), fx=(), program: str | None = None):
    """months: {"2025-03": {"subscription_billing": [...], "project_billing": [...], ...}}"""
    ref = root / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    if program is None:
        shutil.copy(PROGRAM, ref / "program.yaml")
    else:
        (ref / "program.yaml").write_text(program)
    write_csv(ref / "partners.csv", COLUMNS["partners"], partners)
    write_csv(ref / "partner_levels.csv", COLUMNS["partner_levels"], levels)
    write_csv(ref / "attributions.csv", COLUMNS["attributions"], attributions)
    write_csv(ref / "fx_rates.csv", COLUMNS["fx_rates"], fx)
    for month, files in months.items():
        exp = root / "exports" / month
        for key in ("subscription_billing", "project_billing"):
            write_csv(exp / f"{key}.csv", COLUMNS[key], files.get(key, ()))
        for key in ("referral_events", "partner_fees", "adjustments"):
            if key in files:
                write_csv(exp / f"{key}.csv", COLUMNS[key], files[key])
    return root


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
