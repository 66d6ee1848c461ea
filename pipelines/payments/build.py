"""A month's payment files from its paid partners: route, write, read back, check, summarise.

``build_payment_files`` routes every payee (``route``), writes each file that has at least one
payment plus ``manual_payments.csv`` (always), then reads every file's bytes back independently of
the writers and checks that each payment reference appears in exactly one file and that, per
currency, the files' amounts plus the manual ones equal the payees' net. Any failure raises
``PaymentFileError``; nothing is returned half-checked. The same inputs give the same bytes, in
whatever order the payees come.
"""

from __future__ import annotations

import csv
import hashlib
import io
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from pipelines.core.money import format_amount, minor_units
from pipelines.core.months import BillingMonth, BillingMonthError
from pipelines.core.text import safe_text, unsafe_text
from pipelines.payments.model import Payee, Payer, PaymentFileError
from pipelines.payments.nacha import ACH_FILE, ach_document
from pipelines.payments.pain001 import INTERNATIONAL_FILE, NS, SEPA_FILE, international_document, sepa_document
from pipelines.payments.paypal import paypal_documents
from pipelines.payments.route import (
    FILE_ACH,
    FILE_INTERNATIONAL,
    FILE_PAYPAL,
    FILE_SEPA,
    PAYPAL_WHOLE_UNITS,
    Route,
    route,
)

__all__ = [
    "MANUAL_FILE",
    "MANUAL_HEADER",
    "FileSummary",
    "PaymentBatch",
    "build_payment_files",
    "next_banking_day",
]

MANUAL_FILE = "manual_payments.csv"
MANUAL_HEADER = ("payment_reference", "partner_id", "payout_currency", "net_amount", "reason")


def next_banking_day(d: date) -> date:
    """The next Monday-Friday day strictly after ``d``. Bank holidays are not modelled."""
    d += timedelta(days=1)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


@dataclass(frozen=True)
class FileSummary:
    """One file's line in payments.json: its payment count, control sum per currency, sha256."""

    count: int
    control_sums: Mapping[str, str]  # currency -> amount with the currency's digits
    sha256: str

    def as_json(self) -> dict[str, object]:
        return {"count": self.count, "control_sum": dict(self.control_sums), "sha256": self.sha256}


@dataclass(frozen=True)
class PaymentBatch:
    """Every payment file of a release (name -> bytes) and what payments.json says about them."""

    month: str
    execution_date: date
    files: Mapping[str, bytes] = field(repr=False)  # sorted by name; manual_payments.csv always
    summary: Mapping[str, FileSummary]  # file name -> summary, same keys as files
    placement: Mapping[str, str]  # payment_reference -> file name
    routes: Mapping[str, Route]  # payment_reference -> route (manual ones carry the reason)
    totals: Mapping[str, str]  # currency -> the payees' net, which the files add up to

    @property
    def manual(self) -> dict[str, str]:
        """payment_reference -> reason, for the payees in manual_payments.csv."""
        return {ref: r.reason for ref, r in self.routes.items() if r.reason is not None}

    def payments_json(self) -> dict[str, object]:
        """payments.json without the release's audit-line hash (the release command adds it)."""
        return {
            "month": self.month,
            "execution_date": self.execution_date.isoformat(),
            "files": {name: s.as_json() for name, s in self.summary.items()},
            "totals": dict(self.totals),
            "identity": "files + manual = payees' net, per currency: checked",
        }


def _to_minor(text: str, currency: str, where: str) -> int:
    digits = minor_units().get(currency)
    if digits is None:
        raise PaymentFileError(f"{where}: unknown currency {currency!r}")
    try:
        value = Decimal(text).scaleb(digits)
    except InvalidOperation:
        raise PaymentFileError(f"{where}: amount {text!r} is not a number") from None
    if value != value.to_integral_value():
        raise PaymentFileError(f"{where}: amount {text!r} has more than {digits} decimals")
    return int(value)


