"""Timestamps as the API stores them: aware, in UTC, and within what Python and PostgreSQL can hold."""

from __future__ import annotations

import datetime as dt

OUT_OF_RANGE = "timestamp out of range (in UTC it must fall between years 1 and 9999)"


def to_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC (a naive one is taken as UTC); ``ValueError`` when UTC falls outside years 1-9999.

    ``0001-01-01T00:00:00+01:00`` and ``9999-12-31T23:00:00-05:00`` parse, but have no UTC ``datetime``:
    converting them (or letting asyncpg convert them) raises ``OverflowError``.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None
