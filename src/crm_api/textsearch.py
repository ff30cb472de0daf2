"""What search compares: text folded one way when it is written (the ``search_text`` columns) and when it is
asked for (``q=`` on lists, ``GET /v1/search``), so the trigram indexes on those columns serve both.

Folding lower-cases and drops accents here, in Python, rather than with PostgreSQL's ``unaccent`` in an index
expression: phones need Python anyway (``phonenumbers``), and one function on both sides cannot drift from
an SQL twin. A phone is kept as its E.164 digits (``15550102030``), read in the default region when it has no
country code; a query that looks like a phone is read the same way, so every format finds it.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers

from .config import get_settings

# letters NFKD does not split into a base letter and a mark
_LETTERS = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l"}
    | {"đ": "d", "Đ": "d", "ð": "d", "Ð": "d", "þ": "th", "Þ": "th", "\u0131": "i"}
)
_PHONE = re.compile(r"\+?[0-9 ()./-]+")
MIN_PHONE_DIGITS = 7


def fold(text: str) -> str:
    """Lower case, accents and ligatures gone: ``José Ærø`` -> ``jose aero``."""
    split = unicodedata.normalize("NFKD", text.translate(_LETTERS))
    return "".join(c for c in split if not unicodedata.combining(c)).lower()


def phone_digits(raw: str | None) -> str | None:
    """A phone's E.164 digits (no ``+``), read in the default region when it has no country code; the bare
    digits when ``phonenumbers`` cannot read it; None below 7 digits."""
    digits = re.sub(r"[^0-9]", "", raw or "")
    if raw is None or len(digits) < MIN_PHONE_DIGITS:
        return None
    try:
        number = phonenumbers.parse(raw, get_settings().phone_region)
    except phonenumbers.NumberParseException:
        return digits
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


def looks_like_phone(q: str) -> bool:
    """Only digits and what people type between them, and enough digits to be a number."""
    return _PHONE.fullmatch(q.strip()) is not None and sum(c.isdigit() for c in q) >= MIN_PHONE_DIGITS


def query_text(q: str) -> str:
    """What a query compares against ``search_text``: a phone's digits, or the folded words."""
    if looks_like_phone(q):
        return phone_digits(q) or ""
    return " ".join(fold(q).split())
