"""What the engine guarantees under crashes, concurrent commands and malformed files (docs/guarantees.md).

Each test reproduces a defect found by trying the product as a new user would: a failed publish that
left the month published, an open quote that swallowed the rest of a file, statements that shared a
file, a lost ledger taken for a first run, one unreadable row that aborted the month, concurrent
commands that failed with internal errors, and a few smaller ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from builders import build, claim, partner, proj, sub
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import engine
from pipelines.ledger import outroot
from pipelines.ledger import store as ledger
from pipelines.publish import outputs
from pipelines.engine import PayoutError, run_month

ROOT = Path(__file__).resolve().parent.parent
MONTHS = ("2025-03", "2025-04", "2025-05")


def _tree(root: Path, extra: dict | None = None) -> Path:
    months = {m: {"subscription_billing": [sub(f"L{m}", "C1", "400.00", f"{m}-10")]} for m in MONTHS}
    for m, files in (extra or {}).items():
        for key, rows in files.items():
            months[m].setdefault(key, []).extend(rows)
    return build(root, partners=[partner("P1"), partner("P2")],
                 attributions=[claim("A1", "C1", "P1")], months=months)


def _snapshot(root: Path) -> dict[str, str]:
    """Every file of the output root but the locks and the audit log, which records each refusal too."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".lock" not in p.name and not p.name.startswith("audit.")}


def _months(out: Path) -> dict[str, str]:
    """Every published month's files (not the ledger, whose bytes depend on DuckDB's layout)."""
    return {k: v for k, v in _snapshot(out).items() if k[:4].isdigit()}


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, **kw)


# --- 1. a month is published together with its ledger update, or not at all ----------------------

