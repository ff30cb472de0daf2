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


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


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


def to_csv(rows: list[dict[str, Any]], leading: dict[str, Any] | None = None) -> str:
    """``leading``: columns every line repeats (the period of a report without buckets)."""
    flat = [{**_flat(leading or {}), **_flat(r)} for r in rows]
    header: dict[str, None] = {}
    for row in flat:
        header.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(list(header))
    for row in flat:
        writer.writerow([_cell(row.get(k)) for k in header])
    return buffer.getvalue()


def respond(request: Request, report: dict[str, Any], rows_key: str) -> Response:
    if wants_csv(request):
        return Response(to_csv(report[rows_key]), media_type=f"{CSV}; charset=utf-8")
    return json_response(report)


def csv_content(description: str) -> dict[int | str, dict[str, Any]]:
    """The CSV form of a report's 200, for the route's ``responses``."""
    return {200: {"content": {CSV: {"schema": {"type": "string"}, "example": description}}}}
