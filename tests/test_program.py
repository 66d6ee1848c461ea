"""program.yaml is validated strictly before anything is read; messages name the key."""

from pathlib import Path

import pytest

from pipelines.core.program import ProgramError, load_program

SPEC_PROGRAM = (Path(__file__).resolve().parent / "fixtures" / "program.yaml").read_text()


def _load(tmp_path, text):
    p = tmp_path / "program.yaml"
    p.write_text(text)
    return load_program(p)


def test_spec_program_loads_with_exact_decimals(tmp_path):
    prog = _load(tmp_path, SPEC_PROGRAM)
    a = prog.agreements[0]
    assert str(a.subscription.level_uplift.certified) == "0.025"
    assert str(a.subscription.base_rates["platform"].joint) == "0.30"
    assert a.tiers.steps[0].above == 1000000 and str(a.tiers.steps[0].uplift) == "0.10"
    assert prog.payout.minimum == 50 and prog.payout.net_fees is True
    assert prog.product_families() == ["factory", "platform"]


@pytest.mark.parametrize("change, key", [
    (("company_led_rate: 0.40", "company_led_rate: 0.40\n      surprise: 1"), "agreements[0].project.surprise"),
    (("company_led_rate: 0.40", "company_led_rate: 1.40"), "agreements[0].project.company_led_rate"),
    (("partner_led: 0.25", "partner_led: -0.25"), "agreements[0].subscription.base_rates.platform.partner_led"),
    (("{up_to: 250000, rate: 0.75}", "{up_to: 40000, rate: 0.75}"), "agreements[0].project.partner_led_bands"),
    (("- {up_to: null, rate: 0.80}", "- {up_to: 300000, rate: 0.80}"), "agreements[0].project.partner_led_bands"),
    (("  - effective_from: 2025-01-01\n    subscription:", "  - subscription:"), "agreements[0].effective_from"),
    (("scope: lifetime ", "scope: forever "), "agreements[0].tiers.scope"),
    (("currency: USD", "currency: XYZ"), "program.currency"),
    (("minimum: 50 ", "minimum: 50.001 "), "payout.minimum"),
    (("net_fees: true", "net_fees: true\nextra: 1"), "extra"),
])
def test_bad_program_names_the_key(tmp_path, change, key):
    old, new = change
    assert old in SPEC_PROGRAM
    with pytest.raises(ProgramError) as err:
        _load(tmp_path, SPEC_PROGRAM.replace(old, new, 1))
    assert key in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_program_stops_run(tmp_path):
    with pytest.raises(ProgramError, match="required file is missing"):
        load_program(tmp_path / "nope.yaml")
