"""Month close (SPEC section 7): states and transitions, tampering, adjustments, the audit chain, kills
in the middle of an approval, and commands that meet on one output root."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from builders import build, claim, partner, read_rows, sub

from pipelines import engine
from pipelines.close import audit, users
from pipelines.close.actions import Who
from pipelines.engine import PayoutError, run_month

ROOT = Path(__file__).resolve().parent.parent
MONTHS = ("2025-03", "2025-04", "2025-05")
FX = [{"rate_date": "2025-03-01", "currency": "EUR", "rate": "1.10"}]
ADJ = ("adjustment_id", "partner_id", "currency", "amount", "reason", "entered_by")


def adj(aid, pid, currency, amount, reason="correction", entered_by="maker"):
    return dict(zip(ADJ, (aid, pid, currency, amount, reason, entered_by)))


def tree(root: Path, adjustments: dict | None = None) -> Path:
    months = {m: {"subscription_billing": [sub(f"L{m}", "C1", "400.00", f"{m}-10")]} for m in MONTHS}
    for m, rows in (adjustments or {}).items():
        months[m]["adjustments"] = rows
    return build(root, partners=[partner("P1"), partner("P2", payout_currency="EUR")],
                 attributions=[claim("A1", "C1", "P1")], fx=FX, months=months)


def who(name="alice", **kw) -> Who:
    return Who(name, **kw)


@pytest.fixture
def three(tmp_path):
    data = tree(tmp_path / "data")
    out = tmp_path / "out"
    for m in MONTHS:
        run_month(data, out, m)
    return data, out


def states(out):
    return {r["month"]: r["state"] for r in engine.status(out)}


def last_audit(out) -> dict:
    return audit.read(out)[-1]


# --- the state machine ---------------------------------------------------------------------------

def test_every_transition_allowed_and_refused(three):
    data, out = three
    assert states(out) == {"2025-03": "draft", "2025-04": "draft", "2025-05": "draft"}

    def refused(fn, message):
        with pytest.raises(PayoutError) as exc:
            fn()
        assert str(exc.value) == message
        line = last_audit(out)
        assert line["outcome"] == "refused" and line["detail"] == message

    refused(lambda: engine.approve(data, out, "2025-04", who()),
            "approve 2025-03 first: months are approved oldest first")
    refused(lambda: engine.approve(data, out, "2025-06", who()), "2025-06 has not been computed")
    refused(lambda: engine.reopen(out, "2025-03", who(), "typo"), "2025-03 cannot be reopened: it is a draft")
    refused(lambda: engine.discard(out, "2025-03", who()), "only the latest month (2025-05) may be discarded")

    approval = engine.approve(data, out, "2025-03", who(), note="checked against the bank")
    assert states(out)["2025-03"] == "approved"
    assert approval["approved_by"] == "alice" and approval["note"] == "checked against the bank"
    assert approval["totals"] == {"USD": {"partners_paid": 1, "gross": "100.00", "withholding": "0.00",
                                          "net": "100.00"}}  # 400.00 x 0.25
    refused(lambda: engine.approve(data, out, "2025-03", who("bob")),
            f"2025-03 is already approved (approved by alice at {approval['approved_at']})")
    refused(lambda: engine.reopen(out, "2025-03", who(), "wrong rate"),
            "2025-03 cannot be reopened: 2025-04 was computed after it (discard it first)")
    with pytest.raises(PayoutError, match=r"^2025-03 is approved \(approved by alice at .*\): a locked month never "
                                          r"changes; corrections go into the next open month as adjustments$"):
        run_month(data, out, "2025-03")
    # drafts ran ahead; the latest draft may run again and be discarded, months close in order
    run_month(data, out, "2025-05")
    engine.discard(out, "2025-05", who())
    engine.approve(data, out, "2025-04", who("bob"))
    refused(lambda: engine.discard(out, "2025-04", who()),
            f"2025-04 is approved (approved by bob at {states_detail(out, '2025-04')}): only a draft may be discarded")
    refused(lambda: engine.reopen(out, "2025-04", who(), ""), "--reason is required: say why the month is reopened")
    engine.reopen(out, "2025-04", who(), "wrong rate")
    assert states(out) == {"2025-03": "approved", "2025-04": "draft"}
    engine.discard(out, "2025-04", who())
    assert states(out) == {"2025-03": "approved"}
    run_month(data, out, "2025-04")  # a discarded month runs again
    assert [(r["action"], r["month"], r["outcome"]) for r in audit.read(out)][-3:] == [
        ("reopen", "2025-04", "ok"), ("discard", "2025-04", "ok"), ("run", "2025-04", "ok")]


def states_detail(out, month) -> str:
    return json.loads((out / month / "approval.json").read_text())["approved_at"]


def test_a_locked_month_is_read_only_and_its_rerun_names_who_approved_it(three):
    data, out = three
    engine.approve(data, out, "2025-03", who("Dana"))
    folder = out / "2025-03"
    for p in [folder, *folder.rglob("*")]:
        mode = p.stat().st_mode & 0o777
        assert mode == (0o555 if p.is_dir() else 0o444), p
    approval = json.loads((folder / "approval.json").read_text())
    assert approval["manifest_sha256"] == audit.sha256((folder / "manifest.json").read_text())
    assert approval["audit_line_sha256"] in [audit.sha256(t) for t in (out / "audit.jsonl").read_text().splitlines()]


def test_a_discard_undoes_the_month_in_the_ledger(three):
    data, out = three
    before = (out / "2025-05" / "partner_balances.csv").read_bytes()
    engine.discard(out, "2025-05", who())
    assert not (out / "2025-05").exists()
    assert engine.ledger.latest_month(out) == "2025-04"
    run_month(data, out, "2025-05")
    assert (out / "2025-05" / "partner_balances.csv").read_bytes() == before


# --- tampering -------------------------------------------------------------------------------------

def test_a_changed_byte_in_any_file_of_a_draft_blocks_approval_and_verify_names_it(three):
    data, out = three
    folder = out / "2025-03"
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert len(files) >= 6
    for path in files:
        original = path.read_bytes()
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        rel = path.relative_to(out).as_posix()
        with pytest.raises(PayoutError, match=f"^{rel} differs from manifest.json: run 2025-03 again before approving$"):
            engine.approve(data, out, "2025-03", who())
        result = engine.verify(out, "2025-03")
        assert result["problems"] == [f"{rel} differs from manifest.json"] and not result["ok"]
        path.write_bytes(original)
    (folder / "extra.csv").write_text("planted\n")
    assert engine.verify(out, "2025-03")["problems"] == ["2025-03/extra.csv is not in manifest.json"]
    (folder / "extra.csv").unlink()
    assert engine.verify(out)["ok"]
    engine.approve(data, out, "2025-03", who())


def _rewrite(path: Path, old: str, new: str) -> None:
    path.chmod(0o644)
    path.write_text(path.read_text().replace(old, new))


def test_the_seals_are_checked_against_the_audit_log(three):
    """SPEC section 7: what approval and release add is verified like the manifest's files. An edited
    approver or releaser, a removed approval.json: verify names each; the month stays locked."""
    data, out = three
    engine.approve(data, out, "2025-03", who("bob"))
    engine.release(data, out, "2025-03", who("carol"), "2099-01-06")
    engine.approve(data, out, "2025-04", who("bob"))
    assert engine.verify(out)["ok"]
    seq = {(x["action"], x["month"]): x["seq"] for x in audit.read(out) if x["outcome"] == "ok"}
    _rewrite(out / "2025-03" / "approval.json", '"approved_by": "bob"', '"approved_by": "eve"')
    (out / "2025-03" / "payments").chmod(0o755)
    _rewrite(out / "2025-03" / "payments" / "payments.json", '"released_by": "carol"', '"released_by": "eve"')
    approval = out / "2025-04" / "approval.json"
    (out / "2025-04").chmod(0o755)
    approval.unlink()
    problems = engine.verify(out)["problems"]
    at = {x["seq"]: x["at"] for x in audit.read(out)}
    a3, r3, a4 = seq[("approve", "2025-03")], seq[("release", "2025-03")], seq[("approve", "2025-04")]
    assert problems == [
        f"2025-03/approval.json says eve: the audit log (line {a3}) says bob approved it at {at[a3]}",
        f"2025-03/payments/payments.json says eve: the audit log (line {r3}) says carol released it at {at[r3]}",
        f"2025-04/approval.json is missing: the audit log (line {a4}) says bob approved it at {at[a4]}",
    ]
    # without its approval.json April is still approved: not run again, not discarded, not approved twice
    assert states(out)["2025-04"] == "approved"
    engine.discard(out, "2025-05", who())
    with pytest.raises(PayoutError, match=f"^2025-04 is approved \\(approved by bob at {at[a4]}\\)"):
        run_month(data, out, "2025-04")
    with pytest.raises(PayoutError, match="only a draft may be discarded"):
        engine.discard(out, "2025-04", who())


def test_changed_exports_block_approval_and_changed_reference_data_warns(three):
    data, out = three
    path = data / "exports" / "2025-03" / "subscription_billing.csv"
    path.write_text(path.read_text() + "L9,I9,2025-03-11,C1,S,2025-01-01,platform,USD,1.00,charge,\n")
    with pytest.raises(PayoutError, match=r"^exports/2025-03/subscription_billing.csv changed since 2025-03 was "
                                          r"computed: run 2025-03 again before approving$"):
        engine.approve(data, out, "2025-03", who())
    (data / "exports" / "2025-03" / "adjustments.csv").write_text(",".join(ADJ) + "\n")  # a file added later
    (path.parent / "subscription_billing.csv").write_text(path.read_text().replace("L9,I9", "L8,I8"))
    with pytest.raises(PayoutError, match="changed since 2025-03 was computed"):
        engine.approve(data, out, "2025-03", who())
    # rerun it: the month is computed from the files as they are now
    (data / "exports" / "2025-03" / "adjustments.csv").unlink()
    ref = data / "reference" / "partners.csv"
    engine.discard(out, "2025-05", who())
    engine.discard(out, "2025-04", who())
    run_month(data, out, "2025-03")
    ref.write_text(ref.read_text().replace("Partner P1", "Partner P1 Ltd"))
    approval = engine.approve(data, out, "2025-03", who())
    assert approval["warnings"] == ["reference/partners.csv changed since 2025-03 was computed (see restatement)"]


def test_a_changed_export_of_a_locked_month_is_reported_by_later_runs_and_never_applied(three):
    """SPEC section 7: inputs of a locked month that change later are reported by the next run,
    never applied. March is approved; its export then gains a 1,000.00 charge for P1's customer."""
    data, out = three
    engine.discard(out, "2025-05", who())
    engine.approve(data, out, "2025-03", who())
    before = {p.name: p.read_bytes() for p in (out / "2025-03").rglob("*") if p.is_file()}
    april = (out / "2025-04" / "remittance.csv").read_bytes()
    export = data / "exports" / "2025-03" / "subscription_billing.csv"
    export.write_text(export.read_text() + "L9,I9,2025-03-11,C1,S,2025-01-01,platform,USD,1000.00,charge,\n")
    (data / "exports" / "2025-03" / "adjustments.csv").write_text(",".join(ADJ) + "\n")  # added after the lock
    run_month(data, out, "2025-04")
    reported = [(r["kind"], r["source_file"], r["record_id"], r["reason_code"])
                for r in read_rows(out / "2025-04" / "exceptions.csv") if r["reason_code"] == "locked_input_changed"]
    assert reported == [("reported", "exports/2025-03/adjustments.csv", "2025-03", "locked_input_changed"),
                        ("reported", "exports/2025-03/subscription_billing.csv", "2025-03", "locked_input_changed")]
    # never applied: April pays what it paid before, March's files are the same bytes
    assert (out / "2025-04" / "remittance.csv").read_bytes() == april
    assert {p.name: p.read_bytes() for p in (out / "2025-03").rglob("*") if p.is_file()} == before
    # a later run reports it again (from the digest cache: same answer); a removed export is no change
    run_month(data, out, "2025-05")
    assert sum(r["reason_code"] == "locked_input_changed" for r in read_rows(out / "2025-05" / "exceptions.csv")) == 2
    engine.discard(out, "2025-05", who())
    export.unlink()
    (data / "exports" / "2025-03" / "adjustments.csv").unlink()
    run_month(data, out, "2025-04")
    assert not [r for r in read_rows(out / "2025-04" / "exceptions.csv") if r["reason_code"] == "locked_input_changed"]


