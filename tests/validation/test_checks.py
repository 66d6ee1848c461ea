"""The GX suites of pipelines/validation/suites/ on hand-built frames: each passes on a good frame, and
each expectation that can fail fails alone on a frame made for it, with its severity and message."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipelines.validation import checks
from pipelines.validation.checks import FATAL, WARNING, GateFailed, SuiteError, ValidationReport

import validation_frames as vf
from validation_frames import MONTH, PARAMS, with_value


def failures(result: checks.SuiteResult) -> list[tuple[str, str]]:
    return [(e["severity"], e["message"]) for e in result.expectations if not e["success"]]


def run(name: str, frame: pl.DataFrame, **params) -> checks.SuiteResult:
    return checks.run_suite(name, frame, {**PARAMS, **params})


@pytest.mark.parametrize("name", sorted(vf.FRAMES))
def test_good_frame_passes(name):
    result = run(name, vf.FRAMES[name]())
    assert failures(result) == []
    assert result.success and result.suite == name and result.rows == vf.FRAMES[name]().height
    for e in result.expectations:
        assert e["severity"] in (FATAL, WARNING) and e["description"] and e["message"] == ""


def test_every_suite_has_a_frame_and_describes_its_expectations():
    assert checks.suite_names() == sorted(vf.FRAMES)
    for name in checks.suite_names():
        spec = checks.load_suite(name)
        assert spec["name"] == name and spec["meta"]["file"] and spec["meta"]["row_id"]
        for e in spec["expectations"]:
            assert e["severity"] in (FATAL, WARNING) and e["meta"]["description"]


# --- input_files -------------------------------------------------------------------------------

def test_input_files_quarantine_rate_above_the_limit_is_fatal():
    frame = with_value(with_value(vf.input_files(), "rows_quarantined", 0, 30), "quarantine_bp", 0, 1500)
    assert failures(run("input_files", frame)) == [(FATAL, (
        "input files: quarantined rows (basis points of rows read) above the limit 500 bp (program.yaml validation.max_quarantine_pct): 1 of 2 rows fail "
        "(e.g. exports/2025-03/subscription_billing.csv: 1500)"))]


def test_input_files_quarantine_rate_equal_to_the_limit_passes_and_100_pct_is_off():
    frame = with_value(vf.input_files(), "quarantine_bp", 0, 500)
    assert failures(run("input_files", frame)) == []
    frame = with_value(vf.input_files(), "quarantine_bp", 1, 10000)  # every row quarantined
    assert failures(run("input_files", frame, max_quarantine_bp=10000)) == []


def test_input_files_row_count_change_is_a_warning():
    # 200 rows against 100 before: 100 * 10000 // 100 = 10000 bp
    frame = with_value(with_value(vf.input_files(), "previous_rows", 0, 100), "change_bp", 0, 10000)
    assert failures(run("input_files", frame)) == [(WARNING, (
        "input files: rows read differ from the average of earlier months by more than 5000 bp (program.yaml validation.max_row_change_pct): 1 of 1 rows fail "
        "(e.g. exports/2025-03/subscription_billing.csv: 10000)"))]


# --- new_values, fx_moves, unattributed_share (warnings) ----------------------------------------

def test_new_currency_is_a_warning():
    frame = with_value(with_value(vf.new_values(), "value", 1, "SEK"), "seen_before", 1, False)
    assert failures(run("new_values", frame)) == [(WARNING, (
        "billing lines: a value no earlier month had: 1 of 3 rows fail (e.g. currency SEK)"))]


def test_nothing_is_new_in_the_first_month():
    frame = vf.new_values().with_columns(seen_before=pl.lit(False), first_month=pl.lit(True))
    assert failures(run("new_values", frame)) == []


def test_large_fx_move_is_a_warning():
    # JPY 0.0060 -> 0.0067: 0.0007 * 10000 // 0.0060 = 1166 bp
    frame = with_value(with_value(vf.fx_moves(), "previous_rate", 2, "0.0060"), "move_bp", 2, 1166)
    assert failures(run("fx_moves", frame)) == [(WARNING, (
        "fx_rates.csv: the fx rate moved by more than 1000 bp since last month (program.yaml validation.max_fx_move_pct): 1 of 2 rows fail (e.g. JPY: 1166)"))]


def test_high_unattributed_share_is_a_warning():
    frame = with_value(with_value(vf.unattributed_share(), "unattributed_minor", 0, 60000),
                       "unattributed_bp", 0, 6000)
    assert failures(run("unattributed_share", frame)) == [(WARNING, (
        "summary.json: the share billed to no partner is above 5000 bp (program.yaml validation.max_unattributed_pct): 1 of 2 rows fail (e.g. USD: 6000)"))]


# --- remittance ---------------------------------------------------------------------------------

REMITTANCE_FAILURES = {
    "payment_reference unique": (
        # P2 twice: both rows have the reference they should have
        lambda f: f.with_columns(payment_reference=pl.Series(["PO-202503-P1", "PO-202503-P2", "PO-202503-P2"]),
                                 partner_id=pl.Series(["P1", "P2", "P2"]),
                                 expected_reference=pl.Series(["PO-202503-P1", "PO-202503-P2", "PO-202503-P2"])),
        "remittance.csv: payment_reference unique: 2 of 3 rows fail (e.g. PO-202503-P2)"),
    "reference": (
        lambda f: with_value(f, "payment_reference", 2, "PO-202503-P9"),
        "remittance.csv: payment_reference = expected_reference: 1 of 3 rows fail (e.g. PO-202503-P9)"),
    "month": (
        lambda f: with_value(f, "billing_month", 1, "2025-02"),
        "remittance.csv: billing_month = 2025-03: 1 of 3 rows fail (e.g. PO-202503-P2: 2025-02)"),
    "gross": (
        lambda f: with_value(with_value(f, "gross_amount", 0, "0.00"), "gross_minor", 0, 0),
        "remittance.csv: gross_minor > 0: 1 of 3 rows fail (e.g. PO-202503-P1: 0)"),
    "digits": (
        lambda f: with_value(with_value(f, "gross_amount", 2, "12000.0"), "amount_digits_ok", 2, False),
        "remittance.csv: amount_digits_ok = true: 1 of 3 rows fail (e.g. PO-202503-P3)"),
    "paid in balances": (
        lambda f: with_value(f, "paid_in_balances", 1, False),
        "remittance.csv: paid_in_balances = true: 1 of 3 rows fail (e.g. PO-202503-P2)"),
    "account_last4": (
        # a full IBAN: the message shows its last 4 characters only (P2 has no account: not checked)
        lambda f: with_value(f, "account_last4", 0, "DE89370400440532013000"),
        "remittance.csv: length of account_last4 <= 4: 1 of 2 rows fail (e.g. PO-202503-P1: ****3000)"),
    "column order": (
        lambda f: f.select(["payment_reference", "billing_month", "partner_name", "partner_id",
                            *f.columns[4:]]),
        "remittance.csv: columns in the expected order: column 3 is partner_name, expected partner_id"),
}


@pytest.mark.parametrize("case", sorted(REMITTANCE_FAILURES))
def test_remittance_failure(case):
    change, message = REMITTANCE_FAILURES[case]
    assert failures(run("remittance", change(vf.remittance()))) == [(FATAL, message)]


def test_remittance_row_count_against_the_database():
    assert failures(run("remittance", vf.remittance(), partners_paid=4)) == [
        (FATAL, "remittance.csv: row count = partners_paid (4): observed 3")]


def test_remittance_missing_file_column_fails_the_gate_without_raising():
    result = run("remittance", vf.remittance().drop("account_last4"))
    assert failures(result) == [
        (FATAL, "remittance.csv: columns in the expected order: column account_last4 is missing"),
        (FATAL, "remittance.csv: length of account_last4 <= 4: not checked: column account_last4 is missing"),
    ]


# --- partner_balances ---------------------------------------------------------------------------

BALANCE_FAILURES = {
    "column order": (
        lambda f: f.select([*vf.BALANCE_COLUMNS[:7], "pending", "adjustments", *f.columns[9:]]),
        "partner_balances.csv: columns in the expected order: column 8 is pending, expected adjustments"),
    "unique": (
        lambda f: pl.concat([f, f[1]]),
        "partner_balances.csv: partner_id unique: 2 of 4 rows fail (e.g. P2)"),
    "status": (
        lambda f: with_value(f, "status", 1, "on_hold"),
        "partner_balances.csv: status in the 10 accepted values: 1 of 3 rows fail (e.g. P2: on_hold)"),
    "paid closes at 0": (
        lambda f: with_value(with_value(f, "closing_balance", 0, "5.00"), "closing_minor", 0, 500),
        "partner_balances.csv: closing_minor = 0 where status = paid: 1 of 1 rows fail (e.g. P1: 500)"),
    "paid gross positive": (
        lambda f: with_value(f, "gross_minor", 0, 0),
        "partner_balances.csv: gross_minor > 0 where status = paid: 1 of 1 rows fail (e.g. P1: 0)"),
    "unpaid gross 0": (
        lambda f: with_value(f, "gross_minor", 1, 4000),
        "partner_balances.csv: gross_minor = 0 where status != paid: 1 of 2 rows fail (e.g. P2: 4000)"),
    "balance chain": (
        lambda f: with_value(f, "previous_closing_minor", 2, -6000),
        "partner_balances.csv: opening_minor = previous_closing_minor where previous_closing_minor is not null: "
        "1 of 2 rows fail (e.g. P3: -5000 vs -6000)"),
    "new partner opens at 0": (
        lambda f: with_value(f, "opening_minor", 1, 1500),
        "partner_balances.csv: opening_minor = 0 where previous_closing_minor is null: 1 of 1 rows fail "
        "(e.g. P2: 1500)"),
    "digits": (
        lambda f: with_value(f, "amount_digits_ok", 2, False),
        "partner_balances.csv: amount_digits_ok = true: 1 of 3 rows fail (e.g. P3)"),
}


@pytest.mark.parametrize("case", sorted(BALANCE_FAILURES))
def test_partner_balances_failure(case):
    change, message = BALANCE_FAILURES[case]
    assert failures(run("partner_balances", change(vf.partner_balances()))) == [(FATAL, message)]


def test_carried_balance_that_vanished_is_fatal():
    frame = pl.concat([vf.carried_balances(), pl.DataFrame({"partner_id": ["P7"], "present": [False]})])
    assert failures(run("carried_balances", frame)) == [
        (FATAL, "partner_balances.csv: present = true: 1 of 3 rows fail (e.g. P7)")]


def test_no_carried_balance_passes():
    frame = pl.DataFrame(schema={"partner_id": pl.String, "present": pl.Boolean})
    result = run("carried_balances", frame)
    assert failures(result) == [] and result.rows == 0


# --- totals -------------------------------------------------------------------------------------

@pytest.mark.parametrize("x", ["gross", "withholding", "net"])
def test_payout_totals_disagree(x):
    frame = vf.payout_totals()
    value = frame[f"{x}_summary"][0]
    frame = with_value(frame, f"{x}_summary", 0, value - 1)
    columns = " = ".join(f"{x}_{s}" for s in ("remittance", "balances", "summary", "ledger"))
    assert failures(run("payout_totals", frame)) == [(FATAL, (
        f"payout totals: {columns}: 1 of 2 rows fail (e.g. EUR: {value} / {value} / {value - 1} / {value})"))]


@pytest.mark.parametrize("pair", [("billed_summary", "billed_lines"),
                                  ("partner_share_summary", "partner_share_credits"),
                                  ("clawed_back_summary", "clawed_back_clawbacks")])
def test_currency_totals_disagree(pair):
    a, b = pair
    frame = vf.currency_totals()
    value = frame[b][1]
    frame = with_value(frame, b, 1, value + 1)
    assert failures(run("currency_totals", frame)) == [(FATAL, (
        f"summary.json: {a} = {b}: 1 of 2 rows fail (e.g. USD: {value} vs {value + 1})"))]


# --- parameters, columns, the API ---------------------------------------------------------------

def test_missing_parameter_is_an_error():
    params = {k: v for k, v in PARAMS.items() if k != "partners_paid"}
    with pytest.raises(SuiteError, match=r"suite 'remittance' needs parameter\(s\) partners_paid"):
        checks.run_suite("remittance", vf.remittance(), params)
    with pytest.raises(SuiteError, match="needs parameter.* month"):
        checks.run_suite("remittance", vf.remittance(), {"partners_paid": 3})
    with pytest.raises(SuiteError, match="max_quarantine_bp"):
        checks.run_suite("input_files", vf.input_files(), {**PARAMS, "max_quarantine_bp": None})


def test_missing_derived_column_and_unknown_suite_are_errors():
    with pytest.raises(SuiteError, match="lacks column.* gross_minor"):
        checks.run_suite("remittance", vf.remittance().drop("gross_minor"), PARAMS)
    with pytest.raises(SuiteError, match="no validation suite"):
        checks.validate(MONTH, {"billing_lines": vf.carried_balances()}, PARAMS)
    with pytest.raises(SuiteError, match="not the month validated"):
        checks.validate("2025-04", {"carried_balances": vf.carried_balances()}, PARAMS)


def test_validate_runs_every_frame_and_sets_the_status():
    report = checks.validate(MONTH, vf.all_frames(), {k: v for k, v in PARAMS.items() if k != "month"})
    assert [r.suite for r in report.results] == list(vf.FRAMES)
    assert report.status() == "passed" and report.fatal_messages() == [] and report.warning_messages() == []
    checks.raise_if_fatal(report)

    frames = {"fx_moves": with_value(vf.fx_moves(), "move_bp", 0, 2000), "remittance": vf.remittance()}
    report = checks.validate(MONTH, frames, PARAMS)
    assert report.status() == "warnings" and len(report.warning_messages()) == 1
    checks.raise_if_fatal(report)  # warnings do not stop the run


def test_gate_failed_is_one_line_naming_the_first_problem():
    frame = vf.remittance().with_columns(
        payment_reference=pl.Series(["PO-202503-P1", "PO-202503-P2\nX", "PO-202503-P9"]),
        paid_in_balances=pl.Series([True, False, True]))
    report = checks.validate(MONTH, {"remittance": frame}, PARAMS)
    assert report.status() == "failed"
    with pytest.raises(GateFailed) as caught:
        checks.raise_if_fatal(report)
    text = str(caught.value)
    assert "\n" not in text
    assert text == ("remittance.csv: payment_reference = expected_reference: 2 of 3 rows fail "
                    "(e.g. PO-202503-P2 X) (and 1 more fatal problem)")
    assert caught.value.messages == report.fatal_messages()
    assert str(GateFailed(["a", "b", "c"])) == "a (and 2 more fatal problems)"


def test_report_round_trips_through_json_and_merges():
    inputs = checks.validate(MONTH, {"input_files": with_value(vf.input_files(), "change_bp", 0, 9000),
                                     "new_values": vf.new_values()}, PARAMS)
    again = ValidationReport.from_dict(json.loads(json.dumps(inputs.to_dict())))
    assert again == inputs and again.to_dict() == inputs.to_dict()

    results = checks.validate(MONTH, {"carried_balances": vf.carried_balances()}, PARAMS)
    merged = again.merge(results)
    assert [r.suite for r in merged.results] == ["input_files", "new_values", "carried_balances"]
    assert merged.status() == "warnings" and merged.warning_messages() == inputs.warning_messages()
    assert [r.suite for r in merged.merge(inputs).results] == ["carried_balances", "input_files", "new_values"]
    with pytest.raises(ValueError):
        merged.merge(ValidationReport("2025-04", []))


def test_importing_the_layer_does_not_import_great_expectations():
    code = ("import sys; import pipelines.validation.checks, pipelines.validation.report; "
            "print('great_expectations' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"


def test_gx_is_imported_without_the_modules_these_suites_do_not_need():
    """A fresh process builds GX's context with SQLAlchemy hidden and scipy.stats and Altair not yet
    loaded, runs a suite, and can still import and use all three afterwards."""
    code = (
        "import sys\n"
        "import validation_frames as vf\n"
        "from pipelines.validation import checks\n"
        "result = checks.run_suite('remittance', vf.FRAMES['remittance'](), vf.PARAMS)\n"
        "loaded = [n for n in ('sqlalchemy', 'scipy.stats', 'altair') if type(sys.modules.get(n)).__name__ == 'module']\n"
        "print(result.success, loaded)\n"
        "import altair, scipy.stats, sqlalchemy\n"
        "print(scipy.stats.norm.cdf(0), sqlalchemy.text('1').text, altair.Chart.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["True []", "0.5 1 Chart"]
