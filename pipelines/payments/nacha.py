"""The NACHA ACH credit file (``ach_credit.ach``): one batch of CCD credits, and its rule check.

``ach_document`` writes 94-character ASCII records (LF after each) blocked in tens with all-9
padding: file header (1), batch header (5, service class 220, SEC CCD), an entry detail (6,
transaction code 22/32) and a 05 addenda carrying the payment reference (7) per payee, batch
control (8) and file control (9). ``validate_nacha`` re-reads the bytes against the Nacha record
rules and raises ``PaymentFileError`` on the first problem. Field by field: docs/payments.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timezone

from pipelines.payments.model import Payee, Payer, PaymentFileError
from pipelines.payments.route import FILE_ACH, Route, ach_payer_problem, valid_routing_number
from pipelines.payments.text import PRINTABLE_ASCII, nacha_text

__all__ = ["ACH_FILE", "RECORD_LENGTH", "ach_document", "validate_nacha"]

ACH_FILE = "ach_credit.ach"
RECORD_LENGTH = 94
BLOCKING_FACTOR = 10
SERVICE_CLASS = "220"  # ACH credits only
SEC = "CCD"
ENTRY_DESCRIPTION = "PAYOUTS"
CREDIT_CODES = {"22": "checking", "32": "savings"}
PAD = "9" * RECORD_LENGTH


def _alpha(text: str, width: int, what: str) -> str:
    if len(text) > width:
        raise PaymentFileError(f"NACHA {what}: {len(text)} characters, the field has {width}")
    return text.ljust(width)


def _num(value: int, width: int, what: str) -> str:
    text = str(value)
    if value < 0 or len(text) > width:
        raise PaymentFileError(f"NACHA {what}: {value} does not fit {width} digits")
    return text.rjust(width, "0")


def _record(*fields: str) -> str:
    rec = "".join(fields)
    assert len(rec) == RECORD_LENGTH, (fields, len(rec))
    return rec


def ach_document(
    month: str,
    items: Sequence[tuple[Payee, Route]],
    payer: Payer,
    *,
    execution_date: date,
    released_at: datetime,
) -> bytes:
    """``ach_credit.ach`` for the payees routed to ACH, checked by ``validate_nacha`` before returning."""
    problem = ach_payer_problem(payer.ach)
    if problem:
        raise PaymentFileError(f"NACHA: {problem}")
    assert payer.ach is not None
    ach = payer.ach
    if not items:
        raise PaymentFileError("NACHA: no payment to put in the file")
    if released_at.tzinfo is None or released_at.utcoffset() is None:
        raise PaymentFileError("released_at must be a timezone-aware datetime (UTC)")
    created = released_at.astimezone(timezone.utc)
    odfi = ach.odfi_routing.strip()
    odfi8 = odfi[:8]
    origin = (ach.immediate_origin or ach.company_id).strip()
    company_id = ach.company_id.strip()
    company_name = nacha_text(ach.company_name, 16)
    yyyymm = month.replace("-", "")

    records = [
        _record(
            "1",
            "01",
            " " + odfi,
            origin.rjust(10),
            created.strftime("%y%m%d"),
            created.strftime("%H%M"),
            "A",
            "094",
            f"{BLOCKING_FACTOR:02d}",
            "1",
            " " * 23,
            _alpha(nacha_text(ach.company_name, 23), 23, "immediate origin name"),
            _alpha(f"PO{yyyymm}", 8, "reference code"),
        ),
        _record(
            "5",
            SERVICE_CLASS,
            _alpha(company_name, 16, "company name"),
            " " * 20,
            _alpha(company_id, 10, "company identification"),
            SEC,
            _alpha(ENTRY_DESCRIPTION, 10, "company entry description"),
            " " * 6,
            execution_date.strftime("%y%m%d"),
            "   ",
            "1",
            odfi8,
            "0000001",
        ),
    ]
    ordered = sorted(items, key=lambda item: item[0].payment_reference)
    entry_hash = 0
    credits = 0
    for seq, (payee, r) in enumerate(ordered, 1):
        if r.file != FILE_ACH or r.routing is None or r.account is None or r.transaction_code is None:
            raise PaymentFileError(f"partner {payee.partner_id}: not routed to the ACH file")
        if payee.currency != "USD":
            raise PaymentFileError(f"partner {payee.partner_id}: an ACH entry is in USD, not {payee.currency}")
        trace = odfi8 + _num(seq, 7, "trace sequence")
        name = nacha_text(payee.name, 22) or nacha_text(payee.partner_id, 22)
        records.append(
            _record(
                "6",
                r.transaction_code,
                r.routing[:8],
                r.routing[8],
                _alpha(r.account.id, 17, f"DFI account number of partner {payee.partner_id}"),
                _num(payee.net_minor, 10, f"amount of partner {payee.partner_id}"),
                _alpha(payee.partner_id[:15], 15, "identification number"),
                _alpha(name, 22, "receiving company name"),
                "  ",
                "1",
                trace,
            )
        )
        records.append(
            _record(
                "7",
                "05",
                _alpha(payee.payment_reference, 80, "payment related information"),
                "0001",
                trace[-7:],
            )
        )
        entry_hash += int(r.routing[:8])
        credits += payee.net_minor
    entry_addenda = 2 * len(ordered)
    hash10 = entry_hash % 10**10
    records.append(
        _record(
            "8",
            SERVICE_CLASS,
            _num(entry_addenda, 6, "batch entry/addenda count"),
            _num(hash10, 10, "entry hash"),
            _num(0, 12, "total debits"),
            _num(credits, 12, "batch total credits"),
            _alpha(company_id, 10, "company identification"),
            " " * 19,
            " " * 6,
            odfi8,
            "0000001",
        )
    )
    blocks = -(-(len(records) + 1) // BLOCKING_FACTOR)
    records.append(
        _record(
            "9",
            _num(1, 6, "batch count"),
            _num(blocks, 6, "block count"),
            _num(entry_addenda, 8, "file entry/addenda count"),
            _num(hash10, 10, "entry hash"),
            _num(0, 12, "total debits"),
            _num(credits, 12, "file total credits"),
            " " * 39,
        )
    )
    records += [PAD] * (blocks * BLOCKING_FACTOR - len(records))
    data = ("\n".join(records) + "\n").encode("ascii")
    validate_nacha(data)
    return data


# --- validation ----------------------------------------------------------------------------------


class _Fail(Exception):
    pass


def _digits(rec: str, start: int, end: int, what: str) -> int:
    """The numeric field at 1-based positions start..end (inclusive)."""
    text = rec[start - 1 : end]
    if not text.isdigit() or not text.isascii():
        raise _Fail(f"{what} (positions {start}-{end}) is not numeric")
    return int(text)


def _yymmdd(text: str, what: str) -> None:
    try:
        datetime.strptime(text, "%y%m%d")
    except ValueError:
        raise _Fail(f"{what} {text!r} is not a YYMMDD date") from None


def validate_nacha(data: bytes) -> None:
    """Raise ``PaymentFileError`` naming the first rule ``data`` breaks (None when it follows them).

    Checks: ASCII, LF-terminated 94-character records of characters above 0x1F, a record count
    that is a multiple of 10 and matches the block count, record order 1 (5 (6 7*)+ 8)+ 9 and
    padding 9s, the file header constants, service class / SEC / originator status, routing check
    digits, transaction codes 22/32, trace numbers (ODFI + ascending sequence), addenda indicators,
    addenda type 05 and sequence numbers, and per batch and file the entry/addenda counts, entry
    hash, debit and credit totals, company id, ODFI and batch numbers.
    """
    try:
        _validate(data)
    except _Fail as e:
        raise PaymentFileError(f"{ACH_FILE}: {e}") from None


def _validate(data: bytes) -> None:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise _Fail("not ASCII") from None
    if not text.endswith("\n"):
        raise _Fail("the last record has no line end")
    lines = text[:-1].split("\n")
    for n, rec in enumerate(lines, 1):
        if len(rec) != RECORD_LENGTH:
            raise _Fail(f"line {n}: {len(rec)} characters, a record has {RECORD_LENGTH}")
        if any(ch not in PRINTABLE_ASCII for ch in rec):
            raise _Fail(f"line {n}: a character outside ASCII 0x20-0x7E")
    if len(lines) % BLOCKING_FACTOR:
        raise _Fail(f"{len(lines)} records is not a whole number of blocks of {BLOCKING_FACTOR}")

    header = lines[0]
    if header[0] != "1":
        raise _Fail("line 1: the file does not start with a file header (1) record")
    if header[1:3] != "01" or header[34:37] != "094" or header[37:39] != "10" or header[39] != "1":
        raise _Fail("line 1: priority code, record size, blocking factor or format code is wrong")
    if header[3] != " " or valid_routing_number(header[4:13]) is None:
        raise _Fail("line 1: immediate destination is not a blank and a valid routing number")
    if not header[13:23].strip():
        raise _Fail("line 1: immediate origin is blank")
    _yymmdd(header[23:29], "line 1: file creation date")
    hhmm = header[29:33]
    if not (hhmm.isdigit() and int(hhmm[:2]) < 24 and int(hhmm[2:]) < 60):
        raise _Fail("line 1: file creation time is not HHMM")
    if not (header[33].isupper() or header[33].isdigit()):
        raise _Fail("line 1: file id modifier is not A-Z or 0-9")

    i = 1
    batches = 0
    file_count = file_hash = file_debits = file_credits = 0
    while i < len(lines) and lines[i][0] == "5":
        batches += 1
        count, bhash, debits, credits, i = _batch(lines, i, batches)
        file_count += count
        file_hash += bhash
        file_debits += debits
        file_credits += credits
    if i >= len(lines) or lines[i][0] != "9":
        raise _Fail(f"line {i + 1}: expected a batch header (5) or the file control (9) record")
    if batches == 0:
        raise _Fail("the file has no batch")
    ctrl, n = lines[i], i + 1
    expect = {
        "batch count": (_digits(ctrl, 2, 7, f"line {n}: batch count"), batches),
        "block count": (_digits(ctrl, 8, 13, f"line {n}: block count"), len(lines) // BLOCKING_FACTOR),
        "entry/addenda count": (_digits(ctrl, 14, 21, f"line {n}: entry/addenda count"), file_count),
        "entry hash": (_digits(ctrl, 22, 31, f"line {n}: entry hash"), file_hash % 10**10),
        "total debits": (_digits(ctrl, 32, 43, f"line {n}: total debits"), file_debits),
        "total credits": (_digits(ctrl, 44, 55, f"line {n}: total credits"), file_credits),
    }
    for what, (found, wanted) in expect.items():
        if found != wanted:
            raise _Fail(f"line {n}: file control {what} is {found}, the file has {wanted}")
    if ctrl[55:].strip():
        raise _Fail(f"line {n}: file control reserved field is not blank")
    for k in range(i + 1, len(lines)):
        if lines[k] != PAD:
            raise _Fail(f"line {k + 1}: after the file control only all-9 padding records may follow")


def _batch(lines: list[str], i: int, number: int) -> tuple[int, int, int, int, int]:
    head, hn = lines[i], i + 1
    service = head[1:4]
    if service not in ("200", "220", "225"):
        raise _Fail(f"line {hn}: service class code {service!r} is not 200, 220 or 225")
    if head[50:53] != SEC:
        raise _Fail(f"line {hn}: standard entry class {head[50:53]!r} is not {SEC}")
    if not head[40:50].strip():
        raise _Fail(f"line {hn}: company identification is blank")
    if not head[53:63].strip():
        raise _Fail(f"line {hn}: company entry description is blank")
    _yymmdd(head[69:75], f"line {hn}: effective entry date")
    if head[78] != "1":
        raise _Fail(f"line {hn}: originator status code is not 1")
    odfi = head[79:87]
    if not odfi.isdigit():
        raise _Fail(f"line {hn}: originating DFI identification is not 8 digits")
    if _digits(head, 88, 94, f"line {hn}: batch number") != number:
        raise _Fail(f"line {hn}: batch number is not {number}")

    i += 1
    count = bhash = debits = credits = 0
    last_seq = 0
    entries = 0
    while i < len(lines) and lines[i][0] == "6":
        rec, n = lines[i], i + 1
        entries += 1
        code = rec[1:3]
        if code not in CREDIT_CODES:
            raise _Fail(f"line {n}: transaction code {code!r} is not a credit (22 or 32)")
        if service == "225":
            raise _Fail(f"line {n}: a credit in a debits-only (225) batch")
        if valid_routing_number(rec[3:12]) is None:
            raise _Fail(f"line {n}: receiving DFI identification and check digit are not a valid routing number")
        if not rec[12:29].strip() or rec[12] == " ":
            raise _Fail(f"line {n}: DFI account number is blank or not left-justified")
        amount = _digits(rec, 30, 39, f"line {n}: amount")
        if amount == 0:
            raise _Fail(f"line {n}: a zero-amount entry")
        trace = rec[79:94]
        if not trace.isdigit() or trace[:8] != odfi:
            raise _Fail(f"line {n}: trace number does not start with the batch's ODFI")
        seq = int(trace[8:])
        if seq <= last_seq:
            raise _Fail(f"line {n}: trace numbers are not ascending")
        last_seq = seq
        indicator = rec[78]
        if indicator not in "01":
            raise _Fail(f"line {n}: addenda record indicator is not 0 or 1")
        count += 1
        bhash += int(rec[3:11])
        credits += amount
        i += 1
        addenda = 0
        while i < len(lines) and lines[i][0] == "7":
            add, an = lines[i], i + 1
            addenda += 1
            if add[1:3] != "05":
                raise _Fail(f"line {an}: addenda type code {add[1:3]!r} is not 05")
            if _digits(add, 84, 87, f"line {an}: addenda sequence number") != addenda:
                raise _Fail(f"line {an}: addenda sequence number is not {addenda}")
            if add[87:94] != trace[8:]:
                raise _Fail(f"line {an}: entry detail sequence number is not the entry's trace sequence")
            count += 1
            i += 1
        if indicator == "1" and addenda == 0 or indicator == "0" and addenda:
            raise _Fail(f"line {n}: addenda record indicator {indicator} but {addenda} addenda records follow")
        if addenda > 1:
            raise _Fail(f"line {n}: a CCD entry has at most one addenda record")
    if entries == 0:
        raise _Fail(f"line {hn}: a batch without entries")
    if i >= len(lines) or lines[i][0] != "8":
        raise _Fail(f"line {i + 1}: expected an entry (6), addenda (7) or batch control (8) record")
    ctrl, n = lines[i], i + 1
    if ctrl[1:4] != service:
        raise _Fail(f"line {n}: batch control service class differs from the batch header's")
    expect = {
        "entry/addenda count": (_digits(ctrl, 5, 10, f"line {n}: entry/addenda count"), count),
        "entry hash": (_digits(ctrl, 11, 20, f"line {n}: entry hash"), bhash % 10**10),
        "total debits": (_digits(ctrl, 21, 32, f"line {n}: total debits"), debits),
        "total credits": (_digits(ctrl, 33, 44, f"line {n}: total credits"), credits),
    }
    for what, (found, wanted) in expect.items():
        if found != wanted:
            raise _Fail(f"line {n}: batch control {what} is {found}, the batch has {wanted}")
    if ctrl[44:54] != head[40:50]:
        raise _Fail(f"line {n}: batch control company identification differs from the batch header's")
    if ctrl[79:87] != odfi or ctrl[87:94] != head[87:94]:
        raise _Fail(f"line {n}: batch control ODFI or batch number differs from the batch header's")
    return count, bhash, debits, credits, i + 1