# --- who approves ------------------------------------------------------------------------------------

def test_the_maker_is_not_the_checker(tmp_path):
    data = tree(tmp_path / "data", {"2025-03": [adj("X1", "P1", "USD", "10.00", entered_by="Maria.Lopez")]})
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    with pytest.raises(PayoutError, match=r"^maria.lopez entered adjustments of 2025-03: the maker is not the checker"):
        engine.approve(data, out, "2025-03", who("maria.lopez"))
    with pytest.raises(PayoutError, match=r"the maker is not the checker"):
        engine.approve(data, out, "2025-03", who(" Maria.Lopez "))  # spaces at the edges are the same name
    approval = engine.approve(data, out, "2025-03", who("someone.else"))
    assert approval["month"] == "2025-03" and approval["approved_by"] == "someone.else"  # SPEC section 7's keys


def test_with_a_users_file_only_an_approver_with_its_password_approves(tmp_path, three):
    data, out = three
    file = tmp_path / "users.yaml"
    users.add(file, "alice", "approver", "correct horse battery")
    users.add(file, "vic", "viewer", "viewer password 1")
    assert "correct horse" not in file.read_text() and "$argon2id$" in file.read_text()
    assert file.stat().st_mode & 0o777 == 0o600
    with pytest.raises(PayoutError, match="^alice: unknown user or wrong password$"):
        engine.approve(data, out, "2025-03", Who("alice", file, "wrong"))
    with pytest.raises(PayoutError, match="^mallory: unknown user or wrong password$"):
        engine.approve(data, out, "2025-03", Who("mallory", file, "correct horse battery"))
    with pytest.raises(PayoutError, match="^vic is a viewer: only an approver may approve$"):
        engine.approve(data, out, "2025-03", Who("vic", file, "viewer password 1"))
    engine.approve(data, out, "2025-03", Who("alice", file, "correct horse battery"))


