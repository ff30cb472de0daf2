"""SQL pieces every report with a period uses: the period as a range of a timestamp column, and the bucket
(``date_trunc`` in the report's time zone) a timestamp or a date falls in. Their parameters: ``lower`` and
``upper`` (the period's local midnights in UTC), ``unit`` (the interval) and ``tz``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Date, DateTime, Text, and_, cast, func
from sqlalchemy.sql.elements import ColumnElement

from .. import sql


def local_bucket(column: Any) -> ColumnElement[Any]:
    """The first day of the bucket (``unit``) holding a timestamp, in the time zone ``tz``."""
    local = func.timezone(sql.param("tz", Text), column)
    return cast(func.date_trunc(sql.param("unit", Text), local), Date)


def date_bucket(column: Any) -> ColumnElement[Any]:
    """The same for a date (a date has no time zone)."""
    return cast(func.date_trunc(sql.param("unit", Text), cast(column, DateTime)), Date)


def in_period(column: Any) -> ColumnElement[bool]:
    """``[lower, upper)``, the period's local midnights in UTC."""
    return and_(
        column >= sql.param("lower", DateTime(timezone=True)),
        column < sql.param("upper", DateTime(timezone=True)),
    )
