"""The query parameters reports share, read and checked here so that every bad value is a 422 naming its
parameter (``/from``, ``/tz``, ``/group_by``), never a 500: periods of dates bucketed in a time zone,
ids, flags and timestamps.

A period is ``from`` and ``to`` (dates, both inclusive) in the time zone ``tz``; the statements get it as
two UTC instants (local midnight of ``from``, local midnight after ``to``), so a range of an index on a
timestamp column answers it, and bucket timestamps by ``date_trunc`` of the local time.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import field_error
from ..timeutil import to_utc

INTERVALS = ("day", "week", "month", "quarter", "year")
MAX_BUCKETS = 1000
"""More buckets than a chart can show; also bounds the answer's size."""


def check_known(query: Mapping[str, str], allowed: Iterable[str]) -> None:
    """A typo (``pipline_id``) is a 422, not a report silently unfiltered."""
    names = set(allowed)
    for name, value in query.items():
        if name not in names:
            raise field_error(
                f"/{name}", f"unknown query parameter; this report takes {', '.join(sorted(names))}"
            )
        if "\x00" in value:
            raise field_error(f"/{name}", "must not contain NUL characters")


def given(query: Mapping[str, str], name: str) -> str | None:
    """The parameter's value, None when it is left out. Given empty it is refused, not taken for its
    default: the OpenAPI document's types (a date, a UUID, an enum) allow no empty string either."""
    value = query.get(name)
    if value == "":
        raise field_error(f"/{name}", "must not be empty; leave the parameter out for its default")
    return value


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def uuid_param(query: Mapping[str, str], name: str) -> uuid.UUID | None:
    """The hyphenated form only, as the spec's ``format: uuid`` has it (``uuid.UUID`` takes more)."""
    value = given(query, name)
    if value is None:
        return None
    if not _UUID.fullmatch(value):
        raise field_error(f"/{name}", "must be a UUID")
    return uuid.UUID(value)


def flag(query: Mapping[str, str], name: str) -> bool:
    """As the lists take ``include_archived``: true or false, or 1 or 0."""
    value = (given(query, name) or "false").lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise field_error(f"/{name}", "must be true or false")


FIRST_YEAR, LAST_YEAR = 1900, 9000
"""Dates and timestamps a report takes: room for any business's history, and months before and after
that stay in the calendar."""


def timestamp(query: Mapping[str, str], name: str) -> dt.datetime | None:
    """An RFC 3339 timestamp (a date alone is its midnight); without an offset it is UTC."""
    value = given(query, name)
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.upper())  # RFC 3339 allows a lower-case t and z
    except ValueError as exc:
        raise field_error(f"/{name}", f"must be an RFC 3339 timestamp ({exc})") from None
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise field_error(f"/{name}", f"must fall between {FIRST_YEAR} and {LAST_YEAR}")
    return to_utc(moment)


def choice(query: Mapping[str, str], name: str, options: tuple[str, ...], default: str | None) -> str | None:
    value = given(query, name) or default
    if value is not None and value not in options:
        raise field_error(f"/{name}", f"must be one of {', '.join(options)}")
    return value


@functools.cache
def _zones() -> frozenset[str]:
    """The IANA names (not whatever file ``ZoneInfo`` would open: ``posixrules`` is one, PostgreSQL does not
    know it)."""
    return frozenset(zoneinfo.available_timezones())


def zone(query: Mapping[str, str], name: str = "tz", pointer: str = "/tz") -> zoneinfo.ZoneInfo:
    value = given(query, name) or "UTC"
    if value not in _zones():
        raise field_error(pointer, "must be an IANA time zone name, such as Europe/Paris")
    return zoneinfo.ZoneInfo(value)


def trunc(day: dt.date, interval: str) -> dt.date:
    """The first day of the bucket holding ``day``, as PostgreSQL's ``date_trunc`` has it (weeks begin on
    Monday)."""
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    if interval == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if interval == "year":
        return day.replace(month=1, day=1)
    return day


def next_start(start: dt.date, interval: str) -> dt.date:
    """The first day of the bucket after the one starting at ``start``."""
    return _after(start, interval)


def _after(start: dt.date, interval: str) -> dt.date:
    """The first day of the bucket after the one starting at ``start``."""
    if interval == "day":
        return start + dt.timedelta(days=1)
    if interval == "week":
        return start + dt.timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[interval]
    index = start.year * 12 + start.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    start: dt.date
    end: dt.date
    """Inclusive."""
    interval: str
    tz: zoneinfo.ZoneInfo

    @property
    def tz_name(self) -> str:
        return self.tz.key

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """Local midnight of ``start`` and local midnight after ``end``, in UTC: ``[lower, upper)``."""
        after = self.end + dt.timedelta(days=1)
        return (
            dt.datetime.combine(self.start, dt.time(), self.tz).astimezone(dt.UTC),
            dt.datetime.combine(after, dt.time(), self.tz).astimezone(dt.UTC),
        )

    def buckets(self) -> list[dt.date]:
        first, out = trunc(self.start, self.interval), []
        while first <= self.end:
            out.append(first)
            first = _after(first, self.interval)
        return out


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date(query: Mapping[str, str], name: str, default: dt.date) -> dt.date:
    """``YYYY-MM-DD`` only (``date.fromisoformat`` also takes ``20260101`` and ISO weeks)."""
    value = given(query, name)
    if value is None:
        return default
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise field_error(f"/{name}", "must be a date, YYYY-MM-DD") from None


def period(query: Mapping[str, str], default_interval: str) -> Period:
    """``from``, ``to`` (default: the current calendar year in ``tz``), ``interval`` and ``tz``."""
    tz = zone(query)
    today = dt.datetime.now(tz).date()
    start = _date(query, "from", today.replace(month=1, day=1))
    end = _date(query, "to", today.replace(month=12, day=31))
    for name, day in (("from", start), ("to", end)):
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise field_error(f"/{name}", f"must fall between {FIRST_YEAR} and {LAST_YEAR}")
    if start > end:
        raise field_error("/from", "must not be after to")
    interval = choice(query, "interval", INTERVALS, default_interval) or default_interval
    if _count(start, end, interval) > MAX_BUCKETS:
        raise field_error(
            "/interval", f"the period holds more than {MAX_BUCKETS} buckets; widen the interval"
        )
    return Period(start, end, interval, tz)


def _count(start: dt.date, end: dt.date, interval: str) -> int:
    """How many buckets ``Period.buckets`` would list, without listing them."""
    first, last = trunc(start, interval), trunc(end, interval)
    if interval in ("day", "week"):
        return (last - first).days // (7 if interval == "week" else 1) + 1
    months = (last.year - first.year) * 12 + last.month - first.month
    return months // {"month": 1, "quarter": 3, "year": 12}[interval] + 1


_INTEGER = re.compile(r"-?[0-9]{1,10}")


def integer(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = given(query, name)
    if value is None:
        return default
    # digits only: int() also takes "+5", " 5" and "5_0", which the spec's integer does not
    number = int(value) if _INTEGER.fullmatch(value) else low - 1
    if not low <= number <= high:
        raise field_error(f"/{name}", f"must be an integer from {low} to {high}")
    return number


def currency(query: Mapping[str, str], default: str) -> str:
    value = given(query, "currency") or default
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise field_error("/currency", "must be an ISO 4217 code, such as USD")
    return value


def months_back(day: dt.date, count: int) -> list[dt.date]:
    """The first days of the ``count`` months ending with ``day``'s, oldest first."""
    index = day.year * 12 + day.month - 1
    return [dt.date(i // 12, i % 12 + 1, 1) for i in range(index - count + 1, index + 1)]