def test_the_cli_reads_the_password_from_standard_input(tmp_path, three):
    data, out = three
    file = tmp_path / "users.yaml"
    add = subprocess.run([sys.executable, "-m", "pipelines.cli", "users", "add", "alice", "--role", "approver",
                          "--password-stdin", "--users", str(file), "--out", str(out)],
                         input="correct horse battery\n", capture_output=True, text=True, cwd=ROOT)
    assert add.returncode == 0, add.stderr
    base = [sys.executable, "-m", "pipelines.cli", "approve", "--month", "2025-03", "--by", "alice", "--users",
            str(file), "--password-stdin", "--data", str(data), "--out", str(out)]
    bad = subprocess.run(base, input="nope\n", capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr.strip() == "payouts: alice: unknown user or wrong password"
    ok = subprocess.run(base, input="correct horse battery\n", capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert [(r["action"], r["actor"], r["outcome"]) for r in audit.read(out)][-3:] == [
        ("user_add", audit.os_user(), "ok"), ("approve", "alice", "refused"), ("approve", "alice", "ok")]


# --- adjustments -------------------------------------------------------------------------------------

def test_adjustments_computed_by_hand(tmp_path):
    data = tree(tmp_path / "data", {"2025-03": [
        adj("A1", "P1", "USD", "125.50", "returned wire re-sent"),
        adj("A2", "P1", "USD", "-40.00", "fee refunded twice"),
        adj("A3", "P2", "USD", "100.00", "late referral fee"),  # USD into an EUR payout: 100.00 / 1.10
        adj("A4", "P2", "EUR", "-10.00", "overpaid in February"),
    ]})
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    month = out / "2025-03"
    rows = {r["partner_id"]: r for r in read_rows(month / "partner_balances.csv")}
    # P1: share 400.00 x 0.25 = 100.00; adjustments 125.50 - 40.00 = 85.50; paid 185.50
    assert (rows["P1"]["earnings"], rows["P1"]["adjustments"], rows["P1"]["gross_paid"]) == ("100.00", "85.50", "185.50")
    # P2: 100.00 USD x 1 / 1.10 = 90.909.. -> 90.91 EUR; - 10.00 EUR = 80.91 >= minimum 50 / 1.10 = 45.45: paid
    assert (rows["P2"]["adjustments"], rows["P2"]["gross_paid"], rows["P2"]["status"]) == ("80.91", "80.91", "paid")
    statement = (month / "statements" / "P2.csv").read_text().splitlines()
    assert "adjustment,,exports/2025-03/adjustments.csv,A3,,,USD,,,,100.00,EUR,,late referral fee (entered by maker)" \
        in [line.split(",", 1)[1] for line in statement]
    summary = json.loads((month / "summary.json").read_text())
    assert summary["by_currency"]["USD"]["adjustments"] == "185.50"  # 125.50 - 40.00 + 100.00
    assert summary["by_currency"]["EUR"]["adjustments"] == "-10.00"
    assert summary["files"]["adjustments"] == {"read": 4, "used": 4, "quarantined": 0}


def test_adjustments_are_quarantined_like_every_input(tmp_path):
    data = tree(tmp_path / "data", {
        "2025-03": [adj("OLD", "P1", "USD", "5.00")],
        "2025-04": [
            adj("B1", "P1", "USD", "1.00", reason=""),
            adj("B2", "P1", "USD", "1.00", entered_by=""),
            adj("B3", "P1", "XXX", "1.00"),
            adj("B4", "P1", "USD", "abc"),
            adj("B5", "P1", "USD", "0.00"),
            adj("B6", "P1", "USD", "1.001"),
            adj("B7", "NOPE", "USD", "1.00"),
            adj("B8", "P1", "USD", "1.00"),
            adj("B8", "P1", "USD", "2.00"),
            adj("OLD", "P1", "USD", "1.00"),
        ]})
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    run_month(data, out, "2025-04")
    got = [(r["row_number"], r["record_id"], r["reason_code"]) for r in read_rows(out / "2025-04" / "exceptions.csv")
           if r["source_file"].endswith("adjustments.csv")]
    assert got == [("2", "B1", "missing_value"), ("3", "B2", "missing_value"), ("4", "B3", "unknown_currency"),
                   ("5", "B4", "bad_amount"), ("6", "B5", "bad_amount"), ("7", "B6", "too_many_decimals"),
                   ("8", "B7", "unknown_partner"), ("10", "B8", "duplicate_id"), ("11", "OLD", "duplicate_id")]
    rows = {r["partner_id"]: r for r in read_rows(out / "2025-04" / "partner_balances.csv")}
    assert rows["P1"]["adjustments"] == "1.00"  # only B8's first row


# --- the audit log -------------------------------------------------------------------------------------

def _log(out: Path, n: int = 5) -> list[str]:
    for i in range(n):
        audit.append(out, f"u{i}", "login", None, "ok", f"login {i}")
    return (out / "audit.jsonl").read_text().splitlines()


@pytest.mark.parametrize("tamper, line", [
    (lambda ls: ls[:2] + [ls[2].replace("login 2", "login X")] + ls[3:], 4),  # edited: the next line's prev breaks
    (lambda ls: ls[:1] + ls[2:], 2),  # removed
    (lambda ls: [ls[0], ls[2], ls[1]] + ls[3:], 2),  # reordered
    (lambda ls: ls[:4] + [ls[4].replace("login 4", "login X")], None),  # the last line edited: nothing follows it
])
def test_an_edited_removed_or_reordered_line_is_found(tmp_path, tamper, line):
    out = tmp_path / "out"
    lines = _log(out)
    (out / "audit.jsonl").write_text("\n".join(tamper(lines)) + "\n")
    check = audit.verify(out)
    assert check.broken_at == line
    if line is not None:
        proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "verify", "--out", str(out)], capture_output=True,
                              text=True, cwd=ROOT)
        assert proc.returncode == 1
        assert f"payouts: audit.jsonl: line {line} breaks the chain" in proc.stderr


