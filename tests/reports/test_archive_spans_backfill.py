"""Migration 0044 on a database whose events hold restores made before it: each ``contact.restored`` and
``deal.restored`` event that names the archival it ended (``previous.archived_at``) becomes a span; other
events do not."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

from alembic import command

from crm_api.db import create_pool
from crm_api.migrate import alembic_config

WS = uuid.uuid4()
C, D, E = (uuid.uuid4() for _ in range(3))


def _at(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T10:00:00+00:00")


# (object type, object, event type, previous, moment)
EVENTS: list[tuple[str, uuid.UUID, str, dict[str, Any] | None, str]] = [
    ("contact", C, "contact.restored", {"archived_at": "2026-02-01T09:00:00+00:00"}, "2026-03-01"),
    ("deal", D, "deal.restored", {"archived_at": "2026-01-15T00:00:00+00:00"}, "2026-01-20"),
    ("deal", D, "deal.archived", {"archived_at": None}, "2026-01-15"),  # an archival: no span
    ("deal", E, "deal.updated", {"archived_at": "2026-01-02T00:00:00+00:00"}, "2026-01-03"),  # not a restore
    ("deal", E, "deal.restored", None, "2026-01-04"),  # names no archival
]


async def _seed(url: str) -> None:
    pool = await create_pool(url, 1)
    try:
        await pool.execute("INSERT INTO workspaces (id, name) VALUES ($1, 'w')", WS)
        for object_type, oid, kind, previous, day in EVENTS:
            data: dict[str, Any] = {"object": {"id": str(oid)}}
            if previous is not None:
                data["previous"] = previous
            await pool.execute(
                "INSERT INTO events (workspace_id, id, type, object_type, object_id, actor, data, "
                "created_at) VALUES ($1, $2, $3, $4, $5, 'test', $6::jsonb, $7)",
                WS,
                uuid.uuid4(),
                kind,
                object_type,
                oid,
                json.dumps(data),
                _at(day),
            )
    finally:
        await pool.close()


async def _spans(url: str) -> list[tuple[Any, ...]]:
    pool = await create_pool(url, 1)
    try:
        rows = await pool.fetch(
            "SELECT object_type, object_id, archived_at, restored_at FROM archive_spans "
            "WHERE workspace_id = $1 ORDER BY restored_at",
            WS,
        )
        return [tuple(r) for r in rows]
    finally:
        await pool.close()


def test_archive_spans_backfilled_from_the_restore_events(empty_database: str) -> None:
    command.upgrade(alembic_config(empty_database), "0043")
    asyncio.run(_seed(empty_database))
    command.upgrade(alembic_config(empty_database), "head")
    assert asyncio.run(_spans(empty_database)) == [
        ("deal", D, dt.datetime(2026, 1, 15, tzinfo=dt.UTC), _at("2026-01-20")),
        ("contact", C, dt.datetime(2026, 2, 1, 9, tzinfo=dt.UTC), _at("2026-03-01")),
    ]
