"""The ledger's big tables (billing lines, charge credits) live as Parquet files per month.

A later month must find them exactly as it found the old in-database rows: a refund of an earlier
month's charge is clawed back, and a line id used in an earlier month is refused. A rerun of the
latest month replaces its files; files no committed month names are never read and are removed.
"""

import shutil

import duckdb
from builders import build, claim, partner, read_rows, sub

from pipelines.ledger import store as ledger
from pipelines.engine import run_month

MARCH = [sub("L1", "C1", "400.00", "2025-03-03"), sub("L2", "C1", "100.00", "2025-03-04")]
APRIL = [
    sub("R1", "C1", "-200.00", "2025-04-02", line_type="refund", refers_to_line_id="L1"),
    sub("L2", "C1", "70.00", "2025-04-03"),  # id taken in March
    sub("L3", "C1", "80.00", "2025-04-03"),
]


def _data(root):
    return build(root / "data", partners=[partner("P1")], attributions=[claim("A1", "C1", "P1")],
                 months={"2025-03": {"subscription_billing": MARCH}, "2025-04": {"subscription_billing": APRIL}})


def _month_dirs(out):
    return sorted(p.name for p in (out / ledger.FILES_DIR).iterdir())


def _check_april(out):
    rows = read_rows(out / "2025-04" / "statements" / "P1.csv")
    # 25% of the 200.00 refunded from L1 (a March charge whose credit only the ledger's files hold)
    assert [(r["entry"], r["record_id"], r["amount"]) for r in rows if r["entry"] == "clawback"] == \
        [("clawback", "R1", "-50.00")]
    # L3 earns 20.00; L2 is refused because March used the id
    assert [(r["record_id"], r["amount"]) for r in rows if r["entry"] == "share"] == [("L3", "20.00")]
    exc = read_rows(out / "2025-04" / "exceptions.csv")
    assert [(e["record_id"], e["reason_code"]) for e in exc] == [("L2", "duplicate_line_id")]


def test_months_files_are_read_replaced_on_rerun_and_strays_removed(tmp_path):
    data, out = _data(tmp_path), tmp_path / "out"
    run_month(data, out, "2025-03")
    (march_dir,) = _month_dirs(out)
    assert march_dir.startswith("2025-03.")
    assert sorted(p.name for p in (out / ledger.FILES_DIR / march_dir).iterdir()) == \
        ["billing_lines.parquet", "charge_credits.parquet"]
    # a publish that died after moving its files but before its commit leaves a folder no month names
    stray = out / ledger.FILES_DIR / "2025-04.deadbeef0000"
    shutil.copytree(out / ledger.FILES_DIR / march_dir, stray)
    run_month(data, out, "2025-04")
    _check_april(out)  # the stray copy of March's lines was not read (L2 and L1 would be doubled)
    dirs = _month_dirs(out)
    assert len(dirs) == 2 and dirs[0] == march_dir and dirs[1].startswith("2025-04.") and "deadbeef" not in dirs[1]
    before = (out / "2025-04" / "statements" / "P1.csv").read_bytes()
    run_month(data, out, "2025-04")  # the latest month again: its files are replaced, not added
    after_dirs = _month_dirs(out)
    assert len(after_dirs) == 2 and after_dirs[0] == march_dir and after_dirs[1] != dirs[1]
    assert (out / "2025-04" / "statements" / "P1.csv").read_bytes() == before
    con = duckdb.connect(str(out / ledger.LEDGER_FILE), read_only=True)
    try:
        assert con.execute("select billing_month, dir from month_files order by 1").fetchall() == [
            ("2025-03", f"{ledger.FILES_DIR}/{march_dir}"), ("2025-04", f"{ledger.FILES_DIR}/{after_dirs[1]}")]
        # the database holds none of the big tables' rows
        assert con.execute("select count(*) from billing_lines").fetchall() == [(0,)]
        assert con.execute("select count(*) from charge_credits").fetchall() == [(0,)]
    finally:
        con.close()


def test_a_ledger_from_before_the_files_is_read_from_its_tables(tmp_path):
    """A ledger written before month_files existed kept every row in the database: still read."""
    data, out = _data(tmp_path), tmp_path / "out"
    run_month(data, out, "2025-03")
    (march_dir,) = _month_dirs(out)
    con = duckdb.connect(str(out / ledger.LEDGER_FILE))
    try:  # turn it into the old layout: the files' rows in the tables, no month_files
        for name in ledger.PARQUET_TABLES:
            path = out / ledger.FILES_DIR / march_dir / f"{name}.parquet"
            con.execute(f"insert into {name} by name select * from read_parquet($p)", {"p": str(path)})
        con.execute("drop table month_files")
        assert con.execute("select count(*) from billing_lines").fetchall() == [(2,)]
    finally:
        con.close()
    shutil.rmtree(out / ledger.FILES_DIR)
    run_month(data, out, "2025-04")
    _check_april(out)


def test_few_valued_text_is_written_as_it_was(tmp_path):
    """billing_lines and charge_credits write their few-valued text columns through an ENUM
    (`dictionary_columns`, and charge_credits' claim columns through the `dictionaries` its query casts
    to): the files hold the same strings, read back as VARCHAR, a quote included."""
    from builders import proj

    data = build(tmp_path / "data", partners=[partner("P1"), partner("P'2")], attributions=[claim("A1", "C1", "P1")],
                 months={"2025-03": {"subscription_billing": [sub("L2", "C1", "100.00", "2025-03-04")],
                                     "project_billing": [proj("J1", "P'2", "50.00", "2025-03-05")]}})
    out = tmp_path / "out"
    run_month(data, out, "2025-03")
    (folder,) = _month_dirs(out)
    lines = out / ledger.FILES_DIR / folder / "billing_lines.parquet"
    credits = out / ledger.FILES_DIR / folder / "charge_credits.parquet"
    text = ["billing_month", "line_id", "source", "line_type", "customer_id", "item", "currency", "source_file"]
    assert {c: t for c, t, *_ in duckdb.sql(f"describe select * from '{lines}'").fetchall() if c in text} == \
        dict.fromkeys(text, "VARCHAR")
    assert duckdb.sql(f"select {', '.join(text)} from '{lines}' order by line_id").fetchall() == [
        ("2025-03", "J1", "project", "charge", "CP'2", "PRJJ1", "USD", "exports/2025-03/project_billing.csv"),
        ("2025-03", "L2", "subscription", "charge", "C1", "platform", "USD", "exports/2025-03/subscription_billing.csv"),
    ]
    # a project line's credit key is its partner; a subscription line's, its claim
    assert duckdb.sql(f"select billing_month, line_id, credit_key, partner_id, engagement_type from '{credits}' "
                      "order by line_id").fetchall() == [
        ("2025-03", "J1", "P'2", "P'2", "partner_led"),
        ("2025-03", "L2", "A1", "P1", "partner_led"),
    ]
