"""The NACHA writer against an independent parser (carta-ach) and against the format's rules."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ach.parser import Parser
from paymentcases import EXECUTION, MONTH, PAYER, RELEASED, payee

from pipelines.payments import PaymentFileError, build_payment_files
from pipelines.payments.nacha import validate_nacha

# (partner, routing, account, type, cents): RDFI ids 02100002, 01100001, 02600959, 12210515
ENTRIES = [
    ("A1", "021000021", "1234", "checking", 1),
    ("A2", "011000015", "99999999999999999", None, 9_999_999_999),  # the largest entry: 99,999,999.99
    ("A3", "026009593", "000123", "savings", 250_00),
    ("A4", "122105155", "55555555", "checking", 12_345_67),
]


def _build(entries, payer=PAYER):
    payees = [
        payee(pid, "USD", cents, account_ref=acct, bank_code=routing, account_type=typ, country="US",
              name=f"Receiver {pid} Incorporated Limited")
        for pid, routing, acct, typ, cents in entries
    ]
    batch = build_payment_files(MONTH, payees, payer, execution_date=EXECUTION, released_at=RELEASED)
    assert set(batch.placement.values()) == {"ach_credit.ach"}
    return batch.files["ach_credit.ach"]


@pytest.fixture(scope="module")
def ach_bytes():
    return _build(ENTRIES)


def test_carta_ach_reads_what_was_written(ach_bytes):
    parsed = Parser(ach_bytes.decode("ascii")).as_dict()
    fh = parsed["file_header"]
    assert fh["immediate_dest"] == " 091000019"
    assert fh["immediate_org"] == "1234567890"
    assert (fh["file_crt_date"], fh["file_crt_time"], fh["file_id_mod"]) == ("250201", "0930", "A")
    assert (fh["record_size"], fh["blk_factor"], fh["format_code"]) == ("094", "10", "1")

    (batch,) = parsed["batches"]
    bh = batch["batch_header"]
    assert (bh["serv_cls_code"], bh["std_ent_cls_code"], bh["company_id"]) == ("220", "CCD", "1234567890")
    assert (bh["eff_ent_date"], bh["orig_stat_code"], bh["orig_dfi_id"]) == ("250203", "1", "09100001")

    got = []
    for entry in batch["entries"]:
        ed = entry["entry_detail"]
        (add,) = entry["addenda"]
        got.append(
            (
                ed["transaction_code"],
                ed["recv_dfi_id"] + ed["check_digit"],
                ed["dfi_acnt_num"].rstrip(),
                int(ed["amount"]),
                ed["ind_id"].rstrip(),
                ed["add_rec_ind"],
                add["addenda_type_code"],
                add["pmt_rel_info"].rstrip(),
                add["add_seq_num"],
                add["ent_det_seq_num"],
                ed["trace_num"],
            )
        )
    assert got == [
        ("22", "021000021", "1234", 1, "A1", "1", "05", "PO-202501-A1", "0001", "0000001", "091000010000001"),
        ("22", "011000015", "99999999999999999", 9_999_999_999, "A2", "1", "05", "PO-202501-A2", "0001",
         "0000002", "091000010000002"),
        ("32", "026009593", "000123", 25000, "A3", "1", "05", "PO-202501-A3", "0001", "0000003",
         "091000010000003"),
        ("22", "122105155", "55555555", 1234567, "A4", "1", "05", "PO-202501-A4", "0001", "0000004",
         "091000010000004"),
    ]
    # entry hash by hand: 02100002 + 01100001 + 02600959 + 12210515 = 18011477
    # credits by hand: 1 + 9999999999 + 25000 + 1234567 = 10001259567 cents
    bc = batch["batch_control"]
    assert (bc["entadd_count"], bc["entry_hash"]) == ("000008", "0018011477")
    assert (bc["debit_amount"], bc["credit_amount"]) == ("000000000000", "010001259567")
    fc = parsed["file_control"]
    assert (fc["batch_count"], fc["entadd_count"], fc["entry_hash"]) == ("000001", "00000008", "0018011477")
    assert (fc["debit_amount"], fc["credit_amount"]) == ("000000000000", "010001259567")
    # 1 + 1 + 8 + 1 + 1 = 12 records -> 2 blocks of 10
    assert fc["block_count"] == "000002"


def test_own_rules(ach_bytes):
    text = ach_bytes.decode("ascii")
    lines = text.split("\n")
    assert lines[-1] == ""  # LF after every record
    records = lines[:-1]
    assert len(records) == 20 and all(len(r) == 94 for r in records)
    assert [r[0] for r in records] == list("15676767678999999999")[:12] + ["9"] * 8
    assert records[12:] == ["9" * 94] * 8
    names = [r[54:76] for r in records if r[0] == "6"]
    assert names == ["RECEIVER A1 INCORPORAT", "RECEIVER A2 INCORPORAT", "RECEIVER A3 INCORPORAT",
                     "RECEIVER A4 INCORPORAT"]


def test_entry_hash_keeps_the_rightmost_ten_digits():
    # 150 entries to RDFI 72000000 (routing 720000005: 3*7 + 7*2 = 35, check digit 5):
    # 150 * 72000000 = 10,800,000,000 -> rightmost ten digits 0800000000
    entries = [(f"H{i:03d}", "720000005", "1000", None, 100) for i in range(150)]
    data = _build(entries)
    records = data.decode("ascii").splitlines()
    batch_control = next(r for r in records if r[0] == "8")
    file_control = next(r for r in records if r[0] == "9")
    assert batch_control[10:20] == "0800000000"
    assert file_control[21:31] == "0800000000"
    # 1 + 1 + 300 + 1 + 1 = 304 records -> 31 blocks, 310 records
    assert len(records) == 310 and file_control[7:13] == "000031"
    assert Parser(data.decode("ascii")).as_dict()["file_control"]["entadd_count"] == "00000300"


def _replace_line(data: bytes, index: int, start: int, new: str) -> bytes:
    lines = data.decode("ascii").split("\n")
    rec = lines[index]
    lines[index] = rec[:start] + new + rec[start + len(new):]
    return "\n".join(lines).encode("ascii")


def test_corrupted_amount_fails(ach_bytes):
    validate_nacha(ach_bytes)
    # entry 1 (line 3): amount 0000000001 -> 0000000002; the controls no longer match
    bad = _replace_line(ach_bytes, 2, 29, "0000000002")
    with pytest.raises(PaymentFileError, match="batch control total credits"):
        validate_nacha(bad)


@pytest.mark.parametrize(
    ("index", "start", "new", "message"),
    [
        (2, 11, "9", "valid routing number"),  # check digit of the first entry
        (10, 18, "99", "batch control entry hash"),  # line 11 (batch control), hash positions 19-20
        (0, 34, "095", "record size"),
        (3, 1, "06", "addenda type code"),
        (3, 83, "0002", "addenda sequence number"),
        (2, 1, "27", "not a credit"),
    ],
)
def test_other_corruptions_fail(ach_bytes, index, start, new, message):
    bad = _replace_line(ach_bytes, index, start, new)
    assert bad != ach_bytes
    with pytest.raises(PaymentFileError, match=message):
        validate_nacha(bad)


def test_structure_corruptions_fail(ach_bytes):
    text = ach_bytes.decode("ascii")
    with pytest.raises(PaymentFileError, match="93 characters"):
        validate_nacha(text.replace("PO202501", "PO20250", 1).encode("ascii"))
    with pytest.raises(PaymentFileError, match="blocks of 10"):
        validate_nacha(text[: -95].encode("ascii"))  # one padding record less
    with pytest.raises(PaymentFileError, match="line end"):
        validate_nacha(ach_bytes[:-1])
    with pytest.raises(PaymentFileError, match="not ASCII"):
        validate_nacha(ach_bytes.replace(b"RECEIVER A1", "RECEIVER \u00c41".encode("utf-8")[:11], 1))


def test_no_account_number_in_errors(ach_bytes):
    bad = _replace_line(ach_bytes, 4, 29, "0000000000")  # entry 2 amount 0
    with pytest.raises(PaymentFileError) as info:
        validate_nacha(bad)
    assert "99999999999999999" not in str(info.value)


def test_invalid_payer_ach_sends_ach_partners_to_manual():
    payer = replace(PAYER, ach=replace(PAYER.ach, odfi_routing="091000018"))
    p = payee("A1", "USD", 100, account_ref="1234", bank_code="021000021", country="US")
    batch = build_payment_files(MONTH, [p], payer, execution_date=EXECUTION, released_at=RELEASED)
    assert batch.manual == {"PO-202501-A1": "no_payer"}
    assert "ach_credit.ach" not in batch.files


def test_immediate_origin_nine_digits_right_justified():
    payer = replace(PAYER, ach=replace(PAYER.ach, immediate_origin="091000019"))
    data = _build(ENTRIES[:1], payer)
    assert data[13:23] == b" 091000019"