def _manual_csv(items: Sequence[tuple[Payee, Route]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANUAL_HEADER)
    for payee, r in sorted(items, key=lambda item: item[0].payment_reference):
        assert r.reason is not None
        writer.writerow(
            [
                safe_text(payee.payment_reference),
                safe_text(payee.partner_id),
                safe_text(payee.currency),
                format_amount(payee.net_minor, payee.currency),
                r.reason,
            ]
        )
    return buf.getvalue().encode("utf-8")


def _check_inputs(month: str, payees: Sequence[Payee], execution_date: date, released_at: datetime) -> None:
    try:
        BillingMonth.parse(month)
    except BillingMonthError:
        raise PaymentFileError(f"month must be YYYY-MM, got {month!r}") from None
    if released_at.tzinfo is None or released_at.utcoffset() is None:
        raise PaymentFileError("released_at must be a timezone-aware datetime (UTC)")
    release_day = released_at.astimezone(timezone.utc).date()
    if execution_date < release_day:
        raise PaymentFileError(f"execution date {execution_date} is before the release ({release_day})")
    if execution_date.weekday() >= 5:
        raise PaymentFileError(f"execution date {execution_date} is a {execution_date:%A}, not a banking day")
    prefix = f"PO-{month.replace('-', '')}-"
    refs: set[str] = set()
    ids: set[str] = set()
    for p in payees:
        if not isinstance(p, Payee):
            raise PaymentFileError(f"not a Payee: {type(p).__name__}")
        if p.payment_reference != prefix + p.partner_id:
            raise PaymentFileError(f"partner {p.partner_id}: payment reference is not {prefix}<partner_id>")
        if p.payment_reference in refs or p.partner_id in ids:
            raise PaymentFileError(f"partner {p.partner_id}: paid twice in one release")
        refs.add(p.payment_reference)
        ids.add(p.partner_id)
        if type(p.net_minor) is not int or p.net_minor <= 0:
            raise PaymentFileError(f"partner {p.partner_id}: net amount must be a positive integer of minor units")
        if p.currency not in minor_units():
            raise PaymentFileError(f"partner {p.partner_id}: unknown payout currency {p.currency!r}")


def build_payment_files(
    month: str,
    payees: Sequence[Payee],
    payer: Payer | None,
    *,
    execution_date: date,
    released_at: datetime,
    changed: AbstractSet[str] = frozenset(),
) -> PaymentBatch:
    """Every payment file for ``month``'s paid partners, checked (module docstring).

    ``execution_date`` is the requested execution / effective entry date (a Monday-Friday not
    before the release's UTC date; default it with ``next_banking_day``); ``released_at`` a
    timezone-aware release time (CreDtTm, NACHA creation date and time); ``changed`` the partner
    ids whose bank details changed since the month was computed (paid manually).
    """
    _check_inputs(month, payees, execution_date, released_at)
    ordered = sorted(payees, key=lambda p: p.payment_reference)
    routes = {p.payment_reference: route(p, payer, changed) for p in ordered}
    groups: dict[str | None, list[tuple[Payee, Route]]] = {}
    for p in ordered:
        r = routes[p.payment_reference]
        groups.setdefault(r.file, []).append((p, r))

    files: dict[str, bytes] = {}
    kw = {"execution_date": execution_date, "released_at": released_at}
    if groups.get(FILE_SEPA):
        assert payer is not None
        files[SEPA_FILE] = sepa_document(month, groups[FILE_SEPA], payer, **kw)
    if groups.get(FILE_INTERNATIONAL):
        assert payer is not None
        files[INTERNATIONAL_FILE] = international_document(month, groups[FILE_INTERNATIONAL], payer, **kw)
    if groups.get(FILE_ACH):
        assert payer is not None
        files[ACH_FILE] = ach_document(month, groups[FILE_ACH], payer, **kw)
    if groups.get(FILE_PAYPAL):
        files.update(paypal_documents(month, groups[FILE_PAYPAL]))
    files[MANUAL_FILE] = _manual_csv(groups.get(None, []))
    files = dict(sorted(files.items()))

    found = {name: _read_back(name, data) for name, data in files.items()}
    placement = _check_identity(ordered, found)
    totals: dict[str, int] = {}
    for p in ordered:
        totals[p.currency] = totals.get(p.currency, 0) + p.net_minor
    summary = {name: _summary(found[name], data) for name, data in files.items()}
    return PaymentBatch(
        month=month,
        execution_date=execution_date,
        files=files,
        summary=summary,
        placement=placement,
        routes=routes,
        totals={cur: format_amount(v, cur) for cur, v in sorted(totals.items())},
    )


# --- reading the files back ----------------------------------------------------------------------

Found = list[tuple[str, str, int]]  # (payment_reference, currency, minor)


def _read_back(name: str, data: bytes) -> Found:
    if name.endswith(".xml"):
        return _read_pain001(name, data)
    if name == ACH_FILE:
        return _read_nacha(data)
    if name == MANUAL_FILE:
        return _read_manual(data)
    if name.startswith("paypal_payouts_"):
        return _read_paypal(name, data)
    raise PaymentFileError(f"unexpected payment file {name}")


def _read_pain001(name: str, data: bytes) -> Found:
    q = lambda tag: f"{{{NS}}}{tag}"  # noqa: E731
    out: Found = []
    for tx in ET.fromstring(data).iter(q("CdtTrfTxInf")):
        ref = tx.findtext(f"{q('PmtId')}/{q('EndToEndId')}") or ""
        amt = tx.find(f"{q('Amt')}/{q('InstdAmt')}")
        if amt is None:
            raise PaymentFileError(f"{name}: transaction {ref} has no InstdAmt")
        cur = amt.get("Ccy", "")
        out.append((ref, cur, _to_minor(amt.text or "", cur, f"{name} {ref}")))
    return out


def _read_nacha(data: bytes) -> Found:
    lines = data.decode("ascii").splitlines()
    out: Found = []
    for i, rec in enumerate(lines):
        if rec.startswith("6"):
            addenda = lines[i + 1] if i + 1 < len(lines) else ""
            if not addenda.startswith("705"):
                raise PaymentFileError(f"{ACH_FILE} line {i + 1}: an entry without its 705 addenda")
            out.append((addenda[3:83].rstrip(), "USD", int(rec[29:39])))
    return out


def _read_paypal(name: str, data: bytes) -> Found:
    out: Found = []
    for row in csv.reader(io.StringIO(data.decode("utf-8"))):
        if len(row) != 5:
            raise PaymentFileError(f"{name}: a row with {len(row)} columns, not 5")
        _, amount, cur, ref, _ = row
        if name.split("_")[2].split(".")[0] != cur:
            raise PaymentFileError(f"{name}: a {cur} row in another currency's file")
        digits = 0 if cur in PAYPAL_WHOLE_UNITS else minor_units()[cur]
        minor = _to_minor(amount, cur, f"{name} {ref}") if digits else int(amount) * 10 ** minor_units()[cur]
        out.append((ref, cur, minor))
    return out


def _read_manual(data: bytes) -> Found:
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    header = next(reader, None)
    if tuple(header or ()) != MANUAL_HEADER:
        raise PaymentFileError(f"{MANUAL_FILE}: header is not {','.join(MANUAL_HEADER)}")
    out: Found = []
    for row in reader:
        ref, cur = unsafe_text(row[0]), unsafe_text(row[2])
        out.append((ref, cur, _to_minor(row[3], cur, f"{MANUAL_FILE} {ref}")))
    return out


def _check_identity(payees: Sequence[Payee], found: Mapping[str, Found]) -> dict[str, str]:
    """Each payee in exactly one file, for its net; per currency files + manual = payees' net."""
    placement: dict[str, str] = {}
    by_ref = {p.payment_reference: p for p in payees}
    for name, rows in found.items():
        for ref, cur, minor in rows:
            payee = by_ref.get(ref)
            if payee is None:
                raise PaymentFileError(f"{name}: payment {ref} is not one of the month's paid partners")
            if ref in placement:
                raise PaymentFileError(f"partner {payee.partner_id}: in both {placement[ref]} and {name}")
            if cur != payee.currency or minor != payee.net_minor:
                raise PaymentFileError(f"partner {payee.partner_id}: {name} pays a different amount or currency")
            placement[ref] = name
    missing = [p.partner_id for p in payees if p.payment_reference not in placement]
    if missing:
        raise PaymentFileError(f"partners in no payment file: {', '.join(missing[:10])}")
    want: dict[str, int] = {}
    got: dict[str, int] = {}
    for p in payees:
        want[p.currency] = want.get(p.currency, 0) + p.net_minor
    for rows in found.values():
        for _, cur, minor in rows:
            got[cur] = got.get(cur, 0) + minor
    if want != got:
        raise PaymentFileError(f"the files add up to {got}, the payees' net is {want} (minor units)")
    return dict(sorted(placement.items()))


def _summary(rows: Found, data: bytes) -> FileSummary:
    sums: dict[str, int] = {}
    for _, cur, minor in rows:
        sums[cur] = sums.get(cur, 0) + minor
    return FileSummary(
        count=len(rows),
        control_sums={cur: format_amount(v, cur) for cur, v in sorted(sums.items())},
        sha256=hashlib.sha256(data).hexdigest(),
    )