def test_a_publish_whose_ledger_commit_fails_publishes_nothing(tmp_path):
    """The issue's reproduction: a 100,000.00 partner-led project charge added to the latest month
    and rerun while another process holds the ledger open. Before the fix the folder was published
    with the share paid although the ledger did not know the charge. Band 50,000-250,000: rate 0.75,
    so the charge pays 75,000.00; the month's subscription line 400.00 x 0.25 = 100.00."""
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    run_month(data, out, "2025-04")
    before = _snapshot(out)
    path = data / "exports" / "2025-04" / "project_billing.csv"
    path.write_text(path.read_text() + "BIG1,IBIG,2025-04-15,C9,USD,100000.00,charge,,PRJ,partner_led,P1,100000.00,\n")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(out / 'ledger.duckdb')!r}, read_only=True)
        print('holding', flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(PayoutError, match="could not update the ledger, nothing was published"):
            run_month(data, out, "2025-04")
    finally:
        holder.kill()
        holder.wait()
    assert _snapshot(out) == before  # the old April, its ledger, no staging left
    remittance = (out / "2025-04" / "remittance.csv").read_text()
    assert "P1,Partner P1,USD,100.00,0.00,100.00" in remittance
    run_month(data, out, "2025-04")  # once the ledger is free the rerun goes through
    assert "P1,Partner P1,USD,75100.00,0.00,75100.00" in (out / "2025-04" / "remittance.csv").read_text()


CRASH = textwrap.dedent("""
    import os, sys
    from pipelines import engine
    from pipelines.ledger import store as ledger
    data, out, month, point = sys.argv[1:5]
    real_swap = engine._swap_in
    if point == "after_commit":          # the ledger committed, the folder not moved yet
        engine._swap_in = lambda *a: os._exit(9)
    elif point == "between_renames":     # the old folder moved aside, the new one not moved in
        def half(out_dir, m, staged):
            target = out_dir / m
            if target.exists():
                os.replace(target, engine.staging_dir(out_dir, m) / "replaced")
            os._exit(9)
        engine._swap_in = half
    elif point == "before_commit":       # the ledger's big files moved, the transaction not committed
        ledger.ledger_path = lambda *a: os._exit(9)
    elif point == "in_compute":
        engine.outputs.write_month = lambda *a, **k: os._exit(9)
    engine.run_month(data, out, month)
""")


@pytest.mark.parametrize("point", ["in_compute", "before_commit", "after_commit", "between_renames"])
def test_a_kill_at_any_moment_of_a_rerun_leaves_the_old_or_the_new_month(tmp_path, point):
    """Killed while rerunning the latest month with changed inputs: the next command sees either the
    old month with the old ledger, or the new month with the new ledger (never one without the
    other), and the next month then comes out byte-identical to a run that was never killed."""
    data = _tree(tmp_path / "data")
    clean, out = tmp_path / "clean", tmp_path / "out"
    run_month(data, out, "2025-03")
    old = _months(out)
    path = data / "exports" / "2025-03" / "subscription_billing.csv"
    path.write_text(path.read_text() + "L-late,IL,2025-03-20,C1,SUBC1,2025-01-01,platform,USD,100.00,charge,\n")
    proc = subprocess.run([sys.executable, "-c", CRASH, str(data), str(out), "2025-03", point], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    run_month(data, clean, "2025-03")
    new = _months(clean)
    with outroot.exclusive(out, "test"):
        engine.open_out_root(out)  # what every command does first
    published = {k: v for k, v in _months(out).items() if k.startswith("2025-03")}
    if point in ("in_compute", "before_commit"):
        assert published == old
        assert ledger.committed(out)[1] == outputs.manifest_sha256(out / "2025-03")
        run_month(data, out, "2025-03")  # the rerun the kill interrupted
    else:
        assert published == new  # the commit went through: the folder was moved in
    run_month(data, out, "2025-04")
    run_month(data, clean, "2025-04")
    assert _months(out) == _months(clean)
    assert not (out / ".staging").exists()
    assert sorted(f"ledger_files/{p.name}" for p in (out / "ledger_files").iterdir()) == \
        sorted(d for (d,) in _ledger_rows(out, "select dir from month_files"))


def _ledger_rows(out: Path, sql: str) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(out / "ledger.duckdb"), read_only=True)
    try:
        return [tuple(r) for r in con.execute(sql).fetchall()]
    finally:
        con.close()


def test_a_random_kill_during_a_run_leaves_the_month_absent_or_whole(tmp_path):
    data = _tree(tmp_path / "data")
    clean, out = tmp_path / "clean", tmp_path / "out"
    run_month(data, clean, "2025-03")
    for delay in (0.5, 1.5, 3.0):
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--month", "2025-03", "--data",
                                 str(data), "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        month = {k: v for k, v in _months(out).items()}
        assert month in ({}, _months(clean))
    run_month(data, out, "2025-03")
    assert _months(out) == _months(clean)
    assert not (out / ".staging").exists()


def test_a_folder_the_ledger_does_not_know_stops_the_next_month(tmp_path):
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    (out / "2025-04").mkdir()
    (out / "2025-04" / "remittance.csv").write_text("copied by hand\n")
    with pytest.raises(PayoutError, match="2025-04 is in the output folder but the ledger ends at 2025-03"):
        run_month(data, out, "2025-04")


def test_a_changed_or_missing_previous_month_folder_is_named(tmp_path):
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    (out / "2025-03" / "manifest.json").write_text("{}\n")
    with pytest.raises(PayoutError, match=r"2025-03/manifest.json is not the one the ledger published"):
        run_month(data, out, "2025-04")
    os.rename(out / "2025-03", tmp_path / "aside")
    with pytest.raises(PayoutError, match=r"the ledger has 2025-03 but its folder 2025-03/ is missing"):
        run_month(data, out, "2025-04")
    # rerunning the latest month is the fix the message names
    run_month(data, out, "2025-03")
    run_month(data, out, "2025-04")


def test_a_missing_earlier_folder_is_reported_as_missing_not_as_a_balance_mismatch(tmp_path):
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    run_month(data, out, "2025-04")
    os.rename(out / "2025-03", tmp_path / "aside")
    with pytest.raises(PayoutError, match=r"2025-03/partner_balances.csv is missing"):
        run_month(data, out, "2025-04")  # the rerun of April reads March's closing balances


# --- 2. an unterminated quote stops the run, naming the line ---------------------------------------

def test_an_unterminated_quote_stops_the_run_naming_its_line(tmp_path):
    data = _tree(tmp_path / "data")
    path = data / "exports" / "2025-03" / "subscription_billing.csv"
    rows = [f"L{i},I{i},2025-03-10,C1,S,2025-01-01,platform,USD,1.00,charge," for i in range(2, 9)]
    rows.insert(3, 'FZ-S-1,"INV-FZ-1,2025-03-10,C1,S,2025-01-01,platform,USD,1.00,charge,')
    rows.append('L20,"I, quoted",2025-03-10,C1,S,2025-01-01,platform,USD,1.00,charge,')  # a later, good quote
    path.write_text(path.read_text() + "\n".join(rows) + "\n")
    proc = _cli("run", "--month", "2025-03", "--data", str(data), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    # header (1), L2025-03 (2), L2..L4 (3-5): the stray quote is on line 6
    assert proc.stderr.strip() == ("payouts: exports/2025-03/subscription_billing.csv: a quoted field opened on "
                                   "line 6 is never closed (it would swallow every row after it)")
    assert not (tmp_path / "out" / "2025-03").exists()


# --- 3. statement file names never collide -----------------------------------------------------

@pytest.mark.parametrize("ids", [("a/b", "a_b-612f62"), ("PARTNER-0001/A", "PARTNER-0001:A"), ("a.b", "a%2Eb")])
def test_two_partners_never_share_a_statement(tmp_path, ids):
    one, two = ids
    data = build(tmp_path / "data", partners=[partner(one), partner(two)],
                 attributions=[claim("A1", "C1", one), claim("A2", "C2", two)],
                 months={"2025-03": {"subscription_billing": [sub("L1", "C1", "400.00", "2025-03-10"),
                                                              sub("L2", "C2", "800.00", "2025-03-10")]}})
    run_month(data, tmp_path / "out", "2025-03")
    statements = sorted((tmp_path / "out" / "2025-03" / "statements").iterdir())
    assert len(statements) == 2
    owners = {p.name: p.read_text() for p in statements}
    assert {outputs.statement_filename(one), outputs.statement_filename(two)} == set(owners)
    assert ",100.00," in owners[outputs.statement_filename(one)]  # 400.00 x 0.25
    assert ",200.00," in owners[outputs.statement_filename(two)]  # 800.00 x 0.25


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=2, max_size=2, unique=True))
def test_statement_file_names_are_one_to_one_and_stay_in_the_folder(ids):
    names = [outputs.statement_filename(i) for i in ids]
    assert names[0] != names[1]
    for name in names:
        assert "/" not in name and "\x00" not in name and name not in (".csv", "..csv")
        assert not name.startswith(".")
        assert len(name.encode()) <= 255 or len(ids[0].encode()) > 64


