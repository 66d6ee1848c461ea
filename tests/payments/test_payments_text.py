"""Transliteration and cutting of names, and the reference rule, per format."""

from __future__ import annotations

import pytest

from pipelines.payments.text import SEPA_CHARS, nacha_text, paypal_note, reference_problem, sepa_text


@pytest.mark.parametrize(
    ("name", "sepa", "nacha22"),
    [
        ("Zoë Ærøskøbing Straße", "Zoe Aeroskobing Strasse", "ZOE AEROSKOBING STRASS"),
        ("北京科技有限公司", "BeiJingKeJiYouXianGongSi", "BEIJINGKEJIYOUXIANGONG"),
        ("Москва ООО", "Moskva OOO", "MOSKVA OOO"),
        ("العربية", "l'rbyh", "L'RBYH"),
        ("Smith & Sons, Inc.", "Smith + Sons, Inc.", "SMITH & SONS, INC."),
        ('A_B "quoted" <x> #1 100% @home!', "A-B 'quoted' (x) 1 100 home", "A-B 'QUOTED' (X) 1 100"),
        ("😀 Emoji™ Ltd", "Emoji Ltd", "EMOJI LTD"),
        ("  lots   of\tspace\n", "lots of space", "LOTS OF SPACE"),
        ("", "", ""),
        ("🙂", "", ""),
    ],
)
def test_names(name, sepa, nacha22):
    assert sepa_text(name) == sepa
    assert nacha_text(name, 22) == nacha22
    assert set(sepa_text(name)) <= SEPA_CHARS


def test_long_names_are_cut_at_the_field_length():
    long = "Ölfirma Überseehandel Gesellschaft mit beschränkter Haftung & Compagnie Kommanditgesellschaft"
    assert sepa_text(long) == "Olfirma Uberseehandel Gesellschaft mit beschrankter Haftung + Compagni"
    assert len(sepa_text(long)) == 70
    assert nacha_text(long, 16) == "OLFIRMA UBERSEEH"
    # a cut that ends on a space does not leave a trailing space
    assert sepa_text("a" * 69 + " b") == "a" * 69


def test_paypal_note():
    assert paypal_note("Partner payout 2025-01 PO-202501-P1") == "Partner payout 2025-01 PO-202501-P1"
    assert paypal_note("Zahlung für Zoë 😀") == "Zahlung fur Zoe"
    assert len(paypal_note("x" * 500)) == 400


@pytest.mark.parametrize(
    ("reference", "paypal", "problem"),
    [
        ("PO-202501-P001", False, None),
        ("PO-202501-" + "x" * 25, False, None),  # 35
        ("PO-202501-" + "x" * 26, False, "longer than 35"),
        ("PO-202501-a/b", False, None),
        ("PO-202501-a//b", False, "double '/'"),
        ("PO-202501-ab/", False, "trailing"),
        ("/PO-202501-ab", False, "leading"),
        ("PO-202501-Zoë", False, "SEPA character set"),
        ("PO-202501-a_b", False, "SEPA character set"),
        ("PO-202501-a b", False, None),
        ("PO-202501-a b", True, "space"),
        ("PO-202501-" + "x" * 20, True, None),  # 30
        ("PO-202501-" + "x" * 21, True, "30-character"),
        ("", False, "empty"),
    ],
)
def test_reference_rule(reference, paypal, problem):
    found = reference_problem(reference, paypal=paypal)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
