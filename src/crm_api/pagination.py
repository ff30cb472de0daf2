"""Keyset cursors, sort parsing, the list envelope and the page every list cuts from its rows."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from . import jsonutil
from .errors import InvalidCursor, field_error
from .timeutil import to_utc

Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class Sort:
    column: str
    descending: bool

    @property
    def token(self) -> str:
        return ("-" if self.descending else "") + self.column


def parse_sort(value: str | None, allowed: tuple[str, ...], default: str = "-created_at") -> Sort:
    # exactly what the spec's enum says: one optional "-", then the column (no "+", spaces or empty value)
    raw = default if value is None else value
    descending = raw.startswith("-")
    column = raw.removeprefix("-")
    if column not in allowed:
        raise field_error("/sort", f"cannot sort by '{column}'; choose one of {', '.join(allowed)}")
    return Sort(column, descending)


def encode_cursor(sort: Sort, value: Any, row_id: uuid.UUID) -> str:
    if isinstance(value, dt.datetime):
        value = ["t", value.isoformat()]
    raw = jsonutil.dumps([sort.token, value, str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: Sort) -> tuple[Any, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        token, value, row_id = jsonutil.loads(raw)
        # a tampered cursor may hold anything: each part must have the shape encode_cursor gives it
        if not isinstance(row_id, str):
            raise TypeError("row id")
        if isinstance(value, list):
            if len(value) != 2 or not isinstance(value[1], str):
                raise TypeError("tagged value")
            value = to_utc(dt.datetime.fromisoformat(value[1]))
        elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise ValueError("integer out of range")
        parsed_id = uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursor("The cursor is not one this API issued") from exc
    if token != sort.token:
        raise InvalidCursor(f"This cursor belongs to sort '{token}', not '{sort.token}'")
    return value, parsed_id


def envelope(data: list[dict[str, Any]], has_more: bool, next_cursor: str | None) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "next_cursor": next_cursor}


def keyset_page(
    rows: Sequence[Row],
    limit: int,
    cursor_of: Callable[[Row], str],
    to_api: Callable[[Row], dict[str, Any]],
) -> dict[str, Any]:
    """The list envelope of one keyset page. ``rows`` were fetched with ``limit + 1``: a row beyond the
    limit means there is more, and the next page starts after the last row shown (``cursor_of`` it)."""
    has_more = len(rows) > limit
    shown = rows[:limit]
    return envelope([to_api(r) for r in shown], has_more, cursor_of(shown[-1]) if has_more else None)


def cursor_by(sort: Sort, column: str | None = None) -> Callable[[Mapping[str, Any]], str]:
    """The cursor of a row in a list sorted by ``sort``: its value of ``column`` (the sort's own column by
    default) and its id."""
    key = column or sort.column
    return lambda row: encode_cursor(sort, row[key], row["id"])