# --- 4. a lost ledger is never a first run -------------------------------------------------------

def test_a_lost_ledger_is_refused_and_nothing_is_deleted(tmp_path):
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    run_month(data, out, "2025-04")
    os.rename(out / "ledger.duckdb", tmp_path / "ledger.duckdb")
    before = _snapshot(out)
    with pytest.raises(PayoutError, match=r"the ledger \(ledger.duckdb\) is missing but months are published "
                                          r"\(2025-03, 2025-04\)"):
        run_month(data, out, "2025-04")
    assert _snapshot(out) == before


# --- 5. one unreadable row is quarantined, not fatal ---------------------------------------------

def _append_raw(data: Path, rows: list[bytes]) -> None:
    path = data / "exports" / "2025-03" / "subscription_billing.csv"
    path.write_bytes(path.read_bytes() + b"".join(r + b"\n" for r in rows))


GOOD = b"L%d,I,2025-03-11,C1,S,2025-01-01,platform,USD,10.00,charge,"


@pytest.mark.parametrize("bad, message", [
    (b"LX,I,2025-03-11,C1,S,2025-01-01,plat\xffform,USD,10.00,charge,", "the row is not valid UTF-8"),
    (b"LX,I,2025-03-11,C1,S,2025-01-01,plat\rform,USD,10.00,charge,",
     "a carriage return outside quotes that does not end the line"),
    (b"LX,I,2025-03-11,C1,S,2025-01-01,platform" + b"x" * 3_000_000 + b",USD,10.00,charge,",
     "the row is {size} bytes long; the limit is 1048576"),
])
def test_an_undecodable_row_is_quarantined_with_its_physical_line(tmp_path, bad, message):
    data = _tree(tmp_path / "data")
    _append_raw(data, [GOOD % 2, bad, GOOD % 3])  # lines 3, 4, 5
    run_month(data, tmp_path / "out", "2025-03")
    exceptions = (tmp_path / "out" / "2025-03" / "exceptions.csv").read_text().splitlines()
    message = message.format(size=len(bad) + 1)  # the record with its line end
    assert exceptions[1:] == [
        f"quarantined,exports/2025-03/subscription_billing.csv,4,LX,malformed_row,{message}"]
    files = json.loads((tmp_path / "out" / "2025-03" / "summary.json").read_text())["files"]
    assert files["subscription_billing"] == {"read": 4, "used": 3, "quarantined": 1}


def test_an_overlong_partner_id_is_quarantined(tmp_path):
    long_id = "P" * 300
    data = build(tmp_path / "data", partners=[partner("P1"), partner(long_id)],
                 attributions=[claim("A1", "C1", "P1")],
                 months={"2025-03": {"subscription_billing": [sub("L1", "C1", "400.00", "2025-03-10")],
                                     "project_billing": [proj("J1", long_id, "100.00", "2025-03-10")]}})
    run_month(data, tmp_path / "out", "2025-03")
    exceptions = (tmp_path / "out" / "2025-03" / "exceptions.csv").read_text().splitlines()
    assert f"quarantined,reference/partners.csv,3,{long_id},id_too_long,partner_id is 300 bytes long; " \
           f"the limit is 64" in exceptions
    assert any(",J1,unknown_partner," in line for line in exceptions)


