"""Migration 0015 on a database whose events hold lifecycle changes made before it: the contacts' lifecycle
history is backfilled from what the events still hold (a create that set a stage, an update whose
``previous`` names the stage; other updates and events of contacts gone are not changes), the later
migrations build the lead facts from it, and the lead conversion report answers from them exactly, and
still does once the events are purged (the history is kept for good)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

from alembic import command

from crm_api.db import create_pool
from crm_api.migrate import alembic_config
from crm_api.reports import acquisition, build, params


def _at(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T10:00:00+00:00")


WS = uuid.uuid4()
A, B, C, GONE = (uuid.uuid4() for _ in range(4))
# (contact, type, stage after, previous, moment)
EVENTS: list[tuple[uuid.UUID, str, str | None, dict[str, Any] | None, str]] = [
    (A, "contact.created", "lead", None, "2026-01-05"),
    (A, "contact.updated", "customer", {"lifecycle_stage": "lead"}, "2026-01-15"),
    (B, "contact.created", "subscriber", None, "2026-01-02"),
    (B, "contact.updated", "lead", {"lifecycle_stage": "subscriber"}, "2026-02-10"),
    (B, "contact.updated", "lead", {"email": "old@example.com"}, "2026-02-11"),  # not a lifecycle change
    (C, "contact.created", None, None, "2026-01-03"),  # no stage yet
    (C, "contact.updated", "lead", {"lifecycle_stage": None}, "2026-01-20"),
    (GONE, "contact.created", "lead", None, "2026-01-06"),  # the contact is gone: skipped
]


async def _seed(url: str) -> None:
    pool = await create_pool(url, 1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'w')", WS)
            for contact, stage in ((A, "customer"), (B, "lead"), (C, "lead")):
                await conn.execute(
                    "INSERT INTO contacts (workspace_id, id, created_at, updated_at, lifecycle_stage) "
                    "VALUES ($1, $2, $3, $3, $4)",
                    WS,
                    contact,
                    _at("2026-01-01"),
                    stage,
                )
            for contact, kind, stage, previous, day in EVENTS:
                data: dict[str, Any] = {"object": {"id": str(contact), "lifecycle_stage": stage}}
                if previous is not None:
                    data["previous"] = previous
                await conn.execute(
                    "INSERT INTO events (workspace_id, id, type, object_type, object_id, actor, data, "
                    "created_at) VALUES ($1, $2, $3, 'contact', $4, 'test', $5::jsonb, $6)",
                    WS,
                    uuid.uuid4(),
                    kind,
                    contact,
                    json.dumps(data),
                    _at(day),
                )
    finally:
        await pool.close()


async def _read(url: str, purge: bool) -> tuple[list[tuple[Any, ...]], dict[str, Any], list[dict[str, Any]]]:
    pool = await create_pool(url, 1)
    try:
        async with pool.acquire() as conn:
            if purge:
                await conn.execute("DELETE FROM events WHERE workspace_id = $1", WS)
            history = await conn.fetch(
                "SELECT contact_id, from_stage, to_stage, changed_at FROM contact_lifecycle_changes "
                "WHERE workspace_id = $1 ORDER BY changed_at",
                WS,
            )
        period = params.period({"from": "2026-01-01", "to": "2026-03-31"}, "month")
        lower, upper = period.bounds()
        bounds = {"lower": lower, "upper": upper, "first_day": period.start, "last_day": period.end}
        bounds |= {"unit": period.interval, "tz": period.tz_name}
        rows = await acquisition.lead_conversion(pool, WS, False, False, bounds)
        slow = await acquisition.lead_conversion_from_history(pool, WS, False, False, bounds)
        report = build.lead_conversion(rows, period, False)
        assert report == build.lead_conversion(slow, period, False)
        return [tuple(r) for r in history], report, report["periods"]
    finally:
        await pool.close()


def test_lifecycle_history_backfilled_from_the_events(empty_database: str) -> None:
    command.upgrade(alembic_config(empty_database), "0014")
    asyncio.run(_seed(empty_database))
    command.upgrade(alembic_config(empty_database), "head")

    history, _, periods = asyncio.run(_read(empty_database, purge=False))
    assert history == [
        (B, None, "subscriber", _at("2026-01-02")),
        (A, None, "lead", _at("2026-01-05")),
        (A, "lead", "customer", _at("2026-01-15")),
        (C, None, "lead", _at("2026-01-20")),
        (B, "subscriber", "lead", _at("2026-02-10")),
    ]
    assert [
        (p["leads"], p["converted"], p["conversion_rate"], p["median_days_to_customer"]) for p in periods
    ] == [
        (2, 1, 0.5, 10.0),
        (1, 0, 0.0, None),
        (0, 0, None, None),
    ]
    kept, _, after = asyncio.run(_read(empty_database, purge=True))
    assert kept == history and after == periods
