"""ISO 20022 ``pain.001.001.09`` customer credit transfer initiations: the SEPA and international files.

Built with the standard library's ``xml.etree.ElementTree`` so that the bytes are a function of the
inputs only: elements in the schema's order, a fixed ``<?xml version="1.0" encoding="UTF-8"?>``
declaration, two-space indentation, LF line ends, a final newline. Every document is validated
against the official XSD shipped in the ``sepaxml`` package (loaded once, then cached) and checked
for its own control totals before its bytes are returned; a failure raises ``PaymentFileError``
naming the first problem (the transaction's end-to-end id, never a full account number).

- ``sepa_credit_transfer.xml``: one ``PmtInf`` (``PO-YYYYMM-SEPA-1``), ``SvcLvl/Cd`` ``SEPA``,
  ``ChrgBr`` ``SLEV``, EUR.
- ``international_credit_transfer.xml``: one ``PmtInf`` per currency (``PO-YYYYMM-INTL-<CUR>``,
  currencies in code order), ``ChrgBr`` ``DEBT``, creditor account IBAN or ``Othr/Id``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from importlib.resources import as_file, files

from pipelines.core.money import format_amount, minor_units
from pipelines.payments.model import Payee, Payer, PaymentFileError, last4
from pipelines.payments.route import FILE_INTERNATIONAL, FILE_SEPA, Account, Route, debtor_account, valid_bic
from pipelines.payments.text import sepa_text

__all__ = [
    "INTERNATIONAL_FILE",
    "NS",
    "SEPA_FILE",
    "international_document",
    "message_id",
    "sepa_document",
    "validate_pain001",
]

NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
SEPA_FILE = "sepa_credit_transfer.xml"
INTERNATIONAL_FILE = "international_credit_transfer.xml"
XSD_RESOURCE = ("sepaxml", "schemas/pain.001.001.09.xsd")
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


@lru_cache(maxsize=1)
def _schema():
    """The official pain.001.001.09 XSD from the installed sepaxml package (slow to build: cached)."""
    import xmlschema

    package, path = XSD_RESOURCE
    with as_file(files(package).joinpath(path)) as xsd:
        return xmlschema.XMLSchema(str(xsd))


def message_id(month: str, kind: str) -> str:
    """``PO-YYYYMM-SEPA`` / ``PO-YYYYMM-INTL``."""
    return f"PO-{month.replace('-', '')}-{kind}"


def _utc_seconds(released_at: datetime) -> str:
    if released_at.tzinfo is None or released_at.utcoffset() is None:
        raise PaymentFileError("released_at must be a timezone-aware datetime (UTC)")
    return released_at.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    e = ET.SubElement(parent, tag, attrib)  # unqualified: the root's xmlns puts them in NS
    if text is not None:
        e.text = text
    return e


def _path(parent: ET.Element, *tags: str) -> ET.Element:
    for tag in tags:
        parent = _el(parent, tag)
    return parent


def _account(parent: ET.Element, tag: str, account: Account) -> None:
    ident = _path(parent, tag, "Id")
    if account.is_iban:
        _el(ident, "IBAN", account.id)
    else:
        _el(_el(ident, "Othr"), "Id", account.id)


def _agent(parent: ET.Element, tag: str, bic: str | None) -> None:
    fin = _path(parent, tag, "FinInstnId")
    if bic:
        _el(fin, "BICFI", bic)
    else:  # EPC convention when the agent's BIC is not given
        _el(_el(fin, "Othr"), "Id", "NOTPROVIDED")


def _sum_text(amounts: Sequence[tuple[int, str]]) -> str:
    """CtrlSum: the plain decimal sum of the amounts, whatever their currencies (ISO 20022)."""
    total = sum((Decimal(format_amount(m, c)) for m, c in amounts), Decimal(0))
    digits = max((minor_units()[c] for _, c in amounts), default=0)
    return f"{total:.{digits}f}"


def _payer_name(payer: Payer) -> str:
    name = sepa_text(payer.name)
    if not name:
        raise PaymentFileError("payer.name has no character left in the SEPA character set")
    return name


def _creditor_name(payee: Payee) -> str:
    return sepa_text(payee.name) or sepa_text(payee.partner_id) or payee.payment_reference


def _transaction(pmt: ET.Element, payee: Payee, r: Route) -> None:
    tx = _el(pmt, "CdtTrfTxInf")
    _el(_el(tx, "PmtId"), "EndToEndId", payee.payment_reference)
    _el(_el(tx, "Amt"), "InstdAmt", format_amount(payee.net_minor, payee.currency), Ccy=payee.currency)
    if r.agent_bic:
        _agent(tx, "CdtrAgt", r.agent_bic)
    cdtr = _el(tx, "Cdtr")
    _el(cdtr, "Nm", _creditor_name(payee))
    if r.country:
        _el(_el(cdtr, "PstlAdr"), "Ctry", r.country)
    assert r.account is not None
    _account(tx, "CdtrAcct", r.account)
    _el(_el(tx, "RmtInf"), "Ustrd", payee.payment_reference)


def _payment_info(
    root: ET.Element,
    pmt_id: str,
    items: Sequence[tuple[Payee, Route]],
    payer: Payer,
    currency: str,
    execution_date: date,
    charge_bearer: str,
    sepa: bool,
) -> None:
    debtor = debtor_account(payer, currency)
    if debtor is None:
        raise PaymentFileError(f"the payer has no valid debtor account for {currency}")
    pmt = _el(root, "PmtInf")
    _el(pmt, "PmtInfId", pmt_id)
    _el(pmt, "PmtMtd", "TRF")
    _el(pmt, "NbOfTxs", str(len(items)))
    _el(pmt, "CtrlSum", _sum_text([(p.net_minor, p.currency) for p, _ in items]))
    if sepa:
        _el(_path(pmt, "PmtTpInf", "SvcLvl"), "Cd", "SEPA")
    _el(_el(pmt, "ReqdExctnDt"), "Dt", execution_date.isoformat())
    _el(_el(pmt, "Dbtr"), "Nm", _payer_name(payer))
    _account(pmt, "DbtrAcct", debtor)
    _agent(pmt, "DbtrAgt", valid_bic(payer.bic))
    _el(pmt, "ChrgBr", charge_bearer)
    for payee, r in items:
        _transaction(pmt, payee, r)


def _document(
    month: str,
    kind: str,
    blocks: Sequence[tuple[str, str, Sequence[tuple[Payee, Route]]]],
    payer: Payer,
    execution_date: date,
    released_at: datetime,
    charge_bearer: str,
    sepa: bool,
) -> bytes:
    everything = [item for _, _, items in blocks for item in items]
    if not everything:
        raise PaymentFileError(f"{message_id(month, kind)}: no payment to put in the file")
    doc = ET.Element("Document", {"xmlns": NS})
    root = _el(doc, "CstmrCdtTrfInitn")
    hdr = _el(root, "GrpHdr")
    _el(hdr, "MsgId", message_id(month, kind))
    _el(hdr, "CreDtTm", _utc_seconds(released_at))
    _el(hdr, "NbOfTxs", str(len(everything)))
    _el(hdr, "CtrlSum", _sum_text([(p.net_minor, p.currency) for p, _ in everything]))
    _el(_el(hdr, "InitgPty"), "Nm", _payer_name(payer))
    for pmt_id, currency, items in blocks:
        _payment_info(root, pmt_id, items, payer, currency, execution_date, charge_bearer, sepa)
    ET.indent(doc, space="  ")
    body = ET.tostring(doc, encoding="unicode")
    data = DECLARATION + body.encode("utf-8") + b"\n"
    validate_pain001(data)
    return data


def _ordered(items: Sequence[tuple[Payee, Route]], file: str) -> list[tuple[Payee, Route]]:
    for payee, r in items:
        if r.file != file:
            raise PaymentFileError(f"partner {payee.partner_id}: routed to {r.file or 'manual'}, not {file}")
    return sorted(items, key=lambda item: item[0].payment_reference)


def sepa_document(
    month: str,
    items: Sequence[tuple[Payee, Route]],
    payer: Payer,
    *,
    execution_date: date,
    released_at: datetime,
) -> bytes:
    """``sepa_credit_transfer.xml``: one EUR ``PmtInf`` with SvcLvl SEPA and ChrgBr SLEV."""
    ordered = _ordered(items, FILE_SEPA)
    for payee, _ in ordered:
        if payee.currency != "EUR":
            raise PaymentFileError(f"partner {payee.partner_id}: a SEPA transfer is in EUR, not {payee.currency}")
    pmt_id = f"{message_id(month, 'SEPA')}-1"
    return _document(month, "SEPA", [(pmt_id, "EUR", ordered)], payer, execution_date, released_at, "SLEV", True)


def international_document(
    month: str,
    items: Sequence[tuple[Payee, Route]],
    payer: Payer,
    *,
    execution_date: date,
    released_at: datetime,
) -> bytes:
    """``international_credit_transfer.xml``: one ``PmtInf`` per currency, ChrgBr DEBT."""
    ordered = _ordered(items, FILE_INTERNATIONAL)
    by_currency: dict[str, list[tuple[Payee, Route]]] = {}
    for item in ordered:
        by_currency.setdefault(item[0].currency, []).append(item)
    blocks = [
        (f"{message_id(month, 'INTL')}-{cur}", cur, by_currency[cur]) for cur in sorted(by_currency)
    ]
    return _document(month, "INTL", blocks, payer, execution_date, released_at, "DEBT", False)


# --- validation ----------------------------------------------------------------------------------


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def validate_pain001(data: bytes) -> None:
    """Raise ``PaymentFileError`` naming the first problem when ``data`` is not a valid pain.001.001.09
    document (XSD), or its NbOfTxs / CtrlSum do not match its transactions (group and each block)."""
    try:
        doc = ET.fromstring(data)
    except ET.ParseError as e:
        raise PaymentFileError(f"pain.001: not well-formed XML ({e})") from None
    accounts = [
        e.text
        for e in doc.iter()
        if e.text and (_local(e.tag) == "IBAN" or (_local(e.tag) == "Id" and e.text != "NOTPROVIDED"))
    ]
    error = next(iter(_schema().iter_errors(doc)), None)
    if error is not None:
        where = _where(doc, error.elem) if error.elem is not None else (error.path or "document")
        reason = str(error.reason or "invalid")
        for acct in accounts:
            if acct and len(acct) > 4:
                reason = reason.replace(acct, last4(acct))
        raise PaymentFileError(f"pain.001 fails the pain.001.001.09 schema at {where}: {reason}")
    _check_totals(doc)


def _where(doc: ET.Element, elem: ET.Element) -> str:
    parents = {child: parent for parent in doc.iter() for child in parent}
    steps: list[str] = []
    node: ET.Element | None = elem
    reference = None
    while node is not None:
        parent = parents.get(node)
        name = _local(node.tag)
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        steps.append(name)
        if _local(node.tag) == "CdtTrfTxInf":
            e2e = node.find(f"{_q('PmtId')}/{_q('EndToEndId')}")
            reference = e2e.text if e2e is not None else None
        node = parent
    path = "/" + "/".join(reversed(steps))
    return f"{path} (transaction {reference})" if reference else path


def _check_totals(doc: ET.Element) -> None:
    root = doc.find(_q("CstmrCdtTrfInitn"))
    assert root is not None  # the XSD guarantees it
    all_amounts: list[Decimal] = []
    for i, pmt in enumerate(root.findall(_q("PmtInf")), 1):
        amounts = [Decimal(a.text or "") for a in pmt.iter(_q("InstdAmt"))]
        all_amounts += amounts
        _expect(pmt, f"PmtInf[{i}]", amounts)
    _expect(root.find(_q("GrpHdr")), "GrpHdr", all_amounts)


def _expect(block: ET.Element | None, name: str, amounts: list[Decimal]) -> None:
    assert block is not None
    n = block.findtext(_q("NbOfTxs"))
    if n != str(len(amounts)):
        raise PaymentFileError(f"pain.001: {name}/NbOfTxs is {n}, the block has {len(amounts)} transactions")
    ctrl = block.findtext(_q("CtrlSum"))
    if ctrl is None or Decimal(ctrl) != sum(amounts, Decimal(0)):
        raise PaymentFileError(f"pain.001: {name}/CtrlSum is {ctrl}, its amounts add up to {sum(amounts, Decimal(0))}")
