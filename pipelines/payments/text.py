"""Names and references in the character sets and lengths each payment format allows.

Every name goes through one path: symbols (emoji, dingbats, trade marks) are dropped, the rest is
transliterated to ASCII with ``anyascii`` (Zoë -> Zoe, Straße -> Strasse, Москва -> Moskva,
北京 -> BeiJing), a few look-alike characters are mapped, anything the target set does not have
becomes a space, runs of spaces collapse to one, and the text is cut to the field's length.

- ISO 20022 / SEPA (``sepa_text``): the EPC's Latin character set ``a-z A-Z 0-9 / - ? : ( ) . , ' +``
  and space (EPC SEPA Credit Transfer Implementation Guidelines, "Character set"); names cut to 70
  (the EPC's limit for the creditor and debtor name; the pain.001.001.09 XSD itself allows 140).
- NACHA (``nacha_text``): upper case ``A-Z 0-9``, space and ``& ' ( ) + , - . / : ?``. The Nacha
  Operating Rules allow any character above ASCII 0x1F in alphameric fields; banks ask for upper
  case and plain punctuation, so this is the conservative subset. Fields are left-justified and
  space-filled to their width (receiving company name 22, company name 16, origin name 23).
- PayPal (``paypal_note``): the note to the recipient, ASCII printable, at most 400 characters
  (PayPal Payouts web upload, "Note to recipient").
- References (``reference_problem``): SPEC section 8's end-to-end id rule, at most 35 characters of
  the SEPA set, no leading, trailing or double ``/``; PayPal's customer id also at most 30 and no
  spaces.
"""

from __future__ import annotations

import re
import unicodedata

from anyascii import anyascii

__all__ = [
    "NACHA_CHARS",
    "SEPA_CHARS",
    "SEPA_NAME_MAX",
    "nacha_text",
    "paypal_note",
    "reference_problem",
    "sepa_text",
]

SEPA_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-?:().,'+ ")
NACHA_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789&'()+,-./:? ")
PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))

SEPA_NAME_MAX = 70  # EPC: Name of the Beneficiary / Originator, 70 characters
REFERENCE_MAX = 35  # ISO 20022 Max35Text, EPC end-to-end identification
PAYPAL_CUSTOMER_ID_MAX = 30  # PayPal Payouts file: "Customer ID", 30 characters, no spaces
PAYPAL_NOTE_MAX = 400  # PayPal Payouts file: "Note to recipient"

# Characters close enough to one the formats have; applied after transliteration.
_LOOKALIKE = str.maketrans({"&": "+", "`": "'", '"': "'", "[": "(", "]": ")", "{": "(", "}": ")",
                            "<": "(", ">": ")", "_": "-"})
_NACHA_LOOKALIKE = str.maketrans({"`": "'", '"': "'", "[": "(", "]": ")", "{": "(", "}": ")",
                                  "<": "(", ">": ")", "_": "-"})
_SPACES = re.compile(r" {2,}")


def _ascii(text: str) -> str:
    """Transliterated ASCII with symbols (Unicode category So, e.g. emoji) dropped first."""
    text = unicodedata.normalize("NFC", text or "")
    kept = "".join(ch for ch in text if unicodedata.category(ch) != "So")
    return anyascii(kept)


def _fit(text: str, allowed: frozenset[str], width: int) -> str:
    text = "".join(ch if ch in allowed else " " for ch in text)
    text = _SPACES.sub(" ", text).strip()
    return text[:width].rstrip()


def sepa_text(text: str, width: int = SEPA_NAME_MAX) -> str:
    """``text`` in the SEPA/ISO 20022 Latin set, at most ``width`` characters ('' if nothing is left)."""
    return _fit(_ascii(text).translate(_LOOKALIKE), SEPA_CHARS, width)


def nacha_text(text: str, width: int) -> str:
    """``text`` in upper case NACHA characters, cut to ``width`` (not padded; '' if nothing is left)."""
    return _fit(_ascii(text).upper().translate(_NACHA_LOOKALIKE), NACHA_CHARS, width)


def paypal_note(text: str) -> str:
    """A PayPal note to the recipient: printable ASCII, at most 400 characters."""
    return _fit(_ascii(text), PRINTABLE_ASCII, PAYPAL_NOTE_MAX)


def reference_problem(reference: str, *, paypal: bool = False) -> str | None:
    """Why ``reference`` cannot be an end-to-end id (None when it can).

    SPEC section 8: at most 35 characters from the SEPA character set, no leading, trailing or
    double ``/``. For PayPal (``paypal=True``) the customer id also has at most 30 characters and
    no space.
    """
    if not reference:
        return "empty"
    if len(reference) > REFERENCE_MAX:
        return f"longer than {REFERENCE_MAX} characters"
    bad = sorted({ch for ch in reference if ch not in SEPA_CHARS})
    if bad:
        return "characters outside the SEPA character set: " + " ".join(repr(ch) for ch in bad)
    if reference.startswith("/") or reference.endswith("/") or "//" in reference:
        return "a leading, trailing or double '/'"
    if paypal:
        if len(reference) > PAYPAL_CUSTOMER_ID_MAX:
            return f"longer than PayPal's {PAYPAL_CUSTOMER_ID_MAX}-character customer id"
        if " " in reference:
            return "a space (PayPal's customer id allows none)"
    return None
