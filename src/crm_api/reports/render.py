"""A report as JSON, or as CSV when the client asks for ``text/csv``: one line per row of the report (a
stage, a period, a group) under a header line, nested values flattened (``amount.USD``)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from fastapi import Request, Response

from ..http import json_response

CSV = "text/csv"


def wants_csv(request: Request) -> bool:
    """``text/csv`` when the Accept header names it before ``application/json`` (or without it)."""
    for part in request.headers.get("accept", "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media == CSV:
            return True
        if media == "application/json":
            return False
    return False


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """The columns in the rows' key order; a nested object becomes one column per key, sorted (the
    currencies of a money field, the reasons of ``lost_reasons``), over every row."""
    nested: dict[str, set[str]] = {}
    order: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            order[key] = None
            if isinstance(value, dict):
                nested.setdefault(key, set()).update(value)
            elif isinstance(value, list):  # a series (a cohort's months): one column per place
                nested.setdefault(key, set()).update(str(i) for i in range(len(value)))
    columns: list[str] = []
    for key in order:
        if key in nested:
            columns += [f"{key}.{sub}" for sub in sorted(nested[key], key=_natural)]
        else:
            columns.append(key)
    return columns


def _natural(key: str) -> tuple[int, str]:
    """Places in number order (2 before 10), names in text order."""
    return (int(key), "") if key.isdigit() else (-1, key)


def _value(row: dict[str, Any], column: str) -> Any:
    if column in row:
        return row[column]
    key, _, sub = column.partition(".")
    inner = row.get(key)
    if isinstance(inner, dict):
        return inner.get(sub)
    if isinstance(inner, list) and sub.isdigit() and int(sub) < len(inner):
        return inner[int(sub)]
    return None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    # a cell a spreadsheet would run as a formula (a stage named "=HYPERLINK(...)") is quoted as text;
    # the reports' own numbers are never negative, so no number is touched
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def to_csv(rows: list[dict[str, Any]]) -> str:
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(_value(row, c)) for c in columns])
    return buffer.getvalue()


def respond(request: Request, report: dict[str, Any], rows_key: str) -> Response:
    if wants_csv(request):
        return Response(to_csv(report[rows_key]), media_type=f"{CSV}; charset=utf-8")
    return json_response(report)


def csv_content(description: str) -> dict[int | str, dict[str, Any]]:
    """The CSV form of a report's 200, for the route's ``responses``."""
    return {200: {"content": {CSV: {"schema": {"type": "string"}, "example": description}}}}
