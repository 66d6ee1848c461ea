"""Validation gates: suites load, good frames pass, each fatal and warning kind is caught, the
report files are self-contained and byte-identical across reruns."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import polars as pl
import pytest

from pipelines.validation import suites as v

# its module-scoped fixtures are built once: all its tests run on one xdist worker
pytestmark = pytest.mark.xdist_group("test_validation")

MONTH = "2025-03"


@pytest.fixture(scope="module")
def params():
    return v.month_params(MONTH) | {
        "currencies": ["USD", "EUR", "JPY", "KWD", "GBP"],
        "fx_currencies": ["USD", "EUR", "JPY", "KWD"],
        "product_families": ["platform", "factory"],
        "partner_ids": ["P1", "P2", "P3"],
        "levels": ["registered", "certified", "strategic"],
        "minor_units": {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3, "GBP": 2},
    }


def s(**cols):
    """A frame of string columns (None = blank)."""
    return pl.DataFrame({k: pl.Series(k, vals, dtype=pl.String) for k, vals in cols.items()})


def subscription_billing():
    return s(
        line_id=["S1", "S2", "S3", "S4"],
        invoice_id=["I1", "I1", "I2", "I3"],
        invoice_date=["2025-03-01", "2025-03-31", "2025-03-15", "2025-03-02"],
        customer_id=["C1", "C1", "C2", "C3"],
        subscription_id=["SU1", "SU1", "SU2", "SU3"],
        subscription_start=["2024-01-15", "2024-01-15", "2025-03-01", "2023-12-31"],
        product_family=["platform", "factory", "platform", "factory"],
        currency=["USD", "EUR", "JPY", "KWD"],
        amount=["1250.00", "-30.5", "-1200", "12.345"],
        line_type=["charge", "refund", "chargeback", "charge"],
        refers_to_line_id=[None, "S0", "S0", None],
        an_extra_column=["x", "y", "z", "w"],
    )


def project_billing():
    return s(
        line_id=["PL1", "PL2", "PL3"],
        invoice_id=["I9", "I9", "I10"],
        invoice_date=["2025-03-10", "2025-03-11", "2025-03-12"],
        customer_id=["C1", "C2", "C3"],
        currency=["USD", "USD", "EUR"],
        amount=["50000.00", "150000.00", "-10"],
        line_type=["charge", "charge", "refund"],
        refers_to_line_id=[None, None, "PL0"],
        project_id=["PR1", "PR2", "PR3"],
        engagement_type=["company_led", "joint", "partner_led"],
        partner_id=["P1", "P2", "P3"],
        contract_value=["50000.00", "150000", "80000.00"],
        partner_contribution_pct=[None, "60", None],
    )


GOOD_INPUTS = {
    "subscription_billing": subscription_billing,
    "project_billing": project_billing,
    "referral_events": lambda: s(
        event_id=["E1", "E2", "E3"],
        partner_id=["P1", "P1", "P2"],
        customer_id=["C1", "C1", "C2"],
        deal_id=["D1", "D1", "D2"],
        event_type=["qualified_lead", "signed_agreement", "successful_delivery"],
        event_date=["2025-03-01", "2025-03-20", "2025-03-31"],
        first_year_contract_value=[None, "120000.00", None],
        currency=[None, "EUR", None],
    ),
    "partner_fees": lambda: s(
        fee_id=["F1", "F2"],
        partner_id=["P1", "P2"],
        fee_date=["2025-03-05", "2025-03-06"],
        fee_type=["factory_usage", "program"],
        currency=["USD", "JPY"],
        amount=["20000.00", "5000"],
    ),
    "partners": lambda: s(
        partner_id=["P1", "P2", "P3"],
        name=["Acme", "Globex", "=cmd"],
        payout_currency=["USD", "EUR", "JPY"],
        payout_method=["bank_transfer", "paypal", "none"],
        account_ref=["DE89370400440532013000", "pp@example.org", None],
        country=["DE", "US", "JP"],
        withholding_tax_pct=["0", "30", "12.5"],
        status=["active", "suspended", "terminated"],
        min_payout=[None, "100", "5000"],
    ),
    "partner_levels": lambda: s(
        partner_id=["P1", "P1", "P2"],
        level=["registered", "certified", "strategic"],
        effective_from=["2024-01-01", "2025-02-01", "2024-06-30"],
    ),
    "attributions": lambda: s(
        claim_id=["A1", "A2"],
        customer_id=["C1", "C2"],
        partner_id=["P1", "P2"],
        source=["partner_of_record", "referral_link"],
        engagement_type=["partner_led", "joint"],
        credit_pct=[None, "50"],
        valid_from=["2025-01-01", "2025-02-01"],
        valid_to=[None, "2025-12-31"],
        status=["approved", "pending"],
    ),
    "fx_rates": lambda: s(
        rate_date=["2025-03-31", "2025-03-31", "2025-02-28"],
        currency=["EUR", "JPY", "EUR"],
        rate=["1.08", "0.0067", "1.05"],
    ),
}


def remittance():
    return s(
        payment_reference=["PO-202503-P1", "PO-202503-P2"],
        billing_month=["2025-03", "2025-03"],
        partner_id=["P1", "P2"],
        partner_name=["Acme", "Globex"],
        payout_currency=["USD", "JPY"],
        gross_amount=["1000.00", "50000"],
        withholding_amount=["300.00", "0"],
        net_amount=["700.00", "50000"],
        payout_method=["bank_transfer", "paypal"],
        account_last4=["3000", "org"],
    )


def balances():
    return s(
        partner_id=["P1", "P2", "P3"],
        payout_currency=["USD", "JPY", "USD"],
        opening_balance=["40.00", "0", "-100.00"],
        earnings=["960.00", "50000", "0.00"],
        clawbacks=["0.00", "0", "0.00"],
        referral_fees=["0.00", "0", "0.00"],
        fees=["0.00", "0", "0.00"],
        pending=["0.00", "0", "0.00"],
        gross_paid=["1000.00", "50000", "0.00"],
        withholding=["300.00", "0", "0.00"],
        net_paid=["700.00", "50000", "0.00"],
        closing_balance=["0.00", "0", "-100.00"],
        status=["paid", "paid", "negative_balance"],
    )


SUMMARY = {"USD": {"gross": "1000.00", "withholding": "300.00", "net": "700.00"}, "JPY": {"gross": 50000, "withholding": 0, "net": 50000}}


def failed(result):
    return [x for x in result["expectations"] if x["status"] != "passed"]


# ------------------------------------------------------------------------------------------------


def test_every_suite_loads_as_a_gx_suite():
    names = v.available_suites()
    assert {"subscription_billing", "project_billing", "remittance", "partner_balances", "quarantine_rate"} <= set(names)
    for name in names:
        suite = v.load_suite(name)
        assert suite.name == name
        assert len(suite.expectations) > 0
        raw = json.loads(v.suite_path(name).read_text())
        assert [e.expectation_type for e in suite.expectations] == [e["type"] for e in raw["expectations"]]
    # ids are deterministic
    assert [e.id for e in v.load_suite("partners").expectations] == [e.id for e in v.load_suite("partners").expectations]


def test_gx_imports_unused_modules_lazily_and_they_still_work_when_used():
    """scipy.stats and altair (only GX's KL-divergence and KS-test expectations use them) are not run
    while GX is imported; no suite uses those expectations; a module used later loads in full."""
    import subprocess
    import sys

    used = {e["type"] for name in v.available_suites() for e in json.loads(v.suite_path(name).read_text())["expectations"]}
    assert not {t for t in used if "kl_divergence" in t or "ks_test" in t or "distribution" in t}
    code = (
        "import sys\n"
        "from pipelines.validation import suites as v\n"
        "v._context()\n"
        "print(sorted(n for n in v.LAZY_MODULES if type(sys.modules.get(n)).__name__ == '_LazyModule'))\n"
        "assert not any(isinstance(f, v._LazyFinder) for f in sys.meta_path)\n"
        "from scipy import stats\n"
        "print(stats.entropy([1, 3], [1, 3]), type(sys.modules['scipy.stats']).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "['altair', 'scipy.stats']"
    assert out[1] == "0.0 module"


def test_kwargs_read_once_match_gx_on_every_expectation_of_every_suite():
    """The faster kwargs methods (configuration read once per call) return what GX's own return."""
    v.load_suite("partners")  # builds the context, which installs the replacements
    orig = v.GX_KWARGS_ORIGINALS
    assert set(orig) == {"domain", "success", "runtime"}
    checked = 0
    for name in v.available_suites():
        for e in v.load_suite(name).expectations:
            for rc in (None, {"result_format": "COMPLETE"}, {"result_format": {"result_format": "SUMMARY"}}):
                assert e._get_runtime_kwargs(rc) == orig["runtime"](e, rc)
            assert e._get_success_kwargs() == orig["success"](e)
            assert e._get_domain_kwargs() == orig["domain"](e)
            checked += 1
    assert checked > 50


@pytest.mark.parametrize("name", sorted(GOOD_INPUTS))
def test_good_input_frames_pass(name, params):
    r = v.validate_frame(name, GOOD_INPUTS[name](), severity=v.WARNING, runtime_params=params)
    assert failed(r) == []
    assert r["success"] and not r["fatal"]
    assert r["rows"] == GOOD_INPUTS[name]().height


def test_good_results_pass(params):
    rep = v.GateReport(MONTH)
    rep.validate("remittance", remittance(), severity=v.FATAL, runtime_params=params)
    rep.validate("partner_balances", balances(), severity=v.FATAL, runtime_params=params)
    rep.validate("payout_totals", v.payout_totals_frame(remittance(), balances(), SUMMARY), severity=v.FATAL)
    prev = s(partner_id=["P1", "P3", "P9"], closing_balance=["40.00", "-100.00", "0.00"])
    rep.validate("balance_chain", v.balance_chain_frame(balances(), prev), severity=v.FATAL)
    lines = pl.DataFrame({"line_id": ["S1", "S2"], "currency": ["USD", "JPY"], "amount": [125000, 5000], "partner_shares": [31250, 1250], "company_share": [93750, 3750]})
    rep.validate("line_reconciliation", lines, severity=v.FATAL)
    assert rep.fatal_messages() == [] and rep.warning_messages() == []
    rep.raise_if_fatal()
    assert rep.to_dict()["status"] == "passed"


def test_empty_export_with_header_only_passes(params):
    empty = subscription_billing().head(0)
    r = v.validate_frame("subscription_billing", empty, severity=v.WARNING, runtime_params=params)
    assert failed(r) == [] and r["rows"] == 0


# -- fatal kinds ----------------------------------------------------------------------------------


def test_missing_required_column_is_fatal_and_named(params):
    rep = v.GateReport(MONTH)
    rep.validate("subscription_billing", subscription_billing().drop("amount"), severity=v.WARNING, runtime_params=params)
    with pytest.raises(v.GateFailed) as exc:
        rep.raise_if_fatal()
    assert str(exc.value) == "subscription_billing.csv: required column 'amount' is missing"
    r = rep.suites[0]
    assert r["fatal"]
    skipped = [x for x in r["expectations"] if x["status"] == "skipped"]
    assert skipped and all(x["message"] == "not evaluated: column 'amount' is missing" for x in skipped)


def test_two_missing_columns_one_line(params):
    rep = v.GateReport(MONTH)
    rep.validate("project_billing", project_billing().drop("engagement_type", "partner_id"), severity=v.WARNING, runtime_params=params)
    msg = str(pytest.raises(v.GateFailed, rep.raise_if_fatal).value)
    assert msg == "project_billing.csv: required columns 'engagement_type', 'partner_id' are missing"
    assert "\n" not in msg


def test_quarantine_rate_above_limit_is_fatal():
    rep = v.GateReport(MONTH)
    rep.check_quarantine(
        {"subscription_billing": {"read": 8, "used": 7, "quarantined": 1}, "project_billing": {"read": 20, "quarantined": 1},
         "partner_fees": {"read": 0, "quarantined": 0}},
        max_pct=5,
    )
    assert rep.fatal_messages() == [
        "subscription_billing.csv: quarantine rate 12.5% is above the limit 5% (program.yaml validation.max_quarantine_pct)"
    ]
    # exactly at the limit (1 of 20 = 5%) passes; an empty file has rate 0
    with pytest.raises(v.GateFailed, match=r"^subscription_billing.csv: quarantine rate 12.5% is above"):
        rep.raise_if_fatal()


def test_quarantine_default_limit_is_off_and_rates_format():
    rep = v.GateReport(MONTH)
    rep.check_quarantine({"partners.csv": {"read": 10, "quarantined": 10}})  # default 100%: never above
    assert not rep.fatal and v.DEFAULT_MAX_QUARANTINE_PCT == 100
    rep.check_quarantine({"fx_rates": {"read": 3, "quarantined": 1}}, max_pct=Decimal("33.3"))
    assert rep.fatal_messages() == [
        "fx_rates.csv: quarantine rate 33.33% is above the limit 33.3% (program.yaml validation.max_quarantine_pct)"
    ]


def test_missing_and_unreadable_files_are_fatal():
    rep = v.GateReport(MONTH)
    rep.file_missing("project_billing.csv")
    rep.file_unreadable("subscription_billing.csv", "invalid UTF-8 at byte 10\n(line 3)")
    assert rep.fatal_messages() == [
        "project_billing.csv: required file is missing",
        "subscription_billing.csv: unreadable: invalid UTF-8 at byte 10 (line 3)",
    ]
    with pytest.raises(v.GateFailed, match=r"^project_billing.csv: required file is missing \(and 1 more fatal problem\)$"):
        rep.raise_if_fatal()
    assert rep.to_dict()["status"] == "failed"


# -- warning kinds --------------------------------------------------------------------------------


def test_row_level_problems_are_warnings(params):
    bad = subscription_billing().with_columns(
        pl.Series("line_id", ["S1", "S1", None, "S4"]),
        pl.Series("invoice_date", ["2025-02-28", "2025-03-32", "15/03/2025", "2025-03-02"]),
        pl.Series("line_type", ["charge", "refund", "credit", "charge"]),
        pl.Series("amount", ["-5.00", "30.5", "1,200", "12.3456"]),
        pl.Series("currency", ["USD", "EUR", "XYZ", "GBP"]),
        pl.Series("product_family", ["platform", "factory", "platform", "hardware"]),
    )
    rep = v.GateReport(MONTH)
    r = rep.validate("subscription_billing", bad, severity=v.WARNING, runtime_params=params)
    rep.raise_if_fatal()  # nothing fatal
    got = {x["description"]: (x["unexpected_count"], x["examples"]) for x in failed(r)}
    assert all(x["severity"] == v.WARNING for x in failed(r))
    assert got["line_id is not blank"][0] == 1
    assert got["line_id is unique"] == (2, [{"value": "S1", "count": 2}])
    assert got["line_type is an accepted value"] == (1, [{"value": "credit", "count": 1}])
    assert got["invoice_date falls inside the billing month"][0] == 3
    assert got["invoice_date is a valid YYYY-MM-DD date"][0] == 2  # 2025-03-32 and 15/03/2025
    assert got["amount is a decimal amount"] == (1, [{"value": "1,200", "count": 1}])
    assert got["amount has no more decimals than currency allows"] == (1, [{"value": [2, 4], "count": 1}])  # 12.3456 GBP
    assert got["a charge's amount is not negative"] == (1, [{"value": "-5.00", "count": 1}])
    assert got["a refund's or chargeback's amount is not positive"] == (1, [{"value": "30.5", "count": 1}])
    assert got["currency is a known ISO 4217 currency"] == (1, [{"value": "XYZ", "count": 1}])
    assert got["currency has an FX rate for the month"][0] == 2  # XYZ, GBP
    assert got["product_family is a key of the rate card"] == (1, [{"value": "hardware", "count": 1}])
    msgs = rep.warning_messages()
    assert "subscription_billing.csv: a charge's amount is not negative: 1 of 2 rows fail (e.g. '-5.00')" in msgs
    assert rep.to_dict()["status"] == "warnings"


def test_unknown_partner_and_joint_without_contribution(params):
    bad = project_billing().with_columns(
        pl.Series("partner_id", ["P1", "P404", "P3"]), pl.Series("partner_contribution_pct", [None, None, "101"])
    )
    r = v.validate_frame("project_billing", bad, severity=v.WARNING, runtime_params=params)
    got = {x["description"]: x for x in failed(r)}
    assert got["partner_id is a partner in partners.csv"]["examples"] == [{"value": "P404", "count": 1}]
    assert got["a joint project gives partner_contribution_pct"]["unexpected_count"] == 1
    assert got["partner_contribution_pct is a number from 0 to 100"]["examples"] == [{"value": "101", "count": 1}]
    assert not r["fatal"]


def test_compact_and_full_agree(params):
    bad = subscription_billing().with_columns(
        pl.Series("line_id", ["S1", "S1", None, "S1"]),
        pl.Series("amount", ["-5.00", "30.5", "1,200", "-1"]),
        pl.Series("currency", ["USD", None, "XYZ", "GBP"]),
    )
    a = v.validate_frame("subscription_billing", bad, severity=v.WARNING, runtime_params=params, compact=True)
    b = v.validate_frame("subscription_billing", bad, severity=v.WARNING, runtime_params=params, compact=False)
    keys = ("status", "unexpected_count", "element_count")
    assert [{k: x.get(k) for k in keys} for x in a["expectations"]] == [{k: x.get(k) for k in keys} for x in b["expectations"]]
    assert a["success"] is False


@pytest.mark.parametrize("suite,frame", [
    ("subscription_billing", lambda: subscription_billing().with_columns(
        pl.Series("line_id", ["S1", "S1", None, "S1"]),
        pl.Series("amount", ["-5.00", "30.5", "1,200", "-1"]),
        pl.Series("currency", ["USD", None, "XYZ", "GBP"]),
        pl.Series("line_type", ["charge", "refund", "refund", "charge"]),
        pl.Series("refers_to_line_id", [None, None, "S9", None]),
    )),
    ("project_billing", lambda: project_billing().with_columns(
        pl.Series("partner_id", ["P1", "P404", None]), pl.Series("partner_contribution_pct", [None, None, "101"])
    )),
])
def test_duckdb_reductions_agree_with_memory_and_full(params, suite, frame):
    """SqlFrame (the gate's path at scale: GROUP BYs in DuckDB) gives the in-memory reductions' results
    and GX's own on the full frame: counts, statuses and examples."""
    import duckdb

    pf = frame()
    con = duckdb.connect()
    con.register("rows_in", pf.to_arrow())
    con.execute("create table t as select * from rows_in")
    in_db = v.validate_frame(suite, v.SqlFrame(con, "select * from t"), severity=v.WARNING, runtime_params=params)
    # the uniqueness candidates given, as ingest gives them: hashes of the ids repeated in a superset of
    # the rows (these rows and another file's: "S1" and "X1" repeat there, and "P1" once more)
    con.execute("create table other as select unnest(['X1', 'X1', 'S1', 'P1']) as line_id")
    con.execute("create table cand as select hash(line_id) as h from (select line_id from t union all "
                "select line_id from other) where line_id is not null group by 1 having count(*) > 1")
    given = v.validate_frame(suite, v.SqlFrame(con, "select * from t", {("line_id",): "select h from cand"}),
                             severity=v.WARNING, runtime_params=params)
    assert given["expectations"] == in_db["expectations"]
    in_memory = v.validate_frame(suite, pf, severity=v.WARNING, runtime_params=params)
    full = v.validate_frame(suite, pf, severity=v.WARNING, runtime_params=params, compact=False)
    keys = ("status", "unexpected_count", "element_count", "missing_count")
    assert in_db["expectations"] == in_memory["expectations"]
    assert [{k: x.get(k) for k in keys[:3]} for x in in_db["expectations"]] == \
        [{k: x.get(k) for k in keys[:3]} for x in full["expectations"]]
    assert in_db["rows"] == pf.height and not in_db["success"]


def test_severity_override_and_json_severity(params):
    # the call's severity applies unless the JSON states one (the column check is always critical)
    r = v.validate_frame("partners", GOOD_INPUTS["partners"]().with_columns(pl.Series("status", ["active", "gone", "active"])),
                         severity=v.FATAL, runtime_params=params)
    assert r["fatal"]
    assert {x["severity"] for x in r["expectations"]} == {v.FATAL}
    r = v.validate_frame("partners", GOOD_INPUTS["partners"]().drop("status"), severity=v.WARNING, runtime_params=params)
    schema = r["expectations"][0]
    assert schema["severity"] == v.FATAL and schema["status"] == "failed"


def test_missing_runtime_parameter_is_an_error():
    with pytest.raises(v.SuiteError, match="month_date_regex"):
        v.validate_frame("partner_fees", GOOD_INPUTS["partner_fees"](), severity=v.WARNING, runtime_params={"currencies": []})
    with pytest.raises(ValueError, match="severity"):
        v.validate_frame("fx_rates", GOOD_INPUTS["fx_rates"](), severity="error", runtime_params={})


# -- result kinds ---------------------------------------------------------------------------------


def test_remittance_that_does_not_reconcile_is_fatal(params):
    bad = remittance().with_columns(
        pl.Series("net_amount", ["700.01", "50000"]),
        pl.Series("gross_amount", ["1000.00", "50000.00"]),
        pl.Series("payment_reference", ["PO-202503-P1", "PO-202502-P2"]),
    )
    rep = v.GateReport(MONTH)
    r = rep.validate("remittance", bad, severity=v.FATAL, runtime_params=params)
    got = {x["description"]: x for x in failed(r)}
    assert set(got) == {
        "gross_amount - withholding_amount = net_amount",
        "gross_amount has exactly the minor-unit digits of payout_currency",
        "payment_reference is PO-YYYYMM-<partner_id>",
    }
    assert got["gross_amount - withholding_amount = net_amount"]["examples"] == [{"value": -0.01, "count": 1}]
    assert got["gross_amount has exactly the minor-unit digits of payout_currency"]["examples"] == [{"value": [2, 0], "count": 1}]
    msg = str(pytest.raises(v.GateFailed, rep.raise_if_fatal).value)
    assert msg.startswith("remittance.csv: ")


def test_duplicate_partner_in_remittance(params):
    two = pl.concat([remittance(), remittance().head(1)])
    r = v.validate_frame("remittance", two, severity=v.FATAL, runtime_params=params)
    got = {x["description"]: x["unexpected_count"] for x in failed(r)}
    assert got == {"partner_id is unique": 2, "payment_reference is unique": 2}


def test_balances_rules(params):
    bad = balances().with_columns(
        pl.Series("closing_balance", ["0.50", "0", "-100.00"]),
        pl.Series("gross_paid", ["1000.00", "50000", "5.00"]),
        pl.Series("net_paid", ["700.00", "50000", "5.00"]),
        pl.Series("status", ["paid", "paid", "negative_balance"]),
    )
    r = v.validate_frame("partner_balances", bad, severity=v.FATAL, runtime_params=params)
    got = {x["description"]: x["unexpected_count"] for x in failed(r)}
    assert got == {"a paid partner closes at zero": 1, "an unpaid partner is paid nothing": 1}


def test_totals_and_chain_mismatches_are_fatal():
    summary = {"USD": {"gross": "1000.00", "withholding": "300.00", "net": "700.00"}}  # JPY missing from summary.json
    rep = v.GateReport(MONTH)
    r = rep.validate("payout_totals", v.payout_totals_frame(remittance(), balances(), summary), severity=v.FATAL)
    got = {x["description"]: x["examples"] for x in failed(r)}
    assert got == {
        "remittance gross total = summary.json gross": [{"value": 50000, "count": 1}],
        "remittance net total = summary.json net paid": [{"value": 50000, "count": 1}],
    }
    prev = s(partner_id=["P1", "P3", "P7"], closing_balance=["40.00", "-90.00", "12.00"])
    r = rep.validate("balance_chain", v.balance_chain_frame(balances(), prev), severity=v.FATAL)
    (x,) = failed(r)
    assert x["unexpected_count"] == 2  # P3 opened at -100 instead of -90; P7 vanished with 12.00
    assert rep.fatal


def test_line_reconciliation_catches_every_row():
    lines = pl.DataFrame({"line_id": [f"L{i}" for i in range(1000)], "currency": ["USD"] * 1000,
                          "amount": ["10.00"] * 1000, "partner_shares": ["2.50"] * 1000, "company_share": ["7.50"] * 999 + ["7.49"]})
    r = v.validate_frame("line_reconciliation", lines, severity=v.FATAL)
    (x,) = failed(r)
    assert x["unexpected_count"] == 1 and x["element_count"] == 1000


def test_line_reconciliation_in_duckdb_on_128_bit_minor_units():
    """The gate's path (compute runs it on the month's lines in DuckDB): HUGEINT minor units, one line
    beyond 64 bits that reconciles, and one line that is a cent out: only that one fails."""
    import duckdb

    con = duckdb.connect()
    con.execute("""create table lines as select 'L' || i as line_id, 'USD' as currency, 1000::hugeint as amount,
                   250::hugeint as partner_shares, case when i = 7 then 749 else 750 end::hugeint as company_share
                   from range(1000) as t(i)""")
    con.execute("insert into lines values ('BIG', 'USD', 12345678901234567899, 4320987615422098765, 8024691285812469134)")
    frame = v.SqlFrame(con, "select * from lines")
    assert frame._sql("select * from lines limit 0").schema["amount"] == pl.Decimal(38, 0)
    r = v.validate_frame("line_reconciliation", frame, severity=v.FATAL)
    (x,) = failed(r)
    assert x["unexpected_count"] == 1 and x["element_count"] == 1001
    assert "BIG" not in json.dumps(x)


# -- report files ---------------------------------------------------------------------------------


def build_report(params):
    rep = v.GateReport(MONTH)
    bad = subscription_billing().with_columns(pl.Series("customer_id", ["<script>alert(1)</script>", None, "C2", "C3"]),
                                              pl.Series("product_family", ["<b>x</b>", "factory", "https://evil.example", "factory"]))
    rep.validate("subscription_billing", bad, severity=v.WARNING, runtime_params=params)
    rep.validate("partners", GOOD_INPUTS["partners"](), severity=v.WARNING, runtime_params=params)
    rep.validate("remittance", remittance(), severity=v.FATAL, runtime_params=params)
    rep.check_quarantine({"subscription_billing": {"read": 4, "quarantined": 1}}, max_pct=50)
    return rep


def test_report_files_are_deterministic_and_self_contained(tmp_path, params):
    a, b = tmp_path / "a", tmp_path / "b"
    build_report(params).write(a)
    build_report(params).write(b)
    for name in ("results.json", "report.html"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    page = (a / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|img|iframe)\b", page, re.I)
    assert "&lt;script&gt;" in page or "&lt;b&gt;" in page
    assert "PASSED WITH WARNINGS" in page
    results = json.loads((a / "results.json").read_text())
    assert results["status"] == "warnings" and results["success"] is True
    text = (a / "results.json").read_text()
    assert "run_id" not in text and "validation_time" not in text and "batch_id" not in text
    assert list(sorted(results)) == list(results)  # sorted keys
    assert not list(a.glob(".*.tmp"))


def test_report_banner_on_failure(tmp_path, params):
    rep = v.GateReport(MONTH)
    rep.validate("subscription_billing", subscription_billing().drop("currency"), severity=v.WARNING, runtime_params=params)
    rep.write(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "FAILED — the run stopped before publishing" in page
    assert "subscription_billing.csv: required column &#x27;currency&#x27; is missing" in page
    assert json.loads((tmp_path / "results.json").read_text())["fatal_messages"] == [
        "subscription_billing.csv: required column 'currency' is missing"
    ]


def test_pandas_frames_are_accepted(params):
    r = v.validate_frame("fx_rates", GOOD_INPUTS["fx_rates"]().to_pandas(), severity=v.WARNING, runtime_params=params)
    assert r["success"]


def test_duckdb_relation_and_arrow_table_are_accepted(params):
    import duckdb

    con = duckdb.connect()
    rel = con.sql("select 'EUR' as currency, '2025-03-31' as rate_date, '1.08' as rate")
    assert v.validate_frame("fx_rates", rel, severity=v.WARNING, runtime_params=params)["success"]
    arrow = GOOD_INPUTS["fx_rates"]().to_arrow()
    assert v.validate_frame("fx_rates", arrow, severity=v.WARNING, runtime_params=params)["success"]
