"""One custom field value checked against its definition's type and put in its stored form.

Stored forms: text as given; number as a JSON number (integral floats become integers, so ``1.0`` and
``1`` are one value for uniqueness); decimal as a canonical string (``"12.5"``); date ``YYYY-MM-DD``;
datetime RFC 3339 in UTC; enum the option's stable ``value``; multi_enum a list of values without
repeats; url as given once checked; email lower-cased.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ...timeutil import to_utc
from ..spec import FieldType

INDEXED = {
    "number": "num",
    "decimal": "num",
    "datetime": "ts",
    "text": "txt",
    "date": "txt",
    "enum": "txt",
    "email": "txt",
    "url": "txt",
}
"""type -> the ``custom_field_values`` column (migration 0011) holding it; other types are not indexed."""
COLUMN_TYPES: dict[str, FieldType] = {"num": "numeric", "txt": "text", "ts": "timestamptz"}
INDEXED_PREFIX = 500
"""``txt`` holds this many leading characters: btree keys have a size limit."""

MAX_TEXT = 10_000
MAX_URL = 2048
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


class BadValue(ValueError):
    """The reason a value does not fit its definition (shown to the client)."""


def normalise(definition: Mapping[str, Any], value: Any) -> Any:
    kind = definition["type"]
    if kind == "text":
        return _text(value, MAX_TEXT)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadValue("expected a number")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise BadValue("expected a finite number")
            if value.is_integer() and abs(value) < 2**53:
                return int(value)
        elif abs(value) >= 2**63:
            raise BadValue("number out of range")
        return value
    if kind == "decimal":
        return _decimal(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise BadValue("expected true or false")
        return value
    if kind == "date":
        try:
            return dt.date.fromisoformat(_text(value, 10)).isoformat()
        except ValueError:
            raise BadValue("expected a date (YYYY-MM-DD)") from None
    if kind == "datetime":
        return _datetime(value)
    allowed = [o["value"] for o in definition.get("options") or ()]
    if kind == "enum":
        if not isinstance(value, str) or value not in allowed:
            raise BadValue(f"expected one of: {', '.join(allowed)}")
        return value
    if kind == "multi_enum":
        if not isinstance(value, list):
            raise BadValue("expected an array of option values")
        bad = [v for v in value if not isinstance(v, str) or v not in allowed]
        if bad:
            raise BadValue(f"{bad[0]!r} is not an option; expected values from: {', '.join(allowed)}")
        return list(dict.fromkeys(value))
    if kind == "url":
        return _url(value)
    if kind == "email":
        text = _text(value, 320).strip().lower()
        if not _EMAIL.match(text):
            raise BadValue("expected an email address")
        return text
    raise BadValue(f"unsupported type {kind}")  # the table's check constraint rules this out


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise BadValue("expected a string")
    if len(value) > limit:
        raise BadValue(f"at most {limit} characters")
    if "\x00" in value:
        raise BadValue("must not contain NUL characters")
    return value


def _decimal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadValue('expected a decimal number, as a string such as "12.50" or a number')
    text = str(value).strip()
    if len(text) > 60 or not _DECIMAL.match(text):
        raise BadValue('expected a decimal number such as "12.50"')
    number = decimal.Decimal(text)
    # canonical: no exponent, no trailing zeros, so equal amounts are equal strings
    out = format(number.normalize(), "f")
    return "0" if out in ("-0", "+0") else out


def _datetime(value: Any) -> str:
    text = _text(value, 40)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadValue("expected an RFC 3339 timestamp such as 2026-01-31T09:00:00Z") from None
    if parsed.tzinfo is None:
        raise BadValue("the timestamp needs an offset (Z or +hh:mm)")
    try:
        parsed = to_utc(parsed)
    except ValueError as exc:
        raise BadValue(str(exc)) from None
    return parsed.isoformat().replace("+00:00", "Z")


def _url(value: Any) -> str:
    text = _text(value, MAX_URL).strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        raise BadValue("expected an http or https URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host or any(c.isspace() for c in text):
        raise BadValue("expected an http or https URL")
    return text


def key_text(value: Any) -> str:
    """A stored value as one comparable string (values of unique fields are scalars)."""
    return repr(value)
