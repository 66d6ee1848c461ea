"""results.json and report.html: deterministic, self-contained, escaped."""

import json

import polars as pl
from markupsafe import escape

from pipelines.validation import checks
from pipelines.validation.report import write_report

import validation_frames as vf
from validation_frames import MONTH, PARAMS, with_value


def failing_frames() -> dict[str, pl.DataFrame]:
    frames = vf.all_frames()
    # a value with markup and a URL in it, shown as the example of a failing check
    frames["remittance"] = with_value(frames["remittance"], "payment_reference", 2, "<b>http://evil.example/x</b>")
    frames["remittance"] = with_value(frames["remittance"], "account_last4", 0, "GB33 BUKB 2020 1555 5555 55")
    frames["fx_moves"] = with_value(frames["fx_moves"], "move_bp", 0, 2500)
    return frames


def test_results_json_is_byte_identical_for_equal_inputs(tmp_path):
    for folder in ("a", "b"):
        write_report(checks.validate(MONTH, failing_frames(), PARAMS), tmp_path / folder)
    for name in ("results.json", "report.html"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    text = (tmp_path / "a" / "results.json").read_text()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert data["status"] == "failed" and data["month"] == MONTH
    assert [r["suite"] for r in data["results"]] == list(vf.FRAMES)
    assert checks.ValidationReport.from_dict(data).to_dict() == data
    # nothing of GX's run: no run ids, times or batch ids
    for word in ("run_id", "batch_id", "validation_time", "checkpoint_id", "run_time"):
        assert word not in text


def test_report_html_is_offline_and_escaped(tmp_path):
    report = checks.validate(MONTH, failing_frames(), PARAMS)
    write_report(report, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower() and "://" not in page
    assert "<link" not in page and "src=" not in page and "url(" not in page
    assert "<b>" not in page and "&lt;b&gt;http:&#47;&#47;evil.example/x&lt;/b&gt;" in page
    # the banner is red and lists both the fatal messages and the warning
    assert '<div class="banner failed">' in page
    for message in report.fatal_messages() + report.warning_messages():
        assert message.split(":")[0] in page
    assert "critical" in page and "warning" in page
    # a section per suite, with the expectations' descriptions
    for r in report.results:
        assert f'id="suite-{r.suite}"' in page
        for e in r.expectations:
            assert str(escape(e["description"])) in page


def test_account_numbers_show_their_last_4_characters_only(tmp_path):
    report = checks.validate(MONTH, failing_frames(), PARAMS)
    write_report(report, tmp_path)
    for name in ("results.json", "report.html"):
        text = (tmp_path / name).read_text()
        assert "BUKB" not in text and "1555" not in text and "****5555" in text
    assert "(e.g. PO-202503-P1: ****5555)" in " ".join(report.fatal_messages())
    assert checks.mask_accounts("IBAN DE89370400440532013000, ref PO-202503-P9, 2025-03-31, 1250.00") == \
        "IBAN ****3000, ref PO-202503-P9, 2025-03-31, 1250.00"
    assert checks.mask_accounts("acct 123456789") == "acct ****6789"
    assert checks.mask_accounts("12345678.90 0.123456789 P-1234567") == "12345678.90 0.123456789 P-1234567"


def test_banner_colours(tmp_path):
    write_report(checks.validate(MONTH, vf.all_frames(), PARAMS), tmp_path / "ok")
    assert '<div class="banner passed">' in (tmp_path / "ok" / "report.html").read_text()
    frames = {"fx_moves": with_value(vf.fx_moves(), "move_bp", 0, 2500)}
    write_report(checks.validate(MONTH, frames, PARAMS), tmp_path / "warn")
    page = (tmp_path / "warn" / "report.html").read_text()
    assert '<div class="banner warnings">' in page and "fx_rates.csv: the fx rate moved by more than 1000 bp since last month" in page