# --- 6. one command at a time per output root ----------------------------------------------------

def test_two_runs_of_one_month_at_once_both_succeed_one_after_the_other(tmp_path):
    data = _tree(tmp_path / "data")
    out, clean = tmp_path / "out", tmp_path / "clean"
    run_month(data, clean, "2025-03")
    args = ("run", "--month", "2025-03", "--data", str(data), "--out", str(out))
    procs = [subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    waited = [err for _, err in results if "is in use by `payouts run --month 2025-03`" in err]
    assert len(waited) == 1  # the second said it waits for the first
    assert _months(out) == _months(clean)
    assert not (out / ".staging").exists()


def test_a_second_command_that_cannot_wait_refuses_clearly(tmp_path):
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    with outroot.exclusive(out, "payouts approve --month 2025-03"):
        proc = _cli("run", "--month", "2025-03", "--data", str(data), "--out", str(out),
                    env={"PAYOUTS_LOCK_WAIT": "0.3"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "payouts: another payouts command is working on this output root (`payouts approve --month 2025-03`, pid ")


def test_a_killed_runs_staging_is_removed_by_the_next_command(tmp_path):
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    killed = engine.cli_run_id()
    with outroot.exclusive(out, "payouts run --month 2025-04"):  # a `payouts run` killed after it staged...
        engine.prepare(data, out, "2025-04", run=killed)
        engine.ingest(data, out, "2025-04", run=killed)
    assert (out / ".staging" / "2025-04" / "work.duckdb").exists()
    run_month(data, out, "2025-03")  # ...is cleaned by the next command, whatever its month
    assert not (out / ".staging").exists()


def test_a_step_never_works_on_another_runs_staging(tmp_path):
    data = _tree(tmp_path / "data")
    out = tmp_path / "out"
    engine.prepare(data, out, "2025-03", run="airflow:manual__1")
    engine.ingest(data, out, "2025-03", run="airflow:manual__1")
    run_month(data, out, "2025-03")  # a CLI run of the same month in between
    with pytest.raises(PayoutError, match=r"the staging area of 2025-03 belongs to another run \(none\), "
                                          r"not airflow:manual__1"):
        engine.validate_inputs(data, out, "2025-03", run="airflow:manual__1")


# --- 7. smaller ones ---------------------------------------------------------------------------

def test_a_column_named_twice_is_refused(tmp_path):
    data = _tree(tmp_path / "data")
    path = data / "reference" / "partners.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line + ("," + line.split(",")[1]) for line in lines) + "\n")  # name again at the end
    with pytest.raises(PayoutError, match=r"^reference/partners.csv: column 'name' is named twice in the header$"):
        run_month(data, tmp_path / "out", "2025-03")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_non_finite_rate_names_its_key(tmp_path, value):
    data = _tree(tmp_path / "data")
    path = data / "reference" / "program.yaml"
    text = path.read_text()
    assert "company_led_rate: 0.40" in text
    path.write_text(text.replace("company_led_rate: 0.40", f"company_led_rate: {value}"))
    with pytest.raises(PayoutError, match=r"^program.yaml: agreements\[0\].project.company_led_rate: "):
        run_month(data, tmp_path / "out", "2025-03")


@pytest.mark.parametrize("month", ["2025-01\n", "２０２５-01", "2025-1", " 2025-01"])
def test_a_month_must_be_ascii_yyyy_mm_exactly(tmp_path, month):
    proc = _cli("run", "--month", month, "--data", str(tmp_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"payouts: billing month {month!r} is not YYYY-MM"


def test_a_malformed_partner_row_never_echoes_an_account(tmp_path):
    data = _tree(tmp_path / "data")
    path = data / "reference" / "partners.csv"
    # partner_id after account_ref, and a row one field short: the id position holds the account
    header = "name,account_ref,partner_id,payout_currency,payout_method,country,withholding_tax_pct,status"
    path.write_text(header + "\nPartner P1,DE00ACCOUNT9876,P1,USD,bank_transfer,DE,0,active\n"
                    "Shifted,DE89370400440532013000,USD,bank_transfer,DE,0,active\n")
    run_month(data, tmp_path / "out", "2025-03")
    month = tmp_path / "out" / "2025-03"
    assert "quarantined,reference/partners.csv,3,,malformed_row,\"expected 8 fields, found 7\"" in \
        (month / "exceptions.csv").read_text()
    for p in month.rglob("*"):
        if p.is_file():
            text = p.read_text(errors="replace")
            assert "DE89370400440532013000" not in text and "0440532013000" not in text, p
            assert "DE00ACCOUNT9876" not in text, p
