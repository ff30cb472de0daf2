"""SLA clock arithmetic: calendar time, or business hours of a weekly schedule in an IANA time zone.

Pure functions over aware datetimes. A schedule's windows are wall-clock times of its zone; each day's
windows are turned into instants with ``zoneinfo``, so DST days are as long as they really are (a window
holding a spring-forward gap is an hour shorter, one holding a fall-back hour an hour longer; a wall time
inside a gap is read with the offset from before the jump, so 02:30 on a spring-forward night is 03:30).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = dt.timedelta(days=1)
# Beyond this many days without a business minute the schedule is treated as empty (a guard: the
# validator already refuses empty schedules).
_MAX_DAYS = 366 * 30


@lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_hhmm(value: str) -> int:
    """``"09:30"`` -> 570 minutes after midnight; ``"24:00"`` is the end of the day."""
    hours, _, minutes = value.partition(":")
    total = int(hours) * 60 + int(minutes)
    if not (len(hours) == 2 and len(minutes) == 2 and 0 <= int(minutes) < 60 and 0 <= total <= 1440):
        raise ValueError(f"not a time of day: {value!r}")
    return total


@dataclass(frozen=True)
class Schedule:
    """Weekly business hours: per weekday (0 = Monday) sorted, non-overlapping (start, end) minutes."""

    zone: ZoneInfo
    windows: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def from_json(cls, time_zone: str, schedule: Mapping[str, Sequence[Mapping[str, str]]]) -> Schedule:
        days = []
        for day in DAYS:
            spans = sorted((parse_hhmm(w["start"]), parse_hhmm(w["end"])) for w in schedule.get(day, ()))
            days.append(tuple(spans))
        if not any(days):
            raise ValueError("a business-hours schedule needs at least one window")
        return cls(ZoneInfo(time_zone), tuple(days))

    def _instant(self, day: dt.date, minute: int) -> dt.datetime:
        if minute == 1440:
            day, minute = day + _DAY, 0
        wall = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=self.zone)
        return wall.astimezone(dt.UTC)

    def spans(self, start: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Business spans (UTC instants) from the local day holding ``start`` onwards, in order."""
        day = start.astimezone(self.zone).date()
        for _ in range(_MAX_DAYS):
            for s, e in self.windows[day.weekday()]:
                begin, end = self._instant(day, s), self._instant(day, e)
                if end > begin:
                    yield begin, end
            day += _DAY


def add(start: dt.datetime, amount: dt.timedelta, schedule: Schedule | None) -> dt.datetime:
    """The instant ``amount`` of clock time after ``start``: calendar time, or business time of
    ``schedule`` (a due time falls at the end of a window rather than the start of the next)."""
    if schedule is None:
        return start + amount
    remaining = amount
    if remaining <= dt.timedelta(0):
        return start
    for begin, end in schedule.spans(start):
        if end <= start:
            continue
        begin = max(begin, start)
        if end - begin >= remaining:
            return begin + remaining
        remaining -= end - begin
    raise ValueError("the schedule has no business hours")


def between(start: dt.datetime, stop: dt.datetime, schedule: Schedule | None) -> dt.timedelta:
    """Clock time from ``start`` to ``stop`` (zero when ``stop`` is not later)."""
    if stop <= start:
        return dt.timedelta(0)
    if schedule is None:
        return stop - start
    total = dt.timedelta(0)
    for begin, end in schedule.spans(start):
        if begin >= stop:
            break
        if end <= start:
            continue
        total += min(end, stop) - max(begin, start)
    return total


def add_minutes(start: dt.datetime, minutes: int, schedule: Schedule | None) -> dt.datetime:
    return add(start, dt.timedelta(minutes=minutes), schedule)


def minutes_between(start: dt.datetime, stop: dt.datetime, schedule: Schedule | None) -> float:
    return between(start, stop, schedule).total_seconds() / 60


@dataclass(frozen=True)
class Policy:
    """An SLA policy as the ticket rules use it."""

    id: Any
    schedule: Schedule | None
    targets: Mapping[str, Mapping[str, int | None]]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Policy:
        schedule = None
        if row["hours"] == "business":
            schedule = Schedule.from_json(row["time_zone"], row["schedule"] or {})
        return cls(row["id"], schedule, row["targets"] or {})

    def target(self, priority: str, kind: str) -> dt.timedelta | None:
        minutes = (self.targets.get(priority) or {}).get(f"{kind}_minutes")
        return dt.timedelta(minutes=minutes) if minutes else None
