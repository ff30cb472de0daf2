"""The SLA arithmetic and ticket clock rules, as pure functions: business hours, time zones, DST, pauses."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from crm_api.tickets import rules, sla

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = {d: [{"start": "09:00", "end": "17:00"}] for d in ("mon", "tue", "wed", "thu", "fri")}
M = dt.timedelta(minutes=1)


def berlin(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def office(zone: str = "Europe/Berlin", schedule: dict[str, Any] | None = None) -> sla.Schedule:
    return sla.Schedule.from_json(zone, schedule or WEEKDAYS)


def test_calendar_time_is_plain_arithmetic() -> None:
    start = dt.datetime(2026, 3, 28, 23, 0, tzinfo=dt.UTC)
    assert sla.add_minutes(start, 90, None) == start + 90 * M
    assert sla.minutes_between(start, start + 90 * M, None) == 90
    assert sla.minutes_between(start + M, start, None) == 0


def test_adding_inside_one_window_and_across_the_evening() -> None:
    s = office()
    # Wednesday 16:00 + 30 min stays in the day; + 90 min carries 30 min into Thursday morning
    assert sla.add_minutes(berlin(2026, 11, 25, 16, 0), 30, s) == berlin(2026, 11, 25, 16, 30)
    assert sla.add_minutes(berlin(2026, 11, 25, 16, 0), 90, s) == berlin(2026, 11, 26, 9, 30)
    # a due time that exactly fills the day falls at 17:00, not at 09:00 the next day
    assert sla.add_minutes(berlin(2026, 11, 25, 9, 0), 480, s) == berlin(2026, 11, 25, 17, 0)


def test_start_outside_hours_waits_for_the_next_window() -> None:
    s = office()
    # Friday 18:00 + 60 min -> Monday 10:00; Saturday noon + 1 min -> Monday 09:01
    assert sla.add_minutes(berlin(2026, 11, 27, 18, 0), 60, s) == berlin(2026, 11, 30, 10, 0)
    assert sla.add_minutes(berlin(2026, 11, 28, 12, 0), 1, s) == berlin(2026, 11, 30, 9, 1)
    assert sla.add_minutes(berlin(2026, 11, 28, 12, 0), 0, s) == berlin(2026, 11, 28, 12, 0)


def test_between_counts_only_business_minutes() -> None:
    s = office()
    # Friday 16:00 -> Monday 10:00: one hour on Friday, one on Monday
    assert sla.minutes_between(berlin(2026, 11, 27, 16, 0), berlin(2026, 11, 30, 10, 0), s) == 120
    # a whole weekend is worth nothing
    assert sla.minutes_between(berlin(2026, 11, 28, 0, 0), berlin(2026, 11, 30, 0, 0), s) == 0
    # a full week is five days of eight hours
    assert sla.minutes_between(berlin(2026, 11, 23, 0, 0), berlin(2026, 11, 30, 0, 0), s) == 5 * 480


def test_split_windows_and_a_lunch_break() -> None:
    s = office(schedule={"mon": [{"start": "13:00", "end": "17:00"}, {"start": "09:00", "end": "12:00"}]})
    assert sla.add_minutes(berlin(2026, 11, 30, 11, 0), 120, s) == berlin(2026, 11, 30, 14, 0)
    assert sla.minutes_between(berlin(2026, 11, 30, 11, 30), berlin(2026, 11, 30, 13, 30), s) == 60


def test_add_and_between_are_inverse() -> None:
    s = office("America/New_York")
    start = dt.datetime(2026, 11, 25, 15, 17, tzinfo=NEW_YORK)
    for minutes in (1, 59, 480, 481, 2400, 10_000):
        due = sla.add_minutes(start, minutes, s)
        assert sla.minutes_between(start, due, s) == minutes


def test_the_same_schedule_in_two_time_zones() -> None:
    """09:00-17:00 in New York is 15:00-23:00 in Berlin (in November); UTC instants differ by six hours."""
    start = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)  # 09:00 Berlin, 03:00 New York
    assert sla.add_minutes(start, 60, office("Europe/Berlin")) == dt.datetime(
        2026, 11, 25, 9, 0, tzinfo=dt.UTC
    )
    assert sla.add_minutes(start, 60, office("America/New_York")) == dt.datetime(
        2026, 11, 25, 15, 0, tzinfo=dt.UTC
    )


def test_dst_spring_forward_inside_a_window() -> None:
    """Berlin jumps from 02:00 to 03:00 on 2026-03-29: a 00:00-06:00 Sunday window is five hours long."""
    s = office(schedule={"sun": [{"start": "00:00", "end": "06:00"}]})
    day_start, day_end = berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 29, 6, 0)
    assert sla.minutes_between(day_start, day_end, s) == 300
    assert sla.add_minutes(day_start, 300, s) == day_end
    # a window opening inside the gap (02:30) opens when the clocks show 03:30
    gap = office(schedule={"sun": [{"start": "02:30", "end": "04:00"}]})
    assert sla.add_minutes(berlin(2026, 3, 29, 0, 0), 1, gap) == berlin(2026, 3, 29, 3, 31)


def test_dst_fall_back_inside_a_window() -> None:
    """Berlin repeats 02:00-03:00 on 2026-10-25: a 00:00-06:00 window holds seven hours."""
    s = office(schedule={"sun": [{"start": "00:00", "end": "06:00"}]})
    assert sla.minutes_between(berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 25, 6, 0), s) == 420


def test_dst_outside_the_window_keeps_office_hours_local() -> None:
    """Across the March change the office still opens at 09:00 local, which is an hour earlier in UTC."""
    s = office()
    due = sla.add_minutes(berlin(2026, 3, 27, 16, 0), 120, s)  # Friday 16:00 CET + 2 h
    assert due == berlin(2026, 3, 30, 10, 0)  # Monday 10:00 CEST
    assert due.astimezone(dt.UTC).hour == 8


def test_schedule_validation() -> None:
    with pytest.raises(ValueError):
        sla.Schedule.from_json("UTC", {})
    with pytest.raises(ValueError):
        sla.parse_hhmm("24:01")
    assert sla.parse_hhmm("24:00") == 1440
    assert "Europe/Berlin" in sla.time_zones() and "Mars/Olympus" not in sla.time_zones()


def _ticket(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "status": "new",
        "priority": "normal",
        "sla_policy_id": "p",
        "created_at": berlin(2026, 11, 23, 9, 0),  # Monday
        "first_responded_at": None,
        "first_response_due_at": None,
        "resolution_due_at": None,
        "sla_paused_at": None,
        "sla_paused_seconds": 0,
        "solved_at": None,
        "closed_at": None,
    }
    row.update(over)
    return row


POLICY = sla.Policy(
    "p",
    office(),
    {
        "normal": {"first_response_minutes": 60, "resolution_minutes": 960},
        "urgent": {"first_response_minutes": 15, "resolution_minutes": 120},
    },
)


def _step(old: dict[str, Any] | None, changes: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    new = {**(old or _ticket()), **changes}
    assert rules.check_transition(old["status"] if old else None, new["status"]) is None
    rules.stamp_status(old, new, now)
    if rules.needs_policy(old, new):
        rules.apply_clock(old, new, POLICY, now)
    return new


def test_due_times_on_create_and_reprioritisation() -> None:
    created = _step(None, {}, berlin(2026, 11, 23, 9, 0))
    assert created["first_response_due_at"] == berlin(2026, 11, 23, 10, 0)
    assert created["resolution_due_at"] == berlin(2026, 11, 24, 17, 0)  # two business days
    urgent = _step(created, {"priority": "urgent"}, berlin(2026, 11, 23, 9, 5))
    assert urgent["first_response_due_at"] == berlin(2026, 11, 23, 9, 15)
    assert urgent["resolution_due_at"] == berlin(2026, 11, 23, 11, 0)
    low = _step(urgent, {"priority": "low"}, berlin(2026, 11, 23, 9, 6))  # no target for low
    assert low["first_response_due_at"] is None and low["resolution_due_at"] is None


def test_pause_across_the_night_moves_resolution_by_business_time_only() -> None:
    created = _step(None, {}, berlin(2026, 11, 23, 9, 0))
    # pending from Monday 16:00 to Tuesday 10:00: two business hours stood still, not eighteen
    pending = _step(created, {"status": "pending"}, berlin(2026, 11, 23, 16, 0))
    assert pending["sla_paused_at"] == berlin(2026, 11, 23, 16, 0)
    assert pending["resolution_due_at"] == created["resolution_due_at"]
    on_hold = _step(pending, {"status": "on_hold"}, berlin(2026, 11, 23, 18, 0))  # still paused
    assert on_hold["sla_paused_at"] == berlin(2026, 11, 23, 16, 0)
    resumed = _step(on_hold, {"status": "open"}, berlin(2026, 11, 24, 10, 0))
    assert resumed["sla_paused_at"] is None and resumed["sla_paused_seconds"] == 2 * 3600
    assert resumed["resolution_due_at"] == berlin(2026, 11, 25, 11, 0)  # Tuesday 17:00 + 2 h
    # the first-response clock does not pause
    assert resumed["first_response_due_at"] == created["first_response_due_at"]
    # re-prioritising later keeps the paused time
    urgent = _step(resumed, {"priority": "urgent"}, berlin(2026, 11, 24, 11, 0))
    assert urgent["resolution_due_at"] == berlin(2026, 11, 23, 13, 0)  # 09:00 + 2 h + 2 h paused


def test_a_pause_over_a_weekend_costs_nothing_and_solved_stops_the_clock() -> None:
    created = _step(None, {}, berlin(2026, 11, 27, 16, 0))  # Friday 16:00
    pending = _step(created, {"status": "pending"}, berlin(2026, 11, 27, 17, 30))
    resumed = _step(pending, {"status": "open"}, berlin(2026, 11, 30, 8, 0))  # Monday before opening
    assert resumed["sla_paused_seconds"] == 0
    assert resumed["resolution_due_at"] == created["resolution_due_at"]
    solved = _step(resumed, {"status": "solved"}, berlin(2026, 11, 30, 9, 0))
    assert solved["solved_at"] == berlin(2026, 11, 30, 9, 0) and solved["sla_paused_at"] is not None
    reopened = _step(solved, {"status": "open"}, berlin(2026, 11, 30, 10, 0))
    assert reopened["solved_at"] is None and reopened["sla_paused_seconds"] == 3600
    closed = _step(_step(reopened, {"status": "solved"}, berlin(2026, 12, 1, 9, 0)), {"status": "closed"},
                   berlin(2026, 12, 2, 9, 0))  # fmt: skip
    assert closed["closed_at"] == berlin(2026, 12, 2, 9, 0) and closed["solved_at"] == berlin(
        2026, 12, 1, 9, 0
    )
    assert closed["sla_paused_at"] is None


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        ("new", "open", True),
        ("open", "pending", True),
        ("pending", "on_hold", True),
        ("on_hold", "solved", True),
        ("solved", "open", True),
        ("solved", "closed", True),
        ("open", "new", False),
        ("open", "closed", False),
        ("closed", "open", False),
        ("closed", "solved", False),
        (None, "closed", True),
    ],
)
def test_status_machine(old: str | None, new: str, ok: bool) -> None:
    error = rules.check_transition(old, new)
    assert (error is None) == ok
    if error is not None:
        assert error.status == 409 and error.errors[0].path == "/status"