def test_verify_prints_the_last_lines_hash(tmp_path):
    out = tmp_path / "out"
    lines = _log(out, 3)
    check = audit.verify(out)
    assert check.ok and check.lines == 3 and check.last_sha256 == audit.sha256(lines[-1])
    assert json.loads(lines[0])["prev"] == "0" * 64
    assert json.loads(lines[1])["prev"] == audit.sha256(lines[0])


def test_concurrent_appends_from_several_processes_keep_the_chain_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    script = textwrap.dedent("""
        import sys
        from pipelines.close import audit
        for i in range(40):
            audit.append(sys.argv[1], "p" + sys.argv[2], "download", "2025-03", "ok", f"file {i}")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(out), str(n)], cwd=ROOT) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    check = audit.verify(out)
    assert check.ok and check.lines == 160


def test_a_torn_last_line_is_cut_off_by_the_next_append(tmp_path):
    out = tmp_path / "out"
    _log(out, 2)
    with open(out / "audit.jsonl", "ab") as fh:
        fh.write(b'{"seq": 3, "at": "2026-')  # a crash in the middle of a write
    assert audit.verify(out).broken_at == 3
    audit.append(out, "me", "login", None, "ok")
    check = audit.verify(out)
    assert check.ok and check.lines == 3


# --- kills and concurrency ---------------------------------------------------------------------------

KILL = textwrap.dedent("""
    import os, sys
    from pipelines import engine
    from pipelines.close import audit, states
    from pipelines.close.actions import Who
    data, out, point = sys.argv[1:4]
    if point == "before_audit_line":
        real = audit.Log.append
        audit.Log.append = lambda self, line: os._exit(9)
    elif point == "after_audit_line":
        states._apply = lambda *a: os._exit(9)
    elif point == "mid_apply":
        real_ro = states.set_read_only
        states.set_read_only = lambda *a: os._exit(9)
    engine.approve(data, out, "2025-03", Who("alice"))
""")


@pytest.mark.parametrize("point, after", [("before_audit_line", "draft"), ("after_audit_line", "approved"),
                                          ("mid_apply", "approved")])
def test_a_kill_in_the_middle_of_approve_leaves_draft_or_approved(three, point, after):
    data, out = three
    proc = subprocess.run([sys.executable, "-c", KILL, str(data), str(out), point], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 9, proc.stderr
    assert states(out)["2025-03"] == after  # `status`, like every command, first finishes what was committed
    assert not (out / ".close-pending.json").exists()
    if after == "approved":
        approval = json.loads((out / "2025-03" / "approval.json").read_text())
        assert approval["audit_line_sha256"] == audit.sha256((out / "audit.jsonl").read_text().splitlines()[-1])
        assert (out / "2025-03" / "remittance.csv").stat().st_mode & 0o777 == 0o444
    else:
        engine.approve(data, out, "2025-03", who())
    assert audit.verify(out).ok
    assert engine.verify(out)["ok"]


def test_a_run_and_an_approval_at_once_do_not_interleave(three):
    data, out = three
    run = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--month", "2025-05", "--data", str(data),
                            "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    approve = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "approve", "--month", "2025-03", "--by", "alice",
                                "--data", str(data), "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    results = [p.communicate(timeout=300) for p in (run, approve)]
    assert (run.returncode, approve.returncode) == (0, 0), results
    assert states(out) == {"2025-03": "approved", "2025-04": "draft", "2025-05": "draft"}
    assert engine.verify(out)["ok"]
